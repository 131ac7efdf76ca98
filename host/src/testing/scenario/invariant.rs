//! Invariants: what a scenario says must hold at the end of every run, however the run went —
//! the checks `wasmlet test --explore` applies after each of its runs. Their format (the
//! `invariants:` list of a scenario file) and how each is checked.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::super::{Simulation, TraceItem, show_time};
use crate::lifecycle::pod::Pod;
use crate::lifecycle::shared::claim_dir;
use crate::manifest::{PodSpec, VolumeSource};

/// What must hold once the pod has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invariant {
    /// The container ended with reason `Completed` (exit code 0).
    Completed(String),
    /// The container was never `Killed` (in any of its runs).
    NeverKilled(String),
    /// A line of output containing the text was printed (by the container, if one is named).
    Log {
        /// Text the line contains.
        text: String,
        /// The container that printed it.
        container: Option<String>,
    },
    /// The container exited 0 whenever the pod's grace period was at least `grace` (the
    /// shortest of its deletes'; a run without a delete had all the time it wanted).
    ExitsZeroWithGrace {
        /// The container.
        container: String,
        /// The least grace period from which it must exit 0.
        grace: Duration,
    },
    /// A command run on the files of a volume after the pod ended exits 0: `sh` (wasmlet's
    /// bundled shell) or a component file, with the volume mounted read-only.
    Files {
        /// The pod's volume (a `persistentVolumeClaim` or `hostPath`: they outlive the pod).
        volume: String,
        /// Where the command sees it.
        mount_path: String,
        /// The command, its whole argv.
        command: Vec<String>,
    },
}

impl Invariant {
    /// A short description, for traces and failures.
    pub fn describe(&self) -> String {
        match self {
            Invariant::Completed(container) => format!("{container} ended Completed"),
            Invariant::NeverKilled(container) => format!("{container} was never Killed"),
            Invariant::Log { text, container } => match container {
                Some(container) => format!("{container} printed {text:?}"),
                None => format!("output {text:?}"),
            },
            Invariant::ExitsZeroWithGrace { container, grace } => format!(
                "{container} exits 0 with a grace period of {} or more",
                humantime::format_duration(*grace)
            ),
            Invariant::Files { volume, .. } => {
                format!("the files of volume {volume} pass the check")
            }
        }
    }

    /// Checks it at the end of a run; `grace` is the shortest grace period the run's deletes
    /// gave (`None`: no delete). `Err` says how it was violated.
    pub(crate) fn check(
        &self,
        sim: &mut Simulation,
        pod: &Pod,
        grace: Option<Duration>,
    ) -> Result<(), String> {
        let status = pod.status();
        let terminated = |name: &str| {
            status
                .init_container_statuses
                .iter()
                .chain(&status.container_statuses)
                .flatten()
                .find(|c| c.name == name)
                .and_then(|c| c.state.as_ref()?.terminated.clone())
        };
        let ended = |name: &str| match terminated(name) {
            Some(end) => format!(
                "it ended with exit code {} ({})",
                end.exit_code,
                end.reason.as_deref().unwrap_or("no reason")
            ),
            None => "it has not ended".into(),
        };
        match self {
            Invariant::Completed(name) => match terminated(name) {
                Some(end) if end.reason.as_deref() == Some("Completed") => Ok(()),
                _ => Err(ended(name)),
            },
            Invariant::NeverKilled(name) => {
                let killed = sim.status_history().into_iter().find(|record| {
                    record.pod == pod.name()
                        && record
                            .status
                            .init_container_statuses
                            .iter()
                            .chain(&record.status.container_statuses)
                            .flatten()
                            .any(|c| {
                                c.name == *name
                                    && c.state
                                        .as_ref()
                                        .and_then(|s| s.terminated.as_ref())
                                        .is_some_and(|t| t.reason.as_deref() == Some("Killed"))
                            })
                });
                match killed {
                    Some(record) => Err(format!("it was Killed at {}", show_time(record.at))),
                    None => Ok(()),
                }
            }
            Invariant::Log { text, container } => {
                let printed = sim.entries().iter().any(|entry| match &entry.what {
                    TraceItem::Log(line) => {
                        line.line.contains(text.as_str())
                            && container.as_ref().is_none_or(|c| line.container == *c)
                    }
                    _ => false,
                });
                if printed {
                    Ok(())
                } else {
                    Err("no such line was printed".into())
                }
            }
            Invariant::ExitsZeroWithGrace {
                container,
                grace: least,
            } => {
                if grace.is_some_and(|grace| grace < *least) {
                    return Ok(());
                }
                match terminated(container) {
                    Some(end) if end.exit_code == 0 => Ok(()),
                    _ => Err(format!(
                        "{} (grace period {})",
                        ended(container),
                        grace.map_or("unbounded: no delete".into(), |g| {
                            humantime::format_duration(g).to_string()
                        })
                    )),
                }
            }
            Invariant::Files {
                volume,
                mount_path,
                command,
            } => {
                let dir = volume_dir(pod.spec(), volume, sim.config().host.data_dir.as_deref())?;
                let outcome = sim
                    .run_command("check", command.clone(), vec![(dir, mount_path.clone())])
                    .map_err(|e| format!("the check could not run: {e:#}"))?;
                if outcome.exit_code == 0 {
                    return Ok(());
                }
                let mut message = format!("the check exited with code {}", outcome.exit_code);
                if let Some(failure) = outcome.failure.filter(|f| !f.is_empty()) {
                    message.push_str(&format!(" ({failure})"));
                }
                if !outcome.output.is_empty() {
                    message.push_str(&format!("; output:\n{}", outcome.output.join("\n")));
                }
                Err(message)
            }
        }
    }
}

