//! [`Launcher`]: what every instance of one run of a container is made from — its components,
//! its context, its command line, environment, files and log sink — with no knowledge of who
//! runs the container (a pod, or another front end).

use std::sync::Arc;

use super::Runtime;
use super::component::{Entry, LoadedComponent, LoadedContainer};
use super::context::ContainerContext;
use super::end::InstanceDone;
use super::imports::EmbedderScope;
use super::instance::spawn_instance;
use super::kill::KillSwitch;
use super::logs::LogTarget;
use super::mount::Mount;
use super::store::InstanceIo;
use super::tmp_dirs::ContainerTmp;
use crate::events::{LogLine, LogSource};

/// Where a container's output lines go.
pub(crate) type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// What every instance of one run of a container is made from.
pub(crate) struct Launcher {
    /// The runtime its instances run on.
    pub runtime: Arc<Runtime>,
    /// The container's name (its log lines carry it).
    pub name: Arc<str>,
    /// Its compiled components.
    pub loaded: LoadedContainer,
    pub context: Arc<ContainerContext>,
    /// Its argv, resolved.
    pub argv: Vec<String>,
    /// Its environment, resolved.
    pub env: Vec<(String, String)>,
    /// The initial working directory (`workingDir`).
    pub working_dir: Option<String>,
    /// Its volume mounts, resolved.
    pub mounts: Vec<Mount>,
    /// Its private /tmp, if it has one (made when an instance first needs it).
    pub tmp_dir: Option<Arc<ContainerTmp>>,
    /// Where its instances' output goes.
    pub log_sink: LogSink,
    /// The embedder's host interfaces its instances are linked with, and whose they are.
    pub embedder: Arc<EmbedderScope>,
}

impl Launcher {
    /// Starts an instance of `component` calling `entry`, as part of this container.
    pub fn spawn(
        &self,
        component: Arc<LoadedComponent>,
        entry: Entry,
        io: InstanceIo,
    ) -> (KillSwitch, InstanceDone) {
        spawn_instance(&self.runtime, component, entry, self.context.clone(), io)
    }

    /// The container's argv.
    pub fn argv(&self) -> Vec<String> {
        self.argv.clone()
    }

    /// An instance's I/O: `argv`, the container's env and files, and output to its log sink
    /// (kept for a hook's event when `capture`).
    pub fn io(&self, source: LogSource, argv: Vec<String>, capture: bool) -> InstanceIo {
        InstanceIo {
            args: argv,
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            mounts: self.mounts.clone(),
            tmp_dir: self.tmp_dir.clone(),
            logs: LogTarget::new(
                self.name.clone(),
                source,
                self.runtime.clock.clone(),
                self.log_sink.clone(),
                capture,
            ),
            http: None,
            call: None,
            embedder: Some(self.embedder.clone()),
        }
    }
}
