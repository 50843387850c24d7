//! Committed binary WAL fixtures, clean and corrupt, pin the on-disk format:
//! each case under `tests/fixtures/wal/<case>/wal/` has an exact expected
//! replay result (entries, or an error with its path and offset).
//!
//! The fixtures are written by `regenerate_wal_fixtures` (ignored; run it
//! with `cargo test --test wal_fixtures -- --ignored` after a deliberate
//! format change) through `FsDirectory` with 8 KiB segments, then damaged
//! deterministically. `fixtures_regenerate_byte_identical` rebuilds every
//! case in a temporary directory and compares it with the committed bytes:
//! an unintended format change fails there.
//!
//! Tests only ever open a copy of a fixture.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zerodur::wal::{EntryId, ReadMode, ReplaySummary, Wal, WalOptions, WalReader};
use zerodur::{CorruptKind, Directory, Error, FsDirectory, MemoryDirectory};

const WAL_DIR: &str = "wal";
const SEGMENT_SIZE_BYTES: u64 = 8 * 1024;

// Layout constants from FORMAT.md, used to find and damage frames.
const SEGMENT_HEADER_BYTES: usize = 64;
const FRAME_HEADER_BYTES: usize = 32;
const SECTOR_BYTES: usize = 512;

const CASES: &[&str] = &[
    "clean",
    "torn_tail",
    "bad_crc_sealed",
    "missing_segment",
    "stale_recycled",
    "wrong_version",
];

/// Name of segment `id` inside the WAL directory.
fn seg(id: u64) -> String {
    format!("{WAL_DIR}/{id:020}.seg")
}

/// Payload of entry `id`: recognizable text (`<tag>-<id>;` repeated) of
/// `len` bytes.
fn payload(tag: &str, id: u64, len: usize) -> Vec<u8> {
    format!("{tag}-{id:04};")
        .bytes()
        .cycle()
        .take(len)
        .collect()
}

/// Length of entry `id` in the varied-size cases.
fn varied_len(id: u64) -> usize {
    (id * 37 % 300) as usize
}

fn opts() -> WalOptions {
    WalOptions::new(WAL_DIR).segment_size_bytes(SEGMENT_SIZE_BYTES)
}

// ---------------------------------------------------------------------------
// Generation.

/// Appends entries `1..=n` with [`varied_len`] lengths, every tenth durable.
fn append_varied(wal: &Wal, tag: &str, n: u64) {
    for id in 1..=n {
        let p = payload(tag, id, varied_len(id));
        let got = if id % 10 == 0 {
            wal.append_durable(&p)
        } else {
            wal.append(&p)
        }
        .unwrap();
        assert_eq!(got.get(), id);
    }
}

/// Closes `wal` and removes the lock file, which is not part of the log.
fn finish(wal: Wal, root: &Path) {
    wal.close().unwrap();
    fs::remove_file(root.join(WAL_DIR).join("LOCK")).unwrap();
    pin_birth_times(root);
}

/// [`finish`] for a writer that synced and stopped without `close` (no close
/// marker after the last frame).
fn finish_synced(wal: Wal, root: &Path) {
    wal.sync().unwrap();
    drop(wal);
    fs::remove_file(root.join(WAL_DIR).join("LOCK")).unwrap();
    pin_birth_times(root);
}

/// A fixed birth time for every segment and pooled file, so the fixtures
/// regenerate byte-identical (the writer stores the wall clock).
const FIXTURE_BIRTH_MS: u64 = 1_700_000_000_000;

/// Replaces the birth time (header bytes 48..56) of every file of the WAL
/// folder with [`FIXTURE_BIRTH_MS`] and recomputes the header CRC.
fn pin_birth_times(root: &Path) {
    for entry in fs::read_dir(root.join(WAL_DIR)).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = fs::read(&path).unwrap();
        if bytes.len() < SEGMENT_HEADER_BYTES || !bytes.starts_with(b"ZDURWAL\x01") {
            continue;
        }
        bytes[48..56].copy_from_slice(&FIXTURE_BIRTH_MS.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, bytes).unwrap();
    }
}

/// 104 entries in three segments (two sealed): 100 single appends, then a
/// durable batch of four.
fn gen_clean(root: &Path) {
    let dir = FsDirectory::arc(root).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    append_varied(&wal, "clean", 100);
    let batch: Vec<Vec<u8>> = (101..=104).map(|id| payload("clean", id, 50)).collect();
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    let (a, b) = wal.append_batch_durable(&refs).unwrap().unwrap();
    assert_eq!((a.get(), b.get()), (101, 104));
    assert_eq!(wal.active_segment().get(), 3);
    finish(wal, root);
}

