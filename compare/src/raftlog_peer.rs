//! raft-log 0.4 (the log store of Databend's meta service), through its public API with its
//! defaults unless noted.
//!
//! raft-log stores a raft log: entries keyed by `(term, index)`, the vote, the committed id
//! and a small user-data value. `RaftLog::append` and `RaftLog::flush` take `&mut self`: one
//! writer. `append` only encodes records into the open chunk's pending buffer; `flush(sync,
//! callback)` hands that buffer to a flush worker thread, which writes it to the chunk file,
//! `fdatasync`s it when `sync` is set, and then calls the callback. The worker takes every
//! request queued behind the one it woke for into the same write and sync: that is its group
//! commit.
//!
//! The worker's batch is a time window: after the request it woke for, it takes whatever
//! arrives for `flush_batch_wait` (1 ms by default), and with a zero wait it takes nothing
//! more, so each sync then covers one request.
//!
//! - Durable append, one writer: `append` of one entry, `flush(true, Some(callback))`, then a
//!   wait on the callback (a `SyncSender`, as in raft-log's README). `flush_batch_wait` is
//!   set to zero: with one writer nobody else can join a batch, and the default would add
//!   1 ms to every append.
//! - Threads: the way a raft log store serves several callers (openraft's `append(entries,
//!   callback)`): one `RaftLog` behind a mutex; each thread, under the mutex, takes the next
//!   index, appends its entry and calls `flush(true, Some(callback))`, then releases the mutex
//!   and waits on its callback. `flush_batch_wait` keeps its 1 ms default, the group-commit
//!   window, for every thread count (1 included), so the entries of the threads that flush
//!   within the window share one `fdatasync`.
//! - Buffered append: `append` of each entry (the payload is moved in, so each append gets its
//!   own copy), then one `flush(false, None)` and `wait_worker_idle`: the bytes are written to
//!   the OS file, not synced.
//! - Replay: `RaftLog::open` (which reads every chunk and rebuilds the log map, keeping
//!   payloads in its cache up to 100 k entries / 1 GiB), then `RaftLog::read` of every entry.
//! - Checkpoints and recovery from a checkpoint: none; snapshots of the state machine are the
//!   caller's.
//! - Resume: `RaftLog::open` on a log of N closed chunks (`chunk_max_size` = the segment size)
//!   and a half-full open one. Open replays every chunk.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::{Config, RaftLog, Types};

use crate::harness::{
    append_for, expect_count, no_checkpoints, time_each, Contender, Outcome, ResumeLog, Skip, Work,
};

/// The subdirectory holding the log (its chunk files and lock file).
const LOG_DIR: &str = "raft-log";

/// The term every entry carries.
const TERM: u64 = 1;

/// Entries per `append` call when building input logs (setup only).
const FILL_BATCH: usize = 1024;

/// How often, in appends, setup checks how many chunks have closed.
const CHUNK_CHECK_EVERY: u64 = 16;

/// Per-record bytes raft-log adds to a payload (record type, log id, length, checksum):
/// only used to size the half-full active chunk of resume logs.
const RECORD_OVERHEAD_BYTES: u64 = 48;

const NO_CHECKPOINTS: &str = "no checkpoint API: raft-log keeps the raft log, vote and a \
     small user-data value; snapshots of the state are the caller's";

/// The raft-log contender.
pub struct RaftLogPeer;

/// raft-log's type parameters: `(term, index)` ids and byte payloads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Entries;

impl Types for Entries {
    type LogId = (u64, u64);
    type LogPayload = Vec<u8>;
    type Vote = (u64, u64);
    type Callback = SyncSender<io::Result<()>>;
    type UserData = String;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        payload.len() as u64
    }
}

type Log = RaftLog<Entries>;

/// How long the flush worker waits for more requests to join a batch.
#[derive(Clone, Copy)]
enum BatchWait {
    /// raft-log's default (1 ms): its group-commit window.
    Default,
    /// No wait: for a single writer, whom nobody can join.
    Zero,
}

/// A configuration for the log under `dir`, with chunks of `chunk_bytes` when given.
fn config(dir: &Path, chunk_bytes: Option<u64>, wait: BatchWait) -> Outcome<Arc<Config>> {
    let dir = dir.join(LOG_DIR);
    fs::create_dir_all(&dir)?;
    let path = dir
        .to_str()
        .ok_or_else(|| Skip::Failed(format!("{} is not UTF-8", dir.display())))?;
    let mut config = Config::new(path);
    if let BatchWait::Zero = wait {
        config.wal.flush_batch_wait = Some(Duration::ZERO);
    }
    if let Some(bytes) = chunk_bytes {
        let bytes = usize::try_from(bytes).map_err(Skip::failed)?;
        config.wal.chunk_max_size = Some(bytes);
    }
    Ok(Arc::new(config))
}

