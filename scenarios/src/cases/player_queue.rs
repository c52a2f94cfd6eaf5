//! `player-queue`: ffplay's threads and queues under churn (docs/incidents/player-queues.md).
//!
//! A [`Player`] plays a two-rendition Matroska file (320×240 and 160×120 H.264, 4 s at
//! 25 fps, a keyframe every second), looping, read through a custom reader from memory
//! or from a file. One iteration is one operation followed by 8 frames of playback, and
//! it ends at the player's quiescent point: every pipeline thread asleep, the packet
//! queue full (25 packets), the frame queue full (3 frames), one frame on screen.
//!
//! | variant | each iteration | expect |
//! |---|---|---|
//! | `steady` | play 8 frames, video clock | clean |
//! | `external-clock` | play 8 frames against an external clock with a slow display: late frames are dropped | clean |
//! | `seeks` | seek (flush, new serial), play 8 frames | clean |
//! | `churn` | the next of [`CHURN`]: seek, pause, step, resume, stream switch, decoder restart (queue abort), play to the end, teardown and reopen | clean |
//! | `open-close` | open, play 8 frames, close: every thread joined, nothing left | clean |
//! | `flush-without-unref` | `seeks`, but the flush forgets the packets it takes out | leak |
//! | `restarts` | decoder restart (queue abort, decode thread stopped, joined and started again), play 8 frames | clean |
//! | `mapped-frames` | play 8 frames; the decoder's pictures are mapped (`av_buffer_create` over `mmap`) and unmapped when freed | clean |
//! | `flush-without-unref` | `seeks`, but the flush forgets the packets it takes out | leak |
//! | `stale-frames-without-unref` | `seeks`, but the presenter forgets stale frames | leak |
//! | `restart-without-join` | `restarts`, but closing the decoder never waits for its thread | leak |
//! | `mapped-frames-never-unmapped` | `mapped-frames`, but the pool's free forgets `munmap` | leak |
//! | `deaf-decoder` | `churn`, but the decoder's wait for frame-queue space ignores abort | hang |
//!
//! Parameter `source`: `memory` or `file`. Every iteration also checks the queues'
//! bounds, and a clean variant checks that no packet or frame outlives a teardown.

use std::sync::Arc;

use avsoak::scenario::{BoxError, Case, Expect, Scenario, Stuck, Work, Workload};

use crate::media::{self, Clip, Container};
use crate::player::{
    census, Discard, FramePool, MasterClock, Player, PlayerError, Progress, Settings, Source,
    FRAME_QUEUE_FRAMES, PACKET_QUEUE_PACKETS,
};

/// The renditions of the fixture, one video stream each.
pub const CLIPS: [Clip; 2] = [
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

/// Frames shown per iteration.
pub const FRAMES_PER_ITERATION: u64 = 8;

/// Where `seeks` and its controls go, in turn (seconds; the keyframes are at 0, 1, 2, 3).
pub const SEEKS: [f64; 5] = [1.3, 3.1, 0.4, 2.6, 1.9];

/// One thing a user (or a test) does to the player.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Show this many frames.
    Play(u64),
    /// Seek to the keyframe at or before this many seconds.
    Seek(f64),
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Show one frame and pause.
    Step,
    /// Switch to the next video stream.
    SwitchStream,
    /// Abort the queues, stop the decoder and start a new one.
    RestartDecoder,
    /// Play, looping off, until the input ends; then looping on again.
    PlayToEnd,
    /// Close the player (every thread joined) and open it again.
    Reopen,
}

impl Op {
    /// Whether the operation shows frames by itself.
    pub fn shows_frames(self) -> bool {
        matches!(self, Op::Play(_) | Op::Step | Op::PlayToEnd)
    }
}

/// Does `op` to `player`; [`Op::Reopen`] is the session's to do, not the player's.
fn perform(player: &mut Player, op: Op, looping: bool) -> Result<Progress, PlayerError> {
    match op {
        Op::Play(frames) => return player.advance(frames),
        Op::Step => return player.step(),
        Op::PlayToEnd => {
            player.set_looping(false)?;
            let progress = player.advance(u64::MAX)?;
            player.set_looping(looping)?;
            return Ok(progress);
        }
        Op::Seek(seconds) => player.seek(seconds)?,
        Op::Pause => player.pause()?,
        Op::Resume => player.resume()?,
        Op::SwitchStream => player.switch_stream()?,
        Op::RestartDecoder => player.restart_decoder()?,
        Op::Reopen => {}
    }
    Ok(Progress::default())
}

