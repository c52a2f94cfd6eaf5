//! `avio-memory`: FFmpeg custom I/O in and out of memory (docs/incidents/avio-memory.md).
//!
//! Each iteration is one whole request, the way a service handles an upload: open a
//! container held in memory through a custom `AVIOContext`, demux, decode every frame and
//! check the count, tear down (reads); or mux the clip into memory through a write
//! callback (writes).
//!
//! | variant | each iteration | expect |
//! |---|---|---|
//! | `read-seekable` | read callback + seek callback (`AVSEEK_SIZE` answered), decode all | clean |
//! | `read-streaming` | read callback only: the demuxer sees a stream | clean |
//! | `write-memory` | mux the clip into a growing in-memory buffer (seekable writer) | clean |
//! | `free-passed-buffer` | read, then free the buffer pointer passed in instead of `ctx->buffer` | leak |
//! | `never-free-buffer` | read, then `avio_context_free` without freeing the buffer | leak |
//! | `skip-context-free` | read, then free the buffer but never call `avio_context_free` | leak |
//!
//! Parameters: `container` (mp4, fmp4, mpegts, matroska) and `buffer` (the AVIO buffer:
//! 4k, 32k, 1m), so the report shows throughput per buffer size.

use std::io::Cursor;
use std::sync::Arc;

use avsoak::scenario::{BoxError, Case, Expect, Scenario, Work, Workload};
use ffmpeg_next as ffmpeg;

use crate::ffi::avio::{Avio, AvioError, Demuxer, IoStats, Muxer, Teardown};
use crate::ffi::mapped::FramePool;
use crate::media::{self, Clip, Container, EncodedClip};

/// AVIO buffer sizes every clean read and write variant runs with.
pub const BUFFERS: [(&str, usize); 3] = [("4k", 4 << 10), ("32k", 32 << 10), ("1m", 1 << 20)];

/// What a variant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read with a seek callback.
    ReadSeekable,
    /// Read without one.
    ReadStreaming,
    /// Mux into memory.
    WriteMemory,
    /// Control: frees the pointer passed in, losing the swapped-in buffer.
    FreePassedBuffer,
    /// Control: never frees the buffer.
    NeverFreeBuffer,
    /// Control: never frees the context.
    SkipContextFree,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 6] = [
        Mode::ReadSeekable,
        Mode::ReadStreaming,
        Mode::WriteMemory,
        Mode::FreePassedBuffer,
        Mode::NeverFreeBuffer,
        Mode::SkipContextFree,
    ];

    /// The variant name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ReadSeekable => "read-seekable",
            Mode::ReadStreaming => "read-streaming",
            Mode::WriteMemory => "write-memory",
            Mode::FreePassedBuffer => "free-passed-buffer",
            Mode::NeverFreeBuffer => "never-free-buffer",
            Mode::SkipContextFree => "skip-context-free",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Mode::ReadSeekable => "demux + decode from memory with read and seek callbacks",
            Mode::ReadStreaming => "demux + decode from memory with a read callback only",
            Mode::WriteMemory => "mux into memory through a write callback",
            Mode::FreePassedBuffer => {
                "control: teardown frees the buffer passed in, not ctx->buffer (swapped by probing)"
            }
            Mode::NeverFreeBuffer => "control: teardown never frees the AVIO buffer",
            Mode::SkipContextFree => "control: teardown forgets avio_context_free",
        }
    }

    /// Controls sample densely enough that their leak is named even in a short soak (40
    /// judged iterations). `skip-context-free` leaks one ~310 B context per iteration,
    /// which the default interval (512 KiB) would almost never sample: every 512 B, each
    /// leaked context is sampled with p = 1 − e^(−310/512) ≈ 0.45, so 40 judged
    /// iterations hold none with chance 0.55^40 ≈ 4e-11. The buffer controls leak 32 KiB
    /// per iteration: every 64 KiB (p ≈ 0.39, none in 40: 3e-9).
    fn sample_interval(self) -> Option<u64> {
        match self {
            Mode::SkipContextFree => Some(512),
            Mode::FreePassedBuffer | Mode::NeverFreeBuffer => Some(64 << 10),
            _ => None,
        }
    }

    fn teardown(self) -> Teardown {
        match self {
            Mode::FreePassedBuffer => Teardown::FreePassedBuffer,
            Mode::NeverFreeBuffer => Teardown::NeverFreeBuffer,
            Mode::SkipContextFree => Teardown::SkipContextFree,
            _ => Teardown::Correct,
        }
    }

    fn expect(self) -> Expect {
        match self.teardown() {
            Teardown::Correct => Expect::Clean,
            _ => Expect::Leak,
        }
    }

    /// (container, buffer) pairs this mode runs with.
    fn params(self) -> Vec<(Container, &'static str)> {
        let buffers = BUFFERS.map(|(name, _)| name);
        match self {
            Mode::ReadSeekable => Container::ALL
                .into_iter()
                .flat_map(|c| buffers.map(|b| (c, b)))
                .collect(),
            Mode::ReadStreaming => Container::ALL
                .into_iter()
                .filter(|c| c.streamable())
                .map(|c| (c, "32k"))
                .collect(),
            Mode::WriteMemory => [Container::Mp4, Container::MpegTs, Container::Matroska]
                .into_iter()
                .flat_map(|c| buffers.map(|b| (c, b)))
                .collect(),
            Mode::FreePassedBuffer | Mode::NeverFreeBuffer | Mode::SkipContextFree => {
                vec![(Container::Mp4, "32k")]
            }
        }
    }
}

