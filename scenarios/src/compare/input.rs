//! The user's own content for `compare --input FILE`: a y4m clip, or anything FFmpeg can
//! demux and decode, read once into I420 frames (scaled when a size is asked for) that
//! every backend then encodes, as it would the camera's.

use std::path::Path;

use avsoak_fixtures::{y4m, Frame};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

/// Where the frames came from, as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSource {
    /// The file, as given.
    pub path: String,
    /// `y4m`, or the FFmpeg demuxer and decoder (`mov,mp4,… / h264`).
    pub format: String,
    /// Its own frame width.
    pub width: u32,
    /// Its own frame height.
    pub height: u32,
    /// Its frame rate, `num/den`.
    pub fps_num: u32,
    /// Denominator of the frame rate.
    pub fps_den: u32,
    /// Frames taken from it (at most the setup's frame count).
    pub frames: u32,
    /// FNV-1a 64 of every I420 byte handed to the encoders, in hex: the same number means
    /// the same pictures.
    pub checksum: String,
}

impl InputSource {
    /// `clip.y4m (y4m, 352x288 at 30/1 fps, 60 frames, fnv64 0123…)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {}x{} at {}/{} fps, {} frames, fnv64 {})",
            self.path,
            self.format,
            self.width,
            self.height,
            self.fps_num,
            self.fps_den,
            self.frames,
            self.checksum
        )
    }
}

/// FNV-1a 64 over the frames' bytes, in hex.
pub fn checksum(frames: &[Frame]) -> String {
    let hash = frames
        .iter()
        .flat_map(|f| f.data().iter())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// Reads at most `max_frames` frames of `path` as I420, scaled to `size` when given
/// (else its own size, which must then be even). The error names the file and what is
/// wrong with it.
pub fn load(
    path: &Path,
    size: Option<(u32, u32)>,
    max_frames: u32,
) -> Result<(InputSource, Vec<Frame>), String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path)
        .map_err(|e| format!("invalid --input {shown} (cannot read it: {e})"))?;
    if !metadata.is_file() {
        return Err(format!("invalid --input {shown} (expected a file)"));
    }
    let mut head = [0u8; 9];
    let is_y4m = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"YUV4MPEG2";
    let (format, native, fps, frames) = if is_y4m {
        let file =
            std::fs::File::open(path).map_err(|e| format!("invalid --input {shown}: {e}"))?;
        let clip = y4m::read(
            &mut std::io::BufReader::new(file),
            Some(max_frames as usize),
        )
        .map_err(|e| format!("invalid --input {shown}: {e}"))?;
        (
            "y4m".to_owned(),
            (clip.width, clip.height),
            clip.fps,
            clip.frames,
        )
    } else {
        decode(path, max_frames).map_err(|e| format!("invalid --input {shown} ({e})"))?
    };
    if frames.is_empty() {
        return Err(format!("invalid --input {shown} (it holds no video frame)"));
    }
    let (width, height) = size.unwrap_or(native);
    if size.is_none() && (width % 2 == 1 || height % 2 == 1) {
        return Err(format!(
            "invalid --input {shown} (its {width}x{height} frames are odd-sized: give an even \
             --size to scale them to)"
        ));
    }
    let frames = if (width, height) == native {
        frames
    } else {
        frames
            .iter()
            .map(|f| scale(f, width, height))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("invalid --input {shown} (scaling to {width}x{height}: {e})"))?
    };
    let source = InputSource {
        path: shown.to_string(),
        format,
        width: native.0,
        height: native.1,
        fps_num: fps.0,
        fps_den: fps.1,
        frames: frames.len() as u32,
        checksum: checksum(&frames),
    };
    Ok((source, frames))
}

type Decoded = (String, (u32, u32), (u32, u32), Vec<Frame>);

/// Demuxes and decodes the best video stream of `path` into I420 frames at its own size.
fn decode(path: &Path, max_frames: u32) -> Result<Decoded, String> {
    crate::media::init().map_err(|e| e.to_string())?;
    let mut input =
        ffmpeg::format::input(path).map_err(|e| format!("FFmpeg cannot open it: {e}"))?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or("it has no video stream")?;
    let index = stream.index();
    let rate = stream.avg_frame_rate();
    let fps = if rate.numerator() > 0 && rate.denominator() > 0 {
        (rate.numerator() as u32, rate.denominator() as u32)
    } else {
        (30, 1)
    };
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| e.to_string())?;
    let mut decoder = context
        .decoder()
        .video()
        .map_err(|e| format!("FFmpeg cannot decode its video: {e}"))?;
    let format = format!(
        "{} / {}",
        input.format().name(),
        decoder.codec().map_or("?".into(), |c| c.name().to_owned())
    );
    let (width, height) = (decoder.width(), decoder.height());
    let mut frames = Vec::new();
    let mut picture = ffmpeg::frame::Video::empty();
    let mut scaler: Option<ffmpeg::software::scaling::Context> = None;
    let mut take = |decoder: &mut ffmpeg::decoder::Video,
                    frames: &mut Vec<Frame>|
     -> Result<(), String> {
        while frames.len() < max_frames as usize && decoder.receive_frame(&mut picture).is_ok() {
            frames.push(to_i420(&picture, &mut scaler, frames.len(), fps)?);
        }
        Ok(())
    };
    for (stream, packet) in input.packets() {
        if stream.index() != index {
            continue;
        }
        if frames.len() >= max_frames as usize {
            break;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| format!("FFmpeg cannot decode its video: {e}"))?;
        take(&mut decoder, &mut frames)?;
    }
    let _ = decoder.send_eof();
    take(&mut decoder, &mut frames)?;
    Ok((format, (width, height), fps, frames))
}

