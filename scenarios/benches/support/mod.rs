//! What every avsoak bench shares: heap figures beside criterion's times.
//!
//! Criterion measures time only. Each bench also runs its routine between two heap
//! snapshots ([`avsoak::heap::per_iteration`]) and reports allocations and bytes
//! per iteration under the same id: printed here, and written as JSON to
//! `$AVSOAK_BENCH_HEAP_DIR` for `cargo xtask bench` to table beside the median times.

// Each bench includes this module and uses part of it.
#![allow(dead_code)]

use avsoak::heap::{self, PerIteration};
use criterion::BenchmarkId;

/// A criterion id for `function` at `parameter`, and the full id (`group/function/
/// parameter`) its heap figures are filed under, which is also criterion's folder.
pub fn id(group: &str, function: &str, parameter: impl std::fmt::Display) -> (BenchmarkId, String) {
    let full = format!("{group}/{function}/{parameter}");
    (BenchmarkId::new(function, parameter), full)
}

/// Runs `routine` `iterations` times between heap snapshots and reports the figures
/// under `id` (criterion's `group/function/parameter`).
pub fn heap_figures(id: &str, iterations: u64, routine: impl FnMut()) -> PerIteration {
    heap_figures_per_item(id, iterations, 1, routine)
}

/// As [`heap_figures`], for a routine that handles `items` items per run (a batch through
/// a queue, with its set-up): the figures are per item.
pub fn heap_figures_per_item(
    id: &str,
    runs: u64,
    items: u64,
    routine: impl FnMut(),
) -> PerIteration {
    let mut figures = heap::per_iteration(runs, routine);
    let items = items.max(1) as f64;
    figures.allocs /= items;
    figures.bytes /= items;
    figures.live_bytes /= items;
    if heap::check().is_err() {
        eprintln!("{id}: heap figures unavailable (no heap hooks in this build)");
        return figures;
    }
    eprintln!(
        "{id}: heap {:.2} allocs/iter, {:.0} bytes/iter, {:+.1} live bytes/iter",
        figures.allocs, figures.bytes, figures.live_bytes
    );
    if let Some(dir) = std::env::var_os("AVSOAK_BENCH_HEAP_DIR") {
        let dir = std::path::PathBuf::from(dir);
        let file = dir.join(format!("{}.json", id.replace('/', "__")));
        let json = serde_json::json!({
            "id": id,
            "iterations": figures.iterations,
            "allocs_per_iter": figures.allocs,
            "bytes_per_iter": figures.bytes,
            "live_bytes_per_iter": figures.live_bytes,
        });
        let written =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, json.to_string()));
        if let Err(e) = written {
            eprintln!("{id}: cannot write {}: {e}", file.display());
        }
    }
    figures
}
