//! The one error type of the crate.
//!
//! Variants are chosen by what a caller can do about them: retry or give up on
//! an I/O failure ([`Error::Io`]), repair or restore a damaged file
//! ([`Error::Corrupt`], [`Error::ChecksumMismatch`]), wait for another writer
//! ([`Error::Locked`]), restart the process ([`Error::Poisoned`]), or fix the
//! call ([`Error::InvalidPath`], [`Error::EntryTooLarge`], [`Error::InvalidArgument`]).
//! Every variant that concerns a file names it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure zerodur reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed (or a [`MemoryDirectory`](crate::MemoryDirectory)
    /// fault was injected in its place).
    #[error("{op} failed on `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: IoOp,
        /// The file or directory concerned, relative to the directory root.
        path: PathBuf,
        /// The underlying error; `raw_os_error()` gives the errno.
        #[source]
        source: io::Error,
    },

    /// A path was absolute, empty, contained `..`, `.`, an empty component or a
    /// NUL byte, or (on [`FsDirectory`](crate::FsDirectory)) crossed a symbolic
    /// link below the root. Nothing outside the directory root is ever touched.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The file does not exist.
    #[error("`{}` does not exist", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },

    /// The file already exists where a new one was asked for.
    #[error("`{}` already exists", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// Another writer (in this process or another one) holds the lock.
    #[error("`{}` is locked by another writer", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// Bytes on disk do not form what they should. `offset` is where the
    /// problem was found.
    #[error("`{}` is corrupt at offset {offset}: {kind}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged structure within the file.
        offset: u64,
        /// What is wrong.
        kind: CorruptKind,
    },

    /// A CRC did not match the bytes it covers.
    #[error(
        "checksum mismatch in `{}` at offset {offset}: stored {expected:#010x}, computed {actual:#010x}",
        path.display()
    )]
    ChecksumMismatch {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the checksummed structure.
        offset: u64,
        /// The CRC stored in the file.
        expected: u32,
        /// The CRC computed over the bytes.
        actual: u32,
    },

    /// The file was written by an incompatible format version.
    #[error("`{}` has format version {found}; this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },

    /// A checkpoint was written for another type or schema.
    #[error("`{}` holds schema tag {found:#x}, expected {expected:#x}", path.display())]
    TagMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tag the caller asked for.
        expected: u64,
        /// The tag in the file.
        found: u64,
    },

    /// An rkyv archive passed its CRC but failed structural validation.
    #[error("`{}` failed archive validation: {message}", path.display())]
    Validation {
        /// The file.
        path: PathBuf,
        /// The validator's description.
        message: String,
    },

    /// An entry is larger than the log accepts. Nothing was written.
    #[error("entry of {len} bytes exceeds the maximum of {max} bytes")]
    EntryTooLarge {
        /// Size of the rejected entry.
        len: u64,
        /// The limit in force.
        max: u64,
    },

    /// A write or durability barrier failed earlier; nothing written since can
    /// be trusted to be durable, so this handle refuses all further work.
    /// Reopen (and recover) to continue.
    #[error("poisoned by an earlier failure: {cause}")]
    Poisoned {
        /// The failure that poisoned the handle.
        cause: String,
    },

    /// A write fell outside a fixed-length region.
    #[error("write of {len} bytes at offset {offset} exceeds `{}` of {size} bytes", path.display())]
    OutOfBounds {
        /// The region's file.
        path: PathBuf,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The region's size.
        size: u64,
    },

    /// A caller-supplied parameter is unusable.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The parameter.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl Error {
    /// Wraps an [`io::Error`] with what was being done and where.
    pub fn io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { path },
            _ => Error::Io { op, path, source },
        }
    }

    /// Builds a [`Error::Corrupt`].
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, kind: CorruptKind) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            kind,
        }
    }

    /// The errno of an I/O failure, if this is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// The operation an [`Error::Io`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// Opening or creating a file.
    Open,
    /// Reading.
    Read,
    /// Writing (including copying into a mapped region).
    Write,
    /// Reserving blocks (`fallocate`).
    Allocate,
    /// Changing a file's length.
    SetLen,
    /// `fsync`/`fdatasync` of a file.
    SyncFile,
    /// `fsync` of a directory.
    SyncDir,
    /// `msync` of a mapped range.
    FlushRange,
    /// Mapping a file.
    Map,
    /// Renaming.
    Rename,
    /// Removing a file.
    Remove,
    /// Listing or creating a directory.
    Directory,
    /// Taking the directory lock.
    Lock,
    /// Reading file metadata.
    Metadata,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Open => "open",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Allocate => "allocate",
            IoOp::SetLen => "set length",
            IoOp::SyncFile => "file sync",
            IoOp::SyncDir => "directory sync",
            IoOp::FlushRange => "range flush (msync)",
            IoOp::Map => "map",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::Directory => "directory operation",
            IoOp::Lock => "lock",
            IoOp::Metadata => "metadata",
        })
    }
}

