//! The lifecycle benchmark: how precisely wasmlet kills at a deadline, how fast a pod starts,
//! how fast a cooperative guest stops. Prints a table.
//!
//! `cargo bench -p wasmlet --bench lifecycle` (add `-- --kills 300` for more samples).
//!
//! - kill overshoot: from the grace deadline to the moment the guest stopped executing (its trap,
//!   or the kill taking its future away), for a CPU-bound guest (`spinner`) and a guest blocked in
//!   a host sleep (`stubborn`), alone and beside 50 spinning guests on this machine's cores.
//! - start: component already compiled → `Running` with postStart done (`cooperative`, whose
//!   postStart is an instance of its own).
//! - terminate: delete → `Completed` for `cooperative` (preStop instance, terminate, clean exit).

use std::time::{Duration, Instant};

use wasmlet::{Host, HostConfig, Pod, PodSpec};
use wasmlet_examples::components;

struct Args {
    kills: usize,
    starts: usize,
    neighbours: usize,
}

fn args() -> Args {
    let mut args = Args {
        kills: 100,
        starts: 200,
        neighbours: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--kills" => args.kills = value(),
            "--starts" => args.starts = value(),
            "--neighbours" => args.neighbours = value(),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn pod(name: &str, component: &str, grace: Duration) -> PodSpec {
    let mut spec = PodSpec::for_component(component, Vec::new());
    spec.name = name.into();
    spec.termination_grace_period = Some(grace);
    spec
}

async fn start(host: &Host, spec: PodSpec) -> Pod {
    let pod = host.start_pod(spec).await.expect("starting a pod");
    pod.wait_running().await;
    pod
}

/// Overshoot of each kill past its deadline.
async fn kill_overshoots(host: &Host, component: &str, count: usize) -> Vec<Duration> {
    let grace = Duration::from_millis(20);
    let mut overshoots = Vec::with_capacity(count);
    for index in 0..count {
        let pod = start(host, pod(&format!("victim-{index}"), component, grace)).await;
        // Let the guest get going (spinning, or asleep in its host call).
        tokio::time::sleep(Duration::from_millis(3)).await;
        let deadline = Instant::now() + grace;
        pod.delete(None);
        pod.wait().await;
        let killed = pod
            .events()
            .into_iter()
            .find(|event| event.reason == "Killed")
            .expect("the guest should have been killed");
        overshoots.push(killed.at.saturating_duration_since(deadline));
    }
    overshoots
}

struct Row {
    metric: String,
    samples: Vec<Duration>,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args = args();
    let host = Host::new(HostConfig::default()).expect("creating the host");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Compile once, outside the measurements.
    for component in [
        components::SPINNER,
        components::STUBBORN,
        components::COOPERATIVE,
    ] {
        host.load_component(component.as_ref()).expect("loading");
    }
    let mut rows = Vec::new();

    let mut starts = Vec::new();
    let mut terminates = Vec::new();
    for index in 0..args.starts {
        let began = Instant::now();
        let pod = start(
            &host,
            pod(
                &format!("start-{index}"),
                components::COOPERATIVE,
                Duration::from_secs(10),
            ),
        )
        .await;
        starts.push(began.elapsed());
        let deleted = Instant::now();
        pod.delete(None);
        pod.wait().await;
        terminates.push(deleted.elapsed());
    }
    rows.push(Row {
        metric: "start → Running (postStart done)".into(),
        samples: starts,
    });
    rows.push(Row {
        metric: "terminate, cooperative (delete → Completed)".into(),
        samples: terminates,
    });

    for (label, component) in [
        ("CPU-bound", components::SPINNER),
        ("host-blocked", components::STUBBORN),
    ] {
        rows.push(Row {
            metric: format!("kill overshoot, {label}, alone"),
            samples: kill_overshoots(&host, component, args.kills).await,
        });
    }

    let mut neighbours = Vec::new();
    for index in 0..args.neighbours {
        neighbours.push(
            start(
                &host,
                pod(
                    &format!("neighbour-{index}"),
                    components::SPINNER,
                    Duration::ZERO,
                ),
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (label, component) in [
        ("CPU-bound", components::SPINNER),
        ("host-blocked", components::STUBBORN),
    ] {
        rows.push(Row {
            metric: format!(
                "kill overshoot, {label}, {} spinning neighbours",
                args.neighbours
            ),
            samples: kill_overshoots(&host, component, args.kills).await,
        });
    }
    for neighbour in &neighbours {
        neighbour.kill();
    }
    for neighbour in &neighbours {
        neighbour.wait().await;
    }

    println!();
    println!(
        "wasmlet lifecycle benchmark — {cores} cores, time slice {:?}",
        HostConfig::default().time_slice
    );
    println!();
    println!(
        "| {:<52} | {:>5} | {:>9} | {:>9} | {:>9} |",
        "metric", "n", "p50", "p99", "max"
    );
    println!(
        "|{:-<54}|{:->7}|{:->11}|{:->11}|{:->11}|",
        "", "", "", "", ""
    );
    for mut row in rows {
        row.samples.sort();
        println!(
            "| {:<52} | {:>5} | {:>9} | {:>9} | {:>9} |",
            row.metric,
            row.samples.len(),
            show(percentile(&row.samples, 0.5)),
            show(percentile(&row.samples, 0.99)),
            show(*row.samples.last().unwrap()),
        );
    }
}
