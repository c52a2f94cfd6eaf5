//! ffplay's playback model in Rust over real FFmpeg: a read thread demuxes into the
//! packet queue of the active video stream, a decode thread per open stream turns
//! packets into frames in a bounded frame queue, and the presenter (the caller's thread)
//! shows frames against a master clock, dropping late ones and discarding stale ones
//! (frames from before a seek or a stream switch, recognised by their serial).
//!
//! Time is virtual: the presenter never sleeps, it moves its clock to when a frame is
//! due, and the display costs [`Settings::display_cost`] of it per frame. A soak
//! therefore plays as fast as the codecs decode, and the clock logic (frame timer,
//! external-clock sync, late drops) is the same as with a wall clock.
//!
//! Every call that changes something ends at a quiescent point: the pipeline threads
//! all asleep, with queues as full as they get while the presenter waits (see
//! [`queue`]). A thread that does not stop within [`Settings::stop_bound`] after an
//! abort is reported as [`Stuck`], naming it and where it is.

pub mod queue;

use std::fs::File;
use std::io::Cursor;
use std::os::unix::thread::JoinHandleExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use avsoak::scenario::Stuck;
use ffmpeg_next as ffmpeg;

use crate::ffi::avio::{Avio, AvioError, Demuxer, StreamInfo};
pub use crate::ffi::mapped::FramePool;
pub use queue::{census, Census, Discard};
use queue::{Activity, FrameQueue, Gate, Got, Item, Packet, PacketQueue, Slot};

/// Packets the read thread queues before it waits (ffplay's `MIN_FRAMES`).
pub const PACKET_QUEUE_PACKETS: usize = 25;
/// Payload bytes the read thread queues before it waits (ffplay's `MAX_QUEUE_SIZE`).
pub const PACKET_QUEUE_BYTES: usize = 15 << 20;
/// Decoded frames the frame queue holds (ffplay's `VIDEO_PICTURE_QUEUE_SIZE`).
pub const FRAME_QUEUE_FRAMES: usize = 3;
/// I/O buffer of the demuxer.
const IO_BUFFER: usize = 32 * 1024;

/// The environment variable that plants a leak on every decoder thread: bytes per
/// decoded frame, allocated in [`planted_decode_leak`] and never freed. A positive
/// control for attribution off the main thread (`avsoak::soak::PLANT_LEAK_ENV` plants on
/// the thread that runs the iterations).
pub const PLANT_DECODE_LEAK_ENV: &str = "AVSOAK_PLANT_DECODE_LEAK";

/// Leaks `bytes` on purpose, on a decoder thread: the frame a suspect of the planted
/// leak names.
#[inline(never)]
pub fn planted_decode_leak(bytes: usize) {
    std::hint::black_box(Box::leak(vec![0xa5_u8; bytes].into_boxed_slice()));
}

/// The decoder threads' planted leak per frame, from [`PLANT_DECODE_LEAK_ENV`] (none when
/// unset or not a positive byte count; the player's own tests set it).
fn planted_decode_bytes() -> Option<usize> {
    std::env::var(PLANT_DECODE_LEAK_ENV)
        .ok()?
        .parse()
        .ok()
        .filter(|&b| b > 0)
}
/// ffplay's `AV_SYNC_THRESHOLD_MIN`, `_MAX` and `AV_SYNC_FRAMEDUP_THRESHOLD` (seconds).
const SYNC_MIN: f64 = 0.04;
const SYNC_MAX: f64 = 0.1;
const FRAMEDUP: f64 = 0.1;

/// Where the player reads its input.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file in memory, through a custom seekable reader.
    Memory(Arc<[u8]>),
    /// A file on disk, through a custom seekable reader.
    File(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Memory(bytes) => format!("{} bytes in memory", bytes.len()),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// Which clock the video follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterClock {
    /// The video's own timestamps (ffplay `-sync video`): no frame is ever late.
    Video,
    /// A free-running clock (ffplay `-sync ext`): a slow display falls behind it, and
    /// late frames are dropped.
    External,
}

