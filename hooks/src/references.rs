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

use core::ffi::{c_int, c_void};
use core::sync::atomic::AtomicUsize;

use crate::descriptors::next;
use crate::holders;

/// The next definition of the function `name`, as `address` points to it; aborts when
/// there is none (a caller of an FFmpeg function without FFmpeg loaded cannot exist).
fn real(slot: &AtomicUsize, name: &[u8]) -> usize {
    let address = next(slot, name);
    if address == 0 {
        // SAFETY: abort has no preconditions; continuing would call address 0.
        unsafe { libc::abort() };
    }
    address
}

/// Declares an interposed reference-taking function: the outermost on a thread keeps
/// the references its call made (see [`crate::holders`]).
macro_rules! taking {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As FFmpeg's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let address = real(&NEXT, concat!(stringify!($name), "\0").as_bytes());
            type Real = unsafe extern "C" fn($($ty),*) -> $ret;
            // SAFETY: `address` is FFmpeg's definition of this very function, whose
            // signature this one repeats (pointers as `c_void`).
            let forward = unsafe { core::mem::transmute::<usize, Real>(address) };
            let outermost = holders::enter();
            // SAFETY: the caller's arguments, unchanged, under the caller's contract.
            let result = unsafe { forward($($arg),*) };
            holders::leave(outermost);
            result
        }
    };
}

taking! {/** `av_frame_ref`, the references it takes kept. */ fn av_frame_ref(dst: *mut c_void, src: *const c_void) -> c_int}
taking! {/** `av_frame_clone`, the references it takes kept. */ fn av_frame_clone(src: *const c_void) -> *mut c_void}
taking! {/** `av_packet_ref`, the reference it takes kept. */ fn av_packet_ref(dst: *mut c_void, src: *const c_void) -> c_int}
taking! {/** `av_packet_clone`, the reference it takes kept. */ fn av_packet_clone(src: *const c_void) -> *mut c_void}

/// `av_packet_move_ref`: the moved reference, when kept, takes the stack of the move.
///
/// # Safety
/// As FFmpeg's `av_packet_move_ref`.
#[no_mangle]
pub unsafe extern "C" fn av_packet_move_ref(dst: *mut c_void, src: *mut c_void) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let address = real(&NEXT, b"av_packet_move_ref\0");
    type Real = unsafe extern "C" fn(*mut c_void, *mut c_void);
    // SAFETY: `address` is FFmpeg's `av_packet_move_ref`, whose signature this repeats.
    let forward = unsafe { core::mem::transmute::<usize, Real>(address) };
    holders::moving(src as usize);
    // SAFETY: the caller's arguments, unchanged, under the caller's contract.
    unsafe { forward(dst, src) }
}
