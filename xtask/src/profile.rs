//! `cargo xtask profile`: one scenario with dense stack sampling.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use xshell::Shell;

use crate::soak::soak;
use crate::{unix_seconds, workspace_root};

#[derive(clap::Args)]
pub struct Profile {
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
    pub fn run(self, sh: &Shell) -> Result<()> {
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
