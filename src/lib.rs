//! # zerodur
//!
//! Crash-consistent persistence for embedded storage engines, at the speed of
//! memory.
//!
//! - [`Directory`]: a storage abstraction with durability in its contract,
//!   implemented by [`FsDirectory`] (real files, memory maps, `msync`,
//!   `fallocate`, `flock`) and [`MemoryDirectory`] (in memory, with a seeded
//!   power-loss simulator and fault injection, for testing engines built on
//!   zerodur — including yours).
//!
//! ```
//! use zerodur::{CrashPolicy, Directory, MemoryDirectory};
//!
//! let dir = MemoryDirectory::new();
//! dir.atomic_write("checkpoint", b"state v1")?;
//! // Whatever a power loss does now, the atomically written file survives.
//! for seed in 0..8 {
//!     let image = dir.crash_image(&CrashPolicy::seeded(seed));
//!     assert_eq!(image.read("checkpoint")?, b"state v1");
//! }
//! # Ok::<(), zerodur::Error>(())
//! ```
//!
//! ## Crate features
//!
//! - `async`: an async directory trait and a bridge running blocking calls on
//!   tokio's blocking pool.

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
#[allow(unsafe_code)]
mod mmap;
pub mod publish;
pub mod recordlog;
pub mod recover;
pub mod wal;

pub use checkpoint::{list_checkpoints, Checkpoint, CheckpointBytes, CheckpointName};
pub use directory::{
    CrashPolicy, DirLock, Directory, Fault, FaultErrno, FsDirectory, MemoryDirectory, OpKind,
    OpRecord, ReadMap, Region, RegionFlush, WritableFile,
};
pub use error::{CorruptKind, Error, IoOp, Result};
pub use recordlog::{RecordLog, RecordLogMode, RecordLogOptions, Records};
