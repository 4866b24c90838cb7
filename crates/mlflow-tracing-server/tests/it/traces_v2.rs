//! The MLflow 2.x write sequence: StartTrace (the server makes the id), traceSpans tag, traces.json upload,
//! EndTrace; then reads through v2 and v3.

use serde_json::{Value, json};

use crate::harness::{fixture_json, server_with_experiments};

fn pairs(value: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair["key"].as_str().unwrap().to_owned(),
                pair["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn the_2x_client_sequence_records_a_complete_trace() {
    let server = server_with_experiments(5).await;
    let start = fixture_json("wire/v2_start_trace.json");
    let started = server
        .json("POST", "/api/2.0/mlflow/traces", &start["req_body"])
        .await;
    started.assert_ok("");
    let info = started.json()["trace_info"].clone();
    let request_id = info["request_id"].as_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 32);
    assert!(request_id.chars().all(|c| c.is_ascii_hexdigit()));
    let captured = &start["resp_body"]["trace_info"];
    for field in [
        "experiment_id",
        "timestamp_ms",
        "execution_time_ms",
        "status",
    ] {
        assert_eq!(info[field], captured[field], "{field}");
    }
    let tags = pairs(&info["tags"]);
    assert!(tags.contains(&(
        "mlflow.artifactLocation".into(),
        format!("mlflow-artifacts:/5/traces/{request_id}/artifacts")
    )));

    let traces_spans = fixture_json("wire/v2_set_tag_traceSpans.json")["req_body"].clone();
    let tagged = server
        .json(
            "PATCH",
            &format!("/api/2.0/mlflow/traces/{request_id}/tags"),
            &traces_spans,
        )
        .await;
    assert_eq!(tagged.status, 200);

    let upload = fixture_json("wire/v2_artifact_put_traces_json.json")["req_body"].to_string();
    let path =
        format!("/api/2.0/mlflow-artifacts/artifacts/5/traces/{request_id}/artifacts/traces.json");
    assert_eq!(
        server
            .raw("PUT", &path, "text/plain", upload.into_bytes())
            .await
            .status,
        200
    );

    let mut end = fixture_json("wire/v2_end_trace.json")["req_body"].clone();
    end["request_id"] = json!(request_id);
    let ended = server
        .json(
            "PATCH",
            &format!("/api/2.0/mlflow/traces/{request_id}"),
            &end,
        )
        .await
        .json();
    let captured_end = fixture_json("wire/v2_end_trace.json")["resp_body"]["trace_info"].clone();
    let ended_info = &ended["trace_info"];
    for field in [
        "experiment_id",
        "timestamp_ms",
        "execution_time_ms",
        "status",
    ] {
        assert_eq!(ended_info[field], captured_end[field], "{field}");
    }
    assert_eq!(
        pairs(&ended_info["request_metadata"]),
        pairs(&captured_end["request_metadata"])
    );
    // Ours also says the uploaded spans are in its database.
    assert!(
        pairs(&ended_info["tags"])
            .contains(&("mlflow.trace.spansLocation".into(), "TRACKING_STORE".into()))
    );
    let without_locations = |value: &Value| -> Vec<(String, String)> {
        let server_set = ["mlflow.artifactLocation", "mlflow.trace.spansLocation"];
        pairs(value)
            .into_iter()
            .filter(|(key, _)| !server_set.contains(&key.as_str()))
            .collect()
    };
    assert_eq!(
        without_locations(&ended_info["tags"]),
        without_locations(&captured_end["tags"])
    );

    let info = server
        .get(&format!(
            "/api/2.0/mlflow/traces/{request_id}/info?request_id={request_id}"
        ))
        .await
        .json();
    assert_eq!(info, ended);
    let downloaded = server.get(&path).await;
    let spans = mlflow_tracing_core::codec::span_json::read_traces_json(
        std::str::from_utf8(&downloaded.body).unwrap(),
    )
    .unwrap();
    let names: Vec<_> = spans.spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["pipeline", "retriever", "llm_call"]);

    let search = server.get("/api/2.0/mlflow/traces?experiment_ids=5&filter=tags.%60mlflow.traceName%60+%3D+%27pipeline%27&max_results=10&order_by=timestamp_ms+DESC").await;
    search.assert_ok("");
    let traces = search.json()["traces"].clone();
    assert_eq!(traces.as_array().unwrap().len(), 1);
    assert_eq!(traces[0]["request_id"], request_id.as_str());
    let v3 = server
        .get(&format!("/api/3.0/mlflow/traces/{request_id}"))
        .await
        .json();
    assert_eq!(
        v3["trace"]["trace_info"]["state"], "OK",
        "v2 traces read through v3 too"
    );
}

#[tokio::test]
async fn v2_errors_are_mlflow_json() {
    let server = server_with_experiments(5).await;
    let missing = server
        .json(
            "PATCH",
            "/api/2.0/mlflow/traces/0123456789abcdef0123456789abcdef",
            &json!({"timestamp_ms": 1, "status": "OK"}),
        )
        .await;
    assert_eq!(
        (
            missing.status.as_u16(),
            missing.json()["error_code"].as_str()
        ),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
    for body in [
        json!({"timestamp_ms": 1}),
        json!({"experiment_id": "5"}),
        json!({"experiment_id": "5", "timestamp_ms": "soon"}),
    ] {
        let reply = server.json("POST", "/api/2.0/mlflow/traces", &body).await;
        assert_eq!(reply.status, 400, "{body}");
    }
    let started = server
        .json(
            "POST",
            "/api/2.0/mlflow/traces",
            &json!({"experiment_id": "5", "timestamp_ms": 10}),
        )
        .await
        .json();
    let request_id = started["trace_info"]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad_status = server
        .json(
            "PATCH",
            &format!("/api/2.0/mlflow/traces/{request_id}"),
            &json!({"timestamp_ms": 20, "status": "MAYBE"}),
        )
        .await;
    assert_eq!(bad_status.status, 400);
    let no_experiments = server.get("/api/2.0/mlflow/traces?max_results=10").await;
    assert_eq!(no_experiments.status, 400);
}
