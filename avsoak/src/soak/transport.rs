//! The transport between a measured process and the process that judges it: how a soak's
//! child and a watched program are told what to do (argv and environment), how their
//! protocol lines are read (a pipe from a child, a socket from a preloaded program: one
//! reader), and how each message adds to what is `Collected` (`Collected::absorb`).
//!
//! Both ends use the names here: the environment variables are these constants on the
//! judging side and in the preload library alike; the hooks crate reads
//! [`SAMPLE_INTERVAL_ENV`] before `main` through a C-string copy that a test checks
//! equal.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Plan;
use crate::protocol::{Message, Sample, MESSAGE_PREFIX};
use crate::scenario::Case;
use crate::series::{Bucket, Series};

/// The mean bytes between stack samples, for a soak's child and a watched program alike
/// (read by the hooks' constructor before `main`).
pub const SAMPLE_INTERVAL_ENV: &str = "AVSOAK_SAMPLE_INTERVAL";
/// A watched program's end of the socket to the watcher (a descriptor number).
pub const WATCH_FD_ENV: &str = "AVSOAK_WATCH_FD";
/// A watched program's warm-up: iterations (marker mode) or ticks (time mode).
pub const WATCH_WARMUP_ENV: &str = "AVSOAK_WATCH_WARMUP";
/// A watched program's heap cap in live bytes.
pub const WATCH_HEAP_CAP_ENV: &str = "AVSOAK_WATCH_HEAP_CAP";
/// How many suspects a watched program lists.
pub const WATCH_SUSPECTS_ENV: &str = "AVSOAK_WATCH_SUSPECTS";
/// Time mode's tick in milliseconds; unset is marker mode.
pub const WATCH_EVERY_MS_ENV: &str = "AVSOAK_WATCH_EVERY_MS";
/// Set when the watcher wants the raw heap profile in `done`.
pub const WATCH_PROFILE_ENV: &str = "AVSOAK_WATCH_PROFILE";
/// What the watcher writes on the socket to ask a program for `done` while it runs.
pub const FINISH: &[u8] = b"finish\n";

/// The child command for `case` of a soak: this executable again (`executable`, from
/// [`super::this_executable`]), `child --case ID` and the plan, the sampling interval
/// (the case's own when smaller) in [`SAMPLE_INTERVAL_ENV`], and the parent's working
/// folder.
pub fn child_command(
    mut command: Command,
    case: &Case,
    plan: &Plan,
    sample_interval: u64,
    profile: Option<&Path>,
) -> std::io::Result<Command> {
    command
        .args(["child", "--case", &case.id()])
        .args(["--iterations", &plan.iterations.to_string()])
        .args(["--warmup", &plan.warmup.to_string()])
        .args(["--heap-cap", &plan.heap_cap.to_string()])
        .args(["--suspects", &plan.suspects.to_string()])
        .args(plan.duration.map(|d| format!("--duration={}", d.as_secs())))
        .env(
            SAMPLE_INTERVAL_ENV,
            case.sample_interval
                .map_or(sample_interval, |i| i.min(sample_interval))
                .to_string(),
        )
        .current_dir(std::env::current_dir()?);
    if let Some(profile) = profile {
        command.arg("--profile").arg(profile);
    }
    Ok(command)
}

/// What a watched program's agent is told: its socket, its plan and the mode.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings<'a> {
    /// The program's end of the socket.
    pub fd: i32,
    /// Warm-up iterations or ticks.
    pub warmup: u64,
    /// Live bytes that stop it as a leak.
    pub heap_cap: u64,
    /// Suspects to list.
    pub suspects: usize,
    /// Mean bytes between stack samples.
    pub sample_interval: u64,
    /// Time mode's tick; `None` is marker mode.
    pub every: Option<Duration>,
    /// Where the profile goes (the agent only needs to know that one is wanted).
    pub profile: Option<&'a Path>,
}

