//! The scenario file format: the YAML a scenario is written in, read into a [`Scenario`] with
//! every error naming the file and the field. Every struct refuses unknown fields, so a typo is
//! an error naming the field.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::duration::{DurationValue, parse_duration};
use super::invariant::InvariantFile;
use super::variation::{ExploreFile, FaultsFile};
use super::{
    CALL_ERRORS, CallExpectation, Condition, DEFAULT_WAIT_TIMEOUT, Deadline, Scenario,
    ScenarioError, Step,
};
use crate::events::EventType;
use crate::manifest::{PodSpec, display_path};
use crate::testing::show_time;

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
        let document: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ScenarioError {
                file: path.display().to_string(),
                path: String::new(),
                message: format!("not valid YAML: {e}"),
            })?;
        Self::from_document(document, path)
    }

    /// Reads a scenario from its parsed YAML document; `path` names it in errors and anchors
    /// relative paths.
    pub(crate) fn from_document(
        document: serde_yaml_ng::Value,
        path: &Path,
    ) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let error = |field: &str, message: String| ScenarioError {
            file: file.clone(),
            path: field.to_string(),
            message,
        };
        let raw: ScenarioFile = serde_path_to_error::deserialize(document.clone())
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
                "a scenario needs at least one step (wait, expect, advance, delete, call, note)"
                    .into(),
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
            let (kind, container) = match step {
                Step::Wait { condition, .. } => ("wait", condition.container()),
                Step::Expect { condition, .. } => ("expect", condition.container()),
                Step::Call { container, .. } => ("call", container.as_deref()),
                _ => continue,
            };
            let containers = || pod.init_containers.iter().chain(&pod.containers);
            if let Some(container) = container
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
        let faults = raw
            .faults
            .unwrap_or_default()
            .parse()
            .map_err(|(field, message)| error(&field, message))?;
        let volumes: Vec<String> = pod.volumes.iter().map(|v| v.name.clone()).collect();
        if let Some((volume, _)) = faults.volumes.iter().find(|(v, _)| !volumes.contains(v)) {
            return Err(error(
                &format!("faults.volumes.{volume}"),
                super::variation::no_such_volume(volume, &volumes),
            ));
        }
        let mut invariants = Vec::new();
        for (index, invariant) in raw.invariants.into_iter().enumerate() {
            invariants.push(
                invariant
                    .parse(&format!("invariants[{index}]"), &pod, base)
                    .map_err(|(field, message)| error(&field, message))?,
            );
        }
        let has_delete = steps.iter().any(|step| matches!(step, Step::Delete { .. }));
        let explore = raw
            .explore
            .map(|explore| explore.parse(has_delete, &volumes))
            .transpose()
            .map_err(|(field, message)| error(&field, message))?;
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
            faults,
            invariants,
            explore,
            document,
        })
    }
}

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
    faults: Option<FaultsFile>,
    #[serde(default)]
    invariants: Vec<InvariantFile>,
    explore: Option<ExploreFile>,
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
    call: Option<CallFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallFile {
    container: Option<String>,
    export: String,
    #[serde(default)]
    args: Vec<WaveValue>,
    timeout: Option<DurationValue>,
    returns: Option<WaveValue>,
    error: Option<String>,
}

/// A WAVE value as YAML gives it: `'"text"'` is a string, `'[1, 2]'` a list, `42` a number,
/// `true` a bool.
struct WaveValue(String);

impl<'de> Deserialize<'de> for WaveValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_yaml_ng::Value::deserialize(deserializer)? {
            serde_yaml_ng::Value::String(text) => Ok(WaveValue(text)),
            serde_yaml_ng::Value::Number(number) => Ok(WaveValue(number.to_string())),
            serde_yaml_ng::Value::Bool(value) => Ok(WaveValue(value.to_string())),
            _ => Err(serde::de::Error::custom(
                "expected a WAVE value written as a YAML string (`'\"text\"'`, `'[1, 2]'`, \
                 `'ok(\"x\")'`), a number or a bool",
            )),
        }
    }
}

impl WaveValue {
    fn into_wave(self) -> String {
        self.0
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteFile {
    grace_period: Option<DurationValue>,
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
            ("call", self.call.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            return Err((
                at.to_string(),
                format!(
                    "a step is exactly one of `wait`, `expect`, `advance`, `delete`, `call` or \
                     `note`; this one has {}",
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
        if let Some(call) = self.call {
            let at = field("call");
            let timeout = call
                .timeout
                .map(|timeout| timeout.parse())
                .transpose()
                .map_err(|m| (format!("{at}.timeout"), m))?;
            let expect = match (call.returns, call.error) {
                (Some(_), Some(_)) => {
                    return Err((
                        format!("{at}.error"),
                        "give `returns` (what the call returns, in WAVE) or `error` (how it \
                         fails), not both"
                            .into(),
                    ));
                }
                (Some(returns), None) => Some(CallExpectation::Returns(returns.into_wave())),
                (None, Some(error)) => {
                    if !CALL_ERRORS.contains(&error.as_str()) {
                        return Err((
                            format!("{at}.error"),
                            format!(
                                "unknown call error `{error}`; one of {}",
                                CALL_ERRORS.join(", ")
                            ),
                        ));
                    }
                    Some(CallExpectation::Error(error))
                }
                (None, None) => None,
            };
            return Ok(Step::Call {
                container: call.container,
                export: call.export,
                args: call.args.into_iter().map(WaveValue::into_wave).collect(),
                timeout,
                expect,
            });
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
