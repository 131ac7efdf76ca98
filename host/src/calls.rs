//! Calls into a container's exports ([`Pod::call`](crate::Pod::call)): one run of a container's
//! call gate ([`Calls`]) — each call on a fresh instance of the container's component (its env,
//! args, volumes, `/tmp`, memory and CPU limits, and its kill), admitted only while the
//! container is `Running` and not stopping; at a stop the calls in flight drain within the
//! grace period, and those still running at the deadline are killed with the container, their
//! callers told so. An optional per-call timeout kills just that call's instance.
//!
//! The same guarantees as the HTTP drain ([`crate::http`]), with events of the same names:
//! `Draining`, `Drained`, and `KilledCalls`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::Instance;

use crate::events::{EventType, LogSource, short_duration};
use crate::runtime::{
    Entry, GuestCall, GuestState, InstanceEnd, InstanceGroup, Launcher, LoadedComponent,
};
use crate::signal::Watched;

/// Where a container's call gate reports events: `(type, reason, container, message)`.
pub(crate) type EventSink = Arc<dyn Fn(EventType, &str, Option<&str>, String) + Send + Sync>;

/// The future an embedder's call returns: its calls into the instance, borrowing its store.
pub type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// How a call may go ([`Pod::call`](crate::Pod::call)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Kill the call's instance if it has not returned after this long, on the host's clock:
    /// the caller gets [`CallError::TimedOut`], and the container is not affected. Default:
    /// no timeout (a stop's deadline still ends it).
    pub timeout: Option<Duration>,
}

impl CallOptions {
    /// A call killed if it takes longer than `timeout`.
    pub fn timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
        }
    }
}

/// Why a call did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The pod has no container of that name.
    #[error("pod `{pod}` has no container `{container}` (it has {known})")]
    NoSuchContainer {
        /// The pod.
        pod: String,
        /// The name asked for.
        container: String,
        /// Its containers' names.
        known: String,
    },
    /// The container is not `Running`: not started, its postStart hook not done, waiting to
    /// restart, or ended. `state` says which.
    #[error("call refused: container `{container}` is not running ({state})")]
    NotRunning {
        /// The container.
        container: String,
        /// What it is doing instead: `Waiting (ContainerCreating)`, `Terminated (Completed)`, ….
        state: String,
    },
    /// The container is being stopped: it takes no new calls, and those in flight drain.
    #[error("call refused: container `{container}` is stopping ({reason})")]
    Stopping {
        /// The container.
        container: String,
        /// Why it is stopping.
        reason: String,
    },
    /// The call was still running when the container was killed: at the end of its grace
    /// period, or by a kill.
    #[error(
        "call killed at the deadline: container `{container}` was stopped and the call was still \
         running when its grace period ran out"
    )]
    Killed {
        /// The container.
        container: String,
    },
    /// The call took longer than its [`CallOptions::timeout`] and was killed.
    #[error("call to container `{container}` timed out after {} and was killed", short_duration(*.after))]
    TimedOut {
        /// The container.
        container: String,
        /// The timeout.
        after: Duration,
    },
    /// The instance trapped, or the embedder's calls returned an error.
    #[error("call to container `{container}` failed: {message}")]
    Failed {
        /// The container.
        container: String,
        /// The trap or error, with where the guest was.
        message: String,
    },
    /// The guest called `wasi:cli/exit` during the call.
    #[error("call to container `{container}`: the guest exited with code {code}")]
    Exited {
        /// The container.
        container: String,
        /// Its exit code.
        code: i32,
    },
}

impl CallError {
    /// The variant's name: `NoSuchContainer`, `NotRunning`, `Stopping`, `Killed`, `TimedOut`,
    /// `Failed` or `Exited` (what a scenario's `call:` step expects as `error`).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::NoSuchContainer { .. } => "NoSuchContainer",
            CallError::NotRunning { .. } => "NotRunning",
            CallError::Stopping { .. } => "Stopping",
            CallError::Killed { .. } => "Killed",
            CallError::TimedOut { .. } => "TimedOut",
            CallError::Failed { .. } => "Failed",
            CallError::Exited { .. } => "Exited",
        }
    }
}

