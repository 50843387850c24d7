//! Media faults over a clean WAL image: a fuzzer-chosen workload (plain,
//! durable and batched appends, syncs, prefix truncations into the recycle
//! pool, reopens, a maximum-length entry) on small segments
//! (`segment_size_bytes` 8 or 16 KiB), closed cleanly; then one or two
//! fuzzer-chosen media faults through `MemoryDirectory::apply_media_fault`
//! (a `MediaFault::seeded` one, flipped bits, a lost or misdirected sector,
//! a cut, an extension, a foreign file under a WAL name).
//!
//! Invariants: the clean image replays, in strict mode, exactly the
//! acknowledged entries the log still holds. After the faults, the oracle of
//! `tests/media_fault_enumeration.rs` (`FORMAT.md`, "Fault model"; the code
//! is `zerodur_fuzz::media`, a copy of the test's):
//! - replay in both modes returns exactly the acknowledged entries, or a
//!   shorter prefix only where allowed (the missing entry is in the final
//!   segment, its frame was touched, and no frame proving it durable
//!   survived intact), or a typed error naming a file of the WAL; never an
//!   entry that was not appended or a wrong payload; the modes agree, and
//!   strict never accepts what best effort refuses; replay changes nothing;
//! - a refused `Wal::open` gives a typed error and changes no byte of any
//!   file (snapshot before and after);
//! - a successful `Wal::open` resumes exactly where best-effort replay ends
//!   (or, if replay refused, at an allowed point, never past the end),
//!   changes no file but the final segment, and leaves what best-effort
//!   replay returns unchanged.

#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions};
use zerodur::{Directory, MediaFault, MemoryDirectory};
use zerodur_fuzz::media::{
    check_state, files_of, proofs, replay_entries, seg_path, segment_ids, Entry, Image,
};
use zerodur_fuzz::{free_name, WAL_DIR};

const SECTOR: u64 = 512;

#[derive(Arbitrary, Debug)]
enum Op {
    Append(u16),
    AppendDurable(u16),
    /// Up to 6 entries of up to 599 bytes: always fits a segment.
    Batch(Vec<u16>, bool),
    /// An entry of the largest length a segment takes.
    Max,
    Sync,
    /// Truncate up to an id chosen by this value among `0..=durable`.
    TruncatePrefix(u16),
    /// `close`, then `Wal::open` again.
    Reopen,
}

