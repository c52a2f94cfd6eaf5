//! Sampled allocation stacks: about one allocation per `interval` bytes records its raw
//! stack into a fixed table keyed by pointer; freeing a sampled pointer removes it.
//!
//! Sampling is Poisson over bytes (tcmalloc, heapprofd): each thread counts down bytes
//! from an exponentially distributed draw with mean `interval`; the allocation that takes
//! the countdown to zero or below is sampled. A sample of `size` bytes stands for
//! `1 / (1 - exp(-size / interval))` allocations of that size: its weight, computed when
//! it is taken and kept with it.
//!
//! A `realloc` that grows a block draws the countdown over the bytes it adds, not the
//! whole block: the block's own sample, if it has one, moves with it and keeps the stack
//! that allocated it, and a sampled growth is kept in the block's slot as a sample of its
//! own at the stack of the `realloc` that grew it ([`GROWTH_STACKS`] of them a block,
//! each counting its samples). So a block that grows across a judged window gains samples
//! at the call that grows it, and a bounded buffer freed or replaced loses them again.
//!
//! Every sample also adds to its stack's entry in a second static table
//! ([`stack_profile`]): estimated bytes and blocks allocated from that stack over the whole
//! process, live now, and at most live at once. That is what a heap profile (DHAT's
//! `tb`/`eb`/`mb`) needs, for freed allocations as well as live ones.
//!
//! The tables are static arrays that never allocate. Inserting and removing take one
//! spin lock, held only while slots are written, never while calling anything that can
//! allocate. `fork` takes the lock in its prepare handler so a child never inherits it
//! held by a thread that does not exist in the child.

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Raw frames captured per sample.
pub const MAX_FRAMES: usize = 48;
/// Capacity of the live-sample table (a power of two).
pub const TABLE_SLOTS: usize = 1 << 15;
/// Slots probed from a pointer's home slot before a sample is dropped as "table full".
const MAX_PROBE: usize = 64;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;
const DEFAULT_INTERVAL: u64 = 512 * 1024;
/// Capacity of the per-stack table (a power of two).
pub const STACK_SLOTS: usize = 1 << 12;
/// A sample whose stack found no entry in the per-stack table.
const NO_STACK: u32 = u32::MAX;

static INTERVAL: AtomicU64 = AtomicU64::new(DEFAULT_INTERVAL);
static EPOCH: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static LOCK: AtomicBool = AtomicBool::new(false);
static STACKS_DROPPED: AtomicU64 = AtomicU64::new(0);
/// The first epoch of the window [`open_window`] opened (`u64::MAX`: none open).
static WINDOW_FROM: AtomicU64 = AtomicU64::new(u64::MAX);
/// Changes to the per-stack sums so far (samples added and removed).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// How many times the per-stack sums have changed: a snapshot is needed only when this
/// moved since the last one.
pub fn stack_generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

struct Slot {
    /// The sampled pointer, or EMPTY / TOMBSTONE. Read without the lock by `on_free`.
    ptr: AtomicUsize,
    /// Everything else: written only under LOCK while `ptr` is not yet published.
    data: UnsafeCell<SlotData>,
}

/// Stacks whose growth samples one block keeps apart; a growth from a further stack is
/// dropped (counted in [`SamplingStats::dropped`]).
pub const GROWTH_STACKS: usize = 2;

/// The sampled growths of one block from one `realloc` stack.
#[derive(Clone, Copy)]
struct Grown {
    /// The per-stack entry, or NO_STACK for an unused record.
    stack: u32,
    /// Samples taken, and of those the ones taken inside the open window.
    samples: u32,
    window: u32,
    /// Estimated bytes and blocks (the samples' sizes and weights summed).
    bytes: f64,
    blocks: f64,
    /// The epoch of its latest sample.
    epoch: u64,
}

const NO_GROWTH: Grown = Grown {
    stack: NO_STACK,
    samples: 0,
    window: 0,
    bytes: 0.0,
    blocks: 0.0,
    epoch: 0,
};

#[derive(Clone, Copy)]
pub(crate) struct SlotData {
    /// Whether the block's allocation itself was sampled (`size`, `epoch`, `frames`,
    /// `stack` and `weight` describe it); a slot may hold only growth samples.
    primary: bool,
    /// Samples of the bytes `realloc` added to the block.
    growth: [Grown; GROWTH_STACKS],
    size: usize,
    epoch: u64,
    depth: usize,
    frames: [usize; MAX_FRAMES],
    /// The sample's entry in the per-stack table, or NO_STACK.
    stack: u32,
    /// Allocations this sample stands for (1 / the probability it was sampled).
    weight: f64,
}

