//! Segment ranges and prefix truncation: retiring sealed segments that a
//! checkpoint has made unnecessary, into the recycle pool or the bin.

use super::format::SegmentHeader;
use super::observer::{Counters, WalEvent};
use super::rules::{self, pool_path, segment_path};
use super::writer::Wal;
use super::{EntryId, SegmentId};
use crate::error::Result;

/// A live segment and the entries it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRange {
    /// The segment.
    pub segment: SegmentId,
    /// Its first entry id (the id it starts at, even if it holds none).
    pub first: EntryId,
    /// The first id of the next segment (exclusive end), or `None` for the
    /// active segment.
    pub end: Option<EntryId>,
}

impl Wal {
    /// The live segments, oldest first, with the entry ids each holds. Reads
    /// one header per sealed segment.
    pub fn segment_ranges(&self) -> Result<Vec<SegmentRange>> {
        let st = self.lock_state();
        let (active, active_first) = (st.active.id, st.active.first_entry);
        let mut out = Vec::new();
        for id in self.sealed_segments(active)? {
            out.push(SegmentRange {
                segment: id,
                first: self.header_of(id)?.first_entry,
                end: None,
            });
        }
        out.push(SegmentRange {
            segment: active,
            first: EntryId(active_first),
            end: None,
        });
        for i in 1..out.len() {
            out[i - 1].end = Some(out[i].first);
        }
        Ok(out)
    }

    /// Retires every sealed segment whose entries all have ids `<= upto`
    /// (oldest first, never the active segment): renamed into the recycle
    /// pool while it has room, deleted otherwise. Returns how many were
    /// retired.
    ///
    /// Crash-safe: segments go one at a time, oldest first, each followed by
    /// a directory sync, so a crash can only leave a shorter prefix retired,
    /// never a hole in the log.
    ///
    /// Each segment's header is checked before it is retired: a file under a
    /// segment name that zerodur did not write (or whose header is damaged)
    /// stops the truncation with its error and is left as it is.
    pub fn truncate_prefix(&self, upto: EntryId) -> Result<usize> {
        let mut st = self.lock_state();
        self.commit.check()?;
        // Sealed segments a deferred rotation left unsynced are made durable
        // (and their successors' headers told so) before any is retired:
        // a retired file is recycled later, and nothing may still write to it.
        if !st.unsynced.is_empty() {
            self.sync_unsynced_locked(&mut st)?;
        }
        let (active, active_first) = (st.active.id, st.active.first_entry);
        let wal_dir = self.opts.dir.clone();
        let mut retired = 0;
        // The header of the segment about to be judged, when the previous
        // step already read it as that step's next segment.
        let mut read_ahead: Option<SegmentHeader> = None;
        for id in self.sealed_segments(active)? {
            let next = SegmentId(id.0 + 1);
            let next_header = (next != active).then(|| self.header_of(next)).transpose()?;
            let next_first = next_header.map_or(active_first, |h| h.first_entry.0);
            if next_first > upto.0.saturating_add(1) {
                break;
            }
            // IMPORTANT: only a file zerodur wrote is retired (and later
            // overwritten by recycling): a foreign or damaged file under a
            // segment name stops the truncation with its error.
            let header = match read_ahead.take() {
                Some(h) => h,
                None => self.header_of(id)?,
            };
            read_ahead = next_header;
            let path = segment_path(&wal_dir, id);
            let recycle = st.pool.len() < self.opts.recycle_capacity
                && header.segment_len == self.opts.segment_size_bytes;
            let res = if recycle {
                self.dir.rename(&path, &pool_path(&wal_dir, id))
            } else {
                self.dir.remove(&path)
            };
            // IMPORTANT: one durable step per segment keeps the retired set a
            // prefix whatever a crash lands.
            res.and_then(|()| self.dir.sync_dir(&wal_dir))
                .map_err(|e| self.fail(e))?;
            if recycle {
                st.pool.push(id);
                st.pool.sort();
                self.emit(|| WalEvent::Recycle { segment: id });
            } else {
                self.emit(|| WalEvent::Truncate { segment: id });
            }
            Counters::add(&self.counters.segments_retired, 1);
            retired += 1;
        }
        Ok(retired)
    }

    /// Live segments older than `active`, oldest first.
    fn sealed_segments(&self, active: SegmentId) -> Result<Vec<SegmentId>> {
        let mut ids = rules::list_wal(&*self.dir, &self.opts.dir)?.segments;
        ids.retain(|&id| id < active);
        Ok(ids)
    }

    /// The checked header of live segment `id`.
    fn header_of(&self, id: SegmentId) -> Result<SegmentHeader> {
        let path = segment_path(&self.opts.dir, id);
        rules::check_header(&self.dir.map_read(&path)?, id, &path)
    }
}
