//! From `k8s-openapi` types to a [`PodSpec`]: the pod's metadata, restart policy, volumes and
//! containers, checked against Kubernetes' rules (names, sidecars, mounts, resources, ports
//! shared by the pod). Hooks, probes and ports are [`super::actions`]'.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, ResourceRequirements};

use super::actions::{lifecycle_handler, port_specs, probe_spec};
use super::sources::ConfigObjects;
use super::sources::{self, Context};
use super::values::{
    check_dns_label, check_dns_subdomain, component_path, lexically_normal, parse_cpu, parse_memory,
};
use super::{
    ContainerSpec, DEFAULT_GRACE_PERIOD, EnvValue, FileContent, PodSpec, ProbeKind, Problem,
    Resources, RestartPolicy, VolumeMount, VolumeSource, VolumeSpec,
};

impl PodSpec {
    /// Validates a Pod given as `k8s-openapi` types (for embedders that build one in code).
    /// Fields wasmlet does not look at are not checked here; [`PodSpec::from_yaml`] checks them.
    /// `configMap` and `secret` volumes and variables find nothing here (unless `optional`):
    /// files of several documents give them ([`super::Manifests`]).
    pub fn from_pod(pod: &Pod, base: &Path) -> Result<PodSpec, Vec<Problem>> {
        Self::from_pod_with(pod, base, &ConfigObjects::default())
    }

    /// [`PodSpec::from_pod`] with the ConfigMaps and Secrets the pod may refer to.
    pub(super) fn from_pod_with(
        pod: &Pod,
        base: &Path,
        config: &ConfigObjects,
    ) -> Result<PodSpec, Vec<Problem>> {
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
        let context = Context {
            pod,
            namespace: &namespace,
            config,
            missing: Default::default(),
        };
        security_context(spec, &mut problem);
        let volumes = volume_specs(spec.volumes.iter().flatten(), base, &context, &mut problem);
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
            match container_spec(container, &at, base, grace, &volumes, &context) {
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
        let pod_resources = resources(spec.resources.as_ref(), "spec", &mut |path, message| {
            problems.push(Problem { path, message })
        });
        check_pod_resources(&pod_resources, &init_containers, &containers, &mut problems);
        let missing = context.missing.take();
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
                ignored: Vec::new(),
                missing,
                resources: pod_resources,
                replica: 0,
            })
        } else {
            Err(problems)
        }
    }
}

