//! The runner's command line: every command and option, and the parsers that name a
//! bad value and what was expected.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::scenario::Case;
use crate::soak::{self, Plan};

/// The runner's commands, for a binary that adds its own (`#[command(flatten)]`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List scenarios and their cases.
    List,
    /// Soak the selected cases, each in its own child process, and write a run folder.
    Soak(SoakArgs),
    /// Compare a run folder with a named baseline, or save one as a baseline.
    Gate(GateArgs),
    /// Rebuild a run folder's files from its journal (`results.jsonl`), e.g. after the
    /// soak was killed.
    Report(ReportArgs),
    /// Run one case in this process (the child side of `soak`).
    #[command(hide = true)]
    Child(ChildArgs),
    /// Soak a program avsoak did not build: run it with libavsoak_preload.so preloaded,
    /// judge its heap as a soak's case, and write a run folder.
    Watch(WatchArgs),
    /// Merge the run folders of shards (`--shard I/N` of one commit and plan) into one
    /// run, gated as a full run once every shard is there.
    Merge(MergeArgs),
}

/// Options of `merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The merged run folder.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// The shards' run folders.
    #[arg(required = true, value_name = "RUN")]
    pub(crate) runs: Vec<PathBuf>,
}

/// Options of `watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// What the program must do for the outcome to pass: clean or leak.
    #[arg(long, default_value = "clean", value_parser = parse_expect)]
    pub(crate) expect: crate::scenario::Expect,
    /// Time mode with a sample every this long (e.g. 250ms) [default: time mode at 100ms
    /// for a program that does not call avsoak_iteration(), marker mode for one that does].
    #[arg(long, value_parser = parse_duration, conflicts_with = "markers")]
    pub(crate) every: Option<Duration>,
    /// Marker mode even when the program's file does not name avsoak_iteration() (a
    /// library it loads calls it).
    #[arg(long)]
    pub(crate) markers: bool,
    /// Stop the program after this long (its final report, then SIGTERM; SIGKILL after
    /// --grace).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Iterations (marker mode) or a time (time mode, e.g. 2s) not judged [default: 20
    /// iterations; in time mode a tenth of --duration, or 2s].
    #[arg(long)]
    pub(crate) warmup: Option<String>,
    /// Live heap bytes at which the program is stopped and judged `leak`.
    #[arg(long, default_value_t = 2 << 30)]
    pub(crate) heap_cap: u64,
    /// Mean bytes between sampled allocation stacks.
    #[arg(long, default_value_t = 512 * 1024)]
    pub(crate) sample_interval: u64,
    /// Suspect stacks to report.
    #[arg(long, default_value_t = 5)]
    pub(crate) suspects: usize,
    /// The run folder [default: reports/runs/<time>-watch-<name>].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// The result's variant name [default: the program's file name].
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The preload library [default: libavsoak_preload.so beside this executable].
    #[arg(long)]
    pub(crate) preload: Option<PathBuf>,
    /// Seconds without a sample before the program is judged `hang` and killed.
    #[arg(long, default_value_t = 60)]
    pub(crate) stall_timeout: u64,
    /// Seconds between SIGTERM and SIGKILL when --duration ends the program.
    #[arg(long, default_value_t = 5)]
    pub(crate) grace: u64,
    /// Gate the run against this baseline.
    #[arg(long, value_name = "NAME")]
    pub(crate) baseline: Option<String>,
    /// Folder of the named baselines.
    #[arg(long, value_name = "DIR", default_value = "reports/baselines")]
    pub(crate) baselines: PathBuf,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM")]
    pub(crate) command: Vec<std::ffi::OsString>,
}

fn parse_expect(text: &str) -> Result<crate::scenario::Expect, String> {
    match text {
        "clean" => Ok(crate::scenario::Expect::Clean),
        "leak" => Ok(crate::scenario::Expect::Leak),
        other => Err(format!(
            "invalid outcome {other:?} (expected clean or leak)"
        )),
    }
}

#[derive(Debug, Parser)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How long each case soaks, shared by `soak` and `child`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Iterations per case, warm-up included [default: 120, or no limit with --duration].
    #[arg(long)]
    pub(crate) iterations: Option<u64>,
    /// Warm-up iterations, not judged [default: max(20, 10 % of iterations)].
    #[arg(long)]
    pub(crate) warmup: Option<u64>,
    /// Live heap bytes at which a child stops itself and reports `leak: cap reached`.
    #[arg(long, default_value_t = 2 << 30)]
    pub(crate) heap_cap: u64,
    /// Suspect stacks to report per case.
    #[arg(long, default_value_t = 5)]
    pub(crate) suspects: usize,
    /// Soak each case for this long instead of a fixed count (`90s`, `30m`, `2h`, or
    /// seconds); `--iterations` then only caps the count if given.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
}

