//! Encoder backends compared on time, memory and quality together: the results of
//! `cargo xtask compare` (`compare.json`, schema `avsoak.compare/1`), the terminal table
//! and the HTML page with a rate/quality plot and a speed/memory plot.
//!
//! This module only holds and renders figures; measuring them is the caller's job.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use avsoak::fmt::{escape_html as escape, human_bytes, render_table};
use avsoak::report::Provenance;
use avsoak::stats::Trend;

/// Schema name written into every `compare.json`.
pub const SCHEMA: &str = "avsoak.compare/1";

/// A comparison run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Where and with what the figures were measured.
    pub provenance: Provenance,
    /// What every backend was given.
    pub setup: Setup,
    /// Backends that ran (or failed), in table order.
    pub backends: Vec<BackendResult>,
    /// Backends not on this machine, with the reason.
    pub skipped: Vec<Skipped>,
    /// The x264 encode timed beside the `ffmpeg` command line, when it ran.
    pub cli: Option<CliSideBySide>,
    /// The backend every curve's Bjøntegaard delta is measured against, when named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The input and the rules every backend was held to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Frames per video encode.
    pub frames: u32,
    /// The source, in words: the camera's settings or the input file's.
    pub source: String,
    /// The user's own content, when `--input` named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<super::input::InputSource>,
    /// Targets of the video rate points: kbit/s under [`RateControl::Bitrate`], else the
    /// CRF or QP values of the ladder.
    pub bitrates_kbps: Vec<u32>,
    /// The target the table's row figures come from.
    pub reference_kbps: u32,
    /// What the video targets are.
    #[serde(default)]
    pub rate_control: RateControl,
    /// Encoder threads for every backend (absent: each library's own choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Quality settings of the still-image rate points.
    pub still_qualities: Vec<u32>,
    /// The still quality the table's row figures come from.
    pub reference_quality: u32,
    /// Stills per still-image encode.
    pub stills: u32,
    /// How fairness was arranged, in words.
    pub rules: Vec<String>,
    /// The configurations compared (`--config`), each a row and a curve; empty when the
    /// backends run by their own names with their default options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<Config>,
}

/// One configuration compared: a label, a backend, and options for its encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The row's name.
    pub label: String,
    /// The backend it runs.
    pub backend: String,
    /// Options given to the encoder over the backend's defaults, in order.
    #[serde(default)]
    pub options: Vec<(String, String)>,
}

/// How the video rate points are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateControl {
    /// Average bitrate at each target, kbit/s.
    #[default]
    Bitrate,
    /// Constant quality: the encoder's `crf` at each target.
    Crf,
    /// Constant quantiser: the encoder's `qp` at each target.
    Qp,
}

impl RateControl {
    /// A target as words: `1000 kbit/s`, `crf 23`, `qp 30`.
    pub fn target(self, value: u32) -> String {
        match self {
            RateControl::Bitrate => format!("{value} kbit/s"),
            RateControl::Crf => format!("crf {value}"),
            RateControl::Qp => format!("qp {value}"),
        }
    }

    /// The encoder option that sets it (none for a bitrate).
    pub fn option(self) -> Option<&'static str> {
        match self {
            RateControl::Bitrate => None,
            RateControl::Crf => Some("crf"),
            RateControl::Qp => Some("qp"),
        }
    }
}

/// Video or still images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A video encoder: rate points are target bitrates.
    Video,
    /// A still-image encoder: rate points are quality settings, one file per image.
    Still,
}

/// One backend's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendResult {
    /// The backend's name, e.g. `x264-direct`, `libx264`, `libheif-x265`.
    pub backend: String,
    /// The format it writes, e.g. `H.264`.
    pub codec: String,
    /// Video or stills.
    pub kind: Kind,
    /// Its settings, in words (preset, rate control, threads).
    pub settings: String,
    /// One encode per rate point, in the order of the setup's bitrates or qualities.
    pub points: Vec<RatePoint>,
    /// Live bytes across repeated encoder lifetimes.
    pub leak: Option<LeakSlope>,
    /// A leak the backend's library is known to have upstream, which the leak slope is
    /// expected to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Its Bjøntegaard deltas against the comparison's reference, when one is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bd: Option<BdFigures>,
}

