//! Overhead of recording spans, side by side with the OpenTelemetry SDK (0.31) recording the same shapes.
//!
//! Run: `cargo bench -p mlflow-tracing --bench overhead`. Criterion prints each figure; at the end a table
//! gives each figure in nanoseconds per span with its ratio to the OpenTelemetry baseline of the same run.
//! The shapes are described in `shapes/mod.rs`; `disabled` adds the `#[trace]` function with tracing
//! disabled, against the plain function. On a noisy machine the `instructions` bench gives steadier figures.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::Criterion;
use mlflow_tracing::{Config, start_span};

mod shapes;
use shapes::{
    DiscardingExporter, EXPORTED_TRACES, Otel, add, chat_answer, chat_request, ours_llm_child,
    ours_start_span_child, ours_trace_fn, plain_add, under_parents,
};

/// Lets the export thread finish the queue our spans filled, so that it does not compete with the
/// OpenTelemetry runs that follow (its batch processor has a thread of its own).
fn drain_export_queue() {
    let _ = mlflow_tracing::flush(Duration::from_secs(60));
}

/// Times `iterations` children run by `with_parent(count)`, which opens a parent and runs `count` children.
fn timed_under_parents(iterations: u64, with_parent: impl FnMut(u64)) -> Duration {
    let started = Instant::now();
    under_parents(iterations, with_parent);
    started.elapsed()
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
    bench_shape(criterion, "trace_fn_child", ours_trace_fn, |otel| {
        black_box(otel.traced_add(black_box(1), black_box(2)));
    });
}

fn bench_start_span(criterion: &mut Criterion) {
    bench_shape(
        criterion,
        "start_span_child",
        ours_start_span_child,
        Otel::child_with_payloads,
    );
}

fn bench_llm_child(criterion: &mut Criterion) {
    let (request, answer) = (chat_request(), chat_answer());
    bench_shape(
        criterion,
        "llm_child",
        || ours_llm_child(&request, &answer),
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
