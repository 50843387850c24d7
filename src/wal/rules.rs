//! The one owner of the WAL's verdicts: what a segment file's header means
//! (born, unborn, damaged), what the end of a segment's frames means (clean
//! end, torn tail, damage), and what a WAL folder's listing means (the
//! segments, the recycle pool, gaps). The reader, resume (`Wal::open`),
//! maintenance and any tool all call these functions: none of them decides
//! on its own.
//!
//! The rule is **repair only what a crash can have produced**. `FORMAT.md`
//! ("Fault model") lists the states a crash can leave; every row below that
//! accepts a state names the crash that produces it (tags `@U1`…, `@E1`…,
//! matching `FORMAT.md`). Every other state is an error naming the file and
//! the offset, and nothing is deleted, truncated or rewritten because of it.
//!
//! Verdicts are made from facts gathered once: the header decodes or not,
//! its id, length and epoch against the file name, the file length and the
//! sealed segment before it; the kind of end the frame walk met, whether the
//! segment is the final one, and whether a later frame proves the end's
//! position was already durable.

use super::format::{
    decode_slot, FileName, HeaderError, SegmentHeader, Slot, FORMAT_VERSION, FRAME_ALIGN,
    FRAME_EPOCH_AT, FRAME_HEADER_LEN, FRAME_KIND_AT, HEADER_EPOCH_AT, HEADER_FIRST_ENTRY_AT,
    HEADER_LEN_AT, HEADER_SEGMENT_AT, KIND_ENTRY, KIND_RESUME, SEGMENT_HEADER_LEN,
    SEGMENT_SIZE_BYTES_MIN,
};
use super::segment::{Cursor, End};
use super::SegmentId;
use crate::directory::path::join;
use crate::directory::Directory;
use crate::error::{CorruptKind, Error, Result};
use crate::le::u64_at;

/// How far past a zero slot or a stale frame the evidence search looks
/// (past a torn frame it searches the rest of the segment). Bounded because
/// a clean end is met on every replay and resume, and the bytes after it
/// are zeros or an earlier life's frames that need not be read in full.
pub(crate) const CLEAN_END_EVIDENCE_WINDOW_BYTES: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// The folder

/// The files of a WAL folder zerodur recognises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Live segments, consecutive, oldest first.
    pub(crate) segments: Vec<SegmentId>,
    /// Retired segments in the recycle pool, oldest first.
    pub(crate) pool: Vec<SegmentId>,
}

/// Lists the WAL folder `wal_dir` and checks that the live segments are
/// consecutive. A folder that does not exist is [`Error::NotFound`] naming
/// it: a misspelled folder is never an empty log.
///
/// A pool with no live segment is damage: the active segment is never
/// retired, so some live segment always exists once the pool does.
pub(crate) fn list_wal(dir: &dyn Directory, wal_dir: &str) -> Result<Listing> {
    let l = read_listing(dir, wal_dir)?;
    match listing_break(&l, wal_dir) {
        Some(b) => Err(b.error()),
        None => Ok(l),
    }
}

/// Lists the WAL folder `wal_dir` (live segments and pool, each sorted)
/// without judging it: [`list_wal`] and salvage judge the listing with
/// [`listing_break`]. A folder that does not exist is [`Error::NotFound`].
pub(crate) fn read_listing(dir: &dyn Directory, wal_dir: &str) -> Result<Listing> {
    crate::directory::path::check_dir(wal_dir)?;
    if !dir.exists(wal_dir)? {
        return Err(Error::NotFound {
            path: wal_dir.into(),
        });
    }
    let mut l = Listing::default();
    for name in dir.list(wal_dir)? {
        match FileName::parse(&name) {
            Some(FileName::Segment(id)) => l.segments.push(id),
            Some(FileName::Free(id)) => l.pool.push(id),
            None => {}
        }
    }
    l.segments.sort();
    l.pool.sort();
    Ok(l)
}

/// Where a listing stops being a log: a live segment id missing between
/// others, or a pool with no live segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListingBreak {
    /// How many live segments, from the oldest, come before the break (they
    /// are consecutive).
    pub(crate) consecutive: usize,
    /// The file the error names: the segment after the gap, or the newest
    /// pooled file.
    pub(crate) path: String,
    /// The first missing segment id.
    pub(crate) missing: u64,
}

impl ListingBreak {
    /// The error the break is: `Corrupt` with [`CorruptKind::MissingSegment`]
    /// at offset 0 of [`ListingBreak::path`].
    pub(crate) fn error(&self) -> Error {
        Error::corrupt(
            self.path.clone(),
            0,
            CorruptKind::MissingSegment {
                segment: self.missing,
            },
        )
    }
}

