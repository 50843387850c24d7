//! zerodur-compare: zerodur side by side with durability 0.6.1, okaywal 0.3, raft-log 0.4 and
//! the raw floor, in one round-robin run on one filesystem with the same payloads.
//!
//! ```text
//! cargo run --release -p zerodur-compare -- [--quick] [--only TEXT] [--dir PATH]
//!     [--update-committed] [--out FILE.md] [--svg FILE.svg]
//! ```

mod chart;
mod durability_peer;
mod environment;
mod harness;
mod okaywal_peer;
mod raftlog_peer;
mod raw;
mod report;
mod zerodur_peer;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use harness::{Contender, Measure, ResumeLog, Sample, Task, Work};

const USAGE: &str = "\
usage: zerodur-compare [--quick] [--only TEXT] [--dir PATH] [--update-committed]
                       [--out FILE.md] [--svg FILE.svg]

  --quick             scaled-down run (about a minute on 2 cores)
  --only TEXT         run only the operations whose key contains TEXT (keys:
                      append-latency, threads-N, buffered-N, replay,
                      checkpoint-{write,load}-{pairs,blob}, recovery, resume-N)
  --dir PATH          where the scratch files go (default: the system temp
                      dir); a fresh subdirectory is made there and removed at
                      the end. Use a directory on the disk you care about: on
                      tmpfs or ramfs every sync is free and durability figures
                      mean nothing (the run warns)
  --update-committed  write the committed results, compare/results/latest.md
                      and latest.svg (a full run of every operation only)
  --out FILE          markdown report (default: target/zerodur-compare/
                      latest[.quick].md, under CARGO_TARGET_DIR if set)
  --svg FILE          SVG chart (default: as for the report, ending in .svg)";

/// Payload of durable appends.
const DURABLE_PAYLOAD_BYTES: usize = 128;
/// Payload of buffered appends and of replay/recovery entries.
const SMALL_PAYLOAD_BYTES: usize = 100;
/// The larger buffered-append payload.
const LARGE_PAYLOAD_BYTES: usize = 1024;
/// Payload of the entries filling resume logs.
const RESUME_ENTRY_BYTES: usize = 1024;

/// How much work each operation does; `quick` and `full` are the two presets.
#[derive(Debug, Clone)]
pub struct Scale {
    /// `quick` or `full`.
    pub name: &'static str,
    /// Round-robin rounds; each contender runs each operation once per round.
    pub rounds: usize,
    /// Timed appends per round of the one-writer latency operation.
    pub latency_appends: usize,
    /// The thread counts of the multi-thread durable-append operations.
    pub thread_counts: Vec<usize>,
    /// How long each multi-thread durable-append run lasts.
    pub thread_run_for: Duration,
    /// Appends per round of buffered appends of the small payload.
    pub buffered_small_appends: usize,
    /// Appends per round of buffered appends of the large payload.
    pub buffered_large_appends: usize,
    /// Entries of the replay log, and of the log suffix recovery applies.
    pub replay_entries: usize,
    /// `(u64, u64)` pairs in the pairs checkpoint.
    pub pairs: usize,
    /// Bytes of the blob checkpoint.
    pub blob_bytes: usize,
    /// Segment size of the logs that resume reopens.
    pub resume_segment_bytes: u64,
    /// Sealed segments of the two resume logs (few, many).
    pub resume_sealed_segments: [usize; 2],
}

impl Scale {
    fn quick() -> Scale {
        Scale {
            name: "quick",
            rounds: 5,
            latency_appends: 300,
            thread_counts: vec![1, 4, 8],
            thread_run_for: Duration::from_millis(200),
            buffered_small_appends: 300_000,
            buffered_large_appends: 60_000,
            replay_entries: 100_000,
            pairs: 250_000,
            blob_bytes: 32 << 20,
            resume_segment_bytes: 256 << 10,
            resume_sealed_segments: [16, 256],
        }
    }

    fn full() -> Scale {
        Scale {
            name: "full",
            rounds: 5,
            latency_appends: 2000,
            thread_counts: vec![1, 2, 4, 8, 16],
            thread_run_for: Duration::from_secs(1),
            buffered_small_appends: 2_000_000,
            buffered_large_appends: 300_000,
            replay_entries: 1_000_000,
            pairs: 1_000_000,
            blob_bytes: 100 << 20,
            resume_segment_bytes: 1 << 20,
            resume_sealed_segments: [16, 256],
        }
    }
}

struct Args {
    quick: bool,
    only: Option<String>,
    out: PathBuf,
    svg: PathBuf,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut quick = false;
    let mut only = None;
    let mut out = None;
    let mut svg = None;
    let mut dir = None;
    let mut update_committed = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(value("--only")?),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--svg" => svg = Some(PathBuf::from(value("--svg")?)),
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--update-committed" => update_committed = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    if update_committed && (quick || only.is_some()) {
        return Err(UPDATE_COMMITTED_ALONE.to_string());
    }
    let results = if update_committed {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
    } else {
        scratch_results_dir()
    };
    let stem = if quick { "latest.quick" } else { "latest" };
    Ok(Args {
        quick,
        only,
        out: out.unwrap_or_else(|| results.join(format!("{stem}.md"))),
        svg: svg.unwrap_or_else(|| results.join(format!("{stem}.svg"))),
        dir: dir.unwrap_or_else(std::env::temp_dir),
    })
}

