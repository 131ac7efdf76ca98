//! A running pod: the handle an embedder or the CLI holds to watch it, delete it and await its
//! end, and the status it reports (Kubernetes `PodStatus`, so tools that read pod JSON read ours).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;

use crate::bindings::TerminationReason;
use crate::container;
use crate::events::{Event, EventType, PodUpdate, UpdateHub, Watch};
use crate::guest::LoadedComponent;
use crate::host::HostInner;
use crate::manifest::PodSpec;
use crate::signal::Watched;

/// A function that sees every status of a pod, with when it took effect.
pub(crate) type StatusTap = Box<dyn Fn(Instant, &PodStatus) + Send + Sync>;

/// A request to stop the pod's containers, from [`Pod::delete`].
#[derive(Debug, Clone)]
pub(crate) struct StopRequest {
    /// The grace period the request gave.
    pub grace_period: Duration,
    /// When the grace period ends. A later request only ever moves it earlier.
    pub deadline: Instant,
    pub reason: TerminationReason,
    pub message: String,
}

impl StopRequest {
    /// Grace 0: the kill, with no preStop and no terminate.
    pub fn is_kill(&self) -> bool {
        self.grace_period.is_zero()
    }
}

/// The compiled components of a pod, loaded before anything starts.
pub(crate) struct LoadedPod {
    pub containers: Vec<LoadedContainer>,
}

#[derive(Clone)]
pub(crate) struct LoadedContainer {
    pub main: Arc<LoadedComponent>,
    pub exec: HashMap<PathBuf, Arc<LoadedComponent>>,
    pub load_time: Duration,
}

/// A pod started by [`crate::Host::start_pod`]. Cheap to clone; every clone is the same pod.
#[derive(Clone)]
pub struct Pod {
    shared: Arc<PodShared>,
}

pub(crate) struct PodShared {
    pub spec: PodSpec,
    pub host: Arc<HostInner>,
    pub hub: UpdateHub,
    /// The stop request in force, one cell per container: a request reaches the containers in
    /// manifest order.
    pub stops: Vec<Watched<Option<StopRequest>>>,
    status: watch::Sender<PodStatus>,
    /// Called with every status change and when it happened (see [`UpdateHub::tap`]).
    status_taps: std::sync::Mutex<Vec<StatusTap>>,

    started: Instant,
}

impl Pod {
    pub(crate) fn start(host: Arc<HostInner>, spec: PodSpec, loaded: LoadedPod) -> Pod {
        let clock = host.clock.clone();
        let start_time = time(clock.wall_time());
        let status = PodStatus {
            phase: Some("Pending".into()),
            start_time: Some(start_time),
            container_statuses: Some(
                spec.containers
                    .iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        image: c.image.display().to_string(),
                        image_id: String::new(),
                        ready: false,
                        restart_count: 0,
                        started: Some(false),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("ContainerCreating".into()),
                                message: None,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let stops = spec.containers.iter().map(|_| Watched::new(None)).collect();
        let shared = Arc::new(PodShared {
            spec,
            host,
            hub: UpdateHub::new(),
            stops,
            status: watch::Sender::new(status),
            status_taps: std::sync::Mutex::new(Vec::new()),

            started: clock.now(),
        });
        let mut supervisors = Vec::new();
        for (index, loaded) in loaded.containers.into_iter().enumerate() {
            let spec = &shared.spec.containers[index];
            shared.event(
                EventType::Normal,
                "Pulled",
                Some(&spec.name),
                format!(
                    "Component \"{}\" loaded in {}",
                    spec.image.display(),
                    humantime::format_duration(round_ms(loaded.load_time))
                ),
            );
            supervisors.push(tokio::spawn(container::supervise(
                shared.clone(),
                index,
                loaded,
            )));
        }
        let pod = Pod { shared };
        let finisher = pod.shared.clone();
        tokio::spawn(async move {
            for (index, supervisor) in supervisors.into_iter().enumerate() {
                if let Err(failure) = supervisor.await {
                    // The supervisor killed the container's instances as it unwound; what is
                    // left is to say so, or the pod would never end.
                    tracing::error!("the supervisor of container {index} failed: {failure}");
                    let finished_at = finisher.now_time();
                    finisher.update_container(index, |status| {
                        if status
                            .state
                            .as_ref()
                            .is_some_and(|s| s.terminated.is_none())
                        {
                            status.state = Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: 1,
                                    reason: Some("Error".into()),
                                    message: Some(format!("wasmlet failed: {failure}")),
                                    finished_at: Some(finished_at),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            });
                            status.ready = false;
                        }
                    });
                }
            }
            finisher.hub.close();
        });
        pod
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

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.hub.events()
    }

