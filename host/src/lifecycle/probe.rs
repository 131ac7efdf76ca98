//! Probes: the kubelet's startup, liveness and readiness checks of one container run.
//!
//! Each probe is a task on the supervisor's runtime that keeps time on the host's clock (so
//! probes run on virtual time in deterministic mode), as the kubelet's prober workers do:
//! - the first check comes `initialDelaySeconds` after the container started, then one every
//!   `periodSeconds` (counted from the start of the previous check); a check that takes longer
//!   than `timeoutSeconds` fails;
//! - a startup probe holds the other two back until it succeeds once; failing
//!   `failureThreshold` times in a row kills the container, as a liveness failure does;
//! - liveness: `failureThreshold` failures in a row kill the container (preStop runs, with the
//!   probe's `terminationGracePeriodSeconds` if it sets one), which restarts per restartPolicy;
//! - readiness: `successThreshold` successes in a row make the container ready,
//!   `failureThreshold` failures not ready; it starts not ready.
//!
//! Every failed check is a `Warning Unhealthy` event, as in Kubernetes. Probes stop when the
//! container begins to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clock::{after, sleep, sleep_until};
use crate::events::{EventType, LogSource};
use crate::lifecycle::shared::PodShared;
use crate::manifest::{ContainerSpec, ExecTarget, Probe, ProbeAction, ProbeKind};
use crate::runtime::{Entry, InstanceEnd, KillSwitch, Launcher};
use crate::signal::{Watched, Watcher};

/// The `User-Agent` of probe requests (Kubernetes sends `kube-probe/<version>`).
pub(crate) const PROBE_USER_AGENT: &str = concat!("kube-probe/wasmlet-", env!("CARGO_PKG_VERSION"));

/// What the probes tell the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeReport {
    /// The startup probe succeeded: the container is `started`.
    Started,
    /// The readiness probe turned the container ready or not ready.
    Ready(bool),
    /// The liveness or startup probe failed `failureThreshold` times in a row: the container
    /// is to be killed and restarted, with this grace period if the probe sets one.
    Failed {
        kind: ProbeKind,
        grace: Option<Duration>,
    },
}

/// The probes of a container run; dropping it stops them.
pub(crate) struct Probes {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub reports: mpsc::UnboundedReceiver<ProbeReport>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Probes {
    /// Starts the probes of `spec`, the container of `pod` whose instances `launcher` makes
    /// (none if it has none); `started_at` is when it started.
    pub fn start(
        pod: &Arc<PodShared>,
        spec: &ContainerSpec,
        launcher: &Arc<Launcher>,
        started_at: Instant,
    ) -> Option<Probes> {
        spec.probes().next()?;
        let (reports, receiver) = mpsc::unbounded_channel();
        // Watched wakes the two waiting probes in order (deterministic mode needs that).
        let started = Arc::new(Watched::new(spec.startup_probe.is_none()));
        let mut tasks = Vec::new();
        for (kind, probe) in spec.probes() {
            let worker = Worker {
                pod: pod.clone(),
                launcher: launcher.clone(),
                kind,
                probe: probe.clone(),
                started_at,
                reports: reports.clone(),
                started: started.clone(),
            };
            let started = started.subscribe();
            tasks.push(tokio::spawn(worker.run(started)));
        }
        Some(Probes {
            tasks,
            reports: receiver,
        })
    }

