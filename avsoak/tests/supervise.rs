//! The parent side of a soak, driven by fake children (shell scripts that speak the
//! protocol): every way a child can end becomes the right verdict, and none stops the
//! supervisor.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use avsoak::report::{CaseResult, Outcome, Verdict};
use avsoak::scenario::{Case, Expect, Loss};
use avsoak::soak::{supervise, Message, Plan, Sample, Watchdog, MESSAGE_PREFIX};

fn case(expect: Expect) -> Case {
    Case::new(
        "fake",
        "script",
        expect,
        "a shell script speaking the child protocol",
    )
}

fn plan() -> Plan {
    Plan {
        iterations: 60,
        warmup: 20,
        heap_cap: 1 << 30,
        suspects: 5,
        duration: None,
    }
}

fn line(message: &Message) -> String {
    format!(
        "{MESSAGE_PREFIX}{}",
        serde_json::to_string(message).unwrap()
    )
}

fn samples(n: u64, live: impl Fn(u64) -> i64) -> Vec<String> {
    samples_with_known(n, |i| (live(i), 100 + live(i) / 1000), |_| Loss::default())
}

/// Samples of `live(i)` = (bytes, blocks) whose workload declares `known(i)` of upstream
/// loss after iteration `i`.
fn samples_with_known(
    n: u64,
    live: impl Fn(u64) -> (i64, i64),
    known: impl Fn(u64) -> Loss,
) -> Vec<String> {
    (0..n)
        .map(|i| {
            line(&Message::Sample(Sample {
                i,
                live_bytes: live(i).0,
                live_blocks: live(i).1,
                allocs: 3,
                alloc_bytes: 300,
                frames: 1,
                bytes: 1000,
                ns: 1_000_000,
                cpu_ns: 1_500_000,
                known: known(i),
                gauges: BTreeMap::from([
                    ("live_packets".to_owned(), (i % 3) as i64),
                    ("queue_depth".to_owned(), 25),
                ]),
                resources: None,
            }))
        })
        .collect()
}

fn done() -> String {
    line(&Message::Done {
        peak_live_bytes: 1 << 20,
        end_live_bytes: 1 << 20,
        teardown_live_bytes: 1000,
        suspects: vec![],
        samples_taken: 0,
        samples_dropped: 0,
        sample_interval: 524_288,
        modules: vec![],
        profile: None,
        origins: Vec::new(),
    })
}

/// A child that prints `lines` (plus noise a codec might print) and then runs `tail`.
fn script(lines: &[String], tail: &str) -> Command {
    let mut body = String::from("echo 'x264 [info]: not a protocol line'\n");
    for l in lines {
        body.push_str(&format!("printf '%s\\n' '{l}'\n"));
    }
    body.push_str(tail);
    let mut command = Command::new("sh");
    command.arg("-c").arg(body);
    command
}

fn start() -> String {
    line(&Message::Start {
        iterations: 60,
        warmup: 20,
    })
}

/// Supervises a script child for a case expecting `expect`, with the quick watchdog.
fn supervise_script(lines: &[String], tail: &str, expect: Expect) -> CaseResult {
    supervise(
        script(lines, tail),
        &case(expect),
        &plan(),
        quick(),
        &mut |_| {},
    )
}

fn quick() -> Watchdog {
    Watchdog {
        stall: Duration::from_secs(2),
        total: Duration::from_secs(20),
    }
}

#[test]
fn a_flat_run_is_clean() {
    let mut lines = vec![start()];
    lines.extend(samples(60, |_| 5_000_000));
    lines.push(done());
    let mut reached = 0;
    let r = supervise(
        script(&lines, ""),
        &case(Expect::Clean),
        &plan(),
        quick(),
        &mut |i| reached = i,
    );
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Clean, Outcome::Pass),
        "{r:?}"
    );
    assert_eq!(reached, 60);
    assert_eq!(r.iterations, 60);
    assert_eq!(r.heap.allocs_per_iter, 3.0);
    assert!((r.throughput.frames_per_s - 1000.0).abs() < 1e-6);
    // CPU beside wall-clock: 1.5 ms of CPU in every 1 ms iteration (two threads).
    assert!((r.throughput.cpu_ms_per_iter - 1.5).abs() < 1e-9);
    assert_eq!(r.series.len(), 60);
    assert!(r.series.iter().all(|b| b.count == 1));
}

