//! Encoder backends on identical synthetic-camera frames (`cargo xtask compare`).
//!
//! Every backend encodes the same frames of [`Pattern::Scene`] (a moving gradient, colour
//! bars and sensor noise: content an encoder has to work for) at each target bitrate, in a
//! child process of its own. Each encode is timed from opening the encoder to closing it,
//! its heap counted (allocations per frame, peak live bytes above the level before it
//! opened), and its output decoded again and compared with the source (PSNR per plane,
//! SSIM of luma). Then a number of short encoder lifetimes at the reference bitrate show
//! whether live bytes grow from one lifetime to the next (a leak per open/close), judged
//! like a soak's series.
//!
//! Fairness, as the report states it: the same frames, size, rate and GOP (2 s) for all;
//! average-bitrate rate control at the same targets; each encoder's speed-oriented preset
//! (x264 and x265 `veryfast`, libvpx `realtime`/`cpu-used=8`, libaom `realtime`/`cpu-used=8`,
//! SVT-AV1 preset 12, mpeg4 with FFmpeg's defaults); threads left to each library's
//! automatic choice (FFmpeg `threads=0`, as the `ffmpeg` command line does).
//!
//! [`model`] holds what a comparison produces and how it is written (`compare.json`,
//! the table, the page).

pub mod bdrate;
pub mod input;
pub mod model;

use std::ffi::CString;
use std::time::Instant;

use avsoak::heap::{self, Snapshot};
use avsoak::scenario::BoxError;
use avsoak::stats::{judge, Budget};
use avsoak_fixtures::quality::{Plane, Sequence};
use avsoak_fixtures::{Camera, CameraConfig, Frame, Pattern};
use ffmpeg_next as ffmpeg;
use model::{BackendResult, Config, Kind, LeakSlope, RateControl, RatePoint, Setup};

use crate::cases::encode_abort::{self, Route};
use crate::ffi::{self, encode};

/// The positive control of the leak slope: x264 direct, leaking one
/// `x264_picture_alloc` (a frame's planes) per encoder lifetime. Run only when named.
pub const LEAK_CONTROL: &str = "x264-direct-leak";

/// Every backend the comparison knows, in table order.
pub const BACKENDS: [&str; 10] = [
    "x264-direct",
    "libx264",
    "libx265",
    "libopenh264",
    "mpeg4",
    "libvpx-vp9",
    "libaom-av1",
    "libsvtav1",
    "libheif-x265",
    "kvazaar",
];

/// How a backend is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// libx264 through the `x264` crate, no FFmpeg.
    X264Direct,
    /// [`Backend::X264Direct`] leaking one picture per encode: the positive control.
    X264DirectLeak,
    /// An FFmpeg encoder of this name.
    Ffmpeg(&'static str),
    /// libheif with the HEVC encoder plugin of this id name: still images.
    Heif(&'static str),
}

/// The backend called `name` on this machine, or why it cannot run here.
pub fn resolve(name: &str) -> Result<Result<Backend, String>, String> {
    if name == LEAK_CONTROL {
        return Ok(Ok(Backend::X264DirectLeak));
    }
    let Some(&name) = BACKENDS.iter().find(|&&b| b == name) else {
        return Err(format!(
            "unknown backend {name:?} (expected one of: {}, or the control {LEAK_CONTROL})",
            BACKENDS.join(", ")
        ));
    };
    let ffmpeg_has = |codec: &'static str| {
        crate::media::init().map_err(|e| format!("FFmpeg did not initialise: {e}"))?;
        match ffmpeg::encoder::find_by_name(codec) {
            Some(_) => Ok(Backend::Ffmpeg(codec)),
            None => Err(format!(
                "FFmpeg (libavcodec {}) was built without the {codec} encoder",
                crate::library_versions()
                    .get("libavcodec")
                    .map_or("?", String::as_str)
            )),
        }
    };
    Ok(match name {
        "x264-direct" => Ok(Backend::X264Direct),
        "libheif-x265" => {
            if ffi::heif::hevc_encoders().iter().any(|id| id == "x265") {
                Ok(Backend::Heif("x265"))
            } else {
                Err("libheif has no x265 encoder plugin".to_owned())
            }
        }
        "kvazaar" => match encode_abort::Backend::Kvazaar.route() {
            Ok(Route::Heif { encoder }) => Ok(Backend::Heif(encoder)),
            Ok(Route::Ffmpeg { codec }) => Ok(Backend::Ffmpeg(codec)),
            Err(reason) => Err(reason),
        },
        "libx264" => ffmpeg_has("libx264"),
        "libx265" => ffmpeg_has("libx265"),
        "libopenh264" => ffmpeg_has("libopenh264"),
        "mpeg4" => ffmpeg_has("mpeg4"),
        "libvpx-vp9" => ffmpeg_has("libvpx-vp9"),
        "libaom-av1" => ffmpeg_has("libaom-av1"),
        "libsvtav1" => ffmpeg_has("libsvtav1"),
        _ => unreachable!("every name in BACKENDS is matched"),
    })
}

