//! One guest instance and everything its `Store` holds: WASI context, the `control` interface,
//! the container-wide memory budget, log capture, and the machinery that ends it.
//!
//! An instance runs as a [`Killable`] future on the guest runtime. Killing it
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
//! fixed amount of fuel, its CPU time is charged to the virtual clock ([`VirtualCpu`]), and
//! timers due by then fire before anything else runs. Guest clocks, sleeps and randomness come
//! from the host in both modes, so that the virtual clock and a seed can stand in for them.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime::component::{ComponentExportIndex, InstancePre, Resource, ResourceTable};
use wasmtime::{CallHook, Engine, Store, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{Event, Termination, TerminationReason, control};
use crate::clock::{Clock, VirtualClock, after, sleep_until};
use crate::events::{LogLine, LogSource, LogStream};
use crate::host::HostInner;
use crate::signal::{Watched, Watcher};

/// What a container's instances share: how and when the container is being stopped, its
/// readiness, and its memory budget. Owned by the container's supervisor.
pub(crate) struct ContainerContext {
    pub clock: Arc<dyn Clock>,
    /// Zero of the guests' `wasi:clocks/monotonic-clock`.
    clock_origin: Instant,
    termination: Watched<Option<TerminationNotice>>,
    stop: Mutex<Option<StopClock>>,
    ready: Watched<Option<bool>>,
    pub memory: Arc<MemoryBudget>,
}

/// The grace clock of a stop in progress.
#[derive(Clone, Copy)]
struct StopClock {
    began: Instant,
    deadline: Instant,
}

impl StopClock {
    /// The whole time from the start of the stop to the kill: the grace period as given, or
    /// more after the minimum that follows a preStop, or less after a shortening delete.
    fn grace_period(&self) -> Duration {
        self.deadline.saturating_duration_since(self.began)
    }
}

/// What the guest is told when terminate is delivered.
#[derive(Clone)]
struct TerminationNotice {
    reason: TerminationReason,
    message: String,
}

impl ContainerContext {
    pub fn new(
        clock: Arc<dyn Clock>,
        clock_origin: Instant,
        memory_limit: Option<u64>,
    ) -> Arc<Self> {
        Arc::new(ContainerContext {
            clock,
            clock_origin,
            termination: Watched::new(None),
            stop: Mutex::new(None),
            ready: Watched::new(None),
            memory: Arc::new(MemoryBudget::new(memory_limit)),
        })
    }

    /// Starts the grace clock: the stop began at `began` and the kill comes at `deadline`.
    pub fn start_grace(&self, began: Instant, deadline: Instant) {
        *self.stop.lock().unwrap() = Some(StopClock { began, deadline });
    }

    /// When the stop in progress kills what is left, if one began: the one place a stop's
    /// deadline is kept.
    pub fn deadline(&self) -> Option<Instant> {
        self.stop.lock().unwrap().map(|stop| stop.deadline)
    }

    /// Moves the kill to `deadline` (`grace-remaining` counts down to it).
    pub fn move_deadline(&self, deadline: Instant) {
        if let Some(stop) = self.stop.lock().unwrap().as_mut() {
            stop.deadline = deadline;
        }
    }

    /// Delivers terminate: wakes every termination pollable of every instance.
    pub fn deliver_terminate(&self, reason: TerminationReason, message: String) {
        self.termination.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(TerminationNotice { reason, message });
                true
            }
        });
    }

    /// Resolves when terminate has been delivered.
    pub async fn terminated(&self) {
        let _ = self.termination.subscribe().wait_for(Option::is_some).await;
    }

    /// Whether terminate has been delivered.
    pub fn terminating(&self) -> bool {
        self.termination.get().is_some()
    }

    /// The grace period of the stop in progress, if one began.
    pub fn grace_period(&self) -> Option<Duration> {
        self.stop.lock().unwrap().map(|stop| stop.grace_period())
    }

    /// What the guest reported through `set-ready`, if it did.
    pub fn reported_ready(&self) -> Option<bool> {
        self.ready.get()
    }

    /// Every `set-ready` report, for the supervisor to publish in the status.
    pub fn ready_reports(&self) -> Watcher<Option<bool>> {
        self.ready.subscribe()
    }

    fn grace_remaining(&self) -> Option<Duration> {
        let stop = (*self.stop.lock().unwrap())?;
        Some(stop.deadline.saturating_duration_since(self.clock.now()))
    }

    fn termination(&self) -> Option<Termination> {
        let notice = self.termination.get()?;
        let stop = (*self.stop.lock().unwrap())?;
        Some(Termination {
            reason: notice.reason,
            message: notice.message,
            grace_period: nanos(stop.grace_period()),
            grace_remaining: nanos(stop.deadline.saturating_duration_since(self.clock.now())),
        })
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The memory one container may use, shared by all its instances (main and hooks), like a
/// container's cgroup limit.
pub(crate) struct MemoryBudget {
    limit: Option<u64>,
    used: AtomicU64,
}

impl MemoryBudget {
    fn new(limit: Option<u64>) -> Self {
        MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    fn try_charge(&self, bytes: u64) -> bool {
        let Some(limit) = self.limit else {
            self.used.fetch_add(bytes, Ordering::SeqCst);
            return true;
        };
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }
}

/// The most elements one table may have, whatever the memory limit: a guest growing a table
/// without end is refused before it exhausts the host.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// What a table element costs the container's memory budget (a reference is one pointer).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// The most core module instances one instance of a component may create (a Rust guest creates
/// three; a composition of a dozen components, a few dozen).
pub(crate) const MAX_CORE_INSTANCES: usize = 1000;
/// The most linear memories one instance may define. Each reserves address space and a memory
/// mapping of the host process, which the kernel caps for the whole process (65530 by default);
/// a Rust guest has one.
pub(crate) const MAX_MEMORIES: usize = 100;
/// The most tables one instance may define (a Rust guest has two or three).
pub(crate) const MAX_TABLES: usize = 1000;

/// Charges one store's linear-memory and table growth to its container's [`MemoryBudget`].
struct MemoryLimiter {
    budget: Arc<MemoryBudget>,
    charged: u64,
    refused: Arc<AtomicBool>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.charge(desired.saturating_sub(current) as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let growth = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.charge(growth))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl MemoryLimiter {
    /// Charges `bytes` of growth to the budget; a refusal is remembered (the guest's failed
    /// allocation then ends it as `OOMKilled`).
    fn charge(&mut self, bytes: u64) -> bool {
        let granted = self.budget.try_charge(bytes);
        if granted {
            self.charged += bytes;
        } else {
            self.refused.store(true, Ordering::SeqCst);
        }
        granted
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.charged, Ordering::SeqCst);
    }
}

/// The trap that ends a killed instance.
#[derive(Debug)]
struct KilledTrap;

impl std::fmt::Display for KilledTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("killed by wasmlet")
    }
}

