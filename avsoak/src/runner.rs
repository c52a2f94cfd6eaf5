//! The runner: what a soak binary does with its command line.
//!
//! [`Runner`] holds the scenarios of one binary and gives it the commands `list`, `soak`
//! (with every option, shards and gates included), `gate` and the hidden `child` that the
//! soak starts for each case by running its own executable again. [`crate::main!`] writes
//! the `main` function; a binary with commands of its own flattens [`Command`] into its
//! clap enum and hands it to [`Runner::execute`].
//!
//! Exit codes: 0 every outcome (and gate) passed; 1 an outcome or the gate failed; 2 bad
//! arguments or an error that stopped the run (a run folder that cannot be written stops
//! it before the first case); 130 or 143 the soak was interrupted by SIGINT or SIGTERM
//! (the run folder is written with what finished; a second signal exits at once and
//! leaves the journal, which `report DIR` renders).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::fmt::file_stem;
use crate::gate::Baselines;
use crate::journal::{self, Journal};
use crate::render::Reporter;
use crate::report::{CaseResult, Provenance, Report};
use crate::scenario::{Case, Scenario};
use crate::soak::{self, attribution, signal_name, Plan, Watchdog};

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
}

/// Options of `watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// What the program must do for the outcome to pass: clean or leak.
    #[arg(long, default_value = "clean", value_parser = parse_expect)]
    expect: crate::scenario::Expect,
    /// Time mode with a sample every this long (e.g. 250ms) [default: time mode at 100ms
    /// for a program that does not call avsoak_iteration(), marker mode for one that does].
    #[arg(long, value_parser = parse_duration, conflicts_with = "markers")]
    every: Option<Duration>,
    /// Marker mode even when the program's file does not name avsoak_iteration() (a
    /// library it loads calls it).
    #[arg(long)]
    markers: bool,
    /// Stop the program after this long (its final report, then SIGTERM; SIGKILL after
    /// --grace).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Iterations (marker mode) or a time (time mode, e.g. 2s) not judged [default: 20
    /// iterations; in time mode a tenth of --duration, or 2s].
    #[arg(long)]
    warmup: Option<String>,
    /// Live heap bytes at which the program is stopped and judged `leak`.
    #[arg(long, default_value_t = 2 << 30)]
    heap_cap: u64,
    /// Mean bytes between sampled allocation stacks.
    #[arg(long, default_value_t = 512 * 1024)]
    sample_interval: u64,
    /// Suspect stacks to report.
    #[arg(long, default_value_t = 5)]
    suspects: usize,
    /// The run folder [default: reports/runs/<time>-watch-<name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The result's variant name [default: the program's file name].
    #[arg(long)]
    name: Option<String>,
    /// The preload library [default: libavsoak_preload.so beside this executable].
    #[arg(long)]
    preload: Option<PathBuf>,
    /// Seconds without a sample before the program is judged `hang` and killed.
    #[arg(long, default_value_t = 60)]
    stall_timeout: u64,
    /// Seconds between SIGTERM and SIGKILL when --duration ends the program.
    #[arg(long, default_value_t = 5)]
    grace: u64,
    /// Gate the run against this baseline.
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// Folder of the named baselines.
    #[arg(long, value_name = "DIR", default_value = "reports/baselines")]
    baselines: PathBuf,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "PROGRAM")]
    command: Vec<std::ffi::OsString>,
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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How long each case soaks, shared by `soak` and `child`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
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
    fn describe(&self, plan: &Plan, cases: &[Case]) -> String {
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
    plan: PlanArgs,
    /// Run folder [default: reports/runs/STAMP-REV].
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    /// After the soak, gate the run against baseline NAME (exit 1 on a regression).
    #[arg(long, value_name = "NAME", conflicts_with = "save_baseline")]
    baseline: Option<String>,
    /// After the soak, save the run as baseline NAME (it must have passed).
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Folder of the named baselines.
    #[arg(long, value_name = "DIR", default_value = "reports/baselines")]
    baselines: PathBuf,
    /// Cases soaked at once, each in its own child [default: the number of CPUs]. Heap
    /// verdicts do not depend on the neighbours; throughput does, so the run records the
    /// count and a gate compares throughput only between runs of `--jobs 1`.
    #[arg(long, value_parser = parse_jobs)]
    jobs: Option<usize>,
}

