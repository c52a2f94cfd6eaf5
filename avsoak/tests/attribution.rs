//! When the exact re-run is due, what it soaks, and what it changes in a result.

use avsoak::heap::Suspect;
use avsoak::report::{AttributionPass, CaseResult, Outcome, Sampling, Verdict};
use avsoak::scenario::{Case, Expect};
use avsoak::soak::attribution::{
    self, RERUN_GROWTH_JUDGED, RERUN_JUDGED, RERUN_LEAKED_BYTES, RERUN_SECONDS,
};
use avsoak::soak::Plan;

/// A finished `leak` of `bytes` and `blocks` per iteration, sampled every 512 KiB, whose
/// suspects grow by `explained` B/iteration in all.
fn leak(bytes: f64, blocks: f64, explained: f64) -> CaseResult {
    let case = Case::new("s", "v", Expect::Leak, "a leak");
    let mut r = CaseResult::for_case(&case, Verdict::Leak, Outcome::Pass);
    r.iterations = 120;
    r.warmup_iterations = 20;
    // 10 ms an iteration.
    r.wall_s = 1.2;
    r.heap.leak_bytes_per_iter = bytes;
    r.heap.leak_blocks_per_iter = blocks;
    r.heap.grows = true;
    r.sampling = Some(Sampling {
        interval_bytes: 512 * 1024,
        taken: 10,
        dropped: 0,
    });
    if explained > 0.0 {
        r.suspects.push(Suspect {
            growth_bytes_per_iter: explained,
            frames: vec!["innocent".into()],
            ..Suspect::default()
        });
    }
    r
}

#[test]
fn a_leak_the_samples_do_not_explain_is_re_run_densely_enough_to_see_every_block() {
    let plan = Plan::new(120);
    // 64 B per iteration in one block: each block sampled with chance 1 - e^-5.
    let rerun = attribution::plan(&leak(64.0, 1.0, 0.0), &plan).expect("nothing explains the leak");
    assert_eq!(rerun.interval, 12);
    assert_eq!(rerun.plan.warmup, plan.warmup);
    assert_eq!(rerun.plan.iterations, plan.warmup + 60);
    assert_eq!(rerun.plan.duration, None);
    // Many blocks per iteration: the shortest window; large blocks: never sparser than
    // the first pass.
    let many = attribution::plan(&leak(3_000.0, 30.0, 0.0), &plan).unwrap();
    assert_eq!(many.plan.iterations, plan.warmup + RERUN_JUDGED.0);
    let large = attribution::plan(&leak(1e8, 1.0, 1e7), &plan).unwrap();
    assert_eq!(large.interval, 512 * 1024);
    // A 460 KB block every 16 iterations: 960 judged iterations for 60 blocks, 9.6 s at
    // the first pass's 10 ms an iteration, within the budget.
    let sporadic = attribution::plan(&leak(460_000.0 / 16.0, 1.0 / 16.0, 0.0), &plan).unwrap();
    assert_eq!(sporadic.plan.iterations, plan.warmup + 960);
    assert_eq!(sporadic.interval, 92_000);
    // Slower, the same leak gets what the time budget allows, never less than 200.
    let mut slow = leak(460_000.0 / 16.0, 1.0 / 16.0, 0.0);
    slow.wall_s = 120.0 * 0.05;
    let slow = attribution::plan(&slow, &plan).unwrap();
    assert_eq!(
        slow.plan.iterations,
        plan.warmup + (RERUN_SECONDS / 0.05).round() as u64
    );
    let mut slowest = leak(460_000.0 / 16.0, 1.0 / 16.0, 0.0);
    slowest.wall_s = 120.0;
    let slowest = attribution::plan(&slowest, &plan).unwrap();
    assert_eq!(slowest.plan.iterations, plan.warmup + RERUN_JUDGED.1);
    // A huge leak is held to the bytes budget.
    let huge = attribution::plan(&leak(64e6, 0.1, 0.0), &plan).unwrap();
    assert_eq!(
        huge.plan.iterations,
        plan.warmup + (RERUN_LEAKED_BYTES / 64e6).max(RERUN_JUDGED.1 as f64) as u64
    );
}