/// One stack's sums, all estimates from samples.
#[derive(Clone, Copy)]
struct StackData {
    /// Hash of the frames; 0 marks a free entry.
    hash: u64,
    depth: usize,
    frames: [usize; MAX_FRAMES],
    samples: u64,
    total_bytes: f64,
    total_blocks: f64,
    live_bytes: f64,
    live_blocks: f64,
    max_bytes: f64,
    max_blocks: f64,
    /// Samples from it live now.
    live_samples: u64,
    /// `live_bytes`, `live_blocks` and `live_samples` when [`open_window`] ran.
    mark_bytes: f64,
    mark_blocks: f64,
    mark_samples: u64,
    /// Its live samples allocated in the window [`open_window`] opened, kept as samples
    /// come and go.
    window_samples: u64,
    /// `live_bytes`, `live_blocks`, `live_samples` and `window_samples` at each of the
    /// last [`SNAPSHOTS`] [`snapshot_window`]s, by their slot.
    snap_bytes: [f64; SNAPSHOTS],
    snap_blocks: [f64; SNAPSHOTS],
    snap_samples: [u64; SNAPSHOTS],
    snap_window: [u64; SNAPSHOTS],
}

/// How many of the last window ends [`snapshot_window`] froze are kept: a program's own
/// teardown may run between two of them, and the caller picks the end that came before
/// it ([`window_growth_at`]).
pub const SNAPSHOTS: usize = 4;

/// The slot the last [`snapshot_window`] wrote.
static SNAP_AT: AtomicUsize = AtomicUsize::new(0);

const EMPTY_STACK: StackData = StackData {
    hash: 0,
    depth: 0,
    frames: [0; MAX_FRAMES],
    samples: 0,
    total_bytes: 0.0,
    total_blocks: 0.0,
    live_bytes: 0.0,
    live_blocks: 0.0,
    max_bytes: 0.0,
    max_blocks: 0.0,
    live_samples: 0,
    mark_bytes: 0.0,
    mark_blocks: 0.0,
    mark_samples: 0,
    window_samples: 0,
    snap_bytes: [0.0; SNAPSHOTS],
    snap_blocks: [0.0; SNAPSHOTS],
    snap_samples: [0; SNAPSHOTS],
    snap_window: [0; SNAPSHOTS],
};

/// The per-stack table: only touched under LOCK.
struct Stacks(UnsafeCell<[StackData; STACK_SLOTS]>);

// SAFETY: the array is only read or written while LOCK is held.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new([EMPTY_STACK; STACK_SLOTS]));

/// The per-stack entries in use, in the order they were taken, so a snapshot touches only
/// those: only touched under LOCK.
struct Used(UnsafeCell<([u16; STACK_SLOTS], usize)>);

// SAFETY: only read or written while LOCK is held.
unsafe impl Sync for Used {}

static USED: Used = Used(UnsafeCell::new(([0; STACK_SLOTS], 0)));

struct Table([Slot; TABLE_SLOTS]);

// SAFETY: `Slot::data` is only written under LOCK, and only read under LOCK (by
// `live_samples`); `Slot::ptr` is atomic. No reference to slot data escapes the lock.
unsafe impl Sync for Table {}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    ptr: AtomicUsize::new(EMPTY),
    data: UnsafeCell::new(SlotData {
        primary: false,
        growth: [Grown {
            stack: 0,
            ..NO_GROWTH
        }; GROWTH_STACKS],
        size: 0,
        epoch: 0,
        depth: 0,
        frames: [0; MAX_FRAMES],
        // Never read: an insert writes the whole of a slot's data before publishing its
        // pointer. Zero keeps the table all zeros, in `.bss`: its pages are made only
        // when a sample first lands in them, and the library's file stays small.
        stack: 0,
        weight: 0.0,
    }),
};

static TABLE: Table = Table([SLOT; TABLE_SLOTS]);

/// Per home slot, how many live samples hashed there: a free whose home counts none
/// returns after one load from this 32 KiB array instead of a cache-missing load from the
/// slot table (slots are hundreds of bytes apart). A live sample sits within `MAX_PROBE`
/// slots of its home, so a count never exceeds 64 and fits a byte. Changed only under
/// LOCK, alongside the slot's `ptr`.
#[allow(clippy::declare_interior_mutable_const)]
const NO_HOMES: AtomicU8 = AtomicU8::new(0);
static HOMES: [AtomicU8; TABLE_SLOTS] = [NO_HOMES; TABLE_SLOTS];

