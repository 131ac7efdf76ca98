//! Manifest files as `kubectl apply -f` reads them: several files, each of one or more YAML
//! documents, of any kind. `ConfigMap`s and `Secret`s feed the pods' volumes and environment;
//! `Pod`s and the pod templates of `Deployment`s, `ReplicaSet`s, `StatefulSet`s, `DaemonSet`s
//! and `Job`s become [`Workload`]s; every other kind (`Service`, `Ingress`, …) is skipped with a
//! line that says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_yaml_ng::{Mapping, Value};

use super::fields::{Treat, WORKLOAD_FIELDS};
use super::sources::ConfigObjects;
use super::values::check_dns_subdomain;
use super::yaml::{display_path, octal_modes, pod_document, syntax_error};
use super::{ManifestError, PodSpec, Problem, RestartPolicy, VolumeSource};

/// What a set of manifest files asks a host to run.
#[derive(Debug, Clone)]
pub struct Manifests {
    workloads: Vec<Workload>,
    skipped: Vec<String>,
}

/// The kinds of object that run pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// A `Pod`.
    Pod,
    /// A `Deployment`: `replicas` pods.
    Deployment,
    /// A `ReplicaSet`: `replicas` pods.
    ReplicaSet,
    /// A `ReplicationController`: `replicas` pods.
    ReplicationController,
    /// A `StatefulSet`: `replicas` pods named by ordinal, each with its own claims.
    StatefulSet,
    /// A `DaemonSet`: one pod, for the one node.
    DaemonSet,
    /// A `Job`: pods until `completions` of them succeeded, or `backoffLimit` failed.
    Job,
}

impl WorkloadKind {
    fn of(kind: &str) -> Option<WorkloadKind> {
        Some(match kind {
            "Pod" => WorkloadKind::Pod,
            "Deployment" => WorkloadKind::Deployment,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "ReplicationController" => WorkloadKind::ReplicationController,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "Job" => WorkloadKind::Job,
            _ => return None,
        })
    }

    /// `Deployment`, as in `kind`.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
        }
    }
}

/// A Pod, or a workload's pods: validated, ready to start.
#[derive(Debug, Clone)]
pub struct Workload {
    kind: WorkloadKind,
    name: String,
    file: String,
    pods: Vec<PodSpec>,
    job: Option<JobSpec>,
    ordered: bool,
}

/// How a Job runs its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// `completions`: how many pods must succeed; `None` runs `parallelism` pods and is done when
    /// one has succeeded and all have ended (a work queue).
    pub completions: Option<u32>,
    /// `parallelism` (default 1): at most this many pods at once.
    pub parallelism: u32,
    /// `backoffLimit` (default 6): the job fails at the failure after this many.
    pub backoff_limit: u32,
    /// `completionMode: Indexed`: each pod gets its index (`JOB_COMPLETION_INDEX`).
    pub indexed: bool,
    /// `activeDeadlineSeconds`: the job fails (`DeadlineExceeded`), its pods stopped, after this
    /// long.
    pub active_deadline: Option<Duration>,
    /// `podFailurePolicy.rules`: how a failed pod's exit codes decide what its failure does.
    pub pod_failure_policy: Vec<super::FailureRule>,
    /// `backoffLimitPerIndex` (Indexed jobs): an index whose pods failed more often than this
    /// fails, and is not retried, while the other indexes go on.
    pub backoff_limit_per_index: Option<u32>,
    /// `maxFailedIndexes`: the job fails at once when more indexes than this have failed.
    pub max_failed_indexes: Option<u32>,
    /// `successPolicy.rules`: the job succeeds once one of them is satisfied.
    pub success_policy: Vec<super::SuccessRule>,
}

impl Workload {
    /// Its kind.
    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Its pods: the Pod; a workload's replicas, named `NAME-0`, `NAME-1`, …; a Job's pod
    /// template (each pod it runs is [`Workload::job_pod`]).
    pub fn pods(&self) -> &[PodSpec] {
        &self.pods
    }

