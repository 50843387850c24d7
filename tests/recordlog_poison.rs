//! A failed write or sync poisons a record log: every later call fails with
//! `Poisoned`, and reopening recovers at least every record synced before.

use std::sync::Arc;

use zerodur::{
    CrashPolicy, Directory, Error, Fault, FsDirectory, MemoryDirectory, OpKind, RecordLog,
    RecordLogMode,
};

const LOG: &str = "meta.log";

fn assert_poisoned<T: std::fmt::Debug>(r: zerodur::Result<T>) {
    match r {
        Err(Error::Poisoned { cause }) => assert!(!cause.is_empty()),
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

#[test]
fn sync_failure_poisons_every_later_call() {
    let dir = MemoryDirectory::new();
    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    log.append(b"synced").unwrap();
    log.sync().unwrap();
    log.append(b"in the failed batch").unwrap();
    dir.inject(Fault::eio().on(OpKind::SyncFile));
    let e = log.sync().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");

    // The fault fired once; the handle still refuses everything.
    assert_poisoned(log.append(b"later"));
    assert_poisoned(log.sync());
    assert_poisoned(log.records());
    match log.sync() {
        Err(Error::Poisoned { cause }) => assert!(cause.contains("file sync"), "{cause}"),
        other => panic!("{other:?}"),
    }

    // Whatever the disk kept of the failed batch, the synced record is there
    // and what replays is a prefix of what was appended.
    for policy in CrashPolicy::standard_set(8) {
        let image = dir.crash_image(&policy);
        let log = RecordLog::open(Arc::new(image), LOG).unwrap();
        let got: Vec<Vec<u8>> = log.records().unwrap().iter().map(<[u8]>::to_vec).collect();
        assert!(
            got == [b"synced".to_vec()]
                || got == [b"synced".to_vec(), b"in the failed batch".to_vec()],
            "{policy:?}: {got:?}"
        );
    }
}

#[test]
fn write_failure_poisons_every_later_call() {
    let dir = MemoryDirectory::new();
    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    log.append(b"one").unwrap();
    dir.inject(Fault::enospc().on(OpKind::Write));
    let e = log.append(b"two").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert_eq!(log.len(), 1);
    assert_poisoned(log.append(b"three"));
    assert_poisoned(log.sync());
}

#[test]
fn reopen_after_poisoning_works_and_keeps_synced_records() {
    let dir = MemoryDirectory::new();
    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    log.append(b"a").unwrap();
    log.sync().unwrap();
    dir.inject(Fault::eio().on(OpKind::SyncFile));
    log.append(b"b").unwrap();
    assert!(log.sync().is_err());
    drop(log);

    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    let n = log.len();
    assert!(n >= 1);
    log.append(b"c").unwrap();
    log.sync().unwrap();
    let got = RecordLog::read(&dir, LOG, RecordLogMode::Strict).unwrap();
    let got: Vec<&[u8]> = got.iter().collect();
    assert_eq!(got.first(), Some(&&b"a"[..]));
    assert_eq!(got.last(), Some(&&b"c"[..]));
}

#[test]
fn sync_failure_poisons_on_the_filesystem_too() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FsDirectory::new(tmp.path()).unwrap();
    let dir: Arc<dyn Directory> = Arc::new(fs.clone());
    let mut log = RecordLog::open(dir, LOG).unwrap();
    log.append(b"x").unwrap();
    fs.inject(Fault::eio().on(OpKind::SyncFile));
    assert!(matches!(log.sync(), Err(Error::Io { .. })));
    assert_poisoned(log.append(b"y"));
}

#[test]
fn reopen_after_a_failed_sync_makes_what_it_found_durable_before_claiming_it() {
    // A failed sync leaves "b" in the page cache but maybe never on disk, and
    // no later sync writes it (the kernel marked its pages clean). A writer
    // reopening in the same boot sees "b" and appends after it; its syncs
    // succeed. Whatever a power loss keeps then, the log must open and hold
    // what that writer acknowledged, in order, with "b" before it.
    let dir = MemoryDirectory::new();
    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    log.append(b"a").unwrap();
    log.sync().unwrap();
    log.append(b"b, whose sync failed").unwrap();
    dir.inject(Fault::eio().on(OpKind::SyncFile));
    assert!(log.sync().is_err());
    drop(log);

    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    assert_eq!(log.len(), 2);
    for r in [&b"c"[..], b"d"] {
        log.append(r).unwrap();
        log.sync().unwrap();
    }
    drop(log);
    let expected: Vec<Vec<u8>> = [&b"a"[..], b"b, whose sync failed", b"c", b"d"]
        .iter()
        .map(|r| r.to_vec())
        .collect();
    for policy in CrashPolicy::standard_set(16) {
        let image = dir.crash_image(&policy);
        let log = RecordLog::open(Arc::new(image), LOG)
            .unwrap_or_else(|e| panic!("{policy:?}: the log must reopen: {e}"));
        let got: Vec<Vec<u8>> = log.records().unwrap().iter().map(<[u8]>::to_vec).collect();
        assert_eq!(got, expected, "{policy:?}");
    }
}
