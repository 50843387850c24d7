//! Writing checkpoints: serialize, frame, and publish under the final name
//! with exactly one file sync and one directory sync.

use rkyv::api::high::HighSerializer;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{rancor, Archive, Serialize};

use super::format::{PayloadDigest, HEADER_SIZE_BYTES};
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
        // Serialized after room for the header, so positions in the
        // archive are file offsets, exactly as rkyv lays it out at offset 64
        // (a multiple of every alignment an archive uses): the payload bytes
        // are what `rkyv::to_bytes` produces.
        let mut buf = AlignedVec::<16>::new();
        buf.extend_from_slice(&[0u8; HEADER_SIZE_BYTES]);
        let buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buf).map_err(|e| {
            Error::InvalidArgument {
                name: "value",
                reason: format!("rkyv could not serialize it for `{path}`: {e}"),
            }
        })?;
        publish(dir, path, tag, last_entry, &buf[HEADER_SIZE_BYTES..])
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
        publish(dir, path, tag, last_entry, payload)
    }
}

/// Bytes of payload handled at a time: each piece is taken into the CRC and
/// copied to the file while it is still in the CPU's cache, and its
/// write-back starts while the next pieces are handled, so the one file sync
/// finds little left to write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Publishes the checkpoint file for `payload` at `path` with the
/// directory's atomic write ([`Directory::atomic_write_with`]): the payload
/// in pieces after the header's room, each piece's write-back started, then
/// the header, which carries the payload's CRC; then one file sync, the
/// rename and one directory sync.
fn publish(
    dir: &dyn Directory,
    path: &str,
    tag: u64,
    last_entry: Option<u64>,
    payload: &[u8],
) -> Result<()> {
    // IMPORTANT: the directory's atomic write: a unique temporary file,
    // synced before the rename, the folder synced after it, one writer of
    // the folder at a time, leftovers of killed writers removed, the
    // temporary file removed if anything here fails.
    dir.atomic_write_with(path, &mut |file| {
        let mut digest = PayloadDigest::default();
        let mut offset = HEADER_SIZE_BYTES as u64;
        for chunk in payload.chunks(WRITE_CHUNK_BYTES) {
            digest.update(chunk);
            file.write_at(offset, chunk)?;
            file.start_writeback(offset, chunk.len() as u64)?;
            offset += chunk.len() as u64;
        }
        file.write_at(0, &digest.header(tag, last_entry).encode())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::format::Header;
    use crate::MemoryDirectory;

    /// The file for `payload`, header and payload built in one piece.
    fn one_piece(tag: u64, last_entry: Option<u64>, payload: &[u8]) -> Vec<u8> {
        let mut file = Header::for_payload(tag, last_entry, payload)
            .encode()
            .to_vec();
        file.extend_from_slice(payload);
        file
    }

    #[test]
    fn payloads_written_in_pieces_give_the_file_of_one_piece() {
        let dir = MemoryDirectory::new();
        let c = WRITE_CHUNK_BYTES;
        for len in [0, 1, c - 1, c, c + 1, 3 * c + 777] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
            let before = dir.op_count();
            CheckpointBytes::write(&dir, "b.zdc", 3, Some(len as u64), &payload).unwrap();
            let file = dir.read("b.zdc").unwrap();
            assert!(
                file == one_piece(3, Some(len as u64), &payload),
                "{len} bytes"
            );
            // Create, one write per piece and the header, sync, rename, sync.
            assert_eq!(dir.op_count() - before, 5 + len.div_ceil(c) as u64, "{len}");
        }
        // 3.2 MB of archive: the serialized value goes the same way.
        let pairs: Vec<(u64, u64)> = (0..200_000u64).map(|i| (i, i ^ 0x5555)).collect();
        Checkpoint::write(&dir, "p.zdc", 5, None, &pairs).unwrap();
        let payload = rkyv::to_bytes::<rancor::Error>(&pairs).unwrap();
        assert!(payload.len() > 3 * c);
        assert!(dir.read("p.zdc").unwrap() == one_piece(5, None, &payload));
    }
}
