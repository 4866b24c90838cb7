//! The 3.x client's write race (StartTraceV3, OTLP spans, in either order, repeated) and the read paths.

use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::codec::rest_span::span_from_rest_json;
use mlflow_tracing_core::time::format_rfc3339_millis;
use mlflow_tracing_core::{EventAttributes, Span, SpanId};
use prost::Message;
use serde_json::{Value, json};

use crate::harness::{TestServer, fixture_json, server_with_experiments};

pub(crate) fn captured_spans() -> (Vec<Value>, Vec<Span>) {
    let rest = fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"]["trace"]["spans"]
        .as_array()
        .unwrap()
        .clone();
    let spans = rest
        .iter()
        .map(|span| span_from_rest_json(span).unwrap())
        .collect();
    (rest, spans)
}

pub(crate) async fn post_spans(server: &TestServer, spans: &[Span]) {
    let body = export_request(spans, &EventAttributes::new()).encode_to_vec();
    let request = axum::http::Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .header("x-mlflow-experiment-id", "2")
        .body(axum::body::Body::from(body))
        .unwrap();
    let reply = server.send(request).await;
    reply.assert_ok("");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/x-protobuf")
    );
}

async fn start_trace_v3(server: &TestServer) -> Value {
    let request = fixture_json("wire/v3_start_trace_v3_pipeline.json")["req_body"].clone();
    let reply = server
        .json("POST", "/api/3.0/mlflow/traces", &request)
        .await;
    reply.assert_ok("");
    reply.json()
}

const TRACE_ID: &str = "tr-aa7857ae0d3b3f1af1eb27c38f63c9aa";

#[tokio::test]
async fn spans_then_record_answers_exactly_what_mlflow_answered() {
    let server = server_with_experiments(2).await;
    let (rest_spans, spans) = captured_spans();
    post_spans(&server, &spans).await;
    let mut response = start_trace_v3(&server).await;
    let captured = fixture_json("wire/v3_start_trace_v3_pipeline.json")["resp_body"].clone();
    // MLflow stores the client's user tags but leaves them out of this reply; echoing them is harmless.
    let tags = response["trace"]["trace_info"]["tags"]
        .as_object_mut()
        .unwrap();
    assert_eq!(tags.remove("env"), Some(json!("test")));
    assert_eq!(response, captured);

    let got = server
        .get(&format!(
            "/api/3.0/mlflow/traces/get?trace_id={TRACE_ID}&allow_partial=False"
        ))
        .await
        .json();
    let captured_get = fixture_json("wire/v3_get_trace_with_spans.json")["resp_body"].clone();
    assert_eq!(
        got["trace"]["trace_info"],
        captured_get["trace"]["trace_info"]
    );
    assert_eq!(got["trace"]["spans"], Value::Array(rest_spans));

    let info = server
        .get(&format!(
            "/api/3.0/mlflow/traces/{TRACE_ID}?trace_id={TRACE_ID}"
        ))
        .await
        .json();
    assert_eq!(
        info,
        fixture_json("wire/v3_get_trace_info.json")["resp_body"]
    );
}

#[tokio::test]
async fn record_then_spans_and_repeats_give_the_same_trace() {
    let server = server_with_experiments(2).await;
    let (rest_spans, spans) = captured_spans();
    let first = start_trace_v3(&server).await;
    let tags = &first["trace"]["trace_info"]["tags"];
    assert!(
        tags.get("mlflow.trace.spansLocation").is_none(),
        "no spans yet: the client must upload them"
    );
    assert_eq!(
        tags["mlflow.artifactLocation"],
        format!("mlflow-artifacts:/2/traces/{TRACE_ID}/artifacts")
    );
    assert_eq!(
        first["trace"]["trace_info"]["trace_metadata"]["mlflow.trace.infoFinalized"],
        "true"
    );

    post_spans(&server, &spans[1..]).await;
    post_spans(&server, &spans).await;
    post_spans(&server, &spans[..1]).await;
    start_trace_v3(&server).await;

    let got = server
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={TRACE_ID}"))
        .await
        .json();
    assert_eq!(
        got["trace"]["spans"],
        Value::Array(rest_spans),
        "each span once, in start order"
    );
    assert_eq!(
        got["trace"]["trace_info"],
        fixture_json("wire/v3_get_trace_info.json")["resp_body"]["trace"]["trace_info"]
    );
}

