//! A value that tasks watch for changes, waking its waiters in the order they began to wait.
//!
//! Like `tokio::sync::watch`, but deterministic: tokio's watch spreads waiters over shards chosen
//! at random, so two containers waiting for the same stop request would wake in a different
//! order from run to run. Deterministic mode ([`crate::testing`]) needs one order, every time.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// The owning side: changes the value and wakes every watcher. Dropping it closes the cell.
pub(crate) struct Watched<T> {
    shared: Arc<Shared<T>>,
}

/// One watcher of a [`Watched`] value: it remembers which version it has seen.
pub(crate) struct Watcher<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes waiters first-in first-out.
    notify: Notify,
}

struct State<T> {
    value: T,
    version: u64,
    closed: bool,
}

/// The [`Watched`] value was dropped.
#[derive(Debug)]
pub(crate) struct Closed;

impl<T: Clone> Watched<T> {
    pub fn new(value: T) -> Self {
        Watched {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    value,
                    version: 0,
                    closed: false,
                }),
                notify: Notify::new(),
            }),
        }
    }

    /// Lets `modify` change the value; if it says it did, wakes every watcher.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = {
            let mut state = self.shared.lock();
            let modified = modify(&mut state.value);
            if modified {
                state.version += 1;
            }
            modified
        };
        if modified {
            self.shared.notify.notify_waiters();
        }
        modified
    }

    /// Replaces the value and wakes every watcher.
    pub fn send_replace(&self, value: T) {
        self.send_if_modified(|current| {
            *current = value;
            true
        });
    }

    /// The value now.
    pub fn get(&self) -> T {
        self.shared.lock().value.clone()
    }

    /// A watcher that has seen the current value.
    pub fn subscribe(&self) -> Watcher<T> {
        Watcher {
            seen: self.shared.lock().version,
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_waiters();
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Clone> Watcher<T> {
    /// Makes the next [`Watcher::changed`] return at once, as if the value had just changed.
    pub fn mark_changed(&mut self) {
        self.seen = self.seen.wrapping_sub(1);
    }

    /// Waits until the value changes after what this watcher has seen (at once if it already
    /// has); `Err` once the owner is gone and nothing new is left to see.
    pub async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so that a change between the look and the wait is
            // not missed.
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.version != self.seen {
                    return Ok(());
                }
                if state.closed {
                    return Err(Closed);
                }
            }
            notified.await;
        }
    }

    /// The value now, marked as seen.
    pub fn borrow_and_update(&mut self) -> T {
        let state = self.shared.lock();
        self.seen = state.version;
        state.value.clone()
    }

    /// Waits until `condition` holds for the value, and returns that value; `Err` if the owner
    /// went away first.
    pub async fn wait_for(&mut self, condition: impl Fn(&T) -> bool) -> Result<T, Closed> {
        self.mark_changed();
        loop {
            self.changed().await?;
            let value = self.borrow_and_update();
            if condition(&value) {
                return Ok(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_see_changes_and_wake_in_the_order_they_waited() {
        let cell = Arc::new(Watched::new(0u32));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["first", "second", "third"] {
            let mut watcher = cell.subscribe();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                watcher.changed().await.unwrap();
                order
                    .lock()
                    .unwrap()
                    .push((name, watcher.borrow_and_update()));
            }));
            // Let the task begin waiting before the next one.
            tokio::task::yield_now().await;
        }
        cell.send_replace(7);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [("first", 7), ("second", 7), ("third", 7)]
        );
    }

    #[tokio::test]
    async fn a_closed_cell_ends_waits_and_a_marked_watcher_returns_at_once() {
        let cell = Watched::new(Some(1));
        let mut watcher = cell.subscribe();
        watcher.mark_changed();
        watcher.changed().await.unwrap();
        assert_eq!(watcher.wait_for(Option::is_some).await.unwrap(), Some(1));
        let mut waiting = cell.subscribe();
        drop(cell);
        assert!(waiting.changed().await.is_err());
    }
}
