//! Process-wide settings: disabling, sampling, timeouts, export. Each test changes global state, so they run
//! one at a time under a lock.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mlflow_tracing::{
    Config, InMemoryExporter, MlflowClient, StartOptions, TraceState, get_current_active_span,
    get_trace, start_span, trace,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[trace]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[test]
fn disabled_tracing_records_nothing_and_the_code_still_runs() {
    let _serial = serial();
    mlflow_tracing::disable();
    let span = start_span("off");
    assert!(!span.is_recording());
    assert_eq!(span.trace_id(), None);
    assert_eq!(add(2, 3), 5);
    assert!(get_current_active_span().is_none());
    let client_span = MlflowClient::new()
        .start_trace("off", StartOptions::new())
        .unwrap();
    assert!(!client_span.is_recording());
    drop(span);
    mlflow_tracing::enable();
    let span = start_span("on");
    assert!(span.is_recording());
}

#[test]
fn sampling_drops_whole_traces_never_single_spans() {
    let _serial = serial();
    let exporter = InMemoryExporter::new();
    let guard = Config::new()
        .exporter(exporter.clone())
        .sampling_ratio(0.5)
        .install();
    exporter.take();
    for _ in 0..400 {
        let root = start_span("sampled-root");
        let child = start_span("child");
        assert_eq!(
            root.is_recording(),
            child.is_recording(),
            "children follow their root's decision"
        );
    }
    guard.flush();
    let kept = exporter
        .take()
        .iter()
        .filter(|trace| trace.data.spans[0].name == "sampled-root")
        .count();
    assert!(
        (120..280).contains(&kept),
        "kept {kept} of 400 at ratio 0.5"
    );
    let _restored = Config::new().sampling_ratio(1.0).install();
}

#[test]
fn a_forgotten_guard_times_out_as_an_error_trace_and_frees_the_thread() {
    let _serial = serial();
    let _guard = Config::new()
        .trace_timeout(Duration::from_millis(300))
        .install();
    let leaked = start_span("leaked-root");
    let trace_id = leaked.trace_id().unwrap();
    std::mem::forget(leaked);
    {
        let child = start_span("under-the-leak");
        assert_eq!(child.trace_id().as_ref(), Some(&trace_id));
    }
    std::thread::sleep(Duration::from_millis(900));
    let trace = get_trace(&trace_id).expect("the timed-out trace was exported");
    assert_eq!(trace.info.state, TraceState::Error);
    // The leaked root's data is on the leaking thread's stack; the spans that ended are exported.
    let names: Vec<_> = trace
        .data
        .spans
        .iter()
        .map(|span| span.name.as_str())
        .collect();
    assert_eq!(names, ["under-the-leak"]);
    let fresh = start_span("after-timeout");
    assert_ne!(
        fresh.trace_id(),
        Some(trace_id),
        "new spans start a new trace instead of joining the dead one"
    );
    drop(fresh);
    mlflow_tracing::config::set_trace_timeout(None);
}

#[test]
fn a_trace_over_the_span_cap_keeps_its_root_and_counts_the_dropped_spans() {
    let _serial = serial();
    let _guard = Config::new().max_spans_per_trace(5).install();
    let dropped_before = mlflow_tracing::dropped_span_count();
    let trace_id = {
        let root = start_span("capped-root");
        for index in 0..10 {
            let child = start_span("child");
            child.set_attribute("index", &index);
        }
        let client = MlflowClient::new();
        let trace_id = root.trace_id().unwrap();
        let explicit = client
            .start_span(
                "explicit",
                &trace_id,
                root.span_id().unwrap(),
                StartOptions::new(),
            )
            .unwrap();
        client
            .end_span(
                &trace_id,
                explicit.span_id(),
                mlflow_tracing::EndOptions::new(),
            )
            .unwrap();
        trace_id
    };
    mlflow_tracing::config::set_max_spans_per_trace(1_000_000);
    let trace = get_trace(&trace_id).expect("the capped trace was exported");
    let spans: Vec<_> = trace
        .data
        .spans
        .iter()
        .map(|span| (span.name.as_str(), span.attribute("index")))
        .collect();
    assert_eq!(
        spans,
        [
            ("capped-root", None),
            ("child", Some(serde_json::json!(0))),
            ("child", Some(serde_json::json!(1))),
            ("child", Some(serde_json::json!(2))),
            ("child", Some(serde_json::json!(3))),
        ]
    );
    assert_eq!(mlflow_tracing::dropped_span_count() - dropped_before, 7);
}

#[test]
fn the_guard_flushes_into_the_exporter() {
    let _serial = serial();
    let exporter = InMemoryExporter::new();
    {
        let _guard = Config::new().exporter(exporter.clone()).install();
        add(1, 1);
    }
    let traces = exporter.traces();
    let trace = traces
        .iter()
        .find(|trace| trace.data.spans[0].name == "add")
        .expect("exported on guard drop");
    assert_eq!(trace.data.spans[0].outputs(), Some(serde_json::json!(2)));
    assert_eq!(mlflow_tracing::export_failure_count(), 0);
}

#[test]
fn a_client_trace_left_open_times_out_with_its_root_marked_failed() {
    let _serial = serial();
    let _guard = Config::new()
        .trace_timeout(Duration::from_millis(200))
        .install();
    let client = MlflowClient::new();
    let root = client
        .start_trace("never-ended", StartOptions::new().inputs(&"hi"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let trace = get_trace(&root.trace_id()).expect("the timed-out trace was exported");
    assert_eq!(trace.info.state, TraceState::Error);
    let root_span = &trace.data.spans[0];
    assert!(
        root_span
            .status
            .message
            .starts_with("trace timed out after 200 ms"),
        "{:?}",
        root_span.status
    );
    assert!(
        client
            .end_trace(&root.trace_id(), mlflow_tracing::EndOptions::new())
            .is_err()
    );
    mlflow_tracing::config::set_trace_timeout(None);
}
