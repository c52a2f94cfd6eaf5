//! The FFI edge: one owning type per C object, released in `Drop`, and every C return
//! code turned into a typed error where the call is made. Nothing above this folder
//! calls C directly, except the few FFmpeg fields the safe API lacks.
//!
//! - [`avio`]: FFmpeg custom I/O (`AVIOContext` over Rust readers and writers), and the
//!   demuxer and muxer on top of it.
//! - [`encode`]: FFmpeg video encoders, configured and fed as the scenarios and the
//!   encoder comparison use them.
//! - [`heif`]: libheif contexts, encoders and images.
//! - [`mapped`]: decoded pictures in mapped memory (`get_buffer2` over `mmap`).
//! - [`x264`]: libx264 pictures and encoders.
//! - [`x265`]: libx265's version and parameter sizes.
//! - [`init`]: FFmpeg set up for a scenario.

pub mod avio;
pub mod encode;
pub mod heif;
pub mod mapped;
pub mod x264;
pub mod x265;

/// Initialises FFmpeg for a scenario: registers everything, logs errors only.
pub fn init() -> Result<(), ffmpeg_next::Error> {
    ffmpeg_next::init()?;
    ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Error);
    Ok(())
}
