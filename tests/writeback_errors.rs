//! Real write-back errors from the kernel, not injected ones.
//!
//! # Setup (needs root; `skipped: <reason>` and a pass where refused)
//!
//! A 48 MiB tmpfs holds a *sparse* 256 MiB image file formatted as ext4,
//! attached to a loop device and mounted (`errors=continue`, the default
//! `data=ordered`). ext4 believes it has 256 MiB; the tmpfs behind it has
//! room for a fraction of that: thin provisioning. When the tmpfs is full,
//! the loop device fails every write into a hole of the image (`ENOSPC`
//! from the block layer), ext4's write-back of data pages fails, and
//! `msync`/`fsync` return that error for real. zerodur preallocates WAL
//! segments with `fallocate`, so ext4 has the blocks and never refuses a
//! store into the mapping: the failure comes from below, at the barrier —
//! exactly the hazard of thin-provisioned storage.
//!
//! Two details make the kernel behave as wanted here (checked on 6.18):
//!
//! - The ext4 journal (4 MiB, placed at 1 MiB with `-J location=`) and the
//!   metadata before it are given real tmpfs pages (`fallocate` of the first
//!   5 MiB of the image) before mounting. Otherwise a journal commit into a
//!   hole fails too, jbd2 aborts the journal and ext4 turns read-only, which
//!   tests nothing of zerodur. With them backed, only file data fails: the
//!   kernel logs "failed to convert unwritten extents to written extents",
//!   the file system stays writable, and the pages whose write-back failed
//!   sit *clean* in the page cache holding bytes that are not on disk.
//! - Reserve files on the tmpfs, written before the WAL starts, are deleted
//!   one at a time to make room again, so the test can go on after each
//!   failure.
//!
//! # What it proves
//!
//! 1. `append_durable` until a barrier fails: the failing call returns
//!    `Error::Io` from `msync` (`IoOp::FlushRange`) naming a segment, with
//!    `ENOSPC` or `EIO`; every earlier call that returned `Ok` stays
//!    acknowledged; the WAL is poisoned and every later call (appends,
//!    batches, `flush`, `sync` again and again, `close`) returns
//!    `Error::Poisoned` — never `Ok`, although the kernel now answers `Ok`
//!    to an `fsync` of the same file (printed: through a fresh descriptor,
//!    the first `fsync` still reports the error, the second says `Ok`; the
//!    fsyncgate hazard itself).
//! 2. After making room, `Wal::open` resumes; strict and best-effort replay
//!    return every acknowledged entry byte-exact (an unacknowledged one may
//!    be there, byte-exact, or not); durable appends work again.
//! 3. `append_batch` + `sync` with the disk full again: `sync` fails, the
//!    durable watermark stays at the last good barrier, nothing of the batch
//!    is acknowledged; after making room, reopen recovers as in 2 and the
//!    batch replays all or none.
//! 4. A checkpoint publish whose file sync fails returns that error and
//!    leaves only the previous checkpoint, loadable, under a final name.
//!
//! A second test goes further than the page cache: after a failed barrier,
//! room again, a reopen and more durable appends, the ext4 file system is
//! unmounted and mounted again, and every acknowledged entry must replay
//! from what is really on disk. **It fails on this kernel (6.18)** and is
//! `#[ignore]`d until there is a fix: ext4
//! loses the conversion of an unwritten extent whose write-back failed, so
//! pages written again and `msync`ed without error read back as zeros after
//! the remount (see that test's docs). Resume's rewrite of unproven frames
//! does not make them durable there, and the log becomes unreadable past
//! them, acknowledged entries included.
//!
//! Guards unmount the ext4 file system, detach the loop device and unmount
//! the tmpfs, in that order, whatever happens (also on panic).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use zerodur::publish::{publish_checkpoint, PublishOptions};
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions, WalReader};
use zerodur::{list_checkpoints, Checkpoint, Directory, Error, FsDirectory, IoOp};

const MIB: u64 = 1024 * 1024;
const TMPFS_SIZE: &str = "size=48m";
const IMAGE_BYTES: u64 = 256 * MIB;
/// The journal's place and size in the image (`-J size=4,location=1M`); the
/// image's first `BACKED_BYTES` get real tmpfs pages.
const BACKED_BYTES: u64 = 5 * MIB;
const RESERVE_BYTES: usize = 8 * 1024 * 1024;
const RESERVES: usize = 3;
const PAYLOAD: usize = 64 * 1024;
/// Far more than the tmpfs can hold: the loop cannot run forever.
const MAX_APPENDS: u64 = 2000;
const CHECKPOINT_TAG: u64 = 0x5752_4954_4542_4143;

