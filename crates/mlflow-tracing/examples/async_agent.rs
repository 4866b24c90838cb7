//! An async agent on a multi-threaded tokio runtime: it plans, calls three tools concurrently, and spawns a
//! background summary task. All spans nest under the agent, across `.await`, `join!` and `tokio::spawn`.
//! Run: `cargo run -p mlflow-tracing --example async_agent`

use std::time::Duration;

use mlflow_tracing::{
    FutureExt, TraceState, get_last_active_trace_id, get_trace, start_span, trace,
};
use serde_json::json;

#[trace(span_type = "TOOL")]
async fn weather(city: &str) -> serde_json::Value {
    tokio::time::sleep(Duration::from_millis(30)).await;
    json!({"city": city, "forecast": "sunny", "celsius": 21})
}

#[trace(span_type = "TOOL")]
async fn calendar(day: &str) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    vec![
        format!("{day} 10:00 standup"),
        format!("{day} 15:00 review"),
    ]
}

#[trace(span_type = "RETRIEVER")]
async fn search_notes(query: &str) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    vec![format!("note about {query}")]
}

#[trace(span_type = "LLM", attributes(model = "local-stub"))]
async fn summarize(parts: Vec<String>) -> String {
    tokio::time::sleep(Duration::from_millis(5)).await;
    parts.join(" | ")
}

#[trace(name = "planner_agent", span_type = "AGENT")]
async fn agent(request: &str) -> String {
    {
        let plan = start_span("plan");
        plan.set_outputs(&["weather", "calendar", "search_notes"]);
    }
    let (forecast, events, notes) =
        tokio::join!(weather("Paris"), calendar("Monday"), search_notes(request));
    let mut parts = vec![forecast.to_string()];
    parts.extend(events);
    parts.extend(notes);
    tokio::spawn(summarize(parts).in_current_trace())
        .await
        .expect("the summary task completes")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Exports to MLFLOW_TRACKING_URI when it is set; the trace is printed from the in-process buffer either way.
    let _tracing = mlflow_tracing::init();
    let answer = agent("plan my Monday in Paris").await;
    eprintln!("answer: {answer}");

    let trace = get_trace(&get_last_active_trace_id().expect("a trace completed"))
        .expect("buffered in process");
    assert_eq!(trace.info.state, TraceState::Ok);
    let root = &trace.data.spans[0];
    assert_eq!(root.name, "planner_agent");
    let children: Vec<_> = trace
        .data
        .spans
        .iter()
        .filter(|span| span.parent_id == Some(root.span_id))
        .collect();
    assert_eq!(
        children.len(),
        5,
        "plan, three tools and the summary nest under the agent"
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&trace.to_json_value()).expect("a JSON value prints")
    );
}
