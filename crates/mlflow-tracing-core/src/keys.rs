//! Reserved attribute, tag and metadata keys, and the size limits MLflow applies to them.

/// Span attribute: the trace id (`tr-…`), JSON-encoded.
pub const TRACE_REQUEST_ID: &str = "mlflow.traceRequestId";
/// Span attribute: the span type, JSON-encoded.
pub const SPAN_TYPE: &str = "mlflow.spanType";
/// Span attribute: the span's inputs as JSON.
pub const SPAN_INPUTS: &str = "mlflow.spanInputs";
/// Span attribute: the span's outputs as JSON.
pub const SPAN_OUTPUTS: &str = "mlflow.spanOutputs";
/// Span attribute: the traced function's name.
pub const SPAN_FUNCTION_NAME: &str = "mlflow.spanFunctionName";
/// Span attribute: the experiment, when given explicitly.
pub const SPAN_EXPERIMENT_ID: &str = "mlflow.experimentId";
/// Span attribute: the log level (10, 20, 30, 40, 50).
pub const SPAN_LOG_LEVEL: &str = "mlflow.spanLogLevel";
/// Span attribute: token usage of one LLM call, `{input_tokens, output_tokens, total_tokens}`.
pub const CHAT_TOKEN_USAGE: &str = "mlflow.chat.tokenUsage";
/// Span attribute: the tools offered to a chat model.
pub const CHAT_TOOLS: &str = "mlflow.chat.tools";
/// Span attribute: the model name of an LLM call.
pub const LLM_MODEL: &str = "mlflow.llm.model";
/// Span attribute: on a root span sent over OTLP, `mlflow.traceTag.<k>` becomes trace tag `<k>`.
pub const TRACE_TAG_PREFIX: &str = "mlflow.traceTag.";
/// Event attribute of a stream chunk event `mlflow.chunk.item.<i>`.
pub const CHUNK_VALUE: &str = "mlflow.chunk.value";
/// Name prefix of stream chunk events.
pub const CHUNK_EVENT_PREFIX: &str = "mlflow.chunk.item.";

/// Trace tag: the root span's name.
pub const TAG_TRACE_NAME: &str = "mlflow.traceName";
/// Trace tag set by the server: where the artifacts live.
pub const TAG_ARTIFACT_LOCATION: &str = "mlflow.artifactLocation";
/// Trace tag set by the server: `TRACKING_STORE` when the spans are in its database.
pub const TAG_SPANS_LOCATION: &str = "mlflow.trace.spansLocation";

/// Trace metadata: the root inputs, truncated to [`MAX_METADATA_VALUE_CHARS`].
pub const META_TRACE_INPUTS: &str = "mlflow.traceInputs";
/// Trace metadata: the root outputs, truncated to [`MAX_METADATA_VALUE_CHARS`].
pub const META_TRACE_OUTPUTS: &str = "mlflow.traceOutputs";
/// Trace metadata: the schema version, `"3"`.
pub const META_SCHEMA_VERSION: &str = "mlflow.trace_schema.version";
/// Trace metadata: token usage summed over the spans.
pub const META_TOKEN_USAGE: &str = "mlflow.trace.tokenUsage";
/// Trace metadata: the conversation this trace belongs to.
pub const META_SESSION: &str = "mlflow.trace.session";
/// Trace metadata: the end user of this trace.
pub const META_USER: &str = "mlflow.trace.user";
/// Trace metadata: the size of the serialized trace in bytes.
pub const META_SIZE_BYTES: &str = "mlflow.trace.sizeBytes";
/// Trace metadata: where the trace was produced.
pub const META_SOURCE_NAME: &str = "mlflow.source.name";
/// Trace metadata: `LOCAL`, `NOTEBOOK`, …
pub const META_SOURCE_TYPE: &str = "mlflow.source.type";
/// Trace metadata set by the server on StartTraceV3.
pub const META_INFO_FINALIZED: &str = "mlflow.trace.infoFinalized";

/// The schema version this crate writes.
pub const TRACE_SCHEMA_VERSION: &str = "3";
/// Request and response previews are cut to this many characters (OSS MLflow).
pub const MAX_PREVIEW_CHARS: usize = 1000;
/// Metadata values are cut to this many characters.
pub const MAX_METADATA_VALUE_CHARS: usize = 250;
/// Tag values are cut to this many characters (MLflow 3.x).
pub const MAX_TAG_VALUE_CHARS: usize = 4096;

/// Cuts `text` to at most `max_chars` characters, ending in `...` when it was cut, as MLflow does.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    const ELLIPSIS: &str = "...";
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some(_) => {
            let keep = max_chars.saturating_sub(ELLIPSIS.len());
            let end = text
                .char_indices()
                .nth(keep)
                .map_or(text.len(), |(index, _)| index);
            format!("{}{ELLIPSIS}", &text[..end])
        }
    }
}

/// The span attribute keys MLflow reserves, which nearly every span carries.
const SPAN_ATTRIBUTE_KEYS: [&str; 10] = [
    TRACE_REQUEST_ID,
    SPAN_TYPE,
    SPAN_INPUTS,
    SPAN_OUTPUTS,
    SPAN_FUNCTION_NAME,
    SPAN_EXPERIMENT_ID,
    SPAN_LOG_LEVEL,
    CHAT_TOKEN_USAGE,
    CHAT_TOOLS,
    LLM_MODEL,
];

/// An attribute key read from the wire: borrowed when it is one of MLflow's reserved keys, so decoding a span
/// allocates only for its own keys.
pub fn attribute_key(key: &str) -> crate::span::AttributeKey {
    match SPAN_ATTRIBUTE_KEYS
        .iter()
        .find(|reserved| **reserved == key)
    {
        Some(reserved) => std::borrow::Cow::Borrowed(reserved),
        None => std::borrow::Cow::Owned(key.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_text_and_marks_cut_text() {
        assert_eq!(truncate_chars("short", 10), "short");
        assert_eq!(truncate_chars("0123456789", 10), "0123456789");
        let cut = truncate_chars("0123456789ab", 10);
        assert_eq!(cut, "0123456...");
        assert_eq!(cut.chars().count(), 10);
        assert_eq!(truncate_chars("ééééé", 4), "é...");
    }

    #[test]
    fn reserved_attribute_keys_are_borrowed_and_others_owned() {
        for key in [SPAN_INPUTS, SPAN_TYPE, TRACE_REQUEST_ID] {
            assert!(matches!(attribute_key(key), std::borrow::Cow::Borrowed(k) if k == key));
        }
        assert!(matches!(attribute_key("user.key"), std::borrow::Cow::Owned(k) if k == "user.key"));
        assert!(matches!(
            attribute_key("mlflow.spanInput"),
            std::borrow::Cow::Owned(k) if k == "mlflow.spanInput"
        ));
    }
}
