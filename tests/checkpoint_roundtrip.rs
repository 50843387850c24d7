//! Checkpoints written and loaded on both backends: archived fields read in
//! place, owned deserialization, the sync protocol, determinism, listing.

use std::collections::BTreeMap;
use std::sync::Arc;

use zerodur::{
    list_checkpoints, Checkpoint, CheckpointBytes, CheckpointName, Directory, Error, Fault,
    FsDirectory, IoOp, MemoryDirectory, OpKind,
};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct State {
    pairs: Vec<(u64, u64)>,
    names: BTreeMap<String, u64>,
    label: String,
}

const STATE_TAG: u64 = 0x5a44_5354_4154_4501;

fn sample_state() -> State {
    State {
        pairs: (0..1000u64)
            .map(|i| (i, i.wrapping_mul(0x9E37_79B9)))
            .collect(),
        names: (0..50u64).map(|i| (format!("key-{i:03}"), i * 3)).collect(),
        label: "zerodur checkpoint ✓".to_owned(),
    }
}

/// A [`MemoryDirectory`] and an [`FsDirectory`] in `tmp`.
fn both_backends(tmp: &tempfile::TempDir) -> [Arc<dyn Directory>; 2] {
    [
        Arc::new(MemoryDirectory::new()),
        Arc::new(FsDirectory::new(tmp.path()).unwrap()),
    ]
}

/// Loads `path` and checks every archived field against `expected` without
/// deserializing, then checks `deserialize()`.
fn assert_loads_as(dir: &dyn Directory, path: &str, expected: &State, last: Option<u64>) {
    let loaded = Checkpoint::<State>::load(dir, path, STATE_TAG).unwrap();
    assert_eq!(loaded.last_entry(), last);
    assert_eq!(loaded.tag(), STATE_TAG);
    assert_eq!(loaded.path(), path);
    assert_eq!(loaded.payload_len(), loaded.payload().len() as u64);

    assert_eq!(loaded.pairs.len(), expected.pairs.len());
    for (a, e) in loaded.pairs.iter().zip(&expected.pairs) {
        assert_eq!((a.0.to_native(), a.1.to_native()), *e);
    }
    assert_eq!(loaded.names.len(), expected.names.len());
    for (k, v) in &expected.names {
        assert_eq!(
            loaded.names.get(k.as_str()).map(|v| v.to_native()),
            Some(*v)
        );
    }
    let archived_keys: Vec<&str> = loaded.names.iter().map(|(k, _)| k.as_str()).collect();
    let expected_keys: Vec<&str> = expected.names.keys().map(String::as_str).collect();
    assert_eq!(archived_keys, expected_keys);
    assert_eq!(loaded.label.as_str(), expected.label);

    assert_eq!(&loaded.deserialize().unwrap(), expected);
}

#[test]
fn round_trip_on_memory_directory_reads_archived_fields_in_place() {
    let dir = MemoryDirectory::new();
    let state = sample_state();
    Checkpoint::write(&dir, "state.zdc", STATE_TAG, Some(41), &state).unwrap();
    assert_loads_as(&dir, "state.zdc", &state, Some(41));
}

#[test]
fn round_trip_on_fs_directory_reads_archived_fields_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::new(tmp.path()).unwrap();
    dir.create_dir_all("ckpt").unwrap();
    let state = sample_state();
    Checkpoint::write(&dir, "ckpt/state.zdc", STATE_TAG, None, &state).unwrap();
    assert_loads_as(&dir, "ckpt/state.zdc", &state, None);
    // No temporary file is left behind.
    assert_eq!(dir.list("ckpt").unwrap(), ["state.zdc"]);
}

#[test]
fn round_trip_through_arc_dyn_directory() {
    let dir: Arc<dyn Directory> = MemoryDirectory::arc();
    let state = sample_state();
    Checkpoint::write(&*dir, "s.zdc", STATE_TAG, Some(u64::MAX), &state).unwrap();
    assert_loads_as(&*dir, "s.zdc", &state, Some(u64::MAX));
}

#[test]
fn write_syncs_exactly_one_file_and_one_directory() {
    for raw in [false, true] {
        let dir = MemoryDirectory::new();
        dir.create_dir_all("c").unwrap();
        let before = dir.op_log().len();
        if raw {
            CheckpointBytes::write(&dir, "c/blob.zdc", 1, Some(1), &[7u8; 5000]).unwrap();
        } else {
            Checkpoint::write(&dir, "c/state.zdc", 1, Some(1), &sample_state()).unwrap();
        }
        let ops: Vec<OpKind> = dir.op_log()[before..].iter().map(|r| r.kind).collect();
        let count = |k: OpKind| ops.iter().filter(|&&o| o == k).count();
        assert_eq!(count(OpKind::SyncFile), 1, "raw={raw}: {ops:?}");
        assert_eq!(count(OpKind::SyncDir), 1, "raw={raw}: {ops:?}");
        assert_eq!(count(OpKind::Rename), 1, "raw={raw}: {ops:?}");
        // Order: data durable before the rename, rename before the dir sync.
        let pos = |k: OpKind| ops.iter().position(|&o| o == k).unwrap();
        assert!(pos(OpKind::SyncFile) < pos(OpKind::Rename));
        assert!(pos(OpKind::Rename) < pos(OpKind::SyncDir));
        assert_eq!(*ops.last().unwrap(), OpKind::SyncDir);
        let synced_dir = dir.op_log().last().unwrap().path.clone();
        assert_eq!(synced_dir, "c");
    }
}

