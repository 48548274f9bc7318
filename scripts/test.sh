#!/usr/bin/env bash
# The whole test suite, on a fresh machine. Installs what it needs when it is
# missing: the real zerorpc-python peer (0.6.3, PyPI) into .venv, the real
# zerorpc-node peer (0.9.8, npm) into tests/node/node_modules, dnsmasq for the
# cluster tests, cargo-nextest to run the tests. Then checks formatting,
# builds every target of the workspace once with clippy's lints denied, runs
# every test (.config/nextest.toml says which run alone), the doc tests, and
# the docs' own check.
#
# Arguments go to `cargo nextest run` (a filter, say: scripts/test.sh rpc).
#
# Where the time goes, on a 2-core machine from a clean clone: compiling.
# So each target is compiled once: the test build is also the lint pass
# (clippy-driver as the workspace's compiler, scripts/clippy-rustc), and
# the release server, the docs and the doc tests build while the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
say() { echo "test.sh [$((SECONDS - started)) s]: $*" >&2; }

peers() {
  if ! .venv/bin/python -c "import zerorpc" >/dev/null 2>&1; then
    say "installing zerorpc-python 0.6.3 into .venv (interop tests need it)"
    python3 -m venv .venv
    .venv/bin/pip install --quiet zerorpc==0.6.3
  fi
  if ! (cd tests/node && node -e "require('zerorpc')") >/dev/null 2>&1; then
    say "installing zerorpc-node 0.9.8 into tests/node/node_modules (interop tests need it)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # tests/cluster.rs runs hosts in network namespaces (root) with dnsmasq
  # answering their names.
  if ! command -v dnsmasq >/dev/null 2>&1 && [ ! -x /usr/sbin/dnsmasq ]; then
    say "installing dnsmasq-base (the cluster tests need it)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -q dnsmasq-base >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dnsmasq-base >/dev/null; } \
        || say "apt-get could not install dnsmasq-base; tests/cluster.rs will fail"
    else
      say "cannot install dnsmasq: run as root on Debian, or install it (apt-get install dnsmasq-base)"
    fi
  fi
}

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (runs the tests): cargo install --locked cargo-nextest"
  cargo install --locked cargo-nextest
fi
CLIPPY_DRIVER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
if [ -z "$CLIPPY_DRIVER" ]; then
  say "clippy is missing: rustup component add clippy"
  exit 1
fi
export CLIPPY_DRIVER
lint=(env RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc")

mkdir -p target/nextest
# The peers download while the workspace compiles.
peers >target/nextest/peers.log 2>&1 &
peers_pid=$!

export CARGO_INCREMENTAL=0
# No debug info in this build: the binaries it links take a third less
# time without it, and a failing test still names its file and line.
export CARGO_PROFILE_DEV_DEBUG=false
features=(--workspace --features zerorpc/cli)
cargo fmt --all --check

# One build of every target that is also `cargo clippy --all-targets -- -D
# warnings` (the benches are linted where they run, at the end). The run
# below reuses it from the metadata written here, without the wrapper, so
# the tests' own cargo runs (tests/outside.rs, the UI tests) see a plain
# toolchain.
say "building (and linting) the workspace"
"${lint[@]}" cargo nextest list --locked "${features[@]}" \
  --list-type binaries-only --message-format json >target/nextest/binaries.json
cargo metadata --locked --format-version 1 >target/nextest/cargo-metadata.json
reuse=(--binaries-metadata target/nextest/binaries.json
  --cargo-metadata target/nextest/cargo-metadata.json)

# tests/hostile.rs attacks, and soak.rs and cluster.rs load, the server users
# run: the release binary. It, the docs and the doc tests build at low
# priority while the other tests run.
(
  nice -n 19 cargo build --locked --release --quiet --features zerorpc/cli --bin zrpc
  # The published libraries' docs, with every feature the library has (the
  # `cli` feature only adds the binaries).
  RUSTDOCFLAGS="-D warnings" nice -n 19 cargo doc --locked --no-deps --lib --quiet \
    -p zerorpc -p zerorpc-zeromq -p zerorpc-macros --features zerorpc/dns,zerorpc/conformance
  # The doc tests, and the benches run once each as tests.
  for targets in --doc --benches; do
    "${lint[@]}" nice -n 19 cargo test --locked "${features[@]}" "$targets" --quiet
  done
) >target/nextest/background.log 2>&1 &
background_pid=$!

if ! wait "$peers_pid"; then
  cat target/nextest/peers.log >&2
  say "installing the zerorpc peers failed (above)"
  exit 1
fi
export ZRPC_PYTHON="$PWD/.venv/bin/python"
export ZRPC_RELEASE_BIN="$PWD/target/release/zrpc"

# The tests that measure latency, fairness, failover or memory (scale, soak,
# cluster, and hostile's attacks on the release server) run last, when
# nothing else runs: a build in the background, even at nice 19, moved
# their figures.
alone='binary(=hostile) | binary(=scale) | binary(=soak) | binary(=cluster)'
status=0
say "running the tests"
cargo nextest run "${reuse[@]}" -E "not ($alone)" --no-tests=pass "$@" || status=$?
say "waiting for the release server, the docs and the doc tests"
if ! wait "$background_pid"; then
  cat target/nextest/background.log >&2
  say "the release build, the docs or the doc tests failed (above)"
  exit 1
fi
say "running the tests that measure time, alone"
cargo nextest run "${reuse[@]}" -E "$alone" --no-tests=pass "$@" || status=$?
say "done"
exit "$status"
