//! Faults deterministic mode injects at the host's boundary ([`Faults`]), for the exploration of
//! what the real world varies: hooks delivered late or twice (Kubernetes delivers hooks *at
//! least* once), probe checks that fail, writes to a volume that fail, come up short or find
//! the disk full, and a wall clock that steps. A real host injects none.
//!
//! What each fault does where it lands is the business of the code it lands in: hook delivery
//! (`container/hooks.rs`), the probe workers (`probe.rs`), the guests' file writes
//! ([`crate::runtime`]'s write faults), the virtual clock (`clock.rs`). This module only describes them.

use std::time::Duration;

pub use crate::clock::ClockJump;
use crate::manifest::ProbeKind;
pub use crate::runtime::{WriteFault, WriteFaultKind};

/// Every fault of one run. The default injects none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// How postStart is delivered.
    pub post_start: HookFault,
    /// How preStop is delivered.
    pub pre_stop: HookFault,
    /// Checks of the startup probes that fail, whatever the container answers.
    pub startup_probe: ProbeFault,
    /// Checks of the liveness probes that fail.
    pub liveness_probe: ProbeFault,
    /// Checks of the readiness probes that fail.
    pub readiness_probe: ProbeFault,
    /// Writes to files of a volume that fail, by the volume's name (in the pod's `volumes`).
    pub volumes: Vec<(String, WriteFault)>,
    /// A step of the wall clock the guests and the statuses see.
    pub wall_clock: Option<ClockJump>,
}

impl Faults {
    /// The fault of the probes of `kind`.
    pub fn probe(&self, kind: ProbeKind) -> ProbeFault {
        match kind {
            ProbeKind::Startup => self.startup_probe,
            ProbeKind::Liveness => self.liveness_probe,
            ProbeKind::Readiness => self.readiness_probe,
        }
    }

    /// The fault of the probes of `kind`, to change.
    pub fn probe_mut(&mut self, kind: ProbeKind) -> &mut ProbeFault {
        match kind {
            ProbeKind::Startup => &mut self.startup_probe,
            ProbeKind::Liveness => &mut self.liveness_probe,
            ProbeKind::Readiness => &mut self.readiness_probe,
        }
    }

    /// The fault of the writes to volume `name`, if any.
    pub fn volume(&self, name: &str) -> Option<WriteFault> {
        self.volumes
            .iter()
            .find(|(volume, _)| volume == name)
            .map(|(_, fault)| *fault)
    }
}

/// How one hook is delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookFault {
    /// Its handler starts this much later than it would (a slow kubelet or runtime). The grace
    /// period of a preStop is already running meanwhile.
    pub delay: Duration,
    /// Once its first delivery succeeds, it is delivered again (Kubernetes promises hooks at
    /// least once, not exactly once).
    pub twice: bool,
}

impl HookFault {
    /// Whether delivery is as usual: once, at once.
    pub fn is_none(&self) -> bool {
        *self == HookFault::default()
    }
}

/// Checks of a probe that fail without being made (the network between the kubelet and the
/// container dropped them): checks `from` to `from + failures - 1`, counted from 1 over the
/// pod's life for each of its containers (a restarted container's checks go on counting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeFault {
    /// The first check that fails (1 is the first check).
    pub from: u32,
    /// How many checks in a row fail; 0 for none.
    pub failures: u32,
}

impl ProbeFault {
    /// Whether check `number` (from 1) fails.
    pub fn fails(&self, number: u32) -> bool {
        self.failures > 0 && number >= self.from && number - self.from < self.failures
    }

    /// Whether no check fails.
    pub fn is_none(&self) -> bool {
        self.failures == 0
    }
}
