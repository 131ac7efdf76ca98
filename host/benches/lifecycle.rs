//! The lifecycle benchmark: how precisely wasmlet kills at a deadline, how fast a pod starts,
//! how fast a cooperative guest stops, how many idle pods one host holds, what preemption costs,
//! and the same lifecycle done by a native process supervisor and by `wasmtime run`, in the same
//! run. Prints tables.
//!
//! `cargo bench -p wasmlet --bench lifecycle` (`-- --kills 300 --idle-pods 10000` for more;
//! `host/benches/setup-wasmtime-serve.sh` builds the `wasmtime` peer).
//!
//! - kill overshoot: from the grace deadline to the moment the guest stopped executing (its trap,
//!   or the kill taking its future away), for a CPU-bound guest (`spinner`) and a guest blocked in
//!   a host sleep (`stubborn`), alone and beside 50 spinning guests on this machine's cores.
//! - start: component already compiled → `Running` with postStart done (`cooperative`, whose
//!   postStart is an instance of its own).
//! - terminate: delete → `Completed` for `cooperative` (preStop instance, terminate, clean exit).
//! - density: `--idle-pods` pods of `stubborn` (asleep in a host call) started and held at once:
//!   the host's RSS per pod, the time to start them all and to kill them all (`--density-only`
//!   for nothing else; `--hold-until FILE` holds them, once measured, until FILE exists, which
//!   `host/benches/many-idle-pods.sh` uses to hold pods in several processes at once).
//! - preemption cost: `hello --work` (a loop that never calls the host) under wasmlet (epoch
//!   checks, a yield every time slice) against a plain wasmtime engine without epoch
//!   interruption, in interleaved pairs (`--work-pairs`, 5 by default; `--preemption-only` for
//!   nothing else): the process's CPU time for each run, which a noisy machine's steal does not
//!   inflate, and the loop's wall time as the guest measured it.
//! - CPU limits: a `spinner` limited to 250m, 500m and 1 core beside unlimited spinners uses that
//!   share of a core (its CPU time over the wall time, `--cpu-seconds`, 10 by default); two
//!   spinners requesting 1:3 split one saturated guest thread 1:3.
//! - peers: `hello` started and stopped as a native process (spawn, SIGTERM/SIGKILL, wait) and run
//!   by `wasmtime run`, next to wasmlet doing the same.
//!
//! wasmlet is called from a task of the bench's runtime (one worker), as an embedder's handler
//! would call it. The latency figures (start, terminate, kill overshoot, peers) are measured in
//! `--runs` runs (3 by default), wasmlet and its peers within each: each cell gives the median
//! over the runs of each run's p50 or p99, with the range, and a ratio to a peer is taken
//! within each run.

use std::time::{Duration, Instant};

use wasmlet::{Host, HostConfig, Pod, PodSpec, PodUpdate};
use wasmlet_examples::components;

mod common;
use common::{cpu_time, median_and_range, percentile, show};

struct Args {
    kills: usize,
    starts: usize,
    neighbours: usize,
    idle_pods: usize,
    cpu_seconds: u64,
    /// Pairs of preemption-cost runs.
    work_pairs: usize,
    /// Only the preemption cost.
    preemption_only: bool,
    /// Only the density.
    density_only: bool,
    /// Hold the idle pods, once measured, until this file exists.
    hold_until: Option<std::path::PathBuf>,
    /// Runs of the latency figures.
    runs: usize,
}

