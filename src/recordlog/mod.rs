//! The record log: an append-only single file of CRC-framed records, for
//! metadata streams (manifests, epoch changes, configuration history).
//!
//! Each record is framed with its length and a CRC over length and payload,
//! after a versioned file header. [`RecordLog::open`] creates the file
//! atomically (its name never appears without a complete, durable header) or
//! opens it and, if a crash left a torn tail (a partial frame, a bad CRC,
//! zeros), cuts it and makes the cut durable before anything can be appended,
//! so bytes of the discarded tail can never reappear behind new records.
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
mod writer;

pub use reader::{RecordIter, Records};
pub use writer::RecordLog;

use crate::error::{Error, Result};
use format::RECORD_SIZE_BYTES_MAX_DEFAULT;

/// What reading does with frames that do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordLogMode {
    /// The first frame that is incomplete or fails its CRC ends the log; it
    /// and everything after it are a torn tail, which
    /// [`RecordLog::open`] cuts. This is what a crash during unsynced
    /// appends leaves. It cannot tell such a tail from damage to synced
    /// records, which it would also cut: use `Strict` to find out.
    #[default]
    BestEffort,
    /// Every byte after the header must be a valid frame. Zeros where a
    /// frame should start (at the end or mid-file) are [`Error::Corrupt`]
    /// with `BadFrame("zero padding")`, a frame running past the end of the
    /// file is `Corrupt` with `TornTail`, a bad CRC is
    /// [`Error::ChecksumMismatch`]; nothing is cut.
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
