//! `cargo xtask dist`: the installed command as a Debian package and a tarball, and the
//! check that both work from outside the repository.
//!
//! The package is assembled here and built with `dpkg-deb`, which every Debian and
//! Ubuntu machine has: no packaging tool to install, and the layout is this file's to
//! read. Layout (the tarball has the same `usr/` tree):
//!
//! - `/usr/bin/avsoak` (the preload library embedded, for a copied binary);
//! - `/usr/lib/avsoak/libavsoak_preload.so` (found beside the binary first);
//! - `/usr/include/avsoak.h` and `/usr/share/pkgconfig/avsoak.pc` (header only: the
//!   marker is a weak symbol, so a program links nothing of avsoak's);
//! - `/usr/share/doc/avsoak/`: README, copyright, and every command's `--help`.
//!
//! `Depends` comes from the files themselves: the libraries they need (`NEEDED`) and the
//! newest glibc symbol version they use.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use xshell::{cmd, Shell};

use crate::{target_dir, workspace_root};

#[derive(clap::Args)]
pub struct Dist {
    /// Then install the package with `dpkg -i`, watch a C program built with
    /// `pkg-config --cflags avsoak` from `/`, and remove the package (root only).
    #[arg(long)]
    check: bool,
}

impl Dist {
    /// `dist --check`.
    pub fn checked() -> Self {
        Dist { check: true }
    }

    pub fn run(self, sh: &Shell) -> Result<()> {
        let built = build(sh)?;
        println!("xtask dist: {}", built.deb.display());
        println!("xtask dist: {}", built.tarball.display());
        if self.check {
            check_cargo_install(sh)?;
            check_package(sh, &built.deb)?;
        }
        Ok(())
    }
}

/// What `dist` wrote.
pub struct Built {
    pub deb: PathBuf,
    pub tarball: PathBuf,
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Builds the command and the library, stages `usr/`, and writes the package and the
/// tarball under `target/dist/`.
pub fn build(sh: &Shell) -> Result<Built> {
    cmd!(sh, "cargo build --release --package avsoak-preload").run()?;
    let release = target_dir().join("release");
    let library = release.join("libavsoak_preload.so");
    // The command carries the very library the package installs.
    let _embed = sh.push_env("AVSOAK_PRELOAD_LIB", &library);
    cmd!(
        sh,
        "cargo build --release --package avsoak-cli --bin avsoak"
    )
    .run()?;
    let dist = target_dir().join("dist");
    let root = dist.join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("clearing {}", root.display()))?;
    }
    let usr = root.join("usr");
    let binary = usr.join("bin/avsoak");
    let installed_library = usr.join("lib/avsoak/libavsoak_preload.so");
    copy(&release.join("avsoak"), &binary)?;
    copy(&library, &installed_library)?;
    // Symbols stay (a suspect's frames are named from them); DWARF goes.
    for file in [&binary, &installed_library] {
        cmd!(sh, "strip --strip-debug {file}").run()?;
    }
    let ws = workspace_root();
    copy(&ws.join("include/avsoak.h"), &usr.join("include/avsoak.h"))?;
    write(&usr.join("share/pkgconfig/avsoak.pc"), &pkg_config())?;
    let doc = usr.join("share/doc/avsoak");
    copy(&ws.join("README.md"), &doc.join("README.md"))?;
    write(&doc.join("copyright"), COPYRIGHT)?;
    let mut help = String::new();
    for command in ["", "watch", "report", "gate", "merge"] {
        let mut args = vec![command, "--help"];
        args.retain(|a| !a.is_empty());
        let shown = args.join(" ");
        let text = cmd!(sh, "{binary} {args...}").read()?;
        help.push_str(&format!("$ avsoak {shown}\n{text}\n\n"));
    }
    write(&doc.join("avsoak.txt"), &help)?;
    let depends = depends(sh, &[&binary, &installed_library])?;
    let size_kib = du_kib(&usr)?;
    write(
        &root.join("DEBIAN/control"),
        &format!(
            "Package: avsoak\nVersion: {}\nArchitecture: amd64\nMaintainer: avsoak developers \
             <avsoak@invalid.invalid>\nInstalled-Size: {size_kib}\nDepends: {depends}\n\
             Section: devel\nPriority: optional\n\
             Description: soak C and C++ programs for leaks while they run\n avsoak watch runs \
             a program with a preload library that counts its heap,\n descriptors, threads and \
             mappings, judges each series clean or leak and\n names the function that leaked; \
             avsoak.h marks a program's iterations.\n",
            version()
        ),
    )?;
    let deb = dist.join(format!("avsoak_{}_amd64.deb", version()));
    cmd!(sh, "dpkg-deb --root-owner-group --build {root} {deb}").run()?;
    let tarball = dist.join(format!("avsoak-{}-x86_64-linux-gnu.tar.gz", version()));
    cmd!(sh, "tar --owner=0 --group=0 -C {root} -czf {tarball} usr").run()?;
    Ok(Built { deb, tarball })
}

