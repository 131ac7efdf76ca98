//! The container's state machine: where a run is in its stop ([`StopPhase`]), and every
//! transition of it — the stop's beginning (preStop), terminate when preStop is over and it is
//! the container's turn, a later shorter delete, and the kill at the one deadline.

use std::time::{Duration, Instant};

use super::{HookRun, Supervisor};
use crate::bindings::TerminationReason;
use crate::clock::{CancelOnDrop, after};
use crate::events::{EventType, LogSource};
use crate::lifecycle::shared::StopRequest;
use crate::runtime::KillSwitch;

/// Where a container run is in its stop: the container's state machine, read top to bottom.
/// The one deadline of a stop is the grace clock of the container's context
/// ([`ContainerContext::deadline`](crate::runtime::ContainerContext::deadline)), which guests
/// read too.
///
/// ```text
///  Up ──stop──▶ PreStop ──preStop over──▶ AwaitingTurn ──turn──▶ Terminating ──deadline──▶ killed
///   │              │                          │  (deadline: terminate anyway,        ▲
///   │              └─deadline: preStop killed─┘   at least the minimum after it)     │
///   └──stop, no preStop──────────────────────────────────────────────────────────────┘
/// ```
/// Whether postStart is done (the container is `Running`) is apart from this: a stop may come
/// while postStart still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopPhase {
    /// No stop requested.
    Up,
    /// preStop is running; it is killed at the deadline.
    PreStop,
    /// preStop is over; terminate waits for the container's turn — a sidecar's comes once the
    /// app containers and the sidecars after it have ended (`waitForTurn` in
    /// `pkg/kubelet/kuberuntime/kuberuntime_termination_order.go`), or at the deadline.
    AwaitingTurn,
    /// Terminate was delivered; whatever is left is killed at the deadline.
    Terminating,
}

impl Supervisor {
    /// Begins the stop sequence (`killContainer` in
    /// `pkg/kubelet/kuberuntime/kuberuntime_container.go`): the `Killing` event, the grace clock,
    /// preStop; returns the preStop hook if one started. `in_turn`: the pod's stop, whose
    /// terminate waits for the container's turn; a stop of the container's own (its postStart
    /// or a probe failed) waits for nothing, as the kubelet passes no ordering then.
    pub(super) fn begin_stop(
        &mut self,
        grace_period: Duration,
        deadline: Instant,
        reason: TerminationReason,
        message: String,
        in_turn: bool,
    ) -> Option<HookRun> {
        let name = &self.spec.name;
        self.pod.event(
            EventType::Normal,
            "Killing",
            Some(name),
            format!(
                "Stopping container {name}: {message} (grace period {})",
                humantime::format_duration(grace_period)
            ),
        );
        // From the stop's beginning, the container takes no new call (those in flight drain).
        self.calls.begin_drain(&message);
        self.stop_reason = Some((reason, message));
        if !in_turn {
            // Its own stop: no turn to wait for.
            self.turn = crate::signal::Watched::new(true).subscribe();
        }
        // The kubelet stops probing a container it is stopping.
        self.probes = None;
        let now = self.pod.host.clock.now();
        // A stop whose grace was used up before it reached this container still gets the
        // kubelet's minimum, not a kill without terminate.
        let deadline = if !grace_period.is_zero() && deadline <= now {
            after(now, self.pod.host.config.min_grace_after_pre_stop)
        } else {
            deadline
        };
        let began = deadline.checked_sub(grace_period).unwrap_or(deadline);
        self.context.start_grace(began, deadline);
        if grace_period.is_zero() {
            // Grace 0: straight to the kill — no preStop, and no terminate (Kubernetes sends no
            // SIGTERM either), so the guest cannot race the kill to a clean exit.
            self.stop = StopPhase::Terminating;
            self.instances.kill_all();
            return None;
        }
        match self.start_hook(LogSource::PreStop) {
            Some(hook) => {
                self.stop = StopPhase::PreStop;
                self.schedule_kill_of(deadline, hook.switch.clone());
                Some(hook)
            }
            None => {
                self.after_pre_stop(false);
                None
            }
        }
    }

