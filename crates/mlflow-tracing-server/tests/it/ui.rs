//! The web UI's page and its read endpoints: the span outline, one span by id, per-experiment trace stats.

use serde_json::json;

use crate::harness::server_with_experiments;
use crate::traces::{captured_spans, post_spans};

const TRACE_ID: &str = "tr-aa7857ae0d3b3f1af1eb27c38f63c9aa";
const ROOT: &str = "8d000c3e68ce4b1c";
const RETRIEVER: &str = "d973a9f0f606832b";
const LLM: &str = "23f5dedaf8f6ddd5";

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_content_security_policy() {
    let server = server_with_experiments(0).await;
    for (path, content_type, needle) in [
        ("/", "text/html", "/static/app.js"),
        ("/static/app.js", "text/javascript", "textContent"),
        ("/static/app.css", "text/css", "prefers-color-scheme"),
        ("/static/icon.svg", "image/svg+xml", "<svg"),
    ] {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(server.app.clone(), request)
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
    }
    assert_eq!(server.get("/static/missing.js").await.status, 404);
}

#[tokio::test]
async fn the_span_outline_lists_every_span_in_columns_with_parent_rows() {
    let server = server_with_experiments(2).await;
    let (_, spans) = captured_spans();
    post_spans(&server, &spans).await;

    let reply = server
        .get(&format!(
            "/ajax-api/3.0/mlflow/traces/{TRACE_ID}/span-outline"
        ))
        .await;
    assert_eq!(reply.status, 200);
    let outline = reply.json();
    assert_eq!(
        outline,
        json!({
            "trace_id": TRACE_ID,
            "start_time_unix_nano": "1795478356869662811",
            "span_count": 3,
            "span_id": [ROOT, RETRIEVER, LLM],
            "parent": [-1, 0, 0],
            "name": ["pipeline", "retriever", "llm_call"],
            "span_type": ["CHAIN", "RETRIEVER", "CHAT_MODEL"],
            "status": ["OK", "OK", "OK"],
            "start_ns": [0, 40805964, 66100236],
            "duration_ns": [83165663, 356720, 418414],
        })
    );
    // The same under /api, and for the bare hex id.
    let bare = TRACE_ID.trim_start_matches("tr-");
    let again = server
        .get(&format!("/api/3.0/mlflow/traces/{bare}/span-outline"))
        .await;
    assert_eq!(again.json(), outline);
}

#[tokio::test]
async fn a_span_is_read_alone_by_its_hex_id() {
    let server = server_with_experiments(2).await;
    let (rest, spans) = captured_spans();
    post_spans(&server, &spans).await;

    let reply = server
        .get(&format!(
            "/ajax-api/3.0/mlflow/traces/{TRACE_ID}/spans/{}",
            RETRIEVER.to_uppercase()
        ))
        .await;
    assert_eq!(reply.status, 200);
    let span = &reply.json()["span"];
    assert_eq!(span["name"], "retriever");
    assert_eq!(span["span_id"], rest[1]["span_id"]);
    assert_eq!(span["attributes"], rest[1]["attributes"]);

    let missing = server
        .get(&format!(
            "/ajax-api/3.0/mlflow/traces/{TRACE_ID}/spans/0000000000000000"
        ))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let malformed = server
        .get(&format!("/ajax-api/3.0/mlflow/traces/{TRACE_ID}/spans/xyz"))
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error_code"], "INVALID_PARAMETER_VALUE");
    let no_trace = server
        .get("/ajax-api/3.0/mlflow/traces/tr-00000000000000000000000000000000/span-outline")
        .await;
    assert_eq!(no_trace.status, 404);
    assert_eq!(no_trace.json()["error_code"], "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn experiments_report_their_trace_counts_and_latest_trace() {
    let server = server_with_experiments(3).await;
    let empty = server
        .get("/ajax-api/3.0/mlflow/experiments/trace-stats")
        .await
        .json();
    assert_eq!(empty, json!({"experiments": []}));

    let (_, spans) = captured_spans();
    post_spans(&server, &spans).await;
    let stats = server
        .get("/api/3.0/mlflow/experiments/trace-stats")
        .await
        .json();
    assert_eq!(
        stats,
        json!({"experiments": [
            {"experiment_id": "2", "trace_count": 1, "last_trace_time_ms": 1795478356869_i64}
        ]})
    );
}
