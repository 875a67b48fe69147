#!/usr/bin/env bash
# A/B of the engine's worker pool at two threads: the pool that polled for
# up to 50 µs between parallel loops (commit 954504b, internal/engine/pool.go)
# against the working tree's, which sleeps without polling. Builds both test
# binaries of internal/engine, then runs them alternately, round after
# round, and prints the median of each benchmark per variant.
#
#   bench/compare/pool_ab.sh [ROUNDS] [BENCH-REGEX] [BENCHTIME]
#
# Defaults: 10 rounds; BenchmarkParallelFor and the batch-1 image and text
# towers; 10 iterations per benchmark. Run it on an otherwise idle machine:
# a second thread measures nothing while another process holds the other
# core (each line also prints cpu-ms, which is about 2× ms when both
# threads worked).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rounds="${1:-10}"
bench="${2:-ParallelFor|Encode(Image|Text)/(gap=|fp32|bf16|tokens=9)/batch=1\$}"
benchtime="${3:-10x}"
old_commit=954504b

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A copy of the module's sources with the old pool.go.
(cd "$root" && find . -path ./.git -prune -o -path ./bench/compare/.work -prune -o -path ./bench/compare/node_modules -prune -o \
  \( -name '*.go' -o -name '*.s' -o -name '*.h' -o -name go.mod -o -name go.sum \) -print0 |
  tar --null -T - -cf -) | (mkdir -p "$work/src" && tar -xf - -C "$work/src")
git -C "$root" show "$old_commit:internal/engine/pool.go" > "$work/src/internal/engine/pool.go"
(cd "$work/src" && go test -c -o "$work/spin.test" ./internal/engine)
(cd "$root" && go test -c -o "$work/sleep.test" ./internal/engine)

echo "load before: $(uptime)"
for r in $(seq "$rounds"); do
  for v in spin sleep; do
    "$work/$v.test" -test.run XXX -test.bench "$bench" -test.cpu 2 -test.benchtime "$benchtime" 2>/dev/null |
      awk -v v="$v" '/^Benchmark/ { for (i = 3; i < NF; i++) if ($(i+1) ~ /^(us\/op|ms\/image|ms\/text)$/) print v, $1, $(i+1), $i }'
  done
done > "$work/results"
echo "load after: $(uptime)"
echo "benchmark (GOMAXPROCS 2)                          unit      spinning   sleeping   sleeping/spinning  (medians of $rounds rounds)"
sort -k2,2 -k3,3 -k1,1 "$work/results" | awk '
  function median(s,   n, a, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  { key = $2 " " $3; vals[key, $1] = vals[key, $1] " " $4; keys[key] = 1 }
  END {
    for (k in keys) {
      split(k, kk, " ")
      a = median(vals[k, "spin"]); b = median(vals[k, "sleep"])
      printf "%-50s %-9s %9.2f  %9.2f  %8.3f\n", kk[1], kk[2], a, b, b / a
    }
  }' | sort
