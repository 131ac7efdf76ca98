//! How guests are scheduled, chosen once when a [`super::Runtime`] is built: the
//! [`Scheduling`] strategy. Everything that differs between real time and deterministic mode
//! asks it, instead of checking for the mode where the difference shows.
//!
//! - [`RealTime`]: guests share the guest threads and are preempted at each epoch tick; ports
//!   are sockets, randomness is the operating system's.
//! - [`DeterministicGuests`]: guests run on one thread with fuel-based time slices on a
//!   virtual clock; HTTP stays in the process, and randomness is drawn from a seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::vcpu::VirtualCpu;
use crate::clock::VirtualClock;

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

/// What deterministic mode sets for every instance: the virtual clock, what fuel costs in
/// virtual time, and the seed each instance's randomness derives from.
pub(crate) struct DeterministicGuests {
    pub clock: Arc<VirtualClock>,
    /// Fuel (roughly, wasm instructions) a guest runs before it yields: its time slice.
    pub fuel_per_slice: u64,
    /// Virtual nanoseconds one unit of fuel takes.
    pub nanos_per_fuel: u64,
    pub seed: u64,
    instances: AtomicU64,
}

impl DeterministicGuests {
    pub fn new(
        clock: Arc<VirtualClock>,
        fuel_per_slice: u64,
        nanos_per_fuel: u64,
        seed: u64,
    ) -> Self {
        DeterministicGuests {
            clock,
            fuel_per_slice: fuel_per_slice.max(1),
            nanos_per_fuel,
            seed,
            instances: AtomicU64::new(0),
        }
    }

    /// The seed of the next instance: instances are created in a fixed order, so the n-th one
    /// gets the same seed every run.
    fn next_instance_seed(&self) -> u64 {
        let n = self.instances.fetch_add(1, Ordering::SeqCst);
        self.seeded(n)
    }

    /// The `n`-th number of a sequence drawn from the seed.
    pub fn seeded(&self, n: u64) -> u64 {
        splitmix64(self.seed ^ splitmix64(n))
    }
}

impl Scheduling for DeterministicGuests {
    fn new_instance(&self) -> InstanceScheduling {
        InstanceScheduling {
            cpu: Some(Arc::new(VirtualCpu::new(
                self.clock.clone(),
                self.fuel_per_slice,
                self.nanos_per_fuel,
            ))),
            seed: Some(self.next_instance_seed()),
        }
    }

    fn reaper(&self, _guests: &tokio::runtime::Handle) -> Option<tokio::runtime::Handle> {
        None
    }

    fn binds_sockets(&self) -> bool {
        false
    }

    fn loads_off_thread(&self) -> bool {
        false
    }

    fn pod_uid_bits(&self, n: u64) -> u128 {
        // A stream of its own, apart from the instances' seeds.
        (u128::from(self.seeded(!(2 * n))) << 64) | u128::from(self.seeded(!(2 * n + 1)))
    }

    fn name(&self) -> &'static str {
        "deterministic"
    }
}

/// One step of SplitMix64: spreads nearby inputs over the whole range.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
