//! The lifecycle layer: what a pod decides ([`decide`]) and the conditions it reports
//! ([`conditions`]).

pub(crate) mod conditions;
pub(crate) mod decide;
