//! The pod's decisions, as one pure function in the spirit of the kubelet's `computePodActions`
//! (`pkg/kubelet/kuberuntime/kuberuntime_manager.go`): from what the pod is made of, what is
//! observed of each container and the time, to the actions to take — start a container, wait
//! out a restart back-off, stop a container with the pod's grace, record that a container has
//! ended for good, finish the pod.
//!
//! Nothing here runs a guest or reads a clock: the pod runner (`pod::run_pod`) observes, calls
//! [`decide`], executes what it returns and records the effect in the [`PodView`], and the
//! decisions are unit tested as tables.

use std::time::{Duration, Instant};

use crate::manifest::RestartPolicy;

/// What a container slot is in the pod: init containers first, then app containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// A plain init container: runs to completion before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always`: started before the next init container,
    /// kept running beside the app containers, stopped after them.
    Sidecar,
    /// An app container (`spec.containers`).
    App,
}

/// What the decisions need of the pod's spec.
#[derive(Debug, Clone)]
pub(crate) struct PodPlan {
    pub slots: Vec<SlotKind>,
    pub restart_policy: RestartPolicy,
}

impl PodPlan {
    /// The restart policy that applies to `slot`: a sidecar always restarts; a plain init
    /// container must complete, so under `Always` it restarts on failure only.
    fn policy(&self, slot: usize) -> RestartPolicy {
        match (self.slots[slot], self.restart_policy) {
            (SlotKind::Sidecar, _) => RestartPolicy::Always,
            (SlotKind::Init, RestartPolicy::Always) => RestartPolicy::OnFailure,
            (_, policy) => policy,
        }
    }
}

/// How one run of a container ended, as far as the decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// Exit code 0 and reason `Completed`.
    pub completed: bool,
    /// wasmlet stopped it because its liveness or startup probe failed.
    pub killed_by_probe: bool,
    /// When it ended (the kubelet's `FinishedAt`).
    pub at: Instant,
}

/// What is observed of one container slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Never started.
    Waiting,
    /// A run is in progress; `started`: its postStart is done (it counts as started for the
    /// containers that wait on it).
    Running { started: bool },
    /// Its last run ended and nothing has been decided about it yet.
    Exited(Exit),
    /// Ended at `exit` and waits for its restart until `until`.
    BackingOff { until: Instant, exit: Instant },
    /// Ended for good; `completed` as its last run ended.
    Done { completed: bool },
}

impl Slot {
    /// A run is in progress, or one ended and may be followed by another.
    fn active(self) -> bool {
        matches!(
            self,
            Slot::Running { .. } | Slot::Exited(_) | Slot::BackingOff { .. }
        )
    }

    /// Runs and has started (for the containers that wait on a sidecar): a sidecar that ended,
    /// or waits out its back-off, holds the next container back until it has started again
    /// (`computeInitContainerActions`: an exited sidecar is restarted, the next one not started).
    fn has_started(self) -> bool {
        self == Slot::Running { started: true }
    }
}

/// The kubelet's restart back-off of one container (`doBackOff` in
/// `pkg/kubelet/kuberuntime/kuberuntime_manager.go`, on client-go's `flowcontrol.Backoff` with
/// the kubelet's `HasExpiredFunc`): no entry until the first restart, so the first restart is
/// immediate; each restart after that waits the entry's back-off from the exit, 10 s doubling
/// to 300 s; an exit more than 600 s after the last restart finds the entry expired and
/// restarts at once, starting over at 10 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BackOff {
    /// The current back-off and when it was last updated (`lastUpdate`), once there is one.
    entry: Option<(Duration, Instant)>,
}

/// The initial back-off (the kubelet's `containerBackOffPeriod`).
pub const BACK_OFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off (`MaxContainerBackOff`).
pub const BACK_OFF_MAX: Duration = Duration::from_secs(300);
/// An entry older than this, at an exit, has expired (the kubelet's `HasExpiredFunc`).
pub const BACK_OFF_EXPIRY: Duration = Duration::from_secs(600);

