//! Where saga state lives: the [`SagaStore`] trait and its implementations.
//!
//! - [`memory`]: in-process, for `baton run` and tests.
//! - [`embedded`]: durable, one file on local disk (redb), for embedded `baton serve`.
//! - [`redis`]: shared by the hosts of a distributed deployment.
//!
//! A store keeps, for each saga, its record, its history and the time its pending timer is
//! due (an index, so that timers whose host died are found without reading every saga).
//! Everything a [`Transition`] carries is written in one atomic step: the record, the history
//! entries and, for a store that [dispatches commands](SagaStore::dispatches_commands), the
//! commands themselves (the transactional outbox). A crash can never leave a transition
//! half-applied.
//!
//! Besides sagas, a store keeps the text of every workflow definition a saga started with,
//! by content hash (sagas are pinned to it), and the terminal outcome of each command under
//! (command, idempotency key), so that a duplicate command is answered from the record
//! instead of running its worker twice.
//!
//! # Retention
//!
//! A finished saga carries `expires_at` (its end plus the host's `--retain`), and every store
//! indexes it. [`SagaStore::purge`] deletes the sagas whose time has come: the record, its
//! history, and its outcome records. An idempotency key begins with its saga's id and a `/`
//! (`order-1/charge/forward`), and [`saga_of`] reads it back, so a store files outcome
//! records by saga and deletes them with it: a command can be redelivered for as long as its
//! saga lives, and its record lives exactly that long.

pub mod embedded;
pub mod memory;
pub mod redis;

use async_trait::async_trait;
use std::sync::Arc;

use crate::model::{HistoryEntry, Saga, SagaStatus};
use crate::protocol::{CommandMessage, Outcome, ResultMessage};

/// The saga an idempotency key belongs to: the key up to its first `/` (the whole key when
/// it has none). Saga ids never hold a `/` (the API refuses them).
pub fn saga_of(idempotency_key: &str) -> &str {
    idempotency_key.split('/').next().unwrap_or(idempotency_key)
}

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
    /// A stored record could not be read back: it is damaged, or written by an incompatible
    /// version. Retrying cannot help; an operator must look.
    #[error("corrupt record {what}: {source}")]
    Corrupt {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// True when trying the same operation again later may succeed (the backend is back, or
    /// the competing writer is done); false when it is permanent.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict { .. })
    }

    /// A [`StoreError::Corrupt`]: `what` could not be read because of `source`.
    pub fn corrupt(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Corrupt { what: what.into(), source: source.into() }
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

/// One change of one saga, committed atomically: the saga as it is after the change, the
/// commands the change emits and the history entries that describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The saga after the change; its `revision` is `expected_revision + 1`. Shared, so that
    /// a store keeping the last committed record in memory keeps this one without a copy.
    pub saga: Arc<Saga>,
    /// The revision the change was decided from (optimistic concurrency).
    pub expected_revision: u64,
    /// Commands to send to the workers.
    pub commands: Vec<CommandMessage>,
    /// What happened, for the saga's history.
    pub history: Vec<HistoryEntry>,
    /// Results to send: a sub-saga that ended answers the command that started it. Sent as
    /// the commands are (in the same atomic step by a store that dispatches commands).
    pub replies: Vec<Reply>,
}

/// A result a transition sends, and the deployment it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The bus prefix of the deployment that sent the command, when it is not this one.
    pub prefix: Option<String>,
    pub result: ResultMessage,
}

impl Transition {
    /// A write of `saga` decided from `expected_revision`, with no commands and no history.
    pub fn bare(saga: Saga, expected_revision: u64) -> Transition {
        Transition {
            saga: Arc::new(saga),
            expected_revision,
            commands: Vec::new(),
            history: Vec::new(),
            replies: Vec::new(),
        }
    }
}

/// What became of one transition of a [`SagaStore::commit`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Ok,
    /// The stored revision was not the expected one: reload and decide again.
    Conflict,
    /// No saga with that id.
    NotFound,
}

