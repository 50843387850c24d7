//! Record log reopening: records replay byte-exact, a torn tail is cut
//! durably on open and appends after it replay, strict mode rejects what
//! best-effort mode cuts, and reading never modifies anything.

use std::sync::Arc;

use zerodur::{
    CorruptKind, CrashPolicy, Directory, Error, FsDirectory, MemoryDirectory, OpKind, RecordLog,
    RecordLogMode, RecordLogOptions,
};

const LOG: &str = "meta.log";
const FILE_HEADER: u64 = 16;

fn sample_records() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 37]).collect();
    v.push(Vec::new());
    v.push(b"last".to_vec());
    v
}

fn replay(dir: &dyn Directory, mode: RecordLogMode) -> zerodur::Result<Vec<Vec<u8>>> {
    Ok(RecordLog::read(dir, LOG, mode)?
        .iter()
        .map(<[u8]>::to_vec)
        .collect())
}

fn write_log(dir: Arc<dyn Directory>, records: &[Vec<u8>]) {
    let mut log = RecordLog::open(dir, LOG).unwrap();
    for r in records {
        log.append(r).unwrap();
    }
    log.sync().unwrap();
}

/// Appends raw `bytes` to the log file and makes them durable, as a crash
/// during an unsynced append could have left them.
fn append_raw(dir: &dyn Directory, bytes: &[u8]) {
    let mut f = dir.open_append(LOG).unwrap();
    f.write_all(bytes).unwrap();
    f.sync().unwrap();
}

/// A frame as FORMAT.md defines it (version 2) for file offset `at`,
/// claiming file length `synced` durable: CRC of bytes 4..24+n, length,
/// offset, synced, payload, zero padding to a multiple of 8.
fn frame(at: u64, synced: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0; 4];
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&at.to_le_bytes());
    f.extend_from_slice(&synced.to_le_bytes());
    f.extend_from_slice(payload);
    let crc = crc32fast::hash(&f[4..]);
    f[..4].copy_from_slice(&crc.to_le_bytes());
    f.resize(f.len().next_multiple_of(8), 0);
    f
}

/// Bytes the frame of an `n`-byte record occupies.
fn frame_len(n: usize) -> u64 {
    (24 + n).next_multiple_of(8) as u64
}

/// The next frame to append raw at the end of the log: at its end, claiming
/// its whole length durable (what a writer that synced there would write).
fn next_frame(dir: &dyn Directory, payload: &[u8]) -> Vec<u8> {
    let at = dir.len(LOG).unwrap();
    frame(at, at, payload)
}

fn backends() -> (tempfile::TempDir, Vec<Arc<dyn Directory>>) {
    let tmp = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Directory> = Arc::new(FsDirectory::new(tmp.path()).unwrap());
    (tmp, vec![MemoryDirectory::arc(), fs])
}

#[test]
fn reopen_replays_every_record_byte_exact_on_both_backends() {
    let (_tmp, dirs) = backends();
    for dir in dirs {
        let records = sample_records();
        write_log(Arc::clone(&dir), &records);
        let log = RecordLog::open(Arc::clone(&dir), LOG).unwrap();
        assert_eq!(log.len(), records.len() as u64);
        let got: Vec<Vec<u8>> = log.records().unwrap().iter().map(<[u8]>::to_vec).collect();
        assert_eq!(got, records);
        assert_eq!(replay(&*dir, RecordLogMode::Strict).unwrap(), records);
    }
}

#[test]
fn records_include_unsynced_appends_of_this_handle() {
    let dir = MemoryDirectory::arc();
    let mut log = RecordLog::open(dir, LOG).unwrap();
    log.append(b"a").unwrap();
    log.append(b"bb").unwrap();
    let records = log.records().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records.iter().len(), 2);
    assert_eq!(records.iter().collect::<Vec<_>>(), [&b"a"[..], b"bb"]);
}

#[test]
fn torn_tail_is_cut_on_open_then_appends_replay_after_the_kept_records() {
    let (_tmp, dirs) = backends();
    for dir in dirs {
        let records = sample_records();
        write_log(Arc::clone(&dir), &records);
        let valid_len = dir.len(LOG).unwrap();
        let torn = &next_frame(&*dir, b"a record that was being appended")[..13];
        append_raw(&*dir, torn);

        let mut log = RecordLog::open(Arc::clone(&dir), LOG).unwrap();
        assert_eq!(dir.len(LOG).unwrap(), valid_len, "tail not cut");
        assert_eq!(log.len(), records.len() as u64);
        log.append(b"after the cut").unwrap();
        log.sync().unwrap();
        drop(log);

        let mut expected = records.clone();
        expected.push(b"after the cut".to_vec());
        assert_eq!(replay(&*dir, RecordLogMode::Strict).unwrap(), expected);
    }
}

#[test]
fn tail_with_bad_crc_is_cut_like_a_partial_frame() {
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"one".to_vec()]);
    let mut bad = next_frame(&dir, b"two");
    bad[26] ^= 0x40;
    append_raw(&dir, &bad);
    let log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(dir.len(LOG).unwrap(), FILE_HEADER + frame_len(3));
}

