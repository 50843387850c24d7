//! durability 0.6.1, through its public API with its defaults unless noted.
//!
//! - Entries are a byte-string newtype ([`Bytes`]) that postcard encodes as length + raw
//!   bytes (`serialize_bytes`), the cheapest encoding its serde-typed WAL allows.
//! - Durable append: `WalWriter::append` + `WalWriter::flush_and_sync` (fdatasync of the
//!   segment plus an fsync of its directory, on every call).
//! - Threads: one `SyncWalWriter` shared by all, `SyncWalWriter::append_durable` (it syncs
//!   under its mutex; a caller whose entry an earlier sync already covered skips its own).
//! - Buffered append: `WalWriter::new` (64 KiB buffer, `FlushPolicy::EveryN(64)`),
//!   `append` each entry, then one `flush` (write to the OS, no sync).
//! - Replay: `WalReader::replay_each` (streaming, strict).
//! - Checkpoints: `CheckpointFile::write_postcard_durable` / `read_postcard`.
//! - Recovery: `recover::recover_with_wal` with `RecoveryOptions::strict()`.
//! - Resume: `WalWriter::open` on a log with small segments
//!   (`set_segment_size_limit_bytes`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durability::checkpoint::CheckpointFile;
use durability::recover::{recover_with_wal, RecoveryOptions};
use durability::storage::{Directory, FsDirectory};
use durability::walog::{SyncWalWriter, WalReader, WalWriter};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::harness::{
    append_for, expect_count, time_each, Contender, Outcome, ResumeLog, Skip, Work,
};

const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// The durability 0.6.1 contender.
pub struct Durability;

/// An owned byte string that serde encodes as bytes rather than as a sequence of `u8`.
#[derive(Debug, Clone)]
pub struct Bytes(pub Vec<u8>);

/// A borrowed byte string encoded like [`Bytes`], so writing needs no copy.
struct BytesRef<'a>(&'a [u8]);

/// Borrowed pairs; postcard encodes a newtype as its content, so it reads back as a `Vec`.
#[derive(Serialize)]
struct PairsRef<'a>(&'a [(u64, u64)]);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a byte string")
    }

    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(bytes.to_vec()))
    }

    fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(bytes))
    }
}

fn open_dir(dir: &Path) -> Outcome<Arc<dyn Directory>> {
    FsDirectory::arc(dir).map_err(Skip::failed)
}

/// XOR-folds every pair so the scan cannot be optimised away.
fn scan(pairs: &[(u64, u64)]) -> u64 {
    pairs
        .iter()
        .fold(0u64, |sum, (key, value)| sum.wrapping_add(key ^ value))
}

/// Writes `entries` entries through the buffered writer and makes them durable.
fn write_wal(dir: Arc<dyn Directory>, payload: &[u8], entries: usize) -> Outcome<()> {
    let mut writer = WalWriter::<Bytes>::new(dir);
    let entry = Bytes(payload.to_vec());
    for _ in 0..entries {
        writer.append(&entry).map_err(Skip::failed)?;
    }
    writer.flush_and_sync().map_err(Skip::failed)
}

