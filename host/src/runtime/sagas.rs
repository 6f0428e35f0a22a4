//! What a worker may ask of the orchestrator: the `orchestrator` import of `baton:saga@0.2.0`
//! (start, run, signal and read sub-sagas), as the runtime sees it.
//!
//! The runtime knows nothing of sagas: the host that builds it gives it a [`SagaHost`] (the
//! orchestrator of the same process) with [`super::Runtime::set_saga_host`]. A plugin that
//! calls the import on a host without one gets a permanent `no_orchestrator` failure.

use async_trait::async_trait;
use serde_json::Value;

use crate::protocol::{Failure, Meta};

/// Failure code of a call to the `orchestrator` import on a host that runs no orchestrator.
pub const NO_ORCHESTRATOR: &str = "no_orchestrator";

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
