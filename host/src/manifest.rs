//! Pod manifests: Kubernetes `Pod` YAML (parsed with `k8s-openapi` types) turned into a
//! validated [`PodSpec`] that wasmlet can run.
//!
//! `image` is a path to a component, relative to the manifest. Every field wasmlet does not
//! support is an error naming its path — never silently ignored — and every problem in a
//! manifest is reported at once, so a user fixes them in one pass.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The grace period when neither the manifest nor the caller sets one (Kubernetes' default).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// A pod wasmlet can run: validated, with every path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `metadata.uid`, if the manifest gives one; otherwise the pod gets one when it starts.
    pub uid: Option<String>,
    /// `spec.terminationGracePeriodSeconds`; `None` means the host's default (30 s).
    pub termination_grace_period: Option<Duration>,
    /// `spec.restartPolicy`: `Always` when absent, as in Kubernetes.
    pub restart_policy: RestartPolicy,
    /// `spec.volumes`.
    pub volumes: Vec<VolumeSpec>,
    /// `spec.initContainers`, in order: each runs to completion before the next starts, except
    /// sidecars, which start and keep running beside the app containers.
    pub init_containers: Vec<ContainerSpec>,
    /// `spec.containers`, in order.
    pub containers: Vec<ContainerSpec>,
}

/// One container of a [`PodSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// `name`.
    pub name: String,
    /// `image`, resolved to a component file.
    pub image: PathBuf,
    /// `command`: the start of the component's argv (`argv[0]` first); empty means the
    /// container's name alone. The component is always `image`: there is no other entrypoint.
    pub command: Vec<String>,
    /// `args`: passed to the component after `command` (or after its name).
    pub args: Vec<String>,
    /// `env`, in order.
    pub env: Vec<(String, EnvValue)>,
    /// `workingDir`: the guest's initial working directory (absolute).
    pub working_dir: Option<String>,
    /// `volumeMounts`: the pod volumes this container sees, and where.
    pub volume_mounts: Vec<VolumeMount>,
    /// `resources.limits.memory` in bytes: all instances of the container together.
    pub memory_limit: Option<u64>,
    /// `resources.requests.memory` in bytes. It reserves nothing; it only decides the pod's
    /// `qosClass`.
    pub memory_request: Option<u64>,
    /// `lifecycle.postStart`.
    pub post_start: Option<Handler>,
    /// `lifecycle.preStop`.
    pub pre_stop: Option<Handler>,
    /// `ports[]` (TCP): where the container serves HTTP if its component exports
    /// `wasi:http/incoming-handler`.
    pub ports: Vec<PortSpec>,
    /// `livenessProbe`: failing it kills the container, which then restarts per restartPolicy.
    pub liveness_probe: Option<Probe>,
    /// `readinessProbe`: the container's `ready`, which gates its HTTP traffic.
    pub readiness_probe: Option<Probe>,
    /// `startupProbe`: liveness and readiness probes wait until it succeeds.
    pub startup_probe: Option<Probe>,
    /// An init container with `restartPolicy: Always`: a sidecar, started before the app
    /// containers, restarted whenever it ends, and stopped after them.
    pub sidecar: bool,
}

/// A port of a container (`ports[]`); always TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `name`, which probes and hooks may use instead of the number.
    pub name: Option<String>,
    /// `containerPort`.
    pub port: u16,
}

/// An `httpGet` action, of a hook or a probe: `GET http://host:port/path` with `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// `host`; `None` means the pod itself (its containers' listeners).
    pub host: Option<String>,
    /// `port`, resolved to a number (a name refers to the container's `ports[]`).
    pub port: u16,
    /// `path`, `/` when absent.
    pub path: String,
    /// `httpHeaders`, in order.
    pub headers: Vec<(String, String)>,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// `exec`: succeeds when the command exits 0 (run as an `exec` hook is).
    Exec {
        /// The `command` as written.
        command: Vec<String>,
        /// What runs it, from `command[0]`.
        target: ExecTarget,
    },
    /// `httpGet`: succeeds on a status from 200 to 399.
    HttpGet(HttpGet),
    /// `tcpSocket`: succeeds when a TCP connection opens.
    TcpSocket {
        /// `host`; `None` means the pod itself.
        host: Option<String>,
        /// `port`, resolved to a number.
        port: u16,
    },
}

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `startupProbe`: holds the other two back until it succeeds.
    Startup,
    /// `livenessProbe`: failing it restarts the container.
    Liveness,
    /// `readinessProbe`: decides `ready`.
    Readiness,
}

impl ProbeKind {
    /// `startup`, `liveness` or `readiness`, as in the manifest's field names.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }

    /// `Startup`, `Liveness` or `Readiness`, as Kubernetes' events begin.
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A liveness, readiness or startup probe, with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What it checks.
    pub action: ProbeAction,
    /// `initialDelaySeconds` (default 0): the wait after the container starts.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10 s).
    pub period: Duration,
    /// `timeoutSeconds` (default 1 s): a check that takes longer fails.
    pub timeout: Duration,
    /// `successThreshold` (default 1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` (liveness and startup only): the grace period of the
    /// kill that a failure causes, instead of the pod's.
    pub termination_grace_period: Option<Duration>,
}

