//! Writing checkpoints: serialize straight into a temporary file a piece at
//! a time, frame, and publish under the final name with exactly one file
//! sync and one directory sync.

use std::fmt;

use rkyv::api::high::HighSerializer;
use rkyv::api::serialize_using;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::sharing::Share;
use rkyv::ser::{Positional, Serializer, Writer};
use rkyv::util::with_arena;
use rkyv::{rancor, Archive, Serialize};

use super::format::{PayloadDigest, HEADER_SIZE_BYTES};
use super::reader::{Checkpoint, CheckpointBytes};
use crate::directory::{path, AtomicFile, Directory};
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
    /// The value is serialized straight into the temporary file
    /// ([`PayloadWriter`]), a piece of 1 MiB at a time, each piece's
    /// write-back started while the rest is serialized: memory use does not
    /// grow with the value, and the one sync has little left to wait for.
    ///
    /// Generic code names the serializer with
    /// `T: for<'a, 'w> rkyv::Serialize<CheckpointSerializer<'a, 'w>>`
    /// ([`CheckpointSerializer`]); every type deriving `rkyv::Serialize`
    /// meets it.
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
    /// [`Error::NotFound`] for a missing parent directory) if a step fails,
    /// including a write while the value is serialized. Whatever fails,
    /// the temporary file is removed and `path` is untouched.
    pub fn write(
        dir: &dyn Directory,
        path: &str,
        tag: u64,
        last_entry: Option<u64>,
        value: &T,
    ) -> Result<()>
    where
        T: for<'a, 'w> Serialize<CheckpointSerializer<'a, 'w>>,
    {
        path::check_file(path)?;
        // IMPORTANT: the directory's atomic write: a unique temporary file,
        // synced before the rename, the folder synced after it, one writer of
        // the folder at a time, leftovers of killed writers removed, the
        // temporary file removed if anything here fails.
        dir.atomic_write_with(path, &mut |file| {
            PayloadWriter::serialize(file, path, value)?.finish(tag, last_entry)
        })
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
        // IMPORTANT: the directory's atomic write, as for `Checkpoint::write`.
        dir.atomic_write_with(path, &mut |file| {
            // No buffer: the bytes go to the file as they are, a piece at a
            // time.
            let mut writer = PayloadWriter::new(file, 0);
            writer.put(payload)?;
            writer.finish(tag, last_entry)
        })
    }
}

/// Bytes of payload written at a time (at most): each piece is taken into the CRC and
/// copied to the file while it is still in the CPU's cache, and its
/// write-back starts while the next pieces are produced, so the one file
/// sync finds little left to write.
const PIECE_SIZE_BYTES: usize = 1 << 20;

/// The serializer [`Checkpoint::write`] runs a value through: rkyv's
/// high-level serializer (arena allocator, shared pointers deduplicated,
/// [`rancor::Error`]) writing to a [`PayloadWriter`]. Name it in generic
/// code: `T: for<'a, 'w> Serialize<CheckpointSerializer<'a, 'w>>`. Every
/// type that derives `rkyv::Serialize` qualifies.
///
/// ```
/// use zerodur::checkpoint::CheckpointSerializer;
/// use zerodur::{Checkpoint, Directory, MemoryDirectory};
///
/// fn save<T>(dir: &dyn Directory, value: &T) -> zerodur::Result<()>
/// where
///     T: rkyv::Archive + for<'a, 'w> rkyv::Serialize<CheckpointSerializer<'a, 'w>>,
/// {
///     Checkpoint::write(dir, "state.zdc", 1, None, value)
/// }
///
/// let dir = MemoryDirectory::new();
/// save(&dir, &vec![(1u64, 2u64)])?;
/// assert_eq!(Checkpoint::<Vec<(u64, u64)>>::load(&dir, "state.zdc", 1)?[0].1, 2);
/// # Ok::<(), zerodur::Error>(())
/// ```
pub type CheckpointSerializer<'a, 'w> =
    HighSerializer<PayloadWriter<'w>, ArenaHandle<'a>, rancor::Error>;

/// Where [`Checkpoint::write`] serializes a value: straight into the
/// checkpoint's temporary file, after the header's room, a piece at a time.
///
/// The bytes rkyv produces gather in a buffer of one piece (1 MiB); a full
/// piece is taken into the payload CRC, written to the file and its
/// write-back started, while serialization goes on. When the value is
/// done, the last piece is written and then the header, which carries the
/// CRC. The value is never held serialized in memory as a whole, and the
/// file's bytes are exactly `rkyv::to_bytes` of the value after its header.
///
/// Only `Checkpoint::write` makes one; it appears in
/// [`CheckpointSerializer`] so bounds can name it.
pub struct PayloadWriter<'w> {
    file: &'w mut dyn AtomicFile,
    digest: PayloadDigest,
    /// Bytes not yet written; they go at `offset`.
    piece: Vec<u8>,
    offset: u64,
    /// The error that stopped the writing, kept typed for the caller: rkyv
    /// only carries its own error type.
    failed: Option<Error>,
}

