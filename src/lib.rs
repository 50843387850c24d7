//! # zerodur
//!
//! Crash-consistent persistence for embedded storage engines, at the speed of
//! memory.
//!
//! | module | what |
//! |---|---|
//! | [`wal`] | the write-ahead log: preallocated, recyclable, memory-mapped segments, `msync` barriers, group commit, zero-copy replay |
//! | [`checkpoint`] | rkyv checkpoints, CRC-checked and validated once, read in place from a read-only map |
//! | [`recover`] | the newest valid checkpoint plus the WAL after it |
//! | [`publish`] | crash-safe checkpoint publish, WAL truncation, checkpoint pruning |
//! | [`recordlog`] | a single-file, CRC-framed append log for metadata |
//! | [`directory`] | the [`Directory`] trait, [`FsDirectory`], and [`MemoryDirectory`] with its power-loss and media-fault simulators |
//! | `async_dir` | (feature `async`) an async directory trait and a tokio bridge |
//!
//! The bytes on disk are specified in `FORMAT.md`; every error is an
//! [`Error`].
//!
//! ```
//! use std::sync::Arc;
//! use zerodur::wal::{ReadMode, Wal, WalOptions, WalReader};
//! use zerodur::{CrashPolicy, Directory, MemoryDirectory};
//!
//! let mem = MemoryDirectory::new();
//! let dir: Arc<dyn Directory> = Arc::new(mem.clone());
//! let wal = Wal::open(dir, WalOptions::new("wal"))?;
//! wal.append_durable(b"acknowledged")?;
//! wal.append(b"maybe")?; // not synced
//!
//! // Whatever a power loss does now, the acknowledged entry survives.
//! for policy in CrashPolicy::standard_set(8) {
//!     let image: Arc<dyn Directory> = Arc::new(mem.crash_image(&policy));
//!     let mut first = None;
//!     WalReader::open(image, "wal", ReadMode::BestEffort)?.replay(None, |id, bytes| {
//!         first.get_or_insert((id.get(), bytes.to_vec()));
//!         Ok(())
//!     })?;
//!     assert_eq!(first, Some((1, b"acknowledged".to_vec())));
//! }
//! # Ok::<(), zerodur::Error>(())
//! ```
//!
//! ## Crate features
//!
//! - `async`: an async directory trait (`async_dir::AsyncDirectory`), a
//!   bridge running blocking calls on tokio's blocking pool, and an awaitable
//!   durable append.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::missing_safety_doc)]

#[cfg(feature = "async")]
pub mod async_dir;
pub mod checkpoint;
pub mod directory;
mod error;
mod header;
mod le;
#[allow(unsafe_code)]
mod mmap;
pub mod publish;
pub mod recordlog;
pub mod recover;
pub mod wal;

pub use checkpoint::{list_checkpoints, Checkpoint, CheckpointBytes, CheckpointName};
pub use directory::{
    AtomicFile, CrashPolicy, DirLock, Directory, Fault, FaultErrno, FsDirectory, MediaFault,
    MediaFaultSet, MemoryDirectory, OpKind, OpRecord, ReadMap, Region, RegionFlush, WritableFile,
};
pub use error::{CorruptKind, Error, IoOp, Result};
pub use recordlog::{RecordLog, RecordLogMode, RecordLogOptions, Records};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
