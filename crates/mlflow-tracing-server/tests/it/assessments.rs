//! Feedback and expectations on a trace, as `mlflow.log_feedback` / `log_expectation` send them.

use serde_json::{Value, json};

use crate::harness::{fixture_json, server, server_with_experiments};

const TRACE_ID: &str = "tr-aa7857ae0d3b3f1af1eb27c38f63c9aa";

#[tokio::test]
async fn feedback_and_expectations_round_trip_and_show_in_the_record() {
    let server = server_with_experiments(2).await;
    let start = fixture_json("wire/v3_start_trace_v3_pipeline.json")["req_body"].clone();
    server.json("POST", "/api/3.0/mlflow/traces", &start).await;
    let path = format!("/api/3.0/mlflow/traces/{TRACE_ID}/assessments");

    let mut created = Vec::new();
    for capture in [
        "wire/v3_create_feedback.json",
        "wire/v3_create_expectation.json",
    ] {
        let captured = fixture_json(capture);
        let reply = server.json("POST", &path, &captured["req_body"]).await;
        reply.assert_ok("");
        let mut assessment = reply.json()["assessment"].clone();
        let id = assessment["assessment_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("a-") && id.len() == 34, "{id}");
        let mut expected = captured["resp_body"]["assessment"].clone();
        expected["assessment_id"] = json!(id);
        assert_eq!(assessment, expected, "{capture}");
        assessment["assessment_id"] = json!(id);
        created.push(assessment);
    }

    let info = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json();
    assert_eq!(
        info["trace"]["trace_info"]["assessments"],
        Value::Array(created.clone())
    );

    let feedback_id = created[0]["assessment_id"].as_str().unwrap().to_owned();
    let one = format!("{path}/{feedback_id}");
    assert_eq!(server.get(&one).await.json()["assessment"], created[0]);
    let updated = server
        .json(
            "PATCH",
            &one,
            &json!({"assessment": {"rationale": "clear and correct"}, "update_mask": "rationale"}),
        )
        .await
        .json();
    assert_eq!(updated["assessment"]["rationale"], "clear and correct");
    assert_eq!(
        updated["assessment"]["feedback"],
        json!({"value": true}),
        "fields outside the mask stay"
    );

    let override_body = json!({"assessment": {"assessment_name": "helpful", "trace_id": TRACE_ID,
        "source": {"source_type": "HUMAN", "source_id": "alice"}, "feedback": {"value": false}, "overrides": feedback_id}});
    let overriding = server.json("POST", &path, &override_body).await.json();
    assert_eq!(overriding["assessment"]["overrides"], feedback_id.as_str());
    assert_eq!(
        server.get(&one).await.json()["assessment"]["valid"],
        false,
        "the overridden feedback is kept, invalid"
    );

    // Search by assessment values: the overriding feedback counts, the overridden one no longer does.
    for (filter, matches) in [
        ("feedback.helpful = 'false'", true),
        ("feedback.helpful = 'true'", false),
        ("feedback.helpful != 'true'", true),
        ("expectation.expected = 'answer'", true),
        ("expectation.expected LIKE 'ans%'", true),
        ("expectation.expected RLIKE '^a.s'", true),
        ("expectation.expected = 'other'", false),
        ("feedback.helpful IS NOT NULL", true),
        ("feedback.missing IS NULL", true),
        ("expectation.helpful IS NOT NULL", false),
        (
            "feedback.`helpful` = 'false' AND expectation.expected = 'answer'",
            true,
        ),
    ] {
        let request = json!({
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "2"}}],
            "filter": filter,
        });
        let reply = server
            .json("POST", "/api/3.0/mlflow/traces/search", &request)
            .await;
        assert_eq!(reply.status, 200, "{filter}: {:?}", reply.body);
        let found: Vec<Value> = reply.json()["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|info| info["trace_id"].clone())
            .collect();
        let expected = if matches {
            vec![json!(TRACE_ID)]
        } else {
            Vec::new()
        };
        assert_eq!(found, expected, "{filter}");
    }

    assert_eq!(server.json("DELETE", &one, &json!({})).await.status, 200);
    assert_eq!(
        server.get(&one).await.json()["error_code"],
        "RESOURCE_DOES_NOT_EXIST"
    );
    let remaining = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json();
    assert_eq!(
        remaining["trace"]["trace_info"]["assessments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn bad_assessments_are_rejected() {
    let server = server();
    let body = json!({"assessment": {"assessment_name": "x", "feedback": {"value": 1}}});
    let missing_trace = server
        .json(
            "POST",
            &format!("/api/3.0/mlflow/traces/{TRACE_ID}/assessments"),
            &body,
        )
        .await;
    assert_eq!(missing_trace.status, 404);
    let start = fixture_json("wire/v3_start_trace_v3_error.json")["req_body"].clone();
    crate::harness::create_experiments(&server, 2).await;
    server.json("POST", "/api/3.0/mlflow/traces", &start).await;
    let trace_id = start["trace"]["trace_info"]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/3.0/mlflow/traces/{trace_id}/assessments");
    for bad in [
        json!({}),
        json!({"assessment": {"assessment_name": "x"}}),
        json!({"assessment": {"assessment_name": "x", "feedback": {"value": 1}, "expectation": {"value": 2}}}),
        json!({"assessment": {"assessment_name": 5, "feedback": {"value": 1}}}),
    ] {
        let reply = server.json("POST", &path, &bad).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["error_code"], "INVALID_PARAMETER_VALUE");
    }
    let created = server.json("POST", &path, &body).await.json();
    let id = created["assessment"]["assessment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad_mask = server
        .json(
            "PATCH",
            &format!("{path}/{id}"),
            &json!({"assessment": {}, "update_mask": "trace_id"}),
        )
        .await;
    assert_eq!(bad_mask.status, 400);
}