/// A Bjøntegaard delta, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The figure: a fraction for BD-rate (−0.1: 10 % fewer bits), dB for BD-PSNR.
    pub value: Option<f64>,
    /// Why there is no figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Delta {
    fn of(result: Result<f64, String>) -> Self {
        match result {
            Ok(value) => Delta {
                value: Some(value),
                why: None,
            },
            Err(why) => Delta {
                value: None,
                why: Some(why),
            },
        }
    }

    fn cell(&self, show: impl Fn(f64) -> String) -> String {
        match (self.value, &self.why) {
            (Some(v), _) => show(v),
            (None, why) => format!("n/a: {}", why.as_deref().unwrap_or("not measured")),
        }
    }
}

/// One curve's Bjøntegaard deltas against the reference ([`super::bdrate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BdFigures {
    /// The reference backend.
    pub reference: String,
    /// BD-rate over PSNR (all planes).
    pub rate_psnr: Delta,
    /// BD-rate over luma SSIM, in dB (`−10·log₁₀(1 − SSIM)`).
    pub rate_ssim: Delta,
    /// BD-PSNR: the mean PSNR gain at the same bitrate, dB.
    pub psnr_db: Delta,
}

/// One encode at one bitrate or quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatePoint {
    /// Target bitrate in kbit/s (video) or quality setting (stills).
    pub target: u32,
    /// Frames or images encoded.
    pub frames: u64,
    /// Seconds from opening the encoder to closing it, output drained.
    pub encode_s: f64,
    /// Frames (or images) per second over `encode_s`.
    pub frames_per_s: f64,
    /// CPU milliseconds per frame, every thread of the process, from opening the encoder
    /// to closing it: what a frame costs the machine, however many cores did it.
    #[serde(default)]
    pub cpu_ms_per_frame: f64,
    /// `frames_per_s` over the setup's frame rate: above 1, faster than real time.
    #[serde(default)]
    pub realtime_factor: f64,
    /// Compressed bytes.
    pub bytes: u64,
    /// Bitrate at the setup's frame rate, kbit/s.
    pub kbps: f64,
    /// Compressed bits per source pixel.
    pub bits_per_pixel: f64,
    /// PSNR of the decoded output against the source, dB: luma.
    pub psnr_y: f64,
    /// All planes together (luma weighs 4, each chroma plane 1).
    pub psnr: f64,
    /// Mean SSIM of luma.
    pub ssim_y: f64,
    /// Allocations per frame (encoder open and close included).
    pub allocs_per_frame: f64,
    /// Bytes allocated per frame.
    pub alloc_bytes_per_frame: f64,
    /// Most live heap bytes above the level before the encoder opened.
    pub peak_live_bytes: i64,
}

/// Live bytes and blocks after each of several short encoder lifetimes, judged like a
/// soak's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakSlope {
    /// Lifetimes measured (after the rate points, which serve as warm-up).
    pub lifetimes: u32,
    /// Frames each lifetime encodes.
    pub frames_per_lifetime: u32,
    /// Theil–Sen slope of live bytes, bytes per lifetime.
    pub bytes_per_lifetime: f64,
    /// Theil–Sen slope of live blocks, blocks per lifetime.
    pub blocks_per_lifetime: f64,
    /// One-sided Mann–Kendall p-value of live bytes growing.
    pub p: f64,
    /// The trend, with the soak's default budgets.
    pub trend: Trend,
}

/// A backend that did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The backend's name.
    pub backend: String,
    /// Why.
    pub reason: String,
}

/// The same x264 encode through avsoak and through the `ffmpeg` command line, interleaved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CliSideBySide {
    /// The command line, as run.
    pub command: String,
    /// Frames/s of each `ffmpeg` run (its `-benchmark` real time).
    pub cli_frames_per_s: Vec<f64>,
    /// Frames/s of each run of avsoak's FFmpeg `libx264` path, same settings.
    pub avsoak_frames_per_s: Vec<f64>,
    /// Median of avsoak's over median of the command line's.
    pub ratio: f64,
}

impl CliSideBySide {
    /// Builds the figures from the runs and computes the ratio of medians.
    pub fn new(command: String, cli: Vec<f64>, avsoak: Vec<f64>) -> Self {
        let ratio = avsoak::stats::median_of(&avsoak) / avsoak::stats::median_of(&cli);
        CliSideBySide {
            command,
            cli_frames_per_s: cli,
            avsoak_frames_per_s: avsoak,
            ratio,
        }
    }
}

