//! The media-fault enumeration: what replay, recovery and `Wal::open` do
//! with bytes that a disk, a file system or an operator damaged *after*
//! zerodur made them durable. Built like the crash enumeration: workloads
//! run to a clean stop on `MemoryDirectory`, then every fault of the plan is
//! applied to a fresh snapshot of the result, and each state is checked
//! against the oracles of `FORMAT.md` ("Fault model"):
//!
//! - replay (strict and best effort) and `recover_with_wal` return exactly
//!   the acknowledged entries, or a typed error naming a file of the store;
//!   never a shorter log without an error while the files still hold proof
//!   (an undamaged frame written after the missing entry was durable) that
//!   more was durable, and never a shorter log at all when the missing
//!   entry sits in a sealed segment;
//! - `Wal::open` either refuses, having modified nothing, or resumes exactly
//!   where best-effort replay ends (so no entry id is handed out twice),
//!   leaving every file but the final segment untouched and every entry
//!   best-effort replay returned readable.
//!
//! Faults: every byte of every segment, frame and checkpoint header flipped
//! (two bits each), payload bytes at a stride (`ZERODUR_MEDIA_STRIDE`,
//! default 7), every 512-byte sector reverted to its prior durable contents
//! (a lost write; for recycled files, the earlier life), every sector
//! misdirected (to the next sector, and to the same offset of every other
//! file of its folder), every truncation length of every file, extensions,
//! and foreign files under every name. The test prints
//! `media fault states checked: N`.

mod wal_common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wal_common::*;
use zerodur::publish::{publish_checkpoint, PublishOptions};
use zerodur::recover::{recover_with_wal, RecoveryOptions};
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions};
use zerodur::{
    CrashPolicy, Directory, Error, MediaFault, MemoryDirectory, RecordLog, RecordLogMode,
};

const SECTOR: usize = 512;

/// What the WAL states came to: best-effort replay returned every entry, a
/// shorter (allowed) prefix, or an error; `Wal::open` resumed or refused.
static OUTCOMES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
const FULL: usize = 0;
const SHORTER: usize = 1;
const REFUSED: usize = 2;
const OPENED: usize = 3;
const OPEN_REFUSED: usize = 4;

fn tally(i: usize) {
    OUTCOMES[i].fetch_add(1, Ordering::Relaxed);
}
const CKPT_DIR: &str = "checkpoints";
const TAG: u64 = 0xC0FFEE;

