//! Custom I/O under faults: short reads and `EAGAIN`-style interruptions are absorbed,
//! hard errors and panics in the middle of a stream come back as typed errors, and
//! nothing is left allocated. Heap counters are process-wide: run under nextest
//! (`cargo xtask test`).

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use avsoak::heap::Snapshot;
use avsoak_scenarios::cases::avio_memory::{read_memory, ReadOutcome, ReadSpec};
use avsoak_scenarios::ffi::avio::Teardown;
use avsoak_scenarios::ffi::avio::{Avio, AvioError, Muxer, Op, MAX_RETRIES};
use avsoak_scenarios::media::{self, Clip, Container};
use ffmpeg_next as ffmpeg;

/// What a faulty reader does.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// At most this many bytes per read.
    Short(usize),
    /// Every other call fails with this kind first.
    Flaky(io::ErrorKind),
    /// Fails with this kind once this many bytes were read.
    BreakAt(u64, io::ErrorKind),
    /// Panics once this many bytes were read.
    PanicAt(u64),
}

struct Faulty {
    inner: Cursor<Arc<[u8]>>,
    fault: Fault,
    calls: u64,
}

impl Read for Faulty {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        let at = self.inner.position();
        match self.fault {
            Fault::Short(n) => {
                let n = n.min(buf.len());
                self.inner.read(&mut buf[..n])
            }
            Fault::Flaky(kind) if self.calls % 2 == 1 => Err(io::Error::from(kind)),
            Fault::BreakAt(limit, kind) if at >= limit => {
                Err(io::Error::new(kind, format!("injected at byte {at}")))
            }
            Fault::PanicAt(limit) if at >= limit => panic!("reader panicked at byte {at}"),
            _ => self.inner.read(buf),
        }
    }
}

impl Seek for Faulty {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

fn fixture(container: Container) -> Arc<[u8]> {
    ffmpeg::init().unwrap();
    ffmpeg::log::set_level(ffmpeg::log::Level::Quiet);
    media::fixture(Clip::STANDARD, container).unwrap()
}

fn read(bytes: &Arc<[u8]>, fault: Fault, seekable: bool) -> Result<ReadOutcome, AvioError> {
    let reader = Faulty {
        inner: Cursor::new(bytes.clone()),
        fault,
        calls: 0,
    };
    let spec = ReadSpec::new(seekable, 4096);
    read_memory(reader, spec)
}

/// Runs `f` once to warm FFmpeg's one-time state, then twice more between two heap
/// snapshots (results dropped inside): a leak shows as growth, one-time state does not.
/// Returns a last, unmeasured result for the caller to inspect.
fn leaves_nothing<T>(what: &str, mut f: impl FnMut() -> T) -> T {
    drop(f());
    let before = Snapshot::now();
    drop(f());
    drop(f());
    let left = Snapshot::now().since(&before);
    assert_eq!(
        (left.live_blocks, left.live_bytes),
        (0, 0),
        "{what}: left {left:?}"
    );
    f()
}

#[test]
fn short_reads_and_interruptions_are_absorbed() {
    avsoak::heap::settle();
    let bytes = fixture(Container::MpegTs);
    for fault in [
        Fault::Short(1),
        Fault::Short(7),
        Fault::Flaky(io::ErrorKind::Interrupted),
        Fault::Flaky(io::ErrorKind::WouldBlock),
    ] {
        for seekable in [true, false] {
            let out = leaves_nothing(&format!("{fault:?}"), || read(&bytes, fault, seekable))
                .unwrap_or_else(|e| panic!("{fault:?} seekable={seekable}: {e}"));
            assert_eq!(out.frames, Clip::STANDARD.frames, "{fault:?}");
            if matches!(fault, Fault::Flaky(_)) {
                assert!(out.io.retries > 0, "{fault:?}: nothing was retried");
            }
        }
    }
}

#[test]
fn a_hard_error_mid_stream_is_a_typed_error_not_an_end_of_file() {
    avsoak::heap::settle();
    for container in [Container::Mp4, Container::MpegTs, Container::Matroska] {
        let bytes = fixture(container);
        let middle = bytes.len() as u64 / 2;
        for kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::TimedOut] {
            let err = leaves_nothing(&format!("{container} {kind:?}"), || {
                read(&bytes, Fault::BreakAt(middle, kind), true)
            })
            .unwrap_err();
            match &err {
                AvioError::Io {
                    op: Op::Read,
                    source,
                } => assert_eq!(source.kind(), kind),
                other => panic!("{container}: expected the read error, got {other:?}"),
            }
            assert!(err
                .to_string()
                .starts_with("the read callback failed: injected at byte"));
        }
    }
}

