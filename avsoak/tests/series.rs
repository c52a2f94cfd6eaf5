//! The bounded series: however many iterations, at most its capacity in buckets, every
//! iteration counted once, extremes kept.

use std::collections::BTreeMap;

use avsoak::series::Series;
use avsoak::soak::Sample;

fn sample(i: u64, live: i64) -> Sample {
    Sample {
        i,
        live_bytes: live,
        live_blocks: live / 100,
        gauges: BTreeMap::from([("queue".to_owned(), (i % 7) as i64)]),
        ..Sample::default()
    }
}

#[test]
fn a_million_iterations_fit_in_the_capacity() {
    let mut series = Series::new(256);
    let n = 1_000_000u64;
    for i in 0..n {
        // A dip at one iteration, a peak at another.
        let live = match i {
            333_333 => 1,
            777_777 => 9_999_999,
            _ => 1_000_000 + (i as i64 % 10),
        };
        series.push(&sample(i, live));
        assert!(series.buckets().len() <= 256);
    }
    let b = series.buckets();
    assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), n);
    // Evenly merged: every bucket but the last has the width.
    assert!(b[..b.len() - 1].iter().all(|b| b.count == series.width()));
    // Consecutive and in order.
    for pair in b.windows(2) {
        assert_eq!(pair[0].last() + 1, pair[1].first);
    }
    assert_eq!(b.iter().map(|b| b.live_bytes.min).min(), Some(1));
    assert_eq!(b.iter().map(|b| b.live_bytes.max).max(), Some(9_999_999));
    assert_eq!(
        b.last().unwrap().live_bytes.last,
        1_000_000 + (999_999 % 10)
    );
    assert_eq!(b.iter().map(|b| b.gauges["queue"].max).max(), Some(6));
}

#[test]
fn below_capacity_every_iteration_is_its_own_bucket() {
    let mut series = Series::new(64);
    for i in 0..64 {
        series.push(&sample(i, 1000 + i as i64));
    }
    assert_eq!(series.width(), 1);
    assert_eq!(series.buckets().len(), 64);
    assert_eq!(series.buckets()[10].live_bytes.last, 1010);
    series.push(&sample(64, 0));
    assert_eq!(series.width(), 2);
    assert_eq!(series.buckets().len(), 33);
}

#[test]
fn a_gap_starts_a_new_bucket() {
    let mut series = Series::new(8);
    for i in (0..4).chain(10..12) {
        series.push(&sample(i, 5));
    }
    assert_eq!(series.buckets().len(), 6);
    assert_eq!(series.buckets()[4].first, 10);
}
