//! One suite, written once, run against every `Directory` backend.
//!
//! Each property is a function taking a [`Backend`]; the `suite!` macro at the
//! bottom instantiates every one of them in `mod fs` (an [`FsDirectory`] in a
//! temporary directory) and `mod memory` (a [`MemoryDirectory`]).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use support::{
    assert_invalid_path, assert_io, assert_not_found, every_policy, pattern, write_durable,
    write_file, INVALID_FILE_ONLY, INVALID_PATHS,
};
use zerodur::{
    AtomicFile, CrashPolicy, Directory, Error, Fault, FsDirectory, IoOp, MemoryDirectory, OpKind,
};

/// A backend under test, with the few things the trait cannot do itself.
struct Backend {
    dir: Arc<dyn Directory>,
    /// Opens the same storage again, as a second, independent handle.
    reopen: Box<dyn Fn() -> Arc<dyn Directory>>,
    /// Arms a fault on this backend.
    inject: Box<dyn Fn(Fault)>,
    /// For the filesystem backend: the directory *containing* the root, which
    /// must never gain an entry besides the root itself.
    outside: Option<(tempfile::TempDir, PathBuf)>,
}

impl Backend {
    fn fs() -> Backend {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let fs = FsDirectory::new(&root).expect("open FsDirectory");
        let dir: Arc<dyn Directory> = Arc::new(fs.clone());
        let reopen_root = root.clone();
        Backend {
            dir,
            reopen: Box::new(move || FsDirectory::arc(&reopen_root).expect("reopen")),
            inject: Box::new(move |f| fs.inject(f)),
            outside: Some((tmp, root)),
        }
    }

    fn memory() -> Backend {
        let mem = MemoryDirectory::new();
        let dir: Arc<dyn Directory> = Arc::new(mem.clone());
        let again = mem.clone();
        Backend {
            dir,
            reopen: Box::new(move || Arc::new(again.clone())),
            inject: Box::new(move |f| mem.inject(f)),
            outside: None,
        }
    }

    fn d(&self) -> &dyn Directory {
        &*self.dir
    }

    /// Asserts nothing was created next to the root (paths never escape it).
    fn assert_nothing_outside(&self) {
        if let Some((tmp, root)) = &self.outside {
            let entries: Vec<PathBuf> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(entries, vec![root.clone()], "a path escaped the root");
        }
    }
}

// ---------------------------------------------------------------------------
// Files: create, write, read, len, list, exists, remove, rename, truncate.

fn create_write_read_and_len(b: &Backend) {
    let d = b.d();
    let mut f = d.create("a").unwrap();
    assert!(f.is_empty());
    f.write_all(b"hello").unwrap();
    f.write_all(b" world").unwrap();
    assert_eq!(f.len(), 11);
    f.sync().unwrap();
    drop(f);
    assert_eq!(d.len("a").unwrap(), 11);
    assert_eq!(d.read("a").unwrap(), b"hello world");
    d.sync_file("a").unwrap();
    d.sync_dir("").unwrap();

    // `create` of an existing file truncates it.
    let f = d.create("a").unwrap();
    assert_eq!(f.len(), 0);
    drop(f);
    assert_eq!(d.len("a").unwrap(), 0);
    assert_eq!(d.read("a").unwrap(), b"");

    // A file in a missing directory cannot be created.
    assert_not_found(d.create("nodir/x"));
}

fn list_is_sorted_and_shows_only_direct_children(b: &Backend) {
    let d = b.d();
    d.create_dir_all("d/sub/deeper").unwrap();
    for p in ["d/b", "d/a", "d/c", "d/sub/x", "top", "d/sub/deeper/y"] {
        write_file(d, p, p.as_bytes()).unwrap();
    }
    assert_eq!(d.list("").unwrap(), ["d", "top"]);
    assert_eq!(d.list("d").unwrap(), ["a", "b", "c", "sub"]);
    assert_eq!(d.list("d/sub").unwrap(), ["deeper", "x"]);
    assert_eq!(d.list("d/sub/deeper").unwrap(), ["y"]);
    d.create_dir_all("empty").unwrap();
    assert!(d.list("empty").unwrap().is_empty());
    assert_not_found(d.list("missing"));
}

fn exists_reports_files_dirs_and_root(b: &Backend) {
    let d = b.d();
    assert!(d.exists("").unwrap(), "the root always exists");
    assert!(!d.exists("x").unwrap());
    d.create_dir_all("x/y").unwrap();
    assert!(d.exists("x").unwrap());
    assert!(d.exists("x/y").unwrap());
    assert!(!d.exists("x/f").unwrap());
    write_file(d, "x/f", b"1").unwrap();
    assert!(d.exists("x/f").unwrap());
    d.remove("x/f").unwrap();
    assert!(!d.exists("x/f").unwrap());
}

fn remove_deletes_the_file(b: &Backend) {
    let d = b.d();
    write_file(d, "gone", b"data").unwrap();
    write_file(d, "stays", b"data").unwrap();
    d.remove("gone").unwrap();
    assert!(!d.exists("gone").unwrap());
    assert_not_found(d.read("gone"));
    assert_not_found(d.remove("gone"));
    assert_eq!(d.list("").unwrap(), ["stays"]);
}

fn rename_moves_and_replaces_an_existing_target(b: &Backend) {
    let d = b.d();
    write_file(d, "a", b"AAA").unwrap();
    write_file(d, "b", b"B").unwrap();
    d.rename("a", "b").unwrap();
    assert_eq!(d.read("b").unwrap(), b"AAA");
    assert!(!d.exists("a").unwrap());
    assert_eq!(d.list("").unwrap(), ["b"]);

    d.create_dir_all("sub").unwrap();
    d.rename("b", "sub/c").unwrap();
    assert_eq!(d.read("sub/c").unwrap(), b"AAA");
    assert_eq!(d.list("").unwrap(), ["sub"]);
    assert_eq!(d.list("sub").unwrap(), ["c"]);
    assert_not_found(d.rename("b", "z"));
}

