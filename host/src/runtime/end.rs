//! How an instance ended ([`InstanceEnd`]), and how that reaches its supervisor
//! ([`InstanceDone`]).

use std::time::Instant;

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstanceEnd {
    /// The export returned: `Ok`, or `Err` with the guest's message (`run` has none).
    Returned(Result<(), String>),
    /// The guest called `wasi:cli/exit` with this code.
    Exited(i32),
    /// A trap or host error ended the instance.
    Trapped {
        message: String,
        out_of_memory: bool,
    },
    /// wasmlet killed the instance at `at` (when it stopped executing); `location` says where
    /// it was.
    Killed { location: String, at: Instant },
    /// The hook export answered that the application has no such hook.
    NotImplemented,
}

impl InstanceEnd {
    /// The end of an instance whose task went away without finishing (the host is shutting
    /// down).
    pub fn lost() -> InstanceEnd {
        InstanceEnd::Trapped {
            message: "the instance was dropped before it finished (is the host shutting down?)"
                .into(),
            out_of_memory: false,
        }
    }
}

/// How an instance's end reaches its supervisor: sent by the instance's task when it finishes,
/// or by the kill itself when it takes the instance away, so that reporting a kill never waits
/// for the guest runtime to schedule anything.
pub(crate) type InstanceDone = tokio::sync::oneshot::Receiver<InstanceEnd>;
