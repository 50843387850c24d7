//! Starting write-back early (`sync_file_range`), so that a later barrier
//! finds most pages already on their way to disk.

use std::fs::File;
use std::io;

/// Asks the kernel to start writing back the dirty pages of `file` in
/// `offset..offset + len`, without waiting for them. A hint: it makes nothing
/// durable, and a later `msync`/`fsync` is still the barrier.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let (Ok(off), Ok(n)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range exceeds off64_t",
        ));
    };
    // SAFETY: the descriptor is valid for the duration of the call (borrowed
    // from `file`); sync_file_range takes no pointers and only schedules I/O.
    let rc =
        unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere there is no portable equivalent; the hint is skipped.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}
