//! Prometheus metrics, through the `metrics` facade: call sites say what happened in one
//! line, [`install`] makes them count (until then every call is a no-op), and `GET /metrics`
//! renders them in Prometheus' text format ([`render`]).
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `baton_sagas_started_total` | counter | `workflow` | sagas this host started |
//! | `baton_sagas_ended_total` | counter | `workflow`, `status` | sagas whose end this host committed |
//! | `baton_saga_duration_seconds` | histogram | `workflow`, `status` | start to end, of those |
//! | `baton_sagas_in_flight` | gauge | `status` | `running` and `compensating` sagas in the store, read at each scrape |
//! | `baton_step_attempts_total` | counter | `command`, `phase`, `outcome` | attempts whose result this host committed; `outcome` is `ok` or the failure's code; `phase` is `forward` or `compensate` |
//! | `baton_step_duration_seconds` | histogram | `command`, `phase` | dispatch to result, when this host dispatched it |
//! | `baton_store_commit_seconds` | histogram | — | one store commit (a batch of transitions) |
//! | `baton_store_commit_transitions` | histogram | — | transitions per commit |
//! | `baton_commands_handled_total` | counter | `plugin`, `command`, `outcome` | commands this host's workers answered (from a plugin or a record) |
//! | `baton_command_duration_seconds` | histogram | `plugin`, `command` | a plugin's run of one command |
//! | `baton_plugin_instances_in_use` | gauge | `plugin` | instances running a command now |
//! | `baton_plugin_instantiation_seconds` | histogram | `plugin` | making one instance |
//! | `baton_plugin_traps_total` | counter | `plugin`, `kind` | runs that ended in a trap: `timeout`, `out_of_memory`, `panicked`, `trapped`, `invalid_output` |
//! | `baton_bus_backlog` | gauge | `stream` | events on a stream not yet acknowledged by this host's group (read at each scrape; Redis Streams) |
//! | `baton_bus_redeliveries_total` | counter | `stream` | events handed to another consumer after the visibility timeout |
//! | `baton_bus_events_dropped_total` | counter | `reason` | events read off the bus and dropped: `not_json`, `not_an_event`, `wrong_type` (the bus), `unknown_saga`, `unknown_step` (results naming no saga, or no step of it; a result for a step that moved on is kept in the saga's history as `late_result`) |
//! | `baton_trace_spans_dropped_total` | counter | `reason` | spans not exported: `queue_full`, `export_failed` |
//!
//! Counters count what *this* host did: in a deployment of several hosts, sum them.
//! Histograms have fixed buckets (below) so that they aggregate across hosts.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of times a step, a command or a commit takes, in seconds: 1 ms to 5 minutes.
const LATENCY: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Buckets of a saga's life, in seconds: 10 ms to a week (sagas wait for people).
const LIFETIME: &[f64] =
    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0];

/// Buckets of how many transitions one commit carries.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Make the metrics count, once per process (later calls do nothing). Without it, every
/// call here is a no-op and `/metrics` says metrics are off.
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("baton_saga_duration_seconds".into()), LIFETIME))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("baton_store_commit_transitions".into()), BATCH))
            .expect("the bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test binary that embeds a host twice): keep
        // rendering ours, which then counts nothing new.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was already installed");
        }
        handle
    });
}

/// Whether [`install`] ran: callers skip work that only feeds metrics.
pub fn installed() -> bool {
    HANDLE.get().is_some()
}

/// The metrics in Prometheus' text format; `None` until [`install`].
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    handle.run_upkeep();
    Some(handle.render())
}

/// A saga began here.
pub fn saga_started(workflow: &str) {
    counter!("baton_sagas_started_total", "workflow" => workflow.to_owned()).increment(1);
}

/// A saga's end was committed here, `lifetime` after it began.
pub fn saga_ended(workflow: &str, status: &'static str, lifetime: Duration) {
    counter!("baton_sagas_ended_total", "workflow" => workflow.to_owned(), "status" => status).increment(1);
    histogram!("baton_saga_duration_seconds", "workflow" => workflow.to_owned(), "status" => status)
        .record(lifetime.as_secs_f64());
}

/// Sagas in the store with `status`, as read at a scrape.
pub fn in_flight(status: &'static str, n: u64) {
    gauge!("baton_sagas_in_flight", "status" => status).set(n as f64);
}

/// The result of one attempt was committed here; `took` is dispatch to result, when known.
pub fn attempt(command: &str, phase: &'static str, outcome: &str, took: Option<Duration>) {
    counter!("baton_step_attempts_total", "command" => command.to_owned(), "phase" => phase, "outcome" => outcome.to_owned())
        .increment(1);
    if let Some(took) = took {
        histogram!("baton_step_duration_seconds", "command" => command.to_owned(), "phase" => phase)
            .record(took.as_secs_f64());
    }
}

/// One store commit of `transitions` took `took`.
pub fn commit(transitions: usize, took: Duration) {
    histogram!("baton_store_commit_seconds").record(took.as_secs_f64());
    histogram!("baton_store_commit_transitions").record(transitions as f64);
}

/// A worker answered `command`: `outcome` is `ok` or the failure's code; `ran` is the
/// plugin's run, `None` when the answer came from the idempotency record.
pub fn handled(plugin: &str, command: &str, outcome: &str, ran: Option<Duration>) {
    counter!("baton_commands_handled_total", "plugin" => plugin.to_owned(), "command" => command.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
    if let Some(ran) = ran {
        histogram!("baton_command_duration_seconds", "plugin" => plugin.to_owned(), "command" => command.to_owned())
            .record(ran.as_secs_f64());
    }
}

/// An instance of `plugin` began (`+1`) or ended (`-1`) a command.
pub fn instances(plugin: &str, delta: f64) {
    gauge!("baton_plugin_instances_in_use", "plugin" => plugin.to_owned()).increment(delta);
}

/// Making an instance of `plugin` took `took`.
pub fn instantiated(plugin: &str, took: Duration) {
    histogram!("baton_plugin_instantiation_seconds", "plugin" => plugin.to_owned()).record(took.as_secs_f64());
}

/// A run of `plugin` ended in a trap of `kind`.
pub fn trap(plugin: &str, kind: &'static str) {
    counter!("baton_plugin_traps_total", "plugin" => plugin.to_owned(), "kind" => kind).increment(1);
}

/// Events on `stream` not yet acknowledged, as read at a scrape.
pub fn backlog(stream: &str, n: u64) {
    gauge!("baton_bus_backlog", "stream" => stream.to_owned()).set(n as f64);
}

/// `n` events of `stream` were handed to another consumer.
pub fn redelivered(stream: &str, n: u64) {
    counter!("baton_bus_redeliveries_total", "stream" => stream.to_owned()).increment(n);
}

/// An event was read off the bus and dropped, for `reason`.
pub fn dropped(reason: &'static str) {
    counter!("baton_bus_events_dropped_total", "reason" => reason).increment(1);
}

/// `n` spans were not exported, for `reason`.
pub fn spans_dropped(reason: &'static str, n: usize) {
    counter!("baton_trace_spans_dropped_total", "reason" => reason).increment(n as u64);
}
