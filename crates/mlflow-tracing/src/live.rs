//! [`LiveSpan`]: a handle to a span that can be used from any thread.
//!
//! The span's data lives either on the stack of the thread whose guard owns it, or in its trace (client API,
//! detached and async spans). A change made through the handle goes to the stack when it is this thread's,
//! else to the trace, which applies it to the span wherever it ends up.

use std::borrow::Cow;
use std::sync::Arc;

use mlflow_tracing_core::{SpanEvent, SpanId, SpanType, TraceId};
use serde::Serialize;
use serde_json::Value;

use crate::arena::PayloadText;
use crate::context::{Context, data_position_of, with_extras, with_stack};
use crate::record;
use crate::span_data::{Extra, SpanData, SpanMutation, Text, find_attribute};
use crate::trace_state::{EndError, OpenTrace};

/// The trace id MLflow gives spans that are not recorded (tracing disabled or the trace not sampled).
pub const NO_OP_SPAN_TRACE_ID: &str = "MLFLOW_NO_OP_SPAN_TRACE_ID";

/// A handle to a span, `Send + Sync` and cheap to clone (MLflow's `LiveSpan`).
///
/// A handle to a span that is not recorded (tracing disabled, trace not sampled) accepts every call and does
/// nothing.
#[derive(Clone)]
pub struct LiveSpan {
    pub(crate) trace: Option<Arc<OpenTrace>>,
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    /// True for a span of an unsampled trace: not recorded, but its children must not be either.
    pub(crate) unsampled: bool,
}

impl std::fmt::Debug for LiveSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSpan")
            .field("trace_id", &self.trace_id())
            .field("span_id", &self.span_id)
            .field("parent_id", &self.parent_id)
            .finish()
    }
}

impl LiveSpan {
    pub(crate) fn no_op() -> LiveSpan {
        LiveSpan {
            trace: None,
            span_id: SpanId::INVALID,
            parent_id: None,
            unsampled: false,
        }
    }

    /// Whether this span is recorded.
    pub fn is_recording(&self) -> bool {
        self.trace
            .as_ref()
            .is_some_and(|trace| !trace.is_completed())
    }

    /// The MLflow trace id, `tr-<32 hex>`; [`NO_OP_SPAN_TRACE_ID`] for a span that is not recorded.
    pub fn trace_id(&self) -> String {
        self.trace.as_ref().map_or_else(
            || NO_OP_SPAN_TRACE_ID.to_owned(),
            |trace| trace.trace_id.to_mlflow(),
        )
    }

    /// The trace id under its MLflow 2.x name.
    pub fn request_id(&self) -> String {
        self.trace_id()
    }

