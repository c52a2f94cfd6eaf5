//! `fmp4-mux`: fragmented MP4 to sinks that cannot seek (docs/incidents/object-storage-fmp4.md).
//!
//! An object store takes a stream only as a multipart upload: the muxer writes forward,
//! never back. Plain MP4 patches its `moov` at the end and FFmpeg refuses ("muxer does
//! not support non seekable output"); fragmented MP4 works.
//!
//! | variant | each iteration | expect |
//! |---|---|---|
//! | `fragmented` | a whole fMP4 of the clip written to a sink without a seek callback | clean |
//! | `plain-mp4` | plain MP4 to the same sink: must be refused with [`AvioError::NeedsSeekableOutput`] | clean |
//! | `multipart` | a live camera → x264 → fMP4 → multipart sink; one GOP (one fragment) per iteration; a new object every [`OBJECT_FRAGMENTS`] fragments | clean |
//! | `upload` | `multipart`, each part uploaded to a loopback store on a connection of its own; a refused part is sent again on a new connection, the refused one closed | clean |
//! | `upload-abort-keeps-connection` | `upload`, but the abort path leaves the refused connection open | leak |
//! | `multipart-keeps-parts` | `multipart` at 256 KiB parts, keeping a copy of each part for a resend that never comes: one every ~16 iterations | leak |
//! | `endless-stream` | the same stream cut into low-latency chunks of 5 frames, never finished | leak |
//!
//! The two controls on the muxing side (`multipart-keeps-parts`, `endless-stream`) replay
//! the encoded clip's packets lap after lap instead of encoding the camera: their leaks
//! are the sink's and the muxer's, and their exact re-runs soak hundreds of iterations.
//! | `segment-skips-io-free` | a whole fMP4 per iteration; teardown frees nothing of the custom I/O | leak |
//!
//! `endless-stream` is a positive control found by this scenario: FFmpeg's MP4 muxer
//! keeps one index entry (40 B, for the `mfra` box written with the trailer) per fragment
//! for as long as the stream lives, so one fMP4 stream that is never finished grows
//! without bound. A live uploader rotates objects, as `multipart` does (an S3 multipart
//! upload is limited to 10,000 parts anyway).

use std::io::{self, Write};
use std::net::SocketAddr;

use avsoak::scenario::{BoxError, Case, Expect, Scenario, Work, Workload};

use crate::ffi::avio::{Avio, AvioError, Muxer, Teardown, VideoStreamSpec, FRAGMENTED_MOVFLAGS};
use crate::media::{self, Clip, Container, EncodedClip, LiveEncoder, MediaError, PacketRef};
use crate::store::{LoopbackStore, OnAbort, Uploader};

/// AVIO buffer of every case.
pub const BUFFER: usize = 32 << 10;
/// Smallest part size a [`MultipartSink`] accepts.
pub const MIN_PART: usize = 1 << 10;
/// S3's minimum part size (all parts but the last), the default.
pub const S3_PART: usize = 5 << 20;
/// Fragments per object in `multipart` (30 s of a 1-s GOP).
pub const OBJECT_FRAGMENTS: u32 = 30;

