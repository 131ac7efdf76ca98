//! The wasm runtime layer: instances of components, and everything their `Store`s hold — WASI
//! context, the `control` interface, the container-wide memory budget, log capture, the
//! container's `/tmp` ([`TmpDirs`]) — and the machinery that ends them. It knows containers only as a [`ContainerContext`] and a
//! [`Launcher`], and nothing of pods: a front end other than the pod lifecycle can run a
//! container's instances with it alone.
//!
//! A [`Runtime`] holds what instances need: the engine and linker ([`WasmEngine`]), the epoch
//! ticker, the guest runtime (a multi-threaded tokio runtime of its own, so that supervision
//! elsewhere is never starved by spinning guests), the clock, and the guest-scheduling strategy
//! it was built with ([`Scheduling`]: real time, or deterministic mode's [`DeterministicGuests`]).
//!
//! An instance runs as a killable future on the guest runtime. Killing it
//! ([`KillSwitch::kill`]) works wherever the guest is:
//! - running wasm (even a loop that never calls the host): the kill flag is set and the engine
//!   epoch incremented, so the store's epoch callback traps at the next function entry or loop
//!   back-edge — microseconds later;
//! - blocked in a host call (sleep, poll, I/O): the pending future is taken out of its slot, so
//!   the guest is never polled again, and dropped (which unwinds the fiber);
//! - about to call the host: the store's call hook refuses every host call after the kill.
//!
//! None of this depends on the guest runtime scheduling the killed task: a kill lands even
//! when every worker is busy with spinning guests.
//!
//! In deterministic mode ([`crate::testing`]) fuel replaces the epoch: a guest yields after a
//! fixed amount of fuel, its CPU time is charged to the virtual clock ([`vcpu::VirtualCpu`]),
//! and timers due by then fire before anything else runs. Guest clocks, sleeps and randomness
//! come from the host in both modes, so that the virtual clock and a seed can stand in for them.

mod command;
mod compile_cache;
mod component;
mod context;
mod cpu;
mod end;
mod engine;
mod file_streams;
mod group;
mod imports;
mod instance;
mod kill;
mod launcher;
mod logs;
mod memory;
mod mount;
mod release;
mod scheduling;
mod store;
mod tmp_dirs;
mod vcpu;
mod write_faults;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub(crate) use command::{CommandOutcome, run_command};
pub use component::LoadedComponent;
pub(crate) use component::{Entry, LoadedContainer};
pub(crate) use context::ContainerContext;
pub(crate) use cpu::{CpuControl, CpuQuota, FairShare, shares};
pub(crate) use end::{InstanceDone, InstanceEnd};
pub(crate) use engine::Compilation;
pub use engine::InstancePool;
pub(crate) use engine::{EpochTicker, Interruption, WasmEngine};
pub(crate) use group::InstanceGroup;
pub(crate) use imports::EmbedderScope;
pub use imports::{Imports, InstanceInfo};
pub(crate) use instance::spawn_task;
pub(crate) use kill::KillSwitch;
pub(crate) use launcher::Launcher;
pub(crate) use logs::LogTarget;
pub(crate) use memory::MemoryBudget;
pub(crate) use mount::Mount;
pub(crate) use scheduling::{DeterministicGuests, Scheduling};
pub use store::GuestState;
pub(crate) use store::{GuestCall, HandlerResponse, HttpCall, InstanceIo};
pub(crate) use tmp_dirs::{ContainerTmp, TmpDirs};
pub(crate) use write_faults::VolumeWrites;
pub use write_faults::{WriteFault, WriteFaultKind};

use crate::clock::{Clock, SystemClock};
use release::MemoryReleaser;

