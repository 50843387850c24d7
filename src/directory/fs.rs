//! [`FsDirectory`]: a [`Directory`] over a real filesystem directory.
//!
//! Every path is resolved below a descriptor of the root opened once in
//! [`FsDirectory::new`], by `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! or a component walk with `O_NOFOLLOW` (see `mmap::beneath`), so neither a
//! `..` nor a symbolic link can take a path outside the root, and renaming
//! or replacing the root's path afterwards does not redirect this value.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fault::{Fault, FaultPlan, OpKind};
use super::path::{check_dir, check_file, file_name, join, parent};
use super::temp::{is_temp_name, temp_name};
use super::{
    check_range, AtomicFile, DirLock, Directory, ReadMap, Region, RegionFlush, WritableFile,
};
use crate::error::{Error, IoOp, Result};
use crate::mmap::beneath::{self, EntryKind};
use crate::mmap::{
    lock_exclusive, preallocate, start_writeback, FileLock, ReadOnlyMap, RegionMap, RegionSyncer,
};

/// The reason [`Error::InvalidPath`] gives for a path that meets a symbolic
/// link.
const SYMLINK_REASON: &str = "path crosses a symbolic link";

/// A [`Directory`] rooted at a real directory.
///
/// Regions are shared memory maps of preallocated files, flushed with
/// `msync(MS_SYNC)`; file syncs are `fdatasync`; directory syncs `fsync` the
/// directory; the lock is an `flock` on a lock file, exclusive across
/// processes and released by the kernel when the holder dies.
///
/// Paths are confined to the root: each is resolved below a descriptor of the
/// root held open by this value (and its clones), and a symbolic link met
/// anywhere below the root — as a folder on the way or as the file itself —
/// is refused with [`Error::InvalidPath`], never followed. The root itself
/// may be a symbolic link: it is resolved once, by [`FsDirectory::new`].
///
/// [`atomic_write`](Directory::atomic_write) holds an exclusive `flock` on the
/// target's folder for its whole sequence, so concurrent writers of one name,
/// in any threads or processes, take turns; leftover temporary files of
/// writers that died are removed by the next atomic write in their folder,
/// and in the root folder by [`FsDirectory::new`].
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
    /// The root, opened once: every path is resolved below it.
    root_fd: Arc<OwnedFd>,
    faults: Arc<FaultPlan>,
}

