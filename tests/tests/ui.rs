//! The `#[kafka_listener]` compile errors, each spanned at the user's token (`tests/ui/fail/*.stderr`),
//! and a listener using every extractor that must compile.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
