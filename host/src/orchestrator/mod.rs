//! The saga state machine.
//!
//! - [`decide`]: the pure decision function (saga + event + now -> new saga + effects), and
//!   what every step kind shares; [`steps`]: one file per step kind.
//! - [`timers`]: deadlines, backoffs, wait timeouts and sleeps, in process.
//! - The saga record itself is [`crate::model`]'s.
//! - [`Orchestrator`] (this file): applies decisions. It loads sagas from the [`SagaStore`],
//!   decides, commits each change with its commands and history as one [`Transition`]
//!   (optimistic concurrency: on a conflict it reloads and decides again), then carries out
//!   what is left: commands to the [`EventBus`] (unless the store put them there in the same
//!   commit), timers to itself. It sees only those traits, never a concrete bus, store or wasm.
//!
//! Results are applied in batches: the events of a batch are grouped by saga, the sagas are
//! loaded in one call, every event is decided in memory, and the changes are committed in
//! one call and their commands sent in one more. A busy orchestrator makes three round trips
//! for a batch of hundreds of results, not three per result.

pub mod decide;
pub mod steps;
pub mod sub_sagas;
pub mod timers;

/// The saga record, where it lived before [`crate::model`]: kept so that code written against
/// `orchestrator::saga` keeps compiling.
pub use crate::model as saga;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use crate::model::digest;
use crate::model::{HistoryEntry, Saga, SagaStatus};
pub use decide::{Decision, Effect, Event, decide, new_saga, pending_commands, pending_timers};
use timers::Timers;

use crate::bus::EventBus;
use crate::store::{Committed, Created, SagaStore, StoreError, Transition};
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

/// A clock that follows tokio's time. Under `tokio::time::pause()` it stands still until the
/// runtime advances it (at once, when every task waits on a timer), so tests of step
/// timeouts, backoffs and the sweeper take no real time however long the durations.
pub struct TokioClock {
    start: tokio::time::Instant,
    epoch_ms: u64,
}

impl TokioClock {
    /// A clock that reads `epoch_ms` now.
    pub fn new(epoch_ms: u64) -> TokioClock {
        TokioClock { start: tokio::time::Instant::now(), epoch_ms }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.epoch_ms + self.start.elapsed().as_millis() as u64
    }
}