impl FsDirectory {
    /// Opens the directory at `root`, creating it (and its missing parents)
    /// if it does not exist; the names it creates are durable on return.
    ///
    /// `root` may be a symbolic link to a directory. If it exists but is not
    /// a directory, this fails with an [`Error::Io`] from [`IoOp::Open`]
    /// carrying `ENOTDIR` ("Not a directory"), naming `root`.
    ///
    /// Removes leftover temporary files of interrupted
    /// [`atomic_write`](Directory::atomic_write)s in the root folder (best
    /// effort: a leftover it cannot remove stays, harmlessly).
    pub fn new(root: impl AsRef<Path>) -> Result<FsDirectory> {
        let root = root.as_ref().to_path_buf();
        let fd = match beneath::open_root(&root) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_root(&root)?;
                beneath::open_root(&root).map_err(|e| Error::io(IoOp::Open, &root, e))?
            }
            Err(e) => return Err(Error::io(IoOp::Open, &root, e)),
        };
        let dir = FsDirectory {
            root,
            root_fd: Arc::new(fd),
            faults: Arc::default(),
        };
        if let Ok(folder) = dir.open_dir("", IoOp::Directory) {
            // Without the folder's lock a temporary file may belong to a
            // writer still at work: then leave everything alone.
            if lock_exclusive(folder.as_fd()).is_ok() {
                dir.remove_leftovers(folder.as_fd(), "");
            }
        }
        Ok(dir)
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

    fn root_fd(&self) -> BorrowedFd<'_> {
        self.root_fd.as_fd()
    }

    /// Opens file `path` (checked) below the root with `flags`.
    fn open(&self, path: &str, flags: libc::c_int, op: IoOp) -> Result<File> {
        beneath::open_file(self.root_fd(), path, flags)
            .map(File::from)
            .map_err(|e| fail(op, path, e))
    }

    /// Opens directory `dir` (checked; `""` is the root) below the root.
    fn open_dir(&self, dir: &str, op: IoOp) -> Result<OwnedFd> {
        beneath::open_dir(self.root_fd(), dir).map_err(|e| fail(op, dir, e))
    }

    /// The folder holding file `path` (checked), opened, and the file's name
    /// in it. Errors name `path`.
    fn parent_of<'p>(&self, path: &'p str, op: IoOp) -> Result<(OwnedFd, &'p str)> {
        let dir = parent(path);
        let name = file_name(path);
        let fd = beneath::open_dir(self.root_fd(), dir).map_err(|e| fail(op, path, e))?;
        Ok((fd, name))
    }

    /// What `name` in `dir` is, for `path`; `Ok(None)` if it does not exist.
    fn kind_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        path: &str,
        op: IoOp,
    ) -> Result<Option<EntryKind>> {
        match beneath::stat_at(dir, name) {
            Ok(st) => Ok(Some(st.kind)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(op, path, e)),
        }
    }

    fn fault(&self, kind: OpKind, op: IoOp, path: &str) -> Result<()> {
        match self.faults.check(kind) {
            Some(e) => Err(Error::io(op, path, e)),
            None => Ok(()),
        }
    }

    /// Removes every leftover temporary file of
    /// [`atomic_write`](Directory::atomic_write) in folder `dir` (at
    /// `dir_path`), whose `flock` the caller holds: no atomic write is in
    /// flight there, so every file with the temporary pattern is a leftover.
    /// Best effort: leftovers are garbage, never read, so one that cannot be
    /// removed must not stop the caller.
    fn remove_leftovers(&self, dir: BorrowedFd<'_>, dir_path: &str) {
        let Ok(names) = beneath::read_dir(dir) else {
            return;
        };
        for name in names.iter().filter_map(|n| n.to_str()) {
            // Only regular files: a folder or link of that name is not ours.
            if !is_temp_name(name)
                || !matches!(beneath::stat_at(dir, name), Ok(st) if st.kind == EntryKind::File)
            {
                continue;
            }
            if self
                .fault(OpKind::Remove, IoOp::Remove, &join(dir_path, name))
                .is_ok()
            {
                let _ = beneath::unlink_at(dir, name);
            }
        }
    }

    /// The part of [`atomic_write_with`](Directory::atomic_write_with)
    /// after the lock: let `write` fill `tmp` in `dir`, sync it, rename it to
    /// `name`, sync `dir`. Marks `tmp` as existing while it does, so it is
    /// removed if anything fails (or `write` panics).
    fn write_and_publish(
        &self,
        dir: &File,
        dir_path: &str,
        tmp: &mut TempName<'_>,
        name: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()> {
        let tmp_path = join(dir_path, tmp.name);
        self.fault(OpKind::Create, IoOp::Open, &tmp_path)?;
        let fd = beneath::open_file(
            dir.as_fd(),
            tmp.name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        )
        .map_err(|e| fail(IoOp::Open, &tmp_path, e))?;
        tmp.exists = true;
        let mut file = FsAtomicFile {
            file: File::from(fd),
            path: tmp_path,
            faults: &self.faults,
        };
        write(&mut file)?;
        let FsAtomicFile {
            file,
            path: tmp_path,
            ..
        } = file;
        self.fault(OpKind::SyncFile, IoOp::SyncFile, &tmp_path)?;
        // IMPORTANT: the data must be durable before the rename can be, or a
        // crash could publish the name over an empty file.
        file.sync_data()
            .map_err(|e| Error::io(IoOp::SyncFile, &tmp_path, e))?;
        drop(file);
        self.fault(OpKind::Rename, IoOp::Rename, &tmp_path)?;
        beneath::rename_at(dir.as_fd(), tmp.name, dir.as_fd(), name)
            .map_err(|e| fail(IoOp::Rename, &tmp_path, e))?;
        tmp.exists = false;
        self.fault(OpKind::SyncDir, IoOp::SyncDir, dir_path)?;
        // IMPORTANT: makes the rename itself durable.
        dir.sync_all()
            .map_err(|e| Error::io(IoOp::SyncDir, dir_path, e))
    }
}

/// The name of an atomic write's temporary file in its folder, removed when
/// this drops while the file exists: a write that fails, or whose caller's
/// closure panics, leaves no temporary file behind.
struct TempName<'a> {
    dir: BorrowedFd<'a>,
    name: &'a str,
    exists: bool,
}