#[test]
fn a_leak_inside_one_block_is_re_run_over_the_longest_window_sampling_its_growth() {
    let plan = Plan::new(120);
    // 200 B an iteration into one block, grown by realloc: five samples of added bytes an
    // iteration, for as long as the time budget allows at 10 ms an iteration.
    let grown = attribution::plan(&leak(200.0, 0.0, 0.0), &plan).expect("a re-run");
    assert_eq!(grown.interval, 40);
    assert_eq!(
        grown.plan.iterations,
        plan.warmup + (RERUN_SECONDS / 0.01).round() as u64
    );
    // With its CPU time measured, the budget is CPU seconds: a host that stretched the
    // wall clock to 50 ms an iteration does not shorten the window.
    let mut busy = leak(200.0, 0.0, 0.0);
    busy.wall_s = 120.0 * 0.05;
    busy.throughput.cpu_ms_per_iter = 10.0;
    let busy = attribution::plan(&busy, &plan).unwrap();
    assert_eq!(busy.plan.iterations, grown.plan.iterations);
    // A cheap iteration (0.1 ms) stops at the growth window's own cap.
    let mut cheap = leak(200.0, 0.0, 0.0);
    cheap.throughput.cpu_ms_per_iter = 0.1;
    let cheap = attribution::plan(&cheap, &plan).unwrap();
    assert_eq!(cheap.plan.iterations, plan.warmup + RERUN_GROWTH_JUDGED);
}

#[test]
fn no_re_run_when_the_samples_explain_the_leak_or_there_is_none() {
    let plan = Plan::new(120);
    assert_eq!(attribution::plan(&leak(1000.0, 1.0, 600.0), &plan), None);
    let mut clean = leak(1000.0, 1.0, 0.0);
    clean.verdict = Verdict::Clean;
    assert_eq!(attribution::plan(&clean, &plan), None);
    assert!(attribution::sampled(&clean).is_none());
    let mut unfinished = leak(1000.0, 1.0, 0.0);
    unfinished.sampling = None;
    assert_eq!(attribution::plan(&unfinished, &plan), None);
    // A leak of mappings alone: the heap's slope of a few bytes is noise, and a re-run
    // sampling every byte of it would soak thousands of iterations for nothing.
    let mut mapped = leak(1.8, 0.0, 0.0);
    mapped.heap.grows = false;
    assert_eq!(attribution::plan(&mapped, &plan), None);
    assert!(attribution::plan(&leak(1.8, 0.0, 0.0), &plan).is_some());
}

#[test]
fn a_suspect_named_by_allocator_plumbing_alone_explains_nothing() {
    // The call site many stacks share, `memalign ← posix_memalign ← av_malloc`, grew
    // with the leak, but names no code: the re-run is still due.
    let plan = Plan::new(120);
    let mut shallow = leak(1000.0, 1.0, 900.0);
    shallow.suspects[0].frames = vec![
        "memalign".into(),
        "posix_memalign".into(),
        "av_malloc".into(),
    ];
    assert_eq!(attribution::explained(&shallow), 0.0);
    assert!(attribution::plan(&shallow, &plan).is_some());
    let mut named = shallow.clone();
    named.suspects[0].frames.push("make_frame".into());
    assert_eq!(attribution::explained(&named), 0.9);
    assert!(attribution::plan(&named, &plan).is_none());
}

#[test]
fn the_re_run_names_the_suspects_and_changes_nothing_else() {
    let plan = Plan::new(120);
    let first = leak(64.0, 1.0, 0.0);
    let rerun = attribution::plan(&first, &plan).unwrap();
    let mut second = leak(70.0, 1.0, 0.0);
    second.suspects = vec![Suspect {
        growth_bytes_per_iter: 72.0,
        gained: 60,
        frames: vec!["planted".into()],
        ..Suspect::default()
    }];
    second.wall_s = 2.5;
    let adopted = attribution::adopt(first.clone(), &rerun, second.clone());
    assert_eq!(adopted.heap, first.heap);
    assert_eq!(adopted.verdict, Verdict::Leak);
    assert_eq!(adopted.suspects[0].frames, ["planted"]);
    // The share is of the first pass's slope, the one the report states.
    assert_eq!(adopted.suspects[0].share, Some(72.0 / 64.0));
    let a = adopted.attribution.unwrap();
    assert_eq!(
        (a.pass, a.interval_bytes, a.wall_s),
        (AttributionPass::Rerun, 12, 2.5)
    );
    assert!((a.explained - 72.0 / 64.0).abs() < 1e-12);
    assert!(a.describe().contains("exact re-run"), "{}", a.describe());

    // A re-run that crashed keeps the first pass's suspects and says so.
    let mut crashed = second;
    crashed.verdict = Verdict::Crash;
    crashed.sampling = None;
    crashed.error = Some("killed by SIGSEGV".into());
    let kept = attribution::adopt(first.clone(), &rerun, crashed);
    assert_eq!(kept.suspects, first.suspects);
    let note = kept.attribution.unwrap().note.unwrap();
    assert!(note.contains("crash") && note.contains("SIGSEGV"), "{note}");
}
