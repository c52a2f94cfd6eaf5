//! avsoak-run: soaks scenarios, each case in a child process of its own.
//!
//! `avsoak-run soak` is what `cargo xtask soak` runs; `avsoak-run child` is the child it
//! starts for every case (not meant to be called by hand). `avsoak-run compare` (what
//! `cargo xtask compare` runs) compares encoder backends, each in a `compare-child`.

mod compare;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use avsoak_harness::report::{CaseResult, Provenance, Report};
use avsoak_harness::scenario::Case;
use avsoak_harness::soak::{self, Plan, Watchdog};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "avsoak-run",
    about = "Soak video pipelines for leaks and throughput",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List scenarios and their cases.
    List,
    /// Soak the selected cases, each in its own child process, and write a report.
    Soak(SoakArgs),
    /// Run one case in this process (the child side of `soak`).
    #[command(hide = true)]
    Child(ChildArgs),
    /// Compare encoder backends on the same frames: speed, memory, quality, leaks.
    Compare(compare::CompareArgs),
    /// Measure one backend in this process (the child side of `compare`).
    #[command(hide = true)]
    CompareChild(compare::CompareChildArgs),
    /// Time one encode workload and print it as JSON (what `cargo xtask overhead` runs
    /// with the heap hooks off, counting and sampling).
    Workload(WorkloadArgs),
}

#[derive(Args)]
struct WorkloadArgs {
    /// x264, ffmpeg-libx264 or ffmpeg-mpeg4.
    #[arg(long)]
    name: String,
    /// Frames to encode.
    #[arg(long, default_value_t = 300)]
    frames: u32,
}

fn workload(args: WorkloadArgs) -> Result<bool> {
    let timing = avsoak_scenarios::compare::overhead_workload(&args.name, args.frames)
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", serde_json::to_string(&timing)?);
    Ok(true)
}

#[derive(Args)]
struct PlanArgs {
    /// Iterations per case, warm-up included [default: 120, or no limit with --duration].
    #[arg(long)]
    iterations: Option<u64>,
    /// Warm-up iterations, not judged [default: max(20, 10 % of iterations)].
    #[arg(long)]
    warmup: Option<u64>,
    /// Live heap bytes at which a child stops itself and reports `leak: cap reached`.
    #[arg(long, default_value_t = 2 << 30)]
    heap_cap: u64,
    /// Suspect stacks to report per case.
    #[arg(long, default_value_t = 5)]
    suspects: usize,
    /// Soak each case for this long instead of a fixed count (`90s`, `30m`, `2h`, or
    /// seconds); `--iterations` then only caps the count if given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

/// Parses `90`, `90s`, `30m` or `2h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (expected e.g. 90s, 30m, 2h)");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(invalid()),
    };
    let value: u64 = number.parse().map_err(|_| invalid())?;
    Ok(Duration::from_secs(value * scale))
}

impl PlanArgs {
    fn plan(&self) -> Result<Plan> {
        let iterations = match (self.iterations, self.duration) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => 120,
        };
        let warmup = self.warmup.unwrap_or_else(|| match self.duration {
            Some(_) => Plan::default_warmup(0),
            None => Plan::default_warmup(iterations),
        });
        let plan = Plan {
            iterations,
            warmup,
            heap_cap: self.heap_cap,
            suspects: self.suspects,
            duration: self.duration,
        };
        plan.validate()?;
        Ok(plan)
    }
}

#[derive(Args)]
struct SoakArgs {
    /// Scenarios to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Variants to run, comma-separated [default: all of the selected scenarios].
    #[arg(long, value_delimiter = ',')]
    variant: Vec<String>,
    #[command(flatten)]
    plan: PlanArgs,
    /// Report folder [default: reports/runs/<stamp>-<rev>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Mean bytes between sampled allocation stacks (0 turns sampling off).
    #[arg(long, default_value_t = 512 * 1024)]
    sample_interval: u64,
    /// Seconds without progress before a child is declared hung.
    #[arg(long, default_value_t = 60)]
    stall_timeout: u64,
    /// Seconds a child may run in all.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Revision recorded in the report [default: from git, if available].
    #[arg(long)]
    git_rev: Option<String>,
    /// Run only slice I of N (`2/4`): every Nth selected case, starting at the Ith, so N
    /// runners together soak every case once.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<Shard>,
}

/// Slice `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    index: usize,
    count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `I/N` with 1 ≤ I ≤ N.