/// The `churn` script, one operation per iteration, in a loop.
pub const CHURN: [Op; 12] = [
    Op::Play(8),
    Op::Seek(1.3),
    Op::Pause,
    Op::Step,
    Op::Step,
    Op::Resume,
    Op::SwitchStream,
    Op::Seek(3.1),
    Op::RestartDecoder,
    Op::PlayToEnd,
    Op::Reopen,
    Op::SwitchStream,
];

/// A variant of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain playback, video clock.
    Steady,
    /// External clock, slow display, late frames dropped.
    ExternalClock,
    /// A seek every iteration.
    Seeks,
    /// The [`CHURN`] script.
    Churn,
    /// A whole player lifetime per iteration.
    OpenClose,
    /// A decoder restart every iteration.
    Restarts,
    /// Pictures in mapped memory.
    MappedFrames,
    /// Control: seeks whose flush forgets packets.
    FlushWithoutUnref,
    /// Control: seeks whose stale frames are forgotten.
    StaleFramesWithoutUnref,
    /// Control: restarts that never join the decoder's thread.
    RestartWithoutJoin,
    /// Control: mapped pictures never unmapped.
    MappedFramesNeverUnmapped,
    /// Control: churn with a decoder deaf to abort.
    DeafDecoder,
}

impl Mode {
    /// Every variant, in report order.
    pub const ALL: [Mode; 12] = [
        Mode::Steady,
        Mode::ExternalClock,
        Mode::Seeks,
        Mode::Churn,
        Mode::OpenClose,
        Mode::Restarts,
        Mode::MappedFrames,
        Mode::FlushWithoutUnref,
        Mode::StaleFramesWithoutUnref,
        Mode::RestartWithoutJoin,
        Mode::MappedFramesNeverUnmapped,
        Mode::DeafDecoder,
    ];

    /// The variant name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Steady => "steady",
            Mode::ExternalClock => "external-clock",
            Mode::Seeks => "seeks",
            Mode::Churn => "churn",
            Mode::OpenClose => "open-close",
            Mode::Restarts => "restarts",
            Mode::MappedFrames => "mapped-frames",
            Mode::FlushWithoutUnref => "flush-without-unref",
            Mode::StaleFramesWithoutUnref => "stale-frames-without-unref",
            Mode::RestartWithoutJoin => "restart-without-join",
            Mode::MappedFramesNeverUnmapped => "mapped-frames-never-unmapped",
            Mode::DeafDecoder => "deaf-decoder",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Mode::Steady => "play 8 frames per iteration, looping, video master clock",
            Mode::ExternalClock => {
                "external master clock, display 1.5x slower than the video: late frames dropped"
            }
            Mode::Seeks => "seek (flush + serial bump) then play 8 frames",
            Mode::Churn => {
                "seek, pause, step, resume, stream switch, decoder restart, play to the end, reopen"
            }
            Mode::OpenClose => "open, play 8 frames, close: every thread joined, nothing left",
            Mode::Restarts => "restart the decoder (abort, stop, join, start), then play 8 frames",
            Mode::MappedFrames => {
                "play 8 frames; the decoder's pictures are mmap'd buffers (av_buffer_create), unmapped when freed"
            }
            Mode::FlushWithoutUnref => "control: the seek's flush drops packets without unref",
            Mode::StaleFramesWithoutUnref => {
                "control: the presenter discards stale-serial frames without unref"
            }
            Mode::RestartWithoutJoin => {
                "control: restarts whose close never waits for (joins) the decoder's thread"
            }
            Mode::MappedFramesNeverUnmapped => {
                "control: mapped pictures whose free callback forgets munmap"
            }
            Mode::DeafDecoder => {
                "control: the decoder's wait for frame-queue space ignores abort (watchdog names it)"
            }
        }
    }

    /// What the variant must come out as.
    pub fn expect(self) -> Expect {
        match self {
            Mode::FlushWithoutUnref
            | Mode::StaleFramesWithoutUnref
            | Mode::RestartWithoutJoin
            | Mode::MappedFramesNeverUnmapped => Expect::Leak,
            Mode::DeafDecoder => Expect::Hang,
            _ => Expect::Clean,
        }
    }

    /// The controls leak ~25 KB (a queue of packets) and ~350 KB (three 320×240 frames)
    /// per seek; sampled every 8 KiB and 64 KiB, each gives ~3 stacks per iteration.
    fn sample_interval(self) -> Option<u64> {
        match self {
            Mode::FlushWithoutUnref => Some(8 << 10),
            Mode::StaleFramesWithoutUnref => Some(64 << 10),
            _ => None,
        }
    }

    fn sources(self) -> &'static [&'static str] {
        match self {
            Mode::Churn | Mode::OpenClose | Mode::Steady => &["memory", "file"],
            _ => &["memory"],
        }
    }

    /// The player's settings for this variant.
    pub fn settings(self) -> Settings {
        let mut settings = Settings::default();
        match self {
            Mode::ExternalClock => {
                settings.master = MasterClock::External;
                settings.display_cost = 1.5 / f64::from(CLIPS[0].fps);
            }
            Mode::FlushWithoutUnref => settings.flush = Discard::Forget,
            Mode::StaleFramesWithoutUnref => settings.stale = Discard::Forget,
            Mode::DeafDecoder => settings.deaf_decoder = true,
            Mode::RestartWithoutJoin => settings.join_decoder = false,
            Mode::MappedFrames => settings.frames = FramePool::Mapped,
            Mode::MappedFramesNeverUnmapped => settings.frames = FramePool::MappedNeverUnmapped,
            _ => {}
        }
        settings
    }

    /// Whether the variant releases everything it should (no control mistake).
    fn releases_everything(self) -> bool {
        let settings = self.settings();
        settings.flush == Discard::Unref && settings.stale == Discard::Unref
    }

    /// The operation of iteration `i`.
    pub fn op(self, i: u64) -> Op {
        match self {
            Mode::Steady
            | Mode::ExternalClock
            | Mode::OpenClose
            | Mode::MappedFrames
            | Mode::MappedFramesNeverUnmapped => Op::Play(FRAMES_PER_ITERATION),
            Mode::Restarts | Mode::RestartWithoutJoin => Op::RestartDecoder,
            Mode::Seeks | Mode::FlushWithoutUnref | Mode::StaleFramesWithoutUnref => {
                Op::Seek(SEEKS[(i % SEEKS.len() as u64) as usize])
            }
            Mode::Churn | Mode::DeafDecoder => CHURN[(i % CHURN.len() as u64) as usize],
        }
    }
}

