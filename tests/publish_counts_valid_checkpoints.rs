//! Publish keeps the WAL back to the oldest checkpoint that really loads:
//! a damaged checkpoint is never counted as kept (nor deleted by publish),
//! and recovery can always fall back to a valid one with the log it needs.
//! Strict recovery refuses a damaged or foreign-tagged checkpoint; best
//! effort skips and reports it.

use std::sync::Arc;

use zerodur::publish::{publish_checkpoint, PublishOptions};
use zerodur::recover::{recover_with_wal, RecoveryOptions};
use zerodur::wal::{EntryId, Wal, WalOptions};
use zerodur::{CheckpointName, Directory, Error, MemoryDirectory};

const TAG: u64 = 0x5eed;

fn opts() -> PublishOptions {
    PublishOptions::new().tag(TAG).keep(2)
}

fn path(last: u64) -> String {
    CheckpointName::new(Some(last)).path_in("checkpoints")
}

fn flip(dir: &dyn Directory, path: &str, at: usize) {
    let mut b = dir.read(path).unwrap();
    b[at] ^= 0x20;
    dir.atomic_write(path, &b).unwrap();
}

fn recover(dir: &Arc<dyn Directory>, o: RecoveryOptions) -> zerodur::Result<(u64, Option<u64>)> {
    let r = recover_with_wal::<u64, u64, _, _, _>(
        dir,
        &o.tag(TAG),
        |c| c.map_or(0, |c| c.to_native()),
        |sum, _, e| *sum += e.to_native(),
    )?;
    Ok((r.state, r.checkpoint_entry.map(EntryId::get)))
}

/// Appends `from..=to` (each entry is its own id) to `wal`.
fn append(wal: &Wal, from: u64, to: u64) {
    for i in from..=to {
        assert_eq!(wal.append_archived(&i).unwrap().get(), i);
    }
}

fn sum(n: u64) -> u64 {
    n * (n + 1) / 2
}

#[test]
fn a_damaged_checkpoint_is_not_counted_as_kept_and_the_wal_stays() {
    let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    // Small segments: every publish could retire several.
    let wal = Wal::open(dir.clone(), WalOptions::new("wal").segment_size_bytes(8192)).unwrap();
    append(&wal, 1, 300);
    publish_checkpoint(&*dir, &wal, &opts(), EntryId::new(300), &sum(300)).unwrap();
    append(&wal, 301, 600);
    publish_checkpoint(&*dir, &wal, &opts(), EntryId::new(600), &sum(600)).unwrap();
    // The newest checkpoint rots.
    flip(&*dir, &path(600), 70);
    append(&wal, 601, 900);
    let p = publish_checkpoint(&*dir, &wal, &opts(), EntryId::new(900), &sum(900)).unwrap();
    // Counting by name would keep {900, 600}, truncate the WAL to 600 and
    // delete checkpoint 300; counting what loads keeps {900, 300}.
    assert_eq!(p.damaged, vec![path(600)]);
    assert_eq!(p.checkpoints_removed, 0);
    for last in [300, 600, 900] {
        assert!(
            dir.exists(&path(last)).unwrap(),
            "checkpoint {last} removed"
        );
    }
    let first = wal.segment_ranges().unwrap()[0].first.get();
    assert!(
        first <= 301,
        "the WAL was truncated past entry 301: {first}"
    );
    append(&wal, 901, 950);
    wal.close().unwrap();

    // Now the newest rots as well: recovery falls back to checkpoint 300
    // and still has every entry after it.
    flip(&*dir, &path(900), 70);
    assert_eq!(
        recover(&dir, RecoveryOptions::best_effort()).unwrap(),
        (sum(950), Some(300))
    );
    // Strict recovery names the damaged checkpoint instead.
    let e = recover(&dir, RecoveryOptions::strict()).unwrap_err();
    assert!(e.to_string().contains(&path(900)), "{e}");
}

#[test]
fn strict_recovery_refuses_another_tag_best_effort_skips_it() {
    let dir: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
    let wal = Wal::open(dir.clone(), WalOptions::new("wal")).unwrap();
    append(&wal, 1, 10);
    publish_checkpoint(&*dir, &wal, &opts(), EntryId::new(5), &sum(5)).unwrap();
    let other = PublishOptions::new().tag(TAG + 1).keep(3);
    publish_checkpoint(&*dir, &wal, &other, EntryId::new(8), &sum(8)).unwrap();
    wal.close().unwrap();
    match recover(&dir, RecoveryOptions::strict()) {
        Err(Error::TagMismatch {
            expected, found, ..
        }) => assert_eq!((expected, found), (TAG, TAG + 1)),
        other => panic!("strict recovery over another tag: {other:?}"),
    }
    assert_eq!(
        recover(&dir, RecoveryOptions::best_effort()).unwrap(),
        (sum(10), Some(5))
    );
}
