//! FFmpeg's reference-taking functions for frames and packets, interposed (with the
//! `interpose` feature): each calls the definition it stands for, found with
//! `dlsym(RTLD_NEXT)` at its first call, and [`crate::holders`] keeps the references it
//! took to sampled buffers. A program without FFmpeg never calls them.
//!
//! `av_buffer_ref` and `av_buffer_pool_get` are left alone: they are FFmpeg's own
//! bookkeeping (a decoder's reference lists take several a frame, its pools one a
//! picture), and a stack walk for each that reaches a sampled buffer cost a decoding
//! program about 3 % of its time, for holders that name FFmpeg's internals. A program's
//! own references go through the frame and packet calls.
//!
//! On x86-64 each entry point is a naked trampoline that hands its work the call's return
//! address and stack pointer: the [`Site`] that lets one stack walk serve every reference
//! the same code path takes (libavcodec references the pictures it outputs through the
//! same few calls, frame after frame, and a pooled picture once sampled stays sampled).
//! Elsewhere the site is unknown and every kept reference walks its stack.

use core::ffi::{c_int, c_void};
use core::sync::atomic::AtomicUsize;

use crate::descriptors::next;
use crate::holders::{self, Site};

/// The next definition of the function `name` as a function pointer of type `F`; aborts
/// when there is none (a caller of an FFmpeg function without FFmpeg loaded cannot
/// exist).
///
/// # Safety
/// `F` is an `unsafe extern "C" fn` type with the signature of `name`'s definition.
unsafe fn resolve<F: Copy>(slot: &AtomicUsize, name: &[u8]) -> F {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>()) };
    let address = next(slot, name);
    if address == 0 {
        // SAFETY: abort has no preconditions; continuing would call address 0.
        unsafe { libc::abort() };
    }
    // SAFETY: `address` is the definition of `name`, whose signature `F` is (the
    // caller's guarantee); both are one pointer wide.
    unsafe { core::mem::transmute_copy::<usize, F>(&address) }
}

/// Runs `call`, a reference-taking call made at `site`: the outermost on a thread keeps
/// the references it made (see [`crate::holders`]).
fn taking<R>(site: Site, call: impl FnOnce() -> R) -> R {
    let outermost = holders::enter();
    let result = call();
    holders::leave(outermost, site);
    result
}

/// Declares the work of an interposed function `$name`: `$body`, called by the entry
/// point with the caller's two argument registers and the call's site (a one-argument
/// function's second register is not an argument, and is ignored).
macro_rules! work {
    (fn $body:ident = $name:literal as $fty:ty, ($a:ident: $ta:ty, $b:tt: $tb:ty) -> $ret:ty, |$real:ident, $site:ident| $call:expr) => {
        /// # Safety
        /// As FFmpeg's function of the same name, called through its entry point.
        unsafe extern "C" fn $body($a: $ta, $b: $tb, caller: usize, sp: usize) -> $ret {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            // SAFETY: `$fty` is the signature of FFmpeg's definition.
            let $real: $fty = unsafe { resolve(&NEXT, concat!($name, "\0").as_bytes()) };
            let $site = Site {
                call: const { holders::call_index($name) },
                caller,
                sp,
            };
            $call
        }
    };
}

type RefFn = unsafe extern "C" fn(*mut c_void, *const c_void) -> c_int;
type CloneFn = unsafe extern "C" fn(*const c_void) -> *mut c_void;
type MoveFn = unsafe extern "C" fn(*mut c_void, *mut c_void);

work! {fn frame_ref = "av_frame_ref" as RefFn, (dst: *mut c_void, src: *const c_void) -> c_int,
|real, site| taking(site, || {
    // SAFETY: the caller's arguments, unchanged, under the caller's contract.
    unsafe { real(dst, src) }
})}
work! {fn packet_ref = "av_packet_ref" as RefFn, (dst: *mut c_void, src: *const c_void) -> c_int,
|real, site| taking(site, || {
    // SAFETY: the caller's arguments, unchanged, under the caller's contract.
    unsafe { real(dst, src) }
})}
work! {fn frame_clone = "av_frame_clone" as CloneFn, (src: *const c_void, _: usize) -> *mut c_void,
|real, site| taking(site, || {
    // SAFETY: the caller's argument, unchanged, under the caller's contract.
    unsafe { real(src) }
})}
work! {fn packet_clone = "av_packet_clone" as CloneFn, (src: *const c_void, _: usize) -> *mut c_void,
|real, site| taking(site, || {
    // SAFETY: the caller's argument, unchanged, under the caller's contract.
    unsafe { real(src) }
})}
// A moved packet's reference, when kept, takes the stack of the move.
work! {fn packet_move_ref = "av_packet_move_ref" as MoveFn, (dst: *mut c_void, src: *mut c_void) -> (),
|real, site| {
    holders::moving(src as usize, site);
    // SAFETY: the caller's arguments, unchanged, under the caller's contract.
    unsafe { real(dst, src) }
}}

/// Declares the exported entry point `$name`, whose work is `$body`.
macro_rules! entry {
    ($(#[$doc:meta])* fn $name:ident($a:ident: $ta:ty, $b:ident: $tb:ty) -> $ret:ty => $body:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As FFmpeg's function of the same name.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name($a: $ta, $b: $tb) -> $ret {
            // The return address is at [rsp] on entry and the caller's stack pointer just
            // above it: they go to the work as its third and fourth arguments (rdx, rcx),
            // which none of these functions has. The jump leaves the stack as the caller
            // made it, so the work returns straight to the caller.
            core::arch::naked_asm!(
                "mov rdx, [rsp]",
                "lea rcx, [rsp + 8]",
                "jmp {body}",
                body = sym $body,
            )
        }

        $(#[$doc])*
        ///
        /// # Safety
        /// As FFmpeg's function of the same name.
        #[cfg(not(target_arch = "x86_64"))]
        #[no_mangle]
        pub unsafe extern "C" fn $name($a: $ta, $b: $tb) -> $ret {
            // SAFETY: the caller's arguments, under the caller's contract; no site.
            unsafe { $body($a, $b, 0, 0) }
        }
    };
}

entry! {/** `av_frame_ref`, the references it takes kept. */
fn av_frame_ref(dst: *mut c_void, src: *const c_void) -> c_int => frame_ref}
entry! {/** `av_frame_clone`, the references it takes kept (one argument: the second
register is not read). */
fn av_frame_clone(src: *const c_void, unused: usize) -> *mut c_void => frame_clone}
entry! {/** `av_packet_ref`, the reference it takes kept. */
fn av_packet_ref(dst: *mut c_void, src: *const c_void) -> c_int => packet_ref}
entry! {/** `av_packet_clone`, the reference it takes kept (one argument: the second
register is not read). */
fn av_packet_clone(src: *const c_void, unused: usize) -> *mut c_void => packet_clone}
entry! {/** `av_packet_move_ref`, a moved reference kept with the move's stack. */
fn av_packet_move_ref(dst: *mut c_void, src: *mut c_void) -> () => packet_move_ref}