    /// The OpenTelemetry trace id, when recorded.
    pub fn otel_trace_id(&self) -> Option<TraceId> {
        self.trace.as_ref().map(|trace| trace.trace_id)
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The parent's id; `None` for a root.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// A [`Context`] that makes this span the parent of spans started where it is attached.
    pub fn context(&self) -> Context {
        if self.trace.is_none() && !self.unsampled {
            return Context::default();
        }
        Context::of_span(self.trace.clone(), self.span_id)
    }

    span_mutation_methods!(encode_owned);

    /// Reads the span's name.
    pub fn name(&self) -> Option<String> {
        self.read(|data, _, _| data.name.to_string())
    }

    /// Reads the span's decoded inputs.
    pub fn inputs(&self) -> Option<Value> {
        self.read(|data, arena, _| {
            data.inputs
                .as_ref()
                .map(|json| decode(&json.to_string_in(arena)))
        })
        .flatten()
    }

    /// Reads the span's decoded outputs.
    pub fn outputs(&self) -> Option<Value> {
        self.read(|data, arena, _| {
            data.outputs
                .as_ref()
                .map(|json| decode(&json.to_string_in(arena)))
        })
        .flatten()
    }

    /// Reads one decoded attribute.
    pub fn attribute(&self, key: &str) -> Option<Value> {
        let span_id = self.span_id;
        self.read(|data, arena, extras| {
            let own = extras
                .iter()
                .filter(|(owner, _)| *owner == span_id)
                .map(|(_, extra)| extra);
            find_attribute(data, own, key, arena).map(|json| decode(&json))
        })
        .flatten()
    }

    /// Ends a span started with [`crate::SpanBuilder::start_detached`] (spans owned by a guard end when the
    /// guard drops; for them this does nothing).
    pub fn end(&self) {
        let _ = self.end_with(|_| {});
    }

    pub(crate) fn end_with(&self, finish: impl FnOnce(&mut SpanData)) -> Result<(), EndError> {
        let Some(trace) = &self.trace else {
            return Ok(());
        };
        let end_ns = crate::clock::now_ns();
        trace.end_open(self.span_id, |data| {
            finish(data);
            data.end_at(end_ns);
            Vec::new()
        })
    }

    fn read<R>(&self, read: impl FnOnce(&SpanData, &[u8], &[(SpanId, Extra)]) -> R) -> Option<R> {
        let trace = self.trace.as_ref()?;
        let mut read = Some(read);
        let on_stack = with_stack(|stack| {
            let position = data_position_of(stack, self.span_id, trace)?;
            let data = stack[position].data.as_ref()?;
            let read = read.take()?;
            with_extras(|extras| read(data, &[], extras))
        })
        .flatten();
        match (on_stack, read) {
            (Some(value), _) => Some(value),
            (None, Some(read)) => trace.read_span(self.span_id, read),
            (None, None) => None,
        }
    }

    pub(crate) fn mutate(&self, mutation: SpanMutation) {
        let Some(trace) = &self.trace else {
            return;
        };
        let unapplied = with_stack(|stack| {
            let position = data_position_of(stack, self.span_id, trace);
            match position.and_then(|position| stack[position].data.as_mut()) {
                Some(data) => {
                    if let Some(extra) = data.apply(mutation) {
                        with_extras(|extras| extras.push((self.span_id, extra)));
                    }
                    None
                }
                None => Some(mutation),
            }
        });
        match unapplied {
            Some(Some(mutation)) => trace.mutate(self.span_id, mutation),
            Some(None) => {}
            None => {}
        }
    }
}

/// The same mutation methods on [`crate::SpanGuard`] and [`LiveSpan`]: each type has `is_recording()` and
/// `mutate()`, and says how a value is encoded (into the thread's scratch for a guard, owned for a handle).
macro_rules! span_mutation_methods {
    ($encode:path) => {
        /// Sets the inputs (`mlflow.spanInputs`) to the value's JSON.
        pub fn set_inputs<T: serde::Serialize + ?Sized>(&self, inputs: &T) {
            if self.is_recording() {
                self.mutate($crate::span_data::SpanMutation::Inputs($encode(inputs)));
            }
        }

        /// Sets the outputs (`mlflow.spanOutputs`) to the value's JSON.
        pub fn set_outputs<T: serde::Serialize + ?Sized>(&self, outputs: &T) {
            if self.is_recording() {
                self.mutate($crate::span_data::SpanMutation::Outputs($encode(outputs)));
            }
        }

        /// Sets one attribute to the value's JSON.
        pub fn set_attribute<T: serde::Serialize + ?Sized>(
            &self,
            key: impl Into<std::borrow::Cow<'static, str>>,
            value: &T,
        ) {
            if self.is_recording() {
                self.mutate($crate::span_data::SpanMutation::Attribute(
                    key.into(),
                    $encode(value),
                ));
            }
        }

        /// Sets several attributes.
        pub fn set_attributes<K, V>(&self, attributes: impl IntoIterator<Item = (K, V)>)
        where
            K: Into<std::borrow::Cow<'static, str>>,
            V: serde::Serialize,
        {
            for (key, value) in attributes {
                self.set_attribute(key, &value);
            }
        }

        /// Changes the span type.
        pub fn set_span_type(&self, span_type: impl Into<$crate::SpanType>) {
            if self.is_recording() {
                self.mutate($crate::span_data::SpanMutation::SpanType(
                    $crate::live::span_type_text(span_type.into()),
                ));
            }
        }

        /// Adds an event now. `attributes` should serialize to a JSON object; any other value is stored under
        /// the key `value`.
        pub fn add_event<T: serde::Serialize + ?Sized>(
            &self,
            name: impl Into<String>,
            attributes: &T,
        ) {
            if self.is_recording() {
                self.mutate($crate::span_data::SpanMutation::Event(Box::new(
                    $crate::live::new_event(name.into(), attributes),
                )));
            }
        }

        /// Sets the status.
        pub fn set_status(&self, status: $crate::SpanStatus) {
            if self.is_recording() {
                let message = (!status.message.is_empty()).then_some(status.message);
                self.mutate($crate::span_data::SpanMutation::Status(
                    status.code,
                    message,
                ));
            }
        }

        /// Marks the span failed with this error: status ERROR (`"<Type>: <message>"`) and an `exception`
        /// event carrying the error's source chain.
        pub fn record_exception<E: std::error::Error + ?Sized>(&self, error: &E) {
            if self.is_recording() {
                for mutation in
                    $crate::exception::error_mutations($crate::exception::error_parts(error))
                {
                    self.mutate(mutation);
                }
            }
        }
    };
}
pub(crate) use span_mutation_methods;

/// A value's JSON in a string of its own, for spans held by their trace.
fn encode_owned<T: Serialize + ?Sized>(value: &T) -> PayloadText {
    PayloadText::Owned(record::encode(value))
}

fn decode(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.to_owned()))
}

pub(crate) fn new_event<T: Serialize + ?Sized>(name: String, attributes: &T) -> SpanEvent {
    let attributes = match serde_json::to_value(attributes) {
        Ok(Value::Object(object)) => object,
        Ok(Value::Null) => serde_json::Map::new(),
        Ok(other) => [("value".to_owned(), other)].into_iter().collect(),
        Err(error) => [(
            "value".to_owned(),
            Value::String(format!("<unserializable: {error}>")),
        )]
        .into_iter()
        .collect(),
    };
    SpanEvent {
        name,
        time_unix_nano: crate::clock::now_ns(),
        attributes,
    }
}

/// The text form of a span type, borrowed for MLflow's constants.
pub(crate) fn span_type_text(span_type: SpanType) -> Text {
    match span_type.as_static_str() {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(span_type.as_str().to_owned()),
    }
}
