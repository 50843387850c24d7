//! Foreign input and files that are not what rotation made: a missing or
//! misspelled WAL folder, files zerodur did not write under its names, files
//! cut short or extended, damaged recycle-pool files, and a segment's birth
//! time surviving reopen. Each gets a typed error naming the file (and, for
//! bytes, the offset), and nothing is modified to make the error go away.

mod wal_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wal_common::*;
use zerodur::recover::{recover_with_wal, RecoveryOptions};
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions, WalReader};
use zerodur::{CorruptKind, CrashPolicy, Directory, Error, MemoryDirectory};

const SEG: u64 = 8 * 1024;

fn mem() -> (MemoryDirectory, Arc<dyn Directory>) {
    let m = MemoryDirectory::new();
    (m.clone(), Arc::new(m))
}

/// A log of `n` entries of 300 bytes over several segments, closed cleanly.
fn build(n: u64) -> (MemoryDirectory, Vec<Entry>) {
    let (m, dir) = mem();
    let w = Wal::open(dir, opts(SEG, 2)).unwrap();
    let mut want = Vec::new();
    for id in 1..=n {
        let p = payload(0, id, 300);
        w.append(&p).unwrap();
        want.push((id, p));
    }
    w.close().unwrap();
    (m, want)
}

fn copy(m: &MemoryDirectory) -> (MemoryDirectory, Arc<dyn Directory>) {
    let c = m.crash_image(&CrashPolicy::keep_all());
    (c.clone(), Arc::new(c))
}

/// Every file of the WAL folder and its bytes.
fn files(dir: &dyn Directory) -> BTreeMap<String, Vec<u8>> {
    dir.list(WAL_DIR)
        .unwrap()
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| {
            let p = format!("{WAL_DIR}/{n}");
            let b = dir.read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn segments(dir: &dyn Directory) -> Vec<String> {
    files(dir)
        .into_keys()
        .filter(|p| p.ends_with(".seg"))
        .collect()
}

/// Replays in both modes and opens for writing; each must fail with an
/// error naming `path`, and the folder must be byte-for-byte unchanged.
///
/// `Wal::open` checks the final segment and its predecessor's header (its
/// cost must not grow with the log): for an older segment it may open, but
/// must leave the file as it is, and a truncation over it must refuse to
/// retire it.
fn refused_everywhere(dir: &Arc<dyn Directory>, path: &str, ctx: &str) -> Vec<Error> {
    let before = files(&**dir);
    let segs = segments(&**dir);
    let checked_by_open = segs.iter().rev().take(2).any(|s| s == path);
    let mut errors = Vec::new();
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        match replay(dir, mode) {
            Ok((got, _)) => panic!("{ctx}: {mode:?} replay returned {}", describe(&got)),
            Err(e) => errors.push(e),
        }
    }
    match Wal::open(dir.clone(), opts(SEG, 2)) {
        Ok(w) => {
            assert!(!checked_by_open, "{ctx}: Wal::open succeeded");
            let e = w
                .truncate_prefix(EntryId::new(u64::MAX - 1))
                .expect_err("truncation retired a damaged segment");
            errors.push(e);
            drop(w);
            let after = files(&**dir);
            assert_eq!(after.get(path), before.get(path), "{ctx}: file modified");
            return errors_naming(errors, path, ctx);
        }
        Err(e) => errors.push(e),
    }
    assert_eq!(
        files(&**dir),
        before,
        "{ctx}: a refused open changed the folder"
    );
    errors_naming(errors, path, ctx)
}

fn errors_naming(errors: Vec<Error>, path: &str, ctx: &str) -> Vec<Error> {
    for e in &errors {
        assert!(
            e.to_string().contains(path),
            "{ctx}: error does not name `{path}`: {e}"
        );
    }
    errors
}

#[test]
fn missing_wal_folder_is_not_found_not_an_empty_log() {
    let (_, dir) = mem();
    let e = WalReader::open(dir.clone(), "wall", ReadMode::BestEffort).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("wall"), "{e}");
    // A writer asked for an existing log does not create one.
    let must = WalOptions::new("wal").create_if_missing(false);
    let e = Wal::open(dir.clone(), must.clone()).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(!dir.exists("wal").unwrap(), "the folder was created");
    // An existing folder with no segment is not a log either.
    dir.create_dir_all("wal").unwrap();
    assert!(Wal::open(dir.clone(), must.clone())
        .unwrap_err()
        .is_not_found());
    // Once created, it opens.
    Wal::open(dir.clone(), WalOptions::new("wal"))
        .unwrap()
        .close()
        .unwrap();
    Wal::open(dir, must).unwrap().close().unwrap();
}

