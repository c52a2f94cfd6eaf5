//! `avsoak-run watch`: C programs compiled here with the system C compiler, run under
//! libavsoak_preload.so, judged from outside. Each leaky program must be flagged with a
//! suspect naming its leaking C function; each fixed twin must be clean; programs that
//! cannot be watched are refused before they run.
//!
//! Failure chances on a correct build: the verdicts are the soak's (α = 0.001 per
//! series, a 4 KiB floor). The leaks grow 72 B per iteration on every iteration with no
//! noise (Mann–Kendall p ≈ 0), and the clean twins hold their live heap to the byte from
//! one iteration to the next once their list is full, so neither can cross the other's
//! threshold. The suspect comes from the exact re-run (every leaked block sampled with
//! chance ≥ 1 − e⁻⁵, about 1,960 gained and none lost: p < 1e-500).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repro(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../preload/repro")
        .join(name)
}

/// Compiles `source` with `cc` into a fresh temporary folder, with `flags`.
fn compile(source: &str, out: &str, flags: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avsoak-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(out);
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include");
    let status = Command::new("cc")
        .args(["-O2", "-g", "-I"])
        .arg(&include)
        .args(flags)
        .arg(repro(source))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("the system C compiler (cc) runs");
    assert!(status.success(), "cc failed on {source}");
    exe
}

fn watch(out: &Path, args: &[&str], program: &Path, program_args: &[&str]) -> Output {
    let _ = std::fs::remove_dir_all(out);
    Command::new(env!("CARGO_BIN_EXE_avsoak-run"))
        .arg("watch")
        .arg("--out")
        .arg(out)
        .args(args)
        .arg("--")
        .arg(program)
        .args(program_args)
        .output()
        .unwrap()
}

fn result(out: &Path) -> Value {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    report["results"][0].clone()
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("avsoak-watch-{}-{name}", std::process::id()))
}

fn assert_leak_named(output: &Output, out: &Path, function: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "watch --expect leak failed: {stdout}{stderr}"
    );
    let r = result(out);
    assert_eq!(r["verdict"], "leak", "{r:#}");
    // Per frame: an iteration is a frame in marker mode, a tick of many in time mode.
    let t = &r["throughput"];
    let frames_per_iter = t["frames_per_s"].as_f64().unwrap() / t["iters_per_s"].as_f64().unwrap();
    let per_frame = r["heap"]["leak_bytes_per_iter"].as_f64().unwrap() / frames_per_iter;
    assert!(
        (60.0..=90.0).contains(&per_frame),
        "64 B records (72 B usable): {per_frame} B/frame"
    );
    let top = &r["suspects"][0]["frames"];
    assert!(
        top.as_array()
            .into_iter()
            .flatten()
            .any(|f| f.as_str() == Some(function)),
        "the top suspect names {function}: {r:#}"
    );
    for file in ["report.json", "summary.md", "index.html", "junit.xml"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
}

fn assert_clean(output: &Output, out: &Path) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "watch failed: {stdout}{stderr}");
    let r = result(out);
    assert_eq!(r["verdict"], "clean", "{r:#}");
    assert_eq!(r["suspects"].as_array().unwrap().len(), 0, "{r:#}");
}

#[test]
fn reachable_list_growth_is_flagged_in_marker_mode_and_its_fixed_twin_is_clean() {
    let leaky = compile("list_growth.c", "list_growth", &[]);
    let fixed = compile("list_growth.c", "list_growth_fixed", &["-DFIXED"]);
    let out = scratch("marker-leak");
    // 2,000 frames: the done-means bound for a 64 B-per-frame growth.
    let output = watch(&out, &["--expect", "leak"], &leaky, &["2000"]);
    assert_leak_named(&output, &out, "remember_frame_stats");
    let r = result(&out);
    assert_eq!(r["params"]["mode"], "marker");
    assert_eq!(r["iterations"], 2000);
    assert!(r["note"].as_str().unwrap().contains("exited with status 0"));

    let out = scratch("marker-clean");
    let output = watch(&out, &[], &fixed, &["2000"]);
    assert_clean(&output, &out);
}

#[test]
fn reachable_list_growth_is_flagged_in_time_mode_and_its_fixed_twin_is_clean() {
    let leaky = compile("list_growth.c", "list_growth", &[]);
    let fixed = compile("list_growth.c", "list_growth_fixed", &["-DFIXED"]);
    // 40,000 frames of 100 µs: about 40 ticks of 100 ms, the first second of warm-up.
    let out = scratch("time-leak");
    let output = watch(
        &out,
        &["--every", "100ms", "--warmup", "1s", "--expect", "leak"],
        &leaky,
        &["40000", "100"],
    );
    assert_leak_named(&output, &out, "remember_frame_stats");
    let r = result(&out);
    assert_eq!(r["params"]["mode"], "time");
    assert!(
        r["throughput"]["frames_per_s"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );

    let out = scratch("time-clean");
    let output = watch(
        &out,
        &["--every", "100ms", "--warmup", "1s"],
        &fixed,
        &["40000", "100"],
    );
    assert_clean(&output, &out);
}

#[test]
fn duration_stops_the_program_and_still_names_the_leak() {
    let leaky = compile("list_growth.c", "list_growth", &[]);
    let out = scratch("duration");
    // The program would run for 100 s; --duration stops it after 3.
    let output = watch(
        &out,
        &[
            "--every",
            "100ms",
            "--warmup",
            "500ms",
            "--duration",
            "3s",
            "--expect",
            "leak",
        ],
        &leaky,
        &["1000000", "100"],
    );
    assert_leak_named(&output, &out, "remember_frame_stats");
    let r = result(&out);
    assert!(r["wall_s"].as_f64().unwrap() < 60.0, "{r:#}");
    assert!(
        r["note"]
            .as_str()
            .unwrap()
            .contains("stopped after --duration"),
        "{r:#}"
    );
}

#[test]
fn a_program_with_its_own_malloc_is_an_error_never_a_verdict() {
    // -rdynamic exports the program's malloc, as an unprefixed jemalloc linked in does.
    let program = compile("own_malloc.c", "own_malloc", &["-rdynamic"]);
    let out = scratch("own-malloc");
    let output = watch(&out, &[], &program, &[]);
    assert_eq!(output.status.code(), Some(1), "a failed outcome");
    let r = result(&out);
    assert_eq!(r["verdict"], "error", "{r:#}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("its own allocator") && error.contains("own_malloc"),
        "{error}"
    );
}

#[test]
fn programs_that_cannot_be_preloaded_are_refused_before_anything_runs() {
    let dir = scratch("refused");
    let _ = std::fs::create_dir_all(&dir);
    let script = dir.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran > \"$0.ran\"\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let stat = compile("list_growth.c", "static", &["-static"]);
    let missing = dir.join("no-such-program");
    for (program, expected) in [
        (missing.as_path(), "no such program"),
        (script.as_path(), "not an ELF executable (a script)"),
        (stat.as_path(), "statically linked"),
    ] {
        let out = dir.join("out");
        let output = watch(&out, &[], program, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{program:?}: {stderr}");
        assert!(stderr.contains(expected), "{program:?}: {stderr}");
        assert!(
            stderr.contains(&*program.file_name().unwrap().to_string_lossy()),
            "names the program: {stderr}"
        );
        assert!(!out.exists(), "nothing written for {program:?}");
    }
    assert!(!dir.join("run.sh.ran").exists(), "the script never ran");
}
