#!/usr/bin/env bash
# Daemon benchmark (issue #3): pickup latency with long polling, trivial-job throughput at concurrent = 8,
# idle RSS, and RSS / wall time of a job printing 1 GiB of log against bash alone.
#   bench/daemon/run.sh [pickup|throughput|rss|log]...     (from anywhere; no section = all)
# Environment: BENCH_RUNS (3), BENCH_PICKUP_JOBS (15), BENCH_THROUGHPUT_JOBS (200), BENCH_LOG_BYTES (1 GiB),
# CARGO_TARGET_DIR (default: the checkout's target/). Everything talks to 127.0.0.1 only; the runner and the fake GitLab are
# stopped by the benchmark itself. Results are printed as `name value unit goal` lines plus a summary.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}"

cd "$repo"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm); $(nproc) cores; $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
exec cargo bench -q -p oxrunner --bench daemon -- "$@"
