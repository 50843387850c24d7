//! The bytes of a record log: every constant, the file header, the frame
//! encoding, and the scan that decides where the valid records end and
//! whether what follows them is a torn tail or damage.
//!
//! `FORMAT.md` ("Record log") describes the same layout in prose. All
//! integers are little-endian.
//!
//! ```text
//! file header (16 bytes)
//!   0  8  magic           b"ZDURRLOG"
//!   8  4  format version  2
//!  12  4  header CRC      CRC-32 (IEEE) of bytes 0..12
//! then frames at 8-byte-aligned offsets, back to back, to the end of the file:
//!   0  4  CRC             CRC-32 (IEEE) of bytes 4..24+n of the frame
//!   4  4  length n        payload bytes (u32)
//!   8  8  offset          the frame's own offset in the file
//!  16  8  synced          a file length that was durable when it was written
//!  24  n  payload
//!  24+n   zero padding to a multiple of 8 (not under the CRC, checked)
//! ```

use super::RecordLogMode;
use crate::error::{CorruptKind, Error, Result};
use crate::header::{checked_header, HeaderSpec};
use crate::le::{u32_at, u64_at};

/// The first eight bytes of every record log.
const MAGIC: [u8; 8] = *b"ZDURRLOG";
/// The format version this build writes and reads.
const FORMAT_VERSION: u32 = 2;
/// Size of the file header; the first frame starts here.
pub(crate) const HEADER_SIZE_BYTES: usize = 16;
/// Size of a frame's header (CRC, length, offset, synced).
pub(crate) const FRAME_HEADER_SIZE_BYTES: usize = 24;
/// Frames start at multiples of this, and their lengths are padded to it.
pub(crate) const FRAME_ALIGN_BYTES: usize = 8;
/// The default limit on a record's size, enforced at append.
pub(crate) const RECORD_SIZE_BYTES_MAX_DEFAULT: u32 = 16 << 20;

/// The 16-byte file header.
pub(crate) fn encode_header() -> [u8; HEADER_SIZE_BYTES] {
    let mut b = [0u8; HEADER_SIZE_BYTES];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks the file header at the start of `file`.
fn check_header(file: &[u8], path: &str) -> Result<()> {
    checked_header(
        file,
        path,
        &HeaderSpec {
            len: HEADER_SIZE_BYTES,
            magic: &MAGIC,
            version_at: 8,
            version: FORMAT_VERSION,
            crc_at: 12,
        },
    )
    .map(|_| ())
}

/// Bytes a frame with an `n`-byte payload occupies, padding included;
/// `None` if that does not fit in a `usize`.
pub(crate) fn frame_len(n: usize) -> Option<usize> {
    let unpadded = FRAME_HEADER_SIZE_BYTES.checked_add(n)?;
    unpadded
        .checked_add(FRAME_ALIGN_BYTES - 1)
        .map(|l| l & !(FRAME_ALIGN_BYTES - 1))
}

/// Appends the frame of `record`, to be written at file offset `offset`
/// while file length `synced` is durable, to `out`. The caller has checked
/// that the length fits in a `u32`, that `offset` is aligned, and that
/// `HEADER_SIZE_BYTES <= synced <= offset`.
pub(crate) fn encode_frame(record: &[u8], offset: u64, synced: u64, out: &mut Vec<u8>) {
    debug_assert!(offset % FRAME_ALIGN_BYTES as u64 == 0);
    debug_assert!((HEADER_SIZE_BYTES as u64..=offset).contains(&synced));
    let len = frame_len(record.len()).expect("record length checked by the caller");
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&synced.to_le_bytes());
    out.extend_from_slice(record);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + len, 0);
}

/// A valid frame: what it holds and where the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame<'a> {
    payload: &'a [u8],
    synced: u64,
    end: usize,
}

/// Why no valid frame starts at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadFrame {
    /// The frame's header bytes (as many as the file holds) are all zero:
    /// never written.
    Zeros,
    /// The frame's header, payload or padding runs past the end of the file.
    Incomplete,
    /// The CRC does not match.
    Checksum { stored: u32, actual: u32 },
    /// The CRC matches, but the frame cannot be at this offset: its offset
    /// or synced field contradicts its position, or its padding is not zero.
    Impossible(&'static str),
}

