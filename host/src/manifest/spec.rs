//! The data model: a validated pod ([`PodSpec`]) and what it is made of — containers, ports,
//! probes, hooks, volumes, environment — as wasmlet runs them. Only this module's siblings build
//! one (from a manifest, or from a component for `wasmlet run x.wasm`); everyone else reads it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The grace period when neither the manifest nor the caller sets one (Kubernetes' default).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// A pod wasmlet can run: validated, with every path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// `metadata.name`.
    pub(crate) name: String,
    /// `metadata.namespace` (`default` when absent).
    pub(crate) namespace: String,
    /// `metadata.uid`, if the manifest gives one; otherwise the pod gets one when it starts.
    pub(crate) uid: Option<String>,
    /// `spec.terminationGracePeriodSeconds`; `None` means the host's default (30 s).
    pub(crate) termination_grace_period: Option<Duration>,
    /// `spec.restartPolicy`: `Always` when absent, as in Kubernetes.
    pub(crate) restart_policy: RestartPolicy,
    /// `spec.volumes`.
    pub(crate) volumes: Vec<VolumeSpec>,
    /// `spec.initContainers`, in order: each runs to completion before the next starts, except
    /// sidecars, which start and keep running beside the app containers.
    pub(crate) init_containers: Vec<ContainerSpec>,
    /// `spec.containers`, in order.
    pub(crate) containers: Vec<ContainerSpec>,
    /// The fields of the manifest that a single host ignores (scheduling, service accounts,
    /// DNS, …), by path; the pod reports them in one `IgnoredFields` event when it starts.
    pub(crate) ignored: Vec<String>,
    /// What the pod reads and the manifests did not give — a ConfigMap, a Secret, a key of one.
    /// As in Kubernetes the pod is valid, but it cannot start without them.
    pub(crate) missing: Vec<String>,
    /// `spec.resources`: limits and requests of the whole pod, beside its containers' own.
    pub(crate) resources: Resources,
    /// Which replica of its workload the pod is (0 for a Pod), when the replicas listen on
    /// ports: each then needs an address of its own.
    pub(crate) replica: u32,
}

/// `resources` of a container, or of a pod (`spec.resources`), with Kubernetes' defaulting
/// applied: an unset request is its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Resources {
    /// `limits.cpu` in millicores: the share of a core all instances together may use per
    /// 100 ms period, as CFS quota gives it.
    pub cpu_limit: Option<u64>,
    /// `requests.cpu` in millicores: the weight of the container's turns when the CPU is
    /// contended, as CFS shares give it.
    pub cpu_request: Option<u64>,
    /// `limits.memory` in bytes: all instances together.
    pub memory_limit: Option<u64>,
    /// `requests.memory` in bytes. It reserves nothing; it only decides the pod's `qosClass`.
    pub memory_request: Option<u64>,
}

/// One container of a [`PodSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// `name`.
    pub(crate) name: String,
    /// `image`, resolved to a component file.
    pub(crate) image: PathBuf,
    /// `command`: the start of the component's argv (`argv[0]` first); empty means the
    /// container's name alone. The component is always `image`: there is no other entrypoint.
    pub(crate) command: Vec<String>,
    /// `args`: passed to the component after `command` (or after its name).
    pub(crate) args: Vec<String>,
    /// `env`, in order.
    pub(crate) env: Vec<(String, EnvValue)>,
    /// `workingDir`: the guest's initial working directory (absolute).
    pub(crate) working_dir: Option<String>,
    /// `volumeMounts`: the pod volumes this container sees, and where.
    pub(crate) volume_mounts: Vec<VolumeMount>,
    /// `resources`: CPU and memory, limits and requests.
    pub(crate) resources: Resources,
    /// `lifecycle.postStart`.
    pub(crate) post_start: Option<Handler>,
    /// `lifecycle.preStop`.
    pub(crate) pre_stop: Option<Handler>,
    /// `ports[]` (TCP): where the container serves HTTP if its component exports
    /// `wasi:http/incoming-handler`.
    pub(crate) ports: Vec<PortSpec>,
    /// `livenessProbe`: failing it kills the container, which then restarts per restartPolicy.
    pub(crate) liveness_probe: Option<Probe>,
    /// `readinessProbe`: the container's `ready`, which gates its HTTP traffic.
    pub(crate) readiness_probe: Option<Probe>,
    /// `startupProbe`: liveness and readiness probes wait until it succeeds.
    pub(crate) startup_probe: Option<Probe>,
    /// An init container with `restartPolicy: Always`: a sidecar, started before the app
    /// containers, restarted whenever it ends, and stopped after them.
    pub(crate) sidecar: bool,
}

/// A port of a container (`ports[]`); always TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `name`, which probes and hooks may use instead of the number.
    pub(crate) name: Option<String>,
    /// `containerPort`.
    pub(crate) port: u16,
}

