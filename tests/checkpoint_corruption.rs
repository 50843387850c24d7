//! Damaged checkpoint files: committed fixtures pin the format and each
//! failure's error; exhaustive flips and truncations, and CRC-valid garbage
//! payloads, are rejected with typed errors, never a panic.
//!
//! The fixtures in `tests/fixtures/checkpoint/` are produced by
//! [`fixtures`]; `committed_fixtures_match_the_generator` fails if either
//! changes. To regenerate after an intended format change:
//! `cargo test --test checkpoint_corruption -- --ignored regenerate_fixtures`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use zerodur::{
    Checkpoint, CheckpointBytes, CorruptKind, Directory, Error, FsDirectory, MemoryDirectory,
};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct State {
    pairs: Vec<(u64, u64)>,
    names: BTreeMap<String, u64>,
    label: String,
}

const TAG: u64 = 0x0123_4567_89ab_cdef;
const OTHER_TAG: u64 = 0xfeed;
const LAST_ENTRY: u64 = 1234;
const HEADER: usize = 64;

fn fixture_state() -> State {
    State {
        pairs: vec![(1, 10), (2, 20), (3, 30)],
        names: BTreeMap::from([("alpha".to_owned(), 1), ("beta".to_owned(), 2)]),
        label: "fixture".to_owned(),
    }
}

/// The valid file, written through the public API.
fn valid_file() -> Vec<u8> {
    let dir = MemoryDirectory::new();
    Checkpoint::write(&dir, "c", TAG, Some(LAST_ENTRY), &fixture_state()).unwrap();
    dir.read("c").unwrap()
}

/// Recomputes the header CRC (bytes 60..64 = CRC-32 of bytes 0..60), so an
/// edited field reaches the check behind the CRC.
fn reseal(mut f: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&f[..60]);
    f[60..64].copy_from_slice(&crc.to_le_bytes());
    f
}

/// Sets the payload CRC (bytes 36..40) to match the payload, then reseals.
fn reseal_payload(mut f: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&f[HEADER..]);
    f[36..40].copy_from_slice(&crc.to_le_bytes());
    reseal(f)
}

fn with(mut f: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut f);
    f
}

/// Every fixture: file name and bytes.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let valid = valid_file();
    let len = valid.len();
    let wrong_tag = {
        let dir = MemoryDirectory::new();
        Checkpoint::write(&dir, "c", OTHER_TAG, Some(LAST_ENTRY), &fixture_state()).unwrap();
        dir.read("c").unwrap()
    };
    vec![
        ("valid.zdc", valid.clone()),
        ("zero_length.zdc", Vec::new()),
        ("short_header.zdc", valid[..40].to_vec()),
        ("bad_magic.zdc", with(valid.clone(), |f| f[0] = b'X')),
        (
            "flipped_header_byte.zdc",
            with(valid.clone(), |f| f[44] ^= 0x10),
        ),
        (
            "wrong_version.zdc",
            reseal(with(valid.clone(), |f| {
                f[8..12].copy_from_slice(&2u32.to_le_bytes())
            })),
        ),
        ("wrong_tag.zdc", wrong_tag),
        (
            "hostile_payload_len.zdc",
            reseal(with(valid.clone(), |f| {
                f[24..32].copy_from_slice(&u64::MAX.to_le_bytes())
            })),
        ),
        (
            "payload_len_past_eof.zdc",
            reseal(with(valid.clone(), |f| {
                f[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes())
            })),
        ),
        ("truncated.zdc", valid[..len - 7].to_vec()),
        (
            "trailing_garbage.zdc",
            with(valid.clone(), |f| f.extend_from_slice(&[0xAB; 16])),
        ),
        (
            "flipped_payload_byte.zdc",
            with(valid.clone(), |f| f[HEADER + 5] ^= 0x01),
        ),
        (
            "invalid_archive.zdc",
            // A CRC-valid payload whose root claims a vector far out of bounds.
            reseal_payload(with(valid, |f| {
                let n = f.len();
                f[n - 32..].fill(0x7f);
            })),
        ),
    ]
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint")
}

/// Loads a committed fixture through `FsDirectory` (a real read-only map).
fn load_fixture(name: &str) -> Result<Checkpoint<State>, Error> {
    let dir = FsDirectory::new(fixture_dir()).unwrap();
    Checkpoint::<State>::load(&dir, name, TAG)
}

fn valid_len() -> u64 {
    valid_file().len() as u64
}