    /// For a Job, how it runs.
    pub fn job(&self) -> Option<&JobSpec> {
        self.job.as_ref()
    }

    /// Whether its pods start one at a time, each once the one before is running and ready (a
    /// StatefulSet's `podManagementPolicy: OrderedReady`, the default).
    pub fn ordered(&self) -> bool {
        self.ordered
    }

    /// A Job's `number`th pod (from 0), named `JOB-NUMBER`; for an Indexed job, for completion
    /// `index`. `None` for other kinds.
    pub fn job_pod(&self, number: u32, index: u32) -> Option<PodSpec> {
        let job = self.job.as_ref()?;
        let mut spec = self
            .pods
            .first()?
            .renamed(format!("{}-{number}", self.name));
        if job.indexed {
            spec.add_env("JOB_COMPLETION_INDEX", &index.to_string());
        }
        Some(spec)
    }
}

impl Manifests {
    /// Reads manifest files as `kubectl apply -f` does: every document of every file, the
    /// ConfigMaps and Secrets of all of them available to the pods of all of them. Every problem
    /// of every document is reported at once, one [`ManifestError`] per document at fault.
    pub fn from_files(paths: &[impl AsRef<Path>]) -> Result<Manifests, Vec<ManifestError>> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let file = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => sources.push((
                    file,
                    path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                    text,
                )),
                Err(error) => errors.push(ManifestError::whole(
                    &file,
                    format!("cannot read the file: {error}"),
                )),
            }
        }
        Self::read(sources, errors)
    }

    /// [`Manifests::from_files`] for one file's text; `base` is the directory relative paths are
    /// resolved against and `file` the name errors give it.
    pub fn from_yaml(text: &str, base: &Path, file: &str) -> Result<Manifests, Vec<ManifestError>> {
        Self::read(
            vec![(file.to_string(), base.to_path_buf(), text.to_string())],
            Vec::new(),
        )
    }

    /// The Pods and workloads, in the order of the files and documents.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The one pod of these manifests, if they have exactly one (a scenario's pod); else why not.
    pub fn into_single_pod(self) -> Result<PodSpec, String> {
        let mut pods: Vec<PodSpec> = self
            .workloads
            .into_iter()
            .filter(|w| w.job.is_none())
            .flat_map(|w| w.pods)
            .collect();
        match pods.len() {
            1 => Ok(pods.remove(0)),
            n => Err(format!(
                "expected one pod (a Pod, or a workload of one replica), found {n}"
            )),
        }
    }

    /// One line for each object skipped (a `Service`, an `Ingress`, …), saying so.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    fn read(
        sources: Vec<(String, PathBuf, String)>,
        mut errors: Vec<ManifestError>,
    ) -> Result<Manifests, Vec<ManifestError>> {
        let mut documents = Vec::new();
        for (file, base, text) in &sources {
            documents.extend(split_documents(file, base, text, &mut errors));
        }
        // ConfigMaps and Secrets first: a pod may come before the objects it reads.
        let mut config = ConfigObjects::default();
        for document in &documents {
            let problems = match document.kind.as_str() {
                "ConfigMap" => add_config_map(&document.value, &mut config),
                "Secret" => add_secret(&document.value, &mut config),
                _ => continue,
            };
            if !problems.is_empty() {
                errors.push(document.error(problems));
            }
        }
        let mut workloads = Vec::new();
        let mut skipped = Vec::new();
        for document in &documents {
            match (document.kind.as_str(), WorkloadKind::of(&document.kind)) {
                ("ConfigMap" | "Secret", _) => {}
                (_, Some(kind)) => match workload(kind, document, &config) {
                    Ok(workload) => workloads.push(workload),
                    Err(problems) => errors.push(document.error(problems)),
                },
                ("", None) => errors.push(document.error(vec![Problem {
                    path: "kind".into(),
                    message: "required: the kind of object, such as Pod or Deployment".into(),
                }])),
                (kind, None) => skipped.push(format!(
                    "{}: skipped {kind} `{}`: {}",
                    document.file,
                    document.name(),
                    skip_reason(kind)
                )),
            }
        }
        // Pods of one host share its names: two of the same name could not both run.
        let mut names = std::collections::HashSet::new();
        for workload in &workloads {
            for pod in &workload.pods {
                let key = (pod.namespace.clone(), pod.name.clone());
                if !names.insert(key) {
                    errors.push(ManifestError::whole(
                        &workload.file,
                        format!(
                            "{} `{}`: a pod named `{}` comes from another manifest too; pods \
                             of one host need different names",
                            workload.kind.name(),
                            workload.name,
                            pod.name
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(Manifests { workloads, skipped })
        } else {
            Err(errors)
        }
    }
}

/// Why a kind is skipped: what a single host does instead.
fn skip_reason(kind: &str) -> &'static str {
    match kind {
        "Service" => "wasmlet has no Services; a pod serves on the host's address and its ports",
        "Ingress" | "Gateway" | "HTTPRoute" => {
            "wasmlet routes no traffic; pods serve on the host's address"
        }
        "PersistentVolumeClaim" | "PersistentVolume" | "StorageClass" => {
            "a claim is a directory under the host's data directory, made on first use"
        }
        "CronJob" => "wasmlet runs nothing on a schedule; run its jobTemplate as a Job",
        "Namespace" => "namespaces need not be made; a pod's namespace is its metadata.namespace",
        _ => "not something a single host runs",
    }
}

/// One document of a file.
struct Document {
    file: String,
    base: PathBuf,
    /// `document 2 (Deployment `web`, line 14)` when the file has more than one.
    label: Option<String>,
    kind: String,
    value: Value,
}

impl Document {
    fn name(&self) -> String {
        self.value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn error(&self, problems: Vec<Problem>) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            document: self.label.clone(),
            problems,
        }
    }
}

/// The documents of a file (a `List`'s items each one), with where each starts. Empty
/// documents are skipped, as kubectl skips them.
fn split_documents(
    file: &str,
    base: &Path,
    text: &str,
    errors: &mut Vec<ManifestError>,
) -> Vec<Document> {
    // Documents begin after a `---` line; each is parsed on its own so that its line numbers
    // can be given from the start of the file.
    let mut chunks: Vec<(usize, String)> = vec![(1, String::new())];
    for (index, line) in text.lines().enumerate() {
        let separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if separator {
            chunks.push((index + 2, String::new()));
        } else {
            let chunk = &mut chunks.last_mut().expect("one chunk at least").1;
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    let mut parsed = Vec::new();
    for (line, chunk) in chunks {
        match serde_yaml_ng::from_str::<Value>(&chunk) {
            Ok(Value::Null) => {}
            Ok(mut value) => {
                octal_modes(&mut value);
                parsed.push((line, value))
            }
            Err(error) => errors.push(ManifestError::whole(file, syntax_error(&error, line))),
        }
    }
    let mut values = Vec::new();
    for (line, value) in parsed {
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            for item in value
                .get("items")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                values.push((line, item.clone()));
            }
        } else {
            values.push((line, value));
        }
    }
    let several = values.len() > 1;
    values
        .into_iter()
        .enumerate()
        .map(|(index, (line, value))| {
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Document {
                file: file.to_string(),
                base: base.to_path_buf(),
                label: several
                    .then(|| format!("document {} ({kind} `{name}`, line {line})", index + 1)),
                kind,
                value,
            }
        })
        .collect()
}

/// Deserializes `value` as `T`, a problem naming the field at fault if it is not one.
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, Vec<Problem>> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        vec![Problem {
            path: display_path(&e.path().to_string()),
            message: e.inner().to_string(),
        }]
    })
}

