//! Overhead of recording spans, side by side with the OpenTelemetry SDK (0.31) recording the same shapes.
//!
//! Run: `cargo bench -p mlflow-tracing --bench overhead`. Criterion prints each figure; at the end a table
//! gives each figure in nanoseconds per span with its ratio to the OpenTelemetry baseline of the same run.
//!
//! Shapes (the same attributes on both sides: span type, function name, inputs and outputs as JSON):
//! - `trace_fn_child`: a `#[trace]` function `add(a, b)` called under an open parent span;
//! - `start_span_child`: a child span with `set_inputs`/`set_outputs` of a 3-key map and one attribute;
//! - `llm_child`: a chat-model child span: inputs of a 1 KB system prompt and a question, outputs of a 0.5 KB
//!   answer, the model name as an attribute (the payload encoding dominates);
//! - `disabled`: the `#[trace]` function with tracing disabled, against the plain function.
//!
//! Parents close every 100 children so finished traces flow to the export side as in a real program.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use mlflow_tracing::{Config, start_span, trace};
use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracer, SdkTracerProvider};
use serde::Serialize;

const CHILDREN_PER_PARENT: u64 = 100;

#[trace]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[inline(never)]
fn plain_add(a: i64, b: i64) -> i64 {
    a + b
}

#[derive(Serialize)]
struct ThreeKeys {
    question: &'static str,
    k: u32,
    temperature: f64,
}

const INPUTS: ThreeKeys = ThreeKeys {
    question: "what is mlflow?",
    k: 3,
    temperature: 0.1,
};

#[derive(Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct ChatRequest {
    messages: Vec<Message>,
}

fn chat_request() -> ChatRequest {
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

fn chat_answer() -> String {
    "Start a span in the agent, then carry its context into every thread that calls a tool. "
        .repeat(6)
}

/// Lets the export thread finish the queue our spans filled, so that it does not compete with the
/// OpenTelemetry runs that follow (its batch processor has a thread of its own).
fn drain_export_queue() {
    let _ = mlflow_tracing::flush(Duration::from_secs(60));
}

/// Times `iterations` children run by `with_parent(count)`, which opens a parent and runs `count` children.
fn timed_under_parents(iterations: u64, mut with_parent: impl FnMut(u64)) -> Duration {
    let started = Instant::now();
    let mut remaining = iterations;
    while remaining > 0 {
        let batch = remaining.min(CHILDREN_PER_PARENT);
        with_parent(batch);
        remaining -= batch;
    }
    started.elapsed()
}

struct Otel {
    tracer: SdkTracer,
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

impl Otel {
    fn simple() -> Otel {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Otel {
            tracer: provider.tracer("bench"),
            exporter,
            _provider: provider,
        }
    }

    fn batch() -> Otel {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter.clone())
            .build();
        Otel {
            tracer: provider.tracer("bench"),
            exporter,
            _provider: provider,
        }
    }

    fn parent(&self, count: u64, mut child: impl FnMut()) {
        self.tracer
            .in_span("parent", |_context| (0..count).for_each(|_| child()));
        self.exporter.reset();
    }

    /// What `#[trace] fn add` records, done by hand with the OpenTelemetry API.
    fn traced_add(&self, a: i64, b: i64) -> i64 {
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

    fn llm_child(&self, request: &ChatRequest, answer: &str) {
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

    fn child_with_payloads(&self) {
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

/// Times one span shape: `ours` as a child of our parent span, then `theirs` under OpenTelemetry's simple
/// and batch processors.
fn bench_shape(
    criterion: &mut Criterion,
    shape: &str,
    mut ours: impl FnMut(),
    theirs: impl Fn(&Otel),
) {
    let mut group = criterion.benchmark_group(shape);
    group.bench_function("mlflow_tracing", |bencher| {
        bencher.iter_custom(|iterations| {
            timed_under_parents(iterations, |count| {
                let _parent = start_span("parent");
                (0..count).for_each(|_| ours());
            })
        })
    });
    drain_export_queue();
    for (name, otel) in [
        ("otel_simple", Otel::simple()),
        ("otel_batch", Otel::batch()),
    ] {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                timed_under_parents(iterations, |count| otel.parent(count, || theirs(&otel)))
            })
        });
    }
    group.finish();
}

fn bench_trace_fn(criterion: &mut Criterion) {
    bench_shape(
        criterion,
        "trace_fn_child",
        || {
            black_box(add(black_box(1), black_box(2)));
        },
        |otel| {
            black_box(otel.traced_add(black_box(1), black_box(2)));
        },
    );
}

fn bench_start_span(criterion: &mut Criterion) {
    bench_shape(
        criterion,
        "start_span_child",
        || {
            let span = start_span("step");
            span.set_inputs(black_box(&INPUTS));
            span.set_attribute("retriever", &"bm25");
            span.set_outputs(black_box(&INPUTS));
        },
        Otel::child_with_payloads,
    );
}

fn bench_llm_child(criterion: &mut Criterion) {
    let (request, answer) = (chat_request(), chat_answer());
    bench_shape(
        criterion,
        "llm_child",
        || {
            let span = mlflow_tracing::span("chat")
                .span_type(mlflow_tracing::SpanType::ChatModel)
                .start();
            span.set_inputs(black_box(&request));
            span.set_attribute("model", &"gpt-4o");
            span.set_outputs(black_box(&answer));
        },
        |otel| otel.llm_child(&request, &answer),
    );
}

fn bench_disabled(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("disabled");
    mlflow_tracing::disable();
    group.bench_function("mlflow_tracing", |bencher| {
        bencher.iter(|| add(black_box(1), black_box(2)))
    });
    group.bench_function("plain_fn", |bencher| {
        bencher.iter(|| plain_add(black_box(1), black_box(2)))
    });
    mlflow_tracing::enable();
    group.finish();
}

fn estimate_ns(output: &Path, group: &str, function: &str) -> Option<f64> {
    let path = output
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let estimates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    estimates.pointer("/median/point_estimate")?.as_f64()
}

fn print_summary(output: &Path) {
    println!("\nSummary (median ns per span; ratio = baseline / mlflow-tracing, higher is better)");
    println!(
        "{:<18} {:>16} {:>14} {:>14} {:>10} {:>10}",
        "shape", "mlflow-tracing", "otel simple", "otel batch", "x simple", "x batch"
    );
    for group in ["trace_fn_child", "start_span_child", "llm_child"] {
        let ours = estimate_ns(output, group, "mlflow_tracing");
        let simple = estimate_ns(output, group, "otel_simple");
        let batch = estimate_ns(output, group, "otel_batch");
        if let (Some(ours), Some(simple), Some(batch)) = (ours, simple, batch) {
            println!(
                "{group:<18} {ours:>16.1} {simple:>14.1} {batch:>14.1} {:>9.1}x {:>9.1}x",
                simple / ours,
                batch / ours
            );
        }
    }
    if let (Some(disabled), Some(plain)) = (
        estimate_ns(output, "disabled", "mlflow_tracing"),
        estimate_ns(output, "disabled", "plain_fn"),
    ) {
        println!(
            "{:<18} {disabled:>16.2} (plain fn {plain:.2} ns; added {:.2} ns)",
            "disabled",
            disabled - plain
        );
    }
}

fn output_directory() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("criterion")
}

