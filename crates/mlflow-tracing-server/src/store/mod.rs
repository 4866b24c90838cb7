//! Storage: one [`Store`] trait, one module per backend.
//!
//! Ingestion is idempotent and order-free: the MLflow 3.x client races StartTraceV3, OTLP span export and the
//! `traces.json` upload, so each path merges into what the others stored. The client's own record
//! (StartTraceV3) wins for the fields it carries; spans only fill a record the client has not sent yet.

pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use mlflow_tracing_core::{Assessment, Span, TraceInfo};

use crate::search::{Condition, OrderBy};

/// A portable error kind, so the API maps errors without reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    NotFound,
    Conflict,
    InvalidInput,
    Internal,
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn not_found(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::NotFound,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::InvalidInput,
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::Conflict,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::Internal,
            message: message.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: BTreeMap<String, String>,
}

/// A page of results and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_offset: Option<usize>,
}

/// One span without its payload: what a viewer needs to draw the tree and the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanOutline {
    /// 16 hex digits.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub span_type: String,
    /// `OK`, `ERROR` or `UNSET`.
    pub status: String,
    pub start_time_ns: i64,
    pub end_time_ns: Option<i64>,
}

/// How many traces an experiment holds and when the latest one started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExperimentTraceStats {
    pub experiment_id: String,
    pub trace_count: u64,
    /// Request time (epoch ms) of the newest trace.
    pub last_trace_time_ms: Option<i64>,
}

/// What a v2 EndTrace changes.
#[derive(Debug, Clone)]
pub struct TraceEnd {
    pub end_time_ms: i64,
    pub state: mlflow_tracing_core::TraceState,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// A trace search.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    pub experiment_ids: Vec<String>,
    pub conditions: Vec<Condition>,
    pub order: Vec<OrderBy>,
    pub max_results: usize,
    pub offset: usize,
}

/// Which traces `delete_traces` removes.
#[derive(Debug, Clone)]
pub enum DeleteTraces {
    /// These ids.
    Ids(Vec<String>),
    /// Traces that started before this time (epoch ms), oldest first, at most `max_traces`.
    OlderThan {
        max_timestamp_ms: i64,
        max_traces: Option<usize>,
    },
}

/// Everything the server stores. Methods take owned arguments so backends can move them to a blocking
/// thread or a connection task.
pub trait Store: Send + Sync + 'static {
    fn create_experiment(
        &self,
        name: String,
        tags: BTreeMap<String, String>,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    fn get_experiment(
        &self,
        experiment_id: String,
    ) -> impl Future<Output = StoreResult<Experiment>> + Send;

    fn get_experiment_by_name(
        &self,
        name: String,
    ) -> impl Future<Output = StoreResult<Experiment>> + Send;

    fn search_experiments(
        &self,
        max_results: usize,
        offset: usize,
    ) -> impl Future<Output = StoreResult<Page<Experiment>>> + Send;

    /// Stores the client's finished record (StartTraceV3) and returns the record as stored, with the server's
    /// tags and metadata added.
    fn start_trace(&self, info: TraceInfo) -> impl Future<Output = StoreResult<TraceInfo>> + Send;

    /// Stores spans (a span already stored is replaced) and creates or updates the records of their traces.
    /// `resource_tags` become tags of traces created here. With `into_trace`, all spans belong to that
    /// trace (an upload for a v2 request id) instead of `tr-<their trace id>`.
    fn log_spans(
        &self,
        experiment_id: String,
        spans: Vec<Span>,
        resource_tags: BTreeMap<String, String>,
        into_trace: Option<String>,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Adds an assessment to a trace; the server makes its id. An assessment that `overrides` another marks
    /// that one invalid.
    fn create_assessment(
        &self,
        trace_id: String,
        assessment: Assessment,
    ) -> impl Future<Output = StoreResult<Assessment>> + Send;

    fn get_assessment(
        &self,
        trace_id: String,
        assessment_id: String,
    ) -> impl Future<Output = StoreResult<Assessment>> + Send;

    /// Changes the fields `update_mask` names.
    fn update_assessment(
        &self,
        trace_id: String,
        assessment_id: String,
        changes: Assessment,
        update_mask: Vec<String>,
    ) -> impl Future<Output = StoreResult<Assessment>> + Send;

    fn delete_assessment(
        &self,
        trace_id: String,
        assessment_id: String,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Starts a trace through the v2 API: the server makes the request id.
    fn create_trace_v2(
        &self,
        info: TraceInfo,
    ) -> impl Future<Output = StoreResult<TraceInfo>> + Send;

    /// Ends a v2 trace: its duration, state, and metadata and tags merged in.
    fn end_trace_v2(
        &self,
        request_id: String,
        end: TraceEnd,
    ) -> impl Future<Output = StoreResult<TraceInfo>> + Send;

    fn get_trace_info(
        &self,
        trace_id: String,
    ) -> impl Future<Output = StoreResult<TraceInfo>> + Send;

    /// Traces given in any spelling, in the order given, each with its record and its spans as REST v3 JSON
    /// texts in start order; a missing one is `NotFound`.
    fn get_traces(
        &self,
        trace_ids: Vec<String>,
    ) -> impl Future<Output = StoreResult<Vec<(TraceInfo, Vec<String>)>>> + Send;

    /// The stored id of a trace given in any spelling, and the outline of every span of it in start order;
    /// a missing trace is `NotFound`.
    fn get_span_outline(
        &self,
        trace_id: String,
    ) -> impl Future<Output = StoreResult<(String, Vec<SpanOutline>)>> + Send;

    /// One span as REST v3 JSON text; `span_id` is 16 hex digits.
    fn get_span_text(
        &self,
        trace_id: String,
        span_id: String,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    /// Trace counts and latest activity of every experiment that has traces.
    fn experiment_trace_stats(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<ExperimentTraceStats>>> + Send;

    fn set_trace_tag(
        &self,
        trace_id: String,
        key: String,
        value: String,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn delete_trace_tag(
        &self,
        trace_id: String,
        key: String,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn delete_traces(
        &self,
        experiment_id: String,
        which: DeleteTraces,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Trace records of these experiments that match every condition, in `order` (newest first when empty).
    fn search_traces(
        &self,
        query: TraceQuery,
    ) -> impl Future<Output = StoreResult<Page<TraceInfo>>> + Send;
}
