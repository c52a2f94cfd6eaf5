//! Baselines and the gate: a run compared with a named baseline
//! (`reports/baselines/NAME.json`, schema `avsoak.baseline/1`).
//!
//! What fails a gate:
//! - any outcome `fail` in the run;
//! - a new `leak` verdict where the baseline had none;
//! - for a case expected clean: allocations per iteration or peak live bytes above the
//!   baseline by more than their tolerance (both are nearly deterministic: gated tightly),
//!   the most descriptors or threads it held above the baseline's by more than a few, or
//!   its peak mapped or resident bytes above the baseline's by more than their tolerance,
//!   or throughput below the baseline by more than the noise threshold (wall-clock on a
//!   shared machine: gated loosely; only when the run and the baseline both soaked one
//!   case at a time, `--jobs 1`; relative to each machine's speed index when both have
//!   one, [`crate::speed`]);
//! - a baseline case the run does not have, when the run selected every case.
//!
//! Everything else that differs is shown but passes: clean ↔ bounded ↔ upstream, a case
//! new to the baseline, figures that improved beyond their tolerance (worth a new
//! baseline), a run of another plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fmt::human_bytes;
use crate::report::{Outcome, Provenance, Report, Verdict};
use crate::scenario::Expect;

/// The schema tag of a baseline file.
pub const BASELINE_SCHEMA: &str = "avsoak.baseline/1";

/// How far a figure may move before the gate fails. A baseline file missing one takes
/// its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tolerances {
    /// Allocations per iteration may exceed the baseline by this fraction of it …
    pub allocs_rel: f64,
    /// … or by this many, whichever is larger.
    pub allocs_abs: f64,
    /// Peak live bytes may exceed the baseline by this fraction of it …
    pub peak_rel: f64,
    /// … or by this many bytes, whichever is larger.
    pub peak_abs: f64,
    /// Throughput may fall below the baseline by this fraction of it.
    pub throughput_drop: f64,
    /// The most descriptors, and the most threads, held may exceed the baseline's by
    /// this many.
    pub held_abs: f64,
    /// Peak mapped bytes may exceed the baseline by this fraction of it …
    pub mapped_rel: f64,
    /// … or by this many bytes, whichever is larger.
    pub mapped_abs: f64,
    /// Peak resident bytes may exceed the baseline by this fraction of it …
    pub rss_rel: f64,
    /// … or by this many bytes, whichever is larger.
    pub rss_abs: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            allocs_rel: 0.02,
            allocs_abs: 2.0,
            // Threaded encoders (x264's lookahead) move the peak by up to ~11 % between
            // runs of the same commit.
            peak_rel: 0.20,
            peak_abs: 2.0 * 1024.0 * 1024.0,
            throughput_drop: 0.5,
            // Descriptors and threads at rest are counts a pipeline holds by design (its
            // files, its worker pools): they repeat to the unit on one machine.
            held_abs: 2.0,
            mapped_rel: 0.20,
            mapped_abs: 2.0 * 1024.0 * 1024.0,
            // Resident memory includes what the allocator keeps and the pages libraries
            // touch: gated loosely.
            rss_rel: 0.25,
            rss_abs: 16.0 * 1024.0 * 1024.0,
        }
    }
}

/// The figures of one case a baseline keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineCase {
    /// What the case expects.
    pub expect: Expect,
    /// The verdict the baseline's run reached.
    pub verdict: Verdict,
    /// Mean allocations per judged iteration.
    pub allocs_per_iter: f64,
    /// Mean bytes allocated per judged iteration.
    pub alloc_bytes_per_iter: f64,
    /// Process-wide peak of live bytes.
    pub peak_live_bytes: i64,
    /// Frames per second (0 when the case counts no frames).
    pub frames_per_s: f64,
    /// Iterations per second.
    pub iters_per_s: f64,
    /// The most the process held besides its heap (absent when they were not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
}

/// How a gated figure is written in a row.
#[derive(Debug, Clone, Copy)]
enum Shown {
    /// Allocations per iteration: `40.0`, `+39.0 (limit ±2.0)`.
    Decimal,
    /// Descriptors or threads: `7`, `+3 (limit ±2)`.
    Count,
    /// Bytes: `16.0 MiB`, `4.8 MiB (limit ±3.2 MiB)`.
    Bytes,
}

