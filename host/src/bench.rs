//! `baton bench`: a load generator built into the binary, as `redis-benchmark` is into Redis.
//!
//! It runs a whole host in this process (orchestrator, worker pool, the real plugins, and the
//! store and bus of the chosen mode) and keeps `concurrency` sagas in flight: each client
//! starts a saga, waits for its terminal state, and starts the next. Latency is measured from
//! the call that starts a saga to the moment its end is announced (the store has committed
//! it). Sagas started during the warm-up are not counted.
//!
//! - embedded: the durable store (a fresh data directory) and the in-memory bus, as
//!   `baton serve` runs without `--redis`.
//! - redis: the Redis store and the Redis Streams transport under a fresh key prefix, as
//!   `baton serve --redis` runs; the keys are deleted afterwards.
//! - server (`--server URL`): no host here; the clients drive a running `baton serve`
//!   through its HTTP API (start a saga, then wait for it with `GET ?wait=`), so the figures
//!   include HTTP and JSON. The CPU reported is the load generator's own.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bus::EventBus;
use crate::bus::memory::MemoryBus;
use crate::model::{Saga, SagaStatus};
use crate::node::{Node, Parts, Role};
use crate::orchestrator::{Orchestrator, SystemClock};
use crate::runtime::Runtime;
use crate::runtime::worker::WorkerConfig;
use crate::store::SagaStore;
use crate::workflow::Catalog;

/// Where the sagas' state lives during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Durable store on local disk and in-memory bus.
    Embedded,
    /// Redis store and Redis Streams.
    Redis,
    /// A running `baton serve`, over HTTP (chosen with `--server`).
    #[value(skip)]
    Server,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub workflow: String,
    pub input: Value,
    pub mode: Mode,
    pub redis_url: String,
    /// Sagas in flight.
    pub concurrency: usize,
    /// Measure for this long...
    pub duration: Duration,
    /// ...or until this many sagas have been measured.
    pub sagas: Option<usize>,
    pub warmup: Duration,
    /// Commands the worker pool runs at once.
    pub worker_concurrency: usize,
    /// Embedded mode's data directory; a fresh one under the system's temp dir by default.
    pub data: Option<PathBuf>,
    /// Drive this running `baton serve` instead of a host in this process.
    pub server: Option<String>,
    /// The token to send that server (its `--token`).
    pub token: Option<crate::api::Token>,
    /// Print a progress line every second (on stderr).
    pub progress: bool,
}

/// What a run measured. Latencies in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub workflow: String,
    pub mode: Mode,
    pub concurrency: usize,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    pub sagas_per_sec: f64,
    pub steps_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Sagas that did not complete, by why: the failing step's error code, or what went
    /// wrong starting or waiting for them.
    pub errors: BTreeMap<String, u64>,
    /// CPU time this process used during the measured window (user + system).
    pub cpu_seconds: f64,
    /// CPU time the Redis server used during the window (redis mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_cpu_seconds: Option<f64>,
    /// Runs these figures are the medians of.
    pub runs: usize,
}

/// How long one saga may take before the bench counts it as lost and moves on.
const SAGA_TIMEOUT: Duration = Duration::from_secs(60);

/// How a saga a client ran ended.
struct Finished {
    status: SagaStatus,
    /// The code of the failure that made it compensate, if it did.
    error: Option<String>,
    /// Commands it sent in all: attempts of steps and of compensations.
    commands: u32,
}

/// Counters shared by the clients, read by the progress line.
#[derive(Default)]
struct Counters {
    finished: AtomicU64,
    measured: AtomicUsize,
}

/// What one client measured.
#[derive(Default)]
struct Sample {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
    commands: u64,
    last_end: Option<Instant>,
}

/// How a client runs one saga to its end.
#[derive(Clone)]
enum Target {
    /// Through the orchestrator of a host in this process.
    Local { orchestrator: Orchestrator },
    /// Through the HTTP API of a running `baton serve`.
    Server { http: reqwest::Client, url: String },
}

