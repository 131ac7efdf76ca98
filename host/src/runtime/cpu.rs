//! CPU limits and weights, as the kernel's CFS gives them to a container's cgroup:
//!
//! - a **limit** ([`CpuQuota`], `resources.limits.cpu`) is CFS bandwidth control: a quota of CPU
//!   time per 100 ms period, shared by every instance of the container (main, hooks, HTTP
//!   handlers) — or of the pod, for a pod-level limit. Once the period's quota is used, the
//!   container's instances wait for the next period. Usage beyond the quota (the last time slice
//!   overran it) is carried into the next period, as CFS does, so the long-run share is exact.
//! - a **weight** (`resources.requests.cpu`, as CFS shares: `MilliCPUToShares` in the kubelet's
//!   `pkg/kubelet/cm/helpers_linux.go`) orders the turns of busy containers ([`FairShare`]):
//!   each container's CPU time, divided by its weight, is its virtual runtime, and a guest whose
//!   container has run ahead of another container's guest waiting for a thread lets it go first.
//!   A guest with a thread to itself is never held back: weights only split contended CPU.
//!
//! CPU time is the guest thread's own (`CLOCK_THREAD_CPUTIME_ID` over each poll) in real time,
//! and the virtual time its fuel became in deterministic mode; periods run on the host's clock,
//! so throttling shows on virtual time too. Throttling and turns act between polls, so at
//! time-slice granularity.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// CFS's default period (`cpu.cfs_period_us`), which the kubelet keeps.
pub(crate) const CPU_PERIOD: Duration = Duration::from_millis(100);

/// The fewest CFS shares a container has: the kubelet's `MinShares`, which a container that
/// requests no CPU gets.
const MIN_SHARES: u64 = 2;

/// The most CFS shares a container has: the kubelet's `MaxShares`.
const MAX_SHARES: u64 = 262_144;

