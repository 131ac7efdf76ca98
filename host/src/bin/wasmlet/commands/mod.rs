//! The subcommands of `wasmlet`, one file each.

mod run;
mod test;
mod validate;

use std::process::ExitCode;

/// A `wasmlet` subcommand.
#[derive(clap::Subcommand)]
pub enum Command {
    Run(run::RunCommand),
    Test(test::TestCommand),
    Validate(validate::ValidateCommand),
}

impl Command {
    /// Runs the command. `wasmlet test` runs its scenarios on threads of its own (deterministic
    /// mode owns its runtime); the others on `runtime`.
    pub fn execute(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(command) => runtime.block_on(command.execute()),
            Command::Test(command) => command.execute(),
            Command::Validate(command) => command.execute(),
        }
    }
}
