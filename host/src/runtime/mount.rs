//! Volume mounts ([`Mount`]): a directory of the host a container's instances see at a path of
//! their own, opened safely when it is a `subPath` inside a volume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::write_faults::VolumeWrites;

/// A directory of the host a container sees at `guest_path`.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
    /// The fault writes to its files meet, if any (deterministic mode).
    pub write_faults: Option<Arc<VolumeWrites>>,
    /// The open directory `host_path` names (`/proc/self/fd/N`), kept open while the mount is.
    _held: Option<Arc<std::os::fd::OwnedFd>>,
}

impl Mount {
    /// `host_path` as a whole, seen at `guest_path`.
    pub fn new(host_path: PathBuf, guest_path: String, read_only: bool) -> Mount {
        Mount {
            host_path,
            guest_path,
            read_only,
            write_faults: None,
            _held: None,
        }
    }

    /// The same, its writes meeting `faults`.
    pub fn with_write_faults(self, faults: Option<Arc<VolumeWrites>>) -> Mount {
        Mount {
            write_faults: faults,
            ..self
        }
    }

    /// `sub` inside `root`, seen at `guest_path`. `sub` is walked from `root` one directory at
    /// a time, following no symlink and making what is missing, and the directory it ends at
    /// stays open: the guest is given that directory, never a path that could be swapped for a
    /// link before its instance starts. `Err` says why `sub` cannot be mounted.
    pub fn beneath(
        root: &Path,
        sub: &str,
        guest_path: String,
        read_only: bool,
    ) -> Result<Mount, String> {
        let dir = open_beneath(root, sub)?;
        use std::os::fd::AsRawFd as _;
        let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        Ok(Mount {
            host_path: path,
            guest_path,
            read_only,
            write_faults: None,
            _held: Some(Arc::new(dir)),
        })
    }
}

/// Opens `sub` inside `root`, one component at a time, refusing any component that is a
/// symlink or not a directory, and making missing ones (Kubernetes makes a missing subPath).
fn open_beneath(root: &Path, sub: &str) -> Result<std::os::fd::OwnedFd, String> {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    use rustix::io::Errno;
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, flags, Mode::empty())
        .map_err(|e| format!("opening the volume `{}`: {e}", root.display()))?;
    for component in Path::new(sub).components() {
        let name = match component {
            std::path::Component::Normal(name) => name,
            std::path::Component::CurDir => continue,
            _ => return Err("must be relative, without `..`".into()),
        };
        let open =
            |dir: &std::os::fd::OwnedFd| openat(dir, name, flags | OFlags::NOFOLLOW, Mode::empty());
        let next = match open(&dir) {
            Err(Errno::NOENT) => {
                match mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(format!("making `{}`: {e}", name.to_string_lossy())),
                }
                open(&dir)
            }
            other => other,
        };
        dir = match next {
            Ok(next) => next,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(format!(
                    "`{}` is a symlink or not a directory; a subPath may not leave its volume, \
                     and wasmlet follows no link inside one",
                    name.to_string_lossy()
                ));
            }
            Err(e) => return Err(format!("opening `{}`: {e}", name.to_string_lossy())),
        };
    }
    Ok(dir)
}