/// When the presenter drops a late frame (ffplay's `-framedrop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDrop {
    /// Only when the video is not the master clock (ffplay's default).
    Auto,
    /// Whatever the master clock.
    Always,
    /// Never.
    Never,
}

/// How a player plays, and the mistakes the positive controls make.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The master clock.
    pub master: MasterClock,
    /// When late frames are dropped.
    pub framedrop: FrameDrop,
    /// Virtual seconds the display spends per frame shown.
    pub display_cost: f64,
    /// Start again at the end of the input.
    pub looping: bool,
    /// What flushing the packet queue does with the packets (a control forgets them).
    pub flush: Discard,
    /// What the presenter does with stale frames (a control forgets them).
    pub stale: Discard,
    /// The decoder's wait for frame-queue space ignores abort (a control).
    pub deaf_decoder: bool,
    /// Closing a decoder waits for its thread (`pthread_join`); a control forgets to,
    /// and each ended thread keeps its stack.
    pub join_decoder: bool,
    /// Where the decoder's pictures come from (a control's mapped pool never unmaps).
    pub frames: FramePool,
    /// How long a thread may take to end after an abort.
    pub stop_bound: Duration,
    /// How long the pipeline may stay busy before a call gives up waiting for it.
    pub settle_bound: Duration,
    /// Keep a log of the frames shown (stream, timestamp, picture checksum).
    pub record: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            master: MasterClock::Video,
            framedrop: FrameDrop::Auto,
            display_cost: 0.0,
            looping: true,
            flush: Discard::Unref,
            stale: Discard::Unref,
            deaf_decoder: false,
            join_decoder: true,
            frames: FramePool::Default,
            stop_bound: Duration::from_secs(3),
            settle_bound: Duration::from_secs(20),
            record: false,
        }
    }
}

/// A failure of the player.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlayerError {
    /// The input could not be opened or read.
    #[error("input {input}: {source}")]
    Input {
        /// The source.
        input: String,
        /// The cause.
        #[source]
        source: AvioError,
    },
    /// The input file could not be opened.
    #[error("opening {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The input has no video stream.
    #[error("input {input} has no video stream")]
    NoVideo {
        /// The source.
        input: String,
    },
    /// Decoding failed.
    #[error("decoding stream {stream}: {source}")]
    Decode {
        /// The stream.
        stream: usize,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// A thread could not be started.
    #[error("starting thread {name}: {source}")]
    Spawn {
        /// Its name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A thread did not stop in time, or the pipeline never came to rest.
    #[error(transparent)]
    Stuck(#[from] Stuck),
    /// An operation the input cannot do.
    #[error("{op}: {problem}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// Why not.
        problem: String,
    },
}

/// A frame the presenter showed (kept with [`Settings::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Its stream.
    pub stream: usize,
    /// Its timestamp in the stream's time base.
    pub pts: i64,
    /// FNV-1a of its luma plane, row by row (padding excluded).
    pub luma: u64,
}

/// What one [`Player::advance`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Frames shown.
    pub shown: u64,
    /// Late frames dropped.
    pub dropped: u64,
    /// Stale frames discarded (decoded before a seek or a switch).
    pub stale: u64,
    /// The input ended (looping off) before the frames asked for were shown.
    pub ended: bool,
}

impl std::ops::AddAssign for Progress {
    fn add_assign(&mut self, more: Progress) {
        self.shown += more.shown;
        self.dropped += more.dropped;
        self.stale += more.stale;
        self.ended |= more.ended;
    }
}

/// Queue depths and threads at a quiescent point (the packets and frames alive are the
/// process-wide [`census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Items in the packet queue.
    pub packet_queue: usize,
    /// Their payload bytes.
    pub packet_queue_bytes: usize,
    /// Frames in the frame queue.
    pub frame_queue: usize,
    /// Pipeline threads that have not ended.
    pub threads: usize,
}

#[derive(Debug, Default)]
struct Requests {
    abort: bool,
    seek: Option<f64>,
    /// Reopen the decoder: on the next video stream (`true`) or the same one; then seek
    /// to the position given.
    reopen: Option<(bool, f64)>,
    looping: bool,
}

