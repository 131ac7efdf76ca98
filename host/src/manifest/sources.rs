//! Config and storage from the same manifests: `configMap`, `secret`, `downwardAPI`,
//! `projected` and `persistentVolumeClaim` volumes, and environment variables from ConfigMaps,
//! Secrets (`configMapKeyRef`, `secretKeyRef`, `envFrom`) and the container's resources
//! (`resourceFieldRef`) — resolved against the ConfigMaps and Secrets given with the pod
//! ([`ConfigObjects`]), as the kubelet resolves them against the API server.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, EnvFromSource, KeyToPath, ObjectFieldSelector, Pod,
    ResourceFieldSelector, Volume,
};

use super::values::{parse_memory, parse_quantity};
use super::{EnvValue, FileContent, PodField, ProjectedFile, VolumeSource};

/// The ConfigMaps and Secrets of a set of manifests, by namespace and name: what their pods'
/// `configMap`/`secret` volumes, `configMapKeyRef`/`secretKeyRef` and `envFrom` read.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigObjects {
    config_maps: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

impl ConfigObjects {
    /// The keys and values of ConfigMap `name` in `namespace`.
    pub(crate) fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// The keys and (decoded) values of Secret `name` in `namespace`.
    pub(crate) fn secret(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }

    /// Adds ConfigMap `name` of `namespace` (a later one of the same name replaces it).
    pub(super) fn insert_config_map(
        &mut self,
        namespace: String,
        name: String,
        data: BTreeMap<String, Vec<u8>>,
    ) {
        self.config_maps.insert((namespace, name), data);
    }

    /// Adds Secret `name` of `namespace`, its values decoded.
    pub(super) fn insert_secret(
        &mut self,
        namespace: String,
        name: String,
        data: BTreeMap<String, Vec<u8>>,
    ) {
        self.secrets.insert((namespace, name), data);
    }
}

/// The mode of a projected file when neither `mode` nor `defaultMode` says (Kubernetes'
/// `0644`).
const DEFAULT_MODE: i32 = 0o644;

/// Where values come from: a ConfigMap or a Secret.
#[derive(Clone, Copy)]
enum Store {
    ConfigMap,
    Secret,
}

impl Store {
    fn kind(self) -> &'static str {
        match self {
            Store::ConfigMap => "ConfigMap",
            Store::Secret => "Secret",
        }
    }

    /// The object's keys and values, or why there are none (`None` for a missing optional one).
    fn lookup<'c>(
        self,
        config: &'c ConfigObjects,
        namespace: &str,
        name: &str,
        optional: bool,
    ) -> Result<Option<&'c BTreeMap<String, Vec<u8>>>, String> {
        let found = match self {
            Store::ConfigMap => config.config_map(namespace, name),
            Store::Secret => config.secret(namespace, name),
        };
        match found {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => Err(format!(
                "{} `{name}` (namespace `{namespace}`) is not among the manifests given: put it \
                 in the same file or another file given with it, or set `optional: true`",
                self.kind()
            )),
        }
    }
}

/// What a pod's volumes and environment are resolved with.
pub(super) struct Context<'a> {
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub config: &'a ConfigObjects,
    /// What the pod needs and the manifests do not give (a ConfigMap, a Secret, a key of one):
    /// as the API server, validation accepts the pod; as the kubelet, wasmlet does not start it.
    pub missing: std::cell::RefCell<Vec<String>>,
}

impl Context<'_> {
    /// Notes `what` as missing (the pod is valid, but cannot start without it).
    fn miss(&self, what: String) {
        let mut missing = self.missing.borrow_mut();
        if !missing.contains(&what) {
            missing.push(what);
        }
    }
}

