//! Deferred rotation, black box: a rotation seals the outgoing segment
//! without waiting for the disk, the new segment's header says so (byte 56,
//! bit 0: its predecessor is not durable yet), and the next barrier makes the
//! sealed segments durable in order, then clears the flags. Readers and
//! resume judge an early end before a seal by that flag (`rules::judge_unsealed`):
//! with it clear, damage; with it set, the seal was lost (@D1, the log goes
//! on), the log ends there (@D2, open removes the leftovers), or a
//! later frame proves the position durable (damage again).
//!
//! The crash sweep prints how many states it checked; scale it with
//! `ZERODUR_DEFERRED_CASES` (seeds, default [`DEFAULT_CASES`]). Run with
//! `cargo test --release --test deferred_rotation -- --nocapture`.

mod support;
mod wal_common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use support::{dump, every_policy, Rng};
use wal_common::*;
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions};
use zerodur::{
    CorruptKind, CrashPolicy, Directory, Error, FsDirectory, MediaFault, MemoryDirectory, OpKind,
    Result,
};

const SEG_8K: u64 = 8 * 1024;
const SEG_16K: u64 = 16 * 1024;
/// Offset of the segment header's flags byte (`RawSegmentHeader` in
/// `src/wal/format.rs`; bit 0: the predecessor is not durable yet).
const FLAGS_AT: usize = 56;
/// Sealed segments a rotation leaves unsynced before it syncs them itself.
const MAX_UNSYNCED_SEGMENTS: u64 = 4;
/// Seeds of the crash sweep when `ZERODUR_DEFERRED_CASES` is not set.
const DEFAULT_CASES: u64 = 800;

// ---------------------------------------------------------------------------
// Helpers

/// Whether a segment's header says its predecessor was not durable yet.
fn flag(segment: &[u8]) -> bool {
    segment[FLAGS_AT] & 1 == 1
}

/// The flag of every live segment, as the disk holds it now.
fn durable_flags(mem: &MemoryDirectory) -> Vec<bool> {
    segment_ids(mem)
        .iter()
        .map(|&id| flag(&mem.durable_bytes(&seg_path(id)).unwrap()))
        .collect()
}

/// Payload length of entry `id`: 0 to 1,399 bytes, about six per segment.
fn len_of(id: u64) -> usize {
    (id * 389 % 1400) as usize
}

/// Buffered appends (no barrier) until `rotations` more rotations happened,
/// then three more entries into the new active segment.
fn fill(l: &mut Life, w: &Wal, rotations: u64) {
    let target = w.active_segment().get() + rotations;
    while w.active_segment().get() < target {
        let p = l.next_payload(len_of(l.next_id()));
        l.append(w, &p).unwrap();
    }
    for _ in 0..3 {
        let p = l.next_payload(len_of(l.next_id()));
        l.append(w, &p).unwrap();
    }
}

/// A fresh memory directory with a WAL opened through a new [`Life`], after
/// [`fill`].
fn filled(o: &WalOptions, rotations: u64) -> (MemoryDirectory, Arc<dyn Directory>, Life, Wal) {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let mut l = Life::new(0, &[]);
    let w = l.open(&dir, o).unwrap();
    fill(&mut l, &w, rotations);
    (mem, dir, l, w)
}

/// Every entry the WAL of `dir` replays in `mode`, which must not fail.
fn replay_ok(dir: &Arc<dyn Directory>, mode: ReadMode, ctx: &str) -> Vec<Entry> {
    replay(dir, mode)
        .unwrap_or_else(|e| panic!("{ctx}: {mode:?} replay failed: {e}"))
        .0
}

/// Live segment ids and pooled file ids, from [`MemoryDirectory::files`];
/// no other file than `LOCK` may be there.
fn listing(mem: &MemoryDirectory) -> (Vec<u64>, Vec<u64>) {
    let (mut live, mut pool) = (Vec::new(), Vec::new());
    for f in mem.files() {
        let name = f.strip_prefix(&format!("{WAL_DIR}/")).unwrap_or(&f);
        if let Some(id) = name.strip_suffix(".seg") {
            live.push(id.parse().unwrap());
        } else if let Some(id) = name.strip_suffix(".free") {
            pool.push(id.parse().unwrap());
        } else {
            assert_eq!(name, "LOCK", "unexpected file {f}");
        }
    }
    (live, pool)
}

/// All the entries a life appended, as `Life` does not expose them.
fn all_entries(life: u32, ids: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    ids.map(|id| (id, payload(life, id, len_of(id)))).collect()
}

