//! A server on a fresh SQLite file, requests sent in process, and the shared fixtures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mlflow_tracing_server::store::sqlite::SqliteStore;
use mlflow_tracing_server::{DEFAULT_BODY_LIMIT, router};
use serde_json::Value;
use tower::ServiceExt;

/// A server over its own database file, removed on drop.
pub(crate) struct TestServer {
    pub(crate) app: Router,
    path: PathBuf,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

impl TestServer {
    /// The database file, to check what the store wrote.
    pub(crate) fn database_path(&self) -> &std::path::Path {
        &self.path
    }
}

pub(crate) fn server() -> TestServer {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "mlflow-tracing-it-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let store = SqliteStore::open(&path).expect("a fresh SQLite file opens");
    TestServer {
        app: router(store, DEFAULT_BODY_LIMIT),
        path,
    }
}

/// A server whose experiments run from "0" (Default) to `last`, as in the captures (which use ids 1, 2, 5).
pub(crate) async fn server_with_experiments(last: usize) -> TestServer {
    let server = server();
    create_experiments(&server, last).await;
    server
}

/// Creates experiments 1 to `last`.
pub(crate) async fn create_experiments(server: &TestServer, last: usize) {
    for index in 1..=last {
        let body = serde_json::json!({"name": format!("experiment-{index}")});
        server
            .json("POST", "/api/2.0/mlflow/experiments/create", &body)
            .await;
    }
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

impl Reply {
    /// Asserts a 200, showing `what` was asked and the body otherwise.
    pub(crate) fn assert_ok(&self, what: &str) {
        assert_eq!(
            self.status,
            200,
            "{what} answered {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl TestServer {
    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a whole body")
            .to_bytes();
        Reply {
            status,
            content_type,
            body,
        }
    }

    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub(crate) async fn json(&self, method: &str, uri: &str, body: &Value) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub(crate) async fn raw(
        &self,
        method: &str,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }
}

/// `shared/spec/fixtures`, beside the checkout.
pub(crate) fn fixture_json(name: &str) -> Value {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = manifest_dir
        .ancestors()
        .map(|ancestor| ancestor.join("shared/spec/fixtures").join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("fixture {name} beside the checkout"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