impl Drop for TempName<'_> {
    fn drop(&mut self) {
        if self.exists {
            let _ = beneath::unlink_at(self.dir, self.name);
        }
    }
}

/// The temporary file of an atomic write on the filesystem: `pwrite`s, and
/// write-back started with `sync_file_range`.
struct FsAtomicFile<'a> {
    file: File,
    path: String,
    faults: &'a FaultPlan,
}

impl AtomicFile for FsAtomicFile<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;

        if let Some(e) = self.faults.check(OpKind::Write) {
            return Err(Error::io(IoOp::Write, &self.path, e));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io(IoOp::Write, &self.path, e))
    }

    fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
        start_writeback(&self.file, offset, len)
            .map_err(|e| Error::io(IoOp::SyncFile, &self.path, e))
    }
}

/// The error for an operation `op` on `path` that failed with `e`: a
/// symbolic link met on the way (`ELOOP` from the confined resolution) is an
/// [`Error::InvalidPath`]; anything else goes through [`Error::io`].
fn fail(op: IoOp, path: &str, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return symlink_error(path);
    }
    Error::io(op, path, e)
}

fn symlink_error(path: &str) -> Error {
    Error::InvalidPath {
        path: path.to_owned(),
        reason: SYMLINK_REASON,
    }
}

/// Creates the missing root `root` and its missing parents, syncing each new
/// directory's parent so the new names are durable.
fn create_root(root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = root;
    loop {
        match fs::metadata(p) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(p),
            Err(e) => return Err(Error::io(IoOp::Directory, p, e)),
        }
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Created concurrently by someone else: fine if it is a folder.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(Error::io(IoOp::Directory, dir, e)),
        }
        let up = dir
            .parent()
            .filter(|q| !q.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // IMPORTANT: the new name must survive a crash before anything
        // inside it is made durable.
        File::open(up)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(IoOp::SyncDir, up, e))?;
    }
    Ok(())
}