/// The pod's volumes, checked: names, one supported source each, hostPath directories.
fn volume_specs<'v>(
    volumes: impl Iterator<Item = &'v k8s_openapi::api::core::v1::Volume>,
    base: &Path,
    context: &Context,
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
                    Some("Directory") => false,
                    // No type: the kubelet checks nothing (`hostPathTypeChecker` is not run
                    // for an empty type), and the container runtime makes a missing source as
                    // a directory (the CRI plugin of containerd, `WithMounts`:
                    // `os.MkdirAll(src, 0755)`; Docker did the same).
                    None | Some("") | Some("DirectoryOrCreate") => true,
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
                if let Some(source) = sources::volume_source(volume, &at, context, problem) {
                    specs.push(VolumeSpec {
                        name: volume.name.clone(),
                        source,
                    });
                    continue;
                }
                // A source wasmlet does not support was reported by the field check already.
                let other_source = serde_json::to_value(volume)
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.len() > 1))
                    .unwrap_or(false);
                if other_source {
                    continue;
                }
                // A volume with no source at all is an emptyDir, as API defaulting makes it
                // (SetDefaults_Volume, pkg/apis/core/v1/defaults.go).
                VolumeSource::EmptyDir
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
    context: &Context,
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
    // `envFrom` first: a variable of `env` with the same name wins, as in Kubernetes.
    let mut env = sources::env_from(
        container.env_from.as_deref().unwrap_or_default(),
        at,
        context,
        &mut problem,
    );
    for (index, var) in container.env.iter().flatten().enumerate() {
        let at = format!("{at}.env[{index}]");
        if var.name.is_empty() {
            problem(format!("{at}.name"), "required".into());
        }
        let value = match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => {
                problem(at.clone(), "give `value` or `valueFrom`, not both".into());
                continue;
            }
            (value, None) => EnvValue::Value(value.clone().unwrap_or_default()),
            (None, Some(from)) => {
                let given = [
                    from.field_ref.is_some(),
                    from.config_map_key_ref.is_some(),
                    from.secret_key_ref.is_some(),
                    from.resource_field_ref.is_some(),
                ];
                if given.iter().filter(|given| **given).count() != 1 {
                    // An unsupported source alone was reported by the field check already.
                    if given.iter().any(|given| *given) {
                        problem(
                            format!("{at}.valueFrom"),
                            "give one of fieldRef, configMapKeyRef, secretKeyRef and \
                             resourceFieldRef"
                                .into(),
                        );
                    }
                    continue;
                }
                if let Some(field) = &from.field_ref {
                    let path = format!("{at}.valueFrom.fieldRef.fieldPath");
                    match sources::pod_field(field, &path, context, false) {
                        Ok(FileContent::Field(field)) => EnvValue::Field(field),
                        Ok(FileContent::Bytes(bytes)) => {
                            EnvValue::Resolved(String::from_utf8_lossy(&bytes).into_owned())
                        }
                        Err((path, why)) => {
                            problem(path, why);
                            continue;
                        }
                    }
                } else if let Some(resource) = &from.resource_field_ref {
                    let named = resource.container_name.as_deref().filter(|n| !n.is_empty());
                    if named.is_some_and(|name| name != container.name) {
                        problem(
                            format!("{at}.valueFrom.resourceFieldRef.containerName"),
                            "wasmlet shows a container its own resources only; leave \
                             containerName out"
                                .into(),
                        );
                        continue;
                    }
                    match sources::resource_value(container, resource) {
                        Ok(value) => EnvValue::Resolved(value),
                        Err((field, why)) => {
                            problem(format!("{at}.valueFrom.resourceFieldRef.{field}"), why);
                            continue;
                        }
                    }
                } else {
                    let (secret, name, key, optional, field) =
                        match (&from.config_map_key_ref, &from.secret_key_ref) {
                            (Some(r), _) => (false, &r.name, &r.key, r.optional, "configMapKeyRef"),
                            (_, Some(r)) => (true, &r.name, &r.key, r.optional, "secretKeyRef"),
                            _ => continue,
                        };
                    match sources::key_ref(secret, name, key, optional.unwrap_or(false), context) {
                        Ok(Some(value)) => EnvValue::Resolved(value),
                        Ok(None) => continue,
                        Err((part, why)) => {
                            problem(format!("{at}.valueFrom.{field}.{part}"), why);
                            continue;
                        }
                    }
                }
            }
        };
        env.push((var.name.clone(), value));
    }
    let mut volume_mounts = Vec::new();
    let mut mount_paths = HashSet::new();
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let at = format!("{at}.volumeMounts[{index}]");
        let volume = volumes.iter().find(|volume| volume.name == mount.name);
        // A volume that is declared but refused has its own problem already.
        let declared = (context.pod.spec.iter())
            .flat_map(|spec| spec.volumes.iter().flatten())
            .any(|declared| declared.name == mount.name);
        if volume.is_none() && !declared {
            problem(
                format!("{at}.name"),
                format!("no volume `{}` in spec.volumes", mount.name),
            );
        }
        // ConfigMaps, Secrets and the downward API are read-only, as in Kubernetes; so is a
        // claim mounted `readOnly`.
        let read_only_volume = volume.is_some_and(|volume| {
            matches!(
                volume.source,
                VolumeSource::Files(_)
                    | VolumeSource::Claim {
                        read_only: true,
                        ..
                    }
            )
        });
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
            read_only: mount.read_only.unwrap_or(false) || read_only_volume,
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
    let resources = resources(container.resources.as_ref(), at, &mut problem);
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
            resources,
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

/// The securityContext settings that ask for more than a wasm sandbox can give. What it already
/// gives (not root, no privilege escalation, a read-only root, dropped capabilities, a seccomp
/// or AppArmor profile: a guest makes no system calls at all) is accepted as it is.
fn security_context(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    problem: &mut impl FnMut(&str, String),
) {
    if spec.host_pid == Some(true) {
        problem(
            "spec.hostPID",
            "not supported: a guest cannot see the host's processes; drop `hostPID`".into(),
        );
    }
    if spec.host_ipc == Some(true) {
        problem(
            "spec.hostIPC",
            "not supported: a guest has no IPC with the host's processes; drop `hostIPC`".into(),
        );
    }
    if spec.share_process_namespace == Some(true) {
        problem(
            "spec.shareProcessNamespace",
            "not supported: containers are components, not processes, and cannot see or signal \
             each other; drop it"
                .into(),
        );
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, c)| (format!("spec.initContainers[{index}]"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(index, c)| (format!("spec.containers[{index}]"), c)),
        );
    for (at, container) in containers {
        let Some(security) = &container.security_context else {
            continue;
        };
        if security.privileged == Some(true) {
            problem(
                &format!("{at}.securityContext.privileged"),
                "not supported: a wasm guest cannot be given the host's devices and kernel; \
                 only `privileged: false`"
                    .into(),
            );
        }
        if let Some(add) = security
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .filter(|add| !add.is_empty())
        {
            problem(
                &format!("{at}.securityContext.capabilities.add"),
                format!(
                    "not supported: a wasm guest has no Linux capabilities to gain ({}); \
                     `capabilities.drop` is accepted",
                    add.join(", ")
                ),
            );
        }
        if security
            .proc_mount
            .as_deref()
            .is_some_and(|mount| mount != "Default")
        {
            problem(
                &format!("{at}.securityContext.procMount"),
                "not supported: a guest has no /proc; only `Default`".into(),
            );
        }
    }
}

