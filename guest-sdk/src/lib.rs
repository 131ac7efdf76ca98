//! The guest side of wasmlet: write an application that wasmlet runs with Kubernetes-style
//! lifecycle management.
//!
//! Implement [`App`] (and the hooks you want: [`PostStart`], [`PreStop`]) for a type and call
//! [`export!`] once; build the crate as a `cdylib` for `wasm32-wasip2`. The result is a component
//! that exports `wasi:cli/run` (your [`App::run`]) and the `wasmlet:lifecycle/hooks` interface,
//! and imports
//! `wasmlet:lifecycle/control`, which the helpers of this crate wrap:
//!
//! - [`termination_requested`] — has terminate (SIGTERM) been delivered, why, how much grace is left;
//! - [`wait_for_termination`] — block until terminate arrives or a timeout passes;
//! - [`grace_remaining`] — how long until the kill, once a stop has begun (pre-stop included);
//! - [`termination_pollable`] — the raw `wasi:io/poll` pollable, to poll beside sockets and timers;
//! - [`set_ready`] — report readiness, shown as the container's `ready`.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasmlet_sdk::{App, PreStop, export};
//!
//! struct Worker;
//!
//! impl App for Worker {
//!     fn run() -> Result<(), String> {
//!         loop {
//!             // Do a unit of work, then check whether the platform wants us gone.
//!             if let Some(stop) = wasmlet_sdk::wait_for_termination(Duration::from_millis(100)) {
//!                 println!("stopping ({:?}), {:?} of grace left", stop.reason, stop.grace_remaining);
//!                 return Ok(());
//!             }
//!         }
//!     }
//! }
//!
//! impl PreStop for Worker {
//!     fn pre_stop() -> Result<(), String> {
//!         println!("draining before terminate");
//!         Ok(())
//!     }
//! }
//!
//! export!(Worker, PreStop);
//! ```
//!
//! To serve HTTP on the container's ports, implement [`http::Handler`] and call
//! [`export_http!`] (beside `export!`, or alone for a component that only serves).
//!
//! Depend on this crate alone: it re-exports [`wit_bindgen`] and the generated [`bindings`].

use std::time::Duration;

// The generated bindings name this crate by its public path, so that the `export!` macro works
// from a guest crate that depends on this SDK alone.
extern crate self as wasmlet_sdk;

pub use wit_bindgen;

/// Raw bindings generated from wasmlet's WIT (`wit/lifecycle.wit`), for what the helpers of this
/// crate do not cover.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wasmlet:lifecycle/container",
        pub_export_macro: true,
        export_macro_name: "export_container",
        default_bindings_module: "wasmlet_sdk::bindings",
        runtime_path: "wasmlet_sdk::wit_bindgen::rt",
        generate_all,
    });
}

pub mod http;

pub use bindings::exports::wasmlet::lifecycle::hooks::HookOutcome;
pub use bindings::wasi::io::poll::Pollable;
use bindings::wasmlet::lifecycle::control;
pub use bindings::wasmlet::lifecycle::types::{Event, TerminationReason};

/// An application wasmlet can run. Implement it (and any hooks) and call [`export!`].
///
/// Every function runs in an instance of its own (like a process in a container): `run` in the
/// main instance, each hook in a new, short-lived instance of the same component. They share the
/// container's files, env and args, but not memory.
pub trait App {
    /// The main process. `Ok` ends the container with exit code 0 (`Completed`); `Err` prints the
    /// message to stderr and ends it with exit code 1 (`Error`).
    fn run() -> Result<(), String>;
}

/// The postStart hook: runs beside `run` right after start; the container is `Waiting` until
/// it returns. An `Err` fails the hook, and the container is stopped with reason
/// `PostStartHookError`. A manifest `lifecycle.postStart` handler replaces it. Name it in
/// [`export!`].
pub trait PostStart {
    /// Runs the hook.
    fn post_start() -> Result<(), String>;
}

/// The preStop hook: runs before terminate, inside the grace budget. An `Err` is reported as a
/// `FailedPreStopHook` event; the stop continues either way. A manifest `lifecycle.preStop`
/// handler replaces it. Name it in [`export!`].
pub trait PreStop {
    /// Runs the hook.
    fn pre_stop() -> Result<(), String>;
}

/// Exports an [`App`] as a wasmlet component, with the hooks it implements listed after it
/// (`PostStart`, `PreStop`). Call it once, at the crate's top level. A hook that is not listed
/// answers `not-implemented`, which wasmlet treats as no hook at all: no event, no grace-period
/// minimum after it.
///
/// ```no_run
/// struct Hello;
/// impl wasmlet_sdk::App for Hello {
///     fn run() -> Result<(), String> {
///         println!("hello");
///         Ok(())
///     }
/// }
/// impl wasmlet_sdk::PreStop for Hello {
///     fn pre_stop() -> Result<(), String> {
///         println!("goodbye");
///         Ok(())
///     }
/// }
/// wasmlet_sdk::export!(Hello, PreStop);
/// ```
#[macro_export]
macro_rules! export {
    ($app:ty $(, $hook:ident)* $(,)?) => {
        const _: () = {
                        // Which hooks exist, for wasmlet to read when it loads the component: it then starts
            // no instance for a hook that is not there. (One byte each: postStart, preStop.)
            #[unsafe(link_section = "wasmlet-hooks")]
            #[used]
            static WASMLET_HOOKS: [u8; 2] = [
                $crate::__has_post_start!($($hook)*) as u8,
                $crate::__has_pre_stop!($($hook)*) as u8,
            ];

            // A listed hook must be one of the SDK's hook traits, implemented by the app.
            $(
                const _: fn() = || {
                    fn implements<T: $crate::$hook>() {}
                    implements::<$app>();
                };
            )*

            struct WasmletExports;

            impl $crate::bindings::exports::wasi::cli::run::Guest for WasmletExports {
                fn run() -> ::core::result::Result<(), ()> {
                    $crate::__enter_working_dir();
                    $crate::__report(<$app as $crate::App>::run())
                }
            }

            impl $crate::bindings::exports::wasmlet::lifecycle::hooks::Guest for WasmletExports {
                fn post_start() -> $crate::HookOutcome {
                    $crate::__post_start!($app; $($hook)*)
                }
                fn pre_stop() -> $crate::HookOutcome {
                    $crate::__pre_stop!($app; $($hook)*)
                }
            }

            $crate::bindings::export_container!(WasmletExports with_types_in $crate::bindings);
        };
    };
}