fn create_dir_all_creates_parents_and_is_idempotent(b: &Backend) {
    let d = b.d();
    d.create_dir_all("a/b/c").unwrap();
    d.create_dir_all("a/b/c").unwrap();
    d.create_dir_all("a").unwrap();
    d.create_dir_all("").unwrap();
    assert_eq!(d.list("a").unwrap(), ["b"]);
    assert_eq!(d.list("a/b").unwrap(), ["c"]);
    write_file(d, "a/b/c/f", b"deep").unwrap();
    assert_eq!(d.read("a/b/c/f").unwrap(), b"deep");
    d.sync_dir("a/b/c").unwrap();
    d.sync_dir("a").unwrap();
}

fn truncate_shrinks_and_refuses_to_extend(b: &Backend) {
    let d = b.d();
    let data = pattern(100, 1);
    write_file(d, "t", &data).unwrap();
    d.truncate("t", 40).unwrap();
    assert_eq!(d.len("t").unwrap(), 40);
    assert_eq!(d.read("t").unwrap(), &data[..40]);
    match d.truncate("t", 41) {
        Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, "len"),
        other => panic!("extending truncate must be refused, got {other:?}"),
    }
    assert_eq!(
        d.len("t").unwrap(),
        40,
        "a refused truncate changes nothing"
    );
    d.truncate("t", 40).unwrap();
    d.truncate("t", 0).unwrap();
    assert_eq!(d.read("t").unwrap(), b"");
    assert_not_found(d.truncate("missing", 0));
}

fn open_append_appends_at_the_end(b: &Backend) {
    let d = b.d();
    write_file(d, "log", b"abc").unwrap();
    let mut f = d.open_append("log").unwrap();
    assert_eq!(f.len(), 3);
    f.write_all(b"def").unwrap();
    assert_eq!(f.len(), 6);
    drop(f);
    let mut g = d.open_append("log").unwrap();
    g.write_all(b"g").unwrap();
    g.sync().unwrap();
    drop(g);
    assert_eq!(d.read("log").unwrap(), b"abcdefg");
    assert_not_found(d.open_append("missing"));
}

fn atomic_write_replaces_content_and_leaves_no_temp_file(b: &Backend) {
    let d = b.d();
    d.atomic_write("cfg", b"v1").unwrap();
    assert_eq!(d.read("cfg").unwrap(), b"v1");
    d.atomic_write("cfg", b"version two, longer").unwrap();
    assert_eq!(d.read("cfg").unwrap(), b"version two, longer");
    d.atomic_write("cfg", b"3").unwrap();
    assert_eq!(d.read("cfg").unwrap(), b"3");
    assert_eq!(d.list("").unwrap(), ["cfg"]);

    d.create_dir_all("m").unwrap();
    d.atomic_write("m/x", b"inner").unwrap();
    assert_eq!(d.read("m/x").unwrap(), b"inner");
    assert_eq!(d.list("m").unwrap(), ["x"]);
    assert_eq!(d.list("").unwrap(), ["cfg", "m"]);
}

fn atomic_write_parts_publishes_the_concatenation(b: &Backend) {
    let d = b.d();
    let body = pattern(5000, 4);
    d.atomic_write_parts("f", &[b"head", b"", &body, b"tail"])
        .unwrap();
    let mut want = b"head".to_vec();
    want.extend_from_slice(&body);
    want.extend_from_slice(b"tail");
    assert_eq!(d.read("f").unwrap(), want);
    d.atomic_write_parts("f", &[]).unwrap();
    assert_eq!(d.read("f").unwrap(), b"");
    assert_eq!(d.list("").unwrap(), ["f"], "temporary file left");
}

/// Writes `body` in pieces after an 8-byte slot, starting each piece's
/// write-back, then fills the slot with the body's length: a header written
/// last, as a checkpoint's is.
fn header_last(file: &mut dyn AtomicFile, body: &[u8]) -> zerodur::Result<()> {
    let mut offset = 8;
    for piece in body.chunks(3000) {
        file.write_at(offset, piece)?;
        file.start_writeback(offset, piece.len() as u64)?;
        offset += piece.len() as u64;
    }
    file.write_at(0, &(body.len() as u64).to_le_bytes())
}

