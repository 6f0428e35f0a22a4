//! `GET /v1/events[?workflow=W&status=S]`: the sagas this host commits, live, as server-sent
//! events (`text/event-stream`).
//!
//! - `saga`: a saga as it was just committed, the same JSON `GET /v1/sagas` gives for it
//!   (each start, step, signal, compensation and end of it is one event).
//! - `resync`: read the list again. The first event of every stream is one, sent once the
//!   stream listens, so a client that reads the list on each `resync` misses nothing between
//!   its read and the stream; another comes when the client fell more than
//!   `CHANGES_BUFFER` sagas behind and some were dropped (its data is how many).
//!
//! A comment (`: keep-alive`) comes every [`KEEP_ALIVE`], so a proxy does not close a quiet
//! stream and a client can tell a dead connection from a quiet host. The stream ends when
//! the host stops.
//!
//! Only the commits of this process are sent ([`Orchestrator::changes`]): in a distributed
//! deployment another host moves sagas on too, and a client re-reads the store now and then
//! for those (the web UI does every 10 s).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::ApiError;
use crate::model::{Saga, SagaStatus};
use crate::orchestrator::Orchestrator;

/// How often a quiet stream gets a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the event stream's handler needs: the orchestrator whose commits it sends, and the
/// host's stop signal, which ends every stream (a graceful shutdown waits for open answers).
#[derive(Clone)]
pub(super) struct Live {
    pub orchestrator: Orchestrator,
    pub stopping: watch::Receiver<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    workflow: Option<String>,
    status: Option<String>,
}

/// Which sagas a stream sends.
struct Filter {
    workflow: Option<String>,
    status: Option<SagaStatus>,
}

impl Filter {
    fn takes(&self, saga: &Saga) -> bool {
        self.workflow.as_ref().is_none_or(|w| *w == saga.workflow) && self.status.is_none_or(|s| s == saga.status)
    }
}

/// `GET /v1/events`: subscribe, then stream.
pub(super) async fn events(State(live): State<Live>, Query(q): Query<EventsQuery>) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<SagaStatus>().map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_status", e))?),
    };
    let filter = Filter { workflow: q.workflow, status };
    // Subscribed before the first `resync` goes out: nothing committed after it is missed.
    let changes = live.orchestrator.changes();
    let first = futures_util::stream::once(async { Ok::<_, Infallible>(resync(0)) });
    let rest = futures_util::stream::unfold((changes, filter, live.stopping, Seen::default()), next_event);
    let stream = futures_util::StreamExt::chain(first, rest);
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response();
    // A proxy that buffers answers (nginx does by default) would hold the events back.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Most sagas whose last revision a stream remembers; past this it forgets them all (a
/// stale record could then slip through once).
const MAX_SEEN: usize = 50_000;

/// The newest revision this stream has seen of each saga. Two commits of one saga can reach
/// the broadcast out of order (each is sent after its own commit returns, by whichever task
/// made it), so a record older than one already seen is skipped: the newer one holds its
/// changes.
#[derive(Default)]
pub(super) struct Seen(std::collections::HashMap<String, u64>);

impl Seen {
    /// Whether `saga` is newer than anything seen of it (and note it).
    fn newer(&mut self, saga: &Saga) -> bool {
        if self.0.len() >= MAX_SEEN && !self.0.contains_key(&saga.id) {
            self.0.clear();
        }
        match self.0.get_mut(&saga.id) {
            Some(rev) if *rev >= saga.revision => false,
            Some(rev) => {
                *rev = saga.revision;
                true
            }
            None => {
                self.0.insert(saga.id.clone(), saga.revision);
                true
            }
        }
    }
}

type StreamState = (broadcast::Receiver<Arc<Saga>>, Filter, watch::Receiver<bool>, Seen);

/// The next event for the stream: a saga the filter takes, or a `resync` after a lag; `None`
/// (the end of the stream) when the host stops.
async fn next_event(state: StreamState) -> Option<(Result<Event, Infallible>, StreamState)> {
    let (mut changes, filter, mut stopping, mut seen) = state;
    loop {
        let received = tokio::select! {
            r = changes.recv() => r,
            _ = stopping.wait_for(|stop| *stop) => return None,
        };
        let event = match received {
            Ok(saga) if seen.newer(&saga) && filter.takes(&saga) => saga_event(&saga),
            Ok(_) => continue,
            Err(RecvError::Lagged(missed)) => resync(missed),
            Err(RecvError::Closed) => return None,
        };
        return Some((Ok(event), (changes, filter, stopping, seen)));
    }
}

/// Event `saga`: the record as `GET /v1/sagas` serialises it.
fn saga_event(saga: &Saga) -> Event {
    Event::default().event("saga").json_data(saga).unwrap_or_else(|e| {
        // A record always serialises (the store wrote it as JSON); should one not, the
        // client re-reads rather than miss it.
        tracing::warn!(transaction_id = %saga.id, "cannot serialise a saga for the event stream: {e}");
        resync(1)
    })
}

/// Event `resync`, with how many sagas were missed.
fn resync(missed: u64) -> Event {
    Event::default().event("resync").data(missed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga(workflow: &str, status: SagaStatus) -> Saga {
        let mut s: Saga = serde_json::from_value(serde_json::json!({
            "id": "s-1", "workflow": workflow, "workflow_version": 1, "status": "running", "input": null, "steps": [], "blocks": [],
            "created_at": "2026-12-01T12:00:00.000Z", "updated_at": "2026-12-01T12:00:00.000Z", "revision": 1
        }))
        .expect("a saga record");
        s.status = status;
        s
    }

    #[test]
    fn an_older_record_of_a_saga_than_one_sent_is_skipped() {
        let mut seen = Seen::default();
        let mut s = saga("order", SagaStatus::Running);
        s.revision = 4;
        assert!(seen.newer(&s));
        s.revision = 3;
        assert!(!seen.newer(&s), "revision 3 came after 4: skipped");
        s.revision = 4;
        assert!(!seen.newer(&s), "the same revision twice: skipped");
        s.revision = 5;
        assert!(seen.newer(&s));
    }

    #[test]
    fn a_filter_takes_what_it_names() {
        let all = Filter { workflow: None, status: None };
        let order = Filter { workflow: Some("order".into()), status: None };
        let failed_orders = Filter { workflow: Some("order".into()), status: Some(SagaStatus::Failed) };
        let running_order = saga("order", SagaStatus::Running);
        assert!(all.takes(&running_order));
        assert!(order.takes(&running_order));
        assert!(!order.takes(&saga("trip", SagaStatus::Running)));
        assert!(!failed_orders.takes(&running_order));
        assert!(failed_orders.takes(&saga("order", SagaStatus::Failed)));
    }
}
