//! wasmlet's examples: the guest components built from `guests/` (paths in [`components`]),
//! the pods in `pods/` that run them, and `plugin-host`, a program that embeds wasmlet.

/// Paths of the example components, built by this crate's build script.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// The directory of the example pod manifests.
pub fn pods_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pods")
}

/// The plugin-host example's WIT (`plugins/wit`, package `example:plugins`) bound for wasmlet's
/// host: the `Plugin` world to call a plugin's `handler` through, and the `host` interface a
/// plugin host implements. Exports and imports are async, as wasmlet's engine is.
pub mod plugins {
    wasmlet::wasmtime::component::bindgen!({
        path: "plugins/wit",
        world: "plugin",
        wasmtime_crate: wasmlet::wasmtime,
        imports: { default: async },
        exports: { default: async },
    });
}