/// Relative to the `.pc` file, so the tarball's tree works wherever it is unpacked.
fn pkg_config() -> String {
    format!(
        "prefix=${{pcfiledir}}/../..\nincludedir=${{prefix}}/include\n\nName: avsoak\n\
         Description: mark a program's iterations for avsoak watch (header only)\n\
         Version: {}\nCflags: -I${{includedir}}\n",
        version()
    )
}

const COPYRIGHT: &str =
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: avsoak\n\nFiles: *\nCopyright: the avsoak developers\nLicense: MIT or Apache-2.0\n";

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("a file in a folder"))?;
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a folder"))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn du_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du_kib(&entry.path())? * 1024
        } else {
            meta.len()
        };
    }
    Ok(total.div_ceil(1024))
}

/// `libc6 (>= 2.N), libgcc-s1`: the packages of the libraries the files need, glibc at
/// the newest symbol version they use.
fn depends(sh: &Shell, files: &[&Path]) -> Result<String> {
    let mut glibc = (2u32, 17u32);
    let mut packages = Vec::new();
    for file in files {
        let headers = cmd!(sh, "objdump -p {file}").read()?;
        for needed in headers
            .lines()
            .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        {
            let package = match needed.trim() {
                "libc.so.6"
                | "libm.so.6"
                | "libdl.so.2"
                | "libpthread.so.0"
                | "librt.so.1"
                | "ld-linux-x86-64.so.2" => "libc6",
                "libgcc_s.so.1" => "libgcc-s1",
                other => bail!(
                    "{} needs {other}, which has no package here",
                    file.display()
                ),
            };
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
        let symbols = cmd!(sh, "objdump -T {file}").read()?;
        for version in symbols.split("GLIBC_").skip(1) {
            let digits: String = version
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = digits.split('.').filter_map(|p| p.parse::<u32>().ok());
            if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
                glibc = glibc.max((major, minor));
            }
        }
    }
    ensure!(packages.contains(&"libc6"), "the files need no libc.so.6?");
    Ok(packages
        .iter()
        .map(|p| match *p {
            "libc6" => format!("libc6 (>= {}.{})", glibc.0, glibc.1),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// `cargo install --locked --path cli` into a scratch root (the library embedded by the
/// build script's own build of it), then its `avsoak watch` from `/`; and `cli`'s
/// dependency tree holds no codec binding.
fn check_cargo_install(sh: &Shell) -> Result<()> {
    let tree = cmd!(
        sh,
        "cargo tree --package avsoak-cli --edges normal,build --prefix none"
    )
    .read()?;
    for codec in ["ffmpeg", "x264", "x265", "heif", "avsoak-scenarios"] {
        if let Some(line) = tree.lines().find(|l| l.contains(codec)) {
            bail!("avsoak-cli depends on a codec binding: {line}");
        }
    }
    let root = target_dir().join("dist/cargo-install");
    // The CI recipe's own install step (`cargo install --locked --path cli`), into this
    // workspace's target folder; the build script builds and embeds the library itself,
    // as on a user's machine.
    let ws = workspace_root();
    cmd!(sh, "{ws}/.github/actions/avsoak-watch/install.sh")
        .env("AVSOAK_INSTALL", "cargo")
        .env("AVSOAK_SOURCE", &ws)
        .env("AVSOAK_ROOT", &root)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("AVSOAK_PRELOAD_LIB")
        .env_remove("GITHUB_PATH")
        .run()?;
    // `cargo install` installs no header: the program takes it from the checkout.
    let include = format!("-I{}", workspace_root().join("include").display());
    watch_installed(&root.join("bin/avsoak"), &include, true)?;
    println!(
        "xtask dist: cargo install, watched from /: {}",
        root.display()
    );
    Ok(())
}

/// Installs the package, watches a C program built against its header from `/` (a leak
/// it must name, and its fixed twin clean), and removes the package.
fn check_package(sh: &Shell, deb: &Path) -> Result<()> {
    ensure!(
        cmd!(sh, "id -u").read()? == "0",
        "--check installs a package: run it as root"
    );
    if Path::new("/usr/bin/avsoak").exists() {
        bail!("/usr/bin/avsoak exists already: remove the avsoak package first (dpkg -r avsoak)");
    }
    // The CI recipe's install step with a package.
    let ws = workspace_root();
    cmd!(sh, "{ws}/.github/actions/avsoak-watch/install.sh")
        .env("AVSOAK_INSTALL", deb)
        .env_remove("GITHUB_PATH")
        .run()?;
    let checked = cmd!(sh, "pkg-config --cflags avsoak")
        .read()
        .map_err(anyhow::Error::from)
        .and_then(|cflags| watch_installed(Path::new("/usr/bin/avsoak"), &cflags, false));
    let removed = cmd!(sh, "dpkg -r avsoak").run();
    checked?;
    removed?;
    for gone in [
        "/usr/bin/avsoak",
        "/usr/lib/avsoak",
        "/usr/include/avsoak.h",
    ] {
        ensure!(
            !Path::new(gone).exists(),
            "{gone} is left after dpkg -r avsoak"
        );
    }
    println!(
        "xtask dist: installed, watched from /, removed: {}",
        deb.display()
    );
    Ok(())
}

/// Compiles `list_growth.c` outside the repository with `cflags` (the header's folder),
/// and watches its leaky and fixed builds from `/` with `avsoak` at `command`, through
/// the CI recipe's watch step (`watch.sh`); the preload library comes from the
/// command's own embedded copy (`cached`) or from beside it.
fn watch_installed(command: &Path, cflags: &str, cached: bool) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("avsoak-installed-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let source = scratch.join("list_growth.c");
    std::fs::copy(
        workspace_root().join("preload/repro/list_growth.c"),
        &source,
    )?;
    let cflags: Vec<&str> = cflags.split_whitespace().collect();
    let sh = Shell::new()?;
    sh.change_dir("/");
    let leaky = scratch.join("leaky");
    let fixed = scratch.join("fixed");
    for (build, defines) in [(&leaky, None), (&fixed, Some("-DFIXED"))] {
        let flags = cflags.iter().copied().chain(defines);
        cmd!(sh, "cc -O2 {flags...} -o {build} {source}").run()?;
    }
    // A private cache, so the embedded library's first write is part of the check.
    let _home = sh.push_env("XDG_CACHE_HOME", scratch.join("cache"));
    // The CI recipe's watch step, as the action runs it: the program's command line in
    // AVSOAK_COMMAND, avsoak's exit code as the step's.
    let step = workspace_root().join(".github/actions/avsoak-watch/watch.sh");
    let watch_step = |program: &Path, expect: &str, out: &Path| {
        cmd!(sh, "{step}")
            .env("AVSOAK", command)
            .env("AVSOAK_COMMAND", format!("{} 3000 0 1", program.display()))
            .env("AVSOAK_EXPECT", expect)
            .env("AVSOAK_OUT", out)
            .env_remove("GITHUB_STEP_SUMMARY")
            .ignore_status()
            .output()
    };
    let leak_out = scratch.join("leak");
    let leak = watch_step(&leaky, "leak", &leak_out)?;
    ensure!(
        leak.status.success(),
        "watch.sh on the leak exited {:?}: {}",
        leak.status.code(),
        String::from_utf8_lossy(&leak.stderr)
    );
    let report = std::fs::read_to_string(leak_out.join("report.json"))?;
    ensure!(
        report.contains("remember_frame_stats"),
        "the installed avsoak did not name remember_frame_stats: {}",
        leak_out.display()
    );
    let clean = watch_step(&fixed, "clean", &scratch.join("clean"))?;
    ensure!(
        clean.status.success(),
        "watch.sh on the fixed twin exited {:?}: {}",
        clean.status.code(),
        String::from_utf8_lossy(&clean.stderr)
    );
    // The step fails when the outcome does: a leak expected clean exits 1.
    let wrong = watch_step(&leaky, "clean", &scratch.join("wrong"))?;
    ensure!(
        wrong.status.code() == Some(1),
        "watch.sh on a leak expected clean exited {:?}, not 1",
        wrong.status.code()
    );
    cmd!(sh, "{command} --version").run()?;
    let copies = std::fs::read_dir(scratch.join("cache/avsoak"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    ensure!(
        copies == usize::from(cached),
        "expected {} cached cop{} of the preload library, found {copies}",
        usize::from(cached),
        if cached { "y" } else { "ies" }
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}
