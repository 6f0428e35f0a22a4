//! What a host tells about itself: Prometheus metrics ([`metrics`]) and OpenTelemetry traces
//! ([`trace`]). Logs are `tracing` on stderr (`BATON_LOG`), set up by the CLI.
//!
//! The orchestrator reports through [`Observer::committed`], once per committed transition:
//! the transition's history says what happened (an attempt dispatched, a result, a step's
//! end, the saga's end), so metrics and spans come from the same facts the record keeps, and
//! a test of one is a test of the other. Workers report in `runtime::worker`; buses count
//! what they drop and redeliver.

pub mod metrics;
pub mod trace;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

use crate::model::{self, HistoryEvent, Phase, Saga};
use crate::store::Transition;
use trace::{Context, Span, at_ms};

/// Most dispatch times kept: past this (attempts whose results never came here) the map is
/// cleared, and the next results are counted without a duration.
const MAX_SENT: usize = 100_000;

/// The orchestrator's side of observability: the dispatch time of each attempt this process
/// sent (the start of its span and of `baton_step_duration_seconds`), by correlation id.
#[derive(Default)]
pub struct Observer {
    sent: Mutex<HashMap<String, u64>>,
}

/// When one commit ran, and against what.
pub struct Commit {
    pub began: SystemTime,
    pub ended: SystemTime,
    /// `redis`, `redb` or `memory`: the span's `db.system.name`.
    pub store: &'static str,
}

