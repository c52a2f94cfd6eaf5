//! The probe: what runs beside a workload, in the process that runs it. A soak's child
//! ([`crate::soak::run_workload`]) and a watched program's preload agent
//! (`libavsoak_preload.so`) both measure through it, so an iteration means the same
//! figures in both:
//!
//! - the counters' and the CPU clock's deltas per iteration ([`Probe::begin`],
//!   [`Probe::end`]) and the [`Sample`] they make ([`Probe::sample`]);
//! - the heap cap (a [`Message::Cap`] from [`Probe::sample`]);
//! - the growth window: opened as warm-up ends ([`Probe::end_warmup`]), its end frozen
//!   after every judged iteration whose sampled stacks changed, so a program's own
//!   teardown cannot take the growth back;
//! - the final [`Message::Done`] ([`Probe::finish`]): peak, end and teardown live bytes,
//!   the suspects ranked from the window, the sampler's counts.
//!
//! Nothing here allocates between iterations but the [`Sample`] a caller asks for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::heap::{self, Snapshot};
use crate::profile::RawProfile;
use crate::protocol::{Message, Sample};
use crate::resources::{ResourceReader, Resources};
use crate::scenario::Loss;

/// How much longer than a reading of the process's resources ([`crate::resources`]) takes
/// the probe waits before the next one: an iteration that ends sooner carries the last
/// reading, so the readings cost at most a thousandth of the program's time however fast
/// it marks iterations (a reading takes about 6 µs: one every 6 ms or so). A hundredth
/// measured 1 % of a watched packet-queue's 2,000 segments of 0.8 ms, read at nearly
/// every one. The cost is the cheapest reading seen, so one reading the host delayed
/// does not delay the next ones, and the wait is at most [`RESOURCE_MAX_WAIT`].
pub const RESOURCE_COST_SHARE: u32 = 1000;

/// The longest the probe waits between two readings of the process's resources.
pub const RESOURCE_MAX_WAIT: Duration = Duration::from_millis(10);

/// CPU nanoseconds this process has used, all its threads (`CLOCK_PROCESS_CPUTIME_ID`;
/// 0 if the clock cannot be read).
pub fn process_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives across the call;
    // it neither allocates nor keeps the pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// When warm-up ends: after `iterations` iterations, and not before `time` has passed
/// since the probe started (a timed soak warms up for a tenth of its duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmup {
    /// Iterations at least.
    pub iterations: u64,
    /// Time since the probe started, at least.
    pub time: Duration,
}

/// What one iteration cost, read by [`Probe::end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The counters at the end.
    pub after: Snapshot,
    /// Allocations during the iteration.
    pub allocs: u64,
    /// Bytes allocated during the iteration.
    pub alloc_bytes: u64,
    /// Wall-clock nanoseconds.
    pub ns: u64,
    /// CPU nanoseconds, every thread of the process.
    pub cpu_ns: u64,
    /// Descriptors, threads and resident memory, when read anew for this iteration and
    /// different from the last reading sent; `None` when the last one still holds (or
    /// `/proc` cannot be read). See [`RESOURCE_COST_SHARE`].
    pub resources: Option<Resources>,
}

/// What an iteration did besides the heap, as its caller knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Work {
    /// Frames handled.
    pub frames: u64,
    /// Bytes produced.
    pub bytes: u64,
    /// The declared upstream loss so far ([`crate::scenario::Workload::known_loss`]).
    pub known: Loss,
    /// Pipeline-object gauges ([`crate::scenario::Workload::gauges`]).
    pub gauges: BTreeMap<String, i64>,
    /// The live heap the iteration held throughout, when the caller reads a low-water
    /// mark (time mode) instead of the heap at its end: (bytes, blocks).
    pub held: Option<(i64, i64)>,
}

/// Who names the suspects' stacks: this process ([`Naming::Here`], a soak's child), or
/// the watcher after the program exited ([`Naming::Watcher`]: raw addresses and the
/// module map travel in `done`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Symbolized in this process.
    Here,
    /// Raw addresses with the module map, named by the watcher.
    Watcher,
}

/// One frozen end of the growth window: the sampler's slot that holds it, the judged
/// iterations it spans, and the live heap the sample that froze it read.
#[derive(Debug, Clone, Copy)]
struct End {
    slot: usize,
    judged: u64,
    live_bytes: i64,
}

