//! The record log: a fuzzer-chosen sequence of appends (payloads of chosen
//! lengths, pseudo-random or constant bytes), syncs and reopens on a
//! `MemoryDirectory`; the image with every write landed
//! (`CrashPolicy::keep_all`, so nothing is lost without damage); then up to
//! three media faults on the file (`MediaFault`: flipped bits, a lost or
//! misdirected write, a cut, an extension); then `RecordLog::read` in both
//! modes and `RecordLog::open_with` in both modes.
//!
//! Invariants (`FORMAT.md`, "Record log"), with `k` the number of leading
//! frames the damage left byte-identical and `p` the offset after them:
//! - the writer's frames are the format's: one per append, each at its own
//!   offset, claiming the length of the last sync (16 before any, the
//!   file's length after a reopen);
//! - nothing panics; reading changes no byte; every error is typed and
//!   names the file; a damaged file header is a header error in both modes;
//! - a file that ends at `p` (no damage, or a cut at a frame boundary)
//!   reads in both modes as exactly the first `k` records;
//! - otherwise best effort returns exactly the first `k` records (a torn
//!   tail ends the log at `p`), or an error at `p` only if it can prove
//!   damage (below) or the bytes at `p` pass their CRC but cannot be a frame
//!   there (a copy, damaged padding); strict mode returns an error at `p`;
//!   never a record that was not appended, never out of order;
//! - if a frame after `p` survived intact and claims a durable length above
//!   `p`, both modes fail (`BelowDurablePoint`, or `BadFrame` when the
//!   search cannot decide): damage below the durable point is never cut;
//! - a `BelowDurablePoint` error's evidence is a valid frame claiming more
//!   than `p`;
//! - `open_with` succeeds exactly when `read` in the same mode does; on
//!   success it keeps `k` records, leaves the file as the first `p` bytes
//!   and appends after them; on failure it changes no byte.
//!
//! Payloads are derived bytes, never raw fuzzer bytes: a payload holding a
//! CRC-valid frame naming its own offset (only possible by construction)
//! is a documented limit of the format, not something to assert about.

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zerodur::{
    CorruptKind, CrashPolicy, Directory, Error, MediaFault, MemoryDirectory, RecordLog,
    RecordLogMode, RecordLogOptions,
};

const PATH: &str = "meta/log";
const HEADER: usize = 16;
const FRAME_HEADER: usize = 24;