#[test]
#[ignore = "writes tests/fixtures/checkpoint; run by hand after a format change"]
fn regenerate_fixtures() {
    std::fs::create_dir_all(fixture_dir()).unwrap();
    for (name, bytes) in fixtures() {
        std::fs::write(fixture_dir().join(name), bytes).unwrap();
    }
}

#[test]
fn committed_fixtures_match_the_generator() {
    let mut committed: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".zdc"))
        .collect();
    committed.sort();
    let mut generated: Vec<String> = fixtures().iter().map(|(n, _)| n.to_string()).collect();
    generated.sort();
    assert_eq!(committed, generated);
    for (name, bytes) in fixtures() {
        let on_disk = std::fs::read(fixture_dir().join(name)).unwrap();
        assert!(
            on_disk == bytes,
            "{name}: the format changed (or the fixture did); see the module docs"
        );
    }
}

#[test]
fn valid_fixture_loads_with_its_header_fields() {
    let loaded = load_fixture("valid.zdc").unwrap();
    assert_eq!(loaded.last_entry(), Some(LAST_ENTRY));
    assert_eq!(loaded.tag(), TAG);
    assert_eq!(loaded.payload_len(), valid_len() - HEADER as u64);
    assert_eq!(loaded.label.as_str(), "fixture");
    assert_eq!(loaded.deserialize().unwrap(), fixture_state());
}

/// Asserts the error names the fixture's path in both its fields and its
/// message.
fn assert_names_file(e: &Error, name: &str) {
    assert!(e.to_string().contains(name), "message lacks the path: {e}");
}

