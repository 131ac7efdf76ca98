//! wasmlet runs WebAssembly components with Kubernetes-grade lifecycle management.
//!
//! A [`Host`] starts pods ([`PodSpec`], usually from Kubernetes Pod YAML); each container is a
//! component whose `wasi:cli/run` is its main process. wasmlet delivers the lifecycle events of
//! `wit/lifecycle.wit` — postStart, preStop, terminate, kill — with Kubernetes' semantics:
//! postStart beside `run` (the container is `Waiting` until it returns), preStop before
//! terminate inside the grace budget, and a kill at the end of the grace period that lands
//! typically under 0.1 ms late (p99 under 1 ms beside 100 spinning guests in the benchmark) even for a guest in a tight
//! loop or blocked in a host call.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use wasmlet::{Host, HostConfig, PodSpec, PodUpdate};
//!
//! let host = Host::new(HostConfig::default())?;
//! let pod = host.start_pod(PodSpec::from_file("examples/pods/cooperative.yaml")?).await?;
//! let mut updates = pod.watch();
//! tokio::spawn(async move {
//!     while let Some(update) = updates.next().await {
//!         if let PodUpdate::Event(event) = update {
//!             println!("{} {}: {}", event.reason, event.object, event.message);
//!         }
//!     }
//! });
//! pod.wait_running().await;
//! pod.delete(Some(Duration::from_secs(5)));
//! let status = pod.wait().await;
//! println!("phase: {:?}", status.phase);
//! # Ok(()) }
//! ```
//!
//! Main types: [`Host`] and [`HostConfig`]; [`PodSpec`] (manifests); [`Pod`] (a running pod:
//! watch, delete, wait); [`Event`] and [`LogLine`] (what a pod reports); [`Clock`] (the one
//! source of time); [`testing`] (deterministic mode: virtual time, fuel, seeded randomness,
//! traces, and the scenarios of `wasmlet test`).

#![deny(missing_docs)]

mod bindings;
pub mod clock;
mod container;
pub mod events;
mod guest;
mod host;
mod http;
mod lifecycle;
pub mod manifest;
mod pod;
mod probe;
mod release;
mod signal;
pub mod testing;

pub use bindings::TerminationReason;
pub use clock::{Clock, SystemClock, VirtualClock};
pub use container::{EXIT_KILLED, EXIT_TRAPPED};
pub use events::{Event, EventType, LogLine, LogSource, LogStream, PodUpdate, Watch};
pub use guest::LoadedComponent;
pub use host::{Host, HostConfig, HostStats, InstancePool};
pub use manifest::{
    ComponentPod, ContainerSpec, EnvValue, ExecTarget, Handler, HttpGet, ManifestError, PodField,
    PodSpec, PortSpec, Probe, ProbeAction, ProbeKind, Problem, RestartPolicy, VolumeMount,
    VolumeSource, VolumeSpec,
};
pub use pod::{Pod, all_terminated};

/// Kubernetes types wasmlet reports in (statuses) and reads (manifests).
pub use k8s_openapi;
