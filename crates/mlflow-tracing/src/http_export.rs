//! Exporters that send traces over HTTP: to an MLflow tracking server (ours or MLflow's own), or as plain
//! OTLP to any collector. They run on the export thread, so blocking calls are fine; every call has a
//! timeout, and failures are retried with backoff before the batch is reported failed.
//!
//! Against an MLflow server the exporter does what the Python 3.x client does:
//!
//! ```text
//!  first batch: GET /version (≥ 3.4 → OTLP), resolve the experiment (id, or name: get-by-name → create)
//!  each batch:  POST /v1/traces (all spans, OTLP protobuf, x-mlflow-experiment-id)
//!               POST /api/3.0/mlflow/traces per trace (the finished TraceInfo)
//!               PUT  …/artifacts/traces.json when the reply does not say the spans are in its database
//!                    (older servers, or /v1/traces answered 501)
//! ```

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mlflow_tracing_core::codec::otlp::export_request;
use mlflow_tracing_core::codec::span_json::write_traces_json_v3;
use mlflow_tracing_core::codec::trace_json::{DurationStyle, info_to_v3_json};
use mlflow_tracing_core::{EventAttributes, Span, Trace, TraceLocation, keys};
use prost::Message;
use serde_json::{Value, json};

use crate::export::{ExportError, Exporter};

const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(10);

/// A reply: status and body.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Blocking HTTP with auth headers, timeouts and retries on connection errors and 5xx.
struct HttpClient {
    /// For servers named by host name: the whole request, name lookup included, within [`TIMEOUT`].
    agent: ureq::Agent,
    /// For servers named by IP address or `localhost`: each phase within [`TIMEOUT`] but the lookup, which
    /// needs no DNS. (ureq looks the host up for every request and, with a time limit on that, spawns a
    /// thread to do it.)
    local_agent: ureq::Agent,
    base: String,
    headers: Vec<(String, String)>,
}

/// Whether the URL's host is an IP address or `localhost`, which resolve without asking DNS.
fn resolves_locally(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port
            .rsplit_once(':')
            .map_or(host_port, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

impl HttpClient {
    fn new(base: &str, headers: Vec<(String, String)>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let phase = Some(TIMEOUT);
        let local_agent = ureq::Agent::config_builder()
            .timeout_connect(phase)
            .timeout_send_request(phase)
            .timeout_send_body(phase)
            .timeout_recv_response(phase)
            .timeout_recv_body(phase)
            .http_status_as_error(false)
            .build()
            .into();
        HttpClient {
            agent,
            local_agent,
            base: base.trim_end_matches('/').to_owned(),
            headers,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, ExportError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let agent = if resolves_locally(&url) {
            &self.local_agent
        } else {
            &self.agent
        };
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = match method {
                "GET" => ureq::http::Request::get(&url),
                "PUT" => ureq::http::Request::put(&url),
                _ => ureq::http::Request::post(&url),
            }
            .header(
                "user-agent",
                concat!("mlflow-tracing-rs/", env!("CARGO_PKG_VERSION")),
            );
            if !content_type.is_empty() {
                request = request.header("content-type", content_type);
            }
            for (name, value) in self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .chain(extra.iter().copied())
            {
                request = request.header(name, value);
            }
            let request = request
                .body(body.to_vec())
                .map_err(|error| ExportError::new(format!("bad request for {url}: {error}")))?;
            match agent.run(request) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let body = response.body_mut().read_to_string().unwrap_or_default();
                    if status < 500 || attempt == ATTEMPTS {
                        return Ok(Reply { status, body });
                    }
                    last_error = format!("{method} {url}: HTTP {status}: {body}");
                }
                Err(error) => last_error = format!("{method} {url}: {error}"),
            }
            log::debug!(attempt = attempt, error:% = last_error; "retrying trace export");
            std::thread::sleep(backoff);
            backoff *= 2;
        }
        Err(ExportError::new(last_error))
    }

    fn get(&self, path: &str) -> Result<Reply, ExportError> {
        self.send("GET", path, "", &[], &[])
    }

    fn post_json(&self, path: &str, body: &Value) -> Result<Reply, ExportError> {
        self.send(
            "POST",
            path,
            "application/json",
            &[],
            body.to_string().as_bytes(),
        )
    }
}

/// Authentication headers from `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME`/`PASSWORD`.
fn auth_headers_from_env() -> Vec<(String, String)> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let Some(token) = variable("MLFLOW_TRACKING_TOKEN") {
        return vec![("authorization".to_owned(), format!("Bearer {token}"))];
    }
    match (
        variable("MLFLOW_TRACKING_USERNAME"),
        variable("MLFLOW_TRACKING_PASSWORD"),
    ) {
        (Some(user), Some(password)) => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            vec![("authorization".to_owned(), format!("Basic {encoded}"))]
        }
        _ => Vec::new(),
    }
}

