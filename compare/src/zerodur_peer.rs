//! zerodur itself, driven through its public API with the same semantics as the peers:
//!
//! - durable append: `Wal::append_durable` (msync of the dirty range; group commit shares one
//!   barrier between threads);
//! - buffered append: `Wal::append` with the default `SyncPolicy::Manual` (the frame is copied
//!   into the shared mapping, i.e. handed to the OS page cache; no sync);
//! - replay: `WalReader::replay` in strict mode (every frame CRC-checked, payload borrowed from
//!   the mapping);
//! - checkpoints: `Checkpoint::write` (rkyv archive, one fdatasync, rename, one directory
//!   fsync) and `Checkpoint::load` (read-only mmap, header + payload CRC, rkyv checked
//!   access), scanning the archived pairs in place; blobs through `CheckpointBytes`;
//! - recovery: `recover_with_wal` (strict) over a checkpoint of the pairs and a WAL of
//!   rkyv-archived `Vec<u8>` entries, each validated with checked access;
//! - resume: `Wal::open` on a log with N sealed segments.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerodur::wal::{ReadMode, Wal, WalOptions, WalReader};
use zerodur::{Checkpoint, CheckpointBytes, Directory, FsDirectory};

use crate::harness::{
    append_for, expect_count, time_each, Contender, Outcome, ResumeLog, Skip, Work,
};

/// zerodur's name; the report's ratio columns are computed against it.
pub const NAME: &str = "zerodur";

const WAL_DIR: &str = "wal";
const CHECKPOINT_FILE: &str = "checkpoint.zdc";
const TAG: u64 = 0x5A44_5043;

/// The zerodur contender.
pub struct Zerodur;

fn open_dir(dir: &Path) -> Outcome<Arc<dyn Directory>> {
    FsDirectory::arc(dir).map_err(Skip::failed)
}

fn open_wal(dir: &Path) -> Outcome<Wal> {
    Wal::open(open_dir(dir)?, WalOptions::new(WAL_DIR)).map_err(Skip::failed)
}

/// XOR-folds every archived pair, read in place, so the scan cannot be optimised away.
fn scan(pairs: &rkyv::Archived<Vec<(u64, u64)>>) -> u64 {
    pairs.iter().fold(0u64, |sum, p| {
        sum.wrapping_add(p.0.to_native() ^ p.1.to_native())
    })
}

