//! Shrinking a failing variation ([`shrink`]) to the smallest that still fails: fewer faults
//! first (no second delete, no hook delivered twice or late, the scenario's own guest seed, no
//! wall-clock step, no lost probe checks, no write fault),
//! then each moment and grace period moved toward its plainest value (the delete as early as
//! its range allows, the grace period as long as it allows, a hook's delay as short) by
//! bisection, then rounded to whole seconds or milliseconds (toward that value first) where
//! that still fails. Every candidate is a real run: what comes out has been seen to fail.

use std::time::Duration;

use super::super::scenario::{ExploreSpec, Hook, Variation};
use crate::manifest::ProbeKind;
use crate::testing::scenario::variation::{MICROSECOND, MILLISECOND};

/// One duration of a variation that shrinking moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    DeleteAfter,
    GracePeriod,
    SecondAfter,
    SecondGrace,
    Delay(Hook),
}

impl Dimension {
    fn get(self, variation: &Variation) -> Option<Duration> {
        match self {
            Dimension::DeleteAfter => variation.delete_after,
            Dimension::GracePeriod => variation.grace_period,
            Dimension::SecondAfter => variation.second_delete.map(|(after, _)| after),
            Dimension::SecondGrace => variation.second_delete.map(|(_, grace)| grace),
            Dimension::Delay(Hook::PostStart) => Some(variation.faults.post_start.delay),
            Dimension::Delay(Hook::PreStop) => Some(variation.faults.pre_stop.delay),
        }
    }

    fn set(self, variation: &mut Variation, value: Duration) {
        match self {
            Dimension::DeleteAfter => variation.delete_after = Some(value),
            Dimension::GracePeriod => variation.grace_period = Some(value),
            Dimension::SecondAfter => {
                if let Some((after, _)) = &mut variation.second_delete {
                    *after = value;
                }
            }
            Dimension::SecondGrace => {
                if let Some((_, grace)) = &mut variation.second_delete {
                    *grace = value;
                }
            }
            Dimension::Delay(Hook::PostStart) => variation.faults.post_start.delay = value,
            Dimension::Delay(Hook::PreStop) => variation.faults.pre_stop.delay = value,
        }
    }

    /// The plainest value of its range, and the resolution it is drawn at.
    fn target(self, spec: &ExploreSpec) -> (Duration, Duration) {
        match self {
            Dimension::DeleteAfter => (
                spec.delete_after.map_or(Duration::ZERO, |s| s.min),
                MICROSECOND,
            ),
            Dimension::GracePeriod => (
                spec.grace_period.map_or(Duration::ZERO, |s| s.max),
                MILLISECOND,
            ),
            Dimension::SecondAfter => (
                spec.second_delete
                    .map_or(Duration::ZERO, |(after, _)| after.max),
                MICROSECOND,
            ),
            Dimension::SecondGrace => (
                spec.second_delete
                    .map_or(Duration::ZERO, |(_, grace)| grace.max),
                MILLISECOND,
            ),
            Dimension::Delay(_) => (Duration::ZERO, MILLISECOND),
        }
    }
}

const DIMENSIONS: [Dimension; 6] = [
    Dimension::DeleteAfter,
    Dimension::GracePeriod,
    Dimension::SecondAfter,
    Dimension::SecondGrace,
    Dimension::Delay(Hook::PostStart),
    Dimension::Delay(Hook::PreStop),
];

/// A fault taken out of a variation.
type Removal = Box<dyn Fn(&mut Variation)>;

/// The smallest variation found that still fails, starting from `failing` (which does);
/// `fails` runs a candidate.
pub(super) fn shrink(
    spec: &ExploreSpec,
    failing: Variation,
    mut fails: impl FnMut(&Variation) -> anyhow::Result<bool>,
) -> anyhow::Result<Variation> {
    let mut current = failing;
    let mut try_candidate = |current: &mut Variation, candidate: Variation| {
        if candidate == *current {
            return Ok(false);
        }
        let failed = fails(&candidate)?;
        if failed {
            *current = candidate;
        }
        anyhow::Ok(failed)
    };
    // Fewer faults.
    let mut removals: Vec<Removal> = vec![
        Box::new(|v| v.second_delete = None),
        Box::new(|v| v.faults.post_start.twice = false),
        Box::new(|v| v.faults.pre_stop.twice = false),
        Box::new(|v| v.faults.post_start.delay = Duration::ZERO),
        Box::new(|v| v.faults.pre_stop.delay = Duration::ZERO),
        Box::new(|v| v.seed = None),
        Box::new(|v| v.faults.wall_clock = None),
    ];
    for kind in [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ] {
        removals.push(Box::new(move |v| {
            *v.faults.probe_mut(kind) = Default::default();
        }));
    }
    for (volume, _) in &current.faults.volumes {
        let volume = volume.clone();
        removals.push(Box::new(move |v| {
            v.faults.volumes.retain(|(name, _)| *name != volume);
        }));
    }
    for remove in removals {
        let mut candidate = current.clone();
        remove(&mut candidate);
        try_candidate(&mut current, candidate)?;
    }
    // Plainer moments, by bisection between the plainest value (which passes, unless the
    // first try takes it) and the failing one.
    for dimension in DIMENSIONS {
        let Some(value) = dimension.get(&current) else {
            continue;
        };
        let (target, unit) = dimension.target(spec);
        let with = |current: &Variation, value: Duration| {
            let mut candidate = current.clone();
            dimension.set(&mut candidate, value);
            candidate
        };
        let candidate = with(&current, target);
        if try_candidate(&mut current, candidate)? {
            continue;
        }
        let (mut passing, mut failing) = (target, value);
        while let Some(middle) = between(passing, failing, unit) {
            let candidate = with(&current, middle);
            if try_candidate(&mut current, candidate)? {
                failing = middle;
            } else {
                passing = middle;
            }
        }
    }
    // Rounder numbers, where they still fail.
    for dimension in DIMENSIONS {
        let Some(value) = dimension.get(&current) else {
            continue;
        };
        let (target, _) = dimension.target(spec);
        for unit in [
            Duration::from_secs(1),
            Duration::from_millis(100),
            Duration::from_millis(10),
            MILLISECOND,
        ] {
            // Toward the plainest value first, then away from it.
            let away = if target >= value {
                Duration::ZERO
            } else {
                Duration::MAX
            };
            let mut rounded_one = false;
            for rounded in [
                round_toward(value, target, unit),
                round_toward(value, away, unit),
            ] {
                let mut candidate = current.clone();
                dimension.set(&mut candidate, rounded);
                if rounded != value && try_candidate(&mut current, candidate)? {
                    rounded_one = true;
                    break;
                }
            }
            if rounded_one {
                break;
            }
        }
    }
    Ok(current)
}

