//! The result model: a run's [`Report`] (provenance and one [`CaseResult`] per case, with
//! its [`Verdict`], [`Outcome`] and figures), serialized as `report.json` (schema
//! `avsoak.report/1`). The verdict is decided in [`crate::soak`]; `summary.md`, the
//! table, the series CSV, `index.html` and `junit.xml` render a finished report (see
//! [`crate::render`]).

use std::collections::BTreeMap;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::fmt::{file_stem, human_bytes};
use crate::heap::Suspect;
use crate::scenario::{Case, Expect};
use crate::series::Bucket;

/// The schema tag of `report.json`.
pub const SCHEMA: &str = "avsoak.report/1";

/// What the harness concluded about one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Live heap grows through the window (or hit the cap).
    Leak,
    /// No growth beyond the budget.
    Clean,
    /// Grew, then stopped growing within the window.
    Bounded,
    /// Setup or an iteration failed, or the instrument refused to judge.
    Error,
    /// The watchdog stopped the child.
    Hang,
    /// The child died on a signal.
    Crash,
    /// Grew, but by exactly what a declared upstream library leak accounts for; the
    /// growth left after it is flat (the explanation is in `note`).
    Upstream,
    /// Not run: the case cannot run on this machine (the reason is in `note`).
    Skipped,
    /// Stopped, or never started, because the run was interrupted (SIGINT or SIGTERM);
    /// `error` says by what and where.
    Interrupted,
}

impl Verdict {
    /// The lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::Clean => "clean",
            Verdict::Bounded => "bounded",
            Verdict::Error => "error",
            Verdict::Hang => "hang",
            Verdict::Crash => "crash",
            Verdict::Upstream => "upstream",
            Verdict::Skipped => "skipped",
            Verdict::Interrupted => "interrupted",
        }
    }

    /// Whether this verdict meets `expect`: `clean` is met by `clean`, `bounded` (growth
    /// that stopped is no leak) and `upstream` (all the growth is a declared library
    /// leak); every other expectation only by its own verdict. The one place that rule
    /// is written.
    pub fn meets(self, expect: Expect) -> bool {
        matches!(
            (expect, self),
            (
                Expect::Clean,
                Verdict::Clean | Verdict::Bounded | Verdict::Upstream
            ) | (Expect::Leak, Verdict::Leak)
                | (Expect::Crash, Verdict::Crash)
                | (Expect::Hang, Verdict::Hang)
        )
    }
}

/// Whether the verdict matched what the case expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Verdict as expected.
    Pass,
    /// Anything else.
    Fail,
    /// Not run, with a stated reason: neither a pass nor a failure.
    Skip,
}

impl Outcome {
    /// The name in tables: `pass`, `FAIL` (loud on purpose), `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// Heap figures of one case; slopes are over the judged (post-warm-up) window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct HeapFigures {
    /// Theil–Sen slope of live bytes, bytes per iteration.
    pub leak_bytes_per_iter: f64,
    /// Theil–Sen slope of live blocks, blocks per iteration.
    pub leak_blocks_per_iter: f64,
    /// The live heap itself grows (or hit the cap): a case that leaks only descriptors,
    /// threads or mappings has `false`, and no heap suspect can explain its verdict.
    #[serde(default)]
    pub grows: bool,
    /// One-sided Mann–Kendall p-value for increasing live bytes.
    pub trend_p: f64,
    /// The same for live blocks.
    pub trend_blocks_p: f64,
    /// Slope of live bytes over the second half of the window (bytes per iteration).
    pub late_bytes_per_iter: f64,
    /// A declared upstream leak's loss per judged iteration (0 without one), at the
    /// smallest size the allocator gives its blocks.
    #[serde(default)]
    pub upstream_bytes_per_iter: f64,
    /// How much more the declared loss may be per judged iteration, by where the
    /// allocator places its blocks: it lies in `upstream_bytes_per_iter ..=
    /// upstream_bytes_per_iter + upstream_slack_bytes_per_iter`.
    #[serde(default)]
    pub upstream_slack_bytes_per_iter: f64,
    /// Slope of live bytes once the most the declared upstream loss can account for is
    /// taken out (equal to `leak_bytes_per_iter` without one).
    #[serde(default)]
    pub residual_bytes_per_iter: f64,
    /// Process-wide peak of live bytes.
    pub peak_live_bytes: i64,
    /// Live bytes after the last iteration.
    pub end_live_bytes: i64,
    /// Live bytes after the workload was dropped (absent when the child did not finish).
    pub teardown_live_bytes: Option<i64>,
    /// Mean allocations per judged iteration.
    pub allocs_per_iter: f64,
    /// Mean bytes allocated per judged iteration.
    pub alloc_bytes_per_iter: f64,
    /// The fitted line of live bytes over the judged window (what the page draws).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_bytes: Option<Fit>,
    /// The fitted line of live blocks over the judged window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_blocks: Option<Fit>,
    /// For a leak that starts late in the window: where its growth begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<Onset>,
    /// A time-mode watch's figures per second, where an iteration is a clock tick; absent
    /// where iterations are the program's own (a soak, marker mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<PerSecond>,
}