/// What [`header_last`] writes.
fn header_last_bytes(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn atomic_write_with_publishes_writes_at_any_offset(b: &Backend) {
    let d = b.d();
    d.atomic_write("f", b"old content").unwrap();
    let body = pattern(10_000, 5);
    d.atomic_write_with("f", &mut |file| header_last(file, &body))
        .unwrap();
    assert_eq!(d.read("f").unwrap(), header_last_bytes(&body));
    assert_eq!(d.list("").unwrap(), ["f"], "temporary file left");

    // A gap reads as zeros, a later write over an earlier one wins, and
    // writing nothing publishes an empty file.
    d.create_dir_all("m").unwrap();
    d.atomic_write_with("m/g", &mut |file| {
        file.write_at(6, b"tail")?;
        file.start_writeback(6, 4)?;
        file.write_at(0, b"ab")?;
        file.write_at(7, b"AI")
    })
    .unwrap();
    assert_eq!(d.read("m/g").unwrap(), b"ab\0\0\0\0tAIl");
    d.atomic_write_with("m/g", &mut |_| Ok(())).unwrap();
    assert_eq!(d.read("m/g").unwrap(), b"");
    assert_eq!(d.list("m").unwrap(), ["g"], "temporary file left");
}

fn failed_atomic_write_with_leaves_no_temp_file_and_the_old_content(b: &Backend) {
    let d = b.d();
    let body = pattern(10_000, 6);
    d.atomic_write("f", b"old").unwrap();
    // The closure's own error comes back as it is.
    let err = d
        .atomic_write_with("f", &mut |file| {
            file.write_at(0, b"partial")?;
            Err(Error::InvalidArgument {
                name: "value",
                reason: "refused by the test".into(),
            })
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { name: "value", .. }),
        "{err}"
    );
    assert_eq!(d.list("").unwrap(), ["f"], "a refused write left its file");
    assert_eq!(d.read("f").unwrap(), b"old");

    // A write failing midway, and the sync after the last write.
    let faults = [
        (
            Fault::eio().on(OpKind::Write).nth(2),
            IoOp::Write,
            libc::EIO,
        ),
        (
            Fault::enospc().on(OpKind::Write).nth(4),
            IoOp::Write,
            libc::ENOSPC,
        ),
        (Fault::eio().on(OpKind::SyncFile), IoOp::SyncFile, libc::EIO),
    ];
    for (fault, op, errno) in faults {
        (b.inject)(fault);
        let mut calls = 0;
        assert_io(
            d.atomic_write_with("f", &mut |file| {
                calls += 1;
                header_last(file, &body)
            }),
            op,
            errno,
        );
        assert_eq!(calls, 1, "the content is written once");
        assert_eq!(d.list("").unwrap(), ["f"], "{op}: temporary file left");
        assert_eq!(d.read("f").unwrap(), b"old", "{op}");
    }
    d.atomic_write_with("f", &mut |file| header_last(file, &body))
        .unwrap();
    assert_eq!(d.read("f").unwrap(), header_last_bytes(&body));
}

fn atomic_write_with_whose_closure_panics_leaves_no_temp_file(b: &Backend) {
    let d = b.d();
    d.create_dir_all("m").unwrap();
    d.atomic_write("m/f", b"old").unwrap();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.atomic_write_with("m/f", &mut |file| {
            file.write_at(0, b"partial")?;
            panic!("the caller's closure panics (a test)");
        })
    }));
    assert!(unwound.is_err());
    assert_eq!(d.list("m").unwrap(), ["f"], "temporary file left");
    assert_eq!(d.read("m/f").unwrap(), b"old");
    // The folder's turn was given back.
    d.atomic_write("m/f", b"new").unwrap();
    assert_eq!(d.read("m/f").unwrap(), b"new");
}

fn map_read_matches_content_and_is_aligned(b: &Backend) {
    let d = b.d();
    let data = pattern(10_000, 2);
    write_file(d, "m", &data).unwrap();
    let map = d.map_read("m").unwrap();
    assert_eq!(&map[..], &data[..]);
    assert_eq!(
        map.as_ptr() as usize % 16,
        0,
        "map_read must start 16-byte aligned"
    );
    map.advise_sequential();
    assert_eq!(map.len(), 10_000);

    write_file(d, "empty", b"").unwrap();
    let empty = d.map_read("empty").unwrap();
    assert!(empty.is_empty());
    assert_eq!(&empty[..], b"");
    assert_not_found(d.map_read("missing"));
}

// ---------------------------------------------------------------------------
// Regions.

fn create_region_is_zero_filled_exact_and_exclusive(b: &Backend) {
    let d = b.d();
    let r = d.create_region("r", 10_000).unwrap();
    assert_eq!(r.len(), 10_000);
    assert!(!r.is_empty());
    assert_eq!(r.path(), "r");
    assert_eq!(r.bytes().len(), 10_000);
    assert!(
        r.bytes().iter().all(|&x| x == 0),
        "a new region reads as zeros"
    );
    assert_eq!(d.len("r").unwrap(), 10_000);
    assert_eq!(d.read("r").unwrap(), vec![0; 10_000]);
    r.prefault().unwrap();

    match d.create_region("r", 4096) {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("second create_region must be AlreadyExists, got {other:?}"),
    }
    write_file(d, "plain", b"x").unwrap();
    match d.create_region("plain", 4096) {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("create_region over a file must be AlreadyExists, got {other:?}"),
    }
    assert_eq!(d.read("plain").unwrap(), b"x");
    match d.create_region("zero", 0) {
        Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, "len"),
        other => panic!("zero-length region must be refused, got {other:?}"),
    }
    assert!(!d.exists("zero").unwrap());
    assert_not_found(d.create_region("nodir/r", 4096));
}

fn region_write_at_is_visible_and_bounds_checked(b: &Backend) {
    let d = b.d();
    let mut r = d.create_region("r", 8192).unwrap();
    r.write_at(0, b"head").unwrap();
    r.write_at(8188, b"tail").unwrap();
    r.write_at(4094, b"span").unwrap(); // crosses a page boundary
    r.write_at(8192, b"").unwrap(); // empty write at the very end fits
    assert_eq!(&r.bytes()[..4], b"head");
    assert_eq!(&r.bytes()[4094..4098], b"span");
    assert_eq!(&r.bytes()[8188..], b"tail");

    let before = r.bytes().to_vec();
    match r.write_at(8189, b"tail") {
        Err(Error::OutOfBounds {
            offset, len, size, ..
        }) => assert_eq!((offset, len, size), (8189, 4, 8192)),
        other => panic!("expected OutOfBounds, got {other:?}"),
    }
    assert!(matches!(
        r.write_at(u64::MAX, b"x"),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        r.write_at(8193, b""),
        Err(Error::OutOfBounds { .. })
    ));
    assert_eq!(r.bytes(), &before[..], "a refused write writes nothing");

    r.flush_range(0, 8192).unwrap();
    // The file's bytes are the region's bytes.
    assert_eq!(d.read("r").unwrap(), before);
    assert!(r.flush_range(8000, 500).is_err(), "flush past the end");
    r.flush_range(8192, 0).unwrap();
}

