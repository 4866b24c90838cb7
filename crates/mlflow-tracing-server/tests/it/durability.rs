//! An acknowledged write survives the server process being killed: the server binary takes OTLP load from
//! several clients, is killed with SIGKILL mid-stream, and every trace it answered 200 for is in the database
//! with all its spans when it is opened again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::{
    Attributes, EventAttributes, JsonText, Span, SpanId, SpanStatus, TraceId, keys,
};
use mlflow_tracing_server::store::Store;
use mlflow_tracing_server::store::sqlite::SqliteStore;
use prost::Message;

const SPANS_PER_TRACE: usize = 5;

/// A trace of [`SPANS_PER_TRACE`] spans whose ids come from `seed`.
fn trace(seed: u64) -> (TraceId, Vec<Span>) {
    let mut id = [0_u8; 16];
    id[..8].copy_from_slice(&seed.to_be_bytes());
    id[8..].copy_from_slice(&(!seed).to_be_bytes());
    let trace_id = TraceId(id);
    let span_id = |index: usize| SpanId(((seed << 8) | index as u64 | 1 << 63).to_be_bytes());
    let spans = (0..SPANS_PER_TRACE)
        .map(|index| {
            let mut attributes = Attributes::default();
            attributes.insert(
                keys::SPAN_INPUTS.into(),
                JsonText::from_raw(format!(r#"{{"step":{index}}}"#)),
            );
            Span {
                trace_id,
                span_id: span_id(index),
                parent_id: (index > 0).then(|| span_id(0)),
                name: format!("step_{index}"),
                start_time_unix_nano: 1_700_000_000_000_000_000 + index as u64,
                end_time_unix_nano: Some(1_700_000_000_001_000_000),
                status: SpanStatus::ok(),
                attributes,
                events: Vec::new(),
                links: Vec::new(),
            }
        })
        .collect();
    (trace_id, spans)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn acknowledged_traces_survive_a_killed_server() {
    let directory =
        std::env::temp_dir().join(format!("mlflow-tracing-durability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    let database = directory.join("killed.db");
    let port = free_port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_mlflow-tracing"))
        .args(["server", "--port", &port.to_string(), "--backend-store-uri"])
        .arg(format!("sqlite:///{}", database.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let started = Instant::now();
    while agent
        .get(&format!("{base}/health"))
        .call()
        .map_or(true, |response| response.status() != 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Clients post one trace per request until the server goes away, keeping the ids it acknowledged.
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..4_u64)
        .map(|client| {
            let (agent, base, running) = (agent.clone(), base.clone(), Arc::clone(&running));
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut seed = client << 40;
                while running.load(Ordering::Relaxed) {
                    seed += 1;
                    let (trace_id, spans) = trace(seed);
                    let body = export_request(&spans, &EventAttributes::default()).encode_to_vec();
                    match agent
                        .post(&format!("{base}/v1/traces"))
                        .header("content-type", "application/x-protobuf")
                        .header("x-mlflow-experiment-id", "0")
                        .send(&body[..])
                    {
                        Ok(response) if response.status() == 200 => {
                            acknowledged.push(trace_id.to_mlflow());
                        }
                        Ok(response) => panic!("the server answered {}", response.status()),
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill().expect("SIGKILL reaches the server");
    server.wait().unwrap();
    running.store(false, Ordering::Relaxed);
    let acknowledged: Vec<String> = clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() > 20,
        "the server acknowledged only {} traces before it was killed",
        acknowledged.len()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let store = SqliteStore::open(&database).expect("the database opens after the kill");
        store.get_traces(acknowledged.clone()).await
    });
    let stored = stored.expect("every acknowledged trace is found");
    assert_eq!(stored.len(), acknowledged.len());
    for ((info, spans), id) in stored.iter().zip(&acknowledged) {
        assert_eq!(&info.trace_id, id);
        assert_eq!(spans.len(), SPANS_PER_TRACE, "spans of {id}");
        assert!(spans[0].contains("step_"), "{}", spans[0]);
    }
    drop(runtime);
    let _ = std::fs::remove_dir_all(&directory);
}
