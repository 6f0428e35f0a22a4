//! The HTTP API: what `baton start`, `baton status` and `baton list` talk to, and the web UI.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/sagas` `{"workflow", "input", "id"?}` | start a saga: 201 when this call created it; with an `id` that exists, 200 and the existing saga when workflow and input are the same, 409 when they differ |
//! | `GET /v1/sagas/{id}[?wait=SECS]` | the saga; with `wait`, hold the answer until it ends (or the time is up) |
//! | `GET /v1/sagas/{id}/history` | what happened to the saga, oldest first: every dispatch, result, retry and the end |
//! | `GET /v1/sagas[?status=S&limit=N&parent=ID]` | sagas, newest first (with `parent`, that saga's sub-sagas); the `baton-retain` header says how long finished ones are kept |
//! | `GET /v1/events[?workflow=W&status=S]` | the sagas this host commits, live: server-sent events `saga` (the record, as the list gives it) and `resync` (read the list again: first, and after a lag); see [`events`] |
//! | `POST /v1/sagas/{id}/signals/{name}` (body: the JSON payload) | send a signal: 202 and the saga; 404 for an unknown saga, 409 for one that has ended |
//! | `POST /v1/sagas/{id}/cancel` `{"reason"?}` | stop a running saga and compensate what it did: 202; 409 unless it is running |
//! | `POST /v1/sagas/{id}/retry` | try a `failed` saga's failed compensations again: 202; 409 unless it is failed |
//! | `GET /v1/workflows` | the workflows new sagas may start with: name, version, hash, description, input schema |
//! | `GET /v1/workflows/{name}[?hash=H]` | the outline of one (its blocks and steps, resolved), or of its definition `H` a saga runs; see [`workflows`] |
//! | `GET /v1/plugins` | the plugins this host runs, as `baton plugins --json` lists them |
//! | `GET /metrics` | Prometheus text format (see [`crate::observe::metrics`] for the list); worker-only hosts serve it too |
//! | `GET /readyz` | 200 `{"store": "ok", "bus": "ok"}` when both answer within [`READY_TIMEOUT`], 503 `not_ready` naming the one that does not |
//! | `GET /healthz` | 200 when the process is up; never asks for a token (worker-only hosts serve this and `/readyz`) |
//! | `GET /`, `GET /ui/app.js`, `GET /ui/app.css` | the web UI, compiled in; never asks for a token (it holds no data); see [`ui`] |
//!
//! Every error, whatever produced it (a handler, an extractor, the body limit, an unknown
//! route or method), is JSON, `{"error": {"code", "message"}}`: a 4xx for what the caller can
//! fix, a 5xx for what it cannot. A 503 means the store is unreachable; it says which store,
//! and that a start retried with the same `id` is safe.
//!
//! # The token
//!
//! A host started with a [`Token`] (`baton serve --token`) answers every request but
//! `GET /healthz` and the UI's files with 401 `unauthorized` and
//! `WWW-Authenticate: Bearer realm="baton"` unless it carries `Authorization: Bearer <token>`;
//! see [`require_token`].

pub mod events;
pub mod ui;
pub mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bus::{BusError, EventBus};
use crate::model::SagaStatus;
use crate::orchestrator::{ControlError, Orchestrator, StartError};
use crate::store::{SagaStore, StoreError};

/// Longest a `GET ?wait=` may hold a request.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Largest request body. A saga's input is a document, not a file upload; a bound keeps a
/// careless or hostile client from making the host buffer gigabytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Saga ids: what one may be (the rule lives in `model`, shared with the runtime).
pub use crate::model::{MAX_ID_CHARS, check_id};

/// Most sagas one `GET /v1/sagas` returns.
const MAX_LIST: usize = 10_000;

/// An API error: status, code, message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": { "code": self.1, "message": self.2 } }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError(StatusCode::NOT_FOUND, "not_found", format!("no saga with id {id:?}")),
            StoreError::Corrupt { .. } => ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_corrupt",
                format!("{e}: the record cannot be read; an operator must look (see the host's log)"),
            ),
            e @ (StoreError::Unavailable(_) | StoreError::Conflict { .. }) => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{e}. Nothing is lost; try again shortly (a start retried with the same id is safe)"),
            ),
        }
    }
}

