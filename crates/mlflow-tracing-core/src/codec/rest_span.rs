//! Spans as the REST v3 API returns them (`/traces/get`, `/traces/batchGet`): OpenTelemetry's `Span` message
//! rendered as proto-JSON with snake_case names — base64 ids, times as JSON numbers, attributes as
//! `[{key, value: {string_value | int_value | …}}]` holding native values, empty fields omitted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::CodecError;
use super::otlp::{any_value_to_json, json_to_any_value, span_from_otlp, span_to_otlp};
use crate::otlp_proto::common::v1::{AnyValue, KeyValue, any_value};
use crate::otlp_proto::trace::v1 as proto;
use crate::span::Span;

/// One span in the REST v3 form.
pub fn span_to_rest_json(span: &Span) -> Value {
    let otlp = span_to_otlp(span);
    let mut object = Map::new();
    object.insert("trace_id".into(), BASE64.encode(&otlp.trace_id).into());
    object.insert("span_id".into(), BASE64.encode(&otlp.span_id).into());
    if !otlp.parent_span_id.is_empty() {
        object.insert(
            "parent_span_id".into(),
            BASE64.encode(&otlp.parent_span_id).into(),
        );
    }
    object.insert("name".into(), otlp.name.clone().into());
    object.insert(
        "start_time_unix_nano".into(),
        otlp.start_time_unix_nano.into(),
    );
    if otlp.end_time_unix_nano != 0 {
        object.insert("end_time_unix_nano".into(), otlp.end_time_unix_nano.into());
    }
    if !otlp.attributes.is_empty() {
        object.insert("attributes".into(), key_values_to_json(&otlp.attributes));
    }
    if !otlp.events.is_empty() {
        let events = otlp
            .events
            .iter()
            .map(|event| {
                let mut object = Map::new();
                object.insert("time_unix_nano".into(), event.time_unix_nano.into());
                object.insert("name".into(), event.name.clone().into());
                if !event.attributes.is_empty() {
                    object.insert("attributes".into(), key_values_to_json(&event.attributes));
                }
                Value::Object(object)
            })
            .collect();
        object.insert("events".into(), Value::Array(events));
    }
    if !otlp.links.is_empty() {
        let links = otlp
            .links
            .iter()
            .map(|link| {
                json!({
                    "trace_id": BASE64.encode(&link.trace_id),
                    "span_id": BASE64.encode(&link.span_id),
                    "attributes": key_values_to_json(&link.attributes),
                })
            })
            .collect();
        object.insert("links".into(), Value::Array(links));
    }
    let status = otlp.status.unwrap_or_default();
    let mut status_object = Map::new();
    status_object.insert("code".into(), status_code_name(status.code).into());
    if !status.message.is_empty() {
        status_object.insert("message".into(), status.message.into());
    }
    object.insert("status".into(), Value::Object(status_object));
    Value::Object(object)
}

/// Reads one span in the REST v3 form.
pub fn span_from_rest_json(value: &Value) -> Result<Span, CodecError> {
    let bytes = |field: &'static str| -> Result<Vec<u8>, CodecError> {
        match value.get(field).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(text) => BASE64
                .decode(text)
                .map_err(|error| CodecError::invalid(field, error.to_string())),
        }
    };
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

fn key_values_to_json(key_values: &[KeyValue]) -> Value {
    key_values
        .iter()
        .map(|key_value| json!({"key": key_value.key, "value": any_value_to_rest(key_value.value.as_ref())}))
        .collect()
}

fn any_value_to_rest(value: Option<&AnyValue>) -> Value {
    let Some(native) = value.and_then(|value| value.value.as_ref()) else {
        return json!({});
    };
    match native {
        any_value::Value::StringValue(text) => json!({"string_value": text}),
        any_value::Value::BoolValue(flag) => json!({"bool_value": flag}),
        any_value::Value::IntValue(integer) => json!({"int_value": integer}),
        any_value::Value::DoubleValue(float) => json!({"double_value": float}),
        any_value::Value::BytesValue(bytes) => json!({"bytes_value": BASE64.encode(bytes)}),
        any_value::Value::ArrayValue(array) => {
            let values: Vec<Value> = array
                .values
                .iter()
                .map(|item| any_value_to_rest(Some(item)))
                .collect();
            json!({"array_value": {"values": values}})
        }
        any_value::Value::KvlistValue(list) => {
            json!({"kvlist_value": {"values": key_values_to_json(&list.values)}})
        }
        #[allow(unreachable_patterns)]
        _ => json!({}),
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
