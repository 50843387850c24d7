//! The raw floor: the least work any engine must do for each operation.
//!
//! - Durable appends: `pwrite` of the payload at increasing offsets of a preallocated file
//!   whose blocks were really written (zeros, then `fdatasync`), then `fdatasync`. With
//!   several threads, one mutex serialises pwrite + fdatasync (no group commit).
//! - Buffered appends (CPU-bound): CRC of the payload and a copy of a 16-byte header plus the
//!   payload into a pre-touched memory buffer.
//! - Replay (page-cached): map the log file and check the CRC of every frame.
//! - Checkpoint write: the bytes to a temporary file, `fdatasync`, rename, directory fsync.
//! - Checkpoint load: map the file and make one CRC pass over it (and, for pairs, read every
//!   pair once).
//! - Recovery: checkpoint load plus replay.
//! - Resume has no floor: there is no format to resume.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{
    append_for, expect_count, time_each, Contender, Outcome, ResumeLog, Skip, Work,
};

/// Bytes of frame header in front of each payload: length u32, CRC u32, entry id u64.
const FRAME_HEADER_BYTES: usize = 16;
const LOG_FILE: &str = "raw.log";
const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// The raw floor's name; the report computes "vs raw floor" against it.
pub const NAME: &str = "raw floor";

/// The raw floor contender.
pub struct Raw;

impl Contender for Raw {
    fn name(&self) -> &'static str {
        NAME
    }

    fn method(&self) -> &'static str {
        "pwrite + fdatasync into a preallocated, zero-filled file (one mutex across threads); \
         CRC + memcpy into a pre-touched buffer for buffered appends; mmap + per-frame CRC for \
         replay; temp file + fdatasync + rename + dir fsync for checkpoint writes; mmap + one CRC \
         pass (+ one read of every pair) for checkpoint loads; no resume"
    }

    fn durable_append_latency(
        &self,
        dir: &Path,
        payload: &[u8],
        appends: usize,
    ) -> Outcome<Vec<Duration>> {
        let file = preallocated(&dir.join(LOG_FILE), (appends + 1) * payload.len())?;
        let mut offset = 0u64;
        time_each(appends, || {
            file.write_all_at(payload, offset)?;
            file.sync_data()?;
            offset += payload.len() as u64;
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
        // Room for 100 k appends per second; past that the file just grows.
        let room = (run_for.as_secs_f64() * 100_000.0) as usize * payload.len();
        let file = preallocated(&dir.join(LOG_FILE), room)?;
        let log = Mutex::new((file, 0u64));
        append_for(threads, run_for, || {
            let mut guard = log.lock().expect("raw log mutex poisoned");
            let (file, offset) = &mut *guard;
            file.write_all_at(payload, *offset)?;
            file.sync_data()?;
            *offset += payload.len() as u64;
            Ok(())
        })
    }

    fn buffered_append(&self, _dir: &Path, payload: &[u8], appends: usize) -> Outcome<Duration> {
        let frame = FRAME_HEADER_BYTES + payload.len();
        // Pre-touched, so the floor pays no page faults.
        let mut buffer = vec![0x5au8; appends * frame];
        let start = Instant::now();
        for (id, slot) in buffer.chunks_exact_mut(frame).enumerate() {
            encode_frame(slot, id as u64, payload);
        }
        let elapsed = start.elapsed();
        std::hint::black_box(&buffer);
        Ok(elapsed)
    }

    fn replay_prepare(&self, dir: &Path, payload: &[u8], entries: usize) -> Outcome<()> {
        write_log(&dir.join(LOG_FILE), payload, entries)
    }

    fn replay(&self, dir: &Path, entries: usize) -> Outcome<Duration> {
        let start = Instant::now();
        let count = replay_log(&dir.join(LOG_FILE))?;
        let elapsed = start.elapsed();
        expect_count("entries replayed", count, entries as u64)?;
        Ok(elapsed)
    }

    fn checkpoint_write_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<Duration> {
        let bytes = pairs_to_bytes(pairs);
        let start = Instant::now();
        publish(dir, CHECKPOINT_FILE, &bytes)?;
        Ok(start.elapsed())
    }

    fn checkpoint_prepare_pairs(&self, dir: &Path, pairs: &[(u64, u64)]) -> Outcome<()> {
        publish(dir, CHECKPOINT_FILE, &pairs_to_bytes(pairs))?;
        Ok(())
    }

    fn checkpoint_load_pairs(&self, dir: &Path, pairs: usize) -> Outcome<Duration> {
        let start = Instant::now();
        let count = load_pairs(&dir.join(CHECKPOINT_FILE))?;
        let elapsed = start.elapsed();
        expect_count("pairs loaded", count, pairs as u64)?;
        Ok(elapsed)
    }

    fn checkpoint_write_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<Duration> {
        let start = Instant::now();
        publish(dir, CHECKPOINT_FILE, blob)?;
        Ok(start.elapsed())
    }

    fn checkpoint_prepare_blob(&self, dir: &Path, blob: &[u8]) -> Outcome<()> {
        publish(dir, CHECKPOINT_FILE, blob)?;
        Ok(())
    }

    fn checkpoint_load_blob(&self, dir: &Path, blob_bytes: usize) -> Outcome<Duration> {
        let start = Instant::now();
        let map = Mapping::open(&dir.join(CHECKPOINT_FILE))?;
        std::hint::black_box(crc32fast::hash(map.bytes()));
        let len = map.bytes().len();
        drop(map);
        let elapsed = start.elapsed();
        expect_count("blob bytes", len as u64, blob_bytes as u64)?;
        Ok(elapsed)
    }

    fn recovery_prepare(
        &self,
        dir: &Path,
        pairs: &[(u64, u64)],
        payload: &[u8],
        entries: usize,
    ) -> Outcome<()> {
        publish(dir, CHECKPOINT_FILE, &pairs_to_bytes(pairs))?;
        write_log(&dir.join(LOG_FILE), payload, entries)
    }

    fn recovery(&self, dir: &Path, pairs: usize, entries: usize) -> Outcome<Duration> {
        let start = Instant::now();
        let loaded = load_pairs(&dir.join(CHECKPOINT_FILE))?;
        let replayed = replay_log(&dir.join(LOG_FILE))?;
        let elapsed = start.elapsed();
        expect_count("pairs loaded", loaded, pairs as u64)?;
        expect_count("entries replayed", replayed, entries as u64)?;
        Ok(elapsed)
    }

    fn resume_prepare(&self, _dir: &Path, _log: ResumeLog) -> Outcome<()> {
        Err(Skip::Unsupported("no log format to resume"))
    }

    fn resume(&self, _dir: &Path, _log: ResumeLog) -> Outcome<Duration> {
        Err(Skip::Unsupported("no log format to resume"))
    }
}

/// Creates `path` with `len` bytes (rounded up to 4 KiB) of real, durable zero blocks.
fn preallocated(path: &Path, len: usize) -> io::Result<File> {
    let len = len.div_ceil(4096).max(1) * 4096;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        file.write_all(&zeros[..n])?;
        left -= n;
    }
    file.sync_all()?;
    sync_dir(path.parent().expect("file has a parent"))?;
    Ok(file)
}

