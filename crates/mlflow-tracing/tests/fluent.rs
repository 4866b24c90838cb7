//! The fluent API end to end: spans are recorded, nested, converted and buffered as MLflow traces.

use std::sync::Arc;

use mlflow_tracing::core::keys;
use mlflow_tracing::{
    Context, FutureExt, MlflowClient, SpanStatus, SpanStatusCode, SpanType, StartOptions, Trace,
    TraceState, TraceUpdate, get_current_active_span, get_last_active_trace_id_in_thread,
    get_trace, span, start_span, trace, trace_call, trace_iter, update_current_trace, with_span,
};
use serde::Serialize;
use serde_json::{Value, json};

/// The trace whose root ended last on this thread.
fn last_trace() -> Arc<Trace> {
    let trace_id = get_last_active_trace_id_in_thread().expect("a trace completed on this thread");
    get_trace(&trace_id).expect("the trace is in the in-process buffer")
}

fn span_named<'a>(trace: &'a Trace, name: &str) -> &'a mlflow_tracing::core::Span {
    trace
        .data
        .spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

fn spans_named<'a>(trace: &'a Trace, name: &str) -> Vec<&'a mlflow_tracing::core::Span> {
    trace
        .data
        .spans
        .iter()
        .filter(|span| span.name == name)
        .collect()
}

fn names(trace: &Trace) -> Vec<&str> {
    trace
        .data
        .spans
        .iter()
        .map(|span| span.name.as_str())
        .collect()
}

#[derive(Serialize, Debug, Clone)]
struct Document {
    id: u32,
    text: String,
}

#[trace(span_type = "RETRIEVER")]
fn retrieve(query: &str, k: usize) -> Vec<Document> {
    (0..k as u32)
        .map(|id| Document {
            id,
            text: format!("doc {id} about {query}"),
        })
        .collect()
}

#[trace(name = "pipeline", span_type = "CHAIN", attributes(team = "rust", n = 3, ratio = -0.5, "dotted.key" = true))]
fn pipeline(question: String, k: usize) -> String {
    let documents = retrieve(&question, k);
    format!("answer to {question} using {} docs", documents.len())
}

