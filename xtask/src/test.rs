//! `cargo xtask test`: everything CI runs.

use anyhow::Result;
use xshell::{cmd, Shell};

use crate::deps::Deps;

#[derive(clap::Args)]
pub struct Test {
    /// Extra arguments for `cargo nextest run` (e.g. a filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Test {
    pub fn run(self, sh: &Shell) -> Result<()> {
        Deps { check: false }.run(sh)?;
        // Lints and doc tests first, the test suite last: its summary closes the output.
        cmd!(
            sh,
            "cargo clippy --workspace --all-targets --release -- -D warnings"
        )
        .run()?;
        // The uninstrumented build must keep compiling, warning-free.
        cmd!(sh, "cargo clippy --package avsoak-scenarios --no-default-features --release -- -D warnings")
            .run()?;
        cmd!(sh, "cargo test --workspace --release --doc").run()?;
        // Benches are built on every run, never timed here.
        cmd!(sh, "cargo bench --package avsoak-scenarios --no-run").run()?;
        own_pipeline(sh)?;
        // `avsoak-run watch` preloads this cdylib, which a test build does not make.
        cmd!(sh, "cargo build --release --package avsoak-preload").run()?;
        // The installed command, both ways, and the CI recipe's steps: as root (a package
        // is installed and removed), which CI is.
        if cmd!(sh, "id -u").read()? == "0" {
            crate::dist::Dist::checked().run(sh)?;
        } else {
            eprintln!(
                "xtask test: `cargo xtask dist --check` left out: it installs a package and \
                 needs root"
            );
        }
        let args = self.args;
        // Release profile: the soak runner the tests start is the one `soak` uses, and
        // one build serves both.
        if nextest(sh) {
            cmd!(
                sh,
                "cargo nextest run --workspace --release --no-fail-fast {args...}"
            )
            .run()?;
        } else {
            eprintln!("xtask test: cargo-nextest not found; running cargo test one test at a time");
            cmd!(
                sh,
                "cargo test --workspace --release --no-fail-fast {args...} -- --test-threads=1"
            )
            .run()?;
        }
        Ok(())
    }
}

/// The example crate outside the workspace (`examples/own-pipeline`, Cargo's default
/// profiles): linted, soaked into a full run folder with every outcome passing, and its
/// tests run, so the library's promise to users is checked on every test run.
fn own_pipeline(sh: &Shell) -> Result<()> {
    let manifest = "examples/own-pipeline/Cargo.toml";
    let target = "target/own-pipeline";
    cmd!(
        sh,
        "cargo clippy --manifest-path {manifest} --target-dir {target} --all-targets --release -- -D warnings"
    )
    .run()?;
    let out = format!("{target}/run");
    cmd!(
        sh,
        "cargo run --release --manifest-path {manifest} --target-dir {target} -- soak --iterations 60 --warmup 20 --out {out}"
    )
    .run()?;
    // Its tests under libtest's threads and, when present, one process per test.
    cmd!(
        sh,
        "cargo test --release --manifest-path {manifest} --target-dir {target}"
    )
    .run()?;
    if nextest(sh) {
        cmd!(
            sh,
            "cargo nextest run --release --manifest-path {manifest} --target-dir {target}"
        )
        .run()?;
    }
    Ok(())
}

/// Whether `cargo nextest` is installed.
fn nextest(sh: &Shell) -> bool {
    cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}
