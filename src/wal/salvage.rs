//! Salvage: the one way zerodur gives up acknowledged entries, and only when
//! asked. [`salvage`] copies the longest provable prefix of a damaged WAL
//! into a new WAL and reports exactly what it left behind.
//!
//! It decides nothing itself: the entries kept are exactly those that
//! [`WalReader`] hands out in [`ReadMode::BestEffort`] before it stops, and
//! the error it stops with (which names the file and the offset) is where
//! salvage stops. The source is only read: no lock, no write, no repair.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::options::SEGMENT_SIZE_BYTES_DEFAULT;
use super::reader::WalReader;
use super::rules::{self, Listing};
use super::{EntryId, ReadMode, SegmentId, Wal, WalOptions};
use crate::directory::path::check_dir;
use crate::directory::Directory;
use crate::error::{Error, Result};

/// Where and how [`salvage`] writes the new WAL. Built with chained setters:
///
/// ```
/// use zerodur::wal::SalvageOptions;
/// let options = SalvageOptions::new("wal-salvaged").segment_size_bytes(16 * 1024 * 1024);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageOptions {
    dir: String,
    segment_size_bytes: Option<u64>,
}

impl SalvageOptions {
    /// The new WAL goes in folder `dir` of the destination
    /// [`Directory`]; that folder must not exist or must hold no segment.
    /// Its segments have the size of the source's largest segment unless
    /// [`segment_size_bytes`](SalvageOptions::segment_size_bytes) says
    /// otherwise.
    ///
    /// ```
    /// use zerodur::wal::SalvageOptions;
    /// let options = SalvageOptions::new("wal-salvaged");
    /// # let _ = options;
    /// ```
    pub fn new(dir: impl Into<String>) -> SalvageOptions {
        SalvageOptions {
            dir: dir.into(),
            segment_size_bytes: None,
        }
    }

    /// Size of the new WAL's segment files (at least 8 KiB, as for
    /// [`WalOptions::segment_size_bytes`]). An entry that does not fit in
    /// one fails the salvage with [`Error::EntryTooLarge`]; the default, the
    /// size of the source's largest segment, always fits.
    ///
    /// ```
    /// use zerodur::wal::SalvageOptions;
    /// let options = SalvageOptions::new("wal-salvaged").segment_size_bytes(8192);
    /// # let _ = options;
    /// ```
    pub fn segment_size_bytes(mut self, bytes: u64) -> SalvageOptions {
        self.segment_size_bytes = Some(bytes);
        self
    }
}

/// What [`salvage`] kept, where it stopped and what it left behind.
///
/// `Display` writes a few lines of prose for an operator; the fields are for
/// programs.
///
/// ```
/// use zerodur::wal::{salvage, SalvageOptions, Wal, WalOptions};
/// use zerodur::MemoryDirectory;
///
/// let src = MemoryDirectory::arc();
/// let wal = Wal::open(src.clone(), WalOptions::new("wal"))?;
/// wal.append(b"a")?;
/// wal.append_durable(b"b")?;
/// wal.close()?;
///
/// let dst = MemoryDirectory::arc();
/// let report = salvage(src, "wal", dst, SalvageOptions::new("wal"))?;
/// assert!(report.clean);
/// assert_eq!((report.kept, report.next_entry.map(|id| id.get())), (2, Some(3)));
/// println!("{report}");
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The source WAL folder.
    pub source: String,
    /// The destination WAL folder.
    pub destination: String,
    /// How many entries were kept (copied to the destination).
    pub kept: u64,
    /// The first entry kept.
    pub first_kept: Option<EntryId>,
    /// The last entry kept.
    pub last_kept: Option<EntryId>,
    /// The id the salvaged WAL gives its next append: the entry after the
    /// last one kept, or, with none kept, the id the source's readable
    /// headers say the log continues at. `None` when no header tells (the
    /// first segment's header is unreadable): then the destination was not
    /// created, since a new log starting at a guessed id could hand out
    /// ids the source already used.
    pub next_entry: Option<EntryId>,
    /// The source's replay ended without an error: every entry replay
    /// yields was kept, and the salvaged WAL is a copy.
    pub clean: bool,
    /// The source's final segment ended in a torn tail: unsynced writes a
    /// crash left in part, which replay ignores too (see
    /// [`ReplaySummary::torn_tail`](super::ReplaySummary::torn_tail)).
    pub torn_tail: bool,
    /// The error replay stopped at, if it did not end cleanly.
    pub stop: Option<SalvageStop>,
    /// Every source segment not wholly salvaged, oldest first: the one
    /// replay stopped in and all after it.
    pub dropped: Vec<DroppedSegment>,
    /// Segment ids missing from the source between the oldest and newest
    /// live segments (their entries were not salvaged).
    pub missing_segments: Vec<SegmentId>,
    /// Entries known to have existed and not salvaged, when a dropped
    /// segment's header tells.
    pub lost: Option<LostEntries>,
}

