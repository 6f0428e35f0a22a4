//! What a worker may ask of the orchestrator: the `orchestrator` import of `baton:saga@0.2.0`
//! (start, run, signal and read sub-sagas), as the runtime sees it.
//!
//! The runtime knows nothing of sagas: the host that builds it gives it a [`SagaHost`] (the
//! orchestrator of the same process) with [`super::Runtime::set_saga_host`]. A plugin that
//! calls the import on a host without one gets a permanent `no_orchestrator` failure.
//!
//! Below the trait, the import's host functions (`impl orchestrator::Host for HostState`):
//!
//! - Every call acts on behalf of the command the instance runs: its [`Meta`] is the caller
//!   passed to [`SagaHost::start`].
//! - Ids: an explicit id is checked as the API checks one ([`model::check_id`]; else the
//!   permanent [`INVALID_ID`]); without one, the n-th call of this run that needs one
//!   (`start-saga` without an id, or `run-saga`) gets [`model::call_saga_id`]`(key, n)`, so a
//!   redelivered command re-attaches to what its first delivery started.
//! - `run-saga` is [`SagaHost::start`], then [`SagaHost::wait`].
//! - Text from the guest that is not JSON fails the call with the permanent `invalid_input`.
//! - The functions are async: a plugin waiting in `run-saga` is a suspended fiber that holds
//!   no thread. Time spent in them is added to the instance's `CpuClock::blocked`, so the
//!   epoch deadline does not count it; the step's timeout, around the whole run, still
//!   bounds it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::HostState;
use super::bindings::v2::baton::saga::orchestrator;
use super::bindings::v2::baton::saga::types as wit;
use crate::model;
use crate::protocol::{Failure, Meta, codes};

/// Failure code of a call to the `orchestrator` import on a host that runs no orchestrator.
pub const NO_ORCHESTRATOR: &str = "no_orchestrator";

/// Failure code of a call that names a saga id that is not one ([`model::check_id`]).
pub const INVALID_ID: &str = "invalid_id";

/// The orchestrator, as a command handler calls it. Every method is safe to call again with
/// the same arguments (a redelivered command does): a start under an existing id with the
/// same workflow and input re-attaches to that saga.
#[async_trait]
pub trait SagaHost: Send + Sync + 'static {
    /// Start `workflow` with `input` under `id`, as a child of the saga and step `caller`
    /// belongs to. Ok once the child is durable (or already existed, started the same way).
    async fn start(&self, workflow: &str, input: Value, id: &str, caller: &Meta) -> Result<(), Failure>;

    /// Wait until saga `id` ends: its output when it completed; a permanent failure with the
    /// saga's error code when it compensated or failed.
    async fn wait(&self, id: &str) -> Result<Value, Failure>;

    /// Send signal `name` with `payload` to saga `id`.
    async fn signal(&self, id: &str, name: &str, payload: Value) -> Result<(), Failure>;

    /// Saga `id`'s record, as `GET /v1/sagas/{id}` returns it.
    async fn get(&self, id: &str) -> Result<Value, Failure>;
}

/// What the `orchestrator` import needs in one instance's store: the orchestrator, the
/// command on whose behalf the calls act, and how many sagas it started without an id.
pub(super) struct SagaCalls {
    host: Option<Arc<dyn SagaHost>>,
    /// `None` while `describe` runs: there is no command then.
    caller: Option<Meta>,
    /// Calls so far that derived their saga's id (`start-saga` without an id, `run-saga`).
    unnamed: u32,
    /// The call blocked right now, for the log of a run stopped at its timeout.
    waiting: Option<String>,
}

impl SagaCalls {
    pub(super) fn new(host: Option<Arc<dyn SagaHost>>, caller: Option<Meta>) -> Self {
        Self { host, caller, unnamed: 0, waiting: None }
    }

    /// The call the instance is blocked in, if any: `run-saga trip (saga o-1.book.1)`.
    pub(super) fn waiting(&self) -> Option<&str> {
        self.waiting.as_deref()
    }

