//! The renderers of a run folder behind one interface (as criterion's reports and
//! ripgrep's sinks are): each [`Reporter`] takes the finished [`Report`] and says which
//! files it writes; none computes a figure of its own. [`standard`] is the set every run
//! folder has; a soak binary may add its own ([`crate::Runner::reporter`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::fmt::file_stem;
use crate::report::{Report, ReportError};

/// One renderer of a finished run.
pub trait Reporter {
    /// Its name, for messages.
    fn name(&self) -> &'static str;

    /// The files it writes: a path relative to the run folder, and the contents.
    fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)>;
}

/// `report.json` (schema `avsoak.report/1`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Reporter for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)> {
        let json = serde_json::to_string_pretty(report).expect("reports serialize");
        vec![("report.json".into(), json.into_bytes())]
    }
}

/// `summary.md`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Markdown;

impl Reporter for Markdown {
    fn name(&self) -> &'static str {
        "markdown"
    }

    fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)> {
        vec![("summary.md".into(), report.markdown().into_bytes())]
    }
}

/// `index.html`, self-contained.
#[derive(Debug, Clone, Copy, Default)]
pub struct Html;

impl Reporter for Html {
    fn name(&self) -> &'static str {
        "html"
    }

    fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)> {
        vec![("index.html".into(), report.html().into_bytes())]
    }
}

/// `junit.xml`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Junit;

impl Reporter for Junit {
    fn name(&self) -> &'static str {
        "junit"
    }

    fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)> {
        vec![("junit.xml".into(), report.junit().into_bytes())]
    }
}

/// `series/<case>.csv`, one per case.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesCsv;

impl Reporter for SeriesCsv {
    fn name(&self) -> &'static str {
        "series csv"
    }

    fn render(&self, report: &Report) -> Vec<(PathBuf, Vec<u8>)> {
        report
            .results
            .iter()
            .map(|r| {
                (
                    Path::new("series").join(format!("{}.csv", file_stem(&r.id))),
                    r.series_csv().into_bytes(),
                )
            })
            .collect()
    }
}

/// The reporters of every run folder, in the order they write.
pub fn standard() -> Vec<Box<dyn Reporter + Send + Sync>> {
    vec![
        Box::new(Json),
        Box::new(Markdown),
        Box::new(Html),
        Box::new(Junit),
        Box::new(SeriesCsv),
    ]
}

impl Report {
    /// Writes the standard run folder into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        self.write_with(dir, &[])
    }

    /// Writes the standard run folder and what each of `extra` renders into `dir`
    /// (created if needed), with the folders they name.
    pub fn write_with(&self, dir: &Path, extra: &[&dyn Reporter]) -> Result<(), ReportError> {
        let standard = standard();
        let reporters = standard
            .iter()
            .map(|r| r.as_ref() as &dyn Reporter)
            .chain(extra.iter().copied());
        fs::create_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.to_owned(),
            source,
        })?;
        for reporter in reporters {
            for (file, contents) in reporter.render(self) {
                let path = dir.join(&file);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|source| ReportError::Write {
                        path: parent.to_owned(),
                        source,
                    })?;
                }
                fs::write(&path, contents).map_err(|source| ReportError::Write { path, source })?;
            }
        }
        Ok(())
    }
}
