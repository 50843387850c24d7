//! Salvage, the opt-in copy of a damaged log's longest provable prefix:
//! what it keeps (exactly what best-effort replay yields before it stops),
//! what it reports (numbers and paths exact), that it never changes the
//! source, and that the copy replays strictly and accepts appends at the
//! next id. WAL and record log, on `MemoryDirectory` and one `FsDirectory`.

use std::collections::BTreeMap;
use std::sync::Arc;

use zerodur::wal::{
    salvage, EntryId, ReadMode, SalvageOptions, SalvageReport, SegmentId, SyncPolicy, Wal,
    WalOptions, WalReader,
};
use zerodur::{
    CorruptKind, Directory, Error, FsDirectory, MemoryDirectory, RecordLog, RecordLogMode,
};

const SEGMENT_BYTES: u64 = 8192;
/// Entries appended one at a time before the batch, and after it.
const BEFORE_BATCH: u64 = 150;
const AFTER_BATCH: u64 = 150;
const BATCH: u64 = 5;

type Model = Vec<(u64, Vec<u8>)>;

fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 700) as usize + 1;
    (0..len).map(|j| (i as usize * 7 + j * 13) as u8).collect()
}

/// A source WAL of several 8 KiB segments, every append durable (so later
/// frames prove earlier ones durable), with one batch in a sealed segment.
struct Source {
    dir: Arc<dyn Directory>,
    model: Model,
    /// First entry id of each segment; index = segment id - 1.
    firsts: Vec<u64>,
    /// First and last id of the batch.
    batch: (u64, u64),
}

impl Source {
    fn build(dir: Arc<dyn Directory>) -> Source {
        let opts = WalOptions::new("wal")
            .segment_size_bytes(SEGMENT_BYTES)
            .sync_policy(SyncPolicy::Always);
        let wal = Wal::open(dir.clone(), opts).unwrap();
        let mut model = Vec::new();
        for i in 1..=BEFORE_BATCH {
            assert_eq!(wal.append(&payload(i)).unwrap().get(), i);
            model.push((i, payload(i)));
        }
        let first = BEFORE_BATCH + 1;
        let batch: Vec<Vec<u8>> = (first..first + BATCH).map(payload).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let (a, b) = wal.append_batch(&refs).unwrap().unwrap();
        model.extend((a.get()..=b.get()).zip(batch));
        // At least AFTER_BATCH more, and at least four in the final segment.
        let mut i = b.get() + 1;
        let final_first = |wal: &Wal| wal.segment_ranges().unwrap().last().unwrap().first.get();
        while i <= b.get() + AFTER_BATCH || i - final_first(&wal) < 4 {
            assert_eq!(wal.append(&payload(i)).unwrap().get(), i);
            model.push((i, payload(i)));
            i += 1;
        }
        let firsts = wal
            .segment_ranges()
            .unwrap()
            .iter()
            .map(|r| r.first.get())
            .collect();
        wal.close().unwrap();
        let src = Source {
            dir,
            model,
            firsts,
            batch: (a.get(), b.get()),
        };
        // The layout the tests rely on: the batch sits in a sealed segment
        // after segment 3, and the final segment holds several entries.
        assert!(src.segments() >= 8, "{} segments", src.segments());
        assert!(src.segment_of(src.batch.0) > 3);
        assert_eq!(src.segment_of(src.batch.0), src.segment_of(src.batch.1));
        assert!(src.segment_of(src.batch.1) < src.segments());
        assert!(src.last_id() - src.firsts[src.segments() as usize - 1] >= 3);
        src
    }

    fn segments(&self) -> u64 {
        self.firsts.len() as u64
    }

    fn last_id(&self) -> u64 {
        self.model.last().unwrap().0
    }

    fn first_of(&self, seg: u64) -> u64 {
        self.firsts[seg as usize - 1]
    }

    fn segment_of(&self, id: u64) -> u64 {
        self.firsts.iter().filter(|&&f| f <= id).count() as u64
    }