    /// preStop is over (returned, failed, or killed at the deadline), or there was none
    /// (`ran` is false when the component turned out to have none): terminate, if it is the
    /// container's turn; otherwise wait for it.
    pub(super) fn after_pre_stop(&mut self, ran: bool) {
        self.deadline_timer = None;
        if ran {
            // The kubelet gives at least `minimumGracePeriodInSeconds` after a preStop.
            self.extend_deadline_to_minimum();
        }
        if self.turn.borrow_and_update() {
            self.terminate_now();
        } else {
            self.stop = StopPhase::AwaitingTurn;
        }
    }

    /// The container's turn came (`turn`), or its deadline did first: terminate, with at least
    /// the minimum grace after it (`killContainer`: the wait for the turn is taken from the
    /// grace, and the minimum still follows).
    pub(super) fn terminate_in_turn(&mut self, turn: bool) {
        if !turn {
            tracing::debug!(
                "container {}: its turn did not come before the deadline",
                self.spec.name
            );
        }
        self.extend_deadline_to_minimum();
        self.terminate_now();
    }

    /// Moves the deadline to at least the configured minimum from now.
    fn extend_deadline_to_minimum(&mut self) {
        let now = self.pod.host.clock.now();
        let minimum = after(now, self.pod.host.config.min_grace_after_pre_stop);
        if let Some(deadline) = self.context.deadline()
            && deadline < minimum
        {
            self.context.move_deadline(minimum);
        }
    }

    /// Delivers terminate and kills whatever is left at the deadline.
    fn terminate_now(&mut self) {
        self.stop = StopPhase::Terminating;
        self.deliver_terminate();
        let deadline = self
            .context
            .deadline()
            .unwrap_or_else(|| self.pod.host.clock.now());
        self.schedule_kill_all(deadline);
    }

    /// A later delete: a kill ends everything now; a shorter grace period moves the deadline
    /// earlier, never later.
    pub(super) fn shorten(&mut self, request: &StopRequest, pre_stop: &Option<HookRun>) {
        let now = self.pod.host.clock.now();
        let requested = request.deadline;
        if request.is_kill() {
            self.context.move_deadline(now);
            self.stop = StopPhase::Terminating;
            self.deadline_timer = None;
            self.instances.kill_all();
            return;
        }
        let Some(deadline) = self.context.deadline() else {
            return;
        };
        if requested >= deadline {
            return;
        }
        self.context.move_deadline(requested);
        match self.stop {
            StopPhase::Up => {}
            StopPhase::PreStop if requested <= now => {
                self.stop = StopPhase::Terminating;
                self.instances.kill_all();
            }
            StopPhase::PreStop => {
                if let Some(hook) = pre_stop {
                    self.schedule_kill_of(requested, hook.switch.clone());
                }
            }
            // The deadline branch of the run loop reads the moved deadline.
            StopPhase::AwaitingTurn => {}
            StopPhase::Terminating => self.schedule_kill_all(requested),
        }
    }

    fn deliver_terminate(&mut self) {
        let (reason, message) = self
            .stop_reason
            .clone()
            .unwrap_or((TerminationReason::PodDeleted, String::new()));
        self.context.deliver_terminate(reason, message);
        // Not ready first, so that the gate answers 503 before the listeners close.
        self.pod
            .update_container(self.index, |status| status.ready = false);
        if let Some(server) = &self.server {
            server.begin_drain();
        }
    }

    fn schedule_kill_of(&mut self, at: Instant, switch: KillSwitch) {
        let clock = self.pod.host.clock.clone();
        let id = clock.call_at(
            at,
            Box::new(move || {
                switch.kill();
            }),
        );
        self.deadline_timer = Some(CancelOnDrop::new(clock, id));
    }

    fn schedule_kill_all(&mut self, at: Instant) {
        let clock = self.pod.host.clock.clone();
        let instances = self.instances.clone();
        let id = clock.call_at(at, Box::new(move || instances.kill_all()));
        self.deadline_timer = Some(CancelOnDrop::new(clock, id));
    }
}
