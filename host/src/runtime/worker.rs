//! The worker loop: take commands from the bus, answer each once, send the results back.
//!
//! Effectively-once: before running a command the loop looks up a recorded terminal outcome
//! under (command, idempotency key); a duplicate gets that outcome without the plugin running
//! again. Terminal outcomes are recorded after the run; retryable failures are not, so a retry
//! really runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument as _;

use super::Runtime;
use crate::bus::{AckToken, EventBus};
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
    let mut consumer = bus.command_consumer(&commands).await?;
    // Bounds the commands in flight. A permit is taken before a command is read, so the bus
    // keeps what we cannot run yet (where another worker may take it).
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // How long a graceful stop waits for the commands in flight.
    const DRAIN: Duration = Duration::from_secs(10);
    // Answered commands come back here to be acknowledged in batches by this loop, which
    // owns the consumer.
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckToken>();
    let concurrency = config.concurrency.max(1);
    loop {
        let mut answered = Vec::new();
        while let Ok(token) = ack_rx.try_recv() {
            answered.push(token);
        }
        if !answered.is_empty()
            && let Err(e) = consumer.ack(&answered).await
        {
            tracing::warn!("cannot acknowledge {} commands: {e}", answered.len());
        }
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
        let mut first = Some(first);
        for delivery in batch {
            let permit = match first.take() {
                Some(p) => p,
                None => permits.clone().acquire_owned().await.expect("semaphore closed"),
            };
            let (runtime, bus, store, ack_tx) = (runtime.clone(), bus.clone(), store.clone(), ack_tx.clone());
            let cmd = delivery.message;
            let span = tracing::info_span!(
                "command",
                otel.kind = "consumer",
                command = %cmd.name,
                transaction_id = %cmd.meta.transaction_id,
                correlation_id = %cmd.meta.correlation_id,
                attempt = cmd.meta.attempt,
            );
            tokio::spawn(
                async move {
                    let result = handle(&runtime, store.as_ref(), cmd).await;
                    match bus.send_results(vec![result]).await {
                        // Acknowledge only once answered: a crash before this redelivers it.
                        Ok(()) => drop(ack_tx.send(delivery.token)),
                        // Left unacknowledged; the orchestrator's step timeout retries it.
                        Err(e) => tracing::warn!("cannot send the result: {e}"),
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
    // Graceful stop: let the commands in flight finish and acknowledge them, so they are not
    // run again; whatever is still running after DRAIN is left unacknowledged and handed back
    // (redelivered by the bus, or resumed by the orchestrator after a restart).
    let drained = tokio::time::timeout(DRAIN, permits.acquire_many(concurrency as u32)).await.is_ok();
    let mut answered = Vec::new();
    while let Ok(token) = ack_rx.try_recv() {
        answered.push(token);
    }
    if !answered.is_empty()
        && let Err(e) = consumer.ack(&answered).await
    {
        tracing::warn!("cannot acknowledge {} commands at shutdown: {e}", answered.len());
    }
    if !drained {
        tracing::warn!("stopped with commands still running after {DRAIN:?}; they will be handed back");
    }
    Ok(())
}

/// Answer one command: from the idempotency record when there is one, else by running it.
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
            let outcome = runtime.invoke(&cmd).await;
            if outcome.is_terminal()
                && let Err(e) = store.record_outcome(&cmd.name, key, &outcome).await
            {
                tracing::warn!("cannot record the outcome: {e}");
            }
            match &outcome {
                Outcome::Ok(_) => tracing::debug!("command completed"),
                Outcome::Err(f) => {
                    tracing::info!(code = %f.code, retryable = f.retryable, "command failed: {}", f.message)
                }
            }
            outcome
        }
    };
    ResultMessage { command: cmd.name, meta: cmd.meta, outcome }
}
