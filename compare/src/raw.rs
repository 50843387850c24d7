//! The raw floor: the least work any engine must do for each operation.
//!
//! - Durable append, one writer: `pwrite` of the payload at increasing offsets of a
//!   preallocated file whose blocks were really written (zeros, then `fdatasync`), then
//!   `fdatasync`. Several writers have no floor here: without group commit the floor would
//!   only serialise their syncs, which is no bound on an engine that shares one sync between
//!   them, so the multi-thread operations report it as not supported.
//! - Buffered appends (a streaming floor): the frames zerodur writes (FORMAT.md, "Frame": a
//!   32-byte header with a CRC, length, kind, entry id, durable lag and epoch, then the
//!   payload, padded to a multiple of 16 bytes), one `crc32fast` pass each over the header
//!   bytes after the CRC field and the payload, written one after another into anonymous
//!   memory as large as the whole run (appends × frame size). That memory is populated before
//!   the clock starts (`MADV_POPULATE_WRITE`, or a write to every page where the kernel lacks
//!   it) and uses 4 KiB pages like a file mapping, so the floor takes no page fault but
//!   streams through memory that is not cache-resident, as a log does.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{
    append_for, expect_count, time_each, Contender, Outcome, ResumeLog, Skip, Work,
};

/// Bytes of frame header in front of each payload of the replay floor's log: length u32,
/// CRC u32, entry id u64.
const FRAME_HEADER_BYTES: usize = 16;
const LOG_FILE: &str = "raw.log";
const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// The raw floor's name; the report computes "vs raw floor" against it.
pub const NAME: &str = "raw floor";

/// Why several durable writers have no floor.
const NO_GROUP_COMMIT: &str = "no floor for several writers: without group commit the floor \
     would only serialise their fdatasyncs, and an engine that shares one sync between them \
     is not bound by that";

/// Why resume has no floor.
const NO_RESUME: &str = "no log format to resume";

/// zerodur's frame layout (FORMAT.md, "Frame"), written by the streaming floor.
const STREAMED_HEADER_BYTES: usize = 32;
/// Frames start at multiples of this.
const STREAMED_ALIGN_BYTES: usize = 16;
/// zerodur's frame kind of a one-frame entry.
const STREAMED_KIND_ENTRY: u8 = 1;
/// The epoch every streamed frame carries (a segment's first life).
const STREAMED_EPOCH: u64 = 1;

/// What the floor of an operation is.
pub enum Floor {
    /// The floor exists; the text says what it does.
    Is(&'static str),
    /// There is no floor: a few words for a table cell, and the whole reason.
    Without {
        short: &'static str,
        why: &'static str,
    },
}

/// The floor of each operation, by task key.
pub fn floor_of(key: &str) -> Floor {
    let text = match key {
        "append-latency" | "threads-1" => {
            "pwrite of the payload into a preallocated file whose blocks were written and \
             synced beforehand, then fdatasync"
        }
        _ if key.starts_with("threads-") => {
            return Floor::Without {
                short: "no group commit",
                why: NO_GROUP_COMMIT,
            }
        }
        _ if key.starts_with("buffered-") => {
            "a streaming floor: zerodur's frames (32-byte header, payload padded to 16 B), one \
             CRC each over header and payload, written back to back into anonymous memory as \
             large as the run (appends × frame size), populated before timing, 4 KiB pages: \
             no page faults, but memory that is not cache-resident, as a log's is"
        }
        "replay" => "mmap of one log file and a CRC check of every frame (16-byte headers)",
        "checkpoint-write-pairs" | "checkpoint-write-blob" => {
            "the raw bytes to a temporary file, fdatasync, rename, directory fsync"
        }
        "checkpoint-load-pairs" => "mmap, one CRC pass over the file, one read of every pair",
        "checkpoint-load-blob" => "mmap and one CRC pass over the file",
        "recovery" => "the pairs checkpoint load plus the replay floor",
        _ => {
            return Floor::Without {
                short: "nothing to resume",
                why: NO_RESUME,
            }
        }
    };
    Floor::Is(text)
}

/// The raw floor contender.
pub struct Raw;

impl Contender for Raw {
    fn name(&self) -> &'static str {
        NAME
    }

