//! Spans: one timed operation of a trace, with MLflow's attribute conventions.
//!
//! MLflow stores every span attribute value as JSON text (a string attribute `CHAIN` is stored as `"CHAIN"` with
//! the quotes). [`JsonText`] keeps that text as it was written, so a file read and written again is unchanged,
//! while comparing two texts compares the JSON values they denote.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::ids::{SpanId, TraceId};
use crate::keys;

/// A JSON document held as text: borrowed when it is a constant, shared when many spans hold the same one.
#[derive(Clone)]
pub struct JsonText(Text);

#[derive(Clone)]
enum Text {
    Static(&'static str),
    Owned(String),
    Shared(Arc<str>),
    /// `whole[start..end]`, on character boundaries (checked when made).
    Part {
        whole: Arc<str>,
        start: u32,
        end: u32,
    },
}

impl Default for JsonText {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl JsonText {
    /// Wraps text that is already JSON. Text that is not JSON is kept, and reads back as a JSON string.
    pub fn from_raw(text: impl Into<String>) -> Self {
        Self(Text::Owned(text.into()))
    }

    /// Wraps constant JSON text without copying it.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Text::Static(text))
    }

    /// Wraps JSON text that its clones share instead of copying (the trace id every span of a trace
    /// carries, for example).
    pub fn shared(text: impl Into<Arc<str>>) -> Self {
        Self(Text::Shared(text.into()))
    }

    /// The JSON text at `range` of a shared text, without copying it (payloads written one after another
    /// into one buffer); `None` when the range is outside the text or not on character boundaries.
    pub fn part_of(whole: &Arc<str>, range: std::ops::Range<usize>) -> Option<Self> {
        whole.get(range.clone())?;
        Some(Self(Text::Part {
            whole: Arc::clone(whole),
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        }))
    }

    /// Encodes a JSON value.
    pub fn from_value(value: &Value) -> Self {
        Self::from_raw(value.to_string())
    }

    /// Encodes a string as a JSON string literal.
    pub fn from_str_value(text: &str) -> Self {
        Self::from_raw(Value::from(text).to_string())
    }

    /// Encodes any serializable value; a value serde cannot encode becomes `null`.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::from_raw(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
    }

    /// The JSON text as stored.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Static(text) => text,
            Text::Owned(text) => text,
            Text::Shared(text) => text,
            Text::Part { whole, start, end } => whole
                .get(*start as usize..*end as usize)
                .unwrap_or_default(),
        }
    }

    /// The text, consumed.
    pub fn into_string(self) -> String {
        match self.0 {
            Text::Owned(text) => text,
            Text::Static(text) => text.to_owned(),
            Text::Shared(_) | Text::Part { .. } => self.as_str().to_owned(),
        }
    }

    /// The JSON value; text that is not valid JSON reads as a JSON string of that text.
    pub fn to_value(&self) -> Value {
        let text = self.as_str();
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    }

    /// The value when it is a JSON string, without its quotes.
    pub fn as_string_value(&self) -> Option<String> {
        match self.to_value() {
            Value::String(text) => Some(text),
            _ => None,
        }
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_value() == other.to_value()
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&Value> for JsonText {
    fn from(value: &Value) -> Self {
        Self::from_value(value)
    }
}

/// An attribute key; MLflow's reserved keys are borrowed constants.
pub type AttributeKey = Cow<'static, str>;

/// Span attributes in insertion order, values as JSON text. Keyed with foldhash: SipHash, the standard
/// hasher, was a quarter of the work of turning a finished span into this form; foldhash is seeded at
/// random too. Make one with `Attributes::default()` or `collect()`.
pub type Attributes = IndexMap<AttributeKey, JsonText, foldhash::fast::RandomState>;

/// Event and link attributes: native JSON values, not JSON-encoded (MLflow's convention for events).
pub type EventAttributes = serde_json::Map<String, Value>;

/// What kind of work a span did. Any string is allowed; these are MLflow's constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanType {
    Llm,
    Chain,
    Agent,
    Tool,
    ChatModel,
    Retriever,
    Parser,
    Embedding,
    Reranker,
    Memory,
    Evaluator,
    Guardrail,
    Task,
    Workflow,
    #[default]
    Unknown,
    /// A type MLflow does not define.
    Custom(String),
}

