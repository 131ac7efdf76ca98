//! What `wasmlet test --explore` may vary in a scenario — its `explore:` block
//! ([`ExploreSpec`]) and its fixed `faults:` ([`HookFaults`]) — and one run's draw of it
//! ([`Variation`]), which is written into the scenario's document as fixed values: the same
//! document is what the run runs and what a reproduction file holds.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::duration::{DurationValue, write_duration};
use crate::lifecycle::faults::{HookFault, HookFaults};

/// A closed range of durations a dimension is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The least value.
    pub min: Duration,
    /// The greatest value.
    pub max: Duration,
}

/// A lifecycle hook, as a fault names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// postStart.
    PostStart,
    /// preStop.
    PreStop,
}

impl Hook {
    fn key(self) -> &'static str {
        match self {
            Hook::PostStart => "postStart",
            Hook::PreStop => "preStop",
        }
    }

    fn fault(self, faults: &mut HookFaults) -> &mut HookFault {
        match self {
            Hook::PostStart => &mut faults.post_start,
            Hook::PreStop => &mut faults.pre_stop,
        }
    }
}

/// The `explore:` block: each dimension a run draws, none unless declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExploreSpec {
    /// Extra virtual time before the first `delete` step (to the microsecond, so that
    /// terminate and the kill land anywhere in a guest's time slices).
    pub delete_after: Option<Span>,
    /// The first delete's grace period (to the millisecond).
    pub grace_period: Option<Span>,
    /// In half the runs, a second delete this long after the first, with this grace period.
    pub second_delete: Option<(Span, Span)>,
    /// Hooks delivered twice in half the runs each.
    pub hooks_twice: Vec<Hook>,
    /// Hooks delivered late in half the runs each, by a delay drawn from the span.
    pub slow_hooks: Option<(Vec<Hook>, Span)>,
    /// Whether each run draws the guests' randomness seed too.
    pub randomness: bool,
}

/// One run's values of the dimensions of an [`ExploreSpec`]; `None` leaves the scenario as
/// written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variation {
    /// Virtual time inserted before the first delete.
    pub delete_after: Option<Duration>,
    /// The first delete's grace period.
    pub grace_period: Option<Duration>,
    /// A second delete: how long after the first, and its grace period.
    pub second_delete: Option<(Duration, Duration)>,
    /// Hook faults on top of the scenario's own.
    pub faults: HookFaults,
    /// The guests' randomness seed.
    pub seed: Option<u64>,
}

/// A small deterministic generator (SplitMix64): the same seed draws the same variation on
/// every machine.
pub(crate) struct Draw(u64);