/// An `httpGet` action, of a hook or a probe: `GET http://host:port/path` with `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// `host`; `None` means the pod itself (its containers' listeners).
    pub(crate) host: Option<String>,
    /// `port`, resolved to a number (a name refers to the container's `ports[]`).
    pub(crate) port: u16,
    /// `path`, `/` when absent.
    pub(crate) path: String,
    /// `httpHeaders`, in order.
    pub(crate) headers: Vec<(String, String)>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub(crate) action: ProbeAction,
    /// `initialDelaySeconds` (default 0): the wait after the container starts.
    pub(crate) initial_delay: Duration,
    /// `periodSeconds` (default 10 s).
    pub(crate) period: Duration,
    /// `timeoutSeconds` (default 1 s): a check that takes longer fails.
    pub(crate) timeout: Duration,
    /// `successThreshold` (default 1; always 1 for liveness and startup).
    pub(crate) success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub(crate) failure_threshold: u32,
    /// `terminationGracePeriodSeconds` (liveness and startup only): the grace period of the
    /// kill that a failure causes, instead of the pod's.
    pub(crate) termination_grace_period: Option<Duration>,
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
    pub(crate) name: String,
    /// What backs it.
    pub(crate) source: VolumeSource,
}

/// What backs a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// `configMap`, `secret`, `downwardAPI` and `projected`: files written when the pod starts
    /// into a directory of their own, read-only to every container, removed when the pod ends.
    Files(Vec<ProjectedFile>),
    /// `persistentVolumeClaim`: the claim's directory under the host's data directory
    /// ([`crate::HostConfig::data_dir`]), made on first use and kept after the pod ends, as a
    /// local-path provisioner keeps it.
    Claim {
        /// `claimName`.
        claim: String,
        /// `readOnly`: every mount of it is read-only.
        read_only: bool,
    },
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

/// One file of a `configMap`, `secret`, `downwardAPI` or `projected` volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedFile {
    /// Where in the volume (relative, without `..`; it may have directories).
    pub(crate) path: String,
    /// What it holds.
    pub(crate) content: FileContent,
    /// Its permission bits on the host (`mode`, else the volume's `defaultMode`, else `0644`).
    /// WASI shows a guest no permission bits; the volume is read-only to it whatever they are.
    pub(crate) mode: u32,
}

/// What a [`ProjectedFile`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// Bytes known from the manifests: a ConfigMap's or Secret's value, labels, a resource.
    Bytes(Vec<u8>),
    /// A field of the pod known only when it starts (`metadata.uid`, `spec.nodeName`, …).
    Field(PodField),
}

/// A volume mounted into a container (`volumeMounts[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name.
    pub(crate) volume: String,
    /// Where the guest sees it (absolute).
    pub(crate) mount_path: String,
    /// Read-only for this container.
    pub(crate) read_only: bool,
    /// A directory inside the volume to mount instead of its root (relative, no `..`).
    pub(crate) sub_path: Option<String>,
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
    /// A value taken as it is, without `$(NAME)` expansion: from a ConfigMap or a Secret
    /// (`configMapKeyRef`, `secretKeyRef`, `envFrom`) or the container's resources
    /// (`resourceFieldRef`).
    Resolved(String),
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
    /// `status.podIP` and `status.hostIP`: the address the pod's containers listen on
    /// ([`crate::HostConfig::http_address`]).
    PodIp,
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

/// Read access for embedders: a [`PodSpec`] is built only by validation
/// ([`PodSpec::from_file`], [`PodSpec::from_yaml`], [`PodSpec::from_pod`],
/// [`PodSpec::component`]), so what these return always holds together.
impl PodSpec {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.namespace` (`default` when absent).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `metadata.uid`, if the manifest gives one; otherwise the pod gets one when it starts.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// `spec.terminationGracePeriodSeconds`; `None` means the host's default
    /// ([`crate::HostConfig::default_grace_period`]).
    pub fn termination_grace_period(&self) -> Option<Duration> {
        self.termination_grace_period
    }

    /// `spec.restartPolicy`.
    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart_policy
    }

    /// Which replica of a workload whose pods listen on ports this pod is (0 otherwise): the
    /// host serves it on an address of its own ([`crate::HostConfig::http_address`]).
    pub fn replica(&self) -> u32 {
        self.replica
    }

    /// `spec.resources.limits.cpu` in millicores: the share of a core the whole pod may use.
    pub fn cpu_limit(&self) -> Option<u64> {
        self.resources.cpu_limit
    }

    /// `spec.resources.limits.memory` in bytes: what the whole pod may use.
    pub fn memory_limit(&self) -> Option<u64> {
        self.resources.memory_limit
    }

    /// `spec.volumes`.
    pub fn volumes(&self) -> &[VolumeSpec] {
        &self.volumes
    }

    /// `spec.initContainers`, in order (sidecars among them: [`ContainerSpec::is_sidecar`]).
    pub fn init_containers(&self) -> &[ContainerSpec] {
        &self.init_containers
    }

    /// `spec.containers`, in order.
    pub fn containers(&self) -> &[ContainerSpec] {
        &self.containers
    }

    /// The fields of the manifest a single host ignores, by path (reported in the pod's
    /// `IgnoredFields` event).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// What the pod reads and the manifests did not give (a ConfigMap, a Secret, a key of
    /// one): a valid pod, which [`crate::Host::start_pod`] refuses to start until they are.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The same pod named `name`: a workload's replica, or a Job's next pod.
    pub(crate) fn renamed(&self, name: String) -> PodSpec {
        PodSpec {
            name,
            ..self.clone()
        }
    }

    /// Adds variable `name` to every container (a Job's `JOB_COMPLETION_INDEX`), after its own.
    pub(crate) fn add_env(&mut self, name: &str, value: &str) {
        for container in self.init_containers.iter_mut().chain(&mut self.containers) {
            container
                .env
                .push((name.to_string(), EnvValue::Resolved(value.to_string())));
        }
    }

    /// The same pod with grace period `grace` instead of the manifest's
    /// `terminationGracePeriodSeconds` (what `wasmlet run --grace-period` does). A preStop
    /// `sleep` longer than `grace` is cut short by the kill, as any hook is.
    #[must_use]
    pub fn with_grace_period(mut self, grace: Duration) -> PodSpec {
        self.termination_grace_period = Some(grace);
        self
    }
}

impl ContainerSpec {
    /// `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `image`, resolved to a component file.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// `command`: the start of the component's argv; empty means the container's name alone.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// `args`: passed to the component after `command` (or after its name).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// `env`, in order.
    pub fn env(&self) -> &[(String, EnvValue)] {
        &self.env
    }

