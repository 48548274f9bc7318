//! Guards the test suite itself.

/// The CLI, interop, resilience and soak tests start the `zrpc` binary and
/// are compiled only with the `cli` feature. Without it they would be left
/// out without a word; this test makes that a failure instead.
#[test]
#[allow(clippy::assertions_on_constants)] // constant per build: that is the point
fn the_whole_suite_is_compiled() {
    assert!(
        cfg!(feature = "cli"),
        "the cli, interop_python, resilience and soak tests need the zrpc binary: \
         run the suite with `scripts/test.sh` (or `cargo test --features cli`)"
    );
}
