//! The bytes of a record log: every constant, the file header, the frame
//! encoding, and the scan that finds where the valid records end.
//!
//! `FORMAT.md` ("Record log") describes the same layout in prose. All
//! integers are little-endian.
//!
//! ```text
//! file header (16 bytes)
//!   0  8  magic           b"ZDURRLOG"
//!   8  4  format version  1
//!  12  4  header CRC      CRC-32 (IEEE) of bytes 0..12
//! then frames, back to back, to the end of the file:
//!   0  4  length          payload bytes (u32)
//!   4  4  CRC             CRC-32 (IEEE) of the 4 length bytes, then the payload
//!   8  …  payload
//! ```

use super::RecordLogMode;
use crate::error::{CorruptKind, Error, Result};
use crate::header::{checked_header, HeaderSpec};

/// The first eight bytes of every record log.
const MAGIC: [u8; 8] = *b"ZDURRLOG";
/// The format version this build writes and reads.
const FORMAT_VERSION: u32 = 1;
/// Size of the file header; the first frame starts here.
pub(crate) const HEADER_SIZE_BYTES: usize = 16;
/// Size of a frame's header (length and CRC).
pub(crate) const FRAME_HEADER_SIZE_BYTES: usize = 8;
/// The default limit on a record's size, enforced at append.
pub(crate) const RECORD_SIZE_BYTES_MAX_DEFAULT: u32 = 16 << 20;

/// The 16-byte file header.
pub(crate) fn encode_header() -> [u8; HEADER_SIZE_BYTES] {
    let mut b = [0u8; HEADER_SIZE_BYTES];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks the file header at the start of `file`.
fn check_header(file: &[u8], path: &str) -> Result<()> {
    checked_header(
        file,
        path,
        &HeaderSpec {
            len: HEADER_SIZE_BYTES,
            magic: &MAGIC,
            version_at: 8,
            version: FORMAT_VERSION,
            crc_at: 12,
        },
    )
    .map(|_| ())
}

/// CRC of a frame: its length bytes, then its payload.
fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Appends the frame of `record` to `out`. The caller has checked that the
/// length fits in a `u32`.
pub(crate) fn encode_frame(record: &[u8], out: &mut Vec<u8>) {
    let len = (record.len() as u32).to_le_bytes();
    out.reserve(FRAME_HEADER_SIZE_BYTES + record.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&frame_crc(len, record).to_le_bytes());
    out.extend_from_slice(record);
}

/// The payload of the valid frame at `pos` and the offset after it, or why
/// there is none (without allocating, whatever the length field claims).
fn decode_frame(file: &[u8], pos: usize) -> Result<(&[u8], usize), BadFrame> {
    let rest = &file[pos..];
    let Some(head) = rest.get(..FRAME_HEADER_SIZE_BYTES) else {
        return Err(BadFrame::Incomplete);
    };
    let len = [head[0], head[1], head[2], head[3]];
    let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let n = u32::from_le_bytes(len) as usize;
    let Some(payload) = rest[FRAME_HEADER_SIZE_BYTES..].get(..n) else {
        return Err(BadFrame::Incomplete);
    };
    let actual = frame_crc(len, payload);
    if actual != stored {
        return Err(BadFrame::Checksum { stored, actual });
    }
    Ok((payload, pos + FRAME_HEADER_SIZE_BYTES + n))
}

enum BadFrame {
    /// The frame's header or payload runs past the end of the file.
    Incomplete,
    /// The frame's CRC does not match.
    Checksum { stored: u32, actual: u32 },
}

/// Whether the bytes at a bad frame are zero padding: a zeroed frame header
/// (or what is left of one), as a file extended but never written reads.
fn is_zeroed(rest: &[u8]) -> bool {
    let n = rest.len().min(FRAME_HEADER_SIZE_BYTES);
    rest[..n].iter().all(|&b| b == 0)
}

/// Where the valid records of a log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Number of valid records.
    pub(crate) count: u64,
    /// Offset just after the last valid record (the file header's end if
    /// there is none). Anything from here to the end of the file is a torn
    /// tail.
    pub(crate) end: usize,
}

