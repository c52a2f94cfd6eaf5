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
    Provenance(Provenance),
    /// A finished case, with its bounded series.
    Result {
        result: Box<CaseResult>,
        series: Vec<Bucket>,
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
        journal.append(&Line::Provenance(provenance.clone()))?;
        Ok(journal)
    }

    /// Appends a finished case and syncs it to disk.
    pub fn record(&mut self, result: &CaseResult) -> Result<(), JournalError> {
        self.append(&Line::Result {
            result: Box::new(result.clone()),
            series: result.series.clone(),
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
/// recorded, series included. A last line cut short by a kill is left out.
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
            Line::Provenance(provenance) => report = Some(Report::new(provenance)),
            Line::Result { result, series } => {
                let report = report
                    .as_mut()
                    .ok_or_else(|| JournalError::Empty { path: path.clone() })?;
                let mut result = *result;
                result.series = series;
                report.results.push(result);
            }
        }
    }
    report.ok_or(JournalError::Empty { path })
}
