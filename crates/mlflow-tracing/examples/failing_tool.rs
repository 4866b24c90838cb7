//! An agent whose tool fails: the tool's span gets status ERROR and an `exception` event with the error's
//! source chain; the agent recovers with a fallback, so the trace itself succeeds. A second request fails
//! outright and produces an ERROR trace.
//! Run: `cargo run -p mlflow-tracing --example failing_tool`

use mlflow_tracing::core::TraceState;
use mlflow_tracing::{SpanStatusCode, get_last_active_trace_id, get_trace, trace};

#[derive(Debug, thiserror::Error)]
enum ToolError {
    #[error("exchange rate service rejected currency {currency:?}")]
    UnknownCurrency {
        currency: String,
        #[source]
        cause: std::io::Error,
    },
}

#[trace(span_type = "TOOL")]
fn exchange_rate(currency: &str) -> Result<f64, ToolError> {
    match currency {
        "EUR" => Ok(1.08),
        "GBP" => Ok(1.27),
        other => Err(ToolError::UnknownCurrency {
            currency: other.to_owned(),
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "HTTP 404 from rates.example"),
        }),
    }
}

#[trace(span_type = "AGENT")]
fn convert(amount: f64, currency: &str, allow_fallback: bool) -> Result<f64, ToolError> {
    match exchange_rate(currency) {
        Ok(rate) => Ok(amount * rate),
        Err(_) if allow_fallback => Ok(amount),
        Err(error) => Err(error),
    }
}

fn print_last_trace() -> std::sync::Arc<mlflow_tracing::Trace> {
    let trace = get_trace(&get_last_active_trace_id().expect("a trace completed"))
        .expect("buffered in process");
    println!(
        "{}",
        serde_json::to_string_pretty(&trace.to_json_value()).expect("a JSON value prints")
    );
    trace
}

fn main() {
    // Exports to MLFLOW_TRACKING_URI when it is set; the trace is printed from the in-process buffer either way.
    let _tracing = mlflow_tracing::init();
    let recovered = convert(100.0, "XYZ", true).expect("the fallback recovers");
    eprintln!("recovered: {recovered}");
    let trace = print_last_trace();
    assert_eq!(trace.info.state, TraceState::Ok);
    let tool = &trace.data.spans[1];
    assert_eq!(tool.status.code, SpanStatusCode::Error);
    let stacktrace = tool.events[0].attributes["exception.stacktrace"]
        .as_str()
        .unwrap_or_default();
    assert!(stacktrace.contains("HTTP 404"), "{stacktrace}");

    let failed = convert(100.0, "XYZ", false);
    eprintln!("failed: {failed:?}");
    let trace = print_last_trace();
    assert_eq!(trace.info.state, TraceState::Error);
}
