//! Assessments: feedback, expectations and issues attached to a trace (MLflow 3.x). They come back inside
//! the trace's record.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use mlflow_tracing_core::Assessment;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{State, json_body, mirrored};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;

pub(super) fn routes<S: Store>(router: Router<Arc<AppState<S>>>) -> Router<Arc<AppState<S>>> {
    let router = mirrored(
        router,
        "/3.0/mlflow/traces/{trace_id}/assessments",
        post(create::<S>),
    );
    mirrored(
        router,
        "/3.0/mlflow/traces/{trace_id}/assessments/{assessment_id}",
        get(get_one::<S>).patch(update::<S>).delete(delete::<S>),
    )
}

#[derive(Deserialize)]
struct AssessmentRequest {
    assessment: Option<Value>,
    #[serde(default)]
    update_mask: Option<String>,
}

fn read_assessment(value: Option<Value>) -> ApiResult<Assessment> {
    let value = value
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'assessment'"))?;
    serde_json::from_value(value)
        .map_err(|error| ApiError::invalid(format!("invalid assessment: {error}")))
}

fn respond(assessment: &Assessment) -> Json<Value> {
    Json(json!({"assessment": assessment}))
}

async fn create<S: Store>(
    state: State<S>,
    Path(trace_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: AssessmentRequest = json_body(&body)?;
    let assessment = read_assessment(request.assessment)?;
    if assessment.assessment_name.trim().is_empty() {
        return Err(ApiError::invalid(
            "missing value for required parameter 'assessment.assessment_name'",
        ));
    }
    let kinds = [
        &assessment.feedback,
        &assessment.expectation,
        &assessment.issue,
    ]
    .iter()
    .filter(|kind| kind.is_some())
    .count();
    if kinds != 1 {
        return Err(ApiError::invalid(
            "an assessment holds exactly one of 'feedback', 'expectation' or 'issue'",
        ));
    }
    Ok(respond(
        &state.store.create_assessment(trace_id, assessment).await?,
    ))
}

async fn get_one<S: Store>(
    state: State<S>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(respond(
        &state.store.get_assessment(trace_id, assessment_id).await?,
    ))
}

async fn update<S: Store>(
    state: State<S>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: AssessmentRequest = json_body(&body)?;
    let mask: Vec<String> = request
        .update_mask
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .map(str::to_owned)
        .collect();
    if mask.is_empty() {
        return Err(ApiError::invalid(
            "missing value for required parameter 'update_mask'",
        ));
    }
    let mut changes = request.assessment.unwrap_or_else(|| json!({}));
    if changes.get("assessment_name").is_none() {
        changes["assessment_name"] = json!("");
    }
    let changes = read_assessment(Some(changes))?;
    Ok(respond(
        &state
            .store
            .update_assessment(trace_id, assessment_id, changes, mask)
            .await?,
    ))
}

async fn delete<S: Store>(
    state: State<S>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state
        .store
        .delete_assessment(trace_id, assessment_id)
        .await?;
    Ok(Json(json!({})))
}
