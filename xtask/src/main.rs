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
//! - `compare`: encoder backends on the same frames (`avsoak-run compare`): speed,
//!   memory, quality and leaks, and the x264 encode beside the `ffmpeg` command line.
//! - `test`: deps, then the whole test suite (nextest, one process per test, because the
//!   heap counters are process-wide), doc tests, clippy with warnings denied, a build
//!   without the heap hooks, the benches built (not run), and `examples/own-pipeline`
//!   (a crate outside the workspace) linted, soaked and tested.

mod bench;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use xshell::{cmd, Shell};

/// System packages (Debian 12 names) the workspace builds and runs against.
const PACKAGES: &[&str] = &[
    "pkg-config",
    "clang",
    "libclang-dev",
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libswresample-dev",
    "libavfilter-dev",
    "libavdevice-dev",
    "libx264-dev",
    "libx265-dev",
    "libheif-dev",
    "ffmpeg",
    // Renders index.html in the report tests (headless).
    "chromium",
];

#[derive(Parser)]
#[command(name = "cargo xtask", about = "avsoak's tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the system packages the codecs need.
    Deps(Deps),
    /// Soak every registered scenario (quick mode by default) and write a report.
    Soak(Soak),
    /// Run the whole test suite.
    Test(Test),
    /// Compare a run with a named baseline (exit 1 on a regression), or save a run as one.
    Gate(Gate),
    /// Soak one scenario (or one variant) with dense stack sampling and say where its heap
    /// profiles are.
    Profile(Profile),
    /// Run the criterion benches, with heap figures beside the times.
    Bench(bench::Bench),
    /// Measure what the heap hooks cost on whole encode workloads.
    Overhead(bench::Overhead),
    /// Compare encoder backends on speed, memory, quality and leaks.
    Compare(bench::Compare),
}

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
        Task::Compare(task) => task.run(&sh),
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

#[derive(clap::Args)]
struct Deps {
    /// Only report what is missing; install nothing.
    #[arg(long)]
    check: bool,
}

impl Deps {
    fn run(self, sh: &Shell) -> Result<()> {
        let missing = missing_packages(sh)?;
        if missing.is_empty() {
            eprintln!(
                "xtask deps: all {} system packages are installed",
                PACKAGES.len()
            );
            return Ok(());
        }
        let list = missing.join(" ");
        let command =
            format!("apt-get update && apt-get install -y --no-install-recommends {list}");
        if self.check {
            bail!("missing system packages: {list}\ninstall them with: sudo sh -c '{command}'");
        }
        if which("apt-get").is_none() {
            bail!(
                "missing system packages: {list}\nthis machine has no apt-get; install the \
                 equivalents of these Debian 12 packages by hand"
            );
        }
        let sudo = if is_root() {
            false
        } else if cmd!(sh, "sudo -n true")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            true
        } else {
            bail!(
                "missing system packages: {list}\nnot root and no password-less sudo; run:\n  \
                 sudo sh -c '{command}'"
            );
        };
        eprintln!("xtask deps: installing {list}");
        let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
        let apt_get = |args: &[&str]| {
            if sudo {
                cmd!(sh, "sudo -n apt-get {args...}").run()
            } else {
                cmd!(sh, "apt-get {args...}").run()
            }
        };
        // A fresh machine may still be running its own apt jobs: wait for the lock.
        let lock = "-oDPkg::Lock::Timeout=300";
        apt_get(&[lock, "update", "-qq"]).context("apt-get update failed")?;
        let mut install = vec![lock, "install", "-y", "-qq", "--no-install-recommends"];
        install.extend(&missing);
        apt_get(&install)
            .with_context(|| format!("apt-get install failed; to retry by hand: {command}"))?;
        let still = missing_packages(sh)?;
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.join(" "));
        }
        Ok(())
    }
}

fn missing_packages(sh: &Shell) -> Result<Vec<&'static str>> {
    if which("dpkg-query").is_none() {
        bail!(
            "cannot check system packages: no dpkg-query (avsoak's set-up expects Debian 12); \
             needed: {}",
            PACKAGES.join(" ")
        );
    }
    let mut missing = Vec::new();
    for &package in PACKAGES {
        let format = "${db:Status-Abbrev}";
        let status = cmd!(sh, "dpkg-query -W -f {format} {package}")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .read()
            .unwrap_or_default();
        if !status.starts_with("ii") {
            missing.push(package);
        }
    }
    Ok(missing)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
struct Soak {
    /// Arguments for `avsoak-run soak` (e.g. `--scenario picture-pool --out DIR`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Soak {
    fn run(self, sh: &Shell) -> Result<()> {
        let status = soak(sh, &self.args)?;
        if !status.success() {
            bail!("soak failed ({status}): see the table above and the report it names");
        }
        Ok(())
    }
}

