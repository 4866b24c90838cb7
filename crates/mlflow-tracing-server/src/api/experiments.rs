//! Experiments: the endpoints a tracing client needs (get-by-name, create, get) and search for the UI.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    State, json_body, max_results, mirrored, page_token, parse_page_token, query_pairs, query_value,
};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::store::{Experiment, Store};

pub(super) fn routes<S: Store>(router: Router<Arc<AppState<S>>>) -> Router<Arc<AppState<S>>> {
    let router = mirrored(
        router,
        "/2.0/mlflow/experiments/get-by-name",
        get(get_by_name::<S>),
    );
    let router = mirrored(
        router,
        "/2.0/mlflow/experiments/get",
        get(get_experiment::<S>),
    );
    let router = mirrored(router, "/2.0/mlflow/experiments/create", post(create::<S>));
    mirrored(
        router,
        "/2.0/mlflow/experiments/search",
        post(search::<S>).get(search_get::<S>),
    )
}

fn experiment_json(experiment: &Experiment) -> Value {
    let mut value = json!({
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "last_update_time": experiment.last_update_time,
        "creation_time": experiment.creation_time,
    });
    if !experiment.tags.is_empty() {
        value["tags"] = experiment
            .tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
    }
    value
}

async fn get_by_name<S: Store>(
    state: State<S>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let pairs = query_pairs(query.as_deref());
    let name = query_value(&pairs, "experiment_name").ok_or_else(|| {
        ApiError::invalid("missing value for required parameter 'experiment_name'")
    })?;
    let experiment = state.store.get_experiment_by_name(name.to_owned()).await?;
    Ok(Json(json!({"experiment": experiment_json(&experiment)})))
}

async fn get_experiment<S: Store>(
    state: State<S>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let pairs = query_pairs(query.as_deref());
    let id = query_value(&pairs, "experiment_id")
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'experiment_id'"))?;
    let experiment = state.store.get_experiment(id.to_owned()).await?;
    Ok(Json(json!({"experiment": experiment_json(&experiment)})))
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct CreateExperiment {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create<S: Store>(state: State<S>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: CreateExperiment = json_body(&body)?;
    let name = request
        .name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("missing value for required parameter 'name'"))?;
    let tags: BTreeMap<_, _> = request
        .tags
        .into_iter()
        .map(|tag| (tag.key, tag.value))
        .collect();
    let experiment_id = state.store.create_experiment(name, tags).await?;
    Ok(Json(json!({"experiment_id": experiment_id})))
}

#[derive(Deserialize, Default)]
struct SearchExperiments {
    max_results: Option<i64>,
    page_token: Option<String>,
}

async fn search<S: Store>(state: State<S>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: SearchExperiments = json_body(&body)?;
    search_page(&state, request).await
}

async fn search_get<S: Store>(
    state: State<S>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let pairs = query_pairs(query.as_deref());
    let max_results = query_value(&pairs, "max_results")
        .map(|text| {
            text.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("invalid max_results {text:?}")))
        })
        .transpose()?;
    let page_token = query_value(&pairs, "page_token").map(str::to_owned);
    search_page(
        &state,
        SearchExperiments {
            max_results,
            page_token,
        },
    )
    .await
}

async fn search_page<S: Store>(
    state: &State<S>,
    request: SearchExperiments,
) -> ApiResult<Json<Value>> {
    let limit = max_results(request.max_results, 1000, 50_000)?;
    let offset = parse_page_token(request.page_token.as_deref())?;
    let page = state.store.search_experiments(limit, offset).await?;
    let mut response =
        json!({"experiments": page.items.iter().map(experiment_json).collect::<Vec<_>>()});
    if let Some(next) = page.next_offset {
        response["next_page_token"] = page_token(next).into();
    }
    Ok(Json(response))
}