#[derive(Arbitrary, Debug)]
enum Content {
    Junk(u16),
    Zeros(u16),
    Ones(u16),
    /// A copy of file `n` of the image (an existing file, modulo their
    /// number), with bit `bit` of byte `at` flipped if `flip`.
    CopyOf {
        n: u8,
        flip: bool,
        at: u16,
        bit: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum ForeignName {
    /// Where the next segment would be.
    NextSegment,
    /// An existing file's name (modulo their number).
    Existing(u8),
    /// A pooled file's name, for id `n`.
    Free(u8),
}

/// Files are chosen by index (modulo their number) among the image's files,
/// lock excluded, sorted by path.
#[derive(Arbitrary, Debug)]
enum FaultSpec {
    Seeded(u64),
    Flip {
        file: u8,
        at: u32,
        bit: u8,
    },
    Lost {
        file: u8,
        sector: u16,
    },
    Misdirect {
        file: u8,
        sector: u16,
        to_file: u8,
        to_sector: u16,
    },
    Truncate {
        file: u8,
        len: u32,
    },
    Extend {
        file: u8,
        by: u16,
        fill: u8,
    },
    Foreign {
        name: ForeignName,
        content: Content,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    big_segments: bool,
    recycle: u8,
    ops: Vec<Op>,
    faults: Vec<FaultSpec>,
}

fn payload(id: u64, salt: u64, len: usize) -> Vec<u8> {
    let mut x = (id ^ salt << 40 ^ 0x5DEE_CE66_D1CE_4E5B).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Largest payload of a segment of `seg` bytes (the default limit).
fn max_payload(seg: u64) -> usize {
    let usable = seg as usize - 64 - 32;
    usable - usable % 16 - 32
}

/// Runs the workload and closes the log: the clean image and the entries
/// it acknowledged (all of them: the log was closed cleanly), trimmed to
/// those the log still holds.
fn workload(input: &Input) -> Image {
    let seg = if input.big_segments { 16 } else { 8 } * 1024;
    let opts = WalOptions::new(WAL_DIR)
        .segment_size_bytes(seg)
        .recycle_capacity(usize::from(input.recycle % 4));
    let dir = MemoryDirectory::new();
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let mut w = Wal::open(d.clone(), opts.clone()).unwrap();
    let mut acked: Vec<Entry> = Vec::new();
    let mut salt = 0u64;
    for op in input.ops.iter().take(40) {
        salt += 1;
        let next = w.next_entry_id().get();
        match op {
            Op::Append(len) | Op::AppendDurable(len) => {
                let p = payload(next, salt, usize::from(*len % 1500));
                let id = if matches!(op, Op::Append(_)) {
                    w.append(&p)
                } else {
                    w.append_durable(&p)
                };
                assert_eq!(id.unwrap().get(), next);
                acked.push((next, p));
            }
            Op::Max => {
                let p = payload(next, salt, max_payload(seg));
                assert_eq!(w.append(&p).unwrap().get(), next);
                acked.push((next, p));
            }
            Op::Batch(lens, durable) => {
                let ps: Vec<Vec<u8>> = lens
                    .iter()
                    .take(6)
                    .enumerate()
                    .map(|(i, l)| payload(next + i as u64, salt, usize::from(*l % 600)))
                    .collect();
                let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
                let r = if *durable {
                    w.append_batch_durable(&refs)
                } else {
                    w.append_batch(&refs)
                };
                match r.unwrap() {
                    Some((a, b)) => {
                        assert_eq!((a.get(), b.get()), (next, next + ps.len() as u64 - 1));
                    }
                    None => assert!(ps.is_empty()),
                }
                acked.extend((next..).zip(ps));
            }
            Op::Sync => w.sync().unwrap(),
            Op::TruncatePrefix(sel) => {
                let durable = w.durable_entry_id().map_or(0, EntryId::get);
                let upto = u64::from(*sel) % (durable + 1);
                w.truncate_prefix(EntryId::new(upto)).unwrap();
            }
            Op::Reopen => {
                w.close().unwrap();
                w = Wal::open(d.clone(), opts.clone()).unwrap();
                assert_eq!(w.next_entry_id().get(), next, "reopen moved the log's end");
            }
        }
    }
    let next = w.next_entry_id().get();
    w.close().unwrap();
    // The clean image replays exactly what was acknowledged and not
    // truncated away.
    let (got, r) = zerodur_fuzz::replay(&d, ReadMode::Strict);
    r.expect("strict replay of a clean image");
    let first = got.first().map_or(u64::MAX, |e| e.0);
    acked.retain(|e| e.0 >= first);
    assert!(
        got == acked,
        "the clean image does not replay what was acknowledged"
    );
    assert_eq!(acked.last().map_or(next, |e| e.0 + 1), next);
    Image {
        dir,
        opts,
        acked,
        next,
    }
}

/// The fault `spec` describes on `m` as it is now; `None` if it names
/// nothing that exists.
fn fault(spec: &FaultSpec, m: &MemoryDirectory) -> Option<MediaFault> {
    let files = files_of(m);
    let names: Vec<&String> = files.keys().collect();
    let pick = |n: u8| -> Option<(&String, u64)> {
        let name = *names.get(usize::from(n) % names.len().max(1))?;
        Some((name, files[name].len() as u64))
    };
    Some(match *spec {
        FaultSpec::Seeded(seed) => MediaFault::seeded(m, seed)?,
        FaultSpec::Flip { file, at, bit } => {
            let (path, len) = pick(file)?;
            MediaFault::FlipBits {
                path: path.clone(),
                offset: u64::from(at) % len.max(1),
                mask: 1 << (bit % 8),
            }
        }
        FaultSpec::Lost { file, sector } => {
            let (path, len) = pick(file)?;
            let offset = (u64::from(sector) % len.div_ceil(SECTOR).max(1)) * SECTOR;
            MediaFault::LostWrite {
                path: path.clone(),
                offset,
                len: SECTOR.min(len.checked_sub(offset)?),
            }
        }
        FaultSpec::Misdirect {
            file,
            sector,
            to_file,
            to_sector,
        } => {
            let (path, len) = pick(file)?;
            let (to_path, to_len) = pick(to_file)?;
            let offset = (u64::from(sector) % len.div_ceil(SECTOR).max(1)) * SECTOR;
            let n = SECTOR.min(len.checked_sub(offset)?);
            let places = to_len.checked_sub(n)? / SECTOR + 1;
            MediaFault::Misdirected {
                path: path.clone(),
                offset,
                len: n,
                to_path: to_path.clone(),
                to_offset: (u64::from(to_sector) % places) * SECTOR,
            }
        }
        FaultSpec::Truncate { file, len: cut } => {
            let (path, len) = pick(file)?;
            MediaFault::Truncate {
                path: path.clone(),
                len: u64::from(cut) % len.max(1),
            }
        }
        FaultSpec::Extend { file, by, fill } => {
            let (path, len) = pick(file)?;
            MediaFault::Extend {
                path: path.clone(),
                len: len + u64::from(by) % 8192 + 1,
                fill,
            }
        }
        FaultSpec::Foreign {
            ref name,
            ref content,
        } => {
            let path = match *name {
                ForeignName::NextSegment => seg_path(segment_ids(m).last().map_or(1, |id| id + 1)),
                ForeignName::Existing(n) => pick(n)?.0.clone(),
                ForeignName::Free(n) => format!("{WAL_DIR}/{}", free_name(u64::from(n))),
            };
            let bytes = match *content {
                Content::Junk(n) => b"junk".repeat(usize::from(n) % 4096),
                Content::Zeros(n) => vec![0; usize::from(n) % 16384],
                Content::Ones(n) => vec![0xFF; usize::from(n) % 16384],
                Content::CopyOf { n, flip, at, bit } => {
                    let mut b = files[pick(n)?.0].clone();
                    if flip && !b.is_empty() {
                        let at = usize::from(at) % b.len();
                        b[at] ^= 1 << (bit % 8);
                    }
                    b
                }
            };
            MediaFault::Foreign { path, bytes }
        }
    })
}

fuzz_target!(|input: Input| {
    let img = workload(&input);
    let clean = files_of(&img.dir);
    let pr = proofs(&img.dir);

    let m = img.dir.snapshot();
    let mut applied = Vec::new();
    for spec in input.faults.iter().take(2) {
        if let Some(f) = fault(spec, &m) {
            if m.apply_media_fault(&f).is_ok() {
                applied.push(f);
            }
        }
    }
    if files_of(&m) == clean {
        // No fault, or no-op faults: everything replays, and opens.
        let dir: Arc<dyn Directory> = Arc::new(m.clone());
        for mode in [ReadMode::Strict, ReadMode::BestEffort] {
            let got = replay_entries(&dir, mode).expect("replay of an undamaged image");
            assert!(
                got == img.acked,
                "undamaged image: {mode:?} replay lost entries"
            );
        }
        let w = Wal::open(dir, img.opts.clone()).expect("open of an undamaged image");
        assert_eq!(
            w.next_entry_id().get(),
            img.acked
                .last()
                .map_or(w.next_entry_id().get(), |e| e.0 + 1)
        );
        return;
    }
    if let Err(why) = check_state(&img, &pr, &clean, &m) {
        let faults: Vec<String> = applied.iter().map(ToString::to_string).collect();
        panic!("{}: {why}", faults.join("; then "));
    }
});
