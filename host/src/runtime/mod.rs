//! The plugin runtime: a wasmtime engine, the worker plugins found in a directory, and a sandbox
//! for every command.
//!
//! - Each `*.wasm` is compiled once; the compiled artifact is cached on disk, keyed by the
//!   component's content hash and the engine's settings ([`cache`]).
//! - Each plugin is pre-linked once (`InstancePre`), and every command gets a fresh instance
//!   from the pooling allocator: no state leaks from one command to the next.
//! - Two versions of the contract are served side by side: a plugin built against
//!   `baton:saga@0.2.0` (today's guest SDK) may import `orchestrator` and run sagas of its own
//!   ([`sagas`]); one built against `baton:saga@0.1.0` imports WASI alone and runs as before.
//!   Which one a component speaks is read off the version of the `worker` interface it
//!   exports ([`Contract`]), once, at load; it is then pre-linked with that version's linker.
//! - Sandbox: no files, network, environment or arguments; stdout and stderr are captured
//!   (a panic message ends up in the command's error); memory is capped per command; CPU time
//!   is bounded by a deadline enforced with epoch interruption, which does not count the time
//!   a command spends blocked in a call to the orchestrator; the step's timeout (and the
//!   command's deadline) bound the whole run, waits included.
//! - A plugin that traps, panics, loops or runs out of memory fails its command with a clear
//!   error and the host carries on. A file that is not a valid component is reported by name
//!   and the other plugins still load.
//!
//! [`worker`] runs the loop that takes commands from the bus and answers them.

mod bindings;
pub mod cache;
pub mod manifest;
pub mod outbound;
pub mod sagas;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::protocol::{CommandMessage, Failure, Meta, Outcome};
use crate::workflow::schema::Schema;
use bindings::v2::baton::saga::types as wit;
use bindings::{v1, v2};
use sagas::{SagaCalls, SagaHost};

/// How often the epoch ticks. A command's deadline is checked at each tick, and a running
/// plugin yields to the executor at each tick, so this bounds both the deadline's precision
/// and how long one plugin can hold a thread.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of linear memory a pooled slot keeps resident between commands (see
/// [`Runtime::new`]).
const KEEP_RESIDENT: usize = 2 << 20;

/// Most core instances one component may instantiate (a Python component takes 14, a Rust one
/// 3); the pool holds this many per instance slot. See [`Runtime::new`].
const MAX_CORE_INSTANCES: u32 = 16;
/// Most linear memories one component may define (Python and Rust components define 1).
const MAX_MEMORIES: u32 = 2;
/// Most tables one component may define (Python and Rust components define 2).
const MAX_TABLES: u32 = 4;

/// Slots decommitted together. One: what a command used past [`KEEP_RESIDENT`] goes back to
/// the system as the command ends, so the memory budget's accounting is the process's
/// (batching would leave up to cores x (batch - 1) big slots resident after their budget was
/// released). Commands that stay under [`KEEP_RESIDENT`], the common case, decommit nothing.
const DECOMMIT_BATCH: usize = 1;

/// Bytes of a plugin's stdout/stderr kept per command: enough for a panic message and a few
/// log lines, small enough that a chatty plugin cannot exhaust the host.
const OUTPUT_CAPTURE_BYTES: usize = 64 * 1024;

/// Limits and settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Most linear memory one command's instance may use, in bytes.
    pub memory_limit: usize,
    /// Most CPU time a command may take, whatever its step's timeout says: the epoch
    /// deadline. Time spent blocked in a call to the orchestrator (a `run-saga` waiting for
    /// its saga) is not counted; the step's timeout bounds that.
    pub max_deadline: Duration,
    /// Where compiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Most instances alive at once (the pooling allocator's slots).
    pub max_instances: u32,
    /// Most linear memory all live instances may hold together, in bytes. A command starts
    /// only once its `memory_limit` fits in what is left (it waits for room, up to its
    /// deadline): the sum of the limits of running commands never exceeds this.
    pub memory_budget: usize,
}

/// The budget in MiB, and what one command takes of it (its limit, or the whole budget when
/// the limit is larger).
fn budget_mib(config: &RuntimeConfig) -> u32 {
    u32::try_from((config.memory_budget >> 20).max(1))
        .unwrap_or(u32::MAX >> 3)
        .min(tokio::sync::Semaphore::MAX_PERMITS as u32)
}

fn command_mib(config: &RuntimeConfig, memory_limit: usize) -> u32 {
    u32::try_from(memory_limit.div_ceil(1 << 20).max(1)).unwrap_or(u32::MAX).min(budget_mib(config))
}

/// The default memory budget: a quarter of the machine's memory (at least 256 MiB), or 1 GiB
/// where the machine's memory cannot be read.
pub fn default_memory_budget() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib << 10)
    });
    total.map_or(1 << 30, |t| (t / 4).max(256 << 20))
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            memory_limit: 64 << 20,
            max_deadline: Duration::from_secs(300),
            cache_dir: cache::default_dir(),
            max_instances: 256,
            memory_budget: default_memory_budget(),
        }
    }
}