/// One run of a container's call gate: the calls in flight, whether new ones are admitted,
/// and the drain.
pub(crate) struct Calls {
    launcher: Arc<Launcher>,
    component: Arc<LoadedComponent>,
    events: EventSink,
    state: Mutex<GateState>,
    /// Calls in flight, from their admission (`Watched` wakes waiters in order, which
    /// deterministic mode needs).
    in_flight: Watched<usize>,
    /// The calls' instances: each killed alone by its timeout or its caller, all with the
    /// container.
    instances: InstanceGroup,
}

#[derive(Default)]
struct GateState {
    admission: Admission,
    /// When the drain began and how many calls were in flight then.
    drain_began: Option<(Instant, usize)>,
    /// Calls killed with the container.
    killed_calls: usize,
}

#[derive(Default, Clone, PartialEq, Eq)]
enum Admission {
    /// postStart is not done.
    #[default]
    Starting,
    Open,
    /// The container is being stopped, for this reason.
    Stopping(String),
    /// The container run is over.
    Ended,
}

impl Calls {
    pub fn new(
        launcher: Arc<Launcher>,
        component: Arc<LoadedComponent>,
        events: EventSink,
    ) -> Arc<Calls> {
        Arc::new(Calls {
            launcher,
            component,
            events,
            state: Mutex::new(GateState::default()),
            in_flight: Watched::new(0),
            instances: InstanceGroup::default(),
        })
    }

    fn name(&self) -> &str {
        &self.launcher.name
    }

    /// postStart is done: calls are admitted.
    pub fn open(&self) {
        let mut state = self.state.lock().unwrap();
        if state.admission == Admission::Starting {
            state.admission = Admission::Open;
        }
    }

    /// The container's stop began: no new call is admitted; those in flight go on until they
    /// return or the deadline kills them.
    pub fn begin_drain(&self, reason: &str) {
        let in_flight = {
            let mut state = self.state.lock().unwrap();
            if matches!(state.admission, Admission::Stopping(_) | Admission::Ended) {
                return;
            }
            state.admission = Admission::Stopping(reason.to_string());
            let in_flight = self.in_flight.get();
            if in_flight > 0 {
                state.drain_began = Some((self.launcher.runtime.clock.now(), in_flight));
            }
            in_flight
        };
        // A stop with no call in flight has nothing to drain (and says nothing).
        if in_flight > 0 {
            (self.events)(
                EventType::Normal,
                "Draining",
                Some(self.name()),
                format!(
                    "Refusing new calls; {in_flight} call{} in flight",
                    plural(in_flight)
                ),
            );
        }
    }

