//! Spans as the REST v3 API returns them (`/traces/get`, `/traces/batchGet`): OpenTelemetry's `Span` message
//! rendered as proto-JSON with snake_case names — base64 ids, times as JSON numbers, attributes as
//! `[{key, value: {string_value | int_value | …}}]` holding native values, empty fields omitted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::CodecError;
use super::otlp::{any_value_to_json, json_to_any_value, span_from_otlp, span_to_otlp};
use crate::otlp_proto::common::v1::{AnyValue, KeyValue, any_value};
use crate::otlp_proto::trace::v1 as proto;
use crate::span::Span;

/// One span in the REST v3 form.
pub fn span_to_rest_json(span: &Span) -> Value {
    // The text is JSON by construction; Null only if that ever broke.
    serde_json::from_str(&span_to_rest_text(span)).unwrap_or(Value::Null)
}

/// One span in the REST v3 form as JSON text, written directly (the store keeps this text and the API
/// splices it into answers as it is).
pub fn span_to_rest_text(span: &Span) -> String {
    let otlp = span_to_otlp(span);
    let mut out = JsonText::with_capacity(
        256 + otlp
            .attributes
            .iter()
            .map(|attribute| attribute.key.len() + 48)
            .sum::<usize>(),
    );
    out.raw("{\"trace_id\":");
    out.string(&BASE64.encode(&otlp.trace_id));
    out.raw(",\"span_id\":");
    out.string(&BASE64.encode(&otlp.span_id));
    if !otlp.parent_span_id.is_empty() {
        out.raw(",\"parent_span_id\":");
        out.string(&BASE64.encode(&otlp.parent_span_id));
    }
    out.raw(",\"name\":");
    out.string(&otlp.name);
    out.raw(",\"start_time_unix_nano\":");
    out.value(&otlp.start_time_unix_nano);
    if otlp.end_time_unix_nano != 0 {
        out.raw(",\"end_time_unix_nano\":");
        out.value(&otlp.end_time_unix_nano);
    }
    if !otlp.attributes.is_empty() {
        out.raw(",\"attributes\":");
        write_key_values(&mut out, &otlp.attributes);
    }
    if !otlp.events.is_empty() {
        out.raw(",\"events\":[");
        for (index, event) in otlp.events.iter().enumerate() {
            out.raw(if index == 0 { "{" } else { ",{" });
            out.raw("\"time_unix_nano\":");
            out.value(&event.time_unix_nano);
            out.raw(",\"name\":");
            out.string(&event.name);
            if !event.attributes.is_empty() {
                out.raw(",\"attributes\":");
                write_key_values(&mut out, &event.attributes);
            }
            out.raw("}");
        }
        out.raw("]");
    }
    if !otlp.links.is_empty() {
        out.raw(",\"links\":[");
        for (index, link) in otlp.links.iter().enumerate() {
            out.raw(if index == 0 { "{" } else { ",{" });
            out.raw("\"trace_id\":");
            out.string(&BASE64.encode(&link.trace_id));
            out.raw(",\"span_id\":");
            out.string(&BASE64.encode(&link.span_id));
            out.raw(",\"attributes\":");
            write_key_values(&mut out, &link.attributes);
            out.raw("}");
        }
        out.raw("]");
    }
    let status = otlp.status.unwrap_or_default();
    out.raw(",\"status\":{\"code\":");
    out.string(status_code_name(status.code));
    if !status.message.is_empty() {
        out.raw(",\"message\":");
        out.string(&status.message);
    }
    out.raw("}}");
    out.finish()
}

/// JSON text written piece by piece: fixed punctuation as given, values through serde_json so strings and
/// numbers are escaped and formatted exactly as a serialized `Value` would have them.
struct JsonText(Vec<u8>);

impl JsonText {
    fn with_capacity(capacity: usize) -> Self {
        JsonText(Vec::with_capacity(capacity))
    }

    fn raw(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    fn string(&mut self, text: &str) {
        self.value(text);
    }

    /// A string or number; serializing either into memory cannot fail (a non-finite float is `null`).
    fn value<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        let _ = serde_json::to_writer(&mut self.0, value);
    }

    fn finish(self) -> String {
        String::from_utf8(self.0)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }
}

fn write_key_values(out: &mut JsonText, key_values: &[KeyValue]) {
    out.raw("[");
    for (index, key_value) in key_values.iter().enumerate() {
        out.raw(if index == 0 {
            "{\"key\":"
        } else {
            ",{\"key\":"
        });
        out.string(&key_value.key);
        out.raw(",\"value\":");
        write_any_value(out, key_value.value.as_ref());
        out.raw("}");
    }
    out.raw("]");
}

