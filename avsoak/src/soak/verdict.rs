//! From what a child sent to a case's verdict and figures.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Plan;
use crate::fmt::{last_line, signal_name};
use crate::protocol::Message;
use crate::protocol::Sample;
use crate::report::{
    CaseResult, Fit, HeapFigures, ObjectFigures, Onset, Outcome, Sampling, Throughput, Verdict,
};
use crate::scenario::{Case, Expect, Loss};
use crate::series::Bucket;
use crate::series::Series;
use crate::stats::{self, Budget, Trend};
use std::process::ExitStatus;

/// The declared loss per iteration as the note quotes it: `1176 B/iteration`, or
/// `1176–1208 B/iteration` when the allocator may add a slack.
fn upstream_range(bytes: f64, slack: f64) -> String {
    if slack.round() > 0.0 {
        format!("{}–{} B/iteration", bytes.round(), (bytes + slack).round())
    } else {
        format!("{} B/iteration", bytes.round())
    }
}

/// Judges live bytes and blocks over judged buckets of `width` iterations: `value` gives
/// a bucket's (bytes, blocks) after its last iteration. The budgets are per iteration, so
/// they scale to the width, and the slopes come back per iteration (with width 1 this is
/// [`stats::judge`] on every iteration).
fn judge_buckets(
    buckets: &[Bucket],
    width: u64,
    value: impl Fn(&Bucket) -> (f64, f64),
) -> stats::HeapJudgement {
    let (bytes, blocks): (Vec<f64>, Vec<f64>) = buckets.iter().map(value).unzip();
    let w = width as f64;
    let scaled = |budget: Budget| Budget {
        per_iter: budget.per_iter * w,
        ..budget
    };
    let mut judgement = stats::judge(
        &bytes,
        &blocks,
        &scaled(Budget::bytes()),
        &scaled(Budget::blocks()),
    );
    for series in [&mut judgement.bytes, &mut judgement.blocks] {
        series.slope /= w;
        series.late_slope /= w;
    }
    judgement
}

