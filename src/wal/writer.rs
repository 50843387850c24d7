//! [`Wal`]: open or resume, append, sync, rotate.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use super::commit::{Flushed, GroupCommit};
use super::format::{
    durable_lag, frame_len, watermark_at, FileName, FrameHeader, SegmentHeader, FRAME_HEADER_LEN,
    KIND_ENTRY, KIND_ENTRY_CONT, KIND_RESUME, KIND_SEAL, LOCK_NAME, SEAL_RESERVE,
    SEGMENT_HEADER_LEN,
};
use super::observer::{Counters, WalEvent, WalStats};
use super::options::{segment_capacity, SyncPolicy, WalOptions};
use super::reader::{check_header, is_unborn};
use super::segment::{
    durable_evidence, first_entry_above, max_epoch_from, Cursor, End, Step,
    ZERO_EVIDENCE_WINDOW_BYTES,
};
use super::{EntryId, SegmentId};
use crate::directory::path::join;
use crate::directory::{sync_parents, DirLock, Directory, Region, RegionFlush};
use crate::error::{CorruptKind, Error, Result};

/// Zero bytes written after the last frame, so a cleanly stopped log ends in
/// a zero slot even inside a reused file.
const ZERO_SLOT: [u8; FRAME_HEADER_LEN] = [0; FRAME_HEADER_LEN];

/// A write-ahead log open for appending. `Send + Sync`: share it with
/// `Arc<Wal>` and append from any thread.
///
/// Opening takes the WAL directory's exclusive lock (a second open, from this
/// process or another, is [`Error::Locked`]) and resumes an existing log by
/// scanning only its last segment.
///
/// Any failed write or barrier **poisons** the WAL: the failing call returns
/// the I/O error, that batch is not acknowledged, and every later call
/// returns [`Error::Poisoned`]. Reopen to recover.
pub struct Wal {
    pub(super) dir: Arc<dyn Directory>,
    pub(super) opts: WalOptions,
    max_entry: u64,
    pub(super) state: Mutex<State>,
    pub(super) commit: GroupCommit,
    pub(super) counters: Counters,
    opened: Instant,
    _lock: DirLock,
}

pub(super) struct State {
    pub(super) active: Active,
    /// Id the next appended entry gets.
    pub(super) next_id: u64,
    /// Retired files available for reuse, oldest first.
    pub(super) pool: Vec<SegmentId>,
    /// Milliseconds since open of the last barrier (for `Interval`).
    last_sync_ms: u64,
    /// Entries appended since open (counted under the lock: no atomics on
    /// the append path).
    appends: u64,
    /// Payload bytes appended since open.
    bytes_appended: u64,
}

pub(super) struct Active {
    region: Box<dyn Region>,
    flusher: Arc<dyn RegionFlush>,
    pub(super) id: SegmentId,
    pub(super) first_entry: u64,
    epoch: u64,
    /// Where the next frame goes.
    write_off: usize,
    /// Bytes below this offset are durable.
    synced_off: usize,
    /// Write-back has been started for the bytes below this offset.
    writeback_off: usize,
    opened_at: Instant,
}