/// Asserts `r` is `Error::Corrupt` naming `path`; returns its kind.
#[track_caller]
fn corrupt_in<T: std::fmt::Debug>(r: Result<T>, path: &str, what: &str) -> CorruptKind {
    match r {
        Err(Error::Corrupt {
            path: p, kind: k, ..
        }) if p.to_str() == Some(path) => k,
        other => panic!("{what}: expected Corrupt naming {path}, got {other:?}"),
    }
}

/// Opens the WAL of `mem` (a quiesced or killed directory), expecting a
/// refusal naming `path`, and checks that the refused open changed nothing:
/// the same names and bytes, and no write, rename, removal or allocation in
/// its operation log. Returns the error's kind.
#[track_caller]
fn refused_open(mem: &MemoryDirectory, o: &WalOptions, path: &str, what: &str) -> CorruptKind {
    let probe = mem.snapshot();
    let before = dump(&probe);
    let dir: Arc<dyn Directory> = Arc::new(probe.clone());
    let kind = corrupt_in(Wal::open(dir, o.clone()), path, what);
    assert_eq!(dump(&probe), before, "{what}: a refused open changed bytes");
    let changes: Vec<_> = probe
        .op_log()
        .into_iter()
        .filter(|op| {
            !matches!(
                op.kind,
                OpKind::SyncDir | OpKind::SyncFile | OpKind::Read | OpKind::OpenRegion
            )
        })
        .collect();
    assert!(changes.is_empty(), "{what}: a refused open did {changes:?}");
    kind
}

/// The frame in the middle of the chain of live segment `id`.
fn middle_frame(mem: &MemoryDirectory, id: u64) -> Frame {
    let frames = chain(&mem.read(&seg_path(id)).unwrap());
    assert!(frames.len() >= 3, "segment {id} holds too few frames");
    frames[frames.len() / 2]
}

/// A lost write of the sector holding the start of the middle frame of
/// live segment `id` (zeros: no barrier wrote that sector before).
fn lost_sector(mem: &MemoryDirectory, id: u64) -> MediaFault {
    let at = middle_frame(mem, id).off as u64;
    MediaFault::LostWrite {
        path: seg_path(id),
        offset: at - at % 512,
        len: 512,
    }
}

// ---------------------------------------------------------------------------
// 1. Buffered rotations lost to a power loss

#[test]
fn unsynced_rotations_lost_to_power_loss_leave_a_prefix_and_open_removes_the_leftovers() {
    let o = opts(SEG_8K, 8);
    for rotations in [3, 4, 6] {
        let ctx = format!("{rotations} rotations");
        let (mem, _, l, w) = filled(&o, rotations);
        let appended = all_entries(0, 1..=l.next_id() - 1);
        let segs = segment_ids(&mem);
        assert_eq!(segs.len() as u64, rotations + 1, "{ctx}");
        // Every rotation is deferred: the new segment's header (durable at
        // once) carries the flag. The fifth rotation finds four sealed
        // segments waiting, makes them durable itself and clears their
        // flags; the segment it seals keeps its own.
        let forced = rotations > MAX_UNSYNCED_SEGMENTS;
        let want: Vec<bool> = segs
            .iter()
            .map(|&s| s > 1 && !(forced && s <= MAX_UNSYNCED_SEGMENTS))
            .collect();
        assert_eq!(durable_flags(&mem), want, "{ctx}: flags on disk");
        let durable = w.durable_entry_id().map_or(0, EntryId::get);
        let ranges = w.segment_ranges().unwrap();
        if forced {
            assert_eq!(
                durable + 1,
                ranges[MAX_UNSYNCED_SEGMENTS as usize].first.get(),
                "{ctx}: the forced barrier covers the four sealed segments"
            );
        } else {
            assert_eq!(durable, 0, "{ctx}: nothing is durable without a barrier");
        }
        // The segment a power loss that keeps nothing unsynced ends the log
        // in: the one holding the first entry that was not durable.
        let ends_in = ranges
            .iter()
            .rfind(|r| r.first.get() <= durable + 1)
            .unwrap()
            .segment
            .get();

        // Power loss keeping nothing unsynced: exactly the durable entries,
        // in both modes, and no error.
        let img = mem.crash_image(&CrashPolicy::drop_all());
        let dir: Arc<dyn Directory> = Arc::new(img.clone());
        for mode in [ReadMode::Strict, ReadMode::BestEffort] {
            let got = replay_ok(&dir, mode, &ctx);
            assert_entries(&got, &appended[..durable as usize], &ctx);
        }
        let mut l2 = Life::new(1, &appended[..durable as usize]);
        let w2 = l2
            .open(&dir, &o)
            .unwrap_or_else(|e| panic!("{ctx}: open after the power loss: {e}"));
        assert_eq!(w2.next_entry_id().get(), durable + 1, "{ctx}");
        // The segments after the one the log ends in are leftovers that
        // never held an acknowledged entry: removed (FORMAT.md @D2), not
        // pooled, since their headers name ids the log gives out again.
        let (live, pool) = listing(&img);
        assert_eq!(live, (1..=ends_in).collect::<Vec<_>>(), "{ctx}: live");
        assert!(pool.is_empty(), "{ctx}: pool {pool:?}");

        // Appending goes on, through new segments with those ids.
        fill(&mut l2, &w2, 3);
        l2.sync(&w2).unwrap();
        let mut want = appended[..durable as usize].to_vec();
        want.extend(all_entries(1, durable + 1..=l2.next_id() - 1));
        let img2: Arc<dyn Directory> = Arc::new(img.crash_image(&CrashPolicy::drop_all()));
        for mode in [ReadMode::Strict, ReadMode::BestEffort] {
            let got = replay_ok(&img2, mode, &ctx);
            assert_entries(&got, &want, &format!("{ctx}: after the second power loss"));
        }
        drop(w2);

        // Any other power loss: a gap-free prefix of what was appended, and
        // the oracles of the crash suites (reopen, append, replay).
        for pol in every_policy(8) {
            let c = format!("{ctx}, {pol:?}");
            with_context(|| c.clone(), || check_state(&mem, &pol, &l, &o, &c));
        }
        drop(w);
    }
}

