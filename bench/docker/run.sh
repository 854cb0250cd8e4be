#!/usr/bin/env bash
# Docker executor benchmark (issue #5): wall time of a trivial docker job (image oxrunner-test/busybox, the busybox
# test image of scripts/docker-images; GIT_STRATEGY none, script `true`) from pickup to the final job update, through
# `oxrunner run` against the fake-gitlab binary, against `docker run --rm oxrunner-test/busybox true` measured in the
# same run. Goal: median job / median docker run <= 1.3.
#   bench/docker/run.sh [RUNS]          (default BENCH_RUNS or 7)
# Environment: CARGO_TARGET_DIR (default: the checkout's target/), OXRUNNER_BIN / FAKE_GITLAB_BIN to use prebuilt
# binaries, BENCH_KEEP=1 to keep the work directory (config, runner log). Needs a running dockerd
# (scripts/ensure-docker) and python3. Only 127.0.0.1 and the local Docker socket are used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runs="${1:-${BENCH_RUNS:-7}}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cd "$repo"

if [ -z "${OXRUNNER_BIN:-}" ] || [ -z "${FAKE_GITLAB_BIN:-}" ]; then
  cargo build -q --release -p oxrunner -p fake-gitlab
fi
bin="${OXRUNNER_BIN:-$CARGO_TARGET_DIR/release/oxrunner}"
fake="${FAKE_GITLAB_BIN:-$CARGO_TARGET_DIR/release/fake-gitlab}"
[ -x "$bin" ] && [ -x "$fake" ] || { echo "missing $bin or $fake" >&2; exit 2; }

bash scripts/ensure-docker >/dev/null
scripts/docker-images >/dev/null

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm); $(nproc) cores; $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# docker $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'); $("$bin" -v | head -1)"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 "$here/driver.py" --oxrunner "$bin" --fake "$fake" --runs "$runs"