/// What the threads share.
struct Shared {
    activity: Arc<Activity>,
    packets: PacketQueue,
    frames: FrameQueue,
    gate: Gate,
    requests: Mutex<Requests>,
    failure: Mutex<Option<PlayerError>>,
    slots: Mutex<Vec<Arc<Slot>>>,
    /// The video streams, once the read thread has opened the input.
    streams: Mutex<Vec<StreamInfo>>,
    /// The serial (+1) whose end the decoder has drained; 0 for none.
    finished: AtomicU64,
    settings: Settings,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn fail(&self, error: PlayerError) {
        lock(&self.failure).get_or_insert(error);
    }

    fn register(&self, name: String) -> Arc<Slot> {
        let slot = Slot::new(name);
        let mut slots = lock(&self.slots);
        slots.retain(|s| s.alive());
        slots.push(Arc::clone(&slot));
        slot
    }

    /// Threads alive other than `except`, as `; name: state` each.
    fn others(&self, except: &str) -> String {
        lock(&self.slots)
            .iter()
            .filter(|s| s.alive() && s.name() != except)
            .map(|s| format!("; {}: {}", s.name(), s.state()))
            .collect()
    }

    fn stuck(&self, what: &str, slot: &Slot, waited: Duration) -> Stuck {
        Stuck {
            what: what.to_owned(),
            thread: slot.name().to_owned(),
            state: slot.state().to_owned(),
            waited_ms: waited.as_millis() as u64,
            others: self.others(slot.name()),
        }
    }

    fn finished(&self) -> Option<u64> {
        self.finished.load(Ordering::SeqCst).checked_sub(1)
    }
}

/// A running decode thread.
struct Component {
    slot: Arc<Slot>,
    handle: JoinHandle<()>,
}

/// Starts the decoder of `info` and its thread, with fresh queue serials.
fn open_component<R>(
    shared: &Arc<Shared>,
    demuxer: &Demuxer<R>,
    info: StreamInfo,
) -> Result<Component, PlayerError> {
    let decoder = demuxer
        .video_decoder(info.index, shared.settings.frames)
        .map_err(|source| PlayerError::Input {
            input: format!("stream {}", info.index),
            source,
        })?;
    shared.packets.start();
    shared.frames.start();
    shared.finished.store(0, Ordering::SeqCst);
    let name = format!("decode-v{}", info.index);
    let slot = shared.register(name.clone());
    shared.activity.started();
    let spawned = {
        let shared = Arc::clone(shared);
        let slot = Arc::clone(&slot);
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || decode_thread(&shared, decoder, info.index, &slot))
    };
    match spawned {
        Ok(handle) => Ok(Component { slot, handle }),
        Err(source) => {
            slot.end();
            shared.activity.ended();
            Err(PlayerError::Spawn { name, source })
        }
    }
}

/// Aborts the queues, waits (bounded) for the decode thread to end, and flushes the
/// packet queue (ffplay's `decoder_abort`). Frames already decoded stay queued; the
/// presenter discards them as stale.
fn close_component(shared: &Shared, component: Component, slot: &Slot) -> Result<(), PlayerError> {
    slot.set("waiting for the decoder to stop");
    shared.packets.abort();
    shared.frames.abort();
    let started = Instant::now();
    if !component.slot.wait_end(shared.settings.stop_bound) {
        // Left running: joining would wait for ever.
        return Err(shared
            .stuck("stopping the decoder", &component.slot, started.elapsed())
            .into());
    }
    if shared.settings.join_decoder {
        let _ = component.handle.join();
    } else {
        // Neither joined nor detached: the ended thread's stack stays mapped.
        let _ = component.handle.into_pthread_t();
    }
    shared.packets.flush(shared.settings.flush);
    Ok(())
}

fn decode_thread(shared: &Shared, decoder: ffmpeg::decoder::Video, stream: usize, slot: &Slot) {
    if let Err(e) = decode(shared, decoder, stream, slot) {
        shared.fail(e);
        shared.gate.kick();
    }
    slot.end();
    shared.activity.ended();
}

