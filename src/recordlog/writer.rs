//! Opening a record log for appending: create it atomically, or cut its torn
//! tail and make every byte of it durable; then append frames, each claiming
//! what is durable, and sync, poisoning on any failure.

use std::fmt;
use std::sync::Arc;

use super::format::{self, encode_frame, encode_header, HEADER_SIZE_BYTES};
use super::reader::Records;
use super::{RecordLogMode, RecordLogOptions};
use crate::directory::{path, DirLock, Directory, WritableFile};
use crate::error::{Error, Result};

/// Open rewrites unproven bytes in chunks of this size.
const REWRITE_CHUNK_BYTES: usize = 1 << 20;
/// Frame buffers above this size are released after use rather than kept.
const FRAME_BUFFER_BYTES_KEPT_MAX: usize = 1 << 20;

/// An append-only log of CRC-framed records in one file. See the
/// [module docs](crate::recordlog) for the guarantees.
///
/// ```
/// use std::sync::Arc;
/// use zerodur::{MemoryDirectory, RecordLog};
///
/// let dir = MemoryDirectory::new();
/// let mut log = RecordLog::open(Arc::new(dir.clone()), "epochs.log")?;
/// log.append(b"epoch 1")?;
/// log.append(b"epoch 2")?;
/// log.sync()?; // both are durable now
/// assert_eq!(log.len(), 2);
/// drop(log);
///
/// let log = RecordLog::open(Arc::new(dir), "epochs.log")?;
/// assert_eq!(log.records()?.iter().last(), Some(&b"epoch 2"[..]));
/// # Ok::<(), zerodur::Error>(())
/// ```
pub struct RecordLog {
    dir: Arc<dyn Directory>,
    path: String,
    file: Box<dyn WritableFile>,
    options: RecordLogOptions,
    count: u64,
    /// A file length every byte below which is durable: the `synced` field
    /// of every frame appended (see `FORMAT.md`, "The synced rule").
    synced_claim: u64,
    frame: Vec<u8>,
    poisoned: Option<String>,
    _lock: DirLock,
}

impl RecordLog {
    /// Opens the log at `path` for appending, creating it if it does not
    /// exist, with [`RecordLogOptions::default`] (best effort: a torn tail is
    /// cut).
    ///
    /// Durable on return: the file's name and every byte of it, as found or
    /// after the cut of a torn tail. Bytes that no frame proves durable (at
    /// least the records of the last sync before this open) are written
    /// again unchanged and synced first: a failed sync of an earlier writer
    /// can leave them in the page cache only, where no later sync would write
    /// them.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another writer has the log open; a bad file
    /// header (`Corrupt`, `UnsupportedVersion`, `ChecksumMismatch`);
    /// [`Error::Corrupt`] at the offset of a bad frame that a later frame
    /// proves durable (`BelowDurablePoint`) or that no crash can leave (a
    /// CRC-valid frame in the wrong place); [`Error::InvalidPath`], or an
    /// I/O failure. After an error nothing has been cut or written.
    pub fn open(dir: Arc<dyn Directory>, path: &str) -> Result<RecordLog> {
        RecordLog::open_with(dir, path, RecordLogOptions::default())
    }

    /// [`RecordLog::open`] with explicit options. In
    /// [`RecordLogMode::Strict`] a torn tail is an error too, and nothing is
    /// cut.
    pub fn open_with(
        dir: Arc<dyn Directory>,
        path: &str,
        options: RecordLogOptions,
    ) -> Result<RecordLog> {
        path::check_file(path)?;
        // IMPORTANT: before the scan: a second writer cutting a "torn" tail
        // that is really the first writer's append in progress would
        // destroy records.
        let lock = dir.lock(&lock_path(path))?;
        let (count, synced_claim) = if dir.exists(path)? {
            let (scan, file_len) = {
                let map = dir.map_read(path)?;
                (format::scan(&map, path, options.mode)?, map.len())
                // The map is dropped here, before any truncation.
            };
            let end = scan.end as u64;
            let cut = scan.end < file_len;
            if cut {
                debug_assert_eq!(options.mode, RecordLogMode::BestEffort);
                dir.truncate(path, end)?;
            }
            // IMPORTANT: bytes no frame proves durable may be in the page
            // cache only — after a failed sync, clean there but never written
            // to disk, and no later sync would write them. Writing them again,
            // unchanged, makes the sync below cover them; only then may frames
            // appended after them claim them durable.
            let unproven = scan.synced_max < end;
            if unproven {
                rewrite_unchanged(&*dir, path, scan.synced_max, end)?;
            }
            if cut || unproven {
                // IMPORTANT: the cut must be durable before anything is
                // appended after it. Otherwise a crash could bring back the
                // old tail behind new, shorter records, and frames of that
                // discarded tail would replay as if they followed them.
                dir.sync_file(path)?;
            }
            // Every byte of the file is durable now.
            (scan.count, end)
        } else {
            // IMPORTANT: temporary file + sync + rename + directory sync, so
            // the name never appears without a complete, durable header.
            dir.atomic_write(path, &encode_header())?;
            (0, HEADER_SIZE_BYTES as u64)
        };
        let file = dir.open_append(path)?;
        Ok(RecordLog {
            dir,
            path: path.to_owned(),
            file,
            options,
            count,
            synced_claim,
            frame: Vec::new(),
            poisoned: None,
            _lock: lock,
        })
    }