fn resource_attributes() -> EventAttributes {
    [
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.name", "mlflow-tracing-rs"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), Value::from(value)))
    .collect()
}

/// Whether an MLflow version string is at least 3.4, the first to take spans over OTLP.
fn supports_otlp(version: &str) -> bool {
    let mut parts = version.trim().trim_matches('"').split('.').map(|part| {
        part.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (3, 4)
}

#[derive(Debug, Clone)]
enum ExperimentChoice {
    Id(String),
    Name(String),
    Default,
}

/// Sends traces to an MLflow tracking server: see the module docs.
pub struct MlflowExporter {
    client: HttpClient,
    choice: ExperimentChoice,
    experiment_id: Option<String>,
    otlp: Option<bool>,
}

impl std::fmt::Debug for MlflowExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowExporter")
            .field("tracking_uri", &self.client.base)
            .field("experiment", &self.choice)
            .field("otlp", &self.otlp)
            .finish()
    }
}

impl MlflowExporter {
    /// An exporter to the server at `tracking_uri` (`http://host:port`), with the authentication the
    /// environment gives.
    pub fn new(tracking_uri: &str) -> Self {
        MlflowExporter {
            client: HttpClient::new(tracking_uri, auth_headers_from_env()),
            choice: ExperimentChoice::Default,
            experiment_id: None,
            otlp: None,
        }
    }

    /// From `MLFLOW_TRACKING_URI` (when it is `http(s)://…`), `MLFLOW_EXPERIMENT_ID` or
    /// `MLFLOW_EXPERIMENT_NAME`.
    pub fn from_env() -> Option<Self> {
        let uri = std::env::var("MLFLOW_TRACKING_URI").ok()?;
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return None;
        }
        let mut exporter = MlflowExporter::new(&uri);
        if let Some(id) = std::env::var("MLFLOW_EXPERIMENT_ID")
            .ok()
            .filter(|id| !id.is_empty())
        {
            exporter = exporter.experiment_id(id);
        } else if let Some(name) = std::env::var("MLFLOW_EXPERIMENT_NAME")
            .ok()
            .filter(|name| !name.is_empty())
        {
            exporter = exporter.experiment_name(name);
        }
        Some(exporter)
    }

    /// Records traces into this experiment.
    pub fn experiment_id(mut self, experiment_id: impl Into<String>) -> Self {
        self.choice = ExperimentChoice::Id(experiment_id.into());
        self
    }

    /// Records traces into the experiment with this name, created when missing.
    pub fn experiment_name(mut self, name: impl Into<String>) -> Self {
        self.choice = ExperimentChoice::Name(name.into());
        self
    }

    fn resolve_experiment(&mut self) -> Result<String, ExportError> {
        if let Some(id) = &self.experiment_id {
            return Ok(id.clone());
        }
        let id = match self.choice.clone() {
            ExperimentChoice::Id(id) => id,
            ExperimentChoice::Default => "0".to_owned(),
            ExperimentChoice::Name(name) => {
                let query: String = form_encode(&[("experiment_name", &name)]);
                let found = self
                    .client
                    .get(&format!("/api/2.0/mlflow/experiments/get-by-name?{query}"))?;
                if found.is_success() {
                    json_string(&found.json()["experiment"]["experiment_id"]).ok_or_else(|| {
                        ExportError::new(format!(
                            "get-by-name answered without an id: {}",
                            found.body
                        ))
                    })?
                } else if found.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST" {
                    let created = self
                        .client
                        .post_json("/api/2.0/mlflow/experiments/create", &json!({"name": name}))?;
                    json_string(&created.json()["experiment_id"]).ok_or_else(|| {
                        ExportError::new(format!(
                            "creating experiment {name:?} failed: HTTP {} {}",
                            created.status, created.body
                        ))
                    })?
                } else {
                    return Err(ExportError::new(format!(
                        "looking up experiment {name:?}: HTTP {} {}",
                        found.status, found.body
                    )));
                }
            }
        };
        self.experiment_id = Some(id.clone());
        Ok(id)
    }

    fn otlp_enabled(&mut self) -> bool {
        if let Some(enabled) = self.otlp {
            return enabled;
        }
        let enabled = match self.client.get("/version") {
            Ok(reply) if reply.is_success() => supports_otlp(&reply.body),
            _ => false,
        };
        self.otlp = Some(enabled);
        enabled
    }

    fn send_spans(&mut self, experiment_id: &str, spans: &[Span]) -> Result<bool, ExportError> {
        let body = export_request(spans, &resource_attributes()).encode_to_vec();
        let reply = self.client.send(
            "POST",
            "/v1/traces",
            "application/x-protobuf",
            &[("x-mlflow-experiment-id", experiment_id)],
            &body,
        )?;
        match reply.status {
            200..=299 => Ok(true),
            501 => {
                log::info!(
                    "the tracking server does not take OTLP spans; uploading traces.json instead"
                );
                self.otlp = Some(false);
                Ok(false)
            }
            status => Err(ExportError::new(format!(
                "POST /v1/traces: HTTP {status}: {}",
                reply.body
            ))),
        }
    }

    fn send_trace(
        &self,
        experiment_id: &str,
        trace: &Trace,
        spans_sent: bool,
    ) -> Result<(), ExportError> {
        let mut info = trace.info.clone();
        if info.experiment_id() == Some("0") {
            info.trace_location = TraceLocation::experiment(experiment_id);
        }
        let body =
            json!({"trace": {"trace_info": info_to_v3_json(&info, DurationStyle::ProtoDuration)}});
        let reply = self.client.post_json("/api/3.0/mlflow/traces", &body)?;
        if !reply.is_success() {
            return Err(ExportError::new(format!(
                "StartTraceV3 for {}: HTTP {}: {}",
                info.trace_id, reply.status, reply.body
            )));
        }
        let tags = &reply.json()["trace"]["trace_info"]["tags"];
        if spans_sent && tags[keys::TAG_SPANS_LOCATION] == "TRACKING_STORE" {
            return Ok(());
        }
        let location = tags[keys::TAG_ARTIFACT_LOCATION]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "mlflow-artifacts:/{experiment_id}/traces/{}/artifacts",
                    info.trace_id
                )
            });
        let path = match location.strip_prefix("mlflow-artifacts:/") {
            Some(relative) => format!("/api/2.0/mlflow-artifacts/artifacts/{relative}/traces.json"),
            None => format!("{location}/traces.json"),
        };
        let upload = self.client.send(
            "PUT",
            &path,
            "text/plain",
            &[],
            write_traces_json_v3(&trace.data).as_bytes(),
        )?;
        if !upload.is_success() {
            return Err(ExportError::new(format!(
                "uploading traces.json of {}: HTTP {}: {}",
                info.trace_id, upload.status, upload.body
            )));
        }
        Ok(())
    }
}