impl std::error::Error for KilledTrap {}

/// The data of one instance's `Store`.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    container: Arc<ContainerContext>,
    kill: Arc<KillState>,
    event: Option<Event>,
    limiter: MemoryLimiter,
    /// Deterministic mode: the fuel account that charges this guest's CPU time.
    cpu: Option<Arc<VirtualCpu>>,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: RefuseOutgoingRequests,
    /// The request a handler instance is to handle, until it is handed to the guest.
    http_call: Option<HttpCall>,
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

/// Marks a guest as inside `wasi:io/poll` while it lives.
struct PollingGuard<'a>(&'a VirtualCpu);

impl<'a> PollingGuard<'a> {
    fn new(cpu: &'a VirtualCpu) -> Self {
        cpu.lock().in_poll = true;
        PollingGuard(cpu)
    }
}

impl Drop for PollingGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().in_poll = false;
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
    control::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)?;
    crate::bindings::wasmlet::lifecycle::types::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |state| state,
    )?;
    Ok(())
}

/// Which export an instance calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `wasi:cli/run#run`: the main process, or an exec command component.
    Run,
    /// `wasmlet:lifecycle/hooks#post-start`.
    PostStart,
    /// `wasmlet:lifecycle/hooks#pre-stop`.
    PreStop,
    /// `wasi:http/incoming-handler#handle`, with the request in [`InstanceIo::http`].
    Handle,
}

/// A compiled component, ready to instantiate, with its exports looked up once.
pub struct LoadedComponent {
    pub(crate) pre: InstancePre<GuestState>,
    run: Option<ComponentExportIndex>,
    post_start: Option<ComponentExportIndex>,
    pre_stop: Option<ComponentExportIndex>,
    handler: Option<ComponentExportIndex>,
}

impl LoadedComponent {
    /// Compiles `path` and checks that `linker` provides everything it imports.
    pub(crate) fn load(
        engine: &Engine,
        linker: &wasmtime::component::Linker<GuestState>,
        path: &Path,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading component `{}`", path.display()))?;
        Self::from_bytes(engine, linker, &bytes, path)
    }