#[test]
fn cut_is_durable_before_anything_is_appended() {
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"kept".to_vec()]);
    append_raw(&dir, &[0xEE; 7]);
    let before = dir.op_log().len();
    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    log.append(b"new").unwrap();
    let ops: Vec<OpKind> = dir.op_log()[before..].iter().map(|r| r.kind).collect();
    let at = |k: OpKind| ops.iter().position(|&o| o == k).unwrap();
    // Open: cut, rewrite the unproven record unchanged, sync; then the
    // append's write.
    let append = ops.iter().rposition(|&o| o == OpKind::Write).unwrap();
    assert!(at(OpKind::Truncate) < at(OpKind::SyncFile), "{ops:?}");
    assert!(at(OpKind::SyncFile) < append, "{ops:?}");
    // A power loss right now keeps the cut: the tail never comes back.
    let image = dir.crash_image(&CrashPolicy::drop_all());
    assert_eq!(
        image.read(LOG).unwrap().len() as u64,
        FILE_HEADER + frame_len(4)
    );
}

#[test]
fn discarded_tail_never_replays_behind_a_new_record() {
    // The tail is a corrupt frame exactly as long as the next record's frame,
    // followed by a valid frame: if the cut were not durable, a crash after
    // appending the new record could resurrect that frame behind it.
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"kept".to_vec()]);
    let at = dir.len(LOG).unwrap();
    let mut corrupt = frame(at, at, b"NEW!");
    corrupt[5] ^= 1;
    let mut tail = corrupt;
    tail.extend_from_slice(&frame(at + frame_len(4), at, b"discarded"));
    append_raw(&dir, &tail);

    let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
    log.append(b"NEW!").unwrap();
    for policy in CrashPolicy::standard_set(16) {
        let image = dir.crash_image(&policy);
        let got = replay(&image, RecordLogMode::BestEffort).unwrap();
        assert!(
            got == [b"kept".to_vec()] || got == [b"kept".to_vec(), b"NEW!".to_vec()],
            "{policy:?}: {got:?}"
        );
    }
}

#[test]
fn strict_open_rejects_torn_tail_and_changes_nothing() {
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"one".to_vec()]);
    append_raw(&dir, &next_frame(&dir, b"torn")[..6]);
    let before = dir.read(LOG).unwrap();
    let mut options = RecordLogOptions::default();
    options.mode = RecordLogMode::Strict;
    let e = RecordLog::open_with(Arc::new(dir.clone()), LOG, options).unwrap_err();
    let at = FILE_HEADER + frame_len(3);
    assert!(
        matches!(
            e,
            Error::Corrupt { offset, kind: CorruptKind::TornTail, .. } if offset == at
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains(LOG));
    assert_eq!(dir.read(LOG).unwrap(), before);
}

#[test]
fn strict_read_rejects_zero_padding_mid_file() {
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"one".to_vec()]);
    // Zeros, then a frame written while only the log before the zeros was
    // durable: unsynced bytes that never reached the disk, as a crash leaves.
    let at = FILE_HEADER + frame_len(3);
    let mut rest = vec![0u8; 64];
    rest.extend_from_slice(&frame(at + 64, at, b"after the zeros"));
    append_raw(&dir, &rest);
    let e = replay(&dir, RecordLogMode::Strict).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Corrupt { offset, kind: CorruptKind::BadFrame("zero padding"), .. } if offset == at
        ),
        "{e:?}"
    );
    // Best effort stops at the zeros, and reading changes nothing.
    let len = dir.len(LOG).unwrap();
    assert_eq!(
        replay(&dir, RecordLogMode::BestEffort).unwrap(),
        [b"one".to_vec()]
    );
    assert_eq!(dir.len(LOG).unwrap(), len);
}

#[test]
fn strict_read_rejects_trailing_zeros_and_bad_crc() {
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"one".to_vec(), b"two".to_vec()]);
    // The last payload byte ("two" is followed by 5 bytes of padding).
    let mut bytes = dir.read(LOG).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0x01;
    let copy = MemoryDirectory::new();
    append_whole(&copy, &bytes);
    assert!(matches!(
        replay(&copy, RecordLogMode::Strict),
        Err(Error::ChecksumMismatch { .. })
    ));
    let zeros = MemoryDirectory::new();
    let mut padded = dir.read(LOG).unwrap();
    padded.extend_from_slice(&[0; 3]);
    append_whole(&zeros, &padded);
    assert!(matches!(
        replay(&zeros, RecordLogMode::Strict),
        Err(Error::Corrupt {
            kind: CorruptKind::BadFrame("zero padding"),
            ..
        })
    ));
}

fn append_whole(dir: &MemoryDirectory, bytes: &[u8]) {
    let mut f = dir.create(LOG).unwrap();
    f.write_all(bytes).unwrap();
    f.sync().unwrap();
}

