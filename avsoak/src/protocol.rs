//! The child protocol: what a soak's child writes on its stdout, one JSON message a line
//! behind [`MESSAGE_PREFIX`], and the exit codes it leaves with. The argv and environment
//! a child is started with are [`crate::runner::Runner::child_command`]'s.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::heap::Suspect;
use crate::scenario::Loss;

/// Prefix of every protocol line a child writes to stdout.
pub const MESSAGE_PREFIX: &str = "@avsoak ";

/// Exit code of a child that refused to run or whose workload failed.
pub const EXIT_ERROR: i32 = 3;

/// Exit code of a child whose parent stopped listening (its stdout pipe broke): the
/// child stops instead of soaking on unheard.
pub const EXIT_ORPHANED: i32 = 4;

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
    /// A thread of the workload did not stop within its bound ([`Stuck`](crate::scenario::Stuck)); the child
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
        /// A watched program's loaded objects, when its suspects (and `profile`) come
        /// as raw addresses for the watcher to name; empty from a soak's child, which
        /// names its own.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        modules: Vec<crate::modules::Module>,
        /// A watched program's heap profile, unnamed, for the watcher to write.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<crate::profile::RawProfile>,
        /// Where the descriptors made in the judged window and still open were made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        origins: Vec<crate::resources::Origin>,
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
    /// CPU nanoseconds the child used meanwhile, all its threads (the codecs' workers
    /// too); 0 from a child that predates it.
    #[serde(default)]
    pub cpu_ns: u64,
    /// The workload's declared upstream loss so far
    /// ([`crate::scenario::Workload::known_loss`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub known: Loss,
    /// The workload's pipeline objects after the iteration
    /// ([`crate::scenario::Workload::gauges`]), read after the heap.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, i64>,
    /// Descriptors, threads and resident memory after the iteration, when read anew and
    /// moved since the last sample that carried them (see
    /// [`crate::probe::RESOURCE_COST_SHARE`]); absent, the last one still holds. None in
    /// any sample: `/proc` could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<crate::resources::Resources>,
}

fn is_zero(loss: &Loss) -> bool {
    *loss == Loss::default()
}

pub(crate) struct Emitter<'a> {
    pub(crate) out: &'a mut dyn Write,
    pub(crate) line: Vec<u8>,
}

impl Emitter<'_> {
    /// Writes one message. Reuses its line buffer so steady-state sampling allocates
    /// nothing that the next iteration's counters could see. False when the parent is
    /// gone (Rust ignores SIGPIPE, so a broken pipe is an error here, not a signal).
    #[must_use]
    pub(crate) fn send(&mut self, message: &Message) -> bool {
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