impl BackOff {
    fn expired(entry: (Duration, Instant), at: Instant) -> bool {
        at.saturating_duration_since(entry.1) > BACK_OFF_EXPIRY
    }

    /// `IsInBackOffSince(exit)`: the restart of a container that ended at `exit` must wait
    /// until the returned time (with the back-off in force), or may happen at once (`None`).
    fn wait_after(self, exit: Instant) -> Option<(Duration, Instant)> {
        let entry = self.entry?;
        if Self::expired(entry, exit) {
            return None;
        }
        Some((entry.0, crate::clock::after(exit, entry.0)))
    }

    /// `Next(exit)` at `now`, when the container restarts: the entry starts at 10 s (none
    /// yet, or expired), or doubles up to 300 s.
    fn next(self, exit: Instant, now: Instant) -> BackOff {
        let backoff = match self.entry {
            Some(entry) if !Self::expired(entry, exit) => (entry.0 * 2).min(BACK_OFF_MAX),
            _ => BACK_OFF_INITIAL,
        };
        BackOff {
            entry: Some((backoff, now)),
        }
    }
}

/// The pod's stop, as the decisions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PodStop {
    /// Counts the pod's stop requests that superseded the one before (a delete, a shorter
    /// grace, a kill): a slot that has not been handed this generation is handed it.
    pub generation: u64,
}

/// The stop a slot was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handed {
    /// The pod's stop request of this generation.
    Pod(u64),
    /// A stop of its own: a sidecar stopped because every app container has ended.
    PodCompleted,
}

/// Everything [`decide`] reads.
#[derive(Debug, Clone)]
pub(crate) struct PodView {
    pub plan: PodPlan,
    pub slots: Vec<Slot>,
    /// Each slot's restart back-off.
    pub back_off: Vec<BackOff>,
    /// The stop each slot was handed, if any.
    pub handed: Vec<Option<Handed>>,
    /// Whether each slot was told that its terminate may come (its turn, for a sidecar).
    pub released: Vec<bool>,
    /// The pod's stop request, once it was deleted (or its host shuts down).
    pub stop: Option<PodStop>,
    /// The pod has finished: nothing of it runs or will run again.
    pub finished: bool,
}

/// One thing the pod runner is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start the container's first run.
    Start { slot: usize },
    /// Start the container again; its back-off is `back_off` from now on.
    Restart { slot: usize, back_off: BackOff },
    /// The container ended and may restart only after `delay`, at `until` (`CrashLoopBackOff`).
    WaitBackOff {
        slot: usize,
        delay: Duration,
        until: Instant,
    },
    /// Hand the container the pod's stop request (preStop, terminate, kill at its deadline).
    Stop { slot: usize },
    /// Stop a sidecar because every app container has ended on its own: with the pod's grace
    /// period, one budget for all the sidecars stopped so.
    StopCompleted { slot: usize },
    /// A stopping sidecar's turn has come: its terminate may be delivered once its preStop is
    /// over.
    ReleaseTerminate { slot: usize },
    /// The container has ended for good: report how its last run ended.
    Finish { slot: usize },
    /// Nothing of the pod runs or will run again.
    FinishPod,
}

/// What to do now, and when to decide again if nothing else happens first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub actions: Vec<Action>,
    pub wake_at: Option<Instant>,
}