/// Where [`salvage`] stopped: the error the source's replay stopped with.
///
/// ```
/// # use zerodur::wal::{salvage, SalvageOptions, Wal, WalOptions};
/// # use zerodur::{Directory, MemoryDirectory};
/// let src = MemoryDirectory::arc();
/// let wal = Wal::open(src.clone(), WalOptions::new("wal"))?;
/// wal.append_durable(b"a")?;
/// wal.close()?;
/// // A file that is not a segment where segment 1 should be.
/// let seg = "wal/00000000000000000001.seg";
/// let len = src.len(seg)? as usize;
/// src.atomic_write(seg, &vec![7; len])?;
///
/// let report = salvage(src, "wal", MemoryDirectory::arc(), SalvageOptions::new("wal"))?;
/// let stop = report.stop.expect("stopped");
/// assert_eq!((stop.path.to_str(), stop.offset), (Some(seg), Some(0)));
/// assert_eq!(report.kept, 0);
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SalvageStop {
    /// The file the error names (relative to the source directory's root).
    pub path: PathBuf,
    /// The byte offset the error names, if it names one.
    pub offset: Option<u64>,
    /// The first segment not wholly salvaged: the one `path` names, or,
    /// when a segment is missing, the missing one.
    pub segment: Option<SegmentId>,
    /// The error itself, as replay returned it.
    pub error: Arc<Error>,
}

/// A source segment that [`salvage`] did not copy in full.
///
/// ```
/// use zerodur::wal::{salvage, SalvageOptions, Wal, WalOptions};
/// use zerodur::{Directory, MemoryDirectory};
///
/// let src = MemoryDirectory::arc();
/// let wal = Wal::open(src.clone(), WalOptions::new("wal").segment_size_bytes(8192))?;
/// for _ in 0..60 {
///     wal.append(&[1; 300])?;
/// }
/// wal.close()?;
/// // Zero the header of segment 2.
/// let seg2 = "wal/00000000000000000002.seg";
/// let mut bytes = src.read(seg2)?;
/// bytes[..64].fill(0);
/// src.atomic_write(seg2, &bytes)?;
///
/// let report = salvage(src, "wal", MemoryDirectory::arc(), SalvageOptions::new("wal"))?;
/// let first = &report.dropped[0];
/// assert_eq!((first.path.as_str(), first.from_offset, first.bytes), (seg2, 0, 8192));
/// assert_eq!(first.first_entry, None); // its header is unreadable
/// assert!(report.dropped[1].first_entry.is_some());
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedSegment {
    /// Its id.
    pub segment: SegmentId,
    /// Its path (relative to the source directory's root).
    pub path: String,
    /// The first entry id its header claims, if the header decodes (magic,
    /// version, CRC) and names this segment.
    pub first_entry: Option<EntryId>,
    /// The first entry id the next segment's header claims: the exclusive
    /// end of this segment's entries, if that header decodes.
    pub end_entry: Option<EntryId>,
    /// The first byte not salvaged: 0 for a whole segment; where the
    /// frames went wrong in the segment replay stopped in.
    pub from_offset: u64,
    /// Bytes from `from_offset` to the end of the file.
    pub bytes: u64,
}