#[tokio::test]
async fn spans_after_the_clients_record_leave_it_as_the_client_wrote_it() {
    let server = server_with_experiments(2).await;
    let (_, spans) = captured_spans();
    let mut request = fixture_json("wire/v3_start_trace_v3_pipeline.json")["req_body"].clone();
    let info = &mut request["trace"]["trace_info"];
    info["request_preview"] = json!("the client's own preview");
    info["response_preview"] = json!("the client's own answer");
    info["state"] = json!("ERROR");
    info["execution_duration"] = json!("4.5s");
    server
        .json("POST", "/api/3.0/mlflow/traces", &request)
        .await
        .assert_ok("");
    // The root's spans would derive other previews, an OK state and another duration.
    post_spans(&server, &spans).await;
    post_spans(&server, &spans[..1]).await;

    let info = server
        .get(&format!(
            "/api/3.0/mlflow/traces/{TRACE_ID}?trace_id={TRACE_ID}"
        ))
        .await
        .json();
    let info = &info["trace"]["trace_info"];
    assert_eq!(info["request_preview"], "the client's own preview");
    assert_eq!(info["response_preview"], "the client's own answer");
    assert_eq!(info["state"], "ERROR");
    assert_eq!(info["execution_duration"], "4.500s");
}

#[tokio::test]
async fn spans_alone_make_a_trace_derived_from_the_root() {
    let server = server_with_experiments(2).await;
    let (_, spans) = captured_spans();
    post_spans(&server, &spans[1..]).await;
    let partial = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json();
    assert_eq!(partial["trace"]["trace_info"]["state"], "IN_PROGRESS");

    post_spans(&server, &spans[..1]).await;
    let info = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json()["trace"]["trace_info"]
        .clone();
    assert_eq!(info["state"], "OK");
    assert_eq!(info["request_time"], "2026-11-23T23:59:16.869Z");
    assert_eq!(info["execution_duration"], "0.083s");
    assert_eq!(info["tags"]["mlflow.trace.spansLocation"], "TRACKING_STORE");
    assert!(
        info["tags"].get("mlflow.traceName").is_none(),
        "a pure-OTLP trace has no name tag, as in MLflow"
    );
    let preview: Value = serde_json::from_str(info["request_preview"].as_str().unwrap()).unwrap();
    assert_eq!(preview, json!({"question": "what is mlflow?", "k": 2}));
}

/// Before the root arrives, a trace's record spans all its spans so far: a later batch with an earlier span
/// moves its start back.
#[tokio::test]
async fn spans_without_their_root_widen_the_record_to_the_earliest() {
    let server = server_with_experiments(2).await;
    let (_, spans) = captured_spans();
    let child = spans[1].clone();
    let earliest_ms = 1_795_000_000_000_i64;
    let at = |span_id: u8, start_ms: i64| Span {
        span_id: SpanId([span_id; 8]),
        start_time_unix_nano: u64::try_from(start_ms).unwrap() * 1_000_000,
        end_time_unix_nano: Some(u64::try_from(start_ms + 10).unwrap() * 1_000_000),
        ..child.clone()
    };
    let request_time = || async {
        server
            .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
            .await
            .json()["trace"]["trace_info"]["request_time"]
            .clone()
    };
    post_spans(&server, &[at(1, earliest_ms + 5_000)]).await;
    assert_eq!(
        request_time().await,
        format_rfc3339_millis(earliest_ms + 5_000).as_str()
    );
    post_spans(&server, &[at(2, earliest_ms)]).await;
    assert_eq!(
        request_time().await,
        format_rfc3339_millis(earliest_ms).as_str()
    );
}

