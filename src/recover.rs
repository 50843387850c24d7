//! Recovery: the newest checkpoint that validates, then the WAL after it.
//!
//! [`recover_with_wal`] is generic over the checkpoint type `T`, the entry
//! type `E` and the caller's in-memory state `S`. Both the checkpoint and the
//! entries reach the caller as rkyv archives borrowed from read-only maps:
//! nothing is deserialized unless the caller does it.
//!
//! Recovery writes nothing, so it is idempotent and a crash during it changes
//! nothing: run it again.

use std::fmt;
use std::sync::Arc;

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::{rancor, Archive, Portable};

use crate::checkpoint::{list_checkpoints, Checkpoint};
use crate::directory::Directory;
use crate::error::{CorruptKind, Error, Result};
use crate::wal::{EntryId, ReadMode, WalReader};

/// Default subdirectory of checkpoints.
pub const CHECKPOINT_DIR_DEFAULT: &str = "checkpoints";
/// Default subdirectory of the WAL.
pub const WAL_DIR_DEFAULT: &str = "wal";

/// Where to find the checkpoints and the WAL, and how strictly to read.
#[derive(Clone)]
pub struct RecoveryOptions {
    pub(crate) mode: ReadMode,
    pub(crate) wal_dir: String,
    pub(crate) checkpoint_dir: String,
    pub(crate) tag: u64,
    pub(crate) observer: Option<Arc<dyn RecoveryObserver>>,
}

impl RecoveryOptions {
    /// Strict: the WAL must end cleanly ([`ReadMode::Strict`]), and the
    /// newest checkpoint must load: one that fails validation or carries
    /// another tag is an error, not skipped.
    pub fn strict() -> RecoveryOptions {
        RecoveryOptions::new(ReadMode::Strict)
    }

    /// Best-effort: a torn tail in the final WAL segment ends the log, as a
    /// crash leaves it ([`ReadMode::BestEffort`]), and a checkpoint that
    /// fails to load (damaged, another tag, invalid archive) is skipped and
    /// reported in [`Recovered::skipped`]; the next older one is tried. Use
    /// this after a crash. Damage below the WAL's durable point is still an
    /// error.
    pub fn best_effort() -> RecoveryOptions {
        RecoveryOptions::new(ReadMode::BestEffort)
    }

    fn new(mode: ReadMode) -> RecoveryOptions {
        RecoveryOptions {
            mode,
            wal_dir: WAL_DIR_DEFAULT.into(),
            checkpoint_dir: CHECKPOINT_DIR_DEFAULT.into(),
            tag: 0,
            observer: None,
        }
    }

    /// The WAL's subdirectory (default `"wal"`).
    pub fn wal_dir(mut self, dir: impl Into<String>) -> Self {
        self.wal_dir = dir.into();
        self
    }

    /// The checkpoints' subdirectory (default `"checkpoints"`).
    pub fn checkpoint_dir(mut self, dir: impl Into<String>) -> Self {
        self.checkpoint_dir = dir.into();
        self
    }

    /// The type/schema tag checkpoints must carry (default 0).
    pub fn tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }

    /// Receives a [`RecoveryEvent`] for each checkpoint tried and for the
    /// replay.
    pub fn observer(mut self, observer: Arc<dyn RecoveryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn emit(&self, event: RecoveryEvent) {
        if let Some(o) = &self.observer {
            o.on_event(&event);
        }
    }
}

impl fmt::Debug for RecoveryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryOptions")
            .field("mode", &self.mode)
            .field("wal_dir", &self.wal_dir)
            .field("checkpoint_dir", &self.checkpoint_dir)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// What recovery did, reported to a [`RecoveryObserver`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryEvent {
    /// A checkpoint failed to load and an older one (or none) is tried next.
    CheckpointSkipped {
        /// The damaged checkpoint.
        path: String,
        /// Why it was refused.
        error: String,
    },
    /// The checkpoint recovery starts from.
    CheckpointLoaded {
        /// Its path.
        path: String,
        /// The last entry it includes.
        last_entry: Option<EntryId>,
    },
    /// The WAL was replayed.
    Replayed {
        /// Entries applied.
        entries: u64,
        /// Whether the WAL ended in a torn tail.
        torn_tail: bool,
    },
}

/// Receives [`RecoveryEvent`]s.
pub trait RecoveryObserver: Send + Sync {
    /// One event.
    fn on_event(&self, event: &RecoveryEvent);
}

/// A checkpoint recovery could not use.
#[derive(Debug)]
#[non_exhaustive]
pub struct SkippedCheckpoint {
    /// Its path.
    pub path: String,
    /// Why it failed to load.
    pub error: Error,
}

/// The outcome of [`recover_with_wal`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Recovered<S> {
    /// The caller's state: the checkpoint's, with every later entry applied.
    pub state: S,
    /// The checkpoint recovery started from, if any.
    pub checkpoint: Option<String>,
    /// The last entry that checkpoint includes.
    pub checkpoint_entry: Option<EntryId>,
    /// Entries replayed from the WAL.
    pub replayed: u64,
    /// The last entry included in `state` (from the WAL or the checkpoint).
    pub last_entry: Option<EntryId>,
    /// Newer checkpoints that failed to load, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
    /// Whether the WAL ended in a torn tail (best-effort mode).
    pub torn_tail: bool,
}