/// A command a plugin handles, as it described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandSpec {
    pub name: String,
    /// The JSON Schema of its payload, as the plugin wrote it.
    pub input_schema: Option<String>,
    /// The JSON Schema of its result, as the plugin wrote it.
    pub output_schema: Option<String>,
    /// `input_schema`, compiled: a payload that does not fit is refused before the plugin
    /// runs (`invalid_input`).
    #[serde(skip)]
    pub input: Option<Schema>,
    /// `output_schema`, compiled: a result that does not fit fails the command
    /// (`invalid_output`).
    #[serde(skip)]
    pub output: Option<Schema>,
}

impl CommandSpec {
    /// A spec from what `describe()` returned: its schemas parsed and compiled, or the
    /// message that says which one is wrong and why.
    fn described(plugin: &str, spec: wit::CommandSpec) -> Result<Self, String> {
        let compile = |key: &str, text: &Option<String>| -> Result<Option<Schema>, String> {
            let Some(text) = text else { return Ok(None) };
            let wrong = |why: String| {
                format!(
                    "plugin {plugin}: the {key} of command {:?} {why}; fix it in the plugin's describe()",
                    spec.name
                )
            };
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| wrong(format!("is not JSON ({e})")))?;
            crate::workflow::schema::compile(&json)
                .map(Some)
                .map_err(|e| wrong(format!("is not a valid JSON Schema ({e})")))
        };
        let input = compile("input-schema", &spec.input_schema)?;
        let output = compile("output-schema", &spec.output_schema)?;
        Ok(Self { name: spec.name, input_schema: spec.input_schema, output_schema: spec.output_schema, input, output })
    }
}

/// A version of the worker contract (`wit/`) the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Contract {
    /// `baton:saga@0.1.0` (`wit/0.1.0/saga.wit`): exports `worker`, imports WASI alone.
    #[serde(rename = "baton:saga@0.1.0")]
    V0_1,
    /// `baton:saga@0.2.0` (`wit/saga.wit`): exports `worker`, may import `orchestrator`.
    #[serde(rename = "baton:saga@0.2.0")]
    V0_2,
}

impl Contract {
    /// Every version served, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// `baton:saga@0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "baton:saga@0.1.0",
            Contract::V0_2 => "baton:saga@0.2.0",
        }
    }

    /// The name of the `worker` interface a plugin of this version exports.
    fn worker_export(self) -> &'static str {
        match self {
            Contract::V0_1 => "baton:saga/worker@0.1.0",
            Contract::V0_2 => "baton:saga/worker@0.2.0",
        }
    }

    /// The version `component` was built against, read off the `worker` interface it
    /// exports (its imports say less: a 0.2.0 plugin that never calls the orchestrator does
    /// not import it). The error names what it exports instead.
    fn of(engine: &Engine, component: &Component) -> Result<Contract, String> {
        let ty = component.component_type();
        if let Some(c) = Contract::ALL.into_iter().find(|c| ty.get_export(engine, c.worker_export()).is_some()) {
            return Ok(c);
        }
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        let served: Vec<&str> = Contract::ALL.iter().map(|c| c.worker_export()).collect();
        Err(format!(
            "it exports {} but no worker interface this host serves ({}): build workers with the baton-guest SDK, or against wit/saga.wit",
            if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") },
            served.join(" or ")
        ))
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin pre-linked for its version of the contract.
enum Pre {
    V0_1(v1::WorkerPluginPre<HostState>),
    V0_2(v2::WorkerPluginPre<HostState>),
}

impl Pre {
    /// Instantiate and call `describe`.
    async fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<Vec<wit::CommandSpec>> {
        match self {
            Pre::V0_1(pre) => pre.instantiate_async(&mut *store).await?.baton_saga_worker().call_describe(store).await,
            Pre::V0_2(pre) => pre.instantiate_async(&mut *store).await?.baton_saga_worker().call_describe(store).await,
        }
    }

    /// Instantiate (timed, for `baton_plugin_instantiation_seconds` of `plugin`) and call
    /// `handle`.
    async fn handle(
        &self,
        store: &mut Store<HostState>,
        cmd: &wit::Command,
        plugin: &str,
    ) -> wasmtime::Result<Result<String, wit::Failure>> {
        let began = Instant::now();
        match self {
            Pre::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                crate::observe::metrics::instantiated(plugin, began.elapsed());
                instance.baton_saga_worker().call_handle(store, cmd).await
            }
            Pre::V0_2(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                crate::observe::metrics::instantiated(plugin, began.elapsed());
                instance.baton_saga_worker().call_handle(store, cmd).await
            }
        }
    }
}