impl Backend {
    /// What the backend writes.
    pub fn codec(self) -> &'static str {
        match self {
            Backend::X264Direct
            | Backend::X264DirectLeak
            | Backend::Ffmpeg("libx264" | "libopenh264") => "H.264",
            Backend::Ffmpeg("libx265" | "libkvazaar") => "HEVC",
            Backend::Ffmpeg("mpeg4") => "MPEG-4 Part 2",
            Backend::Ffmpeg("libvpx-vp9") => "VP9",
            Backend::Ffmpeg("libaom-av1" | "libsvtav1") => "AV1",
            Backend::Ffmpeg(_) => "?",
            Backend::Heif(_) => "HEVC in HEIF",
        }
    }

    /// A result for this backend under `name`, with nothing measured yet.
    pub fn result(self, name: &str) -> BackendResult {
        BackendResult {
            backend: name.to_owned(),
            codec: self.codec().to_owned(),
            kind: self.kind(),
            settings: self.settings(),
            points: Vec::new(),
            leak: None,
            upstream: self.upstream().map(str::to_owned),
            error: None,
            bd: None,
        }
    }

    /// The leak its library has upstream, which the leak slope should show.
    pub fn upstream(self) -> Option<&'static str> {
        match self {
            Backend::Ffmpeg("libx265") | Backend::Heif("x265") => Some(
                "x265 3.5 loses one x265_param (zoneParam) per x265_encoder_open, ~1.2 KiB; \
                 libheif opens x265 once per image (see the encode-abort scenario)",
            ),
            _ => None,
        }
    }

    /// Video or stills.
    pub fn kind(self) -> Kind {
        match self {
            Backend::Heif(_) => Kind::Still,
            _ => Kind::Video,
        }
    }

    /// The encoder options besides size, rate, GOP, bitrate and threads.
    fn options(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Backend::Ffmpeg("libx264") => &[("preset", "veryfast")],
            Backend::Ffmpeg("libx265") => {
                &[("preset", "veryfast"), ("x265-params", "log-level=error")]
            }
            Backend::Ffmpeg("libvpx-vp9") => &[("deadline", "realtime"), ("cpu-used", "8")],
            Backend::Ffmpeg("libaom-av1") => &[("usage", "realtime"), ("cpu-used", "8")],
            Backend::Ffmpeg("libsvtav1") => &[("preset", "12")],
            Backend::Heif("x265") => &[("preset", "veryfast")],
            _ => &[],
        }
    }

    /// Its default options with `user`'s over them: a key the user gives replaces the
    /// default's value, new keys follow in the user's order.
    pub fn options_with(self, user: &[(String, String)]) -> Vec<(String, String)> {
        let mut options: Vec<(String, String)> = self
            .options()
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (key, value) in user {
            match options.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => options.push((key.clone(), value.clone())),
            }
        }
        options
    }

    /// Whether the encoder takes every one of `user`'s options, checked without encoding
    /// anything: FFmpeg's option tables for its encoders (the codec context's and the
    /// encoder's private options), `x264_param_parse` for x264 direct. The error names
    /// the option and the backend.
    pub fn check_options(self, name: &str, user: &[(String, String)]) -> Result<(), String> {
        if user.is_empty() {
            return Ok(());
        }
        match self {
            Backend::Ffmpeg(codec) => {
                for (key, value) in &self.options_with(user) {
                    encode::check_option(codec, key, value)
                        .map_err(|why| format!("{name} ({codec}): {why}"))?;
                }
                Ok(())
            }
            Backend::X264Direct | Backend::X264DirectLeak => {
                let (preset, tune, params) = x264_options(user)?;
                ffi::x264::check_params(&preset, tune.as_deref(), &params)
                    .map_err(|e| format!("{name}: {e}"))
            }
            Backend::Heif(_) => Err(format!(
                "{name}: libheif backends take no encoder options here (got {})",
                user.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        }
    }

    /// Whether this backend can set its video rate points by `rate` (every one can by
    /// bitrate; constant quality or quantiser needs the encoder's `crf` or `qp` option):
    /// the reason when not, for a `skipped` row.
    pub fn check_rate(self, rate: RateControl) -> Result<(), String> {
        let Some(option) = rate.option() else {
            return Ok(());
        };
        match self {
            Backend::Ffmpeg(codec) => encode::check_option(codec, option, "23")
                .map_err(|_| format!("FFmpeg's {codec} encoder has no {option} option")),
            Backend::X264Direct | Backend::X264DirectLeak | Backend::Heif(_) => Ok(()),
        }
    }

    /// The settings with `user`'s options, in words.
    pub fn settings_with(self, user: &[(String, String)]) -> String {
        let base = self.settings();
        if user.is_empty() {
            return base;
        }
        let given: Vec<String> = user.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{base}; options: {}", given.join(" "))
    }

    /// The settings, in words.
    pub fn settings(self) -> String {
        let options: Vec<String> = self
            .options()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let options = if options.is_empty() {
            "defaults".to_owned()
        } else {
            options.join(" ")
        };
        match self {
            Backend::X264Direct => {
                "x264 API: preset=veryfast, ABR, threads auto, no tune".to_owned()
            }
            Backend::X264DirectLeak => {
                "control: x264 direct, one x264_picture_alloc per encode never cleaned".to_owned()
            }
            Backend::Ffmpeg(_) => format!("FFmpeg: {options}, ABR (bit_rate), threads=0"),
            Backend::Heif(_) => format!("libheif: {options}, lossy quality, one file per image"),
        }
    }
}

/// x264 direct's options split as x264 takes them: the preset and tune (for
/// `x264_param_default_preset`, default `veryfast` and none), then the rest for
/// `x264_param_parse`.
type X264Options = (CString, Option<CString>, Vec<(CString, CString)>);

fn x264_options(user: &[(String, String)]) -> Result<X264Options, String> {
    let c = |text: &str| {
        CString::new(text).map_err(|_| format!("x264-direct: option text {text:?} holds a NUL"))
    };
    let mut preset = c("veryfast")?;
    let mut tune = None;
    let mut params = Vec::new();
    for (key, value) in user {
        match key.as_str() {
            "preset" => preset = c(value)?,
            "tune" => tune = Some(c(value)?),
            _ => params.push((c(key)?, c(value)?)),
        }
    }
    Ok((preset, tune, params))
}

/// Parses `--config LABEL=BACKEND[,key=value...]`: a label of letters, digits, `.`, `_`
/// or `-`, a backend name, and encoder options (a value may itself hold `=`, as
/// `x265-params=log-level=error` does).
pub fn parse_config(text: &str) -> Result<Config, String> {
    let bad = |why: &str| {
        format!("invalid --config {text:?} ({why}; expected LABEL=BACKEND[,key=value...], e.g. fast=libx264,preset=veryfast)")
    };
    let (label, rest) = text.split_once('=').ok_or_else(|| bad("no label"))?;
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad("a label is letters, digits, '.', '_' or '-'"));
    }
    let mut parts = rest.split(',');
    let backend = parts.next().unwrap_or_default();
    if backend.is_empty() {
        return Err(bad("no backend"));
    }
    let mut options = Vec::new();
    for option in parts {
        let (key, value) = option
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| bad(&format!("option {option:?} is not key=value")))?;
        options.push((key.to_owned(), value.to_owned()));
    }
    Ok(Config {
        label: label.to_owned(),
        backend: backend.to_owned(),
        options,
    })
}