#[test]
fn recovery_of_a_missing_wal_beside_checkpoints_is_an_error() {
    let (_, dir) = mem();
    // A new store (nothing at all) recovers to the initial state.
    let r = recover_with_wal::<u64, u64, _, _, _>(
        &dir,
        &RecoveryOptions::strict(),
        |c| c.map_or(0, |c| c.to_native()),
        |s, _, e| *s += e.to_native(),
    )
    .unwrap();
    assert_eq!((r.state, r.replayed), (0, 0));
    // Checkpoints but no WAL folder: the log they need is not there.
    dir.create_dir_all("checkpoints").unwrap();
    let e = recover_with_wal::<u64, u64, _, _, _>(
        &dir,
        &RecoveryOptions::strict().wal_dir("wall"),
        |c| c.map_or(0, |c| c.to_native()),
        |s, _, e| *s += e.to_native(),
    )
    .unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("wall"), "{e}");
}

#[test]
fn a_foreign_file_under_a_segment_name_is_refused_and_never_rewritten() {
    let (base, want) = build(80);
    let segs = segments(&base);
    assert!(segs.len() >= 3);
    for (i, victim) in segs.iter().enumerate() {
        for (what, bytes) in [
            ("text", b"hello, this is not a WAL segment\n".repeat(300)),
            ("random", payload(9, i as u64, SEG as usize)),
        ] {
            let ctx = format!("{what} under {victim}");
            let (_, d) = copy(&base);
            d.atomic_write(victim, &bytes).unwrap();
            let errors = refused_everywhere(&d, victim, &ctx);
            assert!(
                errors.iter().all(|e| matches!(
                    e,
                    Error::Corrupt {
                        kind: CorruptKind::BadMagic | CorruptKind::BadHeader(_),
                        ..
                    }
                )),
                "{ctx}: {errors:?}"
            );
        }
    }
    // A foreign file under a pool name: never reused, the open refused.
    let (_, d) = copy(&base);
    let pool = format!("{WAL_DIR}/{:020}.free", 1);
    d.atomic_write(&pool, &vec![0x5a; SEG as usize]).unwrap();
    let before = files(&*d);
    let e = Wal::open(d.clone(), opts(SEG, 2)).unwrap_err();
    assert!(e.to_string().contains(&pool), "{e}");
    assert_eq!(files(&*d), before);
    // The reader does not use the pool: the log itself is intact.
    assert_entries(
        &replay(&d, ReadMode::Strict).unwrap().0,
        &want,
        "reader beside a foreign pool file",
    );
}

#[test]
fn a_segment_cut_short_or_extended_is_corrupt_in_both_modes() {
    let (base, _) = build(80);
    let segs = segments(&base);
    for victim in &segs {
        let full = base.read(victim).unwrap();
        for len in [0usize, 10, 64, 100, 4096, full.len() - 1, full.len() + 512] {
            let ctx = format!("{victim} at {len} bytes");
            let (_, d) = copy(&base);
            let mut b = full.clone();
            b.resize(len, 0);
            d.atomic_write(victim, &b).unwrap();
            let final_empty = len == 0 && victim == segs.last().unwrap();
            if final_empty {
                // Indistinguishable from a new segment whose length never
                // became durable (@U1): FORMAT.md, "Known limits".
                continue;
            }
            let errors = refused_everywhere(&d, victim, &ctx);
            for e in &errors {
                assert!(
                    matches!(
                        e,
                        Error::Corrupt {
                            kind: CorruptKind::LengthMismatch { .. }
                                | CorruptKind::Truncated { .. }
                                | CorruptKind::BadHeader(_),
                            ..
                        }
                    ),
                    "{ctx}: {e}"
                );
            }
        }
    }
}

#[test]
fn a_damaged_header_under_live_frames_is_never_taken_for_an_unborn_segment() {
    let (base, _) = build(80);
    let segs = segments(&base);
    let last = segs.last().unwrap();
    let full = base.read(last).unwrap();
    // Zeroed header, a header copied from another segment, one flipped byte.
    let other = base.read(&segs[0]).unwrap();
    let mut zeroed = full.clone();
    zeroed[..64].fill(0);
    let mut foreign_header = full.clone();
    foreign_header[..64].copy_from_slice(&other[..64]);
    let mut flipped = full.clone();
    flipped[20] ^= 0x10;
    for (what, bytes) in [
        ("zeroed", zeroed),
        ("another segment's", foreign_header),
        ("flipped", flipped),
    ] {
        let (_, d) = copy(&base);
        d.atomic_write(last, &bytes).unwrap();
        refused_everywhere(&d, last, &format!("{what} header of the final segment"));
    }
}

