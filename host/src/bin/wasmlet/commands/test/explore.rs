//! `wasmlet test --explore`: explore each scenario that declares what to vary, and report the
//! first failure with its seed, its shrunk reproduction (written beside the scenario) and the
//! reproduction's trace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use wasmlet::testing::{ExploreOptions, Scenario};

use crate::output::{self, out};

/// Explores every scenario of `files` that has an `explore:` block.
pub fn explore_all(
    files: &[PathBuf],
    runs: u64,
    seed: Option<u64>,
    workers: Option<u64>,
    show_trace: bool,
) -> anyhow::Result<ExitCode> {
    // Two workers per core: a run waits whenever a guest's file I/O is handed to a blocking
    // thread, and a second worker keeps the core busy meanwhile.
    let workers = workers.map_or_else(
        || 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
        |n| usize::try_from(n).unwrap_or(usize::MAX),
    );
    let (mut explored, mut failed) = (0, 0);
    for file in files {
        let scenario = match Scenario::from_file(file) {
            Ok(scenario) => scenario,
            Err(error) => {
                out!("FAIL {}\n  {error}", file.display());
                failed += 1;
                continue;
            }
        };
        if scenario.explore.is_none() {
            out!("SKIP {} (no `explore:` block)", file.display());
            continue;
        }
        explored += 1;
        let options = ExploreOptions {
            runs,
            seed: seed.unwrap_or(0),
            workers,
        };
        if !explore_one(file, &scenario, options, show_trace) {
            failed += 1;
        }
        // Nobody reads the rest: stop after the scenario explored.
        if output::reader_gone() {
            return Ok(ExitCode::from(output::READER_GONE));
        }
    }
    anyhow::ensure!(
        explored > 0 || failed > 0,
        "none of the scenarios has an `explore:` block: nothing to explore"
    );
    out!("{explored} scenario(s) explored: {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Explores one scenario and reports it; returns whether every run passed.
fn explore_one(
    file: &Path,
    scenario: &Scenario,
    options: ExploreOptions,
    show_trace: bool,
) -> bool {
    // Real time: how long the user waited (the runs' own time is virtual).
    let started = Instant::now();
    let report = match scenario.explore(options) {
        Ok(report) => report,
        Err(error) => {
            out!(
                "FAIL {} ({})\n  could not explore: {error:#}",
                file.display(),
                scenario.name
            );
            return false;
        }
    };
    let elapsed = started.elapsed();
    let Some(failure) = report.failure else {
        out!(
            "PASS {} ({}; {} runs, seeds {}..={}, on {} workers in {} ms)",
            file.display(),
            scenario.name,
            report.runs,
            options.seed,
            options.seed.wrapping_add(report.runs - 1),
            options.workers,
            elapsed.as_millis()
        );
        if show_trace {
            out!(
                "  (traces of passing runs are not kept; `--explore 1 --seed S -v` shows none either: run the reproduction file)"
            );
        }
        return true;
    };
    out!(
        "FAIL {} ({}; run {} of {} failed, seed {}, found and shrunk in {} ms)",
        file.display(),
        scenario.name,
        report.runs,
        options.runs,
        failure.seed,
        elapsed.as_millis()
    );
    out!("  drew: {}", failure.drawn.describe());
    for problem in &failure.drawn_failures {
        for line in problem.lines() {
            out!("    {line}");
        }
    }
    out!(
        "  shrunk in {} runs to: {}",
        failure.shrink_runs,
        failure.shrunk.describe()
    );
    for problem in &failure.failures {
        for line in problem.lines() {
            out!("    {line}");
        }
    }
    let stem = file
        .file_stem()
        .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
    let path = file.with_file_name(format!("{stem}.explore-{}.yaml", failure.seed));
    match std::fs::write(&path, &failure.reproduction) {
        Ok(()) => out!(
            "  reproduction (fails on its own: `wasmlet test {}`):",
            path.display()
        ),
        Err(error) => out!(
            "  reproduction (could not write `{}`: {error}):",
            path.display()
        ),
    }
    for line in failure.reproduction.lines() {
        out!("  | {line}");
    }
    out!("  trace of the reproduction:");
    for line in failure.trace.lines() {
        out!("  {line}");
    }
    false
}