impl SpanType {
    /// Each constant with its name and its name as a JSON string (the form span attributes hold).
    const NAMED: [(SpanType, &'static str, &'static str); 15] = [
        (SpanType::Llm, "LLM", "\"LLM\""),
        (SpanType::Chain, "CHAIN", "\"CHAIN\""),
        (SpanType::Agent, "AGENT", "\"AGENT\""),
        (SpanType::Tool, "TOOL", "\"TOOL\""),
        (SpanType::ChatModel, "CHAT_MODEL", "\"CHAT_MODEL\""),
        (SpanType::Retriever, "RETRIEVER", "\"RETRIEVER\""),
        (SpanType::Parser, "PARSER", "\"PARSER\""),
        (SpanType::Embedding, "EMBEDDING", "\"EMBEDDING\""),
        (SpanType::Reranker, "RERANKER", "\"RERANKER\""),
        (SpanType::Memory, "MEMORY", "\"MEMORY\""),
        (SpanType::Evaluator, "EVALUATOR", "\"EVALUATOR\""),
        (SpanType::Guardrail, "GUARDRAIL", "\"GUARDRAIL\""),
        (SpanType::Task, "TASK", "\"TASK\""),
        (SpanType::Workflow, "WORKFLOW", "\"WORKFLOW\""),
        (SpanType::Unknown, "UNKNOWN", "\"UNKNOWN\""),
    ];

    /// The name MLflow writes, e.g. `CHAT_MODEL`.
    pub fn as_str(&self) -> &str {
        match self {
            SpanType::Custom(name) => name,
            named => Self::NAMED
                .iter()
                .find(|(candidate, _, _)| candidate == named)
                .map_or("UNKNOWN", |(_, name, _)| name),
        }
    }

    /// The name of one of MLflow's constants; `None` for a custom type.
    pub fn as_static_str(&self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(candidate, _, _)| candidate == self)
            .map(|(_, name, _)| *name)
    }

    /// The name as JSON text (`"LLM"` with its quotes), borrowed for MLflow's constants.
    pub fn to_json(&self) -> JsonText {
        match Self::NAMED
            .iter()
            .find(|(candidate, _, _)| candidate == self)
        {
            Some((_, _, quoted)) => JsonText::from_static(quoted),
            None => JsonText::from_str_value(self.as_str()),
        }
    }

    /// Reads a type name; names MLflow does not define become [`SpanType::Custom`].
    pub fn parse(name: &str) -> SpanType {
        Self::NAMED
            .iter()
            .find(|(_, candidate, _)| *candidate == name)
            .map_or_else(
                || SpanType::Custom(name.to_owned()),
                |(span_type, _, _)| span_type.clone(),
            )
    }

    /// The log level MLflow 3.x derives at span end when none is set: 10 (DEBUG) for plumbing spans, 20
    /// (INFO) for the rest, 40 (ERROR) for a failed span.
    pub fn default_log_level(&self, status: SpanStatusCode) -> i64 {
        if status == SpanStatusCode::Error {
            return 40;
        }
        match self {
            SpanType::Chain | SpanType::Unknown => 10,
            _ => 20,
        }
    }
}

impl fmt::Display for SpanType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for SpanType {
    fn from(name: &str) -> Self {
        SpanType::parse(name)
    }
}

/// A span's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanStatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl SpanStatusCode {
    /// `OK`, `ERROR` or `UNSET`, as the v2 schema and the client API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatusCode::Unset => "UNSET",
            SpanStatusCode::Ok => "OK",
            SpanStatusCode::Error => "ERROR",
        }
    }

    /// `STATUS_CODE_OK` and so on, as the v3 schema and OTLP/JSON write it.
    pub fn as_proto_str(self) -> &'static str {
        match self {
            SpanStatusCode::Unset => "STATUS_CODE_UNSET",
            SpanStatusCode::Ok => "STATUS_CODE_OK",
            SpanStatusCode::Error => "STATUS_CODE_ERROR",
        }
    }

    /// Reads either spelling, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.trim().to_ascii_uppercase();
        match upper.strip_prefix("STATUS_CODE_").unwrap_or(&upper) {
            "UNSET" | "" => Some(SpanStatusCode::Unset),
            "OK" => Some(SpanStatusCode::Ok),
            "ERROR" => Some(SpanStatusCode::Error),
            _ => None,
        }
    }
}

/// A status code with its message (the message is empty unless the code is an error).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SpanStatus {
    pub code: SpanStatusCode,
    pub message: String,
}

impl SpanStatus {
    /// `OK` with no message.
    pub fn ok() -> Self {
        Self {
            code: SpanStatusCode::Ok,
            message: String::new(),
        }
    }

    /// `ERROR` with a message.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            code: SpanStatusCode::Error,
            message: message.into(),
        }
    }
}

/// Something that happened at one instant during a span: an exception, a stream chunk, a user event.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: EventAttributes,
}

/// A reference from a span to a span of another trace.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: EventAttributes,
}

/// A finished (or, while `end_time_unix_nano` is `None`, unfinished) span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_id: Option<SpanId>,
    pub name: String,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: Option<u64>,
    pub status: SpanStatus,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
}

