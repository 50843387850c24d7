//! The bytes of a checkpoint file: every constant, the header's encoding and
//! decoding, the envelope checks, and the file-name grammar.
//!
//! `FORMAT.md` ("Checkpoint files") describes the same layout in prose; the
//! two must agree. All integers are little-endian.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"ZDURCKPT"
//!      8     4  format version   1
//!     12     4  flags            bit 0: `last entry` is present; others zero
//!     16     8  last entry       id of the last WAL entry applied (0 if absent)
//!     24     8  payload length   bytes of payload after the header
//!     32     4  payload align    16
//!     36     4  payload CRC      CRC-32 (IEEE) of the payload
//!     40     8  tag              caller's type/schema tag
//!     48    12  reserved         zero
//!     60     4  header CRC       CRC-32 (IEEE) of bytes 0..60
//!     64     …  payload          exactly `payload length` bytes, then EOF
//! ```

use std::ops::Range;

use crate::error::{CorruptKind, Error, Result};
use crate::header::{checked_header, HeaderSpec};
use crate::le::{put_u32, put_u64, u32_at, u64_at};

/// The first eight bytes of every checkpoint file.
pub(crate) const MAGIC: [u8; 8] = *b"ZDURCKPT";
/// The format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the fixed header; the payload starts here.
pub(crate) const HEADER_SIZE_BYTES: usize = 64;
/// Alignment of the payload within the file (and so within a 16-byte aligned
/// mapping): what rkyv archives need to be read in place.
pub(crate) const PAYLOAD_ALIGN_BYTES: u32 = 16;

/// Flag bit: the `last entry` field holds a value.
const FLAG_HAS_LAST_ENTRY: u32 = 1;
/// Every flag bit this version knows.
const FLAGS_KNOWN: u32 = FLAG_HAS_LAST_ENTRY;

const OFFSET_VERSION: usize = 8;
const OFFSET_FLAGS: usize = 12;
const OFFSET_LAST_ENTRY: usize = 16;
const OFFSET_PAYLOAD_LEN: usize = 24;
const OFFSET_PAYLOAD_ALIGN: usize = 32;
const OFFSET_PAYLOAD_CRC: usize = 36;
const OFFSET_TAG: usize = 40;
const OFFSET_RESERVED: usize = 48;
const OFFSET_HEADER_CRC: usize = 60;

/// The largest payload length that can be addressed at all: anything above is
/// hostile, whatever the file's size.
const PAYLOAD_LEN_MAX_BYTES: u64 = (isize::MAX as u64) - HEADER_SIZE_BYTES as u64;

/// The decoded fixed header of a checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Id of the last WAL entry the payload includes, if any.
    pub(crate) last_entry: Option<u64>,
    /// Bytes of payload after the header.
    pub(crate) payload_len: u64,
    /// CRC-32 of the payload.
    pub(crate) payload_crc: u32,
    /// The caller's type/schema tag.
    pub(crate) tag: u64,
}

/// The payload's length and CRC, taken a piece at a time, in order, while
/// the payload is produced or written; [`PayloadDigest::header`] then gives
/// the header describing it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PayloadDigest {
    crc: crc32fast::Hasher,
    len: u64,
}

impl PayloadDigest {
    /// Takes in the next `bytes` of the payload.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The header describing the payload taken in so far.
    pub(crate) fn header(self, tag: u64, last_entry: Option<u64>) -> Header {
        Header {
            last_entry,
            payload_len: self.len,
            payload_crc: self.crc.finalize(),
            tag,
        }
    }
}

impl Header {
    /// The header describing `payload`, taken in one piece.
    #[cfg(test)]
    pub(crate) fn for_payload(tag: u64, last_entry: Option<u64>, payload: &[u8]) -> Header {
        let mut digest = PayloadDigest::default();
        digest.update(payload);
        digest.header(tag, last_entry)
    }

