//! Creating, sealing and resuming segments: what `Wal::open` and rotation do
//! to files. The protocols and their crash analysis are in `FORMAT.md`
//! ("Rotate", "Resume").

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::{
    decode_slot, durable_lag, watermark_at, FrameHeader, SegmentHeader, Slot, FRAME_HEADER_LEN,
    KIND_RESUME, KIND_SEAL, SEAL_RESERVE, SEGMENT_HEADER_LEN, ZERO_SLOT,
};
use super::options::WalOptions;
use super::rules::{self, pool_path, segment_path, Birth, Position, Predecessor, Unsealed};
use super::segment::{first_entry_above, max_epoch_from, Cursor, Step};
use super::writer::Active;
use super::{EntryId, SegmentId};
use crate::directory::{Directory, Region};
use crate::error::{CorruptKind, Error, Result};

/// Writes the seal marker at the tail of `a` and makes the whole segment
/// durable.
pub(super) fn seal(a: &mut Active, next_id: u64, durable: u64) -> Result<()> {
    let end = write_seal(a, next_id, durable)?;
    // IMPORTANT: the seal and every frame before it are durable before
    // anything in the next segment can be acknowledged.
    a.flusher
        .flush_range(a.synced_off as u64, (end - a.synced_off) as u64)?;
    a.synced_off = end;
    Ok(())
}

/// Writes the seal marker at the tail of `a` (not durable yet) and returns
/// where it ends.
pub(super) fn write_seal(a: &mut Active, next_id: u64, durable: u64) -> Result<usize> {
    let header = FrameHeader {
        len: 0,
        kind: KIND_SEAL,
        entry: EntryId(next_id),
        epoch: a.epoch,
        durable_lag: durable_lag(next_id, durable),
    };
    a.region.write_at(a.write_off as u64, &header.encode(&[]))?;
    Ok(a.write_off + FRAME_HEADER_LEN)
}

/// Writes the resume marker a clean resume left for the first append
/// ([`Active::session_marker`]): the session's epoch, for entry `next`, over
/// the marker that ended the log, and makes it durable before any frame of
/// the session is written after it.
pub(super) fn write_session_marker(a: &mut Active, next: u64) -> Result<()> {
    let Some(m) = a.session_marker else {
        return Ok(());
    };
    let marker = FrameHeader {
        len: 0,
        kind: KIND_RESUME,
        entry: EntryId(next),
        epoch: a.epoch,
        durable_lag: durable_lag(next, next - 1),
    };
    a.region.write_at(m as u64, &marker.encode(&[]))?;
    a.flusher.flush_range(m as u64, FRAME_HEADER_LEN as u64)?;
    a.session_marker = None;
    Ok(())
}

/// Writes a resume marker of `epoch` for entry `next` at the tail of `a`,
/// with a zero slot after it, and makes both durable. Called by
/// [`Wal::close`](super::Wal::close) once every entry is durable, so the
/// marker's durable lag of zero is true: it proves every frame before it
/// durable, which lets the next resume skip writing them again.
pub(super) fn write_close_marker(a: &mut Active, next: u64, epoch: u64) -> Result<()> {
    let marker = FrameHeader {
        len: 0,
        kind: KIND_RESUME,
        entry: EntryId(next),
        epoch,
        durable_lag: durable_lag(next, next - 1),
    };
    let at = a.write_off;
    a.region.write_at(at as u64, &marker.encode(&[]))?;
    a.region
        .write_at((at + FRAME_HEADER_LEN) as u64, &ZERO_SLOT)?;
    a.flusher
        .flush_range(at as u64, 2 * FRAME_HEADER_LEN as u64)?;
    a.write_off = at + FRAME_HEADER_LEN;
    a.epoch = epoch;
    Ok(())
}

