//! The long-lived host (`baton serve`), in one place that the binary and the tests share.
//!
//! [`Config`] says what to run; [`build`] turns it into a [`Host`] (plugins loaded, workflows
//! read, store and bus connected); [`run`] serves the HTTP API on a listener the caller bound,
//! drives the orchestrator and the worker pool, and stops gracefully when `shutdown`
//! completes. `main` binds `--listen` and waits for SIGINT/SIGTERM; tests bind `127.0.0.1:0`
//! and stop the host with a channel, in process, so no test races another for a port.
//!
//! # Who may talk to it
//!
//! With [`Config::token`] every route but `GET /healthz` requires `Authorization: Bearer
//! <token>` (see [`crate::api::require_token`]). Without one, [`run`] serves only on a
//! loopback address (127.0.0.0/8, `::1`): a host reachable from other machines with no token
//! would let anyone there start, cancel and read sagas. [`Config::insecure`] lifts that rule
//! (behind a proxy that authenticates, say), with a warning in the log.

use std::future::Future;
use std::net::SocketAddr;
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
    /// Prefixes of other deployments on the same Redis whose commands this host's `handles`
    /// workflows answer.
    pub answer_for: Vec<String>,
    /// Embedded mode's data directory.
    pub data: PathBuf,
    pub role: Role,
    /// The worker pools: commands each plugin runs at once.
    pub worker: WorkerConfig,
    pub streams: StreamsConfig,
    /// How long finished sagas are kept; `None`: forever.
    pub retain: Option<Duration>,
    /// The bearer token every API request but `GET /healthz` must carry; `None`: none, and
    /// then the host serves on loopback addresses only (unless `insecure`).
    pub token: Option<crate::api::Token>,
    /// Serve without a token on an address other machines can reach.
    pub insecure: bool,
    /// A PEM file of CA certificates to check a `rediss://` server against, instead of the
    /// built-in roots (a private or self-signed certificate).
    pub redis_ca: Option<PathBuf>,
    /// Load plugins and workflows added or changed while the host runs ([`crate::reload`]).
    pub reload: bool,
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
            answer_for: Vec::new(),
            data,
            role: Role::All,
            worker: WorkerConfig::default(),
            streams: StreamsConfig::default(),
            retain: Some(DEFAULT_RETAIN),
            token: None,
            insecure: false,
            redis_ca: None,
            reload: true,
        }
    }
}

/// Whether a host may serve on `addr`: yes on a loopback address (127.0.0.0/8, `::1`), or
/// with a token, or when `insecure` says so; otherwise an error that says what to do.
pub fn check_listen(addr: SocketAddr, token: bool, insecure: bool) -> anyhow::Result<()> {
    if token || insecure || is_loopback(addr) {
        return Ok(());
    }
    bail!(
        "refusing to serve on {addr} without a token: any machine that reaches it could start, cancel and read sagas. Set a token with --token (or BATON_TOKEN, or --token-file), listen on 127.0.0.1, or pass --insecure if something in front of this host authenticates every request"
    )
}

fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        // `::ffff:127.0.0.1` is loopback too.
        std::net::IpAddr::V6(ip) => ip.to_canonical().is_loopback(),
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
    token: Option<crate::api::Token>,
    insecure: bool,
    /// The directories to watch for changes, and whether the bus is shared; `None`: no reload.
    reload: Option<(PathBuf, PathBuf, bool)>,
}

/// Load the plugins and workflows and connect the store and the bus. Plugins and workflows
/// that fail to load are reported on stderr and left out; a store or bus that cannot be
/// reached is an error.
pub async fn build(config: &Config) -> anyhow::Result<Host> {
    let role = config.role;
    if config.redis.is_none() && role != Role::All {
        bail!("--role {role:?} needs --redis: an embedded host must both orchestrate and work");
    }
    let token = config.token.clone();
    if let Some(path) = &config.redis_ca {
        let Some(url) = config.redis.as_deref() else {
            bail!("--redis-ca {} needs --redis: it is the CA of a Redis reached over TLS", path.display());
        };
        if !crate::redis_conn::is_tls(url) {
            bail!(
                "--redis-ca {} applies to TLS only, and {} is not a TLS URL: write rediss://",
                path.display(),
                crate::store::redis::redact(url)
            );
        }
        let pem = std::fs::read(path).with_context(|| {
            format!("cannot read the --redis-ca file {} (a PEM file of CA certificates)", path.display())
        })?;
        use rustls::pki_types::pem::PemObject as _;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .with_context(|| format!("the --redis-ca file {} is not valid PEM", path.display()))?;
        if certs.is_empty() {
            bail!(
                "the --redis-ca file {} holds no certificate: give a PEM file with one or more `-----BEGIN CERTIFICATE-----` blocks",
                path.display()
            );
        }
        crate::redis_conn::trust_ca(url, pem);
    }
    if let Some(url) = config.redis.as_deref().filter(|u| crate::redis_conn::is_tls(u) && u.ends_with("#insecure")) {
        tracing::warn!(
            "WARNING: {} ends in #insecure: the Redis server's certificate is not checked, so anyone on the network path can pose as it and read or change every saga; give its CA with --redis-ca instead",
            crate::store::redis::redact(url)
        );
    }
    let runtime = if role.works() {
        let runtime = Runtime::new(config.runtime.clone())?;
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
    let (catalog, errors) = load_workflows(&config.workflows, runtime.as_deref(), config.redis.is_some())?;
    for e in &errors {
        eprintln!("warning: workflow not loaded: {e}");
    }
    note_external(&catalog, config.redis.is_some());
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
        None if !config.answer_for.is_empty() => {
            bail!("--answer-for needs --redis: another deployment reaches this host's workflows through a shared Redis")
        }
        None => {
            let store = crate::store::embedded::EmbeddedStore::open(&config.data)?;
            (Arc::new(store), Arc::new(MemoryBus::new()), format!("embedded, data in {}", config.data.display()))
        }
    };
    let mut deployments: Vec<(String, Arc<dyn EventBus>)> = Vec::new();
    if let Some(url) = &config.redis {
        for prefix in &config.answer_for {
            if *prefix == config.prefix {
                bail!("--answer-for {prefix:?} is this host's own prefix: it answers its own deployment anyway");
            }
            let bus: Arc<dyn EventBus> = match config.transport {
                Transport::RedisStreams => Arc::new(
                    crate::bus::redis_streams::RedisStreamsBus::connect(url, prefix, config.streams.clone()).await?,
                ),
                Transport::RedisPubsub => {
                    Arc::new(crate::bus::redis_pubsub::RedisPubSubBus::connect(url, prefix).await?)
                }
            };
            deployments.push((prefix.clone(), bus));
        }
    }
    let parts = Parts {
        workflows: catalog,
        runtime,
        bus,
        store,
        clock: Arc::new(SystemClock),
        worker: config.worker.clone(),
        retain: config.retain,
        deployments,
    };
    let reload = config.reload.then(|| (config.plugins.clone(), config.workflows.clone(), config.redis.is_some()));
    Ok(Host { parts, role, mode, token, insecure: config.insecure, reload })
}

