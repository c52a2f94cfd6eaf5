//! The encoded output is real H.264: FFmpeg decodes every frame back, at the right size.

use std::path::PathBuf;

use avsoak::scenario::Workload;
use avsoak_scenarios::cases::picture_pool::{Mode, PictureWorkload, SEGMENT_FRAMES};
use avsoak_scenarios::ffi::x264::Sink;
use ffmpeg_next as ffmpeg;

/// Decodes an Annex B H.264 stream with FFmpeg; returns the size of every frame.
fn decode(stream: &[u8], name: &str) -> Vec<(u32, u32)> {
    ffmpeg::init().unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}.h264"));
    std::fs::write(&path, stream).unwrap();
    let mut input = ffmpeg::format::input(&path).unwrap();
    let stream_index = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .unwrap()
        .index();
    let parameters = input.stream(stream_index).unwrap().parameters();
    let mut decoder = ffmpeg::codec::Context::from_parameters(parameters)
        .unwrap()
        .decoder()
        .video()
        .unwrap();
    let mut sizes = Vec::new();
    let mut frame = ffmpeg::frame::Video::empty();
    for (stream, packet) in input.packets() {
        if stream.index() != stream_index {
            continue;
        }
        decoder.send_packet(&packet).unwrap();
        while decoder.receive_frame(&mut frame).is_ok() {
            sizes.push((frame.width(), frame.height()));
        }
    }
    decoder.send_eof().unwrap();
    while decoder.receive_frame(&mut frame).is_ok() {
        sizes.push((frame.width(), frame.height()));
    }
    sizes
}

fn encode(mode: Mode, iterations: u64) -> Sink {
    let mut workload = PictureWorkload::new(mode, 320, 240, Sink::keeping()).unwrap();
    for _ in 0..iterations {
        workload.iterate().unwrap();
    }
    workload.finish().unwrap()
}

#[test]
fn every_clean_mode_decodes_frame_exact() {
    for mode in [
        Mode::Pooled,
        Mode::PerFrameAllocClean,
        Mode::BorrowedPlanes,
        Mode::PerFrameAllocLeak,
    ] {
        let sink = encode(mode, 45);
        assert_eq!(sink.frames, 45, "{mode:?}");
        assert!(sink.nals >= 45, "{mode:?}: {} NAL units", sink.nals);
        let stream = sink.kept.unwrap();
        assert_eq!(stream.len() as u64, sink.bytes);
        assert_eq!(&stream[..4], &[0, 0, 0, 1], "{mode:?}: Annex B start code");
        let sizes = decode(&stream, mode.name());
        assert_eq!(sizes.len(), 45, "{mode:?}");
        assert!(
            sizes.iter().all(|&s| s == (320, 240)),
            "{mode:?}: {sizes:?}"
        );
    }
}

#[test]
fn a_resolution_switch_decodes_at_both_sizes() {
    let sink = encode(Mode::ResolutionSwitch, 4);
    let sizes = decode(&sink.kept.unwrap(), "resolution-switch");
    let n = SEGMENT_FRAMES as usize;
    assert_eq!(sizes.len(), 4 * n);
    let expected: Vec<(u32, u32)> = (0..4 * n)
        .map(|i| {
            if (i / n).is_multiple_of(2) {
                (320, 240)
            } else {
                (160, 120)
            }
        })
        .collect();
    assert_eq!(sizes, expected);
}
