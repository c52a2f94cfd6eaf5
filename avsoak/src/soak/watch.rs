//! Watching a program avsoak did not build: started with `libavsoak_preload.so` in
//! `LD_PRELOAD`, its samples read from a private socket, judged as a soak's.
//!
//! The program's stdin, stdout and stderr stay its own. The library's agent speaks the
//! child protocol ([`crate::protocol`]) on a socket whose descriptor the environment
//! names ([`super::transport::WATCH_FD_ENV`]), the watcher reads it with the soak's own
//! loop, and the verdict is the soak's with the watch's own rules (exit status, a window
//! too short to judge) from the same `verdict` module. Marker mode: one iteration per
//! `avsoak_iteration(frames)` call. Time mode (`every`): one iteration per tick.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::io::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::supervise::{collect, signal_name, Contained, Stopping, Watchdog};
use super::transport::{read_messages, watch_environment, Collected, WatchSettings};
use super::verdict::{conclude_watched, Watched};
pub use super::verdict::{sized_flags, tick_for};
use super::Plan;
use crate::protocol::Message;
use crate::report::{CaseResult, CpuSeconds};
use crate::scenario::{Case, Expect};

/// The file name of the preload library cargo builds.
pub const PRELOAD_LIBRARY: &str = "libavsoak_preload.so";

/// Why a program cannot be watched; found before it runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// Not found as a path or on `PATH`.
    #[error("cannot watch {program:?}: no such program (not a file, and not found on PATH)")]
    NotFound {
        /// The program as given.
        program: OsString,
    },
    /// Not an ELF executable (a script, a text file, another format).
    #[error(
        "cannot watch {path}: not an ELF executable ({why}); watch the program it starts \
         instead"
    )]
    NotElf {
        /// The resolved file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// Statically linked: `LD_PRELOAD` has no effect.
    #[error(
        "cannot watch {path}: it is statically linked (no program interpreter), so \
         LD_PRELOAD cannot interpose its malloc; expected a dynamically linked glibc program"
    )]
    Static {
        /// The resolved file.
        path: PathBuf,
    },
    /// Linked against another C library (musl, bionic).
    #[error(
        "cannot watch {path}: its program interpreter is {interpreter}, not glibc's \
         ld-linux; expected a dynamically linked glibc program"
    )]
    NotGlibc {
        /// The resolved file.
        path: PathBuf,
        /// Its `PT_INTERP`.
        interpreter: String,
    },
    /// The preload library is not where it was looked for.
    #[error(
        "the preload library {path} does not exist (build it with `cargo build --release \
         -p avsoak-preload`, or name it with --preload)"
    )]
    NoPreload {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Neither `XDG_CACHE_HOME` nor `HOME` names a folder for the embedded library.
    #[error(
        "no folder to write the preload library to: neither XDG_CACHE_HOME nor HOME is set \
         (set one, or name the library with --preload)"
    )]
    NoCache,
    /// The embedded library could not be written to the cache folder.
    #[error("cannot write the preload library to {path}: {source} (name one with --preload)")]
    Cache {
        /// The library's path in the cache.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An I/O failure starting the watch.
    #[error("cannot start watching {program}: {source}")]
    Io {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
}

/// One program to watch and how.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The program as given (a path or a name on `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The result's variant (default: the program's file name).
    pub name: Option<String>,
    /// What must happen for the outcome to pass.
    pub expect: Expect,
    /// Time mode's tick; `None` is marker mode.
    pub every: Option<Duration>,
    /// Stop the program after this long (`finish`, then SIGTERM, SIGKILL after `grace`).
    pub duration: Option<Duration>,
    /// Leading iterations (marker mode) or ticks (time mode) not judged.
    pub warmup: u64,
    /// Live bytes at which the program is stopped and judged `leak`.
    pub heap_cap: u64,
    /// Mean bytes between stack samples.
    pub sample_interval: u64,
    /// Suspects to report.
    pub suspects: usize,
    /// `libavsoak_preload.so`.
    pub preload: PathBuf,
    /// Where the agent writes the DHAT profile.
    pub profile: Option<PathBuf>,
    /// Longest silence before the program is declared hung.
    pub stall: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl Watch {
    /// The case this watch reports as: scenario `watch`, variant the name, params the
    /// mode (and tick).
    pub fn case(&self) -> Case {
        let name = self.name.clone().unwrap_or_else(|| {
            Path::new(&self.program)
                .file_name()
                .map_or("program".into(), |f| f.to_string_lossy().into_owned())
        });
        let command: Vec<String> = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let case = Case::new("watch", &name, self.expect, &command.join(" "));
        match self.every {
            None => case.with_param("mode", "marker"),
            Some(every) => case
                .with_param("mode", "time")
                .with_param("every", &format!("{}ms", every.as_millis())),
        }
    }

    /// The plan the verdict is judged with.
    pub fn plan(&self) -> Plan {
        Plan {
            iterations: 0,
            warmup: self.warmup,
            // Marks the plan as open-ended, so messages say "after N iterations".
            duration: Some(self.duration.unwrap_or(Duration::MAX)),
            heap_cap: self.heap_cap,
            suspects: self.suspects,
        }
    }
}

/// Whether a watched result is an `error` because its judged window was too short (the
/// program ended, exit status 0, before enough iterations or ticks).
pub fn too_short(result: &CaseResult) -> bool {
    result
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with(super::verdict::TOO_SHORT))
}

