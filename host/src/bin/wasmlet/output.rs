//! The commands' output on stdout, and what becomes of it when whoever reads it goes away
//! (`wasmlet test … | head`): nothing more is printed, and no command panics, as Rust's
//! `println!` would. `wasmlet test` stops after the scenario it is on ([`reader_gone`]); `wasmlet
//! run` goes on supervising its pods, whose end a closed pipe is no reason for. (SIGPIPE stays
//! ignored, as Rust leaves it: a client that hangs up on a pod's socket must not end the host.)

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prints a line on stdout, like `println!`, until stdout can no longer be written.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// The exit status of a command cut short because its reader went away: what a shell reports
/// of a tool that SIGPIPE ended.
pub const READER_GONE: u8 = 128 + 13;

/// stdout could not be written: its reader went away, or another error.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// stdout could not be written because its reader went away.
static READER_LEFT: AtomicBool = AtomicBool::new(false);

/// Prints `args` and a newline on stdout, unless an earlier write failed. A failure other than
/// a reader that went away (a full disk, say) is said once on stderr.
pub fn line(args: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(error) = writeln!(std::io::stdout().lock(), "{args}")
        && !CLOSED.swap(true, Ordering::Relaxed)
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            READER_LEFT.store(true, Ordering::Relaxed);
        } else {
            eprintln!("wasmlet: cannot write to stdout ({error}); nothing more is printed there");
        }
    }
}

/// Whether whoever read stdout has gone away: what remains of a report is read by nobody.
/// (After another failure to write, a command goes on: its exit status still matters.)
pub fn reader_gone() -> bool {
    READER_LEFT.load(Ordering::Relaxed)
}
