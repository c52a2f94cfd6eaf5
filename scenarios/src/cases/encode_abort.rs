//! `encode-abort`: HEVC/HEIF and H.264 encoders aborted at every stage of their life
//! (docs/incidents/heif-encoder-chunks.md: an encoder plugin leaked the encoded chunks it
//! produced, on the normal path and on error and early-abort paths).
//!
//! One iteration is one whole encoder lifetime, fed by the synthetic camera (which keeps
//! moving from one lifetime to the next, as a real one would), that ends at the point the
//! [`Schedule`] names. Encoded output passes through an [`OutputQueue`] on its way to the
//! sink, as it does in an application that batches chunks for a muxer or a socket: on
//! every abort path the queue still holds chunks the encoder produced, and the only thing
//! that separates the clean variants from the control is whether the abort path releases
//! them.
//!
//! | backend | through | what a lifetime is |
//! |---|---|---|
//! | `libheif-x265` | libheif's HEVC encoder plugin (x265) | a HEIF file of [`Settings::frames`] images: encoded one by one into a context, then written |
//! | `libx265`, `libx264` | FFmpeg's encoders | open, send frames, drain, free |
//! | `kvazaar` | libheif's kvazaar plugin, or FFmpeg's `libkvazaar` | as above; skipped with the reason when neither exists |

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::OnceLock;

use avsoak::scenario::{BoxError, Case, Expect, Loss, Scenario, Work, Workload};
use avsoak_fixtures::{Camera, CameraConfig, Frame, Pattern};
use ffmpeg_next as ffmpeg;

use crate::ffi::heif::HeifError;
use crate::ffi::{self, encode};

/// Where a lifetime stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// The normal path: every frame in, the encoder drained, every chunk to the sink.
    Complete,
    /// Configured, never opened.
    BeforeOpen,
    /// Opened, freed before the first frame.
    AfterOpen,
    /// Freed after `k` frames, with frames still inside the encoder and chunks queued.
    MidStream,
    /// Every frame in, freed part of the way through the drain (libheif: part of the way
    /// through writing the file).
    MidFlush,
    /// Frame `k` is malformed (wrong size for FFmpeg, missing chroma planes for libheif);
    /// the encoder's error ends the lifetime.
    BadFrame,
    /// The sink fails on its second write; the failure ends the lifetime.
    FailingSink,
    /// Every frame in, the encoder dropped without a flush.
    Unflushed,
    /// Control: aborts in the drain like `mid-flush`, and forgets the queued chunks
    /// instead of releasing them (the seed's bug).
    DropsOutput,
    /// Control, x265 only: a complete lifetime with SAO off (as the `ultrafast` preset
    /// has it). x265 3.5 then loses its frame filters' SAO buffers (~74 blocks at
    /// 320×240 on 2 cores) every lifetime that encoded a frame: `FrameFilter::init`
    /// creates them, the encoder clears `m_useSao` per frame when SAO is off, and
    /// `FrameFilter::destroy` frees them only if `m_useSao` is set. Every other schedule
    /// turns SAO on, so that the abort paths are judged on their own.
    UpstreamSao,
}

impl Schedule {
    /// Every schedule, in report order.
    pub const ALL: [Schedule; 10] = [
        Schedule::Complete,
        Schedule::BeforeOpen,
        Schedule::AfterOpen,
        Schedule::MidStream,
        Schedule::MidFlush,
        Schedule::BadFrame,
        Schedule::FailingSink,
        Schedule::Unflushed,
        Schedule::DropsOutput,
        Schedule::UpstreamSao,
    ];

