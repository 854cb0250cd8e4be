#!/usr/bin/env bash
# Issue #13: idle RSS of `oxrunner run` with the metrics server on (`--listen-address 127.0.0.1:0`), and the
# latency of `/metrics` scrapes while 64 jobs run (goal: p99 <= 5 ms). A wrapper around bench/daemon/run.sh:
#   bench/metrics/run.sh        BENCH_RUNS (3), BENCH_SCRAPES (500), BENCH_SCRAPE_JOBS (64), BENCH_PICKUP_JOBS (15)
# Everything talks to 127.0.0.1 only; the benchmark stops the runner and the fake GitLab itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BENCH_METRICS=1 exec "$here/../daemon/run.sh" rss scrape