impl<'w> PayloadWriter<'w> {
    /// A writer into `file` that gathers up to `piece_bytes` before writing
    /// (none: every `put` goes to the file at once).
    fn new(file: &'w mut dyn AtomicFile, piece_bytes: usize) -> PayloadWriter<'w> {
        PayloadWriter {
            file,
            digest: PayloadDigest::default(),
            piece: Vec::with_capacity(piece_bytes),
            offset: HEADER_SIZE_BYTES as u64,
            failed: None,
        }
    }

    /// A writer into `file` holding `value` serialized, all but its last
    /// piece written; `path` is for the error message.
    fn serialize<T>(file: &'w mut dyn AtomicFile, path: &str, value: &T) -> Result<Self>
    where
        T: for<'a, 'x> Serialize<CheckpointSerializer<'a, 'x>>,
    {
        let writer = PayloadWriter::new(file, PIECE_SIZE_BYTES);
        let (serialized, mut writer) = with_arena(|arena| {
            let mut serializer = Serializer::new(writer, arena.acquire(), Share::new());
            let serialized = serialize_using::<_, rancor::Error>(value, &mut serializer);
            (serialized, serializer.into_writer())
        });
        match serialized {
            Ok(_) => Ok(writer),
            Err(e) => Err(writer
                .failed
                .take()
                .unwrap_or_else(|| Error::InvalidArgument {
                    name: "value",
                    reason: format!("rkyv could not serialize it for `{path}`: {e}"),
                })),
        }
    }

    /// Appends `bytes` to the payload.
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.piece.capacity() - self.piece.len() >= bytes.len() {
            self.piece.extend_from_slice(bytes);
            Ok(())
        } else {
            self.put_past_piece(bytes)
        }
    }

    /// [`PayloadWriter::put`] of bytes that do not fit in the piece: the
    /// piece is written, then `bytes` start the next one or, if they would
    /// fill a whole piece, go to the file as they are, a piece at a time.
    #[cold]
    #[inline(never)]
    fn put_past_piece(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush()?;
        if bytes.len() < self.piece.capacity() {
            self.piece.extend_from_slice(bytes);
            return Ok(());
        }
        for piece in bytes.chunks(PIECE_SIZE_BYTES) {
            self.write_piece(piece)?;
        }
        Ok(())
    }

    /// Writes the gathered piece, if any.
    fn flush(&mut self) -> Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let mut piece = std::mem::take(&mut self.piece);
        let written = self.write_piece(&piece);
        piece.clear();
        self.piece = piece;
        written
    }

    /// Takes `bytes`, the next of the payload, into the CRC, writes them at
    /// their offset and starts their write-back.
    fn write_piece(&mut self, bytes: &[u8]) -> Result<()> {
        self.digest.update(bytes);
        self.file.write_at(self.offset, bytes)?;
        self.file.start_writeback(self.offset, bytes.len() as u64)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes the rest of the payload, then the header describing it.
    fn finish(mut self, tag: u64, last_entry: Option<u64>) -> Result<()> {
        self.flush()?;
        let header = self.digest.header(tag, last_entry);
        self.file.write_at(0, &header.encode())
    }
}

impl fmt::Debug for PayloadWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadWriter")
            .field("pos", &self.pos())
            .finish_non_exhaustive()
    }
}

impl Positional for PayloadWriter<'_> {
    /// The file offset the next byte goes to: positions in the archive are
    /// file offsets, the payload starting at 64, a multiple of every
    /// alignment an archive uses, so rkyv lays it out exactly as at 0.
    #[inline]
    fn pos(&self) -> usize {
        self.offset as usize + self.piece.len()
    }
}

impl<E: rancor::Source> Writer<E> for PayloadWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), E> {
        self.put(bytes).map_err(|e| {
            self.failed = Some(e);
            E::new(WriteFailed)
        })
    }
}

/// What rkyv is told when a [`PayloadWriter`] could not write; the caller
/// gets the typed error the writer kept.
#[derive(Debug)]
struct WriteFailed;

impl fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the checkpoint file could not be written")
    }
}

impl std::error::Error for WriteFailed {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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