#[tokio::test]
async fn search_batch_get_tags_and_delete() {
    let server = server_with_experiments(2).await;
    let (_, spans) = captured_spans();
    post_spans(&server, &spans).await;
    start_trace_v3(&server).await;
    let error_request = fixture_json("wire/v3_start_trace_v3_error.json")["req_body"].clone();
    assert_eq!(
        server
            .json("POST", "/api/3.0/mlflow/traces", &error_request)
            .await
            .status,
        200
    );
    let error_id = error_request["trace"]["trace_info"]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let search = json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "2"}}],
                        "max_results": 1, "order_by": ["timestamp_ms DESC"]});
    let first = server
        .json("POST", "/api/3.0/mlflow/traces/search", &search)
        .await
        .json();
    assert_eq!(
        first["traces"][0]["trace_id"],
        error_id.as_str(),
        "newest first"
    );
    let mut next = search.clone();
    next["page_token"] = first["next_page_token"].clone();
    let second = server
        .json("POST", "/api/3.0/mlflow/traces/search", &next)
        .await
        .json();
    assert_eq!(second["traces"][0]["trace_id"], TRACE_ID);
    assert!(second.get("next_page_token").is_none());

    let batch = server
        .get(&format!(
            "/api/3.0/mlflow/traces/batchGet?trace_ids={TRACE_ID}&trace_ids={error_id}"
        ))
        .await
        .json();
    assert_eq!(batch["traces"][0]["spans"].as_array().unwrap().len(), 3);
    assert_eq!(batch["traces"][1]["trace_info"]["state"], "ERROR");
    // Read in one go, answered in the order asked, a repeat repeated, any spelling of an id accepted.
    let bare = TRACE_ID.trim_start_matches("tr-");
    let batch = server
        .get(&format!(
            "/api/3.0/mlflow/traces/batchGet?trace_ids={error_id}&trace_ids={bare}&trace_ids={error_id}"
        ))
        .await
        .json();
    let order: Vec<&str> = batch["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|trace| trace["trace_info"]["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [error_id.as_str(), TRACE_ID, error_id.as_str()]);
    assert_eq!(batch["traces"][1]["spans"].as_array().unwrap().len(), 3);
    assert_eq!(batch["traces"][0], batch["traces"][2]);
    let missing = server
        .get(&format!(
            "/api/3.0/mlflow/traces/batchGet?trace_ids={TRACE_ID}&trace_ids=tr-0000000000000000000000000000dead"
        ))
        .await;
    assert_eq!(missing.status.as_u16(), 404);
    let message = missing.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("tr-0000000000000000000000000000dead"),
        "{message}"
    );

    let tag_path = format!("/api/2.0/mlflow/traces/{TRACE_ID}/tags");
    assert_eq!(
        server
            .json("PATCH", &tag_path, &json!({"key": "after", "value": "yes"}))
            .await
            .json(),
        json!({})
    );
    let info = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json();
    assert_eq!(info["trace"]["trace_info"]["tags"]["after"], "yes");
    assert_eq!(
        server
            .json("DELETE", &tag_path, &json!({"key": "after"}))
            .await
            .status,
        200
    );
    let missing_tag = server
        .json("DELETE", &tag_path, &json!({"key": "after"}))
        .await;
    assert_eq!(missing_tag.json()["error_code"], "RESOURCE_DOES_NOT_EXIST");

    delete_trace(&server, "2", &error_id).await;
    let gone = server
        .get(&format!("/api/3.0/mlflow/traces/{error_id}"))
        .await;
    assert_eq!(
        (gone.status.as_u16(), gone.json()["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
}

#[tokio::test]
async fn malformed_trace_requests_are_400_and_lose_nothing() {
    let server = server_with_experiments(2).await;
    start_trace_v3(&server).await;
    for body in [
        json!({}),
        json!({"trace": {"trace_info": {"trace_id": "not-a-v3-id", "request_time": "2026-11-23T23:59:16.869Z"}}}),
        json!({"trace": {"trace_info": {"trace_id": TRACE_ID, "request_time": "yesterday"}}}),
        json!({"trace": {"trace_info": {"trace_id": TRACE_ID, "state": "MAYBE"}}}),
    ] {
        let reply = server.json("POST", "/api/3.0/mlflow/traces", &body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json()["error_code"], "INVALID_PARAMETER_VALUE");
    }
    let unknown_experiment = {
        let mut request = fixture_json("wire/v3_start_trace_v3_pipeline.json")["req_body"].clone();
        request["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] =
            json!("99");
        server
            .json("POST", "/api/3.0/mlflow/traces", &request)
            .await
    };
    assert_eq!(unknown_experiment.status, 404);
    let search_with_filter = server
        .json(
            "POST",
            "/api/3.0/mlflow/traces/search",
            &json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "2"}}], "filter": "status == == 'OK'"}),
        )
        .await;
    assert_eq!(search_with_filter.status, 400);
    let info = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json();
    assert_eq!(
        info["trace"]["trace_info"]["state"], "OK",
        "the stored trace is untouched"
    );
}