    /// `workingDir` (absolute).
    pub fn working_dir(&self) -> Option<&str> {
        self.working_dir.as_deref()
    }

    /// `volumeMounts`.
    pub fn volume_mounts(&self) -> &[VolumeMount] {
        &self.volume_mounts
    }

    /// `resources.limits.memory` in bytes: all instances of the container together.
    pub fn memory_limit(&self) -> Option<u64> {
        self.resources.memory_limit
    }

    /// `resources.requests.memory` in bytes (it decides the pod's `qosClass` only).
    pub fn memory_request(&self) -> Option<u64> {
        self.resources.memory_request
    }

    /// `resources.limits.cpu` in millicores: the share of a core all the container's
    /// instances together may use, per 100 ms period.
    pub fn cpu_limit(&self) -> Option<u64> {
        self.resources.cpu_limit
    }

    /// `resources.requests.cpu` in millicores (the limit, when only that is given): the
    /// weight of the container's turns on a contended CPU.
    pub fn cpu_request(&self) -> Option<u64> {
        self.resources.cpu_request
    }

    /// `lifecycle.postStart`.
    pub fn post_start(&self) -> Option<&Handler> {
        self.post_start.as_ref()
    }

    /// `lifecycle.preStop`.
    pub fn pre_stop(&self) -> Option<&Handler> {
        self.pre_stop.as_ref()
    }

    /// `ports[]`: where the container serves HTTP (see also [`ContainerSpec::listen_ports`]).
    pub fn ports(&self) -> &[PortSpec] {
        &self.ports
    }

    /// `livenessProbe`.
    pub fn liveness_probe(&self) -> Option<&Probe> {
        self.liveness_probe.as_ref()
    }

    /// `readinessProbe`.
    pub fn readiness_probe(&self) -> Option<&Probe> {
        self.readiness_probe.as_ref()
    }

    /// `startupProbe`.
    pub fn startup_probe(&self) -> Option<&Probe> {
        self.startup_probe.as_ref()
    }

    /// Whether this is a sidecar: an init container with `restartPolicy: Always`, which runs
    /// beside the app containers and is stopped after them. Never true of an app container.
    pub fn is_sidecar(&self) -> bool {
        self.sidecar
    }
}

impl PortSpec {
    /// `name`, which probes and hooks may use instead of the number.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `containerPort`.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl HttpGet {
    /// `host`; `None` means the pod itself.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// `port`, resolved to a number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `path`, `/` when absent.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `httpHeaders`, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

impl Probe {
    /// What it checks.
    pub fn action(&self) -> &ProbeAction {
        &self.action
    }

    /// `initialDelaySeconds`.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// `periodSeconds`.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// `timeoutSeconds`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `successThreshold`.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// `failureThreshold`.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// `terminationGracePeriodSeconds` (liveness and startup probes only).
    pub fn termination_grace_period(&self) -> Option<Duration> {
        self.termination_grace_period
    }
}

impl VolumeSpec {
    /// Its name, which mounts refer to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What backs it.
    pub fn source(&self) -> &VolumeSource {
        &self.source
    }
}

impl ProjectedFile {
    /// Where in the volume.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What it holds.
    pub fn content(&self) -> &FileContent {
        &self.content
    }

    /// Its permission bits on the host.
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

impl VolumeMount {
    /// The volume's name.
    pub fn volume(&self) -> &str {
        &self.volume
    }

    /// Where the guest sees it (absolute).
    pub fn mount_path(&self) -> &str {
        &self.mount_path
    }

    /// Read-only for this container.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// A directory inside the volume mounted instead of its root.
    pub fn sub_path(&self) -> Option<&str> {
        self.sub_path.as_deref()
    }
}
