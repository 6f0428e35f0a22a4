//! Sagas that answer commands: the children of `workflow` steps, workflows that `handles` a
//! command, and the sub-sagas a command handler starts through the worker import.
//!
//! # Answering a command with a saga
//!
//! [`serve`] consumes, on one bus, the commands this host answers by running a workflow: the
//! `saga:NAME` command of each loaded workflow (what a `workflow` step sends) and each
//! workflow's `handles` command. For each command:
//!
//! - **Forward** (the idempotency key ends in `/forward`, or in anything but `/compensate`):
//!   a command past its deadline is answered `expired`, as a worker would. Otherwise a saga
//!   of the workflow starts with the command's payload as input, under the id
//!   [`crate::model::sub_saga_id`] derives from the key and the attempt, and with a
//!   [`Parent`] naming the command to answer and the attempt's deadline. The start is
//!   idempotent by id, so a redelivered or re-sent command re-attaches; one whose saga has
//!   ended already is answered at once from its record.
//! - **Compensate**: the saga named by the payload's `saga` gets [`Event::Undo`]: a running
//!   saga is cancelled, a completed one runs its compensations; either way the answer goes
//!   out when it ends. A saga that has ended undone is answered at once.
//!
//! The command is acknowledged once the saga is durable: the answer is not a worker's reply
//! to a delivery but the saga's own, sent by whichever orchestrator commits its end
//! ([`reply_of`], carried by the transition: in the same atomic step as that commit with the
//! Redis store and Streams, as the commands are).
//!
//! A child's deadline (the parent attempt's) is a timer of the child: when it passes while
//! the child runs, the child is cancelled with code `timeout` and compensates itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Event, Orchestrator, StartError, Started};
use crate::bus::EventBus;
use crate::model::{self, Parent, ReplyTo, Saga, SagaStatus};
use crate::protocol::{CommandMessage, Failure, Meta, Outcome, ResultMessage, codes};
use crate::runtime::sagas::SagaHost;
use crate::store::{Reply, StoreError};
use crate::workflow::{Catalog, sub_saga_command};

/// Deepest a tree of sub-sagas may grow: a workflow that runs itself without end is stopped
/// here with `too_deep`, not left to fill the store.
pub const MAX_DEPTH: u32 = 32;

/// Failure code of a sub-saga refused for [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "too_deep";
/// Failure code of a start under an id another saga holds.
pub const ID_TAKEN: &str = "id_taken";
/// Failure code of a request for a saga that does not exist.
pub const UNKNOWN_SAGA: &str = "unknown_saga";
/// Failure code of a start of a workflow the host does not run.
pub const UNKNOWN_WORKFLOW: &str = "unknown_workflow";
/// Failure code of a sub-saga whose workflow needs external commands on a bus that no
/// outside process reaches (embedded).
pub const EXTERNAL_UNREACHABLE: &str = "external_unreachable";
/// Failure code of a sub-saga that could not undo everything (it ended `failed`).
pub const COMPENSATION_FAILED: &str = "compensation_failed";

/// Commands answered by a saga, by name: command -> workflow. With `sub_sagas`, the
/// `saga:NAME` of every workflow of `catalog`; always, each workflow's `handles`.
pub fn routes(catalog: &Catalog, sub_sagas: bool) -> BTreeMap<String, String> {
    let mut routes = BTreeMap::new();
    for (name, wf) in &catalog.workflows {
        if sub_sagas {
            routes.insert(sub_saga_command(name), name.clone());
        }
        if let Some(h) = &wf.handles {
            routes.insert(h.clone(), name.clone());
        }
    }
    routes
}

/// The answer a saga that just ended owes the command that started (or undid) it.
pub fn reply_of(saga: &Saga) -> Option<Reply> {
    let parent = saga.parent.as_ref()?;
    let to = parent.reply.as_ref()?;
    answer(saga, &parent.saga, to)
}

