//! The libx265 edge, only what avsoak needs to account for x265's own leak: the version,
//! and the size of one `x265_param` as x265's allocator hands it out.
//!
//! x265 3.5's `x265_encoder_open` allocates a `zoneParam` copy of the parameters and frees
//! it only on its failure path, so every successful open loses one `x265_param` block for
//! good (valgrind: "definitely lost", with `x265_encoder_open` as the allocating frame).

use std::ffi::{c_char, c_void, CStr};

use avsoak_harness::scenario::Loss;

extern "C" {
    fn x265_param_alloc() -> *mut c_void;
    fn x265_param_default(param: *mut c_void);
    fn x265_param_free(param: *mut c_void);
    static x265_version_str: *const c_char;
}

/// The x265 version string, e.g. `3.5+1-f0c1022b6`.
pub fn version() -> String {
    // SAFETY: x265_version_str is a constant NUL-terminated string set at load time.
    unsafe { CStr::from_ptr(x265_version_str) }
        .to_string_lossy()
        .into_owned()
}

/// What one lost `x265_param` costs the live heap: measured by allocating one through
/// x265's own `x265_param_alloc` (the call `x265_encoder_open` makes for `zoneParam`) and
/// reading its usable size, the unit the heap counters count in.
pub fn param_block() -> Loss {
    // SAFETY: x265_param_alloc returns a fresh block from x265_malloc, or NULL.
    let param = unsafe { x265_param_alloc() };
    if param.is_null() {
        return Loss::default();
    }
    // SAFETY: `param` is a live heap block from posix_memalign (through x265_malloc).
    // x265_param_free follows the param's zone pointers, so the param is given its
    // defaults (no zones) first; then it is released with the matching free, once.
    let bytes = unsafe {
        let bytes = libc::malloc_usable_size(param);
        x265_param_default(param);
        x265_param_free(param);
        bytes
    };
    Loss {
        bytes: bytes as i64,
        blocks: 1,
    }
}
