//! Deterministic mode: pods run on one thread against a virtual clock, so the same inputs give
//! the same trace every run, and a 30 s grace period costs milliseconds.
//!
//! A [`Simulation`] owns the thread's runtime, a virtual clock and a host whose guests
//! slice time by fuel. Time moves in two ways only:
//! - **CPU time**: a guest that runs wasm consumes fuel, and each unit costs
//!   [`SimulationConfig::nanos_per_fuel`] of virtual time (charged at every host call, at the end
//!   of every time slice and when the guest ends);
//! - **jumps**: when nothing can run, the clock jumps to the next timer (a grace deadline, a
//!   hook's sleep, a guest's own sleep or poll timeout).
//!
//! Order at one instant is fixed: runnable work runs first-in first-out; timers due at the same
//! instant fire by deadline, then in the order they were set; a guest whose time slice ends
//! queues behind whatever the timers due by then woke; a container's `run` instance starts
//! before its postStart hook; containers start, and react to a delete, in manifest order.
//! Guest randomness is seeded from [`SimulationConfig::seed`] (each instance gets its own stream,
//! by creation order), and guests' clocks read virtual time. Faults may be injected at the
//! host's boundary ([`SimulationConfig::faults`]): hooks late or twice, probe checks lost,
//! writes to a volume failed or short, a full disk, a wall clock that steps.
//!
//! On top of it: [`Scenario`]s, the YAML files `wasmlet test` runs (steps, invariants, faults),
//! and their exploration ([`Scenario::explore`]): one scenario run many ways, each drawn from a
//! seed, the first failure shrunk to a scenario that fails on its own.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasmlet::PodSpec;
//! use wasmlet::testing::{Simulation, SimulationConfig};
//!
//! # fn demo() -> anyhow::Result<()> {
//! let mut sim = Simulation::new(SimulationConfig::default())?;
//! let pod = sim.start(PodSpec::from_file("examples/pods/cooperative.yaml")?)?;
//! sim.wait_for(&pod, |status| status.phase.as_deref() == Some("Running"), None)?;
//! sim.advance(Duration::from_secs(5));
//! sim.delete(&pod, Some(Duration::from_secs(30)));
//! let status = sim.wait_for(&pod, wasmlet::all_terminated, Some(Duration::from_secs(60)))?;
//! assert_eq!(status.phase.as_deref(), Some("Succeeded"));
//! println!("{}", sim.trace());
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::PodStatus;
use tokio::sync::watch;

use crate::clock::{Clock, VirtualClock, sleep_until};
use crate::config::HostConfig;
use crate::events::{Event, LogLine, LogStream, PodUpdate};
use crate::host::Host;
use crate::lifecycle::pod::Pod;
use crate::manifest::{Handler, PodSpec};
use crate::runtime::{DeterministicGuests, Interruption, WasmEngine};

mod explore;
mod scenario;
pub use crate::lifecycle::faults::{
    ClockJump, Faults, HookFault, ProbeFault, WriteFault, WriteFaultKind,
};
pub use explore::{ExploreOptions, ExploreReport, Failure as ExploreFailure};
pub use scenario::{
    Condition, Deadline, ExploreSpec, Hook, Invariant, Outcome, RunOptions, Scenario,
    ScenarioError, Span, Step, Variation,
};

/// How a [`Simulation`] runs. The defaults are what `wasmlet test` uses.
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// The seed of every guest's `wasi:random`. Default 0.
    pub seed: u64,
    /// Virtual nanoseconds one unit of fuel (about one wasm instruction) costs. Default 1: a
    /// virtual CPU of one instruction per nanosecond, near what compiled wasm does on one core.
    pub nanos_per_fuel: u64,
    /// How much virtual CPU time a guest runs before others get a turn. A CPU-bound guest is
    /// killed at the end of the slice in which its deadline falls. Default 1 ms.
    pub time_slice: Duration,
    /// The wall-clock time at virtual zero, for timestamps and the guests' wall clock. Default
    /// 2026-01-01T00:00:00Z.
    pub wall_origin: SystemTime,
    /// Grace-period defaults and the like, as for a real host. (Its `time_slice` and
    /// `guest_threads` do not apply: guests run on the simulation's one thread, sliced by fuel.)
    pub host: HostConfig,
    /// Faults injected at the host's boundary: a hook delivered late or twice, probe checks
    /// that fail, writes to a volume that fail, a wall clock that steps. Default: none.
    pub faults: Faults,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            seed: 0,
            nanos_per_fuel: 1,
            time_slice: Duration::from_millis(1),
            wall_origin: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            host: HostConfig::default(),
            faults: Faults::default(),
        }
    }
}

