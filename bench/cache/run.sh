#!/usr/bin/env bash
# Cache benchmark (issue #14): save and restore of one cache (default 1 GiB / 20k files, bench/archive/gen_tree.py)
# through the local store and through an S3 bucket (a one-node Garage on 127.0.0.1), in the same run, with the
# same `oxrunner run` daemon (two runners: one local-only, one with [runners.cache] Type = "s3").
#   bench/cache/run.sh            (from anywhere)
# Environment: BENCH_BYTES (1 GiB), BENCH_FILES (20000), BENCH_PROFILE (release; `debug` to reuse a debug build),
# OXRUNNER_GARAGE (scripts/ensure-garage), BENCH_SKIP_BUILD=1 (use the binaries already in
# ${CARGO_TARGET_DIR:-target}/<profile>, e.g. a quicker non-LTO probe build), BENCH_LOG (copy the daemon's log
# there; OXRUNNER_LOG=oxrunner=debug adds its debug lines), BENCH_RUNS (3: restores per store; the median is printed),
# BENCH_STORES (`local remote`; one of them to measure only that store), BENCH_REUSE_DIR (see job() below).
# Times are the job log's restore_cache/archive_cache sections, from the timestamps (FF_TIMESTAMPS, µs) of the lines
# that open and close them; RSS is the daemon's peak (VmHWM, reset before each phase) during each phase. Only 127.0.0.1 is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
bytes=${BENCH_BYTES:-$((1 << 30))}
files=${BENCH_FILES:-20000}
profile=${BENCH_PROFILE:-release}
flag=(); [ "$profile" = release ] && flag=(--release)
[ "${BENCH_SKIP_BUILD:-}" = 1 ] || cargo build -q "${flag[@]}" -p oxrunner -p fake-gitlab
target="${CARGO_TARGET_DIR:-$repo/target}/$profile"
garage=${OXRUNNER_GARAGE:-$(scripts/ensure-garage | tail -n 1)}

work=$(mktemp -d /tmp/oxrunner-bench-cache.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "${BENCH_LOG:-}" ] || cp "$work/runner.log" "$BENCH_LOG" || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm); $(nproc) cores; $(git rev-parse --short HEAD); $profile build"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); project directory per job: \
$([ "${BENCH_REUSE_DIR:-}" = 1 ] && echo "one per store, reused" || echo "new")"

# One Garage node (replication 1): the benchmark measures the transfer path, the fleet test covers replication.
. "$here/garage-node.sh"
garage_pid=${pids[-1]}

