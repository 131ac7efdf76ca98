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
mod tests {
    //! Table tests of the pod's decisions. Those named after a case of the kubelet's
    //! `TestComputePodActions`, `TestComputePodActionsWithInitContainers` or
    //! `TestComputePodActionsWithRestartableInitContainers`
    //! (`pkg/kubelet/kuberuntime/kuberuntime_manager_test.go`) port that case: its container
    //! statuses become [`Slot`]s, its `ContainersToStart`/`InitContainersToStart` become
    //! `Start`/`Restart`, `KillPod` of a pod whose containers all ended becomes `FinishPod` (or
    //! a sidecar's `StopCompleted`). Cases left out, and why:
    //! - sandbox cases (a dead or IP-less sandbox, `Attempt`, `CreateSandbox`): a wasmlet pod
    //!   has no sandbox to lose;
    //! - container definition (hash or image) changes: a running pod's spec never changes;
    //! - ephemeral containers and in-place resize: not supported;
    //! - the `Unknown` and `Created`-but-not-started states: a wasmlet run is created and
    //!   started in one step and its state is always known;
    //! - the liveness/startup failure cases of running containers: the container's own
    //!   supervisor stops a container whose probe failed (`container.rs`), and the decision
    //!   here is the restart that follows (`killed_by_probe`).
    use super::*;
    use Action::*;
    use SlotKind::{App, Init, Sidecar};

    fn view(kinds: &[SlotKind], slots: &[Slot]) -> PodView {
        PodView {
            plan: PodPlan {
                slots: kinds.to_vec(),
                restart_policy: RestartPolicy::Always,
            },
            slots: slots.to_vec(),
            back_off: vec![super::BackOff::default(); kinds.len()],
            handed: vec![None; kinds.len()],
            released: vec![false; kinds.len()],
            stop: None,
            finished: false,
        }
    }

    fn exited(completed: bool, at: Instant) -> Slot {
        Slot::Exited(Exit {
            completed,
            killed_by_probe: false,
            at,
        })
    }

    fn first_back_off(now: Instant) -> super::BackOff {
        super::BackOff {
            entry: Some((BACK_OFF_INITIAL, now)),
        }
    }

    const RUNNING: Slot = Slot::Running { started: true };
    const STARTING: Slot = Slot::Running { started: false };
    const COMPLETED: Slot = Slot::Done { completed: true };
    const WAITING: Slot = Slot::Waiting;

    fn with_policy(mut view: PodView, policy: RestartPolicy) -> PodView {
        view.plan.restart_policy = policy;
        view
    }

    // TestComputePodActions

    #[test]
    fn everything_is_good_do_nothing() {
        let now = Instant::now();
        let view = view(&[App, App, App], &[RUNNING; 3]);
        assert_eq!(decide(&view, now).actions, []);
    }

    #[test]
    fn start_all_containers_for_a_new_pod() {
        let now = Instant::now();
        let view = view(&[App, App, App], &[WAITING; 3]);
        assert_eq!(
            decide(&view, now).actions,
            [Start { slot: 0 }, Start { slot: 1 }, Start { slot: 2 }]
        );
    }

    #[test]
    fn restart_exited_containers_if_restart_policy_is_always() {
        let now = Instant::now();
        let view = view(
            &[App, App, App],
            &[exited(true, now), exited(false, now), RUNNING],
        );
        let back_off = first_back_off(now);
        assert_eq!(
            decide(&view, now).actions,
            [Restart { slot: 0, back_off }, Restart { slot: 1, back_off }]
        );
    }

    #[test]
    fn restart_failed_containers_if_restart_policy_is_on_failure() {
        let now = Instant::now();
        let view = with_policy(
            view(
                &[App, App, App],
                &[exited(true, now), exited(false, now), RUNNING],
            ),
            RestartPolicy::OnFailure,
        );
        let back_off = first_back_off(now);
        assert_eq!(
            decide(&view, now).actions,
            [Finish { slot: 0 }, Restart { slot: 1, back_off }]
        );
    }

    #[test]
    fn dont_restart_containers_if_restart_policy_is_never() {
        let now = Instant::now();
        let view = with_policy(
            view(
                &[App, App, App],
                &[exited(true, now), exited(false, now), RUNNING],
            ),
            RestartPolicy::Never,
        );
        assert_eq!(
            decide(&view, now).actions,
            [Finish { slot: 0 }, Finish { slot: 1 }]
        );
    }

