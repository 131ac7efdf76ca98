//! Time, as the lifecycle sees it: one [`Clock`] that every part of wasmlet reads and schedules
//! on (grace deadlines, hook sleeps, `--stop-after`, timestamps), so that a virtual clock can
//! replace wall time in one place.
//!
//! [`SystemClock`] is the real clock. Its timers run on one dedicated thread that sleeps until the
//! earliest deadline and runs the action there, on that thread, not on an async runtime: a kill
//! must land at its deadline even when every runtime worker is busy running guests, so deadline
//! actions never wait for a scheduler.
//!
//! [`VirtualClock`] is the clock of deterministic mode ([`crate::testing`]): time stands still
//! until something moves it — a guest's CPU time (fuel) or a jump to the next timer when nothing
//! else can run — and timers fire in a fixed order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// An action a clock runs at its deadline.
pub type TimerAction = Box<dyn FnOnce() + Send + 'static>;

/// The source of time for everything wasmlet does.
pub trait Clock: Send + Sync + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// The current wall-clock time, for timestamps in statuses and events.
    fn wall_time(&self) -> SystemTime;

    /// Runs `action` once, as soon as possible after `at` (at once if `at` has passed). The
    /// action runs on the clock's own thread: it must be short and must not block.
    fn call_at(&self, at: Instant, action: TimerAction) -> TimerId;

    /// Cancels a timer that has not fired yet; does nothing if it already fired.
    fn cancel(&self, id: TimerId);
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("wall_time", &self.wall_time())
            .finish_non_exhaustive()
    }
}

/// Names a scheduled timer, for [`Clock::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

/// Waits until `at` on `clock`. Dropping the future cancels the timer.
pub fn sleep_until(
    clock: &Arc<dyn Clock>,
    at: Instant,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let (fired, wait) = tokio::sync::oneshot::channel::<()>();
    let id = clock.call_at(
        at,
        Box::new(move || {
            let _ = fired.send(());
        }),
    );
    let guard = CancelOnDrop {
        clock: clock.clone(),
        id,
    };
    Box::pin(async move {
        let _ = wait.await;
        drop(guard);
    })
}

/// Waits for `duration` on `clock`.
pub fn sleep(
    clock: &Arc<dyn Clock>,
    duration: Duration,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    sleep_until(clock, after(clock.now(), duration))
}

/// `start + duration`, saturating at a century from `start` instead of overflowing: a grace
/// period of `i64::MAX` seconds is a manifest's right, and means "never".
pub fn after(start: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start.checked_add(duration.min(CENTURY)).unwrap_or(start)
}

/// Cancels a timer when dropped.
pub struct CancelOnDrop {
    clock: Arc<dyn Clock>,
    id: TimerId,
}

impl CancelOnDrop {
    /// Ties the timer `id` of `clock` to the returned guard's lifetime.
    pub fn new(clock: Arc<dyn Clock>, id: TimerId) -> Self {
        CancelOnDrop { clock, id }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.clock.cancel(self.id);
    }
}

