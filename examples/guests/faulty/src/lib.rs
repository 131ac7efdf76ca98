//! A guest that fails on purpose, for the reliability tests: one fault, in `run`, in its
//! postStart hook or in its preStop hook. Everywhere else it behaves: `run` waits for terminate
//! and returns, the hooks return at once.
//!
//! Knobs (env):
//! - `FAULT_IN`: `run` (the default), `postStart` or `preStop`;
//! - `FAULT`: `trap` (abort), `panic`, `stack-overflow` (unbounded recursion), `oom` (allocates
//!   until refused), `exit` (`exit(3)`), `loop` (spins without calling the host), `hang` (sleeps
//!   in a host call forever), `flood` (20,000 lines and one line of 1 MiB) or `error` (returns an
//!   error).

use std::time::Duration;
use wasmlet_sdk::{App, PostStart, PreStop, export};

struct Faulty;

/// Commits the configured fault if `place` is where it belongs.
fn fault_in(place: &str) -> Result<(), String> {
    let wanted = std::env::var("FAULT_IN").unwrap_or_else(|_| "run".into());
    if wanted != place {
        return Ok(());
    }
    let fault = std::env::var("FAULT").unwrap_or_default();
    println!("faulty: {fault} in {place}");
    match fault.as_str() {
        "trap" => std::process::abort(),
        "panic" => panic!("faulty: panic in {place}"),
        "stack-overflow" => {
            println!("faulty: {}", recurse(0));
            Ok(())
        }
        "oom" => {
            let mut hoard = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
            }
        }
        "exit" => std::process::exit(3),
        "loop" => {
            let mut state = 1u64;
            loop {
                state = std::hint::black_box(state.wrapping_mul(3).wrapping_add(1));
            }
        }
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "flood" => {
            let line = "x".repeat(100);
            for index in 0..20_000 {
                println!("{index} {line}");
            }
            println!("{}", "y".repeat(1 << 20));
            Ok(())
        }
        "error" => Err(format!("faulty: error in {place}")),
        other => Err(format!("faulty: no such FAULT {other:?}")),
    }
}

/// Recursion without end (each frame keeps a little stack).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1).wrapping_add(frame[0])
}

impl App for Faulty {
    fn run() -> Result<(), String> {
        fault_in("run")?;
        let stop = wasmlet_sdk::wait_for_termination_forever();
        println!("faulty: terminated ({:?})", stop.reason);
        Ok(())
    }
}

impl PostStart for Faulty {
    fn post_start() -> Result<(), String> {
        fault_in("postStart")
    }
}

impl PreStop for Faulty {
    fn pre_stop() -> Result<(), String> {
        fault_in("preStop")
    }
}

export!(Faulty, PostStart, PreStop);
