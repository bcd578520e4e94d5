#!/usr/bin/env bash
# The main job, end to end, on the built-in test cluster:
#   export a 3-node (replicas 2) demo cluster -> verify the backup -> import it into an empty
#   4-node (replicas 3) cluster -> compare the backup with the restored cluster.
# Everything listens on 127.0.0.1 only; the clusters stop when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bins
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_cluster() { # NAME NODES REPLICAS [--demo]; sets $url (no subshell: the pid must be ours)
    local name=$1 nodes=$2 replicas=$3; shift 3
    "$bin/fb-devcluster" --nodes "$nodes" --replicas "$replicas" --port 0 "$@" >"$work/$name.urls" 2>"$work/$name.log" &
    pids+=($!)
    for _ in $(seq 100); do
        [ "$(wc -l <"$work/$name.urls")" -ge "$nodes" ] && break
        sleep 0.1
    done
    url=$(head -n 1 "$work/$name.urls")
}
step() { printf '\n$ %s\n' "$*"; }

start_cluster source 3 2 --demo
src=$url
start_cluster target 4 3
dst=$url
echo "source cluster: 3 nodes, replicas 2, demo data, at $src"
echo "target cluster: 4 nodes, replicas 3, empty, at $dst"
cd "$work"

step "fb-export --host $src | zstd -q > backup.tar.zst"
"$bin/fb-export" --host "$src" | zstd -q >backup.tar.zst
step "zstd -dc backup.tar.zst | fb-verify --deep"
zstd -dc backup.tar.zst | "$bin/fb-verify" --deep
step "zstd -dc backup.tar.zst | fb-import --host $dst --concurrency 4"
zstd -dc backup.tar.zst | "$bin/fb-import" --host "$dst" --concurrency 4
step "fb-manifest diff --content backup.tar.zst $dst"
"$bin/fb-manifest" diff --content backup.tar.zst "$dst"
printf '\ndemo: OK (backup verified, restored into a differently sized cluster, no entry differs in content)\n'
