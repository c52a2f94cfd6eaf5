//! Where descriptors come from: the stack that made each open descriptor, kept in a flat
//! table indexed by its number, and the functions that make and end descriptors,
//! interposed. A descriptor made in the judged window and still open at its end is one
//! its stack leaked.
//!
//! Made through: `open`, `open64`, `openat`, `openat64`, `creat`, `creat64`, `socket`,
//! `socketpair`, `accept`, `accept4`, `pipe`, `pipe2`, `dup`, `dup2`, `dup3`, `eventfd`,
//! `memfd_create`, `timerfd_create`, `epoll_create`, `epoll_create1`, `signalfd`,
//! `inotify_init`, `inotify_init1`, and `fopen`/`fopen64` (glibc's `fopen` opens through
//! an internal alias no hook sees). Ended through `close`, `fclose` and `close_range`.
//! Each forwards to the function it stands for, found with `dlsym(RTLD_NEXT)` at its
//! first call. A descriptor made by a raw system call has no stack here; `/proc` still
//! counts it.
//!
//! The rules of the allocation hooks hold: the table and the stacks are static, a spin
//! lock guards the stacks and is never held while calling anything that allocates, and
//! a thread already inside a hook records nothing more.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::sample::{capture_up_to, Reentrancy, MAX_FRAMES};

/// Descriptor numbers tracked (a descriptor above has no stack).
pub const FD_SLOTS: usize = 1 << 16;
/// Distinct stacks kept for descriptors.
pub const ORIGIN_STACKS: usize = 1 << 10;