/// Why a saga could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no workflow named {name:?} (known: {known})")]
    UnknownWorkflow { name: String, known: String },
    /// The id belongs to a saga of another workflow, or with another input.
    #[error(
        "a saga with id {id:?} already exists (workflow {workflow:?}, input {existing_digest}); this start asks for workflow {requested_workflow:?} with input {requested_digest}: use another id, or the same workflow and input to get the existing saga"
    )]
    IdTaken {
        id: String,
        workflow: String,
        existing_digest: String,
        requested_workflow: String,
        requested_digest: String,
    },
    /// The input does not fit the workflow's `input_schema`.
    #[error("the input does not fit workflow {workflow:?}'s input_schema: {}", violations.join("; "))]
    InvalidInput { workflow: String, violations: Vec<String> },
    /// The workflow sends commands it declares external, and the bus is in-process, where no
    /// worker outside the host can reach them (embedded mode).
    #[error(
        "workflow {workflow:?} sends {}, declared external (served by a worker outside the host), but this host's bus is in-process (embedded mode, or `baton run`): no outside worker can reach it, so the saga could never finish. Run `baton serve --redis URL` and start the saga there (`baton start {workflow} ...`), with a worker for {} on the same Redis and --prefix (see \"Workers outside the sandbox\" in README.md)",
        commands.join(", "),
        commands.join(", ")
    )]
    ExternalUnreachable { workflow: String, commands: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a signal, a cancel or a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no saga with id {0:?}")]
    NotFound(String),
    /// The saga is not in a state that takes this request (it has ended, say).
    #[error("saga {id:?} is {status}: {message}")]
    Conflict { id: String, status: SagaStatus, message: String },
    #[error(
        "saga {id:?} runs workflow {workflow:?}, which is not loaded on this host: send the request to a host that has it"
    )]
    NoWorkflow { id: String, workflow: String },
    /// A signal's payload does not fit the `schema` of the `wait` that takes it.
    #[error("signal {signal:?} to saga {id:?} refused: its payload does not fit the schema of the wait: {}", violations.join("; "))]
    InvalidSignal { id: String, signal: String, violations: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started saga, and whether this call created it (`false`: it existed, a retried start).
#[derive(Debug, Clone)]
pub struct Started {
    pub saga: Saga,
    pub created: bool,
}

/// How long [`Orchestrator::start`] keeps trying a store that answers with a retryable error.
pub const START_RETRY_BUDGET: Duration = Duration::from_secs(5);

/// Run `op` until it succeeds, fails permanently, or `budget` is spent on retryable errors
/// (50 ms, doubling, up to 1 s apart).
async fn retry_store<T, F, Fut>(budget: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let give_up = tokio::time::Instant::now() + budget;
    let mut delay = Duration::from_millis(50);
    loop {
        match op().await {
            Err(e) if e.is_retryable() && tokio::time::Instant::now() + delay < give_up => {
                tracing::warn!("store error, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// How often a decision is retried when another writer committed the same saga first.
/// Conflicts need two writers on one saga at one instant (a timer and a result); a handful
/// of retries is plenty, and a bound keeps a bug from spinning forever.
const MAX_CONFLICT_RETRIES: usize = 16;

/// Most results taken from the bus at once; one batch is one load, one commit, one send.
const RESULT_BATCH: usize = 256;

/// Result batches being applied at once. One would leave the store idle while each batch's
/// commands go out and the next batch is read, and make every step wait for two commits;
/// a few keep the store's group commit fed. A saga has one command out at a time, so two
/// batches rarely touch the same saga, and when they do the optimistic check sorts it out.
const BATCHES_IN_FLIGHT: usize = 4;

/// How often the sweeper looks for timers that nobody will fire (their process died).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How late a timer must be before the sweeper fires it. The process that set it fires it on
/// time; this margin keeps the sweeper from racing it (harmless, but wasted work).
const SWEEP_GRACE_MS: u64 = 2_000;

/// Most overdue timers one sweep fires, and the size of a page of the timer index; the next
/// sweep takes the rest.
const SWEEP_BATCH: usize = 256;

/// Most finished sagas one sweep deletes once their retention is over.
const PURGE_BATCH: usize = 256;

/// Most pages of the timer index one sweep reads, so one sweep stays short however many
/// timers it must step over.
const SWEEP_PAGES: usize = 16;

/// Count a result that changed nothing: it names a step its saga does not have (a result
/// for a step that moved on is kept in the history as `late_result`, and does change it).
/// Counted when decided: a decision done again after a conflicting commit counts again.
fn count_unmatched(event: &Event) {
    if matches!(event, Event::Result(_)) {
        crate::observe::metrics::dropped("unknown_step");
    }
}

/// How many committed sagas [`Orchestrator::changes`] holds for a slow listener.
const CHANGES_BUFFER: usize = 1024;

/// How often [`Orchestrator::wait`] re-reads the store: in a distributed deployment another
/// host may finish the saga, and its announcement does not reach this process.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    /// The workflows new sagas may start, as loaded last (a reload swaps it whole).
    workflows: std::sync::RwLock<Arc<Catalog>>,
    /// Every workflow name this host has loaded since it started: a saga of one a reload
    /// removed still runs here, on the definition it started with.
    ever: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Bumped at each reload of `workflows`, for the tasks that serve them.
    reloads: watch::Sender<u64>,
    /// Every saga this process commits, as committed, for live views (the web UI's event
    /// stream). Sent only while someone listens; a listener that falls behind by more than
    /// [`CHANGES_BUFFER`] is told it lagged and reads the store again.
    changes: broadcast::Sender<Arc<Saga>>,
    /// Metrics and spans of what is committed.
    observer: crate::observe::Observer,
    /// Definitions by content hash: those of `workflows`, and those older sagas started with,
    /// read from the store when first needed. A saga runs on the one its record names. A std
    /// `RwLock`: lookups on every decision, an insert once per definition.
    definitions: std::sync::RwLock<HashMap<String, Arc<crate::workflow::Workflow>>>,
    /// Hashes of `workflows` already written to the store (a start writes its definition
    /// first, once per process).
    stored: std::sync::Mutex<std::collections::HashSet<String>>,
    store: Arc<dyn SagaStore>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    timers: Timers,
    /// Due timers come back here; taken by [`Orchestrator::run`].
    due: std::sync::Mutex<Option<mpsc::UnboundedReceiver<timers::Due>>>,
    /// Callers of [`Orchestrator::wait`], by saga id: a saga's end wakes its own waiters
    /// only (a broadcast would wake every waiter at every end). A std `Mutex`: map
    /// operations only, never held across an await.
    waiting: std::sync::Mutex<HashMap<String, Vec<oneshot::Sender<Saga>>>>,
    /// Makes generated saga ids unique within this process.
    sequence: AtomicU64,
    /// Buses of other deployments this host answers commands for (`handles`), by prefix:
    /// where their sagas' replies go when the store does not send them itself.
    deployments: std::sync::RwLock<HashMap<String, Arc<dyn EventBus>>>,
    /// Makes generated saga ids unique across processes.
    salt: u64,
    /// How long a finished saga is kept (record, history, outcome records); `None`: forever.
    retain: Option<Duration>,
}

/// A decided change, ready to commit, and the timers the saga waits on after it.
struct Change {
    transition: Transition,
    timers: Vec<(u64, Event)>,
}

impl Change {
    /// Whether `stored` is this change, committed: after a commit whose answer was lost (the
    /// connection dropped after the write), tells "it landed" from "it did not".
    fn landed_as(&self, stored: &Saga) -> bool {
        let ours = &self.transition.saga;
        stored.revision == ours.revision && stored.updated_at == ours.updated_at && stored == &**ours
    }
}

/// What deciding some events on a saga came to.
enum Decided {
    /// Boxed: a change is large, the other answers are nothing.
    Change(Box<Change>),
    /// Stale or duplicate events: nothing to commit.
    Unchanged,
    /// The saga's workflow is not loaded in this process: another orchestrator must apply
    /// the events (a deployment where hosts carry different workflows).
    NoWorkflow,
}

impl Orchestrator {
    /// An orchestrator over these parts. Must be called within a tokio runtime (it starts
    /// the timer task).
    pub fn new(
        workflows: Catalog,
        store: Arc<dyn SagaStore>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        retain: Option<Duration>,
    ) -> Self {
        let (timers, due) = Timers::start(clock.clone());
        // RandomState is seeded from the OS: a cheap random number without a dependency.
        let salt = RandomState::new().hash_one(std::process::id());
        let definitions = workflows.workflows.values().map(|wf| (wf.hash.clone(), wf.clone())).collect();
        let ever = workflows.workflows.keys().cloned().collect();
        Orchestrator {
            inner: Arc::new(Inner {
                workflows: std::sync::RwLock::new(Arc::new(workflows)),
                ever: std::sync::RwLock::new(ever),
                reloads: watch::channel(0).0,
                changes: broadcast::channel(CHANGES_BUFFER).0,
                observer: crate::observe::Observer::default(),
                definitions: std::sync::RwLock::new(definitions),
                stored: std::sync::Mutex::new(std::collections::HashSet::new()),
                store,
                bus,
                clock,
                timers,
                due: std::sync::Mutex::new(Some(due)),
                waiting: std::sync::Mutex::new(HashMap::new()),
                sequence: AtomicU64::new(0),
                deployments: std::sync::RwLock::new(HashMap::new()),
                salt,
                retain,
            }),
        }
    }

    /// The workflows new sagas may start now.
    pub fn workflows(&self) -> Arc<Catalog> {
        self.inner.workflows.read().expect("workflows lock poisoned").clone()
    }

    /// Replace the workflows new sagas may start (a reload of the workflow directory).
    /// Sagas already running keep the definition they started with, also those of a
    /// workflow `catalog` no longer has.
    pub fn set_workflows(&self, catalog: Catalog) {
        {
            let mut definitions = self.inner.definitions.write().expect("definitions lock poisoned");
            for wf in catalog.workflows.values() {
                definitions.entry(wf.hash.clone()).or_insert_with(|| wf.clone());
            }
        }
        self.inner.ever.write().expect("workflows lock poisoned").extend(catalog.workflows.keys().cloned());
        *self.inner.workflows.write().expect("workflows lock poisoned") = Arc::new(catalog);
        self.inner.reloads.send_modify(|n| *n += 1);
    }

    /// Whether this host runs sagas of workflow `name`: it has it loaded, or had (a reload
    /// removed it and its sagas carry on here).
    fn runs(&self, name: &str) -> bool {
        self.inner.ever.read().expect("workflows lock poisoned").contains(name)
    }

    /// Every saga this process commits from now on, as committed (a saga another host of a
    /// distributed deployment moves on is not seen here: read the store for those).
    pub fn changes(&self) -> broadcast::Receiver<Arc<Saga>> {
        self.inner.changes.subscribe()
    }

    /// Told each time [`Orchestrator::set_workflows`] runs.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.inner.reloads.subscribe()
    }

    /// Send the replies of sagas answering commands of the deployment under `prefix` on
    /// `bus` (see [`sub_sagas::serve`]).
    pub fn add_deployment(&self, prefix: &str, bus: Arc<dyn EventBus>) {
        self.inner.deployments.write().expect("deployments lock poisoned").insert(prefix.to_owned(), bus);
    }

    /// How long finished sagas are kept; `None`: forever.
    pub fn retain(&self) -> Option<Duration> {
        self.inner.retain
    }

    /// Start a saga of `workflow`. The saga is created with its first command in one atomic
    /// commit. With an `id`, a retried start (same workflow, same input) returns the existing
    /// saga instead of starting a second one; a start that reuses the id for another workflow
    /// or input is refused ([`StartError::IdTaken`]), as an idempotency key must be.
    ///
    /// A store that is briefly slow or away is tried again for up to [`START_RETRY_BUDGET`]
    /// (a start is idempotent by id, so this is safe), so a caller sees an error only when
    /// the store is really down.
    pub async fn start(&self, workflow: &str, input: Value, id: Option<String>) -> Result<Started, StartError> {
        self.start_with(workflow, input, id, None, None).await
    }

    /// [`Orchestrator::start`] within the W3C trace context `traceparent` (a caller's
    /// `traceparent` header): the saga's spans join the caller's trace.
    pub async fn start_traced(
        &self,
        workflow: &str,
        input: Value,
        id: Option<String>,
        traceparent: Option<&str>,
    ) -> Result<Started, StartError> {
        self.start_with(workflow, input, id, None, traceparent).await
    }

    /// [`Orchestrator::start`], of a sub-saga when `parent` is given, in the trace context
    /// `traceparent` when one is given (else a new trace, when this host exports traces).
    pub(crate) async fn start_with(
        &self,
        workflow: &str,
        input: Value,
        id: Option<String>,
        parent: Option<crate::model::Parent>,
        traceparent: Option<&str>,
    ) -> Result<Started, StartError> {
        let inner = &self.inner;
        let catalog = self.workflows();
        let wf = catalog.get(workflow).ok_or_else(|| StartError::UnknownWorkflow {
            name: workflow.to_owned(),
            known: catalog.names().join(", "),
        })?;
        self.check_external(wf)?;
        if let Some(schema) = &wf.input_schema {
            let violations = schema.violations(&input);
            if !violations.is_empty() {
                return Err(StartError::InvalidInput { workflow: workflow.to_owned(), violations });
            }
        }
        let now = inner.clock.now_ms();
        let id = id.unwrap_or_else(|| {
            let seq = inner.sequence.fetch_add(1, Ordering::Relaxed);
            format!("{workflow}-{now:x}-{:06x}{seq:x}", inner.salt & 0xff_ffff)
        });
        if !inner.stored.lock().expect("stored lock poisoned").contains(&wf.hash) {
            retry_store(START_RETRY_BUDGET, || inner.store.put_definition(&wf.hash, &wf.text)).await?;
            inner.stored.lock().expect("stored lock poisoned").insert(wf.hash.clone());
        }
        let mut saga = new_saga(id.clone(), wf, input, now);
        saga.parent = parent;
        saga.trace = crate::observe::trace::context_for(traceparent);
        let Decided::Change(change) = self.decide_all(saga, &[&Event::Start]) else {
            unreachable!("a new saga of a loaded workflow always starts")
        };
        let tries = AtomicU64::new(0);
        let began = SystemTime::now();
        let created = retry_store(START_RETRY_BUDGET, || {
            tries.fetch_add(1, Ordering::Relaxed);
            inner.store.create(&change.transition)
        })
        .await?;
        let ours = &change.transition.saga;
        match created {
            Created::New => {}
            // Our own create, whose answer was lost before a retry found it: finish the job.
            // (Only on a retry: a concurrent start of the same id in the same millisecond
            // builds an equal record, and must get 200, not a second 201.)
            Created::Existing(existing) if tries.load(Ordering::Relaxed) > 1 && *existing == **ours => {}
            Created::Existing(existing) if existing.workflow == workflow && existing.input == ours.input => {
                return Ok(Started { saga: *existing, created: false });
            }
            Created::Existing(existing) => {
                return Err(StartError::IdTaken {
                    id,
                    workflow: existing.workflow.clone(),
                    existing_digest: digest(&existing.input),
                    requested_workflow: workflow.to_owned(),
                    requested_digest: digest(&ours.input),
                });
            }
        }
        tracing::info!(transaction_id = %id, workflow, "saga started");
        let saga = Saga::clone(&change.transition.saga);
        self.after_commit(vec![*change], began).await;
        Ok(Started { saga, created: true })
    }

    /// Refuse a workflow whose external commands no outside worker can receive on this bus.
    fn check_external(&self, wf: &crate::workflow::Workflow) -> Result<(), StartError> {
        let commands = wf.external_commands();
        if commands.is_empty() || self.inner.bus.reaches_outside() {
            return Ok(());
        }
        Err(StartError::ExternalUnreachable {
            workflow: wf.name.clone(),
            commands: commands.into_iter().map(str::to_owned).collect(),
        })
    }

    /// Send a signal to a saga: a wait that waits for it takes it, or the saga's inbox keeps
    /// it until one does. Durable once this returns: it is in the same commit as the saga.
    /// Refused for a saga that has ended (nothing would ever read it).
    pub async fn signal(&self, id: &str, name: &str, payload: Value) -> Result<Saga, ControlError> {
        let event = Event::Signal { name: name.to_owned(), payload };
        self.control(id, &event, |s| {
            if s.status.is_terminal() {
                Err("it has ended, so nothing would ever read the signal".to_owned())
            } else {
                Ok(())
            }
        })
        .await
    }

    /// Stop a running saga: what runs is stopped, and what completed (and any command whose
    /// result is still out) is compensated, in reverse order. The saga ends `compensated`
    /// (or `failed` if a compensation fails) with error code `cancelled`.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<Saga, ControlError> {
        let event = Event::Cancel { reason: reason.to_owned() };
        self.control(id, &event, |s| match s.status {
            SagaStatus::Running => Ok(()),
            SagaStatus::Compensating => Err("it is already compensating".to_owned()),
            _ => Err("it has ended".to_owned()),
        })
        .await
    }

    /// Try the failed compensations of a `failed` saga again (same idempotency keys), once an
    /// operator has fixed what made them fail.
    pub async fn retry(&self, id: &str) -> Result<Saga, ControlError> {
        // The compensations to try again failed for good, so their failures are recorded under
        // their idempotency keys: forget them, or the workers would answer from the record.
        if let Some(saga) = self.inner.store.load(id).await?
            && saga.status == SagaStatus::Failed
        {
            let keys: Vec<(String, String)> = saga
                .steps
                .iter()
                .filter_map(|s| {
                    let c = s.compensation.as_ref().filter(|c| c.status == crate::model::StepStatus::Failed)?;
                    Some((
                        c.command.clone(),
                        crate::model::idempotency_key(&saga.id, &s.path, crate::model::Phase::Compensate),
                    ))
                })
                .collect();
            let refs: Vec<(&str, &str)> = keys.iter().map(|(c, k)| (c.as_str(), k.as_str())).collect();
            self.inner.store.forget_outcomes(&refs).await?;
        }
        self.control(id, &Event::Retry, |s| match s.status {
            SagaStatus::Failed => Ok(()),
            _ => Err("only a failed saga (a compensation failed for good) can be retried".to_owned()),
        })
        .await
    }

    /// Apply an operator's or a client's event: load, check, decide, commit, carry out; again
    /// from the load on a conflict.
    async fn control(
        &self,
        id: &str,
        event: &Event,
        check: impl Fn(&Saga) -> Result<(), String>,
    ) -> Result<Saga, ControlError> {
        let store = &self.inner.store;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let saga = retry_store(START_RETRY_BUDGET, || store.load(id))
                .await?
                .ok_or_else(|| ControlError::NotFound(id.to_owned()))?;
            if let Err(message) = check(&saga) {
                return Err(ControlError::Conflict { id: id.to_owned(), status: saga.status, message });
            }
            let workflow = saga.workflow.clone();
            self.load_definitions(&[&saga]).await?;
            if let Event::Signal { name, payload } = event
                && let Some(wf) = self.definition_of(&saga)
            {
                let violations = wf.signal_violations(name, payload);
                if !violations.is_empty() {
                    return Err(ControlError::InvalidSignal { id: id.to_owned(), signal: name.clone(), violations });
                }
            }
            let change = match self.decide_all(saga, &[event]) {
                Decided::Change(change) => *change,
                Decided::Unchanged => {
                    let saga = store.load(id).await?.ok_or_else(|| ControlError::NotFound(id.to_owned()))?;
                    return Ok(saga);
                }
                Decided::NoWorkflow => return Err(ControlError::NoWorkflow { id: id.to_owned(), workflow }),
            };
            let began = SystemTime::now();
            match store.commit(std::slice::from_ref(&change.transition)).await?[..] {
                [Committed::Ok] => {
                    let saga = Saga::clone(&change.transition.saga);
                    self.after_commit(vec![change], began).await;
                    return Ok(saga);
                }
                [Committed::Conflict] => continue,
                _ => return Err(ControlError::NotFound(id.to_owned())),
            }
        }
        Err(StoreError::Conflict { id: id.to_owned(), expected: MAX_CONFLICT_RETRIES as u64 }.into())
    }

    /// The saga with this id.
    pub async fn get(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        self.inner.store.load(id).await
    }

    /// The sub-sagas `saga` started, in the order it started them (those retention has
    /// deleted already are left out).
    pub async fn children(&self, saga: &Saga) -> Result<Vec<Saga>, StoreError> {
        let ids: Vec<&str> = saga.children.iter().map(String::as_str).collect();
        Ok(self.inner.store.load_many(&ids).await?.into_iter().flatten().collect())
    }

    /// The history of the saga with this id, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.store.history(id).await
    }

    /// Sagas, newest first, optionally of one status.
    pub async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        self.inner.store.list(status, limit).await
    }

    /// Wait until the saga reaches a terminal state, and return it. The end is handed over
    /// by the commit that makes it, when this process makes it; the store is read again
    /// every [`WAIT_POLL`] for an end another host made.
    pub async fn wait(&self, id: &str) -> Result<Saga, StoreError> {
        loop {
            // Registered before the read, so an end between the two is not missed.
            let ended = {
                let (tx, rx) = oneshot::channel();
                let mut waiting = self.inner.waiting.lock().expect("waiting lock poisoned");
                let waiters = waiting.entry(id.to_owned()).or_default();
                waiters.retain(|w| !w.is_closed());
                waiters.push(tx);
                rx
            };
            let saga = self.inner.store.load(id).await?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            if saga.status.is_terminal() {
                return Ok(saga);
            }
            tokio::select! {
                saga = ended => if let Ok(saga) = saga { return Ok(saga) },
                _ = tokio::time::sleep(WAIT_POLL) => {}
            }
        }
    }

    /// Forget the waiters that gave up (a request that timed out, a client that left).
    fn prune_waiters(&self) {
        let mut waiting = self.inner.waiting.lock().expect("waiting lock poisoned");
        waiting.retain(|_, waiters| {
            waiters.retain(|w| !w.is_closed());
            !waiters.is_empty()
        });
    }

    /// The definition `saga` runs: the one it started with (by content hash), when this host
    /// has it in memory; the workflow loaded under its name for records that name none.
    /// `None` when this host does not run the workflow at all (another host does).
    fn definition_of(&self, saga: &Saga) -> Option<Arc<crate::workflow::Workflow>> {
        let catalog = self.workflows();
        let Some(current) = catalog.get(&saga.workflow) else {
            // Removed by a reload: the saga still runs here, on what it started with.
            if !self.inner.ever.read().expect("workflows lock poisoned").contains(&saga.workflow) {
                return None;
            }
            return self.inner.definitions.read().expect("definitions lock poisoned").get(&saga.workflow_hash).cloned();
        };
        if saga.workflow_hash.is_empty() || saga.workflow_hash == current.hash {
            return Some(current.clone());
        }
        let known = self.inner.definitions.read().expect("definitions lock poisoned").get(&saga.workflow_hash).cloned();
        if known.is_none() {
            tracing::warn!(
                transaction_id = %saga.id,
                hash = %saga.workflow_hash,
                "the definition the saga started with is not in the store: it runs on the one loaded now"
            );
        }
        Some(known.unwrap_or_else(|| current.clone()))
    }

    /// Read from the store the definitions these sagas started with that this host has not
    /// seen yet (the workflow file was edited since they started), so that [`Self::decide_all`]
    /// finds them.
    async fn load_definitions(&self, sagas: &[&Saga]) -> Result<(), StoreError> {
        let missing: std::collections::BTreeSet<(&str, &str)> = {
            let known = self.inner.definitions.read().expect("definitions lock poisoned");
            sagas
                .iter()
                .filter(|s| !s.workflow_hash.is_empty() && !known.contains_key(&s.workflow_hash))
                .map(|s| (s.workflow_hash.as_str(), s.workflow.as_str()))
                .collect()
        };
        for (hash, name) in missing {
            self.load_definition(hash, name).await?;
        }
        Ok(())
    }

    /// Read definition `hash` of workflow `name` from the store into memory; `None` when the
    /// store does not have it, or it no longer parses (logged).
    async fn load_definition(
        &self,
        hash: &str,
        name: &str,
    ) -> Result<Option<Arc<crate::workflow::Workflow>>, StoreError> {
        let Some(text) = self.inner.store.definition(hash).await? else { return Ok(None) };
        let path = std::path::PathBuf::from(format!("{name}@{hash}.toml"));
        match crate::workflow::parse(&path, &text, None) {
            Ok(wf) => {
                tracing::info!(workflow = name, hash, "loaded the definition older sagas started with");
                let wf = Arc::new(wf);
                self.inner.definitions.write().expect("definitions lock poisoned").insert(hash.to_owned(), wf.clone());
                Ok(Some(wf))
            }
            Err(e) => {
                tracing::error!(workflow = name, hash, "a stored definition no longer parses: {e}");
                Ok(None)
            }
        }
    }

    /// The definition of workflow `name` whose content hash is `hash` (a saga's
    /// `workflow_hash`): the one loaded now, one that sagas started with, or one the store
    /// keeps (read once, then held). `None` when none of them is that workflow's.
    pub async fn definition(
        &self,
        name: &str,
        hash: &str,
    ) -> Result<Option<Arc<crate::workflow::Workflow>>, StoreError> {
        let known = self.inner.definitions.read().expect("definitions lock poisoned").get(hash).cloned();
        let found = match known {
            Some(wf) => Some(wf),
            None => self.load_definition(hash, name).await?,
        };
        Ok(found.filter(|wf| wf.name == name))
    }

    /// Decide `events` in order on `saga`.
    fn decide_all(&self, mut saga: Saga, events: &[&Event]) -> Decided {
        let _span = tracing::debug_span!("decide", transaction_id = %saga.id).entered();
        let Some(wf) = self.definition_of(&saga) else {
            tracing::error!(
                transaction_id = %saga.id,
                workflow = %saga.workflow,
                "the saga's workflow is not loaded here: leaving its events to another orchestrator (load the workflow on this host to handle them)"
            );
            return Decided::NoWorkflow;
        };
        let wf = &*wf;
        let now = self.inner.clock.now_ms();
        let expected = saga.revision;
        let revision = expected + 1;
        let (mut changed, mut commands, mut history) = (false, Vec::new(), Vec::new());
        for event in events {
            let d = decide(wf, &mut saga, event, now);
            if !d.changed {
                tracing::debug!(transaction_id = %saga.id, "stale event ignored: {event:?}");
                count_unmatched(event);
                continue;
            }
            changed = true;
            commands.extend(d.effects.into_iter().filter_map(|e| match e {
                Effect::Dispatch(cmd) => Some(cmd),
                // The timers the saga waits on are read off the record below: the ones an
                // earlier event of this batch scheduled may be over already.
                Effect::Schedule { .. } => None,
            }));
            history.extend(d.history.into_iter().map(|event| HistoryEntry { at: now, revision, event }));
        }
        if !changed {
            return Decided::Unchanged;
        }
        saga.revision = revision;
        if saga.status.is_terminal() {
            if saga.expires_at.is_none() {
                saga.expires_at = self.inner.retain.map(|r| now.saturating_add(r.as_millis() as u64));
            }
        } else {
            saga.expires_at = None;
        }
        let timers = if saga.status.is_terminal() { Vec::new() } else { pending_timers(&saga) };
        // A sub-saga that ended in this change answers the command that started (or undid) it.
        let ended = history.iter().any(|h| matches!(h.event, crate::model::HistoryEvent::Finished { .. }));
        let replies = if ended { sub_sagas::reply_of(&saga).into_iter().collect() } else { Vec::new() };
        let transition = Transition { saga: Arc::new(saga), expected_revision: expected, commands, history, replies };
        Decided::Change(Box::new(Change { transition, timers }))
    }

    /// What follows a commit (begun at `began`): its metrics and spans, the commands (unless
    /// the store sent them), the timers, and the announcement of sagas that ended.
    async fn after_commit(&self, changes: Vec<Change>, began: SystemTime) {
        let inner = &self.inner;
        let commit = crate::observe::Commit { began, ended: SystemTime::now(), store: inner.store.system() };
        if !changes.is_empty() {
            crate::observe::metrics::commit(changes.len(), commit.ended.duration_since(began).unwrap_or_default());
        }
        let mut commands = Vec::new();
        let mut replies: Vec<crate::store::Reply> = Vec::new();
        for change in changes {
            let saga = &change.transition.saga;
            for cmd in &change.transition.commands {
                tracing::debug!(transaction_id = %saga.id, correlation_id = %cmd.meta.correlation_id, command = %cmd.name, "dispatch");
            }
            inner.observer.committed(&change.transition, &commit);
            inner.timers.set(&saga.id, change.timers);
            if inner.changes.receiver_count() > 0 {
                let _ = inner.changes.send(saga.clone());
            }
            if saga.status.is_terminal() {
                tracing::info!(transaction_id = %saga.id, status = %saga.status, "saga finished");
                let waiters = inner.waiting.lock().expect("waiting lock poisoned").remove(&saga.id);
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(Saga::clone(saga));
                }
            }
            if !inner.store.dispatches_commands() {
                commands.extend(change.transition.commands);
                replies.extend(change.transition.replies);
            }
        }
        if !replies.is_empty() {
            self.send_replies(replies).await;
        }
        if !commands.is_empty()
            && let Err(e) = inner.bus.send_commands(commands).await
        {
            // Not lost: the step's timeout fires and the attempt is retried.
            tracing::warn!("cannot send commands: {e}; their step timeouts will retry them");
        }
    }

    /// Send sub-sagas' answers, each on its deployment's bus. A reply lost here (the bus is
    /// away) is not lost for good: the caller's deadline, or its restart, sends the command
    /// again, and the saga that ended answers it from its record.
    async fn send_replies(&self, replies: Vec<crate::store::Reply>) {
        let mut by_prefix: BTreeMap<Option<String>, Vec<crate::protocol::ResultMessage>> = BTreeMap::new();
        for r in replies {
            by_prefix.entry(r.prefix).or_default().push(r.result);
        }
        for (prefix, results) in by_prefix {
            let bus = match &prefix {
                None => Some(self.inner.bus.clone()),
                Some(p) => self.inner.deployments.read().expect("deployments lock poisoned").get(p).cloned(),
            };
            let Some(bus) = bus else {
                tracing::error!(prefix = ?prefix, "no bus to the deployment a sub-saga answers: its answer is not sent");
                continue;
            };
            if let Err(e) = bus.send_results(results).await {
                tracing::warn!("cannot send the answers of sub-sagas: {e}; the callers' deadlines will ask again");
            }
        }
    }

    /// Apply one event to one saga: load, decide, commit, carry out the effects; on a
    /// conflict, again from the load. `Ok(false)` when the saga's workflow is not loaded here.
    pub async fn apply(&self, id: &str, event: &Event) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(saga) = store.load(id).await? else {
                tracing::warn!(transaction_id = %id, "event for an unknown saga ignored: {event:?}");
                crate::observe::metrics::dropped("unknown_saga");
                return Ok(true);
            };
            self.load_definitions(&[&saga]).await?;
            let change = match self.decide_all(saga, &[event]) {
                Decided::Change(change) => *change,
                Decided::Unchanged => return Ok(true),
                Decided::NoWorkflow => return Ok(false),
            };
            let began = SystemTime::now();
            let committed = match store.commit(std::slice::from_ref(&change.transition)).await {
                Ok(c) => c,
                Err(e) => {
                    // The write may have landed with its answer lost: then finish the job.
                    if store.load(id).await.ok().flatten().is_some_and(|s| change.landed_as(&s)) {
                        self.after_commit(vec![change], began).await;
                        return Ok(true);
                    }
                    return Err(e);
                }
            };
            match committed[..] {
                [Committed::Ok] => {
                    self.after_commit(vec![change], began).await;
                    return Ok(true);
                }
                [Committed::Conflict] => continue,
                _ => return Ok(true),
            }
        }
        // Another writer won every round: retryable, the event comes back later.
        Err(StoreError::Conflict { id: id.to_owned(), expected: MAX_CONFLICT_RETRIES as u64 })
    }

    /// Apply `event`, retrying a store that is briefly unavailable. False when it could not
    /// be applied (the caller leaves the message unacknowledged, so it comes back).
    async fn apply_logged(&self, id: &str, event: &Event) -> bool {
        let mut delay = Duration::from_millis(50);
        for _ in 0..8 {
            match self.apply(id, event).await {
                Ok(applied) => return applied,
                Err(e) if e.is_retryable() => {
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

    /// Apply a batch of events (see the module documentation). Returns, for each event,
    /// whether it was applied (or found stale), so that the caller acknowledges exactly those.
    pub async fn apply_batch(&self, events: &[(String, Event)]) -> Vec<bool> {
        let store = &self.inner.store;
        // Group by saga, keeping each saga's events in arrival order.
        let mut ids: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (id, _)) in events.iter().enumerate() {
            groups
                .entry(id.as_str())
                .or_insert_with(|| {
                    ids.push(id);
                    Vec::new()
                })
                .push(i);
        }
        let mut done = vec![false; events.len()];
        let loaded = match store.load_many(&ids).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!("cannot load {} sagas: {e}; applying their events one by one", ids.len());
                return self.apply_each(events, (0..events.len()).collect(), done).await;
            }
        };
        let sagas: Vec<&Saga> = loaded.iter().flatten().collect();
        if let Err(e) = self.load_definitions(&sagas).await {
            tracing::warn!("cannot read the definitions of {} sagas: {e}; applying their events one by one", ids.len());
            return self.apply_each(events, (0..events.len()).collect(), done).await;
        }
        let mut changes = Vec::new();
        let mut changed_groups = Vec::new();
        for (id, saga) in ids.iter().zip(loaded) {
            let group = &groups[id];
            let Some(saga) = saga else {
                tracing::warn!(transaction_id = %id, "events for an unknown saga ignored");
                group.iter().for_each(|&i| {
                    done[i] = true;
                    crate::observe::metrics::dropped("unknown_saga");
                });
                continue;
            };
            let mine: Vec<&Event> = group.iter().map(|&i| &events[i].1).collect();
            match self.decide_all(saga, &mine) {
                Decided::Change(change) => {
                    changes.push(*change);
                    changed_groups.push(group);
                }
                Decided::Unchanged => group.iter().for_each(|&i| done[i] = true),
                // Left unacknowledged, for an orchestrator that has the workflow.
                Decided::NoWorkflow => {}
            }
        }
        if changes.is_empty() {
            return done;
        }
        // The transitions go to the store as one slice and come back into their changes
        // afterwards: no copy of the saga records on this path.
        let (transitions, timers): (Vec<Transition>, Vec<_>) =
            changes.into_iter().map(|c| (c.transition, c.timers)).unzip();
        let began = SystemTime::now();
        let outcome = store.commit(&transitions).await;
        let changes: Vec<Change> =
            transitions.into_iter().zip(timers).map(|(transition, timers)| Change { transition, timers }).collect();
        let results = match outcome {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!("cannot commit {} transitions: {e}; checking which landed", changes.len());
                return self.reconcile(events, changes, changed_groups, done, began).await;
            }
        };
        let mut committed = Vec::new();
        let mut conflicted = Vec::new();
        for ((change, group), result) in changes.into_iter().zip(changed_groups).zip(results) {
            match result {
                Committed::Ok => {
                    group.iter().for_each(|&i| done[i] = true);
                    committed.push(change);
                }
                // Another writer got there first: decide again from what it wrote.
                Committed::Conflict => conflicted.extend(group.iter().copied()),
                Committed::NotFound => group.iter().for_each(|&i| done[i] = true),
            }
        }
        self.after_commit(committed, began).await;
        if conflicted.is_empty() { done } else { self.apply_each(events, conflicted, done).await }
    }

    /// After a batch commit failed: the store may have applied some of it before the answer
    /// was lost. Changes that landed are carried out (their commands sent, their timers set);
    /// the events of the others are applied again, one at a time.
    async fn reconcile(
        &self,
        events: &[(String, Event)],
        changes: Vec<Change>,
        groups: Vec<&Vec<usize>>,
        mut done: Vec<bool>,
        began: SystemTime,
    ) -> Vec<bool> {
        let ids: Vec<&str> = changes.iter().map(|c| c.transition.saga.id.as_str()).collect();
        let stored = self.inner.store.load_many(&ids).await.unwrap_or_else(|_| vec![None; ids.len()]);
        let mut landed = Vec::new();
        let mut retry = Vec::new();
        for ((change, group), stored) in changes.into_iter().zip(groups).zip(stored) {
            if stored.is_some_and(|s| change.landed_as(&s)) {
                group.iter().for_each(|&i| done[i] = true);
                landed.push(change);
            } else {
                retry.extend(group.iter().copied());
            }
        }
        self.after_commit(landed, began).await;
        self.apply_each(events, retry, done).await
    }

    /// The slow path of [`Orchestrator::apply_batch`]: the events at `which`, one at a time.
    async fn apply_each(&self, events: &[(String, Event)], which: Vec<usize>, mut done: Vec<bool>) -> Vec<bool> {
        for i in which {
            let (id, event) = &events[i];
            done[i] = self.apply_logged(id, event).await;
        }
        done
    }

    /// The sagas that have not ended.
    async fn active(&self) -> Result<Vec<Saga>, StoreError> {
        let store = &self.inner.store;
        let mut sagas = store.list(Some(SagaStatus::Running), usize::MAX).await?;
        sagas.extend(store.list(Some(SagaStatus::Compensating), usize::MAX).await?);
        Ok(sagas)
    }

    /// Pick up the sagas a previous process left unfinished: start the ones never started,
    /// set their timers again and, when the bus lost what was in flight (it is not
    /// [durable](EventBus::durable)), send again the command each one waits on (with the same
    /// ids, so a worker that already ran it answers from its record). Returns how many it
    /// resumed.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let active = self.active().await?;
        let resend = !inner.bus.durable();
        let mut commands = Vec::new();
        self.load_definitions(&active.iter().collect::<Vec<_>>()).await?;
        for saga in &active {
            let Some(wf) = self.definition_of(saga) else {
                tracing::error!(transaction_id = %saga.id, workflow = %saga.workflow, "cannot resume: its workflow is not loaded");
                continue;
            };
            if !saga.is_started() {
                let _ = self.apply_logged(&saga.id, &Event::Start).await;
                continue;
            }
            if resend {
                commands.extend(pending_commands(&wf, saga));
            }
            inner.timers.set(&saga.id, pending_timers(saga));
        }
        if !commands.is_empty()
            && let Err(e) = inner.bus.send_commands(commands).await
        {
            tracing::warn!("cannot re-send the commands of resumed sagas: {e}; their timeouts will retry them");
        }
        if !active.is_empty() {
            tracing::info!(count = active.len(), resent = resend, "resumed unfinished sagas");
        }
        Ok(active.len())
    }

    /// Fire the timers that are overdue by more than the grace: their process died (or is
    /// far behind). Timers are durable because their due time is part of the saga record,
    /// and the store indexes it.
    ///
    /// The sweep pages through the overdue timers from `cursor` (where the last sweep
    /// stopped), firing up to [`SWEEP_BATCH`] and reading at most [`SWEEP_PAGES`] pages, and
    /// leaves `cursor` where it stopped; at the end of the index it starts again from the
    /// earliest. Timers of sagas whose workflow this host does not have are stepped over, so
    /// however many there are, every other overdue timer is reached within a few sweeps.
    async fn sweep(&self, cursor: &mut Option<(u64, String)>) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let before = self.inner.clock.now_ms().saturating_sub(SWEEP_GRACE_MS);
        let (mut fired, mut skipped) = (0, 0);
        for _ in 0..SWEEP_PAGES {
            let after = cursor.as_ref().map(|(due, id)| (*due, id.as_str()));
            let page = store.due_timers(after, before, SWEEP_BATCH).await?;
            let full = page.len() == SWEEP_BATCH;
            *cursor = if full { page.last().cloned() } else { None };
            let refs: Vec<&str> = page.iter().map(|(_, id)| id.as_str()).collect();
            let mut events = Vec::new();
            for saga in store.load_many(&refs).await?.into_iter().flatten() {
                if !self.runs(&saga.workflow) {
                    skipped += 1;
                    continue;
                }
                for (at, event) in pending_timers(&saga) {
                    if at <= before {
                        tracing::info!(transaction_id = %saga.id, "firing an overdue timer");
                        events.push((saga.id.clone(), event));
                    }
                }
            }
            fired += events.len();
            self.apply_batch(&events).await;
            if !full || fired >= SWEEP_BATCH {
                break;
            }
        }
        if skipped > 0 {
            tracing::debug!(skipped, "overdue timers of workflows not loaded here were left to other hosts");
        }
        Ok(())
    }

    /// Delete the finished sagas whose retention is over (see [`SagaStore::purge`]), a
    /// batch at a time, so that a backlog never makes one sweep long.
    async fn purge(&self) {
        let now = self.inner.clock.now_ms();
        match self.inner.store.purge(now, PURGE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "deleted finished sagas past their retention"),
            Err(e) => tracing::warn!("cannot delete finished sagas past their retention: {e}"),
        }
    }

    /// Resume what a previous process left, then consume results and timers (and sweep for
    /// overdue ones) until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut due = self.inner.due.lock().expect("lock poisoned").take().expect("Orchestrator::run called twice");
        // A bus or store that is away at start (a host starting while Redis restarts) is
        // waited for, not fatal: giving up here would leave a host up whose sagas never move.
        let mut results = loop {
            match self.inner.bus.result_consumer().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!("cannot subscribe to results: {e}; retrying in 1s");
                    if crate::wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                }
            }
        };
        // Subscribed before anything is resumed, so a signal sent from now on is not missed
        // on a bus that keeps nothing for absent subscribers (Pub/Sub).
        let signals = loop {
            match self.inner.bus.signal_consumer().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!("cannot subscribe to signals: {e}; retrying in 1s");
                    if crate::wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                }
            }
        };
        while let Err(e) = self.recover().await {
            tracing::warn!("cannot resume unfinished sagas: {e}; retrying in 1s");
            if crate::wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                return Ok(());
            }
        }
        let this = self.clone();
        let mut sweep_shutdown = shutdown.clone();
        let sweeper = tokio::spawn(async move {
            let mut cursor = None;
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sweep_shutdown.changed() => break,
                    _ = tick.tick() => {
                        if let Err(e) = this.sweep(&mut cursor).await {
                            tracing::warn!("cannot sweep for overdue timers: {e}");
                        }
                        this.purge().await;
                        this.prune_waiters();
                    }
                }
            }
        });
        // Signals from the bus (`baton.signal` events) on a task of their own.
        let this = self.clone();
        let signal_task = tokio::spawn(this.signal_loop(signals, shutdown.clone()));
        // Timers on a task of their own, so a burst of results never delays a timeout.
        let this = self.clone();
        let mut timer_shutdown = shutdown.clone();
        let timer_task = tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = timer_shutdown.changed() => break,
                    t = due.recv() => match t { Some(t) => t, None => break },
                };
                // A timer that cannot be applied now is fired by the sweeper later.
                this.apply_batch(&batch).await;
            }
        });
        // Batches being applied. Each acknowledges its own results once applied, so none
        // waits for this loop to come round (it may be waiting for new results).
        let acker = results.acker();
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            while let Some(done) = in_flight.try_join_next() {
                log_batch_panic(done);
            }
            if in_flight.len() >= BATCHES_IN_FLIGHT
                && let Some(done) = in_flight.join_next().await
            {
                log_batch_panic(done);
            }
            let batch = tokio::select! {
                _ = shutdown.changed() => break,
                b = results.recv(RESULT_BATCH) => b,
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
            let mut events = Vec::with_capacity(batch.len());
            for delivery in batch {
                let r = delivery.message;
                tracing::debug!(
                    otel.kind = "consumer",
                    transaction_id = %r.meta.transaction_id,
                    correlation_id = %r.meta.correlation_id,
                    command = %r.command,
                    "result"
                );
                tokens.push(delivery.token);
                events.push((r.meta.transaction_id.clone(), Event::Result(r)));
            }
            let (this, acker) = (self.clone(), acker.clone());
            in_flight.spawn(async move {
                let done = this.apply_batch(&events).await;
                let applied: Vec<_> = tokens.into_iter().zip(done).filter_map(|(t, ok)| ok.then_some(t)).collect();
                // Unacknowledged results come back: applying them again is harmless (stale).
                if let Err(e) = acker.ack(&applied).await {
                    tracing::warn!("cannot acknowledge {} results: {e}", applied.len());
                }
            });
        }
        // Finish what was taken, so it is acknowledged rather than redelivered.
        while let Some(done) = in_flight.join_next().await {
            log_batch_panic(done);
        }
        timer_task.abort();
        sweeper.abort();
        signal_task.abort();
        Ok(())
    }

    /// Apply the signals that come on the bus, as `POST /v1/sagas/{id}/signals/{name}` does.
    /// One for a saga that has ended, or that does not exist, cannot be answered with a 409
    /// or a 404: it is logged and acknowledged. One whose saga's workflow another host runs is
    /// left for that host; one the store could not take comes back.
    async fn signal_loop(
        self,
        mut signals: Box<dyn crate::bus::Consumer<crate::protocol::SignalMessage>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let batch = tokio::select! {
                _ = shutdown.changed() => return,
                b = signals.recv(RESULT_BATCH) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("cannot read signals: {e}; retrying in 1s");
                    if crate::wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            let mut done = Vec::with_capacity(batch.len());
            for delivery in batch {
                let s = delivery.message;
                let handled = match self.signal(&s.saga_id, &s.name, s.payload).await {
                    Ok(_) => true,
                    Err(
                        e @ (ControlError::NotFound(_)
                        | ControlError::Conflict { .. }
                        | ControlError::InvalidSignal { .. }),
                    ) => {
                        tracing::warn!(transaction_id = %s.saga_id, event = %s.id, "signal {:?} from the bus refused: {e}", s.name);
                        true
                    }
                    Err(e) => {
                        tracing::warn!(transaction_id = %s.saga_id, event = %s.id, "signal {:?} from the bus not applied, it will come back: {e}", s.name);
                        false
                    }
                };
                if handled {
                    done.push(delivery.token);
                }
            }
            if let Err(e) = signals.ack(&done).await {
                tracing::warn!("cannot acknowledge {} signals: {e}", done.len());
            }
        }
    }
}

/// A batch task that panicked left its results unacknowledged: they come back.
fn log_batch_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!("a result batch failed: {e}; its results will be redelivered");
    }
}