#[tokio::test]
async fn traces_json_uploads_are_ingested_and_downloads_rebuilt() {
    let server = server_with_experiments(2).await;
    start_trace_v3(&server).await;
    // The pipeline trace's spans as the 3.x client uploads them.
    let (_, spans) = captured_spans();
    let upload = mlflow_tracing_core::codec::span_json::write_traces_json_v3(
        &mlflow_tracing_core::TraceData {
            spans: spans.clone(),
        },
    );
    let path =
        format!("/api/2.0/mlflow-artifacts/artifacts/2/traces/{TRACE_ID}/artifacts/traces.json");
    let reply = server
        .raw("PUT", &path, "text/plain", upload.clone().into_bytes())
        .await;
    reply.assert_ok("");
    assert_eq!(
        server
            .raw("PUT", &path, "text/plain", upload.into_bytes())
            .await
            .status,
        200,
        "uploads are idempotent"
    );

    let info = server
        .get(&format!("/api/3.0/mlflow/traces/{TRACE_ID}"))
        .await
        .json();
    assert_eq!(
        info["trace"]["trace_info"]["tags"]["mlflow.trace.spansLocation"],
        "TRACKING_STORE"
    );
    let downloaded = server.get(&path).await;
    assert_eq!(downloaded.content_type.as_deref(), Some("text/plain"));
    let read_back = mlflow_tracing_core::codec::span_json::read_traces_json(
        std::str::from_utf8(&downloaded.body).unwrap(),
    )
    .unwrap();
    assert_eq!(read_back.spans, spans);
    let via_ui = server
        .get(&format!(
            "/ajax-api/2.0/mlflow/get-trace-artifact?request_id={TRACE_ID}"
        ))
        .await;
    assert_eq!(via_ui.body, downloaded.body);

    let foreign = server.raw("PUT", "/api/2.0/mlflow-artifacts/artifacts/2/traces/tr-00000000000000000000000000000001/artifacts/traces.json", "text/plain", downloaded.body.to_vec()).await;
    assert_eq!(foreign.status, 400, "spans of another trace are refused");
    let garbage = server
        .raw("PUT", &path, "text/plain", b"{not json".to_vec())
        .await;
    assert_eq!(garbage.json()["error_code"], "INVALID_PARAMETER_VALUE");
}

