//! Deterministic mode: virtual time, fuel-sliced guests, seeded randomness, traces that are the
//! same byte for byte on every run, and the scenarios of `wasmlet test`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmlet::all_terminated;
use wasmlet::testing::{
    Condition, RunOptions, Scenario, Simulation, SimulationConfig, Step, TraceItem,
};

use crate::support::single;

fn simulation(config: SimulationConfig) -> Simulation {
    let mut sim = Simulation::new(config).expect("starting a simulation");
    sim.show_paths_relative_to(wasmlet_examples::pods_dir());
    sim
}

fn scenarios_dir() -> PathBuf {
    wasmlet_examples::pods_dir().join("../scenarios")
}

/// Every scenario file under `dir`, sorted.
fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(scenario_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The guest-visible lines of a trace.
fn output(sim: &Simulation) -> Vec<String> {
    sim.entries()
        .into_iter()
        .filter_map(|entry| match entry.what {
            TraceItem::Log(line) => Some(line.line),
            _ => None,
        })
        .collect()
}

#[test]
fn every_scenario_gives_its_golden_trace_on_each_of_100_runs() {
    let files = scenario_files(&scenarios_dir());
    assert!(files.len() >= 12, "scenarios: {files:?}");
    // Two threads, one simulation each at a time: like `wasmlet test`, a simulation owns its
    // thread; spreading the runs also checks that simulations do not disturb each other.
    let halves: Vec<Vec<PathBuf>> = vec![
        files.iter().step_by(2).cloned().collect(),
        files.iter().skip(1).step_by(2).cloned().collect(),
    ];
    let threads: Vec<_> = halves
        .into_iter()
        .map(|files| {
            std::thread::spawn(move || {
                for file in files {
                    let scenario = Scenario::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
                    let golden = std::fs::read_to_string(scenario.golden_file())
                        .unwrap_or_else(|e| panic!("golden trace of {}: {e}", file.display()));
                    // A trace must not depend on where the checkout is.
                    let checkout = scenarios_dir().canonicalize().unwrap();
                    let checkout = checkout.parent().unwrap().parent().unwrap();
                    assert!(
                        !golden.contains(&*checkout.to_string_lossy()),
                        "{} names the checkout's path",
                        file.display()
                    );
                    for run in 1..=100 {
                        let outcome = scenario.run(RunOptions::default()).unwrap();
                        assert!(
                            outcome.passed(),
                            "{} run {run}: {:?}\n{}",
                            file.display(),
                            outcome.failures,
                            outcome.trace
                        );
                        assert!(
                            outcome.trace == golden,
                            "{} run {run} differs from its golden trace:\n{}",
                            file.display(),
                            outcome.trace
                        );
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a scenario thread failed");
    }
}

#[test]
fn a_30_second_grace_period_passes_in_virtual_time() {
    let mut sim = simulation(SimulationConfig::default());
    let pod = sim.start(single("stubborn", "stubborn", 30, "")).unwrap();
    sim.wait_for(&pod, |s| s.phase.as_deref() == Some("Running"), None)
        .unwrap();
    let real = std::time::Instant::now();
    let deleted_at = sim.now();
    sim.delete(&pod, None);
    let status = sim
        .wait_for(&pod, all_terminated, Some(Duration::from_secs(60)))
        .unwrap();
    let killed = sim
        .wait_for_event(&pod, |e| e.reason == "Killed", None)
        .unwrap();
    let container = &status.container_statuses.unwrap()[0];
    let terminated = container
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(terminated.exit_code, wasmlet::EXIT_KILLED);
    // Exactly at the deadline: nothing of the guest was running, so no slice to finish.
    assert_eq!(sim.now() - deleted_at, Duration::from_secs(30));
    assert_eq!(killed.age, sim.now());
    // Generous: virtual seconds are not waited for.
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "{:?}",
        real.elapsed()
    );
}

#[test]
fn guest_clocks_and_sleeps_are_virtual() {
    let config = SimulationConfig::default();
    let origin_ms = config
        .wall_origin
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut sim = simulation(config);
    let pod = sim
        .start(single(
            "clock",
            "hello",
            30,
            "args: [\"--clock\", \"--sleep\", \"45\", \"--clock\"]",
        ))
        .unwrap();
    sim.wait_for(&pod, all_terminated, Some(Duration::from_secs(60)))
        .unwrap();
    let lines: Vec<String> = output(&sim)
        .into_iter()
        .filter(|line| line.starts_with("clock:"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let millis = |line: &str| -> u128 { line.split(' ').nth(1).unwrap().parse().unwrap() };
    // The guest's wall clock starts at the configured origin and moves with virtual time.
    assert!(millis(&lines[0]) - origin_ms < 5, "{lines:?}");
    assert_eq!(millis(&lines[1]) - millis(&lines[0]), 45_000, "{lines:?}");
    assert!(sim.now() >= Duration::from_secs(45) && sim.now() < Duration::from_millis(45_005));
}

#[test]
fn guest_randomness_follows_the_seed() {
    let draw = |seed: u64| {
        let mut sim = simulation(SimulationConfig {
            seed,
            ..SimulationConfig::default()
        });
        let pod = sim
            .start(single(
                "dice",
                "hello",
                30,
                "args: [\"--random\", \"--random\"]",
            ))
            .unwrap();
        sim.wait_for(&pod, all_terminated, Some(Duration::from_secs(1)))
            .unwrap();
        output(&sim)
            .into_iter()
            .filter(|line| line.starts_with("random:"))
            .collect::<Vec<_>>()
    };
    let first = draw(7);
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1], "two draws of one run differ");
    assert_eq!(draw(7), first, "the same seed, the same numbers");
    assert_ne!(draw(8), first, "another seed, other numbers");
}

#[test]
fn a_spinning_guest_dies_at_the_same_fuel_and_instant_every_run() {
    let run = || {
        let mut sim = simulation(SimulationConfig {
            nanos_per_fuel: 50,
            ..SimulationConfig::default()
        });
        let pod = sim.start(single("spin", "spinner", 1, "")).unwrap();
        sim.advance(Duration::from_millis(30));
        sim.delete(&pod, Some(Duration::from_millis(100)));
        sim.wait_for(&pod, all_terminated, Some(Duration::from_secs(5)))
            .unwrap();
        let killed = sim
            .wait_for_event(&pod, |e| e.reason == "Killed", None)
            .unwrap();
        (killed.message, killed.age, sim.trace())
    };
    let (message, age, trace) = run();
    assert!(
        message.contains("CPU-bound") && message.contains("units of fuel"),
        "{message}"
    );
    // Killed at the end of the slice in which the deadline falls: at most one slice late.
    let deadline = Duration::from_millis(130);
    assert!(
        age >= deadline && age <= deadline + Duration::from_millis(3),
        "{age:?}\n{trace}"
    );
    for _ in 0..20 {
        assert_eq!(run(), (message.clone(), age, trace.clone()));
    }
}

#[test]
fn a_wait_that_can_never_end_says_so_instead_of_hanging() {
    // Nothing left to happen: the pod completed, no timer is pending.
    let mut sim = simulation(SimulationConfig::default());
    let pod = sim.start(single("done", "hello", 30, "")).unwrap();
    for deadline in [None, Some(Duration::from_secs(5))] {
        let error = sim
            .wait_for(&pod, |s| s.phase.as_deref() == Some("Running"), deadline)
            .unwrap_err();
        assert!(
            error.to_string().contains("nothing more could happen"),
            "{error}"
        );
    }
    // Something could still happen (the guest sleeps for an hour), just not by the deadline.
    let mut sim = simulation(SimulationConfig::default());
    let pod = sim.start(single("asleep", "stubborn", 30, "")).unwrap();
    let error = sim
        .wait_for_event(
            &pod,
            |e| e.reason == "Killing",
            Some(Duration::from_secs(5)),
        )
        .unwrap_err();
    assert!(error.to_string().contains("not by 5.000000s"), "{error}");
    assert_eq!(sim.now(), Duration::from_secs(5));
}

fn scenario_error(yaml: &str) -> String {
    let file = scenarios_dir().join("inline-test.yaml");
    Scenario::from_yaml(yaml, &file)
        .map(|_| "parsed".to_string())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn malformed_scenarios_name_the_step_and_field() {
    let pod = "pod: ../pods/hello.yaml\n";
    let cases = [
        (
            format!("{pod}steps:\n  - wait: {{ phase: Running }}\n  - expect: {{ container: hello, exitCode: zero }}\n"),
            "steps[1].expect.exitCode: invalid type: string \"zero\", expected i32",
        ),
        (
            format!("{pod}steps:\n  - advance: 5 parsecs\n"),
            "steps[0].advance: `5 parsecs` is not a duration",
        ),
        (
            format!("{pod}steps:\n  - wait: {{ phase: Running }}\n    advance: 1s\n"),
            "steps[0]: a step is exactly one of `wait`, `expect`, `advance`, `delete`, `call` or `note`; this one has wait and advance",
        ),
        (
            format!("{pod}steps:\n  - expect: {{ phase: Runing }}\n"),
            "steps[0].expect.phase: unknown phase `Runing`",
        ),
        (
            format!("{pod}steps:\n  - expect: {{ event: Killing, exitCode: 0 }}\n"),
            "steps[0].expect.exitCode: belongs to a `container` condition",
        ),
        (
            format!("{pod}steps:\n  - wait: {{ phase: Running, by: 3s }}\n"),
            "steps[0].wait.by: belongs to `expect`",
        ),
        (
            format!("{pod}steps:\n  - delete: {{ grace: 3s }}\n"),
            "steps[0].delete.grace: unknown field `grace`, expected `gracePeriod`",
        ),
        (
            format!("{pod}steps:\n  - expect: {{ container: hello }}\n"),
            "steps[0].expect: a `container` condition needs",
        ),
        (format!("{pod}steps: []\n"), "steps: a scenario needs at least one step"),
        (format!("{pod}cpu: {{ nanosPerFuel: 0 }}\nsteps:\n  - advance: 1s\n"), "cpu.nanosPerFuel: must be at least 1"),
        ("pod: ../pods/missing.yaml\nsteps:\n  - advance: 1s\n".to_string(), "pod: invalid pod manifest"),
        (
            "pod:\n  apiVersion: v1\n  kind: Pod\n  metadata: { name: x }\n  spec:\n    containers:\n      - name: app\n        image: a.wasm\n        lifecycle:\n          preStop:\n            tcpSocket: { port: 80 }\nsteps:\n  - advance: 1s\n".to_string(),
            "spec.containers[0].lifecycle.preStop.tcpSocket: deprecated, not supported",
        ),
        ("steps:\n  - advance: 1s\n".to_string(), "missing field `pod`"),
        (
            format!("{pod}steps:\n  - expect: {{ container: nope, state: Running }}\n"),
            "steps[0].expect.container: pod `hello` has no container `nope`; its containers: hello",
        ),
        (
            format!("{pod}steps:\n  - expect: {{ phase: Running, by: 1s, notBefore: 2s }}\n"),
            "steps[0].expect.notBefore: 2.000000s is after `by` (1.000000s)",
        ),
        (format!("{pod}steps:\n  - wait: {{ phase: Running }}\nextra: 1\n"), "unknown field `extra`"),
        (
            format!("{pod}steps:\n  - call: {{ export: run, error: Crashed }}\n"),
            "steps[0].call.error: unknown call error `Crashed`; one of NoSuchContainer, NotRunning, Stopping, Killed, TimedOut, Failed, Exited",
        ),
        (
            format!("{pod}steps:\n  - call: {{ export: run, returns: 'ok', error: Killed }}\n"),
            "steps[0].call.error: give `returns`",
        ),
        (
            format!("{pod}steps:\n  - call: {{ container: nope, export: run }}\n"),
            "steps[0].call.container: pod `hello` has no container `nope`",
        ),
        (
            format!("{pod}steps:\n  - call: {{ export: run, args: [[1]] }}\n"),
            "steps[0].call.args[0]: expected a WAVE value written as a YAML string",
        ),
    ];
    for (yaml, expected) in cases {
        let error = scenario_error(&yaml);
        assert!(
            error.contains("inline-test.yaml"),
            "names the file: {error}"
        );
        assert!(
            error.contains(expected),
            "expected {expected:?} in:\n{error}\nfor:\n{yaml}"
        );
    }
}

#[test]
fn a_scenario_parses_into_its_steps() {
    let scenario = Scenario::from_file(scenarios_dir().join("cooperative.yaml")).unwrap();
    assert_eq!(scenario.name, "cooperative app stops cleanly on delete");
    assert!(matches!(
        &scenario.steps[0],
        Step::Wait { condition: Condition::Phase(phase), .. } if phase == "Running"
    ));
    assert!(matches!(
        scenario.steps[3],
        Step::Delete { grace_period: None }
    ));
    assert_eq!(
        scenario.golden_file(),
        scenarios_dir().join("cooperative.trace")
    );
}

#[test]
fn a_failed_expectation_says_what_was_expected_and_what_happened() {
    let file = scenarios_dir().join("inline-test.yaml");
    let scenario = Scenario::from_yaml(
        "pod: ../pods/stubborn.yaml\nsteps:\n  - wait: { phase: Running }\n  - delete: {}\n  \
         - expect: { container: app, state: Terminated, reason: Completed, within: 10s }\n",
        &file,
    )
    .unwrap();
    let outcome = scenario.run(RunOptions::default()).unwrap();
    assert!(!outcome.passed());
    let failure = &outcome.failures[0];
    assert!(
        failure
            .starts_with("steps[2] (expect container app Terminated reason=Completed within 10s)"),
        "{failure}"
    );
    assert!(failure.contains("reason=Killed"), "{failure}");
}

#[test]
fn expectations_are_judged_by_when_things_happened() {
    let file = scenarios_dir().join("inline-test.yaml");
    let run = |steps: &str| {
        let scenario = Scenario::from_yaml(
            &format!("pod: ../pods/stubborn.yaml\nsteps:\n{steps}"),
            &file,
        )
        .unwrap();
        scenario.run(RunOptions::default()).unwrap()
    };
    // Killed at exactly 2 s after the delete: `notBefore` and `by` bracket it.
    let outcome = run(
        "  - delete: {}\n  - expect: { container: app, state: Terminated, \
                       notBefore: 2s, by: 2001ms }\n",
    );
    assert!(
        outcome.passed(),
        "{:?}\n{}",
        outcome.failures,
        outcome.trace
    );
    let outcome = run(
        "  - delete: {}\n  - expect: { container: app, state: Terminated, \
                       notBefore: 2001ms, by: 3s }\n",
    );
    assert!(
        outcome.failures[0].contains("no earlier than 2.001000s"),
        "{:?}",
        outcome.failures
    );
    // `absent` looks at the whole window, not only the first match.
    let outcome = run(
        "  - advance: 3s\n  - delete: {}\n  - expect: { event: Killing, \
                       notBefore: 1s, within: 1s, absent: true }\n",
    );
    assert!(
        outcome.failures[0].contains("but it held at 3.0"),
        "{:?}",
        outcome.failures
    );
    let outcome = run(
        "  - advance: 3s\n  - delete: {}\n  - expect: { event: Killing, \
                       by: 2s, absent: true }\n",
    );
    assert!(
        outcome.passed(),
        "{:?}\n{}",
        outcome.failures,
        outcome.trace
    );
}

#[test]
fn a_sub_path_that_leaves_its_volume_through_a_symlink_is_refused() {
    let volume = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", volume.path().join("escape")).unwrap();
    std::fs::create_dir(volume.path().join("inside")).unwrap();
    // A relative link out, as a guest could make one in a shared volume: a subPath through it
    // must not make anything outside the volume either.
    std::os::unix::fs::symlink("..", volume.path().join("up")).unwrap();
    let outside = volume.path().parent().unwrap().join("made-by-subpath");
    let mount = |name: &str, sub_path: &str, args: &str| {
        format!(
            "    - name: {name}\n      image: ../../target/components/hello.wasm\n      \
             args: [{args}]\n      volumeMounts:\n        \
             - {{name: host, mountPath: /data, subPath: \"{sub_path}\"}}\n"
        )
    };
    let mut sim = simulation(SimulationConfig::default());
    let pod = sim
        .start(crate::support::spec(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: escape}}\nspec:\n  restartPolicy: Never\n  \
             volumes:\n    - name: host\n      hostPath: {{path: {}}}\n  containers:\n{}{}{}",
            volume.path().display(),
            mount("out", "escape", "\"--read\", \"/data/hostname\""),
            mount("in", "inside", ""),
            mount("up", "up/made-by-subpath", ""),
        )))
        .unwrap();
    let status = sim
        .wait_for(
            &pod,
            |s| s.phase.as_deref() == Some("Failed"),
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    let ended: Vec<_> = status
        .container_statuses
        .unwrap()
        .into_iter()
        .map(|c| c.state.unwrap().terminated.unwrap())
        .collect();
    assert_eq!(
        ended[0].reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert!(
        ended[0]
            .message
            .as_deref()
            .unwrap()
            .contains("is a symlink"),
        "{:?}",
        ended[0]
    );
    assert_eq!(ended[1].reason.as_deref(), Some("Completed"));
    assert_eq!(
        ended[2].reason.as_deref(),
        Some("CreateContainerConfigError"),
        "{:?}",
        ended[2]
    );
    assert!(!outside.exists(), "nothing is made outside the volume");
    assert!(
        !output(&sim)
            .iter()
            .any(|line| line.starts_with("read /data/hostname:"))
    );
}

/// An http-hello pod with more container YAML (`extra`, indented for the container).
fn http_hello_pod(name: &str, extra: &str) -> wasmlet::PodSpec {
    crate::support::spec(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  \
         terminationGracePeriodSeconds: 30\n  containers:\n    - name: web\n      \
         image: ../../target/components/http-hello.wasm\n      ports: [{{containerPort: 8080}}]\n{extra}"
    ))
}

/// `GET /sleep?ms=3600000`: an answer that takes an hour.
const HANGING_GET: &str = "httpGet: {path: \"/sleep?ms=3600000\", port: 8080}";

fn terminated_reason(status: &wasmlet::k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    let web = &status.container_statuses.as_ref().unwrap()[0];
    web.state.as_ref()?.terminated.as_ref()?.reason.clone()
}

#[test]
fn a_readiness_probe_that_times_out_leaves_no_handler_running() {
    let mut sim = simulation(SimulationConfig::default());
    let pod = sim
        .start(http_hello_pod(
            "hanging-probe",
            &format!(
                "      readinessProbe:\n        {HANGING_GET}\n        periodSeconds: 1\n        \
                 timeoutSeconds: 1\n"
            ),
        ))
        .unwrap();
    // http-hello has no `run`: its only instances are the handlers of the probe's requests.
    let mut most_alive = 0;
    for _ in 0..600 {
        sim.advance(Duration::from_millis(100));
        most_alive = most_alive.max(sim.stats().live_instances);
    }
    let requests = output(&sim)
        .iter()
        .filter(|line| *line == "sleeping 3600000 ms")
        .count();
    assert!(requests >= 59, "{requests} probe requests in 60 s");
    assert_eq!(most_alive, 1, "handlers alive at once");
    // The handler of the probe in progress goes with the probe: nothing is left to drain.
    sim.delete(&pod, None);
    let status = sim
        .wait_for(&pod, all_terminated, Some(Duration::from_secs(61)))
        .unwrap();
    assert_eq!(
        terminated_reason(&status).as_deref(),
        Some("Completed"),
        "{}",
        sim.trace()
    );
    assert!(sim.now() < Duration::from_millis(60_010), "{}", sim.trace());
    assert_eq!(sim.stats().live_instances, 0);
    assert!(
        !sim.trace().contains("KilledRequests"),
        "an abandoned probe request is not a request killed with the container:\n{}",
        sim.trace()
    );
}

#[test]
fn an_http_get_pre_stop_hook_cut_short_by_the_grace_period_leaves_no_handler_running() {
    let mut sim = simulation(SimulationConfig::default());
    let pod = sim
        .start(http_hello_pod(
            "hanging-hook",
            &format!("      lifecycle:\n        preStop:\n          {HANGING_GET}\n"),
        ))
        .unwrap();
    sim.advance(Duration::from_secs(5));
    sim.delete(&pod, None);
    let status = sim
        .wait_for(&pod, all_terminated, Some(Duration::from_secs(60)))
        .unwrap();
    // The hook's request was given up with the hook at the end of the grace period; terminate
    // then finds nothing in flight, and the container ends at once rather than being killed
    // after the minimum grace that follows a preStop.
    assert_eq!(
        terminated_reason(&status).as_deref(),
        Some("Completed"),
        "{}",
        sim.trace()
    );
    assert!(sim.now() < Duration::from_millis(35_010), "{}", sim.trace());
    assert_eq!(sim.stats().live_instances, 0);
}
