//! `mlflow-tracing traces search|get|delete` against a live server on a loopback port.

use mlflow_tracing_core::EventAttributes;
use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::codec::rest_span::span_from_rest_json;
use mlflow_tracing_server::cli::{Output, TracesCli};
use mlflow_tracing_server::store::sqlite::SqliteStore;
use mlflow_tracing_server::{DEFAULT_BODY_LIMIT, router};
use prost::Message;

use crate::harness::fixture_json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_get_and_delete_from_the_command_line() {
    let path = std::env::temp_dir().join(format!("mlflow-tracing-cli-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router(SqliteStore::open(&path).unwrap(), DEFAULT_BODY_LIMIT),
        )
        .await
    });

    let output = tokio::task::spawn_blocking(move || {
        let rest = fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"]["trace"]["spans"]
            .clone();
        let spans: Vec<_> = rest
            .as_array()
            .unwrap()
            .iter()
            .map(|span| span_from_rest_json(span).unwrap())
            .collect();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let body = export_request(&spans, &EventAttributes::new()).encode_to_vec();
        let posted = agent
            .post(&format!("{base}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("x-mlflow-experiment-id", "0")
            .send(&body[..])
            .unwrap();
        assert_eq!(posted.status(), 200);

        let cli = TracesCli::new(&base);
        let experiment = cli.experiment_id(None, Some("Default")).unwrap();
        let table = cli
            .search(
                &experiment,
                "span.type = 'RETRIEVER'",
                &[],
                10,
                Output::Table,
            )
            .unwrap();
        let none = cli
            .search(&experiment, "status = 'ERROR'", &[], 10, Output::Table)
            .unwrap();
        let bad = cli
            .search(&experiment, "status = ", &[], 10, Output::Table)
            .unwrap_err()
            .to_string();
        let tree = cli
            .get_trace("tr-aa7857ae0d3b3f1af1eb27c38f63c9aa", Output::Table)
            .unwrap();
        let json = cli
            .get_trace("tr-aa7857ae0d3b3f1af1eb27c38f63c9aa", Output::Json)
            .unwrap();
        let deleted = cli
            .delete(
                &experiment,
                &["tr-aa7857ae0d3b3f1af1eb27c38f63c9aa".to_owned()],
            )
            .unwrap();
        let missing = cli
            .get_trace("tr-aa7857ae0d3b3f1af1eb27c38f63c9aa", Output::Table)
            .unwrap_err()
            .to_string();
        (table, none, bad, tree, json, deleted, missing)
    })
    .await
    .unwrap();
    let (table, none, bad, tree, json, deleted, missing) = output;
    assert!(
        table.contains("tr-aa7857ae0d3b3f1af1eb27c38f63c9aa") && table.ends_with("1 trace(s)"),
        "{table}"
    );
    assert!(table.contains("OK") && table.contains("0.083s"), "{table}");
    assert!(none.ends_with("0 trace(s)"), "{none}");
    assert!(
        bad.contains("HTTP 400") && bad.contains("position 9"),
        "{bad}"
    );
    let lines: Vec<_> = tree.lines().collect();
    assert!(lines[1].starts_with("  pipeline [CHAIN]"), "{tree}");
    assert!(
        lines[2].starts_with("    retriever [RETRIEVER]")
            && lines[3].starts_with("    llm_call [CHAT_MODEL]"),
        "{tree}"
    );
    assert!(tree.ends_with("3 span(s)"));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["spans"].as_array().unwrap().len(), 3);
    assert_eq!(deleted, 1);
    assert!(
        missing.contains("HTTP 404") && missing.contains("not found"),
        "{missing}"
    );
}