#[test]
fn a_growing_run_is_a_leak_and_fails_a_clean_expectation() {
    let mut lines = vec![start()];
    lines.extend(samples(60, |i| 5_000_000 + 4096 * i as i64));
    lines.push(done());
    let r = supervise_script(&lines, "", Expect::Clean);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Leak, Outcome::Fail),
        "{r:?}"
    );
    assert_eq!(r.heap.leak_bytes_per_iter, 4096.0);
    // The line the page draws is the verdict's: over the judged window (warm-up 20 of
    // 60), through the series itself, which is exactly linear here.
    let fit = r.heap.fit_bytes.expect("a fitted line");
    assert_eq!((fit.from, fit.to, fit.slope), (20, 59, 4096.0));
    assert_eq!(fit.at(59.0), 5_000_000.0 + 4096.0 * 59.0);
}

/// x265 3.5's lost `x265_param` per encoder open: 1,176 usable bytes, one block.
fn per_open(i: u64) -> Loss {
    Loss {
        bytes: 1176 * (i as i64 + 1),
        blocks: i as i64 + 1,
        slack: 0,
    }
}

/// The same loss from `posix_memalign`: 1,176 to 1,208 usable bytes a block, by where
/// the allocator places it.
fn per_aligned_open(i: u64) -> Loss {
    Loss {
        slack: 32 * (i as i64 + 1),
        ..per_open(i)
    }
}

/// `n` iterations whose live bytes and blocks after iteration `i` are 5 MB and 100
/// blocks plus `growth(i + 1)`, with the `known` loss reported, judged for a clean case
/// that declares the loss as `upstream` (or does not).
fn loss_run(
    n: u64,
    growth: impl Fn(i64) -> (i64, i64),
    known: impl Fn(u64) -> Loss,
    upstream: Option<&str>,
) -> CaseResult {
    let mut lines = vec![start()];
    lines.extend(samples_with_known(
        n,
        |i| {
            let (bytes, blocks) = growth(i as i64 + 1);
            (5_000_000 + bytes, 100 + blocks)
        },
        known,
    ));
    lines.push(done());
    let mut case = case(Expect::Clean);
    case.upstream = upstream.map(str::to_owned);
    let plan = Plan {
        iterations: n,
        ..plan()
    };
    supervise(script(&lines, ""), &case, &plan, quick(), &mut |_| {})
}

/// [`loss_run`] with the loss declared.
fn declared_run(
    n: u64,
    growth: impl Fn(i64) -> (i64, i64),
    known: impl Fn(u64) -> Loss,
) -> CaseResult {
    loss_run(
        n,
        growth,
        known,
        Some("a test library loses one block per open"),
    )
}

#[test]
fn growth_a_declared_upstream_loss_explains_is_upstream_and_passes_clean() {
    let r = declared_run(60, |n| (1176 * n, n), per_open);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Upstream, Outcome::Pass),
        "{r:?}"
    );
    assert!((r.heap.upstream_bytes_per_iter - 1176.0).abs() < 1e-9);
    assert!(r.heap.residual_bytes_per_iter.abs() < 1e-9);
    assert!(r.note.as_deref().unwrap().contains("one block per open"));

    // The same run without the declaration: the loss reported is ignored.
    let r = loss_run(60, |n| (1176 * n, n), per_open, None);
    assert_eq!(r.verdict, Verdict::Leak, "undeclared: {r:?}");
}

#[test]
fn a_declared_loss_placed_loosely_by_the_allocator_is_still_upstream() {
    // Every block lands at the top of its range: 32 B more per iteration than the
    // smallest size, 4.8 KB over the second half of 300 iterations, above the growth
    // floor had the slack not been taken off.
    let r = declared_run(300, |n| (1208 * n, n), per_aligned_open);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Upstream, Outcome::Pass),
        "{r:?}"
    );
    assert!((r.heap.upstream_bytes_per_iter - 1176.0).abs() < 1e-9);
    assert!((r.heap.upstream_slack_bytes_per_iter - 32.0).abs() < 1e-9);
    let note = r.note.unwrap();
    assert!(
        note.starts_with("upstream: 1176–1208 B/iteration"),
        "{note}"
    );

    // Beyond the top of the range by one 64-byte block per iteration: a leak.
    let r = declared_run(300, |n| ((1208 + 64) * n, 2 * n), per_aligned_open);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Leak, Outcome::Fail),
        "{r:?}"
    );
    assert!((r.heap.residual_bytes_per_iter - 64.0).abs() < 1e-9);
}