fn args() -> Args {
    let mut args = Args {
        kills: 100,
        starts: 200,
        neighbours: 100,
        idle_pods: 10_000,
        cpu_seconds: 10,
        work_pairs: 5,
        preemption_only: false,
        density_only: false,
        hold_until: None,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--kills" => args.kills = value(),
            "--starts" => args.starts = value(),
            "--neighbours" => args.neighbours = value(),
            "--idle-pods" => args.idle_pods = value(),
            "--cpu-seconds" => args.cpu_seconds = value() as u64,
            "--work-pairs" => args.work_pairs = value(),
            "--preemption-only" => args.preemption_only = true,
            "--density-only" => args.density_only = true,
            "--hold-until" => args.hold_until = it.next().map(Into::into),
            "--runs" => args.runs = value().max(1),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn pod(name: &str, component: &str, grace: Duration) -> PodSpec {
    PodSpec::component(component)
        .name(name)
        .grace_period(grace)
        .build()
        .expect("a valid pod")
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

/// The share of a core each of `measured` (spinners with a CPU limit or request) used over
/// `seconds`, beside `neighbours` spinners that request no CPU: CPU time over wall time.
async fn cpu_shares(
    host: &Host,
    measured: Vec<PodSpec>,
    neighbours: usize,
    seconds: u64,
) -> Vec<f64> {
    let mut others = Vec::new();
    for index in 0..neighbours {
        others.push(
            start(
                host,
                pod(
                    &format!("unlimited-{index}"),
                    components::SPINNER,
                    Duration::ZERO,
                ),
            )
            .await,
        );
    }
    let mut pods = Vec::new();
    for spec in measured {
        pods.push(start(host, spec).await);
    }
    // Past the first periods, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = |pods: &[Pod]| -> Vec<Duration> {
        pods.iter()
            .map(|pod| pod.cpu_time("spinner").expect("a measured container"))
            .collect()
    };
    let (began, before) = (Instant::now(), cpu(&pods));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (wall, after) = (began.elapsed(), cpu(&pods));
    for pod in pods.iter().chain(&others) {
        pod.kill();
    }
    for pod in pods.iter().chain(&others) {
        pod.wait().await;
    }
    before
        .iter()
        .zip(&after)
        .map(|(before, after)| (*after - *before).as_secs_f64() / wall.as_secs_f64())
        .collect()
}

fn spinner(name: &str) -> wasmlet::ComponentPod {
    PodSpec::component(components::SPINNER)
        .name(name)
        .container_name("spinner")
        .grace_period(Duration::ZERO)
}

/// A latency figure: each run's samples.
struct Row {
    metric: String,
    runs: Vec<Vec<Duration>>,
}

impl Row {
    fn new(metric: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            runs: Vec::new(),
        }
    }
}

/// The `q` quantile of each run's samples: their median over the runs, and range.
fn across_runs(runs: &[Vec<Duration>], q: f64) -> String {
    let quantiles: Vec<Duration> = runs
        .iter()
        .map(|samples| {
            let mut sorted = samples.clone();
            sorted.sort();
            percentile(&sorted, q)
        })
        .collect();
    median_and_range(&quantiles, show)
}

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// This process's memory mappings (the kernel allows `vm.max_map_count`, 65530 by default).
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |maps| maps.lines().count())
}

/// This process's resident memory by what holds it, in bytes, from `/proc/self/smaps`: linear
/// memories (a mapping followed by an inaccessible one of 1 GiB or more: the rest of the
/// memory's reservation and its guard region), wasmtime's fiber stacks, on which guests run
/// (mappings of 2 MiB), and everything else (the allocator's heap — stores, WASI contexts,
/// tasks, statuses, events — and the program itself).
fn rss_by_kind() -> [u64; 3] {
    struct Area {
        start: u64,
        end: u64,
        accessible: bool,
        rss: u64,
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut areas: Vec<Area> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            let accessible = fields.next().is_some_and(|perms| !perms.starts_with("---"));
            areas.push(Area {
                start,
                end,
                accessible,
                rss: 0,
            });
        } else if let (Some(kb), Some(area)) = (line.strip_prefix("Rss:"), areas.last_mut()) {
            area.rss = kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                * 1024;
        }
    }
    let mut kinds = [0; 3];
    for (index, area) in areas.iter().enumerate() {
        let reserved_after = areas.get(index + 1).is_some_and(|next| {
            next.start == area.end && !next.accessible && next.end - next.start >= 1 << 30
        });
        let kind = if reserved_after {
            0
        } else if area.end - area.start == 2 << 20 {
            1
        } else {
            2
        };
        kinds[kind] += area.rss;
    }
    kinds
}