    /// Compiles a component given as bytes; `path` names it in errors.
    pub(crate) fn from_bytes(
        engine: &Engine,
        linker: &wasmtime::component::Linker<GuestState>,
        bytes: &[u8],
        path: &Path,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!(
                "`{}` is not WebAssembly (it does not start with the `\\0asm` magic); expected a \
                 component built for wasm32-wasip2",
                path.display()
            );
        }
        if wasmparser_is_core_module(bytes) {
            anyhow::bail!(
                "`{}` is a core WebAssembly module, not a component; build it for \
                 wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
                path.display()
            );
        }
        let component = wasmtime::component::Component::new(engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling component `{}`", path.display()))?;
        // What no instance could hold is refused now, by name, rather than at every start. (The
        // count of core instances is not known before instantiation: the store's limit holds it.)
        if let Some(needed) = component.resources_required() {
            for (count, what, most) in [
                (needed.num_memories, "linear memories", MAX_MEMORIES),
                (needed.num_tables, "tables", MAX_TABLES),
            ] {
                anyhow::ensure!(
                    usize::try_from(count).is_ok_and(|count| count <= most),
                    "component `{}` defines {count} {what}; wasmlet allows one instance at most \
                     {most}",
                    path.display()
                );
            }
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component `{}` imports something wasmlet does not provide \
                     (wasmlet provides WASI 0.2, wasi:http and wasmlet:lifecycle/control)",
                    path.display()
                )
            })?;
        let export_of = |interface_prefix: &str, function: &str| {
            let ty = component.component_type();
            let (name, _) = ty
                .exports(engine)
                .find(|(name, _)| name.starts_with(interface_prefix))?;
            let interface = component.get_export_index(None, name)?;
            component.get_export_index(Some(&interface), function)
        };
        // An export of the right name must have the right type: caught here, with its name,
        // rather than as a failed call when the container runs.
        use wasmtime::component::types::ComponentItem;
        use wasmtime::component::types::Type;
        let ty = component.component_type();
        for (interface_prefix, function, expected, fits) in [
            (
                "wasi:cli/run@0.2.",
                "run",
                "func() -> result",
                (&|f: &wasmtime::component::types::ComponentFunc| {
                    f.params().len() == 0
                        && f.results().len() == 1
                        && f.results().all(|r| {
                            matches!(r, Type::Result(ref r) if r.ok().is_none() && r.err().is_none())
                        })
                }) as &dyn Fn(&wasmtime::component::types::ComponentFunc) -> bool,
            ),
            (
                "wasmlet:lifecycle/hooks@0.1.",
                "post-start",
                "func() -> hook-outcome",
                &|f| f.params().len() == 0 && f.results().len() == 1,
            ),
            (
                "wasmlet:lifecycle/hooks@0.1.",
                "pre-stop",
                "func() -> hook-outcome",
                &|f| f.params().len() == 0 && f.results().len() == 1,
            ),
            (
                "wasi:http/incoming-handler@0.2.",
                "handle",
                "func(request: incoming-request, response-out: response-outparam)",
                &|f| f.params().len() == 2 && f.results().len() == 0,
            ),
        ] {
            let Some((name, exported)) = ty
                .exports(engine)
                .find(|(name, _)| name.starts_with(interface_prefix))
            else {
                continue;
            };
            let ComponentItem::ComponentInstance(instance) = exported.ty else {
                continue;
            };
            let found = instance
                .exports(engine)
                .find(|(export, _)| *export == function)
                .map(|(_, item)| item.ty);
            let fitting = match &found {
                Some(ComponentItem::ComponentFunc(func)) => fits(func),
                None => continue,
                Some(_) => false,
            };
            anyhow::ensure!(
                fitting,
                "component `{}`: its export `{name}#{function}` has the wrong type; wasmlet \
                 expects `{function}: {expected}` (is it built against another version of the \
                 interface?)",
                path.display()
            );
        }
        // A component built with wasmlet-sdk says which hooks it implements; one that does not
        // say is asked at each hook, and may answer not-implemented.
        let (has_post_start, has_pre_stop) = declared_hooks(bytes).unwrap_or((true, true));
        Ok(LoadedComponent {
            run: export_of("wasi:cli/run@0.2.", "run"),
            post_start: export_of("wasmlet:lifecycle/hooks@0.1.", "post-start")
                .filter(|_| has_post_start),
            pre_stop: export_of("wasmlet:lifecycle/hooks@0.1.", "pre-stop")
                .filter(|_| has_pre_stop),
            handler: export_of("wasi:http/incoming-handler@0.2.", "handle"),
            pre,
        })
    }

    /// Whether the component exports `entry`.
    pub(crate) fn exports(&self, entry: Entry) -> bool {
        self.export(entry).is_some()
    }

    /// Whether the component has a postStart hook of its own (one it implements, as far as
    /// wasmlet can tell before calling it).
    pub fn has_post_start(&self) -> bool {
        self.post_start.is_some()
    }

    /// Whether the component has a preStop hook of its own.
    pub fn has_pre_stop(&self) -> bool {
        self.pre_stop.is_some()
    }

    fn export(&self, entry: Entry) -> Option<&ComponentExportIndex> {
        match entry {
            Entry::Run => self.run.as_ref(),
            Entry::PostStart => self.post_start.as_ref(),
            Entry::PreStop => self.pre_stop.as_ref(),
            Entry::Handle => self.handler.as_ref(),
        }
    }
}