#[tokio::test]
async fn search_filters_and_orders_like_mlflow() {
    let server = server_with_experiments(2).await;
    let (_, spans) = captured_spans();
    post_spans(&server, &spans).await;
    start_trace_v3(&server).await;
    let error_request = fixture_json("wire/v3_start_trace_v3_error.json")["req_body"].clone();
    server
        .json("POST", "/api/3.0/mlflow/traces", &error_request)
        .await;
    let error_id = error_request["trace"]["trace_info"]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let search = |filter: &str, order: &[&str]| {
        json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "2"}}],
               "filter": filter, "order_by": order})
    };
    let ids = |reply: serde_json::Value| -> Vec<String> {
        reply["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|info| info["trace_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let pipeline_only = vec![TRACE_ID.to_owned()];
    let error_only = vec![error_id.clone()];
    let none: Vec<String> = Vec::new();
    let cases: Vec<(&str, &Vec<String>)> = vec![
        ("status = 'OK'", &pipeline_only),
        ("trace.status = 'ERROR'", &error_only),
        ("attributes.status != 'OK'", &error_only),
        ("tags.env = 'test'", &pipeline_only),
        ("tags.env IS NULL", &error_only),
        ("tags.`mlflow.traceName` LIKE 'pipe%'", &pipeline_only),
        ("tags.`mlflow.traceName` LIKE 'PIPE%'", &none),
        ("tags.`mlflow.traceName` ILIKE 'PIPE%'", &pipeline_only),
        ("metadata.`mlflow.trace.session` = 'sess-1'", &pipeline_only),
        ("span.type = 'RETRIEVER'", &pipeline_only),
        ("span.name IN ('llm_call', 'nothing')", &pipeline_only),
        ("span.attributes.model = 'fake-model'", &pipeline_only),
        ("span.attributes.n = '3'", &pipeline_only),
        ("trace.text ILIKE '%WHAT IS MLFLOW%'", &pipeline_only),
        ("tags.`mlflow.traceName` RLIKE '^pipe.*e$'", &pipeline_only),
        ("tags.`mlflow.traceName` RLIKE '^Pipe'", &none),
        ("span.name RLIKE 'llm_c[a-z]+'", &pipeline_only),
        ("name RLIKE 'fail(ed|ing)'", &error_only),
        ("tags.env RLIKE '.'", &pipeline_only),
        ("timestamp_ms > 1795478356900", &error_only),
        ("execution_time_ms >= 80", &pipeline_only),
        ("name IN ('failing')", &error_only),
        ("status = 'OK' AND tags.env = 'nope'", &none),
        ("tags.x = 'a''; DROP TABLE traces; --'", &none),
    ];
    for (filter, expected) in cases {
        let reply = server
            .json(
                "POST",
                "/api/3.0/mlflow/traces/search",
                &search(filter, &[]),
            )
            .await;
        reply.assert_ok(filter);
        assert_eq!(&ids(reply.json()), expected, "{filter}");
    }
    let oldest_first = server
        .json(
            "POST",
            "/api/3.0/mlflow/traces/search",
            &search("", &["timestamp_ms ASC"]),
        )
        .await
        .json();
    assert_eq!(ids(oldest_first), [TRACE_ID.to_owned(), error_id.clone()]);

    for (filter, fragment) in [
        ("status = ", "position 9"),
        ("status = 'OK' OR name = 'x'", "AND"),
        ("colour = 'red'", "unknown key"),
        ("name RLIKE 'fail(ed'", "invalid RLIKE pattern"),
    ] {
        let reply = server
            .json(
                "POST",
                "/api/3.0/mlflow/traces/search",
                &search(filter, &[]),
            )
            .await;
        assert_eq!(reply.status, 400, "{filter}");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(fragment), "{filter}: {message}");
    }
    let all = server
        .json("POST", "/api/3.0/mlflow/traces/search", &search("", &[]))
        .await
        .json();
    assert_eq!(ids(all).len(), 2, "the injection attempt changed nothing");
}

