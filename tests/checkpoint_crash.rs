//! Power loss at every step of writing a checkpoint, under several crash
//! policies: every checkpoint recovery can find loads, byte-exact, and is
//! either the old one or the new one — never garbage, never nothing.

use std::collections::BTreeMap;

use zerodur::{
    list_checkpoints, Checkpoint, CheckpointName, CrashPolicy, Directory, MemoryDirectory,
};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct State {
    pairs: Vec<(u64, u64)>,
    names: BTreeMap<String, u64>,
    label: String,
}

const TAG: u64 = 42;
const FOLDER: &str = "ckpt";

/// A state big enough to span many 512-byte sectors, so tearing is possible.
fn state(generation: u64) -> State {
    State {
        pairs: (0..400).map(|i| (i, i * generation)).collect(),
        names: (0..20).map(|i| (format!("n{i}"), i + generation)).collect(),
        label: format!("generation {generation}"),
    }
}

/// The directory after checkpoint A is durable, plus A's path and bytes.
fn with_durable_a(a_path: &str, a: &State) -> (MemoryDirectory, Vec<u8>) {
    let dir = MemoryDirectory::new();
    dir.create_dir_all(FOLDER).unwrap();
    dir.sync_dir("").unwrap();
    Checkpoint::write(&dir, a_path, TAG, Some(10), a).unwrap();
    let bytes = dir.read(a_path).unwrap();
    (dir, bytes)
}

/// Runs `write_b` on a fresh directory holding durable A, halted after `k`
/// more operations; returns the directory and whether the write succeeded.
fn halted_write(
    k: u64,
    a_path: &str,
    a: &State,
    write_b: &dyn Fn(&MemoryDirectory) -> zerodur::Result<()>,
) -> (MemoryDirectory, bool) {
    let (dir, _) = with_durable_a(a_path, a);
    dir.halt_after(dir.op_count() + k);
    let ok = write_b(&dir).is_ok();
    (dir, ok)
}

/// Operations `write_b` performs when nothing halts it.
fn ops_of(
    a_path: &str,
    a: &State,
    write_b: &dyn Fn(&MemoryDirectory) -> zerodur::Result<()>,
) -> u64 {
    let (dir, _) = with_durable_a(a_path, a);
    let before = dir.op_count();
    write_b(&dir).unwrap();
    dir.op_count() - before
}

#[test]
fn crash_while_writing_a_newer_checkpoint_leaves_old_or_new_never_garbage() {
    let (a, b) = (state(1), state(2));
    let a_path = CheckpointName::new(Some(10)).path_in(FOLDER);
    let b_path = CheckpointName::new(Some(20)).path_in(FOLDER);
    let write_b = |d: &MemoryDirectory| Checkpoint::write(d, &b_path, TAG, Some(20), &b);
    let a_bytes = with_durable_a(&a_path, &a).1;
    let b_bytes = {
        let (d, _) = with_durable_a(&a_path, &a);
        write_b(&d).unwrap();
        d.read(&b_path).unwrap()
    };
    let ops = ops_of(&a_path, &a, &write_b);
    assert!(ops >= 5, "create, write, sync, rename, sync dir: {ops}");

    let mut states = 0;
    let mut saw = [false; 2];
    for k in 0..=ops {
        let (dir, write_ok) = halted_write(k, &a_path, &a, &write_b);
        for policy in CrashPolicy::standard_set(8) {
            let image = dir.crash_image(&policy);
            let names = list_checkpoints(&image, FOLDER).unwrap();
            assert!(!names.is_empty(), "k={k} {policy:?}: no checkpoint at all");
            // Never garbage: every listed checkpoint loads, byte-exact.
            for name in &names {
                let path = name.path_in(FOLDER);
                let loaded = Checkpoint::<State>::load(&image, &path, TAG)
                    .unwrap_or_else(|e| panic!("k={k} {policy:?}: {path}: {e}"));
                let (expected_bytes, expected) = match name.last_entry() {
                    Some(10) => (&a_bytes, &a),
                    Some(20) => (&b_bytes, &b),
                    other => panic!("unexpected checkpoint {other:?}"),
                };
                assert_eq!(&image.read(&path).unwrap(), expected_bytes);
                assert_eq!(&loaded.deserialize().unwrap(), expected);
            }
            // The newest loadable checkpoint is A or B; B once acknowledged.
            let newest = names[0].last_entry();
            if write_ok {
                assert_eq!(newest, Some(20), "k={k} {policy:?}: acknowledged B lost");
            }
            saw[usize::from(newest == Some(20))] = true;
            // A is never lost: it was durable before B began.
            assert!(names.iter().any(|n| n.last_entry() == Some(10)));
            states += 1;
        }
    }
    assert!(saw[0] && saw[1], "both outcomes must occur: {saw:?}");
    println!("crash states checked: {states}");
}

#[test]
fn crash_while_overwriting_a_checkpoint_leaves_old_or_new_content() {
    let (a, b) = (state(3), state(4));
    let path = CheckpointName::new(Some(10)).path_in(FOLDER);
    let write_b = |d: &MemoryDirectory| Checkpoint::write(d, &path, TAG, Some(10), &b);
    let a_bytes = with_durable_a(&path, &a).1;
    let b_bytes = {
        let (d, _) = with_durable_a(&path, &a);
        write_b(&d).unwrap();
        d.read(&path).unwrap()
    };
    let ops = ops_of(&path, &a, &write_b);

    let mut states = 0;
    for k in 0..=ops {
        let (dir, write_ok) = halted_write(k, &path, &a, &write_b);
        for policy in CrashPolicy::standard_set(8) {
            let image = dir.crash_image(&policy);
            let bytes = image.read(&path).unwrap();
            let loaded = Checkpoint::<State>::load(&image, &path, TAG)
                .unwrap_or_else(|e| panic!("k={k} {policy:?}: {e}"));
            if bytes == b_bytes {
                assert_eq!(loaded.deserialize().unwrap(), b);
            } else {
                assert!(!write_ok, "k={k} {policy:?}: acknowledged overwrite lost");
                assert_eq!(bytes, a_bytes, "k={k} {policy:?}: neither A nor B");
                assert_eq!(loaded.deserialize().unwrap(), a);
            }
            states += 1;
        }
    }
    println!("crash states checked: {states}");
}
