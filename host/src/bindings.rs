//! Host bindings generated from `wit/lifecycle.wit`: the `wasmlet:lifecycle/control` interface
//! that wasmlet implements for guests. WASI itself comes from `wasmtime-wasi`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasmlet:lifecycle/host",
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
    },
    require_store_data_send: true,
    imports: { default: trappable },
});

pub use self::wasmlet::lifecycle::control;
pub use self::wasmlet::lifecycle::types::{Event, Termination, TerminationReason};
