//! The state of one span while it is recorded, kept small and cheap to build.
//!
//! Static parts (the name, type and attributes given to `#[trace]`) are borrowed `&'static str`; payloads are
//! JSON text produced once. The conversion to the model's [`Span`] (attribute maps, reserved keys) happens on
//! the export thread, not on the caller's.

use std::borrow::Cow;

use mlflow_tracing_core::{
    Attributes, JsonText, Span, SpanEvent, SpanId, SpanStatus, SpanStatusCode, SpanType, TraceId,
    keys,
};

use crate::__private::FnMeta;
use crate::arena::{PayloadText, SharedBuffer};

/// Text that is usually static.
pub(crate) type Text = Cow<'static, str>;

/// The fields every span has; attributes, events and a status message are kept beside the span (see
/// [`Extra`]), so the struct stays small and allocation-free: it is moved onto the thread's stack, off it, and
/// into the trace.
#[derive(Debug)]
pub(crate) struct SpanData {
    pub(crate) span_id: SpanId,
    pub(crate) parent_id: Option<SpanId>,
    pub(crate) status_code: SpanStatusCode,
    pub(crate) name: Text,
    pub(crate) span_type: Text,
    /// The `#[trace]` function the span records: its name and static attributes.
    pub(crate) function: Option<&'static FnMeta>,
    pub(crate) start_ns: u64,
    /// 0 while the span is open.
    pub(crate) end_ns: u64,
    pub(crate) inputs: Option<PayloadText>,
    pub(crate) outputs: Option<PayloadText>,
}

/// What only some spans have, kept in a list beside the spans: the thread's while the span is on its stack,
/// the trace's after.
#[derive(Debug)]
pub(crate) enum Extra {
    Attribute(Text, PayloadText),
    /// Boxed: events are rare, and attributes, one per `set_attribute`, then move half as many bytes.
    Event(Box<SpanEvent>),
    StatusMessage(String),
}

impl Extra {
    pub(crate) fn detach(self) -> Extra {
        match self {
            Extra::Attribute(key, payload) => Extra::Attribute(key, payload.detach()),
            other => other,
        }
    }

    pub(crate) fn move_payload_to_trace(
        &mut self,
        scratch: Option<&[u8]>,
        trace_arena: &mut Vec<u8>,
    ) {
        if let Extra::Attribute(_, payload) = self {
            payload.move_to_trace(scratch, trace_arena);
        }
    }
}

/// One change to a span, wherever the span is held.
#[derive(Debug)]
pub(crate) enum SpanMutation {
    Inputs(PayloadText),
    Outputs(PayloadText),
    Attribute(Text, PayloadText),
    SpanType(Text),
    Event(Box<SpanEvent>),
    Status(SpanStatusCode, Option<String>),
}

impl SpanMutation {
    /// Makes every scratch payload a string of its own, for a span that will not end on this thread's stack.
    pub(crate) fn detach(self) -> SpanMutation {
        match self {
            SpanMutation::Inputs(payload) => SpanMutation::Inputs(payload.detach()),
            SpanMutation::Outputs(payload) => SpanMutation::Outputs(payload.detach()),
            SpanMutation::Attribute(key, payload) => SpanMutation::Attribute(key, payload.detach()),
            other => other,
        }
    }
}

impl SpanData {
    /// A span that started at `start_ns`. Inlined, so that the span is written where it is kept (its
    /// frame) instead of built, then copied.
    #[inline]
    pub(crate) fn new(
        span_id: SpanId,
        parent_id: Option<SpanId>,
        name: Text,
        span_type: Text,
        start_ns: u64,
    ) -> Self {
        SpanData {
            span_id,
            parent_id,
            name,
            span_type,
            function: None,
            start_ns,
            end_ns: 0,
            status_code: SpanStatusCode::Unset,
            inputs: None,
            outputs: None,
        }
    }

    /// Applies the part of a change kept in the span; returns the part kept beside it. Inlined: a caller
    /// that knows the kind of change keeps one arm and moves its payload once.
    #[must_use]
    #[inline]
    pub(crate) fn apply(&mut self, mutation: SpanMutation) -> Option<Extra> {
        match mutation {
            SpanMutation::Inputs(json) => self.inputs = Some(json),
            SpanMutation::Outputs(json) => self.outputs = Some(json),
            SpanMutation::Attribute(key, json) => return Some(Extra::Attribute(key, json)),
            SpanMutation::SpanType(span_type) => self.span_type = span_type,
            SpanMutation::Event(event) => return Some(Extra::Event(event)),
            SpanMutation::Status(code, message) => {
                self.status_code = code;
                return message.map(Extra::StatusMessage);
            }
        }
        None
    }

    /// Copies the payloads still in the thread's scratch into the trace's arena.
    pub(crate) fn move_payloads_to_trace(
        &mut self,
        scratch: Option<&[u8]>,
        trace_arena: &mut Vec<u8>,
    ) {
        for payload in self.inputs.iter_mut().chain(self.outputs.iter_mut()) {
            payload.move_to_trace(scratch, trace_arena);
        }
    }

    /// Ends the span; a span that ends without a status set is OK, as in MLflow.
    pub(crate) fn end_at(&mut self, end_ns: u64) {
        if self.end_ns == 0 {
            self.end_ns = end_ns.max(self.start_ns);
        }
        if self.status_code == SpanStatusCode::Unset {
            self.status_code = SpanStatusCode::Ok;
        }
    }

