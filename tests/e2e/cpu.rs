//! CPU limits and requests in real time: a limited guest never uses more than its quota, a pod's
//! limit holds all its containers, and the manifest's resources are checked as the API server
//! checks them. (How exactly the shares come out is the lifecycle benchmark's; the scenarios in
//! `examples/scenarios/cpu/` show both on virtual time.)

use std::time::{Duration, Instant};

use wasmlet::PodSpec;

use crate::support::{spec, start};

/// CPU time of container `name` over `wall` of wall time, after a warm-up of one period.
async fn share(pod: &wasmlet::Pod, name: &str, wall: Duration) -> f64 {
    pod.wait_running().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (began, before) = (Instant::now(), pod.cpu_time(name).expect("measured"));
    tokio::time::sleep(wall).await;
    let used = pod.cpu_time(name).expect("measured") - before;
    used.as_secs_f64() / began.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_caps_a_spinning_guest() {
    let pod = start(
        PodSpec::component(wasmlet_examples::components::SPINNER)
            .name("cpu-capped")
            .container_name("spinner")
            .grace_period(Duration::ZERO)
            .cpu_limit(100)
            .build()
            .unwrap(),
    )
    .await;
    let used = share(&pod, "spinner", Duration::from_secs(1)).await;
    pod.kill();
    pod.wait().await;
    // 10 ms per 100 ms period; a slice that overruns the quota is paid back in the next
    // period, so over ten periods at most one slice (2 ms) more.
    assert!(
        used <= 0.1 + 0.01,
        "a 100m spinner used {used:.3} of a core"
    );
    assert!(used > 0.0, "the spinner never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_limit_holds_all_its_containers_together() {
    let pod = start(spec(
        "apiVersion: v1
kind: Pod
metadata:
  name: cpu-pod-limit
spec:
  terminationGracePeriodSeconds: 0
  resources:
    limits:
      cpu: 100m
  containers:
    - name: one
      image: ../../target/components/spinner.wasm
    - name: two
      image: ../../target/components/spinner.wasm
",
    ))
    .await;
    pod.wait_running().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let total = || pod.cpu_time("one").unwrap() + pod.cpu_time("two").unwrap();
    let (began, before) = (Instant::now(), total());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = (total() - before).as_secs_f64() / began.elapsed().as_secs_f64();
    pod.kill();
    pod.wait().await;
    // Two guests may each overrun the last slice of a period: two slices over ten periods.
    assert!(
        used <= 0.1 + 0.01,
        "two spinners under a 100m pod used {used:.3} of a core"
    );
}

#[test]
fn cpu_resources_are_checked_as_kubernetes_checks_them() {
    let refused = |yaml: &str| {
        PodSpec::from_yaml(yaml, &wasmlet_examples::pods_dir(), "<test>")
            .expect_err("should be refused")
            .to_string()
    };
    let pod = |container_resources: &str, pod_resources: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{pod_resources}  \
             containers:\n    - name: app\n      image: ../../target/components/hello.wasm\n      \
             resources:\n{container_resources}"
        )
    };
    let accepted = PodSpec::from_yaml(
        &pod("        limits:\n          cpu: \"0.5\"\n", ""),
        &wasmlet_examples::pods_dir(),
        "<test>",
    )
    .unwrap();
    let container = &accepted.containers()[0];
    assert_eq!(container.cpu_limit(), Some(500));
    assert_eq!(
        container.cpu_request(),
        Some(500),
        "a request defaults to the limit"
    );

    let above = refused(&pod(
        "        limits:\n          cpu: 250m\n        requests:\n          cpu: 500m\n",
        "",
    ));
    assert!(
        above.contains("spec.containers[0].resources.requests.cpu")
            && above.contains("500m is more than the limit (250m)"),
        "{above}"
    );
    let bad = refused(&pod("        limits:\n          cpu: lots\n", ""));
    assert!(
        bad.contains("spec.containers[0].resources.limits.cpu") && bad.contains("`lots`"),
        "{bad}"
    );
    let outgrown = refused(&pod(
        "        limits:\n          cpu: \"2\"\n",
        "  resources:\n    limits:\n      cpu: \"1\"\n",
    ));
    assert!(
        outgrown.contains("spec.resources.limits.cpu")
            && outgrown.contains("limit of container `app` (2000m)"),
        "{outgrown}"
    );
}
