//! Bad input of every shape gets a 4xx with MLflow's error JSON, never a 5xx, and loses nothing stored.

use axum::body::Body;
use axum::http::Request;
use mlflow_tracing_core::EventAttributes;
use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::codec::rest_span::span_from_rest_json;
use mlflow_tracing_server::router;
use mlflow_tracing_server::store::sqlite::SqliteStore;
use prost::Message;
use tower::ServiceExt;

use crate::harness::{TestServer, fixture_json, server, server_with_experiments};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn valid_otlp() -> Vec<u8> {
    let rest =
        fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"]["trace"]["spans"].clone();
    let spans: Vec<_> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span_from_rest_json(span).unwrap())
        .collect();
    export_request(&spans, &EventAttributes::new()).encode_to_vec()
}

async fn post_otlp(server: &TestServer, body: Vec<u8>) -> (u16, Vec<u8>) {
    let request = Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .header("x-mlflow-experiment-id", "0")
        .body(Body::from(body))
        .unwrap();
    let reply = server.send(request).await;
    (reply.status.as_u16(), reply.body.to_vec())
}

#[tokio::test]
async fn random_and_mutated_otlp_bodies_never_make_a_5xx() {
    let server = server();
    let valid = valid_otlp();
    let mut random = Random(0x5eed_1234_abcd_0001);
    for round in 0..400 {
        let body = if round % 2 == 0 {
            (0..random.below(300))
                .map(|_| random.next() as u8)
                .collect()
        } else {
            let mut mutated = valid.clone();
            for _ in 0..1 + random.below(8) {
                let position = random.below(mutated.len());
                mutated[position] = random.next() as u8;
            }
            if random.below(4) == 0 {
                mutated.truncate(random.below(mutated.len()));
            }
            mutated
        };
        let (status, reply) = post_otlp(&server, body).await;
        assert!(
            status == 200 || (400..500).contains(&status),
            "round {round}: HTTP {status}"
        );
        if status != 200 {
            let error: serde_json::Value = serde_json::from_slice(&reply).expect("error JSON");
            assert!(
                error["error_code"].is_string() && error["message"].is_string(),
                "round {round}: {error}"
            );
        }
    }
    let (status, _) = post_otlp(&server, valid).await;
    assert_eq!(status, 200, "the server still takes good spans");
}

#[tokio::test]
async fn mutated_json_bodies_never_make_a_5xx() {
    let server = server_with_experiments(2).await;
    let valid = fixture_json("wire/v3_start_trace_v3_pipeline.json")["req_body"]
        .to_string()
        .into_bytes();
    let mut random = Random(0x0dd_ba11_cafe_f00d);
    let routes = [
        ("POST", "/api/3.0/mlflow/traces"),
        ("POST", "/api/3.0/mlflow/traces/search"),
        ("POST", "/api/2.0/mlflow/experiments/create"),
        ("POST", "/api/2.0/mlflow/traces"),
        ("POST", "/api/2.0/mlflow/traces/delete-traces"),
        (
            "PATCH",
            "/api/2.0/mlflow/traces/tr-aa7857ae0d3b3f1af1eb27c38f63c9aa/tags",
        ),
        (
            "POST",
            "/api/3.0/mlflow/traces/tr-aa7857ae0d3b3f1af1eb27c38f63c9aa/assessments",
        ),
    ];
    for round in 0..300 {
        let mut body = valid.clone();
        for _ in 0..1 + random.below(6) {
            let position = random.below(body.len());
            body[position] = b"{}[]\",:0a-\\ "[random.below(12)];
        }
        let (method, uri) = routes[round % routes.len()];
        let reply = server.raw(method, uri, "application/json", body).await;
        assert!(
            reply.status.as_u16() < 500,
            "round {round} {method} {uri}: HTTP {}",
            reply.status
        );
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_with_error_json() {
    let path = std::env::temp_dir().join(format!("mlflow-tracing-limit-{}.db", std::process::id()));
    let app = router(SqliteStore::open(&path).unwrap(), 1024);
    let request = Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .header("x-mlflow-experiment-id", "0")
        .body(Body::from(vec![0_u8; 4096]))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 413);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error_code"], "REQUEST_LIMIT_EXCEEDED");
    assert!(error["message"].as_str().unwrap().contains("1024"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
