//! The child side of a soak with fake workloads: samples per iteration, allocation counts
//! measured inside the iteration only, a Rust leak visible in the samples, and panics and
//! errors turned into protocol messages. One case per test (process-wide counters).

use std::hint::black_box;

use avsoak::scenario::{BoxError, Case, Expect, Scenario, Stuck, Work, Workload};
use avsoak::soak::{run_child, Message, Plan, Sample, EXIT_ERROR, EXIT_ORPHANED, MESSAGE_PREFIX};

#[derive(Clone, Copy)]
enum Kind {
    Clean,
    Leak,
    Panic,
    Fail,
    Stuck,
}

struct Fake(Kind);

/// An error that carries a [`Stuck`] as its source, as a scenario's own error would.
#[derive(Debug, thiserror::Error)]
#[error("iteration failed")]
struct Wrapped(#[source] Stuck);

struct FakeWorkload {
    kind: Kind,
    i: u64,
    kept: Vec<Box<[u8]>>,
}

impl Workload for FakeWorkload {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        self.i += 1;
        match self.kind {
            Kind::Clean => {
                black_box(vec![7u8; 1000]);
            }
            Kind::Leak => self
                .kept
                .push(black_box(vec![7u8; 4000].into_boxed_slice())),
            Kind::Panic if self.i == 4 => panic!("queue invariant broken at {}", self.i),
            Kind::Fail if self.i == 3 => return Err("sink refused the packet".into()),
            Kind::Stuck if self.i == 2 => {
                let stuck = Stuck {
                    what: "closing the player".into(),
                    thread: "decode-v0".into(),
                    state: "waiting for frame-queue space".into(),
                    waited_ms: 2000,
                    others: String::new(),
                };
                return Err(Box::new(Wrapped(stuck)));
            }
            _ => {}
        }
        Ok(Work {
            frames: 2,
            bytes: 10,
        })
    }
}

impl Scenario for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn about(&self) -> &'static str {
        "in-process fake"
    }
    fn cases(&self) -> Vec<Case> {
        vec![case()]
    }
    fn start(&self, _: &Case) -> Result<Box<dyn Workload>, BoxError> {
        Ok(Box::new(FakeWorkload {
            kind: self.0,
            i: 0,
            kept: Vec::new(),
        }))
    }
}

fn case() -> Case {
    Case::new("fake", "v", Expect::Clean, "")
}

fn run(kind: Kind) -> (i32, Vec<Message>) {
    run_plan(
        kind,
        Plan {
            iterations: 40,
            warmup: 20,
            heap_cap: 1 << 30,
            suspects: 3,
            duration: None,
        },
    )
}

fn run_plan(kind: Kind, plan: Plan) -> (i32, Vec<Message>) {
    // Sized up front: a growing sink would itself show as growth in the samples.
    let mut out = Vec::with_capacity(1 << 20);
    let code = run_child(&Fake(kind), &case(), &plan, &mut out, None);
    let messages = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l.strip_prefix(MESSAGE_PREFIX).expect("prefixed")).unwrap())
        .collect();
    (code, messages)
}

fn samples(messages: &[Message]) -> Vec<Sample> {
    messages
        .iter()
        .filter_map(|m| {
            if let Message::Sample(s) = m {
                Some(s.clone())
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn a_clean_workload_samples_every_iteration_and_counts_only_its_own_allocations() {
    avsoak::heap::settle();
    let (code, messages) = run(Kind::Clean);
    assert_eq!(code, 0);
    assert!(matches!(
        messages[0],
        Message::Start {
            iterations: 40,
            warmup: 20
        }
    ));
    let samples = samples(&messages);
    assert_eq!(samples.len(), 40);
    for s in &samples[1..] {
        assert_eq!((s.allocs, s.frames, s.bytes), (1, 2, 10), "{s:?}");
        assert_eq!(
            s.live_bytes, samples[1].live_bytes,
            "nothing is kept: {s:?}"
        );
    }
    assert!(matches!(messages.last(), Some(Message::Done { .. })));
}

#[test]
fn a_rust_leak_shows_in_the_samples_and_the_suspects() {
    avsoak::heap::settle();
    let (code, messages) = run(Kind::Leak);
    assert_eq!(code, 0);
    let samples = samples(&messages);
    let growth = samples[39].live_bytes - samples[20].live_bytes;
    // 19 boxes of 4000 bytes, plus the vector of pointers growing.
    assert!(growth >= 19 * 4000, "{growth}");
    let Some(Message::Done {
        teardown_live_bytes,
        end_live_bytes,
        ..
    }) = messages.last()
    else {
        panic!("no done message")
    };
    assert!(
        teardown_live_bytes < end_live_bytes,
        "dropping the workload frees what it kept: {teardown_live_bytes} vs {end_live_bytes}"
    );
}

#[test]
fn a_panic_becomes_an_error_message_with_its_iteration() {
    avsoak::heap::settle();
    let (code, messages) = run(Kind::Panic);
    assert_eq!(code, EXIT_ERROR);
    let Some(Message::Error { iteration, message }) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(*iteration, Some(3));
    assert_eq!(message, "panicked: queue invariant broken at 4");
}

#[test]
fn an_error_becomes_an_error_message_with_its_iteration() {
    avsoak::heap::settle();
    let (code, messages) = run(Kind::Fail);
    assert_eq!(code, EXIT_ERROR);
    let Some(Message::Error { iteration, message }) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(
        (*iteration, message.as_str()),
        (Some(2), "sink refused the packet")
    );
}

#[test]
fn a_stuck_thread_becomes_a_hang_message_with_its_chain() {
    avsoak::heap::settle();
    let (code, messages) = run(Kind::Stuck);
    assert_eq!(code, EXIT_ERROR);
    let Some(Message::Hang { iteration, message }) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(*iteration, 1);
    assert_eq!(
        message,
        "iteration failed: closing the player: thread `decode-v0` still waiting for \
         frame-queue space after 2000 ms"
    );
}

#[test]
fn a_timed_run_stops_after_its_duration_and_announces_its_warm_up() {
    avsoak::heap::settle();
    let plan = Plan {
        iterations: u64::MAX,
        warmup: 20,
        heap_cap: 1 << 30,
        suspects: 3,
        duration: Some(std::time::Duration::from_millis(300)),
    };
    let started = std::time::Instant::now();
    let (code, messages) = run_plan(Kind::Clean, plan);
    assert_eq!(code, 0);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let warmup = messages
        .iter()
        .find_map(|m| {
            if let Message::Warmup { iterations } = m {
                Some(*iterations)
            } else {
                None
            }
        })
        .expect("a warm-up announcement");
    let n = samples(&messages).len() as u64;
    assert!(
        warmup >= 20 && n >= warmup + 20,
        "warm-up {warmup}, {n} iterations"
    );
    assert!(matches!(messages.last(), Some(Message::Done { .. })));
}

/// Accepts `room` bytes, then fails like a pipe whose reader is gone.
struct BreakingPipe {
    room: usize,
}

impl std::io::Write for BreakingPipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room < buf.len() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.room -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_child_whose_parent_is_gone_stops() {
    avsoak::heap::settle();
    let plan = Plan {
        iterations: u64::MAX,
        warmup: 20,
        heap_cap: 1 << 30,
        suspects: 3,
        duration: None,
    };
    let mut pipe = BreakingPipe { room: 2000 };
    // With an endless plan, only the broken pipe can end this call.
    assert_eq!(
        run_child(&Fake(Kind::Clean), &case(), &plan, &mut pipe, None),
        EXIT_ORPHANED
    );
}