impl ContainerSpec {
    /// The ports the container listens on when its component serves HTTP: its `ports[]`; if it
    /// declares none, the ports its own hooks and probes reach on the pod (in Kubernetes those
    /// reach the app, so the app must listen there — the seed's preStop `httpGet :8080` relies
    /// on it).
    pub fn listen_ports(&self) -> Vec<u16> {
        if !self.ports.is_empty() {
            return self.ports.iter().map(|port| port.port).collect();
        }
        let mut ports = Vec::new();
        let hooks = [&self.post_start, &self.pre_stop]
            .into_iter()
            .flatten()
            .filter_map(|handler| match handler {
                Handler::HttpGet(get) if get.host.is_none() => Some(get.port),
                _ => None,
            });
        let probes = [
            &self.liveness_probe,
            &self.readiness_probe,
            &self.startup_probe,
        ]
        .into_iter()
        .flatten()
        .filter_map(|probe| match &probe.action {
            ProbeAction::HttpGet(get) if get.host.is_none() => Some(get.port),
            ProbeAction::TcpSocket { host: None, port } => Some(*port),
            _ => None,
        });
        for port in hooks.chain(probes) {
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        ports
    }

    /// The probes, with their kinds.
    pub fn probes(&self) -> impl Iterator<Item = (ProbeKind, &Probe)> {
        [
            (ProbeKind::Startup, &self.startup_probe),
            (ProbeKind::Liveness, &self.liveness_probe),
            (ProbeKind::Readiness, &self.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(kind, probe)| Some((kind, probe.as_ref()?)))
    }
}

/// A pod volume (`spec.volumes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Its name, which mounts refer to.
    pub name: String,
    /// What backs it.
    pub source: VolumeSource,
}

/// What backs a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// `emptyDir`: a directory made when the pod starts, shared by its containers, removed
    /// when the pod ends.
    EmptyDir,
    /// `hostPath`: a directory of the host (absolute, or relative to the manifest).
    HostPath {
        /// The directory, resolved.
        path: PathBuf,
        /// `type: DirectoryOrCreate`: made if missing (otherwise it must exist).
        create: bool,
    },
}

/// A volume mounted into a container (`volumeMounts[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name.
    pub volume: String,
    /// Where the guest sees it (absolute).
    pub mount_path: String,
    /// Read-only for this container.
    pub read_only: bool,
    /// A directory inside the volume to mount instead of its root (relative, no `..`).
    pub sub_path: Option<String>,
}

/// What runs an `exec` handler's command. `command[0]` is looked up in this order:
/// 1. `sh`, `/bin/sh`, `/usr/bin/sh`: wasmlet's bundled shell (`sh -c "…"`);
/// 2. a path to a component file, relative to the manifest: that command component;
/// 3. anything else: the container's own component, with `command` as its argv (an app that
///    handles its own subcommands, such as `["app", "flush-cache"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecTarget {
    /// wasmlet's bundled shell.
    Shell,
    /// A command component, resolved.
    Component(PathBuf),
    /// The container's own component.
    Container,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// `value`: literal text, in which `$(NAME)` refers to a variable defined before it.
    Value(String),
    /// `valueFrom.fieldRef`: a field of the pod.
    Field(PodField),
}

/// The pod fields an environment variable can take its value from (the downward API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodField {
    /// `metadata.name`.
    Name,
    /// `metadata.namespace`.
    Namespace,
    /// `metadata.uid`.
    Uid,
    /// `spec.nodeName`: the host's node name.
    NodeName,
}

/// When a container that ended is started again (`spec.restartPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Whenever it ends (Kubernetes' default).
    #[default]
    Always,
    /// When it ends with a failure (not `Completed`).
    OnFailure,
    /// Never: it runs once.
    Never,
}

impl RestartPolicy {
    /// Whether a container that ended as `completed` (exit 0, reason `Completed`) or not is
    /// started again.
    pub fn restarts(self, completed: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !completed,
            RestartPolicy::Never => false,
        }
    }
}

/// A lifecycle hook handler from the manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    /// `exec`: runs `command` inside the container, as an instance of its own with the
    /// container's env, `/tmp` and volumes; `command` is its whole argv.
    Exec {
        /// The `command` as written.
        command: Vec<String>,
        /// What runs it, from `command[0]`.
        target: ExecTarget,
    },
    /// `sleep`: waits, cancelled when the container ends or the grace period runs out.
    Sleep(Duration),
    /// `httpGet`: one request; only a transport error fails the hook (the status is recorded in
    /// an event), as in Kubernetes.
    HttpGet(HttpGet),
}

/// Everything wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file (or `<inline>`).
    pub file: String,
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

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "invalid pod manifest `{}` ({count} problem{}):",
            self.file,
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

/// Fields wasmlet runs as Kubernetes does. `[]` stands for any list index, `*` for any map key.
const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels.*",
    "metadata.annotations.*",
    "spec.terminationGracePeriodSeconds",
    "spec.restartPolicy",
    "spec.initContainers",
    "spec.volumes[].name",
    "spec.volumes[].emptyDir",
    "spec.volumes[].hostPath.path",
    "spec.volumes[].hostPath.type",
    "spec.containers[].volumeMounts[].name",
    "spec.containers[].volumeMounts[].mountPath",
    "spec.containers[].volumeMounts[].readOnly",
    "spec.containers[].volumeMounts[].subPath",
    "spec.containers[].restartPolicy",
    "spec.containers[].name",
    "spec.containers[].image",
    "spec.containers[].imagePullPolicy",
    "spec.containers[].command[]",
    "spec.containers[].args[]",
    "spec.containers[].workingDir",
    "spec.containers[].env[].name",
    "spec.containers[].env[].value",
    "spec.containers[].env[].valueFrom.fieldRef.fieldPath",
    "spec.containers[].env[].valueFrom.fieldRef.apiVersion",
    "spec.containers[].resources.limits.memory",
    "spec.containers[].resources.requests.memory",
    "spec.containers[].lifecycle.hook.exec.command[]",
    "spec.containers[].lifecycle.hook.sleep.seconds",
    "spec.containers[].lifecycle.hook.httpGet.host",
    "spec.containers[].lifecycle.hook.httpGet.port",
    "spec.containers[].lifecycle.hook.httpGet.path",
    "spec.containers[].lifecycle.hook.httpGet.scheme",
    "spec.containers[].lifecycle.hook.httpGet.httpHeaders[].name",
    "spec.containers[].lifecycle.hook.httpGet.httpHeaders[].value",
    "spec.containers[].ports[].containerPort",
    "spec.containers[].ports[].name",
    "spec.containers[].ports[].protocol",
    // `hook` stands for postStart and preStop; `probe` for livenessProbe, readinessProbe and
    // startupProbe.
    "spec.containers[].probe.exec.command[]",
    "spec.containers[].probe.httpGet.host",
    "spec.containers[].probe.httpGet.port",
    "spec.containers[].probe.httpGet.path",
    "spec.containers[].probe.httpGet.scheme",
    "spec.containers[].probe.httpGet.httpHeaders[].name",
    "spec.containers[].probe.httpGet.httpHeaders[].value",
    "spec.containers[].probe.tcpSocket.host",
    "spec.containers[].probe.tcpSocket.port",
    "spec.containers[].probe.initialDelaySeconds",
    "spec.containers[].probe.periodSeconds",
    "spec.containers[].probe.timeoutSeconds",
    "spec.containers[].probe.successThreshold",
    "spec.containers[].probe.failureThreshold",
    "spec.containers[].probe.terminationGracePeriodSeconds",
];

