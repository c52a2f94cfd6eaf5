//! The Bjøntegaard delta: how much more (or less) bitrate one rate/quality curve needs
//! than a reference for the same quality (BD-rate), and how much more quality it gives
//! at the same bitrate (BD-PSNR).
//!
//! Each curve is fitted with the classic cubic polynomial (VCEG-M33): log₁₀ of the rate
//! as a cubic in quality, by least squares over its rate points (at least
//! [`MIN_POINTS`]). The two fits are integrated over the quality range both curves
//! cover; the mean difference `d` of log₁₀ rate gives BD-rate `10^d − 1`. BD-PSNR swaps
//! the axes: quality as a cubic in log₁₀ rate, integrated over the rate range both
//! cover. Curves without enough points or overlap get the reason instead of a number.
//!
//! ```
//! use avsoak_scenarios::compare::bdrate::{bd_rate, Curve};
//!
//! let reference = Curve::new(&[(250.0, 32.0), (500.0, 35.0), (1000.0, 38.0), (2000.0, 41.0)]);
//! // The same qualities at 90 % of the rates: 10 % fewer bits.
//! let cheaper = Curve::new(&[(225.0, 32.0), (450.0, 35.0), (900.0, 38.0), (1800.0, 41.0)]);
//! assert!((bd_rate(&reference, &cheaper).unwrap() + 0.10).abs() < 1e-9);
//! assert_eq!(bd_rate(&reference, &reference).unwrap(), 0.0);
//! ```

/// Fewest rate points a curve needs for the cubic fit.
pub const MIN_POINTS: usize = 4;

/// A rate/quality curve: (kbit/s, quality) points, e.g. quality in PSNR dB.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    points: Vec<(f64, f64)>,
}

impl Curve {
    /// The curve through `(rate, quality)` points, in any order.
    pub fn new(points: &[(f64, f64)]) -> Self {
        Curve {
            points: points.to_vec(),
        }
    }

    fn check(&self, name: &str) -> Result<(), String> {
        if self.points.len() < MIN_POINTS {
            return Err(format!(
                "{name} has {} rate points (at least {MIN_POINTS} needed)",
                self.points.len()
            ));
        }
        if let Some(&(rate, quality)) = self
            .points
            .iter()
            .find(|(r, q)| !(r.is_finite() && *r > 0.0 && q.is_finite()))
        {
            return Err(format!(
                "{name} has a point with no usable rate or quality ({rate} kbit/s, {quality})"
            ));
        }
        Ok(())
    }

    fn log_rates(&self) -> Vec<(f64, f64)> {
        self.points.iter().map(|&(r, q)| (r.log10(), q)).collect()
    }
}

/// BD-rate of `test` against `reference`, as a fraction (−0.10: 10 % fewer bits for the
/// same quality). 0 exactly for a curve against itself.
pub fn bd_rate(reference: &Curve, test: &Curve) -> Result<f64, String> {
    reference.check("the reference")?;
    test.check("the curve")?;
    if reference == test {
        return Ok(0.0);
    }
    // log-rate as a function of quality.
    let flip =
        |c: &Curve| -> Vec<(f64, f64)> { c.log_rates().iter().map(|&(lr, q)| (q, lr)).collect() };
    let mean = mean_difference(&flip(reference), &flip(test), "quality")?;
    Ok(10f64.powf(mean) - 1.0)
}

/// BD-PSNR (or BD-quality) of `test` against `reference`: its mean quality gain at the
/// same rate, in the curve's quality unit. 0 exactly for a curve against itself.
pub fn bd_quality(reference: &Curve, test: &Curve) -> Result<f64, String> {
    reference.check("the reference")?;
    test.check("the curve")?;
    if reference == test {
        return Ok(0.0);
    }
    mean_difference(&reference.log_rates(), &test.log_rates(), "bitrate")
}

/// The mean of `fit(test) − fit(reference)` over the `x` range both cover, each a cubic
/// least-squares fit of `y` on `x`.
fn mean_difference(
    reference: &[(f64, f64)],
    test: &[(f64, f64)],
    axis: &str,
) -> Result<f64, String> {
    let range = |p: &[(f64, f64)]| {
        p.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| {
                (lo.min(x), hi.max(x))
            })
    };
    let (lo_r, hi_r) = range(reference);
    let (lo_t, hi_t) = range(test);
    let (lo, hi) = (lo_r.max(lo_t), hi_r.min(hi_t));
    if hi - lo <= 1e-9 * hi.abs().max(1.0) {
        return Err(format!("the curves share no {axis} range"));
    }
    // Centred on the shared range, so the powers stay of one size.
    let mid = (lo + hi) / 2.0;
    let centred =
        |p: &[(f64, f64)]| -> Vec<(f64, f64)> { p.iter().map(|&(x, y)| (x - mid, y)).collect() };
    let a = cubic_fit(&centred(reference)).ok_or("the reference's points do not fix a cubic")?;
    let b = cubic_fit(&centred(test)).ok_or("the curve's points do not fix a cubic")?;
    let (lo, hi) = (lo - mid, hi - mid);
    Ok((integral(&b, lo, hi) - integral(&a, lo, hi)) / (hi - lo))
}

/// Least-squares cubic through the points: coefficients of 1, x, x², x³. `None` when
/// fewer than four distinct x values make the system singular.
fn cubic_fit(points: &[(f64, f64)]) -> Option<[f64; 4]> {
    // Normal equations, solved by Gauss–Jordan elimination with partial pivoting.
    let mut m = [[0.0f64; 5]; 4];
    for &(x, y) in points {
        let powers = [1.0, x, x * x, x * x * x];
        for (row, &pi) in m.iter_mut().zip(&powers) {
            for (cell, &pj) in row.iter_mut().zip(&powers) {
                *cell += pi * pj;
            }
            row[4] += pi * y;
        }
    }
    let scale = m
        .iter()
        .flat_map(|r| r[..4].iter())
        .fold(0.0f64, |a, v| a.max(v.abs()));
    for col in 0..4 {
        let pivot = (col..4).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() <= 1e-12 * scale {
            return None;
        }
        m.swap(col, pivot);
        let lead = m[col];
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let factor = row[col] / lead[col];
                for (cell, &l) in row.iter_mut().zip(&lead).skip(col) {
                    *cell -= factor * l;
                }
            }
        }
    }
    let c = [0, 1, 2, 3].map(|i| m[i][4] / m[i][i]);
    c.iter().all(|v| v.is_finite()).then_some(c)
}

fn integral(c: &[f64; 4], lo: f64, hi: f64) -> f64 {
    let primitive =
        |x: f64| c[0] * x + c[1] * x * x / 2.0 + c[2] * x.powi(3) / 3.0 + c[3] * x.powi(4) / 4.0;
    primitive(hi) - primitive(lo)
}

/// SSIM as decibels, `−10·log₁₀(1 − SSIM)`, the scale a BD-rate over SSIM is fitted on
/// (SSIM itself saturates near 1).
pub fn ssim_db(ssim: f64) -> f64 {
    -10.0 * (1.0 - ssim).max(1e-10).log10()
}