/// A loaded worker plugin.
pub struct Plugin {
    /// The file name without `.wasm`.
    pub name: String,
    pub path: PathBuf,
    pub commands: Vec<CommandSpec>,
    /// True when the compiled artifact came from the cache.
    pub cached: bool,
    /// The version of the contract it was built against.
    pub contract: Contract,
    /// What its manifest (`<name>.toml` beside it) grants and limits; the default without one.
    pub manifest: manifest::Manifest,
    /// `sha256:` and the first 16 hex digits of the `.wasm` file's SHA-256.
    pub hash: String,
    /// When it was loaded, in ms since the Unix epoch.
    pub loaded_at: u64,
    pre: Pre,
}

/// A plugin that could not be loaded, and why.
#[derive(Debug, Clone)]
pub struct PluginError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Per-instance host state: the (empty) WASI context, the memory limiter, the CPU clock and
/// what the `orchestrator` import needs.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// `wasi:http`: its context, and the hooks that hold the plugin's grant.
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: outbound::Hooks,
    limiter: MemoryLimiter,
    /// What the plugin wrote to stdout and stderr (shared with the WASI context).
    output: MemoryOutputPipe,
    cpu: CpuClock,
    sagas: SagaCalls,
}

/// The CPU time of one instance as its epoch deadline counts it: the time since it started,
/// less the time it spent blocked in calls to the orchestrator (which the host functions of
/// [`sagas`] add up in `blocked`). A plugin waiting for a sub-saga therefore burns none of
/// it; the wall-clock bound of [`Runtime::try_invoke`] still bounds the wait.
struct CpuClock {
    started: Instant,
    limit: Duration,
    blocked: Duration,
}

impl CpuClock {
    fn new(limit: Duration) -> Self {
        Self { started: Instant::now(), limit, blocked: Duration::ZERO }
    }

