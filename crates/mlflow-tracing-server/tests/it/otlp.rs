//! OTLP/HTTP ingest: encodings, the experiment header, and bad input.

use std::io::Write;

use axum::body::Body;
use axum::http::Request;
use mlflow_tracing_core::EventAttributes;
use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::codec::rest_span::span_from_rest_json;
use prost::Message;
use serde_json::json;

use crate::harness::{fixture_json, server};

fn request_bytes() -> Vec<u8> {
    let rest =
        fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"]["trace"]["spans"].clone();
    let spans: Vec<_> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span_from_rest_json(span).unwrap())
        .collect();
    let mut resource = EventAttributes::new();
    resource.insert("service.name".into(), json!("qa-service"));
    resource.insert("telemetry.sdk.name".into(), json!("mlflow"));
    export_request(&spans, &resource).encode_to_vec()
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_resource_attributes_become_tags() {
    let server = server();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&request_bytes()).unwrap();
    let request = Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .header("x-mlflow-experiment-id", "0")
        .body(Body::from(encoder.finish().unwrap()))
        .unwrap();
    let reply = server.send(request).await;
    reply.assert_ok("");
    let info = server
        .get("/api/3.0/mlflow/traces/tr-aa7857ae0d3b3f1af1eb27c38f63c9aa")
        .await
        .json();
    let tags = &info["trace"]["trace_info"]["tags"];
    assert_eq!(tags["service.name"], "qa-service");
    assert!(tags.get("telemetry.sdk.name").is_none());
    assert_eq!(
        info["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"],
        "0"
    );
}

#[tokio::test]
async fn bad_otlp_requests_are_4xx_with_mlflows_error_json() {
    let server = server();
    // (headers, body, a word the error message must contain)
    type Case = (Vec<(&'static str, &'static str)>, Vec<u8>, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![("content-type", "application/x-protobuf")],
            request_bytes(),
            "x-mlflow-experiment-id",
        ),
        (
            vec![
                ("content-type", "application/x-protobuf"),
                ("x-mlflow-experiment-id", "0"),
            ],
            b"\xff\xfe garbage".to_vec(),
            "protobuf",
        ),
        (
            vec![
                ("content-type", "application/x-protobuf"),
                ("x-mlflow-experiment-id", "0"),
            ],
            Vec::new(),
            "no spans",
        ),
        (
            vec![
                ("content-type", "text/csv"),
                ("x-mlflow-experiment-id", "0"),
            ],
            request_bytes(),
            "Content-Type",
        ),
        (
            vec![
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
                ("x-mlflow-experiment-id", "0"),
            ],
            b"not gzip".to_vec(),
            "decompress",
        ),
        (
            vec![
                ("content-type", "application/x-protobuf"),
                ("x-mlflow-experiment-id", "42"),
            ],
            request_bytes(),
            "Experiment",
        ),
    ];
    for (headers, body, expected) in cases {
        let mut request = Request::post("/v1/traces");
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let reply = server.send(request.body(Body::from(body)).unwrap()).await;
        assert!(
            reply.status.is_client_error(),
            "{headers:?}: {}",
            reply.status
        );
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{headers:?}: {message}");
    }
    let traces = server
        .json(
            "POST",
            "/api/3.0/mlflow/traces/search",
            &json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]}),
        )
        .await
        .json();
    assert_eq!(
        traces["traces"].as_array().map(Vec::len),
        Some(0),
        "nothing half-stored"
    );
}

#[tokio::test]
async fn a_span_with_a_short_trace_id_is_rejected_whole() {
    let server = server();
    let rest =
        fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"]["trace"]["spans"].clone();
    let spans: Vec<_> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span_from_rest_json(span).unwrap())
        .collect();
    let mut request = export_request(&spans, &EventAttributes::new());
    request.resource_spans[0].scope_spans[0].spans[2]
        .trace_id
        .truncate(4);
    let reply = server
        .send(
            Request::post("/v1/traces")
                .header("content-type", "application/x-protobuf")
                .header("x-mlflow-experiment-id", "0")
                .body(Body::from(request.encode_to_vec()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        server
            .get("/api/3.0/mlflow/traces/tr-aa7857ae0d3b3f1af1eb27c38f63c9aa")
            .await
            .status
            == 404
    );
}

#[tokio::test]
async fn otlp_json_with_hex_ids_and_string_payloads_becomes_a_trace() {
    let server = server();
    // What an OpenTelemetry SDK's JSON exporter sends: hex ids, int64 as strings, inputs as a JSON string.
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-agent"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "agent",
             "startTimeUnixNano": "1795478356869662811", "endTimeUnixNano": "1795478356952828474", "kind": 1,
             "attributes": [
                {"key": "mlflow.spanType", "value": {"stringValue": "AGENT"}},
                {"key": "mlflow.spanInputs", "value": {"stringValue": "{\"question\": \"hi\"}"}},
                {"key": "session.id", "value": {"stringValue": "s-9"}}],
             "status": {"code": 1}},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
             "parentSpanId": "eee19b7ec3c1b174", "name": "tool",
             "startTimeUnixNano": "1795478356870000000", "endTimeUnixNano": "1795478356871000000",
             "attributes": [{"key": "retries", "value": {"intValue": "2"}}], "status": {"code": 2, "message": "timeout"}}
        ]}]
    }]});
    let request = Request::post("/v1/traces")
        .header("content-type", "application/json")
        .header("x-mlflow-experiment-id", "0")
        .body(Body::from(body.to_string()))
        .unwrap();
    let reply = server.send(request).await;
    reply.assert_ok("");
    let trace_id = "tr-5b8efff798038103d269b633813fc60c";
    let got = server
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={trace_id}"))
        .await
        .json();
    let info = &got["trace"]["trace_info"];
    assert_eq!(info["state"], "OK");
    assert_eq!(info["tags"]["service.name"], "json-agent");
    assert_eq!(info["trace_metadata"]["mlflow.trace.session"], "s-9");
    let spans = got["trace"]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let inputs = spans[0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "mlflow.spanInputs")
        .unwrap();
    assert_eq!(
        inputs["value"],
        json!({"kvlist_value": {"values": [{"key": "question", "value": {"string_value": "hi"}}]}})
    );
    assert_eq!(
        spans[1]["status"],
        json!({"code": "STATUS_CODE_ERROR", "message": "timeout"})
    );

    let malformed = Request::post("/v1/traces")
        .header("content-type", "application/json")
        .header("x-mlflow-experiment-id", "0")
        .body(Body::from(
            r#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex"}]}]}]}"#,
        ))
        .unwrap();
    let reply = server.send(malformed).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("OTLP/JSON")
    );
}
