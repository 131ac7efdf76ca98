//! The pod's `conditions` and `qosClass`, computed from its spec and status as the kubelet
//! computes them. Pure functions: the caller supplies the time.
//!
//! The kubelet's sources: `pkg/kubelet/kubelet_pods.go` (`generateAPIPodStatus`) decides which
//! conditions there are and in which order; `pkg/kubelet/status/generate.go` computes each one;
//! `pkg/kubelet/status/status_manager.go` (`updateLastTransitionTime`) keeps their
//! `lastTransitionTime`; `pkg/apis/core/v1/helper/qos/qos.go` (`ComputePodQOS`) gives the QoS
//! class.
//!
//! wasmlet has no `readinessGates` (the manifest refuses them), so `Ready` is `ContainersReady`
//! under another name, and nothing but the kubelet's own conditions is ever reported.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::manifest::{ContainerSpec, PodSpec};

// The reasons of `pkg/kubelet/status/generate.go`.
const UNKNOWN_CONTAINER_STATUSES: &str = "UnknownContainerStatuses";
const POD_COMPLETED: &str = "PodCompleted";
const POD_FAILED: &str = "PodFailed";
const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";

/// The kubelet's conditions of a pod whose spec is `spec` and status (phase already set) is
/// `status`, in the kubelet's order: `PodReadyToStartContainers`, `Initialized`, `Ready`,
/// `ContainersReady`, `PodScheduled`. `finished` says the pod's phase is final; `previous` are
/// the conditions reported before, whose `lastTransitionTime` a condition keeps while its status
/// does not change; `now` is the time of a change.
pub(crate) fn pod_conditions(
    spec: &PodSpec,
    status: &PodStatus,
    finished: bool,
    previous: &[PodCondition],
    now: Time,
) -> Vec<PodCondition> {
    // `allContainerStatuses := append(s.InitContainerStatuses, s.ContainerStatuses...)`
    // (kubelet_pods.go, generateAPIPodStatus).
    let statuses: Vec<&ContainerStatus> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect();
    // The phase is Succeeded or Failed only once the pod has finished; until then the terminal
    // rules of generate.go do not apply.
    let phase = if finished {
        status.phase.as_deref()
    } else {
        None
    };
    let containers_ready = containers_ready(spec, &statuses, phase);
    // The order of kubelet_pods.go, generateAPIPodStatus.
    let conditions = [
        // GeneratePodReadyToStartContainersCondition: True once the pod's sandbox exists with
        // its network. A wasmlet pod has no sandbox to make: its network is the host's, and its
        // containers are instances made in the host process, so it is ready to start
        // containers from the moment it exists.
        condition("PodReadyToStartContainers", true, None, None),
        initialized(spec, &statuses, phase),
        ready(&containers_ready),
        containers_ready,
        // generateAPIPodStatus appends PodScheduled True, with no reason: the scheduler set it
        // first. A wasmlet pod is bound to its one host when it starts.
        condition("PodScheduled", true, None, None),
    ];
    conditions
        .into_iter()
        .map(|mut condition| {
            condition.last_transition_time = Some(last_transition_time(&condition, previous, &now));
            condition
        })
        .collect()
}

/// status_manager.go, updateLastTransitionTime: the time of the previous condition of the same
/// type if its status is the same (a new reason or message alone is no transition), else now.
fn last_transition_time(condition: &PodCondition, previous: &[PodCondition], now: &Time) -> Time {
    previous
        .iter()
        .find(|old| old.type_ == condition.type_)
        .filter(|old| old.status == condition.status)
        .and_then(|old| old.last_transition_time.clone())
        .unwrap_or_else(|| now.clone())
}

fn condition(
    kind: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

/// podutil.GetContainerStatus: the first status named `name`.
fn status_of<'a>(statuses: &[&'a ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|status| status.name == name).copied()
}