/// Milliseconds since the Unix epoch: a segment's birth time, stored in its
/// header so `max_segment_age` counts across reopens.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Creating and resuming segments, at open and at rotation.
pub(super) struct Opener<'a> {
    pub(super) dir: &'a dyn Directory,
    pub(super) opts: &'a WalOptions,
    pub(super) pool_epoch: u64,
    /// Pooled files this process did not retire (found at open): their
    /// frames are scanned before reuse, see [`Opener::take_recyclable`].
    pub(super) unscanned_pool: &'a BTreeSet<SegmentId>,
}

impl Opener<'_> {
    /// Makes segment `id` the new active segment, starting at entry `first`
    /// with `epoch`: a recycled file renamed into place, or a new
    /// preallocated one. Durable (header and name) on return.
    /// `predecessor_unsynced`: the segment before it is not durable yet (a
    /// deferred rotation); the header says so until a barrier clears it.
    pub(super) fn create(
        &self,
        id: SegmentId,
        first: u64,
        epoch: u64,
        recycled: Option<(SegmentId, u64)>,
        predecessor_unsynced: bool,
    ) -> Result<Active> {
        let wal_dir = &self.opts.dir;
        let path = segment_path(wal_dir, id);
        let mut epoch = epoch;
        let mut region = match recycled {
            Some((old, floor)) => {
                let from = pool_path(wal_dir, old);
                // Above every frame the recycled file holds (see
                // `take_recyclable`).
                epoch = epoch.max(floor);
                self.dir.rename(&from, &path)?;
                self.dir.open_region(&path)?
            }
            None => self
                .dir
                .create_region(&path, self.opts.segment_size_bytes)?,
        };
        let created_ms = now_ms();
        let header = SegmentHeader {
            segment: id,
            first_entry: EntryId(first),
            epoch,
            segment_len: region.len(),
            created_ms,
            predecessor_unsynced,
        };
        region.write_at(0, &header.encode())?;
        region.write_at(SEGMENT_HEADER_LEN as u64, &ZERO_SLOT)?;
        // IMPORTANT: header (and, for a new file, its allocation) durable
        // before the name is, and the name before any entry is acknowledged.
        self.dir.sync_file(&path)?;
        self.dir.sync_dir(wal_dir)?;
        let mut a = active(region, header, epoch, SEGMENT_HEADER_LEN);
        if recycled.is_none() && self.opts.zero_ahead {
            // Past the header, a new file reads as zeros: blocks to convert.
            a.prewritten_off = Some(SEGMENT_HEADER_LEN);
        }
        Ok(a)
    }

    /// Takes the oldest pooled file of the configured segment size that can
    /// be reused (files of another size stay in the pool until truncation
    /// deletes them), with the lowest epoch its new header may carry.
    ///
    /// IMPORTANT: a recycled file's old frames must all be of older epochs
    /// than its new header's, or one could pass for a frame of the new life
    /// (or for proof that its end was durable). A file this process retired
    /// is below the current epoch; one found in the pool at open (only its
    /// header was checked) is scanned here, before anything is written, and
    /// skipped if no epoch lies above its frames.
    pub(super) fn take_recyclable(&self, pool: &mut Vec<SegmentId>) -> Option<(SegmentId, u64)> {
        let size = self.opts.segment_size_bytes;
        for i in 0..pool.len() {
            let id = pool[i];
            let path = pool_path(&self.opts.dir, id);
            if !self.dir.len(&path).is_ok_and(|l| l == size) {
                continue;
            }
            let floor = if self.unscanned_pool.contains(&id) {
                let Ok(map) = self.dir.map_read(&path) else {
                    continue;
                };
                match max_epoch_from(&map, SEGMENT_HEADER_LEN, 0).checked_add(1) {
                    Some(floor) => floor,
                    None => continue,
                }
            } else {
                0
            };
            pool.remove(i);
            return Some((id, floor));
        }
        None
    }

    /// Resumes the log whose segments are `segments` (non-empty, consecutive).
    /// The last segment's header is judged by [`rules::judge_header`]: an
    /// unborn one (a crash interrupted its rotation) is replaced; any other
    /// bad header refuses the open, and nothing is changed. When the last
    /// segment's header says its predecessor was not durable yet (a deferred
    /// rotation), the segments back to one that was are walked and judged
    /// ([`Opener::check_deferred`]).
    pub(super) fn resume(&self, segments: &[SegmentId], pool: Vec<SegmentId>) -> Result<Resumed> {
        let wal_dir = &self.opts.dir;
        // IMPORTANT: a writer killed (not crashed) mid-rotation or
        // mid-truncation leaves creates and renames that are visible but not
        // durable. Every path below that writes syncs the WAL directory
        // first (`sync_names`), so a power loss cannot take away the segment
        // new entries go into; only a log that ends right after a marker
        // proving everything durable (a clean close) skips it, see
        // `resume_into`.
        let last = *segments.last().expect("non-empty");
        let path = segment_path(wal_dir, last);
        // Only the predecessor's header is read here (resume must not grow
        // with the log); its frames are walked only after a deferred
        // rotation or to replace an unborn file.
        let prev = match segments.len() {
            1 => None,
            n => {
                let id = segments[n - 2];
                let prev_path = segment_path(wal_dir, id);
                let h = rules::check_header(&self.dir.map_read(&prev_path)?, id, &prev_path)?;
                Some(Predecessor {
                    header_epoch: h.epoch,
                    seal: None,
                })
            }
        };
        let pos = Position {
            id: last,
            is_final: true,
            prev,
        };
        let region = match self.dir.open_region(&path) {
            Ok(r) => Some(r),
            // A zero-length file cannot be a region; it is judged as empty.
            Err(Error::InvalidArgument { .. }) if self.dir.len(&path)? == 0 => None,
            Err(e) => return Err(e),
        };
        let bytes = region.as_ref().map_or(&[][..], |r| r.bytes());
        match rules::judge_header(bytes, &pos, &path)? {
            Birth::Born(h) => {
                let region = region.expect("a born segment is not empty");
                if h.predecessor_unsynced && segments.len() > 1 {
                    match self.check_deferred(segments, &h)? {
                        Chain::Complete(pending) => {
                            // IMPORTANT: nothing is written before every
                            // verdict is in: the final segment's end too.
                            judge_final(region.bytes(), &h, &path)?;
                            self.sync_names()?;
                            self.make_durable(&pending)?;
                        }
                        Chain::EndsAt(j) => {
                            drop(region);
                            let j = self.final_after_leftovers(segments, j)?;
                            return self.retire_leftovers(segments, j, pool);
                        }
                    }
                }
                self.resume_into(region, &h, &path, pool)
            }
            Birth::Unborn(_) => {
                drop(region);
                self.sync_names()?;
                // The log ends at the previous segment's seal (or is empty).
                let (first, epoch) = match segments.len() {
                    1 => (self.opts.first_entry, 0),
                    n => match self.sealed_end(segments[n - 2])? {
                        Some((first, epoch, seal_end)) => {
                            // IMPORTANT: a deferred rotation may have left
                            // the sealed segment unsynced; the new segment
                            // must not say otherwise before it is durable.
                            self.make_durable(&[Pending {
                                id: segments[n - 2],
                                end: seal_end,
                                seal: None,
                            }])?;
                            (first, epoch)
                        }
                        // A deferred rotation's segment that never became
                        // durable: it is the final segment. The unborn file
                        // holds no entry.
                        None => {
                            // IMPORTANT: every verdict before the removal.
                            let j = self.final_after_leftovers(segments, n - 2)?;
                            return self.retire_leftovers(segments, j, pool);
                        }
                    },
                };
                // The file holds no entry (that is what `Unborn` means):
                // replace it as rotation would have made it.
                self.dir.remove(&path)?;
                self.dir.sync_dir(wal_dir)?;
                let epoch = successor(epoch.max(self.pool_epoch), &path, EPOCH_AT, EPOCH_RANGE)?;
                Ok(Resumed {
                    active: self.create(last, first, epoch, None, false)?,
                    next_id: first,
                    pool,
                    clean: false,
                })
            }
        }
    }

    /// Makes the WAL directory's names durable before resume writes
    /// anything: a writer killed mid-rotation or mid-truncation leaves
    /// creates and renames that are visible but not durable.
    fn sync_names(&self) -> Result<()> {
        self.dir.sync_dir(&self.opts.dir)
    }

    /// Walks back from the final segment (header `last`) through the
    /// segments a deferred rotation may have left unsynced: each must end at
    /// its seal, or only its seal may be missing (@D1), until one whose
    /// successor's header says it was durable. A segment whose entries stop
    /// short, with no proof that they were durable, is where the log ends
    /// (@D2); anything else is the error [`rules::judge_unsealed`] returns.
    fn check_deferred(&self, segments: &[SegmentId], last: &SegmentHeader) -> Result<Chain> {
        let wal_dir = &self.opts.dir;
        let mut next = *last;
        let mut next_path = segment_path(wal_dir, *segments.last().expect("non-empty"));
        let mut pending = Vec::new();
        for j in (0..segments.len() - 1).rev() {
            let id = segments[j];
            let path = segment_path(wal_dir, id);
            let map = self.dir.map_read(&path)?;
            let h = rules::check_header(&map, id, &path)?;
            let mut c = Cursor::new(&h);
            let (end, seal_missing) = loop {
                match c.step(&map) {
                    Ok(Step::Entry { .. }) => {}
                    Ok(Step::Sealed { next: n }) => {
                        if n != next.first_entry {
                            return Err(Error::corrupt(
                                next_path,
                                super::format::HEADER_FIRST_ENTRY_AT,
                                CorruptKind::EntryIdGap {
                                    expected: n.0,
                                    found: next.first_entry.0,
                                },
                            ));
                        }
                        break (c.off + FRAME_HEADER_LEN, false);
                    }
                    Ok(Step::End(end)) => {
                        let later = &segments[j + 1..];
                        let verdict = rules::judge_unsealed(
                            &map,
                            &c,
                            end,
                            &path,
                            &next,
                            &next_path,
                            &mut |x| rules::evidence_in_segments(self.dir, wal_dir, later, x),
                        )?;
                        match verdict {
                            Unsealed::SealLost => break (c.off, true),
                            Unsealed::LogEnds(_) => return Ok(Chain::EndsAt(j)),
                        }
                    }
                    Err(d) => return Err(Error::corrupt(path, d.offset, d.kind)),
                }
            };
            pending.push(Pending {
                id,
                end,
                seal: seal_missing.then_some((c.next, c.epoch)),
            });
            if !h.predecessor_unsynced {
                break;
            }
            next = h;
            next_path = path;
        }
        pending.reverse();
        Ok(Chain::Complete(pending))
    }

    /// Makes the segments [`Opener::check_deferred`] found complete durable,
    /// oldest first: each one's missing seal written (@D1), its bytes
    /// written again (see [`Opener::resume_into`] on why) and flushed; then
    /// the headers of the ones after the oldest are told their predecessor
    /// is durable (the final segment's by `resume_into`).
    fn make_durable(&self, pending: &[Pending]) -> Result<()> {
        for p in pending {
            let path = segment_path(&self.opts.dir, p.id);
            let mut region = self.dir.open_region(&path)?;
            let mut end = p.end;
            if let Some((next, epoch)) = p.seal {
                let header = FrameHeader {
                    len: 0,
                    kind: KIND_SEAL,
                    entry: EntryId(next),
                    epoch,
                    durable_lag: u32::MAX,
                };
                region.write_at(end as u64, &header.encode(&[]))?;
                end += FRAME_HEADER_LEN;
            }
            rewrite(&mut *region, 0, end)?;
            region.flush_range(0, end as u64)?;
        }
        // IMPORTANT: a flag is cleared only once the segment before it is
        // durable: all of them are now.
        for p in pending.iter().skip(1) {
            let path = segment_path(&self.opts.dir, p.id);
            let mut region = self.dir.open_region(&path)?;
            clear_unsynced_flag(&mut *region, p.id, &path)?;
        }
        Ok(())
    }

    /// The segment the log ends in, given that it ends in `segments[j]` or
    /// earlier: `segments[j]` may itself follow a deferred rotation whose
    /// segment never became durable. Read-only, so that every verdict is in
    /// before [`Opener::retire_leftovers`] renames anything.
    fn final_after_leftovers(&self, segments: &[SegmentId], mut j: usize) -> Result<usize> {
        loop {
            let path = segment_path(&self.opts.dir, segments[j]);
            let map = self.dir.map_read(&path)?;
            // Judged as `resume` will judge it once it is the final segment.
            let prev = match j {
                0 => None,
                _ => {
                    let prev_path = segment_path(&self.opts.dir, segments[j - 1]);
                    let ph = rules::check_header(
                        &self.dir.map_read(&prev_path)?,
                        segments[j - 1],
                        &prev_path,
                    )?;
                    Some(Predecessor {
                        header_epoch: ph.epoch,
                        seal: None,
                    })
                }
            };
            let pos = Position {
                id: segments[j],
                is_final: true,
                prev,
            };
            let h = match rules::judge_header(&map, &pos, &path)? {
                Birth::Born(h) => h,
                // Replaced by resume, which walks its predecessor again.
                Birth::Unborn(_) if j > 0 => {
                    j -= 1;
                    continue;
                }
                Birth::Unborn(_) => return Ok(j),
            };
            if !h.predecessor_unsynced || j == 0 {
                judge_final(&map, &h, &path)?;
                return Ok(j);
            }
            match self.check_deferred(&segments[..=j], &h)? {
                Chain::Complete(_) => {
                    judge_final(&map, &h, &path)?;
                    return Ok(j);
                }
                Chain::EndsAt(k) => j = k,
            }
        }
    }

    /// The log ends in `segments[j]` (@D2): the segments after it hold only
    /// writes a crash left, never acknowledged (no frame anywhere proves
    /// them durable, and the flag says their predecessor never was). They
    /// are removed, and the log is resumed at `segments[j]`. Not pooled:
    /// a leftover's header names its own id, which the resumed log will
    /// give to a new segment, and a recycled file whose new header did not
    /// land must read as an older life (@U3), never as that segment.
    fn retire_leftovers(
        &self,
        segments: &[SegmentId],
        j: usize,
        pool: Vec<SegmentId>,
    ) -> Result<Resumed> {
        let wal_dir = &self.opts.dir;
        self.sync_names()?;
        // Newest first, each removal durable before the next: a crash
        // part-way leaves the segments consecutive, in the same @D2 shape.
        for &id in segments[j + 1..].iter().rev() {
            self.dir.remove(&segment_path(wal_dir, id))?;
            self.dir.sync_dir(wal_dir)?;
        }
        self.resume(&segments[..=j], pool)
    }

    /// The entry id and epoch at which sealed segment `id` ends, and where
    /// its seal ends; `None` if
    /// its frames end before a seal (a deferred rotation's segment whose
    /// successor was never born: resume judges it as the final segment).
    fn sealed_end(&self, id: SegmentId) -> Result<Option<(u64, u64, usize)>> {
        let path = segment_path(&self.opts.dir, id);
        let map = self.dir.map_read(&path)?;
        let h = rules::check_header(&map, id, &path)?;
        let mut c = Cursor::new(&h);
        loop {
            match c.step(&map) {
                Ok(Step::Entry { .. }) => {}
                Ok(Step::Sealed { next }) => {
                    return Ok(Some((next.0, c.epoch, c.off + FRAME_HEADER_LEN)))
                }
                Ok(Step::End(_)) => return Ok(None),
                Err(d) => return Err(Error::corrupt(path, d.offset, d.kind)),
            }
        }
    }

    /// Finds the tail of the last segment and makes it the append point.
    fn resume_into(
        &self,
        mut region: Box<dyn Region>,
        h: &SegmentHeader,
        path: &str,
        mut pool: Vec<SegmentId>,
    ) -> Result<Resumed> {
        // IMPORTANT: bytes found here are only what the page cache says. If a
        // barrier over them failed (in this process, or in another since
        // boot), their pages were left clean but never written, and no later
        // msync writes them back. So the header, and every frame that no
        // frame's durable watermark proves durable, are written again,
        // unchanged, before the barriers below: dirty again, they really
        // become durable (or the barrier fails). Every segment before this
        // one is durable here (checked by `resume`), so the header, written
        // again once the walk found nothing to refuse, may say so.
        let header = SegmentHeader {
            predecessor_unsynced: false,
            ..*h
        }
        .encode();
        let mut proven = h.first_entry.0 - 1;
        let mut c = Cursor::new(h);
        let end = loop {
            match c.step(region.bytes()) {
                Ok(Step::Entry { payload, .. }) => {
                    let at = payload.0 - FRAME_HEADER_LEN;
                    proven = proven.max(watermark_at(region.bytes(), at).unwrap_or(0));
                }
                Ok(Step::Sealed { next }) => {
                    // Sealed, but the next segment never appeared: start it.
                    let epoch =
                        successor(c.epoch.max(self.pool_epoch), path, EPOCH_AT, EPOCH_RANGE)?;
                    let id = successor(h.segment.0, path, SEGMENT_ID_AT, SEGMENT_ID_RANGE)?;
                    let seal_end = c.off + FRAME_HEADER_LEN;
                    let proven = proven.max(c.marker_watermark);
                    let from = first_entry_above(region.bytes(), proven, c.off);
                    self.sync_names()?;
                    region.write_at(0, &header)?;
                    rewrite_marker(&mut *region, &c)?;
                    rewrite(&mut *region, from, seal_end)?;
                    region.flush_range(0, seal_end as u64)?;
                    let recycled = self.take_recyclable(&mut pool);
                    let a = self.create(SegmentId(id), next.0, epoch, recycled, false)?;
                    return Ok(Resumed {
                        active: a,
                        next_id: next.0,
                        pool,
                        clean: false,
                    });
                }
                Ok(Step::End(end)) => break end,
                Err(d) => return Err(Error::corrupt(path, d.offset, d.kind)),
            }
        };
        // A resume marker proves everything before it durable: frames it
        // covers need no rewrite (without this, every open of a log whose
        // entries were never followed by a sync would rewrite them all).
        proven = proven.max(c.marker_watermark);
        // Damage, a later epoch, or evidence that the end was durable refuse
        // the open; a torn or clean end is fenced off below.
        let (verdict, past) = rules::judge_end_scan(region.bytes(), &c, end, true, path)?;
        // The new epoch: above every epoch already in this segment, see
        // below. The search for proof saw the frames of the tail's epoch or
        // later in its window; the slot at the tail and the slots past the
        // window are read here.
        let floor = c.epoch.max(self.pool_epoch).max(past.max_epoch);
        let floor = match decode_slot(region.bytes(), c.off) {
            Slot::Frame { header, .. } => floor.max(header.epoch),
            _ => floor,
        };
        let floor = max_epoch_from(region.bytes(), past.scanned_to, floor);
        let epoch = successor(floor, path, EPOCH_AT, EPOCH_RANGE)?;
        let clean_end = verdict == rules::EndVerdict::Clean;
        if let Some(m) = clean_close(&c, h, region.len() as usize).filter(|_| clean_end) {
            // IMPORTANT: the walk ended cleanly right after a resume marker
            // whose durable lag proves every frame before it durable (a
            // clean close, or an open whose appends never landed): nothing
            // needs writing again, and no name is new. The session's marker
            // will *replace* it, so whatever a crash keeps at that offset
            // (the old marker, the new one, or what preceded the old one) is
            // a clean end; what lies after it is older than the new epoch, as
            // the bytes after any resume marker are. It is written, and made
            // durable, by the first append (`write_session_marker`): until
            // then the folder is exactly as the last writer left it. (A torn
            // end takes the path below, which writes the marker over the
            // torn frame at once.)
            let mut a = active(region, *h, epoch, c.off);
            a.session_marker = Some(m);
            return Ok(Resumed {
                active: a,
                next_id: c.next,
                pool,
                clean: true,
            });
        }
        self.sync_names()?;
        region.write_at(0, &header)?;
        rewrite_marker(&mut *region, &c)?;
        let from = first_entry_above(region.bytes(), proven, c.off);
        rewrite(&mut *region, from, c.off)?;
        // IMPORTANT: everything before the tail is durable *before* the
        // marker (or seal) is written. A marker that reached the disk ahead
        // of the frames it follows (the kernel writes dirty pages back in any
        // order) would outlive them in a crash: the next resume would stop
        // before it, pick the same new epoch, and the stale marker would then
        // read as damage below the durable point, or as a current-epoch frame
        // with the wrong id. Its durable lag ("everything before me is
        // durable") is only true this way.
        region.flush_range(0, c.off as u64)?;
        // IMPORTANT: whatever lies after the tail (a torn frame, frames that
        // reached the disk without their predecessors) must never replay.
        // A resume marker starts a new epoch here; older-epoch frames after
        // it are dead.
        // IMPORTANT: above every epoch already in this segment, not just the
        // tail's: leftovers after the tail must never match the new epoch.
        let marker = FrameHeader {
            len: 0,
            kind: KIND_RESUME,
            entry: EntryId(c.next),
            epoch,
            durable_lag: durable_lag(c.next, c.next - 1),
        };
        if c.off + 2 * FRAME_HEADER_LEN + SEAL_RESERVE > region.len() as usize {
            // No room for marker plus a frame: seal here and move on.
            let id = successor(h.segment.0, path, SEGMENT_ID_AT, SEGMENT_ID_RANGE)?;
            let mut a = active(region, *h, c.epoch, c.off);
            seal(&mut a, c.next, c.next - 1)?;
            let recycled = self.take_recyclable(&mut pool);
            let a = self.create(SegmentId(id), c.next, epoch, recycled, false)?;
            return Ok(Resumed {
                active: a,
                next_id: c.next,
                pool,
                clean: false,
            });
        }
        region.write_at(c.off as u64, &marker.encode(&[]))?;
        let tail = c.off + FRAME_HEADER_LEN;
        region.write_at(tail as u64, &ZERO_SLOT)?;
        region.flush_range(c.off as u64, 2 * FRAME_HEADER_LEN as u64)?;
        Ok(Resumed {
            active: active(region, *h, epoch, tail),
            next_id: c.next,
            pool,
            clean: false,
        })
    }
}

