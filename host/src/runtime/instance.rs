//! Starting and running one instance: [`spawn_instance`] (a store, the component's
//! instantiation, the call of its export) and [`spawn_task`] (a host-side hook handler killable
//! like an instance).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::Resource;
use wasmtime::{Store, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::Runtime;
use super::component::{Entry, LoadedComponent};
use super::context::ContainerContext;
use super::end::{InstanceDone, InstanceEnd};
use super::engine::Placement;
use super::kill::{KillState, KillSwitch, spawn_killable};
use super::memory::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES, MemoryLimiter};
use super::scheduling::InstanceScheduling;
use super::store::{GuestState, InstanceIo, StoreSetup, new_store};
use crate::bindings::Event;

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

/// Starts one instance of `component` calling `entry`, on the host's guest runtime. The
/// instance is registered nowhere: the caller keeps the returned [`KillSwitch`].
pub(crate) fn spawn_instance(
    runtime: &Runtime,
    component: Arc<LoadedComponent>,
    entry: Entry,
    container: Arc<ContainerContext>,
    io: InstanceIo,
) -> (KillSwitch, InstanceDone) {
    let InstanceScheduling { cpu, seed } = runtime.scheduling.new_instance();
    // A slot of the instance pool, or on demand beyond it: on the component's build for that,
    // made (blocking) in the instance's task below if this is the first instance beyond.
    let (component, slot, to_build, engine) =
        match runtime.wasm.place(&component, container.memory.limit()) {
            Placement::Ready(placed, slot) => {
                let engine = placed.pre.engine().clone();
                (placed, slot, false, engine)
            }
            Placement::OnDemand(pooled, engine) => (pooled, None, true, engine),
        };
    let kill = KillState::new(
        runtime,
        engine.clone(),
        container.clock.clone(),
        cpu.clone(),
        Some(container.cpu.clone()),
    );
    let event = match entry {
        Entry::Run => None,
        Entry::PostStart => Some(Event::PostStart),
        Entry::PreStop => Some(Event::PreStop),
        Entry::Handle | Entry::Call => None,
    };
    // Dropped when the instance ends or is killed: the ticker sleeps when no guest is left.
    let alive = runtime.ticker.instance_alive();
    let instance_kill = kill.clone();
    let future = async move {
        // Locals, declared before the store: a future dropped before it ends (killed) drops
        // them after the store, so the pool slot is counted free only once the store is gone.
        let (alive, slot) = (alive, slot);
        let kill = instance_kill;
        let component = if to_build {
            let built = tokio::task::spawn_blocking(move || component.on_demand_build()).await;
            match built {
                Ok(Ok(built)) => built,
                Ok(Err(error)) => {
                    return classify_error(wasmtime::format_err!("{error:#}"), &kill, false);
                }
                Err(error) => {
                    return classify_error(wasmtime::format_err!("{error}"), &kill, false);
                }
            }
        } else {
            component
        };
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
                // The store first, for the same reason.
                kill.free_after_report(Box::new((store, slot, alive)));
                end
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(end) => end,
            Err(error) => classify_error(error, &kill, refused.load(Ordering::SeqCst)),
        }
    };
    spawn_killable(&runtime.guests, kill, Box::pin(future))
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
    if entry == Entry::Call {
        let call = store
            .data_mut()
            .guest_call
            .take()
            .ok_or_else(|| wasmtime::format_err!("a call instance without a call"))?;
        call(store, &instance).await?;
        return Ok(InstanceEnd::Returned(Ok(())));
    }
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
        Entry::Call => unreachable!("called above"),
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
    runtime: &Runtime,
    future: impl Future<Output = InstanceEnd> + Send + 'static,
) -> (KillSwitch, InstanceDone) {
    let kill = KillState::new(
        runtime,
        runtime.wasm.engine.clone(),
        runtime.clock.clone(),
        None,
        None,
    );
    spawn_killable(&runtime.guests, kill, Box::pin(future))
}
