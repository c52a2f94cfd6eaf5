//! The run's journal, `results.jsonl` in the run folder: the provenance on its first
//! line, then each case's result (with its series) as the case finishes, written and
//! synced to disk before the next case starts. An interrupted or killed run keeps every
//! finished case there, and [`read`] turns a journal back into the [`Report`] that the
//! run folder is rendered from (`report DIR`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::report::{CaseResult, Provenance, Report};
use crate::series::Bucket;

/// The journal's file name in a run folder.
pub const FILE: &str = "results.jsonl";

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    /// First: where and with what the run was made.
    Provenance(Box<Provenance>),
    /// A finished case, with its bounded series.
    Result {
        result: Box<CaseResult>,
        series: Vec<Bucket>,
        /// The case's place in the run (cases soaked at once finish out of order).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<usize>,
    },
}

/// Why a journal could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The run folder or the journal cannot be written.
    #[error("cannot write the run folder {}", path.display())]
    Write {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The journal cannot be read.
    #[error("cannot read the journal {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of the journal is not what a journal holds.
    #[error("{}, line {line}: not an avsoak journal line", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The journal has no provenance line.
    #[error("{} is empty: the run wrote no provenance", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// An open journal, appended to case by case.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates the run folder `dir` and a new journal in it, holding `provenance`: the
    /// check, before any case runs, that the folder can be written.
    pub fn create(dir: &Path, provenance: &Provenance) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| JournalError::Write {
                path: path.clone(),
                source,
            })?;
        let mut journal = Journal { path, file };
        journal.append(&Line::Provenance(Box::new(provenance.clone())))?;
        Ok(journal)
    }

    /// Appends a finished case and syncs it to disk.
    pub fn record(&mut self, result: &CaseResult) -> Result<(), JournalError> {
        self.append(&Line::Result {
            result: Box::new(result.clone()),
            series: result.series.clone(),
            position: None,
        })
    }

    /// Appends the finished case at `position` of the run and syncs it to disk: [`read`]
    /// puts the cases back in that order, whatever order they finished in.
    pub fn record_at(&mut self, position: usize, result: &CaseResult) -> Result<(), JournalError> {
        self.append(&Line::Result {
            result: Box::new(result.clone()),
            series: result.series.clone(),
            position: Some(position),
        })
    }

    fn append(&mut self, line: &Line) -> Result<(), JournalError> {
        let mut text = serde_json::to_string(line).expect("journal lines serialize");
        text.push('\n');
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        written.map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// The report the journal in run folder `dir` holds: its provenance and every case it
/// recorded, series included, in the run's order. A last line cut short by a kill is left
/// out.
pub fn read(dir: &Path) -> Result<Report, JournalError> {
    let path = dir.join(FILE);
    let file = File::open(&path).map_err(|source| JournalError::Read {
        path: path.clone(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Read {
            path: path.clone(),
            source,
        })?;
    let mut report: Option<Report> = None;
    let mut positions: Vec<usize> = Vec::new();
    let last = lines.len();
    for (n, text) in lines.iter().enumerate() {
        let line = match serde_json::from_str::<Line>(text) {
            Ok(line) => line,
            // A write the kill cut short.
            Err(e) if n + 1 == last && e.is_eof() => break,
            Err(source) => {
                return Err(JournalError::Parse {
                    path,
                    line: n + 1,
                    source,
                })
            }
        };
        match line {
            Line::Provenance(provenance) => report = Some(Report::new(*provenance)),
            Line::Result {
                result,
                series,
                position,
            } => {
                let report = report
                    .as_mut()
                    .ok_or_else(|| JournalError::Empty { path: path.clone() })?;
                let mut result = *result;
                result.series = series;
                positions.push(position.unwrap_or(report.results.len()));
                report.results.push(result);
            }
        }
    }
    let mut report = report.ok_or(JournalError::Empty { path })?;
    let mut placed: Vec<(usize, CaseResult)> = positions.into_iter().zip(report.results).collect();
    placed.sort_by_key(|(position, _)| *position);
    report.results = placed.into_iter().map(|(_, result)| result).collect();
    Ok(report)
}

/// Why shard runs cannot be merged into one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no run to merge")]
    Empty,
    /// The runs come from different revisions.
    #[error("the runs come from different revisions ({0} and {1}); merge runs of one commit")]
    Revisions(String, String),
    /// The runs soaked different plans.
    #[error("the runs soaked different plans ({0} and {1}); merge runs of one plan")]
    Plans(String, String),
    /// A run is not a shard of the same selection.
    #[error(
        "{0:?} is not a shard of the same selection as {1:?} (expected the same options \
         with --shard I/N)"
    )]
    Selections(String, String),
    /// A shard is there twice.
    #[error("shard {0} is there twice")]
    Twice(String),
}

