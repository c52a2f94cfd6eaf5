//! The soak: every case in its own child process, samples after every iteration, a trend
//! and a verdict at the end.
//!
//! The child side ([`run_child`]) runs the workload, reads the live heap after each
//! iteration and writes one JSON message per line to its stdout, prefixed with
//! [`MESSAGE_PREFIX`] (anything else a codec prints there is ignored). The parent side
//! ([`supervise`](fn@supervise)) reads those lines under a watchdog, and turns what it got — all of it,
//! or what arrived before a crash or a hang — into a `CaseResult`. A crash, hang, or
//! runaway heap in one child never touches another case's numbers, and the suite goes on.
//!
//! - [`plan`]: how long a case runs ([`Plan`]).
//! - [`child`]: the child side ([`run_child`], [`run_workload`]).
//! - [`supervise`](mod@supervise): the parent side ([`supervise()`](fn@supervise), [`Watchdog`]).
//! - [`transport`]: the argv and environment a child or a watched program gets, the
//!   reader of its protocol lines, and what each message adds to what is collected.
//! - `verdict`: from what was collected to the [`CaseResult`](crate::report::CaseResult),
//!   every rule of it (a watched program's exit status and too-short window included).
//!
//! The messages between the two are [`crate::protocol`]'s.

pub mod attribution;
pub mod child;
pub mod plan;
pub mod supervise;
pub mod transport;
mod verdict;
pub mod watch;

pub use child::{
    children_cpu_s, error_chain, own_cpu_s, planted_leak, process_cpu_ns, run_child, run_workload,
    PLANT_LEAK_ENV,
};
pub use plan::{Plan, PlanError, MIN_JUDGED};
pub use supervise::{
    catch_interrupts, interruption, last_line, signal_name, supervise, this_executable, Contained,
    Watchdog, MAX_RUNNING,
};

pub use crate::protocol::{Message, Sample, EXIT_ERROR, EXIT_ORPHANED, MESSAGE_PREFIX};
