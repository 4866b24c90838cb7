//! The codecs against real files written by the official MLflow clients (`shared/spec/fixtures`).

use std::path::PathBuf;

use mlflow_tracing_core::codec::otlp::{export_request, spans_from_request};
use mlflow_tracing_core::codec::span_json::{
    read_traces_json, write_traces_json_v2, write_traces_json_v3,
};
use mlflow_tracing_core::codec::trace_json::{
    DurationStyle, info_from_json, info_to_v2_json, info_to_v3_json,
};
use mlflow_tracing_core::otlp_proto::common::v1::any_value::Value as Native;
use mlflow_tracing_core::{
    EventAttributes, SpanStatusCode, SpanType, Trace, TraceId, TraceInfo, TraceLocation,
    TraceState, keys,
};
use prost::Message;
use serde_json::{Value, json};

/// `shared/spec/fixtures`, found beside the checkout (CI clones the repo with `shared/` next to it).
fn fixtures_dir() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .map(|ancestor| ancestor.join("shared/spec/fixtures"))
        .find(|candidate| candidate.is_dir())
        .expect("shared/spec/fixtures beside the checkout")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(name))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

#[test]
fn v3_traces_json_reads_the_pipeline_tree() {
    let data = read_traces_json(&fixture("sample-traces-v3.json")).unwrap();
    let names: Vec<_> = data.spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["pipeline", "retriever", "llm_call"]);
    let root = data.root().unwrap();
    assert_eq!(
        root.trace_id.to_mlflow(),
        "tr-6d4dc37a282172004e21c7faa01ee18a"
    );
    assert_eq!(root.span_type(), SpanType::Chain);
    assert_eq!(
        root.inputs(),
        Some(json!({"question": "what is mlflow?", "k": 2}))
    );
    assert_eq!(root.attribute("n"), Some(json!(3)));
    assert!(
        data.spans[1..]
            .iter()
            .all(|span| span.parent_id == Some(root.span_id))
    );
    let llm = &data.spans[2];
    assert_eq!(llm.span_type(), SpanType::ChatModel);
    assert_eq!(llm.events[0].name, "thinking");
    assert_eq!(llm.events[0].time_unix_nano, 1_795_478_312_559_774_976);
    assert_eq!(llm.events[0].attributes["note"], json!("hi"));
}

#[test]
fn v3_traces_json_writes_back_exactly_what_it_read() {
    for name in ["sample-traces-v3.json", "sample-traces-v3-error.json"] {
        let original = fixture(name);
        let data = read_traces_json(&original).unwrap();
        let written = write_traces_json_v3(&data);
        let original_value: Value = serde_json::from_str(&original).unwrap();
        let written_value: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(written_value, original_value, "{name}");
        assert_eq!(read_traces_json(&written).unwrap(), data, "{name}");
    }
}

#[test]
fn v3_error_span_keeps_status_and_exception_event() {
    let data = read_traces_json(&fixture("sample-traces-v3-error.json")).unwrap();
    let span = &data.spans[0];
    assert_eq!(span.status.code, SpanStatusCode::Error);
    assert_eq!(span.status.message, "ValueError: boom 7");
    let event = &span.events[0];
    assert_eq!(event.name, "exception");
    assert_eq!(event.attributes["exception.type"], json!("ValueError"));
    assert!(
        event.attributes["exception.stacktrace"]
            .as_str()
            .unwrap()
            .ends_with("ValueError: boom 7")
    );
}

#[test]
fn v2_traces_json_reads_hex_ids_and_microsecond_events() {
    let data = read_traces_json(&fixture("sample-traces-v2.json")).unwrap();
    let root = data.root().unwrap();
    assert_eq!(
        root.trace_id,
        TraceId::parse_any("e7446a023f85c9cf5dd68e84938a1508").unwrap()
    );
    assert_eq!(root.span_id.to_0x_hex(), "0x2018db81e4efcb92");
    assert_eq!(root.status.code, SpanStatusCode::Ok);
    assert_eq!(data.spans[2].parent_id, Some(root.span_id));
    // 2.13.1 wrote user event times in microseconds; they are read as nanoseconds.
    assert_eq!(
        data.spans[2].events[0].time_unix_nano,
        1_795_478_476_766_212_000
    );

    let rewritten = read_traces_json(&write_traces_json_v2(&data)).unwrap();
    assert_eq!(rewritten, data);
    let as_v3 = read_traces_json(&write_traces_json_v3(&data)).unwrap();
    assert_eq!(as_v3, data);
}

