//! Killing an instance wherever it is ([`KillSwitch`]): running wasm (the epoch callback traps),
//! blocked in a host call (its future is taken out of its slot and dropped), or about to call
//! the host (the call hook refuses). An instance runs as a [`Killable`] future on the guest
//! runtime; a kill never waits for that runtime to schedule anything.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use wasmtime::Engine;

use super::Runtime;
use super::cpu::{CpuControl, Turn, thread_cpu_time};
use super::end::{InstanceDone, InstanceEnd};
use super::vcpu::VirtualCpu;
use crate::clock::Clock;

type GuestFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The state a kill acts on: the flag the store's callbacks read, and the slot holding the
/// instance's future.
pub(super) struct KillState {
    killed: AtomicBool,
    /// Set when the guest yields at a time slice, cleared when it calls the host: says where a
    /// guest taken out of its slot was.
    pub(super) preempted: AtomicBool,
    /// The engine the instance runs on: a kill that must interrupt running wasm moves its epoch.
    engine: Engine,
    /// The host's count of epoch moves made by kills.
    interruptions: Arc<AtomicU64>,
    /// Where a killed instance is dropped; `None` (deterministic mode): at once, in place.
    reaper: Option<tokio::runtime::Handle>,
    clock: Arc<dyn Clock>,
    /// Deterministic mode: the instance's CPU account.
    cpu: Option<Arc<VirtualCpu>>,
    /// The container's CPU limits and weight, if it has any.
    cpu_control: Option<Arc<CpuControl>>,
    /// Its place in the turns of weighted containers.
    turn: Mutex<Turn>,
    /// When the killed instance stopped executing: its trap, or the kill taking it away.
    stopped_at: Mutex<Option<Instant>>,
    slot: Mutex<Slot>,
    done: Mutex<Option<tokio::sync::oneshot::Sender<InstanceEnd>>>,
    /// What a finished instance leaves to free (its store and pool slot), freed after its end
    /// is reported: resetting a slot's memory takes tens of microseconds, which whoever waits
    /// for the end (a postStart's container, to be `Running`) need not wait for.
    remains: Mutex<Option<Box<dyn Send>>>,
}

enum Slot {
    /// Not spawned yet.
    Empty,
    Running {
        future: GuestFuture<InstanceEnd>,
        waker: Option<Waker>,
    },
    Finished,
    Killed,
}

impl KillState {
    pub(super) fn new(
        runtime: &Runtime,
        engine: Engine,
        clock: Arc<dyn Clock>,
        cpu: Option<Arc<VirtualCpu>>,
        cpu_control: Option<Arc<CpuControl>>,
    ) -> Arc<Self> {
        Arc::new(KillState {
            killed: AtomicBool::new(false),
            preempted: AtomicBool::new(false),
            engine,
            interruptions: runtime.kill_interruptions.clone(),
            reaper: runtime.scheduling.reaper(&runtime.guests),
            clock,
            cpu,
            cpu_control,
            turn: Mutex::default(),
            stopped_at: Mutex::new(None),
            slot: Mutex::new(Slot::Empty),
            done: Mutex::new(None),
            remains: Mutex::new(None),
        })
    }

    pub(super) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Records that the killed instance stopped executing now (the first time counts).
    pub(super) fn mark_stopped(&self) {
        self.stopped_at
            .lock()
            .unwrap()
            .get_or_insert_with(|| self.clock.now());
    }

    pub(super) fn stopped_at(&self) -> Instant {
        self.stopped_at
            .lock()
            .unwrap()
            .unwrap_or_else(|| self.clock.now())
    }

    /// Keeps `remains` of the finished instance until its end is reported.
    pub(super) fn free_after_report(&self, remains: Box<dyn Send>) {
        *self.remains.lock().unwrap() = Some(remains);
    }

    /// Reports the instance's end (once; later reports are dropped).
    fn report(&self, end: InstanceEnd) {
        let done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            if let Some(control) = &self.cpu_control {
                control.ended(std::mem::take(&mut *self.turn.lock().unwrap()));
            }
            let _ = done.send(end);
        }
    }
}

/// Ends one instance, wherever it is. Cheap to clone; killing twice is harmless.
#[derive(Clone)]
pub(crate) struct KillSwitch(Arc<KillState>);

