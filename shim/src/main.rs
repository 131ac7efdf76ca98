//! `containerd-shim-wasmlet-v1`: the containerd shim that runs wasmlet components as containers,
//! for `runtime_type = "io.containerd.wasmlet.v1"`.
//!
//! runwasi's shim framework (`containerd-shim-wasm`) does the containerd side: the ttrpc
//! service, the OCI bundle, the container's namespaces, cgroup and root filesystem (through
//! youki's libcontainer), its stdio, non-wasm containers such as the pod's pause container, and
//! images whose component is an `application/wasm` layer. This binary is the [`Sandbox`] it
//! calls inside the container's process: it loads the component with wasmlet's runtime layer and
//! runs its `wasi:cli/run`.
//!
//! Signals reach that process (containerd's `Kill` signals the container's init process, which
//! is the one running the guest):
//! - SIGTERM (the stop signal: `ctr task kill`, the kubelet's stop) or SIGINT delivers wasmlet's
//!   terminate with reason `pod-deleted`, which a cooperative guest sees through
//!   `wasmlet:lifecycle/control` and answers by returning from `run`;
//! - a second SIGTERM or SIGINT, or a SIGQUIT, kills the guest at once through wasmlet's kill
//!   switch (exit code 137), as runwasi's own wasmtime shim ends its guest on a signal it does
//!   not treat as graceful;
//! - SIGKILL (the kubelet's at the end of the grace period, `ctr task kill -s KILL`) cannot be
//!   caught: the kernel ends the process, wherever the guest is, and containerd reports exit
//!   code 137 (128 + 9), the code wasmlet gives its own kills.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use containerd_shim_wasm::shim::{Cli, Config, Shim, Version, version};
use tokio::signal::unix::{SignalKind, signal};
use wasmlet::LogStream;
use wasmlet::TerminationReason;
use wasmlet::standalone::{
    Control, Standalone, StandaloneCommand, StandaloneConfig, StandaloneMount,
};

/// The grace period the guest is told of when SIGTERM arrives.
///
/// containerd does not say how long it (or the kubelet behind it) will wait before SIGKILL, so
/// the grace left is unknown here: the guest is told Kubernetes' default
/// `terminationGracePeriodSeconds`, 30 seconds. The real deadline is the SIGKILL, whenever it
/// comes; a pod with another grace period gets its SIGKILL sooner or later than the guest's
/// `grace-remaining` says.
const ASSUMED_GRACE: Duration = Duration::from_secs(30);

struct WasmletShim;

impl Shim for WasmletShim {
    type Sandbox = WasmletSandbox;

    fn name() -> &'static str {
        "wasmlet"
    }

    fn version() -> Version {
        version!()
    }
}

/// Runs one container's component with wasmlet's runtime layer.
#[derive(Default)]
struct WasmletSandbox;

