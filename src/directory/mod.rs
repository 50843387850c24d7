//! The storage abstraction: a [`Directory`] of files with durability as part
//! of its contract.
//!
//! Two backends implement it: [`FsDirectory`] over a real directory, and
//! [`MemoryDirectory`], which keeps what was written apart from what was made
//! durable and can produce the image a power loss would leave. All WAL,
//! checkpoint and recovery code is written against `Arc<dyn Directory>` and
//! runs unchanged on both.
//!
//! # Paths
//!
//! Every path is relative to the directory root and `/`-separated. Absolute
//! paths, empty components, `.`, `..` and NUL bytes are an
//! [`Error::InvalidPath`](crate::Error::InvalidPath); nothing outside the root
//! is ever touched. Methods that take a *directory* accept `""` for the root.
//!
//! Symbolic links below the root are never followed: on [`FsDirectory`], a
//! path that meets one — as a folder on the way or as the file itself — is an
//! [`Error::InvalidPath`](crate::Error::InvalidPath) naming the path, with
//! the reason "path crosses a symbolic link", for every method. Only
//! [`Directory::exists`] answers for a link as the last component (`true`:
//! the name exists, though nothing can open it).
//!
//! # Durability vocabulary
//!
//! Each method's documentation says what is durable when it returns:
//! *data durable* means the file's bytes (and size) survive a power loss;
//! *name durable* means the directory entry (a create, rename or removal)
//! survives. Data and names are independent: a synced file whose directory was
//! never synced may vanish, and a durable name may point at a file whose
//! unsynced bytes are lost.

mod fault;
mod fs;
mod memory;
pub(crate) mod path;
mod temp;

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::Result;
use crate::mmap::ReadOnlyMap;

pub use fault::{Fault, FaultErrno, OpKind};
pub use fs::FsDirectory;
pub use memory::{CrashPolicy, MediaFault, MediaFaultSet, MemoryDirectory, OpRecord};

/// A directory of files with explicit durability.
///
/// Object-safe and `Send + Sync`: share it as `Arc<dyn Directory>`.
///
/// Paths follow the [module's rules](self#paths): a malformed path, or on
/// [`FsDirectory`] one that meets a symbolic link below the root, is an
/// [`Error::InvalidPath`](crate::Error::InvalidPath) naming it, from every
/// method.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use zerodur::{Directory, MemoryDirectory};
///
/// let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
/// dir.create_dir_all("meta")?;
/// dir.atomic_write("meta/config", b"v=1")?;
/// assert_eq!(dir.read("meta/config")?, b"v=1");
/// assert!(dir.read("../escape").is_err());
/// # Ok::<(), zerodur::Error>(())
/// ```
pub trait Directory: Send + Sync + fmt::Debug {
    /// Creates directory `path` and any missing parents.
    ///
    /// Durable on return: the name of every directory this call created
    /// (each new directory's parent is synced right after the directory is
    /// made, as [`sync_dir`](Directory::sync_dir) would). Directories that
    /// already existed are left as they were: a name not yet durable stays
    /// so until its parent is synced.
    fn create_dir_all(&self, path: &str) -> Result<()>;

    /// Whether a file or directory exists at `path`.
    ///
    /// Durable on return: not applicable (reads only).
    fn exists(&self, path: &str) -> Result<bool>;

    /// Names of the entries of directory `dir` (`""` for the root), sorted.
    ///
    /// Durable on return: not applicable (reads only).
    fn list(&self, dir: &str) -> Result<Vec<String>>;

    /// Length of file `path` in bytes.
    ///
    /// Durable on return: not applicable (reads only).
    fn len(&self, path: &str) -> Result<u64>;

    /// The whole content of file `path`.
    ///
    /// Durable on return: not applicable (reads only).
    fn read(&self, path: &str) -> Result<Vec<u8>>;

    /// A read-only view of the whole of file `path`: a memory map on
    /// [`FsDirectory`], a snapshot copy on [`MemoryDirectory`]. The bytes start
    /// 16-byte aligned, so rkyv archives can be accessed in place.
    ///
    /// The caller must not map a file that something truncates while mapped;
    /// zerodur's own files are never truncated in place.
    ///
    /// Durable on return: not applicable (reads only).
    fn map_read(&self, path: &str) -> Result<ReadMap>;

    /// Creates file `path` (truncating it if it exists) and returns a handle
    /// that appends to it.
    ///
    /// Durable on return: nothing; the data is durable after
    /// [`WritableFile::sync`], the name after `sync_dir` of the parent.
    fn create(&self, path: &str) -> Result<Box<dyn WritableFile>>;

