//! One heap counter for Rust and C.
//!
//! With the default `hooks` feature, the libc allocation functions of the process are
//! interposed (crate `avsoak-hooks`), so [`Snapshot::now`] sees every block that libx264,
//! FFmpeg, libheif, libstdc++ and Rust's allocator hold. Counters are process-wide:
//! assertions on them belong one per process (the test suite runs under nextest, which
//! gives every test its own process; the soak runner gives every variant its own child).
//!
//! ```
//! use avsoak::heap::Snapshot;
//!
//! let before = Snapshot::now();
//! let kept = std::hint::black_box(vec![0u8; 4096]);
//! let delta = Snapshot::now().since(&before);
//! if avsoak::heap::check().is_ok() {
//!     assert!(delta.live_bytes >= 4096);
//!     assert!(delta.allocs >= 1);
//! }
//! drop(kept);
//! ```

use std::collections::HashMap;
use std::ffi::c_void;

use serde::{Deserialize, Serialize};

mod check;

use check::object_of;
pub use check::{check, HeapError};

/// A reading of the process-wide heap counters: [`Snapshot::now`], and what happened
/// between two readings, [`Snapshot::since`].
pub use avsoak_hooks::{Counters as Snapshot, Delta};

/// Heap cost of one run of a routine, averaged over many.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PerIteration {
    /// Runs measured.
    pub iterations: u64,
    /// Allocations per run.
    pub allocs: f64,
    /// Bytes allocated per run.
    pub bytes: f64,
    /// Live bytes left behind per run (what a leak would add).
    pub live_bytes: f64,
}

/// Runs `routine` once to warm it up, then `iterations` times between two snapshots, and
/// returns what each run cost the heap on average: a benchmark's memory figures beside
/// its time. Counters are process-wide, so other threads' allocations count too; keep the
/// process otherwise quiet.
pub fn per_iteration(iterations: u64, mut routine: impl FnMut()) -> PerIteration {
    routine();
    let iterations = iterations.max(1);
    let before = Snapshot::now();
    for _ in 0..iterations {
        routine();
    }
    let delta = Snapshot::now().since(&before);
    let n = iterations as f64;
    PerIteration {
        iterations,
        allocs: delta.allocs as f64 / n,
        bytes: delta.bytes_allocated as f64 / n,
        live_bytes: delta.live_bytes as f64 / n,
    }
}

/// Waits until nothing in the process has allocated or freed for 10 ms (at most 2 s),
/// for a test whose exact counts must see its own allocations only. The counters are
/// process-wide, and a test harness keeps working after it starts a test's thread:
/// libtest's main thread allocated 6 blocks (1 KiB, kept) during the first 30 ms of a
/// test in 10 of 30 runs of a probe, and none once it had settled.
pub fn settle() {
    let moves = || {
        let now = Snapshot::now();
        (now.allocs, now.frees)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut last = moves();
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
        let now = moves();
        if now != last {
            last = now;
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= std::time::Duration::from_millis(10) {
            return;
        }
    }
}

/// Starts a new peak window at the current live bytes.
pub fn reset_peak() {
    #[cfg(feature = "hooks")]
    avsoak_hooks::reset_peak();
}

/// glibc's own view of the heap (`mallinfo2`: `uordblks + hblkhd`), independent of the
/// hooks: a cross-check for the counters. Includes allocator overhead and moves with
/// glibc's mmap threshold, so compare growth, not absolutes.
pub fn glibc_in_use_bytes() -> u64 {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

/// Samples the stack sampler took so far, and samples it dropped for want of a slot
/// (zeros without the hooks).
pub fn sampling_counts() -> (u64, u64) {
    #[cfg(feature = "hooks")]
    {
        let s = avsoak_hooks::sampling_stats();
        (s.taken, s.dropped)
    }
    #[cfg(not(feature = "hooks"))]
    (0, 0)
}

/// Sets the mean sampling interval in bytes (0 turns stack sampling off).
pub fn set_sample_interval(bytes: u64) {
    #[cfg(feature = "hooks")]
    avsoak_hooks::set_sample_interval(bytes);
    #[cfg(not(feature = "hooks"))]
    let _ = bytes;
}

/// The mean sampling interval in bytes (0: off).
pub fn sample_interval() -> u64 {
    #[cfg(feature = "hooks")]
    return avsoak_hooks::sample_interval();
    #[cfg(not(feature = "hooks"))]
    0
}

/// Tags allocations sampled from now on with `epoch` (the soak runner's iteration).
pub fn set_epoch(epoch: u64) {
    #[cfg(feature = "hooks")]
    avsoak_hooks::set_epoch(epoch);
    #[cfg(not(feature = "hooks"))]
    let _ = epoch;
}

/// One allocation stack whose sampled live allocations grew across a soak's judged
/// window: a suspect. Estimates from the samples, with the counts behind them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// Estimated live bytes from this stack at the end of the window.
    pub bytes: u64,
    /// Estimated live blocks from this stack at the end of the window.
    pub blocks: u64,
    /// Samples behind the estimate.
    pub samples: u64,
    /// Estimated growth of its live bytes per judged iteration.
    #[serde(default)]
    pub growth_bytes_per_iter: f64,
    /// Estimated growth of its live blocks per judged iteration.
    #[serde(default)]
    pub growth_blocks_per_iter: f64,
    /// Its share of the case's measured slope (`growth_bytes_per_iter` / the slope),
    /// when the case grew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// Samples it gained across the window: allocated in it and still live at its end.
    #[serde(default)]
    pub gained: u64,
    /// Samples it lost: live at the window's start, freed by its end.
    #[serde(default)]
    pub lost: u64,
    /// The sign test's chance of gaining this lopsidedly while at rest
    /// ([`crate::stats::sign_test`]).
    #[serde(default)]
    pub p: f64,
    /// Function names, allocation function first, outermost last; `??` where the
    /// library is stripped (the object follows in brackets).
    pub frames: Vec<String>,
    /// The raw return addresses, innermost first, while the frames are still to be
    /// named in another process: a watched program sends them, the watcher names them
    /// after the program exited ([`name_suspects`]). Empty in a report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<u64>,
    /// For blocks that FFmpeg reference-counts (`AVBufferRef`), the calls that took the
    /// references still holding the suspect's blocks from the window, most blocks first:
    /// the code that kept them, where the allocation is FFmpeg's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_by: Vec<HeldBy>,
}

/// A call that took references still holding a suspect's sampled blocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldBy {
    /// The suspect's sampled blocks from the window its references hold.
    pub blocks: u64,
    /// Function names, the reference-taking function first (`av_frame_ref`), outermost
    /// last.
    pub frames: Vec<String>,
    /// Raw return addresses of the code that made the call, while still to be named (as
    /// [`Suspect::addresses`]): their names follow the call's in `frames`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<u64>,
}