/// Go's `%s` of a `[]string`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// generate.go, GenerateContainersReadyCondition: every sidecar (a restartable init container)
/// and every app container is ready — unless the pod has ended.
fn containers_ready(
    spec: &PodSpec,
    statuses: &[&ContainerStatus],
    phase: Option<&str>,
) -> PodCondition {
    const KIND: &str = "ContainersReady";
    if statuses.is_empty() {
        return condition(KIND, false, Some(UNKNOWN_CONTAINER_STATUSES), None);
    }
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    // Restartable init containers first, then regular containers.
    let sidecars = spec.init_containers.iter().filter(|c| c.sidecar);
    for container in sidecars.chain(&spec.containers) {
        match status_of(statuses, &container.name) {
            Some(status) if !status.ready => unready.push(container.name.as_str()),
            Some(_) => {}
            None => unknown.push(container.name.as_str()),
        }
    }
    // generateContainersReadyConditionForTerminalPhase.
    match phase {
        Some("Succeeded") if unknown.is_empty() => {
            return condition(KIND, false, Some(POD_COMPLETED), None);
        }
        Some("Failed") => return condition(KIND, false, Some(POD_FAILED), None),
        _ => {}
    }
    true_unless_listed(KIND, &unknown, ("unready", &unready), CONTAINERS_NOT_READY)
}

/// generate.go, GeneratePodReadyCondition: ContainersReady's status, reason and message when it
/// is not True. Otherwise the readiness gates decide; wasmlet supports none, so the pod is ready.
fn ready(containers_ready: &PodCondition) -> PodCondition {
    PodCondition {
        type_: "Ready".into(),
        ..containers_ready.clone()
    }
}

/// generate.go, GeneratePodInitializedCondition: every init container has completed, and every
/// sidecar has started — or an app container has already run (sidecars restarting later do not
/// make the pod uninitialized again).
fn initialized(spec: &PodSpec, statuses: &[&ContainerStatus], phase: Option<&str>) -> PodCondition {
    const KIND: &str = "Initialized";
    if statuses.is_empty() && !spec.init_containers.is_empty() {
        return condition(KIND, false, Some(UNKNOWN_CONTAINER_STATUSES), None);
    }
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for container in &spec.init_containers {
        match status_of(statuses, &container.name) {
            None => unknown.push(container.name.as_str()),
            Some(status) if !init_container_initialized(container, status) => {
                incomplete.push(container.name.as_str());
            }
            Some(_) => {}
        }
    }
    if phase == Some("Succeeded") && unknown.is_empty() {
        return condition(KIND, true, Some(POD_COMPLETED), None);
    }
    if any_regular_container_started(spec, statuses) {
        return condition(KIND, true, None, None);
    }
    true_unless_listed(
        KIND,
        &unknown,
        ("incomplete", &incomplete),
        CONTAINERS_NOT_INITIALIZED,
    )
}

/// generate.go's shared tail of ContainersReady and Initialized: True when no container is
/// listed, else False with `reason` and "containers with unknown status: [..], containers with
/// `<what>` status: [..]" for the lists that are not empty.
fn true_unless_listed(
    kind: &str,
    unknown: &[&str],
    (what, listed): (&str, &[&str]),
    reason: &str,
) -> PodCondition {
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(unknown)
        ));
    }
    if !listed.is_empty() {
        messages.push(format!(
            "containers with {what} status: {}",
            go_list(listed)
        ));
    }
    if messages.is_empty() {
        condition(kind, true, None, None)
    } else {
        condition(kind, false, Some(reason), Some(messages.join(", ")))
    }
}

/// generate.go, isInitContainerInitialized: a sidecar once it has started; a plain init
/// container once it is ready. The kubelet's prober makes a plain init container ready when it
/// has terminated with exit code 0 (prober_manager.go, UpdatePodStatus); wasmlet's status keeps
/// `ready: false` for it, so that rule is applied here.
fn init_container_initialized(container: &ContainerSpec, status: &ContainerStatus) -> bool {
    if container.sidecar {
        status.started == Some(true)
    } else {
        status
            .state
            .as_ref()
            .and_then(|state| state.terminated.as_ref())
            .is_some_and(|terminated| terminated.exit_code == 0)
    }
}

/// pkg/kubelet/container/helpers.go, HasAnyRegularContainerStarted: an app container is
/// running or has terminated.
fn any_regular_container_started(spec: &PodSpec, statuses: &[&ContainerStatus]) -> bool {
    statuses.iter().any(|status| {
        spec.containers.iter().any(|c| c.name == status.name)
            && status
                .state
                .as_ref()
                .is_some_and(|state| state.running.is_some() || state.terminated.is_some())
    })
}

