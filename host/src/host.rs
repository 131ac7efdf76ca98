//! The [`Host`], wasmlet's public face: it starts the runtime guests execute on
//! ([`crate::runtime`]) and starts pods on it ([`crate::lifecycle`]), loading their components
//! first.
//!
//! Two kinds of work are kept apart on purpose. Guests execute on the runtime's own
//! multi-threaded tokio runtime (the *guest runtime*). Pod supervision (state machines, events,
//! statuses) runs on the caller's runtime, and deadlines run on the clock's thread. So a host
//! full of spinning guests still supervises, times out and kills on time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::clock::Clock;
use crate::manifest::{DEFAULT_GRACE_PERIOD, PodSpec};
use crate::pod::Pod;
use crate::runtime::{
    DeterministicGuests, InstancePool, LoadedComponent, LoadedContainer, Runtime, RuntimeConfig,
    WasmEngine,
};

/// How a [`Host`] runs its guests. `HostConfig::default()` is what `wasmlet run` uses.
#[derive(Clone)]
pub struct HostConfig {
    /// How long a CPU-bound guest runs before it yields to others (the epoch tick). Shorter
    /// slices make a crowded host fairer and cost a little throughput. Default 2 ms.
    pub time_slice: Duration,
    /// The least time `run` gets between terminate and kill when a preStop hook ran first and
    /// used up the grace period (Kubernetes' `minimumGracePeriodInSeconds`). Default 2 s.
    pub min_grace_after_pre_stop: Duration,
    /// The grace period of a pod whose manifest sets none. Default 30 s.
    pub default_grace_period: Duration,
    /// Worker threads executing guests. Default: one per core.
    pub guest_threads: usize,
    /// How much lower than the host's own the scheduling priority of the guest threads is (a
    /// nice increment). Default 10: when guests saturate the cores, the deadline thread and the
    /// supervisors still run at once, so kills stay on time. 0 runs guests at the host's
    /// priority.
    pub guest_niceness: i32,
    /// The clock everything reads and schedules on. Default: a [`SystemClock`].
    pub clock: Option<Arc<dyn Clock>>,
    /// The node name pods see (`spec.nodeName` through the downward API). Default: this
    /// machine's host name (in deterministic mode: `simulation`).
    pub node_name: Option<String>,
    /// The address containers that serve HTTP listen on, on their `containerPort`s; it stands
    /// for the pod's IP. Default: `127.0.0.1` (reachable from this machine only).
    pub http_address: std::net::IpAddr,
    /// Where compiled components are kept between runs, keyed by their bytes and the engine's
    /// settings (wasmtime's cache), so that a second `wasmlet run` skips compiling. Default:
    /// `$XDG_CACHE_HOME/wasmlet`, else `~/.cache/wasmlet`. `None` compiles every time.
    pub compile_cache: Option<PathBuf>,
    /// Instances from wasmtime's pooling allocator instead of on demand: slots reserved up front,
    /// reused without asking the kernel. It pays where instances come and go fast — HTTP
    /// handlers: 1.15× the requests/s in the HTTP benchmark — and caps how many instances run
    /// at once and how large each memory grows. Default `None`.
    pub instance_pool: Option<InstancePool>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            time_slice: Duration::from_millis(2),
            min_grace_after_pre_stop: Duration::from_secs(2),
            default_grace_period: DEFAULT_GRACE_PERIOD,
            guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            guest_niceness: 10,
            clock: None,
            node_name: None,
            http_address: std::net::Ipv4Addr::LOCALHOST.into(),
            compile_cache: default_compile_cache(),
            instance_pool: None,
        }
    }
}

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
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    /// What the pods' instances run on.
    pub runtime: Arc<Runtime>,
    /// The runtime's clock.
    pub clock: Arc<dyn Clock>,
    pub config: HostConfig,
    /// The node name pods see.
    pub node_name: String,
    /// Pods started so far (for their uids in deterministic mode).
    pods_started: std::sync::atomic::AtomicU64,
    /// The secret that marks the kubelet's own HTTP requests (hooks and probes), so that they
    /// pass a container's readiness gate.
    pub kubelet_token: String,
}

/// `$XDG_CACHE_HOME/wasmlet`, else `$HOME/.cache/wasmlet`.
fn default_compile_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("wasmlet"))
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
            inner: Arc::new(HostInner {
                clock: runtime.clock.clone(),
                runtime,
                node_name: config.node_name.clone().unwrap_or_else(machine_name),
                config,
                pods_started: Default::default(),
                kubelet_token: random_token(),
            }),
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
            inner: Arc::new(HostInner {
                clock: runtime.clock.clone(),
                runtime,
                node_name: config
                    .node_name
                    .clone()
                    .unwrap_or_else(|| "simulation".into()),
                config,
                pods_started: Default::default(),
                // Never on the wire in deterministic mode (requests stay in-process).
                kubelet_token: "simulation".into(),
            }),
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
        let volumes = crate::pod::PodVolume::prepare(&spec)?;
        Ok(Pod::start(self.inner.clone(), spec, loaded, volumes))
    }

    fn load_pod_components(&self, spec: &PodSpec) -> anyhow::Result<crate::pod::LoadedPod> {
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
        Ok(crate::pod::LoadedPod { containers })
    }
}

impl HostInner {
    /// A new pod uid, shaped like Kubernetes' (a UUID): random, or in deterministic mode drawn
    /// from the seed by the order pods start.
    pub fn new_uid(&self) -> String {
        use std::hash::BuildHasher;
        let n = self
            .pods_started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (high, low) = match &self.runtime.deterministic {
            // A stream of its own, apart from the instances' seeds.
            Some(guests) => (guests.seeded(!(2 * n)), guests.seeded(!(2 * n + 1))),
            None => {
                // Each RandomState is keyed from the OS's randomness.
                let random = std::collections::hash_map::RandomState::new();
                (random.hash_one(n), random.hash_one(!n))
            }
        };
        let bits = (u128::from(high) << 64) | u128::from(low);
        let hex = format!("{bits:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// 128 random bits as hex, from the OS's randomness (through `RandomState`'s keys).
fn random_token() -> String {
    use std::hash::BuildHasher;
    let high = std::collections::hash_map::RandomState::new().hash_one(1u8);
    let low = std::collections::hash_map::RandomState::new().hash_one(2u8);
    format!("{high:016x}{low:016x}")
}

/// This machine's host name, for `spec.nodeName`.
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "wasmlet".into())
}
