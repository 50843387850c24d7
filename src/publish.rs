//! Crash-safe checkpoint publish: write a checkpoint durably, retire the WAL
//! segments it makes unnecessary, and drop checkpoints beyond those kept.
//!
//! # Protocol and crash analysis
//!
//! 1. `sync` the WAL: every entry the checkpoint includes is durable in the
//!    log before the checkpoint can claim it. (Otherwise a crash could keep
//!    the checkpoint but lose its entries from the log, and new appends would
//!    reuse their ids.)
//! 2. Write the checkpoint: temporary file, one file sync, rename, one
//!    directory sync.
//! 3. Choose the kept checkpoints: the new one, then older ones newest
//!    first until `keep` are chosen, counting **only checkpoints that load
//!    and validate** (envelope, both CRCs, the tag, rkyv's checked access as
//!    a `T`). A checkpoint that does not load is never counted as kept,
//!    never deleted, and reported in [`Published::damaged`].
//! 4. Retire WAL segments whose entries are all covered by the **oldest
//!    kept** checkpoint, oldest first, never the active segment (each step
//!    durable, see [`Wal::truncate_prefix`]). Keeping the log back to the
//!    oldest valid kept checkpoint is what lets recovery fall back to it when
//!    a newer one is damaged.
//! 5. Remove the valid checkpoints older than the kept ones (each is loaded
//!    once to tell); sync the directory.
//!
//! A crash before 2 completes leaves the previous checkpoint and the whole
//! log; between 2 and 3 the new checkpoint and the whole log (recovery skips
//! the entries it covers); during 3 a shorter prefix retired; during 4 extra
//! old checkpoints. Every case recovers to the last published checkpoint plus
//! the WAL after it.

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::{rancor, Archive, Serialize};

use crate::checkpoint::{list_checkpoints, Checkpoint, CheckpointName, CheckpointSerializer};

use crate::directory::{sync_parents, Directory};
use crate::error::{Error, Result};
use crate::recover::CHECKPOINT_DIR_DEFAULT;
use crate::wal::{EntryId, Wal};

/// Default number of checkpoints kept by [`publish_checkpoint`].
pub const KEEP_CHECKPOINTS_DEFAULT: usize = 2;

/// Where checkpoints go and how many are kept.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub(crate) checkpoint_dir: String,
    pub(crate) tag: u64,
    pub(crate) keep: usize,
}

impl PublishOptions {
    /// Checkpoints in `"checkpoints"`, tag 0, keeping 2.
    pub fn new() -> PublishOptions {
        PublishOptions {
            checkpoint_dir: CHECKPOINT_DIR_DEFAULT.into(),
            tag: 0,
            keep: KEEP_CHECKPOINTS_DEFAULT,
        }
    }

    /// The checkpoints' subdirectory.
    pub fn checkpoint_dir(mut self, dir: impl Into<String>) -> Self {
        self.checkpoint_dir = dir.into();
        self
    }

    /// The type/schema tag written into checkpoints.
    pub fn tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }

    /// How many checkpoints to keep (at least 1). The WAL is kept back to
    /// the oldest of them, so recovery can fall back when a newer one is
    /// damaged.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n.max(1);
        self
    }
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions::new()
    }
}

/// What [`publish_checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// Path of the new checkpoint.
    pub path: String,
    /// WAL segments retired.
    pub segments_retired: usize,
    /// Old checkpoints removed.
    pub checkpoints_removed: usize,
    /// Checkpoints that failed to load or validate (damaged, another tag,
    /// an invalid archive): never counted as kept, never deleted.
    pub damaged: Vec<String>,
}