/// Where the files of `volume` are on the host once the pod has ended.
fn volume_dir(
    spec: &PodSpec,
    volume: &str,
    data_dir: Option<&std::path::Path>,
) -> Result<PathBuf, String> {
    let found = spec.volumes.iter().find(|v| v.name == volume);
    match found.map(|v| &v.source) {
        Some(VolumeSource::Claim { claim, .. }) => match data_dir {
            Some(data_dir) => Ok(claim_dir(data_dir, &spec.namespace, claim)),
            None => Err("the simulation has no data directory for claims".into()),
        },
        Some(VolumeSource::HostPath { path, .. }) => Ok(path.clone()),
        _ => Err(format!(
            "pod `{}` has no lasting volume `{volume}`",
            spec.name
        )),
    }
}

/// One entry of `invariants:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct InvariantFile {
    completed: Option<String>,
    never_killed: Option<String>,
    log: Option<String>,
    container: Option<String>,
    exits_zero: Option<String>,
    with_grace_at_least: Option<super::duration::DurationValue>,
    volume: Option<String>,
    check: Option<Vec<String>>,
    mount_path: Option<String>,
}

const KINDS: &str = "one of `completed: CONTAINER`, `neverKilled: CONTAINER`, `log: TEXT` (with \
                     `container`), `exitsZero: CONTAINER` (with `withGraceAtLeast`), or `volume: \
                     NAME` with `check: [sh, -c, …]` (and `mountPath`)";

