//! Creating, sealing and resuming segments: what `Wal::open` and rotation do
//! to files. The protocols and their crash analysis are in `FORMAT.md`
//! ("Rotate", "Resume").

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::{
    durable_lag, watermark_at, FrameHeader, SegmentHeader, FRAME_HEADER_LEN, KIND_RESUME,
    KIND_SEAL, SEAL_RESERVE, SEGMENT_HEADER_LEN, ZERO_SLOT,
};
use super::options::WalOptions;
use super::rules::{self, pool_path, segment_path, Birth, Position, Predecessor};
use super::segment::{first_entry_above, max_epoch_from, Cursor, Step};
use super::writer::Active;
use super::{EntryId, SegmentId};
use crate::directory::{Directory, Region};
use crate::error::{CorruptKind, Error, Result};

/// Writes the seal marker at the tail of `a` and makes the whole segment
/// durable.
pub(super) fn seal(a: &mut Active, next_id: u64, durable: u64) -> Result<()> {
    let header = FrameHeader {
        len: 0,
        kind: KIND_SEAL,
        entry: EntryId(next_id),
        epoch: a.epoch,
        durable_lag: durable_lag(next_id, durable),
    };
    a.region.write_at(a.write_off as u64, &header.encode(&[]))?;
    // IMPORTANT: the seal and every frame before it are durable before
    // anything in the next segment can be acknowledged.
    let end = a.write_off + FRAME_HEADER_LEN;
    a.flusher
        .flush_range(a.synced_off as u64, (end - a.synced_off) as u64)?;
    a.synced_off = end;
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
    pub(super) fn create(
        &self,
        id: SegmentId,
        first: u64,
        epoch: u64,
        recycled: Option<(SegmentId, u64)>,
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
        };
        region.write_at(0, &header.encode())?;
        region.write_at(SEGMENT_HEADER_LEN as u64, &ZERO_SLOT)?;
        // IMPORTANT: header (and, for a new file, its allocation) durable
        // before the name is, and the name before any entry is acknowledged.
        self.dir.sync_file(&path)?;
        self.dir.sync_dir(wal_dir)?;
        let mut a = active(region, id, first, epoch, SEGMENT_HEADER_LEN, created_ms);
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
    /// bad header refuses the open, and nothing is changed.
    pub(super) fn resume(
        &self,
        segments: &[SegmentId],
        pool: Vec<SegmentId>,
    ) -> Result<(Active, u64, Vec<SegmentId>)> {
        let wal_dir = &self.opts.dir;
        // IMPORTANT: a writer killed (not crashed) mid-rotation or
        // mid-truncation leaves creates and renames that are visible but not
        // durable. Make them durable before resuming on top of them, or a
        // power loss could take away the segment new entries go into.
        self.dir.sync_dir(wal_dir)?;
        let last = *segments.last().expect("non-empty");
        let path = segment_path(wal_dir, last);
        // Only the predecessor's header is read here (resume must not grow
        // with the log); its seal is walked only to replace an unborn file.
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
                self.resume_into(region, &h, &path, pool)
            }
            Birth::Unborn(_) => {
                drop(region);
                // The log ends at the previous segment's seal (or is empty).
                let (first, epoch) = match segments.len() {
                    1 => (self.opts.first_entry, 0),
                    n => self.sealed_end(segments[n - 2])?,
                };
                // The file holds no entry (that is what `Unborn` means):
                // replace it as rotation would have made it.
                self.dir.remove(&path)?;
                self.dir.sync_dir(wal_dir)?;
                let epoch = successor(epoch.max(self.pool_epoch), &path, EPOCH_AT, EPOCH_RANGE)?;
                Ok((self.create(last, first, epoch, None)?, first, pool))
            }
        }
    }

    /// The entry id and epoch at which sealed segment `id` ends.
    fn sealed_end(&self, id: SegmentId) -> Result<(u64, u64)> {
        let path = segment_path(&self.opts.dir, id);
        let map = self.dir.map_read(&path)?;
        let h = rules::check_header(&map, id, &path)?;
        let mut c = Cursor::new(&h);
        loop {
            match c.step(&map) {
                Ok(Step::Entry { .. }) => {}
                Ok(Step::Sealed { next }) => return Ok((next.0, c.epoch)),
                Ok(Step::End(end)) => {
                    // Not final: every end but a seal is damage.
                    rules::judge_end(&map, &c, end, false, &path)?;
                    unreachable!("a non-final segment's end is always an error");
                }
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
    ) -> Result<(Active, u64, Vec<SegmentId>)> {
        // IMPORTANT: bytes found here are only what the page cache says. If a
        // barrier over them failed (in this process, or in another since
        // boot), their pages were left clean but never written, and no later
        // msync writes them back. So the header, and every frame that no
        // frame's durable watermark proves durable, are written again,
        // unchanged, before the barriers below: dirty again, they really
        // become durable (or the barrier fails).
        rewrite(&mut *region, 0, SEGMENT_HEADER_LEN)?;
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
                    rewrite_marker(&mut *region, &c)?;
                    rewrite(&mut *region, from, seal_end)?;
                    region.flush_range(0, seal_end as u64)?;
                    let recycled = self.take_recyclable(&mut pool);
                    let a = self.create(SegmentId(id), next.0, epoch, recycled)?;
                    return Ok((a, next.0, pool));
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
        rules::judge_end(region.bytes(), &c, end, true, path)?;
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
        let floor = c.epoch.max(self.pool_epoch);
        let floor = max_epoch_from(region.bytes(), c.off, floor);
        let epoch = successor(floor, path, EPOCH_AT, EPOCH_RANGE)?;
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
            let mut a = active(
                region,
                h.segment,
                h.first_entry.0,
                c.epoch,
                c.off,
                h.created_ms,
            );
            seal(&mut a, c.next, c.next - 1)?;
            let recycled = self.take_recyclable(&mut pool);
            let a = self.create(SegmentId(id), c.next, epoch, recycled)?;
            return Ok((a, c.next, pool));
        }
        region.write_at(c.off as u64, &marker.encode(&[]))?;
        let tail = c.off + FRAME_HEADER_LEN;
        region.write_at(tail as u64, &ZERO_SLOT)?;
        region.flush_range(c.off as u64, 2 * FRAME_HEADER_LEN as u64)?;
        Ok((
            active(
                region,
                h.segment,
                h.first_entry.0,
                epoch,
                tail,
                h.created_ms,
            ),
            c.next,
            pool,
        ))
    }
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

fn active(
    region: Box<dyn Region>,
    id: SegmentId,
    first: u64,
    epoch: u64,
    off: usize,
    created_ms: u64,
) -> Active {
    let flusher = region.flusher();
    Active {
        region,
        flusher,
        id,
        first_entry: first,
        epoch,
        write_off: off,
        synced_off: off,
        writeback_off: off,
        prewritten_off: None,
        prefault_want: 0,
        // A header from before birth times were stored: count from now.
        created_ms: if created_ms == 0 {
            now_ms()
        } else {
            created_ms
        },
    }
}
