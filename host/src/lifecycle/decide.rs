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
    /// How long the run lasted, from its creation to its end.
    pub ran_for: Duration,
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
    /// Waits for its restart until `until`.
    BackingOff { until: Instant },
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

    /// Has started once (for the containers that wait on a sidecar).
    fn has_started(self) -> bool {
        !matches!(self, Slot::Waiting | Slot::Running { started: false })
    }
}

/// The kubelet's restart back-off of one container: 10 s, doubling, capped at 300 s, back to
/// 10 s for a container that ran 10 minutes before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackOff {
    next: Duration,
}

/// The wait before the first restart (Kubernetes' initial back-off).
pub const BACK_OFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest wait between restarts.
pub const BACK_OFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before it ended restarts after the initial back-off again.
pub const BACK_OFF_RESET: Duration = Duration::from_secs(600);

impl Default for BackOff {
    fn default() -> Self {
        BackOff {
            next: BACK_OFF_INITIAL,
        }
    }
}

impl BackOff {
    /// The wait before restarting a container that ran for `ran_for`, and the back-off after it.
    fn delay(self, ran_for: Duration) -> (Duration, BackOff) {
        let current = if ran_for >= BACK_OFF_RESET {
            BACK_OFF_INITIAL
        } else {
            self.next
        };
        let next = BackOff {
            next: (current * 2).min(BACK_OFF_MAX),
        };
        (current, next)
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
    /// The pod's stop request, once it was deleted (or its host shuts down).
    pub stop: Option<PodStop>,
    /// The pod has finished: nothing of it runs or will run again.
    pub finished: bool,
}

/// One thing the pod runner is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start a run of the container: its first, or a restart after its back-off.
    Start { slot: usize },
    /// The container ended and restarts after `delay`, at `until` (`CrashLoopBackOff`); its
    /// back-off is `next` from now on.
    WaitBackOff {
        slot: usize,
        delay: Duration,
        until: Instant,
        next: BackOff,
    },
    /// Hand the container the pod's stop request (preStop, terminate, kill at its deadline).
    Stop { slot: usize },
    /// Stop a sidecar because every app container has ended: a stop of its own, with the pod's
    /// full grace period.
    StopCompleted { slot: usize },
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

    // Ended runs: restart after the back-off, or end for good. A container that was handed a
    // stop never restarts; otherwise restartPolicy decides (`computePodActions`).
    for (slot, state) in slots.iter_mut().enumerate() {
        match *state {
            Slot::Exited(exit) => {
                let restarts = view.handed[slot].is_none()
                    && !stopping
                    && plan.policy(slot).restarts(exit.completed);
                if restarts {
                    let (delay, next) = view.back_off[slot].delay(exit.ran_for);
                    let until = crate::clock::after(now, delay);
                    wake_at = Some(wake_at.map_or(until, |at| at.min(until)));
                    actions.push(Action::WaitBackOff {
                        slot,
                        delay,
                        until,
                        next,
                    });
                    *state = Slot::BackingOff { until };
                } else {
                    actions.push(Action::Finish { slot });
                    *state = Slot::Done {
                        completed: exit.completed,
                    };
                }
            }
            // A stop during the back-off ends the container where it stands.
            Slot::BackingOff { .. } if stopping => {
                actions.push(Action::Finish { slot });
                // How it ended is the run before the back-off: the runner keeps it.
                *state = Slot::Done { completed: false };
            }
            Slot::BackingOff { until } if until <= now => {
                actions.push(Action::Start { slot });
                *state = Slot::Running { started: false };
            }
            Slot::BackingOff { until } => {
                wake_at = Some(wake_at.map_or(until, |at| at.min(until)));
            }
            _ => {}
        }
    }

