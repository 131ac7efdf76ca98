//! Reading Pod YAML: parse it, walk every field against the tables of [`super::fields`] so that
//! an unknown or unsupported field is an error naming its path (and an ignored one is noted),
//! convert what remains ([`super::convert`]), and report every problem at once in one
//! [`ManifestError`]. Files of several documents and kinds are [`super::objects`]'.

use std::fmt;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_yaml_ng::Value;

use super::PodSpec;
use super::fields::{EXPLAINED, IGNORED, SUPPORTED};
use super::sources::ConfigObjects;

/// Everything wrong with a manifest (one document of it, for a file of several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file (or `<inline>`).
    pub file: String,
    /// Which document of the file, for a file of several: `document 2 (Deployment `web`, line
    /// 14)`.
    pub document: Option<String>,
    /// Each problem, with the path of the field it is about.
    pub problems: Vec<Problem>,
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, as `spec.containers[0].lifecycle.preStop.tcpSocket`; empty for the document.
    pub path: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ManifestError {
    /// An error about the whole of `file`.
    pub(super) fn whole(file: &str, message: String) -> ManifestError {
        ManifestError {
            file: file.to_string(),
            document: None,
            problems: vec![Problem {
                path: String::new(),
                message,
            }],
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        match &self.document {
            None => write!(f, "invalid pod manifest `{}`", self.file)?,
            Some(document) => write!(f, "invalid manifest `{}`, {document}", self.file)?,
        }
        write!(
            f,
            " ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            if problem.path.is_empty() {
                write!(f, "\n  - {}", problem.message)?;
            } else {
                write!(f, "\n  - {}: {}", problem.path, problem.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

/// `serde_yaml_ng`'s error, with its line counted from `first_line` (the line its document
/// starts at in the file).
pub(super) fn syntax_error(error: &serde_yaml_ng::Error, first_line: usize) -> String {
    let text = error.to_string();
    match error.location() {
        Some(location) => {
            let message = text
                .rfind(" at line ")
                .map_or(text.as_str(), |at| &text[..at]);
            format!(
                "not valid YAML at line {} column {}: {message}",
                first_line + location.line() - 1,
                location.column()
            )
        }
        None => format!("not valid YAML: {text}"),
    }
}

/// File modes as Kubernetes reads them: its YAML is YAML 1.1, where `0644` is octal, and
/// `serde_yaml_ng` reads YAML 1.2, where it is a string. So a `mode` or `defaultMode` written
/// `0NNN` (or `0oNNN`) is made the number it means to Kubernetes.
pub(super) fn octal_modes(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                let is_mode = matches!(key.as_str(), Some("mode" | "defaultMode"));
                if is_mode && let Value::String(text) = value {
                    let digits = text
                        .strip_prefix("0o")
                        .or_else(|| text.strip_prefix('0'))
                        .unwrap_or("");
                    if let Ok(mode) = i64::from_str_radix(digits, 8)
                        && !digits.is_empty()
                    {
                        *value = Value::Number(mode.into());
                    }
                } else {
                    octal_modes(value);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

impl PodSpec {
    /// Reads and validates a Pod manifest file. Relative paths in it (`image`, exec
    /// `command[0]`) are resolved against the file's directory. A file of several documents,
    /// or of workloads, is read with [`super::Manifests::from_files`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<PodSpec, ManifestError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ManifestError::whole(&file, format!("cannot read the file: {error}"))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, base, &file)
    }

    /// Validates Pod YAML; `base` is the directory relative paths are resolved against and
    /// `file` the name errors give it.
    pub fn from_yaml(text: &str, base: &Path, file: &str) -> Result<PodSpec, ManifestError> {
        let mut document: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ManifestError::whole(file, syntax_error(&e, 1)))?;
        octal_modes(&mut document);
        pod_document(&document, base, &ConfigObjects::default()).map_err(|problems| ManifestError {
            file: file.to_string(),
            document: None,
            problems,
        })
    }
}

/// Checks and converts one Pod document (a Pod, or a workload's template made into one), with
/// the ConfigMaps and Secrets it may refer to.
pub(super) fn pod_document(
    document: &Value,
    base: &Path,
    config: &ConfigObjects,
) -> Result<PodSpec, Vec<super::Problem>> {
    let mut problems = Vec::new();
    if !document.is_mapping() {
        problems.push(Problem {
            path: String::new(),
            message: "expected a Pod object (a YAML mapping with apiVersion, kind, metadata, spec)"
                .into(),
        });
        return Err(problems);
    }
    let pod: Pod = match serde_path_to_error::deserialize(document.clone()) {
        Ok(pod) => pod,
        Err(e) => {
            problems.push(Problem {
                path: display_path(&e.path().to_string()),
                message: e.inner().to_string(),
            });
            return Err(problems);
        }
    };
    let known = serde_yaml_ng::to_value(&pod).unwrap_or(Value::Null);
    let mut ignored = Vec::new();
    check_fields(
        document,
        &known,
        &mut Vec::new(),
        &mut problems,
        &mut ignored,
    );
    match PodSpec::from_pod_with(&pod, base, config) {
        Ok(mut spec) if problems.is_empty() => {
            spec.ignored = ignored;
            Ok(spec)
        }
        Ok(_) => Err(problems),
        Err(mut semantic) => {
            // Keep one message per fault: an unsupported field is not also "invalid", nor is
            // the handler or object that holds it.
            let reported: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
            semantic.retain(|p| {
                !reported.iter().any(|field| {
                    field == &p.path
                        || field
                            .strip_prefix(&p.path)
                            .is_some_and(|rest| rest.starts_with('.'))
                })
            });
            problems.extend(semantic);
            Err(problems)
        }
    }
}

/// Reports every field of `document` that wasmlet does not support (or that is not part of
/// the Pod API at all, judging by what `k8s-openapi` kept in `known`), and notes in `ignored`
/// the ones a single host accepts and ignores.
fn check_fields(
    document: &Value,
    known: &Value,
    path: &mut Vec<String>,
    problems: &mut Vec<Problem>,
    ignored: &mut Vec<String>,
) {
    match document {
        Value::Mapping(map) => {
            for (key, value) in map {
                if value.is_null() {
                    continue;
                }
                let key = match key {
                    Value::String(key) => key.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let known_child = known.get(&key).unwrap_or(&Value::Null);
                path.push(key);
                let pattern = container_pattern(pattern_of(path));
                if SUPPORTED.iter().any(|p| is_prefix(&pattern, p)) {
                    check_fields(value, known_child, path, problems, ignored);
                } else if IGNORED.iter().any(|(p, _)| matches(p, &pattern)) {
                    ignored.push(path.join("."));
                } else if let Some((_, why)) = EXPLAINED.iter().find(|(p, _)| matches(p, &pattern))
                {
                    problems.push(Problem {
                        path: path.join("."),
                        message: why.to_string(),
                    });
                } else {
                    let message = if known_child.is_null() {
                        "unknown field: not part of the Kubernetes Pod API (check the spelling)"
                    } else {
                        "not supported by wasmlet yet"
                    };
                    problems.push(Problem {
                        path: path.join("."),
                        message: message.into(),
                    });
                }
                path.pop();
            }
        }
        Value::Sequence(items) => {
            let last = path.pop().unwrap_or_default();
            for (index, item) in items.iter().enumerate() {
                let known_item = known.get(index).unwrap_or(&Value::Null);
                path.push(format!("{last}[{index}]"));
                check_fields(item, known_item, path, problems, ignored);
                path.pop();
            }
            path.push(last);
        }
        _ => {}
    }
}

/// Init containers take the fields of containers: `spec.initContainers[]…` is checked as
/// `spec.containers[]…`, and each probe as `probe`.
fn container_pattern(mut pattern: Vec<String>) -> Vec<String> {
    if pattern.first().is_some_and(|s| s == "spec")
        && pattern.get(1).is_some_and(|s| s == "initContainers[]")
    {
        pattern[1] = "containers[]".into();
    }
    // The three probes take the same fields, and so do the two hooks.
    if pattern.get(1).is_some_and(|s| s == "containers[]") {
        if pattern.get(2).is_some_and(|s| {
            matches!(
                s.as_str(),
                "livenessProbe" | "readinessProbe" | "startupProbe"
            )
        }) {
            pattern[2] = "probe".into();
        }
        if pattern.get(2).is_some_and(|s| s == "lifecycle")
            && pattern
                .get(3)
                .is_some_and(|s| s == "postStart" || s == "preStop")
        {
            pattern[3] = "hook".into();
        }
    }
    pattern
}

/// `spec.containers[3].args[0]` → `spec`, `containers[]`, `args[]`. Segments are kept apart (never
/// joined and split again): a label key such as `app.kubernetes.io/name` is one segment.
fn pattern_of(path: &[String]) -> Vec<String> {
    path.iter()
        .map(|segment| match segment.find('[') {
            Some(bracket) => {
                let name = &segment[..bracket];
                let depth = segment.matches('[').count();
                format!("{name}{}", "[]".repeat(depth))
            }
            None => segment.clone(),
        })
        .collect()
}

/// Whether `pattern` (from [`EXPLAINED`]) matches `path` segment by segment, `*` matching any one
/// segment.
fn matches(pattern: &str, path: &[String]) -> bool {
    let pattern: Vec<_> = pattern.split('.').collect();
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, s)| *p == "*" || p == s)
}

/// Whether `path` is the [`SUPPORTED`] `pattern` or leads to it.
fn is_prefix(path: &[String], pattern: &str) -> bool {
    let pattern: Vec<_> = pattern.split('.').collect();
    path.len() <= pattern.len()
        && pattern.iter().zip(path).all(|(p, s)| {
            *p == "*" || p == s || p.trim_end_matches("[]") == s.trim_end_matches("[]")
        })
}

/// serde's paths write list indices as `.0`; Kubernetes users read `[0]`.
pub(crate) fn display_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.') {
        if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_kubernetes() {
        assert_eq!(
            display_path("spec.containers.0.lifecycle"),
            "spec.containers[0].lifecycle"
        );
        let path: Vec<String> = ["spec", "containers[2]", "args[0]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pattern_of(&path), ["spec", "containers[]", "args[]"]);
        let segments = |path: &[&str]| path.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_prefix(
            &segments(&["spec", "containers[]"]),
            "spec.containers[].name"
        ));
        assert!(is_prefix(
            &segments(&["metadata", "labels", "app.kubernetes.io/name"]),
            "metadata.labels.*"
        ));
        assert!(!is_prefix(
            &segments(&["spec", "containers[]", "ports"]),
            "spec.containers[].name"
        ));
    }
}