    /// The variant name.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Complete => "complete",
            Schedule::BeforeOpen => "before-open",
            Schedule::AfterOpen => "after-open",
            Schedule::MidStream => "mid-stream",
            Schedule::MidFlush => "mid-flush",
            Schedule::BadFrame => "bad-frame",
            Schedule::FailingSink => "failing-sink",
            Schedule::Unflushed => "unflushed",
            Schedule::DropsOutput => "drops-output",
            Schedule::UpstreamSao => "upstream-sao",
        }
    }

    /// What the variant expects: `leak` for the controls, `clean` otherwise.
    pub fn expect(self) -> Expect {
        match self {
            Schedule::DropsOutput | Schedule::UpstreamSao => Expect::Leak,
            _ => Expect::Clean,
        }
    }

    fn about(self) -> &'static str {
        match self {
            Schedule::Complete => "every frame in, drained, every chunk written",
            Schedule::BeforeOpen => "configured, freed before open",
            Schedule::AfterOpen => "opened, freed before the first frame",
            Schedule::MidStream => "freed after k frames, frames inside the encoder, chunks queued",
            Schedule::MidFlush => "freed part of the way through the drain",
            Schedule::BadFrame => "frame k malformed; the encoder's error ends the lifetime",
            Schedule::FailingSink => "the sink fails on its second write",
            Schedule::Unflushed => "every frame in, dropped without a flush",
            Schedule::DropsOutput => {
                "control: aborts in the drain and forgets the queued chunks (the seed's bug)"
            }
            Schedule::UpstreamSao => {
                "control: SAO off, x265 3.5 loses its SAO buffers every lifetime (upstream)"
            }
        }
    }

    /// Whether `route` has this stage. libheif 1.15 opens the x265 encoder inside
    /// `heif_context_encode_image` and closes it there, so "open, no frame yet" does not
    /// exist for it.
    /// Controls sample densely enough for ~20 stacks of their leak in 40 judged
    /// iterations: `drops-output` loses 1–3 KiB per FFmpeg lifetime (~20 KiB for
    /// libheif), `upstream-sao` ~12 KiB.
    fn sample_interval(self) -> Option<u64> {
        match self {
            Schedule::DropsOutput => Some(4 << 10),
            Schedule::UpstreamSao => Some(16 << 10),
            _ => None,
        }
    }

    /// The quick budget ([`Case::quick_iterations`]; the rule: docs/design/soak.md, "Quick
    /// budgets"): 60 iterations, 40 judged, where a lifetime opens x265 and feeds it
    /// frames to the end or to an abort in the drain. Those cost 28–163 ms an iteration
    /// on 2 cores (x265 builds its thread pool, lookahead and frame encoders per open;
    /// libheif opens it once per image), and the smallest growth they call is x265's own
    /// loss of at least 1.1 KiB per open: the end-to-end tests judge exactly these
    /// cases at 40 judged iterations. The lifetimes that stop early (before or right
    /// after the open, after `k` frames or at a malformed frame through FFmpeg) cost
    /// 1–6 ms and keep the runner's 120.
    fn quick_iterations(self, route: &Route) -> Option<u64> {
        let heavy = match self {
            Schedule::BeforeOpen | Schedule::AfterOpen => false,
            // libheif encodes the whole image before any of these stages.
            Schedule::MidStream | Schedule::BadFrame => matches!(route, Route::Heif { .. }),
            _ => true,
        };
        (heavy && route.is_x265()).then_some(60)
    }

    /// `upstream-sao` is about x265 only.
    pub fn applies_to(self, route: &Route) -> bool {
        match self {
            Schedule::AfterOpen => !matches!(route, Route::Heif { .. }),
            Schedule::UpstreamSao => route.is_x265(),
            _ => true,
        }
    }
}

/// An encoder backend, as cases name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// libheif with its x265 plugin.
    LibheifX265,
    /// FFmpeg's `libx265`.
    Libx265,
    /// FFmpeg's `libx264`.
    Libx264,
    /// kvazaar, through libheif or FFmpeg when either has it.
    Kvazaar,
}

impl Backend {
    /// Every backend, in report order.
    pub const ALL: [Backend; 4] = [
        Backend::LibheifX265,
        Backend::Libx265,
        Backend::Libx264,
        Backend::Kvazaar,
    ];

