#!/usr/bin/env bash
# The main job on built-in defaults: start `zrpc --server ... calc`, call it
# from the command line, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --features cli --bin zrpc
zrpc=target/release/zrpc
addr=${ZRPC_DEMO_ADDR:-tcp://127.0.0.1:4242}
"$zrpc" --server --bind "$addr" calc &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
# No sleep needed: a call made before the server is up waits for it.
set -x
"$zrpc" --timeout 10 "$addr" add 2 3
"$zrpc" "$addr" hello world
"$zrpc" "$addr"
