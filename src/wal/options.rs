//! Public knobs of the WAL: where it lives, how big its segments are, when it
//! syncs, how it reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::format::{FRAME_HEADER_LEN, SEAL_RESERVE, SEGMENT_HEADER_LEN, SEGMENT_SIZE_BYTES_MIN};
use super::observer::WalObserver;
use crate::error::{Error, Result};

/// Default size of a segment file.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default number of retired segments kept for reuse.
pub const RECYCLE_CAPACITY_DEFAULT: usize = 4;
/// Default for [`WalOptions::commit_spin`].
pub const COMMIT_SPIN_DEFAULT: Duration = Duration::from_micros(200);

/// When appends become durable without an explicit [`Wal::sync`](super::Wal::sync).
///
/// Whatever the policy, [`Wal::append_durable`](super::Wal::append_durable)
/// and [`Wal::sync`](super::Wal::sync) are always durability barriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Every `append` returns only once its entry is durable (group commit
    /// shares the barrier between concurrent appenders).
    Always,
    /// Every `n`th entry's `append` syncs everything appended so far.
    EveryN(u64),
    /// An `append` syncs if the last sync is older than this. Checked on
    /// append: an idle log is not synced in the background.
    Interval(Duration),
    /// Only explicit barriers sync. Unsynced entries may be lost in a crash
    /// (never partially: replay stops at a clean frame boundary).
    #[default]
    Manual,
}

/// How replay treats the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// The log must end cleanly. A torn or garbage tail in the final segment
    /// is [`Error::Corrupt`](crate::Error::Corrupt) with
    /// [`CorruptKind::TornTail`](crate::CorruptKind::TornTail). A crash leaves
    /// such a tail until a writer resumes the log.
    Strict,
    /// A torn or garbage tail in the final segment ends the log: what a crash
    /// leaves behind. Everything else — a bad frame below the durable point,
    /// a missing segment, an entry-id gap, a bad header — is still an error.
    BestEffort,
}

/// Options for [`Wal::open`](super::Wal::open). Built with chained setters:
///
/// ```
/// use std::time::Duration;
/// use zerodur::wal::{SyncPolicy, WalOptions};
/// let opts = WalOptions::new("wal")
///     .segment_size_bytes(16 * 1024 * 1024)
///     .max_segment_age(Duration::from_secs(300))
///     .recycle_capacity(8)
///     .sync_policy(SyncPolicy::EveryN(64))
///     .prefault(true);
/// # let _ = opts;
/// ```
#[derive(Clone)]
pub struct WalOptions {
    pub(crate) dir: String,
    pub(crate) segment_size_bytes: u64,
    pub(crate) max_segment_age: Option<Duration>,
    pub(crate) recycle_capacity: usize,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) prefault: bool,
    pub(crate) max_entry_bytes: Option<u64>,
    pub(crate) first_entry: u64,
    pub(crate) commit_spin: Duration,
    pub(crate) zero_ahead: bool,
    pub(crate) create_if_missing: bool,
    pub(crate) observer: Option<Arc<dyn WalObserver>>,
}

impl WalOptions {
    /// Defaults, with the WAL in subdirectory `dir` of the
    /// [`Directory`](crate::Directory): 64 MiB segments, no age limit, a
    /// recycle pool of 4, [`SyncPolicy::Manual`], prefaulting ahead of the tail, the largest
    /// entry a segment can hold.
    pub fn new(dir: impl Into<String>) -> WalOptions {
        WalOptions {
            dir: dir.into(),
            segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
            max_segment_age: None,
            recycle_capacity: RECYCLE_CAPACITY_DEFAULT,
            sync_policy: SyncPolicy::Manual,
            prefault: true,
            max_entry_bytes: None,
            first_entry: 1,
            commit_spin: COMMIT_SPIN_DEFAULT,
            zero_ahead: true,
            create_if_missing: true,
            observer: None,
        }
    }

    /// Size of each segment file (at least 8 KiB). Existing segments keep
    /// the size they were created with.
    pub fn segment_size_bytes(mut self, bytes: u64) -> Self {
        self.segment_size_bytes = bytes;
        self
    }

    /// Rotate to a new segment once the active one is this old (checked on
    /// append). Age counts from when the segment began, by the wall clock:
    /// the birth time is stored in the segment's header, so it survives
    /// reopening (a process that restarts more often than `age` still
    /// rotates).
    pub fn max_segment_age(mut self, age: Duration) -> Self {
        self.max_segment_age = Some(age);
        self
    }

    /// How many retired segments to keep for reuse; beyond that they are
    /// deleted.
    pub fn recycle_capacity(mut self, n: usize) -> Self {
        self.recycle_capacity = n;
        self
    }

    /// When appends are synced.
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// Fault in the active segment's pages ahead of the tail from a
    /// background thread (`MADV_POPULATE_WRITE` on
    /// [`FsDirectory`](crate::FsDirectory)), so appends copy into memory that
    /// is already mapped instead of taking a page fault every 4 KiB. On by
    /// default; costs one sleeping thread per WAL (started by its first
    /// append) and keeps up to 18 MiB ahead of the tail in the page cache. Off, appends fault their
    /// pages in themselves.
    pub fn prefault(mut self, yes: bool) -> Self {
        self.prefault = yes;
        self
    }

    /// Largest accepted payload, enforced at append with
    /// [`Error::EntryTooLarge`](crate::Error::EntryTooLarge). Capped by what
    /// a segment can hold.
    pub fn max_entry_bytes(mut self, bytes: u64) -> Self {
        self.max_entry_bytes = Some(bytes);
        self
    }

