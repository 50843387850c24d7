//! Media faults on a record log — every byte flipped, the file cut short at
//! every length, junk appended, zeroed ranges, several random bytes damaged
//! at once — are never repaired silently.
//!
//! The log: 40 records of 0 to 300 bytes in 8 synced batches of 5, written
//! through `RecordLog` on `MemoryDirectory`. Each damaged state is written
//! to a fresh directory and checked against two oracles:
//!
//! - the general one: `RecordLog::read` (both modes) and `RecordLog::open`
//!   (both modes) return a prefix of the records holding every record that a
//!   surviving frame proves durable (every record below the largest `synced`
//!   claim among the frames the damage left intact), or a typed error naming
//!   the file and an offset; open changes nothing when it fails, never cuts
//!   below that claim, and after a cut, appends go on and are durable;
//! - the exact one: the verdict `FORMAT.md`'s decision table gives for the
//!   damage (torn tail at the first damaged frame, damage below the durable
//!   point with its evidence, a frame in the wrong place, a header error),
//!   derived here from what was damaged and which frames still claim what.

use std::sync::Arc;

use zerodur::{
    CorruptKind, CrashPolicy, Directory, Error, MemoryDirectory, RecordLog, RecordLogMode,
    RecordLogOptions,
};

const LOG: &str = "meta.log";
const FILE_HEADER: usize = 16;
const BATCHES: usize = 8;
const PER_BATCH: usize = 5;

/// An original frame, parsed from the clean file by this test (independently
/// of the crate's decoder, from the layout in FORMAT.md).
#[derive(Debug, Clone, Copy)]
struct Frame {
    start: usize,
    /// End of the payload (start of the padding).
    body_end: usize,
    /// End of the padding: where the next frame starts.
    end: usize,
    synced: u64,
}

struct Base {
    bytes: Vec<u8>,
    records: Vec<Vec<u8>>,
    frames: Vec<Frame>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn build() -> Base {
    let records: Vec<Vec<u8>> = (0..BATCHES * PER_BATCH)
        .map(|i| {
            // 0 to 300 bytes: empty, around the 8-byte padding steps, long.
            let len = [0usize, 300, 1, 7, 8, 9, 17, 24, 150, 61][i % 10].saturating_sub(i / 10);
            (0..len).map(|j| (i * 31 + j * 7 + 1) as u8).collect()
        })
        .collect();
    let dir = MemoryDirectory::new();
    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    for batch in records.chunks(PER_BATCH) {
        for r in batch {
            log.append(r).unwrap();
        }
        log.sync().unwrap();
    }
    drop(log);
    // Everything is synced: the image that drops every unsynced byte is an
    // exact copy.
    let bytes = dir.crash_image(&CrashPolicy::drop_all()).read(LOG).unwrap();
    assert_eq!(bytes, dir.read(LOG).unwrap());

    let mut frames = Vec::new();
    let mut at = FILE_HEADER;
    while at < bytes.len() {
        let n = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        assert_eq!(u64_at(&bytes, at + 8), at as u64, "offset field");
        let body_end = at + 24 + n;
        let end = body_end.next_multiple_of(8);
        frames.push(Frame {
            start: at,
            body_end,
            end,
            synced: u64_at(&bytes, at + 16),
        });
        at = end;
    }
    assert_eq!(at, bytes.len());
    assert_eq!(frames.len(), records.len());
    // Batch k's frames claim the length at sync k-1.
    for (i, f) in frames.iter().enumerate() {
        let batch_start = frames[i - i % PER_BATCH].start;
        let expected = if i < PER_BATCH { 16 } else { batch_start };
        assert_eq!(f.synced, expected as u64, "frame {i}");
    }
    Base {
        bytes,
        records,
        frames,
    }
}

/// What the decision table says about a damaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Every mode reads these many records; open changes nothing.
    Clean(usize),
    /// A torn tail at this offset after these many records.
    Torn { at: usize, kept: usize },
    /// Damage below the durable point, proven by the frame at `evidence`.
    Below { at: usize, evidence: usize },
    /// A CRC-valid frame at `at` that cannot be there.
    Impossible { at: usize, what: &'static str },
    /// A bad file header.
    Header,
}

impl Base {
    /// The largest claim among the original frames that `damaged` still
    /// holds intact (16 if none).
    fn proven(&self, damaged: &[u8]) -> u64 {
        self.intact(damaged)
            .map(|f| f.synced)
            .max()
            .unwrap_or(FILE_HEADER as u64)
    }

    fn intact<'a>(&'a self, damaged: &'a [u8]) -> impl Iterator<Item = &'a Frame> + 'a {
        self.frames
            .iter()
            .filter(move |f| damaged.get(f.start..f.end) == Some(&self.bytes[f.start..f.end]))
    }

