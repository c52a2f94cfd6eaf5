//! From a series of heap samples to a verdict. Pure functions, no I/O, no heap counters.
//!
//! - [`theil_sen`]: the median of all pairwise slopes; robust to up to ~29 % outliers.
//! - [`mann_kendall`]: a rank test for a monotonic trend, with the tie correction (live
//!   bytes repeat exactly when nothing changes).
//! - [`judge`]: a leak is a Theil–Sen slope above the budget, a significant increasing
//!   Mann–Kendall trend, and total growth above a floor. Growth that stops (a cache or
//!   pool filling up) is *bounded*: the window's second half no longer grows.
//!
//! ```
//! use avsoak::stats::{judge_series, Budget, Trend};
//!
//! let flat: Vec<f64> = (0..100).map(|_| 1e6).collect();
//! let leak: Vec<f64> = (0..100).map(|i| 1e6 + 460_800.0 * i as f64).collect();
//! let b = Budget::bytes();
//! assert_eq!(judge_series(&flat, &b).trend, Trend::Flat);
//! assert_eq!(judge_series(&leak, &b).trend, Trend::Growing);
//! ```

use serde::{Deserialize, Serialize};

/// Series longer than this are thinned evenly before the O(n²) estimators run.
pub const MAX_POINTS: usize = 1500;

/// What growth is tolerated before a series counts as leaking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Largest slope (units per iteration) that is not a leak.
    pub per_iter: f64,
    /// Total growth over the window (slope × iterations) below which nothing is judged a
    /// leak, however regular.
    pub min_growth: f64,
    /// Significance level of the Mann–Kendall test (one-sided, increasing).
    pub alpha: f64,
    /// Growth must also exceed this many times the noise (median absolute deviation of
    /// the samples around the fitted trend), so a noisy flat series is not a leak.
    pub noise_factor: f64,
}

impl Budget {
    /// Defaults for live bytes: 16 B/iteration, 4 KiB of growth, α = 0.001, 3× noise.
    pub const fn bytes() -> Self {
        Budget {
            per_iter: 16.0,
            min_growth: 4096.0,
            alpha: 0.001,
            noise_factor: 3.0,
        }
    }

    /// Defaults for live blocks: 0.02 blocks/iteration, 8 blocks of growth, α = 0.001,
    /// 3× noise.
    pub const fn blocks() -> Self {
        Budget {
            per_iter: 0.02,
            min_growth: 8.0,
            alpha: 0.001,
            noise_factor: 3.0,
        }
    }
}

/// The shape of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    /// No growth beyond the budget.
    #[default]
    Flat,
    /// Grew beyond the budget, but the second half of the window no longer grows.
    Bounded,
    /// Grows beyond the budget through the end of the window.
    Growing,
}

/// The judgement of one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesJudgement {
    /// The verdict for this series.
    pub trend: Trend,
    /// Theil–Sen slope over the whole window (units per iteration).
    pub slope: f64,
    /// One-sided Mann–Kendall p-value for an increasing trend over the whole window.
    pub p: f64,
    /// Theil–Sen slope over the second half of the window.
    pub late_slope: f64,
    /// Points judged.
    pub n: usize,
}

/// Evenly thins `(x, y)` to at most `max` points, keeping the first and the last.
fn thin(y: &[f64], max: usize) -> Vec<(f64, f64)> {
    let n = y.len();
    if n <= max {
        return y.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect();
    }
    (0..max)
        .map(|k| {
            let i = k * (n - 1) / (max - 1);
            (i as f64, y[i])
        })
        .collect()
}

/// Theil–Sen slope of `y` against its index: the median of `(y[j]-y[i])/(j-i)` over all
/// pairs `i < j`. 0 for fewer than two points.
pub fn theil_sen(y: &[f64]) -> f64 {
    let points = thin(y, MAX_POINTS);
    let n = points.len();
    if n < 2 {
        return 0.0;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let (xi, yi) = points[i];
            let (xj, yj) = points[j];
            slopes.push((yj - yi) / (xj - xi));
        }
    }
    median(&mut slopes)
}