/// Thirty traces, `env = 'a'` on 25 and `'b'` on 5, one second apart: a search by the common value pages
/// through a time-ordered scan, one by the rare value reads its traces by the value index; both give the
/// matching traces newest first, and every page follows on from the last.
#[tokio::test]
async fn search_by_common_and_rare_tag_values_gives_the_same_order_either_way() {
    let server = server_with_experiments(1).await;
    let base_ns: u64 = 1_795_000_000_000_000_000;
    let mut expected: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let spans: Vec<Value> = (0..30_u64)
        .map(|index| {
            let env = if index % 6 == 5 { "b" } else { "a" };
            let trace_hex = format!("{:032x}", 0xabc0_0000 + index);
            expected
                .entry(env)
                .or_default()
                .insert(0, format!("tr-{trace_hex}"));
            json!({"traceId": trace_hex, "spanId": format!("{:016x}", 0x100 + index), "name": "agent",
                   "startTimeUnixNano": (base_ns + index * 1_000_000_000).to_string(),
                   "endTimeUnixNano": (base_ns + index * 1_000_000_000 + 1_000_000).to_string(),
                   "attributes": [{"key": "mlflow.traceTag.env", "value": {"stringValue": env}}]})
        })
        .collect();
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": &spans}]}]});
    let reply = server
        .raw(
            "POST",
            "/v1/traces",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(reply.status, 400, "no experiment header");
    post_json_spans(&server, spans).await;

    for (env, page_size) in [("a", 1), ("a", 7), ("b", 100), ("b", 2)] {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = json!({
                "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "1"}}],
                "filter": format!("tags.env = '{env}' AND status = 'OK'"),
                "max_results": page_size,
            });
            if let Some(token) = &token {
                request["page_token"] = json!(token);
            }
            let reply = server
                .json("POST", "/api/3.0/mlflow/traces/search", &request)
                .await
                .json();
            found.extend(
                reply["traces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|info| info["trace_id"].as_str().unwrap().to_owned()),
            );
            match reply["next_page_token"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(found, expected[env], "env = {env}, pages of {page_size}");
    }
}

/// Sends OTLP/JSON spans to experiment 1.
async fn post_json_spans(server: &TestServer, spans: Vec<Value>) {
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]});
    let request = axum::http::Request::post("/v1/traces")
        .header("content-type", "application/json")
        .header("x-mlflow-experiment-id", "1")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    assert_eq!(server.send(request).await.status, 200);
}

/// Deletes one trace through the v2 endpoint the 3.x client uses.
async fn delete_trace(server: &TestServer, experiment_id: &str, trace_id: &str) {
    let deleted = server
        .json(
            "POST",
            "/api/2.0/mlflow/traces/delete-traces",
            &json!({"experiment_id": experiment_id, "request_ids": [trace_id]}),
        )
        .await
        .json();
    assert_eq!(deleted, json!({"traces_deleted": 1}));
}

