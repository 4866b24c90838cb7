//! Traces: the metadata record ([`TraceInfo`]) and the spans ([`TraceData`]).
//!
//! [`TraceInfo::from_spans`] derives the record the way the MLflow 3.x client does when a root span ends, so
//! the SDK (at export) and the server (at OTLP ingest) agree on previews, state, name and token usage.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ids::TraceId;
use crate::keys;
use crate::span::{Span, SpanStatusCode};

/// A whole trace: its record and its spans.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub info: TraceInfo,
    pub data: TraceData,
}

/// The spans of a trace, parents before children when written by this crate.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TraceData {
    pub spans: Vec<Span>,
}

impl TraceData {
    /// The first span without a parent.
    pub fn root(&self) -> Option<&Span> {
        self.spans.iter().find(|span| span.is_root())
    }
}

/// The state of a trace (v3 `TraceState`; v2 calls it status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TraceState {
    #[default]
    Unspecified,
    Ok,
    Error,
    InProgress,
}

impl TraceState {
    /// The v3 spelling: `OK`, `ERROR`, `IN_PROGRESS`, `STATE_UNSPECIFIED`.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceState::Unspecified => "STATE_UNSPECIFIED",
            TraceState::Ok => "OK",
            TraceState::Error => "ERROR",
            TraceState::InProgress => "IN_PROGRESS",
        }
    }

    /// The v2 `TraceStatus` spelling.
    pub fn as_v2_status(self) -> &'static str {
        match self {
            TraceState::Unspecified => "TRACE_STATUS_UNSPECIFIED",
            other => other.as_str(),
        }
    }

    /// Reads the v3 or the v2 spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "OK" => Some(TraceState::Ok),
            "ERROR" => Some(TraceState::Error),
            "IN_PROGRESS" => Some(TraceState::InProgress),
            "STATE_UNSPECIFIED" | "TRACE_STATUS_UNSPECIFIED" | "" => Some(TraceState::Unspecified),
            _ => None,
        }
    }
}

/// Where a trace is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceLocation {
    /// An MLflow experiment, by id.
    MlflowExperiment { experiment_id: String },
    /// A Databricks inference table.
    InferenceTable { full_table_name: String },
}

impl TraceLocation {
    /// An experiment location.
    pub fn experiment(experiment_id: impl Into<String>) -> Self {
        TraceLocation::MlflowExperiment {
            experiment_id: experiment_id.into(),
        }
    }

    /// The experiment id, when the location is an experiment.
    pub fn experiment_id(&self) -> Option<&str> {
        match self {
            TraceLocation::MlflowExperiment { experiment_id } => Some(experiment_id),
            TraceLocation::InferenceTable { .. } => None,
        }
    }
}

impl Default for TraceLocation {
    fn default() -> Self {
        TraceLocation::experiment("0")
    }
}

/// A judgement on a trace: feedback, an expectation or an issue (MLflow 3.x `Assessment`).
///
/// The value payloads stay JSON, as the wire carries them (`google.protobuf.Value`).
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Assessment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment_id: Option<String>,
    pub assessment_name: String,
    #[serde(default)]
    pub trace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
}

/// The record of a trace (v3 `TraceInfo`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TraceInfo {
    /// `tr-<32 hex>` for v3 traces; a bare 32-hex request id for traces made through the v2 API.
    pub trace_id: String,
    pub client_request_id: Option<String>,
    pub trace_location: TraceLocation,
    /// Start of the trace, epoch milliseconds.
    pub request_time_ms: i64,
    /// `None` while the trace is in progress.
    pub execution_duration_ms: Option<i64>,
    pub state: TraceState,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    /// Write-once metadata.
    pub trace_metadata: BTreeMap<String, String>,
    /// Mutable tags.
    pub tags: BTreeMap<String, String>,
    pub assessments: Vec<Assessment>,
}