/// The workflows of `dir` a host with `runtime`'s plugins runs, and the problems of those it
/// leaves out. Embedded, this host runs every command, so a workflow naming a command no
/// plugin here handles cannot run and is not loaded. Distributed, other hosts' workers may
/// handle it (worker pools scale apart): the workflow is loaded. With plugins, the steps'
/// payloads are checked against their schemas ([`workflow::fit`]), and a workflow declaring
/// external a command a loaded plugin handles is refused, here as in `baton check`.
pub(crate) fn load_workflows(
    dir: &std::path::Path,
    runtime: Option<&Runtime>,
    distributed: bool,
) -> anyhow::Result<(workflow::Catalog, Vec<workflow::DefinitionError>)> {
    let known = runtime.map(|r| r.command_names());
    let strict = if distributed { None } else { known.as_deref() };
    let (mut catalog, mut errors) = workflow::load_dir(dir, strict)
        .with_context(|| format!("cannot read the workflow directory {}", dir.display()))?;
    if let Some(runtime) = runtime {
        errors.extend(workflow::fit::check(&mut catalog, &runtime.schemas()));
    }
    if let Some(known) = &known {
        catalog.workflows.retain(|_, wf| match workflow::external::check_conflicts(wf, known) {
            Ok(()) => true,
            Err(e) => {
                errors.extend(e.0);
                false
            }
        });
    }
    Ok((catalog, errors))
}

/// Embedded, no outside worker can reach the in-process bus: a workflow that sends external
/// commands loads, so that a start is refused with a message that says what to do (logged
/// here, at `info`).
fn note_external(catalog: &workflow::Catalog, distributed: bool) {
    if !distributed {
        for wf in catalog.workflows.values() {
            let external = wf.external_commands();
            if !external.is_empty() {
                tracing::info!(
                    "workflow {:?} sends {}, declared external: no worker outside this host can reach the in-process bus of embedded mode, so its sagas are refused at start; serve with --redis URL to run them",
                    wf.name,
                    external.join(", ")
                );
            }
        }
    }
}

/// Serve `host` on `listener` until `shutdown` completes, then stop taking work, let what is
/// in flight finish, and return.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    host: Host,
) -> anyhow::Result<()> {
    let Host { parts, role, mode, token, insecure, reload } = host;
    crate::observe::metrics::install();
    let addr = listener.local_addr()?;
    check_listen(addr, token.is_some(), insecure)?;
    if token.is_none() && !is_loopback(addr) {
        tracing::warn!(
            "WARNING: serving on {addr} with no token (--insecure): anyone who reaches this address can start, cancel and read sagas; set --token unless something in front authenticates every request"
        );
    }
    let backends =
        crate::api::Backends { store: parts.store.clone(), bus: parts.bus.clone(), runtime: parts.runtime.clone() };
    let runtime = parts.runtime.clone();
    let node = Node::start(parts, role);
    let (stop_watch, watch_stopped) = tokio::sync::watch::channel(false);
    let stopping = watch_stopped.clone();
    let watcher = reload.map(|(plugins, workflows, distributed)| {
        let orchestrator = role.orchestrates().then(|| node.orchestrator.clone());
        let w = crate::reload::Watch { plugins, workflows, runtime, orchestrator, distributed };
        tokio::spawn(crate::reload::run(w, watch_stopped))
    });
    // A worker-only host serves its probes alone: it holds no saga to show.
    let router = if role.orchestrates() {
        crate::api::router(node.orchestrator.clone(), backends, token.clone(), stopping)
    } else {
        crate::api::health_router(backends, token.clone())
    };
    let auth = if token.is_some() { "token required" } else { "no token" };
    eprintln!("baton: serving on http://{addr} ({mode}, role {role:?}, {auth})");
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
    let _ = stop_watch.send(true);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let _ = stopped_tx.send(());
    api.await??;
    node.shutdown().await?;
    Ok(())
}
