//! avsoak-hooks: the libc allocation functions, interposed, counting every heap byte.
//!
//! With its default `interpose` feature this crate defines `malloc`, `free`, `calloc`,
//! `realloc`, `memalign`, `aligned_alloc`, `posix_memalign`, `valloc`, `pvalloc` and
//! `reallocarray` for the executable it is linked into, and forwards each to glibc's
//! public `__libc_*` entry point. Because the executable
//! exports these symbols, every shared library it loads (libx264, libavcodec, libheif,
//! libx265, and Rust's own `System` allocator through libc) binds to them, so one set of
//! counters covers C and Rust alike.
//!
//! Do not use this crate directly: `avsoak` re-exports it (its default `hooks` feature
//! turns `interpose` on) and wraps it in `avsoak::heap`, which is the supported API.
//!
//! # Rules for code in this crate
//!
//! Everything reachable from a hook runs *inside* `malloc`. It must therefore
//! - never allocate on the hot path (an allocation would re-enter the hook; the sampling
//!   path may allocate only under the re-entrancy guard, which turns nested samples off);
//! - never take a lock that a hooked allocation could try to take again on the same
//!   thread (the one lock here, the sample table's spin lock, is never held while calling
//!   anything that allocates);
//! - never panic (a panic in `malloc` aborts the process).
//!
//! Counters are relaxed atomics: each one is exact, but two counters read one after the
//! other are not a consistent pair while other threads allocate. Read them at quiescent
//! points.

// Without `interpose` nothing records samples, so the sampler's insides go unused: the
// crate is then only its counters and types, for a build that judges nothing.
#![cfg_attr(not(feature = "interpose"), allow(dead_code))]

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

#[cfg(feature = "interpose")]
mod descriptors;
mod holders;
#[cfg(feature = "interpose")]
mod interpose;
mod mapping;
mod origins;
#[cfg(feature = "interpose")]
mod references;
mod sample;

pub use holders::{holders, Holder, REF_SLOTS};

pub use mapping::mapped;
pub use origins::{
    fd_origins, mapping_origins, thread_origins, unjoined_threads, untracked_fds, FdOrigin,
    FD_SLOTS,
};

#[cfg(feature = "interpose")]
pub use interpose::{hook_addresses, linked};

pub use sample::{LiveSample, StackGrowth, StackRecord, MAX_FRAMES, STACK_SLOTS, TABLE_SLOTS};

/// Where a static table lies: its start address and length.
pub(crate) fn range_of<T>(table: &T) -> (usize, usize) {
    (table as *const T as usize, core::mem::size_of::<T>())
}

/// [`tables_resident_bytes`]'s last count, and when it was made
/// (`CLOCK_MONOTONIC_COARSE`, ns; 0: never).
static RESIDENT: AtomicU64 = AtomicU64::new(0);
static RESIDENT_NS: AtomicU64 = AtomicU64::new(0);

/// The least time between two counts of the tables' pages: a count walks ~4,500 pages
/// (tens of µs), which at every reading cost 4-5 % of a program that allocates fast.
/// The tables grow by a few pages in this time at most, and a reading subtracts a count
/// this old: the series lags by it and keeps its slope.
const RECOUNT_NS: u64 = 50_000_000;

fn coarse_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec at a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The bytes of the hooks' own static tables (~18 MiB: live samples, stacks,
/// descriptors, threads, mappings, all zeros in `.bss`) that are resident now. Their
/// pages are made as samples and stacks land in them, so a process's resident memory
/// less this is what the program holds: the tables never read as its growth. Counted
/// with `mincore` over the tables' span at most every [`RECOUNT_NS`]; a reading in
/// between costs two loads and a coarse clock. `None` when the kernel refuses.
///
/// A page only ever read maps the shared zero page, which `mincore` reports and the
/// resident count leaves out; the tables are written before they are read (a probe
/// reads the slots an insert wrote), so at most a few such pages are counted.
pub fn tables_resident_bytes() -> Option<usize> {
    /// Pages asked about per call: a 4 KiB answer on the stack, no allocation.
    const CHUNK: usize = 4096;
    let now = coarse_now_ns();
    let counted = RESIDENT_NS.load(Relaxed);
    if counted != 0 && now < counted + RECOUNT_NS {
        return Some(RESIDENT.load(Relaxed) as usize);
    }
    // SAFETY: sysconf only reads a constant of the system.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    let ranges = sample::table_ranges()
        .into_iter()
        .chain(origins::table_ranges())
        .chain(holders::table_ranges());
    let (first, last) = ranges.fold((usize::MAX, 0), |(lo, hi), (start, len)| {
        (lo.min(start), hi.max(start + len))
    });
    let mut answer = [0u8; CHUNK];
    let mut resident = 0;
    let mut at = first / page * page;
    let end = last.div_ceil(page) * page;
    while at < end {
        let pages = ((end - at) / page).min(CHUNK);
        // SAFETY: `at` is page-aligned and the span lies in this object's data segment
        // (the tables and the statics between them), mapped for the life of the
        // process; `answer` has room for `pages` bytes, one a page.
        let done =
            unsafe { libc::mincore(at as *mut libc::c_void, pages * page, answer.as_mut_ptr()) };
        if done != 0 {
            return None;
        }
        resident += answer[..pages].iter().filter(|&&b| b & 1 == 1).count() * page;
        at += pages * page;
    }
    RESIDENT.store(resident as u64, Relaxed);
    RESIDENT_NS.store(now, Relaxed);
    Some(resident)
}

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static PEAK_LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static TROUGH_LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static TROUGH_LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES_ALLOCATED: AtomicU64 = AtomicU64::new(0);
static CONSTRUCTED: AtomicBool = AtomicBool::new(false);

