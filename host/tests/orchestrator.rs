//! The orchestrator's loop, timers, sweeper and recovery, over the in-memory bus and store,
//! with workers faked in the test and time virtual (`start_paused`): a step timeout of an
//! hour fires as soon as every task is waiting, so nothing here waits for a real clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use baton::bus::EventBus;
use baton::bus::memory::MemoryBus;
use baton::orchestrator::saga::{HistoryEvent, SagaStatus};
use baton::orchestrator::{Orchestrator, TokioClock};
use baton::protocol::{CommandMessage, Failure, Outcome, ResultMessage};
use baton::store::SagaStore;
use baton::store::memory::MemoryStore;
use baton::workflow::{self, Catalog};
use serde_json::json;
use tokio::sync::watch;

/// Virtual "now" at the start of every test: 2026-01-01T00:00:00Z.
const EPOCH_MS: u64 = 1_767_225_600_000;

fn catalog(files: &[&str]) -> Catalog {
    let mut catalog = Catalog::default();
    for text in files {
        let wf = workflow::parse(std::path::Path::new("test.toml"), text, None).expect("valid workflow");
        catalog.workflows.insert(wf.name.clone(), Arc::new(wf));
    }
    catalog
}

/// The shared bus and store of one test, and a clock that follows tokio's paused time.
struct World {
    bus: Arc<MemoryBus>,
    store: Arc<MemoryStore>,
    clock: Arc<TokioClock>,
    stop: watch::Sender<bool>,
}

impl World {
    fn new() -> World {
        let (stop, _) = watch::channel(false);
        World {
            bus: Arc::new(MemoryBus::new()),
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(TokioClock::new(EPOCH_MS)),
            stop,
        }
    }

    /// An orchestrator over the world's bus and store; `running` starts its loop (results,
    /// timers, sweeper, recovery), otherwise it only starts sagas, like a host about to die.
    fn orchestrator(&self, workflows: Catalog, running: bool) -> Orchestrator {
        let store: Arc<dyn SagaStore> = self.store.clone();
        let bus: Arc<dyn EventBus> = self.bus.clone();
        let o = Orchestrator::new(workflows, store, bus, self.clock.clone(), None);
        if running {
            let (o, rx) = (o.clone(), self.stop.subscribe());
            tokio::spawn(async move { o.run(rx).await.expect("the orchestrator loop") });
        }
        o
    }

    /// A worker for `commands` that answers each with `answer` (`None`: never answers).
    async fn worker(&self, commands: &[&str], answer: impl Fn(&CommandMessage) -> Option<Outcome> + Send + 'static) {
        let names: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
        let mut consumer = self.bus.command_consumer(&names).await.unwrap();
        let bus = self.bus.clone();
        tokio::spawn(async move {
            loop {
                let Ok(batch) = consumer.recv(16).await else { return };
                let mut results = Vec::new();
                for d in batch {
                    if let Some(outcome) = answer(&d.message) {
                        results.push(ResultMessage { command: d.message.name.clone(), meta: d.message.meta, outcome });
                    }
                }
                if !results.is_empty() {
                    bus.send_results(results).await.unwrap();
                }
            }
        });
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(baton::orchestrator::Clock::now_ms(&*self.clock) - EPOCH_MS)
    }
}

const TWO_STEPS: &str = r#"
name = "two"
[[step]]
name = "a"
command = "t.ok"
compensate = "t.undo"
[[step]]
name = "b"
command = "t.never"
timeout = "1h"
retry = { attempts = 1 }
"#;

/// One step no worker answers, as the first step: only the host that started the saga holds
/// its timer in memory.
const LONE: &str = r#"
name = "lone"
[[step]]
name = "b"
command = "t.never"
timeout = "1h"
retry = { attempts = 1 }
"#;

/// Let the running orchestrators finish their start (recovery) before the test goes on.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn ok(_: &CommandMessage) -> Option<Outcome> {
    Some(Outcome::Ok(json!({"done": true})))
}