    /// Segment and offset of entry `id`'s frame.
    fn frame_of(&self, id: u64) -> (u64, usize) {
        let seg = self.segment_of(id);
        let bytes = self.dir.read(&seg_path(seg)).unwrap();
        let off = frames(&bytes)
            .into_iter()
            .find(|f| f.1 == id && f.2 != KIND_SEAL)
            .unwrap()
            .0;
        (seg, off)
    }

    /// What the dropped list must say when salvage stops in `from_seg` at
    /// `from_off`, given which header is unreadable: read from the damaged
    /// source's files (lengths, which exist) and the build's ranges.
    fn dropped_from(&self, from_seg: u64, from_off: u64, unreadable: Option<u64>) -> Vec<Dropped> {
        let exists = |s: u64| s <= self.segments() && self.dir.exists(&seg_path(s)).unwrap();
        let claim = |s: u64| (exists(s) && Some(s) != unreadable).then(|| self.first_of(s));
        (from_seg..=self.segments())
            .filter(|&s| exists(s))
            .map(|s| {
                let len = self.dir.len(&seg_path(s)).unwrap();
                let from = if s == from_seg { from_off } else { 0 };
                let end = if s < self.segments() {
                    claim(s + 1)
                } else {
                    None
                };
                (s, seg_path(s), claim(s), end, from, len - from)
            })
            .collect()
    }
}

const KIND_SEAL: u8 = 3;

/// `(offset, entry id, kind)` of every frame of a segment, up to its seal
/// (layout from FORMAT.md: 64-byte header, 32-byte frame headers with the
/// length at 4, the kind at 8 and the id at 16, 16-byte alignment).
fn frames(bytes: &[u8]) -> Vec<(usize, u64, u8)> {
    let mut out = Vec::new();
    let mut off = 64;
    while off + 32 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        let kind = bytes[off + 8];
        let id = u64::from_le_bytes(bytes[off + 16..off + 24].try_into().unwrap());
        if kind == 0 {
            break;
        }
        out.push((off, id, kind));
        if kind == KIND_SEAL {
            break;
        }
        off += (32 + len + 15) & !15;
    }
    out
}

fn seg_path(id: u64) -> String {
    format!("wal/{id:020}.seg")
}

