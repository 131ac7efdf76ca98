//! Builds wasmlet's bundled shell (`sh/`, a wasm32-wasip2 command) with a nested cargo build in
//! its own target directory, for `include_bytes!` into the wasmlet library: exec hooks written
//! as `sh -c "…"` then run with no shell installed anywhere.

use std::path::{Path, PathBuf};

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

    build_wasm(
        &shell.join("Cargo.toml"),
        &target_dir,
        &workspace,
        "wasmlet's bundled shell",
    );
    let built = target_dir.join("wasm32-wasip2/release/wasmlet-sh.wasm");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("sh.wasm");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copying `{}`: {e}", built.display()));
}

include!("wasm_build.rs");