/// Fields with a message of their own instead of the generic "not supported".
const EXPLAINED: &[(&str, &str)] = &[
    (
        "spec.containers[].lifecycle.hook.tcpSocket",
        "deprecated, not supported (Kubernetes rejects it too); use exec, httpGet or sleep",
    ),
    (
        "spec.containers[].probe.grpc",
        "not supported: wasmlet has no gRPC health checking; use httpGet, tcpSocket or exec",
    ),
    (
        "spec.containers[].ports[].hostPort",
        "not supported: every containerPort is already a port of the host (wasmlet binds it on \
         127.0.0.1, or the host's configured address); drop `hostPort`",
    ),
    (
        "spec.containers[].ports[].hostIP",
        "not supported: the host chooses the address its pods listen on (`wasmlet run \
         --address`); drop `hostIP`",
    ),
    (
        "spec.containers[].resources.limits.cpu",
        "not supported: wasmlet time-slices guests fairly but does not cap CPU",
    ),
    (
        "spec.containers[].resources.requests.cpu",
        "not supported: wasmlet time-slices guests fairly but does not reserve CPU",
    ),
    (
        "spec.containers[].env[].valueFrom.secretKeyRef",
        "not supported: wasmlet has no Secrets; give a literal `value`",
    ),
    (
        "spec.containers[].env[].valueFrom.configMapKeyRef",
        "not supported: wasmlet has no ConfigMaps; give a literal `value`",
    ),
    (
        "spec.containers[].env[].valueFrom.resourceFieldRef",
        "not supported: wasmlet reserves no CPU and sets limits itself; give a literal `value`",
    ),
    (
        "spec.volumes[].emptyDir.medium",
        "not supported: an emptyDir is a directory on the host's disk (no tmpfs); drop `medium`",
    ),
    (
        "spec.volumes[].emptyDir.sizeLimit",
        "not supported: wasmlet does not limit a volume's size; drop `sizeLimit`",
    ),
    (
        "spec.volumes[].configMap",
        "not supported: wasmlet has no ConfigMaps; put the files in a hostPath directory",
    ),
    (
        "spec.volumes[].secret",
        "not supported: wasmlet has no Secrets; put the files in a hostPath directory",
    ),
    (
        "spec.volumes[].persistentVolumeClaim",
        "not supported: wasmlet has no persistent volumes; use a hostPath directory",
    ),
    (
        "spec.containers[].volumeMounts[].subPathExpr",
        "not supported: give a fixed `subPath`",
    ),
    (
        "spec.containers[].envFrom",
        "not supported: wasmlet has no ConfigMaps or Secrets; list the variables in `env`",
    ),
];