    /// Opens existing file `path` for appending at its end.
    ///
    /// Durable on return: nothing changes.
    fn open_append(&self, path: &str) -> Result<Box<dyn WritableFile>>;

    /// Shortens file `path` to `len` bytes (`len` must not exceed its length).
    ///
    /// Durable on return: nothing; the new length is durable after
    /// [`sync_file`](Directory::sync_file).
    fn truncate(&self, path: &str, len: u64) -> Result<()>;

    /// Makes the data and length of file `path` durable (`fdatasync`).
    ///
    /// Durable on return: every byte written to the file before the call, by
    /// any handle, and its length. Not its name.
    fn sync_file(&self, path: &str) -> Result<()>;

    /// Makes the entries of directory `dir` durable (`fsync` of the directory).
    ///
    /// Durable on return: every create, rename and removal of an entry of
    /// `dir` made before the call.
    fn sync_dir(&self, dir: &str) -> Result<()>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists.
    ///
    /// Durable on return: nothing; the rename is durable after `sync_dir` of
    /// the parent of `to` (and of `from`, if different).
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Removes file `path`.
    ///
    /// Durable on return: nothing; the removal is durable after `sync_dir` of
    /// its parent.
    fn remove(&self, path: &str) -> Result<()>;

    /// Creates a new file `path` of exactly `len` bytes, zero-filled, with its
    /// blocks allocated (never sparse: on a full disk this fails here, never
    /// later at a write), and returns it as a writable [`Region`].
    /// Fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if
    /// `path` exists.
    ///
    /// Durable on return: nothing; call [`sync_file`](Directory::sync_file)
    /// for the allocation and length, and `sync_dir` for the name.
    fn create_region(&self, path: &str, len: u64) -> Result<Box<dyn Region>>;

    /// Opens existing file `path` as a writable [`Region`] of its current
    /// length, which must be non-zero.
    ///
    /// Durable on return: nothing changes.
    fn open_region(&self, path: &str) -> Result<Box<dyn Region>>;

    /// Takes the exclusive writer lock named `path` (created if missing).
    /// Another holder — in this process or, on [`FsDirectory`], any other
    /// process — gets [`Error::Locked`](crate::Error::Locked). The lock is
    /// released when the returned guard drops or the process dies; a leftover
    /// lock file never blocks a later open.
    ///
    /// On [`FsDirectory`] the lock belongs to an open file description
    /// (`flock`), which a child process shares from `fork` until it `exec`s
    /// (the descriptor is close-on-exec). A process that spawns children
    /// while it holds a lock may, for that short window, see a reopen of the
    /// same lock fail with `Locked` after dropping the guard: retry, or do
    /// not spawn while closing and reopening.
    ///
    /// Durable on return: not applicable (locks do not survive a crash).
    fn lock(&self, path: &str) -> Result<DirLock>;

    /// Writes `data` to `path` so that after a crash `path` holds either its
    /// old content or exactly `data`: write a temporary file, sync it, rename
    /// it over `path`, sync the parent directory.
    ///
    /// The temporary file is `{name}.zdtmp-{pid}-{n}` in `path`'s folder (a
    /// pattern no other zerodur file name matches). Concurrent atomic writes
    /// in one folder — from any threads, clones or, on [`FsDirectory`], any
    /// processes — take turns through a per-folder exclusive lock held for
    /// the whole sequence, so each `Ok` means these bytes were `path`'s
    /// content when the call returned. A call that fails removes its
    /// temporary file (unless the failure is a crash), and a call that gets
    /// the lock first removes every leftover temporary file in the folder:
    /// none can belong to a writer still at work.
    ///
    /// Durable on return: the data and the name.
    fn atomic_write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.atomic_write_parts(path, &[data])
    }

    /// [`atomic_write`](Directory::atomic_write) of the concatenation of
    /// `parts`, written one after the other without joining them first (a
    /// header and a large payload, for instance). Same protocol, locking,
    /// cleanup and durability.
    ///
    /// Durable on return: the data and the name.
    fn atomic_write_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        self.atomic_write_with(path, &mut |file| {
            let mut offset = 0u64;
            for part in parts.iter().filter(|p| !p.is_empty()) {
                file.write_at(offset, part)?;
                offset += part.len() as u64;
            }
            Ok(())
        })
    }

    /// [`atomic_write`](Directory::atomic_write) of whatever `write` puts in
    /// the temporary file: it runs once, holding the folder's turn, and
    /// writes through the [`AtomicFile`] it is given, at offsets of its
    /// choosing (a header can be filled in last, once a checksum over the
    /// rest is known). If it returns `Ok`, the file is synced once, renamed
    /// over `path` and the folder synced; if it (or a write) fails, or it
    /// panics, the temporary file is removed and `path` is untouched. Same
    /// protocol, locking, cleanup and durability as `atomic_write`, which is
    /// built on it, without holding the whole content in memory: a large
    /// payload can be produced, checked and written a piece at a time.
    ///
    /// ```
    /// use zerodur::{Directory, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// dir.atomic_write_with("f", &mut |file| {
    ///     file.write_at(4, b"body")?;
    ///     file.write_at(0, b"head") // filled in last
    /// })?;
    /// assert_eq!(dir.read("f")?, b"headbody");
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    ///
    /// Durable on return: the data and the name.
    fn atomic_write_with(
        &self,
        path: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()>;
}

