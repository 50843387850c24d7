//! The round-robin runner and the statistics over its samples.
//!
//! Every operation is a [`Task`]. The run is `rounds` rounds; each round runs every task, and
//! within a task every contender once, back to back, so drift of the machine (page cache,
//! write-back, noisy neighbours, a slow patch of the virtual disk) hits all of them alike.
//! Because rounds are the outer loop, a slow patch spoils one round of a few tasks rather than
//! every round of one task, and the median over rounds filters it out. The contender that
//! goes first is rotated from round to round so no one always runs right after the heaviest
//! peer. Before every run, dirty pages are written back (`sync`), so a run does not pay for
//! its predecessor's write-back.
//!
//! Each run gets a fresh directory that is deleted afterwards. A task with a `prepare` step
//! builds its input once per contender into a pristine directory; every round copies that
//! directory (the copy is page-cached) and measures on the copy, so runs that mutate their
//! input (reopening a log, for instance) stay independent.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Why a contender has no figure for an operation.
#[derive(Debug, Clone)]
pub enum Skip {
    /// The contender's API has no such operation; the text says why.
    Unsupported(&'static str),
    /// The contender returned an error or produced wrong results.
    Failed(String),
}

impl Skip {
    /// Wraps any error as a failure of the run.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        Skip::Failed(error.to_string())
    }

    /// The short text shown in notes.
    pub fn describe(&self) -> String {
        match self {
            Skip::Unsupported(why) => format!("not supported: {why}"),
            Skip::Failed(error) => format!("failed: {error}"),
        }
    }
}

impl From<io::Error> for Skip {
    fn from(error: io::Error) -> Self {
        Skip::failed(error)
    }
}

/// What a contender's run returns: the timed part only, setup excluded.
pub type Outcome<T> = Result<T, Skip>;

/// Checks a result count, turning a mismatch into a failure.
pub fn expect_count(what: &str, got: u64, expected: u64) -> Outcome<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Skip::Failed(format!(
            "{what}: got {got}, expected {expected}"
        )))
    }
}

/// Sizes of the log that resume is measured on.
#[derive(Debug, Clone, Copy)]
pub struct ResumeLog {
    /// Sealed segments before the active one.
    pub sealed_segments: usize,
    /// Target size of one segment.
    pub segment_bytes: u64,
    /// Payload of each entry.
    pub entry_bytes: usize,
}

/// The operations every contender answers, each timing only its measured part.
///
/// Each method gets a fresh, empty directory (or a copy of what its `*_prepare` method built)
/// and returns [`Skip`] when the contender cannot do the operation. Inputs (payloads, pairs,
/// blobs) are built once by the harness and shared, so all contenders see the same bytes.
pub trait Contender: Sync {
    /// Name shown in tables and charts.
    fn name(&self) -> &'static str;

    /// One line on which API calls each operation uses, shown in the report.
    fn method(&self) -> &'static str;

    /// Appends `appends` entries one at a time, each durable before the next starts;
    /// returns the latency of every append. An untimed warm-up append may precede them.
    fn durable_append_latency(
        &self,
        dir: &Path,
        payload: &[u8],
        appends: usize,
    ) -> Outcome<Vec<Duration>>;

    /// `threads` threads append entries, each durable when its call returns, from a common
    /// start until `run_for` has passed; returns how many appends completed and the wall
    /// time until the last thread stopped ([`append_for`] does all of that).
    fn durable_append_threads(
        &self,
        dir: &Path,
        payload: &[u8],
        threads: usize,
        run_for: Duration,
    ) -> Outcome<Work>;

    /// Appends `appends` entries without waiting for durability, then hands the bytes to the
    /// OS (no sync); returns the time for all of it.
    fn buffered_append(&self, dir: &Path, payload: &[u8], appends: usize) -> Outcome<Duration>;

    /// Untimed: writes a log of `entries` entries of `payload` into `dir`.
    fn replay_prepare(&self, dir: &Path, payload: &[u8], entries: usize) -> Outcome<()>;