    /// Records every reader must return: those below the proven claim.
    fn proven_records(&self, damaged: &[u8]) -> usize {
        let proven = self.proven(damaged) as usize;
        self.frames.iter().take_while(|f| f.end <= proven).count()
    }

    /// The verdict for `damaged`, where the first damaged frame starts at
    /// `at` (`kept` frames before it), given whether the bytes there are a
    /// CRC-valid frame in the wrong place (`impossible`).
    fn verdict(&self, damaged: &[u8], at: usize, impossible: Option<&'static str>) -> Expect {
        let kept = self.frames.iter().take_while(|f| f.start < at).count();
        let evidence = self
            .intact(damaged)
            .find(|f| f.start > at && f.synced > at as u64);
        match (evidence, impossible) {
            (Some(e), _) => Expect::Below {
                at,
                evidence: e.start,
            },
            (None, Some(what)) => Expect::Impossible { at, what },
            (None, None) => Expect::Torn { at, kept },
        }
    }
}

fn fresh(bytes: &[u8]) -> MemoryDirectory {
    let dir = MemoryDirectory::new();
    dir.atomic_write(LOG, bytes).unwrap();
    dir
}

fn strict() -> RecordLogOptions {
    let mut o = RecordLogOptions::default();
    o.mode = RecordLogMode::Strict;
    o
}

/// The general oracle for an error: typed, naming the file and an offset
/// inside it (or a header error, which is at offset 0 by definition).
fn assert_typed(e: &Error, len: usize, ctx: &str) {
    let (path, offset) = match e {
        Error::Corrupt { path, offset, .. } | Error::ChecksumMismatch { path, offset, .. } => {
            (path, *offset)
        }
        Error::UnsupportedVersion { path, .. } => (path, 0),
        other => panic!("{ctx}: untyped error {other:?}"),
    };
    assert_eq!(path.to_str(), Some(LOG), "{ctx}: {e}");
    assert!(
        offset as usize <= len,
        "{ctx}: offset {offset} past the end"
    );
    assert!(e.to_string().contains(LOG), "{ctx}: {e}");
}

/// Whether `e` is exactly what `expect` (not `Clean`/`Torn`) calls for.
fn matches_expected(e: &Error, expect: &Expect) -> bool {
    match (expect, e) {
        (
            Expect::Below { at, evidence },
            Error::Corrupt {
                offset,
                kind: CorruptKind::BelowDurablePoint { evidence: ev },
                ..
            },
        ) => *offset == *at as u64 && *ev == *evidence as u64,
        (
            Expect::Impossible { at, what },
            Error::Corrupt {
                offset,
                kind: CorruptKind::BadFrame(w),
                ..
            },
        ) => *offset == *at as u64 && w == what,
        (
            Expect::Header,
            Error::Corrupt { offset: 0, .. }
            | Error::ChecksumMismatch { offset: 0, .. }
            | Error::UnsupportedVersion { .. },
        ) => true,
        _ => false,
    }
}

/// Whether `e` is one of strict mode's torn-tail errors at `at`.
fn is_strict_torn(e: &Error, at: usize) -> bool {
    match e {
        Error::Corrupt {
            offset,
            kind: CorruptKind::TornTail | CorruptKind::BadFrame("zero padding"),
            ..
        }
        | Error::ChecksumMismatch { offset, .. } => *offset == at as u64,
        _ => false,
    }
}

fn read(dir: &dyn Directory, mode: RecordLogMode) -> zerodur::Result<Vec<Vec<u8>>> {
    Ok(RecordLog::read(dir, LOG, mode)?
        .iter()
        .map(<[u8]>::to_vec)
        .collect())
}

