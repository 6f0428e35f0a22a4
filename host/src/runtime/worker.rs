//! The worker pools: take commands from the bus, answer each once, send the results back.
//!
//! One pool per plugin, each with its own consumer (of that plugin's commands only), its own
//! slots and its own threads, scheduled below the API's and the orchestrator's: a plugin that
//! loops, waits or is flooded holds only its own slots, the others' commands never queue
//! behind it, and the API answers while the plugins work.
//!
//! Effectively-once: before running a command the loop looks up a recorded terminal outcome
//! under (command, idempotency key); a duplicate gets that outcome without the plugin running
//! again. Terminal outcomes are recorded after the run, before the result is sent; retryable
//! failures are not recorded, so a retry really runs. While the records cannot be read, the
//! commands wait: none runs without its duplicate check.
//!
//! Deadlines: a command that reaches its slot at or after its deadline (it waited behind a
//! busy pool, or no worker was up) is not started. It is answered `expired`, and that answer
//! is not recorded: a redelivery of the same attempt is past the same deadline and is refused
//! by the same check, and a later attempt of the same step, in time, runs, and its outcome is
//! the one recorded under the key (stores keep the first record of a key, so recording the
//! refusal would leave that attempt unrecorded, and a duplicate of it would run again). A
//! run is stopped at its deadline whatever its timeout says.
//!
//! Started inline when the host is idle: a command that finds no other running in the host,
//! of a plugin whose last command took under a millisecond, is first polled on its pool's own
//! task rather than handed to the plugin's threads. Most commands end within that first poll,
//! and two thread hand-offs (to the plugin's threads and back) are saved, a quarter of a
//! command's round trip. One that waits in a host call or runs to the next epoch tick yields,
//! moves to the plugin's threads from there, and marks its plugin slow, so a plugin that loops
//! holds one of the host's threads once, for one epoch tick at most. Under load every command
//! goes to the plugin's threads, which are scheduled below the orchestrator's and the API's.
//!
//! Batched, because a command costs a plugin call of about ten microseconds and each trip to
//! a broker costs more: the idempotency records of a whole batch of commands are read in one
//! call, and a reply task records the outcomes and sends the results of every command that
//! finished meanwhile in one call each, then acknowledges those commands (at once, not when
//! the read loop next comes round: a command left unacknowledged is redelivered later, and
//! one that had failed retryably would run again). A command is acknowledged only once its
//! result is sent: a crash before that redelivers it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::Runtime;
use crate::bus::{AckToken, Acker, Delivery, EventBus};
use crate::orchestrator::Clock;
use crate::protocol::{CommandMessage, Failure, Outcome, ResultMessage, codes};
use crate::store::SagaStore;

/// Settings of a host's worker pools: one per plugin.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Commands of one plugin running at once, unless `per_plugin` says otherwise. Each plugin
    /// has slots of its own, so a plugin that loops or waits holds only its own: the others'
    /// commands never queue behind it.
    pub concurrency: usize,
    /// Per-plugin concurrency, by plugin name (the `.wasm` file's name).
    pub per_plugin: HashMap<String, usize>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { concurrency: DEFAULT_CONCURRENCY, per_plugin: HashMap::new() }
    }
}

impl WorkerConfig {
    /// The slots of `plugin`: the command line's (`--plugin-concurrency`), else its
    /// manifest's `limits.concurrency`, else the host's default.
    pub fn slots_of(&self, plugin: &super::Plugin) -> usize {
        match (self.per_plugin.get(&plugin.name), plugin.manifest.limits.concurrency) {
            (Some(&n), _) | (None, Some(n)) => n.max(1),
            (None, None) => self.concurrency.max(1),
        }
    }
}

/// Commands of one plugin at once by default. Plugins are CPU-bound today: more than a few
/// per core buys nothing, and 16 leaves room for the ones that wait once they can do I/O,
/// while sixteen plugins together stay inside the instance pool.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// How long a graceful stop waits for the commands in flight to finish and be answered.
const DRAIN: Duration = Duration::from_secs(10);

/// Most results sent in one call.
const REPLY_BATCH: usize = 256;

/// A command that ran for less than this is quick: the plugin's next command, if no other
/// runs in the host, starts on its pool's own task instead of the plugin's threads (see
/// `Pool::run`).
const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// Longest wait between two tries to read the idempotency records.
const RECORDS_RETRY_MAX: Duration = Duration::from_secs(2);