#[test]
fn v2_writer_carries_root_request_and_response() {
    let data = read_traces_json(&fixture("sample-traces-v2.json")).unwrap();
    let written: Value = serde_json::from_str(&write_traces_json_v2(&data)).unwrap();
    let original = fixture_json("sample-traces-v2.json");
    assert_eq!(written["request"], original["request"]);
    assert_eq!(written["response"], original["response"]);
    assert_eq!(
        written["spans"][1]["context"],
        original["spans"][1]["context"]
    );
}

#[test]
fn trace_to_json_round_trips_the_v3_files() {
    for name in ["get_trace_pipeline_v3.json", "get_trace_fail_v3.json"] {
        let original = fixture_json(name);
        let trace = Trace::from_json(&original.to_string()).unwrap();
        assert_eq!(trace.to_json_value(), original, "{name}");
        assert_eq!(Trace::from_json(&trace.to_json()).unwrap(), trace, "{name}");
    }
}

#[test]
fn trace_to_json_reads_the_v2_form() {
    let trace = Trace::from_json(&fixture("get_trace_pipeline_v2.json")).unwrap();
    assert_eq!(trace.info.trace_id, "88708866b3b648c6bb4cb7f2f7d64ec0");
    assert_eq!(trace.info.experiment_id(), Some("5"));
    assert_eq!(trace.info.request_time_ms, 1_795_478_476_698);
    assert_eq!(trace.info.execution_duration_ms, Some(67));
    assert_eq!(trace.info.state, TraceState::Ok);
    assert_eq!(trace.info.tags[keys::TAG_TRACE_NAME], "pipeline");
    assert_eq!(trace.data.spans.len(), 3);
    let rewritten = Trace::from_json(&trace.to_json()).unwrap();
    assert_eq!(rewritten.data, trace.data);
    assert_eq!(rewritten.info.tags, trace.info.tags);
}

#[test]
fn derived_info_matches_what_the_python_client_recorded() {
    for name in ["get_trace_pipeline_v3.json", "get_trace_fail_v3.json"] {
        let recorded = Trace::from_json(&fixture(name)).unwrap();
        let root = recorded.data.root().unwrap();
        let derived = TraceInfo::from_spans(
            root.trace_id,
            TraceLocation::experiment("1"),
            &recorded.data.spans,
        );
        assert_eq!(derived.trace_id, recorded.info.trace_id, "{name}");
        assert_eq!(derived.state, recorded.info.state, "{name}");
        assert_eq!(
            derived.request_time_ms, recorded.info.request_time_ms,
            "{name}"
        );
        assert_eq!(
            derived.execution_duration_ms, recorded.info.execution_duration_ms,
            "{name}"
        );
        assert_eq!(
            derived.request_preview, recorded.info.request_preview,
            "{name}"
        );
        assert_eq!(
            derived.response_preview, recorded.info.response_preview,
            "{name}"
        );
        for key in [
            keys::META_TRACE_INPUTS,
            keys::META_TRACE_OUTPUTS,
            keys::META_SCHEMA_VERSION,
        ] {
            assert_eq!(
                derived.trace_metadata.get(key),
                recorded.info.trace_metadata.get(key),
                "{name} {key}"
            );
        }
        assert_eq!(
            derived.tags[keys::TAG_TRACE_NAME],
            recorded.info.tags[keys::TAG_TRACE_NAME]
        );
    }
}

#[test]
fn rest_trace_info_round_trips_both_versions() {
    let v3 =
        fixture_json("wire/v3_get_trace_info.json")["resp_body"]["trace"]["trace_info"].clone();
    let info = info_from_json(&v3).unwrap();
    assert_eq!(info.execution_duration_ms, Some(83));
    assert_eq!(info.trace_metadata[keys::META_SESSION], "sess-1");
    assert_eq!(info_to_v3_json(&info, DurationStyle::ProtoDuration), v3);

    let v2 = fixture_json("wire/v2_get_trace_info.json")["resp_body"]["trace_info"].clone();
    let info = info_from_json(&v2).unwrap();
    assert_eq!(info.trace_id, "88708866b3b648c6bb4cb7f2f7d64ec0");
    let written = info_to_v2_json(&info);
    for field in [
        "request_id",
        "experiment_id",
        "timestamp_ms",
        "execution_time_ms",
        "status",
    ] {
        assert_eq!(written[field], v2[field], "{field}");
    }
    let sorted = |value: &Value| {
        let mut pairs = value.as_array().unwrap().clone();
        pairs.sort_by_key(|pair| pair["key"].as_str().unwrap().to_owned());
        pairs
    };
    assert_eq!(sorted(&written["tags"]), sorted(&v2["tags"]));
    assert_eq!(
        sorted(&written["request_metadata"]),
        sorted(&v2["request_metadata"])
    );
}