/// What `GET /readyz` checks (the store and the bus of this host) and `GET /v1/plugins`
/// lists.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn SagaStore>,
    pub bus: Arc<dyn EventBus>,
    /// The plugins this host runs (`GET /v1/plugins`); `None` on a host that runs no worker.
    pub runtime: Option<Arc<crate::runtime::Runtime>>,
}

/// The routes, over an orchestrator, with the readiness probe over `backends`, the web UI
/// and, with a `token`, every route but `GET /healthz` and the UI's files behind it. The
/// event streams end when `stopping` turns true (a graceful shutdown waits for every open
/// answer).
pub fn router(
    orchestrator: Orchestrator,
    backends: Backends,
    token: Option<Token>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let live = events::Live { orchestrator: orchestrator.clone(), stopping };
    let routes = Router::new()
        .route("/v1/sagas", get(list).post(start))
        .route("/v1/sagas/{id}", get(get_one))
        .route("/v1/sagas/{id}/history", get(history))
        .route("/v1/sagas/{id}/signals/{name}", post(signal))
        .route("/v1/sagas/{id}/cancel", post(cancel))
        .route("/v1/sagas/{id}/retry", post(retry))
        .route("/v1/workflows", get(workflows::list))
        .route("/v1/workflows/{name}", get(workflows::one))
        .with_state(orchestrator)
        .route("/v1/events", get(events::events).with_state(live))
        .route("/v1/plugins", get(plugins).with_state(backends.clone()))
        .route("/metrics", get(metrics_of_orchestrator).with_state(backends.clone()))
        .route("/readyz", get(readyz).with_state(backends))
        .route("/healthz", get(healthz))
        .merge(ui::routes());
    secured(with_json_errors(routes), token, Open::HealthAndUi)
}

/// The plugins this host runs: an empty list on a host that runs none (`--role
/// orchestrator`).
async fn plugins(State(b): State<Backends>) -> Json<Value> {
    Json(Value::Array(b.runtime.as_ref().map(|r| r.plugins_json()).unwrap_or_default()))
}

/// The routes of a host that only runs workers: the liveness and readiness probes for its
/// supervisor.
pub fn health_router(backends: Backends, token: Option<Token>) -> Router {
    let routes = Router::new()
        .route("/v1/plugins", get(plugins).with_state(backends.clone()))
        .route("/metrics", get(metrics_of_worker).with_state(backends.clone()))
        .route("/readyz", get(readyz).with_state(backends))
        .route("/healthz", get(healthz));
    secured(with_json_errors(routes), token, Open::Health)
}

/// Longest a scrape waits for each value it reads from the store or the bus; a value not
/// read in time keeps its last reading.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /metrics` of a host that orchestrates: every metric, with the sagas in flight read
/// from the store.
async fn metrics_of_orchestrator(State(b): State<Backends>) -> Response {
    for status in [SagaStatus::Running, SagaStatus::Compensating] {
        if let Ok(Ok(n)) = tokio::time::timeout(SCRAPE_TIMEOUT, b.store.count(status)).await {
            crate::observe::metrics::in_flight(status.as_str(), n);
        }
    }
    metrics_text(&b).await
}

/// `GET /metrics` of a worker-only host: the same, without the store's saga counts (the
/// orchestrators report those).
async fn metrics_of_worker(State(b): State<Backends>) -> Response {
    metrics_text(&b).await
}

/// The metrics in Prometheus' text format (version 0.0.4), with the bus backlog read now.
async fn metrics_text(b: &Backends) -> Response {
    if let Ok(Ok(backlog)) = tokio::time::timeout(SCRAPE_TIMEOUT, b.bus.backlog()).await {
        for (stream, n) in backlog {
            crate::observe::metrics::backlog(&stream, n);
        }
    }
    match crate::observe::metrics::render() {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        None => ApiError(StatusCode::NOT_FOUND, "metrics_off", "this process does not record metrics".into())
            .into_response(),
    }
}