/// Where the sampler's static tables lie: start address and length of each.
pub(crate) fn table_ranges() -> [(usize, usize); 4] {
    [
        crate::range_of(&TABLE),
        crate::range_of(&STACKS),
        crate::range_of(&USED),
        crate::range_of(&HOMES),
    ]
}

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    /// Bytes left before the next sample, and the interval they were drawn for. A
    /// different current interval (or 0, never yet drawn: sampling with interval 0 never
    /// gets here) means a fresh draw, so a new interval takes effect at once.
    static COUNTDOWN: Cell<(i64, u64)> = const { Cell::new((0, 0)) };
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A live sampled allocation, copied out of the table.
#[derive(Debug, Clone)]
pub struct LiveSample {
    /// The sampled block's address.
    pub ptr: usize,
    /// Usable size of the sampled block (of a growth, the bytes it added).
    pub size: usize,
    /// The epoch (see [`set_epoch`]) when it was allocated.
    pub epoch: u64,
    /// Allocations this sample stands for (1 / the probability it was sampled, at the
    /// interval in force when it was taken).
    pub weight: f64,
    /// Raw instruction pointers, innermost first.
    pub frames: Vec<usize>,
}

/// One allocation stack's sampled sums (estimates: each sample stands for the
/// allocations it was drawn from); `avsoak::profile::RawStack`.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StackRecord {
    /// Raw instruction pointers, innermost first.
    pub frames: Vec<usize>,
    /// Samples taken from this stack.
    pub samples: u64,
    /// Estimated bytes allocated from it over the whole process.
    pub total_bytes: f64,
    /// Estimated blocks allocated from it.
    pub total_blocks: f64,
    /// Estimated bytes from it still live.
    pub live_bytes: f64,
    /// Estimated blocks from it still live.
    pub live_blocks: f64,
    /// The most estimated bytes from it live at once.
    pub max_bytes: f64,
    /// The most estimated blocks from it live at once.
    pub max_blocks: f64,
}

/// One allocation stack's sampled live sums where a judged window opened
/// ([`open_window`]) and where its end was last frozen ([`snapshot_window`]): what
/// growth-ranked suspects are made of.
#[derive(Debug, Clone)]
pub struct StackGrowth {
    /// Raw instruction pointers, innermost first.
    pub frames: Vec<usize>,
    /// Estimated live bytes from it as the window opened.
    pub start_bytes: f64,
    /// Estimated live blocks from it as the window opened.
    pub start_blocks: f64,
    /// Samples from it live as the window opened.
    pub start_samples: u64,
    /// Estimated live bytes from it at the window's end.
    pub end_bytes: f64,
    /// Estimated live blocks from it at the window's end.
    pub end_blocks: f64,
    /// Samples from it live at the window's end.
    pub end_samples: u64,
    /// Of those, the ones allocated in the window (at its epoch or later).
    pub born_samples: u64,
}

/// Counts about the sampler since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingStats {
    /// Samples recorded.
    pub taken: u64,
    /// Samples lost because the table had no free slot near the pointer's home.
    pub dropped: u64,
    /// Samples in the table now.
    pub live: usize,
    /// Samples whose stack found no room in the per-stack table (non-zero means the
    /// profile under-counts).
    pub stacks_dropped: u64,
}

/// The mean sampling interval in bytes; 0 means sampling is off.
pub fn sample_interval() -> u64 {
    INTERVAL.load(Ordering::Relaxed)
}

/// Sets the mean sampling interval in bytes (0 turns sampling off). Every thread redraws
/// its countdown at its next allocation, so the new mean applies from then on.
pub fn set_sample_interval(bytes: u64) {
    INTERVAL.store(bytes, Ordering::Relaxed);
}

/// Tags allocations sampled from now on with `epoch` (the soak runner uses the iteration
/// number, so suspects can be limited to allocations made after warm-up).
pub fn set_epoch(epoch: u64) {
    EPOCH.store(epoch, Ordering::Relaxed);
}

/// The current epoch.
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::Relaxed)
}

/// Sampler counts.
pub fn sampling_stats() -> SamplingStats {
    SamplingStats {
        taken: TAKEN.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
        live: LIVE.load(Ordering::Relaxed),
        stacks_dropped: STACKS_DROPPED.load(Ordering::Relaxed),
    }
}

/// Marks this thread as inside the sampler; nested allocations are counted but not
/// sampled. Resets on drop, so also when unwinding.
pub(crate) struct Reentrancy;