/// Recovers state from the newest valid checkpoint plus the WAL after it.
///
/// 1. Checkpoints in `opts`' checkpoint directory are tried newest first; in
///    best-effort mode one that fails to load (damaged, wrong tag, invalid
///    archive) is skipped and reported, and the next older one is tried; in
///    strict mode it is the error.
/// 2. `init` builds the state from the chosen checkpoint's archive (`None`
///    when there is none).
/// 3. The WAL is replayed from the entry after the checkpoint; `apply` gets
///    each entry as a checked `&Archived<E>`.
///
/// The WAL folder must exist ([`Error::NotFound`] naming it otherwise),
/// except in a store that has neither a WAL folder nor a checkpoint folder
/// yet: a new store recovers to `init(None)` with nothing replayed.
///
/// A WAL that starts after the entry the checkpoint needs next
/// ([`CorruptKind::LogStartsTooLate`]) or ends before the checkpoint's last
/// entry ([`CorruptKind::LogEndsBeforeCheckpoint`]) is an error: entries
/// would be missing or reused.
///
/// ```
/// use std::sync::Arc;
/// use zerodur::recover::{recover_with_wal, RecoveryOptions};
/// use zerodur::wal::{Wal, WalOptions};
/// use zerodur::{Directory, MemoryDirectory};
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Default)]
/// struct Snap { counter: u64 }
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// enum Op { Inc, Dec }
///
/// let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
/// let w = Wal::open(dir.clone(), WalOptions::new("wal"))?;
/// w.append_archived(&Op::Inc)?;
/// w.append_archived(&Op::Inc)?;
/// w.append_archived(&Op::Dec)?;
/// w.close()?;
///
/// let result = recover_with_wal::<Snap, Op, _, _, _>(
///     &dir,
///     &RecoveryOptions::strict(),
///     |ckpt| ckpt.map_or(0, |c| c.counter.to_native()),
///     |counter, _id, entry| match entry {
///         ArchivedOp::Inc => *counter += 1,
///         ArchivedOp::Dec => *counter = counter.saturating_sub(1),
///     },
/// )?;
/// assert_eq!(result.state, 1); // 0 + 1 + 1 - 1
/// # Ok::<(), zerodur::Error>(())
/// ```
pub fn recover_with_wal<T, E, S, I, A>(
    dir: &Arc<dyn Directory>,
    opts: &RecoveryOptions,
    init: I,
    mut apply: A,
) -> Result<Recovered<S>>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    E: Archive,
    E::Archived: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    I: FnOnce(Option<&T::Archived>) -> S,
    A: FnMut(&mut S, EntryId, &E::Archived),
{
    let (checkpoint, skipped) = newest_valid_checkpoint::<T>(&**dir, opts)?;
    let checkpoint_entry = checkpoint
        .as_ref()
        .and_then(|c| c.last_entry())
        .map(EntryId::new);
    let mut state = init(checkpoint.as_deref());
    let from = EntryId::new(checkpoint_entry.map_or(1, |e| e.get() + 1));
    // A new store (no WAL folder, no checkpoint folder) is empty; a missing
    // WAL beside checkpoints is an error: the log they need is not there.
    if !dir.exists(&opts.wal_dir)? && !dir.exists(&opts.checkpoint_dir)? {
        return Ok(Recovered {
            state,
            checkpoint: None,
            checkpoint_entry: None,
            replayed: 0,
            last_entry: None,
            skipped,
            torn_tail: false,
        });
    }
    let reader = WalReader::open(Arc::clone(dir), &opts.wal_dir, opts.mode)?;
    let summary = reader.replay_archived::<E, _>(Some(from), |id, entry| {
        apply(&mut state, id, entry);
        Ok(())
    })?;
    if let (Some(c), Some(next)) = (checkpoint_entry, summary.next_entry) {
        if next.get() <= c.get() {
            return Err(Error::corrupt(
                opts.wal_dir.clone(),
                0,
                CorruptKind::LogEndsBeforeCheckpoint {
                    checkpoint: c.get(),
                    next: next.get(),
                },
            ));
        }
    }
    opts.emit(RecoveryEvent::Replayed {
        entries: summary.entries,
        torn_tail: summary.torn_tail,
    });
    let last_entry = summary.last.max(checkpoint_entry);
    Ok(Recovered {
        state,
        checkpoint: checkpoint.as_ref().map(|c| c.path().to_owned()),
        checkpoint_entry,
        replayed: summary.entries,
        last_entry,
        skipped,
        torn_tail: summary.torn_tail,
    })
}

/// The newest checkpoint that loads, and the newer ones that did not.
fn newest_valid_checkpoint<T>(
    dir: &dyn Directory,
    opts: &RecoveryOptions,
) -> Result<(Option<Checkpoint<T>>, Vec<SkippedCheckpoint>)>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    let mut skipped = Vec::new();
    if !dir.exists(&opts.checkpoint_dir)? {
        return Ok((None, skipped));
    }
    for name in list_checkpoints(dir, &opts.checkpoint_dir)? {
        let path = name.path_in(&opts.checkpoint_dir);
        match Checkpoint::<T>::load(dir, &path, opts.tag) {
            Ok(c) => {
                opts.emit(RecoveryEvent::CheckpointLoaded {
                    path: path.clone(),
                    last_entry: c.last_entry().map(EntryId::new),
                });
                return Ok((Some(c), skipped));
            }
            Err(error) if opts.mode == ReadMode::Strict => return Err(error),
            Err(error) => {
                opts.emit(RecoveryEvent::CheckpointSkipped {
                    path: path.clone(),
                    error: error.to_string(),
                });
                skipped.push(SkippedCheckpoint { path, error });
            }
        }
    }
    Ok((None, skipped))
}
