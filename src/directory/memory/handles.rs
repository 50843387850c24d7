//! Handles the memory backend gives out: locks, appendable files, regions and
//! their flushers.

use std::io;
use std::sync::Arc;

use super::{sync_inode, MemoryDirectory};
use crate::directory::fault::OpKind;
use crate::directory::{check_range, AtomicFile, Region, RegionFlush, WritableFile};
use crate::error::{Error, IoOp, Result};

#[derive(Debug)]
pub(super) struct MemLock {
    pub(super) dir: MemoryDirectory,
    pub(super) path: String,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.dir.lock_state().locks.remove(&self.path);
    }
}

#[derive(Debug)]
pub(super) struct MemFile {
    pub(super) dir: MemoryDirectory,
    pub(super) ino: u64,
    pub(super) path: String,
}

impl MemFile {
    /// Writes `data` at `offset`, or at the end for `None`: one counted write
    /// operation, unsynced (a pending write of the crash model).
    fn write(&mut self, offset: Option<u64>, data: &[u8]) -> Result<()> {
        let mut st = self.dir.lock_state();
        self.dir
            .begin(&mut st, OpKind::Write, IoOp::Write, &self.path)?;
        let inode = st.inode(self.ino);
        let end = inode.data.len() as u64;
        inode.write(offset.unwrap_or(end), data);
        Ok(())
    }
}

impl WritableFile for MemFile {
    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.write(None, data)
    }

    fn sync(&mut self) -> Result<()> {
        let mut st = self.dir.lock_state();
        sync_inode(&self.dir.shared, &mut st, self.ino, &self.path, None)
    }

    fn len(&self) -> u64 {
        let st = self.dir.lock_state();
        st.inodes.get(&self.ino).map_or(0, |i| i.data.len() as u64)
    }
}

/// The temporary file of an atomic write: a file written at offsets. Start
/// of write-back is the default no-op: the crash model already lets any
/// pending write reach the disk early, in any order.
impl AtomicFile for MemFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        // A file held in memory is addressed by usize.
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| usize::try_from(end).is_err())
        {
            return Err(Error::InvalidArgument {
                name: "offset",
                reason: format!(
                    "{offset} + {} bytes do not fit in memory for `{}`",
                    data.len(),
                    self.path
                ),
            });
        }
        self.write(Some(offset), data)
    }
}

/// A region on the memory backend: `mirror` is this handle's view of the
/// page cache, so `bytes()` can hand out a plain borrow.
#[derive(Debug)]
pub(super) struct MemRegion {
    pub(super) dir: MemoryDirectory,
    pub(super) ino: u64,
    pub(super) path: String,
    pub(super) mirror: Vec<u8>,
}

impl Region for MemRegion {
    fn path(&self) -> &str {
        &self.path
    }

    fn len(&self) -> u64 {
        self.mirror.len() as u64
    }

    fn bytes(&self) -> &[u8] {
        &self.mirror
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        check_range(&self.path, offset, data.len() as u64, self.len())?;
        let mut st = self.dir.lock_state();
        self.dir
            .begin(&mut st, OpKind::Write, IoOp::Write, &self.path)?;
        st.inode(self.ino).write(offset, data);
        let o = offset as usize;
        self.mirror[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Fills the mirror in place, then records the filled bytes as one
    /// write, exactly as [`write_at`](Region::write_at) of them would.
    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<()> {
        check_range(&self.path, offset, len as u64, self.len())?;
        let mut st = self.dir.lock_state();
        self.dir
            .begin(&mut st, OpKind::Write, IoOp::Write, &self.path)?;
        let o = offset as usize;
        let bytes = &mut self.mirror[o..o + len];
        fill(bytes);
        st.inode(self.ino).write(offset, bytes);
        Ok(())
    }

    fn flush_range(&self, offset: u64, len: u64) -> Result<()> {
        self.flusher().flush_range(offset, len)
    }

    fn flusher(&self) -> Arc<dyn RegionFlush> {
        Arc::new(MemFlush {
            dir: self.dir.clone(),
            ino: self.ino,
            path: self.path.clone(),
            size: self.len(),
        })
    }

    /// Writes the zeros like [`write_at`](Region::write_at) would, so crash
    /// images show whatever a caller breaking the contract overwrote.
    fn prewrite_zeros(&mut self, offset: u64, len: u64) -> Result<()> {
        check_range(&self.path, offset, len, self.len())?;
        // Within the region, so it fits in memory.
        self.write_at(offset, &vec![0; len as usize])
    }

    fn prefault(&self) -> Result<bool> {
        Ok(false)
    }
}

#[derive(Debug)]
pub(super) struct MemFlush {
    pub(super) dir: MemoryDirectory,
    pub(super) ino: u64,
    pub(super) path: String,
    pub(super) size: u64,
}

impl RegionFlush for MemFlush {
    fn flush_range(&self, offset: u64, len: u64) -> Result<()> {
        if offset.checked_add(len).is_none_or(|e| e > self.size) {
            return Err(Error::io(
                IoOp::FlushRange,
                &self.path,
                io::Error::new(io::ErrorKind::InvalidInput, "flush range out of bounds"),
            ));
        }
        if len == 0 {
            return Ok(());
        }
        let mut st = self.dir.lock_state();
        sync_inode(
            &self.dir.shared,
            &mut st,
            self.ino,
            &self.path,
            Some((offset, len)),
        )
    }
}
