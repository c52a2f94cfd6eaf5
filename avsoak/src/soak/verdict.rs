//! From what a child sent to a case's verdict and figures.

use std::collections::BTreeMap;
use std::time::Duration;

use super::transport::Collected;
use super::{Plan, MIN_JUDGED};
use crate::fmt::{last_line, signal_name};
use crate::protocol::Message;
use crate::report::{
    CaseResult, Fit, HeapFigures, ObjectFigures, Onset, Outcome, PerSecond, ResourceFigures,
    ResourceTrend, Sampling, Throughput, Verdict,
};
use crate::resources::Origin;
use crate::scenario::{Case, Expect, Loss};
use crate::series::{Bucket, ResourceSpans, Span};
use crate::stats::{self, Budget, Trend};

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

/// Descriptors and threads: a leak is one a judged iteration, against a floor of 8 over
/// the window (the live blocks' budget).
fn count_budget() -> Budget {
    Budget::blocks()
}

/// Resident growth beyond the heap's and the mappings' that a note reports: 128 KiB an
/// iteration. Below it, resident memory moves with what is no leak of its own: pages the
/// allocator keeps (a threaded encoder's per-thread arenas fill as its threads take
/// turns), and those a heap leak drags along. Across two quick soaks that read up to
/// 81 KiB an iteration in a clean case (libheif's x265, in one of them; 2.6 KiB in the
/// other) and up to 58 KiB in the leaks.
const RSS_NOTE_BYTES_PER_ITER: f64 = 128.0 * 1024.0;

/// Resident memory's trend: a page an iteration, against a floor of 1 MiB over the
/// window (resident memory moves by pages).
fn rss_budget() -> Budget {
    Budget {
        per_iter: 4096.0,
        min_growth: (1 << 20) as f64,
        ..Budget::bytes()
    }
}

/// The process's resources over the judged window, each judged as live heap bytes are;
/// `None` unless every judged bucket has them. `heap_slope` is live heap bytes' slope,
/// which resident memory's is compared with.
fn judge_resources(c: &Collected, heap_slope: f64) -> Option<ResourceFigures> {
    let judged = c.judged.buckets();
    let spans: Vec<ResourceSpans> = judged.iter().map(|b| b.resources).collect::<Option<_>>()?;
    if spans.is_empty() {
        return None;
    }
    let width = c.judged.width() as f64;
    let all = || {
        c.warm
            .buckets()
            .iter()
            .chain(judged)
            .filter_map(|b| b.resources)
    };
    let trend = |value: fn(&ResourceSpans) -> Span, budget: Budget| {
        let y: Vec<f64> = spans.iter().map(|s| value(s).last as f64).collect();
        let judgement = stats::judge_series(
            &y,
            &Budget {
                per_iter: budget.per_iter * width,
                ..budget
            },
        );
        ResourceTrend {
            per_iter: judgement.slope / width,
            p: judgement.p,
            trend: judgement.trend,
            end: spans.last().map_or(0, |s| value(s).last),
            max: all().map(|s| value(&s).max).max().unwrap_or(0),
        }
    };
    let rss_bytes = trend(|s| s.rss_bytes, rss_budget());
    let mapped_bytes = trend(|s| s.mapped_bytes, Budget::bytes());
    let rss_unexplained_bytes_per_iter = match rss_bytes.trend {
        Trend::Flat => 0.0,
        _ => rss_bytes.per_iter - heap_slope.max(0.0) - mapped_bytes.per_iter.max(0.0),
    };
    Some(ResourceFigures {
        fds: trend(|s| s.fds, count_budget()),
        threads: trend(|s| s.threads, count_budget()),
        unjoined: trend(|s| s.unjoined, count_budget()),
        mapped_bytes,
        rss_bytes,
        rss_unexplained_bytes_per_iter,
    })
}

