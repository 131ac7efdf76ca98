//! The pod's volumes ([`PodVolume`]) and where a container's mounts of them are on the host.

use std::path::{Path, PathBuf};

use super::PodShared;
use crate::lifecycle::node::Node;
use crate::manifest::{FileContent, PodField, PodSpec, VolumeSource};
use crate::runtime::{Mount, VolumeWrites};

/// A pod volume on the host: its directory, and for an `emptyDir` the temporary directory
/// that is removed with it.
pub(crate) struct PodVolume {
    name: String,
    path: PathBuf,
    /// The fault writes to its files meet, counted over the pod's life (deterministic mode).
    write_faults: Option<std::sync::Arc<VolumeWrites>>,
    _temporary: Option<tempfile::TempDir>,
}

/// Where claim `claim` of namespace `namespace` lives under a host's data directory (a
/// local-path provisioner's layout): it outlives the pods that mount it.
pub(crate) fn claim_dir(data_dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    data_dir.join("claims").join(namespace).join(claim)
}

impl PodVolume {
    /// Makes the pod's volumes: a fresh directory for each `emptyDir`, a `hostPath` made if
    /// asked, the files of a `configMap`, `secret`, `downwardAPI` or `projected` volume, a
    /// claim's directory under the host's data directory. An error here starts nothing.
    pub fn prepare(
        spec: &PodSpec,
        node: &Node,
        uid: &str,
        address: std::net::IpAddr,
    ) -> anyhow::Result<Vec<PodVolume>> {
        use anyhow::Context as _;
        let mut volumes = Vec::new();
        for volume in &spec.volumes {
            let (path, temporary) = match &volume.source {
                VolumeSource::Files(files) => {
                    let dir = tempfile::Builder::new()
                        .prefix(&format!("wasmlet-{}-{}-", spec.name, volume.name))
                        .tempdir()
                        .with_context(|| format!("creating volume `{}`", volume.name))?;
                    for file in files {
                        let bytes = match &file.content {
                            FileContent::Bytes(bytes) => bytes.clone(),
                            FileContent::Field(field) => match field {
                                PodField::Name => spec.name.clone(),
                                PodField::Namespace => spec.namespace.clone(),
                                PodField::Uid => uid.to_string(),
                                PodField::NodeName => node.node_name.clone(),
                                PodField::PodIp => address.to_string(),
                            }
                            .into_bytes(),
                        };
                        let path = dir.path().join(&file.path);
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::write(&path, bytes)
                            .and_then(|()| {
                                use std::os::unix::fs::PermissionsExt as _;
                                std::fs::set_permissions(
                                    &path,
                                    std::fs::Permissions::from_mode(file.mode),
                                )
                            })
                            .with_context(|| {
                                format!("writing `{}` of volume `{}`", file.path, volume.name)
                            })?;
                    }
                    (dir.path().to_path_buf(), Some(dir))
                }
                VolumeSource::Claim { claim, .. } => {
                    let Some(data_dir) = &node.config.data_dir else {
                        anyhow::bail!(
                            "volume `{}` needs claim `{claim}`, and this host has no data \
                             directory for claims (HostConfig::data_dir)",
                            volume.name
                        );
                    };
                    let path = claim_dir(data_dir, &spec.namespace, claim);
                    std::fs::create_dir_all(&path).with_context(|| {
                        format!(
                            "creating the directory `{}` of claim `{claim}`",
                            path.display()
                        )
                    })?;
                    (path, None)
                }
                VolumeSource::EmptyDir => {
                    let dir = tempfile::Builder::new()
                        .prefix(&format!("wasmlet-{}-{}-", spec.name, volume.name))
                        .tempdir()
                        .with_context(|| format!("creating emptyDir volume `{}`", volume.name))?;
                    (dir.path().to_path_buf(), Some(dir))
                }
                VolumeSource::HostPath { path, create } => {
                    if *create {
                        std::fs::create_dir_all(path).with_context(|| {
                            format!(
                                "creating hostPath `{}` of volume `{}`",
                                path.display(),
                                volume.name
                            )
                        })?;
                    }
                    anyhow::ensure!(
                        path.is_dir(),
                        "hostPath `{}` of volume `{}` is not a directory",
                        path.display(),
                        volume.name
                    );
                    (path.clone(), None)
                }
            };
            volumes.push(PodVolume {
                name: volume.name.clone(),
                path,
                write_faults: node.faults.volume(&volume.name).map(VolumeWrites::new),
                _temporary: temporary,
            });
        }
        Ok(volumes)
    }
}

impl PodShared {
    /// Where `container`'s volume mounts are on the host. A `subPath` is walked from the volume
    /// root one directory at a time, following no symlink and making what is missing, and the
    /// directory it ends at stays open: the guest is given that directory, never a path that
    /// could be swapped for a link before its instance starts.
    pub fn mounts(&self, container: &crate::manifest::ContainerSpec) -> Result<Vec<Mount>, String> {
        let volumes = self.volumes.lock().unwrap();
        let mut mounts = Vec::new();
        for mount in &container.volume_mounts {
            let volume = volumes
                .iter()
                .find(|v| v.name == mount.volume)
                .ok_or_else(|| format!("volume `{}` is gone", mount.volume))?;
            let guest_path = mount.mount_path.clone();
            let host_mount = match &mount.sub_path {
                None => Mount::new(volume.path.clone(), guest_path, mount.read_only),
                Some(sub) => Mount::beneath(&volume.path, sub, guest_path, mount.read_only)
                    .map_err(|why| {
                        format!("subPath `{sub}` of volume `{}`: {why}", mount.volume)
                    })?,
            };
            mounts.push(host_mount.with_write_faults(volume.write_faults.clone()));
        }
        Ok(mounts)
    }
}
