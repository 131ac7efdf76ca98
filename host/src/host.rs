//! The [`Host`]: one wasmtime `Engine` for everything, the linker with all that guests may
//! import, the cache of compiled components ([`WasmEngine`]), the guest runtime that executes
//! wasm, and the epoch ticker that time-slices CPU-bound guests (and hands freed memory back
//! once instances end, [`crate::release`]).
//!
//! Two kinds of work are kept apart on purpose. Guests execute on the host's own multi-threaded
//! tokio runtime (the *guest runtime*). Pod supervision (state machines, events, statuses) runs
//! on the caller's runtime, and deadlines run on the clock's thread. So a host full of spinning
//! guests still supervises, times out and kills on time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use crate::bindings::TerminationReason;
use crate::clock::{Clock, SystemClock};
use crate::guest::{self, DeterministicGuests, GuestState, LoadedComponent};
use crate::manifest::{DEFAULT_GRACE_PERIOD, PodSpec};
use crate::pod::Pod;
use crate::release::MemoryReleaser;

/// How a [`Host`] runs its guests. `HostConfig::default()` is what `wasmlet run` uses.
///
/// A host keeps real time (its [`Host::clock`] is the system's); deterministic mode, on a
/// virtual clock, is [`crate::testing::Simulation`].
#[derive(Debug, Clone)]
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

/// The slots of the pooling allocator ([`HostConfig::instance_pool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePool {
    /// Instances alive at once (main, hooks, handlers and exec commands together); one more
    /// fails to start, as a trap naming the limit.
    pub instances: u32,
    /// The most memory one instance may have; a container whose memory limit is larger is
    /// refused when its pod starts.
    pub max_memory: u64,
}

impl Default for InstancePool {
    fn default() -> Self {
        InstancePool {
            instances: 1000,
            max_memory: 1 << 30,
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            time_slice: Duration::from_millis(2),
            min_grace_after_pre_stop: Duration::from_secs(2),
            default_grace_period: DEFAULT_GRACE_PERIOD,
            guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            guest_niceness: 10,
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

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("node_name", &self.inner.node_name)
            .field("deterministic", &self.inner.deterministic.is_some())
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

pub(crate) struct HostInner {
    pub wasm: Arc<WasmEngine>,
    pub clock: Arc<dyn Clock>,
    /// Zero of the guests' monotonic clock.
    pub clock_origin: std::time::Instant,
    pub guests: tokio::runtime::Handle,
    pub config: HostConfig,
    pub ticker: Arc<EpochTicker>,
    /// Set in deterministic mode ([`crate::testing`]).
    pub deterministic: Option<DeterministicGuests>,
    /// The node name pods see.
    pub node_name: String,
    /// Pods started so far (for their uids in deterministic mode).
    pods_started: std::sync::atomic::AtomicU64,
    /// The secret that marks the kubelet's own HTTP requests (hooks and probes), so that they
    /// pass a container's readiness gate.
    pub kubelet_token: String,
    /// How many times a kill moved the engine epoch to interrupt wasm that was running (every
    /// guest running wasm then yields its time slice early).
    pub kill_interruptions: Arc<std::sync::atomic::AtomicU64>,
    guest_runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// The pods started, for [`Host::shutdown`].
    pods: Mutex<PodRegistry>,
}

/// The pods a host started, and whether it is shutting down. One lock for both, so that a pod
/// either starts before a shutdown (and is stopped by it) or is refused.
#[derive(Default)]
struct PodRegistry {
    /// Weak: a pod that ended and that nobody holds goes away.
    pods: Vec<std::sync::Weak<crate::pod::PodShared>>,
    /// How many times [`Host::shutdown`] was called.
    shutdowns: u32,
}

/// How running wasm is interrupted: by the epoch ticker (real time), or after a fixed amount of
/// fuel (deterministic mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    Epoch,
    Fuel,
}

/// The engine, the linker and the compiled components: what hosts of one kind can share.
pub(crate) struct WasmEngine {
    pub engine: Engine,
    pub linker: Linker<GuestState>,
    components: Mutex<HashMap<PathBuf, CachedComponent>>,
    /// The bundled shell, compiled on first use.
    shell: std::sync::OnceLock<Arc<LoadedComponent>>,
}

/// wasmlet's bundled shell (`host/sh`), built by `build.rs`.
const SHELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sh.wasm"));

struct CachedComponent {
    modified: Option<SystemTime>,
    len: u64,
    component: Arc<LoadedComponent>,
}

/// `$XDG_CACHE_HOME/wasmlet`, else `$HOME/.cache/wasmlet`.
fn default_compile_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("wasmlet"))
}