/// What the resources add to a result's note: the descriptors or threads that leak,
/// resident memory that grows beyond the heap, or that none of them could be counted
/// (never a silent `clean`).
fn resource_notes(
    resources: Option<&ResourceFigures>,
    origins: &[Origin],
    nothing_judged: bool,
) -> Vec<String> {
    let Some(r) = resources else {
        return if nothing_judged {
            Vec::new()
        } else {
            vec![
                "descriptors, threads and resident memory were not counted: /proc/self \
                  could not be read"
                    .to_owned(),
            ]
        };
    };
    let mut notes: Vec<String> = r.leaks_with(origins);
    if r.rss_unexplained_bytes_per_iter >= RSS_NOTE_BYTES_PER_ITER {
        notes.push(format!(
            "resident memory grows {}/iteration, {}/iteration beyond the heap and the \
             mappings: memory no hook sees (raw system calls, a driver's or a device's \
             memory, thread stacks, pages the allocator keeps)",
            crate::fmt::human_bytes(r.rss_bytes.per_iter),
            crate::fmt::human_bytes(r.rss_unexplained_bytes_per_iter)
        ));
    }
    notes
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

    let (peak, end, teardown, suspects, sampling, origins) = match &c.done {
        Some(Message::Done {
            peak_live_bytes,
            end_live_bytes,
            teardown_live_bytes,
            suspects,
            samples_taken,
            samples_dropped,
            sample_interval,
            origins,
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
            origins.clone(),
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
            (peak, last, None, Vec::new(), None, Vec::new())
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
    let resources = judge_resources(&c, judgement.bytes.slope);
    // The heap's own verdict, for a child that finished.
    let heap_verdict = match (judgement.trend, residual.trend) {
        (Trend::Flat, _) => Verdict::Clean,
        // The residual differs from the raw series only by the declared loss, so a flat
        // residual under a rising series is that loss.
        (_, Trend::Flat) => Verdict::Upstream,
        (_, Trend::Bounded) => Verdict::Bounded,
        (_, Trend::Growing) => Verdict::Leak,
    };
    let heap = HeapFigures {
        fit_bytes: fit(judgement.bytes.slope, |b| b.live_bytes.last),
        fit_blocks: fit(judgement.blocks.slope, |b| b.live_blocks.last),
        leak_bytes_per_iter: judgement.bytes.slope,
        leak_blocks_per_iter: judgement.blocks.slope,
        grows: c.cap.is_some() || heap_verdict == Verdict::Leak,
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
        // Descriptors and threads are judged as the heap is: either growing is a leak.
        let verdict = match &resources {
            Some(r) if !r.leaks().is_empty() => Verdict::Leak,
            Some(r) if r.bounded() && heap_verdict == Verdict::Clean => Verdict::Bounded,
            _ => heap_verdict,
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
    let mut notes: Vec<String> = Vec::new();
    if verdict == Verdict::Upstream {
        notes.push(format!(
            "upstream: {}, all of the growth, is a declared library leak: {}",
            upstream_range(known_per_iter, known_slack_per_iter),
            case.upstream.as_deref().unwrap_or_default()
        ));
    }
    notes.extend(resource_notes(
        resources.as_ref(),
        &origins,
        judged.is_empty(),
    ));
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    let outcome = if verdict.meets(case.expect) {
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
        resources,
        origins,
        series,
        ..CaseResult::for_case(case, verdict, outcome)
    }
}

/// A time-mode tick sized to a program that ran for `wall`: a hundredth of it, between 2
/// and 100 ms, so that a run of the same length leaves about ninety judged ticks after
/// ten of warm-up.
pub fn tick_for(wall: Duration) -> Duration {
    (wall / 100).clamp(Duration::from_millis(2), Duration::from_millis(100))
}

/// The options that watch a program in time mode at `tick`, with ten ticks of warm-up:
/// `--every 9ms --warmup 90ms`.
pub fn sized_flags(tick: Duration) -> String {
    let ms = tick.as_millis();
    format!("--every {ms}ms --warmup {}ms", 10 * ms)
}

/// How a watched result's error begins when its window was too short to judge.
pub(crate) const TOO_SHORT: &str = "too short to judge";

/// How a watched program ended, for the rules a soak's child never needs: its plan
/// comes from the program, not from avsoak.
#[derive(Debug, Clone)]
pub(super) struct Watched {
    /// Time mode's tick; `None` is marker mode.
    pub(super) every: Option<Duration>,
    /// How the program ended, for the note (`exited with status 0`, `stopped after
    /// --duration 10s by SIGTERM`).
    pub(super) ended: String,
    /// Its own exit status, when it exited by itself (not stopped by the watcher).
    pub(super) exit_code: Option<i32>,
}

/// [`conclude`] for a watched program, then the watch's own rules:
/// - a non-zero exit status turns a judged verdict (`leak` included) into `error`: the
///   program failed, and what it did before failing is not what it does;
/// - fewer than [`MIN_JUDGED`] judged points turn `clean`, `bounded` or `upstream` into
///   `error` that says what to change (a soak's plan always leaves that many; a watched
///   program ends when it likes, and a window that short can never be judged growing); a
///   leak found on fewer (the cap, or a trend already significant) stands;
/// - time mode adds the figures per second, and the note says the mode and the end.
pub(super) fn conclude_watched(
    case: &Case,
    plan: &Plan,
    c: Collected,
    wall: Duration,
    watched: &Watched,
) -> CaseResult {
    let mut result = conclude(case, plan, c, wall);
    let judged_verdict = matches!(
        result.verdict,
        Verdict::Clean | Verdict::Bounded | Verdict::Upstream | Verdict::Leak
    );
    if let Some(code) = watched.exit_code.filter(|&c| c != 0 && judged_verdict) {
        result.verdict = Verdict::Error;
        result.outcome = Outcome::Fail;
        result.error = Some(format!("the program exited with status {code}"));
    }
    let judged = result.iterations.saturating_sub(result.warmup_iterations);
    if judged < MIN_JUDGED && result.verdict.meets(Expect::Clean) {
        let (unit, shorten) = match watched.every {
            None => ("iterations".to_owned(), "--warmup"),
            Some(every) => (
                format!("ticks of {} ms", every.as_millis()),
                "--warmup or --every",
            ),
        };
        result.verdict = Verdict::Error;
        result.outcome = Outcome::Fail;
        // What to change, exactly: the flags for a run of this length, or the warm-up
        // that leaves enough judged.
        let hint = match watched.every {
            Some(_) => format!(
                "for a run of {:.2} s: {}",
                wall.as_secs_f64(),
                sized_flags(tick_for(wall))
            ),
            None if result.iterations > MIN_JUDGED => format!(
                "--warmup {} leaves {MIN_JUDGED} judged",
                result.iterations - MIN_JUDGED
            ),
            None => format!(
                "run at least {} iterations ({} of them warm-up), or watch in time mode with \
                 --every",
                plan.warmup + MIN_JUDGED,
                plan.warmup
            ),
        };
        result.error = Some(format!(
            "{TOO_SHORT}: the program ended after {} {unit}, {} of them warm-up, \
             leaving {judged} judged (expected at least {MIN_JUDGED}); run it longer or \
             shorten {shorten} ({hint})",
            result.iterations, result.warmup_iterations
        ));
    }
    let mode = match watched.every {
        None => "marker mode: one iteration per avsoak_iteration() call".to_owned(),
        Some(every) => {
            result.heap.per_second = Some(PerSecond::at_tick(&result.heap, every));
            format!(
                "time mode: one iteration per {} ms tick, the figures per second beside",
                every.as_millis()
            )
        }
    };
    result.note = Some(match result.note.take() {
        Some(note) => format!("{note}; {mode}; the program {}", watched.ended),
        None => format!("{mode}; the program {}", watched.ended),
    });
    result
}