/// The measuring side of one soak or watch (see the module documentation).
#[derive(Debug)]
pub struct Probe {
    warmup: Warmup,
    heap_cap: u64,
    suspects: usize,
    started: Instant,
    /// The next iteration's number (iterations sampled so far).
    next: u64,
    /// The first judged iteration, once warm-up ended.
    judged_from: Option<u64>,
    base: Snapshot,
    base_cpu: u64,
    base_at: Instant,
    /// The sampler's generation when the window's end was last frozen.
    snapped_generation: u64,
    /// The window's last frozen ends, the latest at `ends_at`.
    ends: [Option<End>; heap::SNAPSHOTS],
    ends_at: usize,
    end_live_bytes: i64,
    /// `/proc/self`'s files, opened once; `None` where they cannot be.
    resources: Option<ResourceReader>,
    /// The last reading, and when the next one is due.
    last_resources: Option<(Resources, Instant)>,
    /// The cheapest reading so far.
    reading_cost: Duration,
    /// The last reading a sample carried.
    sent_resources: Option<Resources>,
}

impl Probe {
    /// A probe whose iterations start now, with epoch 0; `heap_cap` live bytes stop the
    /// run as a leak; `suspects` are listed at most.
    pub fn new(warmup: Warmup, heap_cap: u64, suspects: usize) -> Self {
        heap::set_epoch(0);
        let now = Instant::now();
        Probe {
            warmup,
            heap_cap,
            suspects,
            started: now,
            next: 0,
            judged_from: None,
            base: Snapshot::now(),
            base_cpu: process_cpu_ns(),
            base_at: now,
            snapped_generation: 0,
            ends: [None; heap::SNAPSHOTS],
            ends_at: 0,
            end_live_bytes: 0,
            resources: ResourceReader::open(),
            last_resources: None,
            reading_cost: Duration::MAX,
            sent_resources: None,
        }
    }

    /// The next iteration's number: how many were sampled.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The first judged iteration, once warm-up ended.
    pub fn judged_from(&self) -> Option<u64> {
        self.judged_from
    }

    /// How long since the probe started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends warm-up before the next iteration when its iterations and time have passed:
    /// opens the growth window at the next iteration's epoch (what each sampled stack
    /// holds now is what its growth is measured from; nothing is allocated) and returns
    /// the [`Message::Warmup`] to send. Call it before each iteration.
    pub fn end_warmup(&mut self) -> Option<Message> {
        if self.judged_from.is_some()
            || self.next < self.warmup.iterations
            || self.started.elapsed() < self.warmup.time
        {
            return None;
        }
        self.judged_from = Some(self.next);
        heap::open_window(self.next);
        self.snapped_generation = heap::stack_generation();
        Some(Message::Warmup {
            iterations: self.next,
        })
    }

    /// Starts measuring the next iteration from now: the counters, the CPU clock and the
    /// wall clock. Without it, an iteration is measured from the end of the one before.
    pub fn begin(&mut self) {
        self.base = Snapshot::now();
        self.base_cpu = process_cpu_ns();
        self.base_at = Instant::now();
    }

    /// Reads what the iteration cost since [`Probe::begin`] (or the last `end`): wall
    /// clock, then CPU clock, then the counters, then the resources (none of it
    /// allocates), and starts the next measurement there.
    pub fn end(&mut self) -> Reading {
        let ns = self.base_at.elapsed().as_nanos() as u64;
        let cpu = process_cpu_ns();
        let after = Snapshot::now();
        let reading = Reading {
            after,
            allocs: after.allocs.wrapping_sub(self.base.allocs),
            alloc_bytes: after
                .bytes_allocated
                .wrapping_sub(self.base.bytes_allocated),
            ns,
            cpu_ns: cpu.saturating_sub(self.base_cpu),
            resources: self.read_resources(),
        };
        self.base = after;
        self.base_cpu = cpu;
        self.base_at += Duration::from_nanos(ns);
        reading
    }

    /// The process's resources when a reading is due (see [`RESOURCE_COST_SHARE`]) and
    /// it differs from the last one a sample carried; `None` otherwise, the last one
    /// still holding: a sample carries them only when they moved, so a program marking
    /// iterations fast sends a few bytes more per reading, not per iteration.
    fn read_resources(&mut self) -> Option<Resources> {
        let reader = self.resources.as_ref()?;
        let now = match self.last_resources {
            // The mapping counters are exact and cheap: fresh every iteration.
            Some((last, due)) if Instant::now() < due => last.with_hook_counts_now(),
            _ => {
                let started = Instant::now();
                let now = reader.read()?;
                self.reading_cost = self.reading_cost.min(started.elapsed());
                let wait = (self.reading_cost * (RESOURCE_COST_SHARE + 1)).min(RESOURCE_MAX_WAIT);
                self.last_resources = Some((now, started + wait));
                now
            }
        };
        if self.sent_resources == Some(now) {
            return None;
        }
        self.sent_resources = Some(now);
        Some(now)
    }