#[test]
fn growth_beyond_a_declared_upstream_loss_is_still_a_leak() {
    // The declared loss, and 2 more blocks of 300 B per iteration that nothing declares.
    let r = declared_run(60, |n| ((1176 + 600) * n, 3 * n), per_open);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Leak, Outcome::Fail),
        "{r:?}"
    );
    assert!((r.heap.residual_bytes_per_iter - 600.0).abs() < 1e-9);
}

#[test]
fn a_signal_is_a_crash_with_its_name() {
    let mut lines = vec![start()];
    lines.extend(samples(7, |_| 1000));
    let tail = "echo 'free(): invalid pointer' >&2\nkill -ABRT $$\n";
    let r = supervise_script(&lines, tail, Expect::Crash);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Crash, Outcome::Pass),
        "{r:?}"
    );
    let error = r.error.unwrap();
    assert!(
        error.starts_with("killed by SIGABRT after 7 of 60 iterations"),
        "{error}"
    );
    assert!(error.contains("free(): invalid pointer"), "{error}");
}

#[test]
fn silence_is_a_hang_with_the_last_iteration_reached() {
    let mut lines = vec![start()];
    lines.extend(samples(12, |_| 1000));
    let started = std::time::Instant::now();
    let r = supervise_script(&lines, "sleep 60\n", Expect::Clean);
    // The child sleeps 60 s; ending before that is the watchdog's stop (its 2 s stall
    // limit is in the message below).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the watchdog must stop the child"
    );
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Hang, Outcome::Fail),
        "{r:?}"
    );
    assert_eq!(
        r.error.unwrap(),
        "no progress for 2s after 12 of 60 iterations"
    );
}

#[test]
fn a_stuck_thread_the_child_reports_is_a_hang_that_names_it() {
    let mut lines = vec![start()];
    lines.extend(samples(3, |_| 1000));
    lines.push(line(&Message::Hang {
        iteration: 3,
        message: "closing the player: thread `decode-v0` still waiting for frame-queue \
                  space after 2000 ms"
            .into(),
    }));
    let r = supervise_script(&lines, "exit 3\n", Expect::Hang);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Hang, Outcome::Pass),
        "{r:?}"
    );
    let error = r.error.unwrap();
    assert!(
        error.starts_with("iteration 3: closing the player: thread `decode-v0`"),
        "{error}"
    );
    // The same report fails a case that expected a clean run.
    let r = supervise_script(&lines, "exit 3\n", Expect::Clean);
    assert_eq!((r.verdict, r.outcome), (Verdict::Hang, Outcome::Fail));
}

#[test]
fn gauges_the_child_reports_become_object_figures_and_series() {
    let mut lines = vec![start()];
    lines.extend(samples(60, |_| 1000));
    lines.push(done());
    let r = supervise_script(&lines, "", Expect::Clean);
    assert_eq!(r.verdict, Verdict::Clean, "{r:?}");
    let packets = r.objects["live_packets"];
    assert_eq!((packets.end, packets.max), (2, 2));
    assert_eq!(r.objects["queue_depth"].max, 25);
    let packets: Vec<i64> = r
        .series
        .iter()
        .map(|b| b.gauges["live_packets"].last)
        .collect();
    assert_eq!(packets.len(), 60);
    assert_eq!(packets[..4], [0, 1, 2, 0]);
}

#[test]
fn a_reported_error_is_an_error() {
    let lines = vec![
        start(),
        line(&Message::Error {
            iteration: Some(3),
            message: "x264_encoder_encode failed on frame 3".into(),
        }),
    ];
    let r = supervise_script(&lines, "exit 3\n", Expect::Clean);
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(
        r.error.unwrap(),
        "iteration 3: x264_encoder_encode failed on frame 3"
    );
}

#[test]
fn a_silent_exit_is_an_error_that_says_so() {
    let r = supervise_script(&[start()], "echo 'gone' >&2\nexit 0\n", Expect::Clean);
    assert_eq!(r.verdict, Verdict::Error);
    let error = r.error.unwrap();
    assert!(
        error.starts_with("child ended without a result (exit code 0) after 0 of 60"),
        "{error}"
    );
    assert!(error.contains("gone"));
}

#[test]
fn a_missing_program_is_an_error() {
    let r = supervise(
        Command::new("/nonexistent/avsoak-child"),
        &case(Expect::Clean),
        &plan(),
        quick(),
        &mut |_| {},
    );
    assert_eq!(r.verdict, Verdict::Error);
    assert!(r.error.unwrap().contains("cannot start child"));
}

