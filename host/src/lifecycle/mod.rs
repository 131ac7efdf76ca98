//! The lifecycle layer: what a pod decides ([`decide`]).

pub(crate) mod decide;
