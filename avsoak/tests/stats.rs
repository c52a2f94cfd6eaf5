//! The trend statistics on made-up series, before any codec is involved.

use avsoak::stats::{judge, judge_series, mann_kendall, theil_sen, Budget, Trend};
use proptest::prelude::*;

/// Deterministic noise in [-amplitude, amplitude], integer-valued like live bytes.
fn noise(seed: u64, n: usize, amplitude: f64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            ((unit * 2.0 - 1.0) * amplitude).round()
        })
        .collect()
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

const BASE: f64 = 3_000_000.0;

fn flat(n: usize) -> Vec<f64> {
    vec![BASE; n]
}

fn linear(n: usize, slope: f64) -> Vec<f64> {
    (0..n).map(|i| BASE + slope * i as f64).collect()
}

fn bytes(y: &[f64]) -> Trend {
    judge_series(y, &Budget::bytes()).trend
}

#[test]
fn theil_sen_and_mann_kendall_on_exact_lines() {
    let y = linear(50, 460_800.0);
    assert_eq!(theil_sen(&y), 460_800.0);
    let mk = mann_kendall(&y);
    assert_eq!(mk.s, (50 * 49 / 2) as f64);
    assert!(mk.p_increasing < 1e-10, "{mk:?}");
    let down: Vec<f64> = y.iter().rev().copied().collect();
    assert_eq!(theil_sen(&down), -460_800.0);
    assert!(mann_kendall(&down).p_increasing > 0.999);
    let mk = mann_kendall(&flat(50));
    assert_eq!((mk.s, mk.var_s, mk.p_increasing), (0.0, 0.0, 0.5));
}

#[test]
fn theil_sen_ignores_outliers() {
    let mut y = linear(100, 100.0);
    for i in (0..100).step_by(10) {
        y[i] += 50_000_000.0;
    }
    assert_eq!(theil_sen(&y), 100.0);
}

#[test]
fn flat_is_clean() {
    assert_eq!(bytes(&flat(100)), Trend::Flat);
}

#[test]
fn noisy_flat_is_clean() {
    for seed in 0..20 {
        let y = add(&flat(200), &noise(seed, 200, 50_000.0));
        assert_eq!(bytes(&y), Trend::Flat, "seed {seed}");
    }
}

#[test]
fn linear_growth_is_a_leak() {
    assert_eq!(bytes(&linear(100, 460_800.0)), Trend::Growing);
    // Small but steady: 64 B per iteration over 400 iterations, with noise.
    let y = add(&linear(400, 64.0), &noise(3, 400, 100.0));
    assert_eq!(bytes(&y), Trend::Growing);
}

#[test]
fn growth_under_the_budget_or_floor_is_clean() {
    // 8 B/iteration is under the 16 B budget, however regular.
    assert_eq!(bytes(&linear(400, 8.0)), Trend::Flat);
    // 100 B/iteration for 30 iterations is 2.9 KiB, under the 4 KiB floor.
    assert_eq!(bytes(&linear(30, 100.0)), Trend::Flat);
}

#[test]
fn a_step_is_bounded() {
    let y: Vec<f64> = (0..200)
        .map(|i| if i < 60 { BASE } else { BASE + 1_048_576.0 })
        .collect();
    assert_eq!(bytes(&y), Trend::Bounded);
}

#[test]
fn a_late_single_step_is_bounded_and_a_staircase_a_leak() {
    // A decoder's frame pool taking one more picture (150 KB, 6 blocks) late in the
    // window, on a series that dips every 30 iterations (seeks).
    let pool = |i: usize, at: usize| {
        let dip = if i % 30 == 16 { -400_000.0 } else { 0.0 };
        BASE + dip + if i >= at { 150_000.0 } else { 0.0 }
    };
    let late: Vec<f64> = (0..100).map(|i| pool(i, 78)).collect();
    assert_eq!(bytes(&add(&late, &noise(3, 100, 400.0))), Trend::Bounded);
    // The same rise every 25 iterations goes on: a leak.
    let stairs: Vec<f64> = (0..100)
        .map(|i| BASE + 150_000.0 * (i / 25) as f64)
        .collect();
    assert_eq!(bytes(&stairs), Trend::Growing);
    // A linear leak that starts late is still a leak.
    let late_leak: Vec<f64> = (0..100usize)
        .map(|i| BASE + 4_096.0 * i.saturating_sub(60) as f64)
        .collect();
    assert_eq!(bytes(&late_leak), Trend::Growing);
}

#[test]
fn a_plateau_is_bounded_in_a_long_window_and_a_leak_in_a_short_one() {
    // Like x265's lazily filled tables: ~1.2 KB per iteration for 40 iterations, then flat.
    let plateau = |n: usize| -> Vec<f64> {
        let y: Vec<f64> = (0..n)
            .map(|i| BASE + 1_200.0 * (i.min(40) as f64))
            .collect();
        add(&y, &noise(11, n, 200.0))
    };
    assert_eq!(bytes(&plateau(400)), Trend::Bounded);
    assert_eq!(bytes(&plateau(40)), Trend::Growing);
}

#[test]
fn a_sawtooth_is_clean() {
    // A pool that fills for 10 iterations and is released.
    let y: Vec<f64> = (0..300)
        .map(|i| BASE + 10_000.0 * (i % 10) as f64)
        .collect();
    assert_eq!(bytes(&y), Trend::Flat);
}