/// The per-iteration figures of a time-mode watch restated per second of the program's
/// run: each figure per iteration divided by the tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerSecond {
    /// The tick one iteration stands for, seconds.
    pub tick_s: f64,
    /// Theil–Sen slope of live bytes, bytes/s.
    pub leak_bytes: f64,
    /// Theil–Sen slope of live blocks, blocks/s.
    pub leak_blocks: f64,
    /// Slope of live bytes over the second half of the window, bytes/s.
    pub late_bytes: f64,
    /// Allocations per second.
    pub allocs: f64,
    /// Bytes allocated per second.
    pub alloc_bytes: f64,
}

impl PerSecond {
    /// `heap`'s figures per second when one iteration is one `tick`.
    pub fn at_tick(heap: &HeapFigures, tick: std::time::Duration) -> Self {
        let s = tick.as_secs_f64();
        PerSecond {
            tick_s: s,
            leak_bytes: heap.leak_bytes_per_iter / s,
            leak_blocks: heap.leak_blocks_per_iter / s,
            late_bytes: heap.late_bytes_per_iter / s,
            allocs: heap.allocs_per_iter / s,
            alloc_bytes: heap.alloc_bytes_per_iter / s,
        }
    }
}

impl HeapFigures {
    /// The leak's slope in the case's own clock: `720 B/s` in time mode, `72 B/it`
    /// otherwise.
    pub fn leak_rate(&self) -> String {
        match &self.per_second {
            Some(r) => format!("{}/s", crate::fmt::human_bytes(r.leak_bytes)),
            None => format!("{}/it", crate::fmt::human_bytes(self.leak_bytes_per_iter)),
        }
    }

    /// A time-mode watch's figures per second, as a line's last clause: `per second (100
    /// ms ticks): leak 720 B/s, 10.00 blocks/s, 20.0 allocations/s`; `None` otherwise.
    pub fn per_second_text(&self) -> Option<String> {
        self.per_second.map(|r| {
            format!(
                "per second ({:.0} ms ticks): leak {}/s, {:.2} blocks/s, {:.1} allocations/s",
                r.tick_s * 1000.0,
                crate::fmt::human_bytes(r.leak_bytes),
                r.leak_blocks,
                r.allocs
            )
        })
    }

    /// The blocks' slope in the case's own clock: `10.00/s` in time mode, `1.00/it`
    /// otherwise.
    pub fn blocks_rate(&self) -> String {
        match &self.per_second {
            Some(r) => format!("{:.2}/s", r.leak_blocks),
            None => format!("{:.2}/it", self.leak_blocks_per_iter),
        }
    }
}

/// Where a late leak's growth begins ([`crate::stats::onset`] over the judged live
/// bytes) and how fast it grows from there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    /// The last iteration before the growth.
    pub iteration: u64,
    /// Theil–Sen slope of live bytes from there on, bytes per iteration.
    pub bytes_per_iter: f64,
}

