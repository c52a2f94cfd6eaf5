//! What every run does around its work, soak or watch alike: the provenance and the run
//! folder before anything runs (a folder that cannot be written fails first), then the
//! run folder written, the table and the tally printed, and the gate applied; and the
//! `gate` and `report` commands over a finished folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::args::{GateArgs, RunEnd};
use super::{git_rev, Runner, RUSTC_VERSION};
use crate::gate::Baselines;
use crate::journal::{self, Journal};
use crate::render::Reporter;
use crate::report::{Provenance, Report, Verdict};
use crate::soak::{self, signal_name};

/// What a run asks of the baselines once it is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gating<'a> {
    /// Gate the run against this baseline.
    pub(super) baseline: Option<&'a str>,
    /// Save the run as this baseline when it passed.
    pub(super) save_baseline: Option<&'a str>,
    /// The folder of the named baselines.
    pub(super) baselines: &'a Path,
}

impl Gating<'_> {
    /// Checks every name before any work, so a typo costs nothing.
    pub(super) fn check(&self) -> Result<()> {
        let baselines = Baselines::new(self.baselines);
        for name in self.baseline.iter().chain(&self.save_baseline) {
            baselines.path(name)?;
        }
        Ok(())
    }
}

impl Runner {
    /// The provenance of a run of revision `rev` (from git when `None`).
    pub(super) fn provenance(&self, rev: Option<String>) -> Provenance {
        let rev = rev.unwrap_or_else(git_rev);
        Provenance::here(rev, RUSTC_VERSION.to_owned(), (self.libraries)())
    }

    /// Creates the run folder (`out`, or `reports/runs/<time>-<name>`) and its journal
    /// with the provenance line: the check that the folder can be written, before any
    /// work.
    pub(super) fn open_run(
        &self,
        provenance: &Provenance,
        out: Option<PathBuf>,
        name: &str,
    ) -> Result<(PathBuf, Journal)> {
        let out = out.unwrap_or_else(|| {
            let stamp = provenance.started_at.replace(['-', ':'], "");
            PathBuf::from("reports/runs").join(format!("{stamp}-{name}"))
        });
        let journal = Journal::create(&out, provenance)?;
        Ok((out, journal))
    }

    /// The end of every run: writes the run folder, prints the table and the tally,
    /// says what an interruption kept, saves or gates a baseline as asked, and says how
    /// the run ended.
    pub(super) fn finish(
        &self,
        report: &Report,
        out: &Path,
        gating: &Gating<'_>,
    ) -> Result<RunEnd> {
        self.write(report, out)?;
        println!("\n{}", report.table(false));
        println!("{}; run folder {}", report.tally(), out.display());
        if let Some(signal) = soak::interruption() {
            let finished = report
                .results
                .iter()
                .filter(|r| r.verdict != Verdict::Interrupted)
                .count();
            eprintln!(
                "{}: interrupted by {}: {finished} of {} cases finished and kept in {}",
                self.program,
                signal_name(signal),
                report.results.len(),
                out.display()
            );
            return Ok(RunEnd::Interrupted { signal });
        }
        let baselines = Baselines::new(gating.baselines);
        let mut passed = report.passed();
        if let Some(name) = gating.save_baseline {
            if passed {
                let path = baselines.save(name, report)?;
                println!("saved baseline {name:?} as {}", path.display());
            } else {
                eprintln!(
                    "{}: baseline {name:?} not saved: the run did not pass",
                    self.program
                );
            }
        }
        if let Some(name) = gating.baseline {
            let gate = baselines.compare(name, report)?;
            print!(
                "{}",
                gate.summary(name, &self.accept_hint(out, gating.baselines, name))
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
    pub(super) fn rebuild(&self, dir: &Path) -> Result<bool> {
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
    pub(super) fn write(&self, report: &Report, out: &Path) -> Result<()> {
        let extra: Vec<&dyn Reporter> = self.reporters.iter().map(|r| r.as_ref() as _).collect();
        report
            .write_with(out, &extra)
            .with_context(|| format!("writing the report to {}", out.display()))
    }

    /// The command that accepts a run's numbers as baseline `name`.
    pub(super) fn accept_hint(&self, run: &Path, baselines: &Path, name: &str) -> String {
        accept_hint(&self.program, run, baselines, name)
    }
}

/// The command of `program` that accepts the numbers of the run folder `run` as baseline
/// `name` in `baselines`.
fn accept_hint(program: &str, run: &Path, baselines: &Path, name: &str) -> String {
    format!(
        "{program} gate --run {} --baselines {} --save-baseline {name}",
        run.display(),
        baselines.display()
    )
}

/// `gate`: compare a run folder with a baseline, or save it as one.
pub(super) fn gate_command(args: &GateArgs, program: &str) -> Result<bool> {
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
    let hint = accept_hint(program, &args.run, &args.baselines, name);
    print!("{}", gate.summary(name, &hint));
    Ok(gate.passed())
}
