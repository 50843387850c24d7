//! Path resolution confined below a directory descriptor: the `*at` system
//! calls [`FsDirectory`](crate::FsDirectory) uses so that no path, symbolic
//! links included, ever resolves outside its root.
//!
//! Every relative path given here has already been checked (no `..`, `.`,
//! empty component, leading `/` or NUL byte; see `directory::path`). Two
//! strategies resolve it, with the same result:
//!
//! - **`openat2`** (Linux 5.6+) with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`:
//!   the kernel refuses, in one call, any symbolic link anywhere in the path
//!   with `ELOOP`. Whether the kernel has it is probed once per process (the
//!   first call answering `ENOSYS`, `EINVAL` or `EPERM` — the last one is what
//!   some seccomp filters answer for unknown calls — means "no") and cached.
//! - **a component walk** elsewhere: `openat(parent, component, O_DIRECTORY |
//!   O_NOFOLLOW)` for each directory component, then the final call on the
//!   last component with `O_NOFOLLOW`. A symbolic link as any component makes
//!   the walk fail with `ELOOP`.
//!
//! Either way a symbolic link is reported as `ELOOP` and never followed; the
//! caller turns that into a typed error naming the path.
//!
//! Every descriptor is opened `O_CLOEXEC`. `""` as a directory path names the
//! root itself, reopened (`openat(root, ".")`) so that the new descriptor is a
//! new open file description: `flock` locks belong to open file descriptions,
//! so a duplicate (`dup`) would share the root's lock instead of contending
//! for it.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Permission bits for new files (before the umask), as `std::fs` uses.
const FILE_MODE: libc::mode_t = 0o666;
/// Permission bits for new directories (before the umask), as `std::fs` uses.
const DIR_MODE: libc::mode_t = 0o777;

/// What a directory entry is, from [`stat_at`] (symbolic links not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (FIFO, socket, device).
    Other,
}

/// The metadata [`stat_at`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryStat {
    /// What the entry is.
    pub(crate) kind: EntryKind,
    /// Its size in bytes (`st_size`).
    pub(crate) len: u64,
}

/// How paths below a root are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// One `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call.
    #[cfg(target_os = "linux")]
    Openat2,
    /// `openat(O_NOFOLLOW)` component by component.
    Walk,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Calls `f` until it does not fail with `EINTR`; `-1` means failure.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        let rc = f();
        if rc != -1 {
            return Ok(rc);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Wraps a descriptor a successful call just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open-type system call
    // (checked by `retry`: it is not -1), so it is a valid descriptor that
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Plain `openat(dir, name, flags, mode)` of a single name or `"."`.
fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let fd = retry(|| {
        // SAFETY: `dir` is a live descriptor for the duration of the call;
        // `name` is a NUL-terminated string that outlives it. The mode is
        // only read when `flags` has `O_CREAT`.
        unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                libc::c_uint::from(FILE_MODE),
            )
        }
    })?;
    Ok(owned(fd))
}

/// Opens the directory at `path` — following symbolic links: the root is
/// the caller's choice — for use as a root.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let fd = retry(|| {
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        }
    })?;
    Ok(owned(fd))
}

/// Opens directory `rel` below `root` (`""`: the root itself, as a new open
/// file description), refusing symbolic links with `ELOOP`.
pub(crate) fn open_dir(root: BorrowedFd<'_>, rel: &str) -> io::Result<OwnedFd> {
    open_dir_with(strategy(root), root, rel)
}

/// Opens file `rel` below `root` with `flags` (`O_CLOEXEC` and `O_NOFOLLOW`
/// are added; with `O_CREAT`, new files get mode `0o666` before the umask),
/// refusing symbolic links with `ELOOP`.
pub(crate) fn open_file(
    root: BorrowedFd<'_>,
    rel: &str,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    open_file_with(strategy(root), root, rel, flags)
}

fn open_dir_with(s: Strategy, root: BorrowedFd<'_>, rel: &str) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    if rel.is_empty() {
        return openat(root, c".", flags);
    }
    match s {
        #[cfg(target_os = "linux")]
        Strategy::Openat2 => linux::openat2_beneath(root, rel, flags),
        Strategy::Walk => walk(root, rel, flags),
    }
}