/// Parses `90`, `90s`, `30m` or `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (expected e.g. 100ms, 90s, 30m, 2h)");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let millis = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    let value: u64 = number.parse().map_err(|_| invalid())?;
    value
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(invalid)
}

impl PlanArgs {
    /// The plan `case` soaks by: `plan` (these options'), or — when they name neither a
    /// count nor a duration — the case's own quick budget ([`Case::quick_iterations`]),
    /// with these options' warm-up if they name one and it leaves enough to judge.
    pub fn plan_for(&self, plan: &Plan, case: &Case) -> Plan {
        let (None, None, Some(iterations)) =
            (self.iterations, self.duration, case.quick_iterations)
        else {
            return plan.clone();
        };
        let own = Plan {
            iterations,
            warmup: self
                .warmup
                .unwrap_or_else(|| Plan::default_warmup(iterations)),
            ..plan.clone()
        };
        match own.validate() {
            Ok(()) => own,
            Err(_) => plan.clone(),
        }
    }

    /// The plan in words for the run's provenance: the shared plan, and that some of
    /// `cases` soak by their own quick budget.
    pub(super) fn describe(&self, plan: &Plan, cases: &[Case]) -> String {
        let own = cases
            .iter()
            .filter(|c| self.plan_for(plan, c).iterations != plan.iterations)
            .count();
        match own {
            0 => plan.describe(),
            n => format!("{}; {n} slow cases by their own budget", plan.describe()),
        }
    }

    /// The plan these options describe, validated.
    pub fn plan(&self) -> Result<Plan> {
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

/// Options of `soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Scenarios to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<String>,
    /// Variants to run, comma-separated [default: all of the selected scenarios].
    #[arg(long, value_delimiter = ',')]
    pub variant: Vec<String>,
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
    /// Run folder [default: reports/runs/STAMP-REV].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Mean bytes between sampled allocation stacks (0 turns sampling off).
    #[arg(long, default_value_t = 512 * 1024)]
    pub(crate) sample_interval: u64,
    /// Seconds without progress before a child is declared hung.
    #[arg(long, default_value_t = 60)]
    pub(crate) stall_timeout: u64,
    /// Seconds a child may run in all.
    #[arg(long, default_value_t = 900)]
    pub(crate) timeout: u64,
    /// Revision recorded in the report [default: from git, if available].
    #[arg(long)]
    pub(crate) git_rev: Option<String>,
    /// Run only slice I of N (`2/4`): every Nth selected case, starting at the Ith, so N
    /// runners together soak every case once.
    #[arg(long, value_parser = parse_shard)]
    pub(crate) shard: Option<Shard>,
    /// After the soak, gate the run against baseline NAME (exit 1 on a regression).
    #[arg(long, value_name = "NAME", conflicts_with = "save_baseline")]
    pub(crate) baseline: Option<String>,
    /// After the soak, save the run as baseline NAME (it must have passed).
    #[arg(long, value_name = "NAME")]
    pub(crate) save_baseline: Option<String>,
    /// Folder of the named baselines.
    #[arg(long, value_name = "DIR", default_value = "reports/baselines")]
    pub(crate) baselines: PathBuf,
    /// Cases soaked at once, each in its own child [default: the number of CPUs]. Heap
    /// verdicts do not depend on the neighbours; throughput does, so the run records the
    /// count and a gate compares throughput only between runs of `--jobs 1`.
    #[arg(long, value_parser = parse_jobs)]
    pub(crate) jobs: Option<usize>,
}

/// The default of `--jobs`: the CPUs this process may use.
pub(super) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses `--jobs`: 1 to [`soak::MAX_RUNNING`].
pub fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=soak::MAX_RUNNING).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid --jobs {text:?} (expected a whole number of cases at once, 1 to {})",
            soak::MAX_RUNNING
        )),
    }
}

