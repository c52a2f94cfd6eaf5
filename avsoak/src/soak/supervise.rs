//! The judging side: a process in a group of its own ([`Contained`]) under a watchdog,
//! its protocol read by one loop (`collect`) for a soak's child and a watched program
//! alike; the run's interruption by SIGINT or SIGTERM.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::transport::{read_messages, Absorbed, Collected, Event, FINISH};
use super::verdict::conclude;
use super::Plan;
pub use crate::fmt::{last_line, signal_name};
use crate::report::CaseResult;
use crate::scenario::Case;

/// Wall-clock limits on one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// Longest silence (no protocol line) before the child is declared hung.
    pub stall: Duration,
    /// Longest run in all.
    pub total: Duration,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            stall: Duration::from_secs(60),
            total: Duration::from_secs(900),
        }
    }
}

/// When the judging side stops a process before its own end, besides the watchdog.
pub(super) struct Stopping {
    /// Silence and total run limits (a `hang`).
    pub(super) watchdog: Watchdog,
    /// A watched program's `--duration`: after it, [`FINISH`] is written on the socket
    /// and the loop waits at most [`FINISH_WAIT`] more for `done`.
    pub(super) finish_after: Option<(Duration, std::os::unix::net::UnixStream)>,
    /// Stop the process at once when it reports a cap or an error: a watched program
    /// would run on after its agent reported; a soak's child exits by itself.
    pub(super) kill_on_report: bool,
}

/// The longest a watched program is given to send `done` once asked.
pub(super) const FINISH_WAIT: Duration = Duration::from_secs(30);

/// How the loop of [`collect`] ended, besides what it collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Ended {
    /// [`FINISH`] was sent: the program is still running, to be stopped.
    pub(super) finishing: bool,
    /// The loop killed the process after it reported why it stops (a cap, an error).
    pub(super) killed: bool,
}

/// Reads `events` from the running `child` into `collected` until the stream ends or
/// the process is stopped: by an interruption of the run, the watchdog (`hang`), a
/// report when `stopping` says so, or once `done` answers a [`FINISH`]. The one loop
/// behind a soak's child and a watched program; `progress` is told each iteration
/// reached.
pub(super) fn collect(
    child: &mut Contained,
    events: &mpsc::Receiver<Event>,
    collected: &mut Collected,
    plan: &Plan,
    stopping: &mut Stopping,
    started: Instant,
    progress: &mut dyn FnMut(u64),
) -> Ended {
    let watchdog = stopping.watchdog;
    let mut ended = Ended::default();
    let mut finishing: Option<Instant> = None;
    let mut last_heard = Instant::now();
    loop {
        if let Some(signal) = interruption() {
            collected.interrupted = Some(format!(
                "interrupted by {} {}",
                signal_name(signal),
                collected.progress(plan)
            ));
            child.kill();
            break;
        }
        if let Some((after, writer)) = &mut stopping.finish_after {
            if finishing.is_none() && started.elapsed() >= *after {
                // Ask for `done` (suspects, profile) while the program still runs.
                let _ = writer.write_all(FINISH);
                finishing = Some(Instant::now());
                ended.finishing = true;
            }
        }
        if finishing.is_some_and(|f| f.elapsed() >= FINISH_WAIT) {
            break;
        }
        let now = Instant::now();
        let stall_left = watchdog.stall.saturating_sub(now - last_heard);
        let total_left = watchdog.total.saturating_sub(now - started);
        // Short waits, so an interruption of the run stops the child at once.
        let wait = stall_left.min(total_left).min(Duration::from_millis(100));
        match events.recv_timeout(wait) {
            Ok(Event::Line(message)) => {
                last_heard = Instant::now();
                match collected.absorb(message) {
                    Absorbed::Progress(reached) => progress(reached),
                    Absorbed::Stopping if stopping.kill_on_report => {
                        child.kill();
                        ended.killed = true;
                        break;
                    }
                    Absorbed::Done if finishing.is_some() => break,
                    _ => {}
                }
            }
            Ok(Event::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let stalled = now - last_heard >= watchdog.stall;
                let over = now - started >= watchdog.total;
                if finishing.is_some() || !(stalled || over) {
                    continue;
                }
                let why = if over {
                    format!("ran past the {}s limit", watchdog.total.as_secs())
                } else {
                    format!("no progress for {}s", watchdog.stall.as_secs())
                };
                collected.hang = Some(format!("{why} {}", collected.progress(plan)));
                child.kill();
                break;
            }
        }
    }
    ended
}

/// Runs one case in the child started by `command` (which must end up calling
/// [`run_child`](super::run_child)), under `watchdog`; `progress` is told each iteration
/// reached.
pub fn supervise(
    mut command: Command,
    case: &Case,
    plan: &Plan,
    watchdog: Watchdog,
    progress: &mut dyn FnMut(u64),
) -> CaseResult {
    let started = Instant::now();
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match Contained::spawn(&mut command) {
        Ok(child) => child,
        Err(e) => {
            let collected = Collected {
                error: Some(format!(
                    "cannot start child {:?}: {e}",
                    command.get_program()
                )),
                ..Collected::default()
            };
            return conclude(case, plan, collected, started.elapsed());
        }
    };
    let stdout = child.child.stdout.take().expect("stdout is piped");
    let stderr = child.child.stderr.take().expect("stderr is piped");
    let (events, reader) = read_messages(stdout);
    let stderr_reader = std::thread::spawn(move || tail_of(stderr, 8 * 1024));
    let mut collected = Collected {
        planned_warmup: plan.duration.is_none().then_some(plan.warmup),
        ..Collected::default()
    };
    let mut stopping = Stopping {
        watchdog,
        finish_after: None,
        kill_on_report: false,
    };
    collect(
        &mut child,
        &events,
        &mut collected,
        plan,
        &mut stopping,
        started,
        progress,
    );
    collected.status = child.wait().ok();
    let _ = reader.join();
    collected.stderr_tail = stderr_reader.join().unwrap_or_default();
    conclude(case, plan, collected, started.elapsed())
}

