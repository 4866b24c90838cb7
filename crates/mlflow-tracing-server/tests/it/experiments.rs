use serde_json::json;

use crate::harness::{fixture_json, server};

#[tokio::test]
async fn a_missing_experiment_is_a_json_404_like_mlflows() {
    let server = server();
    let captured = fixture_json("wire/experiment_get_by_name_404.json");
    let reply = server.get(captured["path"].as_str().unwrap()).await;
    assert_eq!(
        reply.status.as_u16(),
        captured["status"].as_u64().unwrap() as u16
    );
    let body = reply.json();
    assert_eq!(body["error_code"], captured["resp_body"]["error_code"]);
    assert_eq!(body["message"], captured["resp_body"]["message"]);
}

#[tokio::test]
async fn set_experiment_sequence_creates_then_reads_the_experiment() {
    let server = server();
    let created = server
        .json(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            &json!({"name": "sync"}),
        )
        .await;
    assert_eq!(created.status, 200);
    let experiment_id = created.json()["experiment_id"].as_str().unwrap().to_owned();
    assert_eq!(experiment_id, "1");

    let by_id = server
        .get(&format!(
            "/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
        ))
        .await
        .json();
    let captured = fixture_json("wire/experiment_get.json")["resp_body"]["experiment"].clone();
    let experiment = &by_id["experiment"];
    for field in ["name", "lifecycle_stage"] {
        assert_eq!(experiment[field], captured[field], "{field}");
    }
    assert_eq!(experiment["artifact_location"], "mlflow-artifacts:/1");
    assert!(experiment["creation_time"].as_i64().unwrap() > 1_700_000_000_000);

    let by_name = server
        .get("/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=sync")
        .await
        .json();
    assert_eq!(by_name["experiment"]["experiment_id"], "1");

    let duplicate = server
        .json(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            &json!({"name": "sync"}),
        )
        .await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(duplicate.json()["error_code"], "RESOURCE_ALREADY_EXISTS");
}

#[tokio::test]
async fn the_default_experiment_exists_and_search_pages() {
    let server = server();
    let default = server
        .get("/api/2.0/mlflow/experiments/get?experiment_id=0")
        .await
        .json();
    assert_eq!(default["experiment"]["name"], "Default");
    for name in ["a", "b"] {
        server
            .json(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                &json!({"name": name}),
            )
            .await;
    }
    let first = server
        .json(
            "POST",
            "/api/2.0/mlflow/experiments/search",
            &json!({"max_results": 2}),
        )
        .await
        .json();
    assert_eq!(first["experiments"].as_array().unwrap().len(), 2);
    let token = first["next_page_token"].as_str().unwrap();
    let second = server
        .json(
            "POST",
            "/api/2.0/mlflow/experiments/search",
            &json!({"max_results": 2, "page_token": token}),
        )
        .await
        .json();
    assert_eq!(second["experiments"][0]["name"], "b");
    assert!(second.get("next_page_token").is_none());
}

#[tokio::test]
async fn bad_requests_are_400_with_mlflows_error_json() {
    let server = server();
    for (method, uri, body) in [
        ("POST", "/api/2.0/mlflow/experiments/create", "{not json"),
        (
            "POST",
            "/api/2.0/mlflow/experiments/create",
            r#"{"name": 5}"#,
        ),
        ("POST", "/api/2.0/mlflow/experiments/create", r#"{}"#),
        (
            "POST",
            "/api/2.0/mlflow/experiments/search",
            r#"{"max_results": -1}"#,
        ),
        (
            "POST",
            "/api/2.0/mlflow/experiments/search",
            r#"{"page_token": "garbage"}"#,
        ),
    ] {
        let reply = server
            .raw(method, uri, "application/json", body.as_bytes().to_vec())
            .await;
        assert_eq!(reply.status, 400, "{uri} {body}");
        assert_eq!(
            reply.json()["error_code"],
            "INVALID_PARAMETER_VALUE",
            "{uri} {body}"
        );
    }
    let reply = server
        .get("/api/2.0/mlflow/experiments/get?experiment_id=abc")
        .await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
}

#[tokio::test]
async fn unknown_routes_are_a_bare_404() {
    let server = server();
    for uri in [
        "/api/2.0/mlflow/nothing-here",
        "/api/9.9/mlflow/traces",
        "/elsewhere",
    ] {
        let reply = server.get(uri).await;
        assert_eq!(reply.status, 404, "{uri}");
        assert!(
            reply.body.is_empty(),
            "{uri}: a bare 404 makes clients fall back to older endpoints"
        );
    }
    assert_eq!(server.get("/version").await.body, "3.17.2");
    assert_eq!(server.get("/health").await.body, "OK");
    assert_eq!(
        server.get("/api/3.0/mlflow/server-info").await.json()["store_type"],
        "SqlStore"
    );
}
