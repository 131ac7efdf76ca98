//! The subcommands of `wasmlet`, one file each.

mod run;
mod validate;

use std::process::ExitCode;

/// A `wasmlet` subcommand.
#[derive(clap::Subcommand)]
pub enum Command {
    Run(run::RunCommand),
    Validate(validate::ValidateCommand),
}

impl Command {
    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(command) => command.execute().await,
            Command::Validate(command) => command.execute(),
        }
    }
}