/// What a variant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A whole fMP4 per iteration to a non-seekable sink.
    Fragmented,
    /// Plain MP4 to a non-seekable sink: refused.
    PlainMp4,
    /// A live fMP4 stream into a multipart sink, rotating objects.
    Multipart,
    /// `Multipart`, the parts uploaded over loopback, a connection per part.
    Upload,
    /// Control: `Upload` whose abort path leaves the refused connection open.
    UploadAbortKeepsConnection,
    /// Control: `Multipart` at 256 KiB parts keeping a copy of each part.
    MultipartKeepsParts,
    /// Control: a live fMP4 stream in 5-frame chunks, never finished.
    EndlessStream,
    /// Control: a whole fMP4 per iteration, custom I/O never freed.
    SegmentSkipsIoFree,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 8] = [
        Mode::Fragmented,
        Mode::PlainMp4,
        Mode::Multipart,
        Mode::Upload,
        Mode::UploadAbortKeepsConnection,
        Mode::MultipartKeepsParts,
        Mode::EndlessStream,
        Mode::SegmentSkipsIoFree,
    ];

    /// The variant name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fragmented => "fragmented",
            Mode::PlainMp4 => "plain-mp4",
            Mode::Multipart => "multipart",
            Mode::Upload => "upload",
            Mode::UploadAbortKeepsConnection => "upload-abort-keeps-connection",
            Mode::MultipartKeepsParts => "multipart-keeps-parts",
            Mode::EndlessStream => "endless-stream",
            Mode::SegmentSkipsIoFree => "segment-skips-io-free",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Mode::Fragmented => {
                "whole fMP4 (frag_keyframe+empty_moov+default_base_moof) to a sink that cannot seek"
            }
            Mode::PlainMp4 => "plain MP4 to a sink that cannot seek: refused with a clear error",
            Mode::Multipart => {
                "live camera -> x264 -> fMP4 -> multipart sink, a fragment per iteration, objects rotated"
            }
            Mode::Upload => {
                "multipart upload to a loopback store, a connection per part; refused parts sent again, the refused connection closed"
            }
            Mode::UploadAbortKeepsConnection => {
                "control: the upload's abort path leaves each refused part's connection open"
            }
            Mode::MultipartKeepsParts => {
                "control: multipart at 256 KiB parts, a copy of each part kept for a resend that never comes"
            }
            Mode::EndlessStream => {
                "control: fMP4 in 5-frame chunks never finished; the muxer keeps an index entry per chunk"
            }
            Mode::SegmentSkipsIoFree => {
                "control: fMP4 segment whose teardown frees none of the custom I/O"
            }
        }
    }

    fn expect(self) -> Expect {
        match self {
            Mode::SegmentSkipsIoFree
            | Mode::EndlessStream
            | Mode::UploadAbortKeepsConnection
            | Mode::MultipartKeepsParts => Expect::Leak,
            _ => Expect::Clean,
        }
    }

    fn parts(self) -> Vec<&'static str> {
        match self {
            Mode::Multipart => vec!["5m", "256k"],
            _ => vec![],
        }
    }
}

/// The scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fmp4Mux;

impl Scenario for Fmp4Mux {
    fn name(&self) -> &'static str {
        "fmp4-mux"
    }

    fn about(&self) -> &'static str {
        "fragmented MP4 to sinks that cannot seek: refused plain MP4, multipart upload"
    }

    fn cases(&self) -> Vec<Case> {
        let case = |mode: Mode| {
            // Dense enough for ~20 stacks of the leak in 40 judged iterations: the endless
            // stream grows ~200 B per iteration in one block, the segment control 32 KiB.
            let interval = match mode {
                Mode::EndlessStream => Some(512),
                Mode::SegmentSkipsIoFree => Some(64 << 10),
                _ => None,
            };
            Case::new(self.name(), mode.name(), mode.expect(), mode.about())
                .with_sample_interval(interval)
        };
        let mut cases = Vec::new();
        for mode in Mode::ALL {
            let parts = mode.parts();
            if parts.is_empty() {
                cases.push(case(mode));
            }
            for part in parts {
                cases.push(case(mode).with_param("part", part));
            }
        }
        cases
    }

    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError> {
        let mode = crate::by_name(&Mode::ALL, Mode::name, "fmp4-mux variant", &case.variant)?;
        media::init()?;
        Ok(match mode {
            Mode::Multipart => {
                let sink = MultipartSink::counting(crate::parse_bytes(case.param("part", "5m"))?)?;
                Box::new(LiveStream::new(Clip::STANDARD, sink, rotating())?)
            }
            // The controls replay the clip's packets: their leaks are on the muxing side,
            // and an iteration without the encoder's work is a tenth of the time, which
            // the exact re-run (hundreds of iterations for a part every ~16) needs.
            Mode::MultipartKeepsParts => Box::new(LiveStream::replaying(
                media::encode_clip(Clip::STANDARD)?,
                MultipartSink::keeping_every(256 << 10, 1)?,
                rotating(),
            )?),
            Mode::Upload | Mode::UploadAbortKeepsConnection => {
                let on_abort = match mode {
                    Mode::Upload => OnAbort::Close,
                    _ => OnAbort::KeepOpen,
                };
                Box::new(UploadStream::start(on_abort)?)
            }
            Mode::EndlessStream => {
                let plan = StreamPlan {
                    chunk_frames: 5,
                    rotate_every: None,
                };
                Box::new(LiveStream::replaying(
                    media::encode_clip(Clip::STANDARD)?,
                    MultipartSink::counting(S3_PART)?,
                    plan,
                )?)
            }
            _ => Box::new(SegmentWorkload::new(mode)?),
        })
    }
}