    /// Whether a call is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.get() > 0
    }

    /// Resolves when no call is in flight.
    pub async fn drained(&self) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|count| *count == 0).await;
    }

    /// Kills every call still running (the container is being killed).
    pub fn kill_all(&self) {
        self.instances.kill_all();
    }

    /// The container run is over: every call has ended; say what the drain came to.
    pub fn shut_down(&self) {
        self.state.lock().unwrap().admission = Admission::Ended;
        self.kill_all();
        let killed = self.state.lock().unwrap().killed_calls;
        if killed > 0 {
            (self.events)(
                EventType::Warning,
                "KilledCalls",
                Some(self.name()),
                format!(
                    "{killed} call{} still in flight when the container was killed; their \
                     callers got an error",
                    plural(killed)
                ),
            );
        }
    }

    /// Runs `call` on a fresh instance, if the container admits it, and says how it ended.
    pub async fn call(
        self: &Arc<Self>,
        call: GuestCall,
        options: CallOptions,
    ) -> Result<(), CallError> {
        {
            let state = self.state.lock().unwrap();
            match &state.admission {
                Admission::Open => {}
                Admission::Starting => {
                    return Err(CallError::NotRunning {
                        container: self.name().to_string(),
                        state: "Waiting (its postStart hook has not returned)".into(),
                    });
                }
                Admission::Stopping(reason) => {
                    return Err(CallError::Stopping {
                        container: self.name().to_string(),
                        reason: reason.clone(),
                    });
                }
                Admission::Ended => {
                    return Err(CallError::NotRunning {
                        container: self.name().to_string(),
                        state: "Terminated".into(),
                    });
                }
            }
            // Counted under the lock, so that a drain beginning now counts it.
            self.in_flight.send_if_modified(|count| {
                *count += 1;
                true
            });
        }
        let mut io = self
            .launcher
            .io(LogSource::Call, self.launcher.argv(), false);
        io.call = Some(call);
        let (switch, done) = self.launcher.spawn(self.component.clone(), Entry::Call, io);
        let id = self.instances.add(switch);
        // The instance's end is counted even if the caller gives up on it.
        let (end_sender, end) = tokio::sync::oneshot::channel();
        let calls = self.clone();
        self.launcher.runtime.guests.spawn(async move {
            let end = done.await.unwrap_or_else(|_| InstanceEnd::lost());
            let killed_with_container = calls.ended(id, &end);
            let _ = end_sender.send((end, killed_with_container));
        });
        // A caller that drops the call kills its instance.
        let abandon = KillOnDrop {
            calls: self.clone(),
            id,
            armed: true,
        };
        let timed_out = async {
            match options.timeout {
                Some(timeout) => crate::clock::sleep(&self.launcher.runtime.clock, timeout).await,
                None => std::future::pending().await,
            }
        };
        let mut end = std::pin::pin!(end);
        let (end, killed_with_container, timed_out) = tokio::select! {
            biased;
            ended = &mut end => {
                let (end, killed) = ended.unwrap_or_else(|_| (InstanceEnd::lost(), false));
                (end, killed, false)
            }
            () = timed_out => {
                self.instances.kill_one(id);
                let (end, killed) = end.await.unwrap_or_else(|_| (InstanceEnd::lost(), false));
                (end, killed, true)
            }
        };
        let mut abandon = abandon;
        abandon.armed = false;
        let container = self.name().to_string();
        match end {
            InstanceEnd::Returned(Ok(())) | InstanceEnd::NotImplemented => Ok(()),
            InstanceEnd::Killed { .. } if killed_with_container => {
                Err(CallError::Killed { container })
            }
            InstanceEnd::Killed { .. } if timed_out => Err(CallError::TimedOut {
                container,
                after: options.timeout.unwrap_or_default(),
            }),
            InstanceEnd::Killed { location, .. } => Err(CallError::Failed {
                container,
                message: format!("killed {location}"),
            }),
            InstanceEnd::Exited(code) => Err(CallError::Exited { container, code }),
            InstanceEnd::Returned(Err(message)) | InstanceEnd::Trapped { message, .. } => {
                Err(CallError::Failed { container, message })
            }
        }
    }

    /// Counts the end of call `id`; says whether the container's kill ended it.
    fn ended(&self, id: u64, end: &InstanceEnd) -> bool {
        let (killed_with_container, drained) = {
            let member = self.instances.ended(id);
            let mut state = self.state.lock().unwrap();
            // Killed, and not by its own timeout or caller: by the container's kill.
            let killed_with_container =
                matches!(end, InstanceEnd::Killed { .. }) && !member.killed_alone;
            if killed_with_container {
                state.killed_calls += 1;
            }
            let left = self.in_flight.get().saturating_sub(1);
            let drained = match state.drain_began {
                Some(began) if left == 0 && state.killed_calls == 0 => {
                    state.drain_began = None;
                    Some(began)
                }
                _ => None,
            };
            self.in_flight.send_if_modified(|count| {
                *count = count.saturating_sub(1);
                true
            });
            (killed_with_container, drained)
        };
        if let InstanceEnd::Trapped { message, .. } = end {
            (self.events)(
                EventType::Warning,
                "CallFailed",
                Some(self.name()),
                format!("a call failed: {message}"),
            );
        }
        if let Some((began, count)) = drained {
            let took = (self.launcher.runtime.clock.now()).saturating_duration_since(began);
            (self.events)(
                EventType::Normal,
                "Drained",
                Some(self.name()),
                format!(
                    "{count} in-flight call{} finished in {}",
                    plural(count),
                    short_duration(took)
                ),
            );
        }
        killed_with_container
    }
}

/// Kills a call's instance when its caller drops the call before it ended.
struct KillOnDrop {
    calls: Arc<Calls>,
    id: u64,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.calls.instances.kill_one(self.id);
        }
    }
}