/// Settles a slot whose run ended: restart (at once, or after the back-off) or end for good;
/// `no_restart`: the pod is being stopped or is over. A container that was handed a stop never
/// restarts (`ShouldContainerBeRestarted`: the pod is being deleted); otherwise restartPolicy
/// decides, and one killed for a failed liveness or startup probe restarts whatever its exit
/// code unless the policy is `Never` (`computePodActions`: `restart := shouldRestartOnFailure`
/// for a failed probe). The back-off is `doBackOff`'s.
fn settle(
    view: &PodView,
    slot: usize,
    state: &mut Slot,
    no_restart: bool,
    now: Instant,
    actions: &mut Vec<Action>,
    wake_at: &mut Option<Instant>,
) {
    let mut wake = |until: Instant| *wake_at = Some(wake_at.map_or(until, |at| at.min(until)));
    match *state {
        Slot::Exited(exit) => {
            let policy = view.plan.policy(slot);
            let restarts = view.handed[slot].is_none()
                && !no_restart
                && (policy.restarts(exit.completed)
                    || exit.killed_by_probe && policy != RestartPolicy::Never);
            if !restarts {
                actions.push(Action::Finish { slot });
                *state = Slot::Done {
                    completed: exit.completed,
                };
                return;
            }
            match view.back_off[slot].wait_after(exit.at) {
                Some((delay, until)) if until > now => {
                    wake(until);
                    actions.push(Action::WaitBackOff { slot, delay, until });
                    *state = Slot::BackingOff {
                        until,
                        exit: exit.at,
                    };
                }
                _ => {
                    let back_off = view.back_off[slot].next(exit.at, now);
                    actions.push(Action::Restart { slot, back_off });
                    *state = Slot::Running { started: false };
                }
            }
        }
        // A stop during the back-off ends the container where it stands.
        Slot::BackingOff { .. } if no_restart => {
            actions.push(Action::Finish { slot });
            // How it ended is the run before the back-off: the runner keeps it.
            *state = Slot::Done { completed: false };
        }
        Slot::BackingOff { until, exit } if until <= now => {
            let back_off = view.back_off[slot].next(exit, now);
            actions.push(Action::Restart { slot, back_off });
            *state = Slot::Running { started: false };
        }
        Slot::BackingOff { until, .. } => wake(until),
        _ => {}
    }
}

