//! Who holds a sampled buffer: the references FFmpeg's reference-counted buffers
//! (`AVBufferRef`) carry, each kept with the stack of the call that took it, for the
//! references to buffers whose data block the sampler holds.
//!
//! FFmpeg's libraries are linked `-Bsymbolic` on Debian: libavutil's `av_frame_ref` calls
//! its own `av_buffer_ref` directly, so hooking `av_buffer_ref` alone would miss it
//! (docs/design/holders.md). What is interposed instead are the public entry points a
//! program calls to take a reference to a frame's or a packet's buffers: `av_frame_ref`,
//! `av_frame_clone`, `av_packet_ref`, `av_packet_clone`, and `av_packet_move_ref`, which
//! moves one (`crate::references` says why not `av_buffer_ref`). While the outermost of
//! them runs on a thread, the small blocks that thread allocates are noted; when it
//! returns, each that reads as an `AVBufferRef` (its public layout: the buffer, the data,
//! the size) whose data is a sampled block is kept in a static table, with the stack of
//! that outermost call. A moved packet's reference (an `AVPacket`'s first field is its
//! `buf`) is kept with the stack of the move: a packet made inside `av_read_frame` is
//! first held by the queue that moves it in. A reference ends when its block is freed, which
//! every unref does through `free`, whichever library calls it.
//!
//! The rules of the allocation hooks hold: the table is static, nothing here allocates,
//! and a thread inside the sampler records nothing.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::origins::{here_up_to, stack_frames};

/// Threads inside an interposed reference-taking call now: the allocation hooks look at
/// their thread's state only while this is not 0.
pub(crate) static TAKING: AtomicUsize = AtomicUsize::new(0);

/// Small blocks noted per outermost call (an `av_frame_ref` of a frame with eight planes'
/// buffers and its side data makes about a dozen).
const NOTED: usize = 24;
/// The smallest and largest usable size an `AVBufferRef` (24 bytes) can have.
pub(crate) const REF_BLOCK: (usize, usize) = (24, 64);

/// Frames kept of a reference's stack: the call that took it and its callers a few
/// levels up name the code that kept it, and a program that references its sampled
/// buffers many times a frame (a decoder's reference lists) pays a walk each time, so
/// the walk stops here.
const HOLDER_FRAMES: usize = 7;

/// References kept (a power of two).
pub const REF_SLOTS: usize = 1 << 13;
/// Slots probed from a reference's home.
const MAX_PROBE: usize = 32;

thread_local! {
    /// How deep this thread is in interposed reference-taking calls.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The small blocks this thread allocated in its outermost call, and how many.
    static NOTED_BLOCKS: Cell<([usize; NOTED], usize)> = const { Cell::new(([0; NOTED], 0)) };
}