/// Liveness: the process is up and serving. It checks nothing else, so a supervisor that
/// restarts on its failure never restarts a host because Redis is away (`/readyz` says that).
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Longest `GET /readyz` waits for the store and for the bus (both at once): a Redis that
/// hangs makes the probe answer 503 in this time, not hang it.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the store and the bus both answer a ping within [`READY_TIMEOUT`].
async fn readyz(State(b): State<Backends>) -> Response {
    let timed_out = || format!("no answer within {READY_TIMEOUT:?}");
    let (store, bus) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, b.store.ping()),
        tokio::time::timeout(READY_TIMEOUT, b.bus.ping()),
    );
    let store = match store {
        Ok(Ok(())) => Ok(()),
        Ok(Err(StoreError::Unavailable(why))) => Err(why),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(timed_out()),
    };
    let bus = match bus {
        Ok(Ok(())) => Ok(()),
        Ok(Err(BusError::Unavailable(why))) => Err(why),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(timed_out()),
    };
    if store.is_ok() && bus.is_ok() {
        return Json(json!({"store": "ok", "bus": "ok"})).into_response();
    }
    let part = |name: &str, r: &Result<(), String>| match r {
        Ok(()) => format!("{name} ok"),
        Err(why) => format!("{name} unavailable: {why}"),
    };
    let message = format!("{}; {}", part("store", &store), part("bus", &bus));
    tracing::info!("not ready: {message}");
    ApiError(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message).into_response()
}

/// The layers every router shares: the body limit, a JSON 404 for unknown routes, and JSON
/// for every other error (applied last, so it sees the answers of all the others).
fn with_json_errors(routes: Router) -> Router {
    routes
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::middleware::map_response(json_errors))
}

/// How much of a body declared over the limit the host reads (and throws away) before it
/// answers 413, and for how long at most.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A request whose `Content-Length` is over the limit is answered 413 without running its
/// handler, after its body has been read and discarded. Answering first and closing at once
/// would reset the connection under a client still sending, and the client would lose the
/// answer and see only a broken pipe (a lingering close, as web servers do it). A body over
/// `DRAIN_BYTES`, or one that trickles in, is not waited for.
async fn refuse_declared_oversize(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > MAX_BODY_BYTES as u64) else {
        return next.run(request).await;
    };
    if declared <= DRAIN_BYTES {
        use futures_util::StreamExt;
        let mut body = request.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    // `json_errors` gives it the one error shape and `Connection: close`.
    StatusCode::PAYLOAD_TOO_LARGE.into_response()
}

/// The bearer token a host requires (`baton serve --token`). Its `Debug` does not show it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// A token, once it is known to fit in an HTTP header: 1 or more visible ASCII
    /// characters, no spaces (`openssl rand -hex 32` makes a good one).
    pub fn new(text: &str) -> Result<Token, String> {
        if text.is_empty() {
            return Err("the token is empty: pass one, e.g. --token \"$(openssl rand -hex 32)\"".to_owned());
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "the token holds {c:?}, which cannot travel in an Authorization header: use visible ASCII characters without spaces (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(Token(text.into()))
    }

    /// The token itself, for a client to send.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token, in time that does not depend on where they differ
    /// (nor on their lengths: both are hashed first), so that timing the answers cannot
    /// find the token a character at a time.
    pub fn matches(&self, given: &[u8]) -> bool {
        use sha2::Digest as _;
        let (a, b) = (sha2::Sha256::digest(self.0.as_bytes()), sha2::Sha256::digest(given));
        let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }
}

/// What a router serves without the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// `/healthz` only (a worker-only host: it serves no UI).
    Health,
    /// `/healthz` and the web UI's files ([`ui::is_public`]).
    HealthAndUi,
}

impl Open {
    /// Whether a request for `path` needs no token.
    pub fn lets_through(self, path: &str) -> bool {
        path == "/healthz" || (self == Open::HealthAndUi && ui::is_public(path))
    }
}

/// What [`require_token`] checks requests against: the token, and what it lets through
/// without one.
#[derive(Clone, Debug)]
pub struct Guard {
    pub token: Token,
    pub open: Open,
}

/// Put `routes` behind `token`, when there is one, all but what `open` names.
fn secured(routes: Router, token: Option<Token>, open: Open) -> Router {
    match token {
        Some(token) => routes.layer(axum::middleware::from_fn_with_state(Guard { token, open }, require_token)),
        None => routes,
    }
}