/// How much lower than the host's other threads the threads that run wasm are scheduled
/// (a nice value). The API and the orchestrator then get a core when they need one, however
/// busy the plugins are.
const WASM_NICENESS: i32 = 10;

/// A finished command on its way back.
struct Reply {
    result: ResultMessage,
    token: AckToken,
    /// Whether to record the outcome first (a terminal outcome that was not recorded yet).
    record: bool,
}

/// Serve every command the runtime's plugins handle until `shutdown` turns true: one pool
/// per plugin, each with its own consumer, slots and threads. When the set of plugins changes
/// (a reload), a pool starts for a plugin added and stops for one removed, and a plugin whose
/// commands or slots changed gets a new pool; a plugin replaced by a new version of the same
/// commands keeps its pool, whose next commands run the new version. A stopped pool finishes
/// what it took first.
pub async fn run(
    runtime: Arc<Runtime>,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn SagaStore>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if runtime.plugins().is_empty() {
        tracing::warn!("no plugin loaded: this worker pool has nothing to do (yet)");
    }
    let mut changes = runtime.changes();
    let mut pools: HashMap<String, Running> = HashMap::new();
    // Commands running in all of this host's pools together.
    let running = Arc::new(AtomicUsize::new(0));
    let mut stopping: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    loop {
        let wanted: HashMap<String, (Vec<String>, usize)> = runtime
            .plugins()
            .iter()
            .filter(|p| !p.commands.is_empty())
            .map(|p| (p.name.clone(), (p.commands.iter().map(|c| c.name.clone()).collect(), config.slots_of(p))))
            .collect();
        // Stop what is no longer wanted as it is, and what ended on its own.
        for name in pools.keys().cloned().collect::<Vec<_>>() {
            let running = &pools[&name];
            if wanted.get(&name) != Some(&running.serves) || running.task.is_finished() {
                let running = pools.remove(&name).expect("listed");
                if !running.task.is_finished() {
                    tracing::info!(plugin = %name, "the plugin changed: its pool stops after what it holds");
                }
                let _ = running.stop.send(true);
                stopping.push(running.task);
            }
        }
        for (name, serves) in wanted {
            if pools.contains_key(&name) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let pool = Pool {
                plugin: name.clone(),
                commands: serves.0.clone(),
                slots: serves.1,
                runtime: runtime.clone(),
                bus: bus.clone(),
                store: store.clone(),
                clock: clock.clone(),
                running: running.clone(),
            };
            pools.insert(name, Running { serves, stop, task: tokio::spawn(pool.run(stopped)) });
        }
        for task in std::mem::take(&mut stopping) {
            if task.is_finished() {
                if let Err(e) = task.await? {
                    tracing::error!("a worker pool stopped: {e:#}");
                }
            } else {
                stopping.push(task);
            }
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            r = changes.changed() => if r.is_err() { break },
            // A pool that ends on its own (it could not start its threads) is started again.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    for running in pools.into_values() {
        let _ = running.stop.send(true);
        stopping.push(running.task);
    }
    for task in stopping {
        task.await??;
    }
    Ok(())
}

/// A pool that runs: what it serves (its commands and slots), how to stop it, its task.
struct Running {
    serves: (Vec<String>, usize),
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The threads one plugin's commands run on: apart from the API's and the orchestrator's, as
/// many as the slots or the cores (whichever is fewer), scheduled below the host's others.
fn wasm_threads(plugin: &str, slots: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(slots.min(cores).max(1))
        .thread_name(format!("wasm-{plugin}"))
        .on_thread_start(lower_priority)
        // Time for deadlines; I/O for the outbound HTTP a manifest may grant.
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the threads of plugin {plugin}: {e}"))
}

/// Lower the calling thread's priority by [`WASM_NICENESS`] (Linux: nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), (now + WASM_NICENESS).min(19)) {
            tracing::debug!("cannot lower the priority of a wasm thread: {e}");
        }
    }
}

/// A pool's threads, shut down without waiting when the pool ends or is dropped (a tokio
/// runtime may not be dropped in place inside another one).
struct Threads(Option<tokio::runtime::Runtime>);