/// The hooks a component built with wasmlet-sdk declares in its `wasmlet-hooks` custom section
/// (postStart, preStop), wherever in the component's modules the section is.
fn declared_hooks(bytes: &[u8]) -> Option<(bool, bool)> {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .filter_map(Result::ok)
        .find_map(|payload| match payload {
            wasmparser::Payload::CustomSection(section) if section.name() == "wasmlet-hooks" => {
                match section.data() {
                    [post_start, pre_stop, ..] => Some((*post_start != 0, *pre_stop != 0)),
                    _ => None,
                }
            }
            _ => None,
        })
}

/// A core module starts with the magic and version 1; a component has the same magic and a
/// different version/layer field.
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// What one instance is given: its command line, environment, files and output.
pub(crate) struct InstanceIo {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The initial working directory (`workingDir`).
    pub working_dir: Option<String>,
    /// Volume mounts: host directories and where the guest sees them.
    pub mounts: Vec<crate::pod::Mount>,
    pub tmp_dir: Option<std::path::PathBuf>,
    pub logs: LogTarget,
    /// The request, for an instance that handles one ([`Entry::Handle`]).
    pub http: Option<HttpCall>,
}

impl InstanceIo {
    /// The same, with the output kept (when captured) but not published as the container's log:
    /// a probe's output belongs in its event only, as in Kubernetes.
    pub fn quiet(mut self) -> Self {
        self.logs.sink = Arc::new(|_| {});
        self
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstanceEnd {
    /// The export returned: `Ok`, or `Err` with the guest's message (`run` has none).
    Returned(Result<(), String>),
    /// The guest called `wasi:cli/exit` with this code.
    Exited(i32),
    /// A trap or host error ended the instance.
    Trapped {
        message: String,
        out_of_memory: bool,
    },
    /// wasmlet killed the instance at `at` (when it stopped executing); `location` says where
    /// it was.
    Killed { location: String, at: Instant },
    /// The hook export answered that the application has no such hook.
    NotImplemented,
}

impl InstanceEnd {
    /// The end of an instance whose task went away without finishing (the host is shutting
    /// down).
    pub fn lost() -> InstanceEnd {
        InstanceEnd::Trapped {
            message: "the instance was dropped before it finished (is the host shutting down?)"
                .into(),
            out_of_memory: false,
        }
    }
}

/// `wasmlet:lifecycle/hooks.hook-outcome`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
enum HookOutcome {
    #[component(name = "done")]
    Done,
    #[component(name = "failed")]
    Failed(String),
    #[component(name = "not-implemented")]
    NotImplemented,
}

/// How an instance's end reaches its supervisor: sent by the instance's task when it finishes,
/// or by the kill itself when it takes the instance away, so that reporting a kill never waits
/// for the guest runtime to schedule anything.
pub(crate) type InstanceDone = tokio::sync::oneshot::Receiver<InstanceEnd>;

/// Starts one instance of `component` calling `entry`, on the host's guest runtime. The
/// instance is registered nowhere: the caller keeps the returned [`KillSwitch`].
pub(crate) fn spawn_instance(
    host: &HostInner,
    component: Arc<LoadedComponent>,
    entry: Entry,
    container: Arc<ContainerContext>,
    io: InstanceIo,
) -> (KillSwitch, InstanceDone) {
    let cpu = host
        .deterministic
        .as_ref()
        .map(|deterministic| Arc::new(VirtualCpu::new(deterministic)));
    let kill = KillState::new(host, container.clock.clone(), cpu.clone());
    let event = match entry {
        Entry::Run => None,
        Entry::PostStart => Some(Event::PostStart),
        Entry::PreStop => Some(Event::PreStop),
        Entry::Handle => None,
    };
    let engine = host.wasm.engine.clone();
    let seed = host
        .deterministic
        .as_ref()
        .map(|deterministic| deterministic.next_instance_seed());
    // Dropped when the instance ends or is killed: the ticker stops when no guest is left.
    let alive = host.ticker.instance_alive();
    let instance_kill = kill.clone();
    let future = async move {
        let _alive = alive;
        let kill = instance_kill;
        // Whether this instance (not another of the container) was refused memory.
        let refused = Arc::new(AtomicBool::new(false));
        let limiter = MemoryLimiter {
            budget: container.memory.clone(),
            charged: 0,
            refused: refused.clone(),
        };
        let setup = StoreSetup {
            container,
            kill: kill.clone(),
            event,
            limiter,
            cpu,
            seed,
        };
        let result = match new_store(&engine, setup, io) {
            Ok(mut store) => {
                let end = run_instance(&component, entry, &mut store).await;
                // CPU time since the last host call (or the trap) counts too.
                if let Some(cpu) = &store.data().cpu {
                    cpu.charge_consumed(store.get_fuel().ok());
                }
                end
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(end) => end,
            Err(error) => classify_error(error, &kill, refused.load(Ordering::SeqCst)),
        }
    };
    spawn_killable(&host.guests, kill, Box::pin(future))
}

/// What a new store is made of, apart from its I/O.
struct StoreSetup {
    container: Arc<ContainerContext>,
    kill: Arc<KillState>,
    event: Option<Event>,
    limiter: MemoryLimiter,
    /// Deterministic mode: the fuel account and the seed of the guest's randomness.
    cpu: Option<Arc<VirtualCpu>>,
    seed: Option<u64>,
}

/// Fuel a deterministic-mode store starts with: for practical purposes, never runs out.
const UNLIMITED_FUEL: u64 = u64::MAX;

/// A store for one instance: its WASI context, the time slice and kill checks, the memory limit.
fn new_store(
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
            .insecure_random_seed(u128::from(seed) << 64 | u128::from(!seed))
            // File operations on this thread: a blocking-pool thread would race the virtual
            // clock.
            .allow_blocking_current_thread(true);
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

/// Instantiates `component` in `store` and calls `entry`.
async fn run_instance(
    component: &LoadedComponent,
    entry: Entry,
    mut store: &mut Store<GuestState>,
) -> wasmtime::Result<InstanceEnd> {
    let instance = component
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|error| {
            // wasmtime's "resource limit exceeded: instance count too high at 1001" says
            // neither whose limit it is nor what it allows.
            if error.to_string().contains("count too high") {
                wasmtime::format_err!(
                    "{error} (wasmlet allows one instance at most {MAX_CORE_INSTANCES} core \
                     instances, {MAX_MEMORIES} memories and {MAX_TABLES} tables)"
                )
            } else {
                error
            }
        })?;
    let Some(export) = component.export(entry) else {
        return Err(wasmtime::format_err!(
            "the component does not export {entry:?}"
        ));
    };
    Ok(match entry {
        Entry::Run => {
            let run = instance.get_typed_func::<(), (Result<(), ()>,)>(&mut store, export)?;
            let (result,) = run.call_async(&mut store, ()).await?;
            InstanceEnd::Returned(result.map_err(|()| String::new()))
        }
        Entry::Handle => {
            use wasmtime_wasi_http::WasiHttpView as _;
            use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
            use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
            let call = store
                .data_mut()
                .http_call
                .take()
                .ok_or_else(|| wasmtime::format_err!("a handler instance without a request"))?;
            let request = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, call.request)?;
            let respond = store
                .data_mut()
                .http()
                .new_response_outparam(call.respond)?;
            let handle = instance.get_typed_func::<(
                Resource<HostIncomingRequest>,
                Resource<HostResponseOutparam>,
            ), ()>(&mut store, export)?;
            handle.call_async(&mut store, (request, respond)).await?;
            InstanceEnd::Returned(Ok(()))
        }
        Entry::PostStart | Entry::PreStop => {
            let hook = instance.get_typed_func::<(), (HookOutcome,)>(&mut store, export)?;
            match hook.call_async(&mut store, ()).await? {
                (HookOutcome::Done,) => InstanceEnd::Returned(Ok(())),
                (HookOutcome::Failed(message),) => InstanceEnd::Returned(Err(message)),
                (HookOutcome::NotImplemented,) => InstanceEnd::NotImplemented,
            }
        }
    })
}

/// The trap that ends a killed instance, with where the guest was: captured at the kill, while
/// its frames still exist.
fn killed_here(context: &wasmtime::StoreContextMut<'_, GuestState>) -> wasmtime::Error {
    let kill = &context.data().kill;
    kill.mark_stopped();
    wasmtime::Error::new(KilledTrap).context(WasmBacktrace::force_capture(context))
}

/// How an instance that ended with `error` ended; `refused_memory`: it was denied memory growth.
fn classify_error(error: wasmtime::Error, kill: &KillState, refused_memory: bool) -> InstanceEnd {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return InstanceEnd::Exited(exit.0);
    }
    let backtrace = error.downcast_ref::<WasmBacktrace>();
    let location = backtrace.and_then(describe_location);
    if kill.is_killed() {
        return InstanceEnd::Killed {
            location: location.unwrap_or_else(|| "in wasm".into()),
            at: kill.stopped_at(),
        };
    }
    let cause = error.root_cause().to_string();
    let message = match location {
        Some(location) => format!("{cause} {location}"),
        None => cause,
    };
    InstanceEnd::Trapped {
        message,
        out_of_memory: refused_memory,
    }
}

/// "in `f` (called from `g`)" for the innermost named frames of a backtrace.
fn describe_location(backtrace: &WasmBacktrace) -> Option<String> {
    let mut names = backtrace
        .frames()
        .iter()
        .filter_map(|frame| frame.func_name())
        .map(|name| format!("`{:#}`", rustc_demangle::demangle(name)));
    let innermost = names.next()?;
    let callers: Vec<_> = names.take(2).collect();
    Some(if callers.is_empty() {
        format!("in {innermost}")
    } else {
        format!("in {innermost} (called from {})", callers.join(", "))
    })
}

/// Runs a host-side hook handler (such as `sleep`) so that it can be killed like an instance.
pub(crate) fn spawn_task(
    host: &HostInner,
    future: impl Future<Output = InstanceEnd> + Send + 'static,
) -> (KillSwitch, InstanceDone) {
    let kill = KillState::new(host, host.clock.clone(), None);
    spawn_killable(&host.guests, kill, Box::pin(future))
}

/// What deterministic mode sets for every instance: the virtual clock, what fuel costs in
/// virtual time, and the seed each instance's randomness derives from.
pub(crate) struct DeterministicGuests {
    pub clock: Arc<VirtualClock>,
    /// Fuel (roughly, wasm instructions) a guest runs before it yields: its time slice.
    pub fuel_per_slice: u64,
    /// Virtual nanoseconds one unit of fuel takes.
    pub nanos_per_fuel: u64,
    pub seed: u64,
    instances: AtomicU64,
}

impl DeterministicGuests {
    pub fn new(
        clock: Arc<VirtualClock>,
        fuel_per_slice: u64,
        nanos_per_fuel: u64,
        seed: u64,
    ) -> Self {
        DeterministicGuests {
            clock,
            fuel_per_slice: fuel_per_slice.max(1),
            nanos_per_fuel,
            seed,
            instances: AtomicU64::new(0),
        }
    }

