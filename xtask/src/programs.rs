//! `cargo xtask watch-overhead`: avsoak watch beside heaptrack and valgrind memcheck,
//! on the same C programs.
//!
//! Each program is one of the reproductions in `preload/repro/` (its leaky build), plus
//! Debian's own `ffmpeg` encoding a test source, which is clean. Every round runs each
//! program under each tool, in an order that rotates from round to round, and each tool
//! run has a plain run of its own right beside it (before it in one pair, after it in the
//! next). Every round also runs the program plain a second time (`plain again`), paired
//! the same way: the control, whose ratio is what the host's noise alone makes of two
//! identical runs. `--against LIBRARY` adds a row for another build of the preload
//! library (an older commit's), paired the same way in the same rounds: what a change to
//! the instrument costs, side by side.
//!
//! Why pairs: the host's speed drifts over seconds, and one plain run per round put a
//! minute of memcheck between it and some of the runs it was divided into. With the
//! plain run next to its pair, a ratio keeps only the drift over those few seconds.
//!
//! Why the fastest of three: what the host takes from a run is one-sided. A run is never
//! faster than the machine allows, but a neighbour's burst can make any single run 10-40 %
//! slower, plain or watched (two plain runs of x264-camera side by side differ by up to
//! 16 % either way). So `avsoak watch`, heaptrack and `plain again` run [`TRIES`] pairs
//! in a round, and the round's ratio is the tool's fastest run of the three over the
//! fastest of their three plain runs: what each took when the host took least. memcheck
//! (10-60x) runs one pair a round: its ratio is far outside the noise, and three would
//! triple a table that memcheck already makes long. The table's figure is the median of
//! the rounds' ratios, with their interquartile range. The control is measured the same
//! way, so its row shows what this estimate makes of no cost at all.
//!
//! Timing: plain, heaptrack and memcheck are timed from spawn to exit (the tool's own
//! report at exit included). avsoak is timed by the watched run itself (the report's
//! `wall_s`, spawn to exit): an exact re-run, when the sampled suspects leave a leak
//! unexplained, is a second run on purpose and is not counted.
//!
//! CPU: the user and system seconds of the run's processes, from the kernel's accounting
//! (`getrusage` of the children waited for). For plain, heaptrack and memcheck, the whole
//! process tree; for avsoak the watched run's own `cpu` figures, the program's and the
//! watcher's while it ran. A host busy with other work moves wall time (when a run gets
//! a core) more than CPU time, but CPU time too: a core shared with other machines runs
//! the same instructions slower. `plain again` shows how much, in the same run.

use crate::spread::Spread;
use crate::{target_dir, workspace_root};
use anyhow::{bail, ensure, Context, Result};
use avsoak::stats::median_of;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use xshell::{cmd, Shell};

