//! The saga state machine.
//!
//! - [`saga`]: the saga record.
//! - [`decide`]: the pure decision function (saga + event + now -> new saga + effects).
//! - [`Orchestrator`] (this file): applies decisions. It loads a saga from the
//!   [`SagaStore`], decides, commits with optimistic concurrency (reload and decide again on
//!   a conflict), then carries out the effects: commands to the [`EventBus`], timers to
//!   itself. It sees only those traits, never a concrete bus, store or wasm.

pub mod decide;
pub mod saga;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument as _;

pub use decide::{Decision, Effect, Event, decide, pending_command, pending_timer};
use saga::Saga;

use crate::bus::EventBus;
use crate::store::{Created, SagaStore, StoreError};
use crate::workflow::Catalog;

/// Where the orchestrator gets the time. Injected so that tests control it; the decision
/// function itself never reads a clock.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// Why a saga could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no workflow named {name:?} (known: {known})")]
    UnknownWorkflow { name: String, known: String },
    #[error("a saga with id {id:?} already exists as an instance of workflow {workflow:?}")]
    IdTaken { id: String, workflow: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How often a decision is retried when another writer committed the same saga first.
/// Conflicts need two writers on one saga at one instant (a timer and a result); a handful
/// of retries is plenty, and a bound keeps a bug from spinning forever.
const MAX_CONFLICT_RETRIES: usize = 16;

/// How often the sweeper looks for timers that nobody will fire (their process died).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How late a timer must be before the sweeper fires it. The process that set it fires it on
/// time; this margin keeps the sweeper from racing it (harmless, but wasted work).
const SWEEP_GRACE_MS: u64 = 2_000;

/// How often [`Orchestrator::wait`] re-reads the store: in a distributed deployment another
/// host may finish the saga, and its announcement does not reach this process.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// Capacity of the channel announcing finished sagas. A waiter that falls behind re-reads the
/// store, so a small buffer costs nothing but a reload.
const FINISHED_CAPACITY: usize = 1024;

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    workflows: Catalog,
    store: Arc<dyn SagaStore>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    /// Timer events come back through this channel when they are due.
    timers: mpsc::UnboundedSender<(String, Event)>,
    timers_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<(String, Event)>>>,
    /// Ids of sagas that reached a terminal state, for [`Orchestrator::wait`].
    finished: broadcast::Sender<String>,
    /// Makes generated saga ids unique within this process.
    sequence: AtomicU64,
    /// Makes generated saga ids unique across processes.
    salt: u64,
}

impl Orchestrator {
    pub fn new(workflows: Catalog, store: Arc<dyn SagaStore>, bus: Arc<dyn EventBus>, clock: Arc<dyn Clock>) -> Self {
        let (timers, timers_rx) = mpsc::unbounded_channel();
        let (finished, _) = broadcast::channel(FINISHED_CAPACITY);
        // RandomState is seeded from the OS: a cheap random number without a dependency.
        let salt = RandomState::new().hash_one(std::process::id());
        Orchestrator {
            inner: Arc::new(Inner {
                workflows,
                store,
                bus,
                clock,
                timers,
                timers_rx: std::sync::Mutex::new(Some(timers_rx)),
                finished,
                sequence: AtomicU64::new(0),
                salt,
            }),
        }
    }

    pub fn workflows(&self) -> &Catalog {
        &self.inner.workflows
    }

    /// Start a saga of `workflow`. With an `id`, a retried start returns the existing saga
    /// instead of starting a second one.
    pub async fn start(&self, workflow: &str, input: Value, id: Option<String>) -> Result<Saga, StartError> {
        let inner = &self.inner;
        let wf = inner.workflows.get(workflow).ok_or_else(|| StartError::UnknownWorkflow {
            name: workflow.to_owned(),
            known: inner.workflows.names().join(", "),
        })?;
        let now = inner.clock.now_ms();
        let id = id.unwrap_or_else(|| {
            let seq = inner.sequence.fetch_add(1, Ordering::Relaxed);
            format!("{workflow}-{now:x}-{:06x}{seq:x}", inner.salt & 0xff_ffff)
        });
        let saga = Saga::new(id.clone(), wf, input, now);
        match inner.store.create(&saga).await? {
            Created::New => {}
            Created::Existing(existing) if existing.workflow == workflow => return Ok(*existing),
            Created::Existing(existing) => {
                return Err(StartError::IdTaken { id, workflow: existing.workflow });
            }
        }
        tracing::info!(transaction_id = %id, workflow, "saga started");
        self.apply(&id, &Event::Start).await?;
        Ok(inner.store.load(&id).await?.unwrap_or(saga))
    }

