//! The `baton` command line: argument parsing and wiring, nothing else.
//!
//! Exit codes of `baton run`: 0 `completed`, 2 `compensated`, 3 `failed`, 4 waiting for a
//! signal nothing can send, 1 for usage or definition errors. Other commands exit 0 on success and 1 on any problem
//! (a server that refuses the token included).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::bus::memory::MemoryBus;
use crate::model::SagaStatus;
use crate::node::{Node, Parts, Role};
use crate::orchestrator::SystemClock;
use crate::runtime::worker::WorkerConfig;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::memory::MemoryStore;
use crate::workflow::{self, Catalog};

/// Where `cd plugins && cargo build --release --target wasm32-wasip2` puts the example plugins, so that from the
/// repository root `baton run order ...` needs no flag.
pub const DEFAULT_PLUGINS: &str = "plugins/target/wasm32-wasip2/release";
pub const DEFAULT_WORKFLOWS: &str = "workflows";

#[derive(Parser, Debug)]
#[command(name = "baton", version, about = "A saga orchestrator with WebAssembly workers")]
pub struct Cli {
    /// Directory of worker plugins (*.wasm).
    #[arg(long, global = true, env = "BATON_PLUGINS", default_value = DEFAULT_PLUGINS)]
    pub plugins: PathBuf,

    /// Directory of workflow definitions (*.toml).
    #[arg(long, global = true, env = "BATON_WORKFLOWS", default_value = DEFAULT_WORKFLOWS)]
    pub workflows: PathBuf,

    /// Where compiled plugins are cached [default: ~/.cache/baton/components].
    #[arg(long, global = true, env = "BATON_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Do not read or write the compiled-plugin cache.
    #[arg(long, global = true, env = "BATON_NO_CACHE")]
    pub no_cache: bool,

    /// Most memory one command's plugin instance may use, in MiB.
    #[arg(long, global = true, env = "BATON_MEMORY_LIMIT_MB", default_value_t = 64)]
    pub memory_limit_mb: usize,

    /// Most memory all plugin instances may hold together, in MiB [default: a quarter of the
    /// machine's memory, at least 256]. A command starts once its --memory-limit-mb fits in
    /// what is left; until then it waits.
    #[arg(long, global = true, env = "BATON_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<usize>,

    /// Most plugin instances alive at once (the sandbox's pooled slots). Each slot reserves
    /// address space up front (8 GiB, none of it memory until used); a small pool lets the
    /// host start under tools that cap address space, such as valgrind.
    #[arg(long, global = true, env = "BATON_MAX_INSTANCES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instances: u32,

    /// Log filter, e.g. `info` or `baton=debug` (logs go to stderr).
    #[arg(long, global = true, env = "BATON_LOG", default_value = "warn")]
    pub log: String,

    /// Export traces over OTLP/HTTP to this collector (a base URL such as
    /// http://127.0.0.1:4318; /v1/traces is added) [default: from OTEL_EXPORTER_OTLP_ENDPOINT
    /// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; unset: no traces].
    #[arg(long, global = true, value_name = "URL")]
    pub otlp: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// What `baton new` makes.
#[derive(Subcommand, Debug)]
pub enum New {
    /// A worker, DIR/NAME, with one command `NAME.hello` (its schemas declared) and its tests.
    Worker {
        name: String,
        /// Its language: a Rust crate, a Python module or a JavaScript module.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// Where it goes.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// The guest SDK it uses (its directory) [default: guest-sdk/<lang> of the repository
        /// it is made in, else the published SDK].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// A workflow, <workflows>/NAME.toml, whose one step sends COMMAND, and its test cases in
    /// <workflows>/tests/NAME.test.toml.
    Workflow {
        name: String,
        /// The command its step sends [default: NAME.hello, what `baton new worker NAME` makes].
        #[arg(long)]
        command: Option<String>,
    },
}

/// The API token: what `baton serve` requires and what the commands that talk to it send.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TokenArgs {
    /// The API token. `baton serve` then requires `Authorization: Bearer TOKEN` on every
    /// request but GET /healthz; the commands that talk to a server send it. Prefer
    /// BATON_TOKEN or --token-file: a command line is visible to every user of the machine.
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the API token from this file (its contents, trimmed), as --token would take it.
    #[arg(long, env = "BATON_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, from `--token` or the file of `--token-file`; `None` when neither is given.
    pub fn read(&self) -> anyhow::Result<Option<String>> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                bail!("give the token once: --token (or BATON_TOKEN), or --token-file (or BATON_TOKEN_FILE), not both")
            }
            (Some(token), None) => {
                let token = token.trim();
                if token.is_empty() {
                    bail!("--token (or BATON_TOKEN) is empty: give the token, or leave it out");
                }
                Ok(Some(token.to_owned()))
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the token file {} (--token-file): does it exist, and may this user read it?",
                        path.display()
                    )
                })?;
                let token = text.trim();
                if token.is_empty() {
                    bail!("the token file {} (--token-file) is empty: write the token in it", path.display());
                }
                Ok(Some(token.to_owned()))
            }
            (None, None) => Ok(None),
        }
    }

    /// [`TokenArgs::read`], checked: a token that can travel in an `Authorization` header.
    pub fn token(&self) -> anyhow::Result<Option<crate::api::Token>> {
        self.read()?.map(|t| crate::api::Token::new(&t)).transpose().map_err(anyhow::Error::msg)
    }
}

/// Where a command finds a running `baton serve`: its URL and its token.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The running `baton serve` to talk to.
    #[arg(long, env = "BATON_SERVER", default_value = "http://127.0.0.1:7600")]
    pub server: String,
    #[command(flatten)]
    pub auth: TokenArgs,
}

/// How long finished sagas are kept: a duration, or `forever`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retain(pub Option<std::time::Duration>);

fn parse_retain(text: &str) -> Result<Retain, String> {
    if text.trim() == "forever" {
        return Ok(Retain(None));
    }
    let d = workflow::duration::parse_at_most(text, MAX_RETAIN)?;
    if d < MIN_RETAIN {
        return Err(format!(
            "{text:?} is too short: finished sagas are kept at least {} (or `forever`)",
            workflow::duration::format(MIN_RETAIN)
        ));
    }
    Ok(Retain(Some(d)))
}