impl Wal {
    /// Opens the WAL described by `opts` in `dir`: creates it if it does not
    /// exist, resumes it otherwise.
    ///
    /// Resume scans only the last segment: it finds the tail, fences off any
    /// leftover bytes after it with a resume marker (so they can never be
    /// replayed), and makes everything before it durable.
    pub fn open(dir: Arc<dyn Directory>, opts: WalOptions) -> Result<Wal> {
        let max_entry = opts.validate()?;
        let wal_dir = opts.dir.clone();
        if !wal_dir.is_empty() {
            if !dir.exists(&wal_dir)? {
                dir.create_dir_all(&wal_dir)?;
            }
            // IMPORTANT: the WAL directory's own entry must be durable before
            // any segment inside it is relied on -- also when it already
            // exists: a writer killed between creating it and this sync left
            // a name that a power loss can still take away.
            sync_parents(&*dir, &wal_dir)?;
        }
        let lock = dir.lock(&join(&wal_dir, LOCK_NAME))?;
        let mut segments = Vec::new();
        let mut pool = Vec::new();
        for name in dir.list(&wal_dir)? {
            match FileName::parse(&name) {
                Some(FileName::Segment(id)) => segments.push(id),
                Some(FileName::Free(id)) => pool.push(id),
                None => {}
            }
        }
        segments.sort();
        pool.sort();
        if let Some(w) = segments.windows(2).find(|w| w[1].0 != w[0].0 + 1) {
            return Err(Error::corrupt(
                seg_path(&wal_dir, w[1]),
                0,
                CorruptKind::MissingSegment {
                    segment: w[0].0 + 1,
                },
            ));
        }
        let (pool_epoch, pool_newest) = pool
            .iter()
            .filter_map(|&id| {
                let map = dir.map_read(&free_path(&wal_dir, id)).ok()?;
                SegmentHeader::decode(&map).ok().map(|h| (h.epoch, id))
            })
            .max()
            .unwrap_or((0, SegmentId(0)));
        // New epochs must exceed every pooled file's: one must exist.
        successor(
            pool_epoch,
            &free_path(&wal_dir, pool_newest),
            EPOCH_AT,
            EPOCH_RANGE,
        )?;
        let opener = Opener {
            dir: &*dir,
            opts: &opts,
            pool_epoch,
        };
        let (active, next_id, pool) = match segments.last() {
            None => (
                opener.create(SegmentId(1), opts.first_entry, pool_epoch + 1, None)?,
                opts.first_entry,
                pool,
            ),
            Some(_) => opener.resume(&segments, pool)?,
        };
        let durable = next_id - 1;
        Ok(Wal {
            dir,
            opts,
            max_entry,
            state: Mutex::new(State {
                active,
                next_id,
                pool,
                last_sync_ms: 0,
                appends: 0,
                bytes_appended: 0,
            }),
            commit: GroupCommit::new(durable),
            counters: Counters::default(),
            opened: Instant::now(),
            _lock: lock,
        })
    }

    pub(super) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one entry and returns its id. Durable according to the
    /// [`SyncPolicy`]; visible to readers at once.
    pub fn append(&self, payload: &[u8]) -> Result<EntryId> {
        let (_, last) = self.append_frames(&[payload])?;
        self.apply_policy(last)?;
        Ok(last)
    }

    /// Appends one entry and returns once it (and every entry before it) is
    /// durable. Concurrent callers share one barrier.
    pub fn append_durable(&self, payload: &[u8]) -> Result<EntryId> {
        let (_, last) = self.append_frames(&[payload])?;
        self.sync_to(last)?;
        Ok(last)
    }

    /// Appends entries with consecutive ids that replay **all or none** after
    /// a crash. Returns the first and last ids. The batch must fit in one
    /// segment. An empty batch appends nothing and returns `None`.
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Option<(EntryId, EntryId)>> {
        if payloads.is_empty() {
            return Ok(None);
        }
        let ids = self.append_frames(payloads)?;
        self.apply_policy(ids.1)?;
        Ok(Some(ids))
    }

    /// [`append_batch`](Wal::append_batch), returning once the batch is durable.
    pub fn append_batch_durable(&self, payloads: &[&[u8]]) -> Result<Option<(EntryId, EntryId)>> {
        if payloads.is_empty() {
            return Ok(None);
        }
        let ids = self.append_frames(payloads)?;
        self.sync_to(ids.1)?;
        Ok(Some(ids))
    }

    /// Serializes `value` with rkyv and appends the archive. Read it back
    /// zero-copy with [`WalReader::replay_archived`](super::WalReader::replay_archived).
    pub fn append_archived<T>(&self, value: &T) -> Result<EntryId>
    where
        T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
    {
        let bytes = rkyv::to_bytes::<rancor::Error>(value).map_err(|e| Error::InvalidArgument {
            name: "value",
            reason: format!("rkyv serialization failed: {e}"),
        })?;
        self.append(&bytes)
    }