impl PodSpec {
    /// Reads and validates a Pod manifest file. Relative paths in it (`image`, exec
    /// `command[0]`) are resolved against the file's directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<PodSpec, ManifestError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError {
            file: file.clone(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("cannot read the file: {error}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, base, &file)
    }

    /// Validates Pod YAML; `base` is the directory relative paths are resolved against and
    /// `file` the name errors give it.
    pub fn from_yaml(text: &str, base: &Path, file: &str) -> Result<PodSpec, ManifestError> {
        let error = |problems| ManifestError {
            file: file.to_string(),
            problems,
        };
        let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            error(vec![Problem {
                path: String::new(),
                message: format!("not valid YAML: {e}"),
            }])
        })?;
        let mut problems = Vec::new();
        if !document.is_mapping() {
            problems.push(Problem {
                path: String::new(),
                message:
                    "expected a Pod object (a YAML mapping with apiVersion, kind, metadata, spec)"
                        .into(),
            });
            return Err(error(problems));
        }
        let pod: Pod = match serde_path_to_error::deserialize(document.clone()) {
            Ok(pod) => pod,
            Err(e) => {
                problems.push(Problem {
                    path: display_path(&e.path().to_string()),
                    message: e.inner().to_string(),
                });
                return Err(error(problems));
            }
        };
        let known = serde_yaml::to_value(&pod).unwrap_or(serde_yaml::Value::Null);
        check_fields(&document, &known, &mut Vec::new(), &mut problems);
        match Self::from_pod(&pod, base) {
            Ok(spec) if problems.is_empty() => Ok(spec),
            Ok(_) => Err(error(problems)),
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
                Err(error(problems))
            }
        }
    }

    /// Validates a Pod given as `k8s-openapi` types (for embedders that build one in code).
    /// Fields wasmlet does not look at are not checked here; [`PodSpec::from_yaml`] checks them.
    pub fn from_pod(pod: &Pod, base: &Path) -> Result<PodSpec, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| {
            problems.push(Problem {
                path: path.to_string(),
                message,
            })
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            problem("metadata.name", "required: the pod's name".into());
        } else if let Err(why) = check_dns_subdomain(&name) {
            problem("metadata.name", why);
        }
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let uid = pod.metadata.uid.clone();
        let Some(spec) = &pod.spec else {
            problem(
                "spec",
                "required: the pod's spec with its containers".into(),
            );
            return Err(problems);
        };
        let grace = match spec.termination_grace_period_seconds {
            None => None,
            Some(seconds) if seconds < 0 => {
                problem(
                    "spec.terminationGracePeriodSeconds",
                    format!("must be 0 or more seconds, got {seconds}"),
                );
                None
            }
            Some(seconds) => Some(Duration::from_secs(seconds as u64)),
        };
        let restart_policy = match spec.restart_policy.as_deref() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(other) => {
                problem(
                    "spec.restartPolicy",
                    format!(
                        "`{other}` is not a restart policy; expected Always, OnFailure or Never"
                    ),
                );
                RestartPolicy::Always
            }
        };
        if spec.containers.is_empty() {
            problem(
                "spec.containers",
                "a pod needs at least one container".into(),
            );
        }
        let volumes = volume_specs(spec.volumes.iter().flatten(), base, &mut problem);
        let mut names = HashSet::new();
        let mut init_containers = Vec::new();
        let mut containers = Vec::new();
        let mut container_problems = Vec::new();
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, c)| (true, format!("spec.initContainers[{index}]"), c))
            .chain(
                spec.containers
                    .iter()
                    .enumerate()
                    .map(|(index, c)| (false, format!("spec.containers[{index}]"), c)),
            );
        for (init, at, container) in all {
            if !names.insert(container.name.clone()) {
                problem(
                    &format!("{at}.name"),
                    format!(
                        "duplicate container name `{}` (names are unique across containers and \
                         initContainers)",
                        container.name
                    ),
                );
            }
            let sidecar = match (init, container.restart_policy.as_deref()) {
                (_, None) => false,
                (true, Some("Always")) => true,
                (true, Some(other)) => {
                    problem(
                        &format!("{at}.restartPolicy"),
                        format!(
                            "`{other}` is not allowed: an init container's restartPolicy can \
                             only be `Always`, which makes it a sidecar"
                        ),
                    );
                    false
                }
                (false, Some(_)) => {
                    problem(
                        &format!("{at}.restartPolicy"),
                        "only init containers may set restartPolicy (`Always` makes one a \
                         sidecar); app containers follow spec.restartPolicy"
                            .into(),
                    );
                    false
                }
            };
            if init && !sidecar && container.lifecycle.is_some() {
                problem(
                    &format!("{at}.lifecycle"),
                    "an init container may not have lifecycle hooks unless it is a sidecar \
                     (restartPolicy: Always), as in Kubernetes"
                        .into(),
                );
            }
            // As the API server's `validateInitContainers` (pkg/apis/core/validation): only
            // a sidecar is probed; a plain init container runs to completion.
            if init && !sidecar {
                for (field, probe) in [
                    ("livenessProbe", &container.liveness_probe),
                    ("readinessProbe", &container.readiness_probe),
                    ("startupProbe", &container.startup_probe),
                ] {
                    if probe.is_some() {
                        problem(
                            &format!("{at}.{field}"),
                            "may not be set for init containers without restartPolicy=Always"
                                .into(),
                        );
                    }
                }
            }
            let grace = grace.unwrap_or(DEFAULT_GRACE_PERIOD);
            match container_spec(container, &at, base, grace, &volumes) {
                Ok(mut spec) => {
                    spec.sidecar = sidecar;
                    if init {
                        init_containers.push(spec);
                    } else {
                        containers.push(spec);
                    }
                }
                Err(more) => container_problems.extend(more),
            }
        }
        problems.extend(container_problems);
        // The containers of a pod share its ports, as they share a pod's network in Kubernetes.
        let mut claimed: Vec<(u16, &str)> = Vec::new();
        for (index, container) in init_containers.iter().chain(&containers).enumerate() {
            for port in container.ports.iter().map(|port| port.port) {
                match claimed.iter().find(|(p, _)| *p == port) {
                    Some((_, owner)) => problems.push(Problem {
                        path: if index < init_containers.len() {
                            format!("spec.initContainers[{index}].ports")
                        } else {
                            format!("spec.containers[{}].ports", index - init_containers.len())
                        },
                        message: format!(
                            "port {port} is already served by container `{owner}`; the \
                             containers of a pod share its ports"
                        ),
                    }),
                    None => claimed.push((port, &container.name)),
                }
            }
        }
        if problems.is_empty() {
            Ok(PodSpec {
                name,
                namespace,
                uid,
                termination_grace_period: grace,
                restart_policy,
                volumes,
                init_containers,
                containers,
            })
        } else {
            Err(problems)
        }
    }

    /// A pod of one container running the component at `path` with `args`, once
    /// (`restartPolicy: Never`): what `wasmlet run component.wasm` runs. The pod and container
    /// are named after the file.
    pub fn for_component(path: impl AsRef<Path>, args: Vec<String>) -> PodSpec {
        let path = path.as_ref();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut name: String = stem
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .collect();
        name = name.trim_matches('-').to_string();
        if name.is_empty() {
            name = "app".into();
        }
        PodSpec {
            name: name.clone(),
            namespace: "default".into(),
            uid: None,
            termination_grace_period: None,
            restart_policy: RestartPolicy::Never,
            volumes: Vec::new(),
            init_containers: Vec::new(),
            containers: vec![ContainerSpec {
                name,
                image: path.to_path_buf(),
                command: Vec::new(),
                args,
                env: Vec::new(),
                working_dir: None,
                volume_mounts: Vec::new(),
                memory_limit: None,
                memory_request: None,
                post_start: None,
                pre_stop: None,
                ports: Vec::new(),
                liveness_probe: None,
                readiness_probe: None,
                startup_probe: None,
                sidecar: false,
            }],
        }
    }
}

