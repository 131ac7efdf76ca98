//! A plugin host that embeds wasmlet: it loads three plugins (one cooperative, one CPU-bound,
//! one that ignores terminate), streams their events and output, shuts them all down with a
//! one-second grace period, and prints how each one ended.
//!
//! `cargo run -p wasmlet-examples --bin plugin-host`

use std::time::{Duration, Instant};

use wasmlet::{Host, HostConfig, PodSpec, PodUpdate};
use wasmlet_examples::components;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let host = Host::new(HostConfig::default())?;
    let plugins = [
        ("greeter", components::COOPERATIVE),
        ("cruncher", components::SPINNER),
        ("sleeper", components::STUBBORN),
    ];

    let mut pods = Vec::new();
    for (name, component) in plugins {
        let spec = PodSpec::component(component)
            .name(name)
            .container_name("plugin")
            .grace_period(Duration::from_secs(1))
            .build()?;
        let pod = host.start_pod(spec).await?;
        // Every plugin's events and output, as they happen.
        let mut updates = pod.watch();
        tokio::spawn(async move {
            while let Some(update) = updates.next().await {
                match update {
                    PodUpdate::Event(event) => {
                        println!("{name:>9} | {:<10} {}", event.reason, event.message)
                    }
                    PodUpdate::Log(line) => println!("{name:>9} | > {}", line.line),
                }
            }
        });
        pods.push((name, pod));
    }
    for (_, pod) in &pods {
        pod.wait_running().await;
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("--- shutting the plugins down (grace period 1s) ---");
    let stopping = Instant::now();
    for (_, pod) in &pods {
        pod.delete(None);
    }

    let mut summary = Vec::new();
    for (name, pod) in &pods {
        let status = pod.wait().await;
        let container = &status.container_statuses.unwrap_or_default()[0];
        let terminated = container
            .state
            .clone()
            .and_then(|s| s.terminated)
            .unwrap_or_default();
        summary.push((
            *name,
            terminated.reason.unwrap_or_default(),
            terminated.exit_code,
            terminated.message.unwrap_or_default(),
        ));
    }
    println!(
        "--- all plugins stopped in {:.3}s ---",
        stopping.elapsed().as_secs_f64()
    );
    println!("{:<9}  {:<10}  {:>4}  how", "plugin", "reason", "exit");
    for (name, reason, exit_code, message) in summary {
        println!("{name:<9}  {reason:<10}  {exit_code:>4}  {message}");
    }
    Ok(())
}