// ---------------------------------------------------------------------------
// 2. After a barrier: durable, flags clear, damage is damage

#[test]
fn synced_rotations_survive_every_crash_and_later_damage_is_corrupt_not_a_shorter_log() {
    let o = opts(SEG_8K, 2);
    let (mem, _, mut l, w) = filled(&o, 4);
    assert_eq!(durable_flags(&mem), [false, true, true, true, true]);
    l.sync(&w).unwrap();
    assert_eq!(
        durable_flags(&mem),
        [false; 5],
        "a barrier leaves a flag set on disk"
    );
    let all = all_entries(0, 1..=l.next_id() - 1);
    for pol in every_policy(16) {
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
        for mode in [ReadMode::Strict, ReadMode::BestEffort] {
            let got = replay_ok(&img, mode, &format!("{pol:?}"));
            assert_entries(&got, &all, &format!("{pol:?}, {mode:?}"));
        }
        let c = format!("synced, {pol:?}");
        with_context(|| c.clone(), || check_state(&mem, &pol, &l, &o, &c));
    }
    w.close().unwrap();

    // Damage in the middle of an early segment, every flag clear: replay
    // names the segment; open reads only the last segment and its
    // predecessor's header (FORMAT.md, "Fault model"), so it either resumes
    // after the last entry or refuses, naming the segment and changing
    // nothing. Never a shorter log.
    let mid2 = middle_frame(&mem, 2).off as u64;
    let faults = [
        ("lost sector in segment 2", 2, lost_sector(&mem, 2)),
        (
            "lost second half of segment 2",
            2,
            MediaFault::LostWrite {
                path: seg_path(2),
                offset: mid2,
                len: SEG_8K - mid2,
            },
        ),
        ("lost sector in segment 3", 3, lost_sector(&mem, 3)),
        (
            "flipped bit in an entry id in segment 2",
            2,
            MediaFault::FlipBits {
                path: seg_path(2),
                offset: mid2 + 16,
                mask: 0x10,
            },
        ),
    ];
    for (what, id, fault) in faults {
        let m = mem.snapshot();
        m.apply_media_fault(&fault).unwrap();
        let dir: Arc<dyn Directory> = Arc::new(m.clone());
        for mode in [ReadMode::Strict, ReadMode::BestEffort] {
            corrupt_in(
                replay(&dir, mode),
                &seg_path(id),
                &format!("{what}: {mode:?}"),
            );
        }
        let before = dump(&m);
        match Wal::open(dir.clone(), o.clone()) {
            Ok(w) => assert_eq!(
                w.next_entry_id().get(),
                all.len() as u64 + 1,
                "{what}: open resumed elsewhere than after the last entry"
            ),
            Err(e) => {
                corrupt_in::<()>(Err(e), &seg_path(id), what);
                assert_eq!(dump(&m), before, "{what}: a refused open changed bytes");
            }
        }
    }

    // Damage under a flagged segment: the rotation after a barrier left
    // segment 5's new entries and seal unsynced (the writer is killed, the
    // page cache survives), and a lost write empties a durable sector in
    // the middle of segment 5. Its new frames were written once the lost
    // ones were durable: replay and open refuse, naming segment 5.
    let fault = lost_sector(&mem, 5);
    let w = Wal::open(Arc::new(mem.clone()), o.clone()).unwrap();
    let mut l = Life::new(0, &all);
    fill(&mut l, &w, 1);
    drop(w);
    assert_eq!(
        durable_flags(&mem),
        [false, false, false, false, false, true]
    );
    let m = mem.snapshot();
    m.apply_media_fault(&fault).unwrap();
    let dir: Arc<dyn Directory> = Arc::new(m.clone());
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let kind = corrupt_in(replay(&dir, mode), &seg_path(5), &format!("{mode:?}"));
        assert!(
            matches!(kind, CorruptKind::BelowDurablePoint { .. }),
            "{mode:?}: {kind:?}"
        );
    }
    let kind = refused_open(&m, &o, &seg_path(5), "lost sector under a flagged segment");
    assert!(
        matches!(kind, CorruptKind::BelowDurablePoint { .. }),
        "{kind:?}"
    );
}