impl TraceInfo {
    /// Derives the record of a trace from its spans, as the MLflow 3.x client does when the root ends:
    /// name tag, state from the root status, start and duration of the root, previews of the root's inputs and
    /// outputs (1000 characters), `mlflow.traceInputs`/`Outputs` (250 characters), the schema version and the
    /// token usage summed over the spans.
    ///
    /// Without a root span the trace is `IN_PROGRESS` and times come from the earliest span.
    pub fn from_spans(
        trace_id: TraceId,
        trace_location: TraceLocation,
        spans: &[Span],
    ) -> TraceInfo {
        let mut info = TraceInfo {
            trace_id: trace_id.to_mlflow(),
            trace_location,
            state: TraceState::InProgress,
            ..TraceInfo::default()
        };
        info.trace_metadata.insert(
            keys::META_SCHEMA_VERSION.to_owned(),
            keys::TRACE_SCHEMA_VERSION.to_owned(),
        );
        if let Some(usage) = aggregate_token_usage(spans) {
            info.trace_metadata
                .insert(keys::META_TOKEN_USAGE.to_owned(), usage.to_string());
        }
        let earliest_start = spans
            .iter()
            .map(|span| span.start_time_unix_nano)
            .min()
            .unwrap_or(0);
        info.request_time_ms = nanos_to_millis(earliest_start);

        let Some(root) = spans.iter().find(|span| span.is_root()) else {
            return info;
        };
        info.request_time_ms = nanos_to_millis(root.start_time_unix_nano);
        info.tags
            .insert(keys::TAG_TRACE_NAME.to_owned(), root.name.clone());
        if let Some(end) = root.end_time_unix_nano {
            info.execution_duration_ms = Some(
                nanos_to_millis(end).saturating_sub(nanos_to_millis(root.start_time_unix_nano)),
            );
            info.state = match root.status.code {
                SpanStatusCode::Error => TraceState::Error,
                SpanStatusCode::Ok | SpanStatusCode::Unset => TraceState::Ok,
            };
        }
        let inputs = root
            .attributes
            .get(keys::SPAN_INPUTS)
            .map(|text| text.as_str().to_owned());
        let outputs = root
            .attributes
            .get(keys::SPAN_OUTPUTS)
            .map(|text| text.as_str().to_owned());
        let inputs_text = inputs.unwrap_or_default();
        info.trace_metadata.insert(
            keys::META_TRACE_INPUTS.to_owned(),
            keys::truncate_chars(&inputs_text, keys::MAX_METADATA_VALUE_CHARS),
        );
        info.trace_metadata.insert(
            keys::META_TRACE_OUTPUTS.to_owned(),
            keys::truncate_chars(
                outputs.as_deref().unwrap_or(""),
                keys::MAX_METADATA_VALUE_CHARS,
            ),
        );
        info.request_preview = Some(preview(&inputs_text, PreviewSide::Request));
        info.response_preview = outputs.map(|text| preview(&text, PreviewSide::Response));
        info
    }

    /// The experiment id, when the trace lives in an experiment.
    pub fn experiment_id(&self) -> Option<&str> {
        self.trace_location.experiment_id()
    }
}