fn prewrite_zeros_keeps_the_content_and_is_bounds_checked(b: &Backend) {
    let d = b.d();
    let mut r = d.create_region("r", 3 * 4096).unwrap();
    r.write_at(0, b"head").unwrap();
    r.prewrite_zeros(4, 2 * 4096).unwrap();
    r.prewrite_zeros(3 * 4096, 0).unwrap();
    r.write_at(4096, b"later").unwrap();
    let want = r.bytes().to_vec();
    assert_eq!(&want[..4], b"head");
    assert_eq!(&want[4096..4101], b"later");
    assert!(want[4101..].iter().all(|&x| x == 0));
    match r.prewrite_zeros(2 * 4096, 4097) {
        Err(Error::OutOfBounds {
            offset, len, size, ..
        }) => assert_eq!((offset, len, size), (2 * 4096, 4097, 3 * 4096)),
        other => panic!("expected OutOfBounds, got {other:?}"),
    }
    assert!(matches!(
        r.prewrite_zeros(u64::MAX, 2),
        Err(Error::OutOfBounds { .. })
    ));
    r.flush_range(0, 3 * 4096).unwrap();
    assert_eq!(r.bytes(), &want[..]);
    assert_eq!(d.read("r").unwrap(), want);
}

fn flusher_runs_from_another_thread_while_the_owner_writes(b: &Backend) {
    const LEN: u64 = 64 * 1024;
    const CHUNK: usize = 1000;
    let d = b.d();
    let mut r = d.create_region("seg", LEN).unwrap();
    let flusher = r.flusher();
    let written = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let flushes = AtomicU64::new(0);
    let expected = pattern(LEN as usize, 3);

    std::thread::scope(|s| {
        s.spawn(|| {
            // Flush whatever the owner has written so far, over and over.
            loop {
                let upto = written.load(Ordering::Acquire);
                if upto > 0 {
                    flusher.flush_range(0, upto).expect("concurrent flush");
                    flushes.fetch_add(1, Ordering::Relaxed);
                }
                if done.load(Ordering::Acquire) {
                    break;
                }
                std::thread::yield_now();
            }
        });
        for (i, chunk) in expected.chunks(CHUNK).enumerate() {
            let off = (i * CHUNK) as u64;
            r.write_at(off, chunk).unwrap();
            written.store(off + chunk.len() as u64, Ordering::Release);
            if i % 8 == 0 {
                std::thread::yield_now();
            }
        }
        done.store(true, Ordering::Release);
    });

    assert!(flushes.load(Ordering::Relaxed) > 0, "the flusher never ran");
    flusher.flush_range(0, LEN).unwrap();
    assert!(flusher.flush_range(1, LEN).is_err(), "flush past the end");
    assert_eq!(r.bytes(), &expected[..]);
    drop(r);
    assert_eq!(d.read("seg").unwrap(), expected);
}