    /// Reads back every entry of the log built by `replay_prepare` (page-cached), checking
    /// integrity and touching every payload; returns the time.
    fn replay(&self, dir: &Path, entries: usize) -> Outcome<Duration>;

    /// Writes `pairs` as a durable checkpoint; returns the time.
    fn checkpoint_write_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<Duration>;

    /// Untimed: writes the pairs checkpoint that `checkpoint_load_pairs` reads.
    fn checkpoint_prepare_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<()>;

    /// Loads the pairs checkpoint (integrity checks included) and scans every pair;
    /// returns the time.
    fn checkpoint_load_pairs(&self, dir: &Path, pairs: usize) -> Outcome<Duration>;

    /// Writes `blob` as a durable checkpoint; returns the time.
    fn checkpoint_write_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<Duration>;

    /// Untimed: writes the blob checkpoint that `checkpoint_load_blob` reads.
    fn checkpoint_prepare_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<()>;

    /// Loads the blob checkpoint with its integrity check; returns the time.
    fn checkpoint_load_blob(&self, dir: &Path, blob_bytes: usize) -> Outcome<Duration>;

    /// Untimed: writes a checkpoint of `pairs` and a log suffix of `entries` entries after it.
    fn recovery_prepare(
        &self,
        dir: &Path,
        pairs: &[(u64, u64)],
        payload: &[u8],
        entries: usize,
    ) -> Outcome<()>;

    /// Recovers the state: loads the checkpoint and applies every suffix entry; returns the
    /// time.
    fn recovery(&self, dir: &Path, pairs: usize, entries: usize) -> Outcome<Duration>;

    /// Untimed: writes a log with `log.sealed_segments` sealed segments and a half-full
    /// active one.
    fn resume_prepare(&self, dir: &Path, log: ResumeLog) -> Outcome<()>;

    /// Reopens the log that `resume_prepare` wrote with the same `log`, for appending;
    /// returns the time until it is ready.
    fn resume(&self, dir: &Path, log: ResumeLog) -> Outcome<Duration>;
}

/// The checkpoint and recovery methods of a [`Contender`] that has no checkpoints: each
/// returns `Skip::Unsupported($why)`. Invoke it inside the contender's `impl Contender`.
macro_rules! no_checkpoints {
    ($why:expr) => {
        fn checkpoint_write_pairs(&self, _: &Path, _: &[(u64, u64)]) -> Outcome<Duration> {
            Err(Skip::Unsupported($why))
        }

        fn checkpoint_prepare_pairs(&self, _: &Path, _: &[(u64, u64)]) -> Outcome<()> {
            Err(Skip::Unsupported($why))
        }

        fn checkpoint_load_pairs(&self, _: &Path, _: usize) -> Outcome<Duration> {
            Err(Skip::Unsupported($why))
        }

        fn checkpoint_write_blob(&self, _: &Path, _: &[u8]) -> Outcome<Duration> {
            Err(Skip::Unsupported($why))
        }

        fn checkpoint_prepare_blob(&self, _: &Path, _: &[u8]) -> Outcome<()> {
            Err(Skip::Unsupported($why))
        }

        fn checkpoint_load_blob(&self, _: &Path, _: usize) -> Outcome<Duration> {
            Err(Skip::Unsupported($why))
        }

        fn recovery_prepare(&self, _: &Path, _: &[(u64, u64)], _: &[u8], _: usize) -> Outcome<()> {
            Err(Skip::Unsupported($why))
        }

        fn recovery(&self, _: &Path, _: usize, _: usize) -> Outcome<Duration> {
            Err(Skip::Unsupported($why))
        }
    };
}
pub(crate) use no_checkpoints;

/// Operations done in a span of wall time.
#[derive(Debug, Clone)]
pub struct Work {
    pub ops: u64,
    pub elapsed: Duration,
    /// Every operation's latency, when each one was timed (empty otherwise).
    pub latencies: Vec<Duration>,
}