impl BackendResult {
    /// The rate point the table's row shows: the reference target, else the first.
    pub fn reference(&self, setup: &Setup) -> Option<&RatePoint> {
        let target = match self.kind {
            Kind::Video => setup.reference_kbps,
            Kind::Still => setup.reference_quality,
        };
        self.points
            .iter()
            .find(|p| p.target == target)
            .or(self.points.first())
    }
}

fn leak_cell(leak: &Option<LeakSlope>) -> String {
    match leak {
        None => "-".to_owned(),
        Some(l) => {
            let word = match l.trend {
                Trend::Flat => "flat",
                Trend::Bounded => "bounded",
                Trend::Growing => "GROWS",
            };
            format!("{word} {}/life", human_bytes(l.bytes_per_lifetime))
        }
    }
}

impl Comparison {
    /// Measures every video curve's Bjøntegaard deltas against `reference` (a backend
    /// that ran), filling each result's `bd`. A backend without enough rate points or
    /// overlap gets the reason in place of a figure.
    pub fn measure_bd(&mut self, reference: &str) -> Result<(), String> {
        let curves = |b: &BackendResult| {
            let psnr: Vec<(f64, f64)> = b.points.iter().map(|p| (p.kbps, p.psnr)).collect();
            let ssim: Vec<(f64, f64)> = b
                .points
                .iter()
                .map(|p| (p.kbps, super::bdrate::ssim_db(p.ssim_y)))
                .collect();
            (
                super::bdrate::Curve::new(&psnr),
                super::bdrate::Curve::new(&ssim),
            )
        };
        let base = self
            .backends
            .iter()
            .find(|b| b.backend == reference)
            .ok_or_else(|| {
                format!(
                    "invalid --reference {reference:?} (expected one of the backends that ran: {})",
                    self.backends
                        .iter()
                        .map(|b| b.backend.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        if base.kind != Kind::Video {
            return Err(format!(
                "invalid --reference {reference:?} (expected a video backend: BD-rate is \
                 over bitrates)"
            ));
        }
        let (base_psnr, base_ssim) = curves(base);
        for b in self.backends.iter_mut().filter(|b| b.kind == Kind::Video) {
            let (psnr, ssim) = curves(b);
            b.bd = Some(BdFigures {
                reference: reference.to_owned(),
                rate_psnr: Delta::of(super::bdrate::bd_rate(&base_psnr, &psnr)),
                rate_ssim: Delta::of(super::bdrate::bd_rate(&base_ssim, &ssim)),
                psnr_db: Delta::of(super::bdrate::bd_quality(&base_psnr, &psnr)),
            });
        }
        self.reference = Some(reference.to_owned());
        Ok(())
    }

    /// The Bjøntegaard table: one row per video backend against the reference.
    pub fn bd_table(&self) -> Option<String> {
        let reference = self.reference.as_deref()?;
        let percent = |v: f64| format!("{:+.1} %", v * 100.0);
        let rows: Vec<Vec<String>> = self
            .backends
            .iter()
            .filter_map(|b| {
                let bd = b.bd.as_ref()?;
                Some(vec![
                    b.backend.clone(),
                    bd.rate_psnr.cell(percent),
                    bd.rate_ssim.cell(percent),
                    bd.psnr_db.cell(|v| format!("{v:+.2} dB")),
                ])
            })
            .collect();
        Some(format!(
            "Bjøntegaard deltas against {reference} (cubic fits over the shared range; \
             negative BD-rate: fewer bits for the same quality)\n{}",
            render_table(
                &["backend", "BD-rate PSNR", "BD-rate SSIM", "BD-PSNR"],
                &rows,
                false
            )
        ))
    }

    /// The terminal table: one row per backend at its reference rate point, then what
    /// was skipped and the command-line side by side.
    pub fn table(&self) -> String {
        let header = [
            "backend",
            "codec",
            "fps",
            "xRT",
            "cpu ms/f",
            "kbps",
            "bpp",
            "PSNR-Y",
            "PSNR",
            "SSIM-Y",
            "allocs/frame",
            "peak live",
            "leak (live bytes)",
        ];
        let mut rows = Vec::new();
        for b in &self.backends {
            match (b.reference(&self.setup), &b.error) {
                (Some(p), _) => rows.push(vec![
                    b.backend.clone(),
                    b.codec.clone(),
                    format!("{:.1}", p.frames_per_s),
                    match b.kind {
                        Kind::Video => format!("{:.1}", p.realtime_factor),
                        Kind::Still => "-".to_owned(),
                    },
                    format!("{:.1}", p.cpu_ms_per_frame),
                    match b.kind {
                        Kind::Video => format!("{:.0}", p.kbps),
                        Kind::Still => "-".to_owned(),
                    },
                    format!("{:.3}", p.bits_per_pixel),
                    format!("{:.2}", p.psnr_y),
                    format!("{:.2}", p.psnr),
                    format!("{:.4}", p.ssim_y),
                    format!("{:.1}", p.allocs_per_frame),
                    human_bytes(p.peak_live_bytes as f64),
                    leak_cell(&b.leak),
                ]),
                (None, error) => rows.push(vec![
                    b.backend.clone(),
                    b.codec.clone(),
                    format!(
                        "failed: {}",
                        error.as_deref().unwrap_or("no rate point measured")
                    ),
                ]),
            }
        }
        let s = &self.setup;
        let mut out = format!(
            "{} frames of {}x{} at {}/{} fps ({}); video row figures at {}, stills \
             ({} per encode) at quality {}\n\n",
            s.frames,
            s.width,
            s.height,
            s.fps_num,
            s.fps_den,
            s.source,
            s.rate_control.target(s.reference_kbps),
            s.stills,
            s.reference_quality
        );
        out.push_str(&render_table(&header, &rows, false));
        for b in self.backends.iter().filter(|b| b.upstream.is_some()) {
            let _ = writeln!(
                out,
                "{}: upstream: {}",
                b.backend,
                b.upstream.as_deref().unwrap_or_default()
            );
        }
        if let Some(bd) = self.bd_table() {
            let _ = write!(out, "\n{bd}");
        }
        if !self.skipped.is_empty() {
            out.push_str("\nskipped:\n");
            for k in &self.skipped {
                let _ = writeln!(out, "  {}: {}", k.backend, k.reason);
            }
        }
        if let Some(cli) = &self.cli {
            let median = avsoak::stats::median_of;
            let _ = writeln!(
                out,
                "\nside by side ({} runs each, interleaved): avsoak libx264 {:.1} fps, \
                 ffmpeg CLI {:.1} fps, ratio {:.3}x\n  {}",
                cli.cli_frames_per_s.len(),
                median(&cli.avsoak_frames_per_s),
                median(&cli.cli_frames_per_s),
                cli.ratio,
                cli.command
            );
        }
        out
    }

    /// Every rate point of every backend, as a table (for the page and `--all`).
    pub fn points_table(&self, markdown: bool) -> String {
        let header = [
            "backend",
            "target",
            "fps",
            "cpu ms/f",
            "kbps",
            "bpp",
            "PSNR-Y",
            "PSNR",
            "SSIM-Y",
            "allocs/frame",
            "peak live",
        ];
        let mut rows = Vec::new();
        for b in &self.backends {
            for p in &b.points {
                rows.push(vec![
                    b.backend.clone(),
                    match b.kind {
                        Kind::Video => self.setup.rate_control.target(p.target),
                        Kind::Still => format!("q{}", p.target),
                    },
                    format!("{:.1}", p.frames_per_s),
                    format!("{:.1}", p.cpu_ms_per_frame),
                    format!("{:.0}", p.kbps),
                    format!("{:.3}", p.bits_per_pixel),
                    format!("{:.2}", p.psnr_y),
                    format!("{:.2}", p.psnr),
                    format!("{:.4}", p.ssim_y),
                    format!("{:.1}", p.allocs_per_frame),
                    human_bytes(p.peak_live_bytes as f64),
                ]);
            }
        }
        render_table(&header, &rows, markdown)
    }

    /// `compare.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a comparison always serialises")
    }

    /// The page: setup, the table, a rate/quality plot (bitrate against PSNR, one line per
    /// video backend) and a speed/memory plot (frames/s against peak live bytes at the
    /// reference point), then every rate point, the skipped backends and the side by side.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let p = &self.provenance;
        let s = &self.setup;
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>avsoak compare {rev}</title><style>{STYLE}</style></head><body>\n\
             <h1>Encoder backends compared</h1>\n<p class=\"meta\">{rev} on {host} ({cpus} \
             CPUs), {at}. {frames} frames of {w}x{h} at {fn_}/{fd} fps: {source}.</p>\n",
            rev = escape(&p.git_rev),
            host = escape(&p.host),
            cpus = p.cpus,
            at = escape(&p.started_at),
            frames = s.frames,
            w = s.width,
            h = s.height,
            fn_ = s.fps_num,
            fd = s.fps_den,
            source = escape(&s.source),
        );
        out.push_str("<section id=\"rules\"><h2>Rules</h2><ul>");
        for rule in &s.rules {
            let _ = write!(out, "<li>{}</li>", escape(rule));
        }
        out.push_str("</ul></section>\n");
        let _ = writeln!(
            out,
            "<section id=\"table\"><h2>At {} (stills at quality {})</h2>\
             <pre>{}</pre></section>",
            s.rate_control.target(s.reference_kbps),
            s.reference_quality,
            escape(&self.table())
        );
        out.push_str("<div class=\"plots\">");
        out.push_str(&self.rate_quality_svg());
        out.push_str(&self.speed_memory_svg());
        out.push_str("</div>\n");
        let _ = writeln!(
            out,
            "<section id=\"points\"><h2>Every rate point</h2><pre>{}</pre></section>",
            escape(&self.points_table(false))
        );
        out.push_str("</body></html>\n");
        out
    }

    fn measured(&self) -> impl Iterator<Item = (usize, &BackendResult)> {
        self.backends
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.points.is_empty())
    }

