//! `Trace.to_json()` (`{"info": …, "data": …}`) and the REST forms of `TraceInfo`.
//!
//! The v3 info appears in two spellings that differ only in the duration: `Trace.to_json()` writes
//! `execution_duration_ms: 60`, the REST API writes `execution_duration: "0.06s"`. Readers take either, and
//! also the v2 info (`request_id`, `timestamp_ms`, `status`, metadata and tags as maps or `[{key, value}]`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::span_json::{read_trace_data, trace_data_to_v3};
use super::{CodecError, lenient_i64};
use crate::time::{
    format_duration_millis, format_rfc3339_millis, parse_duration_millis, parse_rfc3339_millis,
};
use crate::trace::{Assessment, Trace, TraceInfo, TraceLocation, TraceState};

/// How the execution duration is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationStyle {
    /// `execution_duration_ms: 60`, as `Trace.to_json()` writes it.
    Millis,
    /// `execution_duration: "0.06s"`, as the REST API writes it.
    ProtoDuration,
}

impl Trace {
    /// MLflow 3.x `Trace.to_json()`: `{"info": {...}, "data": {"spans": [v3 spans]}}`.
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }

    /// [`Trace::to_json`] as a JSON value.
    pub fn to_json_value(&self) -> Value {
        json!({
            "info": info_to_v3_json(&self.info, DurationStyle::Millis),
            "data": trace_data_to_v3(&self.data),
        })
    }

    /// Reads `Trace.to_json()` output of MLflow 2.x or 3.x.
    pub fn from_json(text: &str) -> Result<Trace, CodecError> {
        let document: Value = serde_json::from_str(text)?;
        Trace::from_json_value(&document)
    }

    /// [`Trace::from_json`] from a JSON value.
    pub fn from_json_value(document: &Value) -> Result<Trace, CodecError> {
        let info = document
            .get("info")
            .ok_or(CodecError::MissingField { field: "info" })?;
        let data = document
            .get("data")
            .ok_or(CodecError::MissingField { field: "data" })?;
        Ok(Trace {
            info: info_from_json(info)?,
            data: read_trace_data(data)?,
        })
    }
}

/// The v3 `TraceInfo` as JSON; maps for metadata and tags, empty optional fields omitted.
pub fn info_to_v3_json(info: &TraceInfo, style: DurationStyle) -> Value {
    let mut object = Map::new();
    object.insert("trace_id".into(), info.trace_id.clone().into());
    if let Some(client_request_id) = &info.client_request_id {
        object.insert("client_request_id".into(), client_request_id.clone().into());
    }
    object.insert(
        "trace_location".into(),
        location_to_json(&info.trace_location),
    );
    object.insert(
        "request_time".into(),
        format_rfc3339_millis(info.request_time_ms).into(),
    );
    if style == DurationStyle::ProtoDuration {
        if let Some(duration) = info.execution_duration_ms {
            object.insert(
                "execution_duration".into(),
                format_duration_millis(duration).into(),
            );
        }
    }
    object.insert("state".into(), info.state.as_str().into());
    object.insert(
        "trace_metadata".into(),
        string_map_to_json(&info.trace_metadata),
    );
    object.insert("tags".into(), string_map_to_json(&info.tags));
    if let Some(preview) = &info.request_preview {
        object.insert("request_preview".into(), preview.clone().into());
    }
    if let Some(preview) = &info.response_preview {
        object.insert("response_preview".into(), preview.clone().into());
    }
    if style == DurationStyle::Millis {
        if let Some(duration) = info.execution_duration_ms {
            object.insert("execution_duration_ms".into(), duration.into());
        }
    }
    if !info.assessments.is_empty() {
        let assessments = info
            .assessments
            .iter()
            .map(|assessment| json!(assessment))
            .collect();
        object.insert("assessments".into(), Value::Array(assessments));
    }
    Value::Object(object)
}

/// The v2 `TraceInfo` as the REST API writes it: metadata and tags as `[{key, value}]`.
pub fn info_to_v2_json(info: &TraceInfo) -> Value {
    let pairs = |map: &BTreeMap<String, String>| -> Value {
        map.iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect()
    };
    json!({
        "request_id": info.trace_id,
        "experiment_id": info.experiment_id().unwrap_or_default(),
        "timestamp_ms": info.request_time_ms,
        "execution_time_ms": info.execution_duration_ms.unwrap_or(0),
        "status": info.state.as_v2_status(),
        "request_metadata": pairs(&info.trace_metadata),
        "tags": pairs(&info.tags),
    })
}

