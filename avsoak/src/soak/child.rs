//! The child side: runs the workload, reads the heap after each iteration, reports.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{Plan, MIN_JUDGED};
use crate::heap;
pub use crate::probe::process_cpu_ns;
use crate::probe::{Naming, Probe, Warmup, Work};
use crate::protocol::{Emitter, Message, EXIT_ERROR, EXIT_ORPHANED};
use crate::scenario::{Case, Scenario, Stuck};

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
    let warmup = Warmup {
        iterations: plan.warmup,
        time: plan.duration.map_or(Duration::ZERO, |d| d / 10),
    };
    let mut probe = Probe::new(warmup, plan.heap_cap, plan.suspects);
    while probe.next() < plan.iterations {
        let i = probe.next();
        if let Some(warmup) = probe.end_warmup() {
            send!(warmup);
        }
        if let (Some(duration), Some(judged_from)) = (plan.duration, probe.judged_from()) {
            if probe.elapsed() >= duration && i >= judged_from + MIN_JUDGED {
                break;
            }
        }
        probe.begin();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let work = workload.iterate();
            if let Some((bytes, _)) = planted.filter(|&(_, from)| i >= from) {
                planted_leak(bytes);
            }
            work
        }))
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(panic.as_ref())).into()));
        let reading = probe.end();
        let work: crate::scenario::Work = match result {
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
        let (sample, cap) = probe.sample(
            &reading,
            Work {
                frames: work.frames,
                bytes: work.bytes,
                known: workload.known_loss(),
                gauges: workload
                    .gauges()
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect(),
                held: None,
            },
        );
        send!(Message::Sample(sample));
        if let Some(cap) = cap {
            send!(cap);
            return 0;
        }
    }
    let (done, raw_profile) = probe.finish(move || drop(workload), Naming::Here, profile.is_some());
    send!(done);
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

/// A crashing child should die fast, not write a core file of a leaked heap.
fn disable_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; lowering RLIMIT_CORE needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}
