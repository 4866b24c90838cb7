//! Traces: the v3 endpoints of the 3.x client (create the finished record, get, get with spans, batch get,
//! search) and the v2 endpoints it still uses for tags and deletion.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use mlflow_tracing_core::TraceInfo;
use mlflow_tracing_core::codec::trace_json::{DurationStyle, info_from_json, info_to_v3_json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    State, json_body, max_results, mirrored, page_token, parse_page_token, query_pairs, query_value,
};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::search::{parse_filter, parse_order_by};
use crate::store::{DeleteTraces, Store, TraceQuery};

/// Most traces a search page or a batch get returns.
const MAX_TRACES_PER_REQUEST: usize = 1000;

pub(super) fn routes<S: Store>(router: Router<Arc<AppState<S>>>) -> Router<Arc<AppState<S>>> {
    let router = mirrored(router, "/3.0/mlflow/traces", post(start_trace_v3::<S>));
    let router = mirrored(router, "/3.0/mlflow/traces/get", get(get_trace::<S>));
    let router = mirrored(router, "/3.0/mlflow/traces/batchGet", get(batch_get::<S>));
    let router = mirrored(router, "/3.0/mlflow/traces/search", post(search_v3::<S>));
    let router = mirrored(
        router,
        "/3.0/mlflow/traces/{trace_id}",
        get(get_trace_info_v3::<S>),
    );
    let router = mirrored(
        router,
        "/2.0/mlflow/traces/delete-traces",
        post(delete_traces::<S>),
    );
    let router = mirrored(
        router,
        "/3.0/mlflow/traces/delete-traces",
        post(delete_traces::<S>),
    );
    let tags = patch(set_tag::<S>).delete(delete_tag::<S>);
    let router = mirrored(router, "/2.0/mlflow/traces/{trace_id}/tags", tags.clone());
    mirrored(router, "/3.0/mlflow/traces/{trace_id}/tags", tags)
}

fn info_json(info: &TraceInfo) -> Value {
    info_to_v3_json(info, DurationStyle::ProtoDuration)
}

#[derive(Deserialize)]
struct StartTraceV3 {
    trace: Option<TraceEnvelope>,
}

#[derive(Deserialize)]
struct TraceEnvelope {
    trace_info: Option<Value>,
}

async fn start_trace_v3<S: Store>(state: State<S>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: StartTraceV3 = json_body(&body)?;
    let info_value = request
        .trace
        .and_then(|trace| trace.trace_info)
        .ok_or_else(|| {
            ApiError::invalid("missing value for required parameter 'trace.trace_info'")
        })?;
    let info = info_from_json(&info_value)
        .map_err(|error| ApiError::invalid(format!("invalid trace_info: {error}")))?;
    if !info.trace_id.starts_with("tr-") {
        return Err(ApiError::invalid(format!(
            "invalid trace_id {:?}: expected tr-<32 hex>",
            info.trace_id
        )));
    }
    let stored = state.store.start_trace(info).await?;
    Ok(Json(json!({"trace": {"trace_info": info_json(&stored)}})))
}

async fn get_trace_info_v3<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let info = state.store.get_trace_info(trace_id).await?;
    Ok(Json(json!({"trace": {"trace_info": info_json(&info)}})))
}

/// Appends `{"trace_info": …, "spans": [ … ]}` with the stored span texts spliced in as they are.
fn write_trace(text: &mut String, info: &TraceInfo, spans: &[String]) {
    text.reserve(256 + spans.iter().map(|span| span.len() + 1).sum::<usize>());
    text.push_str("{\"trace_info\":");
    text.push_str(&info_json(info).to_string());
    text.push_str(",\"spans\":[");
    for (index, span) in spans.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(span);
    }
    text.push_str("]}");
}

pub(super) fn json_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn get_trace<S: Store>(state: State<S>, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let pairs = query_pairs(query.as_deref());
    let trace_id = query_value(&pairs, "trace_id")
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'trace_id'"))?;
    let traces = state.store.get_traces(vec![trace_id.to_owned()]).await?;
    let mut text = String::from("{\"trace\":");
    for (info, spans) in &traces {
        write_trace(&mut text, info, spans);
    }
    text.push('}');
    Ok(json_response(text))
}

