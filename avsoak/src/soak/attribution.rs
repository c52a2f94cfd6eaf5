//! Which stacks a leak comes from when the sampled pass cannot tell: the exact re-run.
//!
//! A leak's suspects come from the sampled stack table. A leak far below the sampling
//! interval (64 B an iteration against 512 KiB) leaves no sample to grow, and a leak of a
//! few large blocks may leave too few to stand out from the stacks at rest. When the
//! growing stacks explain less than [`EXPLAINED`] of the measured slope, the case runs
//! once more in a fresh child, sampling densely enough that each leaked block is sampled
//! with chance ≥ 99 %, over a window long enough to hold about [`TARGET_SAMPLES`] of them.
//! Its growth-ranked stacks replace the suspects; the verdict and every figure stay the
//! first pass's.
//!
//! The window is sized by blocks and by bytes and time: a leak of one large block every
//! few dozen iterations needs more than [`RERUN_JUDGED`]'s 200 iterations to gain 60
//! blocks, and gets them as long as the re-run, at the first pass's CPU time per
//! iteration, takes at most [`RERUN_SECONDS`] of CPU and leaks at most
//! [`RERUN_LEAKED_BYTES`]. A leak that grows no blocks
//! (one block grown by `realloc`) is sampled by the bytes its reallocations add, each
//! growth sampled at the stack of the call that grew it; how often the block grows is not
//! known, so its window is the longest the budget allows, up to [`RERUN_GROWTH_JUDGED`].

use super::Plan;
use crate::report::{Attribution, AttributionPass, CaseResult, Verdict};

/// The share of the slope below which the sampled suspects do not explain a leak.
pub const EXPLAINED: f64 = 0.5;

/// Leaked blocks the re-run's judged window aims to hold. Each is sampled with chance
/// ≥ 99 %, so about 59 gained and none lost: a sign test of `2^-59 ≈ 2e-18`, under the
/// family threshold (`SUSPECT_ALPHA` / the stacks that changed) for up to 10⁸ stacks.
pub const TARGET_SAMPLES: f64 = 60.0;

/// The fewest judged iterations a re-run soaks, and the most it soaks whatever the
/// budget ([`RERUN_SECONDS`], [`RERUN_LEAKED_BYTES`]) allows beyond.
pub const RERUN_JUDGED: (u64, u64) = (40, 200);

/// The CPU seconds a re-run's judged window may take beyond [`RERUN_JUDGED`]'s 200
/// iterations, at the first pass's CPU time per iteration. CPU time, not wall time: a
/// loaded host stretches the wall clock of both passes, but not the work an iteration
/// is, so the window holds as many iterations on a busy host as on a quiet one.
pub const RERUN_SECONDS: f64 = 30.0;

/// The most a re-run's judged window may leak beyond [`RERUN_JUDGED`]'s 200 iterations,
/// at the first pass's slope.
pub const RERUN_LEAKED_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;

/// The most judged iterations a re-run soaks, whatever the budget.
pub const RERUN_MOST: u64 = 20_000;

/// The most judged iterations a re-run of a leak that grows no blocks soaks: a block
/// grown at least once every 80 iterations is grown about 60 times in it, and growths
/// rarer than that are not what a few minutes of soak can name.
pub const RERUN_GROWTH_JUDGED: u64 = 5_000;

/// Below this many blocks an iteration, a leak is taken to grow blocks it already has.
const GROWS_BLOCKS: f64 = 0.05;

/// The re-run for a result, when one is due: its plan and sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerun {
    /// The re-run's plan: the case's warm-up, then the judged window.
    pub plan: Plan,
    /// Its sampling interval in bytes.
    pub interval: u64,
}

/// The share of the measured slope the suspects explain (0 when nothing grew). A suspect
/// named by allocator plumbing alone (`memalign ← posix_memalign ← av_malloc`: the call
/// site many stacks share) explains nothing: it names no code to fix.
pub fn explained(result: &CaseResult) -> f64 {
    let slope = result.heap.leak_bytes_per_iter;
    if slope <= 0.0 {
        return 0.0;
    }
    result
        .suspects
        .iter()
        .filter(|s| !s.readable().iter().all(|f| crate::heap::is_plumbing(f)))
        .map(|s| s.growth_bytes_per_iter)
        .sum::<f64>()
        / slope
}

