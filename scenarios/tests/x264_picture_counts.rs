//! The counters see libx264's allocations: `x264_picture_alloc` adds exactly one live
//! block of the picture's size, `x264_picture_clean` removes it.
//!
//! Heap counters are process-wide: run under nextest (`cargo xtask test`).

use avsoak::heap::{self, Snapshot};
use avsoak_scenarios::ffi::x264::AllocatedPicture;

fn picture_block(width: u32, height: u32) {
    let expected = (width * height * 3 / 2) as i64;
    let before = Snapshot::now();
    let picture = AllocatedPicture::new(width, height).expect("x264_picture_alloc");
    let held = Snapshot::now().since(&before);
    assert_eq!(held.live_blocks, 1, "{width}x{height}: {held:?}");
    assert_eq!(held.allocs, 1, "{width}x{height}: {held:?}");
    // Usable size: the request rounded up by glibc, never by more than 5 %.
    assert!(
        held.live_bytes >= expected && (held.live_bytes as f64) < expected as f64 * 1.05,
        "{width}x{height}: {} live bytes for a {expected}-byte picture",
        held.live_bytes
    );
    drop(picture);
    let after = Snapshot::now().since(&before);
    assert_eq!(
        (after.live_blocks, after.live_bytes),
        (0, 0),
        "{width}x{height}: {after:?}"
    );
}

#[test]
fn x264_picture_alloc_and_clean_are_counted() {
    heap::check().expect("hooks active");
    picture_block(640, 480);
    picture_block(1280, 720);
    picture_block(64, 48);
}

#[test]
fn a_forgotten_picture_stays_live() {
    let before = Snapshot::now();
    AllocatedPicture::new(640, 480).unwrap().leak();
    let held = Snapshot::now().since(&before);
    assert_eq!(held.live_blocks, 1);
    assert!(held.live_bytes >= 460_800);
}