/// The default of `--jobs`: the CPUs this process may use.
fn default_jobs() -> usize {
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
    run: PathBuf,
    /// The baseline to compare with: `<baselines>/NAME.json`.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "save_baseline",
        conflicts_with = "save_baseline"
    )]
    baseline: Option<String>,
    /// Save the run as baseline NAME instead of comparing (it must have passed).
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Folder of the named baselines.
    #[arg(long, value_name = "DIR", default_value = "reports/baselines")]
    baselines: PathBuf,
}

/// Options of `report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The run folder whose journal to render.
    dir: PathBuf,
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
    index: usize,
    count: usize,
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
/// child it starts (see [`Runner::child_command`]).
#[derive(Debug, Clone, Args)]
pub struct ChildArgs {
    /// The case id (`scenario/variant/params…`).
    #[arg(long)]
    case: String,
    /// Where to write the child's heap profile (DHAT JSON) after a normal end.
    #[arg(long)]
    profile: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
}

pub use crate::soak::transport::SAMPLE_INTERVAL_ENV;

/// The scenarios of one soak binary, and what its reports record about it.
#[derive(Clone)]
pub struct Runner {
    program: String,
    scenarios: Vec<&'static dyn Scenario>,
    libraries: fn() -> BTreeMap<String, String>,
    reporters: Vec<Arc<dyn Reporter + Send + Sync>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
        f.debug_struct("Runner")
            .field("program", &self.program)
            .field("scenarios", &names)
            .finish()
    }
}

fn no_libraries() -> BTreeMap<String, String> {
    BTreeMap::new()
}

impl Runner {
    /// A runner over `scenarios`, in report order.
    pub fn new(scenarios: &[&'static dyn Scenario]) -> Self {
        let program = std::env::args_os()
            .next()
            .map(PathBuf::from)
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "avsoak".into());
        Runner {
            program,
            scenarios: scenarios.to_vec(),
            libraries: no_libraries,
            reporters: Vec::new(),
        }
    }

    /// Names the program in messages [default: the executable's file name].
    pub fn program(mut self, name: &str) -> Self {
        self.program = name.to_owned();
        self
    }

    /// Versions of the libraries the scenarios run against, for `provenance.libs`.
    pub fn libraries(mut self, versions: fn() -> BTreeMap<String, String>) -> Self {
        self.libraries = versions;
        self
    }

    /// Adds a renderer of the run folder, after the standard ones (`report.json`,
    /// `summary.md`, `index.html`, `junit.xml`, `series/`): e.g. a team's own dashboard
    /// file.
    pub fn reporter(mut self, reporter: impl Reporter + Send + Sync + 'static) -> Self {
        self.reporters.push(Arc::new(reporter));
        self
    }

    /// Parses the process's arguments and runs the command; the exit code is documented
    /// in the [module](self).
    pub fn run(&self) -> ExitCode {
        let cli = Cli::parse();
        self.execute(cli.command)
    }

    /// Runs one command and turns its result into the exit code.
    pub fn execute(&self, command: Command) -> ExitCode {
        let result = match command {
            Command::List => {
                print!("{}", self.list());
                Ok(true)
            }
            Command::Soak(args) => {
                return match self.soak(&args) {
                    Ok(end) => ExitCode::from(end.code()),
                    Err(e) => exit_code(&self.program, Err(e)),
                }
            }
            Command::Gate(args) => gate_command(&args, &self.program),
            Command::Report(args) => self.rebuild(&args.dir),
            Command::Child(args) => return self.child(&args),
            Command::Watch(args) => {
                return match self.watch(&args) {
                    Ok(end) => ExitCode::from(end.code()),
                    Err(e) => exit_code(&self.program, Err(e)),
                }
            }
        };
        exit_code(&self.program, result)
    }

    /// Every case of every scenario, in report order.
    pub fn cases(&self) -> Vec<Case> {
        self.scenarios.iter().flat_map(|s| s.cases()).collect()
    }

    /// What `list` prints.
    pub fn list(&self) -> String {
        let mut text = String::new();
        for scenario in &self.scenarios {
            text.push_str(&format!("{}: {}\n", scenario.name(), scenario.about()));
            for case in scenario.cases() {
                text.push_str(&format!(
                    "  {:<48} expect {:<5}  {}\n",
                    case.id(),
                    case.expect.to_string(),
                    case.skip
                        .as_ref()
                        .map_or(case.about.clone(), |why| format!("skipped: {why}"))
                ));
            }
        }
        text
    }