impl Contender for Durability {
    fn name(&self) -> &'static str {
        "durability 0.6.1"
    }

    fn method(&self) -> &'static str {
        "WalWriter::append + flush_and_sync; SyncWalWriter::append_durable (threads); \
         WalWriter::new (64 KiB buffer, EveryN(64)) + append + flush (buffered); \
         WalReader::replay_each; CheckpointFile::write_postcard_durable / read_postcard; \
         recover_with_wal (strict); WalWriter::open (resume)"
    }

    fn durable_append_latency(
        &self,
        dir: &Path,
        payload: &[u8],
        appends: usize,
    ) -> Outcome<Vec<Duration>> {
        let mut writer = WalWriter::<Bytes>::open(open_dir(dir)?).map_err(Skip::failed)?;
        let entry = Bytes(payload.to_vec());
        let append = || -> Outcome<()> {
            writer.append(&entry).map_err(Skip::failed)?;
            writer.flush_and_sync().map_err(Skip::failed)
        };
        time_each(appends, append)
    }

    fn durable_append_threads(
        &self,
        dir: &Path,
        payload: &[u8],
        threads: usize,
        run_for: Duration,
    ) -> Outcome<Work> {
        let writer = SyncWalWriter::<Bytes>::open(open_dir(dir)?).map_err(Skip::failed)?;
        let entry = Bytes(payload.to_vec());
        writer.append_durable(&entry).map_err(Skip::failed)?; // warm-up
        let work = append_for(threads, run_for, || {
            writer.append_durable(&entry).map_err(Skip::failed)?;
            Ok(())
        })?;
        expect_count(
            "last entry id",
            writer.last_entry_id().unwrap_or(0),
            work.ops + 1,
        )?;
        Ok(work)
    }

    fn buffered_append(&self, dir: &Path, payload: &[u8], appends: usize) -> Outcome<Duration> {
        let mut writer = WalWriter::<Bytes>::new(open_dir(dir)?);
        let entry = Bytes(payload.to_vec());
        writer.append(&entry).map_err(Skip::failed)?; // warm-up: creates the first segment
        let start = Instant::now();
        for _ in 0..appends {
            writer.append(&entry).map_err(Skip::failed)?;
        }
        writer.flush().map_err(Skip::failed)?;
        Ok(start.elapsed())
    }

    fn replay_prepare(&self, dir: &Path, payload: &[u8], entries: usize) -> Outcome<()> {
        write_wal(open_dir(dir)?, payload, entries)
    }

    fn replay(&self, dir: &Path, entries: usize) -> Outcome<Duration> {
        let reader = WalReader::<Bytes>::new(open_dir(dir)?);
        let mut bytes = 0usize;
        let start = Instant::now();
        let count = reader
            .replay_each(|record| {
                bytes += record.payload.0.len();
                Ok(())
            })
            .map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        std::hint::black_box(bytes);
        expect_count("entries replayed", count, entries as u64)?;
        Ok(elapsed)
    }

    fn checkpoint_write_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<Duration> {
        let checkpoints = CheckpointFile::new(open_dir(dir)?);
        let start = Instant::now();
        checkpoints
            .write_postcard_durable(CHECKPOINT_FILE, 0, &PairsRef(pairs))
            .map_err(Skip::failed)?;
        Ok(start.elapsed())
    }

    fn checkpoint_prepare_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<()> {
        CheckpointFile::new(open_dir(dir)?)
            .write_postcard_durable(CHECKPOINT_FILE, 0, &PairsRef(pairs))
            .map_err(Skip::failed)
    }

    fn checkpoint_load_pairs(&self, dir: &Path, pairs: usize) -> Outcome<Duration> {
        let checkpoints = CheckpointFile::new(open_dir(dir)?);
        let start = Instant::now();
        let (_, loaded): (u64, Vec<(u64, u64)>) = checkpoints
            .read_postcard(CHECKPOINT_FILE)
            .map_err(Skip::failed)?;
        std::hint::black_box(scan(&loaded));
        let elapsed = start.elapsed();
        expect_count("pairs loaded", loaded.len() as u64, pairs as u64)?;
        Ok(elapsed)
    }

    fn checkpoint_write_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<Duration> {
        let checkpoints = CheckpointFile::new(open_dir(dir)?);
        let start = Instant::now();
        checkpoints
            .write_postcard_durable(CHECKPOINT_FILE, 0, &BytesRef(blob))
            .map_err(Skip::failed)?;
        Ok(start.elapsed())
    }

    fn checkpoint_prepare_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<()> {
        CheckpointFile::new(open_dir(dir)?)
            .write_postcard_durable(CHECKPOINT_FILE, 0, &BytesRef(blob))
            .map_err(Skip::failed)
    }

    fn checkpoint_load_blob(&self, dir: &Path, blob_bytes: usize) -> Outcome<Duration> {
        let checkpoints = CheckpointFile::new(open_dir(dir)?);
        let start = Instant::now();
        let (_, loaded): (u64, Bytes) = checkpoints
            .read_postcard(CHECKPOINT_FILE)
            .map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        expect_count("blob bytes", loaded.0.len() as u64, blob_bytes as u64)?;
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
        CheckpointFile::new(directory.clone())
            .write_postcard_durable(CHECKPOINT_FILE, 0, &PairsRef(pairs))
            .map_err(Skip::failed)?;
        write_wal(directory, payload, entries)
    }

    fn recovery(&self, dir: &Path, pairs: usize, entries: usize) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let start = Instant::now();
        let recovered = recover_with_wal::<Vec<(u64, u64)>, Bytes, _>(
            &directory,
            Some(CHECKPOINT_FILE),
            RecoveryOptions::strict(),
            |checkpoint| {
                let loaded = checkpoint.unwrap_or_default();
                let sum = scan(&loaded);
                (loaded, sum, 0u64)
            },
            |(_, sum, applied), _id, entry| {
                *sum = sum.wrapping_add(entry.0.len() as u64);
                *applied += 1;
            },
        )
        .map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        let (loaded, sum, applied) = recovered.state;
        std::hint::black_box(sum);
        expect_count("pairs loaded", loaded.len() as u64, pairs as u64)?;
        expect_count("entries applied", applied, entries as u64)?;
        Ok(elapsed)
    }

    fn resume_prepare(&self, dir: &Path, log: ResumeLog) -> Outcome<()> {
        let mut writer = WalWriter::<Bytes>::new(open_dir(dir)?);
        writer.set_segment_size_limit_bytes(log.segment_bytes);
        let entry = Bytes(vec![0x42; log.entry_bytes]);
        let active = log.sealed_segments as u64 + 1;
        while writer.current_segment_id() < active
            || writer.current_segment_bytes() < log.segment_bytes / 2
        {
            writer.append(&entry).map_err(Skip::failed)?;
        }
        writer.flush_and_sync().map_err(Skip::failed)
    }

    fn resume(&self, dir: &Path, _log: ResumeLog) -> Outcome<Duration> {
        let directory = open_dir(dir)?;
        let start = Instant::now();
        let writer = WalWriter::<Bytes>::open(directory).map_err(Skip::failed)?;
        let elapsed = start.elapsed();
        if writer.last_entry_id().is_none() {
            return Err(Skip::Failed("resumed an empty log".to_string()));
        }
        Ok(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use durability::storage::MemoryDirectory;

    #[test]
    fn byte_entries_round_trip_through_the_wal() {
        let dir = MemoryDirectory::arc();
        let mut writer = WalWriter::<Bytes>::new(dir.clone());
        writer.append(&Bytes(vec![1, 2, 3])).unwrap();
        writer.append(&Bytes(Vec::new())).unwrap();
        writer.flush().unwrap();
        drop(writer);
        let records = WalReader::<Bytes>::new(dir).replay().unwrap();
        let payloads: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload.0).collect();
        assert_eq!(payloads, vec![vec![1, 2, 3], Vec::new()]);
    }

    #[test]
    fn borrowed_pairs_read_back_as_a_vec() {
        let dir = MemoryDirectory::arc();
        let checkpoints = CheckpointFile::new(dir);
        let pairs = [(1u64, 2u64), (u64::MAX, 0)];
        checkpoints
            .write_postcard("c.bin", 7, &PairsRef(&pairs))
            .unwrap();
        let (last, loaded): (u64, Vec<(u64, u64)>) = checkpoints.read_postcard("c.bin").unwrap();
        assert_eq!((last, loaded), (7, pairs.to_vec()));
    }
}
