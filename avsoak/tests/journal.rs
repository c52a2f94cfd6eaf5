//! The run's journal: what a run records case by case comes back whole, series included,
//! and a last line cut short by a kill is left out rather than failing the rebuild.

mod support;

use std::io::Write as _;

use avsoak::journal::{self, Journal, JournalError};

#[test]
fn a_journal_gives_back_the_run_and_survives_a_cut_last_line() {
    let mut report = support::rich_report();
    // A figure a run measured, which serde_json's default float parser reads back one
    // unit in the last place off: the journal must give back the very same number.
    report.results[0].throughput.iters_per_s = 96.881_240_839_931_15;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("journal");
    let _ = std::fs::remove_dir_all(&dir);
    let mut j = Journal::create(&dir, &report.provenance).unwrap();
    for result in &report.results {
        j.record(result).unwrap();
    }
    drop(j);
    let back = journal::read(&dir).unwrap();
    assert_eq!(back.provenance, report.provenance);
    assert_eq!(back.results, report.results);
    assert!(back.results.iter().any(|r| !r.series.is_empty()));

    // A kill in the middle of a write leaves half a line.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(journal::FILE))
        .unwrap();
    file.write_all(b"{\"result\":{\"id\":\"pict").unwrap();
    drop(file);
    assert_eq!(journal::read(&dir).unwrap().results, report.results);

    // Anything else that is not a journal line is an error that names the line.
    std::fs::write(dir.join(journal::FILE), "{\"provenance\": 3}\n").unwrap();
    let err = journal::read(&dir).unwrap_err();
    assert!(matches!(err, JournalError::Parse { line: 1, .. }), "{err}");
}

#[test]
fn cases_that_finish_out_of_order_come_back_in_the_runs_order() {
    let report = support::rich_report();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("journal-positions");
    let _ = std::fs::remove_dir_all(&dir);
    let mut j = Journal::create(&dir, &report.provenance).unwrap();
    // Soaked several at once: the last case finishes first, and so on.
    for (position, result) in report.results.iter().enumerate().rev() {
        j.record_at(position, result).unwrap();
    }
    drop(j);
    let back = journal::read(&dir).unwrap();
    assert!(report.results.len() > 2);
    assert_eq!(back.results, report.results);
}

/// Shards of one run merge; runs that are not shards of one run are refused, by name.
#[test]
fn only_shards_of_one_run_merge() {
    use avsoak::journal::{merge, MergeError};
    let shard = |i: usize, rev: &str, selection: &str| {
        let mut run = support::report();
        run.provenance.git_rev = rev.into();
        run.provenance.plan = Some("120 iterations, 20 warm-up".into());
        run.provenance.selection = Some(format!("{selection} --shard {i}/2"));
        run
    };
    let merged = merge(vec![
        shard(2, "abc", "--scenario a"),
        shard(1, "abc", "--scenario a"),
    ])
    .unwrap();
    assert_eq!(merged.provenance.selection.as_deref(), Some("--scenario a"));
    assert_eq!(merged.results.len(), 2 * support::report().results.len());
    let partial = merge(vec![shard(2, "abc", "--scenario a")]).unwrap();
    assert_eq!(
        partial.provenance.selection.as_deref(),
        Some("--scenario a --shards 2 of 2")
    );

    let refused = |runs| merge(runs).unwrap_err();
    assert!(matches!(
        refused(vec![shard(1, "abc", ""), shard(2, "def", "")]),
        MergeError::Revisions(..)
    ));
    assert!(matches!(
        refused(vec![
            shard(1, "abc", "--scenario a"),
            shard(2, "abc", "--scenario b")
        ]),
        MergeError::Selections(..)
    ));
    assert!(matches!(
        refused(vec![shard(1, "abc", ""), shard(1, "abc", "")]),
        MergeError::Twice(_)
    ));
    let mut other_plan = shard(2, "abc", "");
    other_plan.provenance.plan = Some("60 iterations, 20 warm-up".into());
    let err = refused(vec![shard(1, "abc", ""), other_plan]);
    assert!(err.to_string().contains("different plans"), "{err}");
    assert_eq!(merge(Vec::new()).unwrap_err(), MergeError::Empty);
}