/// Wraps the embedder's `call`, whose result goes to the returned receiver.
pub(crate) fn guest_call<R, F>(call: F) -> (GuestCall, tokio::sync::oneshot::Receiver<R>)
where
    R: Send + 'static,
    F: for<'a> FnOnce(&'a mut Store<GuestState>, &'a Instance) -> CallFuture<'a, R>
        + Send
        + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let guest_call: GuestCall = Box::new(move |store, instance| {
        Box::pin(async move {
            let result = call(store, instance).await?;
            let _ = sender.send(result);
            Ok(())
        })
    });
    (guest_call, receiver)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Calls the exported function `export` of `instance` with `args` in the WAVE syntax
/// (`"text"`, `42`, `[1, 2]`, `{a: 1}`, `ok("x")`), and says what it returned, in WAVE.
/// `export` is `interface#function` (the interface's version, or its package, may be left out)
/// or a function the component exports itself.
pub(crate) async fn call_wave(
    store: &mut Store<GuestState>,
    instance: &Instance,
    export: &str,
    args: &[String],
) -> wasmtime::Result<Vec<String>> {
    use wasmtime::component::Val;
    let func = find_function(store, instance, export)?;
    let ty = func.ty(&*store);
    let params: Vec<_> = ty
        .params()
        .map(|(name, ty)| (name.to_string(), ty))
        .collect();
    if params.len() != args.len() {
        wasmtime::bail!(
            "`{export}` takes {} argument{} ({}), not {}",
            params.len(),
            plural(params.len()),
            params
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            args.len()
        );
    }
    let params = params
        .iter()
        .zip(args)
        .map(|((name, ty), arg)| {
            Val::from_wave(ty, arg).map_err(|error| {
                wasmtime::format_err!(
                    "argument `{name}` of `{export}`: `{arg}` is not a WAVE value of its type: \
                     {error}"
                )
            })
        })
        .collect::<wasmtime::Result<Vec<_>>>()?;
    let mut results = vec![Val::Bool(false); ty.results().len()];
    func.call_async(&mut *store, &params, &mut results).await?;
    results.iter().map(Val::to_wave).collect()
}

/// The function `export` names in `instance`: `interface#function`, or a function of the
/// component's own. An error says what the component exports.
fn find_function(
    store: &mut Store<GuestState>,
    instance: &Instance,
    export: &str,
) -> wasmtime::Result<wasmtime::component::Func> {
    use wasmtime::component::types::ComponentItem;
    let engine = store.engine().clone();
    let component = instance.instance_pre(&*store).component().clone();
    let ty = component.component_type();
    let (interface, function) = match export.split_once('#') {
        Some((interface, function)) => (Some(interface), function),
        None => (None, export),
    };
    let index = match interface {
        Some(interface) => ty
            .exports(&engine)
            .find(|(name, _)| names_interface(name, interface))
            .and_then(|(name, _)| instance.get_export_index(&mut *store, None, name))
            .and_then(|found| instance.get_export_index(&mut *store, Some(&found), function)),
        None => instance.get_export_index(&mut *store, None, function),
    };
    if let Some(func) = index.and_then(|index| instance.get_func(&mut *store, index)) {
        return Ok(func);
    }
    // Say what there is to call.
    let mut functions = Vec::new();
    for (name, item) in ty.exports(&engine) {
        match item.ty {
            ComponentItem::ComponentFunc(_) => functions.push(name.to_string()),
            ComponentItem::ComponentInstance(exported) => {
                for (function, item) in exported.exports(&engine) {
                    if matches!(item.ty, ComponentItem::ComponentFunc(_)) {
                        functions.push(format!("{name}#{function}"));
                    }
                }
            }
            _ => {}
        }
    }
    wasmtime::bail!(
        "the component exports no function `{export}`; it exports {}",
        if functions.is_empty() {
            "none".to_string()
        } else {
            functions.join(", ")
        }
    )
}

/// Whether the export `name` (`example:plugins/handler@0.1.0`) is what `interface` names: the
/// whole name, the name without its version (`example:plugins/handler`), or the interface's own
/// name alone (`handler`).
fn names_interface(name: &str, interface: &str) -> bool {
    let unversioned = name.split_once('@').map_or(name, |(name, _)| name);
    let own = unversioned
        .rsplit_once('/')
        .map_or(unversioned, |(_, own)| own);
    name == interface || unversioned == interface || own == interface
}
