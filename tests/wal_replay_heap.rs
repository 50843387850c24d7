//! Replay uses O(1) heap: the reader holds one mapping and a cursor, never a
//! copy of the log. Checked with a counting global allocator over a
//! multi-segment WAL on a real filesystem (the target in DESIGN.md: under
//! 1 MiB of heap beyond the mapped pages).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use zerodur::wal::{ReadMode, Wal, WalOptions, WalReader};
use zerodur::{Directory, FsDirectory};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn replay_of_a_large_multi_segment_wal_uses_constant_heap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: Arc<dyn Directory> = FsDirectory::arc(tmp.path()).unwrap();
    let opts = WalOptions::new("wal").segment_size_bytes(4 * 1024 * 1024);
    let payload = vec![0x5Au8; 1000];
    let entries = 40_000u64; // ~41 MiB of frames over 11 segments
    {
        let wal = Wal::open(dir.clone(), opts).unwrap();
        for _ in 0..entries {
            wal.append(&payload).unwrap();
        }
        wal.close().unwrap();
    }
    let reader = WalReader::open(dir, "wal", ReadMode::Strict).unwrap();
    assert!(reader.segment_ids().len() >= 10);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut bytes = 0u64;
    let summary = reader
        .replay(None, |_, b| {
            bytes += b.len() as u64;
            Ok(())
        })
        .unwrap();
    let peak_extra = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(summary.entries, entries);
    assert_eq!(bytes, entries * 1000);
    assert!(
        peak_extra < 1 << 20,
        "replay of {bytes} bytes peaked at {peak_extra} bytes of heap"
    );
    println!("replayed {bytes} bytes with {peak_extra} bytes of peak extra heap");
}