    /// Appends `record` (any bytes, possibly empty).
    ///
    /// Durable on return: nothing; call [`RecordLog::sync`].
    ///
    /// # Errors
    ///
    /// [`Error::EntryTooLarge`] (nothing written, handle still usable) if the
    /// record exceeds [`RecordLogOptions::max_record_size_bytes`];
    /// [`Error::Poisoned`] after an earlier failure; an I/O failure, which
    /// poisons the handle.
    pub fn append(&mut self, record: &[u8]) -> Result<()> {
        self.check_poisoned()?;
        self.options.check_record(record.len())?;
        self.frame.clear();
        encode_frame(record, self.file.len(), self.synced_claim, &mut self.frame);
        let written = self.file.write_all(&self.frame);
        if self.frame.capacity() > FRAME_BUFFER_BYTES_KEPT_MAX {
            self.frame = Vec::new();
        }
        // IMPORTANT: a failed or partial write leaves bytes that later frames
        // would sit behind; nothing may be appended after them.
        self.poison_on_error(written)?;
        self.count += 1;
        Ok(())
    }

    /// Makes every record appended so far durable (`fdatasync`).
    ///
    /// Durable on return: all records appended before the call.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] after an earlier failure; an I/O failure, which
    /// poisons the handle: the kernel reports a write-back error once, so no
    /// later sync could be trusted.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        let len = self.file.len();
        let synced = self.file.sync();
        self.poison_on_error(synced)?;
        // Every byte written before the sync is durable now.
        self.synced_claim = len;
        Ok(())
    }

    /// The records in the log now, including those appended but not yet
    /// synced. Every record is validated (strict mode: this handle wrote
    /// the whole file past any cut, so anything that does not decode is an
    /// error).
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] after an earlier failure; a read failure or
    /// corruption as for [`RecordLog::read`] in strict mode.
    pub fn records(&self) -> Result<Records> {
        self.check_poisoned()?;
        Records::read(&*self.dir, &self.path, RecordLogMode::Strict)
    }

    /// Number of records in the log, synced or not.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the log has no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The log's path in its directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &RecordLogOptions {
        &self.options
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison_on_error(&mut self, result: Result<()>) -> Result<()> {
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }
}

impl fmt::Debug for RecordLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordLog")
            .field("path", &self.path)
            .field("records", &self.count)
            .field("options", &self.options)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Writes bytes `from..to` of the file at `path` again, unchanged, a chunk at
/// a time, so that the next sync of the file makes them durable whatever
/// became of their earlier writes.
///
/// Durable on return: nothing.
fn rewrite_unchanged(dir: &dyn Directory, path: &str, from: u64, to: u64) -> Result<()> {
    let mut region = dir.open_region(path)?;
    let mut chunk = Vec::new();
    let mut at = from as usize;
    while at < to as usize {
        let n = REWRITE_CHUNK_BYTES.min(to as usize - at);
        chunk.clear();
        chunk.extend_from_slice(&region.bytes()[at..at + n]);
        region.write_at(at as u64, &chunk)?;
        at += n;
    }
    Ok(())
}

/// The lock file that makes a record log's writer exclusive: `{path}.lock`.
fn lock_path(path: &str) -> String {
    format!("{path}.lock")
}
