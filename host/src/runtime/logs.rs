//! Guest output ([`LogTarget`]): a guest's stdout and stderr cut into lines as they are written,
//! each handed to the container's log sink at once, and for hooks the last lines kept for their
//! event.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::Pollable;

use crate::clock::Clock;
use crate::events::{LogLine, LogSource, LogStream};

/// Where an instance's output goes: the pod's log stream, and for hooks a bounded capture of the
/// last lines, shown with the hook's event.
#[derive(Clone)]
pub(crate) struct LogTarget {
    container: Arc<str>,
    source: LogSource,
    clock: Arc<dyn Clock>,
    pub(super) sink: Arc<dyn Fn(LogLine) + Send + Sync>,
    capture: Option<Arc<Mutex<VecDeque<String>>>>,
}

/// How many lines of a hook's output are kept for its event.
const CAPTURED_LINES: usize = 20;
/// A line longer than this is cut into pieces, so a guest that never prints a newline cannot make
/// wasmlet buffer without bound.
const MAX_LINE: usize = 16 * 1024;

impl LogTarget {
    /// Which instance's output it is.
    pub fn source(&self) -> LogSource {
        self.source
    }

    pub fn new(
        container: Arc<str>,
        source: LogSource,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn Fn(LogLine) + Send + Sync>,
        capture: bool,
    ) -> Self {
        LogTarget {
            container,
            source,
            clock,
            sink,
            capture: capture.then(|| Arc::new(Mutex::new(VecDeque::new()))),
        }
    }

    /// The last lines written, for a hook's event message.
    pub fn captured(&self) -> Vec<String> {
        self.capture
            .as_ref()
            .map(|lines| lines.lock().unwrap().iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn stream(&self, stream: LogStream) -> LogStdout {
        LogStdout {
            target: self.clone(),
            stream,
        }
    }

    fn emit(&self, stream: LogStream, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes).into_owned();
        if let Some(capture) = &self.capture {
            let mut lines = capture.lock().unwrap();
            if lines.len() == CAPTURED_LINES {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        (self.sink)(LogLine {
            container: self.container.to_string(),
            source: self.source,
            stream,
            line,
            at: self.clock.now(),
        });
    }
}

/// A guest's stdout or stderr: each `wasi:cli` stream handed out writes whole lines to the target.
pub(super) struct LogStdout {
    target: LogTarget,
    stream: LogStream,
}

impl IsTerminal for LogStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStdout {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    /// Written lines reach the pod at once, during the guest's write: no copying task between,
    /// so output lands at a fixed point among events.
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.writer())
    }
}

impl LogStdout {
    fn writer(&self) -> LineWriter {
        LineWriter {
            target: self.target.clone(),
            stream: self.stream,
            partial: Vec::new(),
        }
    }
}

struct LineWriter {
    target: LogTarget,
    stream: LogStream,
    partial: Vec<u8>,
}

impl LineWriter {
    /// Adds `bytes` to the line in progress and emits every line they complete, then cuts what
    /// is left into pieces of [`MAX_LINE`]. One pass over the bytes, and one move of the
    /// remainder: a write of many lines costs what its bytes do.
    fn push(&mut self, bytes: &[u8]) {
        // What was there has no newline: only the new bytes need searching.
        let mut search_from = self.partial.len();
        self.partial.extend_from_slice(bytes);
        let mut line_start = 0;
        while let Some(offset) = self.partial[search_from..].iter().position(|b| *b == b'\n') {
            let newline = search_from + offset;
            let line = &self.partial[line_start..newline];
            self.target
                .emit(self.stream, line.strip_suffix(b"\r").unwrap_or(line));
            line_start = newline + 1;
            search_from = line_start;
        }
        while self.partial.len() - line_start >= MAX_LINE {
            let piece_end = line_start + MAX_LINE;
            self.target
                .emit(self.stream, &self.partial[line_start..piece_end]);
            line_start = piece_end;
        }
        self.partial.drain(..line_start);
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.target.emit(self.stream, &rest);
        }
        Poll::Ready(Ok(()))
    }
}

/// How much a guest may write in one call: wasmlet never blocks a writer (lines go straight to
/// the pod's bounded history), so this only sizes the guest's chunks.
const WRITE_BUDGET: usize = 64 * 1024;

impl wasmtime_wasi::p2::OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.target.emit(self.stream, &rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;

    /// A writer whose lines land in the returned list.
    fn collecting_writer() -> (LineWriter, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let lines = lines.clone();
            Arc::new(move |line: LogLine| lines.lock().unwrap().push(line.line))
        };
        let target = LogTarget::new(
            "app".into(),
            LogSource::Main,
            VirtualClock::new(std::time::SystemTime::UNIX_EPOCH),
            sink,
            false,
        );
        let writer = LineWriter {
            target,
            stream: LogStream::Stdout,
            partial: Vec::new(),
        };
        (writer, lines)
    }

    fn write(writer: &mut LineWriter, text: &str) {
        use wasmtime_wasi::p2::OutputStream as _;
        writer
            .write(bytes::Bytes::copy_from_slice(text.as_bytes()))
            .unwrap();
    }

    #[test]
    fn lines_are_emitted_whole_in_order_and_the_partial_tail_waits() {
        let (mut writer, lines) = collecting_writer();
        write(&mut writer, "one\r\ntw");
        write(&mut writer, "o\n\nthr");
        assert_eq!(*lines.lock().unwrap(), ["one", "two", ""]);
        assert_eq!(writer.partial, b"thr");
        write(&mut writer, "ee\nfour");
        drop(writer);
        assert_eq!(*lines.lock().unwrap(), ["one", "two", "", "three", "four"]);
    }

    #[test]
    fn a_line_without_a_newline_is_cut_at_the_limit() {
        let (mut writer, lines) = collecting_writer();
        write(&mut writer, &"x".repeat(MAX_LINE - 1));
        assert!(lines.lock().unwrap().is_empty());
        write(&mut writer, &"y".repeat(MAX_LINE + 2));
        let expected = format!("{}y", "x".repeat(MAX_LINE - 1));
        assert_eq!(*lines.lock().unwrap(), [expected, "y".repeat(MAX_LINE)]);
        assert_eq!(writer.partial, b"y");
    }

    /// A million lines (13 MB) in one write: splitting them must take time in proportion to
    /// the bytes (moving the rest of the buffer for each line would take many minutes here).
    #[test]
    fn a_large_write_of_many_short_lines_is_split_in_one_pass() {
        const LINES: usize = 1_000_000;
        let (mut writer, lines) = collecting_writer();
        let mut text = String::new();
        for index in 0..LINES {
            text.push_str(&format!("line {index}\n"));
        }
        text.push_str("the unfinished tail");
        write(&mut writer, &text);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), LINES);
        for (index, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("line {index}"));
        }
        assert_eq!(writer.partial, b"the unfinished tail");
    }
}
