//! OTLP/HTTP ingest: `POST /v1/traces` with an `ExportTraceServiceRequest` (protobuf or OTLP/JSON, optionally gzip or
//! deflate) and the header `x-mlflow-experiment-id`. Spans from MLflow's client, from our SDK and from any
//! OpenTelemetry SDK become MLflow traces: the trace id is `tr-<hex>`, the record is derived from the spans,
//! resource attributes become tags.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use mlflow_tracing_core::codec::otlp::spans_from_request;
use mlflow_tracing_core::otlp_proto::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::AppState;
use crate::api::State;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;

/// Header naming the experiment the spans go to.
pub const EXPERIMENT_HEADER: &str = "x-mlflow-experiment-id";

pub(crate) fn routes<S: Store>() -> Router<Arc<AppState<S>>> {
    Router::new().route("/v1/traces", post(export::<S>))
}

fn header_text(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn decompress(headers: &HeaderMap, body: &Bytes) -> ApiResult<Vec<u8>> {
    let mut decoded = Vec::new();
    let result = match header_text(headers, header::CONTENT_ENCODING).map(str::trim) {
        None | Some("") | Some("identity") => return Ok(body.to_vec()),
        Some("gzip") => flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut decoded),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..]).read_to_end(&mut decoded),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unsupported Content-Encoding {other:?}"
            )));
        }
    };
    result.map_err(|error| {
        ApiError::invalid(format!("could not decompress the request body: {error}"))
    })?;
    Ok(decoded)
}

async fn export<S: Store>(
    state: State<S>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let experiment_id = header_text(&headers, EXPERIMENT_HEADER)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("missing header {EXPERIMENT_HEADER}")))?
        .to_owned();
    let content_type =
        header_text(&headers, header::CONTENT_TYPE).unwrap_or("application/x-protobuf");
    let bytes = decompress(&headers, &body)?;
    let request: ExportTraceServiceRequest = if content_type.starts_with("application/x-protobuf") {
        ExportTraceServiceRequest::decode(bytes.as_slice())
            .map_err(|error| ApiError::invalid(format!("invalid OTLP protobuf: {error}")))?
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::invalid(format!("invalid OTLP/JSON: {error}")))?
    } else {
        return Err(ApiError::invalid(format!(
            "unsupported Content-Type {content_type:?}: OTLP comes as application/x-protobuf or application/json"
        )));
    };
    let batches = spans_from_request(&request)
        .map_err(|error| ApiError::invalid(format!("invalid span: {error}")))?;
    if batches.iter().all(|batch| batch.spans.is_empty()) {
        return Err(ApiError::invalid("the request has no spans"));
    }
    for batch in batches {
        let tags: BTreeMap<String, String> = batch
            .resource_attributes
            .iter()
            .filter(|(key, _)| !key.starts_with("telemetry.sdk.") && !key.starts_with("mlflow."))
            .map(|(key, value)| {
                (
                    key.clone(),
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                )
            })
            .collect();
        state
            .store
            .log_spans(experiment_id.clone(), batch.spans, tags, None)
            .await?;
    }
    let empty =
        mlflow_tracing_core::otlp_proto::collector::trace::v1::ExportTraceServiceResponse::default(
        );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        empty.encode_to_vec(),
    ))
}
