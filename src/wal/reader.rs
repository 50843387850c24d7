//! Zero-copy replay. [`WalReader`] opens a WAL read-only (no lock, no writes:
//! it can run beside a live writer) and walks its segments, handing out
//! payloads borrowed from read-only mappings.

use std::ops::Deref;
use std::sync::Arc;

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::{Archive, Portable};

use super::rules::{
    self, Birth, EndVerdict, Listing, ListingBreak, Position, Predecessor, Unsealed,
};
use super::segment::{Cursor, End, Step};
use super::{EntryId, ReadMode, SegmentId};
use crate::directory::{Directory, ReadMap};
use crate::error::{CorruptKind, Error, Result};

/// A read-only view of a WAL for replay.
///
/// Opening lists the segment files and checks that their ids are
/// consecutive; replay then checks every header, frame, seal and entry id.
#[derive(Debug, Clone)]
pub struct WalReader {
    dir: Arc<dyn Directory>,
    wal_dir: String,
    segments: Vec<SegmentId>,
    /// A break in the listing after `segments` (only from
    /// [`WalReader::from_listing`]): the walk reports it when it gets there,
    /// and no segment before it is final.
    gap: Option<ListingBreak>,
    mode: ReadMode,
}

/// What a replay saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReplaySummary {
    /// Entries handed to the caller.
    pub entries: u64,
    /// The last entry in the log (handed out or skipped), if any.
    pub last: Option<EntryId>,
    /// Whether the log ended in a torn or garbage tail (best-effort mode).
    pub torn_tail: bool,
    /// The id the next appended entry will get (where the valid log ends),
    /// or `None` for a log with no segment.
    pub next_entry: Option<EntryId>,
}

impl WalReader {
    /// Opens the WAL in subdirectory `wal_dir` of `dir` for reading.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming `wal_dir` if the folder does not exist (a
    /// misspelled folder is never read as an empty log); `Corrupt` with
    /// [`CorruptKind::MissingSegment`] if the live segments' ids are not
    /// consecutive, or if recycled files exist without any live segment.
    pub fn open(dir: Arc<dyn Directory>, wal_dir: &str, mode: ReadMode) -> Result<WalReader> {
        let segments = rules::list_wal(&*dir, wal_dir)?.segments;
        Ok(WalReader {
            dir,
            wal_dir: wal_dir.to_owned(),
            segments,
            gap: None,
            mode,
        })
    }

    /// A reader over `listing` (from [`rules::read_listing`]) that reports a
    /// break in it ([`rules::listing_break`]) where the walk reaches it,
    /// instead of at open: the segments before the break are walked as
    /// non-final ones, then the walk fails with the break's error. For
    /// salvage, which keeps what comes before the first error.
    pub(crate) fn from_listing(
        dir: Arc<dyn Directory>,
        wal_dir: &str,
        mode: ReadMode,
        listing: &Listing,
    ) -> WalReader {
        let gap = rules::listing_break(listing, wal_dir);
        let n = gap
            .as_ref()
            .map_or(listing.segments.len(), |g| g.consecutive);
        WalReader {
            dir,
            wal_dir: wal_dir.to_owned(),
            segments: listing.segments[..n].to_vec(),
            gap,
            mode,
        }
    }

    /// The ids of the segment files, oldest first.
    pub fn segment_ids(&self) -> &[SegmentId] {
        &self.segments
    }

    /// Calls `f` with every entry from `from` on (from the start if `None`),
    /// in id order, each payload borrowed from the mapping.
    ///
    /// With `from = Some(id)`, a log whose first entry is after `id` is
    /// [`CorruptKind::LogStartsTooLate`].
    pub fn replay<F>(&self, from: Option<EntryId>, mut f: F) -> Result<ReplaySummary>
    where
        F: FnMut(EntryId, &[u8]) -> Result<()>,
    {
        let mut w = Walker::new(self, from);
        while let Some((id, (a, b))) = w.next()? {
            f(id, &w.map()[a..b])?;
        }
        Ok(w.summary)
    }

