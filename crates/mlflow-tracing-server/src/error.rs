//! The one error type of the API, and the one place its code becomes an HTTP status and an MLflow
//! `error_code`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::{StoreError, StoreErrorKind};

/// MLflow's error codes that this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 404 `RESOURCE_DOES_NOT_EXIST`: the entity named by the request does not exist.
    NotFound,
    /// 400 `RESOURCE_ALREADY_EXISTS`.
    AlreadyExists,
    /// 400 `INVALID_PARAMETER_VALUE`: the request is malformed or a field has a wrong value.
    InvalidParameter,
    /// 413 `REQUEST_LIMIT_EXCEEDED`: the body is over the configured limit.
    TooLarge,
    /// 500 `INTERNAL_ERROR`.
    Internal,
}

impl ErrorCode {
    fn status_and_name(self) -> (StatusCode, &'static str) {
        match self {
            ErrorCode::NotFound => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            ErrorCode::AlreadyExists => (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
            ErrorCode::InvalidParameter => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
            ErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_LIMIT_EXCEEDED"),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

/// An error answered as `{"error_code": …, "message": …}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::InvalidParameter,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::NotFound,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = match error.kind {
            StoreErrorKind::NotFound => ErrorCode::NotFound,
            StoreErrorKind::Conflict => ErrorCode::AlreadyExists,
            StoreErrorKind::InvalidInput => ErrorCode::InvalidParameter,
            StoreErrorKind::Internal => ErrorCode::Internal,
        };
        if code == ErrorCode::Internal {
            log::error!(error:% = error.message; "store failure");
        }
        ApiError {
            code,
            message: error.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, name) = self.code.status_and_name();
        (
            status,
            Json(json!({"error_code": name, "message": self.message})),
        )
            .into_response()
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
