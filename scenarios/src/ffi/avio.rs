//! Custom FFmpeg I/O owned by Rust: an `AVIOContext` over any `Read`/`Write`/`Seek`, and a
//! demuxer and a muxer that use it (docs/incidents/avio-memory.md, docs/incidents/object-storage-fmp4.md).
//!
//! The ownership rules the seed gets wrong are kept here, once:
//!
//! - the I/O buffer comes from `av_malloc`, libavformat may free it and swap in another
//!   (probing does: `ffio_rewind_with_probe_data`), so teardown frees `ctx->buffer`, never
//!   the pointer that was passed in;
//! - the context itself is freed with `avio_context_free`;
//! - a format context opened with `AVFMT_FLAG_CUSTOM_IO` never closes `pb`, so the
//!   [`Demuxer`] and [`Muxer`] close their format context first and the [`Avio`] after.
//!
//! Every constructor frees what it allocated on every failure path. Callback errors come
//! back as [`AvioError::Io`] with the Rust `io::Error`, not as FFmpeg's end of file.
//!
//! ```no_run
//! use std::io::Cursor;
//! use avsoak_scenarios::ffi::avio::{Avio, Demuxer};
//!
//! let bytes: Vec<u8> = std::fs::read("clip.mp4")?;
//! let io = Avio::seekable_reader(Cursor::new(bytes), 32 * 1024)?;
//! let mut demuxer = Demuxer::open(io, None)?;
//! let mut packet = ffmpeg_next::Packet::empty();
//! let mut packets = 0;
//! while demuxer.read(&mut packet)? {
//!     packets += 1;
//! }
//! println!("{packets} packets, {} bytes read", demuxer.io_stats().read_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{c_int, c_void, CStr, CString};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::packet::Mut as _;

use super::mapped::FramePool;

/// Smallest I/O buffer accepted.
pub const MIN_BUFFER: usize = 256;
/// Largest I/O buffer accepted.
pub const MAX_BUFFER: usize = 64 << 20;
/// How many times in a row an `Interrupted` or `WouldBlock` callback is retried before it
/// counts as an error (FFmpeg has no retry layer for custom I/O).
pub const MAX_RETRIES: u32 = 64;

/// Movflags that make the MP4 muxer write to a sink that cannot seek.
pub const FRAGMENTED_MOVFLAGS: &str = "frag_keyframe+empty_moov+default_base_moof";

/// Which callback or call an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The read callback.
    Read,
    /// The write callback.
    Write,
    /// The seek callback.
    Seek,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Seek => "seek",
        })
    }
}

/// An error from custom I/O, the demuxer or the muxer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AvioError {
    /// A buffer size outside [`MIN_BUFFER`]..=[`MAX_BUFFER`].
    #[error("invalid AVIO buffer size {size} bytes (expected {MIN_BUFFER} to {MAX_BUFFER} bytes)")]
    BufferSize {
        /// Size asked for.
        size: usize,
    },
    /// An FFmpeg allocation returned NULL.
    #[error("{call} returned NULL (out of memory)")]
    Alloc {
        /// The allocating call.
        call: &'static str,
    },
    /// The Rust stream behind a callback failed.
    #[error("the {op} callback failed: {source}")]
    Io {
        /// The callback.
        op: Op,
        /// What the stream returned.
        #[source]
        source: io::Error,
    },
    /// A callback panicked; the panic was caught at the FFI edge.
    #[error("the {op} callback panicked: {message}")]
    CallbackPanicked {
        /// The callback.
        op: Op,
        /// The panic message.
        message: String,
    },
    /// An FFmpeg call failed.
    #[error("{call} failed: {error}")]
    Ffmpeg {
        /// The failing call.
        call: &'static str,
        /// FFmpeg's error.
        error: ffmpeg::Error,
    },
    /// No demuxer or muxer has this name.
    #[error("unknown container format {name:?} (expected an FFmpeg format name such as mp4, mpegts or matroska)")]
    UnknownFormat {
        /// The name given.
        name: String,
    },
    /// The muxer needs to seek back (plain MP4 patches its `moov`) and the sink cannot.
    #[error(
        "the {format} muxer cannot write to a sink that cannot seek (FFmpeg: \"muxer does not \
         support non seekable output\"); write fragmented MP4 instead: movflags={FRAGMENTED_MOVFLAGS}"
    )]
    NeedsSeekableOutput {
        /// The muxer.
        format: String,
    },
    /// The muxer did not recognise an option.
    #[error("the {format} muxer does not recognise option {key}={value}")]
    UnusedOption {
        /// The muxer.
        format: String,
        /// Option name.
        key: String,
        /// Option value.
        value: String,
    },
    /// The input has no video stream.
    #[error("the input has no video stream")]
    NoVideoStream,
    /// An index that names no stream.
    #[error("stream {index} does not exist (the context has {count} streams)")]
    NoSuchStream {
        /// Index given.
        index: usize,
        /// Streams present.
        count: usize,
    },
    /// A call made in the wrong state, e.g. a packet before the header.
    #[error("{call} called {problem}")]
    State {
        /// The call.
        call: &'static str,
        /// What was wrong.
        problem: &'static str,
    },
}