/// The answer to `to` (from saga `parent`) that `saga`, ended, gives; `None` while it runs.
fn answer(saga: &Saga, parent: &str, to: &ReplyTo) -> Option<Reply> {
    if !saga.status.is_terminal() {
        return None;
    }
    let undoing = to.idempotency_key.ends_with("/compensate");
    let error = || {
        let e = saga.error.as_ref();
        let code = e.map_or("failed", |e| e.code.as_str()).to_owned();
        let message = match e {
            Some(e) if !e.step.is_empty() => {
                format!("sub-saga {:?} {}: step {}: {}", saga.id, saga.status, e.step, e.message)
            }
            Some(e) => format!("sub-saga {:?} {}: {}", saga.id, saga.status, e.message),
            None => format!("sub-saga {:?} {}", saga.id, saga.status),
        };
        (code, message)
    };
    let outcome = match (undoing, saga.status) {
        (false, SagaStatus::Completed) => Outcome::Ok(saga.output.clone().unwrap_or(Value::Null)),
        (true, SagaStatus::Compensated | SagaStatus::Completed) => {
            Outcome::Ok(json!({ "saga": saga.id, "status": saga.status }))
        }
        (true, _) => Outcome::Err(Failure::permanent(
            COMPENSATION_FAILED,
            format!("sub-saga {:?} could not undo everything (it ended failed): an operator must look", saga.id),
        )),
        (false, _) => {
            let (code, message) = error();
            // A child stopped by its parent's deadline: the parent's attempt timed out, and a
            // retry (a fresh child) may do better.
            Outcome::Err(if code == codes::TIMEOUT {
                Failure::retryable(code, message)
            } else {
                Failure::permanent(code, message)
            })
        }
    };
    Some(Reply {
        prefix: to.prefix.clone(),
        result: ResultMessage { command: to.command.clone(), meta: meta_of(parent, to), outcome },
    })
}

fn meta_of(parent: &str, to: &ReplyTo) -> Meta {
    Meta {
        transaction_id: parent.to_owned(),
        correlation_id: to.correlation_id.clone(),
        idempotency_key: to.idempotency_key.clone(),
        step: to.step.clone(),
        attempt: to.attempt,
        traceparent: to.traceparent.clone(),
    }
}

fn reply_to(cmd: &CommandMessage, prefix: Option<&str>) -> ReplyTo {
    ReplyTo {
        command: cmd.name.clone(),
        correlation_id: cmd.meta.correlation_id.clone(),
        idempotency_key: cmd.meta.idempotency_key.clone(),
        step: cmd.meta.step.clone(),
        attempt: cmd.meta.attempt,
        traceparent: cmd.meta.traceparent.clone(),
        prefix: prefix.map(str::to_owned),
    }
}

/// Answer the commands the orchestrator's workflows route (see [`routes`]; with
/// `sub_sagas`, the `saga:NAME` commands of `workflow` steps too) arriving on `bus` (see the
/// module documentation) until `shutdown`. `prefix`: the deployment the bus belongs to, when
/// it is not this host's own (a `handles` workflow serving another deployment). After a
/// reload of the workflows that changes the routes, it subscribes again to the new ones.
pub async fn serve(
    o: Orchestrator,
    bus: Arc<dyn EventBus>,
    prefix: Option<String>,
    sub_sagas: bool,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut reloads = o.reloads();
    loop {
        let routes = routes(&o.workflows(), sub_sagas);
        match serve_routes(&o, &*bus, prefix.as_deref(), (&routes, sub_sagas), &mut shutdown, &mut reloads).await? {
            Served::Stopped => return Ok(()),
            Served::Reloaded => {
                let now = self::routes(&o.workflows(), sub_sagas);
                if now != routes {
                    tracing::info!(commands = ?now.keys().collect::<Vec<_>>(), "the workflows were reloaded: answering their commands");
                }
            }
        }
    }
}

