//! Faults injected into guests' writes to the files of a volume ([`WriteFault`]): a write that
//! fails with an I/O error, one that comes up short, a disk that fills up. Deterministic mode
//! injects them for `wasmlet test --explore`; a real host injects none.
//!
//! They land where a guest's write reaches the host, whatever language it was written in:
//! `wasi:filesystem`'s `descriptor.write` (a positioned write) and the output streams of
//! `descriptor.write-via-stream` and `append-via-stream` (what wasi-libc's `write` uses), which
//! are wrapped here. Which volume a file is on is told by where its open file is on the host;
//! the writes are counted per volume, over the pod's life, across all its containers and
//! instances ([`VolumeWrites`]). The streams of an instance whose file operations run on its
//! own thread are wasmlet's ([`InlineFileStream`]). Every other function stays wasmtime-wasi's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor};
use wasmtime_wasi::p2::{
    DynOutputStream, FsResult, OutputStream, Pollable, StreamError, StreamResult,
};

use super::file_streams::{InlineFileStream, WritePosition};
use super::store::GuestState;

/// What happens to one write to the files of a volume: the `at`-th write (counted from 1 over
/// the pod's life, by all its containers) and, for a full disk, every one after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteFault {
    /// The write it lands on.
    pub at: u64,
    /// What happens to it.
    pub kind: WriteFaultKind,
}

/// How a write to a volume goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFaultKind {
    /// That write and every later one fail with "no space left on device" (`ENOSPC`).
    DiskFull,
    /// That write fails with an I/O error (`EIO`); the next ones succeed.
    IoError,
    /// That write writes one byte of what it was given, and says so: the guest sees a short
    /// write (its `write` returns 1) and must write the rest itself.
    ShortWrite,
}

impl WriteFaultKind {
    /// Every kind, in the order a scenario file lists them.
    pub const ALL: [WriteFaultKind; 3] = [
        WriteFaultKind::DiskFull,
        WriteFaultKind::IoError,
        WriteFaultKind::ShortWrite,
    ];

    /// The name a scenario file gives it.
    pub fn key(self) -> &'static str {
        match self {
            WriteFaultKind::DiskFull => "diskFull",
            WriteFaultKind::IoError => "ioError",
            WriteFaultKind::ShortWrite => "shortWrite",
        }
    }

    /// The kind named `key`, as a scenario file writes it.
    pub fn from_key(key: &str) -> Option<WriteFaultKind> {
        Self::ALL.into_iter().find(|kind| kind.key() == key)
    }
}

/// The writes to one volume of a pod so far, and the fault they meet.
#[derive(Debug)]
pub(crate) struct VolumeWrites {
    fault: WriteFault,
    done: AtomicU64,
}

/// What becomes of one write.
enum Outcome {
    /// It goes through as given.
    Write,
    /// It writes one byte (a short write).
    OneByte,
    /// It fails with this `errno`.
    Fail(i32),
}

impl VolumeWrites {
    pub fn new(fault: WriteFault) -> Arc<VolumeWrites> {
        Arc::new(VolumeWrites {
            fault,
            done: AtomicU64::new(0),
        })
    }

    /// Counts a write about to be made, and says what becomes of it.
    fn write(&self) -> Outcome {
        let number = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault.kind {
            WriteFaultKind::DiskFull if number >= self.fault.at => Outcome::Fail(libc::ENOSPC),
            WriteFaultKind::IoError if number == self.fault.at => Outcome::Fail(libc::EIO),
            WriteFaultKind::ShortWrite if number == self.fault.at => Outcome::OneByte,
            _ => Outcome::Write,
        }
    }

    /// Whether the next write is to come up short.
    fn next_is_short(&self) -> bool {
        self.fault.kind == WriteFaultKind::ShortWrite
            && self.done.load(Ordering::SeqCst) + 1 == self.fault.at
    }
}

/// The volumes of one instance whose writes meet a fault: where each is on the host.
#[derive(Debug, Default)]
pub(crate) struct WriteFaults(Vec<(PathBuf, Arc<VolumeWrites>)>);

