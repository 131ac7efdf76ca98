//! The random-generator app of the Kubernetes Patterns book (`k8spatterns/random-generator`),
//! the app of the Managed Lifecycle seed manifests: it hands out random numbers and shuts down
//! cleanly. It serves HTTP (on the container's ports, or the port its hooks and probes use):
//! - `GET /` — a random number, as JSON;
//! - `GET /shutdown` — what the seed's preStop hook calls: it logs the call and leaves
//!   `/tmp/shutdown_called`, which `run` notices;
//! - `GET /health` and `GET /ready` — 200.
//!
//! Its `run` writes a number to its log every interval, and notices the seed's postStart marker,
//! `/tmp/postStart_done`.
//!
//! Knob (env): `INTERVAL_MS` — time between numbers (default 1000).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;
use wasmlet_sdk::http::{Handler, Request, Response};
use wasmlet_sdk::{App, export, export_http};

struct RandomGenerator;

impl App for RandomGenerator {
    fn run() -> Result<(), String> {
        let interval = std::env::var("INTERVAL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        println!("random-generator: started");
        let mut woken = false;
        let mut asked_to_shut_down = false;
        loop {
            if !woken && let Ok(note) = std::fs::read_to_string("/tmp/postStart_done") {
                println!("random-generator: postStart left {:?}", note.trim());
                woken = true;
            }
            if !asked_to_shut_down && std::fs::metadata(SHUTDOWN_MARKER).is_ok() {
                println!("random-generator: /shutdown was called; finishing up");
                asked_to_shut_down = true;
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

/// Left by `GET /shutdown`.
const SHUTDOWN_MARKER: &str = "/tmp/shutdown_called";

impl Handler for RandomGenerator {
    fn handle(request: Request) -> Response {
        match request.path() {
            "/" => {
                let number = RandomState::new().hash_one(0u8) % 1_000_000;
                Response::new(200, format!("{{\"random\": {number}}}\n"))
                    .with_header("content-type", "application/json")
            }
            "/shutdown" => {
                println!("random-generator: GET /shutdown: shutting down gracefully");
                match std::fs::write(SHUTDOWN_MARKER, "called\n") {
                    Ok(()) => Response::text(200, "shutting down\n"),
                    Err(error) => Response::text(500, format!("cannot record it: {error}\n")),
                }
            }
            "/health" | "/ready" => Response::text(200, "ok\n"),
            other => Response::text(404, format!("no route for {other}\n")),
        }
    }
}

export!(RandomGenerator);
export_http!(RandomGenerator);
