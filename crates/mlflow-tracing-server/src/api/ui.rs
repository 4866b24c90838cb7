//! Read endpoints for viewers, beside MLflow's own: a trace's span outline (every span's shape without its
//! payload, in columns), one span by id, and per-experiment trace counts. The web UI reads only these and
//! MLflow's public endpoints, so everything it shows can be scripted too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::traces::json_response;
use super::{State, mirrored};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{SpanOutline, Store};

pub(super) fn routes<S: Store>(router: Router<Arc<AppState<S>>>) -> Router<Arc<AppState<S>>> {
    let router = mirrored(
        router,
        "/3.0/mlflow/traces/{trace_id}/span-outline",
        get(span_outline::<S>),
    );
    let router = mirrored(
        router,
        "/3.0/mlflow/traces/{trace_id}/spans/{span_id}",
        get(span::<S>),
    );
    mirrored(
        router,
        "/3.0/mlflow/experiments/trace-stats",
        get(experiment_trace_stats::<S>),
    )
}

/// The spans of a trace as parallel columns: row `i` of every column is span `i`, spans in start order.
/// `parent` holds the row of the parent span (-1 for a root or a parent that was never received); times are
/// nanoseconds from `start_time_unix_nano` (a decimal string, as it exceeds a double's exact range), so
/// browsers read them as exact numbers.
#[derive(Serialize, Debug, Default, PartialEq)]
struct Outline {
    trace_id: String,
    start_time_unix_nano: String,
    span_count: usize,
    span_id: Vec<String>,
    parent: Vec<i64>,
    name: Vec<String>,
    span_type: Vec<String>,
    status: Vec<String>,
    start_ns: Vec<i64>,
    /// `None` while the span has not ended.
    duration_ns: Vec<Option<i64>>,
}

impl Outline {
    fn new(trace_id: String, spans: Vec<SpanOutline>) -> Outline {
        let start = spans
            .iter()
            .map(|span| span.start_time_ns)
            .min()
            .unwrap_or(0);
        let rows: HashMap<&str, i64> = spans
            .iter()
            .enumerate()
            .map(|(row, span)| (span.span_id.as_str(), row as i64))
            .collect();
        let parent = spans
            .iter()
            .map(|span| {
                span.parent_span_id
                    .as_deref()
                    .and_then(|parent| rows.get(parent).copied())
                    .unwrap_or(-1)
            })
            .collect();
        let mut outline = Outline {
            trace_id,
            start_time_unix_nano: start.to_string(),
            span_count: spans.len(),
            parent,
            ..Outline::default()
        };
        for span in spans {
            outline.start_ns.push(span.start_time_ns - start);
            outline.duration_ns.push(
                span.end_time_ns
                    .map(|end| end.saturating_sub(span.start_time_ns)),
            );
            outline.span_id.push(span.span_id);
            outline.name.push(span.name);
            outline.span_type.push(span.span_type);
            outline.status.push(span.status);
        }
        outline
    }
}

async fn span_outline<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
) -> ApiResult<Json<Outline>> {
    let (trace_id, spans) = state.store.get_span_outline(trace_id).await?;
    Ok(Json(Outline::new(trace_id, spans)))
}

async fn span<S: Store>(
    state: State<S>,
    Path((trace_id, span_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    if span_id.len() != 16 || !span_id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(format!(
            "invalid span_id {span_id:?}: expected 16 hex digits"
        )));
    }
    let text = state.store.get_span_text(trace_id, span_id).await?;
    Ok(json_response(format!("{{\"span\":{text}}}")))
}

async fn experiment_trace_stats<S: Store>(state: State<S>) -> ApiResult<Json<Value>> {
    let experiments = state.store.experiment_trace_stats().await?;
    Ok(Json(json!({ "experiments": experiments })))
}