    /// Whether the instance has used up its CPU time.
    fn spent(&self) -> bool {
        self.started.elapsed().saturating_sub(self.blocked) >= self.limit
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

/// Refuses memory growth past the limit and remembers that it did, so that the trap which
/// follows (Rust aborts when an allocation fails) is reported as what it is.
struct MemoryLimiter {
    max: usize,
    /// Bytes of all the instance's memories together (a component has several).
    total: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_add(desired.saturating_sub(current));
        if total > self.max {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million of them is far past any sane plugin.
        Ok(desired <= 1_000_000)
    }
}

/// Increments the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("baton-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A set of loaded plugins.
#[derive(Default)]
struct Loaded {
    plugins: Vec<Arc<Plugin>>,
    /// Command name -> index into `plugins`.
    commands: BTreeMap<String, usize>,
}

impl Loaded {
    /// This set with `plugin` in it, in place of the one of the same name if there is one;
    /// or why not (another plugin handles one of its commands).
    fn with(&self, plugin: Plugin) -> Result<Loaded, String> {
        for c in &plugin.commands {
            if let Some(&other) = self.commands.get(&c.name)
                && self.plugins[other].name != plugin.name
            {
                return Err(format!(
                    "command {:?} is already handled by {}: remove one of the two plugins or rename the command",
                    c.name,
                    self.plugins[other].path.display()
                ));
            }
        }
        let mut plugins: Vec<Arc<Plugin>> = self.plugins.clone();
        match plugins.iter().position(|p| p.name == plugin.name) {
            Some(i) => plugins[i] = Arc::new(plugin),
            None => plugins.push(Arc::new(plugin)),
        }
        Ok(Loaded::of(plugins))
    }

    fn of(plugins: Vec<Arc<Plugin>>) -> Loaded {
        let mut commands = BTreeMap::new();
        for (i, p) in plugins.iter().enumerate() {
            for c in &p.commands {
                commands.insert(c.name.clone(), i);
            }
        }
        Loaded { plugins, commands }
    }
}

/// The engine and the loaded plugins.
pub struct Runtime {
    engine: Engine,
    /// WASI alone: what a `baton:saga@0.1.0` plugin may import.
    linker_v1: Linker<HostState>,
    /// WASI and `baton:saga/orchestrator@0.2.0`: what a `baton:saga@0.2.0` plugin may import.
    linker_v2: Linker<HostState>,
    /// The orchestrator the `orchestrator` import calls, once the host sets one.
    saga_host: OnceLock<Arc<dyn SagaHost>>,
    /// The plugins loaded now. A reload swaps the whole set; a command keeps the set (and so
    /// the version of its plugin) it started with. A std `RwLock`: read once per command.
    loaded: std::sync::RwLock<Arc<Loaded>>,
    /// Bumped at each change of `loaded`, for the worker pools.
    changes: tokio::sync::watch::Sender<u64>,
    config: RuntimeConfig,
    /// The memory budget, in MiB: a running command holds its `memory_limit`'s worth.
    budget: Arc<tokio::sync::Semaphore>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// An engine with no plugins yet.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        // What one component instantiates, by the language it was written in:
        // - Rust (wasm32-wasip2): 3 core instances (the program, the WASI adapter, a shim),
        //   1 memory, 2 tables;
        // - Python (componentize-py 0.25): 14 core instances (CPython, libc and the other
        //   dynamically linked libraries, their shims), 1 memory (about 12.4 MiB to start,
        //   within the default 64 MiB limit) and 2 tables (the largest about 5,700 funcrefs,
        //   within the pool's 20,000 per table).
        // The per-component maxima admit any of these with room to spare (16 core instances,
        // 2 memories, 4 tables) and stop one odd component from taking a large share of the
        // pool; the totals let `n` of the largest (Python) run at once, so the pool runs out
        // of component slots first, whatever the mix. A core-instance slot is address space,
        // not memory, until an instance uses it; memories and tables are unchanged.
        pool.total_component_instances(n)
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .max_memories_per_component(MAX_MEMORIES)
            .max_tables_per_component(MAX_TABLES)
            .total_core_instances(n * MAX_CORE_INSTANCES)
            .total_memories(n * MAX_MEMORIES)
            .total_tables(n * MAX_TABLES)
            .total_stacks(n)
            .max_memory_size(config.memory_limit.max(1 << 20))
            // A slot is reused thousands of times a second. Resetting it with madvise costs a
            // TLB shootdown (an interrupt to every core running this process) and page
            // faults on the next use, which dominated the host's CPU profile under load.
            // Instead keep slots resident and reset only the pages a command dirtied (found
            // with the PAGEMAP_SCAN ioctl where the kernel has it, Linux 6.7+), up to this
            // much per memory: a command of a Rust worker touches a few hundred KiB.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(anyhow::Error::from).context("cannot create the wasmtime engine")?;
        let mut linker_v1 = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_v1)
            .map_err(anyhow::Error::from)
            .context("cannot link WASI")?;
        // Linked for every plugin; what a request may reach is its manifest's ([`outbound`]).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker_v1)
            .map_err(anyhow::Error::from)
            .context("cannot link wasi:http")?;
        // The one thing 0.2.0 adds: nothing else becomes grantable.
        let mut linker_v2 = linker_v1.clone();
        v2::baton::saga::orchestrator::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker_v2, |s| s)
            .map_err(anyhow::Error::from)
            .context("cannot link the orchestrator import")?;
        let ticker = EpochTicker::start(engine.clone());
        let budget = Arc::new(tokio::sync::Semaphore::new(budget_mib(&config) as usize));
        Ok(Runtime {
            engine,
            linker_v1,
            linker_v2,
            saga_host: OnceLock::new(),
            loaded: std::sync::RwLock::new(Arc::new(Loaded::default())),
            changes: tokio::sync::watch::channel(0).0,
            config,
            budget,
            _ticker: ticker,
        })
    }

    /// Give the `orchestrator` import of `baton:saga@0.2.0` the orchestrator it calls (the
    /// host's own, when it runs one). Once: the runtime may already be shared by then (an
    /// `Arc` in the worker pools), and a second call keeps the first host, with a warning.
    /// Without one, every call of the import fails with [`sagas::NO_ORCHESTRATOR`].
    pub fn set_saga_host(&self, host: Arc<dyn SagaHost>) {
        if self.saga_host.set(host).is_err() {
            tracing::warn!(
                "the runtime already has an orchestrator for the plugins' orchestrator import; keeping the first"
            );
        }
    }

    /// Load every `*.wasm` in `dir` (sorted by name). Plugins that fail to load are returned as
    /// errors; the others are loaded. Fails only when the directory cannot be read.
    pub async fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<PluginError>> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "cannot read the plugin directory {}: build the example plugins with `cd plugins && cargo build --release --target wasm32-wasip2`, or point --plugins (BATON_PLUGINS) at a directory of .wasm files",
                dir.display()
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut errors = Vec::new();
        for path in files {
            if let Err(message) = self.load_file(&path).await {
                errors.push(PluginError { path, message });
            }
        }
        Ok(errors)
    }

    /// Load one plugin file, in place of the loaded plugin of the same name if there is one
    /// (a reload: commands already running finish on the old one). The error is a sentence
    /// that says what to do; the plugins loaded before are then unchanged.
    pub async fn load_file(&self, path: &Path) -> Result<(), String> {
        let host = manifest::HostLimits { memory: self.config.memory_limit, cpu: self.config.max_deadline };
        let manifest = manifest::Manifest::for_plugin(path, host, &|var| std::env::var(var).ok())?;
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
        let hash = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(&bytes);
            format!("sha256:{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
        };
        let (component, cached) = cache::compile(&self.engine, &bytes, self.config.cache_dir.as_deref()).map_err(|e| {
            format!(
                "not a valid WebAssembly component ({}): build workers with `cargo build --target wasm32-wasip2` against the baton-guest SDK",
                root_message(&e)
            )
        })?;
        let contract = Contract::of(&self.engine, &component).map_err(|e| format!("not a Baton worker ({e})"))?;
        let pre = match contract {
            Contract::V0_1 => {
                self.linker_v1.instantiate_pre(&component).and_then(v1::WorkerPluginPre::new).map(Pre::V0_1)
            }
            Contract::V0_2 => {
                self.linker_v2.instantiate_pre(&component).and_then(v2::WorkerPluginPre::new).map(Pre::V0_2)
            }
        }
        .map_err(|e| {
            let may_import = match contract {
                Contract::V0_1 => "nothing but WASI",
                Contract::V0_2 => "nothing but WASI and baton:saga/orchestrator",
            };
            format!(
                "the component does not fit the worker contract {contract} ({}): it must export baton:saga/worker and import {may_import}",
                root_message(&anyhow::Error::from(e))
            )
        })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin").to_owned();

        let limit = Duration::from_secs(10);
        let mut store = self.store(limit, None, &name, &manifest);
        let specs = match tokio::time::timeout(limit, pre.describe(&mut store)).await {
            Ok(specs) => {
                specs.map_err(|e| format!("describe() failed: {}", self.fault(&name, "describe", e, &store, limit)))?
            }
            Err(_) => {
                let fault = Fault::Timeout { plugin: name, command: "describe".to_owned(), deadline: limit };
                return Err(format!("describe() failed: {fault}"));
            }
        };

        let mut commands: Vec<CommandSpec> = Vec::with_capacity(specs.len());
        for spec in specs {
            if commands.iter().any(|c| c.name == spec.name) {
                return Err(format!("describe() returned command {:?} twice", spec.name));
            }
            if spec.name.is_empty() {
                return Err("describe() returned a command with an empty name".to_owned());
            }
            commands.push(CommandSpec::described(&name, spec)?);
        }
        tracing::info!(
            plugin = %name,
            cached,
            %contract,
            commands = commands.len(),
            config = ?manifest.config_names(),
            "plugin loaded"
        );
        let loaded_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let plugin = Plugin { name, path: path.to_owned(), commands, cached, contract, manifest, hash, loaded_at, pre };
        {
            let mut loaded = self.loaded.write().expect("plugins lock poisoned");
            *loaded = Arc::new(loaded.with(plugin)?);
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Unload plugin `name` (its file was removed): its worker pool stops, so its commands
    /// wait on the bus for a host that has it; those running finish. Whether it was loaded.
    pub fn unload(&self, name: &str) -> bool {
        {
            let mut loaded = self.loaded.write().expect("plugins lock poisoned");
            if !loaded.plugins.iter().any(|p| p.name == name) {
                return false;
            }
            let rest = loaded.plugins.iter().filter(|p| p.name != name).cloned().collect();
            *loaded = Arc::new(Loaded::of(rest));
        }
        self.changes.send_modify(|n| *n += 1);
        true
    }

    /// Told each time the set of plugins changes.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.loaded.read().expect("plugins lock poisoned").clone()
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.loaded().plugins.clone()
    }

    /// The loaded plugins as JSON, as `GET /v1/plugins` and `baton plugins --json` show
    /// them: name, file, content hash, load time, contract, commands with their schemas, and
    /// the manifest's config names (never values) and limits.
    pub fn plugins_json(&self) -> Vec<serde_json::Value> {
        self.loaded()
            .plugins
            .iter()
            .map(|p| {
                let mut plugin = serde_json::json!({
                    "name": p.name,
                    "path": p.path,
                    "hash": p.hash,
                    "loaded_at": crate::model::time::format(p.loaded_at),
                    "contract": p.contract,
                    "commands": p.commands,
                });
                if let Some(path) = &p.manifest.path {
                    plugin["manifest"] = serde_json::json!({
                        "path": path,
                        "config": p.manifest.config_names(),
                        "limits": p.manifest.limits.json(),
                    });
                }
                plugin
            })
            .collect()
    }

    /// The JSON Schemas of every command some plugin handles, by name.
    pub fn schemas(&self) -> BTreeMap<String, crate::workflow::fit::Schemas> {
        let loaded = self.loaded();
        let specs = loaded.plugins.iter().flat_map(|p| &p.commands);
        specs
            .map(|c| {
                let json = |s: &Option<Schema>| s.as_ref().map(|s| s.json().clone());
                (c.name.clone(), crate::workflow::fit::Schemas { input: json(&c.input), output: json(&c.output) })
            })
            .collect()
    }

    /// Every command some plugin handles, sorted.
    pub fn command_names(&self) -> Vec<String> {
        self.loaded().commands.keys().cloned().collect()
    }

    /// A fresh store for one instance: `cpu` is its CPU time (see [`CpuClock`]); `caller` the
    /// command it runs, whose calls to the orchestrator act on its behalf (`None` while
    /// `describe` runs, outside any command).
    fn store(
        &self,
        cpu: Duration,
        caller: Option<Meta>,
        plugin: &str,
        manifest: &manifest::Manifest,
    ) -> Store<HostState> {
        // Nothing is granted but the manifest's config, as environment variables: no
        // preopened directories, no arguments, no sockets. Output goes to a bounded
        // in-memory pipe.
        let output = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let mut builder = WasiCtx::builder();
        builder.stdout(output.clone()).stderr(output.clone()).allow_tcp(false).allow_udp(false);
        builder.allow_ip_name_lookup(false);
        for (name, value) in manifest.env() {
            builder.env(name, value);
        }
        let wasi = builder.build();
        let memory = manifest.limits.memory.unwrap_or(self.config.memory_limit);
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: outbound::Hooks { plugin: plugin.to_owned(), grant: manifest.http.clone() },
            limiter: MemoryLimiter { max: memory, total: 0, hit: false },
            output,
            cpu: CpuClock::new(cpu),
            sagas: SagaCalls::new(self.saga_host.get().cloned(), caller),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Checked at every tick while the plugin runs (not while it waits in a host call: no
        // wasm runs then), so the time blocked in a call is subtracted when it comes back.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if store.data().cpu.spent() { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        store
    }

    /// The plugin that handles `command`.
    pub fn plugin_of(&self, command: &str) -> Option<String> {
        let loaded = self.loaded();
        loaded.commands.get(command).map(|&i| loaded.plugins[i].name.clone())
    }

    /// Run one command in a fresh, sandboxed instance, started at `now` (ms since the epoch):
    /// it runs for its timeout at most, and never past its deadline; of that, it may spend
    /// [`RuntimeConfig::max_deadline`] running (its CPU time), the rest waiting for sagas it
    /// runs. Never panics and never fails the host: whatever the plugin does becomes an
    /// [`Outcome`].
    pub async fn invoke(&self, cmd: &CommandMessage, now: u64) -> Outcome {
        match self.try_invoke(cmd, now).await {
            Ok(outcome) => outcome,
            Err(fault) => {
                tracing::info!(command = %cmd.name, code = fault.code(), "{fault}");
                if let Some((plugin, kind)) = fault.trap() {
                    crate::observe::metrics::trap(plugin, kind);
                }
                Outcome::Err(fault.into_failure())
            }
        }
    }

    /// [`Runtime::invoke`], with what went wrong on the host's side as a typed [`Fault`].
    /// `Ok` holds the plugin's own answer: its result, or the failure it returned.
    pub async fn try_invoke(&self, cmd: &CommandMessage, now: u64) -> Result<Outcome, Fault> {
        let loaded = self.loaded();
        let Some(&index) = loaded.commands.get(&cmd.name) else {
            return Err(Fault::UnknownCommand { command: cmd.name.clone(), loaded: self.command_names().join(", ") });
        };
        // Held for the whole run: a reload meanwhile does not change what this command runs.
        let plugin = loaded.plugins[index].clone();
        drop(loaded);
        let spec = plugin.commands.iter().find(|c| c.name == cmd.name).expect("the index names the plugin's command");
        if let Some(schema) = &spec.input {
            let violations = schema.violations(&cmd.payload);
            if !violations.is_empty() {
                return Err(Fault::InvalidInput {
                    command: cmd.name.clone(),
                    message: format!(
                        "not run: the payload does not fit the input-schema of plugin {}: {}",
                        plugin.name,
                        violations.join("; ")
                    ),
                });
            }
        }
        // Two bounds. The wall clock's, around the whole run: the step's timeout, and never
        // past the command's deadline. The CPU time's, the epoch deadline: the same, capped
        // at `max_deadline`, and not counting time blocked in calls to the orchestrator. For
        // a plugin that makes no such call (every 0.1.0 plugin) the second is what bounded a
        // run before the first existed, and comes first.
        let step = match cmd.timeout_ms {
            0 => self.config.max_deadline,
            ms => Duration::from_millis(ms),
        };
        let mut deadline = step;
        if cmd.deadline_ms != 0 {
            // Past the deadline nobody waits for the answer: an effect then would go unseen.
            deadline = deadline.min(Duration::from_millis(cmd.deadline_ms.saturating_sub(now)));
        }
        // Room in the memory budget for the whole of this command's limit, before it starts:
        // then a running command never waits for memory, so commands cannot deadlock on it.
        let asked = Instant::now();
        let memory = plugin.manifest.limits.memory.unwrap_or(self.config.memory_limit);
        let max_cpu = plugin.manifest.limits.cpu.unwrap_or(self.config.max_deadline);
        // Held until the instance is gone: declared before the store, so dropped after it.
        let _room = match tokio::time::timeout(
            deadline,
            self.budget.clone().acquire_many_owned(command_mib(&self.config, memory)),
        )
        .await
        {
            Ok(permit) => permit.expect("the budget is never closed"),
            Err(_) => {
                return Err(Fault::NoMemory {
                    command: cmd.name.clone(),
                    waited: asked.elapsed(),
                    budget_mib: budget_mib(&self.config),
                    limit_mib: memory >> 20,
                });
            }
        };
        let deadline = deadline.saturating_sub(asked.elapsed());
        let cpu = deadline.min(max_cpu);
        let payload = serde_json::to_string(&cmd.payload).map_err(|e| Fault::InvalidInput {
            command: cmd.name.clone(),
            message: format!("payload is not serialisable: {e}"),
        })?;
        let wit_cmd = wit::Command {
            name: cmd.name.clone(),
            payload,
            meta: wit::Meta {
                transaction_id: cmd.meta.transaction_id.clone(),
                correlation_id: cmd.meta.correlation_id.clone(),
                idempotency_key: cmd.meta.idempotency_key.clone(),
                step: cmd.meta.step.clone(),
                attempt: cmd.meta.attempt,
                traceparent: cmd.meta.traceparent.clone(),
            },
        };
        let mut store = self.store(cpu, Some(cmd.meta.clone()), &plugin.name, &plugin.manifest);
        let Ok(result) = tokio::time::timeout(deadline, plugin.pre.handle(&mut store, &wit_cmd, &plugin.name)).await
        else {
            // Dropping the call unwinds the instance's fiber; the store goes with it.
            if let Some(call) = store.data().sagas.waiting() {
                tracing::info!(command = %cmd.name, "stopped at the step's timeout while waiting in {call}");
            }
            return Err(Fault::Timeout { plugin: plugin.name.clone(), command: cmd.name.clone(), deadline: step });
        };
        match result {
            Ok(Ok(json)) => match serde_json::from_str(&json) {
                Ok(value) => match spec.output.as_ref().map(|s| s.violations(&value)).filter(|v| !v.is_empty()) {
                    None => Ok(Outcome::Ok(value)),
                    Some(violations) => Err(Fault::InvalidOutput {
                        plugin: plugin.name.clone(),
                        command: cmd.name.clone(),
                        message: format!("it does not fit the plugin's output-schema: {}", violations.join("; ")),
                    }),
                },
                Err(e) => Err(Fault::InvalidOutput {
                    plugin: plugin.name.clone(),
                    command: cmd.name.clone(),
                    message: format!("the result is not JSON: {e}"),
                }),
            },
            Ok(Err(f)) => Ok(Outcome::Err(Failure { code: f.code, message: f.message, retryable: f.retryable })),
            // The message names the step's timeout (or the CPU time's cap, when that is what
            // stopped it), even when the run was cut to what was left of the deadline after a
            // wait for a slot.
            Err(e) => Err(self.fault(&plugin.name, &cmd.name, e, &store, step.min(max_cpu))),
        }
    }

    /// What a failed call came to: which plugin, which command, what happened. The kind is
    /// read off the error's type and the store's state, never off a message's wording.
    fn fault(
        &self,
        plugin: &str,
        command: &str,
        e: wasmtime::Error,
        store: &Store<HostState>,
        deadline: Duration,
    ) -> Fault {
        let (plugin, command) = (plugin.to_owned(), command.to_owned());
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return Fault::Timeout { plugin, command, deadline };
        }
        if store.data().limiter.hit {
            return Fault::OutOfMemory { plugin, command, limit_mib: store.data().limiter.max >> 20 };
        }
        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return Fault::HostBusy { command, slots: self.config.max_instances };
        }
        let output = String::from_utf8_lossy(&store.data().output.contents()).into_owned();
        if let Some(message) = panic_message(&output) {
            return Fault::Panicked { plugin, command, message };
        }
        Fault::Trapped { plugin, command, message: root_message(&anyhow::Error::from(e)) }
    }
}

