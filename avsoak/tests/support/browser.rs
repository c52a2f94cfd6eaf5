//! Headless Chromium for the page tests (shared by this crate's and the scenarios' tests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium to render with: `AVSOAK_CHROMIUM`, or `chromium` on the PATH (Debian's
/// package, which `cargo xtask deps` installs).
pub fn chromium() -> PathBuf {
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

pub fn headless(page: &Path, args: &[&str]) -> std::process::Output {
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
