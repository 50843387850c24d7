//! Known defects of `durability` 0.6.1 (and of WALs like it) that must be
//! impossible here, one test each, named for the property that rules it out;
//! then regressions for defects these tests found in zerodur itself.

mod wal_common;

use std::sync::Arc;

use wal_common::*;
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions};
use zerodur::{
    CorruptKind, CrashPolicy, Directory, Error, Fault, FsDirectory, MemoryDirectory, OpKind, Result,
};

const SEG_8K: u64 = 8 * 1024;
const SEG_16K: u64 = 16 * 1024;

fn mem_dir() -> (MemoryDirectory, Arc<dyn Directory>) {
    let m = MemoryDirectory::new();
    (m.clone(), Arc::new(m))
}

/// Appends `lens.len()` entries (payload `payload(0, id, len)`), syncs, closes.
fn build(dir: &Arc<dyn Directory>, o: &WalOptions, lens: &[usize]) -> Vec<Entry> {
    build_then(dir, o, lens, |w| w.close().unwrap())
}

/// [`build`], ending with `finish` instead of `close`.
fn build_then(
    dir: &Arc<dyn Directory>,
    o: &WalOptions,
    lens: &[usize],
    finish: impl FnOnce(Wal),
) -> Vec<Entry> {
    let w = Wal::open(dir.clone(), o.clone()).unwrap();
    let mut out = Vec::new();
    for &len in lens {
        let id = w.next_entry_id().get();
        let p = payload(0, id, len);
        assert_eq!(w.append(&p).unwrap().get(), id);
        out.push((id, p));
    }
    finish(w);
    out
}

/// An independent copy of a memory directory's current (durable) state.
fn copy(m: &MemoryDirectory) -> (MemoryDirectory, Arc<dyn Directory>) {
    let c = m.crash_image(&CrashPolicy::keep_all());
    (c.clone(), Arc::new(c))
}

fn replay_err(dir: &Arc<dyn Directory>, mode: ReadMode) -> Error {
    match replay(dir, mode) {
        Ok((got, _)) => panic!("{mode:?} replay succeeded with {}", describe(&got)),
        Err(e) => e,
    }
}

fn open_err(dir: &Arc<dyn Directory>, o: &WalOptions) -> Error {
    match Wal::open(dir.clone(), o.clone()) {
        Ok(w) => panic!("Wal::open succeeded (next id {})", w.next_entry_id()),
        Err(e) => e,
    }
}

/// The chain of frames of live segment `seg`.
fn frames_of(dir: &dyn Directory, seg: u64) -> Vec<Frame> {
    chain(&dir.read(&seg_path(seg)).unwrap())
}