#[tokio::test(start_paused = true)]
async fn a_step_timeout_of_an_hour_fires_without_waiting_an_hour() {
    let world = World::new();
    world.worker(&["t.ok", "t.undo"], ok).await;
    let o = world.orchestrator(catalog(&[TWO_STEPS]), true);
    settle().await;
    let id = o.start("two", json!({}), Some("s-1".into())).await.unwrap().saga.id;
    let saga = o.wait(&id).await.unwrap();
    assert_eq!(saga.status, SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.error.as_ref().unwrap().code, "timeout");
    assert_eq!(saga.steps[0].compensation.as_ref().unwrap().status, baton::orchestrator::saga::StepStatus::Completed);
    assert!(world.elapsed() >= Duration::from_secs(3_600), "the deadline was an hour away: {:?}", world.elapsed());
    let _ = world.stop.send(true);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_for_hours_and_then_succeed() {
    let world = World::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    world
        .worker(&["t.flaky"], move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Some(if n < 3 { Outcome::Err(Failure::retryable("busy", "later")) } else { Outcome::Ok(json!(n)) })
        })
        .await;
    let wf = r#"
name = "flaky"
[[step]]
name = "f"
command = "t.flaky"
retry = { attempts = 3, backoff = "1h", max_backoff = "2h" }
"#;
    let o = world.orchestrator(catalog(&[wf]), true);
    // Started before the loop's recovery has run, the saga's first command would be sent
    // twice (recovery re-sends what a non-durable bus may have lost), and counted twice.
    settle().await;
    let saga = o.start("flaky", json!({}), None).await.unwrap().saga;
    let saga = o.wait(&saga.id).await.unwrap();
    assert_eq!(saga.status, SagaStatus::Completed);
    let history = o.history(&saga.id).await.unwrap();
    assert_eq!(saga.steps[0].attempts, 3, "{history:#?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Equal jitter: each delay is between half and all of 1h, then 2h.
    assert!(world.elapsed() >= Duration::from_secs(5_400), "{:?}", world.elapsed());
    let retries = history.iter().filter(|e| matches!(e.event, HistoryEvent::RetryScheduled { .. })).count();
    assert_eq!(retries, 2);
    let _ = world.stop.send(true);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_fires_a_timer_whose_host_died() {
    let world = World::new();
    let survivor = world.orchestrator(catalog(&[LONE]), true);
    settle().await;
    // A host that starts the saga and dies: its in-process timer is never fired.
    let dead = world.orchestrator(catalog(&[LONE]), false);
    let id = dead.start("lone", json!({}), Some("orphan".into())).await.unwrap().saga.id;
    drop(dead);
    let saga = survivor.wait(&id).await.unwrap();
    assert_eq!(saga.status, SagaStatus::Compensated, "the survivor's sweeper timed the step out: {saga:#?}");
    assert_eq!(saga.error.unwrap().code, "timeout");
    let _ = world.stop.send(true);
}

#[tokio::test(start_paused = true)]
async fn overdue_timers_of_workflows_not_loaded_here_do_not_starve_the_rest() {
    let world = World::new();
    let ghost = r#"
name = "ghost"
[[step]]
name = "g"
command = "t.never"
timeout = "1s"
retry = { attempts = 1 }
"#;
    // This host knows only `lone`; another (gone) host started 600 sagas of `ghost`, whose
    // timers are overdue before the one this host must fire: more than two pages of them.
    let here = world.orchestrator(catalog(&[LONE]), true);
    settle().await;
    let elsewhere = world.orchestrator(catalog(&[ghost]), false);
    for i in 0..600 {
        elsewhere.start("ghost", json!({}), Some(format!("ghost-{i:03}"))).await.unwrap();
    }
    let dead = world.orchestrator(catalog(&[LONE]), false);
    let id = dead.start("lone", json!({}), Some("mine".into())).await.unwrap().saga.id;
    drop((dead, elsewhere));
    let saga = tokio::time::timeout(Duration::from_secs(4 * 3_600), here.wait(&id))
        .await
        .expect("the sweeper reached this host's timer behind 600 it cannot fire")
        .unwrap();
    assert_eq!(saga.status, SagaStatus::Compensated);
    let ghosts = world.store.list(Some(SagaStatus::Running), 1_000).await.unwrap();
    assert_eq!(ghosts.len(), 600, "the other workflow's sagas are left to the hosts that have it");
    let _ = world.stop.send(true);
}

#[tokio::test(start_paused = true)]
async fn the_next_orchestrator_resumes_what_a_dead_one_left() {
    let world = World::new();
    let wf = r#"
name = "one"
[[step]]
name = "e"
command = "t.echo"
"#;
    // The bus is not durable, so the command sent before the host died is gone with it...
    let dead = world.orchestrator(catalog(&[wf]), false);
    let id = dead.start("one", json!({"n": 1}), Some("resume-1".into())).await.unwrap().saga.id;
    drop(dead);
    let fresh = Arc::new(MemoryBus::new());
    // ...and a new host, on a new bus, sends it again at its start (same ids).
    let (stop, rx) = watch::channel(false);
    let o = Orchestrator::new(catalog(&[wf]), world.store.clone(), fresh.clone(), world.clock.clone(), None);
    let runner = o.clone();
    tokio::spawn(async move { runner.run(rx).await.unwrap() });
    let mut consumer = fresh.command_consumer(&["t.echo".to_owned()]).await.unwrap();
    let resent = consumer.recv(1).await.unwrap().remove(0).message;
    assert_eq!(resent.meta.idempotency_key, "resume-1/e/forward");
    assert_eq!(resent.payload, json!({"n": 1}));
    let result = ResultMessage { command: resent.name.clone(), meta: resent.meta, outcome: Outcome::Ok(json!("echo")) };
    fresh.send_results(vec![result]).await.unwrap();
    assert_eq!(o.wait(&id).await.unwrap().status, SagaStatus::Completed);
    let _ = stop.send(true);
}
