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

use super::Plan;
use crate::report::{Attribution, AttributionPass, CaseResult, Verdict};

/// The share of the slope below which the sampled suspects do not explain a leak.
pub const EXPLAINED: f64 = 0.5;

/// Leaked blocks the re-run's judged window aims to hold. Each is sampled with chance
/// ≥ 99 %, so about 59 gained and none lost: a sign test of `2^-59 ≈ 2e-18`, under the
/// family threshold (`SUSPECT_ALPHA` / the stacks that changed) for up to 10⁸ stacks.
pub const TARGET_SAMPLES: f64 = 60.0;

/// The fewest and most judged iterations a re-run soaks.
pub const RERUN_JUDGED: (u64, u64) = (40, 200);

/// The re-run for a result, when one is due: its plan and sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerun {
    /// The re-run's plan: the case's warm-up, then the judged window.
    pub plan: Plan,
    /// Its sampling interval in bytes.
    pub interval: u64,
}

/// The share of the measured slope the suspects explain (0 when nothing grew).
pub fn explained(result: &CaseResult) -> f64 {
    let slope = result.heap.leak_bytes_per_iter;
    if slope <= 0.0 {
        return 0.0;
    }
    result
        .suspects
        .iter()
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

/// The re-run a `leak` needs, or why it needs none. A leak that grows no blocks (one
/// block grown by `realloc`, say) has no count for the sign test to see at any interval,
/// so it gets no re-run, and the note says so.
pub fn plan(result: &CaseResult, plan: &Plan) -> Result<Option<Rerun>, String> {
    let Some(sampling) = result.sampling else {
        return Ok(None);
    };
    let slope = result.heap.leak_bytes_per_iter;
    if result.verdict != Verdict::Leak || slope <= 0.0 || explained(result) >= EXPLAINED {
        return Ok(None);
    }
    let blocks = result.heap.leak_blocks_per_iter;
    if blocks < 0.05 {
        return Err(format!(
            "the leak grows existing blocks ({blocks:.3} blocks/iteration): no sampled \
             count can name it"
        ));
    }
    let judged = ((TARGET_SAMPLES / blocks).ceil() as u64).clamp(RERUN_JUDGED.0, RERUN_JUDGED.1);
    // A block of the leak's mean size is sampled with chance 1 - e^-5 > 99 %.
    let block_bytes = slope / blocks;
    let interval = ((block_bytes / 5.0).floor() as u64).clamp(1, sampling.interval_bytes.max(1));
    Ok(Some(Rerun {
        plan: Plan {
            iterations: plan.warmup + judged,
            warmup: plan.warmup,
            duration: None,
            ..plan.clone()
        },
        interval,
    }))
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
    match plan(&result, case_plan) {
        Ok(None) => Ok(result),
        Err(why) => {
            if let Some(a) = &mut result.attribution {
                a.note = Some(why);
            }
            Ok(result)
        }
        Ok(Some(planned)) => Ok(match rerun(&planned)? {
            Some(second) => adopt(result, &planned, second),
            None => result,
        }),
    }
}
