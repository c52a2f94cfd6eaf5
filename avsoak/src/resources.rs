//! What a process holds besides its heap: open file descriptors, threads and resident
//! memory, read from `/proc/self` without allocating, and what it mapped with `mmap`,
//! counted by the hooks.
//!
//! A [`ResourceReader`] opens `/proc/self/fd`, `/proc/self/stat` and `/proc/self/statm`
//! once; each [`ResourceReader::read`] then costs a `getdents64` pass and two `pread`s
//! into buffers on the stack (about ten microseconds), and the heap counters never see
//! it. Every descriptor counts, however it was made (raw syscalls included), less the
//! reader's own three.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// One reading of what the process holds besides its heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// File descriptors open (files, sockets, pipes, eventfds…), the reader's own left out.
    pub fds: i64,
    /// Threads of the process, however they were made.
    pub threads: i64,
    /// Resident memory in bytes, anonymous and file-backed, less the pages of the hooks'
    /// own tables (`avsoak_hooks::tables_resident_bytes`): what the program holds.
    pub rss_bytes: i64,
    /// The file-backed and shared part of it (`statm`'s shared pages).
    pub rss_file_bytes: i64,
    /// Bytes the program and its libraries mapped with `mmap` and have not unmapped
    /// (counted by the hooks, exactly; glibc's own heap and thread-stack mappings are not
    /// among them).
    #[serde(default)]
    pub mapped_bytes: i64,
    /// Those mappings.
    #[serde(default)]
    pub mappings: i64,
    /// Threads created through `pthread_create` and neither joined nor detached, running
    /// or ended (counted by the hooks, exactly).
    #[serde(default)]
    pub unjoined: i64,
}

impl Resources {
    /// These resources with the hooks' counters (mappings, unjoined threads) as they
    /// stand now: they are exact and cost a few loads, so every iteration has them
    /// fresh, while `/proc` is read less often.
    pub fn with_hook_counts_now(self) -> Resources {
        let (mapped_bytes, mappings) = avsoak_hooks::mapped();
        Resources {
            mapped_bytes,
            mappings,
            unjoined: avsoak_hooks::unjoined_threads(),
            ..self
        }
    }
}

/// Where resources that outlived the judged window were made: one stack, and how many
/// it made in the window that are still held at its end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Origin {
    /// The resource: `fds`, `threads` or `mapped_bytes`.
    pub resource: String,
    /// Made in the judged window from this stack, still held at its end (bytes, for
    /// mappings).
    pub count: u64,
    /// Function names, innermost first (named as a suspect's are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<String>,
    /// The raw return addresses while the frames are still to be named in another
    /// process (a watched program's); empty in a report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<u64>,
}

impl Origin {
    /// The call that made it, then the first `frames - 1` callers past the language
    /// runtime's own layers (`std::`, `core::`, `alloc::`: `TcpStream::connect`,
    /// `thread::Builder::spawn`), joined by ` ← `: `socket ← upload_part ← …`. Every
    /// frame when all the callers are runtime layers.
    pub fn stack(&self, frames: usize) -> String {
        let Some((call, callers)) = self.frames.split_first() else {
            return String::new();
        };
        let own: Vec<&String> = callers.iter().filter(|f| !is_runtime_layer(f)).collect();
        let callers: Vec<&String> = if own.is_empty() {
            callers.iter().collect()
        } else {
            own
        };
        std::iter::once(call)
            .chain(callers)
            .take(frames)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ← ")
    }
}

/// Whether a frame belongs to Rust's standard library, which wraps every system call a
/// program makes: naming it tells the user nothing.
fn is_runtime_layer(frame: &str) -> bool {
    ["std::", "core::", "alloc::"]
        .iter()
        .any(|p| frame.starts_with(p) || frame.strip_prefix('<').is_some_and(|f| f.starts_with(p)))
}