/// Turns what a child delivered into a verdict. Worst first: crash, hang, error, cap,
/// then the trend of the judged window.
pub(super) fn conclude(case: &Case, plan: &Plan, c: Collected, wall: Duration) -> CaseResult {
    use std::os::unix::process::ExitStatusExt;

    let warmup = c.warmup.unwrap_or(plan.warmup);
    let judged = c.judged.buckets();
    let width = c.judged.width();
    let judgement = judge_buckets(judged, width, |b| {
        (b.live_bytes.last as f64, b.live_blocks.last as f64)
    });
    // The same series without the upstream loss the case declares (none undeclared): what
    // the case itself grows by.
    let known = |b: &Bucket| match case.upstream {
        Some(_) => b.known,
        None => Loss::default(),
    };
    // The most the declared loss can account for is taken off, slack included: a residual
    // that falls when the allocator placed the blocks tightly is never judged a leak,
    // while one that rises when it placed them loosely would be.
    let residual = judge_buckets(judged, width, |b| {
        let known = known(b);
        (
            (b.live_bytes.last - known.bytes - known.slack) as f64,
            (b.live_blocks.last - known.blocks) as f64,
        )
    });
    let (known_per_iter, known_slack_per_iter) = match (judged.first(), judged.last()) {
        (Some(first), Some(last)) if last.last() > first.last() => {
            let iterations = (last.last() - first.last()) as f64;
            let (first, last) = (known(first), known(last));
            (
                (last.bytes - first.bytes) as f64 / iterations,
                (last.slack - first.slack) as f64 / iterations,
            )
        }
        _ => (0.0, 0.0),
    };

    let t = c.totals;
    let iterations: u64 = judged.iter().map(|b| b.count).sum();
    let n = iterations.max(1) as f64;
    let seconds = t.ns as f64 / 1e9;
    let per_second = |total: f64| if seconds > 0.0 { total / seconds } else { 0.0 };
    let throughput = Throughput {
        iters_per_s: per_second(iterations as f64),
        frames_per_s: per_second(t.frames as f64),
        bytes_per_s: per_second(t.bytes as f64),
        cpu_ms_per_iter: if iterations > 0 {
            t.cpu_ns as f64 / 1e6 / n
        } else {
            0.0
        },
    };

    let (peak, end, teardown, suspects, sampling) = match &c.done {
        Some(Message::Done {
            peak_live_bytes,
            end_live_bytes,
            teardown_live_bytes,
            suspects,
            samples_taken,
            samples_dropped,
            sample_interval,
            ..
        }) => (
            *peak_live_bytes,
            *end_live_bytes,
            Some(*teardown_live_bytes),
            suspects
                .iter()
                .map(|s| s.clone().with_share(judgement.bytes.slope))
                .collect(),
            Some(Sampling {
                interval_bytes: *sample_interval,
                taken: *samples_taken,
                dropped: *samples_dropped,
            }),
        ),
        _ => {
            let last = c.latest().map_or(0, |b| b.live_bytes.last);
            let peak = c
                .warm
                .buckets()
                .iter()
                .chain(judged)
                .map(|b| b.live_bytes.max)
                .max()
                .unwrap_or(0);
            (peak, last, None, Vec::new(), None)
        }
    };
    // The fitted lines the page draws: the judged slope through the judged buckets' ends.
    let fit = |slope: f64, value: fn(&Bucket) -> i64| {
        let (first, last) = (judged.first()?, judged.last()?);
        let residuals: Vec<f64> = judged
            .iter()
            .map(|b| value(b) as f64 - slope * b.last() as f64)
            .collect();
        Some(Fit {
            from: first.last(),
            to: last.last(),
            intercept: stats::median_of(&residuals),
            slope,
        })
    };
    let heap = HeapFigures {
        fit_bytes: fit(judgement.bytes.slope, |b| b.live_bytes.last),
        fit_blocks: fit(judgement.blocks.slope, |b| b.live_blocks.last),
        leak_bytes_per_iter: judgement.bytes.slope,
        leak_blocks_per_iter: judgement.blocks.slope,
        trend_p: judgement.bytes.p,
        trend_blocks_p: judgement.blocks.p,
        late_bytes_per_iter: judgement.bytes.late_slope,
        upstream_bytes_per_iter: known_per_iter,
        upstream_slack_bytes_per_iter: known_slack_per_iter,
        residual_bytes_per_iter: residual.bytes.slope,
        peak_live_bytes: peak,
        end_live_bytes: end,
        teardown_live_bytes: teardown,
        allocs_per_iter: t.allocs as f64 / n,
        alloc_bytes_per_iter: t.alloc_bytes as f64 / n,
        onset: None,
        per_second: None,
    };

    let signal = c.status.and_then(|s| s.signal());
    let stderr_hint = last_line(&c.stderr_tail)
        .map(|l| format!(" (stderr: {l})"))
        .unwrap_or_default();
    let reached = c.reached();
    let (verdict, error) = if let Some(why) = c.interrupted {
        // Before the crash: the runner's own kill is what ended the child.
        (Verdict::Interrupted, Some(why))
    } else if let Some(signal) = signal.filter(|_| c.hang.is_none()) {
        (
            Verdict::Crash,
            Some(format!(
                "killed by {} {}{stderr_hint}",
                signal_name(signal),
                c.progress(plan)
            )),
        )
    } else if let Some(hang) = c.hang {
        (Verdict::Hang, Some(hang))
    } else if let Some(error) = c.error {
        (Verdict::Error, Some(error))
    } else if let Some((iteration, live)) = c.cap {
        (
            Verdict::Leak,
            Some(format!(
                "leak: cap reached ({live} live bytes > cap {} at iteration {iteration})",
                plan.heap_cap
            )),
        )
    } else if c.done.is_none() {
        let code = c.status.and_then(|s| s.code());
        (
            Verdict::Error,
            Some(format!(
                "child ended without a result (exit code {}) {}{stderr_hint}",
                code.map_or("none".into(), |c| c.to_string()),
                c.progress(plan)
            )),
        )
    } else {
        let verdict = match (judgement.trend, residual.trend) {
            (Trend::Flat, _) => Verdict::Clean,
            // The residual differs from the raw series only by the declared loss, so a
            // flat residual under a rising series is that loss.
            (_, Trend::Flat) => Verdict::Upstream,
            (_, Trend::Bounded) => Verdict::Bounded,
            (_, Trend::Growing) => Verdict::Leak,
        };
        (verdict, None)
    };
    let onset = (verdict == Verdict::Leak)
        .then(|| {
            let bytes: Vec<f64> = judged.iter().map(|b| b.live_bytes.last as f64).collect();
            let found = stats::onset(&bytes)?;
            Some(Onset {
                iteration: judged[found.index].last(),
                bytes_per_iter: found.slope / width as f64,
            })
        })
        .flatten();
    let heap = HeapFigures { onset, ..heap };
    let note = match verdict {
        Verdict::Upstream => Some(format!(
            "upstream: {}, all of the growth, is a declared library leak: {}",
            upstream_range(known_per_iter, known_slack_per_iter),
            case.upstream.as_deref().unwrap_or_default()
        )),
        _ => None,
    };
    let outcome = if matches!(
        (case.expect, verdict),
        (
            Expect::Clean,
            Verdict::Clean | Verdict::Bounded | Verdict::Upstream
        ) | (Expect::Leak, Verdict::Leak)
            | (Expect::Crash, Verdict::Crash)
            | (Expect::Hang, Verdict::Hang)
    ) {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    let series: Vec<Bucket> = c
        .warm
        .into_buckets()
        .into_iter()
        .chain(c.judged.into_buckets())
        .collect();
    let mut objects: BTreeMap<String, ObjectFigures> = BTreeMap::new();
    for bucket in &series {
        for (name, span) in &bucket.gauges {
            let figures = objects.entry(name.clone()).or_insert(ObjectFigures {
                end: span.last,
                max: span.max,
            });
            figures.end = span.last;
            figures.max = figures.max.max(span.max);
        }
    }
    CaseResult {
        iterations: reached,
        warmup_iterations: warmup.min(reached),
        heap,
        throughput,
        objects,
        suspects,
        sampling,
        error,
        note,
        wall_s: wall.as_secs_f64(),
        series,
        ..CaseResult::for_case(case, verdict, outcome)
    }
}

/// What the parent collected from one child: bounded however long the child runs.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Warm-up iterations.
    pub(super) warm: Series,
    /// Judged iterations (buckets never straddle the end of warm-up).
    pub(super) judged: Series,
    /// Sums over the judged iterations.
    pub(super) totals: Totals,
    /// Where judging starts until the child says (a fixed plan's warm-up; none for a
    /// timed one, whose warm-up the child decides).
    pub(super) planned_warmup: Option<u64>,
    pub(super) started: bool,
    pub(super) warmup: Option<u64>,
    pub(super) cap: Option<(u64, i64)>,
    pub(super) error: Option<String>,
    pub(super) done: Option<Message>,
    pub(super) hang: Option<String>,
    /// The run was interrupted while this child ran (by what, and where).
    pub(super) interrupted: Option<String>,
    pub(super) status: Option<ExitStatus>,
    pub(super) stderr_tail: String,
}

