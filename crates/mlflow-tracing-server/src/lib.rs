//! The mlflow-tracing tracking server: MLflow's trace REST API (v2 and v3, also under `/ajax-api`) and OTLP/HTTP
//! ingest, on an embedded SQLite store, and the web UI that reads them.
//!
//! ```text
//!  official mlflow client ─┐  /api/{2.0,3.0}/mlflow/…  ┌─▶ api::experiments, api::traces ─┐
//!  mlflow-tracing SDK ─────┼──────────────────────────┤                                   ├─▶ Store (SQLite)
//!  any OTel exporter ──────┘  /v1/traces              └─▶ otlp ───────────────────────────┘
//! ```

pub mod api;
pub mod cli;
pub mod demo;
pub mod error;
pub mod loadgen;
pub mod otlp;
pub mod search;
pub mod searchbench;
pub mod store;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

use crate::store::Store;

/// The MLflow version this server answers `/version` with: the client version its API follows. It is at
/// least 3.4, so 3.x clients send spans over OTLP.
pub const MLFLOW_COMPATIBLE_VERSION: &str = "3.17.2";

/// Largest request body accepted by default (MLflow's limit): 100 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 100 * 1024 * 1024;

/// The system clock in nanoseconds since the Unix epoch (0 before it).
pub(crate) fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState<S> {
    pub store: S,
}

/// The whole HTTP API over `store`, accepting bodies up to `body_limit` bytes (larger ones get a 413 with
/// MLflow's error JSON).
pub fn router<S: Store>(store: S, body_limit: usize) -> Router {
    let state = Arc::new(AppState { store });
    api::routes::<S>()
        .merge(otlp::routes::<S>())
        .merge(web::routes())
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(
            move |response: Response| async move {
                if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
                    return response;
                }
                let message =
                    format!("the request body is larger than the limit of {body_limit} bytes");
                ApiError {
                    code: ErrorCode::TooLarge,
                    message,
                }
                .into_response()
            },
        ))
}
