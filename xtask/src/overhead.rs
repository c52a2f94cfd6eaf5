//! `cargo xtask overhead`: what the heap hooks cost on whole encodes.

use crate::deps::Deps;
use crate::spread::Spread;
use crate::{target_dir, workspace_root};
use anyhow::{bail, ensure, Context, Result};
use avsoak::soak::transport::SAMPLE_INTERVAL_ENV;
use avsoak::stats::median_of;
use std::path::Path;
use std::process::Command;
use xshell::{cmd, Shell};

#[derive(clap::Args)]
pub struct Overhead {
    /// Interleaved rounds: each round runs every workload once per mode.
    #[arg(long, default_value_t = 11)]
    rounds: u32,
    /// Frames per encode.
    #[arg(long, default_value_t = 300)]
    frames: u32,
    /// Workloads (default: all): x264, ffmpeg-libx264, ffmpeg-mpeg4.
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
}

/// How the runner is built and run for each measurement.
const MODES: [(&str, &str, Option<&str>); 3] = [
    ("off", "avsoak-run-off", None),
    ("counting", "avsoak-run-hooks", Some("0")),
    ("sampling", "avsoak-run-hooks", None),
];

impl Overhead {
    pub fn run(self, sh: &Shell) -> Result<()> {
        Deps { check: false }.run(sh)?;
        let rounds = self.rounds;
        ensure!(rounds >= 1, "invalid --rounds 0 (expected at least 1)");
        ensure!(self.frames >= 1, "invalid --frames 0 (expected at least 1)");
        let workloads: Vec<String> = if self.workload.is_empty() {
            ["x264", "ffmpeg-libx264", "ffmpeg-mpeg4"]
                .map(str::to_owned)
                .to_vec()
        } else {
            self.workload.clone()
        };
        let bins = target_dir().join("overhead");
        std::fs::create_dir_all(&bins)?;
        // The same sources built twice: without the hooks, and with them (the last build,
        // so target/release/avsoak-run is the instrumented runner again afterwards).
        for (features, name) in [
            (&["--no-default-features"][..], "avsoak-run-off"),
            (&[][..], "avsoak-run-hooks"),
        ] {
            cmd!(
                sh,
                "cargo build --release --package avsoak-scenarios --bin avsoak-run {features...}"
            )
            .run()?;
            let built = target_dir().join("release/avsoak-run");
            std::fs::copy(&built, bins.join(name))
                .with_context(|| format!("copying {}", built.display()))?;
        }
        // seconds[workload][mode]
        let mut seconds = vec![vec![Vec::new(); MODES.len()]; workloads.len()];
        let mut allocs = vec![0.0; workloads.len()];
        for round in 0..rounds {
            for (w, workload) in workloads.iter().enumerate() {
                // Rotate the order every round, so no mode always runs first.
                for k in 0..MODES.len() {
                    let m = (k + round as usize) % MODES.len();
                    let (mode, bin, interval) = MODES[m];
                    let timing = run_workload(&bins.join(bin), interval, workload, self.frames)
                        .with_context(|| format!("workload {workload}, hooks {mode}"))?;
                    seconds[w][m].push(timing.0);
                    if mode == "counting" {
                        allocs[w] = timing.1;
                    }
                }
            }
            eprintln!("xtask overhead: round {} of {} done", round + 1, rounds);
        }
        let mut out = format!(
            "\nheap hooks' cost: {} interleaved rounds, {} frames of 640x480 at 1000 kbit/s \
             per run, {} CPUs; ratio = median over rounds of (mode / off) in the same round, \
             [interquartile range]\n\n",
            rounds,
            self.frames,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        out.push_str(&format!(
            "{:<16} {:>8} {:>10} {:>22} {:>10} {:>22} {:>13}\n",
            "workload",
            "off s",
            "counting s",
            "counting ratio",
            "sampling s",
            "sampling ratio",
            "allocs/frame"
        ));
        let mut json = Vec::new();
        for (w, workload) in workloads.iter().enumerate() {
            let med: Vec<f64> = seconds[w].iter().map(|s| median_of(s)).collect();
            let paired = |m: usize| -> Vec<f64> {
                seconds[w][m]
                    .iter()
                    .zip(&seconds[w][0])
                    .map(|(a, off)| a / off)
                    .collect()
            };
            let (counting, sampling) = (Spread::of(paired(1)), Spread::of(paired(2)));
            out.push_str(&format!(
                "{workload:<16} {:>8.3} {:>10.3} {:>22} {:>10.3} {:>22} {:>13.1}\n",
                med[0],
                med[1],
                counting.to_string(),
                med[2],
                sampling.to_string(),
                allocs[w]
            ));
            json.push(serde_json::json!({
                "workload": workload,
                "frames": self.frames,
                "seconds": { "off": seconds[w][0], "counting": seconds[w][1], "sampling": seconds[w][2] },
                "median_s": { "off": med[0], "counting": med[1], "sampling": med[2] },
                "ratio": {
                    "counting": { "median": counting.median, "q1": counting.q1, "q3": counting.q3 },
                    "sampling": { "median": sampling.median, "q1": sampling.q1, "q3": sampling.q3 },
                },
                "allocs_per_frame": allocs[w],
            }));
        }
        out.push_str("goal: counting <= 1.03x, sampling <= 1.05x (sampling at 512 KiB)\n");
        print!("{out}");
        let path = bins.join("overhead.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

/// Runs one workload: (seconds, allocations per frame).
fn run_workload(
    bin: &Path,
    interval: Option<&str>,
    workload: &str,
    frames: u32,
) -> Result<(f64, f64)> {
    let mut command = Command::new(bin);
    command
        .args(["workload", "--name", workload, "--frames"])
        .arg(frames.to_string())
        .current_dir(workspace_root())
        .env_remove(SAMPLE_INTERVAL_ENV);
    if let Some(interval) = interval {
        command.env(SAMPLE_INTERVAL_ENV, interval);
    }
    let output = command
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{} printed no timing", bin.display()))?;
    Ok((
        value["seconds"].as_f64().unwrap_or(f64::NAN),
        value["allocs_per_frame"].as_f64().unwrap_or(f64::NAN),
    ))
}
