//! A plain `wasi:cli` command built from `fn main`, with no wasmlet SDK: it has no hooks and
//! cannot see terminate.
//!
//! Arguments: `--sleep SECONDS` sleeps (in a host call) before exiting; `--exit CODE` exits with
//! that code; `--random` prints a number drawn from the host's randomness (`wasi:random`);
//! `--clock` prints the wall-clock time and how long the program has run; `--env NAME` prints
//! that environment variable; `--pwd` prints the working directory; `--write PATH TEXT` writes a
//! file (`--write-once PATH TEXT` with one `write` call, and says how much it wrote) and `--read
//! PATH` prints one (each says what failed, if it did); `--work ROUNDS` runs a
//! CPU-bound loop that never calls the host and prints how long it took (the benchmark's
//! measure of preemption cost). Everything else is printed.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant, SystemTime};

fn main() {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
    println!("{greeting} from a plain wasi:cli command!");
    let started = Instant::now();
    let mut args = std::env::args().skip(1);
    let mut exit_code = 0;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sleep" => {
                let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1.0);
                std::thread::sleep(Duration::from_secs_f64(seconds));
            }
            "--exit" => exit_code = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            // std seeds each RandomState from wasi:random.
            "--random" => println!("random: {}", RandomState::new().hash_one(0u8)),
            "--env" => {
                let name = args.next().unwrap_or_default();
                let value = std::env::var(&name).unwrap_or_else(|_| "(unset)".into());
                println!("env {name}={value}");
            }
            "--write" => {
                let path = args.next().unwrap_or_default();
                let text = args.next().unwrap_or_default();
                match std::fs::write(&path, &text) {
                    Ok(()) => println!("wrote {path}"),
                    Err(error) => println!("write {path} failed: {error}"),
                }
            }
            // One `write` call, as a program that does not loop on short writes makes.
            "--write-once" => {
                use std::io::Write as _;
                let path = args.next().unwrap_or_default();
                let text = args.next().unwrap_or_default();
                match std::fs::File::create(&path).and_then(|mut file| file.write(text.as_bytes())) {
                    Ok(written) => println!("wrote {written} of {} bytes to {path}", text.len()),
                    Err(error) => println!("write {path} failed: {error}"),
                }
            }
            "--read" => {
                let path = args.next().unwrap_or_default();
                match std::fs::read_to_string(&path) {
                    Ok(text) => println!("read {path}: {text}"),
                    Err(error) => println!("read {path} failed: {error}"),
                }
            }
            "--work" => {
                let rounds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let began = Instant::now();
                let mut state: u64 = 1;
                for _ in 0..rounds {
                    state = std::hint::black_box(
                        state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407),
                    );
                }
                println!(
                    "work: {rounds} rounds in {} µs ({state:x})",
                    began.elapsed().as_micros()
                );
            }
            "--pwd" => match std::env::current_dir() {
                Ok(dir) => println!("pwd: {}", dir.display()),
                Err(error) => println!("pwd: unknown ({error})"),
            },
            "--clock" => {
                let wall = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                println!(
                    "clock: {} ms since 1970, running for {} µs",
                    wall.as_millis(),
                    started.elapsed().as_micros()
                );
            }
            other => println!("arg: {other}"),
        }
    }
    std::process::exit(exit_code);
}