/// Every file of `folder` and its bytes.
fn files(dir: &dyn Directory, folder: &str) -> BTreeMap<String, Vec<u8>> {
    dir.list(folder)
        .unwrap()
        .into_iter()
        .map(|n| {
            let p = format!("{folder}/{n}");
            let b = dir.read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn rewrite(dir: &dyn Directory, path: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = dir.read(path).unwrap();
    f(&mut b);
    dir.atomic_write(path, &b).unwrap();
}

fn replay_strict(dir: &Arc<dyn Directory>, wal: &str) -> Model {
    let mut out = Vec::new();
    WalReader::open(dir.clone(), wal, ReadMode::Strict)
        .unwrap()
        .replay(None, |id, b| {
            out.push((id.get(), b.to_vec()));
            Ok(())
        })
        .unwrap();
    out
}

type Dropped = (u64, String, Option<u64>, Option<u64>, u64, u64);

fn dropped(r: &SalvageReport) -> Vec<Dropped> {
    r.dropped
        .iter()
        .map(|d| {
            (
                d.segment.get(),
                d.path.clone(),
                d.first_entry.map(EntryId::get),
                d.end_entry.map(EntryId::get),
                d.from_offset,
                d.bytes,
            )
        })
        .collect()
}

fn lost(r: &SalvageReport) -> Option<(u64, u64, u64, u64)> {
    r.lost.map(|l| {
        (
            l.first.get(),
            l.last.get(),
            l.segments.0.get(),
            l.segments.1.get(),
        )
    })
}

/// Salvages `src` into a new directory and checks what holds for every
/// salvage: the source is unchanged, the first `kept` entries are kept and
/// replay strictly from the copy, and the copy appends at the next id.
fn salvage_and_check(src: &Source, kept: u64) -> SalvageReport {
    let before = files(&*src.dir, "wal");
    let dst = MemoryDirectory::arc();
    let report = salvage(
        src.dir.clone(),
        "wal",
        dst.clone(),
        SalvageOptions::new("out"),
    )
    .unwrap();
    assert_eq!(files(&*src.dir, "wal"), before, "the source changed");
    let want = &src.model[..kept as usize];
    assert_eq!(report.kept, kept, "{report}");
    assert_eq!(
        report.first_kept.map(EntryId::get),
        want.first().map(|e| e.0)
    );
    assert_eq!(report.last_kept.map(EntryId::get), want.last().map(|e| e.0));
    assert_eq!(
        (report.source.as_str(), report.destination.as_str()),
        ("wal", "out")
    );
    let Some(next) = report.next_entry else {
        assert!(!dst.exists("out").unwrap(), "nothing to continue from");
        return report;
    };
    assert_eq!(replay_strict(&dst, "out"), want);
    // The copy has the source's segment size.
    assert!(files(&*dst, "out")
        .iter()
        .filter(|(p, _)| p.ends_with(".seg"))
        .all(|(_, b)| b.len() as u64 == SEGMENT_BYTES));
    // The copy continues at the next id.
    let wal = Wal::open(dst.clone(), WalOptions::new("out")).unwrap();
    assert_eq!(wal.next_entry_id(), next);
    assert_eq!(wal.append(b"after").unwrap(), next);
    wal.close().unwrap();
    let after = replay_strict(&dst, "out");
    assert_eq!(after.last(), Some(&(next.get(), b"after".to_vec())));
    assert_eq!(after.len() as u64, kept + 1);
    report
}

fn stop_of(r: &SalvageReport) -> (String, Option<u64>, Option<u64>) {
    let s = r.stop.as_ref().expect("salvage stopped");
    (
        s.path.to_str().unwrap().to_owned(),
        s.offset,
        s.segment.map(SegmentId::get),
    )
}

fn memory_source() -> Source {
    Source::build(MemoryDirectory::arc())
}

#[test]
fn clean_source_salvages_to_an_identical_log() {
    let src = memory_source();
    let r = salvage_and_check(&src, src.model.len() as u64);
    assert!(r.clean && !r.torn_tail, "{r}");
    assert!(r.stop.is_none() && r.dropped.is_empty() && r.lost.is_none());
    assert!(r.missing_segments.is_empty());
    assert_eq!(r.next_entry, Some(EntryId::new(src.last_id() + 1)));
    assert!(r.to_string().contains("the source is clean"), "{r}");
}

#[test]
fn flipped_byte_in_a_sealed_segment_keeps_the_entries_before_it() {
    let src = memory_source();
    let k = src.first_of(3) + 2;
    let (seg, off) = src.frame_of(k);
    assert_eq!(seg, 3);
    rewrite(&*src.dir, &seg_path(3), |b| b[off + 32] ^= 0x40);

    let r = salvage_and_check(&src, k - 1);
    assert!(!r.clean);
    assert_eq!(stop_of(&r), (seg_path(3), Some(off as u64), Some(3)));
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::BadFrame(_),
            ..
        }
    ));
    assert_eq!(dropped(&r), src.dropped_from(3, off as u64, None));
    let n = src.segments();
    assert_eq!(lost(&r), Some((k, src.first_of(n) - 1, 3, n - 1)));
    assert!(r.missing_segments.is_empty());
    let text = r.to_string();
    let line = format!(
        "entries {k}..={} in segments 3..={} were not salvaged",
        src.first_of(n) - 1,
        n - 1
    );
    assert!(text.contains(&line), "{text}");
}

#[test]
fn damaged_batch_member_drops_the_whole_batch() {
    let src = memory_source();
    let (a, _) = src.batch;
    let (seg, first_off) = src.frame_of(a);
    let (_, second_off) = src.frame_of(a + 1);
    rewrite(&*src.dir, &seg_path(seg), |b| b[second_off + 32] ^= 1);

    let r = salvage_and_check(&src, a - 1);
    assert_eq!(
        stop_of(&r),
        (seg_path(seg), Some(first_off as u64), Some(seg))
    );
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::BadFrame("incomplete batch"),
            ..
        }
    ));
    assert_eq!(dropped(&r), src.dropped_from(seg, first_off as u64, None));
    let n = src.segments();
    assert_eq!(lost(&r), Some((a, src.first_of(n) - 1, seg, n - 1)));
}

