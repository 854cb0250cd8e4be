#!/usr/bin/env bash
# Masker benchmark (issue #11 item 2): build time, scan throughput and memory growth of the job log masker for
# one 1 MiB masked value (distinct bytes; one repeated character), 10,000 masked 64-byte values, and the most
# compare work a log built for it can cause (worst).
#   bench/mask/run.sh [one-mib|one-mib-repeated|many|worst|token]...     (from anywhere; no case = all)
# Environment: BENCH_RUNS (5): each case is run this many times (a fresh process each time); take the median.
# CARGO_TARGET_DIR (default: the checkout's target/). No network. Results are `name value unit goal` lines.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
runs="${BENCH_RUNS:-5}"

cd "$repo"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm); $(nproc) cores; $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -q -p oxrunner-core --bench mask --no-run
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for _ in $(seq "$runs"); do
    cargo bench -q -p oxrunner-core --bench mask -- "$@" | tee -a "$out"
done
echo "# median of $runs runs:"
sort -k1,1 -k2,2n "$out" | awk '
    { name[$1] = 1; v[$1, ++n[$1]] = $2; unit[$1] = $3; goal[$1] = $4 }
    END { for (k in name) { m = v[k, int((n[k] + 1) / 2)]; printf "%s %s %s %s\n", k, m, unit[k], goal[k] } }' | sort