#[test]
fn segment_age_counts_from_its_birth_across_reopens() {
    let (_, dir) = mem();
    let o = opts(1 << 20, 2).max_segment_age(Duration::from_millis(300));
    // Each process lives about 60 ms, well under the age; the segment lives
    // on across them and must still rotate once it is older than the age.
    for round in 0..10u64 {
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        w.append(&payload(0, round, 10)).unwrap();
        w.close().unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    let segs = segments(&*dir);
    assert!(
        segs.len() >= 2,
        "a segment older than max_segment_age was never rotated: {segs:?}"
    );
}

/// A resume marker frame (kind 4) of `epoch` naming entry `id`, CRC fixed.
fn marker(id: u64, epoch: u64) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_HEADER_LEN];
    f[8] = KIND_RESUME;
    f[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    f[16..24].copy_from_slice(&id.to_le_bytes());
    f[24..32].copy_from_slice(&epoch.to_le_bytes());
    fix_frame_crc(&mut f, 0);
    f
}

/// fuzz `recovery_image`: a file found in the recycle pool whose header
/// checks out but whose old frames carry epochs above every epoch of the
/// log. Rotation reused it with the next epoch, and its old frames then
/// passed for frames of a later session after the new segment's tail:
/// proof of damage in a log that had just been written. A pooled file
/// found at open is scanned before reuse, and the new epoch goes above its
/// frames.
#[test]
fn a_pooled_file_with_frames_of_later_epochs_is_reused_above_them() {
    let (base, want) = build(30);
    let (_, d) = copy(&base);
    let mut pooled = base.read(&seg_path(1)).unwrap();
    pooled[16..24].copy_from_slice(&500u64.to_le_bytes());
    fix_header_crc(&mut pooled);
    let huge = u64::MAX - 100;
    for (i, f) in [marker(1, huge), marker(1_000_000, huge + 1)]
        .iter()
        .enumerate()
    {
        let at = 2048 + i * 512;
        pooled[at..at + FRAME_HEADER_LEN].copy_from_slice(f);
    }
    d.atomic_write(&format!("{WAL_DIR}/{:020}.free", 500), &pooled)
        .unwrap();
    let w = Wal::open(d.clone(), opts(SEG, 2)).unwrap();
    let mut want = want;
    let first = w.active_segment();
    while w.active_segment() == first || w.stats().recycled_reuses == 0 {
        let id = w.next_entry_id().get();
        let p = payload(3, id, 300);
        w.append(&p).unwrap();
        want.push((id, p));
    }
    w.close().unwrap();
    assert_entries(
        &replay(&d, ReadMode::Strict).unwrap().0,
        &want,
        "after reuse",
    );
    Wal::open(d, opts(SEG, 2)).unwrap().close().unwrap();
}

/// fuzz `recovery_image`: a pooled file found at open whose frames carry
/// the last epoch leaves no epoch for a new life. Rotation (here at resume,
/// after sealing the full final segment) failed on it with the segment
/// already changed. It is now skipped before anything is written: it stays
/// in the pool as it is, and a new file is created instead.
#[test]
fn a_pooled_file_whose_frames_leave_no_epoch_is_never_reused() {
    let (base, mut want) = build(30);
    let (_, d) = copy(&base);
    let mut pooled = base.read(&seg_path(1)).unwrap();
    pooled[16..24].copy_from_slice(&500u64.to_le_bytes());
    fix_header_crc(&mut pooled);
    pooled[2048..2048 + FRAME_HEADER_LEN].copy_from_slice(&marker(1, u64::MAX));
    let pool_path = format!("{WAL_DIR}/{:020}.free", 500);
    d.atomic_write(&pool_path, &pooled).unwrap();
    let w = Wal::open(d.clone(), opts(SEG, 2)).unwrap();
    let first = w.active_segment();
    while w.active_segment() == first {
        let id = w.next_entry_id().get();
        let p = payload(4, id, 300);
        w.append(&p).unwrap();
        want.push((id, p));
    }
    assert_eq!(w.stats().recycled_reuses, 0, "the pooled file was reused");
    w.close().unwrap();
    assert_eq!(
        d.read(&pool_path).unwrap(),
        pooled,
        "the pooled file changed"
    );
    assert_entries(
        &replay(&d, ReadMode::Strict).unwrap().0,
        &want,
        "after rotation",
    );
}
