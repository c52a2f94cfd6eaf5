//! The gate: a baseline's own run passes; a planted regression (more allocations, a new
//! leak) fails with a row for each; wall-clock figures pass within their noise threshold;
//! a vanished case fails a full run only.

mod support;

use avsoak::gate::{compare, Baseline, BaselineError, Status};
use avsoak::report::{Outcome, Report, ResourceFigures, ResourceTrend, Verdict};
use avsoak::stats::Trend;

/// A run that passed: the made-up run without its failed case.
fn passing_run() -> Report {
    let mut run = support::rich_report();
    run.results.retain(|r| r.outcome != Outcome::Fail);
    run
}

fn regressed<'a>(gate: &'a avsoak::gate::Gate, case: &str) -> Vec<&'a str> {
    gate.differences
        .iter()
        .filter(|d| d.case == case && d.status == Status::Regressed)
        .map(|d| d.figure.as_str())
        .collect()
}

#[test]
fn the_baselines_own_run_passes() {
    let run = passing_run();
    let baseline = Baseline::from_run(&run).unwrap();
    // The skipped case is not part of the baseline.
    assert_eq!(baseline.cases.len(), 5);
    let gate = compare(&run, &baseline);
    assert!(gate.passed(), "{}", gate.table());
    assert_eq!(gate.compared, 5);
    assert!(gate.differences.is_empty(), "{}", gate.table());
    // The same comparison, five times over, gives the same finding.
    for _ in 0..5 {
        assert_eq!(compare(&run, &baseline), gate);
    }
}

#[test]
fn a_planted_regression_fails_with_a_row_for_each_change() {
    let baseline = Baseline::from_run(&passing_run()).unwrap();
    let mut run = passing_run();
    // More allocations in a clean case: 1.0 → 40 per iteration.
    run.results[0].heap.allocs_per_iter = 40.0;
    // A new leak where the baseline was clean.
    let churn = run
        .results
        .iter_mut()
        .find(|r| r.id == "player-queue/churn/memory")
        .unwrap();
    churn.verdict = Verdict::Leak;
    churn.outcome = Outcome::Fail;
    churn.heap.leak_bytes_per_iter = 18_432.0;
    let gate = compare(&run, &baseline);
    assert!(!gate.passed());
    assert_eq!(gate.regressions(), 3, "{}", gate.table());
    assert_eq!(
        regressed(&gate, "picture-pool/pooled/640x480"),
        ["allocs/iter"]
    );
    assert_eq!(
        regressed(&gate, "player-queue/churn/memory"),
        ["outcome", "verdict"]
    );
    let table = gate.table();
    assert!(table.contains("+39.0 (limit ±2.0)"), "{table}");
    assert!(table.contains("a new leak: 18.0 KiB/iteration"), "{table}");
    // Regressions come first.
    assert_eq!(gate.differences[0].status, Status::Regressed);
}

#[test]
fn peak_live_bytes_are_gated_by_their_tolerance() {
    let baseline = Baseline::from_run(&passing_run()).unwrap();
    let mut run = passing_run();
    // 16 MB peak: +15 % is within 20 %; +30 % is not.
    run.results[0].heap.peak_live_bytes = 18_400_000;
    assert!(compare(&run, &baseline).passed());
    run.results[0].heap.peak_live_bytes = 20_800_000;
    let gate = compare(&run, &baseline);
    assert_eq!(
        regressed(&gate, "picture-pool/pooled/640x480"),
        ["peak live"]
    );
}

#[test]
fn throughput_fails_only_beyond_the_noise_threshold() {
    let baseline = Baseline::from_run(&passing_run()).unwrap();
    let mut run = passing_run();
    run.results[0].throughput.frames_per_s = 250.0 * 0.6;
    assert!(compare(&run, &baseline).passed());
    run.results[0].throughput.frames_per_s = 250.0 * 0.4;
    let gate = compare(&run, &baseline);
    assert_eq!(
        regressed(&gate, "picture-pool/pooled/640x480"),
        ["frames/s"]
    );
    // A control's throughput measures its leak, not the pipeline: never gated.
    let mut run = passing_run();
    run.results[1].throughput.frames_per_s = 1.0;
    assert!(compare(&run, &baseline).passed());
}