fn open(dir: &Path, chunk_bytes: Option<u64>, wait: BatchWait) -> Outcome<Log> {
    Ok(Log::open(config(dir, chunk_bytes, wait)?)?)
}

/// Appends one entry and asks for it to be made durable; the receiver gets the outcome.
fn append_durable(log: &mut Log, index: u64, payload: &[u8]) -> io::Result<FlushDone> {
    log.append([((TERM, index), payload.to_vec())])?;
    let (tx, rx) = sync_channel(1);
    log.flush(true, Some(tx))?;
    Ok(FlushDone(rx))
}

/// The callback side of one `flush(true, Some(callback))`.
struct FlushDone(Receiver<io::Result<()>>);

impl FlushDone {
    /// Waits until the flush worker has synced the entry (or failed to).
    fn wait(self) -> Outcome<()> {
        self.0
            .recv()
            .map_err(|_| Skip::Failed("the flush worker dropped a callback".to_string()))??;
        Ok(())
    }
}

/// The index after the last entry, or 1 for an empty log.
fn next_index(log: &Log) -> u64 {
    log.log_state().last().map_or(1, |(_, index)| index + 1)
}

/// Appends `entries` entries in batches and makes them durable (setup only).
fn fill(log: &mut Log, payload: &[u8], entries: usize) -> Outcome<()> {
    let mut index = next_index(log);
    let mut left = entries;
    while left > 0 {
        let batch = left.min(FILL_BATCH);
        log.append((index..index + batch as u64).map(|i| ((TERM, i), payload.to_vec())))?;
        index += batch as u64;
        left -= batch;
    }
    sync(log)
}

/// Flushes and syncs everything appended so far, and waits for it.
fn sync(log: &mut Log) -> Outcome<()> {
    let (tx, rx) = sync_channel(1);
    log.flush(true, Some(tx))?;
    FlushDone(rx).wait()
}

/// Reads every entry of `log` and returns how many there were.
fn read_all(log: &Log) -> Outcome<u64> {
    let Some(&(_, last)) = log.log_state().last() else {
        return Ok(0);
    };
    let mut count = 0u64;
    let mut bytes = 0usize;
    for entry in log.read(0, last + 1) {
        let (_, payload) = entry?;
        bytes += payload.len();
        count += 1;
    }
    std::hint::black_box(bytes);
    Ok(count)
}

/// A log shared by threads, with the index its next entry gets.
struct Shared {
    log: Log,
    next: u64,
}

