//! The record log: an append-only single file of CRC-framed records, for
//! metadata streams (manifests, epoch changes, configuration history).
//!
//! Each record is framed with its length, its own offset in the file, a
//! *synced claim* (a file length that was durable when it was written) and a
//! CRC over all of them and the payload, after a versioned file header.
//! [`RecordLog::open`] creates the file atomically (its name never appears
//! without a complete, durable header) or opens it and, if a crash left a
//! torn tail (a partial frame, a bad CRC, zeros), cuts it and makes the cut
//! durable before anything can be appended, so bytes of the discarded tail
//! can never reappear behind new records.
//!
//! Only what a crash can produce is repaired. A crash tears only what was
//! never made durable, so a bad frame that a later frame's synced claim
//! proves durable is damage, not a tail: [`Error::Corrupt`] with
//! [`CorruptKind::BelowDurablePoint`](crate::CorruptKind::BelowDurablePoint)
//! in every mode, and nothing is cut. The records of the last sync have no
//! later frame to vouch for them: damage to them cannot be told from a torn
//! write (strict mode reports it, best effort cuts it). `FORMAT.md`
//! ("Record log") has the full decision table.
//!
//! Durability: [`RecordLog::append`] makes nothing durable;
//! [`RecordLog::sync`] makes every record appended so far durable. After a
//! crash, reopening yields a prefix of the appended records that contains at
//! least every record appended before the last successful `sync`. A failed
//! write or sync **poisons** the handle: every later call fails with
//! [`Error::Poisoned`], since nothing appended since
//! the last successful sync can be trusted (reopen to continue).
//!
//! One writer per file: [`RecordLog::open`] takes the exclusive lock
//! `{path}.lock` (a file beside the log, held with `flock` on
//! [`FsDirectory`](crate::FsDirectory)), so a second writer, in this process
//! or another, gets [`Error::Locked`] instead of
//! interleaving frames or cutting a tail still being written. Reading
//! ([`RecordLog::read`]) takes no lock.
//!
//! ```
//! use std::sync::Arc;
//! use zerodur::{CrashPolicy, MemoryDirectory, RecordLog};
//!
//! let dir = MemoryDirectory::new();
//! let mut log = RecordLog::open(Arc::new(dir.clone()), "manifest.log")?;
//! log.append(b"add segment 1")?;
//! log.append(b"add segment 2")?;
//! log.sync()?;
//! log.append(b"never synced")?;
//!
//! // Whatever a power loss keeps, the synced records are there, in order.
//! let after = dir.crash_image(&CrashPolicy::drop_all());
//! let log = RecordLog::open(Arc::new(after), "manifest.log")?;
//! let records = log.records()?;
//! let got: Vec<&[u8]> = records.iter().collect();
//! assert_eq!(got, [&b"add segment 1"[..], b"add segment 2"]);
//! # Ok::<(), zerodur::Error>(())
//! ```

mod format;
mod reader;
mod salvage;
mod writer;

pub use reader::{RecordIter, Records};
pub use salvage::RecordSalvageReport;
pub use writer::RecordLog;

use crate::error::{Error, Result};
use format::RECORD_SIZE_BYTES_MAX_DEFAULT;

/// What reading does with a torn tail: bytes after the last valid frame
/// that no later frame proves durable. Everything else that does not decode
/// is an error in both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordLogMode {
    /// A torn tail (zeros, an incomplete frame or a bad CRC where the next
    /// frame should start, with no valid frame after it claiming that offset
    /// durable) ends the log; [`RecordLog::open`] cuts it. This is what a
    /// crash during unsynced appends leaves. Damage below the durable point
    /// is still [`Error::Corrupt`] and is never cut.
    #[default]
    BestEffort,
    /// Every byte after the header must be a valid frame. A torn tail is an
    /// error at its offset: [`Error::Corrupt`] with `BadFrame("zero
    /// padding")` if the frame header there is zeros, `Corrupt` with
    /// `TornTail` if the frame runs past the end of the file,
    /// [`Error::ChecksumMismatch`] for a bad CRC; nothing is cut.
    Strict,
}

/// How [`RecordLog::open_with`] opens a log.
///
/// ```
/// use zerodur::{RecordLogMode, RecordLogOptions};
/// let mut options = RecordLogOptions::default();
/// options.mode = RecordLogMode::Strict;
/// options.max_record_size_bytes = 4096;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordLogOptions {
    /// How frames that do not decode are treated (default:
    /// [`RecordLogMode::BestEffort`]).
    pub mode: RecordLogMode,
    /// The largest record [`RecordLog::append`] accepts (default 16 MiB; the
    /// format's limit is `u32::MAX`). Larger records are refused with
    /// [`Error::EntryTooLarge`] and not written.
    /// Reading accepts any record the format can hold, so lowering the limit
    /// never hides records already written.
    pub max_record_size_bytes: u32,
}

impl Default for RecordLogOptions {
    /// Best-effort mode, records up to 16 MiB.
    fn default() -> Self {
        RecordLogOptions {
            mode: RecordLogMode::BestEffort,
            max_record_size_bytes: RECORD_SIZE_BYTES_MAX_DEFAULT,
        }
    }
}

impl RecordLogOptions {
    /// `Err(EntryTooLarge)` if a record of `len` bytes exceeds the limit.
    fn check_record(&self, len: usize) -> Result<()> {
        let max = u64::from(self.max_record_size_bytes);
        if len as u64 > max {
            return Err(Error::EntryTooLarge {
                len: len as u64,
                max,
            });
        }
        Ok(())
    }
}