#[test]
fn decorated_functions_record_inputs_outputs_and_nesting() {
    let answer = pipeline("what is mlflow?".to_owned(), 2);
    assert_eq!(answer, "answer to what is mlflow? using 2 docs");
    let trace = last_trace();
    assert_eq!(names(&trace), ["pipeline", "retrieve"]);
    let root = span_named(&trace, "pipeline");
    let child = span_named(&trace, "retrieve");
    assert_eq!(child.parent_id, Some(root.span_id));
    assert_eq!(child.trace_id, root.trace_id);
    assert_eq!(
        root.inputs(),
        Some(json!({"question": "what is mlflow?", "k": 2}))
    );
    assert_eq!(
        root.outputs(),
        Some(json!("answer to what is mlflow? using 2 docs"))
    );
    assert_eq!(root.span_type(), SpanType::Chain);
    assert_eq!(root.attribute("team"), Some(json!("rust")));
    assert_eq!(root.attribute("n"), Some(json!(3)));
    assert_eq!(root.attribute("ratio"), Some(json!(-0.5)));
    assert_eq!(root.attribute("dotted.key"), Some(json!(true)));
    assert_eq!(
        root.attribute(keys::SPAN_FUNCTION_NAME),
        Some(json!("pipeline"))
    );
    assert_eq!(child.span_type(), SpanType::Retriever);
    assert_eq!(
        child.inputs(),
        Some(json!({"query": "what is mlflow?", "k": 2}))
    );
    assert_eq!(
        child.outputs().unwrap()[1],
        json!({"id": 1, "text": "doc 1 about what is mlflow?"})
    );
    assert!(child.start_time_unix_nano >= root.start_time_unix_nano);
    assert!(child.end_time_unix_nano <= root.end_time_unix_nano);

    let info = &trace.info;
    assert_eq!(info.trace_id, root.trace_id.to_mlflow());
    assert_eq!(info.state, TraceState::Ok);
    assert_eq!(info.tags[keys::TAG_TRACE_NAME], "pipeline");
    assert_eq!(info.trace_metadata[keys::META_SCHEMA_VERSION], "3");
    assert_eq!(
        info.request_preview.as_deref(),
        Some(r#"{"question":"what is mlflow?","k":2}"#)
    );
    assert_eq!(
        info.response_preview.as_deref(),
        Some(r#""answer to what is mlflow? using 2 docs""#)
    );
    assert_eq!(
        root.attribute(keys::TRACE_REQUEST_ID),
        Some(json!(info.trace_id))
    );
}

#[derive(Debug)]
struct OnlyDebug {
    #[allow(dead_code)]
    level: u8,
}

struct Opaque;

struct Agent {
    model: String,
}

impl Agent {
    #[trace(span_type = "AGENT")]
    fn run(&self, prompt: &str, settings: OnlyDebug, secret: Opaque) -> usize {
        let _ = secret;
        prompt.len() + self.model.len()
    }

    #[trace(skip(api_key))]
    fn call(&mut self, api_key: &str, question: &str) -> String {
        let _ = api_key;
        self.model.push('!');
        question.to_uppercase()
    }

    #[trace(skip_all)]
    fn hidden(self, value: i32) -> i32 {
        value
    }
}

#[trace]
fn generic_len<T: Serialize, U>(items: Vec<T>, extra: U) -> usize {
    let _ = extra;
    items.len()
}

#[test]
fn methods_generics_and_skips_record_what_they_can() {
    let agent = Agent { model: "m".into() };
    agent.run("hey", OnlyDebug { level: 2 }, Opaque);
    let span = &last_trace().data.spans[0];
    let inputs = span.inputs().unwrap();
    assert_eq!(inputs["prompt"], json!("hey"));
    assert_eq!(inputs["settings"], json!("OnlyDebug { level: 2 }"));
    assert!(
        inputs["secret"].as_str().unwrap().ends_with("Opaque>"),
        "{inputs}"
    );
    assert!(inputs.get("self").is_none());
    assert_eq!(span.outputs(), Some(json!(4)));

    let mut agent = Agent { model: "m".into() };
    assert_eq!(agent.call("sk-123", "q"), "Q");
    assert_eq!(
        last_trace().data.spans[0].inputs(),
        Some(json!({"question": "q"}))
    );
    assert_eq!(agent.hidden(5), 5);
    assert_eq!(last_trace().data.spans[0].inputs(), Some(json!({})));

    assert_eq!(generic_len(vec![1, 2], Opaque), 2);
    let inputs = last_trace().data.spans[0].inputs().unwrap();
    assert_eq!(inputs["items"], json!([1, 2]));
    assert!(inputs["extra"].as_str().unwrap().starts_with('<'));
}

#[derive(Debug, thiserror::Error)]
#[error("tool failed for {input}")]
struct ToolError {
    input: String,
    #[source]
    cause: std::num::ParseIntError,
}

#[trace(span_type = "TOOL")]
fn parse_tool(input: &str) -> Result<i64, ToolError> {
    input.parse::<i64>().map_err(|cause| ToolError {
        input: input.to_owned(),
        cause,
    })
}

#[trace]
fn failing_agent(input: &str) -> Result<i64, ToolError> {
    let value = parse_tool(input)?;
    Ok(value * 2)
}

#[test]
fn errors_become_error_status_and_exception_events() {
    assert_eq!(failing_agent("21").unwrap(), 42);
    let ok_trace = last_trace();
    assert_eq!(
        span_named(&ok_trace, "parse_tool").outputs(),
        Some(json!(21))
    );

    assert!(failing_agent("x").is_err());
    let trace = last_trace();
    assert_eq!(trace.info.state, TraceState::Error);
    assert_eq!(trace.info.trace_metadata[keys::META_TRACE_OUTPUTS], "");
    assert_eq!(trace.info.response_preview, None);
    let tool = span_named(&trace, "parse_tool");
    assert_eq!(tool.status.code, SpanStatusCode::Error);
    assert_eq!(tool.status.message, "ToolError: tool failed for x");
    assert_eq!(tool.outputs(), None);
    let event = &tool.events[0];
    assert_eq!(event.name, "exception");
    assert_eq!(event.attributes["exception.type"], json!("ToolError"));
    assert_eq!(
        event.attributes["exception.message"],
        json!("tool failed for x")
    );
    let stacktrace = event.attributes["exception.stacktrace"].as_str().unwrap();
    assert!(
        stacktrace.contains("invalid digit found in string"),
        "{stacktrace}"
    );
    assert_eq!(tool.attribute(keys::SPAN_LOG_LEVEL), Some(json!(40)));
}

#[trace]
fn panicking(depth: u32) -> u32 {
    if depth == 0 {
        panic!("tool exploded");
    }
    panicking(depth - 1)
}

#[test]
fn a_panic_marks_the_spans_failed_and_keeps_unwinding() {
    let outcome = std::panic::catch_unwind(|| panicking(1));
    assert!(outcome.is_err(), "the panic must reach the caller");
    let trace = last_trace();
    assert_eq!(trace.data.spans.len(), 2);
    assert_eq!(trace.info.state, TraceState::Error);
    for span in &trace.data.spans {
        assert_eq!(span.status.code, SpanStatusCode::Error, "{}", span.name);
        assert_eq!(
            span.events[0].attributes["exception.message"],
            json!("tool exploded")
        );
    }
    assert!(
        get_current_active_span().is_none(),
        "the stack is clean after the panic"
    );
}

#[test]
fn start_span_guards_nest_and_carry_everything_set_on_them() {
    {
        let root = span("conversation")
            .span_type(SpanType::Agent)
            .inputs(&json!({"q": "hi"}))
            .start();
        root.set_attribute("user_tier", &"gold");
        {
            let step = start_span("step");
            step.set_span_type("CUSTOM_STEP");
            step.set_inputs(&[1, 2, 3]);
            step.add_event("thinking", &json!({"step": 1, "note": "hi"}));
            step.set_attributes([("a", 1), ("b", 2)]);
            assert_eq!(step.parent_id(), root.span_id());
            assert_eq!(step.trace_id(), root.trace_id());
            let current = get_current_active_span().unwrap();
            assert_eq!(current.span_id(), step.span_id().unwrap());
            current.set_outputs(&"set through the handle");
            assert_eq!(current.outputs(), Some(json!("set through the handle")));
        }
        with_span("closure", |span| {
            span.set_status(SpanStatus::error("bad answer"));
        });
        assert!(update_current_trace(
            TraceUpdate::new()
                .tag("env", "test")
                .session_id("sess-1")
                .user("alice")
                .metadata("custom.meta", "m1")
        ));
        root.set_outputs(&"bye");
    }
    assert!(
        !update_current_trace(TraceUpdate::new().tag("late", "x")),
        "no trace is current any more"
    );
    let trace = last_trace();
    assert_eq!(names(&trace), ["conversation", "step", "closure"]);
    let step = span_named(&trace, "step");
    assert_eq!(step.span_type(), SpanType::Custom("CUSTOM_STEP".into()));
    assert_eq!(step.inputs(), Some(json!([1, 2, 3])));
    assert_eq!(step.outputs(), Some(json!("set through the handle")));
    assert_eq!(step.events[0].name, "thinking");
    assert_eq!(step.events[0].attributes["step"], json!(1));
    assert_eq!(
        (step.attribute("a"), step.attribute("b")),
        (Some(json!(1)), Some(json!(2)))
    );
    let closure = span_named(&trace, "closure");
    assert_eq!(
        (closure.status.code, closure.status.message.as_str()),
        (SpanStatusCode::Error, "bad answer")
    );
    let root = span_named(&trace, "conversation");
    assert_eq!(root.attribute("user_tier"), Some(json!("gold")));
    assert_eq!(trace.info.tags["env"], "test");
    assert_eq!(trace.info.trace_metadata[keys::META_SESSION], "sess-1");
    assert_eq!(trace.info.trace_metadata[keys::META_USER], "alice");
    assert_eq!(trace.info.trace_metadata["custom.meta"], "m1");
    assert_eq!(
        trace.info.state,
        TraceState::Ok,
        "a failed child does not fail the trace"
    );
}

fn external_score(truth: &[i32], predicted: &[i32]) -> f64 {
    let hits = truth.iter().zip(predicted).filter(|(a, b)| a == b).count();
    hits as f64 / truth.len() as f64
}

struct LlmClient;

impl LlmClient {
    fn complete(&self, prompt: &str) -> Result<String, std::io::Error> {
        if prompt.is_empty() {
            return Err(std::io::Error::other("empty prompt"));
        }
        Ok(format!("echo: {prompt}"))
    }
}

#[test]
fn trace_call_wraps_functions_and_methods_you_do_not_own() {
    let truth = vec![1, 0, 1];
    let score = trace_call!(external_score(&truth, &[1, 1, 1]));
    assert!((score - 2.0 / 3.0).abs() < 1e-9);
    let span = &last_trace().data.spans[0];
    assert_eq!(span.name, "external_score");
    assert_eq!(
        span.inputs(),
        Some(json!({"&truth": [1, 0, 1], "arg1": [1, 1, 1]}))
    );
    assert_eq!(span.outputs().unwrap().as_f64().unwrap(), score);

    let client = LlmClient;
    let prompt = "hello".to_owned();
    let completion = trace_call!(span_type = "LLM", client.complete(&prompt)).unwrap();
    assert_eq!(completion, "echo: hello");
    let span = &last_trace().data.spans[0];
    assert_eq!(
        (span.name.as_str(), span.span_type()),
        ("complete", SpanType::Llm)
    );
    assert_eq!(span.outputs(), Some(json!("echo: hello")));

    assert!(trace_call!(client.complete("")).is_err());
    let span = &last_trace().data.spans[0];
    assert_eq!(span.status.message, "Error: empty prompt");
}

#[test]
fn iterators_record_chunks_as_events_and_outputs_as_the_list() {
    {
        let _root = start_span("stream-root");
        let tokens: Vec<String> = trace_iter(
            span("generate").span_type(SpanType::Llm),
            ["Hel", "lo"].map(String::from),
        )
        .map(|token| token.to_uppercase())
        .collect();
        assert_eq!(tokens, ["HEL", "LO"]);
    }
    let trace = last_trace();
    let generate = span_named(&trace, "generate");
    assert_eq!(
        generate.parent_id,
        Some(span_named(&trace, "stream-root").span_id)
    );
    assert_eq!(generate.outputs(), Some(json!(["Hel", "lo"])));
    let event_names: Vec<_> = generate
        .events
        .iter()
        .map(|event| event.name.as_str())
        .collect();
    assert_eq!(event_names, ["mlflow.chunk.item.0", "mlflow.chunk.item.1"]);
    assert_eq!(
        generate.events[1].attributes[keys::CHUNK_VALUE],
        json!("\"lo\"")
    );
}

#[test]
fn context_carries_the_parent_into_threads_scopes_and_pools() {
    {
        let _root = start_span("fan-out");
        let context = Context::current();
        let handles: Vec<_> = (0..3)
            .map(|worker| {
                std::thread::spawn(context.clone().wrap(move || {
                    let _span = start_span(format!("worker-{worker}"));
                    let _inner = start_span("inner");
                }))
            })
            .collect();
        handles
            .into_iter()
            .for_each(|handle| handle.join().unwrap());
        std::thread::scope(|scope| {
            scope.spawn(Context::current().wrap(|| {
                let _span = start_span("scoped");
            }));
        });
        mlflow_tracing::spawn(|| {
            let _span = start_span("spawned");
        })
        .join()
        .unwrap();
    }
    let trace = last_trace();
    assert_eq!(trace.data.spans.len(), 1 + 3 * 2 + 2);
    let root_id = span_named(&trace, "fan-out").span_id;
    for name in ["worker-0", "worker-1", "worker-2", "scoped", "spawned"] {
        assert_eq!(span_named(&trace, name).parent_id, Some(root_id), "{name}");
    }
    let worker_ids: Vec<_> = trace
        .data
        .spans
        .iter()
        .filter(|span| span.name.starts_with("worker"))
        .map(|span| span.span_id)
        .collect();
    for inner in spans_named(&trace, "inner") {
        assert!(worker_ids.contains(&inner.parent_id.unwrap()));
    }
}

#[test]
fn a_thread_without_context_starts_its_own_trace() {
    let _root = start_span("parent-without-propagation");
    let parent_trace = get_current_active_span().unwrap().trace_id();
    let child_trace = std::thread::spawn(|| {
        let span = start_span("orphan");
        span.trace_id().unwrap()
    })
    .join()
    .unwrap();
    assert_ne!(child_trace, parent_trace);
}

#[trace(span_type = "TOOL")]
async fn slow_tool(name: String, delay_ms: u64) -> String {
    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    let _step = start_span("tool-step");
    format!("{name} done")
}

#[trace(span_type = "AGENT")]
async fn async_agent(question: &str) -> Vec<String> {
    let first = slow_tool("search".into(), 5).await;
    let (second, third) = tokio::join!(slow_tool("calc".into(), 3), slow_tool("lookup".into(), 1));
    let spawned = tokio::spawn(slow_tool("background".into(), 2).in_current_trace())
        .await
        .unwrap();
    vec![question.to_owned(), first, second, third, spawned]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_spans_nest_across_awaits_joins_and_spawns() {
    let answer = async_agent("why?").await;
    assert_eq!(answer.len(), 5);
    let trace_id = mlflow_tracing::get_last_active_trace_id().unwrap();
    let trace = get_trace(&trace_id).unwrap();
    let root = span_named(&trace, "async_agent");
    assert!(root.is_root());
    assert_eq!(root.inputs(), Some(json!({"question": "why?"})));
    assert_eq!(root.outputs().unwrap()[4], json!("background done"));
    let tools = spans_named(&trace, "slow_tool");
    assert_eq!(tools.len(), 4);
    for tool in &tools {
        assert_eq!(tool.parent_id, Some(root.span_id));
        assert!(
            tool.duration_ns().unwrap() >= 1_000_000,
            "the span covers the await"
        );
    }
    let steps = spans_named(&trace, "tool-step");
    assert_eq!(steps.len(), 4);
    for step in steps {
        assert!(
            tools
                .iter()
                .any(|tool| Some(tool.span_id) == step.parent_id)
        );
    }
}

#[test]
fn bad_payloads_are_recorded_sensibly() {
    #[trace]
    fn odd_inputs(nan: f64, infinite: f32, not_json: &str, nested: Vec<f64>) -> f64 {
        let _ = (infinite, not_json, nested);
        nan
    }
    odd_inputs(f64::NAN, f32::INFINITY, "{not json", vec![1.0, f64::NAN]);
    let span = &last_trace().data.spans[0];
    assert_eq!(
        span.inputs(),
        Some(
            json!({"nan": "NaN", "infinite": "inf", "not_json": "{not json", "nested": [1.0, null]})
        )
    );
    assert_eq!(span.outputs(), Some(json!("NaN")));

    #[trace]
    fn big(blob: String) -> usize {
        blob.len()
    }
    big("x".repeat(10 * 1024 * 1024));
    let trace = last_trace();
    let inputs = trace.data.spans[0].attributes[keys::SPAN_INPUTS].as_str();
    assert!(inputs.len() < 1_100_000, "{}", inputs.len());
    assert!(
        inputs.contains("[truncated by mlflow-tracing: original size 10485771 bytes]"),
        "{}",
        &inputs[inputs.len() - 100..]
    );
    assert!(serde_json::from_str::<Value>(inputs).is_ok());
}

#[test]
fn spans_ended_out_of_order_under_an_attached_span_keep_their_traces() {
    let client = MlflowClient::new();
    let two = client.start_trace("two", StartOptions::new()).unwrap();
    let one = start_span("one");
    let a = start_span("a");
    let attached = two.context().attach();
    let b = start_span("b");
    // Ends the span under the attached one first: the frames above it move down the stack.
    drop(a);
    let c = start_span("c");
    let d = start_span("d");
    // Ends the attached span's frame while spans started under it are still open.
    drop(attached);
    let e = start_span("e");
    for guard in [e, d, c, b] {
        drop(guard);
    }
    drop(one);
    let trace_one = last_trace();
    two.end();
    let trace_two = get_trace(&two.trace_id()).expect("trace two finished");

    assert_eq!(names(&trace_one), ["one", "a"]);
    let one = span_named(&trace_one, "one");
    assert_eq!(span_named(&trace_one, "a").parent_id, Some(one.span_id));

    let mut in_two = names(&trace_two);
    in_two.sort_unstable();
    assert_eq!(in_two, ["b", "c", "d", "e", "two"]);
    let parent_of = |name: &str| span_named(&trace_two, name).parent_id;
    let id_of = |name: &str| Some(span_named(&trace_two, name).span_id);
    assert_eq!(parent_of("b"), id_of("two"));
    assert_eq!(parent_of("c"), id_of("b"));
    assert_eq!(parent_of("d"), id_of("c"));
    assert_eq!(parent_of("e"), id_of("d"));
}

#[test]
fn a_span_made_current_again_on_its_own_thread_is_still_read_and_changed_in_place() {
    {
        let _root = start_span("root");
        let step = start_span("step");
        step.set_inputs(&json!({"q": 1}));
        let live = step.live();
        // Its own context attached above it: the stack holds a remote frame of the span over its frame.
        let _again = live.context().attach();
        assert_eq!(live.inputs(), Some(json!({"q": 1})));
        assert_eq!(live.name().as_deref(), Some("step"));
        live.set_attribute("seen", &true);
        assert_eq!(live.attribute("seen"), Some(json!(true)));
    }
    let trace = last_trace();
    let step = span_named(&trace, "step");
    assert_eq!(step.inputs(), Some(json!({"q": 1})));
    assert_eq!(step.attributes["seen"].to_value(), json!(true));
}

#[tokio::test]
async fn attribute_expressions_are_evaluated_when_the_span_starts() {
    #[trace(attributes(doubled = n * 2, label = format!("item-{n}"), fixed = "static"))]
    fn item(n: u32) -> u32 {
        n
    }

    async fn fetch_label() -> Result<String, std::fmt::Error> {
        Ok("fetched".to_owned())
    }

    // `.await` and `?` in an attribute expression work as they do in the function's body.
    #[trace(attributes(source = fetch_label().await?))]
    async fn awaited(x: u8) -> Result<u8, std::fmt::Error> {
        Ok(x)
    }

    {
        let _root = start_span("root");
        item(21);
        awaited(7).await.unwrap();
    }
    let trace = last_trace();
    let item = span_named(&trace, "item");
    assert_eq!(item.attributes["doubled"].to_value(), json!(42));
    assert_eq!(item.attributes["label"].to_value(), json!("item-21"));
    assert_eq!(item.attributes["fixed"].to_value(), json!("static"));
    let awaited = span_named(&trace, "awaited");
    assert_eq!(awaited.attributes["source"].to_value(), json!("fetched"));
    assert_eq!(awaited.outputs(), Some(json!(7)));
}

/// What the thread's stack holds, as the model in the test below sees it.
enum ModelFrame {
    Span { name: String, trace: usize },
    Attached { trace: usize },
}

struct ModelTrace {
    id: String,
    /// The root's name, for a fluent trace (a client trace's root ends at the end of the test).
    fluent_root: Option<String>,
    completed: bool,
    /// (span, parent) names of the spans that ended while the trace was open.
    expected: std::collections::BTreeSet<(String, Option<String>)>,
}

impl ModelTrace {
    /// A span of this trace ended: it is in the trace unless the trace completed first, and the trace
    /// completes when its fluent root ends.
    fn ended(&mut self, name: String, parent: Option<String>) {
        if self.completed {
            return;
        }
        self.completed = self.fluent_root.as_ref() == Some(&name);
        self.expected.insert((name, parent));
    }
}

#[test]
fn random_orders_of_starts_ends_and_attached_contexts_nest_every_span_where_it_started() {
    // xorshift64: a fixed seed per round, so a failure names the round that reproduces it.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }
    let client = MlflowClient::new();
    for round in 0..40_u64 {
        let mut random = 0x9E37_79B9_7F4A_7C15 ^ (round + 1);
        let mut traces: Vec<ModelTrace> = Vec::new();
        let mut names: std::collections::HashMap<mlflow_tracing::SpanId, String> =
            std::collections::HashMap::new();
        let mut clients = Vec::new();
        for index in 0..2 {
            let root = client
                .start_trace(format!("c{index}"), StartOptions::new())
                .unwrap();
            names.insert(root.span_id(), format!("c{index}"));
            traces.push(ModelTrace {
                id: root.trace_id(),
                fluent_root: None,
                completed: false,
                expected: [(format!("c{index}"), None)].into(),
            });
            clients.push(root);
        }
        let mut model: Vec<ModelFrame> = Vec::new();
        let mut guards: Vec<(String, usize, Option<String>, mlflow_tracing::SpanGuard)> =
            Vec::new();
        let mut attached: Vec<(usize, mlflow_tracing::ContextGuard)> = Vec::new();
        // The client traces are the first two, so an attached frame of trace `i` is client root `ci`.
        let frame_name = |frame: &ModelFrame| match frame {
            ModelFrame::Span { name, .. } => name.clone(),
            ModelFrame::Attached { trace } => format!("c{trace}"),
        };
        for step in 0..120 {
            let roll = next(&mut random) % 10;
            if roll < 5 || (guards.is_empty() && attached.is_empty()) {
                let name = format!("r{round}s{step}");
                let parent = model.last().filter(|frame| {
                    let (ModelFrame::Span { trace, .. } | ModelFrame::Attached { trace }) = frame;
                    !traces[*trace].completed
                });
                let guard = start_span(name.clone());
                let trace_id = guard.trace_id().expect("recorded");
                let (trace, parent_name) = match parent {
                    Some(frame) => {
                        let (ModelFrame::Span { trace, .. } | ModelFrame::Attached { trace }) =
                            frame;
                        (*trace, Some(frame_name(frame)))
                    }
                    None => {
                        traces.push(ModelTrace {
                            id: trace_id.clone(),
                            fluent_root: Some(name.clone()),
                            completed: false,
                            expected: Default::default(),
                        });
                        (traces.len() - 1, None)
                    }
                };
                assert_eq!(trace_id, traces[trace].id, "round {round} step {step}");
                let parent_seen = guard.parent_id().map(|id| names[&id].clone());
                assert_eq!(parent_seen, parent_name, "round {round} step {step}");
                names.insert(guard.span_id().unwrap(), name.clone());
                model.push(ModelFrame::Span {
                    name: name.clone(),
                    trace,
                });
                guards.push((name, trace, parent_name, guard));
            } else if roll < 8 && !guards.is_empty() {
                let at = (next(&mut random) % guards.len() as u64) as usize;
                let (name, trace, parent_name, guard) = guards.remove(at);
                let position = model
                    .iter()
                    .rposition(
                        |frame| matches!(frame, ModelFrame::Span { name: n, .. } if *n == name),
                    )
                    .unwrap();
                model.remove(position);
                drop(guard);
                traces[trace].ended(name, parent_name);
            } else if roll < 9 {
                let which = (next(&mut random) % 2) as usize;
                attached.push((which, clients[which].context().attach()));
                model.push(ModelFrame::Attached { trace: which });
            } else if !attached.is_empty() {
                let at = (next(&mut random) % attached.len() as u64) as usize;
                let (which, guard) = attached.remove(at);
                // A context guard removes the highest remote frame of its span.
                let position = model
                    .iter()
                    .rposition(
                        |frame| matches!(frame, ModelFrame::Attached { trace } if *trace == which),
                    )
                    .unwrap();
                model.remove(position);
                drop(guard);
            }
        }
        // Whatever is left ends in reverse order of start, then the client traces.
        while let Some((name, trace, parent_name, guard)) = guards.pop() {
            drop(guard);
            traces[trace].ended(name, parent_name);
        }
        drop(attached);
        for root in &clients {
            root.end();
        }
        for model_trace in &traces {
            let trace = get_trace(&model_trace.id).expect("every trace completed");
            let recorded: std::collections::BTreeSet<(String, Option<String>)> = trace
                .data
                .spans
                .iter()
                .map(|span| {
                    let parent = span.parent_id.map(|id| names[&id].clone());
                    (span.name.clone(), parent)
                })
                .collect();
            assert_eq!(recorded, model_trace.expected, "round {round}");
        }
    }
}

/// A value whose `Serialize` panics halfway through.
struct PanicsWhileSerializing;

impl Serialize for PanicsWhileSerializing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("written", "before the panic")?;
        panic!("a Serialize implementation failed");
    }
}

#[test]
fn set_inputs_with_a_value_over_the_limit_refused_or_panicking_keeps_every_other_payload() {
    {
        let _root = start_span("root");
        {
            let before = start_span("before");
            before.set_inputs(&json!({"kept": 1}));
        }
        let span = start_span("odd");
        span.set_inputs(&"y".repeat(10 * 1024 * 1024));
        let refused = std::collections::BTreeMap::from([(vec![1], 1)]);
        span.set_attribute("refused", &refused);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            span.set_attribute("panicked", &PanicsWhileSerializing);
        }));
        assert!(outcome.is_err());
        #[trace]
        fn takes_panicking(first: &str, value: &PanicsWhileSerializing) {
            let _ = (first, value);
        }
        let outcome =
            std::panic::catch_unwind(|| takes_panicking("kept?", &PanicsWhileSerializing));
        assert!(outcome.is_err());
        span.set_outputs(&json!({"after": "the panic"}));
    }
    let trace = last_trace();
    assert_eq!(
        span_named(&trace, "before").inputs(),
        Some(json!({"kept": 1}))
    );
    let odd = span_named(&trace, "odd");
    let inputs = odd.attributes[keys::SPAN_INPUTS].as_str();
    assert!(inputs.len() < 1_100_000, "{}", inputs.len());
    assert!(
        inputs.ends_with("[truncated by mlflow-tracing: original size 10485762 bytes]\""),
        "{}",
        &inputs[inputs.len() - 100..]
    );
    assert_eq!(
        odd.attributes["refused"].to_value(),
        json!("<unserializable value>")
    );
    assert!(!odd.attributes.contains_key("panicked"));
    assert_eq!(odd.outputs(), Some(json!({"after": "the panic"})));
    // The traced function's span ended failed, without the inputs its arguments did not finish.
    let traced = span_named(&trace, "takes_panicking");
    assert_eq!(traced.status.code, SpanStatusCode::Error);
    assert_eq!(traced.inputs(), None);
    assert_eq!(traced.parent_id, Some(odd.span_id));
}