/// Shortest `--retain`: a finished saga stays readable for at least this long, so a client
/// that waits for its end can still read it.
pub const MIN_RETAIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest `--retain` short of `forever`: ten years.
pub const MAX_RETAIN: std::time::Duration = std::time::Duration::from_secs(3_650 * 86_400);

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one saga in this process, to its end, and print it: a line per step on a
    /// terminal, the JSON record with --json or when piped.
    ///
    /// Signals given with --signal are sent in order right after the start (a wait takes the
    /// oldest of its name). When the saga waits for a signal with none queued and stdin is a
    /// terminal, it asks for the payload.
    ///
    /// Exit code: 0 completed, 2 compensated, 3 failed, 4 stuck waiting for a signal that
    /// cannot come, 1 usage or definition error.
    Run {
        /// The workflow's name (its `name = ...`).
        workflow: String,
        /// The saga's input: JSON text, or @FILE to read it from a file.
        #[arg(long)]
        input: String,
        /// The saga's id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        /// A signal to send: NAME=JSON (or NAME=@FILE). Repeat it; they are queued in order.
        #[arg(long = "signal", value_name = "NAME=JSON")]
        signals: Vec<String>,
        /// Print the JSON record even on a terminal.
        #[arg(long)]
        json: bool,
    },
    /// Run a long-lived host: embedded (durable store on local disk) or, with --redis,
    /// distributed (store and bus in Redis, shared with other hosts).
    Serve {
        /// Redis URL for distributed mode, e.g. redis://127.0.0.1:6379. Without it: embedded.
        #[arg(long, env = "BATON_REDIS")]
        redis: Option<String>,
        /// How commands and results travel in Redis mode. redis-pubsub has the lowest latency
        /// but keeps nothing: see the README before choosing it.
        #[arg(long, value_enum, env = "BATON_TRANSPORT", default_value = "redis-streams")]
        transport: crate::serve::Transport,
        /// Key prefix in Redis, so several deployments can share one Redis.
        #[arg(long, env = "BATON_PREFIX", default_value = "baton")]
        prefix: String,
        /// Also answer the commands of the deployment under this prefix (same Redis) that
        /// this host's workflows `handles`, replying on that deployment's bus. Repeatable.
        #[arg(long = "answer-for", value_name = "PREFIX")]
        answer_for: Vec<String>,
        /// Data directory of embedded mode.
        #[arg(long, env = "BATON_DATA", default_value = ".baton")]
        data: PathBuf,
        /// Address of the HTTP API.
        #[arg(long, env = "BATON_LISTEN", default_value = "127.0.0.1:7600")]
        listen: String,
        /// What this host does: all, orchestrator (drives sagas, serves the API) or worker
        /// (runs plugins only).
        #[arg(long, value_enum, env = "BATON_ROLE", default_value = "all")]
        role: Role,
        /// Commands one plugin runs at once. Each plugin has slots of its own: one that loops
        /// or waits never takes another's.
        #[arg(long, env = "BATON_CONCURRENCY", default_value_t = crate::runtime::worker::DEFAULT_CONCURRENCY)]
        concurrency: usize,
        /// The slots of one plugin, overriding --concurrency for it: NAME=N (the plugin's
        /// file name without .wasm). Repeat for several.
        #[arg(long = "plugin-concurrency", value_name = "NAME=N", value_parser = parse_plugin_concurrency)]
        plugin_concurrency: Vec<(String, usize)>,
        /// Redis mode: how long a message may stay unacknowledged before another host takes
        /// it over (the recovery time after a host dies).
        #[arg(long, env = "BATON_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
        visibility_timeout: std::time::Duration,
        /// How long a finished saga (its record, history and outcome records) is kept after it
        /// ends: a duration such as 7d or 12h, or `forever`.
        #[arg(long, env = "BATON_RETAIN", default_value = "7d", value_parser = parse_retain)]
        retain: Retain,
        #[command(flatten)]
        auth: TokenArgs,
        /// Serve without a token on an address other machines can reach (--listen 0.0.0.0:...),
        /// for a host behind something that authenticates every request. Logged as a warning.
        #[arg(long, env = "BATON_INSECURE")]
        insecure: bool,
        /// A PEM file of CA certificates to check a rediss:// server's certificate against,
        /// instead of the built-in roots: for a Redis with a private or self-signed certificate.
        #[arg(long, env = "BATON_REDIS_CA", value_name = "PATH")]
        redis_ca: Option<PathBuf>,
        /// Do not load plugins and workflows added or changed while the host runs (by default
        /// the host looks at its directories every second and reloads what changed).
        #[arg(long, env = "BATON_NO_RELOAD")]
        no_reload: bool,
    },
    /// Start a saga on a running `baton serve`.
    ///
    /// With --wait, print the final record and exit as `baton run` does (0, 2, 3).
    Start {
        /// The workflow's name.
        workflow: String,
        /// The saga's input: JSON text, or @FILE.
        #[arg(long)]
        input: String,
        /// The saga's id: a retried start with the same id never creates a second saga.
        #[arg(long)]
        id: Option<String>,
        /// Wait for the saga to end.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one saga of a running `baton serve`: a line per step on a terminal, the JSON
    /// record with --json or when piped.
    Status {
        /// The saga's id.
        id: String,
        /// Print the JSON record even on a terminal.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print what happened to a saga of a running `baton serve`, oldest first.
    History {
        /// The saga's id.
        id: String,
        /// Print JSON even on a terminal.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send a signal to a saga of a running `baton serve` (a user's reply, an approval).
    ///
    /// Exit code: 0 accepted, 1 refused (unknown saga, or one that has ended).
    Signal {
        /// The saga's id.
        id: String,
        /// The signal's name (what the workflow's `wait = "..."` waits for).
        name: String,
        /// The payload: JSON text, or @FILE [default: null].
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a running saga of a running `baton serve` and compensate what it did.
    Cancel {
        /// The saga's id.
        id: String,
        /// Why, for the saga's history.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Try the failed compensations of a `failed` saga again, once the cause is fixed.
    Retry {
        /// The saga's id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the sagas of a running `baton serve`, newest first: a table on a terminal, JSON
    /// with --json or when piped.
    List {
        /// Only this status: running, compensating, completed, compensated or failed.
        #[arg(long)]
        status: Option<String>,
        /// At most this many sagas.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON even on a terminal.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Measure throughput and latency: run a host in this process and keep sagas in flight.
    ///
    /// Prints completed sagas per second, end-to-end latency percentiles (start to terminal
    /// state), steps per second, what did not complete and why, and the CPU time used.
    Bench {
        /// The workflow to run.
        workflow: String,
        /// Every saga's input: JSON text, or @FILE.
        #[arg(long)]
        input: String,
        /// Sagas in flight at once.
        #[arg(long, short = 'c', default_value_t = 16)]
        concurrency: usize,
        /// Seconds to measure (after the warm-up).
        #[arg(long, default_value = "10", conflicts_with = "sagas")]
        duration: f64,
        /// Measure this many sagas instead of a duration.
        #[arg(long)]
        sagas: Option<usize>,
        /// Seconds to run before measuring (caches, connections, the allocator).
        #[arg(long, default_value = "2")]
        warmup: f64,
        /// embedded: a durable redb store in a fresh directory; redis: Redis store and Streams.
        #[arg(long, value_enum, default_value = "embedded")]
        mode: crate::bench::Mode,
        /// Redis for --mode redis (a fresh key prefix is used, and deleted afterwards).
        #[arg(long, env = "BATON_REDIS", default_value = "redis://127.0.0.1:6379")]
        redis: String,
        /// Commands each plugin runs at once.
        #[arg(long, default_value_t = crate::runtime::worker::DEFAULT_CONCURRENCY)]
        worker_concurrency: usize,
        /// Data directory for --mode embedded (kept afterwards) [default: a fresh temporary one].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Drive a running `baton serve` at this URL over its HTTP API, instead of a host in
        /// this process (--mode and the plugin flags then do not apply).
        #[arg(long, conflicts_with_all = ["mode", "data"])]
        server: Option<String>,
        #[command(flatten)]
        auth: TokenArgs,
        /// Repeat the measurement this many times (each on a fresh store) and report the
        /// medians.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Record metrics and render them (as a Prometheus scrape of GET /metrics would) every
        /// SECS seconds while measuring: what metrics cost. Without it, metrics are off.
        #[arg(long, value_name = "SECS")]
        scrape: Option<f64>,
        /// Print one JSON object instead of a report.
        #[arg(long)]
        json: bool,
        /// Compare with a baseline: the `--json` output of an earlier run of the same bench
        /// (same workflow, mode and -c), measured in the same sitting. Exits 1 when this run's
        /// throughput is more than --margin percent below the baseline's.
        #[arg(long, value_name = "BASELINE.json")]
        check: Option<PathBuf>,
        /// How far below the baseline's throughput, in percent, still passes --check.
        #[arg(long, value_name = "PCT", default_value_t = 10.0, requires = "check")]
        margin: f64,
    },
    /// Check every workflow against the loaded plugins; list all problems.
    Check,
    /// Run the workflow test cases (<workflows>/tests/*.test.toml) with time skipped: the
    /// recorded answers stand in for the plugins, and no store or bus is needed.
    Test {
        /// Only the cases of this workflow.
        workflow: Option<String>,
        /// Let the loaded plugins answer the commands they handle (the recorded answers
        /// still stand in for the others); timers stay virtual.
        #[arg(long = "with-plugins")]
        with_plugins: bool,
    },
    /// Start a worker or a workflow from a template.
    New {
        #[command(subcommand)]
        what: New,
    },
    /// Run one command of one plugin file through the real sandbox (limits, manifest, schemas)
    /// and print what it answered; without --command, list the plugin's commands.
    TestPlugin {
        /// The plugin (a .wasm file, with its manifest beside it if it has one).
        plugin: PathBuf,
        /// The command to run.
        #[arg(long)]
        command: Option<String>,
        /// Its payload: JSON, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        /// The attempt the command says it is (what `ctx.attempt` reads).
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// List the plugins, their commands and schemas.
    Plugins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            };
        }
    };
    init_tracing(&cli.log);
    if let Some(url) = crate::observe::trace::endpoint(cli.otlp.as_deref())
        && let Err(e) = crate::observe::trace::init(&url)
    {
        eprintln!("error: {e:#}; check --otlp or OTEL_EXPORTER_OTLP_ENDPOINT");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match rt.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    };
    // The last spans (the saga that just ended) go out before the process does.
    crate::observe::trace::shutdown();
    code
}

fn init_tracing(filter: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: --log {filter:?} is not a valid filter ({e}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    });
    // Colours only for a person at a terminal, never in files or CI logs.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run { workflow, input, id, signals, json } => {
            run(&cli, workflow, input, id.clone(), signals, *json).await
        }
        Command::Check => check(&cli).await,
        Command::New { what } => new(&cli, what),
        Command::Test { workflow, with_plugins } => test(&cli, workflow.as_deref(), *with_plugins).await,
        Command::Serve {
            redis,
            transport,
            prefix,
            answer_for,
            data,
            listen,
            role,
            concurrency,
            plugin_concurrency,
            visibility_timeout,
            retain,
            auth,
            insecure,
            redis_ca,
            no_reload,
        } => {
            let config = crate::serve::Config {
                plugins: cli.plugins.clone(),
                workflows: cli.workflows.clone(),
                runtime: runtime_config(&cli),
                redis: redis.clone(),
                transport: *transport,
                prefix: prefix.clone(),
                answer_for: answer_for.clone(),
                data: data.clone(),
                role: *role,
                worker: WorkerConfig {
                    concurrency: *concurrency,
                    per_plugin: plugin_concurrency.iter().cloned().collect(),
                },
                streams: crate::bus::redis_streams::StreamsConfig {
                    visibility_timeout: *visibility_timeout,
                    ..Default::default()
                },
                retain: retain.0,
                token: auth.token()?,
                insecure: *insecure,
                redis_ca: redis_ca.clone(),
                reload: !*no_reload,
            };
            serve(config, listen).await
        }
        Command::Start { workflow, input, id, wait, server } => {
            start(workflow, input, id.clone(), *wait, &client::Server::new(server)?).await
        }
        Command::Status { id, json, server } => {
            let server = &client::Server::new(server)?;
            let saga = client::get(server, &format!("/v1/sagas/{}", client::encode(id))).await?.0;
            if *json || !stdout_is_terminal() {
                print_saga(&saga, true)?;
            } else {
                print_tree(server, &saga, 0).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { id, json, server } => {
            let server = &client::Server::new(server)?;
            let history = client::get(server, &format!("/v1/sagas/{}/history", client::encode(id))).await?.0;
            if *json || !stdout_is_terminal() {
                crate::outln!("{}", serde_json::to_string_pretty(&history)?);
            } else {
                for entry in history.as_array().into_iter().flatten() {
                    crate::outln!("{}", crate::view::history_line(entry));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Signal { id, name, data, server } => {
            let server = &client::Server::new(server)?;
            let payload = match data {
                Some(d) => read_json("--data", d)?,
                None => Value::Null,
            };
            let path = format!("/v1/sagas/{}/signals/{}", client::encode(id), client::encode(name));
            let saga = client::post(server, &path, &payload).await?;
            eprintln!("signal {name:?} accepted by saga {id} (status {})", saga["status"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id, reason, server } => {
            let server = &client::Server::new(server)?;
            let body = serde_json::json!({ "reason": reason.clone().unwrap_or_else(|| "cancelled with baton cancel".to_owned()) });
            let saga = client::post(server, &format!("/v1/sagas/{}/cancel", client::encode(id)), &body).await?;
            match saga["status"].as_str().unwrap_or("?") {
                "compensating" => eprintln!("saga {id} is cancelled: what it did is being undone"),
                status => eprintln!("saga {id} is cancelled and {status}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry { id, server } => {
            let server = &client::Server::new(server)?;
            let saga = client::post(server, &format!("/v1/sagas/{}/retry", client::encode(id)), &Value::Null).await?;
            eprintln!(
                "saga {id} is {}: its failed compensations are being tried again",
                saga["status"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List { status, limit, json, server } => {
            let server = &client::Server::new(server)?;
            let mut path = format!("/v1/sagas?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={}", client::encode(s)));
            }
            let (sagas, retain) = client::get(server, &path).await?;
            if *json || !stdout_is_terminal() {
                crate::outln!("{}", serde_json::to_string_pretty(&sagas)?);
            } else {
                for line in crate::view::list_table(sagas.as_array().map_or(&[][..], |v| v)) {
                    crate::outln!("{line}");
                }
            }
            if let Some(retain) = retain {
                eprintln!("note: the server keeps finished sagas for {retain} after they end (baton serve --retain)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins { json } => plugins(&cli, *json).await,
        Command::TestPlugin { plugin, command, input, attempt } => {
            test_plugin(&cli, plugin, command.as_deref(), input, *attempt).await
        }
        Command::Bench {
            workflow,
            input,
            concurrency,
            duration,
            sagas,
            warmup,
            mode,
            redis,
            worker_concurrency,
            data,
            server,
            auth,
            runs,
            scrape,
            json,
            check,
            margin,
        } => {
            if !(margin.is_finite() && (0.0..100.0).contains(margin)) {
                bail!("--margin must be a percentage from 0 to under 100 (got {margin})");
            }
            // Read before the run, so that a missing or broken baseline fails at once.
            let baseline = check.as_deref().map(crate::bench::Report::read_baseline).transpose()?;
            let seconds = |name: &str, v: f64| {
                if v.is_finite() && v >= 0.0 {
                    Ok(std::time::Duration::from_secs_f64(v))
                } else {
                    Err(anyhow::anyhow!("--{name} must be a number of seconds, 0 or more (got {v})"))
                }
            };
            let config = crate::bench::BenchConfig {
                workflow: workflow.clone(),
                input: read_input(input)?,
                mode: *mode,
                redis_url: redis.clone(),
                concurrency: *concurrency,
                duration: seconds("duration", *duration)?,
                sagas: *sagas,
                warmup: seconds("warmup", *warmup)?,
                worker_concurrency: *worker_concurrency,
                data: data.clone(),
                server: server.clone(),
                token: if server.is_some() { auth.token()? } else { None },
                progress: !*json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            if let Some(every) = scrape {
                let every = seconds("scrape", *every)?.max(std::time::Duration::from_millis(10));
                crate::observe::metrics::install();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        std::hint::black_box(crate::observe::metrics::render());
                    }
                });
            }
            let report = bench(&cli, config, *runs, *json).await?;
            match baseline {
                Some(baseline) => Ok(baseline.check(&report, *margin)),
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

async fn bench(
    cli: &Cli,
    config: crate::bench::BenchConfig,
    runs: u32,
    json: bool,
) -> anyhow::Result<crate::bench::Report> {
    let mut reports = Vec::new();
    for run in 1..=runs {
        let report = match &config.server {
            Some(url) => crate::bench::run_server(config.clone(), url).await?,
            None => {
                // A fresh runtime per run: the plugins come from the compile cache, so this
                // is quick.
                let (runtime, _) = load_runtime(cli).await?;
                let (catalog, errors) = load_workflows(&cli.workflows, &runtime)?;
                if let Some(e) = errors.iter().find(|e| e.workflow.as_deref() == Some(config.workflow.as_str())) {
                    bail!("workflow {:?} cannot run: {e}", config.workflow);
                }
                crate::bench::run(config.clone(), runtime, catalog).await?
            }
        };
        if runs > 1 && !json {
            eprintln!("run {run}/{runs}: {}", report.line());
        }
        reports.push(report);
    }
    let report = crate::bench::Report::median(&reports).context("no run")?;
    if json {
        crate::outln!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    Ok(report)
}

fn runtime_config(cli: &Cli) -> RuntimeConfig {
    RuntimeConfig {
        memory_limit: cli.memory_limit_mb << 20,
        memory_budget: cli.memory_budget_mb.map_or_else(crate::runtime::default_memory_budget, |mb| mb.max(1) << 20),
        max_instances: cli.max_instances,
        cache_dir: if cli.no_cache { None } else { cli.cache_dir.clone().or_else(crate::runtime::cache::default_dir) },
        ..RuntimeConfig::default()
    }
}

/// Load the plugins; report the ones that fail on stderr. Returns the runtime and whether
/// every plugin loaded.
async fn load_runtime(cli: &Cli) -> anyhow::Result<(Runtime, bool)> {
    let runtime = Runtime::new(runtime_config(cli))?;
    let errors = runtime.load_dir(&cli.plugins).await?;
    for e in &errors {
        eprintln!("warning: plugin not loaded: {e}");
    }
    Ok((runtime, errors.is_empty()))
}

/// Load the workflows of `dir` to run on `runtime`: every command checked against its plugins,
/// and the payloads the steps build against the commands' schemas.
fn load_workflows(dir: &Path, runtime: &Runtime) -> anyhow::Result<(Catalog, Vec<workflow::DefinitionError>)> {
    let (mut catalog, mut errors) = workflow::load_dir(dir, Some(&runtime.command_names())).with_context(|| {
        format!(
            "cannot read the workflow directory {}: point --workflows (BATON_WORKFLOWS) at a directory of .toml files",
            dir.display()
        )
    })?;
    errors.extend(workflow::fit::check(&mut catalog, &runtime.schemas()));
    Ok((catalog, errors))
}

/// `NAME=N` of `--plugin-concurrency`.
fn parse_plugin_concurrency(text: &str) -> Result<(String, usize), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=N (e.g. payment=4: the plugin's file name without .wasm)"))?;
    let n: usize =
        n.trim().parse().map_err(|_| format!("{n:?} in {text:?} is not a number of slots (e.g. payment=4)"))?;
    if name.trim().is_empty() || n == 0 {
        return Err(format!("{text:?}: give a plugin name and at least one slot (e.g. payment=4)"));
    }
    Ok((name.trim().to_owned(), n))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    workflow::duration::parse(text)
}

/// `--input` as JSON: inline text, or `@path`.
fn read_input(arg: &str) -> anyhow::Result<Value> {
    read_json("--input", arg)
}

/// JSON text, or `@FILE`: the value of option `flag`.
fn read_json(flag: &str, arg: &str) -> anyhow::Result<Value> {
    let (text, source) = match arg.strip_prefix('@') {
        Some(path) => {
            (std::fs::read_to_string(path).with_context(|| format!("cannot read {flag} file {path}"))?, path.to_owned())
        }
        None => (arg.to_owned(), flag.to_owned()),
    };
    serde_json::from_str(&text).with_context(|| {
        format!("{source} is not valid JSON: pass a JSON value, e.g. {flag} '{{\"order_id\": \"o-1\"}}'")
    })
}

fn stdout_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// A saga: the JSON record with `json` or when stdout is not a terminal, else a line per step.
fn print_saga(saga: &Value, json: bool) -> anyhow::Result<()> {
    if json || !stdout_is_terminal() {
        crate::outln!("{}", serde_json::to_string_pretty(saga)?);
    } else {
        for line in crate::view::saga_lines(saga) {
            crate::outln!("{line}");
        }
    }
    Ok(())
}

/// Most levels of sub-sagas `baton status` prints.
const TREE_DEPTH: usize = 8;

/// A saga and, indented under it, its sub-sagas and theirs (what `baton status` prints on a
/// terminal).
async fn print_tree(server: &client::Server, saga: &Value, depth: usize) -> anyhow::Result<()> {
    let indent = depth * 4;
    for line in crate::view::saga_lines(saga) {
        crate::outln!("{:indent$}{line}", "");
    }
    let has_children = saga["children"].as_array().is_some_and(|c| !c.is_empty());
    if !has_children {
        return Ok(());
    }
    if depth + 1 >= TREE_DEPTH {
        crate::outln!("{:indent$}    ... (deeper sub-sagas: baton status CHILD_ID)", "");
        return Ok(());
    }
    let id = saga["id"].as_str().unwrap_or_default();
    let children = client::get(server, &format!("/v1/sagas?parent={}&limit=10000", client::encode(id))).await?.0;
    for child in children.as_array().into_iter().flatten() {
        Box::pin(print_tree(server, child, depth + 1)).await?;
    }
    Ok(())
}

/// `--signal NAME=JSON` (or `NAME=@FILE`).
fn parse_signal(arg: &str) -> anyhow::Result<(String, Value)> {
    let Some((name, data)) = arg.split_once('=') else {
        bail!("--signal {arg:?}: write NAME=JSON, e.g. --signal 'message={{\"text\": \"hello\"}}'");
    };
    Ok((name.to_owned(), read_json(&format!("--signal {name}"), data)?))
}

async fn run(
    cli: &Cli,
    name: &str,
    input: &str,
    id: Option<String>,
    signals: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let input = read_input(input)?;
    if let Some(id) = &id {
        crate::api::check_id(id).map_err(|e| anyhow::anyhow!("--id {e}"))?;
    }
    let signals: Vec<(String, Value)> = signals.iter().map(|s| parse_signal(s)).collect::<anyhow::Result<_>>()?;
    let (runtime, _) = load_runtime(cli).await?;
    let (catalog, errors) = load_workflows(&cli.workflows, &runtime)?;
    let (own, others): (Vec<_>, Vec<_>) = errors.iter().partition(|e| e.workflow.as_deref() == Some(name));
    for e in &others {
        eprintln!("warning: workflow not loaded: {e}");
    }
    if !own.is_empty() {
        for e in &own {
            eprintln!("error: {e}");
        }
        bail!("workflow {name:?} cannot run: fix the problems above (`baton check` lists them all)");
    }
    if catalog.get(name).is_none() {
        bail!(
            "no workflow named {name:?} in {} (found: {})",
            cli.workflows.display(),
            if catalog.workflows.is_empty() { "none".to_owned() } else { catalog.names().join(", ") }
        );
    }
    let parts = Parts {
        workflows: catalog,
        runtime: Some(Arc::new(runtime)),
        bus: Arc::new(MemoryBus::new()),
        store: Arc::new(MemoryStore::new()),
        clock: Arc::new(SystemClock),
        worker: WorkerConfig::default(),
        retain: None,
        deployments: Vec::new(),
    };
    let node = Node::start(parts, Role::All);
    let o = node.orchestrator.clone();
    let saga = match o.start(name, input, id).await {
        Ok(started) => started.saga,
        Err(
            e @ (crate::orchestrator::StartError::InvalidInput { .. }
            | crate::orchestrator::StartError::ExternalUnreachable { .. }),
        ) => {
            node.shutdown().await?;
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    for (signal, payload) in signals {
        o.signal(&saga.id, &signal, payload).await?;
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    // On a terminal, what the saga did since the last question is shown before the next one
    // (a conversation's replies), an instance at a time.
    let mut shown = 0;
    let saga = loop {
        let poll = tokio::time::sleep(std::time::Duration::from_millis(200));
        let ended = tokio::select! {
            ended = o.wait(&saga.id) => Some(ended?),
            _ = poll => None,
        };
        if let Some(saga) = ended {
            break saga;
        }
        let Some(now) = o.get(&saga.id).await? else { continue };
        let Some(signal) = crate::view::stuck_on_signal(&now) else { continue };
        if interactive {
            for step in now.steps.iter().skip(shown).filter(|s| s.status == crate::model::StepStatus::Completed) {
                if let Some(output) = step.output.as_ref().filter(|_| step.kind == "command") {
                    eprintln!("  {}: {output}", step.path);
                }
            }
            shown = now.steps.len();
            let payload = ask(&signal).await?;
            o.signal(&saga.id, &signal, payload).await?;
        } else if !crate::view::may_still_move(&now) {
            node.shutdown().await?;
            print_saga(&serde_json::to_value(&now)?, json)?;
            eprintln!(
                "error: the saga waits for signal {signal:?}, none is queued and stdin is not a terminal: pass it with --signal {signal}=JSON, or send it to a `baton serve` with `baton signal`"
            );
            return Ok(ExitCode::from(4));
        }
    };
    node.shutdown().await?;
    print_saga(&serde_json::to_value(&saga)?, json)?;
    Ok(exit_code(saga.status))
}

/// Ask on the terminal for the payload of `signal`: JSON, or plain text sent as
/// `{"text": "..."}`.
async fn ask(signal: &str) -> anyhow::Result<Value> {
    let signal = signal.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        eprint!("signal {signal:?} > ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            bail!("stdin closed while the saga waits for signal {signal:?}");
        }
        let line = line.trim();
        Ok(serde_json::from_str(line).unwrap_or_else(|_| serde_json::json!({ "text": line })))
    })
    .await?
}

/// `baton run`'s exit code for a saga's final status.
fn exit_code(status: SagaStatus) -> ExitCode {
    match status {
        SagaStatus::Completed => ExitCode::SUCCESS,
        SagaStatus::Compensated => ExitCode::from(2),
        _ => ExitCode::from(3),
    }
}

async fn serve(config: crate::serve::Config, listen: &str) -> anyhow::Result<ExitCode> {
    // Before the plugins load: a host that may not serve here says so at once. `run` checks
    // the address it got again.
    let addrs = tokio::net::lookup_host(listen).await.with_context(|| {
        format!("--listen {listen:?} is not an address to listen on: write HOST:PORT, e.g. 127.0.0.1:7600")
    })?;
    for addr in addrs {
        crate::serve::check_listen(addr, config.token.is_some(), config.insecure)
            .with_context(|| format!("--listen {listen}"))?;
    }
    let host = crate::serve::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen}: is another baton running? choose another with --listen (port 0 picks a free one)")
    })?;
    crate::serve::run(listener, shutdown_signal(), host).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            },
            Err(e) => {
                eprintln!("warning: cannot watch for SIGTERM ({e}); stop with Ctrl-C");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn start(
    workflow: &str,
    input: &str,
    id: Option<String>,
    wait: bool,
    server: &client::Server,
) -> anyhow::Result<ExitCode> {
    let input = read_input(input)?;
    // The id is chosen here, not by the server, so that a start retried after a 503 (or a
    // lost answer) can never create a second saga.
    let id = id.unwrap_or_else(|| client_id(workflow));
    let body = serde_json::json!({ "workflow": workflow, "input": input, "id": id });
    let saga = client::post_retrying(server, "/v1/sagas", &body).await?;
    if !wait {
        crate::outln!("{}", serde_json::to_string_pretty(&saga)?);
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let saga = client::get(server, &format!("/v1/sagas/{}?wait=60", client::encode(&id))).await?.0;
        let status: Option<SagaStatus> = saga["status"].as_str().and_then(|s| s.parse().ok());
        if let Some(status) = status.filter(|s| s.is_terminal()) {
            crate::outln!("{}", serde_json::to_string_pretty(&saga)?);
            return Ok(exit_code(status));
        }
    }
}

/// A saga id for `baton start` without `--id`: the workflow, the time and some randomness.
fn client_id(workflow: &str) -> String {
    use std::hash::BuildHasher as _;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{workflow}-{now:x}-{:08x}", random as u32)
}

/// `println!` that ends quietly when stdout's reader has gone (`baton list | head`), as `ls`
/// does, instead of panicking on the broken pipe.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// A small client of the HTTP API, for the CLI.
mod client {
    use anyhow::{Context as _, bail};
    use serde_json::Value;

    /// A running `baton serve`: where it is, and the token to send it.
    pub struct Server {
        url: String,
        token: Option<crate::api::Token>,
        http: reqwest::Client,
    }

    impl Server {
        /// From `--server` and `--token` / `--token-file`.
        pub fn new(args: &super::ServerArgs) -> anyhow::Result<Server> {
            let token = args.auth.token()?;
            Ok(Server { url: args.server.trim_end_matches('/').to_owned(), token, http: reqwest::Client::new() })
        }

        fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
            let r = self.http.request(method, format!("{}{path}", self.url));
            match &self.token {
                Some(token) => r.bearer_auth(token.as_str()),
                None => r,
            }
        }
    }

    /// What to say when `server` answers 401, and so whether a token was sent.
    fn refused(server: &str, sent: bool) -> String {
        if sent {
            format!(
                "{server} refused the token: pass the one its `baton serve` was started with (--token, BATON_TOKEN or --token-file)"
            )
        } else {
            format!(
                "{server} requires a token: pass the one its `baton serve` was started with (--token, BATON_TOKEN or --token-file)"
            )
        }
    }

    /// Percent-encode a path segment or query value.
    pub fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Why a request failed: the HTTP status, when the server answered.
    struct Failed {
        status: Option<u16>,
        error: anyhow::Error,
    }

    async fn answer(server: &Server, r: reqwest::Result<reqwest::Response>) -> Result<(Value, Option<String>), Failed> {
        let url = &server.url;
        let r = r
            .with_context(|| {
                format!("cannot reach baton at {url}: is `baton serve` running there? (--server, BATON_SERVER)")
            })
            .map_err(|error| Failed { status: None, error })?;
        let status = r.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let error = anyhow::anyhow!("{} (HTTP 401, unauthorized)", refused(url, server.token.is_some()));
            return Err(Failed { status: Some(401), error });
        }
        let retain = r.headers().get(crate::api::RETAIN_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let failed = |error| Failed { status: Some(status.as_u16()), error };
        let body: Value = r
            .json()
            .await
            .with_context(|| format!("{url} answered {status} with something that is not JSON"))
            .map_err(failed)?;
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("error");
            let message = body["error"]["message"].as_str().unwrap_or("(no message)");
            return Err(failed(anyhow::anyhow!("{message} (HTTP {}, {code})", status.as_u16())));
        }
        Ok((body, retain))
    }

    /// POST once (a signal sent twice would be queued twice).
    pub async fn post(server: &Server, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = server
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        answer(server, r).await.map(|(v, _)| v).map_err(|f| f.error)
    }

    /// GET: the body, and the `baton-retain` header when the server sent one.
    pub async fn get(server: &Server, path: &str) -> anyhow::Result<(Value, Option<String>)> {
        answer(server, server.request(reqwest::Method::GET, path).send().await).await.map_err(|f| f.error)
    }

    /// How long `post_retrying` waits before each new try after a 503.
    const RETRY_DELAYS_MS: [u64; 6] = [250, 500, 1_000, 2_000, 4_000, 8_000];

    /// POST, tried again with backoff while the server answers 503 (its store is away): the
    /// body carries an id, so a retry never starts a second saga.
    pub async fn post_retrying(server: &Server, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut delays = RETRY_DELAYS_MS.iter();
        loop {
            match answer(server, server.request(reqwest::Method::POST, path).json(body).send().await).await {
                Ok((body, _)) => return Ok(body),
                Err(Failed { status: Some(503), error }) => match delays.next() {
                    Some(&ms) => {
                        eprintln!("note: {error}; trying again in {ms} ms");
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    }
                    None => bail!("{error}; gave up after {} tries", RETRY_DELAYS_MS.len() + 1),
                },
                Err(f) => return Err(f.error),
            }
        }
    }
}

/// `baton new`: write the files, say what they are and what to do next.
fn new(cli: &Cli, what: &New) -> anyhow::Result<ExitCode> {
    let (files, next) = match what {
        New::Worker { name, lang, dir, sdk } => crate::scaffold::worker(dir, name, *lang, sdk.as_deref())?,
        New::Workflow { name, command } => {
            let command = command.clone().unwrap_or_else(|| format!("{}.hello", name.replace('-', "_")));
            let files = crate::scaffold::workflow(&cli.workflows, name, &command)?;
            (
                files,
                format!(
                    "next: baton test {name}    (the cases, with time skipped)\n      baton check        (the workflow against the loaded plugins)\n      baton run {name} --input '{{\"who\": \"Ada\"}}'"
                ),
            )
        }
    };
    for f in &files {
        crate::outln!("wrote {}", f.display());
    }
    crate::outln!("{next}");
    Ok(ExitCode::SUCCESS)
}

/// `baton test-plugin`: one command of one plugin, through the real sandbox. Prints the
/// result as JSON on stdout and exits 0, or the failure (`{"code", "message", "retryable"}`)
/// and exits 2; 1 when the plugin does not load or the command is not one of its own.
async fn test_plugin(
    cli: &Cli,
    path: &Path,
    command: Option<&str>,
    input: &str,
    attempt: u32,
) -> anyhow::Result<ExitCode> {
    use crate::orchestrator::Clock as _;
    let runtime = Runtime::new(runtime_config(cli))?;
    if let Err(e) = runtime.load_file(path).await {
        eprintln!("error: plugin {} did not load: {e}", path.display());
        return Ok(ExitCode::from(1));
    }
    let plugin = runtime.plugins().into_iter().next().expect("the plugin just loaded");
    let names: Vec<&str> = plugin.commands.iter().map(|c| c.name.as_str()).collect();
    let Some(command) = command else {
        crate::outln!("plugin {} ({}): {}", plugin.name, plugin.contract, names.join(", "));
        return Ok(ExitCode::SUCCESS);
    };
    if !names.contains(&command) {
        eprintln!("error: plugin {} has no command {command:?}; its commands: {}", plugin.name, names.join(", "));
        return Ok(ExitCode::from(1));
    }
    let payload = read_input(input)?;
    let key = format!("test-plugin/{command}/forward");
    let cmd = crate::protocol::CommandMessage {
        name: command.to_owned(),
        payload,
        meta: crate::protocol::Meta {
            transaction_id: "test-plugin".into(),
            correlation_id: crate::model::correlation_id(&key, attempt),
            idempotency_key: key,
            step: command.to_owned(),
            attempt,
            traceparent: None,
        },
        timeout_ms: crate::workflow::DEFAULT_TIMEOUT.as_millis() as u64,
        deadline_ms: 0,
        start_by_ms: 0,
    };
    match runtime.invoke(&cmd, crate::orchestrator::SystemClock.now_ms()).await {
        crate::protocol::Outcome::Ok(value) => {
            crate::outln!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        crate::protocol::Outcome::Err(f) => {
            crate::outln!("{}", serde_json::to_string_pretty(&f)?);
            Ok(ExitCode::from(2))
        }
    }
}

/// `baton test`: every case of every `*.test.toml` under `<workflows>/tests`, one line each;
/// a failed case says what did not match and prints its history. Exit 1 when one failed.
async fn test(cli: &Cli, only: Option<&str>, with_plugins: bool) -> anyhow::Result<ExitCode> {
    let dir = cli.workflows.join("tests");
    let files = crate::cases::files(&dir).with_context(|| {
        format!(
            "cannot read {}: workflow tests are *.test.toml files there (see the README, \"Testing workflows\")",
            dir.display()
        )
    })?;
    let runtime = if with_plugins { Some(load_runtime(cli).await?.0) } else { None };
    let (catalog, errors) = match &runtime {
        Some(r) => load_workflows(&cli.workflows, r)?,
        None => workflow::load_dir(&cli.workflows, None)
            .with_context(|| format!("cannot read the workflow directory {}", cli.workflows.display()))?,
    };
    for e in &errors {
        eprintln!("error: {e}");
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let (name, cases) = match crate::cases::read(file) {
            Ok(read) => read,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
                continue;
            }
        };
        if only.is_some_and(|w| w != name) {
            continue;
        }
        for case in &cases {
            let report = crate::cases::run_case(&catalog, &name, case, runtime.as_ref()).await;
            let timing = format!(
                "{} of virtual time in {:.1} ms",
                workflow::duration::format(report.virtual_time),
                report.took.as_secs_f64() * 1000.0
            );
            if report.mismatches.is_empty() {
                passed += 1;
                crate::outln!("ok    {name}: {} ({timing})", report.name);
            } else {
                failed += 1;
                crate::outln!("FAIL  {name}: {} ({timing})", report.name);
                for m in &report.mismatches {
                    crate::outln!("      {m}");
                }
                crate::outln!("      history:");
                for line in crate::cases::history_lines(&report.history) {
                    crate::outln!("        {line}");
                }
            }
        }
    }
    if passed + failed == 0 {
        eprintln!("no test cases{} in {}", only.map(|w| format!(" of {w}")).unwrap_or_default(), dir.display());
        return Ok(ExitCode::from(1));
    }
    crate::outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn check(cli: &Cli) -> anyhow::Result<ExitCode> {
    let (runtime, plugins_ok) = load_runtime(cli).await?;
    let known = runtime.command_names();
    let (catalog, errors) = load_workflows(&cli.workflows, &runtime)?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    if errors.is_empty() && plugins_ok {
        crate::outln!(
            "ok: {} workflow(s) in {}, {} plugin(s) with {} command(s) in {}",
            catalog.workflows.len(),
            cli.workflows.display(),
            runtime.plugins().len(),
            known.len(),
            cli.plugins.display()
        );
        let external = external_commands(&catalog);
        if !external.is_empty() {
            crate::outln!(
                "{} external command(s), served outside this host by workers on the bus (docs/PROTOCOL.md; they need `baton serve --redis URL`):",
                external.len()
            );
            for (name, workflows) in &external {
                crate::outln!("  {name:<24} declared by {}", workflows.join(", "));
            }
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let broken = if plugins_ok { "" } else { " and plugins that did not load (above)" };
        eprintln!("check failed: {} problem(s) in the workflows{broken}", errors.len());
        Ok(ExitCode::from(1))
    }
}

/// The external commands the workflows of `catalog` declare, each with the workflows that
/// declare it.
fn external_commands(catalog: &Catalog) -> std::collections::BTreeMap<&str, Vec<&str>> {
    let mut out: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for wf in catalog.workflows.values() {
        for name in wf.external.keys() {
            out.entry(name.as_str()).or_default().push(wf.name.as_str());
        }
    }
    out
}

async fn plugins(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let (runtime, ok) = load_runtime(cli).await?;
    // The workflows' external commands, listed after the plugins. Workflows with problems are
    // `baton check`'s business: left out here, quietly, as is a missing directory.
    let catalog = workflow::load_dir(&cli.workflows, None).map(|(c, _)| c).unwrap_or_default();
    // (command, workflow, input schema, output schema), as JSON text like a plugin's.
    let external: Vec<(&str, &str, Option<String>, Option<String>)> = catalog
        .workflows
        .values()
        .flat_map(|wf| {
            wf.external.iter().map(|(name, e)| {
                let text = |s: &Option<workflow::schema::Schema>| s.as_ref().map(|s| s.json().to_string());
                (name.as_str(), wf.name.as_str(), text(&e.input_schema), text(&e.output_schema))
            })
        })
        .collect();
    let schema = |s: &Option<String>| s.as_deref().unwrap_or("-").to_owned();
    if json {
        let mut list: Vec<Value> = runtime.plugins_json();
        if !external.is_empty() {
            let commands: Vec<Value> = external
                .iter()
                .map(|(name, wf, input, output)| {
                    serde_json::json!({ "name": name, "workflow": wf, "input_schema": input, "output_schema": output })
                })
                .collect();
            list.push(serde_json::json!({ "name": "external", "external": true, "commands": commands }));
        }
        crate::outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for p in runtime.plugins() {
            crate::outln!("{} ({}, {})", p.name, p.path.display(), p.contract);
            if let Some(path) = &p.manifest.path {
                let names = p.manifest.config_names();
                let config = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
                let limits = p.manifest.limits.json();
                crate::outln!("  manifest {}: config {config}; limits {limits}", path.display());
            }
            // Compact, one line each: a plugin may have written its schemas over many lines.
            let compact = |s: &Option<workflow::schema::Schema>| s.as_ref().map(|s| s.json().to_string());
            for c in &p.commands {
                crate::outln!(
                    "  {:<24} input: {}  output: {}",
                    c.name,
                    schema(&compact(&c.input)),
                    schema(&compact(&c.output))
                );
            }
        }
        if !external.is_empty() {
            crate::outln!("external (declared by workflows in {}, served outside this host)", cli.workflows.display());
            for (name, wf, input, output) in &external {
                crate::outln!("  {name:<24} workflow: {wf}  input: {}  output: {}", schema(input), schema(output));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
