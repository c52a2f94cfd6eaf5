//! The soak: every case in its own child process, samples after every iteration, a trend
//! and a verdict at the end.
//!
//! The child side ([`run_child`]) runs the workload, reads the live heap after each
//! iteration and writes one JSON message per line to its stdout, prefixed with
//! [`MESSAGE_PREFIX`] (anything else a codec prints there is ignored). The parent side
//! ([`supervise`]) reads those lines under a watchdog, and turns what it got — all of it,
//! or what arrived before a crash or a hang — into a [`CaseResult`]. A crash, hang, or
//! runaway heap in one child never touches another case's numbers, and the suite goes on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::heap::{self, Snapshot, Suspect};
use crate::report::{
    CaseResult, HeapFigures, ObjectFigures, Outcome, Sampling, Throughput, Verdict,
};
use crate::scenario::{Case, Expect, Loss, Scenario, Stuck, Work};
use crate::series::{Bucket, Series};
use crate::stats::{self, Budget, Trend};

/// Prefix of every protocol line a child writes to stdout.
pub const MESSAGE_PREFIX: &str = "@avsoak ";

/// Exit code of a child that refused to run or whose workload failed.
pub const EXIT_ERROR: i32 = 3;

/// Exit code of a child whose parent stopped listening (its stdout pipe broke): the
/// child stops instead of soaking on unheard.
pub const EXIT_ORPHANED: i32 = 4;

/// Judged iterations a plan must leave after warm-up.
pub const MIN_JUDGED: u64 = 2 * stats::MIN_POINTS as u64;

/// How long one case runs and what it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Iterations in all, warm-up included (with `duration`: the most to run).
    pub iterations: u64,
    /// Leading iterations whose memory is not judged (with `duration`: at least this
    /// many, and at least the first tenth of the duration).
    pub warmup: u64,
    /// Run for this long instead of a fixed count (and never fewer than `warmup` +
    /// [`MIN_JUDGED`] iterations).
    pub duration: Option<Duration>,
    /// Live heap bytes at which the child stops itself and reports `leak: cap reached`.
    pub heap_cap: u64,
    /// Suspect stacks to report.
    pub suspects: usize,
}

/// Errors in a plan's numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A zero duration.
    #[error("invalid duration 0s (expected a positive duration, e.g. 90s, 30m, 2h)")]
    ZeroDuration,
    /// Too few judged iterations for the statistics.
    #[error(
        "{iterations} iterations with {warmup} of warm-up leave {judged} to judge \
         (expected at least {min})"
    )]
    TooShort {
        /// Iterations asked for.
        iterations: u64,
        /// Warm-up asked for.
        warmup: u64,
        /// What is left.
        judged: u64,
        /// The minimum.
        min: u64,
    },
}

impl Plan {
    /// The default warm-up for `iterations`: max(20, 10 %).
    pub fn default_warmup(iterations: u64) -> u64 {
        (iterations / 10).max(20)
    }

    /// A plan of `iterations` with the default warm-up, a 2 GiB heap cap and 5 suspects.
    pub fn new(iterations: u64) -> Self {
        Plan {
            iterations,
            warmup: Self::default_warmup(iterations),
            heap_cap: 2 << 30,
            suspects: 5,
            duration: None,
        }
    }

    /// The plan in words, as reports record it: `120 iterations, 20 warm-up`, or
    /// `1800s, at least 20 warm-up`.
    pub fn describe(&self) -> String {
        match self.duration {
            None => format!("{} iterations, {} warm-up", self.iterations, self.warmup),
            Some(d) => format!("{}s, at least {} warm-up", d.as_secs(), self.warmup),
        }
    }

    /// Checks that enough iterations remain after warm-up to judge a trend.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.duration == Some(Duration::ZERO) {
            return Err(PlanError::ZeroDuration);
        }
        let judged = self.iterations.saturating_sub(self.warmup);
        if judged < MIN_JUDGED {
            return Err(PlanError::TooShort {
                iterations: self.iterations,
                warmup: self.warmup,
                judged,
                min: MIN_JUDGED,
            });
        }
        Ok(())
    }
}

