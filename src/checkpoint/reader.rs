//! Loading checkpoints: map the file read-only, check the envelope (header
//! CRC, magic, version, tag, length, payload CRC), validate the archive once,
//! then read it in place.

use std::fmt;
use std::ops::{Deref, Range};

use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::{rancor, Archive, Deserialize};

use super::format::{check_envelope, CheckpointName, Header};
use crate::directory::{Directory, ReadMap};
use crate::error::{Error, Result};
use crate::mmap::ValidatedArchive;

/// A loaded, validated checkpoint of a `T`, read in place: derefs to
/// `rkyv::Archived<T>` straight from the file's read-only mapping (on
/// [`FsDirectory`](crate::FsDirectory)), with no deserialization and no copy.
///
/// Loading checks, in order, the header (length, magic, version, CRC, fields),
/// the tag, the payload length against the file, the payload CRC, and the
/// archive's structure (rkyv's checked `access`). Validation happens once, in
/// [`Checkpoint::load`]; each deref afterwards is O(1).
///
/// Writing ([`Checkpoint::write`]) and loading:
///
/// ```
/// use std::collections::BTreeMap;
/// use zerodur::{Checkpoint, MemoryDirectory};
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
/// struct State {
///     balances: BTreeMap<String, u64>,
///     applied: u64,
/// }
///
/// const STATE_V1: u64 = 0x5354_4154_4531; // any value naming the schema
///
/// let dir = MemoryDirectory::new();
/// let state = State { balances: BTreeMap::from([("alice".into(), 10)]), applied: 7 };
/// Checkpoint::write(&dir, "state.zdc", STATE_V1, Some(7), &state)?;
///
/// let loaded = Checkpoint::<State>::load(&dir, "state.zdc", STATE_V1)?;
/// assert_eq!(loaded.last_entry(), Some(7));
/// assert_eq!(loaded.applied, 7); // an `Archived<u64>`, read in place
/// assert_eq!(loaded.balances.get("alice").map(|b| b.to_native()), Some(10));
/// assert_eq!(loaded.deserialize()?, state);
///
/// // Another schema's tag is refused.
/// assert!(matches!(
///     Checkpoint::<State>::load(&dir, "state.zdc", STATE_V1 + 1),
///     Err(zerodur::Error::TagMismatch { .. })
/// ));
/// # Ok::<(), zerodur::Error>(())
/// ```
pub struct Checkpoint<T: Archive> {
    archive: ValidatedArchive<T::Archived>,
    header: Header,
    path: String,
}

impl<T> Checkpoint<T>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    /// Loads the checkpoint at `path`, which must carry `tag`.
    ///
    /// # Errors
    ///
    /// Every error names the file. [`Error::NotFound`] if there is no file;
    /// [`Error::Corrupt`] for a file too short for its header or its payload
    /// (`Truncated`), bad magic, an impossible header field or length, or
    /// bytes after the payload; [`Error::UnsupportedVersion`];
    /// [`Error::ChecksumMismatch`] for the header (offset 0) or the payload
    /// (offset 64); [`Error::TagMismatch`]; [`Error::Validation`] if the
    /// payload passes its CRC but is not a valid archive of a `T`.
    pub fn load(dir: &dyn Directory, path: &str, tag: u64) -> Result<Checkpoint<T>> {
        CheckpointBytes::load(dir, path, tag)?.into_archive()
    }
}

impl<T: Archive> Checkpoint<T> {
    /// The id of the last WAL entry the checkpoint includes, if any: replay
    /// resumes after it.
    pub fn last_entry(&self) -> Option<u64> {
        self.header.last_entry
    }

    /// The type/schema tag the checkpoint was written with.
    pub fn tag(&self) -> u64 {
        self.header.tag
    }

    /// Length of the payload (the archive) in bytes.
    pub fn payload_len(&self) -> u64 {
        self.header.payload_len
    }

    /// The path the checkpoint was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The archive's bytes, as validated.
    pub fn payload(&self) -> &[u8] {
        self.archive.bytes()
    }

    /// Deserializes an owned `T` (a full copy: prefer reading through the
    /// deref when you can).
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] if a deserializer hook of `T` fails.
    pub fn deserialize(&self) -> Result<T>
    where
        T::Archived: Deserialize<T, HighDeserializer<rancor::Error>>,
    {
        rkyv::deserialize::<T, rancor::Error>(self.archive.get()).map_err(|e| Error::Validation {
            path: self.path.clone().into(),
            message: format!("deserialization failed: {e}"),
        })
    }
}