/// Entries that existed in the source and were not salvaged: a dropped
/// segment's header proves that every id before its first existed.
///
/// ```
/// use zerodur::wal::{salvage, SalvageOptions, Wal, WalOptions};
/// use zerodur::{Directory, MemoryDirectory};
///
/// let src = MemoryDirectory::arc();
/// let wal = Wal::open(src.clone(), WalOptions::new("wal").segment_size_bytes(8192))?;
/// for _ in 0..100 {
///     wal.append(&[1; 300])?;
/// }
/// let ranges = wal.segment_ranges()?;
/// wal.close()?;
/// src.remove("wal/00000000000000000002.seg")?;
///
/// let report = salvage(src, "wal", MemoryDirectory::arc(), SalvageOptions::new("wal"))?;
/// // The newest segment's header tells that every entry before it existed.
/// let newest = ranges.last().unwrap();
/// let lost = report.lost.expect("later headers tell");
/// assert_eq!((lost.first, lost.last.next()), (ranges[1].first, newest.first));
/// assert_eq!(lost.segments.0.get(), 2);
/// assert_eq!(lost.segments.1.get(), newest.segment.get() - 1);
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LostEntries {
    /// The first id not salvaged.
    pub first: EntryId,
    /// The last id known to have existed: one before the first id the
    /// newest readable header among the dropped segments claims. More may
    /// have followed in that segment and after it.
    pub last: EntryId,
    /// The first and last segment that held them (including missing ones).
    pub segments: (SegmentId, SegmentId),
}