impl Target {
    /// Start saga `id` and wait for its end; the error says, briefly, what went wrong.
    async fn run_saga(&self, workflow: &str, input: &Value, id: String) -> Result<Finished, String> {
        match self {
            Target::Local { orchestrator } => {
                orchestrator
                    .start(workflow, input.clone(), Some(id.clone()))
                    .await
                    .map_err(|e| format!("start: {e}"))?;
                match tokio::time::timeout(SAGA_TIMEOUT, orchestrator.wait(&id)).await {
                    Ok(Ok(saga)) => Ok(finished(saga)),
                    Ok(Err(e)) => Err(format!("wait: {e}")),
                    Err(_) => Err(format!("lost: not finished within {SAGA_TIMEOUT:?}")),
                }
            }
            Target::Server { http, url } => {
                let body = serde_json::json!({ "workflow": workflow, "input": input, "id": id });
                let started = http.post(format!("{url}/v1/sagas")).json(&body).send().await;
                match started {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => return Err(format!("start: HTTP {}", r.status().as_u16())),
                    Err(e) => return Err(format!("start: {}", e.without_url())),
                }
                let deadline = Instant::now() + SAGA_TIMEOUT;
                while Instant::now() < deadline {
                    let got = http.get(format!("{url}/v1/sagas/{id}?wait=30")).send().await;
                    let saga: Saga = match got {
                        Ok(r) if r.status().is_success() => r.json().await.map_err(|e| format!("status: {e}"))?,
                        Ok(r) => return Err(format!("status: HTTP {}", r.status().as_u16())),
                        Err(e) => return Err(format!("status: {}", e.without_url())),
                    };
                    if saga.status.is_terminal() {
                        return Ok(finished(saga));
                    }
                }
                Err(format!("lost: not finished within {SAGA_TIMEOUT:?}"))
            }
        }
    }
}

/// How a saga ended, from its record.
fn finished(saga: Saga) -> Finished {
    let commands = saga.steps.iter().map(|s| s.attempts + s.compensation.as_ref().map_or(0, |c| c.attempts)).sum();
    Finished { status: saga.status, error: saga.error.map(|e| e.code), commands }
}

/// Run the benchmark described by `config` with a host in this process, with the plugins of
/// `runtime`.
pub async fn run(config: BenchConfig, runtime: Runtime, workflows: Catalog) -> anyhow::Result<Report> {
    if workflows.get(&config.workflow).is_none() {
        anyhow::bail!("no workflow named {:?} (found: {})", config.workflow, workflows.names().join(", "));
    }
    let run_id = format!("{:x}", crate::orchestrator::Clock::now_ms(&SystemClock));
    let (store, bus, cleanup) = backend(&config, &run_id).await?;
    let redis_cpu_before = match config.mode {
        Mode::Redis => Some(redis_cpu(&config.redis_url).await?),
        Mode::Embedded | Mode::Server => None,
    };
    let parts = Parts {
        workflows,
        runtime: Some(Arc::new(runtime)),
        bus,
        store,
        clock: Arc::new(SystemClock),
        worker: WorkerConfig { concurrency: config.worker_concurrency, ..WorkerConfig::default() },
        retain: None,
        deployments: Vec::new(),
    };
    let node = Node::start(parts, Role::All);
    let orchestrator = node.orchestrator.clone();

    let target = Target::Local { orchestrator };
    let mut report = measure(&config, &target, &run_id).await;
    if let Some(before) = redis_cpu_before {
        report.redis_cpu_seconds = Some(redis_cpu(&config.redis_url).await? - before);
    }
    node.shutdown().await?;
    cleanup.run().await;
    Ok(report)
}

/// Run the benchmark described by `config` against the `baton serve` at `url`.
pub async fn run_server(config: BenchConfig, url: &str) -> anyhow::Result<Report> {
    let url = url.trim_end_matches('/').to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &config.token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
            .context("the token cannot travel in an HTTP header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency.max(1))
        .default_headers(headers)
        .build()
        .context("cannot build an HTTP client")?;
    let health = http.get(format!("{url}/healthz")).send().await;
    if !health.as_ref().is_ok_and(|r| r.status().is_success()) {
        anyhow::bail!("no baton serve answers at {url}: start one (baton serve), or pass its address with --server");
    }
    // `/healthz` asks for no token: check the token before the clients start, so that a
    // missing one is one clear error, not every saga failing with HTTP 401.
    let ready = http.get(format!("{url}/readyz")).send().await;
    if ready.as_ref().is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED) {
        let what = if config.token.is_some() { "refused the token" } else { "requires a token" };
        anyhow::bail!(
            "{url} {what}: pass the one its `baton serve` was started with (--token, BATON_TOKEN or --token-file)"
        );
    }
    let run_id = format!("{:x}", crate::orchestrator::Clock::now_ms(&SystemClock));
    let mut config = config;
    config.mode = Mode::Server;
    Ok(measure(&config, &Target::Server { http, url }, &run_id).await)
}