impl Shown {
    fn value(self, x: f64) -> String {
        match self {
            Shown::Decimal => format!("{x:.1}"),
            Shown::Count => format!("{x}"),
            Shown::Bytes => human_bytes(x),
        }
    }

    fn change(self, more: f64, limit: f64) -> String {
        match self {
            Shown::Decimal => format!("{more:+.1} (limit ±{limit:.1})"),
            Shown::Count => format!("{more:+} (limit ±{limit})"),
            Shown::Bytes => format!("{} (limit ±{})", human_bytes(more), human_bytes(limit)),
        }
    }
}

/// The most a case's process held besides its heap, after any iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Open descriptors.
    pub fds: i64,
    /// Threads.
    pub threads: i64,
    /// Bytes mapped by the program and its libraries.
    pub mapped_bytes: i64,
    /// Resident bytes.
    pub rss_bytes: i64,
}

impl Held {
    fn of(r: &crate::report::CaseResult) -> Option<Held> {
        r.resources.map(|res| Held {
            fds: res.fds.max,
            threads: res.threads.max,
            mapped_bytes: res.mapped_bytes.max,
            rss_bytes: res.rss_bytes.max,
        })
    }
}

/// A named baseline: the figures of one passing run, and the tolerances to gate with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Always [`BASELINE_SCHEMA`].
    pub schema: String,
    /// Where the run it came from was made.
    pub provenance: Provenance,
    /// Tolerances (edit the file to change them; the gate reads them from here).
    #[serde(default)]
    pub tolerances: Tolerances,
    /// Per case id.
    pub cases: BTreeMap<String, BaselineCase>,
}

/// Why a run cannot become a baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The run has failed outcomes.
    #[error(
        "the run has {count} failed case(s) ({cases}); a baseline must come from a run that \
         passed"
    )]
    Failed {
        /// How many.
        count: usize,
        /// Their ids, comma-separated.
        cases: String,
    },
    /// The run ran nothing.
    #[error("the run has no case that ran; a baseline needs at least one")]
    Empty,
}

impl Baseline {
    /// A baseline from `run`, with default tolerances. Skipped cases are left out.
    pub fn from_run(run: &Report) -> Result<Self, BaselineError> {
        let failed: Vec<&str> = run
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .map(|r| r.id.as_str())
            .collect();
        if !failed.is_empty() {
            return Err(BaselineError::Failed {
                count: failed.len(),
                cases: failed.join(", "),
            });
        }
        let cases: BTreeMap<String, BaselineCase> = run
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .map(|r| {
                let case = BaselineCase {
                    expect: r.expect,
                    verdict: r.verdict,
                    allocs_per_iter: r.heap.allocs_per_iter,
                    alloc_bytes_per_iter: r.heap.alloc_bytes_per_iter,
                    peak_live_bytes: r.heap.peak_live_bytes,
                    frames_per_s: r.throughput.frames_per_s,
                    iters_per_s: r.throughput.iters_per_s,
                    held: Held::of(r),
                };
                (r.id.clone(), case)
            })
            .collect();
        if cases.is_empty() {
            return Err(BaselineError::Empty);
        }
        Ok(Baseline {
            schema: BASELINE_SCHEMA.to_owned(),
            provenance: run.provenance.clone(),
            tolerances: Tolerances::default(),
            cases,
        })
    }
}

/// What one row of the comparison says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fails the gate.
    Regressed,
    /// Shown, passes: a difference worth knowing (a verdict that moved between passing
    /// ones, a new case, another plan).
    Note,
    /// Better than the baseline beyond the tolerance: a new baseline would tighten it.
    Improved,
}

impl Status {
    /// The name in the table (`REGRESSED` loud on purpose).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Regressed => "REGRESSED",
            Status::Note => "note",
            Status::Improved => "improved",
        }
    }
}

/// One difference between the run and the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Case id (or `run` for the run as a whole).
    pub case: String,
    /// Which figure.
    pub figure: String,
    /// The baseline's value, as shown.
    pub baseline: String,
    /// The run's value, as shown.
    pub run: String,
    /// What the difference means, with the limit that applied.
    pub why: String,
    /// Whether it fails the gate.
    pub status: Status,
}