/// Copies the longest provable prefix of the WAL in folder `src_wal` of
/// `src` into a new WAL described by `options` in `dst`, and reports what
/// was kept and what was dropped. Entry ids are preserved: the new WAL
/// starts at the first kept id and its next append continues after the
/// last.
///
/// This is the only way zerodur gives up acknowledged entries, and only on
/// request: opening, replay and recovery report damage as errors and never
/// shorten a log.
///
/// - The entries kept are exactly those [`WalReader::entries`] hands out in
///   [`ReadMode::BestEffort`] before it stops (a batch all or none); a
///   missing segment stops it where the walk reaches the gap. What a crash
///   leaves (a torn tail) is dropped as replay drops it, and the report is
///   still `clean`.
/// - The source is never modified: it is only read, without its lock.
/// - The new WAL is written, synced and closed before this returns. The
///   report says exactly which source segments, bytes and entries it does
///   not hold.
///
/// ```
/// use zerodur::wal::{salvage, ReadMode, SalvageOptions, Wal, WalOptions, WalReader};
/// use zerodur::{CorruptKind, Directory, Error, MemoryDirectory};
///
/// let src = MemoryDirectory::arc();
/// let wal = Wal::open(src.clone(), WalOptions::new("wal").segment_size_bytes(8192))?;
/// for i in 0..100u32 {
///     wal.append(&[i as u8; 200])?;
/// }
/// wal.close()?;
///
/// // Rot one byte of entry 2's payload in the first (sealed) segment.
/// let seg = "wal/00000000000000000001.seg";
/// let mut bytes = src.read(seg)?;
/// bytes[64 + 240 + 40] ^= 1;
/// src.atomic_write(seg, &bytes)?;
///
/// let dst = MemoryDirectory::arc();
/// let report = salvage(src.clone(), "wal", dst.clone(), SalvageOptions::new("wal"))?;
/// assert!(!report.clean);
/// assert_eq!(report.kept, 1);
/// assert_eq!(report.stop.unwrap().offset, Some(64 + 240));
/// assert_eq!(src.read(seg)?, bytes); // the source is untouched
///
/// // The new WAL holds entry 1 and continues at 2.
/// let wal = Wal::open(dst, WalOptions::new("wal"))?;
/// assert_eq!(wal.next_entry_id().get(), 2);
/// # Ok::<(), zerodur::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::AlreadyExists`] naming the destination folder if it holds a
/// segment or pooled file; [`Error::InvalidArgument`] if the destination is
/// the source folder, inside it, or holds it (same [`Directory`] handle);
/// [`Error::NotFound`] if the source folder does not exist; any error
/// opening or writing the new WAL, such as [`Error::EntryTooLarge`] for an
/// entry larger than its segments hold; an I/O error reading the source
/// (a failed read is not evidence of damage: retry it). Damage in the
/// source is never an error: it is where salvage stops. After an error the
/// destination may hold a partial log: remove it before trying again.
pub fn salvage(
    src: Arc<dyn Directory>,
    src_wal: &str,
    dst: Arc<dyn Directory>,
    options: SalvageOptions,
) -> Result<SalvageReport> {
    let dst_wal = options.dir.as_str();
    check_dir(src_wal)?;
    check_dir(dst_wal)?;
    refuse_same_place(&src, src_wal, &dst, dst_wal)?;
    refuse_existing(&*dst, dst_wal)?;

    let listing = rules::read_listing(&*src, src_wal)?;
    let segment_size = match options.segment_size_bytes {
        Some(s) => s,
        None => largest_segment(&*src, src_wal, &listing)?,
    };
    let reader = WalReader::from_listing(src.clone(), src_wal, ReadMode::BestEffort, &listing);
    let new_wal = |first: EntryId| {
        Wal::open(
            dst.clone(),
            WalOptions::new(dst_wal)
                .segment_size_bytes(segment_size)
                .first_entry_id(first),
        )
    };

    let mut entries = reader.entries(None);
    let mut wal: Option<Wal> = None;
    let (mut kept, mut first_kept, mut last_kept) = (0u64, None, None);
    let stop = loop {
        match entries.next() {
            None => break None,
            Some(Ok(entry)) => {
                let w = match wal {
                    Some(ref w) => w,
                    None => wal.insert(new_wal(entry.id())?),
                };
                let id = w.append(&entry)?;
                // The reader hands out consecutive ids and the new WAL
                // starts at the first: a mismatch is a bug, not damage.
                assert_eq!(id, entry.id(), "salvage must preserve entry ids");
                kept += 1;
                first_kept.get_or_insert(id);
                last_kept = Some(id);
            }
            Some(Err(e)) if stops_replay(&e) => break Some(e),
            Some(Err(e)) => return Err(e),
        }
    };
    let torn_tail = entries.summary().torn_tail;
    // Where the kept entries end: the id the walk expected next.
    let next = match (last_kept, stop.is_some()) {
        (Some(last), _) => Some(last.next()),
        (None, true) => entries.expected_next(),
        (None, false) => Some(entries.summary().next_entry.unwrap_or(EntryId(1))),
    };
    drop(entries);

    // IMPORTANT: everything kept is durable before the report says so.
    let next_entry = match (wal, next) {
        (Some(w), _) => Some(close(w)?),
        (None, Some(n)) => Some(close(new_wal(n)?)?),
        (None, None) => None,
    };

    let mut report = SalvageReport {
        source: src_wal.to_owned(),
        destination: dst_wal.to_owned(),
        kept,
        first_kept,
        last_kept,
        next_entry,
        clean: stop.is_none(),
        torn_tail,
        stop: None,
        dropped: Vec::new(),
        missing_segments: Vec::new(),
        lost: None,
    };
    if let Some(e) = stop {
        describe_loss(&mut report, &*src, src_wal, &listing, e, next)?;
    }
    Ok(report)
}

/// Syncs and closes the new WAL; returns its next id.
fn close(w: Wal) -> Result<EntryId> {
    let next = w.next_entry_id();
    w.close()?;
    Ok(next)
}

/// Whether replay error `e` is a verdict on the source's bytes (salvage
/// stops there) rather than a failure to read them or a misuse (salvage
/// fails).
fn stops_replay(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. } | Error::ChecksumMismatch { .. } | Error::UnsupportedVersion { .. }
    )
}

/// The file and offset a stopping error names.
fn located(e: &Error) -> (PathBuf, Option<u64>) {
    match e {
        Error::Corrupt { path, offset, .. } | Error::ChecksumMismatch { path, offset, .. } => {
            (path.clone(), Some(*offset))
        }
        Error::UnsupportedVersion { path, .. } => (path.clone(), None),
        _ => (PathBuf::new(), None),
    }
}