#[test]
fn damage_below_the_durable_point_in_the_final_segment_stops_there() {
    let src = memory_source();
    let n = src.segments();
    let k = src.first_of(n) + 1;
    let (seg, off) = src.frame_of(k);
    assert_eq!(seg, n);
    rewrite(&*src.dir, &seg_path(n), |b| b[off + 32] ^= 0x80);

    let r = salvage_and_check(&src, k - 1);
    assert!(!r.clean);
    assert_eq!(stop_of(&r), (seg_path(n), Some(off as u64), Some(n)));
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::BelowDurablePoint { .. },
            ..
        }
    ));
    assert_eq!(dropped(&r), src.dropped_from(n, off as u64, None));
    assert_eq!(r.dropped.len(), 1);
    assert_eq!(lost(&r), None, "no later header tells");
}

#[test]
fn damage_to_the_last_frame_before_a_clean_close_is_proven_durable() {
    // `close` writes a marker proving every frame before it durable: the
    // last frame's damage is not a torn write.
    let src = memory_source();
    let last = src.last_id();
    let (seg, off) = src.frame_of(last);
    rewrite(&*src.dir, &seg_path(seg), |b| b[off + 32] ^= 1);

    let r = salvage_and_check(&src, last - 1);
    assert!(!r.clean, "{r}");
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::BelowDurablePoint { .. },
            ..
        }
    ));
}

#[test]
fn damage_to_the_last_frame_without_a_close_reads_as_a_torn_tail() {
    // FORMAT.md, "Known limits": without the close marker no later frame
    // proves the last one durable, so replay (and salvage) end the log
    // before it, as after a crash.
    let src = memory_source();
    let last = src.last_id();
    let (seg, off) = src.frame_of(last);
    // The close marker, the frame after the last entry, never landed.
    rewrite(&*src.dir, &seg_path(seg), |b| {
        let marker = off + 32 + frame_payload_end(b, off);
        b[marker..marker + 32].fill(0);
    });
    rewrite(&*src.dir, &seg_path(seg), |b| b[off + 32] ^= 1);

    let r = salvage_and_check(&src, last - 1);
    assert!(r.clean && r.torn_tail, "{r}");
    assert!(r.stop.is_none() && r.dropped.is_empty() && r.lost.is_none());
}

/// Bytes from the end of the frame header at `off` to the end of its frame
/// (payload and padding): where the next frame starts, minus 32.
fn frame_payload_end(b: &[u8], off: usize) -> usize {
    let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
    (32 + len).next_multiple_of(16) - 32
}

#[test]
fn zeroed_segment_header_stops_at_the_seal_before_it() {
    let src = memory_source();
    rewrite(&*src.dir, &seg_path(3), |b| b[..64].fill(0));

    let r = salvage_and_check(&src, src.first_of(3) - 1);
    assert_eq!(stop_of(&r), (seg_path(3), Some(0), Some(3)));
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::BadHeader(_),
            offset: 0,
            ..
        }
    ));
    assert_eq!(dropped(&r), src.dropped_from(3, 0, Some(3)));
    assert_eq!(r.dropped[0].first_entry, None);
    let n = src.segments();
    assert_eq!(
        lost(&r),
        Some((src.first_of(3), src.first_of(n) - 1, 3, n - 1))
    );
}

#[test]
fn missing_middle_segment_stops_at_the_gap() {
    let src = memory_source();
    src.dir.remove(&seg_path(3)).unwrap();

    let r = salvage_and_check(&src, src.first_of(3) - 1);
    // The error names the segment after the gap; the first segment not
    // salvaged is the missing one.
    assert_eq!(stop_of(&r), (seg_path(4), Some(0), Some(3)));
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::MissingSegment { segment: 3 },
            ..
        }
    ));
    assert_eq!(dropped(&r), src.dropped_from(4, 0, None));
    assert_eq!(r.missing_segments, [SegmentId::new(3)]);
    let n = src.segments();
    assert_eq!(
        lost(&r),
        Some((src.first_of(3), src.first_of(n) - 1, 3, n - 1))
    );
    assert!(r.to_string().contains("missing segments: 3"), "{r}");
}