/// Checks the header of `file` and its frames from the first on.
///
/// In [`RecordLogMode::BestEffort`] the first frame that is incomplete or
/// fails its CRC ends the log: everything from it on is a torn tail.
/// In [`RecordLogMode::Strict`] it is an error: `Corrupt`/`BadFrame` ("zero
/// padding") if the frame's header is zeros, wherever it is;
/// `Corrupt`/`TornTail` if the frame runs past the end of the file;
/// `ChecksumMismatch` if its CRC fails. A bad file
/// header is an error in both modes.
pub(crate) fn scan(file: &[u8], path: &str, mode: RecordLogMode) -> Result<Scan> {
    check_header(file, path)?;
    let mut pos = HEADER_SIZE_BYTES;
    let mut count = 0u64;
    while pos < file.len() {
        match decode_frame(file, pos) {
            Ok((_, next)) => {
                pos = next;
                count += 1;
            }
            Err(_) if mode == RecordLogMode::BestEffort => break,
            Err(_) if is_zeroed(&file[pos..]) => {
                return Err(Error::corrupt(
                    path,
                    pos as u64,
                    CorruptKind::BadFrame("zero padding"),
                ))
            }
            Err(BadFrame::Incomplete) => {
                return Err(Error::corrupt(path, pos as u64, CorruptKind::TornTail))
            }
            Err(BadFrame::Checksum { stored, actual }) => {
                return Err(Error::ChecksumMismatch {
                    path: path.into(),
                    offset: pos as u64,
                    expected: stored,
                    actual,
                })
            }
        }
    }
    Ok(Scan { count, end: pos })
}

/// The payload of the frame at `pos` in `file` and the offset after it, if
/// that frame is valid: for iterating frames that [`scan`] has validated.
pub(crate) fn next_frame(file: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    if pos >= file.len() {
        return None;
    }
    decode_frame(file, pos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(records: &[&[u8]]) -> Vec<u8> {
        let mut f = encode_header().to_vec();
        for r in records {
            encode_frame(r, &mut f);
        }
        f
    }

    #[test]
    fn scan_counts_frames_and_best_effort_stops_at_the_tail() {
        let mut f = log_of(&[b"a", b"", b"ccc"]);
        let whole = f.len();
        assert_eq!(
            scan(&f, "r", RecordLogMode::Strict).unwrap(),
            Scan {
                count: 3,
                end: whole
            }
        );
        f.extend_from_slice(&[9, 0, 0]);
        assert_eq!(
            scan(&f, "r", RecordLogMode::BestEffort).unwrap(),
            Scan {
                count: 3,
                end: whole
            }
        );
        let (first, next) = next_frame(&f, HEADER_SIZE_BYTES).unwrap();
        assert_eq!((first, next), (&b"a"[..], HEADER_SIZE_BYTES + 9));
        assert_eq!(next_frame(&f, whole), None);
    }

    #[test]
    fn strict_scan_names_what_is_wrong() {
        let good = log_of(&[b"abc"]);
        let at = good.len() as u64;
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 20]);
        let mut torn = good.clone();
        torn.extend_from_slice(&log_of(&[b"defgh"])[HEADER_SIZE_BYTES..][..10]);
        let mut flipped = log_of(&[b"abc", b"xyz"]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let hostile = {
            let mut f = good.clone();
            f.extend_from_slice(&u32::MAX.to_le_bytes());
            f.extend_from_slice(&[1; 12]);
            f
        };
        let strict = |f: &[u8]| scan(f, "r", RecordLogMode::Strict).unwrap_err();
        assert!(matches!(
            strict(&zeros),
            Error::Corrupt { offset, kind: CorruptKind::BadFrame("zero padding"), .. } if offset == at
        ));
        assert!(matches!(
            strict(&torn),
            Error::Corrupt { offset, kind: CorruptKind::TornTail, .. } if offset == at
        ));
        assert!(matches!(
            strict(&flipped),
            Error::ChecksumMismatch { offset, .. } if offset == at
        ));
        assert!(matches!(
            strict(&hostile),
            Error::Corrupt {
                kind: CorruptKind::TornTail,
                ..
            }
        ));
    }

    #[test]
    fn bad_file_header_is_an_error_in_both_modes() {
        for mode in [RecordLogMode::Strict, RecordLogMode::BestEffort] {
            assert!(matches!(
                scan(&[], "r", mode),
                Err(Error::Corrupt {
                    kind: CorruptKind::Truncated { .. },
                    ..
                })
            ));
            let mut f = log_of(&[]);
            f[0] ^= 1;
            assert!(matches!(
                scan(&f, "r", mode),
                Err(Error::Corrupt {
                    kind: CorruptKind::BadMagic,
                    ..
                })
            ));
            let mut f = log_of(&[]);
            f[8] = 2;
            assert!(matches!(
                scan(&f, "r", mode),
                Err(Error::UnsupportedVersion { found: 2, .. })
            ));
            let mut f = log_of(&[]);
            f[13] ^= 1;
            assert!(matches!(
                scan(&f, "r", mode),
                Err(Error::ChecksumMismatch { offset: 0, .. })
            ));
        }
    }
}
