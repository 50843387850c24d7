//! Preallocation with real blocks.

use std::fs::File;
use std::io;

/// Gives `file` real, allocated blocks for bytes `0..len`, extending it to
/// `len` if it is shorter.
///
/// Never a sparse `set_len`: on a full disk this returns `ENOSPC` now rather
/// than letting a later write into a mapping of the file raise SIGBUS.
#[cfg(target_os = "linux")]
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length exceeds off_t"))?;
    if len == 0 {
        return Ok(());
    }
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open descriptor borrowed from `file` for the
    // duration of the call; fallocate takes no pointers.
    let rc = unsafe { libc::fallocate(fd, 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    // The filesystem has no fallocate: posix_fallocate makes glibc write real
    // zero blocks instead, which still allocates them.
    // SAFETY: as above; posix_fallocate takes no pointers.
    let rc = unsafe { libc::posix_fallocate(fd, 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Portable fallback: writes zeros over the missing tail, which allocates it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};

    let mut f = file;
    let current = f.metadata()?.len();
    if current >= len {
        return Ok(());
    }
    f.seek(SeekFrom::Start(current))?;
    let zeros = vec![0u8; 1 << 16];
    let mut left = len - current;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn preallocate_allocates_real_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("a"))
            .unwrap();
        preallocate(&f, 1 << 20).unwrap();
        let md = f.metadata().unwrap();
        assert_eq!(md.len(), 1 << 20);
        // st_blocks counts 512-byte units actually allocated: a sparse file
        // would report (close to) zero.
        assert!(md.blocks() * 512 >= 1 << 20, "blocks = {}", md.blocks());
    }
}