    /// The seed of the next instance: instances are created in a fixed order, so the n-th one
    /// gets the same seed every run.
    fn next_instance_seed(&self) -> u64 {
        let n = self.instances.fetch_add(1, Ordering::SeqCst);
        self.seeded(n)
    }

    /// The `n`-th number of a sequence drawn from the seed.
    pub fn seeded(&self, n: u64) -> u64 {
        splitmix64(self.seed ^ splitmix64(n))
    }
}

/// One step of SplitMix64: spreads nearby inputs over the whole range.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One guest's CPU time in deterministic mode: fuel consumed becomes virtual time, charged
/// exactly whenever the guest leaves wasm — every host call, and every libcall, which includes
/// the yield at the end of a time slice — and when it ends.
pub(crate) struct VirtualCpu {
    clock: Arc<VirtualClock>,
    fuel_per_slice: u64,
    nanos_per_fuel: u64,
    account: Mutex<FuelAccount>,
    /// The guest's own wake-ups during a poll, held back until due timers have fired.
    wake: Arc<DeferredWake>,
}

#[derive(Default)]
struct FuelAccount {
    /// Fuel already turned into virtual time.
    charged: u64,
    /// Inside a host call.
    in_host_call: bool,
    /// Inside `wasi:io/poll` (a wait that timers and other guests end).
    in_poll: bool,
}

impl VirtualCpu {
    fn new(deterministic: &DeterministicGuests) -> Self {
        VirtualCpu {
            clock: deterministic.clock.clone(),
            fuel_per_slice: deterministic.fuel_per_slice,
            nanos_per_fuel: deterministic.nanos_per_fuel,
            account: Mutex::new(FuelAccount::default()),
            wake: Arc::new(DeferredWake::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FuelAccount> {
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
    fn charge_consumed(&self, left: Option<u64>) {
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
    fn poll_guest(
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
struct DeferredWake {
    real: Mutex<Option<Waker>>,
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

type GuestFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The state a kill acts on: the flag the store's callbacks read, and the slot holding the
/// instance's future.
struct KillState {
    killed: AtomicBool,
    /// Set when the guest yields at a time slice, cleared when it calls the host: says where a
    /// guest taken out of its slot was.
    preempted: AtomicBool,
    engine: Engine,
    /// The host's count of epoch moves made by kills.
    interruptions: Arc<AtomicU64>,
    /// Where a killed instance is dropped; `None` (deterministic mode): at once, in place.
    reaper: Option<tokio::runtime::Handle>,
    clock: Arc<dyn Clock>,
    /// Deterministic mode: the instance's CPU account.
    cpu: Option<Arc<VirtualCpu>>,
    /// When the killed instance stopped executing: its trap, or the kill taking it away.
    stopped_at: Mutex<Option<Instant>>,
    slot: Mutex<Slot>,
    done: Mutex<Option<tokio::sync::oneshot::Sender<InstanceEnd>>>,
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
    fn new(host: &HostInner, clock: Arc<dyn Clock>, cpu: Option<Arc<VirtualCpu>>) -> Arc<Self> {
        Arc::new(KillState {
            killed: AtomicBool::new(false),
            preempted: AtomicBool::new(false),
            engine: host.wasm.engine.clone(),
            interruptions: host.kill_interruptions.clone(),
            reaper: host.deterministic.is_none().then(|| host.guests.clone()),
            clock,
            cpu,
            stopped_at: Mutex::new(None),
            slot: Mutex::new(Slot::Empty),
            done: Mutex::new(None),
        })
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Records that the killed instance stopped executing now (the first time counts).
    fn mark_stopped(&self) {
        self.stopped_at
            .lock()
            .unwrap()
            .get_or_insert_with(|| self.clock.now());
    }

    fn stopped_at(&self) -> Instant {
        self.stopped_at
            .lock()
            .unwrap()
            .unwrap_or_else(|| self.clock.now())
    }

    /// Reports the instance's end (once; later reports are dropped).
    fn report(&self, end: InstanceEnd) {
        let done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(done) = done {
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

    fn lock_slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn spawn_killable(
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
        let mut woke_itself = false;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &state.cpu {
            None => future.as_mut().poll(cx),
            Some(cpu) => {
                let (polled, woken) = cpu.poll_guest(future.as_mut(), cx);
                woke_itself = woken;
                polled
            }
        }));
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
                // A kill that found the slot busy left the rest to this poll. (Checked after
                // unlocking, so that one of the two always sees the other.)
                if state.is_killed() {
                    if let Some((future, waker)) = state.take_away(&mut state.lock_slot()) {
                        state.finish_kill(future, waker);
                    }
                    return Poll::Ready(());
                }
                return Poll::Pending;
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

/// Where an instance's output goes: the pod's log stream, and for hooks a bounded capture of the
/// last lines, shown with the hook's event.
#[derive(Clone)]
pub(crate) struct LogTarget {
    container: Arc<str>,
    source: LogSource,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn Fn(LogLine) + Send + Sync>,
    capture: Option<Arc<Mutex<VecDeque<String>>>>,
}

/// How many lines of a hook's output are kept for its event.
const CAPTURED_LINES: usize = 20;
/// A line longer than this is cut into pieces, so a guest that never prints a newline cannot make
/// wasmlet buffer without bound.
const MAX_LINE: usize = 16 * 1024;

impl LogTarget {
    pub fn new(
        container: Arc<str>,
        source: LogSource,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn Fn(LogLine) + Send + Sync>,
        capture: bool,
    ) -> Self {
        LogTarget {
            container,
            source,
            clock,
            sink,
            capture: capture.then(|| Arc::new(Mutex::new(VecDeque::new()))),
        }
    }

    /// The last lines written, for a hook's event message.
    pub fn captured(&self) -> Vec<String> {
        self.capture
            .as_ref()
            .map(|lines| lines.lock().unwrap().iter().cloned().collect())
            .unwrap_or_default()
    }

    fn stream(&self, stream: LogStream) -> LogStdout {
        LogStdout {
            target: self.clone(),
            stream,
        }
    }

    fn emit(&self, stream: LogStream, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes).into_owned();
        if let Some(capture) = &self.capture {
            let mut lines = capture.lock().unwrap();
            if lines.len() == CAPTURED_LINES {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        (self.sink)(LogLine {
            container: self.container.to_string(),
            source: self.source,
            stream,
            line,
            at: self.clock.now(),
        });
    }
}

/// A guest's stdout or stderr: each `wasi:cli` stream handed out writes whole lines to the target.
struct LogStdout {
    target: LogTarget,
    stream: LogStream,
}

impl IsTerminal for LogStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStdout {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    /// Written lines reach the pod at once, during the guest's write: no copying task between,
    /// so output lands at a fixed point among events.
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.writer())
    }
}

impl LogStdout {
    fn writer(&self) -> LineWriter {
        LineWriter {
            target: self.target.clone(),
            stream: self.stream,
            partial: Vec::new(),
        }
    }
}

struct LineWriter {
    target: LogTarget,
    stream: LogStream,
    partial: Vec<u8>,
}

impl LineWriter {
    /// Adds `bytes` to the line in progress and emits every line they complete, then cuts what
    /// is left into pieces of [`MAX_LINE`]. One pass over the bytes, and one move of the
    /// remainder: a write of many lines costs what its bytes do.
    fn push(&mut self, bytes: &[u8]) {
        // What was there has no newline: only the new bytes need searching.
        let mut search_from = self.partial.len();
        self.partial.extend_from_slice(bytes);
        let mut line_start = 0;
        while let Some(offset) = self.partial[search_from..].iter().position(|b| *b == b'\n') {
            let newline = search_from + offset;
            let line = &self.partial[line_start..newline];
            self.target
                .emit(self.stream, line.strip_suffix(b"\r").unwrap_or(line));
            line_start = newline + 1;
            search_from = line_start;
        }
        while self.partial.len() - line_start >= MAX_LINE {
            let piece_end = line_start + MAX_LINE;
            self.target
                .emit(self.stream, &self.partial[line_start..piece_end]);
            line_start = piece_end;
        }
        self.partial.drain(..line_start);
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.target.emit(self.stream, &rest);
        }
        Poll::Ready(Ok(()))
    }
}

/// How much a guest may write in one call: wasmlet never blocks a writer (lines go straight to
/// the pod's bounded history), so this only sizes the guest's chunks.
const WRITE_BUDGET: usize = 64 * 1024;

impl wasmtime_wasi::p2::OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.target.emit(self.stream, &rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, HostConfig};

    fn test_host() -> Host {
        Host::new(HostConfig {
            compile_cache: None,
            guest_threads: 1,
            ..HostConfig::default()
        })
        .unwrap()
    }

    fn interruptions(host: &Host) -> u64 {
        host.inner.kill_interruptions.load(Ordering::Relaxed)
    }

    #[test]
    fn killing_an_instance_that_ended_interrupts_no_one() {
        let host = test_host();
        let (switch, done) = spawn_task(&host.inner, async { InstanceEnd::Returned(Ok(())) });
        let end = host.inner.guests.block_on(done).unwrap();
        assert_eq!(end, InstanceEnd::Returned(Ok(())));
        switch.kill();
        assert_eq!(interruptions(&host), 0);
    }

    #[test]
    fn killing_an_instance_that_waits_takes_it_away_without_interrupting_anyone() {
        let host = test_host();
        let (switch, done) = spawn_task(&host.inner, std::future::pending());
        // Wait until its task has polled it once (and is waiting).
        while !host.inner.guests.block_on(async {
            tokio::task::yield_now().await;
            matches!(*switch.0.lock_slot(), Slot::Running { waker: Some(_), .. })
        }) {}
        assert!(switch.kill());
        let end = host.inner.guests.block_on(done).unwrap();
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
            &host.inner,
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
        let end = host.inner.guests.block_on(done).unwrap();
        assert!(matches!(end, InstanceEnd::Killed { .. }), "{end:?}");
    }

    /// A writer whose lines land in the returned list.
    fn collecting_writer() -> (LineWriter, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let lines = lines.clone();
            Arc::new(move |line: LogLine| lines.lock().unwrap().push(line.line))
        };
        let target = LogTarget::new(
            "app".into(),
            LogSource::Main,
            VirtualClock::new(std::time::SystemTime::UNIX_EPOCH),
            sink,
            false,
        );
        let writer = LineWriter {
            target,
            stream: LogStream::Stdout,
            partial: Vec::new(),
        };
        (writer, lines)
    }

    fn write(writer: &mut LineWriter, text: &str) {
        use wasmtime_wasi::p2::OutputStream as _;
        writer
            .write(bytes::Bytes::copy_from_slice(text.as_bytes()))
            .unwrap();
    }

    #[test]
    fn lines_are_emitted_whole_in_order_and_the_partial_tail_waits() {
        let (mut writer, lines) = collecting_writer();
        write(&mut writer, "one\r\ntw");
        write(&mut writer, "o\n\nthr");
        assert_eq!(*lines.lock().unwrap(), ["one", "two", ""]);
        assert_eq!(writer.partial, b"thr");
        write(&mut writer, "ee\nfour");
        drop(writer);
        assert_eq!(*lines.lock().unwrap(), ["one", "two", "", "three", "four"]);
    }

    #[test]
    fn a_line_without_a_newline_is_cut_at_the_limit() {
        let (mut writer, lines) = collecting_writer();
        write(&mut writer, &"x".repeat(MAX_LINE - 1));
        assert!(lines.lock().unwrap().is_empty());
        write(&mut writer, &"y".repeat(MAX_LINE + 2));
        let expected = format!("{}y", "x".repeat(MAX_LINE - 1));
        assert_eq!(*lines.lock().unwrap(), [expected, "y".repeat(MAX_LINE)]);
        assert_eq!(writer.partial, b"y");
    }

    /// A million lines (13 MB) in one write: splitting them must take time in proportion to
    /// the bytes (moving the rest of the buffer for each line would take many minutes here).
    #[test]
    fn a_large_write_of_many_short_lines_is_split_in_one_pass() {
        const LINES: usize = 1_000_000;
        let (mut writer, lines) = collecting_writer();
        let mut text = String::new();
        for index in 0..LINES {
            text.push_str(&format!("line {index}\n"));
        }
        text.push_str("the unfinished tail");
        write(&mut writer, &text);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), LINES);
        for (index, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("line {index}"));
        }
        assert_eq!(writer.partial, b"the unfinished tail");
    }
}