/// Counters of what the callbacks did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Read callback calls.
    pub reads: u64,
    /// Bytes returned by reads.
    pub read_bytes: u64,
    /// Write callback calls.
    pub writes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Seek callback calls, size queries included.
    pub seeks: u64,
    /// `AVSEEK_SIZE` queries.
    pub size_queries: u64,
    /// `Interrupted`/`WouldBlock` results retried.
    pub retries: u64,
}

/// How an [`Avio`] is torn down. Anything but `Correct` reproduces one of the seed's
/// teardown mistakes, for positive controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Teardown {
    /// `av_freep(&ctx->buffer)` then `avio_context_free(&ctx)`.
    #[default]
    Correct,
    /// Frees the buffer pointer passed to `avio_alloc_context` instead of `ctx->buffer`.
    /// When libavformat swapped the buffer, the one in use is lost. (The original
    /// mistake also frees the old pointer a second time, which libavformat already freed;
    /// that half is not replayed, since glibc may or may not abort on it and a crash
    /// would hide the leak.)
    FreePassedBuffer,
    /// Never frees the buffer: `avio_context_free` alone.
    NeverFreeBuffer,
    /// Frees the buffer but forgets `avio_context_free`.
    SkipContextFree,
    /// Frees neither: the custom-I/O branch of a teardown skips `avio_closep` (right: it
    /// is not a URL context) and frees nothing in its place.
    FreeNothing,
}

/// What the callbacks share with the owner.
struct State<S> {
    stream: S,
    error: Option<(Op, io::Error)>,
    panic: Option<(Op, String)>,
    /// Set by a panic: the stream may be broken, so it is not called again.
    poisoned: bool,
    stats: IoStats,
}

/// An `AVIOContext` over a Rust stream, with its buffer. See the module docs for the
/// ownership rules it keeps.
pub struct Avio<S> {
    ctx: NonNull<ffi::AVIOContext>,
    /// Box-allocated; given to FFmpeg as `opaque`; freed in `Drop`.
    state: NonNull<State<S>>,
    passed_buffer: *mut u8,
    buffer_size: usize,
    write: bool,
    seekable: bool,
    teardown: Teardown,
    _owns: PhantomData<State<S>>,
}

impl<S> std::fmt::Debug for Avio<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Avio")
            .field("buffer_size", &self.buffer_size)
            .field("write", &self.write)
            .field("seekable", &self.seekable)
            .field("teardown", &self.teardown)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Refuses a buffer size outside [`MIN_BUFFER`]..=[`MAX_BUFFER`].
pub fn check_buffer_size(size: usize) -> Result<(), AvioError> {
    if (MIN_BUFFER..=MAX_BUFFER).contains(&size) {
        Ok(())
    } else {
        Err(AvioError::BufferSize { size })
    }
}

type ReadFn = unsafe extern "C" fn(*mut c_void, *mut u8, c_int) -> c_int;
type SeekFn = unsafe extern "C" fn(*mut c_void, i64, c_int) -> i64;

impl<R: Read> Avio<R> {
    /// A read context without a seek callback: demuxers see a stream.
    pub fn reader(stream: R, buffer_size: usize) -> Result<Self, AvioError> {
        Avio::alloc(stream, buffer_size, false, Some(read_packet::<R>), None)
    }
}

impl<R: Read + Seek> Avio<R> {
    /// A read context with a seek callback (and `AVSEEK_SIZE`).
    pub fn seekable_reader(stream: R, buffer_size: usize) -> Result<Self, AvioError> {
        Avio::alloc(
            stream,
            buffer_size,
            false,
            Some(read_packet::<R>),
            Some(seek::<R>),
        )
    }
}

impl<W: Write> Avio<W> {
    /// A write context without a seek callback: muxers see a sink that cannot seek.
    pub fn writer(stream: W, buffer_size: usize) -> Result<Self, AvioError> {
        Avio::alloc(stream, buffer_size, true, None, None)
            .map(|io| io.with_write_callback(write_packet::<W>))
    }
}

impl<W: Write + Seek> Avio<W> {
    /// A write context with a seek callback.
    pub fn seekable_writer(stream: W, buffer_size: usize) -> Result<Self, AvioError> {
        Avio::alloc(stream, buffer_size, true, None, Some(seek::<W>))
            .map(|io| io.with_write_callback(write_packet::<W>))
    }
}