/// Publishes `value` as the checkpoint of every entry up to `last_entry`,
/// then truncates the WAL and prunes old checkpoints. See the module docs for
/// the protocol.
///
/// Cost beyond the write: each older checkpoint that retention looks at is
/// loaded and validated once (a CRC pass and rkyv's checked access), since
/// only checkpoints that load count as kept.
///
/// ```
/// use std::sync::Arc;
/// use zerodur::publish::{publish_checkpoint, PublishOptions};
/// use zerodur::recover::{recover_with_wal, RecoveryOptions};
/// use zerodur::wal::{Wal, WalOptions};
/// use zerodur::{Directory, MemoryDirectory};
///
/// let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
/// let wal = Wal::open(dir.clone(), WalOptions::new("wal"))?;
/// let mut total = 0u64;
/// for i in 1..=10u64 {
///     wal.append_archived(&i)?;
///     total += i;
/// }
/// let last = wal.last_entry_id().unwrap();
/// publish_checkpoint(&*dir, &wal, &PublishOptions::new(), last, &total)?;
/// wal.append_archived(&100u64)?;
/// wal.close()?;
///
/// let r = recover_with_wal::<u64, u64, _, _, _>(
///     &dir,
///     &RecoveryOptions::strict(),
///     |c| c.map_or(0, |c| c.to_native()),
///     |sum, _, e| *sum += e.to_native(),
/// )?;
/// assert_eq!(r.state, 155);
/// assert_eq!(r.replayed, 1);
/// # Ok::<(), zerodur::Error>(())
/// ```
pub fn publish_checkpoint<T>(
    dir: &dyn Directory,
    wal: &Wal,
    opts: &PublishOptions,
    last_entry: EntryId,
    value: &T,
) -> Result<Published>
where
    T: Archive + for<'a, 'w> Serialize<CheckpointSerializer<'a, 'w>>,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    match wal.last_entry_id() {
        Some(last) if last >= last_entry => {}
        other => {
            return Err(Error::InvalidArgument {
                name: "last_entry",
                reason: format!(
                    "entry {last_entry} is past the log's last entry ({})",
                    other.map_or("none".into(), |e| e.to_string())
                ),
            })
        }
    }
    // IMPORTANT: the entries a checkpoint includes are durable in the log
    // before the checkpoint is.
    wal.sync()?;
    let folder = opts.checkpoint_dir.as_str();
    if !folder.is_empty() {
        if !dir.exists(folder)? {
            dir.create_dir_all(folder)?;
        }
        // IMPORTANT: the whole chain of names leading to the checkpoint is
        // durable before the checkpoint (and the truncation that relies on
        // it) is -- also when the folder exists: an earlier publish may have
        // created it and failed, or been killed, before syncing.
        sync_parents(dir, folder)?;
    }
    let name = CheckpointName::new(Some(last_entry.get()));
    let path = name.path_in(folder);
    Checkpoint::write(dir, &path, opts.tag, Some(last_entry.get()), value)?;

    // IMPORTANT: the WAL is kept back to the oldest checkpoint that really
    // loads: a damaged one counted as kept would let the log it needs be
    // truncated away.
    let names = list_checkpoints(dir, folder)?;
    let mut kept = 0;
    let mut floor = last_entry.get();
    let mut damaged = Vec::new();
    let mut superseded = Vec::new();
    for old in &names {
        let old_path = old.path_in(folder);
        let valid = old_path == path || Checkpoint::<T>::load(dir, &old_path, opts.tag).is_ok();
        match (valid, kept < opts.keep) {
            (true, true) => {
                kept += 1;
                floor = floor.min(old.last_entry().unwrap_or(0));
            }
            (true, false) => superseded.push(old_path),
            // Never counted as kept, and never deleted: what does not load
            // is left for an operator to look at.
            (false, _) => damaged.push(old_path),
        }
    }
    let segments_retired = wal.truncate_prefix(EntryId::new(floor))?;
    for old in &superseded {
        dir.remove(old)?;
    }
    let checkpoints_removed = superseded.len();
    if checkpoints_removed > 0 {
        dir.sync_dir(folder)?;
    }
    Ok(Published {
        path,
        segments_retired,
        checkpoints_removed,
        damaged,
    })
}
