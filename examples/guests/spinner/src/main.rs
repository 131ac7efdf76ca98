//! A CPU-bound loop that never calls the host after its first line: only epoch interruption can
//! preempt it, and only the kill can end it.

use std::hint::black_box;

fn main() {
    println!("spinner: spinning");
    let mut state: u64 = 1;
    loop {
        state = black_box(state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
}