/// The preload library installed with the running executable: beside it (cargo puts a
/// workspace's binaries and cdylibs in one folder), one folder up, or in `../lib/avsoak/`
/// (a package's `/usr/bin` and `/usr/lib/avsoak`); `None` when none is there.
pub fn default_preload() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join(PRELOAD_LIBRARY),
        dir.join("..").join(PRELOAD_LIBRARY),
        dir.join("../lib/avsoak").join(PRELOAD_LIBRARY),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// A preload library carried inside the running executable: its bytes and a name for
/// its content (`avsoak`, the installed command, embeds the one it was built with).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPreload {
    /// The library's file.
    pub bytes: &'static [u8],
    /// A hash of `bytes`, which names the cached copy: two builds never share one.
    pub hash: &'static str,
}

impl EmbeddedPreload {
    /// The library written once to the user's private cache folder
    /// (`$XDG_CACHE_HOME/avsoak`, or `~/.cache/avsoak`, mode 0700), named by its hash, and
    /// found there from then on. Written to a temporary name and renamed, so a copy that
    /// is there is whole.
    pub fn cached(&self) -> Result<PathBuf, WatchError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or(WatchError::NoCache)?
            .join("avsoak");
        let path = cache.join(format!("libavsoak_preload-{}.so", self.hash));
        let io = |source| WatchError::Cache {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == self.bytes.len() as u64) {
            return Ok(path);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cache)
            .map_err(io)?;
        let partial = cache.join(format!(".{}.{}", self.hash, std::process::id()));
        std::fs::write(&partial, self.bytes).map_err(io)?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        std::fs::rename(&partial, &path).map_err(io)?;
        Ok(path)
    }
}

/// Finds `program` (a path, or a name on `PATH`) and checks that it is a dynamically
/// linked glibc ELF executable, which `LD_PRELOAD` can interpose.
pub fn preflight(program: &OsStr) -> Result<PathBuf, WatchError> {
    let given = Path::new(program);
    let path = if given.components().count() > 1 || given.is_file() {
        given.is_file().then(|| given.to_owned())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(given))
                .find(|p| p.is_file())
        })
    }
    .ok_or_else(|| WatchError::NotFound {
        program: program.to_owned(),
    })?;
    let bytes = std::fs::read(&path).map_err(|source| WatchError::Io {
        program: path.display().to_string(),
        source,
    })?;
    match elf_interpreter(&bytes) {
        Err(why) => Err(WatchError::NotElf { path, why }),
        Ok(None) => Err(WatchError::Static { path }),
        Ok(Some(interpreter)) if !interpreter.contains("ld-linux") => {
            Err(WatchError::NotGlibc { path, interpreter })
        }
        Ok(Some(_)) => Ok(path),
    }
}

/// Whether the program's file names `avsoak_iteration` (a dynamic symbol it calls), so
/// marker mode is the default for it.
pub fn calls_marker(path: &Path) -> bool {
    std::fs::read(path)
        .is_ok_and(|bytes| bytes.windows(MARKER.len()).any(|window| window == MARKER))
}

