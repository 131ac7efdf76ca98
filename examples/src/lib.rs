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
