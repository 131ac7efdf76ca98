//! Plugins: an embedder's own WIT (`examples/plugins/wit`), its host interface given to guests
//! (`Imports`), and calls into a container's exports under its lifecycle (`Pod::call`) — the
//! drain of calls in flight at a delete, the kill at the deadline, a call's own timeout, and
//! calls refused while the container is not running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmlet::wasmtime::component::HasSelf;
use wasmlet::{CallError, CallOptions, Host, HostConfig, Imports, Pod};
use wasmlet_examples::plugins::{Plugin, example};

use crate::support::{events, finished, history, reasons, single, terminated};

/// The plugins' log lines, as their host gets them.
type Log = Arc<tokio::sync::watch::Sender<Vec<String>>>;

fn new_log() -> Log {
    Arc::new(tokio::sync::watch::Sender::new(Vec::new()))
}

/// The host side of `example:plugins/host` for one instance: its log goes to `log`, with the
/// container's name.
struct PluginHost {
    container: String,
    greeting: Option<String>,
    log: Log,
}

impl example::plugins::host::Host for PluginHost {
    async fn log(&mut self, message: String) {
        let line = format!("{}: {message}", self.container);
        self.log.send_modify(|lines| lines.push(line));
    }

    async fn get_config(&mut self, key: String) -> Option<String> {
        (key == "greeting").then(|| self.greeting.clone()).flatten()
    }
}

/// The embedder's interface, logging into `log`, greeting with `greeting`.
fn plugin_imports(greeting: &str, log: Log) -> Imports {
    let greeting = greeting.to_string();
    Imports::new().with(
        "example:plugins/host",
        |linker| {
            example::plugins::host::add_to_linker::<_, HasSelf<PluginHost>>(linker, |state| {
                state.embedder_data::<PluginHost>()
            })
        },
        move |instance| PluginHost {
            container: instance.container.clone(),
            greeting: Some(greeting.clone()),
            log: log.clone(),
        },
    )
}

/// Calls `on-message(message)` of container `app` through the typed bindings.
async fn on_message(
    pod: &Pod,
    message: &str,
    options: CallOptions,
) -> Result<Result<String, String>, CallError> {
    let message = message.to_string();
    pod.call("app", options, move |store, instance| {
        Box::pin(async move {
            let plugin = Plugin::new(&mut *store, instance)?;
            plugin
                .example_plugins_handler()
                .call_on_message(&mut *store, &message)
                .await
        })
    })
    .await
}

/// A greeter plugin in a pod of its own, with the embedder's interface for this pod alone.
async fn greeter(name: &str, grace_seconds: u64, log: Log) -> Pod {
    let spec = single(name, "greeter-plugin", grace_seconds, "");
    let pod = crate::support::host()
        .start_pod_with(spec, plugin_imports("Hi", log))
        .await
        .expect("starting the plugin");
    pod.wait_running().await;
    pod
}

#[tokio::test]
async fn a_plugin_is_called_and_calls_its_host_back() {
    let log = new_log();
    let pod = greeter("plugin-call", 5, log.clone()).await;
    let reply = on_message(&pod, "world", CallOptions::default()).await;
    assert_eq!(reply, Ok(Ok("Hi, world!".to_string())));
    let failed = on_message(&pod, "fail", CallOptions::default()).await;
    assert_eq!(failed, Ok(Err("asked to fail".to_string())));
    // A trap ends that call's instance alone.
    let trapped = on_message(&pod, "trap", CallOptions::default()).await;
    assert!(
        matches!(&trapped, Err(CallError::Failed { message, .. }) if message.contains("unreachable")),
        "{trapped:?}"
    );
    assert_eq!(
        on_message(&pod, "again", CallOptions::default()).await,
        Ok(Ok("Hi, again!".to_string()))
    );
    // Without bindings: the same export, in WAVE.
    let wave = pod
        .call_wave(
            "app",
            "example:plugins/handler#on-message",
            &["\"wave\""],
            CallOptions::default(),
        )
        .await;
    assert_eq!(wave, Ok(vec!["ok(\"Hi, wave!\")".to_string()]));
    let missing = pod
        .call_wave(
            "app",
            "example:plugins/handler#nope",
            &[],
            CallOptions::default(),
        )
        .await;
    assert!(
        matches!(&missing, Err(CallError::Failed { message, .. })
            if message.contains("exports example:plugins/handler@0.1.0#on-message")),
        "{missing:?}"
    );
    assert!(matches!(
        on_message_in(&pod, "other").await,
        Err(CallError::NoSuchContainer { .. })
    ));
    pod.delete(None);
    let status = finished(&pod).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    let calls = reasons(&history(&pod).await);
    assert!(calls.contains(&"CallFailed".to_string()), "{calls:?}");
}

