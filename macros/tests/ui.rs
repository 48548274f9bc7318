//! `#[zerorpc::service]` misused: each case in tests/ui fails to compile
//! with the message in its `.stderr` file.

#[test]
fn misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
