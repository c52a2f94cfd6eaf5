//! The player under churn: proptest draws operation sequences (bounded: 48 sequences of
//! up to 10 operations each, from memory and from a file). Every sequence must finish
//! without a deadlock or a stuck thread, keep both queues within their bounds, and leave
//! no packet, frame or thread behind once the player is closed. Positive controls: the
//! teardown check catches forgotten packets and forgotten frames, and the watchdog
//! names a decoder that ignores abort.

use std::time::Duration;

use avsoak_scenarios::cases::player_queue::{self, Op, Session, SessionError, CLIPS};
use avsoak_scenarios::media;
use avsoak_scenarios::player::{census, Discard, Player, PlayerError, Settings, Source};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..12).prop_map(Op::Play),
        (0.0f64..4.2).prop_map(Op::Seek),
        Just(Op::Pause),
        Just(Op::Resume),
        Just(Op::Step),
        Just(Op::SwitchStream),
        Just(Op::RestartDecoder),
        Just(Op::PlayToEnd),
        Just(Op::Reopen),
    ]
}

fn source(file: bool) -> Source {
    if file {
        Source::File(media::fixture_path(&CLIPS, media::Container::Matroska).unwrap())
    } else {
        Source::Memory(player_queue::fixture().unwrap())
    }
}

#[test]
fn drawn_churn_sequences_finish_within_bounds_and_leave_nothing() {
    media::init().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(op(), 1..=10),
        any::<bool>(),
        0u64..6,
    );
    runner
        .run(&strategy, |(ops, file, then)| {
            let mut session = Session::open(source(file), Settings::default(), true)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (i, &op) in ops.iter().enumerate() {
                session
                    .apply(op, then)
                    .map_err(|e| TestCaseError::fail(format!("op {i} {op:?}: {e}")))?;
            }
            session
                .close()
                .map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
            let left = census();
            prop_assert_eq!((left.packets, left.frames), (0, 0));
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_fixed_churn_script_keeps_the_queues_full_and_bounded_at_every_rest() {
    media::init().unwrap();
    let mut session = Session::open(source(false), Settings::default(), true).unwrap();
    for &op in player_queue::CHURN.iter().cycle().take(36) {
        session.apply(op, 8).unwrap();
        let player = session.current().unwrap();
        let (packets, frames) = player.high_water();
        assert!(
            packets <= 25 && frames <= 3,
            "{op:?}: {packets} packets, {frames} frames"
        );
        // Either the queues are full at rest, or the input ended and they drained.
        let g = player.gauges();
        assert!(g.frame_queue <= 3 && g.packet_queue <= 25, "{op:?}: {g:?}");
        assert_eq!(g.threads, 2, "{op:?}: read and one decoder");
    }
    session.close().unwrap();
    let left = census();
    assert_eq!((left.packets, left.frames), (0, 0));
}

/// Packets and frames a session with `settings` leaves alive after two seeks, as its
/// teardown check reports them; the check must fail.
fn outlived(settings: Settings) -> (i64, i64) {
    media::init().unwrap();
    let mut session = Session::open(source(false), settings, true).unwrap();
    session.apply(Op::Seek(2.5), 8).unwrap();
    session.apply(Op::Seek(0.5), 8).unwrap();
    match session.close().unwrap_err() {
        SessionError::Outlived { packets, frames } => (packets, frames),
        err => panic!("{err}"),
    }
}

#[test]
fn the_teardown_check_catches_a_flush_that_forgets_packets() {
    let (packets, frames) = outlived(Settings {
        flush: Discard::Forget,
        ..Settings::default()
    });
    assert!(packets >= 25, "{packets} packets");
    assert_eq!(frames, 0);
}

#[test]
fn the_teardown_check_catches_stale_frames_that_are_forgotten() {
    let (packets, frames) = outlived(Settings {
        stale: Discard::Forget,
        ..Settings::default()
    });
    assert_eq!(packets, 0);
    assert!(frames >= 3, "{frames} frames");
}

#[test]
fn the_watchdog_names_a_decoder_that_ignores_abort() {
    media::init().unwrap();
    let settings = Settings {
        deaf_decoder: true,
        stop_bound: Duration::from_millis(300),
        ..Settings::default()
    };
    let mut player = Player::open(source(false), settings).unwrap();
    player.advance(8).unwrap();
    let err = player.restart_decoder().unwrap_err();
    let PlayerError::Stuck(stuck) = &err else {
        panic!("{err}")
    };
    assert_eq!(stuck.thread, "decode-v0");
    assert!(stuck.state.contains("frame-queue space"), "{err}");
    assert!(stuck.waited_ms >= 300, "{err}");
    assert!(
        err.to_string()
            .contains("read: waiting for the decoder to stop"),
        "{err}"
    );
}

#[test]
fn a_decoder_that_honours_abort_restarts_within_the_bound() {
    media::init().unwrap();
    let settings = Settings {
        stop_bound: Duration::from_secs(2),
        ..Settings::default()
    };
    let mut player = Player::open(source(false), settings).unwrap();
    for _ in 0..5 {
        player.advance(8).unwrap();
        player.restart_decoder().unwrap();
        player.switch_stream().unwrap();
    }
    player.close().unwrap();
}
