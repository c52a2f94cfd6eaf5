//! `cargo xtask soak`: the runner, built and run.

use anyhow::{Context, Result};
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
        if status.success() {
            return Ok(());
        }
        // The runner's own exit code, as `watch` forwards it: 1 a failed outcome or gate,
        // 2 bad input or an error, 130/143 interrupted (a runner killed by a signal
        // exits 128 + it).
        eprintln!("xtask: soak did not pass ({status}): see the table above and its run folder");
        let code = status
            .code()
            .or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                status.signal().map(|s| 128 + s)
            })
            .unwrap_or(2);
        std::process::exit(code);
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