impl Span {
    /// The decoded value of one attribute.
    pub fn attribute(&self, key: &str) -> Option<Value> {
        self.attributes.get(key).map(JsonText::to_value)
    }

    /// The span type from `mlflow.spanType`; `UNKNOWN` when absent.
    pub fn span_type(&self) -> SpanType {
        self.attributes
            .get(keys::SPAN_TYPE)
            .and_then(JsonText::as_string_value)
            .map_or(SpanType::Unknown, |name| SpanType::parse(&name))
    }

    /// The decoded `mlflow.spanInputs`.
    pub fn inputs(&self) -> Option<Value> {
        self.attribute(keys::SPAN_INPUTS)
    }

    /// The decoded `mlflow.spanOutputs`.
    pub fn outputs(&self) -> Option<Value> {
        self.attribute(keys::SPAN_OUTPUTS)
    }

    /// Whether the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_id.is_none()
    }

    /// End minus start, in nanoseconds; `None` while unfinished.
    pub fn duration_ns(&self) -> Option<u64> {
        self.end_time_unix_nano
            .map(|end| end.saturating_sub(self.start_time_unix_nano))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_reads_the_same_whether_static_owned_or_shared() {
        let shared = JsonText::shared("\"tr-0a\"");
        let forms = [
            JsonText::from_static("\"tr-0a\""),
            JsonText::from_raw("\"tr-0a\""),
            shared.clone(),
            shared,
        ];
        for text in forms {
            assert_eq!(text.as_str(), "\"tr-0a\"");
            assert_eq!(text.to_value(), Value::from("tr-0a"));
            assert_eq!(text.as_string_value().as_deref(), Some("tr-0a"));
            assert_eq!(format!("{text:?}"), r#""\"tr-0a\"""#);
            assert_eq!(text, JsonText::from_str_value("tr-0a"));
            assert_eq!(text.clone().into_string(), "\"tr-0a\"");
        }
        assert_eq!(JsonText::default().as_str(), "");
    }

    #[test]
    fn json_text_parts_of_a_shared_text_read_their_range_only() {
        let whole: Arc<str> = Arc::from(r#"{"a":1}"é"[2,3]"#);
        let part = |range| JsonText::part_of(&whole, range).map(|text| text.as_str().to_owned());
        assert_eq!(part(0..7).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(part(7..11).as_deref(), Some(r#""é""#));
        assert_eq!(part(11..16).as_deref(), Some("[2,3]"));
        let array = JsonText::part_of(&whole, 11..16).expect("in range");
        assert_eq!(array.to_value(), serde_json::json!([2, 3]));
        assert_eq!(array.clone().into_string(), "[2,3]");
        // Outside the text, or inside a character: refused, never a panic.
        assert!(part(11..17).is_none());
        assert!(part(8..9).is_none());
    }

    #[test]
    fn json_text_compares_values_not_spacing() {
        let python = JsonText::from_raw(r#"{"question": "what is mlflow?", "k": 2}"#);
        let compact = JsonText::from_raw(r#"{"question":"what is mlflow?","k":2}"#);
        assert_eq!(python, compact);
        assert_ne!(
            python,
            JsonText::from_raw(r#"{"question":"what is mlflow?","k":3}"#)
        );
        assert_eq!(JsonText::from_str_value("CHAIN").as_str(), "\"CHAIN\"");
    }

    #[test]
    fn text_that_is_not_json_reads_back_as_a_string() {
        let text = JsonText::from_raw("not json {");
        assert_eq!(text.to_value(), Value::String("not json {".into()));
    }

    #[test]
    fn all_fifteen_span_types_round_trip_and_custom_types_are_kept() {
        for (span_type, name, _) in SpanType::NAMED {
            assert_eq!(span_type.as_str(), name);
            assert_eq!(span_type.to_json().as_str(), format!("\"{name}\""));
            assert_eq!(SpanType::parse(name), span_type);
        }
        assert_eq!(
            SpanType::parse("MY_STEP"),
            SpanType::Custom("MY_STEP".into())
        );
        assert_eq!(SpanType::parse("MY_STEP").as_str(), "MY_STEP");
        assert_eq!(
            SpanType::parse("MY \"STEP\"").to_json().as_str(),
            r#""MY \"STEP\"""#
        );
    }

    #[test]
    fn status_codes_read_both_spellings() {
        assert_eq!(
            SpanStatusCode::parse("STATUS_CODE_ERROR"),
            Some(SpanStatusCode::Error)
        );
        assert_eq!(SpanStatusCode::parse("ok"), Some(SpanStatusCode::Ok));
        assert_eq!(SpanStatusCode::parse("bogus"), None);
    }
}