/// The fixture: [`CLIPS`] in Matroska (cached like every media fixture).
pub fn fixture() -> Result<Arc<[u8]>, media::MediaError> {
    media::fixture_streams(&CLIPS, Container::Matroska)
}

/// The source called `name` (`memory` or `file`), fixture made if needed.
pub fn source(name: &str) -> Result<Source, BoxError> {
    match name {
        "memory" => Ok(Source::Memory(fixture()?)),
        "file" => Ok(Source::File(media::fixture_path(
            &CLIPS,
            Container::Matroska,
        )?)),
        other => Err(format!("invalid source {other:?} (expected memory or file)").into()),
    }
}

/// A problem a session found in the player's bookkeeping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The player failed.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// A queue held more than its bound.
    #[error("{queue} held {held} items (bound {bound})")]
    Bound {
        /// Which queue.
        queue: &'static str,
        /// The most it held.
        held: usize,
        /// Its bound.
        bound: usize,
    },
    /// Packets or frames outlived a teardown.
    #[error("after closing the player, {packets} packets and {frames} frames are still alive")]
    Outlived {
        /// Packets alive.
        packets: i64,
        /// Frames alive.
        frames: i64,
    },
}

impl SessionError {
    /// The stuck thread behind this error, if that is what it is.
    pub fn stuck(&self) -> Option<&Stuck> {
        match self {
            SessionError::Player(PlayerError::Stuck(stuck)) => Some(stuck),
            _ => None,
        }
    }

    /// As the harness takes it: a stuck thread as [`Stuck`] itself (a `hang`), anything
    /// else as an `error`.
    fn boxed(self) -> BoxError {
        match self.stuck() {
            Some(stuck) => Box::new(stuck.clone()),
            None => Box::new(self),
        }
    }
}

/// A player and the operations applied to it: what the soak and the tests drive.
#[derive(Debug)]
pub struct Session {
    source: Source,
    settings: Settings,
    player: Option<Player>,
    check_teardown: bool,
    /// Late frames dropped by earlier players of this session.
    dropped_before: u64,
}

impl Session {
    /// Opens a player on `source`. With `check_teardown`, every close verifies that no
    /// packet or frame is left alive (not for the controls, which leave some on purpose).
    pub fn open(
        source: Source,
        settings: Settings,
        check_teardown: bool,
    ) -> Result<Self, SessionError> {
        let player = Player::open(source.clone(), settings.clone())?;
        Ok(Session {
            source,
            settings,
            player: Some(player),
            check_teardown,
            dropped_before: 0,
        })
    }

    fn player(&mut self) -> Result<&mut Player, SessionError> {
        if self.player.is_none() {
            self.player = Some(Player::open(self.source.clone(), self.settings.clone())?);
        }
        Ok(self.player.as_mut().expect("opened above"))
    }

