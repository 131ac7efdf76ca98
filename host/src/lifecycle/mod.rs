//! The lifecycle layer: what the kubelet does with pods, on top of the runtime and HTTP layers.
//! A pod ([`pod`]) decides what to run next ([`decide`]) and reports its status and conditions
//! ([`conditions`]); each container run is supervised through its hooks, terminate and kill
//! ([`container`]), and probed ([`probe`]); all pods of a host share its [`node`].

pub(crate) mod conditions;
pub(crate) mod container;
pub(crate) mod decide;
pub(crate) mod faults;
pub(crate) mod node;
pub(crate) mod pod;
pub(crate) mod probe;
pub(crate) mod shared;

pub use shared::{all_terminated, phase_is_final};