    /// Makes every entry appended so far visible to readers. Appends are
    /// copied into the shared mapping, so they are visible as soon as
    /// `append` returns; this only reports poisoning. For durability use
    /// [`sync`](Wal::sync).
    pub fn flush(&self) -> Result<()> {
        self.commit.check()
    }

    /// The durability barrier: returns once every entry appended before the
    /// call is durable (`msync` of the dirty range; concurrent callers share
    /// it).
    pub fn sync(&self) -> Result<()> {
        let last = self.lock_state().next_id - 1;
        self.sync_to(EntryId(last))
    }

    /// Syncs and closes the WAL.
    pub fn close(self) -> Result<()> {
        self.sync()
    }

    /// Id the next appended entry will get.
    pub fn next_entry_id(&self) -> EntryId {
        EntryId(self.lock_state().next_id)
    }

    /// Id of the last appended entry, if any (durable or not).
    pub fn last_entry_id(&self) -> Option<EntryId> {
        let n = self.lock_state().next_id - 1;
        (n > 0).then_some(EntryId(n))
    }

    /// Highest entry id known durable, if any.
    pub fn durable_entry_id(&self) -> Option<EntryId> {
        let d = self.commit.durable();
        (d > 0).then_some(EntryId(d))
    }

    /// The active segment.
    pub fn active_segment(&self) -> SegmentId {
        self.lock_state().active.id
    }

    /// Whether a failure has poisoned this WAL.
    pub fn is_poisoned(&self) -> bool {
        self.commit.is_poisoned()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let (appends, bytes_appended) = {
            let st = self.lock_state();
            (st.appends, st.bytes_appended)
        };
        WalStats {
            appends,
            bytes_appended,
            ..self.counters.snapshot()
        }
    }

    fn apply_policy(&self, last: EntryId) -> Result<()> {
        let due = match self.opts.sync_policy {
            SyncPolicy::Always => true,
            SyncPolicy::EveryN(n) => last.0 % n == 0,
            SyncPolicy::Interval(d) => {
                let since = self.opened.elapsed().as_millis() as u64;
                since.saturating_sub(self.lock_state().last_sync_ms) >= d.as_millis() as u64
            }
            SyncPolicy::Manual => false,
        };
        if due {
            self.sync_to(last)
        } else {
            Ok(())
        }
    }

    pub(super) fn sync_to(&self, id: EntryId) -> Result<()> {
        // IMPORTANT: after a failed barrier every call fails, even one whose
        // entries were durable before it: a retried sync must never report
        // success after a failed one (the caller cannot know what the failed
        // barrier covered, e.g. a rotation's seal).
        self.commit.check()?;
        self.commit.wait_durable(id.0, || self.flush_active())
    }

    /// Leader's barrier: capture the dirty range under the lock, flush with no
    /// lock held.
    fn flush_active(&self) -> Result<Flushed> {
        let (flusher, start, end, upto, seg) = {
            let st = self.lock_state();
            let a = &st.active;
            (
                Arc::clone(&a.flusher),
                a.synced_off,
                a.write_off,
                st.next_id - 1,
                a.id,
            )
        };
        let t = Instant::now();
        let len = end + FRAME_HEADER_LEN - start;
        flusher
            .flush_range(start as u64, len as u64)
            .map_err(|e| self.fail(e))?;
        Counters::add(&self.counters.syncs, 1);
        {
            let mut st = self.lock_state();
            if st.active.id == seg && st.active.synced_off < end {
                st.active.synced_off = end;
            }
            st.last_sync_ms = self.opened.elapsed().as_millis() as u64;
        }
        self.emit(|| WalEvent::Sync {
            durable: (upto > 0).then_some(EntryId(upto)),
            bytes: len as u64,
            elapsed: t.elapsed(),
        });
        Ok(Flushed { durable: upto })
    }

