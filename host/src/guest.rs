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
use tokio::sync::watch;
use wasmtime::component::{ComponentExportIndex, InstancePre, Resource, ResourceTable};
use wasmtime::{CallHook, Engine, Store, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{Event, Termination, TerminationReason, control};
use crate::clock::Clock;
use crate::events::{LogLine, LogSource, LogStream};
use crate::host::LiveInstance;

/// What a container's instances share: how and when the container is being stopped, its
/// readiness, and its memory budget. Owned by the container's supervisor.
pub(crate) struct ContainerContext {
    pub clock: Arc<dyn Clock>,
    termination: watch::Sender<Option<TerminationNotice>>,
    stop: Mutex<Option<StopClock>>,
    ready: watch::Sender<Option<bool>>,
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
    pub fn new(clock: Arc<dyn Clock>, memory_limit: Option<u64>) -> Arc<Self> {
        Arc::new(ContainerContext {
            clock,
            termination: watch::Sender::new(None),
            stop: Mutex::new(None),
            ready: watch::Sender::new(None),
            memory: Arc::new(MemoryBudget::new(memory_limit)),
        })
    }

    /// Starts the grace clock: the stop began at `began` and the kill comes at `deadline`.
    pub fn start_grace(&self, began: Instant, deadline: Instant) {
        *self.stop.lock().unwrap() = Some(StopClock { began, deadline });
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

    /// Whether terminate has been delivered.
    pub fn terminating(&self) -> bool {
        self.termination.borrow().is_some()
    }

    /// The grace period of the stop in progress, if one began.
    pub fn grace_period(&self) -> Option<Duration> {
        self.stop.lock().unwrap().map(|stop| stop.grace_period())
    }

    /// What the guest reported through `set-ready`, if it did.
    pub fn reported_ready(&self) -> Option<bool> {
        *self.ready.borrow()
    }

    /// Every `set-ready` report, for the supervisor to publish in the status.
    pub fn ready_reports(&self) -> watch::Receiver<Option<bool>> {
        self.ready.subscribe()
    }

    fn grace_remaining(&self) -> Option<Duration> {
        let stop = (*self.stop.lock().unwrap())?;
        Some(stop.deadline.saturating_duration_since(self.clock.now()))
    }

    fn termination(&self) -> Option<Termination> {
        let notice = self.termination.borrow().clone()?;
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

/// Charges one store's linear-memory growth to its container's [`MemoryBudget`].
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
        let growth = desired.saturating_sub(current) as u64;
        let granted = self.budget.try_charge(growth);
        if granted {
            self.charged += growth;
        } else {
            self.refused.store(true, Ordering::SeqCst);
        }
        Ok(granted)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
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
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

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
struct TerminationSignal(watch::Receiver<Option<TerminationNotice>>);

#[wasmtime_wasi::async_trait]
impl Pollable for TerminationSignal {
    async fn ready(&mut self) {
        // An error means the container is gone, which is as final as terminate.
        let _ = self.0.wait_for(Option::is_some).await;
    }
}

/// Adds everything a guest may import to `linker`: WASI 0.2 and `wasmlet:lifecycle/control`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<GuestState>,
) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
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
}

/// A compiled component, ready to instantiate, with its exports looked up once.
pub struct LoadedComponent {
    pub(crate) pre: InstancePre<GuestState>,
    run: Option<ComponentExportIndex>,
    post_start: Option<ComponentExportIndex>,
    pre_stop: Option<ComponentExportIndex>,
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
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!(
                "`{}` is not WebAssembly (it does not start with the `\\0asm` magic); expected a \
                 component built for wasm32-wasip2",
                path.display()
            );
        }
        if wasmparser_is_core_module(&bytes) {
            anyhow::bail!(
                "`{}` is a core WebAssembly module, not a component; build it for \
                 wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
                path.display()
            );
        }
        let component = wasmtime::component::Component::new(engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling component `{}`", path.display()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component `{}` imports something wasmlet does not provide \
                     (wasmlet provides WASI 0.2 and wasmlet:lifecycle/control)",
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
        // A component built with wasmlet-sdk says which hooks it implements; one that does not
        // say is asked at each hook, and may answer not-implemented.
        let (has_post_start, has_pre_stop) = declared_hooks(&bytes).unwrap_or((true, true));
        Ok(LoadedComponent {
            run: export_of("wasi:cli/run@0.2.", "run"),
            post_start: export_of("wasmlet:lifecycle/hooks@0.1.", "post-start")
                .filter(|_| has_post_start),
            pre_stop: export_of("wasmlet:lifecycle/hooks@0.1.", "pre-stop")
                .filter(|_| has_pre_stop),
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
    pub tmp_dir: Option<std::path::PathBuf>,
    pub logs: LogTarget,
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

/// Starts one instance of `component` calling `entry`, on `runtime`. The instance is
/// registered nowhere: the caller keeps the returned [`KillSwitch`].
pub(crate) fn spawn_instance(
    runtime: &tokio::runtime::Handle,
    engine: &Engine,
    alive: LiveInstance,
    component: Arc<LoadedComponent>,
    entry: Entry,
    container: Arc<ContainerContext>,
    io: InstanceIo,
) -> (KillSwitch, InstanceDone) {
    let kill = KillState::new(engine.clone(), runtime.clone(), container.clock.clone());
    let event = match entry {
        Entry::Run => None,
        Entry::PostStart => Some(Event::PostStart),
        Entry::PreStop => Some(Event::PreStop),
    };
    let engine = engine.clone();
    let instance_kill = kill.clone();
    let future = async move {
        // Dropped when the instance ends or is killed: the ticker stops when no guest is left.
        let _alive = alive;
        let kill = instance_kill;
        // Whether this instance (not another of the container) was refused memory.
        let refused = Arc::new(AtomicBool::new(false));
        let limiter = MemoryLimiter {
            budget: container.memory.clone(),
            charged: 0,
            refused: refused.clone(),
        };
        let result = match new_store(&engine, container, kill.clone(), event, limiter, io) {
            Ok(store) => run_instance(&component, entry, store).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(end) => end,
            Err(error) => classify_error(error, &kill, refused.load(Ordering::SeqCst)),
        }
    };
    spawn_killable(runtime, kill, Box::pin(future))
}

/// A store for one instance: its WASI context, the time slice and kill checks, the memory limit.
fn new_store(
    engine: &Engine,
    container: Arc<ContainerContext>,
    kill: Arc<KillState>,
    event: Option<Event>,
    limiter: MemoryLimiter,
    io: InstanceIo,
) -> wasmtime::Result<Store<GuestState>> {
    let mut wasi = WasiCtx::builder();
    wasi.args(&io.args)
        .envs(&io.env)
        .stdout(io.logs.stream(LogStream::Stdout))
        .stderr(io.logs.stream(LogStream::Stderr));
    if let Some(tmp) = &io.tmp_dir {
        wasi.preopened_dir(tmp, "/tmp", FsPerms::ReadWrite)?;
    }
    let mut store = Store::new(
        engine,
        GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            container,
            kill,
            event,
            limiter,
        },
    );
    store.limiter(|state| &mut state.limiter);
    // Every epoch tick is a time slice: yield so that one spinning guest never holds a worker.
    // After a kill the same check traps instead.
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
    // A killed guest gets no further host call, nor back into wasm from one. (Not on the
    // way out of wasm: the trap unwinding a killed guest passes there too.)
    store.call_hook(|context, transition| {
        let host_call = matches!(
            transition,
            CallHook::CallingHost | CallHook::ReturningFromHost
        );
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
    mut store: Store<GuestState>,
) -> wasmtime::Result<InstanceEnd> {
    let instance = component.pre.instantiate_async(&mut store).await?;
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
    runtime: &tokio::runtime::Handle,
    engine: &Engine,
    clock: Arc<dyn Clock>,
    future: impl Future<Output = InstanceEnd> + Send + 'static,
) -> (KillSwitch, InstanceDone) {
    let kill = KillState::new(engine.clone(), runtime.clone(), clock);
    spawn_killable(runtime, kill, Box::pin(future))
}

type GuestFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The state a kill acts on: the flag the store's callbacks read, and the slot holding the
/// instance's future.
struct KillState {
    killed: AtomicBool,
    /// Set when the guest yields at a time slice, cleared when it calls the host: says where a
    /// guest taken out of its slot was.
    preempted: AtomicBool,
    engine: Engine,
    reaper: tokio::runtime::Handle,
    clock: Arc<dyn Clock>,
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
    fn new(engine: Engine, reaper: tokio::runtime::Handle, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(KillState {
            killed: AtomicBool::new(false),
            preempted: AtomicBool::new(false),
            engine,
            reaper,
            clock,
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
        // Wasm that is running reaches its next epoch check and traps.
        state.engine.increment_epoch();
        // Never wait for a poll in progress (this may be the deadline thread, with other kills
        // due): if the slot is busy, that poll sees the flag when it returns and finishes the
        // kill itself.
        let taken = match state.slot.try_lock() {
            Ok(mut slot) => state.take_away(&mut slot),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                state.take_away(&mut poisoned.into_inner())
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
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
        let location = if self.preempted.load(Ordering::Relaxed) {
            "while waiting for its next time slice (CPU-bound)"
        } else {
            "while blocked in a host call"
        };
        self.mark_stopped();
        self.report(InstanceEnd::Killed {
            location: location.into(),
            at: self.stopped_at(),
        });
        if let Some(waker) = waker {
            waker.wake();
        }
        // Unwinding a fiber and freeing a large memory can take a while: not on the deadline
        // thread.
        self.reaper.spawn_blocking(move || drop(future));
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
        let state = &self.0;
        let mut slot = state.lock_slot();
        let Slot::Running { future, waker } = &mut *slot else {
            // Killed (the kill reported it) or finished.
            return Poll::Ready(());
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let end = match polled {
            Ok(Poll::Pending) => {
                *waker = Some(cx.waker().clone());
                drop(slot);
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
        Poll::Ready(())
    }
}

impl Drop for Killable {
    /// A task dropped before its instance ended (its runtime shut down) still reports, so that
    /// no supervisor waits forever.
    fn drop(&mut self) {
        let taken = self.0.take_away(&mut self.0.lock_slot());
        self.0.report(InstanceEnd::lost());
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
        sink: Arc<dyn Fn(LogLine) + Send + Sync>,
        capture: bool,
    ) -> Self {
        LogTarget {
            container,
            source,
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
        Box::new(LineWriter {
            target: self.target.clone(),
            stream: self.stream,
            partial: Vec::new(),
        })
    }
}

struct LineWriter {
    target: LogTarget,
    stream: LogStream,
    partial: Vec<u8>,
}

impl LineWriter {
    fn flush_lines(&mut self) {
        while let Some(newline) = self.partial.iter().position(|b| *b == b'\n') {
            let rest = self.partial.split_off(newline + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.target.emit(self.stream, &line);
        }
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.partial, rest);
            self.target.emit(self.stream, &piece);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.partial.extend_from_slice(buf);
        self.flush_lines();
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

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.target.emit(self.stream, &rest);
        }
    }
}
