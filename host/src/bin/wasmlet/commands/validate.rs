//! `wasmlet validate`: check manifests without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use wasmlet::{Manifests, WorkloadKind};

use crate::output::out;

/// Check manifests (as `kubectl apply -f` reads them: several files, several documents each)
/// and report every problem at once, with its field path.
#[derive(clap::Args)]
pub struct ValidateCommand {
    /// The manifests (YAML): Pods, workloads, and the ConfigMaps and Secrets they read.
    #[arg(required = true)]
    manifests: Vec<PathBuf>,
}

impl ValidateCommand {
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        match Manifests::from_files(&self.manifests) {
            Ok(manifests) => {
                for line in manifests.skipped() {
                    out!("{line}");
                }
                for workload in manifests.workloads() {
                    let pods = workload.pods();
                    let containers = pods.first().map_or(0, |pod| pod.containers().len());
                    match workload.kind() {
                        WorkloadKind::Pod => out!(
                            "{}: pod `{}` with {containers} container(s) is valid",
                            workload.file(),
                            workload.name(),
                        ),
                        WorkloadKind::Job => out!(
                            "{}: Job `{}` of pods with {containers} container(s) is valid",
                            workload.file(),
                            workload.name(),
                        ),
                        kind => out!(
                            "{}: {} `{}` of {} pod(s) with {containers} container(s) is valid",
                            workload.file(),
                            kind.name(),
                            workload.name(),
                            pods.len(),
                        ),
                    }
                    if let Some(pod) = pods.first()
                        && !pod.ignored().is_empty()
                    {
                        out!("  a single host ignores {}", pod.ignored().join(", "));
                    }
                    for missing in pods.first().map(|pod| pod.missing()).unwrap_or_default() {
                        out!("  needs {missing} before it can start");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for error in errors {
                    eprintln!("{error}");
                }
                Ok(ExitCode::from(2))
            }
        }
    }
}
