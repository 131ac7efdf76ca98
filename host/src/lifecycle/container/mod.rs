//! One container's lifecycle, as the kubelet drives it: start `run` and postStart side by side
//! (`Waiting` until postStart returns), then on a stop request run preStop inside the grace
//! budget, deliver terminate, and kill whatever is left when the grace period runs out. When it
//! ends on its own, `restartPolicy` decides whether it starts again, after Kubernetes' back-off
//! (`CrashLoopBackOff`: 10 s, doubling to 300 s, back to 10 s after 10 minutes of running).
//!
//! The grace clock starts before preStop (Kubernetes `killContainer`). If preStop outlasts it,
//! preStop is killed, terminate is still delivered, and `run` gets at least
//! [`HostConfig::min_grace_after_pre_stop`](crate::HostConfig) before the kill. A failing or
//! hanging preStop never prevents the stop; a failing postStart stops the container with
//! reason `PostStartHookError`. Deadlines are timers on the clock's thread that kill instances
//! directly, so they are exact even when the supervisor itself is not scheduled.
//!
//! The supervisor ([`Supervisor`]) is here; the state machine of its stop is [`stop`], its hooks
//! are [`hooks`], and what its instances are made from is [`launch`].

mod hooks;
mod launch;
mod stop;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStateTerminated};

use crate::bindings::TerminationReason;
use crate::calls::Calls;
use crate::clock::{CancelOnDrop, after, sleep_until};
use crate::events::{EventType, LogSource};
use crate::http::Server;
use crate::lifecycle::probe::{ProbeReport, Probes};
use crate::lifecycle::shared::{Observation, PodShared};
use crate::manifest::{ContainerSpec, RestartPolicy};
use crate::runtime::{
    ContainerContext, ContainerTmp, CpuControl, CpuQuota, Entry, InstanceDone, InstanceEnd,
    InstanceIo, KillSwitch, Launcher, LoadedComponent, LoadedContainer, MemoryBudget, shares,
    spawn_task,
};
use hooks::{HookFailure, HookRun, finish};
use launch::launcher;
use stop::StopPhase;

/// Exit code of a killed container: 128 + SIGKILL.
pub const EXIT_KILLED: i32 = 137;
/// Exit code of a container ended by a trap (a crash): 128 + SIGABRT, what a native program that
/// panics with `panic = "abort"` reports.
pub const EXIT_TRAPPED: i32 = 134;

/// Every instance of the container that is still alive, so that a kill reaches all of them:
/// main and hooks, and the HTTP handlers of its server.
#[derive(Clone, Default)]
struct Instances {
    switches: Arc<Mutex<Vec<KillSwitch>>>,
    server: Arc<Mutex<Option<Arc<Server>>>>,
    calls: Arc<Mutex<Option<Arc<Calls>>>>,
}

impl Instances {
    fn add(&self, switch: KillSwitch) {
        self.switches.lock().unwrap().push(switch);
    }

    fn kill_all(&self) {
        let switches: Vec<_> = self.switches.lock().unwrap().drain(..).collect();
        for switch in switches {
            switch.kill();
        }
        if let Some(server) = self.server.lock().unwrap().as_ref() {
            server.kill_handlers();
        }
        if let Some(calls) = self.calls.lock().unwrap().as_ref() {
            calls.kill_all();
        }
    }
}

struct Supervisor {
    pod: Arc<PodShared>,
    index: usize,
    spec: ContainerSpec,
    loaded: LoadedContainer,
    context: Arc<ContainerContext>,
    launcher: Arc<Launcher>,
    instances: Instances,
    /// The container's /tmp (made when an instance first needs it): removed when the run ends.
    tmp_dir: Arc<ContainerTmp>,
    /// The pending deadline action (kill preStop, or kill everything).
    deadline_timer: Option<CancelOnDrop>,
    stop: StopPhase,
    /// Whether terminate may be delivered: the pod's say, for a sidecar (see [`StopPhase`]).
    turn: crate::signal::Watcher<bool>,
    /// Why the container is being stopped when it was its own doing (postStart failed).
    failure: Option<String>,
    stop_reason: Option<(TerminationReason, String)>,
    started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// When it started, on the host's clock (probes count their initial delay from it).
    started_instant: Instant,
    /// Its HTTP server, if its component serves HTTP.
    server: Option<Arc<Server>>,
    /// Its call gate: the embedder's calls into its exports ([`crate::Pod::call`]).
    calls: Arc<Calls>,
    /// Its probes, from when it runs until it begins to stop.
    probes: Option<Probes>,
    /// Whether the probes were started (they run once per container run).
    probes_started: bool,
    /// postStart is done: the container is `Running`.
    running: bool,
    /// The startup probe has succeeded (or there is none).
    startup_passed: bool,
    /// What the readiness probe last decided (`None` before it decided anything).
    probe_ready: Option<bool>,
}

