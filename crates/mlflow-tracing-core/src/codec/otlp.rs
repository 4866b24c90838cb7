//! Conversion between spans and OpenTelemetry's OTLP protobuf messages.
//!
//! MLflow keeps attribute values as JSON text; on OTLP the 3.x client sends native `AnyValue`s (a string input
//! is a `string_value`, a dict a `kvlist_value`). Writing parses the JSON text into native values; reading
//! encodes them back. One exception on reading: `mlflow.spanInputs`/`mlflow.spanOutputs` sent as a string that
//! holds a JSON object or array (as hand-written OTel instrumentation does) are taken as that structure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;
use serde_json::{Map, Number, Value};

use super::{CodecError, KEYS_CHECKED};
use crate::ids::{SpanId, TraceId};
use crate::keys;
use crate::span::{
    Attributes, EventAttributes, JsonText, Span, SpanEvent, SpanLink, SpanStatus, SpanStatusCode,
};

/// Spans read from one `ResourceSpans`, with the resource's attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceSpanBatch {
    pub resource_attributes: EventAttributes,
    pub spans: Vec<Span>,
}

/// Builds an export request carrying `spans` under one resource with the given attributes.
pub fn export_request(
    spans: &[Span],
    resource_attributes: &EventAttributes,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(Resource {
                attributes: resource_attributes
                    .iter()
                    .map(|(key, value)| key_value(key, value))
                    .collect(),
                ..Resource::default()
            }),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(InstrumentationScope::default()),
                spans: spans.iter().map(span_to_otlp).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Reads every span of an export request, grouped by resource.
pub fn spans_from_request(
    request: &ExportTraceServiceRequest,
) -> Result<Vec<ResourceSpanBatch>, CodecError> {
    request
        .resource_spans
        .iter()
        .map(|resource_spans| {
            let resource_attributes = resource_spans
                .resource
                .as_ref()
                .map(|resource| event_attributes_from_otlp(&resource.attributes))
                .unwrap_or_default();
            let spans = resource_spans
                .scope_spans
                .iter()
                .flat_map(|scope_spans| &scope_spans.spans)
                .map(span_from_otlp)
                .collect::<Result<_, _>>()?;
            Ok(ResourceSpanBatch {
                resource_attributes,
                spans,
            })
        })
        .collect()
}

/// One span as an OTLP message, attribute values native.
pub fn span_to_otlp(span: &Span) -> proto::Span {
    proto::Span {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        parent_span_id: span
            .parent_id
            .map(|parent| parent.0.to_vec())
            .unwrap_or_default(),
        name: span.name.clone(),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano.unwrap_or(0),
        attributes: span
            .attributes
            .iter()
            .map(|(key, text)| key_value(key, &text.to_value()))
            .collect(),
        events: span
            .events
            .iter()
            .map(|event| proto::span::Event {
                time_unix_nano: event.time_unix_nano,
                name: event.name.clone(),
                attributes: event
                    .attributes
                    .iter()
                    .map(|(key, value)| key_value(key, value))
                    .collect(),
                dropped_attributes_count: 0,
            })
            .collect(),
        links: span
            .links
            .iter()
            .map(|link| proto::span::Link {
                trace_id: link.trace_id.0.to_vec(),
                span_id: link.span_id.0.to_vec(),
                attributes: link
                    .attributes
                    .iter()
                    .map(|(key, value)| key_value(key, value))
                    .collect(),
                ..proto::span::Link::default()
            })
            .collect(),
        status: Some(proto::Status {
            message: span.status.message.clone(),
            code: match span.status.code {
                SpanStatusCode::Unset => proto::status::StatusCode::Unset,
                SpanStatusCode::Ok => proto::status::StatusCode::Ok,
                SpanStatusCode::Error => proto::status::StatusCode::Error,
            } as i32,
        }),
        ..proto::Span::default()
    }
}

/// Reads one OTLP span; ids of the wrong length are errors.
pub fn span_from_otlp(span: &proto::Span) -> Result<Span, CodecError> {
    let trace_id = TraceId::from_bytes(&span.trace_id).ok_or_else(|| {
        CodecError::invalid(
            "trace_id",
            format!("expected 16 bytes, got {}", span.trace_id.len()),
        )
    })?;
    let span_id = SpanId::from_bytes(&span.span_id).ok_or_else(|| {
        CodecError::invalid(
            "span_id",
            format!("expected 8 bytes, got {}", span.span_id.len()),
        )
    })?;
    let parent_id = match span.parent_span_id.as_slice() {
        [] => None,
        bytes => Some(SpanId::from_bytes(bytes).ok_or_else(|| {
            CodecError::invalid(
                "parent_span_id",
                format!("expected 8 bytes, got {}", bytes.len()),
            )
        })?),
    };
    let status = span
        .status
        .as_ref()
        .map_or_else(SpanStatus::default, |status| SpanStatus {
            code: match proto::status::StatusCode::try_from(status.code) {
                Ok(proto::status::StatusCode::Ok) => SpanStatusCode::Ok,
                Ok(proto::status::StatusCode::Error) => SpanStatusCode::Error,
                _ => SpanStatusCode::Unset,
            },
            message: status.message.clone(),
        });
    Ok(Span {
        trace_id,
        span_id,
        parent_id,
        name: span.name.clone(),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: (span.end_time_unix_nano != 0).then_some(span.end_time_unix_nano),
        status,
        attributes: span_attributes_from_otlp(&span.attributes),
        events: span
            .events
            .iter()
            .map(|event| SpanEvent {
                name: event.name.clone(),
                time_unix_nano: event.time_unix_nano,
                attributes: event_attributes_from_otlp(&event.attributes),
            })
            .collect(),
        links: span
            .links
            .iter()
            .filter_map(|link| {
                Some(SpanLink {
                    trace_id: TraceId::from_bytes(&link.trace_id)?,
                    span_id: SpanId::from_bytes(&link.span_id)?,
                    attributes: event_attributes_from_otlp(&link.attributes),
                })
            })
            .collect(),
    })
}

fn span_attributes_from_otlp(attributes: &[KeyValue]) -> Attributes {
    attributes
        .iter()
        .map(|attribute| {
            let is_payload =
                attribute.key == keys::SPAN_INPUTS || attribute.key == keys::SPAN_OUTPUTS;
            let native = attribute
                .value
                .as_ref()
                .and_then(|value| value.value.as_ref());
            let text = match native {
                // Inputs and outputs sent as JSON text (as MLflow's client sends them) are stored as the
                // structure they hold.
                Some(any_value::Value::StringValue(text)) if is_payload => {
                    match serde_json::from_str::<Value>(text) {
                        Ok(structured @ (Value::Object(_) | Value::Array(_))) => {
                            JsonText::from_value(&structured)
                        }
                        _ => JsonText::from_str_value(text),
                    }
                }
                _ => any_value_text(attribute.value.as_ref()),
            };
            (keys::attribute_key(&attribute.key), text)
        })
        .collect()
}

/// A native OTLP value as JSON text, as [`any_value_to_json`] makes it, written directly. A key-value list
/// that repeats a key takes the way through a `Value`, which keeps the last value at the first key's place.
fn any_value_text(value: Option<&AnyValue>) -> JsonText {
    let mut out = Vec::with_capacity(32);
    if write_any_value_json(&mut out, value) {
        if let Ok(text) = String::from_utf8(out) {
            return JsonText::from_raw(text);
        }
    }
    JsonText::from_value(&any_value_to_json(value))
}

/// Writes the value's JSON; false when a key-value list repeats a key (the output is then incomplete).
fn write_any_value_json(out: &mut Vec<u8>, value: Option<&AnyValue>) -> bool {
    // Writing a string or a number into memory cannot fail.
    fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
        let _ = serde_json::to_writer(out, value);
    }
    let Some(native) = value.and_then(|value| value.value.as_ref()) else {
        out.extend_from_slice(b"null");
        return true;
    };
    match native {
        any_value::Value::StringValue(text) => json(out, text),
        any_value::Value::BoolValue(flag) => json(out, flag),
        any_value::Value::IntValue(integer) => json(out, integer),
        any_value::Value::DoubleValue(float) if float.is_finite() => json(out, float),
        any_value::Value::DoubleValue(float) => json(out, &float.to_string()),
        any_value::Value::BytesValue(bytes) => json(out, &BASE64.encode(bytes)),
        any_value::Value::ArrayValue(array) => {
            out.push(b'[');
            for (index, item) in array.values.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                if !write_any_value_json(out, Some(item)) {
                    return false;
                }
            }
            out.push(b']');
        }
        any_value::Value::KvlistValue(list) => {
            let entries = &list.values;
            // Checked pairwise, so a long list takes the other way without checking.
            let repeats = entries.len() > KEYS_CHECKED
                || entries.iter().enumerate().any(|(index, entry)| {
                    entries[..index]
                        .iter()
                        .any(|earlier| earlier.key == entry.key)
                });
            if repeats {
                return false;
            }
            out.push(b'{');
            for (index, entry) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                json(out, &entry.key);
                out.push(b':');
                if !write_any_value_json(out, entry.value.as_ref()) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

fn event_attributes_from_otlp(attributes: &[KeyValue]) -> EventAttributes {
    attributes
        .iter()
        .map(|attribute| {
            (
                attribute.key.clone(),
                any_value_to_json(attribute.value.as_ref()),
            )
        })
        .collect()
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(json_to_any_value(value)),
    }
}

/// A JSON value as a native OTLP value: objects become key-value lists, integers `int_value`.
pub fn json_to_any_value(value: &Value) -> AnyValue {
    let native = match value {
        Value::Null => None,
        Value::Bool(flag) => Some(any_value::Value::BoolValue(*flag)),
        Value::Number(number) => Some(match number.as_i64() {
            Some(integer) => any_value::Value::IntValue(integer),
            None => any_value::Value::DoubleValue(number.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(text) => Some(any_value::Value::StringValue(text.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(json_to_any_value).collect(),
        })),
        Value::Object(object) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: object
                .iter()
                .map(|(key, value)| key_value(key, value))
                .collect(),
        })),
    };
    AnyValue { value: native }
}