#[test]
fn damage_proven_durable_by_a_later_segment_is_corrupt_in_replay_and_open() {
    // Five rotations without a barrier: the fifth makes segments 1-4
    // durable and seals segment 5 after that barrier, so the seal's durable
    // watermark covers segment 4. Segment 5's header keeps its flag.
    let o = opts(SEG_8K, 2);
    let (mem, _, _, w) = filled(&o, 5);
    drop(w);
    assert_eq!(
        durable_flags(&mem),
        [false, false, false, false, true, true]
    );
    let m = mem.snapshot();
    m.apply_media_fault(&lost_sector(&m, 4)).unwrap();
    let dir: Arc<dyn Directory> = Arc::new(m.clone());
    let later = |kind: &CorruptKind| {
        matches!(
            kind,
            CorruptKind::DurableInLaterSegment { segment, .. } if *segment > 4
        )
    };
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let kind = corrupt_in(replay(&dir, mode), &seg_path(4), &format!("{mode:?}"));
        assert!(later(&kind), "{mode:?}: {kind:?}");
    }
    let kind = refused_open(&m, &o, &seg_path(4), "lost sector proven by segment 5");
    assert!(later(&kind), "{kind:?}");
}

// ---------------------------------------------------------------------------
// 3. A killed writer: the page cache survives, resume makes it durable

#[test]
fn resume_after_a_kill_makes_deferred_segments_durable_before_clearing_flags() {
    let o = opts(SEG_8K, 2);
    for rotations in [1, 3, 4, 6] {
        let ctx = format!("{rotations} rotations");
        let (mem, dir, l, w) = filled(&o, rotations);
        let all = all_entries(0, 1..=l.next_id() - 1);
        // What the page cache holds reaches the disk: every entry.
        let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&CrashPolicy::keep_all()));
        assert_entries(&replay_ok(&img, ReadMode::Strict, &ctx), &all, &ctx);
        // The writer is killed: no barrier, the page cache survives.
        drop(w);
        let killed = mem.snapshot();

        // Resume on the killed writer's directory: every entry is there, and
        // durable before any flag says so: a power loss right after the
        // open, whatever it keeps, loses nothing.
        let w = Wal::open(dir.clone(), o.clone()).unwrap();
        assert_eq!(w.next_entry_id().get(), all.len() as u64 + 1, "{ctx}");
        assert!(
            durable_flags(&mem).iter().all(|f| !f),
            "{ctx}: a flag is still set on disk after resume"
        );
        for pol in every_policy(8) {
            let img: Arc<dyn Directory> = Arc::new(mem.crash_image(&pol));
            for mode in [ReadMode::Strict, ReadMode::BestEffort] {
                let got = replay_ok(&img, mode, &format!("{ctx}, {pol:?}"));
                assert_entries(&got, &all, &format!("{ctx}, {pol:?}, {mode:?}"));
            }
        }
        drop(w);

        // A power loss at every step of that resume: a prefix, a log that
        // opens, and (once resume returned) every entry.
        let mut points = 0;
        for k in 0.. {
            let m = killed.snapshot();
            m.halt_after(k);
            let mut l = l.clone();
            let opened = l.open(&(Arc::new(m.clone()) as Arc<dyn Directory>), &o);
            let halted = m.is_halted();
            if !halted {
                opened.unwrap_or_else(|e| panic!("{ctx}: resume failed: {e}"));
            }
            for pol in policies() {
                let c = format!("{ctx}: power loss after op {k} of the resume, {pol:?}");
                with_context(|| c.clone(), || check_state(&m, &pol, &l, &o, &c));
            }
            points += 1;
            if !halted {
                break;
            }
        }
        assert!(points > 3, "{ctx}: resume took {points} operations");
    }
}

