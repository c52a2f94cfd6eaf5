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
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::render::Reporter;
use crate::scenario::{Case, Scenario};
use crate::soak::{self, Plan};

mod args;
mod finish;
mod schedule;
mod watch;

pub use crate::soak::transport::SAMPLE_INTERVAL_ENV;
use args::Cli;
pub use args::{
    parse_duration, parse_jobs, parse_shard, ChildArgs, Command, GateArgs, MergeArgs, PlanArgs,
    ReportArgs, RunEnd, Shard, SoakArgs, WatchArgs,
};

/// The scenarios of one soak binary, and what its reports record about it.
#[derive(Clone)]
pub struct Runner {
    program: String,
    scenarios: Vec<&'static dyn Scenario>,
    libraries: fn() -> BTreeMap<String, String>,
    reporters: Vec<Arc<dyn Reporter + Send + Sync>>,
    embedded_preload: Option<crate::soak::watch::EmbeddedPreload>,
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
            embedded_preload: None,
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

    /// `watch`'s preload library when none is given and none is installed beside the
    /// executable: the one this binary carries, written once to the user's cache.
    pub fn embedded_preload(mut self, preload: crate::soak::watch::EmbeddedPreload) -> Self {
        self.embedded_preload = Some(preload);
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
            Command::Gate(args) => finish::gate_command(&args, &self.program),
            Command::Report(args) => self.rebuild(&args.dir),
            Command::Merge(args) => merge(&args),
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

    /// The child command for `case`: this executable again, `child --case ID` and the
    /// plan, with the sampling interval in [`SAMPLE_INTERVAL_ENV`].
    pub fn child_command(
        case: &Case,
        plan: &Plan,
        sample_interval: u64,
        profile: Option<&Path>,
    ) -> Result<std::process::Command> {
        let command = soak::this_executable().context("cannot find this program's executable")?;
        Ok(soak::transport::child_command(
            command,
            case,
            plan,
            sample_interval,
            profile,
        )?)
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

/// `merge`: the shards' folders as one run folder; passes when every merged outcome did.
fn merge(args: &MergeArgs) -> Result<bool> {
    let merged = crate::journal::merge_folders(&args.out, &args.runs)
        .map_err(|e| anyhow::anyhow!("merging {} run(s): {e}", args.runs.len()))?;
    println!(
        "merged {} run(s): {}; report: {}",
        args.runs.len(),
        merged.tally(),
        args.out.join("report.json").display()
    );
    Ok(merged.passed())
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