    /// The parameter value.
    pub fn name(self) -> &'static str {
        match self {
            Backend::LibheifX265 => "libheif-x265",
            Backend::Libx265 => "libx265",
            Backend::Libx264 => "libx264",
            Backend::Kvazaar => "kvazaar",
        }
    }

    /// How this machine reaches the backend, or why it cannot.
    pub fn route(self) -> Result<Route, String> {
        match self {
            Backend::LibheifX265 => Ok(Route::Heif { encoder: "x265" }),
            Backend::Libx265 => Ok(Route::Ffmpeg { codec: "libx265" }),
            Backend::Libx264 => Ok(Route::Ffmpeg { codec: "libx264" }),
            Backend::Kvazaar => kvazaar_route().clone(),
        }
    }
}

/// The library calls a backend goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// libheif with the HEVC encoder plugin of this id name.
    Heif {
        /// Plugin id name, e.g. `x265`.
        encoder: &'static str,
    },
    /// FFmpeg's encoder of this name.
    Ffmpeg {
        /// Encoder name, e.g. `libx264`.
        codec: &'static str,
    },
}

impl Route {
    /// Whether the route ends in libx265.
    pub fn is_x265(&self) -> bool {
        matches!(
            self,
            Route::Heif { encoder: "x265" } | Route::Ffmpeg { codec: "libx265" }
        )
    }
}

/// What an x265 route declares about x265 3.5's own leak (see [`ffi::x265`]).
pub const X265_UPSTREAM: &str = "x265 3.5 loses one x265_param (zoneParam) on every \
    successful x265_encoder_open: api.cpp frees it only on its failure path; valgrind \
    reports it definitely lost";

/// kvazaar through libheif's plugin, else FFmpeg's `libkvazaar`, else the reason it is
/// not found (what was looked at, and what `pkg-config` says).
fn kvazaar_route() -> &'static Result<Route, String> {
    static ROUTE: OnceLock<Result<Route, String>> = OnceLock::new();
    ROUTE.get_or_init(|| {
        let heif = ffi::heif::hevc_encoders();
        if heif.iter().any(|id| id == "kvazaar") {
            return Ok(Route::Heif { encoder: "kvazaar" });
        }
        if crate::media::init().is_ok() && ffmpeg::encoder::find_by_name("libkvazaar").is_some() {
            return Ok(Route::Ffmpeg {
                codec: "libkvazaar",
            });
        }
        let pkg = match std::process::Command::new("pkg-config")
            .args(["--modversion", "kvazaar"])
            .output()
        {
            Ok(out) if out.status.success() => format!(
                "pkg-config finds kvazaar {}, but neither libheif nor FFmpeg was built with it",
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            Ok(_) => "pkg-config kvazaar: not found".to_owned(),
            Err(e) => format!("pkg-config could not run: {e}"),
        };
        Err(format!(
            "kvazaar not found ({pkg}; libheif HEVC encoders: {}; FFmpeg has no libkvazaar)",
            if heif.is_empty() {
                "none".to_owned()
            } else {
                heif.join(", ")
            }
        ))
    })
}

/// What one lifetime is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Frame width (even).
    pub width: u32,
    /// Frame height (even).
    pub height: u32,
    /// Frames a complete lifetime encodes.
    pub frames: u32,
    /// The frame `mid-stream` stops after and `bad-frame` spoils (from 1, at most
    /// `frames`).
    pub k: u32,
}

impl Settings {
    /// The settings a backend's cases use: FFmpeg lifetimes of 16 frames at 320×240,
    /// stopped after 6 (inside x264's and x265's lookahead, after the first packets);
    /// HEIF files of 3 images at 640×480 (each image is a whole x265 open, encode, close),
    /// stopped after 2.
    pub fn for_route(route: &Route) -> Settings {
        match route {
            Route::Heif { .. } => Settings {
                width: 640,
                height: 480,
                frames: 3,
                k: 2,
            },
            Route::Ffmpeg { .. } => Settings {
                width: 320,
                height: 240,
                frames: 16,
                k: 6,
            },
        }
    }

