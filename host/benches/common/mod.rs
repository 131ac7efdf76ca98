//! What the benchmarks share: percentiles and how durations are shown.

use std::time::Duration;

/// The `q` quantile of `sorted` (zero when it is empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `85 µs`, `1.24 ms`.
pub fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

/// This process's user + system CPU time so far (`CLOCK_PROCESS_CPUTIME_ID`): unlike wall
/// time, it does not count the time a noisy machine's hypervisor gives to others.
#[allow(dead_code)] // not every benchmark uses it
pub fn cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// The median of `values` and their range: `12.3 (11.9–13.0)`, each shown by `show`.
#[allow(dead_code)]
pub fn median_and_range<T: Copy + PartialOrd>(values: &[T], show: impl Fn(T) -> String) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable values"));
    match (sorted.first(), sorted.last()) {
        (Some(&min), Some(&max)) => format!(
            "{} ({}–{})",
            show(sorted[sorted.len() / 2]),
            show(min),
            show(max)
        ),
        _ => "—".into(),
    }
}
