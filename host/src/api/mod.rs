//! The HTTP API: what `baton start`, `baton status` and `baton list` talk to.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/sagas` `{"workflow", "input", "id"?}` | start a saga; with an `id`, a retried start returns the existing saga (200) instead of a second one (201) |
//! | `GET /v1/sagas/{id}[?wait=SECS]` | the saga; with `wait`, hold the answer until it ends (or the time is up) |
//! | `GET /v1/sagas/{id}/history` | what happened to the saga, oldest first: every dispatch, result, retry and the end |
//! | `GET /v1/sagas[?status=S&limit=N]` | sagas, newest first |
//! | `GET /healthz` | 200 when the host is up (worker-only hosts serve this alone) |
//!
//! Every error is JSON, `{"error": {"code", "message"}}`, with a 4xx for what the caller can
//! fix (bad JSON, an unknown workflow, an unknown status) and a 5xx for what it cannot.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::orchestrator::saga::SagaStatus;
use crate::orchestrator::{Orchestrator, StartError};
use crate::store::StoreError;

/// Longest a `GET ?wait=` may hold a request.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// An API error: status, code, message.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": { "code": self.1, "message": self.2 } }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError(StatusCode::NOT_FOUND, "not_found", format!("no saga with id {id:?}")),
            other => ApiError(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", other.to_string()),
        }
    }
}

/// The routes, over an orchestrator.
pub fn router(orchestrator: Orchestrator) -> Router {
    Router::new()
        .route("/v1/sagas", get(list).post(start))
        .route("/v1/sagas/{id}", get(get_one))
        .route("/v1/sagas/{id}/history", get(history))
        .with_state(orchestrator)
        .merge(health_router())
}

/// The routes of a host that only runs workers: a health check for its supervisor.
pub fn health_router() -> Router {
    Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    workflow: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    id: Option<String>,
}

async fn start(State(o): State<Orchestrator>, body: Bytes) -> Result<Response, ApiError> {
    let req: StartRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "the body must be JSON like {{\"workflow\": \"order\", \"input\": {{...}}, \"id\": \"optional\"}}: {e}"
            ),
        )
    })?;
    if req.id.as_deref().is_some_and(|id| id.is_empty() || id.len() > 200 || id.contains(char::is_control)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "an id must be 1 to 200 printable characters".into(),
        ));
    }
    let fresh = req.id.is_none();
    let existed = match &req.id {
        Some(id) => o.get(id).await?.is_some(),
        None => false,
    };
    match o.start(&req.workflow, req.input, req.id).await {
        Ok(saga) => {
            let status = if !fresh && existed { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Json(saga)).into_response())
        }
        Err(e @ StartError::UnknownWorkflow { .. }) => {
            Err(ApiError(StatusCode::NOT_FOUND, "unknown_workflow", e.to_string()))
        }
        Err(e @ StartError::IdTaken { .. }) => Err(ApiError(StatusCode::CONFLICT, "id_taken", e.to_string())),
        Err(StartError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    /// Seconds to wait for the saga to end.
    wait: Option<f64>,
}

async fn get_one(
    State(o): State<Orchestrator>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let Some(saga) = o.get(&id).await? else {
        return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no saga with id {id:?}")));
    };
    let Some(wait) = q.wait.filter(|w| *w > 0.0 && !saga.status.is_terminal()) else {
        return Ok(Json(saga).into_response());
    };
    let limit = Duration::from_secs_f64(wait.min(MAX_WAIT.as_secs_f64()));
    match tokio::time::timeout(limit, o.wait(&id)).await {
        Ok(done) => Ok(Json(done?).into_response()),
        // Time is up: the saga as it is now.
        Err(_) => Ok(Json(o.get(&id).await?.unwrap_or(saga)).into_response()),
    }
}

async fn history(State(o): State<Orchestrator>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if o.get(&id).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no saga with id {id:?}")));
    }
    Ok(Json(o.history(&id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list(State(o): State<Orchestrator>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<SagaStatus>().map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_status", e))?),
    };
    let sagas = o.list(status, q.limit.unwrap_or(100).min(10_000)).await?;
    Ok(Json(sagas).into_response())
}