impl Directory for FsDirectory {
    fn create_dir_all(&self, path: &str) -> Result<()> {
        check_dir(path)?;
        self.fault(OpKind::CreateDir, IoOp::Directory, path)?;
        let mut cur = File::from(self.open_dir("", IoOp::Directory)?);
        let mut prefix = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            prefix = join(&prefix, comp);
            // A link on the way names the path asked for, like everywhere.
            let err = |e: io::Error| match e.raw_os_error() {
                Some(libc::ELOOP) => symlink_error(path),
                _ => Error::io(IoOp::Directory, &prefix, e),
            };
            let next = match beneath::open_dir(cur.as_fd(), comp) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match beneath::mkdir_at(cur.as_fd(), comp) {
                        // Created concurrently: fine, it is opened below.
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(err(e)),
                        _ => {}
                    }
                    // IMPORTANT: the new folder's name is durable on return
                    // (the trait's promise), so anything later made durable
                    // inside it cannot vanish with it.
                    cur.sync_all()
                        .map_err(|e| Error::io(IoOp::SyncDir, parent(&prefix), e))?;
                    beneath::open_dir(cur.as_fd(), comp).map_err(err)?
                }
                // A file in the way, as on the memory backend.
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(Error::AlreadyExists {
                        path: prefix.into(),
                    })
                }
                Err(e) => return Err(err(e)),
            };
            cur = File::from(next);
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        check_dir(path)?;
        self.fault(OpKind::Read, IoOp::Metadata, path)?;
        if path.is_empty() {
            return Ok(true);
        }
        let gone = |e: &io::Error| {
            e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
        };
        let dir = match beneath::open_dir(self.root_fd(), parent(path)) {
            Ok(fd) => fd,
            Err(e) if gone(&e) => return Ok(false),
            Err(e) => return Err(fail(IoOp::Metadata, path, e)),
        };
        // A symbolic link as the last component exists (and opening it fails).
        match beneath::stat_at(dir.as_fd(), file_name(path)) {
            Ok(_) => Ok(true),
            Err(e) if gone(&e) => Ok(false),
            Err(e) => Err(fail(IoOp::Metadata, path, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        check_dir(dir)?;
        self.fault(OpKind::Read, IoOp::Directory, dir)?;
        let fd = self.open_dir(dir, IoOp::Directory)?;
        let entries =
            beneath::read_dir(fd.as_fd()).map_err(|e| Error::io(IoOp::Directory, dir, e))?;
        // Names that are not UTF-8 cannot have been created through this
        // API; they are not ours to report.
        let mut names: Vec<String> = entries
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn len(&self, path: &str) -> Result<u64> {
        check_file(path)?;
        self.fault(OpKind::Read, IoOp::Metadata, path)?;
        let (dir, name) = self.parent_of(path, IoOp::Metadata)?;
        let st = beneath::stat_at(dir.as_fd(), name).map_err(|e| fail(IoOp::Metadata, path, e))?;
        match st.kind {
            EntryKind::Symlink => Err(symlink_error(path)),
            EntryKind::Dir => Err(Error::io(
                IoOp::Metadata,
                path,
                io::Error::from_raw_os_error(libc::EISDIR),
            )),
            EntryKind::File | EntryKind::Other => Ok(st.len),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        check_file(path)?;
        self.fault(OpKind::Read, IoOp::Read, path)?;
        let mut f = self.open(path, libc::O_RDONLY, IoOp::Open)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| Error::io(IoOp::Read, path, e))?;
        Ok(buf)
    }

    fn map_read(&self, path: &str) -> Result<ReadMap> {
        check_file(path)?;
        self.fault(OpKind::Read, IoOp::Map, path)?;
        let f = self.open(path, libc::O_RDONLY, IoOp::Open)?;
        let map = ReadOnlyMap::map(&f).map_err(|e| Error::io(IoOp::Map, path, e))?;
        Ok(ReadMap::mapped(map))
    }

    fn create(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        check_file(path)?;
        self.fault(OpKind::Create, IoOp::Open, path)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let file = self.open(path, flags, IoOp::Open)?;
        Ok(Box::new(FsFile {
            file,
            path: path.to_owned(),
            len: 0,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn open_append(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        check_file(path)?;
        self.fault(OpKind::Create, IoOp::Open, path)?;
        let file = self.open(path, libc::O_WRONLY | libc::O_APPEND, IoOp::Open)?;
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
        check_file(path)?;
        self.fault(OpKind::Truncate, IoOp::SetLen, path)?;
        let f = self.open(path, libc::O_WRONLY, IoOp::Open)?;
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
        check_file(path)?;
        self.fault(OpKind::SyncFile, IoOp::SyncFile, path)?;
        let f = self.open(path, libc::O_RDONLY, IoOp::Open)?;
        f.sync_data()
            .map_err(|e| Error::io(IoOp::SyncFile, path, e))
    }

    fn sync_dir(&self, dir: &str) -> Result<()> {
        check_dir(dir)?;
        self.fault(OpKind::SyncDir, IoOp::SyncDir, dir)?;
        let f = File::from(self.open_dir(dir, IoOp::Open)?);
        f.sync_all().map_err(|e| Error::io(IoOp::SyncDir, dir, e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_file(from)?;
        check_file(to)?;
        self.fault(OpKind::Rename, IoOp::Rename, from)?;
        let (src_dir, src) = self.parent_of(from, IoOp::Rename)?;
        let (dst_dir, dst) = self.parent_of(to, IoOp::Rename)?;
        // rename never follows a link, but a link is not ours to move or
        // replace: refuse it like every other operation does.
        match self.kind_at(src_dir.as_fd(), src, from, IoOp::Rename)? {
            None => return Err(Error::NotFound { path: from.into() }),
            Some(EntryKind::Symlink) => return Err(symlink_error(from)),
            Some(_) => {}
        }
        if self.kind_at(dst_dir.as_fd(), dst, to, IoOp::Rename)? == Some(EntryKind::Symlink) {
            return Err(symlink_error(to));
        }
        beneath::rename_at(src_dir.as_fd(), src, dst_dir.as_fd(), dst)
            .map_err(|e| fail(IoOp::Rename, from, e))
    }

    fn remove(&self, path: &str) -> Result<()> {
        check_file(path)?;
        self.fault(OpKind::Remove, IoOp::Remove, path)?;
        let (dir, name) = self.parent_of(path, IoOp::Remove)?;
        if self.kind_at(dir.as_fd(), name, path, IoOp::Remove)? == Some(EntryKind::Symlink) {
            return Err(symlink_error(path));
        }
        beneath::unlink_at(dir.as_fd(), name).map_err(|e| fail(IoOp::Remove, path, e))
    }

    fn create_region(&self, path: &str, len: u64) -> Result<Box<dyn Region>> {
        check_file(path)?;
        if len == 0 {
            return Err(Error::InvalidArgument {
                name: "len",
                reason: format!("region `{path}` must be at least one byte"),
            });
        }
        self.fault(OpKind::Allocate, IoOp::Allocate, path)?;
        let (dir, name) = self.parent_of(path, IoOp::Open)?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        let file = match beneath::open_file(dir.as_fd(), name, flags) {
            Ok(fd) => File::from(fd),
            // O_EXCL does not follow a link either: say what is in the way.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(match self.kind_at(dir.as_fd(), name, path, IoOp::Open)? {
                    Some(EntryKind::Symlink) => symlink_error(path),
                    _ => Error::io(IoOp::Open, path, e),
                })
            }
            Err(e) => return Err(fail(IoOp::Open, path, e)),
        };
        let region = preallocate(&file, len)
            .map_err(|e| Error::io(IoOp::Allocate, path, e))
            .and_then(|()| FsRegion::map(path, &file, &self.faults));
        if region.is_err() {
            // Leave no half-allocated file behind: a later create of the same
            // name must not find it.
            let _ = beneath::unlink_at(dir.as_fd(), name);
        }
        Ok(Box::new(region?))
    }

    fn open_region(&self, path: &str) -> Result<Box<dyn Region>> {
        check_file(path)?;
        self.fault(OpKind::OpenRegion, IoOp::Open, path)?;
        let file = self.open(path, libc::O_RDWR, IoOp::Open)?;
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
        check_file(path)?;
        let file = self.open(path, libc::O_RDWR | libc::O_CREAT, IoOp::Lock)?;
        match FileLock::try_exclusive(file) {
            Ok(Some(lock)) => Ok(DirLock::new(lock)),
            Ok(None) => Err(Error::Locked {
                path: self.root.join(path),
            }),
            Err(e) => Err(Error::io(IoOp::Lock, path, e)),
        }
    }

    fn atomic_write_with(
        &self,
        path: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()> {
        check_file(path)?;
        let dir_path = parent(path);
        let name = file_name(path);
        let dir = File::from(
            beneath::open_dir(self.root_fd(), dir_path).map_err(|e| fail(IoOp::Open, path, e))?,
        );
        // IMPORTANT: one atomic write at a time in this folder, across
        // threads and processes (each call opened its own description of the
        // folder, and flock locks belong to descriptions): each writer's
        // rename and directory sync complete before the next one starts, so
        // an `Ok` means these bytes were the file's content when it returned.
        lock_exclusive(dir.as_fd()).map_err(|e| Error::io(IoOp::Lock, dir_path, e))?;
        self.remove_leftovers(dir.as_fd(), dir_path);
        if self.kind_at(dir.as_fd(), name, path, IoOp::Open)? == Some(EntryKind::Symlink) {
            return Err(symlink_error(path));
        }
        let tmp_name = temp_name(name);
        // A failed write leaves no temporary file behind.
        let mut tmp = TempName {
            dir: dir.as_fd(),
            name: &tmp_name,
            exists: false,
        };
        self.write_and_publish(&dir, dir_path, &mut tmp, name, write)
        // `dir` closes here, releasing the lock.
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

    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<()> {
        if let Some(e) = self.faults.check(OpKind::Write) {
            return Err(Error::io(IoOp::Write, &self.path, e));
        }
        let size = self.len();
        match usize::try_from(offset)
            .ok()
            .and_then(|off| self.map.slice_mut(off, len))
        {
            Some(bytes) => {
                fill(bytes);
                Ok(())
            }
            None => Err(Error::OutOfBounds {
                path: self.path.clone().into(),
                offset,
                len: len as u64,
                size,
            }),
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

    fn prefault_range(&self, offset: u64, len: u64) -> Result<bool> {
        let err = |e| Error::io(IoOp::Map, &self.path, e);
        let (Ok(off), Ok(n)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range exceeds the address space",
            )));
        };
        self.syncer.populate_range(off, n).map_err(err)
    }
}
