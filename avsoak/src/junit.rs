//! `junit.xml`: one test suite per scenario, one test case per case, so a CI system shows
//! every (scenario, variant) as a test. A failed outcome is a `<failure>` whose type is
//! the verdict and whose message says what was expected and what was found, with the
//! numbers; a skipped case is `<skipped>` with its reason.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use crate::fmt::human_bytes;
use crate::report::{CaseResult, Outcome, Report};

impl Report {
    /// The run as JUnit XML.
    pub fn junit(&self) -> String {
        let mut junit = quick_junit::Report::new(format!("avsoak {}", self.provenance.git_rev));
        let mut suites: Vec<TestSuite> = Vec::new();
        for r in &self.results {
            let at = match suites.iter().position(|s| s.name.as_str() == r.scenario) {
                Some(at) => at,
                None => {
                    suites.push(TestSuite::new(r.scenario.clone()));
                    suites.len() - 1
                }
            };
            suites[at].add_test_case(test_case(r));
        }
        let total: f64 = self.results.iter().map(|r| r.wall_s).sum();
        junit.set_time(Duration::from_secs_f64(total.max(0.0)));
        for suite in &mut suites {
            let time: f64 = self
                .results
                .iter()
                .filter(|r| r.scenario == suite.name.as_str())
                .map(|r| r.wall_s)
                .sum();
            suite.set_time(Duration::from_secs_f64(time.max(0.0)));
        }
        junit.add_test_suites(suites);
        junit.to_string().expect("JUnit XML serializes")
    }
}

/// What a reader of a CI test list needs in one line: the figures behind the verdict.
fn figures(r: &CaseResult) -> String {
    let h = &r.heap;
    format!(
        "{} iterations ({} warm-up); leak {}/iteration, {:.2} blocks/iteration (p = {:.1e}); \
         {:.1} allocations/iteration; peak live {}; {:.0} frames/s{}",
        r.iterations,
        r.warmup_iterations,
        human_bytes(h.leak_bytes_per_iter),
        h.leak_blocks_per_iter,
        h.trend_p,
        h.allocs_per_iter,
        human_bytes(h.peak_live_bytes as f64),
        r.throughput.frames_per_s,
        h.per_second_text()
            .map(|t| format!("; {t}"))
            .unwrap_or_default()
    )
}

fn test_case(r: &CaseResult) -> TestCase {
    let name =
        r.id.strip_prefix(&format!("{}/", r.scenario))
            .unwrap_or(&r.id)
            .to_owned();
    let status = match r.outcome {
        Outcome::Pass => TestCaseStatus::success(),
        Outcome::Skip => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(r.note.clone().unwrap_or_else(|| "skipped".into()));
            status
        }
        Outcome::Fail => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let mut message = format!(
                "expected {}, verdict {}: {}",
                r.expect,
                r.verdict.as_str(),
                figures(r)
            );
            if let Some(error) = &r.error {
                message.push_str("; ");
                message.push_str(error);
            }
            // Who holds the top suspect's blocks, when FFmpeg reference-counts them.
            if let Some(held) = r.summary_suspects().first().and_then(|s| s.held_by_line(4)) {
                message.push_str("; ");
                message.push_str(&held);
            }
            // What leaked besides the heap, and where it was made.
            for leak in r
                .resources
                .iter()
                .flat_map(|res| res.leaks_with(&r.origins))
            {
                message.push_str("; ");
                message.push_str(&leak);
            }
            let mut description = String::new();
            if let Some(a) = &r.attribution {
                description.push_str(&a.describe());
                description.push('\n');
            }
            for s in r.summary_suspects() {
                description.push_str(&format!("{}: {}\n", s.figures(), s.stack(usize::MAX)));
                if let Some(held) = s.held_by_line(usize::MAX) {
                    description.push_str(&format!("  {held}\n"));
                }
            }
            status.set_message(message).set_type(r.verdict.as_str());
            if !description.is_empty() {
                status.set_description(description);
            }
            status
        }
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(format!("avsoak.{}", r.scenario))
        .set_time(Duration::from_secs_f64(r.wall_s.max(0.0)));
    if r.outcome == Outcome::Pass {
        case.set_system_out(format!("verdict {}: {}", r.verdict.as_str(), figures(r)));
    }
    case
}