/// Walks the final segment `buf` (header `h`) and judges its end, without
/// writing anything: what [`Opener::resume_into`] will find, checked before
/// a deferred rotation's segments are made durable.
fn judge_final(buf: &[u8], h: &SegmentHeader, path: &str) -> Result<()> {
    let mut c = Cursor::new(h);
    loop {
        match c.step(buf) {
            Ok(Step::Entry { .. }) => {}
            Ok(Step::Sealed { .. }) => return Ok(()),
            Ok(Step::End(end)) => return rules::judge_end(buf, &c, end, true, path).map(|_| ()),
            Err(d) => return Err(Error::corrupt(path, d.offset, d.kind)),
        }
    }
}

/// What resume found: the active segment, the next entry id and the
/// recycle pool; `clean`: the log ended right after a marker proving it all
/// durable, and nothing but the new marker was written.
pub(super) struct Resumed {
    pub(super) active: Active,
    pub(super) next_id: u64,
    pub(super) pool: Vec<SegmentId>,
    pub(super) clean: bool,
}

/// Where the walk `c` of the final segment (header `h`, `len` bytes) ended
/// right after a resume marker that proves every entry before it durable,
/// with room for another frame and a seal after it: the offset of that
/// marker. A clean close leaves this shape, and so does an open that
/// appended nothing; resume then only replaces the marker.
fn clean_close(c: &Cursor, h: &SegmentHeader, len: usize) -> Option<usize> {
    let m = c.last_marker?;
    let proves_all = c.marker_watermark.saturating_add(1) >= c.next;
    let room = c.off + FRAME_HEADER_LEN + SEAL_RESERVE <= len;
    (m + FRAME_HEADER_LEN == c.off && proves_all && room && !h.predecessor_unsynced).then_some(m)
}

