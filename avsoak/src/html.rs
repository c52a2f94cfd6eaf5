//! `index.html`: one self-contained page per run (no script, no network). A summary table
//! on top, then per case its heap timeline as SVG (live bytes and live blocks after every
//! iteration, the min–max band where iterations were merged, warm-up shaded, the fitted
//! Theil–Sen slope drawn over the judged window), the verdict, throughput, allocations per
//! iteration, pipeline objects and the top suspect stacks.

use std::fmt::Write as _;

use crate::fmt::{escape_html as escape, file_stem, human_bytes};
use crate::report::{CaseResult, Fit, Outcome, Report, Verdict};
use crate::series::{Bucket, Span};
use crate::stats::Trend;

/// Width and height of a timeline's drawing, in SVG user units.
const W: f64 = 520.0;
const H: f64 = 200.0;
/// Margins: left for the y labels, bottom for the x labels.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #1d2330; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin: 0; }
.meta { color: #556; margin: 0 0 1em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e6ec; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f5f9; position: sticky; top: 0; }
.verdict { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-weight: 600; }
.v-clean { background: #2f8a4c; } .v-bounded { background: #5d8a2f; } .v-upstream { background: #7a6a1f; }
.v-leak { background: #c0392b; } .v-error, .v-crash, .v-hang { background: #7d2a8a; } .v-skipped { background: #8a8f99; }
.fail { color: #c0392b; font-weight: 700; } .pass { color: #2f8a4c; } .skip { color: #8a8f99; }
section.case { border: 1px solid #e3e6ec; border-radius: 6px; padding: 10px 14px; margin: 14px 0; }
section.case.failed { border-color: #c0392b; }
.figures { color: #334; margin: 4px 0; }
.about { color: #556; margin: 2px 0 6px; }
.message { background: #fbf3f2; padding: 4px 8px; border-radius: 4px; font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; }
.note { background: #f6f4e8; padding: 4px 8px; border-radius: 4px; }
ol.suspects { font-family: ui-monospace, monospace; font-size: 12px; padding-left: 1.5em; }
ol.suspects li { margin-bottom: 4px; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
svg.timeline { width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #556; }
.bar { display: inline-block; height: 8px; background: #4a74c9; vertical-align: middle; margin-right: 6px; }
";

impl Report {
    /// The run as one self-contained HTML page (see the module documentation).
    pub fn html(&self) -> String {
        let p = &self.provenance;
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
             <h1>{title}</h1>\n<p class=\"meta\">{started} · commit {rev} · host {host}, \
             {cpus} · {rustc}<br>{libs}</p>\n<p><strong>{tally}.</strong></p>\n",
            title = escape(&self.title()),
            rev = escape(&p.git_rev),
            started = escape(&p.started_at),
            host = escape(&p.host),
            cpus = escape(&p.machine()),
            rustc = escape(&p.rustc),
            libs = escape(&self.libraries()),
            tally = escape(&self.tally()),
        );
        html.push_str(&self.html_table());
        for result in &self.results {
            html.push_str(&case_section(result));
        }
        html.push_str("</body>\n</html>\n");
        html
    }

    fn html_table(&self) -> String {
        // The resources' columns when any result counted them, as in the text table.
        let with_resources = self.results.iter().any(|r| r.resources.is_some());
        let mut out = String::from(
            "<table class=\"summary\">\n<thead><tr><th>case</th><th>expect</th><th>verdict</th>\
             <th>outcome</th><th>leak</th><th>blocks</th><th>allocs/iter</th>\
             <th>peak live</th><th>frames/s</th>",
        );
        if with_resources {
            out.push_str("<th>fds</th><th>threads</th><th>mapped</th><th>RSS</th>");
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for r in &self.results {
            // Throughput bars compare the cases of one scenario (frames differ between
            // scenarios: a still, a packet, a whole encoder lifetime).
            let best = self
                .results
                .iter()
                .filter(|o| o.scenario == r.scenario)
                .map(|o| o.throughput.frames_per_s)
                .fold(0.0, f64::max);
            let bar = if best > 0.0 {
                format!(
                    "<span class=\"bar\" style=\"width:{:.0}px\"></span>",
                    60.0 * r.throughput.frames_per_s / best
                )
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "<tr><td><a href=\"#{anchor}\">{id}</a></td><td>{expect}</td><td>{verdict}</td>\
                 <td class=\"{oclass}\">{outcome}</td><td>{leak}</td><td>{blocks}</td>\
                 <td>{allocs:.1}</td><td>{peak}</td><td>{bar}{fps:.0}</td>",
                anchor = file_stem(&r.id),
                id = escape(&r.id),
                expect = r.expect,
                verdict = verdict_badge(r.verdict),
                oclass = outcome_class(r.outcome),
                outcome = r.outcome.as_str(),
                leak = r.heap.leak_rate(),
                blocks = r.heap.blocks_rate(),
                allocs = r.heap.allocs_per_iter,
                peak = human_bytes(r.heap.peak_live_bytes as f64),
                fps = r.throughput.frames_per_s,
            );
            if with_resources {
                for rate in r.resource_rates() {
                    let _ = write!(out, "<td>{}</td>", escape(&rate));
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }
}

fn verdict_badge(verdict: Verdict) -> String {
    format!("<span class=\"verdict v-{0}\">{0}</span>", verdict.as_str())
}

fn outcome_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Skip => "skip",
    }
}

fn case_section(r: &CaseResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<section class=\"case{failed}\" id=\"{anchor}\">\n<h2>{id} {badge} \
         <span class=\"{oclass}\">{outcome}</span></h2>\n<p class=\"about\">{about} \
         (expects {expect})</p>",
        failed = if r.outcome == Outcome::Fail {
            " failed"
        } else {
            ""
        },
        anchor = file_stem(&r.id),
        id = escape(&r.id),
        badge = verdict_badge(r.verdict),
        oclass = outcome_class(r.outcome),
        outcome = r.outcome.as_str(),
        about = escape(&r.about),
        expect = r.expect,
    );
    if let Some(error) = &r.error {
        let _ = writeln!(out, "<p class=\"message\">{}</p>", escape(error));
    }
    if let Some(note) = &r.note {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(note));
    }
    if r.verdict == Verdict::Skipped {
        out.push_str("</section>\n");
        return out;
    }
    let h = &r.heap;
    let _ = writeln!(
        out,
        "<p class=\"figures\">{iters} iterations ({warm} warm-up) · leak {leak}/it, \
         {blocks:.2} blocks/it (p = {p:.1e}) · {allocs:.1} allocations and {abytes} per \
         iteration · peak live {peak} · {fps:.0} frames/s, {ips:.1} iterations/s{rate}</p>",
        iters = r.iterations,
        warm = r.warmup_iterations,
        leak = human_bytes(h.leak_bytes_per_iter),
        blocks = h.leak_blocks_per_iter,
        p = h.trend_p,
        allocs = h.allocs_per_iter,
        abytes = human_bytes(h.alloc_bytes_per_iter),
        peak = human_bytes(h.peak_live_bytes as f64),
        fps = r.throughput.frames_per_s,
        ips = r.throughput.iters_per_s,
        rate = h
            .per_second_text()
            .map(|t| format!(" · {}", escape(&t)))
            .unwrap_or_default(),
    );
    if !r.objects.is_empty() {
        let gauges: Vec<String> = r
            .objects
            .iter()
            .map(|(name, g)| format!("{} {} (max {})", escape(name), g.end, g.max))
            .collect();
        let _ = writeln!(
            out,
            "<p class=\"figures\">pipeline objects at the end: {}</p>",
            gauges.join(", ")
        );
    }
    if !r.series.is_empty() {
        out.push_str("<div class=\"plots\">\n");
        out.push_str(&timeline(
            r,
            "live bytes",
            |b| b.live_bytes,
            h.fit_bytes,
            true,
        ));
        out.push_str(&timeline(
            r,
            "live blocks",
            |b| b.live_blocks,
            h.fit_blocks,
            false,
        ));
        // Each resource beside the heap that moved over the judged window.
        if let Some(res) = &r.resources {
            type Pick = fn(&crate::series::ResourceSpans) -> Span;
            let moved: [(&str, bool, bool, Pick); 5] = [
                (
                    "open descriptors",
                    res.fds.trend != Trend::Flat,
                    false,
                    |s| s.fds,
                ),
                ("threads", res.threads.trend != Trend::Flat, false, |s| {
                    s.threads
                }),
                (
                    "threads never joined",
                    res.unjoined.trend != Trend::Flat,
                    false,
                    |s| s.unjoined,
                ),
                (
                    "mapped bytes",
                    res.mapped_bytes.trend != Trend::Flat,
                    true,
                    |s| s.mapped_bytes,
                ),
                (
                    "resident bytes",
                    res.rss_bytes.trend != Trend::Flat,
                    true,
                    |s| s.rss_bytes,
                ),
            ];
            for (label, _, bytes, pick) in moved.into_iter().filter(|m| m.1) {
                out.push_str(&timeline(
                    r,
                    label,
                    |b| b.resources.map(|s| pick(&s)).unwrap_or_default(),
                    None,
                    bytes,
                ));
            }
        }
        out.push_str("</div>\n");
    }
    if let Some(profile) = &r.profile {
        let _ = writeln!(
            out,
            "<p class=\"figures\">Heap profile of the whole child (sampled): \
             <a href=\"{0}\">{0}</a>, for DHAT's viewer (dh_view.html).</p>",
            escape(profile)
        );
    }
    if let Some(onset) = &r.heap.onset {
        let _ = writeln!(
            out,
            "<p class=\"figures\">{}</p>",
            escape(&onset.describe())
        );
    }
    if let Some(a) = &r.attribution {
        let _ = writeln!(out, "<p class=\"figures\">{}</p>", escape(&a.describe()));
    }
    let suspects = r.summary_suspects();
    if !suspects.is_empty() {
        out.push_str(
            "<p>Suspects: stacks whose sampled live bytes grew across the judged window, most growth first:</p>\n\
             <ol class=\"suspects\">\n",
        );
        for s in suspects {
            let held = s
                .held_by_line(8)
                .map(|h| format!("<br><span class=\"held\">{}</span>", escape(&h)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<li>{}: {}{held}</li>",
                escape(&s.figures()),
                escape(&s.stack(8))
            );
        }
        out.push_str("</ol>\n");
    }
    if r.verdict == Verdict::Leak {
        if let Some(svg) = crate::flame::flame_graph(&r.suspects) {
            out.push_str(
                "<p>The suspects' growth per iteration, by stack (outermost call at the \
                 bottom, the allocating call on top):</p>\n",
            );
            out.push_str(&svg);
        }
    }
    out.push_str("</section>\n");
    out
}

/// One quantity of a case over its iterations, as an SVG plot.
fn timeline(
    r: &CaseResult,
    label: &str,
    span: impl Fn(&Bucket) -> Span,
    fit: Option<Fit>,
    bytes: bool,
) -> String {
    let series = &r.series;
    let first = series.first().map_or(0, |b| b.first) as f64;
    let last = series.last().map_or(0, |b| b.last()) as f64;
    let lo = series.iter().map(|b| span(b).min).min().unwrap_or(0) as f64;
    let hi = series.iter().map(|b| span(b).max).max().unwrap_or(0) as f64;
    // A little headroom; a flat series gets a band around its value.
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.01).max(1.0);
    let (lo, hi) = (
        (lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::MIN }),
        hi + pad,
    );
    let x = |i: f64| LEFT + (i - first) / (last - first).max(1.0) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let format_value = |v: f64| {
        if bytes {
            human_bytes(v)
        } else {
            format!("{v:.0}")
        }
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg class=\"timeline\" data-quantity=\"{label}\" viewBox=\"0 0 {W} {H}\" \
         xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{label} of {id} per \
         iteration\">",
        id = escape(&r.id)
    );
    // Warm-up, shaded.
    let warm_end = r.warmup_iterations as f64;
    if warm_end > first {
        let _ = writeln!(
            svg,
            "<rect class=\"warmup\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"#eef0f4\"><title>warm-up: not judged</title></rect>",
            x(first),
            x(warm_end.min(last)) - x(first),
            H - TOP - BOTTOM
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\">warm-up</text>",
            x(first) + 4.0,
            TOP + 12.0
        );
    }
    // Axes with three ticks each.
    let _ = writeln!(
        svg,
        "<path d=\"M{LEFT} {TOP} V{:.1} H{:.1}\" stroke=\"#99a\" fill=\"none\"/>",
        H - BOTTOM,
        W - RIGHT
    );
    for k in 0..3 {
        let v = lo + (hi - lo) * k as f64 / 2.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&format_value(v))
        );
        let i = first + (last - first) * k as f64 / 2.0;
        let anchor = ["start", "middle", "end"][k];
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{:.0}</text>",
            x(i),
            H - 8.0,
            i
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-weight=\"600\">{label} \
         after each iteration</text>",
        W - RIGHT,
        TOP + 12.0
    );
    // The min–max band where buckets merged iterations.
    if series.iter().any(|b| b.count > 1) {
        let top = series
            .iter()
            .map(|b| (x(b.last() as f64), y(span(b).max as f64)));
        let bottom = series
            .iter()
            .rev()
            .map(|b| (x(b.first as f64), y(span(b).min as f64)));
        let _ = writeln!(
            svg,
            "<polygon class=\"band\" points=\"{}\" fill=\"#c9d6f2\" stroke=\"none\"/>",
            svg_points(top.chain(bottom))
        );
    }
    let points = svg_points(
        series
            .iter()
            .map(|b| (x(b.last() as f64), y(span(b).last as f64))),
    );
    let _ = writeln!(
        svg,
        "<polyline class=\"series\" points=\"{}\" fill=\"none\" stroke=\"#2b58b5\" \
         stroke-width=\"1.5\"/>",
        points
    );
    // The fitted line over the judged window, as the verdict fitted it.
    if let Some(fit) = fit {
        let (x0, x1) = (fit.from as f64, fit.to as f64);
        let _ = writeln!(
            svg,
            "<line class=\"fit\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
             stroke=\"#d0452f\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\">\
             <title>fitted slope {}/iteration</title></line>",
            x(x0),
            y(fit.at(x0)).clamp(0.0, H),
            x(x1),
            y(fit.at(x1)).clamp(0.0, H),
            escape(&format_value(fit.slope))
        );
    }
    // Where a late leak begins.
    if let Some(onset) = r.heap.onset {
        let at = x(onset.iteration as f64);
        let _ = writeln!(
            svg,
            "<line class=\"onset\" x1=\"{at:.1}\" y1=\"{TOP:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" \
             stroke=\"#d0452f\" stroke-width=\"1\"><title>{}</title></line>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d0452f\">growth begins</text>",
            H - BOTTOM,
            escape(&onset.describe()),
            at + 4.0,
            TOP + 26.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `x,y x,y …` for an SVG `points` attribute.
fn svg_points(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut out = String::new();
    for (x, y) in points {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{x:.1},{y:.1}");
    }
    out
}
