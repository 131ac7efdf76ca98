//! An application whose preStop hook never finishes in time: the grace period runs out during
//! preStop, terminate still arrives (with the 2 s minimum after preStop), and the app then exits
//! cleanly.

use std::time::Duration;
use wasmlet_sdk::{App, PreStop, export};

struct SlowPreStop;

impl App for SlowPreStop {
    fn run() -> Result<(), String> {
        println!("run: waiting for terminate");
        let stop = wasmlet_sdk::wait_for_termination_forever();
        println!(
            "run: terminate received, {} ms of grace left; exiting",
            stop.grace_remaining.as_millis()
        );
        Ok(())
    }
}

impl PreStop for SlowPreStop {
    fn pre_stop() -> Result<(), String> {
        println!("preStop: flushing a very large cache (this takes an hour)");
        std::thread::sleep(Duration::from_secs(3600));
        Ok(())
    }
}

export!(SlowPreStop, PreStop);