fn decode(
    shared: &Shared,
    mut decoder: ffmpeg::decoder::Video,
    stream: usize,
    slot: &Slot,
) -> Result<(), PlayerError> {
    let decode_err = |source| PlayerError::Decode { stream, source };
    let mut serial: Option<u64> = None;
    let mut frame = ffmpeg::frame::Video::empty();
    let planted = planted_decode_bytes();
    loop {
        if let Some(current) = serial.filter(|&s| s == shared.packets.serial()) {
            loop {
                slot.set("avcodec_receive_frame");
                match decoder.receive_frame(&mut frame) {
                    Ok(()) => {
                        if let Some(bytes) = planted {
                            planted_decode_leak(bytes);
                        }
                        let pts = frame.timestamp().or(frame.pts()).unwrap_or(0);
                        let decoded = std::mem::replace(&mut frame, ffmpeg::frame::Video::empty());
                        let queued = queue::Frame::new(decoded, pts, current, stream);
                        if shared
                            .frames
                            .push(queued, shared.settings.deaf_decoder, slot)
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                    Err(ffmpeg::Error::Eof) => {
                        // Drained: ready for the next serial's packets.
                        decoder.flush();
                        shared.finished.store(current + 1, Ordering::SeqCst);
                        shared.gate.kick();
                        break;
                    }
                    Err(e) => return Err(decode_err(e)),
                }
            }
        }
        let (got, item) = match shared.packets.get(true, slot) {
            Got::Aborted => return Ok(()),
            Got::Empty => continue,
            Got::Item(got, item) => (got, item),
        };
        // Room in the packet queue: the read thread may go on.
        shared.gate.kick();
        if serial != Some(got) {
            decoder.flush();
            serial = Some(got);
        }
        if got != shared.packets.serial() {
            continue; // stale: dropped, unref
        }
        slot.set("avcodec_send_packet");
        let sent = match &item {
            Item::Packet(p) => decoder.send_packet(p.get()),
            Item::Drain => decoder.send_eof(),
        };
        match sent {
            // A damaged packet is skipped, as ffplay does; a second drain is harmless.
            Ok(()) | Err(ffmpeg::Error::InvalidData) | Err(ffmpeg::Error::Eof) => {}
            Err(e) => return Err(decode_err(e)),
        }
    }
}

fn read_thread(shared: &Arc<Shared>, source: Source, slot: &Slot) {
    if let Err(e) = read(shared, source, slot) {
        shared.fail(e);
    }
    // Whatever happened, nothing may sleep on a queue of a player that no longer reads.
    shared.packets.abort();
    shared.frames.abort();
    slot.end();
    shared.activity.ended();
}

fn read(shared: &Arc<Shared>, source: Source, slot: &Slot) -> Result<(), PlayerError> {
    let input = source.describe();
    let input_err = |source| PlayerError::Input {
        input: input.clone(),
        source,
    };
    slot.set("opening the input");
    let io = match &source {
        Source::Memory(bytes) => {
            Avio::seekable_reader(Cursor::new(Arc::clone(bytes)), IO_BUFFER).map(Reader::Memory)
        }
        Source::File(path) => {
            let file = File::open(path).map_err(|source| PlayerError::File {
                path: path.clone(),
                source,
            })?;
            Avio::seekable_reader(file, IO_BUFFER).map(Reader::File)
        }
    }
    .map_err(&input_err)?;
    match io {
        Reader::Memory(io) => play(
            shared,
            Demuxer::open(io, None).map_err(&input_err)?,
            slot,
            &input,
        ),
        Reader::File(io) => play(
            shared,
            Demuxer::open(io, None).map_err(&input_err)?,
            slot,
            &input,
        ),
    }
}

enum Reader {
    Memory(Avio<Cursor<Arc<[u8]>>>),
    File(Avio<File>),
}

fn play<R>(
    shared: &Arc<Shared>,
    mut demuxer: Demuxer<R>,
    slot: &Slot,
    input: &str,
) -> Result<(), PlayerError> {
    let input_err = |source| PlayerError::Input {
        input: input.to_owned(),
        source,
    };
    let videos: Vec<StreamInfo> = demuxer
        .streams()
        .into_iter()
        .filter(|s| s.medium == ffmpeg::media::Type::Video)
        .collect();
    let Some(&first) = videos.first() else {
        return Err(PlayerError::NoVideo {
            input: input.to_owned(),
        });
    };
    *lock(&shared.streams) = videos.clone();
    let mut current = 0;
    let mut active = first.index;
    let mut component = Some(open_component(shared, &demuxer, first)?);
    let mut packet = ffmpeg::Packet::empty();
    let mut eof = false;
    // Every way out of the loop, errors included, goes through the component's close.
    let mut pump = || -> Result<(), PlayerError> {
        loop {
            shared.gate.clear();
            let (abort, seek, reopen, looping) = {
                let mut r = lock(&shared.requests);
                (r.abort, r.seek.take(), r.reopen.take(), r.looping)
            };
            if abort {
                return Ok(());
            }
            if let Some((next, position)) = reopen {
                if let Some(c) = component.take() {
                    close_component(shared, c, slot)?;
                }
                if next {
                    current = (current + 1) % videos.len();
                }
                active = videos[current].index;
                component = Some(open_component(shared, &demuxer, videos[current])?);
                slot.set("avformat_seek_file");
                demuxer.seek(position).map_err(input_err)?;
                shared.packets.flush(shared.settings.flush);
                eof = false;
            }
            if let Some(target) = seek {
                slot.set("avformat_seek_file");
                demuxer.seek(target).map_err(input_err)?;
                shared.packets.flush(shared.settings.flush);
                eof = false;
            }
            if shared.packets.len() >= PACKET_QUEUE_PACKETS
                || shared.packets.bytes() >= PACKET_QUEUE_BYTES
            {
                shared.gate.sleep(slot, "waiting: packet queue full");
                continue;
            }
            if eof {
                let drained =
                    shared.finished() == Some(shared.packets.serial()) && shared.frames.is_empty();
                if drained && looping {
                    slot.set("avformat_seek_file");
                    demuxer.seek(0.0).map_err(input_err)?;
                    shared.packets.flush(shared.settings.flush);
                    eof = false;
                    continue;
                }
                shared.gate.sleep(slot, "waiting at the end of the input");
                continue;
            }
            slot.set("av_read_frame");
            if !demuxer.read(&mut packet).map_err(input_err)? {
                eof = true;
                let _ = shared.packets.put(Item::Drain);
                continue;
            }
            if packet.stream() == active {
                // Refused only after an abort, and then dropped (unref) on the way out.
                let _ = shared
                    .packets
                    .put(Item::Packet(Packet::take_from(&mut packet)));
            }
            // A packet of another stream is released by the next read.
        }
    };
    let result = pump();
    let closed = match component.take() {
        Some(c) => close_component(shared, c, slot),
        None => Ok(()),
    };
    // The loop's own failure first: a decoder stuck after it is a consequence.
    result.and(closed)
}

/// ffplay's clock: a timestamp, when it was set, and whether it runs.
#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    pts: f64,
    updated: f64,
    paused: bool,
}