/// One program: how to build and run it, and what it loses.
struct Program {
    name: &'static str,
    /// A reproduction to compile (`preload/repro/…`) with these pkg-config packages, or
    /// `None` for a system program.
    source: Option<(&'static str, &'static [&'static str])>,
    /// The command after the program path; `{clip}` is the MP4 fixture.
    args: &'static [&'static str],
    /// Options `avsoak watch` takes for it beyond `--out` and `--expect`. A program
    /// without markers (`function: None` here: Debian's ffmpeg) is watched at a tick
    /// sized from a plain run of it ([`avsoak::soak::watch::tick_for`], ten ticks of
    /// warm-up), so that every host judges about ninety ticks.
    watch: &'static [&'static str],
    /// The function a caught leak's top suspect names, `None` for a clean program.
    function: Option<&'static str>,
    /// Bytes the program keeps, per run, from its mistake: lost at exit, or (the list)
    /// kept reachable until exit and freed there. A tool that reports at least half of
    /// it caught the leak.
    leaked: f64,
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "list-growth",
        source: Some(("list_growth.c", &[])),
        args: &["12000", "0", "50"],
        watch: &[],
        function: Some("remember_frame_stats"),
        leaked: 12000.0 * 72.0,
    },
    Program {
        name: "x264-camera",
        source: Some(("x264_camera.c", &["x264"])),
        // 4,000 frames, about 1.2 s plain: a watched run's fixed costs (loading the
        // library, starting the agent, the `done` message; a few milliseconds) weigh
        // half what they did on 2,000.
        args: &["4000"],
        watch: &[],
        function: Some("x264_picture_alloc"),
        leaked: 4000.0 * 115_200.0,
    },
    Program {
        name: "avio-reader",
        source: Some(("avio_reader.c", &["libavformat", "libavcodec", "libavutil"])),
        args: &["{clip}", "1000"],
        watch: &[],
        function: Some("read_from_memory"),
        leaked: 1000.0 * 65_536.0,
    },
    Program {
        name: "packet-queue",
        source: Some((
            "packet_queue.c",
            &["libavformat", "libavcodec", "libavutil"],
        )),
        args: &["{clip}", "2000"],
        watch: &[],
        function: Some("read_ahead"),
        // Four packets' payloads a segment: at least their padding.
        leaked: 2000.0 * 4.0 * 64.0,
    },
    Program {
        name: "encoder-plugin",
        source: Some(("encoder_chunks.cpp", &["x265"])),
        args: &["2000"],
        watch: &[],
        function: Some("plugin::EncoderSession::collect(x265_nal const*, unsigned int)"),
        // Every second frame's chunk: its `Chunk` (a u32 and a vector: 32 B) and its
        // payload (at least 1 B).
        leaked: 1000.0 * 33.0,
    },
    Program {
        name: "ffmpeg",
        source: None,
        args: &[
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x480:rate=30",
            "-frames:v",
            "150",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-f",
            "null",
            "-",
        ],
        // 0.3-1.5 s plain, by the host: too short for 100 ms ticks after a 2 s warm-up,
        // and any fixed tick leaves a quick host too few ticks. Its tick is sized from
        // a plain run first (`sized_tick`).
        watch: &[],
        function: None,
        leaked: 0.0,
    },
];

/// Pairs a round for every tool that costs seconds, not minutes: the round's ratio is the
/// fastest of them over the fastest of their plain runs.
const TRIES: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Plain,
    /// Plain a second time in the round: the control. Its ratio to plain is the host's
    /// noise alone, the least a tool's ratio can be told apart by.
    Again,
    Avsoak,
    /// avsoak watch with another build of the preload library (`--against`): the two
    /// libraries' rows measured side by side, in the same rounds.
    Against,
    Heaptrack,
    Memcheck,
}

impl Tool {
    const ALL: [Tool; 6] = [
        Tool::Plain,
        Tool::Again,
        Tool::Avsoak,
        Tool::Against,
        Tool::Heaptrack,
        Tool::Memcheck,
    ];

    /// Pairs a round: see the module's "fastest of three".
    fn tries(self) -> usize {
        match self {
            Tool::Memcheck => 1,
            _ => TRIES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tool::Plain => "plain",
            Tool::Again => "plain again",
            Tool::Avsoak => "avsoak watch",
            Tool::Against => "avsoak against",
            Tool::Heaptrack => "heaptrack",
            Tool::Memcheck => "memcheck",
        }
    }
}

/// What one run found.
#[derive(Default, Clone)]
struct Finding {
    seconds: f64,
    /// CPU seconds, user and system, of everything the run took: the program, and the
    /// tool's own processes (heaptrack's interpreter, the watcher).
    cpu: f64,
    /// Bytes the tool reports lost at exit (heaptrack, memcheck), or the verdict and the
    /// suspect (avsoak).
    text: String,
    caught: bool,
    /// The tool said the heap grew while the program ran.
    growth_while_running: bool,
}

