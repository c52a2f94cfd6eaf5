//! Damaged input through the memory reader: proptest mutations of real fixture bytes
//! (truncation, bit flips, byte runs, header damage). Every case must end in a clear
//! error or a valid partial result, never a crash or a hang, and must leave nothing
//! allocated. Heap counters are process-wide: run under nextest (`cargo xtask test`).

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use avsoak::heap::Snapshot;
use avsoak_scenarios::cases::avio_memory::{read_memory, ReadSpec};
use avsoak_scenarios::media::{self, Clip, Container};
use ffmpeg_next as ffmpeg;
use proptest::prelude::*;

/// How the bytes are damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Keep this fraction (per mille) of the file.
    Truncate(u32),
    /// Flip these bits (positions per mille of the file, bit index).
    Flips(Vec<(u32, u8)>),
    /// Overwrite a run at (per mille, length) with one byte value.
    Run(u32, usize, u8),
    /// Overwrite bytes within the first 64 (the header) with these values.
    Header(Vec<(usize, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0u32..1000).prop_map(Damage::Truncate),
        prop::collection::vec((0u32..1000, 0u8..8), 1..16).prop_map(Damage::Flips),
        (0u32..1000, 1usize..4096, any::<u8>()).prop_map(|(at, n, v)| Damage::Run(at, n, v)),
        prop::collection::vec((0usize..64, any::<u8>()), 1..8).prop_map(Damage::Header),
    ]
}

fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let at = |per_mille: u32| bytes.len() * per_mille as usize / 1000;
    let mut out = bytes.to_vec();
    match damage {
        Damage::Truncate(keep) => out.truncate(at(*keep)),
        Damage::Flips(flips) => {
            for &(pos, bit) in flips {
                out[at(pos)] ^= 1 << bit;
            }
        }
        Damage::Run(pos, n, value) => {
            let start = at(*pos);
            let end = (start + n).min(out.len());
            out[start..end].fill(*value);
        }
        Damage::Header(edits) => {
            for &(pos, value) in edits {
                if pos < out.len() {
                    out[pos] = value;
                }
            }
        }
    }
    out
}

static TRIED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Reads `bytes`; checks the result is an error or at most the fixture's frames, and
/// that a repeat of the same input leaves nothing behind.
fn check(bytes: Vec<u8>, seekable: bool) -> Result<(), TestCaseError> {
    let bytes: Arc<[u8]> = bytes.into();
    let spec = ReadSpec::new(seekable, 4096);
    // The first read may initialise FFmpeg's one-time state for a new error path.
    let first = read_memory(Cursor::new(bytes.clone()), spec);
    TRIED.fetch_add(1, Ordering::Relaxed);
    match &first {
        Ok(out) => prop_assert!(
            out.frames <= Clip::STANDARD.frames + 1,
            "{} frames",
            out.frames
        ),
        Err(e) => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            prop_assert!(!e.to_string().is_empty());
        }
    }
    drop(first);
    let before = Snapshot::now();
    drop(read_memory(Cursor::new(bytes.clone()), spec));
    drop(read_memory(Cursor::new(bytes.clone()), spec));
    let left = Snapshot::now().since(&before);
    drop(bytes);
    prop_assert_eq!(
        (left.live_blocks, left.live_bytes),
        (0, 0),
        "left {:?}",
        left
    );
    Ok(())
}

fn run(container: Container) {
    ffmpeg::init().unwrap();
    ffmpeg::log::set_level(ffmpeg::log::Level::Quiet);
    let fixture = media::fixture(Clip::STANDARD, container).unwrap();
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(damage in damage(), seekable in any::<bool>())| {
        let seekable = seekable || !container.streamable();
        check(apply(&fixture, &damage), seekable)?;
    });
    eprintln!(
        "{container}: tried {} mutated inputs, {} ended in an error, the rest in a valid (partial) result",
        TRIED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed)
    );
    assert!(TRIED.load(Ordering::Relaxed) >= 48);
}

#[test]
fn damaged_mp4_ends_in_an_error_or_a_partial_result_and_leaves_nothing() {
    avsoak::heap::settle();
    run(Container::Mp4);
}

#[test]
fn damaged_fmp4_ends_in_an_error_or_a_partial_result_and_leaves_nothing() {
    avsoak::heap::settle();
    run(Container::Fmp4);
}

#[test]
fn damaged_mpegts_ends_in_an_error_or_a_partial_result_and_leaves_nothing() {
    avsoak::heap::settle();
    run(Container::MpegTs);
}

#[test]
fn damaged_matroska_ends_in_an_error_or_a_partial_result_and_leaves_nothing() {
    avsoak::heap::settle();
    run(Container::Matroska);
}