impl<S> Avio<S> {
    fn alloc(
        stream: S,
        buffer_size: usize,
        write: bool,
        read: Option<ReadFn>,
        seek: Option<SeekFn>,
    ) -> Result<Self, AvioError> {
        check_buffer_size(buffer_size)?;
        let state = NonNull::from(Box::leak(Box::new(State {
            stream,
            error: None,
            panic: None,
            poisoned: false,
            stats: IoStats::default(),
        })));
        // SAFETY: plain allocation of a size checked to fit an int.
        let buffer = unsafe { ffi::av_malloc(buffer_size) }.cast::<u8>();
        if buffer.is_null() {
            // SAFETY: `state` came from Box::leak above and was given to no one.
            drop(unsafe { Box::from_raw(state.as_ptr()) });
            return Err(AvioError::Alloc { call: "av_malloc" });
        }
        // SAFETY: `buffer` is an av_malloc'd block of `buffer_size` bytes; `state` stays
        // valid until Drop frees it after the context; the callbacks match the types
        // they are instantiated for (`S`). The write callback is installed afterwards
        // (see with_write_callback) so that its bound can differ.
        let ctx = unsafe {
            ffi::avio_alloc_context(
                buffer,
                buffer_size as c_int,
                c_int::from(write),
                state.as_ptr().cast(),
                read,
                None,
                seek,
            )
        };
        let Some(ctx) = NonNull::new(ctx) else {
            // SAFETY: the context was not created, so both are still ours alone.
            unsafe {
                ffi::av_free(buffer.cast());
                drop(Box::from_raw(state.as_ptr()));
            }
            return Err(AvioError::Alloc {
                call: "avio_alloc_context",
            });
        };
        Ok(Avio {
            ctx,
            state,
            passed_buffer: buffer,
            buffer_size,
            write,
            seekable: seek.is_some(),
            teardown: Teardown::Correct,
            _owns: PhantomData,
        })
    }

    fn with_write_callback(
        self,
        callback: unsafe extern "C" fn(*mut c_void, *mut u8, c_int) -> c_int,
    ) -> Self {
        // SAFETY: the context is live and not in use by any format context yet; the
        // callback is instantiated for `S`, the type behind `opaque`.
        unsafe { (*self.ctx.as_ptr()).write_packet = Some(callback) };
        self
    }

    /// The raw context, for a format context's `pb`.
    fn as_ptr(&self) -> *mut ffi::AVIOContext {
        self.ctx.as_ptr()
    }

    fn state(&self) -> &State<S> {
        // SAFETY: `state` is valid for the life of self; callbacks only run inside calls
        // that borrow self mutably, so no callback holds a `&mut` now.
        unsafe { self.state.as_ref() }
    }

    fn state_mut(&mut self) -> &mut State<S> {
        // SAFETY: as in `state`, and `&mut self` excludes every other borrow.
        unsafe { self.state.as_mut() }
    }

    /// What the callbacks did so far.
    pub fn stats(&self) -> IoStats {
        self.state().stats
    }

    /// Whether the context has a seek callback.
    pub fn is_seekable(&self) -> bool {
        self.seekable
    }

    /// The buffer size asked for.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Whether libavformat replaced the buffer passed in (the seed's "the internal
    /// buffer could have changed, and be != avio_ctx_buffer").
    pub fn buffer_swapped(&self) -> bool {
        // SAFETY: the context is live.
        unsafe { (*self.ctx.as_ptr()).buffer != self.passed_buffer }
    }

    /// Chooses how Drop tears the context down (anything but the default is a positive
    /// control's mistake).
    pub fn set_teardown(&mut self, teardown: Teardown) {
        self.teardown = teardown;
    }

    /// Takes the callback error or panic recorded since the last call, as a typed error.
    fn take_error(&mut self) -> Option<AvioError> {
        let state = self.state_mut();
        if let Some((op, message)) = state.panic.take() {
            return Some(AvioError::CallbackPanicked { op, message });
        }
        state
            .error
            .take()
            .map(|(op, source)| AvioError::Io { op, source })
    }

    /// Turns an FFmpeg failure into the callback's error when a callback caused it.
    fn fail(&mut self, call: &'static str, code: c_int) -> AvioError {
        self.take_error().unwrap_or(AvioError::Ffmpeg {
            call,
            error: ffmpeg::Error::from(code),
        })
    }

    /// Flushes buffered writes to the stream.
    fn flush(&mut self) -> Result<(), AvioError> {
        // SAFETY: the context is live; flushing calls the write callback synchronously.
        let code = unsafe {
            ffi::avio_flush(self.as_ptr());
            (*self.as_ptr()).error
        };
        match self.take_error() {
            Some(e) => Err(e),
            None if code < 0 => Err(AvioError::Ffmpeg {
                call: "avio_flush",
                error: ffmpeg::Error::from(code),
            }),
            None => Ok(()),
        }
    }

    /// Frees the context and buffer (as the teardown says) and returns the stream.
    pub fn into_inner(self) -> S {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its Drop does not run; the context and
        // buffer are released exactly once here, and the state box is taken back whole.
        unsafe {
            release(this.ctx.as_ptr(), this.passed_buffer, this.teardown);
            Box::from_raw(this.state.as_ptr()).stream
        }
    }
}