fn namespace_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

/// A key of a ConfigMap or Secret: letters, digits, `-`, `_` and `.` (it becomes a file name).
fn check_keys<'k>(
    keys: impl Iterator<Item = &'k String>,
    field: &str,
    problems: &mut Vec<Problem>,
) {
    for key in keys {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key != "."
            && key != ".."
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            problems.push(Problem {
                path: format!("{field}.{key}"),
                message: "not a valid key: use letters, digits, '-', '_' and '.'".into(),
            });
        }
    }
}

fn object_name(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    problems: &mut Vec<Problem>,
) -> String {
    let name = metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        problems.push(Problem {
            path: "metadata.name".into(),
            message: "required: the object's name".into(),
        });
    } else if let Err(why) = check_dns_subdomain(&name) {
        problems.push(Problem {
            path: "metadata.name".into(),
            message: why,
        });
    }
    name
}

fn add_config_map(value: &Value, config: &mut ConfigObjects) -> Vec<Problem> {
    let map: ConfigMap = match typed(value) {
        Ok(map) => map,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    let name = object_name(&map.metadata, &mut problems);
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, text) in map.data.iter().flatten() {
        data.insert(key.clone(), text.clone().into_bytes());
    }
    for (key, bytes) in map.binary_data.iter().flatten() {
        if data.contains_key(key) {
            problems.push(Problem {
                path: format!("binaryData.{key}"),
                message: "is in `data` too; a key may be in only one of them".into(),
            });
        }
        data.insert(key.clone(), bytes.0.clone());
    }
    check_keys(data.keys(), "data", &mut problems);
    config.insert_config_map(namespace_of(&map.metadata), name, data);
    problems
}

