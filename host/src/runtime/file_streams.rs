//! Output streams that write a file on the guest's own thread ([`InlineFileStream`]), for an
//! instance whose file operations run there (`allow_blocking_current_thread`, set by
//! `store::new_store`). wasmtime-wasi's file streams hand every write to tokio's blocking pool
//! even then, and Rust's std and wasi-libc write files through streams: each write would cost
//! the guest two thread hand-offs, many times what the write itself costs on a local disk.

use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Where a stream writes: from an offset on (`write-via-stream`), or at the end of the file
/// (`append-via-stream`).
#[derive(Debug, Clone, Copy)]
pub(super) enum WritePosition {
    At(u64),
    Append,
}

/// How much a guest may write in one call, as wasmtime-wasi's file streams allow.
const WRITE_CAPACITY: usize = 64 * 1024;

/// A stream to a file whose writes happen during the guest's `write`.
pub(super) struct InlineFileStream {
    file: Arc<std::fs::File>,
    position: WritePosition,
    state: State,
}

enum State {
    Ready,
    /// A write failed: the error is the answer to the guest's next call, as with wasmtime-wasi's
    /// streams, whose writes finish after `write` returns.
    Failed(io::Error),
    Closed,
}

impl InlineFileStream {
    pub fn new(file: Arc<std::fs::File>, position: WritePosition) -> InlineFileStream {
        InlineFileStream {
            file,
            position,
            state: State::Ready,
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = match &mut self.position {
                WritePosition::At(offset) => {
                    let written = self.file.write_at(bytes, *offset)?;
                    *offset += written as u64;
                    written
                }
                WritePosition::Append => append(&self.file, bytes)?,
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written..];
        }
        Ok(())
    }

    /// Ready for the next call, or the error of the last write (once; closed after it).
    fn last_outcome(&mut self) -> StreamResult<()> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Ready => {
                self.state = State::Ready;
                Ok(())
            }
            State::Failed(error) => Err(StreamError::LastOperationFailed(error.into())),
            State::Closed => Err(StreamError::Closed),
        }
    }
}

/// Writes `bytes` at the end of `file`, as wasmtime-wasi does: `pwritev2(RWF_APPEND)`, or where
/// the kernel lacks it, the file switched to append mode for the write.
fn append(file: &std::fs::File, bytes: &[u8]) -> io::Result<usize> {
    use rustix::io::{Errno, ReadWriteFlags, pwritev2};
    match pwritev2(file, &[io::IoSlice::new(bytes)], 0, ReadWriteFlags::APPEND) {
        Err(Errno::NOSYS) | Err(Errno::NOTSUP) => {}
        otherwise => return Ok(otherwise?),
    }
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(file)?;
    fcntl_setfl(file, flags | OFlags::APPEND)?;
    let written = rustix::io::write(file, bytes);
    fcntl_setfl(file, flags)?;
    Ok(written?)
}

#[wasmtime_wasi::async_trait]
impl Pollable for InlineFileStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for InlineFileStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        match self.state {
            State::Ready => {}
            State::Closed => return Err(StreamError::Closed),
            State::Failed(_) => {
                return Err(StreamError::Trap(wasmtime::format_err!(
                    "write not permitted: check_write not called first"
                )));
            }
        }
        if let Err(error) = self.write_all(&bytes) {
            self.state = State::Failed(error);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.last_outcome()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.last_outcome().map(|()| WRITE_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    fn open_for_writing(path: &std::path::Path) -> Arc<std::fs::File> {
        Arc::new(std::fs::OpenOptions::new().write(true).open(path).unwrap())
    }

    #[test]
    fn writes_land_from_the_offset_on_one_after_another() {
        let (_dir, path) = file_with("0123456789");
        let mut stream = InlineFileStream::new(open_for_writing(&path), WritePosition::At(2));
        for piece in ["ab", "cd"] {
            assert_eq!(stream.check_write().unwrap(), WRITE_CAPACITY);
            stream.write(Bytes::from(piece)).unwrap();
        }
        stream.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "01abcd6789");
    }

    #[test]
    fn appends_land_at_the_end_whatever_else_wrote_meanwhile() {
        let (_dir, path) = file_with("start\n");
        let mut stream = InlineFileStream::new(open_for_writing(&path), WritePosition::Append);
        stream.write(Bytes::from("one\n")).unwrap();
        let mut other = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut other, b"other\n").unwrap();
        stream.write(Bytes::from("two\n")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "start\none\nother\ntwo\n"
        );
    }

    #[test]
    fn a_failed_write_is_the_answer_to_the_next_call_and_closes_the_stream() {
        let (_dir, path) = file_with("");
        // Open for reading only: the write fails (EBADF).
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let mut stream = InlineFileStream::new(file, WritePosition::At(0));
        stream.write(Bytes::from("lost")).unwrap();
        assert!(matches!(
            stream.check_write(),
            Err(StreamError::LastOperationFailed(_))
        ));
        assert!(matches!(stream.check_write(), Err(StreamError::Closed)));
        assert!(matches!(
            stream.write(Bytes::from("x")),
            Err(StreamError::Closed)
        ));
    }
}