impl Observer {
    /// Count and trace what `t`, just committed, records.
    pub fn committed(&self, t: &Transition, commit: &Commit) {
        let tracing = trace::enabled();
        if !tracing && !metrics::installed() {
            return;
        }
        let saga = &t.saga;
        let ctx = if tracing { saga.trace.as_deref().and_then(Context::parse) } else { None };
        let root = trace::saga_span(&saga.id);
        for entry in &t.history {
            match &entry.event {
                HistoryEvent::Started => metrics::saga_started(&saga.workflow),
                HistoryEvent::Dispatched { step, phase, attempt, .. } => {
                    let mut sent = self.sent.lock().expect("observer lock poisoned");
                    if sent.len() >= MAX_SENT {
                        sent.clear();
                    }
                    sent.insert(correlation(saga, step, *phase, *attempt), entry.at);
                }
                HistoryEvent::Succeeded { step, phase, attempt } => {
                    self.attempt_ended(saga, ctx, step, *phase, *attempt, entry.at, None);
                }
                HistoryEvent::Failed { step, phase, attempt, code, message, .. } => {
                    self.attempt_ended(saga, ctx, step, *phase, *attempt, entry.at, Some((code, message)));
                }
                HistoryEvent::Completed { step } | HistoryEvent::Stopped { step } => {
                    if let Some(ctx) = ctx {
                        step_span(saga, ctx, step, entry.at, None);
                    }
                }
                HistoryEvent::StepFailed { step, code, message } => {
                    if let Some(ctx) = ctx {
                        step_span(saga, ctx, step, entry.at, Some(format!("{code}: {message}")));
                    }
                }
                HistoryEvent::Finished { status } => {
                    let lifetime = Duration::from_millis(entry.at.saturating_sub(saga.created_at));
                    metrics::saga_ended(&saga.workflow, status.as_str(), lifetime);
                    if let Some(ctx) = ctx {
                        saga_span(saga, ctx, entry.at);
                    }
                }
                _ => {}
            }
        }
        let Some(ctx) = ctx else { return };
        trace::emit(Span {
            name: "store commit".into(),
            kind: SpanKind::Internal,
            context: ctx.at(trace::random_span()),
            parent: root,
            start: commit.began,
            end: commit.ended,
            attributes: vec![
                KeyValue::new("db.system.name", commit.store),
                KeyValue::new("db.operation.name", "commit"),
                KeyValue::new("baton.transaction_id", saga.id.clone()),
                KeyValue::new("baton.revision", saga.revision as i64),
            ],
            error: None,
        });
        for cmd in &t.commands {
            trace::emit(Span {
                name: format!("send cmd:{}", cmd.name),
                kind: SpanKind::Producer,
                context: ctx.at(trace::random_span()),
                parent: trace::span_id(&cmd.meta.correlation_id),
                start: commit.began,
                end: commit.ended,
                attributes: messaging("send", &format!("cmd:{}", cmd.name), &cmd.meta),
                error: None,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_ended(
        &self,
        saga: &Saga,
        ctx: Option<Context>,
        step: &str,
        phase: Phase,
        attempt: u32,
        at: u64,
        failure: Option<(&String, &String)>,
    ) {
        let corr = correlation(saga, step, phase, attempt);
        let sent = self.sent.lock().expect("observer lock poisoned").remove(&corr);
        let inst = saga.steps.iter().rev().find(|i| i.path == step);
        let command = match phase {
            Phase::Forward => inst.and_then(|i| i.command.clone()),
            Phase::Compensate => inst.and_then(|i| i.compensation.as_ref()).map(|c| c.command.clone()),
        }
        .unwrap_or_default();
        let outcome = failure.map_or("ok", |(code, _)| code.as_str());
        metrics::attempt(&command, phase.as_str(), outcome, sent.map(|s| Duration::from_millis(at.saturating_sub(s))));
        let Some(ctx) = ctx else { return };
        // Not sent from here: the step's (or its compensation's) start bounds it.
        let began = sent.or_else(|| match phase {
            Phase::Forward => inst.map(|i| i.started_at),
            Phase::Compensate => inst.and_then(|i| i.compensation.as_ref()).and_then(|c| c.started_at),
        });
        let verb = if phase == Phase::Forward { "step" } else { "compensate" };
        trace::emit(Span {
            name: format!("{verb} {step}"),
            kind: SpanKind::Internal,
            context: ctx.at(trace::span_id(&corr)),
            parent: trace::saga_span(&saga.id),
            start: at_ms(began.unwrap_or(at)),
            end: at_ms(at),
            attributes: vec![
                KeyValue::new("baton.transaction_id", saga.id.clone()),
                KeyValue::new("baton.step", step.to_owned()),
                KeyValue::new("baton.phase", phase.as_str()),
                KeyValue::new("baton.command", command),
                KeyValue::new("baton.attempt", i64::from(attempt)),
                KeyValue::new("baton.outcome", outcome.to_owned()),
            ],
            error: failure.map(|(code, message)| format!("{code}: {message}")),
        });
    }
}

/// The correlation id of an attempt, as the command carried it.
fn correlation(saga: &Saga, step: &str, phase: Phase, attempt: u32) -> String {
    model::correlation_id(&model::idempotency_key(&saga.id, step, phase), attempt)
}

/// The span of a step that is not a command (a wait, a sleep, a parallel, ...).
fn step_span(saga: &Saga, ctx: Context, step: &str, at: u64, error: Option<String>) {
    let Some(inst) = saga.steps.iter().rev().find(|i| i.path == step) else { return };
    trace::emit(Span {
        name: format!("{} {step}", inst.kind),
        kind: SpanKind::Internal,
        context: ctx.at(trace::span_id(&format!("{}#{step}", saga.id))),
        parent: trace::saga_span(&saga.id),
        start: at_ms(inst.started_at),
        end: at_ms(at),
        attributes: vec![
            KeyValue::new("baton.transaction_id", saga.id.clone()),
            KeyValue::new("baton.step", step.to_owned()),
            KeyValue::new("baton.kind", inst.kind.clone()),
        ],
        error,
    });
}

/// The saga's own span: the root of its trace, or a child of the step that started it.
fn saga_span(saga: &Saga, ctx: Context, at: u64) {
    let mut attributes = vec![
        KeyValue::new("baton.transaction_id", saga.id.clone()),
        KeyValue::new("baton.workflow", saga.workflow.clone()),
        KeyValue::new("baton.status", saga.status.as_str()),
    ];
    if let Some(p) = &saga.parent {
        attributes.push(KeyValue::new("baton.parent", p.saga.clone()));
    }
    let error = saga.error.as_ref().map(|e| format!("{}: {}", e.code, e.message));
    trace::emit(Span {
        name: format!("saga {}", saga.workflow),
        kind: SpanKind::Server,
        context: ctx.at(trace::saga_span(&saga.id)),
        parent: ctx.span,
        start: at_ms(saga.created_at),
        end: at_ms(at),
        attributes,
        error: if saga.status == model::SagaStatus::Completed { None } else { error },
    });
}

/// OpenTelemetry's messaging attributes of one event on `destination`.
pub(crate) fn messaging(operation: &'static str, destination: &str, meta: &crate::protocol::Meta) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "baton"),
        KeyValue::new("messaging.operation.type", operation),
        KeyValue::new("messaging.destination.name", destination.to_owned()),
        KeyValue::new("messaging.message.id", meta.correlation_id.clone()),
        KeyValue::new("messaging.message.conversation_id", meta.transaction_id.clone()),
        KeyValue::new("baton.transaction_id", meta.transaction_id.clone()),
        KeyValue::new("baton.attempt", i64::from(meta.attempt)),
    ]
}
