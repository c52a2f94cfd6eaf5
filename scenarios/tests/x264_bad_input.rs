//! Bad input at the x264 edge: a clear error naming the value, and nothing left allocated.
//! Heap counters are process-wide: run under nextest (`cargo xtask test`).

use std::hint::black_box;

use avsoak::heap::Snapshot;
use avsoak_fixtures::{Camera, CameraConfig};
use avsoak_scenarios::cases::picture_pool::parse_size;
use avsoak_scenarios::ffi;
use avsoak_scenarios::ffi::x264::{AllocatedPicture, EncoderConfig, Sink, X264Error};

#[test]
fn an_encoder_that_cannot_open_says_why_and_leaves_nothing() {
    avsoak::heap::settle();
    let mut bad_preset = EncoderConfig::live(64, 48, 30, 1);
    bad_preset.preset = c"warp-speed".into();
    let bad_settings = [
        (0, 0, 30, 1),
        (641, 480, 30, 1),
        (64, 48, 0, 1),
        (64, 48, 30, 0),
        (32768, 64, 30, 1),
    ];
    // Once first: stdio and x264 may initialise state on their first error.
    drop(ffi::x264::open_encoder(&bad_preset));

    let before = Snapshot::now();
    let refused = bad_settings
        .iter()
        .filter(|&&(w, h, n, d)| ffi::x264::open_encoder(&EncoderConfig::live(w, h, n, d)).is_err())
        .count()
        + usize::from(ffi::x264::open_encoder(&bad_preset).is_err());
    let left = Snapshot::now().since(&before);
    assert_eq!(refused, bad_settings.len() + 1);
    assert_eq!((left.live_blocks, left.live_bytes), (0, 0), "{left:?}");

    let err = ffi::x264::open_encoder(&EncoderConfig::live(641, 480, 30, 1))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid encoder settings 641x480 at 30/1 fps (expected even width and height from 2 to 16384 \
         and a positive frame rate)"
    );
    let err = ffi::x264::open_encoder(&bad_preset)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err,
        X264Error::Preset {
            preset: "warp-speed".into(),
            tune: "zerolatency".into()
        }
    );
}

#[test]
fn a_frame_of_the_wrong_size_is_refused_by_picture_and_encoder() {
    avsoak::heap::settle();
    let frame = Camera::new(CameraConfig::new(64, 48)).unwrap().next_frame();
    let mut picture = AllocatedPicture::new(32, 32).unwrap();
    let err = picture.fill_from(&frame).unwrap_err();
    assert_eq!(err.to_string(), "frame 0 is 64x48 but the picture is 32x32");

    let mut encoder = ffi::x264::open_encoder(&EncoderConfig::live(32, 32, 30, 1)).unwrap();
    let mut sink = Sink::counting();
    let before = Snapshot::now();
    let result = ffi::x264::encode(
        &mut encoder,
        0,
        0,
        ffi::x264::borrowed_image(&frame),
        &mut sink,
    );
    let allocs = Snapshot::now().since(&before).allocs;
    assert_eq!(
        result.unwrap_err().to_string(),
        "frame 0 is 64x48 but the encoder is 32x32"
    );
    assert_eq!(allocs, 0, "refused before reaching x264");
    assert_eq!(sink.frames, 0);
}

#[test]
fn sizes_parse_or_name_the_bad_value() {
    avsoak::heap::settle();
    assert_eq!(parse_size("1280x720").unwrap(), (1280, 720));
    for bad in ["1280", "x720", "1280x", "big", "-2x4"] {
        let err = parse_size(black_box(bad)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("invalid size {bad:?} (expected WIDTHxHEIGHT, e.g. 640x480)")
        );
    }
}