fn write_any_value(out: &mut JsonText, value: Option<&AnyValue>) {
    let Some(native) = value.and_then(|value| value.value.as_ref()) else {
        out.raw("{}");
        return;
    };
    match native {
        any_value::Value::StringValue(text) => {
            out.raw("{\"string_value\":");
            out.string(text);
        }
        any_value::Value::BoolValue(flag) => {
            out.raw("{\"bool_value\":");
            out.value(flag);
        }
        any_value::Value::IntValue(integer) => {
            out.raw("{\"int_value\":");
            out.value(integer);
        }
        any_value::Value::DoubleValue(float) => {
            out.raw("{\"double_value\":");
            out.value(float);
        }
        any_value::Value::BytesValue(bytes) => {
            out.raw("{\"bytes_value\":");
            out.string(&BASE64.encode(bytes));
        }
        any_value::Value::ArrayValue(array) => {
            out.raw("{\"array_value\":{\"values\":[");
            for (index, item) in array.values.iter().enumerate() {
                if index > 0 {
                    out.raw(",");
                }
                write_any_value(out, Some(item));
            }
            out.raw("]}");
        }
        any_value::Value::KvlistValue(list) => {
            out.raw("{\"kvlist_value\":{\"values\":");
            write_key_values(out, &list.values);
            out.raw("}");
        }
    }
    out.raw("}");
}

/// Reads one span in the REST v3 form.
pub fn span_from_rest_json(value: &Value) -> Result<Span, CodecError> {
    let bytes_of = |object: &Value, field: &'static str| -> Result<Vec<u8>, CodecError> {
        match object.get(field).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(text) => BASE64
                .decode(text)
                .map_err(|error| CodecError::invalid(field, error.to_string())),
        }
    };
    let bytes = |field: &'static str| bytes_of(value, field);
    let number = |field: &str| value.get(field).and_then(super::lenient_u64).unwrap_or(0);
    let events = value
        .get("events")
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .map(|event| proto::span::Event {
                    time_unix_nano: event
                        .get("time_unix_nano")
                        .and_then(super::lenient_u64)
                        .unwrap_or(0),
                    name: event
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    attributes: key_values_from_json(event.get("attributes")),
                    dropped_attributes_count: 0,
                })
                .collect()
        })
        .unwrap_or_default();
    let links = value
        .get("links")
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .map(|link| {
                    Ok(proto::span::Link {
                        trace_id: bytes_of(link, "trace_id")?,
                        span_id: bytes_of(link, "span_id")?,
                        attributes: key_values_from_json(link.get("attributes")),
                        ..proto::span::Link::default()
                    })
                })
                .collect::<Result<Vec<_>, CodecError>>()
        })
        .transpose()?
        .unwrap_or_default();
    let status = value.get("status").map(|status| proto::Status {
        message: status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        code: match status.get("code").and_then(Value::as_str) {
            Some("STATUS_CODE_OK") => proto::status::StatusCode::Ok as i32,
            Some("STATUS_CODE_ERROR") => proto::status::StatusCode::Error as i32,
            _ => proto::status::StatusCode::Unset as i32,
        },
    });
    let otlp = proto::Span {
        trace_id: bytes("trace_id")?,
        span_id: bytes("span_id")?,
        parent_span_id: bytes("parent_span_id")?,
        name: value
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        start_time_unix_nano: number("start_time_unix_nano"),
        end_time_unix_nano: number("end_time_unix_nano"),
        attributes: key_values_from_json(value.get("attributes")),
        events,
        links,
        status,
        ..proto::Span::default()
    };
    span_from_otlp(&otlp)
}

fn status_code_name(code: i32) -> &'static str {
    match proto::status::StatusCode::try_from(code) {
        Ok(proto::status::StatusCode::Ok) => "STATUS_CODE_OK",
        Ok(proto::status::StatusCode::Error) => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

fn key_values_from_json(value: Option<&Value>) -> Vec<KeyValue> {
    let Some(items) = value.and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| KeyValue {
            key: item
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            value: Some(any_value_from_rest(item.get("value"))),
        })
        .collect()
}

fn any_value_from_rest(value: Option<&Value>) -> AnyValue {
    let Some(object) = value.and_then(Value::as_object) else {
        return AnyValue { value: None };
    };
    let (kind, inner) = match object.iter().next() {
        Some(entry) => entry,
        None => return AnyValue { value: None },
    };
    let native = match kind.as_str() {
        "array_value" => Value::Array(
            inner
                .get("values")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .map(|item| any_value_to_json(Some(&any_value_from_rest(Some(item)))))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "kvlist_value" => Value::Object(
            key_values_from_json(inner.get("values"))
                .into_iter()
                .map(|key_value| (key_value.key, any_value_to_json(key_value.value.as_ref())))
                .collect(),
        ),
        "int_value" => Value::from(super::lenient_i64(inner).unwrap_or(0)),
        _ => inner.clone(),
    };
    json_to_any_value(&native)
}
