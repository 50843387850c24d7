//! Shared pieces of the fuzz targets: an allocation meter, builders for
//! well-formed segment bytes (so the fuzzer starts from structure it could
//! never guess, like CRCs), replay helpers and the WAL model used by the
//! operation-sequence target.
//!
//! Targets live in `fuzz_targets/`, one `[[bin]]` each in `Cargo.toml`; run
//! one from the crate root with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> -- -max_total_time=90`.
//! WAL targets: `frame_decode`, `recovery_image`, `ops_crash`,
//! `media_fault_image` (its oracle in [`media`]); checkpoints:
//! `checkpoint_envelope`; the record log: `record_log`. They share
//! [`peak_heap_during`] and the [`MemoryDirectory`] helpers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use zerodur::wal::{ReadMode, ReplaySummary, WalReader};
use zerodur::{Directory, MemoryDirectory};

pub mod media;
pub mod model;

// ---------------------------------------------------------------------------
// Allocation meter.

/// The system allocator, counting live bytes and their peak, so a target can
/// assert that hostile lengths never turn into allocations.
pub struct MeteredAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counters only observe.
unsafe impl GlobalAlloc for MeteredAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s
        // contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grow(new_size);
        }
        p
    }
}

fn grow(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static GLOBAL: MeteredAlloc = MeteredAlloc;

/// Runs `f` and returns its result with the peak of live heap bytes it added
/// (the fuzz targets are single-threaded, so the meter sees only `f`).
pub fn peak_heap_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed);
    (out, peak.saturating_sub(base))
}

// ---------------------------------------------------------------------------
// Segment bytes (the layout of FORMAT.md).

pub const WAL_DIR: &str = "wal";
pub const SEGMENT_HEADER_BYTES: usize = 64;
pub const FRAME_HEADER_BYTES: usize = 32;
pub const FRAME_ALIGN_BYTES: usize = 16;
pub const SEGMENT_SIZE_BYTES_MIN: usize = 8 * 1024;
pub const MAGIC: [u8; 8] = *b"ZDURWAL\x01";
pub const KIND_ENTRY: u8 = 1;
pub const KIND_ENTRY_CONT: u8 = 2;
pub const KIND_SEAL: u8 = 3;
pub const KIND_RESUME: u8 = 4;

/// A segment header with a correct CRC.
pub fn segment_header(version: u32, segment: u64, first: u64, epoch: u64, len: u64) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&version.to_le_bytes());
    b[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    b[16..24].copy_from_slice(&segment.to_le_bytes());
    b[24..32].copy_from_slice(&first.to_le_bytes());
    b[32..40].copy_from_slice(&epoch.to_le_bytes());
    b[40..48].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Bytes of a frame with a `len`-byte payload, padding included.
pub fn frame_bytes(len: usize) -> usize {
    (FRAME_HEADER_BYTES + len).next_multiple_of(FRAME_ALIGN_BYTES)
}

/// CRC of a whole frame `f` (header, then payload): bytes `4..32 + len`,
/// one contiguous range.
fn frame_crc(f: &[u8], len: usize) -> u32 {
    crc32fast::hash(&f[4..FRAME_HEADER_BYTES + len])
}

/// A whole frame (header, payload, padding) with a correct CRC.
pub fn frame(kind: u8, entry: u64, epoch: u64, lag: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; frame_bytes(payload.len())];
    b[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[8] = kind;
    b[12..16].copy_from_slice(&lag.to_le_bytes());
    b[16..24].copy_from_slice(&entry.to_le_bytes());
    b[24..32].copy_from_slice(&epoch.to_le_bytes());
    b[32..32 + payload.len()].copy_from_slice(payload);
    let crc = frame_crc(&b, payload.len());
    b[0..4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Walks `seg` frame by frame from the first slot, following each length
/// field, and rewrites every CRC to match: turns fuzzer noise into frames
/// that reach the id, epoch and batch rules.
pub fn fix_frame_crcs(seg: &mut [u8]) {
    let mut off = SEGMENT_HEADER_BYTES;
    while off + FRAME_HEADER_BYTES <= seg.len() {
        let len = u32::from_le_bytes(seg[off + 4..off + 8].try_into().unwrap()) as usize;
        let Some(end) = off
            .checked_add(frame_bytes(len))
            .filter(|&e| e <= seg.len())
        else {
            return;
        };
        if seg[off..off + FRAME_HEADER_BYTES].iter().all(|&b| b == 0) {
            return;
        }
        let crc = frame_crc(&seg[off..end], len);
        seg[off..off + 4].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// The file name of live segment `id`.
pub fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The file name of pooled segment `id`.
pub fn free_name(id: u64) -> String {
    format!("{id:020}.free")
}

/// Writes `bytes` as file `wal/<name>` of `dir`. `false` if the name is not
/// a valid path (nothing written).
pub fn put_file(dir: &MemoryDirectory, name: &str, bytes: &[u8]) -> bool {
    if !dir.exists(WAL_DIR).unwrap() {
        dir.create_dir_all(WAL_DIR).unwrap();
    }
    let path = format!("{WAL_DIR}/{name}");
    match dir.create(&path) {
        Ok(mut f) => {
            f.write_all(bytes).unwrap();
            true
        }
        // Invalid paths, names inside missing subdirectories, names of
        // directories: not an image this target can build.
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Replay.

pub type Entries = Vec<(u64, Vec<u8>)>;

/// Replays the WAL in `mode`: what was delivered, and how replay ended. A
/// WAL folder that a crash took away (its creation never became durable) is
/// an empty log here: the model then finds any acknowledged entry missing.
pub fn replay(
    dir: &Arc<dyn Directory>,
    mode: ReadMode,
) -> (Entries, zerodur::Result<ReplaySummary>) {
    if !dir.exists(WAL_DIR).unwrap_or(true) {
        return (Vec::new(), Ok(ReplaySummary::default()));
    }
    let mut out = Vec::new();
    let r = WalReader::open(dir.clone(), WAL_DIR, mode).and_then(|r| {
        r.replay(None, |id, b| {
            out.push((id.get(), b.to_vec()));
            Ok(())
        })
    });
    (out, r)
}

/// Checks that hold between the two modes on any input: both deliver the
/// same consecutive ids (they differ only in how a torn tail ends the log);
/// strict accepting implies best-effort accepting; best-effort rejecting
/// implies strict rejecting.
pub fn check_modes_agree(
    strict: &(Entries, zerodur::Result<ReplaySummary>),
    best: &(Entries, zerodur::Result<ReplaySummary>),
) {
    for (entries, _) in [strict, best] {
        for w in entries.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "replayed ids are not consecutive");
        }
    }
    assert!(strict.0 == best.0, "the modes delivered different entries");
    if strict.1.is_ok() {
        assert!(
            best.1.is_ok(),
            "strict accepted what best-effort rejected: {:?}",
            best.1
        );
    }
    if best.1.is_err() {
        assert!(
            strict.1.is_err(),
            "best-effort rejected what strict accepted"
        );
    }
}
