//! A video pipeline of its own, soaked with avsoak: FFmpeg decodes a clip (made once, in
//! code, with FFmpeg's MPEG-4 encoder) and a thumbnail cache keeps a tiny picture of
//! every decoded frame. Two correct variants and two leaky controls, one leak in C memory
//! (a packet never unreferenced) and one in Rust memory (a cache that never evicts).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use avsoak::{BoxError, Case, Expect, Scenario, Work, Workload};
use ffmpeg_next as ffmpeg;

/// Frames in the clip: one iteration decodes all of them.
pub const CLIP_FRAMES: usize = 25;
/// The clip's size.
pub const CLIP_SIZE: (u32, u32) = (160, 120);
/// Thumbnails kept by the bounded cache.
pub const CACHE_ENTRIES: usize = 64;

/// Extra blocks the clean decode allocates (and frees) per frame when this variable is
/// set: how the tests plant a regression the gate must catch.
pub const EXTRA_ALLOCS_ENV: &str = "OWN_PIPELINE_EXTRA_ALLOCS";

/// How a variant handles packets and thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every packet unreferenced after it is sent; no cache.
    Clean,
    /// The control: every packet forgotten after it is sent (`av_packet_unref` never
    /// runs).
    ForgetPacketUnref,
    /// Thumbnails in a cache of [`CACHE_ENTRIES`], the oldest evicted.
    ThumbnailLru,
    /// The control: thumbnails in a cache that never evicts.
    ThumbnailCacheNeverEvicts,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 4] = [
        Mode::Clean,
        Mode::ForgetPacketUnref,
        Mode::ThumbnailLru,
        Mode::ThumbnailCacheNeverEvicts,
    ];

    /// The variant's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Clean => "clean",
            Mode::ForgetPacketUnref => "forget-packet-unref",
            Mode::ThumbnailLru => "thumbnail-lru",
            Mode::ThumbnailCacheNeverEvicts => "thumbnail-cache-never-evicts",
        }
    }

    fn expect(self) -> Expect {
        match self {
            Mode::Clean | Mode::ThumbnailLru => Expect::Clean,
            Mode::ForgetPacketUnref | Mode::ThumbnailCacheNeverEvicts => Expect::Leak,
        }
    }

    fn about(self) -> &'static str {
        match self {
            Mode::Clean => "decode the clip, each packet unreferenced after it is sent",
            Mode::ForgetPacketUnref => "the same, but every packet is forgotten",
            Mode::ThumbnailLru => "decode and keep thumbnails in a bounded cache",
            Mode::ThumbnailCacheNeverEvicts => "decode and keep every thumbnail forever",
        }
    }
}

/// The scenario: one iteration opens the clip, decodes every frame and closes it.
#[derive(Debug)]
pub struct Decoding;

impl Scenario for Decoding {
    fn name(&self) -> &'static str {
        "own-decoder"
    }

    fn about(&self) -> &'static str {
        "an FFmpeg decode loop and a thumbnail cache of this crate's own"
    }

    fn cases(&self) -> Vec<Case> {
        Mode::ALL
            .iter()
            .map(|&mode| {
                // Packets of this small clip are ~1 KB: denser sampling names them.
                let interval = (mode == Mode::ForgetPacketUnref).then_some(16 << 10);
                Case::new(self.name(), mode.name(), mode.expect(), mode.about())
                    .with_sample_interval(interval)
            })
            .collect()
    }

    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError> {
        let mode = Mode::ALL
            .into_iter()
            .find(|m| m.name() == case.variant)
            .ok_or_else(|| format!("unknown variant {:?}", case.variant))?;
        Ok(Box::new(Pipeline::new(mode)?))
    }
}

/// The pipeline under soak: a clip on disk, a decoder per pass, a thumbnail cache.
#[derive(Debug)]
pub struct Pipeline {
    mode: Mode,
    clip: Clip,
    cache: Thumbnails,
    extra_allocs: usize,
}

impl Pipeline {
    /// Makes the clip and an empty cache.
    pub fn new(mode: Mode) -> Result<Pipeline, BoxError> {
        ffmpeg::init()?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        let extra_allocs = match std::env::var(EXTRA_ALLOCS_ENV) {
            Ok(text) => text.parse().map_err(|_| {
                format!("invalid {EXTRA_ALLOCS_ENV} {text:?} (expected a number of blocks)")
            })?,
            Err(_) => 0,
        };
        Ok(Pipeline {
            mode,
            clip: Clip::make(CLIP_FRAMES, CLIP_SIZE)?,
            cache: Thumbnails::new(match mode {
                Mode::ThumbnailCacheNeverEvicts => None,
                _ => Some(CACHE_ENTRIES),
            }),
            extra_allocs,
        })
    }
}

impl Workload for Pipeline {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        let forget = self.mode == Mode::ForgetPacketUnref;
        let keep = matches!(
            self.mode,
            Mode::ThumbnailLru | Mode::ThumbnailCacheNeverEvicts
        );
        let extra = self.extra_allocs;
        let cache = &mut self.cache;
        let frames = decode_clip(self.clip.path(), forget, |frame| {
            for _ in 0..extra {
                std::hint::black_box(vec![0u8; 64]);
            }
            if keep {
                cache.insert(frame);
            }
        })?;
        Ok(Work { frames, bytes: 0 })
    }
}