/// Why [`serve_routes`] returned.
enum Served {
    Stopped,
    /// The workflows were reloaded and the routes changed.
    Reloaded,
}

async fn serve_routes(
    o: &Orchestrator,
    bus: &dyn EventBus,
    prefix: Option<&str>,
    (routes, sub_sagas): (&BTreeMap<String, String>, bool),
    shutdown: &mut watch::Receiver<bool>,
    reloads: &mut watch::Receiver<u64>,
) -> anyhow::Result<Served> {
    // Whether a reload changed what this loop must answer.
    let changed = |o: &Orchestrator| self::routes(&o.workflows(), sub_sagas) != *routes;
    if routes.is_empty() {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(Served::Stopped),
                r = reloads.changed() => {
                    if r.is_err() { return Ok(Served::Stopped) }
                    if changed(o) { return Ok(Served::Reloaded) }
                }
            }
        }
    }
    let names: Vec<String> = routes.keys().cloned().collect();
    let mut consumer = loop {
        match bus.command_consumer(&names).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!("cannot subscribe to the commands sagas answer: {e}; retrying in 1s");
                if crate::wait_or_stop(shutdown, Duration::from_secs(1)).await {
                    return Ok(Served::Stopped);
                }
            }
        }
    };
    loop {
        let batch = tokio::select! {
            _ = shutdown.changed() => return Ok(Served::Stopped),
            r = reloads.changed() => {
                if r.is_err() { return Ok(Served::Stopped) }
                if changed(o) { return Ok(Served::Reloaded) }
                continue;
            }
            b = consumer.recv(64) => b,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot read the commands sagas answer: {e}; retrying in 1s");
                if crate::wait_or_stop(shutdown, Duration::from_secs(1)).await {
                    return Ok(Served::Stopped);
                }
                continue;
            }
        };
        let mut done = Vec::with_capacity(batch.len());
        for delivery in batch {
            let cmd = delivery.message;
            let Some(workflow) = routes.get(&cmd.name) else { continue };
            match o.answer(&cmd, workflow, prefix, bus).await {
                Ok(()) => done.push(delivery.token),
                // Left unacknowledged: it comes back.
                Err(e) => tracing::warn!(
                    transaction_id = %cmd.meta.transaction_id,
                    command = %cmd.name,
                    "cannot answer a command with a saga now: {e}; it will come back"
                ),
            }
        }
        if let Err(e) = consumer.ack(&done).await {
            tracing::warn!("cannot acknowledge {} commands: {e}", done.len());
        }
    }
}