/// What the first pass's attribution of a `leak` says: sampled, the interval used and
/// the share explained. `None` for any other verdict, and for a case that did not finish
/// (no suspects to speak of).
pub fn sampled(result: &CaseResult) -> Option<Attribution> {
    let sampling = result
        .sampling
        .filter(|_| result.verdict == Verdict::Leak)?;
    Some(Attribution {
        pass: AttributionPass::Sampled,
        interval_bytes: sampling.interval_bytes,
        iterations: result.iterations,
        warmup: result.warmup_iterations,
        wall_s: 0.0,
        explained: explained(result),
        note: None,
    })
}

/// The re-run a `leak` needs, if any.
pub fn plan(result: &CaseResult, plan: &Plan) -> Option<Rerun> {
    let sampling = result.sampling?;
    let slope = result.heap.leak_bytes_per_iter;
    // A case that leaks only descriptors, threads or mappings has nothing for the heap's
    // suspects to explain: its heap slope is noise.
    if result.verdict != Verdict::Leak
        || !result.heap.grows
        || slope <= 0.0
        || explained(result) >= EXPLAINED
    {
        return None;
    }
    // What the budget allows: the first pass's CPU per iteration (its wall clock per
    // iteration when no CPU was measured) and slope over the judged window.
    let pace = match result.throughput.cpu_ms_per_iter {
        cpu if cpu > 0.0 => cpu / 1000.0,
        _ => result.wall_s / result.iterations.max(1) as f64,
    };
    let by_time = if pace > 0.0 {
        RERUN_SECONDS / pace
    } else {
        f64::INFINITY
    };
    let allowed = by_time
        .min(RERUN_LEAKED_BYTES / slope)
        .clamp(RERUN_JUDGED.1 as f64, RERUN_MOST as f64) as u64;
    let blocks = result.heap.leak_blocks_per_iter;
    let (judged, interval) = if blocks < GROWS_BLOCKS {
        // Growth inside blocks: about five samples of the added bytes an iteration, over
        // the longest window allowed, as the growths may be far apart.
        (allowed.min(RERUN_GROWTH_JUDGED), slope / 5.0)
    } else {
        // A block of the leak's mean size is sampled with chance 1 - e^-5 > 99 %.
        let needed = (TARGET_SAMPLES / blocks).ceil() as u64;
        (needed.clamp(RERUN_JUDGED.0, allowed), slope / blocks / 5.0)
    };
    let interval = (interval.floor() as u64).clamp(1, sampling.interval_bytes.max(1));
    Some(Rerun {
        plan: Plan {
            iterations: plan.warmup + judged,
            warmup: plan.warmup,
            duration: None,
            ..plan.clone()
        },
        interval,
    })
}

/// Takes the re-run's suspects into the first pass's result, with their share of the
/// first pass's slope; a re-run that did not finish leaves the sampled suspects and says
/// why.
pub fn adopt(mut first: CaseResult, rerun: &Rerun, second: CaseResult) -> CaseResult {
    let slope = first.heap.leak_bytes_per_iter;
    let mut attribution = Attribution {
        pass: AttributionPass::Rerun,
        interval_bytes: rerun.interval,
        iterations: second.iterations,
        warmup: second.warmup_iterations,
        wall_s: second.wall_s,
        explained: 0.0,
        note: None,
    };
    if second.sampling.is_none() || second.error.is_some() {
        attribution.note = Some(format!(
            "the re-run ended {}{}; the sampled suspects stand",
            second.verdict.as_str(),
            second
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        attribution.explained = explained(&first);
        first.attribution = Some(attribution);
        return first;
    }
    first.suspects = second
        .suspects
        .into_iter()
        .map(|s| s.with_share(slope))
        .collect();
    attribution.explained = explained(&first);
    if let Some(dropped) = second.sampling.map(|s| s.dropped).filter(|&d| d > 0) {
        attribution.note = Some(format!(
            "{dropped} samples found the table full: the re-run under-counts"
        ));
    }
    first.attribution = Some(attribution);
    first
}

/// The whole attribution of a finished case: the sampled pass's, then, when [`plan`]
/// asks for one, the re-run that `rerun` soaks (`None` when it could not run, e.g. the
/// soak is being interrupted: the sampled suspects stand) adopted into the result.
pub fn attribute<E>(
    mut result: CaseResult,
    case_plan: &Plan,
    rerun: impl FnOnce(&Rerun) -> Result<Option<CaseResult>, E>,
) -> Result<CaseResult, E> {
    result.attribution = sampled(&result);
    let Some(planned) = plan(&result, case_plan) else {
        return Ok(result);
    };
    Ok(match rerun(&planned)? {
        Some(second) => adopt(result, &planned, second),
        None => result,
    })
}