/// A GOP a fragment, objects rotated every [`OBJECT_FRAGMENTS`].
fn rotating() -> StreamPlan {
    StreamPlan {
        chunk_frames: Clip::STANDARD.keyint,
        rotate_every: Some(OBJECT_FRAGMENTS),
    }
}

/// Where finished parts go.
#[derive(Debug)]
enum Parts {
    /// Count them (soaks): the part buffer is reused, nothing is allocated per part.
    Counting,
    /// Control: count them, but keep a copy of every `every`th part for a resend that
    /// never comes.
    KeepingEvery {
        every: u64,
        parts: u64,
        kept: Vec<Vec<u8>>,
    },
    /// Upload each to a loopback store on a connection of its own (the buffer reused).
    Uploading(Uploader),
    /// Keep them (tests): the parts of finished objects, and of the open one.
    Keeping {
        objects: Vec<Vec<Vec<u8>>>,
        open: Vec<Vec<u8>>,
    },
}

/// A sink that takes a stream as an object store's multipart upload does: in parts of
/// exactly `part_size` bytes, the last part of an object shorter. It cannot seek.
#[derive(Debug)]
pub struct MultipartSink {
    part_size: usize,
    current: Vec<u8>,
    parts: Parts,
    objects: u64,
}

impl MultipartSink {
    fn new(part_size: usize, parts: Parts) -> Result<Self, BoxError> {
        if part_size < MIN_PART {
            return Err(format!(
                "invalid part size {part_size} bytes (expected at least {MIN_PART}; S3 needs {S3_PART})"
            )
            .into());
        }
        Ok(MultipartSink {
            part_size,
            current: Vec::with_capacity(part_size),
            parts,
            objects: 0,
        })
    }

    /// A sink that counts parts and reuses one part buffer.
    pub fn counting(part_size: usize) -> Result<Self, BoxError> {
        MultipartSink::new(part_size, Parts::Counting)
    }

    /// The control's sink: counts parts, but keeps a copy of every `every`th one.
    pub fn keeping_every(part_size: usize, every: u64) -> Result<Self, BoxError> {
        MultipartSink::new(
            part_size,
            Parts::KeepingEvery {
                every,
                parts: 0,
                kept: Vec::new(),
            },
        )
    }

    /// A sink that keeps every part of every object.
    pub fn keeping(part_size: usize) -> Result<Self, BoxError> {
        MultipartSink::new(
            part_size,
            Parts::Keeping {
                objects: Vec::new(),
                open: Vec::new(),
            },
        )
    }

    /// A sink that uploads every part to the store at `store`, one connection per part.
    pub fn uploading(
        part_size: usize,
        store: SocketAddr,
        on_abort: OnAbort,
    ) -> Result<Self, BoxError> {
        MultipartSink::new(part_size, Parts::Uploading(Uploader::new(store, on_abort)))
    }

    fn upload(&mut self) -> io::Result<()> {
        match &mut self.parts {
            Parts::Counting => self.current.clear(),
            Parts::KeepingEvery { every, parts, kept } => {
                *parts += 1;
                if parts.is_multiple_of(*every) {
                    keep_for_resend(kept, &self.current);
                }
                self.current.clear();
            }
            Parts::Uploading(client) => {
                client.upload_part(&self.current)?;
                self.current.clear();
            }
            Parts::Keeping { open, .. } => open.push(std::mem::replace(
                &mut self.current,
                Vec::with_capacity(self.part_size),
            )),
        }
        Ok(())
    }

    /// Uploads the last, shorter part and completes the object; the next byte starts a
    /// new one.
    pub fn complete(&mut self) -> io::Result<()> {
        if !self.current.is_empty() {
            self.upload()?;
        }
        self.objects += 1;
        if let Parts::Keeping { objects, open } = &mut self.parts {
            objects.push(std::mem::take(open));
        }
        Ok(())
    }

    /// Objects completed so far.
    pub fn objects(&self) -> u64 {
        self.objects
    }

    /// The parts of every completed object (empty when counting).
    pub fn into_objects(self) -> Vec<Vec<Vec<u8>>> {
        match self.parts {
            Parts::Counting | Parts::KeepingEvery { .. } | Parts::Uploading(_) => Vec::new(),
            Parts::Keeping { objects, .. } => objects,
        }
    }
}

