#!/usr/bin/env bash
# Builds the peer of the HTTP benchmark: `wasmtime serve` from crates.io, at the wasmtime version
# wasmlet links, into target/bench-tools (never committed). The benchmark finds it there.
#
#   host/benches/setup-wasmtime-serve.sh && cargo bench -p wasmlet --bench http
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^wasmtime = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
root=target/bench-tools
if [ -x "$root/bin/wasmtime" ] && "$root/bin/wasmtime" --version | grep -q "$version"; then
    echo "wasmtime $version is already in $root"
    exit 0
fi
echo "building wasmtime-cli $version (serve) into $root; this takes several minutes"
# The default features: `serve` alone does not build at this version.
cargo install wasmtime-cli --version "=$version" --locked --root "$root"
"$root/bin/wasmtime" --version