/// The fields of the frame header at `pos` and the end of its padded frame,
/// if the header and the whole frame lie within `file` (never allocating,
/// whatever the length field says).
fn frame_extent(file: &[u8], pos: usize) -> Option<(u32, usize, u64, u64, usize)> {
    let head = file.get(pos..pos.checked_add(FRAME_HEADER_SIZE_BYTES)?)?;
    let n = u32_at(head, 4) as usize;
    let end = pos.checked_add(frame_len(n)?)?;
    (end <= file.len()).then(|| (u32_at(head, 0), n, u64_at(head, 8), u64_at(head, 16), end))
}

/// Whether `synced` is a claim a frame at `pos` can carry.
fn synced_in_range(synced: u64, pos: usize) -> bool {
    (HEADER_SIZE_BYTES as u64..=pos as u64).contains(&synced)
}

/// The valid frame at `pos`, or why there is none. Checks, in order: the
/// header is not zeros, the frame fits, the CRC, then the fields the CRC
/// vouches for (offset, synced) and the padding.
fn decode_frame(file: &[u8], pos: usize) -> Result<Frame<'_>, BadFrame> {
    let rest = &file[pos..];
    if rest[..rest.len().min(FRAME_HEADER_SIZE_BYTES)]
        .iter()
        .all(|&b| b == 0)
    {
        return Err(BadFrame::Zeros);
    }
    let (stored, n, offset, synced, end) = frame_extent(file, pos).ok_or(BadFrame::Incomplete)?;
    let body_end = pos + FRAME_HEADER_SIZE_BYTES + n;
    let actual = crc32fast::hash(&file[pos + 4..body_end]);
    if actual != stored {
        return Err(BadFrame::Checksum { stored, actual });
    }
    if offset != pos as u64 {
        return Err(BadFrame::Impossible(
            "offset field does not match the frame's position",
        ));
    }
    if !synced_in_range(synced, pos) {
        return Err(BadFrame::Impossible("synced field out of range"));
    }
    if file[body_end..end].iter().any(|&b| b != 0) {
        return Err(BadFrame::Impossible("non-zero padding"));
    }
    Ok(Frame {
        payload: &file[pos + FRAME_HEADER_SIZE_BYTES..body_end],
        synced,
        end,
    })
}

/// What the search after a bad frame found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// A valid frame at this offset claims the bad frame's offset durable.
    Found(usize),
    /// No valid frame after the bad one claims it durable.
    None,
    /// The search gave up: candidates that failed their CRC after passing
    /// the cheap filters cost more CRC work than the budget allows.
    Exhausted,
}

/// Looks after the bad frame at `bad` for a valid frame whose `synced`
/// field exceeds `bad`: proof that the bad frame's bytes had been made
/// durable before that frame was written, so no crash can have damaged
/// them.
///
/// Every 8-byte-aligned offset `q > bad` is a candidate. Cheap filters come
/// first (offset field == `q`, `synced` in range, frame fits in the file);
/// only then the CRC. From a valid frame the search follows the chain (the
/// next candidate is the frame's end: payload bytes are never taken for
/// headers), and after a further bad spot it searches on from there.
///
/// Cost: one 8-byte comparison per aligned offset outside valid frames.
/// Valid frames found do not overlap, so their CRCs cost at most the rest
/// of the file once. Candidates that pass the filters and then fail are
/// charged to a budget of as many bytes as follow `bad`: the frames a
/// writer wrote never overlap either, so a crash cannot exhaust it (only
/// crafted overlapping headers, each naming its own offset, can). Total CRC
/// work stays below twice the rest of the file.
fn find_evidence(file: &[u8], bad: usize) -> Evidence {
    let mut budget = file.len() - bad;
    let mut q = bad + FRAME_ALIGN_BYTES;
    while q + FRAME_HEADER_SIZE_BYTES <= file.len() {
        let head = &file[q..q + FRAME_HEADER_SIZE_BYTES];
        if u64_at(head, 8) != q as u64 || !synced_in_range(u64_at(head, 16), q) {
            q += FRAME_ALIGN_BYTES;
            continue;
        }
        let Some((_, n, _, _, _)) = frame_extent(file, q) else {
            q += FRAME_ALIGN_BYTES;
            continue;
        };
        match decode_frame(file, q) {
            Ok(frame) if frame.synced > bad as u64 => return Evidence::Found(q),
            Ok(frame) => q = frame.end,
            Err(_) => {
                let cost = FRAME_HEADER_SIZE_BYTES - 4 + n;
                let Some(left) = budget.checked_sub(cost) else {
                    return Evidence::Exhausted;
                };
                budget = left;
                q += FRAME_ALIGN_BYTES;
            }
        }
    }
    Evidence::None
}