    fn check(&self) -> Result<(), EncodeError> {
        let even = |v: u32| v.is_multiple_of(2) && (16..=4096).contains(&v);
        if !even(self.width) || !even(self.height) || self.k == 0 || self.k > self.frames {
            return Err(EncodeError::Settings(*self));
        }
        Ok(())
    }
}

/// Why a lifetime failed where its schedule did not expect it to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Settings out of range.
    #[error(
        "invalid encode settings {0:?} (expected even width and height from 16 to 4096 and \
         1 <= k <= frames)"
    )]
    Settings(Settings),
    /// FFmpeg's encoding API failed.
    #[error(transparent)]
    Ffmpeg(#[from] encode::FfmpegError),
    /// A frame of another size or format than the encoder's, refused before FFmpeg saw
    /// it.
    #[error("{codec}: refused a {got} frame for a {want} encoder")]
    FrameMismatch {
        /// Encoder name.
        codec: &'static str,
        /// The frame's size and format.
        got: String,
        /// The encoder's.
        want: String,
    },
    /// A libheif call failed.
    #[error(transparent)]
    Heif(#[from] HeifError),
    /// The sink failed where no failure was injected.
    #[error("the output sink failed")]
    Sink(#[source] io::Error),
    /// A stage the schedule aims at was never reached.
    #[error("{schedule}: {what}")]
    Unreached {
        /// Schedule name.
        schedule: &'static str,
        /// What did not happen.
        what: String,
    },
}

fn ffmpeg_error(codec: &'static str, call: &'static str) -> impl Fn(ffmpeg::Error) -> EncodeError {
    move |e| encode::error(codec, call)(e).into()
}

/// What one lifetime did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// Frames handed to the encoder.
    pub frames_in: u64,
    /// Chunks the encoder produced (packets; encoded images for libheif).
    pub chunks_out: u64,
    /// Bytes the sink accepted.
    pub bytes_written: u64,
    /// Chunks still queued when the lifetime ended (released, or forgotten by the
    /// control).
    pub abandoned: u64,
    /// The injected failure that ended the lifetime, as the encoder or sink reported it.
    pub stopped_by: Option<String>,
    /// Successful `x265_encoder_open` calls (FFmpeg's libx265 opens once; libheif's x265
    /// plugin once per image).
    pub x265_opens: u64,
}

/// A sink that counts what it takes and can fail on a given write.
#[derive(Debug, Default)]
pub struct Sink {
    writes: u64,
    bytes: u64,
    fail_on: Option<u64>,
}

impl Sink {
    /// A sink that takes everything.
    pub fn counting() -> Self {
        Sink::default()
    }

    /// A sink whose write number `n` (from 1) fails with `BrokenPipe`.
    pub fn failing_on(n: u64) -> Self {
        Sink {
            fail_on: Some(n),
            ..Sink::default()
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        if self.fail_on == Some(self.writes) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("injected sink failure on write {}", self.writes),
            ));
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encoded chunks on their way to the sink, written in batches of [`OutputQueue::BATCH`].
/// What an abort path does with the chunks still queued is the whole difference between
/// the seed's plugin before and after its fix.
#[derive(Debug)]
pub struct OutputQueue<T> {
    chunks: VecDeque<T>,
}

impl<T: AsRef<[u8]>> OutputQueue<T> {
    /// Chunks written to the sink at a time.
    pub const BATCH: usize = 4;

    /// An empty queue.
    pub fn new() -> Self {
        OutputQueue {
            chunks: VecDeque::with_capacity(Self::BATCH),
        }
    }

    /// Queues `chunk`; writes the batch once it is full.
    pub fn push(&mut self, chunk: T, sink: &mut dyn Write) -> io::Result<u64> {
        self.chunks.push_back(chunk);
        if self.chunks.len() >= Self::BATCH {
            self.write_out(sink)
        } else {
            Ok(0)
        }
    }

    /// Writes every queued chunk (the chunk that fails stays queued with the rest).
    pub fn write_out(&mut self, sink: &mut dyn Write) -> io::Result<u64> {
        let mut written = 0;
        while let Some(chunk) = self.chunks.front() {
            sink.write_all(chunk.as_ref())?;
            written += chunk.as_ref().len() as u64;
            self.chunks.pop_front();
        }
        Ok(written)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The abort path: releases what is queued (`forget = false`), or forgets it without
    /// releasing, as the seed's plugin did. Returns how many chunks were queued.
    pub fn abandon(self, forget: bool) -> u64 {
        let n = self.chunks.len() as u64;
        if forget {
            for chunk in self.chunks {
                std::mem::forget(chunk);
            }
        }
        n
    }
}

impl<T: AsRef<[u8]>> Default for OutputQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// An FFmpeg packet as a chunk of bytes.
pub struct PacketChunk(pub ffmpeg::Packet);

impl std::fmt::Debug for PacketChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketChunk")
            .field("size", &self.0.size())
            .field("pts", &self.0.pts())
            .finish()
    }
}

impl AsRef<[u8]> for PacketChunk {
    fn as_ref(&self) -> &[u8] {
        self.0.data().unwrap_or(&[])
    }
}

/// The camera every lifetime of a workload draws from: it keeps moving across lifetimes,
/// so each encodes new content, as in a real application.
#[derive(Debug)]
pub struct Source {
    camera: Camera,
    frame: Frame,
}

impl Source {
    /// A moving gradient with the beauty pass and seeded noise, `width`×`height`.
    pub fn new(width: u32, height: u32) -> Result<Self, BoxError> {
        let camera = Camera::new(
            CameraConfig::new(width, height)
                .fps(25, 1)
                .pattern(Pattern::Gradient)
                .beauty(true),
        )?;
        Ok(Source {
            camera,
            frame: Frame::empty(),
        })
    }

    fn next(&mut self) -> &Frame {
        self.camera.next_into(&mut self.frame);
        &self.frame
    }
}

/// Runs one lifetime of `route` that ends as `schedule` says, feeding it from `source`.
/// An error is a failure the schedule did not inject.
pub fn run(
    route: &Route,
    schedule: Schedule,
    settings: &Settings,
    source: &mut Source,
) -> Result<Lifetime, EncodeError> {
    settings.check()?;
    match *route {
        Route::Heif { encoder } => heif_lifetime(encoder, schedule, settings, source),
        Route::Ffmpeg { codec } => ffmpeg_lifetime(codec, schedule, settings, source),
    }
}

fn unreached(schedule: Schedule, what: impl Into<String>) -> EncodeError {
    EncodeError::Unreached {
        schedule: schedule.name(),
        what: what.into(),
    }
}

/// The sink a schedule writes to.
fn sink_for(schedule: Schedule) -> Sink {
    match schedule {
        Schedule::FailingSink => Sink::failing_on(2),
        _ => Sink::counting(),
    }
}

fn ffmpeg_lifetime(
    codec_name: &'static str,
    schedule: Schedule,
    settings: &Settings,
    source: &mut Source,
) -> Result<Lifetime, EncodeError> {
    let (codec, config) = encode::config(codec_name, settings.width, settings.height)?;
    let mut lifetime = Lifetime::default();
    if schedule == Schedule::BeforeOpen {
        return Ok(lifetime);
    }
    let mut options = ffmpeg::Dictionary::new();
    match codec_name {
        "libx264" => options.set("preset", "veryfast"),
        "libx265" => {
            options.set("preset", "ultrafast");
            let sao = if schedule == Schedule::UpstreamSao {
                "no-sao=1"
            } else {
                "sao=1"
            };
            options.set("x265-params", &format!("log-level=error:{sao}"));
        }
        _ => {}
    }
    let mut encoder = config
        .open_as_with(codec, options)
        .map_err(ffmpeg_error(codec_name, "avcodec_open2"))?;
    if codec_name == "libx265" {
        lifetime.x265_opens += 1;
    }
    if schedule == Schedule::AfterOpen {
        return Ok(lifetime);
    }

    let mut frame = ffmpeg::frame::Video::new(
        ffmpeg::format::Pixel::YUV420P,
        settings.width,
        settings.height,
    );
    let mut sink = sink_for(schedule);
    let mut queue = OutputQueue::<PacketChunk>::new();
    let forget = schedule == Schedule::DropsOutput;
    let stop_after = match schedule {
        Schedule::MidStream => settings.k,
        _ => settings.frames,
    };

    // Moves every packet the encoder has ready into the queue (or, `stop_in_drain`, stops
    // as soon as the queue holds chunks); the sink's error, if any, is the injected one
    // (`failing-sink`) or a real failure. True when the lifetime stops here.
    let drain = |encoder: &mut ffmpeg::encoder::video::Encoder,
                 queue: &mut OutputQueue<PacketChunk>,
                 sink: &mut Sink,
                 lifetime: &mut Lifetime,
                 stop_in_drain: bool|
     -> Result<bool, EncodeError> {
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    lifetime.chunks_out += 1;
                    match queue.push(PacketChunk(packet), sink) {
                        Ok(n) => lifetime.bytes_written += n,
                        Err(e) if schedule == Schedule::FailingSink => {
                            lifetime.stopped_by = Some(e.to_string());
                            return Ok(true);
                        }
                        Err(e) => return Err(EncodeError::Sink(e)),
                    }
                    if stop_in_drain && !queue.is_empty() {
                        return Ok(true);
                    }
                }
                Err(ffmpeg::Error::Other {
                    errno: libc::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => return Ok(false),
                Err(e) => return Err(ffmpeg_error(codec_name, "avcodec_receive_packet")(e)),
            }
        }
    };

    for i in 1..=stop_after {
        if schedule == Schedule::BadFrame && i == settings.k {
            let bad = ffmpeg::frame::Video::new(
                ffmpeg::format::Pixel::YUV420P,
                settings.width / 2,
                settings.height / 2,
            );
            lifetime.frames_in += 1;
            match send_checked(&mut encoder, &bad, codec_name) {
                Err(e @ EncodeError::FrameMismatch { .. }) => {
                    lifetime.stopped_by = Some(e.to_string());
                    lifetime.abandoned = queue.abandon(false);
                    return Ok(lifetime);
                }
                Err(e) => return Err(e),
                Ok(()) => return Err(unreached(schedule, "the malformed frame was accepted")),
            }
        }
        encode::fill_frame(&mut frame, source.next(), i64::from(i))?;
        send_checked(&mut encoder, &frame, codec_name)?;
        lifetime.frames_in += 1;
        if drain(&mut encoder, &mut queue, &mut sink, &mut lifetime, false)? {
            lifetime.abandoned = queue.abandon(false);
            return Ok(lifetime);
        }
    }
    match schedule {
        Schedule::MidStream | Schedule::Unflushed => {
            lifetime.abandoned = queue.abandon(false);
            return Ok(lifetime);
        }
        _ => {}
    }
    encoder
        .send_eof()
        .map_err(ffmpeg_error(codec_name, "avcodec_send_frame(NULL)"))?;
    let mid_drain = matches!(schedule, Schedule::MidFlush | Schedule::DropsOutput);
    let stopped = drain(
        &mut encoder,
        &mut queue,
        &mut sink,
        &mut lifetime,
        mid_drain,
    )?;
    if mid_drain && !stopped {
        return Err(unreached(
            schedule,
            "the drain gave no packet to stop after",
        ));
    }
    if !stopped {
        lifetime.bytes_written += queue.write_out(&mut sink).map_err(EncodeError::Sink)?;
    }
    if schedule == Schedule::FailingSink && lifetime.stopped_by.is_none() {
        return Err(unreached(schedule, "the sink was never written twice"));
    }
    lifetime.abandoned = queue.abandon(forget);
    Ok(lifetime)
}

