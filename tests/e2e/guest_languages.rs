//! Guests written in Python and JavaScript, built by `scripts/build-guests.sh`, run through the
//! `wasmlet` binary: the worker gets its hooks and terminate with its reason and grace, and exits
//! 0; the web service answers `/healthz` once its postStart made it ready, and drains on delete.
//! A language whose components were not built is skipped, saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// (language, its directory under `examples/`, where the build script puts its components).
const LANGUAGES: &[(&str, &str, &str)] = &[
    ("Python", "python", "target/components-py"),
    ("JavaScript", "js", "target/components-js"),
];

/// A first run compiles a component of 10–40 MB; on a busy 2-core machine that takes a minute.
const PATIENCE: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn wasmlet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmlet"));
    command.current_dir(workspace());
    command
}

/// The language's component `name`, or None (having said the language is skipped).
fn built(language: &str, components: &str, name: &str) -> Option<PathBuf> {
    let path = workspace().join(components).join(format!("{name}.wasm"));
    if path.is_file() {
        Some(path)
    } else {
        println!("skipped: {language} guest not built (run scripts/build-guests.sh)");
        None
    }
}

/// Runs `wasmlet` with `args`, both streams read line by line as they come: the lines go to
/// the returned receiver as (whether from stderr, the line).
fn spawn(args: &[&str]) -> (std::process::Child, mpsc::Receiver<(bool, String)>) {
    let mut child = wasmlet()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running wasmlet");
    let (sender, lines) = mpsc::channel();
    let streams = [
        (
            false,
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        ),
        (true, Box::new(child.stderr.take().unwrap())),
    ];
    for (is_stderr, stream) in streams {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = sender.send((is_stderr, line));
            }
        });
    }
    (child, lines)
}

/// Every line until both streams close (the process ended), in order: (stdout, stderr).
fn drain(lines: &mpsc::Receiver<(bool, String)>, seen: &mut (String, String)) {
    loop {
        match lines.recv_timeout(PATIENCE) {
            Ok(line) => keep(seen, line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "wasmlet still running after {PATIENCE:?}:\n{}\n{}",
                    seen.0, seen.1
                )
            }
        }
    }
}

fn keep(seen: &mut (String, String), (is_stderr, line): (bool, String)) {
    let text = if is_stderr { &mut seen.1 } else { &mut seen.0 };
    text.push_str(&line);
    text.push('\n');
}

/// Reads lines until one contains `text`.
fn wait_for(lines: &mpsc::Receiver<(bool, String)>, seen: &mut (String, String), text: &str) {
    loop {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("waited in vain for {text:?}:\n{}\n{}", seen.0, seen.1));
        let found = line.1.contains(text);
        keep(seen, line);
        if found {
            return;
        }
    }
}

/// The position of `text` in `output`, failing the test when it is not there.
fn position(output: &str, text: &str) -> usize {
    output
        .find(text)
        .unwrap_or_else(|| panic!("no {text:?} in:\n{output}"))
}

#[test]
fn python_and_js_workers_get_their_hooks_and_terminate_and_exit_cleanly() {
    for (language, dir, components) in LANGUAGES {
        if built(language, components, "worker").is_none() {
            continue;
        }
        let manifest = format!("examples/{dir}/pods/worker.yaml");
        let (mut child, lines) = spawn(&["run", &manifest, "--stop-after", "1s"]);
        let mut seen = (String::new(), String::new());
        drain(&lines, &mut seen);
        let code = child.wait().unwrap().code();
        let (stdout, stderr) = seen;
        assert_eq!(code, Some(0), "{language}:\n{stdout}\n{stderr}");

        // postStart ran (and was done before the container counted as running), then the stop:
        // preStop, terminate with its reason and the grace left, a clean return from run.
        let post_start = position(&stdout, "[app:postStart] postStart: done");
        let pre_stop = position(&stdout, "[app:preStop] preStop: draining, ");
        let terminate = position(&stdout, "[app] run: terminate received (pod-deleted), ");
        let clean = position(&stdout, "[app] run: clean shutdown");
        assert!(
            post_start < pre_stop && pre_stop < terminate && terminate < clean,
            "{language}: out of order:\n{stdout}"
        );
        let grace = stdout[terminate..].lines().next().unwrap();
        let left: u64 = grace
            .split("), ")
            .nth(1)
            .and_then(|rest| rest.split(" ms of ").next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("{language}: no grace left in {grace:?}"));
        assert!(
            grace.ends_with(" ms of 10000 ms grace left") && left > 0 && left <= 10_000,
            "{language}: {grace}"
        );
        for event in [
            "Killing",
            "Stopping container app: pod deleted (grace period 10s)",
        ] {
            assert!(stderr.contains(event), "{language}: no {event}:\n{stderr}");
        }
        assert!(
            stderr.contains("Container app terminated with exit code 0"),
            "{language}:\n{stderr}"
        );
        println!("{language} worker: {grace}");
    }
}

/// One HTTP/1.0 GET: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The example manifest, serving on `port` and with its image as an absolute path, in `dir`.
fn web_manifest(example: &Path, component: &Path, port: u16, dir: &Path) -> PathBuf {
    let yaml = std::fs::read_to_string(example).unwrap();
    let yaml = yaml
        .lines()
        .map(|line| match line.trim_start() {
            l if l.starts_with("image:") => format!("    image: {}", component.display()),
            l if l.starts_with("containerPort:") => format!("      containerPort: {port}"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("web.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn python_and_js_web_services_are_ready_after_post_start_and_drain_on_delete() {
    for (language, dir, components) in LANGUAGES {
        let Some(component) = built(language, components, "web") else {
            continue;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let temp = tempfile::tempdir().unwrap();
        let example = workspace().join(format!("examples/{dir}/pods/web.yaml"));
        let manifest = web_manifest(&example, &component, port, temp.path());
        let (mut child, lines) = spawn(&["run", manifest.to_str().unwrap()]);
        let mut seen = (String::new(), String::new());
        wait_for(&lines, &mut seen, "[web:postStart] postStart: ready");
        // Traffic passes once the container is ready: postStart returned and the readiness
        // probe (on the same /healthz) passed; until then wasmlet's listener answers 503.
        let deadline = std::time::Instant::now() + PATIENCE;
        let (status, body) = loop {
            let (status, body) = get(port, "/healthz");
            if status.contains(" 200 ") || std::time::Instant::now() > deadline {
                break (status, body);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status.contains(" 200 "), "{language}: {status}\n{body}");
        assert_eq!(body, "ready\n", "{language}");
        let (status, body) = get(port, "/");
        assert!(status.contains(" 200 "), "{language}: {status}");
        assert_eq!(body, format!("hello from {language}\n"));
        // Delete the pod as Ctrl-C would: preStop turns it not ready, then it drains.
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        drain(&lines, &mut seen);
        let code = child.wait().unwrap().code();
        let (stdout, stderr) = seen;
        assert_eq!(code, Some(0), "{language}:\n{stdout}\n{stderr}");
        position(
            &stdout,
            "[web:preStop] preStop: not ready any more, draining, ",
        );
        assert!(stderr.contains("Draining"), "{language}:\n{stderr}");
        assert!(
            stderr.contains("Container web terminated with exit code 0"),
            "{language}:\n{stderr}"
        );
    }
}
