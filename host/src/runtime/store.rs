//! One instance's `Store` ([`GuestState`]): what the instance is given ([`InstanceIo`]), its
//! WASI context, what wasmlet provides beside WASI (`wasmlet:lifecycle/control`, a monotonic
//! clock and poll on the host's [`Clock`], outgoing HTTP refused), the linker with all of it,
//! and [`new_store`] with its time-slice, kill and memory checks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{CallHook, Engine, Store, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::context::{ContainerContext, TerminationNotice, nanos};
use super::imports::{EmbedderScope, EmbedderStates};
use super::kill::KillState;
use super::logs::LogTarget;
use super::memory::MemoryLimiter;
use super::mount::Mount;
use super::vcpu::{PollingGuard, UNLIMITED_FUEL, VirtualCpu};
use super::write_faults::WriteFaults;
use crate::bindings::{Event, Termination, control};
use crate::clock::{Clock, after, sleep_until};
use crate::events::LogStream;
use crate::signal::Watcher;

/// The trap that ends a killed instance.
#[derive(Debug)]
struct KilledTrap;

impl std::fmt::Display for KilledTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("killed by wasmlet")
    }
}

impl std::error::Error for KilledTrap {}

/// The data of one instance's `Store`: wasmlet's own, and the embedder's
/// ([`GuestState::embedder_data`]). A [`Call`](crate::Call) gets the store of a fresh instance
/// holding it.
pub struct GuestState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) container: Arc<ContainerContext>,
    pub(super) kill: Arc<KillState>,
    pub(super) event: Option<Event>,
    pub(super) limiter: MemoryLimiter,
    /// Deterministic mode: the fuel account that charges this guest's CPU time.
    pub(super) cpu: Option<Arc<VirtualCpu>>,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: RefuseOutgoingRequests,
    /// The request a handler instance is to handle, until it is handed to the guest.
    pub(super) http_call: Option<HttpCall>,
    /// What a call instance is to do, until it does it.
    pub(super) guest_call: Option<GuestCall>,
    /// The states of the embedder's host interfaces.
    pub(super) embedder: EmbedderStates,
    /// The faults its writes to volumes meet (deterministic mode's; none on a real host).
    pub(super) write_faults: WriteFaults,
    /// Whether its file operations, writes through streams included, run on its own thread.
    pub(super) files_inline: bool,
}

impl std::fmt::Debug for GuestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestState").finish_non_exhaustive()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for GuestState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// Guests get no network (no `wasi:sockets` addresses either): an outgoing `wasi:http` request
/// is refused with `HTTP-request-denied`.
struct RefuseOutgoingRequests;

impl wasmtime_wasi_http::WasiHttpHooks for RefuseOutgoingRequests {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// What one request to a `wasi:http/incoming-handler` instance carries: the request, and where
/// the guest's response goes.
pub(crate) struct HttpCall {
    pub request: http::Request<wasmtime_wasi_http::p2::body::HyperIncomingBody>,
    pub respond: tokio::sync::oneshot::Sender<HandlerResponse>,
}

/// What a call instance does once instantiated: the embedder's calls into it, through its
/// typed bindings (see [`Pod::call`](crate::Pod::call)). Its own result goes to its caller by
/// other means; `Err` is the instance's end (a trap, or the embedder's error).
pub(crate) type GuestCall = Box<
    dyn for<'a> FnOnce(
            &'a mut Store<GuestState>,
            &'a wasmtime::component::Instance,
        )
            -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>
        + Send,
>;

/// What a handler answered: its response (whose body it may still be writing), or an error code.
pub(crate) type HandlerResponse = Result<
    http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
>;

impl crate::bindings::wasmlet::lifecycle::types::Host for GuestState {}

impl control::Host for GuestState {
    fn termination_requested(&mut self) -> wasmtime::Result<Option<Termination>> {
        Ok(self.container.termination())
    }

    fn subscribe_termination(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let signal = TerminationSignal(self.container.termination.subscribe());
        let signal = self.table.push(signal)?;
        subscribe(&mut self.table, signal)
    }

    fn grace_remaining(&mut self) -> wasmtime::Result<Option<u64>> {
        Ok(self.container.grace_remaining().map(nanos))
    }

    fn current_event(&mut self) -> wasmtime::Result<Option<Event>> {
        Ok(self.event)
    }

    fn set_ready(&mut self, ready: bool) -> wasmtime::Result<()> {
        self.container.ready.send_replace(Some(ready));
        Ok(())
    }
}

/// Backs the pollable of `subscribe-termination`.
struct TerminationSignal(Watcher<Option<TerminationNotice>>);

#[wasmtime_wasi::async_trait]
impl Pollable for TerminationSignal {
    async fn ready(&mut self) {
        // An error means the container is gone, which is as final as terminate.
        let _ = self.0.wait_for(Option::is_some).await;
    }
}

