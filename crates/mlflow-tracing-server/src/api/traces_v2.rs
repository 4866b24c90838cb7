//! The v2 trace API of MLflow 2.14–2.22 clients: the server makes the request id when the root span starts,
//! the client uploads `traces.json` and then ends the trace. (Tags and deletion share the v3 handlers.)

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use mlflow_tracing_core::codec::trace_json::info_to_v2_json;
use mlflow_tracing_core::{TraceInfo, TraceLocation, TraceState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    State, json_body, max_results, mirrored, page_token, parse_page_token, query_pairs, query_value,
};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::search::{parse_filter, parse_order_by};
use crate::store::{Store, TraceEnd, TraceQuery};

pub(super) fn routes<S: Store>(router: Router<Arc<AppState<S>>>) -> Router<Arc<AppState<S>>> {
    let router = mirrored(
        router,
        "/2.0/mlflow/traces",
        post(start_trace::<S>).get(search::<S>),
    );
    let router = mirrored(
        router,
        "/2.0/mlflow/traces/{trace_id}",
        patch(end_trace::<S>),
    );
    mirrored(
        router,
        "/2.0/mlflow/traces/{trace_id}/info",
        get(get_info::<S>),
    )
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

fn to_map(pairs: Vec<KeyValue>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|pair| (pair.key, pair.value))
        .collect()
}

/// A v2 int64 comes as a JSON number, or as a string from some clients.
#[derive(Deserialize)]
#[serde(untagged)]
enum Millis {
    Number(i64),
    Text(String),
}

impl Millis {
    fn value(self, field: &str) -> ApiResult<i64> {
        match self {
            Millis::Number(number) => Ok(number),
            Millis::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| ApiError::invalid(format!("invalid {field} {text:?}"))),
        }
    }
}

#[derive(Deserialize)]
struct StartTrace {
    experiment_id: Option<String>,
    timestamp_ms: Option<Millis>,
    #[serde(default)]
    request_metadata: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

fn respond(info: &TraceInfo) -> Json<Value> {
    Json(json!({"trace_info": info_to_v2_json(info)}))
}

async fn start_trace<S: Store>(state: State<S>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: StartTrace = json_body(&body)?;
    let experiment_id = request
        .experiment_id
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'experiment_id'"))?;
    let request_time_ms = request
        .timestamp_ms
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'timestamp_ms'"))?
        .value("timestamp_ms")?;
    let info = TraceInfo {
        trace_location: TraceLocation::experiment(experiment_id),
        request_time_ms,
        state: TraceState::InProgress,
        trace_metadata: to_map(request.request_metadata),
        tags: to_map(request.tags),
        ..TraceInfo::default()
    };
    Ok(respond(&state.store.create_trace_v2(info).await?))
}

#[derive(Deserialize)]
struct EndTrace {
    timestamp_ms: Option<Millis>,
    status: Option<String>,
    #[serde(default)]
    request_metadata: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn end_trace<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: EndTrace = json_body(&body)?;
    let end_time_ms = request
        .timestamp_ms
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'timestamp_ms'"))?
        .value("timestamp_ms")?;
    let status = request.status.unwrap_or_else(|| "OK".to_owned());
    let state_value = TraceState::parse(&status)
        .ok_or_else(|| ApiError::invalid(format!("invalid status {status:?}")))?;
    let end = TraceEnd {
        end_time_ms,
        state: state_value,
        metadata: to_map(request.request_metadata),
        tags: to_map(request.tags),
    };
    Ok(respond(&state.store.end_trace_v2(trace_id, end).await?))
}

async fn get_info<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(respond(&state.store.get_trace_info(trace_id).await?))
}

async fn search<S: Store>(state: State<S>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let pairs = query_pairs(query.as_deref());
    let values = |key: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let experiment_ids = values("experiment_ids");
    if experiment_ids.is_empty() {
        return Err(ApiError::invalid(
            "missing value for required parameter 'experiment_ids'",
        ));
    }
    let requested = query_value(&pairs, "max_results")
        .map(|text| {
            text.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("invalid max_results {text:?}")))
        })
        .transpose()?;
    let query = TraceQuery {
        experiment_ids,
        conditions: parse_filter(query_value(&pairs, "filter").unwrap_or_default())
            .map_err(|error| ApiError::invalid(error.to_string()))?,
        order: parse_order_by(&values("order_by"))
            .map_err(|error| ApiError::invalid(format!("invalid order_by: {error}")))?,
        max_results: max_results(requested, 100, 1000)?,
        offset: parse_page_token(query_value(&pairs, "page_token"))?,
    };
    let page = state.store.search_traces(query).await?;
    let mut response =
        json!({"traces": page.items.iter().map(info_to_v2_json).collect::<Vec<_>>()});
    if let Some(next) = page.next_offset {
        response["next_page_token"] = page_token(next).into();
    }
    Ok(Json(response))
}
