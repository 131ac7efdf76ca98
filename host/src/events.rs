//! What a pod reports while it runs: Kubernetes-style events (`Created`, `Started`, `Killing`,
//! `FailedPostStartHook`, …) and the lines its containers print, in one ordered stream that a
//! watcher can join at any time without missing what came before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::clock::Clock;

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
    /// How many times it has happened: an event with the same type, reason, object, container
    /// and message is one event counted again, as Kubernetes aggregates them.
    pub count: u32,
    /// Time since the pod was started when it first happened.
    #[serde(with = "humantime_serde_duration")]
    pub first_age: Duration,
    /// Time since the pod was started, on the host's clock (the latest occurrence).
    #[serde(with = "humantime_serde_duration")]
    pub age: Duration,
    /// Wall-clock time of the event (the latest occurrence).
    #[serde(skip)]
    pub time: SystemTime,
    /// Wall-clock time of its first occurrence.
    #[serde(skip)]
    pub first_time: SystemTime,
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
    /// An instance handling an HTTP request.
    Handler,
    /// An instance the embedder calls ([`Pod::call`](crate::Pod::call)).
    Call,
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
    /// When it was written, on the host's monotonic clock.
    #[serde(skip)]
    pub at: Instant,
}

impl Event {
    /// Whether `other` is another occurrence of this event.
    fn same_as(&self, other: &Event) -> bool {
        self.kind == other.kind
            && self.reason == other.reason
            && self.object == other.object
            && self.container == other.container
            && self.message == other.message
    }

    /// ` (x3 over 40s)` for an event that happened more than once, as `kubectl describe` shows
    /// it; empty otherwise.
    pub fn repeats(&self) -> String {
        if self.count > 1 {
            // Whole seconds, as kubectl shows it (milliseconds for a span under a second).
            let span = self.age.saturating_sub(self.first_age);
            let span = if span >= Duration::from_secs(1) {
                Duration::from_secs(span.as_secs())
            } else {
                Duration::from_millis(span.as_millis() as u64)
            };
            format!(
                " (x{} over {})",
                self.count,
                humantime::format_duration(span)
            )
        } else {
            String::new()
        }
    }
}