fn entry_frames(dir: &dyn Directory, seg: u64) -> Vec<Frame> {
    frames_of(dir, seg)
        .into_iter()
        .filter(|f| matches!(f.kind, KIND_ENTRY | KIND_ENTRY_CONT))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Rotation without syncing the outgoing segment

fn rotation_workload(c: &Ctx, l: &mut Life) -> Result<()> {
    let w = c.open(l)?;
    for i in 0..70u64 {
        let p = l.next_payload((300 + i * 137 % 1100) as usize);
        l.append(&w, &p)?;
        if i % 9 == 8 {
            l.sync(&w)?;
        }
        if i == 30 || i == 55 {
            let upto = l.acked().saturating_sub(8);
            l.truncate(&w, upto)?;
        }
    }
    l.sync(&w)
}

#[test]
fn rotation_makes_the_outgoing_segment_durable_before_the_next_is_acknowledged() {
    let sc = Scenario::fresh("rotation", opts(SEG_8K, 2));
    let (mem, _, res, _) = sc.run(&rotation_workload, None);
    res.unwrap();

    // In the operation log: the seal (last write) of segment s before any
    // operation on segment s + 1 (for a recycled file: before the rename that
    // brings it in) is followed by a flush of segment s before any flush of
    // segment s + 1 (the barrier that acknowledges its entries; a rotation
    // does not wait for the disk, FORMAT.md "Deferred rotation"), and segment
    // s is written again at most once after that flush: its header, when the
    // flag saying its own predecessor was not durable is cleared.
    let log = mem.op_log();
    let touches = |i: usize, seg: u64| log[i].path == seg_path(seg);
    let last_seg = segment_ids(&mem).last().copied().unwrap();
    let (mut rotations, mut recycled) = (0, 0);
    for s in 1..last_seg {
        let Some(mut next_at) = (0..log.len()).find(|&i| touches(i, s + 1)) else {
            continue;
        };
        if log[next_at].kind == OpKind::OpenRegion && log[next_at - 1].kind == OpKind::Rename {
            next_at -= 1;
            recycled += 1;
        }
        rotations += 1;
        let seal = (0..next_at)
            .rfind(|&i| touches(i, s) && log[i].kind == OpKind::Write)
            .unwrap_or_else(|| panic!("segment {s} never written before rotation"));
        let acked_at = (next_at..log.len())
            .find(|&i| touches(i, s + 1) && log[i].kind == OpKind::FlushRange)
            .unwrap_or(log.len());
        let flushed = (seal + 1..acked_at)
            .find(|&i| touches(i, s) && log[i].kind == OpKind::FlushRange)
            .unwrap_or_else(|| {
                panic!(
                    "segment {s}: no flush between its seal (op {}) and the first flush of segment {} (op {acked_at})",
                    log[seal].seq,
                    s + 1,
                )
            });
        let later_writes: Vec<usize> = (next_at..log.len())
            .filter(|&i| touches(i, s) && log[i].kind == OpKind::Write)
            .collect();
        assert!(
            later_writes.len() <= 1 && later_writes.iter().all(|&i| i > flushed),
            "segment {s} written after rotation at ops {later_writes:?}"
        );
    }
    assert!(rotations >= 5, "only {rotations} rotations");
    assert!(recycled >= 1, "no rotation into a recycled file");

    // In every crash image at every point: every non-final segment whose
    // successor's header does not flag it as possibly unsynced is complete
    // and sealed, and its seal names the next segment's first id (flagged
    // ones are judged by the replay oracles of the crash suites).
    let mut checked = 0;
    for k in 0.. {
        let (mem, _, _, halted) = sc.run(&rotation_workload, Some(k));
        for pol in policies() {
            let img = mem.crash_image(&pol);
            let ids = segment_ids(&img);
            for w in ids.windows(2) {
                let next = img.read(&seg_path(w[1])).unwrap();
                let born = seg_header(&next).is_some_and(|nh| nh.segment == w[1]);
                if !born || next.get(56).is_some_and(|flags| flags & 1 == 1) {
                    continue;
                }
                let b = img.read(&seg_path(w[0])).unwrap();
                let ch = chain(&b);
                let h = seg_header(&b).unwrap();
                let seal = ch.last().copied();
                assert!(
                    seal.is_some_and(|f| f.kind == KIND_SEAL),
                    "op {k}, {pol:?}: segment {} is not sealed: {ch:?}",
                    w[0]
                );
                let entries: Vec<u64> = ch
                    .iter()
                    .filter(|f| f.kind != KIND_SEAL && f.kind != KIND_RESUME)
                    .map(|f| f.id)
                    .collect();
                let want: Vec<u64> = (h.first..seal.unwrap().id).collect();
                assert_eq!(entries, want, "op {k}, {pol:?}: segment {}", w[0]);
                let next = img.read(&seg_path(w[1])).unwrap();
                if let Some(nh) = seg_header(&next).filter(|nh| nh.segment == w[1]) {
                    assert_eq!(nh.first, seal.unwrap().id, "op {k}, {pol:?}");
                }
            }
            let dir: Arc<dyn Directory> = Arc::new(img);
            replay(&dir, ReadMode::BestEffort)
                .unwrap_or_else(|e| panic!("op {k}, {pol:?}: replay failed: {e}"));
            checked += 1;
        }
        if !halted {
            break;
        }
    }
    assert!(checked > 1000);
}

// ---------------------------------------------------------------------------
// 2. A zero- or garbage-filled final frame blocking replay and resume

#[test]
fn garbage_or_zero_final_frame_leaves_a_log_that_replays_and_resumes() {
    type FrameDamage = Box<dyn Fn(&mut Vec<u8>, &Frame)>;
    let damages: Vec<(&str, FrameDamage)> = vec![
        (
            "whole frame zeroed",
            Box::new(|b, f| b[f.off..f.end].fill(0)),
        ),
        (
            "frame header zeroed",
            Box::new(|b, f| b[f.off..f.off + FRAME_HEADER_LEN].fill(0)),
        ),
        (
            "payload zeroed",
            Box::new(|b, f| b[f.off + FRAME_HEADER_LEN..f.end].fill(0)),
        ),
        (
            "frame filled with 0xA5",
            Box::new(|b, f| b[f.off..f.end].fill(0xA5)),
        ),
        (
            "random bytes over the frame and 4 KiB beyond",
            Box::new(|b, f| {
                let g = payload(77, 1, f.end - f.off + 4096);
                b[f.off..f.end + 4096].copy_from_slice(&g);
            }),
        ),
        (
            "hostile length field",
            Box::new(|b, f| b[f.off + 4..f.off + 8].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
    ];
    let o = opts(SEG_16K, 0);
    let lens = [100usize, 0, 700, 33, 1500, 64, 200, 5, 900, 1200];
    for backend in ["memory", "fs"] {
        for (name, damage) in &damages {
            let ctx = format!("{backend}, {name}");
            let _tmp;
            let dir: Arc<dyn Directory> = if backend == "memory" {
                mem_dir().1
            } else {
                let t = tempfile::tempdir().unwrap();
                let d = FsDirectory::arc(t.path()).unwrap();
                _tmp = t;
                d
            };
            // Synced and dropped, not closed: `close` writes a marker that
            // would prove the last frame durable, and damage to it would be
            // no crash's doing.
            let entries = build_then(&dir, &o, &lens, |w| w.sync().unwrap());
            let last = *entry_frames(&*dir, 1).last().unwrap();
            assert_eq!(last.id, 10);
            edit(&*dir, &seg_path(1), |b| damage(b, &last));

            let prefix = &entries[..9];
            let (got, summary) = replay(&dir, ReadMode::BestEffort)
                .unwrap_or_else(|e| panic!("{ctx}: best-effort replay failed: {e}"));
            assert_entries(&got, prefix, &ctx);
            match replay(&dir, ReadMode::Strict) {
                Ok((got, _)) => {
                    assert!(!summary.torn_tail, "{ctx}");
                    assert_entries(&got, prefix, &ctx);
                }
                Err(e) => assert!(
                    summary.torn_tail && corrupt_kind(&e) == Some(&CorruptKind::TornTail),
                    "{ctx}: strict replay failed with {e}"
                ),
            }
            let w = Wal::open(dir.clone(), o.clone())
                .unwrap_or_else(|e| panic!("{ctx}: Wal::open failed: {e}"));
            assert_eq!(w.next_entry_id().get(), 10, "{ctx}");
            assert_eq!(w.append_durable(b"after the damage").unwrap().get(), 10);
            w.close().unwrap();
            let (got, _) = replay(&dir, ReadMode::Strict)
                .unwrap_or_else(|e| panic!("{ctx}: strict replay after resume failed: {e}"));
            let mut want = prefix.to_vec();
            want.push((10, b"after the damage".to_vec()));
            assert_entries(&got, &want, &ctx);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. A missing segment or an entry-id gap skipped silently

#[test]
fn missing_segment_or_entry_id_gap_is_corrupt_in_both_modes() {
    let o = opts(SEG_8K, 0);
    let (base, dir) = mem_dir();
    build(&dir, &o, &[700; 60]);
    let ids = segment_ids(&base);
    assert!(ids.len() >= 5, "{ids:?}");
    let last = *ids.last().unwrap();
    assert!(entry_frames(&*dir, last).len() >= 3);
    let modes = [ReadMode::BestEffort, ReadMode::Strict];

    // A missing middle segment.
    let (_, d) = copy(&base);
    d.remove(&seg_path(3)).unwrap();
    for mode in modes {
        let e = replay_err(&d, mode);
        assert_eq!(
            corrupt_kind(&e),
            Some(&CorruptKind::MissingSegment { segment: 3 }),
            "{mode:?}: {e}"
        );
    }
    let e = open_err(&d, &o);
    assert_eq!(
        corrupt_kind(&e),
        Some(&CorruptKind::MissingSegment { segment: 3 }),
        "{e}"
    );

    // A frame whose id skips one (CRC recomputed: only the gap is wrong),
    // in a sealed segment and in the final one.
    for seg in [2, last] {
        let (_, d) = copy(&base);
        let f = entry_frames(&*d, seg)[1];
        edit(&*d, &seg_path(seg), |b| {
            b[f.off + 16..f.off + 24].copy_from_slice(&(f.id + 1).to_le_bytes());
            fix_frame_crc(b, f.off);
        });
        let gap = CorruptKind::EntryIdGap {
            expected: f.id,
            found: f.id + 1,
        };
        for mode in modes {
            let e = replay_err(&d, mode);
            assert_eq!(corrupt_kind(&e), Some(&gap), "segment {seg}, {mode:?}: {e}");
        }
        if seg == last {
            // Resume scans the final segment and must refuse it too.
            let e = open_err(&d, &o);
            assert_eq!(corrupt_kind(&e), Some(&gap), "{e}");
        }
    }

    // The final segment's header starting one id late.
    let (_, d) = copy(&base);
    let first = seg_header(&d.read(&seg_path(last)).unwrap()).unwrap().first;
    edit(&*d, &seg_path(last), |b| {
        b[24..32].copy_from_slice(&(first + 1).to_le_bytes());
        fix_header_crc(b);
    });
    for mode in modes {
        let e = replay_err(&d, mode);
        assert_eq!(
            corrupt_kind(&e),
            Some(&CorruptKind::EntryIdGap {
                expected: first,
                found: first + 1
            }),
            "{mode:?}: {e}"
        );
    }
    let e = open_err(&d, &o);
    assert!(
        matches!(corrupt_kind(&e), Some(CorruptKind::EntryIdGap { .. })),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// 4. A CRC that does not cover the entry id and length

#[test]
fn crc_covers_entry_id_and_length() {
    let o = opts(SEG_8K, 0);
    let (base, dir) = mem_dir();
    let entries = build(&dir, &o, &[500; 50]);
    assert!(segment_ids(&base).len() >= 3);
    let f = entry_frames(&*dir, 2)[3];
    let (all, _) = replay(&dir, ReadMode::Strict).unwrap();
    assert_entries(&all, &entries, "control");
    // Every bit of the length (bytes 4..8) and of the id (bytes 16..24).
    let mut flips = 0;
    for byte in (4..8).chain(16..24) {
        for bit in 0..8 {
            let (_, d) = copy(&base);
            edit(&*d, &seg_path(2), |b| b[f.off + byte] ^= 1 << bit);
            for mode in [ReadMode::BestEffort, ReadMode::Strict] {
                let e = replay_err(&d, mode);
                assert!(
                    is_corrupt(&e),
                    "byte {byte} bit {bit}, {mode:?}: not Corrupt: {e}"
                );
            }
            flips += 1;
        }
    }
    assert_eq!(flips, 96);
}

// ---------------------------------------------------------------------------
// 5. An oversized entry accepted at append and unreadable after

#[test]
fn oversized_entry_is_refused_at_append_and_the_largest_round_trips() {
    for backend in ["memory", "fs"] {
        for seg in [SEG_8K, SEG_16K] {
            let _tmp;
            let dir: Arc<dyn Directory> = if backend == "memory" {
                mem_dir().1
            } else {
                let t = tempfile::tempdir().unwrap();
                let d = FsDirectory::arc(t.path()).unwrap();
                _tmp = t;
                d
            };
            let ctx = format!("{backend}, segment {seg}");
            let max = max_payload(seg);
            let o = opts(seg, 0);
            let w = Wal::open(dir.clone(), o.clone()).unwrap();
            match w.append(&vec![1; max + 1]) {
                Err(Error::EntryTooLarge { len, max: m }) => {
                    assert_eq!((len, m), (max as u64 + 1, max as u64), "{ctx}")
                }
                other => panic!("{ctx}: oversized append returned {other:?}"),
            }
            let half = max / 2 + 16;
            assert!(matches!(
                w.append_batch(&[&vec![2; half], &vec![3; half]]),
                Err(Error::EntryTooLarge { .. })
            ));
            assert!(!w.is_poisoned(), "{ctx}: a refused entry poisoned the WAL");
            assert_eq!(
                w.next_entry_id().get(),
                1,
                "{ctx}: a refused entry took an id"
            );
            let big = payload(0, 1, max);
            assert_eq!(w.append(&big).unwrap().get(), 1);
            assert_eq!(w.append_durable(&big).unwrap().get(), 2);
            w.close().unwrap();
            let want = vec![(1, big.clone()), (2, big.clone())];
            for mode in [ReadMode::BestEffort, ReadMode::Strict] {
                let (got, _) = replay(&dir, mode).unwrap();
                assert_entries(&got, &want, &ctx);
            }

            // A configured limit below the segment's is enforced too.
            let lim = o.clone().max_entry_bytes(1000);
            let w = Wal::open(dir.clone(), lim).unwrap();
            assert!(matches!(
                w.append(&[0; 1001]),
                Err(Error::EntryTooLarge {
                    len: 1001,
                    max: 1000
                })
            ));
            assert_eq!(w.append(&[9; 1000]).unwrap().get(), 3);
            w.close().unwrap();
            // A limit above what a segment holds is refused at open.
            let too = o.clone().max_entry_bytes(max as u64 + 1);
            assert!(matches!(
                Wal::open(dir.clone(), too),
                Err(Error::InvalidArgument { .. })
            ));
            let (got, _) = replay(&dir, ReadMode::Strict).unwrap();
            assert_eq!(got.len(), 3, "{ctx}");
            assert_eq!(got[2], (3, vec![9; 1000]));
        }
    }
}

// ---------------------------------------------------------------------------
// 6. Sparse preallocation

#[test]
#[cfg(unix)]
fn segments_are_preallocated_with_real_blocks() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::arc(tmp.path()).unwrap();
    let seg = 1024 * 1024;
    let w = Wal::open(dir.clone(), opts(seg, 0)).unwrap();
    let check = |id: u64| {
        let md = std::fs::metadata(tmp.path().join(seg_path(id))).unwrap();
        assert_eq!(md.len(), seg, "segment {id}");
        assert!(
            md.blocks() * 512 >= md.len(),
            "segment {id} is sparse: {} blocks of 512 for {} bytes",
            md.blocks(),
            md.len()
        );
    };
    check(1);
    w.append(&vec![7; 700_000]).unwrap();
    // Each later append needs a new segment: check it right after creation.
    for id in 2..=4u64 {
        w.append(&vec![8; 700_000]).unwrap();
        assert_eq!(w.active_segment().get(), id);
        check(id);
    }
    w.close().unwrap();
    for id in segment_ids(&*dir) {
        check(id);
    }
}

// ---------------------------------------------------------------------------
// 7. Truncation deleting the active segment

#[test]
fn truncation_never_removes_the_active_segment() {
    for pool in [0usize, 2] {
        let o = opts(SEG_8K, pool);
        let (_, dir) = mem_dir();
        let entries = build(&dir, &o, &[700; 50]);
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        let active = w.active_segment().get();
        assert!(active >= 4);
        let active_first = w.segment_ranges().unwrap().last().unwrap().first.get();
        assert_eq!(
            w.truncate_prefix(EntryId::new(u64::MAX)).unwrap() as u64,
            active - 1
        );
        assert_eq!(segment_ids(&*dir), vec![active]);
        assert_eq!(w.truncate_prefix(EntryId::new(u64::MAX - 1)).unwrap(), 0);
        assert_eq!(w.active_segment().get(), active);
        let id = w.append_durable(b"after truncation").unwrap().get();
        assert_eq!(id, entries.len() as u64 + 1);
        w.close().unwrap();
        let mut want: Vec<Entry> = entries
            .iter()
            .filter(|e| e.0 >= active_first)
            .cloned()
            .collect();
        want.push((id, b"after truncation".to_vec()));
        for mode in [ReadMode::BestEffort, ReadMode::Strict] {
            let (got, _) = replay(&dir, mode).unwrap();
            assert_entries(&got, &want, &format!("pool {pool}, {mode:?}"));
        }
        let w = Wal::open(dir.clone(), o).unwrap();
        assert_eq!(w.next_entry_id().get(), id + 1);
    }
}

// ---------------------------------------------------------------------------
// 8. A second writer on a locked WAL

#[test]
fn second_writer_is_locked_out_on_both_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let fs1 = FsDirectory::arc(tmp.path()).unwrap();
    let fs2 = FsDirectory::arc(tmp.path()).unwrap();
    let mem = mem_dir().1;
    for (name, a, b) in [("memory", mem.clone(), mem), ("fs", fs1, fs2)] {
        let o = opts(SEG_8K, 0);
        let w = Wal::open(a.clone(), o.clone()).unwrap();
        w.append_durable(b"one").unwrap();
        for other in [&a, &b] {
            match Wal::open(other.clone(), o.clone()) {
                Err(Error::Locked { .. }) => {}
                r => panic!("{name}: second writer got {:?}", r.map(|_| ())),
            }
        }
        // Readers are not writers: they still read.
        let (got, _) = replay(&b, ReadMode::BestEffort).unwrap();
        assert_eq!(got, vec![(1, b"one".to_vec())], "{name}");
        // The first writer was not disturbed.
        assert_eq!(w.append_durable(b"two").unwrap().get(), 2);
        drop(w);
        let w = Wal::open(b.clone(), o).unwrap();
        assert_eq!(w.next_entry_id().get(), 3, "{name}");
    }
}

// ---------------------------------------------------------------------------
// 9. A retried sync reporting success after a failed one

#[test]
fn sync_after_a_failed_barrier_never_reports_success() {
    let o = opts(SEG_16K, 0);
    // The barrier of a sync fails.
    let (mem, dir) = mem_dir();
    let w = Wal::open(dir.clone(), o.clone()).unwrap();
    let mut acked = Vec::new();
    for id in 1..=5 {
        let p = payload(0, id, 300);
        w.append_durable(&p).unwrap();
        acked.push((id, p));
    }
    let unsynced: Vec<Entry> = (6..=7).map(|id| (id, payload(0, id, 300))).collect();
    for (_, p) in &unsynced {
        w.append(p).unwrap();
    }
    mem.inject(Fault::eio().on(OpKind::FlushRange));
    let e = w.sync().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(matches!(w.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(w.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(w.append(b"x"), Err(Error::Poisoned { .. })));
    assert!(matches!(
        w.append_durable(b"x"),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(w.durable_entry_id(), Some(EntryId::new(5)));
    assert!(matches!(w.close(), Err(Error::Poisoned { .. })));
    // No crash image loses what was reported durable; the rest is a prefix.
    let mut all = acked.clone();
    all.extend(unsynced);
    for pol in policies() {
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
        let (got, _) = replay(&img, ReadMode::BestEffort).unwrap();
        assert!(got.len() >= acked.len(), "{pol:?}: {}", describe(&got));
        assert_entries(&got, &all[..got.len()], &format!("{pol:?}"));
    }

    // The barrier that fails is a rotation's (sealing the full segment),
    // with every entry already durable: a later sync must still not say Ok.
    let (mem, dir) = mem_dir();
    let o = opts(SEG_8K, 0);
    let w = Wal::open(dir.clone(), o).unwrap();
    let big = payload(0, 1, max_payload(SEG_8K));
    w.append_durable(&big).unwrap();
    mem.inject(Fault::eio().on(OpKind::FlushRange));
    // The rotation leaves the seal for the next barrier, which fails.
    let e = w
        .append(b"needs a new segment")
        .and_then(|_| w.sync())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    match w.sync() {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("sync after a failed rotation barrier returned {other:?}"),
    }
    assert!(matches!(w.close(), Err(Error::Poisoned { .. })));
    // Entry 1 was acknowledged; entry 2 was appended but never
    // acknowledged: a crash image holds entry 1, or both.
    let appended = [(1, big.clone()), (2, b"needs a new segment".to_vec())];
    for pol in policies() {
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
        let (got, _) = replay(&img, ReadMode::BestEffort).unwrap();
        assert!(!got.is_empty(), "{pol:?}: the acknowledged entry is lost");
        assert_entries(&got, &appended[..got.len()], &format!("{pol:?}"));
    }
}

// ---------------------------------------------------------------------------
// 10. Resume decoding the whole WAL

#[test]
fn resume_reads_the_same_number_of_files_whatever_the_number_of_sealed_segments() {
    let o = opts(SEG_8K, 0);
    let max = max_payload(SEG_8K);
    let mut counts = Vec::new();
    for sealed in [20u64, 200] {
        let (_, dir) = mem_dir();
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        // One maximum entry fills a segment: `sealed` sealed segments plus
        // a few entries in the active one.
        for id in 1..=sealed {
            w.append(&payload(0, id, max)).unwrap();
        }
        for _ in 0..3 {
            w.append(b"tail").unwrap();
        }
        w.close().unwrap();
        assert_eq!(segment_ids(&*dir).len() as u64, sealed + 1);
        let counting = Counting::new(dir);
        let w = Wal::open(counting.clone(), o.clone()).unwrap();
        assert_eq!(w.next_entry_id().get(), sealed + 4);
        counts.push(counting.reads());
    }
    assert_eq!(
        counts[0], counts[1],
        "resume read {} files for 20 sealed segments, {} for 200",
        counts[0], counts[1]
    );
    assert!(counts[0] <= 2, "resume read {} files", counts[0]);
}

// ---------------------------------------------------------------------------
// 11. Best-effort mode tolerating damage in a non-final segment

#[test]
fn best_effort_rejects_damage_in_a_sealed_segment() {
    let o = opts(SEG_8K, 0);
    let (base, dir) = mem_dir();
    build(&dir, &o, &[600; 45]);
    assert!(segment_ids(&base).len() >= 4);
    let frames = frames_of(&*dir, 2);
    let mid = frames[frames.len() / 2];
    let seal = *frames.last().unwrap();
    assert_eq!(seal.kind, KIND_SEAL);
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "payload byte flipped mid-frame",
            Box::new(move |b| b[mid.off + FRAME_HEADER_LEN + 300] ^= 0x10),
        ),
        (
            "frame zeroed mid-segment",
            Box::new(move |b| b[mid.off..mid.end].fill(0)),
        ),
        (
            "seal zeroed",
            Box::new(move |b| b[seal.off..seal.end].fill(0)),
        ),
        ("header byte flipped", Box::new(|b| b[20] ^= 1)),
    ];
    for (name, damage) in &damages {
        let (_, d) = copy(&base);
        edit(&*d, &seg_path(2), |b| damage(b));
        for mode in [ReadMode::BestEffort, ReadMode::Strict] {
            let e = replay_err(&d, mode);
            assert!(is_corrupt(&e), "{name}, {mode:?}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// 12. A bad frame below the durable point in the final segment

#[test]
fn bad_frame_below_the_durable_point_is_corrupt_not_a_shorter_log() {
    let o = opts(SEG_16K, 0);
    let (base, dir) = mem_dir();
    let w = Wal::open(dir.clone(), o.clone()).unwrap();
    for id in 1..=3 {
        w.append_durable(&payload(0, id, 700)).unwrap();
    }
    // Written after 1..=3 were durable: their frames say so.
    for id in 4..=5 {
        w.append(&payload(0, id, 700)).unwrap();
    }
    w.sync().unwrap();
    drop(w);
    let frames = entry_frames(&*dir, 1);
    assert_eq!(frames.len(), 5);
    for victim in [1usize, 2] {
        let f = frames[victim];
        for (name, zero) in [("byte flipped", false), ("zeroed", true)] {
            let ctx = format!("entry {} {name}", f.id);
            let (_, d) = copy(&base);
            edit(&*d, &seg_path(1), |b| {
                if zero {
                    b[f.off..f.end].fill(0)
                } else {
                    b[f.off + FRAME_HEADER_LEN + 10] ^= 4
                }
            });
            for mode in [ReadMode::BestEffort, ReadMode::Strict] {
                let e = replay_err(&d, mode);
                assert!(
                    matches!(
                        corrupt_kind(&e),
                        Some(CorruptKind::BelowDurablePoint { .. })
                    ),
                    "{ctx}, {mode:?}: {e}"
                );
            }
            let e = open_err(&d, &o);
            assert!(is_corrupt(&e), "{ctx}: {e}");
        }
    }
    // Control: the last frame is covered by no later frame, so damage there
    // is a torn tail, not corruption.
    let (_, d) = copy(&base);
    let f = frames[4];
    edit(&*d, &seg_path(1), |b| b[f.off + FRAME_HEADER_LEN + 10] ^= 4);
    let (got, summary) = replay(&d, ReadMode::BestEffort).unwrap();
    assert_eq!(got.len(), 4);
    assert!(summary.torn_tail);
}

// ---------------------------------------------------------------------------
// Regressions for defects these tests found in zerodur

/// A process killed after creating the WAL directory, before making its
/// name durable, leaves a directory the next open must not trust as is.
#[test]
fn open_makes_an_existing_wal_directory_name_durable() {
    let (mem, dir) = mem_dir();
    mem.create_dir_all(WAL_DIR).unwrap();
    let w = Wal::open(dir, opts(SEG_8K, 0)).unwrap();
    w.append_durable(b"acknowledged").unwrap();
    for pol in policies() {
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
        let (got, _) = replay(&img, ReadMode::BestEffort).unwrap();
        assert_eq!(got, vec![(1, b"acknowledged".to_vec())], "{pol:?}");
    }
}

/// A writer killed in the middle of a rotation (new segment created, its
/// name not yet durable): the next writer resumes in that segment and must
/// make its name durable before acknowledging anything in it.
#[test]
fn resume_makes_segment_names_left_by_a_killed_writer_durable() {
    let o = opts(SEG_8K, 0);
    let big = payload(0, 1, max_payload(SEG_8K));
    let dry = MemoryDirectory::new();
    {
        let w = Wal::open(Arc::new(dry.clone()), o.clone()).unwrap();
        w.append_durable(&big).unwrap();
        w.append(b"rotates").unwrap();
    }
    let log = dry.op_log();
    let alloc = log
        .iter()
        .position(|r| r.kind == OpKind::Allocate && r.path == seg_path(2))
        .unwrap();
    let dir_sync = (alloc..log.len())
        .find(|&i| log[i].kind == OpKind::SyncDir)
        .unwrap();
    // Killed just before the rotation's directory sync.
    let (mem, dir) = mem_dir();
    mem.halt_after(log[dir_sync].seq - 1);
    {
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        w.append_durable(&big).unwrap();
        assert!(w.append(b"rotates").is_err());
    }
    mem.resume();
    let w = Wal::open(dir, o).unwrap();
    assert_eq!(w.active_segment().get(), 2);
    let id = w.append_durable(b"acknowledged").unwrap().get();
    assert_eq!(id, 2);
    for pol in policies() {
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
        let (got, _) = replay(&img, ReadMode::BestEffort).unwrap();
        assert_entries(
            &got,
            &[(1, big.clone()), (2, b"acknowledged".to_vec())],
            &format!("{pol:?}"),
        );
    }
}

/// A writer killed with unsynced entries; the next writer's resume is cut
/// by a power loss. Its resume marker must never reach the disk without the
/// entries before it: a marker that did would carry an epoch the next
/// resume reuses, and the log could never be opened cleanly again.
#[test]
fn resume_marker_never_reaches_the_disk_before_the_entries_it_follows() {
    let o = opts(SEG_16K, 0);
    let killed = || {
        let (mem, dir) = mem_dir();
        let w = Wal::open(dir, o.clone()).unwrap();
        w.append_durable(b"durable").unwrap();
        for id in 2..=4 {
            w.append(&payload(0, id, 1500)).unwrap();
        }
        mem
    };
    let start = killed().op_count();
    let pols: Vec<CrashPolicy> = (0..64).map(CrashPolicy::seeded).collect();
    for k in 0.. {
        let mem = killed();
        mem.halt_after(start + k);
        let opened = Wal::open(Arc::new(mem.clone()), o.clone());
        let halted = mem.is_halted();
        if !halted {
            opened.unwrap();
        }
        for pol in &pols {
            let ctx = format!("resume cut after op {k}, {pol:?}");
            let img: Arc<dyn Directory> = Arc::new(mem.crash_image(pol));
            let (before, _) = replay(&img, ReadMode::BestEffort).unwrap();
            let w = Wal::open(img.clone(), o.clone()).unwrap();
            let id = w.append_durable(b"next life").unwrap().get();
            w.close().unwrap();
            let mut want = before;
            want.push((id, b"next life".to_vec()));
            for mode in [ReadMode::BestEffort, ReadMode::Strict] {
                let (got, _) = replay(&img, mode)
                    .unwrap_or_else(|e| panic!("{ctx}: {mode:?} replay failed: {e}"));
                assert_entries(&got, &want, &ctx);
            }
            Wal::open(img.clone(), o.clone())
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        }
        if !halted {
            break;
        }
    }
}

/// After a failed barrier, the documented recovery is to reopen. The
/// reopened writer finds the failed barrier's bytes in the page cache, where
/// no later barrier makes them durable unless they are written again: resume
/// must not acknowledge them (nor anything after them) on the page cache's
/// word.
#[test]
fn reopen_after_a_failed_barrier_makes_the_resumed_tail_durable() {
    let big = payload(0, 1, max_payload(SEG_8K));
    // (what fails, fault, whether the failing call is a rotation)
    let cases = [
        ("entry barrier", OpKind::FlushRange, false),
        ("rotation seal barrier", OpKind::FlushRange, true),
        ("new segment header sync", OpKind::SyncFile, true),
    ];
    for (name, kind, rotate) in cases {
        let (mem, dir) = mem_dir();
        let o = opts(SEG_8K, 0);
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        let first = if rotate {
            big.clone()
        } else {
            payload(0, 1, 300)
        };
        w.append_durable(&first).unwrap();
        let mut want = vec![(1, first)];
        mem.inject(Fault::eio().on(kind));
        if rotate {
            // The next append needs a new segment. Either the rotation
            // fails (the new header's sync) and the entry is never written,
            // or the rotation leaves the seal for the next barrier, which
            // fails: the entry is not acknowledged, but the page cache shows
            // it and the reopened writer resumes after it.
            match w.append(b"unacknowledged") {
                Err(_) => {}
                Ok(id) => {
                    assert!(w.sync().is_err(), "{name}");
                    want.push((id.get(), b"unacknowledged".to_vec()));
                }
            }
        } else {
            // Entry 2 is not acknowledged, but the page cache shows it, and
            // the reopened writer resumes after it: from then on it must be
            // durable.
            let p = payload(0, 2, 300);
            w.append(&p).unwrap();
            assert!(w.sync().is_err(), "{name}");
            want.push((2, p));
        }
        drop(w);
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        assert_eq!(w.next_entry_id().get(), want.len() as u64 + 1, "{name}");
        let id = w.append_durable(b"acknowledged").unwrap().get();
        want.push((id, b"acknowledged".to_vec()));
        drop(w);
        for pol in policies() {
            let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
            let (got, _) = replay(&img, ReadMode::BestEffort)
                .unwrap_or_else(|e| panic!("{name}, {pol:?}: {e}"));
            assert_entries(&got, &want, &format!("{name}, {pol:?}"));
        }
    }
}

/// A reopen whose resume-marker barrier failed leaves the marker visible in
/// the page cache but maybe never on disk. The next reopen walks through it
/// (a new epoch) and writes its own marker after it: were the first marker
/// not written again before that one's barrier, a power loss could keep the
/// later marker and lose the earlier one, and every later open would find a
/// later epoch where the log ends: damage no crash can produce, and a log
/// that never opens again.
#[test]
fn a_resume_marker_whose_barrier_failed_is_made_durable_by_the_next_resume() {
    let (mem, dir) = mem_dir();
    let o = opts(SEG_16K, 0);
    let w = Wal::open(dir.clone(), o.clone()).unwrap();
    let mut want = Vec::new();
    for id in 1..=3 {
        let p = payload(0, id, 200);
        w.append_durable(&p).unwrap();
        want.push((id, p));
    }
    drop(w);
    // Resume flushes the log up to the tail (1st range flush), then the
    // marker (2nd): the marker's barrier fails.
    mem.inject(Fault::eio().on(OpKind::FlushRange).nth(2));
    assert!(Wal::open(dir.clone(), o.clone()).is_err());
    mem.clear_faults();
    let w = Wal::open(dir.clone(), o.clone()).unwrap();
    assert_eq!(w.next_entry_id().get(), 4);
    let p = payload(0, 4, 200);
    w.append_durable(&p).unwrap();
    want.push((4, p));
    drop(w);
    for pol in policies() {
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
        let (got, _) =
            replay(&img, ReadMode::BestEffort).unwrap_or_else(|e| panic!("{pol:?}: {e}"));
        assert_entries(&got, &want, &format!("{pol:?}"));
        Wal::open(img, o.clone()).unwrap_or_else(|e| panic!("{pol:?}: reopen: {e}"));
    }
}

/// A valid frame of a later epoch past the tail that proves nothing (its id
/// is below the next one: an earlier life's, or foreign) still raises the
/// epoch resume starts: the new frames must never share an epoch with it,
/// whether it lies inside the window searched for proof or beyond it.
#[test]
fn resume_starts_an_epoch_above_every_frame_past_the_tail() {
    const WINDOW: usize = 1 << 20;
    let seg = 4u64 << 20;
    let o = opts(seg, 0);
    for (at, raise) in [(256, 5), (2 * WINDOW, 9), (WINDOW - 64, 3)] {
        let (_m, dir) = mem_dir();
        build(&dir, &o, &[40, 40, 40]);
        let path = seg_path(1);
        let before = frames_of(&*dir, 1);
        let tail = before.last().unwrap().end;
        let epoch = before.last().unwrap().epoch;
        let first = before[0];
        edit(&*dir, &path, |b| {
            let copy = b[first.off..first.end].to_vec();
            let off = tail + at;
            b[off..off + copy.len()].copy_from_slice(&copy);
            b[off + 24..off + 32].copy_from_slice(&(epoch + raise).to_le_bytes());
            fix_frame_crc(b, off);
        });
        let stale = frame_at(&dir.read(&path).unwrap(), tail + at).unwrap();
        assert_eq!(stale.epoch, epoch + raise);
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        assert_eq!(w.append(b"after").unwrap().get(), 4);
        w.close().unwrap();
        let after = frames_of(&*dir, 1);
        let new = after
            .iter()
            .find(|f| f.id == 4 && f.kind == KIND_ENTRY)
            .unwrap();
        assert!(
            new.epoch > epoch + raise,
            "stale frame {raise} epochs up at tail + {at}: new epoch {} (was {epoch})",
            new.epoch
        );
        let (got, _) = replay(&dir, ReadMode::Strict).unwrap();
        assert_eq!(got.len(), 4);
    }
}