/// A run that could not start: its configuration cannot be set up (a volume mount; reason
/// `CreateContainerConfigError`), or it could not start serving (a port in use; `StartError`).
/// Reported like containerd's start errors, exit code 128.
fn start_error(
    pod: &PodShared,
    spec: &ContainerSpec,
    reason: &str,
    message: String,
) -> ContainerStateTerminated {
    pod.event(
        EventType::Warning,
        "Failed",
        Some(&spec.name),
        format!("Error: {message}"),
    );
    let now = pod.now_time();
    ContainerStateTerminated {
        exit_code: 128,
        reason: Some(reason.into()),
        message: Some(message),
        started_at: Some(now.clone()),
        finished_at: Some(now),
        ..Default::default()
    }
}

/// Runs the container once, from its start to its end (on its own, or stopped), and says how
/// it ended, and whether wasmlet stopped it because a liveness or startup probe failed.
/// Whether it runs again is the pod's decision (`lifecycle::decide`).
pub(crate) async fn run(
    pod: Arc<PodShared>,
    index: usize,
    loaded: LoadedContainer,
) -> (ContainerStateTerminated, bool) {
    let spec = pod.container(index);
    let context = ContainerContext::new(
        pod.host.clock.clone(),
        pod.host.runtime.clock_origin,
        MemoryBudget::new(spec.memory_limit(), pod.memory.clone()),
        cpu_control(&pod, index),
    );
    run_once(pod, index, loaded, context).await
}

/// The container's CPU control: its own limit and its pod's, as CFS quotas, and its request
/// as CFS shares. A container in a pod with a pod-level request and none of its own gets an
/// even part of the pod's.
fn cpu_control(pod: &PodShared, index: usize) -> CpuControl {
    let spec = pod.container(index);
    let quotas: Vec<_> = (spec.cpu_limit().map(CpuQuota::new).into_iter())
        .chain(pod.cpu_quota.clone())
        .collect();
    let request = spec.cpu_request().or_else(|| {
        let unrequested = (pod.spec.init_containers.iter())
            .chain(&pod.spec.containers)
            .filter(|container| container.cpu_request().is_none())
            .count() as u64;
        pod.spec
            .resources
            .cpu_request
            .map(|request| request / unrequested.max(1))
    });
    CpuControl::new(
        quotas,
        request.map(shares),
        &pod.host.runtime.fair_share,
        pod.cpu_used[index].clone(),
    )
}