    fn method(&self) -> &'static str {
        "pwrite + fdatasync into a preallocated, zero-filled file (one writer; no floor for \
         several threads, which it could only serialise); a streaming floor for buffered \
         appends: zerodur's frames (32-byte header, payload padded to 16 B), one CRC each, \
         written back to back into anonymous memory of the run's total size, populated before \
         timing (MADV_POPULATE_WRITE) with 4 KiB pages: no page faults, no cache residency; \
         mmap + per-frame CRC for replay; temp file + fdatasync + rename + dir fsync for \
         checkpoint writes; mmap + one CRC pass (+ one read of every pair) for checkpoint \
         loads; no resume"
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
        if threads > 1 {
            return Err(Skip::Unsupported(NO_GROUP_COMMIT));
        }
        // Room for 100 k appends per second; past that the file just grows.
        let room = (run_for.as_secs_f64() * 100_000.0) as usize * payload.len();
        let file = preallocated(&dir.join(LOG_FILE), room)?;
        let offset = AtomicU64::new(0);
        append_for(threads, run_for, || {
            let at = offset.fetch_add(payload.len() as u64, Ordering::Relaxed);
            file.write_all_at(payload, at)?;
            file.sync_data()?;
            Ok(())
        })
    }

    fn buffered_append(&self, _dir: &Path, payload: &[u8], appends: usize) -> Outcome<Duration> {
        let frame = streamed_frame_bytes(payload.len());
        // The whole run's frames, in memory populated now so the timed loop takes no fault.
        let mut memory = Region::populated(appends * frame)?;
        let bytes = memory.bytes_mut();
        let start = Instant::now();
        for (entry, slot) in (1u64..).zip(bytes.chunks_exact_mut(frame)) {
            encode_streamed_frame(slot, entry, payload);
        }
        let elapsed = start.elapsed();
        std::hint::black_box(&bytes[bytes.len() - frame..]);
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
        let map = Region::of_file(&dir.join(CHECKPOINT_FILE))?;
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
        Err(Skip::Unsupported(NO_RESUME))
    }

    fn resume(&self, _dir: &Path, _log: ResumeLog) -> Outcome<Duration> {
        Err(Skip::Unsupported(NO_RESUME))
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

/// Bytes of a streamed frame with a `payload_len`-byte payload, padding included.
fn streamed_frame_bytes(payload_len: usize) -> usize {
    (STREAMED_HEADER_BYTES + payload_len).next_multiple_of(STREAMED_ALIGN_BYTES)
}

/// Writes zerodur's frame for entry `entry` into `slot` (exactly the frame's size): the
/// header built on the stack, its CRC over header bytes 4..32 and the payload (as zerodur
/// computes it, from the source), then header, payload and zero padding copied in once.
fn encode_streamed_frame(slot: &mut [u8], entry: u64, payload: &[u8]) {
    let mut header = [0u8; STREAMED_HEADER_BYTES];
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8] = STREAMED_KIND_ENTRY;
    // Durable lag: nothing is synced while streaming, so the lag is the entry id (saturated).
    let lag = u32::try_from(entry).unwrap_or(u32::MAX - 1);
    header[12..16].copy_from_slice(&lag.to_le_bytes());
    header[16..24].copy_from_slice(&entry.to_le_bytes());
    header[24..32].copy_from_slice(&STREAMED_EPOCH.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[4..]);
    crc.update(payload);
    header[0..4].copy_from_slice(&crc.finalize().to_le_bytes());
    let (head, rest) = slot.split_at_mut(STREAMED_HEADER_BYTES);
    let (body, padding) = rest.split_at_mut(payload.len());
    head.copy_from_slice(&header);
    body.copy_from_slice(payload);
    padding.fill(0);
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
    let map = Region::of_file(path)?;
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
    let map = Region::of_file(path)?;
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

/// A private mapping, unmapped on drop: of a whole file (read-only) or of anonymous memory
/// (read-write).
struct Region {
    ptr: *mut libc::c_void,
    len: usize,
    writable: bool,
}

impl Region {
    /// Maps `len` bytes of `fd` (or anonymous memory when `fd` is -1) privately.
    fn map(len: usize, writable: bool, fd: libc::c_int) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty mapping"));
        }
        let (prot, flags) = match (writable, fd) {
            (true, -1) => (
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            ),
            (false, _) => (libc::PROT_READ, libc::MAP_PRIVATE),
            (true, _) => unreachable!("files are only mapped read-only"),
        };
        // SAFETY: a fresh private mapping at a kernel-chosen address, of a descriptor the
        // caller keeps open for the call (or of anonymous memory); the arguments are all
        // valid and the result is checked below.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr, len, writable })
    }

    /// A read-only mapping of a whole non-empty file.
    fn of_file(path: &Path) -> io::Result<Region> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).expect("file fits in memory");
        Region::map(len, false, std::os::fd::AsRawFd::as_raw_fd(&file))
    }

    /// Anonymous memory whose every page was populated (allocated and written) when it was
    /// made, so writes into it take no page fault. Pages are 4 KiB (transparent huge pages
    /// are declined), as in a mapping of the page cache.
    fn populated(len: usize) -> io::Result<Region> {
        let region = Region::map(len, true, -1)?;
        let (ptr, len) = (region.ptr, region.len);
        // SAFETY: `ptr`/`len` are the mapping made above. Advice only: on a kernel without
        // transparent huge pages it fails and the pages are 4 KiB anyway.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        // SAFETY: as above; MADV_POPULATE_WRITE (Linux 5.14) faults every page in writable
        // and fails with EINVAL on older kernels, which the fallback below covers.
        let populated = unsafe { libc::madvise(ptr, len, libc::MADV_POPULATE_WRITE) } == 0;
        if !populated {
            // SAFETY: `sysconf` takes a valid name and touches no memory of ours.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096)
                .max(1);
            for offset in (0..len).step_by(page) {
                // SAFETY: `offset < len`, inside the writable mapping made above; a volatile
                // write so the touch is not optimised away.
                unsafe { ptr.cast::<u8>().add(offset).write_volatile(0) };
            }
        }
        Ok(region)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`; nobody truncates or writes
        // the benchmark's files while a mapping of them is alive.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(self.writable, "a read-only mapping");
        // SAFETY: `ptr` maps `len` readable and writable bytes (checked just above) until
        // `drop`, and the slice borrows `self` mutably, so it is the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Region {
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

    #[test]
    fn streamed_frames_have_zerodurs_layout_and_crc() {
        assert_eq!(streamed_frame_bytes(100), 144);
        assert_eq!(streamed_frame_bytes(1024), 1056);
        let payload: Vec<u8> = (0..100u8).collect();
        let mut frame = [0xffu8; 144];
        encode_streamed_frame(&mut frame, 7, &payload);
        let stored = u32::from_le_bytes(frame[0..4].try_into().unwrap());
        assert_eq!(stored, crc32fast::hash(&frame[4..132]));
        assert_eq!(u32::from_le_bytes(frame[4..8].try_into().unwrap()), 100);
        assert_eq!(frame[8], STREAMED_KIND_ENTRY);
        assert_eq!(frame[9..12], [0, 0, 0]);
        assert_eq!(u64::from_le_bytes(frame[16..24].try_into().unwrap()), 7);
        assert_eq!(
            u64::from_le_bytes(frame[24..32].try_into().unwrap()),
            STREAMED_EPOCH
        );
        assert_eq!(&frame[32..132], &payload[..]);
        assert!(frame[132..].iter().all(|&b| b == 0));
    }

    /// Minor page faults this thread has taken so far.
    fn minor_faults() -> i64 {
        // SAFETY: rusage is plain old data; all-zero bytes are a valid value of it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a writable rusage, alive for the call.
        assert_eq!(
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
            0
        );
        usage.ru_minflt
    }

    #[test]
    fn writing_populated_memory_takes_no_page_fault() {
        let payload = [3u8; 100];
        let frames = (32 << 20) / streamed_frame_bytes(payload.len());
        let mut memory = Region::populated(frames * streamed_frame_bytes(payload.len())).unwrap();
        let bytes = memory.bytes_mut();
        let before = minor_faults();
        for (entry, slot) in (1u64..).zip(bytes.chunks_exact_mut(streamed_frame_bytes(100))) {
            encode_streamed_frame(slot, entry, &payload);
        }
        let faults = minor_faults() - before;
        // 32 MiB is 8192 pages; a handful of faults elsewhere in the thread is not the memory's.
        assert!(
            faults < 16,
            "{faults} page faults while writing populated memory"
        );
        assert_eq!(bytes[bytes.len() - 1], 0);
    }

    #[test]
    fn populated_memory_is_writable_end_to_end() {
        let mut memory = Region::populated(3 * 4096 + 10).unwrap();
        let bytes = memory.bytes_mut();
        assert!(bytes.iter().all(|&b| b == 0));
        let last = bytes.len() - 1;
        bytes[last] = 9;
        assert_eq!(memory.bytes_mut()[last], 9);
    }

    #[test]
    fn several_writers_have_no_floor() {
        let outcome =
            Raw.durable_append_threads(Path::new("/nonexistent"), &[0; 8], 2, Duration::ZERO);
        assert!(matches!(outcome, Err(Skip::Unsupported(_))));
        assert!(matches!(floor_of("threads-4"), Floor::Without { .. }));
        assert!(matches!(floor_of("threads-1"), Floor::Is(_)));
        assert!(matches!(floor_of("buffered-100"), Floor::Is(_)));
        assert!(matches!(floor_of("resume-16"), Floor::Without { .. }));
    }
}
