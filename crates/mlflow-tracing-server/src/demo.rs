//! `mlflow-tracing demo`: sample agents traced with the SDK and exported over HTTP to this server, so a new
//! user sees real traces at once — a support bot holding a three-turn conversation (a session), an async
//! research agent calling tools concurrently, a tool that fails then succeeds on retry, a request that
//! fails outright, a scorer fanning out over threads, a streamed answer, and a callback-style pipeline
//! recorded with the client API.

use std::time::Duration;

use mlflow_tracing::core::keys;
use mlflow_tracing::{
    Config, Context, EndOptions, FutureExt, MlflowClient, MlflowExporter, SpanType, StartOptions,
    TraceUpdate, span, trace, trace_call, trace_iter, update_current_trace,
};
use serde::Serialize;
use serde_json::{Value, json};

/// The experiment the demo records into.
pub const DEMO_EXPERIMENT: &str = "demo";

#[derive(Debug, Clone, Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

/// A stand-in chat model: answers from a tiny knowledge base and reports token usage on its span, as an
/// instrumented client would.
fn chat_completion(model: &str, messages: &[Message]) -> Value {
    let question = messages
        .last()
        .map_or("", |message| message.content.as_str());
    let answer = match question.to_lowercase() {
        text if text.contains("refund") => {
            "Refunds are issued within 5 business days to the original payment method."
        }
        text if text.contains("ship") => {
            "Orders ship within 24 hours; tracking links arrive by email."
        }
        _ => "I can help with orders, shipping and refunds.",
    };
    let prompt_tokens: usize = messages
        .iter()
        .map(|message| message.content.split_whitespace().count())
        .sum();
    let completion_tokens = answer.split_whitespace().count();
    if let Some(span) = mlflow_tracing::get_current_active_span() {
        span.set_attribute(
            keys::CHAT_TOKEN_USAGE,
            &json!({"input_tokens": prompt_tokens, "output_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}),
        );
        span.set_attribute(keys::LLM_MODEL, &model);
    }
    json!({
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    })
}

#[trace(span_type = "RETRIEVER")]
fn search_help_center(query: &str, k: usize) -> Vec<Value> {
    (1..=k)
        .map(|rank| json!({"page_content": format!("Help article {rank} about {query}"), "metadata": {"doc_uri": format!("help/{rank}.md")}}))
        .collect()
}

#[trace(
    name = "support_bot",
    span_type = "AGENT",
    attributes(channel = "chat")
)]
fn support_turn(session: &str, question: &str) -> String {
    update_current_trace(
        TraceUpdate::new()
            .session_id(session)
            .user("customer-42")
            .tag("app", "support"),
    );
    let documents = search_help_center(question, 2);
    let messages = vec![
        Message {
            role: "system",
            content: format!("Answer using: {}", documents.len()),
        },
        Message {
            role: "user",
            content: question.to_owned(),
        },
    ];
    let completion = trace_call!(
        span_type = "CHAT_MODEL",
        chat_completion("gpt-4o-mini", &messages)
    );
    completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[trace(span_type = "TOOL")]
async fn web_search(topic: &str) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(40)).await;
    vec![
        format!("{topic}: overview"),
        format!("{topic}: recent results"),
    ]
}

#[trace(span_type = "TOOL")]
async fn read_paper(title: &str) -> String {
    tokio::time::sleep(Duration::from_millis(25)).await;
    format!("abstract of {title}")
}

#[trace(span_type = "LLM")]
async fn summarize(notes: Vec<String>) -> String {
    tokio::time::sleep(Duration::from_millis(10)).await;
    format!("summary of {} notes", notes.len())
}