impl WasmEngine {
    /// An engine for `interruption`; `compile_cache`: where compiled code is kept between runs;
    /// `instance_pool`: the pooling allocator's slots, if any.
    pub fn new(
        interruption: Interruption,
        compile_cache: Option<&Path>,
        instance_pool: Option<InstancePool>,
    ) -> anyhow::Result<Arc<WasmEngine>> {
        let mut engine_config = Config::new();
        if let Some(directory) = compile_cache {
            let directory = std::path::absolute(directory).unwrap_or(directory.to_path_buf());
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(&directory);
            // A cache that cannot be used costs a compilation, never a pod.
            match wasmtime::Cache::new(cache_config) {
                Ok(cache) => {
                    engine_config.cache(Some(cache));
                }
                Err(error) => tracing::warn!(
                    "not caching compiled components in `{}`: {error:#}",
                    directory.display()
                ),
            }
        }
        engine_config.wasm_component_model(true);
        match interruption {
            Interruption::Epoch => engine_config.epoch_interruption(true),
            Interruption::Fuel => engine_config.consume_fuel(true),
        };
        #[allow(deprecated)]
        engine_config.async_support(true);
        // Fewer memory mappings per instance (the kernel allows 65530 by default), so that one
        // host holds 10,000 pods: no guard region before linear memory (the one after it, which
        // bounds checks rely on, stays), and data segments copied rather than mapped.
        engine_config.guard_before_linear_memory(false);
        engine_config.memory_init_cow(false);
        if let Some(pool) = instance_pool {
            let mut config = wasmtime::PoolingAllocationConfig::new();
            // A component of a Rust guest has one memory and a few core instances and tables.
            config
                .total_component_instances(pool.instances)
                .total_core_instances(pool.instances.saturating_mul(4))
                .total_memories(pool.instances)
                .total_tables(pool.instances.saturating_mul(4))
                .total_stacks(pool.instances)
                .max_memory_size(usize::try_from(pool.max_memory).unwrap_or(usize::MAX));
            engine_config
                .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(config));
        }
        let engine = Engine::new(&engine_config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        guest::add_to_linker(&mut linker)?;
        Ok(Arc::new(WasmEngine {
            engine,
            linker,
            components: Mutex::new(HashMap::new()),
            shell: std::sync::OnceLock::new(),
        }))
    }

    /// The bundled shell, compiled once.
    pub fn shell(&self) -> anyhow::Result<Arc<LoadedComponent>> {
        if let Some(shell) = self.shell.get() {
            return Ok(shell.clone());
        }
        let shell = Arc::new(LoadedComponent::from_bytes(
            &self.engine,
            &self.linker,
            SHELL,
            Path::new("<wasmlet's sh>"),
        )?);
        Ok(self.shell.get_or_init(|| shell).clone())
    }

    /// Compiles the component at `path` (or reuses the compiled one if the file is unchanged)
    /// and checks that wasmlet provides all it imports.
    pub fn load_component(&self, path: &Path) -> anyhow::Result<Arc<LoadedComponent>> {
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("reading component `{}`", path.display()))?;
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let modified = metadata.modified().ok();
        if let Some(cached) = self.components.lock().unwrap().get(&key)
            && cached.modified == modified
            && cached.len == metadata.len()
        {
            return Ok(cached.component.clone());
        }
        let component = Arc::new(LoadedComponent::load(&self.engine, &self.linker, path)?);
        anyhow::ensure!(
            component.exports(guest::Entry::Run) || component.exports(guest::Entry::Handle),
            "component `{}` exports neither `wasi:cli/run` nor `wasi:http/incoming-handler`: a \
             container needs an entrypoint (build a command with `fn main`, use wasmlet-sdk's \
             `export!`, or export an HTTP handler)",
            path.display()
        );
        self.components.lock().unwrap().insert(
            key,
            CachedComponent {
                modified,
                len: metadata.len(),
                component: component.clone(),
            },
        );
        Ok(component)
    }
}

