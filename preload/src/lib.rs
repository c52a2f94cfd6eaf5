//! `libavsoak_preload.so`: avsoak's heap instrument for a program avsoak did not build.
//!
//! `avsoak watch` starts the program with this library in `LD_PRELOAD`. The library
//! brings the same allocation hooks and sampler a soak's child links (`avsoak-hooks`,
//! forwarding to glibc's `__libc_*` functions), live from the first allocation the
//! dynamic loader makes, and an *agent* that reports to the watcher over a private
//! socket whose descriptor is named in `AVSOAK_WATCH_FD`. The program's stdin, stdout and
//! stderr stay its own. The agent speaks the soak's child protocol
//! ([`avsoak::protocol`]): `start`, one `sample` per iteration, `cap`, `error`, `done`.
//!
//! - **Marker mode**: the program calls `avsoak_iteration(frames)` (from
//!   `include/avsoak.h`) at its quiescent point; each call is one iteration.
//! - **Time mode** (`AVSOAK_WATCH_EVERY_MS`): the agent's thread takes a sample every so
//!   many milliseconds; each tick is one iteration. A tick reports the lowest live heap
//!   since the tick before (`avsoak_hooks::take_trough`), not the heap at the tick: a
//!   tick lands anywhere in a frame, and the low-water mark is what the program held
//!   throughout the period, the quiescent level a marker would have read.
//!
//! Process events:
//! - a forked child reports nothing (the fork handler closes its copy of the socket);
//!   its allocations are its own process's, which the watcher does not judge;
//! - a program it `exec`s does not report either: the constructor removes
//!   `AVSOAK_WATCH_FD` from the environment and the socket is close-on-exec;
//! - `exit` and a return from `main` send `done` from the library's destructor, after
//!   the program's own; `_exit` and `_Exit` are interposed to send it first;
//! - a program killed by a signal sends nothing more (its samples of the last 50 ms, not
//!   sent yet, are lost); the watcher judges what arrived.
//!
//! The library refuses (an `error` message, never a verdict) a process whose `malloc`
//! does not resolve to its hooks or that has another allocator loaded (jemalloc,
//! tcmalloc, mimalloc, a sanitizer runtime).

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use avsoak::heap;
use avsoak::protocol::{Message, Sample, MESSAGE_PREFIX};

/// The socket's descriptor, -1 while the agent is inert (not watched, a forked child, or
/// after `done`).
static FD: AtomicI32 = AtomicI32::new(-1);

/// Time mode: the ticks are the iterations, and `avsoak_iteration` only counts frames.
static TIME_MODE: AtomicBool = AtomicBool::new(false);

/// Frames `avsoak_iteration` reported in time mode since the last tick.
static FRAMES: AtomicU64 = AtomicU64::new(0);

static STATE: Mutex<State> = Mutex::new(State::new());

/// The longest a sample waits before it is sent (see [`State::send`]).
const FLUSH_PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

/// Waiting samples are sent once they fill this much, well inside a socket's buffer.
const FLUSH_BYTES: usize = 64 << 10;

/// The room `State::out` takes once, before `main`: waiting samples and the line past
/// [`FLUSH_BYTES`] that sends them. The buffer is the program's heap too, so it must not
/// grow while the program runs (a buffer that doubled sample by sample would look like
/// the program's growth); only `done`, the last line, may need more.
const OUT_CAPACITY: usize = FLUSH_BYTES + (8 << 10);

struct State {
    /// Messages not sent yet (protocol lines), reused.
    out: Vec<u8>,
    /// When `out` was last sent; `None` before the first message.
    flushed: Option<Instant>,
    /// Samples sent so far (the next iteration's number).
    i: u64,
    warmup: u64,
    heap_cap: u64,
    suspects: usize,
    started: Option<Instant>,
    last_ns: u64,
    last_cpu: u64,
    last_allocs: u64,
    last_alloc_bytes: u64,
    end_live_bytes: i64,
    /// When the window's end was last frozen ([`heap::snapshot_window`]), and how many
    /// judged iterations it held then.
    snapped_generation: u64,
    snapped_judged: u64,
    refused: bool,
    finished: bool,
}

