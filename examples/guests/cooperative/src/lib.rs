//! A well-behaved application: it warms up in postStart, drains in preStop, and exits cleanly
//! as soon as terminate arrives.
//!
//! Knobs (env): `POST_START_MS` — how long postStart takes; `WORK_MS` — exit on its own after
//! this long; `CLEANUP_MS` — how long shutdown takes after terminate; `NOT_READY_MS` — report
//! not-ready for this long after start, then ready; `SHOW_PWD` — say the working directory at
//! start.

use std::time::{Duration, Instant};
use wasmlet_sdk::{App, PostStart, PreStop, export};

struct Cooperative;

fn millis_from_env(name: &str) -> Option<Duration> {
    std::env::var(name).ok()?.parse().ok().map(Duration::from_millis)
}

impl App for Cooperative {
    fn run() -> Result<(), String> {
        println!("run: started, working until terminated");
        if std::env::var("SHOW_PWD").is_ok() {
            let dir = std::env::current_dir().map(|d| d.display().to_string());
            println!("run: working directory {}", dir.unwrap_or_else(|e| e.to_string()));
        }
        let started = Instant::now();
        let work = millis_from_env("WORK_MS");
        let mut warming = millis_from_env("NOT_READY_MS");
        if warming.is_some() {
            wasmlet_sdk::set_ready(false);
        }
        loop {
            let wait = match work {
                Some(work) if started.elapsed() >= work => {
                    println!("run: work finished, exiting on my own");
                    return Ok(());
                }
                Some(work) => (work - started.elapsed()).min(Duration::from_millis(500)),
                                None => Duration::from_millis(500),
            };
            let wait = match warming {
                Some(until) if started.elapsed() >= until => {
                    wasmlet_sdk::set_ready(true);
                    println!("run: ready");
                    warming = None;
                    wait
                }
                Some(until) => wait.min(until - started.elapsed()),
                None => wait,
            };
            if let Some(stop) = wasmlet_sdk::wait_for_termination(wait) {
                println!(
                    "run: terminate received ({:?}), {} ms of {} ms grace left",
                    stop.reason,
                    stop.grace_remaining.as_millis(),
                    stop.grace_period.as_millis()
                );
                // Hook instances share the container's /tmp, not its memory.
                if std::fs::metadata("/tmp/postStart_done").is_ok() {
                    println!("run: /tmp/postStart_done is there");
                }
                if let Some(cleanup) = millis_from_env("CLEANUP_MS") {
                    std::thread::sleep(cleanup);
                }
                println!("run: clean shutdown");
                return Ok(());
            }
        }
    }
}

impl PostStart for Cooperative {
    fn post_start() -> Result<(), String> {
        println!("postStart: warming up");
        if let Some(warm_up) = millis_from_env("POST_START_MS") {
            std::thread::sleep(warm_up);
        }
        std::fs::write("/tmp/postStart_done", "warm\n").map_err(|e| e.to_string())?;
        println!("postStart: done");
        Ok(())
    }
}

impl PreStop for Cooperative {
    fn pre_stop() -> Result<(), String> {
        let left = wasmlet_sdk::grace_remaining().unwrap_or_default();
        println!("preStop: draining, {} ms of grace left", left.as_millis());
        Ok(())
    }
}

export!(Cooperative, PostStart, PreStop);