impl Write for MultipartSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (self.part_size - self.current.len()).min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == self.part_size {
            self.upload()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The control's mistake: a copy of a part kept for a resend, never released.
#[inline(never)]
fn keep_for_resend(kept: &mut Vec<Vec<u8>>, part: &[u8]) {
    kept.push(part.to_vec());
}

/// Writes `clip` as one whole fragmented MP4 to a sink without a seek callback.
pub fn write_fragmented<W: Write>(
    clip: &EncodedClip,
    sink: W,
    teardown: Teardown,
) -> Result<W, AvioError> {
    let mut muxer = Muxer::new(Avio::writer(sink, BUFFER)?, "mp4")?;
    muxer.set_teardown(teardown);
    media::write_clip(&mut muxer, clip, &[("movflags", FRAGMENTED_MOVFLAGS)])?;
    muxer.finish()
}

/// Tries plain MP4 to a sink without a seek callback: FFmpeg refuses at the header.
pub fn write_plain_mp4<W: Write>(clip: &EncodedClip, sink: W) -> Result<W, AvioError> {
    let mut muxer = Muxer::new(Avio::writer(sink, BUFFER)?, "mp4")?;
    media::write_clip(&mut muxer, clip, &[])?;
    muxer.finish()
}

/// A running `fragmented`, `plain-mp4` or `segment-skips-io-free` case.
#[derive(Debug)]
pub struct SegmentWorkload {
    mode: Mode,
    clip: EncodedClip,
    out: Vec<u8>,
}

impl SegmentWorkload {
    /// Encodes the clip once.
    pub fn new(mode: Mode) -> Result<Self, BoxError> {
        Ok(SegmentWorkload {
            mode,
            clip: media::encode_clip(Clip::STANDARD)?,
            out: Vec::new(),
        })
    }
}

impl Workload for SegmentWorkload {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let frames = self.clip.packets.len() as u64;
        match self.mode {
            Mode::PlainMp4 => match write_plain_mp4(&self.clip, out) {
                Err(AvioError::NeedsSeekableOutput { .. }) => Ok(Work {
                    frames: 0,
                    bytes: 0,
                }),
                Err(e) => Err(format!("plain MP4 failed, but not as refused: {e}").into()),
                Ok(bytes) => Err(format!(
                    "plain MP4 to a sink that cannot seek wrote {} bytes instead of being refused",
                    bytes.len()
                )
                .into()),
            },
            Mode::Fragmented | Mode::SegmentSkipsIoFree => {
                let teardown = match self.mode {
                    Mode::SegmentSkipsIoFree => Teardown::FreeNothing,
                    _ => Teardown::Correct,
                };
                self.out = write_fragmented(&self.clip, out, teardown)?;
                Ok(Work {
                    frames,
                    bytes: self.out.len() as u64,
                })
            }
            Mode::Multipart
            | Mode::Upload
            | Mode::UploadAbortKeepsConnection
            | Mode::MultipartKeepsParts
            | Mode::EndlessStream => Err("live streams run as LiveStream".into()),
        }
    }
}

/// How a [`LiveStream`] cuts its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// Frames per fragment (a GOP: fragments start on keyframes; fewer: low-latency
    /// chunks).
    pub chunk_frames: u32,
    /// Complete the object and start a new one after this many fragments (`None`: one
    /// endless object).
    pub rotate_every: Option<u32>,
}

/// Where a [`LiveStream`]'s packets come from.
#[derive(Debug)]
enum Source {
    /// The camera through x264, a frame at a time.
    Camera(Box<LiveEncoder>),
    /// An encoded clip's packets again and again, their timestamps running on: the
    /// muxer's and the sink's work without the encoder's.
    Replay {
        clip: EncodedClip,
        /// Packets handed out so far.
        next: u64,
    },
}

impl Source {
    fn extradata(&self) -> &[u8] {
        match self {
            Source::Camera(encoder) => encoder.extradata(),
            Source::Replay { clip, .. } => &clip.extradata,
        }
    }

