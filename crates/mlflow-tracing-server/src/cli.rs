//! `mlflow-tracing traces search|get|delete`: the trace API from the command line, against any tracking
//! server (ours or MLflow's), printing tables, trees or JSON.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{Context, bail};
use mlflow_tracing_core::codec::rest_span::span_from_rest_json;
use mlflow_tracing_core::{Span, SpanId};
use serde_json::{Value, json};

/// A client of one tracking server.
#[derive(Debug)]
pub struct TracesCli {
    base: String,
    agent: ureq::Agent,
}

/// How search and get print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

impl TracesCli {
    /// A client of the server at `tracking_uri` (`http://host:port`).
    pub fn new(tracking_uri: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        TracesCli {
            base: tracking_uri.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    fn answer(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> anyhow::Result<Value> {
        let mut response =
            response.with_context(|| format!("{what}: the tracking server did not answer"))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let message = value["message"]
                .as_str()
                .map_or_else(|| body.clone(), str::to_owned);
            bail!("{what}: HTTP {status}: {message}");
        }
        Ok(value)
    }

    fn get(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        Self::answer(self.agent.get(&format!("{}{path}", self.base)).call(), what)
    }

    fn post(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        let request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json");
        Self::answer(request.send(body.to_string()), what)
    }

    /// The id of an experiment given by id or by name.
    pub fn experiment_id(&self, id: Option<&str>, name: Option<&str>) -> anyhow::Result<String> {
        if let Some(id) = id {
            return Ok(id.to_owned());
        }
        let Some(name) = name else {
            return Ok("0".to_owned());
        };
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("experiment_name", name)
            .finish();
        let found = self.get(
            &format!("/api/2.0/mlflow/experiments/get-by-name?{query}"),
            "finding the experiment",
        )?;
        found["experiment"]["experiment_id"]
            .as_str()
            .map(str::to_owned)
            .context("the server sent no experiment id")
    }

    /// Traces of an experiment matching `filter`, newest first unless `order_by` says otherwise.
    pub fn search(
        &self,
        experiment_id: &str,
        filter: &str,
        order_by: &[String],
        max_results: usize,
        output: Output,
    ) -> anyhow::Result<String> {
        let body = json!({
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
            "filter": filter,
            "order_by": order_by,
            "max_results": max_results,
        });
        let found = self.post("/api/3.0/mlflow/traces/search", &body, "searching traces")?;
        let traces = found["traces"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if output == Output::Json {
            return Ok(serde_json::to_string_pretty(&traces)?);
        }
        let mut table = format!(
            "{:<35}  {:<20}  {:<11}  {:<24}  {:>9}  {}\n",
            "TRACE ID", "NAME", "STATE", "REQUEST TIME", "DURATION", "REQUEST"
        );
        for info in traces {
            let preview: String = info["request_preview"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(48)
                .collect();
            let _ = writeln!(
                table,
                "{:<35}  {:<20}  {:<11}  {:<24}  {:>9}  {}",
                info["trace_id"].as_str().unwrap_or_default(),
                info["tags"]["mlflow.traceName"].as_str().unwrap_or("-"),
                info["state"].as_str().unwrap_or_default(),
                info["request_time"].as_str().unwrap_or_default(),
                info["execution_duration"].as_str().unwrap_or("-"),
                preview.replace('\n', " "),
            );
        }
        let _ = write!(table, "{} trace(s)", traces.len());
        Ok(table)
    }

    /// One trace: its span tree (name, type, duration, status), or the whole JSON.
    pub fn get_trace(&self, trace_id: &str, output: Output) -> anyhow::Result<String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("trace_id", trace_id)
            .finish();
        let got = self.get(
            &format!("/api/3.0/mlflow/traces/get?{query}"),
            "reading the trace",
        )?;
        if output == Output::Json {
            return Ok(serde_json::to_string_pretty(&got["trace"])?);
        }
        let info = &got["trace"]["trace_info"];
        let spans = got["trace"]["spans"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(span_from_rest_json)
            .collect::<Result<Vec<Span>, _>>()
            .context("the server sent a span this client cannot read")?;
        let mut text = format!(
            "{}  {}  {}  {}\n",
            info["trace_id"].as_str().unwrap_or_default(),
            info["tags"]["mlflow.traceName"].as_str().unwrap_or("-"),
            info["state"].as_str().unwrap_or_default(),
            info["execution_duration"].as_str().unwrap_or("-"),
        );
        // One pass builds the child lists; a span whose parent is not in the trace is shown as a root.
        let present: HashSet<SpanId> = spans.iter().map(|span| span.span_id).collect();
        let mut children: HashMap<Option<SpanId>, Vec<&Span>> = HashMap::new();
        for span in &spans {
            let parent = span.parent_id.filter(|parent| present.contains(parent));
            children.entry(parent).or_default().push(span);
        }
        let mut stack: Vec<(usize, &Span)> = children
            .get(&None)
            .into_iter()
            .flatten()
            .rev()
            .map(|span| (0, *span))
            .collect();
        while let Some((depth, span)) = stack.pop() {
            let _ = writeln!(
                text,
                "{}{} [{}] {:.2} ms {}",
                "  ".repeat(depth + 1),
                span.name,
                span.span_type(),
                span.duration_ns().unwrap_or(0) as f64 / 1e6,
                span.status.code.as_str(),
            );
            let own = children.get(&Some(span.span_id)).into_iter().flatten();
            stack.extend(own.rev().map(|child| (depth + 1, *child)));
        }
        let _ = write!(text, "{} span(s)", spans.len());
        Ok(text)
    }

    /// Deletes traces of an experiment; returns how many were deleted.
    pub fn delete(&self, experiment_id: &str, trace_ids: &[String]) -> anyhow::Result<u64> {
        let body = json!({"experiment_id": experiment_id, "request_ids": trace_ids});
        let deleted = self.post(
            "/api/2.0/mlflow/traces/delete-traces",
            &body,
            "deleting traces",
        )?;
        Ok(deleted["traces_deleted"].as_u64().unwrap_or(0))
    }
}
