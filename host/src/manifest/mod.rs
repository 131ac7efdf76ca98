//! Manifests: Kubernetes YAML (parsed with `k8s-openapi` types) turned into validated
//! [`PodSpec`]s that wasmlet can run — a Pod, or the pods of a workload, with the ConfigMaps
//! and Secrets given beside them ([`Manifests`]).
//!
//! `image` is a path to a component, relative to the manifest. Every field wasmlet does not
//! support is an error naming its path, and every problem in a manifest is reported at once,
//! so a user fixes them in one pass. Fields about a cluster that a single host can do without
//! (scheduling, service accounts, DNS) are accepted and listed in an event, never silently.
//!
//! Each concern has its file: `spec` the data model, `fields` the tables of supported and
//! refused fields, `yaml` the walk over a manifest's fields and the report of its problems,
//! `convert` and `actions` the conversion from `k8s-openapi` types, `values` single values
//! (names, quantities, paths), `component` pods built from a component in code, `objects`
//! files of several documents and kinds (workloads, ConfigMaps, Secrets), `sources` what
//! volumes and variables read from them.

mod actions;
mod component;
mod convert;
mod failure_policy;
mod fields;
mod objects;
mod sources;
mod spec;
mod success_policy;
mod values;
mod yaml;

pub use component::ComponentPod;
pub(crate) use failure_policy::match_rules;
pub use failure_policy::{FailureAction, FailureRule};
pub use objects::{JobSpec, Manifests, Workload, WorkloadKind};
pub use spec::*;
pub use success_policy::SuccessRule;
pub(crate) use success_policy::match_success_policy;
pub(crate) use values::lexically_normal;
pub(crate) use yaml::display_path;
pub use yaml::{ManifestError, Problem};
