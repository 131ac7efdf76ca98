//! [`HostConfig`]: how a host runs its guests and its pods — the runtime's settings (time slice,
//! guest threads, compile cache, instance pool) and the kubelet's (grace periods, node
//! name, the pods' address).

use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::DEFAULT_GRACE_PERIOD;
use crate::runtime::{Imports, InstancePool};

/// How a [`Host`](crate::Host) runs its guests. `HostConfig::default()` is what `wasmlet run` uses.
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
    /// settings, so that a second `wasmlet run` maps the compiled code instead of compiling
    /// (the least recently used go beyond 1 GiB). Default:
    /// `$XDG_CACHE_HOME/wasmlet`, else `~/.cache/wasmlet`. `None` compiles every time.
    pub compile_cache: Option<PathBuf>,
    /// Instances from wasmtime's pooling allocator: slots reserved up front and reused without
    /// asking the kernel, which pays wherever instances come and go (HTTP handlers, hooks,
    /// probes, plugin calls: each gets a fresh instance). What does not fit the pool — more
    /// instances at once than it has slots, a memory limit above a slot's — is allocated on
    /// demand, so the pool never refuses an instance. Default: sized for this machine
    /// ([`InstancePool::for_this_machine`]); `None` allocates every instance on demand.
    pub instance_pool: Option<InstancePool>,
    /// Where `persistentVolumeClaim` volumes live, as a local-path provisioner keeps them: claim
    /// `NAME` of namespace `NS` is the directory `DATA_DIR/claims/NS/NAME`, made on first use
    /// and kept after the pod ends, so that a pod started again sees its data. Default:
    /// `$XDG_DATA_HOME/wasmlet`, else `~/.local/share/wasmlet`. `None` refuses to start a pod
    /// with a claim.
    pub data_dir: Option<PathBuf>,
    /// Components of at least this many bytes whose optimised build is not in the compile
    /// cache yet start on code from the baseline compiler (Winch: several times faster to
    /// compile, slower to run), while the optimised build is compiled into the cache in the
    /// background for later loads. Default 2 MiB (the components of Python and JavaScript
    /// toolchains are 10-20 MB; a Rust guest is well under); `None` always waits for the
    /// optimising compiler.
    pub quick_first_start: Option<u64>,
    /// The embedder's own host interfaces, which every pod's guests may import besides WASI,
    /// `wasi:http` and `wasmlet:lifecycle/control` (a pod may add its own with
    /// [`Host::start_pod_with`](crate::Host::start_pod_with)). Default: none.
    pub imports: Imports,
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
            instance_pool: Some(InstancePool::for_this_machine()),
            data_dir: default_data_dir(),
            quick_first_start: Some(2 << 20),
            imports: Imports::new(),
        }
    }
}

/// `$XDG_CACHE_HOME/wasmlet`, else `$HOME/.cache/wasmlet`.
fn default_compile_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("wasmlet"))
}

/// `$XDG_DATA_HOME/wasmlet`, else `$HOME/.local/share/wasmlet`.
fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
        })?;
    Some(base.join("wasmlet"))
}
