//! A made-up run shared by the report tests: fixed results whose every figure is known,
//! so snapshots and rendered pages can be checked without running a codec.

#![allow(dead_code)]

use std::collections::BTreeMap;

use avsoak::heap::Suspect;
use avsoak::report::{
    Attribution, AttributionPass, CaseResult, Fit, HeapFigures, ObjectFigures, Outcome, Provenance,
    Report, Sampling, Throughput, Verdict,
};
use avsoak::scenario::Expect;
use avsoak::series::{Bucket, Series};
use avsoak::soak::Sample;

/// A named gauge's value after iteration `i`.
pub type Gauge<'a> = (&'a str, fn(u64) -> i64);

/// `n` iterations of (live bytes, live blocks) = `live(i)`, with the named gauges at
/// `gauge(i)`, bounded as the soak bounds them.
pub fn series(n: u64, live: impl Fn(u64) -> (i64, i64), gauges: &[Gauge]) -> Vec<Bucket> {
    let mut series = Series::default();
    for i in 0..n {
        series.push(&Sample {
            i,
            live_bytes: live(i).0,
            live_blocks: live(i).1,
            gauges: gauges
                .iter()
                .map(|(name, g)| (name.to_string(), g(i)))
                .collect(),
            ..Sample::default()
        });
    }
    series.into_buckets()
}

/// A picture-pool result at 640x480 with the given verdict and leak slope.
pub fn result(variant: &str, expect: Expect, verdict: Verdict, slope: f64) -> CaseResult {
    CaseResult {
        id: format!("picture-pool/{variant}/640x480"),
        scenario: "picture-pool".into(),
        variant: variant.into(),
        params: BTreeMap::from([("size".into(), "640x480".into())]),
        expect,
        verdict,
        outcome: Outcome::Pass,
        iterations: 120,
        warmup_iterations: 20,
        heap: HeapFigures {
            leak_bytes_per_iter: slope,
            leak_blocks_per_iter: if slope > 0.0 { 1.0 } else { 0.0 },
            grows: slope > 0.0 && verdict == Verdict::Leak,
            trend_p: if slope > 0.0 { 1.8e-49 } else { 0.5 },
            trend_blocks_p: 0.5,
            late_bytes_per_iter: slope,
            upstream_bytes_per_iter: 0.0,
            upstream_slack_bytes_per_iter: 0.0,
            residual_bytes_per_iter: slope,
            peak_live_bytes: 16_000_000,
            end_live_bytes: 16_000_000,
            teardown_live_bytes: Some(257_200),
            allocs_per_iter: 1.0,
            alloc_bytes_per_iter: 462_784.0,
            // The line the page draws: through the made-up series' judged window.
            fit_bytes: Some(Fit {
                from: 20,
                to: 119,
                intercept: 16_000_000.0 - slope * 119.0,
                slope,
            }),
            fit_blocks: Some(Fit {
                from: 20,
                to: 119,
                intercept: 30.0,
                slope: if slope > 0.0 { 1.0 } else { 0.0 },
            }),
            onset: None,
            per_second: None,
        },
        throughput: Throughput {
            iters_per_s: 250.0,
            frames_per_s: 250.0,
            bytes_per_s: 1e6,
            cpu_ms_per_iter: 5.5,
        },
        suspects: vec![Suspect {
            bytes: 46_000_000,
            blocks: 100,
            samples: 58,
            growth_bytes_per_iter: slope,
            growth_blocks_per_iter: 1.0,
            share: (slope > 0.0).then_some(1.0),
            gained: 58,
            lost: 0,
            p: 3.5e-18,
            frames: vec![
                "memalign".into(),
                "x264_malloc".into(),
                "x264_picture_alloc".into(),
            ],
            addresses: Vec::new(),
            held_by: Vec::new(),
        }],
        attribution: (verdict == Verdict::Leak).then_some(Attribution {
            pass: AttributionPass::Sampled,
            interval_bytes: 524_288,
            iterations: 120,
            warmup: 20,
            wall_s: 0.0,
            explained: 1.0,
            note: None,
        }),
        sampling: Some(Sampling {
            interval_bytes: 524_288,
            taken: 60,
            dropped: 0,
        }),
        error: None,
        note: None,
        profile: None,
        wall_s: 1.5,
        cpu: None,
        resources: None,
        origins: Vec::new(),
        libraries: BTreeMap::new(),
        about: String::new(),
        series: series(
            120,
            |i| {
                let noise = ((i * 7919) % 13) as i64 * 64;
                (
                    15_000_000 + slope as i64 * i as i64 + noise,
                    200 + (slope > 0.0) as i64 * i as i64,
                )
            },
            &[],
        ),
        objects: BTreeMap::new(),
    }
}

