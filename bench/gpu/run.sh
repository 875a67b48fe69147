#!/usr/bin/env bash
# bench/gpu/run.sh — issue 9's GPU acceptance runs in ONE device call.
#
# Three modes:
#
#   bench/gpu/run.sh prepare    on the BUILD machine (this repository's usual
#                               Linux box, with Go 1.26 and gcc): builds the cgo
#                               XLA binaries and stages what the GPU machine
#                               needs into bin/gpu/ (git-ignored, < 64 MiB):
#                                 bin/gpu/tinyclip.gz    CLI, -tags xla, GOEXPERIMENT=simd, stripped
#                                 bin/gpu/train.test.gz  internal/train test binary, same build
#                                 bin/gpu/shared/        fixtures/distill/{step,inherit},
#                                                        fixtures/auto/{step,model,batch}, the READMEs,
#                                                        reference/refclip.py, the BPE vocabulary
#                                 bin/gpu/BUILD.txt      commit, tree state, Go version, date
#   bench/gpu/run.sh dry-run    on the build machine, after prepare: the whole
#                               script on the CPU (GoMLX's Go backend, the
#                               fixtures' tiny teacher and student, batch 8,
#                               PyTorch on the CPU in fp32), to check the
#                               script itself; writes to $OUT (default
#                               /tmp/tinyclip-gpu-dryrun).
#   bench/gpu/run.sh            on the GPU machine (the device call): see below.
#
# The device call (from the repository root of the build machine, after
# 'bench/gpu/run.sh prepare'):
#
#   run(command="bash bench/gpu/run.sh", carry=["bin/gpu"], timeout_s=570)
#
# The device runs a copy of the working tree (bench/gpu/*.py travel with it)
# plus the carried bin/gpu; it has no network and, as far as we know, no Go
# toolchain. Two ways to get the binaries there:
#   1. (used) build here with 'prepare' and carry bin/gpu. The binaries need
#      glibc >= 2.34 on the GPU machine (cgo; they are built on Debian 12).
#   2. (fallback) a Go 1.26 toolchain + gcc on the GPU machine: with no
#      bin/gpu/*.gz this script runs the same builds there, but the module
#      cache must then travel too (no network there): carry a GOMODCACHE copy
#      and set GOMODCACHE/GOFLAGS=-mod=mod GOPROXY=off. A Go toolchain alone is
#      ~250 MB, beyond the 64 MiB carry limit, so option 1 is the plan.
#
# What the device run does, within BUDGET seconds (default 480; every phase
# has a cap and is skipped when the time left is too short, so a timeout still
# leaves results):
#   1. probe: nvidia-smi, a Python with torch, JAX's CUDA PJRT plugin
#      (jax_plugins/xla_cuda13|12/xla_cuda_plugin.so), the Go binary's own
#      plugin discovery (a tiny bench distill on --backend xla:cuda);
#   2. tests on xla:cuda (TINYCLIP_BACKEND) in fp32 with the test binary:
#      TestStepFixtures (fixtures/distill/step by its README's rules),
#      TestAutoStepFixtures (fixtures/auto/step), TestDataParallelSPMD (GoMLX's
#      SPMD strategy on 1 device, and on 2 and 4 when the host has them),
#      then TestDataParallelStepFixtures, TestStepFixturesGraphTeacher,
#      TestGraphTeacherParity, TestStepBF16, TestStepLoss;
#   3. tinyclip bench distill ViT-B-32 -> TinyCLIP-ViT-40M-32-Text-19M, random
#      weights, batch 256, fp32 and bf16, with the step split; PyTorch
#      (bench/gpu/torch_distill_step.py: the same step with refclip's model
#      code, autocast bf16 for bf16) on the same GPU, same configs;
#   4. the largest batch that fits: doubling from 512 (bf16 first, then fp32)
#      until a run fails or time runs short; PyTorch at that batch;
#   5. $OUT/results.json and $OUT/results.md (bench/gpu/summarize.py), raw
#      JSON under $OUT/raw, logs under $OUT/logs.
#
# Environment: OUT (output folder; the device sets it), BUDGET (seconds),
# PYTHON (a python3 with torch), XLA_OPTS (plugin options appended to the
# backend, default memory_fraction=0.9), TEACHER, STUDENT, BATCH, MAX_BATCH.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GPU_DIR="$ROOT/bin/gpu"
MODE=${1:-device}

