//! One container's main process run by a front end other than wasmlet's pods — a containerd
//! shim, where containerd and the kubelet own the lifecycle and wasmlet only runs the guest.
//!
//! [`Standalone`] is the runtime layer (engine, guest runtime, epoch ticker) for one such
//! front end; [`Standalone::load`] compiles a component with the same checks as a pod's;
//! [`Standalone::run`] starts its `wasi:cli/run` and returns a [`Running`] container, waited for
//! with its exit code as wasmlet reports it in a pod's status. Its [`Control`] delivers
//! terminate (what `wasmlet:lifecycle/control` reports to the guest) and kills it (the same kill
//! switch as a pod's grace deadline).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::events::{LogLine, LogSource, LogStream};
use crate::runtime::{
    Compilation, ContainerContext, CpuControl, EmbedderScope, Entry, Imports, InstanceDone,
    InstanceEnd, KillSwitch, Launcher, LoadedContainer, MemoryBudget, Mount, Runtime,
    RuntimeConfig,
};
use crate::{EXIT_KILLED, EXIT_TRAPPED, TerminationReason};

/// A compiled component, as [`Standalone::load`] gives it.
pub use crate::runtime::LoadedComponent;

/// How a [`Standalone`] runs its guests.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// How long a CPU-bound guest runs before it yields (the epoch tick).
    pub time_slice: Duration,
    /// Worker threads executing guests.
    pub guest_threads: usize,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        StandaloneConfig {
            time_slice: Duration::from_millis(2),
            guest_threads: 1,
        }
    }
}

/// The runtime layer for containers run one at a time by another front end.
pub struct Standalone {
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone").finish_non_exhaustive()
    }
}

/// A directory of the host the guest sees at `guest_path` (a WASI preopen).
#[derive(Debug, Clone)]
pub struct StandaloneMount {
    /// The directory on the host (or inside the container's root, for a shim).
    pub host_path: PathBuf,
    /// Where the guest sees it.
    pub guest_path: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// Where the lines a guest writes go: called with each line, without its newline, as it is
/// written.
pub type OutputSink = Arc<dyn Fn(LogStream, &str) + Send + Sync>;

/// What the main process of a container is given.
pub struct StandaloneCommand {
    /// The container's name (its output lines carry it).
    pub name: String,
    /// argv, as the guest sees it.
    pub args: Vec<String>,
    /// The environment.
    pub env: Vec<(String, String)>,
    /// The initial working directory.
    pub working_dir: Option<String>,
    /// Preopened directories.
    pub mounts: Vec<StandaloneMount>,
    /// The container's memory limit in bytes, enforced by wasmlet across its instances.
    pub memory_limit: Option<u64>,
    /// Where each line the guest writes goes.
    pub output: OutputSink,
}

impl std::fmt::Debug for StandaloneCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneCommand")
            .field("name", &self.name)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("working_dir", &self.working_dir)
            .field("mounts", &self.mounts)
            .field("memory_limit", &self.memory_limit)
            .finish_non_exhaustive()
    }
}

/// How a container's main process ended, as wasmlet reports it in a pod's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneExit {
    /// The exit code: the guest's own, 1 when `run` returned an error, 137 when killed (or out
    /// of memory), 134 for a trap.
    pub code: i32,
    /// The status reason wasmlet gives: `Completed`, `Error`, `Killed` or `OOMKilled`.
    pub reason: &'static str,
    /// What happened, when there is more to say than the code.
    pub message: Option<String>,
}

impl Standalone {
    /// Starts the engine, the guest runtime and the epoch ticker.
    pub fn start(config: StandaloneConfig) -> anyhow::Result<Standalone> {
        let runtime = Runtime::start(RuntimeConfig {
            time_slice: config.time_slice,
            guest_threads: config.guest_threads,
            // The container is the unit of scheduling here: its cgroup shares CPU among
            // containers, and nothing of wasmlet's own competes with the guest.
            guest_niceness: 0,
            clock: None,
            compile_cache: None,
            instance_pool: None,
            // One component per process, compiled once: the optimising compiler's code from
            // the start, as nothing would be left to swap the baseline build for.
            quick_first_start: None,
        })?;
        Ok(Standalone { runtime })
    }

    /// Compiles the component `bytes` (`name` names it in errors), with the checks a pod's
    /// components get: a component, not a core module, that imports only what wasmlet provides.
    pub fn load(&self, bytes: &[u8], name: &Path) -> anyhow::Result<Arc<LoadedComponent>> {
        let wasm = &self.runtime.wasm;
        Ok(Arc::new(LoadedComponent::from_bytes(
            &wasm.engine,
            None,
            &wasm.linker,
            bytes,
            name,
            // No embedder's interfaces: a container run alone imports only what wasmlet provides.
            &[],
        )?))
    }

