//! Scenarios: a pod driven through scripted steps in deterministic mode, the format of
//! `wasmlet test`. A scenario is a YAML file:
//!
//! ```yaml
//! name: preStop sleep 50s inside a grace period of 100s
//! pod: ../pods/cooperative.yaml   # a manifest path (relative to this file), or the Pod inline
//! seed: 7                          # optional; default 0
//! cpu: { nanosPerFuel: 1, timeSlice: 1ms }   # optional
//! steps:
//!   - wait: { phase: Running }
//!   - advance: 5s
//!   - delete: { gracePeriod: 30s }
//!   - expect: { event: Killing, container: app, within: 0s }
//!   - expect: { container: app, state: Terminated, reason: Completed, notBefore: 50s, by: 100s }
//! ```
//!
//! Its trace is compared with the golden trace beside it (`NAME.trace` for `NAME.yaml`).
//!
//! A scenario may also inject faults (`faults:`), state `invariants:` checked once the pod
//! has ended, and declare what `wasmlet test --explore` varies (`explore:`, see [`variation`]).

mod duration;
mod file;
mod invariant;
pub(crate) mod variation;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use k8s_openapi::api::core::v1::PodStatus;

use super::{Simulation, SimulationConfig, TraceEntry, TraceItem, WaitError, show_time};
use crate::events::{Event, EventType, LogLine};
use crate::lifecycle::faults::Faults;
use crate::lifecycle::pod::Pod;
use crate::manifest::PodSpec;
pub use invariant::Invariant;
pub use variation::{ExploreSpec, Hook, Span, Variation};

/// How long a `wait` without `timeout` may take, in virtual time.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(600);

/// A parsed scenario file.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name (the file's stem if it gives none).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its seed, if it sets one.
    pub seed: Option<u64>,
    /// Virtual nanoseconds per unit of fuel, if it sets them.
    pub nanos_per_fuel: Option<u64>,
    /// The time slice, if it sets one.
    pub time_slice: Option<Duration>,
    /// The pod it runs.
    pub pod: PodSpec,
    /// What it does, in order.
    pub steps: Vec<Step>,
    /// Faults injected at the host's boundary (`faults:`).
    pub faults: Faults,
    /// What must hold once the pod has ended, in every run.
    pub invariants: Vec<Invariant>,
    /// What `--explore` varies (`explore:`), if it declares anything.
    pub explore: Option<ExploreSpec>,
    /// The file's document, which variations are written into.
    pub(crate) document: serde_yaml_ng::Value,
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Step {
    /// Run until the condition holds; fail if it does not by `timeout` after the step begins.
    Wait {
        /// What to wait for.
        condition: Condition,
        /// Virtual time the wait may take.
        timeout: Duration,
    },
    /// The condition must hold by a virtual time (now, without one); with `absent`, it must not.
    Expect {
        /// What must hold.
        condition: Condition,
        /// The latest time it may first hold at; `None`: it must hold when the step begins.
        by: Option<Deadline>,
        /// The earliest virtual time it may first hold at.
        not_before: Option<Duration>,
        /// It must not have held, up to `by` (or now).
        absent: bool,
    },
    /// Let virtual time pass.
    Advance(Duration),
    /// Delete the pod, with its own grace period or the one given.
    Delete {
        /// The grace period of the delete.
        grace_period: Option<Duration>,
    },
    /// A line of its own in the trace.
    Note(String),
    /// Start a call of a container's export ([`crate::Pod::call_wave`]) and go on: it runs
    /// beside the steps that follow. How it ended is checked once the steps are done.
    Call {
        /// The container (default: the pod's only app container).
        container: Option<String>,
        /// `interface#function`, or a function of the component's own.
        export: String,
        /// Its arguments, in WAVE.
        args: Vec<String>,
        /// Its [`CallOptions::timeout`](crate::CallOptions::timeout).
        timeout: Option<Duration>,
        /// How it must end, if the scenario says.
        expect: Option<CallExpectation>,
    },
}

