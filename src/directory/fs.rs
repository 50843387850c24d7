//! [`FsDirectory`]: a [`Directory`] over a real filesystem directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fault::{Fault, FaultPlan, OpKind};
use super::path::{check_dir, check_file};
use super::{check_range, DirLock, Directory, ReadMap, Region, RegionFlush, WritableFile};
use crate::error::{Error, IoOp, Result};
use crate::mmap::{preallocate, start_writeback, FileLock, ReadOnlyMap, RegionMap, RegionSyncer};

/// A [`Directory`] rooted at a real directory.
///
/// Regions are shared memory maps of preallocated files, flushed with
/// `msync(MS_SYNC)`; file syncs are `fdatasync`; directory syncs `fsync` the
/// directory; the lock is an `flock` on a lock file, exclusive across
/// processes and released by the kernel when the holder dies.
///
/// Faults can be injected here too ([`FsDirectory::inject`]), so tests on a
/// real kernel need no special build.
///
/// ```
/// use zerodur::{Directory, FsDirectory};
/// let tmp = tempfile::tempdir()?;
/// let dir = FsDirectory::new(tmp.path())?;
/// dir.atomic_write("state", b"hello")?;
/// assert_eq!(dir.read("state")?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FsDirectory {
    root: PathBuf,
    faults: Arc<FaultPlan>,
}

impl FsDirectory {
    /// Opens (creating if needed) the directory at `root`.
    pub fn new(root: impl AsRef<Path>) -> Result<FsDirectory> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|e| Error::io(IoOp::Directory, &root, e))?;
        Ok(FsDirectory {
            root,
            faults: Arc::default(),
        })
    }

    /// [`FsDirectory::new`] wrapped for sharing as `Arc<dyn Directory>`.
    pub fn arc(root: impl AsRef<Path>) -> Result<Arc<dyn Directory>> {
        Ok(Arc::new(FsDirectory::new(root)?))
    }

    /// The root this directory was opened at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Arms a fault: a later matching operation fails with the fault's errno
    /// instead of reaching the kernel. Shared by clones of this value.
    pub fn inject(&self, fault: Fault) {
        self.faults.inject(fault);
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    fn file_path(&self, path: &str) -> Result<PathBuf> {
        check_file(path)?;
        Ok(self.root.join(path))
    }

    fn dir_path(&self, dir: &str) -> Result<PathBuf> {
        check_dir(dir)?;
        Ok(if dir.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir)
        })
    }

    fn fault(&self, kind: OpKind, op: IoOp, path: &str) -> Result<()> {
        match self.faults.check(kind) {
            Some(e) => Err(Error::io(op, path, e)),
            None => Ok(()),
        }
    }
}

impl Directory for FsDirectory {
    fn create_dir_all(&self, path: &str) -> Result<()> {
        let full = self.dir_path(path)?;
        self.fault(OpKind::CreateDir, IoOp::Directory, path)?;
        fs::create_dir_all(full).map_err(|e| Error::io(IoOp::Directory, path, e))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let full = self.dir_path(path)?;
        self.fault(OpKind::Read, IoOp::Metadata, path)?;
        match fs::symlink_metadata(full) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(IoOp::Metadata, path, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let full = self.dir_path(dir)?;
        self.fault(OpKind::Read, IoOp::Directory, dir)?;
        let rd = fs::read_dir(full).map_err(|e| Error::io(IoOp::Directory, dir, e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(IoOp::Directory, dir, e))?;
            // Names that are not UTF-8 cannot have been created through this
            // API; they are not ours to report.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn len(&self, path: &str) -> Result<u64> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Read, IoOp::Metadata, path)?;
        fs::metadata(full)
            .map(|m| m.len())
            .map_err(|e| Error::io(IoOp::Metadata, path, e))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Read, IoOp::Read, path)?;
        let mut f = File::open(full).map_err(|e| Error::io(IoOp::Open, path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| Error::io(IoOp::Read, path, e))?;
        Ok(buf)
    }

    fn map_read(&self, path: &str) -> Result<ReadMap> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Read, IoOp::Map, path)?;
        let f = File::open(full).map_err(|e| Error::io(IoOp::Open, path, e))?;
        let map = ReadOnlyMap::map(&f).map_err(|e| Error::io(IoOp::Map, path, e))?;
        Ok(ReadMap::mapped(map))
    }