#[test]
fn gap_after_the_damage_is_reported_with_the_dropped_segments() {
    let src = memory_source();
    let k = src.first_of(3) + 1;
    let (_, off) = src.frame_of(k);
    rewrite(&*src.dir, &seg_path(3), |b| b[off + 32] ^= 1);
    src.dir.remove(&seg_path(6)).unwrap();
    src.dir.remove(&seg_path(7)).unwrap();

    let r = salvage_and_check(&src, k - 1);
    assert_eq!(stop_of(&r), (seg_path(3), Some(off as u64), Some(3)));
    let d = dropped(&r);
    assert_eq!(d, src.dropped_from(3, off as u64, None));
    // Segment 5's end is unknown: segment 6 is gone.
    assert_eq!(d[2].0, 5);
    assert_eq!((d[2].2, d[2].3), (Some(src.first_of(5)), None));
    assert_eq!(r.missing_segments, [SegmentId::new(6), SegmentId::new(7)]);
    let n = src.segments();
    assert_eq!(lost(&r), Some((k, src.first_of(n) - 1, 3, n - 1)));
}

#[test]
fn segment_cut_short_is_dropped_whole() {
    let src = memory_source();
    rewrite(&*src.dir, &seg_path(3), |b| b.truncate(4096));

    let r = salvage_and_check(&src, src.first_of(3) - 1);
    assert_eq!(stop_of(&r), (seg_path(3), Some(40), Some(3)));
    assert!(matches!(
        *r.stop.as_ref().unwrap().error,
        Error::Corrupt {
            kind: CorruptKind::LengthMismatch {
                expected: 8192,
                found: 4096
            },
            ..
        }
    ));
    // Its header still decodes: its claim is reported, the whole file dropped.
    let d = dropped(&r);
    assert_eq!(d, src.dropped_from(3, 0, None));
    assert_eq!(
        d[0],
        (
            3,
            seg_path(3),
            Some(src.first_of(3)),
            Some(src.first_of(4)),
            0,
            4096
        )
    );
}

#[test]
fn unreadable_first_header_keeps_nothing_and_creates_nothing() {
    let src = memory_source();
    rewrite(&*src.dir, &seg_path(1), |b| b[..64].fill(0));

    let r = salvage_and_check(&src, 0);
    assert_eq!(r.next_entry, None);
    assert_eq!(stop_of(&r), (seg_path(1), Some(0), Some(1)));
    assert_eq!(dropped(&r), src.dropped_from(1, 0, Some(1)));
    assert_eq!(r.dropped.len() as u64, src.segments());
    assert_eq!(lost(&r), None, "the first lost id is unknown");
    assert!(r.to_string().contains("was not created"), "{r}");
}

#[test]
fn damaged_first_frame_keeps_an_empty_log_at_the_right_id() {
    let src = memory_source();
    let (_, off) = src.frame_of(1);
    rewrite(&*src.dir, &seg_path(1), |b| b[off + 32] ^= 1);

    let r = salvage_and_check(&src, 0);
    assert_eq!(r.next_entry, Some(EntryId::new(1)));
    assert_eq!(stop_of(&r), (seg_path(1), Some(64), Some(1)));
    let n = src.segments();
    assert_eq!(lost(&r), Some((1, src.first_of(n) - 1, 1, n - 1)));
}