/// How a `call:` step's call must end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallExpectation {
    /// It returns these results, in WAVE (compared without regard to spaces outside strings).
    Returns(String),
    /// It fails with this [`CallError::kind`](crate::CallError::kind).
    Error(String),
}

/// The names a `call:` step's `error` may give.
pub(crate) const CALL_ERRORS: &[&str] = &[
    "NoSuchContainer",
    "NotRunning",
    "Stopping",
    "Killed",
    "TimedOut",
    "Failed",
    "Exited",
];

/// A `call:` step's call in flight: which step started it, and its result when it ends.
type PendingCall = (
    usize,
    tokio::task::JoinHandle<Result<Vec<String>, crate::CallError>>,
);

/// When an `expect` must hold by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `by`: a virtual time since the start.
    At(Duration),
    /// `within`: a span from the step's beginning.
    Within(Duration),
}

impl Deadline {
    /// The deadline as virtual time since the start, for a step beginning at `step_start`.
    pub fn resolve(self, step_start: Duration) -> Duration {
        match self {
            Deadline::At(at) => at,
            Deadline::Within(span) => step_start.saturating_add(span),
        }
    }
}

/// What a `wait` or `expect` looks for.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The pod phase: Pending, Running, Succeeded or Failed.
    Phase(String),
    /// A container's status.
    Container {
        /// The container.
        name: String,
        /// Waiting, Running or Terminated.
        state: Option<String>,
        /// Its exit code (terminated).
        exit_code: Option<i32>,
        /// Its reason (waiting or terminated).
        reason: Option<String>,
        /// Its readiness.
        ready: Option<bool>,
        /// Its restart count.
        restart_count: Option<i32>,
    },
    /// An event recorded so far.
    Event {
        /// The event's reason.
        reason: String,
        /// The container it is about.
        container: Option<String>,
        /// Normal or Warning.
        kind: Option<EventType>,
        /// Text its message contains.
        message: Option<String>,
        /// How many times it has happened (its count reached this).
        count: Option<u32>,
    },
    /// A line of output printed so far.
    Log {
        /// Text the line contains.
        text: String,
        /// The container that printed it.
        container: Option<String>,
    },
}

/// What a scenario run gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The trace, header included.
    pub trace: String,
    /// Expectations that failed (the run stops at the first).
    pub failures: Vec<String>,
}

impl Outcome {
    /// Whether every step held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Overrides a run may set on top of the scenario's own settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Replaces the scenario's seed.
    pub seed: Option<u64>,
}

