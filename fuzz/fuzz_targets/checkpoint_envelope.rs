//! A valid checkpoint of a small rkyv type, written through the public API
//! (`Checkpoint::write`) from fuzzer-chosen data, then mutated (bit flips,
//! truncation, extension, overwritten ranges, header fields set, CRCs
//! recomputed) and loaded with `Checkpoint::load` and
//! `CheckpointBytes::load`.
//!
//! Invariants, against an independent decoder of `FORMAT.md` ("Checkpoint
//! files", "Load checks"):
//! - loading never panics, and never allocates in proportion to a length
//!   the file claims;
//! - the outcome is exactly the one the load-check table names: the first
//!   failing check's error (variant and offset), or success;
//! - with no byte changed the load succeeds and gives back the value, last
//!   entry and tag written;
//! - a successful load has both CRCs matching the bytes as they are (the two
//!   CRCs cover every byte of the file: header bytes 0..60, the payload, and
//!   the header CRC itself), its last entry is the header's, and its payload
//!   is the file's bytes from 64 on; if those bytes are the original
//!   payload, the value is the original. A payload that differs from the
//!   original and still matches its CRC is a forged CRC: allowed only when
//!   the harness recomputed a CRC or the fuzzer wrote four or more bytes of
//!   its own (it can solve a CRC comparison), otherwise a CRC32 collision of
//!   a flip/truncation/extension, which the harness reports.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zerodur::{
    Checkpoint, CheckpointBytes, CheckpointName, CorruptKind, Directory, Error, MemoryDirectory,
};
use zerodur_fuzz::peak_heap_during;

#[derive(Arbitrary, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct State {
    applied: u64,
    name: String,
    values: Vec<u32>,
    pairs: Vec<(u16, i64)>,
    note: Option<String>,
    flag: bool,
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    /// Bits of `mask` flipped in byte `at` (modulo the length).
    Flip { at: u32, mask: u8 },
    /// The file cut to `len` bytes (modulo the length).
    Truncate { len: u32 },
    /// `by` bytes of `fill` appended.
    Extend { by: u16, fill: u8 },
    /// Bytes from `at` (modulo the length + 1) replaced; may grow the file.
    Overwrite { at: u32, bytes: Vec<u8> },
    /// A little-endian header field (offset `at % 64`, rounded down to 4)
    /// set to `value` (its low 4 bytes if the field is a `u32`).
    SetField { at: u8, value: u64 },
    /// The payload CRC recomputed over bytes 64.. (header CRC left alone).
    FixPayloadCrc,
    /// The header CRC recomputed over bytes 0..60.
    FixHeaderCrc,
}

#[derive(Arbitrary, Debug)]
struct Input {
    value: State,
    last_entry: Option<u64>,
    tag: u64,
    /// Load with another tag than the one written.
    wrong_tag: bool,
    mutations: Vec<Mutation>,
}

const HEADER: usize = 64;
/// Header field offsets (FORMAT.md).
const FIELDS: [(usize, usize); 9] = [
    (0, 8),
    (8, 4),
    (12, 4),
    (16, 8),
    (24, 8),
    (32, 4),
    (36, 4),
    (40, 8),
    (60, 4),
];

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// What the load-check table says about `file` loaded with `tag`.
#[derive(Debug, PartialEq)]
enum Expect {
    /// `Corrupt { offset: 0, Truncated { needed: 64, available } }`.
    ShortHeader(u64),
    BadMagic,
    Version(u32),
    HeaderCrc,
    /// `Corrupt { offset, BadHeader(_) }`.
    BadHeader(u64),
    Tag(u64),
    /// `Corrupt { offset: 24, BadLength { len } }`.
    HugeLength(u64),
    /// `Corrupt { offset: 64, Truncated { needed, available } }`.
    ShortPayload(u64, u64),
    /// `Corrupt { offset: end of payload, BadLength { len: file length } }`.
    Trailing(u64, u64),
    PayloadCrc,
    /// The envelope checks pass: the last entry the header records.
    Valid(Option<u64>),
}

