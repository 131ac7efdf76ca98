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
