//! A worker that processes records in CPU-bound batches and checkpoints its state to a file
//! after each batch, so that a restarted pod resumes where it stopped. It checks for terminate
//! only between batches, then saves once more and exits.
//!
//! Its shutdown bug: a checkpoint is written in two steps — the records, then (after computing
//! it) the checksum and an `end` line — straight into the state file. A kill that lands between
//! the two steps (a grace period shorter than the batch in progress) leaves a torn file that
//! the next start cannot trust. Under a generous grace period it never shows: terminate waits
//! for the batch, the save completes, the container exits 0.
//!
//! The fix is `ATOMIC_SAVE=1`: the checkpoint is written to `STATE.tmp` and renamed over the
//! state file, so the file holds the previous checkpoint or the new one, never half of one.
//!
//! Knobs (env): `STATE` — the state file (default `/data/state`); `BATCH_ROUNDS` — CPU work per
//! batch; `CHECKSUM_ROUNDS` — CPU work of a checksum; `ATOMIC_SAVE` — the fix.
//!
//! `checkpointer check FILE` (as the container's command, or a scenario's volume check) exits 0
//! if FILE is absent, empty, or a complete checkpoint, and 1 if it is torn.

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;
use wasmlet_sdk::{App, export};

struct Checkpointer;

fn number_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// CPU-bound work that never calls the host: `rounds` mixing steps over `seed`.
fn work(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for round in 0..rounds {
        x = black_box(x.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    x
}

/// The checksum of the records: deliberately expensive, as a real one over real data is.
fn checksum(records: &[u64], rounds: u64) -> u64 {
    records
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |sum, record| work(sum ^ record, rounds / records.len().max(1) as u64))
}

fn records_text(records: &[u64]) -> String {
    let mut text = format!("records {}\n", records.len());
    for (index, record) in records.iter().enumerate() {
        text.push_str(&format!("record {index} {record:016x}\n"));
    }
    text
}

fn save(path: &str, records: &[u64], checksum_rounds: u64, atomic: bool) -> std::io::Result<()> {
    let target = if atomic { format!("{path}.tmp") } else { path.to_string() };
    let mut file = std::fs::File::create(&target)?;
    // Step one: the records.
    file.write_all(records_text(records).as_bytes())?;
    // Step two, once the checksum is computed: the checksum and the end mark.
    let sum = checksum(records, checksum_rounds);
    file.write_all(format!("checksum {sum:016x}\nend\n").as_bytes())?;
    drop(file);
    if atomic {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}

/// Whether `text` is a complete checkpoint: records, their checksum, the end mark.
fn verify(text: &str, checksum_rounds: u64) -> Result<usize, String> {
    let mut lines = text.lines();
    let count: usize = lines
        .next()
        .and_then(|line| line.strip_prefix("records "))
        .and_then(|n| n.parse().ok())
        .ok_or("no `records N` header")?;
    let mut records = Vec::with_capacity(count);
    for index in 0..count {
        let line = lines.next().ok_or(format!("record {index} of {count} is missing"))?;
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or(format!("record {index} is garbled: {line:?}"))?;
        records.push(value);
    }
    let stored = lines
        .next()
        .and_then(|line| line.strip_prefix("checksum "))
        .ok_or(format!("torn after {count} records: no checksum"))?;
    if lines.next() != Some("end") {
        return Err("torn: no end mark".into());
    }
    let expected = format!("{:016x}", checksum(&records, checksum_rounds));
    if stored != expected {
        return Err(format!("checksum {stored} is not {expected}"));
    }
    Ok(count)
}

fn check(path: &str, checksum_rounds: u64) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            println!("check: no checkpoint at {path}");
            return Ok(());
        }
        Err(error) => return Err(format!("cannot read {path}: {error}")),
    };
    if text.is_empty() {
        println!("check: {path} is empty (no checkpoint yet)");
        return Ok(());
    }
    let count = verify(&text, checksum_rounds).map_err(|why| format!("{path} is torn: {why}"))?;
    println!("check: {path} holds a complete checkpoint of {count} records");
    Ok(())
}

impl App for Checkpointer {
    fn run() -> Result<(), String> {
        let args: Vec<String> = std::env::args().collect();
        let checksum_rounds = number_from_env("CHECKSUM_ROUNDS", 5_000);
        if args.get(1).map(String::as_str) == Some("check") {
            let path = args.get(2).cloned().unwrap_or_else(|| "/data/state".into());
            return check(&path, checksum_rounds);
        }
        let path = std::env::var("STATE").unwrap_or_else(|_| "/data/state".into());
        let batch_rounds = number_from_env("BATCH_ROUNDS", 8_000);
        let atomic = std::env::var("ATOMIC_SAVE").is_ok_and(|v| v == "1" || v == "true");
        let mut records: Vec<u64> = Vec::new();
        // Resume from the last checkpoint, if it can be trusted.
        if let Ok(text) = std::fs::read_to_string(&path)
            && verify(&text, checksum_rounds).is_ok()
        {
            records = text
                .lines()
                .filter_map(|line| line.strip_prefix("record "))
                .filter_map(|line| line.rsplit(' ').next())
                .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
                .collect();
        }
        println!(
            "run: resuming at {} records, {} saves",
            records.len(),
            if atomic { "atomic" } else { "in-place" }
        );
        loop {
            // A batch: CPU-bound, and terminate is not looked at until it is done.
            let seed = records.last().copied().unwrap_or(1);
            records.push(work(seed, batch_rounds));
            save(&path, &records, checksum_rounds, atomic).map_err(|e| e.to_string())?;
            if let Some(stop) = wasmlet_sdk::wait_for_termination(Duration::from_millis(100)) {
                save(&path, &records, checksum_rounds, atomic).map_err(|e| e.to_string())?;
                println!(
                    "run: terminate received, saved {} records with {} ms of grace left",
                    records.len(),
                    stop.grace_remaining.as_millis()
                );
                return Ok(());
            }
        }
    }
}

export!(Checkpointer);