impl WriteFaults {
    /// The faults of the volumes mounted from `roots` (host directories).
    pub fn new<'a>(roots: impl Iterator<Item = (&'a Path, Arc<VolumeWrites>)>) -> WriteFaults {
        WriteFaults(
            roots
                .map(|(root, writes)| {
                    (
                        std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
                        writes,
                    )
                })
                .collect(),
        )
    }

    /// The writes of the volume the file of `descriptor` is on, if they meet a fault.
    fn of(&self, descriptor: &Descriptor) -> Option<Arc<VolumeWrites>> {
        if self.0.is_empty() {
            return None;
        }
        let Descriptor::File(file) = descriptor else {
            return None;
        };
        use std::os::fd::AsRawFd as _;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.file.as_raw_fd())).ok()?;
        self.0
            .iter()
            .find(|(root, _)| path.starts_with(root))
            .map(|(_, writes)| writes.clone())
    }
}

/// An output stream to a file of a volume whose writes meet a fault.
struct FaultyStream {
    inner: DynOutputStream,
    writes: Arc<VolumeWrites>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for FaultyStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for FaultyStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return self.inner.write(bytes);
        }
        match self.writes.write() {
            Outcome::Write | Outcome::OneByte => self.inner.write(bytes),
            Outcome::Fail(errno) => Err(StreamError::LastOperationFailed(
                std::io::Error::from_raw_os_error(errno).into(),
            )),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // A short write: the guest may write one byte now, so its `write` returns 1.
        let permit = self.inner.check_write()?;
        Ok(if permit > 1 && self.writes.next_is_short() {
            1
        } else {
            permit
        })
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

/// `wasi:filesystem/types`, the version wasmtime-wasi defines (guests of older 0.2 versions
/// are linked to it).
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replaces the three writing functions of `wasi:filesystem/types` in `linker` (which has
/// wasmtime-wasi's) with ones that meet the instance's write faults, if it has any, and are
/// wasmtime-wasi's otherwise.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, mut buffer, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(writes) = state.write_faults.of(state.table.get(&fd)?) {
                    match writes.write() {
                        Outcome::Write => {}
                        Outcome::OneByte => buffer.truncate(1),
                        Outcome::Fail(errno) => return Ok((Err::<u64, _>(error_code(errno)),)),
                    }
                }
                let mut view = store.data_mut().filesystem();
                match HostDescriptor::write(&mut view, fd, buffer, offset).await {
                    Ok(written) => Ok((Ok(written),)),
                    Err(error) => Ok((Err(error.downcast()?),)),
                }
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            open_stream(
                store.data_mut(),
                fd,
                WritePosition::At(offset),
                |view, fd| HostDescriptor::write_via_stream(view, fd, offset),
            )
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<Descriptor>,)| {
            open_stream(store.data_mut(), fd, WritePosition::Append, |view, fd| {
                HostDescriptor::append_via_stream(view, fd)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A stream `open` makes for writing to the file of `fd` from `position` (checking that the
/// guest may), replaced by one that writes on the guest's thread if its file operations run
/// there, and wrapped to meet the write faults of its volume if there are any.
fn open_stream(
    state: &mut GuestState,
    fd: Resource<Descriptor>,
    position: WritePosition,
    open: impl FnOnce(
        &mut WasiFilesystemCtxView<'_>,
        Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>>,
) -> wasmtime::Result<(Result<Resource<DynOutputStream>, ErrorCode>,)> {
    let descriptor = state.table.get(&fd)?;
    let writes = state.write_faults.of(descriptor);
    let inline = match descriptor {
        Descriptor::File(file) if state.files_inline => Some(file.file.clone()),
        _ => None,
    };
    let mut view = state.filesystem();
    let mut stream = match open(&mut view, fd) {
        Ok(stream) => stream,
        Err(error) => return Ok((Err(error.downcast()?),)),
    };
    if let Some(file) = inline {
        view.table.delete(stream)?;
        let inline: DynOutputStream = Box::new(InlineFileStream::new(file, position));
        stream = view.table.push(inline)?;
    }
    let Some(writes) = writes else {
        return Ok((Ok(stream),));
    };
    let inner = view.table.delete(stream)?;
    let wrapped: DynOutputStream = Box::new(FaultyStream { inner, writes });
    Ok((Ok(view.table.push(wrapped)?),))
}

/// The error code a failed write of `errno` gives the guest.
fn error_code(errno: i32) -> ErrorCode {
    match errno {
        libc::ENOSPC => ErrorCode::InsufficientSpace,
        _ => ErrorCode::Io,
    }
}