/// Why `--update-committed` refuses `--quick` and `--only`.
const UPDATE_COMMITTED_ALONE: &str = "--update-committed replaces the committed results of a \
     full run of every operation: it takes neither --quick nor --only";

/// Where runs write their results unless told otherwise: `zerodur-compare/` in cargo's
/// target directory (`CARGO_TARGET_DIR` when set, else the workspace's `target/`), which
/// git ignores.
fn scratch_results_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("target")
        });
    target.join("zerodur-compare")
}

/// Deterministic pseudo-random bytes (xorshift), so no payload is all zeros.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Sequential keys with full-width, scrambled values.
fn make_pairs(count: usize) -> Vec<(u64, u64)> {
    (0..count as u64)
        .map(|key| (key, key.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)))
        .collect()
}

/// The shared inputs all contenders get.
struct Inputs {
    durable: Vec<u8>,
    small: Vec<u8>,
    large: Vec<u8>,
    pairs: Vec<(u64, u64)>,
    blob: Vec<u8>,
}

fn build_tasks<'a>(scale: &'a Scale, inputs: &'a Inputs) -> Vec<Task<'a>> {
    let mut tasks = vec![Task {
        key: "append-latency".to_string(),
        title: format!("durable append, {DURABLE_PAYLOAD_BYTES} B, 1 writer"),
        label: "durable append p50, 1 writer".to_string(),
        measure: Measure::Latency,
        prepare: None,
        run: Box::new(|c: &dyn Contender, dir: &Path| {
            c.durable_append_latency(dir, &inputs.durable, scale.latency_appends)
                .map(Sample::Latencies)
        }),
    }];

    for &threads in &scale.thread_counts {
        tasks.push(Task {
            key: format!("threads-{threads}"),
            title: format!("durable appends/s, {DURABLE_PAYLOAD_BYTES} B, {threads} threads"),
            label: format!(
                "durable appends/s, {threads} thread{}",
                if threads == 1 { "" } else { "s" }
            ),
            measure: Measure::RateAndLatency,
            prepare: None,
            run: Box::new(move |c: &dyn Contender, dir: &Path| {
                c.durable_append_threads(dir, &inputs.durable, threads, scale.thread_run_for)
                    .map(Sample::Work)
            }),
        });
    }

    for (payload, appends) in [
        (&inputs.small, scale.buffered_small_appends),
        (&inputs.large, scale.buffered_large_appends),
    ] {
        tasks.push(Task {
            key: format!("buffered-{}", payload.len()),
            title: format!("buffered appends/s, {} B", payload.len()),
            label: format!("buffered appends/s, {} B", payload.len()),
            measure: Measure::Rate,
            prepare: None,
            run: Box::new(move |c: &dyn Contender, dir: &Path| {
                let elapsed = c.buffered_append(dir, payload, appends)?;
                Ok(Sample::Work(Work {
                    ops: appends as u64,
                    elapsed,
                    latencies: Vec::new(),
                }))
            }),
        });
    }

    let entries = scale.replay_entries;
    tasks.push(Task {
        key: "replay".to_string(),
        title: format!(
            "replay {} × {SMALL_PAYLOAD_BYTES} B entries, page-cached",
            count(entries)
        ),
        label: format!("replay, {} entries", count(entries)),
        measure: Measure::Time,
        prepare: Some(Box::new(move |c: &dyn Contender, dir: &Path| {
            c.replay_prepare(dir, &inputs.small, entries)
        })),
        run: Box::new(move |c: &dyn Contender, dir: &Path| {
            c.replay(dir, entries).map(Sample::Time)
        }),
    });

    let pairs = &inputs.pairs;
    let pairs_label = format!("{} (u64,u64) pairs", count(pairs.len()));
    tasks.push(Task {
        key: "checkpoint-write-pairs".to_string(),
        title: format!("checkpoint write (durable), {pairs_label}"),
        label: "checkpoint write, pairs".to_string(),
        measure: Measure::Time,
        prepare: None,
        run: Box::new(move |c: &dyn Contender, dir: &Path| {
            c.checkpoint_write_pairs(dir, pairs).map(Sample::Time)
        }),
    });
    tasks.push(Task {
        key: "checkpoint-load-pairs".to_string(),
        title: format!("checkpoint load + full scan, {pairs_label}"),
        label: "checkpoint load + scan, pairs".to_string(),
        measure: Measure::Time,
        prepare: Some(Box::new(move |c: &dyn Contender, dir: &Path| {
            c.checkpoint_prepare_pairs(dir, pairs)
        })),
        run: Box::new(move |c: &dyn Contender, dir: &Path| {
            c.checkpoint_load_pairs(dir, pairs.len()).map(Sample::Time)
        }),
    });

    let blob = &inputs.blob;
    let blob_label = format!("{} MiB blob", blob.len() >> 20);
    tasks.push(Task {
        key: "checkpoint-write-blob".to_string(),
        title: format!("checkpoint write (durable), {blob_label}"),
        label: format!("checkpoint write, {blob_label}"),
        measure: Measure::Time,
        prepare: None,
        run: Box::new(move |c: &dyn Contender, dir: &Path| {
            c.checkpoint_write_blob(dir, blob).map(Sample::Time)
        }),
    });
    tasks.push(Task {
        key: "checkpoint-load-blob".to_string(),
        title: format!("checkpoint load, {blob_label}"),
        label: format!("checkpoint load, {blob_label}"),
        measure: Measure::Time,
        prepare: Some(Box::new(move |c: &dyn Contender, dir: &Path| {
            c.checkpoint_prepare_blob(dir, blob)
        })),
        run: Box::new(move |c: &dyn Contender, dir: &Path| {
            c.checkpoint_load_blob(dir, blob.len()).map(Sample::Time)
        }),
    });

    tasks.push(Task {
        key: "recovery".to_string(),
        title: format!(
            "recovery: checkpoint of {pairs_label} + {} × {SMALL_PAYLOAD_BYTES} B entries",
            count(entries)
        ),
        label: "recovery: checkpoint + suffix".to_string(),
        measure: Measure::Time,
        prepare: Some(Box::new(move |c: &dyn Contender, dir: &Path| {
            c.recovery_prepare(dir, pairs, &inputs.small, entries)
        })),
        run: Box::new(move |c: &dyn Contender, dir: &Path| {
            c.recovery(dir, pairs.len(), entries).map(Sample::Time)
        }),
    });

    for sealed_segments in scale.resume_sealed_segments {
        let log = ResumeLog {
            sealed_segments,
            segment_bytes: scale.resume_segment_bytes,
            entry_bytes: RESUME_ENTRY_BYTES,
        };
        tasks.push(Task {
            key: format!("resume-{sealed_segments}"),
            title: format!(
                "resume, {sealed_segments} sealed segments of {} KiB",
                scale.resume_segment_bytes >> 10
            ),
            label: format!("resume, {sealed_segments} sealed segments"),
            measure: Measure::Time,
            prepare: Some(Box::new(move |c: &dyn Contender, dir: &Path| {
                c.resume_prepare(dir, log)
            })),
            run: Box::new(move |c: &dyn Contender, dir: &Path| {
                c.resume(dir, log).map(Sample::Time)
            }),
        });
    }
    tasks
}

