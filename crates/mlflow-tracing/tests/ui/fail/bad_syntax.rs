use mlflow_tracing::{trace, trace_call};

#[trace(span_type = LLM)]
fn unquoted() {}

#[trace(kind = "LLM")]
fn unknown_argument() {}

#[trace(name = "")]
fn empty_name() {}

fn main() {
    let value = 3;
    let _ = trace_call!(value + 1);
}