impl HeldBy {
    /// `av_frame_ref ← ring_store ← thumbnail_loop`: the first `frames` frames.
    pub fn stack(&self, frames: usize) -> String {
        let shown: Vec<&str> = self
            .frames
            .iter()
            .take(frames)
            .map(String::as_str)
            .collect();
        shown.join(" ← ")
    }
}

impl Suspect {
    /// `held by: av_frame_ref ← ring_store ← … (58 of 60 sampled blocks)`: the call whose
    /// references hold most of the suspect's blocks, when any was seen.
    pub fn held_by_line(&self, frames: usize) -> Option<String> {
        let first = self.held_by.first()?;
        let sampled: u64 = self.gained.max(first.blocks);
        Some(format!(
            "held by: {} ({} of {} sampled blocks)",
            first.stack(frames),
            first.blocks,
            sampled
        ))
    }

    /// `+460.8 KiB/iteration (100 % of the slope); ~43.9 MiB live in ~100 blocks;
    /// 58 samples gained, 0 lost (p = 3e-18)`.
    pub fn figures(&self) -> String {
        let share = self
            .share
            .map(|s| format!(" ({:.0} % of the slope)", s * 100.0))
            .unwrap_or_default();
        format!(
            "+{}/iteration{share}; ~{} live in ~{} blocks; {} samples gained, {} lost (p = {:.1e})",
            crate::fmt::human_bytes(self.growth_bytes_per_iter),
            crate::fmt::human_bytes(self.bytes as f64),
            self.blocks,
            self.gained,
            self.lost,
            self.p
        )
    }

    /// The suspect with its share of `slope`, the case's measured bytes per iteration
    /// (none when the case did not grow).
    pub fn with_share(mut self, slope: f64) -> Self {
        self.share = (slope > 0.0).then(|| self.growth_bytes_per_iter / slope);
        self
    }

    /// The frames from the first one past allocator plumbing (see [`is_plumbing`]): the
    /// call that allocated, then its callers. All of them when every frame is plumbing.
    /// When that first frame has no name (a stripped library's `??`), the plumbing call
    /// it made comes first: `av_reallocp_array ← ?? [libavformat.so.59] ← …` says more
    /// than the `??` alone.
    pub fn readable(&self) -> &[String] {
        let mut first = self
            .frames
            .iter()
            .position(|f| !is_plumbing(f))
            .unwrap_or(0);
        if first > 0 && self.frames[first].starts_with("??") {
            first -= 1;
        }
        &self.frames[first..]
    }

    /// The first `frames` [readable](Suspect::readable) frames joined with ` ← `, the
    /// allocating call first: `x264_picture_alloc ← AllocatedPicture::new ← …`.
    pub fn stack(&self, frames: usize) -> String {
        let shown: Vec<&str> = self
            .readable()
            .iter()
            .take(frames)
            .map(String::as_str)
            .collect();
        shown.join(" ← ")
    }
}