/// The signal that interrupted this run (0: none yet).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Most children one process supervises at once (`soak --jobs`), each in a slot of
/// [`RUNNING_GROUPS`].
pub const MAX_RUNNING: usize = 64;

/// The process groups of the children running now (0: a free slot), for a second signal
/// to stop them on the way out.
static RUNNING_GROUPS: [AtomicI32; MAX_RUNNING] = [const { AtomicI32::new(0) }; MAX_RUNNING];

/// The first SIGINT or SIGTERM this process received since [`catch_interrupts`], if any:
/// the supervisor stops its child (the whole group) and the runner records the case and
/// every case not run as `interrupted`.
pub fn interruption() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

extern "C" fn on_interrupt(signal: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap, and `_exit` on a second signal
    // (the journal already holds every finished case).
    if INTERRUPTED.swap(signal, Ordering::SeqCst) != 0 {
        for slot in &RUNNING_GROUPS {
            let group = slot.load(Ordering::SeqCst);
            if group > 0 {
                // SAFETY: `kill` is async-signal-safe; the group is one our running
                // child leads.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
        }
        // SAFETY: `_exit` is async-signal-safe and ends the process without running
        // anything else.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Catches SIGINT and SIGTERM for the rest of the process: the first is recorded (see
/// [`interruption`]), the second ends the process at once with 128 + its number.
pub fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` with a zeroed struct, an empty mask and a handler that
        // only touches an atomic and calls `_exit`; SA_RESTART keeps the runner's own
        // reads and waits from failing with EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// A child process in a process group of its own, which goes with all it started: on a
/// timeout, after it exits (helpers it left behind could hold its pipes open), and when
/// this value is dropped unreaped. The one way avsoak starts a child it supervises: the
/// soak's cases ([`supervise()`]) and the encoder comparison's backends alike.
#[derive(Debug)]
pub struct Contained {
    /// The child (its pipes are the caller's to take).
    pub child: Child,
    reaped: bool,
}

impl Contained {
    /// Starts `command` with standard input closed, in a new process group.
    pub fn spawn(command: &mut Command) -> std::io::Result<Contained> {
        command.stdin(Stdio::null());
        Self::spawn_keeping_stdio(command)
    }

    /// Starts `command` in a new process group with the standard streams it was given
    /// (inherited unless set): a watched program keeps its own.
    pub fn spawn_keeping_stdio(command: &mut Command) -> std::io::Result<Contained> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let child = command.spawn()?;
        // A free slot records the group; with every slot taken (more than MAX_RUNNING
        // children at once) a second signal would leave this one to its own end.
        for slot in &RUNNING_GROUPS {
            if slot
                .compare_exchange(0, child.id() as i32, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break;
            }
        }
        Ok(Contained {
            child,
            reaped: false,
        })
    }

    /// Sends SIGTERM to the child and waits up to `grace` for it to exit, then kills the
    /// group: true when it exited on SIGTERM within the grace period.
    pub fn terminate(&mut self, grace: Duration) -> std::io::Result<bool> {
        if self.reaped {
            return Ok(true);
        }
        // SAFETY: signals our own child, not yet reaped, so its pid is still ours.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        Ok(self.wait_timeout(grace)?.is_some())
    }

    /// Waits for the child to exit, then stops whatever is left in its group.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait();
        self.reaped = true;
        kill_group(self.child.id());
        status
    }

    /// Waits at most `limit`: the exit status, or `None` when the limit passed and the
    /// group was killed.
    pub fn wait_timeout(&mut self, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
                kill_group(self.child.id());
                return Ok(Some(status));
            }
            if started.elapsed() >= limit {
                self.kill();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the child's whole group and reaps the child.
    pub fn kill(&mut self) {
        kill_group(self.child.id());
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

/// A command that runs this very executable again, as a child of this process: the
/// running file itself (`/proc/self/exe`), so a rebuild that replaces the file on disk
/// in the middle of a soak does not change, or lose, what the remaining cases run. Its
/// `argv[0]` is the executable's path, as for any program.
pub fn this_executable() -> std::io::Result<Command> {
    use std::os::unix::process::CommandExt;
    let path = std::env::current_exe()?;
    let running = std::path::Path::new("/proc/self/exe");
    let mut command = Command::new(if running.exists() { running } else { &path });
    command.arg0(&path);
    Ok(command)
}

fn kill_group(pid: u32) {
    for slot in &RUNNING_GROUPS {
        let _ = slot.compare_exchange(pid as i32, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
    // SAFETY: signals the process group led by our own child (its pgid is its pid, set
    // by `process_group(0)`); ESRCH when the group is already gone is harmless.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}

fn tail_of(mut stream: impl Read, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    String::from_utf8_lossy(&tail).into_owned()
}
