//! BD-rate and BD-PSNR on curves whose answer is known.

use avsoak_scenarios::compare::bdrate::{bd_quality, bd_rate, ssim_db, Curve};

fn reference() -> Vec<(f64, f64)> {
    // A curve shaped like x264's: about 3 dB per doubling, flattening at the top.
    vec![
        (250.0, 31.2),
        (500.0, 34.6),
        (1000.0, 37.5),
        (2000.0, 40.1),
        (4000.0, 42.2),
    ]
}

#[test]
fn rates_at_nine_tenths_are_minus_ten_percent() {
    let base = Curve::new(&reference());
    let cheaper: Vec<(f64, f64)> = reference().iter().map(|&(r, q)| (0.9 * r, q)).collect();
    let bd = bd_rate(&base, &Curve::new(&cheaper)).unwrap();
    assert!((bd * 100.0 + 10.0).abs() < 0.1, "{bd}");
    // Exactly, in fact: a constant factor shifts log-rate by a constant.
    assert!((bd + 0.1).abs() < 1e-9, "{bd}");
    // And the other way round.
    let dearer: Vec<(f64, f64)> = reference().iter().map(|&(r, q)| (r / 0.9, q)).collect();
    let back = bd_rate(&base, &Curve::new(&dearer)).unwrap();
    assert!((back - (1.0 / 0.9 - 1.0)).abs() < 1e-9, "{back}");
}

#[test]
fn a_curve_against_itself_is_exactly_zero() {
    let base = Curve::new(&reference());
    assert_eq!(bd_rate(&base, &base), Ok(0.0));
    assert_eq!(bd_quality(&base, &base), Ok(0.0));
}

#[test]
fn half_a_decibel_more_at_every_rate_is_a_bd_psnr_of_half_a_decibel() {
    let base = Curve::new(&reference());
    let better: Vec<(f64, f64)> = reference().iter().map(|&(r, q)| (r, q + 0.5)).collect();
    let gain = bd_quality(&base, &Curve::new(&better)).unwrap();
    assert!((gain - 0.5).abs() < 1e-9, "{gain}");
    // The same curve costs fewer bits for the same quality.
    assert!(bd_rate(&base, &Curve::new(&better)).unwrap() < 0.0);
}

#[test]
fn too_few_points_or_no_overlap_say_why() {
    let base = Curve::new(&reference());
    let three = Curve::new(&reference()[..3]);
    let why = bd_rate(&base, &three).unwrap_err();
    assert!(
        why.contains("3 rate points") && why.contains("at least 4"),
        "{why}"
    );
    // Qualities 50–60 dB never meet the reference's 31–42 dB.
    let apart: Vec<(f64, f64)> = reference().iter().map(|&(r, q)| (r, q + 20.0)).collect();
    let why = bd_rate(&base, &Curve::new(&apart)).unwrap_err();
    assert!(why.contains("no quality range"), "{why}");
    let far: Vec<(f64, f64)> = reference().iter().map(|&(r, q)| (r * 100.0, q)).collect();
    let why = bd_quality(&base, &Curve::new(&far)).unwrap_err();
    assert!(why.contains("no bitrate range"), "{why}");
    let zero = Curve::new(&[(0.0, 30.0), (1.0, 31.0), (2.0, 32.0), (3.0, 33.0)]);
    assert!(bd_rate(&base, &zero)
        .unwrap_err()
        .contains("no usable rate"));
    // Four points at two qualities fix no cubic.
    let flat = Curve::new(&[(250.0, 35.0), (500.0, 35.0), (1000.0, 38.0), (2000.0, 38.0)]);
    assert!(bd_rate(&base, &flat)
        .unwrap_err()
        .contains("do not fix a cubic"));
}

#[test]
fn ssim_in_decibels() {
    assert!((ssim_db(0.99) - 20.0).abs() < 1e-9);
    assert!((ssim_db(0.9) - 10.0).abs() < 1e-9);
}
