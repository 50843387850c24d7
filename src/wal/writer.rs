//! [`Wal`]: open or resume, append, sync, rotate.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use super::append_lock::{AppendGuard, AppendLock};
use super::commit::{Flushed, GroupCommit};
use super::format::{
    durable_lag, frame_len, put_frame, FrameHeader, FRAME_HEADER_LEN, KIND_ENTRY, KIND_ENTRY_CONT,
    LOCK_NAME, SEAL_RESERVE, ZERO_SLOT,
};
use super::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use super::observer::{Counters, WalEvent, WalStats};
use super::options::{segment_capacity, SyncPolicy, WalOptions};
use super::prefault::{self, Prefaulter};
use super::rules::{self, pool_path, segment_path, Listing};
use super::segment_files::{
    now_ms, seal, successor, write_close_marker, write_seal, write_session_marker, Opener, Resumed,
    EPOCH_AT, EPOCH_RANGE, SEGMENT_ID_AT, SEGMENT_ID_RANGE,
};
use super::{EntryId, SegmentId};
use crate::directory::path::join;
use crate::directory::{sync_parents, DirLock, Directory, Region, RegionFlush};
use crate::error::{Error, Result};

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
    pub(super) state: AppendLock<State>,
    pub(super) commit: GroupCommit,
    pub(super) counters: Counters,
    opened: Instant,
    /// Faults in the active segment's pages ahead of the tail. Started by
    /// the first append, not by open (a thread costs about 0.1 ms to start,
    /// as much as the rest of a clean resume); `None` inside when
    /// [`WalOptions::prefault`] is off or no thread could be started.
    prefaulter: OnceLock<Option<Prefaulter>>,
    _lock: DirLock,
}

pub(super) struct State {
    pub(super) active: Active,
    /// Id the next appended entry gets.
    pub(super) next_id: u64,
    /// Retired files available for reuse, oldest first.
    pub(super) pool: Vec<SegmentId>,
    /// Pooled files found at open rather than retired by this process.
    pub(super) unscanned_pool: BTreeSet<SegmentId>,
    /// Sealed segments not yet durable, oldest first (deferred rotations):
    /// the next barrier makes them durable, in order, before the active one.
    pub(super) unsynced: Vec<Unsynced>,
    /// Milliseconds since open of the last barrier (for `Interval`).
    last_sync_ms: u64,
    /// Entries appended since open (counted under the lock: no atomics on
    /// the append path).
    appends: u64,
    /// Payload bytes appended since open.
    bytes_appended: u64,
}

pub(super) struct Active {
    pub(super) region: Box<dyn Region>,
    pub(super) flusher: Arc<dyn RegionFlush>,
    pub(super) id: SegmentId,
    pub(super) first_entry: u64,
    pub(super) epoch: u64,
    /// Where the next frame goes.
    pub(super) write_off: usize,
    /// Bytes below this offset are durable.
    pub(super) synced_off: usize,
    /// In a segment created by this process (so still zeros past the
    /// tail): zeros have been written ahead up to this offset. `None` for
    /// recycled and resumed segments, whose blocks are written already or
    /// whose bytes past the tail are not known to be zeros.
    pub(super) prewritten_off: Option<usize>,
    /// When the segment began (milliseconds since the Unix epoch, from its
    /// header): `max_segment_age` counts from here, across reopens.
    pub(super) created_ms: u64,
    /// Pages up to this offset have been requested from the prefaulter
    /// (the segment's length when there is none).
    pub(super) prefault_want: usize,
    /// The segment's header as written (rewritten when a barrier clears
    /// [`SegmentHeader::predecessor_unsynced`]).
    pub(super) header: SegmentHeader,
    /// After a clean resume: the offset of the marker that ended the log,
    /// which the session's own resume marker replaces before the first
    /// frame is written (`FORMAT.md`, "Resume").
    pub(super) session_marker: Option<usize>,
}

/// A sealed segment whose last frames (and seal) a deferred rotation left
/// for the next barrier to make durable.
pub(super) struct Unsynced {
    pub(super) id: SegmentId,
    pub(super) region: Box<dyn Region>,
    pub(super) flusher: Arc<dyn RegionFlush>,
    /// Its header as written: once its predecessor is durable, the barrier
    /// clears the flag that says otherwise.
    pub(super) header: SegmentHeader,
    /// The bytes `from..to` (up to the end of the seal) are not durable.
    pub(super) from: usize,
    pub(super) to: usize,
}