/// The first break in listing `l` of `wal_dir`, if any: the verdict on the
/// folder's listing.
///
/// | facts | verdict |
/// |---|---|
/// | live segment ids consecutive, or none and no pool | a log (`None`) |
/// | a live id missing between others | `MissingSegment` (the segment after the gap, 0) |
/// | pooled files but no live segment | `MissingSegment` (the newest pooled file, 0) |
pub(crate) fn listing_break(l: &Listing, wal_dir: &str) -> Option<ListingBreak> {
    if let Some(i) = l.segments.windows(2).position(|w| w[1].0 != w[0].0 + 1) {
        return Some(ListingBreak {
            consecutive: i + 1,
            path: segment_path(wal_dir, l.segments[i + 1]),
            missing: l.segments[i].0 + 1,
        });
    }
    if let (None, Some(&newest)) = (l.segments.first(), l.pool.last()) {
        return Some(ListingBreak {
            consecutive: 0,
            path: pool_path(wal_dir, newest),
            missing: newest.0 + 1,
        });
    }
    None
}

/// Path of live segment `id` in `wal_dir`.
pub(crate) fn segment_path(wal_dir: &str, id: SegmentId) -> String {
    join(wal_dir, &FileName::Segment(id).render())
}

/// Path of pooled segment `id` in `wal_dir`.
pub(crate) fn pool_path(wal_dir: &str, id: SegmentId) -> String {
    join(wal_dir, &FileName::Free(id).render())
}

// ---------------------------------------------------------------------------
// Headers

/// Decodes a segment header and checks it belongs to segment `id` and to a
/// file of this length: the header check every live or pooled segment
/// passes. Errors name the file and the field's offset.
pub(crate) fn check_header(buf: &[u8], id: SegmentId, path: &str) -> Result<SegmentHeader> {
    match SegmentHeader::decode(buf) {
        Ok(h) if h.segment != id => Err(Error::corrupt(
            path,
            HEADER_SEGMENT_AT,
            CorruptKind::BadHeader("segment id does not match the file name"),
        )),
        Ok(h) if h.segment_len < SEGMENT_SIZE_BYTES_MIN => Err(Error::corrupt(
            path,
            HEADER_LEN_AT,
            CorruptKind::BadHeader("segment shorter than the smallest zerodur writes"),
        )),
        Ok(h) if h.segment_len != buf.len() as u64 => Err(Error::corrupt(
            path,
            HEADER_LEN_AT,
            CorruptKind::LengthMismatch {
                expected: h.segment_len,
                found: buf.len() as u64,
            },
        )),
        Ok(h) => Ok(h),
        Err(e) => Err(header_error(e, buf, path)),
    }
}

fn header_error(e: HeaderError, buf: &[u8], path: &str) -> Error {
    match e {
        HeaderError::Short => Error::corrupt(
            path,
            0,
            CorruptKind::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: buf.len() as u64,
            },
        ),
        HeaderError::Magic => Error::corrupt(path, 0, CorruptKind::BadMagic),
        HeaderError::Checksum { stored, computed } => Error::ChecksumMismatch {
            path: path.into(),
            offset: 0,
            expected: stored,
            actual: computed,
        },
        HeaderError::Version(v) => Error::UnsupportedVersion {
            path: path.into(),
            found: v,
            supported: FORMAT_VERSION,
        },
        HeaderError::Field(why) => Error::corrupt(path, 0, CorruptKind::BadHeader(why)),
    }
}

/// What is known of the segment before the one being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Predecessor {
    /// Its header's epoch.
    pub(crate) header_epoch: u64,
    /// Its seal: the first entry id of the next segment and the seal's
    /// epoch, when its frames were walked (`None` when only its header was
    /// read).
    pub(crate) seal: Option<(u64, u64)>,
}

/// Where a segment stands in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// Its id (from its file name).
    pub(crate) id: SegmentId,
    /// Whether it is the newest live segment.
    pub(crate) is_final: bool,
    /// The segment before it, if there is one.
    pub(crate) prev: Option<Predecessor>,
}

/// The verdict on a segment file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Birth {
    /// A live segment with this header.
    Born(SegmentHeader),
    /// A final segment whose rotation a crash interrupted before its header
    /// was durable: it holds no entry, and the log ends at the seal before
    /// it (or is empty, for a new log's first segment).
    Unborn(Unborn),
}