/// The pod's `qosClass`: `BestEffort`, `Burstable` or `Guaranteed`, from its containers'
/// requests and limits — or, when the pod has resources of its own (`spec.resources`), from
/// those alone (qos.go, ComputePodQOS).
pub(crate) fn qos_class(spec: &PodSpec) -> &'static str {
    // The manifest layer has applied API defaulting (pkg/apis/core/v1/defaults.go,
    // SetDefaults_Pod: a limit copied into an unset request); ComputePodQOS runs on the
    // defaulted pod.
    let amounts = |resources: &crate::manifest::Resources| Resources {
        cpu: Amounts {
            request: resources.cpu_request,
            limit: resources.cpu_limit,
        },
        memory: Amounts {
            request: resources.memory_request,
            limit: resources.memory_limit,
        },
    };
    if spec.resources != crate::manifest::Resources::default() {
        return compute_qos(std::iter::once(amounts(&spec.resources)));
    }
    compute_qos(
        spec.containers
            .iter()
            .chain(&spec.init_containers)
            .map(|container| amounts(&container.resources)),
    )
}

/// A container's request and limit of one resource.
#[derive(Debug, Clone, Copy, Default)]
struct Amounts {
    request: Option<u64>,
    limit: Option<u64>,
}

/// A container's requests and limits of the resources QoS counts (qos.go,
/// supportedQoSComputeResources: cpu and memory).
#[derive(Debug, Clone, Copy, Default)]
struct Resources {
    cpu: Amounts,
    memory: Amounts,
}

