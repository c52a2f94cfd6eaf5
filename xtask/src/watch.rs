//! `cargo xtask watch`: a program avsoak did not build, soaked under the preload library.

use crate::deps::Deps;
use crate::{target_dir, workspace_root};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;
use xshell::{cmd, Shell};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Watch {
    /// Arguments for `avsoak-run watch`, the program after `--` (e.g. `--expect leak
    /// --out D -- ./camera 2000`; `cargo xtask watch -- --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Watch {
    pub fn run(self, sh: &Shell) -> Result<()> {
        Deps { check: false }.run(sh)?;
        cmd!(
            sh,
            "cargo build --release --package avsoak-scenarios --bin avsoak-run --package avsoak-preload"
        )
        .run()?;
        let runner: PathBuf = target_dir().join("release/avsoak-run");
        // The program's paths are the caller's: run from where cargo was started.
        let here = std::env::current_dir().unwrap_or_else(|_| workspace_root());
        let status = Command::new(&runner)
            .arg("watch")
            .args(&self.args)
            .current_dir(here)
            .status()
            .with_context(|| format!("cannot start {}", runner.display()))?;
        // The runner's own exit code: 0 pass, 1 a failed outcome or gate, 2 bad input.
        std::process::exit(status.code().unwrap_or(2));
    }
}