/// One line of the child protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// The workload is built and the heap instrument checked.
    Start {
        /// Iterations planned.
        iterations: u64,
        /// Warm-up iterations.
        warmup: u64,
    },
    /// Warm-up is over: iterations from this one on are judged.
    Warmup {
        /// The first judged iteration.
        iterations: u64,
    },
    /// The heap after one iteration, and what the iteration itself cost.
    Sample(Sample),
    /// Live bytes passed the cap; the child stopped.
    Cap {
        /// Iteration after which the cap was passed.
        iteration: u64,
        /// Live bytes then.
        live_bytes: i64,
    },
    /// A thread of the workload did not stop within its bound ([`Stuck`]); the child
    /// left it running and stopped.
    Hang {
        /// The iteration that hung.
        iteration: u64,
        /// Which thread, where, for how long.
        message: String,
    },
    /// Setup or an iteration failed, or the instrument refused to judge.
    Error {
        /// The iteration that failed, if it was one.
        iteration: Option<u64>,
        /// The whole error chain.
        message: String,
    },
    /// The run ended normally.
    Done {
        /// Process-wide peak of live bytes.
        peak_live_bytes: i64,
        /// Live bytes at the end, workload still alive.
        end_live_bytes: i64,
        /// Live bytes after the workload was dropped.
        teardown_live_bytes: i64,
        /// Sampled stacks still live that were allocated after warm-up.
        suspects: Vec<Suspect>,
        /// Samples taken and dropped by the stack sampler.
        samples_taken: u64,
        /// Samples lost to a full table.
        samples_dropped: u64,
        /// Mean sampling interval in bytes (0: sampling off).
        sample_interval: u64,
    },
}

/// The heap after one iteration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Iteration number, from 0.
    pub i: u64,
    /// Live bytes after the iteration.
    pub live_bytes: i64,
    /// Live blocks after the iteration.
    pub live_blocks: i64,
    /// Allocations made during the iteration.
    pub allocs: u64,
    /// Bytes allocated during the iteration.
    pub alloc_bytes: u64,
    /// Frames handled.
    pub frames: u64,
    /// Bytes produced.
    pub bytes: u64,
    /// Wall-clock nanoseconds the iteration took.
    pub ns: u64,
    /// The workload's declared upstream loss so far
    /// ([`crate::scenario::Workload::known_loss`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub known: Loss,
    /// The workload's pipeline objects after the iteration
    /// ([`crate::scenario::Workload::gauges`]), read after the heap.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, i64>,
}

fn is_zero(loss: &Loss) -> bool {
    *loss == Loss::default()
}

struct Emitter<'a> {
    out: &'a mut dyn Write,
    line: Vec<u8>,
}

impl Emitter<'_> {
    /// Writes one message. Reuses its line buffer so steady-state sampling allocates
    /// nothing that the next iteration's counters could see. False when the parent is
    /// gone (Rust ignores SIGPIPE, so a broken pipe is an error here, not a signal).
    #[must_use]
    fn send(&mut self, message: &Message) -> bool {
        self.line.clear();
        self.line.extend_from_slice(MESSAGE_PREFIX.as_bytes());
        serde_json::to_writer(&mut self.line, message).expect("messages serialize");
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .and_then(|()| self.out.flush())
            .is_ok()
    }
}

/// An error and its sources, joined by `: ` (what a report's `error` field holds).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Runs `case` of `scenario` in this process according to `plan`, writing protocol lines
/// to `out`, and after a normal end the heap profile of the whole child to `profile` (DHAT
/// JSON, see [`crate::profile`]; taken after the last iteration, before the workload is
/// dropped) when given. Returns the process exit code. Meant for a
/// child process: the heap counters are process-wide, so nothing else may run in the
/// process meanwhile.
pub fn run_child(
    scenario: &dyn Scenario,
    case: &Case,
    plan: &Plan,
    out: &mut dyn Write,
    profile: Option<&std::path::Path>,
) -> i32 {
    run_workload(|| scenario.start(case), case, plan, out, profile)
}

