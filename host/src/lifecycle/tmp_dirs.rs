//! Containers' private `/tmp` directories ([`TmpDirs`]). Removing one with its files takes tens
//! to hundreds of microseconds on a journaling file system, so on a real host a container's is
//! removed on a blocking thread once it has ended: reporting its end does not wait for the
//! disk. Deterministic mode removes them in place, on its one thread.
//!
//! (Making them ahead of need would take the making off a container's start as well; but
//! directories made ahead outlive a process that exits without dropping its host, which
//! `wasmlet run` may do, so each container makes its own when it starts.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

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

    /// A new, empty directory for the `/tmp` of container `container` of pod `pod`, removed
    /// with what is in it when dropped (on a blocking thread by [`TmpDirs::remove`]).
    pub fn make(&self, pod: &str, container: &str) -> std::io::Result<TmpDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wasmlet-{pod}-{container}-"))
            .tempdir()?;
        self.in_use.fetch_add(1, Ordering::SeqCst);
        Ok(TmpDir {
            dir: Some(dir),
            in_use: self.in_use.clone(),
        })
    }

    /// Removes a container's directory and what is in it.
    pub fn remove(&self, dir: TmpDir) {
        match tokio::runtime::Handle::try_current() {
            // A runtime waits for its blocking tasks when it shuts down.
            Ok(runtime) if self.background => drop(runtime.spawn_blocking(move || drop(dir))),
            _ => drop(dir),
        }
    }

    /// Directories made for containers and not yet removed.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }
}

/// A container's `/tmp` directory: removed, with what is in it, when dropped.
pub(crate) struct TmpDir {
    dir: Option<TempDir>,
    in_use: Arc<AtomicUsize>,
}

impl TmpDir {
    pub fn path(&self) -> &std::path::Path {
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

    #[tokio::test]
    async fn a_directory_is_removed_with_its_files_on_a_blocking_thread() {
        let dirs = TmpDirs::new(true);
        let dir = dirs.make("pod", "app").unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let path = dir.path().to_path_buf();
        assert_eq!(dirs.in_use(), 1);
        dirs.remove(dir);
        while dirs.in_use() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(!path.exists());
    }

    #[test]
    fn without_blocking_threads_it_is_removed_in_place() {
        let dirs = TmpDirs::new(true);
        // No runtime here: in place, as in deterministic mode.
        let dir = dirs.make("pod", "app").unwrap();
        let path = dir.path().to_path_buf();
        dirs.remove(dir);
        assert!(!path.exists());
        assert_eq!(dirs.in_use(), 0);
    }
}
