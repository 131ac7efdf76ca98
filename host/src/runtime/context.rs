//! What a container's instances share while it runs ([`ContainerContext`]): the termination
//! notice and its grace clock (what `wasmlet:lifecycle/control` reports to the guest), the
//! readiness the guest reports with `set-ready`, the container's memory budget and its CPU
//! limits and weight.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cpu::CpuControl;
use super::memory::MemoryBudget;
use crate::bindings::{Termination, TerminationReason};
use crate::clock::Clock;
use crate::signal::{Watched, Watcher};

/// What a container's instances share: how and when the container is being stopped, its
/// readiness, and its memory budget. Owned by the container's supervisor.
pub(crate) struct ContainerContext {
    pub clock: Arc<dyn Clock>,
    /// Zero of the guests' `wasi:clocks/monotonic-clock`.
    pub(super) clock_origin: Instant,
    pub(super) termination: Watched<Option<TerminationNotice>>,
    stop: Mutex<Option<StopClock>>,
    pub(super) ready: Watched<Option<bool>>,
    pub memory: Arc<MemoryBudget>,
    /// The container's CPU limits and weight.
    pub cpu: Arc<CpuControl>,
}

/// The grace clock of a stop in progress.
#[derive(Clone, Copy)]
struct StopClock {
    began: Instant,
    deadline: Instant,
}

impl StopClock {
    /// The whole time from the start of the stop to the kill: the grace period as given, or
    /// more after the minimum that follows a preStop, or less after a shortening delete.
    fn grace_period(&self) -> Duration {
        self.deadline.saturating_duration_since(self.began)
    }
}

/// What the guest is told when terminate is delivered.
#[derive(Clone)]
pub(super) struct TerminationNotice {
    reason: TerminationReason,
    message: String,
}

impl ContainerContext {
    pub fn new(
        clock: Arc<dyn Clock>,
        clock_origin: Instant,
        memory: MemoryBudget,
        cpu: CpuControl,
    ) -> Arc<Self> {
        Arc::new(ContainerContext {
            clock,
            clock_origin,
            termination: Watched::new(None),
            stop: Mutex::new(None),
            ready: Watched::new(None),
            memory: Arc::new(memory),
            cpu: Arc::new(cpu),
        })
    }

    /// Starts the grace clock: the stop began at `began` and the kill comes at `deadline`.
    pub fn start_grace(&self, began: Instant, deadline: Instant) {
        *self.stop.lock().unwrap() = Some(StopClock { began, deadline });
    }

    /// When the stop in progress kills what is left, if one began: the one place a stop's
    /// deadline is kept.
    pub fn deadline(&self) -> Option<Instant> {
        self.stop.lock().unwrap().map(|stop| stop.deadline)
    }

    /// Moves the kill to `deadline` (`grace-remaining` counts down to it).
    pub fn move_deadline(&self, deadline: Instant) {
        if let Some(stop) = self.stop.lock().unwrap().as_mut() {
            stop.deadline = deadline;
        }
    }

    /// Delivers terminate: wakes every termination pollable of every instance.
    pub fn deliver_terminate(&self, reason: TerminationReason, message: String) {
        self.termination.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(TerminationNotice { reason, message });
                true
            }
        });
    }

    /// Resolves when terminate has been delivered.
    pub async fn terminated(&self) {
        let _ = self.termination.subscribe().wait_for(Option::is_some).await;
    }

    /// Whether terminate has been delivered.
    pub fn terminating(&self) -> bool {
        self.termination.get().is_some()
    }

    /// The grace period of the stop in progress, if one began.
    pub fn grace_period(&self) -> Option<Duration> {
        self.stop.lock().unwrap().map(|stop| stop.grace_period())
    }

    /// What the guest reported through `set-ready`, if it did.
    pub fn reported_ready(&self) -> Option<bool> {
        self.ready.get()
    }

    /// Every `set-ready` report, for the supervisor to publish in the status.
    pub fn ready_reports(&self) -> Watcher<Option<bool>> {
        self.ready.subscribe()
    }

    pub(super) fn grace_remaining(&self) -> Option<Duration> {
        let stop = (*self.stop.lock().unwrap())?;
        Some(stop.deadline.saturating_duration_since(self.clock.now()))
    }

    pub(super) fn termination(&self) -> Option<Termination> {
        let notice = self.termination.get()?;
        let stop = (*self.stop.lock().unwrap())?;
        Some(Termination {
            reason: notice.reason,
            message: notice.message,
            grace_period: nanos(stop.grace_period()),
            grace_remaining: nanos(stop.deadline.saturating_duration_since(self.clock.now())),
        })
    }
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