die() { echo "run.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- prepare
prepare() {
	local shared=${TINYCLIP_SHARED:-$ROOT/../shared}
	[ -d "$shared/fixtures" ] || die "shared folder not found at $shared (set TINYCLIP_SHARED)"
	command -v go >/dev/null || die "no go on PATH"
	rm -rf "$GPU_DIR"
	mkdir -p "$GPU_DIR/shared/fixtures/distill" "$GPU_DIR/shared/fixtures/auto" "$GPU_DIR/shared/reference" "$GPU_DIR/shared/vocab"
	cd "$ROOT" || exit 1
	echo "== building the xla binaries (cgo)"
	local flags=(-tags xla -trimpath -ldflags=-s\ -w)
	CGO_ENABLED=1 GOEXPERIMENT=simd go build "${flags[@]}" -o "$GPU_DIR/tinyclip" ./cmd/tinyclip || die "build of cmd/tinyclip failed"
	CGO_ENABLED=1 GOEXPERIMENT=simd go test -c "${flags[@]}" -o "$GPU_DIR/train.test" ./internal/train || die "build of the internal/train test binary failed"
	gzip -9f "$GPU_DIR/tinyclip" "$GPU_DIR/train.test"
	echo "== staging the shared pieces"
	cp -r "$shared/fixtures/distill/README.md" "$shared/fixtures/distill/step" "$shared/fixtures/distill/inherit" "$GPU_DIR/shared/fixtures/distill/"
	cp -r "$shared/fixtures/auto/README.md" "$shared/fixtures/auto/step" "$shared/fixtures/auto/model" "$shared/fixtures/auto/batch" "$GPU_DIR/shared/fixtures/auto/"
	cp "$shared/reference/refclip.py" "$shared/reference/README.md" "$GPU_DIR/shared/reference/"
	cp "$shared/vocab/bpe_simple_vocab_16e6.txt.gz" "$GPU_DIR/shared/vocab/"
	chmod -R u+w "$GPU_DIR"
	{
		echo "commit: $(git rev-parse HEAD 2>/dev/null)"
		echo "tree: $(git status --short 2>/dev/null | wc -l) changed/untracked paths at build time"
		echo "go: $(go version)"
		echo "built: $(date -u +%FT%TZ) on $(uname -n)"
		echo "glibc needed: $(gzip -dc "$GPU_DIR/tinyclip.gz" | strings | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
	} >"$GPU_DIR/BUILD.txt"
	local size
	size=$(du -sb "$GPU_DIR" | cut -f1)
	echo "== bin/gpu: $((size / 1048576)) MiB (carry limit 64 MiB)"
	[ "$size" -lt $((62 * 1048576)) ] || die "bin/gpu is $size bytes: over the carry limit"
	git -C "$ROOT" check-ignore -q "$GPU_DIR/tinyclip.gz" || die "bin/gpu is not git-ignored"
	cat "$GPU_DIR/BUILD.txt"
}

if [ "$MODE" = prepare ]; then
	prepare
	exit 0
fi

# ------------------------------------------------------- device / dry-run
DRY=0
if [ "$MODE" = dry-run ]; then
	DRY=1
	OUT=${OUT:-/tmp/tinyclip-gpu-dryrun}
elif [ "$MODE" != device ]; then
	die "unknown mode $MODE (prepare, dry-run, or nothing for the device run)"
fi
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT/raw" "$OUT/logs" || die "cannot write $OUT"
OUT=$(cd "$OUT" && pwd) # absolute: the tests run from internal/train
BUDGET=${BUDGET:-480}
RESERVE=20 # seconds kept for the summary
T0=$(date +%s)
PHASES="$OUT/phases.tsv"
printf 'phase\trc\tseconds\tnote\n' >"$PHASES"
exec > >(tee -a "$OUT/logs/run.log") 2>&1

left() { echo $((T0 + BUDGET - $(date +%s))); }
note() { echo "[$(($(date +%s) - T0))s] $*"; }

# phase NAME CAP OUTFILE CMD... runs CMD with a timeout of min(CAP, time
# left − RESERVE), stdout to OUTFILE (raw/), stderr to logs/NAME.log, and
# records the outcome in phases.tsv. It returns CMD's status (124: timeout,
# 125: skipped for lack of time).
phase() {
	local name=$1 cap=$2 outfile=$3
	shift 3
	local avail=$(($(left) - RESERVE))
	((avail < cap)) && cap=$avail
	if ((cap < 15)); then
		printf '%s\t125\t0\tskipped: %ss left\n' "$name" "$(left)" >>"$PHASES"
		note "skip $name (time)"
		return 125
	fi
	note "start $name (cap ${cap}s)"
	local s rc
	s=$(date +%s)
	timeout -k 10 "$cap" "$@" >"$outfile" 2>"$OUT/logs/$name.log"
	rc=$?
	local tail
	tail=$(tail -c 300 "$OUT/logs/$name.log" | tr '\t\n' '  ')
	printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - s))" "$tail" >>"$PHASES"
	note "end $name: rc $rc"
	return $rc
}