/// The guest's `wasi:clocks/monotonic-clock`, on the host's [`Clock`]: in deterministic mode its
/// readings and its sleeps are virtual.
impl wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host for GuestState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        let since_origin = self
            .container
            .clock
            .now()
            .saturating_duration_since(self.container.clock_origin);
        Ok(nanos(since_origin))
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let at = after(self.container.clock_origin, Duration::from_nanos(when));
        self.subscribe_until(at)
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let at = after(self.container.clock.now(), Duration::from_nanos(duration));
        self.subscribe_until(at)
    }
}

impl GuestState {
    fn subscribe_until(&mut self, at: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = ClockDeadline {
            clock: self.container.clock.clone(),
            at,
            yielded: false,
        };
        let deadline = self.table.push(deadline)?;
        subscribe(&mut self.table, deadline)
    }
}

/// Backs the pollables of the guest's monotonic clock.
struct ClockDeadline {
    clock: Arc<dyn Clock>,
    at: Instant,
    yielded: bool,
}

#[wasmtime_wasi::async_trait]
impl Pollable for ClockDeadline {
    async fn ready(&mut self) {
        if self.at > self.clock.now() {
            sleep_until(&self.clock, self.at).await;
        } else if !self.yielded {
            // A deadline already past is ready, but a guest polling it in a loop must still
            // let others run (what wasmtime-wasi's own clock does too).
            self.yielded = true;
            tokio::task::yield_now().await;
        }
    }
}

/// `wasi:io/poll` as wasmtime-wasi implements it, noting for deterministic mode that the guest
/// is in a wait that timers and other guests end (see [`VirtualCpu::waits_outside`]).
impl wasmtime_wasi::p2::bindings::io::poll::Host for GuestState {
    async fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let cpu = self.cpu.clone();
        let _polling = cpu.as_deref().map(PollingGuard::new);
        wasmtime_wasi::p2::bindings::io::poll::Host::poll(&mut self.table, pollables).await
    }
}

impl wasmtime_wasi::p2::bindings::io::poll::HostPollable for GuestState {
    async fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let cpu = self.cpu.clone();
        let _polling = cpu.as_deref().map(PollingGuard::new);
        wasmtime_wasi::p2::bindings::io::poll::HostPollable::block(&mut self.table, pollable).await
    }

    async fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        wasmtime_wasi::p2::bindings::io::poll::HostPollable::ready(&mut self.table, pollable).await
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::bindings::io::poll::HostPollable::drop(&mut self.table, pollable)
    }
}

/// The guest's `wasi:clocks/wall-clock`, on the host's [`Clock`].
struct GuestWallClock(Arc<dyn Clock>);

impl wasmtime_wasi::HostWallClock for GuestWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0
            .wall_time()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// Adds everything a guest may import to `linker`: WASI 0.2 (with `wasi:http`) and
/// `wasmlet:lifecycle/control`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<GuestState>,
) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    // The guest's monotonic clock replaces wasmtime-wasi's, whose sleeps are tokio timers on
    // wall time.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
        _,
        wasmtime::component::HasSelf<_>,
    >(linker, |state| state)?;
    // And its poll, to know when a guest waits there (deterministic mode).
    wasmtime_wasi::p2::bindings::io::poll::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |state| state,
    )?;
    linker.allow_shadowing(false);
    // And the writes to files, to inject write faults (deterministic mode).
    super::write_faults::add_to_linker(linker)?;
    control::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)?;
    crate::bindings::wasmlet::lifecycle::types::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |state| state,
    )?;
    Ok(())
}

/// What a new store is made of, apart from its I/O.
pub(super) struct StoreSetup {
    pub(super) container: Arc<ContainerContext>,
    pub(super) kill: Arc<KillState>,
    pub(super) event: Option<Event>,
    pub(super) limiter: MemoryLimiter,
    /// Deterministic mode: the fuel account and the seed of the guest's randomness.
    pub(super) cpu: Option<Arc<VirtualCpu>>,
    pub(super) seed: Option<u64>,
}

/// What one instance is given: its command line, environment, files and output.
pub(crate) struct InstanceIo {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The initial working directory (`workingDir`).
    pub working_dir: Option<String>,
    /// Volume mounts: host directories and where the guest sees them.
    pub mounts: Vec<Mount>,
    /// Its container's private /tmp: made, if not yet, when the instance is set up.
    pub tmp_dir: Option<Arc<super::tmp_dirs::ContainerTmp>>,
    pub logs: LogTarget,
    /// The request, for an instance that handles one
    /// ([`Entry::Handle`](super::Entry::Handle)).
    pub http: Option<HttpCall>,
    /// What to do, for a call instance ([`Entry::Call`](super::Entry::Call)).
    pub call: Option<GuestCall>,
    /// The container's embedder imports, whose states the instance makes when first used.
    pub embedder: Option<Arc<EmbedderScope>>,
}

impl InstanceIo {
    /// The same, with the output kept (when captured) but not published as the container's log:
    /// a probe's output belongs in its event only, as in Kubernetes.
    pub fn quiet(mut self) -> Self {
        self.logs.sink = Arc::new(|_| {});
        self
    }
}

