//! The encoder comparison's files from a made-up comparison: the table, the JSON round
//! trip, and the page rendered by headless Chromium.

#[path = "../../avsoak/tests/support/browser.rs"]
mod browser;

use std::path::Path;

use avsoak::report::Provenance;
use avsoak::stats::Trend;

/// Fixed provenance, so the page does not depend on the machine.
fn provenance() -> Provenance {
    let mut provenance = Provenance::here(
        "abc1234".into(),
        "rustc 1.95.0".into(),
        [("x264".to_owned(), "build 164".to_owned())].into(),
    );
    provenance.host = "host".into();
    provenance.started_at = "2026-11-21T23:00:00Z".into();
    provenance
}
use avsoak_scenarios::compare::model::{
    BackendResult, CliSideBySide, Comparison, Kind, LeakSlope, RatePoint, Setup, Skipped, SCHEMA,
};
use browser::headless;

fn point(target: u32, kbps: f64, psnr: f64, fps: f64, peak: i64) -> RatePoint {
    RatePoint {
        target,
        frames: 120,
        encode_s: 120.0 / fps,
        frames_per_s: fps,
        cpu_ms_per_frame: 1000.0 / fps,
        realtime_factor: fps / 30.0,
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
        bd: None,
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
        provenance: provenance(),
        setup: Setup {
            width: 640,
            height: 480,
            fps_num: 30,
            fps_den: 1,
            frames: 120,
            source: "camera <scene> & noise".into(),
            input: None,
            bitrates_kbps: vec![250, 1000, 2000],
            reference_kbps: 1000,
            still_qualities: vec![30, 50],
            reference_quality: 50,
            stills: 10,
            rules: vec!["the same frames for all".into()],
            configs: Vec::new(),
            rate_control: Default::default(),
            threads: None,
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
        reference: None,
    }
}

#[test]
fn bd_rate_against_a_reference_is_zero_for_itself_and_says_why_when_it_cannot() {
    // Three rate points: too few for the cubic fit, and every cell says so.
    let mut c = comparison();
    c.measure_bd("x264-direct").unwrap();
    let table = c.table();
    assert!(
        table.contains("Bjøntegaard deltas against x264-direct"),
        "{table}"
    );
    assert!(
        table.contains("n/a: the reference has 3 rate points"),
        "{table}"
    );
    // A fourth point, twice the rate and one dB more, on every video curve.
    let mut c = comparison();
    for b in c
        .backends
        .iter_mut()
        .filter(|b| b.kind == Kind::Video && !b.points.is_empty())
    {
        let mut top = b.points.last().unwrap().clone();
        top.target *= 2;
        top.kbps *= 2.0;
        top.psnr += 1.0;
        top.ssim_y = 1.0 - (1.0 - top.ssim_y) / 2.0;
        b.points.push(top);
    }
    c.measure_bd("x264-direct").unwrap();
    let bd = |name: &str| {
        c.backends
            .iter()
            .find(|b| b.backend == name)
            .unwrap()
            .bd
            .clone()
            .unwrap()
    };
    let own = bd("x264-direct");
    assert_eq!(
        (own.rate_psnr.value, own.psnr_db.value),
        (Some(0.0), Some(0.0))
    );
    // libx265's curve is x264-direct's one dB higher at the same rates.
    let hevc = bd("libx265");
    assert!((hevc.psnr_db.value.unwrap() - 1.0).abs() < 1e-9, "{hevc:?}");
    assert!(hevc.rate_psnr.value.unwrap() < 0.0, "{hevc:?}");
    // The failed backend has no points; the still backend gets none at all.
    assert!(bd("libaom-av1")
        .rate_psnr
        .why
        .unwrap()
        .contains("0 rate points"));
    assert!(c
        .backends
        .iter()
        .find(|b| b.kind == Kind::Still)
        .unwrap()
        .bd
        .is_none());
    let json: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
    assert_eq!(json["reference"], "x264-direct");
    assert_eq!(
        json["backends"][1]["bd"]["psnr_db"]["value"]
            .as_f64()
            .map(|v| (v * 1e6).round()),
        Some(1e6)
    );
    let page = c.html();
    assert!(page.contains("BD-rate PSNR"), "the page shows the table");
    assert!(
        page.contains("libx265 (BD-rate -"),
        "the rate/quality plot's key carries each curve's BD-rate"
    );

    let why = comparison().measure_bd("nope").unwrap_err();
    assert!(
        why.contains("\"nope\"") && why.contains("x264-direct"),
        "{why}"
    );
    let why = comparison().measure_bd("libheif-x265").unwrap_err();
    assert!(why.contains("video backend"), "{why}");
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