/// The crash that left an unborn segment (tags as in `FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unborn {
    /// @U1: a new file whose length never became durable (zero bytes).
    Empty,
    /// @U2: a new, preallocated file whose header never reached the disk:
    /// every byte is zero.
    Zeros,
    /// @U3: a recycled file whose rename landed but whose new header did not:
    /// it still wears an earlier segment's valid header, and no frame in it
    /// belongs to a life after its predecessor's.
    Recycled,
}

/// Judges the header of the segment at `pos` (the file's bytes are `buf`).
///
/// | facts | verdict |
/// |---|---|
/// | header decodes, id = name, length = file, first id = predecessor's seal, epoch above the predecessor's | `Born` |
/// | same, but length, first id or epoch disagree | `Corrupt` (`LengthMismatch`, `EntryIdGap`, `EpochRegression`) |
/// | final segment after a sealed one (or a new log's segment 1), file empty | `Unborn(Empty)` (@U1) |
/// | same, every byte zero | `Unborn(Zeros)` (@U2) |
/// | final segment after another, valid header of an *older* segment id and epoch, file length as the header says, no frame of a later life | `Unborn(Recycled)` (@U3) |
/// | anything else (a non-final segment, a zeroed header over data, another header under live frames, bad magic, CRC, version) | the header's error, naming the file and offset |
pub(crate) fn judge_header(buf: &[u8], pos: &Position, path: &str) -> Result<Birth> {
    let decoded = SegmentHeader::decode(buf);
    if let Ok(h) = decoded {
        if h.segment == pos.id {
            return born(h, buf, pos, path);
        }
    }
    // Unborn states exist only where a rotation (or a new log's creation)
    // can be interrupted: the final segment, after a sealed one, or the
    // first segment of a new log.
    let may_be_unborn = pos.is_final && (pos.prev.is_some() || pos.id == SegmentId(1));
    if may_be_unborn {
        if buf.is_empty() {
            return Ok(Birth::Unborn(Unborn::Empty));
        }
        if buf.iter().all(|&b| b == 0) {
            return Ok(Birth::Unborn(Unborn::Zeros));
        }
        if let (Ok(h), Some(prev)) = (decoded, pos.prev) {
            let older_life = h.segment < pos.id
                && h.epoch < prev.header_epoch
                && h.segment_len == buf.len() as u64;
            if older_life && newest_epoch_at_least(buf, prev.header_epoch).is_none() {
                return Ok(Birth::Unborn(Unborn::Recycled));
            }
        }
    }
    if buf
        .get(..SEGMENT_HEADER_LEN)
        .is_some_and(|h| h.iter().all(|&b| b == 0))
    {
        return Err(Error::corrupt(
            path,
            0,
            CorruptKind::BadHeader("the header is zeros but the file holds data"),
        ));
    }
    Err(match check_header(buf, pos.id, path) {
        Err(e) => e,
        Ok(_) => unreachable!("a header naming this segment was judged above"),
    })
}

fn born(h: SegmentHeader, buf: &[u8], pos: &Position, path: &str) -> Result<Birth> {
    check_header(buf, pos.id, path)?;
    if let Some(prev) = pos.prev {
        let (epoch_floor, seal) = match prev.seal {
            Some((id, epoch)) => (epoch, Some(id)),
            None => (prev.header_epoch, None),
        };
        if let Some(seal) = seal.filter(|&s| s != h.first_entry.0) {
            return Err(Error::corrupt(
                path,
                HEADER_FIRST_ENTRY_AT,
                CorruptKind::EntryIdGap {
                    expected: seal,
                    found: h.first_entry.0,
                },
            ));
        }
        if h.epoch <= epoch_floor {
            return Err(Error::corrupt(
                path,
                HEADER_EPOCH_AT,
                CorruptKind::EpochRegression {
                    previous: epoch_floor,
                    found: h.epoch,
                },
            ));
        }
    }
    Ok(Birth::Born(h))
}

/// Offset of a well-formed frame at or after the header with an epoch of at
/// least `floor`, if any (16-byte steps, cheap filters before the CRC).
fn newest_epoch_at_least(buf: &[u8], floor: u64) -> Option<usize> {
    let mut off = SEGMENT_HEADER_LEN;
    while off.saturating_add(FRAME_HEADER_LEN) <= buf.len() {
        if plausible(buf, off) && u64_at(buf, off + FRAME_EPOCH_AT) >= floor {
            if let Slot::Frame { .. } = decode_slot(buf, off) {
                return Some(off);
            }
        }
        off += FRAME_ALIGN;
    }
    None
}