impl Orchestrator {
    /// Answer one command with a saga of `workflow` (see the module documentation). `Err`
    /// only when the store cannot be reached: the command is then left to come back.
    pub async fn answer(
        &self,
        cmd: &CommandMessage,
        workflow: &str,
        prefix: Option<&str>,
        bus: &dyn EventBus,
    ) -> Result<(), StoreError> {
        let to = reply_to(cmd, prefix);
        let send = move |outcome: Outcome| async move {
            let result = ResultMessage { command: cmd.name.clone(), meta: cmd.meta.clone(), outcome };
            if let Err(e) = bus.send_results(vec![result]).await {
                // Not lost: the caller's deadline retries the command, which is answered again.
                tracing::warn!(transaction_id = %cmd.meta.transaction_id, "cannot send the answer of a sub-saga: {e}");
            }
        };
        if cmd.meta.idempotency_key.ends_with("/compensate") {
            return self.answer_undo(cmd, &to, send).await;
        }
        let now = self.inner.clock.now_ms();
        if cmd.expired_at(now) {
            send(Outcome::Err(Failure::retryable(
                codes::EXPIRED,
                format!("the command reached the host that runs workflow {workflow:?} after its deadline: not started"),
            )))
            .await;
            return Ok(());
        }
        let depth = match self.inner.store.load(&cmd.meta.transaction_id).await? {
            Some(p) => p.parent.as_ref().map_or(1, |p| p.depth + 1),
            None => 1,
        };
        if depth > MAX_DEPTH {
            send(Outcome::Err(Failure::permanent(
                TOO_DEEP,
                format!("sub-sagas nest at most {MAX_DEPTH} deep: does workflow {workflow:?} run itself without end?"),
            )))
            .await;
            return Ok(());
        }
        let id = model::sub_saga_id(&cmd.meta.idempotency_key, cmd.meta.attempt);
        let parent = Parent {
            saga: cmd.meta.transaction_id.clone(),
            step: cmd.meta.step.clone(),
            reply: Some(to.clone()),
            deadline: (cmd.deadline_ms != 0).then_some(cmd.deadline_ms),
            depth,
        };
        match self
            .start_with(workflow, cmd.payload.clone(), Some(id), Some(parent), cmd.meta.traceparent.as_deref())
            .await
        {
            Ok(Started { created: true, .. }) => {}
            Ok(Started { saga, created: false }) => {
                // A command come again (redelivered, or re-sent after a restart): answer it if
                // the saga has ended; else its end will.
                if let Some(reply) = answer(&saga, &cmd.meta.transaction_id, &to) {
                    send(reply.result.outcome).await;
                }
            }
            Err(StartError::Store(e)) => return Err(e),
            Err(e @ StartError::InvalidInput { .. }) => {
                send(Outcome::Err(Failure::permanent(codes::INVALID_INPUT, e.to_string()))).await
            }
            Err(e @ StartError::IdTaken { .. }) => {
                send(Outcome::Err(Failure::permanent(ID_TAKEN, e.to_string()))).await
            }
            Err(e @ StartError::UnknownWorkflow { .. }) => {
                send(Outcome::Err(Failure::permanent(UNKNOWN_WORKFLOW, e.to_string()))).await
            }
            Err(e @ StartError::ExternalUnreachable { .. }) => {
                send(Outcome::Err(Failure::permanent(EXTERNAL_UNREACHABLE, e.to_string()))).await
            }
        }
        Ok(())
    }

    async fn answer_undo<F, Fut>(&self, cmd: &CommandMessage, to: &ReplyTo, send: F) -> Result<(), StoreError>
    where
        F: Fn(Outcome) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let forward = cmd.meta.idempotency_key.trim_end_matches("/compensate").to_owned() + "/forward";
        let id = cmd
            .payload
            .get("saga")
            .and_then(Value::as_str)
            .map_or_else(|| model::sub_saga_id(&forward, 1), str::to_owned);
        let Some(saga) = self.inner.store.load(&id).await? else {
            send(Outcome::Ok(json!({ "saga": id, "status": "not_found" }))).await;
            return Ok(());
        };
        if matches!(saga.status, SagaStatus::Compensated | SagaStatus::Failed) {
            if let Some(reply) = answer(&saga, &cmd.meta.transaction_id, to) {
                send(reply.result.outcome).await;
            }
            return Ok(());
        }
        self.apply(&id, &Event::Undo { reply: Some(to.clone()) }).await?;
        Ok(())
    }

    /// Record that a command handler of saga `parent` (step `step`) started sub-saga `id`.
    async fn note_child(&self, parent: &str, step: &str, id: &str) {
        let event = Event::ChildStarted { id: id.to_owned(), step: step.to_owned() };
        if let Err(e) = self.apply(parent, &event).await {
            tracing::warn!(transaction_id = %parent, child = %id, "cannot note a sub-saga in its parent's record: {e}");
        }
    }
}

fn store_failure(e: StoreError) -> Failure {
    if e.is_retryable() {
        Failure::retryable(codes::HOST_BUSY, format!("the saga store did not answer: {e}"))
    } else {
        Failure::permanent("store_corrupt", e.to_string())
    }
}

