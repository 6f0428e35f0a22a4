//! The worker loop: take commands from the bus, answer each once, send the results back.
//!
//! Effectively-once: before running a command the loop looks up a recorded terminal outcome
//! under (command, idempotency key); a duplicate gets that outcome without the plugin running
//! again. Terminal outcomes are recorded after the run, before the result is sent; retryable
//! failures are not recorded, so a retry really runs.
//!
//! Batched, because a command costs a plugin call of about ten microseconds and each trip to
//! a broker costs more: the idempotency records of a whole batch of commands are read in one
//! call, and a reply task records the outcomes and sends the results of every command that
//! finished meanwhile in one call each, then acknowledges those commands (at once, not when
//! the read loop next comes round: a command left unacknowledged is redelivered later, and
//! one that had failed retryably would run again). A command is acknowledged only once its
//! result is sent: a crash before that redelivers it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument as _;

use super::Runtime;
use crate::bus::{AckToken, Acker, EventBus};
use crate::protocol::{CommandMessage, Outcome, ResultMessage};
use crate::store::SagaStore;

/// Settings of a worker pool.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Commands running at once. Plugins are CPU-bound; more than a few per core only helps
    /// plugins that wait (once they can do I/O).
    pub concurrency: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { concurrency: 64 }
    }
}

/// How long a graceful stop waits for the commands in flight to finish and be answered.
const DRAIN: Duration = Duration::from_secs(10);

/// Most results sent in one call.
const REPLY_BATCH: usize = 256;

/// A finished command on its way back.
struct Reply {
    result: ResultMessage,
    token: AckToken,
    /// Whether to record the outcome first (a terminal outcome that was not recorded yet).
    record: bool,
}

/// Serve every command the runtime's plugins handle until `shutdown` turns true.
pub async fn run(
    runtime: Arc<Runtime>,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn SagaStore>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let commands = runtime.command_names();
    if commands.is_empty() {
        tracing::warn!("no plugin loaded: this worker pool has nothing to do");
    }
    // A bus that is away at start is waited for (see `Orchestrator::run`).
    let mut consumer = loop {
        match bus.command_consumer(&commands).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!("cannot subscribe to commands: {e}; retrying in 1s");
                if crate::wait_or_stop(&mut shutdown, Duration::from_secs(1)).await {
                    return Ok(());
                }
            }
        }
    };
    let concurrency = config.concurrency.max(1);
    // Bounds the commands in flight. A permit is taken before a command is read, so the bus
    // keeps what we cannot run yet (where another worker may take it).
    let permits = Arc::new(Semaphore::new(concurrency));
    let (reply_tx, reply_rx) = mpsc::unbounded_channel::<Reply>();
    let replier = tokio::spawn(reply_loop(bus.clone(), store.clone(), reply_rx, consumer.acker()));
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
                tracing::warn!("cannot read commands: {e}; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let keys: Vec<(&str, &str)> =
            batch.iter().map(|d| (d.message.name.as_str(), d.message.meta.idempotency_key.as_str())).collect();
        let recorded = match store.outcomes(&keys).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read idempotency records: {e}; running the commands");
                vec![None; batch.len()]
            }
        };
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
                command = %cmd.name,
                transaction_id = %cmd.meta.transaction_id,
                correlation_id = %cmd.meta.correlation_id,
                attempt = cmd.meta.attempt,
            );
            if let Some(outcome) = recorded {
                span.in_scope(|| tracing::info!("duplicate command: answering with the recorded outcome"));
                let result = ResultMessage { command: cmd.name, meta: cmd.meta, outcome };
                let _ = reply_tx.send(Reply { result, token: delivery.token, record: false });
                continue;
            }
            let (runtime, reply_tx) = (runtime.clone(), reply_tx.clone());
            tokio::spawn(
                async move {
                    let outcome = run_one(&runtime, &cmd).await;
                    let record = outcome.is_terminal();
                    let result = ResultMessage { command: cmd.name, meta: cmd.meta, outcome };
                    let _ = reply_tx.send(Reply { result, token: delivery.token, record });
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
    // Graceful stop: let the commands in flight finish, be answered and acknowledged, so they
    // are not run again; whatever is still running after DRAIN is left unacknowledged and
    // handed back (redelivered by the bus, or resumed by the orchestrator after a restart).
    let drained = tokio::time::timeout(DRAIN, permits.acquire_many(concurrency as u32)).await.is_ok();
    drop(reply_tx);
    if tokio::time::timeout(DRAIN, replier).await.is_err() {
        tracing::warn!("the last results were not sent within {DRAIN:?}; their commands will be handed back");
    }
    if !drained {
        tracing::warn!("stopped with commands still running after {DRAIN:?}; they will be handed back");
    }
    Ok(())
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

/// Run one command and log how it went.
async fn run_one(runtime: &Runtime, cmd: &CommandMessage) -> Outcome {
    let outcome = runtime.invoke(cmd).await;
    match &outcome {
        Outcome::Ok(_) => tracing::debug!("command completed"),
        Outcome::Err(f) => tracing::info!(code = %f.code, retryable = f.retryable, "command failed: {}", f.message),
    }
    outcome
}

/// Answer one command: from the idempotency record when there is one, else by running it
/// and recording a terminal outcome. What [`run`] does for each command, one at a time.
pub async fn handle(runtime: &Runtime, store: &dyn SagaStore, cmd: CommandMessage) -> ResultMessage {
    let key = &cmd.meta.idempotency_key;
    let recorded = match store.outcome(&cmd.name, key).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot read the idempotency record: {e}; running the command");
            None
        }
    };
    let outcome = match recorded {
        Some(outcome) => {
            tracing::info!("duplicate command: answering with the recorded outcome");
            outcome
        }
        None => {
            let outcome = run_one(runtime, &cmd).await;
            if outcome.is_terminal()
                && let Err(e) = store.record_outcome(&cmd.name, key, &outcome).await
            {
                tracing::warn!("cannot record the outcome: {e}");
            }
            outcome
        }
    };
    ResultMessage { command: cmd.name, meta: cmd.meta, outcome }
}