/// The pod's volumes, checked: names, one supported source each, hostPath directories.
fn volume_specs<'v>(
    volumes: impl Iterator<Item = &'v k8s_openapi::api::core::v1::Volume>,
    base: &Path,
    problem: &mut impl FnMut(&str, String),
) -> Vec<VolumeSpec> {
    let mut specs = Vec::new();
    let mut names = HashSet::new();
    for (index, volume) in volumes.enumerate() {
        let at = format!("spec.volumes[{index}]");
        if let Err(why) = check_dns_label(&volume.name) {
            problem(&format!("{at}.name"), why);
        } else if !names.insert(volume.name.clone()) {
            problem(
                &format!("{at}.name"),
                format!("duplicate volume name `{}`", volume.name),
            );
        }
        let source = match (&volume.empty_dir, &volume.host_path) {
            (Some(_), Some(_)) => {
                problem(
                    &at,
                    "give one source: emptyDir or hostPath, not both".into(),
                );
                continue;
            }
            (Some(_), None) => VolumeSource::EmptyDir,
            (None, Some(host)) => {
                let create = match host.type_.as_deref() {
                    None | Some("") | Some("Directory") => false,
                    Some("DirectoryOrCreate") => true,
                    Some(other) => {
                        problem(
                            &format!("{at}.hostPath.type"),
                            format!(
                                "`{other}` is not supported: wasmlet mounts directories; use \
                                 Directory or DirectoryOrCreate"
                            ),
                        );
                        continue;
                    }
                };
                let path = lexically_normal(&base.join(&host.path));
                if !create && !path.is_dir() {
                    problem(
                        &format!("{at}.hostPath.path"),
                        format!(
                            "`{}` is not a directory (looked for `{}`); set `type: \
                             DirectoryOrCreate` to have it made",
                            host.path,
                            path.display()
                        ),
                    );
                }
                VolumeSource::HostPath { path, create }
            }
            (None, None) => {
                // A source wasmlet does not support was reported by the field check already.
                let other_source = serde_json::to_value(volume)
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.len() > 1))
                    .unwrap_or(false);
                if !other_source {
                    problem(&at, "needs a source: emptyDir or hostPath".into());
                }
                continue;
            }
        };
        specs.push(VolumeSpec {
            name: volume.name.clone(),
            source,
        });
    }
    specs
}

fn container_spec(
    container: &Container,
    at: &str,
    base: &Path,
    grace: Duration,
    volumes: &[VolumeSpec],
) -> Result<ContainerSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    if let Err(why) = check_dns_label(&container.name) {
        problem(format!("{at}.name"), why);
    }
    let image = match container.image.as_deref() {
        None | Some("") => {
            problem(
                format!("{at}.image"),
                "required: the path to a .wasm component, relative to the manifest".into(),
            );
            None
        }
        Some(image) => match component_path(base, image) {
            Ok(path) => Some(path),
            Err(why) => {
                problem(format!("{at}.image"), why);
                None
            }
        },
    };
    let mut env = Vec::new();
    for (index, var) in container.env.iter().flatten().enumerate() {
        let at = format!("{at}.env[{index}]");
        if var.name.is_empty() {
            problem(format!("{at}.name"), "required".into());
        }
        let field = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref());
        let value = match (&var.value, field) {
            (Some(_), Some(_)) => {
                problem(at.clone(), "give `value` or `valueFrom`, not both".into());
                continue;
            }
            (_, Some(field)) => match field.field_path.as_str() {
                "metadata.name" => EnvValue::Field(PodField::Name),
                "metadata.namespace" => EnvValue::Field(PodField::Namespace),
                "metadata.uid" => EnvValue::Field(PodField::Uid),
                "spec.nodeName" => EnvValue::Field(PodField::NodeName),
                other => {
                    problem(
                        format!("{at}.valueFrom.fieldRef.fieldPath"),
                        format!(
                            "`{other}` is not supported; wasmlet provides metadata.name, \
                             metadata.namespace, metadata.uid and spec.nodeName"
                        ),
                    );
                    continue;
                }
            },
            (value, None) => EnvValue::Value(value.clone().unwrap_or_default()),
        };
        env.push((var.name.clone(), value));
    }
    let mut volume_mounts = Vec::new();
    let mut mount_paths = HashSet::new();
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let at = format!("{at}.volumeMounts[{index}]");
        if !volumes.iter().any(|volume| volume.name == mount.name) {
            problem(
                format!("{at}.name"),
                format!("no volume `{}` in spec.volumes", mount.name),
            );
        }
        if !mount.mount_path.starts_with('/') {
            problem(
                format!("{at}.mountPath"),
                format!("`{}` must be an absolute path", mount.mount_path),
            );
        } else if !mount_paths.insert(lexically_normal(Path::new(&mount.mount_path))) {
            problem(
                format!("{at}.mountPath"),
                format!("`{}` is mounted twice", mount.mount_path),
            );
        }
        let sub_path = mount.sub_path.clone().filter(|sub| !sub.is_empty());
        if let Some(sub) = &sub_path
            && (sub.starts_with('/')
                || Path::new(sub)
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)))
        {
            problem(
                format!("{at}.subPath"),
                format!("`{sub}` must be a relative path inside the volume, without `..`"),
            );
        }
        volume_mounts.push(VolumeMount {
            volume: mount.name.clone(),
            // `/tmp/.` and `//tmp` are `/tmp`: one name for one place.
            mount_path: lexically_normal(Path::new(&mount.mount_path))
                .display()
                .to_string(),
            read_only: mount.read_only.unwrap_or(false),
            sub_path,
        });
    }
    let working_dir = container.working_dir.clone().filter(|dir| !dir.is_empty());
    if let Some(dir) = &working_dir
        && !dir.starts_with('/')
    {
        problem(
            format!("{at}.workingDir"),
            format!("`{dir}` must be an absolute path, such as `/tmp`"),
        );
    }
    // Requests reserve nothing in wasmlet (they decide the pod's `qosClass`), but a malformed
    // one is still an error.
    let memory_request = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|requests| requests.get("memory"))
        .and_then(|quantity| match parse_memory(&quantity.0) {
            Ok(bytes) => Some(bytes),
            Err(why) => {
                problem(format!("{at}.resources.requests.memory"), why);
                None
            }
        });
    let memory_limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|limits| limits.get("memory"))
        .and_then(|quantity| match parse_memory(&quantity.0) {
            Ok(bytes) => Some(bytes),
            Err(why) => {
                problem(format!("{at}.resources.limits.memory"), why);
                None
            }
        });
    let ports = port_specs(container, at, &mut problems);
    let lifecycle = container.lifecycle.as_ref();
    let mut handler = |name: &str, handler: Option<&LifecycleHandler>| {
        let handler = handler?;
        let path = format!("{at}.lifecycle.{name}");
        match lifecycle_handler(handler, &path, base, grace, &ports) {
            Ok(handler) => Some(handler),
            Err(mut more) => {
                problems.append(&mut more);
                None
            }
        }
    };
    let post_start = handler("postStart", lifecycle.and_then(|l| l.post_start.as_ref()));
    let pre_stop = handler("preStop", lifecycle.and_then(|l| l.pre_stop.as_ref()));
    let mut probe = |kind: ProbeKind, probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        let probe = probe?;
        let path = format!("{at}.{}Probe", kind.name());
        match probe_spec(probe, kind, &path, base, &ports) {
            Ok(probe) => Some(probe),
            Err(mut more) => {
                problems.append(&mut more);
                None
            }
        }
    };
    let liveness_probe = probe(ProbeKind::Liveness, container.liveness_probe.as_ref());
    let readiness_probe = probe(ProbeKind::Readiness, container.readiness_probe.as_ref());
    let startup_probe = probe(ProbeKind::Startup, container.startup_probe.as_ref());
    match image {
        Some(image) if problems.is_empty() => Ok(ContainerSpec {
            name: container.name.clone(),
            image,
            command: container.command.clone().unwrap_or_default(),
            args: container.args.clone().unwrap_or_default(),
            env,
            working_dir,
            volume_mounts,
            memory_limit,
            memory_request,
            post_start,
            pre_stop,
            ports,
            liveness_probe,
            readiness_probe,
            startup_probe,
            sidecar: false,
        }),
        _ => Err(problems),
    }
}