/// What the child is asked to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The setup every backend shares.
    pub setup: Setup,
    /// Options for this backend's encoder over its defaults (its `--config`'s).
    pub options: Vec<(String, String)>,
    /// Encoder lifetimes for the leak slope (0: none).
    pub lifetimes: u32,
    /// Frames per lifetime.
    pub lifetime_frames: u32,
    /// Only time the encodes: no decode, no quality, no lifetimes.
    pub time_only: bool,
}

/// The setup's source frames: the user's input when it names one (checked against the
/// checksum the parent recorded), else the camera's.
pub fn source_frames(setup: &Setup) -> Result<Vec<Frame>, BoxError> {
    if let Some(source) = &setup.input {
        let (read, frames) = input::load(
            std::path::Path::new(&source.path),
            Some((setup.width, setup.height)),
            setup.frames,
        )?;
        if read.checksum != source.checksum {
            return Err(format!(
                "--input {} changed during the comparison (fnv64 {} now, {} at the start)",
                source.path, read.checksum, source.checksum
            )
            .into());
        }
        return Ok(frames);
    }
    let mut camera = Camera::new(
        CameraConfig::new(setup.width, setup.height)
            .fps(setup.fps_num, setup.fps_den)
            .pattern(Pattern::Scene { seed: 7 }),
    )?;
    Ok((0..setup.frames).map(|_| camera.next_frame()).collect())
}

