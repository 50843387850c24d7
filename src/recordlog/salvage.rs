//! Salvage: copying the longest valid prefix of a damaged record log into a
//! new one, on request, and reporting what was left behind. The scan in
//! `format.rs` decides where the prefix ends; the source is only read.

use std::fmt;
use std::sync::Arc;

use super::format::{self, HEADER_SIZE_BYTES};
use super::{RecordLog, RecordLogMode, RecordLogOptions};
use crate::directory::{path, Directory};
use crate::error::{Error, Result};

/// What [`RecordLog::salvage`] kept, where it stopped and what it left
/// behind. `Display` writes a few lines of prose for an operator.
///
/// ```
/// use zerodur::{MemoryDirectory, RecordLog};
///
/// let src = MemoryDirectory::arc();
/// let mut log = RecordLog::open(src.clone(), "meta.log")?;
/// log.append(b"one")?;
/// log.sync()?;
/// drop(log);
///
/// let report = RecordLog::salvage(src, "meta.log", MemoryDirectory::arc(), "meta.log")?;
/// assert!(report.clean);
/// assert_eq!((report.kept, report.dropped_bytes), (1, 0));
/// println!("{report}");
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordSalvageReport {
    /// The source log's path.
    pub source: String,
    /// The new log's path.
    pub destination: String,
    /// Records kept (copied to the new log, in order).
    pub kept: u64,
    /// Offset in the source just after the last record kept: where the
    /// valid prefix ends (0 if the file header itself is bad, 16 if no
    /// record is valid).
    pub stop_offset: u64,
    /// Bytes of the source from `stop_offset` to its end, not salvaged.
    pub dropped_bytes: u64,
    /// The scan ended without an error: every record a best-effort read
    /// yields was kept, and the new log is a copy.
    pub clean: bool,
    /// The source ended in a torn tail (bytes of unsynced appends a crash
    /// left in part; `dropped_bytes` of them), which opening would cut too.
    pub torn_tail: bool,
    /// The error the scan stopped with (it names the file and, for damaged
    /// frames, `stop_offset`).
    pub error: Option<Arc<Error>>,
}

impl RecordLog {
    /// Copies the records of the longest valid prefix of the log at
    /// `src_path` in `src_dir` into a new log at `dst_path` in `dst_dir`,
    /// synced, and reports what was kept and dropped.
    ///
    /// This is the only way zerodur gives up synced records, and only on
    /// request: [`RecordLog::open`] and [`RecordLog::read`] report damage as
    /// errors and never cut it.
    ///
    /// - The records kept are those the scan of a best-effort read accepts
    ///   before it stops: all of them for a log that reads, the ones before
    ///   a torn tail (which opening would cut too), or the ones before the
    ///   damage it reports as an error (a bad file header keeps none).
    /// - The source is never modified: it is only read, without its lock.
    /// - The new log is created as [`RecordLog::open`] creates one (records
    ///   of any size the format holds are accepted) and synced before this
    ///   returns.
    ///
    /// ```
    /// use zerodur::{Directory, MemoryDirectory, RecordLog, RecordLogMode};
    ///
    /// let src = MemoryDirectory::arc();
    /// let mut log = RecordLog::open(src.clone(), "meta.log")?;
    /// for r in [&b"one"[..], b"two", b"three"] {
    ///     log.append(r)?;
    ///     log.sync()?;
    /// }
    /// drop(log);
    /// // Rot a byte of the second record (frames: 24-byte header + payload,
    /// // padded to 8; the first starts at 16).
    /// let mut bytes = src.read("meta.log")?;
    /// bytes[48 + 24] ^= 1;
    /// src.atomic_write("meta.log", &bytes)?;
    ///
    /// let dst = MemoryDirectory::arc();
    /// let report = RecordLog::salvage(src.clone(), "meta.log", dst.clone(), "kept.log")?;
    /// assert_eq!((report.kept, report.stop_offset), (1, 48));
    /// assert_eq!(src.read("meta.log")?, bytes); // the source is untouched
    /// let kept = RecordLog::read(&*dst, "kept.log", RecordLogMode::Strict)?;
    /// assert_eq!(kept.iter().collect::<Vec<_>>(), [&b"one"[..]]);
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if `dst_path` exists; [`Error::NotFound`] if
    /// the source does not; an invalid path; any error creating or writing
    /// the new log; an I/O error reading the source. Damage in the source
    /// is never an error: it is where salvage stops. After an error the new
    /// log may exist with part of the records: remove it before trying
    /// again.
    pub fn salvage(
        src_dir: Arc<dyn Directory>,
        src_path: &str,
        dst_dir: Arc<dyn Directory>,
        dst_path: &str,
    ) -> Result<RecordSalvageReport> {
        path::check_file(src_path)?;
        path::check_file(dst_path)?;
        // Also refuses to write over the source itself.
        if dst_dir.exists(dst_path)? {
            return Err(Error::AlreadyExists {
                path: dst_path.into(),
            });
        }
        let map = src_dir.map_read(src_path)?;
        let (scan, error) = format::scan_prefix(&map, src_path, RecordLogMode::BestEffort);
        let options = RecordLogOptions {
            mode: RecordLogMode::BestEffort,
            max_record_size_bytes: u32::MAX,
        };
        let mut dst = RecordLog::open_with(dst_dir, dst_path, options)?;
        let valid = &map[..scan.end];
        let mut pos = HEADER_SIZE_BYTES;
        let mut kept = 0;
        while kept < scan.count {
            let (record, next) = format::next_frame(valid, pos)
                .expect("the scan validated every frame before its end");
            dst.append(record)?;
            pos = next;
            kept += 1;
        }
        // IMPORTANT: every record kept is durable before the report says so.
        dst.sync()?;
        let end = scan.end as u64;
        let dropped_bytes = map.len() as u64 - end;
        Ok(RecordSalvageReport {
            source: src_path.to_owned(),
            destination: dst_path.to_owned(),
            kept,
            stop_offset: end,
            dropped_bytes,
            clean: error.is_none(),
            torn_tail: error.is_none() && dropped_bytes > 0,
            error: error.map(Arc::new),
        })
    }
}

impl fmt::Display for RecordSalvageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "salvaged {} records from `{}` to `{}`",
            self.kept, self.source, self.destination
        )?;
        match &self.error {
            None if self.torn_tail => write!(
                f,
                "\nthe source is clean: its torn tail ({} bytes from offset {}), left by a crash, is not part of the log",
                self.dropped_bytes, self.stop_offset
            ),
            None => f.write_str("\nthe source is clean: this is a copy"),
            Some(e) => write!(
                f,
                "\nstopped at: {e}\nnot salvaged: {} bytes from offset {}",
                self.dropped_bytes, self.stop_offset
            ),
        }
    }
}
