//! Fault injection shared by both backends: make the Nth operation (of one
//! kind, or of any kind) fail with `EIO` or `ENOSPC`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The kinds of [`Directory`](super::Directory) operation, as counted by the
/// fault injector and recorded in [`MemoryDirectory`](super::MemoryDirectory)'s
/// operation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OpKind {
    /// `create_dir_all`.
    CreateDir,
    /// `create` or `open_append` of a file.
    Create,
    /// Appending to a file or copying into a region.
    Write,
    /// `truncate`.
    Truncate,
    /// `create_region` (allocating blocks).
    Allocate,
    /// `open_region`.
    OpenRegion,
    /// `sync_file` or `WritableFile::sync`.
    SyncFile,
    /// `sync_dir`.
    SyncDir,
    /// `flush_range` of a region.
    FlushRange,
    /// `rename`.
    Rename,
    /// `remove`.
    Remove,
    /// `read`, `map_read`, `len`, `list`, `exists`.
    Read,
}

impl OpKind {
    /// Whether this kind is a durability barrier.
    pub fn is_sync(self) -> bool {
        matches!(
            self,
            OpKind::SyncFile | OpKind::SyncDir | OpKind::FlushRange
        )
    }

    /// Whether this kind can change what a crash leaves behind (everything but
    /// reads).
    pub fn is_mutating(self) -> bool {
        !matches!(self, OpKind::Read)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The error an injected fault reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultErrno {
    /// `EIO`: an I/O error (for a sync: a write-back error).
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl FaultErrno {
    fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            FaultErrno::Eio => libc::EIO,
            FaultErrno::Enospc => libc::ENOSPC,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Any,
    AnySync,
    Kind(OpKind),
}

/// One injected fault: "the `nth` operation matching the target fails with
/// `errno`" (optionally: and every matching one after it).
///
/// Operations are counted from 1, per fault, from the moment it is injected.
/// Reads are only counted by a fault that targets [`OpKind::Read`].
///
/// ```
/// use zerodur::{Fault, OpKind};
/// // The 3rd file sync from now fails with EIO, and so does every later one.
/// let f = Fault::eio().on(OpKind::SyncFile).nth(3).persistent();
/// // The next allocation fails with ENOSPC.
/// let g = Fault::enospc().on(OpKind::Allocate);
/// # let _ = (f, g);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    target: Target,
    nth: u64,
    persistent: bool,
    errno: FaultErrno,
}

impl Fault {
    /// A fault failing with `EIO`, on the next mutating operation of any kind.
    pub fn eio() -> Fault {
        Fault::new(FaultErrno::Eio)
    }

    /// A fault failing with `ENOSPC`, on the next mutating operation of any kind.
    pub fn enospc() -> Fault {
        Fault::new(FaultErrno::Enospc)
    }

    /// A fault failing with `errno`.
    pub fn new(errno: FaultErrno) -> Fault {
        Fault {
            target: Target::Any,
            nth: 1,
            persistent: false,
            errno,
        }
    }

    /// Only operations of `kind` count and fail.
    pub fn on(mut self, kind: OpKind) -> Fault {
        self.target = Target::Kind(kind);
        self
    }

    /// Only durability barriers (file sync, directory sync, range flush) count
    /// and fail.
    pub fn on_syncs(mut self) -> Fault {
        self.target = Target::AnySync;
        self
    }

    /// The `n`th matching operation fails (1 = the next one).
    pub fn nth(mut self, n: u64) -> Fault {
        self.nth = n.max(1);
        self
    }

    /// Every matching operation from the `n`th on fails, not only the `n`th.
    pub fn persistent(mut self) -> Fault {
        self.persistent = true;
        self
    }

    fn matches(&self, kind: OpKind) -> bool {
        match self.target {
            Target::Any => kind.is_mutating(),
            Target::AnySync => kind.is_sync(),
            Target::Kind(k) => k == kind,
        }
    }
}

/// The armed faults of one directory.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    armed: AtomicBool,
    faults: Mutex<Vec<(Fault, u64)>>,
}

impl FaultPlan {
    pub(crate) fn inject(&self, fault: Fault) {
        let mut g = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        g.push((fault, 0));
        self.armed.store(true, Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut g = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        g.clear();
        self.armed.store(false, Ordering::Release);
    }

    /// Counts one operation of `kind`; returns the error to report if a fault
    /// fires on it.
    pub(crate) fn check(&self, kind: OpKind) -> Option<io::Error> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let mut fired = None;
        g.retain_mut(|(f, seen)| {
            if !f.matches(kind) {
                return true;
            }
            *seen += 1;
            if *seen < f.nth {
                return true;
            }
            fired.get_or_insert(f.errno);
            f.persistent
        });
        if g.is_empty() {
            self.armed.store(false, Ordering::Release);
        }
        fired.map(FaultErrno::to_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_matching_operation_fails_once_unless_persistent() {
        let p = FaultPlan::default();
        p.inject(Fault::eio().on(OpKind::SyncFile).nth(2));
        assert!(p.check(OpKind::Write).is_none());
        assert!(p.check(OpKind::SyncFile).is_none());
        let e = p.check(OpKind::SyncFile).unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert!(p.check(OpKind::SyncFile).is_none());

        p.inject(Fault::enospc().on_syncs().persistent());
        assert!(p.check(OpKind::Write).is_none());
        for k in [OpKind::SyncDir, OpKind::FlushRange, OpKind::SyncFile] {
            assert_eq!(p.check(k).unwrap().raw_os_error(), Some(libc::ENOSPC));
        }
        p.clear();
        assert!(p.check(OpKind::SyncDir).is_none());
    }

    #[test]
    fn any_target_skips_reads() {
        let p = FaultPlan::default();
        p.inject(Fault::eio());
        assert!(p.check(OpKind::Read).is_none());
        assert!(p.check(OpKind::Rename).is_some());
    }
}