#[trace(name = "research_agent", span_type = "AGENT")]
async fn research(topic: &str) -> String {
    {
        let plan = span("plan").span_type(SpanType::Chain).start();
        plan.set_outputs(&["web_search", "read_paper", "read_paper", "summarize"]);
    }
    let (found, first, second) = tokio::join!(
        web_search(topic),
        read_paper("Attention is all you need"),
        read_paper("ReAct")
    );
    let mut notes = found;
    notes.push(first);
    notes.push(second);
    tokio::spawn(summarize(notes).in_current_trace())
        .await
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
#[error("the inventory service timed out after {0} ms")]
struct InventoryTimeout(u64);

#[trace(span_type = "TOOL")]
fn check_inventory(sku: &str, attempt: u32) -> Result<u32, InventoryTimeout> {
    if attempt == 1 || sku == "SKU-404" {
        Err(InventoryTimeout(800))
    } else {
        Ok(7)
    }
}

#[trace(name = "inventory_agent", span_type = "AGENT")]
fn inventory(sku: &str) -> Result<u32, InventoryTimeout> {
    let mut last = Err(InventoryTimeout(0));
    for attempt in 1..=2 {
        last = check_inventory(sku, attempt);
        if last.is_ok() {
            break;
        }
    }
    last
}

#[trace(span_type = "EVALUATOR")]
fn score(answer: &str) -> f64 {
    (answer.len() % 10) as f64 / 10.0
}

#[trace(name = "batch_scorer", span_type = "CHAIN")]
fn score_batch(answers: Vec<String>) -> Vec<f64> {
    let context = Context::current();
    let handles: Vec<_> = answers
        .into_iter()
        .map(|answer| std::thread::spawn(context.clone().wrap(move || score(&answer))))
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().unwrap_or(0.0))
        .collect()
}

fn streamed_answer() -> String {
    let _root = span("streaming_chat")
        .span_type(SpanType::ChatModel)
        .inputs(&json!({"prompt": "say hello"}))
        .start();
    trace_iter(
        span("generate").span_type(SpanType::Llm),
        ["Hel", "lo", ", ", "world"],
    )
    .collect()
}

fn callback_pipeline(client: &MlflowClient) -> Result<(), mlflow_tracing::ClientError> {
    let root = client.start_trace(
        "callback_pipeline",
        StartOptions::new()
            .span_type(SpanType::Chain)
            .inputs(&json!({"query": "shipping"})),
    )?;
    let trace_id = root.trace_id();
    let retrieval = client.start_span(
        "on_retriever_start",
        &trace_id,
        root.span_id(),
        StartOptions::new().span_type(SpanType::Retriever),
    )?;
    client.end_span(
        &trace_id,
        retrieval.span_id(),
        EndOptions::new().outputs(&["help/shipping.md"]),
    )?;
    client.end_trace(
        &trace_id,
        EndOptions::new().outputs(&json!({"answer": "Orders ship within 24 hours."})),
    )
}

/// Runs every demo agent, exporting to `tracking_uri`; returns how many traces were made.
pub async fn run_agents(tracking_uri: &str) -> anyhow::Result<usize> {
    let guard = Config::new()
        .exporter(MlflowExporter::new(tracking_uri).experiment_name(DEMO_EXPERIMENT))
        .install();
    let synchronous = tokio::task::spawn_blocking(|| {
        let mut traces = 0;
        for question in [
            "How do refunds work?",
            "When will my order ship?",
            "Thanks!",
        ] {
            support_turn("session-demo-1", question);
            traces += 1;
            // Turns of a conversation are apart in time; traces record their start to the millisecond.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = inventory("SKU-7");
        let _ = inventory("SKU-404");
        score_batch(vec![
            "fine".into(),
            "great answer".into(),
            "ok".into(),
            "needs work".into(),
        ]);
        streamed_answer();
        let _ = callback_pipeline(&MlflowClient::new());
        traces + 5
    })
    .await?;
    research("retrieval augmented generation").await;
    if !guard.flush() {
        anyhow::bail!("the demo traces were not all exported in time");
    }
    let failures = mlflow_tracing::export_failure_count();
    if failures > 0 {
        anyhow::bail!("{failures} export batches failed; see the log");
    }
    Ok(synchronous + 1)
}
