//! wasmlet's end-to-end tests: real components built from `examples/guests`, real clocks, the
//! library and the `wasmlet` binary. One test binary, a module per area.

mod churn;
mod cli;
mod cpu;
mod deterministic;
mod explore;
mod faults;
mod fuzz;
mod guest_languages;
mod http;
mod lifecycle;
mod manifest;
mod plugins;
mod preemption;
mod sandbox;
mod standalone;
mod support;
mod workloads;