impl Onset {
    /// `growth begins after iteration 70: 4.0 KiB/iteration from there`.
    pub fn describe(&self) -> String {
        format!(
            "growth begins after iteration {}: {}/iteration from there",
            self.iteration,
            crate::fmt::human_bytes(self.bytes_per_iter)
        )
    }
}

/// A line fitted to a series over iterations `from..=to`: the Theil–Sen slope, and the
/// intercept that is the median of the residuals; its value at iteration `i` is
/// `intercept + slope * i`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Fit {
    /// First iteration of the window.
    pub from: u64,
    /// Last iteration of the window.
    pub to: u64,
    /// Value at iteration 0 of the line.
    pub intercept: f64,
    /// Per iteration.
    pub slope: f64,
}

impl Fit {
    /// The line's value at iteration `i`.
    pub fn at(&self, i: f64) -> f64 {
        self.intercept + self.slope * i
    }
}

/// Throughput over the judged iterations (time inside the workload only).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Iterations per second.
    pub iters_per_s: f64,
    /// Frames per second.
    pub frames_per_s: f64,
    /// Output bytes per second.
    pub bytes_per_s: f64,
    /// CPU milliseconds per judged iteration, every thread of the child: beside the
    /// wall-clock (`1000 / iters_per_s`), what an iteration costs on a loaded machine.
    #[serde(default)]
    pub cpu_ms_per_iter: f64,
}

/// The stack sampler's settings and counts for one case. Suspects are estimates from
/// these samples, not exact counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sampling {
    /// Mean bytes between samples (0: sampling was off).
    pub interval_bytes: u64,
    /// Samples recorded over the whole child.
    pub taken: u64,
    /// Samples lost to a full table (non-zero means suspects under-count).
    pub dropped: u64,
}

/// Which pass named a leak's suspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttributionPass {
    /// The soak's own sampled stack table.
    Sampled,
    /// A re-run in a fresh child, sampling densely enough to see every leaked block
    /// (see [`crate::soak::attribution`]).
    Rerun,
}

/// How a leak's suspects were found, and what it cost. It never changes the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// The pass whose stacks are the suspects.
    pub pass: AttributionPass,
    /// Its sampling interval in bytes.
    pub interval_bytes: u64,
    /// Iterations it soaked, warm-up included.
    pub iterations: u64,
    /// Its warm-up iterations.
    pub warmup: u64,
    /// Wall-clock seconds of the re-run (0 for the sampled pass, part of the case).
    pub wall_s: f64,
    /// The share of the measured slope the suspects' growth explains.
    pub explained: f64,
    /// Why the suspects are as they are, when it needs saying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Attribution {
    /// `suspects from an exact re-run (64 B interval, 140 iterations, 3.2 s): 100 % of
    /// the slope`.
    pub fn describe(&self) -> String {
        let pass = match self.pass {
            AttributionPass::Sampled => format!(
                "suspects from the soak's samples ({} interval)",
                crate::fmt::human_bytes(self.interval_bytes as f64)
            ),
            AttributionPass::Rerun => format!(
                "suspects from an exact re-run ({} interval, {} iterations, {:.1} s)",
                crate::fmt::human_bytes(self.interval_bytes as f64),
                self.iterations,
                self.wall_s
            ),
        };
        let note = self
            .note
            .as_deref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        format!(
            "{pass}: they explain {:.0} % of the slope{note}",
            self.explained * 100.0
        )
    }
}