/// A value that records a span of its own while it is serialized (say, one that traces its conversion).
struct RecordsWhileSerializing;

impl Serialize for RecordsWhileSerializing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let inner = start_span("inner");
        inner.set_inputs(&json!({"nested": true}));
        inner.set_attribute("depth", &2);
        drop(inner);
        serializer.serialize_str("outer value")
    }
}

#[test]
fn a_payload_whose_serialization_records_payloads_keeps_them_all() {
    {
        let _root = start_span("root");
        let outer = start_span("outer");
        outer.set_inputs(&RecordsWhileSerializing);
        outer.set_outputs(&json!({"done": 1}));
    }
    let trace = last_trace();
    let outer = span_named(&trace, "outer");
    let inner = span_named(&trace, "inner");
    assert_eq!(outer.inputs(), Some(json!("outer value")));
    assert_eq!(outer.outputs(), Some(json!({"done": 1})));
    assert_eq!(inner.inputs(), Some(json!({"nested": true})));
    assert_eq!(inner.attributes["depth"].to_value(), json!(2));
    assert_eq!(inner.parent_id, Some(outer.span_id));
}

/// A value that calls a traced function while it is serialized.
struct CallsTracedWhileSerializing;

#[trace(attributes(unit = "cm"))]
fn to_centimetres(inches: f64) -> f64 {
    inches * 2.54
}