    /// Applies `op`; an operation that shows nothing by itself is followed by `then`
    /// frames of playback. Checks the queues' bounds afterwards.
    pub fn apply(&mut self, op: Op, then: u64) -> Result<Progress, SessionError> {
        let looping = self.settings.looping;
        let mut progress = match op {
            Op::Reopen => {
                self.close_player()?;
                Progress::default()
            }
            op => self.checked(|player| perform(player, op, looping))?,
        };
        if !op.shows_frames() {
            progress += self.checked(|player| player.advance(then))?;
        }
        Ok(progress)
    }

    fn checked(
        &mut self,
        run: impl FnOnce(&mut Player) -> Result<Progress, PlayerError>,
    ) -> Result<Progress, SessionError> {
        let player = self.player()?;
        let progress = run(player)?;
        let (packets, frames) = player.high_water();
        if packets > PACKET_QUEUE_PACKETS {
            return Err(SessionError::Bound {
                queue: "packet queue",
                held: packets,
                bound: PACKET_QUEUE_PACKETS,
            });
        }
        if frames > FRAME_QUEUE_FRAMES {
            return Err(SessionError::Bound {
                queue: "frame queue",
                held: frames,
                bound: FRAME_QUEUE_FRAMES,
            });
        }
        Ok(progress)
    }

    fn close_player(&mut self) -> Result<(), SessionError> {
        if let Some(player) = self.player.take() {
            self.dropped_before += player.dropped();
            player.close()?;
            let left = census();
            if self.check_teardown && (left.packets != 0 || left.frames != 0) {
                return Err(SessionError::Outlived {
                    packets: left.packets,
                    frames: left.frames,
                });
            }
        }
        Ok(())
    }

    /// Closes the player (every thread joined) and checks what is left.
    pub fn close(mut self) -> Result<(), SessionError> {
        self.close_player()
    }

    /// The open player, if any.
    pub fn current(&self) -> Option<&Player> {
        self.player.as_ref()
    }

    /// Late frames dropped so far, across reopens.
    pub fn dropped(&self) -> u64 {
        self.dropped_before + self.player.as_ref().map_or(0, Player::dropped)
    }
}

/// The scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlayerQueue;

struct PlayerWorkload {
    mode: Mode,
    source: Source,
    session: Option<Session>,
    i: u64,
}

impl PlayerWorkload {
    fn run(&mut self, op: Op) -> Result<Progress, SessionError> {
        let progress = if self.mode == Mode::OpenClose {
            let mut session = Session::open(self.source.clone(), self.mode.settings(), true)?;
            let progress = session.apply(op, 0)?;
            session.close()?;
            progress
        } else {
            let session = match &mut self.session {
                Some(session) => session,
                None => self.session.insert(Session::open(
                    self.source.clone(),
                    self.mode.settings(),
                    self.mode.releases_everything(),
                )?),
            };
            session.apply(op, FRAMES_PER_ITERATION)?
        };
        Ok(progress)
    }
}

impl Workload for PlayerWorkload {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        let op = self.mode.op(self.i);
        self.i += 1;
        let progress = self.run(op).map_err(SessionError::boxed)?;
        Ok(Work {
            frames: progress.shown + progress.dropped,
            bytes: 0,
        })
    }

    fn gauges(&self) -> Vec<(&'static str, i64)> {
        let player = self.session.as_ref().and_then(Session::current);
        let gauges = player.map(Player::gauges).unwrap_or_default();
        let census = census();
        vec![
            ("live_packets", census.packets),
            ("live_packet_bytes", census.packet_bytes),
            ("live_frames", census.frames),
            ("packet_queue", gauges.packet_queue as i64),
            ("packet_queue_bytes", gauges.packet_queue_bytes as i64),
            ("frame_queue", gauges.frame_queue as i64),
            ("threads", gauges.threads as i64),
            (
                "frames_dropped",
                self.session.as_ref().map_or(0, Session::dropped) as i64,
            ),
        ]
    }
}

impl Scenario for PlayerQueue {
    fn name(&self) -> &'static str {
        "player-queue"
    }

    fn about(&self) -> &'static str {
        "ffplay's read thread, packet queues, decode thread, frame queue and clock under churn"
    }

    fn cases(&self) -> Vec<Case> {
        Mode::ALL
            .into_iter()
            .flat_map(|mode| {
                mode.sources().iter().map(move |&source| {
                    Case::new(self.name(), mode.name(), mode.expect(), mode.about())
                        .with_param("source", source)
                        .with_sample_interval(mode.sample_interval())
                })
            })
            .collect()
    }

    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError> {
        let mode = crate::by_name(
            &Mode::ALL,
            Mode::name,
            "player-queue variant",
            &case.variant,
        )?;
        media::init()?;
        let source = source(case.param("source", "memory"))?;
        Ok(Box::new(PlayerWorkload {
            mode,
            source,
            session: None,
            i: 0,
        }))
    }
}
