//! `watch -- PROGRAM`: a program avsoak did not build, under the preload library.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::args::{parse_duration, RunEnd, WatchArgs};
use super::finish::Gating;
use super::Runner;
use crate::fmt::file_stem;
use crate::report::Report;
use crate::soak::watch::{
    default_preload, preflight, sized_flags, tick_for, too_short, watch, Watch, PRELOAD_LIBRARY,
};
use crate::soak::{self, attribution};

impl Runner {
    /// `watch -- PROGRAM`: one program under the preload library, judged and written as
    /// a run folder of one result, gated when asked.
    pub fn watch(&self, args: &WatchArgs) -> Result<RunEnd> {
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
        let preload = match (&args.preload, default_preload(), self.embedded_preload) {
            (Some(path), _, _) => path.clone(),
            (None, Some(installed), _) => installed,
            (None, None, Some(embedded)) => embedded.cached()?,
            (None, None, None) => bail!(
                "{PRELOAD_LIBRARY} is not beside {} (build it with `cargo build --release \
                 -p avsoak-preload`, or name it with --preload)",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        };
        let gating = Gating {
            baseline: args.baseline.as_deref(),
            save_baseline: None,
            baselines: &args.baselines,
        };
        gating.check()?;
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
        let mut provenance = self.provenance(None);
        // The program's libraries are its own (the result's), not this binary's.
        provenance.libs.clear();
        provenance.selection = Some(format!("watch {}", case.about));
        let name = format!("watch-{}", file_stem(&case.variant));
        let (out, mut journal) = self.open_run(&provenance, args.out.clone(), &name)?;
        let profile = format!("profiles/{}.dhat.json", file_stem(&case.id()));
        std::fs::create_dir_all(out.join("profiles"))
            .with_context(|| format!("creating {}", out.join("profiles").display()))?;
        spec.profile = Some(out.join(&profile));
        soak::catch_interrupts();
        let mut result = watch(&spec)?;
        // A window the program left too short, on the defaults: the program once more
        // (assumed to repeat itself, as the exact re-run assumes), in time mode with a
        // tick sized to how long it ran, when it ran in time mode or never called the
        // marker it links. A program that marked too few iterations is told what to use
        // (in the verdict's error).
        let defaults = args.every.is_none() && args.warmup.is_none() && !args.markers;
        let retime = spec.every.is_some() || result.iterations == 0;
        if too_short(&result) && defaults && retime && soak::interruption().is_none() {
            let tick = tick_for(Duration::from_secs_f64(result.wall_s));
            let why = match spec.every {
                None => "the program never called avsoak_iteration()".to_owned(),
                Some(every) => format!(
                    "{} ticks of {} ms were too few to judge",
                    result.iterations,
                    every.as_millis()
                ),
            };
            let again = format!(
                "{why}; watched again in time mode at {} ms ticks, sized to its {:.2} s \
                 (next time: {})",
                tick.as_millis(),
                result.wall_s,
                sized_flags(tick)
            );
            eprintln!("{}: {again}", self.program);
            spec.every = Some(tick);
            spec.warmup = 10;
            result = watch(&spec)?;
            result.note = Some(match result.note.take() {
                Some(note) => format!("{again}; {note}"),
                None => again,
            });
        }
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
        self.finish(&report, &out, &gating)
    }
}
