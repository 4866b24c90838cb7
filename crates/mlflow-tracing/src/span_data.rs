//! The state of one span while it is recorded, kept small and cheap to build.
//!
//! Static parts (the name, type and attributes given to `#[trace]`) are borrowed `&'static str`; payloads are
//! JSON text produced once. The conversion to the model's [`Span`] (attribute maps, reserved keys) happens on
//! the export thread, not on the caller's.

use std::borrow::Cow;

use mlflow_tracing_core::{Attributes, JsonText, Span, SpanEvent, SpanId, SpanStatus, SpanStatusCode, SpanType, TraceId, keys};

/// Text that is usually static.
pub(crate) type Text = Cow<'static, str>;

#[derive(Debug)]
pub(crate) struct SpanData {
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    pub(crate) name: Text,
    pub(crate) span_type: Text,
    pub(crate) function_name: Option<&'static str>,
    pub(crate) start_ns: u64,
    /// 0 while the span is open.
    pub(crate) end_ns: u64,
    pub(crate) status_code: SpanStatusCode,
    pub(crate) status_message: Option<Box<str>>,
    pub(crate) inputs: Option<Box<str>>,
    pub(crate) outputs: Option<Box<str>>,
    /// Keys with JSON-text values, in the order they were first set.
    pub(crate) attributes: Vec<(Text, Text)>,
    pub(crate) events: Vec<SpanEvent>,
}

/// One change to a span, wherever the span is held.
#[derive(Debug)]
pub(crate) enum SpanMutation {
    Inputs(String),
    Outputs(String),
    Attribute(Text, Text),
    SpanType(Text),
    Event(SpanEvent),
    Status(SpanStatusCode, Option<String>),
}

impl SpanData {
    pub(crate) fn new(span_id: SpanId, parent_id: Option<SpanId>, name: Text, span_type: Text) -> Self {
        SpanData {
            span_id,
            parent_id,
            name,
            span_type,
            function_name: None,
            start_ns: crate::clock::now_ns(),
            end_ns: 0,
            status_code: SpanStatusCode::Unset,
            status_message: None,
            inputs: None,
            outputs: None,
            attributes: Vec::new(),
            events: Vec::new(),
        }
    }

    pub(crate) fn apply(&mut self, mutation: SpanMutation) {
        match mutation {
            SpanMutation::Inputs(json) => self.inputs = Some(json.into_boxed_str()),
            SpanMutation::Outputs(json) => self.outputs = Some(json.into_boxed_str()),
            SpanMutation::Attribute(key, json) => self.set_attribute(key, json),
            SpanMutation::SpanType(span_type) => self.span_type = span_type,
            SpanMutation::Event(event) => self.events.push(event),
            SpanMutation::Status(code, message) => {
                self.status_code = code;
                self.status_message = message.map(String::into_boxed_str);
            }
        }
    }

    pub(crate) fn set_attribute(&mut self, key: Text, json: Text) {
        match self.attributes.iter_mut().find(|(existing, _)| *existing == key) {
            Some(entry) => entry.1 = json,
            None => self.attributes.push((key, json)),
        }
    }

    pub(crate) fn end_at(&mut self, end_ns: u64) {
        if self.end_ns == 0 {
            self.end_ns = end_ns.max(self.start_ns);
        }
    }

    /// The model's span, with MLflow's reserved attributes in the order the Python client writes them.
    pub(crate) fn into_span(self, trace_id: TraceId) -> Span {
        let span_type = SpanType::parse(&self.span_type);
        let mut attributes = Attributes::with_capacity(self.attributes.len() + 6);
        attributes.insert(keys::TRACE_REQUEST_ID.into(), JsonText::from_str_value(&trace_id.to_mlflow()));
        attributes.insert(keys::SPAN_TYPE.into(), JsonText::from_str_value(span_type.as_str()));
        for (key, json) in self.attributes {
            attributes.insert(key.into_owned(), JsonText::from_raw(json.into_owned()));
        }
        if let Some(function_name) = self.function_name {
            attributes.insert(keys::SPAN_FUNCTION_NAME.into(), JsonText::from_str_value(function_name));
        }
        if let Some(inputs) = self.inputs {
            attributes.insert(keys::SPAN_INPUTS.into(), JsonText::from_raw(String::from(inputs)));
        }
        if let Some(outputs) = self.outputs {
            attributes.insert(keys::SPAN_OUTPUTS.into(), JsonText::from_raw(String::from(outputs)));
        }
        if !attributes.contains_key(keys::SPAN_LOG_LEVEL) {
            let level = span_type.default_log_level(self.status_code);
            attributes.insert(keys::SPAN_LOG_LEVEL.into(), JsonText::from_raw(level.to_string()));
        }
        Span {
            trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            name: self.name.into_owned(),
            start_time_unix_nano: self.start_ns,
            end_time_unix_nano: (self.end_ns != 0).then_some(self.end_ns),
            status: SpanStatus {
                code: self.status_code,
                message: self.status_message.map(String::from).unwrap_or_default(),
            },
            attributes,
            events: self.events,
            links: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_data_stays_small() {
        // The per-span memory target is 300 bytes before payloads; keep the fixed part well under it.
        assert!(std::mem::size_of::<SpanData>() <= 224, "{}", std::mem::size_of::<SpanData>());
    }

    #[test]
    fn conversion_writes_reserved_attributes_as_json_text() {
        let mut data = SpanData::new(SpanId([1; 8]), None, "agent".into(), "AGENT".into());
        data.function_name = Some("run_agent");
        data.apply(SpanMutation::Inputs(r#"{"q":"hi"}"#.into()));
        data.apply(SpanMutation::Attribute("model".into(), "\"gpt\"".into()));
        data.apply(SpanMutation::Attribute("model".into(), "\"gpt-4o\"".into()));
        data.end_at(data.start_ns + 10);
        let span = data.into_span(TraceId([2; 16]));
        let keys: Vec<_> = span.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [keys::TRACE_REQUEST_ID, keys::SPAN_TYPE, "model", keys::SPAN_FUNCTION_NAME, keys::SPAN_INPUTS, keys::SPAN_LOG_LEVEL]
        );
        assert_eq!(span.attributes["model"].as_str(), "\"gpt-4o\"");
        assert_eq!(span.attributes[keys::SPAN_TYPE].as_str(), "\"AGENT\"");
        assert_eq!(span.attributes[keys::SPAN_LOG_LEVEL].as_str(), "20");
        assert_eq!(span.duration_ns(), Some(10));
    }
}
