//! The client API: explicit ids, many threads, and every misuse answered with an error.

use std::sync::Arc;

use mlflow_tracing::core::keys;
use mlflow_tracing::{
    ClientError, EndOptions, MlflowClient, NO_OP_SPAN_TRACE_ID, SpanId, SpanStatus, SpanStatusCode,
    SpanType, StartOptions, TraceState, start_span,
};
use serde_json::json;

#[test]
fn the_walkthrough_records_a_two_span_trace() {
    let client = MlflowClient::new();
    let root = client
        .start_trace(
            "predict",
            StartOptions::new()
                .inputs(&json!({"question": "what is mlflow?"}))
                .tag("env", "ci")
                .experiment_id("7"),
        )
        .unwrap();
    let trace_id = root.trace_id();
    assert!(
        trace_id.starts_with("tr-") && trace_id.len() == 35,
        "{trace_id}"
    );
    assert_eq!(root.request_id(), trace_id);
    let child = client
        .start_span(
            "similarity_search",
            &trace_id,
            root.span_id(),
            StartOptions::new()
                .span_type(SpanType::Retriever)
                .inputs(&json!({"query": "mlflow"}))
                .attribute("k", &2),
        )
        .unwrap();
    assert_eq!(child.parent_id(), Some(root.span_id()));
    child.set_attribute("index", &"docs-v2");
    client
        .end_span(
            &trace_id,
            child.span_id(),
            EndOptions::new().outputs(&["doc a", "doc b"]),
        )
        .unwrap();
    client
        .end_trace(
            &trace_id,
            EndOptions::new()
                .outputs(&"MLflow is a platform")
                .attribute("answer_len", &20),
        )
        .unwrap();

    let trace = client
        .get_trace(&trace_id)
        .expect("finished trace in the buffer");
    assert_eq!(trace.info.trace_id, trace_id);
    assert_eq!(trace.info.experiment_id(), Some("7"));
    assert_eq!(trace.info.state, TraceState::Ok);
    assert_eq!(trace.info.tags["env"], "ci");
    assert_eq!(trace.info.tags[keys::TAG_TRACE_NAME], "predict");
    let [root_span, child_span] = &trace.data.spans[..] else {
        panic!("two spans expected")
    };
    assert_eq!(
        root_span.inputs(),
        Some(json!({"question": "what is mlflow?"}))
    );
    assert_eq!(root_span.outputs(), Some(json!("MLflow is a platform")));
    assert_eq!(root_span.attribute("answer_len"), Some(json!(20)));
    assert_eq!(root_span.status.code, SpanStatusCode::Ok);
    assert_eq!(child_span.span_type(), SpanType::Retriever);
    assert_eq!(child_span.attribute("k"), Some(json!(2)));
    assert_eq!(child_span.attribute("index"), Some(json!("docs-v2")));
    assert_eq!(child_span.outputs(), Some(json!(["doc a", "doc b"])));
    assert_eq!(child_span.parent_id, Some(root_span.span_id));
}