    /// The saga with this id.
    pub async fn get(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        self.inner.store.load(id).await
    }

    /// Sagas, newest first, optionally of one status.
    pub async fn list(&self, status: Option<saga::SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        self.inner.store.list(status, limit).await
    }

    /// Wait until the saga reaches a terminal state, and return it.
    pub async fn wait(&self, id: &str) -> Result<Saga, StoreError> {
        let mut finished = self.inner.finished.subscribe();
        loop {
            let saga = self.inner.store.load(id).await?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            if saga.status.is_terminal() {
                return Ok(saga);
            }
            let poll = tokio::time::sleep(WAIT_POLL);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    _ = &mut poll => break,
                    r = finished.recv() => match r {
                        Ok(done) if done == id => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(StoreError::Unavailable("orchestrator stopped".into()));
                        }
                    },
                }
            }
        }
    }

    /// Apply one event to one saga: load, decide, commit, carry out the effects.
    pub async fn apply(&self, id: &str, event: &Event) -> Result<(), StoreError> {
        let inner = &self.inner;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(mut saga) = inner.store.load(id).await? else {
                tracing::warn!(transaction_id = %id, "event for an unknown saga ignored: {event:?}");
                return Ok(());
            };
            let Some(wf) = inner.workflows.get(&saga.workflow) else {
                tracing::error!(transaction_id = %id, workflow = %saga.workflow, "the saga's workflow is not loaded; event ignored");
                return Ok(());
            };
            let expected = saga.revision;
            let decision = decide(wf, &mut saga, event, inner.clock.now_ms());
            if !decision.changed {
                tracing::debug!(transaction_id = %id, "stale event ignored");
                return Ok(());
            }
            saga.revision = expected + 1;
            match inner.store.commit(&saga, expected).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
            self.execute(&saga, decision.effects).await;
            if saga.status.is_terminal() {
                tracing::info!(transaction_id = %id, status = %saga.status, "saga finished");
                let _ = inner.finished.send(saga.id.clone());
            }
            return Ok(());
        }
        Err(StoreError::Unavailable(format!("saga {id}: gave up after {MAX_CONFLICT_RETRIES} concurrent changes")))
    }

    async fn execute(&self, saga: &Saga, effects: Vec<Effect>) {
        let mut commands = Vec::new();
        for effect in effects {
            match effect {
                Effect::Dispatch(cmd) => {
                    tracing::debug!(transaction_id = %saga.id, correlation_id = %cmd.meta.correlation_id, command = %cmd.name, "dispatch");
                    commands.push(cmd);
                }
                Effect::Schedule { at, event } => self.schedule(&saga.id, at, event),
            }
        }
        if !commands.is_empty()
            && let Err(e) = self.inner.bus.send_commands(commands).await
        {
            // Not lost: the step's timeout fires and the attempt is retried.
            tracing::warn!(transaction_id = %saga.id, "cannot send commands: {e}; the step timeout will retry them");
        }
    }

    /// The sagas that have not ended.
    async fn active(&self) -> Result<Vec<Saga>, StoreError> {
        let store = &self.inner.store;
        let mut sagas = store.list(Some(saga::SagaStatus::Running), usize::MAX).await?;
        sagas.extend(store.list(Some(saga::SagaStatus::Compensating), usize::MAX).await?);
        Ok(sagas)
    }

    /// Pick up the sagas a previous process left unfinished: start the ones never started,
    /// re-send the command each running one waits on (same ids, so a worker that already ran
    /// it answers from its record), and set their timers again. Returns how many it resumed.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let active = self.active().await?;
        let mut commands = Vec::new();
        for saga in &active {
            let Some(wf) = self.inner.workflows.get(&saga.workflow) else {
                tracing::error!(transaction_id = %saga.id, workflow = %saga.workflow, "cannot resume: its workflow is not loaded");
                continue;
            };
            if saga.cursor == saga::Cursor::Idle {
                let _ = self.apply_logged(&saga.id, &Event::Start).await;
                continue;
            }
            if let Some(cmd) = pending_command(wf, saga) {
                commands.push(cmd);
            }
            if let Some((at, event)) = pending_timer(saga) {
                self.schedule(&saga.id, at, event);
            }
        }
        if !commands.is_empty()
            && let Err(e) = self.inner.bus.send_commands(commands).await
        {
            tracing::warn!("cannot re-send the commands of resumed sagas: {e}; their timeouts will retry them");
        }
        if !active.is_empty() {
            tracing::info!(count = active.len(), "resumed unfinished sagas");
        }
        Ok(active.len())
    }

    /// Fire the timers that are overdue by more than the grace: their process died.
    /// Timers are durable because their due time is part of the saga record.
    async fn sweep(&self) -> Result<(), StoreError> {
        let now = self.inner.clock.now_ms();
        for saga in self.active().await? {
            match pending_timer(&saga) {
                Some((at, event)) if now >= at + SWEEP_GRACE_MS => {
                    tracing::info!(transaction_id = %saga.id, "firing an overdue timer");
                    let _ = self.apply_logged(&saga.id, &event).await;
                }
                None if saga.cursor == saga::Cursor::Idle && now >= saga.created_at + SWEEP_GRACE_MS => {
                    let _ = self.apply_logged(&saga.id, &Event::Start).await;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn schedule(&self, id: &str, at: u64, event: Event) {
        let delay = Duration::from_millis(at.saturating_sub(self.inner.clock.now_ms()));
        let tx = self.inner.timers.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send((id, event));
        });
    }

    /// Apply `event`, retrying a store that is briefly unavailable. False when it could not
    /// be applied (the caller leaves the message unacknowledged, so it comes back).
    async fn apply_logged(&self, id: &str, event: &Event) -> bool {
        let mut delay = Duration::from_millis(50);
        for _ in 0..8 {
            match self.apply(id, event).await {
                Ok(()) => return true,
                Err(e) if e.is_transient() => {
                    tracing::warn!(transaction_id = %id, "cannot apply an event: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(transaction_id = %id, "cannot apply an event: {e}");
                    return false;
                }
            }
        }
        false
    }

    /// Resume what a previous process left, then consume results and timers (and sweep for
    /// overdue ones) until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut timers =
            self.inner.timers_rx.lock().expect("lock poisoned").take().expect("Orchestrator::run called twice");
        let mut results = self.inner.bus.result_consumer().await?;
        self.recover().await?;
        let this = self.clone();
        let mut sweep_shutdown = shutdown.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sweep_shutdown.changed() => break,
                    _ = tick.tick() => {
                        if let Err(e) = this.sweep().await {
                            tracing::warn!("cannot sweep for overdue timers: {e}");
                        }
                    }
                }
            }
        });
        // Timers on a task of their own, so a burst of results never delays a timeout.
        let this = self.clone();
        let mut timer_shutdown = shutdown.clone();
        let timer_task = tokio::spawn(async move {
            loop {
                let (id, event) = tokio::select! {
                    _ = timer_shutdown.changed() => break,
                    t = timers.recv() => match t { Some(t) => t, None => break },
                };
                // A timer that cannot be applied now is fired again by the sweeper later.
                let _ =
                    this.apply_logged(&id, &event).instrument(tracing::info_span!("timer", transaction_id = %id)).await;
            }
        });
        loop {
            let batch = tokio::select! {
                _ = shutdown.changed() => break,
                b = results.recv(256) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("cannot read results: {e}; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut tokens = Vec::with_capacity(batch.len());
            for delivery in batch {
                let r = delivery.message;
                let span = tracing::info_span!(
                    "result",
                    otel.kind = "consumer",
                    transaction_id = %r.meta.transaction_id,
                    correlation_id = %r.meta.correlation_id,
                    command = %r.command,
                );
                let id = r.meta.transaction_id.clone();
                if self.apply_logged(&id, &Event::Result(r)).instrument(span).await {
                    tokens.push(delivery.token);
                }
            }
            if let Err(e) = results.ack(&tokens).await {
                tracing::warn!("cannot acknowledge results: {e}");
            }
        }
        timer_task.abort();
        sweeper.abort();
        Ok(())
    }
}