/// Sets a watched program's environment: the preload library first in `LD_PRELOAD`
/// (before any the caller had), and every setting of the agent.
pub fn watch_environment(command: &mut Command, preload: &Path, s: &WatchSettings<'_>) {
    let preload = match std::env::var_os("LD_PRELOAD") {
        Some(old) if !old.is_empty() => {
            let mut joined = preload.as_os_str().to_owned();
            joined.push(":");
            joined.push(old);
            joined
        }
        _ => preload.as_os_str().to_owned(),
    };
    command
        .env("LD_PRELOAD", preload)
        .env(WATCH_FD_ENV, s.fd.to_string())
        .env(WATCH_WARMUP_ENV, s.warmup.to_string())
        .env(WATCH_HEAP_CAP_ENV, s.heap_cap.to_string())
        .env(WATCH_SUSPECTS_ENV, s.suspects.to_string())
        .env(SAMPLE_INTERVAL_ENV, s.sample_interval.to_string());
    match s.every {
        Some(every) => command.env(WATCH_EVERY_MS_ENV, every.as_millis().max(1).to_string()),
        None => command.env_remove(WATCH_EVERY_MS_ENV),
    };
    match s.profile {
        Some(profile) => command.env(WATCH_PROFILE_ENV, profile),
        None => command.env_remove(WATCH_PROFILE_ENV),
    };
}

/// One thing the reader saw.
pub(super) enum Event {
    /// A protocol message.
    Line(Message),
    /// The stream ended.
    Eof,
}

/// Reads protocol lines from `stream` on a thread of their own until it ends: every
/// line behind [`MESSAGE_PREFIX`] that parses is an [`Event::Line`]; anything else (a
/// codec's own output on a child's stdout) is passed over.
pub(super) fn read_messages(
    stream: impl Read + Send + 'static,
) -> (mpsc::Receiver<Event>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(json) = line.strip_prefix(MESSAGE_PREFIX) {
                if let Ok(message) = serde_json::from_str::<Message>(json) {
                    if tx.send(Event::Line(message)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof);
    });
    (rx, reader)
}

/// What a message meant to the loop that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Absorbed {
    /// A sample: iterations reached so far.
    Progress(u64),
    /// The process reported why it stops (a cap or an error).
    Stopping,
    /// `done` arrived.
    Done,
    /// Anything else.
    Other,
}

/// What the judging side collected from one process: bounded however long it runs.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Warm-up iterations.
    pub(super) warm: Series,
    /// Judged iterations (buckets never straddle the end of warm-up).
    pub(super) judged: Series,
    /// Sums over the judged iterations.
    pub(super) totals: Totals,
    /// Where judging starts until the process says (a fixed plan's warm-up; none for a
    /// timed one, whose warm-up the child decides).
    pub(super) planned_warmup: Option<u64>,
    pub(super) started: bool,
    pub(super) warmup: Option<u64>,
    pub(super) cap: Option<(u64, i64)>,
    pub(super) error: Option<String>,
    pub(super) done: Option<Message>,
    pub(super) hang: Option<String>,
    /// The run was interrupted while this process ran (by what, and where).
    pub(super) interrupted: Option<String>,
    pub(super) status: Option<ExitStatus>,
    pub(super) stderr_tail: String,
    /// The last resources a sample carried, for the samples after it that carry none.
    pub(super) resources: Option<crate::resources::Resources>,
}

/// Sums over judged iterations, for the per-iteration means and the throughput.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    pub(super) ns: u64,
    pub(super) cpu_ns: u64,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) allocs: u64,
    pub(super) alloc_bytes: u64,
}

impl Collected {
    /// Adds one message to what was collected.
    pub(super) fn absorb(&mut self, message: Message) -> Absorbed {
        match message {
            Message::Start { .. } => self.started = true,
            Message::Warmup { iterations } => self.warmup = Some(iterations),
            Message::Sample(mut sample) => {
                // A sample carries resources only when they moved: the last ones hold.
                match sample.resources {
                    Some(now) => self.resources = Some(now),
                    None => sample.resources = self.resources,
                }
                self.add(&sample);
                return Absorbed::Progress(sample.i + 1);
            }
            Message::Cap {
                iteration,
                live_bytes,
            } => {
                self.cap = Some((iteration, live_bytes));
                return Absorbed::Stopping;
            }
            Message::Hang { iteration, message } => {
                self.hang = Some(format!("iteration {iteration}: {message}"))
            }
            Message::Error { iteration, message } => {
                self.error = Some(match iteration {
                    Some(i) => format!("iteration {i}: {message}"),
                    None => message,
                });
                return Absorbed::Stopping;
            }
            done @ Message::Done { .. } => {
                self.done = Some(done);
                return Absorbed::Done;
            }
        }
        Absorbed::Other
    }

