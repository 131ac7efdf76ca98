//! The [`Host`], wasmlet's public face: it starts the runtime guests execute on
//! ([`crate::runtime`]) and starts pods on it ([`crate::lifecycle`]), loading their components
//! first.
//!
//! Two kinds of work are kept apart on purpose. Guests execute on the runtime's own
//! multi-threaded tokio runtime (the *guest runtime*). Pod supervision (state machines, events,
//! statuses) runs on the caller's runtime, and deadlines run on the clock's thread. So a host
//! full of spinning guests still supervises, times out and kills on time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::Clock;
use crate::config::HostConfig;
use crate::lifecycle::node::Node;
use crate::lifecycle::pod::{LoadedPod, Pod, PodVolume};
use crate::manifest::PodSpec;
use crate::runtime::{
    DeterministicGuests, LoadedComponent, LoadedContainer, Runtime, RuntimeConfig, WasmEngine,
};

/// A snapshot of what a [`Host`] holds ([`Host::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    /// Guest instances alive (main, hooks, HTTP handlers, exec commands), each with its store.
    pub live_instances: usize,
    /// Tasks alive on the runtime that executes guests (instances, hook sleeps, listeners,
    /// connections); in deterministic mode, the simulation's own runtime.
    pub guest_tasks: usize,
}

/// Runs pods. Create one per process and share it (it is cheap to clone).
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Node>,
}

impl Host {
    /// Creates a host: the engine, the guest runtime, the clock, the epoch ticker and the thread
    /// that hands memory freed by ended instances back to the system.
    pub fn new(config: HostConfig) -> anyhow::Result<Host> {
        let runtime = Runtime::start(RuntimeConfig {
            time_slice: config.time_slice,
            guest_threads: config.guest_threads,
            guest_niceness: config.guest_niceness,
            clock: config.clock.clone(),
            compile_cache: config.compile_cache.clone(),
            instance_pool: config.instance_pool,
        })?;
        Ok(Host {
            inner: Arc::new(Node::new(runtime, config)),
        })
    }

    /// A host in deterministic mode: guests run on `runtime` (the caller's single thread) with
    /// fuel-based time slices, and everything keeps time on the virtual clock.
    pub(crate) fn deterministic(
        wasm: Arc<WasmEngine>,
        runtime: tokio::runtime::Handle,
        config: HostConfig,
        guests: DeterministicGuests,
    ) -> Host {
        let runtime = Runtime::deterministic(wasm, runtime, guests);
        Host {
            inner: Arc::new(Node::deterministic(runtime, config)),
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
        }
    }

    /// Compiles the component at `path` (or reuses the compiled one if the file is unchanged)
    /// and checks that wasmlet provides all it imports.
    pub fn load_component(&self, path: &Path) -> anyhow::Result<Arc<LoadedComponent>> {
        self.inner.runtime.wasm.load_component(path)
    }

    /// Starts a pod: compiles its components (an error here starts nothing), then starts every
    /// container. Supervision runs as tasks on the calling tokio runtime; the returned [`Pod`]
    /// watches, deletes and awaits it.
    pub async fn start_pod(&self, spec: PodSpec) -> anyhow::Result<Pod> {
        if let Some(pool) = self.inner.config.instance_pool {
            for container in spec.init_containers.iter().chain(&spec.containers) {
                if let Some(limit) = container.memory_limit {
                    anyhow::ensure!(
                        limit <= pool.max_memory,
                        "container `{}`: its memory limit ({limit} bytes) is above what one \
                         instance of this host's instance pool may have ({} bytes)",
                        container.name,
                        pool.max_memory
                    );
                }
            }
        }
        let loaded = if self.inner.runtime.deterministic.is_some() {
            // One thread, and loading takes no virtual time.
            self.load_pod_components(&spec)?
        } else {
            let host = self.clone();
            let spec_for_load = spec.clone();
            tokio::task::spawn_blocking(move || host.load_pod_components(&spec_for_load))
                .await
                .context("loading components")??
        };
        let volumes = PodVolume::prepare(&spec)?;
        Ok(Pod::start(self.inner.clone(), spec, loaded, volumes))
    }

    fn load_pod_components(&self, spec: &PodSpec) -> anyhow::Result<LoadedPod> {
        let mut containers = Vec::new();
        for container in spec.init_containers.iter().chain(&spec.containers) {
            let started = self.inner.clock.now();
            let main = self
                .load_component(&container.image)
                .with_context(|| format!("loading the image of container `{}`", container.name))?;
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
                        let loaded = self.load_component(component).with_context(|| {
                            format!("loading an exec command of container `{}`", container.name)
                        })?;
                        exec.insert(component.clone(), loaded);
                    }
                    ExecTarget::Shell => {
                        shell = Some(
                            self.inner
                                .runtime
                                .wasm
                                .shell()
                                .context("loading wasmlet's sh")?,
                        );
                    }
                    ExecTarget::Container => {}
                }
            }
            containers.push(LoadedContainer {
                main,
                exec,
                shell,
                load_time: self.inner.clock.now().saturating_duration_since(started),
            });
        }
        Ok(LoadedPod { containers })
    }
}