    fn rate_quality_svg(&self) -> String {
        // Video only: a still's bits per pixel are an order of magnitude apart and would
        // flatten every video curve (stills are in the tables).
        let video = |b: &&BackendResult| b.kind == Kind::Video;
        let points: Vec<(f64, f64)> = self
            .backends
            .iter()
            .filter(video)
            .flat_map(|b| b.points.iter().map(|p| (p.kbps, p.psnr)))
            .collect();
        let mut plot = Plot::new(
            "rate-quality",
            "bitrate (kbit/s), video",
            "PSNR (dB)",
            &points,
            false,
        );
        for (i, b) in self.measured().filter(|(_, b)| b.kind == Kind::Video) {
            let line: Vec<(f64, f64)> = b.points.iter().map(|p| (p.kbps, p.psnr)).collect();
            // With a reference, the key carries the curve's BD-rate against it.
            let key = match b.bd.as_ref().and_then(|bd| bd.rate_psnr.value) {
                Some(v) => format!("{} (BD-rate {:+.1} %)", b.backend, v * 100.0),
                None => b.backend.clone(),
            };
            plot.line(&b.backend, &key, i, &line);
        }
        plot.finish()
    }

    fn speed_memory_svg(&self) -> String {
        let refs: Vec<(usize, &BackendResult, &RatePoint)> = self
            .backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((i, b, b.reference(&self.setup)?)))
            .collect();
        let points: Vec<(f64, f64)> = refs
            .iter()
            .map(|(_, _, p)| (p.frames_per_s, p.peak_live_bytes as f64))
            .collect();
        let mut plot = Plot::new("speed-memory", "frames/s", "peak live bytes", &points, true);
        for &(i, b, p) in &refs {
            plot.dot(&b.backend, i, (p.frames_per_s, p.peak_live_bytes as f64));
        }
        plot.finish()
    }
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #1d2330; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.1em; }
.meta { color: #556; }
pre { font: 12px/1.35 ui-monospace, monospace; background: #f6f7fa; padding: 8px; overflow-x: auto; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
svg.plot { width: 100%; height: auto; display: block; border: 1px solid #e3e6ec; }
svg text { font: 11px system-ui, sans-serif; fill: #556; }
";

const COLOURS: [&str; 10] = [
    "#2b58b5", "#d0452f", "#2f8a4c", "#8a4fb5", "#c98a1b", "#1b9aaa", "#b5447a", "#5d6b2f",
    "#444c5e", "#e0702f",
];

const PW: f64 = 520.0;
const PH: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 36.0;

/// A scatter/line plot with linear axes scaled to its points, and a legend on the right.
struct Plot {
    svg: String,
    x: (f64, f64),
    y: (f64, f64),
    legend: usize,
}

impl Plot {
    fn new(class: &str, x_label: &str, y_label: &str, points: &[(f64, f64)], bytes: bool) -> Plot {
        let range = |values: Vec<f64>| {
            let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if !lo.is_finite() {
                return (0.0, 1.0);
            }
            let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-3);
            (
                (lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::MIN }),
                hi + pad,
            )
        };
        let x = range(points.iter().map(|p| p.0).collect());
        let y = range(points.iter().map(|p| p.1).collect());
        let mut plot = Plot {
            svg: String::new(),
            x,
            y,
            legend: 0,
        };
        let _ = writeln!(
            plot.svg,
            "<svg class=\"plot\" data-plot=\"{class}\" viewBox=\"0 0 {PW} {PH}\" \
             xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{y_label} against \
             {x_label}\">"
        );
        let _ = writeln!(
            plot.svg,
            "<path d=\"M{LEFT} {TOP} V{:.1} H{:.1}\" stroke=\"#99a\" fill=\"none\"/>",
            PH - BOTTOM,
            PW - RIGHT
        );
        for k in 0..3 {
            let xv = x.0 + (x.1 - x.0) * k as f64 / 2.0;
            let yv = y.0 + (y.1 - y.0) * k as f64 / 2.0;
            let anchor = ["start", "middle", "end"][k];
            let _ = writeln!(
                plot.svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                plot.px(xv),
                PH - BOTTOM + 14.0,
                plot.format(xv, false),
                LEFT - 6.0,
                plot.py(yv) + 4.0,
                plot.format(yv, bytes)
            );
        }
        let _ = writeln!(
            plot.svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"600\">{}</text>\n\
             <text x=\"{LEFT}\" y=\"{:.1}\" font-weight=\"600\">{}</text>",
            (LEFT + PW - RIGHT) / 2.0,
            PH - 6.0,
            escape(x_label),
            TOP - 8.0,
            escape(y_label)
        );
        plot
    }

    fn format(&self, v: f64, bytes: bool) -> String {
        if bytes {
            escape(&human_bytes(v))
        } else if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    }

    fn px(&self, v: f64) -> f64 {
        LEFT + (v - self.x.0) / (self.x.1 - self.x.0) * (PW - LEFT - RIGHT)
    }

    fn py(&self, v: f64) -> f64 {
        TOP + (self.y.1 - v) / (self.y.1 - self.y.0) * (PH - TOP - BOTTOM)
    }

    fn key(&mut self, name: &str, colour: &str) {
        let y = TOP + 6.0 + self.legend as f64 * 16.0;
        let _ = writeln!(
            self.svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text class=\"key\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            PW - RIGHT + 12.0,
            y,
            PW - RIGHT + 26.0,
            y + 9.0,
            escape(name)
        );
        self.legend += 1;
    }

    fn line(&mut self, name: &str, key: &str, index: usize, points: &[(f64, f64)]) {
        let colour = COLOURS[index % COLOURS.len()];
        let mut sorted = points.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut coords = String::new();
        for &(x, y) in &sorted {
            let _ = write!(coords, "{:.1},{:.1} ", self.px(x), self.py(y));
        }
        let _ = writeln!(
            self.svg,
            "<polyline class=\"backend\" data-backend=\"{}\" points=\"{}\" fill=\"none\" \
             stroke=\"{colour}\" stroke-width=\"1.5\"/>",
            escape(name),
            coords.trim_end()
        );
        for &(x, y) in &sorted {
            let _ = writeln!(
                self.svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"/>",
                self.px(x),
                self.py(y)
            );
        }
        self.key(key, colour);
    }

    fn dot(&mut self, name: &str, index: usize, (x, y): (f64, f64)) {
        let colour = COLOURS[index % COLOURS.len()];
        let _ = writeln!(
            self.svg,
            "<circle class=\"backend\" data-backend=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" \
             fill=\"{colour}\"><title>{}: {:.1} frames/s, {} peak</title></circle>",
            escape(name),
            self.px(x),
            self.py(y),
            escape(name),
            x,
            escape(&human_bytes(y))
        );
        self.key(name, colour);
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}