    /// The iteration's sample, and the [`Message::Cap`] that stops the run when its live
    /// heap passed the cap. Moves the epoch to the next iteration and, in the judged
    /// window, freezes its end when a sampled stack changed (a few microseconds for
    /// hundreds of stacks; nothing otherwise).
    pub fn sample(&mut self, reading: &Reading, work: Work) -> (Sample, Option<Message>) {
        let (live_bytes, live_blocks) = work
            .held
            .unwrap_or((reading.after.live_bytes, reading.after.live_blocks));
        let sample = Sample {
            i: self.next,
            live_bytes,
            live_blocks,
            allocs: reading.allocs,
            alloc_bytes: reading.alloc_bytes,
            frames: work.frames,
            bytes: work.bytes,
            ns: reading.ns,
            cpu_ns: reading.cpu_ns,
            known: work.known,
            gauges: work.gauges,
            resources: reading.resources,
        };
        self.end_live_bytes = live_bytes;
        let iteration = self.next;
        self.next += 1;
        heap::set_epoch(self.next);
        if let Some(from) = self.judged_from {
            // The window ends at the last quiescent point, before a program's own
            // teardown frees what it kept reachable.
            let generation = heap::stack_generation();
            let judged = self.next - from;
            match &mut self.ends[self.ends_at] {
                // Nothing sampled changed: the last end stands for this point too.
                Some(end) if generation == self.snapped_generation => {
                    end.judged = judged;
                    end.live_bytes = live_bytes;
                }
                _ => {
                    let slot = heap::snapshot_window();
                    self.snapped_generation = generation;
                    self.ends_at = (self.ends_at + 1) % heap::SNAPSHOTS;
                    self.ends[self.ends_at] = Some(End {
                        slot,
                        judged,
                        live_bytes,
                    });
                }
            }
        }
        let live = reading.after.live_bytes;
        let cap = (live > 0 && live as u64 > self.heap_cap).then_some(Message::Cap {
            iteration,
            live_bytes: live,
        });
        (sample, cap)
    }

    /// The end the window's growth is read at: of the last [`heap::SNAPSHOTS`] frozen,
    /// the one whose sample read the most live heap, the latest among equals. A watched
    /// program in time mode may tear down between its last two ticks, and a tick inside
    /// the teardown must not end the window; choosing among a few ends at most multiplies
    /// the chance of listing a stack at rest by their number.
    fn window_end(&self) -> Option<End> {
        (1..=heap::SNAPSHOTS)
            .filter_map(|back| self.ends[(self.ends_at + back) % heap::SNAPSHOTS])
            .filter(|end| end.judged > 0)
            .max_by_key(|end| (end.live_bytes, end.judged))
    }

    /// The run is over: [`Message::Done`] with the stacks that grew over the judged
    /// window, and the raw heap profile when `profile` asks for one. Everything is read
    /// before symbolizing, which allocates for itself (and at an exact re-run's dense
    /// interval would fill the sample table and count drops the judged window never
    /// had); `teardown` runs between the end's reading and the teardown's (a soak's
    /// child drops its workload there; a watched program has torn down already).
    pub fn finish(
        self,
        teardown: impl FnOnce(),
        naming: Naming,
        profile: bool,
    ) -> (Message, Option<RawProfile>) {
        let peak = Snapshot::now().peak_live_bytes;
        let (samples_taken, samples_dropped) = heap::sampling_counts();
        heap::set_epoch(self.next);
        let growth = self
            .window_end()
            .map(|end| heap::window_growth_at(end.slot, end.judged));
        let raw_profile = profile.then(RawProfile::now);
        let mut origins = match self.judged_from {
            Some(from) => crate::resources::origins(from, self.suspects),
            None => Vec::new(),
        };
        let holding = match (&growth, self.judged_from) {
            (Some(_), Some(from)) => heap::Holding::now(from),
            _ => heap::Holding::default(),
        };
        teardown();
        let teardown_live_bytes = Snapshot::now().live_bytes;
        let mut suspects = growth.map_or_else(Vec::new, |g| g.unnamed_suspects(self.suspects));
        holding.attach(&mut suspects);
        let modules = match naming {
            Naming::Here => {
                let mut symbolizer = heap::Symbolizer::default();
                heap::name_suspects(&mut suspects, &mut symbolizer);
                heap::name_origins(&mut origins, &mut symbolizer);
                Vec::new()
            }
            Naming::Watcher => crate::modules::loaded_modules(),
        };
        let done = Message::Done {
            peak_live_bytes: peak,
            end_live_bytes: self.end_live_bytes,
            teardown_live_bytes,
            suspects,
            samples_taken,
            samples_dropped,
            sample_interval: heap::sample_interval(),
            modules,
            profile: None,
            origins,
        };
        (done, raw_profile)
    }
}