#[test]
fn occupied_or_overlapping_destination_is_refused() {
    let src = memory_source();
    let dst = MemoryDirectory::arc();
    Wal::open(dst.clone(), WalOptions::new("out"))
        .unwrap()
        .close()
        .unwrap();
    let before = files(&*dst, "out");
    let e = salvage(
        src.dir.clone(),
        "wal",
        dst.clone(),
        SalvageOptions::new("out"),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::AlreadyExists { path } if path.to_str() == Some("out")),
        "{e}"
    );
    assert_eq!(files(&*dst, "out"), before);

    // The source folder itself, or a folder inside it, in the same handle.
    for to in ["wal", "wal/out"] {
        let e = salvage(
            src.dir.clone(),
            "wal",
            src.dir.clone(),
            SalvageOptions::new(to),
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::AlreadyExists { .. } | Error::InvalidArgument { .. }
            ),
            "{to}: {e}"
        );
    }
    assert!(!src.dir.exists("wal/out").unwrap());

    // An existing empty folder is fine, and so is another folder beside the
    // source in the same directory.
    let empty = MemoryDirectory::arc();
    empty.create_dir_all("out").unwrap();
    let r = salvage(src.dir.clone(), "wal", empty, SalvageOptions::new("out")).unwrap();
    assert!(r.clean);
    let r = salvage(
        src.dir.clone(),
        "wal",
        src.dir.clone(),
        SalvageOptions::new("out"),
    )
    .unwrap();
    assert_eq!(replay_strict(&src.dir, "out"), src.model);
    assert_eq!(r.kept, src.model.len() as u64);
}

#[test]
fn salvage_on_fs_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Source::build(FsDirectory::arc(tmp.path().join("src")).unwrap());
    let k = src.first_of(2) + 1;
    let (seg, off) = src.frame_of(k);
    rewrite(&*src.dir, &seg_path(seg), |b| b[off + 32] ^= 4);

    let before = files(&*src.dir, "wal");
    let dst = FsDirectory::arc(tmp.path().join("dst")).unwrap();
    let r = salvage(
        src.dir.clone(),
        "wal",
        dst.clone(),
        SalvageOptions::new("wal"),
    )
    .unwrap();
    assert_eq!(files(&*src.dir, "wal"), before);
    assert_eq!(r.kept, k - 1);
    assert_eq!(stop_of(&r), (seg_path(2), Some(off as u64), Some(2)));
    assert_eq!(dropped(&r), src.dropped_from(2, off as u64, None));
    assert_eq!(replay_strict(&dst, "wal"), src.model[..k as usize - 1]);
    let wal = Wal::open(dst.clone(), WalOptions::new("wal")).unwrap();
    assert_eq!(wal.append(b"next").unwrap().get(), k);
}

// ---------------------------------------------------------------------------
// Record log

const RECORDS: usize = 200;

fn record(i: usize) -> Vec<u8> {
    (0..(i * 53 % 300)).map(|j| (i * 3 + j) as u8).collect()
}

