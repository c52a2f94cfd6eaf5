//! The encoder comparison: quality falls with the bitrate (PSNR of the decoded output
//! against the source frames), the leak slope flags a leaking backend and not its clean
//! twin, and `avsoak-run compare` writes its table, JSON and page and names what it
//! skipped. One heap-reading test per process (nextest), as everywhere.

use std::process::Command;

use avsoak::stats::Trend;
use avsoak_scenarios::compare::model::{Comparison, Kind, RateControl, Setup};
use avsoak_scenarios::compare::{self, Backend, Plan};

fn setup(width: u32, height: u32, frames: u32, bitrates: &[u32]) -> Setup {
    Setup {
        width,
        height,
        fps_num: 30,
        fps_den: 1,
        frames,
        source: compare::SOURCE.into(),
        input: None,
        bitrates_kbps: bitrates.to_vec(),
        reference_kbps: bitrates[0],
        still_qualities: vec![20, 80],
        reference_quality: 20,
        stills: 2,
        rules: Vec::new(),
        configs: Vec::new(),
        rate_control: Default::default(),
        threads: None,
    }
}

fn plan(setup: Setup, lifetimes: u32) -> Plan {
    Plan {
        setup,
        options: Vec::new(),
        lifetimes,
        lifetime_frames: 2,
        time_only: false,
    }
}

/// Measures `name` at three bitrates and checks that PSNR, SSIM and the size rise with
/// the bitrate, and that every frame came back.
fn quality_rises_with_bitrate(name: &str, bitrates: &[u32]) {
    let backend = compare::resolve(name).unwrap().unwrap();
    let result = compare::measure(name, backend, &plan(setup(320, 240, 24, bitrates), 0));
    assert_eq!(result.error, None, "{name}");
    assert_eq!(result.points.len(), 3);
    for pair in result.points.windows(2) {
        let (low, high) = (&pair[0], &pair[1]);
        assert!(
            high.bytes > low.bytes,
            "{name}: {} !> {} bytes",
            high.bytes,
            low.bytes
        );
        assert!(
            high.psnr > low.psnr + 0.2,
            "{name}: PSNR {} !> {}",
            high.psnr,
            low.psnr
        );
        assert!(
            high.psnr_y > low.psnr_y,
            "{name}: PSNR-Y {} !> {}",
            high.psnr_y,
            low.psnr_y
        );
        assert!(
            high.ssim_y >= low.ssim_y,
            "{name}: SSIM {} < {}",
            high.ssim_y,
            low.ssim_y
        );
    }
    for p in &result.points {
        assert_eq!(p.frames, 24);
        assert!((25.0..70.0).contains(&p.psnr), "{name}: PSNR {} dB", p.psnr);
    }
}

#[test]
fn x264_direct_quality_rises_with_bitrate() {
    quality_rises_with_bitrate("x264-direct", &[100, 400, 1600]);
}

/// A format that is not H.26x. (FFmpeg's mpeg4 is no good here: on this camera it
/// reaches its finest quantiser, and its best quality, below 250 kbit/s at 320x240.)
#[test]
fn ffmpeg_vp9_quality_rises_with_bitrate() {
    quality_rises_with_bitrate("libvpx-vp9", &[30, 120, 480]);
}

#[test]
fn heif_stills_quality_rises_with_the_quality_setting() {
    let backend = compare::resolve("libheif-x265").unwrap().unwrap();
    assert_eq!(backend.kind(), Kind::Still);
    let result = compare::measure(
        "libheif-x265",
        backend,
        &plan(setup(320, 240, 8, &[100]), 0),
    );
    assert_eq!(result.error, None);
    let (low, high) = (&result.points[0], &result.points[1]);
    assert_eq!((low.target, high.target), (20, 80));
    assert_eq!(low.frames, 2);
    assert!(
        high.bytes > low.bytes && high.psnr > low.psnr + 1.0,
        "{low:?}\n{high:?}"
    );
}

#[test]
fn the_leak_slope_flags_the_leaking_control() {
    let backend = compare::resolve(compare::LEAK_CONTROL).unwrap().unwrap();
    assert_eq!(backend, Backend::X264DirectLeak);
    let result = compare::measure(
        compare::LEAK_CONTROL,
        backend,
        &plan(setup(160, 120, 4, &[200]), 16),
    );
    assert_eq!(result.error, None);
    let leak = result.leak.expect("lifetimes ran");
    assert_eq!(leak.trend, Trend::Growing, "{leak:?}");
    // One x264 picture of 160x120 I420 per lifetime: 28,800 bytes and x264's padding.
    let picture = 160.0 * 120.0 * 1.5;
    assert!(
        (picture..picture * 1.2 + 4096.0).contains(&leak.bytes_per_lifetime),
        "{leak:?}"
    );
    assert!((0.9..1.1).contains(&leak.blocks_per_lifetime), "{leak:?}");
}