/// The cheap test a frame header must pass before its CRC is computed.
fn plausible(buf: &[u8], off: usize) -> bool {
    (KIND_ENTRY..=KIND_RESUME).contains(&buf[off + FRAME_KIND_AT])
}

// ---------------------------------------------------------------------------
// Ends

/// The verdict on where a segment's valid frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndVerdict {
    /// The log ends cleanly here (@E1, @E2).
    Clean,
    /// A torn tail: the log ends here, and the bytes from here on are what a
    /// crash left of writes that were never durable (@E3). Strict replay
    /// rejects it; resume fences it off.
    Torn,
}

/// Judges the end `end` that the walk `c` met in a segment (`buf`).
///
/// | facts | verdict |
/// |---|---|
/// | non-final segment, any end but its seal | `Corrupt` (`Unsealed`, or `BadFrame`): everything before a seal was durable |
/// | a valid frame of a later epoch at the walk's position (not a resume marker continuing the log) | `Corrupt` (`BadFrame`): a later epoch starts only with a durable marker the walk would have met |
/// | final segment, and a later valid frame proves the position was durable: it carries a later epoch, or this epoch and a durable watermark at or past the expected id | `Corrupt` (`BelowDurablePoint`) |
/// | final segment, zero slot, no such proof | `Clean` (@E1: nothing more was written, or it never landed) |
/// | final segment, older-epoch frame, no such proof | `Clean` (@E2: a recycled or resumed file's earlier bytes, new frames never landed) |
/// | final segment, torn frame or incomplete batch, no such proof | `Torn` (@E3: an unsynced write landed in part) |
///
/// The proof is searched for in the rest of the segment past a torn frame,
/// and in [`CLEAN_END_EVIDENCE_WINDOW_BYTES`] past a zero slot or stale
/// frame.
pub(crate) fn judge_end(
    buf: &[u8],
    c: &Cursor,
    end: End,
    is_final: bool,
    path: &str,
) -> Result<EndVerdict> {
    judge_end_scan(buf, c, end, is_final, path).map(|(verdict, _)| verdict)
}

/// [`judge_end`], also returning what its search for proof saw (resume
/// needs the highest epoch past the end, and gets most of it from the same
/// pass).
pub(crate) fn judge_end_scan(
    buf: &[u8],
    c: &Cursor,
    end: End,
    is_final: bool,
    path: &str,
) -> Result<(EndVerdict, PastEnd)> {
    let corrupt = |kind| Error::corrupt(path, c.off as u64, kind);
    if end == End::Later {
        return Err(corrupt(CorruptKind::BadFrame("frame from a later epoch")));
    }
    if !is_final {
        return Err(corrupt(match end {
            End::Torn(why) => CorruptKind::BadFrame(why),
            _ => CorruptKind::Unsealed,
        }));
    }
    let window = match end {
        End::Torn(_) => usize::MAX,
        _ => CLEAN_END_EVIDENCE_WINDOW_BYTES,
    };
    let past = scan_past_end(buf, c.off, c.next, c.epoch, window);
    if let Some(q) = past.evidence {
        return Err(corrupt(CorruptKind::BelowDurablePoint {
            evidence: q as u64,
        }));
    }
    let verdict = match end {
        End::Torn(_) => EndVerdict::Torn,
        _ => EndVerdict::Clean,
    };
    Ok((verdict, past))
}

/// What one pass over the slots after a segment's end found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PastEnd {
    /// The offset of proof that the end was durable (see
    /// [`durable_evidence`]); the pass stops there.
    pub(crate) evidence: Option<usize>,
    /// The highest epoch of a valid frame in the slots scanned (0 if none).
    pub(crate) max_epoch: u64,
    /// The first slot not scanned: the slot at the end itself and those
    /// from here on were not looked at.
    pub(crate) scanned_to: usize,
}

/// Looks past the end at `from` (where entry `next` of `epoch` should have
/// been) for a valid frame that could only have been written after that
/// position was durable: one of a later epoch continuing the log (a later
/// epoch begins with a resume marker written once everything before it was
/// durable, carrying an id at least `next`), or one of `epoch` with a higher
/// id whose durable watermark reaches `next`. Scans at
/// most `window` bytes. Returns the evidence's offset.
pub(crate) fn durable_evidence(
    buf: &[u8],
    from: usize,
    next: u64,
    epoch: u64,
    window: usize,
) -> Option<usize> {
    scan_past_end(buf, from, next, epoch, window).evidence
}