/// The selection without its `--shard I/N`, and the shard.
fn split_shard(selection: Option<&str>) -> (String, Option<(usize, usize)>) {
    let Some(selection) = selection else {
        return (String::new(), None);
    };
    let mut rest = Vec::new();
    let mut shard = None;
    let mut words = selection.split_whitespace();
    while let Some(word) = words.next() {
        if word == "--shard" {
            shard = words.next().and_then(|s| {
                let (i, n) = s.split_once('/')?;
                Some((i.parse().ok()?, n.parse().ok()?))
            });
        } else {
            rest.push(word);
        }
    }
    (rest.join(" "), shard)
}

/// One run from the shards of one run (`--shard I/N` of the same commit, plan and
/// selection), its cases in the order an unsharded run has them. When every shard of N
/// is there, the merged run's selection is the shards' without `--shard`, so a gate
/// judges it as the full run it is; otherwise it says which shards it holds.
pub fn merge(runs: Vec<Report>) -> Result<Report, MergeError> {
    let first = runs.first().ok_or(MergeError::Empty)?;
    let p0 = &first.provenance;
    let (base, _) = split_shard(p0.selection.as_deref());
    let mut shards: Vec<(usize, usize, Report)> = Vec::new();
    for run in &runs {
        let p = &run.provenance;
        if p.git_rev != p0.git_rev {
            return Err(MergeError::Revisions(p0.git_rev.clone(), p.git_rev.clone()));
        }
        if p.plan != p0.plan {
            let show = |plan: &Option<String>| plan.clone().unwrap_or_else(|| "none".into());
            return Err(MergeError::Plans(show(&p0.plan), show(&p.plan)));
        }
        let (rest, shard) = split_shard(p.selection.as_deref());
        if rest != base {
            return Err(MergeError::Selections(
                p.selection.clone().unwrap_or_default(),
                p0.selection.clone().unwrap_or_default(),
            ));
        }
        let (index, count) = shard.unwrap_or((1, 1));
        if shards.iter().any(|(i, n, _)| (*i, *n) == (index, count)) {
            return Err(MergeError::Twice(format!("{index}/{count}")));
        }
        if shards.first().is_some_and(|(_, n, _)| *n != count) {
            return Err(MergeError::Selections(
                p.selection.clone().unwrap_or_default(),
                p0.selection.clone().unwrap_or_default(),
            ));
        }
        shards.push((index, count, run.clone()));
    }
    shards.sort_by_key(|(i, _, _)| *i);
    let count = shards[0].1;
    let mut provenance = shards
        .iter()
        .map(|(_, _, r)| r.provenance.clone())
        .min_by(|a, b| a.started_at.cmp(&b.started_at))
        .expect("one run at least");
    let held: Vec<String> = shards.iter().map(|(i, _, _)| i.to_string()).collect();
    provenance.selection = if shards.len() == count {
        (!base.is_empty()).then_some(base.clone())
    } else {
        Some(
            format!("{base} --shards {} of {count}", held.join(","))
                .trim()
                .to_owned(),
        )
    };
    // Shard I holds positions I-1, I-1+N, …: deal them back in turn.
    let mut merged = Report::new(provenance);
    let mut queues: Vec<std::vec::IntoIter<CaseResult>> = shards
        .into_iter()
        .map(|(_, _, r)| r.results.into_iter())
        .collect();
    loop {
        let before = merged.results.len();
        for queue in &mut queues {
            if let Some(result) = queue.next() {
                merged.results.push(result);
            }
        }
        if merged.results.len() == before {
            break;
        }
    }
    Ok(merged)
}

/// A run folder's report with its series: from its journal when it has one, else from
/// its `report.json` (series then empty).
pub fn read_folder(dir: &Path) -> Result<Report, crate::scenario::BoxError> {
    if dir.join(FILE).is_file() {
        return Ok(read(dir)?);
    }
    Ok(crate::gate::read_run(dir)?)
}

/// Merges the shard run folders `runs` (see [`merge`]) into the run folder `out`: its
/// journal, the standard files, and the heap profiles the cases link.
pub fn merge_folders(out: &Path, runs: &[PathBuf]) -> Result<Report, crate::scenario::BoxError> {
    let mut reports = Vec::with_capacity(runs.len());
    for run in runs {
        reports.push(read_folder(run).map_err(|e| format!("{}: {e}", run.display()))?);
    }
    let merged = merge(reports)?;
    let mut journal = Journal::create(out, &merged.provenance)?;
    for result in &merged.results {
        journal.record(result)?;
    }
    for run in runs {
        let profiles = run.join("profiles");
        let Ok(entries) = std::fs::read_dir(&profiles) else {
            continue;
        };
        std::fs::create_dir_all(out.join("profiles"))
            .map_err(|e| format!("{}: {e}", out.join("profiles").display()))?;
        for entry in entries.flatten() {
            let to = out.join("profiles").join(entry.file_name());
            std::fs::copy(entry.path(), &to)
                .map_err(|e| format!("copying {}: {e}", entry.path().display()))?;
        }
    }
    merged.write(out)?;
    Ok(merged)
}
