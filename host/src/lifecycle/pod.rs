//! A running pod: the handle an embedder or the CLI holds to watch it, delete it and await its
//! end ([`Pod`]), and the runner that carries out what [`decide`] says ([`PodRunner`]): it
//! starts container runs (`container`), keeps their back-off, hands on stop requests, and
//! reports their ends. What the pod's parts share is [`PodShared`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};
use tokio::sync::watch;

use crate::bindings::TerminationReason;
use crate::clock::CancelOnDrop;
use crate::events::{Event, EventType, Watch};
use crate::lifecycle::container;
use crate::lifecycle::decide::{
    Action, BackOff, Exit, Handed, PodPlan, PodStop, PodView, Slot, SlotKind, decide,
};
use crate::lifecycle::node::Node;
use crate::lifecycle::shared::{
    Observation, PodShared, PodVolume, Runner, StatusTap, StopRequest, completed, phase_is_final,
    waiting_status,
};
use crate::manifest::PodSpec;
use crate::runtime::{Compilation, LoadedContainer};
use crate::signal::Watched;

/// The compiled components of a pod, loaded before anything starts.
pub(crate) struct LoadedPod {
    pub containers: Vec<LoadedContainer>,
    /// The embedder's host interfaces they were linked with.
    pub imports: crate::runtime::Imports,
}

/// A pod started by [`crate::Host::start_pod`]. Cheap to clone; every clone is the same pod.
#[derive(Clone)]
pub struct Pod {
    pub(crate) shared: Arc<PodShared>,
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pod")
            .field("name", &self.shared.spec.name)
            .field("uid", &self.shared.uid)
            .field("phase", &self.shared.status.borrow().phase)
            .finish_non_exhaustive()
    }
}

impl Pod {
    pub(crate) fn start(
        host: Arc<Node>,
        spec: PodSpec,
        uid: String,
        address: std::net::IpAddr,
        loaded: LoadedPod,
        volumes: Vec<PodVolume>,
    ) -> Pod {
        let shared = PodShared::new(host, spec, uid, address, volumes, loaded.imports);
        shared.event(
            EventType::Normal,
            "Scheduled",
            None,
            format!(
                "Successfully assigned {}/{} to {}",
                shared.spec.namespace, shared.spec.name, shared.host.node_name
            ),
        );
        if !shared.spec.ignored.is_empty() {
            shared.event(
                EventType::Normal,
                "IgnoredFields",
                None,
                format!("A single host ignores {}", shared.spec.ignored.join(", ")),
            );
        }
        for (slot, loaded) in loaded.containers.iter().enumerate() {
            let spec = shared.container(slot);
            shared.event(
                EventType::Normal,
                "Pulled",
                Some(&spec.name),
                format!(
                    "Component \"{}\" loaded in {}{}",
                    spec.image.display(),
                    humantime::format_duration(round_ms(loaded.load_time)),
                    match loaded.compilation {
                        Compilation::Optimized => "",
                        Compilation::Baseline => {
                            " by the baseline compiler; the optimised build is being compiled \
                             into the cache"
                        }
                    }
                ),
            );
        }
        let runner = PodRunner::new(&shared.spec, loaded.containers);
        shared.install_runner(Box::new(runner));
        Pod { shared }
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.shared.spec.name
    }

    /// What the pod was started from.
    pub fn spec(&self) -> &PodSpec {
        &self.shared.spec
    }

    /// Every update (events and container output) from the pod's start, then live ones, until
    /// the pod has ended.
    pub fn watch(&self) -> Watch {
        self.shared.hub.watch()
    }

    /// Like [`Pod::watch`], but a watcher that falls behind skips nothing: the updates it has
    /// not read yet are kept for it, however many (a command printing a pod's output, which
    /// must not lose lines, reads this way).
    pub fn follow(&self) -> Watch {
        self.shared.hub.follow()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.hub.events()
    }

    /// The pod's status now.
    pub fn status(&self) -> PodStatus {
        self.shared.status.borrow().clone()
    }

    /// The CPU time container `name` has used over all its runs, if it has a CPU limit or
    /// request (its own or its pod's); `None` for a container that is not measured, or that
    /// the pod does not have.
    pub fn cpu_time(&self, name: &str) -> Option<Duration> {
        let shared = &self.shared;
        let slot = (shared.spec.init_containers.iter())
            .chain(&shared.spec.containers)
            .position(|container| container.name == name)?;
        let container = shared.container(slot);
        let measured = container.cpu_limit().is_some()
            || container.cpu_request().is_some()
            || shared.spec.resources.cpu_limit.is_some()
            || shared.spec.resources.cpu_request.is_some();
        measured.then(|| {
            Duration::from_nanos(shared.cpu_used[slot].load(std::sync::atomic::Ordering::Relaxed))
        })
    }

