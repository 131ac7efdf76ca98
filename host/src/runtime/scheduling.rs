//! How guests are scheduled, chosen once when a [`super::Runtime`] is built: the
//! [`Scheduling`] strategy. Everything that differs between real time and deterministic mode
//! asks it, instead of checking for the mode where the difference shows.
//!
//! - [`RealTime`]: guests share the guest threads and are preempted at each epoch tick; ports
//!   are sockets, randomness is the operating system's.
//! - [`super::DeterministicGuests`]: guests run on one thread with fuel-based time slices on a
//!   virtual clock; HTTP stays in the process, and randomness is drawn from a seed.

use std::sync::Arc;

use super::vcpu::VirtualCpu;

/// A guest-scheduling strategy ([module docs](self)).
pub(crate) trait Scheduling: Send + Sync {
    /// What a new instance runs with.
    fn new_instance(&self) -> InstanceScheduling;

    /// Where a killed instance is dropped: on `guests` (dropping unwinds its fiber, which may
    /// take a while), or, `None`, at once and in place, where one thread must see it go.
    fn reaper(&self, guests: &tokio::runtime::Handle) -> Option<tokio::runtime::Handle>;

    /// Whether pods' ports are sockets of the machine; otherwise requests and probes reach a
    /// pod's server inside the process, and nothing is bound.
    fn binds_sockets(&self) -> bool;

    /// Whether components are loaded on a blocking thread, so that compiling one never holds
    /// up the runtime; otherwise in place (one thread, and loading takes no virtual time).
    fn loads_off_thread(&self) -> bool;

    /// 128 random bits for the uid of the `n`-th pod started.
    fn pod_uid_bits(&self, n: u64) -> u128;

    /// The strategy's name, for `Debug`.
    fn name(&self) -> &'static str;
}

/// What one instance runs with, from the [`Scheduling`] strategy.
pub(crate) struct InstanceScheduling {
    /// The account its fuel is charged to, as virtual time; `None`: it runs on the real CPU,
    /// preempted by the epoch.
    pub cpu: Option<Arc<VirtualCpu>>,
    /// The seed its randomness derives from; `None`: the operating system's randomness.
    pub seed: Option<u64>,
}

/// Guests in real time ([module docs](self)).
pub(crate) struct RealTime;

impl Scheduling for RealTime {
    fn new_instance(&self) -> InstanceScheduling {
        InstanceScheduling {
            cpu: None,
            seed: None,
        }
    }

    fn reaper(&self, guests: &tokio::runtime::Handle) -> Option<tokio::runtime::Handle> {
        Some(guests.clone())
    }

    fn binds_sockets(&self) -> bool {
        true
    }

    fn loads_off_thread(&self) -> bool {
        true
    }

    fn pod_uid_bits(&self, n: u64) -> u128 {
        use std::hash::BuildHasher;
        // Each RandomState is keyed from the operating system's randomness.
        let random = std::collections::hash_map::RandomState::new();
        (u128::from(random.hash_one(n)) << 64) | u128::from(random.hash_one(!n))
    }

    fn name(&self) -> &'static str {
        "real time"
    }
}