    fn create(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Create, IoOp::Open, path)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(full)
            .map_err(|e| Error::io(IoOp::Open, path, e))?;
        Ok(Box::new(FsFile {
            file,
            path: path.to_owned(),
            len: 0,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn open_append(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Create, IoOp::Open, path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(full)
            .map_err(|e| Error::io(IoOp::Open, path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(IoOp::Metadata, path, e))?
            .len();
        Ok(Box::new(FsFile {
            file,
            path: path.to_owned(),
            len,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn truncate(&self, path: &str, len: u64) -> Result<()> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Truncate, IoOp::SetLen, path)?;
        let f = OpenOptions::new()
            .write(true)
            .open(full)
            .map_err(|e| Error::io(IoOp::Open, path, e))?;
        let cur = f
            .metadata()
            .map_err(|e| Error::io(IoOp::Metadata, path, e))?
            .len();
        if len > cur {
            return Err(Error::InvalidArgument {
                name: "len",
                reason: format!("truncate of `{path}` to {len} bytes would extend it from {cur}"),
            });
        }
        f.set_len(len).map_err(|e| Error::io(IoOp::SetLen, path, e))
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        let full = self.file_path(path)?;
        self.fault(OpKind::SyncFile, IoOp::SyncFile, path)?;
        let f = File::open(full).map_err(|e| Error::io(IoOp::Open, path, e))?;
        f.sync_data()
            .map_err(|e| Error::io(IoOp::SyncFile, path, e))
    }

    fn sync_dir(&self, dir: &str) -> Result<()> {
        let full = self.dir_path(dir)?;
        self.fault(OpKind::SyncDir, IoOp::SyncDir, dir)?;
        let f = File::open(full).map_err(|e| Error::io(IoOp::Open, dir, e))?;
        f.sync_all().map_err(|e| Error::io(IoOp::SyncDir, dir, e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let src = self.file_path(from)?;
        let dst = self.file_path(to)?;
        self.fault(OpKind::Rename, IoOp::Rename, from)?;
        fs::rename(src, dst).map_err(|e| Error::io(IoOp::Rename, from, e))
    }

    fn remove(&self, path: &str) -> Result<()> {
        let full = self.file_path(path)?;
        self.fault(OpKind::Remove, IoOp::Remove, path)?;
        fs::remove_file(full).map_err(|e| Error::io(IoOp::Remove, path, e))
    }

    fn create_region(&self, path: &str, len: u64) -> Result<Box<dyn Region>> {
        let full = self.file_path(path)?;
        if len == 0 {
            return Err(Error::InvalidArgument {
                name: "len",
                reason: format!("region `{path}` must be at least one byte"),
            });
        }
        self.fault(OpKind::Allocate, IoOp::Allocate, path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(|e| Error::io(IoOp::Open, path, e))?;
        let region = preallocate(&file, len)
            .map_err(|e| Error::io(IoOp::Allocate, path, e))
            .and_then(|()| FsRegion::map(path, &file, &self.faults));
        if region.is_err() {
            // Leave no half-allocated file behind: a later create of the same
            // name must not find it.
            let _ = fs::remove_file(&full);
        }
        Ok(Box::new(region?))
    }

    fn open_region(&self, path: &str) -> Result<Box<dyn Region>> {
        let full = self.file_path(path)?;
        self.fault(OpKind::OpenRegion, IoOp::Open, path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(full)
            .map_err(|e| Error::io(IoOp::Open, path, e))?;
        // Same error as the memory backend for a file that cannot be a region.
        let len = file
            .metadata()
            .map_err(|e| Error::io(IoOp::Metadata, path, e))?
            .len();
        if len == 0 {
            return Err(Error::InvalidArgument {
                name: "path",
                reason: format!("cannot map zero-length file `{path}` as a region"),
            });
        }
        Ok(Box::new(FsRegion::map(path, &file, &self.faults)?))
    }

    fn lock(&self, path: &str) -> Result<DirLock> {
        let full = self.file_path(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(full)
            .map_err(|e| Error::io(IoOp::Lock, path, e))?;
        match FileLock::try_exclusive(file) {
            Ok(Some(lock)) => Ok(DirLock::new(lock)),
            Ok(None) => Err(Error::Locked {
                path: self.root.join(path),
            }),
            Err(e) => Err(Error::io(IoOp::Lock, path, e)),
        }
    }
}

#[derive(Debug)]
struct FsFile {
    file: File,
    path: String,
    len: u64,
    faults: Arc<FaultPlan>,
}

impl WritableFile for FsFile {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        if let Some(e) = self.faults.check(OpKind::Write) {
            return Err(Error::io(IoOp::Write, &self.path, e));
        }
        self.file
            .write_all(data)
            .map_err(|e| Error::io(IoOp::Write, &self.path, e))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if let Some(e) = self.faults.check(OpKind::SyncFile) {
            return Err(Error::io(IoOp::SyncFile, &self.path, e));
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(IoOp::SyncFile, &self.path, e))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug)]
struct FsRegion {
    path: String,
    map: RegionMap,
    /// Kept for write-back hints; the mapping itself does not need it.
    file: File,
    faults: Arc<FaultPlan>,
}

impl FsRegion {
    fn map(path: &str, file: &File, faults: &Arc<FaultPlan>) -> Result<FsRegion> {
        let map = RegionMap::map(file).map_err(|e| Error::io(IoOp::Map, path, e))?;
        let file = file
            .try_clone()
            .map_err(|e| Error::io(IoOp::Open, path, e))?;
        Ok(FsRegion {
            path: path.to_owned(),
            map,
            file,
            faults: Arc::clone(faults),
        })
    }
}

impl Region for FsRegion {
    fn path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn bytes(&self) -> &[u8] {
        self.map.bytes()
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if let Some(e) = self.faults.check(OpKind::Write) {
            return Err(Error::io(IoOp::Write, &self.path, e));
        }
        let ok = usize::try_from(offset)
            .map(|off| self.map.write_at(off, data))
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(Error::OutOfBounds {
                path: self.path.clone().into(),
                offset,
                len: data.len() as u64,
                size: self.len(),
            })
        }
    }

    fn flush_range(&self, offset: u64, len: u64) -> Result<()> {
        self.flusher().flush_range(offset, len)
    }

    fn flusher(&self) -> Arc<dyn RegionFlush> {
        Arc::new(FsFlush {
            syncer: self.map.syncer(),
            path: self.path.clone(),
            faults: Arc::clone(&self.faults),
        })
    }

    fn start_writeback(&self, offset: u64, len: u64) -> Result<()> {
        start_writeback(&self.file, offset, len)
            .map_err(|e| Error::io(IoOp::FlushRange, &self.path, e))
    }

    fn prewrite_zeros(&mut self, offset: u64, len: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;

        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        // Counted as a write by fault plans, as on the memory backend.
        if let Some(e) = self.faults.check(OpKind::Write) {
            return Err(Error::io(IoOp::Write, &self.path, e));
        }
        let end = check_range(&self.path, offset, len, self.len())?;
        let mut at = offset;
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64) as usize;
            self.file
                .write_all_at(&ZEROS[..n], at)
                .map_err(|e| Error::io(IoOp::Write, &self.path, e))?;
            at += n as u64;
        }
        self.start_writeback(offset, len)
    }

    fn prefault(&self) -> Result<bool> {
        self.map
            .prefault()
            .map_err(|e| Error::io(IoOp::Map, &self.path, e))
    }
}

#[derive(Debug)]
struct FsFlush {
    syncer: RegionSyncer,
    path: String,
    faults: Arc<FaultPlan>,
}

impl RegionFlush for FsFlush {
    fn flush_range(&self, offset: u64, len: u64) -> Result<()> {
        let err = |e| Error::io(IoOp::FlushRange, &self.path, e);
        if let Some(e) = self.faults.check(OpKind::FlushRange) {
            return Err(err(e));
        }
        let (Ok(off), Ok(n)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range exceeds the address space",
            )));
        };
        self.syncer.flush_range(off, n).map_err(err)
    }
}
