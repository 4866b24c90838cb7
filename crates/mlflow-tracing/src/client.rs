//! The client API: spans with explicit trace and span ids, for callbacks and multi-threaded code where
//! nesting cannot follow the execution (MLflow's `MlflowClient.start_trace/start_span/end_span/end_trace`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use mlflow_tracing_core::{IdError, SpanId, SpanStatus, SpanStatusCode, SpanType, Trace, TraceId};
use serde::Serialize;

use crate::arena::PayloadText;
use crate::context::{position_of, top_trace, with_stack};
use crate::fluent::{self, TraceUpdate};
use crate::live::{LiveSpan, NO_OP_SPAN_TRACE_ID};
use crate::span_data::{Extra, SpanMutation, Text};
use crate::trace_state::{EndError, OpenTrace};
use crate::{config, record};

/// What the client API rejects.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error(
        "trace {trace_id} is not open: it was never started in this process or has already ended"
    )]
    TraceNotOpen { trace_id: String },
    #[error("span {span_id} is not an open span of trace {trace_id}")]
    SpanNotFound { trace_id: String, span_id: SpanId },
    #[error("span {span_id} of trace {trace_id} has already ended")]
    SpanAlreadyEnded { trace_id: String, span_id: SpanId },
    #[error(
        "a fluent span of trace {trace_id} is active on this thread; start_trace would start a second trace \
         inside it: use start_span with that trace id, or end the fluent span first"
    )]
    FluentSpanActive { trace_id: String },
}

/// How a span starts: type, inputs, attributes; for a trace also tags and experiment.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    span_type: Option<Text>,
    inputs: Option<PayloadText>,
    attributes: Vec<(Text, PayloadText)>,
    tags: BTreeMap<String, String>,
    experiment_id: Option<String>,
    start_time_ns: Option<u64>,
}

impl StartOptions {
    /// No options: type `UNKNOWN`, no inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The span type.
    pub fn span_type(mut self, span_type: impl Into<SpanType>) -> Self {
        self.span_type = Some(crate::live::span_type_text(span_type.into()));
        self
    }

    /// The inputs, recorded as JSON.
    pub fn inputs<T: Serialize + ?Sized>(mut self, inputs: &T) -> Self {
        self.inputs = Some(PayloadText::Owned(record::encode(inputs)));
        self
    }

    /// An attribute, recorded as JSON.
    pub fn attribute<T: Serialize + ?Sized>(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: &T,
    ) -> Self {
        self.attributes
            .push((key.into(), PayloadText::Owned(record::encode(value))));
        self
    }

    /// A trace tag (for `start_trace`).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// The experiment the trace goes to (for `start_trace`).
    pub fn experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.experiment_id = Some(experiment_id.into());
        self
    }

    /// The start time, nanoseconds since the epoch (default: now).
    pub fn start_time_ns(mut self, start_time_ns: u64) -> Self {
        self.start_time_ns = Some(start_time_ns);
        self
    }

    fn builder(&self, name: Cow<'static, str>) -> fluent::SpanBuilder {
        let mut builder = fluent::span(name);
        if let Some(span_type) = &self.span_type {
            builder = builder.span_type(SpanType::parse(span_type));
        }
        if let Some(start_time_ns) = self.start_time_ns {
            builder = builder.start_time_ns(start_time_ns);
        }
        if let Some(experiment_id) = &self.experiment_id {
            builder = builder.experiment_id(experiment_id.clone());
        }
        builder
    }
}

/// How a span ends: outputs, attributes, status (default OK) and time.
#[derive(Debug, Clone, Default)]
pub struct EndOptions {
    outputs: Option<PayloadText>,
    attributes: Vec<(Text, PayloadText)>,
    status: Option<SpanStatus>,
    end_time_ns: Option<u64>,
}

impl EndOptions {
    /// No options: status OK, no outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outputs, recorded as JSON.
    pub fn outputs<T: Serialize + ?Sized>(mut self, outputs: &T) -> Self {
        self.outputs = Some(PayloadText::Owned(record::encode(outputs)));
        self
    }

    /// An attribute, recorded as JSON.
    pub fn attribute<T: Serialize + ?Sized>(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: &T,
    ) -> Self {
        self.attributes
            .push((key.into(), PayloadText::Owned(record::encode(value))));
        self
    }

    /// The final status.
    pub fn status(mut self, status: SpanStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// The end time, nanoseconds since the epoch (default: now).
    pub fn end_time_ns(mut self, end_time_ns: u64) -> Self {
        self.end_time_ns = Some(end_time_ns);
        self
    }
}

/// The low-level client: thread-safe, explicit ids, cheap to clone.
///
/// ```
/// use mlflow_tracing::{EndOptions, MlflowClient, SpanType, StartOptions};
///
/// let client = MlflowClient::new();
/// let root = client.start_trace("predict", StartOptions::new().inputs(&"what is mlflow?")).unwrap();
/// let trace_id = root.trace_id();
/// let child = client
///     .start_span("search", &trace_id, root.span_id(), StartOptions::new().span_type(SpanType::Retriever))
///     .unwrap();
/// client.end_span(&trace_id, child.span_id(), EndOptions::new().outputs(&["doc"])).unwrap();
/// client.end_trace(&trace_id, EndOptions::new().outputs(&"an answer")).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MlflowClient {
    experiment_id: Option<Arc<str>>,
}