/// One kept reference: its block (0: free), the data block it refers to, the stack that
/// took it (index + 1 in the origins' stack table, below [`CALL_SHIFT`]) and the call
/// (above it), and the epoch it was taken in.
struct Ref {
    block: AtomicUsize,
    data: AtomicUsize,
    stack: AtomicU32,
    epoch: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_REF: Ref = Ref {
    block: AtomicUsize::new(0),
    data: AtomicUsize::new(0),
    stack: AtomicU32::new(0),
    epoch: AtomicU64::new(0),
};
static REFS: [Ref; REF_SLOTS] = [NO_REF; REF_SLOTS];
/// Per home slot, the references kept whose home it is: a free whose home counts none
/// returns after one load.
#[allow(clippy::declare_interior_mutable_const)]
const NO_HOMES: AtomicU8 = AtomicU8::new(0);
static HOMES: [AtomicU8; REF_SLOTS] = [NO_HOMES; REF_SLOTS];
/// References kept now.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// Where the tables lie: start address and length of each.
pub(crate) fn table_ranges() -> [(usize, usize); 3] {
    [
        crate::range_of(&REFS),
        crate::range_of(&HOMES),
        crate::range_of(&SITE_STACKS),
    ]
}

fn home(block: usize) -> usize {
    ((block >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) & (REF_SLOTS - 1)
}

/// A small block was allocated: noted when this thread is inside a reference-taking
/// call. Called by the allocation hooks only while [`TAKING`] is not 0.
#[cold]
pub(crate) fn allocated(block: usize) {
    if DEPTH.try_with(Cell::get).unwrap_or(0) == 0 {
        return;
    }
    let _ = NOTED_BLOCKS.try_with(|noted| {
        let (mut blocks, len) = noted.get();
        if len < NOTED {
            blocks[len] = block;
            noted.set((blocks, len + 1));
        }
    });
}

/// A block is about to be freed: it is no longer noted, nor a kept reference.
#[inline(always)]
pub(crate) fn freed(block: usize) {
    if TAKING.load(Relaxed) != 0 {
        forget_noted(block);
    }
    if KEPT.load(Relaxed) != 0 {
        let at = home(block);
        if HOMES[at].load(Relaxed) != 0 {
            drop_ref(block, at);
        }
    }
}

#[cold]
fn forget_noted(block: usize) {
    let _ = NOTED_BLOCKS.try_with(|noted| {
        let (mut blocks, len) = noted.get();
        if let Some(i) = blocks[..len].iter().position(|&b| b == block) {
            blocks[i] = blocks[len - 1];
            noted.set((blocks, len - 1));
        }
    });
}

#[cold]
fn drop_ref(block: usize, at: usize) {
    for probe in 0..MAX_PROBE {
        let slot = &REFS[(at + probe) & (REF_SLOTS - 1)];
        if slot
            .block
            .compare_exchange(block, 0, Relaxed, Relaxed)
            .is_ok()
        {
            HOMES[at].fetch_sub(1, Relaxed);
            KEPT.fetch_sub(1, Relaxed);
            return;
        }
    }
}

/// Keeps `block`, a reference to `data`, as taken at `stack` by `call` now; an existing
/// entry for it takes the new stack.
fn keep(block: usize, data: usize, stack: u32, call: u8) {
    let stack = stack | u32::from(call) << CALL_SHIFT;
    let at = home(block);
    let epoch = crate::sample::epoch();
    for probe in 0..MAX_PROBE {
        let slot = &REFS[(at + probe) & (REF_SLOTS - 1)];
        let current = slot.block.load(Relaxed);
        let fresh = current == 0
            && slot
                .block
                .compare_exchange(0, block, Relaxed, Relaxed)
                .is_ok();
        if fresh || current == block {
            slot.data.store(data, Relaxed);
            slot.epoch.store(epoch, Relaxed);
            slot.stack.store(stack, Relaxed);
            if fresh {
                HOMES[at].fetch_add(1, Relaxed);
                KEPT.fetch_add(1, Relaxed);
            }
            return;
        }
    }
}

/// The data block `block` refers to when it reads as an `AVBufferRef` (its public layout:
/// the buffer, the data, the size, none of them 0) whose data the sampler holds.
///
/// # Safety
/// `block` is a live block of at least three words; they are only compared, never
/// followed.
unsafe fn sampled_data(block: usize) -> Option<usize> {
    // SAFETY: the caller's guarantee.
    let [buffer, data, size] = unsafe { core::ptr::read(block as *const [usize; 3]) };
    (buffer != 0 && data != 0 && size != 0 && crate::sample::is_sampled(data)).then_some(data)
}

/// Entering an interposed reference-taking call: whether it is this thread's outermost.
pub(crate) fn enter() -> bool {
    let depth = DEPTH.try_with(|d| {
        let depth = d.get();
        d.set(depth + 1);
        depth
    });
    match depth {
        Ok(0) => {
            let _ = NOTED_BLOCKS.try_with(|noted| noted.set(([0; NOTED], 0)));
            TAKING.fetch_add(1, Relaxed);
            true
        }
        _ => false,
    }
}

/// Where a reference-taking call was made: its return address and the caller's stack
/// pointer at the call (both 0: not known). A code path reached the same way makes the
/// same pair every time, so the pair stands for the path's stack ([`stack_at`]).
#[derive(Clone, Copy)]
pub(crate) struct Site {
    /// Which function was called: its index in [`CALLS`].
    pub call: u8,
    pub caller: usize,
    pub sp: usize,
}

/// The interposed reference-taking functions, by the index a [`Site`] names them with.
pub(crate) const CALLS: [&str; 5] = [
    "av_frame_ref",
    "av_frame_clone",
    "av_packet_ref",
    "av_packet_clone",
    "av_packet_move_ref",
];

/// The index of `name` in [`CALLS`]; a name not there fails the build.
pub(crate) const fn call_index(name: &str) -> u8 {
    let mut i = 0;
    while i < CALLS.len() {
        let (a, b) = (CALLS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i as u8;
            }
        }
        i += 1;
    }
    panic!("not an interposed reference-taking function")
}

/// A kept reference's stack and call in one word: the call's index above bit 24.
const CALL_SHIFT: u32 = 24;
const _: () = assert!(crate::origins::ORIGIN_STACKS < 1 << CALL_SHIFT);

/// Call sites remembered (a power of two).
const SITES: usize = 1 << 10;

/// Per call site's hash: its tag in the upper 32 bits, its stack (index + 1 in the
/// origins' stack table) in the lower, 0 for none yet. One word, so a reader never sees
/// one site's tag with another's stack.
#[allow(clippy::declare_interior_mutable_const)]
const NO_SITE: AtomicU64 = AtomicU64::new(0);
static SITE_STACKS: [AtomicU64; SITES] = [NO_SITE; SITES];

/// The stack of a reference-taking call made at `site`: walked once per site and
/// remembered (a decoder references its sampled pictures from the same few sites frame
/// after frame). Two paths that reach one call with the same stack pointer share the
/// first one's stack: the call's own frame and its caller are the site's, the frames
/// above them may be the other path's. A tag is 32 bits of the site's hash, so two sites
/// on one entry are told apart but for a chance of 2⁻³² a look-up; an entry taken by
/// another site is walked again.
fn stack_at(site: Site) -> u32 {
    if site.caller == 0 {
        return here_up_to(HOLDER_FRAMES);
    }
    let hash =
        (site.caller as u64 ^ (site.sp as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let entry = &SITE_STACKS[(hash >> 54) as usize & (SITES - 1)];
    let tag = (hash >> 16) & 0xFFFF_FFFF;
    let known = entry.load(Relaxed);
    if known >> 32 == tag && known as u32 != 0 {
        return known as u32;
    }
    let stack = here_up_to(HOLDER_FRAMES);
    if stack != 0 {
        entry.store(tag << 32 | u64::from(stack), Relaxed);
    }
    stack
}

/// Leaving an interposed reference-taking call made at `site`; the outermost one keeps
/// the references to sampled data among the blocks it noted, with its stack.
pub(crate) fn leave(outermost: bool, site: Site) {
    let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
    if !outermost {
        return;
    }
    TAKING.fetch_sub(1, Relaxed);
    let (blocks, len) = NOTED_BLOCKS.try_with(Cell::get).unwrap_or(([0; NOTED], 0));
    let mut stack = 0;
    for &block in &blocks[..len] {
        // SAFETY: `block` was allocated by this thread inside this call with a usable
        // size of at least 24 bytes and has not been freed since (a free forgets it).
        let Some(data) = (unsafe { sampled_data(block) }) else {
            continue;
        };
        if stack == 0 {
            stack = stack_at(site);
            if stack == 0 {
                return;
            }
        }
        keep(block, data, stack, site.call);
    }
}

/// A packet's reference moves to another packet: when it refers to a sampled block, it
/// is kept with the stack of the move (a queue's put, say), whether or not it was kept
/// before. `packet` is the source `AVPacket`, whose first field is its `buf`; `site` is
/// where the move was made.
pub(crate) fn moving(packet: usize, site: Site) {
    if packet == 0 {
        return;
    }
    // SAFETY: `packet` is the caller's source AVPacket, live for the call; its first
    // field is the `AVBufferRef *buf` of FFmpeg's public layout.
    let block = unsafe { core::ptr::read(packet as *const usize) };
    if block == 0 {
        return;
    }
    // SAFETY: a packet's `buf` is a live AVBufferRef the packet owns.
    let Some(data) = (unsafe { sampled_data(block) }) else {
        return;
    };
    let stack = stack_at(site);
    if stack != 0 {
        keep(block, data, stack, site.call);
    }
}

/// One reference kept now: the data block it refers to, the raw stack of the call that
/// took it (innermost first) and the epoch it was taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The sampled data block the reference holds.
    pub data: usize,
    /// The interposed function that took it (`av_frame_ref`).
    pub call: &'static str,
    /// Raw return addresses of the call that took it, innermost first.
    pub frames: Vec<usize>,
    /// The epoch it was taken in.
    pub epoch: u64,
}

/// The references kept now, taken at `min_epoch` or later. Allocates (call it after
/// measuring).
pub fn holders(min_epoch: u64) -> Vec<Holder> {
    let mut held = Vec::new();
    for slot in REFS.iter() {
        if slot.block.load(Relaxed) == 0 || slot.epoch.load(Relaxed) < min_epoch {
            continue;
        }
        let packed = slot.stack.load(Relaxed);
        if let Some(frames) = stack_frames(packed & ((1 << CALL_SHIFT) - 1)) {
            held.push(Holder {
                data: slot.data.load(Relaxed),
                call: CALLS[(packed >> CALL_SHIFT) as usize % CALLS.len()],
                frames,
                epoch: slot.epoch.load(Relaxed),
            });
        }
    }
    held
}