impl InvariantFile {
    /// The invariant, checked against the pod; `Err` names the field and what is accepted.
    /// `base` anchors a relative component path of a `check`.
    pub(super) fn parse(
        self,
        at: &str,
        pod: &PodSpec,
        base: &std::path::Path,
    ) -> Result<Invariant, (String, String)> {
        let field = |name: &str| format!("{at}.{name}");
        let given: Vec<&str> = [
            ("completed", self.completed.is_some()),
            ("neverKilled", self.never_killed.is_some()),
            ("log", self.log.is_some()),
            ("exitsZero", self.exits_zero.is_some()),
            ("volume", self.volume.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            return Err((at.to_string(), format!("an invariant is {KINDS}")));
        }
        let misplaced = |fields: &[(&str, bool)]| -> Result<(), (String, String)> {
            match fields.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err((
                    field(name),
                    format!("does not belong to a `{}` invariant", given[0]),
                )),
                None => Ok(()),
            }
        };
        let container_exists = |name: &str, key: &str| -> Result<(), (String, String)> {
            let containers = || pod.init_containers.iter().chain(&pod.containers);
            if containers().any(|c| c.name == name) {
                return Ok(());
            }
            let names: Vec<_> = containers().map(|c| c.name.as_str()).collect();
            Err((
                field(key),
                format!(
                    "pod `{}` has no container `{name}`; its containers: {}",
                    pod.name,
                    names.join(", ")
                ),
            ))
        };
        let grace = ("withGraceAtLeast", self.with_grace_at_least.is_some());
        let files = [
            ("check", self.check.is_some()),
            ("mountPath", self.mount_path.is_some()),
        ];
        let container = ("container", self.container.is_some());
        match given[0] {
            "completed" | "neverKilled" => {
                misplaced(&[container, grace, files[0], files[1]])?;
                let (name, key) = match self.completed {
                    Some(name) => (name, "completed"),
                    None => (self.never_killed.unwrap_or_default(), "neverKilled"),
                };
                container_exists(&name, key)?;
                Ok(if key == "completed" {
                    Invariant::Completed(name)
                } else {
                    Invariant::NeverKilled(name)
                })
            }
            "log" => {
                misplaced(&[grace, files[0], files[1]])?;
                if let Some(name) = &self.container {
                    container_exists(name, "container")?;
                }
                Ok(Invariant::Log {
                    text: self.log.unwrap_or_default(),
                    container: self.container,
                })
            }
            "exitsZero" => {
                misplaced(&[container, files[0], files[1]])?;
                let name = self.exits_zero.unwrap_or_default();
                container_exists(&name, "exitsZero")?;
                let grace = match self.with_grace_at_least {
                    Some(grace) => grace.parse().map_err(|m| (field("withGraceAtLeast"), m))?,
                    None => Duration::ZERO,
                };
                Ok(Invariant::ExitsZeroWithGrace {
                    container: name,
                    grace,
                })
            }
            _ => {
                misplaced(&[container, grace])?;
                let volume = self.volume.unwrap_or_default();
                let Some(spec) = pod.volumes.iter().find(|v| v.name == volume) else {
                    let names: Vec<_> = pod.volumes.iter().map(|v| v.name.as_str()).collect();
                    return Err((
                        field("volume"),
                        format!(
                            "pod `{}` has no volume `{volume}`; its volumes: {}",
                            pod.name,
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ));
                };
                if !matches!(
                    spec.source,
                    VolumeSource::Claim { .. } | VolumeSource::HostPath { .. }
                ) {
                    return Err((
                        field("volume"),
                        format!(
                            "volume `{volume}` goes with the pod, before its files can be \
                             checked; check a `persistentVolumeClaim` (or `hostPath`) volume, \
                             which outlives the pod"
                        ),
                    ));
                }
                let mut command = self.check.unwrap_or_default();
                if command.is_empty() {
                    return Err((
                        field("check"),
                        "give the command that checks the files: `[sh, -c, \"…\"]` (wasmlet's \
                         bundled shell) or `[path/to/checker.wasm, args…]`"
                            .into(),
                    ));
                }
                let program = std::path::Path::new(&command[0]);
                if !matches!(command[0].as_str(), "sh" | "/bin/sh" | "/usr/bin/sh")
                    && program.is_relative()
                {
                    command[0] = base.join(program).display().to_string();
                }
                // By default the command sees the volume where the pod's containers do.
                let mount_path = self.mount_path.unwrap_or_else(|| {
                    pod.init_containers
                        .iter()
                        .chain(&pod.containers)
                        .flat_map(|c| c.volume_mounts())
                        .find(|m| m.volume == volume && m.sub_path.is_none())
                        .map(|m| m.mount_path.clone())
                        .unwrap_or_else(|| format!("/{volume}"))
                });
                if !mount_path.starts_with('/') {
                    return Err((
                        field("mountPath"),
                        format!("`{mount_path}` is not absolute; write it like `/data`"),
                    ));
                }
                Ok(Invariant::Files {
                    volume,
                    mount_path,
                    command,
                })
            }
        }
    }
}
