//! Custom AVIO round trips: every fixture container reads back frame-exact through the
//! memory reader (with and without a seek callback), and what the memory writer muxes
//! demuxes back to the same frames and timestamps.

use std::io::Cursor;

use avsoak_scenarios::cases::avio_memory::{read_memory, ReadOutcome, ReadSpec};
use avsoak_scenarios::ffi::avio::{Avio, AvioError, Muxer};
use avsoak_scenarios::media::{self, Clip, Container};
use ffmpeg_next as ffmpeg;

fn spec(seekable: bool, buffer: usize) -> ReadSpec {
    ReadSpec::new(seekable, buffer).with_timestamps()
}

/// Timestamps in frames (the clip runs at a constant rate).
fn in_frames(out: &ReadOutcome) -> Vec<i64> {
    let (num, den) = out.time_base;
    let fps = i64::from(Clip::STANDARD.fps);
    out.timestamps
        .iter()
        .map(|&ts| {
            let scaled = ts * i64::from(num) * fps;
            assert_eq!(
                scaled % i64::from(den),
                0,
                "timestamp {ts} off the frame grid"
            );
            scaled / i64::from(den)
        })
        .collect()
}

fn assert_frame_exact(out: &ReadOutcome, what: &str) {
    let want = Clip::STANDARD.frames as i64;
    assert_eq!(out.frames, want as u64, "{what}: frames");
    assert_eq!(out.packets, want as u64, "{what}: packets");
    assert_eq!(
        in_frames(out),
        (0..want).collect::<Vec<_>>(),
        "{what}: timestamps"
    );
}

#[test]
fn every_fixture_reads_back_frame_exact_seekable_and_streaming() {
    ffmpeg::init().unwrap();
    for container in Container::ALL {
        let bytes = media::fixture(Clip::STANDARD, container).unwrap();
        for buffer in [4096, 32 << 10, 1 << 20] {
            let out = read_memory(Cursor::new(bytes.clone()), spec(true, buffer)).unwrap();
            assert_frame_exact(&out, &format!("{container} seekable {buffer}"));
            assert!(
                out.io.size_queries > 0,
                "{container}: AVSEEK_SIZE was never asked"
            );
            assert!(
                out.io.read_bytes as usize >= bytes.len(),
                "{container}: read {} of {} bytes",
                out.io.read_bytes,
                bytes.len()
            );
            if container.streamable() {
                let out = read_memory(Cursor::new(bytes.clone()), spec(false, buffer)).unwrap();
                assert_frame_exact(&out, &format!("{container} streaming {buffer}"));
                assert_eq!(out.io.seeks, 0);
            }
        }
    }
}

#[test]
fn probing_swaps_the_buffer_passed_in() {
    ffmpeg::init().unwrap();
    let bytes = media::fixture(Clip::STANDARD, Container::Mp4).unwrap();
    let out = read_memory(Cursor::new(bytes), spec(true, 32 << 10)).unwrap();
    assert!(
        out.buffer_swapped,
        "the seed's note: ctx->buffer is not the buffer passed in"
    );
}

#[test]
fn what_the_memory_writer_muxes_demuxes_back_to_the_same_frames() {
    ffmpeg::init().unwrap();
    let clip = media::encode_clip(Clip::STANDARD).unwrap();
    for container in Container::ALL {
        for buffer in [4096, 1 << 20] {
            let bytes = media::mux(&[&clip], container, buffer).unwrap();
            let out = read_memory(Cursor::new(bytes), spec(true, 32 << 10)).unwrap();
            assert_frame_exact(&out, &format!("{container} written with {buffer}"));
        }
    }
}

#[test]
fn a_buffer_size_out_of_range_is_refused_by_name() {
    for size in [0, 255, (64 << 20) + 1] {
        let err = Avio::reader(Cursor::new(Vec::<u8>::new()), size).unwrap_err();
        assert!(matches!(err, AvioError::BufferSize { .. }));
        let text = err.to_string();
        assert!(text.contains(&size.to_string()), "{text}");
        assert!(text.contains("expected 256 to 67108864 bytes"), "{text}");
    }
}

#[test]
fn an_unknown_muxer_is_refused_by_name() {
    let io = Avio::writer(Vec::new(), 4096).unwrap();
    let err = Muxer::new(io, "no-such-format").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown container format \"no-such-format\" (expected an FFmpeg format name such as mp4, mpegts or matroska)"
    );
}