fn parse_shard(text: &str) -> Result<Shard, String> {
    let invalid = || format!("invalid shard {text:?} (expected I/N with 1 <= I <= N, e.g. 2/4)");
    let (i, n) = text.split_once('/').ok_or_else(invalid)?;
    let index: usize = i.trim().parse().map_err(|_| invalid())?;
    let count: usize = n.trim().parse().map_err(|_| invalid())?;
    if index == 0 || index > count {
        return Err(invalid());
    }
    Ok(Shard { index, count })
}

impl Shard {
    /// Whether the `position`th selected case (from 0) is in this slice.
    fn takes(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

#[derive(Args)]
struct ChildArgs {
    /// The case id (`scenario/variant/params…`).
    #[arg(long)]
    case: String,
    /// Where to write the child's heap profile (DHAT JSON) after a normal end.
    #[arg(long)]
    profile: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::List => list(),
        Cmd::Soak(args) => soak(args),
        Cmd::Child(args) => return child(args),
        Cmd::Compare(args) => compare::compare(args),
        Cmd::CompareChild(args) => compare::compare_child(args),
        Cmd::Workload(args) => workload(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("avsoak-run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn list() -> Result<bool> {
    for scenario in avsoak_scenarios::all() {
        println!("{}: {}", scenario.name(), scenario.about());
        for case in scenario.cases() {
            println!(
                "  {:<48} expect {:<5}  {}",
                case.id(),
                case.expect.to_string(),
                case.skip
                    .as_ref()
                    .map_or(case.about.clone(), |why| format!("skipped: {why}"))
            );
        }
    }
    Ok(true)
}

fn all_cases() -> Vec<Case> {
    avsoak_scenarios::all()
        .into_iter()
        .flat_map(|s| s.cases())
        .collect()
}

fn select(scenarios: &[String], variants: &[String]) -> Result<Vec<Case>> {
    let known = avsoak_scenarios::all();
    for name in scenarios {
        avsoak_scenarios::by_name(&known, |s| s.name(), "scenario", name)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| scenarios.is_empty() || scenarios.contains(&c.scenario))
        .collect();
    for variant in variants {
        if !cases.iter().any(|c| &c.variant == variant) {
            let mut names: Vec<&str> = cases.iter().map(|c| c.variant.as_str()).collect();
            names.dedup();
            bail!(
                "unknown variant {variant:?} (expected one of: {})",
                names.join(", ")
            );
        }
    }
    Ok(cases
        .into_iter()
        .filter(|c| variants.is_empty() || variants.contains(&c.variant))
        .collect())
}

/// The run's selection as its options, or none when it selected every case.
fn selection(args: &SoakArgs) -> Option<String> {
    let mut parts = Vec::new();
    if !args.scenario.is_empty() {
        parts.push(format!("--scenario {}", args.scenario.join(",")));
    }
    if !args.variant.is_empty() {
        parts.push(format!("--variant {}", args.variant.join(",")));
    }
    if let Some(shard) = args.shard {
        parts.push(format!("--shard {shard}"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn git_rev() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

fn soak(args: SoakArgs) -> Result<bool> {
    let plan = args.plan.plan()?;
    let mut cases = select(&args.scenario, &args.variant)?;
    if let Some(shard) = args.shard {
        cases = cases
            .into_iter()
            .enumerate()
            .filter(|&(position, _)| shard.takes(position))
            .map(|(_, case)| case)
            .collect();
    }
    let rev = args.git_rev.clone().unwrap_or_else(git_rev);
    let mut provenance = Provenance::here(
        rev.clone(),
        avsoak_scenarios::RUSTC_VERSION.to_owned(),
        avsoak_scenarios::library_versions(),
    );
    provenance.plan = Some(plan.describe());
    provenance.selection = selection(&args);
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = provenance.started_at.replace(['-', ':'], "");
        PathBuf::from("reports/runs").join(format!("{stamp}-{rev}"))
    });
    // A timed soak gets its duration plus a fifth and two minutes for set-up and reports.
    let timed = plan
        .duration
        .map_or(Duration::ZERO, |d| d + d / 5 + Duration::from_secs(120));
    let watchdog = Watchdog {
        stall: Duration::from_secs(args.stall_timeout),
        total: Duration::from_secs(args.timeout).max(timed),
    };

    let mut report = Report::new(provenance);
    let style = match plan.duration {
        None => ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} it"),
        Some(_) => ProgressStyle::with_template("{prefix} {spinner} {pos} it, {elapsed} of {msg}"),
    }
    .expect("valid template")
    .progress_chars("=> ");
    let total = cases.len();
    for (n, case) in cases.iter().enumerate() {
        let result = match &case.skip {
            Some(reason) => CaseResult::skipped(case, reason),
            None => run_case(
                case,
                &plan,
                &args,
                watchdog,
                &style,
                format!("[{}/{total}] {}", n + 1, case.id()),
                &out,
            )?,
        };
        eprintln!(
            "[{}/{total}] {:<44} expect {:<5} verdict {:<7} {}{}",
            n + 1,
            case.id(),
            case.expect.to_string(),
            result.verdict.as_str(),
            result.outcome.as_str(),
            result
                .error
                .as_deref()
                .or(result.note.as_deref())
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
        report.results.push(result);
    }
    report
        .write(&out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    println!("\n{}", report.table(false));
    println!(
        "{}; report: {}",
        report.tally(),
        out.join("report.json").display()
    );
    Ok(report.passed())
}

/// Runs one case in a child of this executable under the watchdog, with a progress bar;
/// the child writes its heap profile into `out`.
fn run_case(
    case: &Case,
    plan: &Plan,
    args: &SoakArgs,
    watchdog: Watchdog,
    style: &ProgressStyle,
    prefix: String,
    out: &std::path::Path,
) -> Result<CaseResult> {
    let profile = format!(
        "profiles/{}.dhat.json",
        avsoak_harness::report::file_stem(&case.id())
    );
    let profile_path = out.join(&profile);
    let _ = std::fs::remove_file(&profile_path);
    let bar = ProgressBar::new(plan.iterations).with_style(style.clone());
    bar.set_prefix(prefix);
    if let Some(duration) = plan.duration {
        bar.set_message(format!("{}s", duration.as_secs()));
        bar.enable_steady_tick(Duration::from_millis(250));
    }
    let exe = std::env::current_exe().context("cannot find the avsoak-run executable")?;
    let mut command = Command::new(exe);
    command
        .args(["child", "--case", &case.id()])
        .args(["--iterations", &plan.iterations.to_string()])
        .args(["--warmup", &plan.warmup.to_string()])
        .args(["--heap-cap", &plan.heap_cap.to_string()])
        .args(["--suspects", &plan.suspects.to_string()])
        .args(plan.duration.map(|d| format!("--duration={}", d.as_secs())))
        .env(
            "AVSOAK_SAMPLE_INTERVAL",
            case.sample_interval
                .map_or(args.sample_interval, |i| i.min(args.sample_interval))
                .to_string(),
        )
        .current_dir(std::env::current_dir()?);
    command.arg("--profile").arg(&profile_path);
    let mut result = soak::supervise(command, case, plan, watchdog, &mut |i| bar.set_position(i));
    bar.finish_and_clear();
    if profile_path.is_file() {
        result.profile = Some(profile);
    }
    Ok(result)
}

fn child(args: ChildArgs) -> ExitCode {
    let plan = match args.plan.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("avsoak-run child: {e:#}");
            return ExitCode::from(2);
        }
    };
    let Some(case) = all_cases().into_iter().find(|c| c.id() == args.case) else {
        eprintln!(
            "avsoak-run child: unknown case {:?} (see `avsoak-run list`)",
            args.case
        );
        return ExitCode::from(2);
    };
    let scenario =
        avsoak_scenarios::find(&case.scenario).expect("cases come from registered scenarios");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = soak::run_child(scenario, &case, &plan, &mut out, args.profile.as_deref());
    ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_cases_into_disjoint_slices_that_cover_them() {
        let cases = all_cases();
        for count in 1..=5 {
            let mut seen = vec![0; cases.len()];
            for index in 1..=count {
                let shard = parse_shard(&format!("{index}/{count}")).unwrap();
                let slice: Vec<usize> = (0..cases.len()).filter(|&p| shard.takes(p)).collect();
                // Balanced: sizes differ by at most one.
                assert!(slice.len() >= cases.len() / count, "{shard}");
                for p in slice {
                    seen[p] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards");
        }
    }

    #[test]
    fn a_bad_shard_names_the_value_and_the_form() {
        for text in ["0/4", "5/4", "2", "a/b", "1/0"] {
            let err = parse_shard(text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{err}");
            assert!(err.contains("expected I/N"), "{err}");
        }
    }
}
