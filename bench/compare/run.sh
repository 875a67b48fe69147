#!/usr/bin/env bash
# Side-by-side CPU benchmark: tinyclip (Go) vs ONNX Runtime 1.30 (npm
# onnxruntime-node) vs PyTorch (Debian's torch on Debian's OpenBLAS), same
# random weights, alternating runs. Prints the table of design.md §4.5.
#
#   bench/compare/run.sh [--rounds 5] [--iters 5] [--warmup 1] [--batch 1,8]
#                        [--threads 1,2] [--only REGEX] [--settle MS] [--spin US]
#                        [--json FILE]
#
# --spin US adds rows of ours with tinyclip.SetSpinWait(US microseconds)
# for the multi-thread rows (the default rows use the sleeping pool).
#
# Needs: go, node + npm (npm registry), /usr/bin/python3 with torch and onnx
# (Debian python3-torch, python3-onnx), apt-get (for the OpenBLAS package),
# and ../shared (refclip.py, the ImageNet class names). Everything it
# downloads or generates goes to bench/compare/.work and node_modules
# (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
work="$here/.work"
mkdir -p "$work/models"

refclip="$shared/reference/refclip.py"
export CLASSNAMES="$shared/data/zeroshot/imagenet1k-classnames.txt"
export REFCLIP_DIR="$shared/reference"
[[ -f $refclip && -f $CLASSNAMES ]] || { echo "run.sh: $shared lacks refclip.py or the class names" >&2; exit 1; }

# ONNX Runtime: the CPU library ships in the npm tarball; skip its install
# script, which would fetch GPU binaries.
if [[ ! -d $here/node_modules/onnxruntime-node ]]; then
  (cd "$here" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund)
fi

# OpenBLAS for torch, unpacked privately (design.md §4.4): Debian's torch
# links libblas.so.3, which is the slow reference BLAS unless this
# directory comes first on LD_LIBRARY_PATH.
blas="$work/openblas/root/usr/lib/x86_64-linux-gnu/openblas-pthread"
if [[ ! -f $blas/libblas.so.3 ]]; then
  mkdir -p "$work/openblas"
  (cd "$work/openblas" && apt-get download libopenblas0-pthread && dpkg-deb -x libopenblas0-pthread_*.deb root)
fi

# Random weights, exported to ONNX and saved for the Go engine.
for m in TinyCLIP-ViT-8M-16-Text-3M TinyCLIP-ViT-40M-32-Text-19M TinyCLIP-ResNet-19M-Text-19M; do
  if [[ ! -f $work/models/$m/text.onnx ]]; then
    /usr/bin/python3 "$refclip" export-onnx --random "$m" --seed 1 --out "$work/models/$m" --save-model
  fi
done

(cd "$root" && go build -o "$work/ours" ./bench/compare/ours)

# FP32 peak per core for "% of peak": Zen 5 (family 0x1A) has full-width
# 512-bit FMA, 111.5 GMAC/s (design.md §4.2); Zen 4 (family 0x19) runs a
# zmm FMA in two halves, 58.5 GMAC/s measured (docs/performance.md).
family=$(awk '/^cpu family/ {print $4; exit}' /proc/cpuinfo)
case "$family" in
  26) peak=111.5 ;;
  25) peak=58.5 ;;
  *) peak=${PEAK_FP32:-111.5} ;;
esac
echo "load before: $(uptime)" >&2
TORCH_BLAS_DIR="$blas" node "$here/compare.mjs" --work "$work" --peak-fp32 "$peak" --cpu-family "$family" "$@"
echo "load after: $(uptime)" >&2