/// Runs a command; its stderr (one line) on failure.
fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A mount on a fresh temporary directory; unmounted on drop (lazily if
/// something still holds it), then the directory goes.
struct Mount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn new(args: &[&str]) -> Result<Mount, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let path = dir.path().to_path_buf();
        let mut all = args.to_vec();
        all.push(path_str(&path));
        run("mount", &all)?;
        Ok(Mount { path, _dir: dir })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if run("umount", &[path_str(&self.path)]).is_err() {
            let _ = run("umount", &["-l", path_str(&self.path)]);
        }
    }
}

/// An attached loop device; detached on drop.
struct Loop {
    dev: String,
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = run("losetup", &["-d", &self.dev]);
    }
}

/// The whole stack. Fields drop in declaration order: ext4, loop, tmpfs.
struct Rig {
    ext4: Option<Mount>,
    lo: Option<Loop>,
    tmpfs: Mount,
}

impl Rig {
    fn set_up() -> Result<Rig, String> {
        if !cfg!(target_os = "linux") {
            return Err("loop devices are only tried on Linux".into());
        }
        for tool in ["mkfs.ext4", "losetup"] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Err(format!("no `{tool}`"));
            }
        }
        let tmpfs = Mount::new(&["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])?;
        let mut rig = Rig {
            ext4: None,
            lo: None,
            tmpfs,
        };
        let image = rig.tmpfs.path.join("image");
        let f = File::create(&image).map_err(|e| format!("cannot create the image: {e}"))?;
        f.set_len(IMAGE_BYTES)
            .map_err(|e| format!("cannot size the image: {e}"))?;
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-N",
                "1024",
                "-O",
                "^resize_inode",
                "-E",
                "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
                "-J",
                "size=4,location=1M",
                path_str(&image),
            ],
        )?;
        // Real pages for the metadata and the journal (see the module docs).
        // SAFETY: a plain syscall on an open descriptor.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, BACKED_BYTES as libc::off_t) };
        if rc != 0 {
            return Err(format!(
                "cannot back the image's journal: {}",
                std::io::Error::last_os_error()
            ));
        }
        drop(f);
        let dev = run("losetup", &["--find", "--show", path_str(&image)])?;
        rig.lo = Some(Loop { dev });
        rig.mount_ext4()?;
        for i in 0..RESERVES {
            std::fs::write(rig.reserve(i), vec![0xA5; RESERVE_BYTES])
                .map_err(|e| format!("cannot write a reserve file: {e}"))?;
        }
        Ok(rig)
    }

    fn mount_ext4(&mut self) -> Result<(), String> {
        let dev = &self.lo.as_ref().expect("attached").dev;
        self.ext4 = Some(Mount::new(&["-t", "ext4", "-o", "errors=continue", dev])?);
        Ok(())
    }

    /// Unmounts and mounts the ext4 file system again: its page cache goes.
    fn remount_ext4(&mut self) {
        let old = self.ext4.take().expect("mounted");
        run("umount", &[path_str(&old.path)]).expect("unmount the ext4 file system");
        // Already unmounted: the guard's own umount fails harmlessly.
        drop(old);
        self.mount_ext4().expect("mount the ext4 file system again");
    }

    fn root(&self) -> &Path {
        &self.ext4.as_ref().expect("mounted").path
    }

    fn reserve(&self, i: usize) -> PathBuf {
        self.tmpfs.path.join(format!("reserve-{i}"))
    }

    /// Deletes a reserve file: room for that much more data on the medium.
    fn make_room(&self, i: usize) {
        std::fs::remove_file(self.reserve(i)).expect("remove a reserve file");
    }

    /// Fills the tmpfs to the last byte with a new filler file.
    fn fill_tmpfs(&self, name: &str) -> u64 {
        let mut f = File::create(self.tmpfs.path.join(name)).expect("create a filler");
        let chunk = vec![0x5A; 4096];
        let mut n = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
            assert!(n <= 64 * MIB, "the tmpfs never filled up");
        }
        n
    }
}

/// Entry `id`'s payload: 64 KiB, different for every id (so a stale or
/// misplaced page shows), never constant.
fn payload(id: u64) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(PAYLOAD);
    while out.len() < PAYLOAD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(PAYLOAD);
    out[..8].copy_from_slice(&id.to_le_bytes());
    out
}

