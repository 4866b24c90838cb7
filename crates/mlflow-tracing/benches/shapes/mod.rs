//! The span shapes the benches record, each with mlflow-tracing and by hand with the OpenTelemetry SDK (0.31),
//! with the same attributes on both sides: span type, function name, inputs and outputs as JSON.
//!
//! - `trace_fn_child`: a `#[trace]` function `add(a, b)` called under an open parent span;
//! - `start_span_child`: a child span with `set_inputs`/`set_outputs` of a 3-key map and one attribute;
//! - `llm_child`: a chat-model child span: inputs of a 1 KB system prompt and a question, outputs of a 0.5 KB
//!   answer, the model name as an attribute (the payload encoding dominates).
//!
//! Parents close every [`CHILDREN_PER_PARENT`] children so finished traces flow to the export side as in a
//! real program.

// Each bench uses the part it needs.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use mlflow_tracing::{start_span, trace};
use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracer, SdkTracerProvider, TracerProviderBuilder,
};
use serde::Serialize;

pub(crate) const CHILDREN_PER_PARENT: u64 = 100;

/// Runs `children` children through `with_parent(count)`, which opens a parent and runs `count` children
/// in it, in parents of [`CHILDREN_PER_PARENT`].
pub(crate) fn under_parents(children: u64, mut with_parent: impl FnMut(u64)) {
    let mut remaining = children;
    while remaining > 0 {
        let batch = remaining.min(CHILDREN_PER_PARENT);
        with_parent(batch);
        remaining -= batch;
    }
}

#[trace]
pub(crate) fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[inline(never)]
pub(crate) fn plain_add(a: i64, b: i64) -> i64 {
    a + b
}

#[derive(Serialize)]
pub(crate) struct ThreeKeys {
    question: &'static str,
    k: u32,
    temperature: f64,
}

pub(crate) const INPUTS: ThreeKeys = ThreeKeys {
    question: "what is mlflow?",
    k: 3,
    temperature: 0.1,
};

#[derive(Serialize)]
pub(crate) struct Message {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
pub(crate) struct ChatRequest {
    messages: Vec<Message>,
}

pub(crate) fn chat_request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message {
                role: "system",
                content:
                    "You are a careful assistant. Answer from the retrieved context only, cite the \
                          document you used, and say so when the context does not hold the answer. "
                        .repeat(6),
            },
            Message {
                role: "user",
                content: "How do I trace an agent that calls tools on several threads?".to_owned(),
            },
        ],
    }
}

pub(crate) fn chat_answer() -> String {
    "Start a span in the agent, then carry its context into every thread that calls a tool. "
        .repeat(6)
}

/// The `trace_fn_child` shape with mlflow-tracing.
pub(crate) fn ours_trace_fn() {
    black_box(add(black_box(1), black_box(2)));
}

/// The `start_span_child` shape with mlflow-tracing.
pub(crate) fn ours_start_span_child() {
    let span = start_span("step");
    span.set_inputs(black_box(&INPUTS));
    span.set_attribute("retriever", &"bm25");
    span.set_outputs(black_box(&INPUTS));
}

/// The `llm_child` shape with mlflow-tracing.
pub(crate) fn ours_llm_child(request: &ChatRequest, answer: &str) {
    let span = mlflow_tracing::span("chat")
        .span_type(mlflow_tracing::SpanType::ChatModel)
        .start();
    span.set_inputs(black_box(request));
    span.set_attribute("model", &"gpt-4o");
    span.set_outputs(black_box(answer));
}

pub(crate) struct Otel {
    tracer: SdkTracer,
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

impl Otel {
    /// A tracer whose in-memory exporter sits behind the simple processor (export on the traced thread).
    pub(crate) fn simple() -> Otel {
        Otel::with(|builder, exporter| builder.with_simple_exporter(exporter))
    }

    /// A tracer whose in-memory exporter sits behind the batch processor (export on its own thread).
    pub(crate) fn batch() -> Otel {
        Otel::with(|builder, exporter| builder.with_batch_exporter(exporter))
    }

    fn with(
        processor: impl FnOnce(TracerProviderBuilder, InMemorySpanExporter) -> TracerProviderBuilder,
    ) -> Otel {
        let exporter = InMemorySpanExporter::default();
        let provider = processor(SdkTracerProvider::builder(), exporter.clone()).build();
        Otel {
            tracer: provider.tracer("bench"),
            exporter,
            _provider: provider,
        }
    }

    pub(crate) fn parent(&self, count: u64, mut child: impl FnMut()) {
        self.tracer
            .in_span("parent", |_context| (0..count).for_each(|_| child()));
        self.exporter.reset();
    }

    /// What `#[trace] fn add` records, done by hand with the OpenTelemetry API.
    pub(crate) fn traced_add(&self, a: i64, b: i64) -> i64 {
        self.tracer.in_span("add", |context| {
            let span = context.span();
            span.set_attribute(KeyValue::new("mlflow.spanType", "UNKNOWN"));
            span.set_attribute(KeyValue::new("mlflow.spanFunctionName", "add"));
            let inputs =
                serde_json::to_string(&serde_json::json!({"a": a, "b": b})).unwrap_or_default();
            span.set_attribute(KeyValue::new("mlflow.spanInputs", inputs));
            let result = plain_add(a, b);
            span.set_attribute(KeyValue::new("mlflow.spanOutputs", result.to_string()));
            result
        })
    }

    pub(crate) fn llm_child(&self, request: &ChatRequest, answer: &str) {
        let span = self.tracer.start("chat");
        let context = Context::current_with_span(span);
        let _attached = context.clone().attach();
        let span = context.span();
        span.set_attribute(KeyValue::new("mlflow.spanType", "CHAT_MODEL"));
        span.set_attribute(KeyValue::new(
            "mlflow.spanInputs",
            serde_json::to_string(request).unwrap_or_default(),
        ));
        span.set_attribute(KeyValue::new("model", "\"gpt-4o\""));
        span.set_attribute(KeyValue::new(
            "mlflow.spanOutputs",
            serde_json::to_string(answer).unwrap_or_default(),
        ));
    }

    pub(crate) fn child_with_payloads(&self) {
        let span = self.tracer.start("step");
        let context = Context::current_with_span(span);
        let _attached = context.clone().attach();
        let span = context.span();
        span.set_attribute(KeyValue::new(
            "mlflow.spanInputs",
            serde_json::to_string(&INPUTS).unwrap_or_default(),
        ));
        span.set_attribute(KeyValue::new("retriever", "\"bm25\""));
        span.set_attribute(KeyValue::new(
            "mlflow.spanOutputs",
            serde_json::to_string(&INPUTS).unwrap_or_default(),
        ));
    }
}

pub(crate) static EXPORTED_TRACES: AtomicU64 = AtomicU64::new(0);

/// Receives every finished trace and drops it: the export side does the same conversion work as with a real
/// exporter, without keeping traces in memory.
pub(crate) struct DiscardingExporter;

impl mlflow_tracing::Exporter for DiscardingExporter {
    fn export(
        &mut self,
        batch: &[std::sync::Arc<mlflow_tracing::Trace>],
    ) -> Result<(), mlflow_tracing::ExportError> {
        EXPORTED_TRACES.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
