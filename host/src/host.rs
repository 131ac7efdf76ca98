//! The [`Host`], wasmlet's public face: it starts the runtime guests execute on
//! ([`crate::runtime`]) and starts pods on it ([`crate::lifecycle`]), loading their components
//! first.
//!
//! Two kinds of work are kept apart on purpose. Guests execute on the runtime's own
//! multi-threaded tokio runtime (the *guest runtime*). Pod supervision (state machines, events,
//! statuses) runs on the caller's runtime, and deadlines run on the clock's thread. So a host
//! full of spinning guests still supervises, times out and kills on time.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::bindings::TerminationReason;
use crate::clock::Clock;
use crate::config::HostConfig;
use crate::lifecycle::node::Node;
use crate::lifecycle::phase_is_final;
use crate::lifecycle::pod::{LoadedPod, Pod};
use crate::lifecycle::shared::network::pod_address;
use crate::lifecycle::shared::{PodShared, PodVolume};
use crate::manifest::PodSpec;
use crate::runtime::{
    DeterministicGuests, Entry, Imports, LoadedContainer, Runtime, RuntimeConfig, WasmEngine,
};

/// A snapshot of what a [`Host`] holds ([`Host::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    /// Guest instances alive (main, hooks, HTTP handlers, exec commands), each with its store.
    pub live_instances: usize,
    /// Tasks alive on the runtime that executes guests (instances, hook sleeps, listeners,
    /// connections); in deterministic mode, the simulation's own runtime.
    pub guest_tasks: usize,
    /// Containers' private `/tmp` directories on disk: those of running containers, and those
    /// of ended ones not yet removed (their removal runs on a blocking thread).
    pub tmp_dirs: usize,
}

/// Runs pods. Create one per process and share it (it is cheap to clone).
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Node>,
    /// The pods started, for [`Host::shutdown`].
    pods: Arc<Mutex<PodRegistry>>,
}

/// The pods a host started, and whether it is shutting down. One lock for both, so that a pod
/// either starts before a shutdown (and is stopped by it) or is refused.
#[derive(Default)]
struct PodRegistry {
    /// Weak: a pod that ended and that nobody holds goes away.
    pods: Vec<std::sync::Weak<PodShared>>,
    /// How many times `Host::shutdown` was called.
    shutdowns: u32,
}

impl PodRegistry {
    /// The pods that have not ended.
    fn live_pods(&self) -> Vec<Pod> {
        (self.pods.iter())
            .filter_map(|pod| {
                Some(Pod {
                    shared: pod.upgrade()?,
                })
            })
            .filter(|pod| !phase_is_final(&pod.status()))
            .collect()
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("node_name", &self.inner.node_name)
            .field("scheduling", &self.inner.runtime.scheduling.name())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What [`Host::load_component`] found in a component: its entrypoints, and the lifecycle hooks
/// it implements itself (wasmlet starts no hook instance for one it lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComponentInfo {
    /// It exports `wasi:cli/run`: it runs as a container's main process or an exec command.
    pub run: bool,
    /// It exports `wasi:http/incoming-handler`: it serves HTTP on its container's ports.
    pub http_handler: bool,
    /// It implements the postStart hook of `wasmlet:lifecycle/hooks`.
    pub post_start: bool,
    /// It implements the preStop hook of `wasmlet:lifecycle/hooks`.
    pub pre_stop: bool,
}

impl Host {
    /// Creates a host: the engine, the guest runtime, the clock, the epoch ticker and the thread
    /// that hands memory freed by ended instances back to the system.
    pub fn new(config: HostConfig) -> anyhow::Result<Host> {
        let runtime = Runtime::start(RuntimeConfig {
            time_slice: config.time_slice,
            guest_threads: config.guest_threads,
            guest_niceness: config.guest_niceness,
            // A host keeps real time; deterministic mode, on a virtual clock, is
            // `testing::Simulation`.
            clock: None,
            compile_cache: config.compile_cache.clone(),
            instance_pool: config.instance_pool,
            quick_first_start: config.quick_first_start,
        })?;
        Ok(Host {
            inner: Arc::new(Node::new(runtime, config)),
            pods: Default::default(),
        })
    }

    /// A host in deterministic mode: guests run on `runtime` (the caller's single thread) with
    /// fuel-based time slices, and everything keeps time on the virtual clock; `faults` are
    /// injected at the host's boundary.
    pub(crate) fn deterministic(
        wasm: Arc<WasmEngine>,
        runtime: tokio::runtime::Handle,
        config: HostConfig,
        guests: DeterministicGuests,
        faults: crate::lifecycle::faults::Faults,
    ) -> Host {
        let runtime = Runtime::deterministic(wasm, runtime, guests);
        Host {
            inner: Arc::new(Node::deterministic(runtime, config, faults)),
            pods: Default::default(),
        }
    }

