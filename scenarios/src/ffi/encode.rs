//! FFmpeg video encoders as `encode-abort` and the encoder comparison open and feed them:
//! one configuration, frames filled from the camera, errors that name the call.

use avsoak_fixtures::Frame;
use ffmpeg_next as ffmpeg;

/// A failure of FFmpeg's encoding API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FfmpegError {
    /// FFmpeg has no such encoder.
    #[error("FFmpeg has no encoder {0:?}")]
    NoEncoder(&'static str),
    /// An FFmpeg call failed.
    #[error("{codec}: {call} failed")]
    Call {
        /// Encoder name.
        codec: &'static str,
        /// The call.
        call: &'static str,
        /// FFmpeg's error.
        #[source]
        error: ffmpeg::Error,
    },
}

/// Turns FFmpeg's error from `call` of encoder `codec` into an [`FfmpegError`].
pub fn error(codec: &'static str, call: &'static str) -> impl Fn(ffmpeg::Error) -> FfmpegError {
    move |error| FfmpegError::Call { codec, call, error }
}

/// FFmpeg's encoder `codec_name`, configured (not opened) for I420 at `width`×`height`,
/// 25 fps, a keyframe every 25 frames.
pub fn config(
    codec_name: &'static str,
    width: u32,
    height: u32,
) -> Result<(ffmpeg::Codec, ffmpeg::encoder::video::Video), FfmpegError> {
    super::init().map_err(error(codec_name, "av_log_set_level"))?;
    let codec =
        ffmpeg::encoder::find_by_name(codec_name).ok_or(FfmpegError::NoEncoder(codec_name))?;
    let mut config = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(error(codec_name, "avcodec_alloc_context3"))?;
    config.set_width(width);
    config.set_height(height);
    config.set_format(ffmpeg::format::Pixel::YUV420P);
    config.set_time_base((1, 25));
    config.set_frame_rate(Some((25, 1)));
    config.set_gop(25);
    Ok((codec, config))
}

/// Copies `src` into `frame`, which the encoder may still reference from the last send:
/// `av_frame_make_writable` gives it fresh planes first if so.
pub fn fill_frame(
    frame: &mut ffmpeg::frame::Video,
    src: &Frame,
    pts: i64,
) -> Result<(), FfmpegError> {
    // SAFETY: `frame` is a live, allocated AVFrame we own; make_writable replaces shared
    // buffers with copies and keeps the frame's geometry.
    let rc = unsafe { ffmpeg::ffi::av_frame_make_writable(frame.as_mut_ptr()) };
    if rc < 0 {
        return Err(error("frame", "av_frame_make_writable")(
            ffmpeg::Error::from(rc),
        ));
    }
    for plane in 0..3 {
        let row = src.stride(plane);
        let stride = frame.stride(plane);
        let dst = frame.data_mut(plane);
        for (y, line) in src.plane(plane).chunks_exact(row).enumerate() {
            dst[y * stride..y * stride + row].copy_from_slice(line);
        }
    }
    frame.set_pts(Some(pts));
    Ok(())
}

/// Whether FFmpeg's encoder `codec` takes the option `key` with `value`: it must be one
/// of the codec context's options or the encoder's private ones (as `avcodec_open2`
/// would find it in its dictionary), and `av_opt_set` must accept the value. Checked on
/// a context that is allocated and freed here, never opened. The error names the option.
pub fn check_option(codec: &str, key: &str, value: &str) -> Result<(), String> {
    let encoder = ffmpeg::encoder::find_by_name(codec)
        .ok_or_else(|| format!("FFmpeg has no encoder {codec:?}"))?;
    let (Ok(c_key), Ok(c_value)) = (std::ffi::CString::new(key), std::ffi::CString::new(value))
    else {
        return Err(format!("option {key:?}={value:?} holds a NUL"));
    };
    // SAFETY: `encoder` wraps a valid AVCodec from FFmpeg's static tables;
    // avcodec_alloc_context3 returns an owned context (its private data allocated and set
    // to defaults), or NULL.
    let mut context = unsafe { ffmpeg::ffi::avcodec_alloc_context3(encoder.as_ptr()) };
    if context.is_null() {
        return Err(format!("cannot allocate a {codec} context"));
    }
    let flags = ffmpeg::ffi::AV_OPT_SEARCH_CHILDREN;
    // SAFETY: `context` is a live AVCodecContext (an AVClass-enabled object); the
    // strings are NUL-terminated and outlive both calls; av_opt_find only reads, and
    // av_opt_set copies the value it stores into the context, freed with it below.
    let (found, set) = unsafe {
        let found =
            ffmpeg::ffi::av_opt_find(context.cast(), c_key.as_ptr(), std::ptr::null(), 0, flags);
        let set = if found.is_null() {
            0
        } else {
            ffmpeg::ffi::av_opt_set(context.cast(), c_key.as_ptr(), c_value.as_ptr(), flags)
        };
        (found, set)
    };
    // SAFETY: `context` came from avcodec_alloc_context3 and is freed once, here.
    unsafe { ffmpeg::ffi::avcodec_free_context(&mut context) };
    if found.is_null() {
        return Err(format!("unknown option {key:?}"));
    }
    if set < 0 {
        return Err(format!(
            "bad value {value:?} for option {key:?} ({})",
            ffmpeg::Error::from(set)
        ));
    }
    Ok(())
}