/// What follows the last valid frame of a log that does not end cleanly:
/// the decision table. The facts are what the frame at the bad offset is
/// and what [`find_evidence`] found after it; `decide` maps them to exactly
/// one verdict. Tags name the cases in `FORMAT.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// @A A torn tail: zeros, an incomplete frame or a CRC mismatch, and no
    /// valid frame after it claims it durable. A crash during unsynced
    /// appends leaves exactly this (sectors of unsynced writes lost or
    /// torn, the file's length landed or not, later frames possibly on disk
    /// without earlier ones — but those carry a claim no higher than the
    /// last sync, which is at or below the bad offset). Also what damage to
    /// the records of the last sync looks like: no later frame proves them.
    /// Best effort cuts it; strict reports it.
    TornTail(BadFrame),
    /// @B Any bad frame with a valid later frame claiming a durable length
    /// above its offset: the bad bytes were durable before that frame was
    /// written, and nothing durable changes in a crash. A media fault (a
    /// flipped bit, a lost or misdirected write over synced data). `Corrupt`
    /// in both modes; never cut.
    BelowDurablePoint { evidence: usize },
    /// @C A frame whose CRC matches but whose offset or synced field no
    /// writer could have put at this offset, or whose padding is not zero:
    /// a frame copied or misdirected here, or a damaged padding byte. No
    /// crash writes it. `Corrupt` in both modes.
    Impossible(&'static str),
    /// @D The evidence search ran out of budget: overlapping frame-like
    /// headers that fail their CRC, which no writer and no crash produce.
    /// `Corrupt` in both modes, since a torn tail cannot be told apart.
    Unresolved,
}

impl Verdict {
    /// The decision table.
    fn decide(bad: BadFrame, evidence: Evidence) -> Verdict {
        match (bad, evidence) {
            (_, Evidence::Found(at)) => Verdict::BelowDurablePoint { evidence: at },
            (BadFrame::Impossible(what), _) => Verdict::Impossible(what),
            (_, Evidence::Exhausted) => Verdict::Unresolved,
            (
                BadFrame::Zeros | BadFrame::Incomplete | BadFrame::Checksum { .. },
                Evidence::None,
            ) => Verdict::TornTail(bad),
        }
    }

    /// Whether `mode` accepts this verdict (the log ends at the bad offset)
    /// or what error it is, for the bad frame at `at` in `path`.
    fn check(self, path: &str, at: usize, mode: RecordLogMode) -> Result<()> {
        let at64 = at as u64;
        let kind = match self {
            Verdict::TornTail(_) if mode == RecordLogMode::BestEffort => return Ok(()),
            Verdict::TornTail(BadFrame::Checksum { stored, actual }) => {
                return Err(Error::ChecksumMismatch {
                    path: path.into(),
                    offset: at64,
                    expected: stored,
                    actual,
                })
            }
            Verdict::TornTail(BadFrame::Zeros) => CorruptKind::BadFrame("zero padding"),
            Verdict::TornTail(_) => CorruptKind::TornTail,
            Verdict::BelowDurablePoint { evidence } => CorruptKind::BelowDurablePoint {
                evidence: evidence as u64,
            },
            Verdict::Impossible(what) => CorruptKind::BadFrame(what),
            Verdict::Unresolved => CorruptKind::BadFrame(
                "too many overlapping frame headers after this offset to tell a torn tail from damage",
            ),
        };
        Err(Error::corrupt(path, at64, kind))
    }
}