/// The container's `ports[]`: TCP, numbered 1–65535, names unique IANA service names.
fn port_specs(container: &Container, at: &str, problems: &mut Vec<Problem>) -> Vec<PortSpec> {
    let mut ports = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    for (index, port) in container.ports.iter().flatten().enumerate() {
        let at = format!("{at}.ports[{index}]");
        match port.protocol.as_deref() {
            None | Some("TCP") => {}
            Some(other) => problem(
                format!("{at}.protocol"),
                format!("`{other}` is not supported: wasmlet serves HTTP over TCP; use TCP"),
            ),
        }
        let Ok(number) = u16::try_from(port.container_port)
            .map_err(|_| ())
            .and_then(|n| if n == 0 { Err(()) } else { Ok(n) })
        else {
            problem(
                format!("{at}.containerPort"),
                format!(
                    "{} is not a port number; expected 1 to 65535",
                    port.container_port
                ),
            );
            continue;
        };
        if ports.iter().any(|p: &PortSpec| p.port == number) {
            problem(
                format!("{at}.containerPort"),
                format!("port {number} is listed twice"),
            );
            continue;
        }
        let name = port.name.clone().filter(|name| !name.is_empty());
        if let Some(name) = &name {
            if let Err(why) = check_port_name(name) {
                problem(format!("{at}.name"), why);
            } else if ports.iter().any(|p| p.name.as_ref() == Some(name)) {
                problem(
                    format!("{at}.name"),
                    format!("duplicate port name `{name}`"),
                );
            }
        }
        ports.push(PortSpec { name, port: number });
    }
    ports
}

/// Kubernetes' IANA_SVC_NAME: at most 15 lowercase letters, digits and '-', with a letter, no
/// '-' at either end and no "--".
fn check_port_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid port name: at most 15 lowercase letters, digits and '-', \
             with at least one letter (like `http` or `metrics-1`)"
        ))
    }
}

/// A port given by number or by the name of one of the container's `ports[]`.
fn resolve_port(port: &IntOrString, at: &str, ports: &[PortSpec]) -> Result<u16, Problem> {
    let problem = |message: String| Problem {
        path: at.to_string(),
        message,
    };
    match port {
        IntOrString::Int(number) => {
            u16::try_from(*number)
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| {
                    problem(format!(
                        "{number} is not a port number; expected 1 to 65535"
                    ))
                })
        }
        IntOrString::String(name) => {
            if let Ok(number) = name.parse::<u16>() {
                return Ok(number).and_then(|n| {
                    if n == 0 {
                        Err(problem(
                            "0 is not a port number; expected 1 to 65535".into(),
                        ))
                    } else {
                        Ok(n)
                    }
                });
            }
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.port)
                .ok_or_else(|| {
                    let names: Vec<_> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                    problem(if names.is_empty() {
                        format!(
                            "no port named `{name}`: the container's ports[] name none; give a \
                             number or name a port"
                        )
                    } else {
                        format!(
                            "no port named `{name}`; the container's ports are named {}",
                            names.join(", ")
                        )
                    })
                })
        }
    }
}

/// An `httpGet` action of a hook or a probe.
fn http_get(action: &HTTPGetAction, at: &str, ports: &[PortSpec]) -> Result<HttpGet, Vec<Problem>> {
    let mut problems = Vec::new();
    match action.scheme.as_deref() {
        None | Some("HTTP") => {}
        Some(other) => problems.push(Problem {
            path: format!("{at}.scheme"),
            message: format!(
                "`{other}` is not supported: wasmlet's listeners serve plain HTTP (no TLS); use \
                 HTTP"
            ),
        }),
    }
    let port = resolve_port(&action.port, &format!("{at}.port"), ports)
        .map_err(|problem| problems.push(problem))
        .ok();
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(path) if path.starts_with('/') => path.to_string(),
        // Kubernetes prefixes a relative path with '/'.
        Some(path) => format!("/{path}"),
    };
    if path.parse::<http::uri::PathAndQuery>().is_err() {
        problems.push(Problem {
            path: format!("{at}.path"),
            message: format!("`{path}` is not a valid URL path"),
        });
    }
    let host = action.host.clone().filter(|host| !host.is_empty());
    let mut headers = Vec::new();
    for (index, header) in action.http_headers.iter().flatten().enumerate() {
        if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
            problems.push(Problem {
                path: format!("{at}.httpHeaders[{index}].name"),
                message: format!("`{}` is not a valid HTTP header name", header.name),
            });
        } else if http::HeaderValue::from_str(&header.value).is_err() {
            problems.push(Problem {
                path: format!("{at}.httpHeaders[{index}].value"),
                message: "not a valid HTTP header value (control characters?)".into(),
            });
        } else {
            headers.push((header.name.clone(), header.value.clone()));
        }
    }
    match port {
        Some(port) if problems.is_empty() => Ok(HttpGet {
            host,
            port,
            path,
            headers,
        }),
        _ => Err(problems),
    }
}