/// qos.go, ComputePodQOS (pod-level resources are given as one container): requests
/// and limits above zero are summed per resource over the containers (app, then init);
/// `BestEffort` if there are none; `Guaranteed` if every container has both a CPU and a memory
/// limit and the summed requests equal the summed limits, resource for resource; `Burstable`
/// otherwise.
fn compute_qos(containers: impl Iterator<Item = Resources>) -> &'static str {
    // [cpu, memory]
    let mut requests: [Option<u64>; 2] = [None; 2];
    let mut limits: [Option<u64>; 2] = [None; 2];
    let mut guaranteed = true;
    let add = |sum: &mut Option<u64>, amount: Option<u64>| {
        if let Some(amount) = amount.filter(|amount| *amount > 0) {
            *sum = Some(sum.unwrap_or(0).saturating_add(amount));
        }
    };
    for container in containers {
        let amounts = [container.cpu, container.memory];
        for (resource, amounts) in amounts.iter().enumerate() {
            add(&mut requests[resource], amounts.request);
            add(&mut limits[resource], amounts.limit);
        }
        // isGuaranteed: this container's limits have both cpu and memory.
        guaranteed &= amounts.iter().all(|a| a.limit.is_some_and(|l| l > 0));
    }
    if requests.iter().chain(&limits).all(Option::is_none) {
        return "BestEffort";
    }
    // areRequestsMatchingLimits: the same resources, with the same amounts.
    if guaranteed && requests == limits {
        return "Guaranteed";
    }
    "Burstable"
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::new(seconds, 0).unwrap())
    }

    fn container(name: &str) -> ContainerSpec {
        let mut container = PodSpec::for_component("app.wasm", Vec::new()).containers[0].clone();
        container.name = name.into();
        container
    }

    fn sidecar(name: &str) -> ContainerSpec {
        ContainerSpec {
            sidecar: true,
            ..container(name)
        }
    }

    fn pod(init: Vec<ContainerSpec>, apps: Vec<ContainerSpec>) -> PodSpec {
        PodSpec {
            init_containers: init,
            containers: apps,
            ..PodSpec::for_component("app.wasm", Vec::new())
        }
    }

    fn waiting(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            started: Some(false),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(name: &str, started: bool, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            started: Some(started),
            ready,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// As wasmlet reports an ended container: `started` and `ready` false.
    fn terminated(name: &str, exit_code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            started: Some(false),
            ready: false,
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(phase: &str, init: Vec<ContainerStatus>, apps: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            init_container_statuses: (!init.is_empty()).then_some(init),
            container_statuses: Some(apps),
            ..Default::default()
        }
    }

    /// One condition as (type, status, reason, message).
    type Expected = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );

    fn summary(
        conditions: &[PodCondition],
    ) -> Vec<(String, String, Option<String>, Option<String>)> {
        conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    }

    fn expected(
        initialized: Expected,
        containers_ready: (&'static str, Option<&'static str>, Option<&'static str>),
    ) -> Vec<(String, String, Option<String>, Option<String>)> {
        let (ready_status, ready_reason, ready_message) = containers_ready;
        let rows: [Expected; 5] = [
            ("PodReadyToStartContainers", "True", None, None),
            initialized,
            ("Ready", ready_status, ready_reason, ready_message),
            ("ContainersReady", ready_status, ready_reason, ready_message),
            ("PodScheduled", "True", None, None),
        ];
        rows.iter()
            .map(|(kind, status, reason, message)| {
                (
                    kind.to_string(),
                    status.to_string(),
                    reason.map(str::to_string),
                    message.map(str::to_string),
                )
            })
            .collect()
    }

    const INITIALIZED: Expected = ("Initialized", "True", None, None);
    const READY: (&str, Option<&str>, Option<&str>) = ("True", None, None);

    #[test]
    fn conditions_follow_the_kubelet() {
        struct Case {
            name: &'static str,
            spec: PodSpec,
            status: PodStatus,
            finished: bool,
            initialized: Expected,
            ready: (&'static str, Option<&'static str>, Option<&'static str>),
        }
        let one = || pod(vec![], vec![container("a")]);
        let two = || pod(vec![], vec![container("a"), container("b")]);
        let init = || pod(vec![container("init1")], vec![container("a")]);
        let with_sidecar = || pod(vec![sidecar("side")], vec![container("a")]);
        let not_ready = |message| ("False", Some("ContainersNotReady"), Some(message));
        let cases = [
            Case {
                name: "a_new_pod_is_initialized_but_not_ready",
                spec: one(),
                status: status("Pending", vec![], vec![waiting("a")]),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [a]"),
            },
            Case {
                name: "a_running_ready_container_makes_the_pod_ready",
                spec: one(),
                status: status("Running", vec![], vec![running("a", true, true)]),
                finished: false,
                initialized: INITIALIZED,
                ready: READY,
            },
            Case {
                name: "unready_containers_are_listed_in_spec_order_go_style",
                spec: pod(vec![], vec![container("a"), container("b"), container("c")]),
                status: status(
                    "Running",
                    vec![],
                    vec![
                        running("a", true, false),
                        running("b", true, true),
                        running("c", false, false),
                    ],
                ),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [a c]"),
            },
            Case {
                name: "a_container_without_a_status_is_unknown_before_unready",
                spec: two(),
                status: status("Running", vec![], vec![running("a", true, false)]),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready(
                    "containers with unknown status: [b], containers with unready status: [a]",
                ),
            },
            Case {
                name: "no_container_statuses_at_all_are_unknown",
                spec: init(),
                status: PodStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                },
                finished: false,
                initialized: (
                    "Initialized",
                    "False",
                    Some("UnknownContainerStatuses"),
                    None,
                ),
                ready: ("False", Some("UnknownContainerStatuses"), None),
            },
            Case {
                name: "a_running_init_container_is_incomplete",
                spec: init(),
                status: status(
                    "Pending",
                    vec![running("init1", true, false)],
                    vec![waiting("a")],
                ),
                finished: false,
                initialized: (
                    "Initialized",
                    "False",
                    Some("ContainersNotInitialized"),
                    Some("containers with incomplete status: [init1]"),
                ),
                ready: not_ready("containers with unready status: [a]"),
            },
            Case {
                name: "an_init_container_that_exited_zero_is_initialized",
                spec: init(),
                status: status("Pending", vec![terminated("init1", 0)], vec![waiting("a")]),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [a]"),
            },
            Case {
                name: "an_init_container_that_failed_leaves_a_failed_pod_uninitialized",
                spec: init(),
                status: status("Failed", vec![terminated("init1", 1)], vec![waiting("a")]),
                finished: true,
                initialized: (
                    "Initialized",
                    "False",
                    Some("ContainersNotInitialized"),
                    Some("containers with incomplete status: [init1]"),
                ),
                ready: ("False", Some("PodFailed"), None),
            },
            Case {
                name: "a_waiting_sidecar_is_incomplete",
                spec: with_sidecar(),
                status: status("Pending", vec![waiting("side")], vec![waiting("a")]),
                finished: false,
                initialized: (
                    "Initialized",
                    "False",
                    Some("ContainersNotInitialized"),
                    Some("containers with incomplete status: [side]"),
                ),
                ready: not_ready("containers with unready status: [side a]"),
            },
            Case {
                name: "a_started_sidecar_initializes_the_pod_before_it_is_ready",
                spec: with_sidecar(),
                status: status(
                    "Pending",
                    vec![running("side", true, false)],
                    vec![waiting("a")],
                ),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [side a]"),
            },
            Case {
                name: "an_unready_sidecar_keeps_the_pod_unready",
                spec: with_sidecar(),
                status: status(
                    "Running",
                    vec![running("side", true, false)],
                    vec![running("a", true, true)],
                ),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [side]"),
            },
            Case {
                name: "ready_sidecar_and_app_make_the_pod_ready",
                spec: with_sidecar(),
                status: status(
                    "Running",
                    vec![running("side", true, true)],
                    vec![running("a", true, true)],
                ),
                finished: false,
                initialized: INITIALIZED,
                ready: READY,
            },
            Case {
                name: "a_restarting_sidecar_does_not_uninitialize_a_pod_whose_app_runs",
                spec: with_sidecar(),
                status: status(
                    "Running",
                    vec![waiting("side")],
                    vec![running("a", true, true)],
                ),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [side]"),
            },
            Case {
                name: "a_succeeded_pod_is_completed",
                spec: init(),
                status: status(
                    "Succeeded",
                    vec![terminated("init1", 0)],
                    vec![terminated("a", 0)],
                ),
                finished: true,
                initialized: ("Initialized", "True", Some("PodCompleted"), None),
                ready: ("False", Some("PodCompleted"), None),
            },
            Case {
                name: "a_failed_pod_whose_app_ran_is_initialized_and_failed",
                spec: two(),
                status: status(
                    "Failed",
                    vec![],
                    vec![terminated("a", 0), terminated("b", 1)],
                ),
                finished: true,
                initialized: INITIALIZED,
                ready: ("False", Some("PodFailed"), None),
            },
            Case {
                name: "ended_containers_of_an_unfinished_pod_are_unready_not_terminal",
                spec: two(),
                status: status(
                    "Running",
                    vec![],
                    vec![terminated("a", 0), running("b", true, true)],
                ),
                finished: false,
                initialized: INITIALIZED,
                ready: not_ready("containers with unready status: [a]"),
            },
        ];
        for case in cases {
            let conditions = pod_conditions(&case.spec, &case.status, case.finished, &[], at(100));
            assert_eq!(
                summary(&conditions),
                expected(case.initialized, case.ready),
                "{}",
                case.name
            );
            assert!(
                conditions
                    .iter()
                    .all(|c| c.last_transition_time == Some(at(100))),
                "{}: with no previous conditions, every one is new",
                case.name
            );
        }
    }

    #[test]
    fn last_transition_time_moves_only_when_the_status_changes() {
        let spec = pod(vec![], vec![container("a"), container("b")]);
        let pending = status("Pending", vec![], vec![waiting("a"), waiting("b")]);
        let first = pod_conditions(&spec, &pending, false, &[], at(1));
        // `b` becomes ready: ContainersReady stays False with another message.
        let partly = status(
            "Running",
            vec![],
            vec![running("a", true, false), running("b", true, true)],
        );
        let second = pod_conditions(&spec, &partly, false, &first, at(2));
        // Both ready: ContainersReady and Ready turn True.
        let all = status(
            "Running",
            vec![],
            vec![running("a", true, true), running("b", true, true)],
        );
        let third = pod_conditions(&spec, &all, false, &second, at(3));
        let times = |conditions: &[PodCondition]| {
            conditions
                .iter()
                .map(|c| (c.type_.clone(), c.last_transition_time.clone().unwrap()))
                .collect::<Vec<_>>()
        };
        let table: [(&str, &[PodCondition], [Time; 5]); 3] = [
            (
                "new_conditions_take_now",
                &first,
                [at(1), at(1), at(1), at(1), at(1)],
            ),
            (
                "a_new_message_alone_keeps_the_time",
                &second,
                [at(1), at(1), at(1), at(1), at(1)],
            ),
            (
                "a_new_status_takes_now",
                &third,
                [at(1), at(1), at(3), at(3), at(1)],
            ),
        ];
        for (name, conditions, expected) in table {
            let kinds = [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            ];
            let expected: Vec<_> = kinds.iter().map(|k| k.to_string()).zip(expected).collect();
            assert_eq!(times(conditions), expected, "{name}");
        }
        assert_eq!(
            second[3].message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    fn memory(request: Option<u64>, limit: Option<u64>) -> ContainerSpec {
        ContainerSpec {
            resources: crate::manifest::Resources {
                memory_request: request,
                memory_limit: limit,
                ..Default::default()
            },
            ..container("c")
        }
    }

    /// Limits (and so requests, once defaulted) of CPU and memory.
    fn limited(millicores: u64, bytes: u64) -> crate::manifest::Resources {
        crate::manifest::Resources {
            cpu_limit: Some(millicores),
            cpu_request: Some(millicores),
            memory_limit: Some(bytes),
            memory_request: Some(bytes),
        }
    }

    #[test]
    fn qos_class_of_wasmlet_pods() {
        let mi = 1 << 20;
        let cases = [
            (
                "no_resources_is_best_effort",
                pod(vec![], vec![container("a")]),
                "BestEffort",
            ),
            (
                "a_memory_limit_alone_is_burstable_without_cpu",
                pod(vec![], vec![memory(None, Some(64 * mi))]),
                "Burstable",
            ),
            (
                "a_memory_request_alone_is_burstable",
                pod(vec![], vec![memory(Some(64 * mi), None)]),
                "Burstable",
            ),
            (
                "equal_memory_request_and_limit_is_burstable_without_cpu",
                pod(vec![], vec![memory(Some(64 * mi), Some(64 * mi))]),
                "Burstable",
            ),
            (
                "an_init_container_with_memory_makes_the_pod_burstable",
                pod(vec![memory(None, Some(mi))], vec![container("a")]),
                "Burstable",
            ),
            (
                "a_zero_quantity_counts_as_none",
                pod(vec![], vec![memory(Some(0), Some(0))]),
                "BestEffort",
            ),
            (
                "cpu_and_memory_limits_on_every_container_are_guaranteed",
                pod(
                    vec![],
                    vec![ContainerSpec {
                        resources: limited(500, 64 * mi),
                        ..container("a")
                    }],
                ),
                "Guaranteed",
            ),
            (
                "pod_level_limits_decide_alone",
                PodSpec {
                    resources: limited(1000, 128 * mi),
                    ..pod(vec![], vec![container("a"), memory(Some(mi), None)])
                },
                "Guaranteed",
            ),
        ];
        for (name, spec, expected) in cases {
            assert_eq!(qos_class(&spec), expected, "{name}");
        }
    }

    #[test]
    fn compute_qos_follows_the_real_rule() {
        let both = |request: u64, limit: u64| Amounts {
            request: Some(request),
            limit: Some(limit),
        };
        let none = Amounts::default();
        let r = |cpu, memory| Resources { cpu, memory };
        let cases: [(&str, Vec<Resources>, &str); 7] = [
            (
                "nothing_anywhere_is_best_effort",
                vec![r(none, none)],
                "BestEffort",
            ),
            (
                "cpu_and_memory_limits_equal_requests_is_guaranteed",
                vec![r(both(1, 1), both(2, 2))],
                "Guaranteed",
            ),
            (
                "every_container_guaranteed_is_guaranteed",
                vec![r(both(1, 1), both(2, 2)), r(both(3, 3), both(4, 4))],
                "Guaranteed",
            ),
            (
                "a_request_below_its_limit_is_burstable",
                vec![r(both(1, 1), both(1, 2))],
                "Burstable",
            ),
            (
                "memory_without_cpu_is_burstable",
                vec![r(none, both(2, 2))],
                "Burstable",
            ),
            (
                "one_best_effort_container_beside_a_guaranteed_one_is_burstable",
                vec![r(both(1, 1), both(2, 2)), r(none, none)],
                "Burstable",
            ),
            (
                "a_cpu_request_without_a_limit_is_burstable",
                vec![r(
                    Amounts {
                        request: Some(1),
                        limit: None,
                    },
                    both(2, 2),
                )],
                "Burstable",
            ),
        ];
        for (name, containers, expected) in cases {
            assert_eq!(compute_qos(containers.into_iter()), expected, "{name}");
        }
    }
}