#[test]
fn throughput_is_compared_only_between_runs_soaked_one_case_at_a_time() {
    let baseline = Baseline::from_run(&passing_run()).unwrap();
    assert_eq!(baseline.provenance.jobs, 1);
    // Two cases at a time on the baseline's machine: slower, and not a regression.
    let mut run = passing_run();
    run.provenance.jobs = 2;
    run.results[0].throughput.frames_per_s = 250.0 * 0.4;
    let gate = compare(&run, &baseline);
    assert!(gate.passed(), "{}", gate.table());
    let note = gate
        .differences
        .iter()
        .find(|d| d.figure == "jobs")
        .expect("the gate says why throughput was not compared");
    assert_eq!(note.status, Status::Note);
    assert!(note.why.contains("throughput not compared"), "{}", note.why);
    // Heap figures are still gated beside neighbours.
    run.results[0].heap.allocs_per_iter = 40.0;
    assert_eq!(
        regressed(&compare(&run, &baseline), "picture-pool/pooled/640x480"),
        ["allocs/iter"]
    );
    // Nor between two runs at 2: which case runs beside which changes from run to run
    // (two runs of one commit measured 0.31× apart).
    let mut base_run = passing_run();
    base_run.provenance.jobs = 2;
    let baseline = Baseline::from_run(&base_run).unwrap();
    let mut run = base_run.clone();
    run.results[0].throughput.frames_per_s = 250.0 * 0.3;
    assert!(compare(&run, &baseline).passed());
}

#[test]
fn throughput_is_judged_relative_to_each_machines_speed_index() {
    use avsoak::speed::SpeedIndex;
    let mut base_run = passing_run();
    base_run.provenance.speed = Some(SpeedIndex::new(vec![40.0, 40.0], vec![40.0], 1));
    let baseline = Baseline::from_run(&base_run).unwrap();
    let base_fps: Vec<f64> = base_run
        .results
        .iter()
        .map(|r| r.throughput.frames_per_s)
        .collect();
    // A machine half as fast: every case at 0.4× the baseline, the index at 0.5×.
    let mut run = base_run.clone();
    run.provenance.speed = Some(SpeedIndex::new(vec![20.0, 20.0], vec![20.0], 1));
    for (r, fps) in run.results.iter_mut().zip(&base_fps) {
        r.throughput.frames_per_s = fps * 0.4;
    }
    let gate = compare(&run, &baseline);
    assert!(gate.passed(), "{}", gate.table());
    assert!(
        gate.differences.iter().any(|d| d.figure == "speed index"),
        "{}",
        gate.table()
    );
    // Without the index, the same figures fail as raw wall-clock.
    let mut raw = run.clone();
    raw.provenance.speed = None;
    assert_eq!(
        regressed(&compare(&raw, &baseline), "picture-pool/pooled/640x480"),
        ["frames/s"]
    );
    // One case really 2× slower on the slow machine still fails, with both figures.
    run.results[0].throughput.frames_per_s = base_fps[0] * 0.5 * 0.45;
    let gate = compare(&run, &baseline);
    assert_eq!(
        regressed(&gate, "picture-pool/pooled/640x480"),
        ["frames/s"]
    );
    let row = gate
        .differences
        .iter()
        .find(|d| d.figure == "frames/s")
        .unwrap();
    assert!(
        row.why.contains("0.23× the baseline raw") && row.why.contains("0.45× for this machine"),
        "{}",
        row.why
    );
}

#[test]
fn fewer_allocations_and_passing_verdict_changes_are_shown_but_pass() {
    let mut baseline = Baseline::from_run(&passing_run()).unwrap();
    let pooled = baseline
        .cases
        .get_mut("picture-pool/pooled/640x480")
        .unwrap();
    pooled.allocs_per_iter = 50.0;
    let mut run = passing_run();
    run.results[0].verdict = Verdict::Bounded;
    let gate = compare(&run, &baseline);
    assert!(gate.passed(), "{}", gate.table());
    let statuses: Vec<Status> = gate.differences.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [Status::Note, Status::Improved]);
}

