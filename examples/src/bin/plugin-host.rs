//! A plugin host that embeds wasmlet. It defines its own WIT (`examples/plugins/wit`,
//! `example:plugins`): an export the host calls (`handler.on-message`) and an interface the
//! plugins call back (`host.log`, `host.get-config`). It runs three plugins — two in Rust, one
//! in Python when `scripts/build-guests.sh python` has built it — calls them while they run,
//! then deletes them all with a one-second grace period while calls are still in flight: the
//! calls that finish in time drain, the one stuck in a loop is killed at the deadline and its
//! caller gets a clean error. It prints what happened.
//!
//! `cargo run -p wasmlet-examples --bin plugin-host`

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmlet::wasmtime::component::HasSelf;
use wasmlet::{CallError, CallOptions, Host, HostConfig, Imports, Pod, PodSpec, PodUpdate};
use wasmlet_examples::components;
use wasmlet_examples::plugins::{Plugin, example};

/// What the host keeps for one plugin instance: whose it is, and the host's settings.
struct PluginHost {
    plugin: String,
    settings: Arc<HashMap<String, HashMap<String, String>>>,
}

impl example::plugins::host::Host for PluginHost {
    async fn log(&mut self, message: String) {
        println!("{:>10} | log: {message}", self.plugin);
    }

    async fn get_config(&mut self, key: String) -> Option<String> {
        self.settings.get(&self.plugin)?.get(&key).cloned()
    }
}

/// Calls `on-message(message)` of `pod`'s plugin through the typed bindings.
async fn on_message(pod: &Pod, message: &str) -> Result<Result<String, String>, CallError> {
    let message = message.to_string();
    pod.call("plugin", CallOptions::default(), move |store, instance| {
        Box::pin(async move {
            let plugin = Plugin::new(&mut *store, instance)?;
            let handler = plugin.example_plugins_handler();
            handler.call_on_message(&mut *store, &message).await
        })
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/components-py/plugin.wasm");
    let mut plugins = vec![
        (
            "greeter",
            components::GREETER_PLUGIN.to_string(),
            "sleep 300",
        ),
        ("cruncher", components::GREETER_PLUGIN.to_string(), "spin"),
    ];
    if python.exists() {
        plugins.push(("pythonista", python.display().to_string(), "sleep 300"));
    } else {
        println!("(no Python plugin: `scripts/build-guests.sh python` builds it)");
    }
    let settings: HashMap<String, HashMap<String, String>> = [
        ("greeter", "Hello"),
        ("cruncher", "Crunching"),
        ("pythonista", "Hi from Python"),
    ]
    .into_iter()
    .map(|(plugin, greeting)| {
        let settings = HashMap::from([("greeting".to_string(), greeting.to_string())]);
        (plugin.to_string(), settings)
    })
    .collect();
    let settings = Arc::new(settings);
    // The host's interface, for every plugin: each instance gets a state of its own.
    let imports = Imports::new().with(
        "example:plugins/host",
        |linker| {
            example::plugins::host::add_to_linker::<_, HasSelf<PluginHost>>(linker, |state| {
                state.embedder_data::<PluginHost>()
            })
        },
        move |instance| PluginHost {
            plugin: instance.pod.clone(),
            settings: settings.clone(),
        },
    );
    let host = Host::new(HostConfig {
        imports,
        ..HostConfig::default()
    })?;

    let mut pods = Vec::new();
    let mut watchers = Vec::new();
    for (name, component, _) in &plugins {
        let spec = PodSpec::component(component)
            .name(*name)
            .container_name("plugin")
            .grace_period(Duration::from_secs(1))
            .build()?;
        let pod = host.start_pod(spec).await?;
        let mut updates = pod.watch();
        let name = name.to_string();
        watchers.push(tokio::spawn(async move {
            while let Some(update) = updates.next().await {
                match update {
                    PodUpdate::Event(event) => {
                        println!("{name:>10} | {:<11} {}", event.reason, event.message)
                    }
                    PodUpdate::Log(line) => println!("{name:>10} | > {}", line.line),
                }
            }
        }));
        pods.push(pod);
    }
    for pod in &pods {
        pod.wait_running().await;
    }

    println!("--- calling the plugins ---");
    for pod in &pods {
        let started = Instant::now();
        let answer = on_message(pod, "world").await;
        println!(
            "{:>10} | on-message(\"world\") -> {answer:?} in {:.1} ms",
            pod.name(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    println!("--- a call in flight to each, then a delete (grace period 1s) ---");
    let mut in_flight = Vec::new();
    for (pod, (_, _, message)) in pods.iter().zip(&plugins) {
        let pod = pod.clone();
        let message = message.to_string();
        in_flight.push(tokio::spawn(async move {
            let answer = on_message(&pod, &message).await;
            (pod.name().to_string(), message, answer, Instant::now())
        }));
    }
    // Until each plugin has started on its message (each logs as it does).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deleted = Instant::now();
    for pod in &pods {
        pod.delete(None);
    }
    let late = on_message(&pods[0], "too late").await;
    println!("  greeter | a call after the delete -> {late:?}");
    let mut answers = Vec::new();
    for call in in_flight {
        answers.push(call.await?);
    }
    let mut ends = Vec::new();
    for pod in &pods {
        let status = pod.wait().await;
        let terminated = (status.container_statuses.unwrap_or_default())
            .first()
            .and_then(|status| status.state.clone())
            .and_then(|state| state.terminated)
            .unwrap_or_default();
        ends.push((terminated.reason.unwrap_or_default(), terminated.exit_code));
    }

    // The plugins' streams end with their pods.
    for watcher in watchers {
        watcher.await?;
    }
    println!("--- what the calls in flight came to ---");
    println!(
        "{:<10}  {:<10}  {:>9}  {:<22}  answer",
        "plugin", "message", "after", "plugin ended"
    );
    for ((plugin, message, answer, returned), (reason, exit_code)) in answers.into_iter().zip(ends)
    {
        let after = returned.saturating_duration_since(deleted);
        let answer = match answer {
            Ok(Ok(text)) => format!("ok: {text}"),
            Ok(Err(text)) => format!("the plugin's error: {text}"),
            Err(error) => format!("error: {error}"),
        };
        println!(
            "{plugin:<10}  {message:<10}  {:>7.3} s  {:<22}  {answer}",
            after.as_secs_f64(),
            format!("{reason} ({exit_code})")
        );
    }
    // A large plugin (the Python one) started on the baseline compiler's code: let its
    // optimised build reach the compile cache, so that the next run starts on it.
    host.finish_background_compiles().await;
    Ok(())
}