fn median(values: &mut [f64]) -> f64 {
    let n = values.len();
    let mid = n / 2;
    let (_, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = values[..mid]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// Mann–Kendall test result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannKendall {
    /// S statistic: concordant minus discordant pairs.
    pub s: f64,
    /// Variance of S under no trend, corrected for ties.
    pub var_s: f64,
    /// Continuity-corrected standard score.
    pub z: f64,
    /// One-sided p-value for an increasing trend.
    pub p_increasing: f64,
}

/// Mann–Kendall test of `y` for a monotonic trend.
pub fn mann_kendall(y: &[f64]) -> MannKendall {
    let points = thin(y, MAX_POINTS);
    let n = points.len();
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += match points[j].1.partial_cmp(&points[i].1) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let mut sorted: Vec<f64> = points.iter().map(|p| p.1).collect();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1usize;
    for k in 1..=sorted.len() {
        if k < sorted.len() && sorted[k] == sorted[k - 1] {
            run += 1;
        } else {
            let t = run as f64;
            ties += t * (t - 1.0) * (2.0 * t + 5.0);
            run = 1;
        }
    }
    let nf = n as f64;
    let var_s = ((nf * (nf - 1.0) * (2.0 * nf + 5.0)) - ties) / 18.0;
    let s = s as f64;
    let z = if var_s <= 0.0 {
        0.0
    } else if s > 0.0 {
        (s - 1.0) / var_s.sqrt()
    } else if s < 0.0 {
        (s + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    let p_increasing = if z == 0.0 {
        0.5
    } else {
        0.5 * erfc(z / std::f64::consts::SQRT_2)
    };
    MannKendall {
        s,
        var_s,
        z,
        p_increasing,
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |rel. error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Fewer points than this are never judged to grow.
pub const MIN_POINTS: usize = 10;

/// Median absolute deviation of `y` from the line `intercept + slope * i` (the line's
/// intercept taken as the median residual): a robust scale of the noise around a trend.
fn residual_mad(y: &[f64], slope: f64) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    let residuals: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v - slope * i as f64)
        .collect();
    let centre = median_of(&residuals);
    let deviations: Vec<f64> = residuals.iter().map(|r| (r - centre).abs()).collect();
    median_of(&deviations)
}

/// Whether `y` grows steadily: slope over the budget, a significant increasing trend,
/// and total growth over both `floor` and the noise around the trend.
fn grows(y: &[f64], budget: &Budget, floor: f64) -> (bool, f64, f64) {
    let slope = theil_sen(y);
    let p = mann_kendall(y).p_increasing;
    let growth = slope * (y.len().saturating_sub(1)) as f64;
    let noise = budget.noise_factor * residual_mad(y, slope);
    (
        y.len() >= MIN_POINTS / 2
            && slope > budget.per_iter
            && p < budget.alpha
            && growth > floor.max(noise),
        slope,
        p,
    )
}

/// The split of `y` into two parts of at least `side` points each that leaves the least
/// absolute deviation from the two parts' medians (every split when short, about 200
/// evenly spread ones otherwise), with the rise of the medians from the first part to
/// the second.
fn best_split(y: &[f64], side: usize) -> Option<(usize, f64)> {
    let n = y.len();
    if side == 0 || n < 2 * side {
        return None;
    }
    let deviation = |part: &[f64]| {
        let centre = median_of(part);
        part.iter().map(|v| (v - centre).abs()).sum::<f64>()
    };
    let cost = |k: usize| deviation(&y[..k]) + deviation(&y[k..]);
    let stride = ((n - 2 * side) / 200).max(1);
    let k = (side..=n - side)
        .step_by(stride)
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))?;
    Some((k, median_of(&y[k..]) - median_of(&y[..k])))
}

/// Whether `y` is one rise between two flat levels, each at least
/// `max(MIN_POINTS, n / 10)` points long: growth that happened once (a pool taking one
/// more buffer late in the window) and stopped, not growth that goes on. Neither level
/// may grow steadily or hold a rise of its own above half the floor (a staircase is a
/// leak).
fn single_step(y: &[f64], budget: &Budget) -> bool {
    let side = MIN_POINTS.max(y.len() / 10);
    let Some((k, rise)) = best_split(y, side) else {
        return false;
    };
    let floor = budget.min_growth / 2.0;
    let level = |part: &[f64]| {
        !grows(part, budget, floor).0
            && best_split(part, MIN_POINTS / 2).is_none_or(|(_, r)| r <= floor)
    };
    let (before, after) = y.split_at(k);
    rise > 0.0 && level(before) && level(after)
}

/// Judges one series sampled once per iteration (warm-up already removed).
///
/// - *growing*: the second half of the window still grows steadily (a leak that started
///   late is still a leak), unless the whole window is one rise between two flat levels
///   (growth that happened once, late, and stopped: *bounded*);
/// - *bounded*: it does not, but the series rose: the whole window grows steadily, or the
///   second half's level stands above the first tenth's by more than the floor and the
///   noise, with a significant increasing trend (a step, a plateau after filling);
/// - *flat*: otherwise.
pub fn judge_series(y: &[f64], budget: &Budget) -> SeriesJudgement {
    let n = y.len();
    let (whole, slope, p) = grows(y, budget, budget.min_growth);
    let late = &y[n / 2..];
    let (late_grows, late_slope, _) = grows(late, budget, budget.min_growth / 2.0);
    let trend = if n < MIN_POINTS {
        Trend::Flat
    } else if late_grows && !single_step(y, budget) {
        Trend::Growing
    } else if late_grows {
        Trend::Bounded
    } else {
        let head = &y[..(n / 10).max(MIN_POINTS / 2).min(n)];
        let rise = median_of(late) - median_of(head);
        let noise = budget.noise_factor
            * residual_mad(late, late_slope).max(residual_mad(head, theil_sen(head)));
        let stepped = rise > budget.min_growth.max(noise) && p < budget.alpha;
        if whole || stepped {
            Trend::Bounded
        } else {
            Trend::Flat
        }
    };
    SeriesJudgement {
        trend,
        slope,
        p,
        late_slope,
        n,
    }
}

/// The heap verdict from live bytes and live blocks together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeapJudgement {
    /// Growing if either series grows; bounded if either is bounded and none grows.
    pub trend: Trend,
    /// Live bytes.
    pub bytes: SeriesJudgement,
    /// Live blocks.
    pub blocks: SeriesJudgement,
}