/// The scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct AvioMemory;

impl Scenario for AvioMemory {
    fn name(&self) -> &'static str {
        "avio-memory"
    }

    fn about(&self) -> &'static str {
        "FFmpeg custom AVIOContext in and out of memory, and its teardown"
    }

    fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for mode in Mode::ALL {
            for (container, buffer) in mode.params() {
                cases.push(
                    Case::new(self.name(), mode.name(), mode.expect(), mode.about())
                        .with_param("buffer", buffer)
                        .with_param("container", container.name())
                        .with_sample_interval(mode.sample_interval()),
                );
            }
        }
        cases
    }

    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError> {
        let mode = crate::by_name(&Mode::ALL, Mode::name, "avio-memory variant", &case.variant)?;
        let container = crate::by_name(
            &Container::ALL,
            Container::name,
            "container",
            case.param("container", "mp4"),
        )?;
        let buffer = crate::parse_bytes(case.param("buffer", "32k"))?;
        Ok(Box::new(AvioWorkload::new(mode, container, buffer)?))
    }
}

/// What one read of a container gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Packets of the video stream.
    pub packets: u64,
    /// Frames decoded.
    pub frames: u64,
    /// Presentation timestamps of the decoded frames, relative to the first, in
    /// `time_base` units (only when asked for).
    pub timestamps: Vec<i64>,
    /// The video stream's time base (numerator, denominator).
    pub time_base: (i32, i32),
    /// What the callbacks did.
    pub io: IoStats,
    /// Whether libavformat swapped the AVIO buffer.
    pub buffer_swapped: bool,
}

/// How to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSpec {
    /// Install a seek callback.
    pub seekable: bool,
    /// AVIO buffer size.
    pub buffer: usize,
    /// Teardown of the AVIO context.
    pub teardown: Teardown,
    /// Collect the timestamps.
    pub timestamps: bool,
}

impl ReadSpec {
    /// A reader with a correct teardown that does not collect timestamps.
    pub fn new(seekable: bool, buffer: usize) -> Self {
        ReadSpec {
            seekable,
            buffer,
            teardown: Teardown::Correct,
            timestamps: false,
        }
    }

    /// The same with `teardown`.
    pub fn with_teardown(self, teardown: Teardown) -> Self {
        ReadSpec { teardown, ..self }
    }

    /// The same, collecting the timestamps.
    pub fn with_timestamps(self) -> Self {
        ReadSpec {
            timestamps: true,
            ..self
        }
    }
}

