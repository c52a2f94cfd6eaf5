//! Media fixtures made in code: the synthetic camera, encoded by x264, muxed through
//! [`crate::ffi::avio`] into MP4, fragmented MP4, MPEG-TS or Matroska. Muxed files are cached
//! under `target/avsoak-media/` (or `$AVSOAK_MEDIA_DIR`), never committed.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use avsoak_fixtures::{Camera, CameraConfig, Frame, Pattern};
use ffmpeg_next as ffmpeg;

use crate::ffi;
use crate::ffi::avio::{Avio, AvioError, Muxer, VideoStreamSpec, FRAGMENTED_MOVFLAGS};
use crate::ffi::x264::{EncoderConfig, X264Error};

/// A failure making a fixture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The camera refused the clip's settings.
    #[error("camera: {0}")]
    Camera(#[from] avsoak_fixtures::FixtureError),
    /// The encoder failed.
    #[error("x264: {0}")]
    Encode(#[from] X264Error),
    /// Muxing failed.
    #[error("muxing {container}: {source}")]
    Mux {
        /// The container.
        container: Container,
        /// The cause.
        #[source]
        source: AvioError,
    },
    /// The cache could not be read or written.
    #[error("fixture cache {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A clip the encoder cannot stamp exactly.
    #[error("invalid clip {clip:?}: {problem}")]
    Clip {
        /// The clip.
        clip: Clip,
        /// What is wrong.
        problem: &'static str,
    },
}

/// A container the fixtures come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// MP4 with the `moov` at the end (the muxer seeks back to patch it).
    Mp4,
    /// Fragmented MP4 (`movflags=frag_keyframe+empty_moov+default_base_moof`).
    Fmp4,
    /// MPEG transport stream.
    MpegTs,
    /// Matroska.
    Matroska,
}

impl Container {
    /// Every container, in report order.
    pub const ALL: [Container; 4] = [
        Container::Mp4,
        Container::Fmp4,
        Container::MpegTs,
        Container::Matroska,
    ];

    /// The name used in case parameters.
    pub fn name(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Fmp4 => "fmp4",
            Container::MpegTs => "mpegts",
            Container::Matroska => "matroska",
        }
    }

    /// FFmpeg's muxer name.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 | Container::Fmp4 => "mp4",
            Container::MpegTs => "mpegts",
            Container::Matroska => "matroska",
        }
    }

    /// Muxer options.
    pub fn options(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Container::Fmp4 => &[("movflags", FRAGMENTED_MOVFLAGS)],
            _ => &[],
        }
    }

    /// File extension of the cached fixture.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Fmp4 => "frag.mp4",
            Container::MpegTs => "ts",
            Container::Matroska => "mkv",
        }
    }

    /// Whether a demuxer can read it without a seek callback.
    pub fn streamable(self) -> bool {
        !matches!(self, Container::Mp4)
    }
}

impl std::fmt::Display for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a fixture clip holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Clip {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second (timestamps count frames: time base 1/fps).
    pub fps: u32,
    /// Frames.
    pub frames: u64,
    /// GOP length (one keyframe every `keyint` frames).
    pub keyint: u32,
}

impl Clip {
    /// The clip the `avio-memory` and `fmp4-mux` scenarios use: 2 s of 320×240 at 25 fps,
    /// two GOPs.
    pub const STANDARD: Clip = Clip {
        width: 320,
        height: 240,
        fps: 25,
        frames: 50,
        keyint: 25,
    };

    /// A file-name-safe description.
    pub fn name(&self) -> String {
        format!(
            "{}x{}-{}fps-{}f-gop{}",
            self.width, self.height, self.fps, self.frames, self.keyint
        )
    }

    /// The H.264 stream description for a muxer, with these codec headers.
    pub fn stream_spec(&self, extradata: Vec<u8>) -> VideoStreamSpec {
        VideoStreamSpec {
            codec: ffmpeg::codec::Id::H264,
            width: self.width,
            height: self.height,
            time_base: self.time_base(),
            frame_rate: ffmpeg::Rational::new(self.fps as i32, 1),
            extradata,
        }
    }

    /// The time base of the packets: one tick per frame.
    pub fn time_base(&self) -> ffmpeg::Rational {
        ffmpeg::Rational::new(1, self.fps as i32)
    }
}

/// One encoded frame; timestamps count frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    /// Annex B bytes.
    pub data: Vec<u8>,
    /// Presentation timestamp (frames).
    pub pts: i64,
    /// Decoding timestamp (frames).
    pub dts: i64,
    /// Keyframe.
    pub key: bool,
}