    /// The clock this host runs on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// What the host holds now: for monitoring, and for tests that check nothing is left.
    pub fn stats(&self) -> HostStats {
        HostStats {
            live_instances: self.inner.runtime.ticker.live_instances(),
            guest_tasks: self.inner.runtime.guests.metrics().num_alive_tasks(),
            tmp_dirs: self.inner.tmp_dirs.in_use(),
        }
    }

    /// Compiles the component at `path` (or reuses the compiled one if the file is unchanged)
    /// and checks that wasmlet provides all it imports, as starting a pod does: a way to
    /// check a component, or to compile it ahead of the pods that run it. Says what it found.
    pub fn load_component(&self, path: impl AsRef<Path>) -> anyhow::Result<ComponentInfo> {
        let (component, _) = (self.inner.runtime.wasm)
            .load_component_with(path.as_ref(), &self.inner.config.imports)?;
        Ok(ComponentInfo {
            run: component.exports(Entry::Run),
            http_handler: component.exports(Entry::Handle),
            post_start: component.has_post_start(),
            pre_stop: component.has_pre_stop(),
        })
    }

    /// Large components being compiled by the optimising compiler in the background: they
    /// started on the baseline compiler's code, and their optimised build goes into the compile
    /// cache for later loads.
    pub fn background_compiles(&self) -> usize {
        self.inner.runtime.wasm.optimizing()
    }

    /// Waits until the background compiles are done (their builds in the compile cache).
    pub async fn finish_background_compiles(&self) {
        let wasm = self.inner.runtime.wasm.clone();
        let _ = tokio::task::spawn_blocking(move || wasm.finish_optimizing()).await;
    }

    /// Runs a command to its end outside any pod, with each `(host directory, guest path)` of
    /// `mounts` mounted read-only: `argv[0]` is `sh` (wasmlet's bundled shell) or the path of a
    /// component file, and is the instance's whole argv, as an exec's. What deterministic mode
    /// checks the files a pod left behind with.
    pub(crate) async fn run_command(
        &self,
        name: &str,
        argv: Vec<String>,
        mounts: Vec<(std::path::PathBuf, String)>,
    ) -> anyhow::Result<crate::runtime::CommandOutcome> {
        let runtime = &self.inner.runtime;
        let program = argv.first().context("an empty command")?;
        let component = match program.as_str() {
            "sh" | "/bin/sh" | "/usr/bin/sh" => {
                runtime.wasm.shell().context("loading wasmlet's sh")?
            }
            path => {
                runtime
                    .wasm
                    .load_component(Path::new(path))
                    .with_context(|| format!("loading the command `{path}`"))?
                    .0
            }
        };
        let mounts = mounts
            .into_iter()
            .map(|(host, guest)| crate::runtime::Mount::new(host, guest, true))
            .collect();
        Ok(crate::runtime::run_command(runtime, name, component, argv, mounts).await)
    }

    /// Waits for `duration` on the host's clock (what `wasmlet run --stop-after` waits on).
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        crate::clock::sleep(&self.inner.clock, duration)
    }

    /// Starts a pod: compiles its components (an error here starts nothing), then starts every
    /// container. Supervision runs as tasks on the calling tokio runtime; the returned [`Pod`]
    /// watches, deletes and awaits it.
    pub async fn start_pod(&self, spec: PodSpec) -> anyhow::Result<Pod> {
        self.start_pod_with(spec, Imports::new()).await
    }

    /// Starts a pod as [`Host::start_pod`] does, whose guests may also import `imports`: host
    /// interfaces of the embedder's for this pod alone, besides the host's
    /// ([`HostConfig::imports`]).
    pub async fn start_pod_with(&self, spec: PodSpec, imports: Imports) -> anyhow::Result<Pod> {
        let imports = self.inner.config.imports.and(&imports);
        // As the kubelet's CreateContainerConfigError: what the pod reads must be there.
        anyhow::ensure!(
            spec.missing.is_empty(),
            "pod `{}` cannot start: {}",
            spec.name,
            spec.missing.join("; ")
        );
        // Components loaded before are found in place; compiling one may take seconds, which
        // is done on a blocking thread.
        let off_thread = self.inner.runtime.scheduling.loads_off_thread();
        let loaded = match self.load_pod_components(&spec, imports.clone(), !off_thread)? {
            Some(loaded) => loaded,
            None => {
                let host = self.clone();
                let spec_for_load = spec.clone();
                tokio::task::spawn_blocking(move || {
                    host.load_pod_components(&spec_for_load, imports, true)
                })
                .await
                .context("loading components")??
                .expect("loads that may compile find every component")
            }
        };
        let address = pod_address(self.inner.config.http_address, spec.replica)
            .map_err(|why| anyhow::anyhow!("pod `{}` cannot start: {why}", spec.name))?;
        let uid = spec.uid.clone().unwrap_or_else(|| self.inner.new_uid());
        let volumes = PodVolume::prepare(&spec, &self.inner, &uid, address)?;
        let mut registry = self.pods.lock().unwrap();
        anyhow::ensure!(
            registry.shutdowns == 0,
            "pod `{}` not started: the host is shutting down",
            spec.name
        );
        let pod = Pod::start(self.inner.clone(), spec, uid, address, loaded, volumes);
        registry.pods.retain(|pod| pod.strong_count() > 0);
        registry.pods.push(Arc::downgrade(&pod.shared));
        Ok(pod)
    }

