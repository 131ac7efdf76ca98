//! What a pod's runner, its container supervisors and its probes share ([`PodShared`]): the
//! spec and node, the status (`status`: Kubernetes `PodStatus`, so tools that read pod JSON read
//! ours) and events, the stop requests handed to each container, the network (`network`) and
//! the volumes (`volumes`). The runner that acts on what is observed ([`Observation`]) sits
//! above, in `pod`, and is reached through [`Runner`], so that this module needs none of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
};
use tokio::sync::watch;

use crate::bindings::TerminationReason;
use crate::events::{Event, EventType, PodUpdate, UpdateHub};
use crate::http::Server;
use crate::lifecycle::conditions::{pod_conditions, qos_class};
use crate::lifecycle::node::Node;
use crate::manifest::PodSpec;
use crate::signal::Watched;

/// A function that sees every status of a pod, with when it took effect.
pub(crate) type StatusTap = Box<dyn Fn(Instant, &PodStatus) + Send + Sync>;

/// A request to stop the pod's containers, from [`Pod::delete`](crate::Pod::delete).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StopRequest {
    /// The grace period in force.
    pub grace_period: Duration,
    /// When the stop began (the first delete).
    pub began: Instant,
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

pub(crate) mod network;
mod status;
mod volumes;

pub use status::{all_terminated, phase_is_final};
pub(crate) use status::{time, waiting_status};
pub(crate) use volumes::{PodVolume, claim_dir};

/// What acts on the pod's observations: the pod runner (`pod::PodRunner`).
pub(crate) trait Runner: Send {
    /// Records `observations`, decides, and acts.
    fn step(&mut self, shared: &Arc<PodShared>, observations: Vec<Observation>);
}

pub(crate) struct PodShared {
    pub spec: PodSpec,
    pub host: Arc<Node>,
    pub hub: UpdateHub,
    /// The runtime the pod was started on: its container runs are tasks there.
    pub(super) runtime: tokio::runtime::Handle,
    /// The executor of the pod's decisions (`None` until the pod has started).
    runner: std::sync::Mutex<Option<Box<dyn Runner>>>,
    /// What was observed and not yet handed to the runner.
    observations: std::sync::Mutex<Vec<Observation>>,
    /// Set when there is something for the runner to look at.
    dirty: std::sync::atomic::AtomicBool,
    /// The stop request for the whole pod (the latest that superseded the others).
    pub(super) stop_request: Watched<Option<StopRequest>>,
    /// The stop request in force for each container slot (init containers first, then app
    /// containers), as the pod runner hands them on.
    pub stops: Vec<Watched<Option<StopRequest>>>,
    /// Whether each slot's terminate may be delivered once its preStop is over: always for a
    /// container that is not a sidecar; for a sidecar once the pod runner says its turn came.
    pub turns: Vec<Watched<bool>>,
    pub(super) status: watch::Sender<PodStatus>,
    /// Called with every status change and when it happened (see [`UpdateHub::tap`]).
    pub(super) status_taps: std::sync::Mutex<Vec<StatusTap>>,
    /// Set when nothing of the pod runs or will run again: only then is its phase final.
    finished: std::sync::atomic::AtomicBool,
    /// `metadata.uid`: the manifest's, or one made when the pod started.
    pub uid: String,
    /// The pod's volumes, until it finishes (an emptyDir goes with it).
    volumes: std::sync::Mutex<Vec<PodVolume>>,
    started: Instant,
    /// Each container slot's `ready`, as the status says: the gate of its HTTP listeners.
    ready_gates: Vec<Arc<std::sync::atomic::AtomicBool>>,
    /// The HTTP servers of the running containers, by port (the pod's network).
    servers: std::sync::Mutex<HashMap<u16, Arc<Server>>>,
    /// The pod's IP: where its containers serve ([`network::pod_address`]).
    pub(crate) address: std::net::IpAddr,
    /// The pod's own CPU limit (`spec.resources.limits.cpu`), shared by all its containers.
    pub(crate) cpu_quota: Option<Arc<crate::runtime::CpuQuota>>,
    /// The CPU time of each slot's container, in nanoseconds, for those that have a CPU limit
    /// or request (the others are not measured).
    pub(crate) cpu_used: Vec<Arc<std::sync::atomic::AtomicU64>>,
    /// The pod's own memory limit (`spec.resources.limits.memory`), shared by all its
    /// containers.
    pub(crate) memory: Option<Arc<crate::runtime::MemoryBudget>>,
    /// The embedder's host interfaces its containers are linked with (the host's and its own).
    pub(crate) imports: crate::runtime::Imports,
    /// Each slot's call gate while the container runs ([`crate::Pod::call`]).
    pub(crate) calls: Vec<std::sync::Mutex<Option<Arc<crate::calls::Calls>>>>,
    /// The checks each container's probes made so far, over the pod's life, by container name
    /// and probe: what an injected probe fault counts ([`crate::lifecycle::faults::ProbeFault`]).
    probe_checks: std::sync::Mutex<HashMap<(String, crate::manifest::ProbeKind), u32>>,
}

