//! avsoak-scenarios: real incidents, replayed against real codecs.
//!
//! - [`ffi`]: the FFI edge, one module per C library (x264, x265, libheif, FFmpeg's
//!   custom I/O and encoders).
//! - [`media`] (fixtures muxed in code) and [`player`] (ffplay's model) build on it.
//! - [`store`]: a loopback object store that takes multipart uploads.
//! - [`cases`]: the five scenarios, one module each (`docs/incidents/` tells the incident
//!   behind each); [`all`] is the registry the runner and the tests use.
//! - [`compare`]: the encoder comparison.
//!
//! The `avsoak-run` binary of this crate is [`avsoak::Runner`] over [`all`]: it soaks
//! every case in a child process of its own (`avsoak-run soak`) and is that child too
//! (`avsoak-run child`).
//!
//! ```no_run
//! use avsoak::scenario::Scenario;
//!
//! for scenario in avsoak_scenarios::all() {
//!     for case in scenario.cases() {
//!         println!("{} expects {}", case.id(), case.expect);
//!     }
//! }
//! ```

use std::collections::BTreeMap;

use avsoak::scenario::Scenario;

pub mod cases;
pub mod compare;
pub mod ffi;
pub mod media;
pub mod player;
pub mod store;

use cases::{avio_memory, encode_abort, fmp4_mux, picture_pool, player_queue};

/// Every registered scenario, in report order.
pub fn all() -> Vec<&'static dyn Scenario> {
    vec![
        &picture_pool::PicturePool,
        &avio_memory::AvioMemory,
        &fmp4_mux::Fmp4Mux,
        &encode_abort::EncodeAbort,
        &player_queue::PlayerQueue,
    ]
}

/// Versions of the codec libraries this build runs against, for report provenance.
pub fn library_versions() -> BTreeMap<String, String> {
    let mut libs = BTreeMap::new();
    libs.insert("x264".to_owned(), format!("build {}", ffi::x264::build()));
    let version = |v: u32| format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff);
    // SAFETY: the *_version functions only return a constant.
    let (avcodec, avformat, avutil) = unsafe {
        (
            ffmpeg_next::ffi::avcodec_version(),
            ffmpeg_next::ffi::avformat_version(),
            ffmpeg_next::ffi::avutil_version(),
        )
    };
    libs.insert("libavcodec".to_owned(), version(avcodec));
    libs.insert("libavformat".to_owned(), version(avformat));
    libs.insert("libavutil".to_owned(), version(avutil));
    libs.insert("libheif".to_owned(), ffi::heif::version());
    libs.insert("x265".to_owned(), ffi::x265::version());
    libs
}

/// The one of `all` whose `name_of` is `name`; otherwise an error that names the value,
/// what it should have been, and every choice: `unknown backend "x" (expected one of:
/// libheif-x265, libx265, libx264, kvazaar)`.
pub fn by_name<T: Copy>(
    all: &[T],
    name_of: fn(T) -> &'static str,
    what: &str,
    name: &str,
) -> Result<T, avsoak::scenario::BoxError> {
    all.iter()
        .copied()
        .find(|&item| name_of(item) == name)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&item| name_of(item)).collect();
            format!(
                "unknown {what} {name:?} (expected one of: {})",
                names.join(", ")
            )
            .into()
        })
}

/// Parses a byte size as case parameters write it: `4096`, `4k`, `32k`, `1m`, `5m`.
pub fn parse_bytes(text: &str) -> Result<usize, avsoak::scenario::BoxError> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix('k') {
        Some(d) => (d, 1 << 10),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1 << 20),
            None => (lower.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            format!("invalid byte size {text:?} (expected bytes, e.g. 4096, 32k or 5m)").into()
        })
}
