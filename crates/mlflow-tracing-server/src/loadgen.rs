//! `mlflow-tracing loadgen`: OTLP ingest load against a tracking server, with the figures the server is
//! judged by — acknowledged spans per second, request latency percentiles, server memory idle and under load.
//!
//! Without `--target` it starts this binary's own server as a child process on a fresh SQLite file, so the
//! memory it reports is the server's alone; `--mlflow <path to the mlflow executable>` runs the same load
//! against a real `mlflow server` afterwards, for the ratio.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::{EventAttributes, JsonText, Span, SpanId, SpanStatus, TraceId, keys};
use prost::Message;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub clients: usize,
    pub duration: Duration,
    pub spans_per_trace: usize,
    /// Traces per export request: 1 as MLflow's client exports each finished trace, more as an OpenTelemetry
    /// batch span processor sends up to 512 spans at once.
    pub traces_per_request: usize,
    pub target: Option<String>,
    pub mlflow: Option<PathBuf>,
}

/// The measured figures of one run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub label: String,
    pub requests: u64,
    pub spans: u64,
    pub failures: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub idle_rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

impl LoadReport {
    pub fn spans_per_second(&self) -> f64 {
        self.spans as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        let rss = |kib: Option<u64>| {
            kib.map_or_else(
                || "n/a".to_owned(),
                |kib| format!("{:.1} MB", kib as f64 / 1024.0),
            )
        };
        println!(
            "{:<24} {:>10.0} spans/s  {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  failures {:>4}  RSS idle {}  peak {}",
            self.label,
            self.spans_per_second(),
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.failures,
            rss(self.idle_rss_kib),
            rss(self.peak_rss_kib),
        );
    }
}

/// A server process started for the run, stopped on drop.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    _directory: TempDirectory,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct TempDirectory(pub(crate) PathBuf);

impl Drop for TempDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn wait_healthy(base: &str, deadline: Duration) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    while started.elapsed() < deadline {
        if agent
            .get(&format!("{base}/health"))
            .call()
            .is_ok_and(|response| response.status() == 200)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the server at {base} did not become healthy within {deadline:?}")
}

pub(crate) fn spawn_server(
    program: &Path,
    arguments: &[String],
    directory: TempDirectory,
    port: u16,
) -> anyhow::Result<Spawned> {
    let child = Command::new(program)
        .args(arguments)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let spawned = Spawned {
        child,
        _directory: directory,
    };
    wait_healthy(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60))?;
    Ok(spawned)
}

/// This binary's server on a fresh SQLite file in a temporary directory: the process, its base URL and the
/// database file.
pub(crate) fn spawn_own_server(label: &str) -> anyhow::Result<(Spawned, String, PathBuf)> {
    let port = free_port()?;
    let directory = temp_directory(label)?;
    let database = directory.0.join(format!("{label}.db"));
    let uri = format!("sqlite:///{}", database.display());
    let arguments = [
        "server",
        "--port",
        &port.to_string(),
        "--backend-store-uri",
        &uri,
    ]
    .map(str::to_owned);
    let server = spawn_server(&std::env::current_exe()?, &arguments, directory, port)?;
    Ok((server, format!("http://127.0.0.1:{port}"), database))
}

