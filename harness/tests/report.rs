//! Reports: the fields DESIGN.md's schema fixes are all there, and the summary reads as
//! it should (an `insta` snapshot).

use std::collections::BTreeMap;

use avsoak_harness::heap::Suspect;
use avsoak_harness::report::{
    CaseResult, HeapFigures, ObjectFigures, Outcome, Provenance, Report, Sampling, Throughput,
    Verdict,
};
use avsoak_harness::scenario::Expect;
use avsoak_harness::series::{Bucket, Series};
use avsoak_harness::soak::Sample;

fn result(variant: &str, expect: Expect, verdict: Verdict, slope: f64) -> CaseResult {
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
            trend_p: if slope > 0.0 { 1.8e-49 } else { 0.5 },
            trend_blocks_p: 0.5,
            late_bytes_per_iter: slope,
            upstream_bytes_per_iter: 0.0,
            residual_bytes_per_iter: slope,
            peak_live_bytes: 16_000_000,
            end_live_bytes: 16_000_000,
            teardown_live_bytes: Some(257_200),
            allocs_per_iter: 1.0,
            alloc_bytes_per_iter: 462_784.0,
        },
        throughput: Throughput {
            iters_per_s: 250.0,
            frames_per_s: 250.0,
            bytes_per_s: 1e6,
        },
        suspects: vec![Suspect {
            bytes: 46_000_000,
            blocks: 100,
            samples: 58,
            frames: vec![
                "memalign".into(),
                "x264_malloc".into(),
                "x264_picture_alloc".into(),
            ],
        }],
        sampling: Some(Sampling {
            interval_bytes: 524_288,
            taken: 60,
            dropped: 0,
        }),
        error: None,
        note: None,
        wall_s: 1.5,
        about: String::new(),
        series: series(2, |i| (i as i64 + 1, i as i64 + 1), &[]),
        objects: BTreeMap::new(),
    }
}

/// A named gauge's value after iteration `i`.
type Gauge<'a> = (&'a str, fn(u64) -> i64);

/// `n` iterations of (live bytes, live blocks) = `live(i)`, with the named gauges at
/// `gauge(i)`.
fn series(n: u64, live: impl Fn(u64) -> (i64, i64), gauges: &[Gauge]) -> Vec<Bucket> {
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

fn report() -> Report {
    let mut provenance = Provenance::here(
        "abc1234".into(),
        "rustc 1.95.0".into(),
        BTreeMap::from([("x264".into(), "build 164".into())]),
    );
    provenance.host = "host".into();
    provenance.cpus = 2;
    provenance.started_at = "2026-11-21T23:00:00Z".into();
    let mut report = Report::new(provenance);
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
    crash.error = Some("killed by SIGSEGV after 0 of 120 iterations".into());
    report.results.push(crash);
    report
}

#[test]
fn report_json_has_every_field_the_schema_fixes() {
    let json: serde_json::Value = serde_json::to_value(report()).unwrap();
    assert_eq!(json["schema"], "avsoak.report/1");
    for key in ["git_rev", "host", "cpus", "rustc", "libs", "started_at"] {
        assert!(!json["provenance"][key].is_null(), "provenance.{key}");
    }
    let row = &json["results"][1];
    for key in [
        "scenario",
        "variant",
        "expect",
        "verdict",
        "outcome",
        "iterations",
        "warmup_iterations",
        "heap",
        "throughput",
        "suspects",
        "error",
    ] {
        assert!(row.get(key).is_some(), "results[].{key}");
    }
    for key in [
        "leak_bytes_per_iter",
        "leak_blocks_per_iter",
        "trend_p",
        "peak_live_bytes",
        "end_live_bytes",
        "allocs_per_iter",
        "alloc_bytes_per_iter",
    ] {
        assert!(row["heap"][key].is_number(), "heap.{key}");
    }
    for key in ["iters_per_s", "frames_per_s", "bytes_per_s"] {
        assert!(row["throughput"][key].is_number(), "throughput.{key}");
    }
    for key in ["bytes", "blocks", "frames"] {
        assert!(!row["suspects"][0][key].is_null(), "suspects[].{key}");
    }
    assert_eq!(
        (
            row["expect"].as_str(),
            row["verdict"].as_str(),
            row["outcome"].as_str()
        ),
        (Some("leak"), Some("leak"), Some("pass"))
    );
    // The series stays out of the JSON (it goes to series/*.csv).
    assert!(row.get("samples").is_none());
    // And the JSON reads back.
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back.results.len(), 3);
}

#[test]
fn summary_shows_suspects_only_where_they_explain_growth() {
    let md = report().markdown();
    insta::assert_snapshot!(md);
}

#[test]
fn write_creates_the_run_folder() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-write");
    let _ = std::fs::remove_dir_all(&dir);
    report().write(&dir).unwrap();
    for file in [
        "report.json",
        "summary.md",
        "series/picture-pool.pooled.640x480.csv",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let csv = std::fs::read_to_string(dir.join("series/picture-pool.pooled.640x480.csv")).unwrap();
    assert_eq!(
        csv,
        "iteration,iterations,live_bytes,live_bytes_min,live_bytes_max,live_blocks,\
         live_blocks_min,live_blocks_max,judged\n0,1,1,1,1,1,1,1,0\n1,1,2,2,2,2,2,2,0\n"
    );
}

#[test]
fn pipeline_objects_become_columns_and_a_summary_line() {
    let mut report = report();
    let r = &mut report.results[0];
    r.series = series(
        2,
        |i| (i as i64 + 1, i as i64 + 1),
        &[("frame_queue", |_| 3), ("live_packets", |i| 26 + i as i64)],
    );
    r.objects = BTreeMap::from([
        ("frame_queue".to_owned(), ObjectFigures { end: 3, max: 3 }),
        (
            "live_packets".to_owned(),
            ObjectFigures { end: 27, max: 27 },
        ),
    ]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-objects");
    let _ = std::fs::remove_dir_all(&dir);
    report.write(&dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("series/picture-pool.pooled.640x480.csv")).unwrap();
    assert_eq!(
        csv,
        "iteration,iterations,live_bytes,live_bytes_min,live_bytes_max,live_blocks,\
         live_blocks_min,live_blocks_max,judged,frame_queue,frame_queue_min,frame_queue_max,\
         live_packets,live_packets_min,live_packets_max\n\
         0,1,1,1,1,1,1,1,0,3,3,3,26,26,26\n1,1,2,2,2,2,2,2,0,3,3,3,27,27,27\n"
    );
    let md = report.markdown();
    assert!(
        md.contains(
            "- pipeline objects at the end: frame_queue 3 (max 3), live_packets 27 (max 27)"
        ),
        "{md}"
    );
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["results"][0]["objects"]["live_packets"]["max"], 27);
}

#[test]
fn an_unwritable_folder_is_an_error_naming_it() {
    let err = report()
        .write(std::path::Path::new("/proc/avsoak-cannot-write-here"))
        .unwrap_err();
    assert!(
        err.to_string().contains("/proc/avsoak-cannot-write-here"),
        "{err}"
    );
}