/// A call to a container the pod does not have.
async fn on_message_in(pod: &Pod, container: &str) -> Result<Vec<String>, CallError> {
    pod.call_wave(
        container,
        "example:plugins/handler#on-message",
        &["\"x\""],
        CallOptions::default(),
    )
    .await
}

#[tokio::test]
async fn a_component_importing_what_no_one_provides_is_refused_by_name() {
    let error = crate::support::host()
        .start_pod(single("plugin-unlinked", "greeter-plugin", 1, ""))
        .await
        .expect_err("nothing provides example:plugins/host");
    let error = format!("{error:#}");
    assert!(error.contains("example:plugins/host"), "{error}");
}

#[tokio::test]
async fn calls_in_flight_drain_at_a_delete_and_new_ones_are_refused() {
    let log = new_log();
    let pod = greeter("plugin-drain", 10, log.clone()).await;
    let in_flight = tokio::spawn({
        let pod = pod.clone();
        async move { on_message(&pod, "sleep 400", CallOptions::default()).await }
    });
    wait_for_log(&log, "app: sleeping 400 ms").await;
    pod.delete(None);
    let refused = on_message(&pod, "late", CallOptions::default()).await;
    assert!(
        matches!(&refused, Err(CallError::Stopping { .. })),
        "{refused:?}"
    );
    assert_eq!(in_flight.await.unwrap(), Ok(Ok("slept 400 ms".to_string())));
    let status = finished(&pod).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    let history = history(&pod).await;
    let reasons = reasons(&history);
    let draining = events(&history)
        .into_iter()
        .find(|event| event.reason == "Draining")
        .expect("a Draining event");
    assert!(
        draining.message.contains("1 call in flight"),
        "{draining:?}"
    );
    assert!(reasons.contains(&"Drained".to_string()), "{reasons:?}");
    assert!(!reasons.contains(&"KilledCalls".to_string()), "{reasons:?}");
    let refused_after = on_message(&pod, "after", CallOptions::default()).await;
    assert!(
        matches!(&refused_after, Err(CallError::NotRunning { state, .. }) if state.contains("Completed")),
        "{refused_after:?}"
    );
}

#[tokio::test]
async fn calls_still_running_at_the_deadline_are_killed_and_their_callers_told() {
    for (message, pod_name) in [("spin", "plugin-kill-spin"), ("block", "plugin-kill-block")] {
        let log = new_log();
        let pod = greeter(pod_name, 1, log.clone()).await;
        let in_flight = tokio::spawn({
            let pod = pod.clone();
            async move {
                let result = on_message(&pod, message, CallOptions::default()).await;
                (result, Instant::now())
            }
        });
        wait_for_log(&log, "app: ").await;
        let grace = Duration::from_millis(300);
        let deleted = Instant::now();
        pod.delete(Some(grace));
        let (result, returned) = in_flight.await.unwrap();
        assert!(
            matches!(&result, Err(CallError::Killed { .. })),
            "{message}: {result:?}"
        );
        let late = returned.saturating_duration_since(deleted + grace);
        assert!(
            returned >= deleted + grace && late < Duration::from_millis(100),
            "{message}: the caller heard of the kill {late:?} after the deadline"
        );
        let status = finished(&pod).await;
        assert_eq!(terminated(&status, 0).exit_code, 137, "{message}");
        let reasons = reasons(&history(&pod).await);
        assert!(reasons.contains(&"KilledCalls".to_string()), "{reasons:?}");
        assert!(!reasons.contains(&"Drained".to_string()), "{reasons:?}");
    }
}

