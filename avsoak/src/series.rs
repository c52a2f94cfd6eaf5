//! A soak's per-iteration series, kept bounded however long the soak runs.
//!
//! A soak of hours can reach millions of iterations; the parent must not keep one row per
//! iteration, nor write one. A [`Series`] holds at most `capacity` [`Bucket`]s. While it
//! has room every bucket is one iteration, exactly as sampled. When it fills, neighbouring
//! buckets merge in pairs and the bucket width doubles, so old and new iterations stay
//! evenly covered. A bucket keeps, for every quantity, the value at its last iteration and
//! the smallest and largest value over the iterations it covers ([`Span`]): a spike or a
//! dip inside a bucket stays visible in `series/*.csv` and in the timelines.
//!
//! ```
//! use avsoak::series::Series;
//! use avsoak::soak::Sample;
//!
//! let mut series = Series::new(8);
//! for i in 0..1000 {
//!     let live = if i == 500 { 9_000 } else { 1_000 };
//!     series.push(&Sample { i, live_bytes: live, live_blocks: 1, ..Sample::default() });
//! }
//! assert!(series.buckets().len() <= 8);
//! assert_eq!(series.buckets().iter().map(|b| b.count).sum::<u64>(), 1000);
//! assert_eq!(series.buckets().iter().map(|b| b.live_bytes.max).max(), Some(9_000));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::Sample;
use crate::resources::Resources;
use crate::scenario::Loss;

/// One quantity over a bucket: its value after the bucket's last iteration, and its
/// smallest and largest value after any of the bucket's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Span {
    /// After the last iteration of the bucket.
    pub last: i64,
    /// The smallest value.
    pub min: i64,
    /// The largest value.
    pub max: i64,
}

impl Span {
    /// A span of one value.
    pub fn of(value: i64) -> Self {
        Span {
            last: value,
            min: value,
            max: value,
        }
    }

    /// Extends this span by a later one.
    fn absorb(&mut self, later: Span) {
        self.last = later.last;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
    }
}

/// Consecutive iterations summarised.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bucket {
    /// The first iteration covered.
    pub first: u64,
    /// How many iterations it covers.
    pub count: u64,
    /// Live heap bytes.
    pub live_bytes: Span,
    /// Live heap blocks.
    pub live_blocks: Span,
    /// The declared upstream loss after the last iteration.
    pub known: Loss,
    /// Each pipeline-object gauge ([`crate::scenario::Workload::gauges`]).
    pub gauges: BTreeMap<String, Span>,
    /// Descriptors, threads and resident memory; `None` where they were not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpans>,
}

/// The process's resources ([`Resources`]) over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResourceSpans {
    /// Open file descriptors.
    pub fds: Span,
    /// Threads.
    pub threads: Span,
    /// Resident bytes.
    pub rss_bytes: Span,
    /// Resident bytes backed by files or shared.
    pub rss_file_bytes: Span,
    /// Bytes mapped with `mmap` by the program and its libraries.
    #[serde(default)]
    pub mapped_bytes: Span,
    /// Those mappings.
    #[serde(default)]
    pub mappings: Span,
    /// Threads neither joined nor detached.
    #[serde(default)]
    pub unjoined: Span,
}

impl ResourceSpans {
    fn of(r: Resources) -> Self {
        ResourceSpans {
            fds: Span::of(r.fds),
            threads: Span::of(r.threads),
            rss_bytes: Span::of(r.rss_bytes),
            rss_file_bytes: Span::of(r.rss_file_bytes),
            mapped_bytes: Span::of(r.mapped_bytes),
            mappings: Span::of(r.mappings),
            unjoined: Span::of(r.unjoined),
        }
    }

    fn absorb(&mut self, later: ResourceSpans) {
        self.fds.absorb(later.fds);
        self.threads.absorb(later.threads);
        self.rss_bytes.absorb(later.rss_bytes);
        self.rss_file_bytes.absorb(later.rss_file_bytes);
        self.mapped_bytes.absorb(later.mapped_bytes);
        self.mappings.absorb(later.mappings);
        self.unjoined.absorb(later.unjoined);
    }
}

impl Bucket {
    fn of(sample: &Sample) -> Self {
        Bucket {
            first: sample.i,
            count: 1,
            live_bytes: Span::of(sample.live_bytes),
            live_blocks: Span::of(sample.live_blocks),
            known: sample.known,
            gauges: sample
                .gauges
                .iter()
                .map(|(name, &value)| (name.clone(), Span::of(value)))
                .collect(),
            resources: sample.resources.map(ResourceSpans::of),
        }
    }

    /// The last iteration covered.
    pub fn last(&self) -> u64 {
        self.first + self.count - 1
    }

    /// Extends this bucket by the next one.
    fn absorb(&mut self, later: Bucket) {
        self.count += later.count;
        self.live_bytes.absorb(later.live_bytes);
        self.live_blocks.absorb(later.live_blocks);
        self.known = later.known;
        // A bucket whose iterations were not all read keeps what was.
        match (&mut self.resources, later.resources) {
            (Some(mine), Some(later)) => mine.absorb(later),
            (mine @ None, later) => *mine = later,
            (Some(_), None) => {}
        }
        for (name, span) in later.gauges {
            match self.gauges.get_mut(&name) {
                Some(mine) => mine.absorb(span),
                None => {
                    self.gauges.insert(name, span);
                }
            }
        }
    }
}

/// A bounded series of consecutive iterations (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    buckets: Vec<Bucket>,
    width: u64,
    capacity: usize,
}

impl Default for Series {
    fn default() -> Self {
        Series::new(Series::DEFAULT_CAPACITY)
    }
}

impl Series {
    /// Buckets kept by default: every iteration of a soak up to this many, evenly merged
    /// beyond.
    pub const DEFAULT_CAPACITY: usize = 2048;

    /// An empty series that keeps at most `capacity` buckets (at least 2).
    pub fn new(capacity: usize) -> Self {
        Series {
            buckets: Vec::new(),
            width: 1,
            capacity: capacity.max(2),
        }
    }

    /// Adds the next iteration's sample. Samples must come in iteration order; a gap (an
    /// iteration never reported) starts a new bucket.
    pub fn push(&mut self, sample: &Sample) {
        let bucket = Bucket::of(sample);
        match self.buckets.last_mut() {
            Some(last) if last.count < self.width && last.last() + 1 == sample.i => {
                last.absorb(bucket);
            }
            _ => {
                self.buckets.push(bucket);
                if self.buckets.len() > self.capacity {
                    self.halve();
                }
            }
        }
    }

    /// Merges neighbouring buckets in pairs and doubles the width.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        self.buckets.reserve(self.capacity / 2 + 1);
        let mut pairs = old.into_iter();
        while let Some(mut a) = pairs.next() {
            if let Some(b) = pairs.next() {
                a.absorb(b);
            }
            self.buckets.push(a);
        }
        self.width *= 2;
    }

    /// The buckets, oldest first.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Iterations per full bucket (1 until the series first fills).
    pub fn width(&self) -> u64 {
        self.width
    }

    /// The buckets, taken out.
    pub fn into_buckets(self) -> Vec<Bucket> {
        self.buckets
    }
}