fn opts() -> WalOptions {
    WalOptions::new("wal").segment_size_bytes(4 * MIB)
}

/// Asserts that `r` is the failed barrier's error: `msync` of a WAL segment
/// with `ENOSPC` or `EIO`.
#[track_caller]
fn assert_barrier_error<T: std::fmt::Debug>(r: zerodur::Result<T>) -> (String, PathBuf) {
    match r {
        Err(Error::Io { op, path, source }) => {
            assert_eq!(op, IoOp::FlushRange, "not the barrier: {source}");
            assert!(
                path.starts_with("wal"),
                "the error names {path:?}, not a segment"
            );
            let errno = source.raw_os_error();
            assert!(
                errno == Some(libc::ENOSPC) || errno == Some(libc::EIO),
                "unexpected errno: {source}"
            );
            (format!("{} on {}: {source}", op, path.display()), path)
        }
        other => panic!("expected the barrier's I/O error, got {other:?}"),
    }
}

#[track_caller]
fn assert_poisoned<T: std::fmt::Debug>(r: zerodur::Result<T>, what: &str) {
    match r {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("{what} after a failed barrier: expected Poisoned, got {other:?}"),
    }
}

/// Every call a poisoned WAL must refuse; returns how many were made.
fn assert_refuses_everything(wal: &Wal, next_id: u64) -> u64 {
    let p = payload(next_id);
    let mut n = 0;
    for _ in 0..3 {
        assert_poisoned(wal.sync(), "sync");
        n += 1;
    }
    assert_poisoned(wal.append(&p), "append");
    assert_poisoned(wal.append_durable(&p), "append_durable");
    assert_poisoned(wal.append_batch(&[&p, &p]), "append_batch");
    assert_poisoned(wal.append_batch_durable(&[&p]), "append_batch_durable");
    assert_poisoned(wal.flush(), "flush");
    assert_poisoned(wal.sync(), "sync");
    n + 6
}

