//! Zero-copy replay. [`WalReader`] opens a WAL read-only (no lock, no writes:
//! it can run beside a live writer) and walks its segments, handing out
//! payloads borrowed from read-only mappings.

use std::ops::Deref;
use std::sync::Arc;

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::{Archive, Portable};

use super::format::{
    decode_slot, FileName, HeaderError, SegmentHeader, Slot, KIND_ENTRY, KIND_ENTRY_CONT,
    SEGMENT_HEADER_LEN,
};
use super::segment::{durable_evidence, Cursor, End, Step, ZERO_EVIDENCE_WINDOW_BYTES};
use super::{EntryId, ReadMode, SegmentId};
use crate::directory::path::join;
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
    /// Opens the WAL in subdirectory `wal_dir` of `dir` for reading. A missing
    /// directory is an empty log.
    pub fn open(dir: Arc<dyn Directory>, wal_dir: &str, mode: ReadMode) -> Result<WalReader> {
        crate::directory::path::check_dir(wal_dir)?;
        let segments = if dir.exists(wal_dir)? {
            list_segments(&*dir, wal_dir)?
        } else {
            Vec::new()
        };
        if let Some(w) = segments.windows(2).find(|w| w[1].0 != w[0].0 + 1) {
            return Err(Error::corrupt(
                join(wal_dir, &FileName::Segment(w[1]).render()),
                0,
                CorruptKind::MissingSegment {
                    segment: w[0].0 + 1,
                },
            ));
        }
        Ok(WalReader {
            dir,
            wal_dir: wal_dir.to_owned(),
            segments,
            mode,
        })
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

fn list_segments(dir: &dyn Directory, wal_dir: &str) -> Result<Vec<SegmentId>> {
    let mut ids: Vec<SegmentId> = dir
        .list(wal_dir)?
        .iter()
        .filter_map(|n| match FileName::parse(n) {
            Some(FileName::Segment(id)) => Some(id),
            _ => None,
        })
        .collect();
    ids.sort();
    Ok(ids)
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
    is_final: bool,
}

/// The replay state machine across segments.
#[derive(Debug)]
struct Walker<'r> {
    reader: &'r WalReader,
    from: Option<u64>,
    idx: usize,
    open: Option<OpenSegment>,
    /// First entry id the next segment must start with.
    expect: Option<u64>,
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
            expect: None,
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

    fn segment_path(&self, idx: usize) -> String {
        join(
            &self.reader.wal_dir,
            &FileName::Segment(self.reader.segments[idx]).render(),
        )
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
                    continue;
                }
                match self.open_segment(self.idx)? {
                    Some(o) => self.open = Some(o),
                    None => {
                        // An unborn final segment: the log ends at the seal
                        // before it.
                        self.summary.next_entry = Some(EntryId(self.expect.unwrap_or(1)));
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
                        self.expect = Some(next.0);
                        self.idx += 1;
                        self.open = None;
                    }
                }
                Step::End(end) => {
                    self.finish_segment(end)?;
                    let o = self.open.as_ref().expect("open segment");
                    self.summary.next_entry = Some(EntryId(o.cursor.next));
                    self.done = true;
                }
            }
        }
    }

    /// The valid frames of the open segment ended with `end`: decide whether
    /// that is the end of the log or damage.
    fn finish_segment(&mut self, end: End) -> Result<()> {
        let o = self.open.as_ref().expect("open segment");
        let off = o.cursor.off;
        let corrupt = |kind| Error::corrupt(o.file.path.clone(), off as u64, kind);
        if !o.is_final {
            return Err(corrupt(match end {
                End::Torn(why) => CorruptKind::BadFrame(why),
                End::Zero | End::Stale => CorruptKind::Unsealed,
            }));
        }
        let window = match end {
            End::Torn(_) => usize::MAX,
            End::Zero => ZERO_EVIDENCE_WINDOW_BYTES,
            End::Stale => 0,
        };
        if window > 0
            && durable_evidence(&o.file.map, off, o.cursor.next, o.cursor.epoch, window).is_some()
        {
            return Err(corrupt(CorruptKind::BadFrame(
                "damaged frame below the durable point",
            )));
        }
        if let End::Torn(_) = end {
            if self.reader.mode == ReadMode::Strict {
                return Err(corrupt(CorruptKind::TornTail));
            }
            self.summary.torn_tail = true;
        }
        Ok(())
    }

    /// Maps segment `idx` and checks its header. `None` when it is a final
    /// segment that was never born (a crash during rotation). With a start
    /// id, skips whole segments that end before it, judged by the next
    /// header; each file is mapped once.
    fn open_segment(&mut self, mut idx: usize) -> Result<Option<OpenSegment>> {
        let mut mapped = None;
        loop {
            let path = self.segment_path(idx);
            let map = match mapped.take() {
                Some(map) => map,
                None => self.reader.dir.map_read(&path)?,
            };
            let is_final = idx + 1 == self.reader.segments.len();
            let id = self.reader.segments[idx];
            let h = match check_header(&map, id, &path) {
                Ok(h) => h,
                Err(e) if !is_final || !is_unborn(&map, self.expect) => return Err(e),
                Err(_) => return Ok(None),
            };
            match self.expect {
                Some(e) if h.first_entry.0 != e => {
                    return Err(Error::corrupt(
                        path,
                        24,
                        CorruptKind::EntryIdGap {
                            expected: e,
                            found: h.first_entry.0,
                        },
                    ))
                }
                None => {
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
                _ => {}
            }
            // Skip whole segments that end before `from`, using the next header.
            if let (Some(f), false) = (self.from, is_final) {
                let next_path = self.segment_path(idx + 1);
                let next = self.reader.dir.map_read(&next_path)?;
                if let Ok(nh) = check_header(&next, self.reader.segments[idx + 1], &next_path) {
                    if nh.first_entry.0 <= f && nh.first_entry.0 >= h.first_entry.0 {
                        self.expect = Some(nh.first_entry.0);
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
                is_final,
            }));
        }
    }
}

