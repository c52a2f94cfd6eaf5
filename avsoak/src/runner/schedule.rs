//! `soak`: the selected cases, each in a child of this executable, several at once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::args::{default_jobs, RunEnd, SoakArgs};
use super::finish::Gating;
use super::Runner;
use crate::fmt::file_stem;
use crate::report::{CaseResult, Report};
use crate::scenario::Case;
use crate::soak::{self, attribution, signal_name, Plan, Watchdog};

/// What every case of one soak shares: the worker that runs a case takes it.
struct Lane<'a> {
    plan: &'a Plan,
    args: &'a SoakArgs,
    watchdog: Watchdog,
    multi: &'a MultiProgress,
    style: &'a ProgressStyle,
    out: &'a Path,
}

impl Runner {
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
        let gating = Gating {
            baseline: args.baseline.as_deref(),
            save_baseline: args.save_baseline.as_deref(),
            baselines: &args.baselines,
        };
        gating.check()?;
        let mut provenance = self.provenance(args.git_rev.clone());
        provenance.plan = Some(args.plan.describe(&plan, &cases));
        provenance.selection = args.selection();
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
        let name = provenance.git_rev.clone();
        let (out, mut journal) = self.open_run(&provenance, args.out.clone(), &name)?;
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
        let lane = Lane {
            plan: &plan,
            args,
            watchdog,
            multi: &multi,
            style: &style,
            out: &out,
        };
        let mut finished: Vec<Option<CaseResult>> = (0..total).map(|_| None).collect();
        let mut failure: Option<anyhow::Error> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Result<CaseResult>)>();
            for _ in 0..jobs {
                let tx = tx.clone();
                let (cases, next, stop, lane) = (&cases, &next, &stop, &lane);
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
                        (None, None) => lane.run(case, prefix),
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
        self.finish(&report, &out, &gating)
    }
}

impl Lane<'_> {
    /// Runs one case in a child of this executable under the watchdog, with a progress
    /// bar; the child writes its heap profile into `out`.
    fn run(&self, case: &Case, prefix: String) -> Result<CaseResult> {
        let Lane {
            plan,
            args,
            watchdog,
            multi,
            style,
            out,
        } = *self;
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
        let command = Runner::child_command(case, plan, args.sample_interval, Some(&profile_path))?;
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
            let command = Runner::child_command(case, &rerun.plan, rerun.interval, None)?;
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
}
