//! [`MemoryDirectory`]: an in-memory [`Directory`] that knows what a power
//! loss would leave behind.
//!
//! # The crash model
//!
//! Every file (inode) keeps two states: its **written** bytes (what reads
//! see: the page cache) and its **durable** bytes (what the disk holds).
//! Writes since the last barrier that covered them are kept in order, with
//! their data. Every directory entry change (create, rename, removal) is kept
//! as a **pending** operation until a [`sync_dir`](Directory::sync_dir) of
//! its directory makes it durable ([`create_dir_all`](Directory::create_dir_all)
//! does that for the parent of each folder it creates, as the filesystem
//! backend does with `fsync`).
//!
//! [`MemoryDirectory::crash_image`] builds the directory a power loss at this
//! moment could leave, under a seeded [`CrashPolicy`]:
//!
//! - each 512-byte sector that has unsynced writes independently ends up at
//!   one of its versions since the last barrier: none of the writes (dropped),
//!   all of them (kept), or any prefix of them in order. Sectors are
//!   independent, so a multi-sector write can be **torn**, and any dirty page
//!   may have reached the disk early, in any order — which is what the kernel
//!   does with mmap pages;
//! - a file whose length changed since its last sync comes back either at
//!   its durable length or its written length;
//! - each pending directory operation lands or not, independently;
//! - a barrier that *failed* leaves its writes in limbo: they may or may not
//!   be on disk in a crash image, and no later barrier ever makes them
//!   durable (as on Linux, where a write-back error is reported once and the
//!   pages are then marked clean);
//! - nothing that was durable ever changes.
//!
//! # Media faults
//!
//! The second fault model is damage to what *was* made durable, by a disk, a
//! file system or an operator: [`MemoryDirectory::apply_media_fault`] applies
//! a [`MediaFault`] — bits flipped, a lost write (a range back at its
//! content before the last barrier that changed it), a misdirected write (a
//! write's bytes landing at another offset or in another file), a file cut
//! short or extended, a foreign file — to the durable state and to what
//! reads see. For lost and misdirected writes, every file remembers, per
//! sector, the durable content before the last barrier that changed it;
//! crash images and [`MemoryDirectory::snapshot`]s carry it along.
//!
//! Faults are values: [`MediaFault::seeded`] draws a reproducible one
//! anywhere in a directory, [`MediaFault::enumerate`] lists every fault of a
//! [`MediaFaultSet`] on one file (each byte flipped, each sector lost or
//! misdirected, each shorter length…). Apply each to a fresh
//! [`snapshot`](MemoryDirectory::snapshot), print the one that breaks
//! something, and replay it; [`MediaFault`] shows a whole sweep.
//!
//! # Crash points and faults
//!
//! Every mutating operation is counted and logged ([`MemoryDirectory::op_log`]).
//! [`MemoryDirectory::halt_after`] makes every operation after the first `k`
//! fail, so a test can stop a workload after operation `k` for every `k` and
//! take the crash image there. [`MemoryDirectory::inject`] makes chosen
//! operations fail with `EIO` or `ENOSPC`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

mod atomic;
mod handles;
mod inode;
mod media;
mod policy;
mod priors;

use super::fault::{Fault, FaultPlan, OpKind};
use super::path::{check_dir, check_file, join, parent};
use super::{AtomicFile, DirLock, Directory, ReadMap, Region, WritableFile};
use crate::error::{Error, IoOp, Result};
use handles::{MemFile, MemLock, MemRegion};
use inode::Inode;
pub use media::{MediaFault, MediaFaultSet};
pub use policy::CrashPolicy;

/// The sector size at which unsynced writes may tear.
pub const SECTOR_SIZE_BYTES: u64 = 512;
/// The page size at which region flushes (`msync`) operate.
pub const PAGE_SIZE_BYTES: u64 = 4096;

/// An in-memory [`Directory`] with a power-loss simulator
/// ([`crash_image`](MemoryDirectory::crash_image)) and a media-fault one
/// ([`apply_media_fault`](MemoryDirectory::apply_media_fault)). Clones share
/// the same state; [`snapshot`](MemoryDirectory::snapshot) copies it.
///
/// ```
/// use zerodur::{CrashPolicy, Directory, MemoryDirectory};
///
/// let dir = MemoryDirectory::new();
/// dir.atomic_write("durable", b"kept")?;
/// let mut f = dir.create("volatile")?;
/// f.write_all(b"maybe")?; // never synced, name never made durable
///
/// let after = dir.crash_image(&CrashPolicy::drop_all());
/// assert_eq!(after.read("durable")?, b"kept");
/// assert!(!after.exists("volatile")?);
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    faults: FaultPlan,
    /// Held for the whole of each `atomic_write`: the memory backend's
    /// counterpart of the per-folder `flock` on the filesystem.
    atomic_writes: Mutex<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Clone)]