impl Serialize for CallsTracedWhileSerializing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(to_centimetres(2.0))
    }
}

#[test]
fn a_traced_function_whose_arguments_and_result_record_payloads_keeps_them_all() {
    #[trace]
    fn convert(
        value: &CallsTracedWhileSerializing,
        other: &RecordsWhileSerializing,
        n: i64,
    ) -> CallsTracedWhileSerializing {
        let _ = (value, other, n);
        CallsTracedWhileSerializing
    }
    {
        let _root = start_span("root");
        let _ = convert(&CallsTracedWhileSerializing, &RecordsWhileSerializing, 7);
    }
    let trace = last_trace();
    let convert = span_named(&trace, "convert");
    assert_eq!(
        convert.inputs(),
        Some(json!({"value": 5.08, "other": "outer value", "n": 7}))
    );
    assert_eq!(convert.outputs(), Some(json!(5.08)));
    let inner = span_named(&trace, "inner");
    assert_eq!(inner.inputs(), Some(json!({"nested": true})));
    assert_eq!(inner.attributes["depth"].to_value(), json!(2));
    assert_eq!(inner.parent_id, Some(convert.span_id));
    let conversions = spans_named(&trace, "to_centimetres");
    // One while the arguments were recorded, one while the result was.
    assert_eq!(conversions.len(), 2);
    for span in conversions {
        assert_eq!(span.inputs(), Some(json!({"inches": 2.0})));
        assert_eq!(span.outputs(), Some(json!(5.08)));
        assert_eq!(span.attributes["unit"].to_value(), json!("cm"));
        assert_eq!(span.parent_id, Some(convert.span_id));
    }
}

