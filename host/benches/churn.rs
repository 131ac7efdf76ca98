//! The churn run: 10 waves of 1,000 pods with mixed behaviours (cooperative, stubborn, spinning,
//! failing postStart) created and deleted in one host, then a check that nothing is left — no
//! instance, no guest task, no file descriptor, no thread, no container `/tmp` — and how RSS
//! came back.
//!
//! `cargo bench -p wasmlet --bench churn` (`-- --waves 10 --pods 1000`).

use std::time::Duration;

use wasmlet::{Host, HostConfig};

#[path = "../../tests/e2e/churn.rs"]
mod churn;

/// A figure of `/proc/self/status` in KiB: `VmRSS` (now) or `VmHWM` (the peak).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |dir| dir.count())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let (mut waves, mut pods) = (10, 1000);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--waves" => waves = value(),
            "--pods" => pods = value(),
            _ => {} // cargo bench passes --bench
        }
    }
    let host = Host::new(HostConfig::default()).expect("creating the host");
    // Warm up (compile the components, start the runtime's threads) before the baseline.
    let warm = churn::churn(&host, 1, churn::MIX.len()).await;
    assert!(warm.wrong.is_empty(), "{:#?}", warm.wrong);
    let baseline_tasks = churn::settled(&host, usize::MAX).await.guest_tasks;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, fds_before, threads_before) = (rss_kib(), open_fds(), threads());

    let began = std::time::Instant::now();
    let report = churn::churn(&host, waves, pods).await;
    let took = began.elapsed();
    let started = waves * pods;

    let stats = churn::settled(&host, baseline_tasks).await;
    // The blocking threads a wave started end after ten idle seconds; the host hands freed
    // memory back once nothing has ended for a second.
    let idle_since = std::time::Instant::now();
    while threads() > threads_before && idle_since.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let threads_ended_after = idle_since.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after, fds_after, threads_after) = (rss_kib(), open_fds(), threads());
    let tmp_dirs = churn::leftover_tmp_dirs();

    println!();
    println!(
        "Churn: {} pods in {waves} waves of {pods} (cooperative, stubborn, spinner, \
         failing-poststart in turn), one host, {:.1} s ({:.0} pods/s)",
        started,
        took.as_secs_f64(),
        started as f64 / took.as_secs_f64()
    );
    println!();
    println!("| check | result |");
    println!("|---|---|");
    println!(
        "| pods that ended wrong or lack events | {} |",
        report.wrong.len()
    );
    let endings: Vec<String> = report
        .endings
        .iter()
        .map(|(ending, count)| format!("{count} {ending}"))
        .collect();
    println!(
        "| how they ended (phase, reason, exit code) | {} |",
        endings.join(", ")
    );
    println!("| instances left | {} |", stats.live_instances);
    println!(
        "| guest tasks left (beyond the {baseline_tasks} before) | {} |",
        stats.guest_tasks.saturating_sub(baseline_tasks)
    );
    println!("| file descriptors | {fds_before} before, {fds_after} after |");
    println!(
        "| threads | {threads_before} before, {threads_after} after (the idle ones ended {:.1} s \
         after the last pod) |",
        threads_ended_after.as_secs_f64()
    );
    println!("| container /tmp directories left | {tmp_dirs} |");
    println!(
        "| RSS | {:.1} MiB before, {:.1} MiB after ({:+.1} MiB) |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) / 1024.0
    );
    println!(
        "| RSS at the peak (one wave's live pods) | {:.1} MiB |",
        status_kib("VmHWM") as f64 / 1024.0
    );
    for line in report.wrong.iter().take(20) {
        println!("wrong: {line}");
    }
    let clean = report.wrong.is_empty()
        && stats.live_instances == 0
        && stats.guest_tasks <= baseline_tasks
        && fds_after <= fds_before
        && threads_after <= threads_before
        && tmp_dirs == 0;
    println!();
    println!(
        "{}",
        if clean {
            "nothing lost, nothing left"
        } else {
            "NOT CLEAN"
        }
    );
    if !clean {
        std::process::exit(1);
    }
}
