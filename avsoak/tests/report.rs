//! Reports: the fields the report schema fixes are all there, and the summary reads as
//! it should (an `insta` snapshot).

mod support;

use std::collections::BTreeMap;

use avsoak::report::{ObjectFigures, Report};
use support::{report, series};

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
    assert!(dir.join("index.html").is_file());
    let csv = std::fs::read_to_string(dir.join("series/picture-pool.pooled.640x480.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "iteration,iterations,live_bytes,live_bytes_min,live_bytes_max,live_blocks,\
             live_blocks_min,live_blocks_max,judged",
            "0,1,15000000,15000000,15000000,200,200,200,0",
            "1,1,15000128,15000128,15000128,200,200,200,0",
        ]
    );
    assert_eq!(lines.len(), 121);
    assert_eq!(lines[21], "20,1,15000064,15000064,15000064,200,200,200,1");
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

/// The JSON of a fixed made-up run, whole: a renamed or lost field shows in review.
#[test]
fn report_json_of_a_made_up_run() {
    let json = serde_json::to_string_pretty(&support::rich_report()).unwrap();
    insta::assert_snapshot!(json);
}

/// The summary of the same run: bounded, skipped and failed cases together.
#[test]
fn summary_of_a_made_up_run() {
    insta::assert_snapshot!(support::rich_report().markdown());
}

/// JUnit: a suite per scenario, a case per case, failures typed by verdict with the
/// numbers, skips with their reason.
#[test]
fn junit_of_a_made_up_run() {
    let xml = support::rich_report().junit();
    insta::assert_snapshot!(xml);
    assert_eq!(xml.matches("<testsuite ").count(), 4);
    assert_eq!(xml.matches("<testcase ").count(), 7);
    assert_eq!(xml.matches("<failure ").count(), 1);
    assert_eq!(xml.matches("<skipped ").count(), 1);
}

/// A reporter of its own writes beside the standard ones, from the finished report.
#[test]
fn a_reporter_of_ones_own_writes_beside_the_standard_files() {
    use avsoak::render::Reporter;
    use std::path::PathBuf;

    struct LeakList;
    impl Reporter for LeakList {
        fn name(&self) -> &'static str {
            "leak list"
        }
        fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)> {
            let ids: Vec<&str> = report
                .results
                .iter()
                .filter(|r| r.verdict.as_str() == "leak")
                .map(|r| r.id.as_str())
                .collect();
            vec![("extra/leaks.txt".into(), ids.join("\n").into_bytes())]
        }
    }

    let report = report();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("own-reporter");
    let _ = std::fs::remove_dir_all(&dir);
    report.write_with(&dir, &[&LeakList]).unwrap();
    for file in ["report.json", "summary.md", "index.html", "junit.xml"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let leaks = std::fs::read_to_string(dir.join("extra/leaks.txt")).unwrap();
    let expected: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.verdict.as_str() == "leak")
        .map(|r| r.id.as_str())
        .collect();
    assert!(!expected.is_empty(), "the made-up run has a leak");
    assert_eq!(leaks, expected.join("\n"));
}

/// Reports start a stack at the call that allocated: past glibc's malloc family,
/// FFmpeg's and x264's wrappers and Rust's allocator layers; the frames stay whole.
#[test]
fn stacks_start_past_allocator_plumbing() {
    use avsoak::heap::Suspect;
    let suspect = |frames: &[&str]| Suspect {
        bytes: 1,
        blocks: 1,
        samples: 1,
        frames: frames.iter().map(|f| f.to_string()).collect(),
        ..Suspect::default()
    };
    let rust = suspect(&[
        "malloc",
        "alloc::alloc::alloc",
        "<alloc::alloc::Global>::alloc_impl_runtime",
        "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
        "<alloc::vec::Vec<T> as alloc::vec::spec_from_iter_nested::SpecFromIterNested<T,I>>::from_iter",
        "own_pipeline::Thumbnails::insert",
        "own_pipeline::Pipeline::iterate",
    ]);
    assert_eq!(
        rust.stack(8),
        "own_pipeline::Thumbnails::insert ← own_pipeline::Pipeline::iterate"
    );
    let x264 = suspect(&[
        "memalign",
        "x264_malloc",
        "x264_picture_alloc",
        "avsoak_scenarios::ffi::x264::AllocatedPicture::new",
    ]);
    assert_eq!(
        x264.stack(8),
        "x264_picture_alloc ← avsoak_scenarios::ffi::x264::AllocatedPicture::new"
    );
    let ffmpeg = suspect(&[
        "posix_memalign",
        "av_malloc",
        "av_mallocz",
        "avio_alloc_context",
    ]);
    assert_eq!(ffmpeg.stack(1), "avio_alloc_context");
    let from_elem = suspect(&[
        "malloc",
        "alloc::vec::Vec<T,A>::with_capacity_in",
        "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
        "avsoak_scenarios::player::planted_decode_leak",
    ]);
    assert_eq!(
        from_elem.stack(1),
        "avsoak_scenarios::player::planted_decode_leak"
    );
    // Nothing but plumbing: shown whole rather than not at all.
    let bare = suspect(&["malloc", "__rust_alloc"]);
    assert_eq!(bare.stack(8), "malloc ← __rust_alloc");
    assert_eq!(rust.frames.len(), 7, "the frames themselves are kept");
}
