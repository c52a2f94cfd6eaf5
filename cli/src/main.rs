//! `avsoak`: the installed command. It watches a C or C++ program for leaks, rebuilds,
//! gates and merges run folders, and links no codec: the watcher, the preload library
//! (carried inside this binary), the statistics, the reports and the gate.

use std::process::ExitCode;

use avsoak::runner::{Command, GateArgs, MergeArgs, ReportArgs, Runner, WatchArgs};
use avsoak::soak::watch::EmbeddedPreload;
use clap::{Parser, Subcommand};

/// The preload library this binary was built with (see `build.rs`).
const PRELOAD: EmbeddedPreload = EmbeddedPreload {
    bytes: include_bytes!(env!("AVSOAK_PRELOAD_EMBEDDED")),
    hash: env!("AVSOAK_PRELOAD_HASH"),
};

/// Soak a C or C++ program for leaks while it runs: its heap, descriptors, threads and
/// mappings, judged `clean` or `leak` with the function that leaked named.
///
/// `avsoak watch -- ./program args` runs the program with avsoak's preload library,
/// samples it at every `avsoak_iteration()` call (include avsoak.h; `pkg-config --cflags
/// avsoak`) or every 100 ms, and writes a run folder: report.json, summary.md,
/// index.html, junit.xml and the series. Exit codes: 0 every outcome (and gate) passed,
/// 1 an outcome or the gate failed, 2 bad arguments or an error, 130/143 interrupted.
#[derive(Debug, Parser)]
#[command(name = "avsoak", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AVSOAK_COMMIT"), ")"))]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run a program under the preload library, judge what it holds as it runs (heap,
    /// descriptors, threads, mappings) and write a run folder.
    Watch(WatchArgs),
    /// Rebuild a run folder's files from its journal (`results.jsonl`), e.g. after the
    /// run was killed.
    Report(ReportArgs),
    /// Compare a run folder with a named baseline, or save one as a baseline.
    Gate(GateArgs),
    /// Merge the run folders of shards into one run.
    Merge(MergeArgs),
}

fn main() -> ExitCode {
    let command = match Cli::parse().command {
        Commands::Watch(args) => Command::Watch(args),
        Commands::Report(args) => Command::Report(args),
        Commands::Gate(args) => Command::Gate(args),
        Commands::Merge(args) => Command::Merge(args),
    };
    Runner::new(&[])
        .program("avsoak")
        .embedded_preload(PRELOAD)
        .execute(command)
}