/// Installs what is missing, builds the runner and soaks with `args`.
fn soak(sh: &Shell, args: &[String]) -> Result<std::process::ExitStatus> {
    Deps { check: false }.run(sh)?;
    cmd!(
        sh,
        "cargo build --release --package avsoak-scenarios --bin avsoak-run"
    )
    .run()?;
    let runner = target_dir().join("release/avsoak-run");
    std::process::Command::new(&runner)
        .arg("soak")
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot start {}", runner.display()))
}

#[derive(clap::Args)]
struct Test {
    /// Extra arguments for `cargo nextest run` (e.g. a filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Test {
    fn run(self, sh: &Shell) -> Result<()> {
        Deps { check: false }.run(sh)?;
        // Lints and doc tests first, the test suite last: its summary closes the output.
        cmd!(
            sh,
            "cargo clippy --workspace --all-targets --release -- -D warnings"
        )
        .run()?;
        // The uninstrumented build must keep compiling, warning-free.
        cmd!(sh, "cargo clippy --package avsoak-scenarios --no-default-features --release -- -D warnings")
            .run()?;
        cmd!(sh, "cargo test --workspace --release --doc").run()?;
        // Benches are built on every run, never timed here.
        cmd!(sh, "cargo bench --package avsoak-scenarios --no-run").run()?;
        own_pipeline(sh)?;
        let args = self.args;
        // Release profile: the soak runner the tests start is the one `soak` uses, and
        // one build serves both.
        if cmd!(sh, "cargo nextest --version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
        {
            cmd!(
                sh,
                "cargo nextest run --workspace --release --no-fail-fast {args...}"
            )
            .run()?;
        } else {
            eprintln!("xtask test: cargo-nextest not found; running cargo test one test at a time");
            cmd!(
                sh,
                "cargo test --workspace --release --no-fail-fast {args...} -- --test-threads=1"
            )
            .run()?;
        }
        Ok(())
    }
}

/// The example crate outside the workspace (`examples/own-pipeline`, Cargo's default
/// profiles): linted, soaked into a full run folder with every outcome passing, and its
/// tests run, so the library's promise to users is checked on every test run.
fn own_pipeline(sh: &Shell) -> Result<()> {
    let manifest = "examples/own-pipeline/Cargo.toml";
    let target = "target/own-pipeline";
    cmd!(
        sh,
        "cargo clippy --manifest-path {manifest} --target-dir {target} --all-targets --release -- -D warnings"
    )
    .run()?;
    let out = format!("{target}/run");
    cmd!(
        sh,
        "cargo run --release --manifest-path {manifest} --target-dir {target} -- soak --iterations 60 --warmup 20 --out {out}"
    )
    .run()?;
    cmd!(
        sh,
        "cargo test --release --manifest-path {manifest} --target-dir {target}"
    )
    .run()?;
    Ok(())
}

#[derive(clap::Args)]
struct Gate {
    /// The baseline to compare with: `reports/baselines/NAME.json`.
    #[arg(
        long,
        required_unless_present = "save_baseline",
        conflicts_with = "save_baseline"
    )]
    baseline: Option<String>,
    /// The run folder [default: the newest in reports/runs].
    #[arg(long)]
    run: Option<PathBuf>,
    /// Save the run as `reports/baselines/NAME.json` instead of comparing (it must have
    /// passed).
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Soak N times (with the arguments after `--`) and gate each run: fails unless every
    /// gate reaches the same finding.
    #[arg(long, value_name = "N", requires = "baseline", conflicts_with = "run")]
    repeat: Option<u32>,
    /// Arguments for the soaks of `--repeat` (e.g. `-- --scenario player-queue`).
    #[arg(last = true)]
    soak_args: Vec<String>,
}

impl Gate {
    fn run(self, sh: &Shell) -> Result<()> {
        let root = workspace_root();
        let run = || match &self.run {
            Some(dir) => Ok(dir.clone()),
            None => newest_run(&root.join("reports/runs")),
        };
        if let Some(name) = &self.save_baseline {
            let run = run()?;
            let path = save_baseline(&root, name, &run)?;
            eprintln!(
                "xtask gate: saved {} from {}",
                path.display(),
                run.display()
            );
            return Ok(());
        }
        let name = self.baseline.as_deref().expect("clap requires --baseline");
        if let Some(times) = self.repeat {
            return repeat(sh, &root, name, times, &self.soak_args);
        }
        let run = run()?;
        let gate = gate(&root, name, &run)?;
        print!("{}", gate_summary(&gate, name, &run));
        if !gate.passed() {
            bail!("gate failed: {} regression(s)", gate.regressions());
        }
        Ok(())
    }
}

/// Seconds since the epoch: a stamp for run folders that xtask names itself.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The committed baselines, `reports/baselines/`.
fn baselines(root: &Path) -> avsoak::gate::Baselines {
    avsoak::gate::Baselines::new(root.join("reports/baselines"))
}