/// [`run_child`] for a workload that `start` makes, rather than a registered scenario
/// (what [`crate::testing`] runs).
pub fn run_workload(
    start: impl FnOnce() -> Result<Box<dyn crate::scenario::Workload>, crate::scenario::BoxError>,
    case: &Case,
    plan: &Plan,
    out: &mut dyn Write,
    profile: Option<&std::path::Path>,
) -> i32 {
    let child_started = Instant::now();
    disable_core_dumps();
    let mut emit = Emitter {
        out,
        line: Vec::with_capacity(4096),
    };
    // Sends a message; leaves with EXIT_ORPHANED when nobody listens any more.
    macro_rules! send {
        ($message:expr) => {
            if !emit.send(&$message) {
                return EXIT_ORPHANED;
            }
        };
    }
    if let Err(refusal) = heap::check() {
        send!(Message::Error {
            iteration: None,
            message: refusal.to_string()
        });
        return EXIT_ERROR;
    }
    heap::set_epoch(0);
    let mut workload = match start() {
        Ok(w) => w,
        Err(e) => {
            send!(Message::Error {
                iteration: None,
                message: error_chain(e.as_ref())
            });
            return EXIT_ERROR;
        }
    };
    send!(Message::Start {
        iterations: plan.iterations,
        warmup: plan.warmup
    });
    let soak_started = Instant::now();
    let mut warmup_end: Option<u64> = None;
    let mut i = 0;
    while i < plan.iterations {
        let elapsed = soak_started.elapsed();
        if warmup_end.is_none()
            && i >= plan.warmup
            && plan.duration.is_none_or(|d| elapsed >= d / 10)
        {
            warmup_end = Some(i);
            send!(Message::Warmup { iterations: i });
        }
        if let (Some(duration), Some(judged_from)) = (plan.duration, warmup_end) {
            if elapsed >= duration && i >= judged_from + MIN_JUDGED {
                break;
            }
        }
        heap::set_epoch(i);
        let before = Snapshot::now();
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| workload.iterate()))
            .unwrap_or_else(|panic| {
                Err(format!("panicked: {}", panic_message(panic.as_ref())).into())
            });
        let ns = started.elapsed().as_nanos() as u64;
        let after = Snapshot::now();
        let work: Work = match result {
            Ok(work) => work,
            Err(e) => {
                if Stuck::find(e.as_ref()).is_some() {
                    send!(Message::Hang {
                        iteration: i,
                        message: error_chain(e.as_ref()),
                    });
                    // Dropping the workload would wait on the stuck thread again, maybe
                    // for ever; the process ends right after this, taking it along.
                    std::mem::forget(workload);
                    return EXIT_ERROR;
                }
                send!(Message::Error {
                    iteration: Some(i),
                    message: error_chain(e.as_ref())
                });
                return EXIT_ERROR;
            }
        };
        let delta = after.since(&before);
        send!(Message::Sample(Sample {
            i,
            live_bytes: after.live_bytes,
            live_blocks: after.live_blocks,
            allocs: delta.allocs,
            alloc_bytes: delta.bytes_allocated,
            frames: work.frames,
            bytes: work.bytes,
            ns,
            known: workload.known_loss(),
            gauges: workload
                .gauges()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }));
        if after.live_bytes > 0 && after.live_bytes as u64 > plan.heap_cap {
            send!(Message::Cap {
                iteration: i,
                live_bytes: after.live_bytes
            });
            return 0;
        }
        i += 1;
    }
    let end = Snapshot::now();
    heap::set_epoch(i);
    let live = heap::live_samples(warmup_end.unwrap_or(plan.warmup));
    let raw_profile = profile.map(|_| crate::profile::RawProfile::now());
    drop(workload);
    let teardown = Snapshot::now();
    let suspects = live.suspects(plan.suspects);
    let (samples_taken, samples_dropped) = sampling_counts();
    send!(Message::Done {
        peak_live_bytes: end.peak_live_bytes,
        end_live_bytes: end.live_bytes,
        teardown_live_bytes: teardown.live_bytes,
        suspects,
        samples_taken,
        samples_dropped,
        sample_interval: heap::sample_interval(),
    });
    if let (Some(path), Some(raw)) = (profile, raw_profile) {
        let cmd = format!("avsoak-run child --case {}", case.id());
        if let Err(e) =
            raw.symbolize()
                .write_dhat(path, &cmd, std::process::id(), child_started.elapsed())
        {
            // The verdict stands without a profile; say why it is missing.
            eprintln!(
                "avsoak: cannot write the heap profile {}: {e}",
                path.display()
            );
        }
    }
    0
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

