//! What the tests share: one host (components compile once), pods from inline YAML, and readers
//! for statuses, events and output.

use std::sync::OnceLock;
use std::time::Duration;

use wasmlet::k8s_openapi::api::core::v1::{ContainerStateTerminated, PodStatus};
use wasmlet::{Event, Host, HostConfig, Pod, PodSpec, PodUpdate};

/// One host for the whole test binary, like one wasmlet process running many pods.
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::new(HostConfig::default()).expect("creating the host"))
}

/// Parses a manifest as if it were a file in `examples/pods/` (so images are
/// `../../target/components/NAME.wasm`).
pub fn spec(yaml: &str) -> PodSpec {
    PodSpec::from_yaml(yaml, &wasmlet_examples::pods_dir(), "<test>")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A one-container pod running `component` (an example name) with extra container YAML.
pub fn single(name: &str, component: &str, grace_seconds: u64, extra: &str) -> PodSpec {
    let extra = extra
        .lines()
        .map(|line| format!("      {line}\n"))
        .collect::<String>();
    spec(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  \
         terminationGracePeriodSeconds: {grace_seconds}\n  containers:\n    - name: app\n      \
         image: ../../target/components/{component}.wasm\n{extra}"
    ))
}

pub async fn start(spec: PodSpec) -> Pod {
    host().start_pod(spec).await.expect("starting the pod")
}

/// Waits for the pod to end (bounded, so a hang fails the test instead of the run).
pub async fn finished(pod: &Pod) -> PodStatus {
    tokio::time::timeout(Duration::from_secs(60), pod.wait())
        .await
        .expect("the pod should end within 60 s")
}

/// Everything the pod reported, after it ended.
pub async fn history(pod: &Pod) -> Vec<PodUpdate> {
    let mut watch = pod.watch();
    let mut updates = Vec::new();
    while let Some(update) = tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .expect("the pod's stream should end")
    {
        updates.push(update);
    }
    updates
}

/// Waits (at most 30 s) until the pod has reported an update that `matches` (its history
/// included), and returns it.
pub async fn wait_for_update(pod: &Pod, matches: impl Fn(&PodUpdate) -> bool) -> PodUpdate {
    let mut watch = pod.watch();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = watch.next().await {
            if matches(&update) {
                return update;
            }
        }
        panic!("the pod ended without the update awaited");
    })
    .await
    .expect("the update awaited should come within 30 s")
}

/// Waits until the pod has printed a line containing `text`.
pub async fn wait_for_line(pod: &Pod, text: &str) {
    wait_for_update(
        pod,
        |update| matches!(update, PodUpdate::Log(line) if line.line.contains(text)),
    )
    .await;
}

/// Waits until the pod has reported an event with `reason`, and returns it.
pub async fn wait_for_event(pod: &Pod, reason: &str) -> Event {
    match wait_for_update(
        pod,
        |update| matches!(update, PodUpdate::Event(event) if event.reason == reason),
    )
    .await
    {
        PodUpdate::Event(event) => event,
        PodUpdate::Log(_) => unreachable!("only an event matches"),
    }
}

/// The output lines of the pod, as `[container] line` / `[container:preStop] line`.
pub fn lines(history: &[PodUpdate]) -> Vec<String> {
    history
        .iter()
        .filter_map(|update| match update {
            PodUpdate::Log(line) => Some(format!("{} {}", line.prefix(), line.line)),
            PodUpdate::Event(_) => None,
        })
        .collect()
}

/// The events, in order.
pub fn events(history: &[PodUpdate]) -> Vec<Event> {
    history
        .iter()
        .filter_map(|update| match update {
            PodUpdate::Event(event) => Some(event.clone()),
            PodUpdate::Log(_) => None,
        })
        .collect()
}

pub fn reasons(history: &[PodUpdate]) -> Vec<String> {
    events(history).into_iter().map(|e| e.reason).collect()
}

/// The position of the first item of `items` containing `needle`.
pub fn position(items: &[String], needle: &str) -> usize {
    items
        .iter()
        .position(|item| item.contains(needle))
        .unwrap_or_else(|| panic!("no line contains {needle:?} in {items:#?}"))
}

pub fn terminated(status: &PodStatus, container: usize) -> ContainerStateTerminated {
    status.container_statuses.as_ref().unwrap()[container]
        .state
        .as_ref()
        .and_then(|state| state.terminated.clone())
        .unwrap_or_else(|| panic!("container {container} has not terminated: {status:#?}"))
}

/// Waits until every container is Running, deletes the pod with `grace` (`None`: its own), and
/// returns the final status and how long the stop took.
pub async fn delete_when_running(pod: &Pod, grace: Option<Duration>) -> (PodStatus, Duration) {
    pod.wait_running().await;
    let deleted = std::time::Instant::now();
    pod.delete(grace);
    let status = finished(pod).await;
    (status, deleted.elapsed())
}

/// Asserts `from <= elapsed < until`: generous bounds for wall-clock behaviour (the precise
/// figures are the benchmark's).
pub fn assert_within(elapsed: Duration, from: Duration, until: Duration) {
    assert!(elapsed >= from, "too early: {elapsed:?} < {from:?}");
    assert!(elapsed < until, "too late: {elapsed:?} >= {until:?}");
}

/// Container YAML for a postStart hook that execs the `hello` command component with `args`.
pub fn post_start_exec_hello(args: &[&str]) -> String {
    let command: Vec<String> = std::iter::once("../../target/components/hello.wasm")
        .chain(args.iter().copied())
        .map(|arg| format!("{arg:?}"))
        .collect();
    format!(
        "lifecycle:\n  postStart:\n    exec:\n      command: [{}]",
        command.join(", ")
    )
}

/// Asserts that container `index` was killed by wasmlet (137, `Killed`, signal 9) and that its
/// message says it was killed `location` (for example "in `spinner::main`").
pub fn assert_killed(status: &PodStatus, index: usize, location: &str) {
    let killed = terminated(status, index);
    assert_eq!(
        (killed.exit_code, killed.reason.as_deref(), killed.signal),
        (137, Some("Killed"), Some(9)),
        "{killed:?}"
    );
    let message = killed.message.as_deref().unwrap_or_default();
    assert!(message.contains(location), "{killed:?}");
}

/// A component that instantiates a core module defining `item` `per_group` times in each of
/// `groups` instances of a nested component (one component may list at most 1,000 instances of
/// its own), and exports a `run` that returns `ok`.
pub fn instantiated_times(item: &str, groups: usize, per_group: usize) -> Vec<u8> {
    let core_instances = "(core instance (instantiate $item))\n".repeat(per_group);
    let group_instances = "(instance (instantiate $group))\n".repeat(groups);
    wat::parse_str(format!(
        r#"(component
            (component $group
              (core module $item {item})
              {core_instances})
            {group_instances}
            (core module $m (func (export "run") (result i32) (i32.const 0)))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $run (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $run)))"#
    ))
    .unwrap()
}