/// Decodes every video frame of `path`, handing each to `on_frame`; with `forget`, every
/// packet is leaked after it is sent (the control's mistake). Returns the frames decoded.
pub fn decode_clip(
    path: &Path,
    forget: bool,
    mut on_frame: impl FnMut(&ffmpeg::frame::Video),
) -> Result<u64, ffmpeg::Error> {
    let mut input = ffmpeg::format::input(&path)?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or(ffmpeg::Error::StreamNotFound)?;
    let index = stream.index();
    let mut decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())?
        .decoder()
        .video()?;
    let mut frame = ffmpeg::frame::Video::empty();
    let mut frames = 0;
    for (stream, packet) in input.packets() {
        if stream.index() != index {
            continue;
        }
        decoder.send_packet(&packet)?;
        if forget {
            std::mem::forget(packet);
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            on_frame(&frame);
            frames += 1;
        }
    }
    decoder.send_eof()?;
    while decoder.receive_frame(&mut frame).is_ok() {
        on_frame(&frame);
        frames += 1;
    }
    Ok(frames)
}

/// A thumbnail of every frame (its luma, one sample in 8 each way), by frame number;
/// with a bound, the oldest go first.
#[derive(Debug)]
pub struct Thumbnails {
    bound: Option<usize>,
    next: u64,
    order: VecDeque<u64>,
    pictures: HashMap<u64, Vec<u8>>,
}

impl Thumbnails {
    /// An empty cache keeping at most `bound` thumbnails (`None`: all of them).
    pub fn new(bound: Option<usize>) -> Thumbnails {
        Thumbnails {
            bound,
            next: 0,
            order: VecDeque::new(),
            pictures: HashMap::new(),
        }
    }

    /// Keeps a thumbnail of `frame`.
    pub fn insert(&mut self, frame: &ffmpeg::frame::Video) {
        let (w, h, stride) = (
            frame.width() as usize,
            frame.height() as usize,
            frame.stride(0),
        );
        let luma = frame.data(0);
        let thumb: Vec<u8> = (0..h)
            .step_by(8)
            .flat_map(|y| (0..w).step_by(8).map(move |x| luma[y * stride + x]))
            .collect();
        self.pictures.insert(self.next, thumb);
        self.order.push_back(self.next);
        self.next += 1;
        if let Some(bound) = self.bound {
            while self.order.len() > bound {
                let oldest = self.order.pop_front().expect("longer than the bound");
                self.pictures.remove(&oldest);
            }
        }
    }

    /// Thumbnails held.
    pub fn len(&self) -> usize {
        self.pictures.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.pictures.is_empty()
    }
}

/// A clip made with FFmpeg's MPEG-4 encoder in a folder of its own, removed on drop.
#[derive(Debug)]
pub struct Clip {
    dir: PathBuf,
    path: PathBuf,
}

impl Clip {
    /// Encodes `frames` frames of a moving gradient at `size` into Matroska.
    pub fn make(frames: usize, size: (u32, u32)) -> Result<Clip, ffmpeg::Error> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "own-pipeline-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| ffmpeg::Error::Other {
            errno: e.raw_os_error().unwrap_or(libc_eio()),
        })?;
        let clip = Clip {
            path: dir.join("clip.mkv"),
            dir,
        };
        encode(&clip.path, frames, size)?;
        Ok(clip)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Clip {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn libc_eio() -> i32 {
    5
}

fn encode(path: &Path, frames: usize, (width, height): (u32, u32)) -> Result<(), ffmpeg::Error> {
    use ffmpeg::format::Pixel;
    let mut output = ffmpeg::format::output(&path)?;
    let codec =
        ffmpeg::encoder::find(ffmpeg::codec::Id::MPEG4).ok_or(ffmpeg::Error::EncoderNotFound)?;
    let global = output
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
    let mut stream = output.add_stream(codec)?;
    let mut setup = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    setup.set_width(width);
    setup.set_height(height);
    setup.set_format(Pixel::YUV420P);
    setup.set_time_base((1, 25));
    setup.set_frame_rate(Some((25, 1)));
    setup.set_gop(10);
    if global {
        setup.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
    }
    let mut encoder = setup.open_as(codec)?;
    stream.set_parameters(&encoder);
    stream.set_time_base((1, 25));
    output.write_header()?;
    let time_base = output.stream(0).expect("one stream").time_base();
    let mut frame = ffmpeg::frame::Video::new(Pixel::YUV420P, width, height);
    for i in 0..frames {
        for plane in 0..3 {
            let stride = frame.stride(plane);
            let rows = if plane == 0 { height } else { height / 2 } as usize;
            let data = frame.data_mut(plane);
            for y in 0..rows {
                for x in 0..stride {
                    data[y * stride + x] = (x + y + 3 * i + 40 * plane) as u8;
                }
            }
        }
        frame.set_pts(Some(i as i64));
        encoder.send_frame(&frame)?;
        write_packets(&mut encoder, &mut output, time_base)?;
    }
    encoder.send_eof()?;
    write_packets(&mut encoder, &mut output, time_base)?;
    output.write_trailer()
}

fn write_packets(
    encoder: &mut ffmpeg::encoder::Video,
    output: &mut ffmpeg::format::context::Output,
    time_base: ffmpeg::Rational,
) -> Result<(), ffmpeg::Error> {
    let mut packet = ffmpeg::Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        packet.set_stream(0);
        packet.rescale_ts((1, 25), time_base);
        packet.write_interleaved(output)?;
    }
    Ok(())
}