    /// Hands the next packet to `out`, when one comes out; returns whether one did.
    fn next<E: From<MediaError>>(
        &mut self,
        out: impl FnOnce(PacketRef<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        match self {
            Source::Camera(encoder) => encoder.encode_next(out),
            Source::Replay { clip, next } => {
                let count = clip.packets.len() as u64;
                let packet = &clip.packets[(*next % count) as usize];
                // Each lap starts where the last ended, on the clip's first keyframe.
                let lap = (*next / count) as i64 * count as i64;
                *next += 1;
                out(PacketRef {
                    data: &packet.data,
                    pts: packet.pts + lap,
                    dts: packet.dts + lap,
                    key: packet.key,
                })?;
                Ok(true)
            }
        }
    }
}

/// A live camera → x264 → fMP4 stream into a multipart sink. Each iteration writes one
/// GOP of packets and ends on a fragment boundary.
#[derive(Debug)]
pub struct LiveStream {
    source: Source,
    muxer: Option<Muxer<MultipartSink>>,
    spec: VideoStreamSpec,
    stream: usize,
    plan: StreamPlan,
    gop: u32,
    in_chunk: u32,
    fragments_in_object: u32,
}

/// A plan's chunks must divide the clip's GOP: fragments start on keyframes.
fn check_plan(clip: Clip, plan: StreamPlan) -> Result<(), BoxError> {
    if plan.chunk_frames == 0 || !clip.keyint.is_multiple_of(plan.chunk_frames) {
        return Err(format!(
            "invalid chunk of {} frames (expected a divisor of the GOP, {} frames)",
            plan.chunk_frames, clip.keyint
        )
        .into());
    }
    Ok(())
}

fn open_object(
    sink: MultipartSink,
    spec: &VideoStreamSpec,
) -> Result<(Muxer<MultipartSink>, usize), AvioError> {
    let mut muxer = Muxer::new(Avio::writer(sink, BUFFER)?, "mp4")?;
    let stream = muxer.add_video_stream(spec)?;
    muxer.write_header(&[("movflags", FRAGMENTED_MOVFLAGS)])?;
    Ok((muxer, stream))
}

impl LiveStream {
    /// Opens the encoder and the first object (`ftyp` + empty `moov`).
    pub fn new(clip: Clip, sink: MultipartSink, plan: StreamPlan) -> Result<Self, BoxError> {
        check_plan(clip, plan)?;
        Self::from_source(
            clip,
            Source::Camera(Box::new(LiveEncoder::new(clip)?)),
            sink,
            plan,
        )
    }

    /// The same stream from `clip`'s packets, replayed lap after lap instead of encoded:
    /// an iteration is the muxer's and the sink's work alone.
    pub fn replaying(
        clip: EncodedClip,
        sink: MultipartSink,
        plan: StreamPlan,
    ) -> Result<Self, BoxError> {
        check_plan(clip.clip, plan)?;
        if clip.packets.first().is_none_or(|p| !p.key) {
            return Err("invalid clip to replay (expected packets starting on a keyframe)".into());
        }
        let info = clip.clip;
        Self::from_source(info, Source::Replay { clip, next: 0 }, sink, plan)
    }

    fn from_source(
        clip: Clip,
        source: Source,
        sink: MultipartSink,
        plan: StreamPlan,
    ) -> Result<Self, BoxError> {
        let spec = clip.stream_spec(source.extradata().to_vec());
        let (muxer, stream) = open_object(sink, &spec)?;
        Ok(LiveStream {
            source,
            muxer: Some(muxer),
            spec,
            stream,
            plan,
            gop: clip.keyint,
            in_chunk: 0,
            fragments_in_object: 0,
        })
    }

    fn muxer(&mut self) -> Result<&mut Muxer<MultipartSink>, BoxError> {
        Ok(self
            .muxer
            .as_mut()
            .ok_or("the stream failed while rotating objects")?)
    }

    /// Writes the trailer, completes the object and returns the sink.
    pub fn finish(mut self) -> Result<MultipartSink, BoxError> {
        let muxer = self
            .muxer
            .take()
            .ok_or("the stream failed while rotating objects")?;
        let mut sink = muxer.finish()?;
        sink.complete()?;
        Ok(sink)
    }

