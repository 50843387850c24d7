//! Observability: an event hook and cheap counters.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{EntryId, SegmentId};

/// Something the WAL did, reported to a [`WalObserver`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalEvent {
    /// Entries `first..=last` were copied into the log (not yet durable).
    Append {
        /// First id of the batch.
        first: EntryId,
        /// Last id of the batch.
        last: EntryId,
        /// Payload bytes.
        bytes: u64,
    },
    /// Every entry up to `durable` is durable.
    Sync {
        /// Highest durable id.
        durable: Option<EntryId>,
        /// Bytes flushed by this barrier.
        bytes: u64,
        /// Time spent in the barrier.
        elapsed: Duration,
    },
    /// The active segment was sealed and `to` became active.
    Rotate {
        /// The sealed segment.
        from: SegmentId,
        /// The new active segment.
        to: SegmentId,
        /// Whether `to` reuses a recycled file.
        recycled: bool,
    },
    /// A retired segment was moved into the recycle pool.
    Recycle {
        /// The retired segment.
        segment: SegmentId,
    },
    /// A retired segment was deleted (the pool was full).
    Truncate {
        /// The deleted segment.
        segment: SegmentId,
    },
    /// A write or barrier failed; the WAL refuses all further work.
    Poison {
        /// The failure.
        cause: String,
    },
}

/// Receives [`WalEvent`]s. Called synchronously, sometimes with internal
/// locks held: keep it short and never call back into the WAL.
pub trait WalObserver: Send + Sync {
    /// One event.
    fn on_event(&self, event: &WalEvent);
}

impl fmt::Debug for dyn WalObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WalObserver")
    }
}

/// Counters since the WAL was opened, from [`Wal::stats`](super::Wal::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// Entries appended.
    pub appends: u64,
    /// Payload bytes appended.
    pub bytes_appended: u64,
    /// Barriers issued (msync calls).
    pub syncs: u64,
    /// Rotations.
    pub rotations: u64,
    /// Rotations that reused a recycled file.
    pub recycled_reuses: u64,
    /// Segments retired by truncation (recycled or deleted).
    pub segments_retired: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) syncs: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) recycled_reuses: AtomicU64,
    pub(crate) segments_retired: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WalStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WalStats {
            appends: 0,
            bytes_appended: 0,
            syncs: g(&self.syncs),
            rotations: g(&self.rotations),
            recycled_reuses: g(&self.recycled_reuses),
            segments_retired: g(&self.segments_retired),
        }
    }
}