/// Converts epoch nanoseconds to milliseconds, rounding down.
pub fn nanos_to_millis(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

#[derive(Clone, Copy)]
enum PreviewSide {
    Request,
    Response,
}

/// The preview of a root's inputs or outputs: the JSON text, or, when it is too long and is a chat payload, the
/// text of the last user message (requests) or of the first choice (responses), cut to 1000 characters.
fn preview(json_text: &str, side: PreviewSide) -> String {
    if json_text.chars().count() <= keys::MAX_PREVIEW_CHARS {
        return json_text.to_owned();
    }
    let chat_text = serde_json::from_str::<Value>(json_text)
        .ok()
        .and_then(|value| match side {
            PreviewSide::Request => last_message_content(&value, "user"),
            PreviewSide::Response => first_choice_content(&value),
        });
    keys::truncate_chars(
        chat_text.as_deref().unwrap_or(json_text),
        keys::MAX_PREVIEW_CHARS,
    )
}

fn last_message_content(value: &Value, role: &str) -> Option<String> {
    let messages = value.get("messages")?.as_array()?;
    let message = messages
        .iter()
        .rev()
        .find(|message| message.get("role").and_then(Value::as_str) == Some(role))?;
    content_text(message.get("content")?)
}

fn first_choice_content(value: &Value) -> Option<String> {
    let choice = value.get("choices")?.as_array()?.first()?;
    content_text(choice.get("message")?.get("content")?)
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Sums `mlflow.chat.tokenUsage` over the spans: `{"input_tokens", "output_tokens", "total_tokens"}`.
fn aggregate_token_usage(spans: &[Span]) -> Option<Value> {
    const FIELDS: [&str; 3] = ["input_tokens", "output_tokens", "total_tokens"];
    let mut totals = [0_i64; 3];
    let mut found = false;
    for usage in spans
        .iter()
        .filter_map(|span| span.attribute(keys::CHAT_TOKEN_USAGE))
    {
        found = true;
        for (total, field) in totals.iter_mut().zip(FIELDS) {
            *total += usage.get(field).and_then(Value::as_i64).unwrap_or(0);
        }
    }
    found.then(|| {
        let object: Map<String, Value> = FIELDS
            .iter()
            .zip(totals)
            .map(|(field, total)| ((*field).to_owned(), Value::from(total)))
            .collect();
        Value::Object(object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SpanId;
    use crate::span::{JsonText, SpanStatus};

    fn span(parent: Option<u8>, id: u8, status: SpanStatus) -> Span {
        Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([id; 8]),
            parent_id: parent.map(|parent| SpanId([parent; 8])),
            name: format!("span-{id}"),
            start_time_unix_nano: 1_795_478_312_500_314_449 + u64::from(id - 1) * 1_000_000,
            end_time_unix_nano: Some(1_795_478_312_560_099_610),
            status,
            attributes: Default::default(),
            events: vec![],
            links: vec![],
        }
    }

    #[test]
    fn info_comes_from_the_root_and_sums_token_usage() {
        let mut root = span(None, 1, SpanStatus::ok());
        root.attributes.insert(
            keys::SPAN_INPUTS.into(),
            JsonText::from_raw(r#"{"question":"q"}"#),
        );
        root.attributes
            .insert(keys::SPAN_OUTPUTS.into(), JsonText::from_raw(r#""answer""#));
        let mut first_llm = span(Some(1), 2, SpanStatus::ok());
        first_llm.attributes.insert(
            keys::CHAT_TOKEN_USAGE.into(),
            JsonText::from_raw(r#"{"input_tokens":10,"output_tokens":5,"total_tokens":15}"#),
        );
        let mut second_llm = span(Some(1), 3, SpanStatus::ok());
        second_llm.attributes.insert(
            keys::CHAT_TOKEN_USAGE.into(),
            JsonText::from_raw(r#"{"input_tokens":1,"output_tokens":2,"total_tokens":3}"#),
        );
        let info = TraceInfo::from_spans(
            TraceId([7; 16]),
            TraceLocation::experiment("4"),
            &[root, first_llm, second_llm],
        );

        assert_eq!(info.trace_id, format!("tr-{}", "07".repeat(16)));
        assert_eq!(info.state, TraceState::Ok);
        assert_eq!(info.request_time_ms, 1_795_478_312_500);
        assert_eq!(info.execution_duration_ms, Some(60));
        assert_eq!(info.tags[keys::TAG_TRACE_NAME], "span-1");
        assert_eq!(info.request_preview.as_deref(), Some(r#"{"question":"q"}"#));
        assert_eq!(info.response_preview.as_deref(), Some(r#""answer""#));
        assert_eq!(info.trace_metadata[keys::META_TRACE_OUTPUTS], r#""answer""#);
        let usage: Value =
            serde_json::from_str(&info.trace_metadata[keys::META_TOKEN_USAGE]).unwrap();
        assert_eq!(
            usage,
            serde_json::json!({"input_tokens": 11, "output_tokens": 7, "total_tokens": 18})
        );
    }

    #[test]
    fn a_failed_root_makes_an_error_trace_with_empty_outputs_and_no_response_preview() {
        let root = span(None, 1, SpanStatus::error("ValueError: boom 7"));
        let info = TraceInfo::from_spans(TraceId([7; 16]), TraceLocation::default(), &[root]);
        assert_eq!(info.state, TraceState::Error);
        assert_eq!(info.trace_metadata[keys::META_TRACE_OUTPUTS], "");
        assert_eq!(info.response_preview, None);
        assert!(!info.trace_metadata.contains_key(keys::META_TOKEN_USAGE));
    }

    #[test]
    fn long_chat_requests_preview_the_last_user_message() {
        let long_system = "s".repeat(2000);
        let inputs = serde_json::json!({"messages": [
            {"role": "system", "content": long_system},
            {"role": "user", "content": "what is mlflow?"},
        ]});
        let mut root = span(None, 1, SpanStatus::ok());
        root.attributes
            .insert(keys::SPAN_INPUTS.into(), JsonText::from_value(&inputs));
        let long_output = "o".repeat(5000);
        root.attributes.insert(
            keys::SPAN_OUTPUTS.into(),
            JsonText::from_str_value(&long_output),
        );
        let info = TraceInfo::from_spans(TraceId([7; 16]), TraceLocation::default(), &[root]);
        assert_eq!(info.request_preview.as_deref(), Some("what is mlflow?"));
        let response_preview = info.response_preview.unwrap();
        assert_eq!(response_preview.chars().count(), keys::MAX_PREVIEW_CHARS);
        assert!(response_preview.ends_with("..."));
        assert_eq!(
            info.trace_metadata[keys::META_TRACE_INPUTS].chars().count(),
            keys::MAX_METADATA_VALUE_CHARS
        );
    }

    #[test]
    fn without_a_root_the_trace_is_in_progress() {
        let child = span(Some(1), 2, SpanStatus::ok());
        let info = TraceInfo::from_spans(TraceId([7; 16]), TraceLocation::default(), &[child]);
        assert_eq!(info.state, TraceState::InProgress);
        assert_eq!(info.execution_duration_ms, None);
    }
}