/// What is observed of a pod's containers, for the pod runner to act on.
pub(crate) enum Observation {
    /// The run of `slot` has started: its postStart is done.
    Started { slot: usize },
    /// The run of `slot` ended this way; `killed_by_probe`: wasmlet stopped it because its
    /// liveness or startup probe failed.
    Ended {
        slot: usize,
        end: ContainerStateTerminated,
        killed_by_probe: bool,
    },
}

impl PodShared {
    /// The shared state of a pod about to start on `host`: every container `Waiting`, the first
    /// status with the kubelet's conditions, no runner yet ([`PodShared::install_runner`]).
    pub(super) fn new(
        host: Arc<Node>,
        spec: PodSpec,
        uid: String,
        address: std::net::IpAddr,
        volumes: Vec<PodVolume>,
        imports: crate::runtime::Imports,
    ) -> Arc<PodShared> {
        let clock = host.clock.clone();
        let start_time = time(clock.wall_time());
        // Kubernetes' reasons: app containers wait for the init containers to finish.
        let app_reason = if spec.init_containers.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let mut status = PodStatus {
            phase: Some("Pending".into()),
            start_time: Some(start_time.clone()),
            init_container_statuses: (!spec.init_containers.is_empty()).then(|| {
                spec.init_containers
                    .iter()
                    .map(|c| waiting_status(c, "PodInitializing"))
                    .collect()
            }),
            container_statuses: Some(
                spec.containers
                    .iter()
                    .map(|c| waiting_status(c, app_reason))
                    .collect(),
            ),
            ..Default::default()
        };
        // The first status already has the kubelet's conditions, as every later one does.
        let conditions = pod_conditions(&spec, &status, false, &[], start_time);
        status.conditions = Some(conditions);
        status.qos_class = Some(qos_class(&spec).into());
        let slots = spec.init_containers.len() + spec.containers.len();
        let turns = (0..slots)
            .map(|slot| {
                let init = &spec.init_containers;
                Watched::new(!(slot < init.len() && init[slot].sidecar))
            })
            .collect();
        let cpu_quota = spec.resources.cpu_limit.map(crate::runtime::CpuQuota::new);
        let memory = (spec.resources.memory_limit)
            .map(|limit| Arc::new(crate::runtime::MemoryBudget::new(Some(limit), None)));
        Arc::new(PodShared {
            spec,
            host,
            hub: UpdateHub::new(clock.clone()),
            runtime: tokio::runtime::Handle::current(),
            runner: std::sync::Mutex::new(None),
            observations: std::sync::Mutex::new(Vec::new()),
            dirty: std::sync::atomic::AtomicBool::new(false),
            stop_request: Watched::new(None),
            stops: (0..slots).map(|_| Watched::new(None)).collect(),
            turns,
            status: watch::Sender::new(status),
            status_taps: std::sync::Mutex::new(Vec::new()),
            finished: std::sync::atomic::AtomicBool::new(false),
            uid,
            volumes: std::sync::Mutex::new(volumes),
            started: clock.now(),
            ready_gates: (0..slots).map(|_| Default::default()).collect(),
            servers: Default::default(),
            address,
            cpu_quota,
            cpu_used: (0..slots).map(|_| Default::default()).collect(),
            probe_checks: Default::default(),
            memory,
            imports,
            calls: (0..slots).map(|_| Default::default()).collect(),
        })
    }

    /// The number (from 1, over the pod's life) of the check `container`'s `kind` probe makes
    /// now.
    pub(crate) fn next_probe_check(
        &self,
        container: &str,
        kind: crate::manifest::ProbeKind,
    ) -> u32 {
        let mut checks = self.probe_checks.lock().unwrap();
        let count = checks.entry((container.to_string(), kind)).or_default();
        *count += 1;
        *count
    }

    /// Hands the pod to `runner` and lets it act on the pod as it starts.
    pub(super) fn install_runner(self: &Arc<Self>, runner: Box<dyn Runner>) {
        *self.runner.lock().unwrap() = Some(runner);
        self.observe(None);
    }