/// CFS shares for `millicores` requested: `MilliCPUToShares` (kubelet,
/// `pkg/kubelet/cm/helpers_linux.go`), 1024 per core, within [`MIN_SHARES`] and [`MAX_SHARES`].
pub(crate) fn shares(millicores: u64) -> u64 {
    (millicores.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// A CPU limit: `millicores` thousandths of a core per period, for everything charged to it.
pub(crate) struct CpuQuota {
    quota: Duration,
    period: Mutex<QuotaPeriod>,
}

struct QuotaPeriod {
    /// When the current period ends; `None` before the first charge.
    ends: Option<Instant>,
    /// CPU time used in this period (more than the quota when the last slice overran it).
    used: Duration,
}

impl CpuQuota {
    pub fn new(millicores: u64) -> Arc<Self> {
        Arc::new(CpuQuota {
            // At least 1 ms, as the kubelet's `MilliCPUToQuota` (`minQuotaPeriod`).
            quota: (CPU_PERIOD * u32::try_from(millicores).unwrap_or(u32::MAX) / 1000)
                .max(Duration::from_millis(1)),
            period: Mutex::new(QuotaPeriod {
                ends: None,
                used: Duration::ZERO,
            }),
        })
    }

    /// Moves to the period holding `now`: each period passed refills one quota, and nothing
    /// is saved up beyond that (CFS's `__refill_cfs_bandwidth_runtime`).
    fn roll(&self, period: &mut QuotaPeriod, now: Instant) {
        let ends = *period.ends.get_or_insert_with(|| now + CPU_PERIOD);
        if now >= ends {
            let passed = (now - ends).as_nanos() / CPU_PERIOD.as_nanos() + 1;
            let passed = u32::try_from(passed).unwrap_or(u32::MAX);
            period.used = period
                .used
                .saturating_sub(self.quota.saturating_mul(passed));
            period.ends = Some(ends + CPU_PERIOD * passed);
        }
    }

    fn charge(&self, now: Instant, used: Duration) {
        let mut period = self.period.lock().unwrap();
        self.roll(&mut period, now);
        period.used += used;
    }

    /// When the quota's instances may run again, if they have used this period's quota.
    fn throttled_until(&self, now: Instant) -> Option<Instant> {
        let mut period = self.period.lock().unwrap();
        self.roll(&mut period, now);
        (period.used >= self.quota).then(|| period.ends.expect("set by roll"))
    }
}

/// One instance's place in the turns of weighted containers.
#[derive(Default, Clone, Copy)]
pub(super) struct Turn {
    /// It waits for its turn (it yielded its time slice, or let another go first).
    waiting: bool,
    /// The poll in progress is a turn it waited for (not a wake-up from a host call).
    continuing: bool,
}

/// What a container's CPU is charged to and limited by. Shared by its instances.
pub(crate) struct CpuControl {
    /// The container's limit, then the pod's: an instance runs only while neither is used up.
    quotas: Vec<Arc<CpuQuota>>,
    fair: Arc<FairShare>,
    /// The container in `fair`.
    entity: u64,
    /// It requests CPU: its weight counts even when no other container requests any.
    requested: bool,
    /// CPU time used so far, in nanoseconds (kept by the container, across its restarts).
    used: Arc<AtomicU64>,
}

impl CpuControl {
    /// A container's CPU control: `quotas` (the container's limit, then its pod's), its
    /// request as CFS shares (without one, the kubelet's minimum: `MinShares`), and where its
    /// CPU time adds up.
    pub fn new(
        quotas: Vec<Arc<CpuQuota>>,
        shares: Option<u64>,
        fair: &Arc<FairShare>,
        used: Arc<AtomicU64>,
    ) -> Self {
        CpuControl {
            quotas,
            fair: fair.clone(),
            entity: fair.register(shares),
            requested: shares.is_some(),
            used,
        }
    }

    /// Whether the container's instances are measured and scheduled by their CPU time now:
    /// always with a limit or a request; without, only while some container requests CPU
    /// (weights then order every busy container's turns). Otherwise nothing is measured, and
    /// guests take their turns as they come.
    fn active(&self) -> bool {
        self.requested || !self.quotas.is_empty() || self.fair.contested()
    }

    /// Before a poll: `Ok(measure)` to run (measuring its CPU time if `measure`), or
    /// `Err(Some(t))`: throttled until `t`, or `Err(None)`: another container's guest waiting
    /// for a thread goes first (the caller yields).
    pub(super) fn may_run(&self, now: Instant, turn: &mut Turn) -> Result<bool, Option<Instant>> {
        let was_waiting = std::mem::take(&mut turn.waiting);
        turn.continuing = was_waiting;
        if !self.active() {
            self.fair.leave_queue(self.entity, was_waiting);
            return Ok(false);
        }
        let throttled = self
            .quotas
            .iter()
            .filter_map(|quota| quota.throttled_until(now))
            .max();
        if let Some(until) = throttled {
            self.fair.leave_queue(self.entity, was_waiting);
            return Err(Some(until));
        }
        if !self.fair.take_turn(self.entity, was_waiting) {
            turn.waiting = true;
            return Err(None);
        }
        Ok(true)
    }

    /// After a measured poll that used `used` of CPU: charges it, and queues the instance for
    /// its next turn if it yielded its time slice (`yielded`).
    pub(super) fn ran(&self, now: Instant, used: Duration, yielded: bool, turn: &mut Turn) {
        self.used
            .fetch_add(used.as_nanos() as u64, Ordering::Relaxed);
        for quota in &self.quotas {
            quota.charge(now, used);
        }
        self.fair
            .charge(self.entity, used, yielded, turn.continuing);
        turn.waiting = yielded;
    }

    /// The instance ended: it waits for no turn any more.
    pub(super) fn ended(&self, turn: Turn) {
        self.fair.leave_queue(self.entity, turn.waiting);
    }
}

impl Drop for CpuControl {
    fn drop(&mut self) {
        self.fair.unregister(self.entity, self.requested);
    }
}

/// The turns of busy, weighted containers, shared by a runtime's guests ([module docs](self)).
pub(crate) struct FairShare {
    /// How far (in virtual runtime at the weight of one core) a container may run ahead of a
    /// waiting one before it lets it go first: one time slice.
    lead: u128,
    /// Containers that request CPU.
    requesting: AtomicUsize,
    state: Mutex<FairState>,
}

#[derive(Default)]
struct FairState {
    next_entity: u64,
    entities: HashMap<u64, Entity>,
    /// The containers with a guest waiting for its turn, by virtual runtime.
    waiting: BTreeSet<(u128, u64)>,
}

struct Entity {
    shares: u64,
    /// CPU time in nanoseconds × 1024 / shares.
    vruntime: u128,
    /// Its guests waiting for their turn.
    waiting: u32,
}

impl FairShare {
    pub fn new(time_slice: Duration) -> Arc<Self> {
        Arc::new(FairShare {
            lead: time_slice.as_nanos().max(1),
            requesting: AtomicUsize::new(0),
            state: Mutex::default(),
        })
    }

    /// Whether some container requests CPU: then every busy container's turns are weighed.
    fn contested(&self) -> bool {
        self.requesting.load(Ordering::Relaxed) > 0
    }

    /// A container with `shares` (none: it requests no CPU).
    fn register(&self, shares: Option<u64>) -> u64 {
        if shares.is_some() {
            self.requesting.fetch_add(1, Ordering::Relaxed);
        }
        let shares = shares.unwrap_or(MIN_SHARES);
        let mut state = self.state.lock().unwrap();
        let id = state.next_entity;
        state.next_entity += 1;
        // A newcomer starts level with the container furthest behind, not at zero, so that
        // it cannot claim every turn until it has caught up with the others.
        let vruntime = state.waiting.first().map_or(0, |(vruntime, _)| *vruntime);
        state.entities.insert(
            id,
            Entity {
                shares: shares.max(MIN_SHARES),
                vruntime,
                waiting: 0,
            },
        );
        id
    }

    fn unregister(&self, id: u64, requested: bool) {
        if requested {
            self.requesting.fetch_sub(1, Ordering::Relaxed);
        }
        let mut state = self.state.lock().unwrap();
        if let Some(entity) = state.entities.remove(&id)
            && entity.waiting > 0
        {
            state.waiting.remove(&(entity.vruntime, id));
        }
    }

    /// One guest of `id` stops waiting (it runs, or is throttled) if it was.
    fn leave_queue(&self, id: u64, was_waiting: bool) {
        if was_waiting {
            let mut state = self.state.lock().unwrap();
            state.unqueue(id);
        }
    }

    /// Whether a guest of `id` may take its turn now: false when another container, further
    /// behind by more than the lead, has a guest waiting (this one then waits again).
    fn take_turn(&self, id: u64, was_waiting: bool) -> bool {
        let mut state = self.state.lock().unwrap();
        if was_waiting {
            state.unqueue(id);
        }
        let Some(vruntime) = state.entities.get(&id).map(|entity| entity.vruntime) else {
            return true;
        };
        let behind = state
            .waiting
            .iter()
            .find(|(_, other)| *other != id)
            .map(|(other, _)| *other);
        match behind {
            Some(other) if other.saturating_add(self.lead) < vruntime => {
                state.enqueue(id);
                false
            }
            _ => true,
        }
    }

    /// Charges `used` to `id`; a guest that `yielded` waits for its next turn. `continuing`:
    /// the guest ran a turn it had waited for (rather than waking from a wait on the host).
    fn charge(&self, id: u64, used: Duration, yielded: bool, continuing: bool) {
        let mut state = self.state.lock().unwrap();
        let floor = state.waiting.first().map(|(vruntime, _)| *vruntime);
        let Some(entity) = state.entities.get_mut(&id) else {
            return;
        };
        let was_waiting = entity.waiting > 0;
        let old = entity.vruntime;
        entity.vruntime += used.as_nanos() * 1024 / u128::from(entity.shares);
        if yielded && !continuing && !was_waiting {
            // A container coming back from a wait (asleep, or throttled) is placed no further
            // behind than one lead from the others, as CFS places a waking task
            // (`place_entity`): sleeping earns no credit beyond that.
            if let Some(floor) = floor {
                entity.vruntime = entity.vruntime.max(floor.saturating_sub(self.lead));
            }
        }
        let new = entity.vruntime;
        if was_waiting {
            state.waiting.remove(&(old, id));
            state.waiting.insert((new, id));
        }
        if yielded {
            state.enqueue(id);
        }
    }
}

impl FairState {
    fn enqueue(&mut self, id: u64) {
        if let Some(entity) = self.entities.get_mut(&id) {
            entity.waiting += 1;
            if entity.waiting == 1 {
                self.waiting.insert((entity.vruntime, id));
            }
        }
    }

    fn unqueue(&mut self, id: u64) {
        if let Some(entity) = self.entities.get_mut(&id)
            && entity.waiting > 0
        {
            entity.waiting -= 1;
            if entity.waiting == 0 {
                self.waiting.remove(&(entity.vruntime, id));
            }
        }
    }
}

/// The calling thread's CPU time so far.
pub(super) fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_kubelet() {
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(250), 256);
        assert_eq!(shares(1), 2);
        assert_eq!(shares(0), 2);
        assert_eq!(shares(1_000_000), 262_144);
    }

    #[test]
    fn a_quota_throttles_until_the_next_period_and_carries_overuse() {
        let quota = CpuQuota::new(250); // 25 ms per 100 ms
        let start = Instant::now();
        assert_eq!(quota.throttled_until(start), None);
        quota.charge(start, Duration::from_millis(20));
        assert_eq!(quota.throttled_until(start), None);
        quota.charge(start, Duration::from_millis(10)); // 30 ms: 5 ms over
        let end = start + CPU_PERIOD;
        assert_eq!(quota.throttled_until(start), Some(end));
        // The next period starts 5 ms into its quota.
        assert_eq!(quota.throttled_until(end), None);
        quota.charge(end, Duration::from_millis(20));
        assert_eq!(quota.throttled_until(end), Some(end + CPU_PERIOD));
        // Idle periods save nothing up.
        let later = end + CPU_PERIOD * 10;
        quota.charge(later, Duration::from_millis(25));
        assert!(quota.throttled_until(later).is_some());
    }

    #[test]
    fn weights_split_contended_turns() {
        // Two always-busy containers with shares 1:3 take turns of one slice each; the lighter
        // one lets the heavier go first once it is ahead: their CPU splits 1:3.
        let fair = FairShare::new(Duration::from_millis(2));
        let light = fair.register(Some(shares(250)));
        let heavy = fair.register(Some(shares(750)));
        let slice = Duration::from_millis(2);
        let mut used = [Duration::ZERO; 2];
        let mut queued = [false; 2];
        let ids = [light, heavy];
        // Round-robin between the two guests, as a run queue does.
        for turn in 0..4000 {
            let who = turn % 2;
            let continuing = queued[who];
            if fair.take_turn(ids[who], queued[who]) {
                fair.charge(ids[who], slice, true, continuing);
                used[who] += slice;
                queued[who] = true;
            } else {
                queued[who] = true;
            }
        }
        let ratio = used[1].as_secs_f64() / used[0].as_secs_f64();
        assert!((2.85..=3.15).contains(&ratio), "heavy/light = {ratio}");
    }

    #[test]
    fn a_guest_alone_is_never_held_back() {
        let fair = FairShare::new(Duration::from_millis(2));
        let light = fair.register(None);
        let heavy = fair.register(Some(shares(4000)));
        // The heavy container is not waiting: the light one always runs.
        for _ in 0..100 {
            assert!(fair.take_turn(light, true));
            fair.charge(light, Duration::from_millis(2), true, true);
        }
        fair.unregister(heavy, true);
        fair.unregister(light, false);
        assert!(fair.state.lock().unwrap().waiting.is_empty());
    }
}
