//! `cargo xtask gate`: a run against a committed baseline, or a run saved as one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::soak::soak;
use crate::{unix_seconds, workspace_root};

#[derive(clap::Args)]
pub struct Gate {
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
    pub fn run(self, sh: &Shell) -> Result<()> {
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
