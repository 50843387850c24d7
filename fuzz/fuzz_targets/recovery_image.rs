//! Whole recovery over arbitrary directory images: up to four files with
//! arbitrary names (segment, pool or anything) and contents (raw bytes, or
//! headers and frames with correct CRCs built from arbitrary fields).
//!
//! Replay (both modes) and `Wal::open` never panic, and recovery never
//! grows a file. If `Wal::open` succeeds, an append succeeds, and:
//! - if best-effort replay accepted the image, strict replay now gives the
//!   same entries followed by the new one;
//! - if best-effort replay rejected it, it still does: opening for append
//!   never makes corruption disappear.

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zerodur::wal::{ReadMode, Wal, WalOptions};
use zerodur::{CorruptKind, Directory, Error, MemoryDirectory};
use zerodur_fuzz::{
    check_modes_agree, fix_frame_crcs, frame, free_name, put_file, replay, segment_header,
    segment_name, KIND_ENTRY, KIND_ENTRY_CONT, SEGMENT_SIZE_BYTES_MIN, WAL_DIR,
};

#[derive(Arbitrary, Debug)]
enum Name {
    Segment(u8),
    AnySegment(u64),
    Free(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Num {
    Small(u8),
    Any(u64),
}

impl Num {
    fn get(&self) -> u64 {
        match *self {
            Num::Small(n) => u64::from(n),
            Num::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct HeaderSpec {
    /// `None`: the current version.
    version: Option<u32>,
    first: Num,
    epoch: Num,
    /// Whether the header's length field matches the file.
    len_matches: bool,
    /// `Some`: the header's segment id instead of the file name's.
    segment: Option<u64>,
}

#[derive(Arbitrary, Debug)]
struct FrameSpec {
    kind: u8,
    id_delta: i8,
    epoch_delta: i8,
    lag: u8,
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    Frames(Vec<FrameSpec>),
}

#[derive(Arbitrary, Debug)]
struct FileSpec {
    name: Name,
    header: Option<HeaderSpec>,
    body: Body,
    fix_crcs: bool,
    pad_to_segment_size: bool,
}

#[derive(Arbitrary, Debug)]
struct Image {
    files: Vec<FileSpec>,
}

fn build(spec: &FileSpec) -> (String, Vec<u8>) {
    let (name, id) = match &spec.name {
        Name::Segment(n) => (segment_name(u64::from(*n)), u64::from(*n)),
        Name::AnySegment(n) => (segment_name(*n), *n),
        Name::Free(n) => (free_name(u64::from(*n)), u64::from(*n)),
        Name::Raw(s) => (s.clone(), 1),
    };
    let (first, epoch) = spec
        .header
        .as_ref()
        .map_or((1, 1), |h| (h.first.get(), h.epoch.get()));
    let mut body = Vec::new();
    match &spec.body {
        Body::Raw(b) => body.extend_from_slice(b),
        Body::Frames(frames) => {
            let mut next = first;
            for f in frames.iter().take(64) {
                let kind = f.kind % 5;
                let id = next.wrapping_add_signed(i64::from(f.id_delta));
                let e = epoch.wrapping_add_signed(i64::from(f.epoch_delta));
                let lag = if f.lag == u8::MAX {
                    u32::MAX
                } else {
                    u32::from(f.lag)
                };
                let payload = vec![f.fill; usize::from(f.len % 300)];
                let payload = if kind == KIND_ENTRY || kind == KIND_ENTRY_CONT {
                    &payload[..]
                } else {
                    &[]
                };
                body.extend_from_slice(&frame(kind, id, e, lag, payload));
                if (kind == KIND_ENTRY || kind == KIND_ENTRY_CONT) && f.id_delta == 0 {
                    next = next.wrapping_add(1);
                }
            }
        }
    }
    let mut file = Vec::new();
    if let Some(h) = &spec.header {
        let mut len = 64 + body.len();
        if spec.pad_to_segment_size {
            len = len.max(SEGMENT_SIZE_BYTES_MIN);
        }
        let declared = if h.len_matches {
            len as u64
        } else {
            len as u64 + 16
        };
        let version = h.version.unwrap_or(1);
        file.extend_from_slice(&segment_header(
            version,
            h.segment.unwrap_or(id),
            first,
            epoch,
            declared,
        ));
        file.extend_from_slice(&body);
        file.resize(len, 0);
        if spec.fix_crcs {
            fix_frame_crcs(&mut file);
        }
    } else {
        file = body;
        if spec.pad_to_segment_size && file.len() < SEGMENT_SIZE_BYTES_MIN {
            file.resize(SEGMENT_SIZE_BYTES_MIN, 0);
        }
    }
    (name, file)
}

/// Every file of the WAL folder but the lock, with its bytes.
fn contents(dir: &dyn Directory) -> BTreeMap<String, Vec<u8>> {
    dir.list(WAL_DIR)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n != "LOCK")
        .filter_map(|n| {
            let bytes = dir.read(&format!("{WAL_DIR}/{n}")).ok()?;
            Some((n, bytes))
        })
        .collect()
}

fn lengths(dir: &dyn Directory) -> BTreeMap<String, u64> {
    dir.list(WAL_DIR)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            let len = dir.len(&format!("{WAL_DIR}/{n}")).ok()?;
            Some((n, len))
        })
        .collect()
}

fuzz_target!(|image: Image| {
    let mem = MemoryDirectory::new();
    mem.create_dir_all(WAL_DIR).unwrap();
    for spec in image.files.iter().take(4) {
        let (name, bytes) = build(spec);
        put_file(&mem, &name, &bytes);
    }
    let dir: Arc<dyn Directory> = Arc::new(mem);

    let strict = replay(&dir, ReadMode::Strict);
    let best = replay(&dir, ReadMode::BestEffort);
    check_modes_agree(&strict, &best);

    let before = lengths(&*dir);
    let bytes_before = contents(&*dir);
    let opts = WalOptions::new(WAL_DIR)
        .segment_size_bytes(SEGMENT_SIZE_BYTES_MIN as u64)
        .recycle_capacity(2);
    let opened = Wal::open(dir.clone(), opts);
    // A final segment that was never born is replaced by a fresh one of the
    // configured size; every other file keeps its length.
    let is_segment = |n: &&String| {
        n.strip_suffix(".seg")
            .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let last_segment = before.keys().filter(is_segment).max().cloned();
    for (name, len) in lengths(&*dir) {
        match before.get(&name) {
            Some(old) if *old != len => {
                assert!(
                    Some(&name) == last_segment.as_ref() && len == SEGMENT_SIZE_BYTES_MIN as u64,
                    "recovery changed the length of {name} from {old} to {len}"
                );
            }
            _ => {}
        }
    }
    // A refused open changes nothing: it never deletes, truncates or
    // rewrites what it could not judge a crash to have left.
    let Ok(wal) = opened else {
        assert!(
            contents(&*dir) == bytes_before,
            "a refused Wal::open modified the folder"
        );
        return;
    };
    let next = wal.next_entry_id();
    let id = match wal.append_durable(b"appended after recovery") {
        Ok(id) => id,
        // A log (from a hostile header) whose next id is the largest has no
        // id left to give; refused, not poisoned.
        Err(Error::InvalidArgument {
            name: "payloads", ..
        }) if next.get() == u64::MAX => {
            assert!(!wal.is_poisoned());
            return;
        }
        // Frames with epochs (or a name with a segment id) at the top of
        // the range: resume went above them, and the rotation this append
        // needed has no epoch or id left.
        Err(Error::Corrupt {
            kind: CorruptKind::BadHeader("epoch out of range" | "segment id out of range"),
            ..
        }) => return,
        Err(e) => panic!("append after a successful open: {e}"),
    };
    assert_eq!(id, next);
    drop(wal);

    match best {
        (entries, Ok(_)) => {
            if let Some(last) = entries.last() {
                assert_eq!(id.get(), last.0 + 1, "resume does not continue the log");
            }
            let (after, r) = replay(&dir, ReadMode::Strict);
            if let Err(e) = r {
                panic!("strict replay after recovery and append: {e}");
            }
            let mut want = entries;
            want.push((id.get(), b"appended after recovery".to_vec()));
            assert!(
                after == want,
                "recovery changed the log: {} entries before, now {:?}",
                want.len() - 1,
                after.iter().map(|e| e.0).collect::<Vec<_>>()
            );
        }
        (_, Err(e)) => {
            let (_, r) = replay(&dir, ReadMode::BestEffort);
            assert!(
                r.is_err(),
                "opening for append made corruption disappear: {e}"
            );
        }
    }
});
