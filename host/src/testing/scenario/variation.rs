//! What `wasmlet test --explore` may vary in a scenario — its `explore:` block
//! ([`ExploreSpec`]) and its fixed `faults:` ([`Faults`]) — and one run's draw of it
//! ([`Variation`]), which is written into the scenario's document as fixed values: the same
//! document is what the run runs and what a reproduction file holds.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::duration::{DurationValue, parse_duration, write_duration};
use crate::lifecycle::faults::{
    ClockJump, Faults, HookFault, ProbeFault, WriteFault, WriteFaultKind,
};
use crate::manifest::ProbeKind;

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

    fn fault(self, faults: &Faults) -> HookFault {
        match self {
            Hook::PostStart => faults.post_start,
            Hook::PreStop => faults.pre_stop,
        }
    }

    fn fault_mut(self, faults: &mut Faults) -> &mut HookFault {
        match self {
            Hook::PostStart => &mut faults.post_start,
            Hook::PreStop => &mut faults.pre_stop,
        }
    }
}

/// The probes, in the order runs draw their faults.
const PROBE_KINDS: [ProbeKind; 3] = [
    ProbeKind::Startup,
    ProbeKind::Liveness,
    ProbeKind::Readiness,
];

/// The `faults:` key of the probes of `kind`.
fn probe_key(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Startup => "startupProbe",
        ProbeKind::Liveness => "livenessProbe",
        ProbeKind::Readiness => "readinessProbe",
    }
}

/// An inclusive range of counts a dimension is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The least value.
    pub min: u64,
    /// The greatest value.
    pub max: u64,
}

/// Probe checks lost: which probes, from which check, how many in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailures {
    /// The probes whose checks may be lost.
    pub probes: Vec<ProbeKind>,
    /// The first lost check (1 is the first check).
    pub from: Counts,
    /// How many checks in a row are lost.
    pub failures: Counts,
}

/// Faults on the writes to volumes: which volumes, which faults, on which write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFaults {
    /// The volumes (by name) whose writes may meet a fault.
    pub volumes: Vec<String>,
    /// The faults drawn from.
    pub kinds: Vec<WriteFaultKind>,
    /// The write (from 1, over the pod's life) the fault lands on.
    pub at: Counts,
}

/// A step of the wall clock: when, and how far (negative: back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockJumps {
    /// When, from the start of the run.
    pub at: Span,
    /// How far, in nanoseconds; negative steps back.
    pub jump: (i128, i128),
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
    /// Probe checks lost, in half the runs for each probe.
    pub probe_failures: Option<ProbeFailures>,
    /// A fault on the writes to a volume, in half the runs for each volume.
    pub write_faults: Option<WriteFaults>,
    /// A step of the wall clock, in half the runs (to the millisecond).
    pub wall_clock: Option<ClockJumps>,
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
    /// Faults on top of the scenario's own.
    pub faults: Faults,
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
        span.min + unit * u32::try_from(self.below(steps)).unwrap_or(u32::MAX)
    }

    /// A value of `counts`.
    fn count(&mut self, counts: Counts) -> u64 {
        counts.min + self.below(counts.max.saturating_sub(counts.min))
    }

    /// A value from 0 to `max`.
    fn below(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(0) | None => self.next(),
            Some(bound) => self.next() % bound,
        }
    }
}

pub(crate) const MICROSECOND: Duration = Duration::from_micros(1);
pub(crate) const MILLISECOND: Duration = Duration::from_millis(1);

