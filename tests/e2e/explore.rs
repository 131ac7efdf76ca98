//! Exploration (`wasmlet test --explore`): a scenario run many ways, each drawn from its seed,
//! its invariants checked after every run, the first failure shrunk to a plain scenario that
//! fails on its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasmlet::testing::{ExploreOptions, RunOptions, Scenario};
use wasmlet_examples::components;

fn explore_dir() -> PathBuf {
    wasmlet_examples::pods_dir().join("../explore")
}

fn options(runs: u64) -> ExploreOptions {
    ExploreOptions {
        runs,
        seed: 0,
        workers: 2,
    }
}

/// A scenario file in `dir` (the components named by absolute path, so it may live anywhere).
fn write_scenario(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn the_checkpointers_torn_write_is_found_shrunk_and_reproduced_alone() {
    let scenario = Scenario::from_file(explore_dir().join("checkpointer.yaml")).unwrap();
    // As written, it passes: the bug needs a moment and a grace period it does not have.
    assert!(scenario.run(RunOptions::default()).unwrap().passed());
    let report = scenario.explore(options(500)).unwrap();
    let failure = report.failure.expect("500 runs find the torn checkpoint");
    assert!(report.runs <= 500);
    assert!(
        failure.failures.iter().any(|f| f.contains("is torn")),
        "{:?}",
        failure.failures
    );
    // The reproduction is a plain scenario: fixed moments, no `explore:`, and it fails alone.
    assert!(!failure.reproduction.contains("explore:"));
    assert!(
        failure
            .reproduction
            .contains(&format!("run seed {}", failure.seed))
    );
    let alone =
        Scenario::from_yaml(&failure.reproduction, &explore_dir().join("repro.yaml")).unwrap();
    assert!(alone.explore.is_none());
    let outcome = alone.run(RunOptions::default()).unwrap();
    assert!(!outcome.passed());
    assert_eq!(
        outcome.trace, failure.trace,
        "a reproduction runs the same every time"
    );
    // The seed reruns the same failing run: the same verdict on any machine, any worker count.
    let again = scenario
        .explore(ExploreOptions {
            runs: 1,
            seed: failure.seed,
            workers: 1,
        })
        .unwrap();
    let again = again.failure.expect("its seed fails again");
    assert_eq!(again.drawn, failure.drawn);
    assert_eq!(again.shrunk, failure.shrunk);
    assert_eq!(again.reproduction, failure.reproduction);
}

#[test]
fn the_fixed_checkpointer_survives_every_run() {
    let scenario = Scenario::from_file(explore_dir().join("checkpointer-fixed.yaml")).unwrap();
    let report = scenario.explore(options(300)).unwrap();
    assert!(
        report.failure.is_none(),
        "{:#?}",
        report.failure.map(|f| (f.seed, f.failures))
    );
    assert_eq!(report.runs, 300);
}

/// A preStop that is not idempotent: it marks the volume, and a second delivery finds the mark.
fn twice_scenario(dir: &Path) -> PathBuf {
    let yaml = format!(
        r#"name: a preStop that must run once
pod:
  apiVersion: v1
  kind: Pod
  metadata: {{ name: once }}
  spec:
    restartPolicy: Never
    terminationGracePeriodSeconds: 10
    volumes:
      - name: data
        persistentVolumeClaim: {{ claimName: marks }}
    containers:
      - name: app
        image: {cooperative}
        volumeMounts: [{{ name: data, mountPath: /data }}]
        lifecycle:
          preStop:
            exec:
              command: [sh, -c, "test -f /data/drained && touch /data/drained-twice; touch /data/drained"]
steps:
  - wait: {{ phase: Running }}
  - delete: {{}}
  - wait: {{ phase: Succeeded, timeout: 60s }}
invariants:
  - completed: app
  - volume: data
    check: [sh, -c, "test -f /data/drained && test ! -f /data/drained-twice"]
explore:
  delete: {{ after: [0s, 2s], gracePeriod: [5s, 10s] }}
  hooksTwice: [preStop]
  slowHooks: {{ hooks: [postStart], delay: [0s, 1s] }}
"#,
        cooperative = components::COOPERATIVE
    );
    write_scenario(dir, "twice.yaml", &yaml)
}

#[test]
fn a_hook_delivered_twice_is_found_and_the_reproduction_names_only_that_fault() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_file(twice_scenario(dir.path())).unwrap();
    assert!(scenario.run(RunOptions::default()).unwrap().passed());
    let failure = scenario
        .explore(options(50))
        .unwrap()
        .failure
        .expect("half the runs deliver preStop twice");
    assert!(failure.drawn.faults.pre_stop.twice);
    let shrunk = &failure.shrunk;
    assert!(shrunk.faults.pre_stop.twice);
    // What did not matter is gone: no late postStart, the delete at once, the longest grace.
    assert_eq!(shrunk.faults.post_start.delay, Duration::ZERO);
    assert_eq!(shrunk.delete_after, Some(Duration::ZERO));
    assert_eq!(shrunk.grace_period, Some(Duration::from_secs(10)));
    assert!(
        failure
            .reproduction
            .contains("faults:\n  preStop:\n    twice: true\n"),
        "{}",
        failure.reproduction
    );
    // The second delivery is in the trace, the violation too.
    assert!(
        failure
            .trace
            .contains("invariant VIOLATED: the files of volume data")
    );
}

