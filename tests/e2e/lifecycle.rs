//! The lifecycle of one container, through the library: hooks, terminate, grace, kill, and how
//! each example ends.

use std::time::{Duration, Instant};

use wasmlet::EventType;

use crate::support::*;

#[tokio::test]
async fn cooperative_runs_its_hooks_in_order_and_completes_on_terminate() {
    let pod = start(single("cooperative", "cooperative", 5, "")).await;
    let running = pod.wait_running().await;
    assert_eq!(running.phase.as_deref(), Some("Running"));
    pod.delete(None);
    let status = finished(&pod).await;
    let history = history(&pod).await;
    let lines = lines(&history);

    let done = terminated(&status, 0);
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    assert!(done.started_at.is_some() && done.finished_at.is_some());

    // postStart ran in its own instance; preStop before terminate; terminate carried the grace.
    let post_start = position(&lines, "[app:postStart] postStart: done");
    let pre_stop = position(&lines, "[app:preStop] preStop: draining");
    let terminate = position(
        &lines,
        "[app] run: terminate received (TerminationReason::PodDeleted)",
    );
    assert!(post_start < pre_stop && pre_stop < terminate, "{lines:#?}");
    assert!(
        lines[terminate].contains("of 5000 ms grace left"),
        "{lines:#?}"
    );
    // Hook instances share the container's /tmp.
    position(&lines, "[app] run: /tmp/postStart_done is there");

    assert_eq!(
        reasons(&history),
        [
            "Scheduled",
            "Pulled",
            "Created",
            "Started",
            "Killing",
            "Completed"
        ]
    );
}

#[tokio::test]
async fn container_is_waiting_until_post_start_returns() {
    let pod = start(single(
        "slow-warm-up",
        "cooperative",
        5,
        "env:\n  - name: POST_START_MS\n    value: \"1000\"",
    ))
    .await;
    // Both have begun: run, and postStart, which now warms up for a second.
    wait_for_line(&pod, "run: started").await;
    wait_for_line(&pod, "postStart: warming up").await;
    let status = pod.status();
    let container = &status.container_statuses.as_ref().unwrap()[0];
    let waiting = container.state.as_ref().unwrap().waiting.as_ref();
    assert_eq!(
        waiting.and_then(|w| w.reason.as_deref()),
        Some("ContainerCreating"),
        "{status:#?}"
    );
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(!container.ready);

    let status = pod.wait_running().await;
    let container = &status.container_statuses.as_ref().unwrap()[0];
    assert!(container.state.as_ref().unwrap().running.is_some());
    assert!(container.ready && container.started == Some(true));
    pod.delete(None);
    assert_eq!(
        terminated(&finished(&pod).await, 0).reason.as_deref(),
        Some("Completed")
    );
}

#[tokio::test]
async fn stubborn_guest_blocked_in_a_host_call_is_killed_at_the_deadline() {
    let pod = start(single("stubborn", "stubborn", 1, "")).await;
    let (status, elapsed) = delete_when_running(&pod, None).await;

    assert_killed(&status, 0, "while blocked in a host call");
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    // Generous bounds: the precise overshoot is measured by the benchmark.
    assert_within(elapsed, Duration::from_secs(1), Duration::from_millis(1500));
}

#[tokio::test]
async fn spinning_guest_is_killed_at_the_deadline_and_the_status_names_its_function() {
    let pod = start(single("spinner", "spinner", 1, "")).await;
    let (status, elapsed) = delete_when_running(&pod, None).await;

    assert_killed(&status, 0, "in `spinner::main`");
    assert_within(elapsed, Duration::from_secs(1), Duration::from_millis(1500));
}

#[tokio::test]
async fn pre_stop_outlasting_the_grace_period_is_killed_and_run_still_gets_terminate() {
    let pod = start(single("slow-prestop", "slow-prestop", 1, "")).await;
    let (status, elapsed) = delete_when_running(&pod, None).await;
    let history = history(&pod).await;
    let lines = lines(&history);

    // preStop was killed at the 1 s deadline; run got terminate with the 2 s minimum and exited.
    let done = terminated(&status, 0);
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed"))
    );
    let failed = events(&history)
        .into_iter()
        .find(|e| e.reason == "FailedPreStopHook")
        .expect("a FailedPreStopHook event");
    assert_eq!(failed.kind, EventType::Warning);
    assert!(
        failed
            .message
            .contains("killed when the grace period ran out"),
        "{failed:?}"
    );
    // The hook's output is shown with its event.
    assert!(
        failed.message.contains("flushing a very large cache"),
        "{failed:?}"
    );
    let terminate = &lines[position(&lines, "[app] run: terminate received")];
    let left: u64 = terminate
        .split(", ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no grace in {terminate:?}"));
    assert!((1800..=2000).contains(&left), "{terminate}");
    assert_within(elapsed, Duration::from_secs(1), Duration::from_secs(3));
}