/// Runs the table over `rounds` (at least 1) rounds of `only` (empty: every program).
/// `cargo xtask watch-overhead`.
#[derive(clap::Args)]
pub struct WatchOverhead {
    /// Rounds: each pairs every tool with a plain run three times (memcheck once).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Programs (default: all): list-growth, x264-camera, avio-reader, packet-queue,
    /// encoder-plugin, ffmpeg.
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Comparison tools to leave out: heaptrack, memcheck (avsoak's own rows, with plain
    /// and plain again, in minutes instead of an hour).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Another build of `libavsoak_preload.so` (an older commit's, say) to watch with as
    /// well: its row, `avsoak against`, is measured in the same rounds as this build's.
    #[arg(long, value_name = "LIBRARY")]
    against: Option<PathBuf>,
}

impl WatchOverhead {
    pub fn run(self, sh: &Shell) -> Result<()> {
        anyhow::ensure!(self.rounds >= 1, "invalid --rounds 0 (expected at least 1)");
        for tool in &self.skip {
            anyhow::ensure!(
                tool == "heaptrack" || tool == "memcheck",
                "invalid --skip {tool:?} (expected heaptrack or memcheck)"
            );
        }
        if let Some(library) = &self.against {
            ensure!(
                library.is_file(),
                "invalid --against {} (expected a built libavsoak_preload.so)",
                library.display()
            );
        }
        run(
            sh,
            self.rounds,
            &self.workload,
            &self.skip,
            self.against.as_deref(),
        )
    }
}

fn run(
    sh: &Shell,
    rounds: u32,
    only: &[String],
    skip: &[String],
    against: Option<&Path>,
) -> Result<()> {
    let programs: Vec<&Program> = if only.is_empty() {
        PROGRAMS.iter().collect()
    } else {
        only.iter()
            .map(|name| {
                PROGRAMS.iter().find(|p| p.name == name).with_context(|| {
                    format!(
                        "unknown --workload {name:?} (expected one of: {})",
                        PROGRAMS
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    cmd!(
        sh,
        "cargo build --release --package avsoak-scenarios --bin avsoak-run --package avsoak-preload"
    )
    .run()?;
    let dir = target_dir().join("overhead/programs");
    std::fs::create_dir_all(&dir)?;
    let clip = dir.join("clip.mp4");
    cmd!(
        sh,
        "ffmpeg -nostdin -y -hide_banner -loglevel error -f lavfi -i testsrc=size=320x240:rate=25 -frames:v 50 -c:v libx264 -g 25 {clip}"
    )
    .run()
    .context("making the MP4 the FFmpeg reproductions read (Debian's ffmpeg)")?;
    let mut tools = vec![Tool::Plain, Tool::Again, Tool::Avsoak];
    if against.is_some() {
        tools.push(Tool::Against);
    }
    let mut skipped = Vec::new();
    for (tool, binary) in [(Tool::Heaptrack, "heaptrack"), (Tool::Memcheck, "valgrind")] {
        if skip.iter().any(|s| s == tool.name()) {
            skipped.push(format!("{}: left out (--skip)", tool.name()));
        } else if found(binary) {
            tools.push(tool);
        } else {
            skipped.push(format!(
                "{}: skipped, `{binary}` not found (cargo xtask deps installs it)",
                tool.name()
            ));
        }
    }
    let mut commands = Vec::new();
    for program in &programs {
        let path = match program.source {
            Some((source, packages)) => compile(&dir, source, program.name, packages)?,
            None => PathBuf::from("ffmpeg"),
        };
        let args: Vec<String> = program
            .args
            .iter()
            .map(|a| a.replace("{clip}", &clip.to_string_lossy()))
            .collect();
        commands.push((path, args));
    }
    let runner = target_dir().join("release/avsoak-run");
    // Time-mode programs: a tick sized from a plain run, as avsoak watch itself sizes one.
    let mut ticks = Vec::new();
    for (p, program) in programs.iter().enumerate() {
        let (path, args) = &commands[p];
        let options = if program.source.is_none() {
            let scratch = dir.join(format!("{}-sizing", program.name));
            let plain = measure(Tool::Plain, &runner, path, args, program, &[], &scratch)?;
            let tick =
                avsoak::soak::watch::tick_for(std::time::Duration::from_secs_f64(plain.seconds));
            let ms = tick.as_millis();
            vec![
                "--every".to_owned(),
                format!("{ms}ms"),
                "--warmup".to_owned(),
                format!("{}ms", 10 * ms),
            ]
        } else {
            program.watch.iter().map(|s| s.to_string()).collect()
        };
        ticks.push(options);
    }
    // runs[program][tool][round]: the tool's runs in the round, and beside them, in
    // paired[program][tool][round], the plain runs they were paired with.
    let mut runs = vec![vec![Vec::<Vec<Finding>>::new(); Tool::ALL.len()]; programs.len()];
    let mut paired = runs.clone();
    let others: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|&t| t != Tool::Plain)
        .collect();
    for round in 0..rounds as usize {
        for (p, program) in programs.iter().enumerate() {
            let (path, args) = &commands[p];
            for k in 0..others.len() {
                let tool = others[(k + round) % others.len()];
                let (mut theirs, mut plains) = (Vec::new(), Vec::new());
                for try_ in 0..tool.tries() {
                    // Plain right before the tool in one pair, right after it in the next,
                    // and the other way round in the next round, so that neither side of
                    // a pair always follows the other. Not by `k`: that is the tool's own
                    // place in `others`, so its parity would fix the side per tool.
                    let order = if (round + try_) % 2 == 0 {
                        [Tool::Plain, tool]
                    } else {
                        [tool, Tool::Plain]
                    };
                    for run in order {
                        let scratch =
                            dir.join(format!("{}-{}", program.name, run.name().replace(' ', "-")));
                        let options = match (run, against) {
                            (Tool::Against, Some(library)) => {
                                let mut o = vec!["--preload".to_owned()];
                                o.push(library.display().to_string());
                                o.extend(ticks[p].iter().cloned());
                                o
                            }
                            _ => ticks[p].clone(),
                        };
                        let finding =
                            measure(run, &runner, path, args, program, &options, &scratch)
                                .with_context(|| {
                                    format!("{} under {}", program.name, run.name())
                                })?;
                        if run == Tool::Plain {
                            plains.push(finding);
                        } else {
                            theirs.push(finding);
                        }
                    }
                }
                runs[p][tool as usize].push(theirs);
                paired[p][tool as usize].push(plains);
            }
        }
        eprintln!("xtask watch-overhead: round {} of {rounds} done", round + 1);
    }
    let mut out = format!(
        "\nwatching C programs: {rounds} interleaved rounds, {} CPUs; ratio = median over \
         rounds of (the tool's fastest run / the fastest of the plain runs paired with \
         them; {TRIES} pairs a round, memcheck 1) [interquartile range], of wall time and \
         of CPU time (user and system, the tool's own processes included); caught = the \
         tool reported the program's leak (avsoak: verdict and suspect; heaptrack: leaked \
         at exit; memcheck: definitely and indirectly lost); growth = it said the heap \
         grew while the program ran\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    out.push_str(&format!(
        "{:<14} {:<13} {:>8} {:>24} {:>24} {:>7} {:>7}  {}\n",
        "program",
        "tool",
        "median s",
        "wall ratio",
        "CPU ratio",
        "caught",
        "growth",
        "what it reported"
    ));
    let mut json = Vec::new();
    for (p, program) in programs.iter().enumerate() {
        for &tool in &tools {
            // Plain has no runs of its own here (each is paired with a tool): its row is
            // every plain run of the program, whatever it was paired with.
            let rounds_of = &runs[p][tool as usize];
            let all: Vec<&Finding> = if tool == Tool::Plain {
                paired[p].iter().flatten().flatten().collect()
            } else {
                rounds_of.iter().flatten().collect()
            };
            let seconds: Vec<f64> = all.iter().map(|f| f.seconds).collect();
            // Each round: the tool's fastest run over the fastest plain run beside it, by
            // one figure (each side its own fastest).
            let ratios = |figure: fn(&Finding) -> f64| {
                let fastest =
                    |round: &[Finding]| round.iter().map(figure).fold(f64::INFINITY, f64::min);
                Spread::of(
                    rounds_of
                        .iter()
                        .zip(&paired[p][tool as usize])
                        .map(|(theirs, plains)| fastest(theirs) / fastest(plains))
                        .collect(),
                )
            };
            // Plain against itself is 1x: left blank in the table, 1 in the JSON.
            let (spread, cpu_spread) = if tool == Tool::Plain {
                (Spread::of(vec![1.0]), Spread::of(vec![1.0]))
            } else {
                (ratios(|f| f.seconds), ratios(|f| f.cpu))
            };
            let shown = |spread: &Spread| {
                if tool == Tool::Plain {
                    String::new()
                } else {
                    spread.to_string()
                }
            };
            let last = all.last().copied().cloned().unwrap_or_default();
            let yes = |b: bool| if b { "yes" } else { "no" };
            let (caught, growth) = match (tool, program.function) {
                (Tool::Plain | Tool::Again, _) => ("", ""),
                (_, None) => ("-", "-"),
                _ => (
                    yes(all.iter().all(|f| f.caught)),
                    yes(all.iter().all(|f| f.growth_while_running)),
                ),
            };
            out.push_str(&format!(
                "{:<14} {:<13} {:>8.3} {:>24} {:>24} {:>7} {:>7}  {}\n",
                program.name,
                tool.name(),
                median_of(&seconds),
                shown(&spread),
                shown(&cpu_spread),
                caught,
                growth,
                last.text
            ));
            json.push(serde_json::json!({
                "program": program.name,
                "tool": tool.name(),
                "seconds": seconds,
                "pairs_per_round": if tool == Tool::Plain { 0 } else { tool.tries() },
                "cpu_seconds": all.iter().map(|f| f.cpu).collect::<Vec<_>>(),
                "ratio": { "median": spread.median, "q1": spread.q1, "q3": spread.q3 },
                "cpu_ratio": {
                    "median": cpu_spread.median,
                    "q1": cpu_spread.q1,
                    "q3": cpu_spread.q3,
                },
                "caught": all.iter().all(|f| f.caught),
                "growth_while_running": all.iter().all(|f| f.growth_while_running),
                "reported": last.text,
            }));
        }
    }
    for line in &skipped {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(
        "goal: avsoak watch <= 1.05x plain (median) on every reproduction. plain again \
         is the control, the same plain program run again and measured the same way: its \
         ratio is the host's noise alone, in CPU time too (a core shared with other \
         machines runs the same work slower), and a tool's ratio inside its range is not \
         told apart from plain\n",
    );
    print!("{out}");
    let path = dir.join("overhead-programs.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn found(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Compiles a reproduction's leaky build as `avsoak watch`'s tests do (`c++` for a
/// `.cpp` file).
fn compile(dir: &Path, source: &str, name: &str, packages: &[&str]) -> Result<PathBuf> {
    let root = workspace_root();
    let exe = dir.join(name);
    let compiler = if source.ends_with(".cpp") {
        "c++"
    } else {
        "cc"
    };
    let mut command = Command::new(compiler);
    command
        .args(["-O2", "-g", "-I"])
        .arg(root.join("include"))
        .arg(root.join("preload/repro").join(source))
        .arg("-o")
        .arg(&exe);
    if !packages.is_empty() {
        let output = Command::new("pkg-config")
            .args(["--cflags", "--libs"])
            .args(packages)
            .output()
            .context("running pkg-config")?;
        ensure!(output.status.success(), "pkg-config found no {packages:?}");
        command.args(String::from_utf8_lossy(&output.stdout).split_whitespace());
    }
    let status = command
        .status()
        .with_context(|| format!("running the system compiler ({compiler})"))?;
    ensure!(status.success(), "{compiler} failed on {source}");
    Ok(exe)
}

/// Runs `program` once under `tool`.
fn measure(
    tool: Tool,
    runner: &Path,
    path: &Path,
    args: &[String],
    program: &Program,
    options: &[String],
    scratch: &Path,
) -> Result<Finding> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)?;
    let mut command = match tool {
        Tool::Plain | Tool::Again => Command::new(path),
        Tool::Avsoak | Tool::Against => {
            let mut c = Command::new(runner);
            c.arg("watch").arg("--out").arg(scratch.join("run"));
            if program.function.is_some() {
                c.args(["--expect", "leak"]);
            }
            c.args(options);
            c.arg("--").arg(path);
            c
        }
        Tool::Heaptrack => {
            let mut c = Command::new("heaptrack");
            c.arg("-o").arg(scratch.join("heaptrack")).arg(path);
            c
        }
        Tool::Memcheck => {
            let mut c = Command::new("valgrind");
            c.args(["--leak-check=full", "--show-leak-kinds=definite,indirect"])
                .arg(format!(
                    "--log-file={}",
                    scratch.join("memcheck.log").display()
                ))
                .arg(path);
            c
        }
    };
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let cpu_before = avsoak::soak::children_cpu_s();
    let start = Instant::now();
    let output = command.output().context("starting it")?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = avsoak::soak::children_cpu_s() - cpu_before;
    // avsoak-run exits 1 for a failed outcome, which the table shows.
    let judged = matches!(tool, Tool::Avsoak | Tool::Against) && output.status.code() == Some(1);
    if !output.status.success() && !judged {
        bail!(
            "exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mib = |bytes: f64| format!("{:.2} MiB", bytes / (1 << 20) as f64);
    let half = program.leaked / 2.0;
    Ok(match tool {
        Tool::Plain | Tool::Again => Finding {
            seconds: elapsed,
            cpu,
            ..Finding::default()
        },
        Tool::Avsoak | Tool::Against => {
            let file = scratch.join("run/report.json");
            let report: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
            )?;
            let r = &report["results"][0];
            let verdict = r["verdict"].as_str().unwrap_or("?").to_owned();
            let named = program.function.is_some_and(|function| {
                r["suspects"][0]["frames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|f| f.as_str() == Some(function))
            });
            let per_iter = r["heap"]["leak_bytes_per_iter"].as_f64().unwrap_or(0.0);
            // The watched run's own: the watcher's CPU after the program exited (naming
            // the suspects, an exact re-run) is not counted, as in `wall_s`.
            let watched = ["program_s", "watcher_s"]
                .iter()
                .map(|k| r["cpu"][k].as_f64())
                .sum::<Option<f64>>()
                .with_context(|| format!("{} has no cpu figures", file.display()))?;
            Finding {
                seconds: r["wall_s"].as_f64().unwrap_or(elapsed),
                cpu: watched,
                text: match (program.function, r["error"].as_str()) {
                    // An error is no verdict: say why, not a rate.
                    (_, Some(error)) => format!("{verdict}: {error}"),
                    (Some(function), None) if named => {
                        format!("{verdict}, {per_iter:.0} B/iteration, names {function}")
                    }
                    _ => format!("{verdict}, {per_iter:.0} B/iteration"),
                },
                caught: verdict == "leak" && named,
                growth_while_running: verdict == "leak",
            }
        }
        Tool::Heaptrack => {
            let file = scratch.join("heaptrack.zst");
            let printed = Command::new("heaptrack_print")
                .arg("-f")
                .arg(&file)
                .output()
                .context("running heaptrack_print")?;
            let text = String::from_utf8_lossy(&printed.stdout);
            let leaked = text
                .lines()
                .find_map(|l| l.strip_prefix("total memory leaked: "))
                .map(heaptrack_bytes)
                .with_context(|| {
                    format!("heaptrack_print {} gave no leak total", file.display())
                })?;
            Finding {
                seconds: elapsed,
                cpu,
                text: format!("{} leaked at exit", mib(leaked)),
                caught: program.function.is_some() && leaked >= half,
                growth_while_running: false,
            }
        }
        Tool::Memcheck => {
            let log = std::fs::read_to_string(scratch.join("memcheck.log"))?;
            let lost = |kind: &str| {
                log.lines()
                    .find_map(|l| {
                        l.split_once(&format!("{kind} lost: "))
                            .map(|(_, rest)| rest)
                    })
                    .and_then(|rest| rest.split_whitespace().next())
                    .map_or(0.0, |n| n.replace(',', "").parse().unwrap_or(0.0))
            };
            let lost = lost("definitely") + lost("indirectly");
            Finding {
                seconds: elapsed,
                cpu,
                text: format!("{} definitely and indirectly lost", mib(lost)),
                caught: program.function.is_some() && lost >= half,
                growth_while_running: false,
            }
        }
    })
}

/// heaptrack_print's sizes: `4.10K`, `34.56M`, `1.20G`, `512B`.
fn heaptrack_bytes(text: &str) -> f64 {
    let text = text.trim();
    let (number, scale) = match text.chars().last() {
        Some('K') => (&text[..text.len() - 1], 1e3),
        Some('M') => (&text[..text.len() - 1], 1e6),
        Some('G') => (&text[..text.len() - 1], 1e9),
        Some('B') => (&text[..text.len() - 1], 1.0),
        _ => (text, 1.0),
    };
    number.parse::<f64>().map_or(0.0, |n| n * scale)
}