impl Clock {
    fn get(&self, now: f64) -> f64 {
        if self.paused {
            self.pts
        } else {
            self.pts + (now - self.updated)
        }
    }

    fn set(&mut self, pts: f64, now: f64) {
        self.pts = pts;
        self.updated = now;
    }
}

/// The presenter's state (ffplay's `video_refresh` and its clocks).
#[derive(Debug, Default)]
struct Presenter {
    /// Virtual time, seconds.
    now: f64,
    frame_timer: f64,
    last_serial: Option<u64>,
    last_pts: Option<f64>,
    video: Clock,
    external: Clock,
    paused: bool,
    /// The frame on screen.
    shown: Option<queue::Frame>,
    /// Seconds into the input of the frame on screen.
    position: f64,
    dropped: u64,
    log: Vec<Shown>,
}

/// A player: open, churn, close. Dropping it closes it (and ignores a stuck thread).
pub struct Player {
    shared: Arc<Shared>,
    read: Option<(Arc<Slot>, JoinHandle<()>)>,
    presenter: Presenter,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("gauges", &self.gauges())
            .field("position", &self.presenter.position)
            .finish_non_exhaustive()
    }
}

impl Player {
    /// Opens `source` and starts the read and decode threads; returns once the queues
    /// have filled.
    pub fn open(source: Source, settings: Settings) -> Result<Player, PlayerError> {
        let activity = Arc::new(Activity::default());
        let shared = Arc::new(Shared {
            packets: PacketQueue::new(Arc::clone(&activity)),
            frames: FrameQueue::new(FRAME_QUEUE_FRAMES, Arc::clone(&activity)),
            gate: Gate::new(Arc::clone(&activity)),
            requests: Mutex::new(Requests {
                looping: settings.looping,
                ..Requests::default()
            }),
            failure: Mutex::new(None),
            slots: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            finished: AtomicU64::new(0),
            settings,
            activity,
        });
        let slot = shared.register("read".to_owned());
        shared.activity.started();
        let spawned = {
            let shared = Arc::clone(&shared);
            let slot = Arc::clone(&slot);
            std::thread::Builder::new()
                .name("read".to_owned())
                .spawn(move || read_thread(&shared, source, &slot))
        };
        let handle = match spawned {
            Ok(handle) => handle,
            Err(source) => {
                shared.activity.ended();
                return Err(PlayerError::Spawn {
                    name: "read".to_owned(),
                    source,
                });
            }
        };
        let mut player = Player {
            shared,
            read: Some((slot, handle)),
            presenter: Presenter::default(),
        };
        player.settle()?;
        Ok(player)
    }