    /// The cases `scenarios` and `variants` select (empty: all), checking every name.
    pub fn select(&self, scenarios: &[String], variants: &[String]) -> Result<Vec<Case>> {
        for name in scenarios {
            if !self.scenarios.iter().any(|s| s.name() == name) {
                let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
                bail!(
                    "unknown scenario {name:?} (expected one of: {})",
                    names.join(", ")
                );
            }
        }
        let cases: Vec<Case> = self
            .cases()
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

    /// Soaks the selected cases, writes the run folder and applies `--baseline` or
    /// `--save-baseline`. The run folder is created and its journal opened before the
    /// first case (a folder that cannot be written fails at once); each finished case is
    /// journaled as it ends; the first SIGINT or SIGTERM stops the running case and
    /// records it and every case not run as `interrupted`, and the run folder is still
    /// written.
    pub fn soak(&self, args: &SoakArgs) -> Result<RunEnd> {
        let plan = args.plan.plan()?;
        let mut cases = self.select(&args.scenario, &args.variant)?;
        if let Some(shard) = args.shard {
            cases = cases
                .into_iter()
                .enumerate()
                .filter(|&(position, _)| shard.takes(position))
                .map(|(_, case)| case)
                .collect();
        }
        let baselines = Baselines::new(&args.baselines);
        // Names are checked before any case runs, so a typo costs nothing.
        for name in args.baseline.iter().chain(&args.save_baseline) {
            baselines.path(name)?;
        }
        let rev = args.git_rev.clone().unwrap_or_else(git_rev);
        let mut provenance =
            Provenance::here(rev.clone(), RUSTC_VERSION.to_owned(), (self.libraries)());
        provenance.plan = Some(args.plan.describe(&plan, &cases));
        provenance.selection = selection(args);
        let out = args.out.clone().unwrap_or_else(|| {
            let stamp = provenance.started_at.replace(['-', ':'], "");
            PathBuf::from("reports/runs").join(format!("{stamp}-{rev}"))
        });
        // A timed soak gets its duration plus a fifth and two minutes for set-up and
        // reports.
        let timed = plan
            .duration
            .map_or(Duration::ZERO, |d| d + d / 5 + Duration::from_secs(120));
        let watchdog = Watchdog {
            stall: Duration::from_secs(args.stall_timeout),
            total: Duration::from_secs(args.timeout).max(timed),
        };

        // Never more at once than there are cases to run.
        let jobs = args
            .jobs
            .unwrap_or_else(default_jobs)
            .min(cases.iter().filter(|c| c.skip.is_none()).count())
            .max(1);
        provenance.jobs = jobs;
        // The machine's speed under the run's load, before the first case; the journal
        // keeps this part, the report adds the repetitions after the last case.
        let before = crate::speed::measure(jobs, crate::speed::REPETITIONS);
        provenance.speed = Some(crate::speed::SpeedIndex::new(
            before.clone(),
            Vec::new(),
            jobs,
        ));
        let mut journal = Journal::create(&out, &provenance)?;
        soak::catch_interrupts();
        let mut report = Report::new(provenance);
        let style = match plan.duration {
            None => ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} it"),
            Some(_) => {
                ProgressStyle::with_template("{prefix} {spinner} {pos} it, {elapsed} of {msg}")
            }
        }
        .expect("valid template")
        .progress_chars("=> ");
        let total = cases.len();
        let multi = MultiProgress::new();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let mut finished: Vec<Option<CaseResult>> = (0..total).map(|_| None).collect();
        let mut failure: Option<anyhow::Error> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Result<CaseResult>)>();
            for _ in 0..jobs {
                let tx = tx.clone();
                let (cases, next, stop, multi) = (&cases, &next, &stop, &multi);
                let (plan, style, out) = (&plan, &style, &out);
                scope.spawn(move || loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= total || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let case = &cases[n];
                    let prefix = format!("[{}/{total}] {}", n + 1, case.id());
                    let result = match (&case.skip, soak::interruption()) {
                        (Some(reason), _) => Ok(CaseResult::skipped(case, reason)),
                        (None, Some(signal)) => Ok(CaseResult::interrupted(
                            case,
                            &format!(
                                "not run: the run was interrupted by {}",
                                signal_name(signal)
                            ),
                        )),
                        (None, None) => {
                            Self::run_case(case, plan, args, watchdog, multi, style, prefix, out)
                        }
                    };
                    if tx.send((n, result)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            for (n, result) in rx {
                let recorded = result.and_then(|r| {
                    journal.record_at(n, &r)?;
                    Ok(r)
                });
                let result = match recorded {
                    Ok(result) => result,
                    Err(e) => {
                        stop.store(true, Ordering::SeqCst);
                        failure.get_or_insert(e);
                        continue;
                    }
                };
                let case = &cases[n];
                multi.suspend(|| {
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
                    )
                });
                finished[n] = Some(result);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        report.results = finished.into_iter().flatten().collect();
        if soak::interruption().is_none() {
            let after = crate::speed::measure(jobs, crate::speed::REPETITIONS);
            report.provenance.speed = Some(crate::speed::SpeedIndex::new(before, after, jobs));
        }
        self.write(&report, &out)?;
        println!("\n{}", report.table(false));
        println!(
            "{}; report: {}",
            report.tally(),
            out.join("report.json").display()
        );
        if let Some(signal) = soak::interruption() {
            let finished = report
                .results
                .iter()
                .filter(|r| r.verdict != crate::report::Verdict::Interrupted)
                .count();
            eprintln!(
                "{}: interrupted by {}: {finished} of {total} cases finished and kept in {}",
                self.program,
                signal_name(signal),
                out.display()
            );
            return Ok(RunEnd::Interrupted { signal });
        }
        let mut passed = report.passed();
        if let Some(name) = &args.save_baseline {
            if passed {
                let path = baselines.save(name, &report)?;
                println!("saved baseline {name:?} as {}", path.display());
            } else {
                eprintln!(
                    "{}: baseline {name:?} not saved: the run did not pass",
                    self.program
                );
            }
        }
        if let Some(name) = &args.baseline {
            let gate = baselines.compare(name, &report)?;
            print!(
                "{}",
                gate.summary(name, &self.accept_hint(&out, &args.baselines, name))
            );
            passed &= gate.passed();
        }
        Ok(if passed {
            RunEnd::Passed
        } else {
            RunEnd::Failed
        })
    }

    /// `watch -- PROGRAM`: one program under the preload library, judged and written as
    /// a run folder of one result, gated when asked.
    pub fn watch(&self, args: &WatchArgs) -> Result<RunEnd> {
        use crate::soak::watch::{default_preload, preflight, watch, Watch, PRELOAD_LIBRARY};
        let (program, rest) = args.command.split_first().context("no program to watch")?;
        // Refused before anything runs or is written.
        let path = preflight(program)?;
        let every = match args.every {
            Some(every) if every.is_zero() => {
                bail!("invalid --every 0ms (expected a positive duration, e.g. 100ms)")
            }
            Some(every) => Some(every),
            None if args.markers || crate::soak::watch::calls_marker(&path) => None,
            None => Some(Duration::from_millis(100)),
        };
        if args.duration.is_some_and(|d| d.is_zero()) {
            bail!("invalid --duration 0s (expected a positive duration, e.g. 10s)");
        }
        let warmup = match (&args.warmup, every) {
            (None, None) => 20,
            (Some(text), None) => text.parse::<u64>().map_err(|_| {
                anyhow::anyhow!(
                    "invalid --warmup {text:?} (expected a count of iterations in marker mode)"
                )
            })?,
            (text, Some(every)) => {
                let time = match text {
                    Some(text) => {
                        parse_duration(text).map_err(|e| anyhow::anyhow!("--warmup: {e}"))?
                    }
                    None => args.duration.map_or(Duration::from_secs(2), |d| d / 10),
                };
                (time.as_secs_f64() / every.as_secs_f64()).ceil().max(1.0) as u64
            }
        };
        let preload = match &args.preload {
            Some(path) => path.clone(),
            None => default_preload().with_context(|| {
                format!(
                    "{PRELOAD_LIBRARY} is not beside {} (build it with `cargo build --release \
                     -p avsoak-preload`, or name it with --preload)",
                    std::env::current_exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )
            })?,
        };
        let baselines = Baselines::new(&args.baselines);
        if let Some(name) = &args.baseline {
            baselines.path(name)?;
        }
        let mut spec = Watch {
            program: program.clone(),
            args: rest.to_vec(),
            name: args.name.clone(),
            expect: args.expect,
            every,
            duration: args.duration,
            warmup,
            heap_cap: args.heap_cap,
            sample_interval: args.sample_interval,
            suspects: args.suspects,
            preload,
            profile: None,
            stall: Duration::from_secs(args.stall_timeout),
            grace: Duration::from_secs(args.grace),
        };
        let case = spec.case();
        let rev = git_rev();
        let mut provenance =
            Provenance::here(rev.clone(), RUSTC_VERSION.to_owned(), (self.libraries)());
        provenance.selection = Some(format!("watch {}", case.about));
        let out = args.out.clone().unwrap_or_else(|| {
            let stamp = provenance.started_at.replace(['-', ':'], "");
            PathBuf::from("reports/runs")
                .join(format!("{stamp}-watch-{}", file_stem(&case.variant)))
        });
        let mut journal = Journal::create(&out, &provenance)?;
        let profile = format!("profiles/{}.dhat.json", file_stem(&case.id()));
        std::fs::create_dir_all(out.join("profiles"))
            .with_context(|| format!("creating {}", out.join("profiles").display()))?;
        spec.profile = Some(out.join(&profile));
        soak::catch_interrupts();
        let mut result = watch(&spec)?;
        if out.join(&profile).is_file() {
            result.profile = Some(profile);
        }
        // A leak its samples do not explain: the program once more, every leaked block
        // sampled (the soak's exact re-run; the program is assumed to repeat itself).
        let result = attribution::attribute(result, &spec.plan(), |rerun| {
            if soak::interruption().is_some() {
                return Ok::<_, anyhow::Error>(None);
            }
            eprintln!(
                "{}: exact re-run of {} at a {} B sampling interval",
                self.program, case.variant, rerun.interval
            );
            let again = Watch {
                sample_interval: rerun.interval,
                profile: None,
                ..spec.clone()
            };
            Ok(Some(watch(&again)?))
        })?;
        journal.record(&result)?;
        let mut report = Report::new(provenance);
        report.results.push(result);
        self.write(&report, &out)?;
        print!("{}", report.table(false));
        println!("{}; run folder {}", report.tally(), out.display());
        if let Some(signal) = soak::interruption() {
            return Ok(RunEnd::Interrupted { signal });
        }
        let mut passed = report.passed();
        if let Some(name) = &args.baseline {
            let gate = baselines.compare(name, &report)?;
            print!(
                "{}",
                gate.summary(name, &self.accept_hint(&out, &args.baselines, name))
            );
            passed &= gate.passed();
        }
        Ok(if passed {
            RunEnd::Passed
        } else {
            RunEnd::Failed
        })
    }

    /// `report DIR`: the run folder's files again, from its journal.
    fn rebuild(&self, dir: &Path) -> Result<bool> {
        let report = journal::read(dir)?;
        self.write(&report, dir)?;
        println!(
            "{}; rebuilt from {}",
            report.tally(),
            dir.join(journal::FILE).display()
        );
        Ok(report.passed())
    }

    /// Writes the run folder with the standard reporters and the runner's own.
    fn write(&self, report: &Report, out: &Path) -> Result<()> {
        let extra: Vec<&dyn Reporter> = self.reporters.iter().map(|r| r.as_ref() as _).collect();
        report
            .write_with(out, &extra)
            .with_context(|| format!("writing the report to {}", out.display()))
    }

    /// The command that accepts a run's numbers as baseline `name`.
    fn accept_hint(&self, run: &Path, baselines: &Path, name: &str) -> String {
        format!(
            "{} gate --run {} --baselines {} --save-baseline {name}",
            self.program,
            run.display(),
            baselines.display()
        )
    }

    /// The child command for `case`: this executable again, `child --case ID` and the
    /// plan, with the sampling interval in [`SAMPLE_INTERVAL_ENV`].
    pub fn child_command(
        case: &Case,
        plan: &Plan,
        sample_interval: u64,
        profile: Option<&Path>,
    ) -> Result<std::process::Command> {
        let command =
            soak::this_executable().context("cannot find this program's executable")?;
        Ok(soak::transport::child_command(
            command,
            case,
            plan,
            sample_interval,
            profile,
        )?)
    }

    /// Runs one case in a child of this executable under the watchdog, with a progress
    /// bar; the child writes its heap profile into `out`.
    #[allow(clippy::too_many_arguments)]
    fn run_case(
        case: &Case,
        plan: &Plan,
        args: &SoakArgs,
        watchdog: Watchdog,
        multi: &MultiProgress,
        style: &ProgressStyle,
        prefix: String,
        out: &Path,
    ) -> Result<CaseResult> {
        let profile = format!("profiles/{}.dhat.json", file_stem(&case.id()));
        let profile_path = out.join(&profile);
        let _ = std::fs::remove_file(&profile_path);
        let plan = &args.plan.plan_for(plan, case);
        let bar = multi.add(ProgressBar::new(plan.iterations).with_style(style.clone()));
        bar.set_prefix(prefix);
        if let Some(duration) = plan.duration {
            bar.set_message(format!("{}s", duration.as_secs()));
            bar.enable_steady_tick(Duration::from_millis(250));
        }
        let command = Self::child_command(case, plan, args.sample_interval, Some(&profile_path))?;
        let mut result =
            soak::supervise(command, case, plan, watchdog, &mut |i| bar.set_position(i));
        if profile_path.is_file() {
            result.profile = Some(profile);
        }
        let result = attribution::attribute(result, plan, |rerun| {
            if soak::interruption().is_some() {
                return Ok::<_, anyhow::Error>(None);
            }
            bar.set_length(rerun.plan.iterations);
            bar.set_position(0);
            bar.set_message("exact re-run");
            // The case's own interval is larger still, so the child gets this one.
            let command = Self::child_command(case, &rerun.plan, rerun.interval, None)?;
            Ok(Some(soak::supervise(
                command,
                case,
                &rerun.plan,
                watchdog,
                &mut |i| bar.set_position(i),
            )))
        })?;
        bar.finish_and_clear();
        Ok(result)
    }

    /// The child side of `soak`: runs one case in this process, protocol on stdout.
    fn child(&self, args: &ChildArgs) -> ExitCode {
        let program = &self.program;
        let plan = match args.plan.plan() {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("{program} child: {e:#}");
                return ExitCode::from(2);
            }
        };
        let found = self.scenarios.iter().find_map(|s| {
            s.cases()
                .into_iter()
                .find(|c| c.id() == args.case)
                .map(|c| (*s, c))
        });
        let Some((scenario, case)) = found else {
            eprintln!(
                "{program} child: unknown case {:?} (see `{program} list`)",
                args.case
            );
            return ExitCode::from(2);
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let code = soak::run_child(scenario, &case, &plan, &mut out, args.profile.as_deref());
        ExitCode::from(code as u8)
    }
}

/// `gate`: compare a run folder with a baseline, or save it as one.
fn gate_command(args: &GateArgs, program: &str) -> Result<bool> {
    let baselines = Baselines::new(&args.baselines);
    let report = crate::gate::read_run(&args.run)?;
    if let Some(name) = &args.save_baseline {
        if !report.passed() {
            bail!(
                "{} did not pass ({}), so it cannot become baseline {name:?}",
                args.run.display(),
                report.tally()
            );
        }
        let path = baselines.save(name, &report)?;
        println!("saved baseline {name:?} as {}", path.display());
        return Ok(true);
    }
    let name = args.baseline.as_deref().expect("clap requires --baseline");
    let gate = baselines.compare(name, &report)?;
    let hint = format!(
        "{program} gate --run {} --baselines {} --save-baseline {name}",
        args.run.display(),
        args.baselines.display()
    );
    print!("{}", gate.summary(name, &hint));
    Ok(gate.passed())
}

/// 0 on `Ok(true)`, 1 on `Ok(false)`, 2 with the cause chain on an error.
pub fn exit_code(program: &str, result: Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::from(2)
        }
    }
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

/// `git rev-parse --short HEAD` of the current folder, `-dirty` with changes, or
/// `unknown` outside a repository.
pub fn git_rev() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
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

/// `rustc --version` of the compiler that built this crate (and so the binary).
pub const RUSTC_VERSION: &str = env!("AVSOAK_RUSTC_VERSION");

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