pub(crate) fn temp_directory(label: &str) -> anyhow::Result<TempDirectory> {
    let path = std::env::temp_dir().join(format!(
        "mlflow-tracing-loadgen-{label}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&path)?;
    Ok(TempDirectory(path))
}

/// A xorshift generator: cheap, and different per client.
pub(crate) struct Random(pub(crate) u64);

impl Random {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn bytes16(&mut self) -> [u8; 16] {
        let mut bytes = [0_u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        bytes
    }

    pub(crate) fn trace_id(&mut self) -> TraceId {
        TraceId(self.bytes16())
    }

    pub(crate) fn span_id(&mut self) -> SpanId {
        SpanId(self.next().to_be_bytes())
    }
}

/// One trace of `spans` spans: a root and children, as an agent makes them.
fn trace_spans(random: &mut Random, spans: usize) -> Vec<Span> {
    let trace_id = random.trace_id();
    let start = crate::now_unix_nanos();
    let root_id = random.span_id();
    (0..spans)
        .map(|index| {
            let span_id = if index == 0 {
                root_id
            } else {
                random.span_id()
            };
            let mut attributes = mlflow_tracing_core::Attributes::default();
            attributes.insert(
                keys::SPAN_TYPE.into(),
                JsonText::from_str_value(if index == 0 { "AGENT" } else { "TOOL" }),
            );
            attributes.insert(
                keys::SPAN_INPUTS.into(),
                JsonText::from_raw(format!(r#"{{"question":"load {index}","k":3}}"#)),
            );
            attributes.insert(
                keys::SPAN_OUTPUTS.into(),
                JsonText::from_raw(format!(r#""answer {index}""#)),
            );
            Span {
                trace_id,
                span_id,
                parent_id: (index > 0).then_some(root_id),
                name: if index == 0 {
                    "agent".into()
                } else {
                    format!("tool_{index}")
                },
                start_time_unix_nano: start + index as u64 * 1000,
                end_time_unix_nano: Some(start + 1_000_000),
                status: SpanStatus::ok(),
                attributes,
                events: Vec::new(),
                links: Vec::new(),
            }
        })
        .collect()
}

/// An encoded export request and where every id and timestamp sits in it: a client makes the next request by
/// writing fresh ids and the current time over the old ones, so the load measures the server, not the
/// client's encoder, and its traces arrive as a real client's do: new ids, starting now.
pub(crate) struct RequestTemplate {
    body: Vec<u8>,
    /// For each distinct id of the template: its length (16 or 8) and every offset it occurs at (a root's id
    /// also occurs as its children's parent id).
    ids: Vec<(usize, Vec<usize>)>,
    /// For each distinct timestamp (a `fixed64`, little-endian): nanoseconds after the template's earliest,
    /// and every offset it occurs at.
    times: Vec<(u64, Vec<usize>)>,
}

impl RequestTemplate {
    fn new(random: &mut Random, traces: usize, spans_per_trace: usize) -> RequestTemplate {
        let spans: Vec<Span> = (0..traces)
            .flat_map(|_| trace_spans(random, spans_per_trace))
            .collect();
        RequestTemplate::from_spans(&spans)
    }

    /// A template of these spans; their ids must be random, so no other bytes of the body match them.
    pub(crate) fn from_spans(spans: &[Span]) -> RequestTemplate {
        let body = export_request(spans, &EventAttributes::new()).encode_to_vec();
        let mut ids: Vec<Vec<u8>> = Vec::new();
        let mut times: Vec<u64> = Vec::new();
        for span in spans {
            for id in [span.trace_id.0.to_vec(), span.span_id.0.to_vec()] {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let events = span.events.iter().map(|event| event.time_unix_nano);
            for time in [Some(span.start_time_unix_nano), span.end_time_unix_nano]
                .into_iter()
                .flatten()
                .chain(events)
            {
                if !times.contains(&time) {
                    times.push(time);
                }
            }
        }
        let earliest = times.iter().copied().min().unwrap_or(0);
        RequestTemplate {
            ids: ids
                .into_iter()
                .map(|id| (id.len(), offsets_of(&body, &id)))
                .collect(),
            times: times
                .into_iter()
                .map(|time| (time - earliest, offsets_of(&body, &time.to_le_bytes())))
                .collect(),
            body,
        }
    }

    /// The template with new ids and times: new traces, same shape, starting now.
    pub(crate) fn fresh(&mut self, random: &mut Random) -> &[u8] {
        for (length, offsets) in &self.ids {
            let id = random.bytes16();
            for offset in offsets {
                self.body[*offset..*offset + length].copy_from_slice(&id[..*length]);
            }
        }
        let now = crate::now_unix_nanos();
        for (after_earliest, offsets) in &self.times {
            let time = (now + after_earliest).to_le_bytes();
            for offset in offsets {
                self.body[*offset..*offset + time.len()].copy_from_slice(&time);
            }
        }
        &self.body
    }
}

/// Every offset at which `needle` occurs in `body`.
fn offsets_of(body: &[u8], needle: &[u8]) -> Vec<usize> {
    body.windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(offset, _)| offset)
        .collect()
}

/// The HTTP client of a load or bench thread. Every phase of a request has `limit` except resolving the
/// address: ureq resolves it again for every request, and a limit on that makes it spawn a thread per request
/// (it cost the load generator as much CPU as the rest of its work). The target is an IP literal anyway.
pub(crate) fn client_agent(limit: Duration) -> ureq::Agent {
    let limit = Some(limit);
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(limit)
        .timeout_send_request(limit)
        .timeout_send_body(limit)
        .timeout_recv_response(limit)
        .timeout_recv_body(limit)
        .build()
        .into()
}

/// Runs `clients` threads posting requests to `base` until `duration` has passed.
fn run_load(label: &str, base: &str, options: &LoadOptions, server_pid: Option<u32>) -> LoadReport {
    let idle_rss_kib = server_pid.and_then(rss_kib);
    let spans = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.clients)
        .map(|client| {
            let (spans, failures, running) = (
                Arc::clone(&spans),
                Arc::clone(&failures),
                Arc::clone(&running),
            );
            let url = format!("{base}/v1/traces");
            let per_request = (options.spans_per_trace * options.traces_per_request) as u64;
            let (traces, spans_per_trace) = (options.traces_per_request, options.spans_per_trace);
            std::thread::spawn(move || {
                let agent = client_agent(Duration::from_secs(30));
                let mut random = Random(0x9e37_79b9_7f4a_7c15_u64 ^ ((client as u64 + 1) << 32));
                let mut template = RequestTemplate::new(&mut random, traces, spans_per_trace);
                let mut latencies = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let body = template.fresh(&mut random);
                    let sent = Instant::now();
                    let result = agent
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .header("x-mlflow-experiment-id", "0")
                        .send(body);
                    latencies.push(sent.elapsed());
                    match result {
                        Ok(response) if response.status() == 200 => {
                            spans.fetch_add(per_request, Ordering::Relaxed);
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut peak_rss_kib = idle_rss_kib;
    while started.elapsed() < options.duration {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(current) = server_pid.and_then(rss_kib) {
            peak_rss_kib = Some(peak_rss_kib.map_or(current, |peak| peak.max(current)));
        }
    }
    running.store(false, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap_or_default())
        .collect();
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |fraction: f64| {
        latencies
            .get(
                ((latencies.len() as f64 * fraction) as usize)
                    .min(latencies.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or_default()
    };
    LoadReport {
        label: label.to_owned(),
        requests: latencies.len() as u64,
        spans: spans.load(Ordering::Relaxed),
        failures: failures.load(Ordering::Relaxed),
        elapsed,
        p50: percentile(0.50),
        p99: percentile(0.99),
        idle_rss_kib,
        peak_rss_kib,
    }
}

/// Runs the load and prints the figures.
pub fn run(options: &LoadOptions) -> anyhow::Result<Vec<LoadReport>> {
    println!(
        "OTLP ingest: {} clients, {}-span traces, {} per request, {:?} per server, writes acknowledged after COMMIT and a fsync of the SQLite WAL",
        options.clients, options.spans_per_trace, options.traces_per_request, options.duration
    );
    let mut reports = Vec::new();
    match &options.target {
        Some(target) => reports.push(run_load(
            "target",
            target.trim_end_matches('/'),
            options,
            None,
        )),
        None => {
            let (server, base, _) = spawn_own_server("ours")?;
            reports.push(run_load(
                "mlflow-tracing server",
                &base,
                options,
                Some(server.child.id()),
            ));
        }
    }
    reports[0].print();
    if let Some(mlflow) = &options.mlflow {
        let port = free_port()?;
        let directory = temp_directory("mlflow")?;
        let uri = format!("sqlite:///{}", directory.0.join("mlflow.db").display());
        let artifacts = directory.0.join("artifacts").display().to_string();
        let arguments = [
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
            "--backend-store-uri",
            &uri,
            "--artifacts-destination",
            &artifacts,
        ]
        .map(str::to_owned);
        let server = spawn_server(mlflow, &arguments, directory, port)?;
        let report = run_load(
            "mlflow server (reference)",
            &format!("http://127.0.0.1:{port}"),
            options,
            Some(server.child.id()),
        );
        report.print();
        println!(
            "ratio: {:.1}x the spans per second of mlflow server",
            reports[0].spans_per_second() / report.spans_per_second().max(1e-9)
        );
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use mlflow_tracing_core::codec::otlp::spans_from_request;
    use mlflow_tracing_core::otlp_proto::collector::trace::v1::ExportTraceServiceRequest;

    use super::*;

    fn decode(body: &[u8]) -> Vec<Span> {
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        spans_from_request(&request)
            .unwrap()
            .into_iter()
            .flat_map(|batch| batch.spans)
            .collect()
    }

    #[test]
    fn a_fresh_request_has_new_ids_and_starts_now_in_the_same_shape() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let mut template = RequestTemplate::new(&mut random, 2, 3);
        let first = decode(&template.body.clone());
        let before = crate::now_unix_nanos();
        let fresh = decode(template.fresh(&mut random));

        assert_eq!(fresh.len(), 6);
        for (old, new) in first.iter().zip(&fresh) {
            assert_ne!(old.trace_id, new.trace_id);
            assert_ne!(old.span_id, new.span_id);
            assert_eq!(old.name, new.name);
            assert_eq!(old.attributes, new.attributes);
            assert!(new.start_time_unix_nano >= before);
            let took = |span: &Span| span.end_time_unix_nano.unwrap() - span.start_time_unix_nano;
            assert_eq!(took(old), took(new));
        }
        // Each trace keeps its tree: children name their own root as parent, roots start their trace.
        for trace in fresh.chunks(3) {
            assert_eq!(trace[0].parent_id, None);
            assert!(
                trace[1..]
                    .iter()
                    .all(|child| child.parent_id == Some(trace[0].span_id)
                        && child.trace_id == trace[0].trace_id
                        && child.start_time_unix_nano > trace[0].start_time_unix_nano)
            );
        }
        assert_ne!(fresh[0].trace_id, fresh[3].trace_id);
    }
}
