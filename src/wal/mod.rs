//! The write-ahead log: preallocated, recyclable, memory-mapped segments made
//! durable with `msync` barriers, replayed zero-copy.
//!
//! - [`Wal`] appends (from any number of threads: it is `Send + Sync`),
//!   syncs with group commit, rotates, recycles and truncates segments.
//! - [`WalReader`] replays, borrowing every payload straight from the mapping,
//!   as raw bytes or as checked `&Archived<E>`.
//!
//! The bytes on disk are specified in `FORMAT.md`.
//!
//! ```
//! use std::sync::Arc;
//! use zerodur::{Directory, MemoryDirectory};
//! use zerodur::wal::{ReadMode, Wal, WalOptions, WalReader};
//!
//! let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
//! let wal = Wal::open(dir.clone(), WalOptions::new("wal"))?;
//! let a = wal.append(b"first")?;
//! let b = wal.append_durable(b"second")?; // returns once both are durable
//! assert_eq!((a.get(), b.get()), (1, 2));
//! drop(wal);
//!
//! let mut seen = Vec::new();
//! WalReader::open(dir, "wal", ReadMode::Strict)?
//!     .replay(None, |id, bytes| { seen.push((id.get(), bytes.to_vec())); Ok(()) })?;
//! assert_eq!(seen, [(1, b"first".to_vec()), (2, b"second".to_vec())]);
//! # Ok::<(), zerodur::Error>(())
//! ```

// The one unsafe module outside `mmap`: a lock is an `UnsafeCell` behind an
// atomic flag (see its docs for why `std::sync::Mutex` costs too much here).
#[allow(unsafe_code)]
mod append_lock;
mod commit;
pub(crate) mod format;
mod maintenance;
mod observer;
mod options;
mod prefault;
mod reader;
pub(crate) mod rules;
mod salvage;
pub(crate) mod segment;
mod segment_files;
mod writer;

use std::fmt;

pub use maintenance::SegmentRange;
pub use observer::{WalEvent, WalObserver, WalStats};
pub use options::{ReadMode, SyncPolicy, WalOptions};
pub use reader::{Entries, Entry, ReplaySummary, WalReader};
pub use salvage::{
    salvage, DroppedSegment, LostEntries, SalvageOptions, SalvageReport, SalvageStop,
};
pub use writer::Wal;

/// The id of a WAL entry: consecutive, starting at 1, assigned in append
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub(crate) u64);

impl EntryId {
    /// Wraps a raw id.
    pub const fn new(id: u64) -> EntryId {
        EntryId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id after this one.
    pub const fn next(self) -> EntryId {
        EntryId(self.0 + 1)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of a WAL segment file: consecutive, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub(crate) u64);

impl SegmentId {
    /// Wraps a raw id.
    pub const fn new(id: u64) -> SegmentId {
        SegmentId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