#[test]
fn a_lost_seal_is_written_by_resume_and_the_log_goes_on() {
    // Every entry reached the disk, the seal of segment 1 did not (@D1).
    let o = opts(SEG_8K, 2);
    let (mem, _, l, w) = filled(&o, 2);
    let all = all_entries(0, 1..=l.next_id() - 1);
    let img = mem.crash_image(&CrashPolicy::keep_all());
    drop(w);
    let seal = *chain(&img.read(&seg_path(1)).unwrap()).last().unwrap();
    assert_eq!(seal.kind, KIND_SEAL);
    edit(&img, &seg_path(1), |b| b[seal.off..seal.end].fill(0));
    assert!(!is_sealed(&img.read(&seg_path(1)).unwrap()));
    let dir: Arc<dyn Directory> = Arc::new(img.clone());
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        assert_entries(
            &replay_ok(&dir, mode, "seal lost"),
            &all,
            &format!("{mode:?}"),
        );
    }
    let w = Wal::open(dir.clone(), o.clone()).unwrap();
    assert_eq!(w.next_entry_id().get(), all.len() as u64 + 1);
    // Resume wrote the seal back, durably, before clearing segment 2's flag.
    let after = img.crash_image(&CrashPolicy::drop_all());
    assert!(is_sealed(&after.read(&seg_path(1)).unwrap()));
    assert_eq!(durable_flags(&after), [false; 3]);
    let after: Arc<dyn Directory> = Arc::new(after);
    assert_entries(&replay_ok(&after, ReadMode::Strict, "after"), &all, "after");
    drop(w);
}

// ---------------------------------------------------------------------------
// 4. Random crash sweep

/// A random workload for `seed`: buffered appends in bursts (some long
/// enough for five rotations), batches, durable appends, syncs, prefix
/// truncation, and reopening after a close or a kill. The same seed gives
/// the same operations.
fn mixed_workload(seed: u64) -> impl Fn(&Ctx, &mut Life) -> Result<()> {
    move |c: &Ctx, l: &mut Life| {
        let mut rng = Rng(seed);
        let mut w = c.open(l)?;
        let len = |rng: &mut Rng| match rng.below(10) {
            0 => 0,
            1 => 2000 + rng.below(1500) as usize,
            _ => rng.below(1200) as usize,
        };
        for _ in 0..24 {
            match rng.below(100) {
                0..=39 => {
                    let n = 1 + rng.below(12);
                    for _ in 0..n {
                        let p = l.next_payload(len(&mut rng));
                        l.append(&w, &p)?;
                    }
                }
                40..=44 => {
                    // Long enough for five or more rotations.
                    for _ in 0..40 + rng.below(20) {
                        let p = l.next_payload(900 + rng.below(400) as usize);
                        l.append(&w, &p)?;
                    }
                }
                45..=59 => {
                    let n = 2 + rng.below(5);
                    let first = l.next_id();
                    let ps: Vec<Vec<u8>> = (0..n)
                        .map(|i| payload(l.life, first + i, rng.below(700) as usize))
                        .collect();
                    l.batch(&w, &ps, rng.below(3) == 0)?;
                }
                60..=67 => {
                    let p = l.next_payload(len(&mut rng));
                    l.append_durable(&w, &p)?;
                }
                68..=79 => l.sync(&w)?,
                80..=87 => {
                    // Past the acknowledged entries too: sealed segments
                    // waiting for their barrier are made durable before any
                    // is retired (`truncating_segments_that_wait_...`).
                    let upto = rng.below(l.next_id());
                    l.truncate(&w, upto)?;
                }
                _ => {
                    if rng.below(2) == 0 {
                        l.sync(&w)?;
                        w.close()?;
                    } else {
                        drop(w); // killed: the page cache survives
                    }
                    w = c.open(l)?;
                }
            }
        }
        if rng.below(2) == 0 {
            l.sync(&w)?;
        }
        Ok(())
    }
}

