//! `index.html` rendered by a real browser (headless Chromium): one section per case, two
//! timelines (bytes, blocks) for every case that ran, the merged band of a long soak, the
//! warm-up shading, and text that needed escaping shown as text. A screenshot is left
//! next to the page for a person to look at.

mod support;

use std::path::Path;

#[path = "support/browser.rs"]
mod browser;

use browser::headless;

use avsoak::report::{Onset, Verdict};

#[test]
fn the_page_renders_one_timeline_pair_per_case_that_ran() {
    let mut report = support::rich_report();
    // A late leak: its onset is marked on both timelines.
    let late = report
        .results
        .iter_mut()
        .find(|r| r.verdict == Verdict::Leak && !r.series.is_empty())
        .expect("a leak that ran");
    late.heap.onset = Some(Onset {
        iteration: 60,
        bytes_per_iter: 462_784.0,
    });
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    let _ = std::fs::remove_dir_all(&dir);
    report.write(&dir).unwrap();
    let page = dir.join("index.html");

    let dom = String::from_utf8(headless(&page, &["--dump-dom"]).stdout).unwrap();
    let ran = report
        .results
        .iter()
        .filter(|r| !r.series.is_empty())
        .count();
    assert_eq!(ran, 5);
    assert_eq!(
        dom.matches("<section class=\"case").count(),
        report.results.len()
    );
    assert_eq!(
        dom.matches("<svg class=\"timeline\" data-quantity=\"live bytes\"")
            .count(),
        ran
    );
    assert_eq!(
        dom.matches("<svg class=\"timeline\" data-quantity=\"live blocks\"")
            .count(),
        ran
    );
    assert_eq!(dom.matches("<polyline class=\"series\"").count(), 2 * ran);
    assert_eq!(dom.matches("<line class=\"fit\"").count(), 2 * ran);
    assert!(dom.matches("<rect class=\"warmup\"").count() >= ran);
    assert_eq!(dom.matches("<line class=\"onset\"").count(), 2);
    assert!(dom.contains("growth begins after iteration 60"));
    // Each leak with growing suspects has its flame graph, topped by the allocating call.
    let leaks = report
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Leak && !r.suspects.is_empty())
        .count();
    assert!(leaks > 0);
    assert_eq!(dom.matches("<svg class=\"flame\"").count(), leaks);
    assert!(dom.contains("<title>x264_picture_alloc: +"));
    // Only the 30,000-iteration soak was merged into buckets, so only it has a band.
    assert_eq!(dom.matches("<polygon class=\"band\"").count(), 2);
    // Text that looks like markup stays text: the browser made no element of it.
    assert!(dom.contains("&lt;alloc::vec::Vec&lt;u8&gt; as core::clone::Clone&gt;::clone"));
    assert!(dom.contains("muxer &lt;mp4&gt; refused"));
    assert!(!dom.contains("<mp4>"));
    assert!(dom.contains("skipped: kvazaar not found"));
    assert!(dom.contains("5 of 7 cases passed, 1 skipped."));

    let shot = dir.join("index.png");
    headless(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2400",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // A blank page compresses to a few kilobytes; this one has tables and plots.
    assert!(png.len() > 40_000, "{} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}