    /// Copies frames for `payloads` into the active segment (rotating first
    /// if they do not fit). Returns the first and last ids.
    fn append_frames(&self, payloads: &[&[u8]]) -> Result<(EntryId, EntryId)> {
        self.commit.check()?;
        let mut total = 0usize;
        for p in payloads {
            if p.len() as u64 > self.max_entry {
                return Err(Error::EntryTooLarge {
                    len: p.len() as u64,
                    max: self.max_entry,
                });
            }
            total += frame_len(p.len());
        }
        let capacity = segment_capacity(self.opts.segment_size_bytes);
        if total > capacity {
            return Err(Error::EntryTooLarge {
                len: total as u64,
                max: capacity as u64,
            });
        }
        let mut st = self.lock_state();
        self.commit.check()?;
        // Ids can come from disk: the last one appended must have a
        // successor (an entry with the largest id is corrupt to the reader).
        if st.next_id.checked_add(payloads.len() as u64).is_none() {
            return Err(Error::InvalidArgument {
                name: "payloads",
                reason: format!("no entry ids left after {}", st.next_id - 1),
            });
        }
        self.ensure_room(&mut st, total).map_err(|e| self.fail(e))?;
        let first = st.next_id;
        let durable = self.commit.durable();
        let epoch = st.active.epoch;
        let mut off = st.active.write_off;
        let mut bytes = 0u64;
        for (i, p) in payloads.iter().enumerate() {
            let id = first + i as u64;
            let header = FrameHeader {
                len: p.len() as u32,
                kind: if i + 1 < payloads.len() {
                    KIND_ENTRY_CONT
                } else {
                    KIND_ENTRY
                },
                entry: EntryId(id),
                epoch,
                durable_lag: durable_lag(id, durable),
            };
            let r = &mut st.active.region;
            r.write_at(off as u64, &header.encode(p))
                .and_then(|()| r.write_at((off + FRAME_HEADER_LEN) as u64, p))
                .map_err(|e| self.fail(e))?;
            off += frame_len(p.len());
            bytes += p.len() as u64;
        }
        st.active
            .region
            .write_at(off as u64, &ZERO_SLOT)
            .map_err(|e| self.fail(e))?;
        st.active.write_off = off;
        st.active.start_writeback();
        let last = first + payloads.len() as u64 - 1;
        st.next_id = last + 1;
        st.appends += payloads.len() as u64;
        st.bytes_appended += bytes;
        self.commit.appended(last);
        drop(st);
        self.emit(|| WalEvent::Append {
            first: EntryId(first),
            last: EntryId(last),
            bytes,
        });
        Ok((EntryId(first), EntryId(last)))
    }

    /// Rotates if `need` more bytes of frames do not fit in the active
    /// segment, or it is older than the configured age.
    fn ensure_room(&self, st: &mut State, need: usize) -> Result<()> {
        let a = &st.active;
        let fits = a.write_off + need + SEAL_RESERVE <= a.region.len() as usize;
        let has_entries = st.next_id > a.first_entry;
        let too_old = self
            .opts
            .max_segment_age
            .is_some_and(|age| a.opened_at.elapsed() >= age);
        if fits && !(too_old && has_entries) {
            return Ok(());
        }
        self.rotate(st)
    }

    /// Seals the active segment, makes it durable, and activates the next
    /// one (recycled if the pool has a file).
    fn rotate(&self, st: &mut State) -> Result<()> {
        let next_id = st.next_id;
        let from = st.active.id;
        let path = seg_path(&self.opts.dir, from);
        let new_id = SegmentId(successor(from.0, &path, SEGMENT_ID_AT, SEGMENT_ID_RANGE)?);
        let epoch = successor(st.active.epoch, &path, EPOCH_AT, EPOCH_RANGE)?;
        let old = &mut st.active;
        seal(old, next_id, self.commit.durable())?;
        self.commit.advance(next_id - 1);
        let opener = Opener {
            dir: &*self.dir,
            opts: &self.opts,
            pool_epoch: 0,
        };
        let recycled = opener.take_recyclable(&mut st.pool);
        st.active = opener.create(new_id, next_id, epoch, recycled)?;
        Counters::add(&self.counters.rotations, 1);
        Counters::add(&self.counters.syncs, 1);
        if recycled.is_some() {
            Counters::add(&self.counters.recycled_reuses, 1);
        }
        self.emit(|| WalEvent::Rotate {
            from,
            to: new_id,
            recycled: recycled.is_some(),
        });
        Ok(())
    }