impl ExploreSpec {
    /// The variation of run seed `seed`: a pure function of both.
    pub fn draw(&self, seed: u64) -> Variation {
        let mut draw = Draw::new(seed);
        // The dimensions draw in a fixed order, from the seed alone: the same block and seed
        // draw the same variation on every machine, whichever worker runs it. (A dimension
        // added later draws after the others, so that older seeds keep their values.)
        let delete_after = draw.within(self.delete_after.unwrap_or(ZERO_SPAN), MICROSECOND);
        let grace_period = draw.within(self.grace_period.unwrap_or(ZERO_SPAN), MILLISECOND);
        let second = draw.coin();
        let (after, grace) = self.second_delete.unwrap_or((ZERO_SPAN, ZERO_SPAN));
        let second_after = draw.within(after, MICROSECOND);
        let second_grace = draw.within(grace, MILLISECOND);
        let mut faults = Faults::default();
        for hook in [Hook::PostStart, Hook::PreStop] {
            let twice = draw.coin();
            let slow = draw.coin();
            let (slow_hooks, span) = self.slow_hooks.clone().unwrap_or((Vec::new(), ZERO_SPAN));
            let delay = draw.within(span, MILLISECOND);
            let fault = hook.fault_mut(&mut faults);
            fault.twice = twice && self.hooks_twice.contains(&hook);
            if slow && slow_hooks.contains(&hook) {
                fault.delay = delay;
            }
        }
        let guest_seed = draw.next();
        for kind in PROBE_KINDS {
            let lost = draw.coin();
            let Some(spec) = &self.probe_failures else {
                continue;
            };
            let from = draw.count(spec.from);
            let failures = draw.count(spec.failures);
            if lost && spec.probes.contains(&kind) {
                *faults.probe_mut(kind) = ProbeFault {
                    from: u32::try_from(from).unwrap_or(u32::MAX),
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                };
            }
        }
        if let Some(spec) = &self.write_faults {
            for volume in &spec.volumes {
                let faulty = draw.coin();
                let kind = spec.kinds[draw.below(spec.kinds.len() as u64 - 1) as usize];
                let at = draw.count(spec.at);
                if faulty {
                    faults
                        .volumes
                        .push((volume.clone(), WriteFault { at, kind }));
                }
            }
        }
        if let Some(spec) = &self.wall_clock {
            let steps = draw.coin();
            let at = draw.within(spec.at, MILLISECOND);
            let (min, max) = spec.jump;
            let millis = ((max - min) / 1_000_000).max(0) as u64;
            let jump = min + i128::from(draw.below(millis)) * 1_000_000;
            if steps {
                faults.wall_clock = Some(ClockJump {
                    at,
                    by: Duration::from_nanos(jump.unsigned_abs().min(u64::MAX as u128) as u64),
                    back: jump < 0,
                });
            }
        }
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
        parts.extend(describe_faults(&self.faults));
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
        let faults = merge_faults(top.get("faults"), &self.faults);
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

/// Each of `faults` in words.
fn describe_faults(faults: &Faults) -> Vec<String> {
    let mut parts = Vec::new();
    for hook in [Hook::PostStart, Hook::PreStop] {
        let fault = hook.fault(faults);
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
    for kind in PROBE_KINDS {
        let fault = faults.probe(kind);
        if fault.is_none() {
            continue;
        }
        let last = fault.from.saturating_add(fault.failures - 1);
        parts.push(if fault.failures == 1 {
            format!("{} probe check {} lost", kind.name(), fault.from)
        } else {
            format!("{} probe checks {}-{last} lost", kind.name(), fault.from)
        });
    }
    for (volume, fault) in &faults.volumes {
        parts.push(match fault.kind {
            WriteFaultKind::DiskFull => {
                format!("volume {volume} full from write {}", fault.at)
            }
            WriteFaultKind::IoError => {
                format!("write {} to volume {volume} fails (I/O error)", fault.at)
            }
            WriteFaultKind::ShortWrite => format!("write {} to volume {volume} short", fault.at),
        });
    }
    if let Some(jump) = faults.wall_clock {
        parts.push(format!(
            "wall clock steps {} {} at {}",
            if jump.back { "back" } else { "forward" },
            write_duration(jump.by),
            write_duration(jump.at)
        ));
    }
    parts
}

fn single(key: &str, value: Value) -> Value {
    let mut mapping = Mapping::new();
    mapping.insert(key.into(), value);
    Value::Mapping(mapping)
}

fn mapping_of(value: Option<&Value>) -> Mapping {
    value
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default()
}

/// The `faults:` mapping of `written` (the scenario's own) with `drawn` added on top.
fn merge_faults(written: Option<&Value>, drawn: &Faults) -> Value {
    let mut faults = mapping_of(written);
    for hook in [Hook::PostStart, Hook::PreStop] {
        let fault = hook.fault(drawn);
        if fault.is_none() {
            continue;
        }
        let mut entry = mapping_of(faults.get(hook.key()));
        if fault.twice {
            entry.insert("twice".into(), true.into());
        }
        if !fault.delay.is_zero() {
            entry.insert("delay".into(), write_duration(fault.delay).into());
        }
        faults.insert(hook.key().into(), Value::Mapping(entry));
    }
    for kind in PROBE_KINDS {
        let fault = drawn.probe(kind);
        if fault.is_none() {
            continue;
        }
        let mut entry = Mapping::new();
        entry.insert("from".into(), fault.from.into());
        entry.insert("failures".into(), fault.failures.into());
        faults.insert(probe_key(kind).into(), Value::Mapping(entry));
    }
    if !drawn.volumes.is_empty() {
        let mut volumes = mapping_of(faults.get("volumes"));
        for (volume, fault) in &drawn.volumes {
            let mut entry = Mapping::new();
            entry.insert("at".into(), fault.at.into());
            entry.insert("fault".into(), fault.kind.key().into());
            volumes.insert(volume.as_str().into(), Value::Mapping(entry));
        }
        faults.insert("volumes".into(), Value::Mapping(volumes));
    }
    if let Some(jump) = drawn.wall_clock {
        let mut entry = Mapping::new();
        entry.insert("at".into(), write_duration(jump.at).into());
        let by = write_duration(jump.by);
        entry.insert(
            "jump".into(),
            if jump.back { format!("-{by}") } else { by }.into(),
        );
        faults.insert("wallClock".into(), Value::Mapping(entry));
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
    startup_probe: Option<ProbeFaultFile>,
    liveness_probe: Option<ProbeFaultFile>,
    readiness_probe: Option<ProbeFaultFile>,
    #[serde(default)]
    volumes: std::collections::BTreeMap<String, WriteFaultFile>,
    wall_clock: Option<WallClockFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HookFaultFile {
    #[serde(default)]
    twice: bool,
    delay: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProbeFaultFile {
    from: u32,
    #[serde(default = "one")]
    failures: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WriteFaultFile {
    at: u64,
    fault: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WallClockFile {
    at: DurationValue,
    jump: SignedDurationValue,
}

/// A duration that may be negative: `-1h`, `30s`, or a number of seconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum SignedDurationValue {
    Seconds(i64),
    Text(String),
}

impl SignedDurationValue {
    /// In nanoseconds; negative for a step back.
    fn parse(&self) -> Result<i128, String> {
        match self {
            SignedDurationValue::Seconds(seconds) => Ok(i128::from(*seconds) * 1_000_000_000),
            SignedDurationValue::Text(text) => {
                let text = text.trim();
                let (sign, magnitude) = match text.strip_prefix('-') {
                    Some(rest) => (-1, rest),
                    None => (1, text.strip_prefix('+').unwrap_or(text)),
                };
                Ok(sign * parse_duration(magnitude)?.as_nanos() as i128)
            }
        }
    }
}

/// Why a fault cannot name `volume`, the pod's volumes being `volumes`.
pub(super) fn no_such_volume(volume: &str, volumes: &[String]) -> String {
    format!(
        "the pod has no volume `{volume}`; its volumes: {}",
        if volumes.is_empty() {
            "none".to_string()
        } else {
            volumes.join(", ")
        }
    )
}

fn write_fault_kind(name: &str, at: &str) -> Result<WriteFaultKind, FieldError> {
    WriteFaultKind::from_key(name).ok_or_else(|| {
        (
            at.to_string(),
            format!(
                "unknown write fault `{name}`; one of {}",
                WriteFaultKind::ALL.map(WriteFaultKind::key).join(", ")
            ),
        )
    })
}

impl FaultsFile {
    pub(super) fn parse(self) -> Result<Faults, FieldError> {
        let mut faults = Faults::default();
        for (hook, written) in [
            (Hook::PostStart, self.post_start),
            (Hook::PreStop, self.pre_stop),
        ] {
            let Some(written) = written else { continue };
            let fault = hook.fault_mut(&mut faults);
            fault.twice = written.twice;
            if let Some(delay) = written.delay {
                fault.delay = delay
                    .parse()
                    .map_err(|m| (format!("faults.{}.delay", hook.key()), m))?;
            }
        }
        for (kind, written) in [
            (ProbeKind::Startup, self.startup_probe),
            (ProbeKind::Liveness, self.liveness_probe),
            (ProbeKind::Readiness, self.readiness_probe),
        ] {
            let Some(written) = written else { continue };
            if written.from == 0 {
                return Err((
                    format!("faults.{}.from", probe_key(kind)),
                    "checks count from 1 (the probe's first check)".into(),
                ));
            }
            *faults.probe_mut(kind) = ProbeFault {
                from: written.from,
                failures: written.failures,
            };
        }
        for (volume, written) in self.volumes {
            let at = format!("faults.volumes.{volume}");
            if written.at == 0 {
                return Err((
                    format!("{at}.at"),
                    "writes count from 1 (the volume's first write)".into(),
                ));
            }
            let kind = write_fault_kind(&written.fault, &format!("{at}.fault"))?;
            faults.volumes.push((
                volume,
                WriteFault {
                    at: written.at,
                    kind,
                },
            ));
        }
        if let Some(clock) = self.wall_clock {
            let at = clock
                .at
                .parse()
                .map_err(|m| ("faults.wallClock.at".to_string(), m))?;
            let jump = clock
                .jump
                .parse()
                .map_err(|m| ("faults.wallClock.jump".to_string(), m))?;
            faults.wall_clock = Some(ClockJump {
                at,
                by: Duration::from_nanos(jump.unsigned_abs().min(u64::MAX as u128) as u64),
                back: jump < 0,
            });
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
    probe_failures: Option<ProbeFailuresFile>,
    write_faults: Option<WriteFaultsFile>,
    wall_clock: Option<WallClockSpanFile>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProbeFailuresFile {
    probes: Vec<String>,
    from: Vec<u64>,
    failures: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WriteFaultsFile {
    volumes: Vec<String>,
    faults: Vec<String>,
    at: Vec<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WallClockSpanFile {
    at: Vec<DurationValue>,
    jump: Vec<SignedDurationValue>,
}

/// A `[MIN, MAX]` (or `[VALUE]`) of `values`, as `parse` reads each.
fn range<T: Copy + PartialOrd, V>(
    values: &[V],
    at: &str,
    parse: impl Fn(&V) -> Result<T, String>,
    show: impl Fn(T) -> String,
    example: &str,
) -> Result<(T, T), FieldError> {
    let parse = |value: &V| parse(value).map_err(|m| (at.to_string(), m));
    let (min, max) = match values {
        [value] => (parse(value)?, parse(value)?),
        [min, max] => (parse(min)?, parse(max)?),
        _ => {
            return Err((
                at.to_string(),
                format!("a range is `[MIN, MAX]` ({example}), or `[VALUE]`"),
            ));
        }
    };
    if min > max {
        return Err((
            at.to_string(),
            format!(
                "the range is empty: {} is more than {}",
                show(min),
                show(max)
            ),
        ));
    }
    Ok((min, max))
}

fn span(values: &[DurationValue], at: &str) -> Result<Span, FieldError> {
    let (min, max) = range(
        values,
        at,
        DurationValue::parse,
        write_duration,
        "durations, like `[0s, 10s]`",
    )?;
    Ok(Span { min, max })
}

fn counts(values: &[u64], at: &str, least: u64) -> Result<Counts, FieldError> {
    let (min, max) = range(
        values,
        at,
        |value| Ok(*value),
        |value| value.to_string(),
        "numbers, like `[1, 10]`",
    )?;
    if min < least {
        return Err((at.to_string(), format!("counts from {least}, not {min}")));
    }
    Ok(Counts { min, max })
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

fn probe_kinds(names: &[String], at: &str) -> Result<Vec<ProbeKind>, FieldError> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            PROBE_KINDS
                .into_iter()
                .find(|kind| kind.name() == name)
                .ok_or_else(|| {
                    (
                        format!("{at}[{index}]"),
                        format!("unknown probe `{name}`; startup, liveness or readiness"),
                    )
                })
        })
        .collect()
}

impl ExploreFile {
    /// The spec; `has_delete` says whether the scenario has a `delete` step to vary,
    /// `volumes` names the pod's volumes.
    pub(super) fn parse(
        self,
        has_delete: bool,
        volumes: &[String],
    ) -> Result<ExploreSpec, FieldError> {
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
        if let Some(probes) = self.probe_failures {
            spec.probe_failures = Some(ProbeFailures {
                probes: probe_kinds(&probes.probes, "explore.probeFailures.probes")?,
                from: counts(&probes.from, "explore.probeFailures.from", 1)?,
                failures: counts(&probes.failures, "explore.probeFailures.failures", 1)?,
            });
        }
        if let Some(writes) = self.write_faults {
            for (index, volume) in writes.volumes.iter().enumerate() {
                if !volumes.contains(volume) {
                    return Err((
                        format!("explore.writeFaults.volumes[{index}]"),
                        no_such_volume(volume, volumes),
                    ));
                }
            }
            let kinds = writes
                .faults
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    write_fault_kind(name, &format!("explore.writeFaults.faults[{index}]"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if kinds.is_empty() {
                return Err((
                    "explore.writeFaults.faults".into(),
                    format!(
                        "names no fault: list some of {}",
                        WriteFaultKind::ALL.map(WriteFaultKind::key).join(", ")
                    ),
                ));
            }
            spec.write_faults = Some(WriteFaults {
                volumes: writes.volumes,
                kinds,
                at: counts(&writes.at, "explore.writeFaults.at", 1)?,
            });
        }
        if let Some(clock) = self.wall_clock {
            let jump = range(
                &clock.jump,
                "explore.wallClock.jump",
                SignedDurationValue::parse,
                |nanos| format!("{nanos} ns"),
                "durations, negative to step back, like `[-1h, 1h]`",
            )?;
            spec.wall_clock = Some(ClockJumps {
                at: span(&clock.at, "explore.wallClock.at")?,
                jump,
            });
        }
        if spec == ExploreSpec::default() {
            return Err((
                "explore".into(),
                "declares nothing to vary: give `delete` (`after`, `gracePeriod`), \
                 `secondDelete`, `hooksTwice`, `slowHooks`, `randomness`, `probeFailures`, \
                 `writeFaults` or `wallClock`"
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
            ..ExploreSpec::default()
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
            faults: Faults {
                pre_stop: HookFault {
                    twice: true,
                    delay: Duration::from_millis(20),
                },
                ..Faults::default()
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