#[test]
fn a_missing_case_fails_a_full_run_but_not_a_selection() {
    let baseline = Baseline::from_run(&passing_run()).unwrap();
    let mut run = passing_run();
    run.results.retain(|r| r.scenario != "player-queue");
    let gate = compare(&run, &baseline);
    assert_eq!(gate.regressions(), 2, "{}", gate.table());
    run.provenance.selection = Some("--shard 1/2".into());
    assert!(compare(&run, &baseline).passed());
}

#[test]
fn a_failed_run_cannot_become_a_baseline() {
    let err = Baseline::from_run(&support::rich_report()).unwrap_err();
    assert!(matches!(err, BaselineError::Failed { count: 1, .. }));
    assert!(
        err.to_string().contains("fmp4-mux/fragmented/256k"),
        "{err}"
    );
}

#[test]
fn a_baseline_reads_back() {
    let baseline = Baseline::from_run(&passing_run()).unwrap();
    let json = serde_json::to_string_pretty(&baseline).unwrap();
    assert!(json.contains("\"schema\": \"avsoak.baseline/1\""));
    let back: Baseline = serde_json::from_str(&json).unwrap();
    assert_eq!(back, baseline);
}

/// The first result's process holding `fds` descriptors and `threads` threads at most,
/// `mapped` and `rss` bytes at peak, every series flat.
fn holding(run: &mut Report, fds: i64, threads: i64, mapped: i64, rss: i64) {
    let flat = |max: i64| ResourceTrend {
        per_iter: 0.0,
        p: 0.5,
        trend: Trend::Flat,
        end: max,
        max,
    };
    run.results[0].resources = Some(ResourceFigures {
        fds: flat(fds),
        threads: flat(threads),
        unjoined: flat(0),
        mapped_bytes: flat(mapped),
        rss_bytes: flat(rss),
        rss_unexplained_bytes_per_iter: 0.0,
    });
}

#[test]
fn what_a_clean_case_holds_beyond_the_heap_is_gated_and_a_resource_leak_is_named() {
    let mut base = passing_run();
    holding(&mut base, 7, 4, 40_960, 60 << 20);
    let baseline = Baseline::from_run(&base).unwrap();
    // Within tolerance: two more descriptors, 10 % more resident memory.
    let mut run = passing_run();
    holding(&mut run, 9, 4, 40_960, 66 << 20);
    assert!(compare(&run, &baseline).passed());
    // Beyond it: three more descriptors, eight more threads, mapped memory up by 4 MiB,
    // resident memory by 40 MiB.
    holding(&mut run, 10, 12, 4 << 20, 100 << 20);
    let gate = compare(&run, &baseline);
    assert_eq!(
        regressed(&gate, "picture-pool/pooled/640x480"),
        [
            "descriptors held",
            "threads held",
            "peak mapped",
            "peak resident"
        ],
        "{}",
        gate.table()
    );
    // A descriptor leak where the baseline was clean is a new leak that says what leaks.
    let mut run = passing_run();
    holding(&mut run, 107, 4, 40_960, 60 << 20);
    let pooled = &mut run.results[0];
    pooled.verdict = Verdict::Leak;
    pooled.outcome = Outcome::Fail;
    if let Some(res) = pooled.resources.as_mut() {
        res.fds = ResourceTrend {
            per_iter: 1.0,
            p: 1e-30,
            trend: Trend::Growing,
            end: 107,
            max: 107,
        };
    }
    let table = compare(&run, &baseline).table();
    assert!(table.contains("a new leak: +1.00 fd/iteration"), "{table}");
    // A baseline saved before resources were counted gates none of them.
    let mut old = baseline.clone();
    for case in old.cases.values_mut() {
        case.held = None;
    }
    let mut run = passing_run();
    holding(&mut run, 100, 100, 1 << 30, 1 << 33);
    assert!(compare(&run, &old).passed());
}