impl MlflowClient {
    /// A client recording into the default experiment (or the one the exporter is configured with).
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose traces go to this experiment unless `start_trace` names another.
    pub fn with_experiment_id(experiment_id: impl Into<String>) -> Self {
        Self {
            experiment_id: Some(Arc::from(experiment_id.into())),
        }
    }

    /// Starts a trace and returns its root span. Nothing is sent until the trace ends.
    pub fn start_trace(
        &self,
        name: impl Into<Cow<'static, str>>,
        options: StartOptions,
    ) -> Result<LiveSpan, ClientError> {
        let active = with_stack(|stack| top_trace(stack).map(|trace| trace.trace_id)).flatten();
        if let Some(trace_id) = active {
            return Err(ClientError::FluentSpanActive {
                trace_id: trace_id.to_mlflow(),
            });
        }
        let mut options = options;
        if options.experiment_id.is_none() {
            options.experiment_id = self.experiment_id.as_deref().map(str::to_owned);
        }
        let root = self.start_detached(options.builder(name.into()), None, &options);
        if !options.tags.is_empty() {
            if let Some(trace) = &root.trace {
                trace.update(TraceUpdate::tags_map(options.tags).into_updates());
            }
        }
        Ok(root)
    }

    /// Starts a span under `parent_id` in the open trace `trace_id` (any id spelling: `tr-…`, hex, base64).
    pub fn start_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        trace_id: &str,
        parent_id: SpanId,
        options: StartOptions,
    ) -> Result<LiveSpan, ClientError> {
        if trace_id == NO_OP_SPAN_TRACE_ID || !config::is_enabled() {
            return Ok(LiveSpan::no_op());
        }
        let trace = open_trace(trace_id)?;
        let parent_known = trace.read_span(parent_id, |_, _, _| ()).is_some()
            || parent_on_some_stack(&trace, parent_id);
        if !parent_known {
            return Err(ClientError::SpanNotFound {
                trace_id: trace.trace_id.to_mlflow(),
                span_id: parent_id,
            });
        }
        let parent = LiveSpan {
            trace: Some(trace),
            span_id: parent_id,
            parent_id: None,
            unsampled: false,
        };
        Ok(self.start_detached(options.builder(name.into()), Some(&parent), &options))
    }

    fn start_detached(
        &self,
        builder: fluent::SpanBuilder,
        parent: Option<&LiveSpan>,
        options: &StartOptions,
    ) -> LiveSpan {
        let builder = builder.encoded(options.inputs.clone(), options.attributes.clone());
        match parent {
            Some(parent) => builder.start_detached(Some(parent)),
            // A root started by the client ignores this thread's current span.
            None => builder.start_detached_root(),
        }
    }

    /// Ends a span: sets outputs, attributes and status (OK unless given or already ERROR).
    pub fn end_span(
        &self,
        trace_id: &str,
        span_id: SpanId,
        options: EndOptions,
    ) -> Result<(), ClientError> {
        if trace_id == NO_OP_SPAN_TRACE_ID || span_id == SpanId::INVALID {
            return Ok(());
        }
        let trace = open_trace(trace_id)?;
        let end_ns = options.end_time_ns.unwrap_or_else(crate::clock::now_ns);
        let result = trace.end_open(span_id, |data| {
            let mut extras: Vec<_> = options
                .attributes
                .into_iter()
                .map(|(key, json)| Extra::Attribute(key, json))
                .collect();
            if let Some(outputs) = options.outputs {
                extras.extend(data.apply(SpanMutation::Outputs(outputs)));
            }
            match options.status {
                Some(status) => {
                    let message = (!status.message.is_empty()).then_some(status.message);
                    extras.extend(data.apply(SpanMutation::Status(status.code, message)));
                }
                None if data.status_code == SpanStatusCode::Unset => {
                    data.status_code = SpanStatusCode::Ok
                }
                None => {}
            }
            data.end_at(end_ns);
            extras
        });
        result.map_err(|error| {
            let trace_id = trace.trace_id.to_mlflow();
            match error {
                EndError::NotFound => ClientError::SpanNotFound { trace_id, span_id },
                EndError::AlreadyEnded => ClientError::SpanAlreadyEnded { trace_id, span_id },
            }
        })
    }

    /// Ends the trace's root span, which completes the trace and hands it to the exporter.
    pub fn end_trace(&self, trace_id: &str, options: EndOptions) -> Result<(), ClientError> {
        if trace_id == NO_OP_SPAN_TRACE_ID {
            return Ok(());
        }
        let trace = open_trace(trace_id)?;
        self.end_span(trace_id, trace.root_span_id, options)
    }

    /// Sets a tag on an open trace.
    pub fn set_trace_tag(
        &self,
        trace_id: &str,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), ClientError> {
        let trace = open_trace(trace_id)?;
        trace.update(TraceUpdate::new().tag(key, value).into_updates());
        Ok(())
    }

    /// A finished trace from the in-process buffer.
    pub fn get_trace(&self, trace_id: &str) -> Option<Arc<Trace>> {
        fluent::get_trace(trace_id)
    }
}

fn open_trace(trace_id: &str) -> Result<Arc<OpenTrace>, ClientError> {
    let parsed = TraceId::parse_any(trace_id)?;
    OpenTrace::find(parsed).ok_or_else(|| ClientError::TraceNotOpen {
        trace_id: parsed.to_mlflow(),
    })
}

/// A client parent may be a fluent span held on this thread's stack.
fn parent_on_some_stack(trace: &Arc<OpenTrace>, span_id: SpanId) -> bool {
    with_stack(|stack| position_of(stack, span_id, trace).is_some()).unwrap_or(false)
}
