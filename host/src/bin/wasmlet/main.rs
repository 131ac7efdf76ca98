//! The `wasmlet` command: a thin layer over the `wasmlet` library.

mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Run WebAssembly components with Kubernetes-grade lifecycle management.
#[derive(Parser)]
#[command(name = "wasmlet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

/// Raises the soft limit of open files to the hard one: every pod holds a file open (its
/// container's `/tmp`, an open directory while an instance runs), and the soft limit's usual
/// 1024 would cap a host at about a thousand pods where the hard one (often 524288) does not.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        limit.current = Some(maximum);
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("the limit of open files stays as it was: {error}");
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    raise_open_file_limit();
    // The control plane (supervision, events, signals) needs one thread; guests execute on
    // the host's own runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.execute(&runtime) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