/// Writes one frame (header + payload) into `slot`, which is exactly the frame's size.
fn encode_frame(slot: &mut [u8], id: u64, payload: &[u8]) {
    let (header, body) = slot.split_at_mut(FRAME_HEADER_BYTES);
    header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header[8..16].copy_from_slice(&id.to_le_bytes());
    body.copy_from_slice(payload);
}

/// Writes a log of `entries` frames and makes it durable.
fn write_log(path: &Path, payload: &[u8], entries: usize) -> Outcome<()> {
    let frame = FRAME_HEADER_BYTES + payload.len();
    let mut bytes = vec![0u8; entries * frame];
    for (id, slot) in bytes.chunks_exact_mut(frame).enumerate() {
        encode_frame(slot, id as u64, payload);
    }
    let mut file = File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Maps the log and checks every frame's CRC; returns the number of frames.
fn replay_log(path: &Path) -> Outcome<u64> {
    let map = Mapping::open(path)?;
    let mut rest = map.bytes();
    let mut count = 0u64;
    while rest.len() >= FRAME_HEADER_BYTES {
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            return Err(Skip::Failed(format!("frame {count} runs past the end")));
        };
        if crc32fast::hash(payload) != crc {
            return Err(Skip::Failed(format!("frame {count}: CRC mismatch")));
        }
        count += 1;
        rest = &rest[FRAME_HEADER_BYTES + len..];
    }
    Ok(count)
}

fn pairs_to_bytes(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(pairs.len() * 16);
    for (key, value) in pairs {
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Maps a pairs checkpoint, CRCs it and reads every pair; returns the number of pairs.
fn load_pairs(path: &Path) -> Outcome<u64> {
    let map = Mapping::open(path)?;
    let bytes = map.bytes();
    std::hint::black_box(crc32fast::hash(bytes));
    let mut sum = 0u64;
    let mut count = 0u64;
    for pair in bytes.chunks_exact(16) {
        let key = u64::from_le_bytes(pair[0..8].try_into().expect("8 bytes"));
        let value = u64::from_le_bytes(pair[8..16].try_into().expect("8 bytes"));
        sum = sum.wrapping_add(key ^ value);
        count += 1;
    }
    std::hint::black_box(sum);
    Ok(count)
}

/// The least a crash-safe file publish costs: temp file, data sync, rename, directory sync.
fn publish(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&temp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A read-only, private mapping of a whole non-empty file.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn open(path: &Path) -> io::Result<Mapping> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).expect("file fits in memory");
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        // SAFETY: a fresh read-only private mapping of a valid descriptor at a kernel-chosen
        // address; the arguments are all valid and the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`; nobody truncates or writes
        // the benchmark's files while a mapping of them is alive.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no slice of it outlives
        // `self` (slices borrow `self`).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_log_replays_every_frame() {
        let dir = std::env::temp_dir().join(format!("raw-log-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LOG_FILE);
        write_log(&path, &[7u8; 100], 1000).unwrap();
        assert_eq!(replay_log(&path).unwrap(), 1000);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replay_rejects_a_corrupt_frame() {
        let dir = std::env::temp_dir().join(format!("raw-corrupt-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LOG_FILE);
        write_log(&path, &[7u8; 100], 10).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff], 3 * 116 + 20).unwrap();
        assert!(matches!(replay_log(&path), Err(Skip::Failed(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
