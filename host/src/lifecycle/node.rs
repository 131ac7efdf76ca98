//! The node pods run on ([`Node`]): the runtime their instances run on, the host's settings, the
//! node's name, the kubelet's secret, and the uids of the pods it starts. What every pod of a
//! host shares; which pods those are is the host's to know (`Host`), not the pods'.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::HostConfig;
use crate::lifecycle::faults::Faults;
use crate::runtime::{Runtime, TmpDirs};

/// What the pods of one host share.
pub(crate) struct Node {
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
    /// The faults deterministic mode injects at the host's boundary (none on a real host).
    pub faults: Faults,
    /// The containers' `/tmp` directories.
    pub tmp_dirs: TmpDirs,
}

impl Node {
    /// The node of a host whose instances run on `runtime`: named as configured, else after
    /// this machine, with a random secret for the kubelet's requests.
    pub fn new(runtime: Arc<Runtime>, config: HostConfig) -> Node {
        Node {
            clock: runtime.clock.clone(),
            runtime,
            node_name: config.node_name.clone().unwrap_or_else(machine_name),
            config,
            pods_started: Default::default(),
            kubelet_token: random_token(),
            faults: Faults::default(),
            tmp_dirs: TmpDirs::new(true),
        }
    }

    /// The node of a host in deterministic mode.
    pub fn deterministic(runtime: Arc<Runtime>, config: HostConfig, faults: Faults) -> Node {
        Node {
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
            faults,
            tmp_dirs: TmpDirs::new(false),
        }
    }

    /// A new pod uid, shaped like Kubernetes' (a UUID): random, or in deterministic mode drawn
    /// from the seed by the order pods start.
    pub fn new_uid(&self) -> String {
        let n = self
            .pods_started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bits = self.runtime.scheduling.pod_uid_bits(n);
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
