//! The span schemas of `traces.json` and of `Trace.to_json()["data"]`.
//!
//! v2 (MLflow 2.x): `context.{trace_id,span_id}` as `0x`-hex, `parent_id`, `start_time`/`end_time`,
//! `status_code`/`status_message`, event `timestamp` in µs (user events) or ns (exceptions).
//! v3 (MLflow 3.x): base64 ids, `*_unix_nano` times, `status{code,message}`, `links`.
//! In both, span attribute values are JSON text and event attributes are native JSON. A span with a `context`
//! key is v2; anything else is read as v3.

use serde_json::{Map, Value, json};

use super::{CodecError, lenient_u64};
use crate::ids::{SpanId, TraceId};
use crate::keys;
use crate::span::{
    Attributes, EventAttributes, JsonText, Span, SpanEvent, SpanLink, SpanStatus, SpanStatusCode,
};
use crate::trace::TraceData;

/// Reads a `traces.json` document of either schema.
pub fn read_traces_json(text: &str) -> Result<TraceData, CodecError> {
    let document: Value = serde_json::from_str(text)?;
    read_trace_data(&document)
}

/// Reads `{"spans": [...]}` of either schema.
pub fn read_trace_data(document: &Value) -> Result<TraceData, CodecError> {
    let spans = document
        .get("spans")
        .and_then(Value::as_array)
        .ok_or(CodecError::MissingField { field: "spans" })?;
    let spans = spans.iter().map(span_from_json).collect::<Result<_, _>>()?;
    Ok(TraceData { spans })
}

/// Writes `{"spans": [...]}` in the v3 schema, as the MLflow 3.x client uploads it.
pub fn write_traces_json_v3(data: &TraceData) -> String {
    trace_data_to_v3(data).to_string()
}

/// `{"spans": [...]}` in the v3 schema, as a JSON value.
pub fn trace_data_to_v3(data: &TraceData) -> Value {
    json!({ "spans": data.spans.iter().map(span_to_v3).collect::<Vec<_>>() })
}

/// Writes `{"spans": [...], "request": …, "response": …}` in the v2 schema, for MLflow 2.x servers.
pub fn write_traces_json_v2(data: &TraceData) -> String {
    let root = data.root();
    let root_text = |key: &str| {
        root.and_then(|root| root.attributes.get(key))
            .map_or(Value::Null, |text| Value::from(text.as_str()))
    };
    json!({
        "spans": data.spans.iter().map(span_to_v2).collect::<Vec<_>>(),
        "request": root_text(keys::SPAN_INPUTS),
        "response": root_text(keys::SPAN_OUTPUTS),
    })
    .to_string()
}

/// One span in the v3 schema.
pub fn span_to_v3(span: &Span) -> Value {
    json!({
        "trace_id": span.trace_id.to_base64(),
        "span_id": span.span_id.to_base64(),
        "parent_span_id": span.parent_id.map(|parent| parent.to_base64()),
        "name": span.name,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "events": span.events.iter().map(|event| json!({
            "name": event.name,
            "time_unix_nano": event.time_unix_nano,
            "attributes": event.attributes,
        })).collect::<Vec<_>>(),
        "status": {"code": span.status.code.as_proto_str(), "message": span.status.message},
        "attributes": attributes_to_json(&span.attributes),
        "links": span.links.iter().map(|link| json!({
            "trace_id": link.trace_id.to_base64(),
            "span_id": link.span_id.to_base64(),
            "attributes": link.attributes,
        })).collect::<Vec<_>>(),
    })
}

/// One span in the v2 schema.
pub fn span_to_v2(span: &Span) -> Value {
    json!({
        "name": span.name,
        "context": {"span_id": span.span_id.to_0x_hex(), "trace_id": span.trace_id.to_0x_hex()},
        "parent_id": span.parent_id.map(|parent| parent.to_0x_hex()),
        "start_time": span.start_time_unix_nano,
        "end_time": span.end_time_unix_nano,
        "status_code": span.status.code.as_str(),
        "status_message": span.status.message,
        "attributes": attributes_to_json(&span.attributes),
        "events": span.events.iter().map(|event| json!({
            "name": event.name,
            "timestamp": event.time_unix_nano,
            "attributes": event.attributes,
        })).collect::<Vec<_>>(),
    })
}

/// Reads one span of either schema.
pub fn span_from_json(value: &Value) -> Result<Span, CodecError> {
    let object = value
        .as_object()
        .ok_or_else(|| CodecError::invalid("spans", "a span must be a JSON object"))?;
    if let Some(context) = object.get("context") {
        span_from_v2(object, context)
    } else {
        span_from_v3(object)
    }
}

