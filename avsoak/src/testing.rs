//! Soaks inside an ordinary `cargo test` (or `cargo nextest run`).
//!
//! [`soak`](fn@soak) runs a workload in a child process of the test binary itself: the binary is
//! started again with that one test selected (`<test name> --exact`) and an environment
//! variable that tells [`soak`](fn@soak), when the child reaches it, to run the workload and
//! report instead of starting another child. So the heap counters see that workload
//! alone, whatever else the test binary runs on its other threads, and a crash or a hang
//! comes back as a verdict instead of killing the test run.
//!
//! ```no_run
//! use avsoak::scenario::{BoxError, Work, Workload};
//! use avsoak::soak::Plan;
//!
//! struct Cache(Vec<Vec<u8>>);
//!
//! impl Workload for Cache {
//!     fn iterate(&mut self) -> Result<Work, BoxError> {
//!         self.0.push(vec![0; 256]); // never evicted: a leak
//!         Ok(Work { frames: 1, bytes: 0 })
//!     }
//! }
//!
//! #[test]
//! fn the_unbounded_cache_is_caught() {
//!     let soak = avsoak::testing::soak("unbounded-cache", Plan::new(60), || Ok(Cache(Vec::new())));
//!     avsoak::assert_leaks!(soak);
//! }
//! ```
//!
//! The test's name comes from its thread (libtest names each test's thread after the
//! test); on the main thread the child reuses this process's arguments, which select the
//! one test under nextest.

use std::fmt;
use std::time::Duration;

use crate::report::{CaseResult, Verdict};
use crate::scenario::{BoxError, Case, Expect, Workload};
use crate::soak::{self, attribution, Plan, Watchdog};

/// The variable that marks the child and names the soak it must run.
pub const CHILD_ENV: &str = "AVSOAK_TEST_SOAK";

/// The variable that makes the child the exact re-run of a leak whose sampled suspects
/// do not explain it (see [`crate::soak::attribution`]): `ITERATIONS,WARMUP,INTERVAL`.
pub const RERUN_ENV: &str = "AVSOAK_TEST_RERUN";

/// The re-run's plan and interval from [`RERUN_ENV`], over the test's own plan.
fn rerun_from_env(plan: &Plan) -> Option<(Plan, u64)> {
    let value = std::env::var(RERUN_ENV).ok()?;
    let numbers: Vec<u64> = value
        .split(',')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [iterations, warmup, interval] = numbers[..] else {
        return None;
    };
    Some((
        Plan {
            iterations,
            warmup,
            duration: None,
            ..plan.clone()
        },
        interval,
    ))
}

/// The result of one [`soak`](fn@soak): the verdict and every figure, as a report row.
#[derive(Debug, Clone)]
pub struct Soaked {
    /// The case's result (verdict, heap figures, throughput, suspects, error).
    pub result: CaseResult,
}

impl Soaked {
    /// What was found.
    pub fn verdict(&self) -> Verdict {
        self.result.verdict
    }

    /// `Ok` when the verdict is one a clean workload may get (`clean`, `bounded`,
    /// `upstream`); otherwise the explanation.
    pub fn check_clean(&self) -> Result<(), String> {
        if self.verdict().meets(Expect::Clean) {
            Ok(())
        } else {
            Err(format!("expected a clean soak, {self}"))
        }
    }

    /// `Ok` when the verdict is `leak`; otherwise the explanation.
    pub fn check_leaks(&self) -> Result<(), String> {
        match self.verdict() {
            Verdict::Leak => Ok(()),
            _ => Err(format!("expected a leak, {self}")),
        }
    }
}

impl fmt::Display for Soaked {
    /// `soak NAME: verdict leak, 1.2 KiB/iteration (p = 1e-9), 0.98 blocks/iteration;
    /// top suspect: 96 KiB in 40 blocks: f ← g`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.result;
        let h = &r.heap;
        write!(
            f,
            "soak {}: verdict {} after {} iterations ({} warm-up): {:.1} B/iteration \
             (p = {:.2e}), {:.3} blocks/iteration (p = {:.2e}), {:.1} allocations/iteration",
            r.variant,
            r.verdict.as_str(),
            r.iterations,
            r.warmup_iterations,
            h.leak_bytes_per_iter,
            h.trend_p,
            h.leak_blocks_per_iter,
            h.trend_blocks_p,
            h.allocs_per_iter,
        )?;
        if let Some(error) = &r.error {
            write!(f, "; {error}")?;
        }
        match r.suspects.first() {
            Some(top) => {
                write!(f, "; top suspect: {}: {}", top.figures(), top.stack(8))?;
                match top.held_by_line(8) {
                    Some(held) => write!(f, "; {held}"),
                    None => Ok(()),
                }
            }
            None => write!(f, "; no suspect"),
        }
    }
}

