#!/usr/bin/env bash
# End-to-end test of containerd-shim-wasmlet-v1 against a real containerd.
#
# Starts a private containerd (its own root, state, socket and config, which registers the
# runtime_type io.containerd.wasmlet.v1 for the CRI plugin), builds two OCI image tars by hand,
# imports them with `ctr image import`, and checks with `ctr run` / `ctr task kill`:
#   1. the exit code wasmlet reports reaches ctr, and the guest's output the container's stdout
#      and stderr: 0 for `hello.wasm`, 1 for `hello.wasm --exit 7` (WASI 0.2's `exit` carries
#      only ok or err, so wasmlet reports 1, as it does in a pod), 134 for a trap (`faulty.wasm`),
#      with wasmlet's message on stderr;
#   2. a read-only bind mount is a read-only preopen at its path, and the spec's cwd the guest's
#      working directory;
#   3. the same as 1 from an OCI artifact whose component is an `application/wasm` layer (the
#      shim framework hands the layer over; no file in the root filesystem); skipped before
#      containerd 1.7, whose unpacker refuses an image whose layers are not all filesystem
#      layers ("mismatched image rootfs and manifest layers") before any shim is involved;
#   4. SIGTERM (`ctr task kill`) delivers terminate to a cooperative guest, which exits 0;
#   5. SIGKILL (`ctr task kill -s KILL`) ends a guest spinning in wasm at once: exit 137;
#   6. a second SIGTERM ends a guest that ignores terminate through wasmlet's kill switch:
#      exit 137, with wasmlet's message on stderr;
#   7. a Linux container (a static busybox, as a pod's pause container is a static binary) runs
#      natively under the same runtime: its exit code reaches ctr. Skipped without Debian's
#      busybox-static;
#   8. `ctr task exec` fails with the shim framework's clear refusal (it serves no exec: see
#      docs/kubernetes.md); this case fails once exec works, to be turned into a real one;
#   9. the CRI path the kubelet uses, driven by shim/cri-check against the CRI plugin of the same
#      containerd: RunPodSandbox with host network (the pause container: a static busybox image
#      built here, the CRI plugin's sandbox_image, so no registry is reached), CreateContainer,
#      StartContainer, ExecSync (the same refusal as 8), StopContainer with a timeout for a
#      cooperative guest (exit 0) and a spinning one (killed at the timeout: 137),
#      ContainerStatus's exit code and reason, the CRI log. Needs busybox-static too.
#      Known, not yet understood: about one run in five, the StartContainer that follows the
#      spinning guest's kill fails in the shim framework's container set-up (youki's
#      libcontainer: "failed to prepare rootfs"), before wasmlet is called.
#
# Needs root, containerd and ctr (Debian: `apt-get install -y containerd`), and builds the shim
# (`cargo build` in shim/, its own workspace, which needs protoc and libseccomp: Debian's
# protobuf-compiler and libseccomp-dev) and the example components
# (`cargo build -p wasmlet-examples` at the root) unless SKIP_BUILD=1. Honours CARGO_TARGET_DIR
# for the shim (without it, shim/target); the components are always in target/components.
#
# The images are built here rather than with runwasi's oci-tar-builder so that the test needs
# no tool beyond coreutils and tar: an OCI image layout (oci-layout, index.json, blobs) with
# plain JSON documents.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shim_target=${CARGO_TARGET_DIR:-$repo/shim/target}
started=$(date +%s)

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

[[ $(id -u) == 0 ]] || fail "needs root (containerd and the shim create namespaces and cgroups)"
for tool in containerd ctr sha256sum tar; do
    command -v "$tool" >/dev/null || fail "needs $tool (apt-get install -y containerd)"
done

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$repo/shim" && cargo build --workspace)
    (cd "$repo" && cargo build -p wasmlet-examples)
fi
shim="$shim_target/debug/containerd-shim-wasmlet-v1"
cri_check="$shim_target/debug/cri-check"
components="$repo/target/components"
for file in "$shim" "$cri_check" "$components/hello.wasm" "$components/faulty.wasm" "$components/cooperative.wasm" "$components/spinner.wasm"; do
    [[ -e $file ]] || fail "missing $file"
done