/// The newest run folder (their names begin with the UTC start time).
fn newest_run(runs: &Path) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .with_context(|| {
            format!(
                "no runs in {} (soak first, or pass --run DIR)",
                runs.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("report.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
        .with_context(|| format!("no run with a report.json in {}", runs.display()))
}

fn save_baseline(root: &Path, name: &str, run: &Path) -> Result<PathBuf> {
    let report = avsoak::gate::read_run(run)?;
    baselines(root)
        .save(name, &report)
        .with_context(|| format!("saving {} as a baseline", run.display()))
}

fn gate(root: &Path, name: &str, run: &Path) -> Result<avsoak::gate::Gate> {
    let report = avsoak::gate::read_run(run)?;
    Ok(baselines(root).compare(name, &report)?)
}

/// What the gate prints: the differences, the finding, and on a regression the command
/// that accepts the new numbers.
fn gate_summary(gate: &avsoak::gate::Gate, name: &str, run: &Path) -> String {
    gate.summary(
        name,
        &format!(
            "cargo xtask gate --run {} --save-baseline {name}",
            run.display()
        ),
    )
}

/// Soaks `times` times, gates each run, and fails unless every gate found the same.
fn repeat(sh: &Shell, root: &Path, name: &str, times: u32, soak_args: &[String]) -> Result<()> {
    if soak_args
        .iter()
        .any(|a| a == "--out" || a.starts_with("--out="))
    {
        bail!("--repeat chooses the run folders itself; drop --out from the soak arguments");
    }
    let stamp = unix_seconds();
    let mut findings = Vec::new();
    for k in 1..=times {
        let out = root.join(format!("reports/runs/repeat-{stamp}/{k}"));
        let mut args = soak_args.to_vec();
        args.push("--out".into());
        args.push(out.display().to_string());
        eprintln!("xtask gate: soak {k} of {times} into {}", out.display());
        // A failing soak is a gate regression below; the repeat goes on.
        soak(sh, &args)?;
        let gate = gate(root, name, &out)?;
        print!("{}", gate_summary(&gate, name, &out));
        let regressed: Vec<(String, String)> = gate
            .differences
            .iter()
            .filter(|d| d.status == avsoak::gate::Status::Regressed)
            .map(|d| (d.case.clone(), d.figure.clone()))
            .collect();
        findings.push((gate.passed(), regressed));
    }
    println!("\nrepeatability: {times} soaks of the same commit gated against {name:?}");
    for (k, (passed, regressed)) in findings.iter().enumerate() {
        println!(
            "  run {}: {}{}",
            k + 1,
            if *passed { "passed" } else { "FAILED" },
            if regressed.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    regressed
                        .iter()
                        .map(|(c, f)| format!("{c} {f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    if findings.windows(2).any(|w| w[0] != w[1]) {
        bail!("the gate's finding changed between soaks of the same commit: not repeatable");
    }
    println!("the same finding every time");
    if !findings[0].0 {
        bail!("the gate failed, every time");
    }
    Ok(())
}

#[derive(clap::Args)]
struct Profile {
    /// The scenario to soak (`target/release/avsoak-run list` names them all).
    scenario: String,
    /// Only this variant.
    #[arg(long)]
    variant: Option<String>,
    /// Mean bytes between sampled allocations (denser than a soak's 512 KiB).
    #[arg(long, default_value_t = 32 * 1024)]
    sample_interval: u64,
}

impl Profile {
    fn run(self, sh: &Shell) -> Result<()> {
        if self.sample_interval == 0 {
            bail!("invalid --sample-interval 0 (expected a positive number of bytes; 0 turns sampling off)");
        }
        let stamp = unix_seconds();
        let out = workspace_root().join(format!("reports/runs/profile-{stamp}-{}", self.scenario));
        let mut args = vec![
            "--scenario".to_owned(),
            self.scenario.clone(),
            "--sample-interval".to_owned(),
            self.sample_interval.to_string(),
            "--out".to_owned(),
            out.display().to_string(),
        ];
        if let Some(variant) = &self.variant {
            args.extend(["--variant".to_owned(), variant.clone()]);
        }
        let status = soak(sh, &args)?;
        let profiles = out.join("profiles");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&profiles)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "no profile was written to {} (every case failed to finish, or was skipped); \
                 see the table above",
                profiles.display()
            );
        }
        println!(
            "\nheap profiles (DHAT JSON, sampled every ~{} bytes):",
            self.sample_interval
        );
        for f in &files {
            println!("  {}", f.display());
        }
        let viewer = Path::new("/usr/libexec/valgrind/dh_view.html");
        println!(
            "open them in DHAT's viewer: {} (or https://nnethercote.github.io/dh_view/dh_view.html), \
             then \"Load…\" a file; the run's report is {}",
            if viewer.is_file() {
                format!("file://{}", viewer.display())
            } else {
                "valgrind's dh_view.html".to_owned()
            },
            out.join("index.html").display()
        );
        if !status.success() {
            bail!("the soak failed ({status}): see the table above");
        }
        Ok(())
    }
}