/// Whether a frame only moves memory on for its caller: glibc's malloc family (the
/// hooks), FFmpeg's `av_malloc`, `av_mallocz`, `av_realloc*`, `av_calloc`, x264's
/// `x264_malloc`, x265's `x265_malloc`, C++'s `operator new`, and Rust's allocator layers (`alloc::…`,
/// `<alloc::…>`, `<T as alloc::…>`, `RawVec`, `__rust_alloc`, `__rdl_alloc`). Reports start a stack past
/// them; heap profiles keep them.
pub fn is_plumbing(frame: &str) -> bool {
    const EXACT: &[&str] = &[
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "memalign",
        "aligned_alloc",
        "posix_memalign",
        "valloc",
        "pvalloc",
        "av_malloc",
        "av_mallocz",
        "av_calloc",
        "av_malloc_array",
        "av_mallocz_array",
        "x264_malloc",
        "x265::x265_malloc(unsigned long)",
        "operator new(unsigned long)",
        "operator new[](unsigned long)",
        "__rust_alloc",
        "__rust_alloc_zeroed",
        "__rust_realloc",
        "__rdl_alloc",
        "__rdl_alloc_zeroed",
        "__rdl_realloc",
    ];
    EXACT.contains(&frame)
        || frame.starts_with("av_realloc")
        || frame.starts_with("alloc::")
        || frame.starts_with("<alloc::")
        || frame.contains(" as alloc::")
        || frame.contains("RawVec")
        || frame.starts_with("std::sys::alloc::")
        || frame.starts_with("<std::alloc::System")
}

/// The chance, per window end, that sampling noise lists a stack at rest as a suspect.
/// Each stack's sign test is held to `SUSPECT_ALPHA / m`, `m` the stacks that changed by
/// enough samples to ever reach that level (Tarone's Bonferroni for discrete tests, see
/// [`StackGrowths::threshold`]), so the whole list holds an innocent with chance at most
/// this; a probe that chooses among its last [`SNAPSHOTS`] ends, at most that many times
/// this.
pub const SUSPECT_ALPHA: f64 = 1e-9;

/// Every sampled stack's live sums at the start of the window ([`open_window`]) and at
/// its frozen end ([`snapshot_window`]), not yet symbolized.
#[derive(Debug, Clone, Default)]
pub struct StackGrowths {
    stacks: Vec<Growth>,
    iterations: u64,
}

#[derive(Debug, Clone, Default)]
struct Growth {
    frames: Vec<usize>,
    bytes: f64,
    blocks: f64,
    samples: u64,
    grew_bytes: f64,
    grew_blocks: f64,
    gained: u64,
    lost: u64,
}

/// Opens a judged window at `epoch`, the epoch allocations get from now on (see
/// [`set_epoch`]): each sampled stack's live sums are copied aside in place, and from
/// now on the sampler keeps each stack's live samples from the window as they come and
/// go, so [`snapshot_window`] can freeze the window's end cheaply at every quiescent
/// point, before a program's own teardown. Allocates nothing.
pub fn open_window(epoch: u64) {
    #[cfg(feature = "hooks")]
    avsoak_hooks::open_window(epoch);
    #[cfg(not(feature = "hooks"))]
    let _ = epoch;
}

/// How many times the sampler's per-stack sums changed so far: a [`snapshot_window`] is
/// needed only when this moved since the last one (0 without the hooks).
pub fn stack_generation() -> u64 {
    #[cfg(feature = "hooks")]
    return avsoak_hooks::stack_generation();
    #[cfg(not(feature = "hooks"))]
    0
}

/// How many of the last window ends [`snapshot_window`] froze stay readable with
/// [`window_growth_at`].
pub const SNAPSHOTS: usize = 4;

#[cfg(feature = "hooks")]
const _: () = assert!(SNAPSHOTS == avsoak_hooks::SNAPSHOTS);

/// Freezes an end of the window [`open_window`] opened at the sampler's sums now, and
/// returns its slot for [`window_growth_at`] (0 without the hooks). Allocates nothing;
/// cheap enough for every quiescent point (it touches only the stacks in use).
pub fn snapshot_window() -> usize {
    #[cfg(feature = "hooks")]
    return avsoak_hooks::snapshot_window();
    #[cfg(not(feature = "hooks"))]
    0
}

/// The growth of every sampled stack from [`open_window`] to the last
/// [`snapshot_window`], which came `iterations` judged iterations later.
pub fn window_growth(iterations: u64) -> StackGrowths {
    #[cfg(not(feature = "hooks"))]
    return StackGrowths {
        stacks: Vec::new(),
        iterations,
    };
    #[cfg(feature = "hooks")]
    StackGrowths::from_hooks(avsoak_hooks::window_growth(), iterations)
}

/// The growth of every sampled stack from [`open_window`] to the end frozen in `slot`
/// (one of the last [`SNAPSHOTS`] that [`snapshot_window`] returned), which came
/// `iterations` judged iterations after the window opened.
pub fn window_growth_at(slot: usize, iterations: u64) -> StackGrowths {
    #[cfg(not(feature = "hooks"))]
    {
        let _ = slot;
        StackGrowths {
            stacks: Vec::new(),
            iterations,
        }
    }
    #[cfg(feature = "hooks")]
    StackGrowths::from_hooks(avsoak_hooks::window_growth_at(slot), iterations)
}

impl StackGrowths {
    #[cfg(feature = "hooks")]
    fn from_hooks(stacks: Vec<avsoak_hooks::StackGrowth>, iterations: u64) -> Self {
        StackGrowths {
            stacks: stacks
                .into_iter()
                .map(|g| {
                    // Live at the end and allocated before the window: live at its start too.
                    let kept = g.end_samples.saturating_sub(g.born_samples);
                    Growth {
                        bytes: g.end_bytes,
                        blocks: g.end_blocks,
                        samples: g.end_samples,
                        grew_bytes: g.end_bytes - g.start_bytes,
                        grew_blocks: g.end_blocks - g.start_blocks,
                        gained: g.born_samples,
                        lost: g.start_samples.saturating_sub(kept),
                        frames: g.frames,
                    }
                })
                .collect(),
            iterations,
        }
    }
}