/// Keep `config.concurrency` sagas in flight against `target` and measure.
async fn measure(config: &BenchConfig, target: &Target, run_id: &str) -> Report {
    let started = Instant::now();
    let measure_from = started + config.warmup;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut clients = Vec::with_capacity(config.concurrency);
    for client in 0..config.concurrency.max(1) {
        let (target, stop, counters) = (target.clone(), stop.clone(), counters.clone());
        let (workflow, input, run_id, budget) =
            (config.workflow.clone(), config.input.clone(), run_id.to_owned(), config.sagas);
        clients.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            for n in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t0 = Instant::now();
                let measured = t0 >= measure_from;
                if measured
                    && let Some(budget) = budget
                    && counters.measured.fetch_add(1, Ordering::Relaxed) >= budget
                {
                    break;
                }
                let result = target.run_saga(&workflow, &input, format!("bench-{run_id}-{client}-{n}")).await;
                let end = Instant::now();
                counters.finished.fetch_add(1, Ordering::Relaxed);
                if !measured {
                    if result.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
                match result {
                    Ok(f) => {
                        sample.latencies_us.push(end.duration_since(t0).as_micros() as u64);
                        *sample.statuses.entry(f.status.as_str()).or_default() += 1;
                        sample.commands += u64::from(f.commands);
                        if let Some(code) = &f.error {
                            *sample.errors.entry(code.clone()).or_default() += 1;
                        }
                        sample.last_end = Some(end);
                    }
                    Err(kind) => {
                        *sample.errors.entry(kind).or_default() += 1;
                        // Do not spin against a host that refuses work.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            sample
        }));
    }

    let cpu_before = std::sync::OnceLock::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    let end_at = measure_from + config.duration;
    loop {
        let wait_until = if Instant::now() < measure_from { measure_from } else { end_at };
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(wait_until.into()) => {}
        }
        let now = Instant::now();
        if now >= measure_from {
            cpu_before.get_or_init(process_cpu_seconds);
        }
        let done = counters.finished.load(Ordering::Relaxed);
        if config.progress {
            let phase = if now < measure_from { "warm-up" } else { "measuring" };
            eprint!(
                "\r[{:>5.1}s] {phase}: {done} sagas finished, {} in the last second   ",
                now.duration_since(started).as_secs_f64(),
                done - last
            );
            let _ = std::io::stderr().flush();
        }
        last = done;
        let budget_spent = config.sagas.is_some_and(|b| counters.measured.load(Ordering::Relaxed) >= b)
            || clients.iter().all(|c| c.is_finished());
        if (config.sagas.is_none() && now >= end_at) || budget_spent {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Sample::default();
    for c in clients {
        let s = match c.await {
            Ok(s) => s,
            Err(e) => {
                *total.errors.entry(format!("a client failed: {e}")).or_default() += 1;
                continue;
            }
        };
        total.latencies_us.extend(s.latencies_us);
        for (k, v) in s.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        for (k, v) in s.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.commands += s.commands;
        total.last_end = total.last_end.max(s.last_end);
    }
    let cpu_seconds = process_cpu_seconds() - cpu_before.get().copied().unwrap_or_else(process_cpu_seconds);
    if config.progress {
        eprintln!();
    }
    let seconds = total.last_end.map_or(0.0, |e| e.saturating_duration_since(measure_from).as_secs_f64()).max(1e-9);
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let l = &total.latencies_us;
        if l.is_empty() {
            return 0.0;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * l.len() as f64).ceil().max(1.0) as usize;
        l[rank.min(l.len()) - 1] as f64 / 1000.0
    };
    let count = |s: SagaStatus| total.statuses.get(s.as_str()).copied().unwrap_or(0);
    let ended = total.latencies_us.len() as f64;
    Report {
        workflow: config.workflow.clone(),
        mode: config.mode,
        concurrency: config.concurrency,
        seconds,
        completed: count(SagaStatus::Completed),
        compensated: count(SagaStatus::Compensated),
        failed: count(SagaStatus::Failed),
        sagas_per_sec: ended / seconds,
        steps_per_sec: total.commands as f64 / seconds,
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        max_ms: pct(100.0),
        errors: total.errors,
        cpu_seconds,
        redis_cpu_seconds: None,
        runs: 1,
    }
}

