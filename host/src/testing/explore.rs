//! Exploration (`wasmlet test --explore N`): a scenario run N times, each run with the
//! variation its seed draws from the scenario's `explore:` block (the moment of the delete, its
//! grace period, a second delete, hook faults, lost probe checks, write faults on volumes, a
//! wall-clock step, the guests' randomness), its steps and
//! invariants checked after every run.
//!
//! Runs are independent simulations, spread over worker threads (each runs its simulations on
//! its own single-threaded deterministic runtime). Run `i` of base seed `S` has seed `S + i`,
//! and what it draws depends on that seed alone, so the first failing run — the one reported,
//! whichever worker got to it first — is the same on every machine. Its variation is then
//! shrunk ([`shrink`]) to the smallest one that still fails, written into the scenario as fixed
//! values (a plain scenario file, no `explore:`), and that file is run on its own to confirm it
//! fails.

mod shrink;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::scenario::{
    ExploreSpec, Invariant, Outcome, RunOptions, Scenario, ScenarioError, Variation,
};
use crate::manifest::VolumeSource;

/// How to explore.
#[derive(Debug, Clone, Copy)]
pub struct ExploreOptions {
    /// How many runs.
    pub runs: u64,
    /// The seed of the first run; run `i` has seed `seed + i`.
    pub seed: u64,
    /// Worker threads (at least 1).
    pub workers: usize,
}

/// What an exploration found.
#[derive(Debug, Clone)]
pub struct ExploreReport {
    /// Runs made before the verdict: all of them if none failed, else up to the first failure
    /// (in seed order).
    pub runs: u64,
    /// The first failing run, shrunk; `None` if every run passed.
    pub failure: Option<Failure>,
}

/// A failing run, shrunk to a reproduction.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The run's seed: `--explore 1 --seed SEED` runs it again.
    pub seed: u64,
    /// What the run drew.
    pub drawn: Variation,
    /// How it failed, as drawn.
    pub drawn_failures: Vec<String>,
    /// The smallest variation found that still fails.
    pub shrunk: Variation,
    /// Runs the shrinking took.
    pub shrink_runs: u64,
    /// The reproduction: a plain scenario file (fixed values, no `explore:`), as YAML.
    pub reproduction: String,
    /// How the reproduction failed when run on its own.
    pub failures: Vec<String>,
    /// The trace of the reproduction's run.
    pub trace: String,
}

impl Scenario {
    /// This scenario with `variation` written in: a plain scenario (no `explore:`).
    pub fn with_variation(&self, variation: &Variation) -> Result<Scenario, ScenarioError> {
        Scenario::from_document(variation.apply(&self.document), &self.file)
    }

    /// The reproduction file of `variation`: the scenario's document with the variation written
    /// in, as YAML, headed by a comment that says where it came from.
    pub fn reproduction(&self, variation: &Variation, seed: u64) -> String {
        let mut document = variation.apply(&self.document);
        if let Some(top) = document.as_mapping_mut() {
            top.insert(
                "name".into(),
                format!("{} (explore seed {seed}, shrunk)", self.name).into(),
            );
        }
        let yaml = serde_yaml_ng::to_string(&document).unwrap_or_default();
        format!(
            "# Found by `wasmlet test --explore` (run seed {seed}) in `{}`: {}.\n{yaml}",
            self.file
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
            variation.describe()
        )
    }

    /// Explores the scenario: `options.runs` runs, run `i` with the variation seed
    /// `options.seed + i` draws from its `explore:` block, spread over `options.workers`
    /// threads; the first failing run (in seed order) is shrunk to a reproduction that is run
    /// on its own to confirm that it fails. `Err`: a run could not run at all.
    pub fn explore(&self, options: ExploreOptions) -> anyhow::Result<ExploreReport> {
        let spec = self.explore.clone().unwrap_or_default();
        // Runs in parallel each get their own claims, but a hostPath is one directory for all.
        for invariant in &self.invariants {
            if let Invariant::Files { volume, .. } = invariant
                && self
                    .pod
                    .volumes
                    .iter()
                    .any(|v| v.name == *volume && matches!(v.source, VolumeSource::HostPath { .. }))
            {
                anyhow::bail!(
                    "invariant on volume `{volume}`: a hostPath is one directory shared by \
                     every run, so explored runs would see each other's files; use a \
                     persistentVolumeClaim (each run gets its own)"
                );
            }
        }
        let first_failure = first_failure(self, &spec, options)?;
        let Some((seed, drawn_failures)) = first_failure else {
            return Ok(ExploreReport {
                runs: options.runs,
                failure: None,
            });
        };
        let drawn = spec.draw(seed);
        let mut shrink_runs = 0;
        let shrunk = shrink::shrink(&spec, drawn.clone(), |candidate| {
            shrink_runs += 1;
            self.fails_with(candidate)
        })?;
        let reproduction = self.reproduction(&shrunk, seed);
        // The reproduction must fail on its own, read back from its own text.
        let alone = Scenario::from_yaml(&reproduction, &self.file)?;
        let outcome = alone.run(RunOptions::default())?;
        anyhow::ensure!(
            !outcome.passed(),
            "the reproduction of seed {seed} ({}) passed when run on its own: a bug in \
             wasmlet's exploration",
            shrunk.describe()
        );
        Ok(ExploreReport {
            runs: seed.wrapping_sub(options.seed) + 1,
            failure: Some(Failure {
                seed,
                drawn,
                drawn_failures,
                shrunk,
                shrink_runs,
                reproduction,
                failures: outcome.failures,
                trace: outcome.trace,
            }),
        })
    }

    /// Runs the scenario with `variation`; whether it failed.
    fn fails_with(&self, variation: &Variation) -> anyhow::Result<bool> {
        Ok(!self.run_variation(variation)?.passed())
    }

    fn run_variation(&self, variation: &Variation) -> anyhow::Result<Outcome> {
        self.with_variation(variation)?.run(RunOptions::default())
    }
}

/// Runs the seeds of `options` on its workers; the first failing seed (in seed order) and how
/// it failed.
fn first_failure(
    scenario: &Scenario,
    spec: &ExploreSpec,
    options: ExploreOptions,
) -> anyhow::Result<Option<(u64, Vec<String>)>> {
    let next = AtomicU64::new(0);
    // The lowest failing run index so far: runs past it need not run.
    let failed_at = AtomicU64::new(u64::MAX);
    let found: Mutex<Option<(u64, Vec<String>)>> = Mutex::new(None);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.workers.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= options.runs || index > failed_at.load(Ordering::SeqCst) {
                        break;
                    }
                    let seed = options.seed.wrapping_add(index);
                    match scenario.run_variation(&spec.draw(seed)) {
                        Ok(outcome) if outcome.passed() => {}
                        Ok(outcome) => {
                            let mut found = found.lock().unwrap();
                            if index < failed_at.load(Ordering::SeqCst) {
                                failed_at.store(index, Ordering::SeqCst);
                                *found = Some((seed, outcome.failures));
                            }
                        }
                        Err(run_error) => {
                            error
                                .lock()
                                .unwrap()
                                .get_or_insert(run_error.context(format!("run with seed {seed}")));
                            failed_at.store(0, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = error.into_inner().unwrap() {
        return Err(error);
    }
    Ok(found.into_inner().unwrap())
}
