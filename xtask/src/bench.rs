//! `cargo xtask bench`: the criterion suites, with heap figures beside the times.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use xshell::{cmd, Shell};

use crate::deps::Deps;
use crate::target_dir;

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
