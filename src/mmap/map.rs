//! Read-write mappings of fixed-length files and read-only mappings of whole
//! files.

use std::fs::File;
use std::io;
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions, MmapRaw};

/// A shared, writable mapping of a whole fixed-length file.
///
/// Writes go through [`RegionMap::write_at`], which takes `&mut self` and
/// checks bounds, so no two writers and no reader of this handle can overlap a
/// write. Durability barriers can run from other threads through a
/// [`RegionSyncer`], which never touches the bytes.
#[derive(Debug)]
pub(crate) struct RegionMap {
    raw: Arc<MmapRaw>,
    len: usize,
}

/// A handle that can `msync` ranges of a [`RegionMap`] from any thread while
/// the owner keeps writing other ranges.
#[derive(Debug, Clone)]
pub(crate) struct RegionSyncer {
    raw: Arc<MmapRaw>,
}

impl RegionMap {
    /// Maps all of `file` read-write and shared. `file` must be open for
    /// reading and writing, at least 1 byte long, and its blocks allocated
    /// (see [`preallocate`](super::preallocate)).
    pub(crate) fn map(file: &File) -> io::Result<RegionMap> {
        let len = file.metadata()?.len();
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map a zero-length region",
            ));
        }
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        Ok(RegionMap {
            raw: Arc::new(raw),
            len,
        })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `raw` maps exactly `len` readable bytes (established in
        // `map`) for as long as `self.raw` is alive, which outlives the
        // returned borrow. All writes through this module go through
        // `write_at(&mut self)`, so none can happen while this shared borrow
        // lives. The file is never truncated while mapped (module rules), so
        // reading cannot fault.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr(), self.len) }
    }

    /// Copies `data` into the mapping at `offset`. Returns `false`, writing
    /// nothing, if the range does not fit.
    #[must_use]
    pub(crate) fn write_at(&mut self, offset: usize, data: &[u8]) -> bool {
        let Some(end) = offset.checked_add(data.len()) else {
            return false;
        };
        if end > self.len {
            return false;
        }
        // SAFETY: `offset..end` lies within the `len` mapped, writable bytes
        // (checked just above). `&mut self` guarantees no outstanding borrow of
        // `bytes()`; `data` cannot alias the mapping mutably for the same
        // reason. Blocks were preallocated before mapping, so the store cannot
        // raise SIGBUS on a full disk.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.raw.as_mut_ptr().add(offset),
                data.len(),
            );
        }
        true
    }

    /// The mapped bytes `offset..offset + len`, writable; `None` if the
    /// range does not fit.
    pub(crate) fn slice_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `offset..end` lies within the `len` mapped, writable bytes
        // (checked just above), for as long as `self.raw` lives, which
        // outlives the borrow of `self`. `&mut self` guarantees no other
        // borrow of the mapping through this handle. Blocks were
        // preallocated before mapping, so stores cannot raise SIGBUS on a
        // full disk.
        Some(unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(offset), len) })
    }

    /// A handle for `msync` from other threads.
    pub(crate) fn syncer(&self) -> RegionSyncer {
        RegionSyncer {
            raw: Arc::clone(&self.raw),
        }
    }

    /// Asks the kernel to fault in (and allocate page-cache pages for) the
    /// whole mapping for writing: [`RegionSyncer::populate_range`] over all
    /// of it.
    pub(crate) fn prefault(&self) -> io::Result<bool> {
        self.syncer().populate_range(0, self.len)
    }
}

impl RegionSyncer {
    /// Asks the kernel to fault in (and allocate page-cache pages for) the
    /// pages covering `offset..offset + len` for writing, where it supports
    /// `MADV_POPULATE_WRITE` (Linux 5.14+), so later stores into them take no
    /// page fault. Returns `Ok(false)` where the kernel lacks it; the
    /// mapping works either way, only first-touch latency differs. Safe to
    /// run while the owner writes the same pages: it never changes a byte.
    pub(crate) fn populate_range(&self, offset: usize, len: usize) -> io::Result<bool> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.raw.len())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "populate range out of bounds")
            })?;
        if len == 0 {
            return Ok(true);
        }
        #[cfg(target_os = "linux")]
        {
            const MADV_POPULATE_WRITE: libc::c_int = 23;
            let page = page_size();
            let start = offset - offset % page;
            // SAFETY: `start..end` lies within the live mapping owned by
            // `self.raw` (checked above; `start` is rounded down to the page
            // holding `offset`, still inside it). MADV_POPULATE_WRITE only
            // faults pages in and marks them dirty; it does not change their
            // contents, so concurrent stores by the owner are unaffected.
            let rc = unsafe {
                libc::madvise(
                    self.raw.as_mut_ptr().add(start).cast::<libc::c_void>(),
                    end - start,
                    MADV_POPULATE_WRITE,
                )
            };
            if rc == 0 {
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::ENOSYS) => Ok(false),
                _ => Err(err),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = end;
            Ok(false)
        }
    }

    /// `msync(MS_SYNC)` of the pages covering `offset..offset + len`. When it
    /// returns `Ok`, those bytes are on stable storage.
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.raw.len())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "flush range out of bounds")
            })?;
        // memmap2 rounds the start down to a page boundary itself.
        self.raw.flush_range(offset, end - offset)
    }
}

/// The system's page size (4 KiB if it cannot be read).
#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// A read-only mapping of a whole file, or nothing for an empty file.
#[derive(Debug)]
pub(crate) struct ReadOnlyMap {
    map: Option<Mmap>,
}

impl ReadOnlyMap {
    /// Maps all of `file` read-only. An empty file is not mapped (mmap of
    /// length zero fails) and reads as an empty slice.
    pub(crate) fn map(file: &File) -> io::Result<ReadOnlyMap> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(ReadOnlyMap { map: None });
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        // SAFETY: mapping a file is sound as long as nobody truncates or
        // rewrites it while mapped. zerodur never truncates a file that can be
        // mapped (regions are fixed-length and reused in place; checkpoints and
        // sealed segments are immutable once published) and holds the
        // directory lock against other zerodur writers. See the module docs.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(ReadOnlyMap { map: Some(map) })
    }

    /// Hints that the mapping will be read front to back.
    pub(crate) fn advise_sequential(&self) {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            // Advice is only a hint: failure changes nothing but speed.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => m,
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(len: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("r"))
            .unwrap();
        super::super::preallocate(&f, len).unwrap();
        (dir, f)
    }

    #[test]
    fn write_at_is_bounds_checked() {
        let (_d, f) = file_of(8192);
        let mut m = RegionMap::map(&f).unwrap();
        assert!(m.write_at(8190, b"ab"));
        assert!(!m.write_at(8191, b"ab"));
        assert!(!m.write_at(usize::MAX, b"a"));
        assert_eq!(&m.bytes()[8190..], b"ab");
    }

    #[test]
    fn flush_range_rejects_out_of_bounds_and_accepts_unaligned() {
        let (_d, f) = file_of(8192);
        let mut m = RegionMap::map(&f).unwrap();
        assert!(m.write_at(5000, b"hello"));
        let s = m.syncer();
        s.flush_range(5000, 5).unwrap();
        assert!(s.flush_range(8000, 500).is_err());
        let _ = m.prefault().unwrap();
    }

    #[test]
    fn zero_length_file_maps_as_empty() {
        let (_d, f) = file_of(0);
        assert!(RegionMap::map(&f).is_err());
        let ro = ReadOnlyMap::map(&f).unwrap();
        assert!(ro.bytes().is_empty());
    }
}
