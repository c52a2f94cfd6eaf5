//! The child side: runs the workload, reads the heap after each iteration, reports.

use std::io::Write;
use std::time::Instant;

use super::{Plan, MIN_JUDGED};
use crate::heap::{self, Snapshot};
use crate::protocol::{Emitter, Message, Sample, EXIT_ERROR, EXIT_ORPHANED};
use crate::scenario::{Case, Scenario, Stuck, Work};

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

/// The environment variable that plants a leak in every case a child soaks: bytes per
/// iteration, allocated in [`planted_leak`] at the end of each iteration and never
/// freed; `BYTES@N` starts it at iteration N. The instrument's own positive control:
/// with it, a case that is clean must come out `leak`, which shows what its soak can
/// detect (a test plants 64 B in a cheap clean case of the quick soak), and a late one
/// must show its onset.
pub const PLANT_LEAK_ENV: &str = "AVSOAK_PLANT_LEAK";

/// The planted leak from [`PLANT_LEAK_ENV`]: bytes per iteration and the first
/// iteration; `None` when unset, an error naming the value when it is not a positive
/// byte count, optionally followed by `@` and an iteration.
fn planted_bytes() -> Result<Option<(usize, u64)>, String> {
    let Some(value) = std::env::var_os(PLANT_LEAK_ENV) else {
        return Ok(None);
    };
    let parsed = value.to_str().and_then(|v| {
        let (bytes, from) = v.split_once('@').unwrap_or((v, "0"));
        Some((bytes.parse::<usize>().ok()?, from.parse::<u64>().ok()?))
    });
    match parsed {
        Some((bytes, from)) if bytes > 0 => Ok(Some((bytes, from))),
        _ => Err(format!(
            "invalid {PLANT_LEAK_ENV}={value:?} (expected a positive number of bytes to leak \
             per iteration, optionally @ the first iteration: 64 or 4096@70)"
        )),
    }
}

/// Leaks `bytes` on purpose: the frame a suspect of the planted leak names.
#[inline(never)]
pub fn planted_leak(bytes: usize) {
    std::hint::black_box(Box::leak(vec![0x5a_u8; bytes].into_boxed_slice()));
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
    let planted = match planted_bytes() {
        Ok(planted) => planted,
        Err(message) => {
            send!(Message::Error {
                iteration: None,
                message
            });
            return EXIT_ERROR;
        }
    };
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
            // The window's start: what each stack holds now is what its growth is
            // measured from (copied in place, nothing allocated).
            heap::mark_window();
            send!(Message::Warmup { iterations: i });
        }
        if let (Some(duration), Some(judged_from)) = (plan.duration, warmup_end) {
            if elapsed >= duration && i >= judged_from + MIN_JUDGED {
                break;
            }
        }
        heap::set_epoch(i);
        let before = Snapshot::now();
        let cpu_started = process_cpu_ns();
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let work = workload.iterate();
            if let Some((bytes, _)) = planted.filter(|&(_, from)| i >= from) {
                planted_leak(bytes);
            }
            work
        }))
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(panic.as_ref())).into()));
        let ns = started.elapsed().as_nanos() as u64;
        let cpu_ns = process_cpu_ns().saturating_sub(cpu_started);
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
            cpu_ns,
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
    // Before anything allocates for the report: symbolizing at a dense interval would
    // otherwise count drops the judged iterations never had.
    let (samples_taken, samples_dropped) = sampling_counts();
    heap::set_epoch(i);
    let judged_from = warmup_end.unwrap_or(plan.warmup);
    let growth = heap::stack_growth(judged_from, i.saturating_sub(judged_from));
    let raw_profile = profile.map(|_| crate::profile::RawProfile::now());
    drop(workload);
    let teardown = Snapshot::now();
    let suspects = growth.suspects(plan.suspects);
    send!(Message::Done {
        peak_live_bytes: end.peak_live_bytes,
        end_live_bytes: end.live_bytes,
        teardown_live_bytes: teardown.live_bytes,
        suspects,
        samples_taken,
        samples_dropped,
        sample_interval: heap::sample_interval(),
        modules: Vec::new(),
        profile: None,
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

/// CPU nanoseconds this process has used, all its threads (`CLOCK_PROCESS_CPUTIME_ID`;
/// 0 if the clock cannot be read).
pub fn process_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives across the call;
    // it neither allocates nor keeps the pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// CPU seconds (user and system) this process has used, all its threads; 0 if the
/// kernel's accounting cannot be read.
pub fn own_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_SELF)
}

/// CPU seconds (user and system) of every child of this process that has ended and been
/// waited for, with what they waited for in turn; 0 if it cannot be read. A difference
/// around one child's wait is that child's cost, when nothing else is waited for in
/// between.
pub fn children_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_CHILDREN)
}

fn rusage_cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `usage`, which lives across the call.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
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