/// Judges live bytes and live blocks, each with its own budget.
pub fn judge(
    live_bytes: &[f64],
    live_blocks: &[f64],
    bytes: &Budget,
    blocks: &Budget,
) -> HeapJudgement {
    let b = judge_series(live_bytes, bytes);
    let k = judge_series(live_blocks, blocks);
    let trend = match (b.trend, k.trend) {
        (Trend::Growing, _) | (_, Trend::Growing) => Trend::Growing,
        (Trend::Bounded, _) | (_, Trend::Bounded) => Trend::Bounded,
        _ => Trend::Flat,
    };
    HeapJudgement {
        trend,
        bytes: b,
        blocks: k,
    }
}

/// The median of a slice (NaN for an empty one).
pub fn median_of(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    median(&mut v)
}

/// One-sided sign test: the chance that `gained + lost` fair coin flips give at least
/// `gained` heads, `P(Bin(gained + lost, ½) ≥ gained)`. A stack at rest gains as many
/// sampled allocations across a window as it loses (each allocation is sampled on its own
/// with the same chance), so conditioned on how many changed hands, its gains follow this
/// law; a leak gains without losing. Exact in log space for any count; 1 when `gained` is
/// not above half.
///
/// ```
/// use avsoak::stats::sign_test;
///
/// assert_eq!(sign_test(0, 0), 1.0);
/// assert!((sign_test(30, 0) - 0.5f64.powi(30)).abs() < 1e-20);
/// assert_eq!(sign_test(10, 12), 1.0);
/// ```
pub fn sign_test(gained: u64, lost: u64) -> f64 {
    let n = gained + lost;
    if n == 0 || 2 * gained <= n {
        return 1.0;
    }
    // ln of the first term, C(n, gained) / 2^n, then the rest of the tail by the ratio
    // of neighbouring terms, (n - i) / (i + 1), which is below 1 past the middle.
    let ln_choose: f64 = (1..=lost)
        .map(|i| ((gained + i) as f64 / i as f64).ln())
        .sum();
    let first = (ln_choose - n as f64 * std::f64::consts::LN_2).exp();
    let mut term = 1.0;
    let mut tail = 1.0;
    for i in gained..n {
        term *= (n - i) as f64 / (i + 1) as f64;
        tail += term;
        if term < 1e-18 * tail {
            break;
        }
    }
    (first * tail).min(1.0)
}