# The binaries: unpacked from bin/gpu, or built here if a Go toolchain exists.
WORK=$(mktemp -d /tmp/tinyclip-gpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ -f "$GPU_DIR/tinyclip.gz" ] && [ -f "$GPU_DIR/train.test.gz" ]; then
	gzip -dc "$GPU_DIR/tinyclip.gz" >"$WORK/tinyclip" && gzip -dc "$GPU_DIR/train.test.gz" >"$WORK/train.test" ||
		die "cannot unpack bin/gpu"
	chmod +x "$WORK/tinyclip" "$WORK/train.test"
	cp "$GPU_DIR/BUILD.txt" "$OUT/BUILD.txt" 2>/dev/null
elif command -v go >/dev/null; then
	note "no bin/gpu binaries: building with $(go version) (needs gcc and the module cache)"
	(cd "$ROOT" && CGO_ENABLED=1 GOEXPERIMENT=simd go build -tags xla -o "$WORK/tinyclip" ./cmd/tinyclip &&
		CGO_ENABLED=1 GOEXPERIMENT=simd go test -c -tags xla -o "$WORK/train.test" ./internal/train) ||
		die "build failed"
else
	die "no bin/gpu/*.gz (run 'bench/gpu/run.sh prepare' on the build machine and carry bin/gpu) and no Go toolchain here"
fi
SHARED=${TINYCLIP_SHARED:-$GPU_DIR/shared}
[ -d "$SHARED/fixtures/distill/step" ] || SHARED=$ROOT/../shared
[ -d "$SHARED/fixtures/distill/step" ] || die "no fixtures: neither bin/gpu/shared nor ../shared"
export TINYCLIP_SHARED=$SHARED
REFCLIP=$SHARED/reference/refclip.py
VOCAB=$SHARED/vocab/bpe_simple_vocab_16e6.txt.gz