/// The pass behind [`durable_evidence`]: the slots from `from` + 16 on, at
/// most `window` bytes past `from`, with the highest epoch seen.
fn scan_past_end(buf: &[u8], from: usize, next: u64, epoch: u64, window: usize) -> PastEnd {
    let stop = buf
        .len()
        .saturating_sub(FRAME_HEADER_LEN)
        .min(from.saturating_add(window));
    let mut max_epoch = 0;
    let mut off = from + FRAME_ALIGN;
    while off <= stop {
        // Cheap filters before the CRC: kind byte and epoch (a frame below
        // `epoch` is neither proof nor, for resume, above the tail's epoch).
        if plausible(buf, off) && u64_at(buf, off + FRAME_EPOCH_AT) >= epoch {
            if let Slot::Frame { header, .. } = decode_slot(buf, off) {
                // A later session's marker (and its frames) continue the
                // log: their ids are at least the expected one.
                let later = header.epoch > epoch && header.entry.0 >= next;
                let proves =
                    header.entry.0 > next && header.durable_watermark().is_some_and(|w| w >= next);
                if later || proves {
                    return PastEnd {
                        evidence: Some(off),
                        max_epoch,
                        scanned_to: off,
                    };
                }
                max_epoch = max_epoch.max(header.epoch);
            }
        }
        off += FRAME_ALIGN;
    }
    PastEnd {
        evidence: None,
        max_epoch,
        scanned_to: off,
    }
}

// ---------------------------------------------------------------------------
// Deferred rotation

/// The verdict on a non-final segment whose frames ended before its seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsealed {
    /// @D1: every entry is there, only the seal never landed. The log goes
    /// on in the successor.
    SealLost,
    /// @D2: a deferred rotation's segment that never became durable: the log
    /// ends here (cleanly, or with a torn tail), and the segments after it
    /// are what a crash left of writes nobody was told were durable.
    LogEnds(EndVerdict),
}

/// Judges the end `end` that the walk `c` met in a **non-final** segment
/// (`buf`, at `path`) whose successor's header is `next` (checked, at
/// `next_path`). `later_evidence(x)` searches the segments after this one
/// for a frame proving entry `x` durable ([`evidence_in_segment`]).
///
/// | facts | verdict |
/// |---|---|
/// | successor's header does not say [`SegmentHeader::predecessor_unsynced`] | as [`judge_end`] for a non-final segment: `Corrupt` (`Unsealed`, `BadFrame`); the segment was durable before its successor was created, or a barrier cleared the flag after it was |
/// | a valid frame of a later epoch at the walk's position | `Corrupt` (`BadFrame`) |
/// | flag set, the walk expects the successor's first entry | `SealLost` (@D1) |
/// | flag set, the walk expects an id past the successor's first entry | `Corrupt` (`EntryIdGap` at the successor's first-entry field) |
/// | flag set, entries missing, a later frame (in this segment or a later one) proves the position durable | `Corrupt` (`BelowDurablePoint`; evidence in a later segment is `DurableInLaterSegment`) |
/// | flag set, entries missing, no such proof | `LogEnds` (@D2; torn or clean as for a final segment) |
pub(crate) fn judge_unsealed(
    buf: &[u8],
    c: &Cursor,
    end: End,
    path: &str,
    next: &SegmentHeader,
    next_path: &str,
    later_evidence: &mut dyn FnMut(u64) -> Result<Option<(SegmentId, u64)>>,
) -> Result<Unsealed> {
    if end == End::Later || !next.predecessor_unsynced {
        judge_end(buf, c, end, false, path)?;
        unreachable!("a non-final segment's end is an error unless its successor says otherwise");
    }
    let first = next.first_entry.0;
    if c.next == first {
        return Ok(Unsealed::SealLost);
    }
    if c.next > first {
        return Err(Error::corrupt(
            next_path,
            HEADER_FIRST_ENTRY_AT,
            CorruptKind::EntryIdGap {
                expected: c.next,
                found: first,
            },
        ));
    }
    let corrupt = |kind| Error::corrupt(path, c.off as u64, kind);
    if let Some(q) = durable_evidence(buf, c.off, c.next, c.epoch, usize::MAX) {
        return Err(corrupt(CorruptKind::BelowDurablePoint {
            evidence: q as u64,
        }));
    }
    if let Some((segment, offset)) = later_evidence(c.next)? {
        return Err(corrupt(CorruptKind::DurableInLaterSegment {
            segment: segment.0,
            evidence: offset,
        }));
    }
    Ok(Unsealed::LogEnds(match end {
        End::Torn(_) => EndVerdict::Torn,
        _ => EndVerdict::Clean,
    }))
}