/// The camera, in words, for the report.
pub const SOURCE: &str = "synthetic camera, scene pattern: a moving gradient over colour bars \
    with a moving stripe, in the RGB gamut, seeded sensor noise of ±2";

/// Measures one backend. Failures land in the result's `error`, with whatever rate points
/// were measured before.
pub fn measure(name: &str, backend: Backend, plan: &Plan) -> BackendResult {
    let mut result = backend.result(name);
    result.settings = backend.settings_with(&plan.options);
    if let Err(e) = measure_into(backend, plan, &mut result) {
        result.error = Some(avsoak::soak::error_chain(e.as_ref()));
    }
    result
}

fn measure_into(backend: Backend, plan: &Plan, result: &mut BackendResult) -> Result<(), BoxError> {
    let setup = &plan.setup;
    let frames = source_frames(setup)?;
    let reference = match backend.kind() {
        Kind::Video => setup.reference_kbps,
        Kind::Still => setup.reference_quality,
    };
    let targets: Vec<u32> = match backend.kind() {
        _ if plan.time_only => vec![reference],
        Kind::Video => setup.bitrates_kbps.clone(),
        Kind::Still => setup.still_qualities.clone(),
    };
    let stills: Vec<&Frame> = stills_of(&frames, setup.stills);
    for &target in &targets {
        let encoded = match backend {
            Backend::Heif(id) => encode_stills(id, &stills, target)?,
            _ => encode_video(backend, &frames, setup, target, &plan.options)?,
        };
        let source: Vec<&Frame> = match backend {
            Backend::Heif(_) => stills.clone(),
            _ => frames.iter().collect(),
        };
        let quality = if plan.time_only {
            Sequence::default()
        } else {
            decode_and_compare(&encoded, &source)?
        };
        result
            .points
            .push(encoded.point(target, setup, &quality, source.len()));
    }
    if plan.time_only || plan.lifetimes == 0 {
        return Ok(());
    }
    let short = &frames[..(plan.lifetime_frames as usize).min(frames.len())];
    let short_stills = &stills[..(plan.lifetime_frames as usize).min(stills.len())];
    let (mut bytes, mut blocks) = (Vec::new(), Vec::new());
    for _ in 0..plan.lifetimes {
        let encoded = match backend {
            Backend::Heif(id) => encode_stills(id, short_stills, reference)?,
            _ => encode_video(backend, short, setup, reference, &plan.options)?,
        };
        drop(encoded);
        let now = Snapshot::now();
        bytes.push(now.live_bytes as f64);
        blocks.push(now.live_blocks as f64);
    }
    let judged = judge(&bytes, &blocks, &Budget::bytes(), &Budget::blocks());
    result.leak = Some(LeakSlope {
        lifetimes: plan.lifetimes,
        frames_per_lifetime: short.len().min(u32::MAX as usize) as u32,
        bytes_per_lifetime: judged.bytes.slope,
        blocks_per_lifetime: judged.blocks.slope,
        p: judged.bytes.p,
        trend: judged.trend,
    });
    Ok(())
}

