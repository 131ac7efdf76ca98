//! HTTP: a container whose component exports `wasi:http/incoming-handler` serves its ports, and
//! the kubelet's own requests (`httpGet` hooks and probes, `tcpSocket` probes) reach it.
//!
//! A [`Server`] owns a container run's listeners and the requests in flight:
//! - every request gets a fresh instance of the component (as `wasmtime serve` does), killable
//!   like any instance of the container and charged to its memory limit; instances are not
//!   reused, so no request sees another's memory;
//! - the readiness gate: while the container is not ready, the listener answers 503 — the local
//!   stand-in for Kubernetes taking a pod out of its Service's endpoints. The kubelet's own
//!   requests pass the gate (in Kubernetes they reach the pod directly, not through a Service);
//!   they carry a per-host secret header that the listener strips;
//! - the drain: on terminate the listeners close (new connections are refused), open
//!   connections finish their current request and close, and the requests in flight run on until
//!   they finish or the kill at the end of the grace period ends their handlers — then their
//!   clients get an error, and the count is reported in an event.
//!
//! In deterministic mode nothing binds a socket: the kubelet's requests reach the handler
//! in-process, on virtual time.
//!
//! [`server`] is the container's side, [`client`] the kubelet's. Both depend on the runtime
//! layer only: what they need of the pod comes as a [`Serving`] and through [`PodNetwork`].

mod client;
mod server;

pub(crate) use client::{PodNetwork, get_url, http_get, tcp_check};
pub(crate) use server::{Server, Serving};
