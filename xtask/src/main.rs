//! cargo xtask: avsoak's task runner (`cargo xtask --help`).
//!
//! - `deps`: installs the Debian packages the codecs need (apt-get when it can; otherwise
//!   prints the exact command and stops).
//! - `soak`: deps, a release build of `avsoak-run`, then `avsoak-run soak` with the
//!   arguments given (`cargo xtask soak -- --help` lists them).
//! - `gate`: compares a run folder with `reports/baselines/NAME.json`, or saves one
//!   (`--save-baseline NAME`, never implicitly); `--repeat N` soaks N times and gates each.
//! - `profile`: soaks one scenario or variant with dense stack sampling and prints where
//!   its DHAT profiles are and how to open them.
//! - `bench`: the criterion suites (pictures, avio, queues, hooks) with heap figures
//!   beside the times; `--no-run` only builds them.
//! - `overhead`: the same encode workloads built with the heap hooks off, counting and
//!   sampling, run interleaved; prints median ratios.
//! - `watch-overhead`: the C reproductions and Debian's `ffmpeg` plain, under `avsoak
//!   watch`, heaptrack and valgrind memcheck, with what each tool caught.
//! - `compare`: encoder backends on the same frames (`avsoak-run compare`): speed,
//!   memory, quality and leaks, and the x264 encode beside the `ffmpeg` command line.
//! - `merge`: shard run folders as one run (report, page, JUnit, journal), refusing runs
//!   of other commits, plans or selections; a merged full set is gated as a full run.
//! - `watch`: deps, a release build of `avsoak-run` and `libavsoak_preload.so`, then
//!   `avsoak-run watch` with the arguments given: a program avsoak did not build, soaked
//!   from outside (`cargo xtask watch -- --help`).
//! - `dist`: the installed command (`cli/`, binary `avsoak`) as
//!   `target/dist/avsoak_<version>_amd64.deb` and a tarball of the same tree; `--check`
//!   installs it with `cargo install` and with `dpkg -i` and watches a C program with
//!   each, from `/`.
//! - `test`: deps, then the whole test suite (nextest, one process per test, because the
//!   heap counters are process-wide), doc tests, clippy with warnings denied, a build
//!   without the heap hooks, the benches built (not run), and `examples/own-pipeline`
//!   (a crate outside the workspace) linted, soaked and tested.

mod bench;
mod compare;
mod deps;
mod dist;
mod flags;
mod gate;
mod merge;
mod overhead;
mod profile;
mod programs;
mod soak;
mod spread;
mod test;
mod watch;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use xshell::Shell;

use flags::{Cli, Task};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain, without a backtrace: these are the user's errors.
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(workspace_root());
    match Cli::parse().task {
        Task::Deps(task) => task.run(&sh),
        Task::Soak(task) => task.run(&sh),
        Task::Test(task) => task.run(&sh),
        Task::Gate(task) => task.run(&sh),
        Task::Profile(task) => task.run(&sh),
        Task::Bench(task) => task.run(&sh),
        Task::Overhead(task) => task.run(&sh),
        Task::WatchOverhead(task) => task.run(&sh),
        Task::Compare(task) => task.run(&sh),
        Task::Merge(task) => task.run(),
        Task::Watch(task) => task.run(&sh),
        Task::Dist(task) => task.run(&sh),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Seconds since the epoch: a stamp for run folders that xtask names itself.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