/// `count` frames spread evenly over `frames`.
fn stills_of(frames: &[Frame], count: u32) -> Vec<&Frame> {
    let count = (count as usize).clamp(1, frames.len().max(1));
    (0..count)
        .filter_map(|k| frames.get(k * frames.len() / count))
        .collect()
}

/// One encode's output and cost.
enum Output {
    /// Annex B access units from x264.
    X264(Vec<Vec<u8>>),
    /// FFmpeg packets and the stream's parameters.
    Ffmpeg(Vec<ffmpeg::Packet>, ffmpeg::codec::Parameters),
    /// One HEIF file per image.
    Heif(Vec<Vec<u8>>),
}

struct Encoded {
    output: Output,
    seconds: f64,
    /// Process CPU time from opening the encoder to closing it, every thread.
    cpu_s: f64,
    bytes: u64,
    heap: heap::Delta,
    peak: i64,
}

impl Encoded {
    fn point(&self, target: u32, setup: &Setup, quality: &Sequence, frames: usize) -> RatePoint {
        let frames = frames.max(1) as f64;
        let fps = f64::from(setup.fps_num) / f64::from(setup.fps_den.max(1));
        let psnr = quality.psnr();
        RatePoint {
            target,
            frames: frames as u64,
            encode_s: self.seconds,
            frames_per_s: frames / self.seconds.max(1e-9),
            cpu_ms_per_frame: self.cpu_s * 1000.0 / frames,
            realtime_factor: frames / self.seconds.max(1e-9) / fps,
            bytes: self.bytes,
            kbps: self.bytes as f64 * 8.0 / 1000.0 / (frames / fps),
            bits_per_pixel: self.bytes as f64 * 8.0
                / (frames * f64::from(setup.width) * f64::from(setup.height)),
            psnr_y: psnr.y,
            psnr: psnr.average,
            ssim_y: quality.ssim_y(),
            allocs_per_frame: self.heap.allocs as f64 / frames,
            alloc_bytes_per_frame: self.heap.bytes_allocated as f64 / frames,
            peak_live_bytes: self.peak,
        }
    }
}

/// Times and counts `work`, which opens an encoder, encodes, drains it and closes it, and
/// says when the last output came out: the time runs from the start to that moment (as
/// `ffmpeg -benchmark` does, which closes its encoders after it stops the clock); the
/// heap is counted until after the close.
fn counted(
    work: impl FnOnce() -> Result<(Output, u64, Instant), BoxError>,
) -> Result<Encoded, BoxError> {
    let before = Snapshot::now();
    heap::reset_peak();
    let cpu_start = avsoak::soak::process_cpu_ns();
    let start = Instant::now();
    let (output, bytes, drained) = work()?;
    let cpu_s = avsoak::soak::process_cpu_ns().saturating_sub(cpu_start) as f64 / 1e9;
    let seconds = drained.duration_since(start).as_secs_f64();
    let after = Snapshot::now();
    Ok(Encoded {
        output,
        seconds,
        cpu_s,
        bytes,
        heap: after.since(&before),
        peak: after.peak_live_bytes - before.live_bytes,
    })
}