/// What the sweep saw, to show it reached the states it is about.
#[derive(Debug, Default)]
struct Seen {
    states: u64,
    /// Crash images with a live segment whose flag is set.
    flagged: u64,
    /// Crash images whose open moved leftover segments into the pool (@D2).
    leftovers: u64,
    /// Crash images that replay fewer entries than were appended.
    shorter: u64,
}

/// Counts what the crash image of `mem` under `pol` holds ([`Seen`]).
fn classify(seen: &mut Seen, mem: &MemoryDirectory, pol: &CrashPolicy, l: &Life, o: &WalOptions) {
    let img = mem.crash_image(pol);
    let ids = segment_ids(&img);
    let flagged = ids.iter().any(|&id| {
        let b = img.read(&seg_path(id)).unwrap();
        seg_header(&b).is_some_and(|h| h.segment == id) && flag(&b)
    });
    let dir: Arc<dyn Directory> = Arc::new(img.clone());
    let last = replay(&dir, ReadMode::BestEffort).map_or(0, |(v, _)| v.last().map_or(0, |e| e.0));
    let live = |m: &MemoryDirectory| listing(m).0.into_iter().collect::<BTreeSet<_>>();
    let before = live(&img);
    if let Ok(w) = Wal::open(dir, o.clone()) {
        drop(w);
    }
    // Live segments the open removed (@D2 leftovers; an unborn final
    // segment is replaced, not removed).
    let moved = before.difference(&live(&img)).count();
    seen.states += 1;
    seen.flagged += u64::from(flagged);
    seen.leftovers += u64::from(moved > 0);
    seen.shorter += u64::from(last + 1 < l.next_id());
}