/// A problem in a scenario file, with the path of the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid scenario `{file}`: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ScenarioError {
    /// The scenario file.
    pub file: String,
    /// The field, as `steps[2].expect.exitCode`; empty for the whole file.
    pub path: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl Scenario {
    /// The golden trace's file: `NAME.trace` beside `NAME.yaml`.
    pub fn golden_file(&self) -> PathBuf {
        self.file.with_extension("trace")
    }

    /// The simulation settings this scenario runs with.
    pub fn config(&self, options: RunOptions) -> SimulationConfig {
        let defaults = SimulationConfig::default();
        SimulationConfig {
            seed: options.seed.or(self.seed).unwrap_or(defaults.seed),
            nanos_per_fuel: self.nanos_per_fuel.unwrap_or(defaults.nanos_per_fuel),
            time_slice: self.time_slice.unwrap_or(defaults.time_slice),
            faults: self.faults.clone(),
            ..defaults
        }
    }

    /// Runs the scenario once. An `Err` is wasmlet failing to run it at all (a component that
    /// does not load); failed expectations are in the [`Outcome`].
    pub fn run(&self, options: RunOptions) -> anyhow::Result<Outcome> {
        let mut config = self.config(options);
        // Claims live in a data directory of the run's own: runs never share files, and
        // invariants can check them after the pod is gone.
        let data_dir = tempfile::Builder::new()
            .prefix("wasmlet-scenario-")
            .tempdir()
            .context("creating the run's data directory")?;
        config.host.data_dir = Some(data_dir.path().to_path_buf());
        let mut header = format!("# scenario: {}\n# seed: {}\n", self.name, config.seed);
        let _ = writeln!(
            header,
            "# cpu: {} ns per unit of fuel, time slice {}",
            config.nanos_per_fuel,
            humantime::format_duration(config.time_slice)
        );
        let grace_default = self
            .pod
            .termination_grace_period
            .unwrap_or(config.host.default_grace_period);
        let mut sim = Simulation::new(config)?;
        if let Some(dir) = self.file.parent() {
            sim.show_paths_relative_to(dir);
        }
        let pod = sim.start(self.pod.clone())?;
        let mut failures = Vec::new();
        // The shortest grace period of the deletes so far (a shorter one counts from the first).
        let mut grace: Option<Duration> = None;
        let mut calls: Vec<PendingCall> = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            if let Step::Delete { grace_period } = step {
                let this = grace_period.unwrap_or(grace_default);
                grace = Some(grace.map_or(this, |grace| grace.min(this)));
            }
            if let Step::Call {
                container,
                export,
                args,
                timeout,
                ..
            } = step
            {
                let container = container.clone().unwrap_or_else(|| {
                    (self.pod.containers.first()).map_or_else(String::new, |c| c.name.clone())
                });
                let options = crate::CallOptions { timeout: *timeout };
                calls.push((index, sim.call(&pod, &container, export, args, options)));
                continue;
            }
            if let Err(failure) = run_step(&mut sim, &pod, step) {
                failures.push(format!(
                    "steps[{index}] ({}) failed at {}: {failure}",
                    step.describe(),
                    show_time(sim.now())
                ));
                break;
            }
        }
        if failures.is_empty() {
            failures.extend(check_calls(&mut sim, &self.steps, calls));
        }
        if failures.is_empty() && !self.invariants.is_empty() {
            failures.extend(check_invariants(&mut sim, &pod, &self.invariants, grace));
        }
        Ok(Outcome {
            trace: header + &sim.trace(),
            failures,
        })
    }
}

/// Waits for the calls of `call:` steps to end (bounded in virtual time), then checks each
/// against what its step expects; returns how they were not as expected.
fn check_calls(sim: &mut Simulation, steps: &[Step], calls: Vec<PendingCall>) -> Vec<String> {
    let mut failures = Vec::new();
    for (index, call) in calls {
        let Step::Call { expect, .. } = &steps[index] else {
            continue;
        };
        let deadline = sim.now().saturating_add(DEFAULT_WAIT_TIMEOUT);
        let clock = sim.clock();
        let until = crate::clock::after(clock.now(), DEFAULT_WAIT_TIMEOUT);
        let ended = sim.block_on(async {
            tokio::select! {
                biased;
                ended = call => Some(ended),
                () = crate::clock::sleep_until(&clock, until) => None,
            }
        });
        let describe = steps[index].describe();
        let result = match ended {
            Some(Ok(result)) => result,
            Some(Err(_)) | None => {
                failures.push(format!(
                    "steps[{index}] ({describe}): the call did not end by {}",
                    show_time(deadline)
                ));
                continue;
            }
        };
        let unexpected = match (expect, &result) {
            (None, _) => None,
            (Some(CallExpectation::Returns(wanted)), Ok(results))
                if without_spaces(wanted) == without_spaces(&results.join(", ")) =>
            {
                None
            }
            (Some(CallExpectation::Error(kind)), Err(error)) if error.kind() == kind => None,
            (Some(expected), _) => Some(format!(
                "expected it to {}, but it {}",
                match expected {
                    CallExpectation::Returns(wanted) => format!("return {wanted}"),
                    CallExpectation::Error(kind) => format!("fail with {kind}"),
                },
                match &result {
                    Ok(results) => format!("returned {}", results.join(", ")),
                    Err(error) => format!("failed with {}: {error}", error.kind()),
                }
            )),
        };
        if let Some(unexpected) = unexpected {
            failures.push(format!("steps[{index}] ({describe}): {unexpected}"));
        }
    }
    failures
}