fn open_region_sees_earlier_writes(b: &Backend) {
    let d = b.d();
    let mut r = d.create_region("r", 12_288).unwrap();
    r.write_at(100, b"first life").unwrap();
    r.flush_range(100, 10).unwrap();
    drop(r);

    let mut again = d.open_region("r").unwrap();
    assert_eq!(again.len(), 12_288);
    assert_eq!(&again.bytes()[100..110], b"first life");
    again.write_at(5000, b"second").unwrap();
    again.flush_range(0, 12_288).unwrap();
    drop(again);
    let all = d.read("r").unwrap();
    assert_eq!(&all[100..110], b"first life");
    assert_eq!(&all[5000..5006], b"second");

    assert_not_found(d.open_region("missing"));
    write_file(d, "empty", b"").unwrap();
    match d.open_region("empty") {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("a zero-length file is not a region, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Lock.

fn lock_is_exclusive_and_released_on_drop(b: &Backend) {
    let d = b.d();
    let held = d.lock("LOCK").unwrap();
    match d.lock("LOCK") {
        Err(Error::Locked { .. }) => {}
        other => panic!("second lock must be Locked, got {other:?}"),
    }
    // A second, independent handle on the same storage is refused too.
    let other = (b.reopen)();
    assert!(matches!(other.lock("LOCK"), Err(Error::Locked { .. })));
    // Another name is another lock.
    let unrelated = d.lock("OTHER").unwrap();
    drop(held);
    let again = other.lock("LOCK").expect("released on drop");
    assert!(matches!(d.lock("LOCK"), Err(Error::Locked { .. })));
    drop(again);
    drop(unrelated);
    drop(d.lock("LOCK").expect("free again"));
}

// ---------------------------------------------------------------------------
// Errors.

type PathCall = Box<dyn Fn(&dyn Directory, &str) -> zerodur::Result<()>>;

/// Every method that takes a path, called with `p` in that position.
/// `true` marks methods whose path is a directory (`""` is the root there).
fn path_methods() -> Vec<(&'static str, bool, PathCall)> {
    fn m(
        name: &'static str,
        dir: bool,
        f: impl Fn(&dyn Directory, &str) -> zerodur::Result<()> + 'static,
    ) -> (&'static str, bool, PathCall) {
        (name, dir, Box::new(f))
    }
    vec![
        m("create_dir_all", true, |d, p| d.create_dir_all(p)),
        m("exists", true, |d, p| d.exists(p).map(drop)),
        m("list", true, |d, p| d.list(p).map(drop)),
        m("sync_dir", true, |d, p| d.sync_dir(p)),
        m("len", false, |d, p| d.len(p).map(drop)),
        m("read", false, |d, p| d.read(p).map(drop)),
        m("map_read", false, |d, p| d.map_read(p).map(drop)),
        m("create", false, |d, p| d.create(p).map(drop)),
        m("open_append", false, |d, p| d.open_append(p).map(drop)),
        m("truncate", false, |d, p| d.truncate(p, 0)),
        m("sync_file", false, |d, p| d.sync_file(p)),
        m("rename(from)", false, |d, p| d.rename(p, "target")),
        m("rename(to)", false, |d, p| d.rename("source", p)),
        m("remove", false, |d, p| d.remove(p)),
        m("create_region", false, |d, p| {
            d.create_region(p, 4096).map(drop)
        }),
        m("open_region", false, |d, p| d.open_region(p).map(drop)),
        m("lock", false, |d, p| d.lock(p).map(drop)),
        m("atomic_write", false, |d, p| d.atomic_write(p, b"x")),
        m("atomic_write_with", false, |d, p| {
            d.atomic_write_with(p, &mut |f| f.write_at(0, b"x"))
        }),
    ]
}

fn invalid_paths_are_refused_by_every_method(b: &Backend) {
    let d = b.d();
    write_file(d, "source", b"src").unwrap();
    let before = support::dump(d);
    for (name, takes_dir, call) in path_methods() {
        for bad in INVALID_PATHS {
            assert_invalid_path(call(d, bad), &format!("{name}({bad:?})"));
        }
        for bad in INVALID_FILE_ONLY {
            let r = call(d, bad);
            if takes_dir {
                r.unwrap_or_else(|e| panic!("{name}({bad:?}) names the root: {e}"));
            } else {
                assert_invalid_path(r, &format!("{name}({bad:?})"));
            }
        }
    }
    assert_eq!(support::dump(d), before, "a refused path changed something");
    b.assert_nothing_outside();
}

fn missing_files_are_not_found(b: &Backend) {
    let d = b.d();
    assert_not_found(d.read("nope"));
    assert_not_found(d.len("nope"));
    assert_not_found(d.map_read("nope"));
    assert_not_found(d.open_append("nope"));
    assert_not_found(d.open_region("nope"));
    assert_not_found(d.truncate("nope", 0));
    assert_not_found(d.sync_file("nope"));
    assert_not_found(d.remove("nope"));
    assert_not_found(d.rename("nope", "other"));
    assert_not_found(d.list("nodir"));
    assert_not_found(d.sync_dir("nodir"));
    assert_not_found(d.read("nodir/nope"));
    assert!(
        !d.exists("other").unwrap(),
        "a failed rename created its target"
    );
    match d.read("nope") {
        Err(e) => assert!(e.is_not_found() && e.raw_os_error().is_none()),
        Ok(_) => unreachable!(),
    }
}

fn injected_eio_fails_file_syncs(b: &Backend) {
    let d = b.d();
    write_file(d, "f", b"data").unwrap();
    (b.inject)(Fault::eio().on(OpKind::SyncFile));
    assert_io(d.sync_file("f"), IoOp::SyncFile, libc::EIO);
    d.sync_file("f").expect("a one-shot fault fires once");

    let mut f = d.open_append("f").unwrap();
    f.write_all(b" more").unwrap();
    (b.inject)(Fault::eio().on(OpKind::SyncFile));
    assert_io(f.sync(), IoOp::SyncFile, libc::EIO);
    f.sync().unwrap();

    // Only the targeted kind is hit, and only from the nth on.
    (b.inject)(Fault::eio().on(OpKind::SyncFile).nth(2));
    d.sync_dir("").unwrap();
    d.sync_file("f").unwrap();
    assert_io(d.sync_file("f"), IoOp::SyncFile, libc::EIO);

    let mut r = d.create_region("r", 4096).unwrap();
    r.write_at(0, b"x").unwrap();
    (b.inject)(Fault::eio().on(OpKind::FlushRange));
    assert_io(r.flush_range(0, 1), IoOp::FlushRange, libc::EIO);
    r.flush_range(0, 1).unwrap();
}

fn injected_enospc_fails_create_region_and_leaves_no_file(b: &Backend) {
    let d = b.d();
    (b.inject)(Fault::enospc().on(OpKind::Allocate));
    assert_io(d.create_region("seg", 8192), IoOp::Allocate, libc::ENOSPC);
    assert!(!d.exists("seg").unwrap(), "a failed allocation left a file");
    assert!(d.list("").unwrap().is_empty());
    let r = d.create_region("seg", 8192).expect("the fault fired once");
    assert_eq!(r.len(), 8192);

    // Persistent faults keep firing.
    (b.inject)(Fault::enospc().on(OpKind::Allocate).persistent());
    for name in ["a", "b", "c"] {
        assert_io(d.create_region(name, 4096), IoOp::Allocate, libc::ENOSPC);
        assert!(!d.exists(name).unwrap());
    }
}

// ---------------------------------------------------------------------------
// Atomic writes: concurrency, leftovers, failures.

/// The bytes thread `t` writes in round `i`: a distinct header, then a body
/// whose length varies, so a mix of two writes shows.
fn writer_value(t: usize, i: usize) -> Vec<u8> {
    let mut v = format!("writer {t} round {i}|").into_bytes();
    v.extend(pattern(
        1 + (t * 7919 + i * 104_729) % 20_000,
        (t * 31 + i) as u8,
    ));
    v
}

fn atomic_write_from_8_threads_on_one_name_publishes_whole_values(b: &Backend) {
    const THREADS: usize = 8;
    // Memory operations are cheap, so races need more rounds to show there.
    let rounds = if b.outside.is_some() { 25 } else { 100 };
    let d = &*b.dir;
    d.create_dir_all("m").unwrap();
    let all: Vec<Vec<u8>> = (0..THREADS)
        .flat_map(|t| (0..rounds).map(move |i| writer_value(t, i)))
        .collect();
    // Half the writers go through a second, independent handle.
    let handles: Vec<Arc<dyn Directory>> = (0..THREADS)
        .map(|t| {
            if t % 2 == 0 {
                Arc::clone(&b.dir)
            } else {
                (b.reopen)()
            }
        })
        .collect();
    std::thread::scope(|s| {
        for (t, h) in handles.iter().enumerate() {
            let all = &all;
            s.spawn(move || {
                for i in 0..rounds {
                    h.atomic_write("m/shared", &writer_value(t, i))
                        .unwrap_or_else(|e| panic!("writer {t} round {i}: {e}"));
                    // Whatever happened since, the file holds one whole value.
                    let now = h.read("m/shared").unwrap();
                    assert!(
                        all.contains(&now),
                        "writer {t} round {i}: read back {} bytes that no writer wrote",
                        now.len()
                    );
                }
            });
        }
    });
    // The last rename published some writer's last value, whole.
    let last: Vec<Vec<u8>> = (0..THREADS).map(|t| writer_value(t, rounds - 1)).collect();
    let fin = d.read("m/shared").unwrap();
    assert!(
        last.contains(&fin),
        "final content ({} bytes) is no writer's last value",
        fin.len()
    );
    assert_eq!(d.list("m").unwrap(), ["shared"], "temporary files remain");
    assert_eq!(d.list("").unwrap(), ["m"]);
}

/// Files named like atomic-write leftovers, and names that only look alike.
const LEFTOVERS: &[&str] = &["cfg.zdtmp-4194304-7", "other.zdtmp-1-0"];
const LOOKALIKES: &[&str] = &["cfg.tmp", "notes.zdtmp", "x.zdtmp-1-", "y.zdtmp-a-1"];

fn atomic_write_removes_leftover_temp_files_in_its_folder(b: &Backend) {
    let d = b.d();
    d.create_dir_all("m").unwrap();
    for name in LEFTOVERS.iter().chain(LOOKALIKES) {
        write_file(d, name, b"left behind").unwrap();
    }
    // A folder with the pattern's shape is not a leftover file.
    d.create_dir_all("dir.zdtmp-5-5").unwrap();
    write_file(d, "m/x.zdtmp-99-3", b"left behind in m").unwrap();

    d.atomic_write("cfg", b"new").unwrap();
    let mut want: Vec<&str> = LOOKALIKES.to_vec();
    want.extend(["cfg", "dir.zdtmp-5-5", "m"]);
    want.sort();
    assert_eq!(d.list("").unwrap(), want, "leftovers in the root");
    assert_eq!(d.read("cfg").unwrap(), b"new");
    for name in LOOKALIKES {
        assert_eq!(d.read(name).unwrap(), b"left behind", "{name} was changed");
    }
    // Another folder's leftovers wait for an atomic write there.
    assert_eq!(d.list("m").unwrap(), ["x.zdtmp-99-3"]);
    d.atomic_write("m/y", b"y").unwrap();
    assert_eq!(d.list("m").unwrap(), ["y"]);
}

fn failed_atomic_write_leaves_no_temp_file(b: &Backend) {
    let d = b.d();
    d.create_dir_all("m").unwrap();
    let cases = [
        (OpKind::Create, IoOp::Open),
        (OpKind::Write, IoOp::Write),
        (OpKind::SyncFile, IoOp::SyncFile),
        (OpKind::Rename, IoOp::Rename),
        (OpKind::SyncDir, IoOp::SyncDir),
    ];
    for path in ["cfg", "m/cfg"] {
        let folder = support::parent(path);
        d.atomic_write(path, b"old").unwrap();
        let names = d.list(folder).unwrap();
        for (kind, op) in cases {
            for (fault, errno) in [(Fault::eio(), libc::EIO), (Fault::enospc(), libc::ENOSPC)] {
                (b.inject)(fault.on(kind));
                assert_io(d.atomic_write(path, b"new"), op, errno);
                assert_eq!(
                    d.list(folder).unwrap(),
                    names,
                    "{path}: a write failing at {kind:?} left its temporary file"
                );
                // Only a failed directory sync comes after the rename.
                let want: &[u8] = if kind == OpKind::SyncDir {
                    b"new"
                } else {
                    b"old"
                };
                assert_eq!(d.read(path).unwrap(), want, "{path}, {kind:?}");
                d.atomic_write(path, b"old").unwrap();
            }
        }
    }
    assert_eq!(d.list("").unwrap(), ["cfg", "m"]);
}

// ---------------------------------------------------------------------------

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Backend::fs());
                }
            )*
        }
        mod memory {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Backend::memory());
                }
            )*
        }
    };
}

