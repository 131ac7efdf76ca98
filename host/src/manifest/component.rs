//! Pods built in code rather than read from a manifest: one component as a pod
//! ([`ComponentPod`]), what `wasmlet run x.wasm` runs. The builder checks what the caller
//! gives it as a manifest would be checked, so it cannot make a pod wasmlet would refuse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{check_dns_label, check_dns_subdomain};
use super::{ContainerSpec, ManifestError, PodSpec, PortSpec, Problem, Resources, RestartPolicy};

/// A pod of one container running one component, built in code: [`PodSpec::component`], then
/// [`ComponentPod::build`]. It runs once (`restartPolicy: Never`); the pod and its container
/// are named after the file unless told otherwise.
///
/// ```no_run
/// # fn demo() -> Result<(), wasmlet::ManifestError> {
/// use std::time::Duration;
/// let spec = wasmlet::PodSpec::component("target/components/http-hello.wasm")
///     .name("web-1")
///     .args(["--verbose"])
///     .port(8080)
///     .grace_period(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(spec.containers()[0].ports()[0].port(), 8080);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a ComponentPod does nothing until it is built"]
pub struct ComponentPod {
    image: PathBuf,
    name: Option<String>,
    container_name: Option<String>,
    args: Vec<String>,
    ports: Vec<u16>,
    grace_period: Option<Duration>,
    resources: Resources,
}

impl PodSpec {
    /// Starts building a pod that runs the component at `path` (see [`ComponentPod`]).
    pub fn component(path: impl AsRef<Path>) -> ComponentPod {
        ComponentPod {
            image: path.as_ref().to_path_buf(),
            name: None,
            container_name: None,
            args: Vec::new(),
            ports: Vec::new(),
            grace_period: None,
            resources: Resources::default(),
        }
    }

    /// A pod of one container running the component at `path` with `args`, once
    /// (`restartPolicy: Never`): what `wasmlet run component.wasm` runs. The pod and container
    /// are named after the file. [`PodSpec::component`] sets more.
    pub fn for_component(path: impl AsRef<Path>, args: Vec<String>) -> PodSpec {
        let built = PodSpec::component(path).args(args).build();
        // Nothing given can be invalid: the names come from the file, and there are no ports.
        built.expect("a component pod with derived names is valid")
    }
}

impl ComponentPod {
    /// The pod's name (`metadata.name`: a DNS subdomain). Default: the file's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The container's name (a DNS label). Default: the file's name.
    pub fn container_name(mut self, name: impl Into<String>) -> Self {
        self.container_name = Some(name.into());
        self
    }