impl State {
    const fn new() -> Self {
        State {
            out: Vec::new(),
            flushed: None,
            i: 0,
            warmup: 20,
            heap_cap: 2 << 30,
            suspects: 5,
            started: None,
            last_ns: 0,
            last_cpu: 0,
            last_allocs: 0,
            last_alloc_bytes: 0,
            end_live_bytes: 0,
            snapped_generation: 0,
            snapped_judged: 0,
            refused: false,
            finished: false,
        }
    }

    /// Sends `message`: at once, or (a sample) in a batch with the samples before it.
    ///
    /// A sample is one line per iteration, and a marker-mode program may mark a thousand
    /// iterations a second. One `send` each, and one wake-up of the watcher each, cost the
    /// program more than the sample itself, so samples wait in `out` for at most
    /// [`FLUSH_PERIOD`] (the agent's thread sends what waited longer). Every other message
    /// goes at once, after the samples before it. A program killed by a signal loses at
    /// most the samples of its last period; the watcher judges what arrived.
    fn send(&mut self, message: &Message) -> bool {
        if FD.load(Ordering::SeqCst) < 0 {
            return false;
        }
        self.out.extend_from_slice(MESSAGE_PREFIX.as_bytes());
        if serde_json::to_writer(&mut self.out, message).is_err() {
            self.out.clear();
            return false;
        }
        self.out.push(b'\n');
        let batched = matches!(message, Message::Sample(_));
        if batched
            && self.out.len() < FLUSH_BYTES
            && self.flushed.is_some_and(|at| at.elapsed() < FLUSH_PERIOD)
        {
            return true;
        }
        self.flush()
    }

    /// Sends the waiting samples if the oldest has waited a period.
    fn flush_stale(&mut self) {
        if !self.out.is_empty() && self.flushed.is_some_and(|at| at.elapsed() >= FLUSH_PERIOD) {
            self.flush();
        }
    }