impl Threads {
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        if let Some(rt) = &self.0 {
            rt.spawn(f);
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One command counted in [`Pool::running`], until it ends or is dropped unfinished (a
/// pool's threads shut down).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One plugin's pool.
struct Pool {
    plugin: String,
    commands: Vec<String>,
    slots: usize,
    runtime: Arc<Runtime>,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn SagaStore>,
    clock: Arc<dyn Clock>,
    /// Commands running in all of the host's pools (see `INLINE_BUDGET`).
    running: Arc<AtomicUsize>,
}

impl Pool {
    async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let threads = Threads(Some(wasm_threads(&self.plugin, self.slots)?));
        // A bus that is away at start is waited for (see `Orchestrator::run`).
        let mut consumer = loop {
            match self.bus.command_consumer(&self.commands).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin, "cannot subscribe to commands: {e}; retrying in 1s");
                    if crate::wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                }
            }
        };
        // Bounds the commands in flight. A permit is taken before a command is read, so the
        // bus keeps what this plugin cannot run yet (where another host may take it).
        let permits = Arc::new(Semaphore::new(self.slots));
        // Whether this plugin's last command was quick (see `INLINE_BUDGET`).
        let quick = Arc::new(AtomicBool::new(true));
        let (reply_tx, reply_rx) = mpsc::unbounded_channel::<Reply>();
        let replier = tokio::spawn(reply_loop(self.bus.clone(), self.store.clone(), reply_rx, consumer.acker()));
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => break,
                p = permits.clone().acquire_owned() => p.expect("semaphore closed"),
            };
            let max = permits.available_permits() + 1;
            let batch = tokio::select! {
                _ = shutdown.changed() => break,
                b = consumer.recv(max) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin, "cannot read commands: {e}; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(recorded) = self.records(&batch, &mut shutdown).await else { break };
            let mut first = Some(first);
            for (delivery, recorded) in batch.into_iter().zip(recorded) {
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits.clone().acquire_owned().await.expect("semaphore closed"),
                };
                let cmd = delivery.message;
                let span = tracing::info_span!(
                    "command",
                    otel.kind = "consumer",
                    plugin = %self.plugin,
                    command = %cmd.name,
                    transaction_id = %cmd.meta.transaction_id,
                    correlation_id = %cmd.meta.correlation_id,
                    attempt = cmd.meta.attempt,
                );
                let answer = span.in_scope(|| before_run(&cmd, recorded, self.clock.now_ms(), &self.plugin));
                if let Some((outcome, record)) = answer {
                    crate::observe::metrics::handled(&self.plugin, &cmd.name, outcome_code(&outcome), None);
                    let result = ResultMessage { command: cmd.name, meta: cmd.meta, outcome };
                    let _ = reply_tx.send(Reply { result, token: delivery.token, record });
                    continue;
                }
                let (runtime, reply_tx, clock) = (self.runtime.clone(), reply_tx.clone(), self.clock.clone());
                let (plugin, was_quick, running) = (self.plugin.clone(), quick.clone(), self.running.clone());
                let others = running.fetch_add(1, Ordering::Relaxed);
                let counted = InFlight(running);
                let mut job = Box::pin(
                    async move {
                        let began = Instant::now();
                        let outcome = run_observed(&runtime, &plugin, &cmd, clock.now_ms()).await;
                        was_quick.store(began.elapsed() < INLINE_BUDGET, Ordering::Relaxed);
                        // Before the result goes: the command it brings on must find this one
                        // over.
                        drop(counted);
                        let record = outcome.is_terminal();
                        let result = ResultMessage { command: cmd.name, meta: cmd.meta, outcome };
                        let _ = reply_tx.send(Reply { result, token: delivery.token, record });
                        drop(permit);
                    }
                    .instrument(span),
                );
                // Started inline when the host is idle (see the module documentation); a
                // command still running after its first poll is not quick.
                if others == 0 && quick.load(Ordering::Relaxed) {
                    let done = std::future::poll_fn(|cx| Poll::Ready(job.as_mut().poll(cx).is_ready())).await;
                    if done {
                        continue;
                    }
                    quick.store(false, Ordering::Relaxed);
                }
                threads.spawn(job);
            }
        }
        // Graceful stop: let the commands in flight finish, be answered and acknowledged, so
        // they are not run again; whatever is still running after DRAIN is left
        // unacknowledged and handed back (redelivered by the bus, or resumed by the
        // orchestrator after a restart).
        let drained = tokio::time::timeout(DRAIN, permits.acquire_many(self.slots as u32)).await.is_ok();
        drop(reply_tx);
        if tokio::time::timeout(DRAIN, replier).await.is_err() {
            tracing::warn!(plugin = %self.plugin, "the last results were not sent within {DRAIN:?}; their commands will be handed back");
        }
        if !drained {
            tracing::warn!(plugin = %self.plugin, "stopped with commands still running after {DRAIN:?}; they will be handed back");
        }
        drop(threads);
        Ok(())
    }

    /// The recorded outcomes of a batch. The duplicate check is never skipped: while the
    /// records cannot be read, the commands wait (and are tried again) rather than run
    /// unchecked. `None`: the host is stopping (the commands stay unacknowledged).
    async fn records(
        &self,
        batch: &[Delivery<CommandMessage>],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Vec<Option<Outcome>>> {
        let keys: Vec<(&str, &str)> =
            batch.iter().map(|d| (d.message.name.as_str(), d.message.meta.idempotency_key.as_str())).collect();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.store.outcomes(&keys).await {
                Ok(r) => return Some(r),
                Err(e) => {
                    tracing::warn!(
                        plugin = %self.plugin,
                        "cannot read the idempotency records of {} commands: {e}; they wait (a command is never run without its duplicate check), trying again in {wait:?}",
                        keys.len()
                    );
                    if crate::wait_or_stop(shutdown, wait).await {
                        return None;
                    }
                    wait = (wait * 2).min(RECORDS_RETRY_MAX);
                }
            }
        }
    }
}

