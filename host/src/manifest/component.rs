//! Pods built in code rather than read from a manifest: one component as a pod, what
//! `wasmlet run x.wasm` runs.

use std::path::Path;

use super::{ContainerSpec, PodSpec, RestartPolicy};

impl PodSpec {
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
