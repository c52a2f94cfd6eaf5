//! `avsoak-run compare`: every encoder backend in a child process of its own, then the
//! table, `compare.json`, `index.html`, and the x264 encode side by side with the `ffmpeg`
//! command line.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use avsoak::report::Provenance;
use avsoak::soak::Contained;
use avsoak_scenarios::compare::model::{
    BackendResult, CliSideBySide, Comparison, Config, Kind, RateControl, Setup, Skipped, SCHEMA,
};
use avsoak_scenarios::compare::{self as backends, Backend, Plan};
use clap::Args;

/// Fewest lifetimes whose series can be judged a leak: Mann–Kendall on the second half
/// reaches p < 0.001 from 8 points on.
const MIN_LIFETIMES: u32 = 16;

#[derive(Args)]
pub struct CompareArgs {
    /// Frames per video encode (with --input: at most this many of the file's).
    #[arg(long, default_value_t = 120)]
    frames: u32,
    /// Frame size, WIDTHxHEIGHT [default: 640x480, or the input's own size].
    #[arg(long)]
    size: Option<String>,
    /// Frame rate [default: 30, or the input's own rate].
    #[arg(long)]
    fps: Option<u32>,
    /// The content to encode instead of the synthetic camera: a y4m file or anything
    /// FFmpeg can demux and decode, read once into I420 frames.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Target bitrates of the video rate points, kbit/s.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
    bitrates: Vec<u32>,
    /// The bitrate the table shows (one of --bitrates).
    #[arg(long, default_value_t = 1000)]
    reference_kbps: u32,
    /// Constant-quality rate points instead of bitrates: the encoders' CRF values, e.g.
    /// 18,23,28,33 (the table shows the middle one). A backend without a crf option is
    /// listed as skipped.
    #[arg(long, value_delimiter = ',', conflicts_with = "qp")]
    crf: Vec<u32>,
    /// Constant-quantiser rate points instead of bitrates: the encoders' QP values.
    #[arg(long, value_delimiter = ',')]
    qp: Vec<u32>,
    /// Encoder threads for every video backend [default: each library's own choice].
    #[arg(long)]
    threads: Option<u32>,
    /// Quality settings (1-100) of the still-image rate points.
    #[arg(long, value_delimiter = ',', default_value = "30,50,70,90")]
    qualities: Vec<u32>,
    /// The still quality the table shows (one of --qualities).
    #[arg(long, default_value_t = 50)]
    reference_quality: u32,
    /// Stills per still-image encode, spread over the frames.
    #[arg(long, default_value_t = 10)]
    stills: u32,
    /// Backends to run (default: all unless --config names some; those this machine
    /// lacks are listed as skipped).
    #[arg(long, value_delimiter = ',')]
    backend: Vec<String>,
    /// A configuration to compare, repeatable: LABEL=BACKEND[,key=value...], e.g.
    /// fast=libx264,preset=veryfast. Options go to the encoder over the backend's
    /// defaults (FFmpeg's options for its encoders, x264's own for x264-direct); an
    /// option the encoder does not know is refused before any encode.
    #[arg(long = "config", value_name = "LABEL=BACKEND[,key=value...]")]
    configs: Vec<String>,
    /// Short encoder lifetimes at the reference point for the leak slope (0: none, else
    /// at least 16).
    #[arg(long, default_value_t = 20)]
    lifetimes: u32,
    /// Frames (or stills) per such lifetime.
    #[arg(long, default_value_t = 8)]
    lifetime_frames: u32,
    /// Interleaved rounds of the side by side with the ffmpeg command line (0: none).
    #[arg(long, default_value_t = 9)]
    rounds: u32,
    /// Folder for compare.json, index.html and the children's logs
    /// [default: reports/compare/<time>-<rev>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A backend's child is stopped after this long (`90s`, `10m`).
    #[arg(long, default_value = "10m", value_parser = avsoak::runner::parse_duration)]
    timeout: Duration,
    /// Revision recorded in provenance [default: git rev-parse --short HEAD].
    #[arg(long)]
    git_rev: Option<String>,
    /// A video backend every curve's BD-rate (PSNR, SSIM) and BD-PSNR is measured
    /// against (needs at least 4 --bitrates).
    #[arg(long)]
    reference: Option<String>,
}

/// The child side: one backend, setup from a file, result into a file.
#[derive(Args)]
pub struct CompareChildArgs {
    #[arg(long)]
    backend: String,
    #[arg(long)]
    setup: PathBuf,
    #[arg(long)]
    result: PathBuf,
    #[arg(long, default_value_t = 0)]
    lifetimes: u32,
    #[arg(long, default_value_t = 8)]
    lifetime_frames: u32,
    #[arg(long)]
    time_only: bool,
}

