//! MLflow Tracing for Rust agents.
//!
//! Record what your agent did — every model call, retrieval and tool call, with inputs, outputs, latency,
//! tokens and errors — as a tree of spans, in MLflow's data model, with far less overhead than a general
//! tracer. The same concepts as MLflow's Python API:
//!
//! | Python | Rust |
//! |---|---|
//! | `@mlflow.trace(name=, span_type=, attributes=)` | [`#[trace(name = "…", span_type = "…", attributes(k = v))]`](trace) |
//! | `with mlflow.start_span("x") as span:` | `let span = start_span("x");` ([`SpanGuard`]), or [`with_span`] |
//! | `mlflow.trace(fn)(a, b)` | [`trace_call!(fn(a, b))`](trace_call) |
//! | generator tracing | [`trace_iter`], [`trace_stream`] |
//! | `MlflowClient().start_trace(...)` … `end_trace` | [`MlflowClient`] |
//! | `get_current_active_span`, `update_current_trace`, `get_last_active_trace_id`, `get_trace` | same names |
//!
//! ```
//! use mlflow_tracing::{trace, start_span, SpanType, InMemoryExporter};
//!
//! #[trace(span_type = "TOOL")]
//! fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! #[trace(name = "agent", span_type = "AGENT", attributes(model = "stub"))]
//! fn agent(question: &str) -> String {
//!     let span = start_span("think");
//!     span.set_inputs(&question);
//!     let sum = add(2, 3);
//!     span.set_outputs(&sum);
//!     format!("{question}: {sum}")
//! }
//!
//! let exporter = InMemoryExporter::new();
//! let guard = mlflow_tracing::Config::new().exporter(exporter.clone()).install();
//! agent("two plus three");
//! guard.flush();
//! let trace = &exporter.traces()[0];
//! let names: Vec<_> = trace.data.spans.iter().map(|span| span.name.as_str()).collect();
//! assert_eq!(names, ["agent", "think", "add"]);
//! ```
//!
//! # Nesting
//! A span is the child of the current span of its thread or task; a span with no current span starts a new
//! trace, which is exported when its root ends. Threads and spawned tasks start with no current span: carry
//! it with [`Context::wrap`] (threads, pools), [`spawn`], or [`FutureExt::in_current_trace`] (tasks). Inside
//! one async task, `#[trace]` on `async fn` keeps nesting right across `.await`, on any runtime. Do not hold
//! a [`SpanGuard`] across `.await` (it is not `Send`, so a spawned task cannot): use `#[trace]` on an async
//! fn, or a detached span ([`SpanBuilder::start_detached`]).
//!
//! # Cost
//! Finishing a span never blocks and never does I/O: a finished trace is handed to a dedicated export thread
//! through a bounded queue (full → dropped and counted, see [`dropped_trace_count`]). With tracing disabled
//! ([`disable`]) every span call is a few nanoseconds.

mod arena;
mod client;
mod clock;
pub mod config;
mod context;
mod exception;
mod export;
mod fluent;
mod http_export;
mod ids;
mod json;
mod live;
mod pool;
mod processor;
mod record;
mod span_data;
mod stream;
mod trace_state;

#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;

use std::time::Duration;

pub use client::{ClientError, EndOptions, MlflowClient, StartOptions};
pub use config::{disable, enable, is_enabled};
pub use context::{Context, ContextGuard, FutureExt, spawn};
pub use export::{ExportError, Exporter, InMemoryExporter, StdoutExporter};
pub use fluent::{
    SpanBuilder, SpanGuard, TraceUpdate, get_active_trace_id, get_current_active_span,
    get_last_active_trace_id, get_last_active_trace_id_in_thread, get_trace, span, start_span,
    update_current_trace, with_span,
};
pub use http_export::{MlflowExporter, OtlpExporter};
pub use live::{LiveSpan, NO_OP_SPAN_TRACE_ID};
pub use mlflow_tracing_core as core;
pub use mlflow_tracing_core::{
    SpanEvent, SpanId, SpanStatus, SpanStatusCode, SpanType, Trace, TraceInfo, TraceState,
};
pub use mlflow_tracing_macros::{trace, trace_call};
pub use processor::{dropped_trace_count, export_failure_count};
pub use stream::{TracedIter, TracedStream, trace_iter, trace_stream};
pub use trace_state::dropped_span_count;

/// The README's quick start, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeQuickStart;

/// How long [`TracingGuard`] and [`flush`] wait for the export thread by default.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets tracing up from the environment ([`Config::from_env`]). Keep the guard: dropping it flushes.
pub fn init() -> TracingGuard {
    Config::from_env().install()
}

/// Waits until every trace finished so far has been exported, at most `timeout`; returns whether it was.
pub fn flush(timeout: Duration) -> bool {
    processor::flush(timeout)
}

