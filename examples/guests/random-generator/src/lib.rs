//! The random-generator app of the Kubernetes Patterns book (`k8spatterns/random-generator`),
//! the app of the Managed Lifecycle seed manifests: it hands out random numbers and shuts down
//! cleanly. Until wasmlet serves HTTP it writes a number to its log every second instead of
//! answering `GET /`. It notices the seed's postStart marker, `/tmp/postStart_done`.
//!
//! Knob (env): `INTERVAL_MS` — time between numbers (default 1000).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;
use wasmlet_sdk::{App, export};

struct RandomGenerator;

impl App for RandomGenerator {
    fn run() -> Result<(), String> {
        let interval = std::env::var("INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        println!("random-generator: started");
        let mut woken = false;
        loop {
            if !woken && let Ok(note) = std::fs::read_to_string("/tmp/postStart_done") {
                println!("random-generator: postStart left {:?}", note.trim());
                woken = true;
            }
            // std seeds each RandomState from wasi:random.
            let number = RandomState::new().hash_one(0u8) % 1_000_000;
            println!("random-generator: {number}");
            if let Some(stop) = wasmlet_sdk::wait_for_termination(interval) {
                println!("random-generator: shutting down ({:?})", stop.reason);
                return Ok(());
            }
        }
    }
}

export!(RandomGenerator);