/// One case's result: a row of `results` in `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Unique id, `scenario/variant/params…`.
    pub id: String,
    /// Scenario name.
    pub scenario: String,
    /// Variant name (several cases may share it, with different `params`).
    pub variant: String,
    /// Parameters of this case.
    pub params: BTreeMap<String, String>,
    /// What was expected.
    pub expect: Expect,
    /// What was found.
    pub verdict: Verdict,
    /// Pass when the verdict matches the expectation.
    pub outcome: Outcome,
    /// Iterations completed, warm-up included.
    pub iterations: u64,
    /// Warm-up iterations among them.
    pub warmup_iterations: u64,
    /// Heap figures.
    pub heap: HeapFigures,
    /// Throughput figures.
    pub throughput: Throughput,
    /// Pipeline objects the workload reported after each iteration
    /// ([`crate::scenario::Workload::gauges`]): live packets, queue depths, … by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, ObjectFigures>,
    /// Stacks whose sampled live bytes grew across the judged window beyond sampling
    /// noise, most growth first.
    pub suspects: Vec<Suspect>,
    /// Which pass found the suspects of a leak, and at what cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// How the stacks behind `suspects` were sampled (absent when the child did not
    /// finish).
    pub sampling: Option<Sampling>,
    /// Why a case did not finish normally, or why a leak was cut short.
    pub error: Option<String>,
    /// What a reader needs besides the numbers: why a case was skipped, or what a
    /// declared upstream leak explains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The case's heap profile (DHAT JSON), relative to the run folder, when the child
    /// wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Wall-clock seconds of the child, start-up included: a soak's child also names its
    /// suspects in it, a watched program's time is its own (the watcher names them after
    /// it exited).
    pub wall_s: f64,
    /// CPU seconds a watched program cost, while it ran (`avsoak watch` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuSeconds>,
    /// Descriptors, threads and resident memory over the judged window, judged as the
    /// heap is; `None` where they could not be read (the note says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceFigures>,
    /// Where the descriptors made in the judged window and still open at its end were
    /// made, most first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<crate::resources::Origin>,
    /// A watched program's own shared libraries and their versions, from the module map
    /// it sent (`libavcodec.so.59` → `59.37.100`); empty for a soak's case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub libraries: BTreeMap<String, String>,
    /// What the variant does.
    pub about: String,
    /// Live bytes, blocks and pipeline objects over the iterations, bounded (written to
    /// `series/` and drawn in `index.html`, not put in the JSON).
    #[serde(skip)]
    pub series: Vec<Bucket>,
}

/// CPU seconds, user and system, every thread: what watching a program cost beside what
/// the program cost itself. `avsoak watch` reads them from the kernel's accounting
/// (`getrusage`), from the program's spawn to its exit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuSeconds {
    /// The program's own, its instrument (the preloaded hooks and agent) included.
    pub program_s: f64,
    /// The watcher's, reading and keeping the program's samples.
    pub watcher_s: f64,
}

/// One resource of the process over the judged window, judged as live heap bytes are
/// ([`crate::stats::judge_series`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceTrend {
    /// Theil–Sen slope per iteration.
    pub per_iter: f64,
    /// One-sided Mann–Kendall p-value for growing.
    pub p: f64,
    /// Flat, bounded or growing.
    pub trend: crate::stats::Trend,
    /// After the last judged iteration.
    pub end: i64,
    /// The most after any iteration, warm-up included.
    pub max: i64,
}

/// What the process held besides its heap, over the judged window. Descriptors and
/// threads that grow make a `leak`, as the heap does; resident memory that grows beyond
/// the heap is a note (see ARCHITECTURE.md, "Invariants").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceFigures {
    /// Open file descriptors.
    pub fds: ResourceTrend,
    /// Threads.
    pub threads: ResourceTrend,
    /// Threads created and neither joined nor detached, running or ended (each keeps its
    /// stack until it is).
    #[serde(default)]
    pub unjoined: ResourceTrend,
    /// Bytes mapped with `mmap` by the program and its libraries.
    pub mapped_bytes: ResourceTrend,
    /// Resident bytes, anonymous and file-backed.
    pub rss_bytes: ResourceTrend,
    /// Resident growth per iteration that live heap bytes and mappings do not explain:
    /// the resident slope less theirs (0 when resident memory is flat).
    pub rss_unexplained_bytes_per_iter: f64,
}