/// The provenance every made-up run shares.
pub fn provenance() -> Provenance {
    let mut provenance = Provenance::here(
        "abc1234".into(),
        "rustc 1.95.0".into(),
        BTreeMap::from([("x264".into(), "build 164".into())]),
    );
    provenance.host = "host".into();
    provenance.cpus = 2;
    provenance.started_at = "2026-11-21T23:00:00Z".into();
    provenance
}

/// Three picture-pool results: clean, a leak with its suspect, an expected crash.
pub fn report() -> Report {
    let mut report = Report::new(provenance());
    report
        .results
        .push(result("pooled", Expect::Clean, Verdict::Clean, 0.0));
    report.results.push(result(
        "per-frame-alloc-leak",
        Expect::Leak,
        Verdict::Leak,
        462_784.0,
    ));
    let mut crash = result("clean-after-repoint", Expect::Crash, Verdict::Crash, 0.0);
    crash.suspects.clear();
    crash.series.truncate(0);
    crash.error = Some("killed by SIGSEGV after 0 of 120 iterations".into());
    report.results.push(crash);
    report
}

/// [`report`] plus what else a page must show: a bounded pool with pipeline objects, a
/// long soak whose series was merged, a skipped case, and an error whose message and
/// stack need escaping.
pub fn rich_report() -> Report {
    let mut report = report();
    let mut bounded = result("borrowed-planes", Expect::Clean, Verdict::Bounded, 0.0);
    bounded.id = "player-queue/steady/memory".into();
    bounded.scenario = "player-queue".into();
    bounded.variant = "steady".into();
    bounded.series = series(
        120,
        |i| {
            (
                4_000_000 + if i >= 60 { 150_000 } else { 0 },
                900 + (i >= 60) as i64 * 6,
            )
        },
        &[
            ("live_packets", |i| 25 + (i % 2) as i64),
            ("frame_queue", |_| 3),
        ],
    );
    bounded.objects = BTreeMap::from([
        (
            "live_packets".to_owned(),
            ObjectFigures { end: 26, max: 26 },
        ),
        ("frame_queue".to_owned(), ObjectFigures { end: 3, max: 3 }),
    ]);
    bounded.suspects[0].frames = vec![
        "malloc".into(),
        "av_buffer_pool_get".into(),
        "<alloc::vec::Vec<u8> as core::clone::Clone>::clone".into(),
    ];
    report.results.push(bounded);

    let mut long = result("churn", Expect::Clean, Verdict::Clean, 0.0);
    long.id = "player-queue/churn/memory".into();
    long.scenario = "player-queue".into();
    long.variant = "churn".into();
    long.iterations = 30_000;
    long.warmup_iterations = 3_000;
    long.series = series(
        30_000,
        |i| (6_000_000 + ((i * 2_654_435_761) % 97) as i64 * 1000, 1200),
        &[],
    );
    report.results.push(long);

    let mut skipped = result("complete", Expect::Clean, Verdict::Skipped, 0.0);
    skipped.id = "encode-abort/complete/kvazaar".into();
    skipped.scenario = "encode-abort".into();
    skipped.outcome = Outcome::Skip;
    skipped.series.clear();
    skipped.heap = HeapFigures::default();
    skipped.throughput = Throughput::default();
    skipped.suspects.clear();
    skipped.sampling = None;
    skipped.iterations = 0;
    skipped.warmup_iterations = 0;
    skipped.note = Some("skipped: kvazaar not found (pkg-config kvazaar: not found)".into());
    report.results.push(skipped);

    let mut error = result("fragmented", Expect::Clean, Verdict::Error, 0.0);
    error.id = "fmp4-mux/fragmented/256k".into();
    error.scenario = "fmp4-mux".into();
    error.outcome = Outcome::Fail;
    error.series.truncate(30);
    error.iterations = 30;
    error.error = Some("iteration 29: muxer <mp4> refused: \"moov\" & 'mdat' out of order".into());
    report.results.push(error);
    report
}