/// Frees an `AVIOContext` the way `teardown` says.
///
/// # Safety
/// `ctx` is a live context from `avio_alloc_context` that no format context uses any
/// more; `passed` is the buffer given to it. Neither is used after this call.
unsafe fn release(ctx: *mut ffi::AVIOContext, passed: *mut u8, teardown: Teardown) {
    let mut ctx = ctx;
    // SAFETY: per this function's contract.
    unsafe {
        match teardown {
            Teardown::Correct => {
                ffi::av_freep(ptr::addr_of_mut!((*ctx).buffer).cast());
                ffi::avio_context_free(&mut ctx);
            }
            Teardown::FreePassedBuffer => {
                if (*ctx).buffer == passed {
                    ffi::av_free(passed.cast());
                }
                ffi::avio_context_free(&mut ctx);
            }
            Teardown::NeverFreeBuffer => ffi::avio_context_free(&mut ctx),
            Teardown::FreeNothing => {}
            Teardown::SkipContextFree => {
                ffi::av_freep(ptr::addr_of_mut!((*ctx).buffer).cast());
            }
        }
    }
}

impl<S> Drop for Avio<S> {
    fn drop(&mut self) {
        // SAFETY: the Demuxer/Muxer owning this Avio close their format context before
        // their fields drop, so nothing uses the context now; the state box is freed
        // after the context, once.
        unsafe {
            release(self.ctx.as_ptr(), self.passed_buffer, self.teardown);
            drop(Box::from_raw(self.state.as_ptr()));
        }
    }
}

fn averror(e: &io::Error) -> c_int {
    if let Some(code) = e.raw_os_error() {
        return -code;
    }
    -match e.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::WouldBlock => libc::EAGAIN,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::Interrupted => libc::EINTR,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::OutOfMemory => libc::ENOMEM,
        io::ErrorKind::WriteZero => libc::ENOSPC,
        _ => libc::EIO,
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// Calls `f` again on `Interrupted`/`WouldBlock`, up to [`MAX_RETRIES`] times in a row.
fn retrying<T>(stats: &mut IoStats, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if retryable(&e) && tries < MAX_RETRIES => {
                tries += 1;
                stats.retries += 1;
                if e.kind() == io::ErrorKind::WouldBlock {
                    std::thread::yield_now();
                }
            }
            other => return other,
        }
    }
}

/// Runs a callback body, turning a panic into a recorded error and `EIO`. After a
/// panic the stream is not called again: every later callback fails at once.
fn guarded<S, T>(
    state: &mut State<S>,
    op: Op,
    failed: T,
    body: impl FnOnce(&mut State<S>) -> T,
) -> T {
    if state.poisoned {
        return failed;
    }
    match catch_unwind(AssertUnwindSafe(|| body(&mut *state))) {
        Ok(v) => v,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            state.panic = Some((op, message));
            state.poisoned = true;
            failed
        }
    }
}

unsafe extern "C" fn read_packet<R: Read>(opaque: *mut c_void, buf: *mut u8, size: c_int) -> c_int {
    if size <= 0 || buf.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: `opaque` is the State<R> this callback was instantiated for, alive until
    // the Avio drops; FFmpeg calls it only inside calls made through the owning Avio,
    // never concurrently, so this is the only reference.
    let state = unsafe { &mut *opaque.cast::<State<R>>() };
    // SAFETY: FFmpeg hands a writable buffer of `size` bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, size as usize) };
    guarded(state, Op::Read, -libc::EIO, |state| {
        state.stats.reads += 1;
        let State { stream, stats, .. } = state;
        match retrying(stats, || stream.read(buf)) {
            Ok(0) => ffi::AVERROR_EOF,
            Ok(n) => {
                state.stats.read_bytes += n as u64;
                n as c_int
            }
            Err(e) => {
                let code = averror(&e);
                state.error = Some((Op::Read, e));
                code
            }
        }
    })
}

unsafe extern "C" fn write_packet<W: Write>(
    opaque: *mut c_void,
    buf: *mut u8,
    size: c_int,
) -> c_int {
    if size < 0 || (size > 0 && buf.is_null()) {
        return -libc::EINVAL;
    }
    // SAFETY: as in read_packet, for State<W>.
    let state = unsafe { &mut *opaque.cast::<State<W>>() };
    let data: &[u8] = if size == 0 {
        &[]
    } else {
        // SAFETY: FFmpeg hands `size` readable bytes and does not change them meanwhile.
        unsafe { std::slice::from_raw_parts(buf, size as usize) }
    };
    guarded(state, Op::Write, -libc::EIO, |state| {
        state.stats.writes += 1;
        let State { stream, stats, .. } = state;
        let mut rest = data;
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            match retrying(stats, || stream.write(rest)) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => rest = &rest[n..],
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                state.stats.written_bytes += data.len() as u64;
                size
            }
            Err(e) => {
                let code = averror(&e);
                state.error = Some((Op::Write, e));
                code
            }
        }
    })
}