impl ResourceFigures {
    /// The resources that leak, as the verdict's words: `+1.00 fd/iteration (5 → 105
    /// open)`, `+1.00 thread/iteration (2 → 102)`.
    pub fn leaks(&self) -> Vec<String> {
        self.leaking().into_iter().map(|(_, text)| text).collect()
    }

    /// [`ResourceFigures::leaks`], each with the resource its origins are kept under
    /// (`fds`, `threads`, `mapped_bytes`).
    fn leaking(&self) -> Vec<(&'static str, String)> {
        let growing = |t: &ResourceTrend| t.trend == crate::stats::Trend::Growing;
        let mut found = Vec::new();
        if growing(&self.fds) {
            found.push((
                "fds",
                format!(
                    "+{:.2} fd/iteration ({} open at the end, at most {})",
                    self.fds.per_iter, self.fds.end, self.fds.max
                ),
            ));
        }
        if growing(&self.unjoined) {
            found.push((
                "threads",
                format!(
                    "+{:.2} unjoined thread/iteration ({} neither joined nor detached at the end)",
                    self.unjoined.per_iter, self.unjoined.end
                ),
            ));
        }
        if growing(&self.mapped_bytes) {
            found.push((
                "mapped_bytes",
                format!(
                    "+{}/iteration mapped ({} mapped at the end, at most {})",
                    crate::fmt::human_bytes(self.mapped_bytes.per_iter),
                    crate::fmt::human_bytes(self.mapped_bytes.end as f64),
                    crate::fmt::human_bytes(self.mapped_bytes.max as f64)
                ),
            ));
        }
        if growing(&self.threads) {
            found.push((
                "threads",
                format!(
                    "+{:.2} thread/iteration ({} at the end, at most {})",
                    self.threads.per_iter, self.threads.end, self.threads.max
                ),
            ));
        }
        found
    }

    /// [`ResourceFigures::leaks`] as the note and JUnit say them, each with where its
    /// resources were made when `origins` know: `leak: +0.50 fd/iteration (…), 590 of
    /// them opened at socket ← upload_part`.
    pub fn leaks_with(&self, origins: &[crate::resources::Origin]) -> Vec<String> {
        self.leaking()
            .into_iter()
            .map(|(resource, l)| {
                let origin = origins.iter().find(|o| o.resource == resource);
                match (resource, origin) {
                    ("mapped_bytes", Some(o)) => format!(
                        "leak: {l}, {} of it mapped at {}",
                        crate::fmt::human_bytes(o.count as f64),
                        o.stack(4)
                    ),
                    ("fds", Some(o)) => {
                        format!("leak: {l}, {} of them opened at {}", o.count, o.stack(4))
                    }
                    (_, Some(o)) => {
                        format!("leak: {l}, {} of them started at {}", o.count, o.stack(4))
                    }
                    (_, None) => format!("leak: {l}"),
                }
            })
            .collect()
    }

    /// Whether a resource grew once and stopped (a pool of descriptors or threads
    /// filling), with none growing.
    pub fn bounded(&self) -> bool {
        [
            self.fds.trend,
            self.threads.trend,
            self.unjoined.trend,
            self.mapped_bytes.trend,
        ]
        .contains(&crate::stats::Trend::Bounded)
    }
}

/// One pipeline-object gauge over a case: where it ended and how high it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectFigures {
    /// After the last iteration.
    pub end: i64,
    /// The largest value after any iteration.
    pub max: i64,
}

impl CaseResult {
    /// A result for `case` with its identity (id, scenario, variant, params, expect,
    /// about) and the given verdict and outcome; every figure zero or empty. The soak and
    /// the skip path fill in what they know.
    pub fn for_case(case: &Case, verdict: Verdict, outcome: Outcome) -> Self {
        CaseResult {
            id: case.id(),
            scenario: case.scenario.clone(),
            variant: case.variant.clone(),
            params: case.params.clone(),
            expect: case.expect,
            verdict,
            outcome,
            iterations: 0,
            warmup_iterations: 0,
            heap: HeapFigures::default(),
            throughput: Throughput::default(),
            objects: BTreeMap::new(),
            suspects: Vec::new(),
            attribution: None,
            sampling: None,
            error: None,
            note: None,
            profile: None,
            wall_s: 0.0,
            cpu: None,
            resources: None,
            origins: Vec::new(),
            libraries: BTreeMap::new(),
            about: case.about.clone(),
            series: Vec::new(),
        }
    }