/// The ids of a search's first page in experiment 1.
async fn search_ids(server: &TestServer, filter: &str, max_results: usize) -> Vec<String> {
    let request = json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "1"}}],
        "filter": filter,
        "max_results": max_results,
    });
    let reply = server
        .json("POST", "/api/3.0/mlflow/traces/search", &request)
        .await;
    reply.assert_ok(filter);
    reply.json()["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|info| info["trace_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the writer has put every stored span into the text index.
async fn wait_for_text_index(server: &TestServer) {
    let database = rusqlite::Connection::open(server.database_path()).unwrap();
    for _ in 0..500 {
        let (indexed, newest, stale): (i64, i64, bool) = database
            .query_row(
                "SELECT (SELECT indexed_through FROM span_text_progress), (SELECT COALESCE(MAX(rowid), 0) FROM spans), \
                 EXISTS (SELECT 1 FROM span_text_stale)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        if indexed >= newest && !stale {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the text index did not catch up in 5 s");
}

/// Forty traces asking routine questions, one second apart, two of them about a giraffe (one capitalised).
/// Searched as soon as they are stored (the spans the index has not reached are read directly) and again
/// once they are all indexed, the answers are the same: a rare word is found and checked as written (LIKE
/// keeps case, ILIKE does not), a pattern without a three-character run scans. The index follows a span
/// re-sent with new content and a deleted trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_search_finds_words_through_the_index_and_follows_changes() {
    let server = server_with_experiments(1).await;
    let base_ns: u64 = 1_795_000_000_000_000_000;
    let span = |index: u64, question: &str| {
        json!({"traceId": format!("{:032x}", 0xfee0_0000 + index), "spanId": format!("{:016x}", 0x200 + index),
               "name": "agent",
               "startTimeUnixNano": (base_ns + index * 1_000_000_000).to_string(),
               "endTimeUnixNano": (base_ns + index * 1_000_000_000 + 1_000_000).to_string(),
               "attributes": [{"key": "mlflow.spanInputs",
                               "value": {"stringValue": json!({"question": question}).to_string()}}]})
    };
    let question = |index: u64| match index {
        7 => "is a Giraffe tall?".to_owned(),
        20 => "is a giraffe tall?".to_owned(),
        _ => format!("routine question number {index}"),
    };
    let id = |index: u64| format!("tr-{:032x}", 0xfee0_0000 + index);
    let none = Vec::<String>::new();
    let cases: Vec<(&str, usize, Vec<String>)> = vec![
        ("trace.text LIKE '%giraffe%'", 100, vec![id(20)]),
        (
            "trace.text ILIKE '%GIRAFFE tall%'",
            100,
            vec![id(20), id(7)],
        ),
        ("span.content LIKE '%Gir_ffe%'", 100, vec![id(7)]),
        ("trace.text LIKE '%G_r_f_e%'", 100, vec![id(7)]),
        ("trace.text LIKE '%elephant%'", 100, none.clone()),
        // A quote is part of the pattern, not index syntax.
        ("trace.text LIKE '%\"giraffe\"%'", 100, none.clone()),
        (
            "trace.text LIKE '%routine question%' AND trace.text ILIKE '%NUMBER 3%'",
            100,
            [39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 3].map(id).to_vec(),
        ),
        (
            "trace.text LIKE '%routine%'",
            3,
            vec![id(39), id(38), id(37)],
        ),
    ];
    post_json_spans(
        &server,
        (0..40).map(|index| span(index, &question(index))).collect(),
    )
    .await;
    for indexed in [false, true] {
        if indexed {
            wait_for_text_index(&server).await;
        }
        for (filter, max_results, expected) in &cases {
            assert_eq!(
                &search_ids(&server, filter, *max_results).await,
                expected,
                "{filter}, indexed: {indexed}"
            );
        }
    }

    // The same span again with new content: found by its new text at once, then re-indexed.
    post_json_spans(&server, vec![span(20, "is a zebra striped?")]).await;
    assert_eq!(
        search_ids(&server, "trace.text LIKE '%zebra%'", 100).await,
        [id(20)]
    );
    assert_eq!(
        search_ids(&server, "trace.text ILIKE '%giraffe%'", 100).await,
        [id(7)]
    );

    delete_trace(&server, "1", &id(7)).await;
    assert_eq!(
        search_ids(&server, "trace.text ILIKE '%giraffe%'", 100).await,
        none
    );
    // Deleting the newest span lets SQLite reuse its rowid: the indexer's mark goes down with it, so the new
    // span is searched directly and then indexed like any other.
    wait_for_text_index(&server).await;
    delete_trace(&server, "1", &id(39)).await;
    post_json_spans(&server, vec![span(41, "is an okapi shy?")]).await;
    assert_eq!(
        search_ids(&server, "trace.text LIKE '%okapi%'", 100).await,
        [id(41)]
    );
    wait_for_text_index(&server).await;
    let database = rusqlite::Connection::open(server.database_path()).unwrap();
    let indexed = |trigrams: &str| -> i64 {
        database
            .query_row(
                "SELECT COUNT(*) FROM span_text WHERE span_text MATCH ?1",
                [trigrams],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        indexed("raf iff ffe"),
        0,
        "neither the replaced nor the deleted text is left in the index"
    );
    assert_eq!(indexed("zeb ebr bra"), 1);
    assert_eq!(indexed("kap api"), 1);
    assert_eq!(indexed("rou out uti tin ine"), 37);
}
