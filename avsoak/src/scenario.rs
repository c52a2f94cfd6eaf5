//! What a scenario gives the harness: named variants, each with an expectation, and a
//! workload that runs one iteration at a time and returns at a quiescent point.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a variant is expected to do. A positive control expects `Leak` (or `Crash`) and
/// proves, on every run, that the instrument still sees what it is there to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// No growth (bounded growth is accepted too: it is not a leak).
    Clean,
    /// Live heap grows through the window.
    Leak,
    /// The child dies on a signal, reproducing a memory-safety bug; the suite goes on.
    Crash,
    /// A thread of the workload never stops: the workload's own watchdog reports it
    /// ([`Stuck`]), naming the thread, or the runner's watchdog stops the child.
    Hang,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Clean => "clean",
            Expect::Leak => "leak",
            Expect::Crash => "crash",
            Expect::Hang => "hang",
        })
    }
}

/// One runnable (scenario, variant, parameters) case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Scenario name, e.g. `picture-pool`.
    pub scenario: String,
    /// Variant name, e.g. `per-frame-alloc-leak`.
    pub variant: String,
    /// Parameters that distinguish cases of the same variant, e.g. `size = 640x480`.
    pub params: BTreeMap<String, String>,
    /// What the variant must do for the outcome to pass.
    pub expect: Expect,
    /// One line on what the variant does.
    pub about: String,
    /// A denser stack-sampling interval (bytes) this case needs: a control whose leak is
    /// a few hundred bytes per iteration would otherwise show no suspect at the default.
    /// The runner uses the smaller of this and its own interval (0, off, stays off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_interval: Option<u64>,
    /// Why this case cannot run on this machine (e.g. `kvazaar not found (…)`): the soak
    /// reports it `skipped` with this reason instead of running it, never as a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
    /// A leak inside a library the case uses that the workload accounts for exactly
    /// ([`Workload::known_loss`]), with the evidence, e.g. `x265 3.5 loses its zone
    /// x265_param on every x265_encoder_open (valgrind: definitely lost)`. Growth that the
    /// declared loss explains, and only that, is reported `upstream` instead of `leak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Iterations (warm-up included) this case soaks when the run names no count or
    /// duration, instead of the runner's 120: for a case whose iteration is slow and whose
    /// smallest growth to call is large (the rule: docs/design/soak.md, "Quick budgets").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_iterations: Option<u64>,
}

impl Case {
    /// A case of `scenario`'s `variant` with no parameters, the runner's sampling
    /// interval, nothing to skip and no upstream loss; set those with the `with_*`
    /// methods or struct-update syntax.
    pub fn new(scenario: &str, variant: &str, expect: Expect, about: &str) -> Case {
        Case {
            scenario: scenario.to_owned(),
            variant: variant.to_owned(),
            params: BTreeMap::new(),
            expect,
            about: about.to_owned(),
            sample_interval: None,
            skip: None,
            upstream: None,
            quick_iterations: None,
        }
    }

    /// The case with its own quick budget of `iterations` (see
    /// [`Case::quick_iterations`]), when `iterations` is `Some`.
    pub fn with_quick_iterations(mut self, iterations: Option<u64>) -> Case {
        self.quick_iterations = iterations;
        self
    }

    /// The case with parameter `key` set to `value`.
    pub fn with_param(mut self, key: &str, value: &str) -> Case {
        self.params.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The case with a denser sampling interval, when `interval` is `Some`.
    pub fn with_sample_interval(mut self, interval: Option<u64>) -> Case {
        self.sample_interval = interval;
        self
    }

    /// The parameter `key`, or `default` when the case does not set it.
    pub fn param<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.params.get(key).map_or(default, String::as_str)
    }

    /// The unique id: `scenario/variant` followed by `/value` per parameter, in key order.
    pub fn id(&self) -> String {
        let mut id = format!("{}/{}", self.scenario, self.variant);
        for value in self.params.values() {
            id.push('/');
            id.push_str(value);
        }
        id
    }
}

/// What one iteration pushed through the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// Frames the iteration handled.
    pub frames: u64,
    /// Bytes the iteration produced (encoded output, muxed bytes, …).
    pub bytes: u64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, other: Work) {
        self.frames += other.frames;
        self.bytes += other.bytes;
    }
}

/// Heap a library loses for good, in usable bytes and blocks as the heap counters see
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Usable bytes.
    pub bytes: i64,
    /// Blocks.
    pub blocks: i64,
    /// Usable bytes the allocator may add on top of `bytes`, by where it places the
    /// blocks (an aligned block may keep a tail too small to split off): the loss lies
    /// in `bytes..=bytes + slack`.
    #[serde(default)]
    pub slack: i64,
}

/// An error from a scenario's setup or iteration, reported as verdict `error`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A thread a workload asked to stop that did not stop within its bound. An iteration
/// that fails with this error (anywhere in its chain) is reported as verdict `hang`
/// with the message, instead of `error`: the workload's watchdog saw the hang first and
/// can say which thread is stuck and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: thread `{thread}` still {state} after {waited_ms} ms{others}")]
pub struct Stuck {
    /// What the workload was doing, e.g. `closing the player`.
    pub what: String,
    /// The thread that did not stop.
    pub thread: String,
    /// Where it is, e.g. `waiting for frame-queue space`.
    pub state: String,
    /// How long the workload waited for it.
    pub waited_ms: u64,
    /// Other threads still running, with their states (`; read: joining decode`), or
    /// empty.
    pub others: String,
}

impl Stuck {
    /// The [`Stuck`] in `error`'s chain, if any.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Stuck> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(stuck) = e.downcast_ref::<Stuck>() {
                return Some(stuck);
            }
            next = e.source();
        }
        None
    }
}

/// A running case: one call to [`Workload::iterate`] per iteration. When it returns, the
/// pipeline must be at a quiescent point (threads idle, queues drained as the scenario
/// defines) because the harness reads the live heap right after.
pub trait Workload {
    /// Runs one iteration.
    fn iterate(&mut self) -> Result<Work, BoxError>;

    /// What a declared upstream leak ([`Case::upstream`]) has lost since the workload
    /// started: events counted by the workload times a size measured through the
    /// library's own allocator, never a guess. The harness subtracts it from the live
    /// series before judging; anything beyond it is still a leak.
    fn known_loss(&self) -> Loss {
        Loss::default()
    }

    /// Pipeline objects the workload holds at the quiescent point, by name (live
    /// packets, frames in a queue, queued bytes, …), read right after the heap. The
    /// report keeps each one's series next to live bytes, with its last and largest
    /// value. None by default.
    fn gauges(&self) -> Vec<(&'static str, i64)> {
        Vec::new()
    }
}

/// A scenario: a family of cases built from one incident.
pub trait Scenario: Sync {
    /// Name used on the command line and in reports.
    fn name(&self) -> &'static str;
    /// One line on what the scenario proves.
    fn about(&self) -> &'static str;
    /// Every case, controls included.
    fn cases(&self) -> Vec<Case>;
    /// Builds the workload for `case` (one of [`Scenario::cases`]).
    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError>;
}
