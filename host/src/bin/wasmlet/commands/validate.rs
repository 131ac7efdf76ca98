//! `wasmlet validate`: check a manifest without running it.

use std::path::PathBuf;
use std::process::ExitCode;

/// Check a Pod manifest and report every problem at once, with its field path.
#[derive(clap::Args)]
pub struct ValidateCommand {
    /// The Pod manifest (YAML).
    manifest: PathBuf,
}

impl ValidateCommand {
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        match wasmlet::PodSpec::from_file(&self.manifest) {
            Ok(spec) => {
                println!(
                    "{}: pod `{}` with {} container(s) is valid",
                    self.manifest.display(),
                    spec.name(),
                    spec.containers().len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("{error}");
                Ok(ExitCode::from(2))
            }
        }
    }
}
