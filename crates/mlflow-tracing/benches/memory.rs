//! Memory held per finished span, excluding payloads.
//!
//! Run: `cargo bench -p mlflow-tracing --bench memory`. A counting allocator measures the heap growth while
//! 100,000 `#[trace]` children of one open root are held by the SDK (the root is still open, so nothing has
//! been exported yet), minus the bytes of their JSON payloads; then the same for the exported `Trace` model
//! once the root ends. The baseline is OpenTelemetry's `SpanData` for the same spans in its in-memory exporter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use mlflow_tracing::{Config, InMemoryExporter, start_span, trace};
use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SPANS: usize = 100_000;

#[trace]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn main() {
    let exporter = InMemoryExporter::new();
    let tracing = Config::new().exporter(exporter.clone()).install();
    let payload_bytes = (r#"{"a":1,"b":2}"#.len() + "3".len()) * SPANS;

    // Warm up: the thread's scratch buffer and the export thread exist before measuring.
    {
        let _root = start_span("warm-up");
        add(1, 2);
    }
    tracing.flush();
    exporter.take();

    let root = start_span("root");
    let before = live();
    for _ in 0..SPANS {
        black_box(add(black_box(1), black_box(2)));
    }
    let held = live() - before;
    drop(root);
    tracing.flush();
    let exported_trace = exporter.take();
    let exported = live() - before;
    drop(exported_trace);

    let otel_exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(otel_exporter.clone())
        .build();
    let tracer = provider.tracer("bench");
    let otel_before = live();
    tracer.in_span("root", |_| {
        for _ in 0..SPANS {
            tracer.in_span("add", |context| {
                let span = context.span();
                span.set_attribute(KeyValue::new("mlflow.spanType", "UNKNOWN"));
                span.set_attribute(KeyValue::new("mlflow.spanFunctionName", "add"));
                span.set_attribute(KeyValue::new(
                    "mlflow.spanInputs",
                    r#"{"a":1,"b":2}"#.to_owned(),
                ));
                span.set_attribute(KeyValue::new("mlflow.spanOutputs", "3".to_owned()));
            });
        }
    });
    let otel_held = live() - otel_before;

    let per_span = |bytes: isize| (bytes as f64 - payload_bytes as f64) / SPANS as f64;
    println!(
        "memory per finished span, excluding the {} payload bytes per span",
        payload_bytes / SPANS
    );
    println!(
        "  mlflow-tracing, held until the trace ends : {:>8.1} bytes",
        per_span(held)
    );
    println!(
        "  mlflow-tracing, exported Trace model      : {:>8.1} bytes",
        per_span(exported)
    );
    println!(
        "  opentelemetry_sdk SpanData (baseline)     : {:>8.1} bytes",
        per_span(otel_held)
    );
    println!(
        "  ratio baseline / held                     : {:>8.1}x",
        per_span(otel_held) / per_span(held)
    );
}
