//! Playback through the player model: without seeks and with drops off, every frame of
//! the fixture is shown once, in order, with the picture a plain decode gives.

use avsoak_scenarios::avio::{Avio, Demuxer};
use avsoak_scenarios::media::{self, Clip, Container};
use avsoak_scenarios::player::{self, Player, Settings, Source};
use ffmpeg_next as ffmpeg;

const CLIPS: [Clip; 2] = [
    Clip {
        width: 320,
        height: 240,
        fps: 25,
        frames: 100,
        keyint: 25,
    },
    Clip {
        width: 160,
        height: 120,
        fps: 25,
        frames: 100,
        keyint: 25,
    },
];

#[test]
fn smoke() {
    media::init().unwrap();
    let bytes = media::fixture_streams(&CLIPS, Container::Matroska).unwrap();
    let settings = Settings {
        looping: false,
        record: true,
        ..Settings::default()
    };
    let mut p = Player::open(Source::Memory(bytes), settings).unwrap();
    eprintln!("{:?}", p.gauges());
    let progress = p.advance(u64::MAX).unwrap();
    eprintln!("{progress:?} {:?}", p.gauges());
    eprintln!("{:?}", &p.log()[..5]);
    p.close().unwrap();
    eprintln!("{:?}", player::census());
}