#[test]
fn otlp_round_trip_is_lossless_and_uses_native_values() {
    let data = read_traces_json(&fixture("sample-traces-v3.json")).unwrap();
    let mut resource = EventAttributes::new();
    resource.insert("telemetry.sdk.name".into(), json!("mlflow"));
    let request = export_request(&data.spans, &resource);

    let root = &request.resource_spans[0].scope_spans[0].spans[0];
    let native = |key: &str| {
        root.attributes
            .iter()
            .find(|kv| kv.key == key)
            .unwrap()
            .value
            .clone()
            .unwrap()
            .value
            .unwrap()
    };
    assert_eq!(native(keys::SPAN_TYPE), Native::StringValue("CHAIN".into()));
    assert_eq!(native("n"), Native::IntValue(3));
    match native(keys::SPAN_INPUTS) {
        Native::KvlistValue(list) => {
            let keys: Vec<_> = list.values.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["question", "k"]);
        }
        other => panic!("inputs should be a kvlist, got {other:?}"),
    }

    let bytes = request.encode_to_vec();
    let decoded =
        mlflow_tracing_core::otlp_proto::collector::trace::v1::ExportTraceServiceRequest::decode(
            bytes.as_slice(),
        )
        .unwrap();
    let batches = spans_from_request(&decoded).unwrap();
    assert_eq!(batches[0].resource_attributes, resource);
    assert_eq!(batches[0].spans, data.spans);
}

