//! Deterministic mode's guest CPU ([`VirtualCpu`]): fuel consumed becomes virtual time, and a
//! guest's own wake-ups queue behind the timers due at the end of its slice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::end::InstanceEnd;
use crate::clock::VirtualClock;

/// Fuel a deterministic-mode store starts with: for practical purposes, never runs out.
pub(super) const UNLIMITED_FUEL: u64 = u64::MAX;

/// One guest's CPU time in deterministic mode: fuel consumed becomes virtual time, charged
/// exactly whenever the guest leaves wasm — every host call, and every libcall, which includes
/// the yield at the end of a time slice — and when it ends.
pub(crate) struct VirtualCpu {
    pub(super) clock: Arc<VirtualClock>,
    pub(super) fuel_per_slice: u64,
    nanos_per_fuel: u64,
    account: Mutex<FuelAccount>,
    /// The guest's own wake-ups during a poll, held back until due timers have fired.
    pub(super) wake: Arc<DeferredWake>,
}

#[derive(Default)]
pub(super) struct FuelAccount {
    /// Fuel already turned into virtual time.
    pub(super) charged: u64,
    /// Inside a host call.
    pub(super) in_host_call: bool,
    /// Inside `wasi:io/poll` (a wait that timers and other guests end).
    pub(super) in_poll: bool,
}

impl VirtualCpu {
    pub(super) fn new(clock: Arc<VirtualClock>, fuel_per_slice: u64, nanos_per_fuel: u64) -> Self {
        VirtualCpu {
            clock,
            fuel_per_slice,
            nanos_per_fuel,
            account: Mutex::new(FuelAccount::default()),
            wake: Arc::new(DeferredWake::default()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, FuelAccount> {
        self.account
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Charges fuel up to `consumed` (in total since the store began), if not charged yet.
    fn charge_up_to(&self, account: &mut FuelAccount, consumed: u64) {
        if consumed > account.charged {
            let fuel = consumed - account.charged;
            account.charged = consumed;
            self.clock.advance(Duration::from_nanos(
                fuel.saturating_mul(self.nanos_per_fuel),
            ));
        }
    }

    /// Whether the guest, pending, waits on work outside this thread: inside a host call
    /// other than a poll (a file operation on tokio's blocking pool).
    fn waits_outside(&self) -> bool {
        let account = self.lock();
        account.in_host_call && !account.in_poll
    }

    /// Charges what the store has consumed, given the fuel it has `left`.
    pub(super) fn charge_consumed(&self, left: Option<u64>) {
        if let Some(left) = left {
            self.charge_up_to(&mut self.lock(), UNLIMITED_FUEL - left);
        }
    }

    /// Polls the guest's future with a waker that holds back the guest's own wake-ups; returns
    /// the poll and whether the guest woke itself.
    ///
    /// A guest that is left waiting on another thread (a file operation, which wasmtime-wasi
    /// hands to tokio's blocking pool) is waited for right here, then polled again: nothing
    /// else may run meanwhile, or the order of events would depend on that thread's timing.
    pub(super) fn poll_guest(
        &self,
        mut future: Pin<&mut (dyn Future<Output = InstanceEnd> + Send)>,
        cx: &mut Context<'_>,
    ) -> (Poll<InstanceEnd>, bool) {
        *self.wake.real.lock().unwrap() = Some(cx.waker().clone());
        let waker = Waker::from(self.wake.clone());
        loop {
            *self.wake.woken_outside.lock().unwrap() = false;
            *self.wake.polling.lock().unwrap() = Some(std::thread::current().id());
            let polled = future.as_mut().poll(&mut Context::from_waker(&waker));
            *self.wake.polling.lock().unwrap() = None;
            let woke_itself = self.wake.woken.swap(false, Ordering::SeqCst);
            if polled.is_pending() && !woke_itself && self.waits_outside() {
                if self.wake.wait(OUTSIDE_WAIT_LIMIT) {
                    continue;
                }
                tracing::warn!(
                    "a guest waited more than {OUTSIDE_WAIT_LIMIT:?} for work on another \
                     thread; the run goes on, but may not be reproducible"
                );
            }
            return (polled, woke_itself);
        }
    }
}

/// A waker that, while its guest is being polled, only notes a wake-up: the guest yielding its
/// slice must queue behind whatever the timers due at the slice's end wake.
#[derive(Default)]
pub(super) struct DeferredWake {
    pub(super) real: Mutex<Option<Waker>>,
    /// The thread polling the guest, while it does: only a wake-up on that thread is the
    /// guest's own.
    polling: Mutex<Option<std::thread::ThreadId>>,
    woken: AtomicBool,
    /// Set by a wake-up outside a poll (from the blocking pool, say), for [`DeferredWake::wait`].
    woken_outside: Mutex<bool>,
    outside: std::sync::Condvar,
}

impl DeferredWake {
    /// Waits (blocking this thread) for a wake-up from outside a poll; false after `limit`.
    fn wait(&self, limit: Duration) -> bool {
        let woken = self.woken_outside.lock().unwrap();
        let (mut woken, _) = self
            .outside
            .wait_timeout_while(woken, limit, |woken| !*woken)
            .unwrap();
        std::mem::take(&mut *woken)
    }
}

impl std::task::Wake for DeferredWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let own = *self.polling.lock().unwrap() == Some(std::thread::current().id());
        if own {
            self.woken.store(true, Ordering::SeqCst);
        } else {
            *self.woken_outside.lock().unwrap() = true;
            self.outside.notify_all();
            if let Some(waker) = self.real.lock().unwrap().as_ref() {
                waker.wake_by_ref();
            }
        }
    }
}

/// How long a deterministic-mode guest may wait for work on another thread before wasmlet
/// stops holding everything else back (and the run may no longer be reproducible).
const OUTSIDE_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Marks a guest as inside `wasi:io/poll` while it lives.
pub(super) struct PollingGuard<'a>(&'a VirtualCpu);

impl<'a> PollingGuard<'a> {
    pub(super) fn new(cpu: &'a VirtualCpu) -> Self {
        cpu.lock().in_poll = true;
        PollingGuard(cpu)
    }
}

impl Drop for PollingGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().in_poll = false;
    }
}