    /// Calls into container `container` while it runs: `call` gets the store and the
    /// instance of a **fresh instance** of the container's component — its env, args,
    /// volumes, `/tmp`, memory and CPU limits, as its other instances have — and makes its
    /// calls through the embedder's typed bindings:
    ///
    /// ```ignore
    /// let reply = pod
    ///     .call("plugin", CallOptions::default(), |store, instance| {
    ///         Box::pin(async move {
    ///             let plugin = Plugin::new(&mut *store, instance)?; // bindgen!'s world
    ///             plugin.example_plugins_handler().call_on_message(&mut *store, "hi").await
    ///         })
    ///     })
    ///     .await?;
    /// ```
    ///
    /// A call is refused while the container is not `Running` (its postStart hook has not
    /// returned, it waits to restart, it has ended) and from the moment its stop begins; a
    /// call in flight when the stop begins may finish within the grace period, and one still
    /// running at the deadline is killed with the container: [`CallError::Killed`]. A kill
    /// lands wherever the guest is (a loop, a host call) without waiting for it.
    /// [`CallOptions::timeout`] kills just this call's instance. Dropping the returned future
    /// kills the instance too.
    ///
    /// [`CallError::Killed`]: crate::CallError::Killed
    /// [`CallOptions::timeout`]: crate::CallOptions::timeout
    pub async fn call<R, F>(
        &self,
        container: &str,
        options: crate::CallOptions,
        call: F,
    ) -> Result<R, crate::CallError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut wasmtime::Store<crate::GuestState>,
                &'a wasmtime::component::Instance,
            ) -> crate::calls::CallFuture<'a, R>
            + Send
            + 'static,
    {
        let gate = self.call_gate(container)?;
        let (guest_call, result) = crate::calls::guest_call(call);
        gate.call(guest_call, options).await?;
        result.await.map_err(|_| crate::CallError::Failed {
            container: container.to_string(),
            message: "the call ended without a result".into(),
        })
    }

    /// Calls the exported function `export` of container `container` (as [`Pod::call`] does,
    /// on a fresh instance) with `args` written in WAVE, the WebAssembly Value Encoding
    /// (`"text"`, `42`, `[1, 2]`, `{a: 1}`, `some(1)`, `ok("x")`), and returns its results in
    /// WAVE. `export` is `interface#function` — `example:plugins/handler#on-message`; the
    /// interface's version or package may be left out (`handler#on-message`) — or a function
    /// the component exports at its top level. For callers without bindings: scripts, tests,
    /// `call:` steps of scenarios.
    pub async fn call_wave(
        &self,
        container: &str,
        export: &str,
        args: &[&str],
        options: crate::CallOptions,
    ) -> Result<Vec<String>, crate::CallError> {
        let export = export.to_string();
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        self.call(container, options, move |store, instance| {
            Box::pin(async move { crate::calls::call_wave(store, instance, &export, &args).await })
        })
        .await
    }

    /// The call gate of `container`'s run, or why there is none.
    fn call_gate(&self, container: &str) -> Result<Arc<crate::calls::Calls>, crate::CallError> {
        let shared = &self.shared;
        let slots: Vec<_> = (shared.spec.init_containers.iter())
            .chain(&shared.spec.containers)
            .collect();
        let Some(slot) = slots.iter().position(|spec| spec.name == container) else {
            return Err(crate::CallError::NoSuchContainer {
                pod: shared.spec.name.clone(),
                container: container.to_string(),
                known: slots
                    .iter()
                    .map(|spec| format!("`{}`", spec.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let state = {
            let status = shared.status.borrow();
            (status.init_container_statuses.iter().flatten())
                .chain(status.container_statuses.iter().flatten())
                .find(|status| status.name == container)
                .and_then(|status| status.state.clone())
        };
        let ended = state
            .as_ref()
            .is_some_and(|state| state.terminated.is_some());
        // A pod being deleted takes no new calls from the moment of the delete, as a deleted
        // pod leaves its Service's endpoints at once, whichever container stops first.
        if let Some(stop) = shared.stop_request.get()
            && !ended
        {
            return Err(crate::CallError::Stopping {
                container: container.to_string(),
                reason: stop.message,
            });
        }
        if let Some(gate) = shared.calls[slot].lock().unwrap().clone() {
            return Ok(gate);
        }
        let state = state.map_or_else(|| "not started".to_string(), |state| describe_state(&state));
        Err(crate::CallError::NotRunning {
            container: container.to_string(),
            state,
        })
    }

    /// Status changes as they happen.
    pub fn status_updates(&self) -> watch::Receiver<PodStatus> {
        self.shared.status.subscribe()
    }

    /// Deletes the pod gracefully: each container gets its preStop hook, then terminate, then
    /// the kill when `grace_period` (default: the pod's `terminationGracePeriodSeconds`, else
    /// the host's default) runs out. Deleting again with a shorter grace period shortens a
    /// stop in progress; it never lengthens one. Returns at once; see [`Pod::wait`].
    pub fn delete(&self, grace_period: Option<Duration>) {
        self.stop(grace_period, TerminationReason::PodDeleted, "pod deleted");
    }

    /// Kills every container now: a delete with a grace period of zero — no preStop, no
    /// terminate, whatever stop is already in progress.
    pub fn kill(&self) {
        self.delete(Some(Duration::ZERO));
    }

    /// Stops the pod like [`Pod::delete`], telling the guests `reason` and `message` with
    /// terminate (for example [`TerminationReason::HostShutdown`] when the embedding process is
    /// going away).
    pub fn stop(
        &self,
        grace_period: Option<Duration>,
        reason: TerminationReason,
        message: impl Into<String>,
    ) {
        let grace_period = grace_period.unwrap_or_else(|| self.shared.grace_period());
        let now = self.shared.host.clock.now();
        let deadline = crate::clock::after(now, grace_period);
        let request = StopRequest {
            grace_period,
            began: now,
            deadline,
            reason,
            message: message.into(),
        };
        // The pod runner hands it on to the containers, as `decide` says.
        if supersede(&self.shared.stop_request, &request) {
            self.shared.observe(None);
        }
    }

    /// Calls `tap` with every update of the pod (its history first), as it is published.
    pub(crate) fn tap_updates(&self, tap: crate::events::Tap) {
        self.shared.hub.tap(tap);
    }

    /// Calls `tap` with the status now, then with every change of it, with when it happened.
    pub(crate) fn tap_status(&self, tap: StatusTap) {
        let mut taps = self.shared.status_taps.lock().unwrap();
        tap(self.shared.host.clock.now(), &self.shared.status.borrow());
        taps.push(tap);
    }

    /// Waits until the pod has finished — nothing of it runs or will run again (its phase is
    /// `Succeeded` or `Failed`) — and returns the final status.
    pub async fn wait(&self) -> PodStatus {
        self.wait_until(phase_is_final).await
    }

    /// Waits until the pod's status satisfies `condition`, and returns that status.
    pub async fn wait_until(&self, condition: impl Fn(&PodStatus) -> bool) -> PodStatus {
        let mut updates = self.shared.status.subscribe();
        let status = updates
            .wait_for(|status| condition(status))
            .await
            .map(|status| status.clone());
        status.unwrap_or_else(|_| self.status())
    }

    /// Waits until every app container is `Running` (postStart done) or has already ended, or
    /// the pod has finished without getting there (an init container failed).
    pub async fn wait_running(&self) -> PodStatus {
        self.wait_until(|status| {
            // A container that already ended will not be Running: it does not hold this up.
            phase_is_final(status)
                || status.container_statuses.iter().flatten().all(|c| {
                    c.state
                        .as_ref()
                        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                })
        })
        .await
    }
}

/// Lets `request` replace what `cell` holds if it supersedes it; says whether it did. A kill
/// always goes through (a running stop's deadline may have been extended past the first
/// request's, after a preStop). Otherwise, as the apiserver does with a second delete, only a
/// shorter grace period counts, and it counts from when the stop began: a delete with 30 s,
/// then one with 20 s a little later, ends at 20 s.
fn supersede(cell: &Watched<Option<StopRequest>>, request: &StopRequest) -> bool {
    cell.send_if_modified(|current| {
        let replacement = match current {
            None => Some(request.clone()),
            Some(existing) if request.is_kill() && !existing.is_kill() => Some(request.clone()),
            Some(existing)
                if !existing.is_kill() && request.grace_period < existing.grace_period =>
            {
                let deadline = crate::clock::after(existing.began, request.grace_period);
                (deadline < existing.deadline).then(|| StopRequest {
                    grace_period: request.grace_period,
                    deadline,
                    ..existing.clone()
                })
            }
            Some(_) => None,
        };
        let supersedes = replacement.is_some();
        if let Some(replacement) = replacement {
            *current = Some(replacement);
        }
        supersedes
    })
}

/// The executor of the pod's decisions: it records what is observed in the [`PodView`], asks
/// [`decide`] what to do and does it — starts runs, keeps the back-off, hands on stop requests
/// and reports statuses. It runs inline wherever something is observed (a delete, a run that
/// started or ended, a back-off that is over), so that a decision costs no task switch.
pub(crate) struct PodRunner {
    view: PodView,
    loaded: Vec<LoadedContainer>,
    /// How each slot's last run ended.
    last_end: Vec<Option<ContainerStateTerminated>>,
    /// Each slot's last state before its back-off, which a stop during the back-off puts back.
    earlier_state: Vec<Option<ContainerState>>,
    /// The pod's stop request as last handed on.
    last_stop: Option<StopRequest>,
    /// The stop of the sidecars once every app container has ended on its own.
    completed_request: Option<StopRequest>,
    /// The timer that wakes the runner when a back-off is over.
    wake: Option<(Instant, CancelOnDrop)>,
}

impl PodRunner {
    fn new(spec: &PodSpec, loaded: Vec<LoadedContainer>) -> PodRunner {
        let init = spec.init_containers.iter().map(|container| {
            if container.sidecar {
                SlotKind::Sidecar
            } else {
                SlotKind::Init
            }
        });
        let apps = spec.containers.iter().map(|_| SlotKind::App);
        let plan = PodPlan {
            slots: init.chain(apps).collect(),
            restart_policy: spec.restart_policy,
        };
        let slots = plan.slots.len();
        PodRunner {
            view: PodView {
                plan,
                slots: vec![Slot::Waiting; slots],
                back_off: vec![BackOff::default(); slots],
                handed: vec![None; slots],
                released: vec![false; slots],
                stop: None,
                finished: false,
            },
            loaded,
            last_end: vec![None; slots],
            earlier_state: vec![None; slots],
            last_stop: None,
            completed_request: None,
            wake: None,
        }
    }
}

impl Runner for PodRunner {
    /// Records what was observed, decides, and acts.
    fn step(&mut self, shared: &Arc<PodShared>, observations: Vec<Observation>) {
        let now = shared.host.clock.now();
        for observation in observations {
            match observation {
                Observation::Started { slot } => {
                    if let Slot::Running { started } = &mut self.view.slots[slot] {
                        *started = true;
                    }
                }
                Observation::Ended {
                    slot,
                    end,
                    killed_by_probe,
                } => {
                    self.view.slots[slot] = Slot::Exited(Exit {
                        completed: completed(&end),
                        killed_by_probe,
                        at: now,
                    });
                    self.last_end[slot] = Some(end);
                }
            }
        }
        // The pod's cell changes only when a request supersedes the one before: each change is
        // a new generation to hand on.
        let request = shared.stop_request.get();
        if request.is_some() && request != self.last_stop {
            let generation = self.view.stop.map_or(1, |stop| stop.generation + 1);
            self.view.stop = Some(PodStop { generation });
            self.last_stop = request;
        }
        if self.view.finished {
            return;
        }
        let decision = decide(&self.view, now);
        for action in decision.actions {
            self.execute(shared, action);
        }
        if self.view.finished {
            self.wake = None;
            shared.finish();
            return;
        }
        match decision.wake_at {
            Some(at) if self.wake.as_ref().is_none_or(|(set, _)| *set != at) => {
                let clock = shared.host.clock.clone();
                let waker = Arc::downgrade(shared);
                let id = clock.call_at(
                    at,
                    Box::new(move || {
                        if let Some(shared) = waker.upgrade() {
                            shared.observe(None);
                        }
                    }),
                );
                self.wake = Some((at, CancelOnDrop::new(clock, id)));
            }
            Some(_) => {}
            None => self.wake = None,
        }
    }
}

impl PodRunner {
    fn execute(&mut self, shared: &Arc<PodShared>, action: Action) {
        match action {
            Action::Start { slot } | Action::Restart { slot, .. } => {
                let container = shared.container(slot);
                let restart = matches!(action, Action::Restart { .. });
                if let Action::Restart { back_off, .. } = action {
                    self.view.back_off[slot] = back_off;
                }
                if restart
                    || slot >= shared.spec.init_containers.len()
                        && !shared.spec.init_containers.is_empty()
                {
                    // Kubernetes' reason while a container is being made (app containers
                    // waited with `PodInitializing` until now).
                    shared.update_container(slot, |status| {
                        if restart {
                            status.restart_count += 1;
                        }
                        status.state = waiting_status(container, "ContainerCreating").state;
                    });
                }
                self.view.slots[slot] = Slot::Running { started: false };
                let run = container::run(shared.clone(), slot, self.loaded[slot].clone());
                let reporter = RunEndReporter {
                    shared: shared.clone(),
                    slot,
                    reported: false,
                };
                shared.runtime.spawn(async move {
                    let (end, killed_by_probe) = run.await;
                    reporter.report(end, killed_by_probe);
                });
            }
            Action::WaitBackOff { slot, delay, until } => {
                let terminated = self.last_end[slot].clone().unwrap_or_default();
                let exit = match self.view.slots[slot] {
                    Slot::Exited(exit) => exit.at,
                    _ => shared.host.clock.now(),
                };
                self.view.slots[slot] = Slot::BackingOff { until, exit };
                self.earlier_state[slot] = shared.back_off_status(slot, terminated, delay);
            }
            Action::Stop { slot } => {
                if let Some(request) = &self.last_stop {
                    supersede(&shared.stops[slot], request);
                }
                let generation = self.view.stop.map_or(0, |stop| stop.generation);
                self.view.handed[slot] = Some(Handed::Pod(generation));
            }
            Action::StopCompleted { slot } => {
                // One request, so one grace budget, for every sidecar stopped together.
                let own = self
                    .completed_request
                    .get_or_insert_with(|| {
                        shared.stop_request_now(
                            None,
                            TerminationReason::PodCompleted,
                            "every app container of the pod has ended",
                        )
                    })
                    .clone();
                supersede(&shared.stops[slot], &own);
                self.view.handed[slot] = Some(Handed::PodCompleted);
            }
            Action::ReleaseTerminate { slot } => {
                shared.turns[slot].send_replace(true);
                self.view.released[slot] = true;
            }
            Action::Finish { slot } => {
                let completed = match self.view.slots[slot] {
                    Slot::BackingOff { .. } => {
                        // Ended where it stood: its last run, as before the back-off.
                        let earlier = self.earlier_state[slot].take();
                        shared.update_container(slot, |status| {
                            status.state = status.last_state.take();
                            status.last_state = earlier;
                        });
                        self.last_end[slot].as_ref().is_some_and(completed)
                    }
                    _ => {
                        let terminated = self.last_end[slot].clone().unwrap_or_default();
                        let completed = completed(&terminated);
                        shared.update_container(slot, |status| {
                            status.state = Some(ContainerState {
                                terminated: Some(terminated),
                                ..Default::default()
                            });
                            status.started = Some(false);
                            status.ready = false;
                        });
                        completed
                    }
                };
                self.view.slots[slot] = Slot::Done { completed };
            }
            Action::FinishPod => self.view.finished = true,
        }
    }
}

/// Reports how a container run ended — also when its task failed (it killed the container's
/// instances as it unwound) or was dropped, so that the pod still ends.
struct RunEndReporter {
    shared: Arc<PodShared>,
    slot: usize,
    reported: bool,
}

impl RunEndReporter {
    fn report(mut self, end: ContainerStateTerminated, killed_by_probe: bool) {
        self.reported = true;
        let slot = self.slot;
        self.shared.observe(Some(Observation::Ended {
            slot,
            end,
            killed_by_probe,
        }));
    }
}

impl Drop for RunEndReporter {
    fn drop(&mut self) {
        if self.reported {
            return;
        }
        let failure = if std::thread::panicking() {
            tracing::error!("container slot {}: its supervisor panicked", self.slot);
            "the container's supervisor panicked"
        } else {
            // Its runtime is shutting down (the embedder dropped it, or a simulation ended).
            "the container's supervisor was dropped before the container ended"
        };
        let end = ContainerStateTerminated {
            exit_code: 1,
            reason: Some("Error".into()),
            message: Some(format!("wasmlet failed: {failure}")),
            finished_at: Some(self.shared.now_time()),
            ..Default::default()
        };
        let slot = self.slot;
        self.shared.observe(Some(Observation::Ended {
            slot,
            end,
            killed_by_probe: false,
        }));
    }
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// `Waiting (CrashLoopBackOff)`, `Terminated (Completed)`, `Running`: a container's state as
/// `kubectl get pods` shows it.
fn describe_state(state: &ContainerState) -> String {
    if let Some(waiting) = &state.waiting {
        format!(
            "Waiting ({})",
            waiting.reason.as_deref().unwrap_or("unknown")
        )
    } else if let Some(terminated) = &state.terminated {
        format!(
            "Terminated ({})",
            terminated.reason.as_deref().unwrap_or("unknown")
        )
    } else {
        "Running, between runs".into()
    }
}