/// Where the valid records of a log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Number of valid records.
    pub(crate) count: u64,
    /// Offset just after the last valid record (the file header's end if
    /// there is none). Anything from here to the end of the file is a torn
    /// tail.
    pub(crate) end: usize,
    /// The largest `synced` value of the valid records (the file header's
    /// end if there is none): every byte below it is proven durable.
    pub(crate) synced_max: u64,
}

/// Checks the header of `file` and its frames from the first on: the one
/// rule every reader and the writer's open share.
///
/// Valid frames are walked from offset 16. At the first offset where no
/// valid frame starts, the rest of the file is searched for evidence
/// ([`find_evidence`]) and [`Verdict::decide`] rules. Only a torn tail
/// (`@A`) is accepted, and only in [`RecordLogMode::BestEffort`]; then the
/// log ends there. Everything else is an error at that offset (in strict
/// mode, a torn tail is `Corrupt`/`BadFrame("zero padding")`,
/// `Corrupt`/`TornTail` or `ChecksumMismatch`). A bad file header is an
/// error in both modes.
pub(crate) fn scan(file: &[u8], path: &str, mode: RecordLogMode) -> Result<Scan> {
    match scan_prefix(file, path, mode) {
        (scan, None) => Ok(scan),
        (_, Some(e)) => Err(e),
    }
}

/// [`scan`], returning the valid prefix also when the scan fails: the
/// records before the error and the error. With a bad file header the
/// prefix is empty and ends at offset 0. For salvage.
pub(crate) fn scan_prefix(file: &[u8], path: &str, mode: RecordLogMode) -> (Scan, Option<Error>) {
    let mut pos = HEADER_SIZE_BYTES;
    let mut count = 0u64;
    let mut synced_max = HEADER_SIZE_BYTES as u64;
    if let Err(e) = check_header(file, path) {
        let empty = Scan {
            count,
            end: 0,
            synced_max,
        };
        return (empty, Some(e));
    }
    let mut error = None;
    while pos < file.len() {
        match decode_frame(file, pos) {
            Ok(frame) => {
                pos = frame.end;
                count += 1;
                synced_max = synced_max.max(frame.synced);
            }
            Err(bad) => {
                error = Verdict::decide(bad, find_evidence(file, pos))
                    .check(path, pos, mode)
                    .err();
                break;
            }
        }
    }
    let scan = Scan {
        count,
        end: pos,
        synced_max,
    };
    (scan, error)
}