/// Runs the container once: from its start to its end (on its own, or stopped), and says how
/// it ended.
async fn run_once(
    pod: Arc<PodShared>,
    index: usize,
    loaded: LoadedContainer,
    context: Arc<ContainerContext>,
) -> (ContainerStateTerminated, bool) {
    let spec = pod.container(index).clone();
    let mounts = match pod.mounts(&spec) {
        Ok(mounts) => mounts,
        Err(message) => {
            let end = start_error(&pod, &spec, "CreateContainerConfigError", message);
            return (end, false);
        }
    };
    let tmp_dir = pod.host.tmp_dirs.container(&pod.spec.name, &spec.name, {
        // Weak: the pod holds the run's instances, and so this.
        let (pod, container) = (Arc::downgrade(&pod), spec.name.clone());
        Box::new(move |error| {
            if let Some(pod) = pod.upgrade() {
                pod.event(
                    EventType::Warning,
                    "Failed",
                    Some(&container),
                    format!("could not create the container's /tmp: {error}; it runs without one"),
                );
            }
        })
    });
    let started_at = pod.now_time();
    let launcher = Arc::new(launcher(
        &pod,
        &spec,
        loaded.clone(),
        context.clone(),
        mounts,
        tmp_dir.clone(),
    ));
    let started_instant = pod.host.clock.now();
    let turn = pod.turns[index].subscribe();
    let calls = Calls::new(launcher.clone(), loaded.main.clone(), {
        // Weak: the pod holds the gate while the container runs.
        let pod = Arc::downgrade(&pod);
        Arc::new(move |kind, reason, container, message| {
            if let Some(pod) = pod.upgrade() {
                pod.event(kind, reason, container, message);
            }
        })
    });
    let mut supervisor = Supervisor {
        pod,
        index,
        spec,
        loaded,
        context,
        launcher,
        instances: Instances::default(),
        tmp_dir,
        deadline_timer: None,
        stop: StopPhase::Up,
        turn,
        failure: None,
        stop_reason: None,
        started_at,
        started_instant,
        server: None,
        calls,
        probes: None,
        probes_started: false,
        running: false,
        startup_passed: false,
        probe_ready: None,
    };
    let end = supervisor.run().await;
    let killed_by_probe = matches!(
        supervisor.stop_reason,
        Some((TerminationReason::ProbeFailed, _))
    );
    (end, killed_by_probe)
}

impl Drop for Supervisor {
    /// If the supervising task is dropped before the container ended (its runtime shut down),
    /// nothing of the container may keep running unsupervised, and its /tmp goes (whatever
    /// still holds the run's launcher).
    fn drop(&mut self) {
        self.instances.kill_all();
        self.pod.host.tmp_dirs.remove(&self.tmp_dir);
    }
}