/// A probe, with Kubernetes' defaults and limits: 0 or absent means the default.
fn probe_spec(
    probe: &k8s_openapi::api::core::v1::Probe,
    kind: ProbeKind,
    at: &str,
    base: &Path,
    ports: &[PortSpec],
) -> Result<Probe, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut seconds = |field: &str, value: Option<i32>, default: u32| -> u32 {
        match value {
            None | Some(0) => default,
            Some(n) if n < 0 => {
                problems.push(Problem {
                    path: format!("{at}.{field}"),
                    message: format!("must be 0 (the default) or more, got {n}"),
                });
                default
            }
            Some(n) => n as u32,
        }
    };
    let initial_delay = seconds("initialDelaySeconds", probe.initial_delay_seconds, 0);
    let period = seconds("periodSeconds", probe.period_seconds, 10);
    let timeout = seconds("timeoutSeconds", probe.timeout_seconds, 1);
    let success_threshold = seconds("successThreshold", probe.success_threshold, 1);
    let failure_threshold = seconds("failureThreshold", probe.failure_threshold, 3);
    if kind != ProbeKind::Readiness && success_threshold != 1 {
        problems.push(Problem {
            path: format!("{at}.successThreshold"),
            message: format!(
                "must be 1 for a {} probe, got {success_threshold}",
                kind.name()
            ),
        });
    }
    let termination_grace_period = match probe.termination_grace_period_seconds {
        None => None,
        Some(_) if kind == ProbeKind::Readiness => {
            problems.push(Problem {
                path: format!("{at}.terminationGracePeriodSeconds"),
                message: "only liveness and startup probes may set it (a readiness probe kills \
                          nothing)"
                    .into(),
            });
            None
        }
        Some(n) if n < 1 => {
            problems.push(Problem {
                path: format!("{at}.terminationGracePeriodSeconds"),
                message: format!("must be 1 or more, got {n}"),
            });
            None
        }
        Some(n) => Some(Duration::from_secs(n as u64)),
    };
    let set = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.grpc.is_some(),
    ];
    let action = match set.iter().filter(|s| **s).count() {
        0 => Err(vec![Problem {
            path: at.into(),
            message: "needs exactly one action: exec, httpGet or tcpSocket".into(),
        }]),
        1 => {
            if let Some(exec) = &probe.exec {
                exec_action(exec.command.clone().unwrap_or_default(), at, base)
                    .map(|(command, target)| ProbeAction::Exec { command, target })
            } else if let Some(get) = &probe.http_get {
                http_get(get, &format!("{at}.httpGet"), ports).map(ProbeAction::HttpGet)
            } else if let Some(tcp) = &probe.tcp_socket {
                resolve_port(&tcp.port, &format!("{at}.tcpSocket.port"), ports)
                    .map(|port| ProbeAction::TcpSocket {
                        host: tcp.host.clone().filter(|host| !host.is_empty()),
                        port,
                    })
                    .map_err(|problem| vec![problem])
            } else {
                // grpc was reported by the field check.
                Err(vec![Problem {
                    path: at.into(),
                    message: "this action is not supported; use exec, httpGet or tcpSocket".into(),
                }])
            }
        }
        _ => Err(vec![Problem {
            path: at.into(),
            message: "has more than one action; give exactly one of exec, httpGet or tcpSocket"
                .into(),
        }]),
    };
    match action {
        Ok(action) if problems.is_empty() => Ok(Probe {
            action,
            initial_delay: Duration::from_secs(initial_delay.into()),
            period: Duration::from_secs(period.into()),
            timeout: Duration::from_secs(timeout.into()),
            success_threshold,
            failure_threshold,
            termination_grace_period,
        }),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

fn lifecycle_handler(
    handler: &LifecycleHandler,
    at: &str,
    base: &Path,
    grace: Duration,
    ports: &[PortSpec],
) -> Result<Handler, Vec<Problem>> {
    let set = [
        handler.exec.is_some(),
        handler.http_get.is_some(),
        handler.sleep.is_some(),
        handler.tcp_socket.is_some(),
    ];
    let fail = |path: String, message: String| Err(vec![Problem { path, message }]);
    match set.iter().filter(|s| **s).count() {
        0 => {
            return fail(
                at.into(),
                "needs exactly one handler: exec, httpGet or sleep".into(),
            );
        }
        1 => {}
        _ => {
            return fail(
                at.into(),
                "has more than one handler; give exactly one of exec, httpGet or sleep".into(),
            );
        }
    }
    if let Some(get) = &handler.http_get {
        return http_get(get, &format!("{at}.httpGet"), ports).map(Handler::HttpGet);
    }
    if let Some(sleep) = &handler.sleep {
        let seconds = sleep.seconds;
        if seconds < 0 {
            return fail(
                format!("{at}.sleep.seconds"),
                format!("must be 0 or more, got {seconds}"),
            );
        }
        let duration = Duration::from_secs(seconds as u64);
        if duration > grace {
            return fail(
                format!("{at}.sleep.seconds"),
                format!(
                    "{seconds} s is longer than the grace period ({} s); Kubernetes requires \
                     sleep.seconds <= terminationGracePeriodSeconds",
                    grace.as_secs()
                ),
            );
        }
        return Ok(Handler::Sleep(duration));
    }
    if let Some(exec) = &handler.exec {
        let (command, target) = exec_action(exec.command.clone().unwrap_or_default(), at, base)?;
        return Ok(Handler::Exec { command, target });
    }
    // tcpSocket was reported by the field check.
    fail(
        at.into(),
        "this handler is not supported; use exec, httpGet or sleep".into(),
    )
}

/// An `exec` action's command and what runs it (see [`ExecTarget`]).
fn exec_action(
    command: Vec<String>,
    at: &str,
    base: &Path,
) -> Result<(Vec<String>, ExecTarget), Vec<Problem>> {
    let fail = |path: String, message: String| Err(vec![Problem { path, message }]);
    let Some(program) = command.first() else {
        return fail(
            format!("{at}.exec.command"),
            "required: the command to run (`sh -c …`, a component path, or a command of \
                 the container's own component)"
                .into(),
        );
    };
    if matches!(program.as_str(), "sh" | "/bin/sh" | "/usr/bin/sh") {
        return Ok((command, ExecTarget::Shell));
    }
    match component_path(base, program) {
        Ok(component) if !starts_as_wasm(&component) => fail(
            format!("{at}.exec.command[0]"),
            format!(
                "`{program}` is not a WebAssembly component; exec runs `sh` (wasmlet's \
                     bundled shell), a component file, or a command of the container's own \
                     component (a bare name)"
            ),
        ),
        Ok(component) => Ok((command, ExecTarget::Component(component))),
        // Clearly meant as a file (a component, or a program of an image): a typo or another
        // shell must not run the app instead.
        Err(why) if program.ends_with(".wasm") => fail(format!("{at}.exec.command[0]"), why),
        Err(_) if program.contains('/') => fail(
            format!("{at}.exec.command[0]"),
            format!(
                "`{program}` is neither `sh` (wasmlet's bundled shell) nor a component file; \
                     exec runs `sh`, a component (a path relative to the manifest), or a \
                     command of the container's own component (a bare name)"
            ),
        ),
        Err(_) => Ok((command, ExecTarget::Container)),
    }
}

/// Whether `path` begins with WebAssembly's magic number.
fn starts_as_wasm(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\0asm")
}

fn component_path(base: &Path, image: &str) -> Result<PathBuf, String> {
    let path = lexically_normal(&base.join(image));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "component `{image}` not found (looked for `{}`); image is a path to a .wasm \
             component, relative to the manifest",
            path.display()
        ))
    }
}