#[test]
fn alternating_levels_are_clean() {
    // Two encoder sizes taking turns (a resolution switch every iteration).
    let y: Vec<f64> = (0..100)
        .map(|i| if i % 2 == 0 { BASE } else { BASE + 2_000_000.0 })
        .collect();
    assert_eq!(bytes(&y), Trend::Flat);
}

#[test]
fn outliers_on_a_flat_series_are_clean_and_on_a_leak_still_a_leak() {
    let mut y = flat(200);
    for i in (5..200).step_by(17) {
        y[i] += 20_000_000.0;
    }
    assert_eq!(bytes(&y), Trend::Flat);
    let mut y = linear(200, 4096.0);
    for i in (5..200).step_by(17) {
        y[i] -= 20_000_000.0;
    }
    assert_eq!(bytes(&y), Trend::Growing);
}

#[test]
fn blocks_alone_can_flag_a_leak() {
    // One 16-byte block per iteration: 16 B/iteration is at the byte budget, but one
    // block per iteration is far over the block budget.
    let b = linear(200, 16.0);
    let k = linear(200, 1.0);
    let j = judge(&b, &k, &Budget::bytes(), &Budget::blocks());
    assert_eq!(j.bytes.trend, Trend::Flat);
    assert_eq!(j.blocks.trend, Trend::Growing);
    assert_eq!(j.trend, Trend::Growing);
}

#[test]
fn too_short_is_never_a_leak() {
    assert_eq!(bytes(&linear(9, 1e9)), Trend::Flat);
}

#[test]
fn long_series_are_thinned_without_losing_the_slope() {
    let y = linear(20_000, 300.0);
    assert!((theil_sen(&y) - 300.0).abs() < 1e-6);
    assert_eq!(bytes(&y), Trend::Growing);
}

fn shape() -> impl Strategy<Value = Vec<f64>> {
    (20usize..300, 0u64..1000, 0u8..5, 0.0f64..100_000.0).prop_map(|(n, seed, kind, size)| {
        let base: Vec<f64> = match kind {
            0 => flat(n),
            1 => linear(n, size.round()),
            2 => (0..n)
                .map(|i| BASE + if i > n / 3 { size.round() } else { 0.0 })
                .collect(),
            3 => (0..n)
                .map(|i| BASE + (size.round() * (i % 7) as f64))
                .collect(),
            _ => (0..n)
                .map(|i| BASE + size.round() * (i.min(n / 4) as f64))
                .collect(),
        };
        add(&base, &noise(seed, n, size / 4.0))
    })
}

proptest! {
    #[test]
    fn adding_a_constant_never_changes_the_verdict(y in shape(), c in -1_000_000_000i64..1_000_000_000) {
        let shifted: Vec<f64> = y.iter().map(|v| v + c as f64).collect();
        prop_assert_eq!(bytes(&y), bytes(&shifted));
    }

    #[test]
    fn any_linear_trend_over_the_budget_is_found(
        n in 40usize..400,
        slope in 32.0f64..1_000_000.0,
        seed in any::<u64>(),
    ) {
        let budget = Budget::bytes();
        // Growth must clear the floor; noise up to half a step per iteration.
        prop_assume!(slope * (n - 1) as f64 > 2.0 * budget.min_growth);
        let y = add(&linear(n, slope.round()), &noise(seed, n, slope / 2.0));
        prop_assert_eq!(bytes(&y), Trend::Growing);
    }

    #[test]
    fn a_series_that_never_rises_is_never_a_leak(steps in proptest::collection::vec(0.0f64..1e6, 20..300)) {
        let mut level = 1e12;
        let y: Vec<f64> = steps.iter().map(|s| { level -= s.round(); level }).collect();
        prop_assert_eq!(bytes(&y), Trend::Flat);
    }
}

#[test]
fn the_sign_test_matches_the_binomial_tail() {
    use avsoak::stats::sign_test;
    // P(Bin(10, ½) ≥ 8) = (45 + 10 + 1) / 1024.
    assert!((sign_test(8, 2) - 56.0 / 1024.0).abs() < 1e-15);
    // All gained: exactly 2^-n.
    assert!((sign_test(40, 0) / 0.5f64.powi(40) - 1.0).abs() < 1e-12);
    // Large counts stay finite and ordered.
    let (a, b) = (sign_test(5_200, 4_800), sign_test(5_400, 4_600));
    assert!(a > b && b > 0.0 && a < 1e-4, "{a} {b}");
    assert_eq!(sign_test(3, 3), 1.0);
}

#[test]
fn a_late_leak_has_an_onset_and_an_early_one_none() {
    use avsoak::stats::onset;
    // ±32 KB of deterministic noise on 5 MB; the leak adds 20 KB per iteration.
    let noise = |i: usize| ((i * 7919) % 17) as f64 * 4096.0 - 32_768.0;
    let late: Vec<f64> = (0..200)
        .map(|i| {
            5e6 + noise(i)
                + if i > 120 {
                    20_000.0 * (i - 120) as f64
                } else {
                    0.0
                }
        })
        .collect();
    let found = onset(&late).expect("a late leak");
    assert!((117..=123).contains(&found.index), "{found:?}");
    assert!((found.slope / 20_000.0 - 1.0).abs() < 0.05, "{found:?}");
    let early: Vec<f64> = (0..200)
        .map(|i| 5e6 + noise(i) + 20_000.0 * i as f64)
        .collect();
    assert_eq!(onset(&early), None);
    let flat: Vec<f64> = (0..200).map(|i| 5e6 + noise(i)).collect();
    assert_eq!(onset(&flat), None);
    assert_eq!(onset(&late[..8]), None, "too short");
}
