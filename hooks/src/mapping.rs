//! `mmap`, `mmap64`, `munmap` and `mremap`, interposed and counted: the bytes and the
//! number of mappings the program and its libraries make themselves (frame pools,
//! drivers, file mappings). glibc's malloc and its thread stacks map through internal
//! aliases that never reach these symbols, so nothing here counts heap bytes twice.
//!
//! Each forwards to the system call itself (`syscall(2)`, which sets `errno` on failure,
//! as the libc wrappers do), then counts what succeeded, in pages: a mapping adds its
//! length rounded up to a page and one mapping; an unmapping takes off its length and
//! one mapping; a remapping adds the difference of its lengths. Partial unmaps and
//! unmaps of mappings made elsewhere can make the count drift down, never up.
//!
//! The rules of the allocation hooks hold here too: nothing allocates, nothing locks.

use core::sync::atomic::{AtomicI64, Ordering::Relaxed};

static MAPPED_BYTES: AtomicI64 = AtomicI64::new(0);
static MAPPINGS: AtomicI64 = AtomicI64::new(0);

/// Bytes and mappings the process mapped through the interposed functions and has not
/// unmapped (zeros without the `interpose` feature).
pub fn mapped() -> (i64, i64) {
    (MAPPED_BYTES.load(Relaxed), MAPPINGS.load(Relaxed))
}

/// The mapping hooks' addresses, for [`crate::linked`]'s anchors: whatever links the
/// allocation hooks links these too.
#[cfg(feature = "interpose")]
pub(crate) fn anchor() -> usize {
    let addresses = [
        hooks::mmap as *const () as usize,
        hooks::mmap64 as *const () as usize,
        hooks::munmap as *const () as usize,
        hooks::mremap as *const () as usize,
    ];
    core::hint::black_box(addresses)
        .iter()
        .fold(0, |a, b| a ^ b)
}

#[cfg(feature = "interpose")]
mod hooks {
    use core::ffi::{c_int, c_void};

    use super::*;

    const PAGE: i64 = 4096;

    fn pages(length: usize) -> i64 {
        (length as i64 + PAGE - 1) / PAGE * PAGE
    }

    /// `mmap(2)`, counted.
    ///
    /// # Safety
    /// As `mmap(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn mmap(
        addr: *mut c_void,
        length: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        offset: libc::off_t,
    ) -> *mut c_void {
        // SAFETY: the caller's arguments go to the kernel unchanged, as glibc's own mmap
        // passes them; the kernel checks them.
        let result =
            unsafe { libc::syscall(libc::SYS_mmap, addr, length, prot, flags, fd, offset) };
        if result == -1 {
            return libc::MAP_FAILED;
        }
        MAPPED_BYTES.fetch_add(pages(length), Relaxed);
        MAPPINGS.fetch_add(1, Relaxed);
        crate::origins::mapped_here(result as usize, pages(length) as usize);
        result as *mut c_void
    }

    /// `mmap64(2)`: the same as [`mmap`] on a 64-bit system.
    ///
    /// # Safety
    /// As `mmap(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn mmap64(
        addr: *mut c_void,
        length: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        offset: libc::off_t,
    ) -> *mut c_void {
        // SAFETY: the caller's contract is mmap's.
        unsafe { mmap(addr, length, prot, flags, fd, offset) }
    }

    /// `munmap(2)`, counted.
    ///
    /// # Safety
    /// As `munmap(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn munmap(addr: *mut c_void, length: usize) -> c_int {
        // Forgotten first: once unmapped, another thread may be handed the same address.
        crate::origins::unmapped(addr as usize);
        // SAFETY: the caller's arguments go to the kernel unchanged.
        let result = unsafe { libc::syscall(libc::SYS_munmap, addr, length) };
        if result == 0 {
            MAPPED_BYTES.fetch_sub(pages(length), Relaxed);
            MAPPINGS.fetch_sub(1, Relaxed);
        }
        result as c_int
    }

    /// `mremap(2)`, counted. The fifth argument is read only with `MREMAP_FIXED` (or
    /// `MREMAP_DONTUNMAP`), as the kernel reads it; a caller that passes four leaves it
    /// unused.
    ///
    /// # Safety
    /// As `mremap(2)`.
    #[no_mangle]
    pub unsafe extern "C" fn mremap(
        old: *mut c_void,
        old_length: usize,
        new_length: usize,
        flags: c_int,
        new_address: *mut c_void,
    ) -> *mut c_void {
        let fixed = flags & (libc::MREMAP_FIXED | 4/* MREMAP_DONTUNMAP */) != 0;
        let target = if fixed {
            new_address
        } else {
            core::ptr::null_mut()
        };
        // SAFETY: the caller's arguments go to the kernel unchanged; the new address only
        // when the flags say it was given.
        let result =
            unsafe { libc::syscall(libc::SYS_mremap, old, old_length, new_length, flags, target) };
        if result == -1 {
            return libc::MAP_FAILED;
        }
        MAPPED_BYTES.fetch_add(pages(new_length) - pages(old_length), Relaxed);
        if result as usize != old as usize {
            crate::origins::unmapped(old as usize);
        }
        crate::origins::unmapped(result as usize);
        crate::origins::mapped_here(result as usize, pages(new_length) as usize);
        result as *mut c_void
    }
}
