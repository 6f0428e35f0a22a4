//! The host's `bindgen!` sites: Rust types for the two versions of the worker contract the
//! host serves, and the typed exports of a worker plugin of each.
//!
//! - [`v2`]: `baton:saga@0.2.0` (`wit/saga.wit`), what the guest SDK builds today. It adds the
//!   `orchestrator` import, whose host functions are async: a plugin waiting in `run-saga`
//!   is a suspended fiber, not a blocked thread.
//! - [`v1`]: `baton:saga@0.1.0` (`wit/0.1.0/saga.wit`, frozen), for plugins built before.
//!   Its `types` are mapped onto v2's (the records are the same), so a command, a failure and a
//!   command spec have one Rust type whichever version the plugin speaks.
//!
//! Exports are async so that a running plugin yields to the executor at every epoch tick
//! instead of holding a thread.

pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/saga.wit",
        world: "worker-plugin",
        imports: { "baton:saga/orchestrator": async },
        exports: { default: async },
    });
}

pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0/saga.wit",
        world: "worker-plugin",
        with: { "baton:saga/types@0.1.0": super::v2::baton::saga::types },
        exports: { default: async },
    });
}