#[test]
fn same_value_writes_identical_bytes() {
    let dir = MemoryDirectory::new();
    let state = sample_state();
    Checkpoint::write(&dir, "a.zdc", STATE_TAG, Some(9), &state).unwrap();
    Checkpoint::write(&dir, "b.zdc", STATE_TAG, Some(9), &state.clone()).unwrap();
    let a = dir.read("a.zdc").unwrap();
    assert_eq!(a, dir.read("b.zdc").unwrap());

    // The same on the filesystem, and across backends.
    let tmp = tempfile::tempdir().unwrap();
    let fs = FsDirectory::new(tmp.path()).unwrap();
    Checkpoint::write(&fs, "a.zdc", STATE_TAG, Some(9), &state).unwrap();
    assert_eq!(fs.read("a.zdc").unwrap(), a);
}

#[test]
fn raw_bytes_from_rkyv_give_the_same_file_as_typed_write() {
    let dir = MemoryDirectory::new();
    let state = sample_state();
    Checkpoint::write(&dir, "typed.zdc", STATE_TAG, Some(3), &state).unwrap();
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&state).unwrap();
    CheckpointBytes::write(&dir, "raw.zdc", STATE_TAG, Some(3), &bytes).unwrap();
    assert_eq!(dir.read("typed.zdc").unwrap(), dir.read("raw.zdc").unwrap());
    assert_loads_as(&dir, "raw.zdc", &state, Some(3));
}

#[test]
fn blob_round_trips_through_checkpoint_bytes_on_both_backends() {
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let tmp = tempfile::tempdir().unwrap();
    let fs = FsDirectory::new(tmp.path()).unwrap();
    let mem = MemoryDirectory::new();
    for dir in [&fs as &dyn Directory, &mem] {
        CheckpointBytes::write(dir, "blob.zdc", 77, Some(12), &blob).unwrap();
        let loaded = CheckpointBytes::load(dir, "blob.zdc", 77).unwrap();
        assert_eq!(&*loaded, &blob[..]);
        assert_eq!(loaded.last_entry(), Some(12));
        assert_eq!(loaded.tag(), 77);
        assert_eq!(loaded.payload_len(), blob.len() as u64);
        assert_eq!(
            loaded.as_ptr() as usize % 16,
            0,
            "payload must be 16-aligned"
        );
    }
}

#[test]
fn empty_blob_round_trips() {
    let dir = MemoryDirectory::new();
    CheckpointBytes::write(&dir, "e.zdc", 0, None, b"").unwrap();
    assert_eq!(dir.len("e.zdc").unwrap(), 64);
    let loaded = CheckpointBytes::load(&dir, "e.zdc", 0).unwrap();
    assert!(loaded.is_empty());
}

#[test]
fn archived_payload_is_16_byte_aligned_in_the_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FsDirectory::new(tmp.path()).unwrap();
    Checkpoint::write(&fs, "s.zdc", STATE_TAG, None, &sample_state()).unwrap();
    let loaded = Checkpoint::<State>::load(&fs, "s.zdc", STATE_TAG).unwrap();
    assert_eq!(loaded.payload().as_ptr() as usize % 16, 0);
}

#[test]
fn loaded_handle_is_send_and_sync_and_usable_from_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let dir = MemoryDirectory::new();
    let state = sample_state();
    Checkpoint::write(&dir, "s.zdc", STATE_TAG, None, &state).unwrap();
    let loaded = Arc::new(Checkpoint::<State>::load(&dir, "s.zdc", STATE_TAG).unwrap());
    assert_send_sync(&*loaded);
    let sums: Vec<u64> = (0..2)
        .map(|_| {
            let l = Arc::clone(&loaded);
            std::thread::spawn(move || l.pairs.iter().map(|p| p.0.to_native()).sum())
        })
        .map(|h| h.join().unwrap())
        .collect();
    let expected: u64 = state.pairs.iter().map(|p| p.0).sum();
    assert_eq!(sums, [expected, expected]);
}

