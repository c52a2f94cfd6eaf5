//! Benchmarks: `bench` (criterion suites with heap figures), `overhead` (the heap hooks'
//! cost on whole encode workloads) and `compare` (encoder backends side by side).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use avsoak::stats::median_of;
use xshell::{cmd, Shell};

use crate::{target_dir, workspace_root, Deps};

/// The criterion suites, by bench target name.
const SUITES: [&str; 4] = ["pictures", "avio", "queues", "hooks"];

#[derive(clap::Args)]
pub struct Bench {
    /// Only build the suites (what CI does on every run).
    #[arg(long)]
    no_run: bool,
    /// Suites to run (default: all): pictures, avio, queues, hooks.
    #[arg(long, value_delimiter = ',')]
    suite: Vec<String>,
    /// Arguments for criterion after `--` (e.g. a filter, `--quick`).
    #[arg(last = true)]
    criterion_args: Vec<String>,
}

impl Bench {
    pub fn run(self, sh: &Shell) -> Result<()> {
        Deps { check: false }.run(sh)?;
        for suite in &self.suite {
            ensure!(
                SUITES.contains(&suite.as_str()),
                "unknown suite {suite:?} (expected one of: {})",
                SUITES.join(", ")
            );
        }
        let suites: Vec<&str> = if self.suite.is_empty() {
            SUITES.to_vec()
        } else {
            self.suite.iter().map(String::as_str).collect()
        };
        let mut benches = Vec::new();
        for suite in &suites {
            benches.push("--bench".to_owned());
            benches.push((*suite).to_owned());
        }
        if self.no_run {
            cmd!(
                sh,
                "cargo bench --package avsoak-scenarios {benches...} --no-run"
            )
            .run()?;
            return Ok(());
        }
        let heap_dir = target_dir().join("avsoak-bench");
        let _ = std::fs::remove_dir_all(&heap_dir);
        let args = self.criterion_args;
        let _env = sh.push_env("AVSOAK_BENCH_HEAP_DIR", &heap_dir);
        cmd!(
            sh,
            "cargo bench --package avsoak-scenarios {benches...} -- {args...}"
        )
        .run()?;
        print!("{}", heap_table(&heap_dir)?);
        Ok(())
    }
}

/// The benches' heap figures beside criterion's median times, one row per benchmark.
fn heap_table(heap_dir: &Path) -> Result<String> {
    let mut rows = Vec::new();
    let entries = std::fs::read_dir(heap_dir).with_context(|| {
        format!(
            "the benches wrote no heap figures to {}",
            heap_dir.display()
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let figures: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not heap figures", path.display()))?;
        let id = figures["id"].as_str().unwrap_or("?").to_owned();
        let median_ns = criterion_median_ns(&id);
        rows.push((
            id,
            median_ns,
            figures["allocs_per_iter"].as_f64().unwrap_or(f64::NAN),
            figures["bytes_per_iter"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(9).max(9);
    let mut out = format!(
        "\n{:<width$}  {:>12}  {:>12}  {:>14}\n",
        "benchmark", "median", "allocs/iter", "bytes/iter"
    );
    for (id, ns, allocs, bytes) in rows {
        let time = match ns {
            Some(ns) if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
            Some(ns) if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
            Some(ns) => format!("{ns:.1} ns"),
            None => "-".to_owned(),
        };
        out.push_str(&format!(
            "{id:<width$}  {time:>12}  {allocs:>12.2}  {bytes:>14.0}\n"
        ));
    }
    Ok(out)
}

/// Criterion's median estimate for benchmark `id` (`group/function/parameter`), in ns.
fn criterion_median_ns(id: &str) -> Option<f64> {
    let path = target_dir()
        .join("criterion")
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

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
        ensure!(self.rounds >= 1, "invalid --rounds 0 (expected at least 1)");
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
        for round in 0..self.rounds {
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
            eprintln!(
                "xtask overhead: round {} of {} done",
                round + 1,
                self.rounds
            );
        }
        let mut out = format!(
            "\nheap hooks' cost: {} interleaved rounds, {} frames of 640x480 at 1000 kbit/s \
             per run, {} CPUs; ratio = median over rounds of (mode / off) in the same round, \
             [interquartile range]\n\n",
            self.rounds,
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

/// The median and quartiles of a few ratios.
struct Spread {
    median: f64,
    q1: f64,
    q3: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if values.is_empty() {
                return f64::NAN;
            }
            // Linear interpolation between closest ranks.
            let pos = q * (values.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
        };
        Spread {
            median: at(0.5),
            q1: at(0.25),
            q3: at(0.75),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}x [{:.3}-{:.3}]", self.median, self.q1, self.q3)
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
        .env_remove("AVSOAK_SAMPLE_INTERVAL");
    if let Some(interval) = interval {
        command.env("AVSOAK_SAMPLE_INTERVAL", interval);
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
