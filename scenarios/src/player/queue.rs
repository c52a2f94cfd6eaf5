//! The player's queues, after ffplay's: a packet queue per stream (serials bumped by a
//! flush, `abort`, a blocking `get`), a bounded frame queue whose `push` blocks while it
//! is full, and the gate the read thread sleeps on. Packets and frames are real
//! `AVPacket`s and `AVFrame`s owned by [`Packet`] and [`Frame`], which keep a
//! process-wide [`census`] of what is alive.
//!
//! Every wait goes through [`Sleepers`], which keeps [`Activity`]'s count of pipeline
//! threads that are not asleep exact: the thread that wakes a sleeper counts it awake
//! before it lets go of the lock. When the count is zero and the presenter does nothing,
//! nothing can change any more, so the heap can be read at an exact quiescent point.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;

/// Pipeline objects alive in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// [`Packet`]s alive (queued, in a decoder's hands, or forgotten by a control).
    pub packets: i64,
    /// Their payload bytes.
    pub packet_bytes: i64,
    /// [`Frame`]s alive (queued, on screen, or forgotten by a control).
    pub frames: i64,
}

static PACKETS: AtomicI64 = AtomicI64::new(0);
static PACKET_BYTES: AtomicI64 = AtomicI64::new(0);
static FRAMES: AtomicI64 = AtomicI64::new(0);

/// What is alive now, process-wide. A packet or frame a control forgot stays counted:
/// its `Drop` never ran, and neither did its unref.
pub fn census() -> Census {
    Census {
        packets: PACKETS.load(Ordering::Relaxed),
        packet_bytes: PACKET_BYTES.load(Ordering::Relaxed),
        frames: FRAMES.load(Ordering::Relaxed),
    }
}

/// A demuxed packet, counted in the [`census`] while it lives; dropping it unrefs it.
pub struct Packet {
    inner: ffmpeg::Packet,
    bytes: i64,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("stream", &self.inner.stream())
            .field("pts", &self.inner.pts())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Packet {
    /// Takes ownership of `inner`.
    pub fn new(inner: ffmpeg::Packet) -> Self {
        let bytes = inner.size() as i64;
        PACKETS.fetch_add(1, Ordering::Relaxed);
        PACKET_BYTES.fetch_add(bytes, Ordering::Relaxed);
        Packet { inner, bytes }
    }

    /// Takes `from`'s reference (`av_packet_move_ref`, as ffplay's queue put does),
    /// leaving `from` blank for the next read.
    #[inline(never)]
    pub fn take_from(from: &mut ffmpeg::Packet) -> Self {
        Packet::new(crate::ffi::move_packet(from))
    }

    /// The `AVPacket`.
    pub fn get(&self) -> &ffmpeg::Packet {
        &self.inner
    }

    /// Payload bytes.
    pub fn size(&self) -> usize {
        self.bytes as usize
    }

    /// Never unrefs it: the positive control's mistake (the payload buffer stays
    /// allocated for good, and the census keeps counting it).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        PACKETS.fetch_sub(1, Ordering::Relaxed);
        PACKET_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        // `inner` drops after this body: av_packet_unref.
    }
}

/// A decoded picture, with the serial of the packets it came from; counted in the
/// [`census`] while it lives; dropping it frees the `AVFrame` and its buffer references.
pub struct Frame {
    inner: ffmpeg::frame::Video,
    /// Presentation time in the stream's time base.
    pub pts: i64,
    /// Serial of the packet queue when its packets were queued.
    pub serial: u64,
    /// The stream it was decoded from.
    pub stream: usize,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("pts", &self.pts)
            .field("serial", &self.serial)
            .field("stream", &self.stream)
            .finish()
    }
}

impl Frame {
    /// Takes ownership of a decoded picture.
    pub fn new(inner: ffmpeg::frame::Video, pts: i64, serial: u64, stream: usize) -> Self {
        FRAMES.fetch_add(1, Ordering::Relaxed);
        Frame {
            inner,
            pts,
            serial,
            stream,
        }
    }

    /// The picture.
    pub fn picture(&self) -> &ffmpeg::frame::Video {
        &self.inner
    }