    /// The pod's status now.
    pub fn status(&self) -> PodStatus {
        self.shared.status.borrow().clone()
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
            deadline,
            reason,
            message: message.into(),
        };
        for stop in &self.shared.stops {
            stop.send_if_modified(|current| {
                let supersedes = match current {
                    None => true,
                    // A kill always goes through (a running stop's deadline may have been
                    // extended past the first request's, after a preStop); otherwise only an
                    // earlier deadline.
                    Some(existing) => {
                        (request.is_kill() && !existing.is_kill())
                            || request.deadline < existing.deadline
                    }
                };
                if supersedes {
                    *current = Some(request.clone());
                }
                supersedes
            });
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

    /// Waits until every container has terminated and returns the final status.
    pub async fn wait(&self) -> PodStatus {
        self.wait_until(all_terminated).await
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

    /// Waits until every container is `Running` (postStart done) or has already ended.
    pub async fn wait_running(&self) -> PodStatus {
        self.wait_until(|status| {
            // A container that already ended will not be Running: it does not hold this up.
            status.container_statuses.iter().flatten().all(|c| {
                c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            })
        })
        .await
    }
}

/// Whether every container of `status` has terminated.
pub fn all_terminated(status: &PodStatus) -> bool {
    status
        .container_statuses
        .iter()
        .flatten()
        .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

impl PodShared {
    pub fn grace_period(&self) -> Duration {
        self.spec
            .termination_grace_period
            .unwrap_or(self.host.config.default_grace_period)
    }

    /// Records an event about the pod (or one of its containers), happening now.
    pub fn event(&self, kind: EventType, reason: &str, container: Option<&str>, message: String) {
        self.event_at(self.host.clock.now(), kind, reason, container, message);
    }

    /// Records an event that happened at `now` on the host's clock.
    pub fn event_at(
        &self,
        now: Instant,
        kind: EventType,
        reason: &str,
        container: Option<&str>,
        message: String,
    ) {
        let event = Event {
            kind,
            reason: reason.into(),
            object: format!("pod/{}", self.spec.name),
            container: container.map(str::to_string),
            message,
            age: now.saturating_duration_since(self.started),
            at: now,
            time: self.host.clock.wall_time(),
        };
        tracing::debug!(?event, "event");
        self.hub.publish(PodUpdate::Event(event));
    }

    /// Changes one container's status and recomputes the pod phase.
    pub fn update_container(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        self.update_container_returning(index, change);
    }

    /// [`PodShared::update_container`], returning what `change` returns.
    pub fn update_container_returning<R: Default>(
        &self,
        index: usize,
        change: impl FnOnce(&mut ContainerStatus) -> R,
    ) -> R {
        let mut result = R::default();
        self.status.send_modify(|status| {
            if let Some(container) = status
                .container_statuses
                .as_mut()
                .and_then(|all| all.get_mut(index))
            {
                result = change(container);
            }
            status.phase = Some(phase(status).into());
        });
        let taps = self.status_taps.lock().unwrap();
        if !taps.is_empty() {
            let now = self.host.clock.now();
            let status = self.status.borrow();
            for tap in taps.iter() {
                tap(now, &status);
            }
        }
        result
    }

    pub fn now_time(&self) -> Time {
        time(self.host.clock.wall_time())
    }
}

/// The pod phase Kubernetes derives from container states.
fn phase(status: &PodStatus) -> &'static str {
    let containers: Vec<_> = status.container_statuses.iter().flatten().collect();
    let terminated: Vec<_> = containers
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .collect();
    if !containers.is_empty() && terminated.len() == containers.len() {
        if terminated
            .iter()
            .all(|t| t.exit_code == 0 && t.reason.as_deref() == Some("Completed"))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if containers.iter().any(|c| {
        // Waiting to start for the first time; one waiting to restart keeps the pod Running.
        c.state.as_ref().is_some_and(|s| s.waiting.is_some())
            && c.restart_count == 0
            && c.last_state.is_none()
    }) {
        "Pending"
    } else {
        "Running"
    }
}

pub(crate) fn time(at: SystemTime) -> Time {
    use k8s_openapi::jiff::Timestamp;
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp = Timestamp::new(
        since_epoch.as_secs() as i64,
        since_epoch.subsec_nanos() as i32,
    );
    Time(timestamp.unwrap_or(Timestamp::UNIX_EPOCH))
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}