impl Report {
    /// A baseline for `baton bench --check`: the `--json` output of an earlier run.
    pub fn read_baseline(path: &std::path::Path) -> anyhow::Result<Report> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read the baseline {}: write one with `baton bench ... --json > FILE`", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a `baton bench --json` report: write one with `baton bench ... --json > FILE`",
                path.display()
            )
        })
    }

    /// Compare `run` with this baseline (`baton bench --check`), on stderr: exit 0 when its
    /// throughput is at most `margin_pct` percent below the baseline's, 1 when it is further
    /// below or when the two did not measure the same thing.
    pub fn check(&self, run: &Report, margin_pct: f64) -> std::process::ExitCode {
        let what = |r: &Report| format!("workflow {}, mode {:?}, -c {}", r.workflow, r.mode, r.concurrency);
        if (self.workflow.as_str(), self.mode, self.concurrency) != (run.workflow.as_str(), run.mode, run.concurrency) {
            eprintln!("check: the baseline measured {}, this run {}: compare like with like", what(self), what(run));
            return std::process::ExitCode::from(1);
        }
        let change = |now: f64, then: f64| if then > 0.0 { (now / then - 1.0) * 100.0 } else { 0.0 };
        let floor = self.sagas_per_sec * (1.0 - margin_pct / 100.0);
        let verdict = if run.sagas_per_sec >= floor { "ok" } else { "SLOWER" };
        eprintln!(
            "check: {verdict}: {:.1} sagas/s against {:.1} ({:+.1}%, margin -{margin_pct}%); p50 {:.2} ms against {:.2} ({:+.1}%), p99 {:.2} ms against {:.2} ({:+.1}%)",
            run.sagas_per_sec,
            self.sagas_per_sec,
            change(run.sagas_per_sec, self.sagas_per_sec),
            run.p50_ms,
            self.p50_ms,
            change(run.p50_ms, self.p50_ms),
            run.p99_ms,
            self.p99_ms,
            change(run.p99_ms, self.p99_ms),
        );
        if run.sagas_per_sec >= floor { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) }
    }

    /// The median of each figure over several runs (the errors are summed). Medians, not
    /// means: on a shared machine one disturbed run should not move the result.
    pub fn median(runs: &[Report]) -> Option<Report> {
        let first = runs.first()?;
        let med = |f: &dyn Fn(&Report) -> f64| -> f64 {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
        };
        let mut errors = BTreeMap::new();
        for r in runs {
            for (k, v) in &r.errors {
                *errors.entry(k.clone()).or_default() += v;
            }
        }
        Some(Report {
            workflow: first.workflow.clone(),
            mode: first.mode,
            concurrency: first.concurrency,
            seconds: med(&|r| r.seconds),
            completed: med(&|r| r.completed as f64) as u64,
            compensated: med(&|r| r.compensated as f64) as u64,
            failed: med(&|r| r.failed as f64) as u64,
            sagas_per_sec: med(&|r| r.sagas_per_sec),
            steps_per_sec: med(&|r| r.steps_per_sec),
            p50_ms: med(&|r| r.p50_ms),
            p90_ms: med(&|r| r.p90_ms),
            p99_ms: med(&|r| r.p99_ms),
            max_ms: med(&|r| r.max_ms),
            errors,
            cpu_seconds: med(&|r| r.cpu_seconds),
            redis_cpu_seconds: first.redis_cpu_seconds.map(|_| med(&|r| r.redis_cpu_seconds.unwrap_or(0.0))),
            runs: runs.len(),
        })
    }

    /// One line for one run of several.
    pub fn line(&self) -> String {
        format!(
            "{:.1} sagas/s, p50 {:.2} ms, p99 {:.2} ms, {} completed, cpu {:.2} s",
            self.sagas_per_sec, self.p50_ms, self.p99_ms, self.completed, self.cpu_seconds
        )
    }

    /// The report for a person, in the style of `redis-benchmark`.
    pub fn print(&self) {
        let mode = match self.mode {
            Mode::Embedded => "embedded (write-ahead log and redb, in-memory bus)",
            Mode::Redis => "redis (Redis store, Redis Streams)",
            Mode::Server => "a running baton serve, over HTTP (cpu: the load generator's)",
        };
        let runs = if self.runs > 1 { format!(" (medians of {} runs)", self.runs) } else { String::new() };
        crate::outln!("baton bench: workflow {}, {mode}, {} in flight{runs}", self.workflow, self.concurrency);
        crate::outln!(
            "  sagas       {} completed, {} compensated, {} failed in {:.1} s",
            self.completed,
            self.compensated,
            self.failed,
            self.seconds
        );
        crate::outln!("  throughput  {:.1} sagas/s, {:.1} steps/s", self.sagas_per_sec, self.steps_per_sec);
        crate::outln!(
            "  latency     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        );
        let cores = self.cpu_seconds / self.seconds;
        match self.redis_cpu_seconds {
            Some(r) => crate::outln!(
                "  cpu         host {:.2} s ({cores:.2} cores), redis-server {r:.2} s ({:.2} cores)",
                self.cpu_seconds,
                r / self.seconds
            ),
            None => crate::outln!("  cpu         host {:.2} s ({cores:.2} cores)", self.cpu_seconds),
        }
        if !self.errors.is_empty() {
            crate::outln!("  not completed, by kind:");
            for (k, v) in &self.errors {
                crate::outln!("    {v:>8}  {k}");
            }
        }
    }
}