fn json_string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Exporter for MlflowExporter {
    fn export(&mut self, batch: &[Arc<Trace>]) -> Result<(), ExportError> {
        let experiment_id = self.resolve_experiment()?;
        let spans_sent = if self.otlp_enabled() {
            let spans: Vec<Span> = batch
                .iter()
                .flat_map(|trace| trace.data.spans.iter().cloned())
                .collect();
            self.send_spans(&experiment_id, &spans)?
        } else {
            false
        };
        let mut failures = Vec::new();
        for trace in batch {
            if let Err(error) = self.send_trace(&experiment_id, trace, spans_sent) {
                failures.push(error.to_string());
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(ExportError::new(failures.join("; "))),
        }
    }
}

/// Sends spans as plain OTLP/HTTP protobuf to a collector (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
pub struct OtlpExporter {
    client: HttpClient,
    endpoint: String,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl OtlpExporter {
    /// An exporter posting to `endpoint` (the full URL, e.g. `http://localhost:4318/v1/traces`) with these
    /// extra headers.
    pub fn new(endpoint: &str, headers: Vec<(String, String)>) -> Self {
        OtlpExporter {
            client: HttpClient::new(endpoint, headers),
            endpoint: endpoint.to_owned(),
        }
    }

    /// From `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (`k=v,k2=v2`).
    pub fn from_env() -> Option<Self> {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .ok()
            .filter(|value| !value.is_empty())?;
        let headers = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Some(OtlpExporter::new(&endpoint, headers))
    }
}

impl Exporter for OtlpExporter {
    fn export(&mut self, batch: &[Arc<Trace>]) -> Result<(), ExportError> {
        let spans: Vec<Span> = batch
            .iter()
            .flat_map(|trace| trace.data.spans.iter().cloned())
            .collect();
        let body = export_request(&spans, &resource_attributes()).encode_to_vec();
        let reply =
            self.client
                .send("POST", &self.endpoint, "application/x-protobuf", &[], &body)?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(ExportError::new(format!(
                "OTLP export to {}: HTTP {}: {}",
                self.endpoint, reply.status, reply.body
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_needs_mlflow_3_4_or_later() {
        assert!(supports_otlp("3.17.2"));
        assert!(supports_otlp("\"3.4.0\""));
        assert!(supports_otlp("4.0.0rc1"));
        assert!(!supports_otlp("3.3.2"));
        assert!(!supports_otlp("2.22.0"));
        assert!(!supports_otlp("garbage"));
    }

    #[test]
    fn only_addresses_and_localhost_skip_the_name_lookup_limit() {
        for local in [
            "http://127.0.0.1:5000/v1/traces",
            "http://localhost:5000",
            "https://LOCALHOST/api",
            "http://[::1]:5000/v1/traces",
            "http://user:secret@10.0.0.7:8080/x?y=1",
            "http://192.168.1.2",
        ] {
            assert!(resolves_locally(local), "{local}");
        }
        for named in [
            "https://mlflow.example.com/api",
            "http://localhost.example.com:5000",
            "http://127.0.0.1.nip.io:5000",
            "http://user@collector:4318/v1/traces",
        ] {
            assert!(!resolves_locally(named), "{named}");
        }
    }

    #[test]
    fn experiment_names_are_url_encoded() {
        assert_eq!(
            form_encode(&[("experiment_name", "my agent/v2")]),
            "experiment_name=my%20agent%2Fv2"
        );
    }
}