fn sampling_counts() -> (u64, u64) {
    #[cfg(feature = "hooks")]
    {
        let s = avsoak_hooks::sampling_stats();
        (s.taken, s.dropped)
    }
    #[cfg(not(feature = "hooks"))]
    (0, 0)
}

/// A crashing child should die fast, not write a core file of a leaked heap.
fn disable_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; lowering RLIMIT_CORE needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}

/// Wall-clock limits on one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// Longest silence (no protocol line) before the child is declared hung.
    pub stall: Duration,
    /// Longest run in all.
    pub total: Duration,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            stall: Duration::from_secs(60),
            total: Duration::from_secs(900),
        }
    }
}

/// What the parent collected from one child: bounded however long the child runs.
#[derive(Debug, Default)]
struct Collected {
    /// Warm-up iterations.
    warm: Series,
    /// Judged iterations (buckets never straddle the end of warm-up).
    judged: Series,
    /// Sums over the judged iterations.
    totals: Totals,
    /// Where judging starts until the child says (a fixed plan's warm-up; none for a
    /// timed one, whose warm-up the child decides).
    planned_warmup: Option<u64>,
    started: bool,
    warmup: Option<u64>,
    cap: Option<(u64, i64)>,
    error: Option<String>,
    done: Option<Message>,
    hang: Option<String>,
    status: Option<ExitStatus>,
    stderr_tail: String,
}

/// Sums over judged iterations, for the per-iteration means and the throughput.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    ns: u64,
    frames: u64,
    bytes: u64,
    allocs: u64,
    alloc_bytes: u64,
}

