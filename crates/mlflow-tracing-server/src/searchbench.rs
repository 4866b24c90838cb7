//! `mlflow-tracing searchbench`: read latency at scale. Starts a server on a fresh SQLite file, fills it over
//! OTLP with many small traces (tagged `env`, a tenth failed, one in 500 tagged `canary`) and one large trace,
//! then times, over HTTP, what a UI or a script does most: a search's first page of 100 by tag and status, a
//! `batchGet` of those 100 with their spans, and a `traces/get` of the large trace.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mlflow_tracing_core::{Attributes, JsonText, Span, SpanId, SpanStatus, TraceId, keys};
use serde_json::{Value, json};

use crate::loadgen::{Random, RequestTemplate, rss_kib, spawn_own_server};

/// What to run.
#[derive(Debug, Clone)]
pub struct SearchBenchOptions {
    /// Small traces to store.
    pub traces: usize,
    /// Spans of the large trace.
    pub large_trace_spans: usize,
    /// Timed repetitions of each query.
    pub repetitions: usize,
}

const TRACES_PER_REQUEST: usize = 500;
const SEED_CLIENTS: usize = 4;

fn new_span(random: &mut Random, trace_id: TraceId, parent: Option<SpanId>, name: String) -> Span {
    let question = format!("what does {name} do?");
    span_asking(random, trace_id, parent, name, &question)
}