#[test]
fn the_leak_slope_of_the_clean_twin_is_flat() {
    let backend = compare::resolve("x264-direct").unwrap().unwrap();
    let result = compare::measure(
        "x264-direct",
        backend,
        &plan(setup(160, 120, 4, &[200]), 16),
    );
    assert_eq!(result.error, None);
    let leak = result.leak.expect("lifetimes ran");
    assert_ne!(leak.trend, Trend::Growing, "{leak:?}");
    assert!(leak.bytes_per_lifetime.abs() < 256.0, "{leak:?}");
}

/// The stdout and `compare.json` (in `out`) of a compare run that must have succeeded.
fn succeeded(output: &std::process::Output, out: &std::path::Path) -> (String, Comparison) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = std::fs::read_to_string(out.join("compare.json")).unwrap();
    (stdout, serde_json::from_str(&json).unwrap())
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_avsoak-run"))
        .arg("compare")
        .args(args)
        .output()
        .expect("avsoak-run starts")
}

#[test]
fn compare_writes_table_json_and_page_and_names_what_it_skipped() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-cli");
    let _ = std::fs::remove_dir_all(&out);
    let output = run(&[
        "--backend",
        "x264-direct,libx264,libvpx-vp9,libopenh264,kvazaar",
        "--frames",
        "12",
        "--size",
        "160x120",
        "--bitrates",
        "40,400",
        "--reference-kbps",
        "400",
        "--lifetimes",
        "16",
        "--lifetime-frames",
        "2",
        "--rounds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("side by side (1 runs each"), "{stdout}");
    let json = std::fs::read_to_string(out.join("compare.json")).unwrap();
    let c: Comparison = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = c.backends.iter().map(|b| b.backend.as_str()).collect();
    assert_eq!(names, ["x264-direct", "libx264", "libvpx-vp9"]);
    for b in &c.backends {
        assert_eq!(b.error, None, "{}", b.backend);
        assert_eq!(b.points.len(), 2);
        assert!(b.points[1].psnr > b.points[0].psnr, "{}", b.backend);
        assert_eq!(b.leak.as_ref().unwrap().lifetimes, 16);
    }
    // kvazaar is not packaged here and FFmpeg lacks openh264; on a machine that has
    // them they run instead, and must then have worked.
    for name in ["libopenh264", "kvazaar"] {
        match c.skipped.iter().find(|s| s.backend == name) {
            Some(skip) => assert!(!skip.reason.is_empty()),
            None => panic!("{name} neither ran nor was skipped"),
        }
    }
    let cli = c.cli.expect("the side by side ran");
    assert!(cli.ratio.is_finite() && cli.ratio > 0.0, "{cli:?}");
    assert!(cli
        .command
        .contains("-c:v libx264 -preset veryfast -b:v 400k"));
    assert!(
        !out.join("frames.yuv").exists(),
        "the raw frames are removed"
    );
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        page.contains("data-plot=\"rate-quality\"") && page.contains("data-plot=\"speed-memory\"")
    );
}

#[test]
fn bad_compare_arguments_are_named() {
    let output = run(&["--reference-kbps", "700", "--rounds", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "invalid --reference-kbps 700 (expected one of --bitrates [250, 500, 1000, 2000])"
        ),
        "{stderr}"
    );
    let output = run(&["--backend", "x266", "--rounds", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown backend \"x266\" (expected one of: x264-direct"),
        "{stderr}"
    );
    let output = run(&["--size", "17x9"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid width 17"), "{stderr}");
    let output = run(&["--lifetimes", "10"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid --lifetimes 10 (expected 0, or at least 16"),
        "{stderr}"
    );
}

#[test]
fn bd_rate_against_a_reference_backend_on_real_encodes() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-bd");
    let _ = std::fs::remove_dir_all(&out);
    let output = run(&[
        "--backend",
        "x264-direct,libx264",
        "--frames",
        "12",
        "--size",
        "160x120",
        "--bitrates",
        "50,100,200,400",
        "--reference-kbps",
        "200",
        "--lifetimes",
        "0",
        "--rounds",
        "0",
        "--reference",
        "x264-direct",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, c) = succeeded(&output, &out);
    assert!(
        stdout.contains("Bjøntegaard deltas against x264-direct"),
        "{stdout}"
    );
    assert_eq!(c.reference.as_deref(), Some("x264-direct"));
    let own = c.backends[0].bd.as_ref().unwrap();
    assert_eq!(
        own.rate_psnr.value,
        Some(0.0),
        "the reference against itself"
    );
    assert_eq!(own.rate_ssim.value, Some(0.0));
    let other = c.backends[1].bd.as_ref().unwrap();
    // The same library through FFmpeg: a finite figure or the reason there is none.
    match (other.rate_psnr.value, &other.rate_psnr.why) {
        (Some(v), _) => assert!(v.is_finite() && v > -1.0, "{other:?}"),
        (None, why) => assert!(why.as_deref().is_some_and(|w| !w.is_empty())),
    }
}

#[test]
fn a_bad_reference_is_refused_before_any_encode() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-bad-reference");
    let _ = std::fs::remove_dir_all(&out);
    for (reference, expected) in [
        (
            "x266",
            "invalid --reference \"x266\" (expected one of the backends that run here",
        ),
        ("libheif-x265", "expected a video backend"),
    ] {
        let output = run(&[
            "--backend",
            "x264-direct,libheif-x265",
            "--reference",
            reference,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!out.exists(), "nothing written");
    }
}

/// A clip written as y4m by this test: 16 frames of the camera at 160x120.
fn y4m_clip(name: &str) -> (std::path::PathBuf, Vec<avsoak_fixtures::Frame>) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut camera = avsoak_fixtures::Camera::new(
        avsoak_fixtures::CameraConfig::new(160, 120)
            .pattern(avsoak_fixtures::Pattern::Scene { seed: 11 }),
    )
    .unwrap();
    let frames: Vec<_> = (0..16).map(|_| camera.next_frame()).collect();
    let path = dir.join("clip.y4m");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    avsoak_fixtures::y4m::write(&mut file, &frames, (25, 1)).unwrap();
    drop(file);
    (path, frames)
}

#[test]
fn a_y4m_clip_round_trips_through_input_frame_exact() {
    use avsoak_scenarios::compare::input;
    let (path, frames) = y4m_clip("compare-input-y4m");
    let (source, read) = input::load(&path, None, 100).unwrap();
    assert_eq!(read.len(), frames.len());
    for (a, b) in read.iter().zip(&frames) {
        assert_eq!(a.data(), b.data(), "frame {}", b.index());
    }
    assert_eq!(
        (source.width, source.height, source.fps_num, source.fps_den),
        (160, 120, 25, 1)
    );
    assert_eq!(source.checksum, input::checksum(&frames));
    assert_eq!(source.format, "y4m");
    // --frames caps what is read; --size scales.
    assert_eq!(input::load(&path, None, 5).unwrap().1.len(), 5);
    let (_, scaled) = input::load(&path, Some((80, 60)), 3).unwrap();
    assert_eq!((scaled[0].width(), scaled[0].height()), (80, 60));
}

#[test]
fn compare_encodes_the_users_clip_and_names_it() {
    let (path, frames) = y4m_clip("compare-input-run");
    let out = path.parent().unwrap().join("run");
    let output = run(&[
        "--input",
        path.to_str().unwrap(),
        "--backend",
        "x264-direct,libx264",
        "--bitrates",
        "50,100,200,400",
        "--reference-kbps",
        "200",
        "--lifetimes",
        "0",
        "--rounds",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, c) = succeeded(&output, &out);
    let source = c.setup.input.as_ref().expect("the input is named");
    assert_eq!(
        source.checksum,
        avsoak_scenarios::compare::input::checksum(&frames)
    );
    assert_eq!(
        (c.setup.width, c.setup.height, c.setup.frames),
        (160, 120, 16)
    );
    assert_eq!((c.setup.fps_num, c.setup.fps_den), (25, 1));
    assert!(c.setup.source.contains("clip.y4m") && c.setup.source.contains(&source.checksum));
    for b in &c.backends {
        assert_eq!(b.error, None, "{}", b.backend);
        assert!(b.points.iter().all(|p| p.frames == 16), "{}", b.backend);
        for p in &b.points {
            // Measured, not derived: some CPU went into every frame, and the real-time
            // factor is the frame rate over the clip's 25 fps.
            assert!(p.cpu_ms_per_frame > 0.0, "{}: {p:?}", b.backend);
            assert!(
                (p.realtime_factor - p.frames_per_s / 25.0).abs() < 1e-9,
                "{p:?}"
            );
        }
    }
    assert!(
        stdout.contains("clip.y4m"),
        "the table names the source: {stdout}"
    );
}

#[test]
fn an_ffmpeg_file_is_decoded_as_input() {
    use avsoak_scenarios::media::{self, Clip, Container};
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-input-mp4");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.mkv");
    std::fs::write(
        &path,
        &*media::fixture(Clip::STANDARD, Container::Matroska).unwrap(),
    )
    .unwrap();
    let (source, frames) = avsoak_scenarios::compare::input::load(&path, None, 10).unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(
        (source.width, source.height),
        (Clip::STANDARD.width, Clip::STANDARD.height)
    );
    assert!(source.format.contains("matroska"), "{}", source.format);
}

#[test]
fn a_missing_or_undecodable_input_is_refused_before_any_encode() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-input-bad");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, [0x42u8; 4096]).unwrap();
    let out = dir.join("run");
    for (input, expected) in [
        (dir.join("nope.y4m"), "cannot read it"),
        (junk, "FFmpeg cannot open it"),
    ] {
        let output = run(&[
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid --input {}", input.display()))
                && stderr.contains(expected),
            "{stderr}"
        );
        assert!(!out.exists(), "nothing written");
    }
}

#[test]
fn configs_parse_and_bad_ones_say_what_is_expected() {
    use avsoak_scenarios::compare::parse_config;
    let c = parse_config("hevc=libx265,preset=fast,x265-params=log-level=error").unwrap();
    assert_eq!((c.label.as_str(), c.backend.as_str()), ("hevc", "libx265"));
    assert_eq!(
        c.options,
        [
            ("preset".to_owned(), "fast".to_owned()),
            ("x265-params".to_owned(), "log-level=error".to_owned())
        ]
    );
    assert!(parse_config("plain=x264-direct")
        .unwrap()
        .options
        .is_empty());
    for (bad, why) in [
        ("libx264", "no label"),
        ("=libx264", "a label is"),
        ("a b=libx264", "a label is"),
        ("a=", "no backend"),
        ("a=libx264,preset", "\"preset\" is not key=value"),
    ] {
        let e = parse_config(bad).unwrap_err();
        assert!(e.contains(why) && e.contains("LABEL=BACKEND"), "{bad}: {e}");
    }
}

#[test]
fn an_unknown_encoder_option_is_refused_before_any_encode_naming_option_and_backend() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-bad-option");
    let _ = std::fs::remove_dir_all(&out);
    for (config, expected) in [
        (
            "a=libx264,presett=fast",
            "invalid --config \"a\": a (libx264): unknown option \"presett\"",
        ),
        (
            "b=x264-direct,reff=3",
            "invalid --config \"b\": b: x264-direct: unknown option \"reff\"",
        ),
        (
            "c=x264-direct,ref=lots",
            "bad value for option \"ref\"=\"lots\"",
        ),
        ("d=libheif-x265,preset=fast", "take no encoder options"),
    ] {
        let output = run(&["--config", config, "--out", out.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{config}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{config}: {stderr}");
        assert!(!out.exists(), "nothing written");
    }
    let output = run(&["--config", "x=libx264", "--config", "x=libx265"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("names two rows"));
}

/// FFmpeg's testsrc2 (moving, textured), 60 frames at 320x240, written as y4m by the
/// ffmpeg command line: a clip of the kind a user brings, on which rate control behaves.
fn testsrc2_clip(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("testsrc2.y4m");
    let made = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
        ])
        .args(["-frames:v", "60", "-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (cargo xtask deps installs it)");
    assert!(made.success());
    path
}

#[test]
fn two_presets_of_one_encoder_side_by_side_with_bd_rate() {
    let path = testsrc2_clip("compare-configs");
    let dir = path.parent().unwrap();
    let out = dir.join("run");
    let output = run(&[
        "--input",
        path.to_str().unwrap(),
        "--config",
        "fast=libx264,preset=ultrafast",
        "--config",
        "slow=libx264,preset=medium",
        "--reference",
        "fast",
        "--bitrates",
        "50,100,200,400",
        "--reference-kbps",
        "200",
        "--lifetimes",
        "0",
        "--rounds",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (_, c) = succeeded(&output, &out);
    let names: Vec<&str> = c.backends.iter().map(|b| b.backend.as_str()).collect();
    assert_eq!(names, ["fast", "slow"]);
    assert!(
        c.backends[1].settings.contains("preset=medium"),
        "{}",
        c.backends[1].settings
    );
    assert_eq!(
        c.backends[0].bd.as_ref().unwrap().rate_psnr.value,
        Some(0.0)
    );
    // x264's output is deterministic for a given build and thread count, and medium
    // against ultrafast saves far more than any rounding: -38.5 % on this clip here.
    let slow = c.backends[1].bd.as_ref().unwrap().rate_psnr.value.unwrap();
    assert!(
        slow < -0.05,
        "medium needs fewer bits than ultrafast: {slow}"
    );
}

#[test]
fn a_crf_ladder_of_two_presets_gives_bd_rate_against_the_reference() {
    // The issue's own command: medium against veryfast at CRF 20-38.
    let path = testsrc2_clip("compare-crf");
    let out = path.parent().unwrap().join("run");
    let output = run(&[
        "--input",
        path.to_str().unwrap(),
        "--config",
        "a=libx264,preset=veryfast",
        "--config",
        "b=libx264,preset=medium",
        "--reference",
        "a",
        "--crf",
        "20,26,32,38",
        "--lifetimes",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, c) = succeeded(&output, &out);
    assert_eq!(c.setup.rate_control, RateControl::Crf);
    assert_eq!(c.setup.bitrates_kbps, [20, 26, 32, 38]);
    assert!(stdout.contains("video row figures at crf 32"), "{stdout}");
    for b in &c.backends {
        let targets: Vec<u32> = b.points.iter().map(|p| p.target).collect();
        assert_eq!(targets, [20, 26, 32, 38], "{}", b.backend);
        // Constant quality: a higher CRF spends fewer bits.
        assert!(
            b.points.windows(2).all(|w| w[1].kbps < w[0].kbps),
            "{}",
            b.backend
        );
    }
    assert_eq!(
        c.backends[0].bd.as_ref().unwrap().rate_psnr.value,
        Some(0.0)
    );
    // Deterministic for a given build and thread count; -20 % on this clip here.
    let b = c.backends[1].bd.as_ref().unwrap().rate_psnr.value.unwrap();
    assert!(b < -0.05, "medium compresses better than veryfast: {b}");
    // The command-line side by side runs at a bitrate: skipped, with the reason.
    assert!(c
        .skipped
        .iter()
        .any(|s| s.reason.contains("not with --crf")));
}

#[test]
fn a_qp_ladder_skips_encoders_without_qp_and_threads_reach_every_encoder() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-qp");
    let _ = std::fs::remove_dir_all(&out);
    let output = run(&[
        "--backend",
        "x264-direct,libx264,mpeg4",
        "--frames",
        "12",
        "--size",
        "160x120",
        "--qp",
        "20,30",
        "--threads",
        "1",
        "--lifetimes",
        "0",
        "--rounds",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (_, c) = succeeded(&output, &out);
    assert_eq!(
        (c.setup.rate_control, c.setup.threads),
        (RateControl::Qp, Some(1))
    );
    let names: Vec<&str> = c.backends.iter().map(|b| b.backend.as_str()).collect();
    assert_eq!(names, ["x264-direct", "libx264"]);
    for b in &c.backends {
        assert_eq!(b.error, None, "{}", b.backend);
        assert!(
            b.points[0].kbps > b.points[1].kbps,
            "qp 20 spends more than qp 30"
        );
    }
    let mpeg4 = c.skipped.iter().find(|s| s.backend == "mpeg4").unwrap();
    assert!(mpeg4.reason.contains("no qp option"), "{}", mpeg4.reason);
    assert!(c.setup.rules.iter().any(|r| r.contains("threads: 1")));
}

#[test]
fn bad_ladders_and_threads_are_named() {
    for (args, expected) in [
        (
            &["--crf", "20,70"][..],
            "invalid --crf [20, 70] (expected values from 0 to 63",
        ),
        (
            &["--qp", "20,20"][..],
            "invalid --qp [20, 20] (expected each value once)",
        ),
        (
            &["--threads", "0"][..],
            "invalid --threads 0 (expected at least 1)",
        ),
        (&["--crf", "20", "--qp", "30"][..], "cannot be used with"),
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