#[derive(Debug)]
struct Node {
    #[allow(dead_code)]
    next: std::cell::RefCell<Option<std::rc::Rc<Node>>>,
}

#[test]
fn self_referencing_debug_output_is_cut_off() {
    // Runs on a thread with a generous stack: the cut-off bounds the output, each level of the cycle still
    // costs a few stack frames.
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(|| {
            #[trace]
            fn takes_cycle(node: std::rc::Rc<Node>) -> u8 {
                let _ = node;
                1
            }
            let node = std::rc::Rc::new(Node {
                next: std::cell::RefCell::new(None),
            });
            *node.next.borrow_mut() = Some(node.clone());
            takes_cycle(node.clone());
            *node.next.borrow_mut() = None;
            let inputs = last_trace().data.spans[0].inputs().unwrap();
            let text = inputs["node"].as_str().unwrap();
            assert!(
                text.starts_with("Node { next: RefCell { value: Some(Node"),
                "{}",
                &text[..60]
            );
            assert!(text.contains("[truncated by mlflow-tracing: original size more than"));
        })
        .unwrap()
        .join()
        .unwrap();
}

#[trace(span_type = "TOOL", attributes(kind = "lookup"))]
fn lookup(key: String, weight: f64) -> Vec<String> {
    let span = get_current_active_span().unwrap();
    span.set_attribute("cache", &format!("miss:{key}"));
    vec![format!("{key}-a"), format!("{key}-b")]
}