/// Enters the container's working directory (`workingDir`), which the host gives as
/// `wasi:cli/environment.initial-cwd`: Rust's standard library does not apply it itself yet.
#[doc(hidden)]
pub fn __enter_working_dir() {
    if let Some(dir) = bindings::wasi::cli::environment::initial_cwd() {
        let _ = std::env::set_current_dir(dir);
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __post_start {
    ($app:ty;) => { $crate::HookOutcome::NotImplemented };
    ($app:ty; PostStart $($rest:ident)*) => {{
        $crate::__enter_working_dir();
        $crate::__outcome(<$app as $crate::PostStart>::post_start())
    }};
    ($app:ty; $other:ident $($rest:ident)*) => { $crate::__post_start!($app; $($rest)*) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __pre_stop {
    ($app:ty;) => { $crate::HookOutcome::NotImplemented };
    ($app:ty; PreStop $($rest:ident)*) => {{
        $crate::__enter_working_dir();
        $crate::__outcome(<$app as $crate::PreStop>::pre_stop())
    }};
    ($app:ty; $other:ident $($rest:ident)*) => { $crate::__pre_stop!($app; $($rest)*) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __has_post_start {
    () => { false };
    (PostStart $($rest:ident)*) => { true };
    ($other:ident $($rest:ident)*) => { $crate::__has_post_start!($($rest)*) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __has_pre_stop {
    () => { false };
    (PreStop $($rest:ident)*) => { true };
    ($other:ident $($rest:ident)*) => { $crate::__has_pre_stop!($($rest)*) };
}

#[doc(hidden)]
#[allow(clippy::result_unit_err)] // `wasi:cli/run` returns `result` with no error payload.
pub fn __report(result: Result<(), String>) -> Result<(), ()> {
    result.map_err(|message| eprintln!("Error: {message}"))
}

#[doc(hidden)]
pub fn __outcome(result: Result<(), String>) -> HookOutcome {
    match result {
        Ok(()) => HookOutcome::Done,
        Err(message) => HookOutcome::Failed(message),
    }
}

/// What the platform said when it asked the application to stop (terminate, i.e. SIGTERM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// Why the container is being stopped.
    pub reason: TerminationReason,
    /// A human-readable explanation.
    pub message: String,
    /// The whole grace period given when the stop began.
    pub grace_period: Duration,
    /// The grace left when this was read; the instance is killed when it reaches zero.
    pub grace_remaining: Duration,
}

impl From<control::Termination> for Termination {
    fn from(raw: control::Termination) -> Self {
        Termination {
            reason: raw.reason,
            message: raw.message,
            grace_period: Duration::from_nanos(raw.grace_period),
            grace_remaining: Duration::from_nanos(raw.grace_remaining),
        }
    }
}

/// `Some` once terminate has been delivered to this container; `None` before that (including
/// while pre-stop runs).
pub fn termination_requested() -> Option<Termination> {
    control::termination_requested().map(Termination::from)
}

/// Blocks until terminate is delivered or `timeout` passes, whichever is first. Returns the
/// termination, or `None` on timeout. The wait is a `wasi:io/poll` call, so the instance uses no
/// CPU while it waits.
pub fn wait_for_termination(timeout: Duration) -> Option<Termination> {
    let terminated = termination_pollable();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let timer = bindings::wasi::clocks::monotonic_clock::subscribe_duration(nanos);
    bindings::wasi::io::poll::poll(&[&terminated, &timer]);
    termination_requested()
}

/// Blocks until terminate is delivered, however long that takes.
pub fn wait_for_termination_forever() -> Termination {
    termination_pollable().block();
    termination_requested().expect("the termination pollable is ready only after terminate")
}

/// The grace left before the container is killed, once a stop has begun (pre-stop included);
/// `None` while nobody has asked the container to stop.
pub fn grace_remaining() -> Option<Duration> {
    control::grace_remaining().map(Duration::from_nanos)
}

/// A `wasi:io/poll` pollable that becomes ready when terminate is delivered. Poll it together
/// with your sockets and timers.
pub fn termination_pollable() -> Pollable {
    control::subscribe_termination()
}

/// Which hook this instance runs for: `Some(Event::PostStart)` or `Some(Event::PreStop)` in a hook
/// instance, `None` in the main instance.
pub fn current_event() -> Option<Event> {
    control::current_event()
}

/// Reports whether the application is ready for work; shown as the container's `ready`.
pub fn set_ready(ready: bool) {
    control::set_ready(ready)
}