enum DirOp {
    Create {
        path: String,
        entry: Entry,
    },
    Rename {
        from: String,
        to: String,
        entry: Entry,
    },
    Remove {
        path: String,
        entry: Entry,
    },
}

impl DirOp {
    /// Whether a sync of directory `dir` makes this operation durable.
    fn touches(&self, dir: &str) -> bool {
        match self {
            DirOp::Create { path, .. } | DirOp::Remove { path, .. } => parent(path) == dir,
            DirOp::Rename { from, to, .. } => parent(from) == dir || parent(to) == dir,
        }
    }

    fn apply(&self, names: &mut BTreeMap<String, Entry>) {
        match self {
            DirOp::Create { path, entry } => {
                names.insert(path.clone(), *entry);
            }
            DirOp::Rename { from, to, entry } => {
                if names.get(from) == Some(entry) {
                    names.remove(from);
                }
                names.insert(to.clone(), *entry);
            }
            DirOp::Remove { path, entry } => {
                if names.get(path) == Some(entry) {
                    names.remove(path);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Shared copy-on-write with [`MemoryDirectory::snapshot`]s.
    inodes: BTreeMap<u64, Arc<Inode>>,
    next_inode: u64,
    names: BTreeMap<String, Entry>,
    durable_names: BTreeMap<String, Entry>,
    pending_ops: Vec<DirOp>,
    locks: BTreeSet<String>,
    op_count: u64,
    halt_after: Option<u64>,
    log: Vec<OpRecord>,
}

/// One operation in [`MemoryDirectory::op_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// What kind of operation it was.
    pub kind: OpKind,
    /// The path it concerned (the source, for a rename).
    pub path: String,
}

impl State {
    fn file(&self, path: &str) -> Result<u64> {
        match self.names.get(path) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir) => Err(Error::io(
                IoOp::Open,
                path,
                io::Error::from_raw_os_error(libc::EISDIR),
            )),
            None => Err(Error::NotFound { path: path.into() }),
        }
    }

    fn dir_exists(&self, dir: &str) -> bool {
        dir.is_empty() || self.names.get(dir) == Some(&Entry::Dir)
    }

    fn require_parent(&self, path: &str) -> Result<()> {
        let p = parent(path);
        if self.dir_exists(p) {
            Ok(())
        } else {
            Err(Error::NotFound { path: p.into() })
        }
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.inodes
            .insert(self.next_inode, Arc::new(Inode::default()));
        self.next_inode
    }

    fn inode(&mut self, ino: u64) -> &mut Inode {
        Arc::make_mut(self.inodes.entry(ino).or_default())
    }

    fn link(&mut self, path: &str, entry: Entry) {
        self.names.insert(path.to_owned(), entry);
        self.pending_ops.push(DirOp::Create {
            path: path.to_owned(),
            entry,
        });
    }

    /// Removes the name of file `path` (inode `ino`), pending until its
    /// directory is synced.
    fn unlink(&mut self, path: &str, ino: u64) {
        self.names.remove(path);
        self.pending_ops.push(DirOp::Remove {
            path: path.to_owned(),
            entry: Entry::File(ino),
        });
    }

    /// Makes every pending operation on the entries of `dir` durable: what a
    /// directory sync does.
    fn promote(&mut self, dir: &str) {
        let ops = std::mem::take(&mut self.pending_ops);
        let mut rest = Vec::new();
        for op in ops {
            if op.touches(dir) {
                op.apply(&mut self.durable_names);
            } else {
                rest.push(op);
            }
        }
        self.pending_ops = rest;
    }
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> MemoryDirectory {
        MemoryDirectory::default()
    }

    /// [`MemoryDirectory::new`] wrapped for sharing as `Arc<dyn Directory>`.
    pub fn arc() -> Arc<dyn Directory> {
        Arc::new(MemoryDirectory::new())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for a
        // test harness; never propagate the poison.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a mutating operation, or refuses it when halted or faulted.
    fn begin(&self, st: &mut State, kind: OpKind, op: IoOp, path: &str) -> Result<()> {
        begin(&self.shared, st, kind, op, path)
    }

    /// Arms a fault: a later matching operation fails with its errno and has
    /// no effect (a failed barrier leaves its writes in limbo; see the module
    /// docs).
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.inject(fault);
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// After `ops` more mutating operations have succeeded (counting from the
    /// directory's creation, see [`MemoryDirectory::op_count`]), every further
    /// operation fails as if the power had gone: take
    /// [`crash_image`](MemoryDirectory::crash_image) then.
    pub fn halt_after(&self, ops: u64) {
        self.lock_state().halt_after = Some(ops);
    }

    /// Lifts [`halt_after`](MemoryDirectory::halt_after).
    pub fn resume(&self) {
        self.lock_state().halt_after = None;
    }

    /// Whether operations are currently refused by [`MemoryDirectory::halt_after`].
    pub fn is_halted(&self) -> bool {
        let st = self.lock_state();
        st.halt_after.is_some_and(|k| st.op_count >= k)
    }

    /// Number of mutating operations that have succeeded so far.
    pub fn op_count(&self) -> u64 {
        self.lock_state().op_count
    }

    /// Every mutating operation that has succeeded, in order.
    pub fn op_log(&self) -> Vec<OpRecord> {
        self.lock_state().log.clone()
    }

    /// The bytes of `path` that are durable now (what
    /// [`CrashPolicy::drop_all`] would keep, if its name is durable too).
    pub fn durable_bytes(&self, path: &str) -> Result<Vec<u8>> {
        check_file(path)?;
        let st = self.lock_state();
        let ino = st.file(path)?;
        Ok(st.inodes[&ino].durable.clone())
    }

    /// The directory a power loss at this moment would leave, with every
    /// unsynced choice made by `policy`. The image is a fresh directory with
    /// no pending state, no locks, no faults and a zero operation count.
    pub fn crash_image(&self, policy: &CrashPolicy) -> MemoryDirectory {
        let st = self.lock_state();
        let mut rng = policy.rng();
        let mut names = st.durable_names.clone();
        for op in &st.pending_ops {
            if policy.dir_op_lands(&mut rng) {
                op.apply(&mut names);
            }
        }
        // An entry whose directory did not survive is gone with it.
        let dirs: BTreeSet<String> = names
            .iter()
            .filter(|(_, e)| **e == Entry::Dir)
            .map(|(p, _)| p.clone())
            .collect();
        names.retain(|p, _| {
            let mut d = parent(p);
            while !d.is_empty() {
                if !dirs.contains(d) {
                    return false;
                }
                d = parent(d);
            }
            true
        });
        let mut inodes = BTreeMap::new();
        for (ino, inode) in &st.inodes {
            let named = names.values().any(|e| *e == Entry::File(*ino));
            if let Some(crashed) = inode.crashed(policy, &mut rng, named) {
                inodes.insert(*ino, Arc::new(crashed));
            }
        }
        let state = State {
            inodes,
            next_inode: st.next_inode,
            durable_names: names.clone(),
            names,
            ..State::default()
        };
        MemoryDirectory {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                ..Shared::default()
            }),
        }
    }

