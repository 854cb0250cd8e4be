#!/usr/bin/env bash
# Benchmark oxrunner-archive against Info-ZIP on a 1 GiB / 20,000-file tree.
#   bench/archive/run.sh            (from the repository root; needs python3, zip, unzip)
# Prints a TSV (seconds per run, median of 3) and the speed-up ratios. The tree lives in a temporary
# directory that is removed at exit.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
total_bytes="${BENCH_BYTES:-1073741824}"
files="${BENCH_FILES:-20000}"
runs=3

(cd "$repo" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -p oxrunner-archive --example oxzip)
oxzip="$target_dir/release/examples/oxzip"

work="$(mktemp -d "${TMPDIR:-/tmp}/oxarchive-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "generating $files files, $total_bytes bytes in $work ..." >&2
python3 "$here/gen_tree.py" "$work/tree" "$total_bytes" "$files"

# time_it <cmd...>: run once, print "<wall seconds> <cpu seconds (user+sys)>"
time_it() {
    local f="$work/time.out"
    /usr/bin/time -f '%e %U %S' -o "$f" "$@" >/dev/null
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$f"
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

declare -A med size cpu
row() { # row <name> <size-file or -> <cmd...>
    local name=$1 sizefile=$2; shift 2
    local walls=() cpus=() i w c
    for ((i = 0; i < runs; i++)); do
        rm -rf "$work/out" "$work/ox.zip" "$work/info.zip"
        if [[ $name == *extract* ]]; then mkdir -p "$work/out"; fi
        sync
        read -r w c < <(time_it "$@")
        walls+=("$w")
        cpus+=("$c")
    done
    med[$name]=$(median "${walls[@]}")
    cpu[$name]=$(median "${cpus[@]}")
    size[$name]=-
    if [[ $sizefile != - ]]; then size[$name]=$(stat -c %s "$sizefile"); fi
    printf '%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\n' "$name" "${walls[@]}" "${med[$name]}" "${cpu[$name]}" "${size[$name]}"
}

echo "cores: $(nproc); tree: $(du -sb "$work/tree" | cut -f1) bytes in $(find "$work/tree" -type f | wc -l) files"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'tool\trun1_s\trun2_s\trun3_s\tmedian_wall_s\tmedian_cpu_s\tarchive_bytes\n'
row "oxzip_create_default" "$work/ox.zip" "$oxzip" create "$work/tree" "$work/ox.zip" default
cp "$work/ox.zip" "$work/ox.keep.zip"
row "infozip_create_default" "$work/info.zip" sh -c "cd '$work/tree' && zip -r -q '$work/info.zip' ."
cp "$work/info.zip" "$work/info.keep.zip"
# Both extractors read the same (Info-ZIP made) archive.
row "oxzip_extract" - "$oxzip" extract "$work/info.keep.zip" "$work/out"
diff -rq "$work/tree" "$work/out" >/dev/null && echo "# oxzip extraction verified identical to the source tree" >&2
row "unzip_extract" - unzip -q "$work/info.keep.zip" -d "$work/out"
unzip -tq "$work/ox.keep.zip" >&2

echo
printf 'create speed-up (zip / oxzip):\t%.2fx\n' "$(echo "${med[infozip_create_default]} / ${med[oxzip_create_default]}" | bc -l)"
printf 'extract speed-up (unzip / oxzip):\t%.2fx\n' "$(echo "${med[unzip_extract]} / ${med[oxzip_extract]}" | bc -l)"
printf 'create CPU-time ratio (zip / oxzip):\t%.2fx\n' "$(echo "${cpu[infozip_create_default]} / ${cpu[oxzip_create_default]}" | bc -l)"
printf 'extract CPU-time ratio (unzip / oxzip):\t%.2fx\n' "$(echo "${cpu[unzip_extract]} / ${cpu[oxzip_extract]}" | bc -l)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
