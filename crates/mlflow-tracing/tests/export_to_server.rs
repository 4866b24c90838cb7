//! The SDK exporting over HTTP to the mlflow-tracing server (a real server on a loopback port and a real
//! SQLite file), read back through the REST API as the official client reads it.

use mlflow_tracing::{
    Config, EndOptions, MlflowClient, MlflowExporter, SpanType, StartOptions, start_span, trace,
};
use mlflow_tracing_server::store::sqlite::SqliteStore;
use mlflow_tracing_server::{DEFAULT_BODY_LIMIT, router};
use serde_json::{Value, json};

/// Starts a server on a free loopback port; returns its URL.
fn start_server() -> String {
    let path =
        std::env::temp_dir().join(format!("mlflow-tracing-sdk-e2e-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = SqliteStore::open(&path).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router(store, DEFAULT_BODY_LIMIT))
                .await
                .unwrap();
        });
    });
    format!("http://{address}")
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get_json(url: &str) -> Value {
    let mut response = http().get(url).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn post_json(url: &str, body: &Value) -> Value {
    let mut response = http()
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[trace(span_type = "RETRIEVER")]
fn retrieve(query: &str) -> Vec<String> {
    vec![format!("doc about {query}")]
}

#[trace(name = "agent", span_type = "AGENT", attributes(model = "stub"))]
fn agent(question: &str) -> String {
    let documents = retrieve(question);
    let span = start_span("compose");
    span.set_inputs(&documents);
    let answer = format!("{} documents", documents.len());
    span.set_outputs(&answer);
    answer
}

#[test]
fn traces_reach_the_server_with_their_tree_record_and_payloads() {
    let base = start_server();
    let guard = Config::new()
        .exporter(MlflowExporter::new(&base).experiment_name("sdk e2e"))
        .install();
    agent("what is mlflow?");
    let client = MlflowClient::new();
    let root = client
        .start_trace("client-root", StartOptions::new().inputs(&json!({"x": 1})))
        .unwrap();
    let child = client
        .start_span(
            "lookup",
            &root.trace_id(),
            root.span_id(),
            StartOptions::new().span_type(SpanType::Tool),
        )
        .unwrap();
    client
        .end_span(
            &root.trace_id(),
            child.span_id(),
            EndOptions::new().outputs(&[1, 2]),
        )
        .unwrap();
    client
        .end_trace(&root.trace_id(), EndOptions::new().outputs(&"done"))
        .unwrap();
    assert!(guard.flush(), "the export thread finished in time");
    assert_eq!(mlflow_tracing::export_failure_count(), 0);

    let experiment = get_json(&format!(
        "{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=sdk%20e2e"
    ));
    let experiment_id = experiment["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let location =
        json!({"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}});
    let search = post_json(
        &format!("{base}/api/3.0/mlflow/traces/search"),
        &json!({"locations": [location]}),
    );
    let traces = search["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2, "{search}");
    let agent_info = traces
        .iter()
        .find(|info| info["tags"]["mlflow.traceName"] == "agent")
        .expect("the agent trace");
    assert_eq!(agent_info["state"], "OK");
    assert_eq!(
        agent_info["tags"]["mlflow.trace.spansLocation"],
        "TRACKING_STORE"
    );
    assert_eq!(
        agent_info["trace_metadata"]["mlflow.traceInputs"],
        r#"{"question":"what is mlflow?"}"#
    );

    let trace_id = agent_info["trace_id"].as_str().unwrap();
    let got = get_json(&format!(
        "{base}/api/3.0/mlflow/traces/get?trace_id={trace_id}"
    ));
    let spans = got["trace"]["spans"].as_array().unwrap();
    let names: Vec<_> = spans
        .iter()
        .map(|span| span["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent", "retrieve", "compose"]);
    let root_id = &spans[0]["span_id"];
    assert!(
        spans[1..]
            .iter()
            .all(|span| &span["parent_span_id"] == root_id)
    );
    let attribute = |span: &Value, key: &str| {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|attribute| attribute["key"] == key)
            .map(|attribute| attribute["value"].clone())
    };
    assert_eq!(
        attribute(&spans[0], "model"),
        Some(json!({"string_value": "stub"}))
    );
    assert_eq!(
        attribute(&spans[1], "mlflow.spanType"),
        Some(json!({"string_value": "RETRIEVER"}))
    );
    assert_eq!(
        attribute(&spans[2], "mlflow.spanInputs"),
        Some(json!({"array_value": {"values": [{"string_value": "doc about what is mlflow?"}]}}))
    );

    let client_info = traces
        .iter()
        .find(|info| info["tags"]["mlflow.traceName"] == "client-root")
        .unwrap();
    assert_eq!(client_info["response_preview"], "\"done\"");
}