/// The stacks of the descriptors made at `epoch` or later that are still open, of the
/// threads created at `epoch` or later and neither joined nor detached, and of the
/// mappings made at `epoch` or later and still mapped: most first (mappings by bytes), at
/// most `top` of each, with their raw addresses (not yet named).
pub fn origins(epoch: u64, top: usize) -> Vec<Origin> {
    let of = |resource: &'static str, found: Vec<avsoak_hooks::FdOrigin>| {
        found.into_iter().take(top).map(move |o| Origin {
            resource: resource.to_owned(),
            count: o.open,
            frames: Vec::new(),
            addresses: o.frames.iter().map(|&a| a as u64).collect(),
        })
    };
    of("fds", avsoak_hooks::fd_origins(epoch))
        .chain(of("threads", avsoak_hooks::thread_origins(epoch)))
        .chain(of("mapped_bytes", avsoak_hooks::mapping_origins(epoch)))
        .collect()
}

/// Reads [`Resources`] of this process (see the module documentation).
#[derive(Debug)]
pub struct ResourceReader {
    fd_dir: OwnedFd,
    stat: OwnedFd,
    statm: OwnedFd,
    page: i64,
}

fn open(path: &CStr, flags: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: open(2) with a NUL-terminated path; the descriptor it returns is ours alone
    // and owned from here on.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_RDONLY | libc::O_CLOEXEC) };
    // SAFETY: `fd` was just opened above and nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

impl ResourceReader {
    /// Opens the three files; `None` where `/proc` cannot be read (a sandbox without it),
    /// which the verdict then states.
    pub fn open() -> Option<Self> {
        // SAFETY: sysconf takes a constant and returns a number.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let reader = ResourceReader {
            fd_dir: open(c"/proc/self/fd", libc::O_DIRECTORY)?,
            stat: open(c"/proc/self/stat", 0)?,
            statm: open(c"/proc/self/statm", 0)?,
            page: if page > 0 { page as i64 } else { 4096 },
        };
        reader.read().map(|_| reader)
    }

    /// The process's resources now, or `None` if `/proc` stopped answering.
    pub fn read(&self) -> Option<Resources> {
        let fds = self.count_fds()?;
        let mut buffer = [0u8; 1024];
        let stat = pread_all(&self.stat, &mut buffer)?;
        let threads = threads_of_stat(stat)?;
        let mut buffer = [0u8; 256];
        let statm = pread_all(&self.statm, &mut buffer)?;
        let mut pages = statm
            .split(|&b| b == b' ' || b == b'\n')
            .filter(|f| !f.is_empty())
            .map(parse_i64);
        let (_size, resident, shared) = (pages.next()??, pages.next()??, pages.next()??);
        let ours = avsoak_hooks::tables_resident_bytes().unwrap_or(0) as i64;
        Some(
            Resources {
                fds,
                threads,
                rss_bytes: resident * self.page - ours,
                rss_file_bytes: shared * self.page,
                ..Resources::default()
            }
            .with_hook_counts_now(),
        )
    }

    /// Descriptors open but the reader's own three: the size Linux gives
    /// `/proc/self/fd` (its count of open descriptors since 6.2, one `fstat`), or else
    /// its entries counted ([`ResourceReader::list_fds`], about 40 µs for a hundred).
    fn count_fds(&self) -> Option<i64> {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one stat into `stat`, which lives across the call.
        if unsafe { libc::fstat(self.fd_dir.as_raw_fd(), &mut stat) } == 0 && stat.st_size > 0 {
            return Some(stat.st_size - 3);
        }
        self.list_fds()
    }

    /// Entries of `/proc/self/fd` but `.`, `..` and the reader's own three.
    fn list_fds(&self) -> Option<i64> {
        let fd = self.fd_dir.as_raw_fd();
        // SAFETY: lseek on our own directory descriptor, back to its first entry.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return None;
        }
        let mut buffer = [0u8; 4096];
        let mut entries = 0i64;
        loop {
            // SAFETY: getdents64 writes at most `buffer.len()` bytes of directory entries
            // into the live buffer on our stack.
            let n = unsafe {
                libc::syscall(libc::SYS_getdents64, fd, buffer.as_mut_ptr(), buffer.len())
            };
            if n < 0 {
                return None;
            }
            if n == 0 {
                break;
            }
            let mut at = 0usize;
            while at < n as usize {
                // linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
                let reclen = u16::from_ne_bytes([buffer[at + 16], buffer[at + 17]]) as usize;
                let name = &buffer[at + 19..at + reclen];
                if !(name.starts_with(b".\0") || name.starts_with(b"..\0")) {
                    entries += 1;
                }
                at += reclen.max(1);
            }
        }
        Some(entries - 3)
    }
}

