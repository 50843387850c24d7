//! Arbitrary bytes as one segment file: replay in both modes returns `Ok` or
//! `Err`, never panics, never allocates in proportion to a length field; on
//! `Ok`, every payload is a frame's bytes inside the file and ids are
//! consecutive.
//!
//! Input: a flags byte, then either the whole file (flag bit 0 clear) or
//! header fields and a body that the harness puts behind a header with a
//! correct CRC (bit 0 set); bit 1 rewrites every frame CRC reachable by
//! following length fields, so the fuzzer can explore the id, epoch, batch
//! and seal rules.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use zerodur::wal::ReadMode;
use zerodur::{Directory, MemoryDirectory};
use zerodur_fuzz::{
    check_modes_agree, fix_frame_crcs, peak_heap_during, put_file, replay, segment_header,
    segment_name, Entries, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    let tail = b.get(at..).unwrap_or(&[]);
    let n = tail.len().min(8);
    x[..n].copy_from_slice(&tail[..n]);
    u64::from_le_bytes(x)
}

/// The segment id and file bytes described by `data`.
fn build(data: &[u8]) -> (u64, Vec<u8>) {
    let Some((&flags, rest)) = data.split_first() else {
        return (1, Vec::new());
    };
    if flags & 1 == 0 {
        return (1, rest.to_vec());
    }
    // Header fields: segment id (1 byte, or 8 with bit 2), first entry and
    // epoch (8 bytes each), version tweak (bit 3).
    let (segment, rest) = if flags & 4 == 0 {
        (
            u64::from(*rest.first().unwrap_or(&1)),
            rest.get(1..).unwrap_or(&[]),
        )
    } else {
        (u64_at(rest, 0), rest.get(8..).unwrap_or(&[]))
    };
    let first = u64_at(rest, 0);
    let epoch = u64_at(rest, 8);
    let body = rest.get(16..).unwrap_or(&[]);
    let version = if flags & 8 == 0 { 1 } else { 2 };
    let len = SEGMENT_HEADER_BYTES + body.len();
    let mut file = segment_header(version, segment, first, epoch, len as u64).to_vec();
    file.extend_from_slice(body);
    if flags & 2 != 0 {
        fix_frame_crcs(&mut file);
    }
    (segment, file)
}

/// Each payload must be the payload of a frame for its id in `file`, at a
/// 16-byte aligned offset after the previous one.
fn check_within_file(file: &[u8], entries: &Entries) {
    let mut from = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
    for (id, p) in entries {
        let found = (from..=file.len().saturating_sub(p.len()))
            .step_by(16)
            .find(|&off| {
                u32::from_le_bytes(file[off - 28..off - 24].try_into().unwrap()) as usize == p.len()
                    && u64::from_le_bytes(file[off - 16..off - 8].try_into().unwrap()) == *id
                    && file[off..off + p.len()] == p[..]
            });
        match found {
            Some(off) => from = off + p.len().next_multiple_of(16) + FRAME_HEADER_BYTES,
            None => panic!("entry {id} ({} bytes) is not a frame of the file", p.len()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (segment, file) = build(data);
    let mem = MemoryDirectory::new();
    if !put_file(&mem, &segment_name(segment), &file) {
        return;
    }
    let dir: Arc<dyn Directory> = Arc::new(mem);
    let (strict, heap_strict) = peak_heap_during(|| replay(&dir, ReadMode::Strict));
    let (best, heap_best) = peak_heap_during(|| replay(&dir, ReadMode::BestEffort));
    // The file is copied once by the memory backend's read map and the
    // payloads once by `replay`: anything beyond a small constant on top is
    // an allocation driven by the bytes.
    for heap in [heap_strict, heap_best] {
        assert!(
            heap <= 3 * file.len() + 64 * 1024,
            "replay of a {}-byte file peaked at {heap} heap bytes",
            file.len()
        );
    }
    check_modes_agree(&strict, &best);
    for (entries, r) in [&strict, &best] {
        check_within_file(&file, entries);
        if let Ok(s) = r {
            assert_eq!(s.entries, entries.len() as u64);
            assert_eq!(s.last.map(|l| l.get()), entries.last().map(|e| e.0));
        }
    }
});