#[test]
fn rewrite_replaces_the_checkpoint_atomically() {
    let dir = MemoryDirectory::new();
    let mut state = sample_state();
    Checkpoint::write(&dir, "s.zdc", STATE_TAG, Some(1), &state).unwrap();
    state.label = "second".into();
    Checkpoint::write(&dir, "s.zdc", STATE_TAG, Some(2), &state).unwrap();
    assert_loads_as(&dir, "s.zdc", &state, Some(2));
    assert_eq!(dir.list("").unwrap(), ["s.zdc"]);
}

#[test]
fn failed_sync_keeps_the_previous_checkpoint_and_removes_the_temporary() {
    let dir = MemoryDirectory::new();
    let state = sample_state();
    Checkpoint::write(&dir, "s.zdc", STATE_TAG, Some(1), &state).unwrap();
    dir.inject(Fault::eio().on(OpKind::SyncFile));
    let mut other = state.clone();
    other.label = "lost".into();
    let err = Checkpoint::write(&dir, "s.zdc", STATE_TAG, Some(2), &other).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_loads_as(&dir, "s.zdc", &state, Some(1));
    assert_eq!(dir.list("").unwrap(), ["s.zdc"]);
}

/// A checkpoint written in many pieces (a payload of several MiB) that
/// fails midway, at its sync or at its rename: a typed I/O error, the
/// previous checkpoint still in place and loading, no temporary file left
/// (on both backends).
#[test]
fn failed_write_of_a_large_checkpoint_keeps_the_previous_one_and_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FsDirectory::new(tmp.path()).unwrap();
    let mem = MemoryDirectory::new();
    type Inject<'a> = Box<dyn Fn(Fault) + 'a>;
    let backends: [(&dyn Directory, Inject); 2] = [
        (&fs, Box::new(|f| fs.inject(f))),
        (&mem, Box::new(|f| mem.inject(f))),
    ];
    let state = sample_state();
    // 3.2 MB of pairs: four pieces and the header.
    let big: Vec<(u64, u64)> = (0..200_000u64).map(|i| (i, !i)).collect();
    let blob = vec![0xA5u8; 3 << 20];
    let faults = [
        (OpKind::Write, 3, IoOp::Write),
        (OpKind::SyncFile, 1, IoOp::SyncFile),
        (OpKind::Rename, 1, IoOp::Rename),
    ];
    for (dir, inject) in backends {
        Checkpoint::write(dir, "s.zdc", STATE_TAG, Some(1), &state).unwrap();
        for (kind, nth, op) in faults {
            for raw in [false, true] {
                inject(Fault::eio().on(kind).nth(nth));
                let r = if raw {
                    CheckpointBytes::write(dir, "s.zdc", STATE_TAG, Some(2), &blob)
                } else {
                    Checkpoint::write(dir, "s.zdc", 7, Some(2), &big)
                };
                match r {
                    Err(Error::Io {
                        op: got, source, ..
                    }) => {
                        assert_eq!((got, source.raw_os_error()), (op, Some(libc::EIO)));
                    }
                    other => panic!("{dir:?}, {kind:?}: {other:?}"),
                }
                assert_eq!(dir.list("").unwrap(), ["s.zdc"], "{dir:?}, {kind:?}");
                assert_loads_as(dir, "s.zdc", &state, Some(1));
            }
        }
        Checkpoint::write(dir, "s.zdc", 7, Some(2), &big).unwrap();
        let loaded = Checkpoint::<Vec<(u64, u64)>>::load(dir, "s.zdc", 7).unwrap();
        assert_eq!(loaded.len(), big.len());
        assert_eq!(loaded[199_999].1.to_native(), !199_999);
    }
}

/// A field that rkyv refuses to serialize.
struct Refuse;

impl rkyv::with::ArchiveWith<u64> for Refuse {
    type Archived = rkyv::Archived<u64>;
    type Resolver = ();

    fn resolve_with(field: &u64, (): (), out: rkyv::Place<Self::Archived>) {
        rkyv::Archive::resolve(field, (), out);
    }
}

impl<S: rkyv::rancor::Fallible + ?Sized> rkyv::with::SerializeWith<u64, S> for Refuse
where
    S::Error: rkyv::rancor::Source,
{
    fn serialize_with(_: &u64, _: &mut S) -> Result<(), S::Error> {
        Err(rkyv::rancor::Source::new(std::fmt::Error))
    }
}

/// Megabytes of pairs (written to the file, piece after piece, before the
/// refusal), then a field rkyv refuses.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct RefusedLate {
    pairs: Vec<(u64, u64)>,
    #[rkyv(with = Refuse)]
    refused: u64,
}