/// Checks one damaged state against both oracles.
fn check(base: &Base, damaged: &[u8], expect: &Expect, ctx: &str) {
    let proven_records = base.proven_records(damaged);
    let proven = base.proven(damaged) as usize;
    let dir = fresh(damaged);
    let ok = |got: &[Vec<u8>], mode: &str| {
        assert!(
            got.len() >= proven_records,
            "{ctx} ({mode}): {} records, {proven_records} proven",
            got.len()
        );
        assert_eq!(
            got,
            &base.records[..got.len()],
            "{ctx} ({mode}): not a prefix"
        );
    };

    // Reads, both modes: never modify anything.
    for mode in [RecordLogMode::Strict, RecordLogMode::BestEffort] {
        let ops = dir.op_count();
        let r = read(&dir, mode);
        assert_eq!(dir.op_count(), ops, "{ctx}: a read wrote");
        match (&r, expect) {
            (Ok(got), _) => ok(got, &format!("read {mode:?}")),
            (Err(e), _) => assert_typed(e, damaged.len(), ctx),
        }
        match (r, expect, mode) {
            (Ok(got), Expect::Clean(n), _) => assert_eq!(got.len(), *n, "{ctx}"),
            (Ok(got), Expect::Torn { kept, .. }, RecordLogMode::BestEffort) => {
                assert_eq!(got.len(), *kept, "{ctx}")
            }
            (Err(e), Expect::Torn { at, .. }, RecordLogMode::Strict) => {
                assert!(is_strict_torn(&e, *at), "{ctx}: strict read: {e:?}")
            }
            (Err(e), _, _) if matches_expected(&e, expect) => {}
            (r, _, _) => panic!("{ctx}: read {mode:?}: expected {expect:?}, got {r:?}"),
        }
    }

    // Strict open: accepts only a clean file, and changes no byte.
    match (
        RecordLog::open_with(Arc::new(dir.clone()), LOG, strict()),
        expect,
    ) {
        (Ok(log), Expect::Clean(n)) => assert_eq!(log.len(), *n as u64, "{ctx}"),
        (Err(e), Expect::Torn { at, .. }) => {
            assert!(is_strict_torn(&e, *at), "{ctx}: strict open: {e:?}")
        }
        (Err(e), _) if matches_expected(&e, expect) => {}
        (r, _) => panic!("{ctx}: strict open: expected {expect:?}, got {r:?}"),
    }
    assert_eq!(dir.read(LOG).unwrap(), damaged, "{ctx}: strict open wrote");

    // Best-effort open: cuts a torn tail only, never below the proven claim.
    match RecordLog::open(Arc::new(dir.clone()), LOG) {
        Err(e) => {
            assert_typed(&e, damaged.len(), ctx);
            assert!(matches_expected(&e, expect), "{ctx}: open: {e:?}");
            assert_eq!(dir.read(LOG).unwrap(), damaged, "{ctx}: failed open wrote");
        }
        Ok(mut log) => {
            let got: Vec<Vec<u8>> = log.records().unwrap().iter().map(<[u8]>::to_vec).collect();
            ok(&got, "open");
            let len = dir.len(LOG).unwrap() as usize;
            assert!(
                len >= proven,
                "{ctx}: cut to {len}, below the claim {proven}"
            );
            match expect {
                Expect::Clean(n) => {
                    assert_eq!(got.len(), *n, "{ctx}");
                    assert_eq!(
                        dir.read(LOG).unwrap(),
                        damaged,
                        "{ctx}: clean open changed bytes"
                    );
                }
                Expect::Torn { at, kept } => {
                    assert_eq!((got.len(), len), (*kept, *at), "{ctx}: cut");
                }
                other => panic!("{ctx}: open succeeded, expected {other:?}"),
            }
            // Appending after the cut works and is durable.
            log.append(b"after").unwrap();
            log.sync().unwrap();
            drop(log);
            let image = dir.crash_image(&CrashPolicy::drop_all());
            let mut expected = got;
            expected.push(b"after".to_vec());
            assert_eq!(
                read(&image, RecordLogMode::Strict).unwrap(),
                expected,
                "{ctx}: append after open"
            );
        }
    }
}

/// The original frame holding byte `i` (after the file header).
fn frame_of(base: &Base, i: usize) -> &Frame {
    base.frames
        .iter()
        .find(|f| (f.start..f.end).contains(&i))
        .unwrap()
}

#[test]
fn every_flipped_byte_is_reported_or_cut_as_the_decision_table_says() {
    let base = build();
    let durable = base.frames.last().unwrap().synced as usize;
    assert_eq!(durable, base.frames[(BATCHES - 1) * PER_BATCH].start);
    let mut states = 0;
    let mut below = 0;
    for i in 0..base.bytes.len() {
        for mask in [0x01u8, 0xFF] {
            let mut damaged = base.bytes.clone();
            damaged[i] ^= mask;
            let ctx = format!("byte {i} ^ {mask:#04x}");
            let expect = if i < FILE_HEADER {
                Expect::Header
            } else {
                let f = frame_of(&base, i);
                let padding = i >= f.body_end;
                base.verdict(&damaged, f.start, padding.then_some("non-zero padding"))
            };
            // Below the last batch, every flip is proven damage; in the last
            // batch, nothing later vouches for it (the known limit).
            if (FILE_HEADER..durable).contains(&i) {
                assert!(matches!(expect, Expect::Below { .. }), "{ctx}: {expect:?}");
                below += 1;
            }
            check(&base, &damaged, &expect, &ctx);
            states += 1;
        }
    }
    assert!(below > 0);
    println!(
        "flipped-byte states checked: {states} ({below} below the durable point), file of {} bytes",
        base.bytes.len()
    );
}

