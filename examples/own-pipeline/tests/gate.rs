//! The soak binary end to end: a full run folder, a baseline saved and then held, and the
//! gate failing once the clean decode allocates more.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json_free::field;

fn own_pipeline(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_own-pipeline"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// No JSON crate in this example: the report's fields are found as text.
mod serde_json_free {
    /// The text after `"key": ` up to the next comma or brace.
    pub fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
        let at = json.find(&format!("\"{key}\""))?;
        let rest = json[at + key.len() + 2..].trim_start().strip_prefix(':')?;
        let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

#[test]
fn a_soak_writes_its_run_folder_and_the_gate_holds_then_catches_more_allocations() {
    let baselines = folder("baselines");
    let bl = baselines.to_str().unwrap();
    let quick = ["--iterations", "60", "--warmup", "20"];

    // A full run: every outcome passes, every file is there, and it becomes a baseline.
    let first = folder("first");
    let mut args = vec!["soak", "--out", first.to_str().unwrap()];
    args.extend(quick);
    args.extend(["--save-baseline", "b", "--baselines", bl]);
    let run = own_pipeline(&args, &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    let report = std::fs::read_to_string(first.join("report.json")).unwrap();
    assert_eq!(field(&report, "schema"), Some("\"avsoak.report/1\""));
    for file in ["summary.md", "index.html", "junit.xml"] {
        assert!(first.join(file).is_file(), "{file}");
    }
    assert!(first
        .join("profiles/own-decoder.forget-packet-unref.dhat.json")
        .is_file());
    assert!(baselines.join("b.json").is_file(), "{stdout}");

    // The same code against it: the gate passes.
    let second = folder("second");
    let mut args = vec!["soak", "--out", second.to_str().unwrap()];
    args.extend(quick);
    args.extend(["--baseline", "b", "--baselines", bl]);
    let run = own_pipeline(&args, &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("gate passed"), "{stdout}");

    // The clean decode now allocates 4 more blocks per frame (100 per iteration, on
    // ~1,600): every outcome still passes, but the gate fails on allocations.
    let third = folder("third");
    let mut args = vec![
        "soak",
        "--out",
        third.to_str().unwrap(),
        "--variant",
        "clean",
    ];
    args.extend(quick);
    args.extend(["--baseline", "b", "--baselines", bl]);
    let run = own_pipeline(&args, &[(own_pipeline::EXTRA_ALLOCS_ENV, "4")]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("gate FAILED"), "{stdout}");
    assert!(stdout.contains("own-decoder/clean"), "{stdout}");
    assert!(stdout.contains("--save-baseline b"), "{stdout}");

    // The gate command on the saved run says the same.
    let run = own_pipeline(
        &[
            "gate",
            "--run",
            third.to_str().unwrap(),
            "--baseline",
            "b",
            "--baselines",
            bl,
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1));

    // Bad arguments exit 2 and name the value.
    let run = own_pipeline(&["soak", "--variant", "nope"], &[]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("\"nope\"") && stderr.contains("expected one of"),
        "{stderr}"
    );
}
