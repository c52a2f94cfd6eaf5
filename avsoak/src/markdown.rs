//! `summary.md`, the terminal table and the series CSV: text renderings of a finished
//! [`Report`], computing nothing of their own.

use std::fmt::Write as _;

use crate::fmt::{human_bytes, render_table};
use crate::report::{CaseResult, Report};

impl Report {
    /// The summary as Markdown: provenance, then the result table, then suspects.
    pub fn markdown(&self) -> String {
        let p = &self.provenance;
        let mut md = String::new();
        let _ = writeln!(md, "# {} at {}\n", self.title(), p.started_at);
        let _ = writeln!(
            md,
            "commit {}; host `{}`, {}, {}; {}\n",
            p.git_rev,
            p.host,
            p.machine(),
            p.rustc,
            self.libraries()
        );
        let _ = writeln!(md, "**{}.**\n", self.tally());
        md.push_str(&self.table(true));
        let mut any = false;
        for r in self.results.iter().filter(|r| {
            r.error.is_some()
                || r.note.is_some()
                || !r.objects.is_empty()
                || !r.summary_suspects().is_empty()
                || r.attribution.is_some()
                || r.heap.onset.is_some()
        }) {
            if !any {
                md.push_str("\n## Details\n");
                any = true;
            }
            let _ = writeln!(md, "\n### {}\n", r.id);
            for text in r.error.iter().chain(&r.note) {
                let _ = writeln!(md, "- {text}");
            }
            if !r.objects.is_empty() {
                let gauges: Vec<String> = r
                    .objects
                    .iter()
                    .map(|(name, g)| format!("{name} {} (max {})", g.end, g.max))
                    .collect();
                let _ = writeln!(md, "- pipeline objects at the end: {}", gauges.join(", "));
            }
            if let Some(onset) = &r.heap.onset {
                let _ = writeln!(md, "- {}", onset.describe());
            }
            if let Some(a) = &r.attribution {
                let _ = writeln!(md, "- {}", a.describe());
            }
            for s in r.summary_suspects() {
                let _ = writeln!(md, "- {}: `{}`", s.figures(), s.stack(6));
                if let Some(held) = s.held_by_line(6) {
                    let _ = writeln!(md, "  - {held}");
                }
            }
        }
        md
    }

    /// The result table, as Markdown (`markdown = true`) or aligned plain text. When any
    /// result counted descriptors, threads and resident memory, each has a column of its
    /// slope in the case's clock.
    pub fn table(&self, markdown: bool) -> String {
        let with_resources = self.results.iter().any(|r| r.resources.is_some());
        let mut header = vec![
            "case",
            "expect",
            "verdict",
            "outcome",
            "leak",
            "blocks",
            "p",
            "allocs/iter",
            "peak live",
            "frames/s",
        ];
        if with_resources {
            header.extend(["fds", "threads", "mapped", "RSS"]);
        }
        let rows: Vec<Vec<String>> = self
            .results
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.id.clone(),
                    r.expect.to_string(),
                    r.verdict.as_str().to_owned(),
                    r.outcome.as_str().to_owned(),
                    r.heap.leak_rate(),
                    r.heap.blocks_rate(),
                    format!("{:.1e}", r.heap.trend_p),
                    format!("{:.1}", r.heap.allocs_per_iter),
                    human_bytes(r.heap.peak_live_bytes as f64),
                    format!("{:.0}", r.throughput.frames_per_s),
                ];
                if with_resources {
                    row.extend(r.resource_rates());
                }
                row
            })
            .collect();
        render_table(&header, &rows, markdown)
    }
}

impl CaseResult {
    /// The series as CSV: one row per bucket (one per iteration until the series fills,
    /// see [`crate::series`]). `iteration` is the bucket's first iteration, `iterations`
    /// how many it covers; each quantity has its value after the bucket's last iteration
    /// and its `_min` and `_max` over the bucket; `judged` is 0 in warm-up. Gauges follow,
    /// the same way, in name order, then descriptors, threads and resident bytes when
    /// they were counted.
    pub fn series_csv(&self) -> String {
        let with_resources = self.series.iter().any(|b| b.resources.is_some());
        let names: std::collections::BTreeSet<&String> =
            self.series.iter().flat_map(|b| b.gauges.keys()).collect();
        let mut csv = String::from(
            "iteration,iterations,live_bytes,live_bytes_min,live_bytes_max,\
             live_blocks,live_blocks_min,live_blocks_max,judged",
        );
        for name in &names {
            let _ = write!(csv, ",{name},{name}_min,{name}_max");
        }
        if with_resources {
            for name in [
                "fds",
                "threads",
                "rss_bytes",
                "rss_file_bytes",
                "mapped_bytes",
                "mappings",
                "unjoined",
            ] {
                let _ = write!(csv, ",{name},{name}_min,{name}_max");
            }
        }
        csv.push('\n');
        for b in &self.series {
            let judged = b.first >= self.warmup_iterations;
            let (bytes, blocks) = (b.live_bytes, b.live_blocks);
            let _ = write!(
                csv,
                "{},{},{},{},{},{},{},{},{}",
                b.first,
                b.count,
                bytes.last,
                bytes.min,
                bytes.max,
                blocks.last,
                blocks.min,
                blocks.max,
                u8::from(judged)
            );
            for name in &names {
                match b.gauges.get(*name) {
                    Some(g) => {
                        let _ = write!(csv, ",{},{},{}", g.last, g.min, g.max);
                    }
                    None => csv.push_str(",,,"),
                }
            }
            if with_resources {
                match b.resources {
                    Some(r) => {
                        for s in [
                            r.fds,
                            r.threads,
                            r.rss_bytes,
                            r.rss_file_bytes,
                            r.mapped_bytes,
                            r.mappings,
                            r.unjoined,
                        ] {
                            let _ = write!(csv, ",{},{},{}", s.last, s.min, s.max);
                        }
                    }
                    None => csv.push_str(&",".repeat(21)),
                }
            }
            csv.push('\n');
        }
        csv
    }
}