/// The source of a volume other than `emptyDir` and `hostPath`, if it is one of the sources
/// this module handles: `Ok(None)` when it is none of them.
pub(super) fn volume_source(
    volume: &Volume,
    at: &str,
    context: &Context,
    problem: &mut impl FnMut(&str, String),
) -> Option<VolumeSource> {
    let mut files = Vec::new();
    if let Some(claim) = &volume.persistent_volume_claim {
        if let Err(why) = super::values::check_dns_subdomain(&claim.claim_name) {
            problem(&format!("{at}.persistentVolumeClaim.claimName"), why);
        }
        return Some(VolumeSource::Claim {
            claim: claim.claim_name.clone(),
            read_only: claim.read_only.unwrap_or(false),
        });
    }
    if let Some(source) = &volume.config_map {
        let at = format!("{at}.configMap");
        let mode = default_mode(source.default_mode, &at, problem);
        store_files(
            Store::ConfigMap,
            &source.name,
            source.items.as_deref(),
            source.optional.unwrap_or(false),
            mode,
            &at,
            context,
            &mut files,
            problem,
        );
    } else if let Some(source) = &volume.secret {
        let at = format!("{at}.secret");
        let mode = default_mode(source.default_mode, &at, problem);
        let name = source.secret_name.clone().unwrap_or_default();
        store_files(
            Store::Secret,
            &name,
            source.items.as_deref(),
            source.optional.unwrap_or(false),
            mode,
            &at,
            context,
            &mut files,
            problem,
        );
    } else if let Some(source) = &volume.downward_api {
        let at = format!("{at}.downwardAPI");
        let mode = default_mode(source.default_mode, &at, problem);
        downward_files(
            source.items.iter().flatten(),
            mode,
            &at,
            context,
            &mut files,
            problem,
        );
    } else if let Some(projected) = &volume.projected {
        let at = format!("{at}.projected");
        let mode = default_mode(projected.default_mode, &at, problem);
        for (index, source) in projected.sources.iter().flatten().enumerate() {
            let at = format!("{at}.sources[{index}]");
            if let Some(map) = &source.config_map {
                store_files(
                    Store::ConfigMap,
                    &map.name,
                    map.items.as_deref(),
                    map.optional.unwrap_or(false),
                    mode,
                    &format!("{at}.configMap"),
                    context,
                    &mut files,
                    problem,
                );
            }
            if let Some(secret) = &source.secret {
                store_files(
                    Store::Secret,
                    &secret.name,
                    secret.items.as_deref(),
                    secret.optional.unwrap_or(false),
                    mode,
                    &format!("{at}.secret"),
                    context,
                    &mut files,
                    problem,
                );
            }
            if let Some(downward) = &source.downward_api {
                downward_files(
                    downward.items.iter().flatten(),
                    mode,
                    &format!("{at}.downwardAPI"),
                    context,
                    &mut files,
                    problem,
                );
            }
        }
    } else {
        return None;
    }
    // One volume, one name per file (projected sources may not overlap).
    let mut seen = std::collections::HashSet::new();
    for file in &files {
        if !seen.insert(file.path.clone()) {
            problem(
                at,
                format!(
                    "two of its files are at `{}`; give each its own path",
                    file.path
                ),
            );
        }
    }
    Some(VolumeSource::Files(files))
}

/// `defaultMode`, checked: permission bits, `0` to `0777`.
fn default_mode(mode: Option<i32>, at: &str, problem: &mut impl FnMut(&str, String)) -> u32 {
    file_mode(
        mode.unwrap_or(DEFAULT_MODE),
        &format!("{at}.defaultMode"),
        problem,
    )
}

fn file_mode(mode: i32, at: &str, problem: &mut impl FnMut(&str, String)) -> u32 {
    if (0..=0o777).contains(&mode) {
        mode as u32
    } else {
        problem(
            at,
            format!("{mode} is not a file mode: give permission bits from 0 to 0777 (511)"),
        );
        DEFAULT_MODE as u32
    }
}

/// A file path inside a volume: relative, no `..`.
fn check_file_path(path: &str, at: &str, problem: &mut impl FnMut(&str, String)) -> bool {
    let valid = !path.is_empty()
        && !path.starts_with('/')
        && !Path::new(path)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if !valid {
        problem(
            at,
            format!("`{path}` must be a relative path inside the volume, without `..`"),
        );
    }
    valid
}

