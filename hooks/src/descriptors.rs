//! The functions that make and end descriptors and threads, interposed (with the
//! `interpose` feature): each calls the function it stands for, found with
//! `dlsym(RTLD_NEXT)` at its first call, and records what it made or ended in
//! [`crate::origins`]. A descriptor is forgotten before the real `close` runs, and a
//! thread before the real join or detach, because another thread may be handed the same
//! number right after.

use core::ffi::{c_char, c_int, c_uint};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::origins::{closed, opened, thread_created, thread_released};

/// The next definition of `name` (a NUL-terminated symbol) after this object's, cached in
/// `slot`.
pub(crate) fn next(slot: &AtomicUsize, name: &[u8]) -> usize {
    let mut address = slot.load(Relaxed);
    if address == 0 {
        // SAFETY: `name` is NUL-terminated (every caller passes a literal ending in \0);
        // RTLD_NEXT looks past this object, so it finds the C library's own function.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
        slot.store(address, Relaxed);
    }
    address
}

/// Declares an interposed function that calls the next definition and hands the result
/// to `$after`.
macro_rules! interpose {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; $after:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let address = next(&NEXT, concat!(stringify!($name), "\0").as_bytes());
            type Real = unsafe extern "C" fn($($ty),*) -> $ret;
            // SAFETY: `address` is the C library's definition of this very function, whose
            // signature this one repeats.
            let real = unsafe { core::mem::transmute::<usize, Real>(address) };
            // SAFETY: the caller's arguments, unchanged, under the caller's contract.
            let result = unsafe { real($($arg),*) };
            #[allow(clippy::redundant_closure_call)]
            ($after)(result, ($($arg,)*));
            result
        }
    };
}

fn made<A>(fd: c_int, _args: A) {
    if fd >= 0 {
        opened(fd);
    }
}