async fn batch_get<S: Store>(state: State<S>, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let pairs = query_pairs(query.as_deref());
    let trace_ids: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| key == "trace_ids")
        .map(|(_, value)| value.as_str())
        .collect();
    if trace_ids.is_empty() {
        return Err(ApiError::invalid(
            "missing value for required parameter 'trace_ids'",
        ));
    }
    if trace_ids.len() > MAX_TRACES_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "too many trace_ids: {} (at most {MAX_TRACES_PER_REQUEST})",
            trace_ids.len()
        )));
    }
    let traces = state
        .store
        .get_traces(trace_ids.into_iter().map(str::to_owned).collect())
        .await?;
    let mut text = String::from("{\"traces\":[");
    for (index, (info, spans)) in traces.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        write_trace(&mut text, info, spans);
    }
    text.push_str("]}");
    Ok(json_response(text))
}

#[derive(Deserialize, Default)]
struct SearchTracesV3 {
    #[serde(default)]
    locations: Vec<Value>,
    #[serde(default)]
    filter: Option<String>,
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    page_token: Option<String>,
}

async fn search_v3<S: Store>(state: State<S>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: SearchTracesV3 = json_body(&body)?;
    let experiment_ids: Vec<String> = request
        .locations
        .iter()
        .filter_map(|location| location.pointer("/mlflow_experiment/experiment_id"))
        .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned))
        .collect();
    if experiment_ids.is_empty() {
        return Err(ApiError::invalid(
            "at least one MLFLOW_EXPERIMENT location is required in 'locations'",
        ));
    }
    let conditions = parse_filter(request.filter.as_deref().unwrap_or_default())
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    let order = parse_order_by(&request.order_by)
        .map_err(|error| ApiError::invalid(format!("invalid order_by: {error}")))?;
    let query = TraceQuery {
        experiment_ids,
        conditions,
        order,
        max_results: max_results(request.max_results, 100, MAX_TRACES_PER_REQUEST)?,
        offset: parse_page_token(request.page_token.as_deref())?,
    };
    let page = state.store.search_traces(query).await?;
    let mut response = json!({"traces": page.items.iter().map(info_json).collect::<Vec<_>>()});
    if let Some(next) = page.next_offset {
        response["next_page_token"] = page_token(next).into();
    }
    Ok(Json(response))
}

#[derive(Deserialize)]
struct SetTag {
    key: Option<String>,
    value: Option<String>,
}

async fn set_tag<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: SetTag = json_body(&body)?;
    let key = request
        .key
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'key'"))?;
    let value = request
        .value
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'value'"))?;
    if key.len() > 250 {
        return Err(ApiError::invalid(format!(
            "tag key is {} characters long; at most 250 are allowed",
            key.len()
        )));
    }
    state.store.set_trace_tag(trace_id, key, value).await?;
    Ok(Json(json!({})))
}

async fn delete_tag<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: SetTag = json_body(&body)?;
    let key = request
        .key
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'key'"))?;
    state.store.delete_trace_tag(trace_id, key).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteTracesRequest {
    experiment_id: Option<String>,
    max_timestamp_millis: Option<i64>,
    max_traces: Option<i64>,
    request_ids: Option<Vec<String>>,
    trace_ids: Option<Vec<String>>,
}

async fn delete_traces<S: Store>(state: State<S>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: DeleteTracesRequest = json_body(&body)?;
    let experiment_id = request
        .experiment_id
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'experiment_id'"))?;
    let ids = request.request_ids.or(request.trace_ids);
    let which = match (ids, request.max_timestamp_millis) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give either 'max_timestamp_millis' or 'request_ids', not both",
            ));
        }
        (Some(ids), None) => DeleteTraces::Ids(ids),
        (None, Some(max_timestamp_ms)) => {
            let max_traces = request
                .max_traces
                .map(|max| usize::try_from(max).unwrap_or(0));
            DeleteTraces::OlderThan {
                max_timestamp_ms,
                max_traces,
            }
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "give 'max_timestamp_millis' or 'request_ids'",
            ));
        }
    };
    let deleted = state.store.delete_traces(experiment_id, which).await?;
    Ok(Json(json!({"traces_deleted": deleted})))
}