impl Draw {
    pub(crate) fn new(seed: u64) -> Draw {
        Draw(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// A value of `span` in whole `unit`s above its minimum.
    fn within(&mut self, span: Span, unit: Duration) -> Duration {
        let steps = (span.max.saturating_sub(span.min).as_nanos() / unit.as_nanos()) as u64;
        let step = if steps == 0 {
            0
        } else {
            self.next() % (steps + 1)
        };
        span.min + unit * u32::try_from(step).unwrap_or(u32::MAX)
    }
}

pub(crate) const MICROSECOND: Duration = Duration::from_micros(1);
pub(crate) const MILLISECOND: Duration = Duration::from_millis(1);

impl ExploreSpec {
    /// The variation of run seed `seed`: a pure function of both.
    pub fn draw(&self, seed: u64) -> Variation {
        let mut draw = Draw::new(seed);
        // The dimensions draw in a fixed order, from the seed alone: the same block and seed
        // draw the same variation on every machine, whichever worker runs it.
        let delete_after = draw.within(self.delete_after.unwrap_or(ZERO_SPAN), MICROSECOND);
        let grace_period = draw.within(self.grace_period.unwrap_or(ZERO_SPAN), MILLISECOND);
        let second = draw.coin();
        let (after, grace) = self.second_delete.unwrap_or((ZERO_SPAN, ZERO_SPAN));
        let second_after = draw.within(after, MICROSECOND);
        let second_grace = draw.within(grace, MILLISECOND);
        let mut faults = HookFaults::default();
        for hook in [Hook::PostStart, Hook::PreStop] {
            let twice = draw.coin();
            let slow = draw.coin();
            let (slow_hooks, span) = self.slow_hooks.clone().unwrap_or((Vec::new(), ZERO_SPAN));
            let delay = draw.within(span, MILLISECOND);
            let fault = hook.fault(&mut faults);
            fault.twice = twice && self.hooks_twice.contains(&hook);
            if slow && slow_hooks.contains(&hook) {
                fault.delay = delay;
            }
        }
        let guest_seed = draw.next();
        Variation {
            delete_after: self.delete_after.map(|_| delete_after),
            grace_period: self.grace_period.map(|_| grace_period),
            second_delete: (second && self.second_delete.is_some())
                .then_some((second_after, second_grace)),
            faults,
            seed: self.randomness.then_some(guest_seed),
        }
    }
}

const ZERO_SPAN: Span = Span {
    min: Duration::ZERO,
    max: Duration::ZERO,
};

impl Variation {
    /// In words, for reports: `delete after +2.000130s, grace period 4s, preStop twice`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(after) = self.delete_after {
            parts.push(format!("delete {} later", write_duration(after)));
        }
        if let Some(grace) = self.grace_period {
            parts.push(format!("grace period {}", write_duration(grace)));
        }
        if let Some((after, grace)) = self.second_delete {
            parts.push(format!(
                "a second delete {} after the first, grace period {}",
                write_duration(after),
                write_duration(grace)
            ));
        }
        for hook in [Hook::PostStart, Hook::PreStop] {
            let mut faults = self.faults;
            let fault = *hook.fault(&mut faults);
            if fault.twice {
                parts.push(format!("{} delivered twice", hook.key()));
            }
            if !fault.delay.is_zero() {
                parts.push(format!(
                    "{} delivered {} late",
                    hook.key(),
                    write_duration(fault.delay)
                ));
            }
        }
        if let Some(seed) = self.seed {
            parts.push(format!("guest seed {seed}"));
        }
        if parts.is_empty() {
            "nothing varied".into()
        } else {
            parts.join(", ")
        }
    }

