//! Sampled stacks through C++ code come out demangled: libx265 (opened through FFmpeg's
//! libx265 encoder) allocates from C++ functions that Debian's library exports.

use avsoak::heap;
use ffmpeg_next as ffmpeg;

#[test]
fn x265_frames_are_demangled() {
    heap::check().expect("hooks active");
    ffmpeg::init().unwrap();
    let Some(codec) = ffmpeg::encoder::find_by_name("libx265") else {
        panic!("this FFmpeg has no libx265 encoder (avsoak's deps install one)");
    };
    let mut encoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .unwrap();
    encoder.set_width(64);
    encoder.set_height(64);
    encoder.set_format(ffmpeg::format::Pixel::YUV420P);
    encoder.set_time_base((1, 25));
    let mut options = ffmpeg::Dictionary::new();
    options.set("x265-params", "log-level=error");
    // Sample every allocation of the open, and only those.
    heap::set_sample_interval(1);
    heap::set_epoch(1);
    let opened = encoder.open_with(options).expect("libx265 opens at 64x64");
    let suspects = heap::suspects(1, 500);
    heap::set_sample_interval(0);
    let frames: Vec<&String> = suspects.iter().flat_map(|s| &s.frames).collect();
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with("x265") && f.contains("::") && f.contains('(')),
        "no demangled x265 C++ frame among {} frames: {:?}",
        frames.len(),
        frames.iter().take(40).collect::<Vec<_>>()
    );
    assert!(
        frames.iter().all(|f| !f.starts_with("_Z")),
        "a mangled name slipped through"
    );
    drop(opened);
}