/// The temporary file of [`Directory::atomic_write_with`], while its content
/// is written. Nothing written here is visible at the target path, or
/// durable, before the write is published.
pub trait AtomicFile {
    /// Writes `data` at `offset`, extending the file if it ends there or
    /// before (a gap reads as zeros).
    ///
    /// Durable on return: nothing.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;

    /// Hints that bytes `offset..offset + len`, fully written, will not
    /// change: the backend may start writing them to disk now
    /// (`sync_file_range` on [`FsDirectory`]), so the one sync before the
    /// rename has less left to wait for. The memory backend ignores it: its
    /// crash model already lets any unsynced write reach the disk early.
    ///
    /// Durable on return: nothing (a hint; the sync before the rename is the
    /// barrier).
    fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// Checks that `offset..offset + len` lies within a region of `size` bytes
/// at `path`; returns the end offset, or [`Error::OutOfBounds`](crate::Error::OutOfBounds).
pub(crate) fn check_range(path: &str, offset: u64, len: u64, size: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(end),
        _ => Err(crate::Error::OutOfBounds {
            path: path.into(),
            offset,
            len,
            size,
        }),
    }
}

/// Syncs every ancestor directory of `path`, innermost first up to the root,
/// so the whole chain of names leading to it is durable (after
/// `create_dir_all`, or after a writer that created them was killed before
/// syncing).
pub(crate) fn sync_parents(dir: &dyn Directory, path: &str) -> Result<()> {
    let mut p = path;
    while !p.is_empty() {
        p = path::parent(p);
        dir.sync_dir(p)?;
    }
    Ok(())
}

/// A file opened for appending, from [`Directory::create`] or
/// [`Directory::open_append`].
pub trait WritableFile: Send + fmt::Debug {
    /// Appends `data` at the end of the file.
    ///
    /// Durable on return: nothing.
    fn write_all(&mut self, data: &[u8]) -> crate::Result<()>;

    /// Makes everything appended so far, and the length, durable.
    ///
    /// Durable on return: the file's data and length (not its name).
    fn sync(&mut self) -> crate::Result<()>;

    /// Current length of the file in bytes.
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fixed-length file mapped for writing: a shared memory map on
/// [`FsDirectory`], a buffer on [`MemoryDirectory`].
///
/// Writes land in memory (the page cache); [`Region::flush_range`] is the
/// durability barrier (`msync(MS_SYNC)`). Until then, any written page may or
/// may not have reached the disk, in any order.
pub trait Region: Send + Sync + fmt::Debug {
    /// The path this region was opened at.
    fn path(&self) -> &str;

    /// Length in bytes (fixed).
    fn len(&self) -> u64;

    /// Whether the region is empty (never true: regions are non-empty).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region's current bytes, as written (durable or not).
    fn bytes(&self) -> &[u8];

    /// Copies `data` in at `offset`. Out-of-range writes are
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) and write nothing.
    ///
    /// Durable on return: nothing.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> crate::Result<()>;

    /// Writes bytes `offset..offset + len` by handing them to `fill`, which
    /// must set every byte of the slice it gets (its content on entry is
    /// unspecified). The same as filling a buffer and calling
    /// [`write_at`](Region::write_at) (what the default does), without the
    /// buffer: [`FsDirectory`] lends the mapped bytes themselves, so a WAL
    /// frame is encoded, and its CRC computed, in place. Out-of-range writes
    /// are [`Error::OutOfBounds`](crate::Error::OutOfBounds) and call nothing.
    ///
    /// Durable on return: nothing.
    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> crate::Result<()> {
        check_range(self.path(), offset, len as u64, self.len())?;
        let mut buf = vec![0; len];
        fill(&mut buf);
        self.write_at(offset, &buf)
    }

