//! Containers' private `/tmp` directories ([`TmpDirs`], [`ContainerTmp`]).
//!
//! A container's directory is made when its first instance is set up, on that instance's
//! thread, not when the container starts: making it (tens of microseconds on a journaling file
//! system, more while others are being removed) is not on the way to the container's
//! `Running`, and a container none of whose instances ever runs (one that only serves HTTP and
//! is never asked) makes none. Removing one with its files takes tens to hundreds of
//! microseconds, so on a real host it is removed on a blocking thread once the container has
//! ended: reporting its end does not wait for the disk. Deterministic mode removes them in
//! place, on its one thread.
//!
//! (Making them ahead of need was tried too; but directories made ahead outlive a process that
//! exits without dropping its host, which `wasmlet run` may do.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

/// Says why a container's `/tmp` could not be made (it runs without one).
pub(crate) type TmpError = Box<dyn Fn(std::io::Error) + Send + Sync>;

/// The containers' `/tmp` directories of one host.
pub(crate) struct TmpDirs {
    /// Directories made for containers and not yet removed from the disk.
    in_use: Arc<AtomicUsize>,
    /// Whether directories are removed on blocking threads.
    background: bool,
}

impl TmpDirs {
    /// `background`: remove directories on blocking threads (a real host).
    pub fn new(background: bool) -> TmpDirs {
        TmpDirs {
            in_use: Arc::default(),
            background,
        }
    }

    /// The `/tmp` of one run of container `container` of pod `pod`: an empty directory made
    /// when first asked for ([`ContainerTmp::path`]), and removed with what is in it by
    /// [`TmpDirs::remove`]. If it cannot be made, `failed` is told why, once.
    pub fn container(&self, pod: &str, container: &str, failed: TmpError) -> Arc<ContainerTmp> {
        Arc::new(ContainerTmp {
            state: Mutex::new(TmpState::NotMade {
                prefix: format!("wasmlet-{pod}-{container}-"),
                failed,
            }),
            in_use: self.in_use.clone(),
        })
    }

    /// Removes a container's directory, if it was made, and what is in it. An instance set up
    /// later gets no `/tmp`.
    pub fn remove(&self, tmp: &ContainerTmp) {
        let state = std::mem::replace(&mut *tmp.state.lock().unwrap(), TmpState::Removed);
        let TmpState::Made(dir) = state else { return };
        match tokio::runtime::Handle::try_current() {
            // A runtime waits for its blocking tasks when it shuts down, and drops (which
            // removes) those it did not start.
            Ok(runtime) if self.background => drop(runtime.spawn_blocking(move || drop(dir))),
            _ => drop(dir),
        }
    }

    /// Directories made for containers and not yet removed.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }
}

/// One container run's `/tmp`, made when first asked for.
pub(crate) struct ContainerTmp {
    state: Mutex<TmpState>,
    in_use: Arc<AtomicUsize>,
}

enum TmpState {
    NotMade {
        prefix: String,
        failed: TmpError,
    },
    Made(TmpDir),
    /// It could not be made, or it was removed.
    Removed,
}

impl ContainerTmp {
    /// The directory, made now if this is the first time it is asked for; `None` if it could
    /// not be made or was removed.
    pub fn path(&self) -> Option<PathBuf> {
        let mut state = self.state.lock().unwrap();
        if let TmpState::NotMade { prefix, failed } = &*state {
            match tempfile::Builder::new().prefix(prefix).tempdir() {
                Ok(dir) => {
                    self.in_use.fetch_add(1, Ordering::SeqCst);
                    *state = TmpState::Made(TmpDir {
                        dir: Some(dir),
                        in_use: self.in_use.clone(),
                    });
                }
                Err(error) => {
                    failed(error);
                    *state = TmpState::Removed;
                }
            }
        }
        match &*state {
            TmpState::Made(dir) => Some(dir.path().to_path_buf()),
            _ => None,
        }
    }
}

/// A made directory: removed, with what is in it, when dropped.
struct TmpDir {
    dir: Option<TempDir>,
    in_use: Arc<AtomicUsize>,
}

impl TmpDir {
    fn path(&self) -> &std::path::Path {
        self.dir.as_ref().expect("there until dropped").path()
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        drop(self.dir.take());
        self.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never_fails() -> TmpError {
        Box::new(|error| panic!("{error}"))
    }

    #[tokio::test]
    async fn a_directory_is_made_when_first_asked_for_and_removed_on_a_blocking_thread() {
        let dirs = TmpDirs::new(true);
        let tmp = dirs.container("pod", "app", never_fails());
        assert_eq!(dirs.in_use(), 0, "nothing made before it is asked for");
        let path = tmp.path().unwrap();
        assert_eq!(tmp.path(), Some(path.clone()), "made once");
        assert_eq!(dirs.in_use(), 1);
        std::fs::write(path.join("file"), "x").unwrap();
        dirs.remove(&tmp);
        while dirs.in_use() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(!path.exists());
        assert_eq!(tmp.path(), None, "none after its removal");
    }

    #[test]
    fn without_blocking_threads_it_is_removed_in_place() {
        let dirs = TmpDirs::new(true);
        // No runtime here: in place, as in deterministic mode.
        let tmp = dirs.container("pod", "app", never_fails());
        let path = tmp.path().unwrap();
        dirs.remove(&tmp);
        assert!(!path.exists());
        assert_eq!(dirs.in_use(), 0);
    }

    #[test]
    fn one_never_made_is_removed_without_a_trace() {
        let dirs = TmpDirs::new(true);
        let tmp = dirs.container("pod", "app", never_fails());
        dirs.remove(&tmp);
        assert_eq!(tmp.path(), None);
        assert_eq!(dirs.in_use(), 0);
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_reported_once() {
        let dirs = TmpDirs::new(true);
        let reports = Arc::new(AtomicUsize::new(0));
        let counted = reports.clone();
        // A prefix with a path separator in a directory that is not there.
        let tmp = dirs.container(
            "no-such-dir/pod",
            "app",
            Box::new(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(tmp.path(), None);
        assert_eq!(tmp.path(), None);
        assert_eq!(reports.load(Ordering::SeqCst), 1);
        assert_eq!(dirs.in_use(), 0);
    }
}