    #[test]
    fn kill_and_recreate_the_container_if_the_liveness_check_has_failed() {
        // Under OnFailure too, and whatever the exit code (`restart := shouldRestartOnFailure`).
        let now = Instant::now();
        for policy in [RestartPolicy::Always, RestartPolicy::OnFailure] {
            let mut view = with_policy(view(&[App, App], &[RUNNING, RUNNING]), policy);
            view.slots[1] = Slot::Exited(Exit {
                completed: true,
                killed_by_probe: true,
                at: now,
            });
            assert_eq!(
                decide(&view, now).actions,
                [Restart {
                    slot: 1,
                    back_off: first_back_off(now)
                }],
                "{policy:?}"
            );
        }
    }

    #[test]
    fn a_container_killed_for_a_failed_probe_is_not_restarted_under_never() {
        let now = Instant::now();
        let mut view = with_policy(view(&[App], &[RUNNING]), RestartPolicy::Never);
        view.slots[0] = Slot::Exited(Exit {
            completed: false,
            killed_by_probe: true,
            at: now,
        });
        assert_eq!(decide(&view, now).actions, [Finish { slot: 0 }, FinishPod]);
    }

    // TestComputePodActionsWithInitContainers

    #[test]
    fn initialization_completed_start_all_containers() {
        let now = Instant::now();
        let view = view(
            &[Init, Init, Init, App, App, App],
            &[COMPLETED, COMPLETED, COMPLETED, WAITING, WAITING, WAITING],
        );
        assert_eq!(
            decide(&view, now).actions,
            [Start { slot: 3 }, Start { slot: 4 }, Start { slot: 5 }]
        );
    }

    #[test]
    fn no_init_containers_have_been_started_start_the_first_one() {
        let now = Instant::now();
        let view = view(&[Init, Init, Init, App], &[WAITING; 4]);
        assert_eq!(decide(&view, now).actions, [Start { slot: 0 }]);
    }

    #[test]
    fn initialization_in_progress_do_nothing() {
        let now = Instant::now();
        let view = view(
            &[Init, Init, Init, App],
            &[COMPLETED, COMPLETED, RUNNING, WAITING],
        );
        assert_eq!(decide(&view, now).actions, []);
    }

    #[test]
    fn initialization_failed_restart_the_last_init_container_if_restart_policy_is_always_or_on_failure()
     {
        let now = Instant::now();
        for policy in [RestartPolicy::Always, RestartPolicy::OnFailure] {
            let view = with_policy(
                view(
                    &[Init, Init, Init, App],
                    &[COMPLETED, COMPLETED, exited(false, now), WAITING],
                ),
                policy,
            );
            assert_eq!(
                decide(&view, now).actions,
                [Restart {
                    slot: 2,
                    back_off: first_back_off(now)
                }],
                "{policy:?}"
            );
        }
    }

    #[test]
    fn initialization_failed_kill_pod_if_restart_policy_is_never() {
        let now = Instant::now();
        let view = with_policy(
            view(
                &[Init, Init, Init, App],
                &[COMPLETED, COMPLETED, exited(false, now), WAITING],
            ),
            RestartPolicy::Never,
        );
        assert_eq!(decide(&view, now).actions, [Finish { slot: 2 }, FinishPod]);
    }

    #[test]
    fn an_init_container_that_completed_is_not_run_again_under_always() {
        let now = Instant::now();
        let view = view(&[Init, App], &[exited(true, now), WAITING]);
        assert_eq!(
            decide(&view, now).actions,
            [Finish { slot: 0 }, Start { slot: 1 }]
        );
    }

    // TestComputePodActionsWithRestartableInitContainers

    #[test]
    fn restartable_init_container_has_started_start_the_next() {
        let now = Instant::now();
        let view = view(
            &[Sidecar, Sidecar, Sidecar, App],
            &[RUNNING, WAITING, WAITING, WAITING],
        );
        assert_eq!(decide(&view, now).actions, [Start { slot: 1 }]);
    }

    #[test]
    fn startup_probe_has_not_passed_do_nothing() {
        // A sidecar is started once its postStart is done and its startup probe has passed.
        let now = Instant::now();
        let view = view(
            &[Sidecar, Sidecar, Sidecar, App],
            &[RUNNING, STARTING, WAITING, WAITING],
        );
        assert_eq!(decide(&view, now).actions, []);
    }

