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

/// Moves `from`'s reference into a new packet with `av_packet_move_ref`, as ffplay's
/// packet queue takes a packet in: `from` is left blank for the next read.
pub fn move_packet(from: &mut ffmpeg_next::Packet) -> ffmpeg_next::Packet {
    use ffmpeg_next::packet::Mut as _;
    let mut taken = ffmpeg_next::Packet::empty();
    // SAFETY: both are valid AVPackets, each owned by its ffmpeg_next::Packet; the move
    // hands `from`'s references to `taken` and leaves `from` blank, which its owner
    // unrefs or reuses as it would an empty packet.
    unsafe { ffmpeg_next::ffi::av_packet_move_ref(taken.as_mut_ptr(), from.as_mut_ptr()) };
    taken
}

/// Initialises FFmpeg for a scenario: registers everything, logs errors only.
pub fn init() -> Result<(), ffmpeg_next::Error> {
    ffmpeg_next::init()?;
    ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Error);
    Ok(())
}