impl Contender for RaftLogPeer {
    fn name(&self) -> &'static str {
        "raft-log 0.4"
    }

    fn method(&self) -> &'static str {
        "append + flush(sync, callback) and a wait on the callback (durable, one writer: \
         flush_batch_wait 0, as nobody can join its batches); threads: one RaftLog behind a \
         mutex (it takes &mut self: one writer at a time), each thread appends and flushes \
         under it and waits on its callback outside it, with the default 1 ms \
         flush_batch_wait, the window in which the flush worker gathers requests into one \
         fdatasync (its group commit; with a zero wait each sync covers one request); \
         append each entry + one flush(no sync) + wait_worker_idle \
         (buffered); RaftLog::open + read of every entry (replay); RaftLog::open on N closed \
         chunks (resume; open replays every chunk); no checkpoints"
    }

    fn durable_append_latency(
        &self,
        dir: &Path,
        payload: &[u8],
        appends: usize,
    ) -> Outcome<Vec<Duration>> {
        let mut log = open(dir, None, BatchWait::Zero)?;
        let mut index = next_index(&log);
        let latencies = time_each(appends, || {
            append_durable(&mut log, index, payload)?.wait()?;
            index += 1;
            Ok(())
        })?;
        expect_count("last index", next_index(&log) - 1, appends as u64 + 1)?;
        Ok(latencies)
    }

    fn durable_append_threads(
        &self,
        dir: &Path,
        payload: &[u8],
        threads: usize,
        run_for: Duration,
    ) -> Outcome<Work> {
        let mut log = open(dir, None, BatchWait::Default)?;
        append_durable(&mut log, 1, payload)?.wait()?; // warm-up
        let shared = Mutex::new(Shared { log, next: 2 });
        let work = append_for(threads, run_for, || {
            let done = {
                let mut guard = shared.lock().expect("raft-log mutex poisoned");
                let Shared { log, next } = &mut *guard;
                let done = append_durable(log, *next, payload)?;
                *next += 1;
                done
            };
            done.wait()
        })?;
        let shared = shared.into_inner().expect("raft-log mutex poisoned");
        expect_count("last index", shared.next - 1, work.ops + 1)?;
        Ok(work)
    }

    fn buffered_append(&self, dir: &Path, payload: &[u8], appends: usize) -> Outcome<Duration> {
        let mut log = open(dir, None, BatchWait::Default)?;
        append_durable(&mut log, 1, payload)?.wait()?; // warm-up
        let start = Instant::now();
        for index in 2..appends as u64 + 2 {
            log.append([((TERM, index), payload.to_vec())])?;
        }
        log.flush(false, None)?;
        log.wait_worker_idle()?;
        Ok(start.elapsed())
    }

    fn replay_prepare(&self, dir: &Path, payload: &[u8], entries: usize) -> Outcome<()> {
        fill(&mut open(dir, None, BatchWait::Default)?, payload, entries)
    }

    fn replay(&self, dir: &Path, entries: usize) -> Outcome<Duration> {
        let config = config(dir, None, BatchWait::Default)?;
        let start = Instant::now();
        let log = Log::open(config)?;
        let count = read_all(&log)?;
        let elapsed = start.elapsed();
        expect_count("entries replayed", count, entries as u64)?;
        Ok(elapsed)
    }

    no_checkpoints!(NO_CHECKPOINTS);

    fn resume_prepare(&self, dir: &Path, log: ResumeLog) -> Outcome<()> {
        let mut raft_log = open(dir, Some(log.segment_bytes), BatchWait::Default)?;
        let entry = vec![0x42; log.entry_bytes];
        let mut index = 1u64;
        loop {
            if index.is_multiple_of(CHUNK_CHECK_EVERY)
                && raft_log.stat().closed_chunks.len() >= log.sealed_segments
            {
                break;
            }
            raft_log.append([((TERM, index), entry.clone())])?;
            index += 1;
        }
        let half = log.segment_bytes / 2 / (log.entry_bytes as u64 + RECORD_OVERHEAD_BYTES);
        fill(&mut raft_log, &entry, half as usize)?;
        expect_count(
            "closed chunks",
            raft_log.stat().closed_chunks.len() as u64,
            log.sealed_segments as u64,
        )
    }

    fn resume(&self, dir: &Path, log: ResumeLog) -> Outcome<Duration> {
        let config = config(dir, Some(log.segment_bytes), BatchWait::Default)?;
        let start = Instant::now();
        let raft_log = Log::open(config)?;
        let elapsed = start.elapsed();
        if raft_log.log_state().last().is_none() {
            return Err(Skip::Failed("resumed an empty log".to_string()));
        }
        Ok(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("raftlog-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replay_reads_back_every_filled_entry() {
        let dir = scratch("replay");
        RaftLogPeer.replay_prepare(&dir, &[9u8; 100], 500).unwrap();
        RaftLogPeer.replay(&dir, 500).unwrap();
        assert!(matches!(
            RaftLogPeer.replay(&dir, 501),
            Err(Skip::Failed(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_log_has_the_requested_closed_chunks() {
        let dir = scratch("resume");
        let log = ResumeLog {
            sealed_segments: 3,
            segment_bytes: 64 << 10,
            entry_bytes: 1024,
        };
        RaftLogPeer.resume_prepare(&dir, log).unwrap();
        let reopened = open(&dir, Some(log.segment_bytes), BatchWait::Default).unwrap();
        assert_eq!(reopened.stat().closed_chunks.len(), 3);
        let last = next_index(&reopened) - 1;
        let per_chunk = log.segment_bytes / log.entry_bytes as u64;
        assert!(
            last > 3 * per_chunk && last < 4 * per_chunk,
            "{last} entries; a chunk holds about {per_chunk}"
        );
        drop(reopened);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn threads_append_every_entry_durably() {
        let dir = scratch("threads");
        let work = RaftLogPeer
            .durable_append_threads(&dir, &[7u8; 128], 4, Duration::from_millis(50))
            .unwrap();
        assert!(work.ops > 0);
        let reopened = open(&dir, None, BatchWait::Default).unwrap();
        assert_eq!(next_index(&reopened) - 1, work.ops + 1);
        drop(reopened);
        fs::remove_dir_all(&dir).unwrap();
    }
}
