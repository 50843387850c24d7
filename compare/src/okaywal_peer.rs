//! okaywal 0.3, through its public API with its defaults unless noted.
//!
//! - Durable append: `WriteAheadLog::begin_entry`, `EntryWriter::write_chunk(payload)`,
//!   `EntryWriter::commit` (commit returns once the entry is fdatasync'ed; concurrent
//!   committers share one sync, done outside the file lock).
//! - Threads: clones of one `WriteAheadLog`, each thread appending as above.
//! - Buffered append: none. Every commit syncs, and there is no commit without it.
//! - Replay: reopen (`Configuration::open`) with a `LogManager` whose `recover` reads every
//!   entry's chunks (`Entry::read_all_chunks`, which checks each chunk's CRC). The log is
//!   written with `checkpoint_after_bytes(u64::MAX)` so no entry is checkpointed away first.
//! - Checkpoints and recovery from a checkpoint: none. okaywal hands sealed segments to
//!   `LogManager::checkpoint_to` and the caller keeps its state elsewhere.
//! - Resume: reopen with a manager that skips entries. okaywal checkpoints sealed segments in
//!   the background and recycles their files, so a log never holds N sealed, unreplayed
//!   segments: the same volume of entries is written with `preallocate_bytes` and
//!   `checkpoint_after_bytes` set to the segment size, and reopen replays what is left.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use okaywal::{Configuration, Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};

use crate::harness::{
    append_for, expect_count, no_checkpoints, time_each, Contender, Outcome, ResumeLog, Skip, Work,
};

/// Writer threads used to build input logs quickly through group commit (setup only).
const FILL_THREADS: usize = 64;

/// okaywal's per-entry framing: entry marker + id, chunk marker + length, CRC, end marker.
const ENTRY_OVERHEAD_BYTES: u64 = 1 + 8 + 1 + 4 + 4 + 1;

const NO_CHECKPOINTS: &str = "no checkpoint API: okaywal hands sealed segments to \
     LogManager::checkpoint_to and the caller keeps its state elsewhere";

/// The okaywal contender.
pub struct Okaywal;

/// Recovers nothing and accepts every checkpoint (the caller "has" the data elsewhere).
#[derive(Debug)]
struct SkipEntries;

impl LogManager for SkipEntries {
    fn recover(&mut self, _entry: &mut Entry<'_>) -> io::Result<()> {
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// Reads every recovered entry in full and counts entries and bytes.
#[derive(Debug, Default, Clone)]
struct ReadEveryEntry {
    entries: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl LogManager for ReadEveryEntry {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            let bytes: usize = chunks.iter().map(Vec::len).sum();
            self.entries.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

fn append(wal: &WriteAheadLog, payload: &[u8]) -> io::Result<()> {
    let mut entry = wal.begin_entry()?;
    entry.write_chunk(payload)?;
    entry.commit()?;
    Ok(())
}

/// Appends `entries` durable entries from [`FILL_THREADS`] threads (setup only: group commit
/// makes it far faster than one writer), then shuts the log down.
fn fill(wal: WriteAheadLog, payload: &[u8], entries: usize) -> Outcome<()> {
    let threads = FILL_THREADS.min(entries.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let share = entries / threads + usize::from(thread < entries % threads);
                let wal = wal.clone();
                scope.spawn(move || (0..share).try_for_each(|_| append(&wal, payload)))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|handle| handle.join().expect("fill thread panicked"))
    })?;
    wal.shutdown()?;
    Ok(())
}

fn replay_config(dir: &Path) -> Configuration {
    Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX)
}

/// Segments of `log.segment_bytes`, checkpointed once full.
fn resume_config(dir: &Path, log: ResumeLog) -> Outcome<Configuration> {
    let segment_bytes = u32::try_from(log.segment_bytes)
        .map_err(|_| Skip::Failed("segment size exceeds okaywal's u32".to_string()))?;
    Ok(Configuration::default_for(dir)
        .preallocate_bytes(segment_bytes)
        .checkpoint_after_bytes(log.segment_bytes))
}

impl Contender for Okaywal {
    fn name(&self) -> &'static str {
        "okaywal 0.3"
    }