#[test]
fn read_never_modifies_a_torn_tail() {
    let dir = MemoryDirectory::new();
    write_log(Arc::new(dir.clone()), &[b"one".to_vec()]);
    append_raw(&dir, &[1, 2, 3]);
    let ops = dir.op_count();
    let bytes = dir.read(LOG).unwrap();
    let records = RecordLog::read(&dir, LOG, RecordLogMode::BestEffort).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records.valid_len_bytes(), bytes.len() as u64 - 3);
    assert_eq!(dir.op_count(), ops, "a read must not write");
    assert_eq!(dir.read(LOG).unwrap(), bytes);
}

#[test]
fn append_rejects_oversized_record_without_poisoning() {
    let dir = MemoryDirectory::arc();
    let mut options = RecordLogOptions::default();
    options.max_record_size_bytes = 100;
    let mut log = RecordLog::open_with(Arc::clone(&dir), LOG, options).unwrap();
    let e = log.append(&[0; 101]).unwrap_err();
    assert!(
        matches!(e, Error::EntryTooLarge { len: 101, max: 100 }),
        "{e:?}"
    );
    log.append(&[0; 100]).unwrap();
    log.sync().unwrap();
    assert_eq!(log.len(), 1);
    drop(log);
    // A lower limit later never hides records already written.
    options.max_record_size_bytes = 10;
    let log = RecordLog::open_with(dir, LOG, options).unwrap();
    assert_eq!(log.records().unwrap().iter().next().unwrap().len(), 100);
}

#[test]
fn default_limit_is_16_mib() {
    let mut log = RecordLog::open(MemoryDirectory::arc(), LOG).unwrap();
    assert_eq!(log.options().max_record_size_bytes, 16 << 20);
    assert!(matches!(
        log.append(&vec![0; (16 << 20) + 1]),
        Err(Error::EntryTooLarge { .. })
    ));
}

#[test]
fn bad_file_header_is_an_error_and_is_never_overwritten() {
    let dir = MemoryDirectory::new();
    dir.atomic_write(LOG, b"NOTALOG!\x01\0\0\0\0\0\0\0more")
        .unwrap();
    let before = dir.read(LOG).unwrap();
    let e = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Corrupt {
                offset: 0,
                kind: CorruptKind::BadMagic,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(dir.read(LOG).unwrap(), before);

    let empty = MemoryDirectory::new();
    empty.atomic_write(LOG, b"").unwrap();
    assert!(matches!(
        RecordLog::open(Arc::new(empty), LOG),
        Err(Error::Corrupt {
            kind: CorruptKind::Truncated { .. },
            ..
        })
    ));
}

#[test]
fn creation_is_durable_when_open_returns() {
    let dir = MemoryDirectory::new();
    dir.create_dir_all("logs").unwrap();
    dir.sync_dir("").unwrap();
    let log = RecordLog::open(Arc::new(dir.clone()), "logs/m.log").unwrap();
    assert!(log.is_empty());
    let image = dir.crash_image(&CrashPolicy::drop_all());
    assert_eq!(image.len("logs/m.log").unwrap(), FILE_HEADER);
    let log = RecordLog::open(Arc::new(image), "logs/m.log").unwrap();
    assert!(log.records().unwrap().is_empty());
}

#[test]
fn invalid_path_is_refused() {
    assert!(matches!(
        RecordLog::open(MemoryDirectory::arc(), "../x.log"),
        Err(Error::InvalidPath { .. })
    ));
}

#[test]
fn a_second_writer_is_locked_out_and_readers_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in [
        MemoryDirectory::arc(),
        FsDirectory::arc(tmp.path()).unwrap(),
    ] {
        let mut log = RecordLog::open(Arc::clone(&dir), LOG).unwrap();
        log.append(b"first").unwrap();
        log.sync().unwrap();
        let before = dir.read(LOG).unwrap();
        // Refused before it could scan, cut or write anything.
        match RecordLog::open(Arc::clone(&dir), LOG) {
            Err(Error::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(dir.read(LOG).unwrap(), before);
        // Readers take no lock.
        let records = RecordLog::read(&*dir, LOG, RecordLogMode::Strict).unwrap();
        assert_eq!(records.iter().collect::<Vec<_>>(), [&b"first"[..]]);
        drop(log);
        let mut log = RecordLog::open(Arc::clone(&dir), LOG).unwrap();
        log.append(b"second").unwrap();
        log.sync().unwrap();
        assert_eq!(log.records().unwrap().len(), 2);
    }
}

#[test]
fn version_1_log_is_unsupported_and_left_untouched() {
    let dir = MemoryDirectory::new();
    let mut v1 = b"ZDURRLOG".to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    // One version-1 frame: length, CRC of length + payload, payload.
    v1.extend_from_slice(&3u32.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&3u32.to_le_bytes());
    h.update(b"old");
    v1.extend_from_slice(&h.finalize().to_le_bytes());
    v1.extend_from_slice(b"old");
    dir.atomic_write(LOG, &v1).unwrap();
    for mode in [RecordLogMode::BestEffort, RecordLogMode::Strict] {
        let e = replay(&dir, mode).unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnsupportedVersion {
                    found: 1,
                    supported: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    assert!(matches!(
        RecordLog::open(Arc::new(dir.clone()), LOG),
        Err(Error::UnsupportedVersion { found: 1, .. })
    ));
    assert_eq!(dir.read(LOG).unwrap(), v1);
}