/// The gate's finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Cases compared.
    pub compared: usize,
    /// Every difference, regressions first.
    pub differences: Vec<Difference>,
}

impl Gate {
    /// True when nothing regressed.
    pub fn passed(&self) -> bool {
        self.regressions() == 0
    }

    /// How many differences fail the gate.
    pub fn regressions(&self) -> usize {
        self.differences
            .iter()
            .filter(|d| d.status == Status::Regressed)
            .count()
    }

    /// The differences as an aligned text table (empty when there are none).
    pub fn table(&self) -> String {
        if self.differences.is_empty() {
            return String::new();
        }
        let header = ["case", "figure", "baseline", "run", "status", "why"];
        let rows: Vec<Vec<String>> = self
            .differences
            .iter()
            .map(|d| {
                vec![
                    d.case.clone(),
                    d.figure.clone(),
                    d.baseline.clone(),
                    d.run.clone(),
                    d.status.as_str().to_owned(),
                    d.why.clone(),
                ]
            })
            .collect();
        crate::fmt::render_table(&header, &rows, false)
    }
}

/// Compares `run` with `baseline` (see the module documentation for the rules).
pub fn compare(run: &Report, baseline: &Baseline) -> Gate {
    let t = &baseline.tolerances;
    let mut differences = Vec::new();
    let mut add = |case: &str, figure: &str, base: String, now: String, why: String, status| {
        differences.push(Difference {
            case: case.to_owned(),
            figure: figure.to_owned(),
            baseline: base,
            run: now,
            why,
            status,
        });
    };
    let base_plan = baseline.provenance.plan.as_deref().unwrap_or("unknown");
    let run_plan = run.provenance.plan.as_deref().unwrap_or("unknown");
    if base_plan != run_plan {
        add(
            "run",
            "plan",
            base_plan.to_owned(),
            run_plan.to_owned(),
            "the run soaked another plan; peak live bytes may differ for that reason".into(),
            Status::Note,
        );
    }
    // Throughput measured beside neighbours is not throughput measured alone, and it
    // does not repeat: which case runs beside which changes from run to run.
    let (base_jobs, run_jobs) = (baseline.provenance.jobs, run.provenance.jobs);
    let same_load = base_jobs == 1 && run_jobs == 1;
    if !same_load {
        add(
            "run",
            "jobs",
            base_jobs.to_string(),
            run_jobs.to_string(),
            format!(
                "throughput not compared: it is gated between runs that soaked one case at a \
                 time (--jobs 1); with more at once a case shares the CPUs with whichever \
                 case runs beside it (the run soaked {run_jobs} at once, the baseline \
                 {base_jobs})"
            ),
            Status::Note,
        );
    }
    // Throughput relative to each machine's speed, when both measured it alike.
    let speed = match (&run.provenance.speed, &baseline.provenance.speed) {
        (Some(now), Some(then)) => now.relative_to(then).map(|ratio| (ratio, now, then)),
        _ => None,
    };
    if let Some((ratio, now, then)) = speed {
        if same_load {
            add(
                "run",
                "speed index",
                format!("{:.1}", then.index),
                format!("{:.1}", now.index),
                format!(
                    "this machine runs the reference at {ratio:.2}× the baseline's speed: \
                     throughput is judged against the baseline's times that"
                ),
                Status::Note,
            );
        }
    }
    let speed = speed.map(|(ratio, _, _)| ratio);
    let mut compared = 0;
    for r in &run.results {
        if r.outcome == Outcome::Fail {
            add(
                &r.id,
                "outcome",
                baseline
                    .cases
                    .get(&r.id)
                    .map_or("-".into(), |b| b.verdict.as_str().to_owned()),
                format!("{} (FAIL)", r.verdict.as_str()),
                format!("expected {}", r.expect),
                Status::Regressed,
            );
        }
        let Some(b) = baseline.cases.get(&r.id) else {
            if r.outcome != Outcome::Skip {
                add(
                    &r.id,
                    "case",
                    "-".into(),
                    r.verdict.as_str().into(),
                    "not in the baseline".into(),
                    Status::Note,
                );
            }
            continue;
        };
        if r.outcome == Outcome::Skip {
            add(
                &r.id,
                "case",
                b.verdict.as_str().into(),
                "skipped".into(),
                r.note.clone().unwrap_or_default(),
                Status::Note,
            );
            continue;
        }
        compared += 1;
        if r.verdict != b.verdict {
            let new_leak = r.verdict == Verdict::Leak && b.verdict != Verdict::Leak;
            if new_leak || r.outcome != Outcome::Fail {
                add(
                    &r.id,
                    "verdict",
                    b.verdict.as_str().into(),
                    r.verdict.as_str().into(),
                    if new_leak {
                        let beyond_heap = r.resources.map(|res| res.leaks()).unwrap_or_default();
                        match beyond_heap.first() {
                            Some(what) => format!("a new leak: {what}"),
                            None => format!(
                                "a new leak: {}/iteration",
                                human_bytes(r.heap.leak_bytes_per_iter)
                            ),
                        }
                    } else {
                        "both pass".into()
                    },
                    if new_leak {
                        Status::Regressed
                    } else {
                        Status::Note
                    },
                );
            }
        }
        if r.expect != Expect::Clean || r.outcome == Outcome::Fail {
            // Controls and failed cases: their figures measure the failure, not the
            // pipeline.
            continue;
        }
        // Each figure a clean case must not exceed the baseline's by more than its limit,
        // in the baseline's order: allocations, the heap's peak, then what the process
        // held besides its heap when both counted it.
        let mut figures = vec![
            (
                "allocs/iter",
                b.allocs_per_iter,
                r.heap.allocs_per_iter,
                t.allocs_abs.max(t.allocs_rel * b.allocs_per_iter),
                Shown::Decimal,
            ),
            (
                "peak live",
                b.peak_live_bytes as f64,
                r.heap.peak_live_bytes as f64,
                t.peak_abs.max(t.peak_rel * b.peak_live_bytes as f64),
                Shown::Bytes,
            ),
        ];
        if let (Some(then), Some(now)) = (b.held, Held::of(r)) {
            let bytes = |then: i64, rel: f64, abs: f64| abs.max(rel * then as f64);
            figures.extend([
                (
                    "descriptors held",
                    then.fds as f64,
                    now.fds as f64,
                    t.held_abs,
                    Shown::Count,
                ),
                (
                    "threads held",
                    then.threads as f64,
                    now.threads as f64,
                    t.held_abs,
                    Shown::Count,
                ),
                (
                    "peak mapped",
                    then.mapped_bytes as f64,
                    now.mapped_bytes as f64,
                    bytes(then.mapped_bytes, t.mapped_rel, t.mapped_abs),
                    Shown::Bytes,
                ),
                (
                    "peak resident",
                    then.rss_bytes as f64,
                    now.rss_bytes as f64,
                    bytes(then.rss_bytes, t.rss_rel, t.rss_abs),
                    Shown::Bytes,
                ),
            ]);
        }
        for (figure, then, now, limit, shown) in figures {
            let more = now - then;
            if more.abs() > limit {
                add(
                    &r.id,
                    figure,
                    shown.value(then),
                    shown.value(now),
                    shown.change(more, limit),
                    if more > 0.0 {
                        Status::Regressed
                    } else {
                        Status::Improved
                    },
                );
            }
        }
        let (figure, base_rate, rate) = if b.frames_per_s > 0.0 {
            ("frames/s", b.frames_per_s, r.throughput.frames_per_s)
        } else {
            ("iterations/s", b.iters_per_s, r.throughput.iters_per_s)
        };
        // What the baseline's rate is on this machine.
        let expected = base_rate * speed.unwrap_or(1.0);
        if same_load && expected > 0.0 && rate < expected * (1.0 - t.throughput_drop) {
            let limit = 1.0 - t.throughput_drop;
            add(
                &r.id,
                figure,
                format!("{base_rate:.1}"),
                format!("{rate:.1}"),
                match speed {
                    Some(ratio) => format!(
                        "{:.2}× the baseline raw, {:.2}× for this machine's speed ({ratio:.2}× \
                         the baseline's; limit {limit:.2}×)",
                        rate / base_rate,
                        rate / expected
                    ),
                    None => format!(
                        "{:.2}× the baseline (limit {limit:.2}×, wall-clock; no speed index \
                         to compare machines by)",
                        rate / base_rate
                    ),
                },
                Status::Regressed,
            );
        }
    }
    let partial = run.provenance.selection.is_some();
    for (id, b) in &baseline.cases {
        if run.results.iter().any(|r| &r.id == id) {
            continue;
        }
        if !partial {
            add(
                id,
                "case",
                b.verdict.as_str().into(),
                "missing".into(),
                "the run selected every case but has no result for this one".into(),
                Status::Regressed,
            );
        }
    }
    differences.sort_by_key(|d| d.status);
    Gate {
        compared,
        differences,
    }
}

