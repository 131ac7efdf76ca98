//! `wasmlet test`: run scenarios in deterministic mode and compare their traces with the golden
//! ones.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use wasmlet::testing::{RunOptions, Scenario};

use crate::output::{self, out};

mod explore;

/// Run lifecycle scenarios on a virtual clock and check their traces.
///
/// Each scenario (a YAML file) runs its pod through scripted steps in deterministic mode: one
/// thread, virtual time, fuel-sliced guests, seeded randomness. Its trace is compared with the
/// golden trace beside it (NAME.trace for NAME.yaml), if there is one. Exit code 0: every
/// scenario passed; 1: one failed or could not be read.
#[derive(clap::Args)]
pub struct TestCommand {
    /// Scenario files, or directories to search for `*.yaml` scenarios (recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write each passing scenario's trace as its golden trace.
    #[arg(long)]
    update: bool,
    /// Seed every guest's randomness with this instead of the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run each scenario this many times; every run's trace must be the same, byte for byte.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Print every trace, not only the ones that differ.
    #[arg(long, short = 'v')]
    show_trace: bool,
    /// Explore: run each scenario with an `explore:` block this many times, each run varying
    /// what the block declares (drawn from the run's seed: `--seed` + the run's index), and
    /// check its steps and invariants. The first failing run is shrunk to a minimal
    /// reproduction, written beside the scenario as NAME.explore-SEED.yaml.
    #[arg(long, value_name = "RUNS", value_parser = clap::value_parser!(u64).range(1..))]
    explore: Option<u64>,
    /// Worker threads for --explore (default: two per core).
    #[arg(long, requires = "explore", value_parser = clap::value_parser!(u64).range(1..))]
    workers: Option<u64>,
}

impl TestCommand {
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let mut files = Vec::new();
        for path in &self.paths {
            collect(path, &mut files)
                .with_context(|| format!("looking for scenarios in `{}`", path.display()))?;
        }
        anyhow::ensure!(
            !files.is_empty(),
            "no scenario files (*.yaml) in {}",
            self.paths
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(runs) = self.explore {
            anyhow::ensure!(
                !self.update && self.repeat == 1,
                "--explore runs each scenario with its own variations: it takes neither \
                 --update nor --repeat"
            );
            return explore::explore_all(&files, runs, self.seed, self.workers, self.show_trace);
        }
        let options = RunOptions { seed: self.seed };
        let (mut passed, mut failed) = (0, 0);
        for file in &files {
            if self.check(file, options) {
                passed += 1;
            } else {
                failed += 1;
            }
            // Nobody reads the rest: stop after the scenario that ran.
            if output::reader_gone() {
                return Ok(ExitCode::from(output::READER_GONE));
            }
        }
        out!(
            "{} scenario{}: {passed} passed, {failed} failed",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    /// Runs one scenario and reports it; returns whether it passed.
    fn check(&self, file: &Path, options: RunOptions) -> bool {
        // Real time: how long the user waited for the runs (their virtual time is in the trace).
        let started = Instant::now();
        let scenario = match Scenario::from_file(file) {
            Ok(scenario) => scenario,
            Err(error) => {
                out!("FAIL {}\n  {error}", file.display());
                return false;
            }
        };
        let mut first: Option<String> = None;
        let mut problems = Vec::new();
        for run in 1..=self.repeat {
            match scenario.run(options) {
                Ok(outcome) => {
                    problems.extend(outcome.failures);
                    match &first {
                        None => first = Some(outcome.trace),
                        Some(first) if *first != outcome.trace => {
                            problems.push(format!(
                                "run {run} gave a different trace than run 1 (nondeterminism):\n{}",
                                diff(first, &outcome.trace, "run 1", &format!("run {run}"))
                            ));
                        }
                        Some(_) => {}
                    }
                }
                Err(error) => problems.push(format!("could not run: {error:#}")),
            }
            if !problems.is_empty() {
                break;
            }
        }
        let trace = first.unwrap_or_default();
        let golden_file = scenario.golden_file();
        let mut note = String::new();
        if problems.is_empty() {
            if self.update {
                match std::fs::write(&golden_file, &trace) {
                    Ok(()) => note = format!(", wrote {}", golden_file.display()),
                    Err(error) => problems.push(format!(
                        "could not write the golden trace `{}`: {error}",
                        golden_file.display()
                    )),
                }
            } else {
                match std::fs::read_to_string(&golden_file) {
                    Ok(golden) if golden == trace => {}
                    Ok(golden) => problems.push(format!(
                        "the trace differs from the golden trace `{}` (`wasmlet test --update` \
                         accepts the new one):\n{}",
                        golden_file.display(),
                        diff(&golden, &trace, "golden", "actual")
                    )),
                    Err(_) => note = ", no golden trace (--update writes one)".into(),
                }
            }
        }
        let verdict = if problems.is_empty() { "PASS" } else { "FAIL" };
        out!(
            "{verdict} {} ({}; {} run{} in {} ms{note})",
            file.display(),
            scenario.name,
            self.repeat,
            if self.repeat == 1 { "" } else { "s" },
            started.elapsed().as_millis()
        );
        for problem in &problems {
            for line in problem.lines() {
                out!("  {line}");
            }
        }
        if self.show_trace || (!problems.is_empty() && !trace.is_empty()) {
            out!("  trace:");
            for line in trace.lines() {
                out!("  {line}");
            }
        }
        problems.is_empty()
    }
}

/// A unified diff of two traces.
fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// Whether a YAML file holds Kubernetes objects (Pod manifests beside the scenarios), not a
/// scenario: its first document has a top-level `kind`, which no scenario has.
fn is_kubernetes_object(path: &Path) -> bool {
    use serde::Deserialize as _;
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    serde_yaml_ng::Deserializer::from_str(&text)
        .next()
        .and_then(|document| serde_yaml_ng::Value::deserialize(document).ok())
        .is_some_and(|document| document.get("kind").is_some())
}

/// The scenario files under `path`, sorted, so that runs go in a fixed order. Given a file, it
/// is a scenario; in a directory, Pod manifests are skipped.
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, files)?;
        } else if entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
            && !is_kubernetes_object(&entry)
        {
            files.push(entry);
        }
    }
    Ok(())
}
