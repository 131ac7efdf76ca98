//! An application whose postStart hook fails: wasmlet stops the container (preStop runs,
//! terminate, kill if needed) and reports `PostStartHookError`.

use std::time::Duration;
use wasmlet_sdk::{App, PostStart, PreStop, export};

struct FailingPostStart;

impl App for FailingPostStart {
    fn run() -> Result<(), String> {
        println!("run: started");
        let stop = wasmlet_sdk::wait_for_termination_forever();
        println!("run: terminate received ({:?}: {})", stop.reason, stop.message);
        Ok(())
    }
}

impl PostStart for FailingPostStart {
    fn post_start() -> Result<(), String> {
        println!("postStart: checking the configuration");
        std::thread::sleep(Duration::from_millis(100));
        Err("configuration check failed: /etc/app.toml not found".to_string())
    }
}

impl PreStop for FailingPostStart {
    fn pre_stop() -> Result<(), String> {
        println!("preStop: nothing to drain");
        Ok(())
    }
}

export!(FailingPostStart, PostStart, PreStop);