/// A native OTLP value as JSON; bytes become base64 text, non-finite doubles their name.
pub fn any_value_to_json(value: Option<&AnyValue>) -> Value {
    let Some(native) = value.and_then(|value| value.value.as_ref()) else {
        return Value::Null;
    };
    match native {
        any_value::Value::StringValue(text) => Value::String(text.clone()),
        any_value::Value::BoolValue(flag) => Value::Bool(*flag),
        any_value::Value::IntValue(integer) => Value::from(*integer),
        any_value::Value::DoubleValue(float) => {
            Number::from_f64(*float).map_or_else(|| Value::String(float.to_string()), Value::Number)
        }
        any_value::Value::ArrayValue(array) => Value::Array(
            array
                .values
                .iter()
                .map(|item| any_value_to_json(Some(item)))
                .collect(),
        ),
        any_value::Value::KvlistValue(list) => Value::Object(
            list.values
                .iter()
                .map(|entry| (entry.key.clone(), any_value_to_json(entry.value.as_ref())))
                .collect::<Map<_, _>>(),
        ),
        any_value::Value::BytesValue(bytes) => Value::String(BASE64.encode(bytes)),
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_random::Random;

    /// The way attribute values were read before they were written directly: through a `Value`.
    fn through_value(attributes: &[KeyValue]) -> Attributes {
        attributes
            .iter()
            .map(|attribute| {
                let value = any_value_to_json(attribute.value.as_ref());
                let is_payload =
                    attribute.key == keys::SPAN_INPUTS || attribute.key == keys::SPAN_OUTPUTS;
                let text = match &value {
                    Value::String(text) if is_payload => {
                        match serde_json::from_str::<Value>(text) {
                            Ok(structured @ (Value::Object(_) | Value::Array(_))) => {
                                JsonText::from_value(&structured)
                            }
                            _ => JsonText::from_value(&value),
                        }
                    }
                    _ => JsonText::from_value(&value),
                };
                (keys::attribute_key(&attribute.key), text)
            })
            .collect()
    }

    fn value(random: &mut Random, depth: u32) -> AnyValue {
        use any_value::Value as Native;
        let native = match random.below(if depth > 2 { 7 } else { 9 }) {
            0 => None,
            1 => Some(Native::BoolValue(random.below(2) == 0)),
            2 => Some(Native::IntValue(random.pick(&[
                i64::MIN,
                -1,
                0,
                42,
                i64::MAX,
            ]))),
            3 => Some(Native::DoubleValue(random.pick(&[
                0.1,
                -2.5e-8,
                1e300,
                3.0,
                -0.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ]))),
            4 => Some(Native::BytesValue(random.text().into_bytes())),
            // JSON text, which inputs and outputs store as the structure it holds.
            5 => Some(Native::StringValue(
                random
                    .pick(&[r#"{"a": [1, 2.0]}"#, "[]", "3", "{not json"])
                    .to_owned(),
            )),
            6 => Some(Native::StringValue(random.text())),
            7 => Some(Native::ArrayValue(ArrayValue {
                values: (0..random.below(4))
                    .map(|_| value(random, depth + 1))
                    .collect(),
            })),
            _ => Some(Native::KvlistValue(KeyValueList {
                values: (0..random.pick(&[0, 2, 5, 40]))
                    .map(|_| KeyValue {
                        key: random.text(),
                        value: Some(value(random, depth + 1)),
                    })
                    .collect(),
            })),
        };
        AnyValue { value: native }
    }

    #[test]
    fn attribute_values_read_as_through_a_json_value() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let attributes: Vec<KeyValue> = [keys::SPAN_INPUTS, keys::SPAN_OUTPUTS, "other", "x"]
                .iter()
                .map(|key| KeyValue {
                    key: (*key).to_owned(),
                    value: (random.below(8) > 0).then(|| value(&mut random, 0)),
                })
                .collect();
            let direct = span_attributes_from_otlp(&attributes);
            let expected = through_value(&attributes);
            let texts = |attributes: &Attributes| -> Vec<(String, String)> {
                attributes
                    .iter()
                    .map(|(key, text)| (key.to_string(), text.as_str().to_owned()))
                    .collect()
            };
            assert_eq!(texts(&direct), texts(&expected), "{attributes:#?}");
        }
    }
}