    /// Sends every message waiting in `out`.
    fn flush(&mut self) -> bool {
        self.flushed = Some(Instant::now());
        if self.out.is_empty() {
            return true;
        }
        let fd = FD.load(Ordering::SeqCst);
        if fd < 0 {
            self.out.clear();
            return false;
        }
        let mut rest = &self.out[..];
        let mut sent = true;
        while !rest.is_empty() {
            // SAFETY: writes from a live buffer of `rest.len()` bytes to our own socket;
            // MSG_NOSIGNAL turns a gone watcher into EPIPE instead of killing the program.
            let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The watcher is gone: stop reporting, let the program run on.
                FD.store(-1, Ordering::SeqCst);
                sent = false;
                break;
            }
            rest = &rest[n as usize..];
        }
        self.out.clear();
        sent
    }

    /// The first message, once: `start`, or `error` when the instrument cannot judge.
    fn ensure_started(&mut self) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(Instant::now());
        self.last_ns = 0;
        self.last_cpu = avsoak::soak::process_cpu_ns();
        let c = heap::Snapshot::now();
        self.last_allocs = c.allocs;
        self.last_alloc_bytes = c.bytes_allocated;
        match instrument_check() {
            Ok(()) => {
                let start = Message::Start {
                    iterations: 0,
                    warmup: self.warmup,
                };
                self.send(&start);
            }
            Err(message) => {
                self.refused = true;
                self.send(&Message::Error {
                    iteration: None,
                    message,
                });
            }
        }
    }

    /// One iteration ended: the heap now, and what the iteration cost.
    fn sample(&mut self, frames: u64) {
        self.ensure_started();
        if self.refused || self.finished {
            return;
        }
        let now = heap::Snapshot::now();
        let ns = self.started.map_or(0, |s| s.elapsed().as_nanos() as u64);
        let cpu = avsoak::soak::process_cpu_ns();
        let (live_bytes, live_blocks) = if TIME_MODE.load(Ordering::Relaxed) {
            avsoak::hooks::take_trough()
        } else {
            (now.live_bytes, now.live_blocks)
        };
        let sample = Sample {
            i: self.i,
            live_bytes,
            live_blocks,
            allocs: now.allocs - self.last_allocs,
            alloc_bytes: now.bytes_allocated - self.last_alloc_bytes,
            frames,
            bytes: 0,
            ns: ns - self.last_ns,
            cpu_ns: cpu.saturating_sub(self.last_cpu),
            ..Sample::default()
        };
        self.last_ns = ns;
        self.last_cpu = cpu;
        self.last_allocs = now.allocs;
        self.last_alloc_bytes = now.bytes_allocated;
        self.end_live_bytes = live_bytes;
        self.send(&Message::Sample(sample));
        let iteration = self.i;
        self.i += 1;
        heap::set_epoch(self.i);
        if self.i == self.warmup {
            heap::open_window(self.i);
            self.snapped_generation = avsoak::hooks::stack_generation();
        } else if self.i > self.warmup {
            // The window ends at the last quiescent point, before the program's own
            // teardown frees what it kept reachable. Frozen only when a sample came or
            // went since the last time, so it costs nothing while the sums stand still.
            let generation = avsoak::hooks::stack_generation();
            if generation != self.snapped_generation {
                heap::snapshot_window();
                self.snapped_generation = generation;
            }
            self.snapped_judged = self.i - self.warmup;
        }
        if now.live_bytes > 0 && now.live_bytes as u64 > self.heap_cap {
            self.send(&Message::Cap {
                iteration,
                live_bytes: now.live_bytes,
            });
            self.finished = true;
        }
    }

    /// The run is over: `done`, with the stacks that grew over the judged window and the
    /// heap profile, as raw addresses with the module map. Once.
    fn finish(&mut self) {
        self.ensure_started();
        if self.refused || self.finished {
            return;
        }
        self.finished = true;
        // Everything read before symbolizing, which allocates for itself (and, at an
        // exact re-run's dense interval, would fill the sample table and count drops
        // that the judged window never had).
        let peak = heap::Snapshot::now().peak_live_bytes;
        let stats = avsoak::hooks::sampling_stats();
        let growth = (self.snapped_judged > 0).then(|| heap::window_growth(self.snapped_judged));
        let profile = env(c"AVSOAK_WATCH_PROFILE").map(|_| avsoak::profile::RawProfile::now());
        let teardown = heap::Snapshot::now().live_bytes;
        // Names are the watcher's work, after the program exited: here only the raw
        // addresses and the map of what was loaded where.
        let suspects = growth.map_or_else(Vec::new, |g| g.unnamed_suspects(self.suspects));
        let done = Message::Done {
            peak_live_bytes: peak,
            end_live_bytes: self.end_live_bytes,
            teardown_live_bytes: teardown,
            suspects,
            samples_taken: stats.taken,
            samples_dropped: stats.dropped,
            sample_interval: heap::sample_interval(),
            modules: avsoak::modules::loaded_modules(),
            profile,
        };
        self.send(&done);
    }
}

/// The environment variable `name`, if set and UTF-8.
fn env(name: &CStr) -> Option<String> {
    std::env::var(name.to_str().ok()?).ok()
}

fn env_u64(name: &CStr) -> Option<u64> {
    env(name)?.parse().ok()
}