/// The worker import (`orchestrator` of `baton:saga@0.2.0`), served by the orchestrator of
/// the same process.
#[async_trait]
impl SagaHost for Orchestrator {
    async fn start(&self, workflow: &str, input: Value, id: &str, caller: &Meta) -> Result<(), Failure> {
        let depth = match self.inner.store.load(&caller.transaction_id).await.map_err(store_failure)? {
            Some(p) => p.parent.as_ref().map_or(1, |p| p.depth + 1),
            None => 1,
        };
        if depth > MAX_DEPTH {
            return Err(Failure::permanent(TOO_DEEP, format!("sub-sagas nest at most {MAX_DEPTH} deep")));
        }
        let parent = Parent {
            saga: caller.transaction_id.clone(),
            step: caller.step.clone(),
            reply: None,
            deadline: None,
            depth,
        };
        match self.start_with(workflow, input, Some(id.to_owned()), Some(parent), caller.traceparent.as_deref()).await {
            Ok(started) => {
                if started.created || !started.saga.status.is_terminal() {
                    self.note_child(&caller.transaction_id, &caller.step, id).await;
                }
                Ok(())
            }
            Err(StartError::Store(e)) => Err(store_failure(e)),
            Err(e @ StartError::InvalidInput { .. }) => Err(Failure::permanent(codes::INVALID_INPUT, e.to_string())),
            Err(e @ StartError::IdTaken { .. }) => Err(Failure::permanent(ID_TAKEN, e.to_string())),
            Err(e @ StartError::ExternalUnreachable { .. }) => {
                Err(Failure::permanent(EXTERNAL_UNREACHABLE, e.to_string()))
            }
            Err(e @ StartError::UnknownWorkflow { .. }) => Err(Failure::permanent(
                UNKNOWN_WORKFLOW,
                format!(
                    "{e}: a worker starts sub-sagas through the orchestrator of its own host, so the workflow must be loaded there"
                ),
            )),
        }
    }

    async fn wait(&self, id: &str) -> Result<Value, Failure> {
        let saga = Orchestrator::wait(self, id).await.map_err(|e| match e {
            StoreError::NotFound(_) => Failure::permanent(UNKNOWN_SAGA, format!("no saga with id {id:?}")),
            e => store_failure(e),
        })?;
        if saga.status == SagaStatus::Completed {
            return Ok(saga.output.unwrap_or(Value::Null));
        }
        let code = saga.error.as_ref().map_or("failed", |e| e.code.as_str()).to_owned();
        let message = saga.error.as_ref().map_or(String::new(), |e| e.message.clone());
        Err(Failure::permanent(code, format!("sub-saga {id:?} {}: {message}", saga.status)))
    }

    async fn signal(&self, id: &str, name: &str, payload: Value) -> Result<(), Failure> {
        use super::ControlError;
        match Orchestrator::signal(self, id, name, payload).await {
            Ok(_) => Ok(()),
            Err(ControlError::NotFound(_)) => Err(Failure::permanent(UNKNOWN_SAGA, format!("no saga with id {id:?}"))),
            Err(e @ ControlError::Conflict { .. }) => Err(Failure::permanent("saga_ended", e.to_string())),
            Err(e @ ControlError::NoWorkflow { .. }) => Err(Failure::permanent(UNKNOWN_WORKFLOW, e.to_string())),
            Err(e @ ControlError::InvalidSignal { .. }) => Err(Failure::permanent(codes::INVALID_INPUT, e.to_string())),
            Err(ControlError::Store(e)) => Err(store_failure(e)),
        }
    }

    async fn get(&self, id: &str) -> Result<Value, Failure> {
        match self.inner.store.load(id).await.map_err(store_failure)? {
            Some(saga) => {
                serde_json::to_value(&saga).map_err(|e| Failure::permanent(codes::INVALID_OUTPUT, e.to_string()))
            }
            None => Err(Failure::permanent(UNKNOWN_SAGA, format!("no saga with id {id:?}"))),
        }
    }
}