/// Test data: a result of `key` whose samples are `samples`, contender by contender.
#[cfg(test)]
pub fn result_of(key: &str, measure: Measure, samples: Vec<(&'static str, Samples)>) -> TaskResult {
    TaskResult {
        key: key.to_string(),
        title: key.to_string(),
        label: key.to_string(),
        measure,
        samples,
    }
}

/// Test data: one round that did `ops` operations in a second.
#[cfg(test)]
pub fn one_second_of(ops: u64) -> Sample {
    Sample::Work(Work {
        ops,
        elapsed: Duration::from_secs(1),
        latencies: Vec::new(),
    })
}

/// What one run of a task measured.
#[derive(Debug, Clone)]
pub enum Sample {
    /// The latency of every operation.
    Latencies(Vec<Duration>),
    /// A number of operations in a span of time.
    Work(Work),
    /// The time one operation took.
    Time(Duration),
}

/// How a task's samples turn into figures.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    /// Latencies, pooled over rounds; figures are percentiles.
    Latency,
    /// Operations per second; figure = median over rounds.
    Rate,
    /// Operations per second (median over rounds), plus percentiles of every operation's
    /// latency pooled over rounds.
    RateAndLatency,
    /// Time; figure = median over rounds.
    Time,
}

/// A step of a task: given a contender and a directory, do something.
pub type Step<'a, T> = Box<dyn Fn(&dyn Contender, &Path) -> Outcome<T> + 'a>;

/// One operation measured on every contender.
pub struct Task<'a> {
    /// Stable key used by the report (e.g. `threads-8`).
    pub key: String,
    /// Human title of the operation.
    pub title: String,
    /// Short name of the operation, for the chart.
    pub label: String,
    pub measure: Measure,
    /// Untimed input building, once per contender, into a pristine directory.
    pub prepare: Option<Step<'a, ()>>,
    /// The measured run.
    pub run: Step<'a, Sample>,
}

/// A contender's samples for one task: one entry per round, or why there are none.
pub type Samples = Result<Vec<Sample>, Skip>;

/// The outcome of one task over all rounds.
pub struct TaskResult {
    pub key: String,
    pub title: String,
    pub label: String,
    pub measure: Measure,
    /// In the order of the contender list.
    pub samples: Vec<(&'static str, Samples)>,
}

/// Runs every task round-robin over the contenders, in `scratch`.
pub fn run_all(
    tasks: &[Task<'_>],
    contenders: &[&dyn Contender],
    rounds: usize,
    scratch: &Path,
) -> io::Result<Vec<TaskResult>> {
    // samples[task][contender]
    let mut samples: Vec<Vec<Samples>> = tasks
        .iter()
        .map(|_| vec![Ok(Vec::new()); contenders.len()])
        .collect();
    let mut pristine: Vec<Vec<Option<PathBuf>>> =
        tasks.iter().map(|_| vec![None; contenders.len()]).collect();

    let started = Instant::now();
    for (t, task) in tasks.iter().enumerate() {
        let Some(prepare) = &task.prepare else {
            continue;
        };
        eprintln!(
            "[{:6.1} s] preparing: {}",
            started.elapsed().as_secs_f64(),
            task.title
        );
        for (c, contender) in contenders.iter().enumerate() {
            let dir = scratch.join(format!("pristine-{}-{c}", task.key));
            fs::create_dir_all(&dir)?;
            settle();
            match prepare(*contender, &dir) {
                Ok(()) => pristine[t][c] = Some(dir),
                Err(skip) => {
                    fs::remove_dir_all(&dir)?;
                    report_failure(*contender, &skip);
                    samples[t][c] = Err(skip);
                }
            }
        }
    }

    for round in 0..rounds {
        eprintln!(
            "[{:6.1} s] round {}/{rounds}",
            started.elapsed().as_secs_f64(),
            round + 1
        );
        for (t, task) in tasks.iter().enumerate() {
            for step in 0..contenders.len() {
                let c = (round + step) % contenders.len();
                if samples[t][c].is_err() {
                    continue;
                }
                let dir = scratch.join(format!("run-{}-{c}", task.key));
                match &pristine[t][c] {
                    Some(source) => copy_dir(source, &dir)?,
                    None => fs::create_dir_all(&dir)?,
                }
                settle();
                let outcome = (task.run)(contenders[c], &dir);
                fs::remove_dir_all(&dir)?;
                match (outcome, &mut samples[t][c]) {
                    (Ok(sample), Ok(so_far)) => so_far.push(sample),
                    (Err(skip), slot) => {
                        report_failure(contenders[c], &skip);
                        *slot = Err(skip);
                    }
                    (Ok(_), Err(_)) => unreachable!("skipped contenders do not run"),
                }
            }
        }
    }

    for dir in pristine.into_iter().flatten().flatten() {
        fs::remove_dir_all(dir)?;
    }

    Ok(tasks
        .iter()
        .zip(samples)
        .map(|(task, samples)| TaskResult {
            key: task.key.clone(),
            title: task.title.clone(),
            label: task.label.clone(),
            measure: task.measure,
            samples: contenders.iter().map(|c| c.name()).zip(samples).collect(),
        })
        .collect())
}

fn report_failure(contender: &dyn Contender, skip: &Skip) {
    if let Skip::Failed(error) = skip {
        eprintln!("    {}: {error}", contender.name());
    }
}

/// Writes back every dirty page of the machine so one run's write-back does not land in the
/// next run's fsyncs. Page-cache contents stay.
fn settle() {
    // SAFETY: sync(2) takes no arguments, touches no memory of ours and cannot fail.
    unsafe { libc::sync() };
}

/// Copies a directory tree (files and subdirectories only).
fn copy_dir(source: &Path, target: &Path) -> io::Result<()> {
    fs::create_dir_all(target)?;
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        let to = target.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), to)?;
        }
    }
    Ok(())
}