/// The pod's decisions: from the view and the time, the actions to take now, in order.
pub(crate) fn decide(view: &PodView, now: Instant) -> Decision {
    let mut actions = Vec::new();
    let mut wake_at: Option<Instant> = None;
    if view.finished {
        return Decision { actions, wake_at };
    }
    let plan = &view.plan;
    let stopping = view.stop.is_some();
    // What each slot becomes once the actions of this decision are done.
    let mut slots = view.slots.clone();

    // Ended runs: restart (at once, or after the back-off), or end for good — the containers
    // that are not sidecars first, since whether the pod goes on decides the sidecars'.
    for (slot, state) in slots.iter_mut().enumerate() {
        if plan.slots[slot] != SlotKind::Sidecar {
            settle(view, slot, state, stopping, now, &mut actions, &mut wake_at);
        }
    }
    // Once no app container runs or will run, the pod is over: a sidecar that ended, or waits
    // out its back-off, is not started again (`computePodActions`: no container to keep and
    // none to start gives `KillPod` with `InitContainersToStart = nil`).
    let init_failed_for_good =
        plan.slots.iter().zip(&slots).any(|(kind, state)| {
            *kind == SlotKind::Init && *state == Slot::Done { completed: false }
        });
    let apps_done = plan
        .slots
        .iter()
        .zip(&slots)
        .all(|(kind, state)| *kind != SlotKind::App || matches!(state, Slot::Done { .. }));
    let pod_over = stopping || apps_done || init_failed_for_good;
    for (slot, state) in slots.iter_mut().enumerate() {
        if plan.slots[slot] == SlotKind::Sidecar {
            settle(view, slot, state, pod_over, now, &mut actions, &mut wake_at);
        }
    }

    // The pod's stop reaches every running container at once, sidecars included: each gets
    // `Killing` and its preStop now (`killContainersWithSyncResult` in
    // `pkg/kubelet/kuberuntime/kuberuntime_container.go`); only a sidecar's terminate waits
    // for its turn (below). A later, superseding request reaches them all again.
    if let Some(stop) = view.stop {
        for (slot, state) in slots.iter().enumerate() {
            let already = view.handed[slot] == Some(Handed::Pod(stop.generation));
            if !already && matches!(state, Slot::Running { .. }) {
                actions.push(Action::Stop { slot });
            }
        }
    }

    // Starts, in order: each init container once the one before it completed (a sidecar once
    // it has started), then every app container together. Nothing starts once the pod stops.
    let mut initialized = true;
    let mut init_failed = false;
    for (slot, kind) in plan.slots.iter().enumerate() {
        if *kind == SlotKind::App {
            break;
        }
        let state = slots[slot];
        if state == Slot::Waiting {
            if !stopping {
                actions.push(Action::Start { slot });
                slots[slot] = Slot::Running { started: false };
            }
            initialized = false;
            break;
        }
        // A container after this one already started: this one no longer gates anything (a
        // sidecar restarted after the next container started does not hold it back).
        let next_started = slots
            .get(slot + 1)
            .is_some_and(|next| *next != Slot::Waiting);
        let ready_for_next = next_started
            || match kind {
                SlotKind::Sidecar => state.has_started(),
                _ => state == Slot::Done { completed: true },
            };
        if !ready_for_next {
            initialized = false;
            init_failed = matches!(state, Slot::Done { completed: false });
            break;
        }
    }
    let apps = plan.slots.iter().position(|kind| *kind == SlotKind::App);
    if initialized && !stopping {
        for slot in apps.into_iter().flat_map(|first| first..plan.slots.len()) {
            if slots[slot] == Slot::Waiting {
                actions.push(Action::Start { slot });
                slots[slot] = Slot::Running { started: false };
            }
        }
    }

    // Sidecars stop once nothing else runs or will run: the app containers have ended (or
    // will never start). All of them at once, with one grace budget, as the kubelet's
    // `killPodWithSyncResult` does once `computePodActions` finds no container to keep.
    let others_over = plan.slots.iter().zip(&slots).all(|(kind, state)| {
        *kind == SlotKind::Sidecar
            || !state.active() && (*state != Slot::Waiting || stopping || init_failed)
    });
    let app_phase_over = others_over && (initialized || stopping || init_failed);
    if app_phase_over && !stopping {
        for (slot, (kind, state)) in plan.slots.iter().zip(&slots).enumerate() {
            if *kind == SlotKind::Sidecar
                && view.handed[slot].is_none()
                && matches!(state, Slot::Running { .. })
            {
                actions.push(Action::StopCompleted { slot });
            }
        }
    }
    // A sidecar's terminate waits until every app container has ended and so has every
    // sidecar after it: sidecars end in reverse order (`newTerminationOrdering`, `waitForTurn`
    // in `pkg/kubelet/kuberuntime/kuberuntime_termination_order.go`). Plain init containers
    // wait for no one and hold no one up.
    let apps_over = plan
        .slots
        .iter()
        .zip(&slots)
        .all(|(kind, state)| *kind != SlotKind::App || !state.active());
    if apps_over {
        for slot in (0..plan.slots.len()).rev() {
            if plan.slots[slot] != SlotKind::Sidecar || !slots[slot].active() {
                continue;
            }
            // The last sidecar still active is the one whose turn it is.
            let handed_now = actions.iter().any(|action| {
                matches!(action, Action::Stop { slot: s } | Action::StopCompleted { slot: s } if *s == slot)
            });
            if (view.handed[slot].is_some() || handed_now) && !view.released[slot] {
                actions.push(Action::ReleaseTerminate { slot });
            }
            break;
        }
    }
    if app_phase_over
        && !plan
            .slots
            .iter()
            .zip(&slots)
            .any(|(kind, state)| *kind == SlotKind::Sidecar && state.active())
    {
        actions.push(Action::FinishPod);
    }
    Decision { actions, wake_at }
}

#[cfg(test)]
mod tests;
