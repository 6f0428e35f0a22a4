//! Wiring: an orchestrator and/or a worker pool on a shared bus and store.
//!
//! `baton run` uses an embedded node (memory bus, memory store) for the life of one saga;
//! `baton serve` runs one until it is told to stop, in the role it was given.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::EventBus;
use crate::orchestrator::{Clock, Orchestrator, sub_sagas};
use crate::runtime::Runtime;
use crate::runtime::worker::{self, WorkerConfig};
use crate::store::SagaStore;
use crate::workflow::Catalog;

/// What a node does. Orchestrators and worker pools scale apart: run many workers where the
/// CPU is, and a few orchestrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Orchestrator and workers.
    All,
    /// Drives sagas and serves the HTTP API; runs no plugin.
    Orchestrator,
    /// Runs plugins for commands from the bus; holds no saga.
    Worker,
}

impl Role {
    pub fn orchestrates(self) -> bool {
        matches!(self, Role::All | Role::Orchestrator)
    }

    pub fn works(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// A running orchestrator and/or worker pool. Dropping it without [`Node::shutdown`] leaves
/// the tasks running until the tokio runtime ends.
pub struct Node {
    pub orchestrator: Orchestrator,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// What a node needs.
pub struct Parts {
    pub workflows: Catalog,
    /// Required when the role runs workers.
    pub runtime: Option<Arc<Runtime>>,
    pub bus: Arc<dyn EventBus>,
    pub store: Arc<dyn SagaStore>,
    pub clock: Arc<dyn Clock>,
    pub worker: WorkerConfig,
    /// How long finished sagas are kept; `None`: forever.
    pub retain: Option<std::time::Duration>,
    /// Other deployments (bus prefix, and a bus under it) whose commands this host's
    /// `handles` workflows answer.
    pub deployments: Vec<(String, Arc<dyn EventBus>)>,
}

impl Node {
    /// Start the loops of `role`.
    pub fn start(parts: Parts, role: Role) -> Node {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let clock = parts.clock.clone();
        let orchestrator =
            Orchestrator::new(parts.workflows, parts.store.clone(), parts.bus.clone(), parts.clock, parts.retain);
        let mut tasks = Vec::new();
        if role.orchestrates() {
            let o = orchestrator.clone();
            let rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move { o.run(rx).await }));
            // Sagas that answer commands: children of `workflow` steps and `handles`.
            let (o, bus, rx) = (orchestrator.clone(), parts.bus.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(sub_sagas::serve(o, bus, None, true, rx)));
            for (prefix, bus) in parts.deployments {
                orchestrator.add_deployment(&prefix, bus.clone());
                let (o, rx) = (orchestrator.clone(), shutdown_rx.clone());
                tasks.push(tokio::spawn(sub_sagas::serve(o, bus, Some(prefix), false, rx)));
            }
            // Workers of this host that run sub-sagas ask this orchestrator.
            if let Some(runtime) = &parts.runtime {
                runtime.set_saga_host(Arc::new(orchestrator.clone()));
            }
        }
        if role.works() {
            let runtime = parts.runtime.expect("a worker node needs a plugin runtime");
            tasks.push(tokio::spawn(worker::run(runtime, parts.bus, parts.store, clock, parts.worker, shutdown_rx)));
        }
        Node { orchestrator, shutdown, tasks }
    }

    /// Stop taking work and wait for the loops to end.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.await??;
        }
        Ok(())
    }
}