suite!(
    create_write_read_and_len,
    list_is_sorted_and_shows_only_direct_children,
    exists_reports_files_dirs_and_root,
    remove_deletes_the_file,
    rename_moves_and_replaces_an_existing_target,
    create_dir_all_creates_parents_and_is_idempotent,
    truncate_shrinks_and_refuses_to_extend,
    open_append_appends_at_the_end,
    atomic_write_replaces_content_and_leaves_no_temp_file,
    atomic_write_parts_publishes_the_concatenation,
    atomic_write_with_publishes_writes_at_any_offset,
    failed_atomic_write_with_leaves_no_temp_file_and_the_old_content,
    atomic_write_with_whose_closure_panics_leaves_no_temp_file,
    map_read_matches_content_and_is_aligned,
    create_region_is_zero_filled_exact_and_exclusive,
    region_write_at_is_visible_and_bounds_checked,
    prewrite_zeros_keeps_the_content_and_is_bounds_checked,
    flusher_runs_from_another_thread_while_the_owner_writes,
    open_region_sees_earlier_writes,
    lock_is_exclusive_and_released_on_drop,
    invalid_paths_are_refused_by_every_method,
    missing_files_are_not_found,
    injected_eio_fails_file_syncs,
    injected_enospc_fails_create_region_and_leaves_no_file,
    atomic_write_from_8_threads_on_one_name_publishes_whole_values,
    atomic_write_removes_leftover_temp_files_in_its_folder,
    failed_atomic_write_leaves_no_temp_file,
);

