//! Embeds `libavsoak_preload.so` in the `avsoak` binary, so that one installed file can
//! watch a program (`cargo install` installs binaries, never a library beside them).
//!
//! The library is the one `AVSOAK_PRELOAD_LIB` names when it is set (`cargo xtask dist`
//! sets it to the library it packages); otherwise this script builds the workspace's
//! `avsoak-preload` with the same cargo, in release, into a target folder of its own.
//! It also records the commit for `--version`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("cli/ sits in the workspace")
        .to_owned();
    let out = PathBuf::from(env("OUT_DIR"));
    println!("cargo:rerun-if-env-changed=AVSOAK_PRELOAD_LIB");
    let library = match std::env::var_os("AVSOAK_PRELOAD_LIB") {
        Some(given) => {
            let given = PathBuf::from(given);
            println!("cargo:rerun-if-changed={}", given.display());
            given
        }
        None => build_preload(&workspace, &out),
    };
    let embedded = out.join("libavsoak_preload.so");
    // Without its DWARF (the symbols stay, which name a suspect's frames): a quarter of
    // the size. Where `strip` is missing, the library goes in whole.
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&embedded)
        .arg(&library)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(&library, &embedded)
            .unwrap_or_else(|e| panic!("copying the preload library {}: {e}", library.display()));
    }
    let bytes = std::fs::read(&embedded).expect("reading the embedded copy back");
    println!(
        "cargo:rustc-env=AVSOAK_PRELOAD_EMBEDDED={}",
        embedded.display()
    );
    println!("cargo:rustc-env=AVSOAK_PRELOAD_HASH={:016x}", fnv1a(&bytes));
    println!("cargo:rustc-env=AVSOAK_COMMIT={}", commit(&workspace));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// Builds `avsoak-preload` in release into `<target>/cli-preload` (shared by every
/// profile's build of this crate, so a second build only checks it is fresh).
fn build_preload(workspace: &Path, out: &Path) -> PathBuf {
    for watched in ["preload", "hooks", "avsoak/src", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<package>-<hash>/out.
    let target = out
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| out.join("preload-target"), |t| t.join("cli-preload"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--package",
            "avsoak-preload",
            "--target-dir",
        ])
        .arg(&target)
        // The outer build's flags are for this crate, not for the library.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // Nor are clippy's or a cache's wrappers.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("running cargo to build avsoak-preload");
    assert!(
        status.success(),
        "building avsoak-preload failed ({status})"
    );
    target.join("release/libavsoak_preload.so")
}

/// `git rev-parse --short HEAD` of the checkout built, or `unknown` outside one.
fn commit(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(rev) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", workspace.join(head).display());
    }
    rev
}

/// FNV-1a, 64 bits: names the library's cached copy by its content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