    /// The 64 header bytes. Reserved bytes, and `last entry` when absent, are
    /// zero, so equal headers encode to equal bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_SIZE_BYTES] {
        let mut b = [0u8; HEADER_SIZE_BYTES];
        b[..OFFSET_VERSION].copy_from_slice(&MAGIC);
        put_u32(&mut b, OFFSET_VERSION, FORMAT_VERSION);
        let flags = if self.last_entry.is_some() {
            FLAG_HAS_LAST_ENTRY
        } else {
            0
        };
        put_u32(&mut b, OFFSET_FLAGS, flags);
        put_u64(&mut b, OFFSET_LAST_ENTRY, self.last_entry.unwrap_or(0));
        put_u64(&mut b, OFFSET_PAYLOAD_LEN, self.payload_len);
        put_u32(&mut b, OFFSET_PAYLOAD_ALIGN, PAYLOAD_ALIGN_BYTES);
        put_u32(&mut b, OFFSET_PAYLOAD_CRC, self.payload_crc);
        put_u64(&mut b, OFFSET_TAG, self.tag);
        let crc = crc32fast::hash(&b[..OFFSET_HEADER_CRC]);
        put_u32(&mut b, OFFSET_HEADER_CRC, crc);
        b
    }

    /// Decodes and checks the header at the start of `file` (the whole file
    /// or at least its first 64 bytes): length, magic, version, header CRC,
    /// then every field's range. Does not look at the payload.
    pub(crate) fn decode(file: &[u8], path: &str) -> Result<Header> {
        let b = checked_header(
            file,
            path,
            &HeaderSpec {
                len: HEADER_SIZE_BYTES,
                magic: &MAGIC,
                version_at: OFFSET_VERSION,
                version: FORMAT_VERSION,
                crc_at: OFFSET_HEADER_CRC,
            },
        )?;
        let bad = |offset: usize, what: &'static str| {
            Error::corrupt(path, offset as u64, CorruptKind::BadHeader(what))
        };
        let flags = u32_at(b, OFFSET_FLAGS);
        if flags & !FLAGS_KNOWN != 0 {
            return Err(bad(OFFSET_FLAGS, "unknown flag bits"));
        }
        let last_entry = u64_at(b, OFFSET_LAST_ENTRY);
        let last_entry = if flags & FLAG_HAS_LAST_ENTRY != 0 {
            Some(last_entry)
        } else if last_entry == 0 {
            None
        } else {
            return Err(bad(OFFSET_LAST_ENTRY, "last entry set without its flag"));
        };
        if u32_at(b, OFFSET_PAYLOAD_ALIGN) != PAYLOAD_ALIGN_BYTES {
            return Err(bad(OFFSET_PAYLOAD_ALIGN, "payload alignment is not 16"));
        }
        if b[OFFSET_RESERVED..OFFSET_HEADER_CRC]
            .iter()
            .any(|&x| x != 0)
        {
            return Err(bad(OFFSET_RESERVED, "reserved bytes are not zero"));
        }
        Ok(Header {
            last_entry,
            payload_len: u64_at(b, OFFSET_PAYLOAD_LEN),
            payload_crc: u32_at(b, OFFSET_PAYLOAD_CRC),
            tag: u64_at(b, OFFSET_TAG),
        })
    }
}