fn main() {
    // Finished traces are converted and handed to an exporter that drops them; few are kept in process.
    let _tracing = Config::new()
        .exporter(DiscardingExporter)
        .finished_buffer_size(4)
        .install();
    let output = output_directory();
    let mut criterion = Criterion::default()
        .output_directory(&output)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_trace_fn(&mut criterion);
    bench_start_span(&mut criterion);
    bench_llm_child(&mut criterion);
    bench_disabled(&mut criterion);
    criterion.final_summary();
    print_summary(&output);
    // The export thread converts every finished trace on the other core; when it falls behind, the bounded
    // queue drops whole traces. Either way no cost lands on the traced thread, but the count says how much of
    // the export work kept up.
    let _ = mlflow_tracing::flush(Duration::from_secs(10));
    let exported = EXPORTED_TRACES.load(Ordering::Relaxed);
    let dropped = mlflow_tracing::dropped_trace_count();
    println!(
        "export thread: {exported} traces converted and exported, {dropped} dropped at the full queue ({:.1}% kept up)",
        100.0 * exported as f64 / (exported + dropped).max(1) as f64
    );
}

static EXPORTED_TRACES: AtomicU64 = AtomicU64::new(0);

/// Receives every finished trace and drops it: the export side does the same conversion work as with a real
/// exporter, without keeping traces in memory.
struct DiscardingExporter;

impl mlflow_tracing::Exporter for DiscardingExporter {
    fn export(
        &mut self,
        batch: &[std::sync::Arc<mlflow_tracing::Trace>],
    ) -> Result<(), mlflow_tracing::ExportError> {
        EXPORTED_TRACES.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
