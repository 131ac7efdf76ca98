//! An application that ignores terminate: it sits blocked in a host sleep, so only the kill at
//! the end of the grace period ends it.

use std::time::Duration;
use wasmlet_sdk::{App, export};

struct Stubborn;

impl App for Stubborn {
    fn run() -> Result<(), String> {
        println!("run: sleeping for an hour, deaf to terminate");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

export!(Stubborn);