/// Why a baseline or a run folder could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A baseline name that is not a plain file name.
    #[error("invalid baseline name {0:?} (expected letters, digits, '-', '_' or '.')")]
    Name(String),
    /// No baseline of that name.
    #[error(
        "no baseline {name:?} at {} (baselines: {known}); save one with --save-baseline {name}",
        path.display()
    )]
    Missing {
        /// The name asked for.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The baselines that are there, comma-separated, or `none`.
        known: String,
    },
    /// A file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{} is not an avsoak {what}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// `report` or `baseline`.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The run cannot become a baseline.
    #[error("{} cannot become baseline {name:?}", run.display())]
    NotABaseline {
        /// The run folder, or `the run` for one not yet written.
        run: PathBuf,
        /// The baseline name.
        name: String,
        /// Why.
        #[source]
        source: BaselineError,
    },
}

/// A run folder's `report.json`, read.
pub fn read_run(run: &Path) -> Result<Report, FileError> {
    let path = run.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|source| FileError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| FileError::Parse {
        path,
        what: "report",
        source,
    })
}

/// The folder of named baselines (`reports/baselines/` by default): `NAME.json` each.
#[derive(Debug, Clone)]
pub struct Baselines {
    dir: PathBuf,
}

impl Baselines {
    /// Baselines kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Baselines { dir: dir.into() }
    }

    /// `<dir>/NAME.json`, after checking that NAME is a plain file name.
    pub fn path(&self, name: &str) -> Result<PathBuf, FileError> {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        if !plain {
            return Err(FileError::Name(name.to_owned()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// The names of the baselines there, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// Baseline `name`, read.
    pub fn load(&self, name: &str) -> Result<Baseline, FileError> {
        let path = self.path(name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let known = self.names();
                return Err(FileError::Missing {
                    name: name.to_owned(),
                    path,
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
            Err(source) => return Err(FileError::Io { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| FileError::Parse {
            path,
            what: "baseline",
            source,
        })
    }

    /// Saves `run` as baseline `name` (it must have passed); returns the file.
    pub fn save(&self, name: &str, run: &Report) -> Result<PathBuf, FileError> {
        let path = self.path(name)?;
        let baseline = Baseline::from_run(run).map_err(|source| FileError::NotABaseline {
            run: PathBuf::from("the run"),
            name: name.to_owned(),
            source,
        })?;
        std::fs::create_dir_all(&self.dir).map_err(|source| FileError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut json = serde_json::to_string_pretty(&baseline).expect("baselines serialize");
        json.push('\n');
        std::fs::write(&path, json).map_err(|source| FileError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// `run` compared with baseline `name`.
    pub fn compare(&self, name: &str, run: &Report) -> Result<Gate, FileError> {
        Ok(compare(run, &self.load(name)?))
    }
}

impl Gate {
    /// What a gate prints: the differences, the finding, and on a regression `accept`,
    /// the command that takes the new numbers as baseline `name`.
    pub fn summary(&self, name: &str, accept: &str) -> String {
        let mut out = self.table();
        if self.passed() {
            out.push_str(&format!(
                "gate passed: {} case(s) within baseline {name:?}\n",
                self.compared
            ));
        } else {
            out.push_str(&format!(
                "gate FAILED: {} regression(s) against baseline {name:?}\n\
                 if the new numbers are right, accept them with:\n  {accept}\n",
                self.regressions()
            ));
        }
        out
    }
}