    /// Hands `observation` (if any) to the pod runner and lets it act, now, on this thread —
    /// unless the runner is busy (on another thread, or further up this one's stack): then
    /// it acts on it before it lets go.
    pub(crate) fn observe(self: &Arc<Self>, observation: Option<Observation>) {
        if let Some(observation) = observation {
            self.observations.lock().unwrap().push(observation);
        }
        self.dirty.store(true, Ordering::SeqCst);
        loop {
            let mut runner = match self.runner.try_lock() {
                Ok(runner) => runner,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            while self.dirty.swap(false, Ordering::SeqCst) {
                let observations = std::mem::take(&mut *self.observations.lock().unwrap());
                if let Some(runner) = runner.as_mut() {
                    runner.step(self, observations);
                }
            }
            drop(runner);
            // Something observed after the last look, while the runner was still held.
            if !self.dirty.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Nothing of the pod runs or will run again: its phase is final, its volumes go.
    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.refresh_phase();
        // The pod's emptyDir volumes go with it.
        self.volumes.lock().unwrap().clear();
        self.hub.close();
    }

    /// The environment of `container`, resolved: pod fields filled in, and `$(NAME)` references
    /// to variables defined before each one expanded.
    pub fn container_env(
        &self,
        container: &crate::manifest::ContainerSpec,
    ) -> Vec<(String, String)> {
        use crate::manifest::EnvValue;
        let mut env: Vec<(String, String)> = Vec::new();
        for (name, value) in &container.env {
            let value = match value {
                EnvValue::Value(text) => expand_references(text, &env),
                EnvValue::Resolved(text) => text.clone(),
                EnvValue::Field(field) => self.field(*field),
            };
            // A later definition of a name wins (`env` over `envFrom`), as in Kubernetes.
            match env.iter_mut().find(|(defined, _)| defined == name) {
                Some(defined) => defined.1 = value,
                None => env.push((name.clone(), value)),
            }
        }
        env
    }

    /// A field of the pod, as the downward API shows it.
    pub fn field(&self, field: crate::manifest::PodField) -> String {
        use crate::manifest::PodField;
        match field {
            PodField::Name => self.spec.name.clone(),
            PodField::Namespace => self.spec.namespace.clone(),
            PodField::Uid => self.uid.clone(),
            PodField::NodeName => self.host.node_name.clone(),
            PodField::PodIp => self.address.to_string(),
        }
    }

    /// The container of `slot`: init containers first, then app containers.
    pub fn container(&self, slot: usize) -> &crate::manifest::ContainerSpec {
        let init = &self.spec.init_containers;
        init.get(slot)
            .unwrap_or_else(|| &self.spec.containers[slot - init.len()])
    }

    /// A stop request made now.
    pub(super) fn stop_request_now(
        &self,
        grace_period: Option<Duration>,
        reason: TerminationReason,
        message: &str,
    ) -> StopRequest {
        let grace_period = grace_period.unwrap_or_else(|| self.grace_period());
        let now = self.host.clock.now();
        StopRequest {
            grace_period,
            began: now,
            deadline: crate::clock::after(now, grace_period),
            reason,
            message: message.into(),
        }
    }

    /// Reports that the container of `slot` ended as `terminated` and waits `delay` to
    /// restart (`CrashLoopBackOff`, a `BackOff` event); returns its last state before, which a
    /// stop during the back-off puts back.
    pub(super) fn back_off_status(
        &self,
        slot: usize,
        terminated: ContainerStateTerminated,
        delay: Duration,
    ) -> Option<ContainerState> {
        let spec = self.container(slot);
        let earlier = self.update_container_returning(slot, |status| {
            let earlier = status.last_state.clone();
            status.last_state = Some(ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            });
            status.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some(format!(
                        "back-off {} restarting failed container={} pod={}",
                        humantime::format_duration(delay),
                        spec.name,
                        self.spec.name
                    )),
                }),
                ..Default::default()
            });
            status.started = Some(false);
            status.ready = false;
            earlier
        });
        // The kubelet's message, without the delay (that is in the waiting state), so that the
        // event is counted rather than repeated.
        self.event(
            EventType::Warning,
            "BackOff",
            Some(&spec.name),
            format!(
                "Back-off restarting failed container {} in pod {}",
                spec.name, self.spec.name
            ),
        );
        earlier
    }

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
        let wall = self.host.clock.wall_time();
        let event = Event {
            kind,
            reason: reason.into(),
            object: format!("pod/{}", self.spec.name),
            container: container.map(str::to_string),
            message,
            count: 1,
            age: now.saturating_duration_since(self.started),
            first_age: now.saturating_duration_since(self.started),
            at: now,
            time: wall,
            first_time: wall,
        };
        tracing::debug!(?event, "event");
        self.hub.publish(PodUpdate::Event(event));
    }
}

/// Whether a run ended in success: exit code 0 and reason `Completed` (not, say, a postStart
/// failure after a clean exit).
pub(crate) fn completed(end: &ContainerStateTerminated) -> bool {
    end.exit_code == 0 && end.reason.as_deref() == Some("Completed")
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
}