impl Sandbox for WasmletSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
        // First of all: the container's init process ignores SIGTERM from outside its PID
        // namespace unless it handles it.
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;

        let entrypoint = ctx.entrypoint();
        let name = entrypoint.name.clone().unwrap_or_else(|| "main".into());
        let origin = match &entrypoint.source {
            Source::File(path) => path.clone(),
            Source::Oci(_) => PathBuf::from(format!("{name} (the image's wasm layer)")),
        };
        if entrypoint.source.is_precompiled()? {
            anyhow::bail!(
                "`{}` is precompiled; wasmlet runs components",
                origin.display()
            );
        }
        let bytes = entrypoint.source.as_bytes()?;
        let standalone = Standalone::start(StandaloneConfig::default())?;
        let component = standalone.load(&bytes, &origin)?;
        drop(bytes);

        let command = StandaloneCommand {
            name,
            args: ctx.args().to_vec(),
            env: ctx
                .envs()
                .iter()
                .map(|var| {
                    let (key, value) = var.split_once('=').unwrap_or((var, ""));
                    (key.to_string(), value.to_string())
                })
                .collect(),
            // libcontainer has moved the process to the spec's `cwd`, inside the container's
            // root.
            working_dir: std::env::current_dir()
                .ok()
                .map(|dir| dir.to_string_lossy().into_owned()),
            mounts: container_mounts(),
            // The container's cgroup enforces the spec's memory limit.
            memory_limit: None,
            output: Arc::new(write_line),
        };
        log::info!(
            "running {:?} in {:?} with preopens {:?}",
            command.args,
            command.working_dir,
            command.mounts
        );
        let running = standalone.run(component, command)?;
        let control = running.control();
        let signals = async {
            #[allow(clippy::infinite_loop)]
            loop {
                tokio::select! {
                    _ = terminate.recv() => stop(&control, "SIGTERM"),
                    _ = interrupt.recv() => stop(&control, "SIGINT"),
                    _ = quit.recv() => {
                        log::info!("SIGQUIT: killing the guest");
                        control.kill();
                    }
                }
            }
        };
        let exit = tokio::select! {
            exit = running.wait() => exit,
            () = signals => unreachable!("the signal loop never ends"),
        };
        if let Some(message) = &exit.message {
            write_line(
                LogStream::Stderr,
                &format!("wasmlet: {}: {message}", exit.reason),
            );
        }
        log::info!("guest ended: exit code {} ({})", exit.code, exit.reason);
        Ok(exit.code)
    }
}

/// What the guest sees: the container's root filesystem at `/`, and each mount in it (the
/// spec's mounts, which are the Pod's volumes) at its own path, read-only when it is mounted
/// read-only, so that the guest is refused a write with WASI's own error rather than the
/// kernel's. The kernel's own file systems (`/proc`, `/sys`, `/dev`) are no preopens of their
/// own: they are reachable under `/` as in any container.
fn container_mounts() -> Vec<StandaloneMount> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts = Vec::new();
    let mut root_read_only = false;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let point = unescape_mount_point(point);
        let read_only = options.split(',').any(|option| option == "ro");
        if point == "/" {
            root_read_only = read_only;
            continue;
        }
        let kernel = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|fs| point == *fs || point.starts_with(&format!("{fs}/")));
        if kernel || !std::path::Path::new(&point).is_dir() {
            continue;
        }
        // A mount listed again (mounted over) keeps the last flags.
        mounts.retain(|mount: &StandaloneMount| mount.guest_path != point);
        mounts.push(StandaloneMount {
            host_path: point.clone().into(),
            guest_path: point,
            read_only,
        });
    }
    mounts.insert(
        0,
        StandaloneMount {
            host_path: "/".into(),
            guest_path: "/".into(),
            read_only: root_read_only,
        },
    );
    mounts
}

/// A mount point as `/proc/self/mountinfo` writes it: space, tab, newline and backslash as
/// octal escapes.
fn unescape_mount_point(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGTERM or SIGINT: terminate the first time, kill the next.
fn stop(control: &Control, signal: &str) {
    if control.terminating() {
        log::info!("{signal} again: killing the guest");
        control.kill();
    } else {
        log::info!("{signal}: delivering terminate to the guest");
        control.terminate(
            TerminationReason::PodDeleted,
            format!("{signal} from the container runtime"),
            ASSUMED_GRACE,
        );
    }
}

/// A line the guest wrote, to the container's stdout or stderr (containerd's fifos, the
/// process's own stdio).
fn write_line(stream: LogStream, line: &str) {
    // A closed log pipe must not end the guest.
    let _ = match stream {
        LogStream::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
        LogStream::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
    };
}

fn main() {
    WasmletShim::run(Config::default());
}

#[cfg(test)]
mod tests {
    use super::unescape_mount_point;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point("/data"), "/data");
        assert_eq!(unescape_mount_point(r"/my\040data\134x"), r"/my data\x");
        assert_eq!(unescape_mount_point(r"/odd\09"), r"/odd\09");
    }
}