/// The files of a ConfigMap or Secret: every key, or the `items` chosen.
#[allow(clippy::too_many_arguments)]
fn store_files(
    store: Store,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: u32,
    at: &str,
    context: &Context,
    files: &mut Vec<ProjectedFile>,
    problem: &mut impl FnMut(&str, String),
) {
    let name_field = match store {
        Store::Secret if at.ends_with(".secret") && !at.contains(".sources[") => "secretName",
        _ => "name",
    };
    let _ = name_field;
    let data = match store.lookup(context.config, context.namespace, name, optional) {
        Ok(Some(data)) => data,
        Ok(None) => return,
        Err(why) => {
            context.miss(why);
            return;
        }
    };
    match items {
        None => {
            for (key, value) in data {
                files.push(ProjectedFile {
                    path: key.clone(),
                    content: FileContent::Bytes(value.clone()),
                    mode,
                });
            }
        }
        Some(items) => {
            for (index, item) in items.iter().enumerate() {
                let at = format!("{at}.items[{index}]");
                let Some(value) = data.get(&item.key) else {
                    if !optional {
                        context.miss(format!(
                            "{} `{name}` has no key `{}` (it has: {}), which {at}.key needs",
                            store.kind(),
                            item.key,
                            keys(data)
                        ));
                    }
                    continue;
                };
                if !check_file_path(&item.path, &format!("{at}.path"), problem) {
                    continue;
                }
                let mode = match item.mode {
                    Some(mode) => file_mode(mode, &format!("{at}.mode"), problem),
                    None => mode,
                };
                files.push(ProjectedFile {
                    path: item.path.clone(),
                    content: FileContent::Bytes(value.clone()),
                    mode,
                });
            }
        }
    }
}

fn keys(data: &BTreeMap<String, Vec<u8>>) -> String {
    if data.is_empty() {
        return "no keys".into();
    }
    data.keys()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files of a `downwardAPI` volume (or projected source).
fn downward_files<'f>(
    items: impl Iterator<Item = &'f DownwardAPIVolumeFile>,
    mode: u32,
    at: &str,
    context: &Context,
    files: &mut Vec<ProjectedFile>,
    problem: &mut impl FnMut(&str, String),
) {
    for (index, item) in items.enumerate() {
        let at = format!("{at}.items[{index}]");
        if !check_file_path(&item.path, &format!("{at}.path"), problem) {
            continue;
        }
        let content = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => {
                match pod_field(field, &format!("{at}.fieldRef.fieldPath"), context, true) {
                    Ok(content) => content,
                    Err((path, why)) => {
                        problem(&path, why);
                        continue;
                    }
                }
            }
            (None, Some(resource)) => {
                let containers = &context.pod.spec.as_ref().map(|s| &s.containers);
                let named = containers.and_then(|all| {
                    all.iter()
                        .find(|c| Some(&c.name) == resource.container_name.as_ref())
                });
                let Some(container) = named else {
                    problem(
                        &format!("{at}.resourceFieldRef.containerName"),
                        format!(
                            "no container `{}` in the pod: a volume's resourceFieldRef names \
                             the container whose resources it shows",
                            resource.container_name.clone().unwrap_or_default()
                        ),
                    );
                    continue;
                };
                match resource_value(container, resource) {
                    Ok(value) => FileContent::Bytes(value.into_bytes()),
                    Err((field, why)) => {
                        problem(&format!("{at}.resourceFieldRef.{field}"), why);
                        continue;
                    }
                }
            }
            _ => {
                problem(&at, "give one of `fieldRef` and `resourceFieldRef`".into());
                continue;
            }
        };
        let mode = match item.mode {
            Some(mode) => file_mode(mode, &format!("{at}.mode"), problem),
            None => mode,
        };
        files.push(ProjectedFile {
            path: item.path.clone(),
            content,
            mode,
        });
    }
}

