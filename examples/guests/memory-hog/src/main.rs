//! Allocates memory a MiB at a time, touching every page, until the allocator fails: under a
//! `resources.limits.memory` limit wasmlet reports `OOMKilled`.

fn main() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        if held.len().is_multiple_of(8) {
            println!("memory-hog: holding {} MiB", held.len());
        }
    }
}
