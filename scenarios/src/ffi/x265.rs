//! The libx265 edge, only what avsoak needs to account for x265's own leak: the version,
//! and the size of one `x265_param` as x265's allocator hands it out.
//!
//! x265 3.5's `x265_encoder_open` allocates a `zoneParam` copy of the parameters and frees
//! it only on its failure path, so every successful open loses one `x265_param` block for
//! good (valgrind: "definitely lost", with `x265_encoder_open` as the allocating frame).

use std::ffi::{c_char, c_int, c_void, CStr};

use avsoak::scenario::Loss;

extern "C" {
    fn x265_api_query(bit_depth: c_int, api_version: c_int, err: *mut c_int) -> *const c_void;
    static x265_version_str: *const c_char;
}

/// The x265 version string, e.g. `3.5+1-f0c1022b6`.
pub fn version() -> String {
    // SAFETY: x265_version_str is a constant NUL-terminated string set at load time.
    unsafe { CStr::from_ptr(x265_version_str) }
        .to_string_lossy()
        .into_owned()
}

/// The libx265 build this crate is written against (`X265_BUILD`, the soname).
const X265_BUILD: c_int = 199;

/// The leading fields of `x265_api`, the only ones read here.
#[repr(C)]
struct ApiHead {
    api_major_version: c_int,
    api_build_number: c_int,
    sizeof_param: c_int,
}

/// glibc's malloc on 64-bit Linux, the allocator the heap hooks count: chunks are
/// multiples of 16 bytes with an 8-byte header, and an aligned block
/// (`posix_memalign`) keeps a tail of up to `MIN_CHUNK` bytes that is too small to
/// split off as a chunk of its own.
const CHUNK_ALIGN: usize = 16;
const CHUNK_HEADER: usize = 8;
const MIN_CHUNK: usize = 32;

/// The smallest usable size glibc gives a request of `request` bytes.
fn smallest_usable(request: usize) -> usize {
    let chunk = (request + CHUNK_HEADER).next_multiple_of(CHUNK_ALIGN);
    chunk.max(MIN_CHUNK) - CHUNK_HEADER
}

/// What one lost `x265_param` costs the live heap, in the unit the heap counters count
/// (usable bytes): the size of the request x265 makes (`sizeof_param`, from the
/// library's own `x265_api`) as the allocator rounds it, one block, and a slack of up to
/// 32 bytes more. x265 allocates it with `posix_memalign(64, …)`, whose usable size
/// depends on where the block lands: 1,176 to 1,208 bytes for x265 3.5's 1,168-byte
/// param, varying from process to process and from one open to the next.
pub fn param_block() -> Result<Loss, String> {
    let mut err: c_int = 0;
    // SAFETY: x265_api_query only reads its arguments and writes `err`; it returns a
    // pointer to a static `x265_api` of the linked library, or NULL if the build
    // differs.
    let api = unsafe { x265_api_query(0, X265_BUILD, &mut err) };
    if api.is_null() {
        return Err(format!(
            "libx265 {} does not offer the API of build {X265_BUILD} (x265_api_query error {err})",
            version()
        ));
    }
    // SAFETY: `api` is non-null and points at a static `x265_api`, whose first three
    // fields are the ints `ApiHead` declares; it lives as long as the library.
    let head = unsafe { &*api.cast::<ApiHead>() };
    if head.api_build_number != X265_BUILD {
        return Err(format!(
            "libx265 {} reports API build {} (major {}), expected {X265_BUILD}",
            version(),
            head.api_build_number,
            head.api_major_version
        ));
    }
    let request = usize::try_from(head.sizeof_param)
        .map_err(|_| format!("libx265 reports sizeof_param = {}", head.sizeof_param))?;
    Ok(Loss {
        bytes: smallest_usable(request) as i64,
        blocks: 1,
        slack: MIN_CHUNK as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn x265_param_alloc() -> *mut c_void;
        fn x265_param_default(param: *mut c_void);
        fn x265_param_free(param: *mut c_void);
    }

    #[test]
    fn smallest_usable_follows_the_chunk_rounding() {
        assert_eq!(smallest_usable(0), 24);
        assert_eq!(smallest_usable(24), 24);
        assert_eq!(smallest_usable(25), 40);
        assert_eq!(smallest_usable(1168), 1176);
    }

    /// x265's own allocations of its param, placed among spacer blocks of assorted sizes
    /// so that they land at assorted alignments, span exactly the declared range: both
    /// ends are reached and nothing lies beyond.
    #[test]
    fn x265_params_lie_in_the_declared_range() {
        let loss = param_block().unwrap();
        let mut spacers = Vec::new();
        let mut params = Vec::new();
        for k in 0..64usize {
            spacers.push(vec![0u8; 1 + 8 * k]);
            // SAFETY: x265_param_alloc returns a fresh block from x265_malloc, or NULL.
            let param = unsafe { x265_param_alloc() };
            assert!(!param.is_null());
            params.push(param);
        }
        let sizes: Vec<i64> = params
            .iter()
            // SAFETY: every `param` is a live block from posix_memalign.
            .map(|&p| unsafe { libc::malloc_usable_size(p) } as i64)
            .collect();
        for param in params {
            // SAFETY: `param` is live and has no zones; x265_param_default keeps it so
            // before the matching free, once.
            unsafe {
                x265_param_default(param);
                x265_param_free(param);
            }
        }
        drop(spacers);
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert_eq!(
            (*min, *max),
            (loss.bytes, loss.bytes + loss.slack),
            "{sizes:?}"
        );
    }
}