    #[test]
    fn restartable_initialization_completed_start_all_containers() {
        let now = Instant::now();
        let view = view(
            &[Sidecar, Sidecar, Sidecar, App, App, App],
            &[RUNNING, RUNNING, RUNNING, WAITING, WAITING, WAITING],
        );
        assert_eq!(
            decide(&view, now).actions,
            [Start { slot: 3 }, Start { slot: 4 }, Start { slot: 5 }]
        );
    }

    #[test]
    fn restart_terminated_restartable_init_container_and_regular_containers() {
        let now = Instant::now();
        let view = view(
            &[Sidecar, Sidecar, Sidecar, App],
            &[exited(false, now), RUNNING, RUNNING, WAITING],
        );
        assert_eq!(
            decide(&view, now).actions,
            [
                Restart {
                    slot: 0,
                    back_off: first_back_off(now)
                },
                Start { slot: 3 }
            ]
        );
    }

    #[test]
    fn restart_the_last_restartable_init_container_even_if_pods_restart_policy_is_never() {
        let now = Instant::now();
        let view = with_policy(
            view(
                &[Sidecar, Sidecar, Sidecar, App],
                &[RUNNING, RUNNING, exited(false, now), RUNNING],
            ),
            RestartPolicy::Never,
        );
        assert_eq!(
            decide(&view, now).actions,
            [Restart {
                slot: 2,
                back_off: first_back_off(now)
            }]
        );
    }

    #[test]
    fn kill_the_pod_if_all_main_containers_succeeded_if_pods_restart_policy_is_never() {
        // Every sidecar is stopped at once, none restarted; the last one terminates first.
        let now = Instant::now();
        let view = with_policy(
            view(
                &[Sidecar, Sidecar, App, App],
                &[RUNNING, RUNNING, COMPLETED, exited(true, now)],
            ),
            RestartPolicy::Never,
        );
        assert_eq!(
            decide(&view, now).actions,
            [
                Finish { slot: 3 },
                StopCompleted { slot: 0 },
                StopCompleted { slot: 1 },
                ReleaseTerminate { slot: 1 }
            ]
        );
    }

    #[test]
    fn a_sidecar_in_back_off_is_not_restarted_once_the_app_containers_completed() {
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        let view = with_policy(
            view(
                &[Sidecar, App],
                &[Slot::BackingOff { until, exit: now }, exited(true, now)],
            ),
            RestartPolicy::Never,
        );
        assert_eq!(
            decide(&view, now).actions,
            [Finish { slot: 1 }, Finish { slot: 0 }, FinishPod]
        );
    }

    #[test]
    fn a_sidecar_that_ends_after_the_app_containers_completed_is_not_restarted() {
        let now = Instant::now();
        let view = view(&[Sidecar, App], &[exited(false, now), COMPLETED]);
        assert_eq!(decide(&view, now).actions, [Finish { slot: 0 }, FinishPod]);
    }

    // doBackOff

