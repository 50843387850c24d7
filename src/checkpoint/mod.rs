//! Checkpoints: a snapshot of an engine's state as one file, written durably
//! and atomically, read back in place without deserialization.
//!
//! A checkpoint file is a 64-byte header (magic, format version, the last WAL
//! entry applied, payload length and alignment, the caller's type/schema tag,
//! the payload's CRC and the header's own CRC) followed by a 16-byte aligned
//! payload — an rkyv archive for [`Checkpoint`], opaque bytes for
//! [`CheckpointBytes`] — and nothing after it. `FORMAT.md` has the byte
//! layout.
//!
//! - **Write**: [`Checkpoint::write`] / [`CheckpointBytes::write`] write a
//!   temporary file, sync it, rename it over the final name and sync the
//!   directory: one file sync, one directory sync, nothing redundant. After a
//!   crash the final name holds the old checkpoint or the new one, never a
//!   mix. The value is serialized straight into the file ([`PayloadWriter`])
//!   a piece at a time, CRC'd and sent towards the disk while the rest is
//!   serialized.
//! - **Load**: [`Checkpoint::load`] maps the file read-only, checks both
//!   CRCs, the magic, version, tag and lengths, validates the archive once
//!   with rkyv's checked `access`, and returns a handle that derefs to
//!   `rkyv::Archived<T>` with no copy. A damaged or foreign file is a typed
//!   error naming the file, never a panic, never an allocation sized by the
//!   file's claims.
//! - **Find**: files named by [`CheckpointName`] are listed newest first by
//!   [`list_checkpoints`], so recovery can take the newest one that loads
//!   and fall back to an older one.
//!
//! ```
//! use zerodur::{list_checkpoints, Checkpoint, CheckpointName, MemoryDirectory};
//!
//! const TAG: u64 = 1;
//! let dir = MemoryDirectory::new();
//! for applied in [10u64, 20] {
//!     let path = CheckpointName::new(Some(applied)).path_in("");
//!     Checkpoint::write(&dir, &path, TAG, Some(applied), &format!("state at {applied}"))?;
//! }
//! // Recovery: the newest checkpoint that loads.
//! let newest = list_checkpoints(&dir, "")?
//!     .into_iter()
//!     .find_map(|name| Checkpoint::<String>::load(&dir, &name.path_in(""), TAG).ok())
//!     .expect("a checkpoint");
//! assert_eq!(newest.last_entry(), Some(20));
//! assert_eq!(newest.as_str(), "state at 20");
//! # Ok::<(), zerodur::Error>(())
//! ```

mod format;
mod reader;
mod writer;

pub use format::CheckpointName;
pub use reader::{list_checkpoints, Checkpoint, CheckpointBytes};
pub use writer::{CheckpointSerializer, PayloadWriter};