    /// The next report; never resolves once the probes have stopped.
    pub async fn next(probes: &mut Option<Probes>) -> ProbeReport {
        match probes {
            Some(probes) => match probes.reports.recv().await {
                Some(report) => report,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

struct Worker {
    pod: Arc<PodShared>,
    launcher: Arc<Launcher>,
    kind: ProbeKind,
    probe: Probe,
    started_at: Instant,
    reports: mpsc::UnboundedSender<ProbeReport>,
    started: Arc<Watched<bool>>,
}

impl Worker {
    async fn run(self, mut started: Watcher<bool>) {
        let clock = self.pod.host.clock.clone();
        if self.kind != ProbeKind::Startup && started.wait_for(|started| *started).await.is_err() {
            return;
        }
        sleep_until(&clock, after(self.started_at, self.probe.initial_delay)).await;
        let mut successes = 0;
        let mut failures = 0;
        let mut ready = None;
        loop {
            let began = clock.now();
            let fault = self.pod.host.faults.probe(self.kind);
            let result = if !fault.is_none()
                && fault.fails(self.pod.next_probe_check(&self.launcher.name, self.kind))
            {
                // An injected fault (deterministic mode): the check is lost on the way, as a
                // kubelet's request to a container can be; the container is not asked.
                Err("the check was lost (a fault the scenario injected)".to_string())
            } else {
                check(
                    &self.pod,
                    &self.launcher,
                    &self.probe.action,
                    self.probe.timeout,
                )
                .await
            };
            match result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    match self.kind {
                        ProbeKind::Startup => {
                            self.started.send_replace(true);
                            let _ = self.reports.send(ProbeReport::Started);
                            return;
                        }
                        ProbeKind::Readiness
                            if successes >= self.probe.success_threshold && ready != Some(true) =>
                        {
                            ready = Some(true);
                            let _ = self.reports.send(ProbeReport::Ready(true));
                        }
                        _ => {}
                    }
                }
                Err(message) => {
                    failures += 1;
                    successes = 0;
                    self.pod.event(
                        EventType::Warning,
                        "Unhealthy",
                        Some(&self.launcher.name),
                        format!("{} probe failed: {message}", self.kind.title()),
                    );
                    if failures >= self.probe.failure_threshold {
                        if self.kind == ProbeKind::Readiness {
                            if ready != Some(false) {
                                ready = Some(false);
                                let _ = self.reports.send(ProbeReport::Ready(false));
                            }
                        } else {
                            let _ = self.reports.send(ProbeReport::Failed {
                                kind: self.kind,
                                grace: self.probe.termination_grace_period,
                            });
                            return;
                        }
                    }
                }
            }
            let next = after(began, self.probe.period);
            if next > clock.now() {
                sleep_until(&clock, next).await;
            }
        }
    }
}

/// Kills a probe's instance if the probe is dropped before it ends.
struct KillOnDrop(KillSwitch);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// One check: `Ok` if it passed, else what the failure event says.
async fn check(
    pod: &Arc<PodShared>,
    launcher: &Arc<Launcher>,
    action: &ProbeAction,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        ProbeAction::HttpGet(get) => {
            let result = crate::http::http_get(pod, get, PROBE_USER_AGENT, Some(timeout)).await?;
            let code = result.status.as_u16();
            if (200..400).contains(&code) {
                Ok(())
            } else {
                // Kubernetes says only the status; the start of the body says why.
                let said: String = result
                    .body
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect();
                Err(if said.trim().is_empty() {
                    format!("HTTP probe failed with statuscode: {code}")
                } else {
                    format!(
                        "HTTP probe failed with statuscode: {code} ({})",
                        said.trim()
                    )
                })
            }
        }
        ProbeAction::TcpSocket { host, port } => {
            crate::http::tcp_check(pod, host.as_deref(), *port, timeout).await
        }
        ProbeAction::Exec { command, target } => {
            let component = match target {
                ExecTarget::Shell => launcher.loaded.shell.clone(),
                ExecTarget::Component(path) => launcher.loaded.exec.get(path).cloned(),
                ExecTarget::Container => Some(launcher.loaded.main.clone()),
            }
            .ok_or_else(|| format!("{command:?}: the command's component is not loaded"))?;
            let io = launcher.io(LogSource::Main, command.clone(), true).quiet();
            let logs = io.logs.clone();
            let (switch, done) = launcher.spawn(component, Entry::Run, io);
            let guard = KillOnDrop(switch);
            let clock = pod.host.clock.clone();
            let end = tokio::select! {
                biased;
                end = done => end.unwrap_or_else(|_| InstanceEnd::lost()),
                () = sleep(&clock, timeout) => {
                    guard.0.kill();
                    return Err(format!(
                        "command {command:?} timed out after {}",
                        crate::events::short_duration(timeout)
                    ));
                }
            };
            drop(guard);
            let output = logs.captured().join("\n");
            let failure = match end {
                InstanceEnd::Returned(Ok(())) | InstanceEnd::Exited(0) => return Ok(()),
                InstanceEnd::Exited(code) => format!("exit code {code}"),
                InstanceEnd::Returned(Err(_)) | InstanceEnd::NotImplemented => {
                    "exit code 1".to_string()
                }
                InstanceEnd::Trapped { message, .. } => format!("trapped: {message}"),
                InstanceEnd::Killed { .. } => "killed".to_string(),
            };
            Err(if output.is_empty() {
                format!("command {command:?} failed: {failure}")
            } else {
                format!("command {command:?} failed ({failure}): {output}")
            })
        }
    }
}