impl StackGrowths {
    /// Stacks whose samples changed across the window.
    pub fn tested(&self) -> usize {
        self.stacks.iter().filter(|g| g.gained + g.lost > 0).count()
    }

    /// The call sites the sign tests judge: every innermost part of every stack that
    /// changed (its first frame, its first two, …, all of it) where stacks branch off,
    /// and every whole stack, with the sums of the stacks that share it. A leak reached by two paths (a part kept from a write
    /// callback and from a flush) splits its samples between two stacks, too few in
    /// each; the call site the two share holds them all.
    fn sites(&self) -> Vec<Site> {
        let mut sites: HashMap<(usize, u64), Site> = HashMap::new();
        for (index, g) in self.stacks.iter().enumerate() {
            let mut hash = 0xcbf2_9ce4_8422_2325u64;
            for (at, &ip) in g.frames.iter().enumerate() {
                hash = (hash ^ ip as u64).wrapping_mul(0x0000_0100_0000_01b3);
                let site = sites.entry((at + 1, hash)).or_insert_with(|| Site {
                    depth: at + 1,
                    hash,
                    stacks: 0,
                    member: index,
                    sums: Growth::default(),
                });
                site.stacks += 1;
                site.sums.bytes += g.bytes;
                site.sums.blocks += g.blocks;
                site.sums.samples += g.samples;
                site.sums.grew_bytes += g.grew_bytes;
                site.sums.grew_blocks += g.grew_blocks;
                site.sums.gained += g.gained;
                site.sums.lost += g.lost;
                if g.grew_bytes > self.stacks[site.member].grew_bytes {
                    site.member = index;
                }
            }
        }
        // A site with the same stacks as the longer one on its path is the same test:
        // only the longest of such a run stays, so a stack's frames are one test up to
        // where another stack branches off, not one per frame.
        let same_as_longer = |site: &Site| {
            let frames = &self.stacks[site.member].frames;
            frames.get(site.depth).is_some_and(|&ip| {
                let next = (site.hash ^ ip as u64).wrapping_mul(0x0000_0100_0000_01b3);
                sites
                    .get(&(site.depth + 1, next))
                    .is_some_and(|longer| longer.stacks == site.stacks)
            })
        };
        let distinct: Vec<Site> = sites
            .values()
            .filter(|site| !same_as_longer(site))
            .cloned()
            .collect();
        distinct
    }

    /// The sign tests' family threshold over the call sites ([`StackGrowths::sites`]).
    pub fn threshold(&self) -> f64 {
        tarone(
            self.sites()
                .iter()
                .map(|s| s.sums.gained + s.sums.lost)
                .collect(),
        )
    }

    /// The call sites that grew beyond sampling noise, most bytes per iteration first,
    /// at most `top` of them, symbolized (slow, allocates: call after measuring). A site
    /// is one when its estimated live bytes rose, its sign test
    /// ([`crate::stats::sign_test`]) is at most the family threshold ([`tarone`] over
    /// every site), and no longer site within it is one too: a leak is named by the most
    /// of its stack all its growth shares, its whole stack when it has one path. A
    /// stack at rest, however much it holds, gains about as many samples as it loses, and
    /// so does any site made of such stacks: one is listed with chance below
    /// `SUSPECT_ALPHA` in all.
    pub fn suspects(self, top: usize) -> Vec<Suspect> {
        let mut suspects = self.unnamed_suspects(top);
        name_suspects(&mut suspects, &mut Symbolizer::default());
        suspects
    }

    /// [`StackGrowths::suspects`] with each site's raw addresses instead of its names:
    /// cheap, for another process to name.
    pub fn unnamed_suspects(self, top: usize) -> Vec<Suspect> {
        let sites = self.sites();
        let threshold = tarone(sites.iter().map(|s| s.sums.gained + s.sums.lost).collect());
        let per_iter = self.iterations.max(1) as f64;
        let mut grown: Vec<(Site, f64)> = sites
            .into_iter()
            .filter(|s| s.sums.grew_bytes > 0.0)
            .map(|s| {
                let p = crate::stats::sign_test(s.sums.gained, s.sums.lost);
                (s, p)
            })
            .filter(|&(_, p)| p <= threshold)
            .collect();
        // Longest first: a site is kept unless a longer one within it was.
        grown.sort_by_key(|(site, _)| std::cmp::Reverse(site.depth));
        let mut kept: Vec<(Site, f64)> = Vec::new();
        for (site, p) in grown {
            let frames = &self.stacks[site.member].frames[..site.depth];
            let within = kept
                .iter()
                .any(|(longer, _)| self.stacks[longer.member].frames[..site.depth] == *frames);
            if !within {
                kept.push((site, p));
            }
        }
        kept.sort_by(|a, b| b.0.sums.grew_bytes.total_cmp(&a.0.sums.grew_bytes));
        kept.truncate(top);
        kept.into_iter()
            .map(|(site, p)| {
                let g = &site.sums;
                Suspect {
                    bytes: g.bytes.round() as u64,
                    blocks: g.blocks.round() as u64,
                    samples: g.samples,
                    growth_bytes_per_iter: g.grew_bytes / per_iter,
                    growth_blocks_per_iter: g.grew_blocks / per_iter,
                    share: None,
                    gained: g.gained,
                    lost: g.lost,
                    p,
                    frames: Vec::new(),
                    addresses: self.stacks[site.member].frames[..site.depth]
                        .iter()
                        .map(|&ip| ip as u64)
                        .collect(),
                    held_by: Vec::new(),
                }
            })
            .collect()
    }
}