/// Offset of a valid frame in segment `buf` whose durable watermark reaches
/// entry `x`: proof that `x` was durable before the frame was written.
/// Every frame of a later segment belongs to a later epoch, so only
/// watermarks count here (resume markers carry one too).
pub(crate) fn evidence_in_segment(buf: &[u8], x: u64) -> Option<usize> {
    let mut off = SEGMENT_HEADER_LEN;
    while off.saturating_add(FRAME_HEADER_LEN) <= buf.len() {
        if plausible(buf, off) {
            if let Slot::Frame { header, .. } = decode_slot(buf, off) {
                if header.durable_watermark().is_some_and(|w| w >= x) {
                    return Some(off);
                }
            }
        }
        off += FRAME_ALIGN;
    }
    None
}

/// [`evidence_in_segment`] over the segments `ids` of `wal_dir`, in order:
/// the first segment and offset proving entry `x` durable. Files that cannot
/// be read are errors; headers are not judged here (the walk judges them
/// when it gets there).
///
/// A header is proof too: `ids` follow a segment that ended early, and the
/// first of them is its successor, whose flag said it was not yet durable.
/// Any later one whose own header (checking out, naming its id) has the
/// flag clear was written once its predecessor was durable, and barriers
/// make waiting segments durable oldest first, so everything before it was
/// durable: `x` included (offset 0, the header). Without this, one lost or
/// misdirected write of the successor's rewritten header (its flag back to
/// set) landing in the segment that ended early would make damage read as
/// a deferred rotation that never became durable.
pub(crate) fn evidence_in_segments(
    dir: &dyn Directory,
    wal_dir: &str,
    ids: &[SegmentId],
    x: u64,
) -> Result<Option<(SegmentId, u64)>> {
    for (i, &id) in ids.iter().enumerate() {
        let map = dir.map_read(&segment_path(wal_dir, id))?;
        if i > 0 {
            if let Ok(h) = SegmentHeader::decode(&map) {
                if h.segment == id && !h.predecessor_unsynced {
                    return Ok(Some((id, 0)));
                }
            }
        }
        if let Some(off) = evidence_in_segment(&map, x) {
            return Ok(Some((id, off as u64)));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// The recycle pool

/// Checks a pooled file before zerodur relies on it (its epoch) or reuses
/// it: it must be a segment zerodur retired, with its own length and a
/// header naming the id in its file name (@P1), or a later id (@P2: a
/// rotation wrote the new header into it, and the power failed before its
/// rename to the new name was durable; nothing was appended into it, since
/// appends wait for that rename). A pooled file holds what a sealed segment
/// held, made durable before its retirement, so a crash cannot damage it
/// otherwise: anything else is damage or a foreign file, and is never
/// overwritten.
pub(crate) fn check_pool_file(buf: &[u8], id: SegmentId, path: &str) -> Result<SegmentHeader> {
    match SegmentHeader::decode(buf) {
        Ok(h) if h.segment > id && h.segment_len == buf.len() as u64 => Ok(h),
        _ => check_header(buf, id, path),
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::{durable_lag, FrameHeader, KIND_SEAL};
    use super::super::EntryId;
    use super::*;

    fn header(id: u64, first: u64, epoch: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let h = SegmentHeader {
            segment: SegmentId(id),
            first_entry: EntryId(first),
            epoch,
            segment_len: len as u64,
            created_ms: 0,
            predecessor_unsynced: false,
        };
        b[..SEGMENT_HEADER_LEN].copy_from_slice(&h.encode());
        b
    }

    fn put_frame(b: &mut [u8], off: usize, kind: u8, id: u64, epoch: u64, durable: u64) {
        let fh = FrameHeader {
            len: 0,
            kind,
            entry: EntryId(id),
            epoch,
            durable_lag: durable_lag(id, durable),
        };
        b[off..off + FRAME_HEADER_LEN].copy_from_slice(&fh.encode(&[]));
    }

    fn pos(id: u64, is_final: bool, prev: Option<(u64, u64, u64)>) -> Position {
        Position {
            id: SegmentId(id),
            is_final,
            prev: prev.map(|(header_epoch, seal, seal_epoch)| Predecessor {
                header_epoch,
                seal: Some((seal, seal_epoch)),
            }),
        }
    }

    #[test]
    fn listing_breaks_at_the_first_gap_or_a_pool_without_segments() {
        let listing = |segs: &[u64], pool: &[u64]| Listing {
            segments: segs.iter().map(|&s| SegmentId(s)).collect(),
            pool: pool.iter().map(|&s| SegmentId(s)).collect(),
        };
        assert_eq!(listing_break(&listing(&[], &[]), "w"), None);
        assert_eq!(listing_break(&listing(&[4, 5, 6], &[3]), "w"), None);
        let gap = listing_break(&listing(&[4, 5, 8, 10], &[]), "w").unwrap();
        assert_eq!(
            (gap.consecutive, gap.path.as_str(), gap.missing),
            (2, "w/00000000000000000008.seg", 6)
        );
        assert!(matches!(
            gap.error(),
            Error::Corrupt {
                offset: 0,
                kind: CorruptKind::MissingSegment { segment: 6 },
                ..
            }
        ));
        let pool_only = listing_break(&listing(&[], &[2, 3]), "w").unwrap();
        assert_eq!(
            (
                pool_only.consecutive,
                pool_only.path.as_str(),
                pool_only.missing
            ),
            (0, "w/00000000000000000003.free", 4)
        );
    }

    #[test]
    fn born_needs_name_length_first_id_and_a_newer_epoch() {
        let b = header(2, 10, 5, 8192);
        let p = pos(2, true, Some((3, 10, 4)));
        assert!(matches!(judge_header(&b, &p, "s"), Ok(Birth::Born(_))));
        let gap = pos(2, true, Some((3, 11, 4)));
        assert!(matches!(
            judge_header(&b, &gap, "s"),
            Err(Error::Corrupt {
                kind: CorruptKind::EntryIdGap { .. },
                offset: 24,
                ..
            })
        ));
        let old = pos(2, true, Some((3, 10, 5)));
        assert!(matches!(
            judge_header(&b, &old, "s"),
            Err(Error::Corrupt {
                kind: CorruptKind::EpochRegression {
                    previous: 5,
                    found: 5
                },
                ..
            })
        ));
        let cut = &b[..2048];
        assert!(matches!(
            judge_header(cut, &p, "s"),
            Err(Error::Corrupt {
                kind: CorruptKind::LengthMismatch { .. },
                ..
            })
        ));
    }

    #[test]
    fn unborn_only_for_a_final_segment_and_only_in_crash_shapes() {
        let after = pos(2, true, Some((3, 10, 4)));
        assert_eq!(
            judge_header(&[], &after, "s").unwrap(),
            Birth::Unborn(Unborn::Empty)
        );
        assert_eq!(
            judge_header(&[0; 4096], &after, "s").unwrap(),
            Birth::Unborn(Unborn::Zeros)
        );
        // Not final, or a sole segment other than a new log's first: damage.
        assert!(judge_header(&[0; 4096], &pos(2, false, Some((3, 10, 4))), "s").is_err());
        assert!(judge_header(&[0; 4096], &pos(7, true, None), "s").is_err());
        assert!(judge_header(&[], &pos(1, true, None), "s").is_ok());
        // A zeroed header over data.
        let mut z = vec![0u8; 4096];
        z[1000] = 1;
        assert!(matches!(
            judge_header(&z, &after, "s"),
            Err(Error::Corrupt {
                kind: CorruptKind::BadHeader(_),
                ..
            })
        ));
    }

    #[test]
    fn recycled_unborn_needs_an_older_header_and_no_newer_frame() {
        let after = pos(5, true, Some((9, 100, 9)));
        let mut old = header(2, 40, 3, 8192);
        put_frame(&mut old, 64, KIND_ENTRY, 40, 3, 39);
        assert_eq!(
            judge_header(&old, &after, "s").unwrap(),
            Birth::Unborn(Unborn::Recycled)
        );
        // A frame of a life after the predecessor's: the header was damaged
        // under live data.
        let mut live = old.clone();
        put_frame(&mut live, 256, KIND_ENTRY, 100, 10, 99);
        assert!(judge_header(&live, &after, "s").is_err());
        // A header of a newer epoch than the predecessor's is not an old life.
        let newer = header(2, 40, 9, 8192);
        assert!(judge_header(&newer, &after, "s").is_err());
    }

    #[test]
    fn ends_follow_the_table() {
        let mut b = header(1, 1, 5, 8192);
        let h = SegmentHeader::decode(&b).unwrap();
        let mut c = Cursor::new(&h);
        c.off = 128;
        c.next = 3;
        assert_eq!(
            judge_end(&b, &c, End::Zero, true, "s").unwrap(),
            EndVerdict::Clean
        );
        assert_eq!(
            judge_end(&b, &c, End::Torn("x"), true, "s").unwrap(),
            EndVerdict::Torn
        );
        assert!(judge_end(&b, &c, End::Zero, false, "s").is_err());
        assert!(judge_end(&b, &c, End::Later, true, "s").is_err());
        // A later frame written after entry 3 was durable.
        put_frame(&mut b, 4096, KIND_SEAL, 9, 5, 3);
        for end in [End::Zero, End::Stale, End::Torn("x")] {
            assert!(
                matches!(
                    judge_end(&b, &c, end, true, "s"),
                    Err(Error::Corrupt {
                        kind: CorruptKind::BelowDurablePoint { evidence: 4096 },
                        offset: 128,
                        ..
                    })
                ),
                "{end:?}"
            );
        }
    }

    #[test]
    fn unsealed_ends_follow_the_table() {
        let b = header(1, 1, 5, 8192);
        let h = SegmentHeader::decode(&b).unwrap();
        let mut c = Cursor::new(&h);
        c.off = 128;
        c.next = 3;
        let next = |first: u64, flagged: bool| SegmentHeader {
            segment: SegmentId(2),
            first_entry: EntryId(first),
            epoch: 6,
            segment_len: 8192,
            created_ms: 0,
            predecessor_unsynced: flagged,
        };
        let none = &mut |_| Ok(None);
        let judge = |end, n: &SegmentHeader, later: &mut dyn FnMut(u64) -> Result<_>| {
            judge_unsealed(&b, &c, end, "s", n, "n", later)
        };
        // No flag: everything before the successor was durable.
        assert!(matches!(
            judge(End::Zero, &next(3, false), none),
            Err(Error::Corrupt {
                kind: CorruptKind::Unsealed,
                ..
            })
        ));
        // Flag set: the seal alone missing, the log goes on.
        assert_eq!(
            judge(End::Zero, &next(3, true), none).unwrap(),
            Unsealed::SealLost
        );
        // An id the successor says it holds.
        assert!(matches!(
            judge(End::Zero, &next(2, true), none),
            Err(Error::Corrupt {
                kind: CorruptKind::EntryIdGap {
                    expected: 3,
                    found: 2
                },
                ..
            })
        ));
        // Entries missing, nothing proves them durable: the log ends here.
        assert_eq!(
            judge(End::Zero, &next(7, true), none).unwrap(),
            Unsealed::LogEnds(EndVerdict::Clean)
        );
        assert_eq!(
            judge(End::Torn("x"), &next(7, true), none).unwrap(),
            Unsealed::LogEnds(EndVerdict::Torn)
        );
        // A later epoch where a frame was expected is damage, flag or not.
        assert!(judge(End::Later, &next(7, true), none).is_err());
        // Proof in a later segment.
        let mut asked = Vec::new();
        let mut later = |x| {
            asked.push(x);
            Ok(Some((SegmentId(3), 640)))
        };
        assert!(matches!(
            judge(End::Zero, &next(7, true), &mut later),
            Err(Error::Corrupt {
                kind: CorruptKind::DurableInLaterSegment {
                    segment: 3,
                    evidence: 640
                },
                offset: 128,
                ..
            })
        ));
        assert_eq!(asked, [3]);
        // Proof in the rest of this segment, past any window.
        let mut far = b.clone();
        put_frame(&mut far, 6000, KIND_SEAL, 9, 5, 3);
        assert!(matches!(
            judge_unsealed(&far, &c, End::Zero, "s", &next(7, true), "n", none),
            Err(Error::Corrupt {
                kind: CorruptKind::BelowDurablePoint { evidence: 6000 },
                ..
            })
        ));
    }

    #[test]
    fn evidence_in_a_segment_is_a_valid_frame_whose_watermark_covers_the_id() {
        let mut b = header(2, 7, 6, 8192);
        put_frame(&mut b, 64, KIND_ENTRY, 7, 6, 2);
        assert_eq!(evidence_in_segment(&b, 3), None);
        put_frame(&mut b, 96, KIND_ENTRY, 8, 6, 4);
        assert_eq!(evidence_in_segment(&b, 3), Some(96));
        // A damaged frame proves nothing.
        b[100] ^= 1;
        assert_eq!(evidence_in_segment(&b, 3), None);
    }

    #[test]
    fn a_segment_shorter_than_the_smallest_written_is_a_bad_header() {
        let b = header(1, 1, 5, 4096);
        assert!(matches!(
            check_header(&b, SegmentId(1), "s"),
            Err(Error::Corrupt {
                kind: CorruptKind::BadHeader(_),
                offset: 40,
                ..
            })
        ));
    }
}