#[test]
fn payloads_survive_spans_ending_on_other_threads_and_in_any_order() {
    {
        let root = span("mixed-root")
            .inputs(&json!({"query": "root input"}))
            .start();
        lookup("main-1".into(), 1.0);
        let context = Context::current();
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                std::thread::spawn(context.clone().wrap(move || {
                    for item in 0..3 {
                        lookup(format!("w{worker}-{item}"), f64::from(item));
                    }
                }))
            })
            .collect();
        workers
            .into_iter()
            .for_each(|handle| handle.join().unwrap());
        // Guards dropped out of order: the outer one first.
        let outer = start_span("outer");
        outer.set_inputs(&"outer input");
        let inner = start_span("inner");
        inner.set_outputs(&"inner output");
        drop(outer);
        drop(inner);
        lookup("main-2".into(), 2.0);
        root.set_outputs(&"root output");
    }
    let trace = last_trace();
    assert_eq!(trace.data.spans.len(), 1 + 1 + 6 + 2 + 1);
    assert_eq!(
        span_named(&trace, "mixed-root").inputs(),
        Some(json!({"query": "root input"}))
    );
    assert_eq!(
        span_named(&trace, "mixed-root").outputs(),
        Some(json!("root output"))
    );
    assert_eq!(
        span_named(&trace, "outer").inputs(),
        Some(json!("outer input"))
    );
    assert_eq!(
        span_named(&trace, "inner").outputs(),
        Some(json!("inner output"))
    );
    let lookups = spans_named(&trace, "lookup");
    assert_eq!(lookups.len(), 8);
    for span in lookups {
        let key = span.inputs().unwrap()["key"].as_str().unwrap().to_owned();
        assert_eq!(
            span.outputs(),
            Some(json!([format!("{key}-a"), format!("{key}-b")])),
            "{key}"
        );
        assert_eq!(
            span.attribute("cache"),
            Some(json!(format!("miss:{key}"))),
            "{key}"
        );
        assert_eq!(span.attribute("kind"), Some(json!("lookup")));
    }
}