/// Options of `gate`.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// The run folder.
    #[arg(long, value_name = "DIR")]
    pub(crate) run: PathBuf,
    /// The baseline to compare with: `<baselines>/NAME.json`.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "save_baseline",
        conflicts_with = "save_baseline"
    )]
    pub(crate) baseline: Option<String>,
    /// Save the run as baseline NAME instead of comparing (it must have passed).
    #[arg(long, value_name = "NAME")]
    pub(crate) save_baseline: Option<String>,
    /// Folder of the named baselines.
    #[arg(long, value_name = "DIR", default_value = "reports/baselines")]
    pub(crate) baselines: PathBuf,
}

/// Options of `report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The run folder whose journal to render.
    pub(crate) dir: PathBuf,
}

/// How a soak ended, and so the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every outcome (and the gate, if asked) passed: exit 0.
    Passed,
    /// An outcome or the gate failed: exit 1.
    Failed,
    /// SIGINT or SIGTERM stopped the run; the run folder holds what finished: exit 128 +
    /// the signal (130, 143).
    Interrupted {
        /// The signal.
        signal: i32,
    },
}

impl RunEnd {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            RunEnd::Passed => 0,
            RunEnd::Failed => 1,
            RunEnd::Interrupted { signal } => (128 + signal) as u8,
        }
    }
}

/// Slice `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `I/N` with 1 ≤ I ≤ N.
pub fn parse_shard(text: &str) -> Result<Shard, String> {
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
    pub fn takes(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

/// Options of the hidden `child` command: the argv contract between a soak and the
/// child it starts (see [`super::Runner::child_command`]).
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// The case id (`scenario/variant/params…`).
    #[arg(long)]
    pub(crate) case: String,
    /// Where to write the child's heap profile (DHAT JSON) after a normal end.
    #[arg(long)]
    pub(crate) profile: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
}

impl SoakArgs {
    /// The run's selection as its options, or none when it selected every case.
    pub(super) fn selection(&self) -> Option<String> {
        let args = self;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_cases_into_disjoint_slices_that_cover_them() {
        let cases = 17;
        for count in 1..=5 {
            let mut seen = vec![0; cases];
            for index in 1..=count {
                let shard = parse_shard(&format!("{index}/{count}")).unwrap();
                let slice: Vec<usize> = (0..cases).filter(|&p| shard.takes(p)).collect();
                // Balanced: sizes differ by at most one.
                assert!(slice.len() >= cases / count, "{shard}");
                for p in slice {
                    seen[p] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards");
        }
    }

    #[test]
    fn a_case_soaks_by_its_quick_budget_only_when_the_run_names_no_count() {
        use crate::scenario::Expect;
        let slow = Case::new("s", "slow", Expect::Clean, "").with_quick_iterations(Some(60));
        let cheap = Case::new("s", "cheap", Expect::Clean, "");
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["avsoak", "soak"].iter().chain(args).copied()).unwrap();
            let Command::Soak(soak) = cli.command else {
                unreachable!("parsed as soak")
            };
            soak.plan
        };
        let args = parse(&[]);
        let plan = args.plan().unwrap();
        assert_eq!((plan.iterations, plan.warmup), (120, 20));
        let own = args.plan_for(&plan, &slow);
        assert_eq!((own.iterations, own.warmup), (60, 20));
        assert_eq!(args.plan_for(&plan, &cheap), plan);
        assert_eq!(
            args.describe(&plan, &[slow.clone(), cheap.clone()]),
            "120 iterations, 20 warm-up; 1 slow cases by their own budget"
        );
        // A count or a duration the user names holds for every case.
        for named in [&["--iterations", "200"][..], &["--duration", "30s"]] {
            let args = parse(named);
            let plan = args.plan().unwrap();
            assert_eq!(args.plan_for(&plan, &slow), plan, "{named:?}");
        }
        // A warm-up the user names is kept when it leaves enough to judge…
        let args = parse(&["--warmup", "30"]);
        let plan = args.plan().unwrap();
        assert_eq!(args.plan_for(&plan, &slow).warmup, 30);
        // … and the run's plan stands when it would not.
        let args = parse(&["--warmup", "50"]);
        let plan = args.plan().unwrap();
        assert_eq!(args.plan_for(&plan, &slow), plan);
    }

    #[test]
    fn a_bad_jobs_count_names_the_value_and_the_range() {
        assert_eq!(parse_jobs("2"), Ok(2));
        for text in ["0", "-1", "two", "65"] {
            let err = parse_jobs(text).unwrap_err();
            assert!(
                err.contains(&format!("{text:?}")) && err.contains("1 to 64"),
                "{err}"
            );
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