#[test]
fn a_late_hook_starts_late_and_eats_the_grace_period() {
    let yaml = format!(
        r#"name: a preStop delivered 3s late
pod:
  apiVersion: v1
  kind: Pod
  metadata: {{ name: late }}
  spec:
    restartPolicy: Never
    terminationGracePeriodSeconds: 10
    containers:
      - name: app
        image: {cooperative}
faults:
  preStop: {{ delay: 3s }}
steps:
  - wait: {{ phase: Running }}
  - delete: {{}}
  - expect: {{ log: "preStop: draining, 69", notBefore: 3s, within: 3001ms }}
  - wait: {{ phase: Succeeded }}
invariants:
  - completed: app
  - neverKilled: app
  - log: "clean shutdown"
    container: app
  - exitsZero: app
    withGraceAtLeast: 5s
"#,
        cooperative = components::COOPERATIVE
    );
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_file(write_scenario(dir.path(), "late.yaml", &yaml)).unwrap();
    let outcome = scenario.run(RunOptions::default()).unwrap();
    assert!(
        outcome.passed(),
        "{:?}\n{}",
        outcome.failures,
        outcome.trace
    );
    assert_eq!(
        outcome.trace.matches("invariant holds").count(),
        4,
        "{}",
        outcome.trace
    );
}

#[test]
fn a_violated_invariant_fails_a_plain_run_and_says_how() {
    let yaml = format!(
        r#"pod:
  apiVersion: v1
  kind: Pod
  metadata: {{ name: stubborn }}
  spec:
    restartPolicy: Never
    terminationGracePeriodSeconds: 2
    containers:
      - name: app
        image: {stubborn}
steps:
  - wait: {{ phase: Running }}
  - delete: {{}}
invariants:
  - neverKilled: app
  - exitsZero: app
    withGraceAtLeast: 3s
  - exitsZero: app
    withGraceAtLeast: 1s
"#,
        stubborn = components::STUBBORN
    );
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_file(write_scenario(dir.path(), "s.yaml", &yaml)).unwrap();
    let outcome = scenario.run(RunOptions::default()).unwrap();
    assert_eq!(outcome.failures.len(), 2, "{:?}", outcome.failures);
    assert!(
        outcome.failures[0]
            .starts_with("invariants[0] (app was never Killed) violated: it was Killed at 2.")
    );
    // A grace of 2 s is under the 3 s the second asks for: it holds; the third does not.
    assert!(
        outcome.failures[1].starts_with("invariants[2]"),
        "{:?}",
        outcome.failures
    );
    assert!(outcome.failures[1].contains("exit code 137 (Killed) (grace period 2s)"));
}