impl KillSwitch {
    /// Kills the instance now. Returns whether this call did it (false: already killed).
    pub fn kill(&self) -> bool {
        let state = &self.0;
        if state.killed.swap(true, Ordering::SeqCst) {
            return false;
        }
        // Never wait for a poll in progress (this may be the deadline thread, with other kills
        // due): if the slot is busy, that poll sees the flag when it returns and finishes the
        // kill itself.
        let taken = match state.slot.try_lock() {
            // No poll in progress, so no wasm of this instance is running: taking its future
            // away is enough. (An instance that has ended has nothing to take away.)
            Ok(mut slot) => state.take_away(&mut slot),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                state.take_away(&mut poisoned.into_inner())
            }
            // A poll in progress may be running wasm: it reaches its next epoch check and
            // traps. The epoch is the engine's, so every other guest running wasm yields its
            // time slice too: only a kill that needs it moves it.
            Err(std::sync::TryLockError::WouldBlock) => {
                state.engine.increment_epoch();
                state.interruptions.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        if let Some((future, waker)) = taken {
            state.finish_kill(future, waker);
        }
        true
    }
}

impl KillState {
    /// Takes the future out of its slot if it is still there: it will never be polled again.
    fn take_away(&self, slot: &mut Slot) -> Option<(GuestFuture<InstanceEnd>, Option<Waker>)> {
        match std::mem::replace(slot, Slot::Killed) {
            Slot::Running { future, waker } => Some((future, waker)),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Reports the kill of a future taken away, and drops it off this thread.
    fn finish_kill(&self, future: GuestFuture<InstanceEnd>, waker: Option<Waker>) {
        let mut location = if self.preempted.load(Ordering::Relaxed) {
            "while waiting for its next time slice (CPU-bound)".to_string()
        } else {
            "while blocked in a host call".to_string()
        };
        // Deterministic mode: the fuel it had run, the same every run.
        if let Some(cpu) = &self.cpu {
            location.push_str(&format!(", after {} units of fuel", cpu.lock().charged));
        }
        self.mark_stopped();
        self.report(InstanceEnd::Killed {
            location,
            at: self.stopped_at(),
        });
        if let Some(waker) = waker {
            waker.wake();
        }
        // Unwinding a fiber and freeing a large memory can take a while: not on the deadline
        // thread. (In deterministic mode there is no other thread, and what the drop prints
        // must land at a fixed point.)
        match &self.reaper {
            Some(reaper) => drop(reaper.spawn_blocking(move || drop(future))),
            None => drop(future),
        }
    }

    /// Drops the deferring waker's hold on the task, which would otherwise keep the task (and
    /// with it this state) alive forever.
    fn forget_task(&self) {
        if let Some(cpu) = &self.cpu {
            cpu.wake.real.lock().unwrap().take();
        }
    }

    /// After a poll that left the instance pending, with the slot unlocked: a kill that found
    /// the slot busy left the rest to this poll. (Checked after unlocking, so that one of the
    /// two always sees the other.)
    fn pending_unless_killed(&self) -> Poll<()> {
        if self.is_killed() {
            if let Some((future, waker)) = self.take_away(&mut self.lock_slot()) {
                self.finish_kill(future, waker);
            }
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn lock_slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) fn spawn_killable(
    runtime: &tokio::runtime::Handle,
    kill: Arc<KillState>,
    future: GuestFuture<InstanceEnd>,
) -> (KillSwitch, InstanceDone) {
    let (done, receiver) = tokio::sync::oneshot::channel();
    *kill.done.lock().unwrap() = Some(done);
    {
        let mut slot = kill.slot.lock().unwrap();
        if matches!(*slot, Slot::Empty) {
            *slot = Slot::Running {
                future,
                waker: None,
            };
        }
    }
    runtime.spawn(Killable(kill.clone()));
    (KillSwitch(kill), receiver)
}

/// Polls an instance's future from its slot, so that a kill can take the future away.
struct Killable(Arc<KillState>);

impl Future for Killable {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let polled = self.poll_slot(cx);
        if polled.is_ready() {
            self.0.forget_task();
        }
        polled
    }
}

impl Killable {
    fn poll_slot(&self, cx: &mut Context<'_>) -> Poll<()> {
        let state = &self.0;
        let mut slot = state.lock_slot();
        let Slot::Running { future, waker } = &mut *slot else {
            // Killed (the kill reported it) or finished.
            return Poll::Ready(());
        };
        let mut measure = false;
        if let Some(control) = &state.cpu_control {
            let now = state.clock.now();
            let allowed = control.may_run(now, &mut state.turn.lock().unwrap());
            measure = allowed == Ok(true);
            if let Err(throttled) = allowed {
                *waker = Some(cx.waker().clone());
                drop(slot);
                match throttled {
                    // Over its CPU limit: back at the next period.
                    Some(until) => {
                        let waker = cx.waker().clone();
                        state.clock.call_at(until, Box::new(move || waker.wake()));
                    }
                    // Another container's guest is owed this turn: to the back of the queue.
                    None => cx.waker().wake_by_ref(),
                }
                return state.pending_unless_killed();
            }
        }
        let cpu_time = || match &state.cpu {
            None => thread_cpu_time(),
            Some(cpu) => cpu.clock.elapsed(),
        };
        let started = measure.then(cpu_time);
        let mut woke_itself = false;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &state.cpu {
            None => future.as_mut().poll(cx),
            Some(cpu) => {
                let (polled, woken) = cpu.poll_guest(future.as_mut(), cx);
                woke_itself = woken;
                polled
            }
        }));
        if let (Some(control), Some(started)) = (&state.cpu_control, started) {
            // A guest that yielded its slice wants the CPU again at once; one that waits on
            // the host does not.
            let yielded = matches!(polled, Ok(Poll::Pending))
                && (woke_itself
                    || (state.cpu.is_none() && state.preempted.load(Ordering::Relaxed)));
            control.ran(
                state.clock.now(),
                cpu_time().saturating_sub(started),
                yielded,
                &mut state.turn.lock().unwrap(),
            );
        }
        let end = match polled {
            Ok(Poll::Pending) => {
                *waker = Some(cx.waker().clone());
                drop(slot);
                if let Some(cpu) = &state.cpu {
                    // The guest's CPU time is charged already. What became due meanwhile
                    // happens now, before anything else runs (a kill included); a guest that
                    // woke itself has yielded its time slice and queues behind what that wakes.
                    if woke_itself {
                        state.preempted.store(true, Ordering::Relaxed);
                    }
                    cpu.clock.fire_due();
                    if woke_itself {
                        cx.waker().wake_by_ref();
                    }
                }
                return state.pending_unless_killed();
            }
            Ok(Poll::Ready(end)) => end,
            Err(panic) => InstanceEnd::Trapped {
                message: format!(
                    "wasmlet failed while running the instance: {}",
                    panic_text(panic.as_ref())
                ),
                out_of_memory: false,
            },
        };
        // Drop the finished future (and its store) after unlocking: freeing memory takes time.
        let finished = std::mem::replace(&mut *slot, Slot::Finished);
        drop(slot);
        state.report(end);
        drop(finished);
        drop(state.remains.lock().unwrap().take());
        if let Some(cpu) = &state.cpu {
            cpu.clock.fire_due();
        }
        Poll::Ready(())
    }
}

impl Drop for Killable {
    /// A task dropped before its instance ended (its runtime shut down) still reports, so that
    /// no supervisor waits forever.
    fn drop(&mut self) {
        self.0.forget_task();
        let mut slot = self.0.lock_slot();
        // A kill that took the future away reports the kill itself — maybe a moment from now,
        // on its own thread: reporting "lost" here first would win that race.
        let killed = matches!(*slot, Slot::Killed);
        let taken = self.0.take_away(&mut slot);
        drop(slot);
        if !killed {
            self.0.report(InstanceEnd::lost());
        }
        drop(taken);
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

#[cfg(test)]
mod tests {
    use super::super::RuntimeConfig;
    use super::super::instance::spawn_task;
    use super::*;

    fn test_host() -> Arc<Runtime> {
        Runtime::start(RuntimeConfig {
            time_slice: std::time::Duration::from_millis(2),
            guest_threads: 1,
            guest_niceness: 10,
            clock: None,
            compile_cache: None,
            instance_pool: None,
            quick_first_start: None,
        })
        .unwrap()
    }

    fn interruptions(host: &Runtime) -> u64 {
        host.kill_interruptions.load(Ordering::Relaxed)
    }

    #[test]
    fn killing_an_instance_that_ended_interrupts_no_one() {
        let host = test_host();
        let (switch, done) = spawn_task(&host, async { InstanceEnd::Returned(Ok(())) });
        let end = host.guests.block_on(done).unwrap();
        assert_eq!(end, InstanceEnd::Returned(Ok(())));
        switch.kill();
        assert_eq!(interruptions(&host), 0);
    }

    #[test]
    fn killing_an_instance_that_waits_takes_it_away_without_interrupting_anyone() {
        let host = test_host();
        let (switch, done) = spawn_task(&host, std::future::pending());
        // Wait until its task has polled it once (and is waiting).
        while !host.guests.block_on(async {
            tokio::task::yield_now().await;
            matches!(*switch.0.lock_slot(), Slot::Running { waker: Some(_), .. })
        }) {}
        assert!(switch.kill());
        let end = host.guests.block_on(done).unwrap();
        assert!(matches!(end, InstanceEnd::Killed { .. }), "{end:?}");
        assert_eq!(interruptions(&host), 0);
    }

    #[test]
    fn killing_an_instance_in_the_middle_of_a_poll_interrupts_it() {
        let host = test_host();
        let (polling, in_poll) = std::sync::mpsc::channel();
        let (resume, go_on) = std::sync::mpsc::channel::<()>();
        let go_on = Mutex::new(go_on);
        // Stands for wasm running: busy inside its poll until told to go on.
        let (switch, done) = spawn_task(
            &host,
            std::future::poll_fn(move |_| {
                polling.send(()).unwrap();
                go_on.lock().unwrap().recv().unwrap();
                Poll::Pending
            }),
        );
        in_poll.recv().unwrap();
        assert!(switch.kill());
        assert_eq!(interruptions(&host), 1);
        resume.send(()).unwrap();
        let end = host.guests.block_on(done).unwrap();
        assert!(matches!(end, InstanceEnd::Killed { .. }), "{end:?}");
    }
}