impl<T: Archive> Deref for Checkpoint<T> {
    type Target = T::Archived;

    fn deref(&self) -> &T::Archived {
        self.archive.get()
    }
}

impl<T: Archive> fmt::Debug for Checkpoint<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tag", &self.header.tag)
            .field("last_entry", &self.header.last_entry)
            .field("payload_len", &self.header.payload_len)
            .finish()
    }
}

/// A loaded checkpoint whose payload is opaque bytes: for blobs, and for
/// callers who serialize themselves. Derefs to the payload, CRC-checked, in
/// place (a read-only mapping on [`FsDirectory`](crate::FsDirectory)). The
/// payload starts 16-byte aligned.
///
/// ```
/// use zerodur::{CheckpointBytes, MemoryDirectory};
///
/// let dir = MemoryDirectory::new();
/// CheckpointBytes::write(&dir, "blob.zdc", 1, None, b"opaque bytes")?;
/// let blob = CheckpointBytes::load(&dir, "blob.zdc", 1)?;
/// assert_eq!(&*blob, b"opaque bytes");
/// assert_eq!(blob.last_entry(), None);
/// # Ok::<(), zerodur::Error>(())
/// ```
pub struct CheckpointBytes {
    map: ReadMap,
    range: Range<usize>,
    header: Header,
    path: String,
}

impl CheckpointBytes {
    /// Loads the checkpoint at `path`, which must carry `tag`, and checks its
    /// envelope and payload CRC. Errors as for [`Checkpoint::load`], except
    /// that the payload is not validated as an archive.
    pub fn load(dir: &dyn Directory, path: &str, tag: u64) -> Result<CheckpointBytes> {
        let map = dir.map_read(path)?;
        let (header, range) = check_envelope(&map, path, tag)?;
        Ok(CheckpointBytes {
            map,
            range,
            header,
            path: path.to_owned(),
        })
    }

    /// Validates the payload as an archive of a `T`, keeping the mapping.
    fn into_archive<T>(self) -> Result<Checkpoint<T>>
    where
        T: Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        let CheckpointBytes {
            map,
            range,
            header,
            path,
        } = self;
        match ValidatedArchive::new(map, range) {
            Ok(archive) => Ok(Checkpoint {
                archive,
                header,
                path,
            }),
            Err(message) => Err(Error::Validation {
                path: path.into(),
                message,
            }),
        }
    }

    /// The id of the last WAL entry the checkpoint includes, if any.
    pub fn last_entry(&self) -> Option<u64> {
        self.header.last_entry
    }

    /// The type/schema tag the checkpoint was written with.
    pub fn tag(&self) -> u64 {
        self.header.tag
    }

    /// Length of the payload in bytes.
    pub fn payload_len(&self) -> u64 {
        self.header.payload_len
    }

    /// The path the checkpoint was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Deref for CheckpointBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

impl AsRef<[u8]> for CheckpointBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for CheckpointBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointBytes")
            .field("path", &self.path)
            .field("tag", &self.header.tag)
            .field("last_entry", &self.header.last_entry)
            .field("payload_len", &self.header.payload_len)
            .finish()
    }
}

/// The checkpoints in directory `folder` (`""` for the root), newest first:
/// every file whose name follows the [`CheckpointName`] grammar, ordered by
/// last entry, descending, with `checkpoint-none.zdc` last. Temporary files
/// and other names are skipped. Nothing is opened or validated: try
/// [`Checkpoint::load`] on each in turn and fall back to the next when one
/// fails.
///
/// ```
/// use zerodur::{list_checkpoints, CheckpointBytes, CheckpointName, MemoryDirectory};
///
/// let dir = MemoryDirectory::new();
/// for last in [Some(3), None, Some(10)] {
///     let path = CheckpointName::new(last).path_in("");
///     CheckpointBytes::write(&dir, &path, 1, last, b"state")?;
/// }
/// let newest_first: Vec<_> = list_checkpoints(&dir, "")?
///     .iter()
///     .map(|n| n.last_entry())
///     .collect();
/// assert_eq!(newest_first, [Some(10), Some(3), None]);
/// # Ok::<(), zerodur::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::NotFound`] if `folder` does not exist; an I/O failure listing it.
pub fn list_checkpoints(dir: &dyn Directory, folder: &str) -> Result<Vec<CheckpointName>> {
    let mut names: Vec<CheckpointName> = dir
        .list(folder)?
        .iter()
        .filter_map(|n| CheckpointName::parse(n))
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}