    /// The orchestrator and the caller, or why there is none.
    fn ready(&self, call: &str) -> Result<(Arc<dyn SagaHost>, Meta), Failure> {
        let Some(caller) = &self.caller else {
            return Err(Failure::permanent(
                NO_ORCHESTRATOR,
                format!(
                    "{call} was called from describe(), which runs when the plugin is loaded, outside any command: call the orchestrator from a command's handler"
                ),
            ));
        };
        let Some(host) = &self.host else {
            return Err(Failure::permanent(
                NO_ORCHESTRATOR,
                format!(
                    "{call}: this host runs no orchestrator, so a worker cannot start or reach sagas from here: run the plugin on a host that has one too (`baton serve --role all`, the default, or `baton run`)"
                ),
            ));
        };
        Ok((host.clone(), caller.clone()))
    }

    /// The id of the next saga started without one: the caller's idempotency key and the
    /// call's index (1-based), counted over every such call of this run, failed ones
    /// included, so the numbering depends on the order of the calls alone and a redelivered
    /// command, making the same calls, derives the same ids.
    fn next_id(&mut self, caller: &Meta) -> String {
        self.unnamed += 1;
        model::call_saga_id(&caller.idempotency_key, self.unnamed)
    }
}

/// Text from the guest that must be JSON.
fn json(call: &str, what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text)
        .map_err(|e| Failure::permanent(codes::INVALID_INPUT, format!("{call}: the {what} is not JSON: {e}")))
}

fn to_wit(f: Failure) -> wit::Failure {
    wit::Failure { code: f.code, message: f.message, retryable: f.retryable }
}

impl HostState {
    /// Run `call` as time blocked: it is added to the CPU clock's `blocked`, so the epoch
    /// deadline does not count it (the step's timeout, around the whole run, does).
    async fn blocked<T>(&mut self, what: String, call: impl Future<Output = T>) -> T {
        self.sagas.waiting = Some(what);
        let started = Instant::now();
        let out = call.await;
        self.cpu.blocked += started.elapsed();
        self.sagas.waiting = None;
        out
    }

    async fn start(
        &mut self,
        call: &str,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> Result<String, Failure> {
        let (host, caller) = self.sagas.ready(call)?;
        let id = match id {
            Some(id) => {
                model::check_id(&id).map_err(|e| Failure::permanent(INVALID_ID, format!("{call}: {e}")))?;
                id
            }
            None => self.sagas.next_id(&caller),
        };
        let input = json(call, "input", &input)?;
        tracing::debug!(workflow = %workflow, saga = %id, "{call}: starting a sub-saga");
        self.blocked(format!("{call} {workflow} (saga {id})"), host.start(&workflow, input, &id, &caller)).await?;
        Ok(id)
    }
}

impl orchestrator::Host for HostState {
    async fn start_saga(
        &mut self,
        workflow: String,
        input: String,
        id: Option<String>,
    ) -> Result<String, wit::Failure> {
        self.start("start-saga", workflow, input, id).await.map_err(to_wit)
    }

    async fn run_saga(&mut self, workflow: String, input: String) -> Result<String, wit::Failure> {
        let id = self.start("run-saga", workflow.clone(), input, None).await.map_err(to_wit)?;
        let (host, _) = self.sagas.ready("run-saga").map_err(to_wit)?;
        let output = self.blocked(format!("run-saga {workflow} (saga {id})"), host.wait(&id)).await.map_err(to_wit)?;
        tracing::debug!(workflow = %workflow, saga = %id, "run-saga: the sub-saga completed");
        Ok(output.to_string())
    }

    async fn signal_saga(&mut self, id: String, signal: String, payload: String) -> Result<(), wit::Failure> {
        let (host, _) = self.sagas.ready("signal-saga").map_err(to_wit)?;
        let payload = json("signal-saga", "payload", &payload).map_err(to_wit)?;
        self.blocked(format!("signal-saga {signal} (saga {id})"), host.signal(&id, &signal, payload))
            .await
            .map_err(to_wit)
    }

    async fn get_saga(&mut self, id: String) -> Result<String, wit::Failure> {
        let (host, _) = self.sagas.ready("get-saga").map_err(to_wit)?;
        let record = self.blocked(format!("get-saga (saga {id})"), host.get(&id)).await.map_err(to_wit)?;
        Ok(record.to_string())
    }
}