    /// Makes bytes `offset..offset + len` durable (`msync(MS_SYNC)` of the
    /// pages covering them).
    ///
    /// Durable on return: those bytes. A failure means they may never become
    /// durable, even if a later flush succeeds.
    fn flush_range(&self, offset: u64, len: u64) -> crate::Result<()>;

    /// A handle that can run [`RegionFlush::flush_range`] from another thread
    /// while this region keeps being written: lets a group commit sync outside
    /// its append lock.
    fn flusher(&self) -> Arc<dyn RegionFlush>;

    /// Hints that bytes `offset..offset + len`, fully written, will not
    /// change before the next barrier: the backend may start writing them to
    /// disk now (`sync_file_range` on [`FsDirectory`]), so that barrier has
    /// less to wait for.
    ///
    /// Durable on return: nothing (a hint; [`flush_range`](Region::flush_range)
    /// is still the barrier).
    fn start_writeback(&self, offset: u64, len: u64) -> crate::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Hints that bytes `offset..offset + len` — which still read as zeros,
    /// never written since [`Directory::create_region`] made the file — will
    /// be written soon. The backend may write the zeros out now, so the
    /// file system records those blocks as written ahead of the barriers
    /// that will cover them. On ext4 and XFS, `fallocate`d blocks stay
    /// *unwritten* until their first write-back, and the first barrier
    /// covering each block then also has to persist the conversion; doing
    /// it ahead, a megabyte at a time, takes that metadata write off most
    /// barriers. [`FsDirectory`] writes zeros (`pwrite`) and starts their
    /// write-back; the default does nothing. The content never changes.
    ///
    /// Durable on return: nothing (a hint). A write-back error it causes is
    /// reported by the next barrier, like any other.
    fn prewrite_zeros(&mut self, offset: u64, len: u64) -> crate::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Hints that the whole region is about to be written, so its pages can be
    /// faulted in now rather than on first touch. Returns whether the hint was
    /// applied.
    fn prefault(&self) -> crate::Result<bool>;
}

/// The durability barrier of a [`Region`], usable from any thread.
pub trait RegionFlush: Send + Sync + fmt::Debug {
    /// Makes bytes `offset..offset + len` of the region durable.
    ///
    /// Durable on return: those bytes.
    fn flush_range(&self, offset: u64, len: u64) -> crate::Result<()>;

    /// Hints that bytes `offset..offset + len` will be written soon: the
    /// backend may fault their pages in now, from this (background) thread,
    /// so the writer's stores take no page fault. [`FsDirectory`] uses
    /// `MADV_POPULATE_WRITE`; the default does nothing and returns
    /// `Ok(false)`. Never changes a byte, so it may run while the region's
    /// owner writes the same range.
    ///
    /// Durable on return: nothing (a hint).
    fn prefault_range(&self, offset: u64, len: u64) -> crate::Result<bool> {
        let _ = (offset, len);
        Ok(false)
    }
}

/// The exclusive lock from [`Directory::lock`]; released on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct DirLock {
    _inner: Box<dyn Any + Send + Sync>,
}

impl DirLock {
    pub(crate) fn new(inner: impl Any + Send + Sync) -> DirLock {
        DirLock {
            _inner: Box::new(inner),
        }
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}

/// A read-only view of a whole file, from [`Directory::map_read`]. Derefs to
/// `[u8]`; the bytes start 16-byte aligned.
pub struct ReadMap {
    inner: ReadMapInner,
}

enum ReadMapInner {
    Mapped(ReadOnlyMap),
    Owned(Arc<rkyv::util::AlignedVec<16>>),
}

impl ReadMap {
    pub(crate) fn mapped(map: ReadOnlyMap) -> ReadMap {
        ReadMap {
            inner: ReadMapInner::Mapped(map),
        }
    }

    pub(crate) fn owned(bytes: &[u8]) -> ReadMap {
        let mut v = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        ReadMap {
            inner: ReadMapInner::Owned(Arc::new(v)),
        }
    }

    /// Hints that the bytes will be read front to back (`MADV_SEQUENTIAL`).
    pub fn advise_sequential(&self) {
        if let ReadMapInner::Mapped(m) = &self.inner {
            m.advise_sequential();
        }
    }
}

impl Deref for ReadMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            ReadMapInner::Mapped(m) => m.bytes(),
            ReadMapInner::Owned(v) => v.as_slice(),
        }
    }
}

impl AsRef<[u8]> for ReadMap {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for ReadMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadMap").field("len", &self.len()).finish()
    }
}
