//! The media-fault oracle of `tests/media_fault_enumeration.rs`, for the
//! `media_fault_image` target: a clean, closed WAL image, what it
//! acknowledged, and what each frame's durability is proven by; then the
//! checks of one damaged state against `FORMAT.md` ("Fault model").
//!
//! Kept as close to the test as possible (same names, same rules), so the
//! two check the same oracle: the test by enumeration of single faults, the
//! target on fuzzer-chosen workloads with one or two faults.

use std::collections::BTreeMap;
use std::sync::Arc;

use zerodur::wal::{ReadMode, Wal, WalOptions, WalReader};
use zerodur::{Directory, Error, MemoryDirectory};

use crate::{
    frame_bytes, FRAME_HEADER_BYTES, KIND_ENTRY, KIND_ENTRY_CONT, KIND_RESUME, KIND_SEAL,
    SEGMENT_HEADER_BYTES, WAL_DIR,
};

pub type Entry = (u64, Vec<u8>);

/// A clean, durable directory and what it acknowledged.
pub struct Image {
    pub dir: MemoryDirectory,
    pub opts: WalOptions,
    /// Every acknowledged entry the log still holds, in order (the store was
    /// closed cleanly).
    pub acked: Vec<Entry>,
    /// The id the clean log's next entry gets (where it resumes). Beyond
    /// the test, whose workloads always leave entries: a log truncated to
    /// no entry resumes there, not at 1.
    pub next: u64,
}

// ---------------------------------------------------------------------------
// A mirror of the on-disk format (as in `tests/wal_common`).

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Path of live segment `id`.
pub fn seg_path(id: u64) -> String {
    format!("{WAL_DIR}/{id:020}.seg")
}

/// First entry id of a segment header (magic and CRC checked).
fn seg_first(b: &[u8]) -> Option<(u64, u64)> {
    let h = b.get(..SEGMENT_HEADER_BYTES)?;
    if &h[0..8] != b"ZDURWAL\x01" || crc32fast::hash(&h[0..60]) != u32_at(h, 60) {
        return None;
    }
    Some((u64_at(h, 24), u64_at(h, 32)))
}

/// A decoded frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub off: usize,
    pub len: usize,
    pub kind: u8,
    pub id: u64,
    pub epoch: u64,
    pub end: usize,
}

/// The CRC-valid frame at `off`, if any.
fn frame_at(b: &[u8], off: usize) -> Option<Frame> {
    let h = b.get(off..off + FRAME_HEADER_BYTES)?;
    if h.iter().all(|&x| x == 0) {
        return None;
    }
    let len = u32_at(h, 4) as usize;
    let end = off.checked_add(frame_bytes(len))?;
    if end > b.len() || crc32fast::hash(&b[off + 4..off + FRAME_HEADER_BYTES + len]) != u32_at(h, 0)
    {
        return None;
    }
    Some(Frame {
        off,
        len,
        kind: h[8],
        id: u64_at(h, 16),
        epoch: u64_at(h, 24),
        end,
    })
}

/// The chain of frames of a segment, from its first slot, following epochs
/// as the reader does, up to and including a seal.
pub fn chain(b: &[u8]) -> Vec<Frame> {
    let Some((_, mut epoch)) = seg_first(b) else {
        return Vec::new();
    };
    let mut off = SEGMENT_HEADER_BYTES;
    let mut out = Vec::new();
    while let Some(f) = frame_at(b, off) {
        if f.epoch < epoch || (f.epoch > epoch && f.kind != KIND_RESUME) {
            break;
        }
        epoch = f.epoch;
        out.push(f);
        if f.kind == KIND_SEAL {
            break;
        }
        off = f.end;
    }
    out
}

