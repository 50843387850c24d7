//! Exclusive, multi-process advisory lock (`flock`).

use std::fs::File;
use std::io;

/// An open file holding an exclusive `flock`. The lock is released when this
/// value is dropped (the descriptor closes) or the process dies, so a crash
/// never leaves a directory that cannot be opened again.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Tries to take an exclusive lock on `file` without blocking.
    ///
    /// Returns `Ok(None)` when another open file description holds it: another
    /// process, or another open of the same file in this process (flock locks
    /// belong to open file descriptions, so this also catches a second open
    /// from the same process).
    pub(crate) fn try_exclusive(file: File) -> io::Result<Option<FileLock>> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: the descriptor is valid for the duration of the call
            // (borrowed from `file`, which we own); flock takes no pointers.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Some(FileLock { _file: file }));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(err),
            }
        }
    }
}

/// Takes an exclusive `flock` on `fd`, waiting for it as long as another
/// open file description holds it. The lock is released when the last
/// descriptor of `fd`'s open file description closes (or the process dies).
///
/// Works on directories too: the atomic-write protocol locks the folder it
/// writes in.
pub(crate) fn lock_exclusive(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is valid for the duration of the call
        // (borrowed); flock takes no pointers.
        let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}