/// Why the host could not get an answer from a plugin. Each kind is one of the contract's
/// failure codes ([`crate::protocol::codes`]) and knows whether a retry can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The deadline (the step's timeout) passed, or the instance used up its CPU time, and
    /// it was stopped.
    #[error("plugin {plugin} did not finish {command} within its deadline of {} and was stopped", crate::workflow::duration::format(*deadline))]
    Timeout { plugin: String, command: String, deadline: Duration },
    /// The instance tried to grow its memory past the limit.
    #[error("plugin {plugin} ran out of memory running {command}: it reached its limit of {limit_mib} MiB")]
    OutOfMemory { plugin: String, command: String, limit_mib: usize },
    /// The plugin panicked; `message` is its panic message and location.
    #[error("plugin {plugin} panicked running {command}: {message}")]
    Panicked { plugin: String, command: String, message: String },
    /// Any other trap.
    #[error("plugin {plugin} trapped running {command}: {message}")]
    Trapped { plugin: String, command: String, message: String },
    /// Every instance slot was in use.
    #[error("host busy: all {slots} instance slots are in use; {command} will be retried")]
    HostBusy { command: String, slots: u32 },
    /// The memory budget had no room for the command's limit before its deadline.
    #[error("host busy: {command} waited {} for room in the host's memory budget of {budget_mib} MiB (each command holds its limit of {limit_mib} MiB while it runs) and did not start; raise --memory-budget-mb or lower --memory-limit-mb", crate::workflow::duration::format(*waited))]
    NoMemory { command: String, waited: Duration, budget_mib: u32, limit_mib: usize },
    /// The payload could not be handed to the plugin.
    #[error("{command}: {message}")]
    InvalidInput { command: String, message: String },
    /// The plugin answered with something that is not JSON.
    #[error("plugin {plugin} returned a result for {command} that is not valid: {message}")]
    InvalidOutput { plugin: String, command: String, message: String },
    /// No loaded plugin handles the command.
    #[error("no plugin handles command {command:?} (loaded: {loaded})")]
    UnknownCommand { command: String, loaded: String },
}

