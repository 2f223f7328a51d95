//! The `assert_*!` macros' misuse is a compile error a user can read: each `tests/ui/*.rs`
//! fails to compile with the message in its `.stderr` (`TRYBUILD=overwrite cargo test --test ui`
//! rewrites them after an intended change).

#[test]
fn macro_misuse_is_a_readable_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