#[test]
fn the_heap_cap_is_a_leak() {
    let mut lines = vec![start()];
    lines.extend(samples(30, |i| 1_000_000 * i as i64));
    lines.push(line(&Message::Cap {
        iteration: 29,
        live_bytes: 29_000_000,
    }));
    let r = supervise_script(&lines, "", Expect::Leak);
    assert_eq!(
        (r.verdict, r.outcome),
        (Verdict::Leak, Outcome::Pass),
        "{r:?}"
    );
    assert!(r
        .error
        .unwrap()
        .starts_with("leak: cap reached (29000000 live bytes"));
}

#[test]
fn the_warm_up_the_child_announces_is_the_one_judged() {
    // A timed child decides its warm-up itself; growth before it must not count.
    let mut lines = vec![start(), line(&Message::Warmup { iterations: 30 })];
    lines.extend(samples(60, |i| {
        5_000_000
            + if i < 30 {
                100_000 * i as i64
            } else {
                3_000_000
            }
    }));
    lines.push(done());
    let r = supervise_script(&lines, "", Expect::Clean);
    assert_eq!(
        (r.verdict, r.warmup_iterations),
        (Verdict::Clean, 30),
        "{r:?}"
    );
    assert_eq!(r.sampling.map(|s| s.interval_bytes), Some(524_288));
}

#[test]
fn a_crash_before_the_first_iteration_says_it_was_set_up() {
    let r = supervise_script(&[], "kill -SEGV $$\n", Expect::Clean);
    assert_eq!(r.verdict, Verdict::Crash);
    assert_eq!(r.error.unwrap(), "killed by SIGSEGV during set-up");
}

/// A child that prints the lines of a file: for series too long for a shell argument.
fn script_file(name: &str, lines: impl Iterator<Item = String>) -> Command {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut body = String::new();
    for l in lines {
        body.push_str(&l);
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    let mut command = Command::new("cat");
    command.arg(path);
    command
}

/// 30,000 iterations: the series the parent keeps stays bounded, covers every
/// iteration, keeps a one-iteration spike as a bucket maximum, and still judges a leak
/// and its slope per iteration, and a flat run as clean.
#[test]
fn a_long_soak_keeps_a_bounded_series_and_the_same_judgement() {
    let n = 30_000;
    let long_plan = Plan {
        iterations: n,
        warmup: 3_000,
        ..plan()
    };
    for (name, slope, expect, verdict) in [
        ("long-leak", 4096, Expect::Leak, Verdict::Leak),
        ("long-flat", 0, Expect::Clean, Verdict::Clean),
    ] {
        let live = move |i: u64| {
            let spike = if i == 12_345 { 50_000_000 } else { 0 };
            (
                5_000_000 + slope * i as i64 + spike,
                100 + (slope / 4096) * i as i64,
            )
        };
        let mut lines = vec![line(&Message::Start {
            iterations: n,
            warmup: 3_000,
        })];
        lines.extend(samples_with_known(n, live, |_| Loss::default()));
        lines.push(done());
        let r = supervise(
            script_file(name, lines.into_iter()),
            &case(expect),
            &long_plan,
            quick(),
            &mut |_| {},
        );
        assert_eq!(r.verdict, verdict, "{name}: {:?}", r.error);
        assert_eq!(r.iterations, n);
        assert!(
            r.series.len() <= 2 * 2048,
            "{name}: {} buckets",
            r.series.len()
        );
        assert_eq!(r.series.iter().map(|b| b.count).sum::<u64>(), n);
        // Buckets never straddle the end of warm-up.
        assert!(r.series.iter().any(|b| b.first == 3_000));
        let spike = r
            .series
            .iter()
            .find(|b| (b.first..=b.last()).contains(&12_345));
        assert_eq!(spike.unwrap().live_bytes.max, live(12_345).0, "{name}");
        assert!(
            (r.heap.leak_bytes_per_iter - slope as f64).abs() <= 1.0,
            "{name}: {}",
            r.heap.leak_bytes_per_iter
        );
        assert_eq!(r.heap.allocs_per_iter, 3.0);
        let csv = r.series_csv();
        assert_eq!(csv.lines().count(), r.series.len() + 1);
        assert!(csv.starts_with(
            "iteration,iterations,live_bytes,live_bytes_min,live_bytes_max,live_blocks,\
             live_blocks_min,live_blocks_max,judged,live_packets,live_packets_min,\
             live_packets_max,queue_depth,queue_depth_min,queue_depth_max\n"
        ));
    }
}
