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

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use avsoak::heap;
use avsoak::probe::{Naming, Probe, Warmup, Work};
use avsoak::protocol::{Message, MESSAGE_PREFIX};
use avsoak::soak::transport::{
    FINISH, SAMPLE_INTERVAL_ENV, WATCH_EVERY_MS_ENV, WATCH_FD_ENV, WATCH_HEAP_CAP_ENV,
    WATCH_PROFILE_ENV, WATCH_SUSPECTS_ENV, WATCH_WARMUP_ENV,
};

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
    warmup: u64,
    heap_cap: u64,
    suspects: usize,
    /// The measuring side, from the first sample on.
    probe: Option<Probe>,
    refused: bool,
    finished: bool,
}

impl State {
    const fn new() -> Self {
        State {
            out: Vec::new(),
            flushed: None,
            warmup: 20,
            heap_cap: 2 << 30,
            suspects: 5,
            probe: None,
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
        if self.probe.is_some() {
            return;
        }
        let warmup = Warmup {
            iterations: self.warmup,
            time: Duration::ZERO,
        };
        self.probe = Some(Probe::new(warmup, self.heap_cap, self.suspects));
        match heap::check() {
            Ok(()) => {
                let start = Message::Start {
                    iterations: 0,
                    warmup: self.warmup,
                };
                self.send(&start);
            }
            Err(refusal) => {
                self.refused = true;
                self.send(&Message::Error {
                    iteration: None,
                    message: refusal.to_string(),
                });
            }
        }
    }

    /// One iteration ended: the heap now (in time mode the lowest since the last tick),
    /// and what the iteration cost.
    fn sample(&mut self, frames: u64) {
        self.ensure_started();
        if self.refused || self.finished {
            return;
        }
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        let reading = probe.end();
        let held = TIME_MODE
            .load(Ordering::Relaxed)
            .then(avsoak::hooks::take_trough);
        let (sample, cap) = probe.sample(
            &reading,
            Work {
                frames,
                held,
                ..Work::default()
            },
        );
        let warmup = probe.end_warmup();
        self.send(&Message::Sample(sample));
        if let Some(warmup) = warmup {
            self.send(&warmup);
        }
        if let Some(cap) = cap {
            self.send(&cap);
            self.finished = true;
        }
    }

    /// The run is over: `done`, with the stacks that grew over the judged window and the
    /// heap profile, as raw addresses with the module map (names are the watcher's work,
    /// after the program exited). Once.
    fn finish(&mut self) {
        self.ensure_started();
        if self.refused || self.finished {
            return;
        }
        self.finished = true;
        let Some(probe) = self.probe.take() else {
            return;
        };
        let profile = env(WATCH_PROFILE_ENV).is_some();
        let (mut done, raw) = probe.finish(|| (), Naming::Watcher, profile);
        if let Message::Done { profile, .. } = &mut done {
            *profile = raw;
        }
        self.send(&done);
    }
}

/// The environment variable `name`, if set and UTF-8.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn env_u64(name: &str) -> Option<u64> {
    env(name)?.parse().ok()
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
            if n <= 0 || command[..n as usize].starts_with(FINISH.trim_ascii_end()) {
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
    let Some(fd) = env_u64(WATCH_FD_ENV).and_then(|fd| c_int::try_from(fd).ok()) else {
        return;
    };
    let name = std::ffi::CString::new(WATCH_FD_ENV).expect("no NUL in the name");
    // SAFETY: unsetenv with a NUL-terminated name, before the program's own threads
    // exist; fcntl on the descriptor the watcher passed.
    unsafe {
        libc::unsetenv(name.as_ptr());
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return;
        }
    }
    if let Some(interval) = env_u64(SAMPLE_INTERVAL_ENV) {
        heap::set_sample_interval(interval);
    }
    let every_ms = env_u64(WATCH_EVERY_MS_ENV);
    TIME_MODE.store(every_ms.is_some(), Ordering::Relaxed);
    if every_ms.is_some() {
        // The first period's low-water mark starts from the heap now, not from zero.
        avsoak::hooks::take_trough();
    }
    if let Ok(mut state) = STATE.lock() {
        state.out.reserve(OUT_CAPACITY);
        state.warmup = env_u64(WATCH_WARMUP_ENV).unwrap_or(20).max(1);
        state.heap_cap = env_u64(WATCH_HEAP_CAP_ENV).unwrap_or(2 << 30);
        state.suspects = env_u64(WATCH_SUSPECTS_ENV).map_or(5, |n| n as usize);
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
