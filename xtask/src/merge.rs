//! `cargo xtask merge`: shard run folders as one run, gated as a full run.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

#[derive(clap::Args)]
pub struct Merge {
    /// The merged run folder.
    #[arg(long)]
    out: PathBuf,
    /// The shard run folders (`--shard I/N` of one commit and plan).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

impl Merge {
    pub fn run(self) -> Result<()> {
        let merged = avsoak::journal::merge_folders(&self.out, &self.runs)
            .map_err(|e| anyhow!("merging {} run(s): {e}", self.runs.len()))?;
        println!(
            "merged {} run(s): {}; report: {}",
            self.runs.len(),
            merged.tally(),
            self.out.join("report.json").display()
        );
        Ok(())
    }
}