impl Wal {
    /// Opens the WAL described by `opts` in `dir`: creates it if it does not
    /// exist, resumes it otherwise.
    ///
    /// Resume scans only the last segment: it finds the tail, fences off any
    /// leftover bytes after it with a resume marker (so they can never be
    /// replayed), and makes everything before it durable. After a
    /// [`close`](Wal::close) it writes nothing and syncs nothing: the first
    /// append makes the session's marker durable instead (one barrier over
    /// one frame).
    pub fn open(dir: Arc<dyn Directory>, opts: WalOptions) -> Result<Wal> {
        let max_entry = opts.validate()?;
        let wal_dir = opts.dir.clone();
        crate::directory::path::check_dir(&wal_dir)?;
        if !wal_dir.is_empty() && !dir.exists(&wal_dir)? {
            if !opts.create_if_missing {
                return Err(Error::NotFound {
                    path: wal_dir.into(),
                });
            }
            dir.create_dir_all(&wal_dir)?;
        }
        let lock = dir.lock(&join(&wal_dir, LOCK_NAME))?;
        let Listing { segments, pool } = rules::list_wal(&*dir, &wal_dir)?;
        if segments.is_empty() && !opts.create_if_missing {
            return Err(Error::NotFound {
                path: wal_dir.into(),
            });
        }
        // IMPORTANT: a pooled file is reused (overwritten) by a later
        // rotation: it must be a segment this WAL retired, never a damaged
        // or foreign file. New epochs must also exceed every pooled file's.
        let mut pool_epoch = (0, SegmentId(0));
        for &id in &pool {
            let path = pool_path(&wal_dir, id);
            let h = rules::check_pool_file(&dir.map_read(&path)?, id, &path)?;
            pool_epoch = pool_epoch.max((h.epoch, id));
        }
        let (pool_epoch, pool_newest) = pool_epoch;
        successor(
            pool_epoch,
            &pool_path(&wal_dir, pool_newest),
            EPOCH_AT,
            EPOCH_RANGE,
        )?;
        let unscanned_pool: BTreeSet<SegmentId> = pool.iter().copied().collect();
        let opener = Opener {
            dir: &*dir,
            opts: &opts,
            pool_epoch,
            unscanned_pool: &unscanned_pool,
        };
        let Resumed {
            active,
            next_id,
            pool,
            clean,
        } = match segments.last() {
            None => Resumed {
                active: opener.create(
                    SegmentId(1),
                    opts.first_entry,
                    pool_epoch + 1,
                    None,
                    false,
                )?,
                next_id: opts.first_entry,
                pool,
                clean: false,
            },
            Some(_) => opener.resume(&segments, pool)?,
        };
        // IMPORTANT: the WAL directory's own entry must be durable before
        // anything appended inside it is acknowledged -- also when it
        // already exists: a writer killed between creating it and this sync
        // left a name that a power loss can still take away. A clean resume
        // found a log whose previous writer did this sync at its own open
        // and closed cleanly; nothing written before this line is
        // acknowledged, and nothing is acknowledged before open returns.
        if !wal_dir.is_empty() && !clean {
            sync_parents(&*dir, &wal_dir)?;
        }
        let durable = next_id - 1;
        let spin = opts.commit_spin;
        let mut active = active;
        aim_prefault(None, opts.prefault, &mut active);
        Ok(Wal {
            dir,
            opts,
            max_entry,
            state: AppendLock::new(State {
                active,
                next_id,
                pool,
                unscanned_pool,
                unsynced: Vec::new(),
                last_sync_ms: 0,
                appends: 0,
                bytes_appended: 0,
            }),
            commit: GroupCommit::new(durable, spin),
            counters: Counters::default(),
            opened: Instant::now(),
            prefaulter: OnceLock::new(),
            _lock: lock,
        })
    }

    pub(super) fn lock_state(&self) -> AppendGuard<'_, State> {
        self.state.lock()
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