/// Reads a v2 or v3 `TraceInfo`, in the `to_json` or the REST spelling.
pub fn info_from_json(value: &Value) -> Result<TraceInfo, CodecError> {
    let object = value
        .as_object()
        .ok_or_else(|| CodecError::invalid("info", "expected an object"))?;
    if object.contains_key("request_id") && !object.contains_key("trace_id") {
        return info_from_v2_json(object);
    }
    let trace_id = object
        .get("trace_id")
        .and_then(Value::as_str)
        .ok_or(CodecError::MissingField { field: "trace_id" })?;
    let request_time_ms = match object.get("request_time") {
        Some(Value::String(text)) => parse_rfc3339_millis(text).ok_or_else(|| {
            CodecError::invalid(
                "request_time",
                format!("not an RFC 3339 timestamp: {text:?}"),
            )
        })?,
        Some(other) => lenient_i64(other)
            .ok_or_else(|| CodecError::invalid("request_time", other.to_string()))?,
        None => 0,
    };
    let execution_duration_ms = match (
        object.get("execution_duration_ms"),
        object.get("execution_duration"),
    ) {
        (Some(millis), _) => lenient_i64(millis),
        (None, Some(Value::String(text))) => {
            Some(parse_duration_millis(text).ok_or_else(|| {
                CodecError::invalid("execution_duration", format!("not a duration: {text:?}"))
            })?)
        }
        _ => None,
    };
    let assessments = match object.get("assessments") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| serde_json::from_value::<Assessment>(item.clone()))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(TraceInfo {
        trace_id: trace_id.to_owned(),
        client_request_id: optional_string(object, "client_request_id"),
        trace_location: location_from_json(object.get("trace_location"))?,
        request_time_ms,
        execution_duration_ms,
        state: parse_state(object.get("state"))?,
        request_preview: optional_string(object, "request_preview"),
        response_preview: optional_string(object, "response_preview"),
        trace_metadata: string_map_from_json(object.get("trace_metadata"), "trace_metadata")?,
        tags: string_map_from_json(object.get("tags"), "tags")?,
        assessments,
    })
}

fn info_from_v2_json(object: &Map<String, Value>) -> Result<TraceInfo, CodecError> {
    let request_id = object
        .get("request_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let experiment_id = match object.get("experiment_id") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "0".to_owned(),
    };
    let state = parse_state(object.get("status"))?;
    let execution_time_ms = object.get("execution_time_ms").and_then(lenient_i64);
    let metadata = string_map_from_json(object.get("request_metadata"), "request_metadata")?;
    let preview = |key: &str| metadata.get(key).cloned();
    Ok(TraceInfo {
        trace_id: request_id.to_owned(),
        client_request_id: None,
        trace_location: TraceLocation::experiment(experiment_id),
        request_time_ms: object
            .get("timestamp_ms")
            .and_then(lenient_i64)
            .unwrap_or(0),
        execution_duration_ms: if state == TraceState::InProgress {
            None
        } else {
            execution_time_ms
        },
        state,
        request_preview: preview(crate::keys::META_TRACE_INPUTS),
        response_preview: preview(crate::keys::META_TRACE_OUTPUTS),
        trace_metadata: metadata,
        tags: string_map_from_json(object.get("tags"), "tags")?,
        assessments: Vec::new(),
    })
}

fn location_to_json(location: &TraceLocation) -> Value {
    match location {
        TraceLocation::MlflowExperiment { experiment_id } => {
            json!({"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}})
        }
        TraceLocation::InferenceTable { full_table_name } => {
            json!({"type": "INFERENCE_TABLE", "inference_table": {"full_table_name": full_table_name}})
        }
    }
}

fn location_from_json(value: Option<&Value>) -> Result<TraceLocation, CodecError> {
    let Some(value) = value else {
        return Ok(TraceLocation::default());
    };
    if let Some(experiment_id) = value.pointer("/mlflow_experiment/experiment_id") {
        let experiment_id = match experiment_id {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        return Ok(TraceLocation::experiment(experiment_id));
    }
    if let Some(table) = value
        .pointer("/inference_table/full_table_name")
        .and_then(Value::as_str)
    {
        return Ok(TraceLocation::InferenceTable {
            full_table_name: table.to_owned(),
        });
    }
    Err(CodecError::invalid(
        "trace_location",
        format!("unsupported location {value}"),
    ))
}

fn parse_state(value: Option<&Value>) -> Result<TraceState, CodecError> {
    match value {
        None | Some(Value::Null) => Ok(TraceState::Unspecified),
        Some(Value::String(text)) => TraceState::parse(text)
            .ok_or_else(|| CodecError::invalid("state", format!("unknown state {text:?}"))),
        Some(other) => Err(CodecError::invalid("state", format!("unexpected {other}"))),
    }
}

fn string_map_to_json(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
            .collect(),
    )
}

/// Reads a string map given as a JSON object or as `[{key, value}]`.
fn string_map_from_json(
    value: Option<&Value>,
    field: &'static str,
) -> Result<BTreeMap<String, String>, CodecError> {
    let as_text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(object)) => Ok(object
            .iter()
            .map(|(key, value)| (key.clone(), as_text(value)))
            .collect()),
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|pair| {
                let key = pair
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or(CodecError::MissingField { field: "key" })?;
                Ok((
                    key.to_owned(),
                    pair.get("value").map(as_text).unwrap_or_default(),
                ))
            })
            .collect(),
        Some(_) => Err(CodecError::invalid(
            field,
            "expected an object or a list of {key, value}",
        )),
    }
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Option<String> {
    object.get(field).and_then(Value::as_str).map(str::to_owned)
}