// ---------------------------------------------------------------------------
// Memory only: what the crash model shows.

#[test]
fn memory_create_dir_all_folders_survive_a_crash() {
    let d = MemoryDirectory::new();
    d.create_dir_all("a/b/c").unwrap();
    d.create_dir_all("a/x").unwrap();
    // A file made durable in its own folder needs no sync of the folders
    // above it: create_dir_all made their names durable.
    write_durable(&d, "a/b/c/f", b"deep").unwrap();
    for policy in every_policy(16) {
        let img = d.crash_image(&policy);
        for dir in ["a", "a/b", "a/b/c", "a/x"] {
            assert!(img.exists(dir).unwrap(), "{policy:?}: `{dir}` lost");
        }
        assert_eq!(img.list("a").unwrap(), ["b", "x"], "{policy:?}");
        assert_eq!(img.read("a/b/c/f").unwrap(), b"deep", "{policy:?}");
    }
}

#[test]
fn memory_leftover_from_a_crash_is_removed_by_the_next_atomic_write() {
    let d = MemoryDirectory::new();
    d.atomic_write("cfg", b"old").unwrap();
    // Power off after the temporary file is created and written.
    d.halt_after(d.op_count() + 2);
    assert!(d.atomic_write("cfg", b"new").is_err());
    let img = d.crash_image(&CrashPolicy::keep_all());
    let names = img.list("").unwrap();
    assert_eq!(names.len(), 2, "no leftover in the image: {names:?}");
    assert!(names[1].starts_with("cfg.zdtmp-"), "{names:?}");
    assert_eq!(img.read("cfg").unwrap(), b"old");

    img.atomic_write("cfg", b"newer").unwrap();
    assert_eq!(img.list("").unwrap(), ["cfg"]);
    assert_eq!(img.read("cfg").unwrap(), b"newer");
}

#[test]
fn memory_atomic_write_with_is_old_or_new_after_a_crash_at_any_step() {
    let body = pattern(10_000, 8);
    let new = header_last_bytes(&body);
    let durable_old = || {
        let d = MemoryDirectory::new();
        d.atomic_write("f", b"old").unwrap();
        d
    };
    let ops = {
        let d = durable_old();
        let before = d.op_count();
        d.atomic_write_with("f", &mut |file| header_last(file, &body))
            .unwrap();
        d.op_count() - before
    };
    // Create, 4 pieces, the header, sync, rename, directory sync.
    assert_eq!(ops, 9);
    for k in 0..=ops {
        let d = durable_old();
        d.halt_after(d.op_count() + k);
        let ok = d
            .atomic_write_with("f", &mut |file| header_last(file, &body))
            .is_ok();
        assert_eq!(ok, k == ops, "halted after {k} operations");
        // Before its sync, none of the temporary file's bytes is durable,
        // write-back hints or not.
        let temp: Vec<String> = d.files().into_iter().filter(|f| f != "f").collect();
        if k < 7 {
            for t in &temp {
                assert!(d.durable_bytes(t).unwrap().is_empty(), "k={k}: {t}");
            }
        }
        for policy in every_policy(8) {
            let img = d.crash_image(&policy);
            let got = img.read("f").unwrap();
            assert!(
                got == b"old" || got == new,
                "k={k}, {policy:?}: `f` holds {} bytes that are neither",
                got.len()
            );
            if ok {
                assert_eq!(got, new, "{policy:?}: an acknowledged write was lost");
            }
            img.atomic_write("g", b"next").unwrap();
            assert_eq!(img.files(), ["f", "g"], "k={k}, {policy:?}: leftover kept");
        }
    }
}

// ---------------------------------------------------------------------------
// Filesystem only: symbolic links, the root, leftovers at open.

/// A root with symbolic links in it, next to a folder outside it.
///
/// ```text
/// tmp/outside/secret            "secret"
/// tmp/outside/sub/inner         "inner"
/// tmp/root/source               "src"
/// tmp/root/real/f               "inside"
/// tmp/root/to_file     -> tmp/outside/secret   (absolute)
/// tmp/root/dangling    -> tmp/outside/created  (absolute, missing)
/// tmp/root/to_dir      -> tmp/outside          (absolute)
/// tmp/root/rel_dir     -> ../outside           (relative)
/// tmp/root/alias       -> real                 (inside the root)
/// tmp/root/real/alias_f -> f                   (inside the root)
/// ```
struct Links {
    tmp: tempfile::TempDir,
    dir: FsDirectory,
}