/// Fails the test unless `soak` is clean (`clean`, `bounded` or `upstream`), with the
/// verdict, the slope, p and the top suspect in the message.
#[macro_export]
macro_rules! assert_clean {
    ($soaked:expr $(,)?) => {
        if let ::std::result::Result::Err(why) = $soaked.check_clean() {
            panic!("{}", why);
        }
    };
}

/// Fails the test unless `soak` is a `leak`, with the verdict, the slope, p and the top
/// suspect in the message.
#[macro_export]
macro_rules! assert_leaks {
    ($soaked:expr $(,)?) => {
        if let ::std::result::Result::Err(why) = $soaked.check_leaks() {
            panic!("{}", why);
        }
    };
}

/// Soaks the workload `start` makes for `plan` in a child of this test binary, and
/// returns what was found. `name` labels the soak in messages and must be unique within
/// the test (it is how the child finds the soak to run).
///
/// In the child this function never returns: it runs the workload, reports, and exits.
pub fn soak<W, F>(name: &str, plan: Plan, start: F) -> Soaked
where
    W: Workload + 'static,
    F: FnOnce() -> Result<W, BoxError>,
{
    soak_with(name, plan, Watchdog::default(), start)
}

/// [`soak`](fn@soak) with a watchdog of its own.
pub fn soak_with<W, F>(name: &str, plan: Plan, watchdog: Watchdog, start: F) -> Soaked
where
    W: Workload + 'static,
    F: FnOnce() -> Result<W, BoxError>,
{
    let case = Case::new("test", name, Expect::Clean, "a test's soak");
    if let Err(e) = plan.validate() {
        panic!("soak {name}: {e}");
    }
    if std::env::var(CHILD_ENV).is_ok_and(|n| n == name) {
        let rerun = rerun_from_env(&plan);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let code = soak::run_workload(
            || {
                let workload = start().map(|w| Box::new(w) as Box<dyn Workload>);
                // After `start`, which may set an interval of its own.
                if let Some((_, interval)) = rerun {
                    crate::heap::set_sample_interval(interval);
                }
                workload
            },
            &case,
            rerun.as_ref().map_or(&plan, |(plan, _)| plan),
            &mut out,
            None,
        );
        drop(out);
        std::process::exit(code);
    }
    let command = match child_command(name) {
        Ok(command) => command,
        Err(e) => panic!("soak {name}: cannot start the child: {e}"),
    };
    let watchdog = match plan.duration {
        Some(d) => Watchdog {
            total: watchdog.total.max(d + d / 5 + Duration::from_secs(120)),
            ..watchdog
        },
        None => watchdog,
    };
    let first = soak::supervise(command, &case, &plan, watchdog, &mut |_| {});
    let result = attribution::attribute(first, &plan, |rerun| {
        let mut command = child_command(name)?;
        command.env(
            RERUN_ENV,
            format!(
                "{},{},{}",
                rerun.plan.iterations, rerun.plan.warmup, rerun.interval
            ),
        );
        Ok::<_, std::io::Error>(Some(soak::supervise(
            command,
            &case,
            &rerun.plan,
            watchdog,
            &mut |_| {},
        )))
    })
    .unwrap_or_else(|e| panic!("soak {name}: cannot start the re-run: {e}"));
    Soaked { result }
}

/// This test binary again, selecting the running test alone.
fn child_command(name: &str) -> std::io::Result<std::process::Command> {
    let mut command = soak::this_executable()?;
    match std::thread::current().name() {
        Some(test) if test != "main" => {
            command.args([test, "--exact", "--nocapture", "--test-threads", "1"]);
        }
        // Run on the main thread (libtest with one thread, or a harness of its own): the
        // arguments that selected this test select it again.
        _ => {
            command.args(std::env::args_os().skip(1));
        }
    }
    command.env(CHILD_ENV, name);
    Ok(command)
}