impl Supervisor {
    async fn run(&mut self) -> ContainerStateTerminated {
        let name = self.spec.name.clone();
        self.pod.event(
            EventType::Normal,
            "Created",
            Some(&name),
            format!("Created container {name}"),
        );
        if let Err(message) = self.start_serving() {
            return start_error(&self.pod, &self.spec, "StartError", message);
        }
        let (switch, mut main) = if self.loaded.main.exports(Entry::Run) {
            let io = self.io(LogSource::Main, self.argv(), false);
            self.spawn(self.loaded.main.clone(), Entry::Run, io)
        } else {
            // A component that only serves HTTP or calls: its "process" is the server and the
            // call gate, which end when terminate has come and what is in flight is done.
            let context = self.context.clone();
            let server = self.server.clone();
            let calls = self.calls.clone();
            spawn_task(&self.pod.host.runtime, async move {
                context.terminated().await;
                if let Some(server) = server {
                    server.drained().await;
                }
                calls.drained().await;
                InstanceEnd::Returned(Ok(()))
            })
        };
        self.instances.add(switch);
        *self.instances.calls.lock().unwrap() = Some(self.calls.clone());
        *self.pod.calls[self.index].lock().unwrap() = Some(self.calls.clone());
        self.started_at = self.pod.now_time();
        self.started_instant = self.pod.host.clock.now();
        self.pod.event(
            EventType::Normal,
            "Started",
            Some(&name),
            format!("Started container {name}"),
        );

        let mut post_start = self.start_hook(LogSource::PostStart);
        if post_start.is_none() {
            self.mark_running();
        }
        let mut pre_stop: Option<HookRun> = None;
        let mut stop_requests = self.pod.stops[self.index].subscribe();
        // A delete may have come before this container started.
        stop_requests.mark_changed();

        let mut ready_reports = self.context.ready_reports();
        let mut requests_open = true;
        // `run` has ended during a stop while requests were still in flight: the container
        // ends when they are done (or killed at the deadline).
        let mut ended_draining: Option<InstanceEnd> = None;

        let main_end = loop {
            tokio::select! {
                // First: a container that has ended gets no preStop, even if a stop request
                // arrived in the same instant.
                biased;
                end = &mut main, if ended_draining.is_none() => {
                    let end = end.unwrap_or_else(|_| InstanceEnd::lost());
                    let terminating = self.stop == StopPhase::Terminating;
                    let serving = self.server.as_ref().is_some_and(|server| server.busy());
                    if terminating && (serving || self.calls.busy()) {
                        ended_draining = Some(end);
                    } else {
                        break end;
                    }
                }
                () = drained(&self.server, &self.calls), if ended_draining.is_some() => {
                    break ended_draining.take().expect("guarded by the condition");
                }
                report = Probes::next(&mut self.probes) => {
                    if let Some(hook) = self.probe_report(report) {
                        pre_stop = Some(hook);
                    }
                }
                changed = stop_requests.changed(), if requests_open => {
                    if changed.is_err() {
                        requests_open = false;
                        continue;
                    }
                    let request = stop_requests.borrow_and_update();
                    if let Some(request) = request {
                        match self.stop {
                            StopPhase::Up => {
                                // The pod's stop: terminate waits for this container's turn.
                                pre_stop = self.begin_stop(
                                    request.grace_period,
                                    request.deadline,
                                    request.reason,
                                    request.message,
                                    true,
                                );
                            }
                            _ => self.shorten(&request, &pre_stop),
                        }
                    }
                }
                end = finish(&mut post_start) => {
                    let hook = post_start.take().expect("finish resolves only for a hook");
                    let stopping = self.stop != StopPhase::Up;
                    if stopping && matches!(end, InstanceEnd::Killed { .. }) {
                        // Killed by the stop itself: not a failure of the hook.
                        continue;
                    }
                    match HookFailure::of(&end, &hook) {
                        None => self.mark_running(),
                        Some(failure) => {
                            self.pod.event(
                                EventType::Warning,
                                "FailedPostStartHook",
                                Some(&name),
                                failure.with_output(),
                            );
                            self.failure = Some(failure.with_output());
                            if !stopping {
                                let grace = self.pod.grace_period();
                                let now = self.pod.host.clock.now();
                                pre_stop = self.begin_stop(
                                    grace,
                                    after(now, grace),
                                    TerminationReason::PostStartHookFailed,
                                    format!("postStart hook failed: {}", failure.summary),
                                    false,
                                );
                            }
                        }
                    }
                }
                end = finish(&mut pre_stop) => {
                    let hook = pre_stop.take().expect("finish resolves only for a hook");
                    if let Some(failure) = HookFailure::of(&end, &hook) {
                        self.pod.event(
                            EventType::Warning,
                            "FailedPreStopHook",
                            Some(&name),
                            failure.with_output(),
                        );
                    }
                    // (A kill of everything may have ended the stop's preStop phase already.)
                    if self.stop == StopPhase::PreStop {
                        self.after_pre_stop(end != InstanceEnd::NotImplemented);
                    }
                }
                // Awaiting its turn: terminate when the pod says so, or at the deadline.
                _ = self.turn.wait_for(|turn| *turn), if self.stop == StopPhase::AwaitingTurn => {
                    self.terminate_in_turn(true);
                }
                () = sleep_until(&self.pod.host.clock, self.context.deadline().unwrap_or_else(|| self.pod.host.clock.now())),
                    if self.stop == StopPhase::AwaitingTurn => {
                    self.terminate_in_turn(false);
                }
                Ok(()) = ready_reports.changed() => {
                    ready_reports.borrow_and_update();
                    self.refresh_ready();
                }
            }
        };

        // The container has ended: nothing of it may outlive it (hooks and handlers included).
        self.deadline_timer = None;
        self.probes = None;
        self.instances.kill_all();
        for hook in [post_start, pre_stop].into_iter().flatten() {
            let _ = hook.end.await;
        }
        if let Some(server) = self.server.take() {
            server.handlers_ended().await;
            server.shut_down();
            self.pod.unregister_server(&server);
        }
        {
            let mut registered = self.pod.calls[self.index].lock().unwrap();
            if registered
                .as_ref()
                .is_some_and(|calls| Arc::ptr_eq(calls, &self.calls))
            {
                *registered = None;
            }
        }
        self.calls.drained().await;
        self.calls.shut_down();
        self.finish(main_end)
    }