/// Reads a whole small `/proc` file from its start into `buffer`.
fn pread_all<'a>(file: &OwnedFd, buffer: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: pread writes at most `buffer.len()` bytes into the live buffer.
    let n = unsafe {
        libc::pread(
            file.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
        )
    };
    (n > 0).then(|| &buffer[..n as usize])
}

/// `num_threads`, field 20 of `/proc/self/stat`: the 18th field after the command's
/// closing parenthesis (a command name may hold spaces and parentheses itself).
fn threads_of_stat(stat: &[u8]) -> Option<i64> {
    let after = stat.iter().rposition(|&b| b == b')')? + 1;
    stat[after..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(17)
        .and_then(parse_i64)
}

fn parse_i64(field: &[u8]) -> Option<i64> {
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_opened_and_a_thread_started_are_counted() {
        let reader = ResourceReader::open().expect("/proc is readable here");
        let before = reader.read().unwrap();
        assert!(before.threads >= 1 && before.rss_bytes > 0, "{before:?}");
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || rx.recv());
        let during = reader.read().unwrap();
        assert_eq!(during.fds, before.fds + 1, "{before:?} {during:?}");
        assert_eq!(during.threads, before.threads + 1, "{before:?} {during:?}");
        drop(file);
        tx.send(()).unwrap();
        thread.join().unwrap().unwrap();
        let after = reader.read().unwrap();
        assert_eq!((after.fds, after.threads), (before.fds, before.threads));
    }

    #[test]
    fn the_directory_size_and_its_entries_agree_on_the_descriptors_open() {
        let reader = ResourceReader::open().expect("/proc is readable here");
        let files: Vec<_> = (0..20)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        assert_eq!(reader.count_fds(), reader.list_fds());
        drop(files);
        assert_eq!(reader.count_fds(), reader.list_fds());
    }

    #[test]
    fn num_threads_is_read_past_a_command_with_spaces_and_parentheses() {
        let stat = b"42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 7 0 123 456";
        assert_eq!(threads_of_stat(stat), Some(7));
        assert_eq!(threads_of_stat(b"42 (x) S"), None);
    }

    #[test]
    fn an_origin_names_the_call_then_the_programs_own_callers() {
        let origin = |frames: &[&str]| Origin {
            resource: "threads".into(),
            count: 1,
            frames: frames.iter().map(|f| f.to_string()).collect(),
            addresses: Vec::new(),
        };
        let spawned = origin(&[
            "pthread_create",
            "<std::sys::thread::unix::Thread>::new",
            "std::thread::lifecycle::spawn_unchecked",
            "<std::thread::Builder>::spawn::<F, T>",
            "player::open_component",
            "player::play",
        ]);
        assert_eq!(
            spawned.stack(3),
            "pthread_create ← player::open_component ← player::play"
        );
        let only_runtime = origin(&["socket", "std::net::TcpStream::connect", "core::ops::f"]);
        assert_eq!(
            only_runtime.stack(4),
            "socket ← std::net::TcpStream::connect ← core::ops::f"
        );
        assert_eq!(origin(&[]).stack(4), "");
    }
}