work=$(mktemp -d /tmp/wasmlet-shim-test.XXXXXX)
sock="$work/containerd.sock"
ns="wasmlet-test-$$"
containerd_pid=
cleanup() {
    set +e
    if [[ -n $containerd_pid ]]; then
        # The ctr cases' namespace, and the CRI plugin's (what cri-check left, if it failed).
        for n in "$ns" k8s.io; do
            for id in $(ctr -a "$sock" -n "$n" task ls -q 2>/dev/null); do
                ctr -a "$sock" -n "$n" task kill -s KILL "$id" >/dev/null 2>&1
            done
        done
        sleep 0.5
        for n in "$ns" k8s.io; do
            for id in $(ctr -a "$sock" -n "$n" task ls -q 2>/dev/null); do
                ctr -a "$sock" -n "$n" task delete -f "$id" >/dev/null 2>&1
            done
            for id in $(ctr -a "$sock" -n "$n" container ls -q 2>/dev/null); do
                ctr -a "$sock" -n "$n" container delete "$id" >/dev/null 2>&1
                # The shim framework's state of a CRI container; a node's own are left alone.
                [[ $n == k8s.io ]] && rm -rf "/run/containerd/wasmlet/k8s.io/$id"
            done
        done
        kill "$containerd_pid" 2>/dev/null
        wait "$containerd_pid" 2>/dev/null
    fi
    # The shim framework's container state (libcontainer's root for the namespace).
    rm -rf "/run/containerd/wasmlet/$ns"
    rmdir /run/containerd/wasmlet/k8s.io 2>/dev/null
    # Snapshots are mounts under the private root.
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# --- containerd ---------------------------------------------------------------------------
mkdir -p "$work/bin"
ln -s "$shim" "$work/bin/containerd-shim-wasmlet-v1"
cat >"$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"

[grpc]
  address = "$sock"

[ttrpc]
  address = "$work/containerd-ttrpc.sock"

# The CRI plugin's pause image is one built and imported below, so no registry is reached;
# the test's pods use the host's network, so no CNI plugin is needed.
# restrict_oom_score_adj: the CRI plugin gives a sandbox an oom_score_adj of -998, which some
# machines' kernels refuse to set (EIO, failing the sandbox's start under runc and the shim
# alike); restricted, no container's is set below containerd's own.
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/wasmlet/test-pause:latest"
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$work/cni/bin"
  conf_dir = "$work/cni/conf"

# What a node needs for Kubernetes (docs/kubernetes.md); ctr names the runtime itself. A config
# that names any runtime must name the default one (runc) too, or the CRI plugin does not load.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmlet]
  runtime_type = "io.containerd.wasmlet.v1"
EOF
# containerd finds the shim binary on its PATH by the runtime_type's name.
PATH="$work/bin:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do
    ctr -a "$sock" version >/dev/null 2>&1 && break
    kill -0 "$containerd_pid" 2>/dev/null || { cat "$work/containerd.log"; fail "containerd died"; }
    sleep 0.1
done
ctr -a "$sock" version >/dev/null || fail "containerd did not answer on $sock"
ctrn() { ctr -a "$sock" -n "$ns" "$@"; }

# --- images -------------------------------------------------------------------------------
case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
esac

# blob FILE MEDIA_TYPE: stores FILE in the layout's blobs, prints its descriptor.
blob() {
    local sha size
    sha=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    cp "$1" "$layout/blobs/sha256/$sha"
    printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$sha" "$size"
}

# image NAME OUT.tar CONFIG_JSON LAYER_DESCRIPTOR...: an OCI layout tar of one image.
image() {
    local name=$1 out=$2 config=$3
    shift 3
    local layers
    layers=$(IFS=,; echo "$*")
    printf '%s' "$config" >"$layout/config.json"
    local config_desc
    config_desc=$(blob "$layout/config.json" application/vnd.oci.image.config.v1+json)
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
        "$config_desc" "$layers" >"$layout/manifest.json"
    local manifest
    manifest=$(blob "$layout/manifest.json" application/vnd.oci.image.manifest.v1+json)
    printf '{"schemaVersion":2,"manifests":[%s]}' \
        "${manifest%\}},\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"latest\"}}" \
        >"$layout/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    rm "$layout/config.json" "$layout/manifest.json"
    tar -C "$layout" -cf "$out" oci-layout index.json blobs
}

# Image 1: a root filesystem holding the components; the command names the one to run.
layout="$work/layout-files"
mkdir -p "$layout/blobs/sha256" "$work/rootfs"
cp "$components/hello.wasm" "$components/faulty.wasm" "$components/cooperative.wasm" "$components/spinner.wasm" "$work/rootfs/"
busybox=
if [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; then
    busybox=/bin/busybox
    cp "$busybox" "$work/rootfs/busybox"
fi
tar -C "$work/rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
files_image=docker.io/wasmlet/test-components:latest
image "$files_image" "$work/files.tar" \
    "{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/hello.wasm\"],\"Env\":[\"GREETING=Hello\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_sha\"]}}" \
    "$(blob "$work/layer.tar" application/vnd.oci.image.layer.v1.tar)"

# Image 2: an OCI artifact whose component is an application/wasm layer, with no root
# filesystem layer at all (as runwasi's oci-tar-builder makes them).
layout="$work/layout-wasm"
mkdir -p "$layout/blobs/sha256"
wasm_image=docker.io/wasmlet/test-hello-artifact:latest
image "$wasm_image" "$work/wasm.tar" \
    "{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/hello.wasm\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}" \
    "$(blob "$components/hello.wasm" application/wasm)"

# Image 3: the pod sandbox's pause container, a static busybox that waits for its stop.
pause_image=docker.io/wasmlet/test-pause:latest
if [[ -n $busybox ]]; then
    layout="$work/layout-pause"
    mkdir -p "$layout/blobs/sha256" "$work/pause-root"
    cp "$busybox" "$work/pause-root/busybox"
    tar -C "$work/pause-root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/pause-layer.tar" .
    pause_sha=$(sha256sum "$work/pause-layer.tar" | cut -d' ' -f1)
    image "$pause_image" "$work/pause.tar" \
        "{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/busybox\",\"sh\",\"-c\",\"trap 'exit 0' TERM INT; while :; do /busybox sleep 3600 & wait; done\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$pause_sha\"]}}" \
        "$(blob "$work/pause-layer.tar" application/vnd.oci.image.layer.v1.tar)"
    # The CRI plugin's namespace.
    ctr -a "$sock" -n k8s.io image import "$work/pause.tar" >/dev/null || fail "importing $pause_image"
    ctr -a "$sock" -n k8s.io image import "$work/files.tar" >/dev/null || fail "importing $files_image for the CRI"
fi

ctrn image import "$work/files.tar" >/dev/null || fail "importing $files_image"
# containerd before 1.7 cannot unpack it: import it without, so that the refusal comes from
# `ctr run` below, where the check decides whether to skip.
ctrn image import --no-unpack "$work/wasm.tar" >/dev/null || fail "importing $wasm_image"

run() { ctrn run --rm --runtime io.containerd.wasmlet.v1 "$@"; }

passed=0
skipped=0
check() {
    echo "ok: $*"
    passed=$((passed + 1))
}

# --- 1. exit codes and output from a component file ---------------------------------------
# expect_run CODE TEXT ARGS...: `ctr run --rm ARGS` exits with CODE and prints TEXT.
expect_run() {
    local want=$1 text=$2 out code
    shift 2
    set +e
    out=$(run "$@" 2>&1)
    code=$?
    set -e
    [[ $code == "$want" ]] || fail "ctr run $*: exited $code, not $want; output: $out"
    [[ $out == *"$text"* ]] || fail "ctr run $*: no \"$text\" in output: $out"
}
expect_run 0 "Hi from a plain wasi:cli command!" --env GREETING=Hi "$files_image" hello /hello.wasm
check "exit code 0 and stdout of /hello.wasm reach ctr"
expect_run 1 "Hello from a plain wasi:cli command!" "$files_image" exit-code /hello.wasm --exit 7
check "exit code 1 of /hello.wasm --exit 7 reaches ctr"
expect_run 134 "wasmlet: Error: wasm trap:" --env FAULT=trap "$files_image" trap /faulty.wasm
check "exit code 134 and wasmlet's message for a trap reach ctr"

# --- 2. mounts and the working directory ------------------------------------------------------
mkdir -p "$work/volume"
echo "from the host" >"$work/volume/note"
out=$(run --mount "type=bind,src=$work/volume,dst=/data,options=rbind:ro" \
    "$files_image" mounts /hello.wasm --read /data/note --write /data/new text 2>&1) ||
    fail "hello.wasm with a volume: $out"
[[ $out == *"read /data/note: from the host"* ]] || fail "the volume's file was not read: $out"
[[ $out == *"write /data/new failed"* && ! -e $work/volume/new ]] ||
    fail "a read-only volume was written: $out"
# A plain Rust command starts in / whatever WASI says (docs/manifests.md); the SDK's guests
# enter the initial working directory.
out=$(run --mount "type=bind,src=$work/volume,dst=/data,options=rbind:ro" --cwd /data \
    --env SHOW_PWD=1 --env WORK_MS=10 "$files_image" cwd /cooperative.wasm 2>&1) ||
    fail "cooperative.wasm with a working directory: $out"
[[ $out == *"run: working directory /data"* ]] || fail "the working directory is not the spec's cwd: $out"
check "a read-only bind mount is readable, not writable, and the spec's cwd is the guest's"

# --- 3. the same from an application/wasm layer --------------------------------------------
containerd_version=$(containerd --version | awk '{print $3}' | sed 's/^v//; s/[~+-].*//')
if [[ $(printf '%s\n' 1.7 "$containerd_version" | sort -V | head -1) == 1.7 ]]; then
    expect_run 1 "Hello from a plain wasi:cli command!" "$wasm_image" artifact /hello.wasm --exit 7
    check "exit code and output of the application/wasm layer reach ctr"
else
    echo "skip: an application/wasm layer needs containerd 1.7 or later (this is $containerd_version)"
    skipped=$((skipped + 1))
fi

# --- 4. SIGTERM: a cooperative guest ends cleanly -------------------------------------------
# run_detached ID CMD...: starts a task, its output in $work/ID.out.
run_detached() {
    local id=$1
    shift
    ctrn run --runtime io.containerd.wasmlet.v1 "$files_image" "$id" "$@" >"$work/$id.out" 2>&1 &
}
wait_for_output() {
    local id=$1 text=$2
    for _ in $(seq 300); do
        grep -q "$text" "$work/$id.out" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$work/$id.out" >&2
    fail "$id never printed: $text"
}
run_detached coop /cooperative.wasm
wait_for_output coop "run: started"

# --- 8. exec (before the stop, while the container runs) -------------------------------------
set +e
exec_out=$(ctrn task exec --exec-id probe coop /busybox sh -c 'echo exec ran' 2>&1)
exec_code=$?
set -e
[[ $exec_code != 0 && $exec_out == *"not supported"* ]] ||
    fail "ctr task exec: expected the framework's refusal, got exit $exec_code: $exec_out"
check "ctr task exec fails clearly: the shim framework serves no exec ($(echo "$exec_out" | tail -1))"

began=$(date +%s%N)
ctrn task kill coop
wait $! && code=0 || code=$?
elapsed_ms=$((($(date +%s%N) - began) / 1000000))
ctrn container delete coop >/dev/null 2>&1 || true
[[ $code == 0 ]] || { cat "$work/coop.out"; fail "cooperative after SIGTERM: exit $code"; }
grep -qF "terminate received (TerminationReason::PodDeleted)" "$work/coop.out" || { cat "$work/coop.out"; fail "cooperative did not see terminate"; }
check "SIGTERM: cooperative.wasm saw terminate (pod-deleted) and exited 0 in ${elapsed_ms} ms"

# --- 5. SIGKILL: a spinning guest ends at once -----------------------------------------------
run_detached spin /spinner.wasm
wait_for_output spin "spinner: spinning"
began=$(date +%s%N)
ctrn task kill -s KILL spin
wait $! && code=0 || code=$?
elapsed_ms=$((($(date +%s%N) - began) / 1000000))
ctrn container delete spin >/dev/null 2>&1 || true
[[ $code == 137 ]] || { cat "$work/spin.out"; fail "spinner after SIGKILL: exit $code"; }
check "SIGKILL: spinner.wasm ended with 137 in ${elapsed_ms} ms"

# --- 6. a second SIGTERM: the kill switch ---------------------------------------------------
run_detached spin2 /spinner.wasm
wait_for_output spin2 "spinner: spinning"
ctrn task kill spin2
sleep 0.5
kill -0 $! 2>/dev/null || { cat "$work/spin2.out"; fail "spinner ended on the first SIGTERM"; }
began=$(date +%s%N)
ctrn task kill spin2
wait $! && code=0 || code=$?
elapsed_ms=$((($(date +%s%N) - began) / 1000000))
ctrn container delete spin2 >/dev/null 2>&1 || true
[[ $code == 137 ]] || { cat "$work/spin2.out"; fail "spinner after a second SIGTERM: exit $code"; }
grep -q "wasmlet: Killed: killed" "$work/spin2.out" || { cat "$work/spin2.out"; fail "no kill message"; }
check "second SIGTERM: the kill switch ended spinner.wasm with 137 in ${elapsed_ms} ms"

# --- 7. a Linux container through the same shim ---------------------------------------------
if [[ -n $busybox ]]; then
    expect_run 3 "native linux" "$files_image" native /busybox sh -c 'echo native linux; exit 3'
    check "a Linux container (static busybox) runs natively under the shim: exit code 3"
else
    echo "skip: no static /bin/busybox (apt-get install -y busybox-static) for a Linux container"
    skipped=$((skipped + 1))
fi

# --- 9. the CRI path --------------------------------------------------------------------------
if [[ -n $busybox ]]; then
    mkdir -p "$work/pod-logs"
    set +e
    "$cri_check" --socket "$sock" --logs "$work/pod-logs" --image "$files_image" --handler wasmlet \
        >"$work/cri.out" 2>&1
    cri_code=$?
    set -e
    cat "$work/cri.out"
    [[ $cri_code == 0 ]] || { tail -30 "$work/containerd.log" >&2; fail "cri-check failed"; }
    passed=$((passed + $(grep -c '^ok: ' "$work/cri.out")))
else
    echo "skip: the CRI path needs a pause image made from a static /bin/busybox (busybox-static)"
    skipped=$((skipped + 1))
fi

echo "$passed passed, 0 failed, $skipped skipped"
echo "took $(($(date +%s) - started)) s"