/// Fills in the stop, the dropped segments, the missing ids and the lost
/// range, from the error replay stopped with and the source's headers.
fn describe_loss(
    report: &mut SalvageReport,
    src: &dyn Directory,
    src_wal: &str,
    listing: &Listing,
    e: Error,
    next: Option<EntryId>,
) -> Result<()> {
    let (path, offset) = located(&e);
    let segs = &listing.segments;
    let at = segs
        .iter()
        .position(|&id| path.as_path() == Path::new(&rules::segment_path(src_wal, id)));
    // The first segment not wholly salvaged, and the first byte of it not
    // salvaged (a header's error loses the whole segment).
    let (first_dropped, stop_segment, from) = match (at, &e) {
        (Some(i), _) => {
            let from = offset
                .filter(|&o| o >= SEGMENT_HEADER_LEN as u64)
                .unwrap_or(0);
            (i, Some(segs[i]), from)
        }
        // A pool with no live segment: nothing is live to drop.
        (None, _) => (segs.len(), None, 0),
    };
    let gap = rules::listing_break(listing, src_wal);
    let stop_segment = match &gap {
        // The walk reached a gap: the first segment not salvaged is the
        // missing one.
        Some(g) if *g.path == *path.to_string_lossy() => Some(SegmentId(g.missing)),
        _ => stop_segment,
    };

    let mut claims = Vec::new();
    for &id in &segs[first_dropped..] {
        let p = rules::segment_path(src_wal, id);
        let bytes = src.map_read(&p)?;
        let claim = SegmentHeader::decode(&bytes)
            .ok()
            .filter(|h| h.segment == id)
            .map(|h| h.first_entry);
        claims.push((id, p, claim, bytes.len() as u64));
    }
    for (k, (id, p, claim, len)) in claims.iter().enumerate() {
        let end_entry = claims
            .get(k + 1)
            .filter(|n| n.0 .0 == id.0 + 1)
            .and_then(|n| n.2);
        let from_offset = if k == 0 { from.min(*len) } else { 0 };
        report.dropped.push(DroppedSegment {
            segment: *id,
            path: p.clone(),
            first_entry: *claim,
            end_entry,
            from_offset,
            bytes: len - from_offset,
        });
    }
    if let (Some(&oldest), Some(&newest)) = (segs.first(), segs.last()) {
        report.missing_segments = (oldest.0..=newest.0)
            .map(SegmentId)
            .filter(|id| segs.binary_search(id).is_err())
            .collect();
    }
    // The newest readable claim beyond the kept entries proves every id
    // before it existed.
    let newest_claim = claims
        .iter()
        .filter_map(|(id, _, claim, _)| claim.map(|c| (c, *id)))
        .max();
    if let (Some(first), Some((claim, seg)), Some(stop_seg)) = (next, newest_claim, stop_segment) {
        if claim > first && seg.0 > stop_seg.0 {
            report.lost = Some(LostEntries {
                first,
                last: EntryId(claim.0 - 1),
                segments: (stop_seg, SegmentId(seg.0 - 1)),
            });
        }
    }
    report.stop = Some(SalvageStop {
        path,
        offset,
        segment: stop_segment,
        error: Arc::new(e),
    });
    Ok(())
}

/// The size of the source's largest segment whose header checks out, or
/// the default: every entry of the source fits in a segment that size.
fn largest_segment(src: &dyn Directory, src_wal: &str, listing: &Listing) -> Result<u64> {
    let mut largest = None;
    for &id in &listing.segments {
        let p = rules::segment_path(src_wal, id);
        if let Ok(h) = rules::check_header(&src.map_read(&p)?, id, &p) {
            largest = largest.max(Some(h.segment_len));
        }
    }
    Ok(largest.unwrap_or(SEGMENT_SIZE_BYTES_DEFAULT))
}