/// Whether every allocation of this process goes through the hooks: the allocation
/// functions resolve to them, an allocation is counted, and no other allocator is loaded.
fn instrument_check() -> Result<(), String> {
    if let Some(object) = foreign_allocator() {
        return Err(format!(
            "the program brings its own allocator ({object}): avsoak counts glibc's malloc \
             and refuses to judge heap growth it cannot see"
        ));
    }
    // This library's own file, by a function nothing can interpose (a hook's address
    // taken here would itself go through the program's binding).
    let ours = object_of(init as *const () as usize);
    for (symbol, _) in avsoak::hooks::hook_addresses() {
        let name = std::ffi::CString::new(symbol).expect("symbol names have no NUL");
        // SAFETY: an RTLD_DEFAULT lookup of a NUL-terminated name; only compared.
        let resolved = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        if object_of(resolved) != ours {
            return Err(format!(
                "the program brings its own allocator: `{symbol}` resolves to {} instead of \
                 avsoak's hook, so avsoak cannot see its allocations and refuses to judge",
                object_of(resolved)
            ));
        }
    }
    heap::check().map_err(|e| e.to_string())
}

/// The file of the object holding `addr` (the program itself when the loader names none).
fn object_of(addr: usize) -> String {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only writes `info`; any address is allowed.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    if found == 0 {
        return "an unknown object".into();
    }
    // SAFETY: dladdr returned non-zero, so `info` is filled in.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return "an unknown object".into();
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "the program itself".into()
    } else {
        name
    }
}

/// A loaded object that is an allocator of its own, by file name.
fn foreign_allocator() -> Option<String> {
    const ALLOCATORS: [&str; 9] = [
        "libjemalloc",
        "libtcmalloc",
        "libmimalloc",
        "libasan",
        "libtsan",
        "libmsan",
        "liblsan",
        "libhwasan",
        "libubsan",
    ];
    let mut found: Option<String> = None;
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for this call, and `data` is the
        // `&mut Option<String>` given below, alive for the whole iteration.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Option<String>)) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
        let file = name.rsplit('/').next().unwrap_or(&name);
        if ALLOCATORS.iter().any(|a| file.starts_with(a)) {
            *found = Some(name.into_owned());
            return 1;
        }
        0
    }
    // SAFETY: the callback only reads the loader's entries and writes `found`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Option<String>).cast()) };
    found
}

/// One iteration of the watched program ended (marker mode): `frames` frames were
/// handled in it. Call it at the program's quiescent point, where nothing is in flight
/// that the next iteration frees. Without avsoak (the symbol is weak in `avsoak.h`) the
/// call is skipped.
#[no_mangle]
pub extern "C" fn avsoak_iteration(frames: u64) {
    if FD.load(Ordering::Relaxed) < 0 {
        return;
    }
    if TIME_MODE.load(Ordering::Relaxed) {
        FRAMES.fetch_add(frames, Ordering::Relaxed);
        return;
    }
    if let Ok(mut state) = STATE.lock() {
        state.sample(frames);
    }
}

fn finish() {
    if FD.load(Ordering::SeqCst) < 0 {
        return;
    }
    if let Ok(mut state) = STATE.lock() {
        state.finish();
    }
    let fd = FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: our own socket, closed once (the swap above makes this the only close).
        unsafe { libc::close(fd) };
    }
}

/// `_exit(2)`: sends `done` first, then ends the process as glibc's does.
///
/// # Safety
/// As `_exit(2)`.
#[no_mangle]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    finish();
    // SAFETY: exit_group ends every thread of the process; it does not return.
    unsafe { libc::syscall(libc::SYS_exit_group, status as libc::c_long) };
    unreachable_exit()
}

/// `_Exit(3)`: the same as [`_exit`].
///
/// # Safety
/// As `_Exit(3)`.
#[no_mangle]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    // SAFETY: the caller's contract is `_exit`'s.
    unsafe { _exit(status) }
}

fn unreachable_exit() -> ! {
    loop {
        std::thread::park();
    }
}

