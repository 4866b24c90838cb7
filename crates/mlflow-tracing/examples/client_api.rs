//! The client API walk-through: explicit trace and span ids, as in callbacks or multi-threaded code.
//! Run: `cargo run -p mlflow-tracing --example client_api`

use mlflow_tracing::{EndOptions, MlflowClient, SpanType, StartOptions, TraceState};
use serde_json::json;

fn similarity_search(query: &str) -> Vec<serde_json::Value> {
    vec![
        json!({"page_content": format!("MLflow Tracing records {query}"), "metadata": {"doc_uri": "docs/tracing.md"}}),
        json!({"page_content": "Spans form a tree", "metadata": {"doc_uri": "docs/concepts.md"}}),
    ]
}

fn main() {
    // Exports to MLFLOW_TRACKING_URI when it is set; the trace is printed from the in-process buffer either way.
    let _tracing = mlflow_tracing::init();
    let client = MlflowClient::new();
    let question = "how are agent steps recorded?";

    let root = client
        .start_trace(
            "qa_request",
            StartOptions::new()
                .span_type(SpanType::Chain)
                .inputs(&json!({"question": question})),
        )
        .expect("no fluent span is active here");
    let trace_id = root.trace_id();

    let search = client
        .start_span(
            "similarity_search",
            &trace_id,
            root.span_id(),
            StartOptions::new()
                .span_type(SpanType::Retriever)
                .inputs(&json!({"query": question, "k": 2})),
        )
        .expect("the trace is open");
    let documents = similarity_search(question);
    client
        .end_span(
            &trace_id,
            search.span_id(),
            EndOptions::new().outputs(&documents),
        )
        .expect("the span is open");

    let answer = format!(
        "Each step is a span; {} documents were found.",
        documents.len()
    );
    client
        .end_trace(
            &trace_id,
            EndOptions::new().outputs(&json!({"answer": answer})),
        )
        .expect("the trace is open");

    let trace = client
        .get_trace(&trace_id)
        .expect("the trace is buffered in process");
    assert_eq!(trace.info.state, TraceState::Ok);
    assert_eq!(trace.data.spans.len(), 2);
    assert_eq!(
        trace.data.spans[1]
            .outputs()
            .map(|outputs| outputs.as_array().map(Vec::len)),
        Some(Some(2))
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&trace.to_json_value()).expect("a JSON value prints")
    );
}