"$target/fake-gitlab" > "$work/fake.out" 2>&1 & pids+=($!)
until url=$(head -n 1 "$work/fake.out" 2>/dev/null) && [ -n "$url" ]; do sleep 0.2; done
admin() { curl -sf -X "$1" -H 'content-type: application/json' "$url/fake-admin/$2" ${3:+-d "$3"}; }
tok() { admin POST runners "{\"description\":\"$1\",\"tags\":[\"$1\"],\"run_untagged\":false}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
local_token=$(tok local); remote_token=$(tok remote)
runner() {
  printf '\n[[runners]]\n  name = "%s"\n  url = "%s"\n  token = "%s"\n  executor = "shell"\n  builds_dir = "%s"\n  cache_dir = "%s"\n' \
    "$1" "$url" "$2" "$work/$1/builds" "$work/$1/cache"
  printf '  [runners.custom_build_dir]\n    enabled = true\n'
}
{
  printf 'concurrent = 1\ncheck_interval = 1\n'
  runner local "$local_token"
  runner remote "$remote_token"
  printf '  [runners.cache]\n    Type = "s3"\n    Shared = true\n    [runners.cache.s3]\n'
  printf '      ServerAddress = "127.0.0.1:%s"\n      AccessKey = "%s"\n      SecretKey = "%s"\n' "$s3" "$key_id" "$secret"
  printf '      BucketName = "bench"\n      BucketLocation = "garage"\n      Insecure = true\n'
} > "$work/config.toml"
chmod 600 "$work/config.toml"
"$target/oxrunner" run -c "$work/config.toml" > "$work/runner.log" 2>&1 & runner_pid=$!; pids+=($runner_pid)

python3 bench/archive/gen_tree.py "$work/src" "$bytes" "$files" >/dev/null
# Each job gets a directory of its own (GIT_CLONE_PATH): a job reusing the previous one's would first delete its
# 20,000 files, and on ext4 the files created right after in the same block groups are slowed by the inode
# allocator's skipping of recently freed inodes (measured for `exec` in #16), which the restore would then pay.
# BENCH_REUSE_DIR=1 keeps one directory per store, the earlier way.
job() { # name tag policy script (called in $(...): no counter survives, hence the clock)
  dir="$1-$(date +%s%N)"; [ "${BENCH_REUSE_DIR:-}" = 1 ] && dir=$2
  admin POST jobs "{\"name\":\"$1\",\"tags\":[\"$2\"],\"script\":[\"$4\"],\"variables\":[[\"GIT_CLONE_PATH\",\"$work/$2/builds/$dir\",{\"public\":true}],[\"GIT_STRATEGY\",\"empty\",{\"public\":true}],[\"CACHE_COMPRESSION_LEVEL\",\"fastest\",{\"public\":true}]],\"cache\":[{\"key\":\"bench\",\"policy\":\"$3\",\"paths\":[\"data/\"]}]}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
runs=${BENCH_RUNS:-3}
section() { # id name -> seconds between the lines that open and close the section
  local trace
  while :; do
    trace=$(admin GET "jobs/$1")
    python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if j["status"] in ("success","failed","canceled") else 1)' "$trace" && break
    sleep 1
  done
  python3 - "$trace" "$2" <<'PY'
import base64, datetime, json, re, sys
j = json.loads(sys.argv[1]); t = j["trace"]; name = sys.argv[2]
if j["status"] != "success": sys.exit("job %s %s:\n%s" % (j["id"], j["status"], t))
raw = base64.b64decode(j["trace_base64"]).decode("utf-8", "replace")
def at(marker):
    for line in raw.split("\n"):
        if re.search(r"%s:\d+:%s\b" % (marker, name), line):
            stamp = line.split(" ", 1)[0].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp)
    sys.exit("no %s of %s in job %s" % (marker, name, j["id"]))
print("%.2f" % (at("section_end") - at("section_start")).total_seconds())
PY
}
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$runner_pid/status"; }
# Each phase's own peak: writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
reset_hwm() { echo 5 > "/proc/$runner_pid/clear_refs" 2>/dev/null || true; }
# Before each timed restore: every earlier job's files (about 2 GiB a job: the tree and the archive) leave the page
# cache, then the store's own copy (the local archive, Garage's data) is read back in. Without it, the later
# restores ran with 10-20 GiB of cache behind them and paid for reclaiming it, whichever store they used. Needs
# root for drop_caches, which empties the clean page cache of the whole machine (run it on a quiet box;
# BENCH_DROP_CACHES=0 skips it); without, the restores of both stores alternate anyway. Every job keeps its directory
# until the end (deleting would slow the next job's file creation, see job()): a run needs about 2 GiB of /tmp per job.
settle() {
  sync
  [ "${BENCH_DROP_CACHES:-1}" = 1 ] && [ -w /proc/sys/vm/drop_caches ] && echo 1 > /proc/sys/vm/drop_caches
  find "$work/local/cache" "$work/remote/cache" "$work/garage/data" -type f -exec cat {} + > /dev/null 2>&1 || true
}
stores=${BENCH_STORES:-local remote}
for tag in $stores; do
  case $tag in local | remote) ;; *) echo "BENCH_STORES: unknown store $tag (local, remote)" >&2; exit 2 ;; esac
done
for tag in $stores; do
  reset_hwm
  save=$(section "$(job "save-$tag" "$tag" pull-push "cp -r $work/src data")" archive_cache)
  echo "cache_save_$tag $save s rss_peak_mib $(hwm)"
done
declare -A times peak cpu_runner cpu_store
# CPU time (user + system) of the runner and of Garage over each restore job: on a 2-core box the store's share
# comes out of the same two cores.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
secs() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'; }
for _ in $(seq "$runs"); do
  # Alternating the stores, as bench/exec does: a slow minute of a shared machine hits both.
  for tag in $stores; do
    # The remote runner plays a machine of the fleet that lacks the cache: without its local copy, every restore
    # downloads (with one, a copy no older than the object is used as is: measured on its own below).
    [ "$tag" = local ] || rm -rf "${work:?}/$tag/cache"
    settle
    reset_hwm
    r0=$(ticks "$runner_pid"); g0=$(ticks "$garage_pid")
    times[$tag]+="$(section "$(job "restore-$tag" "$tag" pull "test -d data")" restore_cache) "
    peak[$tag]="$(printf '%s\n' "${peak[$tag]:-0}" "$(hwm)" | sort -n | tail -n 1)"
    cpu_runner[$tag]+="$(secs $(($(ticks "$runner_pid") - r0))) "
    cpu_store[$tag]+="$(secs $(($(ticks "$garage_pid") - g0))) "
  done
done
for tag in $stores; do
  median=$(printf '%s\n' ${times[$tag]} | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  echo "cache_restore_$tag $median s (runs: ${times[$tag]% }) rss_peak_mib ${peak[$tag]}" \
    "cpu_s runner: ${cpu_runner[$tag]% } store: ${cpu_store[$tag]% }"
done
if [[ " $stores " = *" remote "* ]]; then
  settle
  reset_hwm
  kept=$(section "$(job "restore-remote-kept" remote pull "test -d data")" restore_cache)
  echo "cache_restore_remote_local_copy_up_to_date $kept s rss_peak_mib $(hwm)"
fi
sleep 2
echo "rss_idle_after_jobs_mib $(awk '/VmRSS/ {print int($2/1024)}' "/proc/$runner_pid/status")"
echo "# goal: remote restore <= 1.5x local restore; RSS flat (<= 64 MiB) while transferring"