/// What every instance needs: the engine, the epoch ticker, the runtime guests execute on, the
/// clock, and how guests are scheduled. Shared by all containers of a host.
pub(crate) struct Runtime {
    pub wasm: Arc<WasmEngine>,
    pub clock: Arc<dyn Clock>,
    /// Zero of the guests' monotonic clock.
    pub clock_origin: Instant,
    /// The runtime guests execute on.
    pub guests: tokio::runtime::Handle,
    pub ticker: Arc<EpochTicker>,
    /// Real time, or deterministic mode ([`crate::testing`]): chosen here, once.
    pub scheduling: Box<dyn Scheduling>,
    /// The turns of containers that request CPU.
    pub fair_share: Arc<FairShare>,
    /// How many times a kill moved the engine epoch to interrupt wasm that was running (every
    /// guest running wasm then yields its time slice early).
    pub kill_interruptions: Arc<AtomicU64>,
    guest_runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// How a [`Runtime`] runs its guests (the host's settings of the same names).
pub(crate) struct RuntimeConfig {
    /// How long a CPU-bound guest runs before it yields to others (the epoch tick).
    pub time_slice: Duration,
    /// Worker threads executing guests.
    pub guest_threads: usize,
    /// How much lower than the host's own the guest threads' scheduling priority is.
    pub guest_niceness: i32,
    /// The clock everything reads and schedules on (default: a [`SystemClock`]).
    pub clock: Option<Arc<dyn Clock>>,
    /// Where compiled components are kept between runs.
    pub compile_cache: Option<PathBuf>,
    /// The pooling allocator's slots, if any.
    pub instance_pool: Option<InstancePool>,
    /// The size from which a component not yet optimised starts on baseline code.
    pub quick_first_start: Option<u64>,
}

impl Runtime {
    /// Starts a runtime: the engine, the guest runtime, the clock, the epoch ticker and the
    /// thread that hands memory freed by ended instances back to the system.
    pub fn start(config: RuntimeConfig) -> anyhow::Result<Arc<Runtime>> {
        let wasm = WasmEngine::new(
            Interruption::Epoch,
            config.compile_cache.as_deref(),
            config.instance_pool,
            config.quick_first_start,
        )?;
        let niceness = config.guest_niceness;
        let releaser = MemoryReleaser::start();
        let guest_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.guest_threads.max(1))
            .thread_name("wasmlet-guest")
            .on_thread_start(move || lower_priority(niceness))
            // A burst of pods grows the blocking pool (file I/O) to hundreds of threads, whose
            // caches hold memory until they end, idle, ten seconds later.
            .on_thread_stop({
                let releaser = releaser.clone();
                move || releaser.memory_freed()
            })
            .enable_all()
            .build()
            .context("starting the guest runtime")?;
        let clock = config.clock.unwrap_or_else(|| SystemClock::new());
        let ticker = EpochTicker::start(wasm.engines(), config.time_slice, releaser);
        Ok(Arc::new(Runtime {
            guests: guest_runtime.handle().clone(),
            guest_runtime: Mutex::new(Some(guest_runtime)),
            wasm,
            clock_origin: clock.now(),
            clock,
            ticker,
            scheduling: Box::new(scheduling::RealTime),
            fair_share: FairShare::new(config.time_slice),
            kill_interruptions: Default::default(),
        }))
    }

    /// A runtime in deterministic mode: guests run on `runtime` (the caller's single thread)
    /// with fuel-based time slices, on the virtual clock of `guests`.
    pub fn deterministic(
        wasm: Arc<WasmEngine>,
        runtime: tokio::runtime::Handle,
        guests: DeterministicGuests,
    ) -> Arc<Runtime> {
        let clock: Arc<dyn Clock> = guests.clock.clone();
        Arc::new(Runtime {
            guests: runtime,
            guest_runtime: Mutex::new(None),
            wasm,
            clock_origin: guests.clock.origin(),
            clock,
            ticker: EpochTicker::idle(),
            fair_share: FairShare::new(Duration::from_nanos(
                guests.fuel_per_slice.saturating_mul(guests.nanos_per_fuel),
            )),
            scheduling: Box::new(guests),
            kill_interruptions: Default::default(),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.stop();
        if let Some(runtime) = self.guest_runtime.lock().unwrap().take() {
            // Dropping a runtime from async code panics; guests still running are abandoned.
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's scheduling priority by `niceness` (Linux: nice values are
/// per thread). Lowering is always allowed; a failure leaves the thread as it was.
fn lower_priority(niceness: i32) {
    if niceness <= 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Ok(current) = rustix::process::getpriority_process(Some(thread)) {
        let _ = rustix::process::setpriority_process(Some(thread), (current + niceness).min(19));
    }
}
