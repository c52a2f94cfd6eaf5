//! `cargo xtask deps`: the Debian packages the codecs need.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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
    // Compiles the C and C++ reproductions `avsoak watch` is tested on (libc.a for the
    // static program it must refuse).
    "gcc",
    "g++",
    "libc6-dev",
    // Renders index.html in the report tests (headless).
    "chromium",
    // `cargo xtask watch-overhead`: the peers avsoak watch is measured beside, and
    // Debian's x265 encoder, watched unmodified.
    "heaptrack",
    "valgrind",
    "x265",
];

#[derive(clap::Args)]
pub struct Deps {
    /// Only report what is missing; install nothing.
    #[arg(long)]
    pub check: bool,
}

impl Deps {
    pub fn run(self, sh: &Shell) -> Result<()> {
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
