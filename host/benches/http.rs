//! The HTTP benchmark: requests/s and latency of the `http-hello` handler served by wasmlet and,
//! in the same run, by `wasmtime serve` on the same component; then the drain time under load.
//!
//! ```text
//! host/benches/setup-wasmtime-serve.sh           # once: builds the peer into target/bench-tools
//! cargo bench -p wasmlet --bench http            # -- --seconds 5 --connections 32 --runs 3
//! ```
//!
//! Each server is loaded `--runs` times, the servers taking turns, so that a noisy spell of the
//! machine falls on all of them; each cell is the median over the runs with their range, and
//! the ratio to `wasmtime serve` is taken within each run. Without the peer the wasmlet rows
//! still print. The load comes from this process: keep-alive
//! connections, each sending `GET /` as soon as the previous answer is in, for a fixed time.
//! Server and load share the machine's cores, as a load generator on the same host would.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use wasmlet::{Host, HostConfig, PodSpec};
use wasmlet_examples::components;

mod common;
use common::{median_and_range, percentile, show};

struct Args {
    seconds: u64,
    connections: usize,
    runs: usize,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 5,
        connections: 32,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--seconds" => args.seconds = value() as u64,
            "--connections" => args.connections = value(),
            "--runs" => args.runs = value().max(1),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What one load run measured.
struct Load {
    requests: usize,
    /// Connections refused.
    refused: usize,
    /// Requests sent that got no 200.
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// `connections` keep-alive clients sending `GET path` back to back for `duration`.
async fn load(port: u16, path: &'static str, connections: usize, duration: Duration) -> Load {
    let started = Instant::now();
    let until = started + duration;
    let clients: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(client(port, path, until)))
        .collect();
    let mut latencies = Vec::new();
    let (mut refused, mut failed) = (0, 0);
    for client in clients {
        let (mut samples, client_refused, client_failed) = client.await.unwrap();
        latencies.append(&mut samples);
        refused += client_refused;
        failed += client_failed;
    }
    latencies.sort();
    Load {
        requests: latencies.len(),
        refused,
        failed,
        elapsed: started.elapsed(),
        latencies,
    }
}

/// One client: its latencies, connections refused, requests failed.
async fn client(port: u16, path: &'static str, until: Instant) -> (Vec<Duration>, usize, usize) {
    let mut samples = Vec::new();
    let (mut refused, mut failed) = (0, 0);
    while Instant::now() < until {
        let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
        else {
            refused += 1;
            continue;
        };
        tokio::spawn(connection);
        while Instant::now() < until {
            let request = http::Request::get(path)
                .header("host", format!("127.0.0.1:{port}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let sent = Instant::now();
            let answer = match sender.send_request(request).await {
                Ok(response) if response.status() == 200 => {
                    response.into_body().collect().await.is_ok()
                }
                Ok(_) => false,
                // The server closed the connection between requests (a drain): not a failure.
                Err(error) if error.is_canceled() || error.is_closed() => break,
                Err(_) => false,
            };
            if answer {
                samples.push(sent.elapsed());
            } else {
                failed += 1;
                break; // a fresh connection
            }
        }
    }
    (samples, refused, failed)
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http_hello_pod(port: u16, name: &str) -> PodSpec {
    PodSpec::component(components::HTTP_HELLO)
        .name(name)
        .port(port)
        .build()
        .expect("a valid pod")
}

/// `target/bench-tools/bin/wasmtime`, built by `setup-wasmtime-serve.sh`.
fn wasmtime_serve() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tools/bin/wasmtime");
    path.exists().then_some(path)
}

/// Serves http-hello from `host` and loads it (after a warm-up).
async fn serve_and_load(host: &Host, args: &Args, duration: Duration) -> Load {
    let port = free_port();
    let pod = host
        .start_pod(http_hello_pod(port, "bench"))
        .await
        .expect("starting the pod");
    pod.wait_running().await;
    wait_listening(port).await;
    load(port, "/", 4, Duration::from_millis(500)).await;
    let measured = load(port, "/", args.connections, duration).await;
    pod.delete(Some(Duration::from_secs(5)));
    pod.wait().await;
    measured
}

/// Serves http-hello with `wasmtime serve` (`options` besides) and loads it (after a warm-up).
async fn serve_with_wasmtime(
    wasmtime: &Path,
    options: &[&str],
    args: &Args,
    duration: Duration,
) -> Load {
    let port = free_port();
    let mut child = std::process::Command::new(wasmtime)
        .arg("serve")
        .arg("-Scli")
        .args(options)
        .arg(format!("--addr=127.0.0.1:{port}"))
        .arg(components::HTTP_HELLO)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting wasmtime serve");
    wait_listening(port).await;
    load(port, "/", 4, Duration::from_millis(500)).await;
    let measured = load(port, "/", args.connections, duration).await;
    let _ = child.kill();
    let _ = child.wait();
    measured
}

/// The servers compared: wasmlet as it runs by default (instances from its pool) and
/// allocating every instance on demand, to tell that difference apart; `wasmtime serve` on the
/// same component as it runs by default (with its pooling allocator) and on demand.
const SERVERS: [&str; 4] = [
    "wasmlet",
    "wasmlet, on-demand allocator",
    "wasmtime serve",
    "wasmtime serve, on-demand allocator",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let duration = Duration::from_secs(args.seconds);
    let host = Host::new(HostConfig::default()).expect("creating the host");
    let on_demand = Host::new(HostConfig {
        instance_pool: None,
        ..HostConfig::default()
    })
    .expect("creating the host without a pool");
    let peer = wasmtime_serve();
    // Per server, a load per run.
    let mut runs: Vec<Vec<Load>> = SERVERS.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.runs {
        for (server, loads) in runs.iter_mut().enumerate() {
            let measured = match (server, &peer) {
                (0, _) => serve_and_load(&host, &args, duration).await,
                (1, _) => serve_and_load(&on_demand, &args, duration).await,
                (2, Some(wasmtime)) => serve_with_wasmtime(wasmtime, &[], &args, duration).await,
                (3, Some(wasmtime)) => {
                    let options = ["-O", "pooling-allocator=n"];
                    serve_with_wasmtime(wasmtime, &options, &args, duration).await
                }
                _ => continue,
            };
            loads.push(measured);
        }
    }

    // Drain under load: a delete while `connections` clients keep 100 ms requests in flight.
    let port = free_port();
    let pod = host
        .start_pod(http_hello_pod(port, "drain"))
        .await
        .expect("starting the pod");
    pod.wait_running().await;
    wait_listening(port).await;
    let loading = tokio::spawn(load(
        port,
        "/sleep?ms=100",
        args.connections,
        Duration::from_secs(3),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deleted = Instant::now();
    pod.delete(Some(Duration::from_secs(30)));
    let status = pod.wait().await;
    let drain_time = deleted.elapsed();
    let drain_load = loading.await.unwrap();
    let exit_code = status.container_statuses.unwrap()[0]
        .state
        .as_ref()
        .and_then(|state| state.terminated.as_ref())
        .map(|terminated| terminated.exit_code);
    let in_flight = pod
        .events()
        .iter()
        .find(|event| event.reason == "Draining")
        .map(|event| event.message.clone())
        .unwrap_or_default();

    println!();
    println!(
        "HTTP: `http-hello` GET /, {} keep-alive connections for {} s, load from the same \
         process ({} cores); median (range) of {} runs",
        args.connections,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.runs,
    );
    println!();
    println!(
        "| server | requests/s | p50 | p99 | failed | requests/s vs wasmtime serve (same run) |"
    );
    println!("|---|---|---|---|---|---|");
    let peer_rates: Vec<f64> = runs[2].iter().map(Load::rate).collect();
    for (name, loads) in SERVERS.iter().zip(&runs) {
        if loads.is_empty() {
            continue;
        }
        let rates: Vec<f64> = loads.iter().map(Load::rate).collect();
        let ratio = if peer_rates.len() == rates.len() {
            let ratios: Vec<f64> = rates.iter().zip(&peer_rates).map(|(r, p)| r / p).collect();
            median_and_range(&ratios, |ratio| format!("{ratio:.2}×"))
        } else {
            "(peer not built)".into()
        };
        let latency = |q: f64| -> Vec<Duration> {
            loads
                .iter()
                .map(|load| percentile(&load.latencies, q))
                .collect()
        };
        println!(
            "| {name} | {} | {} | {} | {} | {ratio} |",
            median_and_range(&rates, |rate| format!("{rate:.0}")),
            median_and_range(&latency(0.5), show),
            median_and_range(&latency(0.99), show),
            loads
                .iter()
                .map(|load| load.failed + load.refused)
                .sum::<usize>(),
        );
    }
    if peer.is_none() {
        println!();
        println!(
            "(wasmtime serve not found: run host/benches/setup-wasmtime-serve.sh to add the peer)"
        );
    }
    println!();
    println!(
        "Drain under load: delete with {} clients sending `GET /sleep?ms=100`: pod ended {} \
         after the delete (exit code {}); {in_flight}; {} answers with 200, {} failed requests, \
         {} connections refused once the drain began.",
        args.connections,
        show(drain_time),
        exit_code.map_or("?".into(), |code| code.to_string()),
        drain_load.requests,
        drain_load.failed,
        drain_load.refused,
    );
}
