//! The MLflow Tracing data model and its codecs, shared by the `mlflow-tracing` SDK and the tracking server.
//!
//! - [`Span`], [`Trace`], [`TraceInfo`]: the model, with MLflow's conventions (attribute values as JSON text,
//!   `tr-<hex>` trace ids, reserved keys in [`keys`]).
//! - [`codec`]: `traces.json` (v2 and v3 span schemas), `Trace.to_json()`, the REST `TraceInfo`, OTLP protobuf.
//!
//! This crate does no I/O and needs no async runtime.

pub mod codec;
pub mod ids;
pub mod keys;
pub mod span;
pub mod time;
pub mod trace;

#[cfg(test)]
mod test_random;

pub use ids::{IdError, SpanId, TraceId};
pub use span::{
    AttributeKey, Attributes, EventAttributes, JsonText, Span, SpanEvent, SpanLink, SpanStatus,
    SpanStatusCode, SpanType,
};
pub use trace::{Assessment, Trace, TraceData, TraceInfo, TraceLocation, TraceState};

/// The OTLP protobuf types this crate converts to and from.
pub use opentelemetry_proto::tonic as otlp_proto;
pub use prost;
