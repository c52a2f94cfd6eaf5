//! The counters see libx264's allocations: `x264_picture_alloc` adds exactly one live
//! block of the picture's size, `x264_picture_clean` removes it.
//!
//! Heap counters are process-wide: run under nextest (`cargo xtask test`).

use avsoak::heap::{self, Snapshot};
use avsoak_scenarios::ffi::x264::AllocatedPicture;

/// One exact measurement of a picture's life: the blocks and bytes `x264_picture_alloc`
/// adds, and what is left after `x264_picture_clean`.
fn measure(width: u32, height: u32) -> (heap::Delta, heap::Delta) {
    let before = Snapshot::now();
    let picture = AllocatedPicture::new(width, height).expect("x264_picture_alloc");
    let held = Snapshot::now().since(&before);
    drop(picture);
    (held, Snapshot::now().since(&before))
}

fn picture_block(width: u32, height: u32) {
    let expected = (width * height * 3 / 2) as i64;
    // The counters are process-wide: something else in the process (the test
    // harness's thread, a cache filled on first use) may allocate while this thread
    // measures. Seen once in CI: 6 more live blocks, kept, on the first measurement.
    // Such noise only adds and does not repeat, so the first of up to 5 measurements
    // with exactly one allocation and one free is judged. A libx264 that added blocks
    // of its own would show them in all 5, and then in the sixth that is judged.
    let (held, after) = (0..5)
        .map(|_| measure(width, height))
        .find(|(held, after)| (held.allocs, held.frees, after.allocs, after.frees) == (1, 0, 1, 1))
        .unwrap_or_else(|| measure(width, height));
    assert_eq!(held.live_blocks, 1, "{width}x{height}: {held:?}");
    assert_eq!(held.allocs, 1, "{width}x{height}: {held:?}");
    // Usable size: the request rounded up by glibc, never by more than 5 %.
    assert!(
        held.live_bytes >= expected && (held.live_bytes as f64) < expected as f64 * 1.05,
        "{width}x{height}: {} live bytes for a {expected}-byte picture",
        held.live_bytes
    );
    assert_eq!(
        (after.live_blocks, after.live_bytes),
        (0, 0),
        "{width}x{height}: {after:?}"
    );
}

#[test]
fn x264_picture_alloc_and_clean_are_counted() {
    avsoak::heap::settle();
    heap::check().expect("hooks active");
    picture_block(640, 480);
    picture_block(1280, 720);
    picture_block(64, 48);
}

#[test]
fn a_forgotten_picture_stays_live() {
    avsoak::heap::settle();
    // As above: the first of up to 5 forgotten pictures measured without foreign
    // allocations is judged.
    let leak_one = || {
        let before = Snapshot::now();
        AllocatedPicture::new(640, 480).unwrap().leak();
        Snapshot::now().since(&before)
    };
    let held = (0..5)
        .map(|_| leak_one())
        .find(|held| (held.allocs, held.frees) == (1, 0))
        .unwrap_or_else(leak_one);
    assert_eq!(held.live_blocks, 1, "{held:?}");
    assert!(held.live_bytes >= 460_800, "{held:?}");
}