#[tokio::test]
async fn failing_post_start_stops_the_container_with_post_start_hook_error() {
    let pod = start(single("failing-poststart", "failing-poststart", 5, "")).await;
    let status = finished(&pod).await;
    let history = history(&pod).await;
    let lines = lines(&history);

    let done = terminated(&status, 0);
    assert_eq!(done.reason.as_deref(), Some("PostStartHookError"));
    assert!(
        done.message
            .as_deref()
            .unwrap()
            .contains("/etc/app.toml not found")
    );
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    // The container never became Running, and the stop ran preStop, then terminate.
    assert_eq!(
        reasons(&history),
        [
            "Scheduled",
            "Pulled",
            "Created",
            "Started",
            "FailedPostStartHook",
            "Killing",
            "PostStartHookError"
        ]
    );
    let failed = events(&history)
        .into_iter()
        .find(|e| e.reason == "FailedPostStartHook")
        .unwrap();
    assert!(
        failed
            .message
            .contains("postStart: checking the configuration"),
        "{failed:?}"
    );
    let pre_stop = position(&lines, "[app:preStop] preStop: nothing to drain");
    let terminate = position(
        &lines,
        "[app] run: terminate received (TerminationReason::PostStartHookFailed",
    );
    assert!(pre_stop < terminate);
}

#[tokio::test]
async fn a_container_that_exits_on_its_own_skips_its_pre_stop() {
    let pod = start(single(
        "exits-early",
        "cooperative",
        5,
        "env:\n  - name: WORK_MS\n    value: \"100\"\nlifecycle:\n  preStop:\n    sleep:\n      seconds: 3",
    ))
    .await;
    let status = finished(&pod).await;
    let history = history(&pod).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    assert!(!reasons(&history).contains(&"Killing".to_string()));
    // A delete after the end changes nothing.
    pod.delete(None);
    assert_eq!(
        terminated(&pod.status(), 0).reason.as_deref(),
        Some("Completed")
    );
}

#[tokio::test]
async fn pre_stop_sleep_runs_inside_the_grace_budget_before_terminate() {
    let pod = start(single(
        "prestop-sleep",
        "cooperative",
        5,
        "lifecycle:\n  preStop:\n    sleep:\n      seconds: 1",
    ))
    .await;
    let (status, elapsed) = delete_when_running(&pod, None).await;
    let lines = lines(&history(&pod).await);
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    // The manifest's preStop replaces the component's own.
    assert!(
        !lines.iter().any(|l| l.contains("preStop: draining")),
        "{lines:#?}"
    );
    let terminate = &lines[position(&lines, "run: terminate received")];
    assert!(terminate.contains("of 5000 ms grace left"), "{terminate}");
    let left: u64 = terminate
        .split(", ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3800..=4000).contains(&left),
        "the sleep should use ~1 s of the grace: {terminate}"
    );
    assert_within(elapsed, Duration::from_secs(1), Duration::from_secs(2));
}