impl Fault {
    /// The failure code a step ends with.
    pub fn code(&self) -> &'static str {
        use crate::protocol::codes;
        match self {
            Fault::Timeout { .. } => codes::TIMEOUT,
            Fault::OutOfMemory { .. } => codes::OUT_OF_MEMORY,
            Fault::Panicked { .. } => codes::PLUGIN_PANICKED,
            Fault::Trapped { .. } => codes::PLUGIN_TRAPPED,
            Fault::HostBusy { .. } | Fault::NoMemory { .. } => codes::HOST_BUSY,
            Fault::InvalidInput { .. } => codes::INVALID_INPUT,
            Fault::InvalidOutput { .. } => codes::INVALID_OUTPUT,
            Fault::UnknownCommand { .. } => codes::UNKNOWN_COMMAND,
        }
    }

    /// The plugin and the kind, when the run ended in a trap (what `baton_plugin_traps_total`
    /// counts): stopped at its deadline, out of memory, a panic, another trap, or a result
    /// that is not valid.
    pub fn trap(&self) -> Option<(&str, &'static str)> {
        match self {
            Fault::Timeout { plugin, .. } => Some((plugin, "timeout")),
            Fault::OutOfMemory { plugin, .. } => Some((plugin, "out_of_memory")),
            Fault::Panicked { plugin, .. } => Some((plugin, "panicked")),
            Fault::Trapped { plugin, .. } => Some((plugin, "trapped")),
            Fault::InvalidOutput { plugin, .. } => Some((plugin, "invalid_output")),
            _ => None,
        }
    }

    /// True when trying the same command again may succeed: a deadline or a full host are
    /// circumstances; a panic, a trap or bad data will happen again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Fault::Timeout { .. } | Fault::HostBusy { .. } | Fault::NoMemory { .. })
    }

    /// The failure recorded on the step and sent back to the orchestrator.
    pub fn into_failure(self) -> Failure {
        Failure { code: self.code().to_owned(), message: self.to_string(), retryable: self.is_retryable() }
    }
}