    fn method(&self) -> &'static str {
        "begin_entry + write_chunk + commit (durable); WriteAheadLog clones across threads; \
         reopen with a LogManager reading every entry (Entry::read_all_chunks) for replay; \
         reopen with a LogManager skipping entries for resume; no buffered append, \
         no checkpoints"
    }

    fn durable_append_latency(
        &self,
        dir: &Path,
        payload: &[u8],
        appends: usize,
    ) -> Outcome<Vec<Duration>> {
        let wal = Configuration::default_for(dir).open(SkipEntries)?;
        let latencies = time_each(appends, || Ok(append(&wal, payload)?))?;
        wal.shutdown()?;
        Ok(latencies)
    }

    fn durable_append_threads(
        &self,
        dir: &Path,
        payload: &[u8],
        threads: usize,
        run_for: Duration,
    ) -> Outcome<Work> {
        let wal = Configuration::default_for(dir).open(SkipEntries)?;
        append(&wal, payload)?; // warm-up
        let work = append_for(threads, run_for, || Ok(append(&wal, payload)?))?;
        wal.shutdown()?;
        Ok(work)
    }

    fn buffered_append(&self, _dir: &Path, _payload: &[u8], _appends: usize) -> Outcome<Duration> {
        Err(Skip::Unsupported(
            "every commit fdatasyncs; there is no buffered append",
        ))
    }

    fn replay_prepare(&self, dir: &Path, payload: &[u8], entries: usize) -> Outcome<()> {
        fill(replay_config(dir).open(SkipEntries)?, payload, entries)
    }

    fn replay(&self, dir: &Path, entries: usize) -> Outcome<Duration> {
        let manager = ReadEveryEntry::default();
        let start = Instant::now();
        let wal = replay_config(dir).open(manager.clone())?;
        let elapsed = start.elapsed();
        wal.shutdown()?;
        let replayed = manager.entries.load(Ordering::Relaxed);
        std::hint::black_box(manager.bytes.load(Ordering::Relaxed));
        expect_count("entries replayed", replayed, entries as u64)?;
        Ok(elapsed)
    }

    no_checkpoints!(NO_CHECKPOINTS);

    fn resume_prepare(&self, dir: &Path, log: ResumeLog) -> Outcome<()> {
        let wal = resume_config(dir, log)?.open(SkipEntries)?;
        let volume = (2 * log.sealed_segments as u64 + 1) * log.segment_bytes / 2;
        let entries = volume / (log.entry_bytes as u64 + ENTRY_OVERHEAD_BYTES);
        fill(wal, &vec![0x42; log.entry_bytes], entries as usize)
    }

    fn resume(&self, dir: &Path, log: ResumeLog) -> Outcome<Duration> {
        let config = resume_config(dir, log)?;
        let start = Instant::now();
        let wal = config.open(SkipEntries)?;
        let elapsed = start.elapsed();
        wal.shutdown()?;
        Ok(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_log_leaves_only_the_active_half_segment_to_replay() {
        let dir = std::env::temp_dir().join(format!("okaywal-resume-test-{}", std::process::id()));
        let log = ResumeLog {
            sealed_segments: 4,
            segment_bytes: 64 << 10,
            entry_bytes: 1024,
        };
        Okaywal.resume_prepare(&dir, log).unwrap();
        let manager = ReadEveryEntry::default();
        resume_config(&dir, log)
            .unwrap()
            .open(manager.clone())
            .unwrap()
            .shutdown()
            .unwrap();
        let replayed = manager.entries.load(Ordering::Relaxed);
        let per_segment = log.segment_bytes / (log.entry_bytes as u64 + ENTRY_OVERHEAD_BYTES);
        assert!(
            replayed > 0 && replayed <= per_segment,
            "replayed {replayed} entries; one segment holds {per_segment}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replay_reads_back_every_filled_entry() {
        let dir = std::env::temp_dir().join(format!("okaywal-replay-test-{}", std::process::id()));
        Okaywal.replay_prepare(&dir, &[9u8; 100], 500).unwrap();
        Okaywal.replay(&dir, 500).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
