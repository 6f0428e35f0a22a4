//! The one `bindgen!` site of the host: Rust types for `wit/` and the typed exports of a
//! worker plugin. Exports are async so that a running plugin yields to the executor at every
//! epoch tick instead of holding a thread.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "worker-plugin",
    exports: { default: async },
});
