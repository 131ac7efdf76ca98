// The nested cargo build of a wasm32-wasip2 workspace, shared by `host/build.rs` (the bundled
// shell) and `examples/build.rs` (the example guests) through `include!`.

/// Builds the workspace of `manifest` for wasm32-wasip2 in release, into `target_dir` (its own,
/// so the outer build's lock is not in the way). `what` names it in errors.
fn build_wasm(manifest: &Path, target_dir: &Path, workspace: &Path, what: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip2")
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer build's flags are for the host, not for wasm.
        .env("CARGO_ENCODED_RUSTFLAGS", reproducible_rustflags(workspace))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {what}: {e}"));
    if !status.success() {
        panic!(
            "building {what} failed (see above). If the wasm32-wasip2 target is missing, run \
             `rustup target add wasm32-wasip2`: rust-toolchain.toml lists it, but rustup adds a \
             toolchain file's targets only when it installs that toolchain, not to one that is \
             already installed."
        );
    }
}

/// rustc flags that keep where the checkout and Cargo's home are out of the built wasm: the same
/// source gives the same component wherever it is built, so a guest uses the same fuel — and a
/// deterministic-mode trace is the same — on every machine.
fn reproducible_rustflags(workspace: &Path) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut flags = vec![format!("--remap-path-prefix={}=/wasmlet", workspace.display())];
    if let Some(cargo_home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", cargo_home.display()));
    }
    flags.join("\x1f")
}