    /// The result of a case that was not run because it cannot run here: verdict
    /// `skipped`, outcome `skip`, and `skipped: <reason>` as its note.
    pub fn skipped(case: &Case, reason: &str) -> Self {
        CaseResult {
            note: Some(format!("skipped: {reason}")),
            ..CaseResult::for_case(case, Verdict::Skipped, Outcome::Skip)
        }
    }

    /// The result of a case the run's interruption stopped or never started: verdict
    /// `interrupted`, outcome `fail` (the run did not finish), `why` as its error.
    pub fn interrupted(case: &Case, why: &str) -> Self {
        CaseResult {
            error: Some(why.to_owned()),
            ..CaseResult::for_case(case, Verdict::Interrupted, Outcome::Fail)
        }
    }

    /// The slopes of descriptors, threads, mapped and resident memory in the case's
    /// clock, as the table shows them (`1.00/it`, `10.00/s`, `4.0 KiB/it`); `-` each
    /// where they were not counted.
    pub fn resource_rates(&self) -> [String; 4] {
        let Some(r) = &self.resources else {
            return ["-".into(), "-".into(), "-".into(), "-".into()];
        };
        let (scale, unit) = match &self.heap.per_second {
            Some(s) if s.tick_s > 0.0 => (1.0 / s.tick_s, "/s"),
            _ => (1.0, "/it"),
        };
        [
            format!("{:.2}{unit}", r.fds.per_iter * scale),
            format!("{:.2}{unit}", r.threads.per_iter * scale),
            format!(
                "{}{unit}",
                crate::fmt::human_bytes(r.mapped_bytes.per_iter * scale)
            ),
            format!(
                "{}{unit}",
                crate::fmt::human_bytes(r.rss_bytes.per_iter * scale)
            ),
        ]
    }

    /// Suspect stacks the summary shows: the top three where they explain something a
    /// reader should look at (growth: leak, bounded; or a failed outcome), none
    /// otherwise. A clean case's suspects are live allocations made after warm-up that
    /// the workload still legitimately holds; `report.json` keeps them all.
    pub fn summary_suspects(&self) -> &[Suspect] {
        let explains = matches!(
            self.verdict,
            Verdict::Leak | Verdict::Bounded | Verdict::Upstream
        ) || self.outcome == Outcome::Fail;
        if explains {
            &self.suspects[..self.suspects.len().min(3)]
        } else {
            &[]
        }
    }
}

/// Where and with what a run was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse --short HEAD`, with `-dirty` when the tree had changes.
    pub git_rev: String,
    /// Host name.
    pub host: String,
    /// Logical CPUs available.
    pub cpus: usize,
    /// `rustc --version` of the build.
    pub rustc: String,
    /// Codec library versions, by library.
    pub libs: BTreeMap<String, String>,
    /// UTC start time, RFC 3339.
    pub started_at: String,
    /// Units of the figures in `results`.
    pub units: BTreeMap<String, String>,
    /// How long each case soaked (`120 iterations, 20 warm-up`, `30m`), as the runner
    /// states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Which cases the run selected, when not all of them (`--scenario …`,
    /// `--shard 2/4`): a gate then does not miss the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
    /// Cases soaked at once (`soak --jobs`): throughput measured beside neighbours is
    /// only compared with throughput measured beside as many. 1 in runs that predate it.
    #[serde(default = "one_job")]
    pub jobs: usize,
    /// How fast this machine ran the reference workload, under the run's load
    /// ([`crate::speed`]); `None` in runs that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<crate::speed::SpeedIndex>,
}

fn one_job() -> usize {
    1
}