    fn add(&mut self, sample: &Sample) {
        if self
            .warmup
            .or(self.planned_warmup)
            .is_some_and(|w| sample.i >= w)
        {
            let t = &mut self.totals;
            t.ns += sample.ns;
            t.cpu_ns += sample.cpu_ns;
            t.frames += sample.frames;
            t.bytes += sample.bytes;
            t.allocs += sample.allocs;
            t.alloc_bytes += sample.alloc_bytes;
            self.judged.push(sample);
        } else {
            self.warm.push(sample);
        }
    }

    /// The latest bucket: the one that holds the last iteration reported.
    pub(super) fn latest(&self) -> Option<&Bucket> {
        self.judged.buckets().last().or(self.warm.buckets().last())
    }

    /// Iterations the process completed.
    pub(super) fn reached(&self) -> u64 {
        self.latest().map_or(0, |b| b.last() + 1)
    }

    /// Where the process had got to, for messages: `during set-up`, or `after N of M
    /// iterations` (`after N iterations` for a timed or open-ended run).
    pub(super) fn progress(&self, plan: &Plan) -> String {
        let reached = self.reached();
        match (self.started, plan.duration) {
            (false, _) => "during set-up".to_owned(),
            (true, None) => format!("after {reached} of {} iterations", plan.iterations),
            (true, Some(_)) => format!("after {reached} iterations"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "hooks")]
    fn the_hooks_read_the_sampling_interval_by_the_transports_name() {
        assert_eq!(
            avsoak_hooks::SAMPLE_INTERVAL_ENV.to_str(),
            Ok(SAMPLE_INTERVAL_ENV)
        );
    }

    #[test]
    fn a_watched_program_is_told_every_setting_by_name() {
        let mut command = Command::new("true");
        let settings = WatchSettings {
            fd: 7,
            warmup: 12,
            heap_cap: 1 << 30,
            suspects: 3,
            sample_interval: 4096,
            every: Some(Duration::from_millis(50)),
            profile: Some(Path::new("/tmp/p.json")),
        };
        watch_environment(&mut command, Path::new("/lib/x.so"), &settings);
        let envs: std::collections::HashMap<_, _> = command
            .get_envs()
            .map(|(k, v)| (k.to_str().unwrap(), v.and_then(|v| v.to_str())))
            .collect();
        assert_eq!(envs[WATCH_FD_ENV], Some("7"));
        assert_eq!(envs[WATCH_WARMUP_ENV], Some("12"));
        assert_eq!(envs[WATCH_HEAP_CAP_ENV], Some("1073741824"));
        assert_eq!(envs[WATCH_SUSPECTS_ENV], Some("3"));
        assert_eq!(envs[SAMPLE_INTERVAL_ENV], Some("4096"));
        assert_eq!(envs[WATCH_EVERY_MS_ENV], Some("50"));
        assert_eq!(envs[WATCH_PROFILE_ENV], Some("/tmp/p.json"));
        assert!(envs["LD_PRELOAD"].unwrap().starts_with("/lib/x.so"));
        // Marker mode and no profile remove what the watcher's own environment had.
        let marker = WatchSettings {
            every: None,
            profile: None,
            ..settings
        };
        watch_environment(&mut command, Path::new("/lib/x.so"), &marker);
        let envs: std::collections::HashMap<_, _> = command
            .get_envs()
            .map(|(k, v)| (k.to_str().unwrap(), v))
            .collect();
        assert_eq!(envs[WATCH_EVERY_MS_ENV], None);
        assert_eq!(envs[WATCH_PROFILE_ENV], None);
    }
}
