//! The opening checks every zerodur file header shares (checkpoints and
//! record logs): long enough, right magic, supported version, header CRC.
//! Each format then checks its own fields.

use crate::error::{CorruptKind, Error, Result};
use crate::le::u32_at;

/// Where a header keeps what [`checked_header`] verifies.
pub(crate) struct HeaderSpec {
    /// Header length in bytes.
    pub(crate) len: usize,
    /// Magic bytes at offset 0.
    pub(crate) magic: &'static [u8],
    /// Offset of the little-endian `u32` format version.
    pub(crate) version_at: usize,
    /// The version this build reads.
    pub(crate) version: u32,
    /// Offset of the little-endian `u32` CRC32 of every byte before it.
    pub(crate) crc_at: usize,
}

/// Returns the header at the start of `file` once it is long enough and its
/// magic, version and CRC check out, in that order. The version comes before
/// the CRC: another version may place its CRC elsewhere, and "unsupported
/// version" is the useful answer then.
pub(crate) fn checked_header<'a>(
    file: &'a [u8],
    path: &str,
    spec: &HeaderSpec,
) -> Result<&'a [u8]> {
    let Some(b) = file.get(..spec.len) else {
        return Err(Error::corrupt(
            path,
            0,
            CorruptKind::Truncated {
                needed: spec.len as u64,
                available: file.len() as u64,
            },
        ));
    };
    if !b.starts_with(spec.magic) {
        return Err(Error::corrupt(path, 0, CorruptKind::BadMagic));
    }
    let version = u32_at(b, spec.version_at);
    if version != spec.version {
        return Err(Error::UnsupportedVersion {
            path: path.into(),
            found: version,
            supported: spec.version,
        });
    }
    let expected = u32_at(b, spec.crc_at);
    let actual = crc32fast::hash(&b[..spec.crc_at]);
    if expected != actual {
        return Err(Error::ChecksumMismatch {
            path: path.into(),
            offset: 0,
            expected,
            actual,
        });
    }
    Ok(b)
}