/// What [`Opener::check_deferred`] found.
enum Chain {
    /// Every walked segment is complete: these (oldest first) still have to
    /// be made durable.
    Complete(Vec<Pending>),
    /// The log ends in `segments[j]`.
    EndsAt(usize),
}

/// A complete segment a deferred rotation left unsynced.
struct Pending {
    id: SegmentId,
    /// Where its frames (seal included, if present) end.
    end: usize,
    /// The seal to write (next id, epoch) if only the seal was missing.
    seal: Option<(u64, u64)>,
}

/// Rewrites the header of segment `id` (`region`, at `path`) with
/// [`SegmentHeader::predecessor_unsynced`] cleared, and flushes it.
fn clear_unsynced_flag(region: &mut dyn Region, id: SegmentId, path: &str) -> Result<()> {
    let h = rules::check_header(region.bytes(), id, path)?;
    if h.predecessor_unsynced {
        let h = SegmentHeader {
            predecessor_unsynced: false,
            ..h
        };
        region.write_at(0, &h.encode())?;
        region.flush_range(0, SEGMENT_HEADER_LEN as u64)?;
    }
    Ok(())
}

/// Offsets of the segment header's id and epoch fields, named in errors.
pub(super) const SEGMENT_ID_AT: u64 = super::format::HEADER_SEGMENT_AT;
pub(super) const EPOCH_AT: u64 = super::format::HEADER_EPOCH_AT;
pub(super) const SEGMENT_ID_RANGE: &str = "segment id out of range";
pub(super) const EPOCH_RANGE: &str = "epoch out of range";

