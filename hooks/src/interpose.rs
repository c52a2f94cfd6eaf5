//! The interposed allocation functions, the constructor and the link anchor: present
//! only with the `interpose` feature (the default), which every executable that judges a
//! soak, and the preload library, build with. Without it the crate still has its
//! counters and sampler types, reading zeros.

use crate::holders::{self, REF_BLOCK};
use core::ffi::c_void;
use core::sync::atomic::Ordering::Relaxed;

use super::{
    sample, ALLOCS, BYTES_ALLOCATED, CONSTRUCTED, FREES, LIVE_BLOCKS, LIVE_BYTES, PEAK_LIVE_BYTES,
    TROUGH_LIVE_BLOCKS, TROUGH_LIVE_BYTES,
};

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_calloc(nmemb: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(alignment: usize, size: usize) -> *mut c_void;
    fn __libc_valloc(size: usize) -> *mut c_void;
    fn __libc_pvalloc(size: usize) -> *mut c_void;
}

/// The addresses of the hook functions, by symbol name, for the harness's check that the
/// dynamic linker resolves each name to this crate and not to another allocator.
pub fn hook_addresses() -> [(&'static str, usize); 6] {
    [
        ("malloc", malloc as *const () as usize),
        ("free", free as *const () as usize),
        ("calloc", calloc as *const () as usize),
        ("realloc", realloc as *const () as usize),
        ("memalign", memalign as *const () as usize),
        ("posix_memalign", posix_memalign as *const () as usize),
    ]
}

#[inline(always)]
fn usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: every caller passes a non-null pointer that glibc returned and that has not
    // been freed yet: `note_alloc` runs right after a successful `__libc_*` allocation and
    // `note_free` right before the `__libc_free`/`__libc_realloc` that releases it.
    unsafe { libc::malloc_usable_size(ptr) }
}

#[inline(always)]
fn note_alloc(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    let size = usable_size(ptr);
    count_alloc(size);
    sample::on_alloc(ptr as usize, size);
    if holders::TAKING.load(Relaxed) != 0 && (REF_BLOCK.0..=REF_BLOCK.1).contains(&size) {
        holders::allocated(ptr as usize);
    }
}

#[inline(always)]
fn count_alloc(size: usize) {
    let live = LIVE_BYTES.fetch_add(size as i64, Relaxed) + size as i64;
    LIVE_BLOCKS.fetch_add(1, Relaxed);
    ALLOCS.fetch_add(1, Relaxed);
    BYTES_ALLOCATED.fetch_add(size as u64, Relaxed);
    if live > PEAK_LIVE_BYTES.load(Relaxed) {
        PEAK_LIVE_BYTES.fetch_max(live, Relaxed);
    }
}

/// Accounts for a block about to be released. Must run *before* glibc gets the pointer
/// back: afterwards another thread may be handed the same address.
#[inline(always)]
fn note_free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    count_free(usable_size(ptr));
    sample::on_free(ptr as usize);
    holders::freed(ptr as usize);
}

#[inline(always)]
fn count_free(size: usize) {
    let live = LIVE_BYTES.fetch_sub(size as i64, Relaxed) - size as i64;
    let blocks = LIVE_BLOCKS.fetch_sub(1, Relaxed) - 1;
    FREES.fetch_add(1, Relaxed);
    if live < TROUGH_LIVE_BYTES.load(Relaxed) {
        TROUGH_LIVE_BYTES.fetch_min(live, Relaxed);
    }
    if blocks < TROUGH_LIVE_BLOCKS.load(Relaxed) {
        TROUGH_LIVE_BLOCKS.fetch_min(blocks, Relaxed);
    }
}

/// `malloc(3)`, counted.
///
/// # Safety
/// As `malloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments unchanged to glibc's own malloc.
    let ptr = unsafe { __libc_malloc(size) };
    note_alloc(ptr);
    ptr
}

/// `free(3)`, counted.
///
/// # Safety
/// As `free(3)`: `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    note_free(ptr);
    // SAFETY: the caller guarantees `ptr` is null or live; it was accounted just above.
    unsafe { __libc_free(ptr) }
}

/// `calloc(3)`, counted.
///
/// # Safety
/// As `calloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn calloc(nmemb: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding unchanged; glibc checks `nmemb * size` for overflow itself.
    let ptr = unsafe { __libc_calloc(nmemb, size) };
    note_alloc(ptr);
    ptr
}

