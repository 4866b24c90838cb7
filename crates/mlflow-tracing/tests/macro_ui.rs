//! Compile-time behaviour of `#[trace]` and `trace_call!`: what must compile, and the diagnostics of what
//! must not (each pointing at the offending token).

#[test]
fn macro_expansions() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