#[test]
fn a_reader_that_never_stops_blocking_gives_up_after_the_retry_bound() {
    avsoak::heap::settle();
    let bytes = fixture(Container::MpegTs);
    let err = read(&bytes, Fault::BreakAt(0, io::ErrorKind::WouldBlock), false).unwrap_err();
    match err {
        AvioError::Io {
            op: Op::Read,
            source,
        } => {
            assert_eq!(source.kind(), io::ErrorKind::WouldBlock)
        }
        other => panic!("expected WouldBlock after {MAX_RETRIES} retries, got {other:?}"),
    }
}

#[test]
fn a_panicking_reader_is_caught_at_the_ffi_edge() {
    avsoak::heap::settle();
    let bytes = fixture(Container::Matroska);
    let middle = bytes.len() as u64 / 2;
    let err = leaves_nothing("panic", || read(&bytes, Fault::PanicAt(middle), true)).unwrap_err();
    match err {
        AvioError::CallbackPanicked {
            op: Op::Read,
            message,
        } => {
            assert!(message.starts_with("reader panicked at byte"), "{message}")
        }
        other => panic!("expected the caught panic, got {other:?}"),
    }
}

/// A writer that fails once it has taken `limit` bytes.
struct BreaksAt {
    taken: usize,
    limit: usize,
}

impl Write for BreaksAt {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.taken >= self.limit {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: disk full",
            ));
        }
        let n = buf.len().min(self.limit - self.taken);
        self.taken += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_writer_that_fails_mid_stream_is_a_typed_error_and_leaves_nothing() {
    avsoak::heap::settle();
    ffmpeg::init().unwrap();
    ffmpeg::log::set_level(ffmpeg::log::Level::Quiet);
    let clip = media::encode_clip(Clip::STANDARD).unwrap();
    for (format, options) in [
        ("mpegts", &[][..]),
        ("matroska", &[][..]),
        (
            "mp4",
            &[("movflags", avsoak_scenarios::ffi::avio::FRAGMENTED_MOVFLAGS)][..],
        ),
    ] {
        let err = leaves_nothing(format, || {
            let sink = BreaksAt {
                taken: 0,
                limit: 10_000,
            };
            let mut muxer = Muxer::new(Avio::writer(sink, 4096)?, format)?;
            media::write_clip(&mut muxer, &clip, options)?;
            muxer.finish().map(|_| ())
        })
        .unwrap_err();
        match &err {
            AvioError::Io {
                op: Op::Write,
                source,
            } => {
                assert_eq!(source.kind(), io::ErrorKind::StorageFull, "{format}")
            }
            other => panic!("{format}: expected the write error, got {other:?}"),
        }
    }
}

#[test]
fn a_muxer_dropped_before_its_trailer_leaves_nothing() {
    avsoak::heap::settle();
    ffmpeg::init().unwrap();
    let clip = media::encode_clip(Clip::STANDARD).unwrap();
    for format in ["mp4", "mpegts", "matroska"] {
        leaves_nothing(format, || {
            let io = Avio::seekable_writer(Cursor::new(Vec::new()), 4096).unwrap();
            let mut muxer = Muxer::new(io, format).unwrap();
            media::write_clip(&mut muxer, &clip, &[]).unwrap();
            drop(muxer);
        });
    }
}

#[test]
#[should_panic(expected = "never-free-buffer: left")]
fn the_check_flags_a_teardown_that_leaks() {
    avsoak::heap::settle();
    let bytes = fixture(Container::Mp4);
    let _ = leaves_nothing("never-free-buffer", || {
        let spec = ReadSpec::new(true, 4096).with_teardown(Teardown::NeverFreeBuffer);
        read_memory(Cursor::new(bytes.clone()), spec).map(|_| ())
    });
}