/// A decoded picture as a tightly packed I420 frame at its own size, converted from its
/// pixel format when it is not 8-bit 4:2:0.
fn to_i420(
    picture: &ffmpeg::frame::Video,
    scaler: &mut Option<ffmpeg::software::scaling::Context>,
    index: usize,
    fps: (u32, u32),
) -> Result<Frame, String> {
    let (w, h) = (picture.width(), picture.height());
    let converted;
    let yuv = if picture.format() == ffmpeg::format::Pixel::YUV420P {
        picture
    } else {
        let context = match scaler {
            Some(context) => context,
            None => scaler.insert(
                ffmpeg::software::scaling::Context::get(
                    picture.format(),
                    w,
                    h,
                    ffmpeg::format::Pixel::YUV420P,
                    w,
                    h,
                    ffmpeg::software::scaling::Flags::BICUBIC,
                )
                .map_err(|e| format!("cannot convert {:?} to I420: {e}", picture.format()))?,
            ),
        };
        let mut out = ffmpeg::frame::Video::empty();
        context.run(picture, &mut out).map_err(|e| e.to_string())?;
        converted = out;
        &converted
    };
    // Odd sizes are kept whole here; `load` scales them or refuses.
    let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
    let mut data = Vec::with_capacity(w as usize * h as usize + 2 * cw * ch);
    for (plane, pw, ph) in [(0, w as usize, h as usize), (1, cw, ch), (2, cw, ch)] {
        let stride = yuv.stride(plane);
        for row in yuv.data(plane).chunks(stride).take(ph) {
            data.extend_from_slice(&row[..pw]);
        }
    }
    let pts_us = y4m::pts_us(index as u64, fps);
    if w % 2 == 1 || h % 2 == 1 {
        // Stored at the even size below it: the caller scales it from there.
        return crop_even(w, h, index, pts_us, &data);
    }
    Frame::from_i420(w, h, index as u64, pts_us, data).ok_or_else(|| "bad frame size".into())
}

/// An odd-sized I420 picture cropped to the even size below it.
fn crop_even(w: u32, h: u32, index: usize, pts_us: i64, data: &[u8]) -> Result<Frame, String> {
    let (ew, eh) = (w & !1, h & !1);
    if ew == 0 || eh == 0 {
        return Err(format!("a {w}x{h} picture is too small"));
    }
    let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
    let y_len = w as usize * h as usize;
    let mut out = Vec::with_capacity(ew as usize * eh as usize * 3 / 2);
    for row in data[..y_len].chunks(w as usize).take(eh as usize) {
        out.extend_from_slice(&row[..ew as usize]);
    }
    for plane in 0..2 {
        let start = y_len + plane * cw * ch;
        for row in data[start..start + cw * ch]
            .chunks(cw)
            .take(eh as usize / 2)
        {
            out.extend_from_slice(&row[..ew as usize / 2]);
        }
    }
    Frame::from_i420(ew, eh, index as u64, pts_us, out).ok_or_else(|| "bad frame size".into())
}

/// `frame` scaled to `width`×`height` (bicubic).
fn scale(frame: &Frame, width: u32, height: u32) -> Result<Frame, String> {
    use ffmpeg::format::Pixel;
    let (w, h) = (frame.width(), frame.height());
    let mut source = ffmpeg::frame::Video::new(Pixel::YUV420P, w, h);
    for plane in 0..3 {
        let stride = source.stride(plane);
        let (pw, rows) = if plane == 0 {
            (w as usize, h as usize)
        } else {
            (w as usize / 2, h as usize / 2)
        };
        let bytes = frame.plane(plane);
        for (row, dest) in bytes
            .chunks(pw)
            .zip(source.data_mut(plane).chunks_mut(stride))
            .take(rows)
        {
            dest[..pw].copy_from_slice(row);
        }
    }
    let mut context = ffmpeg::software::scaling::Context::get(
        Pixel::YUV420P,
        w,
        h,
        Pixel::YUV420P,
        width,
        height,
        ffmpeg::software::scaling::Flags::BICUBIC,
    )
    .map_err(|e| e.to_string())?;
    let mut out = ffmpeg::frame::Video::empty();
    context.run(&source, &mut out).map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(width as usize * height as usize * 3 / 2);
    for (plane, pw, ph) in [
        (0, width as usize, height as usize),
        (1, width as usize / 2, height as usize / 2),
        (2, width as usize / 2, height as usize / 2),
    ] {
        let stride = out.stride(plane);
        for row in out.data(plane).chunks(stride).take(ph) {
            data.extend_from_slice(&row[..pw]);
        }
    }
    Frame::from_i420(width, height, frame.index(), frame.pts_us(), data)
        .ok_or_else(|| format!("cannot scale to {width}x{height} (expected an even size)"))
}