    /// An exact copy of this directory as it is now, independent of it: the
    /// same names (durable and pending), the same bytes (written, durable,
    /// unsynced writes in order, writes in limbo) and the same prior content
    /// of every sector, so a crash image of the copy or a media fault on it
    /// gives exactly what it would here. Files are shared copy-on-write: a
    /// snapshot costs about as much as copying the names, and a change to a
    /// file in either directory copies that one file.
    ///
    /// Like a crash image, the copy holds no locks and no injected faults,
    /// is not halted, and starts its operation count and log at zero. Handles
    /// opened on this directory keep working on this directory only.
    ///
    /// ```
    /// use zerodur::{Directory, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// dir.atomic_write("f", b"original")?;
    /// let copy = dir.snapshot();
    /// copy.atomic_write("f", b"changed")?;
    /// assert_eq!(dir.read("f")?, b"original");
    /// assert_eq!(copy.read("f")?, b"changed");
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn snapshot(&self) -> MemoryDirectory {
        let st = self.lock_state();
        let state = State {
            inodes: st.inodes.clone(),
            next_inode: st.next_inode,
            names: st.names.clone(),
            durable_names: st.durable_names.clone(),
            pending_ops: st.pending_ops.clone(),
            ..State::default()
        };
        MemoryDirectory {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                faults: FaultPlan::default(),
                atomic_writes: Mutex::default(),
            }),
        }
    }

    /// Every file's path, sorted: the names reads see now, durable or not
    /// (directories are left out).
    ///
    /// ```
    /// use zerodur::{Directory, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// dir.create_dir_all("wal")?;
    /// dir.atomic_write("wal/b", b"")?;
    /// dir.atomic_write("a", b"")?;
    /// assert_eq!(dir.files(), ["a", "wal/b"]);
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn files(&self) -> Vec<String> {
        let st = self.lock_state();
        st.names
            .iter()
            .filter(|(_, e)| matches!(e, Entry::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn open_file(&self, path: &str, truncate: bool) -> Result<MemFile> {
        check_file(path)?;
        let mut st = self.lock_state();
        st.require_parent(path)?;
        let existing = match st.names.get(path) {
            Some(_) => Some(st.file(path)?),
            None => None,
        };
        if existing.is_none() && !truncate {
            return Err(Error::NotFound { path: path.into() });
        }
        self.begin(&mut st, OpKind::Create, IoOp::Open, path)?;
        let ino = match existing {
            Some(ino) => {
                if truncate {
                    st.inode(ino).truncate(0);
                }
                ino
            }
            None => {
                let ino = st.new_inode();
                st.link(path, Entry::File(ino));
                ino
            }
        };
        Ok(MemFile {
            dir: self.clone(),
            ino,
            path: path.to_owned(),
        })
    }
}

fn begin(shared: &Shared, st: &mut State, kind: OpKind, op: IoOp, path: &str) -> Result<()> {
    if st.halt_after.is_some_and(|k| st.op_count >= k) {
        return Err(Error::io(
            op,
            path,
            io::Error::other("simulated power loss: the directory is halted"),
        ));
    }
    if let Some(e) = shared.faults.check(kind) {
        return Err(Error::io(op, path, e));
    }
    record(st, kind, path);
    Ok(())
}

/// Counts and logs an operation that is going ahead.
fn record(st: &mut State, kind: OpKind, path: &str) {
    st.op_count += 1;
    let seq = st.op_count;
    st.log.push(OpRecord {
        seq,
        kind,
        path: path.to_owned(),
    });
}

/// Faults on reads are checked but reads are neither counted nor halted.
fn read_fault(shared: &Shared, op: IoOp, path: &str) -> Result<()> {
    match shared.faults.check(OpKind::Read) {
        Some(e) => Err(Error::io(op, path, e)),
        None => Ok(()),
    }
}

impl Directory for MemoryDirectory {
    fn create_dir_all(&self, path: &str) -> Result<()> {
        check_dir(path)?;
        let mut st = self.lock_state();
        let mut prefix = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            prefix = join(&prefix, comp);
            match st.names.get(&prefix) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => {
                    return Err(Error::AlreadyExists {
                        path: prefix.into(),
                    })
                }
                None => {
                    self.begin(&mut st, OpKind::CreateDir, IoOp::Directory, &prefix)?;
                    st.link(&prefix, Entry::Dir);
                    // IMPORTANT: as on the filesystem, which syncs the parent
                    // of each folder it creates: the new name is durable.
                    st.promote(parent(&prefix));
                }
            }
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        check_dir(path)?;
        read_fault(&self.shared, IoOp::Metadata, path)?;
        let st = self.lock_state();
        Ok(path.is_empty() || st.names.contains_key(path))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        check_dir(dir)?;
        read_fault(&self.shared, IoOp::Directory, dir)?;
        let st = self.lock_state();
        if !st.dir_exists(dir) {
            return Err(Error::NotFound { path: dir.into() });
        }
        Ok(st
            .names
            .keys()
            .filter(|p| parent(p) == dir)
            .map(|p| p[p.rfind('/').map_or(0, |i| i + 1)..].to_owned())
            .collect())
    }

    fn len(&self, path: &str) -> Result<u64> {
        check_file(path)?;
        read_fault(&self.shared, IoOp::Metadata, path)?;
        let st = self.lock_state();
        let ino = st.file(path)?;
        Ok(st.inodes[&ino].data.len() as u64)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        check_file(path)?;
        read_fault(&self.shared, IoOp::Read, path)?;
        let st = self.lock_state();
        let ino = st.file(path)?;
        Ok(st.inodes[&ino].data.clone())
    }

    fn map_read(&self, path: &str) -> Result<ReadMap> {
        check_file(path)?;
        read_fault(&self.shared, IoOp::Map, path)?;
        let st = self.lock_state();
        let ino = st.file(path)?;
        Ok(ReadMap::owned(&st.inodes[&ino].data))
    }

    fn create(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        Ok(Box::new(self.open_file(path, true)?))
    }

    fn open_append(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        Ok(Box::new(self.open_file(path, false)?))
    }

    fn truncate(&self, path: &str, len: u64) -> Result<()> {
        check_file(path)?;
        let mut st = self.lock_state();
        let ino = st.file(path)?;
        let cur = st.inodes[&ino].data.len() as u64;
        if len > cur {
            return Err(Error::InvalidArgument {
                name: "len",
                reason: format!("truncate of `{path}` to {len} bytes would extend it from {cur}"),
            });
        }
        self.begin(&mut st, OpKind::Truncate, IoOp::SetLen, path)?;
        st.inode(ino).truncate(len);
        Ok(())
    }

    fn sync_file(&self, path: &str) -> Result<()> {
        check_file(path)?;
        let mut st = self.lock_state();
        let ino = st.file(path)?;
        sync_inode(&self.shared, &mut st, ino, path, None)
    }

    fn sync_dir(&self, dir: &str) -> Result<()> {
        check_dir(dir)?;
        let mut st = self.lock_state();
        if !st.dir_exists(dir) {
            return Err(Error::NotFound { path: dir.into() });
        }
        self.begin(&mut st, OpKind::SyncDir, IoOp::SyncDir, dir)?;
        st.promote(dir);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_file(from)?;
        check_file(to)?;
        let mut st = self.lock_state();
        let entry = match st.names.get(from) {
            Some(e) => *e,
            None => return Err(Error::NotFound { path: from.into() }),
        };
        st.require_parent(to)?;
        if entry == Entry::Dir || st.names.get(to) == Some(&Entry::Dir) {
            return Err(Error::io(
                IoOp::Rename,
                from,
                io::Error::from_raw_os_error(libc::EISDIR),
            ));
        }
        self.begin(&mut st, OpKind::Rename, IoOp::Rename, from)?;
        st.names.remove(from);
        st.names.insert(to.to_owned(), entry);
        st.pending_ops.push(DirOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
            entry,
        });
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        check_file(path)?;
        let mut st = self.lock_state();
        let ino = st.file(path)?;
        self.begin(&mut st, OpKind::Remove, IoOp::Remove, path)?;
        st.unlink(path, ino);
        Ok(())
    }

    fn create_region(&self, path: &str, len: u64) -> Result<Box<dyn Region>> {
        check_file(path)?;
        if len == 0 {
            return Err(Error::InvalidArgument {
                name: "len",
                reason: format!("region `{path}` must be at least one byte"),
            });
        }
        let mut st = self.lock_state();
        st.require_parent(path)?;
        if st.names.contains_key(path) {
            return Err(Error::AlreadyExists { path: path.into() });
        }
        let size = usize::try_from(len).map_err(|_| Error::InvalidArgument {
            name: "len",
            reason: format!("{len} bytes do not fit in memory"),
        })?;
        self.begin(&mut st, OpKind::Allocate, IoOp::Allocate, path)?;
        let ino = st.new_inode();
        // Allocated blocks read as zeros; the new length is durable only
        // after a sync.
        st.inode(ino).data = vec![0; size];
        st.link(path, Entry::File(ino));
        Ok(Box::new(MemRegion {
            dir: self.clone(),
            ino,
            path: path.to_owned(),
            mirror: vec![0; size],
        }))
    }

    fn open_region(&self, path: &str) -> Result<Box<dyn Region>> {
        check_file(path)?;
        let mut st = self.lock_state();
        let ino = st.file(path)?;
        if st.inodes[&ino].data.is_empty() {
            return Err(Error::InvalidArgument {
                name: "path",
                reason: format!("cannot map zero-length file `{path}` as a region"),
            });
        }
        self.begin(&mut st, OpKind::OpenRegion, IoOp::Open, path)?;
        let mirror = st.inodes[&ino].data.clone();
        Ok(Box::new(MemRegion {
            dir: self.clone(),
            ino,
            path: path.to_owned(),
            mirror,
        }))
    }

    fn lock(&self, path: &str) -> Result<DirLock> {
        check_file(path)?;
        let mut st = self.lock_state();
        if !st.locks.insert(path.to_owned()) {
            return Err(Error::Locked { path: path.into() });
        }
        Ok(DirLock::new(MemLock {
            dir: self.clone(),
            path: path.to_owned(),
        }))
    }

    fn atomic_write_with(
        &self,
        path: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()> {
        self.atomic_write_serialized(path, write)
    }
}

fn sync_inode(
    shared: &Shared,
    st: &mut State,
    ino: u64,
    path: &str,
    range: Option<(u64, u64)>,
) -> Result<()> {
    let (kind, op) = match range {
        None => (OpKind::SyncFile, IoOp::SyncFile),
        Some(_) => (OpKind::FlushRange, IoOp::FlushRange),
    };
    let halted = st.halt_after.is_some_and(|k| st.op_count >= k);
    if let Err(e) = begin(shared, st, kind, op, path) {
        // IMPORTANT: a failed barrier loses its writes' guarantee for good.
        // (A refusal because the power is already off changes nothing.)
        if !halted {
            st.inode(ino).fail_range(range);
        }
        return Err(e);
    }
    let inode = st.inode(ino);
    match range {
        None => inode.sync_all(),
        Some((o, l)) => inode.sync_range(o, l),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files, durable and pending names, unsynced writes and priors.
    fn busy() -> MemoryDirectory {
        let d = MemoryDirectory::new();
        d.create_dir_all("w").unwrap();
        d.sync_dir("").unwrap();
        d.atomic_write("w/a", &[1; 1500]).unwrap();
        let mut f = d.create("w/a").unwrap(); // the same file, rewritten
        f.write_all(&[2; 1500]).unwrap();
        f.sync().unwrap();
        f.write_all(&[3; 700]).unwrap(); // unsynced
        let mut r = d.create_region("w/r", 8192).unwrap();
        d.sync_file("w/r").unwrap();
        r.write_at(100, &[4; 600]).unwrap();
        r.flush_range(0, 4096).unwrap();
        r.write_at(5000, &[5; 10]).unwrap(); // unsynced
        d.rename("w/a", "w/b").unwrap(); // pending
        d
    }

    fn priors(d: &MemoryDirectory, path: &str) -> Vec<Vec<u8>> {
        let st = d.lock_state();
        let inode = &st.inodes[&st.file(path).unwrap()];
        let sectors = (inode.durable.len() as u64).div_ceil(SECTOR_SIZE_BYTES);
        (0..sectors).map(|s| inode.prior(s)).collect()
    }

    #[test]
    fn a_snapshot_crashes_and_remembers_exactly_like_its_source() {
        let d = busy();
        let s = d.snapshot();
        assert_eq!(s.files(), d.files());
        for path in d.files() {
            assert_eq!(s.read(&path).unwrap(), d.read(&path).unwrap());
            assert_eq!(
                s.durable_bytes(&path).unwrap(),
                d.durable_bytes(&path).unwrap()
            );
            assert_eq!(priors(&s, &path), priors(&d, &path), "{path}");
        }
        assert_eq!(priors(&d, "w/b")[0], [1; 512], "the first life of w/a");
        for seed in 0..32 {
            let policy = CrashPolicy::seeded(seed);
            let (a, b) = (d.crash_image(&policy), s.crash_image(&policy));
            assert_eq!(a.files(), b.files(), "seed {seed}");
            for path in a.files() {
                assert_eq!(a.read(&path).unwrap(), b.read(&path).unwrap());
                assert_eq!(priors(&a, &path), priors(&b, &path), "seed {seed}: {path}");
            }
        }
        assert_eq!(s.op_count(), 0);
    }

    #[test]
    fn a_snapshot_and_its_source_change_independently() {
        let d = busy();
        let s = d.snapshot();
        let before = (d.read("w/r").unwrap(), priors(&d, "w/r"));
        s.sync_file("w/r").unwrap();
        let mut r = s.open_region("w/r").unwrap();
        r.write_at(0, &[9; 4096]).unwrap();
        r.flush_range(0, 4096).unwrap();
        s.remove("w/b").unwrap();
        assert_eq!((d.read("w/r").unwrap(), priors(&d, "w/r")), before);
        assert_eq!(d.files(), ["w/b", "w/r"]);
        assert_eq!(d.durable_bytes("w/r").unwrap()[5000], 0, "unsynced here");

        let mut f = d.open_append("w/b").unwrap();
        f.write_all(b"more").unwrap();
        f.sync().unwrap();
        assert!(!s.exists("w/b").unwrap());
        assert_eq!(s.read("w/r").unwrap()[..4096], [9; 4096]);
        assert_eq!(s.durable_bytes("w/r").unwrap()[5000], 5);
    }
}
