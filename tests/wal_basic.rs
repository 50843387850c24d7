//! Basic WAL behaviour on both backends: append, rotate, resume, recycle,
//! truncate, replay from an id.

use std::sync::Arc;

use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions, WalReader};
use zerodur::{Directory, Error, FsDirectory, MemoryDirectory, OpKind};

fn opts() -> WalOptions {
    WalOptions::new("wal").segment_size_bytes(8 * 1024)
}

fn replay_all(dir: &Arc<dyn Directory>, mode: ReadMode) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    WalReader::open(dir.clone(), "wal", mode)
        .unwrap()
        .replay(None, |id, b| {
            out.push((id.get(), b.to_vec()));
            Ok(())
        })
        .unwrap();
    out
}

fn payload(i: u64) -> Vec<u8> {
    (0..(i % 300)).map(|j| (i + j) as u8).collect()
}

fn exercise(dir: Arc<dyn Directory>) {
    let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
    let next = |m: &Vec<(u64, Vec<u8>)>| m.last().map_or(1, |e| e.0 + 1);
    for round in 0..4 {
        let wal = Wal::open(dir.clone(), opts()).unwrap();
        assert_eq!(wal.next_entry_id().get(), next(&model), "round {round}");
        for _ in 0..120 {
            let i = next(&model);
            let id = wal.append(&payload(i)).unwrap();
            assert_eq!(id.get(), i);
            model.push((i, payload(i)));
        }
        let batch: Vec<Vec<u8>> = (0..5).map(|k| vec![k as u8; 40]).collect();
        let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
        let (a, b) = wal.append_batch_durable(&refs).unwrap().unwrap();
        for (k, p) in batch.iter().enumerate() {
            model.push((a.get() + k as u64, p.clone()));
        }
        assert_eq!(b.get(), next(&model) - 1);
        assert!(wal.stats().rotations > 0);
        // Truncating a prefix keeps everything after it.
        if round == 2 {
            let ranges = wal.segment_ranges().unwrap();
            let cut = ranges[2].first.get() - 1;
            let n = wal.truncate_prefix(EntryId::new(cut)).unwrap();
            assert_eq!(n, 2);
            model.retain(|(id, _)| *id >= ranges[2].first.get());
        }
        wal.close().unwrap();
        assert_eq!(replay_all(&dir, ReadMode::Strict), model);
    }
    // Replay from an id in the middle.
    let from = model[model.len() / 2].0;
    let mut got = Vec::new();
    WalReader::open(dir.clone(), "wal", ReadMode::Strict)
        .unwrap()
        .replay(Some(EntryId::new(from)), |id, _| {
            got.push(id.get());
            Ok(())
        })
        .unwrap();
    assert_eq!(got.first(), Some(&from));
    assert_eq!(got.len(), model.len() - model.len() / 2);
}

#[test]
fn append_rotate_resume_truncate_on_memory() {
    exercise(Arc::new(MemoryDirectory::new()));
}

#[test]
fn append_rotate_resume_truncate_on_fs() {
    let tmp = tempfile::tempdir().unwrap();
    exercise(FsDirectory::arc(tmp.path()).unwrap());
}

#[test]
fn second_writer_gets_locked() {
    let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let _w = Wal::open(dir.clone(), opts()).unwrap();
    assert!(matches!(Wal::open(dir, opts()), Err(Error::Locked { .. })));
}

#[test]
fn oversized_entry_is_rejected_at_append() {
    let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let w = Wal::open(dir, opts().max_entry_bytes(100)).unwrap();
    assert!(matches!(
        w.append(&[0; 101]),
        Err(Error::EntryTooLarge { len: 101, max: 100 })
    ));
    w.append(&[0; 100]).unwrap();
    assert!(!w.is_poisoned());
}