/// One call site: the innermost `depth` frames of its `member` stack (the one that grew
/// most of those sharing them), with the sums of the `stacks` that share them.
#[derive(Debug, Clone)]
struct Site {
    depth: usize,
    /// The hash of its frames, for finding the site one frame longer.
    hash: u64,
    stacks: usize,
    member: usize,
    sums: Growth,
}

/// The family threshold for one-sided sign tests that changed by `changed` samples
/// each: `SUSPECT_ALPHA / k` for the smallest `k` at least as large as the number of
/// tests that could reach `SUSPECT_ALPHA / k` at all (Tarone's modified Bonferroni for
/// discrete tests). A test over `n` samples cannot fall below `2^-n`, so one that
/// changed by too few to ever pass does not widen the family; the chance that any test
/// of a site at rest passes stays at most `SUSPECT_ALPHA`. With dense sampling hundreds
/// of stacks change by a sample or two, and a leak of 37 large blocks passes where a
/// plain Bonferroni over them would ask for 45.
pub fn tarone(mut changed: Vec<u64>) -> f64 {
    changed.retain(|&n| n > 0);
    changed.sort_unstable_by(|a, b| b.cmp(a));
    for k in 1..=changed.len().max(1) {
        let level = SUSPECT_ALPHA / k as f64;
        // Tests whose smallest possible p, 2^-n, is at most the level.
        let testable =
            changed.partition_point(|&n| (-(n as f64) * std::f64::consts::LN_2).exp() <= level);
        if testable <= k {
            return level;
        }
    }
    SUSPECT_ALPHA / changed.len().max(1) as f64
}

/// Names every suspect's raw [`Suspect::addresses`] into its frames, resolving each
/// distinct address once; suspects with names already are left as they are.
pub fn name_suspects(suspects: &mut [Suspect], symbolizer: &mut Symbolizer) {
    let raw: Vec<Vec<usize>> = suspects
        .iter()
        .map(|s| s.addresses.iter().map(|&a| a as usize).collect())
        .collect();
    let held: Vec<Vec<usize>> = suspects
        .iter()
        .flat_map(|s| &s.held_by)
        .map(|h| h.addresses.iter().map(|&a| a as usize).collect())
        .collect();
    symbolizer.learn(raw.iter().chain(&held).map(Vec::as_slice));
    for (suspect, ips) in suspects.iter_mut().zip(&raw) {
        if !ips.is_empty() {
            suspect.frames = symbolizer.frames(ips);
            suspect.addresses.clear();
        }
    }
    let mut held = held.iter();
    for holder in suspects.iter_mut().flat_map(|s| &mut s.held_by) {
        if let Some(ips) = held.next().filter(|ips| !ips.is_empty()) {
            // The reference-taking call, named already, then the code that called it.
            holder.frames.extend(symbolizer.frames(ips));
            holder.addresses.clear();
        }
    }
    // A call site named by allocator plumbing alone names no code to fix: after the
    // others, in their order.
    suspects.sort_by_key(|s| !s.frames.is_empty() && s.readable().iter().all(|f| is_plumbing(f)));
}

