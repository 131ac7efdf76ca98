//! The pod's volumes ([`PodVolume`]) and where a container's mounts of them are on the host.

use std::path::PathBuf;

use super::PodShared;
use crate::manifest::{PodSpec, VolumeSource};
use crate::runtime::Mount;

/// A pod volume on the host: its directory, and for an `emptyDir` the temporary directory
/// that is removed with it.
pub(crate) struct PodVolume {
    name: String,
    path: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl PodVolume {
    /// Makes the pod's volumes: a fresh directory for each `emptyDir`, a `hostPath` made if
    /// asked. An error here starts nothing.
    pub fn prepare(spec: &PodSpec) -> anyhow::Result<Vec<PodVolume>> {
        use anyhow::Context as _;
        let mut volumes = Vec::new();
        for volume in &spec.volumes {
            let (path, temporary) = match &volume.source {
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
            mounts.push(match &mount.sub_path {
                None => Mount::new(volume.path.clone(), guest_path, mount.read_only),
                Some(sub) => Mount::beneath(&volume.path, sub, guest_path, mount.read_only)
                    .map_err(|why| {
                        format!("subPath `{sub}` of volume `{}`: {why}", mount.volume)
                    })?,
            });
        }
        Ok(mounts)
    }
}