/// Entries 1..=60 over two segments; entry 60 (the last, 700 bytes) lost
/// every sector after its first one: a write torn by a power loss.
fn gen_torn_tail(root: &Path) {
    let dir = FsDirectory::arc(root).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    append_varied(&wal, "torn", 59);
    wal.append(&payload("torn", 60, 700)).unwrap();
    assert_eq!(wal.active_segment().get(), 2);
    // A crash, not a clean close: no marker proves the last frame durable.
    finish_synced(wal, root);
    let path = root.join(seg(2));
    let mut bytes = fs::read(&path).unwrap();
    let at = frame_offset(&bytes, 60);
    let end = at + frame_bytes(700);
    let cut = (at + 1).next_multiple_of(SECTOR_BYTES);
    assert!(cut < end, "the frame must span a sector boundary");
    bytes[cut..end].fill(0);
    fs::write(&path, bytes).unwrap();
}

/// Entries 1..=60 over two segments; one payload byte of entry 10, in the
/// sealed first segment, flipped.
fn gen_bad_crc_sealed(root: &Path) {
    let dir = FsDirectory::arc(root).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    append_varied(&wal, "crc", 60);
    assert_eq!(wal.active_segment().get(), 2);
    finish(wal, root);
    let path = root.join(seg(1));
    let mut bytes = fs::read(&path).unwrap();
    let at = frame_offset(&bytes, 10);
    bytes[at + FRAME_HEADER_BYTES + 3] ^= 0x20;
    fs::write(&path, bytes).unwrap();
}

/// The clean log with its middle segment deleted.
fn gen_missing_segment(root: &Path) {
    gen_clean(root);
    fs::remove_file(root.join(seg(2))).unwrap();
}

/// A recycled final segment. Life 1: segment 1 filled with 100-byte
/// "life1" entries, sealed, retired into the recycle pool. Segment 2 fills
/// up with "life2" entries, and segment 3 is segment 1's file, re-headed with
/// a new epoch, holding five more. Segment 2 is then retired (and its pooled
/// file deleted), and the zero slot after segment 3's tail is replaced by
/// the bytes life 1 had there — as if that write never reached the disk — so
/// the first thing after the tail is a frame that is valid in every respect
/// except its epoch.
fn gen_stale_recycled(root: &Path) {
    let dir = FsDirectory::arc(root).unwrap();
    let wal = Wal::open(dir.clone(), opts().recycle_capacity(1)).unwrap();
    let mut id = 0;
    let mut append = |wal: &Wal, tag: &str| {
        id += 1;
        assert_eq!(wal.append(&payload(tag, id, 100)).unwrap().get(), id);
    };
    while wal.active_segment().get() == 1 {
        append(&wal, "life1");
    }
    let seg1_last = wal.segment_ranges().unwrap()[0].end.unwrap().get() - 1;
    let life1 = dir.read(&seg(1)).unwrap();
    assert_eq!(wal.truncate_prefix(EntryId::new(seg1_last)).unwrap(), 1);
    while wal.active_segment().get() == 2 {
        append(&wal, "life2");
    }
    assert_eq!(wal.stats().recycled_reuses, 1);
    let seg2_last = wal.segment_ranges().unwrap()[0].end.unwrap().get() - 1;
    // The entry that triggered the rotation is the first of segment 3.
    for _ in 0..4 {
        append(&wal, "life2");
    }
    assert_eq!(wal.truncate_prefix(EntryId::new(seg2_last)).unwrap(), 1);
    // Stopped without `close`, so the stale frame planted below sits right
    // at the tail.
    finish_synced(wal, root);
    fs::remove_file(root.join(format!("{WAL_DIR}/{:020}.free", 2))).unwrap();

    let path = root.join(seg(3));
    let mut bytes = fs::read(&path).unwrap();
    let tail = SEGMENT_HEADER_BYTES + 5 * frame_bytes(100);
    assert!(bytes[tail..tail + FRAME_HEADER_BYTES]
        .iter()
        .all(|&b| b == 0));
    bytes[tail..tail + FRAME_HEADER_BYTES].copy_from_slice(&life1[tail..tail + FRAME_HEADER_BYTES]);
    fs::write(&path, bytes).unwrap();
}

/// Five entries in one segment whose header claims format version 2 (with
/// a correct header CRC: not damage, a newer format).
fn gen_wrong_version(root: &Path) {
    let dir = FsDirectory::arc(root).unwrap();
    let wal = Wal::open(dir, opts()).unwrap();
    append_varied(&wal, "version", 5);
    finish(wal, root);
    let path = root.join(seg(1));
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, bytes).unwrap();
}