/// The token check, in front of everything else (the router's 404 and 405 included): a
/// request to any path but `/healthz` and, on a host that serves the web UI, its files
/// ([`Open`]) without `Authorization: Bearer <token>` gets 401.
///
/// An unknown route answers 401 too, not 404, until the caller has shown the token: an
/// unauthenticated caller learns nothing about the API, not even which paths exist (or
/// which version of Baton answers). With the token, it gets the usual 404 `unknown_route`
/// and its list of routes. `/healthz` stays open for any method, so a load balancer or
/// supervisor needs no secret to see that the process is up; it says nothing else. The UI's
/// files are the same for every host of a version and hold no data (they do say that Baton
/// answers): the page asks for the token when its first request for data answers 401.
pub async fn require_token(
    State(Guard { token, open }): State<Guard>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if open.lets_through(request.uri().path()) {
        return next.run(request).await;
    }
    let given = request.headers().get(header::AUTHORIZATION).map(|v| {
        let v = v.as_bytes();
        // The scheme is case-insensitive (RFC 9110); the token follows one space.
        match v.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => Some(v[7..].trim_ascii()),
            _ => None,
        }
    });
    let (challenge, message) = match given {
        Some(Some(t)) if token.matches(t) => return next.run(request).await,
        None => (
            r#"Bearer realm="baton""#,
            "this host requires a token: send `Authorization: Bearer <token>`, the token `baton serve` was started with (--token, BATON_TOKEN or --token-file); the CLI sends it from the same flags",
        ),
        Some(None) => (
            r#"Bearer realm="baton", error="invalid_request""#,
            "the Authorization header is not `Bearer <token>`: send the token `baton serve` was started with (--token, BATON_TOKEN or --token-file)",
        ),
        Some(Some(_)) => (
            r#"Bearer realm="baton", error="invalid_token""#,
            "the token is not this host's: send the one `baton serve` was started with (--token, BATON_TOKEN or --token-file)",
        ),
    };
    tracing::debug!(path = request.uri().path(), "refused a request without the right token");
    let mut response = ApiError(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "unknown_route",
        format!(
            "no route {method} {}: the API is POST/GET /v1/sagas, GET /v1/sagas/{{id}}, GET /v1/sagas/{{id}}/history, POST /v1/sagas/{{id}}/signals/{{name}}, POST /v1/sagas/{{id}}/cancel, POST /v1/sagas/{{id}}/retry, GET /v1/events, GET /v1/workflows, GET /v1/workflows/{{name}}, GET /v1/plugins, GET /metrics, GET /readyz and GET /healthz; the web UI is at GET /",
            uri.path()
        ),
    )
}

/// Turns every error response that is not already JSON (the body limit's 413, a 405, an
/// extractor's plain-text 400) into the one error shape, keeping its status and headers.
async fn json_errors(method: Method, uri: Uri, response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let said = String::from_utf8_lossy(&text).trim().to_owned();
    let path = uri.path();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError(
            status,
            "body_too_large",
            format!("the request body is over the limit of {} KiB", MAX_BODY_BYTES >> 10),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            ApiError(status, "method_not_allowed", format!("{method} is not allowed on {path} (allowed: {allowed})"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError(status, "unsupported_media_type", said),
        s if s.is_client_error() => ApiError(status, "invalid_request", format!("{method} {path}: {said}")),
        _ => ApiError(status, "internal", format!("{method} {path}: {said}")),
    };
    let mut fixed = error.into_response();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was never read: the connection cannot carry another request,
        // and a client that reused it would see its next request fail.
        fixed.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // Keep what the original said besides its body (an `Allow` header, for one).
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| n.map(|n| (n, v))) {
        fixed.headers_mut().entry(name).or_insert(value);
    }
    fixed
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

async fn start(State(o): State<Orchestrator>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let req: StartRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "the body must be JSON like {{\"workflow\": \"order\", \"input\": {{...}}, \"id\": \"optional\"}}: {e}"
            ),
        )
    })?;
    if let Some(id) = &req.id {
        check_id(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_id", e))?;
    }
    // A caller's W3C trace context: the saga's spans join its trace (an invalid one is
    // ignored, as the W3C spec asks).
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    match o.start_traced(&req.workflow, req.input, req.id, traceparent).await {
        Ok(started) => {
            let status = if started.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(started.saga)).into_response())
        }
        Err(e @ StartError::UnknownWorkflow { .. }) => {
            Err(ApiError(StatusCode::NOT_FOUND, "unknown_workflow", e.to_string()))
        }
        Err(e @ StartError::IdTaken { .. }) => Err(ApiError(StatusCode::CONFLICT, "id_taken", e.to_string())),
        Err(e @ StartError::InvalidInput { .. }) => {
            Err(ApiError(StatusCode::BAD_REQUEST, "invalid_input", e.to_string()))
        }
        Err(e @ StartError::ExternalUnreachable { .. }) => {
            Err(ApiError(StatusCode::BAD_REQUEST, "external_unreachable", e.to_string()))
        }
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
    let wait = match q.wait {
        Some(w) if !w.is_finite() || w < 0.0 => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("wait={w} must be a number of seconds, 0 to {}", MAX_WAIT.as_secs()),
            ));
        }
        Some(w) => w,
        None => 0.0,
    };
    if wait == 0.0 || saga.status.is_terminal() {
        return Ok(Json(saga).into_response());
    }
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
    /// The sub-sagas of this saga only.
    parent: Option<String>,
}

