//! Durations as scenario files write them: humantime text (`30s`, `1m 30s`, `250ms`) or a
//! number of seconds.

use std::time::Duration;

use serde::Deserialize;

/// A duration as humantime text (`30s`, `1m 30s`, `250ms`) or a number of seconds.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl DurationValue {
    pub(super) fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Seconds(seconds) => Ok(Duration::from_secs(*seconds)),
            DurationValue::Text(text) => parse_duration(text),
        }
    }
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like `30s`, `1m 30s` or `250ms`")
    })
}

/// A duration as a scenario file writes it, exactly (to the nanosecond): `1s 250ms 17us`.
pub(super) fn write_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}