    /// Syncs and closes the WAL. After the barrier it writes a resume
    /// marker at the tail and makes it durable: its durable lag says every
    /// entry before it is durable, so the next [`Wal::open`] writes and
    /// syncs nothing (`FORMAT.md`, "Resume"). Dropping a `Wal` without `close` leaves that work to the
    /// next open.
    pub fn close(self) -> Result<()> {
        self.sync()?;
        let mut st = self.lock_state();
        self.commit.check()?;
        let next = st.next_id;
        let a = &mut st.active;
        if a.session_marker.is_some() {
            // Nothing appended since a clean resume: the marker that ended
            // the log still proves everything before it durable.
            return Ok(());
        }
        if a.write_off + 2 * FRAME_HEADER_LEN + SEAL_RESERVE > a.region.len() as usize {
            // IMPORTANT: no room for the marker, but a frame written after
            // the barrier must still prove it: the cleared flags of a
            // deferred rotation's successors are otherwise the only record
            // that their predecessors became durable, and one lost or
            // misdirected write of such a header could make a damaged
            // predecessor read as a torn tail (FORMAT.md, "Known limits").
            // A seal whose durable lag is zero proves every entry durable;
            // the next open finds a sealed final segment and starts the next
            // one, as after a crash in rotation.
            return seal(a, next, next - 1).map_err(|e| self.fail(e));
        }
        let path = segment_path(&self.opts.dir, a.id);
        let epoch = successor(a.epoch, &path, EPOCH_AT, EPOCH_RANGE)?;
        write_close_marker(a, next, epoch).map_err(|e| self.fail(e))
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
    /// lock held. Sealed segments a deferred rotation left unsynced go first,
    /// oldest first; once none is left, the active segment's header is
    /// rewritten to say its predecessor is durable (if it said otherwise),
    /// and its dirty range, header included, is flushed.
    fn flush_active(&self) -> Result<Flushed> {
        let t = Instant::now();
        let mut bytes = 0u64;
        let (flusher, start, end, upto, seg) = loop {
            let older: Vec<_> = self
                .lock_state()
                .unsynced
                .iter()
                .map(|u| (u.id, Arc::clone(&u.flusher), u.from, u.to))
                .collect();
            let older = (!older.is_empty()).then_some(older);
            let Some(older) = older else {
                if let Some(capture) = self.capture_active()? {
                    break capture;
                }
                // A rotation since the check: flush what it sealed first.
                continue;
            };
            {
                let _barrier = self.commit.barrier();
                // IMPORTANT: see below; checked under the barrier lock.
                self.commit.check()?;
                for (_, flusher, from, to) in &older {
                    flusher
                        .flush_range(*from as u64, (to - from) as u64)
                        .map_err(|e| self.fail(e))?;
                    bytes += (to - from) as u64;
                }
            }
            Counters::add(&self.counters.syncs, 1);
            let last = older.last().expect("non-empty").0;
            self.settle(&mut self.lock_state(), last)?;
        };
        let len = end + FRAME_HEADER_LEN - start;
        {
            let _barrier = self.commit.barrier();
            // IMPORTANT: a rotation's barrier may have failed since the
            // capture; its error is reported once, so this barrier's success
            // would prove nothing.
            self.commit.check()?;
            flusher
                .flush_range(start as u64, len as u64)
                .map_err(|e| self.fail(e))?;
        }
        bytes += len as u64;
        Counters::add(&self.counters.syncs, 1);
        {
            let mut st = self.lock_state();
            if st.active.id == seg {
                st.active.synced_off = st.active.synced_off.max(end);
            } else if let Some(u) = st.unsynced.iter_mut().find(|u| u.id == seg) {
                // Sealed since the capture: only what follows is unsynced.
                u.from = u.from.max(end).min(u.to);
            }
            st.last_sync_ms = self.opened.elapsed().as_millis() as u64;
        }
        self.emit(|| WalEvent::Sync {
            durable: (upto > 0).then_some(EntryId(upto)),
            bytes,
            elapsed: t.elapsed(),
        });
        Ok(Flushed { durable: upto })
    }

    /// Under the append lock: the active segment's flush handle, dirty range,
    /// highest id and segment id, for the barrier; `None` if a sealed
    /// segment is waiting to become durable first. Rewrites the header to
    /// clear [`SegmentHeader::predecessor_unsynced`] when it may.
    #[allow(clippy::type_complexity)]
    fn capture_active(
        &self,
    ) -> Result<Option<(Arc<dyn RegionFlush>, usize, usize, u64, SegmentId)>> {
        let mut st = self.lock_state();
        if !st.unsynced.is_empty() {
            return Ok(None);
        }
        let mut start = st.active.synced_off;
        if st.active.header.predecessor_unsynced {
            // IMPORTANT: only now, every segment before this one durable,
            // may the header say so; this barrier makes it durable.
            st.active.header.predecessor_unsynced = false;
            let h = st.active.header.encode();
            st.active.region.write_at(0, &h).map_err(|e| self.fail(e))?;
            start = 0;
        }
        st.active.prewrite_ahead();
        let a = &st.active;
        Ok(Some((
            Arc::clone(&a.flusher),
            start,
            a.write_off,
            st.next_id - 1,
            a.id,
        )))
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
        if st.active.session_marker.is_some() {
            self.start_session(&mut st)?;
        }
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
        let at = st.active.write_off;
        let last_index = payloads.len() - 1;
        // One write: every frame, then the zero slot that ends the log.
        let mut fill = |dst: &mut [u8]| {
            let mut off = 0;
            for (i, p) in payloads.iter().enumerate() {
                let id = first + i as u64;
                let header = FrameHeader {
                    len: p.len() as u32,
                    kind: if i < last_index {
                        KIND_ENTRY_CONT
                    } else {
                        KIND_ENTRY
                    },
                    entry: EntryId(id),
                    epoch,
                    durable_lag: durable_lag(id, durable),
                };
                off += put_frame(&mut dst[off..], &header, p);
            }
            dst[off..].fill(0);
        };
        st.active
            .region
            .write_with(at as u64, total + ZERO_SLOT.len(), &mut fill)
            .map_err(|e| self.fail(e))?;
        let off = at + total;
        let bytes = payloads.iter().map(|p| p.len() as u64).sum::<u64>();
        st.active.write_off = off;
        // No write-back is started from here: cleaning pages of a mapping
        // that threads on other CPUs use (the prefaulter) costs a TLB
        // shootdown, an interrupt per 4 KiB page; `sync_file_range` every
        // 4 MiB was measured at a quarter of a buffered appender's time. The
        // barrier, or the kernel's own write-back, writes them.
        let a = &st.active;
        if off + prefault::LEAD_BYTES > a.prefault_want && a.prefault_want < a.region.len() as usize
        {
            self.request_prefault(&mut st.active);
        }
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
        let too_old = self.opts.max_segment_age.is_some_and(|age| {
            u128::from(now_ms().saturating_sub(a.created_ms)) >= age.as_millis()
        });
        if fits && !(too_old && has_entries) {
            return Ok(());
        }
        self.rotate(st)
    }

    /// Seals the active segment and activates the next one (recycled if the
    /// pool has a file), without waiting for the disk: the sealed segment
    /// joins [`State::unsynced`], the new one's header says its predecessor
    /// is not durable yet, and the next barrier makes both durable in order
    /// (`FORMAT.md`, "Deferred rotation"). Only when
    /// [`MAX_UNSYNCED_SEGMENTS`] are already waiting does rotation run that
    /// barrier itself, so a crash never leaves more than that many segments
    /// to judge, and resume never has more to walk.
    fn rotate(&self, st: &mut State) -> Result<()> {
        let next_id = st.next_id;
        let from = st.active.id;
        let path = segment_path(&self.opts.dir, from);
        let new_id = SegmentId(successor(from.0, &path, SEGMENT_ID_AT, SEGMENT_ID_RANGE)?);
        let epoch = successor(st.active.epoch, &path, EPOCH_AT, EPOCH_RANGE)?;
        if st.unsynced.len() >= MAX_UNSYNCED_SEGMENTS {
            self.sync_unsynced_locked(st)?;
        }
        let seal_end =
            write_seal(&mut st.active, next_id, self.commit.durable()).map_err(|e| self.fail(e))?;
        let opener = Opener {
            dir: &*self.dir,
            opts: &self.opts,
            pool_epoch: 0,
            unscanned_pool: &st.unscanned_pool,
        };
        let recycled = opener.take_recyclable(&mut st.pool);
        let sealed = std::mem::replace(
            &mut st.active,
            opener.create(new_id, next_id, epoch, recycled, true)?,
        );
        st.unsynced.push(Unsynced {
            id: from,
            flusher: sealed.flusher,
            header: sealed.header,
            from: sealed.synced_off,
            to: seal_end,
            region: sealed.region,
        });
        aim_prefault(self.prefaulter.get(), self.opts.prefault, &mut st.active);
        Counters::add(&self.counters.rotations, 1);
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

    /// The first append after a clean resume: writes the session's resume
    /// marker over the one that ended the log and makes it durable (a
    /// barrier) before any frame follows it.
    #[cold]
    fn start_session(&self, st: &mut State) -> Result<()> {
        let _barrier = self.commit.barrier();
        self.commit.check()?;
        let next = st.next_id;
        write_session_marker(&mut st.active, next).map_err(|e| self.fail(e))?;
        Counters::add(&self.counters.syncs, 1);
        Ok(())
    }

    /// Makes every segment in [`State::unsynced`] durable, in order, under
    /// the append lock (rotation's bound on deferred segments).
    pub(super) fn sync_unsynced_locked(&self, st: &mut State) -> Result<()> {
        {
            let _barrier = self.commit.barrier();
            // IMPORTANT: checked under the barrier lock, as every barrier is:
            // a failed barrier's write-back error is reported once.
            self.commit.check()?;
            for u in &st.unsynced {
                u.flusher
                    .flush_range(u.from as u64, (u.to - u.from) as u64)
                    .map_err(|e| self.fail(e))?;
            }
        }
        Counters::add(&self.counters.syncs, 1);
        if let Some(last) = st.unsynced.last().map(|u| u.id) {
            self.settle(st, last)?;
        }
        // Every entry before the active segment is durable now.
        self.commit.advance(st.active.first_entry - 1);
        Ok(())
    }

    /// Under the append lock, once the sealed segments up to `upto` in
    /// [`State::unsynced`] are durable: drops them from the list, and
    /// rewrites (and flushes) the header of each whose flag still says its
    /// predecessor is not durable. Every predecessor is durable now (an
    /// earlier entry of this batch, or made durable before it), and a
    /// cleared flag is what lets a reader tell later damage from a crash
    /// (`FORMAT.md`, "Deferred rotation").
    fn settle(&self, st: &mut State, upto: SegmentId) -> Result<()> {
        let n = st.unsynced.iter().take_while(|u| u.id <= upto).count();
        let done: Vec<Unsynced> = st.unsynced.drain(..n).collect();
        let _barrier = self.commit.barrier();
        self.commit.check()?;
        for mut u in done {
            if u.header.predecessor_unsynced {
                u.header.predecessor_unsynced = false;
                u.region
                    .write_at(0, &u.header.encode())
                    .map_err(|e| self.fail(e))?;
                u.flusher
                    .flush_range(0, SEGMENT_HEADER_LEN as u64)
                    .map_err(|e| self.fail(e))?;
            }
        }
        Ok(())
    }

    /// Keeps the prefault request [`prefault::LEAD_BYTES`] ahead of the tail
    /// (called once the tail comes within that distance of it).
    /// The first call starts the thread and points it at `a`.
    fn request_prefault(&self, a: &mut Active) {
        let mut started = false;
        let p = self.prefaulter.get_or_init(|| {
            started = true;
            self.opts.prefault.then(Prefaulter::start).flatten()
        });
        if started {
            return retarget_prefault(p.as_ref(), a);
        }
        let len = a.region.len() as usize;
        a.prefault_want = (a.write_off + prefault::LEAD_BYTES + prefault::CHUNK_BYTES).min(len);
        if let Some(p) = p {
            p.extend(a.prefault_want);
        }
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

/// Sets up the prefault request of a new active segment `a`: through the
/// prefaulter if it was started (`started`); otherwise, if prefaulting is
/// `enabled`, so that the next append asks (and starts the thread), and
/// never if it is not.
fn aim_prefault(started: Option<&Option<Prefaulter>>, enabled: bool, a: &mut Active) {
    match started {
        Some(p) => retarget_prefault(p.as_ref(), a),
        None if enabled => a.prefault_want = a.write_off,
        None => a.prefault_want = a.region.len() as usize,
    }
}

/// Points the prefaulter (if any) at the new active segment `a`, from its
/// tail on.
fn retarget_prefault(p: Option<&Prefaulter>, a: &mut Active) {
    let len = a.region.len() as usize;
    a.prefault_want = match p {
        Some(p) => {
            let want = (a.write_off + prefault::LEAD_BYTES).min(len);
            p.retarget(Arc::clone(&a.flusher), a.write_off, want);
            want
        }
        None => len,
    };
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

/// Most sealed segments a rotation leaves for a later barrier (see
/// [`Wal::rotate`]): with 64 MiB segments, 256 MiB of appends may wait for
/// the disk before a rotation does.
pub(super) const MAX_UNSYNCED_SEGMENTS: usize = 4;

/// Zeros are written ahead of the tail this much at a time...
const PREWRITE_CHUNK_BYTES: usize = 1024 * 1024;
/// ...once the tail is this close to where they end.
const PREWRITE_LEAD_BYTES: usize = 512 * 1024;
/// Only barriers over fewer dirty bytes than this write zeros ahead.
const PREWRITE_SMALL_BARRIER_BYTES: usize = 64 * 1024;

impl Active {
    /// Durable appends into a new segment: keeps its blocks ahead of the
    /// tail written (zeros), so a barrier rarely lands on a block the file
    /// system still has to convert from unwritten (see
    /// [`Region::prewrite_zeros`]). Called by leaders under the append lock
    /// (no frame can be copied into the range meanwhile); buffered-only
    /// workloads never pay for it, nor do barriers over large ranges (a
    /// conversion or two is noise there, and zeroing a megabyte per
    /// megabyte appended would not be). Measured here with 8 threads: p90
    /// barrier 150-210 µs without, 110-130 µs with.
    fn prewrite_ahead(&mut self) {
        let Some(done) = self.prewritten_off else {
            return;
        };
        let len = self.region.len() as usize;
        let small_barrier = self.write_off - self.synced_off < PREWRITE_SMALL_BARRIER_BYTES;
        if !small_barrier || self.write_off + PREWRITE_LEAD_BYTES < done || done >= len {
            return;
        }
        // IMPORTANT: never below the tail: those bytes hold frames.
        let from = done.max(self.write_off);
        let to = (from + PREWRITE_CHUNK_BYTES).min(len);
        // A hint: on failure, stop hinting; the barrier reports real errors.
        self.prewritten_off = match self.region.prewrite_zeros(from as u64, (to - from) as u64) {
            Ok(()) => Some(to),
            Err(_) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryDirectory;

    fn prefaulter_state(w: &Wal) -> Option<bool> {
        w.prefaulter.get().map(Option::is_some)
    }

    /// Open starts no thread (a clean resume stays cheap); the first append
    /// starts it, and a rotation before any request leaves the next append
    /// to start it. With `prefault(false)` none is ever started.
    #[test]
    fn the_prefaulter_starts_with_the_first_append_and_only_when_enabled() {
        let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
        let opts = WalOptions::new("wal").segment_size_bytes(64 << 10);
        let w = Wal::open(Arc::clone(&dir), opts.clone()).unwrap();
        assert_eq!(prefaulter_state(&w), None);
        w.append(b"one").unwrap();
        assert_eq!(prefaulter_state(&w), Some(true));
        // Rotations keep it pointed at the active segment.
        while w.active_segment().get() < 3 {
            w.append(&[7; 1000]).unwrap();
        }
        let st = w.lock_state();
        assert!(st.active.prefault_want > st.active.write_off);
        drop(st);
        w.close().unwrap();

        let w = Wal::open(Arc::clone(&dir), opts.clone()).unwrap();
        assert_eq!(prefaulter_state(&w), None, "resume starts no thread");
        w.append(b"two").unwrap();
        assert_eq!(prefaulter_state(&w), Some(true));
        w.close().unwrap();

        let off = opts.prefault(false);
        let w = Wal::open(Arc::clone(&dir), off).unwrap();
        for _ in 0..200 {
            w.append(&[7; 1000]).unwrap();
        }
        assert_ne!(prefaulter_state(&w), Some(true));
        w.close().unwrap();
    }
}