impl Links {
    fn new() -> Links {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("outside");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("secret"), b"secret").unwrap();
        std::fs::write(out.join("sub/inner"), b"inner").unwrap();
        let root = tmp.path().join("root");
        let dir = FsDirectory::new(&root).unwrap();
        dir.create_dir_all("real").unwrap();
        write_file(&dir, "source", b"src").unwrap();
        write_file(&dir, "real/f", b"inside").unwrap();
        symlink(out.join("secret"), root.join("to_file")).unwrap();
        symlink(out.join("created"), root.join("dangling")).unwrap();
        symlink(&out, root.join("to_dir")).unwrap();
        symlink("../outside", root.join("rel_dir")).unwrap();
        symlink("real", root.join("alias")).unwrap();
        symlink("f", root.join("real/alias_f")).unwrap();
        Links { tmp, dir }
    }

    /// Everything under `tmp`, links as their targets (not followed), files
    /// as their bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(p: &Path, out: &mut BTreeMap<PathBuf, String>) {
            let md = std::fs::symlink_metadata(p).unwrap();
            let v = if md.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(p).unwrap().display())
            } else if md.is_dir() {
                for e in std::fs::read_dir(p).unwrap() {
                    walk(&e.unwrap().path(), out);
                }
                "dir".into()
            } else {
                format!("file {:?}", std::fs::read(p).unwrap())
            };
            out.insert(p.to_path_buf(), v);
        }
        let mut out = BTreeMap::new();
        walk(self.tmp.path(), &mut out);
        out
    }

    /// Calls every method with each of `paths`; each call must be refused
    /// with `InvalidPath` naming the path, except `exists` of a path whose
    /// last component is the link (`true`), and nothing anywhere may change.
    fn assert_refused_everywhere(&self, paths: &[&str]) {
        let before = self.snapshot();
        let d: &dyn Directory = &self.dir;
        for p in paths {
            let last_is_link = std::fs::symlink_metadata(self.dir.root().join(p))
                .is_ok_and(|m| m.file_type().is_symlink());
            for (name, _, call) in path_methods() {
                let what = format!("{name}({p:?})");
                let r = call(d, p);
                if name == "exists" && last_is_link {
                    assert!(d.exists(p).unwrap(), "{what}: a link exists");
                    continue;
                }
                match r {
                    Err(Error::InvalidPath { path, reason }) => {
                        assert_eq!(&path, p, "{what}: the error names another path");
                        assert!(reason.contains("symbolic link"), "{what}: {reason}");
                        let shown = Error::InvalidPath { path, reason }.to_string();
                        assert!(shown.contains(p), "{what}: `{shown}`");
                    }
                    other => panic!("{what}: expected InvalidPath, got {other:?}"),
                }
            }
        }
        assert_eq!(self.snapshot(), before, "a refused call changed something");
        assert!(!self.tmp.path().join("outside/created").exists());
    }
}

#[test]
fn fs_symlink_to_a_file_outside_the_root_is_refused_by_every_method() {
    Links::new().assert_refused_everywhere(&["to_file", "dangling"]);
}

#[test]
fn fs_symlink_to_a_folder_outside_the_root_is_refused_by_every_method() {
    Links::new().assert_refused_everywhere(&[
        "to_dir",
        "rel_dir",
        "to_dir/secret",
        "rel_dir/secret",
        "to_dir/sub",
        "to_dir/sub/inner",
        "to_dir/new",
        "rel_dir/sub/new",
    ]);
}

#[test]
fn fs_paths_through_a_symlinked_subfolder_inside_the_root_are_refused() {
    let links = Links::new();
    links.assert_refused_everywhere(&["alias", "alias/f", "alias/new", "real/alias_f"]);
    // The same files through their real names work.
    let d = &links.dir;
    assert_eq!(d.read("real/f").unwrap(), b"inside");
    d.atomic_write("real/g", b"g").unwrap();
    assert_eq!(d.list("real").unwrap(), ["alias_f", "f", "g"]);
}

#[test]
fn fs_new_on_a_regular_file_says_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a folder").unwrap();
    for root in [file.clone(), file.join("below")] {
        let err = FsDirectory::new(&root).expect_err("a file is not a root");
        let shown = err.to_string();
        assert!(
            shown.to_lowercase().contains("not a directory"),
            "the error does not say so: `{shown}`"
        );
        assert!(
            shown.contains(&root.display().to_string()),
            "the error does not name the path: `{shown}`"
        );
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err:?}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn fs_new_creates_a_missing_root_and_accepts_a_symlinked_one() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("a/b/root");
    FsDirectory::new(&missing)
        .unwrap()
        .atomic_write("f", b"1")
        .unwrap();
    assert_eq!(std::fs::read(missing.join("f")).unwrap(), b"1");

    // The root itself may be a link (or be reached through one): it is
    // the caller's choice.
    symlink(tmp.path().join("a"), tmp.path().join("link")).unwrap();
    let d = FsDirectory::new(tmp.path().join("link/b/root")).unwrap();
    assert_eq!(d.read("f").unwrap(), b"1");
    let d = FsDirectory::new(tmp.path().join("link")).unwrap();
    assert_eq!(d.list("").unwrap(), ["b"]);
    d.create_dir_all("new").unwrap();
    assert!(tmp.path().join("a/new").is_dir());
}

#[test]
fn fs_new_removes_leftover_temp_files_in_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let d = FsDirectory::new(&root).unwrap();
    d.create_dir_all("sub").unwrap();
    for name in LEFTOVERS.iter().chain(LOOKALIKES) {
        write_file(&d, name, b"left behind").unwrap();
    }
    write_file(&d, "sub/x.zdtmp-1-2", b"left behind in sub").unwrap();
    // A link with the pattern's shape is not ours to remove.
    std::fs::write(tmp.path().join("target"), b"t").unwrap();
    symlink(tmp.path().join("target"), root.join("link.zdtmp-1-1")).unwrap();

    let again = FsDirectory::new(&root).unwrap();
    let mut want: Vec<&str> = LOOKALIKES.to_vec();
    want.extend(["link.zdtmp-1-1", "sub"]);
    want.sort();
    assert_eq!(again.list("").unwrap(), want);
    // Only the root folder is swept at open.
    assert_eq!(again.list("sub").unwrap(), ["x.zdtmp-1-2"]);
    assert_eq!(std::fs::read(tmp.path().join("target")).unwrap(), b"t");
}