    /// A temporary file that records what is done to it.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        /// `(write-back hint?, offset, len)` of each call.
        calls: Vec<(bool, u64, u64)>,
    }

    impl AtomicFile for Recorder {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
            self.calls.push((false, offset, data.len() as u64));
            let (start, end) = (offset as usize, offset as usize + data.len());
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            self.bytes[start..end].copy_from_slice(data);
            Ok(())
        }

        fn start_writeback(&mut self, offset: u64, len: u64) -> Result<()> {
            self.calls.push((true, offset, len));
            Ok(())
        }
    }

    impl Recorder {
        /// Checks the protocol: the payload's pieces in order from offset
        /// 64, each at most one piece long and its write-back started right
        /// after it is written, then the header at 0. Returns the pieces'
        /// lengths.
        fn pieces(&self) -> Vec<u64> {
            let (header, pieces) = self.calls.split_last().expect("calls");
            assert_eq!(*header, (false, 0, HEADER_SIZE_BYTES as u64), "header last");
            assert_eq!(pieces.len() % 2, 0, "{pieces:?}");
            let mut offset = HEADER_SIZE_BYTES as u64;
            let mut lens = Vec::new();
            for pair in pieces.chunks(2) {
                let (write, hint) = ((false, offset, pair[0].2), (true, offset, pair[0].2));
                assert_eq!(pair, [write, hint], "piece at {offset}");
                assert!(pair[0].2 > 0 && pair[0].2 <= PIECE_SIZE_BYTES as u64);
                offset += pair[0].2;
                lens.push(pair[0].2);
            }
            assert_eq!(offset, self.bytes.len() as u64);
            lens
        }
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Mixed {
        pairs: Vec<(u64, u64)>,
        names: BTreeMap<String, u32>,
        /// Copied by rkyv in one write larger than a piece.
        blob: Vec<u8>,
        label: String,
    }

    fn mixed(blob_len: usize) -> Mixed {
        Mixed {
            pairs: (0..100_000u64).map(|i| (i, i ^ 0x5555)).collect(),
            names: (0..3000u32).map(|i| (format!("name {i}"), i)).collect(),
            blob: (0..blob_len).map(|i| (i * 13 + i / 1000) as u8).collect(),
            label: "end".into(),
        }
    }

    #[test]
    fn values_are_serialized_in_pieces_into_the_file_of_one_piece() {
        let c = PIECE_SIZE_BYTES;
        let pairs: Vec<(u64, u64)> = (0..200_000u64).map(|i| (i, !i)).collect();
        let mut rec = Recorder::default();
        PayloadWriter::serialize(&mut rec, "p", &pairs)
            .and_then(|w| w.finish(5, None))
            .unwrap();
        let payload = rkyv::to_bytes::<rancor::Error>(&pairs).unwrap();
        assert!(rec.bytes == one_piece(5, None, &payload));
        // Small writes fill every piece but the last.
        let lens = rec.pieces();
        assert_eq!(lens.len(), payload.len().div_ceil(c));
        assert!(lens[..lens.len() - 1].iter().all(|&l| l == c as u64));

        for blob_len in [0, 100, c - 1, c, 2 * c + 3] {
            let value = mixed(blob_len);
            let mut rec = Recorder::default();
            PayloadWriter::serialize(&mut rec, "m", &value)
                .and_then(|w| w.finish(6, Some(1)))
                .unwrap();
            let payload = rkyv::to_bytes::<rancor::Error>(&value).unwrap();
            assert!(rec.bytes == one_piece(6, Some(1), &payload), "{blob_len}");
            rec.pieces();
        }
        let mut rec = Recorder::default();
        PayloadWriter::serialize(&mut rec, "e", &())
            .and_then(|w| w.finish(7, None))
            .unwrap();
        assert_eq!(rec.bytes, one_piece(7, None, &[]));
        assert_eq!(rec.pieces(), [] as [u64; 0]);
    }

    #[test]
    fn bytes_are_written_in_pieces_into_the_file_of_one_piece() {
        let c = PIECE_SIZE_BYTES;
        for len in [0, 1, c - 1, c, c + 1, 3 * c + 777] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
            let mut rec = Recorder::default();
            let mut writer = PayloadWriter::new(&mut rec, 0);
            writer.put(&payload).unwrap();
            writer.finish(3, Some(len as u64)).unwrap();
            assert!(
                rec.bytes == one_piece(3, Some(len as u64), &payload),
                "{len}"
            );
            let lens = rec.pieces();
            assert_eq!(lens.len(), len.div_ceil(c), "{len}");
        }
    }

    #[test]
    fn both_writes_give_the_file_of_one_piece_on_the_memory_backend() {
        let dir = MemoryDirectory::new();
        let value = mixed(3 << 20);
        let before = dir.op_count();
        Checkpoint::write(&dir, "v.zdc", 8, Some(2), &value).unwrap();
        let payload = rkyv::to_bytes::<rancor::Error>(&value).unwrap();
        assert!(dir.read("v.zdc").unwrap() == one_piece(8, Some(2), &payload));
        // Create, a write per piece and the header, sync, rename, dir sync.
        let pieces = payload.len().div_ceil(PIECE_SIZE_BYTES) as u64;
        assert!(dir.op_count() - before >= 5 + pieces);
        CheckpointBytes::write(&dir, "b.zdc", 8, Some(2), &payload).unwrap();
        assert!(dir.read("b.zdc").unwrap() == dir.read("v.zdc").unwrap());
    }
}
