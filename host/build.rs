//! Builds wasmlet's bundled shell (`sh/`, a wasm32-wasip2 command) with a nested cargo build in
//! its own target directory, for `include_bytes!` into the wasmlet library: exec hooks written
//! as `sh -c "…"` then run with no shell installed anywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let shell = manifest_dir.join("sh");
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = workspace.join("target").join("sh");
    println!("cargo:rerun-if-changed={}", shell.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        shell.join("Cargo.toml").display()
    );

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip2")
        .arg("--manifest-path")
        .arg(shell.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        // The outer build's flags are for the host, not for wasm.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            reproducible_rustflags(&workspace),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo for wasmlet's bundled shell");
    if !status.success() {
        panic!(
            "building wasmlet's bundled shell failed (see above). If the wasm32-wasip2 target is \
             missing, run `rustup target add wasm32-wasip2` (rust-toolchain.toml lists it)."
        );
    }
    let built = target_dir.join("wasm32-wasip2/release/wasmlet-sh.wasm");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("sh.wasm");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copying `{}`: {e}", built.display()));
}

/// rustc flags that keep where the checkout and Cargo's home are out of the built wasm: the same
/// source gives the same component wherever it is built, so a guest uses the same fuel — and a
/// deterministic-mode trace is the same — on every machine.
fn reproducible_rustflags(workspace: &Path) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut flags = vec![format!(
        "--remap-path-prefix={}=/wasmlet",
        workspace.display()
    )];
    if let Some(cargo_home) = cargo_home {
        flags.push(format!(
            "--remap-path-prefix={}=/cargo",
            cargo_home.display()
        ));
    }
    flags.join("\x1f")
}