unsafe extern "C" fn seek<S: Seek>(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    // SAFETY: as in read_packet, for State<S>.
    let state = unsafe { &mut *opaque.cast::<State<S>>() };
    guarded(state, Op::Seek, i64::from(-libc::EIO), |state| {
        state.stats.seeks += 1;
        let State { stream, stats, .. } = state;
        if whence & ffi::AVSEEK_SIZE != 0 {
            stats.size_queries += 1;
            // Size unknown is an answer, not an error: no error is recorded.
            let size = (|| {
                let here = stream.stream_position()?;
                let end = stream.seek(SeekFrom::End(0))?;
                stream.seek(SeekFrom::Start(here))?;
                Ok::<_, io::Error>(end)
            })();
            return size.map_or_else(|e| i64::from(averror(&e)), |n| n as i64);
        }
        let target = match whence & !ffi::AVSEEK_FORCE {
            libc::SEEK_SET if offset >= 0 => SeekFrom::Start(offset as u64),
            libc::SEEK_CUR => SeekFrom::Current(offset),
            libc::SEEK_END => SeekFrom::End(offset),
            _ => return i64::from(-libc::EINVAL),
        };
        match retrying(stats, || stream.seek(target)) {
            Ok(pos) => pos as i64,
            Err(e) => {
                let code = averror(&e);
                state.error = Some((Op::Seek, e));
                i64::from(code)
            }
        }
    })
}

fn c_string(text: &str) -> Result<CString, AvioError> {
    CString::new(text).map_err(|_| AvioError::UnknownFormat {
        name: text.to_owned(),
    })
}

/// One stream of a demuxed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// Index in the container.
    pub index: usize,
    /// Media type.
    pub medium: ffmpeg::media::Type,
    /// Codec.
    pub codec: ffmpeg::codec::Id,
    /// Time base of the packets' timestamps.
    pub time_base: ffmpeg::Rational,
    /// Width (video).
    pub width: u32,
    /// Height (video).
    pub height: u32,
    /// Average frame rate (video; 0/1 when the container does not say).
    pub frame_rate: ffmpeg::Rational,
}

/// A demuxer reading through an [`Avio`].
pub struct Demuxer<R> {
    fmt: NonNull<ffi::AVFormatContext>,
    io: Avio<R>,
}

