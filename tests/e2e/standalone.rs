//! `wasmlet::standalone`: one container's main process run without pods, as the containerd shim
//! runs it — output, exit codes as a pod's status reports them, terminate, and the kill.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmlet::standalone::{
    LoadedComponent, Standalone, StandaloneCommand, StandaloneConfig, StandaloneExit,
};
use wasmlet::{LogStream, TerminationReason};
use wasmlet_examples::components;

/// A command of `component` with `args` after its name, whose output lines land in the list.
fn command(name: &str, args: &[&str], env: &[(&str, &str)]) -> (StandaloneCommand, Lines) {
    let lines: Lines = Default::default();
    let sink = lines.clone();
    let command = StandaloneCommand {
        name: name.into(),
        args: std::iter::once(name)
            .chain(args.iter().copied())
            .map(String::from)
            .collect(),
        env: env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        working_dir: None,
        mounts: Vec::new(),
        memory_limit: None,
        output: Arc::new(move |stream, line| sink.lock().unwrap().push((stream, line.into()))),
    };
    (command, lines)
}

type Lines = Arc<Mutex<Vec<(LogStream, String)>>>;

fn load(standalone: &Standalone, path: &str) -> Arc<LoadedComponent> {
    standalone
        .load(&std::fs::read(path).unwrap(), Path::new(path))
        .unwrap()
}

/// Waits until a line containing `text` was written.
async fn printed(lines: &Lines, text: &str) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !lines.lock().unwrap().iter().any(|(_, l)| l.contains(text)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never printed {text:?}: {:?}", lines.lock().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reports_its_output_and_exit_code_as_a_pod_would() {
    let standalone = Standalone::start(StandaloneConfig::default()).unwrap();
    let hello = load(&standalone, components::HELLO);

    let (ok, lines) = command("hello", &[], &[("GREETING", "Hi")]);
    let exit = standalone.run(hello.clone(), ok).unwrap().wait().await;
    assert_eq!(
        exit,
        StandaloneExit {
            code: 0,
            reason: "Completed",
            message: None
        }
    );
    assert!(
        lines.lock().unwrap().contains(&(
            LogStream::Stdout,
            "Hi from a plain wasi:cli command!".into()
        )),
        "{lines:?}"
    );

    // WASI 0.2's exit says only ok or err.
    let (failing, _) = command("hello", &["--exit", "7"], &[]);
    let exit = standalone.run(hello, failing).unwrap().wait().await;
    assert_eq!((exit.code, exit.reason), (1, "Error"));

    let faulty = load(&standalone, components::FAULTY);
    let (trap, _) = command("faulty", &[], &[("FAULT", "trap")]);
    let exit = standalone.run(faulty, trap).unwrap().wait().await;
    assert_eq!((exit.code, exit.reason), (134, "Error"));
    assert!(exit.message.unwrap().starts_with("wasm trap:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_reaches_a_cooperative_guest_with_its_reason_and_grace() {
    let standalone = Standalone::start(StandaloneConfig::default()).unwrap();
    let (cooperative, lines) = command("cooperative", &[], &[]);
    let running = standalone
        .run(load(&standalone, components::COOPERATIVE), cooperative)
        .unwrap();
    printed(&lines, "run: started").await;
    let control = running.control();
    control.terminate(
        TerminationReason::PodDeleted,
        "SIGTERM".into(),
        Duration::from_secs(30),
    );
    assert!(control.terminating());
    let exit = running.wait().await;
    assert_eq!((exit.code, exit.reason), (0, "Completed"));
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().any(|(_, line)| line
            .contains("terminate received (TerminationReason::PodDeleted)")
            && line.contains("of 30000 ms grace")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_ends_a_spinning_guest_with_137() {
    let standalone = Standalone::start(StandaloneConfig::default()).unwrap();
    let (spinner, lines) = command("spinner", &[], &[]);
    let running = standalone
        .run(load(&standalone, components::SPINNER), spinner)
        .unwrap();
    printed(&lines, "spinner: spinning").await;
    let control = running.control();
    assert!(control.kill());
    assert!(!control.kill(), "a second kill does nothing");
    let exit = tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("the kill ended the guest");
    assert_eq!((exit.code, exit.reason), (137, "Killed"));
}