/// Sends `frame` after checking it has the encoder's size and pixel format. FFmpeg 5.1
/// checks neither: its libx265 wrapper takes a frame of a quarter of the size and x265
/// reads past its planes; its libx264 wrapper fails inside `x264_encoder_encode`, which
/// loses an x264 frame (2 blocks) on that path.
fn send_checked(
    encoder: &mut ffmpeg::encoder::video::Encoder,
    frame: &ffmpeg::frame::Video,
    codec: &'static str,
) -> Result<(), EncodeError> {
    let want = (encoder.width(), encoder.height(), encoder.format());
    let got = (frame.width(), frame.height(), frame.format());
    if want != got {
        return Err(EncodeError::FrameMismatch {
            codec,
            got: format!("{}x{} {:?}", got.0, got.1, got.2),
            want: format!("{}x{} {:?}", want.0, want.1, want.2),
        });
    }
    encoder
        .send_frame(frame)
        .map_err(ffmpeg_error(codec, "avcodec_send_frame"))
}

fn heif_lifetime(
    encoder_id: &'static str,
    schedule: Schedule,
    settings: &Settings,
    source: &mut Source,
) -> Result<Lifetime, EncodeError> {
    let mut lifetime = Lifetime::default();
    let mut context = ffi::heif::Context::new()?;
    let mut encoder = context.hevc_encoder(encoder_id)?;
    encoder.set_quality(50)?;
    encoder.set_logging_level(0)?;
    if encoder_id == "x265" {
        encoder.set_parameter("preset", "ultrafast")?;
        let sao = if schedule == Schedule::UpstreamSao {
            "0"
        } else {
            "1"
        };
        encoder.set_parameter("x265:sao", sao)?;
    }
    if schedule == Schedule::BeforeOpen {
        return Ok(lifetime);
    }
    let mut image = ffi::heif::Image::new(settings.width, settings.height)?;
    let forget = schedule == Schedule::DropsOutput;
    let stop_after = match schedule {
        Schedule::MidStream | Schedule::DropsOutput => settings.k,
        _ => settings.frames,
    };
    // The encoded items, one handle each, until the file is written.
    let mut handles = Vec::with_capacity(settings.frames as usize);
    for i in 1..=stop_after {
        if schedule == Schedule::BadFrame && i == settings.k {
            // Wider than any HEVC encoder takes (x265: 16384); libheif reports the
            // plugin's error. (An image missing its chroma planes is no use here: libheif
            // 1.15's x265 plugin asserts on it and aborts the process.)
            let bad = ffi::heif::Image::new(BAD_IMAGE_WIDTH, 16)?;
            lifetime.frames_in += 1;
            return match context.encode(&bad, &mut encoder) {
                Err(e) => {
                    lifetime.stopped_by = Some(e.to_string());
                    lifetime.abandoned = abandon_handles(handles, false);
                    Ok(lifetime)
                }
                Ok(_) => Err(unreached(
                    schedule,
                    format!("libheif {encoder_id} encoded a {BAD_IMAGE_WIDTH}x16 image"),
                )),
            };
        }
        image.fill_from(source.next());
        handles.push(context.encode(&image, &mut encoder)?);
        lifetime.frames_in += 1;
        lifetime.chunks_out += 1;
        if encoder_id == "x265" {
            lifetime.x265_opens += 1;
        }
    }
    let sink_fails = match schedule {
        Schedule::MidStream | Schedule::Unflushed | Schedule::DropsOutput => {
            lifetime.abandoned = abandon_handles(handles, forget);
            return Ok(lifetime);
        }
        Schedule::MidFlush | Schedule::FailingSink => true,
        _ => false,
    };
    // The file goes out in chunks: `mid-flush` stops part of the way through (the sink
    // fails on its fourth chunk), `failing-sink` on its second.
    let mut sink = match schedule {
        Schedule::MidFlush => Sink::failing_on(4),
        _ => sink_for(schedule),
    };
    match context.write(&mut sink, HEIF_WRITE_CHUNK) {
        Ok(n) if !sink_fails => lifetime.bytes_written = n,
        Ok(n) => {
            return Err(unreached(
                schedule,
                format!("the sink took all {n} bytes without failing"),
            ))
        }
        Err(HeifError::Sink { written, message }) if sink_fails => {
            lifetime.bytes_written = written;
            lifetime.stopped_by = Some(message);
        }
        Err(e) => return Err(e.into()),
    }
    lifetime.abandoned = abandon_handles(handles, false);
    Ok(lifetime)
}