/// Sums over judged iterations, for the per-iteration means and the throughput.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    pub(super) ns: u64,
    pub(super) cpu_ns: u64,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) allocs: u64,
    pub(super) alloc_bytes: u64,
}

impl Collected {
    pub(super) fn add(&mut self, sample: &Sample) {
        if self
            .warmup
            .or(self.planned_warmup)
            .is_some_and(|w| sample.i >= w)
        {
            let t = &mut self.totals;
            t.ns += sample.ns;
            t.cpu_ns += sample.cpu_ns;
            t.frames += sample.frames;
            t.bytes += sample.bytes;
            t.allocs += sample.allocs;
            t.alloc_bytes += sample.alloc_bytes;
            self.judged.push(sample);
        } else {
            self.warm.push(sample);
        }
    }
}

impl Collected {
    /// The latest bucket: the one that holds the last iteration reported.
    pub(super) fn latest(&self) -> Option<&Bucket> {
        self.judged.buckets().last().or(self.warm.buckets().last())
    }

    /// Iterations the child completed.
    pub(super) fn reached(&self) -> u64 {
        self.latest().map_or(0, |b| b.last() + 1)
    }

    /// Where the child had got to, for messages: `during set-up`, or `after N of M
    /// iterations` (`after N iterations` for a timed soak).
    pub(super) fn progress(&self, plan: &Plan) -> String {
        let reached = self.reached();
        match (self.started, plan.duration) {
            (false, _) => "during set-up".to_owned(),
            (true, None) => format!("after {reached} of {} iterations", plan.iterations),
            (true, Some(_)) => format!("after {reached} iterations"),
        }
    }
}
