//! The long-lived host (`baton serve`), in one place that the binary and the tests share.
//!
//! [`Config`] says what to run; [`build`] turns it into a [`Host`] (plugins loaded, workflows
//! read, store and bus connected); [`run`] serves the HTTP API on a listener the caller bound,
//! drives the orchestrator and the worker pool, and stops gracefully when `shutdown`
//! completes. `main` binds `--listen` and waits for SIGINT/SIGTERM; tests bind `127.0.0.1:0`
//! and stop the host with a channel, in process, so no test races another for a port.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;

use crate::bus::EventBus;
use crate::bus::memory::MemoryBus;
use crate::bus::redis_streams::StreamsConfig;
pub use crate::node::Role;
use crate::node::{Node, Parts};
use crate::orchestrator::SystemClock;
use crate::runtime::worker::WorkerConfig;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::SagaStore;
use crate::workflow;

/// How commands and results travel in Redis mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Streams with consumer groups: persistent, acknowledged, redelivered (the default).
    RedisStreams,
    /// Pub/Sub: nothing persisted; lost messages are resent after the step timeout.
    RedisPubsub,
}

/// Everything a host is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of `*.wasm` worker plugins.
    pub plugins: PathBuf,
    /// Directory of `*.toml` workflows.
    pub workflows: PathBuf,
    pub runtime: RuntimeConfig,
    /// Distributed mode's Redis; `None`: embedded.
    pub redis: Option<String>,
    pub transport: Transport,
    /// Redis key prefix.
    pub prefix: String,
    /// Embedded mode's data directory.
    pub data: PathBuf,
    pub role: Role,
    /// Commands the worker pool runs at once.
    pub concurrency: usize,
    pub streams: StreamsConfig,
    /// How long finished sagas are kept; `None`: forever.
    pub retain: Option<Duration>,
}

impl Config {
    /// An embedded host over these plugins and workflows, with the defaults of `baton serve`.
    pub fn embedded(plugins: PathBuf, workflows: PathBuf, data: PathBuf) -> Config {
        Config {
            plugins,
            workflows,
            runtime: RuntimeConfig::default(),
            redis: None,
            transport: Transport::RedisStreams,
            prefix: "baton".to_owned(),
            data,
            role: Role::All,
            concurrency: WorkerConfig::default().concurrency,
            streams: StreamsConfig::default(),
            retain: Some(DEFAULT_RETAIN),
        }
    }
}

/// How long finished sagas are kept unless `--retain` says otherwise.
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(7 * 86_400);

/// A host ready to run: its parts, and what it is, for the log.
pub struct Host {
    parts: Parts,
    role: Role,
    /// "embedded, data in .baton" / "distributed, Redis ...".
    mode: String,
}

/// Load the plugins and workflows and connect the store and the bus. Plugins and workflows
/// that fail to load are reported on stderr and left out; a store or bus that cannot be
/// reached is an error.
pub async fn build(config: &Config) -> anyhow::Result<Host> {
    let role = config.role;
    if config.redis.is_none() && role != Role::All {
        bail!("--role {role:?} needs --redis: an embedded host must both orchestrate and work");
    }
    let runtime = if role.works() {
        let mut runtime = Runtime::new(config.runtime.clone())?;
        for e in runtime.load_dir(&config.plugins).await? {
            eprintln!("warning: plugin not loaded: {e}");
        }
        Some(Arc::new(runtime))
    } else {
        None
    };
    // Embedded, this host runs every command, so a workflow naming a command no plugin here
    // handles cannot run and is not loaded. Distributed, other hosts' workers may handle it
    // (worker pools scale apart): the workflow is loaded, and the commands no plugin here
    // handles are named, so a typo still shows.
    let known = runtime.as_ref().map(|r| r.command_names());
    let strict = if config.redis.is_none() { known.as_deref() } else { None };
    let (catalog, errors) = workflow::load_dir(&config.workflows, strict)
        .with_context(|| format!("cannot read the workflow directory {}", config.workflows.display()))?;
    for e in &errors {
        eprintln!("warning: workflow not loaded: {e}");
    }
    if let (Some(known), Some(_), true) = (&known, &config.redis, role.orchestrates()) {
        for wf in catalog.workflows.values() {
            if let Err(unhandled) = workflow::check_commands(wf, known) {
                for e in unhandled.0 {
                    eprintln!("note: {e}; another host's workers must handle it");
                }
            }
        }
    }
    let (store, bus, mode): (Arc<dyn SagaStore>, Arc<dyn EventBus>, String) = match &config.redis {
        Some(url) => {
            let prefix = &config.prefix;
            let store = crate::store::redis::RedisStore::connect(url, prefix).await?;
            let (store, bus): (_, Arc<dyn EventBus>) = match config.transport {
                // The store appends commands to their streams in the commit itself.
                Transport::RedisStreams => (
                    store.with_outbox(crate::bus::redis_streams::outbox_encoder(prefix)),
                    Arc::new(
                        crate::bus::redis_streams::RedisStreamsBus::connect(url, prefix, config.streams.clone())
                            .await?,
                    ),
                ),
                Transport::RedisPubsub => {
                    (store, Arc::new(crate::bus::redis_pubsub::RedisPubSubBus::connect(url, prefix).await?))
                }
            };
            let shown = crate::store::redis::redact(url);
            (Arc::new(store), bus, format!("distributed, Redis {shown}, {:?}, prefix {prefix:?}", config.transport))
        }
        None => {
            let store = crate::store::embedded::EmbeddedStore::open(&config.data)?;
            (Arc::new(store), Arc::new(MemoryBus::new()), format!("embedded, data in {}", config.data.display()))
        }
    };
    let parts = Parts {
        workflows: catalog,
        runtime,
        bus,
        store,
        clock: Arc::new(SystemClock),
        worker: WorkerConfig { concurrency: config.concurrency },
        retain: config.retain,
    };
    Ok(Host { parts, role, mode })
}

/// Serve `host` on `listener` until `shutdown` completes, then stop taking work, let what is
/// in flight finish, and return.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    host: Host,
) -> anyhow::Result<()> {
    let Host { parts, role, mode } = host;
    let node = Node::start(parts, role);
    let addr = listener.local_addr()?;
    // A worker-only host serves its health check alone: it holds no saga to show.
    let router =
        if role.orchestrates() { crate::api::router(node.orchestrator.clone()) } else { crate::api::health_router() };
    eprintln!("baton: serving on http://{addr} ({mode}, role {role:?})");
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped_rx.await;
            })
            .await
    });
    shutdown.await;
    eprintln!("baton: stopping");
    let _ = stopped_tx.send(());
    api.await??;
    node.shutdown().await?;
    Ok(())
}