/// A record log of `RECORDS` records, synced every ten; returns each
/// record's frame offset.
fn record_source(dir: &Arc<dyn Directory>) -> Vec<u64> {
    let mut log = RecordLog::open(dir.clone(), "meta.log").unwrap();
    let mut offsets = Vec::new();
    let mut off = 16u64;
    for i in 0..RECORDS {
        offsets.push(off);
        log.append(&record(i)).unwrap();
        off += (24 + record(i).len() as u64 + 7) & !7;
        if i % 10 == 9 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    assert_eq!(dir.len("meta.log").unwrap(), off);
    offsets
}

/// Salvages `meta.log` into a new directory; checks that the source is
/// unchanged, the copy holds the first `kept` records and appends after
/// them.
fn record_salvage_and_check(
    dir: &Arc<dyn Directory>,
    kept: usize,
) -> zerodur::recordlog::RecordSalvageReport {
    let before = dir.read("meta.log").unwrap();
    let dst = MemoryDirectory::arc();
    let r = RecordLog::salvage(dir.clone(), "meta.log", dst.clone(), "kept.log").unwrap();
    assert_eq!(dir.read("meta.log").unwrap(), before, "the source changed");
    assert_eq!(r.kept, kept as u64, "{r}");
    assert_eq!(r.dropped_bytes, before.len() as u64 - r.stop_offset);
    let want: Vec<Vec<u8>> = (0..kept).map(record).collect();
    let got: Vec<Vec<u8>> = RecordLog::read(&*dst, "kept.log", RecordLogMode::Strict)
        .unwrap()
        .iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(got, want);
    let mut log = RecordLog::open(dst.clone(), "kept.log").unwrap();
    assert_eq!(log.len(), kept as u64);
    log.append(b"after").unwrap();
    log.sync().unwrap();
    drop(log);
    let all = RecordLog::read(&*dst, "kept.log", RecordLogMode::Strict).unwrap();
    assert_eq!(all.len(), kept as u64 + 1);
    assert_eq!(all.iter().last(), Some(&b"after"[..]));
    r
}

#[test]
fn record_log_clean_source_salvages_to_a_copy() {
    let dir = MemoryDirectory::arc();
    record_source(&dir);
    let r = record_salvage_and_check(&dir, RECORDS);
    assert!(r.clean && !r.torn_tail && r.error.is_none());
    assert_eq!(
        (r.stop_offset, r.dropped_bytes),
        (dir.len("meta.log").unwrap(), 0)
    );
}

#[test]
fn record_log_damage_below_the_durable_point_keeps_the_records_before_it() {
    let dir = MemoryDirectory::arc();
    let offsets = record_source(&dir);
    let at = offsets[50];
    rewrite(&*dir, "meta.log", |b| b[at as usize + 20] ^= 2);
    let r = record_salvage_and_check(&dir, 50);
    assert!(!r.clean && !r.torn_tail);
    assert_eq!(r.stop_offset, at);
    assert!(matches!(
        r.error.as_deref(),
        Some(Error::Corrupt { offset, kind: CorruptKind::BelowDurablePoint { .. }, .. }) if *offset == at
    ));
    assert!(r.to_string().contains(&format!("from offset {at}")), "{r}");
}

#[test]
fn record_log_torn_tail_is_dropped_as_open_would_cut_it() {
    let dir = MemoryDirectory::arc();
    let offsets = record_source(&dir);
    let at = offsets[RECORDS - 2];
    rewrite(&*dir, "meta.log", |b| b[at as usize + 4] ^= 1);
    let r = record_salvage_and_check(&dir, RECORDS - 2);
    assert!(r.clean && r.torn_tail && r.error.is_none());
    assert_eq!(r.stop_offset, at);
    assert!(r.dropped_bytes > 0);
}

#[test]
fn record_log_bad_header_keeps_nothing() {
    let dir = MemoryDirectory::arc();
    record_source(&dir);
    rewrite(&*dir, "meta.log", |b| b[0] ^= 1);
    let r = record_salvage_and_check(&dir, 0);
    assert_eq!(
        (r.stop_offset, r.dropped_bytes),
        (0, dir.len("meta.log").unwrap())
    );
    assert!(matches!(
        r.error.as_deref(),
        Some(Error::Corrupt {
            offset: 0,
            kind: CorruptKind::BadMagic,
            ..
        })
    ));
}

#[test]
fn record_log_existing_destination_is_refused() {
    let dir = MemoryDirectory::arc();
    record_source(&dir);
    let e = RecordLog::salvage(dir.clone(), "meta.log", dir.clone(), "meta.log").unwrap_err();
    assert!(matches!(&e, Error::AlreadyExists { path } if path.to_str() == Some("meta.log")));
    let dst = MemoryDirectory::arc();
    dst.atomic_write("kept.log", b"mine").unwrap();
    let e = RecordLog::salvage(dir.clone(), "meta.log", dst.clone(), "kept.log").unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }));
    assert_eq!(dst.read("kept.log").unwrap(), b"mine");
}

#[test]
fn record_log_salvage_on_fs_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::arc(tmp.path()).unwrap();
    let offsets = record_source(&dir);
    rewrite(&*dir, "meta.log", |b| b[offsets[100] as usize + 30] ^= 1);
    let before = dir.read("meta.log").unwrap();
    let r = RecordLog::salvage(dir.clone(), "meta.log", dir.clone(), "kept.log").unwrap();
    assert_eq!(dir.read("meta.log").unwrap(), before);
    assert_eq!((r.kept, r.stop_offset), (100, offsets[100]));
    let kept = RecordLog::read(&*dir, "kept.log", RecordLogMode::Strict).unwrap();
    assert_eq!(kept.len(), 100);
}