/// A clip encoded to H.264, with its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedClip {
    /// What it holds.
    pub clip: Clip,
    /// SPS/PPS (Annex B), also repeated in-band on keyframes.
    pub extradata: Vec<u8>,
    /// Every frame, in decoding order.
    pub packets: Vec<EncodedPacket>,
}

impl EncodedClip {
    /// The stream description for a muxer.
    pub fn stream_spec(&self) -> VideoStreamSpec {
        self.clip.stream_spec(self.extradata.clone())
    }
}

/// The live H.264 encoder the fixtures and the fMP4 stream use: x264 `veryfast` /
/// `zerolatency` (no B-frames, so decode order is presentation order).
pub struct LiveEncoder {
    clip: Clip,
    camera: Camera,
    frame: Frame,
    encoder: x264::Encoder,
    extradata: Vec<u8>,
}

impl std::fmt::Debug for LiveEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEncoder")
            .field("clip", &self.clip)
            .field("frames_in", &self.camera.position())
            .finish_non_exhaustive()
    }
}

impl LiveEncoder {
    /// Opens camera and encoder for `clip` (gradient with the beauty pass; `frames` is
    /// not a limit here).
    pub fn new(clip: Clip) -> Result<Self, MediaError> {
        if clip.fps == 0 || 1_000_000 % clip.fps != 0 || clip.keyint == 0 {
            return Err(MediaError::Clip {
                clip,
                problem: "fps must divide 1,000,000 (exact microsecond timestamps) and keyint \
                          must be positive",
            });
        }
        let camera = Camera::new(
            CameraConfig::new(clip.width, clip.height)
                .fps(clip.fps, 1)
                .pattern(Pattern::Gradient)
                .beauty(true),
        )?;
        let mut config = EncoderConfig::live(clip.width, clip.height, clip.fps, 1);
        config.keyint = clip.keyint as i32;
        let mut encoder = ffi::x264::open_encoder(&config)?;
        let extradata = encoder
            .headers()
            .map_err(|_| X264Error::Encode { frame: 0 })?
            .entirety()
            .to_vec();
        Ok(LiveEncoder {
            clip,
            camera,
            frame: Frame::empty(),
            encoder,
            extradata,
        })
    }

    /// SPS/PPS in Annex B.
    pub fn extradata(&self) -> &[u8] {
        &self.extradata
    }

    /// Encodes the camera's next frame and hands what came out to `out` (nothing while
    /// x264 holds the frame); returns whether a packet came out.
    pub fn encode_next<E: From<MediaError>>(
        &mut self,
        out: impl FnOnce(PacketRef<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        self.camera.next_into(&mut self.frame);
        let index = self.frame.index();
        let us_per_frame = i64::from(1_000_000 / self.clip.fps);
        let (data, picture) = self
            .encoder
            .encode(
                index as i64 * us_per_frame,
                ffi::x264::borrowed_image(&self.frame),
            )
            .map_err(|_| MediaError::from(X264Error::Encode { frame: index }))?;
        let data = data.entirety();
        if data.is_empty() {
            return Ok(false);
        }
        out(PacketRef {
            data,
            pts: picture.pts() / us_per_frame,
            dts: picture.dts() / us_per_frame,
            key: picture.keyframe(),
        })?;
        Ok(true)
    }
}

/// A packet borrowed from the encoder; timestamps count frames.
#[derive(Debug, Clone, Copy)]
pub struct PacketRef<'a> {
    /// Annex B bytes.
    pub data: &'a [u8],
    /// Presentation timestamp.
    pub pts: i64,
    /// Decoding timestamp.
    pub dts: i64,
    /// Keyframe.
    pub key: bool,
}

impl PacketRef<'_> {
    fn to_owned(self) -> EncodedPacket {
        EncodedPacket {
            data: self.data.to_vec(),
            pts: self.pts,
            dts: self.dts,
            key: self.key,
        }
    }
}

/// Encodes `clip` from the camera.
pub fn encode_clip(clip: Clip) -> Result<EncodedClip, MediaError> {
    let mut encoder = LiveEncoder::new(clip)?;
    let mut packets = Vec::with_capacity(clip.frames as usize);
    for _ in 0..clip.frames {
        encoder.encode_next(|packet| {
            packets.push(packet.to_owned());
            Ok::<_, MediaError>(())
        })?;
    }
    let LiveEncoder {
        encoder, extradata, ..
    } = encoder;
    let us_per_frame = i64::from(1_000_000 / clip.fps);
    let mut flush = encoder.flush();
    while let Some(result) = flush.next() {
        let (data, picture) = result.map_err(|_| X264Error::Encode { frame: clip.frames })?;
        packets.push(EncodedPacket {
            data: data.entirety().to_vec(),
            pts: picture.pts() / us_per_frame,
            dts: picture.dts() / us_per_frame,
            key: picture.keyframe(),
        });
    }
    Ok(EncodedClip {
        clip,
        extradata,
        packets,
    })
}

