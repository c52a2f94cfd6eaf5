//! cargo xtask: avsoak's task runner (`cargo xtask --help`).
//!
//! - `deps`: installs the Debian packages the codecs need (apt-get when it can; otherwise
//!   prints the exact command and stops).
//! - `soak`: deps, a release build of `avsoak-run`, then `avsoak-run soak` with the
//!   arguments given (`cargo xtask soak -- --help` lists them).
//! - `test`: deps, then the whole test suite (nextest, one process per test, because the
//!   heap counters are process-wide), doc tests, clippy with warnings denied, and a build
//!   without the heap hooks.

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
        Deps { check: false }.run(sh)?;
        cmd!(
            sh,
            "cargo build --release --package avsoak-scenarios --bin avsoak-run"
        )
        .run()?;
        let runner = target_dir().join("release/avsoak-run");
        let args = self.args;
        let status = std::process::Command::new(&runner)
            .arg("soak")
            .args(&args)
            .current_dir(workspace_root())
            .status()
            .with_context(|| format!("cannot start {}", runner.display()))?;
        if !status.success() {
            bail!("soak failed ({status}): see the table above and the report it names");
        }
        Ok(())
    }
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