    /// Never frees it: the positive control's mistake (the `AVFrame` and the decoder's
    /// pooled buffers it references stay allocated, and the census keeps counting it).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        FRAMES.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these states half-changed: every update is a
    // few field writes with no call that can panic in between.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many pipeline threads are not asleep in one of the queues' waits.
#[derive(Debug, Default)]
pub struct Activity {
    running: AtomicUsize,
}

impl Activity {
    /// Counts a thread about to start (before it is spawned).
    pub fn started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    /// Uncounts a thread that is about to end.
    pub fn ended(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Threads not asleep.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Waits until no pipeline thread runs; false if `bound` passes first.
    pub fn wait_idle(&self, bound: Duration) -> bool {
        wait_until(bound, || self.running() == 0)
    }
}

/// Polls `done` (backing off from 20 µs to 1 ms) until it holds; false if `bound`
/// passes first. For the caller's thread, which is not one of the pipeline's and so has
/// nothing to be woken by.
pub fn wait_until(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    let mut pause = Duration::from_micros(20);
    while !done() {
        if started.elapsed() >= bound {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
    true
}

/// The threads asleep on one condition variable.
#[derive(Debug, Default)]
struct Sleepers {
    count: usize,
    generation: u64,
}

impl Sleepers {
    /// Sleeps on `cond` until a [`Sleepers::wake`] (spurious wake-ups are slept
    /// through). `sleepers` finds this set inside the guarded state.
    fn sleep<'a, T>(
        mut guard: MutexGuard<'a, T>,
        cond: &Condvar,
        activity: &Activity,
        sleepers: fn(&mut T) -> &mut Sleepers,
    ) -> MutexGuard<'a, T> {
        let set = sleepers(&mut guard);
        set.count += 1;
        let generation = set.generation;
        activity.running.fetch_sub(1, Ordering::SeqCst);
        loop {
            guard = cond.wait(guard).unwrap_or_else(PoisonError::into_inner);
            if sleepers(&mut guard).generation != generation {
                return guard;
            }
        }
    }

    /// Wakes every sleeper, counting them awake before the caller's lock is released.
    fn wake(&mut self, cond: &Condvar, activity: &Activity) {
        if self.count > 0 {
            activity.running.fetch_add(self.count, Ordering::SeqCst);
            self.count = 0;
            self.generation += 1;
            cond.notify_all();
        }
    }
}

/// Where a pipeline thread is, for the watchdog: its name, its state, and whether it
/// has ended.
#[derive(Debug)]
pub struct Slot {
    name: String,
    state: Mutex<&'static str>,
    alive: AtomicBool,
}

impl Slot {
    /// A slot for a thread called `name`, alive.
    pub fn new(name: String) -> Arc<Slot> {
        Arc::new(Slot {
            name,
            state: Mutex::new("starting"),
            alive: AtomicBool::new(true),
        })
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records where the thread is.
    pub fn set(&self, state: &'static str) {
        *lock(&self.state) = state;
    }

    /// Where the thread is.
    pub fn state(&self) -> &'static str {
        *lock(&self.state)
    }

    /// Marks the thread ended (its last act).
    pub fn end(&self) {
        self.set("ended");
        self.alive.store(false, Ordering::SeqCst);
    }

