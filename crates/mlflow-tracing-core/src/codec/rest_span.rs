//! Spans as the REST v3 API returns them (`/traces/get`, `/traces/batchGet`): OpenTelemetry's `Span` message
//! rendered as proto-JSON with snake_case names — base64 ids, times as JSON numbers, attributes as
//! `[{key, value: {string_value | int_value | …}}]` holding native values, empty fields omitted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::otlp::{any_value_to_json, json_to_any_value, span_from_otlp};
use super::{CodecError, KEYS_CHECKED};
use crate::otlp_proto::common::v1::{AnyValue, KeyValue};
use crate::otlp_proto::trace::v1 as proto;
use crate::span::Span;

/// One span in the REST v3 form.
pub fn span_to_rest_json(span: &Span) -> Value {
    // The text is JSON by construction; Null only if that ever broke.
    serde_json::from_str(&span_to_rest_text(span)).unwrap_or(Value::Null)
}

/// One span in the REST v3 form as JSON text, written directly from the span (the store keeps this text and
/// the API splices it into answers as it is). An attribute's JSON text is transcoded to its native OTLP form
/// as it is parsed, without building a `Value`.
pub fn span_to_rest_text(span: &Span) -> String {
    let mut out = RestWriter::with_capacity(
        256 + span
            .attributes
            .iter()
            .map(|(key, text)| key.len() + text.as_str().len() + 48)
            .sum::<usize>(),
    );
    out.raw("{\"trace_id\":");
    out.base64(&span.trace_id.0);
    out.raw(",\"span_id\":");
    out.base64(&span.span_id.0);
    if let Some(parent) = span.parent_id {
        out.raw(",\"parent_span_id\":");
        out.base64(&parent.0);
    }
    out.raw(",\"name\":");
    out.string(&span.name);
    out.raw(",\"start_time_unix_nano\":");
    out.value(&span.start_time_unix_nano);
    if let Some(end) = span.end_time_unix_nano.filter(|end| *end != 0) {
        out.raw(",\"end_time_unix_nano\":");
        out.value(&end);
    }
    if !span.attributes.is_empty() {
        out.raw(",\"attributes\":[");
        for (index, (key, text)) in span.attributes.iter().enumerate() {
            out.raw(if index == 0 {
                "{\"key\":"
            } else {
                ",{\"key\":"
            });
            out.string(key);
            out.raw(",\"value\":");
            write_json_text(&mut out, text.as_str());
            out.raw("}");
        }
        out.raw("]");
    }
    if !span.events.is_empty() {
        out.raw(",\"events\":[");
        for (index, event) in span.events.iter().enumerate() {
            out.raw(if index == 0 { "{" } else { ",{" });
            out.raw("\"time_unix_nano\":");
            out.value(&event.time_unix_nano);
            out.raw(",\"name\":");
            out.string(&event.name);
            if !event.attributes.is_empty() {
                out.raw(",\"attributes\":");
                write_entries(&mut out, &event.attributes);
            }
            out.raw("}");
        }
        out.raw("]");
    }
    if !span.links.is_empty() {
        out.raw(",\"links\":[");
        for (index, link) in span.links.iter().enumerate() {
            out.raw(if index == 0 { "{" } else { ",{" });
            out.raw("\"trace_id\":");
            out.base64(&link.trace_id.0);
            out.raw(",\"span_id\":");
            out.base64(&link.span_id.0);
            out.raw(",\"attributes\":");
            write_entries(&mut out, &link.attributes);
            out.raw("}");
        }
        out.raw("]");
    }
    out.raw(",\"status\":{\"code\":");
    out.string(span.status.code.as_proto_str());
    if !span.status.message.is_empty() {
        out.raw(",\"message\":");
        out.string(&span.status.message);
    }
    out.raw("}}");
    out.finish()
}

/// JSON text written piece by piece: fixed punctuation as given, values through serde_json so strings and
/// numbers are escaped and formatted exactly as a serialized `Value` would have them.
struct RestWriter(Vec<u8>);