const MARKER: &[u8] = b"avsoak_iteration\0";

/// The `PT_INTERP` of a 64-bit little-endian ELF file: `Ok(None)` when it has none (a
/// static executable).
fn elf_interpreter(bytes: &[u8]) -> Result<Option<String>, String> {
    if bytes.starts_with(b"#!") {
        return Err("a script".into());
    }
    if !bytes.starts_with(b"\x7fELF") {
        return Err("no ELF header".into());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let truncated = || "truncated ELF header".to_owned();
    let phoff = u64_at(0x20).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(truncated)? as usize;
    let phnum = u16_at(0x38).ok_or_else(truncated)? as usize;
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        let kind = bytes
            .get(header..header + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(truncated)?;
        if kind == 3 {
            let offset = u64_at(header + 8).ok_or_else(truncated)? as usize;
            let size = u64_at(header + 32).ok_or_else(truncated)? as usize;
            let name = bytes.get(offset..offset + size).ok_or_else(truncated)?;
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(name).into_owned()));
        }
    }
    Ok(None)
}

/// The shared libraries among a program's `modules` (the preload library, the vDSO and
/// the program itself left out), each by its name with the version its file carries:
/// the real file's suffix after `.so.` (`libavcodec.so.59` is `libavcodec.so.59.37.100`
/// on disk: `59.37.100`), or the soname's when the file has none (`libc.so.6`: `6`).
pub fn library_versions<'a>(modules: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut libraries = BTreeMap::new();
    for path in modules {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        let file = |p: &Path| p.file_name().map(|f| f.to_string_lossy().into_owned());
        let (Some(named), Some(real)) = (file(Path::new(path)), file(&real)) else {
            continue;
        };
        let Some((name, soname_version)) = named.split_once(".so") else {
            continue;
        };
        if name.starts_with("libavsoak_preload") || name.starts_with("linux-vdso") {
            continue;
        }
        let version = real
            .split_once(".so.")
            .map(|(_, v)| v.to_owned())
            .or_else(|| soname_version.strip_prefix('.').map(str::to_owned))
            .unwrap_or_else(|| "-".into());
        libraries.insert(name.to_owned(), version);
    }
    libraries
}