impl<R> std::fmt::Debug for Demuxer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demuxer")
            .field("format", &self.format_name())
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl<R> Demuxer<R> {
    /// Opens the input behind `io` (probing the format unless `format` names it) and
    /// reads stream information. On failure the format context is freed and `io` is
    /// dropped with its teardown.
    pub fn open(mut io: Avio<R>, format: Option<&str>) -> Result<Self, AvioError> {
        if io.write {
            return Err(AvioError::State {
                call: "Demuxer::open",
                problem: "with a write context",
            });
        }
        let input_format = match format {
            None => ptr::null(),
            Some(name) => {
                let c_name = c_string(name)?;
                // SAFETY: a NUL-terminated name; the result is a static format or NULL.
                let found = unsafe { ffi::av_find_input_format(c_name.as_ptr()) };
                if found.is_null() {
                    return Err(AvioError::UnknownFormat {
                        name: name.to_owned(),
                    });
                }
                found
            }
        };
        // SAFETY: plain allocation.
        let mut fmt = unsafe { ffi::avformat_alloc_context() };
        if fmt.is_null() {
            return Err(AvioError::Alloc {
                call: "avformat_alloc_context",
            });
        }
        // SAFETY: `fmt` is a fresh context; with AVFMT_FLAG_CUSTOM_IO libavformat uses
        // `pb` and never closes it. On failure avformat_open_input frees `fmt` and sets
        // it to NULL, leaving `pb` (still owned by `io`) alone.
        let code = unsafe {
            (*fmt).pb = io.as_ptr();
            (*fmt).flags |= ffi::AVFMT_FLAG_CUSTOM_IO;
            ffi::avformat_open_input(&mut fmt, ptr::null(), input_format, ptr::null_mut())
        };
        if code < 0 {
            return Err(io.fail("avformat_open_input", code));
        }
        let Some(fmt) = NonNull::new(fmt) else {
            return Err(AvioError::Alloc {
                call: "avformat_open_input",
            });
        };
        let mut demuxer = Demuxer { fmt, io };
        // SAFETY: an open input context.
        let code = unsafe { ffi::avformat_find_stream_info(fmt.as_ptr(), ptr::null_mut()) };
        if code < 0 {
            return Err(demuxer.io.fail("avformat_find_stream_info", code));
        }
        Ok(demuxer)
    }

    fn streams_raw(&self) -> &[*mut ffi::AVStream] {
        // SAFETY: `streams` holds `nb_streams` live stream pointers while the context is
        // open; the slice borrows self.
        unsafe {
            let fmt = self.fmt.as_ptr();
            if (*fmt).nb_streams == 0 {
                return &[];
            }
            std::slice::from_raw_parts((*fmt).streams, (*fmt).nb_streams as usize)
        }
    }

    /// The demuxer's name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub fn format_name(&self) -> String {
        // SAFETY: an open input context has a static `iformat` with a static name.
        unsafe {
            let iformat = (*self.fmt.as_ptr()).iformat;
            if iformat.is_null() {
                return String::new();
            }
            CStr::from_ptr((*iformat).name)
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Every stream.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.streams_raw()
            .iter()
            .enumerate()
            .map(|(index, &st)| {
                // SAFETY: live stream with live codec parameters (see streams_raw).
                unsafe {
                    let par = (*st).codecpar;
                    StreamInfo {
                        index,
                        medium: ffmpeg::media::Type::from((*par).codec_type),
                        codec: ffmpeg::codec::Id::from((*par).codec_id),
                        time_base: ffmpeg::Rational::from((*st).time_base),
                        width: (*par).width.max(0) as u32,
                        height: (*par).height.max(0) as u32,
                        frame_rate: ffmpeg::Rational::from((*st).avg_frame_rate),
                    }
                }
            })
            .collect()
    }

    /// The first video stream.
    pub fn video_stream(&self) -> Result<StreamInfo, AvioError> {
        self.streams()
            .into_iter()
            .find(|s| s.medium == ffmpeg::media::Type::Video)
            .ok_or(AvioError::NoVideoStream)
    }

    /// Reads the next packet into `packet` (its old contents are released first).
    /// `Ok(false)` at the end of the input; a callback failure is an error, not an end.
    pub fn read(&mut self, packet: &mut ffmpeg::Packet) -> Result<bool, AvioError> {
        // SAFETY: av_read_frame overwrites the packet without unreferencing it, so the
        // old reference is released first; the context is open.
        let code = unsafe {
            ffi::av_packet_unref(packet.as_mut_ptr());
            ffi::av_read_frame(self.fmt.as_ptr(), packet.as_mut_ptr())
        };
        if let Some(e) = self.io.take_error() {
            // SAFETY: the packet is ours; nothing half-read is handed out.
            unsafe { ffi::av_packet_unref(packet.as_mut_ptr()) };
            return Err(e);
        }
        match code {
            0.. => Ok(true),
            ffi::AVERROR_EOF => Ok(false),
            code => Err(self.io.fail("av_read_frame", code)),
        }
    }

    /// Seeks every stream to the last keyframe at or before `seconds` from the start
    /// (`avformat_seek_file`); needs a seekable input.
    pub fn seek(&mut self, seconds: f64) -> Result<(), AvioError> {
        let target = (seconds.max(0.0) * f64::from(ffi::AV_TIME_BASE)) as i64;
        // SAFETY: the context is open; stream -1 means AV_TIME_BASE units, and the range
        // (anything up to `target`) asks for the keyframe at or before it.
        let code =
            unsafe { ffi::avformat_seek_file(self.fmt.as_ptr(), -1, i64::MIN, target, target, 0) };
        if code < 0 {
            return Err(self.io.fail("avformat_seek_file", code));
        }
        Ok(())
    }

    /// A video decoder for stream `index`, opened from its parameters (one thread), its
    /// pictures from `pool`.
    pub fn video_decoder(
        &self,
        index: usize,
        pool: FramePool,
    ) -> Result<ffmpeg::decoder::Video, AvioError> {
        let streams = self.streams_raw();
        let &st = streams.get(index).ok_or(AvioError::NoSuchStream {
            index,
            count: streams.len(),
        })?;
        let mut context = ffmpeg::codec::Context::new();
        // SAFETY: both are live: the stream's parameters are copied into a fresh context.
        let code =
            unsafe { ffi::avcodec_parameters_to_context(context.as_mut_ptr(), (*st).codecpar) };
        if code < 0 {
            return Err(AvioError::Ffmpeg {
                call: "avcodec_parameters_to_context",
                error: ffmpeg::Error::from(code),
            });
        }
        super::mapped::install(&mut context, pool);
        context
            .decoder()
            .video()
            .map_err(|error| AvioError::Ffmpeg {
                call: "avcodec_open2",
                error,
            })
    }

    /// What the read/seek callbacks did so far.
    pub fn io_stats(&self) -> IoStats {
        self.io.stats()
    }

    /// The I/O context.
    pub fn io(&self) -> &Avio<R> {
        &self.io
    }

    /// Chooses how the I/O context is torn down (for positive controls).
    pub fn set_teardown(&mut self, teardown: Teardown) {
        self.io.set_teardown(teardown);
    }
}

impl<R> Drop for Demuxer<R> {
    fn drop(&mut self) {
        let mut fmt = self.fmt.as_ptr();
        // SAFETY: the context is open and ours; with AVFMT_FLAG_CUSTOM_IO this leaves
        // `pb` alone, and `self.io` frees it when the fields drop after this body.
        unsafe { ffi::avformat_close_input(&mut fmt) };
    }
}

/// A video stream to add to a [`Muxer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStreamSpec {
    /// Codec of the packets.
    pub codec: ffmpeg::codec::Id,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Time base of the packets given to [`Muxer::write`].
    pub time_base: ffmpeg::Rational,
    /// Frame rate.
    pub frame_rate: ffmpeg::Rational,
    /// Codec headers (e.g. H.264 SPS/PPS in Annex B), for containers that store them.
    pub extradata: Vec<u8>,
}

