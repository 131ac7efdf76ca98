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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodStatus;
use serde::Deserialize;

use super::{Simulation, SimulationConfig, TraceEntry, TraceItem, WaitError, show_time};
use crate::events::{Event, EventType, LogLine};
use crate::lifecycle::pod::Pod;
use crate::manifest::{PodSpec, display_path};

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
}

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
    /// Reads a scenario file (and the pod manifest it names).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            file: file.clone(),
            path: String::new(),
            message: format!("cannot read the file: {error}"),
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses a scenario; `path` names it in errors and anchors relative paths.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let error = |field: &str, message: String| ScenarioError {
            file: file.clone(),
            path: field.to_string(),
            message,
        };
        let document: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| error("", format!("not valid YAML: {e}")))?;
        let raw: ScenarioFile = serde_path_to_error::deserialize(document)
            .map_err(|e| error(&display_path(&e.path().to_string()), e.inner().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let pod = match raw.pod {
            serde_yaml_ng::Value::String(manifest) => {
                crate::manifest::Manifests::from_files(&[base.join(&manifest)])
                    .map_err(|errors| {
                        let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                        errors.join("\n")
                    })
                    .and_then(|manifests| manifests.into_single_pod())
                    .map_err(|e| error("pod", e))?
            }
            serde_yaml_ng::Value::Mapping(_) => {
                let text = serde_yaml_ng::to_string(&raw.pod).unwrap_or_default();
                PodSpec::from_yaml(&text, base, &format!("{file} (pod)"))
                    .map_err(|e| error("pod", e.to_string()))?
            }
            _ => {
                return Err(error(
                    "pod",
                    "expected the path of a Pod manifest, or a Pod manifest inline".into(),
                ));
            }
        };
        let cpu = raw.cpu.unwrap_or_default();
        if cpu.nanos_per_fuel == Some(0) {
            return Err(error(
                "cpu.nanosPerFuel",
                "must be at least 1 (virtual nanoseconds per unit of fuel)".into(),
            ));
        }
        let time_slice = cpu
            .time_slice
            .map(|slice| parse_duration(&slice).map_err(|m| error("cpu.timeSlice", m)))
            .transpose()?;
        if time_slice == Some(Duration::ZERO) {
            return Err(error("cpu.timeSlice", "must be longer than zero".into()));
        }
        if raw.steps.is_empty() {
            return Err(error(
                "steps",
                "a scenario needs at least one step (wait, expect, advance, delete, note)".into(),
            ));
        }
        let mut steps = Vec::new();
        for (index, step) in raw.steps.into_iter().enumerate() {
            steps.push(
                step.parse(&format!("steps[{index}]"))
                    .map_err(|(field, message)| error(&field, message))?,
            );
        }
        for (index, step) in steps.iter().enumerate() {
            let (kind, condition) = match step {
                Step::Wait { condition, .. } => ("wait", condition),
                Step::Expect { condition, .. } => ("expect", condition),
                _ => continue,
            };
            let containers = || pod.init_containers.iter().chain(&pod.containers);
            if let Some(container) = condition.container()
                && !containers().any(|c| c.name == container)
            {
                let names: Vec<_> = containers().map(|c| c.name.as_str()).collect();
                return Err(error(
                    &format!("steps[{index}].{kind}.container"),
                    format!(
                        "pod `{}` has no container `{container}`; its containers: {}",
                        pod.name,
                        names.join(", ")
                    ),
                ));
            }
            if let Step::Expect {
                by: Some(Deadline::At(by)),
                not_before: Some(not_before),
                ..
            } = step
                && by < not_before
            {
                return Err(error(
                    &format!("steps[{index}].expect.notBefore"),
                    format!(
                        "{} is after `by` ({}): nothing could satisfy both",
                        show_time(*not_before),
                        show_time(*by)
                    ),
                ));
            }
        }
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into())
        });
        Ok(Scenario {
            name,
            file: path.to_path_buf(),
            seed: raw.seed,
            nanos_per_fuel: cpu.nanos_per_fuel,
            time_slice,
            pod,
            steps,
        })
    }

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
            ..defaults
        }
    }

    /// Runs the scenario once. An `Err` is wasmlet failing to run it at all (a component that
    /// does not load); failed expectations are in the [`Outcome`].
    pub fn run(&self, options: RunOptions) -> anyhow::Result<Outcome> {
        let config = self.config(options);
        let mut header = format!("# scenario: {}\n# seed: {}\n", self.name, config.seed);
        let _ = writeln!(
            header,
            "# cpu: {} ns per unit of fuel, time slice {}",
            config.nanos_per_fuel,
            humantime::format_duration(config.time_slice)
        );
        let mut sim = Simulation::new(config)?;
        if let Some(dir) = self.file.parent() {
            sim.show_paths_relative_to(dir);
        }
        let pod = sim.start(self.pod.clone())?;
        let mut failures = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            if let Err(failure) = run_step(&mut sim, &pod, step) {
                failures.push(format!(
                    "steps[{index}] ({}) failed at {}: {failure}",
                    step.describe(),
                    show_time(sim.now())
                ));
                break;
            }
        }
        Ok(Outcome {
            trace: header + &sim.trace(),
            failures,
        })
    }
}