    /// Waits for the quiescent point; reports a thread's failure.
    fn settle(&mut self) -> Result<(), PlayerError> {
        let started = Instant::now();
        if !self
            .shared
            .activity
            .wait_idle(self.shared.settings.settle_bound)
        {
            let slots = lock(&self.shared.slots).clone();
            let busy = slots.iter().find(|s| s.alive()).map(Arc::clone);
            if let Some(slot) = busy {
                return Err(self
                    .shared
                    .stuck("waiting for the pipeline to rest", &slot, started.elapsed())
                    .into());
            }
        }
        match lock(&self.shared.failure).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn request(&mut self, change: impl FnOnce(&mut Requests)) -> Result<(), PlayerError> {
        change(&mut lock(&self.shared.requests));
        self.shared.gate.kick();
        self.settle()
    }

    /// The video streams of the input.
    pub fn streams(&self) -> Vec<StreamInfo> {
        lock(&self.shared.streams).clone()
    }

    /// Seconds into the input of the frame on screen.
    pub fn position(&self) -> f64 {
        self.presenter.position
    }

    /// Seeks to the keyframe at or before `seconds`: the read thread flushes the packet
    /// queue (a new serial), and frames decoded before become stale.
    pub fn seek(&mut self, seconds: f64) -> Result<(), PlayerError> {
        self.request(|r| r.seek = Some(seconds))
    }

    /// Pauses the clocks; nothing is shown until [`Player::resume`] or
    /// [`Player::step`]. The read thread goes on filling the queues.
    pub fn pause(&mut self) -> Result<(), PlayerError> {
        let now = self.presenter.now;
        let p = &mut self.presenter;
        p.paused = true;
        let (video, external) = (p.video.get(now), p.external.get(now));
        p.video.set(video, now);
        p.external.set(external, now);
        p.video.paused = true;
        p.external.paused = true;
        self.settle()
    }

    /// Resumes after [`Player::pause`].
    pub fn resume(&mut self) -> Result<(), PlayerError> {
        let p = &mut self.presenter;
        p.paused = false;
        p.video.paused = false;
        p.external.paused = false;
        p.video.updated = p.now;
        p.external.updated = p.now;
        self.settle()
    }

    /// Shows one frame and stays (or becomes) paused (ffplay's `s` key).
    pub fn step(&mut self) -> Result<Progress, PlayerError> {
        self.presenter.paused = false;
        let progress = self.show(1, true);
        self.presenter.paused = true;
        let progress = progress?;
        self.settle()?;
        Ok(progress)
    }

    /// Closes the decoder and opens the next video stream's (ffplay's `v` key), going on
    /// from the position on screen.
    pub fn switch_stream(&mut self) -> Result<(), PlayerError> {
        if self.streams().len() < 2 {
            return Err(PlayerError::Unsupported {
                op: "switch stream",
                problem: format!("the input has {} video stream", self.streams().len()),
            });
        }
        let position = self.presenter.position;
        self.request(|r| r.reopen = Some((true, position)))
    }

    /// Aborts the packet and frame queues, stops the decode thread and starts a new one
    /// on the same stream (what a stream switch does, minus the switch).
    pub fn restart_decoder(&mut self) -> Result<(), PlayerError> {
        let position = self.presenter.position;
        self.request(|r| r.reopen = Some((false, position)))
    }

    /// Whether playback starts again at the end of the input.
    pub fn set_looping(&mut self, looping: bool) -> Result<(), PlayerError> {
        self.request(|r| r.looping = looping)
    }

    /// Shows up to `frames` frames (fewer when paused or when the input ends), then
    /// waits for the quiescent point.
    pub fn advance(&mut self, frames: u64) -> Result<Progress, PlayerError> {
        let progress = self.show(frames, false)?;
        self.settle()?;
        Ok(progress)
    }

    /// The frames shown so far (with [`Settings::record`]).
    pub fn log(&self) -> &[Shown] {
        &self.presenter.log
    }

    /// Late frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.presenter.dropped
    }