impl CompareArgs {
    fn setup(&self) -> Result<Setup> {
        let size = self
            .size
            .as_deref()
            .map(avsoak_scenarios::cases::picture_pool::parse_size)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        ensure!(self.frames >= 1, "invalid --frames 0 (expected at least 1)");
        ensure!(self.fps != Some(0), "invalid --fps 0 (expected at least 1)");
        if let Some((width, height)) = size {
            // The camera checks the size, before any file is read or child started.
            avsoak_fixtures::Camera::new(avsoak_fixtures::CameraConfig::new(width, height))?;
        }
        let input = match &self.input {
            Some(path) => {
                let (source, _) = avsoak_scenarios::compare::input::load(path, size, self.frames)
                    .map_err(anyhow::Error::msg)?;
                Some(source)
            }
            None => None,
        };
        let (width, height) = match (&input, size) {
            (_, Some(size)) => size,
            (Some(source), None) => (source.width, source.height),
            (None, None) => (640, 480),
        };
        let (fps_num, fps_den) = match (&input, self.fps) {
            (_, Some(fps)) => (fps, 1),
            (Some(source), None) => (source.fps_num, source.fps_den),
            (None, None) => (30, 1),
        };
        let frames = input.as_ref().map_or(self.frames, |source| source.frames);
        let (rate_control, targets, reference_target) = match (&self.crf[..], &self.qp[..]) {
            ([], []) => {
                ensure!(
                    !self.bitrates.is_empty() && self.bitrates.iter().all(|&b| b > 0),
                    "invalid --bitrates {:?} (expected kbit/s above 0, e.g. 250,500,1000)",
                    self.bitrates
                );
                ensure!(
                    self.bitrates.contains(&self.reference_kbps),
                    "invalid --reference-kbps {} (expected one of --bitrates {:?})",
                    self.reference_kbps,
                    self.bitrates
                );
                (
                    RateControl::Bitrate,
                    self.bitrates.clone(),
                    self.reference_kbps,
                )
            }
            (ladder, []) | ([], ladder) => {
                let (rate, flag) = if self.crf.is_empty() {
                    (RateControl::Qp, "--qp")
                } else {
                    (RateControl::Crf, "--crf")
                };
                ensure!(
                    ladder.iter().all(|&v| v <= 63),
                    "invalid {flag} {ladder:?} (expected values from 0 to 63, e.g. 18,23,28,33)"
                );
                let mut sorted = ladder.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                ensure!(
                    sorted.len() == ladder.len(),
                    "invalid {flag} {ladder:?} (expected each value once)"
                );
                (rate, ladder.to_vec(), sorted[sorted.len() / 2])
            }
            _ => unreachable!("clap refuses --crf with --qp"),
        };
        ensure!(
            self.threads != Some(0),
            "invalid --threads 0 (expected at least 1)"
        );
        ensure!(
            !self.qualities.is_empty() && self.qualities.iter().all(|q| (1..=100).contains(q)),
            "invalid --qualities {:?} (expected values from 1 to 100)",
            self.qualities
        );
        ensure!(
            self.qualities.contains(&self.reference_quality),
            "invalid --reference-quality {} (expected one of --qualities {:?})",
            self.reference_quality,
            self.qualities
        );
        ensure!(self.stills >= 1, "invalid --stills 0 (expected at least 1)");
        ensure!(
            self.lifetimes == 0 || self.lifetimes >= MIN_LIFETIMES,
            "invalid --lifetimes {} (expected 0, or at least {MIN_LIFETIMES}: the trend test \
             needs 8 points in the second half to call a leak)",
            self.lifetimes
        );
        ensure!(
            self.lifetime_frames >= 1,
            "invalid --lifetime-frames 0 (expected at least 1)"
        );
        Ok(Setup {
            width,
            height,
            fps_num,
            fps_den,
            frames,
            source: input
                .as_ref()
                .map_or_else(|| backends::SOURCE.to_owned(), |i| i.describe()),
            input,
            bitrates_kbps: targets,
            reference_kbps: reference_target,
            rate_control,
            threads: self.threads,
            still_qualities: self.qualities.clone(),
            reference_quality: self.reference_quality,
            stills: self.stills.min(self.frames),
            rules: vec![
                "the same frames, size and rate for every backend; a keyframe every 2 s".into(),
                match rate_control {
                    RateControl::Bitrate => {
                        "video: average-bitrate rate control at the same target bitrates".into()
                    }
                    RateControl::Crf => "video: constant quality, the same crf values for every \
                                         encoder (their scales differ)"
                        .into(),
                    RateControl::Qp => "video: constant quantiser, the same qp values for every \
                                        encoder"
                        .into(),
                },
                "each encoder's speed-oriented preset: x264 and x265 veryfast, libvpx \
                 realtime cpu-used=8, libaom realtime cpu-used=8, SVT-AV1 preset 12, mpeg4 \
                 FFmpeg's defaults; libheif x265 veryfast at lossy quality settings"
                    .into(),
                match self.threads {
                    None => "threads: each library's automatic choice (FFmpeg threads=0, as the \
                             ffmpeg command line)"
                        .into(),
                    Some(n) => format!(
                        "threads: {n} for every video encoder (FFmpeg thread_count, x264 \
                         threads); libheif's x265 keeps its own"
                    ),
                },
                "time: opening the encoder to closing it, output drained, frames copied in \
                 from memory; PSNR/SSIM: the output decoded by FFmpeg (libheif for HEIF) \
                 against the source"
                    .into(),
                "allocations per frame include the encoder's open and close and keeping the \
                 compressed output; peak live is above the level before the encoder opened"
                    .into(),
            ],
            configs: Vec::new(),
        })
    }
}

