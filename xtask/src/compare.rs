//! `cargo xtask compare`: encoder backends side by side.

use crate::deps::Deps;
use crate::{target_dir, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use xshell::{cmd, Shell};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Compare {
    /// Arguments for `avsoak-run compare` (e.g. `--frames 120 --backend libx264,libx265`;
    /// `cargo xtask compare -- --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Compare {
    pub fn run(self, sh: &Shell) -> Result<()> {
        Deps { check: false }.run(sh)?;
        cmd!(
            sh,
            "cargo build --release --package avsoak-scenarios --bin avsoak-run"
        )
        .run()?;
        let runner: PathBuf = target_dir().join("release/avsoak-run");
        let status = Command::new(&runner)
            .arg("compare")
            .args(&self.args)
            .current_dir(workspace_root())
            .status()
            .with_context(|| format!("cannot start {}", runner.display()))?;
        if !status.success() {
            bail!("compare failed ({status}): see the table above");
        }
        Ok(())
    }
}