    /// Starts the container's HTTP server if its component exports
    /// `wasi:http/incoming-handler`. `Err` says which port could not be bound.
    fn start_serving(&mut self) -> Result<(), String> {
        if !self.loaded.main.exports(Entry::Handle) {
            return Ok(());
        }
        let name = self.spec.name.clone();
        let ports = self.spec.listen_ports();
        if ports.is_empty() {
            // Not a warning: a seed manifest may run an HTTP app for its log alone.
            self.pod.event(
                EventType::Normal,
                "NotServed",
                Some(&name),
                "the component exports wasi:http/incoming-handler but the container has no \
                 port to serve it on; add `ports: [{containerPort: 8080}]`"
                    .into(),
            );
            return Ok(());
        }
        let server = Server::start(
            self.launcher.clone(),
            self.loaded.main.clone(),
            &ports,
            self.pod.serving(self.index),
        )?;
        self.pod.register_server(&ports, &server);
        *self.instances.server.lock().unwrap() = Some(server.clone());
        let at = if server.addresses.is_empty() {
            let ports: Vec<_> = ports.iter().map(u16::to_string).collect();
            format!("port {}", ports.join(", "))
        } else {
            let addresses: Vec<_> = server.addresses.iter().map(|a| a.to_string()).collect();
            addresses.join(", ")
        };
        self.pod.event(
            EventType::Normal,
            "Listening",
            Some(&name),
            format!("Serving HTTP on {at}"),
        );
        self.server = Some(server);
        Ok(())
    }

    /// What a probe found; returns the preStop hook if a failure began a stop.
    fn probe_report(&mut self, report: ProbeReport) -> Option<HookRun> {
        match report {
            ProbeReport::Started => {
                self.startup_passed = true;
                if self.running {
                    self.report_started();
                }
                self.refresh_ready();
                None
            }
            ProbeReport::Ready(ready) => {
                self.probe_ready = Some(ready);
                self.refresh_ready();
                None
            }
            ProbeReport::Failed { kind, grace } => {
                if self.stop != StopPhase::Up {
                    return None;
                }
                let grace = grace.unwrap_or_else(|| self.pod.grace_period());
                let now = self.pod.host.clock.now();
                // The kubelet kills the container (preStop runs) and restarts it unless the
                // policy is Never, whatever it exits with; only then does its message say so
                // (`computePodActions`: `if restart { message += ", will be restarted" }`).
                let restarts =
                    self.spec.sidecar || self.pod.spec.restart_policy != RestartPolicy::Never;
                let will = if restarts { ", will be restarted" } else { "" };
                self.begin_stop(
                    grace,
                    after(now, grace),
                    TerminationReason::ProbeFailed,
                    format!("failed {} probe{will}", kind.name()),
                    false,
                )
            }
        }
    }

    /// Whether the container is ready: running, past its startup probe, passing its readiness
    /// probe, not reported unready through `set-ready`, and not being stopped.
    fn ready(&self) -> bool {
        self.running
            && self.startup_passed
            && (self.spec.readiness_probe.is_none() || self.probe_ready == Some(true))
            && self.context.reported_ready().unwrap_or(true)
            && !self.context.terminating()
    }

    /// Publishes `ready` and `started` after one of their inputs changed.
    fn refresh_ready(&mut self) {
        if !self.running {
            return;
        }
        let ready = self.ready();
        let started = self.startup_passed;
        self.pod.update_container(self.index, |status| {
            if status.state.as_ref().is_some_and(|s| s.running.is_some()) {
                status.ready = ready;
                status.started = Some(started);
            }
        });
    }

    /// Starts an instance of `component` calling `entry`, as part of this container.
    fn spawn(
        &self,
        component: Arc<LoadedComponent>,
        entry: Entry,
        io: InstanceIo,
    ) -> (KillSwitch, InstanceDone) {
        self.launcher.spawn(component, entry, io)
    }

