//! Pod manifests: Kubernetes `Pod` YAML (parsed with `k8s-openapi` types) turned into a
//! validated [`PodSpec`] that wasmlet can run.
//!
//! `image` is a path to a component, relative to the manifest. Every field wasmlet does not
//! support is an error naming its path — never silently ignored — and every problem in a
//! manifest is reported at once, so a user fixes them in one pass.
//!
//! Each concern has its file: `spec` the data model, `fields` the tables of supported and
//! refused fields, `yaml` the walk over a manifest's fields and the report of its problems,
//! `convert` and `actions` the conversion from `k8s-openapi` types, `values` single values
//! (names, quantities, paths), `component` pods built from a component in code.

mod actions;
mod component;
mod convert;
mod fields;
mod spec;
mod values;
mod yaml;

pub use component::ComponentPod;
pub use spec::*;
pub(crate) use values::lexically_normal;
pub(crate) use yaml::display_path;
pub use yaml::{ManifestError, Problem};