fn generate(case: &str, root: &Path) {
    if root.exists() {
        fs::remove_dir_all(root).unwrap();
    }
    fs::create_dir_all(root).unwrap();
    match case {
        "clean" => gen_clean(root),
        "torn_tail" => gen_torn_tail(root),
        "bad_crc_sealed" => gen_bad_crc_sealed(root),
        "missing_segment" => gen_missing_segment(root),
        "stale_recycled" => gen_stale_recycled(root),
        "wrong_version" => gen_wrong_version(root),
        other => panic!("unknown fixture case {other}"),
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal")
}

/// Rewrites the committed fixtures. Run explicitly, after a deliberate
/// format change: `cargo test --test wal_fixtures -- --ignored`.
#[test]
#[ignore = "rewrites the committed fixtures"]
fn regenerate_wal_fixtures() {
    for case in CASES {
        generate(case, &fixtures_dir().join(case));
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn frame_bytes(len: usize) -> usize {
    (FRAME_HEADER_BYTES + len).next_multiple_of(16)
}

/// Offset of the frame of entry `id` in a segment's bytes, found by walking
/// frame lengths from the first frame.
fn frame_offset(seg: &[u8], id: u64) -> usize {
    let mut off = SEGMENT_HEADER_BYTES;
    loop {
        let len = u32::from_le_bytes(seg[off + 4..off + 8].try_into().unwrap()) as usize;
        let fid = u64::from_le_bytes(seg[off + 16..off + 24].try_into().unwrap());
        assert!(len != 0 || fid != 0, "entry {id} not in this segment");
        if fid == id {
            return off;
        }
        off += frame_bytes(len);
    }
}

/// Every file under `root`, by relative path.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A private copy of fixture `case` (committed fixtures are never opened
/// directly).
fn open_copy(case: &str) -> (tempfile::TempDir, Arc<dyn Directory>) {
    let src = fixtures_dir().join(case);
    let tmp = tempfile::tempdir().unwrap();
    let committed = files(&src);
    assert!(!committed.is_empty(), "fixture {case} is missing");
    for (rel, bytes) in committed {
        let to = tmp.path().join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(to, bytes).unwrap();
    }
    let dir = FsDirectory::arc(tmp.path()).unwrap();
    (tmp, dir)
}

type Entries = Vec<(u64, Vec<u8>)>;

/// Replays in `mode`, returning what was delivered and how replay ended.
fn replay(dir: &Arc<dyn Directory>, mode: ReadMode) -> (Entries, zerodur::Result<ReplaySummary>) {
    let mut out = Vec::new();
    let r = WalReader::open(dir.clone(), WAL_DIR, mode).and_then(|r| {
        r.replay(None, |id, b| {
            out.push((id.get(), b.to_vec()));
            Ok(())
        })
    });
    (out, r)
}

fn varied(tag: &str, ids: std::ops::RangeInclusive<u64>) -> Entries {
    ids.map(|id| (id, payload(tag, id, varied_len(id))))
        .collect()
}

fn clean_entries() -> Entries {
    let mut v = varied("clean", 1..=100);
    v.extend((101..=104).map(|id| (id, payload("clean", id, 50))));
    v
}

/// Opening for append, appending one entry, and replaying strictly gives
/// `before` followed by the new entry.
fn resume_appends_after(dir: &Arc<dyn Directory>, before: &Entries) {
    let next = before.last().map_or(1, |e| e.0 + 1);
    let wal = Wal::open(dir.clone(), opts()).unwrap();
    assert_eq!(wal.next_entry_id().get(), next);
    assert_eq!(
        wal.append_durable(b"appended after resume").unwrap().get(),
        next
    );
    wal.close().unwrap();
    let (got, r) = replay(dir, ReadMode::Strict);
    r.unwrap();
    let mut want = before.clone();
    want.push((next, b"appended after resume".to_vec()));
    assert_eq!(got, want);
}

fn assert_corrupt(
    r: zerodur::Result<impl std::fmt::Debug>,
    path: &str,
    off: u64,
    kind: CorruptKind,
) {
    match r {
        Err(Error::Corrupt {
            path: p,
            offset,
            kind: k,
        }) => {
            assert_eq!(p, Path::new(path));
            assert_eq!(offset, off, "offset");
            assert_eq!(k, kind);
        }
        other => panic!("expected Corrupt {{ {path}, {off}, {kind:?} }}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Format pinning.

#[test]
fn fixtures_regenerate_byte_identical() {
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(case);
        generate(case, &root);
        let fresh = files(&root);
        let committed = files(&fixtures_dir().join(case));
        assert_eq!(
            fresh.keys().collect::<Vec<_>>(),
            committed.keys().collect::<Vec<_>>(),
            "{case}: file set differs"
        );
        for (name, bytes) in &fresh {
            let old = &committed[name];
            let first_diff = bytes.iter().zip(old).position(|(a, b)| a != b);
            assert!(
                bytes == old,
                "{case}/{name}: regenerated bytes differ (lengths {} vs {}, first difference at {first_diff:?}): the format changed",
                bytes.len(),
                old.len()
            );
        }
    }
}

#[test]
fn fixtures_stay_small() {
    let total: usize = CASES
        .iter()
        .flat_map(|c| files(&fixtures_dir().join(c)).into_values())
        .map(|b| b.len())
        .sum();
    assert!(total < 100 * 1024, "fixtures take {total} bytes");
}

#[test]
fn clean_segment_header_and_first_frame_bytes_are_pinned() {
    let bytes = fs::read(fixtures_dir().join("clean").join(seg(1))).unwrap();
    assert_eq!(bytes.len() as u64, SEGMENT_SIZE_BYTES);
    // Header: magic, version 1, header length 64, segment 1, first entry 1,
    // epoch 1, segment length, birth time, reserved zeros, CRC.
    assert_eq!(&bytes[0..8], b"ZDURWAL\x01");
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
    assert_eq!(&bytes[12..16], &64u32.to_le_bytes());
    assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
    assert_eq!(&bytes[24..32], &1u64.to_le_bytes());
    assert_eq!(&bytes[32..40], &1u64.to_le_bytes());
    assert_eq!(&bytes[40..48], &SEGMENT_SIZE_BYTES.to_le_bytes());
    assert_eq!(&bytes[48..56], &FIXTURE_BIRTH_MS.to_le_bytes());
    assert!(bytes[56..60].iter().all(|&b| b == 0));
    assert_eq!(&bytes[60..64], &crc32fast::hash(&bytes[..60]).to_le_bytes());
    // First frame: entry 1, 37 bytes, kind "entry", epoch 1, nothing durable
    // yet (lag 1), CRC (first) over header bytes 4..32 and the payload: one
    // contiguous range.
    let f = &bytes[64..96];
    assert_eq!(&f[4..8], &37u32.to_le_bytes());
    assert_eq!(&f[8..12], &[1, 0, 0, 0]);
    assert_eq!(&f[12..16], &1u32.to_le_bytes());
    assert_eq!(&f[16..24], &1u64.to_le_bytes());
    assert_eq!(&f[24..32], &1u64.to_le_bytes());
    assert_eq!(
        &f[0..4],
        &crc32fast::hash(&bytes[64 + 4..96 + 37]).to_le_bytes()
    );
    assert_eq!(&bytes[96..96 + 37], &payload("clean", 1, 37)[..]);
    // The next frame starts 16-byte aligned right after the padding.
    assert_eq!(frame_offset(&bytes, 2), 64 + frame_bytes(37));
}

// ---------------------------------------------------------------------------
// Expected replay results.

#[test]
fn clean_log_replays_every_entry_in_both_modes() {
    let (_tmp, dir) = open_copy("clean");
    let reader = WalReader::open(dir.clone(), WAL_DIR, ReadMode::Strict).unwrap();
    let ids: Vec<u64> = reader.segment_ids().iter().map(|s| s.get()).collect();
    assert_eq!(ids, [1, 2, 3]);
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        let s = r.unwrap();
        assert_eq!(got, clean_entries(), "{mode:?}");
        assert_eq!(s.entries, 104);
        assert_eq!(s.last, Some(EntryId::new(104)));
        assert!(!s.torn_tail);
    }
    // Replay from an id inside the second segment.
    let mut from = Vec::new();
    reader
        .replay(Some(EntryId::new(70)), |id, _| {
            from.push(id.get());
            Ok(())
        })
        .unwrap();
    assert_eq!(from, (70..=104).collect::<Vec<_>>());
    resume_appends_after(&dir, &clean_entries());
}

/// A log written before rotations were deferred (no segment header flag,
/// every rotation synchronous) reads and resumes the same: the format only
/// gained a flag that such logs never set.
#[test]
fn log_from_before_deferred_rotation_replays_and_resumes() {
    let (_tmp, dir) = open_copy("clean_before_deferred_rotation");
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        r.unwrap();
        assert_eq!(got, clean_entries(), "{mode:?}");
    }
    resume_appends_after(&dir, &clean_entries());
}

#[test]
fn clean_log_has_sealed_segments_ending_where_the_next_begins() {
    let (_tmp, dir) = open_copy("clean");
    let wal = Wal::open(dir, opts()).unwrap();
    let r = wal.segment_ranges().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].first.get(), 1);
    assert_eq!(r[0].end, Some(r[1].first));
    assert_eq!(r[1].end, Some(r[2].first));
    assert_eq!(r[2].end, None);
    assert_eq!(
        (r[1].first.get(), r[2].first.get()),
        (SEG2_FIRST, SEG3_FIRST)
    );
}

/// Where the clean log's segments start (pinned by the layout).
const SEG2_FIRST: u64 = 43;
const SEG3_FIRST: u64 = 87;
/// Offset of the torn frame (entry 60) in segment 2 of `torn_tail`.
const TORN_FRAME_OFFSET: u64 = 3_104;
/// Offset of entry 10's frame in segment 1 of `bad_crc_sealed`.
const BAD_CRC_FRAME_OFFSET: u64 = 1_792;
/// Offset of the tail of segment 3 in `stale_recycled`: 64 + 5 × 144.
const STALE_TAIL_OFFSET: u64 = 784;

#[test]
fn torn_tail_is_cut_in_best_effort_and_rejected_in_strict() {
    let (_tmp, dir) = open_copy("torn_tail");
    let bytes = dir.read(&seg(2)).unwrap();
    assert_eq!(frame_offset(&bytes, 60) as u64, TORN_FRAME_OFFSET);

    let want = varied("torn", 1..=59);
    let (got, r) = replay(&dir, ReadMode::BestEffort);
    let s = r.unwrap();
    assert_eq!(got, want);
    assert!(s.torn_tail);
    assert_eq!(s.last, Some(EntryId::new(59)));

    let (got, r) = replay(&dir, ReadMode::Strict);
    assert_eq!(got, want, "strict delivers the prefix before failing");
    assert_corrupt(r, &seg(2), TORN_FRAME_OFFSET, CorruptKind::TornTail);

    // Resume fences the torn bytes off; entry 60 is handed out again.
    resume_appends_after(&dir, &want);
}

#[test]
fn bad_crc_in_a_sealed_segment_is_corrupt_in_both_modes() {
    let (_tmp, dir) = open_copy("bad_crc_sealed");
    let bytes = dir.read(&seg(1)).unwrap();
    assert_eq!(frame_offset(&bytes, 10) as u64, BAD_CRC_FRAME_OFFSET);
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        assert_eq!(got, varied("crc", 1..=9), "{mode:?}");
        assert_corrupt(
            r,
            &seg(1),
            BAD_CRC_FRAME_OFFSET,
            CorruptKind::BadFrame("frame checksum mismatch"),
        );
    }
}

