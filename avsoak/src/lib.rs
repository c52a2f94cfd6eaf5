//! avsoak: soak a video pipeline for leaks and throughput, from your own crate.
//!
//! Entry points:
//! - [`main!`] and [`Runner`]: a soak binary over your [`Scenario`]s, with `list`,
//!   `soak` (shards, `--baseline`, `--save-baseline`), `gate` and the child process each
//!   case runs in ([`runner`] documents the commands and exit codes).
//! - [`testing`]: one workload soaked in a child of the test binary, from `cargo test`,
//!   with [`assert_clean!`] and [`assert_leaks!`].
//!
//! The parts, in the order they import each other (each only those above it; the
//! `tidy` test holds the list and checks it):
//! - [`fmt`]: sizes with units, file stems, tables, signal names.
//! - [`scenario`]: what a scenario provides: cases with expectations, and a workload.
//! - [`stats`]: pure functions from a series to a trend (Theil–Sen slope, Mann–Kendall
//!   test, bounded-growth check).
//! - [`modules`]: the objects a process has loaded, for naming another process's stacks.
//! - [`resources`]: descriptors, threads and resident memory, read from `/proc`.
//! - [`heap`]: one counter for Rust and C allocations (the libc functions are interposed
//!   by the `avsoak-hooks` crate, re-exported here as `hooks`), the instrument check,
//!   snapshots, sampled stacks and the growth window; [`profile`]: heap profiles in
//!   DHAT's format.
//! - [`protocol`]: what a measured process tells the judging one; [`probe`]: what runs
//!   beside a workload to say it, in a soak's child and in a watched program alike.
//! - [`series`]: a soak's per-iteration series, bounded however long the soak runs;
//!   [`speed`]: the machine's speed index.
//! - [`report`]: the result model, `report.json` (schema `avsoak.report/1`) and
//!   `summary.md`; `flame`, `html`, `junit` and `markdown` render it, and [`render`] puts
//!   every renderer of a run folder behind one [`render::Reporter`] interface.
//! - [`gate`]: named baselines, and a run compared with one; [`journal`]: a run folder's
//!   results as they finish.
//! - [`soak`]: one case in its own child process, or one watched program, under a
//!   watchdog and a heap cap, and its verdict.
//! - [`testing`] and [`runner`]: the entry points.
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

#![warn(missing_docs)]

pub mod flame;
pub mod fmt;
pub mod gate;
pub mod heap;
mod html;
pub mod journal;
mod junit;
mod markdown;
pub mod modules;
pub mod probe;
pub mod profile;
pub mod protocol;
pub mod render;
pub mod report;
pub mod resources;
pub mod runner;
pub mod scenario;
pub mod series;
pub mod soak;
pub mod speed;
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