    /// The component's arguments, after its name.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// A port to serve HTTP on, when the component exports `wasi:http/incoming-handler`
    /// (`ports[].containerPort`); call again for more.
    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }

    /// Ports to serve HTTP on, as [`ComponentPod::port`] for each.
    pub fn ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports.extend(ports);
        self
    }

    /// The grace period (`terminationGracePeriodSeconds`). Default: the host's.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = Some(grace);
        self
    }

    /// `resources.limits.cpu`, in millicores (and the request too, unless one is given).
    pub fn cpu_limit(mut self, millicores: u64) -> Self {
        self.resources.cpu_limit = Some(millicores);
        self
    }

    /// `resources.requests.cpu`, in millicores.
    pub fn cpu_request(mut self, millicores: u64) -> Self {
        self.resources.cpu_request = Some(millicores);
        self
    }

    /// `resources.limits.memory`, in bytes.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.resources.memory_limit = Some(bytes);
        self
    }

    /// The pod, checked as a manifest would be: the names, and the ports (1 to 65535, each
    /// once). Every problem is reported at once, with the manifest field it stands for.
    pub fn build(self) -> Result<PodSpec, ManifestError> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, message });
        let derived = name_of_file(&self.image);
        let name = self.name.unwrap_or_else(|| derived.clone());
        if let Err(why) = check_dns_subdomain(&name) {
            problem("metadata.name".into(), why);
        }
        let container_name = self.container_name.unwrap_or(derived);
        if let Err(why) = check_dns_label(&container_name) {
            problem("spec.containers[0].name".into(), why);
        }
        let mut ports: Vec<PortSpec> = Vec::new();
        for (index, port) in self.ports.into_iter().enumerate() {
            let at = format!("spec.containers[0].ports[{index}].containerPort");
            if port == 0 {
                problem(at, "0 is not a port number; expected 1 to 65535".into());
            } else if ports.iter().any(|p| p.port == port) {
                problem(at, format!("port {port} is listed twice"));
            } else {
                ports.push(PortSpec { name: None, port });
            }
        }
        // As a manifest's: a request defaults to the limit, and may not exceed it.
        let mut resources = self.resources;
        resources.cpu_limit = resources.cpu_limit.filter(|limit| *limit > 0);
        resources.cpu_request = resources.cpu_request.or(resources.cpu_limit);
        resources.memory_request = resources.memory_request.or(resources.memory_limit);
        if let (Some(request), Some(limit)) = (resources.cpu_request, resources.cpu_limit)
            && request > limit
        {
            problem(
                "spec.containers[0].resources.requests.cpu".into(),
                format!(
                    "{request}m is more than the limit ({limit}m); a request must be at most its limit"
                ),
            );
        }
        if !problems.is_empty() {
            return Err(ManifestError {
                file: self.image.display().to_string(),
                document: None,
                problems,
            });
        }
        Ok(PodSpec {
            name,
            namespace: "default".into(),
            uid: None,
            termination_grace_period: self.grace_period,
            restart_policy: RestartPolicy::Never,
            volumes: Vec::new(),
            ignored: Vec::new(),
            missing: Vec::new(),
            resources: Default::default(),
            replica: 0,
            init_containers: Vec::new(),
            containers: vec![ContainerSpec {
                name: container_name,
                image: self.image,
                command: Vec::new(),
                args: self.args,
                env: Vec::new(),
                working_dir: None,
                volume_mounts: Vec::new(),
                resources,
                post_start: None,
                pre_stop: None,
                ports,
                liveness_probe: None,
                readiness_probe: None,
                startup_probe: None,
                sidecar: false,
            }],
        })
    }
}

/// A name for a pod or container from a component's file name: lowercase letters, digits and
/// '-', at most 63 characters (`app` if nothing is left), so always a valid DNS label.
fn name_of_file(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(63)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "app".into()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_file_and_stay_valid() {
        let spec = PodSpec::for_component("dir/My_App.v2.wasm", vec!["x".into()]);
        assert_eq!(spec.name(), "my-app-v2");
        assert_eq!(spec.containers()[0].name(), "my-app-v2");
        assert_eq!(spec.containers()[0].args(), ["x"]);
        let long = format!("{}.wasm", "a".repeat(100));
        assert_eq!(PodSpec::for_component(&long, Vec::new()).name().len(), 63);
        assert_eq!(PodSpec::for_component("--.wasm", Vec::new()).name(), "app");
    }

    #[test]
    fn what_the_caller_gives_is_checked() {
        let error = PodSpec::component("x.wasm")
            .name("Not Valid")
            .container_name("also.bad")
            .ports([8080, 0, 8080])
            .build()
            .unwrap_err();
        let paths: Vec<_> = error.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.name",
                "spec.containers[0].name",
                "spec.containers[0].ports[1].containerPort",
                "spec.containers[0].ports[2].containerPort",
            ]
        );
        let spec = PodSpec::component("x.wasm")
            .name("web.v1")
            .port(8080)
            .grace_period(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(spec.name(), "web.v1");
        assert_eq!(spec.containers()[0].name(), "x");
        assert_eq!(
            spec.termination_grace_period(),
            Some(Duration::from_secs(3))
        );
        assert!(!spec.containers()[0].is_sidecar());
    }
}