    #[test]
    fn the_first_restart_is_immediate_then_back_off_doubles_to_five_minutes() {
        // The kubelet's e2e restart times: "0s, 0s, 10s, 30s, 70s, 150s, 310s".
        let start = Instant::now();
        let mut view = view(&[App], &[exited(false, start)]);
        let mut now = start;
        let mut restarts = Vec::new();
        while restarts.len() < 9 {
            let decision = decide(&view, now);
            match decision.actions[..] {
                [Restart { slot: 0, back_off }] => {
                    restarts.push(now.duration_since(start).as_secs());
                    view.back_off[0] = back_off;
                    // It crashes again at once.
                    view.slots[0] = exited(false, now);
                }
                [WaitBackOff { slot: 0, until, .. }] => {
                    view.slots[0] = Slot::BackingOff { until, exit: now };
                    assert_eq!(decision.wake_at, Some(until));
                    now = until;
                }
                ref other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(restarts, [0, 10, 30, 70, 150, 310, 610, 910, 1210]);
    }

    #[test]
    fn an_exit_more_than_ten_minutes_after_the_last_restart_restarts_at_once_and_starts_over() {
        let start = Instant::now();
        let mut view = view(&[App], &[RUNNING]);
        // Restarted at `start` after a back-off of 160 s.
        view.back_off[0] = super::BackOff {
            entry: Some((Duration::from_secs(160), start)),
        };
        let late = start + BACK_OFF_EXPIRY + Duration::from_secs(1);
        view.slots[0] = exited(false, late);
        assert_eq!(
            decide(&view, late).actions,
            [Restart {
                slot: 0,
                back_off: first_back_off(late)
            }]
        );
        // Within ten minutes: the back-off, doubled at the restart.
        let soon = start + Duration::from_secs(5);
        view.slots[0] = exited(false, soon);
        assert!(matches!(
            decide(&view, soon).actions[..],
            [WaitBackOff { delay, .. }] if delay == Duration::from_secs(160)
        ));
    }

    // Stops

    #[test]
    fn a_delete_stops_every_running_container_at_once_and_starts_nothing() {
        // Plain init containers hold no sidecar's terminate back; app containers that never
        // started neither.
        let now = Instant::now();
        let mut view = view(&[Sidecar, Init, App], &[RUNNING, STARTING, WAITING]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(
            decide(&view, now).actions,
            [
                Stop { slot: 0 },
                Stop { slot: 1 },
                ReleaseTerminate { slot: 0 }
            ]
        );
    }

    #[test]
    fn on_delete_a_sidecars_terminate_waits_for_the_app_containers() {
        let now = Instant::now();
        let mut view = view(&[Sidecar, App], &[RUNNING, RUNNING]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(
            decide(&view, now).actions,
            [Stop { slot: 0 }, Stop { slot: 1 }]
        );
        view.handed = vec![Some(Handed::Pod(1)); 2];
        view.slots[1] = COMPLETED;
        assert_eq!(decide(&view, now).actions, [ReleaseTerminate { slot: 0 }]);
    }

    #[test]
    fn a_delete_during_a_back_off_ends_the_container_where_it_stands() {
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        let mut view = view(&[App], &[Slot::BackingOff { until, exit: now }]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(decide(&view, now).actions, [Finish { slot: 0 }, FinishPod]);
    }

    #[test]
    fn a_stopped_container_never_restarts() {
        let now = Instant::now();
        let mut view = view(&[App], &[exited(false, now)]);
        view.handed[0] = Some(Handed::Pod(1));
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(decide(&view, now).actions, [Finish { slot: 0 }, FinishPod]);
    }

    #[test]
    fn a_later_stop_request_is_handed_on_to_every_container_already_stopping() {
        let now = Instant::now();
        let mut view = view(&[Sidecar, App], &[RUNNING, RUNNING]);
        view.handed = vec![Some(Handed::PodCompleted), Some(Handed::Pod(1))];
        view.stop = Some(PodStop { generation: 2 });
        assert_eq!(
            decide(&view, now).actions,
            [Stop { slot: 0 }, Stop { slot: 1 }]
        );
    }

    #[test]
    fn sidecars_stop_together_and_terminate_in_reverse_order_after_the_app_containers() {
        let now = Instant::now();
        let apps_running = view(&[Sidecar, Sidecar, App], &[RUNNING, RUNNING, RUNNING]);
        assert_eq!(decide(&apps_running, now).actions, []);
        let apps_done = view(&[Sidecar, Sidecar, App], &[RUNNING, RUNNING, COMPLETED]);
        assert_eq!(
            decide(&apps_done, now).actions,
            [
                StopCompleted { slot: 0 },
                StopCompleted { slot: 1 },
                ReleaseTerminate { slot: 1 }
            ]
        );
        let mut first_waits = view(&[Sidecar, Sidecar, App], &[RUNNING, RUNNING, COMPLETED]);
        first_waits.handed = vec![Some(Handed::PodCompleted), Some(Handed::PodCompleted), None];
        first_waits.released = vec![false, true, false];
        assert_eq!(decide(&first_waits, now).actions, []);
        let mut second = first_waits.clone();
        second.slots[1] = COMPLETED;
        assert_eq!(decide(&second, now).actions, [ReleaseTerminate { slot: 0 }]);
        let all_done = view(&[Sidecar, Sidecar, App], &[COMPLETED; 3]);
        assert_eq!(decide(&all_done, now).actions, [FinishPod]);
    }

    #[test]
    fn a_delete_before_the_app_containers_started_still_stops_the_sidecars() {
        let now = Instant::now();
        let mut view = view(&[Sidecar, App], &[STARTING, WAITING]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(
            decide(&view, now).actions,
            [Stop { slot: 0 }, ReleaseTerminate { slot: 0 }]
        );
    }

    #[test]
    fn a_finished_pod_decides_nothing() {
        let now = Instant::now();
        let mut view = view(&[App], &[COMPLETED]);
        view.finished = true;
        assert_eq!(decide(&view, now).actions, []);
    }
}
