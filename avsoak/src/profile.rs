//! Heap profiles in DHAT's JSON format (`dhatFileVersion: 2`, what `dh_view.html` loads),
//! from the sampled stacks: C and Rust frames in one tree.
//!
//! Every figure is a sampled estimate: a sample of `size` bytes stands for
//! `1 / (1 - exp(-size / interval))` allocations. The file says so in its own fields
//! (`verb`, `cmd`, and an `avsoak` object with the interval and the sample counts), and
//! leaves what sampling cannot know at zero: block lifetimes (`tl`) and the figures at
//! the global peak (`gb`, `gbk`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One stack's sums, symbolized (all sampled estimates).
#[derive(Debug, Clone, PartialEq)]
pub struct StackSums {
    /// Function names, allocation function first.
    pub frames: Vec<String>,
    /// Samples behind the figures.
    pub samples: u64,
    /// Bytes allocated from this stack over the whole process.
    pub total_bytes: f64,
    /// Blocks allocated from it.
    pub total_blocks: f64,
    /// Bytes from it live at the end (when the profile was taken).
    pub end_bytes: f64,
    /// Blocks from it live at the end.
    pub end_blocks: f64,
    /// The most bytes from it live at once.
    pub max_bytes: f64,
    /// The most blocks from it live at once.
    pub max_blocks: f64,
}

/// The sampled allocation stacks of this process so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeapProfile {
    /// Mean bytes between samples (0: sampling was off, the profile is empty).
    pub interval: u64,
    /// Per stack, largest total bytes first.
    pub stacks: Vec<StackSums>,
    /// Samples whose stack found no room in the table (the profile under-counts).
    pub dropped: u64,
}

/// The per-stack sums copied out of the sampler, not yet symbolized: cheap to take at
/// the moment that should count as the end, before a workload is torn down. A watched
/// program sends it as it is, for the watcher to name ([`RawProfile::symbolize_with`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawProfile {
    /// Mean bytes between samples (0: sampling was off).
    pub interval: u64,
    /// Samples whose stack found no room in the table.
    pub dropped: u64,
    /// Every stack's sums, frames as raw return addresses.
    pub stacks: Vec<RawStack>,
}

/// One stack's sums with its raw return addresses, innermost first (the sampler's own
/// record).
pub use avsoak_hooks::StackRecord as RawStack;

impl RawProfile {
    /// The sums as they stand now.
    pub fn now() -> Self {
        #[cfg(not(feature = "hooks"))]
        return RawProfile::default();
        #[cfg(feature = "hooks")]
        RawProfile {
            interval: avsoak_hooks::sample_interval(),
            dropped: avsoak_hooks::sampling_stats().stacks_dropped,
            stacks: avsoak_hooks::stack_profile(),
        }
    }

    /// Symbolizes the stacks in this process (slow, allocates: call after measuring).
    pub fn symbolize(self) -> HeapProfile {
        self.symbolize_with(&mut crate::heap::Symbolizer::default())
    }

    /// Symbolizes the stacks with `symbolizer` (another process's, when its module map
    /// made it). Stacks that symbolize to the same names are merged (their maxima added:
    /// an upper bound).
    pub fn symbolize_with(self, symbolizer: &mut crate::heap::Symbolizer) -> HeapProfile {
        let raw: Vec<Vec<usize>> = self.stacks.iter().map(|r| r.frames.clone()).collect();
        symbolizer.learn(raw.iter().map(Vec::as_slice));
        let mut merged: HashMap<Vec<String>, StackSums> = HashMap::new();
        for (r, ips) in self.stacks.into_iter().zip(&raw) {
            let frames = symbolizer.frames(ips);
            let sums = merged.entry(frames.clone()).or_insert(StackSums {
                frames,
                samples: 0,
                total_bytes: 0.0,
                total_blocks: 0.0,
                end_bytes: 0.0,
                end_blocks: 0.0,
                max_bytes: 0.0,
                max_blocks: 0.0,
            });
            sums.samples += r.samples;
            sums.total_bytes += r.total_bytes;
            sums.total_blocks += r.total_blocks;
            sums.end_bytes += r.live_bytes;
            sums.end_blocks += r.live_blocks;
            sums.max_bytes += r.max_bytes;
            sums.max_blocks += r.max_blocks;
        }
        let mut stacks: Vec<StackSums> = merged.into_values().collect();
        stacks.sort_by(|a, b| b.total_bytes.total_cmp(&a.total_bytes));
        HeapProfile {
            interval: self.interval,
            stacks,
            dropped: self.dropped,
        }
    }
}

impl HeapProfile {
    /// The profile as DHAT JSON. `cmd` names what ran, `elapsed` is how long it ran.
    pub fn dhat_json(&self, cmd: &str, pid: u32, elapsed: Duration) -> Value {
        let mut ftbl: Vec<String> = vec!["[root]".to_owned()];
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut pps = Vec::with_capacity(self.stacks.len());
        for s in &self.stacks {
            let fs: Vec<usize> = s
                .frames
                .iter()
                .map(|name| {
                    *index.entry(name.as_str()).or_insert_with(|| {
                        ftbl.push(name.clone());
                        ftbl.len() - 1
                    })
                })
                .collect();
            let round = |v: f64| v.round() as u64;
            pps.push(json!({
                "tb": round(s.total_bytes),
                "tbk": round(s.total_blocks),
                "tl": 0,
                "mb": round(s.max_bytes),
                "mbk": round(s.max_blocks),
                "gb": 0,
                "gbk": 0,
                "eb": round(s.end_bytes),
                "ebk": round(s.end_blocks),
                "fs": fs,
            }));
        }
        let samples: u64 = self.stacks.iter().map(|s| s.samples).sum();
        let te = elapsed.as_micros() as u64;
        json!({
            "dhatFileVersion": 2,
            "mode": "heap",
            "verb": "Allocated (sampled estimate)",
            "bklt": true,
            "bkacc": false,
            "tu": "µs",
            "Mtu": "s",
            "tuth": 10,
            "cmd": format!(
                "{cmd} [avsoak sampled profile: one sample per ~{} bytes allocated; every \
                 count is an estimate; lifetimes and t-gmax figures are not recorded]",
                self.interval
            ),
            "pid": pid,
            "tg": te,
            "te": te,
            "pps": pps,
            "ftbl": ftbl,
            "avsoak": {
                "sampled": true,
                "sample_interval_bytes": self.interval,
                "samples": samples,
                "samples_without_a_stack_entry": self.dropped,
                "estimates": "tb, tbk, mb, mbk, eb, ebk are sampled estimates",
                "end": "eb, ebk: live when the profile was taken (a soak takes it after \
                        the last iteration, before the workload is dropped)",
                "not_recorded": ["tl", "gb", "gbk", "tg"],
            },
        })
    }

    /// Writes [`HeapProfile::dhat_json`] to `path`, creating its folder.
    pub fn write_dhat(
        &self,
        path: &Path,
        cmd: &str,
        pid: u32,
        elapsed: Duration,
    ) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json =
            serde_json::to_string(&self.dhat_json(cmd, pid, elapsed)).expect("profiles serialize");
        std::fs::write(path, json)
    }
}