    /// Pipeline objects and queue depths now.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            packet_queue: self.shared.packets.len(),
            packet_queue_bytes: self.shared.packets.bytes(),
            frame_queue: self.shared.frames.len(),
            threads: lock(&self.shared.slots)
                .iter()
                .filter(|s| s.alive())
                .count(),
        }
    }

    /// The most items the packet queue and frames the frame queue ever held.
    pub fn high_water(&self) -> (usize, usize) {
        (
            self.shared.packets.high_water(),
            self.shared.frames.high_water(),
        )
    }

    /// Stops every thread (bounded), then releases what the queues and the screen
    /// hold.
    pub fn close(mut self) -> Result<(), PlayerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), PlayerError> {
        let Some((slot, handle)) = self.read.take() else {
            return Ok(());
        };
        lock(&self.shared.requests).abort = true;
        self.shared.gate.kick();
        self.shared.packets.abort();
        self.shared.frames.abort();
        let started = Instant::now();
        // The read thread waits up to one bound for the decoder before it reports.
        if !slot.wait_end(self.shared.settings.stop_bound * 2) {
            let slots = lock(&self.shared.slots).clone();
            // Name the innermost thread: a decoder the read thread is waiting for.
            let stuck = slots
                .iter()
                .find(|s| s.alive() && s.name() != "read")
                .unwrap_or(&slot);
            return Err(self
                .shared
                .stuck("closing the player", stuck, started.elapsed())
                .into());
        }
        let _ = handle.join();
        self.presenter.shown = None;
        for frame in self.shared.frames.drain() {
            discard(frame, self.shared.settings.stale);
        }
        self.shared.packets.flush(self.shared.settings.flush);
        match lock(&self.shared.failure).take() {
            // A decoder that did not stop in time made the read thread give up.
            Some(e @ PlayerError::Stuck(_)) => Err(e),
            _ => Ok(()),
        }
    }

    /// The next frame, taken when the frame queue is full or the pipeline rests: a
    /// display is slower than a decoder, so it always finds the queue as full as the
    /// decoder can make it, and every drop decision is the same on every run. `None`
    /// when the pipeline rests with nothing queued (the end of the input, looping off).
    fn next_frame(&mut self) -> Result<Option<queue::Frame>, PlayerError> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            let full = self.shared.frames.len() >= self.shared.frames.capacity();
            if full || self.shared.activity.running() == 0 {
                if let Some(frame) = self.shared.frames.pop() {
                    // The read thread may be waiting for the frame queue to empty (end
                    // of the input), the decoder for space.
                    self.shared.gate.kick();
                    return Ok(Some(frame));
                }
                if let Some(e) = lock(&self.shared.failure).take() {
                    return Err(e);
                }
                if self.shared.activity.running() == 0 {
                    return Ok(None);
                }
            }
            if started.elapsed() >= self.shared.settings.settle_bound {
                self.settle()?;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    fn stream_timing(&self, stream: usize) -> (f64, f64) {
        let streams = lock(&self.shared.streams);
        let info = streams.iter().find(|s| s.index == stream);
        let tb = info.map_or(0.0, |s| f64::from(s.time_base));
        let fps = info.map_or(0.0, |s| f64::from(s.frame_rate));
        (tb, if fps > 0.0 { 1.0 / fps } else { SYNC_MIN })
    }

    fn show(&mut self, frames: u64, step: bool) -> Result<Progress, PlayerError> {
        let mut progress = Progress::default();
        let settings = self.shared.settings.clone();
        while progress.shown < frames && !self.presenter.paused {
            let Some(frame) = self.next_frame()? else {
                progress.ended = true;
                break;
            };
            if frame.serial != self.shared.packets.serial() {
                progress.stale += 1;
                discard(frame, settings.stale);
                continue;
            }
            let (tb, nominal) = self.stream_timing(frame.stream);
            let pts = frame.pts as f64 * tb;
            let p = &mut self.presenter;
            if p.last_serial != Some(frame.serial) {
                // The first frame after a seek, a loop or a switch: the frame timer
                // starts again, and the external clock goes to where playback now is
                // (ffplay sets it to the seek target).
                p.frame_timer = p.now;
                p.last_serial = Some(frame.serial);
                p.last_pts = None;
                p.external.set(pts, p.now);
            }
            let duration = match p.last_pts {
                Some(last) if pts > last && pts - last < 10.0 => pts - last,
                _ => nominal,
            };
            p.last_pts = Some(pts);
            let mut delay = duration;
            if settings.master == MasterClock::External {
                delay = target_delay(delay, p.video.get(p.now) - p.external.get(p.now));
            }
            let due = p.frame_timer + delay;
            if p.now < due {
                p.now = due; // the refresh loop would sleep until then
            }
            p.frame_timer = due;
            if delay > 0.0 && p.now - p.frame_timer > SYNC_MAX {
                p.frame_timer = p.now;
            }
            p.video.set(pts, p.now);
            if settings.master == MasterClock::Video {
                p.external.set(pts, p.now);
            }
            let drops = match settings.framedrop {
                FrameDrop::Auto => settings.master != MasterClock::Video,
                FrameDrop::Always => true,
                FrameDrop::Never => false,
            };
            if drops && !step {
                if let Some((next_serial, next_pts)) = self.shared.frames.peek() {
                    let next_duration = (next_pts as f64 * tb - pts).max(0.0);
                    if next_serial == frame.serial && p.now > p.frame_timer + next_duration {
                        p.dropped += 1;
                        progress.dropped += 1;
                        drop(frame); // late, not stale: released properly in every variant
                        continue;
                    }
                }
            }
            if settings.record {
                p.log.push(Shown {
                    stream: frame.stream,
                    pts: frame.pts,
                    luma: luma_checksum(frame.picture()),
                });
            }
            p.position = pts;
            p.shown = Some(frame);
            p.now += settings.display_cost;
            progress.shown += 1;
        }
        Ok(progress)
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn discard(frame: queue::Frame, how: Discard) {
    match how {
        Discard::Unref => drop(frame),
        Discard::Forget => frame.forget(),
    }
}

/// ffplay's `compute_target_delay`: how long to show the previous frame when the video
/// is `diff` seconds ahead of (positive) or behind the master clock.
fn target_delay(delay: f64, diff: f64) -> f64 {
    let threshold = delay.clamp(SYNC_MIN, SYNC_MAX);
    if diff.is_nan() || diff.abs() >= 10.0 {
        delay
    } else if diff <= -threshold {
        (delay + diff).max(0.0)
    } else if diff >= threshold && delay > FRAMEDUP {
        delay + diff
    } else if diff >= threshold {
        2.0 * delay
    } else {
        delay
    }
}

/// FNV-1a over the visible luma samples, row by row.
pub fn luma_checksum(picture: &ffmpeg::frame::Video) -> u64 {
    let (width, height) = (picture.width() as usize, picture.height() as usize);
    let stride = picture.stride(0);
    let data = picture.data(0);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for row in 0..height {
        for &byte in &data[row * stride..row * stride + width] {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