/// `ZERODUR_DEFERRED_CASES`, default [`DEFAULT_CASES`].
fn cases() -> u64 {
    std::env::var("ZERODUR_DEFERRED_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[test]
fn random_crashes_among_deferred_rotations_keep_every_acknowledged_entry() {
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut points = 0u64;
    for seed in 0..cases() {
        let seg = if seed % 3 == 2 { SEG_16K } else { SEG_8K };
        let o = opts(seg, [0, 1, 3][(seed % 3) as usize]);
        let sc = Scenario::fresh(format!("seed {seed}"), o.clone());
        let wl = mixed_workload(seed);
        let (mem, _, res, _) = sc.run(&wl, None);
        res.unwrap_or_else(|e| panic!("seed {seed}: workload failed without a crash: {e}"));
        let ops = mem.op_count();
        let mut rng = Rng(seed ^ 0xDEFE_4DED);
        let ks: BTreeSet<u64> = (0..6).map(|_| rng.below(ops + 1)).collect();
        for k in ks {
            let (mem, life, res, halted) = sc.run(&wl, Some(k));
            if !halted {
                res.unwrap_or_else(|e| panic!("seed {seed}: op {k}: {e}"));
            }
            let pols = [
                CrashPolicy::keep_all(),
                CrashPolicy::drop_all(),
                CrashPolicy::seeded(rng.next()),
                CrashPolicy::seeded(rng.next()),
            ];
            for pol in pols {
                let c = format!("seed {seed}: crash after op {k} of {ops}, {pol:?}");
                with_context(
                    || c.clone(),
                    || {
                        check_state(&mem, &pol, &life, &o, &c);
                        classify(&mut seen, &mem, &pol, &life, &o);
                    },
                );
            }
            points += 1;
        }
    }
    println!(
        "random_crashes_among_deferred_rotations: crash states checked: {} ({} crash points, {} seeds) in {:.2?}; with a flagged segment {}, with leftovers removed by open {}, shorter than appended {}",
        seen.states,
        points,
        cases(),
        started.elapsed(),
        seen.flagged,
        seen.leftovers,
        seen.shorter
    );
    if cases() >= DEFAULT_CASES {
        assert!(seen.flagged > seen.states / 10, "{seen:?}");
        assert!(seen.leftovers > 0, "{seen:?}");
        assert!(seen.shorter > 0, "{seen:?}");
    }
}

/// Two rotations without a barrier, a truncation past the unsynced entries
/// (a checkpoint may cover entries the WAL has not made durable) that
/// retires both sealed segments into the pool while they still wait for
/// their barrier, two rotations into those pooled files, then a sync.
fn truncate_unsynced_then_recycle(c: &Ctx, l: &mut Life) -> Result<()> {
    let w = c.open(l)?;
    let rotate = |l: &mut Life, n: u64| -> Result<()> {
        let target = w.active_segment().get() + n;
        while w.active_segment().get() < target {
            let p = l.next_payload(len_of(l.next_id()));
            l.append(&w, &p)?;
        }
        Ok(())
    };
    rotate(l, 2)?;
    let upto = l.next_id() - 1;
    assert_eq!(l.truncate(&w, upto)?, 2);
    rotate(l, 2)?;
    assert_eq!(w.stats().recycled_reuses, 2);
    l.sync(&w)
}

/// Found by this file (against the first version of deferred rotation): the
/// barrier that made a retired-and-recycled segment durable rewrote its old
/// header (flag cleared) through the handle it was sealed with, into the
/// file that then held a later segment; a crash before that segment's own
/// header was rewritten left `00000000000000000005.seg` holding segment 2's
/// header. `truncate_prefix` now makes waiting segments durable first.
#[test]
fn truncating_segments_that_wait_for_their_barrier_then_recycling_them_survives_every_crash() {
    let started = Instant::now();
    let sc = Scenario::fresh("truncate unsynced, recycle", opts(SEG_8K, 2));
    let t = Instant::now();
    let tally = enumerate(&sc, &truncate_unsynced_then_recycle);
    let parts = [(sc.name.clone(), tally, t.elapsed())];
    assert!(report("truncate_unsynced_then_recycle", &parts, started) > 0);
}

// ---------------------------------------------------------------------------
// 5. On a real file system

#[test]
fn fs_reopen_after_dropping_the_writer_replays_everything_and_then_reads_only_the_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: Arc<dyn Directory> = Arc::new(FsDirectory::new(tmp.path()).unwrap());
    let o = opts(SEG_8K, 2);
    let mut l = Life::new(0, &[]);
    let w = l.open(&dir, &o).unwrap();
    fill(&mut l, &w, 4);
    let all = all_entries(0, 1..=l.next_id() - 1);
    let file_flags = || -> Vec<bool> {
        segment_ids(&*dir)
            .iter()
            .map(|&id| flag(&std::fs::read(tmp.path().join(seg_path(id))).unwrap()))
            .collect()
    };
    assert_eq!(file_flags(), [false, true, true, true, true]);
    drop(w); // no close: no barrier

    // The reopen walks the flagged segments, makes them durable, and
    // clears every flag.
    let counting = Counting::new(dir.clone());
    let w = Wal::open(counting.clone(), o.clone()).unwrap();
    assert_eq!(w.next_entry_id().get(), all.len() as u64 + 1);
    let walked = counting.read_paths();
    assert_eq!(file_flags(), [false; 5]);
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        assert_entries(
            &replay_ok(&dir, mode, "reopened"),
            &all,
            &format!("{mode:?}"),
        );
    }
    w.close().unwrap();

    // With every flag clear, resume reads only the last segment (and its
    // predecessor's header), whatever the number of segments.
    let counting = Counting::new(dir.clone());
    let w = Wal::open(counting.clone(), o.clone()).unwrap();
    assert_eq!(w.next_entry_id().get(), all.len() as u64 + 1);
    let read: BTreeSet<String> = counting.read_paths().into_iter().collect();
    let ids = segment_ids(&*dir);
    let allowed: BTreeSet<String> = ids[ids.len() - 2..].iter().map(|&i| seg_path(i)).collect();
    assert!(
        read.is_subset(&allowed) && counting.reads() <= 2,
        "resume read {:?}; the reopen after the drop read {walked:?}",
        counting.read_paths()
    );
    assert!(
        walked.iter().collect::<BTreeSet<_>>().len() > read.len(),
        "the reopen after the drop did not walk the flagged segments: {walked:?}"
    );
    w.close().unwrap();
    assert_entries(&replay_ok(&dir, ReadMode::Strict, "closed"), &all, "closed");
}

