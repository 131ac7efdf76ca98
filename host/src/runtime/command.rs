//! A command run to its end outside any pod ([`run_command`]): one instance of a component, with
//! directories of the host mounted and its output kept. What deterministic mode checks the
//! files a pod left behind with.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::component::{Entry, LoadedComponent};
use super::context::ContainerContext;
use super::cpu::CpuControl;
use super::end::InstanceEnd;
use super::instance::spawn_instance;
use super::logs::LogTarget;
use super::memory::MemoryBudget;
use super::mount::Mount;
use super::{InstanceIo, Runtime};
use crate::events::LogSource;

/// How a command ended, and what it printed (stdout and stderr, the last lines).
#[derive(Debug, Clone)]
pub(crate) struct CommandOutcome {
    /// Its exit code, as a container's would be (0 on success, 137 if killed, 134 if trapped).
    pub exit_code: i32,
    /// Why, when it is not 0: the guest's error or trap.
    pub failure: Option<String>,
    /// The last lines it printed.
    pub output: Vec<String>,
}

/// Runs `component` (its `run`) with `argv` and `mounts` to its end, on `runtime`, under the
/// name `name` (for its log lines, which go nowhere but the outcome).
pub(crate) async fn run_command(
    runtime: &Arc<Runtime>,
    name: &str,
    component: Arc<LoadedComponent>,
    argv: Vec<String>,
    mounts: Vec<Mount>,
) -> CommandOutcome {
    let context = ContainerContext::new(
        runtime.clock.clone(),
        runtime.clock_origin,
        MemoryBudget::new(None, None),
        CpuControl::new(
            Vec::new(),
            None,
            &runtime.fair_share,
            Arc::new(AtomicU64::new(0)),
        ),
    );
    let logs = LogTarget::new(
        name.into(),
        LogSource::Main,
        runtime.clock.clone(),
        Arc::new(|_| {}),
        true,
    );
    let io = InstanceIo {
        args: argv,
        env: Vec::new(),
        working_dir: None,
        mounts,
        tmp_dir: None,
        logs: logs.clone(),
        http: None,
        call: None,
        // Commands are linked with wasmlet's own imports alone.
        embedder: None,
    };
    let (_switch, done) = spawn_instance(runtime, component, Entry::Run, context, io);
    let end = done.await.unwrap_or_else(|_| InstanceEnd::lost());
    let (exit_code, failure) = match end {
        InstanceEnd::Returned(Ok(())) | InstanceEnd::NotImplemented => (0, None),
        InstanceEnd::Returned(Err(message)) => (1, Some(message)),
        InstanceEnd::Exited(code) => (code, None),
        InstanceEnd::Trapped { message, .. } => (134, Some(format!("trapped: {message}"))),
        InstanceEnd::Killed { location, .. } => (137, Some(format!("killed {location}"))),
    };
    CommandOutcome {
        exit_code,
        failure,
        output: logs.captured(),
    }
}