/// The header of `GET /v1/sagas` that says how long finished sagas are kept (`7d`), or
/// `forever`.
pub const RETAIN_HEADER: &str = "baton-retain";

async fn list(State(o): State<Orchestrator>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<SagaStatus>().map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_status", e))?),
    };
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    let sagas = match &q.parent {
        None => o.list(status, limit).await?,
        Some(parent) => {
            let p = o.get(parent).await?.ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no saga with id {parent:?}: no sub-sagas to list"),
                )
            })?;
            let mut children = o.children(&p).await?;
            children.retain(|c| status.is_none_or(|s| c.status == s));
            children.truncate(limit);
            children
        }
    };
    let retain = o.retain().map_or_else(|| "forever".to_owned(), crate::workflow::duration::format);
    let mut response = Json(sagas).into_response();
    if let Ok(v) = HeaderValue::from_str(&retain) {
        response.headers_mut().insert(RETAIN_HEADER, v);
    }
    Ok(response)
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            ControlError::Conflict { .. } => ApiError(StatusCode::CONFLICT, "saga_state", e.to_string()),
            ControlError::NoWorkflow { .. } => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "workflow_not_loaded", e.to_string())
            }
            ControlError::InvalidSignal { .. } => ApiError(StatusCode::BAD_REQUEST, "invalid_input", e.to_string()),
            ControlError::Store(e) => e.into(),
        }
    }
}

/// Most bytes of a signal name.
const MAX_SIGNAL_NAME: usize = 100;

async fn signal(
    State(o): State<Orchestrator>,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if name.is_empty()
        || name.len() > MAX_SIGNAL_NAME
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_signal",
            format!("{name:?} is not a signal name: 1 to {MAX_SIGNAL_NAME} letters, digits, '.', '_' and '-'"),
        ));
    }
    let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body is the signal's payload and must be JSON: {e}"),
            )
        })?
    };
    let saga = o.signal(&id, &name, payload).await?;
    Ok((StatusCode::ACCEPTED, Json(saga)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    #[serde(default)]
    reason: Option<String>,
}

async fn cancel(State(o): State<Orchestrator>, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body, if any, must be JSON like {{\"reason\": \"...\"}}: {e}"),
            )
        })?
    };
    let reason = req.reason.unwrap_or_else(|| "cancelled by an operator".to_owned());
    let saga = o.cancel(&id, &reason).await?;
    Ok((StatusCode::ACCEPTED, Json(saga)).into_response())
}

async fn retry(State(o): State<Orchestrator>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let saga = o.retry(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(saga)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_host_lets_only_healthz_through_and_a_full_host_the_ui_too() {
        for path in ["/healthz", "/", "/ui/app.js", "/ui/app.css"] {
            assert!(Open::HealthAndUi.lets_through(path), "{path}");
        }
        assert!(Open::Health.lets_through("/healthz"));
        for path in ["/", "/ui/app.js", "/ui/app.css"] {
            assert!(!Open::Health.lets_through(path), "a worker host serves no UI: {path}");
        }
        for open in [Open::Health, Open::HealthAndUi] {
            for path in ["/v1/sagas", "/v1/events", "/readyz", "/ui/", "/healthz/x"] {
                assert!(!open.lets_through(path), "{open:?} {path}");
            }
        }
    }
}
