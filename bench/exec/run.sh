#!/usr/bin/env bash
# `oxrunner exec` against gitlab-ci-local on the same machine, in the same run (issue #7's benchmark).
#   bench/exec/run.sh [RUNS]          (default 3 runs of each tool)
# Needs a release build (cargo build --release) and, for the peer, gitlab-ci-local 4.75.1 on Node 22 and rsync:
#   npm install --prefix /opt/gcl gitlab-ci-local@4.75.1 node@22 && apt-get install rsync
# The pipelines (bench.gitlab-ci.yml: 20 jobs incl. a 50 MiB log; trivial.gitlab-ci.yml: one `echo hi`) and
# make-bench-repo.sh / run-bench.sh are the project's shared benchmark inputs. Prints run-bench.sh's TSV per tool.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runs="${1:-3}"
bin="${OXRUNNER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/oxrunner}"
gcl_prefix="${GCL_PREFIX:-/opt/gcl}"
work="$(mktemp -d "${TMPDIR:-/tmp}/oxrunner-exec-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

[ -x "$bin" ] || { echo "no release binary at $bin (cargo build --release)" >&2; exit 2; }
echo "## oxrunner exec ($("$bin" -v | head -1))"
"$here/run-bench.sh" "$work/ox" "$runs" -- "$bin" exec
if [ -x "$gcl_prefix/node_modules/.bin/gitlab-ci-local" ]; then
  # gitlab-ci-local needs Node 22: put the npm-installed node first on PATH.
  export PATH="$gcl_prefix/node_modules/node/bin:$gcl_prefix/node_modules/.bin:$PATH"
  echo "## gitlab-ci-local $(gitlab-ci-local --version) on node $(node --version), --shell-executor-no-image"
  "$here/run-bench.sh" "$work/gcl" "$runs" -- gitlab-ci-local --shell-executor-no-image
else
  echo "gitlab-ci-local is not installed under $gcl_prefix: peer not measured" >&2
fi