impl LogLine {
    /// `[container]`, `[container:postStart]` or `[container:preStop]`: the prefix the CLI prints.
    pub fn prefix(&self) -> String {
        match self.source {
            LogSource::Main => format!("[{}]", self.container),
            LogSource::PostStart => format!("[{}:postStart]", self.container),
            LogSource::PreStop => format!("[{}:preStop]", self.container),
            LogSource::Handler => format!("[{}:http]", self.container),
            LogSource::Call => format!("[{}:call]", self.container),
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

/// Keeps a pod's history and fans it out to watchers. A new watcher first gets the history, then
/// live updates, with nothing missed or repeated in between. The history keeps every event and
/// the latest lines of output (bounded, so a chatty guest cannot grow the host without end).
pub(crate) struct UpdateHub {
    inner: Mutex<HubInner>,
    /// The host's clock, for what the hub says itself (a watcher fell behind).
    clock: Arc<dyn Clock>,
    /// When the pod started (the hub is made then), on `clock`.
    started: Instant,
}

struct HubInner {
    /// Orders events and log lines against each other in the history.
    next: u64,
    events: Vec<(u64, Event)>,
    logs: std::collections::VecDeque<(u64, LogLine)>,
    log_bytes: usize,
    /// The channel to live watchers.
    live: Live,
    /// The channels to followers ([`UpdateHub::follow`]): every update, none skipped.
    followers: Vec<mpsc::UnboundedSender<PodUpdate>>,
    /// Called with every update as it is published, in order (deterministic mode records its
    /// trace this way: nothing can lag or be skipped).
    taps: Vec<Tap>,
}

/// The channel of a pod's live updates. Its buffer (room for [`LIVE_UPDATES`] updates, some
/// hundreds of kilobytes) exists only while someone watches: most pods of a busy host have
/// no watcher most of the time, and an idle pod should cost little more than its instance.
enum Live {
    /// Nobody watches live (yet, or any more).
    Unwatched,
    Watched(broadcast::Sender<PodUpdate>),
    /// The pod has ended: watchers see the end of the stream.
    Ended,
}

/// How far a live watcher may fall behind before it skips the oldest updates.
const LIVE_UPDATES: usize = 4096;

/// A function that sees every update of a pod as it is published.
pub(crate) type Tap = Box<dyn Fn(&PodUpdate) + Send + Sync>;

/// Lines of output kept in a pod's history for late watchers: the latest this many…
const HISTORY_LOG_LINES: usize = 10_000;
/// …and no more than this many bytes of them.
const HISTORY_LOG_BYTES: usize = 4 << 20;

impl UpdateHub {
    /// A hub for a pod starting now on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        UpdateHub {
            started: clock.now(),
            clock,
            inner: Mutex::new(HubInner {
                next: 0,
                events: Vec::new(),
                logs: std::collections::VecDeque::new(),
                log_bytes: 0,
                live: Live::Unwatched,
                followers: Vec::new(),
                taps: Vec::new(),
            }),
        }
    }

    /// Publishes an update. An event that happened before (see [`Event::count`]) replaces its
    /// earlier occurrence in the history, counted, and goes to watchers with its count.
    pub fn publish(&self, mut update: PodUpdate) {
        let mut inner = self.inner.lock().unwrap();
        if let PodUpdate::Event(event) = &mut update
            && let Some(index) = inner.events.iter().position(|(_, e)| e.same_as(event))
        {
            let (_, earlier) = inner.events.remove(index);
            event.count = earlier.count + 1;
            event.first_age = earlier.first_age;
            event.first_time = earlier.first_time;
        }
        for tap in &inner.taps {
            tap(&update);
        }
        inner
            .followers
            .retain(|follower| follower.send(update.clone()).is_ok());
        if let Live::Watched(live) = &inner.live {
            if live.receiver_count() == 0 {
                // The last watcher went away: so does the buffer.
                inner.live = Live::Unwatched;
            } else {
                let _ = live.send(update.clone());
            }
        }
        let order = inner.next;
        inner.next += 1;
        match update {
            PodUpdate::Event(event) => inner.events.push((order, event)),
            PodUpdate::Log(line) => {
                inner.log_bytes += line.line.len();
                inner.logs.push_back((order, line));
                while inner.logs.len() > HISTORY_LOG_LINES || inner.log_bytes > HISTORY_LOG_BYTES {
                    let Some((_, oldest)) = inner.logs.pop_front() else {
                        break;
                    };
                    inner.log_bytes -= oldest.line.len();
                }
            }
        }
    }

    pub fn events(&self) -> Vec<Event> {
        let inner = self.inner.lock().unwrap();
        inner
            .events
            .iter()
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// Ends the stream: watchers get `None` after the last update.
    pub fn close(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.live = Live::Ended;
        inner.followers.clear();
    }

    /// Calls `tap` with the history so far, then with every update as it is published.
    pub fn tap(&self, tap: Tap) {
        let mut inner = self.inner.lock().unwrap();
        for update in Self::history(&inner) {
            tap(&update);
        }
        inner.taps.push(tap);
    }

    pub fn watch(&self) -> Watch {
        let mut inner = self.inner.lock().unwrap();
        let live = match &inner.live {
            Live::Ended => None,
            Live::Watched(live) => Some(LiveUpdates::Watched(live.subscribe())),
            Live::Unwatched => {
                let (live, receiver) = broadcast::channel(LIVE_UPDATES);
                inner.live = Live::Watched(live);
                Some(LiveUpdates::Watched(receiver))
            }
        };
        self.stream(&inner, live)
    }

    /// Like [`UpdateHub::watch`], but the live updates queue up for this watcher without
    /// bound rather than being skipped when it falls behind; no buffer is made up front.
    pub fn follow(&self) -> Watch {
        let mut inner = self.inner.lock().unwrap();
        let live = match inner.live {
            Live::Ended => None,
            Live::Watched(_) | Live::Unwatched => {
                let (follower, receiver) = mpsc::unbounded_channel();
                inner.followers.push(follower);
                Some(LiveUpdates::Followed(receiver))
            }
        };
        self.stream(&inner, live)
    }

    /// The history so far, then `live`.
    fn stream(&self, inner: &HubInner, live: Option<LiveUpdates>) -> Watch {
        Watch {
            replay: Self::history(inner),
            live,
            clock: self.clock.clone(),
            started: self.started,
        }
    }

    /// Events and the lines kept, in the order they were published.
    fn history(inner: &HubInner) -> std::collections::VecDeque<PodUpdate> {
        let mut events = inner.events.iter().peekable();
        let mut logs = inner.logs.iter().peekable();
        let mut replay = std::collections::VecDeque::new();
        loop {
            let next_is_event = match (events.peek(), logs.peek()) {
                (Some((e, _)), Some((l, _))) => e < l,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            replay.push_back(if next_is_event {
                PodUpdate::Event(events.next().unwrap().1.clone())
            } else {
                PodUpdate::Log(logs.next().unwrap().1.clone())
            });
        }
        replay
    }
}

/// Where a [`Watch`]'s live updates come from.
enum LiveUpdates {
    /// The shared channel of bounded room ([`UpdateHub::watch`]).
    Watched(broadcast::Receiver<PodUpdate>),
    /// A queue of this watcher's own ([`UpdateHub::follow`]).
    Followed(mpsc::UnboundedReceiver<PodUpdate>),
}

/// A stream of a pod's updates from its start: see [`crate::Pod::watch`].
pub struct Watch {
    replay: std::collections::VecDeque<PodUpdate>,
    live: Option<LiveUpdates>,
    clock: Arc<dyn Clock>,
    started: Instant,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("replaying", &self.replay.len())
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The next update; `None` once the pod has ended and everything was delivered. A watcher
    /// ([`crate::Pod::watch`]) that falls more than 4096 updates behind skips the oldest (a
    /// `Warning` event says so); a follower ([`crate::Pod::follow`]) skips nothing.
    pub async fn next(&mut self) -> Option<PodUpdate> {
        if let Some(update) = self.replay.pop_front() {
            return Some(update);
        }
        let live = match self.live.as_mut()? {
            LiveUpdates::Followed(followed) => return followed.recv().await,
            LiveUpdates::Watched(live) => live,
        };
        match live.recv().await {
            Ok(update) => Some(update),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                let (at, time) = (self.clock.now(), self.clock.wall_time());
                let age = at.saturating_duration_since(self.started);
                Some(PodUpdate::Event(Event {
                    kind: EventType::Warning,
                    reason: "WatchLagged".into(),
                    object: String::new(),
                    container: None,
                    message: format!("this watcher fell behind and skipped {skipped} updates"),
                    count: 1,
                    age,
                    first_age: age,
                    time,
                    first_time: time,
                    at,
                }))
            }
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

/// A duration for messages, to the millisecond: `1s 250ms`, `3ms`, `0s`.
pub(crate) fn short_duration(duration: std::time::Duration) -> String {
    let millis = std::time::Duration::from_millis(duration.as_millis() as u64);
    humantime::format_duration(millis).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;

    fn event(reason: &str) -> PodUpdate {
        PodUpdate::Event(Event {
            kind: EventType::Normal,
            reason: reason.into(),
            object: "pod/test".into(),
            container: None,
            message: String::new(),
            count: 1,
            age: Duration::ZERO,
            first_age: Duration::ZERO,
            time: SystemTime::now(),
            first_time: SystemTime::now(),
            at: Instant::now(),
        })
    }

    #[test]
    fn a_repeated_event_is_counted_and_keeps_its_first_time() {
        let hub = UpdateHub::new(VirtualClock::new(SystemTime::UNIX_EPOCH));
        let occurrence = |seconds: u64| {
            let PodUpdate::Event(mut event) = event("BackOff") else {
                unreachable!()
            };
            event.age = Duration::from_secs(seconds);
            event.first_age = event.age;
            PodUpdate::Event(event)
        };
        let mut watch = hub.watch();
        hub.publish(occurrence(10));
        hub.publish(event("Started"));
        hub.publish(occurrence(30));
        hub.publish(occurrence(70));
        let events = hub.events();
        assert_eq!(events.len(), 2, "one BackOff event, counted: {events:?}");
        let back_off = events.iter().find(|e| e.reason == "BackOff").unwrap();
        assert_eq!(back_off.count, 3);
        assert_eq!(back_off.first_age, Duration::from_secs(10));
        assert_eq!(back_off.repeats(), " (x3 over 1m)");
        // A live watcher sees each occurrence, with its count so far.
        let Some(LiveUpdates::Watched(mut live)) = watch.live.take() else {
            panic!("a watch reads the shared channel");
        };
        let mut seen = Vec::new();
        while let Ok(update) = live.try_recv() {
            if let PodUpdate::Event(e) = update
                && e.reason == "BackOff"
            {
                seen.push(e.count);
            }
        }
        assert_eq!(seen, [1, 2, 3]);
    }

    fn log(line: &str) -> PodUpdate {
        PodUpdate::Log(LogLine {
            container: "app".into(),
            source: LogSource::Main,
            stream: LogStream::Stdout,
            line: line.into(),
            at: Instant::now(),
        })
    }

    fn text(update: &PodUpdate) -> String {
        match update {
            PodUpdate::Event(event) => event.reason.clone(),
            PodUpdate::Log(line) => line.line.clone(),
        }
    }

    #[tokio::test]
    async fn a_late_watcher_gets_every_event_and_the_latest_lines_in_order() {
        let hub = UpdateHub::new(VirtualClock::new(SystemTime::UNIX_EPOCH));
        hub.publish(event("Created"));
        for index in 0..HISTORY_LOG_LINES + 5 {
            hub.publish(log(&format!("line {index}")));
        }
        hub.publish(event("Completed"));
        hub.close();
        let mut watch = hub.watch();
        let mut seen = Vec::new();
        while let Some(update) = watch.next().await {
            seen.push(text(&update));
        }
        assert_eq!(seen.len(), HISTORY_LOG_LINES + 2);
        assert_eq!(seen[0], "Created");
        assert_eq!(seen[1], "line 5", "the oldest lines are the ones dropped");
        assert_eq!(seen.last().unwrap(), "Completed");
    }

    #[test]
    fn history_holds_a_bounded_number_of_bytes() {
        let hub = UpdateHub::new(VirtualClock::new(SystemTime::UNIX_EPOCH));
        let big = "x".repeat(16 * 1024);
        for _ in 0..1000 {
            hub.publish(log(&big));
        }
        let inner = hub.inner.lock().unwrap();
        assert!(inner.log_bytes <= HISTORY_LOG_BYTES);
        assert_eq!(inner.logs.len(), HISTORY_LOG_BYTES / big.len());
    }

    #[tokio::test]
    async fn a_watcher_that_fell_behind_is_told_so_at_the_time_of_the_hosts_clock() {
        let clock = VirtualClock::new(SystemTime::UNIX_EPOCH);
        let hub = UpdateHub::new(clock.clone());
        clock.advance(Duration::from_secs(3600));
        let mut watch = hub.watch();
        for index in 0..5000 {
            hub.publish(log(&format!("line {index}")));
        }
        let Some(PodUpdate::Event(lagged)) = watch.next().await else {
            panic!("the watcher should hear that it fell behind");
        };
        assert_eq!(lagged.reason, "WatchLagged");
        assert_eq!(lagged.at, clock.now());
        assert_eq!(lagged.time, clock.wall_time());
        assert_eq!(lagged.age, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn a_follower_that_fell_behind_skips_nothing() {
        let hub = UpdateHub::new(VirtualClock::new(SystemTime::UNIX_EPOCH));
        hub.publish(log("before"));
        let mut follow = hub.follow();
        let mut watch = hub.watch();
        for index in 0..5000 {
            hub.publish(log(&format!("line {index}")));
        }
        hub.close();
        let mut lines = Vec::new();
        while let Some(update) = follow.next().await {
            let PodUpdate::Log(line) = update else {
                panic!("only lines were published, got {update:?}");
            };
            lines.push(line.line);
        }
        assert_eq!(lines.len(), 5001);
        assert_eq!(lines[0], "before");
        assert_eq!(lines[5000], "line 4999");
        // The same updates skipped some for a watcher.
        assert!(matches!(watch.next().await, Some(PodUpdate::Log(_))));
        assert!(
            matches!(watch.next().await, Some(PodUpdate::Event(event)) if event.reason == "WatchLagged")
        );
        assert!(
            hub.follow().next().await.is_some(),
            "a late follower gets the history"
        );
    }
}