/// Per descriptor number: its stack's index + 1 (0: none), and the epoch it was made in.
struct Fd {
    stack: AtomicU32,
    epoch: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_FD: Fd = Fd {
    stack: AtomicU32::new(0),
    epoch: AtomicU64::new(0),
};
static FDS: [Fd; FD_SLOTS] = [NO_FD; FD_SLOTS];

struct Stack {
    hash: u64,
    depth: usize,
    frames: [usize; MAX_FRAMES],
}

struct Stacks(core::cell::UnsafeCell<[Stack; ORIGIN_STACKS]>);
// SAFETY: only read or written while LOCK is held.
unsafe impl Sync for Stacks {}
#[allow(clippy::declare_interior_mutable_const)]
const NO_STACK: Stack = Stack {
    hash: 0,
    depth: 0,
    frames: [0; MAX_FRAMES],
};
static STACKS: Stacks = Stacks(core::cell::UnsafeCell::new([NO_STACK; ORIGIN_STACKS]));
static LOCK: AtomicBool = AtomicBool::new(false);
static UNTRACKED: AtomicU64 = AtomicU64::new(0);

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

fn unlock() {
    LOCK.store(false, Ordering::Release);
}

/// The caller's stack, kept in the stack table: its index + 1, or 0 when the table is
/// full or the thread is already inside a hook.
pub(crate) fn here() -> u32 {
    here_up_to(MAX_FRAMES)
}

/// [`here`], at most `most` frames deep.
pub(crate) fn here_up_to(most: usize) -> u32 {
    let Some(_inside) = Reentrancy::enter() else {
        return 0;
    };
    let mut frames = [0usize; MAX_FRAMES];
    let depth = capture_up_to(&mut frames, most);
    let hash = frames[..depth]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &ip| {
            (h ^ ip as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
        .max(1);
    lock();
    // SAFETY: LOCK is held, the only guard of STACKS; the reference ends before unlock.
    let stacks = unsafe { &mut *STACKS.0.get() };
    let home = hash as usize & (ORIGIN_STACKS - 1);
    let mut found = 0;
    for probe in 0..ORIGIN_STACKS {
        let index = (home + probe) & (ORIGIN_STACKS - 1);
        let entry = &mut stacks[index];
        if entry.hash == 0 {
            entry.hash = hash;
            entry.depth = depth;
            entry.frames = frames;
            found = index as u32 + 1;
            break;
        }
        if entry.hash == hash && entry.frames[..entry.depth] == frames[..depth] {
            found = index as u32 + 1;
            break;
        }
    }
    unlock();
    found
}

/// Records `fd` as made here, now (the caller's stack, the current epoch).
#[cold]
pub(crate) fn opened(fd: i32) {
    let Ok(at) = usize::try_from(fd) else {
        return;
    };
    if at >= FD_SLOTS {
        UNTRACKED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let stack = here();
    if stack == 0 {
        UNTRACKED.fetch_add(1, Ordering::Relaxed);
    }
    FDS[at]
        .epoch
        .store(crate::sample::epoch(), Ordering::Relaxed);
    FDS[at].stack.store(stack, Ordering::Release);
}

/// Things held by a key (a thread's id, a mapping's start): each with its size, the
/// stack that made it and the epoch it was made in, in a static open-addressed table of
/// `N` slots (a power of two). Nothing allocates; a full table records no more.
struct Keyed<const N: usize> {
    slots: [Held; N],
}

/// One slot of a [`Keyed`] table: its key (0: free), size, stack index + 1, epoch.
struct Held {
    key: core::sync::atomic::AtomicUsize,
    size: core::sync::atomic::AtomicUsize,
    stack: AtomicU32,
    epoch: AtomicU64,
}

impl Held {
    #[allow(clippy::declare_interior_mutable_const)]
    const FREE: Held = Held {
        key: core::sync::atomic::AtomicUsize::new(0),
        size: core::sync::atomic::AtomicUsize::new(0),
        stack: AtomicU32::new(0),
        epoch: AtomicU64::new(0),
    };
}

impl<const N: usize> Keyed<N> {
    const fn new() -> Self {
        Keyed {
            slots: [Held::FREE; N],
        }
    }

    fn home(key: usize) -> usize {
        ((key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) & (N - 1)
    }

    /// Records `key` as held, `size` of it, made here and now.
    fn insert(&self, key: usize, size: usize) {
        if key == 0 {
            return;
        }
        let stack = here();
        let home = Self::home(key);
        for probe in 0..N {
            let slot = &self.slots[(home + probe) & (N - 1)];
            if slot
                .key
                .compare_exchange(0, key, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.size.store(size, Ordering::Relaxed);
                slot.epoch.store(crate::sample::epoch(), Ordering::Relaxed);
                slot.stack.store(stack, Ordering::Release);
                return;
            }
        }
    }

    /// Records `key` as given back: whether it was held.
    fn remove(&self, key: usize) -> bool {
        if key == 0 {
            return false;
        }
        let home = Self::home(key);
        for probe in 0..N {
            let slot = &self.slots[(home + probe) & (N - 1)];
            if slot.key.load(Ordering::Acquire) == key {
                slot.stack.store(0, Ordering::Relaxed);
                slot.key.store(0, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Per stack, the sizes of what it made at `min_epoch` or later and is still held.
    fn by_stack(&self, min_epoch: u64) -> [u64; ORIGIN_STACKS] {
        let mut sums = [0u64; ORIGIN_STACKS];
        for slot in self.slots.iter() {
            let stack = slot.stack.load(Ordering::Acquire);
            if slot.key.load(Ordering::Relaxed) != 0
                && stack != 0
                && slot.epoch.load(Ordering::Relaxed) >= min_epoch
            {
                sums[stack as usize - 1] += slot.size.load(Ordering::Relaxed) as u64;
            }
        }
        sums
    }
}

/// Threads created joinable and neither joined nor detached yet (each counts 1).
static THREADS: Keyed<{ 1 << 12 }> = Keyed::new();
static UNJOINED: AtomicU64 = AtomicU64::new(0);

/// Mappings made through the interposed `mmap` and not unmapped (each counts its bytes).
static MAPPINGS: Keyed<{ 1 << 12 }> = Keyed::new();

/// Where the origin tables lie: start address and length of each.
pub(crate) fn table_ranges() -> [(usize, usize); 4] {
    [
        crate::range_of(&FDS),
        crate::range_of(&STACKS),
        crate::range_of(&THREADS),
        crate::range_of(&MAPPINGS),
    ]
}

/// Records thread `id` as created here, now; it stays until joined or detached.
#[cold]
pub(crate) fn thread_created(id: usize) {
    if id != 0 {
        UNJOINED.fetch_add(1, Ordering::Relaxed);
        THREADS.insert(id, 1);
    }
}

/// Records thread `id` as joined or detached: no longer the program's to reclaim.
pub(crate) fn thread_released(id: usize) {
    if THREADS.remove(id) {
        UNJOINED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Records a mapping of `length` bytes at `start`, made here, now.
#[cold]
pub(crate) fn mapped_here(start: usize, length: usize) {
    MAPPINGS.insert(start, length);
}

/// Records the mapping at `start` as unmapped (a partial unmap from its start counts as
/// the whole: what remains is no longer tracked).
pub(crate) fn unmapped(start: usize) {
    MAPPINGS.remove(start);
}

/// The stacks of the mappings made at `min_epoch` or later and still mapped, most bytes
/// first (in [`FdOrigin`]s: `open` counts the bytes). Allocates.
pub fn mapping_origins(min_epoch: u64) -> Vec<FdOrigin> {
    origins_of(&MAPPINGS.by_stack(min_epoch))
}

/// Threads created through `pthread_create` and neither joined nor detached yet, running
/// or ended: each holds its stack until it is.
pub fn unjoined_threads() -> i64 {
    UNJOINED.load(Ordering::Relaxed) as i64
}

/// Records `fd` as closed.
#[inline]
pub(crate) fn closed(fd: i32) {
    if let Some(entry) = usize::try_from(fd).ok().and_then(|at| FDS.get(at)) {
        entry.stack.store(0, Ordering::Release);
    }
}

/// One stack's descriptors still open that were made at an epoch or later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdOrigin {
    /// Raw return addresses, innermost first.
    pub frames: Vec<usize>,
    /// Its descriptors open now, made at the epoch asked for or later.
    pub open: u64,
}

/// The stacks of the descriptors open now that were made at `min_epoch` or later, most
/// first. Allocates (call it after measuring).
pub fn fd_origins(min_epoch: u64) -> Vec<FdOrigin> {
    let mut counts = [0u64; ORIGIN_STACKS];
    for entry in FDS.iter() {
        let stack = entry.stack.load(Ordering::Acquire);
        if stack != 0 && entry.epoch.load(Ordering::Relaxed) >= min_epoch {
            counts[stack as usize - 1] += 1;
        }
    }
    origins_of(&counts)
}

/// The stacks of the threads created at `min_epoch` or later and neither joined nor
/// detached, most first (in [`FdOrigin`]s: `open` counts the threads). Allocates.
pub fn thread_origins(min_epoch: u64) -> Vec<FdOrigin> {
    origins_of(&THREADS.by_stack(min_epoch))
}

/// The stacks `counts` (per stack index) name, most first.
fn origins_of(counts: &[u64; ORIGIN_STACKS]) -> Vec<FdOrigin> {
    let mut origins = Vec::new();
    for (index, &open) in counts.iter().enumerate() {
        if open == 0 {
            continue;
        }
        lock();
        // SAFETY: LOCK is held, the only guard of STACKS; what is copied lives on this
        // thread's stack, and the vector is made after the lock is released.
        let (depth, frames) = unsafe {
            let entry = &(*STACKS.0.get())[index];
            (entry.depth, entry.frames)
        };
        unlock();
        origins.push(FdOrigin {
            frames: frames[..depth].to_vec(),
            open,
        });
    }
    origins.sort_by_key(|o| std::cmp::Reverse(o.open));
    origins
}

/// The frames of the stack [`here`] kept as `stack` (index + 1); `None` for 0.
/// Allocates.
pub(crate) fn stack_frames(stack: u32) -> Option<Vec<usize>> {
    let index = (stack as usize)
        .checked_sub(1)
        .filter(|&i| i < ORIGIN_STACKS)?;
    lock();
    // SAFETY: LOCK is held, the only guard of STACKS; what is copied lives on this
    // thread's stack, and the vector is made after the lock is released.
    let (depth, frames) = unsafe {
        let entry = &(*STACKS.0.get())[index];
        (entry.depth, entry.frames)
    };
    unlock();
    Some(frames[..depth].to_vec())
}

/// Descriptors made whose stack could not be kept (a number above [`FD_SLOTS`], or the
/// stack table full).
pub fn untracked_fds() -> u64 {
    UNTRACKED.load(Ordering::Relaxed)
}