fn open_file_with(
    s: Strategy,
    root: BorrowedFd<'_>,
    rel: &str,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    match s {
        #[cfg(target_os = "linux")]
        Strategy::Openat2 => linux::openat2_beneath(root, rel, flags | libc::O_NOFOLLOW),
        Strategy::Walk => walk(root, rel, flags),
    }
}

/// Resolves every directory component of `rel` with `O_NOFOLLOW`, then opens
/// the last one with `flags | O_NOFOLLOW`.
fn walk(root: BorrowedFd<'_>, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let (dirs, last) = match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    };
    let parent = if dirs.is_empty() {
        None
    } else {
        Some(walk_dirs(root, dirs)?)
    };
    let at = parent.as_ref().map_or(root, |p| p.as_fd());
    open_component(at, last, flags | libc::O_NOFOLLOW)
}

/// Opens the directory `dirs` (non-empty) one component at a time.
fn walk_dirs(root: BorrowedFd<'_>, dirs: &str) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for comp in dirs.split('/') {
        let at = cur.as_ref().map_or(root, |c| c.as_fd());
        let next = open_component(
            at,
            comp,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
        cur = Some(next);
    }
    cur.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat` of one component with `O_NOFOLLOW` in `flags`, reporting a
/// symbolic link as `ELOOP` whatever the platform says (`O_DIRECTORY` on a
/// link may say `ENOTDIR`; FreeBSD says `EMLINK`).
fn open_component(dir: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    match openat(dir, &c, flags) {
        Ok(fd) => Ok(fd),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::EMLINK)) => {
            match stat_at(dir, name) {
                Ok(st) if st.kind == EntryKind::Symlink => {
                    Err(io::Error::from_raw_os_error(libc::ELOOP))
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` of a single name.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<EntryStat> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    retry(|| {
        // SAFETY: `dir` is live for the call, `c` is NUL-terminated and
        // outlives it, and `st` points to writable memory the size of a
        // `stat`, which the kernel fills on success.
        unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        }
    })?;
    // SAFETY: fstatat returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => EntryKind::File,
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    Ok(EntryStat {
        kind,
        len: u64::try_from(st.st_size).unwrap_or(0),
    })
}

/// `mkdirat(dir, name, 0o777)` of a single name.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    retry(|| {
        // SAFETY: `dir` is live for the call; `c` is NUL-terminated and
        // outlives it.
        unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), DIR_MODE) }
    })
    .map(drop)
}

/// `unlinkat(dir, name, 0)` of a single name: removes a file (or a symbolic
/// link itself), never a directory.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    retry(|| {
        // SAFETY: `dir` is live for the call; `c` is NUL-terminated and
        // outlives it.
        unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }
    })
    .map(drop)
}

/// `renameat(from_dir, from, to_dir, to)` of single names. Neither name is
/// followed if it is a symbolic link (rename never follows its last
/// components).
pub(crate) fn rename_at(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    retry(|| {
        // SAFETY: both descriptors are live for the call; both names are
        // NUL-terminated and outlive it.
        unsafe {
            libc::renameat(
                from_dir.as_raw_fd(),
                f.as_ptr(),
                to_dir.as_raw_fd(),
                t.as_ptr(),
            )
        }
    })
    .map(drop)
}

/// The names in directory `dir`, without `.` and `..`, in no particular
/// order. `dir` itself is left open and unchanged (a duplicate is read).
pub(crate) fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let dup = retry(|| {
        // SAFETY: `dir` is live for the call; F_DUPFD_CLOEXEC takes an
        // integer argument and returns a new descriptor.
        unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) }
    })
    .map(owned)?;
    // SAFETY: `dup` is a valid directory descriptor we own; on success
    // fdopendir takes ownership of it (released into the DIR below), on
    // failure it does not, and `dup` still closes it.
    let dirp = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if dirp.is_null() {
        return Err(io::Error::last_os_error());
    }
    // The DIR stream owns the descriptor now; closedir closes it.
    let _ = dup.into_raw_fd();
    let stream = DirStream(dirp);
    // The duplicate shares its file offset with `dir`: start from the top.
    // SAFETY: `stream.0` is the valid DIR stream opened just above.
    unsafe { libc::rewinddir(stream.0) };
    let mut names = Vec::new();
    loop {
        clear_errno();
        // SAFETY: `stream.0` is a valid DIR stream used by this thread only.
        let ent = unsafe { libc::readdir(stream.0) };
        if ent.is_null() {
            // End of the directory, unless errno says otherwise.
            let err = io::Error::last_os_error();
            if ERRNO_CLEARABLE && err.raw_os_error().is_some_and(|e| e != 0) {
                return Err(err);
            }
            return Ok(names);
        }
        // SAFETY: a non-null entry from readdir is valid until the next
        // readdir/closedir on the stream; `d_name` is NUL-terminated. The
        // bytes are copied out before the next call.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsString::from_vec(bytes.to_vec()));
        }
    }
}