# A Python with torch (the GPU machine has PyTorch preinstalled, maybe in a
# virtual environment under /opt).
find_python() {
	local c
	for c in ${PYTHON:-} python3 /opt/*/.venv/bin/python3 /opt/*/venv/bin/python3 /opt/conda/bin/python3 /usr/local/bin/python3 /usr/bin/python3; do
		[ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
		if "$c" -c 'import torch' >/dev/null 2>&1; then
			command -v "$c"
			return 0
		fi
	done
	return 1
}
PY=$(find_python) || PY=""
PYANY=${PY:-$(command -v python3 || true)}

# ------------------------------------------------------------------ configs
if ((DRY)); then
	TEACHER=${TEACHER:-$SHARED/fixtures/distill/inherit/vit/teacher.config.json}
	STUDENT=${STUDENT:-$SHARED/fixtures/distill/inherit/vit/student-b.config.json}
	BATCH=${BATCH:-8}
	SEARCH_FROM=16
	MAX_BATCH=${MAX_BATCH:-64}
	BACKEND=go
	TORCH_DEVICE=cpu
	TORCH_PRECISIONS="fp32" # Debian's CPU torch 1.13 has no bf16 autocast for LayerNorm
	DATA_SIZE=64
	export TINYCLIP_BACKEND=go
else
	TEACHER=${TEACHER:-ViT-B-32}
	STUDENT=${STUDENT:-TinyCLIP-ViT-40M-32-Text-19M}
	BATCH=${BATCH:-256}
	SEARCH_FROM=$((2 * BATCH))
	MAX_BATCH=${MAX_BATCH:-16384}
	BACKEND=xla:cuda
	TORCH_DEVICE=cuda
	TORCH_PRECISIONS="fp32 bf16 amp"
	DATA_SIZE=400
	export GOPJRT_CUDA_CHECKS=${GOPJRT_CUDA_CHECKS:-0}
fi
XLA_OPTS=${XLA_OPTS-memory_fraction=0.9}

# ------------------------------------------------------------------ 1. probe
{
	echo "mode: $MODE"
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -a)"
	echo "cpus: $(nproc)"
	echo "glibc: $(ldd --version 2>&1 | head -1)"
	echo "python (torch): ${PY:-none}"
	[ -n "$PY" ] && "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' 2>&1
	command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1
	echo "jax plugins:"
	if [ -n "$PYANY" ]; then
		"$PYANY" - <<'EOF' 2>&1
import glob, os, site, sys
dirs = list(getattr(site, "getsitepackages", lambda: [])()) + [site.getusersitepackages()] + sys.path
seen = set()
for d in dirs:
    for v in ("xla_cuda13", "xla_cuda12"):
        p = os.path.join(d, "jax_plugins", v, "xla_cuda_plugin.so")
        if p not in seen and os.path.isfile(p):
            seen.add(p)
            print("  " + p)
EOF
	fi
	ls /opt/*/.venv/lib/python3*/site-packages/jax_plugins/*/xla_cuda_plugin.so 2>/dev/null | sed 's/^/  scan: /'
} >"$OUT/probe.txt" 2>&1
cat "$OUT/probe.txt"

# The Go binary's own plugin discovery and a first GPU step (tiny models).
TINY_T=$SHARED/fixtures/distill/inherit/vit/teacher.config.json
TINY_S=$SHARED/fixtures/distill/inherit/vit/student-b.config.json
BE=$BACKEND
[ -n "$XLA_OPTS" ] && [ "$BACKEND" != go ] && BE="$BACKEND,$XLA_OPTS"
phase smoke 60 "$OUT/raw/smoke.json" "$WORK/tinyclip" bench distill --backend "$BE" --teacher-config "$TINY_T" \
	--student-config "$TINY_S" --batch 8 --steps 1 --data-size 64 --split=false --json
smoke_rc=$?
if ((smoke_rc != 0)) && [ "$BACKEND" != go ]; then
	# Discovery failed or the plugin did not load: try the plugin the probe
	# found, by path, so that the rest still runs (and say so).
	P=$(grep -m1 -o '/[^ ]*xla_cuda_plugin.so' "$OUT/probe.txt")
	if [ -n "$P" ]; then
		note "xla:cuda failed (see logs/smoke.log); retrying with the probe's plugin $P"
		BACKEND="xla:$P"
		BE=$BACKEND
		[ -n "$XLA_OPTS" ] && BE="$BACKEND,$XLA_OPTS"
		phase smoke-path 60 "$OUT/raw/smoke-path.json" "$WORK/tinyclip" bench distill --backend "$BE" --teacher-config "$TINY_T" \
			--student-config "$TINY_S" --batch 8 --steps 1 --data-size 64 --split=false --json
	fi
fi
[ "$BACKEND" != go ] && export TINYCLIP_BACKEND=$BE

# ------------------------------------------------------------------ 2. tests
# -test.v output goes to raw/ (parsed by the summary); the xla tests run from
# the package folder like 'go test' does.
REQUIRED='^(TestStepFixtures|TestAutoStepFixtures|TestDataParallelSPMD)$'
EXTRA='^(TestDataParallelStepFixtures|TestStepFixturesGraphTeacher|TestGraphTeacherParity|TestStepBF16|TestStepLoss)$'
(cd "$ROOT/internal/train" && phase tests-required 160 "$OUT/raw/tests-required.txt" "$WORK/train.test" \
	-test.run "$REQUIRED" -test.v -test.count=1 -test.timeout 150s)

# ------------------------------------------------------------ 3. batch 256
bench() { # NAME BATCH PRECISION CAP [extra flags]
	local name=$1 b=$2 p=$3 cap=$4
	shift 4
	phase "$name" "$cap" "$OUT/raw/$name.json" "$WORK/tinyclip" bench distill --backend "$BE" --teacher-config "$TEACHER" \
		--student-config "$STUDENT" --batch "$b" --precision "$p" --data-size "$DATA_SIZE" --json "$@"
}
torch_step() { # NAME BATCH PRECISION CAP [extra flags]; text towers trimmed unless NOTRIM=1
	local name=$1 b=$2 p=$3 cap=$4 trim=--trim
	shift 4
	[ "${NOTRIM:-0}" = 1 ] && trim=""
	if [ -z "$PY" ]; then
		printf '%s\t127\t0\tskipped: no python with torch\n' "$name" >>"$PHASES"
		return 127
	fi
	if [[ " $TORCH_PRECISIONS " != *" $p "* ]]; then
		printf '%s\t127\t0\tskipped: torch %s is not run in this mode\n' "$name" "$p" >>"$PHASES"
		return 127
	fi
	phase "$name" "$cap" "$OUT/raw/$name.json" "$PY" "$ROOT/bench/gpu/torch_distill_step.py" --teacher "$TEACHER" \
		--student "$STUDENT" --batch "$b" --precision "$p" --device "$TORCH_DEVICE" $trim \
		--refclip "$REFCLIP" --vocab "$VOCAB" "$@"
}
for p in fp32 bf16; do
	bench "go-$BATCH-$p" "$BATCH" "$p" 120 --steps 5
done
for p in fp32 bf16; do
	torch_step "torch-$BATCH-$p" "$BATCH" "$p" 60 --steps 10 --warmup 3
done

# ------------------------------------------------- 4. largest batch that fits
search() { # PRECISION SHARE (seconds this search may use)
	local p=$1 until=$(($(date +%s) + $2)) b=$SEARCH_FROM best=$BATCH why="reached MAX_BATCH=$MAX_BATCH"
	while ((b <= MAX_BATCH)); do
		local avail=$((until - $(date +%s)))
		if ((avail < 40)); then
			why="out of time before batch $b"
			break
		fi
		bench "go-$b-$p" "$b" "$p" $((avail < 150 ? avail : 150)) --steps 3 --split=false --data "synthetic:$b" --data-batches 0
		local rc=$?
		if ((rc != 0)); then
			why="batch $b failed (exit $rc; 124 = time cap; see logs/go-$b-$p.log)"
			break
		fi
		best=$b
		b=$((2 * b))
	done
	echo "$best $why" >"$OUT/raw/largest-$p.txt"
	if ((best > BATCH)); then
		torch_step "torch-$best-$p" "$best" "$p" 90 --steps 5 --warmup 2 ||
			torch_step "torch-$((best / 2))-$p" "$((best / 2))" "$p" 60 --steps 5 --warmup 2
	fi
}
share=$((($(left) - RESERVE - 60) / 2))
for p in bf16 fp32; do
	search "$p" "$share"
	share=$(($(left) - RESERVE - 30))
done

# ------------------------------------------- the remaining tests, if time left
(cd "$ROOT/internal/train" && phase tests-extra 150 "$OUT/raw/tests-extra.txt" "$WORK/train.test" \
	-test.run "$EXTRA" -test.v -test.count=1 -test.timeout 140s)
# Context for the table: the official fp16 AMP, and bf16 without trimming
# the text towers to the last EOT.
torch_step "torch-$BATCH-amp" "$BATCH" amp 60 --steps 10 --warmup 3
NOTRIM=1 torch_step "torch-$BATCH-bf16-notrim" "$BATCH" bf16 60 --steps 10 --warmup 3

# ------------------------------------------------------------------ 5. summary
note "summary"
if [ -n "$PYANY" ]; then
	"$PYANY" "$ROOT/bench/gpu/summarize.py" --out "$OUT" --batch "$BATCH" --teacher "$TEACHER" --student "$STUDENT" \
		--mode "$MODE" --elapsed $(($(date +%s) - T0)) || note "summary failed"
else
	note "no python: raw results only"
fi
note "done in $(($(date +%s) - T0))s; results in $OUT"
# The dry run checks the script: there every phase must pass (or be
# skipped on purpose). The device run always exits 0: its results are the
# product, failures included.
if ((DRY)); then
	failed=$(awk -F'\t' 'NR > 1 && $2 != 0 && $2 != 125 && $2 != 127 { print $1 }' "$PHASES")
	if [ -n "$failed" ]; then
		note "dry run: failed phases: $failed"
		exit 1
	fi
fi