    /// Whether the thread has not ended.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Waits until the thread has ended; false if `bound` passes first.
    pub fn wait_end(&self, bound: Duration) -> bool {
        wait_until(bound, || !self.alive())
    }
}

/// The queue was aborted: nothing goes in or comes out until it is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue aborted")]
pub struct Aborted;

/// What travels through a packet queue.
#[derive(Debug)]
pub enum Item {
    /// A packet of the stream.
    Packet(Packet),
    /// End of the stream: the decoder drains (ffplay's null packet).
    Drain,
}

/// What a flush does with the packets it takes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Drops them (unref): correct.
    Unref,
    /// Forgets them without unref: the positive controls' mistake.
    Forget,
}

#[derive(Debug, Default)]
struct PacketState {
    items: VecDeque<(u64, Item)>,
    serial: u64,
    aborted: bool,
    bytes: usize,
    high_water: usize,
    getters: Sleepers,
}

/// ffplay's `PacketQueue`: packets in, tagged with the queue's serial; a flush empties
/// it and bumps the serial, so anything decoded from older packets is recognisably
/// stale.
#[derive(Debug)]
pub struct PacketQueue {
    state: Mutex<PacketState>,
    cond: Condvar,
    activity: Arc<Activity>,
}

/// What [`PacketQueue::get`] found.
#[derive(Debug)]
pub enum Got {
    /// An item and the serial it was queued under.
    Item(u64, Item),
    /// Nothing queued (non-blocking get).
    Empty,
    /// The queue was aborted.
    Aborted,
}

impl PacketQueue {
    /// An aborted, empty queue (as ffplay's starts): [`PacketQueue::start`] opens it.
    pub fn new(activity: Arc<Activity>) -> Self {
        PacketQueue {
            state: Mutex::new(PacketState {
                aborted: true,
                ..PacketState::default()
            }),
            cond: Condvar::new(),
            activity,
        }
    }

    /// Opens the queue for a new decoder: not aborted, and a new serial.
    pub fn start(&self) {
        let mut s = lock(&self.state);
        s.aborted = false;
        s.serial += 1;
    }

    /// Queues `item` under the current serial. An aborted queue refuses it, and the
    /// item is dropped (unref) on the way out.
    pub fn put(&self, item: Item) -> Result<(), Aborted> {
        let mut s = lock(&self.state);
        if s.aborted {
            return Err(Aborted);
        }
        if let Item::Packet(p) = &item {
            s.bytes += p.size();
        }
        let serial = s.serial;
        s.items.push_back((serial, item));
        s.high_water = s.high_water.max(s.items.len());
        s.getters.wake(&self.cond, &self.activity);
        Ok(())
    }

    /// Takes the oldest item; with `block`, sleeps while the queue is empty (and not
    /// aborted). `slot` records the wait for the watchdog.
    pub fn get(&self, block: bool, slot: &Slot) -> Got {
        let mut s = lock(&self.state);
        loop {
            if s.aborted {
                return Got::Aborted;
            }
            if let Some((serial, item)) = s.items.pop_front() {
                if let Item::Packet(p) = &item {
                    s.bytes -= p.size();
                }
                return Got::Item(serial, item);
            }
            if !block {
                return Got::Empty;
            }
            slot.set("waiting for packets");
            s = Sleepers::sleep(s, &self.cond, &self.activity, |s| &mut s.getters);
            slot.set("running");
        }
    }

    /// Empties the queue and bumps the serial (a seek). `discard` says what happens to
    /// the packets taken out.
    pub fn flush(&self, discard: Discard) {
        let items = {
            let mut s = lock(&self.state);
            s.serial += 1;
            s.bytes = 0;
            std::mem::take(&mut s.items)
        };
        // Released outside the lock: unref may take a while for big packets.
        for (_, item) in items {
            match (item, discard) {
                (Item::Packet(p), Discard::Forget) => p.forget(),
                (item, _) => drop(item),
            }
        }
    }

    /// Aborts: every waiter returns [`Got::Aborted`], every put is refused.
    pub fn abort(&self) {
        let mut s = lock(&self.state);
        s.aborted = true;
        s.getters.wake(&self.cond, &self.activity);
    }

    /// The current serial.
    pub fn serial(&self) -> u64 {
        lock(&self.state).serial
    }

    /// Queued items (packets and drain markers).
    pub fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queued payload bytes.
    pub fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    /// The most items ever queued at once.
    pub fn high_water(&self) -> usize {
        lock(&self.state).high_water
    }
}

#[derive(Debug, Default)]
struct FrameState {
    frames: VecDeque<Frame>,
    aborted: bool,
    high_water: usize,
    putters: Sleepers,
}

/// ffplay's `FrameQueue`: at most `capacity` decoded frames; the decoder's push sleeps
/// while it is full, the presenter takes frames without waiting.
#[derive(Debug)]
pub struct FrameQueue {
    state: Mutex<FrameState>,
    cond: Condvar,
    activity: Arc<Activity>,
    capacity: usize,
}

impl FrameQueue {
    /// An empty queue of `capacity` frames (at least one).
    pub fn new(capacity: usize, activity: Arc<Activity>) -> Self {
        FrameQueue {
            state: Mutex::new(FrameState::default()),
            cond: Condvar::new(),
            activity,
            capacity: capacity.max(1),
        }
    }