/// Names a watched program's `done`: its suspects' raw addresses, and its heap profile,
/// written as DHAT JSON to the watch's profile path. Runs after the program exited, from
/// the module map it sent (the same files on disk); a profile that cannot be written is
/// left out, the verdict stands without it.
fn name_done(done: &mut Message, w: &Watch, pid: u32, ran: Duration) -> BTreeMap<String, String> {
    let Message::Done {
        suspects,
        modules,
        profile,
        origins,
        ..
    } = done
    else {
        return BTreeMap::new();
    };
    let libraries = library_versions(modules.iter().map(|m| m.path.as_str()));
    if modules.is_empty() {
        return libraries;
    }
    let mut symbolizer = crate::heap::Symbolizer::for_modules(std::mem::take(modules));
    crate::heap::name_suspects(suspects, &mut symbolizer);
    crate::heap::name_origins(origins, &mut symbolizer);
    if let (Some(path), Some(raw)) = (&w.profile, profile.take()) {
        let cmd = std::iter::once(w.program.to_string_lossy())
            .chain(w.args.iter().map(|a| a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = raw
            .symbolize_with(&mut symbolizer)
            .write_dhat(path, &cmd, pid, ran);
    }
    libraries
}

/// Watches one program to its end (or `duration`) and judges it. Errors only for what
/// stops it from starting; everything after that is in the result.
pub fn watch(w: &Watch) -> Result<CaseResult, WatchError> {
    let path = preflight(&w.program)?;
    if !w.preload.is_file() {
        return Err(WatchError::NoPreload {
            path: w.preload.clone(),
        });
    }
    let case = w.case();
    let plan = w.plan();
    let io = |source| WatchError::Io {
        program: path.display().to_string(),
        source,
    };
    let (ours, theirs) = UnixStream::pair().map_err(io)?;
    let theirs: OwnedFd = theirs.into();
    let their_fd = theirs.into_raw_fd();
    let mut command = Command::new(&path);
    command.args(&w.args);
    if let Some(profile) = &w.profile {
        let _ = std::fs::remove_file(profile);
    }
    watch_environment(
        &mut command,
        &w.preload,
        &WatchSettings {
            fd: their_fd,
            warmup: w.warmup,
            heap_cap: w.heap_cap,
            suspects: w.suspects,
            sample_interval: w.sample_interval,
            every: w.every,
            profile: w.profile.as_deref(),
        },
    );
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl,
    // which is async-signal-safe; `their_fd` is open in the child (inherited).
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(their_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The program is the only child waited for between here and its exit, so the
    // children's CPU is its own; the watcher's own is this process's, threads included.
    let (children_cpu, own_cpu) = (super::children_cpu_s(), super::own_cpu_s());
    let started = Instant::now();
    let spawned = Contained::spawn_keeping_stdio(&mut command);
    // SAFETY: `their_fd` came from `into_raw_fd` above and is closed once, here: the
    // program has its own copy now (or never started).
    drop(unsafe { OwnedFd::from_raw_fd(their_fd) });
    let mut child = spawned.map_err(io)?;
    let (events, reader) = read_messages(ours.try_clone().map_err(io)?);
    let mut collected = Collected {
        planned_warmup: Some(w.warmup),
        ..Collected::default()
    };
    let mut stopping = Stopping {
        watchdog: Watchdog {
            stall: w.stall,
            total: Duration::MAX,
        },
        finish_after: w.duration.map(|d| (d, ours)),
        kill_on_report: true,
    };
    let ended = collect(
        &mut child,
        &events,
        &mut collected,
        &plan,
        &mut stopping,
        started,
        &mut |_| {},
    );
    let mut stopped: Option<String> = None;
    if ended.finishing && collected.interrupted.is_none() {
        let terminated = child.terminate(w.grace).map_err(io)?;
        stopped = Some(format!(
            "stopped after --duration {}s by {}",
            w.duration.unwrap_or_default().as_secs_f64(),
            if terminated { "SIGTERM" } else { "SIGKILL" }
        ));
    }
    let pid = child.child.id();
    let status = child.wait().ok();
    // The program's own time ends here; naming its stacks is the watcher's work after.
    let ran = started.elapsed();
    let cpu = CpuSeconds {
        program_s: super::children_cpu_s() - children_cpu,
        watcher_s: super::own_cpu_s() - own_cpu,
    };
    let _ = reader.join();
    let libraries = match collected.done.as_mut() {
        Some(done) => name_done(done, w, pid, ran),
        None => BTreeMap::new(),
    };
    // Our own stop is not a crash, nor the program's exit status.
    let ours = stopped.is_some() || ended.killed;
    collected.status = if ours { None } else { status };
    let ended = match (&stopped, status) {
        (Some(stop), _) => stop.clone(),
        (None, Some(s)) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by {}", signal_name(signal)),
            _ => "ended".into(),
        },
        (None, None) => "ended".into(),
    };
    let watched = Watched {
        every: w.every,
        ended,
        exit_code: status.and_then(|s| s.code()).filter(|_| !ours),
    };
    let mut result = conclude_watched(&case, &plan, collected, ran, &watched);
    result.cpu = Some(cpu);
    result.libraries = libraries;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_is_read_from_an_elf_file_and_nonsense_is_named() {
        let own = std::fs::read("/proc/self/exe").unwrap();
        let interpreter = elf_interpreter(&own)
            .unwrap()
            .expect("a dynamic test binary");
        assert!(interpreter.contains("ld-linux"), "{interpreter}");
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), Err("a script".into()));
        assert_eq!(elf_interpreter(b"hello"), Err("no ELF header".into()));
        assert_eq!(
            elf_interpreter(b"\x7fELF\x02\x01"),
            Err("truncated ELF header".into())
        );
        // A header with no program headers at all: nothing to interpret it, as static.
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(elf_interpreter(&header), Ok(None));
    }

    #[test]
    fn preflight_resolves_names_on_path_and_refuses_what_it_cannot_preload() {
        assert!(preflight(OsStr::new("sh")).unwrap().is_absolute());
        let missing = preflight(OsStr::new("./no-such-program")).unwrap_err();
        assert!(missing.to_string().contains("no-such-program"), "{missing}");
    }
}