    /// postStart is done: the container is `Running`, its calls are admitted, and its probes
    /// begin.
    fn mark_running(&mut self) {
        let started_at = self.started_at.clone();
        self.running = true;
        if self.stop == StopPhase::Up {
            self.calls.open();
        }
        self.startup_passed = self.spec.startup_probe.is_none();
        let ready = self.ready();
        let started = self.startup_passed;
        self.pod.update_container(self.index, |status| {
            status.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at),
                }),
                ..Default::default()
            });
            status.started = Some(started);
            status.ready = ready;
        });
        if started {
            self.report_started();
        }
        if !self.probes_started && self.stop == StopPhase::Up {
            self.probes_started = true;
            self.probes =
                Probes::start(&self.pod, &self.spec, &self.launcher, self.started_instant);
        }
    }

    /// Tells the pod runner that the container has started: its postStart is done and its
    /// startup probe, if any, has passed — what the next container waits for after a sidecar
    /// (`computeInitContainerActions` in `pkg/kubelet/kuberuntime/kuberuntime_container.go`).
    fn report_started(&self) {
        self.pod
            .observe(Some(Observation::Started { slot: self.index }));
    }

    /// Says how the container ended (an event, and the terminated state to report).
    fn finish(&mut self, end: InstanceEnd) -> ContainerStateTerminated {
        // A kill is dated when the guest stopped executing, not when the supervisor noticed.
        let ended_at = match &end {
            InstanceEnd::Killed { at, .. } => *at,
            _ => self.pod.host.clock.now(),
        };
        let killed_by_wasmlet = matches!(
            end,
            InstanceEnd::Killed { .. }
                | InstanceEnd::Trapped {
                    out_of_memory: true,
                    ..
                }
        );
        let (exit_code, mut reason, mut message) = match end {
            InstanceEnd::Returned(Ok(())) | InstanceEnd::Exited(0) => {
                (0, "Completed".to_string(), None)
            }
            // `run` has no not-implemented answer; a component that gives one failed.
            InstanceEnd::Returned(Err(_)) | InstanceEnd::NotImplemented => {
                (1, "Error".into(), Some("run returned an error".to_string()))
            }
            InstanceEnd::Exited(code) => (code, "Error".into(), None),
            InstanceEnd::Trapped {
                message,
                out_of_memory: true,
            } => (
                EXIT_KILLED,
                "OOMKilled".into(),
                Some(format!(
                    "memory limit of {} bytes reached: {message}",
                    self.spec.memory_limit().unwrap_or_default()
                )),
            ),
            InstanceEnd::Trapped { message, .. } => (
                EXIT_TRAPPED,
                "Error".into(),
                Some(format!("wasm trap: {message}")),
            ),
            InstanceEnd::Killed { location, .. } => {
                let grace = match self.context.grace_period() {
                    Some(grace) => format!(
                        " after a grace period of {}",
                        humantime::format_duration(grace)
                    ),
                    None => String::new(),
                };
                (
                    EXIT_KILLED,
                    "Killed".into(),
                    Some(format!("killed{grace} {location}")),
                )
            }
        };
        if let Some(failure) = self.failure.take() {
            reason = "PostStartHookError".into();
            message = Some(failure);
        }
        let event_type = if reason == "Completed" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let name = self.spec.name.clone();
        self.pod.event_at(
            ended_at,
            event_type,
            &reason,
            Some(&name),
            match &message {
                Some(message) => {
                    format!("Container {name} terminated with exit code {exit_code}: {message}")
                }
                None => format!("Container {name} terminated with exit code {exit_code}"),
            },
        );
        // The container's /tmp goes with it.
        self.pod.host.tmp_dirs.remove(&self.tmp_dir);
        ContainerStateTerminated {
            exit_code,
            reason: Some(reason),
            message,
            started_at: Some(self.started_at.clone()),
            finished_at: Some(self.pod.now_time()),
            // Only wasmlet's own kills are a SIGKILL; a guest may exit with 137 itself.
            signal: killed_by_wasmlet.then_some(9),
            ..Default::default()
        }
    }

    fn argv(&self) -> Vec<String> {
        self.launcher.argv()
    }

    fn io(&self, source: LogSource, argv: Vec<String>, capture: bool) -> InstanceIo {
        self.launcher.io(source, argv, capture)
    }
}

/// Resolves when the server's requests and the calls in flight are done.
async fn drained(server: &Option<Arc<Server>>, calls: &Calls) {
    if let Some(server) = server {
        server.drained().await;
    }
    calls.drained().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_codes_match_signals() {
        assert_eq!(super::EXIT_KILLED, 128 + 9);
        assert_eq!(super::EXIT_TRAPPED, 128 + 6);
    }
}