/// "1 M", "250 k", "300".
fn count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{} M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{} k", n / 1000)
    } else {
        n.to_string()
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("zerodur-compare: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    let scale = if args.quick {
        Scale::quick()
    } else {
        Scale::full()
    };
    let scratch = args
        .dir
        .join(format!("zerodur-compare-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let environment = environment::Environment::probe(&scratch, &scale);
    eprintln!(
        "zerodur-compare ({} mode) in {}",
        scale.name,
        scratch.display()
    );
    if let Some(warning) = environment.memory_filesystem_warning() {
        eprintln!("\n{}\n", environment::banner(&warning));
    }

    let inputs = Inputs {
        durable: pseudo_random_bytes(DURABLE_PAYLOAD_BYTES, 1),
        small: pseudo_random_bytes(SMALL_PAYLOAD_BYTES, 2),
        large: pseudo_random_bytes(LARGE_PAYLOAD_BYTES, 3),
        pairs: make_pairs(scale.pairs),
        blob: pseudo_random_bytes(scale.blob_bytes, 4),
    };
    let contenders: [&dyn Contender; 5] = [
        &zerodur_peer::Zerodur,
        &durability_peer::Durability,
        &okaywal_peer::Okaywal,
        &raftlog_peer::RaftLogPeer,
        &raw::Raw,
    ];
    let mut tasks = build_tasks(&scale, &inputs);
    if let Some(only) = &args.only {
        tasks.retain(|task| task.key.contains(only.as_str()));
        if tasks.is_empty() {
            fs::remove_dir_all(&scratch)?;
            return Err(std::io::Error::other(format!(
                "no operation matches {only:?}"
            )));
        }
    }

    let started = std::time::Instant::now();
    let results = harness::run_all(&tasks, &contenders, scale.rounds, &scratch);
    fs::remove_dir_all(&scratch)?;
    let results = results?;
    let elapsed = started.elapsed();

    let markdown = report::markdown(&environment, &contenders, &results, elapsed);
    let svg = chart::svg(&environment, &contenders, &results);
    print!("{markdown}");
    for (what, path, text) in [("report", &args.out, &markdown), ("chart", &args.svg, &svg)] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, text)?;
        eprintln!("wrote the {what} to {}", path.display());
    }
    if let Some(warning) = environment.memory_filesystem_warning() {
        eprintln!("\n{}", environment::banner(&warning));
    }
    Ok(())
}