/// A pod field of the downward API, as an environment variable (`in_volume: false`) or a file
/// shows it. Labels and annotations are known from the manifest; the uid and the node only when
/// the pod starts.
pub(super) fn pod_field(
    field: &ObjectFieldSelector,
    at: &str,
    context: &Context,
    in_volume: bool,
) -> Result<FileContent, (String, String)> {
    let metadata = &context.pod.metadata;
    let path = field.field_path.as_str();
    let bytes = |text: String| Ok(FileContent::Bytes(text.into_bytes()));
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(str::to_string)
    };
    match path {
        "metadata.name" => Ok(FileContent::Field(PodField::Name)),
        "metadata.namespace" => Ok(FileContent::Field(PodField::Namespace)),
        "metadata.uid" => Ok(FileContent::Field(PodField::Uid)),
        "spec.nodeName" if !in_volume => Ok(FileContent::Field(PodField::NodeName)),
        "status.podIP" | "status.hostIP" | "status.podIPs" | "status.hostIPs" if !in_volume => {
            Ok(FileContent::Field(PodField::PodIp))
        }
        "spec.serviceAccountName" if !in_volume => bytes(
            context
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        "metadata.labels" if in_volume => bytes(pairs(metadata.labels.as_ref())),
        "metadata.annotations" if in_volume => bytes(pairs(metadata.annotations.as_ref())),
        _ => {
            let label = keyed("metadata.labels['")
                .map(|key| metadata.labels.as_ref().and_then(|l| l.get(&key)).cloned());
            let annotation = keyed("metadata.annotations['").map(|key| {
                metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
            });
            match label.or(annotation) {
                Some(value) => bytes(value.unwrap_or_default()),
                None => Err((
                    at.to_string(),
                    format!(
                        "`{path}` is not supported; wasmlet provides metadata.name, \
                         metadata.namespace, metadata.uid, metadata.labels['KEY'] and \
                         metadata.annotations['KEY']{}",
                        if in_volume {
                            ", metadata.labels and metadata.annotations"
                        } else {
                            ", spec.nodeName, spec.serviceAccountName, status.podIP and \
                             status.hostIP"
                        }
                    ),
                )),
            }
        }
    }
}

/// Labels or annotations as the kubelet writes them: `key="value"`, one a line, by key.
fn pairs(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value:?}\n"))
        .collect()
}

/// `resourceFieldRef`: a container's request or limit, in units of `divisor`, rounded up; an
/// unset limit is the node's capacity (its cores, its memory), as in Kubernetes. The error
/// names the field at fault.
pub(super) fn resource_value(
    container: &Container,
    selector: &ResourceFieldSelector,
) -> Result<String, (&'static str, String)> {
    let resources = container.resources.as_ref();
    let quantity =
        |map: Option<
            &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
         name: &str| { map.and_then(|m| m.get(name)).map(|q| q.0.clone()) };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let (value, cpu) = match selector.resource.as_str() {
        "limits.cpu" => (
            match quantity(limits, "cpu") {
                Some(q) => parse_quantity(&q).map_err(|why| ("resource", why))?,
                None => node_cores(),
            },
            true,
        ),
        "requests.cpu" => (
            match quantity(requests, "cpu").or_else(|| quantity(limits, "cpu")) {
                Some(q) => parse_quantity(&q).map_err(|why| ("resource", why))?,
                None => 0.0,
            },
            true,
        ),
        "limits.memory" => (
            match quantity(limits, "memory") {
                Some(q) => parse_memory(&q).map_err(|why| ("resource", why))? as f64,
                None => node_memory(),
            },
            false,
        ),
        "requests.memory" => (
            match quantity(requests, "memory").or_else(|| quantity(limits, "memory")) {
                Some(q) => parse_memory(&q).map_err(|why| ("resource", why))? as f64,
                None => 0.0,
            },
            false,
        ),
        other => {
            return Err((
                "resource",
                format!(
                    "`{other}` is not supported; wasmlet provides limits.cpu, requests.cpu, \
                     limits.memory and requests.memory"
                ),
            ));
        }
    };
    let divisor = match selector.divisor.as_ref() {
        None => 1.0,
        Some(divisor) => match parse_quantity(&divisor.0) {
            Ok(d) if d > 0.0 => d,
            _ => {
                return Err((
                    "divisor",
                    format!(
                        "`{}` is not a divisor; give a positive quantity such as `1`, `1m` \
                         (CPU) or `1Mi` (memory)",
                        divisor.0
                    ),
                ));
            }
        },
    };
    // Kubernetes rounds up, and shows at least 1 for a CPU amount above 0.
    let units = (value / divisor).ceil();
    let units = if cpu && value > 0.0 {
        units.max(1.0)
    } else {
        units
    };
    Ok(format!("{}", units as u64))
}