/// Tracing set-up: the exporter and the limits. Settings not given keep their current value (the
/// environment's `MLFLOW_*` variables, or the defaults).
///
/// ```
/// use std::time::Duration;
/// use mlflow_tracing::{Config, InMemoryExporter};
///
/// let _guard = Config::new()
///     .exporter(InMemoryExporter::new())
///     .sampling_ratio(1.0)
///     .max_payload_bytes(64 * 1024)
///     .trace_timeout(Duration::from_secs(300))
///     .install();
/// ```
#[derive(Default)]
pub struct Config {
    exporter: Option<Box<dyn Exporter>>,
    sampling_ratio: Option<f64>,
    max_payload_bytes: Option<usize>,
    max_spans_per_trace: Option<usize>,
    finished_buffer_size: Option<usize>,
    trace_timeout: Option<Option<Duration>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("exporter", &self.exporter.as_ref().map(|_| "dyn Exporter"))
            .field("sampling_ratio", &self.sampling_ratio)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("max_spans_per_trace", &self.max_spans_per_trace)
            .field("finished_buffer_size", &self.finished_buffer_size)
            .field("trace_timeout", &self.trace_timeout)
            .finish()
    }
}

impl Config {
    /// Nothing set yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The exporter the environment names: an MLflow server when `MLFLOW_TRACKING_URI` is `http(s)://…`
    /// (experiment from `MLFLOW_EXPERIMENT_ID` / `MLFLOW_EXPERIMENT_NAME`), else a collector when
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, else none (traces stay in process for [`get_trace`]).
    pub fn from_env() -> Self {
        let config = Config::new();
        if let Some(exporter) = MlflowExporter::from_env() {
            return config.exporter(exporter);
        }
        match OtlpExporter::from_env() {
            Some(exporter) => config.exporter(exporter),
            None => config,
        }
    }

    /// Sends finished traces to this exporter.
    pub fn exporter(mut self, exporter: impl Exporter) -> Self {
        self.exporter = Some(Box::new(exporter));
        self
    }

    /// Keeps this fraction of traces (`MLFLOW_TRACE_SAMPLING_RATIO`).
    pub fn sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = Some(ratio);
        self
    }

    /// Cuts each recorded payload to this many bytes (`MLFLOW_TRACE_MAX_PAYLOAD_BYTES`, default 1 MiB).
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = Some(bytes);
        self
    }

    /// Keeps at most this many spans per trace (default 1,000,000).
    pub fn max_spans_per_trace(mut self, spans: usize) -> Self {
        self.max_spans_per_trace = Some(spans);
        self
    }

    /// Keeps this many finished traces in process for [`get_trace`] (default 1000).
    pub fn finished_buffer_size(mut self, traces: usize) -> Self {
        self.finished_buffer_size = Some(traces);
        self
    }

    /// Finishes traces open longer than this with state ERROR (`MLFLOW_TRACE_TIMEOUT_SECONDS`).
    pub fn trace_timeout(mut self, timeout: Duration) -> Self {
        self.trace_timeout = Some(Some(timeout));
        self
    }

    /// Applies the settings and installs the exporter. Keep the guard alive: dropping it flushes the
    /// traces finished so far and shuts the exporter down.
    pub fn install(self) -> TracingGuard {
        config::read_environment_once();
        if let Some(ratio) = self.sampling_ratio {
            config::set_sampling_ratio(ratio);
        }
        if let Some(bytes) = self.max_payload_bytes {
            config::set_max_payload_bytes(bytes);
        }
        if let Some(spans) = self.max_spans_per_trace {
            config::set_max_spans_per_trace(spans);
        }
        if let Some(traces) = self.finished_buffer_size {
            config::set_finished_buffer_size(traces);
        }
        if let Some(timeout) = self.trace_timeout {
            config::set_trace_timeout(timeout);
        }
        if let Some(exporter) = self.exporter {
            if !processor::set_exporter(Some(exporter), DEFAULT_FLUSH_TIMEOUT) {
                log::warn!("the export thread did not take the new exporter in time");
            }
        }
        TracingGuard { _private: () }
    }
}

/// Flushes finished traces and shuts the exporter down when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the exporter down"]
pub struct TracingGuard {
    _private: (),
}

impl TracingGuard {
    /// Waits until every trace finished so far is exported ([`DEFAULT_FLUSH_TIMEOUT`] at most).
    pub fn flush(&self) -> bool {
        processor::flush(DEFAULT_FLUSH_TIMEOUT)
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if !processor::flush(DEFAULT_FLUSH_TIMEOUT) {
            log::warn!("traces were still being exported when tracing shut down");
        }
        processor::set_exporter(None, DEFAULT_FLUSH_TIMEOUT);
    }
}
