//! A small HTTP service: a component that only exports `wasi:http/incoming-handler` (no `run`),
//! so its container runs as long as it serves. The HTTP benchmark runs it under wasmlet and under
//! `wasmtime serve`.
//!
//! - `GET /` — `hello from wasmlet`;
//! - `GET /sleep?ms=N` — logs `sleeping N ms`, answers after N milliseconds (a slow request,
//!   for drain tests);
//! - `GET /healthz` — 200, or 500 while the file `/tmp/unhealthy` exists;
//! - `GET /fail` and `GET /recover` — create and remove `/tmp/unhealthy`;
//! - `GET /panic` — panics (the handler traps);
//! - `GET /echo` — the method, path and headers it received, one per line (and logs the
//!   headers);
//! - `GET /count` — how many requests this instance has answered, counted in its memory: `1`
//!   when every request has an instance of its own, with memory no earlier request wrote;
//! - anything else — 404.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmlet_sdk::http::{Handler, Request, Response};

struct Hello;

const UNHEALTHY: &str = "/tmp/unhealthy";

/// Requests answered by this instance.
static ANSWERED: AtomicU64 = AtomicU64::new(0);

impl Handler for Hello {
    fn handle(request: Request) -> Response {
        match request.path() {
            "/" => Response::text(200, "hello from wasmlet\n"),
            "/sleep" => {
                let ms: u64 = request.query("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
                println!("sleeping {ms} ms");
                std::thread::sleep(Duration::from_millis(ms));
                Response::text(200, format!("slept {ms} ms\n"))
            }
            "/healthz" => match std::fs::metadata(UNHEALTHY) {
                Ok(_) => Response::text(500, "unhealthy: /tmp/unhealthy exists\n"),
                Err(_) => Response::text(200, "ok\n"),
            },
            "/fail" => match std::fs::write(UNHEALTHY, "failed on request\n") {
                Ok(()) => Response::text(200, "now unhealthy\n"),
                Err(error) => Response::text(500, format!("cannot write {UNHEALTHY}: {error}\n")),
            },
            "/panic" => panic!("asked to panic"),
            "/recover" => {
                let _ = std::fs::remove_file(UNHEALTHY);
                Response::text(200, "healthy again\n")
            }
            "/echo" => {
                let mut text = format!("{} {}\n", request.method, request.path_with_query);
                for (name, value) in &request.headers {
                    text.push_str(&format!("{name}: {value}\n"));
                    println!("echo {name}: {value}");
                }
                Response::text(200, text)
            }
            "/count" => {
                let answered = ANSWERED.fetch_add(1, Ordering::Relaxed) + 1;
                Response::text(200, format!("{answered}\n"))
            }
            _ => Response::text(404, format!("no route for {}\n", request.path())),
        }
    }
}

wasmlet_sdk::export_http!(Hello);