/// Where a leak that starts late begins: the point of a series after which it grows,
/// flat before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    /// Index of the last point before the growth.
    pub index: usize,
    /// Theil–Sen slope from there on, per index.
    pub slope: f64,
}

/// The onset of growth in `y`, when the series is flat and then grows: the hinge
/// `a + b·max(0, x − k)` fitted by least squares at every `k`, the best one kept when
/// it lies past the first tenth of the series, leaves at most a quarter of a straight
/// line's squared error, and the part before it grows at most a tenth as fast as the
/// part after. `None` for growth from the start, a series too short (under 12 points)
/// or one that does not grow.
///
/// ```
/// use avsoak::stats::onset;
///
/// let late: Vec<f64> = (0..100).map(|i| if i < 60 { 5e6 } else { 5e6 + 4096.0 * (i - 60) as f64 }).collect();
/// let found = onset(&late).unwrap();
/// assert_eq!((found.index, found.slope), (60, 4096.0));
/// let early: Vec<f64> = (0..100).map(|i| 5e6 + 4096.0 * i as f64).collect();
/// assert_eq!(onset(&early), None);
/// ```
pub fn onset(y: &[f64]) -> Option<ChangePoint> {
    let points = thin(y, 400);
    let n = points.len();
    if n < 12 {
        return None;
    }
    let sse = |k: Option<usize>| -> f64 {
        let z: Vec<f64> = points
            .iter()
            .map(|&(x, _)| match k {
                Some(k) => (x - points[k].0).max(0.0),
                None => x,
            })
            .collect();
        let mean_z = z.iter().sum::<f64>() / n as f64;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
        let (mut szz, mut szy) = (0.0, 0.0);
        for (zi, &(_, yi)) in z.iter().zip(&points) {
            szz += (zi - mean_z) * (zi - mean_z);
            szy += (zi - mean_z) * (yi - mean_y);
        }
        let b = if szz > 0.0 { szy / szz } else { 0.0 };
        let a = mean_y - b * mean_z;
        z.iter()
            .zip(&points)
            .map(|(zi, &(_, yi))| (yi - a - b * zi).powi(2))
            .sum()
    };
    let line = sse(None);
    let first = n / 10;
    let (k, best) = (first.max(1)..n - 5)
        .map(|k| (k, sse(Some(k))))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    if line <= 0.0 || best > 0.25 * line {
        return None;
    }
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let spacing = |from: usize, to: usize| (points[to].0 - points[from].0) / (to - from) as f64;
    let after = theil_sen(&values[k..]) / spacing(k, n - 1);
    let before = theil_sen(&values[..=k]) / spacing(0, k);
    if after <= 0.0 || before.abs() > 0.1 * after {
        return None;
    }
    Some(ChangePoint {
        index: points[k].0 as usize,
        slope: after,
    })
}
