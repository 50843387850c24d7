//! Writing checkpoints: serialize, frame, and publish under the final name
//! with exactly one file sync and one directory sync.

use rkyv::api::high::HighSerializer;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{rancor, Archive, Serialize};

use super::format::{Header, HEADER_SIZE_BYTES};
use super::reader::{Checkpoint, CheckpointBytes};
use crate::directory::{path, Directory};
use crate::error::{Error, Result};

impl<T: Archive> Checkpoint<T> {
    /// Serializes `value` with rkyv and publishes it durably at `path`, with
    /// the caller's type/schema `tag` and the id of the last WAL entry the
    /// value includes (`None` before any).
    ///
    /// The file is written under a temporary name, synced once, renamed over
    /// `path`, and the parent directory is synced once: when this returns
    /// `Ok`, `path` holds exactly this checkpoint and survives a power loss;
    /// if it fails or the power goes first, `path` holds its previous content
    /// (or nothing) and a leftover temporary file may remain, which
    /// [`list_checkpoints`](crate::list_checkpoints) ignores and the next
    /// atomic write in that folder removes ([`Directory::atomic_write`]).
    ///
    /// **Deterministic**: the same value gives the same bytes. rkyv's output
    /// depends only on the value, and every padding byte is zero; but a
    /// `HashMap`'s iteration order differs between instances, so use ordered
    /// collections (`BTreeMap`, `BTreeSet`, sorted `Vec`s) in checkpointed
    /// state if you compare or deduplicate checkpoint files.
    ///
    /// ```
    /// use zerodur::{Checkpoint, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// let pairs: Vec<(u64, u64)> = (0..100).map(|i| (i, i * i)).collect();
    /// Checkpoint::write(&dir, "pairs.zdc", 0xA1, Some(99), &pairs)?;
    /// let loaded = Checkpoint::<Vec<(u64, u64)>>::load(&dir, "pairs.zdc", 0xA1)?;
    /// assert_eq!(loaded.len(), 100);
    /// assert_eq!(loaded[9].1, 81);
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] for a bad path, [`Error::InvalidArgument`] if
    /// rkyv cannot serialize `value`, [`Error::Io`] (or
    /// [`Error::NotFound`] for a missing parent directory) if a step fails.
    pub fn write(
        dir: &dyn Directory,
        path: &str,
        tag: u64,
        last_entry: Option<u64>,
        value: &T,
    ) -> Result<()>
    where
        T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
    {
        path::check_file(path)?;
        // Serialize after a zeroed header in the same buffer: one write, no
        // copy. The header is 64 bytes, a multiple of the payload alignment,
        // so the payload bytes are exactly what `rkyv::to_bytes` produces.
        let mut buf = AlignedVec::<16>::new();
        buf.extend_from_slice(&[0u8; HEADER_SIZE_BYTES]);
        let mut buf =
            rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buf).map_err(|e| {
                Error::InvalidArgument {
                    name: "value",
                    reason: format!("rkyv could not serialize it for `{path}`: {e}"),
                }
            })?;
        let header = Header::for_payload(tag, last_entry, &buf[HEADER_SIZE_BYTES..]);
        buf[..HEADER_SIZE_BYTES].copy_from_slice(&header.encode());
        publish(dir, path, &[&buf])
    }
}

impl CheckpointBytes {
    /// Publishes `payload`, as is, durably at `path`: the raw-bytes variant of
    /// [`Checkpoint::write`], for blobs and for callers who serialize
    /// themselves (bytes from `rkyv::to_bytes` give the same file as
    /// `Checkpoint::write` of the value, and load with
    /// [`Checkpoint::load`]). Same protocol, durability and errors.
    ///
    /// ```
    /// use zerodur::{Checkpoint, CheckpointBytes, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&vec![1u32, 2, 3]).unwrap();
    /// CheckpointBytes::write(&dir, "v.zdc", 5, Some(1), &bytes)?;
    /// assert_eq!(Checkpoint::<Vec<u32>>::load(&dir, "v.zdc", 5)?.len(), 3);
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn write(
        dir: &dyn Directory,
        path: &str,
        tag: u64,
        last_entry: Option<u64>,
        payload: &[u8],
    ) -> Result<()> {
        path::check_file(path)?;
        let header = Header::for_payload(tag, last_entry, payload).encode();
        publish(dir, path, &[&header, payload])
    }
}

/// Writes `parts` to a temporary file, syncs it once, renames it to `path`
/// and syncs the parent directory once ([`Directory::atomic_write_parts`]:
/// the content in parts, so a large payload is never copied behind its
/// header).
fn publish(dir: &dyn Directory, path: &str, parts: &[&[u8]]) -> Result<()> {
    // IMPORTANT: the directory's atomic write: a unique temporary file,
    // synced before the rename, the folder synced after it, one writer of
    // the folder at a time, leftovers of killed writers removed.
    dir.atomic_write_parts(path, parts)
}