#[test]
fn missing_segment_is_reported_by_reader_and_writer() {
    let (_tmp, dir) = open_copy("missing_segment");
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        assert!(got.is_empty());
        assert_corrupt(r, &seg(3), 0, CorruptKind::MissingSegment { segment: 2 });
    }
    assert_corrupt(
        Wal::open(dir.clone(), opts()),
        &seg(3),
        0,
        CorruptKind::MissingSegment { segment: 2 },
    );
    // Nothing was changed by the failed open.
    assert_eq!(
        dir.list(WAL_DIR).unwrap(),
        [
            "00000000000000000001.seg",
            "00000000000000000003.seg",
            "LOCK"
        ]
    );
}

#[test]
fn stale_frames_of_a_recycled_segment_never_replay() {
    let (_tmp, dir) = open_copy("stale_recycled");
    let bytes = dir.read(&seg(3)).unwrap();
    // The fixture does what it claims: segment 3 is segment 1's old file
    // (its life-1 frames follow the tail, the first one intact at the tail).
    let tail = STALE_TAIL_OFFSET as usize;
    let at_tail = &bytes[tail + FRAME_HEADER_BYTES..tail + FRAME_HEADER_BYTES + 6];
    assert_eq!(at_tail, b"life1-");
    assert_eq!(&bytes[32..40], &3u64.to_le_bytes(), "third epoch");

    let reader = WalReader::open(dir.clone(), WAL_DIR, ReadMode::Strict).unwrap();
    assert_eq!(reader.segment_ids(), [zerodur::wal::SegmentId::new(3)]);
    let seg3_first = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
    let want: Entries = (seg3_first..seg3_first + 5)
        .map(|id| (id, payload("life2", id, 100)))
        .collect();
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        let s = r.unwrap();
        assert_eq!(got, want, "{mode:?}");
        assert!(
            !s.torn_tail,
            "a stale frame is a clean end, not a torn tail"
        );
    }
    resume_appends_after(&dir, &want);
    // Even after resume and an append, no life-1 payload ever replays.
    let (got, r) = replay(&dir, ReadMode::Strict);
    r.unwrap();
    assert!(got.iter().all(|(_, p)| !p.starts_with(b"life1")));
    assert_eq!(got.len(), 6);
}

