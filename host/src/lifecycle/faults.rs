//! Faults the kubelet side can inject into hook delivery ([`HookFaults`]), for deterministic
//! mode's exploration of what the real world varies: Kubernetes delivers hooks *at least*
//! once, and a slow node delivers them late. A real host injects none.

use std::time::Duration;

/// How each hook is delivered. The default delivers every hook once, at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookFaults {
    /// How postStart is delivered.
    pub post_start: HookFault,
    /// How preStop is delivered.
    pub pre_stop: HookFault,
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
