//! Reading and writing the wire forms of traces.
//!
//! ```text
//!   traces.json (v2 `context` schema, v3 OTel-like schema) ──┐
//!   Trace.to_json() {"info": …, "data": …} (v2 and v3)    ───┼──▶ Span / TraceInfo / Trace ──▶ any of them
//!   REST v3 TraceInfo (request_time, "0.059s")            ───┤
//!   OTLP ExportTraceServiceRequest (native AnyValues)     ───┘
//! ```
//!
//! Readers are lenient (any id spelling, numbers or numeric strings, µs or ns event times); writers are exact
//! (the spelling each schema prescribes, int64 as JSON numbers, empty fields omitted where MLflow omits them).

pub mod otlp;
pub mod rest_span;
pub mod span_json;
pub mod trace_json;

use crate::ids::IdError;

/// Keys of one object (or OTLP key-value list) checked for repeats when a codec writes attribute values
/// directly; an object with more takes the slower way through a `serde_json::Value`, which resolves repeats.
const KEYS_CHECKED: usize = 32;

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("missing field `{field}`")]
    MissingField { field: &'static str },
    #[error("invalid value for `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(transparent)]
    Id(#[from] IdError),
}

impl CodecError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        CodecError::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

/// Reads an unsigned integer given as a JSON number or a numeric string (OTLP/JSON writes int64 as strings).
pub(crate) fn lenient_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|float| *float >= 0.0)
                .map(|float| float as u64)
        }),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Reads a signed integer given as a JSON number or a numeric string.
pub(crate) fn lenient_i64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|float| float as i64)),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}