/// Decodes a segment header and checks it belongs to segment `id`.
pub(crate) fn check_header(buf: &[u8], id: SegmentId, path: &str) -> Result<SegmentHeader> {
    let bad = |why| Error::corrupt(path, 0, CorruptKind::BadHeader(why));
    match SegmentHeader::decode(buf) {
        Ok(h) if h.segment != id => Err(bad("segment id does not match the file name")),
        Ok(h) if h.segment_len != buf.len() as u64 => {
            Err(bad("segment length does not match the file"))
        }
        Ok(h) => Ok(h),
        Err(HeaderError::Short) => Err(Error::corrupt(
            path,
            0,
            CorruptKind::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: buf.len() as u64,
            },
        )),
        Err(HeaderError::Magic) => Err(Error::corrupt(path, 0, CorruptKind::BadMagic)),
        Err(HeaderError::Checksum { stored, computed }) => Err(Error::ChecksumMismatch {
            path: path.into(),
            offset: 0,
            expected: stored,
            actual: computed,
        }),
        Err(HeaderError::Version(v)) => Err(Error::UnsupportedVersion {
            path: path.into(),
            found: v,
            supported: super::format::FORMAT_VERSION,
        }),
        Err(HeaderError::Field(why)) => Err(bad(why)),
    }
}

/// Whether a final segment whose header does not check out is one a crash
/// interrupted before it was born (header never made durable, or a recycled
/// file still wearing its old header), rather than a live segment whose
/// header was damaged. A live segment's first slot holds the entry the log
/// expects next.
pub(crate) fn is_unborn(buf: &[u8], expect: Option<u64>) -> bool {
    if matches!(SegmentHeader::decode(buf), Err(HeaderError::Version(_))) {
        return false;
    }
    match decode_slot(buf, SEGMENT_HEADER_LEN) {
        Slot::Frame { header, .. } => {
            !(matches!(header.kind, KIND_ENTRY | KIND_ENTRY_CONT)
                && expect.is_none_or(|e| header.entry.0 == e))
        }
        _ => true,
    }
}