/// Checks a whole checkpoint file held in `file` against the expected `tag`:
/// the header ([`Header::decode`]), the tag, the payload length against the
/// file's length (never trusting the header's length for anything else), and
/// the payload CRC. Returns the header and the payload's range in `file`.
///
/// Errors, in the order checked: `Corrupt`/`Truncated` (shorter than a
/// header), `Corrupt`/`BadMagic`, `UnsupportedVersion`, `ChecksumMismatch` at
/// offset 0 (header), `Corrupt`/`BadHeader`, `TagMismatch`,
/// `Corrupt`/`BadLength` (a length no file can have) or `Corrupt`/`Truncated`
/// (payload cut short), `Corrupt`/`BadLength` carrying the file length (bytes
/// after the payload), `ChecksumMismatch` at offset 64 (payload).
pub(crate) fn check_envelope(file: &[u8], path: &str, tag: u64) -> Result<(Header, Range<usize>)> {
    let header = Header::decode(file, path)?;
    if header.tag != tag {
        return Err(Error::TagMismatch {
            path: path.into(),
            expected: tag,
            found: header.tag,
        });
    }
    let file_len = file.len() as u64;
    let start = HEADER_SIZE_BYTES as u64;
    if header.payload_len > PAYLOAD_LEN_MAX_BYTES {
        return Err(Error::corrupt(
            path,
            OFFSET_PAYLOAD_LEN as u64,
            CorruptKind::BadLength {
                len: header.payload_len,
            },
        ));
    }
    // Cannot overflow: payload_len <= isize::MAX - 64.
    let end = start + header.payload_len;
    if end > file_len {
        return Err(Error::corrupt(
            path,
            start,
            CorruptKind::Truncated {
                needed: end,
                available: file_len,
            },
        ));
    }
    if end < file_len {
        // IMPORTANT: the archive root sits at the end of the payload, so
        // nothing may follow it; trailing bytes mean the file is not what
        // the writer produced.
        return Err(Error::corrupt(
            path,
            end,
            CorruptKind::BadLength { len: file_len },
        ));
    }
    // Both bounds are now within `file`, whose length is a usize.
    let range = HEADER_SIZE_BYTES..end as usize;
    let actual = crc32fast::hash(&file[range.clone()]);
    if actual != header.payload_crc {
        return Err(Error::ChecksumMismatch {
            path: path.into(),
            offset: start,
            expected: header.payload_crc,
            actual,
        });
    }
    Ok((header, range))
}

const FILE_NAME_PREFIX: &str = "checkpoint-";
const FILE_NAME_SUFFIX: &str = ".zdc";
const FILE_NAME_NO_ENTRY: &str = "none";
const FILE_NAME_DIGITS: usize = 20;

/// The name of a checkpoint file, which records the last WAL entry the
/// checkpoint includes: `checkpoint-{last_entry:020}.zdc`, or
/// `checkpoint-none.zdc` for a checkpoint taken before any entry.
///
/// Names order like their checkpoints: by last entry, with "none" oldest.
/// [`CheckpointName::parse`] and [`CheckpointName::file_name`] are the one
/// pair of functions that define the grammar; every other name (including a
/// checkpoint's temporary `….zdc.zdtmp-…` while it is written) is not a
/// checkpoint.
///
/// ```
/// use zerodur::CheckpointName;
///
/// let name = CheckpointName::new(Some(42));
/// assert_eq!(name.file_name(), "checkpoint-00000000000000000042.zdc");
/// assert_eq!(CheckpointName::parse(&name.file_name()), Some(name));
/// assert_eq!(CheckpointName::new(None).file_name(), "checkpoint-none.zdc");
/// assert!(CheckpointName::new(None) < CheckpointName::new(Some(0)));
/// assert_eq!(CheckpointName::parse("checkpoint-42.zdc"), None);
/// assert_eq!(name.path_in("state"), "state/checkpoint-00000000000000000042.zdc");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointName {
    last_entry: Option<u64>,
}

impl CheckpointName {
    /// The name of a checkpoint whose last applied entry is `last_entry`.
    pub fn new(last_entry: Option<u64>) -> CheckpointName {
        CheckpointName { last_entry }
    }

    /// The last WAL entry the named checkpoint includes, if any.
    pub fn last_entry(&self) -> Option<u64> {
        self.last_entry
    }

    /// Parses a file name (not a path). `None` for anything that does not
    /// follow the grammar exactly: 20 ASCII digits that fit a `u64`, or
    /// `none`, between `checkpoint-` and `.zdc`.
    pub fn parse(file_name: &str) -> Option<CheckpointName> {
        let stem = file_name
            .strip_prefix(FILE_NAME_PREFIX)?
            .strip_suffix(FILE_NAME_SUFFIX)?;
        if stem == FILE_NAME_NO_ENTRY {
            return Some(CheckpointName { last_entry: None });
        }
        if stem.len() != FILE_NAME_DIGITS || !stem.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let id = stem.parse::<u64>().ok()?;
        Some(CheckpointName {
            last_entry: Some(id),
        })
    }

    /// The file name.
    pub fn file_name(&self) -> String {
        match self.last_entry {
            Some(id) => format!("{FILE_NAME_PREFIX}{id:020}{FILE_NAME_SUFFIX}"),
            None => format!("{FILE_NAME_PREFIX}{FILE_NAME_NO_ENTRY}{FILE_NAME_SUFFIX}"),
        }
    }