    /// Like [`replay`](WalReader::replay), with each payload validated by
    /// rkyv's checked `access` and handed over as `&Archived<E>`: no
    /// deserialization, no copy. A payload that fails validation is
    /// [`Error::Validation`] naming the segment.
    pub fn replay_archived<E, F>(&self, from: Option<EntryId>, mut f: F) -> Result<ReplaySummary>
    where
        E: Archive,
        E::Archived: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
        F: FnMut(EntryId, &E::Archived) -> Result<()>,
    {
        let mut w = Walker::new(self, from);
        while let Some((id, (a, b))) = w.next()? {
            let archived = access::<E>(&w.map()[a..b], w.path(), id)?;
            f(id, archived)?;
        }
        Ok(w.summary)
    }

    /// An iterator over the entries from `from` on. Each [`Entry`] keeps its
    /// segment's mapping alive and derefs to the payload bytes.
    pub fn entries(&self, from: Option<EntryId>) -> Entries<'_> {
        Entries {
            walker: Walker::new(self, from),
            failed: false,
        }
    }
}

/// Validates `bytes` as an archived `E`.
pub(crate) fn access<'b, E>(bytes: &'b [u8], path: &str, id: EntryId) -> Result<&'b E::Archived>
where
    E: Archive,
    E::Archived: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    rkyv::access::<E::Archived, rancor::Error>(bytes).map_err(|e| Error::Validation {
        path: path.into(),
        message: format!("entry {id}: {e}"),
    })
}

/// An entry handed out by [`Entries`]: its id and its payload, borrowed from
/// the segment mapping it keeps alive.
#[derive(Debug, Clone)]
pub struct Entry {
    id: EntryId,
    file: Arc<SegmentFile>,
    range: (usize, usize),
}

/// A mapped segment and its path, shared by the entries borrowed from it.
#[derive(Debug)]
struct SegmentFile {
    map: ReadMap,
    path: String,
}

impl Entry {
    /// The entry's id.
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.file.map[self.range.0..self.range.1]
    }

    /// The payload as a checked `&Archived<E>`.
    pub fn archived<E>(&self) -> Result<&E::Archived>
    where
        E: Archive,
        E::Archived: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        access::<E>(self.bytes(), &self.file.path, self.id)
    }
}

impl Deref for Entry {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Iterator over [`Entry`]s, from [`WalReader::entries`]. After an error it
/// yields nothing more.
#[derive(Debug)]
pub struct Entries<'r> {
    walker: Walker<'r>,
    failed: bool,
}