/// A store for one instance: its WASI context, the time slice and kill checks, the memory limit.
pub(super) fn new_store(
    engine: &Engine,
    setup: StoreSetup,
    io: InstanceIo,
) -> wasmtime::Result<Store<GuestState>> {
    let clock = setup.container.clock.clone();
    let mut wasi = WasiCtx::builder();
    wasi.args(&io.args)
        .envs(&io.env)
        .stdout(io.logs.stream(LogStream::Stdout))
        .stderr(io.logs.stream(LogStream::Stderr))
        .wall_clock(GuestWallClock(clock));
    if let Some(dir) = &io.working_dir {
        wasi.initial_cwd(dir);
    }
    if let Some(seed) = setup.seed {
        use rand::SeedableRng as _;
        // Distinct, fixed streams for each purpose, all from the instance's seed.
        wasi.secure_random(rand::rngs::StdRng::seed_from_u64(seed))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed))
            .insecure_random_seed(u128::from(seed) << 64 | u128::from(!seed));
    }
    // File operations on the guest's own thread: in deterministic mode, because a
    // blocking-pool thread would race the virtual clock; on a real host, for a guest that sees
    // no directory but its private /tmp: its files are ones it made on the host's disk, whose
    // operations take microseconds, where a trip to the blocking pool and back takes tens. A
    // volume may be a directory of the host's with a FIFO in it or on a network file system,
    // which could hold a guest thread as long as it blocks: with one, file operations go to
    // the blocking pool. Writes through streams follow (`file_streams`); reads through
    // streams stay wasmtime-wasi's, on the pool.
    let files_inline = setup.seed.is_some() || io.mounts.is_empty();
    if files_inline {
        wasi.allow_blocking_current_thread(true);
    }
    for mount in &io.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        wasi.preopened_dir(&mount.host_path, &mount.guest_path, perms)?;
    }
    // The private /tmp, unless a volume is mounted there.
    if let Some(tmp) = &io.tmp_dir
        && !io
            .mounts
            .iter()
            .any(|m| m.guest_path.trim_end_matches('/') == "/tmp")
        && let Some(tmp) = tmp.path()
    {
        wasi.preopened_dir(tmp, "/tmp", FsPerms::ReadWrite)?;
    }
    let fuel = setup.cpu.as_ref().map(|cpu| cpu.fuel_per_slice);
    let mut store = Store::new(
        engine,
        GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            container: setup.container,
            kill: setup.kill,
            event: setup.event,
            limiter: setup.limiter,
            cpu: setup.cpu,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: RefuseOutgoingRequests,
            http_call: io.http,
            guest_call: io.call,
            embedder: EmbedderStates::new(io.embedder, io.logs.source()),
            write_faults: WriteFaults::new(io.mounts.iter().filter_map(|mount| {
                Some((mount.host_path.as_path(), mount.write_faults.clone()?))
            })),
            files_inline,
        },
    );
    store.limiter(|state| &mut state.limiter);
    match fuel {
        // Deterministic mode: a time slice is a fixed amount of fuel, so a guest yields at the
        // same instruction every run.
        Some(fuel_per_slice) => {
            store.set_fuel(UNLIMITED_FUEL)?;
            store.fuel_async_yield_interval(Some(fuel_per_slice))?;
        }
        // Every epoch tick is a time slice: yield so that one spinning guest never holds a
        // worker. After a kill the same check traps instead.
        None => {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|context| {
                let kill = &context.data().kill;
                if kill.is_killed() {
                    Err(killed_here(&context))
                } else {
                    kill.preempted.store(true, Ordering::Relaxed);
                    Ok(UpdateDeadline::Yield(1))
                }
            });
        }
    }
    // A killed guest gets no further host call, nor back into wasm from one. (Not on the
    // way out of wasm: the trap unwinding a killed guest passes there too.)
    store.call_hook(|context, transition| {
        let host_call = matches!(
            transition,
            CallHook::CallingHost | CallHook::ReturningFromHost
        );
        if let Some(cpu) = &context.data().cpu {
            match transition {
                CallHook::CallingHost => {
                    cpu.charge_consumed(context.get_fuel().ok());
                    cpu.lock().in_host_call = true;
                }
                CallHook::ReturningFromHost => cpu.lock().in_host_call = false,
                _ => {}
            }
        }
        if matches!(transition, CallHook::CallingHost) {
            context
                .data()
                .kill
                .preempted
                .store(false, Ordering::Relaxed);
        }
        if host_call && context.data().kill.is_killed() {
            Err(killed_here(&context))
        } else {
            Ok(())
        }
    });

    Ok(store)
}

/// The trap that ends a killed instance, with where the guest was: captured at the kill, while
/// its frames still exist.
pub(super) fn killed_here(context: &wasmtime::StoreContextMut<'_, GuestState>) -> wasmtime::Error {
    let kill = &context.data().kill;
    kill.mark_stopped();
    wasmtime::Error::new(KilledTrap).context(WasmBacktrace::force_capture(context))
}
