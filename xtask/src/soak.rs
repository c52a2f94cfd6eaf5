//! `cargo xtask soak`: the runner, built and run.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::deps::Deps;
use crate::{target_dir, workspace_root};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Soak {
    /// Arguments for `avsoak-run soak` (e.g. `--scenario picture-pool --out DIR`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Soak {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let status = soak(sh, &self.args)?;
        if !status.success() {
            bail!("soak failed ({status}): see the table above and the report it names");
        }
        Ok(())
    }
}

/// Installs what is missing, builds the runner and soaks with `args`.
pub fn soak(sh: &Shell, args: &[String]) -> Result<std::process::ExitStatus> {
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
