//! A real full disk: a 4 MiB tmpfs mounted for the test.
//!
//! Regions are created with real blocks, so a region that does not fit fails
//! at `create_region` with `ENOSPC` — never later, inside a write to the
//! mapping, as a SIGBUS that kills the process — and a region that was
//! created can always be written in full, however full the disk gets.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`); where it is refused the test
//! prints `skipped: <reason>` and passes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{assert_io, pattern};
use zerodur::{Directory, Error, FsDirectory, IoOp};

const MIB: u64 = 1024 * 1024;
const FS_SIZE: &str = "size=4m";

/// A tmpfs mounted on a fresh temporary directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs, or says why it could not.
    fn mount() -> Result<Tmpfs, String> {
        if !cfg!(target_os = "linux") {
            return Err("tmpfs mounts are only tried on Linux".into());
        }
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", FS_SIZE, "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run `mount`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount -t tmpfs` failed ({}): {}",
                out.status,
                // One line: mount's message, whitespace collapsed.
                String::from_utf8_lossy(&out.stderr)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(Tmpfs { path, _dir: dir })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a panic mid-test): detach it lazily
            // so the temporary directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes `data` over the whole region in chunks, flushes it, and checks the
/// file holds it.
fn fill_region(dir: &FsDirectory, region: &mut dyn zerodur::Region, data: &[u8]) {
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        region.write_at((i * 64 * 1024) as u64, chunk).unwrap();
    }
    region.flush_range(0, region.len()).unwrap();
    assert_eq!(region.bytes(), data);
    assert!(
        dir.read(region.path()).unwrap() == data,
        "file differs from region"
    );
}

#[test]
fn full_disk_fails_region_creation_cleanly_and_never_a_written_region() {
    let fs = match Tmpfs::mount() {
        Ok(fs) => fs,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let dir = FsDirectory::new(fs.path()).unwrap();

    // Created before the disk fills; written only after.
    let mut early = dir.create_region("early", MIB).unwrap();

    // Larger than the whole filesystem: refused up front.
    assert_io(
        dir.create_region("huge", 8 * MIB),
        IoOp::Allocate,
        libc::ENOSPC,
    );
    assert!(!dir.exists("huge").unwrap(), "a failed region left a file");

    // A region that fits, written in full.
    let mut fits = dir.create_region("fits", MIB).unwrap();
    fill_region(&dir, &mut *fits, &pattern(MIB as usize, 1));

    // Smaller than the filesystem but larger than what is free: the
    // allocation gets partway, fails, and gives every block back.
    assert_io(
        dir.create_region("partial", 3 * MIB),
        IoOp::Allocate,
        libc::ENOSPC,
    );
    assert!(
        !dir.exists("partial").unwrap(),
        "a failed region left a file"
    );
    let mut second = dir
        .create_region("second", 3 * MIB / 2)
        .expect("blocks of the failed allocation were not released");

    // Fill what is left with ordinary writes until the disk refuses.
    let mut filler = dir.create("filler").unwrap();
    let chunk = vec![0x5A; 64 * 1024];
    let err = loop {
        if let Err(e) = filler.write_all(&chunk) {
            break e;
        }
        assert!(filler.len() <= 4 * MIB, "the filesystem never filled up");
    };
    match &err {
        Error::Io { op, source, .. } => {
            assert_eq!(*op, IoOp::Write);
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
        }
        other => panic!("expected ENOSPC from a write, got {other:?}"),
    }
    drop(filler);
    assert_io(
        dir.create_region("late", 64 * 1024),
        IoOp::Allocate,
        libc::ENOSPC,
    );
    assert!(!dir.exists("late").unwrap());

    // The disk is full, yet every byte of the preallocated regions can be
    // written: their blocks are real. (A sparse region would die of SIGBUS
    // here, taking the test process with it.)
    fill_region(&dir, &mut *early, &pattern(MIB as usize, 2));
    fill_region(&dir, &mut *second, &pattern((3 * MIB / 2) as usize, 3));
    dir.sync_file("early").unwrap();
    dir.sync_dir("").unwrap();

    // A full disk does not stop reopening a region and writing it again.
    drop(early);
    let mut reopened = dir.open_region("early").unwrap();
    fill_region(&dir, &mut *reopened, &pattern(MIB as usize, 4));
    assert_eq!(
        dir.list("").unwrap(),
        ["early", "filler", "fits", "second"],
        "only the regions that fit and the filler exist"
    );
    // Regions unmap (and the directory closes) before the guard unmounts.
    drop((reopened, fits, second, dir));
}
