//! Guards the test suite itself.

/// tests/command/, hostile, soak and cluster start the `zrpc` binary and
/// are compiled only with the `cli` feature. Without it they would be left
/// out without a word; this test makes that a failure instead.
#[test]
#[allow(clippy::assertions_on_constants)] // constant per build: that is the point
fn the_whole_suite_is_compiled() {
    assert!(
        cfg!(feature = "cli"),
        "tests/command/, hostile, soak and cluster need the zrpc binary: \
         run the suite with `scripts/test.sh` (or `cargo test --features cli`)"
    );
}