impl Contender for Zerodur {
    fn name(&self) -> &'static str {
        NAME
    }

    fn method(&self) -> &'static str {
        "Wal::append_durable (msync, group commit); Wal::append (buffered, Manual sync); \
         WalReader::replay (strict, zero-copy); Checkpoint::write / load (rkyv, CRC, checked \
         access, in-place scan); CheckpointBytes (blob); recover_with_wal (strict, archived \
         entries); Wal::open (resume)"
    }

    fn durable_append_latency(
        &self,
        dir: &Path,
        payload: &[u8],
        appends: usize,
    ) -> Outcome<Vec<Duration>> {
        let wal = open_wal(dir)?;
        time_each(appends, || {
            wal.append_durable(payload).map_err(Skip::failed)?;
            Ok(())
        })
    }

    fn durable_append_threads(
        &self,
        dir: &Path,
        payload: &[u8],
        threads: usize,
        run_for: Duration,
    ) -> Outcome<Work> {
        let wal = open_wal(dir)?;
        wal.append_durable(payload).map_err(Skip::failed)?; // warm-up
        let work = append_for(threads, run_for, || {
            wal.append_durable(payload).map_err(Skip::failed)?;
            Ok(())
        })?;
        let last = wal.last_entry_id().map_or(0, |e| e.get());
        expect_count("last entry id", last, work.ops + 1)?;
        Ok(work)
    }

    fn buffered_append(&self, dir: &Path, payload: &[u8], appends: usize) -> Outcome<Duration> {
        let wal = open_wal(dir)?;
        wal.append(payload).map_err(Skip::failed)?; // warm-up
        let start = Instant::now();
        for _ in 0..appends {
            wal.append(payload).map_err(Skip::failed)?;
        }
        wal.flush().map_err(Skip::failed)?;
        Ok(start.elapsed())
    }

    fn replay_prepare(&self, dir: &Path, payload: &[u8], entries: usize) -> Outcome<()> {
        let wal = open_wal(dir)?;
        for _ in 0..entries {
            wal.append(payload).map_err(Skip::failed)?;
        }
        wal.close().map_err(Skip::failed)
    }

    fn replay(&self, dir: &Path, entries: usize) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let start = Instant::now();
        let reader = WalReader::open(directory, WAL_DIR, ReadMode::Strict).map_err(Skip::failed)?;
        let mut bytes = 0usize;
        let summary = reader
            .replay(None, |_, payload| {
                bytes += payload.len();
                Ok(())
            })
            .map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        std::hint::black_box(bytes);
        expect_count("entries replayed", summary.entries, entries as u64)?;
        Ok(elapsed)
    }

    fn checkpoint_write_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let owned = pairs.to_vec();
        let start = Instant::now();
        Checkpoint::write(&*directory, CHECKPOINT_FILE, TAG, Some(0), &owned)
            .map_err(Skip::failed)?;
        Ok(start.elapsed())
    }

    fn checkpoint_prepare_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<()> {
        Checkpoint::write(
            &*open_dir(dir)?,
            CHECKPOINT_FILE,
            TAG,
            Some(0),
            &pairs.to_vec(),
        )
        .map_err(Skip::failed)
    }

    fn checkpoint_load_pairs(&self, dir: &Path, pairs: usize) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let start = Instant::now();
        let loaded = Checkpoint::<Vec<(u64, u64)>>::load(&*directory, CHECKPOINT_FILE, TAG)
            .map_err(Skip::failed)?;
        std::hint::black_box(scan(&loaded));
        let elapsed = start.elapsed();
        expect_count("pairs loaded", loaded.len() as u64, pairs as u64)?;
        Ok(elapsed)
    }

    fn checkpoint_write_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let start = Instant::now();
        CheckpointBytes::write(&*directory, CHECKPOINT_FILE, TAG, Some(0), blob)
            .map_err(Skip::failed)?;
        Ok(start.elapsed())
    }

    fn checkpoint_prepare_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<()> {
        CheckpointBytes::write(&*open_dir(dir)?, CHECKPOINT_FILE, TAG, Some(0), blob)
            .map_err(Skip::failed)
    }

    fn checkpoint_load_blob(&self, dir: &Path, blob_bytes: usize) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let start = Instant::now();
        let loaded =
            CheckpointBytes::load(&*directory, CHECKPOINT_FILE, TAG).map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        expect_count("blob bytes", loaded.len() as u64, blob_bytes as u64)?;
        Ok(elapsed)
    }

    fn recovery_prepare(
        &self,
        dir: &Path,
        pairs: &[(u64, u64)],
        payload: &[u8],
        entries: usize,
    ) -> Outcome<()> {
        let directory = open_dir(dir)?;
        directory
            .create_dir_all("checkpoints")
            .map_err(Skip::failed)?;
        let name = zerodur::CheckpointName::new(Some(0));
        Checkpoint::write(
            &*directory,
            &name.path_in("checkpoints"),
            TAG,
            Some(0),
            &pairs.to_vec(),
        )
        .map_err(Skip::failed)?;
        let wal = open_wal(dir)?;
        let entry = payload.to_vec();
        for _ in 0..entries {
            wal.append_archived(&entry).map_err(Skip::failed)?;
        }
        wal.close().map_err(Skip::failed)
    }

    fn recovery(&self, dir: &Path, pairs: usize, entries: usize) -> Outcome<Duration> {
        use zerodur::recover::{recover_with_wal, RecoveryOptions};
        let directory = open_dir(dir)?;
        let start = Instant::now();
        let recovered = recover_with_wal::<Vec<(u64, u64)>, Vec<u8>, _, _, _>(
            &directory,
            &RecoveryOptions::strict().tag(TAG),
            |checkpoint| {
                let loaded = checkpoint.map_or(0, |c| c.len() as u64);
                let sum = checkpoint.map_or(0, scan);
                (loaded, sum, 0u64)
            },
            |(_, sum, applied), _id, entry| {
                *sum = sum.wrapping_add(entry.len() as u64);
                *applied += 1;
            },
        )
        .map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        let (loaded, sum, applied) = recovered.state;
        std::hint::black_box(sum);
        expect_count("pairs loaded", loaded, pairs as u64)?;
        expect_count("entries applied", applied, entries as u64)?;
        Ok(elapsed)
    }

    fn resume_prepare(&self, dir: &Path, log: ResumeLog) -> Outcome<()> {
        let opts = WalOptions::new(WAL_DIR).segment_size_bytes(log.segment_bytes);
        let wal = Wal::open(open_dir(dir)?, opts).map_err(Skip::failed)?;
        let entry = vec![0x42; log.entry_bytes];
        let active = log.sealed_segments as u64 + 1;
        while wal.active_segment().get() < active {
            wal.append(&entry).map_err(Skip::failed)?;
        }
        let half = log.segment_bytes / 2 / (log.entry_bytes as u64 + 32);
        for _ in 0..half {
            wal.append(&entry).map_err(Skip::failed)?;
        }
        wal.close().map_err(Skip::failed)
    }

    fn resume(&self, dir: &Path, log: ResumeLog) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let opts = WalOptions::new(WAL_DIR).segment_size_bytes(log.segment_bytes);
        let start = Instant::now();
        let wal = Wal::open(directory, opts).map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        if wal.last_entry_id().is_none() {
            return Err(Skip::Failed("resumed an empty log".to_string()));
        }
        Ok(elapsed)
    }
}