/// The value after `n`, an id or epoch read from `path`: values on disk can
/// be anything, and the largest has no successor.
pub(super) fn successor(n: u64, path: &str, offset: u64, what: &'static str) -> Result<u64> {
    n.checked_add(1)
        .ok_or_else(|| Error::corrupt(path, offset, CorruptKind::BadHeader(what)))
}

/// Writes the last resume marker the walk passed again, unchanged. Its own
/// watermark proves the frames before it durable, but not the marker: its
/// barrier may have failed (in an earlier process since boot), leaving its
/// page clean in the cache and never on disk. Later epochs' frames after it
/// must never outlive it.
fn rewrite_marker(region: &mut dyn Region, c: &Cursor) -> Result<()> {
    match c.last_marker {
        Some(m) => rewrite(region, m, m + FRAME_HEADER_LEN),
        None => Ok(()),
    }
}

/// Bytes copied per write by [`rewrite`].
const REWRITE_CHUNK_BYTES: usize = 64 * 1024;

/// Writes bytes `from..to` of `region` again, unchanged, so that they are
/// dirty and the next barrier over them writes them to disk.
fn rewrite(region: &mut dyn Region, from: usize, to: usize) -> Result<()> {
    let mut buf = Vec::with_capacity(to.saturating_sub(from).min(REWRITE_CHUNK_BYTES));
    let mut at = from;
    while at < to {
        let end = (at + REWRITE_CHUNK_BYTES).min(to);
        buf.clear();
        buf.extend_from_slice(&region.bytes()[at..end]);
        region.write_at(at as u64, &buf)?;
        at = end;
    }
    Ok(())
}

/// The append state of segment `header` (its region `region`), with frames
/// of `epoch` appended from `off` on.
fn active(region: Box<dyn Region>, header: SegmentHeader, epoch: u64, off: usize) -> Active {
    let flusher = region.flusher();
    Active {
        region,
        flusher,
        id: header.segment,
        first_entry: header.first_entry.0,
        epoch,
        write_off: off,
        synced_off: off,
        prewritten_off: None,
        prefault_want: 0,
        session_marker: None,
        // A header from before birth times were stored: count from now.
        created_ms: if header.created_ms == 0 {
            now_ms()
        } else {
            header.created_ms
        },
        header,
    }
}