/// Writes every packet of `clip` to `muxer` (header first, trailer not).
pub fn write_clip<W>(
    muxer: &mut Muxer<W>,
    clip: &EncodedClip,
    options: &[(&str, &str)],
) -> Result<(), AvioError> {
    write_clips(muxer, &[clip], options)
}

/// Writes `clips` to `muxer` as one stream each, in this order (header first, trailer
/// not), handing packets over in decoding order across the streams.
pub fn write_clips<W>(
    muxer: &mut Muxer<W>,
    clips: &[&EncodedClip],
    options: &[(&str, &str)],
) -> Result<(), AvioError> {
    let mut streams = Vec::with_capacity(clips.len());
    for clip in clips {
        streams.push(muxer.add_video_stream(&clip.stream_spec())?);
    }
    muxer.write_header(options)?;
    let mut next = vec![0; clips.len()];
    // The stream whose next packet decodes first, in seconds (time bases differ).
    let earliest = |next: &[usize]| {
        (0..clips.len())
            .filter_map(|s| {
                let p = clips[s].packets.get(next[s])?;
                Some((p.dts as f64 / f64::from(clips[s].clip.fps), s))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, s)| s)
    };
    while let Some(s) = earliest(&next) {
        let p = &clips[s].packets[next[s]];
        muxer.write(streams[s], &p.data, p.pts, p.dts, p.key)?;
        next[s] += 1;
    }
    Ok(())
}

/// Muxes `clips` into `container` in memory, one stream each, with a seekable writer.
pub fn mux(
    clips: &[&EncodedClip],
    container: Container,
    buffer: usize,
) -> Result<Vec<u8>, MediaError> {
    let mux_err = |source| MediaError::Mux { container, source };
    let io = Avio::seekable_writer(Cursor::new(Vec::new()), buffer).map_err(mux_err)?;
    let mut muxer = Muxer::new(io, container.muxer()).map_err(mux_err)?;
    write_clips(&mut muxer, clips, container.options()).map_err(mux_err)?;
    Ok(muxer.finish().map_err(mux_err)?.into_inner())
}

pub use crate::ffi::init;

/// Where fixtures are cached.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("AVSOAK_MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/avsoak-media"
            ))
        })
}

/// The fixture `clip` in `container`, from the cache or made now (and cached). The file
/// name carries the clip, the x264 build and the libavformat version, so a library
/// upgrade makes a new file.
pub fn fixture(clip: Clip, container: Container) -> Result<Arc<[u8]>, MediaError> {
    fixture_streams(&[clip], container)
}

/// Like [`fixture`], with one video stream per clip (renditions of the same camera),
/// in this order.
pub fn fixture_streams(clips: &[Clip], container: Container) -> Result<Arc<[u8]>, MediaError> {
    let path = cached_path(clips, container);
    let cache = |source| MediaError::Cache {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) if !bytes.is_empty() => return Ok(bytes.into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(cache(e)),
    }
    let encoded = clips
        .iter()
        .map(|&clip| encode_clip(clip))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&EncodedClip> = encoded.iter().collect();
    let bytes = mux(&refs, container, 32 * 1024)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cache)?;
    }
    // Written aside and renamed, so concurrent test processes never read half a file.
    let partial = path.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, &bytes).map_err(cache)?;
    std::fs::rename(&partial, &path).map_err(cache)?;
    Ok(bytes.into())
}

/// Where a fixture [`fixture_streams`] made lives on disk (made now if it is not cached),
/// for readers that open a file.
pub fn fixture_path(clips: &[Clip], container: Container) -> Result<PathBuf, MediaError> {
    let path = cached_path(clips, container);
    // Files appear whole (written aside, then renamed): a non-empty one is complete, as
    // `fixture_streams` judges it too.
    if !path.metadata().is_ok_and(|m| m.len() > 0) {
        fixture_streams(clips, container)?;
    }
    Ok(path)
}

fn cached_path(clips: &[Clip], container: Container) -> PathBuf {
    // SAFETY: returns a constant.
    let lavf = unsafe { ffmpeg::ffi::avformat_version() };
    let names: Vec<String> = clips.iter().map(Clip::name).collect();
    cache_dir().join(format!(
        "{}-x264.{}-lavf.{}.{}",
        names.join("+"),
        ffi::x264::build(),
        lavf,
        container.extension()
    ))
}