impl RestWriter {
    fn with_capacity(capacity: usize) -> Self {
        RestWriter(Vec::with_capacity(capacity))
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

    /// Bytes as a base64 JSON string (ids, bytes values).
    fn base64(&mut self, bytes: &[u8]) {
        let start = self.0.len() + 1;
        let length = base64::encoded_len(bytes.len(), true).unwrap_or(0);
        self.0.resize(start + length + 1, b'"');
        let _ = BASE64.encode_slice(bytes, &mut self.0[start..start + length]);
    }

    /// The native values in proto-JSON: `{"bool_value":true}`, `{"int_value":3}` and so on.
    fn bool_value(&mut self, flag: bool) {
        self.raw(if flag {
            "{\"bool_value\":true}"
        } else {
            "{\"bool_value\":false}"
        });
    }

    fn int_value(&mut self, integer: i64) {
        self.raw("{\"int_value\":");
        self.value(&integer);
        self.raw("}");
    }

    fn double_value(&mut self, float: f64) {
        self.raw("{\"double_value\":");
        self.value(&float);
        self.raw("}");
    }

    fn string_value(&mut self, text: &str) {
        self.raw("{\"string_value\":");
        self.string(text);
        self.raw("}");
    }

    fn finish(self) -> String {
        String::from_utf8(self.0)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }
}

/// An attribute's JSON text as a native OTLP value: objects become key-value lists, integers `int_value`,
/// and text that is not JSON a `string_value` of that text. An object with a repeated key takes the slower
/// way through a `Value`, which keeps the last value at the first key's place.
fn write_json_text(out: &mut RestWriter, text: &str) {
    let mark = out.0.len();
    let mut parser = serde_json::Deserializer::from_str(text);
    let transcoded = serde::de::DeserializeSeed::deserialize(AnyValueWriter(out), &mut parser)
        .and_then(|()| parser.end());
    if transcoded.is_err() {
        out.0.truncate(mark);
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        write_value(out, &value);
    }
}

/// Event and link attributes: `[{key, value}]` of native values.
fn write_entries(out: &mut RestWriter, entries: &serde_json::Map<String, Value>) {
    out.raw("[");
    for (index, (key, value)) in entries.iter().enumerate() {
        out.raw(if index == 0 {
            "{\"key\":"
        } else {
            ",{\"key\":"
        });
        out.string(key);
        out.raw(",\"value\":");
        write_value(out, value);
        out.raw("}");
    }
    out.raw("]");
}

/// A JSON value as a native OTLP value, as [`json_to_any_value`] makes it, in proto-JSON.
fn write_value(out: &mut RestWriter, value: &Value) {
    match value {
        Value::Null => out.raw("{}"),
        Value::Bool(flag) => out.bool_value(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => out.int_value(integer),
            None => out.double_value(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => out.string_value(text),
        Value::Array(items) => {
            out.raw("{\"array_value\":{\"values\":[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.raw(",");
                }
                write_value(out, item);
            }
            out.raw("]}}");
        }
        Value::Object(entries) => {
            out.raw("{\"kvlist_value\":{\"values\":");
            write_entries(out, entries);
            out.raw("}}");
        }
    }
}

/// Writes the JSON value it is deserialized from as a native OTLP value (see [`write_json_text`]).
struct AnyValueWriter<'a>(&'a mut RestWriter);

impl<'de> serde::de::DeserializeSeed<'de> for AnyValueWriter<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AnyValueWriter<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.raw("{}");
        Ok(())
    }

    fn visit_bool<E>(self, flag: bool) -> Result<(), E> {
        self.0.bool_value(flag);
        Ok(())
    }

    fn visit_i64<E>(self, integer: i64) -> Result<(), E> {
        self.0.int_value(integer);
        Ok(())
    }

    fn visit_u64<E>(self, integer: u64) -> Result<(), E> {
        match i64::try_from(integer) {
            Ok(integer) => self.0.int_value(integer),
            Err(_) => self.0.double_value(integer as f64),
        }
        Ok(())
    }

    fn visit_f64<E>(self, float: f64) -> Result<(), E> {
        self.0.double_value(float);
        Ok(())
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        self.0.string_value(text);
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        self.0.raw("{\"array_value\":{\"values\":[");
        let mut first = true;
        loop {
            let mark = self.0.0.len();
            if !first {
                self.0.raw(",");
            }
            if items
                .next_element_seed(AnyValueWriter(&mut *self.0))?
                .is_none()
            {
                self.0.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.0.raw("]}}");
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        self.0.raw("{\"kvlist_value\":{\"values\":[");
        let mut keys = [(0_usize, 0_usize); KEYS_CHECKED];
        let mut count = 0;
        loop {
            let entry = self.0.0.len();
            self.0.raw(if count == 0 {
                "{\"key\":"
            } else {
                ",{\"key\":"
            });
            let key_start = self.0.0.len();
            if entries.next_key_seed(KeyWriter(&mut *self.0))?.is_none() {
                self.0.0.truncate(entry);
                break;
            }
            let key = (key_start, self.0.0.len());
            let written = &self.0.0;
            let repeated = keys[..count.min(KEYS_CHECKED)]
                .iter()
                .any(|&(start, end)| written[start..end] == written[key.0..key.1]);
            if repeated || count == KEYS_CHECKED {
                return Err(serde::de::Error::custom(
                    "an object with a repeated key or many keys",
                ));
            }
            keys[count] = key;
            count += 1;
            self.0.raw(",\"value\":");
            entries.next_value_seed(AnyValueWriter(&mut *self.0))?;
            self.0.raw("}");
        }
        self.0.raw("]}}");
        Ok(())
    }
}

/// Writes an object key as a JSON string.
struct KeyWriter<'a>(&'a mut RestWriter);

