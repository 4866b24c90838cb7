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
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
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