/// An open `DIR*`, closed on drop.
struct DirStream(*mut libc::DIR);

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a valid DIR stream opened by `read_dir` and
        // closed only here, once.
        unsafe { libc::closedir(self.0) };
    }
}

/// Whether `clear_errno` can reset errno on this platform, so that a null
/// `readdir` can be told apart from an error.
const ERRNO_CLEARABLE: bool = cfg!(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
));

/// Sets `errno` to 0 (POSIX: the only way to detect a `readdir` error).
fn clear_errno() {
    #[cfg(target_os = "linux")]
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe {
        *libc::__errno_location() = 0;
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    // SAFETY: __error returns this thread's errno slot, always valid.
    unsafe {
        *libc::__error() = 0;
    }
}

/// The strategy for paths below `root`: `openat2` when this kernel has it
/// (probed once, on `root`), the component walk otherwise.
fn strategy(root: BorrowedFd<'_>) -> Strategy {
    #[cfg(target_os = "linux")]
    if linux::has_openat2(root) {
        return Strategy::Openat2;
    }
    let _ = root;
    Strategy::Walk
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::{cstr, owned, retry};

    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;

    /// Whether `openat2` with `RESOLVE_*` flags works here; probed once.
    static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// `struct open_how` of `linux/openat2.h` (libc's is `non_exhaustive`).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;

    fn raw_openat2(
        dir: BorrowedFd<'_>,
        rel: &std::ffi::CStr,
        flags: libc::c_int,
    ) -> io::Result<OwnedFd> {
        let flags = flags | libc::O_CLOEXEC;
        let how = OpenHow {
            // Open flags are a bit set; the kernel takes them as u64.
            flags: flags as u32 as u64,
            // openat2 rejects a mode without O_CREAT / O_TMPFILE.
            mode: if flags & libc::O_CREAT != 0 {
                u64::from(super::FILE_MODE)
            } else {
                0
            },
            resolve: RESOLVE,
        };
        let mut again = 0;
        loop {
            let rc = retry(|| {
                // SAFETY: `dir` is live for the call; `rel` is NUL-terminated
                // and `how` is a valid `open_how` whose size is passed; both
                // outlive the call. The kernel only reads them.
                unsafe {
                    libc::syscall(
                        libc::SYS_openat2,
                        dir.as_raw_fd(),
                        rel.as_ptr(),
                        &how as *const OpenHow,
                        std::mem::size_of::<OpenHow>(),
                    ) as libc::c_int
                }
            });
            match rc {
                // EAGAIN: a concurrent rename raced the lookup; try again
                // (a few times, then let the caller see it).
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && again < 8 => again += 1,
                Err(e) => return Err(e),
                Ok(fd) => return Ok(owned(fd)),
            }
        }
    }

    pub(super) fn openat2_beneath(
        root: BorrowedFd<'_>,
        rel: &str,
        flags: libc::c_int,
    ) -> io::Result<OwnedFd> {
        raw_openat2(root, &cstr(rel)?, flags)
    }

    pub(super) fn has_openat2(root: BorrowedFd<'_>) -> bool {
        match OPENAT2.load(Ordering::Relaxed) {
            YES => return true,
            NO => return false,
            _ => {}
        }
        match raw_openat2(root, c".", libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(_) => {
                OPENAT2.store(YES, Ordering::Relaxed);
                true
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EINVAL | libc::EPERM)
                ) =>
            {
                OPENAT2.store(NO, Ordering::Relaxed);
                false
            }
            // Something else (out of descriptors, ...): walk this time and
            // probe again next time.
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn strategies() -> Vec<Strategy> {
        let mut v = vec![Strategy::Walk];
        #[cfg(target_os = "linux")]
        {
            let tmp = tempfile::tempdir().unwrap();
            let root = open_root(tmp.path()).unwrap();
            if linux::has_openat2(root.as_fd()) {
                v.push(Strategy::Openat2);
            }
        }
        v
    }

    fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    #[test]
    fn every_strategy_refuses_symbolic_links_anywhere_in_the_path() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join("real/sub")).unwrap();
        std::fs::write(p.join("real/f"), b"f").unwrap();
        symlink(outside.path(), p.join("out_dir")).unwrap();
        symlink(outside.path().join("secret"), p.join("out_file")).unwrap();
        symlink("real", p.join("in_dir")).unwrap();
        symlink("f", p.join("real/in_file")).unwrap();
        symlink(outside.path().join("new"), p.join("dangling")).unwrap();
        let root = open_root(p).unwrap();
        let r = root.as_fd();
        for s in strategies() {
            let ctx = format!("{s:?}");
            // Plain paths resolve.
            open_file_with(s, r, "real/f", libc::O_RDONLY).unwrap();
            open_dir_with(s, r, "real/sub").unwrap();
            open_dir_with(s, r, "").unwrap();
            // Links as the last component, as a directory component, to
            // inside or outside the root: ELOOP.
            for rel in ["out_file", "real/in_file", "dangling"] {
                assert_eq!(
                    errno(open_file_with(s, r, rel, libc::O_RDONLY)),
                    libc::ELOOP,
                    "{ctx} {rel}"
                );
            }
            assert_eq!(
                errno(open_file_with(
                    s,
                    r,
                    "dangling",
                    libc::O_WRONLY | libc::O_CREAT
                )),
                libc::ELOOP,
                "{ctx}: create through a dangling link"
            );
            for rel in ["out_dir/secret", "in_dir/f", "out_dir/new"] {
                assert_eq!(
                    errno(open_file_with(s, r, rel, libc::O_RDONLY)),
                    libc::ELOOP,
                    "{ctx} {rel}"
                );
            }
            for rel in ["out_dir", "in_dir", "in_dir/sub"] {
                assert_eq!(errno(open_dir_with(s, r, rel)), libc::ELOOP, "{ctx} {rel}");
            }
            // A file where a directory is expected is not a link.
            assert_eq!(errno(open_dir_with(s, r, "real/f")), libc::ENOTDIR, "{ctx}");
        }
        assert!(!outside.path().join("new").exists(), "a link was followed");
    }

    #[test]
    fn directory_entries_and_name_operations_stay_in_their_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = open_root(tmp.path()).unwrap();
        let r = root.as_fd();
        mkdir_at(r, "d").unwrap();
        assert_eq!(errno(mkdir_at(r, "d")), libc::EEXIST);
        let d = open_dir(r, "d").unwrap();
        drop(open_file(r, "d/a", libc::O_WRONLY | libc::O_CREAT).unwrap());
        symlink("a", tmp.path().join("d/l")).unwrap();
        rename_at(d.as_fd(), "a", d.as_fd(), "b").unwrap();
        let mut names = read_dir(d.as_fd()).unwrap();
        names.sort();
        assert_eq!(names, ["b", "l"]);
        // Reading again from the same descriptor starts over.
        assert_eq!(read_dir(d.as_fd()).unwrap().len(), 2);
        assert_eq!(stat_at(d.as_fd(), "b").unwrap().kind, EntryKind::File);
        assert_eq!(stat_at(d.as_fd(), "l").unwrap().kind, EntryKind::Symlink);
        assert_eq!(stat_at(r, "d").unwrap().kind, EntryKind::Dir);
        unlink_at(d.as_fd(), "b").unwrap();
        assert_eq!(errno(stat_at(d.as_fd(), "b")), libc::ENOENT);
        assert_eq!(errno(unlink_at(r, "d")), libc::EISDIR);
    }
}
