//! avsoak-run: the avsoak runner over the five built-in scenarios, plus the encoder
//! comparison.
//!
//! `list`, `soak`, `gate` and the hidden `child` are [`avsoak::runner::Command`], exactly
//! what `avsoak::main!` gives a user's binary. `avsoak-run compare` (what `cargo xtask
//! compare` runs) compares encoder backends, each in a `compare-child`; `workload` is
//! what `cargo xtask overhead` times.

mod compare;

use std::process::ExitCode;

use anyhow::Result;
use avsoak::runner::{self, Runner};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "avsoak-run",
    about = "Soak video pipelines for leaks and throughput",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Runner(runner::Command),
    /// Compare encoder backends on the same frames: speed, memory, quality, leaks.
    Compare(compare::CompareArgs),
    /// Measure one backend in this process (the child side of `compare`).
    #[command(hide = true)]
    CompareChild(compare::CompareChildArgs),
    /// Time one encode workload and print it as JSON (what `cargo xtask overhead` runs
    /// with the heap hooks off, counting and sampling).
    Workload(WorkloadArgs),
}

#[derive(Args)]
struct WorkloadArgs {
    /// x264, ffmpeg-libx264 or ffmpeg-mpeg4.
    #[arg(long)]
    name: String,
    /// Frames to encode.
    #[arg(long, default_value_t = 300)]
    frames: u32,
}

fn workload(args: WorkloadArgs) -> Result<bool> {
    let timing = avsoak_scenarios::compare::overhead_workload(&args.name, args.frames)
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", serde_json::to_string(&timing)?);
    Ok(true)
}

/// The runner over the built-in scenarios.
fn built_in() -> Runner {
    Runner::new(&avsoak_scenarios::all())
        .program("avsoak-run")
        .libraries(avsoak_scenarios::library_versions)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Runner(command) => return built_in().execute(command),
        Cmd::Compare(args) => compare::compare(args),
        Cmd::CompareChild(args) => compare::compare_child(args),
        Cmd::Workload(args) => workload(args),
    };
    runner::exit_code("avsoak-run", result)
}
