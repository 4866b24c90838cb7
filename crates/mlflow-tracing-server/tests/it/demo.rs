//! The demo agents, exported over HTTP by the SDK to a real server on a loopback port.

use mlflow_tracing_server::demo::{DEMO_EXPERIMENT, run_agents};
use mlflow_tracing_server::search::parse_filter;
use mlflow_tracing_server::store::sqlite::SqliteStore;
use mlflow_tracing_server::store::{Store, TraceQuery};
use mlflow_tracing_server::{DEFAULT_BODY_LIMIT, router};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_records_its_agents_through_the_sdk_exporter() {
    let path = std::env::temp_dir().join(format!("mlflow-tracing-demo-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = SqliteStore::open(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = store.clone();
    tokio::spawn(async move { axum::serve(listener, router(served, DEFAULT_BODY_LIMIT)).await });

    let traces = run_agents(&format!("http://{address}")).await.unwrap();
    assert_eq!(traces, 9);

    let experiment = store
        .get_experiment_by_name(DEMO_EXPERIMENT.to_owned())
        .await
        .unwrap();
    let query = |filter: &str| TraceQuery {
        experiment_ids: vec![experiment.experiment_id.clone()],
        conditions: parse_filter(filter).unwrap(),
        max_results: 100,
        ..TraceQuery::default()
    };
    assert_eq!(store.search_traces(query("")).await.unwrap().items.len(), 9);
    let session = store
        .search_traces(query("metadata.`mlflow.trace.session` = 'session-demo-1'"))
        .await
        .unwrap();
    assert_eq!(
        session.items.len(),
        3,
        "the support bot's conversation is one session"
    );
    assert!(
        session
            .items
            .iter()
            .all(|info| info.trace_metadata.contains_key("mlflow.trace.tokenUsage"))
    );
    let failed = store
        .search_traces(query("status = 'ERROR'"))
        .await
        .unwrap();
    assert_eq!(failed.items.len(), 1);
    assert_eq!(failed.items[0].tags["mlflow.traceName"], "inventory_agent");
    let research = store
        .search_traces(query("name = 'research_agent'"))
        .await
        .unwrap();
    let (_, spans) = store
        .get_traces(vec![research.items[0].trace_id.clone()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        spans.len(),
        6,
        "plan, three tools and the summary under the agent"
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