/// Payload bytes between two flipped ones.
fn stride() -> usize {
    std::env::var("ZERODUR_MEDIA_STRIDE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(7)
        .max(1)
}

// ---------------------------------------------------------------------------
// Workloads: a clean, durable directory and what it acknowledged.

struct Image {
    name: &'static str,
    dir: MemoryDirectory,
    opts: WalOptions,
    /// Every acknowledged entry, in order (the store was closed cleanly).
    acked: Vec<Entry>,
    /// Whether checkpoints were published (recovery is then checked too).
    checkpoints: bool,
}

fn sizes(i: u64) -> usize {
    [0usize, 1, 100, 300, 17, 700, 48, 1500, 5][(i % 9) as usize]
}

/// Several 8 KiB segments, a reopen (resume marker), durable and plain
/// appends, batches, an empty and a maximum-length entry, truncation into
/// the recycle pool and rotation into recycled files.
fn segments_workload() -> Image {
    let o = opts(8 * 1024, 2);
    let dir = MemoryDirectory::new();
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let mut acked = Vec::new();
    let push = |acked: &mut Vec<Entry>, w: &Wal, id: u64, p: Vec<u8>, durable: bool| {
        let got = if durable {
            w.append_durable(&p)
        } else {
            w.append(&p)
        };
        assert_eq!(got.unwrap().get(), id);
        acked.push((id, p));
    };
    let w = Wal::open(d.clone(), o.clone()).unwrap();
    for id in 1..=20 {
        push(&mut acked, &w, id, payload(1, id, sizes(id)), id % 3 == 0);
    }
    w.close().unwrap();
    let w = Wal::open(d.clone(), o.clone()).unwrap();
    for id in 21..=40 {
        push(&mut acked, &w, id, payload(1, id, sizes(id)), id % 4 == 0);
    }
    let batch: Vec<Vec<u8>> = (41..=45).map(|id| payload(1, id, 90)).collect();
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    w.append_batch_durable(&refs).unwrap();
    acked.extend((41..=45).zip(batch));
    push(
        &mut acked,
        &w,
        46,
        payload(1, 46, max_payload(8 * 1024)),
        true,
    );
    push(&mut acked, &w, 47, Vec::new(), false);
    w.sync().unwrap();
    w.truncate_prefix(EntryId::new(30)).unwrap();
    for id in 48..=90 {
        push(
            &mut acked,
            &w,
            id,
            payload(1, id, sizes(id) + 200),
            id % 5 == 0,
        );
    }
    w.close().unwrap();
    let w = Wal::open(d, o.clone()).unwrap();
    for id in 91..=96 {
        push(&mut acked, &w, id, payload(1, id, 64), id == 94);
    }
    w.close().unwrap();
    Image {
        name: "segments",
        dir,
        opts: o,
        acked,
        checkpoints: false,
    }
    .retrimmed()
}

/// Checkpoints published with retention (keep 2) while the log rotates and
/// is truncated behind them.
fn checkpoint_workload() -> Image {
    let o = opts(8 * 1024, 1);
    let dir = MemoryDirectory::new();
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let w = Wal::open(d.clone(), o.clone()).unwrap();
    let publish = PublishOptions::new().tag(TAG).keep(2);
    let mut acked = Vec::new();
    let mut sum = 0u64;
    for id in 1..=120u64 {
        let p = rkyv::to_bytes::<rkyv::rancor::Error>(&id).unwrap().to_vec();
        assert_eq!(w.append(&p).unwrap().get(), id);
        acked.push((id, p));
        sum += id;
        if id % 30 == 0 {
            publish_checkpoint(
                &*d,
                &w,
                &publish,
                EntryId::new(id - 10),
                &(sum - tail_sum(id)),
            )
            .unwrap();
        }
    }
    w.close().unwrap();
    Image {
        name: "checkpoints",
        dir,
        opts: o,
        acked,
        checkpoints: true,
    }
    .retrimmed()
}

/// A log that went through power losses: crash images taken with unsynced
/// appends in flight (torn tails, frames that landed without their
/// predecessors), each reopened (resume markers over the leftovers) and
/// appended to, then closed; 16 KiB segments recycled several times, so
/// recycled files carry earlier lives' frames.
fn crashed_workload() -> Image {
    let o = opts(16 * 1024, 3);
    let mut dir = MemoryDirectory::new();
    let mut next = 1u64;
    for (round, seed) in [3u64, 11, 29, 47].into_iter().enumerate() {
        let d: Arc<dyn Directory> = Arc::new(dir.clone());
        let w = Wal::open(d, o.clone()).unwrap();
        assert_eq!(w.next_entry_id().get(), next, "round {round}");
        for i in 0..60u64 {
            let id = w.next_entry_id().get();
            let p = payload(round as u32, id, sizes(id + i) * 2 + 40);
            if i % 7 == 0 {
                w.append_durable(&p).unwrap();
            } else {
                w.append(&p).unwrap();
            }
        }
        let durable = w.durable_entry_id().unwrap().get();
        w.truncate_prefix(EntryId::new(durable.saturating_sub(40)))
            .unwrap();
        for _ in 0..9 {
            let id = w.next_entry_id().get();
            w.append(&payload(round as u32, id, 333)).unwrap();
        }
        dir = dir.crash_image(&CrashPolicy::seeded(seed));
        drop(w);
        let d: Arc<dyn Directory> = Arc::new(dir.clone());
        next = replay(&d, ReadMode::BestEffort)
            .unwrap()
            .0
            .last()
            .unwrap()
            .0
            + 1;
    }
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let w = Wal::open(d.clone(), o.clone()).unwrap();
    for _ in 0..5 {
        let id = w.next_entry_id().get();
        w.append(&payload(9, id, 77)).unwrap();
    }
    w.close().unwrap();
    let acked = replay(&d, ReadMode::Strict).unwrap().0;
    Image {
        name: "crashed",
        dir,
        opts: o,
        acked,
        checkpoints: false,
    }
    .retrimmed()
}

/// Sum of the ten ids before `id` and `id` itself minus the last: the
/// entries a checkpoint at `id - 10` does not include.
fn tail_sum(id: u64) -> u64 {
    (id - 9..=id).sum()
}

impl Image {
    /// Keeps only the acknowledged entries the log still holds (a
    /// truncation retired a prefix).
    fn retrimmed(mut self) -> Image {
        let d: Arc<dyn Directory> = Arc::new(self.dir.snapshot());
        let (got, _) = replay(&d, ReadMode::Strict).unwrap();
        let first = got.first().map_or(u64::MAX, |e| e.0);
        self.acked.retain(|e| e.0 >= first);
        assert_entries(&got, &self.acked, self.name);
        self
    }
}

// ---------------------------------------------------------------------------
// What the clean image says about proof.

/// For each entry id in the final segment, the byte ranges of the frames
/// that prove it durable (a later epoch, or a later id whose watermark
/// covers it).
struct Proofs {
    final_path: String,
    /// First id in the final segment.
    final_first: u64,
    /// entry id -> (end of its frame, proof frames' ranges)
    by_id: BTreeMap<u64, (usize, Vec<(usize, usize)>)>,
}

fn proofs(dir: &MemoryDirectory) -> Proofs {
    let ids = segment_ids(dir);
    let last = *ids.last().unwrap();
    let path = seg_path(last);
    let b = dir.read(&path).unwrap();
    let frames = chain(&b);
    let first = seg_header(&b).unwrap().first;
    let mut by_id = BTreeMap::new();
    for f in frames
        .iter()
        .filter(|f| matches!(f.kind, KIND_ENTRY | KIND_ENTRY_CONT))
    {
        let proof: Vec<(usize, usize)> = frames
            .iter()
            .filter(|g| g.off > f.off)
            .filter(|g| {
                let lag = u32::from_le_bytes(b[g.off + 12..g.off + 16].try_into().unwrap());
                let watermark = (lag != u32::MAX).then(|| g.id.saturating_sub(lag.into()));
                g.epoch > f.epoch || (g.id > f.id && watermark.is_some_and(|w| w >= f.id))
            })
            .map(|g| (g.off, g.end))
            .collect();
        by_id.insert(f.id, (f.end, proof));
    }
    Proofs {
        final_path: path,
        final_first: first,
        by_id,
    }
}

// ---------------------------------------------------------------------------
// The fault plan.

fn files_of(dir: &MemoryDirectory) -> BTreeMap<String, Vec<u8>> {
    dir.files()
        .into_iter()
        .filter(|p| !p.ends_with("/LOCK"))
        .map(|p| {
            let b = dir.read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn plan(img: &Image) -> Vec<MediaFault> {
    let files = files_of(&img.dir);
    let mut out = plan_files(&files);
    // Foreign files under names zerodur would read.
    let ids = segment_ids(&img.dir);
    let next = ids.last().unwrap() + 1;
    for name in [
        seg_path(next),
        format!(
            "{WAL_DIR}/{:020}.free",
            ids[0].saturating_sub(1).max(1) + 100
        ),
        format!("{CKPT_DIR}/checkpoint-{:020}.zdc", 999_999),
    ] {
        out.push(MediaFault::Foreign {
            path: name,
            bytes: b"junk".repeat(100),
        });
    }
    out
}

/// Every fault of the plan on the files that exist.
fn plan_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<MediaFault> {
    let mut out = Vec::new();
    let flip = |out: &mut Vec<MediaFault>, path: &str, at: usize| {
        for bit in [at % 8, (at + 3) % 8] {
            out.push(MediaFault::FlipBits {
                path: path.to_owned(),
                offset: at as u64,
                mask: 1 << bit,
            });
        }
    };
    for (path, b) in files {
        let len = b.len();
        // Headers: segment, checkpoint (64 bytes each).
        for at in 0..64.min(len) {
            flip(&mut out, path, at);
        }
        // Frame headers, every byte; payload bytes at the stride.
        if path.ends_with(".seg") || path.ends_with(".free") {
            for f in chain(b) {
                for at in f.off..f.off + FRAME_HEADER_LEN {
                    flip(&mut out, path, at);
                }
                for at in
                    (f.off + FRAME_HEADER_LEN..f.off + FRAME_HEADER_LEN + f.len).step_by(stride())
                {
                    out.push(MediaFault::FlipBits {
                        path: path.clone(),
                        offset: at as u64,
                        mask: 1 << (at % 8),
                    });
                }
            }
        } else {
            for at in (64..len).step_by(stride()) {
                flip(&mut out, path, at);
            }
        }
        // Sectors: lost (reverted) and misdirected.
        for s in (0..len).step_by(SECTOR) {
            let n = SECTOR.min(len - s) as u64;
            out.push(MediaFault::LostWrite {
                path: path.clone(),
                offset: s as u64,
                len: n,
            });
            if s + SECTOR < len {
                out.push(MediaFault::Misdirected {
                    path: path.clone(),
                    offset: s as u64,
                    len: n,
                    to_path: path.clone(),
                    to_offset: (s + SECTOR) as u64,
                });
            }
            for (other, ob) in files {
                if other != path && parent(other) == parent(path) && s + SECTOR <= ob.len() {
                    out.push(MediaFault::Misdirected {
                        path: path.clone(),
                        offset: s as u64,
                        len: n,
                        to_path: other.clone(),
                        to_offset: s as u64,
                    });
                }
            }
        }
        // Every truncation length; extensions.
        for l in 0..len {
            out.push(MediaFault::Truncate {
                path: path.clone(),
                len: l as u64,
            });
        }
        for (extra, fill) in [(1usize, 0u8), (16, 0), (512, 0), (4096, 0xA5)] {
            out.push(MediaFault::Extend {
                path: path.clone(),
                len: (len + extra) as u64,
                fill,
            });
        }
        // A foreign file in its place.
        for bytes in [
            b"#!/bin/sh\necho not a zerodur file\n".repeat(len / 34 + 1),
            vec![0u8; len],
            vec![0xFF; len],
        ] {
            out.push(MediaFault::Foreign {
                path: path.clone(),
                bytes,
            });
        }
    }
    out
}

fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

// ---------------------------------------------------------------------------
// The oracles.

/// Which byte ranges of which files differ between `clean` and `faulted`.
struct Touched<'a> {
    clean: &'a BTreeMap<String, Vec<u8>>,
    faulted: &'a BTreeMap<String, Vec<u8>>,
}

impl Touched<'_> {
    fn range(&self, path: &str, a: usize, b: usize) -> bool {
        match (self.clean.get(path), self.faulted.get(path)) {
            (Some(c), Some(f)) => f.len() < b || c[a..b] != f[a..b],
            _ => true,
        }
    }
}

/// A shorter log than acknowledged, ending before entry `k`, is allowed
/// only if `k` lies in the final segment, the fault touched that segment at
/// or before `k`'s frame, and no proof of `k` survived intact.
fn shorter_allowed(k: u64, pr: &Proofs, t: &Touched<'_>) -> Result<(), String> {
    if k < pr.final_first {
        return Err(format!("entry {k} of a sealed segment is missing"));
    }
    let Some((end, proof)) = pr.by_id.get(&k) else {
        return Err(format!("entry {k} is not in the final segment's chain"));
    };
    if !t.range(&pr.final_path, 0, *end) {
        return Err(format!("entry {k} is missing though its frame is intact"));
    }
    if let Some((a, b)) = proof.iter().find(|(a, b)| !t.range(&pr.final_path, *a, *b)) {
        return Err(format!(
            "entry {k} is missing though the frame at {a}..{b} proves it durable and is intact"
        ));
    }
    Ok(())
}

/// The replay oracle: exactly the acknowledged entries, an allowed shorter
/// prefix, or a typed error naming a file of the store.
fn check_replay(
    got: &zerodur::Result<Vec<Entry>>,
    img: &Image,
    pr: &Proofs,
    t: &Touched<'_>,
) -> Result<(), String> {
    match got {
        Ok(v) => {
            if v.len() > img.acked.len() || v[..] != img.acked[..v.len()] {
                return Err(format!(
                    "replayed what was never acknowledged: {}",
                    describe(v)
                ));
            }
            match img.acked.get(v.len()) {
                None => Ok(()),
                Some((k, _)) => shorter_allowed(*k, pr, t),
            }
        }
        Err(e) => typed(e),
    }
}

fn typed(e: &Error) -> Result<(), String> {
    let s = e.to_string();
    let names_file = s.contains(&format!("`{WAL_DIR}/"))
        || s.contains(&format!("`{CKPT_DIR}/"))
        || s.contains(&format!("`{WAL_DIR}`"));
    let typed = matches!(
        e,
        Error::Corrupt { .. }
            | Error::ChecksumMismatch { .. }
            | Error::UnsupportedVersion { .. }
            | Error::NotFound { .. }
            | Error::TagMismatch { .. }
            | Error::Validation { .. }
    );
    if names_file && typed {
        Ok(())
    } else {
        Err(format!("untyped or unnamed error: {e:?}"))
    }
}

fn replay_entries(dir: &Arc<dyn Directory>, mode: ReadMode) -> zerodur::Result<Vec<Entry>> {
    replay(dir, mode).map(|(v, _)| v)
}

/// Checks one faulted state. Returns a description of the first violation.
fn check_state(
    img: &Image,
    pr: &Proofs,
    clean: &BTreeMap<String, Vec<u8>>,
    m: &MemoryDirectory,
) -> Result<(), String> {
    let faulted = files_of(m);
    let t = Touched {
        clean,
        faulted: &faulted,
    };
    let dir: Arc<dyn Directory> = Arc::new(m.clone());
    let strict = replay_entries(&dir, ReadMode::Strict);
    let best = replay_entries(&dir, ReadMode::BestEffort);
    check_replay(&strict, img, pr, &t).map_err(|e| format!("strict replay: {e}"))?;
    check_replay(&best, img, pr, &t).map_err(|e| format!("best-effort replay: {e}"))?;
    if let (Ok(s), Ok(b)) = (&strict, &best) {
        if s != b {
            return Err("strict and best-effort replay disagree".into());
        }
    }
    if strict.is_ok() && best.is_err() {
        return Err("strict replay accepted what best effort refused".into());
    }
    tally(match &best {
        Ok(v) if v.len() == img.acked.len() => FULL,
        Ok(_) => SHORTER,
        Err(_) => REFUSED,
    });
    if img.checkpoints {
        check_recovery(img, pr, &t, &dir)?;
    }
    check_open(img, pr, &t, &dir, m, &faulted, &best)
}

fn check_recovery(
    img: &Image,
    pr: &Proofs,
    t: &Touched<'_>,
    dir: &Arc<dyn Directory>,
) -> Result<(), String> {
    let wal_touched = t
        .clean
        .keys()
        .chain(t.faulted.keys())
        .any(|p| p.starts_with(WAL_DIR) && t.range(p, 0, t.clean.get(p).map_or(0, Vec::len)));
    for (mode, opts) in [
        ("strict", RecoveryOptions::strict()),
        ("best effort", RecoveryOptions::best_effort()),
    ] {
        let r = recover_with_wal::<u64, u64, _, _, _>(
            dir,
            &opts.tag(TAG).wal_dir(WAL_DIR).checkpoint_dir(CKPT_DIR),
            |c| c.map_or(0, |c| c.to_native()),
            |sum, _, e| *sum += e.to_native(),
        );
        match r {
            Ok(r) => {
                let n = r.last_entry.map_or(0, EntryId::get);
                let want: u64 = (1..=n).sum();
                if r.state != want {
                    return Err(format!(
                        "{mode} recovery: state {} after {n} entries, want {want}",
                        r.state
                    ));
                }
                let last = img.acked.last().map_or(0, |e| e.0);
                if n < last {
                    if !wal_touched && mode == "best effort" {
                        return Err(format!(
                            "{mode} recovery stopped at {n} of {last} with only checkpoints damaged"
                        ));
                    }
                    shorter_allowed(n + 1, pr, t).map_err(|e| format!("{mode} recovery: {e}"))?;
                }
            }
            Err(e) => typed(&e).map_err(|e| format!("{mode} recovery: {e}"))?,
        }
    }
    Ok(())
}

fn check_open(
    img: &Image,
    pr: &Proofs,
    t: &Touched<'_>,
    dir: &Arc<dyn Directory>,
    m: &MemoryDirectory,
    before: &BTreeMap<String, Vec<u8>>,
    best: &zerodur::Result<Vec<Entry>>,
) -> Result<(), String> {
    let final_seg = segment_ids(m).last().map(|&id| seg_path(id));
    let opened = Wal::open(dir.clone(), img.opts.clone());
    tally(if opened.is_ok() { OPENED } else { OPEN_REFUSED });
    match opened {
        Err(e) => {
            typed(&e).map_err(|e| format!("Wal::open: {e}"))?;
            let after = files_of(m);
            if &after != before {
                return Err(format!("Wal::open refused ({e}) but modified the store"));
            }
            Ok(())
        }
        Ok(w) => {
            let next = w.next_entry_id().get();
            drop(w);
            match best {
                // Resume ends the log where best-effort replay does.
                Ok(v) => {
                    let want = v
                        .last()
                        .map_or(img.acked.first().map_or(1, |e| e.0), |e| e.0 + 1);
                    if next != want {
                        return Err(format!(
                            "Wal::open resumed at {next}, best-effort replay ends before {want}"
                        ));
                    }
                }
                // Damage in a segment resume does not read (replay refused
                // it): resume must still end the log where the oracle
                // allows, and never hand out an id past the end.
                Err(_) => {
                    let end = img.acked.last().map_or(1, |e| e.0 + 1);
                    if next > end {
                        return Err(format!(
                            "Wal::open resumed at {next}, past the log's end {end}"
                        ));
                    }
                    if next < end {
                        shorter_allowed(next, pr, t).map_err(|e| {
                            format!("Wal::open resumed at {next} (ids reused): {e}")
                        })?;
                    }
                }
            }
            let after = files_of(m);
            for (p, b) in before {
                if Some(p) != final_seg.as_ref() && after.get(p) != Some(b) {
                    return Err(format!("Wal::open modified {p}"));
                }
            }
            if let Ok(v) = best {
                let again = replay_entries(dir, ReadMode::BestEffort)
                    .map_err(|e| format!("replay after Wal::open: {e}"))?;
                if &again != v {
                    return Err(format!(
                        "Wal::open changed what replays: {} then {}",
                        describe(v),
                        describe(&again)
                    ));
                }
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// The enumeration.

fn enumerate(img: &Image) -> u64 {
    let clean = files_of(&img.dir);
    let pr = proofs(&img.dir);
    let faults = plan(img);
    let next = AtomicU64::new(0);
    let checked = AtomicU64::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(fault) = faults.get(i) else { break };
                if failures.lock().unwrap().len() >= 5 {
                    break;
                }
                let m = img.dir.snapshot();
                if m.apply_media_fault(fault).is_err() {
                    continue;
                }
                if files_of(&m) == clean {
                    continue; // a no-op fault (e.g. a sector whose prior is the same)
                }
                checked.fetch_add(1, Ordering::Relaxed);
                if let Err(why) = check_state(img, &pr, &clean, &m) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {fault}: {why}", img.name));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    checked.into_inner()
}

// ---------------------------------------------------------------------------
// The record log joins the enumeration: the same fault plan over a record
// log's file, against the same oracle (every record a surviving frame
// proves durable, or a typed error; a refused open changes nothing).

const RLOG: &str = "meta/manifest.log";

fn record_image() -> (MemoryDirectory, Vec<Vec<u8>>) {
    let dir = MemoryDirectory::new();
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    d.create_dir_all("meta").unwrap();
    let mut log = RecordLog::open(d, RLOG).unwrap();
    let mut records = Vec::new();
    for i in 0..60u64 {
        let r = payload(7, i, sizes(i) / 3);
        log.append(&r).unwrap();
        records.push(r);
        if i % 5 == 4 {
            log.sync().unwrap();
        }
    }
    drop(log);
    (dir, records)
}

/// The clean file's frames: (start, end, synced), parsed from FORMAT.md's
/// layout (24-byte header: CRC, length, own offset, synced; 8-byte aligned).
fn record_frames(b: &[u8]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 24 <= b.len() {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        let synced = u64::from_le_bytes(b[at + 16..at + 24].try_into().unwrap());
        let end = (at + 24 + len).next_multiple_of(8);
        out.push((at, end, synced));
        at = end;
    }
    out
}

fn check_record_state(
    m: &MemoryDirectory,
    records: &[Vec<u8>],
    frames: &[(usize, usize, u64)],
    t: &Touched<'_>,
) -> Result<(), String> {
    let dir: Arc<dyn Directory> = Arc::new(m.clone());
    let allowed = |n: usize| -> Result<(), String> {
        if n >= records.len() {
            return Ok(());
        }
        let (a, b, _) = frames[n];
        if !t.range(RLOG, 0, b) {
            return Err(format!("record {n} is missing though its frame is intact"));
        }
        match frames[n + 1..]
            .iter()
            .find(|(fa, fb, synced)| *synced > a as u64 && !t.range(RLOG, *fa, *fb))
        {
            Some((fa, _, _)) => Err(format!(
                "record {n} is missing though the frame at {fa} proves it durable"
            )),
            None => Ok(()),
        }
    };
    let mut best = None;
    for mode in [RecordLogMode::Strict, RecordLogMode::BestEffort] {
        match RecordLog::read(&*dir, RLOG, mode) {
            Ok(r) => {
                let got: Vec<&[u8]> = r.iter().collect();
                if got.len() > records.len()
                    || got.iter().zip(records).any(|(g, w)| *g != w.as_slice())
                {
                    return Err(format!("{mode:?} read returned records never appended"));
                }
                allowed(got.len()).map_err(|e| format!("{mode:?} read: {e}"))?;
                if mode == RecordLogMode::BestEffort {
                    best = Some(got.len());
                }
            }
            Err(e) => typed_record(&e).map_err(|e| format!("{mode:?} read: {e}"))?,
        }
    }
    let before = files_of(m);
    match RecordLog::open(dir.clone(), RLOG) {
        Err(e) => {
            typed_record(&e).map_err(|e| format!("open: {e}"))?;
            if files_of(m) != before {
                return Err(format!("a refused open ({e}) changed the file"));
            }
        }
        Ok(log) => {
            if Some(log.len() as usize) != best {
                return Err(format!(
                    "open kept {} records, best-effort read {best:?}",
                    log.len()
                ));
            }
        }
    }
    Ok(())
}

fn typed_record(e: &Error) -> Result<(), String> {
    let typed = matches!(
        e,
        Error::Corrupt { .. } | Error::ChecksumMismatch { .. } | Error::UnsupportedVersion { .. }
    );
    if typed && e.to_string().contains(RLOG) {
        Ok(())
    } else {
        Err(format!("untyped or unnamed error: {e:?}"))
    }
}

fn enumerate_record_log() -> u64 {
    let (dir, records) = record_image();
    let clean = files_of(&dir);
    let frames = record_frames(&clean[RLOG]);
    assert_eq!(frames.len(), records.len());
    let mut checked = 0;
    for fault in plan_files(&clean) {
        let m = dir.snapshot();
        if m.apply_media_fault(&fault).is_err() {
            continue;
        }
        let faulted = files_of(&m);
        if faulted == clean {
            continue;
        }
        checked += 1;
        let t = Touched {
            clean: &clean,
            faulted: &faulted,
        };
        if let Err(why) = check_record_state(&m, &records, &frames, &t) {
            panic!("record log: {fault}: {why}");
        }
    }
    checked
}

#[test]
fn every_media_fault_gets_the_acknowledged_entries_or_a_typed_error() {
    let t = Instant::now();
    let mut total = 0;
    for img in [
        segments_workload(),
        checkpoint_workload(),
        crashed_workload(),
    ] {
        let n = enumerate(&img);
        println!("  {}: {n} states", img.name);
        total += n;
    }
    let o: Vec<u64> = OUTCOMES.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    println!(
        "  WAL states: best-effort replay returned every entry in {}, an allowed shorter prefix in {}, an error in {}; Wal::open resumed in {} and refused (changing nothing) in {}",
        o[FULL], o[SHORTER], o[REFUSED], o[OPENED], o[OPEN_REFUSED]
    );
    let n = enumerate_record_log();
    println!("  record log: {n} states");
    total += n;
    // Straight to the process's stderr, past the test harness's capture, so
    // the count shows in every run of the test command.
    let _ = writeln!(
        std::io::stderr(),
        "media fault states checked: {total} ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    assert!(total > 100_000, "too few media fault states: {total}");
}