fn span_from_v3(object: &Map<String, Value>) -> Result<Span, CodecError> {
    let status = match object.get("status") {
        Some(Value::Object(status)) => SpanStatus {
            code: parse_status_code(status.get("code"))?,
            message: status
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        Some(code @ Value::String(_)) => SpanStatus {
            code: parse_status_code(Some(code))?,
            message: String::new(),
        },
        _ => SpanStatus::default(),
    };
    Ok(Span {
        trace_id: TraceId::parse_any(required_str(object, "trace_id")?)?,
        span_id: SpanId::parse_any(required_str(object, "span_id")?)?,
        parent_id: optional_span_id(object.get("parent_span_id"))?,
        name: required_str(object, "name")?.to_owned(),
        start_time_unix_nano: required_u64(object, "start_time_unix_nano")?,
        end_time_unix_nano: object.get("end_time_unix_nano").and_then(lenient_u64),
        status,
        attributes: attributes_from_json(object.get("attributes"))?,
        events: events_from_json(object.get("events"), "time_unix_nano")?,
        links: links_from_json(object.get("links"))?,
    })
}

fn span_from_v2(object: &Map<String, Value>, context: &Value) -> Result<Span, CodecError> {
    let context_id = |field: &'static str| {
        context
            .get(field)
            .and_then(Value::as_str)
            .ok_or(CodecError::MissingField { field })
    };
    Ok(Span {
        trace_id: TraceId::parse_any(context_id("trace_id")?)?,
        span_id: SpanId::parse_any(context_id("span_id")?)?,
        parent_id: optional_span_id(object.get("parent_id"))?,
        name: required_str(object, "name")?.to_owned(),
        start_time_unix_nano: required_u64(object, "start_time")?,
        end_time_unix_nano: object.get("end_time").and_then(lenient_u64),
        status: SpanStatus {
            code: parse_status_code(object.get("status_code"))?,
            message: object
                .get("status_message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        attributes: attributes_from_json(object.get("attributes"))?,
        events: events_from_json(object.get("events"), "timestamp")?,
        links: Vec::new(),
    })
}

fn attributes_to_json(attributes: &Attributes) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|(key, text)| (key.to_string(), Value::from(text.as_str())))
            .collect(),
    )
}

/// Attribute values are JSON text in a JSON string; a writer that put a native value there is read too.
fn attributes_from_json(value: Option<&Value>) -> Result<Attributes, CodecError> {
    match value {
        None | Some(Value::Null) => Ok(Attributes::default()),
        Some(Value::Object(object)) => Ok(object
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => JsonText::from_raw(text.clone()),
                    native => JsonText::from_value(native),
                };
                (keys::attribute_key(key), text)
            })
            .collect()),
        Some(_) => Err(CodecError::invalid("attributes", "expected an object")),
    }
}

fn events_from_json(
    value: Option<&Value>,
    time_field: &'static str,
) -> Result<Vec<SpanEvent>, CodecError> {
    let Some(events) = value.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    events
        .iter()
        .map(|event| {
            let time = event
                .get(time_field)
                .or_else(|| event.get("time_unix_nano"))
                .or_else(|| event.get("timestamp"))
                .and_then(lenient_u64)
                .unwrap_or(0);
            Ok(SpanEvent {
                name: event
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                time_unix_nano: micros_or_nanos_to_nanos(time),
                attributes: event_attributes(event.get("attributes"))?,
            })
        })
        .collect()
}

fn links_from_json(value: Option<&Value>) -> Result<Vec<SpanLink>, CodecError> {
    let Some(links) = value.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    links
        .iter()
        .map(|link| {
            let id = |field: &'static str| {
                link.get(field)
                    .and_then(Value::as_str)
                    .ok_or(CodecError::MissingField { field })
            };
            Ok(SpanLink {
                trace_id: TraceId::parse_any(id("trace_id")?)?,
                span_id: SpanId::parse_any(id("span_id")?)?,
                attributes: event_attributes(link.get("attributes"))?,
            })
        })
        .collect()
}

fn event_attributes(value: Option<&Value>) -> Result<EventAttributes, CodecError> {
    match value {
        None | Some(Value::Null) => Ok(EventAttributes::default()),
        Some(Value::Object(object)) => Ok(object
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()),
        Some(_) => Err(CodecError::invalid("attributes", "expected an object")),
    }
}

/// MLflow 2.13.1 wrote user event times in microseconds. Any epoch time below 10^17 cannot be in nanoseconds
/// (that would be before 1973), so it is read as microseconds.
fn micros_or_nanos_to_nanos(time: u64) -> u64 {
    const SMALLEST_PLAUSIBLE_NANOS: u64 = 100_000_000_000_000_000;
    if time != 0 && time < SMALLEST_PLAUSIBLE_NANOS {
        time.saturating_mul(1000)
    } else {
        time
    }
}

fn parse_status_code(value: Option<&Value>) -> Result<SpanStatusCode, CodecError> {
    match value {
        None | Some(Value::Null) => Ok(SpanStatusCode::Unset),
        Some(Value::String(text)) => SpanStatusCode::parse(text)
            .ok_or_else(|| CodecError::invalid("status", format!("unknown code {text:?}"))),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(0) => Ok(SpanStatusCode::Unset),
            Some(1) => Ok(SpanStatusCode::Ok),
            Some(2) => Ok(SpanStatusCode::Error),
            _ => Err(CodecError::invalid(
                "status",
                format!("unknown code {number}"),
            )),
        },
        Some(other) => Err(CodecError::invalid("status", format!("unexpected {other}"))),
    }
}

fn optional_span_id(value: Option<&Value>) -> Result<Option<SpanId>, CodecError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(SpanId::parse_any(text)?)),
        Some(other) => Err(CodecError::invalid(
            "parent_span_id",
            format!("unexpected {other}"),
        )),
    }
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, CodecError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .ok_or(CodecError::MissingField { field })
}

fn required_u64(object: &Map<String, Value>, field: &'static str) -> Result<u64, CodecError> {
    let value = object
        .get(field)
        .ok_or(CodecError::MissingField { field })?;
    lenient_u64(value).ok_or_else(|| {
        CodecError::invalid(
            field,
            format!("expected a non-negative integer, got {value}"),
        )
    })
}