pub fn compare(args: CompareArgs) -> Result<bool> {
    let mut setup = args.setup()?;
    let configs: Vec<Config> = args
        .configs
        .iter()
        .map(|text| backends::parse_config(text))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut entries: Vec<Config> = if args.backend.is_empty() && configs.is_empty() {
        backends::BACKENDS
            .iter()
            .map(|name| Config {
                label: name.to_string(),
                backend: name.to_string(),
                options: Vec::new(),
            })
            .collect()
    } else {
        args.backend
            .iter()
            .map(|name| Config {
                label: name.clone(),
                backend: name.clone(),
                options: Vec::new(),
            })
            .collect()
    };
    entries.extend(configs);
    for (i, entry) in entries.iter().enumerate() {
        ensure!(
            entries[..i].iter().all(|e| e.label != entry.label),
            "invalid --config {:?} (expected a label of its own: {:?} names two rows)",
            entry.label,
            entry.label
        );
    }
    let mut runnable = Vec::new();
    let mut skipped = Vec::new();
    for entry in &entries {
        let name = &entry.label;
        match backends::resolve(&entry.backend).map_err(anyhow::Error::msg)? {
            Ok(backend) => {
                // Before any encode: an option the encoder does not take is a bad argument.
                backend
                    .check_options(name, &entry.options)
                    .map_err(|why| anyhow::anyhow!("invalid --config {name:?}: {why}"))?;
                match backend.check_rate(setup.rate_control) {
                    Ok(()) => runnable.push((name.clone(), backend)),
                    Err(reason) => skipped.push(Skipped {
                        backend: name.clone(),
                        reason,
                    }),
                }
            }
            Err(reason) => skipped.push(Skipped {
                backend: name.clone(),
                reason,
            }),
        }
    }
    // The children find their backend and options by label.
    setup.configs = entries
        .into_iter()
        .filter(|e| e.label != e.backend || !e.options.is_empty())
        .collect();
    if let Some(reference) = &args.reference {
        // Before any encode: a reference that will not run is a bad argument.
        match runnable.iter().find(|(name, _)| name == reference) {
            None => bail!(
                "invalid --reference {reference:?} (expected one of the backends that run \
                 here: {})",
                runnable
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some((_, backend)) if backend.kind() != Kind::Video => bail!(
                "invalid --reference {reference:?} (expected a video backend: BD-rate is over \
                 bitrates)"
            ),
            Some(_) => {}
        }
    }
    let rev = args.git_rev.clone().unwrap_or_else(avsoak::runner::git_rev);
    let mut provenance = Provenance::here(
        rev.clone(),
        avsoak::runner::RUSTC_VERSION.to_owned(),
        avsoak_scenarios::library_versions(),
    );
    provenance.units = [
        ("frames_per_s", "frames (or stills)/s"),
        ("kbps", "kbit/s at the setup's frame rate"),
        ("bits_per_pixel", "compressed bits per source pixel"),
        ("psnr_y", "dB"),
        ("psnr", "dB"),
        ("ssim_y", "0-1"),
        ("allocs_per_frame", "allocations/frame"),
        ("alloc_bytes_per_frame", "bytes/frame"),
        ("peak_live_bytes", "bytes"),
        ("bytes_per_lifetime", "bytes/encoder lifetime"),
        ("encode_s", "s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = provenance.started_at.replace(['-', ':'], "");
        PathBuf::from("reports/compare").join(format!("{stamp}-{rev}"))
    });
    fs::create_dir_all(out.join("logs")).with_context(|| format!("creating {}", out.display()))?;
    let setup_path = out.join("setup.json");
    fs::write(&setup_path, serde_json::to_string_pretty(&setup)?)
        .with_context(|| format!("writing {}", setup_path.display()))?;

    let child = Child {
        setup: &setup_path,
        out: &out,
        timeout: args.timeout,
    };
    let mut results = Vec::new();
    for (name, backend) in &runnable {
        eprint!("avsoak-run compare: {name} ... ");
        let started = Instant::now();
        let result = child.run(name, *backend, args.lifetimes, args.lifetime_frames, false);
        eprintln!(
            "{} in {:.1} s",
            result.error.as_deref().map_or("done", |_| "FAILED"),
            started.elapsed().as_secs_f64()
        );
        results.push(result);
    }
    let cli = match side_by_side(&args, &setup, &child, &runnable) {
        Ok(cli) => cli,
        Err(e) => {
            skipped.push(Skipped {
                backend: "ffmpeg command line".into(),
                reason: format!("{e:#}"),
            });
            None
        }
    };
    let mut comparison = Comparison {
        schema: SCHEMA.to_owned(),
        provenance,
        setup,
        backends: results,
        skipped,
        cli,
        reference: None,
    };
    if let Some(reference) = &args.reference {
        comparison
            .measure_bd(reference)
            .map_err(anyhow::Error::msg)?;
    }
    let table = comparison.table();
    print!("{table}");
    for (file, text) in [
        ("compare.json", comparison.to_json()),
        ("index.html", comparison.html()),
        ("table.txt", table),
    ] {
        let path = out.join(file);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("\nwrote {}", out.join("compare.json").display());
    println!("page: {}", out.join("index.html").display());
    Ok(comparison.backends.iter().all(|b| b.error.is_none()))
}

struct Child<'a> {
    setup: &'a Path,
    out: &'a Path,
    timeout: Duration,
}

impl Child<'_> {
    /// Runs one backend's child and reads its result; a crash, a timeout or a missing
    /// result becomes the backend's error.
    fn run(
        &self,
        name: &str,
        backend: Backend,
        lifetimes: u32,
        lifetime_frames: u32,
        time_only: bool,
    ) -> BackendResult {
        match self.spawn(name, lifetimes, lifetime_frames, time_only) {
            Ok(result) => result,
            Err(e) => BackendResult {
                error: Some(format!("{e:#}")),
                ..backend.result(name)
            },
        }
    }

    fn spawn(
        &self,
        name: &str,
        lifetimes: u32,
        lifetime_frames: u32,
        time_only: bool,
    ) -> Result<BackendResult> {
        let result_path = self.out.join("logs").join(format!("{name}.json"));
        let log_path = self.out.join("logs").join(format!("{name}.log"));
        let _ = fs::remove_file(&result_path);
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut command =
            avsoak::soak::this_executable().context("finding avsoak-run's own path")?;
        command
            .arg("compare-child")
            .arg("--backend")
            .arg(name)
            .arg("--setup")
            .arg(self.setup)
            .arg("--result")
            .arg(&result_path)
            .arg("--lifetimes")
            .arg(lifetimes.to_string())
            .arg("--lifetime-frames")
            .arg(lifetime_frames.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if time_only {
            command.arg("--time-only");
        }
        // Its own process group, killed with everything in it on a timeout.
        let mut child = Contained::spawn(&mut command).context("starting the backend's child")?;
        let Some(status) = child.wait_timeout(self.timeout)? else {
            bail!(
                "hang: stopped after {:.0} s (--timeout); log: {}",
                self.timeout.as_secs_f64(),
                log_path.display()
            );
        };
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            bail!(
                "crash: {} ({}); log: {}",
                avsoak::soak::signal_name(signal),
                tail(&log_path),
                log_path.display()
            );
        }
        let text = fs::read_to_string(&result_path).with_context(|| {
            format!(
                "the child exited with {status} and wrote no result ({})",
                tail(&log_path)
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", result_path.display()))
    }
}

/// The last line of a log, for an error message.
fn tail(path: &Path) -> String {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| avsoak::soak::last_line(&t).map(str::to_owned))
        .unwrap_or_else(|| "no output".to_owned())
}

pub fn compare_child(args: CompareChildArgs) -> Result<bool> {
    let text = fs::read_to_string(&args.setup)
        .with_context(|| format!("reading {}", args.setup.display()))?;
    let setup: Setup =
        serde_json::from_str(&text).with_context(|| format!("reading {}", args.setup.display()))?;
    // A label of `--config` names its backend and options; otherwise the label is the
    // backend's own name.
    let (backend_name, options) = match setup.configs.iter().find(|c| c.label == args.backend) {
        Some(config) => (config.backend.clone(), config.options.clone()),
        None => (args.backend.clone(), Vec::new()),
    };
    let backend = backends::resolve(&backend_name)
        .map_err(anyhow::Error::msg)?
        .map_err(|reason| anyhow::anyhow!("{backend_name} cannot run here: {reason}"))?;
    let plan = Plan {
        setup,
        options,
        lifetimes: args.lifetimes,
        lifetime_frames: args.lifetime_frames,
        time_only: args.time_only,
    };
    let result = backends::measure(&args.backend, backend, &plan);
    fs::write(&args.result, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", args.result.display()))?;
    Ok(result.error.is_none())
}

/// The FFmpeg `libx264` encode at the reference bitrate, through avsoak (a child, time
/// only) and through the `ffmpeg` command line reading the same frames from a raw file,
/// alternately, `rounds` times each.
fn side_by_side(
    args: &CompareArgs,
    setup: &Setup,
    child: &Child<'_>,
    runnable: &[(String, Backend)],
) -> Result<Option<CliSideBySide>> {
    if args.rounds == 0 {
        return Ok(None);
    }
    ensure!(
        setup.rate_control == RateControl::Bitrate && setup.threads.is_none(),
        "runs at a bitrate with each library's threads: not with --crf, --qp or --threads"
    );
    // The command line runs libx264 at the defaults: the row to time beside it has no
    // options of its own.
    let Some((name, backend)) = runnable.iter().find(|(name, b)| {
        *b == Backend::Ffmpeg("libx264")
            && setup
                .configs
                .iter()
                .all(|c| c.label != *name || c.options.is_empty())
    }) else {
        bail!("needs the libx264 backend at its defaults, which this run does not include");
    };
    let ffmpeg_version = Command::new("ffmpeg").arg("-version").output();
    ensure!(
        ffmpeg_version.is_ok_and(|o| o.status.success()),
        "no ffmpeg command on PATH (cargo xtask deps installs it)"
    );
    let raw = child.out.join("frames.yuv");
    // Removed however the side by side ends.
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&raw);
    {
        let frames = backends::source_frames(setup).map_err(anyhow::Error::msg)?;
        let mut file = std::io::BufWriter::new(
            fs::File::create(&raw).with_context(|| format!("creating {}", raw.display()))?,
        );
        for frame in &frames {
            file.write_all(frame.data())?;
        }
        file.flush()?;
    }
    let size = format!("{}x{}", setup.width, setup.height);
    let rate = format!("{}/{}", setup.fps_num, setup.fps_den);
    let bitrate = format!("{}k", setup.reference_kbps);
    let gop = (2 * setup.fps_num / setup.fps_den.max(1))
        .max(1)
        .to_string();
    let raw_arg = raw.display().to_string();
    let cli_args: Vec<&str> = vec![
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-benchmark",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s:v",
        &size,
        "-framerate",
        &rate,
        "-i",
        &raw_arg,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        &bitrate,
        "-g",
        &gop,
        "-threads",
        "0",
        "-f",
        "null",
        "-",
    ];
    let command_text = format!("ffmpeg {}", cli_args.join(" "));
    let (mut cli, mut ours) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let result = child.run(name, *backend, 0, 1, true);
        let point = match (&result.error, result.points.first()) {
            (None, Some(point)) => point.clone(),
            (error, _) => bail!(
                "avsoak's libx264 run {round} failed: {}",
                error.as_deref().unwrap_or("no rate point")
            ),
        };
        ours.push(point.frames_per_s);
        let output = Command::new("ffmpeg")
            .args(&cli_args)
            .stdin(Stdio::null())
            .output()
            .context("running ffmpeg")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.success(),
            "{command_text} failed: {}",
            stderr.lines().last().unwrap_or("")
        );
        let rtime = stderr
            .lines()
            .find_map(|l| l.split("rtime=").nth(1))
            .and_then(|t| t.trim().trim_end_matches('s').parse::<f64>().ok())
            .with_context(|| format!("ffmpeg printed no -benchmark line (rtime=…) in: {stderr}"))?;
        cli.push(f64::from(setup.frames) / rtime.max(1e-9));
        eprintln!(
            "avsoak-run compare: side by side round {}: avsoak {:.1} fps, ffmpeg {:.1} fps",
            round + 1,
            point.frames_per_s,
            cli.last().copied().unwrap_or(0.0)
        );
    }
    Ok(Some(CliSideBySide::new(command_text, cli, ours)))
}
