//! The `wasmlet` binary: exit codes, events on stderr, output on stdout, JSON status, signals.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn wasmlet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmlet"));
    command.current_dir(workspace());
    command
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(args: &[&str]) -> Output {
    wasmlet().args(args).output().expect("running wasmlet")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_prints_output_on_stdout_and_events_on_stderr() {
    let out = run(&["run", "examples/pods/hello.yaml"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("[hello] Hi from a plain wasi:cli command!"),
        "{stdout}"
    );
    for column in ["AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"] {
        assert!(stderr.contains(column), "{stderr}");
    }
    for reason in ["Pulled", "Created", "Started", "Completed"] {
        assert!(stderr.contains(reason), "{stderr}");
    }
}

#[test]
fn json_output_is_a_kubernetes_pod_status() {
    let out = run(&[
        "run",
        "examples/pods/stubborn.yaml",
        "--stop-after",
        "100ms",
        "--grace-period",
        "300ms",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(status["phase"], "Failed");
    let container = &status["containerStatuses"][0];
    assert_eq!(container["name"], "app");
    assert_eq!(container["restartCount"], 0);
    let terminated = &container["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 137);
    assert_eq!(terminated["reason"], "Killed");
    assert!(
        terminated["message"].as_str().unwrap().contains("300ms"),
        "{terminated}"
    );
    assert!(terminated["startedAt"].is_string() && terminated["finishedAt"].is_string());
    // Container output went to stderr, so stdout stays parseable.
    assert!(text(&out.stderr).contains("[app] run: sleeping for an hour"));
}

#[test]
fn json_output_has_the_kubelets_conditions_and_qos_class() {
    let out = run(&["run", "examples/pods/hello.yaml", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(status["phase"], "Succeeded");
    // No resources: BestEffort.
    assert_eq!(status["qosClass"], "BestEffort");
    // The kubelet's conditions of a pod that completed, in the kubelet's order.
    let conditions: Vec<(&str, &str, Option<&str>)> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            assert!(c["lastTransitionTime"].is_string(), "{c}");
            (
                c["type"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("PodReadyToStartContainers", "True", None),
            ("Initialized", "True", Some("PodCompleted")),
            ("Ready", "False", Some("PodCompleted")),
            ("ContainersReady", "False", Some("PodCompleted")),
            ("PodScheduled", "True", None),
        ]
    );
}

#[test]
fn a_component_runs_directly_with_args() {
    let components = wasmlet_examples::components::HELLO;
    let out = run(&["run", components, "--", "one", "two"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[hello] arg: one") && stdout.contains("[hello] arg: two"),
        "{stdout}"
    );
}

#[test]
fn failures_exit_non_zero() {
    let out = run(&["run", "examples/pods/memory-hog.yaml", "-o", "json"]);
    assert_eq!(out.status.code(), Some(137));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["containerStatuses"][0]["state"]["terminated"]["reason"],
        "OOMKilled"
    );
    // A memory limit and no CPU (wasmlet takes none): Burstable, as Kubernetes says.
    assert_eq!(status["qosClass"], "Burstable");

    let out = run(&["run", "examples/pods/failing-poststart.yaml"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("FailedPostStartHook"));
}

#[test]
fn a_bad_manifest_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n    - name: app\n      image: nowhere.wasm\n      lifecycle:\n        preStop:\n          tcpSocket: {port: 80}\n",
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = run(&[command, manifest.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("bad.yaml"), "{stderr}");
        assert!(
            stderr.contains("spec.containers[0].image: component `nowhere.wasm` not found"),
            "{stderr}"
        );
        assert!(
            stderr.contains("spec.containers[0].lifecycle.preStop.tcpSocket: deprecated"),
            "{stderr}"
        );
    }
    let out = run(&["validate", "examples/pods/lifecycle-demo.yaml"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn sigterm_deletes_gracefully_and_a_second_signal_kills() {
    // Graceful: the cooperative app completes after one SIGTERM.
    let (code, stderr) = signal_run(
        "examples/pods/cooperative.yaml",
        "[app:postStart] postStart: done",
        1,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Killing") && stderr.contains("Completed"),
        "{stderr}"
    );

    // Forced: the stubborn app would take 30 s; the second SIGTERM kills it at once.
    let started = Instant::now();
    let (code, stderr) = signal_run(
        "examples/pods/stubborn.yaml",
        "[app] run: sleeping for an hour",
        2,
    );
    assert_eq!(code, Some(137), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_host_raises_its_soft_limit_of_open_files_to_the_hard_one() {
    // Soft and hard "Max open files" of a process, from its /proc limits.
    let open_files = |pid: &str| -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[3].to_string(), fields[4].to_string())
    };
    let (_, hard) = open_files("self");
    // Every pod holds a file open: a soft limit below the hard one would cap a host's pods.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {} run examples/pods/stubborn.yaml --grace-period 10ms",
            env!("CARGO_BIN_EXE_wasmlet")
        ))
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("run: sleeping for an hour") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "the pod never started"
        );
    }
    let (soft, hard_seen) = open_files(&child.id().to_string());
    // Stopped, not killed: a killed host would leave its container's /tmp behind.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(hard_seen, hard);
    assert_eq!(soft, hard, "the soft limit stayed below the hard one");
}

/// Runs a pod with a 30 s grace period; once its output has shown `running` (the line that says
/// it is up), sends `signals` SIGTERMs.
fn signal_run(manifest: &str, running: &str, signals: usize) -> (Option<i32>, String) {
    signal_run_all(&[manifest], &[running], signals)
}

/// Runs pods in one `wasmlet run` with a 30 s grace period; once the output has shown every line
/// of `running` (each a line that says a pod is up: started, and its postStart done), sends
/// `signals` SIGTERMs, each once wasmlet has said what it does about the one before. Returns the
/// exit code and stderr.
fn signal_run_all(manifests: &[&str], running: &[&str], signals: usize) -> (Option<i32>, String) {
    let mut child = wasmlet()
        .arg("run")
        .args(manifests)
        .args(["--grace-period", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both streams, line by line as they come: (whether from stderr, the line).
    let (sender, lines) = std::sync::mpsc::channel();
    let readers = [
        (
            false,
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        (true, Box::new(child.stderr.take().unwrap())),
    ]
    .map(|(is_stderr, stream)| {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let _ = sender.send((is_stderr, line.unwrap()));
            }
        })
    });
    drop(sender);
    let mut stderr = String::new();
    let mut wait_for = |text: &str| loop {
        let (is_stderr, line) = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("waited in vain for {text:?}; stderr so far:\n{stderr}"));
        if is_stderr {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        if line.contains(text) {
            return;
        }
    };
    for line in running {
        wait_for(line);
    }
    for signal in 1..=signals {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Signals that arrive together may be taken for one.
        wait_for(if signal == 1 {
            "gracefully; signal again to kill now"
        } else {
            "wasmlet: killing"
        });
    }
    for reader in readers {
        reader.join().unwrap();
    }
    for (is_stderr, line) in lines.try_iter() {
        if is_stderr {
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    (child.wait().unwrap().code(), stderr)
}

#[test]
fn sigterm_stops_every_pod_of_the_host_each_within_its_grace() {
    // A second cooperative pod, whose preStop is a 1 s sleep.
    let dir = tempfile::tempdir().unwrap();
    let second = dir.path().join("second.yaml");
    std::fs::write(
        &second,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: second}}\nspec:\n  restartPolicy: \
             Never\n  containers:\n    - name: app\n      image: {}\n      lifecycle:\n        \
             preStop: {{sleep: {{seconds: 1}}}}\n",
            workspace()
                .join("target/components/cooperative.wasm")
                .display()
        ),
    )
    .unwrap();
    let (code, stderr) = signal_run_all(
        &["examples/pods/cooperative.yaml", second.to_str().unwrap()],
        &["[app:postStart] postStart: done"; 2],
        1,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("stopping pods cooperative, second gracefully"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Completed ").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("MESSAGE").count(), 1, "one header: {stderr}");
}

#[test]
fn a_bad_manifest_among_several_starts_nothing() {
    let out = run(&[
        "run",
        "examples/pods/cooperative.yaml",
        "examples/pods/does-not-exist.yaml",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does-not-exist.yaml"), "{stderr}");
    assert!(!stderr.contains("Started"), "{stderr}");
}

#[test]
fn every_example_pod_ends_as_documented_through_the_binary() {
    // (pod, how long after Running to delete it, reason of each container, exit code)
    let cases: &[(&str, &str, &[&str], i32)] = &[
        ("cooperative", "200ms", &["Completed"], 0),
        ("stubborn", "200ms", &["Killed"], 137),
        ("spinner", "200ms", &["Killed"], 137),
        ("slow-prestop", "200ms", &["Completed"], 0),
        ("failing-poststart", "10s", &["PostStartHookError"], 1),
        ("hello", "10s", &["Completed"], 0),
        ("memory-hog", "10s", &["OOMKilled"], 137),
        ("lifecycle-demo", "200ms", &["Completed", "Killed"], 137),
    ];
    let runs: Vec<_> = cases
        .iter()
        .map(|(pod, stop_after, reasons, code)| {
            let child = wasmlet()
                .args([
                    "run",
                    &format!("examples/pods/{pod}.yaml"),
                    "--stop-after",
                    stop_after,
                    "-o",
                    "json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (pod, reasons, code, child)
        })
        .collect();
    for (pod, reasons, code, child) in runs {
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{pod}: {stderr}");
        let status: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{pod}: {e}"));
        let ended: Vec<_> = status["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["state"]["terminated"]["reason"]
                    .as_str()
                    .unwrap_or("not terminated")
                    .to_string()
            })
            .collect();
        assert_eq!(ended, *reasons, "{pod}: {stderr}");
    }
}

#[test]
fn a_component_is_recognised_by_its_contents_not_its_name() {
    // Test binaries that cargo and rustdoc build for wasm32-wasip2 have no extension; wasmlet
    // runs them (it is the runner for the SDK's doc examples in CI).
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("rust_out");
    std::fs::copy(wasmlet_examples::components::HELLO, &binary).unwrap();
    let out = run(&["run", binary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Hello from a plain wasi:cli command!"));
}

#[test]
fn bad_components_get_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notes.wasm", b"hello, not wasm".to_vec(), "is not WebAssembly"),
        // The smallest core module: magic and version 1.
        (
            "core.wasm",
            b"\0asm\x01\0\0\0".to_vec(),
            "is a core WebAssembly module, not a component",
        ),
        // The smallest component: magic, version 0x0d, layer 1. It exports nothing.
        (
            "empty.wasm",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "exports neither `wasi:cli/run` nor `wasi:http/incoming-handler`",
        ),
        (
            "missing-import.wasm",
            wat::parse_str(
                r#"(component (import "example:missing/thing@1.0.0" (instance (export "f" (func)))))"#,
            )
            .unwrap(),
            "imports something wasmlet does not provide",
        ),
        (
            "wrong-run.wasm",
            wat::parse_str(
                r#"(component
                    (core module $m (func (export "run") (result i32) (i32.const 7)))
                    (core instance $i (instantiate $m))
                    (func $run (result u32) (canon lift (core func $i "run")))
                    (instance $run (export "run" (func $run)))
                    (export "wasi:cli/run@0.2.0" (instance $run)))"#,
            )
            .unwrap(),
            "its export `wasi:cli/run@0.2.0#run` has the wrong type",
        ),
        (
            "not-valid.wasm",
            b"\0asm\x0d\0\x01\0\xff\xff".to_vec(),
            "compiling component",
        ),
        // A module with one memory (or table) instantiated once too often for one instance.
        (
            "many-memories.wasm",
            crate::support::instantiated_times("(memory 0)", 1, 101),
            "defines 101 linear memories; wasmlet allows one instance at most 100",
        ),
        (
            "many-tables.wasm",
            crate::support::instantiated_times("(table 0 funcref)", 7, 143),
            "defines 1001 tables; wasmlet allows one instance at most 1000",
        ),
    ];
    for (name, bytes, expected) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = run(&["run", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the error should name the file: {stderr}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn test_passes_the_example_scenarios_and_fails_a_changed_trace() {
    let out = run(&["test", "examples/scenarios"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("scenarios: 53 passed, 0 failed"),
        "{stdout}"
    );

    // A copy whose golden trace is off by one line: FAIL, a diff, exit code 1.
    let dir = tempfile::tempdir().unwrap();
    let scenario = std::fs::read_to_string(workspace().join("examples/scenarios/hello.yaml"))
        .unwrap()
        .replace(
            "../pods/hello.yaml",
            &workspace()
                .join("examples/pods/hello.yaml")
                .display()
                .to_string(),
        );
    std::fs::write(dir.path().join("hello.yaml"), scenario).unwrap();
    let path = dir.path().join("hello.yaml").display().to_string();
    let out = run(&["test", &path, "--update"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let golden = dir.path().join("hello.trace");
    let trace = std::fs::read_to_string(&golden).unwrap();
    std::fs::write(&golden, trace.replace("arg: the", "arg: a")).unwrap();
    let out = run(&["test", &path]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    // The diff shows the changed line both ways (whatever its virtual time).
    let diff_line = |sign: char, text: &str| {
        stdout
            .lines()
            .any(|line| line.trim_start().starts_with(sign) && line.ends_with(text))
    };
    assert!(diff_line('-', "[hello] arg: a"), "{stdout}");
    assert!(diff_line('+', "[hello] arg: the"), "{stdout}");

    // --repeat checks runs against each other; --seed replaces the seed in the header.
    let out = run(&[
        "test", &path, "--update", "--repeat", "5", "--seed", "42", "-v",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("5 runs") && stdout.contains("# seed: 42"),
        "{stdout}"
    );
}

#[test]
fn test_reports_a_malformed_scenario_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "pod: nowhere.yaml\nsteps:\n  - advance: soon\n").unwrap();
    let out = run(&["test", &file.display().to_string()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("broken.yaml"),
        "{stdout}"
    );
    assert!(stdout.contains("pod: invalid pod manifest"), "{stdout}");
}

#[test]
fn run_serves_a_handler_component_on_the_given_port_until_stopped() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = wasmlet()
        .args(["run", "target/components/http-hello.wasm", "--port"])
        .arg(port.to_string())
        .args(["--stop-after", "3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The event that says it listens comes once the port is bound.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains(&format!("Serving HTTP on 127.0.0.1:{port}")) {
        assert!(
            stderr.read_line(&mut seen).unwrap() > 0,
            "wasmlet ended before it listened: {seen}"
        );
    }
    // A plain HTTP/1.0 exchange: no client library needed.
    let answer = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(answer.starts_with("HTTP/1.0 200 OK"), "{answer}");
    assert!(answer.ends_with("hello from wasmlet\n"), "{answer}");
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    let stderr = seen;
    assert_eq!(child.wait().unwrap().code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("Serving HTTP on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("Draining"), "{stderr}");
}

#[test]
fn compiled_components_are_cached_on_disk_for_the_next_run() {
    use std::os::unix::fs::MetadataExt as _;
    let cache = tempfile::tempdir().unwrap();
    // The builds in the cache, by name, with the file (inode) each is.
    let builds = || {
        let mut builds: Vec<(PathBuf, u64)> = walk(&cache.path().join("wasmlet"))
            .into_iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
            .map(|path| {
                let inode = std::fs::metadata(&path).unwrap().ino();
                (path, inode)
            })
            .collect();
        builds.sort();
        builds
    };
    let mut after = Vec::new();
    for _ in 0..2 {
        let out = wasmlet()
            .env("XDG_CACHE_HOME", cache.path())
            .args(["run", "examples/pods/hello.yaml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        after.push(builds());
    }
    // A build per compiled component, under wasmlet's own directory; the second run used the
    // first one's as it was, neither compiling again nor writing it anew.
    assert!(!after[0].is_empty(), "no build in the compile cache");
    assert_eq!(after[0], after[1]);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

/// Runs `wasmlet` with `args`, reads the first line of its stdout and closes the pipe, as
/// `| head -1` does; returns the exit code and stderr.
fn run_with_reader_gone(args: &[&str]) -> (Option<i32>, String) {
    let mut child = wasmlet()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    assert!(
        stdout.read_line(&mut first).unwrap() > 0,
        "no output at all"
    );
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out.stderr))
}

#[test]
fn a_reader_that_goes_away_ends_test_quietly_and_leaves_run_supervising() {
    // `wasmlet test … | head -1`: it stops after the scenario it is on, with the status a
    // shell gives a tool ended by SIGPIPE, and no panic.
    let (code, stderr) = run_with_reader_gone(&["test", "examples/scenarios"]);
    assert_eq!(code, Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // `wasmlet run … | head -1`: the pods go on to their end, as without the pipe.
    let (code, stderr) = run_with_reader_gone(&[
        "run",
        "examples/pods/cooperative.yaml",
        "--stop-after",
        "300ms",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Completed"), "{stderr}");
}