/// Where a [`Muxer`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MuxState {
    Setup,
    Writing,
}

/// A muxer writing through an [`Avio`].
pub struct Muxer<W> {
    fmt: NonNull<ffi::AVFormatContext>,
    io: Option<Avio<W>>,
    format: String,
    input_time_bases: Vec<ffmpeg::Rational>,
    state: MuxState,
}

impl<W> std::fmt::Debug for Muxer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muxer")
            .field("format", &self.format)
            .field("state", &self.state)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// The muxers that must seek back unless they write fragments.
const MOV_FAMILY: [&str; 7] = ["mp4", "mov", "ipod", "3gp", "3g2", "psp", "ismv"];

impl<W> Muxer<W> {
    /// A muxer for the FFmpeg format `format` (e.g. `mp4`, `mpegts`, `matroska`) writing
    /// to `io`.
    pub fn new(io: Avio<W>, format: &str) -> Result<Self, AvioError> {
        if !io.write {
            return Err(AvioError::State {
                call: "Muxer::new",
                problem: "with a read context",
            });
        }
        let c_name = c_string(format)?;
        let mut fmt = ptr::null_mut();
        // SAFETY: `fmt` receives a new context or stays NULL; the name is NUL-terminated.
        let code = unsafe {
            ffi::avformat_alloc_output_context2(&mut fmt, ptr::null(), c_name.as_ptr(), ptr::null())
        };
        let Some(fmt) = NonNull::new(fmt).filter(|_| code >= 0) else {
            return Err(AvioError::UnknownFormat {
                name: format.to_owned(),
            });
        };
        // SAFETY: a fresh output context; it uses `pb` and, with the custom I/O flag and
        // the teardown in Drop, never closes it.
        unsafe {
            (*fmt.as_ptr()).pb = io.as_ptr();
            (*fmt.as_ptr()).flags |= ffi::AVFMT_FLAG_CUSTOM_IO;
        }
        Ok(Muxer {
            fmt,
            io: Some(io),
            format: format.to_owned(),
            input_time_bases: Vec::new(),
            state: MuxState::Setup,
        })
    }

    fn io_mut(&mut self) -> &mut Avio<W> {
        self.io
            .as_mut()
            .expect("the Avio lives as long as the muxer")
    }