#[test]
fn many_threads_add_spans_to_one_trace() {
    let client = MlflowClient::with_experiment_id("3");
    let root = client.start_trace("batch", StartOptions::new()).unwrap();
    let trace_id: Arc<str> = Arc::from(root.trace_id());
    let handles: Vec<_> = (0..8)
        .map(|worker| {
            let client = client.clone();
            let trace_id = Arc::clone(&trace_id);
            let parent = root.span_id();
            std::thread::spawn(move || {
                for item in 0..25 {
                    let span = client
                        .start_span(
                            format!("item-{worker}-{item}"),
                            &trace_id,
                            parent,
                            StartOptions::new().inputs(&item),
                        )
                        .unwrap();
                    client
                        .end_span(
                            &trace_id,
                            span.span_id(),
                            EndOptions::new().outputs(&(item * 2)),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    handles
        .into_iter()
        .for_each(|handle| handle.join().unwrap());
    client.end_trace(&trace_id, EndOptions::new()).unwrap();
    let trace = client.get_trace(&trace_id).unwrap();
    assert_eq!(trace.data.spans.len(), 1 + 8 * 25);
    assert_eq!(trace.info.experiment_id(), Some("3"));
    assert!(
        trace.data.spans[1..]
            .iter()
            .all(|span| span.parent_id == Some(root.span_id()))
    );
}

#[test]
fn a_span_started_on_one_thread_can_end_on_another() {
    let client = MlflowClient::new();
    let root = client
        .start_trace("cross-thread", StartOptions::new())
        .unwrap();
    let trace_id = root.trace_id();
    let span = client
        .start_span(
            "handed-over",
            &trace_id,
            root.span_id(),
            StartOptions::new(),
        )
        .unwrap();
    let (client2, trace_id2) = (client.clone(), trace_id.clone());
    std::thread::spawn(move || {
        client2.end_span(
            &trace_id2,
            span.span_id(),
            EndOptions::new().status(SpanStatus::error("remote failure")),
        )
    })
    .join()
    .unwrap()
    .unwrap();
    client.end_trace(&trace_id, EndOptions::new()).unwrap();
    let trace = client.get_trace(&trace_id).unwrap();
    let handed = trace
        .data
        .spans
        .iter()
        .find(|span| span.name == "handed-over")
        .unwrap();
    assert_eq!(handed.status, SpanStatus::error("remote failure"));
}

#[test]
fn misuse_returns_clear_errors() {
    let client = MlflowClient::new();
    let error = client
        .start_span("x", "not-an-id", SpanId([1; 8]), StartOptions::new())
        .unwrap_err();
    assert!(matches!(error, ClientError::InvalidId(_)), "{error}");
    assert!(error.to_string().contains("\"not-an-id\""), "{error}");

    let unknown = "tr-00000000000000000000000000000001";
    let error = client.end_trace(unknown, EndOptions::new()).unwrap_err();
    assert!(
        matches!(&error, ClientError::TraceNotOpen { trace_id } if trace_id == unknown),
        "{error}"
    );

    let root = client.start_trace("misuse", StartOptions::new()).unwrap();
    let trace_id = root.trace_id();
    let error = client
        .start_span("orphan", &trace_id, SpanId([9; 8]), StartOptions::new())
        .unwrap_err();
    assert!(matches!(error, ClientError::SpanNotFound { .. }), "{error}");

    let child = client
        .start_span("child", &trace_id, root.span_id(), StartOptions::new())
        .unwrap();
    client
        .end_span(&trace_id, child.span_id(), EndOptions::new())
        .unwrap();
    let error = client
        .end_span(&trace_id, child.span_id(), EndOptions::new())
        .unwrap_err();
    assert!(
        matches!(error, ClientError::SpanAlreadyEnded { .. }),
        "{error}"
    );

    let late = client
        .start_span("late", &trace_id, root.span_id(), StartOptions::new())
        .unwrap();
    client.end_trace(&trace_id, EndOptions::new()).unwrap();
    let error = client.end_trace(&trace_id, EndOptions::new()).unwrap_err();
    assert!(
        matches!(error, ClientError::TraceNotOpen { .. }),
        "ending twice: {error}"
    );
    let error = client
        .end_span(&trace_id, late.span_id(), EndOptions::new())
        .unwrap_err();
    assert!(
        matches!(error, ClientError::TraceNotOpen { .. }),
        "span of an ended trace: {error}"
    );
    late.set_outputs(&"ignored after the trace ended");

    let trace = client.get_trace(&trace_id).unwrap();
    let late_span = trace
        .data
        .spans
        .iter()
        .find(|span| span.name == "late")
        .unwrap();
    assert_eq!(
        late_span.end_time_unix_nano, None,
        "a span never ended stays unfinished in the trace"
    );
}

#[test]
fn start_trace_refuses_to_nest_under_an_active_fluent_span() {
    let client = MlflowClient::new();
    let fluent = start_span("fluent-root");
    let error = client
        .start_trace("nested", StartOptions::new())
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::FluentSpanActive { trace_id } if Some(trace_id) == fluent.trace_id().as_ref())
    );
    drop(fluent);
    assert!(client.start_trace("after", StartOptions::new()).is_ok());
}

#[test]
fn no_op_ids_are_accepted_and_ignored() {
    let client = MlflowClient::new();
    let span = client
        .start_span(
            "x",
            NO_OP_SPAN_TRACE_ID,
            SpanId([1; 8]),
            StartOptions::new(),
        )
        .unwrap();
    assert!(!span.is_recording());
    assert!(
        client
            .end_span(NO_OP_SPAN_TRACE_ID, span.span_id(), EndOptions::new())
            .is_ok()
    );
    assert!(
        client
            .end_trace(NO_OP_SPAN_TRACE_ID, EndOptions::new())
            .is_ok()
    );
}