/// Wall time, with deadlines kept by one precise timer thread.
pub struct SystemClock {
    shared: Arc<TimerShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TimerShared {
    state: Mutex<TimerState>,
    wake: Condvar,
}

#[derive(Default)]
struct TimerState {
    queue: BinaryHeap<Reverse<(Instant, TimerId)>>,
    actions: HashMap<TimerId, TimerAction>,
    next_id: u64,
    shutdown: bool,
}

impl SystemClock {
    /// Starts the clock's timer thread.
    pub fn new() -> Arc<Self> {
        let shared = Arc::new(TimerShared::default());
        let thread = std::thread::Builder::new()
            .name("wasmlet-deadlines".into())
            .spawn({
                let shared = shared.clone();
                move || run_timers(&shared)
            })
            .expect("spawning the deadline thread");
        Arc::new(SystemClock {
            shared,
            thread: Some(thread),
        })
    }
}

impl TimerShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn run_timers(shared: &TimerShared) {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        match state.queue.peek().copied() {
            Some(Reverse((at, id))) if at <= now => {
                state.queue.pop();
                if let Some(action) = state.actions.remove(&id) {
                    // Run without the lock: the action may schedule or cancel timers. A panic
                    // must not take the thread down, or no deadline would fire again.
                    drop(state);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(action)).is_err() {
                        tracing::error!("a timer action panicked; the deadline thread goes on");
                    }
                    state = shared.lock();
                }
            }
            Some(Reverse((at, _))) => {
                state = shared
                    .wake
                    .wait_timeout(state, at - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            None => {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            }
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_time(&self) -> SystemTime {
        SystemTime::now()
    }

    fn call_at(&self, at: Instant, action: TimerAction) -> TimerId {
        let mut state = self.shared.lock();
        let id = TimerId(state.next_id);
        state.next_id += 1;
        let earliest = state
            .queue
            .peek()
            .is_none_or(|Reverse((first, _))| at < *first);
        state.queue.push(Reverse((at, id)));
        state.actions.insert(id, action);
        drop(state);
        if earliest {
            self.shared.wake.notify_one();
        }
        id
    }

    fn cancel(&self, id: TimerId) {
        // The action is dropped after unlocking: it may own things that take time to drop.
        let action = {
            let mut state = self.shared.lock();
            let action = state.actions.remove(&id);
            let TimerState { queue, actions, .. } = &mut *state;
            compact(queue, actions);
            action
        };
        drop(action);
    }
}

impl Drop for SystemClock {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A cancelled timer's queue entry stays (finding it in a heap is costly) and is skipped when it
/// comes up. Guests that poll with long timeouts cancel timers all the time, so once stale
/// entries outnumber live ones the queue is rebuilt from the live ones: amortised O(1) a cancel.
fn compact(
    queue: &mut BinaryHeap<Reverse<(Instant, TimerId)>>,
    actions: &HashMap<TimerId, TimerAction>,
) {
    if queue.len() > 64 && queue.len() > 2 * actions.len() {
        queue.retain(|Reverse((_, id))| actions.contains_key(id));
    }
}

/// Virtual time: it moves only when told to, and its timers fire only when it is told to fire
/// them, in a fixed order — by deadline, then in the order they were set. Nothing here runs by
/// itself; deterministic mode ([`crate::testing`]) drives it from its one thread.
pub struct VirtualClock {
    origin: Instant,
    wall_origin: SystemTime,
    /// A step of the wall clock, injected (`wasmlet test`'s faults).
    wall_jump: Mutex<Option<ClockJump>>,
    state: Mutex<VirtualState>,
}

/// A step of the wall clock: at `at` of the run's time, the wall clock moves by `by`, forward or
/// back (as NTP steps a node's clock); the monotonic clock goes on as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockJump {
    /// When, from the start of the run.
    pub at: Duration,
    /// How far.
    pub by: Duration,
    /// Whether it steps back rather than forward.
    pub back: bool,
}

#[derive(Default)]
struct VirtualState {
    elapsed: Duration,
    queue: BinaryHeap<Reverse<(Instant, TimerId)>>,
    actions: HashMap<TimerId, TimerAction>,
    next_id: u64,
}

impl VirtualClock {
    /// A clock at virtual zero, whose wall time starts at `wall_origin`.
    pub fn new(wall_origin: SystemTime) -> Arc<Self> {
        Arc::new(VirtualClock {
            origin: Instant::now(),
            wall_origin,
            wall_jump: Mutex::new(None),
            state: Mutex::new(VirtualState::default()),
        })
    }

    /// Makes the wall clock step as `jump` says (the monotonic clock goes on as before).
    pub fn set_wall_jump(&self, jump: Option<ClockJump>) {
        *self.wall_jump.lock().unwrap() = jump;
    }

    /// Virtual time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    /// The instant of virtual time zero.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Moves time forward by `by` without firing anything.
    pub(crate) fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.elapsed = state.elapsed.saturating_add(by);
    }

    /// Moves time forward to `at` (never back) without firing anything.
    pub(crate) fn advance_to(&self, at: Instant) {
        let mut state = self.lock();
        let target = at.saturating_duration_since(self.origin);
        if target > state.elapsed {
            state.elapsed = target;
        }
    }

    /// How many timers are pending.
    pub(crate) fn pending(&self) -> usize {
        self.lock().actions.len()
    }

    /// The earliest pending deadline, if any timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut state = self.lock();
        // Cancelled timers leave their queue entry behind; skip them here.
        while let Some(Reverse((at, id))) = state.queue.peek().copied() {
            if state.actions.contains_key(&id) {
                return Some(at);
            }
            state.queue.pop();
        }
        None
    }