/// What is wrong with a [`Error::Corrupt`] file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The file does not start with the expected magic bytes.
    BadMagic,
    /// The file is shorter than its header or a length it declares.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// A header field holds an impossible value.
    BadHeader(&'static str),
    /// A frame below the durable point does not decode.
    BadFrame(&'static str),
    /// A frame's length is impossible.
    BadLength {
        /// The declared length.
        len: u64,
    },
    /// Entry ids are not consecutive.
    EntryIdGap {
        /// The id that should have come next.
        expected: u64,
        /// The id found.
        found: u64,
    },
    /// A segment in the middle of the log is missing.
    MissingSegment {
        /// The id of the missing segment.
        segment: u64,
    },
    /// The first segment starts after the entry recovery needs.
    LogStartsTooLate {
        /// First entry id that is needed.
        needed: u64,
        /// First entry id present.
        first: u64,
    },
    /// The log ends before the entry a checkpoint says was applied: entries
    /// the checkpoint covers are missing, and new appends would reuse ids.
    LogEndsBeforeCheckpoint {
        /// Last entry the checkpoint includes.
        checkpoint: u64,
        /// Id the log's next entry would get.
        next: u64,
    },
    /// A sealed (non-final) segment ends without its seal.
    Unsealed,
    /// A file name that should follow the naming grammar does not.
    BadFileName,
    /// The file ends in a torn or garbage tail and strict mode forbids it.
    TornTail,
    /// A frame does not decode although a later frame proves it was durable:
    /// damage no crash can produce (a crash only tears what was never made
    /// durable).
    BelowDurablePoint {
        /// Offset, in the same file, of the valid frame that was written
        /// after the damaged one had been made durable.
        evidence: u64,
    },
    /// A segment ends before its seal, and a frame in a later segment proves
    /// that this position was durable: damage, not a crash (a deferred
    /// rotation's segment may end early only if nothing after it was ever
    /// made durable).
    DurableInLaterSegment {
        /// Id of the later segment holding the proof.
        segment: u64,
        /// Offset, in that segment, of the frame whose durable watermark
        /// covers this position; 0 when the proof is that segment's header,
        /// which says its predecessor was durable.
        evidence: u64,
    },
    /// The file's length disagrees with the length its header (or the
    /// protocol that made it) recorded: cut short or extended.
    LengthMismatch {
        /// The length the header records.
        expected: u64,
        /// The file's length.
        found: u64,
    },
    /// A generation number (epoch) does not exceed the one before it, as
    /// every new segment's must.
    EpochRegression {
        /// The epoch it must exceed.
        previous: u64,
        /// The epoch found.
        found: u64,
    },
}

impl fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptKind::BadMagic => f.write_str("bad magic bytes"),
            CorruptKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} present")
            }
            CorruptKind::BadHeader(what) => write!(f, "bad header: {what}"),
            CorruptKind::BadFrame(what) => write!(f, "bad frame: {what}"),
            CorruptKind::BadLength { len } => write!(f, "impossible length {len}"),
            CorruptKind::EntryIdGap { expected, found } => {
                write!(f, "entry id gap: expected {expected}, found {found}")
            }
            CorruptKind::MissingSegment { segment } => write!(f, "segment {segment} is missing"),
            CorruptKind::LogStartsTooLate { needed, first } => write!(
                f,
                "log starts at entry {first} but entry {needed} is needed"
            ),
            CorruptKind::LogEndsBeforeCheckpoint { checkpoint, next } => write!(
                f,
                "log ends before entry {checkpoint}, which the checkpoint includes (next id would be {next})"
            ),
            CorruptKind::Unsealed => f.write_str("sealed segment has no seal marker"),
            CorruptKind::BadFileName => f.write_str("file name does not follow the naming grammar"),
            CorruptKind::TornTail => f.write_str("torn tail (rejected in strict mode)"),
            CorruptKind::BelowDurablePoint { evidence } => write!(
                f,
                "damaged below the durable point (the valid frame at offset {evidence} was written after this one was durable)"
            ),
            CorruptKind::DurableInLaterSegment { segment, evidence } => write!(
                f,
                "ends before its seal although it was durable (the frame at offset {evidence} of segment {segment} was written after this position was durable)"
            ),
            CorruptKind::LengthMismatch { expected, found } => write!(
                f,
                "file is {found} bytes but its header records {expected}"
            ),
            CorruptKind::EpochRegression { previous, found } => write!(
                f,
                "epoch {found} does not exceed the previous epoch {previous}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_not_found_maps_to_not_found_variant() {
        let e = Error::io(IoOp::Open, "a/b", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "`a/b` does not exist");
    }

    #[test]
    fn display_is_prose_with_path_and_errno() {
        let e = Error::io(
            IoOp::SyncFile,
            "wal/00000001.seg",
            io::Error::from_raw_os_error(libc::EIO),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("file sync failed on `wal/00000001.seg`"),
            "{s}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        let c = Error::corrupt(
            "x.seg",
            4096,
            CorruptKind::EntryIdGap {
                expected: 3,
                found: 5,
            },
        );
        assert_eq!(
            c.to_string(),
            "`x.seg` is corrupt at offset 4096: entry id gap: expected 3, found 5"
        );
    }
}
