//! Guest faults — trap, panic, stack overflow, memory past the limit, exit(n), an endless loop,
//! a hang in a host call, a flood of output, an error — in `run`, in postStart and in preStop.
//! Each ends with the right reason and exit code, and a neighbour pod in the same host carries
//! on. On virtual time, so the grace periods cost nothing.

use std::time::Duration;

use wasmlet::all_terminated;
use wasmlet::testing::{Simulation, SimulationConfig, TraceItem};

use crate::support::{single, terminated};

/// How a faulty container is expected to end.
struct Expected {
    exit_code: i32,
    reason: &'static str,
    /// An event the fault must cause.
    event: Option<&'static str>,
    /// It ends without being deleted.
    ends_by_itself: bool,
}

const fn ends(exit_code: i32, reason: &'static str, event: Option<&'static str>) -> Expected {
    Expected {
        exit_code,
        reason,
        event,
        ends_by_itself: true,
    }
}

const fn on_delete(exit_code: i32, reason: &'static str, event: Option<&'static str>) -> Expected {
    Expected {
        exit_code,
        reason,
        event,
        ends_by_itself: false,
    }
}

const FAULTS: [&str; 9] = [
    "trap",
    "panic",
    "stack-overflow",
    "oom",
    "exit",
    "loop",
    "hang",
    "flood",
    "error",
];

fn expected(place: &str, fault: &str) -> Expected {
    match (place, fault) {
        ("run", "trap" | "panic" | "stack-overflow") => ends(134, "Error", None),
        ("run", "oom") => ends(137, "OOMKilled", None),
        // Rust's std on wasm32-wasip2 reports every non-zero exit code as 1.
        ("run", "exit" | "error") => ends(1, "Error", None),
        // Deaf to terminate: killed at the end of the grace period.
        ("run", "loop" | "hang") => on_delete(137, "Killed", None),
        (_, "flood") => on_delete(0, "Completed", None),
        // A failed postStart stops the container; run then returns on terminate.
        ("postStart", "loop" | "hang") => on_delete(0, "Completed", None),
        ("postStart", _) => ends(0, "PostStartHookError", Some("FailedPostStartHook")),
        // A failed (or killed) preStop never prevents the stop.
        ("preStop", _) => on_delete(0, "Completed", Some("FailedPreStopHook")),
        other => unreachable!("{other:?}"),
    }
}

fn faulty(place: &str, fault: &str) -> wasmlet::PodSpec {
    single(
        &format!("{}-{fault}", place.to_lowercase()),
        "faulty",
        5,
        &format!(
            "env: [{{name: FAULT_IN, value: {place}}}, {{name: FAULT, value: {fault}}}]\n\
             resources: {{limits: {{memory: 64Mi}}}}"
        ),
    )
}

#[test]
fn every_fault_in_every_place_ends_as_it_should_and_the_neighbour_carries_on() {
    let mut sim = Simulation::new(SimulationConfig::default()).unwrap();
    let neighbour = sim
        .start(single("neighbour", "cooperative", 5, ""))
        .unwrap();
    sim.wait_for(
        &neighbour,
        |s| s.phase.as_deref() == Some("Running"),
        Some(Duration::from_secs(60)),
    )
    .unwrap();
    let mut failures = Vec::new();
    for place in ["run", "postStart", "preStop"] {
        for fault in FAULTS {
            let expected = expected(place, fault);
            let pod = sim.start(faulty(place, fault)).unwrap();
            let limit = sim.now() + Duration::from_secs(120);
            if !expected.ends_by_itself {
                sim.advance(Duration::from_secs(1));
                sim.delete(&pod, None);
            }
            let status = match sim.wait_for(&pod, all_terminated, Some(limit)) {
                Ok(status) => status,
                Err(error) => {
                    failures.push(format!("{place}/{fault}: did not end: {error}"));
                    continue;
                }
            };
            let end = terminated(&status, 0);
            let reason = end.reason.clone().unwrap_or_default();
            if end.exit_code != expected.exit_code || reason != expected.reason {
                failures.push(format!(
                    "{place}/{fault}: ended {} {reason:?} ({:?}), expected {} {:?}",
                    end.exit_code, end.message, expected.exit_code, expected.reason
                ));
            }
            if let Some(event) = expected.event {
                let seen = sim.entries().iter().any(|entry| {
                    matches!(&entry.what, TraceItem::Event(e)
                        if e.reason == event && e.object == format!("pod/{}", pod.name()))
                });
                if !seen {
                    failures.push(format!("{place}/{fault}: no {event} event"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The neighbour ran through all of it, and stops cleanly.
    assert_eq!(neighbour.status().phase.as_deref(), Some("Running"));
    sim.delete(&neighbour, None);
    let status = sim
        .wait_for(
            &neighbour,
            all_terminated,
            Some(sim.now() + Duration::from_secs(60)),
        )
        .unwrap();
    assert_eq!(terminated(&status, 0).exit_code, 0);
}

#[test]
fn a_flood_of_output_is_cut_into_bounded_lines() {
    let mut sim = Simulation::new(SimulationConfig::default()).unwrap();
    let pod = sim.start(faulty("run", "flood")).unwrap();
    sim.advance(Duration::from_secs(1));
    let longest = sim
        .entries()
        .iter()
        .filter_map(|entry| match &entry.what {
            TraceItem::Log(line) => Some(line.line.len()),
            _ => None,
        })
        .max()
        .unwrap();
    // The 1 MiB line arrives in pieces of at most 16 KiB.
    assert!(longest <= 16 * 1024, "{longest}");
    sim.delete(&pod, None);
    sim.wait_for(
        &pod,
        all_terminated,
        Some(sim.now() + Duration::from_secs(30)),
    )
    .unwrap();
}