    /// Poisons the WAL with `e` and returns it.
    pub(super) fn fail(&self, e: Error) -> Error {
        if self.commit.poison(&e) {
            self.emit(|| WalEvent::Poison {
                cause: e.to_string(),
            });
        }
        e
    }

    pub(super) fn emit(&self, event: impl FnOnce() -> WalEvent) {
        if let Some(o) = &self.opts.observer {
            o.on_event(&event());
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.opts.dir)
            .field("next_entry_id", &self.next_entry_id())
            .field("durable_entry_id", &self.durable_entry_id())
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

/// Bytes between early write-back hints: large enough that the system call
/// is rare (once per ~28,000 appends of 100 bytes), small enough that a
/// rotation's barrier finds most of the segment already written.
const WRITEBACK_CHUNK_BYTES: usize = 4 * 1024 * 1024;

impl Active {
    /// Starts write-back of every whole chunk written since the last hint, so
    /// the barrier that eventually covers it (a durable append, or the
    /// rotation that seals the segment) has little left to wait for.
    fn start_writeback(&mut self) {
        let boundary = self.write_off - self.write_off % WRITEBACK_CHUNK_BYTES;
        if boundary > self.writeback_off {
            // A hint: an error here changes nothing; the barrier reports.
            let _ = self.region.start_writeback(
                self.writeback_off as u64,
                (boundary - self.writeback_off) as u64,
            );
            self.writeback_off = boundary;
        }
    }
}

/// Writes the seal marker at the tail of `a` and makes the whole segment
/// durable.
fn seal(a: &mut Active, next_id: u64, durable: u64) -> Result<()> {
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

pub(super) fn seg_path(wal_dir: &str, id: SegmentId) -> String {
    join(wal_dir, &FileName::Segment(id).render())
}

pub(super) fn free_path(wal_dir: &str, id: SegmentId) -> String {
    join(wal_dir, &FileName::Free(id).render())
}

/// Creating and resuming segments, at open and at rotation.
struct Opener<'a> {
    dir: &'a dyn Directory,
    opts: &'a WalOptions,
    pool_epoch: u64,
}

impl Opener<'_> {
    /// Makes segment `id` the new active segment, starting at entry `first`
    /// with `epoch`: a recycled file renamed into place, or a new
    /// preallocated one. Durable (header and name) on return.
    fn create(
        &self,
        id: SegmentId,
        first: u64,
        epoch: u64,
        recycled: Option<SegmentId>,
    ) -> Result<Active> {
        let wal_dir = &self.opts.dir;
        let path = seg_path(wal_dir, id);
        let mut region = match recycled {
            Some(old) => {
                self.dir.rename(&free_path(wal_dir, old), &path)?;
                self.dir.open_region(&path)?
            }
            None => self
                .dir
                .create_region(&path, self.opts.segment_size_bytes)?,
        };
        if self.opts.prefault {
            region.prefault()?;
        }
        let header = SegmentHeader {
            segment: id,
            first_entry: EntryId(first),
            epoch,
            segment_len: region.len(),
        };
        region.write_at(0, &header.encode())?;
        region.write_at(SEGMENT_HEADER_LEN as u64, &ZERO_SLOT)?;
        // IMPORTANT: header (and, for a new file, its allocation) durable
        // before the name is, and the name before any entry is acknowledged.
        self.dir.sync_file(&path)?;
        self.dir.sync_dir(wal_dir)?;
        Ok(active(region, id, first, epoch, SEGMENT_HEADER_LEN))
    }

    /// Takes the oldest pooled file of the configured segment size (files of
    /// another size stay in the pool until truncation deletes them).
    fn take_recyclable(&self, pool: &mut Vec<SegmentId>) -> Option<SegmentId> {
        let size = self.opts.segment_size_bytes;
        let i = pool.iter().position(|&id| {
            self.dir
                .len(&free_path(&self.opts.dir, id))
                .is_ok_and(|l| l == size)
        })?;
        Some(pool.remove(i))
    }

    /// Resumes the log whose segments are `segments` (non-empty, consecutive).
    fn resume(
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
        let path = seg_path(wal_dir, last);
        let region = match self.dir.open_region(&path) {
            Ok(r) => Some(r),
            // A zero-length file: its length never became durable.
            Err(Error::InvalidArgument { .. }) => None,
            Err(e) => return Err(e),
        };
        let header = region
            .as_ref()
            .map(|r| check_header(r.bytes(), last, &path));
        match (region, header) {
            (Some(region), Some(Ok(h))) => self.resume_into(region, &h, &path, pool),
            (region, header) => {
                // Never born: a crash interrupted its rotation. The log ends at
                // the previous segment's seal.
                let (first, epoch) = match segments.len() {
                    1 => (1, 0),
                    n => self.sealed_end(segments[n - 2])?,
                };
                // IMPORTANT: with no segment before it there is no expected
                // first id, as in the reader: a sole segment whose first slot
                // holds an entry was born, whatever its id (a truncated log
                // starts anywhere), so its bad header is damage.
                let expect = (segments.len() > 1).then_some(first);
                if let (Some(r), Some(Err(e))) = (&region, header) {
                    if !is_unborn(r.bytes(), expect) {
                        return Err(e);
                    }
                }
                drop(region);
                self.dir.remove(&path)?;
                self.dir.sync_dir(wal_dir)?;
                let epoch = successor(epoch.max(self.pool_epoch), &path, EPOCH_AT, EPOCH_RANGE)?;
                Ok((self.create(last, first, epoch, None)?, first, pool))
            }
        }
    }

    /// The entry id and epoch at which sealed segment `id` ends.
    fn sealed_end(&self, id: SegmentId) -> Result<(u64, u64)> {
        let path = seg_path(&self.opts.dir, id);
        let map = self.dir.map_read(&path)?;
        let h = check_header(&map, id, &path)?;
        let mut c = Cursor::new(&h);
        loop {
            match c.step(&map) {
                Ok(Step::Entry { .. }) => {}
                Ok(Step::Sealed { next }) => return Ok((next.0, c.epoch)),
                Ok(Step::End(_)) => {
                    return Err(Error::corrupt(path, c.off as u64, CorruptKind::Unsealed))
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
                    let from = first_entry_above(region.bytes(), proven, c.off);
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
        let window = match end {
            End::Torn(_) => usize::MAX,
            End::Zero => ZERO_EVIDENCE_WINDOW_BYTES,
            End::Stale => 0,
        };
        if window > 0 && durable_evidence(region.bytes(), c.off, c.next, c.epoch, window).is_some()
        {
            return Err(Error::corrupt(
                path,
                c.off as u64,
                CorruptKind::BadFrame("damaged frame below the durable point"),
            ));
        }
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
            let mut a = active(region, h.segment, h.first_entry.0, c.epoch, c.off);
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
            active(region, h.segment, h.first_entry.0, epoch, tail),
            c.next,
            pool,
        ))
    }
}

/// Offsets of the segment header's id and epoch fields, named in errors.
const SEGMENT_ID_AT: u64 = 16;
const EPOCH_AT: u64 = 32;
const SEGMENT_ID_RANGE: &str = "segment id out of range";
const EPOCH_RANGE: &str = "epoch out of range";

/// The value after `n`, an id or epoch read from `path`: values on disk can
/// be anything, and the largest has no successor.
fn successor(n: u64, path: &str, offset: u64, what: &'static str) -> Result<u64> {
    n.checked_add(1)
        .ok_or_else(|| Error::corrupt(path, offset, CorruptKind::BadHeader(what)))
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

fn active(region: Box<dyn Region>, id: SegmentId, first: u64, epoch: u64, off: usize) -> Active {
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
        opened_at: Instant::now(),
    }
}