#[test]
fn load_rejects_zero_length_file_as_truncated() {
    let e = load_fixture("zero_length.zdc").unwrap_err();
    assert_names_file(&e, "zero_length.zdc");
    assert!(
        matches!(
            e,
            Error::Corrupt {
                offset: 0,
                kind: CorruptKind::Truncated {
                    needed: 64,
                    available: 0
                },
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_file_shorter_than_its_header() {
    let e = load_fixture("short_header.zdc").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Corrupt {
                kind: CorruptKind::Truncated {
                    needed: 64,
                    available: 40
                },
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_bad_magic() {
    let e = load_fixture("bad_magic.zdc").unwrap_err();
    assert_names_file(&e, "bad_magic.zdc");
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
}

#[test]
fn load_rejects_flipped_header_byte_with_header_checksum_mismatch() {
    let e = load_fixture("flipped_header_byte.zdc").unwrap_err();
    assert_names_file(&e, "flipped_header_byte.zdc");
    match e {
        Error::ChecksumMismatch {
            path,
            offset,
            expected,
            actual,
        } => {
            assert!(path.ends_with("flipped_header_byte.zdc"));
            assert_eq!(offset, 0);
            assert_ne!(expected, actual);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn load_rejects_wrong_version() {
    let e = load_fixture("wrong_version.zdc").unwrap_err();
    assert_names_file(&e, "wrong_version.zdc");
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_wrong_tag() {
    let e = load_fixture("wrong_tag.zdc").unwrap_err();
    assert_names_file(&e, "wrong_tag.zdc");
    assert!(
        matches!(
            e,
            Error::TagMismatch {
                expected: TAG,
                found: OTHER_TAG,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_hostile_payload_length_without_allocating() {
    let e = load_fixture("hostile_payload_len.zdc").unwrap_err();
    assert_names_file(&e, "hostile_payload_len.zdc");
    assert!(
        matches!(
            e,
            Error::Corrupt {
                offset: 24,
                kind: CorruptKind::BadLength { len: u64::MAX },
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_payload_length_past_end_of_file_as_truncated() {
    let e = load_fixture("payload_len_past_eof.zdc").unwrap_err();
    let (needed, available) = (64 + (1u64 << 40), valid_len());
    assert!(
        matches!(
            e,
            Error::Corrupt {
                offset: 64,
                kind: CorruptKind::Truncated { needed: n, available: a },
                ..
            } if n == needed && a == available
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_truncated_payload() {
    let e = load_fixture("truncated.zdc").unwrap_err();
    assert_names_file(&e, "truncated.zdc");
    let (needed, available) = (valid_len(), valid_len() - 7);
    assert!(
        matches!(
            e,
            Error::Corrupt {
                offset: 64,
                kind: CorruptKind::Truncated { needed: n, available: a },
                ..
            } if n == needed && a == available
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_trailing_garbage_after_the_payload() {
    let e = load_fixture("trailing_garbage.zdc").unwrap_err();
    assert_names_file(&e, "trailing_garbage.zdc");
    let (end, len) = (valid_len(), valid_len() + 16);
    assert!(
        matches!(
            e,
            Error::Corrupt {
                offset,
                kind: CorruptKind::BadLength { len: l },
                ..
            } if offset == end && l == len
        ),
        "{e:?}"
    );
}

#[test]
fn load_rejects_flipped_payload_byte_with_payload_checksum_mismatch() {
    let e = load_fixture("flipped_payload_byte.zdc").unwrap_err();
    assert_names_file(&e, "flipped_payload_byte.zdc");
    assert!(
        matches!(e, Error::ChecksumMismatch { offset: 64, .. }),
        "{e:?}"
    );
    // The raw loader checks the payload CRC too.
    let dir = FsDirectory::new(fixture_dir()).unwrap();
    assert!(matches!(
        CheckpointBytes::load(&dir, "flipped_payload_byte.zdc", TAG),
        Err(Error::ChecksumMismatch { offset: 64, .. })
    ));
}

#[test]
fn load_rejects_crc_valid_payload_that_fails_archive_validation() {
    let e = load_fixture("invalid_archive.zdc").unwrap_err();
    assert_names_file(&e, "invalid_archive.zdc");
    assert!(matches!(e, Error::Validation { .. }), "{e:?}");
    // As opaque bytes the same file is fine: its envelope is intact.
    let dir = FsDirectory::new(fixture_dir()).unwrap();
    assert!(CheckpointBytes::load(&dir, "invalid_archive.zdc", TAG).is_ok());
}

/// Loads `bytes` as a checkpoint on the memory backend, typed and raw.
fn load_both(bytes: &[u8]) -> (Result<(), Error>, Result<(), Error>) {
    let dir = MemoryDirectory::new();
    let mut f = dir.create("c").unwrap();
    f.write_all(bytes).unwrap();
    drop(f);
    let typed = Checkpoint::<State>::load(&dir, "c", TAG).map(|c| {
        // Touch everything, as a reader would.
        let _ = c
            .pairs
            .iter()
            .fold(0u64, |s, p| s.wrapping_add(p.0.to_native()));
        let _ = c.names.iter().fold(0u64, |s, (k, v)| {
            s.wrapping_add(k.as_str().len() as u64)
                .wrapping_add(v.to_native())
        });
        let _ = c.label.as_str().chars().count();
    });
    let raw = CheckpointBytes::load(&dir, "c", TAG).map(|_| ());
    (typed, raw)
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let valid = valid_file();
    let mut checked = 0;
    for offset in 0..valid.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut f = valid.clone();
            f[offset] ^= mask;
            let (typed, raw) = load_both(&f);
            let e = typed.expect_err(&format!("flip {mask:#x} at {offset} accepted"));
            assert!(raw.is_err(), "raw load accepted flip at {offset}");
            if offset >= HEADER {
                assert!(
                    matches!(e, Error::ChecksumMismatch { offset: 64, .. }),
                    "{offset}: {e:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, valid.len() * 3);
}

#[test]
fn every_truncation_is_rejected() {
    let valid = valid_file();
    for len in 0..valid.len() {
        let (typed, raw) = load_both(&valid[..len]);
        assert!(
            matches!(
                typed,
                Err(Error::Corrupt {
                    kind: CorruptKind::Truncated { .. },
                    ..
                })
            ),
            "{len}: {typed:?}"
        );
        assert!(raw.is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Garbage whose CRCs are all correct reaches rkyv's validator, which
    /// must reject it (or accept a valid archive) without panicking.
    #[test]
    fn crc_valid_garbage_payloads_are_validated_never_trusted(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut f = valid_file();
        let payload_len = f.len() - HEADER;
        for (at, byte) in edits {
            let i = HEADER + at.index(payload_len);
            f[i] = byte;
        }
        let f = reseal_payload(f);
        let (typed, raw) = load_both(&f);
        prop_assert!(raw.is_ok(), "envelope is intact: {:?}", raw);
        if let Err(e) = typed {
            prop_assert!(matches!(e, Error::Validation { .. }), "{:?}", e);
        }
    }

    /// Arbitrary bytes, with or without a plausible header, never panic.
    #[test]
    fn arbitrary_bytes_are_rejected_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        keep_header in any::<bool>(),
    ) {
        let f = if keep_header {
            let mut f = valid_file()[..HEADER].to_vec();
            f.extend_from_slice(&bytes);
            f[24..32].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            reseal_payload(f)
        } else {
            bytes
        };
        let (typed, _raw) = load_both(&f);
        if let Err(e) = typed {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
