#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the real zerorpc-python
# peer (0.6.3, from PyPI) into .venv and the real zerorpc-node peer (0.9.8,
# from npm) into tests/node/node_modules when missing, checks formatting and
# lints, then runs every test of the workspace (the zerorpc library with its
# `cli` feature, whose binary many tests start, the zerorpc-zeromq transport,
# the service macro and the tarpc/tonic comparison's smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import zerorpc" >/dev/null 2>&1; then
  echo "installing zerorpc-python 0.6.3 into .venv (interop tests need it)" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet zerorpc==0.6.3
fi
# tests/cluster.rs runs hosts in network namespaces (root) with dnsmasq
# answering their names.
if ! command -v dnsmasq >/dev/null 2>&1 && [ ! -x /usr/sbin/dnsmasq ]; then
  echo "installing dnsmasq-base (the cluster tests need it)" >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q dnsmasq-base >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dnsmasq-base >/dev/null; } \
      || echo "apt-get could not install dnsmasq-base; tests/cluster.rs will fail" >&2
  else
    echo "cannot install dnsmasq: run as root on Debian, or install it (apt-get install dnsmasq-base)" >&2
  fi
fi
if ! (cd tests/node && node -e "require('zerorpc')") >/dev/null 2>&1; then
  echo "installing zerorpc-node 0.9.8 into tests/node/node_modules (interop tests need it)" >&2
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi
export ZRPC_PYTHON="$PWD/.venv/bin/python"
# A clean build (CI's case) is faster without incremental state, and that
# state grows without bound across runs (tens of GB).
export CARGO_INCREMENTAL=0
# tests/hostile.rs attacks the server users run: the release binary.
cargo build --locked --release --quiet --features zerorpc/cli --bin zrpc
export ZRPC_RELEASE_BIN="$PWD/target/release/zrpc"
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets --features zerorpc/cli --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --features zerorpc/cli --quiet
cargo test --locked --workspace --features zerorpc/cli "$@"
