//! The REST API, one module per resource. Every route is served under `/api/<version>/mlflow/…` and mirrored
//! under `/ajax-api/…` (the web UI's prefix). Unknown routes answer a bare 404, as MLflow's server does:
//! clients read that as "endpoint not found" and fall back to older endpoints.

mod artifacts;
mod assessments;
mod experiments;
mod traces;
mod traces_v2;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{MethodRouter, get};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use crate::{AppState, MLFLOW_COMPATIBLE_VERSION};

/// The router state.
pub type State<S> = axum::extract::State<Arc<AppState<S>>>;

/// Adds `path` (`/2.0/mlflow/…`) under both `/api` and `/ajax-api`.
fn mirrored<S: Store>(
    router: Router<Arc<AppState<S>>>,
    path: &str,
    method: MethodRouter<Arc<AppState<S>>>,
) -> Router<Arc<AppState<S>>> {
    router
        .route(&format!("/api{path}"), method.clone())
        .route(&format!("/ajax-api{path}"), method)
}

pub(crate) fn routes<S: Store>() -> Router<Arc<AppState<S>>> {
    let router = Router::new()
        .route("/version", get(|| async { MLFLOW_COMPATIBLE_VERSION }))
        .route("/health", get(|| async { "OK" }));
    let router = mirrored(router, "/3.0/mlflow/server-info", get(server_info));
    let router = experiments::routes(router);
    let router = artifacts::routes(router);
    let router = assessments::routes(router);
    let router = traces_v2::routes(router);
    let router = ui::routes(router);
    traces::routes(router)
}

async fn server_info() -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "features_enabled": {},
    }))
}

/// Reads a JSON request body; anything malformed is a 400 naming what was wrong.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let text = if body.is_empty() { &b"{}"[..] } else { body };
    serde_json::from_slice(text)
        .map_err(|error| ApiError::invalid(format!("invalid request body: {error}")))
}

/// The query string as key-value pairs, repeated keys kept (`trace_ids=a&trace_ids=b`).
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.map_or_else(Vec::new, |query| {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    })
}

/// The first value of `key` in the query.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// An opaque page token for an offset (MLflow encodes `{"offset": N}` in base64).
pub(crate) fn page_token(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(json!({"offset": offset}).to_string())
}

/// The offset in a page token; a token this server did not issue is a 400.
pub(crate) fn parse_page_token(token: Option<&str>) -> ApiResult<usize> {
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return Ok(0);
    };
    let invalid = || ApiError::invalid(format!("invalid page_token {token:?}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    value
        .get("offset")
        .and_then(serde_json::Value::as_u64)
        .map(|offset| offset as usize)
        .ok_or_else(invalid)
}

/// `max_results` within `1..=limit`, `default` when absent.
pub(crate) fn max_results(value: Option<i64>, default: usize, limit: usize) -> ApiResult<usize> {
    match value {
        None => Ok(default),
        Some(value) if value >= 1 && value as usize <= limit => Ok(value as usize),
        Some(value) => Err(ApiError::invalid(format!(
            "invalid max_results {value}: must be between 1 and {limit}"
        ))),
    }
}