    /// Starts `component`'s `wasi:cli/run` as the main process of a container.
    pub fn run(
        &self,
        component: Arc<LoadedComponent>,
        command: StandaloneCommand,
    ) -> anyhow::Result<Running> {
        anyhow::ensure!(
            component.exports(Entry::Run),
            "the component does not export `wasi:cli/run`; a container's main process must be \
             a command component"
        );
        let context = ContainerContext::new(
            self.runtime.clock.clone(),
            self.runtime.clock_origin,
            MemoryBudget::new(command.memory_limit, None),
            // The container's cgroup limits its CPU; wasmlet measures nothing.
            CpuControl::new(
                Vec::new(),
                None,
                &self.runtime.fair_share,
                Arc::new(AtomicU64::new(0)),
            ),
        );
        let output = command.output;
        let launcher = Launcher {
            runtime: self.runtime.clone(),
            name: command.name.as_str().into(),
            loaded: LoadedContainer {
                main: component.clone(),
                exec: Default::default(),
                shell: None,
                load_time: Duration::ZERO,
                compilation: Compilation::Optimized,
            },
            context: context.clone(),
            argv: command.args,
            env: command.env,
            working_dir: command.working_dir,
            mounts: command
                .mounts
                .into_iter()
                .map(|m| Mount::new(m.host_path, m.guest_path, m.read_only))
                .collect(),
            tmp_dir: None,
            log_sink: Arc::new(move |line: LogLine| output(line.stream, &line.line)),
            // No embedder's interfaces to link (see `load`), so no state is made for them.
            embedder: Arc::new(EmbedderScope {
                imports: Imports::default(),
                pod: String::new(),
                namespace: String::new(),
                container: command.name.clone(),
            }),
        };
        let io = launcher.io(LogSource::Main, launcher.argv(), false);
        let (kill, done) = launcher.spawn(component, Entry::Run, io);
        Ok(Running {
            control: Control { context, kill },
            done,
        })
    }
}

/// A container's main process, running.
pub struct Running {
    control: Control,
    done: InstanceDone,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// What can be done to a running container from elsewhere (a signal handler): terminate it, or
/// kill it. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    context: Arc<ContainerContext>,
    kill: KillSwitch,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("terminating", &self.terminating())
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Delivers terminate to the guest (`wasmlet:lifecycle/control`), as a pod's stop does:
    /// the guest's termination pollables wake, and `termination-requested` reports `reason`,
    /// `message` and a grace period of `grace`, counted from now. The grace period only
    /// informs the guest: the kill at its end is the caller's to make ([`Control::kill`]).
    /// Delivered once; later calls change nothing.
    pub fn terminate(&self, reason: TerminationReason, message: String, grace: Duration) {
        if self.context.terminating() {
            return;
        }
        let now = self.context.clock.now();
        let deadline = now.checked_add(grace).unwrap_or(now);
        self.context.start_grace(now, deadline);
        self.context.deliver_terminate(reason, message);
    }

    /// Whether terminate has been delivered.
    pub fn terminating(&self) -> bool {
        self.context.terminating()
    }

    /// Kills the guest now, wherever it is (running wasm, blocked in a host call). Returns
    /// whether this call did it (false: it was killed already).
    pub fn kill(&self) -> bool {
        self.kill.kill()
    }
}

impl Running {
    /// The handle that terminates or kills this container.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Waits for the guest to end, and says how it did.
    pub async fn wait(self) -> StandaloneExit {
        let end = self.done.await.unwrap_or_else(|_| InstanceEnd::lost());
        exit_of(end, self.control.context.grace_period())
    }
}

/// The exit code, reason and message wasmlet reports for a main process that ended with `end`
/// (`grace`: the grace period of the stop in progress, if any).
fn exit_of(end: InstanceEnd, grace: Option<Duration>) -> StandaloneExit {
    let (code, reason, message) = match end {
        InstanceEnd::Returned(Ok(())) | InstanceEnd::Exited(0) => (0, "Completed", None),
        InstanceEnd::Returned(Err(_)) | InstanceEnd::NotImplemented => {
            (1, "Error", Some("run returned an error".to_string()))
        }
        InstanceEnd::Exited(code) => (code, "Error", None),
        InstanceEnd::Trapped {
            message,
            out_of_memory: true,
        } => (
            EXIT_KILLED,
            "OOMKilled",
            Some(format!("memory limit reached: {message}")),
        ),
        InstanceEnd::Trapped { message, .. } => {
            (EXIT_TRAPPED, "Error", Some(format!("wasm trap: {message}")))
        }
        InstanceEnd::Killed { location, at: _ } => {
            let grace = grace
                .map(|grace| {
                    format!(
                        " after a grace period of {}",
                        humantime::format_duration(grace)
                    )
                })
                .unwrap_or_default();
            (
                EXIT_KILLED,
                "Killed",
                Some(format!("killed{grace} {location}")),
            )
        }
    };
    StandaloneExit {
        code,
        reason,
        message,
    }
}
