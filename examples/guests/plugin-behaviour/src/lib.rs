//! What the example plugins answer to a message, whatever world they are built for:
//!
//! - `sleep MS`: waits MS milliseconds (in a host call: the clock's), then answers `slept MS ms`;
//! - `spin`: loops in wasm forever (only a kill ends it);
//! - `block`: waits in a host call forever (only a kill ends it);
//! - `fail`: answers an error;
//! - `trap`: traps (an `unreachable`);
//! - anything else: `GREETING, MESSAGE!`, with the greeting the host configures (`Hello`).

use std::time::Duration;

/// The answer to `message`; `greeting` as the host configures it, `log` the host's log.
pub fn respond(message: &str, greeting: &str, log: impl Fn(&str)) -> Result<String, String> {
    let (verb, rest) = message.split_once(' ').unwrap_or((message, ""));
    match verb {
        "sleep" => {
            let ms: u64 = rest
                .trim()
                .parse()
                .map_err(|_| format!("`sleep` takes milliseconds, not `{rest}`"))?;
            log(&format!("sleeping {ms} ms"));
            std::thread::sleep(Duration::from_millis(ms));
            Ok(format!("slept {ms} ms"))
        }
        "spin" => {
            log("spinning");
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "block" => {
            log("blocking in a host call");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "fail" => Err("asked to fail".into()),
        "trap" => std::process::abort(),
        _ => Ok(format!("{greeting}, {message}!")),
    }
}