/// `resources` of a container (or, at `spec`, of the pod): CPU in millicores, memory in bytes.
/// Kubernetes' defaulting copies a limit into an unset request (`SetDefaults_Pod`,
/// pkg/apis/core/v1/defaults.go); a request above its limit is refused, as the API server's
/// validation does (`ValidateResourceRequirements`).
pub(super) fn resources(
    resources: Option<&ResourceRequirements>,
    at: &str,
    problem: &mut impl FnMut(String, String),
) -> Resources {
    let mut amount = |kind: &str, resource: &str| -> Option<u64> {
        let list = match kind {
            "requests" => resources?.requests.as_ref(),
            _ => resources?.limits.as_ref(),
        };
        let quantity = list?.get(resource)?;
        let parsed = match resource {
            "cpu" => parse_cpu(&quantity.0),
            _ => parse_memory(&quantity.0),
        };
        match parsed {
            Ok(amount) => Some(amount),
            Err(why) => {
                problem(format!("{at}.resources.{kind}.{resource}"), why);
                None
            }
        }
    };
    let cpu_limit = amount("limits", "cpu").filter(|millicores| *millicores > 0);
    let memory_limit = amount("limits", "memory").filter(|bytes| *bytes > 0);
    let cpu_request = amount("requests", "cpu").or(cpu_limit);
    let memory_request = amount("requests", "memory").or(memory_limit);
    for (resource, request, limit, unit) in [
        ("cpu", cpu_request, cpu_limit, "m"),
        ("memory", memory_request, memory_limit, " bytes"),
    ] {
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            problem(
                format!("{at}.resources.requests.{resource}"),
                format!(
                    "{request}{unit} is more than the limit ({limit}{unit}); a request must be at                      most its limit"
                ),
            );
        }
    }
    Resources {
        cpu_limit,
        cpu_request,
        memory_limit,
        memory_request,
    }
}

/// With pod-level resources, what the containers ask must fit in the pod's, as the API
/// server's `validatePodResourceConsistency` (pkg/apis/core/validation) requires: the app
/// containers' requests together (and each init container's) at most the pod's request, and
/// no container's limit above the pod's.
fn check_pod_resources(
    pod: &Resources,
    init_containers: &[ContainerSpec],
    containers: &[ContainerSpec],
    problems: &mut Vec<Problem>,
) {
    type Amount = fn(&Resources) -> Option<u64>;
    let kinds: [(&str, Amount, Amount, &str); 2] = [
        ("cpu", |r| r.cpu_request, |r| r.cpu_limit, "m"),
        ("memory", |r| r.memory_request, |r| r.memory_limit, " bytes"),
    ];
    for (resource, request, limit, unit) in kinds {
        if let Some(pod_request) = request(pod) {
            let apps: u64 = containers
                .iter()
                .filter_map(|c| request(&c.resources))
                .sum();
            let init = init_containers
                .iter()
                .filter_map(|c| request(&c.resources))
                .max()
                .unwrap_or(0);
            let asked = apps.max(init);
            if asked > pod_request {
                problems.push(Problem {
                    path: format!("spec.resources.requests.{resource}"),
                    message: format!(
                        "{pod_request}{unit} is less than the containers request together \
                         ({asked}{unit}); the pod's request must hold theirs"
                    ),
                });
            }
        }
        if let Some(pod_limit) = limit(pod) {
            for container in init_containers.iter().chain(containers) {
                if let Some(own) = limit(&container.resources).filter(|own| *own > pod_limit) {
                    problems.push(Problem {
                        path: format!("spec.resources.limits.{resource}"),
                        message: format!(
                            "{pod_limit}{unit} is less than the limit of container `{}` \
                             ({own}{unit}); no container may be limited above its pod",
                            container.name
                        ),
                    });
                }
            }
        }
    }
}