    /// Stops every pod of the host at once, as `wasmlet run` does on SIGTERM: each gets its
    /// preStop hook, then terminate with reason [`TerminationReason::HostShutdown`], then the
    /// kill when its grace period runs out — `grace` for all of them, or with `None` each pod's
    /// own (its manifest's, else [`HostConfig::default_grace_period`]). From the first call on,
    /// [`Host::start_pod`] refuses new pods.
    ///
    /// A second call kills every pod at once, as a second signal does ([`Host::kill_all`]).
    /// The stop begins when this is called; the returned future resolves when every pod has
    /// ended, and dropping it stops nothing.
    pub fn shutdown(&self, grace: Option<Duration>) -> impl Future<Output = ()> + Send + 'static {
        let (pods, first) = {
            let mut registry = self.pods.lock().unwrap();
            registry.shutdowns = registry.shutdowns.saturating_add(1);
            (registry.live_pods(), registry.shutdowns == 1)
        };
        for pod in &pods {
            if first {
                pod.stop(
                    grace,
                    TerminationReason::HostShutdown,
                    "the host is shutting down",
                );
            } else {
                pod.kill();
            }
        }
        async move {
            for pod in pods {
                pod.wait().await;
            }
        }
    }

    /// Kills every pod of the host now: no preStop, no terminate, whatever stop is in progress
    /// ([`Pod::kill`] for each). It does not wait for them to end; [`Pod::wait`] does.
    pub fn kill_all(&self) {
        let pods = self.pods.lock().unwrap().live_pods();
        for pod in pods {
            pod.kill();
        }
    }

    /// The pods of the host that have not ended yet.
    pub fn pods(&self) -> Vec<Pod> {
        self.pods.lock().unwrap().live_pods()
    }

    /// `compile`: whether a component not loaded before is read and compiled here (which may
    /// take seconds); if not, `None` says one is missing.
    fn load_pod_components(
        &self,
        spec: &PodSpec,
        imports: Imports,
        compile: bool,
    ) -> anyhow::Result<Option<LoadedPod>> {
        let wasm = &self.inner.runtime.wasm;
        let load = |path: &Path, imports: &Imports| match compile {
            true => wasm.load_component_with(path, imports).map(Some),
            false => wasm.loaded_component(path, imports),
        };
        let mut containers = Vec::new();
        for container in spec.init_containers.iter().chain(&spec.containers) {
            let started = self.inner.clock.now();
            let Some((main, compilation)) = load(&container.image, &imports)
                .with_context(|| format!("loading the image of container `{}`", container.name))?
            else {
                return Ok(None);
            };
            let mut exec = HashMap::new();
            let mut shell = None;
            use crate::manifest::{ExecTarget, Handler, ProbeAction};
            let hooks = [&container.post_start, &container.pre_stop]
                .into_iter()
                .flatten()
                .filter_map(|handler| match handler {
                    Handler::Exec { target, .. } => Some(target),
                    _ => None,
                });
            let probes = container
                .probes()
                .filter_map(|(_, probe)| match &probe.action {
                    ProbeAction::Exec { target, .. } => Some(target),
                    _ => None,
                });
            for target in hooks.chain(probes) {
                match target {
                    ExecTarget::Component(component) => {
                        let Some((loaded, _)) =
                            load(component, &Imports::new()).with_context(|| {
                                format!("loading an exec command of container `{}`", container.name)
                            })?
                        else {
                            return Ok(None);
                        };
                        exec.insert(component.clone(), loaded);
                    }
                    ExecTarget::Shell => {
                        shell = match compile {
                            true => Some(wasm.shell().context("loading wasmlet's sh")?),
                            false => match wasm.loaded_shell() {
                                Some(shell) => Some(shell),
                                None => return Ok(None),
                            },
                        };
                    }
                    ExecTarget::Container => {}
                }
            }
            containers.push(LoadedContainer {
                main,
                exec,
                shell,
                load_time: self.inner.clock.now().saturating_duration_since(started),
                compilation,
            });
        }
        Ok(Some(LoadedPod {
            containers,
            imports,
        }))
    }
}