#[test]
fn otlp_json_string_inputs_are_parsed_into_structure() {
    let data = read_traces_json(&fixture("sample-traces-v3.json")).unwrap();
    let mut request = export_request(&data.spans[..1], &EventAttributes::new());
    let root = &mut request.resource_spans[0].scope_spans[0].spans[0];
    let inputs = root
        .attributes
        .iter_mut()
        .find(|kv| kv.key == keys::SPAN_INPUTS)
        .unwrap();
    inputs.value.as_mut().unwrap().value =
        Some(Native::StringValue(r#"{"question": "q", "k": 1}"#.into()));
    let outputs = root
        .attributes
        .iter_mut()
        .find(|kv| kv.key == keys::SPAN_OUTPUTS)
        .unwrap();
    outputs.value.as_mut().unwrap().value = Some(Native::StringValue("plain answer".into()));

    let span = &spans_from_request(&request).unwrap()[0].spans[0];
    assert_eq!(span.inputs(), Some(json!({"question": "q", "k": 1})));
    assert_eq!(span.outputs(), Some(json!("plain answer")));
}

#[test]
fn otlp_ids_of_the_wrong_length_are_errors() {
    let data = read_traces_json(&fixture("sample-traces-v3.json")).unwrap();
    let mut request = export_request(&data.spans[..1], &EventAttributes::new());
    request.resource_spans[0].scope_spans[0].spans[0]
        .trace_id
        .truncate(5);
    let error = spans_from_request(&request).unwrap_err();
    assert!(error.to_string().contains("trace_id"), "{error}");
}

#[test]
fn malformed_documents_are_errors_not_panics() {
    assert!(read_traces_json("{").is_err());
    assert!(read_traces_json(r#"{"spans": [1]}"#).is_err());
    assert!(read_traces_json(r#"{"spans": [{"name": "x"}]}"#).is_err());
    let bad_time = r#"{"spans": [{"trace_id": "bU3DeighcgBOIcf6oB7hig==", "span_id": "bvjA2KQNtNo=", "name": "x", "start_time_unix_nano": "soon"}]}"#;
    let error = read_traces_json(bad_time).unwrap_err();
    assert!(
        error.to_string().contains("start_time_unix_nano"),
        "{error}"
    );
    assert!(
        Trace::from_json(
            r#"{"info": {"trace_id": "tr-1", "request_time": "yesterday"}, "data": {"spans": []}}"#
        )
        .is_err()
    );
}

#[test]
fn rest_spans_are_written_as_the_server_returns_them_and_read_back() {
    use mlflow_tracing_core::codec::rest_span::{span_from_rest_json, span_to_rest_json};
    let captured =
        fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"]["trace"]["spans"].clone();
    for rest in captured.as_array().unwrap() {
        let span = span_from_rest_json(rest).unwrap();
        assert_eq!(span_to_rest_json(&span), *rest, "{}", span.name);
    }
    let root = span_from_rest_json(&captured[0]).unwrap();
    assert_eq!(
        root.inputs(),
        Some(json!({"question": "what is mlflow?", "k": 2}))
    );
    assert_eq!(root.span_type(), SpanType::Chain);
}

/// A span with every kind of attribute value, an event, a link and an error status: the REST text is compact
/// JSON in the field order a serialized `Value` has, holds each value natively, and reads back to the span.
#[test]
fn rest_span_text_holds_every_value_kind_and_reads_back() {
    use mlflow_tracing_core::codec::otlp::span_from_otlp;
    use mlflow_tracing_core::codec::rest_span::{span_from_rest_json, span_to_rest_text};
    use mlflow_tracing_core::otlp_proto::common::v1::{
        AnyValue, ArrayValue, KeyValue, KeyValueList,
    };
    use mlflow_tracing_core::otlp_proto::trace::v1 as proto;

    let value = |native: Native| {
        Some(AnyValue {
            value: Some(native),
        })
    };
    let attribute = |key: &str, native: Native| KeyValue {
        key: key.into(),
        value: value(native),
    };
    let otlp = proto::Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        parent_span_id: vec![0xef; 8],
        name: "tool \"call\"\n".into(),
        start_time_unix_nano: 1_795_000_000_000_000_001,
        end_time_unix_nano: 1_795_000_000_500_000_000,
        attributes: vec![
            attribute("s", Native::StringValue("line one\nline \"two\" ✓".into())),
            attribute("b", Native::BoolValue(true)),
            attribute("i", Native::IntValue(-7)),
            attribute("d", Native::DoubleValue(0.1)),
            attribute(
                "list",
                Native::ArrayValue(ArrayValue {
                    values: vec![
                        value(Native::IntValue(1)).unwrap(),
                        value(Native::StringValue("x".into())).unwrap(),
                    ],
                }),
            ),
            attribute(
                "map",
                Native::KvlistValue(KeyValueList {
                    values: vec![attribute("k", Native::DoubleValue(2.5))],
                }),
            ),
        ],
        events: vec![
            proto::span::Event {
                time_unix_nano: 1_795_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![attribute(
                    "exception.message",
                    Native::StringValue("boom".into()),
                )],
                dropped_attributes_count: 0,
            },
            proto::span::Event {
                time_unix_nano: 1_795_000_000_200_000_000,
                name: "tick".into(),
                ..Default::default()
            },
        ],
        links: vec![proto::span::Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }],
        status: Some(proto::Status {
            code: proto::status::StatusCode::Error as i32,
            message: "boom".into(),
        }),
        ..Default::default()
    };
    let span = span_from_otlp(&otlp).unwrap();
    let text = span_to_rest_text(&span);
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::to_string(&parsed).unwrap(),
        text,
        "compact, in serialization order"
    );
    let fields: Vec<&str> = parsed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "trace_id",
            "span_id",
            "parent_span_id",
            "name",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "attributes",
            "events",
            "links",
            "status"
        ]
    );
    assert_eq!(parsed["trace_id"], "q6urq6urq6urq6urq6urqw==");
    assert_eq!(parsed["name"], "tool \"call\"\n");
    assert_eq!(
        parsed["start_time_unix_nano"],
        1_795_000_000_000_000_001_u64
    );
    let attribute_value = |key: &str| {
        parsed["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["key"] == key)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(
        attribute_value("s"),
        json!({"string_value": "line one\nline \"two\" ✓"})
    );
    assert_eq!(attribute_value("b"), json!({"bool_value": true}));
    assert_eq!(attribute_value("i"), json!({"int_value": -7}));
    assert_eq!(attribute_value("d"), json!({"double_value": 0.1}));
    assert_eq!(
        attribute_value("list"),
        json!({"array_value": {"values": [{"int_value": 1}, {"string_value": "x"}]}})
    );
    assert_eq!(
        attribute_value("map"),
        json!({"kvlist_value": {"values": [{"key": "k", "value": {"double_value": 2.5}}]}})
    );
    assert_eq!(
        parsed["events"],
        json!([{"time_unix_nano": 1_795_000_000_100_000_000_u64, "name": "exception",
                "attributes": [{"key": "exception.message", "value": {"string_value": "boom"}}]},
               {"time_unix_nano": 1_795_000_000_200_000_000_u64, "name": "tick"}])
    );
    assert_eq!(
        parsed["links"],
        json!([{"trace_id": "AQEBAQEBAQEBAQEBAQEBAQ==", "span_id": "AgICAgICAgI=", "attributes": []}])
    );
    assert_eq!(
        parsed["status"],
        json!({"code": "STATUS_CODE_ERROR", "message": "boom"})
    );
    assert_eq!(span_from_rest_json(&parsed).unwrap(), span);
}