/// What to answer without running the command, if anything: the recorded outcome of a
/// duplicate, or `expired` for a command that reached its slot past its deadline (not
/// recorded: see the module documentation). `(outcome, record it)`. An `expired` in the record
/// (written by an older version, or by an outside worker) does not answer a command that is
/// itself in time: that is a later attempt, which runs.
fn before_run(cmd: &CommandMessage, recorded: Option<Outcome>, now: u64, plugin: &str) -> Option<(Outcome, bool)> {
    let expired = cmd.expired_at(now);
    match recorded {
        Some(Outcome::Err(f)) if f.code == codes::EXPIRED && !expired => {}
        Some(outcome) => {
            tracing::info!("duplicate command: answering with the recorded outcome");
            return Some((outcome, false));
        }
        None => {}
    }
    if !expired {
        return None;
    }
    let fmt = |ms: u64| crate::workflow::duration::format(Duration::from_millis(ms));
    let message = if cmd.start_by_ms != 0 {
        format!(
            "not started: it waited for a free slot of plugin {plugin} past the step's queue_timeout ({} too late); the next attempt, if any, queues again",
            fmt(now.saturating_sub(cmd.start_by_ms))
        )
    } else {
        let dispatched = cmd.deadline_ms.saturating_sub(cmd.timeout_ms);
        format!(
            "not started: it waited {} for a free slot of plugin {plugin} and reached one {} after its deadline (the saga had stopped waiting for this attempt)",
            fmt(now.saturating_sub(dispatched)),
            fmt(now.saturating_sub(cmd.deadline_ms))
        )
    };
    tracing::info!(code = codes::EXPIRED, "{message}");
    Some((Outcome::Err(Failure::retryable(codes::EXPIRED, message)), false))
}

/// Record the outcomes and send the results of finished commands, in batches, then
/// acknowledge the commands. Ends when every sender is gone.
async fn reply_loop(
    bus: Arc<dyn EventBus>,
    store: Arc<dyn SagaStore>,
    mut replies: mpsc::UnboundedReceiver<Reply>,
    acker: Arc<dyn Acker>,
) {
    while let Some(first) = replies.recv().await {
        let mut batch = vec![first];
        while batch.len() < REPLY_BATCH {
            match replies.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Recorded before it is sent: a result is never seen before its record exists.
        let records: Vec<(&str, &str, &Outcome)> = batch
            .iter()
            .filter(|r| r.record)
            .map(|r| (r.result.command.as_str(), r.result.meta.idempotency_key.as_str(), &r.result.outcome))
            .collect();
        if let Err(e) = store.record_outcomes(&records).await {
            tracing::warn!("cannot record {} outcomes: {e}; a redelivery would run them again", records.len());
        }
        let (results, tokens): (Vec<ResultMessage>, Vec<AckToken>) =
            batch.into_iter().map(|r| (r.result, r.token)).unzip();
        match bus.send_results(results).await {
            // Acknowledge only once answered: a crash before this redelivers them.
            Ok(()) => {
                if let Err(e) = acker.ack(&tokens).await {
                    tracing::warn!(
                        "cannot acknowledge {} commands: {e}; they will be redelivered and answered from their records",
                        tokens.len()
                    );
                }
            }
            // Left unacknowledged; the orchestrator's step timeouts retry them.
            Err(e) => tracing::warn!("cannot send {} results: {e}", tokens.len()),
        }
    }
}

/// The code `baton_commands_handled_total` counts an outcome under: `ok`, or the failure's.
fn outcome_code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Ok(_) => "ok",
        Outcome::Err(f) => &f.code,
    }
}

