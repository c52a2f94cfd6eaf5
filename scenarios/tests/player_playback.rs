//! Playback through the player model against a plain decode of the same stream: with
//! no seeks and no drops, every frame of the fixture is shown once, in order, with the
//! same picture; with an external clock and a slow display, every frame is shown or
//! dropped exactly once, still in order.

use std::io::Cursor;
use std::sync::Arc;

use avsoak_scenarios::cases::player_queue::{self, CLIPS};
use avsoak_scenarios::ffi::avio::{Avio, Demuxer};
use avsoak_scenarios::ffi::mapped::FramePool;
use avsoak_scenarios::media;
use avsoak_scenarios::player::{
    census, luma_checksum, MasterClock, Player, Settings, Shown, Source,
};
use ffmpeg_next as ffmpeg;

/// Every frame of stream `index` of `bytes`, decoded in the plainest way into pictures
/// from `pool`.
fn decode_all(bytes: &Arc<[u8]>, index: usize, pool: FramePool) -> Vec<Shown> {
    let io = Avio::seekable_reader(Cursor::new(Arc::clone(bytes)), 32 * 1024).unwrap();
    let mut demuxer = Demuxer::open(io, None).unwrap();
    let mut decoder = demuxer.video_decoder(index, pool).unwrap();
    let mut packet = ffmpeg::Packet::empty();
    let mut frame = ffmpeg::frame::Video::empty();
    let mut shown = Vec::new();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video, shown: &mut Vec<Shown>| {
        while decoder.receive_frame(&mut frame).is_ok() {
            shown.push(Shown {
                stream: index,
                pts: frame.timestamp().unwrap(),
                luma: luma_checksum(&frame),
            });
        }
    };
    while demuxer.read(&mut packet).unwrap() {
        if packet.stream() == index {
            decoder.send_packet(&packet).unwrap();
            receive(&mut decoder, &mut shown);
        }
    }
    decoder.send_eof().unwrap();
    receive(&mut decoder, &mut shown);
    shown
}

fn reference(bytes: &Arc<[u8]>, index: usize) -> Vec<Shown> {
    decode_all(bytes, index, FramePool::Default)
}

/// The mapped pool lays pictures out as FFmpeg's own allocator would: the decoder,
/// which predicts from earlier pictures and reads past their edges, gives the same
/// pictures in both, for both renditions.
#[test]
fn pictures_decoded_into_mapped_memory_match_ffmpegs_own() {
    media::init().unwrap();
    let bytes = player_queue::fixture().unwrap();
    for (index, clip) in CLIPS.iter().enumerate() {
        let expected = reference(&bytes, index);
        assert_eq!(expected.len() as u64, clip.frames);
        assert_eq!(
            decode_all(&bytes, index, FramePool::Mapped),
            expected,
            "stream {index}"
        );
    }
}

fn plays_every_frame_once_in_order(source: Source) {
    media::init().unwrap();
    let bytes = player_queue::fixture().unwrap();
    let expected = reference(&bytes, 0);
    assert_eq!(expected.len() as u64, CLIPS[0].frames);
    let settings = Settings {
        looping: false,
        record: true,
        ..Settings::default()
    };
    let mut player = Player::open(source, settings).unwrap();
    let progress = player.advance(u64::MAX).unwrap();
    assert!(progress.ended, "{progress:?}");
    assert_eq!(
        (progress.shown, progress.dropped, progress.stale),
        (100, 0, 0)
    );
    assert_eq!(player.log(), expected.as_slice());
    // Frame-exact: timestamps are consecutive frames of the 25 fps clip (ms time base).
    let pts: Vec<i64> = player.log().iter().map(|s| s.pts).collect();
    assert_eq!(pts, (0..100).map(|i| i * 40).collect::<Vec<_>>());
    player.close().unwrap();
    let left = census();
    assert_eq!((left.packets, left.frames), (0, 0));
}

#[test]
fn playback_from_memory_shows_every_frame_once_in_order() {
    media::init().unwrap();
    plays_every_frame_once_in_order(Source::Memory(player_queue::fixture().unwrap()));
}

#[test]
fn playback_from_a_file_shows_every_frame_once_in_order() {
    media::init().unwrap();
    let path = media::fixture_path(&CLIPS, media::Container::Matroska).unwrap();
    plays_every_frame_once_in_order(Source::File(path));
}

#[test]
fn a_slow_display_on_an_external_clock_drops_late_frames_and_shows_the_rest_in_order() {
    media::init().unwrap();
    let settings = Settings {
        looping: false,
        record: true,
        master: MasterClock::External,
        display_cost: 1.5 / 25.0,
        ..Settings::default()
    };
    let mut player =
        Player::open(Source::Memory(player_queue::fixture().unwrap()), settings).unwrap();
    let progress = player.advance(u64::MAX).unwrap();
    assert!(progress.ended);
    // The display takes 60 ms for 40 ms frames: it keeps up with two frames in three.
    assert!((30..=36).contains(&progress.dropped), "{progress:?}");
    assert_eq!(progress.shown + progress.dropped, 100, "{progress:?}");
    let pts: Vec<i64> = player.log().iter().map(|s| s.pts).collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "{pts:?}");
    player.close().unwrap();
}

#[test]
fn a_video_clock_never_drops_even_with_a_slow_display() {
    media::init().unwrap();
    let settings = Settings {
        looping: false,
        display_cost: 1.5 / 25.0,
        ..Settings::default()
    };
    let mut player =
        Player::open(Source::Memory(player_queue::fixture().unwrap()), settings).unwrap();
    let progress = player.advance(u64::MAX).unwrap();
    assert_eq!((progress.shown, progress.dropped), (100, 0), "{progress:?}");
}