/// Serialization goes straight into the temporary file: a value rkyv gives
/// up on after pieces were written is an `InvalidArgument` naming the path,
/// the previous checkpoint stays, and no temporary file is left (on both
/// backends).
#[test]
fn value_refused_midway_keeps_the_previous_checkpoint_and_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let backends = both_backends(&tmp);
    let state = sample_state();
    let refused = RefusedLate {
        pairs: (0..300_000u64).map(|i| (i, i)).collect(),
        refused: 1,
    };
    for dir in backends {
        Checkpoint::write(&*dir, "s.zdc", STATE_TAG, Some(1), &state).unwrap();
        match Checkpoint::write(&*dir, "s.zdc", STATE_TAG, Some(2), &refused) {
            Err(Error::InvalidArgument { name, reason }) => {
                assert_eq!(name, "value");
                assert!(reason.contains("`s.zdc`"), "{reason}");
            }
            other => panic!("{dir:?}: {other:?}"),
        }
        assert_eq!(dir.list("").unwrap(), ["s.zdc"], "{dir:?}");
        assert_loads_as(&*dir, "s.zdc", &state, Some(1));
    }
}

#[test]
fn write_into_a_missing_folder_fails_with_not_found() {
    let dir = MemoryDirectory::new();
    let err = CheckpointBytes::write(&dir, "nope/c.zdc", 1, None, b"x").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(matches!(
        CheckpointBytes::write(&dir, "../c.zdc", 1, None, b"x"),
        Err(Error::InvalidPath { .. })
    ));
}

#[test]
fn load_of_a_missing_file_is_not_found() {
    let dir = MemoryDirectory::new();
    let err = Checkpoint::<State>::load(&dir, "missing.zdc", STATE_TAG).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn list_returns_newest_first_and_skips_temporaries_and_strangers() {
    let dir = MemoryDirectory::new();
    dir.create_dir_all("ck").unwrap();
    for last in [Some(5), None, Some(100), Some(7)] {
        let path = CheckpointName::new(last).path_in("ck");
        CheckpointBytes::write(&dir, &path, 1, last, b"x").unwrap();
    }
    // A leftover temporary, a stranger, a near miss.
    let tmp_name = format!("{}.tmp", CheckpointName::new(Some(200)).path_in("ck"));
    dir.atomic_write(&tmp_name, b"partial").unwrap();
    dir.atomic_write("ck/notes.txt", b"hello").unwrap();
    dir.atomic_write("ck/checkpoint-12.zdc", b"bad name")
        .unwrap();

    let names = list_checkpoints(&dir, "ck").unwrap();
    let lasts: Vec<Option<u64>> = names.iter().map(|n| n.last_entry()).collect();
    assert_eq!(lasts, [Some(100), Some(7), Some(5), None]);
    for n in &names {
        let loaded = CheckpointBytes::load(&dir, &n.path_in("ck"), 1).unwrap();
        assert_eq!(loaded.last_entry(), n.last_entry());
    }
    assert!(list_checkpoints(&dir, "").unwrap().is_empty());
}

#[test]
fn file_names_round_trip_for_many_ids() {
    for id in [
        0u64,
        1,
        9,
        10,
        99,
        12345,
        u64::MAX / 3,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let name = CheckpointName::new(Some(id));
        let file = name.file_name();
        assert_eq!(file.len(), "checkpoint-".len() + 20 + ".zdc".len());
        assert_eq!(CheckpointName::parse(&file), Some(name));
        assert_eq!(name.to_string(), file);
    }
    // Lexicographic order of file names is numeric order.
    let mut files: Vec<String> = [3u64, 200, 1_000_000, 20]
        .iter()
        .map(|&i| CheckpointName::new(Some(i)).file_name())
        .collect();
    files.sort();
    let ids: Vec<u64> = files
        .iter()
        .map(|f| CheckpointName::parse(f).unwrap().last_entry().unwrap())
        .collect();
    assert_eq!(ids, [3, 20, 200, 1_000_000]);
}

/// Writers of one checkpoint name take turns: each `Ok` publishes a whole
/// checkpoint of its own, the name always loads as one writer's value, and
/// no temporary file is left behind (on both backends).
#[test]
fn concurrent_writes_of_one_checkpoint_publish_whole_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let backends = both_backends(&tmp);
    for dir in backends {
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let dir = &dir;
                s.spawn(move || {
                    for round in 0..25u64 {
                        let value: Vec<u64> =
                            (0..2000).map(|i| t * 1_000_000 + round + i).collect();
                        Checkpoint::write(&**dir, "same.zdc", 9, Some(round), &value).unwrap();
                        let got = Checkpoint::<Vec<u64>>::load(&**dir, "same.zdc", 9).unwrap();
                        let first = got[0].to_native();
                        assert!(
                            got.iter()
                                .enumerate()
                                .all(|(i, v)| v.to_native() == first + i as u64),
                            "a checkpoint mixing two writers' bytes"
                        );
                    }
                });
            }
        });
        let names = dir.list("").unwrap();
        assert!(
            names.iter().all(|n| n == "same.zdc"),
            "leftover files: {names:?}"
        );
    }
}