/// The middle of `a` and `b` in whole `unit`s from `a`; `None` when they are a unit apart or
/// less.
fn between(a: Duration, b: Duration, unit: Duration) -> Option<Duration> {
    let (a_ns, b_ns, unit_ns) = (a.as_nanos(), b.as_nanos(), unit.as_nanos().max(1));
    let distance = a_ns.abs_diff(b_ns);
    if distance <= unit_ns {
        return None;
    }
    let half = (distance / 2 / unit_ns).max(1) * unit_ns;
    let middle = if a_ns < b_ns {
        a_ns + half
    } else {
        a_ns - half
    };
    Some(Duration::from_nanos(
        u64::try_from(middle).unwrap_or(u64::MAX),
    ))
}

/// `value` rounded to a whole `unit`, in the direction of `target`.
fn round_toward(value: Duration, target: Duration, unit: Duration) -> Duration {
    let (value_ns, unit_ns) = (value.as_nanos(), unit.as_nanos().max(1));
    let down = value_ns / unit_ns * unit_ns;
    let rounded = if target >= value && down != value_ns {
        down + unit_ns
    } else {
        down
    };
    Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scenario::Span;

    fn spec() -> ExploreSpec {
        ExploreSpec {
            delete_after: Some(Span {
                min: Duration::ZERO,
                max: Duration::from_secs(10),
            }),
            grace_period: Some(Span {
                min: Duration::from_secs(1),
                max: Duration::from_secs(30),
            }),
            hooks_twice: vec![Hook::PreStop],
            ..ExploreSpec::default()
        }
    }

    #[test]
    fn shrinks_to_the_boundary_of_a_failure_and_drops_what_does_not_matter() {
        // Fails when the delete comes at 3.5 s or later and the grace period is under 12 s,
        // whatever the hook faults.
        let fails = |v: &Variation| {
            v.delete_after.unwrap() >= Duration::from_millis(3500)
                && v.grace_period.unwrap() < Duration::from_secs(12)
        };
        let drawn = Variation {
            delete_after: Some(Duration::from_micros(7_654_321)),
            grace_period: Some(Duration::from_millis(4_321)),
            faults: crate::testing::Faults {
                pre_stop: crate::testing::HookFault {
                    twice: true,
                    delay: Duration::ZERO,
                },
                ..Default::default()
            },
            ..Variation::default()
        };
        assert!(fails(&drawn));
        let mut runs = 0;
        let shrunk = shrink(&spec(), drawn, |v| {
            runs += 1;
            Ok(fails(v))
        })
        .unwrap();
        assert!(fails(&shrunk), "{shrunk:?}");
        assert!(!shrunk.faults.pre_stop.twice, "{shrunk:?}");
        // Bisection finds the boundaries (3.5 s, 11.999 s); whole seconds that still fail are
        // rounder.
        assert_eq!(shrunk.delete_after, Some(Duration::from_secs(4)));
        assert_eq!(shrunk.grace_period, Some(Duration::from_secs(11)));
        assert!(runs < 100, "{runs} runs");
    }

    #[test]
    fn a_fault_that_matters_stays() {
        let fails = |v: &Variation| v.faults.pre_stop.twice;
        let drawn = spec().draw(0);
        let mut drawn = drawn;
        drawn.faults.pre_stop.twice = true;
        let shrunk = shrink(&spec(), drawn, |v| Ok(fails(v))).unwrap();
        assert!(shrunk.faults.pre_stop.twice);
        assert_eq!(shrunk.delete_after, Some(Duration::ZERO));
        assert_eq!(shrunk.grace_period, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bisection_and_rounding_stay_on_their_units() {
        let ms = Duration::from_millis;
        assert_eq!(between(ms(0), ms(10), MILLISECOND), Some(ms(5)));
        assert_eq!(between(ms(10), ms(0), MILLISECOND), Some(ms(5)));
        assert_eq!(between(ms(4), ms(5), MILLISECOND), None);
        assert_eq!(
            round_toward(ms(4_321), ms(0), Duration::from_secs(1)),
            ms(4_000)
        );
        assert_eq!(
            round_toward(ms(4_321), ms(30_000), Duration::from_secs(1)),
            ms(5_000)
        );
        assert_eq!(
            round_toward(ms(4_000), ms(30_000), Duration::from_secs(1)),
            ms(4_000)
        );
    }
}