impl SimulationConfig {
    /// The fuel of one time slice.
    pub fn fuel_per_slice(&self) -> u64 {
        let nanos = u64::try_from(self.time_slice.as_nanos()).unwrap_or(u64::MAX);
        (nanos / self.nanos_per_fuel.max(1)).max(1)
    }
}

/// Why a wait ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first.
    #[error("not by {}: {state}", show_time(*.deadline))]
    Timeout {
        /// The deadline, as virtual time since the start.
        deadline: Duration,
        /// What the pod looked like then.
        state: String,
    },
    /// Nothing could happen any more (nothing runnable, no timer pending).
    #[error("it never happened: at {} nothing more could happen ({state})", show_time(*.at))]
    Stalled {
        /// When the simulation stalled.
        at: Duration,
        /// What the pod looked like then.
        state: String,
    },
}

/// One line of a trace.
#[derive(Debug, Clone)]
pub struct TraceEntry {
    /// Virtual time since the start.
    pub at: Duration,
    /// What happened.
    pub what: TraceItem,
}

/// What a trace line records.
#[derive(Debug, Clone)]
pub enum TraceItem {
    /// A step of the test (a delete, an advance, a note).
    Step(String),
    /// A pod's event.
    Event(Event),
    /// A line a container printed.
    Log(LogLine),
}