/// This process's open file descriptors (the soft `RLIMIT_NOFILE` bounds them).
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |fds| fds.count())
}

/// What holding many idle pods costs.
struct Density {
    pods: usize,
    rss_per_pod: u64,
    mappings_per_pod: f64,
    files_per_pod: f64,
    /// Per pod: resident memory in linear memories, in fiber stacks, and elsewhere.
    kinds_per_pod: [u64; 3],
    start_all: Duration,
    stop_all: Duration,
}

/// `count` idle pods held at once, measured; with `hold_until`, held (once measured, which is
/// printed) until that file exists: a script holds pods in several processes at once so.
async fn density(host: &Host, count: usize, hold_until: Option<&std::path::Path>) -> Density {
    let before = rss();
    let maps_before = mappings();
    let files_before = open_files();
    let kinds_before = rss_by_kind();
    let began = Instant::now();
    let mut pods = Vec::with_capacity(count);
    for index in 0..count {
        let spec = pod(
            &format!("idle-{index}"),
            components::STUBBORN,
            Duration::from_secs(1),
        );
        pods.push(host.start_pod(spec).await.expect("starting an idle pod"));
    }
    for pod in &pods {
        pod.wait_running().await;
    }
    let start_all = began.elapsed();
    // `Running` comes before the guest has run: wait until every guest has its store (each
    // holds its /tmp open), then a moment for it to reach its sleep.
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_files().saturating_sub(files_before) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = rss().saturating_sub(before);
    let maps_held = mappings().saturating_sub(maps_before);
    let files_held = open_files().saturating_sub(files_before);
    let kinds_held = rss_by_kind();
    if let Some(release) = hold_until {
        println!(
            "holding {count} idle pods: host RSS {held} bytes, {} per pod",
            held / count.max(1) as u64
        );
        while !release.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let stopping = Instant::now();
    for pod in &pods {
        pod.kill();
    }
    for pod in &pods {
        pod.wait().await;
    }
    Density {
        pods: count,
        rss_per_pod: held / count.max(1) as u64,
        mappings_per_pod: maps_held as f64 / count.max(1) as f64,
        files_per_pod: files_held as f64 / count.max(1) as f64,
        kinds_per_pod: std::array::from_fn(|kind| {
            kinds_held[kind].saturating_sub(kinds_before[kind]) / count.max(1) as u64
        }),
        start_all,
        stop_all: stopping.elapsed(),
    }
}

/// The loop time `hello --work` reports.
fn work_time(output: &str) -> Duration {
    let micros: u64 = output
        .lines()
        .find_map(|line| line.split("work: ").nth(1))
        .and_then(|rest| rest.split(" rounds in ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|micros| micros.parse().ok())
        .expect("hello --work prints its time");
    Duration::from_micros(micros)
}

const WORK_ROUNDS: &str = "400000000";

/// One run of `hello --work`: the loop's time as the guest measured it (wall time), and the
/// CPU time this process spent on the whole run (instance, guest, and every host thread).
#[derive(Clone, Copy)]
struct WorkRun {
    guest_wall: Duration,
    cpu: Duration,
}

/// `hello --work` under wasmlet: epoch checks and a yield every time slice.
async fn work_under_wasmlet(host: &Host) -> WorkRun {
    let cpu = cpu_time();
    let spec = PodSpec::for_component(components::HELLO, vec!["--work".into(), WORK_ROUNDS.into()]);
    let pod = host.start_pod(spec).await.expect("starting hello");
    let mut updates = pod.watch();
    let mut output = String::new();
    while let Some(update) = updates.next().await {
        if let PodUpdate::Log(line) = update {
            output.push_str(&line.line);
            output.push('\n');
        }
    }
    WorkRun {
        guest_wall: work_time(&output),
        cpu: cpu_time() - cpu,
    }
}

/// `hello --work` in a plain wasmtime engine, nothing else running: without epoch interruption,
/// or (`epoch_checks`) with the epoch checks compiled in but a deadline that never comes, which
/// tells the checks' own cost from the rest of preemption's (the yields, the ticker). (Compiled
/// before the CPU time is taken.)
fn work_in_plain_engine(epoch_checks: bool) -> WorkRun {
    use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};
    struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(epoch_checks);
    let engine = wasmtime::Engine::new(&config).expect("a plain engine");
    let component = wasmtime::component::Component::from_file(&engine, components::HELLO)
        .expect("compiling hello");
    let mut linker = wasmtime::component::Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("linking WASI");
    let cpu = cpu_time();
    let stdout = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 16);
    let wasi = WasiCtx::builder()
        .args(&["hello", "--work", WORK_ROUNDS])
        .stdout(stdout.clone())
        .build();
    let mut store = wasmtime::Store::new(
        &engine,
        State {
            wasi,
            table: ResourceTable::new(),
        },
    );
    store.set_epoch_deadline(u64::MAX);
    let command =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
            .expect("instantiating hello");
    // hello ends with `exit(0)`, which arrives as an error.
    let _ = command.wasi_cli_run().call_run(&mut store);
    WorkRun {
        guest_wall: work_time(&String::from_utf8_lossy(&stdout.contents())),
        cpu: cpu_time() - cpu,
    }
}

/// Preemption cost: `pairs` runs of the same loop under wasmlet and in a plain engine,
/// interleaved, so that a noisy neighbour slows both alike.
async fn preemption(host: &Host, pairs: usize) -> Vec<WorkRuns> {
    let mut runs = Vec::new();
    for _ in 0..pairs {
        let with_slices = work_under_wasmlet(host).await;
        let without = tokio::task::spawn_blocking(|| work_in_plain_engine(false))
            .await
            .unwrap();
        let checks_only = tokio::task::spawn_blocking(|| work_in_plain_engine(true))
            .await
            .unwrap();
        runs.push((with_slices, without, checks_only));
    }
    runs
}

/// A run of each kind: under wasmlet, in a plain engine, in a plain engine with epoch checks.
type WorkRuns = (WorkRun, WorkRun, WorkRun);

fn print_preemption(runs: &[WorkRuns]) {
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let percent = |p: f64| format!("{p:+.1} %");
    let cost = |of: fn(&WorkRun) -> Duration| {
        let against = |pick: fn(&WorkRuns) -> &WorkRun| -> Vec<f64> {
            runs.iter()
                .map(|run| (of(pick(run)).as_secs_f64() / of(&run.1).as_secs_f64() - 1.0) * 100.0)
                .collect()
        };
        let each = |pick: fn(&WorkRuns) -> &WorkRun| -> Vec<Duration> {
            runs.iter().map(|run| of(pick(run))).collect()
        };
        (
            median_and_range(&each(|run| &run.0), ms),
            median_and_range(&each(|run| &run.1), ms),
            median_and_range(&against(|run| &run.0), percent),
            median_and_range(&against(|run| &run.2), percent),
        )
    };
    let (cpu_with, cpu_without, cpu_cost, cpu_checks) = cost(|run| run.cpu);
    let (wall_with, wall_without, wall_cost, wall_checks) = cost(|run| run.guest_wall);
    println!(
        "Preemption cost: `hello --work {WORK_ROUNDS}` (a loop that never calls the host) under \
         wasmlet (epoch checks, a yield every {:?}) against a plain wasmtime engine without \
         interruption, {} interleaved pairs; median (range):",
        HostConfig::default().time_slice,
        runs.len()
    );
    println!();
    println!(
        "| measure | wasmlet | plain engine | wasmlet's cost (per pair) | of which the epoch checks' \
         code (plain engine with them compiled in) |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| CPU time of the process | {cpu_with} | {cpu_without} | {cpu_cost} | {cpu_checks} |"
    );
    println!(
        "| the loop's wall time, as the guest saw it | {wall_with} | {wall_without} | \
         {wall_cost} | {wall_checks} |"
    );
}

/// The native build of `hello`, made once into `target/bench-tools/native`.
fn native_hello() -> Option<std::path::PathBuf> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = workspace.join("target/bench-tools/native");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "hello",
            "--manifest-path",
        ])
        .arg(workspace.join("examples/guests/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .ok()?;
    status
        .success()
        .then(|| target.join("release/hello"))
        .filter(|path| path.exists())
}

/// `wasmtime`, built by `setup-wasmtime-serve.sh`.
fn wasmtime_cli() -> Option<std::path::PathBuf> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tools/bin/wasmtime");
    path.exists().then_some(path)
}