/// Replays the log in `mode`: (id, bytes) in order.
fn replay(dir: &Arc<dyn Directory>, mode: ReadMode) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    WalReader::open(Arc::clone(dir), "wal", mode)
        .unwrap_or_else(|e| panic!("{mode:?} reader: {e}"))
        .replay(None, |id, b| {
            out.push((id.get(), b.to_vec()));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{mode:?} replay: {e}"));
    out
}

/// Checks a replay against the acknowledged ids `1..=acked` (ids up to
/// `retired` may be gone: a checkpoint covers them) and the ids appended but
/// never acknowledged, `acked + 1..=appended`, which may be there or not,
/// but only byte-exact, and only as a prefix of what was appended (a batch
/// all or none). Returns the last id replayed.
#[track_caller]
fn check_replay(
    got: &[(u64, Vec<u8>)],
    retired: u64,
    acked: u64,
    appended: u64,
    what: &str,
) -> u64 {
    let first = got.first().map_or(acked + 1, |e| e.0);
    assert!(
        first <= retired + 1,
        "{what}: the log starts at {first}, acknowledged entries after {retired} are missing"
    );
    for (i, (id, bytes)) in got.iter().enumerate() {
        assert_eq!(*id, first + i as u64, "{what}: ids not consecutive");
        assert!(
            *id <= appended,
            "{what}: entry {id} was never appended (last appended: {appended})"
        );
        assert!(
            *bytes == payload(*id),
            "{what}: entry {id} is not the bytes appended ({} bytes, starts {:?})",
            bytes.len(),
            &bytes[..bytes.len().min(16)]
        );
    }
    let last = got.last().map_or(first - 1, |e| e.0);
    assert!(
        last >= acked,
        "{what}: acknowledged entries {}..={acked} are missing",
        last + 1
    );
    last
}

#[test]
fn real_writeback_errors_poison_the_wal_and_lose_nothing_acknowledged() {
    let _serial = serial();
    let started = Instant::now();
    let Some(rig) = rig_or_skip() else {
        return;
    };
    let dir = FsDirectory::arc(rig.root()).unwrap();

    // 1. Durable appends until a barrier fails.
    let wal = Wal::open(Arc::clone(&dir), opts()).unwrap();
    let (acked, failed_id, err) = durable_until_failure(&wal);
    let (cause, failed_file) = assert_barrier_error(err);
    assert!(acked >= 16, "the barrier failed after only {acked} entries");
    assert!(wal.is_poisoned(), "a failed barrier did not poison the WAL");
    assert_eq!(
        wal.durable_entry_id(),
        Some(EntryId::new(acked)),
        "the durable watermark moved past the last good barrier"
    );
    assert_eq!(wal.last_entry_id(), Some(EntryId::new(failed_id)));
    let mut refused = assert_refuses_everything(&wal, failed_id + 1);
    assert_eq!(wal.durable_entry_id(), Some(EntryId::new(acked)));
    // The hazard itself: the kernel reports a write-back error once per
    // descriptor; a second fsync through a fresh one (printed) says Ok
    // about pages it lost, the sync zerodur refused above.
    let kernel_says = [0, 1].map(|_| fresh_fsync(rig.root(), &failed_file));
    assert_poisoned(wal.close(), "close");
    refused += 1;
    println!(
        "barrier {failed_id} failed ({cause}) after {acked} acknowledged entries; \
         {refused} later calls refused; fsync of the segment by fresh descriptors: {kernel_says:?}"
    );
    let appended = failed_id;
    let acked_1 = acked;

    // 2. Room again: reopen and replay.
    rig.make_room(0);
    let wal = Wal::open(Arc::clone(&dir), opts()).expect("reopen after a failed barrier");
    let strict = replay(&dir, ReadMode::Strict);
    let last = check_replay(&strict, 0, acked, appended, "after reopen, strict");
    assert_eq!(
        replay(&dir, ReadMode::BestEffort),
        strict,
        "best-effort replay differs from strict"
    );
    assert_eq!(wal.next_entry_id().get(), last + 1);
    let recovered_1 = strict.len();
    drop(strict);
    let mut appended = last;
    for _ in 0..8 {
        let id = appended + 1;
        assert_eq!(wal.append_durable(&payload(id)).unwrap().get(), id);
        appended = id;
    }
    let mut acked;
    drop(wal);

    // 3. A batch, then a barrier that fails. Prefaulting off: it dirties
    //    zero pages 16 MiB ahead of the tail, and background write-back of
    //    those could land (or fail) the pages the batch goes to first,
    //    making which barrier fails a matter of timing.
    //    The batch must fit in the active segment (a rotation creating a
    //    segment would fail first, at its own file sync): durable appends
    //    until a fresh segment is active.
    let wal = Wal::open(Arc::clone(&dir), opts().prefault(false)).unwrap();
    assert_eq!(wal.next_entry_id().get(), appended + 1);
    let seg = wal.active_segment();
    while wal.active_segment() == seg {
        let id = appended + 1;
        assert_eq!(wal.append_durable(&payload(id)).unwrap().get(), id);
        appended = id;
    }
    acked = appended;
    let filled = rig.fill_tmpfs("filler-1");
    let batch: Vec<Vec<u8>> = (appended + 1..=appended + 32).map(payload).collect();
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    let (first, last) = wal.append_batch(&refs).unwrap().expect("a non-empty batch");
    assert_eq!((first.get(), last.get()), (appended + 1, appended + 32));
    let (cause_b, _) = assert_barrier_error(wal.sync());
    assert!(wal.is_poisoned());
    assert_eq!(
        wal.durable_entry_id(),
        Some(EntryId::new(acked)),
        "a failed barrier acknowledged part of the batch"
    );
    refused += assert_refuses_everything(&wal, last.get() + 1);
    assert_eq!(wal.durable_entry_id(), Some(EntryId::new(acked)));
    drop(wal);
    println!("batch {first}..={last}: sync failed ({cause_b}) with the tmpfs full ({filled} filler bytes); nothing acknowledged");
    appended = last.get();

    rig.make_room(1);
    let wal = Wal::open(Arc::clone(&dir), opts()).expect("reopen after a failed batch");
    let strict = replay(&dir, ReadMode::Strict);
    let last = check_replay(&strict, 0, acked, appended, "after the batch, strict");
    assert!(
        last == acked || last == appended,
        "the batch replays in part: up to {last} of {first}..={appended}"
    );
    assert_eq!(replay(&dir, ReadMode::BestEffort), strict);
    let recovered_2 = strict.len();
    drop(strict);
    appended = last;
    for _ in 0..4 {
        let id = appended + 1;
        assert_eq!(wal.append_durable(&payload(id)).unwrap().get(), id);
        appended = id;
    }
    acked = appended;

    // 4. A checkpoint that lands, then one whose file sync fails.
    let good: Vec<u8> = payload(1_000_001).repeat(8);
    let published = publish_checkpoint(
        &*dir,
        &wal,
        &PublishOptions::new().tag(CHECKPOINT_TAG),
        EntryId::new(acked),
        &good,
    )
    .expect("publish with room on the medium");
    let covered = acked;
    for _ in 0..2 {
        let id = appended + 1;
        assert_eq!(wal.append_durable(&payload(id)).unwrap().get(), id);
        appended = id;
    }
    acked = appended;
    rig.fill_tmpfs("filler-2");
    let bad: Vec<u8> = payload(1_000_002).repeat(16);
    let r = publish_checkpoint(
        &*dir,
        &wal,
        &PublishOptions::new().tag(CHECKPOINT_TAG),
        EntryId::new(acked),
        &bad,
    );
    let cause_c = match r {
        Err(Error::Io { op, path, source }) => {
            assert_eq!(
                op,
                IoOp::SyncFile,
                "not the checkpoint's file sync: {source}"
            );
            let errno = source.raw_os_error();
            assert!(
                errno == Some(libc::ENOSPC) || errno == Some(libc::EIO),
                "unexpected errno: {source}"
            );
            format!("{op} on {}: {source}", path.display())
        }
        other => panic!("expected the checkpoint's file sync to fail, got {other:?}"),
    };
    let check_checkpoints = |dir: &Arc<dyn Directory>, what: &str| {
        let folder = published.path.rsplit_once('/').map_or("", |(f, _)| f);
        let names = list_checkpoints(&**dir, folder).unwrap();
        assert_eq!(
            names.iter().map(|n| n.path_in(folder)).collect::<Vec<_>>(),
            std::slice::from_ref(&published.path),
            "{what}: a failed publish left a checkpoint under a final name"
        );
        assert_eq!(
            dir.list(folder).unwrap(),
            [published.path.rsplit('/').next().unwrap().to_string()],
            "{what}: the failed publish left a file behind"
        );
        let loaded = Checkpoint::<Vec<u8>>::load(&**dir, &published.path, CHECKPOINT_TAG)
            .unwrap_or_else(|e| panic!("{what}: the previous checkpoint: {e}"));
        assert_eq!(loaded.last_entry(), Some(covered));
        assert!(
            loaded.deserialize().unwrap() == good,
            "{what}: checkpoint bytes"
        );
    };
    check_checkpoints(&dir, "after the failed publish");
    println!(
        "checkpoint publish failed ({cause_c}); {} still loads; WAL poisoned: {}",
        published.path,
        wal.is_poisoned()
    );
    drop(wal);
    rig.make_room(2);
    for f in ["filler-1", "filler-2"] {
        std::fs::remove_file(rig.tmpfs.path.join(f)).unwrap();
    }

    // Once more with room: the log reopens (from the page cache) with every
    // acknowledged entry, and takes durable appends.
    let wal = Wal::open(Arc::clone(&dir), opts()).expect("final reopen");
    let strict = replay(&dir, ReadMode::Strict);
    let last = check_replay(&strict, covered, acked, appended, "final, strict");
    assert_eq!(replay(&dir, ReadMode::BestEffort), strict);
    let recovered_3 = strict.len();
    drop(strict);
    let id = last + 1;
    assert_eq!(wal.append_durable(&payload(id)).unwrap().get(), id);
    wal.close().unwrap();
    drop(dir);

    println!(
        "write-back errors: barrier failed after {acked_1} acknowledged entries, \
         {refused} later calls refused, reopen recovered {recovered_1}, after the batch \
         {recovered_2}, at the end {recovered_3} (a checkpoint covers up to {covered}); {:.1} s",
        started.elapsed().as_secs_f64(),
    );
}

/// The same failure, then the test the page cache cannot pass for the
/// medium: after the failed barrier, room again, a reopen and more durable
/// appends, the ext4 file system is unmounted and mounted again. Every
/// acknowledged entry must replay from what is really on disk, and the log
/// must reopen.
///
/// FAILS on Linux 6.18 ext4 (found by this test): after a failed write-back
/// into an unwritten (preallocated or delayed-allocation) extent, ext4 has
/// already cleared the buffers' "unwritten" state, so when the same pages are
/// written again their extent is never converted: `msync` returns `Ok`, yet
/// after the remount those pages read as zeros. Resume's rewrite of unproven
/// frames (`FORMAT.md`, "Resume") does not make them durable there, the
/// resume marker and the next acknowledged entries then vouch for frames that
/// are not on disk, and replay fails with `BelowDurablePoint`.
///
/// The kernel half reproduces without zerodur on the same stack: fill the
/// tmpfs, `pwrite` 1 MiB into a file (preallocated or not), `fsync` fails
/// with `ENOSPC`; make room, `pwrite` the same bytes, `fsync` returns `Ok`;
/// remount: the file reads zeros (`filefrag` still shows the extent
/// `unwritten`). Dropping the clean pages after the failure
/// (`POSIX_FADV_DONTNEED`) instead makes them read as zeros at once, and a
/// later write and `fsync` then do land.
///
/// Two mitigations were tried on 2026-12-08 and neither passes it:
/// evicting the segments' clean pages before resume (read from the disk,
/// the entry acknowledged *before* the failure is gone too), and writing
/// every block of a new segment with zeros and syncing it before use (the
/// segment's extent is then fully written, `filefrag` shows no unwritten
/// part, and the same frames are still missing after the remount, while
/// the kernel logs `critical space allocation error` for blocks of that
/// written extent). So the cause is not only ext4's unwritten extents; the
/// loop driver over a full tmpfs may drop or re-sparse blocks on its own.
/// Not pinned down. Ignored until it is; run it with
/// `cargo test --release --test writeback_errors -- --ignored`.
#[test]
#[ignore = "fails on ext4 (Linux 6.18): acknowledged entries unreadable after a failed write-back and a remount; see the doc comment"]
fn acknowledged_entries_survive_a_remount_after_a_failed_barrier() {
    let _serial = serial();
    let Some(mut rig) = rig_or_skip() else {
        return;
    };
    let dir = FsDirectory::arc(rig.root()).unwrap();
    let wal = Wal::open(Arc::clone(&dir), opts()).unwrap();
    let (acked, failed_id, err) = durable_until_failure(&wal);
    assert_barrier_error(err);
    drop(wal);

    rig.make_room(0);
    let wal = Wal::open(Arc::clone(&dir), opts()).expect("reopen after a failed barrier");
    let cached = replay(&dir, ReadMode::Strict);
    let mut appended = check_replay(&cached, 0, acked, failed_id, "from the page cache");
    for _ in 0..8 {
        let id = appended + 1;
        assert_eq!(wal.append_durable(&payload(id)).unwrap().get(), id);
        appended = id;
    }
    let acked = appended;
    wal.close().unwrap();
    drop(dir);

    rig.remount_ext4();
    let dir = FsDirectory::arc(rig.root()).unwrap();
    let strict = replay(&dir, ReadMode::Strict);
    let last = check_replay(&strict, 0, acked, appended, "after remount, strict");
    assert_eq!(replay(&dir, ReadMode::BestEffort), strict);
    let wal = Wal::open(Arc::clone(&dir), opts()).expect("reopen after remount");
    assert_eq!(
        wal.append_durable(&payload(last + 1)).unwrap().get(),
        last + 1
    );
    wal.close().unwrap();
    println!(
        "after remount: all {acked} acknowledged entries replayed (barrier {failed_id} had failed)"
    );
}

/// The stack of [`Rig::set_up`], or `None` after printing why it could not
/// be built (the test then passes as skipped).
fn rig_or_skip() -> Option<Rig> {
    match Rig::set_up() {
        Ok(rig) => Some(rig),
        Err(reason) => {
            println!("skipped: {reason}");
            None
        }
    }
}

/// The two tests one at a time: each mounts its own stack, and
/// `losetup --find` is not atomic.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Durable appends until one fails: the last acknowledged id, the failed
/// id, and the failed call's result.
fn durable_until_failure(wal: &Wal) -> (u64, u64, zerodur::Result<EntryId>) {
    let mut acked = 0u64;
    loop {
        let id = wal.next_entry_id().get();
        assert!(id <= MAX_APPENDS, "no barrier ever failed");
        match wal.append_durable(&payload(id)) {
            Ok(got) => {
                assert_eq!(got.get(), id);
                acked = id;
            }
            Err(e) => return (acked, id, Err(e)),
        }
    }
}

/// `fsync` of the file whose barrier failed, through a descriptor of its
/// own, as other code (or a naive retry) would do it: the kernel's answer.
fn fresh_fsync(root: &Path, file: &Path) -> String {
    match OpenOptions::new().write(true).open(root.join(file)) {
        Ok(f) => match f.sync_all() {
            Ok(()) => "Ok".into(),
            Err(e) => e.to_string(),
        },
        Err(e) => format!("cannot open it: {e}"),
    }
}