#[test]
fn a_second_trace_interleaved_on_the_same_thread_keeps_both_payload_sets() {
    let other_root = mlflow_tracing::span("other-root").start_detached(None);
    let other_context = other_root.context();
    {
        let _root = span("first-root").inputs(&"first").start();
        lookup("first-child".into(), 1.0);
        {
            let _attached = other_context.attach();
            lookup("other-child".into(), 2.0);
        }
        lookup("first-after".into(), 3.0);
    }
    let first = last_trace();
    let keys: Vec<_> = first
        .data
        .spans
        .iter()
        .filter(|span| span.name == "lookup")
        .map(|span| span.inputs().unwrap()["key"].clone())
        .collect();
    assert_eq!(keys, [json!("first-child"), json!("first-after")]);
    for span in spans_named(&first, "lookup") {
        let key = span.inputs().unwrap()["key"].as_str().unwrap().to_owned();
        assert_eq!(
            span.outputs(),
            Some(json!([format!("{key}-a"), format!("{key}-b")]))
        );
    }
    other_root.end();
    let other = get_trace(&other_root.trace_id()).unwrap();
    let child = span_named(&other, "lookup");
    assert_eq!(
        child.inputs(),
        Some(json!({"key": "other-child", "weight": 2.0}))
    );
    assert_eq!(
        child.outputs(),
        Some(json!(["other-child-a", "other-child-b"]))
    );
    assert_eq!(child.parent_id, Some(other_root.span_id()));
}