    /// Adds a video stream; returns its index.
    pub fn add_video_stream(&mut self, spec: &VideoStreamSpec) -> Result<usize, AvioError> {
        if self.state != MuxState::Setup {
            return Err(AvioError::State {
                call: "Muxer::add_video_stream",
                problem: "after the header",
            });
        }
        // SAFETY: the context is live and in set-up; the new stream belongs to it.
        let st = unsafe { ffi::avformat_new_stream(self.fmt.as_ptr(), ptr::null()) };
        if st.is_null() {
            return Err(AvioError::Alloc {
                call: "avformat_new_stream",
            });
        }
        // SAFETY: `st` and its codecpar are live; extradata is an av_mallocz'd block with
        // the padding FFmpeg requires, owned by codecpar from here on.
        unsafe {
            let par = (*st).codecpar;
            (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
            (*par).codec_id = spec.codec.into();
            (*par).width = spec.width as c_int;
            (*par).height = spec.height as c_int;
            (*par).format = ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as c_int;
            (*st).time_base = spec.time_base.into();
            (*st).avg_frame_rate = spec.frame_rate.into();
            if !spec.extradata.is_empty() {
                let padded = spec.extradata.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
                let extradata = ffi::av_mallocz(padded).cast::<u8>();
                if extradata.is_null() {
                    return Err(AvioError::Alloc { call: "av_mallocz" });
                }
                ptr::copy_nonoverlapping(spec.extradata.as_ptr(), extradata, spec.extradata.len());
                (*par).extradata = extradata;
                (*par).extradata_size = spec.extradata.len() as c_int;
            }
            self.input_time_bases.push(spec.time_base);
            Ok((*st).index as usize)
        }
    }

    /// Writes the header with muxer options (e.g. `movflags`). An option the muxer does
    /// not recognise is an error; so is plain MP4 to a sink that cannot seek
    /// ([`AvioError::NeedsSeekableOutput`]).
    pub fn write_header(&mut self, options: &[(&str, &str)]) -> Result<(), AvioError> {
        if self.state != MuxState::Setup {
            return Err(AvioError::State {
                call: "Muxer::write_header",
                problem: "twice",
            });
        }
        let mut dict = ffmpeg::Dictionary::new();
        for (key, value) in options {
            dict.set(key, value);
        }
        // SAFETY: the dictionary's ownership passes to `raw`, taken back below.
        let mut raw = unsafe { dict.disown() };
        // SAFETY: the context is in set-up with its streams; `raw` is an owned
        // dictionary that FFmpeg updates to the unused options, freed right after.
        let code = unsafe { ffi::avformat_write_header(self.fmt.as_ptr(), &mut raw) };
        // SAFETY: `raw` is owned here again (or NULL); Dictionary::own frees it on drop.
        let unused = unsafe { ffmpeg::Dictionary::own(raw) };
        if code < 0 {
            let non_seekable = !self.io_mut().is_seekable();
            let fragmented = options.iter().any(|(k, v)| {
                *k == "movflags" && (v.contains("frag_") || v.contains("empty_moov"))
            });
            if code == -libc::EINVAL
                && non_seekable
                && !fragmented
                && MOV_FAMILY.contains(&self.format.as_str())
            {
                return Err(AvioError::NeedsSeekableOutput {
                    format: self.format.clone(),
                });
            }
            return Err(self.io_mut().fail("avformat_write_header", code));
        }
        if let Some((key, value)) = unused.iter().next() {
            return Err(AvioError::UnusedOption {
                format: self.format.clone(),
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        self.state = MuxState::Writing;
        Ok(())
    }

    /// Writes one packet of stream `stream`, with timestamps in the stream's input time
    /// base ([`VideoStreamSpec::time_base`]).
    pub fn write(
        &mut self,
        stream: usize,
        data: &[u8],
        pts: i64,
        dts: i64,
        key: bool,
    ) -> Result<(), AvioError> {
        if self.state != MuxState::Writing {
            return Err(AvioError::State {
                call: "Muxer::write",
                problem: "before the header",
            });
        }
        let Some(&input_tb) = self.input_time_bases.get(stream) else {
            return Err(AvioError::NoSuchStream {
                index: stream,
                count: self.input_time_bases.len(),
            });
        };
        let mut packet = ffmpeg::Packet::copy(data);
        packet.set_stream(stream);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(dts));
        if key {
            packet.set_flags(ffmpeg::packet::Flags::KEY);
        }
        // SAFETY: the stream exists (index checked against the streams added).
        let output_tb = unsafe {
            ffmpeg::Rational::from((**(*self.fmt.as_ptr()).streams.add(stream)).time_base)
        };
        packet.rescale_ts(input_tb, output_tb);
        // SAFETY: the header is written; av_interleaved_write_frame takes the packet's
        // reference (leaving it blank) and the Packet frees what is left on drop.
        let code =
            unsafe { ffi::av_interleaved_write_frame(self.fmt.as_ptr(), packet.as_mut_ptr()) };
        if code < 0 {
            return Err(self.io_mut().fail("av_interleaved_write_frame", code));
        }
        Ok(())
    }

    /// Writes out what the muxer holds (a fragment, for fragmented MP4) and flushes the
    /// I/O buffer to the stream.
    pub fn flush(&mut self) -> Result<(), AvioError> {
        if self.state != MuxState::Writing {
            return Err(AvioError::State {
                call: "Muxer::flush",
                problem: "before the header",
            });
        }
        // SAFETY: the header is written; a NULL packet asks the muxer to flush.
        let code = unsafe { ffi::av_write_frame(self.fmt.as_ptr(), ptr::null_mut()) };
        if code < 0 {
            return Err(self.io_mut().fail("av_write_frame(NULL)", code));
        }
        self.io_mut().flush()
    }

    /// What the write/seek callbacks did so far.
    pub fn io_stats(&self) -> IoStats {
        self.io.as_ref().map(Avio::stats).unwrap_or_default()
    }

    /// Chooses how the I/O context is torn down (for positive controls).
    pub fn set_teardown(&mut self, teardown: Teardown) {
        self.io_mut().set_teardown(teardown);
    }

    /// Writes the trailer, flushes, frees everything and returns the stream.
    pub fn finish(mut self) -> Result<W, AvioError> {
        if self.state != MuxState::Writing {
            return Err(AvioError::State {
                call: "Muxer::finish",
                problem: "before the header",
            });
        }
        // SAFETY: the header is written.
        let code = unsafe { ffi::av_write_trailer(self.fmt.as_ptr()) };
        if code < 0 {
            return Err(self.io_mut().fail("av_write_trailer", code));
        }
        self.io_mut().flush()?;
        self.close_format();
        let io = self.io.take().expect("the Avio lives as long as the muxer");
        Ok(io.into_inner())
    }

    /// Frees the format context, detaching `pb` first. Called once: by `finish` just
    /// before it takes `io`, or by Drop while `io` is still there.
    fn close_format(&mut self) {
        let fmt = self.fmt.as_ptr();
        // SAFETY: the context is ours and freed only here; `pb` belongs to `self.io`, so
        // it is detached before avformat_free_context (which also deinitialises a muxer
        // whose trailer was never written).
        unsafe {
            (*fmt).pb = ptr::null_mut();
            ffi::avformat_free_context(fmt);
        }
    }
}

impl<W> Drop for Muxer<W> {
    fn drop(&mut self) {
        if self.io.is_some() {
            self.close_format();
        }
    }
}
