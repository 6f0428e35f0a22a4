//! Where saga state lives: the [`SagaStore`] trait and its implementations.
//!
//! - [`memory`]: in-process, for `baton run` and tests.
//! - [`embedded`]: durable, one file on local disk (redb), for embedded `baton serve`.
//! - [`redis`]: shared by the hosts of a distributed deployment.
//!
//! Besides sagas, a store keeps the terminal outcome of each command under
//! (command, idempotency key), so that a duplicate command is answered from the record
//! instead of running its worker twice.

pub mod embedded;
pub mod memory;
pub mod redis;

use async_trait::async_trait;

use crate::orchestrator::saga::{Saga, SagaStatus};
use crate::protocol::Outcome;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer committed the saga first: reload it and decide again.
    #[error("saga {id} was changed concurrently (expected revision {expected})")]
    Conflict { id: String, expected: u64 },
    /// The saga does not exist.
    #[error("no saga with id {0:?}")]
    NotFound(String),
    /// The backend failed; retrying later may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// True when trying the same operation again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// What [`SagaStore::create`] found.
#[derive(Debug)]
pub enum Created {
    /// The saga is new.
    New,
    /// A saga with this id already exists (a retried start): here it is.
    Existing(Box<Saga>),
}

/// Durable saga state and idempotency records.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
    /// Store a new saga, unless one with its id exists.
    async fn create(&self, saga: &Saga) -> Result<Created, StoreError>;

    /// The saga with this id.
    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError>;

    /// Replace the saga if its stored revision is still `expected_revision`
    /// (optimistic concurrency); `saga.revision` must be `expected_revision + 1`.
    async fn commit(&self, saga: &Saga, expected_revision: u64) -> Result<(), StoreError>;

    /// Sagas, newest first, optionally of one status, at most `limit`.
    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError>;

    /// The recorded terminal outcome of `command` under `idempotency_key`.
    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError>;

    /// Record a terminal outcome. The first record wins: a later one for the same key is ignored.
    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError>;
}