#[test]
fn a_new_log_can_start_after_a_checkpoint() {
    let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let opts = || opts().first_entry_id(EntryId::new(101));
    let w = Wal::open(dir.clone(), opts()).unwrap();
    assert_eq!(w.append(b"a").unwrap().get(), 101);
    w.close().unwrap();
    // Existing logs ignore the option.
    let w = Wal::open(dir.clone(), opts().first_entry_id(EntryId::new(5))).unwrap();
    assert_eq!(w.next_entry_id().get(), 102);
    drop(w);
    let mut ids = Vec::new();
    WalReader::open(dir.clone(), "wal", ReadMode::Strict)
        .unwrap()
        .replay(Some(EntryId::new(101)), |id, _| {
            ids.push(id.get());
            Ok(())
        })
        .unwrap();
    assert_eq!(ids, [101]);
    assert!(matches!(
        Wal::open(
            dir,
            WalOptions::new("other").first_entry_id(EntryId::new(0))
        ),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn entries_iterator_borrows_payloads_and_names_the_segment_in_errors() {
    let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let w = Wal::open(dir.clone(), opts()).unwrap();
    w.append_archived(&42u64).unwrap();
    w.append(b"not an archive of a u64, too long").unwrap();
    w.close().unwrap();
    let reader = WalReader::open(dir, "wal", ReadMode::Strict).unwrap();
    let entries: Vec<_> = reader.entries(None).collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].id().get(), 1);
    assert_eq!(entries[0].archived::<u64>().unwrap().to_native(), 42);
    match entries[1].archived::<u64>() {
        Err(Error::Validation { path, message }) => {
            assert_eq!(path.to_str(), Some("wal/00000000000000000001.seg"));
            assert!(message.contains("entry 2"), "{message}");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert_eq!(&*entries[1], b"not an archive of a u64, too long");
}

/// Durable appends into new segments write zeros ahead of the tail (a hint
/// to the file system): across several megabytes, rotations, and a resumed
/// segment, every entry replays byte-exact and nothing past the tail is
/// anything but zeros.
#[test]
fn durable_appends_over_megabytes_keep_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: [Arc<dyn Directory>; 2] = [
        FsDirectory::arc(tmp.path()).unwrap(),
        Arc::new(MemoryDirectory::new()),
    ];
    for dir in dirs {
        let opts = || WalOptions::new("wal").segment_size_bytes(3 * 1024 * 1024 + 4096);
        let mut model = Vec::new();
        for round in 0..2u64 {
            let wal = Wal::open(dir.clone(), opts()).unwrap();
            for i in 0..2500u64 {
                let p: Vec<u8> = (0..1000).map(|j| (i * 7 + j + round) as u8 | 1).collect();
                let id = if i % 50 == 0 {
                    // Buffered runs between barriers: the tail jumps ahead.
                    let id = wal.append(&p).unwrap();
                    for _ in 0..40 {
                        let q = vec![0xA5; 900];
                        let id = wal.append(&q).unwrap();
                        model.push((id.get(), q));
                    }
                    wal.sync().unwrap();
                    id
                } else {
                    wal.append_durable(&p).unwrap()
                };
                model.push((id.get(), p));
            }
            assert!(wal.stats().rotations >= 1);
        }
        model.sort();
        assert_eq!(replay_all(&dir, ReadMode::Strict), model);
        // Past the last frame of the active segment: zeros only.
        let mut names = dir.list("wal").unwrap();
        names.retain(|n| n.ends_with(".seg"));
        names.sort();
        let last = dir.read(&format!("wal/{}", names.last().unwrap())).unwrap();
        let used = last.iter().rposition(|&b| b != 0).unwrap();
        assert!(used < last.len() - 4096, "the active segment is not full");
    }
}

/// `zero_ahead(false)` writes no zeros ahead; the default writes them on the
/// first small barrier of a new segment and not again until the tail nears
/// their end.
#[test]
fn zero_ahead_writes_only_when_enabled() {
    let writes = |zero_ahead: bool| {
        let mem = MemoryDirectory::new();
        let dir: Arc<dyn Directory> = Arc::new(mem.clone());
        let wal = Wal::open(
            dir.clone(),
            WalOptions::new("wal")
                .segment_size_bytes(4 << 20)
                .zero_ahead(zero_ahead),
        )
        .unwrap();
        let before = mem.op_log().len();
        for i in 0..20u64 {
            wal.append_durable(&payload(i)).unwrap();
        }
        drop(wal);
        let n = mem.op_log()[before..]
            .iter()
            .filter(|op| op.kind == OpKind::Write)
            .count();
        assert_eq!(replay_all(&dir, ReadMode::Strict).len(), 20);
        n
    };
    assert_eq!(writes(true), writes(false) + 1);
}