impl Reentrancy {
    pub(crate) fn enter() -> Option<Self> {
        IN_HOOK
            .try_with(|flag| {
                if flag.get() {
                    None
                } else {
                    flag.set(true);
                    Some(Reentrancy)
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Reentrancy {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|flag| flag.set(false));
    }
}

struct LockGuard;

impl LockGuard {
    fn acquire() -> Self {
        lock();
        LockGuard
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        unlock();
    }
}

fn lock() {
    let mut spins = 0u32;
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions and does not allocate.
            unsafe { libc::sched_yield() };
        }
    }
}

fn unlock() {
    LOCK.store(false, Ordering::Release);
}

/// xorshift64* step on this thread's state, seeded from the state's own address.
fn next_random() -> u64 {
    RNG.try_with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = (state as *const Cell<u64> as u64) ^ 0x9E37_79B9_7F4A_7C15;
            x |= 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
    .unwrap_or(0x2545_F491_4F6C_DD1D)
}

/// An exponential draw with mean `interval`, at least 1.
fn draw(interval: u64) -> i64 {
    // Uniform in (0, 1]: 53 random bits, never zero.
    let u = ((next_random() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let bytes = -u.ln() * interval as f64;
    bytes.clamp(1.0, i64::MAX as f64 / 2.0) as i64
}

#[inline(always)]
pub(crate) fn on_alloc(ptr: usize, size: usize) {
    if countdown(size) {
        record(ptr, size);
    }
}

/// Runs this thread's countdown down by `size` bytes: whether they reach a sample.
#[inline(always)]
fn countdown(size: usize) -> bool {
    let interval = INTERVAL.load(Ordering::Relaxed);
    if interval == 0 {
        return false;
    }
    COUNTDOWN
        .try_with(|countdown| {
            let (mut left, drawn_for) = countdown.get();
            if drawn_for != interval {
                left = draw(interval);
            }
            left -= size as i64;
            if left > 0 {
                countdown.set((left, interval));
                false
            } else {
                countdown.set((draw(interval), interval));
                true
            }
        })
        .unwrap_or(false)
}

/// The caller's stack, innermost first, into `frames`: how many were written. Call it
/// under the re-entrancy guard (the unwinder may allocate on its first use).
pub(crate) fn capture(frames: &mut [usize; MAX_FRAMES]) -> usize {
    capture_up_to(frames, MAX_FRAMES)
}

/// [`capture`], at most `most` frames: a walk's cost grows with its depth.
pub(crate) fn capture_up_to(frames: &mut [usize; MAX_FRAMES], most: usize) -> usize {
    let most = most.min(MAX_FRAMES);
    let mut depth = 0;
    // SAFETY: `trace_unsynchronized` requires that no other thread unwinds through the
    // same unsynchronized state at once; backtrace's Linux implementation calls libgcc's
    // `_Unwind_Backtrace`, which is thread-safe. We do not use the synchronized `trace`
    // because its global lock could be held by a thread that then allocates.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            frames[depth] = frame.ip() as usize;
            depth += 1;
            depth < most
        });
    }
    depth
}

/// Allocations of `size` bytes a sample of that size stands for at the current interval:
/// 1 / the chance such an allocation is sampled.
fn weight_of(size: usize) -> f64 {
    let interval = INTERVAL.load(Ordering::Relaxed).max(1);
    let probability = 1.0 - (-(size as f64) / interval as f64).exp();
    if probability > 0.0 {
        1.0 / probability
    } else {
        1.0
    }
}

#[cold]
fn record(ptr: usize, size: usize) {
    let Some(_inside) = Reentrancy::enter() else {
        return;
    };
    let mut frames = [0usize; MAX_FRAMES];
    let depth = capture(&mut frames);
    let weight = weight_of(size);
    let mut data = SlotData {
        primary: true,
        growth: [NO_GROWTH; GROWTH_STACKS],
        size,
        epoch: EPOCH.load(Ordering::Relaxed),
        depth,
        frames,
        stack: NO_STACK,
        weight,
    };
    let _locked = LockGuard::acquire();
    data.stack = add_to_stack(&frames[..depth], size, weight, data.epoch);
    TAKEN.fetch_add(1, Ordering::Relaxed);
    insert(ptr, data);
}

