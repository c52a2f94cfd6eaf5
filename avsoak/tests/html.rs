//! `index.html` rendered by a real browser (headless Chromium): one section per case, two
//! timelines (bytes, blocks) for every case that ran, the merged band of a long soak, the
//! warm-up shading, and text that needed escaping shown as text. A screenshot is left
//! next to the page for a person to look at.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium to render with: `AVSOAK_CHROMIUM`, or `chromium` on the PATH (Debian's
/// package, which `cargo xtask deps` installs).
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("AVSOAK_CHROMIUM") {
        return path.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
                .find(|p| p.is_file())
        })
        .expect("no chromium on the PATH: `cargo xtask deps` installs Debian's `chromium`")
}

fn headless(page: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn the_page_renders_one_timeline_pair_per_case_that_ran() {
    let report = support::rich_report();
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

mod compare_page {
    use super::*;
    use avsoak::compare::{
        BackendResult, CliSideBySide, Comparison, Kind, LeakSlope, RatePoint, Setup, Skipped,
        SCHEMA,
    };
    use avsoak::stats::Trend;

    fn point(target: u32, kbps: f64, psnr: f64, fps: f64, peak: i64) -> RatePoint {
        RatePoint {
            target,
            frames: 120,
            encode_s: 120.0 / fps,
            frames_per_s: fps,
            bytes: (kbps * 1000.0 / 8.0 * 4.0) as u64,
            kbps,
            bits_per_pixel: kbps * 1000.0 / 30.0 / (640.0 * 480.0),
            psnr_y: psnr - 1.5,
            psnr,
            ssim_y: 0.9 + psnr / 1000.0,
            allocs_per_frame: 8.0,
            alloc_bytes_per_frame: 1e5,
            peak_live_bytes: peak,
        }
    }

    fn backend(name: &str, codec: &str, kind: Kind, points: Vec<RatePoint>) -> BackendResult {
        BackendResult {
            backend: name.into(),
            codec: codec.into(),
            kind,
            settings: "preset=veryfast".into(),
            points,
            leak: Some(LeakSlope {
                lifetimes: 20,
                frames_per_lifetime: 8,
                bytes_per_lifetime: 21.0,
                blocks_per_lifetime: 0.0,
                p: 0.4,
                trend: Trend::Flat,
            }),
            upstream: None,
            error: None,
        }
    }

    /// Three video backends, a still backend, one that failed, one skipped.
    pub fn comparison() -> Comparison {
        let video = |name: &str, codec: &str, fps: f64, peak: i64, q: f64| {
            let points = [250u32, 1000, 2000]
                .iter()
                .map(|&t| point(t, f64::from(t) * 1.02, q + (f64::from(t)).log2(), fps, peak))
                .collect();
            backend(name, codec, Kind::Video, points)
        };
        let mut failed = backend("libaom-av1", "AV1", Kind::Video, Vec::new());
        failed.error = Some("crash: SIGSEGV (segmentation fault)".into());
        failed.leak = None;
        let mut leaky = video("x264-direct-leak", "H.264", 250.0, 60 << 20, 30.0);
        leaky.leak.as_mut().unwrap().trend = Trend::Growing;
        leaky.leak.as_mut().unwrap().bytes_per_lifetime = 460_800.0;
        Comparison {
            schema: SCHEMA.into(),
            provenance: support::provenance(),
            setup: Setup {
                width: 640,
                height: 480,
                fps_num: 30,
                fps_den: 1,
                frames: 120,
                source: "camera <scene> & noise".into(),
                bitrates_kbps: vec![250, 1000, 2000],
                reference_kbps: 1000,
                still_qualities: vec![30, 50],
                reference_quality: 50,
                stills: 10,
                rules: vec!["the same frames for all".into()],
            },
            backends: vec![
                video("x264-direct", "H.264", 290.0, 50 << 20, 31.0),
                video("libx265", "HEVC", 70.0, 80 << 20, 32.0),
                leaky,
                backend(
                    "libheif-x265",
                    "HEVC in HEIF",
                    Kind::Still,
                    vec![
                        point(30, 500.0, 34.0, 13.0, 14 << 20),
                        point(50, 5000.0, 36.0, 11.0, 14 << 20),
                    ],
                ),
                failed,
            ],
            skipped: vec![Skipped {
                backend: "kvazaar".into(),
                reason: "pkg-config kvazaar: not found".into(),
            }],
            cli: Some(CliSideBySide::new(
                "ffmpeg -f rawvideo … -f null -".into(),
                vec![280.0, 300.0, 290.0],
                vec![290.0, 295.0, 285.0],
            )),
        }
    }

    #[test]
    fn the_table_names_every_backend_its_failure_and_what_was_skipped() {
        let c = comparison();
        let table = c.table();
        for name in ["x264-direct", "libx265", "libheif-x265", "x264-direct-leak"] {
            assert!(
                table.lines().any(|l| l.starts_with(name)),
                "{name} in\n{table}"
            );
        }
        assert!(table.contains("GROWS 450.0 KiB/life"), "{table}");
        assert!(table.contains("failed: crash: SIGSEGV"), "{table}");
        assert!(
            table.contains("kvazaar: pkg-config kvazaar: not found"),
            "{table}"
        );
        // Medians 290 (ffmpeg) and 290 (avsoak).
        assert!(table.contains("ratio 1.000x"), "{table}");
        let back: Comparison = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(back.schema, "avsoak.compare/1");
        assert_eq!(back.backends.len(), c.backends.len());
        assert_eq!(back.skipped, c.skipped);
        assert_eq!(
            back.backends[2].leak.as_ref().unwrap().trend,
            Trend::Growing
        );
    }

    #[test]
    fn the_page_draws_a_line_per_backend_and_a_dot_per_measured_backend() {
        let c = comparison();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-html");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("index.html");
        std::fs::write(&page, c.html()).unwrap();
        let dom = String::from_utf8(headless(&page, &["--dump-dom"]).stdout).unwrap();
        let plot = |name: &str| {
            let start = dom
                .find(&format!("data-plot=\"{name}\""))
                .unwrap_or_else(|| panic!("no {name} plot in the page"));
            let end = start + dom[start..].find("</svg>").unwrap();
            dom[start..end].to_owned()
        };
        let rate = plot("rate-quality");
        let speed = plot("speed-memory");
        // Three video backends measured rate points (the failed one none; the still
        // backend is only in the tables and the speed/memory plot).
        assert_eq!(rate.matches("<polyline class=\"backend\"").count(), 3);
        assert!(!rate.contains("libheif-x265"));
        assert_eq!(speed.matches("<circle class=\"backend\"").count(), 4);
        assert!(!rate.contains("libaom-av1"));
        // Text that needed escaping is text.
        assert!(dom.contains("camera &lt;scene&gt; &amp; noise"));
        headless(
            &page,
            &[
                &format!("--screenshot={}", dir.join("index.png").display()),
                "--window-size=1200,1400",
            ],
        );
        assert!(std::fs::metadata(dir.join("index.png")).unwrap().len() > 20_000);
    }
}
