//! The only module with `unsafe` code: memory maps, `msync`, `fallocate`,
//! `flock`, `madvise`, in-place reads of already-validated rkyv archives, and
//! the `*at` system calls that resolve paths confined below a directory
//! descriptor ([`beneath`]).
//!
//! Everything here is `pub(crate)`. The safe wrappers uphold these rules,
//! which memmap2 documents as the hazards of file-backed maps:
//!
//! - **Nobody truncates a mapped file.** Region files are fixed-length; the
//!   directory lock keeps other zerodur writers out; the WAL never shrinks a
//!   segment, it re-heads it. A file shrunk behind our back by a foreign
//!   process would raise SIGBUS on access; that is outside the contract.
//! - **Blocks are real before the map is written.** Regions are created with
//!   `fallocate`, so a write into the map can never hit an unallocated page on
//!   a full disk (which would kill the process with SIGBUS).
//! - **Writes are bounds-checked** in release builds too, and take `&mut self`.
//! - **Zero-length files are never mapped** (mmap of length 0 is `EINVAL`).
//! - `msync` makes data durable but not names: callers sync directories too.

mod archive;
pub(crate) mod beneath;
mod lock;
mod map;
mod prealloc;
mod writeback;

pub(crate) use archive::ValidatedArchive;
pub(crate) use lock::{lock_exclusive, FileLock};
pub(crate) use map::{ReadOnlyMap, RegionMap, RegionSyncer};
pub(crate) use prealloc::preallocate;
pub(crate) use writeback::start_writeback;