    fn end_fragment(&mut self) -> Result<(), BoxError> {
        self.muxer()?.flush()?;
        self.fragments_in_object += 1;
        if Some(self.fragments_in_object) == self.plan.rotate_every {
            let muxer = self.muxer.take().ok_or("no open object")?;
            let mut sink = muxer.finish()?;
            sink.complete()?;
            let (muxer, stream) = open_object(sink, &self.spec)?;
            self.muxer = Some(muxer);
            self.stream = stream;
            self.fragments_in_object = 0;
        }
        Ok(())
    }
}

impl Workload for LiveStream {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        let before = self.muxer()?.io_stats().written_bytes;
        let mut packets = 0;
        let mut inputs = 0;
        // x264 may hold a frame back, so count packets out, not frames in.
        while packets < self.gop {
            inputs += 1;
            if inputs > 2 * self.gop {
                return Err(format!("x264 gave {packets} packets for {inputs} frames").into());
            }
            let stream = self.stream;
            let muxer = self.muxer.as_mut().ok_or("no open object")?;
            let wrote = self.source.next(|p| {
                muxer
                    .write(stream, p.data, p.pts, p.dts, p.key)
                    .map_err(|source| MediaError::Mux {
                        container: Container::Fmp4,
                        source,
                    })
            })?;
            if wrote {
                packets += 1;
                self.in_chunk += 1;
                if self.in_chunk == self.plan.chunk_frames {
                    self.in_chunk = 0;
                    self.end_fragment()?;
                }
            }
        }
        let after = self.muxer()?.io_stats().written_bytes;
        Ok(Work {
            frames: u64::from(packets),
            // A rotation restarts the counters of the new object's Avio.
            bytes: after.checked_sub(before).unwrap_or(after),
        })
    }
}

/// Part size of `upload`: small, so that every iteration uploads a few parts.
pub const UPLOAD_PART: usize = 8 << 10;

/// A live stream uploaded to a loopback store the case starts itself.
#[derive(Debug)]
pub struct UploadStream {
    // Declared first, dropped first: the stream's connections end before the store.
    stream: LiveStream,
    store: LoopbackStore,
}

impl UploadStream {
    /// Starts the store, then the stream (parts of [`UPLOAD_PART`], objects rotated).
    pub fn start(on_abort: OnAbort) -> Result<Self, BoxError> {
        let store = LoopbackStore::start()?;
        let sink = MultipartSink::uploading(UPLOAD_PART, store.addr(), on_abort)?;
        Ok(UploadStream {
            stream: LiveStream::new(Clip::STANDARD, sink, rotating())?,
            store,
        })
    }

    /// Finishes the stream and stops the store: what it took.
    pub fn finish(self) -> Result<crate::store::StoreStats, BoxError> {
        self.stream.finish()?;
        Ok(self.store.stop()?)
    }
}

impl Workload for UploadStream {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        self.stream.iterate()
    }
}

/// One ISO BMFF box and, for container boxes, its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Box {
    /// Four-character type.
    pub kind: String,
    /// Size in bytes, header included.
    pub size: u64,
    /// Children (container boxes only).
    pub children: Vec<Mp4Box>,
}

const CONTAINERS: [&str; 10] = [
    "moov", "trak", "mdia", "minf", "stbl", "mvex", "moof", "traf", "mfra", "edts",
];

/// Parses the box tree of an MP4 file.
pub fn box_tree(bytes: &[u8]) -> Result<Vec<Mp4Box>, String> {
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 8)
            .ok_or_else(|| format!("truncated box header at byte {at}"))?;
        let mut size = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes")));
        let kind = String::from_utf8_lossy(&header[4..8]).into_owned();
        let mut header_len = 8;
        if size == 1 {
            let large = bytes
                .get(at + 8..at + 16)
                .ok_or_else(|| format!("truncated 64-bit size of {kind} at byte {at}"))?;
            size = u64::from_be_bytes(large.try_into().expect("8 bytes"));
            header_len = 16;
        } else if size == 0 {
            size = (bytes.len() - at) as u64;
        }
        let end = at
            .checked_add(size as usize)
            .filter(|&end| size as usize >= header_len && end <= bytes.len())
            .ok_or_else(|| format!("box {kind} at byte {at} claims {size} bytes"))?;
        let children = if CONTAINERS.contains(&kind.as_str()) {
            box_tree(&bytes[at + header_len..end])?
        } else {
            Vec::new()
        };
        boxes.push(Mp4Box {
            kind,
            size,
            children,
        });
        at = end;
    }
    Ok(boxes)
}

/// The box tree as indented types, one per line.
pub fn outline(boxes: &[Mp4Box]) -> String {
    fn walk(boxes: &[Mp4Box], depth: usize, out: &mut String) {
        for b in boxes {
            out.push_str(&"  ".repeat(depth));
            out.push_str(&b.kind);
            out.push('\n');
            walk(&b.children, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(boxes, 0, &mut out);
    out
}