    /// Its bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `frame`, sleeping while the queue is full. On abort the frame is
    /// dropped and the push fails, unless `deaf` (a control that replays a wait which
    /// forgot to check for abort: it sleeps on until someone takes a frame).
    pub fn push(&self, frame: Frame, deaf: bool, slot: &Slot) -> Result<(), Aborted> {
        let mut s = lock(&self.state);
        loop {
            if s.aborted && !deaf {
                return Err(Aborted);
            }
            if s.frames.len() < self.capacity {
                break;
            }
            slot.set(if deaf {
                "waiting for frame-queue space (deaf to abort)"
            } else {
                "waiting for frame-queue space"
            });
            s = Sleepers::sleep(s, &self.cond, &self.activity, |s| &mut s.putters);
            slot.set("running");
        }
        s.frames.push_back(frame);
        s.high_water = s.high_water.max(s.frames.len());
        Ok(())
    }

    /// Takes the oldest frame, if any, and wakes a decoder waiting for space.
    pub fn pop(&self) -> Option<Frame> {
        let mut s = lock(&self.state);
        let frame = s.frames.pop_front()?;
        s.putters.wake(&self.cond, &self.activity);
        Some(frame)
    }

    /// The serial and presentation time of the oldest frame, left queued (ffplay's
    /// `peek_next` once the frame on its way to the screen is taken, for frame dropping).
    pub fn peek(&self) -> Option<(u64, i64)> {
        lock(&self.state).frames.front().map(|f| (f.serial, f.pts))
    }

    /// Aborts: a waiting push gives up (unless deaf).
    pub fn abort(&self) {
        let mut s = lock(&self.state);
        s.aborted = true;
        s.putters.wake(&self.cond, &self.activity);
    }

    /// Accepts pushes again.
    pub fn start(&self) {
        lock(&self.state).aborted = false;
    }

    /// Takes every frame out, for the presenter to discard.
    pub fn drain(&self) -> Vec<Frame> {
        let mut s = lock(&self.state);
        let frames: Vec<Frame> = s.frames.drain(..).collect();
        s.putters.wake(&self.cond, &self.activity);
        frames
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        lock(&self.state).frames.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most frames ever queued at once.
    pub fn high_water(&self) -> usize {
        lock(&self.state).high_water
    }
}

#[derive(Debug, Default)]
struct GateState {
    kicked: bool,
    sleepers: Sleepers,
}

/// What the read thread sleeps on (ffplay's `continue_read_thread`): a kick sets a flag
/// and wakes it, so a kick that comes between its checks and its sleep is never lost.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    cond: Condvar,
    activity: Arc<Activity>,
}

impl Gate {
    /// A gate with no kick pending.
    pub fn new(activity: Arc<Activity>) -> Self {
        Gate {
            state: Mutex::new(GateState::default()),
            cond: Condvar::new(),
            activity,
        }
    }

    /// Something the read thread waits for may have changed.
    pub fn kick(&self) {
        let mut s = lock(&self.state);
        s.kicked = true;
        s.sleepers.wake(&self.cond, &self.activity);
    }

    /// Forgets a pending kick: the caller is about to look at everything anyway.
    pub fn clear(&self) {
        lock(&self.state).kicked = false;
    }

    /// Sleeps until kicked; returns at once if a kick came since the last
    /// [`Gate::clear`].
    pub fn sleep(&self, slot: &Slot, why: &'static str) {
        let mut s = lock(&self.state);
        if !s.kicked {
            slot.set(why);
            s = Sleepers::sleep(s, &self.cond, &self.activity, |s| &mut s.sleepers);
            slot.set("running");
        }
        s.kicked = false;
    }
}