/// Spawn → the first line of output (the process is running), then `signal` → reaped.
fn native_start_and_stop(
    hello: &std::path::Path,
    signal: rustix::process::Signal,
) -> (Duration, Duration) {
    use std::io::BufRead as _;
    let began = Instant::now();
    let mut child = std::process::Command::new(hello)
        .args(["--sleep", "3600"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning hello");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let started = began.elapsed();
    let stopping = Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, signal).expect("signalling hello");
    let _ = child.wait();
    (started, stopping.elapsed())
}

/// Spawn → exit of a whole command.
fn process_run(program: &std::path::Path, args: &[&str]) -> Duration {
    let began = Instant::now();
    let status = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running the peer");
    assert!(status.success(), "{program:?} failed");
    began.elapsed()
}

/// A figure measured for wasmlet and its peers: each run's samples of each.
struct PeerRow {
    figure: &'static str,
    wasmlet: Vec<Vec<Duration>>,
    native: Vec<Vec<Duration>>,
    wasmtime: Vec<Vec<Duration>>,
}

impl PeerRow {
    fn new(figure: &'static str) -> PeerRow {
        PeerRow {
            figure,
            wasmlet: Vec::new(),
            native: Vec::new(),
            wasmtime: Vec::new(),
        }
    }

    /// Starts a run's samples.
    fn begin_run(&mut self) {
        for runs in [&mut self.wasmlet, &mut self.native, &mut self.wasmtime] {
            runs.push(Vec::new());
        }
    }
}

/// Adds a sample to the run in progress.
fn sample(runs: &mut [Vec<Duration>], value: Duration) {
    runs.last_mut().expect("a run in progress").push(value);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    // From a task of the runtime, as an embedder's request handler or controller calls wasmlet:
    // the pod's supervisor task then runs on the caller's worker. (`main`'s own future runs on
    // a thread outside the runtime, which would add a worker's wake-up to both ends of each
    // start and stop.)
    tokio::spawn(bench()).await.expect("the benchmark");
}

async fn bench() {
    let args = args();
    let host = Host::new(HostConfig::default()).expect("creating the host");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Compile once, outside the measurements.
    for component in [
        components::SPINNER,
        components::STUBBORN,
        components::COOPERATIVE,
    ] {
        host.load_component(component).expect("loading");
    }
    if args.preemption_only {
        print_preemption(&preemption(&host, args.work_pairs).await);
        return;
    }
    if args.density_only {
        print_density(&density(&host, args.idle_pods, args.hold_until.as_deref()).await);
        return;
    }
    // Peers: the same lifecycle as a native process and under `wasmtime run`.
    let native = native_hello();
    let wasmtime = wasmtime_cli();
    let mut peers = vec![
        PeerRow::new("start → running (`hello --sleep 3600`)"),
        PeerRow::new("kill → ended (wasmlet kill / SIGKILL)"),
        PeerRow::new("start → exit (`hello`, one line)"),
        PeerRow::new(
            "graceful stop → ended (wasmlet: `cooperative` delete → Completed; native: `hello` SIGTERM → reaped)",
        ),
    ];
    host.load_component(components::HELLO)
        .expect("loading hello");
    let kinds = [
        ("CPU-bound", components::SPINNER),
        ("host-blocked", components::STUBBORN),
    ];
    let mut rows = vec![
        Row::new("start → Running (postStart done)"),
        Row::new("terminate, cooperative (delete → Completed)"),
    ];
    for (label, _) in kinds {
        rows.push(Row::new(format!("kill overshoot, {label}, alone")));
    }
    for (label, _) in kinds {
        rows.push(Row::new(format!(
            "kill overshoot, {label}, {} spinning neighbours",
            args.neighbours
        )));
    }
    for _ in 0..args.runs {
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
        rows[0].runs.push(starts);
        rows[1].runs.push(terminates.clone());

        for (index, (_, component)) in kinds.into_iter().enumerate() {
            let overshoots = kill_overshoots(&host, component, args.kills).await;
            rows[2 + index].runs.push(overshoots);
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
        for (index, (_, component)) in kinds.into_iter().enumerate() {
            let overshoots = kill_overshoots(&host, component, args.kills).await;
            rows[4 + index].runs.push(overshoots);
        }
        for neighbour in &neighbours {
            neighbour.kill();
        }
        for neighbour in &neighbours {
            neighbour.wait().await;
        }

        for peer in &mut peers {
            peer.begin_run();
        }
        *peers[3].wasmlet.last_mut().expect("a run in progress") = terminates;
        for index in 0..args.starts.min(100) {
            let began = Instant::now();
            let spec = PodSpec::component(components::HELLO)
                .name(format!("peer-{index}"))
                .args(["--sleep", "3600"])
                .build()
                .expect("a valid pod");
            let pod = start(&host, spec).await;
            sample(&mut peers[0].wasmlet, began.elapsed());
            let killing = Instant::now();
            pod.kill();
            pod.wait().await;
            sample(&mut peers[1].wasmlet, killing.elapsed());

            let began = Instant::now();
            let pod = host
                .start_pod(PodSpec::for_component(components::HELLO, Vec::new()))
                .await
                .expect("starting hello");
            pod.wait().await;
            sample(&mut peers[2].wasmlet, began.elapsed());

            if let Some(native) = &native {
                let (started, stopped) =
                    native_start_and_stop(native, rustix::process::Signal::KILL);
                sample(&mut peers[0].native, started);
                sample(&mut peers[1].native, stopped);
                sample(&mut peers[2].native, process_run(native, &[]));
                let (_, terminated) = native_start_and_stop(native, rustix::process::Signal::TERM);
                sample(&mut peers[3].native, terminated);
            }
            if let Some(wasmtime) = &wasmtime {
                let run = process_run(wasmtime, &["run", components::HELLO]);
                sample(&mut peers[2].wasmtime, run);
            }
        }
    }

    let preemption_runs = preemption(&host, args.work_pairs).await;

    // CPU limits: a spinner limited to 250m, 500m and 1 core beside two unlimited spinners;
    // then two spinners requesting 1:3 on a host with one guest thread (a saturated core).
    let mut limit_shares = Vec::new();
    for millicores in [250, 500, 1000] {
        let spec = spinner(&format!("limited-{millicores}m"))
            .cpu_limit(millicores)
            .build()
            .expect("a valid pod");
        let share = cpu_shares(&host, vec![spec], 2, args.cpu_seconds).await[0];
        limit_shares.push((millicores, share));
    }
    let one_core = Host::new(HostConfig {
        guest_threads: 1,
        ..HostConfig::default()
    })
    .expect("creating a one-thread host");
    let weighted = vec![
        spinner("light")
            .cpu_request(250)
            .build()
            .expect("a valid pod"),
        spinner("heavy")
            .cpu_request(750)
            .build()
            .expect("a valid pod"),
    ];
    let request_shares = cpu_shares(&one_core, weighted, 0, args.cpu_seconds).await;
    drop(one_core);

    let density = density(&host, args.idle_pods, args.hold_until.as_deref()).await;

    println!();
    println!(
        "wasmlet lifecycle benchmark — {cores} cores, time slice {:?}",
        HostConfig::default().time_slice
    );
    println!();
    println!(
        "| metric | n per run | p50, median of {0} runs (range) | p99, median of {0} runs (range) | max of all |",
        args.runs
    );
    println!("|---|---|---|---|---|");
    for row in &rows {
        let max = row.runs.iter().flatten().max().copied().unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} |",
            row.metric,
            row.runs.first().map_or(0, Vec::len),
            across_runs(&row.runs, 0.5),
            across_runs(&row.runs, 0.99),
            show(max),
        );
    }

    println!();
    println!(
        "Peers, same runs (p50 / p99 of {} each per run; median over {} runs, range):",
        peers[0].wasmlet.first().map_or(0, Vec::len),
        args.runs,
    );
    println!();
    println!(
        "| figure | wasmlet | native process | wasmtime run | wasmlet ÷ native | wasmlet ÷ wasmtime run |"
    );
    println!("|---|---|---|---|---|---|");
    for row in &peers {
        let cell = |runs: &[Vec<Duration>]| {
            if runs.iter().all(Vec::is_empty) {
                "—".to_string()
            } else {
                format!("{} / {}", across_runs(runs, 0.5), across_runs(runs, 0.99))
            }
        };
        // The ratio of the p50s within each run.
        let ratio = |peer: &[Vec<Duration>]| {
            if peer.iter().all(Vec::is_empty) {
                return "—".to_string();
            }
            let p50 = |samples: &Vec<Duration>| {
                let mut sorted = samples.clone();
                sorted.sort();
                percentile(&sorted, 0.5).as_secs_f64()
            };
            let ratios: Vec<f64> = row
                .wasmlet
                .iter()
                .zip(peer)
                .map(|(wasmlet, peer)| p50(wasmlet) / p50(peer))
                .collect();
            median_and_range(&ratios, |ratio| format!("{ratio:.2}"))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.figure,
            cell(&row.wasmlet),
            cell(&row.native),
            cell(&row.wasmtime),
            ratio(&row.native),
            ratio(&row.wasmtime),
        );
    }
    if native.is_none() {
        println!("(the native build of hello failed: no native column)");
    }
    if wasmtime.is_none() {
        println!("(wasmtime not built: run host/benches/setup-wasmtime-serve.sh for that column)");
    }

    print_preemption(&preemption_runs);
    print_density(&density);
    println!();
    println!(
        "CPU limits, {} s each, beside 2 unlimited spinners (share of a core: CPU time / wall \
         time; error against the limit):",
        args.cpu_seconds
    );
    println!();
    println!("| limits.cpu | used | error |");
    println!("|---|---|---|");
    for (millicores, share) in &limit_shares {
        let limit = *millicores as f64 / 1000.0;
        println!(
            "| {millicores}m | {share:.3} | {:+.1} % |",
            (share - limit) / limit * 100.0
        );
    }
    let (light, heavy) = (request_shares[0], request_shares[1]);
    println!();
    println!(
        "CPU requests 250m : 750m, two spinners on one guest thread, {} s: {light:.3} : \
         {heavy:.3} of a core = 1 : {:.2} ({:+.1} % against 1 : 3).",
        args.cpu_seconds,
        heavy / light,
        (heavy / light - 3.0) / 3.0 * 100.0
    );
}

/// The density figures.
fn print_density(density: &Density) {
    println!();
    println!(
        "Density: {} idle pods (`stubborn`, asleep in a host call) held at once: host RSS {:.0} \
         KiB, {:.1} memory mappings and {:.1} open files per pod; started in {} ({} per pod), \
         killed in {} ({} per pod).",
        density.pods,
        density.rss_per_pod as f64 / 1024.0,
        density.mappings_per_pod,
        density.files_per_pod,
        show(density.start_all),
        show(density.start_all / density.pods.max(1) as u32),
        show(density.stop_all),
        show(density.stop_all / density.pods.max(1) as u32),
    );
    let [memories, stacks, elsewhere] = density.kinds_per_pod.map(|bytes| bytes as f64 / 1024.0);
    println!(
        "Resident per idle pod, by where (/proc/self/smaps): {memories:.1} KiB in linear memories \
         (pages the guest touched), {stacks:.1} KiB in fiber stacks, {elsewhere:.1} KiB elsewhere \
         (the heap: store, WASI context, tasks, status and events)."
    );
}