fn span_asking(
    random: &mut Random,
    trace_id: TraceId,
    parent: Option<SpanId>,
    name: String,
    question: &str,
) -> Span {
    let start = crate::now_unix_nanos();
    let mut attributes = Attributes::default();
    attributes.insert(
        keys::SPAN_TYPE.into(),
        JsonText::from_str_value(if parent.is_none() { "AGENT" } else { "TOOL" }),
    );
    attributes.insert(
        keys::SPAN_INPUTS.into(),
        JsonText::from_value(&serde_json::json!({ "question": question })),
    );
    attributes.insert(
        keys::SPAN_OUTPUTS.into(),
        JsonText::from_raw(r#""it answers questions""#),
    );
    Span {
        trace_id,
        span_id: random.span_id(),
        parent_id: parent,
        name,
        start_time_unix_nano: start,
        end_time_unix_nano: Some(start + 2_000_000),
        status: SpanStatus::ok(),
        attributes,
        events: Vec::new(),
        links: Vec::new(),
    }
}

/// Root spans of `TRACES_PER_REQUEST` one-span traces: `env` cycles through ten values, every tenth failed,
/// the first of each request (one in 500, 0.2 %) is a canary and the only one asking about a refund.
fn seed_template(random: &mut Random) -> RequestTemplate {
    let spans: Vec<Span> = (0..TRACES_PER_REQUEST)
        .map(|index| {
            let id = random.trace_id();
            let name = format!("agent_{}", index % 7);
            let (mut span, env) = if index == 0 {
                let question = "how do I get a refund for my order?";
                let span = span_asking(random, id, None, name, question);
                (span, "canary".to_owned())
            } else {
                (
                    new_span(random, id, None, name),
                    format!("env-{}", index % 10),
                )
            };
            span.attributes.insert(
                format!("{}env", keys::TRACE_TAG_PREFIX).into(),
                JsonText::from_str_value(&env),
            );
            if index % 10 == 1 {
                span.status = SpanStatus::error("tool failed");
            }
            span
        })
        .collect();
    RequestTemplate::from_spans(&spans)
}

fn agent() -> ureq::Agent {
    crate::loadgen::client_agent(Duration::from_secs(120))
}

fn post_otlp(agent: &ureq::Agent, base: &str, body: &[u8]) -> anyhow::Result<()> {
    let mut response = agent
        .post(&format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("x-mlflow-experiment-id", "0")
        .send(body)?;
    if response.status() != 200 {
        bail!(
            "OTLP export answered {}: {}",
            response.status(),
            response.body_mut().read_to_string()?
        );
    }
    Ok(())
}

/// Fills the store with `traces` small traces from several clients.
fn seed(base: &str, traces: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let requests = traces.div_ceil(TRACES_PER_REQUEST);
    let workers: Vec<_> = (0..SEED_CLIENTS)
        .map(|client| {
            let base = base.to_owned();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = agent();
                let mut random = Random(0x2545_f491_4f6c_dd1d ^ ((client as u64 + 1) << 40));
                let mut template = seed_template(&mut random);
                for _ in (client..requests).step_by(SEED_CLIENTS) {
                    post_otlp(&agent, &base, template.fresh(&mut random))?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a seeding client panicked"))??;
    }
    Ok(started.elapsed())
}

/// One trace of `spans` spans: a root, ten steps, the rest spread under the steps.
fn large_trace(random: &mut Random, spans: usize) -> (String, Vec<u8>) {
    let id = random.trace_id();
    let root = new_span(random, id, None, "large_agent".into());
    let steps: Vec<Span> = (0..10.min(spans.saturating_sub(1)))
        .map(|step| new_span(random, id, Some(root.span_id), format!("step_{step}")))
        .collect();
    let mut all = vec![root];
    for index in 0..spans.saturating_sub(1 + steps.len()) {
        let parent = steps[index % steps.len()].span_id;
        all.push(new_span(random, id, Some(parent), format!("tool_{index}")));
    }
    all.extend(steps);
    let body = mlflow_tracing_core::codec::otlp::export_request(
        &all,
        &mlflow_tracing_core::EventAttributes::default(),
    );
    (id.to_mlflow(), prost::Message::encode_to_vec(&body))
}

/// Waits until the server's writer has put every stored span into the text index (it does so between
/// writes), reading its progress from the database file; returns how long that took.
fn wait_for_text_index(database: &std::path::Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let connection = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    loop {
        let (indexed, newest): (i64, i64) = connection.query_row(
            "SELECT (SELECT indexed_through FROM span_text_progress), \
             (SELECT COALESCE(MAX(rowid), 0) FROM spans)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if indexed >= newest {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!(
                "the text index is still {} spans behind after an hour",
                newest - indexed
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Latency percentiles of `repetitions` runs of `work`.
fn time(
    repetitions: usize,
    mut work: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Timing> {
    work()?; // warm the page cache and the statement cache
    let mut samples = Vec::with_capacity(repetitions);
    for _ in 0..repetitions {
        let started = Instant::now();
        work()?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let at = |fraction: f64| {
        samples[((samples.len() as f64 * fraction) as usize).min(samples.len() - 1)]
    };
    Ok(Timing {
        p50: at(0.5),
        p99: at(0.99),
    })
}

struct Timing {
    p50: Duration,
    p99: Duration,
}

impl Timing {
    fn print(&self, label: &str, target_ms: f64) {
        let p50 = self.p50.as_secs_f64() * 1000.0;
        println!(
            "{label:<58} p50 {p50:>8.2} ms  p99 {:>8.2} ms  (target p50 <= {target_ms} ms: {})",
            self.p99.as_secs_f64() * 1000.0,
            if p50 <= target_ms { "met" } else { "not met" }
        );
    }
}

fn search(agent: &ureq::Agent, base: &str, filter: &str) -> anyhow::Result<Vec<String>> {
    let body = json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}],
        "filter": filter,
        "max_results": 100,
        "order_by": ["timestamp_ms DESC"],
    });
    let mut response = agent
        .post(&format!("{base}/api/3.0/mlflow/traces/search"))
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())?;
    let text = response.body_mut().read_to_string()?;
    if response.status() != 200 {
        bail!("search answered {}: {text}", response.status());
    }
    let reply: Value = serde_json::from_str(&text)?;
    let traces = reply["traces"]
        .as_array()
        .context("no traces in the answer")?;
    if traces
        .iter()
        .any(|trace| trace["request_preview"].is_null())
    {
        bail!("a search result has no request preview");
    }
    Ok(traces
        .iter()
        .filter_map(|trace| trace["trace_id"].as_str().map(str::to_owned))
        .collect())
}

fn get_text(agent: &ureq::Agent, url: &str) -> anyhow::Result<String> {
    let mut response = agent.get(url).call()?;
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()?;
    if response.status() != 200 {
        bail!(
            "GET {url} answered {}: {}",
            response.status(),
            &text[..text.len().min(300)]
        );
    }
    Ok(text)
}

/// Runs the benchmark and prints the figures.
pub fn run(options: &SearchBenchOptions) -> anyhow::Result<()> {
    let (server, base, database) = spawn_own_server("search")?;

    println!(
        "search bench: {} one-span traces (tag env, 10% failed, 0.2% canary) and one {}-span trace, over OTLP",
        options.traces, options.large_trace_spans
    );
    let seeded = seed(&base, options.traces)?;
    println!(
        "seeded in {:.1} s ({:.0} traces/s); database {:.0} MB",
        seeded.as_secs_f64(),
        options.traces as f64 / seeded.as_secs_f64(),
        std::fs::metadata(&database).map_or(0, |meta| meta.len()) as f64 / 1e6
    );
    let agent = agent();
    let mut random = Random(0x853c_49e6_748f_ea9b);
    let (large_id, large_body) = large_trace(&mut random, options.large_trace_spans);
    post_otlp(&agent, &base, &large_body)?;
    // Timed only once the writer has indexed everything, so no indexing runs beside the searches.
    let caught_up = wait_for_text_index(&database)?;
    println!(
        "text index complete {:.1} s after seeding ended ({} spans)",
        caught_up.as_secs_f64(),
        options.traces + options.large_trace_spans
    );

    let common = "tags.env = 'env-3' AND attributes.status = 'OK'";
    let rare = "tags.env = 'canary' AND attributes.status = 'OK'";
    let mut first_page = Vec::new();
    time(options.repetitions, || {
        first_page = search(&agent, &base, common)?;
        Ok(())
    })?
    .print(&format!("search, first 100 by {common}"), 10.0);
    if first_page.len() != 100 {
        bail!("the search found {} traces, not 100", first_page.len());
    }
    time(options.repetitions, || {
        search(&agent, &base, rare).map(drop)
    })?
    .print(
        "search, first 100 by a tag on 0.2% of traces + status",
        10.0,
    );

    // Full text over span content: a word in 0.2 % of the traces, then one in all of them.
    let rare_text = "trace.text LIKE '%refund%'";
    let found = search(&agent, &base, rare_text)?;
    if found.len() != 100.min(options.traces.div_ceil(TRACES_PER_REQUEST)) {
        bail!("the text search found {} traces", found.len());
    }
    time(options.repetitions, || {
        search(&agent, &base, rare_text).map(drop)
    })?
    .print("search, first 100 by a word in 0.2% of traces", 10.0);
    let common_text = "trace.text ILIKE '%Answers QUESTIONS%'";
    time(options.repetitions, || {
        search(&agent, &base, common_text).map(drop)
    })?
    .print("search, first 100 by a phrase in every trace (ILIKE)", 10.0);

    let batch_url = format!(
        "{base}/api/3.0/mlflow/traces/batchGet?{}",
        first_page
            .iter()
            .map(|id| format!("trace_ids={id}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    // Checked once, then timed as a client that reads the whole answer.
    let reply: Value = serde_json::from_str(&get_text(&agent, &batch_url)?)?;
    let traces = reply["traces"].as_array().map_or(0, Vec::len);
    if traces != 100 {
        bail!("batchGet returned {traces} traces");
    }
    time(options.repetitions, || {
        get_text(&agent, &batch_url).map(drop)
    })?
    .print("batchGet of those 100 traces with spans", 50.0);

    let get_url = format!("{base}/api/3.0/mlflow/traces/get?trace_id={large_id}");
    let reply: Value = serde_json::from_str(&get_text(&agent, &get_url)?)?;
    let spans = reply["trace"]["spans"].as_array().map_or(0, Vec::len);
    if spans != options.large_trace_spans {
        bail!("traces/get returned {spans} spans");
    }
    time(options.repetitions.min(50), || {
        get_text(&agent, &get_url).map(drop)
    })?
    .print(
        &format!("traces/get of the {}-span trace", options.large_trace_spans),
        100.0,
    );
    if let Some(rss) = rss_kib(server.child.id()) {
        println!("server RSS after the run: {:.1} MB", rss as f64 / 1024.0);
    }
    Ok(())
}
