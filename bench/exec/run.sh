#!/usr/bin/env bash
# `oxrunner exec` against gitlab-ci-local on the same machine, in the same run (issues #7 and #16).
#   bench/exec/run.sh [RUNS]          (default 10 runs of each tool and pipeline)
# Needs a release build (cargo build --release) and, for the peer, gitlab-ci-local 4.75.1 on Node 22 and rsync:
#   npm install --prefix /opt/gcl gitlab-ci-local@4.75.1 node@22 && apt-get install rsync
# The pipelines (bench.gitlab-ci.yml: 20 jobs incl. a 50 MiB log; trivial.gitlab-ci.yml: one `echo hi`) and
# make-bench-repo.sh are the project's shared benchmark inputs.
#
# Each run builds fresh repositories for both tools in new directories (not timed; see below), then runs the two tools
# one after the other, alternating which goes first, so a slow minute of a shared machine hits both. Wall time comes
# from `date +%s%N` around the command (nanoseconds, not `time`'s 10 ms), peak RSS from `/usr/bin/time -f %M`, output
# goes to a file. Each timed run starts after an untimed `sync`, so it does not pay for the previous run's dirty
# pages. Prints one TSV line per run and tool, then the medians and the ratios.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runs="${1:-10}"
bin="${OXRUNNER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/oxrunner}"
gcl_prefix="${GCL_PREFIX:-/opt/gcl}"
work="$(mktemp -d "${TMPDIR:-/tmp}/oxrunner-exec-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

[ -x "$bin" ] || { echo "no release binary at $bin (cargo build --release)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
tools=(ox)
if [ -x "$gcl_prefix/node_modules/.bin/gitlab-ci-local" ]; then
  # gitlab-ci-local needs Node 22: put the npm-installed node first on PATH.
  export PATH="$gcl_prefix/node_modules/node/bin:$gcl_prefix/node_modules/.bin:$PATH"
  tools+=(gcl)
  echo "# peer: gitlab-ci-local $(gitlab-ci-local --version) on node $(node --version), --shell-executor-no-image"
else
  echo "gitlab-ci-local is not installed under $gcl_prefix: peer not measured" >&2
fi
echo "# oxrunner: $("$bin" -v | head -1) ($bin)"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
if [ "${BENCH_DELETE_BETWEEN:-0}" = 1 ]; then
  echo "# repositories rebuilt in place before each run (BENCH_DELETE_BETWEEN=1)"
else
  echo "# a new directory per run, nothing deleted until the end (needs ~300 MB of disk per run)"
fi

# run TOOL CASE RUN: one timed run in a fresh repository; appends "case tool run rc ms rss_kb" to results.
run_one() {
  local tool=$1 case=$2 r=$3 dir="$work/$1-$3/$2" log="$work/$1-$2-$3"
  [ "${BENCH_DELETE_BETWEEN:-0}" = 1 ] && dir="$work/$1/$2"
  local cmd=("$bin" exec)
  [ "$tool" = gcl ] && cmd=(gitlab-ci-local --shell-executor-no-image)
  local t0 t1 rc=0
  # Untimed: write back what the previous run (of either tool) left dirty, so neither tool is throttled by the
  # other's writes (the box's writeback is slow: a run right after 400 MB of dirty pages took 10x longer).
  sync
  t0=$(date +%s%N)
  ( cd "$dir" && /usr/bin/time -f %M -o "$log.rss" "${cmd[@]}" >"$log.out" 2>&1 ) || rc=$?
  t1=$(date +%s%N)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$r" "$rc" "$(( (t1 - t0) / 1000000 ))" \
    "$(tail -1 "$log.rss")" | tee -a "$work/results"
}

printf 'case\ttool\trun\trc\twall_ms\tmaxrss_kb\n'
for r in $(seq 1 "$runs"); do
  # A new directory for every run, and nothing deleted until the end. This box's root file system is ext4 without
  # a journal, where allocating an inode skips (and reads the inode table for) every inode freed in the last
  # 60-360 s of its block group: rebuilding the repositories in place (`rm -rf` of the previous run's ~5,000
  # files right before the timed run) made every file either tool created cost ~250 us (perf: ext4
  # `recently_deleted`), measuring the harness's own deletions. BENCH_DELETE_BETWEEN=1 rebuilds in place as before.
  for t in "${tools[@]}"; do
    if [ "${BENCH_DELETE_BETWEEN:-0}" = 1 ]; then
      "$here/make-bench-repo.sh" "$work/$t" >/dev/null
    else
      "$here/make-bench-repo.sh" "$work/$t-$r" >/dev/null
    fi
  done
  order=("${tools[@]}")
  # Odd runs start with oxrunner, even runs with the peer.
  if [ $((r % 2)) = 0 ] && [ ${#tools[@]} = 2 ]; then order=(gcl ox); fi
  for c in trivial full; do
    for t in "${order[@]}"; do run_one "$t" "$c" "$r"; done
  done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
declare -A wall rss
echo
printf 'case\ttool\tmedian_wall_ms\tmedian_maxrss_kb\tfailed_runs\n'
for c in trivial full; do
  for t in "${tools[@]}"; do
    wall[$c$t]=$(awk -v c="$c" -v t="$t" '$1==c && $2==t {print $5}' "$work/results" | median)
    rss[$c$t]=$(awk -v c="$c" -v t="$t" '$1==c && $2==t {print $6}' "$work/results" | median)
    failed=$(awk -v c="$c" -v t="$t" '$1==c && $2==t && $4!=0' "$work/results" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$t" "${wall[$c$t]}" "${rss[$c$t]}" "$failed"
  done
  if [ ${#tools[@]} = 2 ]; then
    awk -v c="$c" -v a="${wall[${c}gcl]}" -v b="${wall[${c}ox]}" -v ma="${rss[${c}gcl]}" -v mb="${rss[${c}ox]}" \
      'BEGIN {printf "%s: speed-up %.1fx, peak RSS 1/%.1f\n", c, a / b, ma / mb}'
  fi
done