/// The payload of the frame at `pos` in `file` and the offset after it, for
/// iterating frames that [`scan`] has validated: follows the length field
/// without a second CRC pass, bounds-checked.
pub(crate) fn next_frame(file: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let (_, n, _, _, end) = frame_extent(file, pos)?;
    let start = pos + FRAME_HEADER_SIZE_BYTES;
    Some((&file[start..start + n], end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log built frame by frame, with syncs that raise the claim.
    struct Log {
        bytes: Vec<u8>,
        claim: u64,
        starts: Vec<usize>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                bytes: encode_header().to_vec(),
                claim: HEADER_SIZE_BYTES as u64,
                starts: Vec::new(),
            }
        }

        fn append(mut self, record: &[u8]) -> Log {
            let at = self.bytes.len();
            self.starts.push(at);
            encode_frame(record, at as u64, self.claim, &mut self.bytes);
            self
        }

        fn sync(mut self) -> Log {
            self.claim = self.bytes.len() as u64;
            self
        }
    }

    /// Three records synced, then three more (the last batch, which carries
    /// the claim of the first sync).
    fn two_batches() -> Log {
        Log::new()
            .append(b"a")
            .append(b"")
            .append(b"ccc ccc")
            .sync()
            .append(b"dddd")
            .append(b"e")
            .append(&[7; 41])
    }

    fn best(f: &[u8]) -> Result<Scan> {
        scan(f, "r", RecordLogMode::BestEffort)
    }

    fn strict(f: &[u8]) -> Result<Scan> {
        scan(f, "r", RecordLogMode::Strict)
    }

    #[test]
    fn frames_are_aligned_padded_and_carry_their_offset_and_claim() {
        let log = two_batches();
        assert_eq!(log.starts[1] - log.starts[0], 32); // 24 + 1, padded
        assert_eq!(log.starts[2] - log.starts[1], 24);
        assert!(log.starts.iter().all(|s| s % 8 == 0));
        let f = &log.bytes;
        let third = log.starts[2];
        assert_eq!(u64_at(f, third + 8), third as u64);
        assert_eq!(u64_at(f, third + 16), 16);
        assert_eq!(u64_at(f, log.starts[3] + 16), log.starts[3] as u64);
        assert_eq!(&f[third + 31..third + 32], [0]);
        assert_eq!(
            next_frame(f, log.starts[2]),
            Some((&b"ccc ccc"[..], log.starts[3]))
        );
        assert_eq!(next_frame(f, f.len()), None);
    }

    #[test]
    fn bytes_are_pinned() {
        // FORMAT.md's layout, byte for byte (CRCs checked with Python's
        // zlib.crc32): an unintended format change fails here.
        let mut f = encode_header().to_vec();
        encode_frame(b"pin", 16, 16, &mut f);
        let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "5a445552524c4f47", // magic "ZDURRLOG"
                "02000000",         // version 2
                "4e25ede2",         // CRC of bytes 0..12
                "591635f3",         // frame CRC of bytes 4..27
                "03000000",         // length 3
                "1000000000000000", // offset 16
                "1000000000000000", // synced 16
                "70696e",           // "pin"
                "0000000000",       // padding to 32
            )
        );
    }

    #[test]
    fn clean_log_scans_to_its_end_with_the_largest_claim() {
        let log = two_batches();
        let want = Scan {
            count: 6,
            end: log.bytes.len(),
            synced_max: log.starts[3] as u64,
        };
        assert_eq!(strict(&log.bytes).unwrap(), want);
        assert_eq!(best(&log.bytes).unwrap(), want);
        let empty = Log::new().bytes;
        assert_eq!(
            strict(&empty).unwrap(),
            Scan {
                count: 0,
                end: 16,
                synced_max: 16
            }
        );
    }

    #[test]
    fn scan_prefix_keeps_the_frames_before_the_error() {
        // Damage to the second record, which the fourth frame's claim
        // proves durable: an error, with the first record as the prefix.
        let mut f = two_batches().bytes;
        let starts = two_batches().starts;
        f[starts[1] + 4] ^= 1;
        let (prefix, err) = scan_prefix(&f, "r", RecordLogMode::BestEffort);
        assert_eq!((prefix.count, prefix.end), (1, starts[1]));
        assert!(matches!(
            err,
            Some(Error::Corrupt { offset, kind: CorruptKind::BelowDurablePoint { .. }, .. })
                if offset == starts[1] as u64
        ));
        // A bad file header: an empty prefix ending at 0.
        f[0] ^= 1;
        let (prefix, err) = scan_prefix(&f, "r", RecordLogMode::BestEffort);
        assert_eq!((prefix.count, prefix.end), (0, 0));
        assert!(err.is_some());
    }

    #[test]
    fn torn_tail_is_cut_in_best_effort_and_named_in_strict() {
        let log = two_batches();
        let whole = log.bytes.len();
        let last = log.starts[5];
        // @A: the last frame cut short, zeros after the end, a CRC flip in the
        // last batch with no later proof.
        let mut short = log.bytes.clone();
        short.truncate(whole - 5);
        let mut zeros = log.bytes.clone();
        zeros.extend_from_slice(&[0; 40]);
        let mut flipped = log.bytes.clone();
        flipped[log.starts[3] + 25] ^= 1;

        assert_eq!(best(&short).unwrap().end, last);
        assert!(matches!(
            strict(&short),
            Err(Error::Corrupt { offset, kind: CorruptKind::TornTail, .. }) if offset == last as u64
        ));
        assert_eq!(best(&zeros).unwrap().end, whole);
        assert!(matches!(
            strict(&zeros),
            Err(Error::Corrupt { offset, kind: CorruptKind::BadFrame("zero padding"), .. })
                if offset == whole as u64
        ));
        // Later frames of the same batch are valid but claim only the first
        // sync, which is not above the bad offset: still a torn tail.
        let s = best(&flipped).unwrap();
        assert_eq!((s.count, s.end), (3, log.starts[3]));
        assert!(matches!(
            strict(&flipped),
            Err(Error::ChecksumMismatch { offset, .. }) if offset == log.starts[3] as u64
        ));
    }

    #[test]
    fn damage_below_the_durable_point_is_corrupt_in_both_modes() {
        let log = two_batches();
        for byte in [0, 4, 8, 16, 24, 25] {
            let mut f = log.bytes.clone();
            f[log.starts[2] + byte] ^= 0x10;
            for e in [best(&f).unwrap_err(), strict(&f).unwrap_err()] {
                assert!(
                    matches!(
                        e,
                        Error::Corrupt {
                            offset,
                            kind: CorruptKind::BelowDurablePoint { evidence },
                            ..
                        } if offset == log.starts[2] as u64 && evidence == log.starts[3] as u64
                    ),
                    "byte {byte}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn evidence_is_found_past_a_second_bad_spot_and_must_claim_above_the_bad_offset() {
        // Bad frame 1, bad frame 3 (a synced length equal to frame 1's start
        // proves nothing about it), valid frame 4 claiming past frame 1.
        let log = Log::new()
            .append(b"zero")
            .sync()
            .append(b"one")
            .append(b"two")
            .append(b"three")
            .sync()
            .append(b"four");
        let mut f = log.bytes.clone();
        f[log.starts[1] + 24] ^= 1;
        f[log.starts[3] + 24] ^= 1;
        assert!(matches!(
            best(&f),
            Err(Error::Corrupt { kind: CorruptKind::BelowDurablePoint { evidence }, .. })
                if evidence == log.starts[4] as u64
        ));
        // Without frame 4 there is no proof: frames 2 and 3 claim exactly
        // frame 1's offset, which says nothing about frame 1's own bytes.
        f.truncate(log.starts[4]);
        assert_eq!(best(&f).unwrap().end, log.starts[1]);
    }

    #[test]
    fn the_search_follows_the_chain_and_never_reads_payloads_as_headers() {
        // Record 2's payload is a well-formed frame for the offset where it
        // lies, claiming record 1's offset durable. Record 1 is torn. Only
        // if payloads were searched would that fake frame count as proof.
        let base = Log::new().append(b"zero").sync().append(b"one!");
        let two = base.bytes.len();
        let mut fake = Vec::new();
        encode_frame(b"fake", (two + 24) as u64, two as u64, &mut fake);
        let log = base.append(&fake);
        let mut f = log.bytes.clone();
        f[log.starts[1] + 24] ^= 1;
        assert_eq!(best(&f).unwrap().end, log.starts[1]);
        // A real proof right after the chain's next frame is found.
        let log = log.sync().append(b"three");
        let mut f = log.bytes.clone();
        f[log.starts[1] + 24] ^= 1;
        assert!(matches!(
            best(&f),
            Err(Error::Corrupt { kind: CorruptKind::BelowDurablePoint { evidence }, .. })
                if evidence == log.starts[3] as u64
        ));
    }

    #[test]
    fn a_crc_valid_frame_in_the_wrong_place_is_corrupt_in_both_modes() {
        let log = two_batches();
        // A copy of the first frame appended at the end (a misdirected write).
        let mut copied = log.bytes.clone();
        copied.extend_from_slice(&log.bytes[log.starts[0]..log.starts[1]]);
        // A frame claiming more than was written before it.
        let mut greedy = log.bytes.clone();
        let at = greedy.len() as u64;
        let mut frame = Vec::new();
        encode_frame(b"x", at, at, &mut frame);
        frame[16..24].copy_from_slice(&(at + 8).to_le_bytes());
        let crc = crc32fast::hash(&frame[4..25]);
        frame[..4].copy_from_slice(&crc.to_le_bytes());
        greedy.extend_from_slice(&frame);
        // A non-zero padding byte in the last frame.
        let mut padded = log.bytes.clone();
        *padded.last_mut().unwrap() = 1;
        for (f, what) in [
            (&copied, "offset field does not match the frame's position"),
            (&greedy, "synced field out of range"),
            (&padded, "non-zero padding"),
        ] {
            for e in [best(f).unwrap_err(), strict(f).unwrap_err()] {
                assert!(
                    matches!(e, Error::Corrupt { kind: CorruptKind::BadFrame(w), .. } if w == what),
                    "{what}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn hostile_lengths_never_allocate_and_read_as_a_torn_tail() {
        let log = two_batches();
        let mut f = log.bytes.clone();
        let at = f.len();
        f.extend_from_slice(&[1; 4]);
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        f.extend_from_slice(&(at as u64).to_le_bytes());
        f.extend_from_slice(&16u64.to_le_bytes());
        assert_eq!(best(&f).unwrap().end, at);
        assert!(matches!(
            strict(&f),
            Err(Error::Corrupt {
                kind: CorruptKind::TornTail,
                ..
            })
        ));
    }

    #[test]
    fn overlapping_crafted_candidates_exhaust_the_search_budget() {
        // After a bad frame, a header every 24 bytes naming its own offset,
        // each spanning the rest of the file with a wrong CRC: their CRC work
        // would grow with the square of the tail.
        let log = two_batches();
        let mut f = log.bytes.clone();
        let bad = f.len();
        let tail = 4096;
        f.resize(bad + tail, 0xAB);
        let mut q = bad;
        while q + FRAME_HEADER_SIZE_BYTES <= f.len() {
            let n = (f.len() - q - FRAME_HEADER_SIZE_BYTES) as u32 & !7;
            f[q + 4..q + 8].copy_from_slice(&n.to_le_bytes());
            f[q + 8..q + 16].copy_from_slice(&(q as u64).to_le_bytes());
            f[q + 16..q + 24].copy_from_slice(&16u64.to_le_bytes());
            q += FRAME_HEADER_SIZE_BYTES;
        }
        assert_eq!(find_evidence(&f, bad), Evidence::Exhausted);
        for e in [best(&f).unwrap_err(), strict(&f).unwrap_err()] {
            assert!(
                matches!(e, Error::Corrupt { offset, kind: CorruptKind::BadFrame(_), .. } if offset == bad as u64),
                "{e:?}"
            );
        }
    }

    #[test]
    fn decision_table_rows() {
        let crc = BadFrame::Checksum {
            stored: 1,
            actual: 2,
        };
        let odd = BadFrame::Impossible("x");
        assert_eq!(
            Verdict::decide(BadFrame::Zeros, Evidence::Found(64)),
            Verdict::BelowDurablePoint { evidence: 64 }
        );
        assert_eq!(
            Verdict::decide(odd, Evidence::Found(64)),
            Verdict::BelowDurablePoint { evidence: 64 }
        );
        assert_eq!(
            Verdict::decide(odd, Evidence::None),
            Verdict::Impossible("x")
        );
        assert_eq!(
            Verdict::decide(crc, Evidence::Exhausted),
            Verdict::Unresolved
        );
        for bad in [BadFrame::Zeros, BadFrame::Incomplete, crc] {
            assert_eq!(Verdict::decide(bad, Evidence::None), Verdict::TornTail(bad));
        }
    }

    #[test]
    fn bad_file_header_is_an_error_in_both_modes() {
        for mode in [RecordLogMode::Strict, RecordLogMode::BestEffort] {
            assert!(matches!(
                scan(&[], "r", mode),
                Err(Error::Corrupt {
                    kind: CorruptKind::Truncated { .. },
                    ..
                })
            ));
            let mut f = Log::new().bytes;
            f[0] ^= 1;
            assert!(matches!(
                scan(&f, "r", mode),
                Err(Error::Corrupt {
                    kind: CorruptKind::BadMagic,
                    ..
                })
            ));
            for old in [1u8, 3] {
                let mut f = Log::new().bytes;
                f[8] = old;
                assert!(matches!(
                    scan(&f, "r", mode),
                    Err(Error::UnsupportedVersion { found, supported: 2, .. }) if found == u32::from(old)
                ));
            }
            let mut f = Log::new().bytes;
            f[13] ^= 1;
            assert!(matches!(
                scan(&f, "r", mode),
                Err(Error::ChecksumMismatch { offset: 0, .. })
            ));
        }
    }
}