/// `examples/pods/../../target/x.wasm` → `target/x.wasm`, without touching the filesystem (so
/// symlinks are not resolved; `..` at the start of a relative path is kept).
pub(crate) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match normal.components().next_back() {
                Some(Component::Normal(_)) => {
                    normal.pop();
                }
                Some(Component::RootDir) => {}
                _ => normal.push(".."),
            },
            other => normal.push(other.as_os_str()),
        }
    }
    if normal.as_os_str().is_empty() {
        normal.push(".");
    }
    normal
}

/// Bytes in a Kubernetes quantity: `128Mi`, `1Gi`, `500M`, `64e6`, `1048576`.
pub fn parse_memory(quantity: &str) -> Result<u64, String> {
    let text = quantity.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let invalid = || {
        format!(
            "`{quantity}` is not a memory quantity; expected a number with an optional suffix \
             (Ki, Mi, Gi, Ti, k, M, G, T), like `64Mi`"
        )
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| invalid())?;
            10f64.powi(power)
        }
        _ => return Err(invalid()),
    };
    let bytes = (value * multiplier).ceil();
    if !(bytes.is_finite() && bytes > 0.0) {
        return Err(format!("`{quantity}` must be more than 0 bytes"));
    }
    if bytes > u64::MAX as f64 {
        return Err(format!("`{quantity}` is too large"));
    }
    Ok(bytes as u64)
}

fn check_dns_label(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(|part| check_dns_label(part).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use lowercase letters, digits, '-' and '.', at most \
             253 characters"
        ))
    }
}

/// Reports every field of `document` that wasmlet does not support (or that is not part of
/// the Pod API at all, judging by what `k8s-openapi` kept in `known`).
fn check_fields(
    document: &serde_yaml::Value,
    known: &serde_yaml::Value,
    path: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    match document {
        serde_yaml::Value::Mapping(map) => {
            for (key, value) in map {
                if value.is_null() {
                    continue;
                }
                let key = match key {
                    serde_yaml::Value::String(key) => key.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let known_child = known.get(&key).unwrap_or(&serde_yaml::Value::Null);
                path.push(key);
                let pattern = container_pattern(pattern_of(path));
                if let Some((_, why)) = EXPLAINED.iter().find(|(p, _)| matches(p, &pattern)) {
                    problems.push(Problem {
                        path: path.join("."),
                        message: why.to_string(),
                    });
                } else if !SUPPORTED.iter().any(|p| is_prefix(&pattern, p)) {
                    let message = if known_child.is_null() {
                        "unknown field: not part of the Kubernetes Pod API (check the spelling)"
                    } else {
                        "not supported by wasmlet yet"
                    };
                    problems.push(Problem {
                        path: path.join("."),
                        message: message.into(),
                    });
                } else {
                    check_fields(value, known_child, path, problems);
                }
                path.pop();
            }
        }
        serde_yaml::Value::Sequence(items) => {
            let last = path.pop().unwrap_or_default();
            for (index, item) in items.iter().enumerate() {
                let known_item = known.get(index).unwrap_or(&serde_yaml::Value::Null);
                path.push(format!("{last}[{index}]"));
                check_fields(item, known_item, path, problems);
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
    fn memory_quantities() {
        assert_eq!(parse_memory("64Mi"), Ok(64 << 20));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("500M"), Ok(500_000_000));
        assert_eq!(parse_memory("128974848"), Ok(128_974_848));
        assert_eq!(parse_memory("129e6"), Ok(129_000_000));
        assert_eq!(parse_memory("1.5Ki"), Ok(1536));
        assert!(parse_memory("lots").unwrap_err().contains("`lots`"));
        assert!(parse_memory("64MB").is_err());
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("-1Mi").is_err());
    }

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

    #[test]
    fn component_paths_are_shown_without_detours() {
        assert_eq!(
            lexically_normal(Path::new("examples/pods/../../target/components/x.wasm")),
            Path::new("target/components/x.wasm")
        );
        assert_eq!(lexically_normal(Path::new("../a/./b")), Path::new("../a/b"));
        assert_eq!(lexically_normal(Path::new("/a/../../b")), Path::new("/b"));
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(check_dns_label("web-1").is_ok());
        assert!(check_dns_label("Web").is_err());
        assert!(check_dns_label("-web").is_err());
        assert!(check_dns_subdomain("pre-stop-hook.v1").is_ok());
    }
}