    /// `document` (a scenario file's) with this variation written in as fixed values, and no
    /// `explore:` block: a plain scenario. Its first `delete` step gets the drawn grace period
    /// and, before it, an `advance` of the drawn delay; the second delete follows it.
    pub fn apply(&self, document: &Value) -> Value {
        let mut document = document.clone();
        let Some(top) = document.as_mapping_mut() else {
            return document;
        };
        top.remove("explore");
        if let Some(seed) = self.seed {
            top.insert("seed".into(), seed.into());
        }
        let faults = merge_faults(top.get("faults"), self.faults);
        if faults != Value::Null {
            top.insert("faults".into(), faults);
        }
        let Some(steps) = top.get_mut("steps").and_then(Value::as_sequence_mut) else {
            return document;
        };
        let Some(index) = steps.iter().position(|step| step.get("delete").is_some()) else {
            return document;
        };
        if let Some(grace) = self.grace_period {
            let mut delete = steps[index]
                .get("delete")
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default();
            delete.insert("gracePeriod".into(), write_duration(grace).into());
            steps[index] = single("delete", Value::Mapping(delete));
        }
        let mut at = index;
        if let Some(after) = self.delete_after
            && !after.is_zero()
        {
            steps.insert(at, single("advance", write_duration(after).into()));
            at += 1;
        }
        if let Some((after, grace)) = self.second_delete {
            let mut delete = Mapping::new();
            delete.insert("gracePeriod".into(), write_duration(grace).into());
            steps.insert(at + 1, single("advance", write_duration(after).into()));
            steps.insert(at + 2, single("delete", Value::Mapping(delete)));
        }
        document
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut mapping = Mapping::new();
    mapping.insert(key.into(), value);
    Value::Mapping(mapping)
}

/// The `faults:` mapping of `written` (the scenario's own) with `drawn` added on top.
fn merge_faults(written: Option<&Value>, drawn: HookFaults) -> Value {
    let mut faults = written
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for hook in [Hook::PostStart, Hook::PreStop] {
        let mut drawn = drawn;
        let fault = *hook.fault(&mut drawn);
        if fault.is_none() {
            continue;
        }
        let mut entry = faults
            .get(hook.key())
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        if fault.twice {
            entry.insert("twice".into(), true.into());
        }
        if !fault.delay.is_zero() {
            entry.insert("delay".into(), write_duration(fault.delay).into());
        }
        faults.insert(hook.key().into(), Value::Mapping(entry));
    }
    if faults.is_empty() {
        Value::Null
    } else {
        Value::Mapping(faults)
    }
}

type FieldError = (String, String);

/// `faults:` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FaultsFile {
    post_start: Option<HookFaultFile>,
    pre_stop: Option<HookFaultFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HookFaultFile {
    #[serde(default)]
    twice: bool,
    delay: Option<DurationValue>,
}

impl FaultsFile {
    pub(super) fn parse(self) -> Result<HookFaults, FieldError> {
        let mut faults = HookFaults::default();
        for (hook, written) in [
            (Hook::PostStart, self.post_start),
            (Hook::PreStop, self.pre_stop),
        ] {
            let Some(written) = written else { continue };
            let fault = hook.fault(&mut faults);
            fault.twice = written.twice;
            if let Some(delay) = written.delay {
                fault.delay = delay
                    .parse()
                    .map_err(|m| (format!("faults.{}.delay", hook.key()), m))?;
            }
        }
        Ok(faults)
    }
}

/// `explore:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ExploreFile {
    delete: Option<DeleteSpanFile>,
    second_delete: Option<SecondDeleteFile>,
    #[serde(default)]
    hooks_twice: Vec<String>,
    slow_hooks: Option<SlowHooksFile>,
    #[serde(default)]
    randomness: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteSpanFile {
    after: Option<Vec<DurationValue>>,
    grace_period: Option<Vec<DurationValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecondDeleteFile {
    after: Vec<DurationValue>,
    grace_period: Vec<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SlowHooksFile {
    hooks: Vec<String>,
    delay: Vec<DurationValue>,
}

fn span(values: &[DurationValue], at: &str) -> Result<Span, FieldError> {
    let parse = |value: &DurationValue| value.parse().map_err(|m| (at.to_string(), m));
    let (min, max) = match values {
        [value] => (parse(value)?, parse(value)?),
        [min, max] => (parse(min)?, parse(max)?),
        _ => {
            return Err((
                at.to_string(),
                "a range is `[MIN, MAX]` (durations, like `[0s, 10s]`), or `[VALUE]`".into(),
            ));
        }
    };
    if min > max {
        return Err((
            at.to_string(),
            format!(
                "the range is empty: {} is more than {}",
                write_duration(min),
                write_duration(max)
            ),
        ));
    }
    Ok(Span { min, max })
}

fn hooks(names: &[String], at: &str) -> Result<Vec<Hook>, FieldError> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| match name.as_str() {
            "postStart" => Ok(Hook::PostStart),
            "preStop" => Ok(Hook::PreStop),
            other => Err((
                format!("{at}[{index}]"),
                format!("unknown hook `{other}`; postStart or preStop"),
            )),
        })
        .collect()
}

impl ExploreFile {
    /// The spec; `has_delete` says whether the scenario has a `delete` step to vary.
    pub(super) fn parse(self, has_delete: bool) -> Result<ExploreSpec, FieldError> {
        let mut spec = ExploreSpec {
            randomness: self.randomness,
            hooks_twice: hooks(&self.hooks_twice, "explore.hooksTwice")?,
            ..ExploreSpec::default()
        };
        if let Some(delete) = self.delete {
            if !has_delete {
                return Err((
                    "explore.delete".into(),
                    "varies the first `delete` step, and `steps` has none: add one (`- delete: \
                     {}`) where the pod is to be deleted"
                        .into(),
                ));
            }
            if let Some(after) = &delete.after {
                spec.delete_after = Some(span(after, "explore.delete.after")?);
            }
            if let Some(grace) = &delete.grace_period {
                spec.grace_period = Some(span(grace, "explore.delete.gracePeriod")?);
            }
        }
        if let Some(second) = self.second_delete {
            if !has_delete {
                return Err((
                    "explore.secondDelete".into(),
                    "follows the first `delete` step, and `steps` has none".into(),
                ));
            }
            spec.second_delete = Some((
                span(&second.after, "explore.secondDelete.after")?,
                span(&second.grace_period, "explore.secondDelete.gracePeriod")?,
            ));
        }
        if let Some(slow) = self.slow_hooks {
            spec.slow_hooks = Some((
                hooks(&slow.hooks, "explore.slowHooks.hooks")?,
                span(&slow.delay, "explore.slowHooks.delay")?,
            ));
        }
        if spec == ExploreSpec::default() {
            return Err((
                "explore".into(),
                "declares nothing to vary: give `delete` (`after`, `gracePeriod`), \
                 `secondDelete`, `hooksTwice`, `slowHooks` or `randomness`"
                    .into(),
            ));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ExploreSpec {
        ExploreSpec {
            delete_after: Some(Span {
                min: Duration::from_secs(1),
                max: Duration::from_secs(3),
            }),
            grace_period: Some(Span {
                min: Duration::from_secs(1),
                max: Duration::from_secs(30),
            }),
            second_delete: Some((
                Span {
                    min: Duration::ZERO,
                    max: Duration::from_secs(1),
                },
                Span {
                    min: Duration::ZERO,
                    max: Duration::from_millis(500),
                },
            )),
            hooks_twice: vec![Hook::PreStop],
            slow_hooks: None,
            randomness: false,
        }
    }

    #[test]
    fn a_seed_draws_the_same_variation_every_time_and_within_its_ranges() {
        let spec = spec();
        // Fixed values: the same seed gives the same run on any machine.
        assert_eq!(spec.draw(7), spec.draw(7));
        assert_ne!(spec.draw(7), spec.draw(8));
        let mut second_deletes = 0;
        let mut twice = 0;
        for seed in 0..1000 {
            let v = spec.draw(seed);
            let after = v.delete_after.unwrap();
            assert!(after >= Duration::from_secs(1) && after <= Duration::from_secs(3));
            let grace = v.grace_period.unwrap();
            assert!(grace >= Duration::from_secs(1) && grace <= Duration::from_secs(30));
            assert_eq!(grace.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
            if let Some((after, grace)) = v.second_delete {
                second_deletes += 1;
                assert!(after <= Duration::from_secs(1) && grace <= Duration::from_millis(500));
            }
            twice += usize::from(v.faults.pre_stop.twice);
            // Only what is declared varies.
            assert!(!v.faults.post_start.twice && v.faults.pre_stop.delay.is_zero());
            assert_eq!(v.seed, None);
        }
        assert!((400..600).contains(&second_deletes), "{second_deletes}");
        assert!((400..600).contains(&twice), "{twice}");
    }

    #[test]
    fn a_variation_is_written_in_as_plain_steps_and_faults() {
        let document: Value = serde_yaml_ng::from_str(
            "name: x\npod: p.yaml\nsteps:\n- wait: { phase: Running }\n- delete: {}\n\
             - wait: { phase: Succeeded }\nexplore:\n  delete: { after: [0s, 1s] }\n",
        )
        .unwrap();
        let variation = Variation {
            delete_after: Some(Duration::from_micros(1_250_017)),
            grace_period: Some(Duration::from_secs(4)),
            second_delete: Some((Duration::from_millis(300), Duration::ZERO)),
            faults: HookFaults {
                pre_stop: HookFault {
                    twice: true,
                    delay: Duration::from_millis(20),
                },
                ..HookFaults::default()
            },
            seed: Some(9),
        };
        let written = serde_yaml_ng::to_string(&variation.apply(&document)).unwrap();
        assert_eq!(
            written,
            "name: x\npod: p.yaml\nsteps:\n- wait:\n    phase: Running\n\
             - advance: 1s 250ms 17us\n- delete:\n    gracePeriod: 4s\n- advance: 300ms\n\
             - delete:\n    gracePeriod: 0s\n- wait:\n    phase: Succeeded\nseed: 9\n\
             faults:\n  preStop:\n    twice: true\n    delay: 20ms\n"
        );
    }
}
