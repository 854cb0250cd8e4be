#!/usr/bin/env bash
# The store's own speed, for bench/cache/run.sh: PUT and GET of a 1 GiB random object on a one-node Garage on
# 127.0.0.1 (the same set-up as run.sh) with curl --aws-sigv4: one stream to /dev/null and to a file, and 64 ranged
# 16 MiB parts 4 at a time into one file (what the runner does). Needs curl >= 7.75 and scripts/ensure-garage.
set -euo pipefail
garage=${OXRUNNER_GARAGE:-/var/cache/oxrunner-test/garage/bin/garage}
work=$(mktemp -d /tmp/oxrunner-garage-raw.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/garage-node.sh"
head -c $((1<<30)) /dev/urandom > "$work/blob"
sync
c() { curl -sS -f -w "%{http_code} %{size_download} %{size_upload}\n" --aws-sigv4 "aws:amz:garage:s3" --user "$key_id:$secret" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
t0=$(date +%s%N); c -T "$work/blob" "http://127.0.0.1:$s3/bench/blob" -o /dev/null; t1=$(date +%s%N)
echo "PUT 1 GiB: $(( (t1-t0)/1000000 )) ms"
for i in 1 2 3; do
t0=$(date +%s%N); c "http://127.0.0.1:$s3/bench/blob" -o /dev/null; t1=$(date +%s%N)
echo "GET 1 GiB to /dev/null: $(( (t1-t0)/1000000 )) ms"
done
t0=$(date +%s%N); c "http://127.0.0.1:$s3/bench/blob" -o "$work/got"; t1=$(date +%s%N)
echo "GET 1 GiB to a file: $(( (t1-t0)/1000000 )) ms"
t0=$(date +%s%N); cat "$work/blob" > /dev/null; t1=$(date +%s%N)
echo "cat of the local file: $(( (t1-t0)/1000000 )) ms"
# 16 MiB ranged parts, 4 at a time, into one file at their offsets (what the runner does), with curl + dd.
part() { local i=$1 s=$(( $1 * 16777216 )); local e=$(( s + 16777215 ));
  curl -sS -f --aws-sigv4 "aws:amz:garage:s3" --user "$key_id:$secret" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -H "Range: bytes=$s-$e" "http://127.0.0.1:$s3/bench/blob" | dd of="$work/parts" bs=1M seek=$((i*16)) conv=notrunc status=none; }
export -f part; export key_id secret s3 work
t0=$(date +%s%N); seq 0 63 | xargs -P4 -I{} bash -c 'part {}'; t1=$(date +%s%N)
echo "GET 1 GiB in 64 ranged parts, 4 at a time, to a file: $(( (t1-t0)/1000000 )) ms"
cmp "$work/parts" "$work/blob" && echo same