/// `InvalidArgument` if the destination is the source folder, inside it, or
/// holds it, in the same directory handle: salvage never writes into the
/// source.
fn refuse_same_place(
    src: &Arc<dyn Directory>,
    src_wal: &str,
    dst: &Arc<dyn Directory>,
    dst_wal: &str,
) -> Result<()> {
    let same_dir = std::ptr::addr_eq(Arc::as_ptr(src), Arc::as_ptr(dst));
    let nested = |a: &str, b: &str| {
        a.is_empty() || b.is_empty() || a == b || b.starts_with(&format!("{a}/"))
    };
    if same_dir && (nested(src_wal, dst_wal) || nested(dst_wal, src_wal)) {
        return Err(Error::InvalidArgument {
            name: "options",
            reason: format!(
                "the destination `{dst_wal}` overlaps the source `{src_wal}`: salvage never writes into the source"
            ),
        });
    }
    Ok(())
}

/// `AlreadyExists` naming `dst_wal` if it holds a segment or pooled file.
fn refuse_existing(dst: &dyn Directory, dst_wal: &str) -> Result<()> {
    match rules::read_listing(dst, dst_wal) {
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
        Ok(l) if l.segments.is_empty() && l.pool.is_empty() => Ok(()),
        Ok(_) => Err(Error::AlreadyExists {
            path: dst_wal.into(),
        }),
    }
}

impl fmt::Display for SalvageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first_kept, self.last_kept) {
            (Some(a), Some(b)) => write!(
                f,
                "salvaged {} entries ({a}..={b}) from `{}` to `{}`",
                self.kept, self.source, self.destination
            )?,
            _ => write!(f, "salvaged no entries from `{}`", self.source)?,
        }
        match self.next_entry {
            Some(n) if self.kept == 0 => write!(
                f,
                "; `{}` is an empty log whose next append gets id {n}",
                self.destination
            )?,
            Some(n) => write!(f, "; its next append gets id {n}")?,
            None => write!(
                f,
                "; `{}` was not created: no readable header tells which id the log continues at",
                self.destination
            )?,
        }
        if self.clean {
            f.write_str("\nthe source is clean: this is a copy of what replay yields")?;
            if self.torn_tail {
                f.write_str(" (its torn tail, left by a crash, is not part of the log)")?;
            }
        }
        if let Some(stop) = &self.stop {
            write!(f, "\nstopped at: {}", stop.error)?;
        }
        if let Some((d, rest)) = self.dropped.split_first() {
            write!(f, "\nnot salvaged: `{}`", d.path)?;
            if d.from_offset > 0 {
                write!(f, " from offset {}", d.from_offset)?;
            }
            write!(f, " ({} bytes; ", d.bytes)?;
            match (d.first_entry, d.end_entry) {
                (Some(a), Some(e)) if e > a => {
                    write!(f, "its header claims entries {a}..={})", e.get() - 1)?
                }
                (Some(a), _) => write!(f, "its header claims entries from {a})")?,
                (None, _) => f.write_str("its header is unreadable)")?,
            }
            if let (Some(a), Some(b)) = (rest.first(), rest.last()) {
                let bytes: u64 = rest.iter().map(|d| d.bytes).sum();
                write!(
                    f,
                    "\nnot salvaged: {} more segment files, {}..={}, whole ({bytes} bytes)",
                    rest.len(),
                    a.segment,
                    b.segment
                )?;
                let unreadable: Vec<String> = rest
                    .iter()
                    .filter(|d| d.first_entry.is_none())
                    .map(|d| d.segment.to_string())
                    .collect();
                if !unreadable.is_empty() {
                    write!(f, "; unreadable headers: {}", unreadable.join(", "))?;
                }
            }
        }
        if !self.missing_segments.is_empty() {
            let ids: Vec<String> = self
                .missing_segments
                .iter()
                .map(|s| s.to_string())
                .collect();
            write!(f, "\nmissing segments: {}", ids.join(", "))?;
        }
        if let Some(l) = &self.lost {
            write!(
                f,
                "\nentries {}..={} in segments {}..={} were not salvaged (more may have followed)",
                l.first, l.last, l.segments.0, l.segments.1
            )?;
        }
        Ok(())
    }
}