/// The sampled blocks live now and the references holding them, taken from an epoch on:
/// read before a workload's teardown, matched to the suspects after
/// ([`Holding::attach`]).
#[derive(Debug, Clone, Default)]
pub struct Holding {
    /// Per sampled block: its address and its stack.
    blocks: Vec<(usize, Vec<usize>)>,
    /// Per data block a reference holds: the calls that took them and their stacks.
    holders: HashMap<usize, Vec<(&'static str, Vec<usize>)>>,
}

/// Holders listed per suspect.
const HOLDERS_SHOWN: usize = 3;

impl Holding {
    /// Reads the sampled blocks allocated at `min_epoch` or later and the references to
    /// them taken at `min_epoch` or later. Allocates; cheap when no reference is kept.
    pub fn now(min_epoch: u64) -> Self {
        #[cfg(not(feature = "hooks"))]
        {
            let _ = min_epoch;
            Holding::default()
        }
        #[cfg(feature = "hooks")]
        {
            let mut holders: HashMap<usize, Vec<(&'static str, Vec<usize>)>> = HashMap::new();
            for h in avsoak_hooks::holders(min_epoch) {
                holders.entry(h.data).or_default().push((h.call, h.frames));
            }
            if holders.is_empty() {
                return Holding::default();
            }
            let blocks = avsoak_hooks::live_samples(min_epoch)
                .into_iter()
                .filter(|s| holders.contains_key(&s.ptr))
                .map(|s| (s.ptr, s.frames))
                .collect();
            Holding { blocks, holders }
        }
    }

    /// Gives each suspect the calls whose references hold its blocks: the blocks whose
    /// stack starts with the suspect's (raw) addresses, grouped by the stack that took
    /// each reference still holding them, most blocks first.
    pub fn attach(&self, suspects: &mut [Suspect]) {
        if self.holders.is_empty() {
            return;
        }
        for suspect in suspects.iter_mut() {
            let site: Vec<usize> = suspect.addresses.iter().map(|&a| a as usize).collect();
            if site.is_empty() {
                continue;
            }
            let mut by_stack: HashMap<(&str, &[usize]), u64> = HashMap::new();
            for (ptr, frames) in &self.blocks {
                if !frames.starts_with(&site) {
                    continue;
                }
                for (call, stack) in self.holders.get(ptr).into_iter().flatten() {
                    *by_stack.entry((call, stack.as_slice())).or_default() += 1;
                }
            }
            let mut ranked: Vec<((&str, &[usize]), u64)> = by_stack.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            suspect.held_by = ranked
                .into_iter()
                .take(HOLDERS_SHOWN)
                .map(|((call, stack), blocks)| HeldBy {
                    blocks,
                    // The call first; its callers are named from `addresses`.
                    frames: vec![call.to_owned()],
                    addresses: stack.iter().map(|&ip| ip as u64).collect(),
                })
                .collect();
        }
    }
}

/// Names `origins`' raw addresses with `symbolizer`, as [`name_suspects`] does.
pub fn name_origins(origins: &mut [crate::resources::Origin], symbolizer: &mut Symbolizer) {
    let raw: Vec<Vec<usize>> = origins
        .iter()
        .map(|o| o.addresses.iter().map(|&a| a as usize).collect())
        .collect();
    symbolizer.learn(raw.iter().map(Vec::as_slice));
    for (origin, ips) in origins.iter_mut().zip(&raw) {
        if !ips.is_empty() {
            origin.frames = symbolizer.frames(ips);
            origin.addresses.clear();
        }
    }
}

/// Sampled allocations still live, copied out of the sampler but not yet symbolized:
/// (size, weight, frames) each.
#[derive(Debug, Clone, Default)]
pub struct LiveSamples {
    samples: Vec<(usize, f64, Vec<usize>)>,
}

/// Copies the sampled allocations still live that were made at `min_epoch` or later.
/// Cheap and small: take it before tearing a workload down, symbolize after.
pub fn live_samples(min_epoch: u64) -> LiveSamples {
    #[cfg(not(feature = "hooks"))]
    {
        let _ = min_epoch;
        LiveSamples::default()
    }
    #[cfg(feature = "hooks")]
    LiveSamples {
        samples: avsoak_hooks::live_samples(min_epoch)
            .into_iter()
            .map(|s| (s.size, s.weight, s.frames))
            .collect(),
    }
}

impl LiveSamples {
    /// Groups the samples by stack, estimates each group's live bytes and blocks from
    /// the samples' weights, and returns the `top` largest, symbolized (slow, allocates:
    /// call after measuring). Empty when sampling was off.
    pub fn suspects(self, top: usize) -> Vec<Suspect> {
        let mut groups: HashMap<Vec<usize>, (f64, f64, u64)> = HashMap::new();
        for (size, weight, frames) in self.samples {
            let entry = groups.entry(frames).or_default();
            entry.0 += size as f64 * weight;
            entry.1 += weight;
            entry.2 += 1;
        }
        let mut ranked: Vec<_> = groups.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        ranked.truncate(top);
        let mut symbolizer = Symbolizer::default();
        symbolizer.learn(ranked.iter().map(|(frames, _)| frames.as_slice()));
        ranked
            .into_iter()
            .map(|(frames, (bytes, blocks, samples))| Suspect {
                bytes: bytes.round() as u64,
                blocks: blocks.round() as u64,
                samples,
                frames: symbolizer.frames(&frames),
                ..Suspect::default()
            })
            .collect()
    }
}

/// The sampled allocations still live that were made at `min_epoch` or later, grouped by
/// stack, largest estimated bytes first, at most `top` of them: `live_samples(min_epoch)
/// .suspects(top)`.
pub fn suspects(min_epoch: u64, top: usize) -> Vec<Suspect> {
    live_samples(min_epoch).suspects(top)
}

/// Frames kept per suspect after the harness's own frames are dropped.
const SHOWN_FRAMES: usize = 24;

/// Names raw return addresses, each looked up once.
///
/// A profile's stacks share most of their frames, and the resolver keeps only a few
/// objects' symbol tables open at a time: resolving frame by frame, stack by stack,
/// reopened libavcodec's tables thousands of times. [`Symbolizer::learn`] looks every new
/// address up once, in address order, so the lookups in one object follow each other.
///
/// By default it names this process's own addresses; [`Symbolizer::for_modules`] names
/// another process's, from its module map, after it exited.
#[derive(Debug, Default)]
pub struct Symbolizer {
    /// Lookup address (the call, not the return address) to its names, innermost first.
    names: HashMap<usize, Vec<String>>,
    /// Another process's objects (`None`: this process's own).
    modules: Option<crate::modules::ModuleResolver>,
}

/// The address to look up for frame `i`: return addresses point after the call, so every
/// frame but the innermost is looked up one byte earlier, inside the call itself.
fn lookup_address(i: usize, ip: usize) -> usize {
    if i == 0 {
        ip
    } else {
        ip.saturating_sub(1)
    }
}

impl Symbolizer {
    /// Names the addresses of another process, loaded as `modules` said.
    pub fn for_modules(modules: Vec<crate::modules::Module>) -> Self {
        Symbolizer {
            names: HashMap::new(),
            modules: Some(crate::modules::ModuleResolver::new(modules)),
        }
    }