    /// The model's span, with MLflow's reserved attributes in the order the Python client writes them.
    /// `request_id_json` is the trace id as JSON text, computed once per trace; `arena` and `root_scratch`
    /// hold the payloads; `extras` are this span's attributes, events and status message, oldest first.
    pub(crate) fn into_span(
        self,
        trace_id: TraceId,
        request_id_json: &JsonText,
        (arena, root_scratch): (&SharedBuffer<'_>, &SharedBuffer<'_>),
        extras: impl ExactSizeIterator<Item = Extra>,
    ) -> Span {
        let span_type = SpanType::parse(&self.span_type);
        let static_attributes = self
            .function
            .map_or(&[][..], |function| function.attributes);
        let mut attributes = Attributes::with_capacity_and_hasher(
            static_attributes.len() + extras.len() + 6,
            Default::default(),
        );
        attributes.insert(keys::TRACE_REQUEST_ID.into(), request_id_json.clone());
        attributes.insert(keys::SPAN_TYPE.into(), span_type.to_json());
        for (key, json) in static_attributes {
            attributes.insert((*key).into(), JsonText::from_static(json));
        }
        let mut events = Vec::new();
        let mut status_message = String::new();
        for extra in extras {
            match extra {
                Extra::Attribute(key, json) => {
                    attributes.insert(key, json.into_json_text(arena, root_scratch));
                }
                Extra::Event(event) => events.push(*event),
                Extra::StatusMessage(message) => status_message = message,
            }
        }
        if let Some(function) = self.function {
            attributes.insert(
                keys::SPAN_FUNCTION_NAME.into(),
                JsonText::from_static(function.function_name_json),
            );
        }
        if let Some(inputs) = self.inputs {
            attributes.insert(
                keys::SPAN_INPUTS.into(),
                inputs.into_json_text(arena, root_scratch),
            );
        }
        if let Some(outputs) = self.outputs {
            attributes.insert(
                keys::SPAN_OUTPUTS.into(),
                outputs.into_json_text(arena, root_scratch),
            );
        }
        if !attributes.contains_key(keys::SPAN_LOG_LEVEL) {
            let level = match span_type.default_log_level(self.status_code) {
                10 => JsonText::from_static("10"),
                20 => JsonText::from_static("20"),
                40 => JsonText::from_static("40"),
                other => JsonText::from_raw(other.to_string()),
            };
            attributes.insert(keys::SPAN_LOG_LEVEL.into(), level);
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
                message: status_message,
            },
            attributes,
            events,
            links: Vec::new(),
        }
    }
}

/// The attribute `key` among a span's static attributes and extras (the last one set wins).
pub(crate) fn find_attribute<'a>(
    data: &'a SpanData,
    extras: impl DoubleEndedIterator<Item = &'a Extra>,
    key: &str,
    arena: &[u8],
) -> Option<String> {
    let dynamic = extras.rev().find_map(|extra| match extra {
        Extra::Attribute(existing, json) if existing == key => Some(json.to_string_in(arena)),
        _ => None,
    });
    dynamic.or_else(|| {
        data.function?
            .attributes
            .iter()
            .find(|(existing, _)| *existing == key)
            .map(|(_, json)| (*json).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_data_stays_small() {
        // The per-span memory target is 300 bytes before payloads; keep the fixed part well under it.
        assert!(
            std::mem::size_of::<SpanData>() <= 144,
            "{}",
            std::mem::size_of::<SpanData>()
        );
        // An attribute is a key and a payload; nothing rarer makes every extra larger.
        assert_eq!(
            std::mem::size_of::<Extra>(),
            std::mem::size_of::<(Text, PayloadText)>()
        );
    }

    #[test]
    fn conversion_writes_reserved_attributes_as_json_text() {
        let mut data = SpanData::new(SpanId([1; 8]), None, "agent".into(), "AGENT".into(), 1_000);
        static RUN_AGENT: FnMeta = FnMeta {
            name: "agent",
            function_name_json: "\"run_agent\"",
            span_type: "AGENT",
            attributes: &[("team", "\"rust\"")],
        };
        data.function = Some(&RUN_AGENT);
        assert!(
            data.apply(SpanMutation::Inputs(PayloadText::Owned(
                r#"{"q":"hi"}"#.into()
            )))
            .is_none()
        );
        let extras: Vec<_> = [
            SpanMutation::Attribute("model".into(), PayloadText::Static("\"gpt\"")),
            SpanMutation::Attribute("model".into(), PayloadText::Owned("\"gpt-4o\"".into())),
        ]
        .into_iter()
        .filter_map(|mutation| data.apply(mutation))
        .collect();
        data.end_at(data.start_ns + 10);
        let trace_id = TraceId([2; 16]);
        let span = data.into_span(
            trace_id,
            &JsonText::from_str_value(&trace_id.to_mlflow()),
            (&SharedBuffer::new(&[]), &SharedBuffer::new(&[])),
            extras.into_iter(),
        );
        let keys: Vec<_> = span.attributes.keys().map(|key| key.as_ref()).collect();
        assert_eq!(
            keys,
            [
                keys::TRACE_REQUEST_ID,
                keys::SPAN_TYPE,
                "team",
                "model",
                keys::SPAN_FUNCTION_NAME,
                keys::SPAN_INPUTS,
                keys::SPAN_LOG_LEVEL
            ]
        );
        assert_eq!(span.attributes["model"].as_str(), "\"gpt-4o\"");
        assert_eq!(span.attributes[keys::SPAN_TYPE].as_str(), "\"AGENT\"");
        assert_eq!(
            span.attributes[keys::SPAN_FUNCTION_NAME].as_str(),
            "\"run_agent\""
        );
        assert_eq!(span.attributes[keys::SPAN_LOG_LEVEL].as_str(), "20");
        assert_eq!(span.duration_ns(), Some(10));
    }
}