/// Demuxes and decodes all of `source` through a memory reader.
pub fn read_memory<R: std::io::Read + std::io::Seek>(
    source: R,
    spec: ReadSpec,
) -> Result<ReadOutcome, AvioError> {
    let io = if spec.seekable {
        Avio::seekable_reader(source, spec.buffer)?
    } else {
        Avio::reader(source, spec.buffer)?
    };
    let mut demuxer = Demuxer::open(io, None)?;
    demuxer.set_teardown(spec.teardown);
    let video = demuxer.video_stream()?;
    let mut decoder = demuxer.video_decoder(video.index, FramePool::Default)?;
    let mut packet = ffmpeg::Packet::empty();
    let mut frame = ffmpeg::frame::Video::empty();
    let mut out = ReadOutcome::default();
    let mut first = None;
    let mut take = |decoder: &mut ffmpeg::decoder::Video, out: &mut ReadOutcome| {
        while decoder.receive_frame(&mut frame).is_ok() {
            out.frames += 1;
            if spec.timestamps {
                let ts = frame.timestamp().unwrap_or(i64::MIN);
                let first = *first.get_or_insert(ts);
                out.timestamps.push(ts - first);
            }
        }
    };
    let decode_err = |error| AvioError::Ffmpeg {
        call: "avcodec_send_packet",
        error,
    };
    while demuxer.read(&mut packet)? {
        if packet.stream() != video.index {
            continue;
        }
        out.packets += 1;
        decoder.send_packet(&packet).map_err(decode_err)?;
        take(&mut decoder, &mut out);
    }
    decoder.send_eof().map_err(decode_err)?;
    take(&mut decoder, &mut out);
    out.time_base = (video.time_base.numerator(), video.time_base.denominator());
    out.io = demuxer.io_stats();
    out.buffer_swapped = demuxer.io().buffer_swapped();
    Ok(out)
}

/// A running `avio-memory` case.
#[derive(Debug)]
pub struct AvioWorkload {
    mode: Mode,
    container: Container,
    buffer: usize,
    source: Arc<[u8]>,
    clip: Option<EncodedClip>,
    written: Vec<u8>,
}

impl AvioWorkload {
    /// Loads (or makes) the fixture for `container`.
    pub fn new(mode: Mode, container: Container, buffer: usize) -> Result<Self, BoxError> {
        crate::ffi::avio::check_buffer_size(buffer)?;
        if mode == Mode::ReadStreaming && !container.streamable() {
            return Err(format!(
                "read-streaming cannot read {container}: its index sits at the end (expected fmp4, mpegts or matroska)"
            )
            .into());
        }
        media::init()?;
        let clip = Clip::STANDARD;
        let (source, encoded) = if mode == Mode::WriteMemory {
            (Arc::from(Vec::new()), Some(media::encode_clip(clip)?))
        } else {
            (media::fixture(clip, container)?, None)
        };
        Ok(AvioWorkload {
            mode,
            container,
            buffer,
            source,
            clip: encoded,
            written: Vec::new(),
        })
    }

    fn read(&mut self) -> Result<Work, BoxError> {
        let spec = ReadSpec::new(self.mode != Mode::ReadStreaming, self.buffer)
            .with_teardown(self.mode.teardown());
        let out = read_memory(Cursor::new(self.source.clone()), spec)?;
        let want = Clip::STANDARD.frames;
        if out.frames != want {
            return Err(format!(
                "decoded {} frames from the {} fixture, which holds {want}",
                out.frames, self.container
            )
            .into());
        }
        if self.mode == Mode::FreePassedBuffer && !out.buffer_swapped {
            return Err(
                "the control needs libavformat to swap the AVIO buffer, and it did not".into(),
            );
        }
        Ok(Work {
            frames: out.frames,
            bytes: out.io.read_bytes,
        })
    }

    fn write(&mut self) -> Result<Work, BoxError> {
        let clip = self.clip.as_ref().ok_or("no encoded clip")?;
        let mut target = std::mem::take(&mut self.written);
        target.clear();
        let io = Avio::seekable_writer(Cursor::new(target), self.buffer)?;
        let mut muxer = Muxer::new(io, self.container.muxer())?;
        media::write_clip(&mut muxer, clip, self.container.options())?;
        self.written = muxer.finish()?.into_inner();
        Ok(Work {
            frames: clip.packets.len() as u64,
            bytes: self.written.len() as u64,
        })
    }
}

impl Workload for AvioWorkload {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        match self.mode {
            Mode::WriteMemory => self.write(),
            _ => self.read(),
        }
    }
}