/// The node's cores, for an unset CPU limit.
fn node_cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The node's memory in bytes, for an unset memory limit (`MemTotal` of `/proc/meminfo`).
fn node_memory() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024.0)
        })
        .unwrap_or(0.0)
}

/// The variables of a container's `envFrom`, in order: every key of each ConfigMap or Secret
/// that is a valid variable name, with its `prefix`.
pub(super) fn env_from(
    sources: &[EnvFromSource],
    at: &str,
    context: &Context,
    problem: &mut impl FnMut(String, String),
) -> Vec<(String, EnvValue)> {
    let mut env = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let at = format!("{at}.envFrom[{index}]");
        let (store, name, optional, field) = match (&source.config_map_ref, &source.secret_ref) {
            (Some(map), None) => (
                Store::ConfigMap,
                &map.name,
                map.optional.unwrap_or(false),
                "configMapRef",
            ),
            (None, Some(secret)) => (
                Store::Secret,
                &secret.name,
                secret.optional.unwrap_or(false),
                "secretRef",
            ),
            _ => {
                problem(at, "give one of `configMapRef` and `secretRef`".into());
                continue;
            }
        };
        let data = match store.lookup(context.config, context.namespace, name, optional) {
            Ok(Some(data)) => data,
            Ok(None) => continue,
            Err(why) => {
                context.miss(why);
                continue;
            }
        };
        let prefix = source.prefix.clone().unwrap_or_default();
        for (key, value) in data {
            let name = format!("{prefix}{key}");
            // As the kubelet: keys that are not variable names are skipped.
            if !valid_env_name(&name) {
                continue;
            }
            match String::from_utf8(value.clone()) {
                Ok(value) => env.push((name, EnvValue::Resolved(value))),
                Err(_) => problem(
                    format!("{at}.{field}.name"),
                    format!(
                        "the value of `{key}` in {} `{}` is not UTF-8 text, so it cannot be an \
                         environment variable; mount it as a file instead",
                        store.kind(),
                        context.namespace.to_string() + "/" + name.as_str()
                    ),
                ),
            }
        }
    }
    env
}

/// `configMapKeyRef` or `secretKeyRef`: the value, `None` when an optional one is missing.
pub(super) fn key_ref(
    secret: bool,
    name: &str,
    key: &str,
    optional: bool,
    context: &Context,
) -> Result<Option<String>, (&'static str, String)> {
    let store = if secret {
        Store::Secret
    } else {
        Store::ConfigMap
    };
    let data = match store.lookup(context.config, context.namespace, name, optional) {
        Ok(Some(data)) => data,
        Ok(None) => return Ok(None),
        Err(why) => {
            context.miss(why);
            return Ok(None);
        }
    };
    match data.get(key) {
        Some(value) => String::from_utf8(value.clone()).map(Some).map_err(|_| {
            (
                "key",
                format!(
                    "the value of `{key}` in {} `{name}` is not UTF-8 text, so it cannot be an \
                     environment variable; mount it as a file instead",
                    store.kind()
                ),
            )
        }),
        None => {
            if !optional {
                context.miss(format!(
                    "{} `{name}` has no key `{key}` (it has: {})",
                    store.kind(),
                    keys(data)
                ));
            }
            Ok(None)
        }
    }
}

/// A C identifier-like environment variable name, as Kubernetes requires of `envFrom` keys:
/// letters, digits, `_`, `-` and `.`, not starting with a digit.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
