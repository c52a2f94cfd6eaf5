//! Every command of `cargo xtask`, with its arguments (each declared in its task's file).

use clap::{Parser, Subcommand};

use crate::{
    bench, compare, deps, dist, gate, merge, overhead, profile, programs, soak, test, watch,
};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "avsoak's tasks")]
pub struct Cli {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Subcommand)]
pub enum Task {
    /// Install the system packages the codecs need.
    Deps(deps::Deps),
    /// Soak every registered scenario (quick mode by default) and write a report.
    Soak(soak::Soak),
    /// Run the whole test suite.
    Test(test::Test),
    /// Compare a run with a named baseline (exit 1 on a regression), or save a run as one.
    Gate(gate::Gate),
    /// Soak one scenario (or one variant) with dense stack sampling and say where its heap
    /// profiles are.
    Profile(profile::Profile),
    /// Run the criterion benches, with heap figures beside the times.
    Bench(bench::Bench),
    /// Measure what the heap hooks cost on whole encode workloads.
    Overhead(overhead::Overhead),
    /// Measure what `avsoak watch` costs the C reproductions and Debian's ffmpeg, beside
    /// heaptrack and valgrind memcheck on the same programs, and what each tool caught.
    WatchOverhead(programs::WatchOverhead),
    /// Compare encoder backends on speed, memory, quality and leaks.
    Compare(compare::Compare),
    /// Merge shard run folders into one run (refusing other commits or plans).
    Merge(merge::Merge),
    /// Soak a C or C++ program avsoak did not build, under libavsoak_preload.so.
    Watch(watch::Watch),
    /// Build the installed command as a Debian package and a tarball (target/dist/);
    /// --check installs each way (cargo install, dpkg -i) and watches a program with it.
    Dist(dist::Dist),
}
