//! Trace artifacts: `traces.json` uploaded by clients that did not (or could not) send spans over OTLP, and
//! downloaded by clients and the UI. Spans are kept in the database either way: an upload is ingested like
//! an OTLP export (idempotently), a download is built from the stored spans.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mlflow_tracing_core::codec::rest_span::span_from_rest_json;
use mlflow_tracing_core::codec::span_json::{
    read_traces_json, write_traces_json_v2, write_traces_json_v3,
};
use mlflow_tracing_core::{TraceData, keys};

use super::{State, mirrored, query_pairs, query_value};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;

pub(super) fn routes<S: Store>(router: Router<Arc<AppState<S>>>) -> Router<Arc<AppState<S>>> {
    let artifact = get(download::<S>).put(upload::<S>);
    let router = mirrored(router, "/2.0/mlflow-artifacts/artifacts/{*path}", artifact);
    let router = mirrored(
        router,
        "/2.0/mlflow/get-trace-artifact",
        get(get_trace_artifact::<S>),
    );
    mirrored(
        router,
        "/3.0/mlflow/get-trace-artifact",
        get(get_trace_artifact::<S>),
    )
}

/// `(experiment_id, trace_id)` of `<experiment>/traces/<trace_id>/artifacts/traces.json`.
fn trace_artifact_path(path: &str) -> ApiResult<(String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [experiment, "traces", trace_id, "artifacts", "traces.json"] => {
            Ok(((*experiment).to_owned(), (*trace_id).to_owned()))
        }
        _ => Err(ApiError::not_found(format!(
            "artifact {path:?} not found: this server stores trace artifacts only (<experiment>/traces/<trace_id>/artifacts/traces.json)"
        ))),
    }
}

async fn upload<S: Store>(
    state: State<S>,
    Path(path): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (experiment_id, trace_id) = trace_artifact_path(&path)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::invalid("traces.json is not UTF-8"))?;
    let data = read_traces_json(text)
        .map_err(|error| ApiError::invalid(format!("invalid traces.json: {error}")))?;
    // A v3 trace id is its spans' OpenTelemetry id; a v2 request id is not, and names the trace they go to.
    let into_trace = if trace_id.starts_with("tr-") {
        if let Some(span) = data
            .spans
            .iter()
            .find(|span| span.trace_id.to_mlflow() != trace_id)
        {
            return Err(ApiError::invalid(format!(
                "traces.json of {trace_id} holds span {} of trace {}",
                span.span_id,
                span.trace_id.to_mlflow()
            )));
        }
        None
    } else {
        Some(trace_id)
    };
    if !data.spans.is_empty() {
        state
            .store
            .log_spans(experiment_id, data.spans, BTreeMap::new(), into_trace)
            .await?;
    }
    Ok(().into_response())
}

/// The trace's `traces.json`, in the schema of the client that made it: v2 for traces started through the
/// v2 API (their readers cannot read v3 spans), v3 otherwise.
async fn traces_json<S: Store>(state: &State<S>, trace_id: String) -> ApiResult<String> {
    let Some((info, texts)) = state.store.get_traces(vec![trace_id.clone()]).await?.pop() else {
        return Err(ApiError::not_found(format!(
            "Trace with ID {trace_id} not found."
        )));
    };
    if texts.is_empty() {
        return Err(ApiError::not_found(format!(
            "no spans stored for trace {trace_id}"
        )));
    }
    let spans = texts
        .iter()
        .map(|text| {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|error| ApiError::invalid(error.to_string()))?;
            span_from_rest_json(&value).map_err(|error| ApiError::invalid(error.to_string()))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let data = TraceData { spans };
    // 2.13 records the schema version as a tag, 2.14+ as metadata; v2 request ids have no `tr-`.
    let schema_version = info
        .tags
        .get(keys::META_SCHEMA_VERSION)
        .or(info.trace_metadata.get(keys::META_SCHEMA_VERSION));
    let written_by_v2 =
        schema_version.is_some_and(|version| version == "2") || !info.trace_id.starts_with("tr-");
    Ok(if written_by_v2 {
        write_traces_json_v2(&data)
    } else {
        write_traces_json_v3(&data)
    })
}

async fn download<S: Store>(state: State<S>, Path(path): Path<String>) -> ApiResult<Response> {
    let (_, trace_id) = trace_artifact_path(&path)?;
    let text = traces_json(&state, trace_id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

async fn get_trace_artifact<S: Store>(
    state: State<S>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let pairs = query_pairs(query.as_deref());
    let trace_id = query_value(&pairs, "request_id")
        .or_else(|| query_value(&pairs, "trace_id"))
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'request_id'"))?;
    let text = traces_json(&state, trace_id.to_owned()).await?;
    let disposition = "attachment; filename=traces.json";
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response())
}