    /// The path of this checkpoint in directory `folder` (`""` for the root).
    pub fn path_in(&self, folder: &str) -> String {
        crate::directory::path::join(folder, &self.file_name())
    }
}

impl std::fmt::Display for CheckpointName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tag: u64, last: Option<u64>, payload: &[u8]) -> Vec<u8> {
        let mut f = Header::for_payload(tag, last, payload).encode().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn header_round_trips_with_and_without_last_entry() {
        for last in [None, Some(0), Some(7), Some(u64::MAX)] {
            let h = Header::for_payload(9, last, b"payload");
            assert_eq!(Header::decode(&h.encode(), "c").unwrap(), h);
        }
    }

    #[test]
    fn a_digest_taken_in_pieces_gives_the_header_of_the_whole() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = Header::for_payload(4, Some(8), &payload);
        assert_eq!(whole.payload_crc, crc32fast::hash(&payload));
        for piece in [1, 16, 333, 4096, 10_000] {
            let mut digest = PayloadDigest::default();
            for chunk in payload.chunks(piece) {
                digest.update(chunk);
            }
            assert_eq!(digest.header(4, Some(8)), whole, "pieces of {piece}");
        }
        let empty = PayloadDigest::default().header(1, None);
        assert_eq!(empty, Header::for_payload(1, None, b""));
        assert_eq!((empty.payload_len, empty.payload_crc), (0, 0));
    }

    #[test]
    fn envelope_returns_the_payload_range() {
        let f = file(3, Some(5), &[7u8; 33]);
        let (h, r) = check_envelope(&f, "c", 3).unwrap();
        assert_eq!(r, 64..97);
        assert_eq!(h.last_entry, Some(5));
    }

    #[test]
    fn envelope_rejects_each_header_field_out_of_range() {
        // Re-seal the header CRC after each edit so the field check is hit.
        let reseal = |f: &mut Vec<u8>| {
            let crc = crc32fast::hash(&f[..OFFSET_HEADER_CRC]);
            put_u32(f, OFFSET_HEADER_CRC, crc);
        };
        let good = file(1, None, b"abc");
        let cases: [(usize, u8, &str); 4] = [
            (OFFSET_FLAGS, 0x02, "unknown flag bits"),
            (OFFSET_LAST_ENTRY, 0x01, "last entry set without its flag"),
            (OFFSET_PAYLOAD_ALIGN, 0x08, "payload alignment is not 16"),
            (OFFSET_RESERVED + 5, 0x01, "reserved bytes are not zero"),
        ];
        for (at, x, what) in cases {
            let mut f = good.clone();
            f[at] ^= x;
            reseal(&mut f);
            match check_envelope(&f, "c", 1) {
                Err(Error::Corrupt {
                    kind: CorruptKind::BadHeader(w),
                    ..
                }) => assert_eq!(w, what),
                other => panic!("offset {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_round_trip_and_reject_near_misses() {
        for last in [None, Some(0), Some(1), Some(u64::MAX)] {
            let n = CheckpointName::new(last);
            assert_eq!(CheckpointName::parse(&n.file_name()), Some(n));
        }
        for bad in [
            "checkpoint-99999999999999999999.zdc", // > u64::MAX
            "checkpoint-0000000000000000001.zdc",  // 19 digits
            "checkpoint-+0000000000000000001.zdc",
            "checkpoint-00000000000000000001.zdc.tmp",
            "checkpoint-None.zdc",
            "checkpoint-00000000000000000001.ZDC",
            "xcheckpoint-00000000000000000001.zdc",
            "checkpoint-.zdc",
        ] {
            assert_eq!(CheckpointName::parse(bad), None, "{bad}");
        }
        let mut names: Vec<_> = [Some(10), None, Some(2)]
            .into_iter()
            .map(CheckpointName::new)
            .collect();
        names.sort();
        assert_eq!(
            names.iter().map(|n| n.last_entry()).collect::<Vec<_>>(),
            [None, Some(2), Some(10)]
        );
    }
}