/// Width of the image `bad-frame` hands libheif.
pub const BAD_IMAGE_WIDTH: u32 = 20_000;

/// Bytes per sink write when libheif writes a file.
pub const HEIF_WRITE_CHUNK: usize = 4096;

fn abandon_handles(handles: Vec<ffi::heif::Handle>, forget: bool) -> u64 {
    let n = handles.len() as u64;
    if forget {
        handles.into_iter().for_each(ffi::heif::Handle::leak);
    }
    n
}

/// The scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeAbort;

impl Scenario for EncodeAbort {
    fn name(&self) -> &'static str {
        "encode-abort"
    }

    fn about(&self) -> &'static str {
        "HEVC/HEIF and H.264 encoders aborted at every stage: encoded chunks released on every path"
    }

    fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for schedule in Schedule::ALL {
            for backend in Backend::ALL {
                let route = backend.route();
                if let Ok(route) = &route {
                    if !schedule.applies_to(route) {
                        continue;
                    }
                }
                let case = Case::new(
                    self.name(),
                    schedule.name(),
                    schedule.expect(),
                    schedule.about(),
                )
                .with_param("backend", backend.name())
                .with_sample_interval(schedule.sample_interval());
                cases.push(Case {
                    upstream: route
                        .as_ref()
                        .is_ok_and(Route::is_x265)
                        .then(|| X265_UPSTREAM.to_owned()),
                    quick_iterations: route
                        .as_ref()
                        .ok()
                        .and_then(|r| schedule.quick_iterations(r)),
                    skip: route.err(),
                    ..case
                });
            }
        }
        cases
    }

    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError> {
        let schedule = crate::by_name(
            &Schedule::ALL,
            Schedule::name,
            "encode-abort variant",
            &case.variant,
        )?;
        let backend = crate::by_name(
            &Backend::ALL,
            Backend::name,
            "backend",
            case.param("backend", ""),
        )?;
        let route = backend.route()?;
        let settings = Settings::for_route(&route);
        Ok(Box::new(EncodeWorkload {
            per_open: if route.is_x265() {
                ffi::x265::param_block()?
            } else {
                Loss::default()
            },
            route,
            schedule,
            source: Source::new(settings.width, settings.height)?,
            settings,
            x265_opens: 0,
        }))
    }
}

/// One encoder lifetime per iteration.
#[derive(Debug)]
pub struct EncodeWorkload {
    route: Route,
    schedule: Schedule,
    settings: Settings,
    source: Source,
    /// What x265 loses per open, measured through its allocator (zero off x265).
    per_open: Loss,
    x265_opens: u64,
}

impl Workload for EncodeWorkload {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        let lifetime = run(&self.route, self.schedule, &self.settings, &mut self.source)?;
        self.x265_opens += lifetime.x265_opens;
        Ok(Work {
            frames: lifetime.frames_in,
            bytes: lifetime.bytes_written,
        })
    }

    fn known_loss(&self) -> Loss {
        let opens = self.x265_opens as i64;
        Loss {
            bytes: self.per_open.bytes * opens,
            blocks: self.per_open.blocks * opens,
            slack: self.per_open.slack * opens,
        }
    }
}