/// `realloc(3)`, counted as the free of the old block and the allocation of the new one.
/// For sampling it is one block that moved: its samples follow it, and only the bytes it
/// gained run the countdown down (see the sampler's module).
///
/// # Safety
/// As `realloc(3)`: `ptr` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        // SAFETY: realloc(NULL, n) is malloc(n).
        return unsafe { malloc(size) };
    }
    // Account the old block, and take its samples aside, before glibc may hand its
    // address to another thread.
    let old = usable_size(ptr);
    count_free(old);
    holders::freed(ptr as usize);
    let detached = sample::detach(ptr as usize);
    // SAFETY: `ptr` is live (caller's guarantee) and was not released by the accounting
    // above, which only updates counters and the sampler's tables.
    let new = unsafe { __libc_realloc(ptr, size) };
    if new.is_null() {
        if size != 0 {
            // Failure: glibc left the old block untouched, so it is live again.
            count_alloc(old);
            sample::reattach(ptr as usize, detached, 0);
        } else {
            // size == 0: glibc freed `ptr` and returned NULL.
            sample::reattach(0, detached, 0);
        }
    } else {
        let now = usable_size(new);
        count_alloc(now);
        sample::reattach(new as usize, detached, now.saturating_sub(old));
    }
    new
}

/// `reallocarray(3)`, with its overflow check.
///
/// # Safety
/// As `reallocarray(3)`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        // SAFETY: the caller's `ptr` contract is realloc's.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// `memalign(3)`, counted.
///
/// # Safety
/// As `memalign(3)`.
#[no_mangle]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding unchanged; glibc validates and rounds the alignment.
    let ptr = unsafe { __libc_memalign(alignment, size) };
    note_alloc(ptr);
    ptr
}

/// `aligned_alloc(3)`, counted; the alignment must be a power of two (EINVAL otherwise).
///
/// # Safety
/// As `aligned_alloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !alignment.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    // SAFETY: alignment checked above, as glibc's aligned_alloc does.
    unsafe { memalign(alignment, size) }
}

/// `posix_memalign(3)`, counted, with its EINVAL checks. glibc's own `posix_memalign`
/// does not reach `memalign` through the PLT, so it must be hooked itself: FFmpeg's
/// `av_malloc` allocates through it.
///
/// # Safety
/// As `posix_memalign(3)`: `memptr` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> libc::c_int {
    if !alignment.is_power_of_two()
        || !alignment.is_multiple_of(core::mem::size_of::<*mut c_void>())
    {
        return libc::EINVAL;
    }
    // SAFETY: alignment validated above.
    let ptr = unsafe { memalign(alignment, size) };
    if ptr.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller guarantees `memptr` is writable.
    unsafe { *memptr = ptr };
    0
}

/// `valloc(3)`, counted.
///
/// # Safety
/// As `valloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding unchanged.
    let ptr = unsafe { __libc_valloc(size) };
    note_alloc(ptr);
    ptr
}

/// `pvalloc(3)`, counted.
///
/// # Safety
/// As `pvalloc(3)`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding unchanged.
    let ptr = unsafe { __libc_pvalloc(size) };
    note_alloc(ptr);
    ptr
}

fn set_errno(value: libc::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = value };
}

/// Runs before `main` (and before any Rust code of the program): reads the sampling
/// settings from the environment and makes the sample table fork-safe.
extern "C" fn construct() {
    sample::init_from_env();
    CONSTRUCTED.store(true, Relaxed);
}

/// Whether this process runs the hooks: the constructor ran (so the object file holding
/// the hooks and the constructor was linked into the executable).
///
/// Also the crate's link anchor: it takes the addresses of the hooks and of the
/// constructor, so an executable that calls it (the harness does, in its instrumentation
/// check) pulls the object files that define them out of this crate's archive whatever
/// the codegen-unit split, with no profile override in the user's manifest.
#[inline(never)]
pub fn linked() -> bool {
    let anchors: [usize; 6] = [
        malloc as *const () as usize,
        free as *const () as usize,
        posix_memalign as *const () as usize,
        &CONSTRUCTOR as *const _ as usize,
        crate::mapping::anchor(),
        crate::descriptors::anchor(),
    ];
    core::hint::black_box(anchors);
    CONSTRUCTED.load(Relaxed)
}

// The constructor is a `#[used]` static: without it the linker would see no reference
// and the call would never run.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = construct;