#[tokio::test]
async fn a_call_timeout_kills_that_call_alone() {
    let log = new_log();
    let pod = greeter("plugin-timeout", 5, log).await;
    let timed_out = on_message(
        &pod,
        "spin",
        CallOptions::timeout(Duration::from_millis(100)),
    )
    .await;
    assert!(
        matches!(&timed_out, Err(CallError::TimedOut { after, .. }) if *after == Duration::from_millis(100)),
        "{timed_out:?}"
    );
    assert_eq!(
        on_message(&pod, "still here", CallOptions::default()).await,
        Ok(Ok("Hi, still here!".to_string()))
    );
    pod.delete(None);
    let status = finished(&pod).await;
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
}

#[tokio::test]
async fn a_call_before_post_start_returns_is_refused() {
    let spec = single(
        "plugin-waiting",
        "greeter-plugin",
        1,
        "lifecycle:\n  postStart:\n    exec:\n      command: [sh, -c, \"sleep 1\"]",
    );
    let pod = crate::support::host()
        .start_pod_with(spec, plugin_imports("Hi", new_log()))
        .await
        .unwrap();
    let refused = on_message(&pod, "early", CallOptions::default()).await;
    assert!(
        matches!(&refused, Err(CallError::NotRunning { .. })),
        "{refused:?}"
    );
    pod.wait_running().await;
    assert_eq!(
        on_message(&pod, "later", CallOptions::default()).await,
        Ok(Ok("Hi, later!".to_string()))
    );
    pod.kill();
    finished(&pod).await;
}

#[tokio::test]
async fn host_wide_imports_reach_every_pod() {
    let log = new_log();
    let host = Host::new(HostConfig {
        imports: plugin_imports("Howdy", log.clone()),
        ..HostConfig::default()
    })
    .unwrap();
    let pod = host
        .start_pod(single("plugin-host-wide", "greeter-plugin", 1, ""))
        .await
        .unwrap();
    pod.wait_running().await;
    assert_eq!(
        on_message(&pod, "there", CallOptions::default()).await,
        Ok(Ok("Howdy, there!".to_string()))
    );
    pod.kill();
    finished(&pod).await;
}

/// Waits (at most 30 s) until the plugins' log has a line starting with `prefix`.
async fn wait_for_log(log: &Log, prefix: &str) {
    let mut lines = log.subscribe();
    let found = lines.wait_for(|lines| lines.iter().any(|line| line.starts_with(prefix)));
    tokio::time::timeout(Duration::from_secs(30), found)
        .await
        .unwrap_or_else(|_| panic!("no log line {prefix:?}"))
        .expect("the log is kept");
}

#[tokio::test]
async fn a_python_plugin_is_called_and_calls_its_host_back() {
    let component = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/components-py/plugin.wasm");
    if !component.is_file() {
        println!("skipped: Python plugin not built (run scripts/build-guests.sh python)");
        return;
    }
    let log = new_log();
    let spec = wasmlet::PodSpec::component(&component)
        .name("python-plugin")
        .container_name("app")
        .grace_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let pod = crate::support::host()
        .start_pod_with(spec, plugin_imports("Hi", log.clone()))
        .await
        .expect("starting the Python plugin");
    pod.wait_running().await;
    assert_eq!(
        on_message(&pod, "world", CallOptions::default()).await,
        Ok(Ok("Hi, world!".to_string()))
    );
    assert_eq!(
        on_message(&pod, "fail", CallOptions::default()).await,
        Ok(Err("asked to fail".to_string()))
    );
    // A Python loop is killed at the deadline like any other.
    let spinning = tokio::spawn({
        let pod = pod.clone();
        async move { on_message(&pod, "spin", CallOptions::default()).await }
    });
    wait_for_log(&log, "app: spinning").await;
    pod.delete(None);
    assert!(matches!(
        spinning.await.unwrap(),
        Err(CallError::Killed { .. })
    ));
    let status = finished(&pod).await;
    assert_eq!(terminated(&status, 0).exit_code, 137);
}
