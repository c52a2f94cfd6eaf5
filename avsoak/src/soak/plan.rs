//! How long one case runs and what it may use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::{self};

/// Judged iterations a plan must leave after warm-up.
pub const MIN_JUDGED: u64 = 2 * stats::MIN_POINTS as u64;

/// How long one case runs and what it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Iterations in all, warm-up included (with `duration`: the most to run).
    pub iterations: u64,
    /// Leading iterations whose memory is not judged (with `duration`: at least this
    /// many, and at least the first tenth of the duration).
    pub warmup: u64,
    /// Run for this long instead of a fixed count (and never fewer than `warmup` +
    /// [`MIN_JUDGED`] iterations).
    pub duration: Option<Duration>,
    /// Live heap bytes at which the child stops itself and reports `leak: cap reached`.
    pub heap_cap: u64,
    /// Suspect stacks to report.
    pub suspects: usize,
}

/// Errors in a plan's numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A zero duration.
    #[error("invalid duration 0s (expected a positive duration, e.g. 90s, 30m, 2h)")]
    ZeroDuration,
    /// Too few judged iterations for the statistics.
    #[error(
        "{iterations} iterations with {warmup} of warm-up leave {judged} to judge \
         (expected at least {min})"
    )]
    TooShort {
        /// Iterations asked for.
        iterations: u64,
        /// Warm-up asked for.
        warmup: u64,
        /// What is left.
        judged: u64,
        /// The minimum.
        min: u64,
    },
}

impl Plan {
    /// The default warm-up for `iterations`: max(20, 10 %).
    pub fn default_warmup(iterations: u64) -> u64 {
        (iterations / 10).max(20)
    }

    /// A plan of `iterations` with the default warm-up, a 2 GiB heap cap and 5 suspects.
    pub fn new(iterations: u64) -> Self {
        Plan {
            iterations,
            warmup: Self::default_warmup(iterations),
            heap_cap: 2 << 30,
            suspects: 5,
            duration: None,
        }
    }

    /// The plan in words, as reports record it: `120 iterations, 20 warm-up`, or
    /// `1800s, at least 20 warm-up`.
    pub fn describe(&self) -> String {
        match self.duration {
            None => format!("{} iterations, {} warm-up", self.iterations, self.warmup),
            Some(d) => format!("{}s, at least {} warm-up", d.as_secs(), self.warmup),
        }
    }

    /// Checks that enough iterations remain after warm-up to judge a trend.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.duration == Some(Duration::ZERO) {
            return Err(PlanError::ZeroDuration);
        }
        let judged = self.iterations.saturating_sub(self.warmup);
        if judged < MIN_JUDGED {
            return Err(PlanError::TooShort {
                iterations: self.iterations,
                warmup: self.warmup,
                judged,
                min: MIN_JUDGED,
            });
        }
        Ok(())
    }
}