/// A reading of the process-wide counters (`avsoak::heap::Snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    /// Usable bytes of all blocks allocated and not yet freed.
    pub live_bytes: i64,
    /// Blocks allocated and not yet freed.
    pub live_blocks: i64,
    /// Highest `live_bytes` seen since start or since the last [`reset_peak`].
    pub peak_live_bytes: i64,
    /// Successful allocations, reallocations included.
    pub allocs: u64,
    /// Frees of non-null pointers, the old block of a moving reallocation included.
    pub frees: u64,
    /// Usable bytes of all successful allocations.
    pub bytes_allocated: u64,
}

/// The change between two readings of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Delta {
    /// Change in live bytes (negative when more was freed than allocated).
    pub live_bytes: i64,
    /// Change in live blocks.
    pub live_blocks: i64,
    /// Allocations made in between.
    pub allocs: u64,
    /// Frees made in between.
    pub frees: u64,
    /// Bytes allocated in between.
    pub bytes_allocated: u64,
}

impl Counters {
    /// Reads the counters now (all zero without the `interpose` feature: nothing counts).
    pub fn now() -> Self {
        counters()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Delta {
        Delta {
            live_bytes: self.live_bytes - earlier.live_bytes,
            live_blocks: self.live_blocks - earlier.live_blocks,
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            frees: self.frees.wrapping_sub(earlier.frees),
            bytes_allocated: self.bytes_allocated.wrapping_sub(earlier.bytes_allocated),
        }
    }
}

/// Reads the counters.
pub fn counters() -> Counters {
    Counters {
        live_bytes: LIVE_BYTES.load(Relaxed),
        live_blocks: LIVE_BLOCKS.load(Relaxed),
        peak_live_bytes: PEAK_LIVE_BYTES.load(Relaxed),
        allocs: ALLOCS.load(Relaxed),
        frees: FREES.load(Relaxed),
        bytes_allocated: BYTES_ALLOCATED.load(Relaxed),
    }
}

/// Starts a new peak window: the peak becomes the current live bytes.
pub fn reset_peak() {
    PEAK_LIVE_BYTES.store(LIVE_BYTES.load(Relaxed), Relaxed);
}

/// The lowest live bytes and live blocks (each at its own moment) since the last call,
/// and a new window from the current values. The first call's window starts at zero.
///
/// Time-mode sampling of a program that has no quiescent marker reads this: the heap the
/// program held throughout a period, which a leak raises and a per-frame transient does
/// not, wherever in the frame the tick falls. A free racing with the call may be left out
/// of both windows; that can only raise a reading, by the size of that one block.
pub fn take_trough() -> (i64, i64) {
    let bytes = TROUGH_LIVE_BYTES.swap(LIVE_BYTES.load(Relaxed), Relaxed);
    let blocks = TROUGH_LIVE_BLOCKS.swap(LIVE_BLOCKS.load(Relaxed), Relaxed);
    (bytes, blocks)
}

pub use sample::{
    epoch, live_samples, open_window, sample_interval, sampling_stats, set_epoch,
    set_sample_interval, snapshot_window, stack_generation, stack_profile, window_growth,
    window_growth_at, SamplingStats, SAMPLE_INTERVAL_ENV, SNAPSHOTS,
};