impl Collected {
    fn add(&mut self, sample: &Sample) {
        if self
            .warmup
            .or(self.planned_warmup)
            .is_some_and(|w| sample.i >= w)
        {
            let t = &mut self.totals;
            t.ns += sample.ns;
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

enum Event {
    Line(Message),
    Eof,
}

/// Runs one case in the child started by `command` (which must end up calling
/// [`run_child`]), under `watchdog`; `progress` is told each iteration reached.
pub fn supervise(
    mut command: Command,
    case: &Case,
    plan: &Plan,
    watchdog: Watchdog,
    progress: &mut dyn FnMut(u64),
) -> CaseResult {
    use std::os::unix::process::CommandExt;

    let started = Instant::now();
    // Its own process group, so the watchdog can stop the child together with anything it
    // started (a helper holding our pipes open would otherwise keep the readers waiting).
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let collected = Collected {
                error: Some(format!(
                    "cannot start child {:?}: {e}",
                    command.get_program()
                )),
                ..Collected::default()
            };
            return conclude(case, plan, collected, started.elapsed());
        }
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(json) = line.strip_prefix(MESSAGE_PREFIX) {
                if let Ok(message) = serde_json::from_str::<Message>(json) {
                    if tx.send(Event::Line(message)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof);
    });
    let stderr_reader = std::thread::spawn(move || tail_of(stderr, 8 * 1024));

    let mut collected = Collected {
        planned_warmup: plan.duration.is_none().then_some(plan.warmup),
        ..Collected::default()
    };
    let mut last_heard = Instant::now();
    loop {
        let now = Instant::now();
        let stall_left = watchdog.stall.saturating_sub(now - last_heard);
        let total_left = watchdog.total.saturating_sub(now - started);
        let wait = stall_left.min(total_left);
        match rx.recv_timeout(wait) {
            Ok(Event::Line(message)) => {
                last_heard = Instant::now();
                match message {
                    Message::Start { .. } => collected.started = true,
                    Message::Warmup { iterations } => collected.warmup = Some(iterations),
                    Message::Sample(sample) => {
                        progress(sample.i + 1);
                        collected.add(&sample);
                    }
                    Message::Cap {
                        iteration,
                        live_bytes,
                    } => collected.cap = Some((iteration, live_bytes)),
                    Message::Hang { iteration, message } => {
                        collected.hang = Some(format!("iteration {iteration}: {message}"))
                    }
                    Message::Error { iteration, message } => {
                        collected.error = Some(match iteration {
                            Some(i) => format!("iteration {i}: {message}"),
                            None => message,
                        })
                    }
                    done @ Message::Done { .. } => collected.done = Some(done),
                }
            }
            Ok(Event::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let why = if Instant::now() - started >= watchdog.total {
                    format!("ran past the {}s limit", watchdog.total.as_secs())
                } else {
                    format!("no progress for {}s", watchdog.stall.as_secs())
                };
                collected.hang = Some(format!("{why} {}", collected.progress(plan)));
                kill_group(child.id());
                break;
            }
        }
    }
    collected.status = child.wait().ok();
    // Whatever the child left running in its group goes with it.
    kill_group(child.id());
    let _ = reader.join();
    collected.stderr_tail = stderr_reader.join().unwrap_or_default();
    conclude(case, plan, collected, started.elapsed())
}

fn kill_group(pid: u32) {
    // SAFETY: signals the process group led by our own child (its pgid is its pid, set
    // by `process_group(0)`); ESRCH when the group is already gone is harmless.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}

impl Collected {
    /// The latest bucket: the one that holds the last iteration reported.
    fn latest(&self) -> Option<&Bucket> {
        self.judged.buckets().last().or(self.warm.buckets().last())
    }

    /// Iterations the child completed.
    fn reached(&self) -> u64 {
        self.latest().map_or(0, |b| b.last() + 1)
    }

    /// Where the child had got to, for messages: `during set-up`, or `after N of M
    /// iterations` (`after N iterations` for a timed soak).
    fn progress(&self, plan: &Plan) -> String {
        let reached = self.reached();
        match (self.started, plan.duration) {
            (false, _) => "during set-up".to_owned(),
            (true, None) => format!("after {reached} of {} iterations", plan.iterations),
            (true, Some(_)) => format!("after {reached} iterations"),
        }
    }
}

fn tail_of(mut stream: impl Read, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// The conventional name of a signal number.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        other => return format!("signal {other}"),
    };
    name.to_owned()
}

/// The last line of `text` that is not blank, trimmed: what a log's end says.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

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
fn conclude(case: &Case, plan: &Plan, c: Collected, wall: Duration) -> CaseResult {
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
        }) => (
            *peak_live_bytes,
            *end_live_bytes,
            Some(*teardown_live_bytes),
            suspects.clone(),
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
    let heap = HeapFigures {
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
    };

    let signal = c.status.and_then(|s| s.signal());
    let stderr_hint = last_line(&c.stderr_tail)
        .map(|l| format!(" (stderr: {l})"))
        .unwrap_or_default();
    let reached = c.reached();
    let (verdict, error) = if let Some(signal) = signal.filter(|_| c.hang.is_none()) {
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