#[test]
fn bad_explore_and_invariant_fields_are_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let pod = format!(
        "pod:\n  apiVersion: v1\n  kind: Pod\n  metadata: {{ name: p }}\n  spec:\n    \
         volumes: [{{ name: scratch, emptyDir: {{}} }}]\n    containers:\n      - name: app\n        \
         image: {}\n",
        components::COOPERATIVE
    );
    let cases = [
        (
            "steps: [delete: {}]\nexplore: { delet: {} }\n",
            "explore.delet: unknown field `delet`, expected one of `delete`",
        ),
        (
            "steps: [delete: {}]\nexplore: { delete: { after: [3s, 1s] } }\n",
            "explore.delete.after: the range is empty: 3s is more than 1s",
        ),
        (
            "steps: [delete: {}]\nexplore: { delete: { gracePeriod: [1s, 2s, 3s] } }\n",
            "explore.delete.gracePeriod: a range is `[MIN, MAX]`",
        ),
        (
            "steps: [advance: 1s]\nexplore: { delete: { after: [0s, 1s] } }\n",
            "explore.delete: varies the first `delete` step",
        ),
        (
            "steps: [delete: {}]\nexplore: { hooksTwice: [preStart] }\n",
            "explore.hooksTwice[0]: unknown hook `preStart`",
        ),
        (
            "steps: [delete: {}]\nexplore: {}\n",
            "explore: declares nothing to vary",
        ),
        (
            "steps: [delete: {}]\ninvariants: [completed: nope]\n",
            "invariants[0].completed: pod `p` has no container `nope`",
        ),
        (
            "steps: [delete: {}]\ninvariants: [{ completed: app, container: app }]\n",
            "invariants[0].container: does not belong",
        ),
        (
            "steps: [delete: {}]\ninvariants: [{ volume: scratch, check: [sh] }]\n",
            "invariants[0].volume: volume `scratch` goes with the pod",
        ),
        (
            "steps: [delete: {}]\ninvariants: [{ volume: data, check: [sh] }]\n",
            "invariants[0].volume: pod `p` has no volume `data`; its volumes: scratch",
        ),
        (
            "steps: [delete: {}]\nfaults: { preStop: { twice: true, slow: 1s } }\n",
            "faults.preStop.slow: unknown field `slow`",
        ),
    ];
    for (index, (rest, expected)) in cases.iter().enumerate() {
        let path = write_scenario(
            dir.path(),
            &format!("bad{index}.yaml"),
            &format!("{pod}{rest}"),
        );
        let error = Scenario::from_file(&path).unwrap_err().to_string();
        assert!(error.contains(&format!("bad{index}.yaml")), "{error}");
        assert!(error.contains(expected), "case {index}: {error}");
    }
}

#[test]
fn the_cli_prints_the_seed_writes_a_reproduction_that_fails_alone_and_passes_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = twice_scenario(dir.path());
    let wasmlet = || Command::new(env!("CARGO_BIN_EXE_wasmlet"));
    let out = wasmlet()
        .args(["test", "--explore", "50"])
        .arg(&scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let seed: u64 = stdout
        .split(", seed ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| panic!("no seed in {stdout}"));
    assert!(stdout.contains("preStop delivered twice"), "{stdout}");
    assert!(stdout.contains("trace of the reproduction:"), "{stdout}");
    let reproduction = dir.path().join(format!("twice.explore-{seed}.yaml"));
    assert!(
        stdout.contains(&reproduction.display().to_string()),
        "{stdout}"
    );
    let alone = wasmlet().arg("test").arg(&reproduction).output().unwrap();
    assert_eq!(alone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&alone.stdout).contains("invariants[1]"));
    // Without the fault the scenario passes, explored or not.
    let fixed = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("  hooksTwice: [preStop]\n", "");
    let fixed = write_scenario(dir.path(), "fixed.yaml", &fixed);
    let out = wasmlet()
        .args(["test", "--explore", "50"])
        .arg(&fixed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS") && stdout.contains("50 runs"),
        "{stdout}"
    );
}

#[test]
fn explore_refuses_to_check_a_host_path_every_run_would_share() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"pod:
  apiVersion: v1
  kind: Pod
  metadata: {{ name: shared }}
  spec:
    restartPolicy: Never
    volumes:
      - name: data
        hostPath: {{ path: {dir} }}
    containers:
      - name: app
        image: {cooperative}
        volumeMounts: [{{ name: data, mountPath: /data }}]
steps:
  - wait: {{ phase: Running }}
  - delete: {{}}
invariants:
  - volume: data
    check: [sh, -c, "true"]
explore:
  delete: {{ after: [0s, 1s] }}
"#,
        dir = dir.path().display(),
        cooperative = components::COOPERATIVE
    );
    let scenario = Scenario::from_file(write_scenario(dir.path(), "shared.yaml", &yaml)).unwrap();
    // Run once, as written, it is fine.
    assert!(scenario.run(RunOptions::default()).unwrap().passed());
    let error = scenario.explore(options(10)).unwrap_err().to_string();
    assert!(
        error.contains("a hostPath is one directory shared by every run"),
        "{error}"
    );
}