/// Found by the `media_fault_image` fuzz target
/// (`fuzz/regressions/media_fault_image/close-without-marker-lost-flag`):
/// four entries, each rotation deferred, then `close` with no room left in
/// the final segment for its marker. One misdirected write — the close
/// barrier's rewrite of segment 2's header (clearing "predecessor not yet
/// durable") lands inside entry 1 in segment 1 — left the flag set and entry
/// 1 torn: with no frame proving the barrier, best-effort replay returned no
/// entry and no error. `close` now seals the final segment with a durable
/// lag of zero when the marker does not fit, and that seal is the proof:
/// the damage is `Corrupt`, never a shorter log.
#[test]
fn close_without_room_for_its_marker_still_proves_its_barrier() {
    let max = max_payload(SEG_16K);
    let (mem, dir, w) = deferred_16k(&[max, 559, max, max]);
    assert_eq!(w.active_segment().get(), 4);
    w.close().unwrap();
    assert_eq!(replay_ok(&dir, ReadMode::Strict, "after close").len(), 4);

    misdirect_header_2_into_segment_1(&mem, &dir);
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let kind = corrupt_in(replay(&dir, mode), &seg_path(1), "replay");
        assert!(
            matches!(kind, CorruptKind::DurableInLaterSegment { .. }),
            "{mode:?}: {kind:?}"
        );
    }
}

/// The same misdirected write after a `sync` and a power loss, with no
/// `close`: no frame was written after the barrier, so the proof that
/// segment 1 became durable is the cleared flag in the headers of segments
/// 3 and 4, which the fault did not touch. Best-effort replay used to
/// return no entry and no error.
#[test]
fn a_reverted_flag_is_outvoted_by_later_headers() {
    let max = max_payload(SEG_16K);
    let (mem, _, w) = deferred_16k(&[max, 559, max, 100]);
    w.sync().unwrap();
    drop(w);
    let img = mem.crash_image(&CrashPolicy::keep_all());
    let dir: Arc<dyn Directory> = Arc::new(img.clone());
    assert_eq!(durable_flags(&img), [false; 4]);
    assert_eq!(replay_ok(&dir, ReadMode::Strict, "after sync").len(), 4);
    misdirect_header_2_into_segment_1(&img, &dir);
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let kind = corrupt_in(replay(&dir, mode), &seg_path(1), "replay");
        assert_eq!(
            kind,
            CorruptKind::DurableInLaterSegment {
                segment: 3,
                evidence: 0
            },
            "{mode:?}"
        );
    }
}

/// The close case with nothing but the close to prove the barrier: two
/// segments, the second full, so `close` has no room for its marker and no
/// later header exists. The seal `close` writes instead is the only proof
/// that segment 1 became durable once segment 2's flag reverts.
#[test]
fn close_seals_a_full_final_segment_and_that_seal_is_the_proof() {
    let max = max_payload(SEG_16K);
    let (mem, dir, w) = deferred_16k(&[max, max]);
    assert_eq!(w.active_segment().get(), 2);
    w.close().unwrap();
    let last = *frames_of_segment(&dir, 2).last().unwrap();
    assert_eq!(last.kind, KIND_SEAL, "close sealed the full final segment");
    assert_eq!(replay_ok(&dir, ReadMode::Strict, "after close").len(), 2);

    misdirect_header_2_into_segment_1(&mem, &dir);
    for mode in [ReadMode::Strict, ReadMode::BestEffort] {
        let kind = corrupt_in(replay(&dir, mode), &seg_path(1), "replay");
        assert!(
            matches!(kind, CorruptKind::DurableInLaterSegment { segment: 2, .. }),
            "{mode:?}: {kind:?}"
        );
    }
}

fn frames_of_segment(dir: &Arc<dyn Directory>, id: u64) -> Vec<Frame> {
    chain(&dir.read(&seg_path(id)).unwrap())
}

/// The fault the fuzz target found: the sector holding segment 2's header
/// (rewritten by a barrier to clear its flag) lands inside segment 1's first
/// entry, and segment 2's header reverts to its flagged content.
fn misdirect_header_2_into_segment_1(mem: &MemoryDirectory, dir: &Arc<dyn Directory>) {
    mem.apply_media_fault(&MediaFault::Misdirected {
        path: seg_path(2),
        offset: 0,
        len: 512,
        to_path: seg_path(1),
        to_offset: 14848,
    })
    .unwrap();
    assert!(flag(&dir.read(&seg_path(2)).unwrap()), "the flag reverted");
}

/// A WAL of 16 KiB segments in memory, no pool, with entries of `lens`
/// bytes appended (each rotation deferred: nothing is synced).
fn deferred_16k(lens: &[usize]) -> (MemoryDirectory, Arc<dyn Directory>, Wal) {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let w = Wal::open(Arc::clone(&dir), opts(SEG_16K, 0)).unwrap();
    for &len in lens {
        w.append(&payload(0, w.next_entry_id().get(), len)).unwrap();
    }
    (mem, dir, w)
}
