//! Fragmented MP4 to sinks that cannot seek: plain MP4 is refused with a clear error,
//! fMP4 demuxes back frame-exact, the multipart sink cuts exact parts that concatenate
//! to a valid file, and the box structure is ftyp, moov, then moof/mdat pairs.

use std::io::Cursor;

use avsoak::heap::Snapshot;
use avsoak::scenario::Workload;
use avsoak_scenarios::cases::avio_memory::{read_memory, ReadOutcome, ReadSpec};
use avsoak_scenarios::cases::fmp4_mux::{
    box_tree, outline, write_fragmented, write_plain_mp4, LiveStream, MultipartSink, StreamPlan,
};
use avsoak_scenarios::ffi::avio::{AvioError, Teardown};
use avsoak_scenarios::media::{self, Clip, EncodedClip};
use ffmpeg_next as ffmpeg;

fn clip() -> EncodedClip {
    ffmpeg::init().unwrap();
    ffmpeg::log::set_level(ffmpeg::log::Level::Quiet);
    media::encode_clip(Clip::STANDARD).unwrap()
}

fn read_back(bytes: Vec<u8>) -> ReadOutcome {
    let spec = ReadSpec::new(false, 32 << 10).with_timestamps();
    read_memory(Cursor::new(bytes), spec).unwrap()
}

/// Timestamps in frames at the clip's rate.
fn frames(out: &ReadOutcome) -> Vec<i64> {
    let (num, den) = out.time_base;
    let fps = i64::from(Clip::STANDARD.fps);
    out.timestamps
        .iter()
        .map(|&ts| ts * i64::from(num) * fps / i64::from(den))
        .collect()
}

#[test]
fn plain_mp4_to_a_sink_that_cannot_seek_is_refused_and_leaves_nothing() {
    avsoak::heap::settle();
    let clip = clip();
    drop(write_plain_mp4(&clip, Vec::new()));
    let before = Snapshot::now();
    let err = write_plain_mp4(&clip, Vec::new()).unwrap_err();
    assert!(
        matches!(err, AvioError::NeedsSeekableOutput { .. }),
        "{err:?}"
    );
    drop(err);
    let left = Snapshot::now().since(&before);
    assert_eq!((left.live_blocks, left.live_bytes), (0, 0), "{left:?}");

    let text = write_plain_mp4(&clip, Vec::new()).unwrap_err().to_string();
    assert_eq!(
        text,
        "the mp4 muxer cannot write to a sink that cannot seek (FFmpeg: \"muxer does not support \
         non seekable output\"); write fragmented MP4 instead: \
         movflags=frag_keyframe+empty_moov+default_base_moof"
    );
}

#[test]
fn fragmented_mp4_to_a_sink_that_cannot_seek_demuxes_back_frame_exact() {
    avsoak::heap::settle();
    let clip = clip();
    let bytes = write_fragmented(&clip, Vec::new(), Teardown::Correct).unwrap();
    insta::assert_snapshot!("fmp4_clip_boxes", outline(&box_tree(&bytes).unwrap()));
    let out = read_back(bytes);
    assert_eq!(out.frames, 50);
    assert_eq!(frames(&out), (0..50).collect::<Vec<_>>());
}

#[test]
fn a_live_stream_arrives_in_exact_parts_that_concatenate_to_a_valid_fmp4() {
    avsoak::heap::settle();
    ffmpeg::init().unwrap();
    let part = 4096;
    let plan = StreamPlan {
        chunk_frames: 25,
        rotate_every: None,
    };
    let mut live =
        LiveStream::new(Clip::STANDARD, MultipartSink::keeping(part).unwrap(), plan).unwrap();
    for _ in 0..4 {
        let work = live.iterate().unwrap();
        assert_eq!(work.frames, 25);
    }
    let objects = live.finish().unwrap().into_objects();
    assert_eq!(objects.len(), 1);
    let parts = &objects[0];
    assert!(parts.len() > 4, "{} parts", parts.len());
    let (last, full) = parts.split_last().unwrap();
    assert!(full.iter().all(|p| p.len() == part));
    assert!(!last.is_empty() && last.len() <= part);
    let bytes = parts.concat();
    let tree = box_tree(&bytes).unwrap();
    let kinds: Vec<&str> = tree.iter().map(|b| b.kind.as_str()).collect();
    assert_eq!(&kinds[..2], ["ftyp", "moov"]);
    let fragments = &kinds[2..kinds.len() - 1];
    assert_eq!(fragments.len(), 8, "{kinds:?}: one moof/mdat pair per GOP");
    assert!(
        fragments.chunks(2).all(|pair| pair == ["moof", "mdat"]),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"mfra"));
    let out = read_back(bytes);
    assert_eq!(out.frames, 100);
    assert_eq!(frames(&out), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_rotating_stream_makes_objects_that_each_demux_on_their_own() {
    avsoak::heap::settle();
    ffmpeg::init().unwrap();
    let plan = StreamPlan {
        chunk_frames: 25,
        rotate_every: Some(2),
    };
    let mut live = LiveStream::new(
        Clip::STANDARD,
        MultipartSink::keeping(64 << 10).unwrap(),
        plan,
    )
    .unwrap();
    for _ in 0..4 {
        live.iterate().unwrap();
    }
    let sink = live.finish().unwrap();
    assert_eq!(sink.objects(), 3, "two full objects and the empty third");
    let objects = sink.into_objects();
    for object in &objects[..2] {
        let out = read_back(object.concat());
        assert_eq!(out.frames, 50);
        assert_eq!(frames(&out), (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn a_part_size_too_small_is_refused_by_name() {
    avsoak::heap::settle();
    let err = MultipartSink::counting(100).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid part size 100 bytes (expected at least 1024; S3 needs 5242880)"
    );
}

#[test]
fn the_box_parser_refuses_a_box_that_overruns_the_file() {
    avsoak::heap::settle();
    let mut bytes = vec![0, 0, 0, 16];
    bytes.extend_from_slice(b"ftyp");
    assert_eq!(
        box_tree(&bytes).unwrap_err(),
        "box ftyp at byte 0 claims 16 bytes"
    );
    assert_eq!(
        box_tree(&bytes[..5]).unwrap_err(),
        "truncated box header at byte 0"
    );
}
