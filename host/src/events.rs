//! What a pod reports while it runs: Kubernetes-style events (`Created`, `Started`, `Killing`,
//! `FailedPostStartHook`, …) and the lines its containers print, in one ordered stream that a
//! watcher can join at any time without missing what came before.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

/// Normal or Warning, as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or was forced.
    Warning,
}

/// A lifecycle event, shaped like a Kubernetes core/v1 Event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Machine-readable reason: `Pulled`, `Created`, `Started`, `Killing`, `Killed`,
    /// `FailedPostStartHook`, `FailedPreStopHook`, `Completed`, `Error`, `OOMKilled`, ….
    pub reason: String,
    /// `pod/NAME`.
    pub object: String,
    /// The container the event is about, if any (Kubernetes' `involvedObject.fieldPath`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Human-readable detail, including a hook's output when it failed.
    pub message: String,
    /// Time since the pod was started, on the host's clock.
    #[serde(with = "humantime_serde_duration")]
    pub age: Duration,
    /// Wall-clock time of the event.
    #[serde(skip)]
    pub time: SystemTime,
    /// When it happened on the host's monotonic clock. For a `Killed` event: the moment the
    /// guest stopped executing.
    #[serde(skip)]
    pub at: Instant,
}

/// Which instance of a container printed a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogSource {
    /// The main instance (`run`).
    Main,
    /// The postStart hook instance.
    PostStart,
    /// The preStop hook instance.
    PreStop,
}

/// stdout or stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a container printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// The container's name.
    pub container: String,
    /// Which instance printed it.
    pub source: LogSource,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The line, without its newline.
    pub line: String,
}

impl LogLine {
    /// `[container]`, `[container:postStart]` or `[container:preStop]`: the prefix the CLI prints.
    pub fn prefix(&self) -> String {
        match self.source {
            LogSource::Main => format!("[{}]", self.container),
            LogSource::PostStart => format!("[{}:postStart]", self.container),
            LogSource::PreStop => format!("[{}:preStop]", self.container),
        }
    }
}

/// An item of a pod's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodUpdate {
    /// A lifecycle event.
    Event(Event),
    /// A line of container output.
    Log(LogLine),
}

/// Keeps a pod's history and fans it out to watchers. A new watcher first gets everything
/// so far, then live updates, with nothing missed or repeated in between.
pub(crate) struct UpdateHub {
    inner: Mutex<HubInner>,
}

struct HubInner {
    history: Vec<PodUpdate>,
    /// `None` once the pod has ended: watchers then see the end of the stream.
    live: Option<broadcast::Sender<PodUpdate>>,
    /// Log lines kept in the history at most; older ones are dropped (events are always kept).
    log_budget: usize,
}

/// Lines of output kept in a pod's history for late watchers.
const HISTORY_LOG_LINES: usize = 10_000;

impl UpdateHub {
    pub fn new() -> Self {
        UpdateHub {
            inner: Mutex::new(HubInner {
                history: Vec::new(),
                live: Some(broadcast::Sender::new(4096)),
                log_budget: HISTORY_LOG_LINES,
            }),
        }
    }

    pub fn publish(&self, update: PodUpdate) {
        let mut inner = self.inner.lock().unwrap();
        let keep = match &update {
            PodUpdate::Event(_) => true,
            PodUpdate::Log(_) if inner.log_budget > 0 => {
                inner.log_budget -= 1;
                true
            }
            PodUpdate::Log(_) => false,
        };
        if let Some(live) = &inner.live {
            // No receiver is fine: nobody is watching live.
            let _ = live.send(update.clone());
        }
        if keep {
            inner.history.push(update);
        }
    }

    pub fn events(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap();
        inner
            .history
            .iter()
            .filter_map(|update| match update {
                PodUpdate::Event(event) => Some(event.clone()),
                PodUpdate::Log(_) => None,
            })
            .collect()
    }

    /// Ends the stream: watchers get `None` after the last update.
    pub fn close(&self) {
        self.inner.lock().unwrap().live = None;
    }

    pub fn watch(&self) -> Watch {
        let inner = self.inner.lock().unwrap();
        Watch {
            replay: inner.history.clone().into(),
            live: inner.live.as_ref().map(broadcast::Sender::subscribe),
        }
    }
}

/// A stream of a pod's updates from its start: see [`crate::Pod::watch`].
pub struct Watch {
    replay: std::collections::VecDeque<PodUpdate>,
    live: Option<broadcast::Receiver<PodUpdate>>,
}

impl Watch {
    /// The next update; `None` once the pod has ended and everything was delivered. A watcher
    /// that falls more than 4096 updates behind skips the oldest (a `Warning` event says so).
    pub async fn next(&mut self) -> Option<PodUpdate> {
        if let Some(update) = self.replay.pop_front() {
            return Some(update);
        }
        let live = self.live.as_mut()?;
        match live.recv().await {
            Ok(update) => Some(update),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(skipped)) => Some(PodUpdate::Event(Event {
                kind: EventType::Warning,
                reason: "WatchLagged".into(),
                object: String::new(),
                container: None,
                message: format!("this watcher fell behind and skipped {skipped} updates"),
                age: Duration::ZERO,
                time: SystemTime::now(),
                at: Instant::now(),
            })),
        }
    }
}

/// Serializes a duration as humantime text ("1s 250ms").
mod humantime_serde_duration {
    pub fn serialize<S: serde::Serializer>(
        duration: &std::time::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }
}
