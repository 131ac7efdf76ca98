//! A plain `wasi:cli` command built from `fn main`, with no wasmlet SDK: it has no hooks and
//! cannot see terminate.
//!
//! Arguments: `--sleep SECONDS` sleeps (in a host call) before exiting; `--exit CODE` exits with
//! that code. Everything else is printed.

use std::time::Duration;

fn main() {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
    println!("{greeting} from a plain wasi:cli command!");
    let mut args = std::env::args().skip(1);
    let mut exit_code = 0;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sleep" => {
                let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1.0);
                std::thread::sleep(Duration::from_secs_f64(seconds));
            }
            "--exit" => exit_code = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            other => println!("arg: {other}"),
        }
    }
    std::process::exit(exit_code);
}
