//! Instructions per span, counted by valgrind's callgrind, side by side with the OpenTelemetry SDK (0.31)
//! recording the same shapes as the `overhead` bench (see `shapes/mod.rs`). Unlike a time, an instruction
//! count does not move with the load of the machine, so small changes show on a busy one.
//!
//! Run: `cargo bench -p mlflow-tracing --bench instructions` (it needs `valgrind`; without it the bench says
//! so and measures nothing). Each side runs each shape in a child process under callgrind, once with
//! [`SMALL`] children and once with [`LARGE`]; the difference over `LARGE - SMALL` is the cost of one span,
//! without start-up and set-up. Counts are taken on the traced thread (the one calling the API) and over all
//! threads: mlflow-tracing builds finished traces on its export thread and OpenTelemetry's batch processor
//! exports on a thread of its own, while its simple processor does all its work on the traced thread.
//!
//! Callgrind runs one thread at a time, so an export thread can fall behind where it would keep up on its
//! own core: the last column says how many of our traces reached the exporter.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mlflow_tracing::{Config, start_span};

mod shapes;
use shapes::{
    DiscardingExporter, EXPORTED_TRACES, Otel, chat_answer, chat_request, ours_llm_child,
    ours_start_span_child, ours_trace_fn, under_parents,
};

const SMALL: u64 = 2_000;
const LARGE: u64 = 6_000;
/// Children run before the measured ones, on both sides.
const WARM_UP: u64 = 1_000;

/// Set in a child process to `<side>:<shape>:<children>`.
const CHILD_ENV: &str = "MLFLOW_TRACING_INSTRUCTIONS_CHILD";

const SHAPES: [&str; 3] = ["trace_fn_child", "start_span_child", "llm_child"];

/// Instructions of one run: on the traced (main) thread, and on all threads.
#[derive(Clone, Copy)]
struct Count {
    traced: f64,
    all: f64,
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("instructions: valgrind is not installed, so nothing was measured");
        return;
    }
    println!(
        "Instructions per span under callgrind (traced thread / all threads; ratio = baseline / mlflow-tracing)"
    );
    println!(
        "{:<18} {:>17} {:>13} {:>17} {:>15} {:>15} {:>12}",
        "shape", "mlflow-tracing", "otel simple", "otel batch", "x simple", "x batch", "exported"
    );
    for shape in SHAPES {
        let measured = (
            per_span("mlflow_tracing", shape),
            per_span("otel_simple", shape),
            per_span("otel_batch", shape),
        );
        let (Ok((ours, exported)), Ok((simple, _)), Ok((batch, _))) = measured else {
            let (ours, simple, batch) = measured;
            for error in [ours.err(), simple.err(), batch.err()]
                .into_iter()
                .flatten()
            {
                println!("{shape}: {error}");
            }
            continue;
        };
        println!(
            "{shape:<18} {:>8.0} / {:>6.0} {:>13.0} {:>8.0} / {:>6.0} {:>6.1}x / {:>5.1}x {:>6.1}x / {:>5.1}x {exported:>12}",
            ours.traced,
            ours.all,
            simple.all,
            batch.traced,
            batch.all,
            simple.all / ours.traced,
            simple.all / ours.all,
            batch.traced / ours.traced,
            batch.all / ours.all,
        );
    }
}

/// Instructions per span of `side` recording `shape`, with what the child reported.
fn per_span(side: &str, shape: &str) -> Result<(Count, String), String> {
    let (small, _) = run_under_callgrind(side, shape, SMALL)?;
    let (large, report) = run_under_callgrind(side, shape, LARGE)?;
    let spans = (LARGE - SMALL) as f64;
    let count = Count {
        traced: (large.traced - small.traced) / spans,
        all: (large.all - small.all) / spans,
    };
    Ok((count, report))
}

fn run_under_callgrind(side: &str, shape: &str, children: u64) -> Result<(Count, String), String> {
    let directory = std::env::temp_dir().join(format!(
        "mlflow-tracing-instructions-{}-{side}-{shape}-{children}",
        std::process::id()
    ));
    std::fs::create_dir_all(&directory).map_err(|error| format!("{directory:?}: {error}"))?;
    let executable = std::env::current_exe().map_err(|error| error.to_string())?;
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--separate-threads=yes")
        .arg(format!(
            "--callgrind-out-file={}",
            directory.join("out.%p").display()
        ))
        .arg(&executable)
        .env(CHILD_ENV, format!("{side}:{shape}:{children}"))
        .output()
        .map_err(|error| format!("valgrind: {error}"))?;
    let counted = read_counts(&directory);
    let _ = std::fs::remove_dir_all(&directory);
    if !output.status.success() {
        return Err(format!(
            "{side} {shape}: the child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let report = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok((counted?, report))
}

/// Sums callgrind's per-thread files (`out.<pid>-<thread>`, thread 01 being the main one).
fn read_counts(directory: &Path) -> Result<Count, String> {
    let mut count = Count {
        traced: 0.0,
        all: 0.0,
    };
    let entries = std::fs::read_dir(directory).map_err(|error| error.to_string())?;
    let files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    for file in files {
        let Some(thread) = file
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.rsplit_once('-'))
            .map(|(_, thread)| thread.to_owned())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&file).map_err(|error| error.to_string())?;
        let total = text
            .lines()
            .find_map(|line| {
                line.strip_prefix("totals:")
                    .or(line.strip_prefix("summary:"))
            })
            .and_then(|value| value.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no total in {file:?}"))?;
        count.all += total;
        if thread == "01" {
            count.traced = total;
        }
    }
    if count.traced == 0.0 {
        return Err(format!(
            "callgrind wrote no main-thread count in {directory:?}"
        ));
    }
    Ok(count)
}

/// Runs `children` spans of one shape on one side, as the child process callgrind watches.
fn run_child(spec: &str) {
    let mut parts = spec.split(':');
    let (side, shape) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let children: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let (request, answer) = (chat_request(), chat_answer());
    if side == "mlflow_tracing" {
        let tracing = Config::new()
            .exporter(DiscardingExporter)
            .finished_buffer_size(4)
            .install();
        let mut ours = |count: u64| {
            let _parent = start_span("parent");
            for _ in 0..count {
                match shape {
                    "trace_fn_child" => ours_trace_fn(),
                    "start_span_child" => ours_start_span_child(),
                    _ => ours_llm_child(&request, &answer),
                }
            }
        };
        // A warm-up the export thread catches up with, as it does in a program between bursts: its recycled
        // buffers set the size new ones start at (callgrind runs one thread at a time, so without this every
        // measured trace would grow its buffers from nothing).
        under_parents(WARM_UP, &mut ours);
        let _ = mlflow_tracing::flush(Duration::from_secs(600));
        under_parents(children, ours);
        let _ = mlflow_tracing::flush(Duration::from_secs(600));
        drop(tracing);
        let exported = EXPORTED_TRACES.load(Ordering::Relaxed);
        let dropped = mlflow_tracing::dropped_trace_count();
        println!(
            "{:.0}%",
            100.0 * exported as f64 / (exported + dropped).max(1) as f64
        );
        return;
    }
    let otel = if side == "otel_batch" {
        Otel::batch()
    } else {
        Otel::simple()
    };
    let mut theirs = |count: u64| {
        otel.parent(count, || match shape {
            "trace_fn_child" => {
                std::hint::black_box(otel.traced_add(1, 2));
            }
            "start_span_child" => otel.child_with_payloads(),
            _ => otel.llm_child(&request, &answer),
        })
    };
    under_parents(WARM_UP, &mut theirs);
    under_parents(children, theirs);
    drop(otel);
}
