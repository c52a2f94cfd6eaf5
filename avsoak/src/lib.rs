//! avsoak: measures the heap of a video pipeline, judges its trend, and reports.
//!
//! - [`heap`]: one counter for Rust and C allocations (the libc functions are interposed
//!   by the `avsoak-hooks` crate, re-exported here as [`hooks`]), snapshots, deltas and
//!   sampled stacks.
//! - [`stats`]: pure functions from a series of samples to a trend (Theil–Sen slope,
//!   Mann–Kendall test, bounded-growth check).
//! - [`scenario`]: what a scenario provides: cases with expectations, and a workload.
//! - [`soak`]: runs each case in its own child process under a watchdog and a heap cap,
//!   and turns the samples into a verdict.
//! - [`compare`]: encoder backends side by side (`compare.json`, table, page).
//! - [`gate`]: named baselines, and a run compared with one.
//! - [`profile`]: heap profiles in DHAT's format from the sampled stacks.
//! - [`series`]: a soak's per-iteration series, bounded however long the soak runs.
//! - [`report`]: `report.json` (schema `avsoak.report/1`), `summary.md`, `index.html`
//!   with heap timelines, `junit.xml`, series CSV.
//!
//! Counting the heap in a test:
//!
//! ```
//! use avsoak::heap::{self, Snapshot};
//!
//! let before = Snapshot::now();
//! let buffer = std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
//! let grown = Snapshot::now().since(&before);
//! if heap::check().is_ok() {
//!     assert!(grown.live_bytes >= 1 << 20);
//! }
//! drop(buffer);
//! ```

pub mod compare;
pub mod fmt;
pub mod gate;
pub mod heap;
mod html;
mod junit;
pub mod profile;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod series;
pub mod soak;
pub mod stats;
pub mod testing;

pub use runner::Runner;
pub use scenario::{BoxError, Case, Expect, Scenario, Work, Workload};
pub use soak::Plan;

/// Writes `fn main` for a soak binary over the scenarios given (values of types that
/// implement [`Scenario`], in report order): `list`, `soak` with every option (shards,
/// `--baseline`, `--save-baseline`), `gate`, and the child each case runs in. See
/// [`runner`] for the commands and the exit codes.
///
/// ```no_run
/// # struct Decoder;
/// # impl avsoak::Scenario for Decoder {
/// #     fn name(&self) -> &'static str { "decoder" }
/// #     fn about(&self) -> &'static str { "" }
/// #     fn cases(&self) -> Vec<avsoak::Case> { Vec::new() }
/// #     fn start(&self, _: &avsoak::Case) -> Result<Box<dyn avsoak::Workload>, avsoak::BoxError> { Err("none".into()) }
/// # }
/// avsoak::main!(Decoder);
/// ```
#[macro_export]
macro_rules! main {
    ($($scenario:expr),+ $(,)?) => {
        fn main() -> ::std::process::ExitCode {
            $crate::Runner::new(&[$(&$scenario as &'static dyn $crate::Scenario),+]).run()
        }
    };
}

/// The allocation hooks themselves (low level; prefer [`heap`]).
#[cfg(feature = "hooks")]
pub use avsoak_hooks as hooks;
