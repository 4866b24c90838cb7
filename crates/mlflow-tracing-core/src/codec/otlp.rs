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

use super::CodecError;
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
            let value = any_value_to_json(attribute.value.as_ref());
            let is_payload =
                attribute.key == keys::SPAN_INPUTS || attribute.key == keys::SPAN_OUTPUTS;
            let text = match &value {
                Value::String(text) if is_payload => match serde_json::from_str::<Value>(text) {
                    Ok(structured @ (Value::Object(_) | Value::Array(_))) => {
                        JsonText::from_value(&structured)
                    }
                    _ => JsonText::from_value(&value),
                },
                _ => JsonText::from_value(&value),
            };
            (keys::attribute_key(&attribute.key), text)
        })
        .collect()
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