fn run_step(sim: &mut Simulation, pod: &Pod, step: &Step) -> Result<(), String> {
    match step {
        Step::Advance(by) => sim.advance(*by),
        Step::Delete { grace_period } => sim.delete(pod, *grace_period),
        Step::Note(text) => sim.note(text.clone()),
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

// The file format. Every struct refuses unknown fields, so a typo is an error naming the field.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScenarioFile {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    pod: serde_yaml_ng::Value,
    seed: Option<u64>,
    cpu: Option<CpuFile>,
    steps: Vec<StepFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CpuFile {
    nanos_per_fuel: Option<u64>,
    time_slice: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StepFile {
    wait: Option<ConditionFile>,
    expect: Option<ConditionFile>,
    advance: Option<DurationValue>,
    delete: Option<DeleteFile>,
    note: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteFile {
    grace_period: Option<DurationValue>,
}

/// A duration as humantime text (`30s`, `1m 30s`, `250ms`) or a number of seconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl DurationValue {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(seconds) => Ok(Duration::from_secs(*seconds)),
            DurationValue::Text(text) => parse_duration(text),
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like `30s`, `1m 30s` or `250ms`")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConditionFile {
    phase: Option<String>,
    container: Option<String>,
    state: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    ready: Option<bool>,
    restart_count: Option<i32>,
    event: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    count: Option<u32>,
    log: Option<String>,
    by: Option<DurationValue>,
    within: Option<DurationValue>,
    not_before: Option<DurationValue>,
    timeout: Option<DurationValue>,
    #[serde(default)]
    absent: bool,
}

type FieldError = (String, String);

impl StepFile {
    fn parse(self, at: &str) -> Result<Step, FieldError> {
        let given: Vec<&str> = [
            ("wait", self.wait.is_some()),
            ("expect", self.expect.is_some()),
            ("advance", self.advance.is_some()),
            ("delete", self.delete.is_some()),
            ("note", self.note.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            return Err((
                at.to_string(),
                format!(
                    "a step is exactly one of `wait`, `expect`, `advance`, `delete` or `note`; \
                     this one has {}",
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(" and ")
                    }
                ),
            ));
        }
        let field = |name: &str| format!("{at}.{name}");
        if let Some(wait) = self.wait {
            let at = field("wait");
            for (set, name) in [
                (wait.by.is_some(), "by"),
                (wait.within.is_some(), "within"),
                (wait.not_before.is_some(), "notBefore"),
                (wait.absent, "absent"),
            ] {
                if set {
                    return Err((
                        format!("{at}.{name}"),
                        "belongs to `expect`; a `wait` takes only `timeout`".into(),
                    ));
                }
            }
            let timeout = match &wait.timeout {
                Some(timeout) => timeout.parse().map_err(|m| (format!("{at}.timeout"), m))?,
                None => DEFAULT_WAIT_TIMEOUT,
            };
            return Ok(Step::Wait {
                condition: wait.condition(&at)?,
                timeout,
            });
        }
        if let Some(expect) = self.expect {
            let at = field("expect");
            if expect.timeout.is_some() {
                return Err((
                    format!("{at}.timeout"),
                    "belongs to `wait`; an `expect` takes `by` or `within`".into(),
                ));
            }
            if expect.by.is_some() && expect.within.is_some() {
                return Err((
                    format!("{at}.within"),
                    "give `by` (a virtual time since the start) or `within` (a time from this \
                     step), not both"
                        .into(),
                ));
            }
            let by = expect
                .by
                .as_ref()
                .map(|by| by.parse().map_err(|m| (format!("{at}.by"), m)))
                .transpose()?
                .map(Deadline::At);
            let within = expect
                .within
                .as_ref()
                .map(|within| within.parse().map_err(|m| (format!("{at}.within"), m)))
                .transpose()?
                .map(Deadline::Within);
            let not_before = expect
                .not_before
                .as_ref()
                .map(|t| t.parse().map_err(|m| (format!("{at}.notBefore"), m)))
                .transpose()?;
            let condition = expect.condition(&at)?;
            return Ok(Step::Expect {
                condition,
                by: by.or(within),
                not_before,
                absent: expect.absent,
            });
        }
        if let Some(advance) = self.advance {
            return advance
                .parse()
                .map(Step::Advance)
                .map_err(|m| (field("advance"), m));
        }
        if let Some(delete) = self.delete {
            let grace_period = delete
                .grace_period
                .map(|grace| grace.parse())
                .transpose()
                .map_err(|m| (field("delete.gracePeriod"), m))?;
            return Ok(Step::Delete { grace_period });
        }
        Ok(Step::Note(self.note.unwrap_or_default()))
    }
}

impl ConditionFile {
    fn condition(&self, at: &str) -> Result<Condition, FieldError> {
        let kinds: Vec<&str> = [
            ("phase", self.phase.is_some()),
            (
                "container",
                self.container.is_some() && self.event.is_none() && self.log.is_none(),
            ),
            ("event", self.event.is_some()),
            ("log", self.log.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if kinds.len() != 1 {
            return Err((
                at.to_string(),
                "give one of `phase`, `container` (with `state`, `exitCode`, `reason`, `ready` \
                 or `restartCount`), `event` (optionally with `container`, `type`, `message`, \
                 `count`) or `log` (optionally with `container`)"
                    .into(),
            ));
        }
        let misplaced = |fields: &[(&str, bool)], belongs: &str| -> Result<(), FieldError> {
            match fields.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err((
                    format!("{at}.{name}"),
                    format!("belongs to a `{belongs}` condition"),
                )),
                None => Ok(()),
            }
        };
        let status_fields = [
            ("state", self.state.is_some()),
            ("exitCode", self.exit_code.is_some()),
            ("reason", self.reason.is_some()),
            ("ready", self.ready.is_some()),
            ("restartCount", self.restart_count.is_some()),
        ];
        let event_fields = [
            ("type", self.kind.is_some()),
            ("message", self.message.is_some()),
            ("count", self.count.is_some()),
        ];
        match kinds[0] {
            "phase" => {
                misplaced(&status_fields, "container")?;
                misplaced(&event_fields, "event")?;
                if self.container.is_some() {
                    return Err((
                        format!("{at}.container"),
                        "a `phase` is the pod's; drop `container`, or ask for the container's \
                         `state`"
                            .into(),
                    ));
                }
                let phase = self.phase.clone().unwrap_or_default();
                match phase.as_str() {
                    "Pending" | "Running" | "Succeeded" | "Failed" => Ok(Condition::Phase(phase)),
                    other => Err((
                        format!("{at}.phase"),
                        format!(
                            "unknown phase `{other}`; one of Pending, Running, Succeeded, Failed"
                        ),
                    )),
                }
            }
            "container" => {
                misplaced(&event_fields, "event")?;
                if let Some(state) = &self.state
                    && !matches!(state.as_str(), "Waiting" | "Running" | "Terminated")
                {
                    return Err((
                        format!("{at}.state"),
                        format!("unknown state `{state}`; one of Waiting, Running, Terminated"),
                    ));
                }
                if status_fields.iter().all(|(_, set)| !set) {
                    return Err((
                        at.to_string(),
                        "a `container` condition needs `state`, `exitCode`, `reason`, `ready` \
                         or `restartCount`"
                            .into(),
                    ));
                }
                Ok(Condition::Container {
                    name: self.container.clone().unwrap_or_default(),
                    state: self.state.clone(),
                    exit_code: self.exit_code,
                    reason: self.reason.clone(),
                    ready: self.ready,
                    restart_count: self.restart_count,
                })
            }
            "event" => {
                misplaced(&status_fields, "container")?;
                let kind = match self.kind.as_deref() {
                    None => None,
                    Some("Normal") => Some(EventType::Normal),
                    Some("Warning") => Some(EventType::Warning),
                    Some(other) => {
                        return Err((
                            format!("{at}.type"),
                            format!("unknown event type `{other}`; Normal or Warning"),
                        ));
                    }
                };
                Ok(Condition::Event {
                    reason: self.event.clone().unwrap_or_default(),
                    container: self.container.clone(),
                    kind,
                    message: self.message.clone(),
                    count: self.count,
                })
            }
            _ => {
                misplaced(&status_fields, "container")?;
                misplaced(&event_fields, "event")?;
                Ok(Condition::Log {
                    text: self.log.clone().unwrap_or_default(),
                    container: self.container.clone(),
                })
            }
        }
    }
}