fn encode_video(
    backend: Backend,
    frames: &[Frame],
    setup: &Setup,
    kbps: u32,
    options: &[(String, String)],
) -> Result<Encoded, BoxError> {
    match backend {
        Backend::X264Direct | Backend::X264DirectLeak => {
            // Split before the clock starts: the encode times x264, not this. The rate
            // and threads go first, so the user's own options can still override them.
            let mut given: Vec<(String, String)> = Vec::new();
            if let Some(option) = setup.rate_control.option() {
                given.push((option.to_owned(), kbps.to_string()));
            }
            if let Some(threads) = setup.threads {
                given.push(("threads".to_owned(), threads.to_string()));
            }
            given.extend(options.iter().cloned());
            let (preset, tune, params) = x264_options(&given)?;
            counted(move || {
                let config = ffi::x264::EncoderConfig {
                    width: setup.width,
                    height: setup.height,
                    fps_num: setup.fps_num,
                    fps_den: setup.fps_den,
                    preset: preset.into(),
                    tune: tune.map(Into::into),
                    keyint: gop(setup),
                    bitrate_kbps: (setup.rate_control == RateControl::Bitrate).then_some(kbps),
                    params,
                };
                let mut encoder = ffi::x264::open_encoder(&config)?;
                let mut sink = ffi::x264::Sink::packets();
                for frame in frames {
                    ffi::x264::encode(
                        &mut encoder,
                        frame.index(),
                        frame.pts_us(),
                        ffi::x264::borrowed_image(frame),
                        &mut sink,
                    )?;
                }
                let (drained, closing) = ffi::x264::drain(encoder, &mut sink)?;
                drop(closing);
                if backend == Backend::X264DirectLeak {
                    ffi::x264::AllocatedPicture::new(setup.width, setup.height)?.leak();
                }
                let bytes = sink.bytes;
                Ok((
                    Output::X264(sink.packets.unwrap_or_default()),
                    bytes,
                    drained,
                ))
            })
        }
        Backend::Ffmpeg(codec) => {
            counted(|| ffmpeg_encode(codec, backend, frames, setup, kbps, options))
        }
        Backend::Heif(_) => Err("a still-image backend has no video encode".into()),
    }
}

fn gop(setup: &Setup) -> i32 {
    (2 * setup.fps_num / setup.fps_den.max(1)).max(1) as i32
}

fn ffmpeg_encode(
    codec_name: &'static str,
    backend: Backend,
    frames: &[Frame],
    setup: &Setup,
    kbps: u32,
    user: &[(String, String)],
) -> Result<(Output, u64, Instant), BoxError> {
    let error = encode::error;
    let (codec, mut config) = encode::config(codec_name, setup.width, setup.height)?;
    config.set_time_base((setup.fps_den as i32, setup.fps_num as i32));
    config.set_frame_rate(Some((setup.fps_num as i32, setup.fps_den as i32)));
    config.set_gop(gop(setup) as u32);
    let threads = setup.threads.map_or(0, |t| t.min(i32::MAX as u32) as i32);
    // SAFETY: `config` owns a live, not yet opened AVCodecContext; thread_count is a
    // plain field that avcodec_open2 reads (0 = the library's automatic choice).
    unsafe { (*config.as_mut_ptr()).thread_count = threads };
    let mut options = ffmpeg::Dictionary::new();
    match setup.rate_control.option() {
        None => config.set_bit_rate(kbps as usize * 1000),
        Some(option) => {
            // Constant quality: no target bitrate (libvpx and libaom need it 0 for crf).
            config.set_bit_rate(0);
            options.set(option, &kbps.to_string());
        }
    }
    for (k, v) in backend.options_with(user) {
        options.set(&k, &v);
    }
    let mut encoder = config
        .open_as_with(codec, options)
        .map_err(error(codec_name, "avcodec_open2"))?;
    let parameters = ffmpeg::codec::Parameters::from(&encoder);
    let mut picture =
        ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, setup.width, setup.height);
    let mut packets = Vec::with_capacity(frames.len() + 8);
    let mut bytes = 0u64;
    let mut drain = |encoder: &mut ffmpeg::encoder::video::Encoder| -> Result<(), BoxError> {
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    bytes += packet.size() as u64;
                    packets.push(packet);
                }
                Err(ffmpeg::Error::Other {
                    errno: libc::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(error(codec_name, "avcodec_receive_packet")(e).into()),
            }
        }
    };
    for (i, frame) in frames.iter().enumerate() {
        encode::fill_frame(&mut picture, frame, i as i64)?;
        encoder
            .send_frame(&picture)
            .map_err(error(codec_name, "avcodec_send_frame"))?;
        drain(&mut encoder)?;
    }
    encoder
        .send_eof()
        .map_err(error(codec_name, "avcodec_send_frame(NULL)"))?;
    drain(&mut encoder)?;
    let drained = Instant::now();
    drop(encoder);
    Ok((Output::Ffmpeg(packets, parameters), bytes, drained))
}

