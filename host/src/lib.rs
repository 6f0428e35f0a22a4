//! Baton: a saga orchestrator whose workers are sandboxed WebAssembly components.
//!
//! A saga is a long-running transaction declared as a TOML state machine. The orchestrator
//! drives each saga step by step, sending commands over an event bus to workers (wasm
//! components) and deciding the next step from their results; when a step fails for good it
//! compensates the completed steps in reverse order.
//!
//! # Layout
//!
//! - [`model`]: the saga record, its history, ids and paths: below every other module.
//! - [`protocol`]: the messages that travel between orchestrator and workers.
//! - [`workflow`]: parse, validate and resolve TOML into an immutable [`workflow::Workflow`].
//! - [`orchestrator`]: the saga state machine. [`orchestrator::decide`] is pure (saga + event
//!   -> new saga + effects); [`orchestrator::Orchestrator`] applies it over the traits below.
//! - [`bus`]: the [`bus::EventBus`] trait and its implementations.
//! - [`store`]: the [`store::SagaStore`] trait and its implementations.
//! - [`runtime`]: wasmtime engine, plugin loading and caching, sandbox limits, worker loop.
//! - [`api`]: the HTTP API.
//! - [`bench`]: `baton bench`, the load generator.
//! - [`node`]: wiring: an orchestrator and a worker pool sharing one bus and one store.
//! - [`serve`]: the long-lived host: built from its configuration, run on a listener until
//!   told to stop (`baton serve`, and the tests, in process).
//! - [`cli`]: the `baton` command line; [`view`]: how it shows sagas to a person.

pub mod api;
pub mod bench;
pub mod bus;
pub mod cases;
pub mod cli;
pub mod model;
pub mod node;
pub mod observe;
pub mod orchestrator;
pub mod protocol;
mod redis_conn;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod serve;
pub mod store;
pub mod view;
pub mod workflow;

/// `println!` that ends quietly when stdout's reader has gone (`baton list | head`).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// Sleep for `delay`, or less if `shutdown` turns true first; returns whether it did. For the
/// long-lived loops that wait out a bus or store that is away instead of giving up.
pub(crate) async fn wait_or_stop(
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    delay: std::time::Duration,
) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(delay) => *shutdown.borrow(),
    }
}