/// One pod, one thread, virtual time. See the [module docs](self).
pub struct Simulation {
    runtime: tokio::runtime::Runtime,
    clock: Arc<VirtualClock>,
    host: Host,
    config: SimulationConfig,
    driver: Arc<Driver>,
    trace: Arc<Mutex<Vec<TraceEntry>>>,
    /// Every status each pod had, and since when (virtual time since the start).
    statuses: Arc<Mutex<Vec<StatusRecord>>>,
    /// Bumped whenever a pod reports anything (an event, a line, a status change).
    progress: watch::Sender<u64>,
    pods: Vec<Pod>,
    /// How many calls were started ([`Simulation::call`]).
    calls: u64,
    /// Absolute paths shown differently in the trace (so that it does not depend on where the
    /// checkout is).
    path_aliases: Vec<(String, String)>,
    paths_relative_to: Option<PathBuf>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("now", &self.now())
            .field("pods", &self.pods.iter().map(Pod::name).collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A status a pod took on, and when.
#[derive(Debug, Clone)]
pub struct StatusRecord {
    /// Virtual time since the start.
    pub at: Duration,
    /// The pod's name.
    pub pod: String,
    /// The status from then on.
    pub status: PodStatus,
}

/// Moves virtual time when the runtime is idle, and says when it is idle.
struct Driver {
    /// While set, an idle runtime does not move time (the caller wants the current instant to
    /// settle).
    hold: AtomicBool,
    /// An idle runtime does not jump to a timer at or past this instant (a wait's deadline:
    /// the waiter decides what happens there).
    limit: Mutex<Option<std::time::Instant>>,
    /// Bumped whenever the runtime was idle and time did not move (held, limited, or no timer
    /// left).
    idle: watch::Sender<u64>,
}

impl Driver {
    /// Runs for the simulation's life. tokio's own clock is paused, so this sleep ends exactly
    /// when no task can run: the moment to jump virtual time to the next timer.
    async fn keep_time(self: Arc<Self>, clock: Arc<VirtualClock>) {
        loop {
            // Not real time: tokio's clock here is paused, and moves only when nothing can run.
            tokio::time::sleep(Duration::from_millis(1)).await;
            if clock.fire_due() > 0 {
                continue;
            }
            let limit = *self.limit.lock().unwrap();
            match clock.next_deadline() {
                Some(at)
                    if !self.hold.load(Ordering::SeqCst)
                        && limit.is_none_or(|limit| at < limit) =>
                {
                    clock.advance_to(at);
                    clock.fire_due();
                }
                _ => {
                    self.idle.send_modify(|n| *n += 1);
                }
            }
        }
    }
}

/// The engine all simulations of this process share, so that a component compiles once.
fn shared_engine() -> anyhow::Result<Arc<WasmEngine>> {
    static ENGINE: OnceLock<Arc<WasmEngine>> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    // The default compile cache: simulations share one engine, whatever their host config.
    let engine = WasmEngine::new(
        Interruption::Fuel,
        crate::config::HostConfig::default()
            .compile_cache
            .as_deref(),
        None,
        None,
    )?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

impl Simulation {
    /// A simulation at virtual time zero, with no pod yet.
    pub fn new(config: SimulationConfig) -> anyhow::Result<Simulation> {
        anyhow::ensure!(
            config.nanos_per_fuel >= 1,
            "nanos_per_fuel must be at least 1: CPU time that costs nothing would let a busy \
             guest hold virtual time still forever"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            // Back to the caller after every task: a step ends as soon as its condition holds,
            // not some tasks later.
            .event_interval(1)
            .build()
            .context("starting the simulation's runtime")?;
        let clock = VirtualClock::new(config.wall_origin);
        clock.set_wall_jump(config.faults.wall_clock);
        let guests = DeterministicGuests::new(
            clock.clone(),
            config.fuel_per_slice(),
            config.nanos_per_fuel,
            config.seed,
        );
        let host = Host::deterministic(
            shared_engine()?,
            runtime.handle().clone(),
            config.host.clone(),
            guests,
            config.faults.clone(),
        );
        let driver = Arc::new(Driver {
            hold: AtomicBool::new(false),
            limit: Mutex::new(None),
            idle: watch::Sender::new(0),
        });
        runtime.spawn(driver.clone().keep_time(clock.clone()));
        Ok(Simulation {
            runtime,
            clock,
            host,
            config,
            driver,
            trace: Arc::new(Mutex::new(Vec::new())),
            statuses: Arc::new(Mutex::new(Vec::new())),
            progress: watch::Sender::new(0),
            pods: Vec::new(),
            calls: 0,
            path_aliases: Vec::new(),
            paths_relative_to: None,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimulationConfig {
        &self.config
    }

    /// Shows component paths in the trace relative to `dir` (set it before starting pods), so
    /// that a trace does not depend on where the files are.
    pub fn show_paths_relative_to(&mut self, dir: impl AsRef<Path>) {
        self.paths_relative_to = Some(crate::manifest::lexically_normal(&absolute(dir.as_ref())));
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The virtual clock, for an embedder that schedules its own timers on it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// What the simulation's host holds now (see [`Host::stats`]).
    pub fn stats(&self) -> crate::host::HostStats {
        self.host.stats()
    }

    /// Starts a pod now: loading its components takes no virtual time.
    pub fn start(&mut self, spec: PodSpec) -> anyhow::Result<Pod> {
        for container in spec.init_containers.iter().chain(&spec.containers) {
            self.alias_path(&container.image);
            for handler in [&container.post_start, &container.pre_stop]
                .into_iter()
                .flatten()
            {
                if let Handler::Exec {
                    target: crate::manifest::ExecTarget::Component(component),
                    ..
                } = handler
                {
                    self.alias_path(component);
                }
            }
        }
        self.step(format!("start pod {}", spec.name));
        let host = self.host.clone();
        let pod = self.runtime.block_on(host.start_pod(spec))?;
        self.record(&pod);
        self.pods.push(pod.clone());
        self.settle();
        Ok(pod)
    }

    /// Deletes `pod` now, as [`Pod::delete`] does, and lets what that sets off at this instant run.
    pub fn delete(&mut self, pod: &Pod, grace_period: Option<Duration>) {
        self.step(match grace_period {
            Some(grace) => format!(
                "delete pod {} (grace period {})",
                pod.name(),
                show_duration(grace)
            ),
            None => format!("delete pod {}", pod.name()),
        });
        // From inside the runtime, so that what the delete wakes queues on this thread in order,
        // not on the runtime's queue for other threads (which it reads only now and then).
        self.runtime.block_on(async { pod.delete(grace_period) });
        self.settle();
    }

    /// Starts a call of `export` of container `container` of `pod` with WAVE `args`, as
    /// [`Pod::call_wave`] does, and returns at once: the call goes on beside what follows (a
    /// delete, say). The trace says when it began, and when and how it ended; the returned
    /// handle gives its result.
    pub fn call(
        &mut self,
        pod: &Pod,
        container: &str,
        export: &str,
        args: &[String],
        options: crate::CallOptions,
    ) -> tokio::task::JoinHandle<Result<Vec<String>, crate::CallError>> {
        self.calls += 1;
        let number = self.calls;
        self.step(format!(
            "call #{number}: {container} {export}({})",
            args.join(", ")
        ));
        let trace = self.trace.clone();
        let clock = self.clock.clone();
        let (pod, container, export) = (pod.clone(), container.to_string(), export.to_string());
        let args = args.to_vec();
        let handle = self.runtime.spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = pod.call_wave(&container, &export, &args, options).await;
            let outcome = match &result {
                Ok(results) => format!("returned {}", results.join(", ")),
                Err(error) => format!("failed: {error}"),
            };
            trace.lock().unwrap().push(TraceEntry {
                at: clock.now().saturating_duration_since(clock.origin()),
                what: TraceItem::Step(format!("call #{number} {outcome}")),
            });
            result
        });
        self.settle();
        handle
    }

    /// Runs everything for `by` of virtual time.
    pub fn advance(&mut self, by: Duration) {
        let target = crate::clock::after(self.clock.now(), by);
        self.step(format!("advance {}", show_duration(by)));
        let clock: Arc<dyn Clock> = self.clock.clone();
        self.runtime.block_on(sleep_until(&clock, target));
        self.settle();
    }

    /// Adds a line of its own to the trace.
    pub fn note(&mut self, text: impl Into<String>) {
        self.step(text.into());
    }

    /// Adds a line of its own to the trace, at virtual time `at` (since the start): a check
    /// dated when what it checked happened.
    pub fn note_at(&mut self, at: Duration, text: impl Into<String>) {
        self.trace.lock().unwrap().push(TraceEntry {
            at: at.min(self.now()),
            what: TraceItem::Step(text.into()),
        });
    }

    /// Runs until `condition` holds for the status of `pod`, or fails once virtual time reaches
    /// `deadline` (since the start) or nothing more can happen.
    pub fn wait_for(
        &mut self,
        pod: &Pod,
        condition: impl Fn(&PodStatus) -> bool,
        deadline: Option<Duration>,
    ) -> Result<PodStatus, WaitError> {
        let status = self.run_until(pod, |_, status| condition(status), deadline)?;
        Ok(status)
    }

    /// Runs until an event of `pod` matching `matches` has been recorded (at any time so far),
    /// and returns it.
    pub fn wait_for_event(
        &mut self,
        pod: &Pod,
        matches: impl Fn(&Event) -> bool,
        deadline: Option<Duration>,
    ) -> Result<Event, WaitError> {
        let find = |trace: &[TraceEntry]| {
            trace.iter().find_map(|entry| match &entry.what {
                TraceItem::Event(event) if event.object == format!("pod/{}", pod.name()) => {
                    matches(event).then(|| event.clone())
                }
                _ => None,
            })
        };
        self.run_until(pod, |trace, _| find(trace).is_some(), deadline)?;
        Ok(find(&self.trace.lock().unwrap()).expect("the wait ended on a match"))
    }

    /// Runs until `condition` holds for the trace so far and the status of `pod`; fails once
    /// virtual time reaches `deadline` (since the start), or when nothing more can happen (no
    /// task can run and no timer is left).
    pub fn run_until(
        &mut self,
        pod: &Pod,
        condition: impl Fn(&[TraceEntry], &PodStatus) -> bool,
        deadline: Option<Duration>,
    ) -> Result<PodStatus, WaitError> {
        let holds = || condition(&self.trace.lock().unwrap(), &pod.status());
        let clock: Arc<dyn Clock> = self.clock.clone();
        let virtual_clock = self.clock.clone();
        let deadline_at = deadline.map(|at| crate::clock::after(self.clock.origin(), at));
        let mut progress = self.progress.subscribe();
        let mut idle = self.driver.idle.subscribe();
        *self.driver.limit.lock().unwrap() = deadline_at;
        let outcome = self.runtime.block_on(async {
            // Wakes this wait when busy guests' CPU time carries the clock past the deadline.
            let mut timeout = std::pin::pin!(async {
                match deadline_at {
                    Some(at) => sleep_until(&clock, at).await,
                    None => std::future::pending().await,
                }
            });
            loop {
                if holds() {
                    return Ok(());
                }
                tokio::select! {
                    biased;
                    _ = progress.changed() => {}
                    () = &mut timeout => {
                        return if holds() { Ok(()) } else { Err(true) };
                    }
                    _ = idle.changed() => {
                        if holds() {
                            return Ok(());
                        }
                        let own_timers = usize::from(deadline_at.is_some());
                        if virtual_clock.pending() <= own_timers {
                            return Err(false);
                        }
                        // Nothing is due before the deadline: time goes straight there.
                        if let Some(at) = deadline_at {
                            virtual_clock.advance_to(at);
                            virtual_clock.fire_due();
                        }
                    }
                }
            }
        });
        *self.driver.limit.lock().unwrap() = None;
        // What is due at the deadline itself still counts: let it run before judging.
        let outcome = match outcome {
            Err(true) => {
                self.settle();
                if condition(&self.trace.lock().unwrap(), &pod.status()) {
                    Ok(())
                } else {
                    Err(true)
                }
            }
            other => other,
        };
        match outcome {
            Ok(()) => {
                self.settle();
                Ok(pod.status())
            }
            Err(timed_out) => {
                let state = describe(&pod.status());
                Err(if timed_out {
                    WaitError::Timeout {
                        deadline: deadline.unwrap_or_default(),
                        state,
                    }
                } else {
                    WaitError::Stalled {
                        at: self.now(),
                        state,
                    }
                })
            }
        }
    }

    /// Everything recorded so far, in order of virtual time (what happened at one instant in
    /// the order it was recorded).
    pub fn entries(&self) -> Vec<TraceEntry> {
        let mut entries = self.trace.lock().unwrap().clone();
        entries.sort_by_key(|entry| entry.at);
        entries
    }

    /// The trace so far as text: one line per step, event and line of output, each with its
    /// virtual time in seconds; then the state of every container.
    pub fn trace(&self) -> String {
        let mut text = String::new();
        for entry in &self.entries() {
            let time = show_time(entry.at);
            let line = match &entry.what {
                TraceItem::Step(step) => format!("== {step}"),
                TraceItem::Event(event) => format!(
                    "{:<7} {} {}{}: {}{}",
                    format!("{:?}", event.kind),
                    event.reason,
                    event.object,
                    event
                        .container
                        .as_ref()
                        .map(|c| format!("/{c}"))
                        .unwrap_or_default(),
                    event.message,
                    event.repeats()
                ),
                TraceItem::Log(line) => format!(
                    "{}{} {}",
                    line.prefix(),
                    match line.stream {
                        LogStream::Stdout => "",
                        LogStream::Stderr => " (stderr)",
                    },
                    line.line
                ),
            };
            let line = self.aliased(&line);
            let mut lines = line.lines();
            let _ = writeln!(text, "{time:>12}  {}", lines.next().unwrap_or_default());
            for more in lines {
                let _ = writeln!(text, "{:>12}  | {more}", "");
            }
        }
        for pod in &self.pods {
            let _ = writeln!(
                text,
                "{:>12}  == pod {}: {}",
                show_time(self.now()),
                pod.name(),
                describe(&pod.status())
            );
        }
        text
    }

    /// Lets everything runnable now run until nothing can (without jumping to a timer), or for
    /// at most one time slice of CPU time (guests that never block would run forever).
    fn settle(&mut self) {
        self.driver.hold.store(true, Ordering::SeqCst);
        let mut idle = self.driver.idle.subscribe();
        let clock: Arc<dyn Clock> = self.clock.clone();
        let bound = crate::clock::after(self.clock.now(), self.config.time_slice);
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = idle.changed() => {}
                () = sleep_until(&clock, bound) => {}
            }
        });
        self.driver.hold.store(false, Ordering::SeqCst);
    }

    fn step(&mut self, text: String) {
        self.trace.lock().unwrap().push(TraceEntry {
            at: self.now(),
            what: TraceItem::Step(text),
        });
    }

    /// Copies the pod's events, output and status changes into the trace as they are
    /// published: nothing in between to fall behind, skip or reorder.
    fn record(&self, pod: &Pod) {
        let origin = self.clock.origin();
        let trace = self.trace.clone();
        let progress = self.progress.clone();
        pod.tap_updates(Box::new(move |update| {
            let (at, what) = match update {
                PodUpdate::Event(event) => (event.at, TraceItem::Event(event.clone())),
                PodUpdate::Log(line) => (line.at, TraceItem::Log(line.clone())),
            };
            trace.lock().unwrap().push(TraceEntry {
                at: at.saturating_duration_since(origin),
                what,
            });
            progress.send_modify(|n| *n += 1);
        }));
        let statuses = self.statuses.clone();
        let progress = self.progress.clone();
        let name = pod.name().to_string();
        pod.tap_status(Box::new(move |at, status| {
            statuses.lock().unwrap().push(StatusRecord {
                at: at.saturating_duration_since(origin),
                pod: name.clone(),
                status: status.clone(),
            });
            progress.send_modify(|n| *n += 1);
        }));
    }

    /// Every status the pods had so far, with since when, oldest first.
    pub fn status_history(&self) -> Vec<StatusRecord> {
        self.statuses.lock().unwrap().clone()
    }

    fn alias_path(&mut self, path: &Path) {
        let Some(base) = &self.paths_relative_to else {
            return;
        };
        // Messages show the path as the spec holds it (relative to the working directory if
        // the manifest was found through a relative path).
        let full = crate::manifest::lexically_normal(&absolute(path));
        let shown = relative_path(&full, base).display().to_string();
        let absolute = path.display().to_string();
        if shown != absolute && !self.path_aliases.iter().any(|(a, _)| *a == absolute) {
            self.path_aliases.push((absolute, shown));
            // Longest first, so that a path is never replaced by the alias of its prefix.
            self.path_aliases
                .sort_by_key(|(absolute, _)| std::cmp::Reverse(absolute.len()));
        }
    }

    /// `text` with each aliased path shown as its alias — only where the path stands whole,
    /// not inside a longer path (`../x/y` is not an occurrence of `x/y`).
    fn aliased(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (path, shown) in &self.path_aliases {
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(at) = rest.find(path.as_str()) {
                let before = rest[..at].chars().last().or_else(|| out.chars().last());
                let inside_a_path = before
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'));
                out.push_str(&rest[..at]);
                out.push_str(if inside_a_path { path } else { shown });
                rest = &rest[at + path.len()..];
            }
            out.push_str(rest);
            text = out;
        }
        text
    }

    /// Runs a command to its end, on virtual time: `argv[0]` is `sh` (wasmlet's bundled shell)
    /// or a component file; each `(host directory, guest path)` of `mounts` is mounted
    /// read-only. Nothing of it goes in the trace.
    pub(crate) fn run_command(
        &mut self,
        name: &str,
        argv: Vec<String>,
        mounts: Vec<(PathBuf, String)>,
    ) -> anyhow::Result<crate::runtime::CommandOutcome> {
        let host = self.host.clone();
        let outcome = self
            .runtime
            .block_on(async move { host.run_command(name, argv, mounts).await });
        self.settle();
        outcome
    }

    /// Runs `future` on the simulation's thread, with virtual time moving as it does.
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// The phase and each container's state, in one line.
pub(crate) fn describe(status: &PodStatus) -> String {
    let mut text = format!("phase {}", status.phase.as_deref().unwrap_or("Unknown"));
    let init = status.init_container_statuses.iter().flatten();
    for container in init.chain(status.container_statuses.iter().flatten()) {
        let state = container.state.as_ref();
        let _ = write!(text, "; {} ", container.name);
        match (
            state.and_then(|s| s.waiting.as_ref()),
            state.and_then(|s| s.running.as_ref()),
            state.and_then(|s| s.terminated.as_ref()),
        ) {
            (_, _, Some(terminated)) => {
                let _ = write!(
                    text,
                    "Terminated exitCode={} reason={}",
                    terminated.exit_code,
                    terminated.reason.as_deref().unwrap_or("")
                );
            }
            (_, Some(_), _) => {
                let _ = write!(text, "Running ready={}", container.ready);
            }
            (Some(waiting), _, _) => {
                let _ = write!(
                    text,
                    "Waiting reason={}",
                    waiting.reason.as_deref().unwrap_or("")
                );
            }
            _ => text.push_str("Unknown"),
        }
        if container.restart_count > 0 {
            let _ = write!(text, " restarts={}", container.restart_count);
        }
    }
    text
}

/// Virtual time as seconds with microseconds: `52.000130s`.
pub(crate) fn show_time(at: Duration) -> String {
    format!("{}.{:06}s", at.as_secs(), at.subsec_micros())
}

fn show_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// `path` as seen from `base` (both absolute and normal): `../../target/x.wasm`.
fn relative_path(path: &Path, base: &Path) -> PathBuf {
    let path_parts: Vec<_> = path.components().collect();
    let base_parts: Vec<_> = base.components().collect();
    let common = path_parts
        .iter()
        .zip(&base_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return path.to_path_buf();
    }
    let mut relative = PathBuf::new();
    for _ in common..base_parts.len() {
        relative.push("..");
    }
    for part in &path_parts[common..] {
        relative.push(part);
    }
    relative
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_relative_to_a_base() {
        let show = |path: &str, base: &str| {
            relative_path(Path::new(path), Path::new(base))
                .display()
                .to_string()
        };
        assert_eq!(
            show("/w/target/components/a.wasm", "/w/examples/scenarios"),
            "../../target/components/a.wasm"
        );
        assert_eq!(show("/w/examples/a.wasm", "/w/examples"), "a.wasm");
    }

    #[test]
    fn aliases_replace_whole_paths_only() {
        let mut sim = Simulation::new(SimulationConfig::default()).unwrap();
        sim.path_aliases = vec![("t/a.wasm".into(), "../t/a.wasm".into())];
        assert_eq!(
            sim.aliased("loaded \"t/a.wasm\"; see ../../t/a.wasm and t/a.wasm"),
            "loaded \"../t/a.wasm\"; see ../../t/a.wasm and ../t/a.wasm"
        );
    }

    #[test]
    fn times_show_microseconds() {
        assert_eq!(
            show_time(Duration::from_nanos(52_000_130_999)),
            "52.000130s"
        );
        assert_eq!(show_time(Duration::ZERO), "0.000000s");
    }

    #[test]
    fn slices_are_whole_fuel() {
        let config = SimulationConfig {
            nanos_per_fuel: 3,
            time_slice: Duration::from_micros(10),
            ..SimulationConfig::default()
        };
        assert_eq!(config.fuel_per_slice(), 3333);
    }
}