/// Puts a slot's data in the table under `ptr`. Without a slot its free is never seen:
/// what it holds counts as allocated from its stacks, not as live. Caller holds LOCK.
fn insert(ptr: usize, data: SlotData) {
    let home = slot_of(ptr);
    for probe in 0..MAX_PROBE {
        let slot = &TABLE.0[(home + probe) & (TABLE_SLOTS - 1)];
        let current = slot.ptr.load(Ordering::Relaxed);
        if current == EMPTY || current == TOMBSTONE {
            // SAFETY: LOCK is held, so no other thread writes or reads this slot's data;
            // `ptr` is published after the data with Release.
            unsafe { *slot.data.get() = data };
            slot.ptr.store(ptr, Ordering::Release);
            HOMES[home].fetch_add(1, Ordering::Relaxed);
            LIVE.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    release(&data);
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// Takes everything a slot holds off its stacks' live sums. Caller holds LOCK.
fn release(data: &SlotData) {
    if data.primary {
        let window = u64::from(data.epoch >= WINDOW_FROM.load(Ordering::Relaxed));
        remove_from_stack(
            data.stack,
            data.size as f64 * data.weight,
            data.weight,
            1,
            window,
        );
    }
    for grown in data.growth.iter().filter(|g| g.stack != NO_STACK) {
        remove_from_stack(
            grown.stack,
            grown.bytes,
            grown.blocks,
            u64::from(grown.samples),
            u64::from(grown.window),
        );
    }
}

/// A `realloc` finished: the block now lives at `ptr` (0: it was freed, as
/// `realloc(p, 0)` does) and grew by `grown_by` bytes. The slot [`detach`] took goes back
/// under `ptr`, and the added bytes run down this thread's countdown like an allocation
/// of that size; when they reach a sample, it is kept in the block's slot at the stack
/// of this `realloc`.
#[inline(always)]
pub(crate) fn reattach(ptr: usize, detached: Option<SlotData>, grown_by: usize) {
    let due = ptr != 0 && grown_by > 0 && countdown(grown_by);
    if due || detached.is_some() {
        reattach_slow(ptr, detached, grown_by, due);
    }
}

#[cold]
fn reattach_slow(ptr: usize, detached: Option<SlotData>, grown_by: usize, due: bool) {
    let mut frames = [0usize; MAX_FRAMES];
    // Inside another hook (the unwinder's own allocations) nothing new is sampled, but a
    // detached slot still goes back.
    let inside = if due { Reentrancy::enter() } else { None };
    let depth = if inside.is_some() {
        capture(&mut frames)
    } else {
        0
    };
    let epoch = EPOCH.load(Ordering::Relaxed);
    let _locked = LockGuard::acquire();
    let mut data = detached.unwrap_or(SlotData {
        primary: false,
        growth: [NO_GROWTH; GROWTH_STACKS],
        size: 0,
        epoch,
        depth: 0,
        frames: [0; MAX_FRAMES],
        stack: NO_STACK,
        weight: 0.0,
    });
    if ptr == 0 {
        release(&data);
        return;
    }
    if inside.is_some() {
        let weight = weight_of(grown_by);
        let stack = add_to_stack(&frames[..depth], grown_by, weight, epoch);
        let window = u32::from(epoch >= WINDOW_FROM.load(Ordering::Relaxed));
        let record = data
            .growth
            .iter_mut()
            .find(|g| g.stack == stack || g.stack == NO_STACK);
        match record {
            Some(grown) if stack != NO_STACK => {
                grown.stack = stack;
                grown.samples += 1;
                grown.window += window;
                grown.bytes += grown_by as f64 * weight;
                grown.blocks += weight;
                grown.epoch = epoch;
                TAKEN.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                remove_from_stack(
                    stack,
                    grown_by as f64 * weight,
                    weight,
                    1,
                    u64::from(window),
                );
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if data.primary || data.growth.iter().any(|g| g.stack != NO_STACK) {
        insert(ptr, data);
    }
}

/// `ptr`'s slot and its home, read without the lock; `None` when `ptr` has no sample.
/// A pointer is freed or reallocated after its allocation returned, so a sample of it,
/// counted before that return, is visible here: no count at its home means no sample.
#[inline(always)]
fn find(ptr: usize) -> Option<(&'static Slot, usize)> {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let home = slot_of(ptr);
    if HOMES[home].load(Ordering::Relaxed) == 0 {
        return None;
    }
    for probe in 0..MAX_PROBE {
        let slot = &TABLE.0[(home + probe) & (TABLE_SLOTS - 1)];
        let current = slot.ptr.load(Ordering::Acquire);
        if current == EMPTY {
            return None;
        }
        if current == ptr {
            return Some((slot, home));
        }
    }
    None
}

/// Takes `ptr`'s slot out of the table under the lock, its samples taken off their
/// stacks' live sums when `release` asks, and returns what it held. Re-checked under the
/// lock: the lock-free read in [`find`] may have raced with a `live_samples` copy or an
/// insert into a neighbouring slot.
#[cold]
fn take(slot: &Slot, home: usize, ptr: usize, release_it: bool) -> Option<SlotData> {
    let _locked = LockGuard::acquire();
    if slot.ptr.load(Ordering::Relaxed) != ptr {
        return None;
    }
    // SAFETY: LOCK is held, so no other thread writes this slot's data.
    let data = unsafe { *slot.data.get() };
    if release_it {
        release(&data);
    }
    slot.ptr.store(TOMBSTONE, Ordering::Relaxed);
    HOMES[home].fetch_sub(1, Ordering::Relaxed);
    LIVE.fetch_sub(1, Ordering::Relaxed);
    Some(data)
}

/// Whether `ptr` is a block the sampler holds a sample of now. Lock-free, as a free's
/// lookup: a block is only asked about by a thread that holds a reference to it.
pub(crate) fn is_sampled(ptr: usize) -> bool {
    find(ptr).is_some()
}

#[inline(always)]
pub(crate) fn on_free(ptr: usize) {
    if let Some((slot, home)) = find(ptr) {
        take(slot, home, ptr, true);
    }
}

/// Takes `ptr`'s slot out of the table, if it has one, before `realloc` releases the
/// block: glibc may hand the old address to another thread at once. [`reattach`] puts it
/// back under the address the block lives at afterwards.
#[inline(always)]
pub(crate) fn detach(ptr: usize) -> Option<SlotData> {
    let (slot, home) = find(ptr)?;
    take(slot, home, ptr, false)
}

/// Adds a sample to its stack's entry and returns the entry (NO_STACK when the table has
/// no room near the stack's home). Caller holds LOCK.
fn add_to_stack(frames: &[usize], size: usize, weight: f64, epoch: u64) -> u32 {
    // FNV-1a over the frames, never 0 (0 marks a free entry).
    let hash = frames
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &ip| {
            (h ^ ip as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
        .max(1);
    // SAFETY: the caller holds LOCK, the only guard of STACKS; the reference does not
    // outlive this call.
    let stacks = unsafe { &mut *STACKS.0.get() };
    let home = (hash as usize) & (STACK_SLOTS - 1);
    for probe in 0..MAX_PROBE {
        let at = (home + probe) & (STACK_SLOTS - 1);
        let entry = &mut stacks[at];
        if entry.hash == 0 {
            entry.hash = hash;
            entry.depth = frames.len();
            entry.frames[..frames.len()].copy_from_slice(frames);
            // SAFETY: the caller holds LOCK, the only guard of USED; every entry is taken
            // once, so the list never holds more than STACK_SLOTS.
            let used = unsafe { &mut *USED.0.get() };
            used.0[used.1] = at as u16;
            used.1 += 1;
        } else if entry.hash != hash || entry.frames[..entry.depth] != *frames {
            continue;
        }
        let bytes = size as f64 * weight;
        GENERATION.fetch_add(1, Ordering::Relaxed);
        entry.samples += 1;
        entry.total_bytes += bytes;
        entry.total_blocks += weight;
        entry.live_bytes += bytes;
        entry.live_blocks += weight;
        entry.live_samples += 1;
        if epoch >= WINDOW_FROM.load(Ordering::Relaxed) {
            entry.window_samples += 1;
        }
        entry.max_bytes = entry.max_bytes.max(entry.live_bytes);
        entry.max_blocks = entry.max_blocks.max(entry.live_blocks);
        return at as u32;
    }
    STACKS_DROPPED.fetch_add(1, Ordering::Relaxed);
    NO_STACK
}

/// Takes freed samples off their stack's live sums: their estimated bytes and blocks,
/// how many they are and how many of them the open window took. Caller holds LOCK.
fn remove_from_stack(stack: u32, bytes: f64, blocks: f64, samples: u64, window: u64) {
    if stack == NO_STACK {
        return;
    }
    // SAFETY: the caller holds LOCK, the only guard of STACKS.
    let entry = unsafe { &mut (*STACKS.0.get())[stack as usize] };
    GENERATION.fetch_add(1, Ordering::Relaxed);
    entry.live_bytes = (entry.live_bytes - bytes).max(0.0);
    entry.live_blocks = (entry.live_blocks - blocks).max(0.0);
    entry.live_samples = entry.live_samples.saturating_sub(samples);
    entry.window_samples = entry.window_samples.saturating_sub(window);
}

/// Copies out every stack's sums. Like [`live_samples`], it runs under the re-entrancy
/// guard and allocates only outside the lock.
pub fn stack_profile() -> Vec<StackRecord> {
    let _inside = Reentrancy::enter();
    let mut raw: Vec<StackData> = Vec::with_capacity(STACK_SLOTS);
    {
        let _locked = LockGuard::acquire();
        // SAFETY: LOCK is held; the shared reference ends with this block.
        let stacks = unsafe { &*STACKS.0.get() };
        raw.extend(stacks.iter().filter(|e| e.hash != 0).copied());
    }
    raw.into_iter()
        .map(|e| StackRecord {
            frames: e.frames[..e.depth].to_vec(),
            samples: e.samples,
            total_bytes: e.total_bytes,
            total_blocks: e.total_blocks,
            live_bytes: e.live_bytes,
            live_blocks: e.live_blocks,
            max_bytes: e.max_bytes,
            max_blocks: e.max_blocks,
        })
        .collect()
}

/// Opens a judged window at `epoch` (the epoch allocations get from now on; no live
/// sample may carry it yet): copies each stack's live sums aside, and from now on each
/// stack also counts its live samples allocated in the window as they come and go, so a
/// [`snapshot_window`] can freeze the window's end cheaply, before a program tears down.
/// Nothing is allocated.
pub fn open_window(epoch: u64) {
    let _locked = LockGuard::acquire();
    // SAFETY: LOCK is held, the only guard of STACKS and USED; the references end with
    // this block.
    let (stacks, used) = unsafe { (&mut *STACKS.0.get(), &*USED.0.get()) };
    for &at in &used.0[..used.1] {
        let entry = &mut stacks[at as usize];
        entry.mark_bytes = entry.live_bytes;
        entry.mark_blocks = entry.live_blocks;
        entry.mark_samples = entry.live_samples;
        entry.window_samples = 0;
        entry.snap_bytes = [entry.live_bytes; SNAPSHOTS];
        entry.snap_blocks = [entry.live_blocks; SNAPSHOTS];
        entry.snap_samples = [entry.live_samples; SNAPSHOTS];
        entry.snap_window = [0; SNAPSHOTS];
    }
    WINDOW_FROM.store(epoch, Ordering::Relaxed);
}

/// Freezes an end of the window [`open_window`] opened at the sums as they stand now,
/// touching only the stacks in use (a few microseconds for hundreds of stacks), and
/// returns its slot for [`window_growth_at`]: the last [`SNAPSHOTS`] ends are kept.
/// Nothing is allocated.
pub fn snapshot_window() -> usize {
    let _locked = LockGuard::acquire();
    let at = (SNAP_AT.load(Ordering::Relaxed) + 1) % SNAPSHOTS;
    // SAFETY: LOCK is held, the only guard of STACKS and USED; the references end with
    // this block.
    let (stacks, used) = unsafe { (&mut *STACKS.0.get(), &*USED.0.get()) };
    for &entry_at in &used.0[..used.1] {
        let entry = &mut stacks[entry_at as usize];
        entry.snap_bytes[at] = entry.live_bytes;
        entry.snap_blocks[at] = entry.live_blocks;
        entry.snap_samples[at] = entry.live_samples;
        entry.snap_window[at] = entry.window_samples;
    }
    SNAP_AT.store(at, Ordering::Relaxed);
    at
}

/// [`window_growth_at`] the last [`snapshot_window`].
pub fn window_growth() -> Vec<StackGrowth> {
    window_growth_at(SNAP_AT.load(Ordering::Relaxed))
}

/// Every stack whose samples changed between [`open_window`] and the window end frozen
/// in `slot` (one of the last [`SNAPSHOTS`] [`snapshot_window`] returned), with the sums
/// at both ends and its samples from the window live at that end (as `born_samples`).
/// Runs under the re-entrancy guard and allocates only outside the lock.
pub fn window_growth_at(slot: usize) -> Vec<StackGrowth> {
    let at = slot % SNAPSHOTS;
    let _inside = Reentrancy::enter();
    let mut raw: Vec<StackData> = Vec::with_capacity(STACK_SLOTS);
    {
        let _locked = LockGuard::acquire();
        // SAFETY: LOCK is held, the only guard of STACKS and USED.
        let (stacks, used) = unsafe { (&*STACKS.0.get(), &*USED.0.get()) };
        raw.extend(
            used.0[..used.1]
                .iter()
                .map(|&entry_at| stacks[entry_at as usize])
                .filter(|e| {
                    let kept = e.snap_samples[at].saturating_sub(e.snap_window[at]);
                    e.snap_window[at] > 0 || e.mark_samples > kept
                }),
        );
    }
    let mut growth = Vec::with_capacity(raw.len());
    growth.extend(raw.iter().map(|e| StackGrowth {
        frames: e.frames[..e.depth].to_vec(),
        start_bytes: e.mark_bytes,
        start_blocks: e.mark_blocks,
        start_samples: e.mark_samples,
        end_bytes: e.snap_bytes[at],
        end_blocks: e.snap_blocks[at],
        end_samples: e.snap_samples[at],
        born_samples: e.snap_window[at],
    }));
    growth
}

fn slot_of(ptr: usize) -> usize {
    // Fibonacci hashing of the pointer without its always-zero low bits.
    ((ptr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) & (TABLE_SLOTS - 1)
}

/// Copies out the live samples allocated at `min_epoch` or later: a block's own sample,
/// and each stack's samples of its growth (one [`LiveSample`] for them all, their sizes
/// and weights summed).
///
/// The copy is made under the re-entrancy guard, so the allocations it makes are counted
/// but never sampled, and the table lock is never held while allocating.
pub fn live_samples(min_epoch: u64) -> Vec<LiveSample> {
    let _inside = Reentrancy::enter();
    let room = LIVE.load(Ordering::Relaxed) * (1 + GROWTH_STACKS) + 64;
    let mut raw: Vec<(usize, SlotData)> = Vec::with_capacity(room);
    {
        let _locked = LockGuard::acquire();
        // SAFETY: LOCK is held, the only guard of STACKS; the reference ends with this
        // block.
        let stacks = unsafe { &*STACKS.0.get() };
        for slot in TABLE.0.iter() {
            let ptr = slot.ptr.load(Ordering::Relaxed);
            if ptr == EMPTY || ptr == TOMBSTONE {
                continue;
            }
            // SAFETY: LOCK is held, so no writer touches the slot data while we read it.
            let data = unsafe { *slot.data.get() };
            if data.primary && data.epoch >= min_epoch && raw.len() < raw.capacity() {
                raw.push((ptr, data));
            }
            for grown in data.growth.iter().filter(|g| g.stack != NO_STACK) {
                if grown.epoch < min_epoch || raw.len() == raw.capacity() {
                    continue;
                }
                let entry = &stacks[grown.stack as usize];
                let blocks = grown.blocks.max(f64::MIN_POSITIVE);
                raw.push((
                    ptr,
                    SlotData {
                        primary: true,
                        growth: [NO_GROWTH; GROWTH_STACKS],
                        size: (grown.bytes / blocks).round() as usize,
                        epoch: grown.epoch,
                        depth: entry.depth,
                        frames: entry.frames,
                        stack: grown.stack,
                        weight: blocks,
                    },
                ));
            }
        }
    }
    raw.into_iter()
        .map(|(ptr, data)| LiveSample {
            ptr,
            size: data.size,
            epoch: data.epoch,
            weight: data.weight,
            frames: data.frames[..data.depth].to_vec(),
        })
        .collect()
}

/// The environment variable the constructor reads the sampling interval from (bytes; 0
/// turns sampling off): a C-string copy of `avsoak::soak::transport::SAMPLE_INTERVAL_ENV`,
/// which a test of `avsoak` checks equal.
pub const SAMPLE_INTERVAL_ENV: &core::ffi::CStr = c"AVSOAK_SAMPLE_INTERVAL";

/// Reads [`SAMPLE_INTERVAL_ENV`] and installs the fork handlers. Runs in the
/// constructor, before `main`.
pub(crate) fn init_from_env() {
    // SAFETY: getenv with a NUL-terminated name; the result is only read, before any
    // thread of the program exists that could call setenv.
    let value = unsafe { libc::getenv(SAMPLE_INTERVAL_ENV.as_ptr()) };
    if !value.is_null() {
        // SAFETY: getenv returned a NUL-terminated string owned by the environment.
        let bytes = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
        if let Some(n) = parse_u64(bytes) {
            INTERVAL.store(n, Ordering::Relaxed);
        }
    }
    // SAFETY: the three handlers are plain `extern "C" fn()` that only touch LOCK.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

extern "C" fn fork_prepare() {
    lock();
}

extern "C" fn fork_parent() {
    unlock();
}

extern "C" fn fork_child() {
    unlock();
}