#[test]
fn wrong_segment_version_is_unsupported_for_reader_and_writer() {
    let (_tmp, dir) = open_copy("wrong_version");
    let unsupported = |r: zerodur::Result<()>| match r {
        Err(Error::UnsupportedVersion {
            path,
            found,
            supported,
        }) => {
            assert_eq!(path, Path::new(&seg(1)));
            assert_eq!((found, supported), (2, 1));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    };
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        assert!(got.is_empty());
        unsupported(r.map(|_| ()));
    }
    unsupported(Wal::open(dir.clone(), opts()).map(|_| ()));
    // The writer did not "repair" the newer-format segment.
    let bytes = dir.read(&seg(1)).unwrap();
    assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
}

/// The fixtures replay the same through the memory backend (the format is
/// the backend's business only in where the bytes live).
#[test]
fn fixtures_replay_the_same_on_the_memory_backend() {
    for case in CASES {
        let (_tmp, fs_dir) = open_copy(case);
        let mem = MemoryDirectory::new();
        mem.create_dir_all(WAL_DIR).unwrap();
        for name in fs_dir.list(WAL_DIR).unwrap() {
            let path = format!("{WAL_DIR}/{name}");
            let mut f = mem.create(&path).unwrap();
            f.write_all(&fs_dir.read(&path).unwrap()).unwrap();
        }
        let mem: Arc<dyn Directory> = Arc::new(mem);
        for mode in [ReadMode::Strict, ReadMode::BestEffort] {
            let (a, ra) = replay(&fs_dir, mode);
            let (b, rb) = replay(&mem, mode);
            assert_eq!(a, b, "{case} {mode:?}");
            assert_eq!(format!("{ra:?}"), format!("{rb:?}"), "{case} {mode:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions found by fuzzing (`fuzz/`), as minimal hand-built images.

/// A segment header with a correct CRC.
fn header_bytes(segment: u64, first: u64, epoch: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; SEGMENT_HEADER_BYTES];
    b[0..8].copy_from_slice(b"ZDURWAL\x01");
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    b[12..16].copy_from_slice(&64u32.to_le_bytes());
    b[16..24].copy_from_slice(&segment.to_le_bytes());
    b[24..32].copy_from_slice(&first.to_le_bytes());
    b[32..40].copy_from_slice(&epoch.to_le_bytes());
    b[40..48].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A frame with a correct CRC, padded, its durable watermark unknown.
fn frame_bytes_of(kind: u8, entry: u64, epoch: u64, payload: &[u8]) -> Vec<u8> {
    frame_with_lag(kind, entry, epoch, u32::MAX, payload)
}

/// A frame with a correct CRC and durable lag `lag`, padded.
fn frame_with_lag(kind: u8, entry: u64, epoch: u64, lag: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; frame_bytes(payload.len())];
    b[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[8] = kind;
    b[12..16].copy_from_slice(&lag.to_le_bytes());
    b[16..24].copy_from_slice(&entry.to_le_bytes());
    b[24..32].copy_from_slice(&epoch.to_le_bytes());
    b[32..32 + payload.len()].copy_from_slice(payload);
    let crc = crc32fast::hash(&b[4..32 + payload.len()]);
    b[0..4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A memory directory holding one segment file `id`: `parts` (a header,
/// then frames) one after the other, zero-padded to `len` bytes.
fn image_of(id: u64, len: usize, parts: &[Vec<u8>]) -> Arc<dyn Directory> {
    let mut file: Vec<u8> = parts.concat();
    assert!(file.len() <= len);
    file.resize(len, 0);
    let mem = MemoryDirectory::new();
    mem.create_dir_all(WAL_DIR).unwrap();
    let mut f = mem.create(&format!("{WAL_DIR}/{id:020}.seg")).unwrap();
    f.write_all(&file).unwrap();
    Arc::new(mem)
}

/// fuzz `frame_decode`: an entry with the largest id (its successor does
/// not exist) overflowed the walker's next-id counter.
#[test]
fn entry_id_at_the_end_of_the_id_space_is_corrupt_not_an_overflow() {
    let len = 8 * 1024;
    let dir = image_of(
        1,
        len,
        &[
            header_bytes(1, u64::MAX, 1, len as u64),
            frame_bytes_of(1, u64::MAX, 1, b"last"),
        ],
    );
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let (got, r) = replay(&dir, mode);
        assert!(got.is_empty(), "{mode:?}");
        assert_corrupt(
            r,
            &seg(1),
            SEGMENT_HEADER_BYTES as u64,
            CorruptKind::BadFrame("entry id out of range"),
        );
    }
    // The same as the last entry of a batch that continues past it.
    let dir = image_of(
        1,
        len,
        &[
            header_bytes(1, u64::MAX - 1, 1, len as u64),
            frame_bytes_of(1, u64::MAX - 1, 1, b"ok"),
            frame_bytes_of(2, u64::MAX, 1, b"cont"),
        ],
    );
    let (got, r) = replay(&dir, ReadMode::BestEffort);
    assert_eq!(got, [(u64::MAX - 1, b"ok".to_vec())]);
    assert!(
        r.is_ok_and(|s| s.torn_tail),
        "a batch that cannot end is incomplete"
    );
}

/// fuzz `recovery_image`: when the log had a single segment, resume took a
/// segment with a damaged header for one a crash left unborn if its first
/// frame's id was not 1 — always the case after a prefix truncation — then
/// deleted it and restarted the log at id 1. The reader rightly reports it
/// as corrupt; the writer must too, and leave it alone.
#[test]
fn damaged_header_of_the_only_segment_is_reported_not_deleted() {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let wal = Wal::open(dir.clone(), opts()).unwrap();
    for id in 1..=200 {
        wal.append(&payload("solo", id, 100)).unwrap();
    }
    let ranges = wal.segment_ranges().unwrap();
    let active = ranges.last().unwrap();
    let retired = wal
        .truncate_prefix(EntryId::new(active.first.get() - 1))
        .unwrap();
    assert_eq!(retired, ranges.len() - 1);
    wal.close().unwrap();
    let seg_id = active.segment.get();
    assert!(seg_id > 1 && active.first.get() > 1);
    let path = seg(seg_id);
    assert_eq!(
        dir.list(WAL_DIR)
            .unwrap()
            .iter()
            .filter(|n| n.ends_with(".seg"))
            .count(),
        1
    );

    // Bit rot in the header's epoch field.
    let mut bytes = dir.read(&path).unwrap();
    bytes[33] ^= 0x01;
    dir.create(&path).unwrap().write_all(&bytes).unwrap();

    let checksum_error = |r: zerodur::Result<()>| match r {
        Err(Error::ChecksumMismatch {
            path: p, offset: 0, ..
        }) => assert_eq!(p, Path::new(&path)),
        other => panic!("expected a header checksum mismatch, got {other:?}"),
    };
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        checksum_error(replay(&dir, mode).1.map(|_| ()));
    }
    checksum_error(Wal::open(dir.clone(), opts()).map(|_| ()));
    assert_eq!(
        dir.read(&path).unwrap(),
        bytes,
        "the damaged segment was changed"
    );
}

/// Puts `bytes` at `wal/<name>` of `dir`.
fn put(dir: &Arc<dyn Directory>, name: &str, bytes: &[u8]) {
    dir.create(&format!("{WAL_DIR}/{name}"))
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn padded(parts: &[Vec<u8>], len: usize) -> Vec<u8> {
    let mut b = parts.concat();
    b.resize(len, 0);
    b
}

/// fuzz `recovery_image`: ids and epochs come from disk and can be the
/// largest `u64`; the writer's `+ 1` on them overflowed (a panic with
/// overflow checks, a wrapped epoch or id without). Each is now an error.
#[test]
fn epochs_and_ids_at_the_end_of_their_range_are_errors_not_overflows() {
    let len = 8 * 1024;
    let epoch_error = |r: zerodur::Result<Wal>, path: &str| {
        assert_corrupt(r, path, 32, CorruptKind::BadHeader("epoch out of range"))
    };

    // A pool file at the last epoch: no later epoch exists for a new segment.
    let dir = image_of(
        2,
        len,
        &[
            header_bytes(2, 1, 1, len as u64),
            frame_bytes_of(1, 1, 1, b"a"),
        ],
    );
    let free = format!("{WAL_DIR}/{:020}.free", 1);
    put(
        &dir,
        &format!("{:020}.free", 1),
        &padded(&[header_bytes(1, 1, u64::MAX, len as u64)], len),
    );
    epoch_error(Wal::open(dir.clone(), opts()), &free);

    // A live segment at the last epoch: resume cannot start a new one.
    let dir = image_of(
        1,
        len,
        &[
            header_bytes(1, 1, u64::MAX, len as u64),
            frame_bytes_of(1, 1, u64::MAX, b"a"),
        ],
    );
    let (got, r) = replay(&dir, ReadMode::Strict);
    assert_eq!(
        (got.len(), r.is_ok()),
        (1, true),
        "the log itself reads fine"
    );
    epoch_error(Wal::open(dir.clone(), opts()), &seg(1));

    // A sealed last segment with the largest id: there is no next segment.
    let max = u64::MAX;
    let dir = image_of(
        max,
        len,
        &[
            header_bytes(max, 1, 1, len as u64),
            frame_bytes_of(1, 1, 1, b"a"),
            frame_bytes_of(3, 2, 1, b""),
        ],
    );
    let (got, r) = replay(&dir, ReadMode::Strict);
    assert_eq!(
        (got.len(), r.is_ok()),
        (1, true),
        "the log itself reads fine"
    );
    assert_corrupt(
        Wal::open(dir.clone(), opts()),
        &seg(max),
        16,
        CorruptKind::BadHeader("segment id out of range"),
    );

    // A log whose next id is the largest: nothing can be appended (an entry
    // with the largest id is corrupt, see above), and the refusal does not
    // poison the handle.
    let dir = image_of(
        1,
        len,
        &[
            header_bytes(1, u64::MAX - 1, 1, len as u64),
            frame_bytes_of(1, u64::MAX - 1, 1, b"a"),
        ],
    );
    let wal = Wal::open(dir.clone(), opts()).unwrap();
    assert_eq!(wal.next_entry_id().get(), u64::MAX);
    assert!(matches!(
        wal.append(b"b"),
        Err(Error::InvalidArgument {
            name: "payloads",
            ..
        })
    ));
    assert!(!wal.is_poisoned());
    drop(wal);
    let (got, r) = replay(&dir, ReadMode::Strict);
    assert_eq!(got, [(u64::MAX - 1, b"a".to_vec())]);
    r.unwrap();
}

/// fuzz `recovery_image`: resume picked the epoch after the tail's, even
/// when valid frames of that epoch already lay further on in the segment.
/// The next replay took one of them for proof that the new entries' slots
/// were damaged: a log that read fine before recovery could not be read
/// after it. A later-epoch frame past the tail is now itself damage when the
/// end's verdict sees it (within 1 MiB of a clean end): replay and open
/// refuse it. Further on, resume must still pick an epoch above it.
#[test]
fn resume_epoch_is_above_every_frame_left_after_the_tail() {
    for (seg_len, distance, refused) in [(8 * 1024, 256, true), (4 << 20, 2 << 20, false)] {
        let mem = MemoryDirectory::new();
        let dir: Arc<dyn Directory> = Arc::new(mem.clone());
        let o = opts().segment_size_bytes(seg_len);
        let wal = Wal::open(dir.clone(), o.clone()).unwrap();
        for id in 1..=3 {
            wal.append(&payload("e", id, 40)).unwrap();
        }
        wal.close().unwrap();
        // A well-formed frame of epoch 2 (the one the next resume used to
        // pick), id 6 and "everything up to 6 is durable", past the tail.
        let path = seg(1);
        let mut bytes = dir.read(&path).unwrap();
        let tail = frame_offset(&bytes, 3) + frame_bytes(40);
        let planted = frame_with_lag(1, 6, 2, 0, b"never appended");
        let at = tail + distance;
        bytes[at..at + planted.len()].copy_from_slice(&planted);
        dir.create(&path).unwrap().write_all(&bytes).unwrap();

        let before: Entries = (1..=3).map(|id| (id, payload("e", id, 40))).collect();
        let (got, r) = replay(&dir, ReadMode::Strict);
        if refused {
            assert_eq!(got, before);
            assert!(
                matches!(
                    r,
                    Err(Error::Corrupt {
                        kind: CorruptKind::BelowDurablePoint { .. },
                        ..
                    })
                ),
                "{r:?}"
            );
            assert!(Wal::open(dir.clone(), o).is_err());
            assert_eq!(dir.read(&path).unwrap(), bytes, "a refused open wrote");
            continue;
        }
        r.unwrap();
        assert_eq!(got, before);
        let wal = Wal::open(dir.clone(), o).unwrap();
        assert_eq!(wal.append_durable(b"after").unwrap().get(), 4);
        wal.close().unwrap();
        let (got, r) = replay(&dir, ReadMode::Strict);
        r.unwrap();
        assert_eq!(got.len(), 4);
    }
}