fn encode_stills(id: &'static str, stills: &[&Frame], quality: u32) -> Result<Encoded, BoxError> {
    counted(|| {
        let mut files = Vec::with_capacity(stills.len());
        let mut bytes = 0;
        for frame in stills {
            let mut context = ffi::heif::Context::new()?;
            let mut encoder = context.hevc_encoder(id)?;
            encoder.set_quality(quality.min(100) as i32)?;
            encoder.set_logging_level(0)?;
            for (k, v) in Backend::Heif(id).options() {
                encoder.set_parameter(k, v)?;
            }
            let mut image = ffi::heif::Image::new(frame.width(), frame.height())?;
            image.fill_from(frame);
            drop(context.encode(&image, &mut encoder)?);
            let mut file = Vec::new();
            bytes += context.write(&mut file, usize::MAX)?;
            files.push(file);
        }
        Ok((Output::Heif(files), bytes, Instant::now()))
    })
}

/// Decodes `encoded` and compares each picture with its source, in order.
fn decode_and_compare(encoded: &Encoded, source: &[&Frame]) -> Result<Sequence, BoxError> {
    let mut quality = Sequence::default();
    let mut next = 0usize;
    let mut compare = |planes: [Plane<'_>; 3]| -> Result<(), BoxError> {
        let Some(src) = source.get(next) else {
            return Err(format!(
                "decoded more pictures than the {} encoded (expected {0})",
                source.len()
            )
            .into());
        };
        quality.add(Plane::of_frame(src), planes)?;
        next += 1;
        Ok(())
    };
    match &encoded.output {
        Output::Heif(files) => {
            for file in files {
                let image = ffi::heif::decode_primary(file)?;
                let plane = |i| -> Result<Plane<'_>, BoxError> {
                    let (data, stride, w, h) =
                        image.plane(i).ok_or("a decoded HEIF image lacks a plane")?;
                    Ok(Plane::new(data, stride, w, h)?)
                };
                compare([plane(0)?, plane(1)?, plane(2)?])?;
            }
        }
        Output::X264(units) => {
            let packets = units.iter().map(|u| ffmpeg::Packet::copy(u)).collect();
            let codec =
                ffmpeg::decoder::find_by_name("h264").ok_or("FFmpeg has no h264 decoder")?;
            let decoder = ffmpeg::codec::context::Context::new_with_codec(codec);
            ffmpeg_decode(decoder, codec, &packets, &mut compare)?;
        }
        Output::Ffmpeg(packets, parameters) => {
            let id = parameters.id();
            // AV1: FFmpeg 5.1's native decoder needs a hardware accelerator.
            let codec = if id == ffmpeg::codec::Id::AV1 {
                ["libdav1d", "libaom-av1"]
                    .into_iter()
                    .find_map(ffmpeg::decoder::find_by_name)
            } else {
                ffmpeg::decoder::find(id)
            }
            .ok_or_else(|| format!("FFmpeg has no decoder for {id:?}"))?;
            let mut decoder = ffmpeg::codec::context::Context::new_with_codec(codec);
            decoder.set_parameters(parameters.clone())?;
            ffmpeg_decode(decoder, codec, packets, &mut compare)?;
        }
    }
    if next != source.len() {
        return Err(format!(
            "decoded {next} pictures of the {} encoded (expected every one back)",
            source.len()
        )
        .into());
    }
    Ok(quality)
}