/// What to remove after the run.
enum Cleanup {
    Dir(PathBuf),
    RedisPrefix { url: String, prefix: String },
    Nothing,
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::Dir(dir) => {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("cannot remove the bench data directory {}: {e}", dir.display());
                }
            }
            Cleanup::RedisPrefix { url, prefix } => {
                if let Err(e) = delete_prefix(&url, &prefix).await {
                    tracing::warn!("cannot delete the bench keys under {prefix}: {e}");
                }
            }
            Cleanup::Nothing => {}
        }
    }
}

async fn backend(
    config: &BenchConfig,
    run_id: &str,
) -> anyhow::Result<(Arc<dyn SagaStore>, Arc<dyn EventBus>, Cleanup)> {
    match config.mode {
        Mode::Embedded => {
            let (dir, cleanup) = match &config.data {
                Some(dir) => (dir.clone(), Cleanup::Nothing),
                None => {
                    let dir = std::env::temp_dir().join(format!("baton-bench-{}-{run_id}", std::process::id()));
                    (dir.clone(), Cleanup::Dir(dir))
                }
            };
            let store = crate::store::embedded::EmbeddedStore::open(&dir)?;
            Ok((Arc::new(store), Arc::new(MemoryBus::new()), cleanup))
        }
        Mode::Redis => {
            let prefix = format!("baton-bench:{run_id}:{}", std::process::id());
            let url = &config.redis_url;
            let store = crate::store::redis::RedisStore::connect(url, &prefix)
                .await?
                .with_outbox(crate::bus::redis_streams::outbox_encoder(&prefix));
            let streams = crate::bus::redis_streams::StreamsConfig::default();
            let bus = crate::bus::redis_streams::RedisStreamsBus::connect(url, &prefix, streams).await?;
            Ok((Arc::new(store), Arc::new(bus), Cleanup::RedisPrefix { url: url.clone(), prefix }))
        }
        Mode::Server => anyhow::bail!("a bench against a server runs no host of its own (run_server)"),
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (Linux; 0
/// elsewhere). The kernel counts in clock ticks, 100 a second on every Linux we run on.
fn process_cpu_seconds() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')'.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// CPU seconds the Redis server has used (`INFO cpu`).
async fn redis_cpu(url: &str) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut con).await?;
    let field = |name: &str| -> f64 {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0.0)
    };
    Ok(field("used_cpu_sys") + field("used_cpu_user"))
}

/// Delete every key under `prefix` (SCAN, not KEYS, so a large Redis is not blocked).
async fn delete_prefix(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(keys).query_async(&mut con).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