    /// Runs every action due now, by deadline and then in the order set, including actions that
    /// earlier ones set for now. Returns how many ran.
    pub(crate) fn fire_due(&self) -> usize {
        let mut fired = 0;
        loop {
            let mut state = self.lock();
            let now = self.origin + state.elapsed;
            let action = match state.queue.peek().copied() {
                Some(Reverse((at, id))) if at <= now => {
                    state.queue.pop();
                    state.actions.remove(&id)
                }
                _ => return fired,
            };
            drop(state);
            if let Some(action) = action {
                fired += 1;
                action();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VirtualState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.origin + self.lock().elapsed
    }

    fn wall_time(&self) -> SystemTime {
        let elapsed = self.lock().elapsed;
        let wall = self.wall_origin + elapsed;
        match *self.wall_jump.lock().unwrap() {
            Some(jump) if elapsed >= jump.at && jump.back => {
                wall.checked_sub(jump.by).unwrap_or(SystemTime::UNIX_EPOCH)
            }
            Some(jump) if elapsed >= jump.at => wall + jump.by,
            _ => wall,
        }
    }

    fn call_at(&self, at: Instant, action: TimerAction) -> TimerId {
        let mut state = self.lock();
        let id = TimerId(state.next_id);
        state.next_id += 1;
        state.queue.push(Reverse((at, id)));
        state.actions.insert(id, action);
        id
    }

    fn cancel(&self, id: TimerId) {
        let action = {
            let mut state = self.lock();
            let action = state.actions.remove(&id);
            let VirtualState { queue, actions, .. } = &mut *state;
            compact(queue, actions);
            action
        };
        drop(action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_and_cancelled_ones_do_not() {
        let clock: Arc<dyn Clock> = SystemClock::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let start = clock.now();
        for (delay_ms, label) in [(30, "c"), (10, "a"), (20, "b")] {
            let tx = tx.clone();
            clock.call_at(
                start + Duration::from_millis(delay_ms),
                Box::new(move || tx.send(label).unwrap()),
            );
        }
        let cancelled = clock.call_at(
            start + Duration::from_millis(15),
            Box::new(move || tx.send("cancelled").unwrap()),
        );
        clock.cancel(cancelled);
        let order: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_panicking_action_does_not_stop_later_timers() {
        let clock: Arc<dyn Clock> = SystemClock::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let start = clock.now();
        clock.call_at(start, Box::new(|| panic!("an action fails")));
        clock.call_at(
            start + Duration::from_millis(5),
            Box::new(move || tx.send("still ticking").unwrap()),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("still ticking"));
    }

    #[test]
    fn cancelled_timers_do_not_pile_up() {
        let clock = SystemClock::new();
        let far = clock.now() + Duration::from_secs(3600);
        for _ in 0..10_000 {
            let id = clock.call_at(far, Box::new(|| {}));
            clock.cancel(id);
        }
        assert!(clock.shared.lock().queue.len() <= 64);
        let virtual_clock = VirtualClock::new(SystemTime::UNIX_EPOCH);
        for _ in 0..10_000 {
            let id = virtual_clock.call_at(far, Box::new(|| {}));
            virtual_clock.cancel(id);
        }
        assert!(virtual_clock.lock().queue.len() <= 64);
    }

    #[test]
    fn far_deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365 * 99));
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn virtual_timers_fire_only_when_told_by_deadline_then_order_set() {
        let clock = VirtualClock::new(SystemTime::UNIX_EPOCH);
        let fired = Arc::new(Mutex::new(Vec::new()));
        let start = clock.now();
        for (delay_ms, label) in [(20, "b1"), (10, "a"), (20, "b2"), (30, "c")] {
            let fired = fired.clone();
            clock.call_at(
                start + Duration::from_millis(delay_ms),
                Box::new(move || fired.lock().unwrap().push(label)),
            );
        }
        assert_eq!(clock.fire_due(), 0, "nothing is due at zero");
        clock.advance(Duration::from_millis(25));
        assert_eq!(clock.fire_due(), 3);
        assert_eq!(*fired.lock().unwrap(), ["a", "b1", "b2"]);
        assert_eq!(
            clock.next_deadline(),
            Some(start + Duration::from_millis(30))
        );
        assert_eq!(clock.elapsed(), Duration::from_millis(25));
        assert_eq!(
            clock.wall_time(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(25)
        );
    }

    #[test]
    fn a_virtual_timer_set_for_now_by_an_action_fires_in_the_same_round() {
        let clock = VirtualClock::new(SystemTime::UNIX_EPOCH);
        let fired = Arc::new(Mutex::new(Vec::new()));
        let (inner_clock, inner_fired) = (clock.clone(), fired.clone());
        clock.call_at(
            clock.now(),
            Box::new(move || {
                inner_fired.lock().unwrap().push("outer");
                let fired = inner_fired.clone();
                inner_clock.call_at(
                    inner_clock.now(),
                    Box::new(move || fired.lock().unwrap().push("inner")),
                );
            }),
        );
        assert_eq!(clock.fire_due(), 2);
        assert_eq!(*fired.lock().unwrap(), ["outer", "inner"]);
    }

    /// Everything of a pod's life keeps time on the host's [`Clock`], so that deterministic mode
    /// can replace it. Outside this module, a read of real time must say why real time is right
    /// there, in a comment on or just above it that says "real time".
    #[test]
    fn real_time_is_read_outside_the_clock_only_where_a_comment_says_why() {
        const READS: [&str; 4] = [
            "Instant::now()",
            "SystemTime::now()",
            "tokio::time::",
            "thread::sleep(",
        ];
        fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, found);
                } else if path.extension().is_some_and(|ext| ext == "rs") {
                    found.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut unexplained = Vec::new();
        // Tests may read real time as they please: test modules in files of their own, and
        // the `mod tests` at the end of a file.
        let checked =
            |file: &&std::path::PathBuf| !file.ends_with("clock.rs") && !file.ends_with("tests.rs");
        for file in files.iter().filter(checked) {
            let text = std::fs::read_to_string(file).unwrap();
            let code: Vec<&str> = text
                .lines()
                .take_while(|line| line.trim() != "mod tests {")
                .collect();
            for (index, line) in code.iter().enumerate() {
                if !READS.iter().any(|read| line.contains(read)) {
                    continue;
                }
                let explained = code[index.saturating_sub(3)..=index].iter().any(|line| {
                    line.split_once("//")
                        .is_some_and(|(_, comment)| comment.to_lowercase().contains("real time"))
                });
                if !explained {
                    let file = file.strip_prefix(&src).unwrap().display();
                    unexplained.push(format!("src/{file}:{}: {}", index + 1, line.trim()));
                }
            }
        }
        assert!(
            unexplained.is_empty(),
            "real time read outside the clock without a comment saying why:\n{}",
            unexplained.join("\n")
        );
    }

    #[tokio::test]
    async fn sleep_waits_at_least_its_duration() {
        let clock: Arc<dyn Clock> = SystemClock::new();
        let start = Instant::now();
        sleep(&clock, Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