fn ffmpeg_decode(
    context: ffmpeg::codec::context::Context,
    codec: ffmpeg::Codec,
    packets: &Vec<ffmpeg::Packet>,
    compare: &mut dyn FnMut([Plane<'_>; 3]) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let mut decoder = context.decoder().open_as(codec)?.video()?;
    let mut picture = ffmpeg::frame::Video::empty();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video| -> Result<(), BoxError> {
        loop {
            match decoder.receive_frame(&mut picture) {
                Ok(()) => {
                    if picture.format() != ffmpeg::format::Pixel::YUV420P {
                        return Err(format!(
                            "decoded {:?} pictures (expected YUV420P)",
                            picture.format()
                        )
                        .into());
                    }
                    let (w, h) = (picture.width() as usize, picture.height() as usize);
                    let plane = |i: usize, w: usize, h: usize| {
                        Plane::new(picture.data(i), picture.stride(i), w, h)
                    };
                    compare([
                        plane(0, w, h)?,
                        plane(1, w / 2, h / 2)?,
                        plane(2, w / 2, h / 2)?,
                    ])?;
                }
                Err(ffmpeg::Error::Other {
                    errno: libc::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    for packet in packets {
        decoder.send_packet(packet)?;
        receive(&mut decoder)?;
    }
    decoder.send_eof()?;
    receive(&mut decoder)
}

/// The encode workloads `cargo xtask overhead` times with the heap hooks off, counting and
/// sampling: x264 direct, FFmpeg's libx264 (few allocations per frame) and FFmpeg's
/// mpeg4 (fast, with dozens of allocations per frame: where hooks cost most).
pub const OVERHEAD_WORKLOADS: [&str; 3] = ["x264", "ffmpeg-libx264", "ffmpeg-mpeg4"];

/// One timed encode of an overhead workload.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    /// Seconds from opening the encoder to its last output.
    pub seconds: f64,
    /// Frames encoded.
    pub frames: u32,
    /// Allocations per frame (0 without the hooks).
    pub allocs_per_frame: f64,
}

/// Encodes `frames` frames of 640×480 at 1000 kbit/s with the workload `name` and times it.
pub fn overhead_workload(name: &str, frames: u32) -> Result<Timing, BoxError> {
    let backend = match name {
        "x264" => Backend::X264Direct,
        "ffmpeg-libx264" => Backend::Ffmpeg("libx264"),
        "ffmpeg-mpeg4" => Backend::Ffmpeg("mpeg4"),
        _ => {
            return Err(format!(
                "unknown workload {name:?} (expected one of: {})",
                OVERHEAD_WORKLOADS.join(", ")
            )
            .into())
        }
    };
    if frames == 0 {
        return Err("invalid frame count 0 (expected at least 1)".into());
    }
    let setup = Setup {
        width: 640,
        height: 480,
        fps_num: 30,
        fps_den: 1,
        frames,
        source: SOURCE.to_owned(),
        input: None,
        bitrates_kbps: vec![1000],
        reference_kbps: 1000,
        still_qualities: Vec::new(),
        reference_quality: 0,
        stills: 0,
        rules: Vec::new(),
        rate_control: RateControl::Bitrate,
        threads: None,
        configs: Vec::new(),
    };
    let source = source_frames(&setup)?;
    let encoded = encode_video(backend, &source, &setup, 1000, &[])?;
    Ok(Timing {
        seconds: encoded.seconds,
        frames,
        allocs_per_frame: encoded.heap.allocs as f64 / f64::from(frames),
    })
}