    /// The id of the first entry of a log created by this open (default 1).
    /// Ignored when the log exists. Use it to start a new WAL after a
    /// checkpoint that already includes entries up to `id - 1` (for example
    /// after restoring a checkpoint without its log), so ids are never
    /// reused.
    pub fn first_entry_id(mut self, id: super::EntryId) -> Self {
        self.first_entry = id.get();
        self
    }

    /// How long a thread waiting for another thread's group-commit barrier
    /// may spin (calling `sched_yield`, so runnable threads keep the CPU)
    /// before it sleeps. Default 200 µs.
    ///
    /// A waiter spins only when the barrier in flight is expected, from the
    /// last barrier's duration, to end within this time; on a device whose
    /// barriers take longer it sleeps at once. Spinning saves the wake-up of
    /// every released thread (measured on 2 vCPUs with 8 threads: 47 k/s
    /// sleeping, 65 k/s spinning) at the cost of CPU time while a barrier
    /// is in flight. `Duration::ZERO` always sleeps. A lone appender never
    /// waits for anyone, so this does not affect it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerodur::wal::WalOptions;
    ///
    /// // Never spin: for hosts where CPU time matters more than commit rate.
    /// let opts = WalOptions::new("wal").commit_spin(Duration::ZERO);
    /// # let _ = opts;
    /// ```
    pub fn commit_spin(mut self, spin: Duration) -> Self {
        self.commit_spin = spin;
        self
    }

    /// Whether durable appends into a newly created segment write zeros
    /// ahead of the tail (default true), a megabyte at a time, so that
    /// barriers rarely land on a block the file system still records as
    /// unwritten (`fallocate` leaves them so; the first barrier covering each
    /// block would also have to persist its conversion). Measured here with
    /// 8 threads: p90 barrier 150–210 µs without, 110–130 µs with.
    ///
    /// Turn it off on copy-on-write file systems (btrfs, ZFS), where the
    /// zeros are only extra writes, or where written bytes are metered. See
    /// [`Region::prewrite_zeros`](crate::Region::prewrite_zeros).
    pub fn zero_ahead(mut self, yes: bool) -> Self {
        self.zero_ahead = yes;
        self
    }

    /// Whether [`Wal::open`](super::Wal::open) may create a new, empty log
    /// when the WAL folder does not exist or holds no segment (default
    /// `true`). With `false`, opening what is not there is
    /// [`Error::NotFound`](crate::Error::NotFound) naming the folder: use it
    /// when a log must already exist (a restart), so a wrong path cannot
    /// silently start an empty log beside the real one.
    ///
    /// ```
    /// use zerodur::wal::{Wal, WalOptions};
    /// use zerodur::MemoryDirectory;
    ///
    /// let dir = MemoryDirectory::arc();
    /// let existing = WalOptions::new("wal").create_if_missing(false);
    /// assert!(Wal::open(dir.clone(), existing.clone()).unwrap_err().is_not_found());
    /// Wal::open(dir.clone(), WalOptions::new("wal"))?.close()?;
    /// Wal::open(dir, existing)?.close()?;
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// Receives an event for every append, sync, rotation, recycle,
    /// truncation and poisoning.
    pub fn observer(mut self, observer: Arc<dyn WalObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Checks the options and returns the effective maximum entry size.
    pub(crate) fn validate(&self) -> Result<u64> {
        crate::directory::path::check_dir(&self.dir)?;
        if self.segment_size_bytes < SEGMENT_SIZE_BYTES_MIN {
            return Err(Error::InvalidArgument {
                name: "segment_size_bytes",
                reason: format!(
                    "{} is below the minimum of {SEGMENT_SIZE_BYTES_MIN}",
                    self.segment_size_bytes
                ),
            });
        }
        if usize::try_from(self.segment_size_bytes).is_err() {
            return Err(Error::InvalidArgument {
                name: "segment_size_bytes",
                reason: "does not fit in the address space".into(),
            });
        }
        if self.first_entry == 0 || self.first_entry == u64::MAX {
            return Err(Error::InvalidArgument {
                name: "first_entry_id",
                reason: format!("{} is not a valid entry id", self.first_entry),
            });
        }
        if self.sync_policy == SyncPolicy::EveryN(0) {
            return Err(Error::InvalidArgument {
                name: "sync_policy",
                reason: "EveryN(0) would never sync; use EveryN(1) or Always".into(),
            });
        }
        let cap = segment_capacity(self.segment_size_bytes) as u64;
        let max = (cap - FRAME_HEADER_LEN as u64).min(u32::MAX as u64);
        match self.max_entry_bytes {
            Some(m) if m > max => Err(Error::InvalidArgument {
                name: "max_entry_bytes",
                reason: format!("{m} exceeds the {max} bytes a segment can hold"),
            }),
            Some(m) => Ok(m),
            None => Ok(max),
        }
    }
}

/// Bytes of a segment available to frames (header and seal reserve excluded),
/// rounded down to the frame alignment.
pub(crate) fn segment_capacity(segment_len: u64) -> usize {
    let usable = segment_len as usize - SEGMENT_HEADER_LEN - SEAL_RESERVE;
    usable - usable % super::format::FRAME_ALIGN
}

impl fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalOptions")
            .field("dir", &self.dir)
            .field("segment_size_bytes", &self.segment_size_bytes)
            .field("max_segment_age", &self.max_segment_age)
            .field("recycle_capacity", &self.recycle_capacity)
            .field("sync_policy", &self.sync_policy)
            .field("prefault", &self.prefault)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("first_entry", &self.first_entry)
            .field("commit_spin", &self.commit_spin)
            .field("zero_ahead", &self.zero_ahead)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}