    /// Resolves every address of `stacks` not yet known.
    pub(crate) fn learn<'a>(&mut self, stacks: impl IntoIterator<Item = &'a [usize]>) {
        let mut new: Vec<usize> = stacks
            .into_iter()
            .flat_map(|ips| ips.iter().enumerate().map(|(i, &ip)| lookup_address(i, ip)))
            .filter(|a| !self.names.contains_key(a))
            .collect();
        new.sort_unstable();
        new.dedup();
        for address in new {
            let names = match &mut self.modules {
                Some(modules) => modules.names(address as u64),
                None => resolve_names(address),
            };
            self.names.insert(address, names);
        }
    }

    /// Names for raw return addresses, innermost first: drops the sampler's own frames,
    /// keeps the allocation function, stops at the runtime's entry frames.
    pub(crate) fn frames(&mut self, ips: &[usize]) -> Vec<String> {
        self.learn([ips]);
        let names: Vec<String> = ips
            .iter()
            .enumerate()
            .flat_map(|(i, &ip)| self.names[&lookup_address(i, ip)].iter().cloned())
            .collect();
        keep_shown(names)
    }
}

/// The names at one lookup address: several when calls were inlined there (innermost
/// first, like the stack itself), `?? [object]` when no symbol covers it.
fn resolve_names(lookup: usize) -> Vec<String> {
    let mut here = Vec::new();
    backtrace::resolve(lookup as *mut c_void, |symbol| {
        if let Some(name) = symbol.name() {
            here.push(format!("{name:#}"));
        }
    });
    if here.is_empty() {
        let object = object_of(lookup)
            .map(|path| path.rsplit('/').next().unwrap_or(&path).to_owned())
            .unwrap_or_else(|| "?".into());
        here.push(format!("?? [{object}]"));
    }
    here
}

/// How deep the sampler's own frames can reach: the unwinder, the sampler and the hook,
/// with whatever the compiler inlined into them (atomics, `Option` helpers) between.
const OWN_FRAMES_DEPTH: usize = 16;

/// Drops the sampler's own frames and everything from the runtime's entry frames on,
/// keeping at most [`SHOWN_FRAMES`].
///
/// The sampler's frames are everything up to the last `avsoak_hooks::` or `backtrace::`
/// name near the top: a debug-info symbolizer also reports the functions inlined into them
/// (`core::sync::atomic::…` inside `sample::record`), which a leading-run test would keep.
fn keep_shown(names: Vec<String>) -> Vec<String> {
    let start = names
        .iter()
        .take(OWN_FRAMES_DEPTH)
        .rposition(|n| n.starts_with("backtrace::") || n.starts_with("avsoak_hooks::"))
        .map_or(0, |last| last + 1);
    let mut kept: Vec<String> = Vec::new();
    for name in names.into_iter().skip(start) {
        if name.starts_with("std::rt::lang_start")
            || name.contains("__rust_begin_short_backtrace")
            || name == "main"
            || name.starts_with("__libc_start")
        {
            break;
        }
        kept.push(name);
        if kept.len() == SHOWN_FRAMES {
            break;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::{keep_shown, Growth, HeldBy, StackGrowths, Suspect, SUSPECT_ALPHA};

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    /// Stacks of one frame each, all different, that changed by `counts`.
    fn changed_by(counts: &[(u64, u64)]) -> StackGrowths {
        StackGrowths {
            stacks: counts
                .iter()
                .enumerate()
                .map(|(i, &(gained, lost))| Growth {
                    frames: vec![0x1000 + i],
                    bytes: 0.0,
                    blocks: 0.0,
                    samples: gained,
                    grew_bytes: gained as f64,
                    grew_blocks: gained as f64,
                    gained,
                    lost,
                })
                .collect(),
            iterations: 1,
        }
    }

    #[test]
    fn the_holder_line_names_the_call_that_took_most_references() {
        let mut suspect = Suspect {
            gained: 60,
            frames: owned(&["memalign", "av_malloc", "av_buffer_alloc", "make_frame"]),
            ..Suspect::default()
        };
        assert_eq!(suspect.held_by_line(3), None);
        suspect.held_by = vec![
            HeldBy {
                blocks: 58,
                frames: owned(&["av_frame_ref", "ring_store", "thumbnail_loop", "run"]),
                addresses: Vec::new(),
            },
            HeldBy {
                blocks: 2,
                frames: owned(&["av_frame_clone", "preview"]),
                addresses: Vec::new(),
            },
        ];
        assert_eq!(
            suspect.held_by_line(3).unwrap(),
            "held by: av_frame_ref ← ring_store ← thumbnail_loop (58 of 60 sampled blocks)"
        );
    }

    #[test]
    fn stacks_that_could_never_be_listed_do_not_widen_the_family() {
        // A thousand stacks that changed by a sample or two cannot test below 1/4: the
        // one that gained 37 is alone in the family.
        let mut counts = vec![(1, 1); 1000];
        counts.push((37, 0));
        let growths = changed_by(&counts);
        assert_eq!(growths.tested(), 1001);
        assert_eq!(growths.threshold(), SUSPECT_ALPHA);
        assert_eq!(growths.unnamed_suspects(5).len(), 1);
        // Five stacks that could each reach 1e-9 / 5 share it.
        let growths = changed_by(&[(40, 0), (20, 20), (35, 5), (50, 0), (45, 1)]);
        assert_eq!(growths.threshold(), SUSPECT_ALPHA / 5.0);
        // Forty stacks that changed by 32 samples could each reach 1e-9 / 4 (2^-32 is
        // 2.3e-10) but not 1e-9 / 5: four is too few for them, five makes it.
        let growths = changed_by(&vec![(16, 16); 40]);
        assert_eq!(growths.threshold(), SUSPECT_ALPHA / 5.0);
        assert!(changed_by(&[]).threshold() > 0.0);
    }

    #[test]
    fn a_leak_reached_by_two_paths_is_named_by_the_call_site_they_share() {
        // malloc <- keep <- upload, then write or flush: 22 and 23 gained, none lost;
        // each path alone misses the threshold (2^-22, 2^-23), the site they share holds
        // 45. A stack at rest beside them shares only malloc, and keeps that site at
        // rest too.
        let stack = |frames: &[usize], gained, lost| Growth {
            frames: frames.to_vec(),
            bytes: 0.0,
            blocks: 0.0,
            samples: gained,
            grew_bytes: (gained as f64 - lost as f64) * 1000.0,
            grew_blocks: gained as f64 - lost as f64,
            gained,
            lost,
        };
        let growths = StackGrowths {
            stacks: vec![
                stack(&[1, 2, 3, 10, 11], 22, 0),
                stack(&[1, 2, 3, 20, 21], 23, 0),
                stack(&[1, 7, 8, 9], 300, 301),
            ],
            iterations: 10,
        };
        let suspects = growths.unnamed_suspects(5);
        assert_eq!(suspects.len(), 1, "{suspects:?}");
        assert_eq!(suspects[0].addresses, vec![1, 2, 3]);
        assert_eq!((suspects[0].gained, suspects[0].lost), (45, 0));
        assert_eq!(suspects[0].growth_bytes_per_iter, 4500.0);
        // One path with enough samples is named whole.
        let growths = StackGrowths {
            stacks: vec![
                stack(&[1, 2, 3, 10, 11], 60, 0),
                stack(&[1, 7, 8, 9], 300, 301),
            ],
            iterations: 10,
        };
        let suspects = growths.unnamed_suspects(5);
        assert_eq!(suspects.len(), 1, "{suspects:?}");
        assert_eq!(suspects[0].addresses, vec![1, 2, 3, 10, 11]);
    }

    #[test]
    fn a_stack_starts_past_the_plumbing_unless_its_first_caller_has_no_name() {
        let suspect = |frames: &[&str]| Suspect {
            frames: owned(frames),
            ..Suspect::default()
        };
        let named = suspect(&["realloc", "av_realloc_f", "mov_grow", "av_write_frame"]);
        assert_eq!(named.readable(), owned(&["mov_grow", "av_write_frame"]));
        let stripped = suspect(&[
            "realloc",
            "av_realloc_f",
            "av_reallocp_array",
            "?? [libavformat.so.59]",
            "av_write_frame",
        ]);
        assert_eq!(
            stripped.stack(3),
            "av_reallocp_array ← ?? [libavformat.so.59] ← av_write_frame"
        );
        let all_plumbing = suspect(&["malloc", "av_malloc"]);
        assert_eq!(all_plumbing.readable(), owned(&["malloc", "av_malloc"]));
    }

    #[test]
    fn keep_shown_drops_the_sampler_and_what_was_inlined_into_it() {
        // What a debug-info symbolizer reports for a sampled `realloc` in a preloaded
        // program: the unwinder, inlined atomics inside the sampler, the hook, then the
        // program's frames down to its entry.
        let names = owned(&[
            "backtrace::backtrace::trace_unsynchronized",
            "core::sync::atomic::atomic_load",
            "<core::sync::atomic::AtomicU64>::load",
            "avsoak_hooks::sample::record",
            "avsoak_hooks::note_alloc",
            "realloc",
            "remember_frame_stats",
            "main",
            "__libc_start_call_main",
        ]);
        assert_eq!(
            keep_shown(names),
            owned(&["realloc", "remember_frame_stats"])
        );
    }

    #[test]
    fn keep_shown_keeps_a_stack_without_sampler_frames_whole() {
        let names = owned(&["av_malloc", "read_from_memory", "main"]);
        assert_eq!(keep_shown(names), owned(&["av_malloc", "read_from_memory"]));
    }
}