fn expect(file: &[u8], tag: u64) -> Expect {
    let len = file.len() as u64;
    if file.len() < HEADER {
        return Expect::ShortHeader(len);
    }
    if &file[0..8] != b"ZDURCKPT" {
        return Expect::BadMagic;
    }
    if u32_at(file, 8) != 1 {
        return Expect::Version(u32_at(file, 8));
    }
    if crc32fast::hash(&file[0..60]) != u32_at(file, 60) {
        return Expect::HeaderCrc;
    }
    let flags = u32_at(file, 12);
    if flags & !1 != 0 {
        return Expect::BadHeader(12);
    }
    let last = u64_at(file, 16);
    if flags & 1 == 0 && last != 0 {
        return Expect::BadHeader(16);
    }
    if u32_at(file, 32) != 16 {
        return Expect::BadHeader(32);
    }
    if file[48..60].iter().any(|&b| b != 0) {
        return Expect::BadHeader(48);
    }
    if u64_at(file, 40) != tag {
        return Expect::Tag(u64_at(file, 40));
    }
    let payload_len = u64_at(file, 24);
    if payload_len > isize::MAX as u64 - 64 {
        return Expect::HugeLength(payload_len);
    }
    let end = 64 + payload_len;
    if end > len {
        return Expect::ShortPayload(end, len);
    }
    if end < len {
        return Expect::Trailing(end, len);
    }
    if crc32fast::hash(&file[HEADER..]) != u32_at(file, 36) {
        return Expect::PayloadCrc;
    }
    Expect::Valid((flags & 1 != 0).then_some(last))
}

/// Whether `e` is the error `want` names, for the file at `path`.
fn matches_expected(e: &Error, want: &Expect, path: &str) -> bool {
    let named = e.to_string().contains(path);
    named
        && match (e, want) {
            (
                Error::Corrupt {
                    offset: 0,
                    kind:
                        CorruptKind::Truncated {
                            needed: 64,
                            available,
                        },
                    ..
                },
                Expect::ShortHeader(a),
            ) => available == a,
            (
                Error::Corrupt {
                    offset: 0,
                    kind: CorruptKind::BadMagic,
                    ..
                },
                Expect::BadMagic,
            ) => true,
            (
                Error::UnsupportedVersion {
                    found,
                    supported: 1,
                    ..
                },
                Expect::Version(v),
            ) => found == v,
            (Error::ChecksumMismatch { offset: 0, .. }, Expect::HeaderCrc) => true,
            (
                Error::Corrupt {
                    offset,
                    kind: CorruptKind::BadHeader(_),
                    ..
                },
                Expect::BadHeader(at),
            ) => offset == at,
            (Error::TagMismatch { found, .. }, Expect::Tag(t)) => found == t,
            (
                Error::Corrupt {
                    offset: 24,
                    kind: CorruptKind::BadLength { len },
                    ..
                },
                Expect::HugeLength(l),
            ) => len == l,
            (
                Error::Corrupt {
                    offset: 64,
                    kind: CorruptKind::Truncated { needed, available },
                    ..
                },
                Expect::ShortPayload(n, a),
            ) => needed == n && available == a,
            (
                Error::Corrupt {
                    offset,
                    kind: CorruptKind::BadLength { len },
                    ..
                },
                Expect::Trailing(end, l),
            ) => offset == end && len == l,
            (Error::ChecksumMismatch { offset: 64, .. }, Expect::PayloadCrc) => true,
            _ => false,
        }
}

/// Applies the mutations; returns whether a CRC was recomputed by the
/// harness and whether the fuzzer wrote four or more bytes of its own.
fn mutate(file: &mut Vec<u8>, mutations: &[Mutation]) -> (bool, bool) {
    let mut fixed = false;
    let mut wrote = false;
    for m in mutations.iter().take(8) {
        match m {
            Mutation::Flip { at, mask } => {
                if !file.is_empty() && *mask != 0 {
                    let at = *at as usize % file.len();
                    file[at] ^= mask;
                }
            }
            Mutation::Truncate { len } => {
                let len = *len as usize % (file.len() + 1);
                file.truncate(len);
            }
            Mutation::Extend { by, fill } => {
                file.resize(file.len() + usize::from(*by), *fill);
            }
            Mutation::Overwrite { at, bytes } => {
                let at = *at as usize % (file.len() + 1);
                let bytes = &bytes[..bytes.len().min(4096)];
                if file.len() < at + bytes.len() {
                    file.resize(at + bytes.len(), 0);
                }
                file[at..at + bytes.len()].copy_from_slice(bytes);
                wrote |= bytes.len() >= 4;
            }
            Mutation::SetField { at, value } => {
                let at = usize::from(*at) % HEADER;
                let (off, n) = *FIELDS
                    .iter()
                    .rev()
                    .find(|(o, _)| *o <= at)
                    .expect("offset 0 is a field");
                if file.len() >= off + n {
                    file[off..off + n].copy_from_slice(&value.to_le_bytes()[..n]);
                    wrote = true;
                }
            }
            Mutation::FixPayloadCrc => {
                if file.len() >= HEADER {
                    let crc = crc32fast::hash(&file[HEADER..]);
                    file[36..40].copy_from_slice(&crc.to_le_bytes());
                    fixed = true;
                }
            }
            Mutation::FixHeaderCrc => {
                if file.len() >= HEADER {
                    let crc = crc32fast::hash(&file[0..60]);
                    file[60..64].copy_from_slice(&crc.to_le_bytes());
                    fixed = true;
                }
            }
        }
    }
    (fixed, wrote)
}

