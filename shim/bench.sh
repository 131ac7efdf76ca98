#!/usr/bin/env bash
# Start-to-running and SIGKILL-to-exit of a container under containerd-shim-wasmlet-v1, against
# the same containerd running the native build of the same program under runc.
#
# The program is the example guest `spinner` (examples/guests/spinner: prints one line, then
# spins in a loop that never calls the host): spinner.wasm under the wasmlet shim, and the same
# source built for Linux (static, so that the image needs no libc) under runc.
#   start-to-running: from launching `ctr run` to the container's first line of output reaching
#                     ctr (containerd: create the container and its task, start the shim or
#                     runc, the process; wasmlet: also compile and instantiate the component);
#   SIGKILL-to-exit:  from launching `ctr task kill -s KILL` to the `ctr run` that waits on the
#                     task returning (the kill, the exit event, containerd's bookkeeping).
# Both include a ctr client's start-up (a few ms), the same for both runtimes.
#
# Needs root, containerd, ctr and runc (Debian: containerd, runc), the shim built in shim/ and
# the example components (cargo build -p wasmlet-examples); RUNS=N sets the runs (default 10).
# Prints the median and range of each; the first run of each runtime is a warm-up, not counted.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
shim_target=${CARGO_TARGET_DIR:-$repo/shim/target}
shim="$shim_target/debug/containerd-shim-wasmlet-v1"
[[ ${RELEASE:-0} == 1 ]] && shim="$shim_target/release/containerd-shim-wasmlet-v1"
runs=${RUNS:-10}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[[ $(id -u) == 0 ]] || fail "needs root"
for file in "$shim" "$repo/target/components/spinner.wasm"; do
    [[ -e $file ]] || fail "missing $file (build the shim in shim/ and cargo build -p wasmlet-examples)"
done
for tool in containerd ctr runc containerd-shim-runc-v2; do
    command -v "$tool" >/dev/null || fail "needs $tool (apt-get install -y containerd runc)"
done

work=$(mktemp -d /tmp/wasmlet-shim-bench.XXXXXX)
sock="$work/containerd.sock"
ns="wasmlet-bench-$$"
containerd_pid=
cleanup() {
    set +e
    if [[ -n $containerd_pid ]]; then
        for id in $(ctr -a "$sock" -n "$ns" task ls -q 2>/dev/null); do
            ctr -a "$sock" -n "$ns" task kill -s KILL "$id" >/dev/null 2>&1
        done
        sleep 0.5
        for id in $(ctr -a "$sock" -n "$ns" task ls -q 2>/dev/null); do
            ctr -a "$sock" -n "$ns" task delete -f "$id" >/dev/null 2>&1
        done
        for id in $(ctr -a "$sock" -n "$ns" container ls -q 2>/dev/null); do
            ctr -a "$sock" -n "$ns" container delete "$id" >/dev/null 2>&1
        done
        kill "$containerd_pid" 2>/dev/null
        wait "$containerd_pid" 2>/dev/null
    fi
    rm -rf "/run/containerd/wasmlet/$ns"
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The native build of the same program.
echo "building spinner for Linux (static)" >&2
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$work/native" \
    cargo build --quiet --release --manifest-path "$repo/examples/guests/Cargo.toml" -p spinner \
    --target "$(rustc -vV | sed -n 's/^host: //p')"
mkdir -p "$work/rootfs"
cp "$repo/target/components/spinner.wasm" "$work/rootfs/"
cp "$work"/native/*/release/spinner "$work/rootfs/spinner"

# A private containerd, without the CRI plugin (not needed here).
mkdir -p "$work/bin"
ln -s "$shim" "$work/bin/containerd-shim-wasmlet-v1"
cat >"$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$work/containerd-ttrpc.sock"
EOF
PATH="$work/bin:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do
    ctr -a "$sock" version >/dev/null 2>&1 && break
    sleep 0.1
done
ctrn() { ctr -a "$sock" -n "$ns" "$@"; }

# The image: an OCI layout tar of one layer holding both builds.
case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
esac
layout="$work/layout"
mkdir -p "$layout/blobs/sha256"
blob() {
    local sha size
    sha=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    cp "$1" "$layout/blobs/sha256/$sha"
    printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$sha" "$size"
}
tar -C "$work/rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
layer=$(blob "$work/layer.tar" application/vnd.oci.image.layer.v1.tar)
printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer_sha" >"$work/config.json"
config=$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$config" "$layer" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
image=docker.io/wasmlet/bench-spinner:latest
printf '{"schemaVersion":2,"manifests":[%s]}' \
    "${manifest%\}},\"annotations\":{\"io.containerd.image.name\":\"$image\",\"org.opencontainers.image.ref.name\":\"latest\"}}" \
    >"$layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
tar -C "$layout" -cf "$work/image.tar" oci-layout index.json blobs
ctrn image import "$work/image.tar" >/dev/null || fail "importing the image"

# measure RUNTIME ID ARGS...: prints "START_MS KILL_MS" of one run.
measure() {
    local runtime=$1 id=$2
    shift 2
    rm -f "$work/$id.up"
    local began up
    began=$(date +%s%N)
    ctrn run --runtime "$runtime" "$image" "$id" "$@" 2>&1 |
        { IFS= read -r _ && date +%s%N >"$work/$id.up"; cat >/dev/null; } &
    local run=$!
    for _ in $(seq 3000); do
        [[ -s $work/$id.up ]] && break
        sleep 0.01
    done
    [[ -s $work/$id.up ]] || fail "$id never printed its first line"
    up=$(cat "$work/$id.up")
    sleep 0.2
    local killed
    killed=$(date +%s%N)
    ctrn task kill -s KILL "$id"
    wait "$run" || true
    local ended
    ended=$(date +%s%N)
    ctrn container delete "$id" >/dev/null 2>&1 || true
    echo "$(((up - began) / 1000)) $(((ended - killed) / 1000))"
}

# stats LABEL MICROSECONDS...: "LABEL: median X ms (range A-B ms, N runs)".
stats() {
    local label=$1
    shift
    local sorted
    mapfile -t sorted < <(printf '%s\n' "$@" | sort -n)
    local n=${#sorted[@]}
    local median
    if ((n % 2)); then
        median=${sorted[n / 2]}
    else
        median=$(((sorted[n / 2 - 1] + sorted[n / 2]) / 2))
    fi
    ms() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }
    printf '%-44s median %s ms (range %s-%s ms, %d runs)\n' "$label" "$(ms "$median")" \
        "$(ms "${sorted[0]}")" "$(ms "${sorted[n - 1]}")" "$n"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); $(containerd --version | awk '{print $1, $3}'), runc $(runc --version | awk 'NR==1 {print $3}'); shim: $(basename "$(dirname "$shim")") build"
for runtime in wasmlet runc; do
    case $runtime in
        wasmlet) rt=io.containerd.wasmlet.v1 args=(/spinner.wasm) ;;
        runc) rt=io.containerd.runc.v2 args=(/spinner) ;;
    esac
    measure "$rt" "warmup-$runtime" "${args[@]}" >/dev/null
    starts=()
    kills=()
    for i in $(seq "$runs"); do
        read -r start kill < <(measure "$rt" "$runtime-$i" "${args[@]}")
        starts+=("$start")
        kills+=("$kill")
    done
    stats "$runtime ($rt) start-to-running:" "${starts[@]}"
    stats "$runtime ($rt) SIGKILL-to-exit:" "${kills[@]}"
done