/// `scenario` run once as written, which must pass; its outcome.
fn passes(scenario: &Scenario) -> wasmlet::testing::Outcome {
    let outcome = scenario.run(RunOptions::default()).unwrap();
    assert!(
        outcome.passed(),
        "{:?}\n{}",
        outcome.failures,
        outcome.trace
    );
    outcome
}

/// A scenario file that runs `hello` with `args` on a claim volume `data` at `/data`; `rest` is
/// the rest of the file (steps, faults, explore).
fn hello_scenario(dir: &Path, name: &str, args: &[&str], rest: &str) -> PathBuf {
    let yaml = format!(
        r#"name: {name}
pod:
  apiVersion: v1
  kind: Pod
  metadata: {{ name: writer }}
  spec:
    restartPolicy: Never
    volumes:
      - name: data
        persistentVolumeClaim: {{ claimName: files }}
    containers:
      - name: app
        image: {hello}
        args: {args:?}
        volumeMounts: [{{ name: data, mountPath: /data }}]
{rest}"#,
        hello = components::HELLO
    );
    write_scenario(dir, &format!("{name}.yaml"), &yaml)
}

#[test]
fn write_faults_land_on_the_volume_named_and_on_the_write_counted() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--write",
        "/data/one",
        "first",
        "--write",
        "/data/two",
        "second",
        "--write",
        "/data/three",
        "third",
        "--write",
        "/tmp/four",
        "fourth",
    ];
    let run = |name: &str, faults: &str| {
        let rest = format!("steps:\n  - wait: {{ phase: Succeeded }}\n{faults}");
        passes(&Scenario::from_file(hello_scenario(dir.path(), name, &args, &rest)).unwrap()).trace
    };
    // A full disk from the second write: the first file is written, the next two are not; the
    // container's /tmp is not on the volume, so its write goes through.
    let trace = run(
        "full",
        "faults:\n  volumes:\n    data: { at: 2, fault: diskFull }\n",
    );
    // (wasi-libc's `write` reports any failure of a file's stream as EIO, whatever the host
    // said: on a disk really full, a Rust guest sees the same.)
    let says = |trace: &str, lines: &[&str]| {
        for line in lines {
            assert!(trace.contains(line), "no {line:?} in\n{trace}");
        }
    };
    says(
        &trace,
        &[
            "wrote /data/one",
            "write /data/two failed: I/O error",
            "write /data/three failed: I/O error",
            "wrote /tmp/four",
        ],
    );
    // An I/O error hits one write only.
    let trace = run(
        "io",
        "faults:\n  volumes:\n    data: { at: 2, fault: ioError }\n",
    );
    says(
        &trace,
        &[
            "wrote /data/one",
            "write /data/two failed: I/O error",
            "wrote /data/three",
        ],
    );
    // A short write: one `write` call writes one byte and says so; std's `write_all` writes
    // the rest itself, so its file is whole.
    let rest = "steps:\n  - wait: { phase: Succeeded }\nfaults:\n  volumes:\n    data: { at: 1, fault: shortWrite }\n";
    let args = [
        "--write-once",
        "/data/one",
        "first",
        "--write",
        "/data/two",
        "second",
        "--read",
        "/data/two",
        "--write-once",
        "/data/three",
        "third",
    ];
    let path = hello_scenario(dir.path(), "short", &args, rest);
    says(
        &passes(&Scenario::from_file(path).unwrap()).trace,
        &[
            "wrote 1 of 5 bytes to /data/one",
            "read /data/two: second",
            "wrote 5 of 5 bytes to /data/three",
        ],
    );
}

#[test]
fn explored_write_faults_find_the_checkpointer_that_saves_in_place() {
    let buggy = Scenario::from_file(explore_dir().join("checkpointer-disk.yaml")).unwrap();
    assert!(buggy.run(RunOptions::default()).unwrap().passed());
    let failure = buggy
        .explore(options(200))
        .unwrap()
        .failure
        .expect("a failed write tears the checkpoint saved in place");
    assert_eq!(
        failure.shrunk.faults.volumes.len(),
        1,
        "{:?}",
        failure.shrunk
    );
    assert!(
        failure
            .reproduction
            .contains("volumes:\n    data:\n      at: ")
    );
    let alone =
        Scenario::from_yaml(&failure.reproduction, &explore_dir().join("repro.yaml")).unwrap();
    assert!(!alone.run(RunOptions::default()).unwrap().passed());
    let fixed = Scenario::from_file(explore_dir().join("checkpointer-disk-fixed.yaml")).unwrap();
    let report = fixed.explore(options(200)).unwrap();
    assert!(
        report.failure.is_none(),
        "{:#?}",
        report.failure.map(|f| (f.seed, f.failures))
    );
}