impl Provenance {
    /// The machine and its load, as the summary and the page state them: `2 CPUs`,
    /// `, 2 cases at once` when the run soaked several at a time, and the speed index.
    pub fn machine(&self) -> String {
        let mut text = match self.jobs {
            0 | 1 => format!("{} CPUs", self.cpus),
            jobs => format!("{} CPUs, {jobs} cases at once", self.cpus),
        };
        if let Some(speed) = &self.speed {
            text.push_str(&format!(", speed index {:.1}", speed.index));
        }
        text
    }
}

impl Provenance {
    /// Provenance for now on this host; `git_rev`, `rustc` and `libs` come from the caller.
    pub fn here(git_rev: String, rustc: String, libs: BTreeMap<String, String>) -> Self {
        let units = [
            ("leak_bytes_per_iter", "bytes/iteration"),
            ("leak_blocks_per_iter", "blocks/iteration"),
            ("late_bytes_per_iter", "bytes/iteration"),
            ("upstream_bytes_per_iter", "bytes/iteration"),
            ("upstream_slack_bytes_per_iter", "bytes/iteration"),
            ("residual_bytes_per_iter", "bytes/iteration"),
            ("peak_live_bytes", "bytes"),
            ("end_live_bytes", "bytes"),
            ("teardown_live_bytes", "bytes"),
            ("allocs_per_iter", "allocations/iteration"),
            ("alloc_bytes_per_iter", "bytes/iteration"),
            ("iters_per_s", "iterations/s"),
            ("frames_per_s", "frames/s"),
            ("bytes_per_s", "output bytes/s"),
            ("per_second.leak_bytes", "bytes/s"),
            ("per_second.leak_blocks", "blocks/s"),
            ("per_second.late_bytes", "bytes/s"),
            ("per_second.allocs", "allocations/s"),
            ("per_second.alloc_bytes", "bytes/s"),
            ("wall_s", "s"),
            ("cpu.program_s", "CPU s"),
            ("cpu.watcher_s", "CPU s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Provenance {
            git_rev,
            host: hostname(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rustc,
            libs,
            started_at: rfc3339_utc(std::time::SystemTime::now()),
            units,
            plan: None,
            selection: None,
            jobs: 1,
            speed: None,
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Where and with what.
    pub provenance: Provenance,
    /// One row per case.
    pub results: Vec<CaseResult>,
}

/// Errors writing a report; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A file or folder could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Report {
    /// A report with no results yet.
    pub fn new(provenance: Provenance) -> Self {
        Report {
            schema: SCHEMA.to_owned(),
            provenance,
            results: Vec::new(),
        }
    }

    /// What the run was, for a page's or a summary's title: `avsoak watch: ./camera 2000`
    /// for a watched program, `avsoak run <commit>` otherwise.
    pub fn title(&self) -> String {
        match self
            .provenance
            .selection
            .as_deref()
            .and_then(|s| s.strip_prefix("watch "))
        {
            Some(command) => format!("avsoak watch: {command}"),
            None => format!("avsoak run {}", self.provenance.git_rev),
        }
    }

    /// The libraries the run's code ran against, `name version` each: a watched
    /// program's own (from its module map), else the soak binary's.
    pub fn libraries(&self) -> String {
        let watched = self.results.iter().find(|r| !r.libraries.is_empty());
        let libs = watched.map_or(&self.provenance.libs, |r| &r.libraries);
        libs.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True when no outcome failed and at least one case passed (skipped cases count
    /// as neither).
    pub fn passed(&self) -> bool {
        self.results.iter().any(|r| r.outcome == Outcome::Pass)
            && self.results.iter().all(|r| r.outcome != Outcome::Fail)
    }

    /// How many results have `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// `12 of 14 cases passed, 2 skipped`: the one-line tally the summary and the runner
    /// print.
    pub fn tally(&self) -> String {
        let skipped = self.count(Outcome::Skip);
        let mut text = format!(
            "{} of {} cases passed",
            self.count(Outcome::Pass),
            self.results.len()
        );
        if skipped > 0 {
            text.push_str(&format!(", {skipped} skipped"));
        }
        text
    }
}