/// The agent's thread: in time mode a sample every `every_ms`; in both modes it sends
/// the samples that waited a [`FLUSH_PERIOD`], answers the watcher's `finish` (a
/// `--duration` ran out) and stops when the watcher is gone.
fn agent(fd: c_int, every_ms: Option<u64>) {
    let period = every_ms.map(|ms| std::time::Duration::from_millis(ms.max(1)));
    // The first tick one period in: by then every constructor of this library (the
    // hooks' own among them, in an order the linker chooses) has run.
    let mut next = Instant::now() + period.unwrap_or_default();
    loop {
        if FD.load(Ordering::SeqCst) < 0 {
            return;
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let until_tick = period.map_or(FLUSH_PERIOD, |_| {
            next.saturating_duration_since(Instant::now())
        });
        // Rounded up: a wait cut to 0 ms would spin until the tick.
        let wait = until_tick.min(FLUSH_PERIOD).as_micros().div_ceil(1000) as c_int;
        // SAFETY: one pollfd that lives across the call.
        let ready = unsafe { libc::poll(&mut poll, 1, wait) };
        if ready > 0 {
            let mut command = [0u8; 64];
            // SAFETY: reads into a live 64-byte buffer from our own socket.
            let n = unsafe { libc::recv(fd, command.as_mut_ptr().cast(), command.len(), 0) };
            if n <= 0 || command[..n as usize].starts_with(b"finish") {
                finish();
                return;
            }
        } else if ready == 0 {
            if let Ok(mut state) = STATE.lock() {
                if let Some(period) = period {
                    if Instant::now() >= next {
                        next += period;
                        state.sample(FRAMES.swap(0, Ordering::Relaxed));
                    }
                }
                state.flush_stale();
            }
        }
    }
}

extern "C" fn fork_child() {
    let fd = FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: the child's copy of the socket; closing it leaves the parent's open.
        unsafe { libc::close(fd) };
    }
}

/// Runs before `main`: finds the watcher's socket, hides it from programs this one
/// starts, and starts the agent.
extern "C" fn init() {
    let Some(fd) = env_u64(c"AVSOAK_WATCH_FD").and_then(|fd| c_int::try_from(fd).ok()) else {
        return;
    };
    // SAFETY: unsetenv with a NUL-terminated name, before the program's own threads
    // exist; fcntl on the descriptor the watcher passed.
    unsafe {
        libc::unsetenv(c"AVSOAK_WATCH_FD".as_ptr());
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return;
        }
    }
    if let Some(interval) = env_u64(c"AVSOAK_SAMPLE_INTERVAL") {
        heap::set_sample_interval(interval);
    }
    let every_ms = env_u64(c"AVSOAK_WATCH_EVERY_MS");
    TIME_MODE.store(every_ms.is_some(), Ordering::Relaxed);
    if every_ms.is_some() {
        // The first period's low-water mark starts from the heap now, not from zero.
        avsoak::hooks::take_trough();
    }
    if let Ok(mut state) = STATE.lock() {
        state.out.reserve(OUT_CAPACITY);
        state.warmup = env_u64(c"AVSOAK_WATCH_WARMUP").unwrap_or(20).max(1);
        state.heap_cap = env_u64(c"AVSOAK_WATCH_HEAP_CAP").unwrap_or(2 << 30);
        state.suspects = env_u64(c"AVSOAK_WATCH_SUSPECTS").map_or(5, |n| n as usize);
    }
    FD.store(fd, Ordering::SeqCst);
    // SAFETY: a plain `extern "C" fn()` child handler that only swaps an atomic and closes
    // a descriptor (both async-signal-safe).
    unsafe { libc::pthread_atfork(None, None, Some(fork_child)) };
    let spawned = std::thread::Builder::new()
        .name("avsoak-watch".into())
        .spawn(move || agent(fd, every_ms));
    if spawned.is_err() {
        FD.store(-1, Ordering::SeqCst);
    }
}

extern "C" fn fini() {
    finish();
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;