/// The live segment ids of a directory's WAL, sorted.
pub fn segment_ids(dir: &dyn Directory) -> Vec<u64> {
    if !dir.exists(WAL_DIR).unwrap() {
        return Vec::new();
    }
    let mut ids: Vec<u64> = dir
        .list(WAL_DIR)
        .unwrap()
        .iter()
        .filter_map(|n| n.strip_suffix(".seg")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Every file but the locks, with its bytes.
pub fn files_of(dir: &MemoryDirectory) -> BTreeMap<String, Vec<u8>> {
    dir.files()
        .into_iter()
        .filter(|p| !p.ends_with("/LOCK"))
        .map(|p| {
            let b = dir.read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// Replays the whole WAL, copying the entries out (a missing folder is an
/// empty log, as in the test).
pub fn replay_entries(dir: &Arc<dyn Directory>, mode: ReadMode) -> zerodur::Result<Vec<Entry>> {
    if !dir.exists(WAL_DIR)? {
        return Ok(Vec::new());
    }
    let reader = WalReader::open(dir.clone(), WAL_DIR, mode)?;
    let mut out = Vec::new();
    reader.replay(None, |id, b| {
        out.push((id.get(), b.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

/// How `after` differs from `before`, in a few words.
fn change(before: &[u8], after: Option<&Vec<u8>>) -> String {
    let Some(after) = after else {
        return format!("removed; it was {} bytes", before.len());
    };
    let first = before.iter().zip(after).position(|(a, b)| a != b);
    let around = |b: &[u8]| -> String {
        let at = first.unwrap_or(0) & !15;
        let bytes = &b[at.min(b.len())..(at + 32).min(b.len())];
        bytes.iter().map(|x| format!("{x:02x}")).collect()
    };
    format!(
        "{} bytes, now {}; first differing byte {first:?}: {} then {}",
        before.len(),
        after.len(),
        around(before),
        around(after)
    )
}

fn describe(v: &[Entry]) -> String {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) => format!("{} entries, ids {}..={}", v.len(), a.0, b.0),
        _ => "no entries".into(),
    }
}

// ---------------------------------------------------------------------------
// What the clean image says about proof.

/// For each entry id in the final segment, the end of its batch's last
/// frame and the byte ranges of the frames that prove it durable (a later epoch, or a later id whose watermark
/// covers it).
pub struct Proofs {
    final_id: u64,
    final_path: String,
    /// First id in the final segment.
    final_first: u64,
    /// entry id -> (end of its batch's last frame, proof frames' ranges)
    by_id: BTreeMap<u64, (usize, Vec<(usize, usize)>)>,
    /// Beyond the test: the same for every earlier segment, oldest first
    /// (id, path, first id, proofs), for the documented limit "a successor
    /// that vanishes" (see [`shorter_allowed`]).
    earlier: Vec<(u64, String, u64, ProofMap)>,
    /// Every segment's chain, oldest first: (path, [(start, end, durable
    /// watermark)] of the frames that carry one).
    watermarks: Vec<(String, Vec<(usize, usize, u64)>)>,
}

type ProofMap = BTreeMap<u64, (usize, Vec<(usize, usize)>)>;

/// First id of segment `b` and, for each entry of its chain, the end of its
/// frame and the ranges of the frames that prove it durable.
fn segment_proofs(b: &[u8]) -> (u64, ProofMap) {
    let frames = chain(b);
    let first = seg_first(b).expect("a clean segment header").0;
    let mut by_id = BTreeMap::new();
    for f in frames
        .iter()
        .filter(|f| matches!(f.kind, KIND_ENTRY | KIND_ENTRY_CONT))
    {
        let proof: Vec<(usize, usize)> = frames
            .iter()
            .filter(|g| g.off > f.off)
            .filter(|g| {
                let lag = u32_at(b, g.off + 12);
                let watermark = (lag != u32::MAX).then(|| g.id.saturating_sub(lag.into()));
                g.epoch > f.epoch || (g.id > f.id && watermark.is_some_and(|w| w >= f.id))
            })
            .map(|g| (g.off, g.end))
            .collect();
        // Beyond the test: a batch replays all or none, so an entry whose
        // own frame is intact may still go with its batch: the range that
        // must be untouched runs to the end of the batch's last frame.
        let batch_end = frames
            .iter()
            .filter(|g| g.off >= f.off)
            .find(|g| g.kind != KIND_ENTRY_CONT)
            .map_or(f.end, |g| g.end);
        by_id.insert(f.id, (batch_end, proof));
    }
    (first, by_id)
}

pub fn proofs(dir: &MemoryDirectory) -> Proofs {
    let ids = segment_ids(dir);
    let (&last, before) = ids.split_last().expect("a clean image has a live segment");
    let path = seg_path(last);
    let (first, by_id) = segment_proofs(&dir.read(&path).unwrap());
    let earlier = before
        .iter()
        .map(|&id| {
            let p = seg_path(id);
            let (first, map) = segment_proofs(&dir.read(&p).unwrap());
            (id, p, first, map)
        })
        .collect();
    let watermarks = ids
        .iter()
        .map(|&id| {
            let p = seg_path(id);
            let b = dir.read(&p).unwrap();
            let frames = chain(&b)
                .iter()
                .filter_map(|g| {
                    let lag = u32_at(&b, g.off + 12);
                    (lag != u32::MAX).then(|| (g.off, g.end, g.id.saturating_sub(lag.into())))
                })
                .collect();
            (p, frames)
        })
        .collect();
    Proofs {
        watermarks,
        final_id: last,
        final_path: path,
        final_first: first,
        by_id,
        earlier,
    }
}

// ---------------------------------------------------------------------------
// The oracles (as in the test).

/// Which byte ranges of which files differ between `clean` and `faulted`.
pub struct Touched<'a> {
    pub clean: &'a BTreeMap<String, Vec<u8>>,
    pub faulted: &'a BTreeMap<String, Vec<u8>>,
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
///
/// Beyond the test (two faults): `FORMAT.md`, "Known limits", "A successor
/// that vanishes": if every segment after `k`'s is unborn-looking in the
/// faulted state (emptied, zeroed, or an older segment's header, as
/// [`unborn_shaped`] judges), `k`'s segment is judged as the final one, and
/// the same rule applies there.
fn shorter_allowed(k: u64, pr: &Proofs, t: &Touched<'_>) -> Result<(), String> {
    let (path, by_id, i) = if k < pr.final_first {
        let Some(i) = pr.earlier.iter().rposition(|(_, _, first, _)| *first <= k) else {
            return Err(format!("entry {k} of a sealed segment is missing"));
        };
        let later: Vec<(u64, &String)> = pr.earlier[i + 1..]
            .iter()
            .map(|(id, p, _, _)| (*id, p))
            .chain([(pr.final_id, &pr.final_path)])
            .collect();
        // The successor says its predecessor may not be durable (@D2, as
        // the files now read), or every later segment reads as unborn.
        let flagged = t
            .faulted
            .get(later[0].1)
            .is_some_and(|b| seg_first(b).is_some() && b[56] & 1 != 0);
        let mut prev = &pr.earlier[i].1;
        for (id, p) in later {
            let prev_epoch = t.faulted.get(prev).and_then(|b| seg_first(b)).map(|h| h.1);
            if !flagged
                && !t
                    .faulted
                    .get(p)
                    .is_some_and(|b| unborn_shaped(b, id, prev_epoch))
            {
                return Err(format!("entry {k} of a sealed segment is missing"));
            }
            prev = p;
        }
        (&pr.earlier[i].1, &pr.earlier[i].3, Some(i))
    } else {
        (&pr.final_path, &pr.by_id, None)
    };
    let Some((end, proof)) = by_id.get(&k) else {
        return Err(format!("entry {k} is not in the final segment's chain"));
    };
    if !t.range(path, 0, *end) {
        return Err(format!(
            "entry {k} is missing though its frame (and its batch's) is intact"
        ));
    }
    if let Some((a, b)) = proof.iter().find(|(a, b)| !t.range(path, *a, *b)) {
        return Err(format!(
            "entry {k} is missing though the frame at {a}..{b} proves it durable and is intact"
        ));
    }
    // An entry of an earlier segment is also proven by any later segment's
    // frame whose durable watermark reaches it.
    if let Some(i) = i {
        for (p, frames) in &pr.watermarks[i + 1..] {
            if let Some((a, b, _)) = frames
                .iter()
                .find(|(a, b, w)| *w >= k && !t.range(p, *a, *b))
            {
                return Err(format!(
                    "entry {k} is missing though the frame at {a}..{b} of {p} proves it durable \
                     and is intact"
                ));
            }
        }
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
    let names_file = s.contains(&format!("`{WAL_DIR}/")) || s.contains(&format!("`{WAL_DIR}`"));
    let typed = matches!(
        e,
        Error::Corrupt { .. }
            | Error::ChecksumMismatch { .. }
            | Error::UnsupportedVersion { .. }
            | Error::NotFound { .. }
    );
    if names_file && typed {
        Ok(())
    } else {
        Err(format!("untyped or unnamed error: {e:?}"))
    }
}

/// Checks one faulted state. Returns a description of the first violation.
pub fn check_state(
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
    if std::env::var_os("ZD_DEBUG").is_some() {
        let d = |r: &zerodur::Result<Vec<Entry>>| match r {
            Ok(v) => describe(v),
            Err(e) => e.to_string(),
        };
        eprintln!("strict: {}\nbest: {}", d(&strict), d(&best));
        for (p, b) in &faulted {
            eprintln!(
                "{p}: {} bytes, chain {:?}",
                b.len(),
                chain(b)
                    .iter()
                    .map(|f| (f.off, f.kind, f.id, f.epoch, u32_at(b, f.off + 12)))
                    .collect::<Vec<_>>()
            );
        }
    }
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
    if files_of(m) != faulted {
        return Err("replay modified the store".into());
    }
    check_open(img, pr, &t, &dir, m, &faulted, &best)
}

/// Whether segment `id` (bytes `b`, after a segment whose header epoch is
/// `prev_epoch`) looks like one a rotation may have left unborn: empty,
/// every byte zero (@U1, @U2), or a recycled file still wearing an older
/// segment's valid header, of its length (@U3).
fn unborn_shaped(b: &[u8], id: u64, prev_epoch: Option<u64>) -> bool {
    if b.iter().all(|&x| x == 0) {
        return true;
    }
    let Some((_, epoch)) = seg_first(b) else {
        return false;
    };
    u64_at(b, 16) < id && prev_epoch.is_some_and(|p| epoch < p) && u64_at(b, 40) == b.len() as u64
}

/// Whether `path` is a non-final live segment that resume may legitimately
/// write to in `before` (the state `Wal::open` was given): when every
/// later segment is unborn-shaped, the log ends in it and it is the final
/// segment in all but name; when it or its successor carries the
/// *predecessor not yet durable* flag (@D1), `Wal::open` may write its lost
/// seal again and clear the flag, after its chain of frames and in its
/// header, never within the frames.
/// What resume may do to a non-final segment (see [`resumable`]).
enum Resume {
    /// It is where the log ends (every later segment unborn): anything a
    /// final segment may get, as in the test.
    AsFinal,
    /// A deferred rotation's segment: its header, and bytes from here on.
    After(usize),
}

fn resumable(before: &BTreeMap<String, Vec<u8>>, path: &str) -> Option<Resume> {
    let mut ids: Vec<u64> = before
        .keys()
        .filter_map(|n| {
            n.strip_prefix(&format!("{WAL_DIR}/"))?
                .strip_suffix(".seg")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    let i = ids.iter().position(|&id| seg_path(id) == path)?;
    let later = &ids[i + 1..];
    let epoch_of = |id: u64| {
        before
            .get(&seg_path(id))
            .and_then(|b| seg_first(b))
            .map(|h| h.1)
    };
    let unborn = |(k, &id): (usize, &u64)| {
        let prev = if k == 0 { ids[i] } else { later[k - 1] };
        before
            .get(&seg_path(id))
            .is_some_and(|b| unborn_shaped(b, id, epoch_of(prev)))
    };
    let flagged = |id: u64| {
        before
            .get(&seg_path(id))
            .is_some_and(|b| seg_first(b).is_some() && b[56] & 1 != 0)
    };
    if later.is_empty() {
        return None;
    }
    if later.iter().enumerate().all(unborn) {
        return Some(Resume::AsFinal);
    }
    if !flagged(ids[i]) && !flagged(later[0]) {
        return None;
    }
    let b = &before[path];
    Some(Resume::After(
        chain(b)
            .last()
            .map_or(SEGMENT_HEADER_BYTES.min(b.len()), |f| f.end),
    ))
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
    match opened {
        Err(e) => {
            typed(&e).map_err(|e| format!("Wal::open: {e}"))?;
            let after = files_of(m);
            if let Some((p, b)) = before.iter().find(|(p, b)| after.get(*p) != Some(b)) {
                return Err(format!(
                    "Wal::open refused ({e}) but modified {p} ({})",
                    change(b, after.get(p))
                ));
            }
            if let Some(p) = after.keys().find(|p| !before.contains_key(*p)) {
                return Err(format!("Wal::open refused ({e}) but created {p}"));
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
                        .map_or(img.acked.first().map_or(img.next, |e| e.0), |e| e.0 + 1);
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
                    let end = img.acked.last().map_or(img.next, |e| e.0 + 1);
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
                // Beyond the test (two faults reach these states): behind
                // an unborn final segment, resume goes on in the segment
                // before it, which may get its seal (a rotation interrupted
                // before its seal landed, FORMAT.md "Rotate"), a resume
                // marker over a torn tail and its header rewritten, as a
                // final segment (replay after open, below, checks that the
                // entries best effort returned are still there); in a
                // deferred rotation (@D1), a lost seal is written again and
                // flags cleared, the frames staying as they were.
                match resumable(before, p) {
                    Some(Resume::AsFinal) => continue,
                    Some(Resume::After(end)) => match after.get(p) {
                        Some(a)
                            if a.len() == b.len()
                                && a[SEGMENT_HEADER_BYTES.min(end)..end]
                                    == b[SEGMENT_HEADER_BYTES.min(end)..end] =>
                        {
                            continue
                        }
                        _ => {
                            return Err(format!(
                                "Wal::open changed {p} (in a deferred rotation) within its \
                                 frames, 64..{end} ({})",
                                change(b, after.get(p))
                            ))
                        }
                    },
                    None => {}
                }
                // Beyond the test: a resume that must rotate (a full final
                // segment) or recreate an unborn one takes a pooled file, as
                // any rotation does; only one whose header is valid, and
                // only into a segment it (re)creates.
                if p.ends_with(".free") && !after.contains_key(p) {
                    let new_segment = after
                        .iter()
                        .any(|(n, a)| n.ends_with(".seg") && before.get(n) != Some(a));
                    if seg_first(b).is_some() && new_segment {
                        continue;
                    }
                }
                if Some(p) != final_seg.as_ref() && after.get(p) != Some(b) {
                    return Err(format!(
                        "Wal::open modified {p} ({}; the final segment is {final_seg:?})",
                        change(b, after.get(p))
                    ));
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
