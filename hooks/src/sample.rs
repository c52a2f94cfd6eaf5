//! Sampled allocation stacks: about one allocation per `interval` bytes records its raw
//! stack into a fixed table keyed by pointer; freeing a sampled pointer removes it.
//!
//! Sampling is Poisson over bytes (tcmalloc, heapprofd): each thread counts down bytes
//! from an exponentially distributed draw with mean `interval`; the allocation that takes
//! the countdown to zero or below is sampled. A sample of `size` bytes stands for
//! `size / (1 - exp(-size / interval))` bytes, computed at report time.
//!
//! The table is a static array that never allocates. Inserting and removing take one
//! spin lock, held only while slots are written, never while calling anything that can
//! allocate. `fork` takes the lock in its prepare handler so a child never inherits it
//! held by a thread that does not exist in the child.

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Raw frames captured per sample.
pub const MAX_FRAMES: usize = 48;
/// Capacity of the live-sample table (a power of two).
pub const TABLE_SLOTS: usize = 1 << 15;
/// Slots probed from a pointer's home slot before a sample is dropped as "table full".
const MAX_PROBE: usize = 64;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;
const DEFAULT_INTERVAL: u64 = 512 * 1024;

static INTERVAL: AtomicU64 = AtomicU64::new(DEFAULT_INTERVAL);
static EPOCH: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static LOCK: AtomicBool = AtomicBool::new(false);

struct Slot {
    /// The sampled pointer, or EMPTY / TOMBSTONE. Read without the lock by `on_free`.
    ptr: AtomicUsize,
    /// Everything else: written only under LOCK while `ptr` is not yet published.
    data: UnsafeCell<SlotData>,
}

#[derive(Clone, Copy)]
struct SlotData {
    size: usize,
    epoch: u64,
    depth: usize,
    frames: [usize; MAX_FRAMES],
}

struct Table([Slot; TABLE_SLOTS]);

// SAFETY: `Slot::data` is only written under LOCK, and only read under LOCK (by
// `live_samples`); `Slot::ptr` is atomic. No reference to slot data escapes the lock.
unsafe impl Sync for Table {}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    ptr: AtomicUsize::new(EMPTY),
    data: UnsafeCell::new(SlotData {
        size: 0,
        epoch: 0,
        depth: 0,
        frames: [0; MAX_FRAMES],
    }),
};

static TABLE: Table = Table([SLOT; TABLE_SLOTS]);

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
    /// Usable size of the sampled block.
    pub size: usize,
    /// The epoch (see [`set_epoch`]) when it was allocated.
    pub epoch: u64,
    /// Raw instruction pointers, innermost first.
    pub frames: Vec<usize>,
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
    }
}

/// Marks this thread as inside the sampler; nested allocations are counted but not
/// sampled. Resets on drop, so also when unwinding.
struct Reentrancy;

impl Reentrancy {
    fn enter() -> Option<Self> {
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
    let interval = INTERVAL.load(Ordering::Relaxed);
    if interval == 0 {
        return;
    }
    let due = COUNTDOWN
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
        .unwrap_or(false);
    if due {
        record(ptr, size);
    }
}

#[cold]
fn record(ptr: usize, size: usize) {
    let Some(_inside) = Reentrancy::enter() else {
        return;
    };
    let mut frames = [0usize; MAX_FRAMES];
    let mut depth = 0;
    // SAFETY: `trace_unsynchronized` requires that no other thread unwinds through the
    // same unsynchronized state at once; backtrace's Linux implementation calls libgcc's
    // `_Unwind_Backtrace`, which is thread-safe. We do not use the synchronized `trace`
    // because its global lock could be held by a thread that then allocates.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            frames[depth] = frame.ip() as usize;
            depth += 1;
            depth < MAX_FRAMES
        });
    }
    let data = SlotData {
        size,
        epoch: EPOCH.load(Ordering::Relaxed),
        depth,
        frames,
    };
    let home = slot_of(ptr);
    let _locked = LockGuard::acquire();
    for probe in 0..MAX_PROBE {
        let slot = &TABLE.0[(home + probe) & (TABLE_SLOTS - 1)];
        let current = slot.ptr.load(Ordering::Relaxed);
        if current == EMPTY || current == TOMBSTONE {
            // SAFETY: LOCK is held, so no other thread writes or reads this slot's data;
            // `ptr` is published after the data with Release.
            unsafe { *slot.data.get() = data };
            slot.ptr.store(ptr, Ordering::Release);
            LIVE.fetch_add(1, Ordering::Relaxed);
            TAKEN.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

#[inline(always)]
pub(crate) fn on_free(ptr: usize) {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let home = slot_of(ptr);
    for probe in 0..MAX_PROBE {
        let slot = &TABLE.0[(home + probe) & (TABLE_SLOTS - 1)];
        let current = slot.ptr.load(Ordering::Acquire);
        if current == EMPTY {
            return;
        }
        if current == ptr {
            let _locked = LockGuard::acquire();
            // Re-check under the lock: the lock-free read above may have raced with a
            // `live_samples` copy or an insert into a neighbouring slot.
            if slot.ptr.load(Ordering::Relaxed) == ptr {
                slot.ptr.store(TOMBSTONE, Ordering::Relaxed);
                LIVE.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
    }
}

fn slot_of(ptr: usize) -> usize {
    // Fibonacci hashing of the pointer without its always-zero low bits.
    ((ptr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) & (TABLE_SLOTS - 1)
}

/// Copies out the live samples allocated at `min_epoch` or later.
///
/// The copy is made under the re-entrancy guard, so the allocations it makes are counted
/// but never sampled, and the table lock is never held while allocating.
pub fn live_samples(min_epoch: u64) -> Vec<LiveSample> {
    let _inside = Reentrancy::enter();
    let mut raw: Vec<SlotData> = Vec::with_capacity(LIVE.load(Ordering::Relaxed) + 64);
    {
        let _locked = LockGuard::acquire();
        for slot in TABLE.0.iter() {
            let ptr = slot.ptr.load(Ordering::Relaxed);
            if ptr == EMPTY || ptr == TOMBSTONE {
                continue;
            }
            // SAFETY: LOCK is held, so no writer touches the slot data while we read it.
            let data = unsafe { *slot.data.get() };
            if data.epoch >= min_epoch && raw.len() < raw.capacity() {
                raw.push(data);
            }
        }
    }
    raw.into_iter()
        .map(|data| LiveSample {
            size: data.size,
            epoch: data.epoch,
            frames: data.frames[..data.depth].to_vec(),
        })
        .collect()
}

/// Reads `AVSOAK_SAMPLE_INTERVAL` (bytes; 0 turns sampling off) and installs the fork
/// handlers. Runs in the constructor, before `main`.
pub(crate) fn init_from_env() {
    // SAFETY: getenv with a NUL-terminated name; the result is only read, before any
    // thread of the program exists that could call setenv.
    let value = unsafe { libc::getenv(c"AVSOAK_SAMPLE_INTERVAL".as_ptr()) };
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