/// Durable saga state and idempotency records.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
    /// Store a new saga, with the transition that started it, unless one with its id exists.
    async fn create(&self, start: &Transition) -> Result<Created, StoreError>;

    /// The saga with this id.
    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError>;

    /// The sagas with these ids, in order (one round trip where the backend allows).
    async fn load_many(&self, ids: &[&str]) -> Result<Vec<Option<Saga>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.load(id).await?);
        }
        Ok(out)
    }

    /// Commit a batch of transitions, each checked against its expected revision and applied
    /// atomically (a batch may hold several sagas, at most one transition per saga). One
    /// result per transition, in order; `Err` when the store could not be reached, in which
    /// case none, some or all may have been applied.
    async fn commit(&self, batch: &[Transition]) -> Result<Vec<Committed>, StoreError>;

    /// True when [`commit`](SagaStore::commit) and [`create`](SagaStore::create) also put the
    /// transition's commands on the bus, in the same atomic step (the Redis store with the
    /// Redis Streams transport). Otherwise the caller sends them once the commit returns.
    fn dispatches_commands(&self) -> bool {
        false
    }

    /// What the store is, as OpenTelemetry's `db.system.name` says it: `redis`, `redb`, or
    /// `memory`.
    fn system(&self) -> &'static str {
        "memory"
    }

    /// How many sagas have `status` (for `baton_sagas_in_flight`). Stores with an index
    /// answer without reading the records.
    async fn count(&self, status: SagaStatus) -> Result<u64, StoreError> {
        Ok(self.list(Some(status), usize::MAX).await?.len() as u64)
    }

    /// Sagas, newest first, optionally of one status, at most `limit`.
    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError>;

    /// The history of a saga, oldest first (empty when the saga does not exist).
    async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Sagas whose pending timer was due at or before `before` (ms since the epoch), as
    /// `(due, id)`, in that order, at most `limit`, starting strictly after `after`: a caller
    /// pages through the overdue timers with the last entry of each page, so timers it cannot
    /// fire (a workflow another host runs) never hide the ones behind them.
    async fn due_timers(
        &self,
        after: Option<(u64, &str)>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError>;

    /// Delete up to `limit` sagas whose `expires_at` is at or before `now` (ms since the
    /// epoch), with their history and outcome records; returns how many. Called often by
    /// every orchestrator, so it must be cheap when there is nothing to delete.
    async fn purge(&self, now: u64, limit: usize) -> Result<usize, StoreError>;

    /// The recorded terminal outcome of `command` under `idempotency_key`.
    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError>;

    /// The recorded outcomes of several (command, idempotency key) pairs, in order (one
    /// round trip where the backend allows).
    async fn outcomes(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<Outcome>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for (command, key) in keys {
            out.push(self.outcome(command, key).await?);
        }
        Ok(out)
    }

    /// Record several terminal outcomes, as [`record_outcome`](SagaStore::record_outcome)
    /// does each (one round trip where the backend allows).
    async fn record_outcomes(&self, records: &[(&str, &str, &Outcome)]) -> Result<(), StoreError> {
        for (command, key, outcome) in records {
            self.record_outcome(command, key, outcome).await?;
        }
        Ok(())
    }

    /// Keep the text of a workflow definition under its content hash, so that a saga runs
    /// to its end on the definition it started with whatever the workflow files say later.
    /// Idempotent: the same hash always has the same text.
    async fn put_definition(&self, hash: &str, text: &str) -> Result<(), StoreError>;

    /// The definition kept under `hash`.
    async fn definition(&self, hash: &str) -> Result<Option<String>, StoreError>;

    /// Forget the recorded outcomes of these (command, idempotency key) pairs, so that the
    /// next command under the key runs again. Only for an operator's retry of a command that
    /// failed for good once its cause is fixed: a recorded failure would otherwise answer it.
    async fn forget_outcomes(&self, keys: &[(&str, &str)]) -> Result<(), StoreError>;

    /// Record a terminal outcome. The first record wins: a later one for the same key is
    /// ignored. A store may make the record durable together with the next commit rather
    /// than at once (the embedded store does, see there): it is never later than the commit
    /// of the saga transition that consumes the outcome.
    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError>;

    /// Whether the store answers now: `Ok` when it can take reads and writes, the reason
    /// otherwise. Cheap (one round trip at most) and read-only: `GET /readyz` calls it. The
    /// caller bounds how long it may take.
    async fn ping(&self) -> Result<(), StoreError>;
}