/// [`run_one`], counted and traced: the `process` span of the command (under the attempt's
/// span its `traceparent` names) and the `handle` span of the plugin's run under it, whose
/// context is the one the plugin sees in its `meta` (so a sub-saga it starts joins the trace).
async fn run_observed(runtime: &Runtime, plugin: &str, cmd: &CommandMessage, now: u64) -> Outcome {
    use crate::observe::{metrics, trace};
    use opentelemetry::KeyValue;
    use opentelemetry::trace::SpanKind;
    let ctx = if trace::enabled() { cmd.meta.traceparent.as_deref().and_then(trace::Context::parse) } else { None };
    let (began, clock) = (SystemTime::now(), Instant::now());
    let (process, handle) = (trace::random_span(), trace::random_span());
    metrics::instances(plugin, 1.0);
    let outcome = match ctx {
        Some(ctx) => {
            let mut traced = cmd.clone();
            traced.meta.traceparent = Some(ctx.at(handle).header());
            run_one(runtime, &traced, now).await
        }
        None => run_one(runtime, cmd, now).await,
    };
    metrics::instances(plugin, -1.0);
    let code = outcome_code(&outcome);
    metrics::handled(plugin, &cmd.name, code, Some(clock.elapsed()));
    if let Some(ctx) = ctx {
        let ended = SystemTime::now();
        let destination = format!("cmd:{}", cmd.name);
        trace::emit(trace::Span {
            name: format!("process {destination}"),
            kind: SpanKind::Consumer,
            context: ctx.at(process),
            parent: ctx.span,
            start: began,
            end: ended,
            attributes: crate::observe::messaging("process", &destination, &cmd.meta),
            error: None,
        });
        trace::emit(trace::Span {
            name: format!("handle {}", cmd.name),
            kind: SpanKind::Internal,
            context: ctx.at(handle),
            parent: process,
            start: began,
            end: ended,
            attributes: vec![
                KeyValue::new("baton.transaction_id", cmd.meta.transaction_id.clone()),
                KeyValue::new("baton.plugin", plugin.to_owned()),
                KeyValue::new("baton.command", cmd.name.clone()),
                KeyValue::new("baton.attempt", i64::from(cmd.meta.attempt)),
                KeyValue::new("baton.outcome", code.to_owned()),
            ],
            error: match &outcome {
                Outcome::Err(f) => Some(format!("{}: {}", f.code, f.message)),
                Outcome::Ok(_) => None,
            },
        });
    }
    outcome
}

/// Run one command (started at `now`) and log how it went.
async fn run_one(runtime: &Runtime, cmd: &CommandMessage, now: u64) -> Outcome {
    let outcome = runtime.invoke(cmd, now).await;
    match &outcome {
        Outcome::Ok(_) => tracing::debug!("command completed"),
        Outcome::Err(f) => tracing::info!(code = %f.code, retryable = f.retryable, "command failed: {}", f.message),
    }
    outcome
}

/// Answer one command: from the idempotency record when there is one, else by running it
/// and recording a terminal outcome. What a pool does for each command, one at a time.
pub async fn handle(runtime: &Runtime, store: &dyn SagaStore, clock: &dyn Clock, cmd: CommandMessage) -> ResultMessage {
    let key = &cmd.meta.idempotency_key;
    let mut wait = Duration::from_millis(100);
    let recorded = loop {
        match store.outcome(&cmd.name, key).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!("cannot read the idempotency record: {e}; the command waits, trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECORDS_RETRY_MAX);
            }
        }
    };
    let plugin = runtime.plugin_of(&cmd.name).unwrap_or_else(|| "?".to_owned());
    let now = clock.now_ms();
    let (outcome, record) = match before_run(&cmd, recorded, now, &plugin) {
        Some(answer) => answer,
        None => {
            let outcome = run_one(runtime, &cmd, now).await;
            let record = outcome.is_terminal();
            (outcome, record)
        }
    };
    if record && let Err(e) = store.record_outcome(&cmd.name, key, &outcome).await {
        tracing::warn!("cannot record the outcome: {e}");
    }
    ResultMessage { command: cmd.name, meta: cmd.meta, outcome }
}