interpose! {/** `open(2)`, recorded. */ fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int; made}
interpose! {/** `open64(2)`, recorded. */ fn open64(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int; made}
interpose! {/** `openat(2)`, recorded. */ fn openat(dir: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int; made}
interpose! {/** `openat64(2)`, recorded. */ fn openat64(dir: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int; made}
interpose! {/** `creat(2)`, recorded. */ fn creat(path: *const c_char, mode: libc::mode_t) -> c_int; made}
interpose! {/** `creat64(2)`, recorded. */ fn creat64(path: *const c_char, mode: libc::mode_t) -> c_int; made}
interpose! {/** `socket(2)`, recorded. */ fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int; made}
interpose! {/** `accept(2)`, recorded. */ fn accept(fd: c_int, address: *mut libc::sockaddr, length: *mut libc::socklen_t) -> c_int; made}
interpose! {/** `accept4(2)`, recorded. */ fn accept4(fd: c_int, address: *mut libc::sockaddr, length: *mut libc::socklen_t, flags: c_int) -> c_int; made}
interpose! {/** `dup(2)`, recorded. */ fn dup(fd: c_int) -> c_int; made}
interpose! {/** `dup2(2)`, recorded. */ fn dup2(old: c_int, new: c_int) -> c_int; made}
interpose! {/** `dup3(2)`, recorded. */ fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int; made}
interpose! {/** `eventfd(2)`, recorded. */ fn eventfd(initial: c_uint, flags: c_int) -> c_int; made}
interpose! {/** `memfd_create(2)`, recorded. */ fn memfd_create(name: *const c_char, flags: c_uint) -> c_int; made}
interpose! {/** `timerfd_create(2)`, recorded. */ fn timerfd_create(clock: c_int, flags: c_int) -> c_int; made}
interpose! {/** `epoll_create(2)`, recorded. */ fn epoll_create(size: c_int) -> c_int; made}
interpose! {/** `epoll_create1(2)`, recorded. */ fn epoll_create1(flags: c_int) -> c_int; made}
interpose! {/** `signalfd(2)`, recorded. */ fn signalfd(fd: c_int, mask: *const libc::sigset_t, flags: c_int) -> c_int; made}
interpose! {/** `inotify_init(2)`, recorded. */ fn inotify_init() -> c_int; made}
interpose! {/** `inotify_init1(2)`, recorded. */ fn inotify_init1(flags: c_int) -> c_int; made}

fn made_pair(result: c_int, fds: *mut c_int) {
    if result == 0 && !fds.is_null() {
        // SAFETY: the call succeeded, so it wrote two descriptors at `fds`.
        let (a, b) = unsafe { (*fds, *fds.add(1)) };
        opened(a);
        opened(b);
    }
}

interpose! {/** `socketpair(2)`, recorded. */ fn socketpair(domain: c_int, kind: c_int, protocol: c_int, fds: *mut c_int) -> c_int;
|result, (_, _, _, fds)| made_pair(result, fds)}
interpose! {/** `pipe(2)`, recorded. */ fn pipe(fds: *mut c_int) -> c_int;
|result, (fds,)| made_pair(result, fds)}
interpose! {/** `pipe2(2)`, recorded. */ fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
|result, (fds, _)| made_pair(result, fds)}

fn made_file<A>(file: *mut libc::FILE, _args: A) {
    if !file.is_null() {
        // SAFETY: a FILE the C library just opened.
        opened(unsafe { libc::fileno(file) });
    }
}

interpose! {/** `fopen(3)`, recorded (glibc's opens through an alias `open` never sees). */
fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE; made_file}
interpose! {/** `fopen64(3)`, recorded. */
fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE; made_file}

/// Calls the next definition of a closing function, after forgetting what it closes.
macro_rules! before {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; $before:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            #[allow(clippy::redundant_closure_call)]
            ($before)(($($arg,)*));
            let address = next(&NEXT, concat!(stringify!($name), "\0").as_bytes());
            type Real = unsafe extern "C" fn($($ty),*) -> $ret;
            // SAFETY: `address` is the C library's definition of this very function, whose
            // signature this one repeats.
            let real = unsafe { core::mem::transmute::<usize, Real>(address) };
            // SAFETY: the caller's arguments, unchanged, under the caller's contract.
            unsafe { real($($arg),*) }
        }
    };
}

before! {/** `close(2)`, recorded. */ fn close(fd: c_int) -> c_int; |(fd,)| closed(fd)}
before! {/** `fclose(3)`, recorded (glibc's closes through an alias `close` never sees). */
fn fclose(file: *mut libc::FILE) -> c_int;
|(file,): (*mut libc::FILE,)| if !file.is_null() {
    // SAFETY: a FILE the caller still owns; fileno only reads it.
    closed(unsafe { libc::fileno(file) })
}}
before! {/** `close_range(2)`, recorded. */ fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
|(first, last, flags): (c_uint, c_uint, c_int)| {
    // CLOSE_RANGE_CLOEXEC (4) only marks them close-on-exec.
    if flags & 4 == 0 {
        let end = last.min(crate::origins::FD_SLOTS as c_uint - 1);
        for fd in first..=end {
            closed(fd as c_int);
        }
    }
}}

extern "C" {
    fn pthread_attr_getdetachstate(attr: *const libc::pthread_attr_t, state: *mut c_int) -> c_int;
}

/// Whether `attr` creates its thread detached (nothing to join, nothing to leak).
fn detached(attr: *const libc::pthread_attr_t) -> bool {
    let mut state = libc::PTHREAD_CREATE_JOINABLE;
    // SAFETY: `attr` is the caller's initialized attribute object (null: the defaults,
    // joinable); the call only reads it and writes `state`.
    !attr.is_null()
        && unsafe { pthread_attr_getdetachstate(attr, &mut state) } == 0
        && state == libc::PTHREAD_CREATE_DETACHED
}

type Start = extern "C" fn(*mut core::ffi::c_void) -> *mut core::ffi::c_void;

interpose! {/** `pthread_create(3)`, recorded: the thread holds its stack until joined or detached. */
fn pthread_create(thread: *mut libc::pthread_t, attr: *const libc::pthread_attr_t, start: Start, arg: *mut core::ffi::c_void) -> c_int;
|result: c_int, (thread, attr, _, _): (*mut libc::pthread_t, *const libc::pthread_attr_t, Start, *mut core::ffi::c_void)| {
    if result == 0 && !thread.is_null() && !detached(attr) {
        // SAFETY: the call succeeded, so it wrote the new thread's id at `thread`.
        thread_created(unsafe { *thread } as usize);
    }
}}
before! {/** `pthread_join(3)`, recorded. */ fn pthread_join(thread: libc::pthread_t, result: *mut *mut core::ffi::c_void) -> c_int;
|(thread, _): (libc::pthread_t, *mut *mut core::ffi::c_void)| thread_released(thread as usize)}
before! {/** `pthread_detach(3)`, recorded. */ fn pthread_detach(thread: libc::pthread_t) -> c_int;
|(thread,): (libc::pthread_t,)| thread_released(thread as usize)}

/// The addresses of the descriptor hooks, for [`crate::linked`]'s anchors.
pub(crate) fn anchor() -> usize {
    let addresses = [
        open as *const () as usize,
        socket as *const () as usize,
        close as *const () as usize,
        fopen as *const () as usize,
        pipe as *const () as usize,
        pthread_create as *const () as usize,
        pthread_join as *const () as usize,
    ];
    core::hint::black_box(addresses)
        .iter()
        .fold(0, |a, b| a ^ b)
}
