//! The machine speed index: how fast this machine runs a fixed reference workload, so
//! throughput can be gated across machines of a kind.
//!
//! Wall-clock throughput belongs to the machine that measured it: a baseline saved on a
//! fast runner fails every case on a runner half as fast. Every soak therefore runs a
//! fixed, single-threaded reference (a frame-sized memory copy and a sum of absolute
//! differences over 16×16 blocks, the two loops a video pipeline spends its time in
//! besides the codec's own) a few times before its first case and after its last, on as
//! many threads at once as the run soaks cases (`--jobs`), so it sees the same load. The
//! index is the median of those repetitions, in reference runs per second per job. The
//! gate compares throughput relative to it ([`crate::gate`]).

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What the reference workload is, as reports state it.
pub const REFERENCE: &str = "avsoak reference 1: 8 rounds of 8 copies of a 1280x720 I420 \
    frame and a 5-point 16x16 SAD search over a 640x480 frame pair, single-threaded";

/// Rounds of copies and search per run.
const ROUNDS: usize = 8;

/// Repetitions before the first case and after the last.
pub const REPETITIONS: usize = 3;

/// A run's speed index, with the repetitions it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedIndex {
    /// Median reference runs per second per job.
    pub index: f64,
    /// Each repetition before the first case (runs per second, median over the jobs).
    pub before: Vec<f64>,
    /// Each repetition after the last case.
    pub after: Vec<f64>,
    /// Threads the reference ran on at once (the run's `--jobs`).
    pub jobs: usize,
    /// [`REFERENCE`] when it was measured: indexes of different references do not
    /// compare.
    pub reference: String,
}

impl SpeedIndex {
    /// The index from repetitions `before` and `after` measured on `jobs` threads.
    pub fn new(before: Vec<f64>, after: Vec<f64>, jobs: usize) -> Self {
        let all: Vec<f64> = before.iter().chain(&after).copied().collect();
        // 0, not NaN, when nothing was measured: the index is written to JSON.
        let index = if all.is_empty() {
            0.0
        } else {
            crate::stats::median_of(&all)
        };
        SpeedIndex {
            index,
            before,
            after,
            jobs,
            reference: REFERENCE.to_owned(),
        }
    }

    /// The ratio of this machine's speed to `other`'s, when both ran the same
    /// reference under the same load and measured something.
    pub fn relative_to(&self, other: &SpeedIndex) -> Option<f64> {
        (self.reference == other.reference
            && self.jobs == other.jobs
            && self.index > 0.0
            && other.index > 0.0)
            .then(|| self.index / other.index)
    }
}

/// `repetitions` repetitions of the reference on `jobs` threads at once: each one's rate
/// (runs per second), the median over the threads.
pub fn measure(jobs: usize, repetitions: usize) -> Vec<f64> {
    let jobs = jobs.max(1);
    (0..repetitions)
        .map(|_| {
            let rates: Vec<f64> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..jobs).map(|_| scope.spawn(reference_rate)).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(0.0))
                    .collect()
            });
            crate::stats::median_of(&rates)
        })
        .collect()
}

/// One run of the reference: runs per second.
fn reference_rate() -> f64 {
    const FRAME: usize = 1280 * 720 * 3 / 2;
    let source = vec![0x5a_u8; FRAME];
    let mut target = vec![0u8; FRAME];
    let (w, h) = (640usize, 480usize);
    let a: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
    let b: Vec<u8> = (0..w * h).map(|i| (i * 13 % 241) as u8).collect();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..8 {
            target.copy_from_slice(black_box(&source));
            black_box(&mut target);
        }
        let mut best = u32::MAX;
        for by in (16..h - 32).step_by(16) {
            for bx in (16..w - 32).step_by(16) {
                for (dy, dx) in [(0, 0), (-4, 0), (4, 0), (0, -4), (0, 4)] {
                    let (cx, cy) = (bx.wrapping_add_signed(dx), by.wrapping_add_signed(dy));
                    best = best.min(sad16(black_box(&a), &b, w, (bx, by), (cx, cy)));
                }
            }
        }
        black_box(best);
    }
    1.0 / started.elapsed().as_secs_f64().max(1e-9)
}

/// Sum of absolute differences of the 16×16 blocks of `a` at `(ax, ay)` and `b` at
/// `(bx, by)`, rows `stride` apart.
fn sad16(
    a: &[u8],
    b: &[u8],
    stride: usize,
    (ax, ay): (usize, usize),
    (bx, by): (usize, usize),
) -> u32 {
    let mut sum = 0u32;
    for row in 0..16 {
        let ra = &a[(ay + row) * stride + ax..][..16];
        let rb = &b[(by + row) * stride + bx..][..16];
        sum += ra
            .iter()
            .zip(rb)
            .map(|(&x, &y)| u32::from(x.abs_diff(y)))
            .sum::<u32>();
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_the_median_of_every_repetition() {
        let s = SpeedIndex::new(vec![10.0, 30.0], vec![20.0], 2);
        assert_eq!(s.index, 20.0);
        assert_eq!(SpeedIndex::new(vec![10.0, 40.0], vec![], 1).index, 25.0);
        let half = SpeedIndex::new(vec![10.0], vec![], 2);
        assert_eq!(half.relative_to(&s), Some(0.5));
        // Another load or another reference does not compare.
        assert_eq!(SpeedIndex::new(vec![10.0], vec![], 1).relative_to(&s), None);
        let mut other = s.clone();
        other.reference = "another".into();
        assert_eq!(other.relative_to(&s), None);
    }

    #[test]
    fn the_reference_measures_a_rate_per_job() {
        let rates = measure(2, 2);
        assert_eq!(rates.len(), 2);
        assert!(rates.iter().all(|&r| r.is_finite() && r > 0.0), "{rates:?}");
    }
}