/// `panicked at src/lib.rs:3:5:\nthe message` -> `the message (at src/lib.rs:3:5)`.
fn panic_message(output: &str) -> Option<String> {
    let start = output.find("panicked at ")?;
    let rest = &output[start + "panicked at ".len()..];
    let (location, message) = rest.split_once('\n').unwrap_or((rest, ""));
    let message: Vec<&str> = message.lines().take_while(|l| !l.starts_with("note: run with")).collect();
    Some(format!("{} (at {})", message.join(" ").trim(), location.trim_end_matches(':')))
}

/// The error chain on one line. wasmtime's parse errors can span lines (byte dumps); the
/// first line of each cause says what matters.
fn root_message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = e
        .chain()
        .map(|c| {
            let text = c.to_string();
            if text.contains("magic header not detected") {
                return "it does not start with the WebAssembly magic bytes".to_owned();
            }
            text.lines().next().unwrap_or_default().to_owned()
        })
        .collect();
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(input: Option<&str>, output: Option<&str>) -> wit::CommandSpec {
        wit::CommandSpec {
            name: "p.cmd".to_owned(),
            input_schema: input.map(str::to_owned),
            output_schema: output.map(str::to_owned),
        }
    }

    #[test]
    fn a_described_schema_is_compiled_or_refused_by_name() {
        let ok = CommandSpec::described("p", spec(Some(r#"{"type": "object"}"#), None)).unwrap();
        assert!(ok.input.is_some() && ok.output.is_none());
        let e = CommandSpec::described("p", spec(Some("{not json"), None)).unwrap_err();
        assert!(e.contains("plugin p") && e.contains("input-schema") && e.contains("not JSON"), "{e}");
        let e = CommandSpec::described("p", spec(None, Some(r#"{"type": 5}"#))).unwrap_err();
        assert!(e.contains("output-schema") && e.contains("not a valid JSON Schema") && e.contains("\"p.cmd\""), "{e}");
    }
}