fuzz_target!(|input: Input| {
    let dir = MemoryDirectory::new();
    let path = CheckpointName::new(input.last_entry).path_in("");
    Checkpoint::write(&dir, &path, input.tag, input.last_entry, &input.value)
        .expect("writing a checkpoint to a memory directory");
    let original = dir.read(&path).unwrap();
    // The writer's bytes are exactly the format's: header, then
    // `rkyv::to_bytes` of the value.
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&input.value).unwrap();
    assert_eq!(
        &original[HEADER..],
        &archive[..],
        "payload is not the archive"
    );
    assert_eq!(
        expect(&original, input.tag),
        Expect::Valid(input.last_entry),
        "the writer's header does not decode"
    );

    let mut file = original.clone();
    let (fixed, wrote) = mutate(&mut file, &input.mutations);
    let changed = file != original;
    dir.atomic_write(&path, &file).unwrap();

    let tag = if input.wrong_tag {
        input.tag ^ 0x5A5A_0000_0001
    } else {
        input.tag
    };
    let want = expect(&file, tag);
    let (typed, heap) = peak_heap_during(|| Checkpoint::<State>::load(&dir, &path, tag));
    assert!(
        heap <= 3 * file.len() + 64 * 1024,
        "loading a {}-byte checkpoint peaked at {heap} heap bytes",
        file.len()
    );
    let bytes = CheckpointBytes::load(&dir, &path, tag);

    if !changed && !input.wrong_tag {
        let c = typed.as_ref().expect("an unchanged checkpoint loads");
        assert_eq!(c.deserialize().unwrap(), input.value);
        assert_eq!(c.last_entry(), input.last_entry);
        assert_eq!(c.tag(), input.tag);
    }

    match (&want, &bytes) {
        (Expect::Valid(last), Ok(b)) => {
            assert_eq!(b.last_entry(), *last);
            assert_eq!(b.tag(), tag);
            assert_eq!(b.payload_len(), (file.len() - HEADER) as u64);
            assert!(**b == file[HEADER..], "CheckpointBytes is not the payload");
        }
        (Expect::Valid(_), Err(e)) => panic!("the envelope is valid, CheckpointBytes: {e:?}"),
        (_, Ok(_)) => panic!("CheckpointBytes loaded what should fail with {want:?}"),
        (_, Err(e)) => assert!(
            matches_expected(e, &want, &path),
            "CheckpointBytes: {e:?}, want {want:?}"
        ),
    }

    match (&want, typed) {
        (Expect::Valid(last), Ok(c)) => {
            assert_eq!(c.last_entry(), *last);
            assert_eq!(c.tag(), tag);
            assert!(
                c.payload() == &file[HEADER..],
                "the payload is not the file's"
            );
            if file[HEADER..] == original[HEADER..] {
                assert_eq!(
                    c.deserialize().unwrap(),
                    input.value,
                    "same payload, other value"
                );
            } else {
                // A payload other than the original that matches the CRC in
                // the header.
                assert!(
                    fixed || wrote,
                    "a flip, cut or extension of the payload passed its CRC"
                );
                // Whatever it holds, reading it is safe.
                let _ = c.deserialize();
            }
        }
        (Expect::Valid(_), Err(e)) => {
            // Only the archive check can fail now, and only on a payload
            // that is not the original (which validated).
            assert!(
                matches!(&e, Error::Validation { .. }) && e.to_string().contains(&path),
                "a valid envelope failed with {e:?}"
            );
            assert!(
                file[HEADER..] != original[HEADER..],
                "the original archive failed validation: {e:?}"
            );
        }
        (_, Ok(_)) => panic!("Checkpoint::load succeeded where {want:?} was due"),
        (_, Err(e)) => assert!(
            matches_expected(&e, &want, &path),
            "Checkpoint::load: {e:?}, want {want:?}"
        ),
    }
});
