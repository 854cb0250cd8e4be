# Sourced by bench/cache/run.sh and bench/cache/curl-baseline.sh: starts one Garage node (replication 1) on
# 127.0.0.1 under "$work/garage" with a bucket `bench`, and sets s3 (the S3 port), key_id and secret. Needs
# $garage (the binary), $work, the array pids (garage's pid is added for the caller's cleanup) and port().
s3=$(port); rpc=$(port)
mkdir -p "$work/garage"
cat > "$work/garage/garage.toml" <<TOML
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
TOML
g() { "$garage" -c "$work/garage/garage.toml" "$@"; }
# Started directly, not through g(): $! must be garage itself for the cleanup to stop it.
"$garage" -c "$work/garage/garage.toml" server > "$work/garage/log" 2>&1 & pids+=($!)
retry() { for _ in $(seq 200); do "$@" 2>/dev/null && return 0; sleep 0.3; done; "$@"; }
until id=$(g node id -q 2>/dev/null); do sleep 0.3; done
retry g layout assign -z dc1 -c 10G "${id%%@*}" >/dev/null
g layout apply --version 1 >/dev/null
keys=$(g key create bench)
key_id=$(awk -F': *' 'tolower($1) ~ /key id/ {print $2}' <<<"$keys" | tr -d ' ')
secret=$(awk -F': *' 'tolower($1) ~ /secret key/ {print $2}' <<<"$keys" | tr -d ' ')
g bucket create bench >/dev/null
g bucket allow --read --write --owner bench --key bench >/dev/null
