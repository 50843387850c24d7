//! Reading a record log: validate once, then iterate the records in place.

use std::fmt;
use std::iter::FusedIterator;

use super::format::{self, HEADER_SIZE_BYTES};
use super::{RecordLog, RecordLogMode};
use crate::directory::{Directory, ReadMap};
use crate::error::Result;

/// The records of a log as they were when read: validated once (every CRC
/// checked), then iterated in place from a read-only view of the file (a
/// memory map on [`FsDirectory`](crate::FsDirectory)). Records appended later
/// are not included.
pub struct Records {
    map: ReadMap,
    end: usize,
    count: u64,
}

impl Records {
    /// Reads and validates the log at `path` in `mode`, without changing
    /// anything, not even a torn tail (which best-effort mode leaves out).
    pub(super) fn read(dir: &dyn Directory, path: &str, mode: RecordLogMode) -> Result<Records> {
        let map = dir.map_read(path)?;
        let scan = format::scan(&map, path, mode)?;
        Ok(Records {
            map,
            end: scan.end,
            count: scan.count,
        })
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records in append order, borrowed from the file's bytes. Payloads
    /// are not aligned: copy before casting.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            // `end` is within the map: `scan` found it there.
            bytes: &self.map[..self.end],
            pos: HEADER_SIZE_BYTES,
            remaining: self.count,
        }
    }

    /// Offset just after the last valid record: the file's length, unless a
    /// torn tail follows (best-effort reads only).
    pub fn valid_len_bytes(&self) -> u64 {
        self.end as u64
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = &'a [u8];
    type IntoIter = RecordIter<'a>;

    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("count", &self.count)
            .field("valid_len_bytes", &self.end)
            .finish()
    }
}

/// Iterator over the payloads of [`Records`], from [`Records::iter`].
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    remaining: u64,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (payload, next) = format::next_frame(self.bytes, self.pos)?;
        self.pos = next;
        self.remaining = self.remaining.saturating_sub(1);
        Some(payload)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for RecordIter<'_> {}
impl FusedIterator for RecordIter<'_> {}

impl fmt::Debug for RecordIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordIter")
            .field("pos", &self.pos)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl RecordLog {
    /// Reads the log at `path` without opening it for appending and without
    /// changing anything: for inspection tools and readers running beside a
    /// writer. In [`RecordLogMode::BestEffort`] a torn tail is left out (and
    /// left in place); in [`RecordLogMode::Strict`] it is an error.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use zerodur::{MemoryDirectory, RecordLog, RecordLogMode};
    ///
    /// let dir = MemoryDirectory::new();
    /// let mut log = RecordLog::open(Arc::new(dir.clone()), "meta.log")?;
    /// log.append(b"one")?;
    /// log.sync()?;
    /// let records = RecordLog::read(&dir, "meta.log", RecordLogMode::Strict)?;
    /// assert_eq!(records.iter().next(), Some(&b"one"[..]));
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no log; for a
    /// bad file header, `Corrupt`, `UnsupportedVersion` or
    /// `ChecksumMismatch`; in both modes, `Corrupt` at the offset of a bad
    /// frame that a later frame proves durable (`BelowDurablePoint`) or that
    /// no crash can leave; in strict mode, also the torn-tail errors of
    /// [`RecordLogMode::Strict`].
    pub fn read(dir: &dyn Directory, path: &str, mode: RecordLogMode) -> Result<Records> {
        Records::read(dir, path, mode)
    }
}