impl Entries<'_> {
    /// What the iteration has seen so far (complete once it returned `None`).
    pub fn summary(&self) -> ReplaySummary {
        self.walker.summary
    }

    /// The id the walk expects next: where the entries handed out so far
    /// end, also after an error (`None` if no header read so far names it).
    pub(crate) fn expected_next(&self) -> Option<EntryId> {
        self.walker.expected_next()
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        match self.walker.next() {
            Ok(Some((id, range))) => Some(Ok(Entry {
                id,
                file: Arc::clone(&self.walker.open.as_ref().expect("open segment").file),
                range,
            })),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[derive(Debug)]
struct OpenSegment {
    file: Arc<SegmentFile>,
    cursor: Cursor,
    header_epoch: u64,
    is_final: bool,
}

/// The replay state machine across segments.
#[derive(Debug)]
struct Walker<'r> {
    reader: &'r WalReader,
    from: Option<u64>,
    idx: usize,
    open: Option<OpenSegment>,
    /// What the segment before the next one to open said about it.
    prev: Option<Predecessor>,
    done: bool,
    summary: ReplaySummary,
}

impl<'r> Walker<'r> {
    fn new(reader: &'r WalReader, from: Option<EntryId>) -> Walker<'r> {
        Walker {
            reader,
            from: from.map(|f| f.0),
            idx: 0,
            open: None,
            prev: None,
            done: false,
            summary: ReplaySummary::default(),
        }
    }

    fn map(&self) -> &[u8] {
        self.open.as_ref().map_or(&[], |o| &o.file.map[..])
    }

    fn path(&self) -> &str {
        self.open.as_ref().map_or("", |o| &o.file.path)
    }

    /// See [`Entries::expected_next`].
    fn expected_next(&self) -> Option<EntryId> {
        match &self.open {
            Some(o) => Some(EntryId(o.cursor.next)),
            None => self.prev.and_then(|p| p.seal).map(|(id, _)| EntryId(id)),
        }
    }

    /// Whether segment `idx` is the final one of the log: the newest, with
    /// no break in the listing after it.
    fn is_final(&self, idx: usize) -> bool {
        idx + 1 == self.reader.segments.len() && self.reader.gap.is_none()
    }

    fn segment_path(&self, idx: usize) -> String {
        rules::segment_path(&self.reader.wal_dir, self.reader.segments[idx])
    }

    /// The next entry to hand out and its payload range in [`Walker::map`].
    fn next(&mut self) -> Result<Option<(EntryId, (usize, usize))>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.open.is_none() {
                if self.idx >= self.reader.segments.len() {
                    self.done = true;
                    if let Some(gap) = &self.reader.gap {
                        return Err(gap.error());
                    }
                    continue;
                }
                match self.open_segment(self.idx)? {
                    Some(o) => self.open = Some(o),
                    None => {
                        // An unborn final segment: the log ends at the seal
                        // before it (or is empty).
                        let seal = self.prev.and_then(|p| p.seal).map(|(id, _)| EntryId(id));
                        self.summary.next_entry = seal;
                        self.done = true;
                    }
                }
                continue;
            }
            let o = self.open.as_mut().expect("checked above");
            let step = o.cursor.step(&o.file.map).map_err(|d| Error::Corrupt {
                path: o.file.path.clone().into(),
                offset: d.offset,
                kind: d.kind,
            })?;
            match step {
                Step::Entry { id, payload } => {
                    self.summary.last = Some(id);
                    if self.from.is_some_and(|f| id.0 < f) {
                        continue;
                    }
                    self.summary.entries += 1;
                    return Ok(Some((id, payload)));
                }
                Step::Sealed { next } => {
                    if o.is_final {
                        self.summary.next_entry = Some(next);
                        self.done = true;
                    } else {
                        self.prev = Some(Predecessor {
                            header_epoch: o.header_epoch,
                            seal: Some((next.0, o.cursor.epoch)),
                        });
                        self.idx += 1;
                        self.open = None;
                    }
                }
                Step::End(end) => {
                    if !o.is_final && self.seal_lost(end)? {
                        continue;
                    }
                    self.finish_segment(end, true)?;
                    let o = self.open.as_ref().expect("open segment");
                    self.summary.next_entry = Some(EntryId(o.cursor.next));
                    self.done = true;
                }
            }
        }
    }

    /// The open segment is not the final one, and its frames ended with
    /// `end` before its seal: judged by [`rules::judge_unsealed`] against its
    /// successor's header (or as the final segment, if the successor was
    /// never born). `true` if only the seal is missing and the walk moved on
    /// to the successor; `false` if the log ends here (and
    /// [`Walker::finish_segment`] is next); an error for damage.
    fn seal_lost(&mut self, end: End) -> Result<bool> {
        let o = self.open.as_ref().expect("open segment");
        let next_idx = self.idx + 1;
        let next_path = self.segment_path(next_idx);
        let next_map = self.reader.dir.map_read(&next_path)?;
        let pos = Position {
            id: self.reader.segments[next_idx],
            is_final: self.is_final(next_idx),
            prev: Some(Predecessor {
                header_epoch: o.header_epoch,
                seal: None,
            }),
        };
        let next = match rules::judge_header(&next_map, &pos, &next_path)? {
            Birth::Born(h) => h,
            // Its rotation never finished: this segment is the final one.
            Birth::Unborn(_) => return Ok(false),
        };
        let reader = self.reader;
        let later = &reader.segments[next_idx..];
        let verdict = rules::judge_unsealed(
            &o.file.map,
            &o.cursor,
            end,
            &o.file.path,
            &next,
            &next_path,
            &mut |x| rules::evidence_in_segments(&*reader.dir, &reader.wal_dir, later, x),
        )?;
        match verdict {
            Unsealed::SealLost => {
                self.prev = Some(Predecessor {
                    header_epoch: o.header_epoch,
                    seal: Some((o.cursor.next, o.cursor.epoch)),
                });
                self.idx += 1;
                self.open = None;
                Ok(true)
            }
            Unsealed::LogEnds(_) => Ok(false),
        }
    }

    /// The valid frames of the open segment ended with `end`: the end of
    /// the log or damage ([`rules::judge_end`] decides; `as_final`: judge it
    /// as the final segment, which [`Walker::seal_lost`] decided for an
    /// earlier one).
    fn finish_segment(&mut self, end: End, as_final: bool) -> Result<()> {
        let o = self.open.as_ref().expect("open segment");
        let verdict = rules::judge_end(&o.file.map, &o.cursor, end, as_final, &o.file.path)?;
        if verdict == EndVerdict::Torn {
            if self.reader.mode == ReadMode::Strict {
                return Err(Error::corrupt(
                    o.file.path.clone(),
                    o.cursor.off as u64,
                    CorruptKind::TornTail,
                ));
            }
            self.summary.torn_tail = true;
        }
        Ok(())
    }

    /// Maps segment `idx` and judges its header ([`rules::judge_header`]).
    /// `None` when it is a final segment that was never born (a crash
    /// during rotation). With a start id, skips whole segments that end
    /// before it, judged by the next header; each file is mapped once.
    fn open_segment(&mut self, mut idx: usize) -> Result<Option<OpenSegment>> {
        let mut mapped = None;
        loop {
            let path = self.segment_path(idx);
            let map = match mapped.take() {
                Some(map) => map,
                None => self.reader.dir.map_read(&path)?,
            };
            let is_final = self.is_final(idx);
            let pos = Position {
                id: self.reader.segments[idx],
                is_final,
                prev: self.prev,
            };
            let h = match rules::judge_header(&map, &pos, &path)? {
                Birth::Born(h) => h,
                Birth::Unborn(_) => return Ok(None),
            };
            if self.prev.is_none() {
                if let Some(f) = self.from.filter(|&f| f < h.first_entry.0) {
                    return Err(Error::corrupt(
                        path,
                        24,
                        CorruptKind::LogStartsTooLate {
                            needed: f,
                            first: h.first_entry.0,
                        },
                    ));
                }
            }
            // Skip whole segments that end before `from`, using the next header.
            let has_next = idx + 1 < self.reader.segments.len();
            if let (Some(f), true) = (self.from, has_next) {
                let next_path = self.segment_path(idx + 1);
                let next = self.reader.dir.map_read(&next_path)?;
                if let Ok(nh) =
                    rules::check_header(&next, self.reader.segments[idx + 1], &next_path)
                {
                    if nh.first_entry.0 <= f
                        && nh.first_entry.0 >= h.first_entry.0
                        && nh.epoch > h.epoch
                    {
                        // The skipped segment's seal is not read: the next
                        // header is checked against its header's epoch.
                        self.prev = Some(Predecessor {
                            header_epoch: h.epoch,
                            seal: None,
                        });
                        self.idx += 1;
                        idx += 1;
                        mapped = Some(next);
                        continue;
                    }
                }
            }
            map.advise_sequential();
            return Ok(Some(OpenSegment {
                file: Arc::new(SegmentFile { map, path }),
                cursor: Cursor::new(&h),
                header_epoch: h.epoch,
                is_final,
            }));
        }
    }
}