impl Host {
    /// Creates a host: the engine, the guest runtime, the clock, the epoch ticker and the thread
    /// that hands memory freed by ended instances back to the system.
    pub fn new(config: HostConfig) -> anyhow::Result<Host> {
        let wasm = WasmEngine::new(
            Interruption::Epoch,
            config.compile_cache.as_deref(),
            config.instance_pool,
        )?;
        let niceness = config.guest_niceness;
        let releaser = MemoryReleaser::start();
        let guest_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.guest_threads.max(1))
            .thread_name("wasmlet-guest")
            .on_thread_start(move || lower_priority(niceness))
            // A burst of pods grows the blocking pool (file I/O) to hundreds of threads, whose
            // caches hold memory until they end, idle, ten seconds later.
            .on_thread_stop({
                let releaser = releaser.clone();
                move || releaser.memory_freed()
            })
            .enable_all()
            .build()
            .context("starting the guest runtime")?;
        let clock: Arc<dyn Clock> = SystemClock::new();
        let ticker = EpochTicker::start(wasm.engine.clone(), config.time_slice, releaser);
        Ok(Host {
            inner: Arc::new(HostInner {
                guests: guest_runtime.handle().clone(),
                guest_runtime: Mutex::new(Some(guest_runtime)),
                wasm,
                clock_origin: clock.now(),
                clock,
                node_name: config.node_name.clone().unwrap_or_else(machine_name),
                config,
                ticker,
                deterministic: None,
                pods_started: Default::default(),
                kubelet_token: random_token(),
                kill_interruptions: Default::default(),
                pods: Default::default(),
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
        let clock: Arc<dyn Clock> = guests.clock.clone();
        Host {
            inner: Arc::new(HostInner {
                guests: runtime,
                guest_runtime: Mutex::new(None),
                wasm,
                clock_origin: guests.clock.origin(),
                clock,
                node_name: config
                    .node_name
                    .clone()
                    .unwrap_or_else(|| "simulation".into()),
                config,
                ticker: EpochTicker::idle(),
                deterministic: Some(guests),
                pods_started: Default::default(),
                // Never on the wire in deterministic mode (requests stay in-process).
                kubelet_token: "simulation".into(),
                kill_interruptions: Default::default(),
                pods: Default::default(),
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
            live_instances: self.inner.ticker.state.lock().unwrap().live_instances,
            guest_tasks: self.inner.guests.metrics().num_alive_tasks(),
        }
    }

    /// Compiles the component at `path` (or reuses the compiled one if the file is unchanged)
    /// and checks that wasmlet provides all it imports, as starting a pod does: a way to
    /// check a component, or to compile it ahead of the pods that run it. Says what it found.
    pub fn load_component(&self, path: impl AsRef<Path>) -> anyhow::Result<ComponentInfo> {
        let component = self.inner.wasm.load_component(path.as_ref())?;
        Ok(ComponentInfo {
            run: component.exports(guest::Entry::Run),
            http_handler: component.exports(guest::Entry::Handle),
            post_start: component.has_post_start(),
            pre_stop: component.has_pre_stop(),
        })
    }

    /// Waits for `duration` on the host's clock (what `wasmlet run --stop-after` waits on).
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        crate::clock::sleep(&self.inner.clock, duration)
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
        let loaded = if self.inner.deterministic.is_some() {
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
        let mut registry = self.inner.pods.lock().unwrap();
        anyhow::ensure!(
            registry.shutdowns == 0,
            "pod `{}` not started: the host is shutting down",
            spec.name
        );
        let pod = Pod::start(self.inner.clone(), spec, loaded, volumes);
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
            let mut registry = self.inner.pods.lock().unwrap();
            registry.shutdowns = registry.shutdowns.saturating_add(1);
            (live_pods(&registry), registry.shutdowns == 1)
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
        let pods = live_pods(&self.inner.pods.lock().unwrap());
        for pod in pods {
            pod.kill();
        }
    }

    /// The pods of the host that have not ended yet.
    pub fn pods(&self) -> Vec<Pod> {
        live_pods(&self.inner.pods.lock().unwrap())
    }

    fn load_pod_components(&self, spec: &PodSpec) -> anyhow::Result<crate::pod::LoadedPod> {
        let mut containers = Vec::new();
        for container in spec.init_containers.iter().chain(&spec.containers) {
            let started = self.inner.clock.now();
            let main = (self.inner.wasm)
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
                        let loaded =
                            self.inner.wasm.load_component(component).with_context(|| {
                                format!("loading an exec command of container `{}`", container.name)
                            })?;
                        exec.insert(component.clone(), loaded);
                    }
                    ExecTarget::Shell => {
                        shell = Some(self.inner.wasm.shell().context("loading wasmlet's sh")?);
                    }
                    ExecTarget::Container => {}
                }
            }
            containers.push(crate::pod::LoadedContainer {
                main,
                exec,
                shell,
                load_time: self.inner.clock.now().saturating_duration_since(started),
            });
        }
        Ok(crate::pod::LoadedPod { containers })
    }
}

/// The pods of `registry` that have not ended.
fn live_pods(registry: &PodRegistry) -> Vec<Pod> {
    (registry.pods.iter())
        .filter_map(|pod| {
            Some(Pod {
                shared: pod.upgrade()?,
            })
        })
        .filter(|pod| !crate::pod::phase_is_final(&pod.status()))
        .collect()
}

impl HostInner {
    /// A new pod uid, shaped like Kubernetes' (a UUID): random, or in deterministic mode drawn
    /// from the seed by the order pods start.
    pub fn new_uid(&self) -> String {
        use std::hash::BuildHasher;
        let n = self
            .pods_started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (high, low) = match &self.deterministic {
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

/// Lowers the calling thread's scheduling priority by `niceness` (Linux: nice values are
/// per thread). Lowering is always allowed; a failure leaves the thread as it was.
fn lower_priority(niceness: i32) {
    if niceness <= 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Ok(current) = rustix::process::getpriority_process(Some(thread)) {
        let _ = rustix::process::setpriority_process(Some(thread), (current + niceness).min(19));
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

impl Drop for HostInner {
    fn drop(&mut self) {
        self.ticker.stop();
        if let Some(runtime) = self.guest_runtime.lock().unwrap().take() {
            // Dropping a runtime from async code panics; guests still running are abandoned.
            runtime.shutdown_background();
        }
    }
}

/// Increments the engine epoch every time slice while any instance is alive, so that every
/// running guest yields to the others; sleeps when there is none. It counts the instances, and
/// tells the memory releaser when one ends.
pub(crate) struct EpochTicker {
    state: Mutex<TickerState>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    releaser: Option<Arc<MemoryReleaser>>,
}

#[derive(Default)]
struct TickerState {
    live_instances: usize,
    stopped: bool,
}

impl EpochTicker {
    /// A ticker with no thread, for deterministic mode (fuel slices time there).
    fn idle() -> Arc<Self> {
        Arc::new(EpochTicker {
            state: Mutex::new(TickerState::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
            releaser: None,
        })
    }

    fn start(engine: Engine, slice: Duration, releaser: Arc<MemoryReleaser>) -> Arc<Self> {
        let ticker = Arc::new(EpochTicker {
            state: Mutex::new(TickerState::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
            releaser: Some(releaser),
        });
        let thread = std::thread::Builder::new()
            .name("wasmlet-epoch".into())
            .spawn({
                let ticker = ticker.clone();
                move || loop {
                    {
                        let mut state = ticker.state.lock().unwrap();
                        while state.live_instances == 0 && !state.stopped {
                            state = ticker.wake.wait(state).unwrap();
                        }
                        if state.stopped {
                            return;
                        }
                    }
                    // Real time: a time slice is a share of this machine's CPU, whatever
                    // the host's clock says.
                    std::thread::sleep(slice);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        *ticker.thread.lock().unwrap() = Some(thread);
        ticker
    }

    /// Counts an instance as alive until the returned guard is dropped.
    pub fn instance_alive(self: &Arc<Self>) -> LiveInstance {
        self.state.lock().unwrap().live_instances += 1;
        self.wake.notify_one();
        LiveInstance(self.clone())
    }

    fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
        self.wake.notify_one();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
        if let Some(releaser) = &self.releaser {
            releaser.stop();
        }
    }
}

/// Keeps the epoch ticker running while it lives; dropped after the instance's store.
pub(crate) struct LiveInstance(Arc<EpochTicker>);

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().live_instances -= 1;
        if let Some(releaser) = &self.0.releaser {
            releaser.memory_freed();
        }
    }
}