/// Runs `append` once untimed (a warm-up that may create files), then
/// `appends` more times, returning the latency of each timed call.
pub fn time_each<F>(appends: usize, mut append: F) -> Outcome<Vec<Duration>>
where
    F: FnMut() -> Outcome<()>,
{
    append()?;
    let mut latencies = Vec::with_capacity(appends);
    for _ in 0..appends {
        let start = Instant::now();
        append()?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

/// Runs `append` in a loop on `threads` threads that start together, until `run_for` has
/// passed; returns the appends completed, the wall time until the last thread stopped
/// (appends in flight at the deadline finish and count), and every append's latency.
pub fn append_for<F>(threads: usize, run_for: Duration, append: F) -> Outcome<Work>
where
    F: Fn() -> Outcome<()> + Sync,
{
    let barrier = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let mut latencies = Vec::with_capacity(1 << 16);
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        append()?;
                        latencies.push(start.elapsed());
                    }
                    Ok(latencies)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
        let mut all: Outcome<Vec<Duration>> = Ok(Vec::new());
        for handle in handles {
            let outcome = handle.join().expect("benchmark thread panicked");
            all = match (all, outcome) {
                (Ok(mut all), Ok(latencies)) => {
                    all.extend(latencies);
                    Ok(all)
                }
                (Err(error), _) | (Ok(_), Err(error)) => Err(error),
            };
        }
        let elapsed = start.elapsed();
        all.map(|latencies| Work {
            ops: latencies.len() as u64,
            elapsed,
            latencies,
        })
    })
}

/// Summary statistics of a set of values.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

impl Stats {
    /// Statistics of `values` (nearest-rank percentiles); `None` when empty.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let percentile = |pct: f64| {
            let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        Some(Stats {
            min: sorted[0],
            p50: percentile(50.0),
            p99: percentile(99.0),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            max: sorted[sorted.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let stats = Stats::of(&values).unwrap();
        assert_eq!(stats.p50, 50.0);
        assert_eq!(stats.p99, 99.0);
        assert_eq!(stats.min, 1.0);
        assert_eq!(stats.max, 100.0);
        assert_eq!(stats.mean, 50.5);
        assert_eq!(Stats::of(&[5.0, 1.0, 3.0]).unwrap().p50, 3.0);
        assert!(Stats::of(&[]).is_none());
    }
}