    // The pod's stop reaches every container that is not a sidecar at once; a sidecar only
    // when its turn has come (below), and after that every later request too.
    if let Some(stop) = view.stop {
        for (slot, state) in slots.iter().enumerate() {
            let already = view.handed[slot] == Some(Handed::Pod(stop.generation));
            let reaches = plan.slots[slot] != SlotKind::Sidecar || view.handed[slot].is_some();
            if reaches && !already && matches!(state, Slot::Running { .. }) {
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
        let ready_for_next = match kind {
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
    // will never start), one sidecar at a time, in reverse order.
    let others_over = plan.slots.iter().zip(&slots).all(|(kind, state)| {
        *kind == SlotKind::Sidecar
            || !state.active() && (*state != Slot::Waiting || stopping || init_failed)
    });
    let app_phase_over = others_over && (initialized || stopping || init_failed);
    if app_phase_over {
        let last_running_sidecar = (0..plan.slots.len())
            .rev()
            .find(|&slot| plan.slots[slot] == SlotKind::Sidecar && slots[slot].active());
        if let Some(slot) = last_running_sidecar
            && view.handed[slot].is_none()
            && matches!(slots[slot], Slot::Running { .. })
        {
            actions.push(match view.stop {
                Some(_) => Action::Stop { slot },
                None => Action::StopCompleted { slot },
            });
        }
        if last_running_sidecar.is_none() {
            actions.push(Action::FinishPod);
        }
    }
    Decision { actions, wake_at }
}

#[cfg(test)]
mod tests {
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
            back_off: vec![BackOff::default(); kinds.len()],
            handed: vec![None; kinds.len()],
            stop: None,
            finished: false,
        }
    }

    fn exit(completed: bool) -> Slot {
        Slot::Exited(Exit {
            completed,
            ran_for: Duration::from_secs(1),
        })
    }

    const RUNNING: Slot = Slot::Running { started: true };
    const STARTING: Slot = Slot::Running { started: false };

    #[test]
    fn a_new_pod_starts_its_first_init_container_alone() {
        let now = Instant::now();
        let view = view(&[Init, Init, App], &[Slot::Waiting; 3]);
        assert_eq!(decide(&view, now).actions, [Start { slot: 0 }]);
    }

    #[test]
    fn app_containers_start_together_once_init_containers_completed() {
        let now = Instant::now();
        let done = Slot::Done { completed: true };
        let view = view(&[Init, App, App], &[done, Slot::Waiting, Slot::Waiting]);
        assert_eq!(
            decide(&view, now).actions,
            [Start { slot: 1 }, Start { slot: 2 }]
        );
    }

    #[test]
    fn the_next_container_waits_until_a_sidecar_has_started() {
        let now = Instant::now();
        let starting = view(&[Sidecar, App], &[STARTING, Slot::Waiting]);
        assert_eq!(decide(&starting, now).actions, []);
        let started = view(&[Sidecar, App], &[RUNNING, Slot::Waiting]);
        assert_eq!(decide(&started, now).actions, [Start { slot: 1 }]);
    }

    #[test]
    fn restart_policy_decides_whether_an_ended_container_restarts() {
        let now = Instant::now();
        for (policy, completed, restarts) in [
            (RestartPolicy::Always, true, true),
            (RestartPolicy::Always, false, true),
            (RestartPolicy::OnFailure, true, false),
            (RestartPolicy::OnFailure, false, true),
            (RestartPolicy::Never, false, false),
        ] {
            let mut view = view(&[App, App], &[exit(completed), RUNNING]);
            view.plan.restart_policy = policy;
            let actions = decide(&view, now).actions;
            let expected = if restarts {
                WaitBackOff {
                    slot: 0,
                    delay: BACK_OFF_INITIAL,
                    until: now + BACK_OFF_INITIAL,
                    next: super::BackOff {
                        next: BACK_OFF_INITIAL * 2,
                    },
                }
            } else {
                Finish { slot: 0 }
            };
            assert_eq!(actions, [expected], "{policy:?}, completed: {completed}");
        }
    }

    #[test]
    fn a_failed_init_container_under_never_fails_the_pod_and_starts_nothing() {
        let now = Instant::now();
        let mut view = view(&[Init, App], &[exit(false), Slot::Waiting]);
        view.plan.restart_policy = RestartPolicy::Never;
        assert_eq!(decide(&view, now).actions, [Finish { slot: 0 }, FinishPod]);
    }

    #[test]
    fn an_init_container_under_always_restarts_on_failure_only() {
        let now = Instant::now();
        let failed = view(&[Init, App], &[exit(false), Slot::Waiting]);
        assert!(matches!(
            decide(&failed, now).actions[..],
            [WaitBackOff { slot: 0, .. }]
        ));
        let completed = view(&[Init, App], &[exit(true), Slot::Waiting]);
        assert_eq!(
            decide(&completed, now).actions,
            [Finish { slot: 0 }, Start { slot: 1 }]
        );
    }

    #[test]
    fn a_back_off_ends_with_a_restart_at_its_time_and_wakes_the_runner_until_then() {
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        let view = view(&[App], &[Slot::BackingOff { until }]);
        let early = decide(&view, now);
        assert_eq!((early.actions, early.wake_at), (vec![], Some(until)));
        assert_eq!(decide(&view, until).actions, [Start { slot: 0 }]);
    }

    #[test]
    fn back_off_doubles_to_five_minutes_and_resets_after_ten_minutes_of_running() {
        let quick = Duration::from_secs(1);
        let mut back_off = super::BackOff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            let (delay, next) = back_off.delay(quick);
            delays.push(delay.as_secs());
            back_off = next;
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        let (delay, next) = back_off.delay(BACK_OFF_RESET);
        assert_eq!(delay, BACK_OFF_INITIAL);
        assert_eq!(next.delay(quick).0, Duration::from_secs(20));
    }

    #[test]
    fn a_delete_stops_every_running_container_but_sidecars_and_starts_nothing() {
        let now = Instant::now();
        let mut view = view(&[Sidecar, Init, App], &[RUNNING, STARTING, Slot::Waiting]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(decide(&view, now).actions, [Stop { slot: 1 }]);
    }

    #[test]
    fn a_delete_during_a_back_off_ends_the_container_where_it_stands() {
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        let mut view = view(&[App], &[Slot::BackingOff { until }]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(decide(&view, now).actions, [Finish { slot: 0 }, FinishPod]);
    }

    #[test]
    fn a_stopped_container_never_restarts() {
        let now = Instant::now();
        let mut view = view(&[App], &[exit(false)]);
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
    fn sidecars_stop_one_at_a_time_in_reverse_order_after_the_app_containers() {
        let now = Instant::now();
        let done = Slot::Done { completed: true };
        let apps_running = view(&[Sidecar, Sidecar, App], &[RUNNING, RUNNING, RUNNING]);
        assert_eq!(decide(&apps_running, now).actions, []);
        let apps_done = view(&[Sidecar, Sidecar, App], &[RUNNING, RUNNING, done]);
        assert_eq!(decide(&apps_done, now).actions, [StopCompleted { slot: 1 }]);
        let mut second = view(&[Sidecar, Sidecar, App], &[RUNNING, done, done]);
        second.handed[1] = Some(Handed::PodCompleted);
        assert_eq!(decide(&second, now).actions, [StopCompleted { slot: 0 }]);
        let all_done = view(&[Sidecar, Sidecar, App], &[done, done, done]);
        assert_eq!(decide(&all_done, now).actions, [FinishPod]);
    }

    #[test]
    fn on_delete_sidecars_get_the_pods_request_in_their_turn() {
        let now = Instant::now();
        let done = Slot::Done { completed: true };
        let mut view = view(&[Sidecar, App], &[RUNNING, done]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(decide(&view, now).actions, [Stop { slot: 0 }]);
    }

    #[test]
    fn a_delete_before_the_app_containers_started_still_stops_the_sidecars() {
        let now = Instant::now();
        let mut view = view(&[Sidecar, App], &[STARTING, Slot::Waiting]);
        view.stop = Some(PodStop { generation: 1 });
        assert_eq!(decide(&view, now).actions, [Stop { slot: 0 }]);
    }

    #[test]
    fn a_finished_pod_decides_nothing() {
        let now = Instant::now();
        let mut view = view(&[App], &[Slot::Done { completed: true }]);
        view.finished = true;
        assert_eq!(decide(&view, now).actions, []);
    }
}