impl<'de> serde::de::DeserializeSeed<'de> for KeyWriter<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyWriter<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        self.0.string(key);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    //! The direct writer against the way it replaced: values made native OTLP messages (as `span_to_otlp`
    //! makes them), then written field by field.

    use serde_json::json;

    use super::*;
    use crate::ids::{SpanId, TraceId};
    use crate::otlp_proto::common::v1::any_value;
    use crate::span::{JsonText, SpanStatus};
    use crate::test_random::Random;

    fn write_key_values(out: &mut RestWriter, key_values: &[KeyValue]) {
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

    fn write_any_value(out: &mut RestWriter, value: Option<&AnyValue>) {
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

    fn value(random: &mut Random, depth: u32) -> Value {
        match random.below(if depth > 3 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(random.below(2) == 0),
            2 => json!(random.below(1000) as i64 - 500),
            3 => json!(random.pick(&[u64::MAX, i64::MIN as u64, 1 << 53])),
            4 => json!(random.pick(&[0.1, -2.5e-8, 1e300, 3.0, -0.0])),
            5 => Value::String(random.text()),
            6 => Value::Array(
                (0..random.below(4))
                    .map(|_| value(random, depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..random.below(5))
                    .map(|_| (random.text(), value(random, depth + 1)))
                    .collect(),
            ),
        }
    }

    /// Attribute text: mostly a value's JSON, sometimes text that is not JSON, an object whose key repeats
    /// (which a `Value` keeps once), one with many keys, or JSON with spaces.
    fn attribute_text(random: &mut Random) -> JsonText {
        match random.below(10) {
            0 => JsonText::from_raw(random.text()),
            1 => JsonText::from_raw(r#"{"a":1,"b":[2],"a":{"c":null}}"#),
            2 => JsonText::from_raw(format!(
                "{{{}}}",
                (0..40)
                    .map(|key| format!("\"k{key}\":{key}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            3 => JsonText::from_raw(" [1, 2.50, \"x\"] "),
            _ => JsonText::from_value(&value(random, 0)),
        }
    }

    #[test]
    fn attribute_texts_are_written_as_their_otlp_values() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let text = attribute_text(&mut random);
            let mut direct = RestWriter::with_capacity(64);
            write_json_text(&mut direct, text.as_str());
            let mut through_otlp = RestWriter::with_capacity(64);
            write_any_value(
                &mut through_otlp,
                Some(&json_to_any_value(&text.to_value())),
            );
            assert_eq!(direct.finish(), through_otlp.finish(), "{text:?}");
        }
    }

    #[test]
    fn event_attributes_are_written_as_otlp_key_values() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for _ in 0..2_000 {
            let entries: serde_json::Map<String, Value> = (0..random.below(4))
                .map(|_| (random.text(), value(&mut random, 1)))
                .collect();
            let key_values: Vec<KeyValue> = entries
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: Some(json_to_any_value(value)),
                })
                .collect();
            let mut direct = RestWriter::with_capacity(64);
            write_entries(&mut direct, &entries);
            let mut through_otlp = RestWriter::with_capacity(64);
            write_key_values(&mut through_otlp, &key_values);
            assert_eq!(direct.finish(), through_otlp.finish(), "{entries:?}");
        }
    }

    #[test]
    fn attribute_values_become_native() {
        let span = Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_id: None,
            name: "step".into(),
            start_time_unix_nano: 5,
            end_time_unix_nano: Some(7),
            status: SpanStatus::ok(),
            attributes: [
                ("s", JsonText::from_str_value("CHAIN")),
                (
                    "o",
                    JsonText::from_raw(r#"{"q":"x","k":3,"t":0.5,"big":18446744073709551615}"#),
                ),
                ("n", JsonText::from_raw("null")),
                ("bad", JsonText::from_raw("{not json")),
            ]
            .into_iter()
            .map(|(key, text)| (key.into(), text))
            .collect(),
            events: Vec::new(),
            links: Vec::new(),
        };
        let written: Value = serde_json::from_str(&span_to_rest_text(&span)).unwrap();
        assert_eq!(
            written,
            json!({
                "trace_id": "AQEBAQEBAQEBAQEBAQEBAQ==",
                "span_id": "AgICAgICAgI=",
                "name": "step",
                "start_time_unix_nano": 5,
                "end_time_unix_nano": 7,
                "attributes": [
                    {"key": "s", "value": {"string_value": "CHAIN"}},
                    {"key": "o", "value": {"kvlist_value": {"values": [
                        {"key": "q", "value": {"string_value": "x"}},
                        {"key": "k", "value": {"int_value": 3}},
                        {"key": "t", "value": {"double_value": 0.5}},
                        {"key": "big", "value": {"double_value": 18446744073709551615.0}},
                    ]}}},
                    {"key": "n", "value": {}},
                    {"key": "bad", "value": {"string_value": "{not json"}},
                ],
                "status": {"code": "STATUS_CODE_OK"},
            })
        );
    }
}
