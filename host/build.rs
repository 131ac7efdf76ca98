//! Builds wasmlet's bundled shell (`sh/`, a wasm32-wasip2 command) with a nested cargo build in
//! its own target directory, for `include_bytes!` into the wasmlet library: exec hooks written
//! as `sh -c "…"` then run with no shell installed anywhere.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let shell = manifest_dir.join("sh");
    let target_dir = manifest_dir.parent().unwrap().join("target").join("sh");
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
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
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
