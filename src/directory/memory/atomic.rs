//! [`Directory::atomic_write_with`] on the memory backend: temporary file,
//! sync, rename, directory sync, one writer at a time, leftovers swept.

use super::{record, Entry, MemoryDirectory};
use crate::directory::fault::OpKind;
use crate::directory::path::{check_file, file_name, join, parent};
use crate::directory::temp::{is_temp_name, temp_name};
use crate::directory::{AtomicFile, Directory, WritableFile};
use crate::error::{IoOp, Result};

impl MemoryDirectory {
    /// [`Directory::atomic_write_with`] on the memory backend: the same
    /// protocol and temporary names as on the filesystem, with a mutex for
    /// the lock.
    pub(super) fn atomic_write_serialized(
        &self,
        path: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()> {
        check_file(path)?;
        // IMPORTANT: one atomic write at a time (the filesystem backend locks
        // the folder): each writer's rename and directory sync complete
        // before the next one starts, so an `Ok` means these bytes were the
        // file's content when it returned.
        let _turn = self
            .shared
            .atomic_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dir = parent(path);
        self.remove_leftovers(dir);
        let tmp = TempName {
            dir: self,
            path: join(dir, &temp_name(file_name(path))),
        };
        self.write_and_publish(&tmp.path, path, write)
    }

    /// Removes every leftover temporary file of `atomic_write` in folder
    /// `dir`; the caller holds `atomic_writes`, so none is in use. Each
    /// removal is an operation like [`Directory::remove`]; best effort, as on
    /// the filesystem.
    fn remove_leftovers(&self, dir: &str) {
        let mut st = self.lock_state();
        let leftovers: Vec<(String, u64)> = st
            .names
            .iter()
            .filter(|(p, _)| parent(p) == dir && is_temp_name(file_name(p)))
            .filter_map(|(p, e)| match e {
                Entry::File(ino) => Some((p.clone(), *ino)),
                Entry::Dir => None,
            })
            .collect();
        for (path, ino) in leftovers {
            if self
                .begin(&mut st, OpKind::Remove, IoOp::Remove, &path)
                .is_ok()
            {
                st.unlink(&path, ino);
            }
        }
    }

    /// Temp write, sync, rename over `path`, directory sync: the part of
    /// `atomic_write_with` after the lock.
    fn write_and_publish(
        &self,
        tmp: &str,
        path: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()> {
        let mut f = self.open_file(tmp, true)?;
        write(&mut f)?;
        // IMPORTANT: the data must be durable before the rename can be, or a
        // crash could publish the name over an empty file.
        f.sync()?;
        drop(f);
        self.rename(tmp, path)?;
        // IMPORTANT: makes the rename itself durable.
        self.sync_dir(parent(path))
    }

    /// Removes the temporary file `tmp` of an `atomic_write` that failed (or
    /// whose closure panicked), if it still exists. Injected faults do not apply (this is cleanup, as on the
    /// filesystem); a halted directory (power off) keeps it, as a crash would.
    fn discard_temp(&self, tmp: &str) {
        let mut st = self.lock_state();
        let Some(Entry::File(ino)) = st.names.get(tmp).copied() else {
            return;
        };
        if st.halt_after.is_some_and(|k| st.op_count >= k) {
            return;
        }
        record(&mut st, OpKind::Remove, tmp);
        st.unlink(tmp, ino);
    }
}

/// The path of an atomic write's temporary file: removed when this drops if
/// it still exists (it does not once renamed), so a write that fails, or
/// whose caller's closure panics, leaves no temporary file behind.
struct TempName<'a> {
    dir: &'a MemoryDirectory,
    path: String,
}

impl Drop for TempName<'_> {
    fn drop(&mut self) {
        self.dir.discard_temp(&self.path);
    }
}