#[tokio::test]
async fn exec_hook_runs_a_command_component_with_the_container_env() {
    let pod = start(single(
        "exec-hook",
        "cooperative",
        5,
        &format!(
            "env:\n  - name: GREETING\n    value: Howdy\n{}",
            post_start_exec_hello(&["from-exec"])
        ),
    ))
    .await;
    pod.wait_running().await;
    pod.delete(None);
    finished(&pod).await;
    let lines = lines(&history(&pod).await);
    position(
        &lines,
        "[app:postStart] Howdy from a plain wasi:cli command!",
    );
    position(&lines, "[app:postStart] arg: from-exec");
    // The component's own post-start was replaced by the manifest's exec.
    assert!(
        !lines.iter().any(|l| l.contains("postStart: warming up")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn failing_exec_post_start_reports_the_exit_code_and_output() {
    let pod = start(single(
        "exec-fails",
        "cooperative",
        2,
        &post_start_exec_hello(&["--exit", "3"]),
    ))
    .await;
    let status = finished(&pod).await;
    let history = history(&pod).await;
    assert_eq!(
        terminated(&status, 0).reason.as_deref(),
        Some("PostStartHookError")
    );
    let failed = events(&history)
        .into_iter()
        .find(|e| e.reason == "FailedPostStartHook")
        .unwrap();
    assert!(failed.message.contains("exited with code"), "{failed:?}");
    assert!(
        failed
            .message
            .contains("Hello from a plain wasi:cli command!"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn plain_command_completes_with_its_args_and_env() {
    let pod = start(spec(include_str!("../../examples/pods/hello.yaml"))).await;
    let status = finished(&pod).await;
    let lines = lines(&history(&pod).await);
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    assert_eq!(
        lines,
        [
            "[hello] Hi from a plain wasi:cli command!",
            "[hello] arg: from",
            "[hello] arg: the",
            "[hello] arg: manifest"
        ]
    );
}

#[tokio::test]
async fn plain_command_cannot_see_terminate_so_it_is_killed() {
    let pod = start(single(
        "plain-sleeper",
        "hello",
        1,
        "args: [\"--sleep\", \"60\"]",
    ))
    .await;
    let (status, _) = delete_when_running(&pod, None).await;
    assert_killed(&status, 0, "while blocked in a host call");
}

#[tokio::test]
async fn non_zero_exit_is_an_error() {
    let pod = start(single("exit-code", "hello", 1, "args: [\"--exit\", \"3\"]")).await;
    let done = terminated(&finished(&pod).await, 0);
    assert_eq!(done.reason.as_deref(), Some("Error"));
    assert_ne!(done.exit_code, 0);
}

#[tokio::test]
async fn memory_past_the_limit_is_oom_killed() {
    let pod = start(spec(include_str!("../../examples/pods/memory-hog.yaml"))).await;
    let done = terminated(&finished(&pod).await, 0);
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    assert!(
        done.message.as_deref().unwrap().contains("33554432 bytes"),
        "{done:?}"
    );
}

#[tokio::test]
async fn kill_skips_pre_stop_and_ends_at_once() {
    let pod = start(single("killed", "slow-prestop", 30, "")).await;
    pod.wait_running().await;
    let killed_at = Instant::now();
    pod.kill();
    let status = finished(&pod).await;
    assert!(
        killed_at.elapsed() < Duration::from_millis(500),
        "{:?}",
        killed_at.elapsed()
    );
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Killed"));
    let lines = lines(&history(&pod).await);
    assert!(!lines.iter().any(|l| l.contains("preStop")), "{lines:#?}");
}

#[tokio::test]
async fn a_second_delete_with_a_shorter_grace_period_shortens_the_stop() {
    let pod = start(single("shortened", "stubborn", 30, "")).await;
    pod.wait_running().await;
    let first = Instant::now();
    pod.delete(None);
    // Not a wait for anything: the second delete comes a while after the first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    pod.delete(Some(Duration::from_millis(300)));
    // A longer one afterwards never lengthens it.
    pod.delete(Some(Duration::from_secs(60)));
    let status = finished(&pod).await;
    let elapsed = first.elapsed();
    let killed = terminated(&status, 0);
    assert_eq!(killed.reason.as_deref(), Some("Killed"));
    // As the apiserver does, the shorter grace counts from the first delete: 300 ms, not 400.
    let message = killed.message.unwrap_or_default();
    assert!(
        message.contains("a grace period of 300ms while"),
        "{message}"
    );
    assert_within(
        elapsed,
        Duration::from_millis(300),
        Duration::from_millis(800),
    );
}

#[tokio::test]
async fn containers_of_a_pod_stop_in_parallel_within_the_shared_grace_period() {
    let pod = start(spec(include_str!(
        "../../examples/pods/lifecycle-demo.yaml"
    )))
    .await;
    let (status, elapsed) = delete_when_running(&pod, Some(Duration::from_secs(2))).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    assert_eq!(terminated(&status, 1).reason.as_deref(), Some("Killed"));
    assert_within(elapsed, Duration::from_secs(2), Duration::from_millis(2500));
}

#[tokio::test]
async fn a_kill_during_the_minimum_after_pre_stop_ends_the_container_at_once() {
    // preStop sleeps through the 1 s grace; terminate then gets 2 s more, which the stubborn
    // guest ignores. A kill in that window must not wait for them.
    let pod = start(single(
        "kill-in-minimum",
        "stubborn",
        1,
        "lifecycle:\n  preStop:\n    sleep:\n      seconds: 1",
    ))
    .await;
    pod.wait_running().await;
    pod.delete(None);
    // The grace period has run out on preStop: terminate's minimum of 2 s has begun.
    let cut = wait_for_event(&pod, "FailedPreStopHook").await;
    assert!(
        cut.message.contains("killed when the grace period ran out"),
        "{cut:?}"
    );
    assert!(
        pod.status().container_statuses.unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .running
            .is_some()
    );
    let killed = Instant::now();
    pod.kill();
    let status = finished(&pod).await;
    let elapsed = killed.elapsed();
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Killed"));
    assert!(
        elapsed < Duration::from_millis(500),
        "the kill waited: {elapsed:?}"
    );
}

#[tokio::test]
async fn wait_running_does_not_wait_for_a_container_that_already_ended() {
    let pod = start(spec(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job-and-server}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
    - name: job
      image: ../../target/components/hello.wasm
    - name: server
      image: ../../target/components/cooperative.wasm
      env: [{name: POST_START_MS, value: "300"}]
"#,
    ))
    .await;
    let status = tokio::time::timeout(Duration::from_secs(10), pod.wait_running())
        .await
        .expect("wait_running should return once the server is Running");
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    pod.delete(None);
    assert_eq!(
        terminated(&finished(&pod).await, 1).reason.as_deref(),
        Some("Completed")
    );
}

#[tokio::test]
async fn readiness_reported_by_the_guest_is_published_in_the_status() {
    let pod = start(single(
        "warming",
        "cooperative",
        2,
        "env: [{name: NOT_READY_MS, value: \"400\"}]",
    ))
    .await;
    pod.wait_running().await;
    // postStart (its own instance) may return before run reports not-ready, so the container
    // can be ready by default for a moment; what matters is that each report is published.
    tokio::time::timeout(
        Duration::from_secs(10),
        pod.wait_until(|status| !status.container_statuses.as_ref().unwrap()[0].ready),
    )
    .await
    .expect("the not-ready report should be published");
    let ready = tokio::time::timeout(
        Duration::from_secs(10),
        pod.wait_until(|status| status.container_statuses.as_ref().unwrap()[0].ready),
    )
    .await
    .expect("the container should report ready");
    assert!(ready.container_statuses.unwrap()[0].ready);
    pod.delete(None);
    let status = finished(&pod).await;
    assert!(!status.container_statuses.unwrap()[0].ready);
}

#[tokio::test]
async fn a_post_start_killed_by_the_stop_is_not_a_hook_failure() {
    let pod = start(single(
        "hung-post-start",
        "stubborn",
        1,
        &post_start_exec_hello(&["--sleep", "60"]),
    ))
    .await;
    // The hook has begun its minute of sleep.
    wait_for_line(&pod, "Hello from a plain wasi:cli command!").await;
    let waiting = pod.status();
    assert_eq!(
        waiting.phase.as_deref(),
        Some("Pending"),
        "a hung postStart holds the pod"
    );
    pod.delete(None);
    let status = finished(&pod).await;
    let history = history(&pod).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Killed"));
    assert!(!reasons(&history).contains(&"FailedPostStartHook".to_string()));
}

#[test]
fn sdk_components_declare_the_hooks_they_implement() {
    use wasmlet_examples::components::*;
    let load = |path: &str| host().load_component(path).unwrap();
    let cooperative = load(COOPERATIVE);
    assert!(cooperative.post_start && cooperative.pre_stop);
    let slow = load(SLOW_PRESTOP);
    assert!(!slow.post_start && slow.pre_stop);
    // No hooks listed in export!: wasmlet starts no hook instance for it.
    let stubborn = load(STUBBORN);
    assert!(!stubborn.post_start && !stubborn.pre_stop);
    // A plain command has no hooks interface at all.
    let hello = load(HELLO);
    assert!(!hello.post_start && !hello.pre_stop && hello.run);
}

#[tokio::test]
async fn init_containers_then_app_then_sidecar_stop_in_real_time() {
    let pod = start(spec(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  initContainers:
    - name: proxy
      image: ../../target/components/cooperative.wasm
      restartPolicy: Always
    - name: setup
      image: ../../target/components/hello.wasm
      args: ["setup"]
  containers:
    - name: app
      image: ../../target/components/hello.wasm
      args: ["app", "--sleep", "0.2"]
"#,
    ))
    .await;
    let status = finished(&pod).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{status:#?}");
    let history = history(&pod).await;
    let events: Vec<String> = events(&history)
        .into_iter()
        .map(|e| format!("{} {}", e.reason, e.container.unwrap_or_default()))
        .collect();
    let at = |what: &str| position(&events, what);
    // The sidecar starts first, the init container runs to completion, then the app; the
    // sidecar is stopped only after the app completed.
    assert!(at("Started proxy") < at("Started setup"), "{events:?}");
    assert!(at("Completed setup") < at("Started app"), "{events:?}");
    assert!(at("Completed app") < at("Killing proxy"), "{events:?}");
    let lines = lines(&history);
    position(
        &lines,
        "terminate received (TerminationReason::PodCompleted)",
    );
}

#[tokio::test]
async fn an_empty_dir_is_shared_by_the_pods_containers_and_removed_with_the_pod() {
    let leftovers = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("wasmlet-scratch-pod-scratch-")
            })
            .count()
    };
    let pod = start(spec(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: scratch-pod}
spec:
  restartPolicy: Never
  volumes:
    - {name: scratch, emptyDir: {}}
  initContainers:
    - name: first
      image: ../../target/components/hello.wasm
      args: ["--write", "/scratch/note", "left by first"]
      volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
    - name: second
      image: ../../target/components/hello.wasm
      args: ["--sleep", "1", "--read", "/scratch/note"]
      volumeMounts: [{name: scratch, mountPath: /scratch}]
"#,
    ))
    .await;
    assert_eq!(leftovers(), 1, "the emptyDir exists while the pod runs");
    let status = finished(&pod).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{status:#?}");
    let lines = lines(&history(&pod).await);
    position(&lines, "[second] read /scratch/note: left by first");
    assert_eq!(leftovers(), 0, "the emptyDir goes with the pod");
}

#[tokio::test]
async fn an_instance_pool_never_refuses_what_does_not_fit_it() {
    // Two slots of 64 MiB: whatever is beyond goes on demand.
    let pooled = wasmlet::Host::new(wasmlet::HostConfig {
        instance_pool: Some(wasmlet::InstancePool {
            instances: 2,
            max_memory: 64 << 20,
        }),
        ..wasmlet::HostConfig::default()
    })
    .unwrap();
    // Four guests alive at once, each in a host sleep: two in the slots, two beyond.
    let mut sleepers = Vec::new();
    for index in 0..4 {
        let pod = pooled
            .start_pod(single(
                &format!("sleeper-{index}"),
                "stubborn",
                1,
                "resources: {limits: {memory: 32Mi}}",
            ))
            .await
            .unwrap();
        wait_for_line(&pod, "deaf to terminate").await;
        sleepers.push(pod);
    }
    // A memory limit above a slot's, and none at all: on demand too.
    for (name, extra) in [
        ("above-a-slot", "resources: {limits: {memory: 128Mi}}"),
        ("no-limit", ""),
    ] {
        let pod = pooled
            .start_pod(single(name, "hello", 1, extra))
            .await
            .unwrap();
        let status = finished(&pod).await;
        assert_eq!(terminated(&status, 0).exit_code, 0, "{name}");
    }
    // The slots come back when their instances end.
    for pod in &sleepers {
        pod.kill();
        pod.wait().await;
    }
    let pod = pooled
        .start_pod(single(
            "after",
            "hello",
            1,
            "resources: {limits: {memory: 32Mi}}",
        ))
        .await
        .unwrap();
    let status = finished(&pod).await;
    assert_eq!(terminated(&status, 0).exit_code, 0);
}

#[tokio::test]
async fn host_shutdown_stops_every_pod_gracefully_and_a_second_call_kills() {
    // A host of its own: shutting it down must not touch the other tests' pods.
    let host = wasmlet::Host::new(wasmlet::HostConfig::default()).expect("creating the host");
    let cooperative = host
        .start_pod(single("shutdown-cooperative", "cooperative", 30, ""))
        .await
        .expect("starting the cooperative pod");
    let stubborn = host
        .start_pod(single("shutdown-stubborn", "stubborn", 30, ""))
        .await
        .expect("starting the stubborn pod");
    cooperative.wait_running().await;
    wait_for_line(&cooperative, "run: started").await;
    wait_for_line(&stubborn, "deaf to terminate").await;
    assert_eq!(host.pods().len(), 2);

    let began = Instant::now();
    let first = host.shutdown(None);
    // Both pods got the stop at once, each with its own 30 s grace period: the cooperative one
    // ends on terminate, told why; the stubborn one ignores it and keeps running.
    let status = finished(&cooperative).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    let lines = lines(&history(&cooperative).await);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("terminate received (TerminationReason::HostShutdown")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("preStop: draining")),
        "{lines:#?}"
    );
    wait_for_event(&stubborn, "Killing").await;
    assert_eq!(stubborn.status().phase.as_deref(), Some("Running"));
    assert_eq!(host.pods().len(), 1, "only the stubborn pod is left");

    // No new pods while shutting down.
    let refused = host
        .start_pod(single("shutdown-late", "cooperative", 30, ""))
        .await
        .expect_err("a host that is shutting down starts no pods");
    assert!(refused.to_string().contains("shutting down"), "{refused:#}");

    // The second call kills at once, long before the 30 s grace period ends.
    let second = host.shutdown(None);
    tokio::time::timeout(Duration::from_secs(10), async {
        second.await;
        first.await;
    })
    .await
    .expect("the second shutdown should kill at once");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    assert_killed(&stubborn.status(), 0, "while blocked in a host call");
    assert!(host.pods().is_empty());
}

/// A host told to start even small components on the baseline compiler's code: the guest runs
/// and is preempted and killed on that code as on optimised code, and once its optimised build
/// is in the compile cache, the next host loads that instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_on_baseline_code_runs_is_killed_and_leaves_the_optimised_build_cached() {
    let cache = tempfile::tempdir().unwrap();
    let config = || wasmlet::HostConfig {
        compile_cache: Some(cache.path().to_path_buf()),
        quick_first_start: Some(1),
        ..wasmlet::HostConfig::default()
    };
    let pulled = |pod: &wasmlet::Pod| {
        pod.events()
            .into_iter()
            .find(|event| event.reason == "Pulled")
            .expect("a Pulled event")
            .message
    };
    let first = wasmlet::Host::new(config()).unwrap();
    let pod = first
        .start_pod(single("baseline-spinner", "spinner", 0, ""))
        .await
        .unwrap();
    assert!(
        pulled(&pod).contains("by the baseline compiler"),
        "{}",
        pulled(&pod)
    );
    pod.wait_running().await;
    pod.delete(None);
    let status = finished(&pod).await;
    // Wherever the kill found it: in its time slice (the epoch trap) or waiting for the next.
    assert_killed(&status, 0, "");
    first.finish_background_compiles().await;
    assert_eq!(first.background_compiles(), 0);

    let second = wasmlet::Host::new(config()).unwrap();
    let pod = second
        .start_pod(single("optimised-hello", "hello", 0, ""))
        .await
        .unwrap();
    // hello was never optimised: baseline again; spinner was: optimised from the cache.
    assert!(pulled(&pod).contains("by the baseline compiler"));
    finished(&pod).await;
    let pod = second
        .start_pod(single("optimised-spinner", "spinner", 0, ""))
        .await
        .unwrap();
    assert!(
        !pulled(&pod).contains("baseline"),
        "the optimised build should come from the cache: {}",
        pulled(&pod)
    );
    pod.kill();
    finished(&pod).await;
}

#[tokio::test]
async fn a_component_file_replaced_between_pods_is_loaded_anew() {
    use wasmlet_examples::components::{COOPERATIVE, HELLO};
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("app.wasm");
    let run = |spec_name: &str| {
        wasmlet::PodSpec::component(&image)
            .name(spec_name)
            .grace_period(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    std::fs::copy(HELLO, &image).unwrap();
    let first = start(run("first")).await;
    finished(&first).await;
    position(
        &lines(&history(&first).await),
        "Hello from a plain wasi:cli command!",
    );
    // The same path, another component: the next pod must not get the one loaded before.
    std::fs::copy(COOPERATIVE, &image).unwrap();
    let second = start(run("second")).await;
    wait_for_line(&second, "run: started, working until terminated").await;
    second.delete(None);
    finished(&second).await;
}