#[test]
fn lost_probe_checks_fail_the_probe_and_restart_the_container_at_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = |name: &str, faults: &str, expect: &str| {
        let yaml = format!(
            r#"name: {name}
pod:
  apiVersion: v1
  kind: Pod
  metadata: {{ name: probed }}
  spec:
    containers:
      - name: app
        image: {cooperative}
        livenessProbe:
          exec: {{ command: [sh, -c, "true"] }}
          periodSeconds: 1
          failureThreshold: 3
faults:
  livenessProbe: {faults}
steps:
  - wait: {{ phase: Running }}
  - advance: 10s
  - expect: {expect}
"#,
            cooperative = components::COOPERATIVE
        );
        Scenario::from_file(write_scenario(dir.path(), &format!("{name}.yaml"), &yaml)).unwrap()
    };
    // Checks 2 to 4 lost: the third failure in a row is the threshold.
    let outcome = passes(&scenario(
        "restarted",
        "{ from: 2, failures: 3 }",
        "{ container: app, restartCount: 1 }",
    ));
    assert_eq!(
        outcome
            .trace
            .matches("Liveness probe failed: the check was lost")
            .count(),
        3,
        "{}",
        outcome.trace
    );
    // Two lost checks are under the threshold: the container keeps running.
    passes(&scenario(
        "kept",
        "{ from: 2, failures: 2 }",
        "{ container: app, restartCount: 0 }",
    ));
}

#[test]
fn a_wall_clock_step_is_seen_by_the_guest_and_not_by_its_monotonic_clock() {
    let dir = tempfile::tempdir().unwrap();
    let rest =
        "steps:\n  - wait: { phase: Succeeded }\nfaults:\n  wallClock: { at: 1s, jump: -1h }\n";
    let path = hello_scenario(
        dir.path(),
        "clock",
        &["--clock", "--sleep", "2", "--clock"],
        rest,
    );
    let outcome = passes(&Scenario::from_file(path).unwrap());
    // The run starts at 2026-01-01T00:00:00Z: 1767225600000 ms since 1970. Two seconds later
    // the wall clock reads an hour less, while the monotonic clock says two seconds passed.
    let clocks: Vec<(u64, u64)> = outcome
        .trace
        .lines()
        .filter_map(|line| line.split("clock: ").nth(1))
        .map(|rest| {
            let numbers: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            // `clock: MS ms since 1970, running for US µs`
            (numbers[0], numbers[2])
        })
        .collect();
    assert_eq!(clocks.len(), 2, "{}", outcome.trace);
    assert_eq!(clocks[0].0 / 1000, 1_767_225_600);
    assert_eq!(clocks[1].0 / 1000, 1_767_225_602 - 3600);
    assert!(clocks[1].1 >= 2_000_000, "{clocks:?}");
}

#[test]
fn explored_faults_are_drawn_from_the_seed_and_written_as_plain_faults() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "steps:\n  - wait: { phase: Succeeded }\nexplore:\n  writeFaults: { volumes: [data], faults: [diskFull, ioError], at: [1, 3] }\n  wallClock: { at: [0s, 2s], jump: [-1h, 1h] }\n";
    let path = hello_scenario(dir.path(), "drawn", &["--write", "/data/x", "y"], rest);
    let scenario = Scenario::from_file(path).unwrap();
    let spec = scenario.explore.clone().unwrap();
    let mut volumes = 0;
    let mut clocks = 0;
    for seed in 0..200 {
        let variation = spec.draw(seed);
        assert_eq!(variation, spec.draw(seed));
        for (volume, fault) in &variation.faults.volumes {
            assert_eq!(volume, "data");
            assert!((1..=3).contains(&fault.at));
            volumes += 1;
        }
        if let Some(jump) = variation.faults.wall_clock {
            assert!(jump.at <= Duration::from_secs(2) && jump.by <= Duration::from_secs(3600));
            clocks += 1;
            // Written in, the variation is a plain scenario with the same faults.
            let plain = scenario.with_variation(&variation).unwrap();
            assert!(plain.explore.is_none());
            assert_eq!(plain.faults, variation.faults);
        }
    }
    assert!((60..140).contains(&volumes), "{volumes}");
    assert!((60..140).contains(&clocks), "{clocks}");
}
