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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStateTerminated};

use crate::bindings::TerminationReason;
use crate::clock::{CancelOnDrop, after, sleep, sleep_until};
use crate::events::{EventType, LogSource, PodUpdate};
use crate::http::Server;
use crate::lifecycle::pod::{Observation, PodShared, StopRequest};
use crate::lifecycle::probe::{ProbeReport, Probes};
use crate::manifest::{ContainerSpec, ExecTarget, Handler, RestartPolicy};
use crate::runtime::{
    ContainerContext, Entry, InstanceDone, InstanceEnd, InstanceIo, KillSwitch, Launcher,
    LoadedComponent, LoadedContainer, LogTarget, Mount, spawn_task,
};

/// The `User-Agent` of httpGet hook requests (Kubernetes sends `kube-lifecycle/<version>`).
const HOOK_USER_AGENT: &str = concat!("kube-lifecycle/wasmlet-", env!("CARGO_PKG_VERSION"));

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
    }
}

/// A hook in progress: an instance (exec or the component's own export) or a sleep.
struct HookRun {
    switch: KillSwitch,
    end: InstanceDone,
    logs: LogTarget,
    description: String,
}

/// Where a container run is in its stop: the container's state machine, read top to bottom.
/// The one deadline of a stop is the grace clock of the container's context
/// ([`ContainerContext::deadline`]), which guests read too.
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
enum StopPhase {
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

struct Supervisor {
    pod: Arc<PodShared>,
    index: usize,
    spec: ContainerSpec,
    loaded: LoadedContainer,
    context: Arc<ContainerContext>,
    launcher: Arc<Launcher>,
    instances: Instances,
    /// The container's /tmp: removed when the run ends.
    tmp_dir: Option<tempfile::TempDir>,
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

/// Whether a run ended in success: exit code 0 and reason `Completed` (not, say, a postStart
/// failure after a clean exit).
pub(crate) fn completed(end: &ContainerStateTerminated) -> bool {
    end.exit_code == 0 && end.reason.as_deref() == Some("Completed")
}

/// Runs the container once, from its start to its end (on its own, or stopped), and says how
/// it ended, and whether wasmlet stopped it because a liveness or startup probe failed.
/// Whether it runs again is the pod's decision (`lifecycle::decide`).
pub(crate) async fn run(
    pod: Arc<PodShared>,
    index: usize,
    loaded: LoadedContainer,
) -> (ContainerStateTerminated, bool) {
    let context = ContainerContext::new(
        pod.host.clock.clone(),
        pod.host.runtime.clock_origin,
        pod.container(index).memory_limit,
    );
    run_once(pod, index, loaded, context).await
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
    let tmp_dir = tempfile::Builder::new()
        .prefix(&format!("wasmlet-{}-{}-", pod.spec.name, spec.name))
        .tempdir();
    let tmp_dir = match tmp_dir {
        Ok(dir) => Some(dir),
        Err(error) => {
            pod.event(
                EventType::Warning,
                "Failed",
                Some(&spec.name),
                format!("could not create the container's /tmp: {error}; it runs without one"),
            );
            None
        }
    };
    let started_at = pod.now_time();
    let launcher = Arc::new(launcher(
        &pod,
        &spec,
        loaded.clone(),
        context.clone(),
        mounts,
        tmp_dir.as_ref().map(|dir| dir.path().to_path_buf()),
    ));
    let started_instant = pod.host.clock.now();
    let turn = pod.turns[index].subscribe();
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
    /// nothing of the container may keep running unsupervised.
    fn drop(&mut self) {
        self.instances.kill_all();
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
            // A component that only serves HTTP: its "process" is the server, which ends
            // when terminate has come and the requests in flight are done.
            let context = self.context.clone();
            let server = self.server.clone();
            spawn_task(&self.pod.host.runtime, async move {
                context.terminated().await;
                if let Some(server) = server {
                    server.drained().await;
                }
                InstanceEnd::Returned(Ok(()))
            })
        };
        self.instances.add(switch);
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
                    match &self.server {
                        Some(server) if terminating && server.busy() => ended_draining = Some(end),
                        _ => break end,
                    }
                }
                () = drained(&self.server), if ended_draining.is_some() => {
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

    /// Starts the postStart or preStop handler: the manifest's, else the component's own
    /// export, else none.
    fn start_hook(&mut self, source: LogSource) -> Option<HookRun> {
        let (handler, entry) = match source {
            LogSource::PostStart => (self.spec.post_start.clone(), Entry::PostStart),
            LogSource::PreStop => (self.spec.pre_stop.clone(), Entry::PreStop),
            LogSource::Main | LogSource::Handler => unreachable!("not a hook"),
        };
        let host = &self.pod.host;
        let run = match handler {
            Some(Handler::HttpGet(get)) => {
                let pod = self.pod.clone();
                let logs = self.io(source, Vec::new(), true).logs;
                let (reason, name) = match source {
                    LogSource::PostStart => ("PostStartHook", "postStart"),
                    _ => ("PreStopHook", "preStop"),
                };
                let container = self.spec.name.clone();
                let url = crate::http::get_url(&pod, &get);
                let description = format!("httpGet {url}");
                let (switch, end) = spawn_task(&host.runtime, async move {
                    // No timeout of its own, as in Kubernetes: the grace period bounds a
                    // preStop, and a postStart runs until it answers.
                    match crate::http::http_get(&pod, &get, HOOK_USER_AGENT, None).await {
                        Ok(got) => {
                            // Any answer is a success; the status is recorded.
                            let kind = if got.status.as_u16() < 400 {
                                EventType::Normal
                            } else {
                                EventType::Warning
                            };
                            pod.event(
                                kind,
                                reason,
                                Some(&container),
                                format!(
                                    "{name} httpGet {url} answered {} in {}",
                                    got.status,
                                    crate::events::short_duration(got.took)
                                ),
                            );
                            InstanceEnd::Returned(Ok(()))
                        }
                        Err(error) => InstanceEnd::Returned(Err(error)),
                    }
                });
                HookRun {
                    switch,
                    end,
                    logs,
                    description,
                }
            }
            Some(Handler::Sleep(duration)) => {
                let clock = host.clock.clone();
                let logs = self.io(source, Vec::new(), true).logs;
                let (switch, end) = spawn_task(&host.runtime, async move {
                    sleep(&clock, duration).await;
                    InstanceEnd::Returned(Ok(()))
                });
                HookRun {
                    switch,
                    end,
                    logs,
                    description: format!("sleep {}", humantime::format_duration(duration)),
                }
            }
            Some(Handler::Exec { command, target }) => {
                let component = match target {
                    ExecTarget::Shell => self.loaded.shell.clone()?,
                    ExecTarget::Component(path) => self.loaded.exec.get(&path)?.clone(),
                    ExecTarget::Container => self.loaded.main.clone(),
                };
                // The command is the instance's whole argv, as exec in a container.
                let io = self.io(source, command.clone(), true);
                let logs = io.logs.clone();
                let (switch, end) = self.spawn(component, Entry::Run, io);
                HookRun {
                    switch,
                    end,
                    logs,
                    description: format!("exec {command:?}"),
                }
            }
            None if self.loaded.main.exports(entry) => {
                let io = self.io(source, self.argv(), true);
                let logs = io.logs.clone();
                let (switch, end) = self.spawn(self.loaded.main.clone(), entry, io);
                let export = match entry {
                    Entry::PostStart => "post-start",
                    _ => "pre-stop",
                };
                HookRun {
                    switch,
                    end,
                    logs,
                    description: format!("the component's {export} export"),
                }
            }
            None => return None,
        };
        self.instances.add(run.switch.clone());
        Some(run)
    }

    /// Begins the stop sequence (`killContainer` in
    /// `pkg/kubelet/kuberuntime/kuberuntime_container.go`): the `Killing` event, the grace clock,
    /// preStop; returns the preStop hook if one started. `in_turn`: the pod's stop, whose
    /// terminate waits for the container's turn; a stop of the container's own (its postStart
    /// or a probe failed) waits for nothing, as the kubelet passes no ordering then.
    fn begin_stop(
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
    fn after_pre_stop(&mut self, ran: bool) {
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
    fn terminate_in_turn(&mut self, turn: bool) {
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
    fn shorten(&mut self, request: &StopRequest, pre_stop: &Option<HookRun>) {
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

    /// postStart is done: the container is `Running`, and its probes begin.
    fn mark_running(&mut self) {
        let started_at = self.started_at.clone();
        self.running = true;
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
                    self.spec.memory_limit.unwrap_or_default()
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
        drop(self.tmp_dir.take());
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

/// What every instance of one run of the container of `spec` is made from: its components,
/// its context, its command line and environment (resolved), its files, and its output to the
/// pod's log.
fn launcher(
    pod: &Arc<PodShared>,
    spec: &ContainerSpec,
    loaded: LoadedContainer,
    context: Arc<ContainerContext>,
    mounts: Vec<Mount>,
    tmp_dir: Option<std::path::PathBuf>,
) -> Launcher {
    let env = pod.container_env(spec);
    // `command` then `args` (or its name then `args`), with `$(NAME)` references to its
    // environment expanded, as Kubernetes does.
    let start = if spec.command.is_empty() {
        vec![spec.name.clone()]
    } else {
        spec.command.clone()
    };
    let argv = start
        .iter()
        .chain(&spec.args)
        .map(|arg| expand_references(arg, &env))
        .collect();
    let sink = pod.clone();
    Launcher {
        runtime: pod.host.runtime.clone(),
        name: spec.name.as_str().into(),
        loaded,
        context,
        argv,
        env,
        working_dir: spec.working_dir.clone(),
        mounts,
        tmp_dir,
        log_sink: Arc::new(move |line| sink.hub.publish(PodUpdate::Log(line))),
    }
}

/// Kubernetes' `$(NAME)` expansion: a reference to a variable in `env` is replaced by its value;
/// one to an unknown variable is left as written; `$$` is a literal `$`.
pub(crate) fn expand_references(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(close) = reference.find(')')
        {
            let name = &reference[..close];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &reference[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Resolves when the server's requests in flight are done; never, if there is no server.
async fn drained(server: &Option<Arc<Server>>) {
    match server {
        Some(server) => server.drained().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the hook in `slot` ends; never, if there is none.
async fn finish(slot: &mut Option<HookRun>) -> InstanceEnd {
    match slot {
        Some(hook) => (&mut hook.end)
            .await
            .unwrap_or_else(|_| InstanceEnd::lost()),
        None => std::future::pending().await,
    }
}

/// Why a hook failed, and what it printed last (Kubernetes hides hook output; users ask for it).
struct HookFailure {
    summary: String,
    output: Vec<String>,
}

impl HookFailure {
    /// `None` if the hook succeeded.
    fn of(end: &InstanceEnd, hook: &HookRun) -> Option<HookFailure> {
        let what = match end {
            InstanceEnd::Returned(Ok(()))
            | InstanceEnd::Exited(0)
            | InstanceEnd::NotImplemented => {
                return None;
            }
            InstanceEnd::Returned(Err(message)) if message.is_empty() => "returned an error".into(),
            InstanceEnd::Returned(Err(message)) => format!("returned an error: {message}"),
            InstanceEnd::Exited(code) => format!("exited with code {code}"),
            InstanceEnd::Trapped { message, .. } => format!("trapped: {message}"),
            InstanceEnd::Killed { .. } => "was killed when the grace period ran out".into(),
        };
        Some(HookFailure {
            summary: format!("{} {what}", hook.description),
            output: hook.logs.captured(),
        })
    }

    /// The summary followed by the captured output, for the hook's event.
    fn with_output(&self) -> String {
        if self.output.is_empty() {
            self.summary.clone()
        } else {
            format!("{}; output:\n{}", self.summary, self.output.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_as_in_kubernetes() {
        let env = vec![
            ("NAME".to_string(), "web".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ];
        let expand = |text| expand_references(text, &env);
        assert_eq!(expand("--name=$(NAME):$(PORT)"), "--name=web:8080");
        assert_eq!(expand("$(MISSING) stays"), "$(MISSING) stays");
        assert_eq!(
            expand("$$(NAME) is escaped, $$ too"),
            "$(NAME) is escaped, $ too"
        );
        assert_eq!(expand("a lone $ and $(unclosed"), "a lone $ and $(unclosed");
    }

    #[test]
    fn exit_codes_match_signals() {
        assert_eq!(super::EXIT_KILLED, 128 + 9);
        assert_eq!(super::EXIT_TRAPPED, 128 + 6);
    }
}
