//! Giving memory back to the system once instances have ended.
//!
//! Every instance's store, WASI context and buffers come from the process allocator. glibc's
//! keeps what a burst of instances freed — after a wave of 1,000 pods the process stays at the
//! wave's peak (about 880 MiB in the churn benchmark) although nothing is in use. The
//! [`MemoryReleaser`] asks it to return its free pages (`malloc_trim`) once instances or guest
//! runtime threads have ended and then none has for [`QUIET`], or at the latest [`MAX_DELAY`]
//! after the first of them, on a thread of its own: a trim walks every arena (74 ms for
//! 880 MiB), which must delay neither a kill nor the epoch. Elsewhere than on glibc the releaser
//! does nothing.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long nothing must have ended before freed memory is returned.
pub(crate) const QUIET: Duration = Duration::from_secs(1);
/// The longest freed memory waits while instances keep ending (a host under steady load).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30);

/// Returns freed memory to the system after instances end (see the module docs).
pub(crate) struct MemoryReleaser {
    state: Mutex<ReleaseState>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct ReleaseState {
    /// When the first instance or thread ended since the last release, and when the latest did.
    pending: Option<(Instant, Instant)>,
    /// Releases so far, each with the time it began.
    #[cfg(test)]
    releases: Vec<Instant>,
    stopped: bool,
}

impl MemoryReleaser {
    pub fn start() -> Arc<Self> {
        let releaser = Arc::new(MemoryReleaser {
            state: Mutex::new(ReleaseState::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        });
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let thread = std::thread::Builder::new()
                .name("wasmlet-release".into())
                .spawn({
                    let releaser = releaser.clone();
                    move || releaser.run()
                })
                .expect("spawning the memory release thread");
            *releaser.thread.lock().unwrap() = Some(thread);
        }
        releaser
    }

    /// Notes that an instance or a thread has ended and freed its memory.
    pub fn memory_freed(&self) {
        // Real time: the memory is the process's, which frees it on this machine's time, not
        // on the host's (possibly virtual) clock.
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let first = state.pending.map_or(now, |(first, _)| first);
        if state.pending.is_none() {
            self.wake.notify_one();
        }
        state.pending = Some((first, now));
    }

    pub fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
        self.wake.notify_one();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }

    fn run(&self) {
        let mut state = self.state.lock().unwrap();
        loop {
            if state.stopped {
                return;
            }
            let Some((first, latest)) = state.pending else {
                state = self.wake.wait(state).unwrap();
                continue;
            };
            let due = (latest + QUIET).min(first + MAX_DELAY);
            // Real time, as in `memory_freed`.
            let now = Instant::now();
            if now < due {
                state = self.wake.wait_timeout(state, due - now).unwrap().0;
                continue;
            }
            state.pending = None;
            #[cfg(test)]
            state.releases.push(now);
            drop(state);
            trim();
            state = self.state.lock().unwrap();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only returns free pages of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn wait_for_releases(releaser: &MemoryReleaser, count: usize) -> Vec<Instant> {
        let give_up = Instant::now() + QUIET * 5;
        loop {
            let releases = releaser.state.lock().unwrap().releases.clone();
            if releases.len() >= count || Instant::now() > give_up {
                return releases;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn memory_is_released_once_nothing_has_ended_for_the_quiet_period() {
        let releaser = MemoryReleaser::start();
        std::thread::sleep(QUIET + Duration::from_millis(200));
        assert!(
            releaser.state.lock().unwrap().releases.is_empty(),
            "nothing ended yet"
        );

        // Endings half a quiet period apart keep postponing the release.
        let mut latest = Instant::now();
        for _ in 0..4 {
            latest = Instant::now();
            releaser.memory_freed();
            std::thread::sleep(QUIET / 2);
        }
        let releases = wait_for_releases(&releaser, 1);
        assert_eq!(releases.len(), 1, "one release for the whole burst");
        assert!(
            releases[0] >= latest + QUIET,
            "released before the burst was over"
        );

        releaser.memory_freed();
        assert_eq!(
            wait_for_releases(&releaser, 2).len(),
            2,
            "a later ending, a later release"
        );
        releaser.stop();
        assert!(releaser.thread.lock().unwrap().is_none());
    }
}