/// `text` without the spaces outside its string literals: WAVE values compared as values.
fn without_spaces(text: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Lets the pod end, then checks each invariant; returns how they were violated.
fn check_invariants(
    sim: &mut Simulation,
    pod: &Pod,
    invariants: &[Invariant],
    grace: Option<Duration>,
) -> Vec<String> {
    let deadline = sim.now().saturating_add(DEFAULT_WAIT_TIMEOUT);
    if let Err(error) = sim.wait_for(pod, crate::lifecycle::phase_is_final, Some(deadline)) {
        return vec![format!("invariants: the pod did not end: {error}")];
    }
    let mut failures = Vec::new();
    for (index, invariant) in invariants.iter().enumerate() {
        match invariant.check(sim, pod, grace) {
            Ok(()) => sim.note(format!("invariant holds: {}", invariant.describe())),
            Err(violation) => {
                sim.note(format!("invariant VIOLATED: {}", invariant.describe()));
                failures.push(format!(
                    "invariants[{index}] ({}) violated: {violation}",
                    invariant.describe()
                ));
            }
        }
    }
    failures
}

fn run_step(sim: &mut Simulation, pod: &Pod, step: &Step) -> Result<(), String> {
    match step {
        Step::Advance(by) => sim.advance(*by),
        Step::Delete { grace_period } => sim.delete(pod, *grace_period),
        Step::Note(text) => sim.note(text.clone()),
        Step::Call { .. } => unreachable!("started by the scenario's run"),
        Step::Wait { condition, timeout } => {
            let deadline = sim.now().saturating_add(*timeout);
            sim.run_until(
                pod,
                |trace, status| condition.holds(trace, status),
                Some(deadline),
            )
            .map_err(|e| e.to_string())?;
            let when = condition.first_held(sim, pod).unwrap_or(sim.now());
            sim.note_at(when, format!("{} (waited)", condition.describe()));
        }
        Step::Expect {
            condition,
            by,
            not_before,
            absent: true,
        } => {
            let deadline = match by {
                Some(by) => {
                    let deadline = by.resolve(sim.now());
                    // Let time run to the deadline; the pod may have nothing left to do before.
                    let _ = sim.run_until(pod, |_, _| false, Some(deadline));
                    deadline
                }
                None => sim.now(),
            };
            let earliest = not_before.unwrap_or_default();
            let held = condition
                .spans(sim, pod)
                .into_iter()
                .find(|(start, end)| *end >= earliest && *start <= deadline);
            if let Some((start, _)) = held {
                return Err(format!(
                    "expected no {} between {} and {}, but it held at {}",
                    condition.describe(),
                    show_time(earliest),
                    show_time(deadline),
                    show_time(start.max(earliest))
                ));
            }
            sim.note_at(
                deadline,
                format!("no {} (as expected)", condition.describe()),
            );
        }
        Step::Expect {
            condition,
            by,
            not_before,
            absent: false,
        } => {
            let deadline = by.map_or(sim.now(), |by| by.resolve(sim.now()));
            let waited = sim.run_until(
                pod,
                |trace, status| condition.holds(trace, status),
                Some(deadline.max(sim.now())),
            );
            let when = match waited {
                Ok(_) => condition.first_held(sim, pod),
                Err(WaitError::Timeout { state, .. } | WaitError::Stalled { state, .. }) => {
                    return Err(format!(
                        "expected {} by {}; at {}: {state}",
                        condition.describe(),
                        show_time(deadline),
                        show_time(sim.now())
                    ));
                }
            };
            let when = when.unwrap_or(sim.now());
            if when > deadline {
                return Err(format!(
                    "expected {} by {}, but it held only at {}",
                    condition.describe(),
                    show_time(deadline),
                    show_time(when)
                ));
            }
            if let Some(earliest) = not_before
                && when < *earliest
            {
                return Err(format!(
                    "expected {} no earlier than {}, but it held at {}",
                    condition.describe(),
                    show_time(*earliest),
                    show_time(when)
                ));
            }
            sim.note_at(when, format!("{} (as expected)", condition.describe()));
        }
    }
    Ok(())
}

impl Step {
    /// A short description, for traces and failures.
    pub fn describe(&self) -> String {
        match self {
            Step::Wait { condition, .. } => format!("wait for {}", condition.describe()),
            Step::Expect {
                condition,
                by,
                absent,
                ..
            } => format!(
                "expect {}{}{}",
                if *absent { "no " } else { "" },
                condition.describe(),
                match by {
                    Some(Deadline::At(at)) => format!(" by {}", show_time(*at)),
                    Some(Deadline::Within(span)) =>
                        format!(" within {}", humantime::format_duration(*span)),
                    None => String::new(),
                }
            ),
            Step::Advance(by) => format!("advance {}", humantime::format_duration(*by)),
            Step::Delete { grace_period } => match grace_period {
                Some(grace) => format!("delete, grace {}", humantime::format_duration(*grace)),
                None => "delete".into(),
            },
            Step::Note(text) => format!("note {text:?}"),
            Step::Call { export, args, .. } => format!("call {export}({})", args.join(", ")),
        }
    }
}

impl Condition {
    /// Whether it holds now.
    pub fn holds(&self, trace: &[TraceEntry], status: &PodStatus) -> bool {
        match self {
            Condition::Phase(_) | Condition::Container { .. } => self.holds_for(status),
            Condition::Event { .. } | Condition::Log { .. } => {
                trace.iter().any(|entry| self.matches(entry))
            }
        }
    }

    /// When it held: each matching event or line as `(time, time)`; for a condition on the
    /// status, each span of the pod's status history in which it held, up to now.
    fn spans(&self, sim: &Simulation, pod: &Pod) -> Vec<(Duration, Duration)> {
        match self {
            Condition::Phase(_) | Condition::Container { .. } => {
                let history: Vec<_> = sim
                    .status_history()
                    .into_iter()
                    .filter(|record| record.pod == pod.name())
                    .collect();
                let mut spans: Vec<(Duration, Duration)> = Vec::new();
                let mut open: Option<Duration> = None;
                for (index, record) in history.iter().enumerate() {
                    let end = history.get(index + 1).map_or(sim.now(), |next| next.at);
                    if self.holds_for(&record.status) {
                        let start = *open.get_or_insert(record.at);
                        if index + 1 == history.len() {
                            spans.push((start, end));
                        }
                    } else if let Some(start) = open.take() {
                        spans.push((start, record.at));
                    }
                }
                spans
            }
            _ => sim
                .entries()
                .iter()
                .filter(|entry| self.matches(entry))
                .map(|entry| (entry.at, entry.at))
                .collect(),
        }
    }

    /// When it first held: the first matching event or line; for a condition on the status,
    /// when the span in which it holds now began.
    fn first_held(&self, sim: &Simulation, pod: &Pod) -> Option<Duration> {
        let spans = self.spans(sim, pod);
        match self {
            Condition::Phase(_) | Condition::Container { .. } => spans
                .last()
                .filter(|_| self.holds_for(&pod.status()))
                .map(|(start, _)| *start),
            _ => spans.first().map(|(at, _)| *at),
        }
    }

    fn holds_for(&self, status: &PodStatus) -> bool {
        match self {
            Condition::Phase(phase) => status.phase.as_deref() == Some(phase.as_str()),
            Condition::Container {
                name,
                state,
                exit_code,
                reason,
                ready,
                restart_count,
            } => {
                let Some(container) = status
                    .init_container_statuses
                    .iter()
                    .chain(&status.container_statuses)
                    .flatten()
                    .find(|c| c.name == *name)
                else {
                    return false;
                };
                let current = container.state.clone().unwrap_or_default();
                let (current_state, current_reason, current_exit) =
                    match (&current.waiting, &current.running, &current.terminated) {
                        (_, _, Some(t)) => ("Terminated", t.reason.clone(), Some(t.exit_code)),
                        (_, Some(_), _) => ("Running", None, None),
                        (Some(w), _, _) => ("Waiting", w.reason.clone(), None),
                        _ => ("Unknown", None, None),
                    };
                state.as_ref().is_none_or(|s| s == current_state)
                    && exit_code.is_none_or(|code| current_exit == Some(code))
                    && reason
                        .as_ref()
                        .is_none_or(|r| current_reason.as_deref() == Some(r.as_str()))
                    && ready.is_none_or(|ready| container.ready == ready)
                    && restart_count.is_none_or(|count| container.restart_count == count)
            }
            _ => false,
        }
    }

    fn matches(&self, entry: &TraceEntry) -> bool {
        match (self, &entry.what) {
            (
                Condition::Event {
                    reason,
                    container,
                    kind,
                    message,
                    count,
                },
                TraceItem::Event(event),
            ) => {
                event_matches(event, reason, container, kind, message)
                    && count.is_none_or(|count| event.count >= count)
            }
            (Condition::Log { text, container }, TraceItem::Log(line)) => {
                log_matches(line, text, container)
            }
            _ => false,
        }
    }

    /// The container it is about, if it names one.
    pub fn container(&self) -> Option<&str> {
        match self {
            Condition::Phase(_) => None,
            Condition::Container { name, .. } => Some(name),
            Condition::Event { container, .. } | Condition::Log { container, .. } => {
                container.as_deref()
            }
        }
    }

    /// A short description, for traces and failures.
    pub fn describe(&self) -> String {
        match self {
            Condition::Phase(phase) => format!("phase {phase}"),
            Condition::Container {
                name,
                state,
                exit_code,
                reason,
                ready,
                restart_count,
            } => {
                let mut text = format!("container {name}");
                if let Some(state) = state {
                    let _ = write!(text, " {state}");
                }
                if let Some(code) = exit_code {
                    let _ = write!(text, " exitCode={code}");
                }
                if let Some(reason) = reason {
                    let _ = write!(text, " reason={reason}");
                }
                if let Some(ready) = ready {
                    let _ = write!(text, " ready={ready}");
                }
                if let Some(count) = restart_count {
                    let _ = write!(text, " restartCount={count}");
                }
                text
            }
            Condition::Event {
                reason,
                container,
                kind,
                message,
                count,
            } => {
                let mut text = format!("event {reason}");
                if let Some(count) = count {
                    let _ = write!(text, " x{count}");
                }
                if let Some(kind) = kind {
                    let _ = write!(text, " ({kind:?})");
                }
                if let Some(container) = container {
                    let _ = write!(text, " of {container}");
                }
                if let Some(message) = message {
                    let _ = write!(text, " saying {message:?}");
                }
                text
            }
            Condition::Log { text, container } => match container {
                Some(container) => format!("output {text:?} from {container}"),
                None => format!("output {text:?}"),
            },
        }
    }
}

fn event_matches(
    event: &Event,
    reason: &str,
    container: &Option<String>,
    kind: &Option<EventType>,
    message: &Option<String>,
) -> bool {
    event.reason == reason
        && container
            .as_ref()
            .is_none_or(|c| event.container.as_deref() == Some(c.as_str()))
        && kind.is_none_or(|kind| event.kind == kind)
        && message
            .as_ref()
            .is_none_or(|m| event.message.contains(m.as_str()))
}

fn log_matches(line: &LogLine, text: &str, container: &Option<String>) -> bool {
    line.line.contains(text) && container.as_ref().is_none_or(|c| line.container == *c)
}