#[derive(Arbitrary, Debug)]
enum Payload {
    /// `len % 1200` pseudo-random bytes from `seed`.
    Noise { len: u16, seed: u16 },
    /// `len % 1200` bytes of `byte`.
    Fill { len: u16, byte: u8 },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Append(Payload),
    Sync,
    Reopen,
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip { at: u32, mask: u8 },
    Lost { at: u32, len: u16 },
    Misdirect { at: u32, len: u16, to: u32 },
    Truncate { len: u32 },
    Extend { by: u16, fill: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    damage: Vec<Damage>,
}

fn bytes_of(p: &Payload, salt: u64) -> Vec<u8> {
    match *p {
        Payload::Noise { len, seed } => {
            let mut x = (u64::from(seed) << 20 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..usize::from(len) % 1200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect()
        }
        Payload::Fill { len, byte } => vec![byte; usize::from(len) % 1200],
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The valid frame at `q` in `b` (FORMAT.md: fits, CRC, offset field,
/// synced in range, zero padding): its synced claim.
fn valid_frame(b: &[u8], q: usize) -> Option<u64> {
    let h = b.get(q..q.checked_add(FRAME_HEADER)?)?;
    let n = u32_at(h, 4) as usize;
    let end = (q + FRAME_HEADER + n).next_multiple_of(8);
    if end > b.len() || crc32fast::hash(&b[q + 4..q + FRAME_HEADER + n]) != u32_at(h, 0) {
        return None;
    }
    let synced = u64_at(h, 16);
    (u64_at(h, 8) == q as u64
        && (HEADER as u64..=q as u64).contains(&synced)
        && b[q + FRAME_HEADER + n..end].iter().all(|&x| x == 0))
    .then_some(synced)
}

/// A frame the writer wrote: where it starts and ends, what it claims.
#[derive(Debug, Clone, Copy)]
struct Frame {
    off: usize,
    end: usize,
    synced: u64,
}

fn files(m: &MemoryDirectory) -> BTreeMap<String, Vec<u8>> {
    m.files()
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .map(|p| {
            let b = m.read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. } | Error::ChecksumMismatch { .. } | Error::UnsupportedVersion { .. }
    ) && e.to_string().contains(PATH)
}

fn header_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt {
            offset: 0,
            kind: CorruptKind::Truncated { .. } | CorruptKind::BadMagic,
            ..
        } | Error::UnsupportedVersion { .. }
            | Error::ChecksumMismatch { offset: 0, .. }
    )
}

/// An error at `p` that a bad frame there can give in `mode`; a
/// `BelowDurablePoint` must name a real valid frame claiming more than `p`.
fn frame_error_at(e: &Error, p: usize, d: &[u8], mode: RecordLogMode) -> Result<(), String> {
    let p64 = p as u64;
    match e {
        Error::Corrupt {
            offset,
            kind: CorruptKind::BelowDurablePoint { evidence },
            ..
        } if *offset == p64 => match valid_frame(d, *evidence as usize) {
            Some(s) if s > p64 && *evidence > p64 => Ok(()),
            _ => Err(format!(
                "evidence at {evidence} is not a frame claiming > {p}"
            )),
        },
        Error::Corrupt {
            offset,
            kind: CorruptKind::BadFrame(_),
            ..
        } if *offset == p64 => Ok(()),
        // Torn-tail errors: strict mode only.
        Error::Corrupt {
            offset,
            kind: CorruptKind::TornTail,
            ..
        }
        | Error::ChecksumMismatch { offset, .. }
            if *offset == p64 && mode == RecordLogMode::Strict =>
        {
            Ok(())
        }
        _ => Err(format!("not an error of a bad frame at {p} in {mode:?}")),
    }
}

fn options(mode: RecordLogMode) -> RecordLogOptions {
    let mut o = RecordLogOptions::default();
    o.mode = mode;
    o
}

fuzz_target!(|input: Input| {
    // The workload.
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    dir.create_dir_all("meta").unwrap();
    let mut log = Some(RecordLog::open(dir.clone(), PATH).unwrap());
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut claims: Vec<u64> = Vec::new();
    let mut claim = HEADER as u64;
    let mut len = HEADER as u64;
    for (i, op) in input.ops.iter().take(64).enumerate() {
        match op {
            Op::Append(p) => {
                let r = bytes_of(p, i as u64);
                log.as_mut().unwrap().append(&r).unwrap();
                len += (FRAME_HEADER + r.len()).next_multiple_of(8) as u64;
                records.push(r);
                claims.push(claim);
            }
            Op::Sync => {
                log.as_mut().unwrap().sync().unwrap();
                claim = len;
            }
            Op::Reopen => {
                drop(log.take());
                let l = RecordLog::open(dir.clone(), PATH).unwrap();
                assert_eq!(l.len(), records.len() as u64, "reopen lost records");
                log = Some(l);
                claim = len;
            }
        }
    }
    drop(log);
    let image = mem.crash_image(&CrashPolicy::keep_all());
    let o = image.read(PATH).unwrap();
    assert_eq!(o.len() as u64, len);

    // The writer's frames, parsed by the layout of FORMAT.md.
    let mut frames = Vec::new();
    let mut at = HEADER;
    for (r, c) in records.iter().zip(&claims) {
        assert_eq!(
            valid_frame(&o, at),
            Some(*c),
            "frame at {at}: wrong claim or invalid"
        );
        assert_eq!(u32_at(&o, at + 4) as usize, r.len());
        assert!(o[at + FRAME_HEADER..at + FRAME_HEADER + r.len()] == r[..]);
        let end = (at + FRAME_HEADER + r.len()).next_multiple_of(8);
        frames.push(Frame {
            off: at,
            end,
            synced: *c,
        });
        at = end;
    }
    assert_eq!(at, o.len());

    // The damage.
    let size = |m: &MemoryDirectory| m.len(PATH).unwrap();
    for d in input.damage.iter().take(3) {
        let n = size(&image);
        let fault = match *d {
            Damage::Flip { at, mask } if n > 0 => MediaFault::FlipBits {
                path: PATH.into(),
                offset: u64::from(at) % n,
                mask: mask.max(1),
            },
            Damage::Lost { at, len } if n > 0 => {
                let offset = u64::from(at) % n;
                MediaFault::LostWrite {
                    path: PATH.into(),
                    offset,
                    len: (u64::from(len) % 1024 + 1).min(n - offset),
                }
            }
            Damage::Misdirect { at, len, to } if n > 0 => {
                let offset = u64::from(at) % n;
                let len = (u64::from(len) % 1024 + 1).min(n - offset);
                MediaFault::Misdirected {
                    path: PATH.into(),
                    offset,
                    len,
                    to_path: PATH.into(),
                    to_offset: u64::from(to) % (n - len + 1),
                }
            }
            Damage::Truncate { len } if n > 0 => MediaFault::Truncate {
                path: PATH.into(),
                len: u64::from(len) % n,
            },
            Damage::Extend { by, fill } => MediaFault::Extend {
                path: PATH.into(),
                len: n + u64::from(by) % 4096 + 1,
                fill,
            },
            _ => continue,
        };
        image.apply_media_fault(&fault).unwrap();
    }
    let d = image.read(PATH).unwrap();

    // The oracle's facts.
    let intact = |f: &Frame| d.len() >= f.end && d[f.off..f.end] == o[f.off..f.end];
    let header_ok = d.len() >= HEADER && d[..HEADER] == o[..HEADER];
    let k = frames.iter().take_while(|f| intact(f)).count();
    let p = frames.get(k).map_or(o.len(), |f| f.off);
    let clean_end = d.len() == p;
    let evidence = frames[k.min(frames.len())..]
        .iter()
        .skip(1)
        .find(|f| intact(f) && f.synced > p as u64);
    // Whether the bytes at `p` pass their CRC (then the frame there is
    // impossible rather than torn: a copy, or damaged padding).
    let crc_at_p = d.get(p..p + FRAME_HEADER).is_some_and(|h| {
        let body = p + FRAME_HEADER + u32_at(h, 4) as usize;
        body.next_multiple_of(8) <= d.len()
            && h.iter().any(|&x| x != 0)
            && crc32fast::hash(&d[p + 4..body]) == u32_at(h, 0)
    });

    // Reads, both modes.
    let before = files(&image);
    let mut outcome = BTreeMap::new();
    for mode in [RecordLogMode::Strict, RecordLogMode::BestEffort] {
        let r = RecordLog::read(&image, PATH, mode);
        assert!(
            files(&image) == before,
            "{mode:?} read changed the directory"
        );
        match r {
            Ok(recs) => {
                let got: Vec<&[u8]> = recs.iter().collect();
                assert_eq!(got.len() as u64, recs.len());
                assert!(
                    got.len() <= records.len()
                        && got.iter().zip(&records).all(|(g, w)| *g == &w[..]),
                    "{mode:?} read returned records never appended (or out of order)"
                );
                assert!(header_ok, "{mode:?} read accepted a damaged file header");
                assert_eq!(got.len(), k, "{mode:?} read: not the {k} intact records");
                assert_eq!(recs.valid_len_bytes(), p as u64);
                assert!(
                    mode == RecordLogMode::BestEffort || clean_end,
                    "strict read accepted bytes after the last intact frame at {p}"
                );
                if let Some(f) = evidence {
                    panic!(
                        "{mode:?} read cut at {p} although the intact frame at {} claims {}",
                        f.off, f.synced
                    );
                }
                outcome.insert(mode as u8, Some(k));
            }
            Err(e) => {
                assert!(typed(&e), "{mode:?} read: untyped or unnamed error {e:?}");
                if header_ok {
                    assert!(!clean_end, "{mode:?} read of an undamaged prefix: {e:?}");
                    if let Err(why) = frame_error_at(&e, p, &d, mode) {
                        panic!("{mode:?} read: {e:?}: {why}");
                    }
                    // Best effort refuses only damage it can prove, or a
                    // frame no writer or crash leaves at `p`.
                    assert!(
                        mode == RecordLogMode::Strict || evidence.is_some() || crc_at_p,
                        "best-effort read refused a torn tail at {p} with no evidence: {e:?}"
                    );
                } else {
                    assert!(header_error(&e), "{mode:?} read, damaged header: {e:?}");
                }
                outcome.insert(mode as u8, None);
            }
        }
    }

    // Opens, both modes, each on its own copy.
    for mode in [RecordLogMode::Strict, RecordLogMode::BestEffort] {
        let m = image.snapshot();
        let md: Arc<dyn Directory> = Arc::new(m.clone());
        let opened = RecordLog::open_with(md, PATH, options(mode));
        match (opened, outcome[&(mode as u8)]) {
            (Ok(mut log), Some(k)) => {
                assert_eq!(log.len(), k as u64);
                let after = m.read(PATH).unwrap();
                assert!(
                    after[..] == d[..p],
                    "{mode:?} open left other bytes than the first {p}"
                );
                log.append(b"after open").unwrap();
                log.sync().unwrap();
                let recs = log.records().unwrap();
                let got: Vec<&[u8]> = recs.iter().collect();
                assert_eq!(got.len(), k + 1);
                assert!(got[..k].iter().zip(&records).all(|(g, w)| *g == &w[..]));
                assert_eq!(got[k], b"after open");
            }
            (Err(e), None) => {
                assert!(typed(&e), "{mode:?} open: untyped or unnamed error {e:?}");
                assert!(
                    files(&m) == before,
                    "a refused {mode:?} open changed the file"
                );
            }
            (Ok(_), None) => panic!("{mode:?} open succeeded where read failed"),
            (Err(e), Some(_)) => panic!("{mode:?} open failed where read succeeded: {e:?}"),
        }
    }
});