#[test]
fn a_file_cut_short_reads_as_every_record_it_still_holds() {
    // The file keeps no length elsewhere: the frames that would prove the
    // lost bytes durable are lost with them. A cut at a frame boundary reads
    // as a clean log of the records before it; a cut through a frame, as a
    // torn tail there. Never an error in best effort, never fewer records
    // than the remaining bytes hold.
    let base = build();
    let mut states = 0;
    for len in 0..=base.bytes.len() {
        let cut = &base.bytes[..len];
        let expect = if len < FILE_HEADER {
            Expect::Header
        } else {
            let kept = base.frames.iter().take_while(|f| f.end <= len).count();
            let at = base.frames[..kept].last().map_or(FILE_HEADER, |f| f.end);
            if at == len {
                Expect::Clean(kept)
            } else {
                Expect::Torn { at, kept }
            }
        };
        check(&base, cut, &expect, &format!("cut to {len}"));
        states += 1;
    }
    println!("cut-short states checked: {states}");
}

#[test]
fn junk_after_the_last_record_is_a_torn_tail_and_a_copied_frame_is_not() {
    let base = build();
    let end = base.bytes.len();
    let all = base.records.len();
    let mut states = 0;
    for n in 1..=64 {
        for junk in [
            (0..n).map(|j| (j * 13 + 5) as u8).collect::<Vec<u8>>(),
            vec![0; n],
            vec![0xFF; n],
        ] {
            let mut damaged = base.bytes.clone();
            damaged.extend_from_slice(&junk);
            let expect = Expect::Torn { at: end, kept: all };
            check(
                &base,
                &damaged,
                &expect,
                &format!("{n} junk bytes {:?}", &junk[..1]),
            );
            states += 1;
        }
    }
    // A valid frame copied to the end (a misdirected write) names another
    // offset: no crash writes that, so it is not cut.
    for f in [
        &base.frames[0],
        &base.frames[17],
        base.frames.last().unwrap(),
    ] {
        let mut damaged = base.bytes.clone();
        damaged.extend_from_slice(&base.bytes[f.start..f.end]);
        let expect = Expect::Impossible {
            at: end,
            what: "offset field does not match the frame's position",
        };
        check(
            &base,
            &damaged,
            &expect,
            &format!("copy of frame at {}", f.start),
        );
        states += 1;
    }
    println!("appended-junk states checked: {states}");
}

#[test]
fn zeroed_ranges_are_damage_below_the_durable_point_unless_in_the_last_batch() {
    // A lost write reads as zeros (the log only appends, so a sector's older
    // content is zeros): every 8-byte word, and every 512-byte sector.
    let base = build();
    let mut states = 0;
    let ranges = (FILE_HEADER..base.bytes.len())
        .step_by(8)
        .map(|o| (o, o + 8))
        .chain(
            (0..base.bytes.len())
                .step_by(512)
                .map(|s| (s.max(FILE_HEADER), (s + 512).min(base.bytes.len()))),
        );
    for (from, to) in ranges {
        let mut damaged = base.bytes.clone();
        damaged[from..to].fill(0);
        let Some(first) = (from..to).find(|&i| damaged[i] != base.bytes[i]) else {
            continue; // padding only: nothing changed
        };
        let expect = base.verdict(&damaged, frame_of(&base, first).start, None);
        check(&base, &damaged, &expect, &format!("zeros at {from}..{to}"));
        states += 1;
    }
    println!("zeroed-range states checked: {states}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Several bytes damaged at once, anywhere after the file header: the
    /// first damaged frame decides, as the table says, whatever follows it.
    #[test]
    fn several_damaged_bytes_follow_the_decision_table(
        damage in proptest::collection::vec((proptest::prelude::any::<usize>(), 1u8..=255), 1..6),
    ) {
        let base = build();
        let span = base.bytes.len() - FILE_HEADER;
        let mut damaged = base.bytes.clone();
        for &(at, mask) in &damage {
            damaged[FILE_HEADER + at % span] ^= mask;
        }
        let Some(first) = (0..damaged.len()).find(|&i| damaged[i] != base.bytes[i]) else {
            return Ok(()); // the flips cancelled out
        };
        let f = frame_of(&base, first);
        let padding_only = (f.start..f.body_end).all(|i| damaged[i] == base.bytes[i]);
        let expect = base.verdict(&damaged, f.start, padding_only.then_some("non-zero padding"));
        check(&base, &damaged, &expect, &format!("damage {damage:?}"));
    }
}