fn add_secret(value: &Value, config: &mut ConfigObjects) -> Vec<Problem> {
    let secret: Secret = match typed(value) {
        Ok(secret) => secret,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    let name = object_name(&secret.metadata, &mut problems);
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, bytes) in secret.data.iter().flatten() {
        data.insert(key.clone(), bytes.0.clone());
    }
    // `stringData` is written over `data`, as the API server merges them.
    for (key, text) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), text.clone().into_bytes());
    }
    check_keys(data.keys(), "data", &mut problems);
    config.insert_secret(namespace_of(&secret.metadata), name, data);
    problems
}

/// `spec.template.spec.x` for the template's `spec.x`: paths as they are in the file.
fn in_template(path: &str) -> String {
    if path == "metadata.name" {
        // The pods' names come from the workload's.
        return path.to_string();
    }
    if path.is_empty() {
        "spec.template".to_string()
    } else {
        format!("spec.template.{path}")
    }
}

/// A Pod, or a workload's pods.
fn workload(
    kind: WorkloadKind,
    document: &Document,
    config: &ConfigObjects,
) -> Result<Workload, Vec<Problem>> {
    let value = &document.value;
    if kind == WorkloadKind::Pod {
        let spec = pod_document(value, &document.base, config)?;
        return Ok(Workload {
            kind,
            name: spec.name.clone(),
            file: document.file.clone(),
            pods: vec![spec],
            job: None,
            ordered: false,
        });
    }
    let mut problems = Vec::new();
    let mut ignored = Vec::new();
    let spec = value.get("spec").cloned().unwrap_or(Value::Null);
    let known = known_spec(kind, value)?;
    let metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
        typed(value.get("metadata").unwrap_or(&Value::Null)).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| Problem {
                    path: format!("metadata.{}", p.path),
                    ..p
                })
                .collect::<Vec<_>>()
        })?;
    let name = object_name(&metadata, &mut problems);
    let namespace = namespace_of(&metadata);
    // The fields of the workload's spec, beside its template.
    for (key, field_value) in spec.as_mapping().into_iter().flatten() {
        let Some(key) = key.as_str() else { continue };
        if field_value.is_null() {
            continue;
        }
        let treat = WORKLOAD_FIELDS
            .iter()
            .find(|(k, field, _)| (*k == kind.name() || *k == "*") && *field == key)
            .map(|(_, _, treat)| *treat);
        let path = format!("spec.{key}");
        match treat {
            Some(Treat::Run) => {}
            Some(Treat::Ignore) => ignored.push(path),
            None => problems.push(Problem {
                path,
                message: if known.get(key).is_some_and(|v| !v.is_null()) {
                    "not supported by wasmlet yet".into()
                } else {
                    format!(
                        "unknown field: not part of the Kubernetes {} API (check the spelling)",
                        kind.name()
                    )
                },
            }),
        }
    }
    let Some(template) = spec.get("template").filter(|t| t.is_mapping()) else {
        problems.push(Problem {
            path: "spec.template".into(),
            message: "required: the pod template (metadata and spec of the pods to run)".into(),
        });
        return Err(problems);
    };
    // The template, made a Pod named as the first replica.
    let integer = |field: &str| spec.get(field).and_then(Value::as_i64);
    let ordinal_start = spec
        .get("ordinals")
        .and_then(|o| o.get("start"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as u32;
    let mut template_metadata = template
        .get("metadata")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    template_metadata.insert("name".into(), Value::String(format!("{name}-0")));
    template_metadata.insert("namespace".into(), Value::String(namespace.clone()));
    let mut pod_spec = template.get("spec").cloned().unwrap_or(Value::Null);
    // A StatefulSet's claim templates: a claim per pod, `TEMPLATE-NAME-ORDINAL`.
    let mut claim_templates = Vec::new();
    if kind == WorkloadKind::StatefulSet {
        for (index, claim) in spec
            .get("volumeClaimTemplates")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(claim_name) = claim
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
            else {
                problems.push(Problem {
                    path: format!("spec.volumeClaimTemplates[{index}].metadata.name"),
                    message: "required: the name the pods' volumeMounts use".into(),
                });
                continue;
            };
            claim_templates.push(claim_name.to_string());
            let mut volume = Mapping::new();
            volume.insert("name".into(), claim_name.into());
            let mut source = Mapping::new();
            source.insert(
                "claimName".into(),
                format!("{claim_name}-{name}-{ordinal_start}").into(),
            );
            volume.insert("persistentVolumeClaim".into(), Value::Mapping(source));
            if let Some(Value::Mapping(pod_spec)) = Some(&mut pod_spec) {
                let volumes = pod_spec
                    .entry("volumes".into())
                    .or_insert_with(|| Value::Sequence(Vec::new()));
                if let Value::Sequence(volumes) = volumes {
                    volumes.push(Value::Mapping(volume));
                }
            }
        }
    }
    let mut pod = Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    pod.insert("metadata".into(), Value::Mapping(template_metadata.clone()));
    pod.insert("spec".into(), pod_spec);
    let template_spec = match pod_document(&Value::Mapping(pod), &document.base, config) {
        Ok(spec) => Some(spec),
        Err(more) => {
            problems.extend(more.into_iter().map(|p| Problem {
                path: in_template(&p.path),
                ..p
            }));
            None
        }
    };
    // The selector must select the template's pods, as the API server requires.
    let labels = template_metadata
        .get("labels")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let selector = spec.get("selector");
    let match_labels = match kind {
        WorkloadKind::ReplicationController => selector,
        _ => selector.and_then(|s| s.get("matchLabels")),
    };
    for (key, wanted) in match_labels
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        if labels.get(key) != Some(wanted) {
            let key = key.as_str().unwrap_or_default();
            problems.push(Problem {
                path: "spec.selector".into(),
                message: format!(
                    "selects `{key}: {}`, which the template's labels do not have: the \
                     {} would select none of its own pods",
                    wanted.as_str().unwrap_or_default(),
                    kind.name()
                ),
            });
        }
    }
    let Some(template_spec) = template_spec else {
        return Err(problems);
    };
    // Restart policies as the API server allows them.
    let policy = template_spec.restart_policy;
    match kind {
        WorkloadKind::Job if policy == RestartPolicy::Always => problems.push(Problem {
            path: "spec.template.spec.restartPolicy".into(),
            message: "a Job's pods need `restartPolicy: Never` or `OnFailure` (they run to \
                      completion)"
                .into(),
        }),
        WorkloadKind::Job => {}
        _ if policy != RestartPolicy::Always => problems.push(Problem {
            path: "spec.template.spec.restartPolicy".into(),
            message: format!(
                "a {}'s pods run until deleted: only `Always` is allowed",
                kind.name()
            ),
        }),
        _ => {}
    }
    let count = |field: &str, default: i64, problems: &mut Vec<Problem>| -> u32 {
        match integer(field) {
            None => default as u32,
            Some(n) if (0..=10_000).contains(&n) => n as u32,
            Some(n) => {
                problems.push(Problem {
                    path: format!("spec.{field}"),
                    message: format!("{n} is out of range: give 0 to 10000"),
                });
                default as u32
            }
        }
    };
    let mut job = None;
    let replicas = match kind {
        WorkloadKind::Job => {
            let completions =
                integer("completions").map(|_| count("completions", 1, &mut problems));
            let parallelism = count("parallelism", 1, &mut problems);
            let indexed = match spec.get("completionMode").and_then(Value::as_str) {
                None | Some("NonIndexed") => false,
                Some("Indexed") => true,
                Some(other) => {
                    problems.push(Problem {
                        path: "spec.completionMode".into(),
                        message: format!(
                            "`{other}` is not a completion mode: NonIndexed or Indexed"
                        ),
                    });
                    false
                }
            };
            if indexed && completions.is_none() {
                problems.push(Problem {
                    path: "spec.completions".into(),
                    message: "required for an Indexed job: the number of indexes".into(),
                });
            }
            if spec.get("suspend").and_then(Value::as_bool) == Some(true) {
                problems.push(Problem {
                    path: "spec.suspend".into(),
                    message: "a suspended Job runs no pods, and nothing can resume it on a \
                              single host: set `suspend: false`"
                        .into(),
                });
            }
            let active_deadline = match integer("activeDeadlineSeconds") {
                None => None,
                Some(n) if n > 0 => Some(Duration::from_secs(n as u64)),
                Some(n) => {
                    problems.push(Problem {
                        path: "spec.activeDeadlineSeconds".into(),
                        message: format!("must be more than 0 seconds, got {n}"),
                    });
                    None
                }
            };
            // Checked as `validateJobSpec` does: per-index limits are for Indexed jobs.
            let backoff_limit_per_index = integer("backoffLimitPerIndex")
                .map(|_| count("backoffLimitPerIndex", 0, &mut problems));
            let max_failed_indexes =
                integer("maxFailedIndexes").map(|_| count("maxFailedIndexes", 0, &mut problems));
            if backoff_limit_per_index.is_some() && !indexed {
                problems.push(Problem {
                    path: "spec.backoffLimitPerIndex".into(),
                    message: "requires `completionMode: Indexed` (as Kubernetes requires)".into(),
                });
            }
            if let Some(max) = max_failed_indexes {
                if backoff_limit_per_index.is_none() {
                    problems.push(Problem {
                        path: "spec.maxFailedIndexes".into(),
                        message: "requires `backoffLimitPerIndex` (as Kubernetes requires)".into(),
                    });
                } else if completions.is_some_and(|completions| max > completions) {
                    problems.push(Problem {
                        path: "spec.maxFailedIndexes".into(),
                        message: format!(
                            "{max} is more than `completions` ({})",
                            completions.unwrap_or_default()
                        ),
                    });
                }
            }
            // With a limit per index, `backoffLimit` bounds the whole job only when given.
            let backoff_limit = match (backoff_limit_per_index, integer("backoffLimit")) {
                (Some(_), None) => u32::MAX,
                _ => count("backoffLimit", 6, &mut problems),
            };
            job = Some(JobSpec {
                completions,
                parallelism,
                backoff_limit,
                indexed,
                active_deadline,
                pod_failure_policy: super::failure_policy::parse(
                    &spec,
                    policy == RestartPolicy::Never,
                    backoff_limit_per_index.is_some(),
                    &mut problems,
                ),
                backoff_limit_per_index,
                max_failed_indexes,
                success_policy: super::success_policy::parse(
                    &spec,
                    completions.filter(|_| indexed),
                    &mut problems,
                ),
            });
            parallelism.min(completions.unwrap_or(u32::MAX))
        }
        WorkloadKind::DaemonSet => 1,
        _ => count("replicas", 1, &mut problems),
    };
    // Replicas share the host's ports: more than one can only run if they listen on none.
    let ports: Vec<u16> = template_spec
        .init_containers
        .iter()
        .chain(&template_spec.containers)
        .flat_map(|c| c.listen_ports())
        .collect();
    // Replicas that listen get an address each (the host's, then the loopback addresses after
    // it); a Job's pods come and go under one name, so parallel ones may not listen.
    if replicas > 1 && !ports.is_empty() && kind == WorkloadKind::Job {
        let (field, what) = ("spec.parallelism", "parallelism");
        problems.push(Problem {
            path: field.into(),
            message: format!(
                "{what}: {replicas} would run {replicas} pods on this one host, and each listens on \
                 port{} {}, which only one of them can have: set `{what}: 1`, or run one \
                 wasmlet per pod, each with its own `--address`",
                if ports.len() == 1 { "" } else { "s" },
                ports
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut template_spec = template_spec;
    template_spec.ignored = template_spec
        .ignored
        .iter()
        .map(|path| in_template(path))
        .chain(ignored)
        .collect();
    let pods = match kind {
        WorkloadKind::Job => vec![template_spec.renamed(name.clone())],
        _ => (0..replicas)
            .map(|index| {
                let ordinal = if kind == WorkloadKind::StatefulSet {
                    ordinal_start + index
                } else {
                    index
                };
                let mut pod = template_spec.renamed(format!("{name}-{ordinal}"));
                if !ports.is_empty() {
                    pod.replica = index;
                }
                for volume in &mut pod.volumes {
                    if claim_templates.contains(&volume.name)
                        && let VolumeSource::Claim { claim, .. } = &mut volume.source
                    {
                        *claim = format!("{}-{name}-{ordinal}", volume.name);
                    }
                }
                pod
            })
            .collect(),
    };
    let ordered = kind == WorkloadKind::StatefulSet
        && spec.get("podManagementPolicy").and_then(Value::as_str) != Some("Parallel");
    if let Some(policy) = spec.get("podManagementPolicy").and_then(Value::as_str)
        && !matches!(policy, "OrderedReady" | "Parallel")
    {
        return Err(vec![Problem {
            path: "spec.podManagementPolicy".into(),
            message: format!("`{policy}` is not a policy: OrderedReady or Parallel"),
        }]);
    }
    Ok(Workload {
        kind,
        name,
        file: document.file.clone(),
        pods,
        job,
        ordered,
    })
}

/// The workload's spec as `k8s-openapi` reads it (to tell a field it does not know from one
/// wasmlet does not support), or the problem that makes it unreadable.
fn known_spec(kind: WorkloadKind, value: &Value) -> Result<Value, Vec<Problem>> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    let spec = |v: Result<Value, serde_yaml_ng::Error>| {
        v.ok()
            .and_then(|v| v.get("spec").cloned())
            .unwrap_or(Value::Null)
    };
    Ok(match kind {
        WorkloadKind::Pod => Value::Null,
        WorkloadKind::Deployment => {
            spec(serde_yaml_ng::to_value(typed::<apps::Deployment>(value)?))
        }
        WorkloadKind::ReplicaSet => {
            spec(serde_yaml_ng::to_value(typed::<apps::ReplicaSet>(value)?))
        }
        WorkloadKind::StatefulSet => {
            spec(serde_yaml_ng::to_value(typed::<apps::StatefulSet>(value)?))
        }
        WorkloadKind::DaemonSet => spec(serde_yaml_ng::to_value(typed::<apps::DaemonSet>(value)?)),
        WorkloadKind::ReplicationController => spec(serde_yaml_ng::to_value(typed::<
            core::ReplicationController,
        >(value)?)),
        WorkloadKind::Job => spec(serde_yaml_ng::to_value(typed::<batch::Job>(value)?)),
    })
}
