//! Power loss at every operation of workloads that append to the WAL and
//! publish checkpoints, on the memory backend, under several crash policies
//! per crash point (`ZERODUR_CRASH_POLICIES`, default 8 seeded ones plus
//! keep-all and drop-all).
//!
//! The oracle (DESIGN.md, "What crash-consistent must mean here"): after a
//! crash, best-effort recovery never fails and gives exactly the model's
//! state after the first `n` appended entries, for some `n` between the
//! number acknowledged (by `append_durable`, `sync` or a publish that
//! returned) and the number attempted; `last_entry` is `n`; the checkpoint it
//! starts from was published, is no older than the last publish that
//! returned, and holds the model's state at its entry; recovery writes
//! nothing and gives the same result twice; and the directory opens again,
//! takes an append, recovers strictly to that state plus the new entry, and
//! takes a publish of that state.
//!
//! Workloads: appends interleaved with publishes (small segments, so
//! truncation retires and recycles them); one publish and its every step
//! (WAL sync, checkpoint write, truncation, pruning); two publishes back to
//! back; a crash during the reopen that follows recovery; a damaged newest
//! checkpoint (recovery falls back to the older kept one); the first publish
//! into a new nested checkpoint directory.
//!
//! Also here: the two ways a checkpoint and a WAL can fail to fit together,
//! which recovery must report instead of guessing, and a publish past the
//! end of the log.

mod recovery_common;

use std::sync::Arc;
use std::time::Instant;

use recovery_common::*;
use zerodur::publish::publish_checkpoint;
use zerodur::recover::RecoveryEvent;
use zerodur::wal::{EntryId, Wal, WalReader};
use zerodur::{
    Checkpoint, CheckpointName, CorruptKind, CrashPolicy, Directory, Error, MemoryDirectory,
};

/// Runs `check` on the crash image of every crash point of `steps[window..]`
/// under every policy, and returns the number of states per phase.
fn for_each_crash_state(
    script: &Script,
    window: usize,
    mut check: impl FnMut(&CrashPoint, &CrashPolicy, MemoryDirectory),
) -> Tally {
    let (labels, _) = crash_labels(script, window);
    let mut tally = Tally::default();
    for (k, label) in labels.into_iter().enumerate() {
        let cp = crash_at(script, window, k as u64, label);
        for policy in policies(k as u64) {
            check(&cp, &policy, cp.dir.crash_image(&policy));
            tally.add(&cp.label, 1);
        }
    }
    tally
}

/// The standard oracle on one crash image (see the module docs).
fn check_image(script: &Script, cp: &CrashPoint, policy: &CrashPolicy, image: MemoryDirectory) {
    let what = || {
        format!(
            "crash point {} ({}), {policy:?}, after {} steps, stopped by {:?}",
            cp.k, cp.label, cp.progress.steps_done, cp.progress.error
        )
    };
    let dir: Arc<dyn Directory> = Arc::new(image.clone());
    let o = recover(&dir, &recovery_options(false))
        .unwrap_or_else(|e| panic!("{}: recovery failed: {e}", what()));
    check_outcome(&o, &script.model, &cp.progress, false, &what);
    let again = recover(&dir, &recovery_options(false))
        .unwrap_or_else(|e| panic!("{}: second recovery failed: {e}", what()));
    assert_eq!(again, o, "{}: recovery is not idempotent", what());
    assert_eq!(image.op_count(), 0, "{}: recovery wrote", what());
    check_reopen_and_append(&image, &o, script.recycle, script.keep, &what());
}

/// `n` ops of a workload: every 7th acknowledged by `append_durable`, a
/// `sync` every `sync_every`, a publish (lagging 0–3 entries behind the log)
/// every `publish_every`.
fn workload(
    seed: u64,
    n: u64,
    sync_every: u64,
    publish_every: u64,
    notes: (usize, usize),
) -> Vec<Step> {
    let mut rng = Rng(seed);
    let mut steps = Vec::new();
    for i in 1..=n {
        let op = op_for(&mut rng, notes.0, notes.1);
        steps.push(if i % 7 == 0 {
            Step::AppendDurable(op)
        } else {
            Step::Append(op)
        });
        if i % sync_every == 0 {
            steps.push(Step::Sync);
        }
        if i % publish_every == 0 {
            steps.push(Step::Publish { lag: i % 4 });
        }
    }
    steps
}

fn with_open(mut steps: Vec<Step>) -> Vec<Step> {
    steps.insert(0, Step::Open);
    steps
}

/// Appends `n` ops of a workload, unsynced.
fn append_ops(wal: &Wal, model: &mut Model, rng: &mut Rng, n: usize) {
    for _ in 0..n {
        let op = op_for(rng, 300, 1500);
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&op).unwrap();
        wal.append(&bytes).unwrap();
        model.push(op);
    }
}

/// Appends, syncs and publishes interleaved, with truncation retiring
/// segments into a recycle pool (or deleting them) and rotation reusing
/// them: a crash at every operation, `Wal::open` included.
#[test]
fn crash_anywhere_in_appends_interleaved_with_publishes_recovers_a_prefix() {
    let t = Instant::now();
    // (seed, entries, sync every, publish every, note sizes, recycle, keep)
    let configs = [
        (1, 300, 11, 15, (300, 1500), 2, 2),
        (11, 160, 5, 23, (100, 3000), 0, 3),
        (21, 160, 17, 9, (500, 2500), 4, 1),
    ];
    let mut total = Tally::default();
    for (seed, n, sync, publish, notes, recycle, keep) in configs {
        let steps = with_open(workload(seed, n, sync, publish, notes));
        let script = Script::new(steps, recycle, keep);
        let (_, stats) = crash_labels(&script, 0);
        assert!(stats.rotations >= 5, "too few rotations: {stats:?}");
        assert!(
            stats.segments_retired >= 3,
            "too little truncation: {stats:?}"
        );
        if recycle > 0 {
            assert!(
                stats.recycled_reuses >= 1,
                "no recycled segment reused: {stats:?}"
            );
        }

        let tally = for_each_crash_state(&script, 0, |cp, policy, image| {
            check_image(&script, cp, policy, image);
        });
        tally.assert_covers(&["Wal::open", "append", "sync", "end"]);
        for phase in ["wal sync", "checkpoint write", "truncation", "pruning"] {
            assert!(
                tally
                    .0
                    .iter()
                    .any(|(l, &n)| l.ends_with(&format!(": {phase}")) && n > 0),
                "seed {seed}: no crash inside a publish's {phase}: {:?}",
                tally.0
            );
        }
        total.add(
            &format!("seed {seed}, recycle {recycle}, keep {keep}"),
            tally.total(),
        );
    }
    total.print("interleaved", t.elapsed());
}

/// A log of several segments with two checkpoints (at entries 8 and 78) and
/// unsynced entries at its end; the crash window is one publish, which syncs
/// those entries, writes the checkpoint, retires the segments below the
/// floor its kept checkpoints set (into the recycle pool while it has room,
/// deleted otherwise) and prunes the checkpoints beyond those kept.
#[test]
fn crash_at_each_step_of_publish_recovers_the_last_published_state_plus_the_log() {
    let t = Instant::now();
    let mut total = Tally::default();
    for (recycle, keep) in [(1, 2), (0, 2), (3, 1), (2, 3)] {
        let mut steps = with_open(workload(2, 10, 1000, 10, (400, 1200)));
        steps.extend(workload(12, 70, 1000, 70, (400, 1200)));
        let mut rng = Rng(22);
        for _ in 0..4 {
            steps.push(Step::Append(op_for(&mut rng, 10, 20)));
        }
        let window = steps.len();
        steps.push(Step::Publish { lag: 0 });
        let script = Script::new(steps, recycle, keep);
        let newest = script.model.len();
        let (labels, stats) = crash_labels(&script, window);
        assert!(stats.rotations >= 3, "{stats:?}");

        let p = format!("publish #{window}");
        let tally = for_each_crash_state(&script, window, |cp, policy, image| {
            // Once the checkpoint write finished, it is what recovery uses.
            let ckpts = checkpoint_entries(&image);
            if cp.label.ends_with("truncation")
                || cp.label.ends_with("pruning")
                || cp.label == "end"
            {
                assert_eq!(ckpts[0], newest, "k={} {policy:?}: {ckpts:?}", cp.k);
            }
            check_image(&script, cp, policy, image);
        });
        tally.assert_covers(&[
            &format!("{p}: wal sync"),
            &format!("{p}: checkpoint write"),
            "end",
        ]);
        if keep < 3 {
            tally.assert_covers(&[&format!("{p}: pruning")]);
        }
        if keep == 2 {
            // The truncation retired at least three segments, each its own
            // durable step (a rename or removal, then a directory sync).
            tally.assert_covers(&[&format!("{p}: truncation")]);
            let truncation_ops = labels.iter().filter(|l| l.ends_with("truncation")).count();
            assert!(truncation_ops >= 6, "{labels:?}");
        }
        for (l, n) in &tally.0 {
            total.add(&format!("recycle {recycle}, keep {keep}: {l}"), *n);
        }
    }
    total.print("publish", t.elapsed());
}

/// Two publishes in a row, the first lagging the log by 30 entries, each
/// keeping only its own checkpoint (so each one truncates and prunes): a
/// crash inside either one, or between one's checkpoint write and its
/// truncation.
#[test]
fn crash_in_two_publishes_back_to_back_recovers_a_published_state() {
    let t = Instant::now();
    // One checkpoint at entry 40, then 60 more entries.
    let mut steps = with_open(workload(3, 40, 1000, 40, (600, 1400)));
    steps.extend(workload(13, 60, 1000, 1000, (600, 1400)));
    let window = steps.len();
    let mut rng = Rng(33);
    for _ in 0..3 {
        steps.push(Step::Append(op_for(&mut rng, 10, 20)));
    }
    let first = steps.len();
    steps.push(Step::Publish { lag: 30 });
    let second = steps.len();
    steps.push(Step::Publish { lag: 0 });
    steps.push(Step::Append(op_for(&mut rng, 10, 20)));
    let script = Script::new(steps, 2, 1);

    let tally = for_each_crash_state(&script, window, |cp, policy, image| {
        check_image(&script, cp, policy, image);
    });
    // The first publish syncs the three new entries; the second finds
    // nothing left to sync.
    tally.assert_covers(&[&format!("publish #{first}: wal sync")]);
    for p in [first, second] {
        tally.assert_covers(&[
            &format!("publish #{p}: checkpoint write"),
            &format!("publish #{p}: truncation"),
            &format!("publish #{p}: pruning"),
        ]);
    }
    tally.print("two publishes", t.elapsed());
}

/// Recovery writes nothing, so running it twice on one image gives the same
/// result; and a crash at any operation of the `Wal::open` that follows it
/// (which writes a resume marker, or replaces an unborn segment) leaves a
/// directory that recovers to the same state.
#[test]
fn crash_during_reopen_after_recovery_recovers_the_same_state() {
    let t = Instant::now();
    let script = Script::new(with_open(workload(4, 80, 9, 12, (300, 1400))), 1, 2);
    let mut tally = Tally::default();
    let mut reopen_points = 0u64;
    let (labels, _) = crash_labels(&script, 0);
    for (k, label) in labels.into_iter().enumerate() {
        let cp = crash_at(&script, 0, k as u64, label);
        for policy in policies(k as u64) {
            let what = |j: &str| format!("crash point {k} ({}), {policy:?}{j}", cp.label);
            let image = cp.dir.crash_image(&policy);
            let dir: Arc<dyn Directory> = Arc::new(image.clone());
            let first = recover(&dir, &recovery_options(false))
                .unwrap_or_else(|e| panic!("{}: {e}", what("")));
            let second = recover(&dir, &recovery_options(false)).unwrap();
            assert_eq!(first, second, "{}: recovery is not idempotent", what(""));
            assert_eq!(image.op_count(), 0, "{}: recovery wrote", what(""));
            check_outcome(&first, &script.model, &cp.progress, false, &|| what(""));
            tally.add("recovery twice", 1);

            // How many operations the reopen performs on this image.
            let probe = cp.dir.crash_image(&policy);
            let probe_wal = Wal::open(Arc::new(probe.clone()), wal_options(script.recycle))
                .unwrap_or_else(|e| panic!("{}: Wal::open: {e}", what("")));
            drop(probe_wal);
            let open_ops = probe.op_count();
            for j in 0..=open_ops {
                reopen_points += 1;
                let again = cp.dir.crash_image(&policy);
                again.halt_after(j);
                let opened = Wal::open(Arc::new(again.clone()), wal_options(script.recycle));
                assert_eq!(
                    opened.is_ok(),
                    j == open_ops,
                    "{}",
                    what(&format!(" j={j}"))
                );
                drop(opened);
                for policy2 in policies(k as u64 * 1000 + j) {
                    let w = || what(&format!(", reopen crashed after {j} ops, {policy2:?}"));
                    let after = again.crash_image(&policy2);
                    let dir2: Arc<dyn Directory> = Arc::new(after.clone());
                    // A completed open made the log end cleanly.
                    let o = recover(&dir2, &recovery_options(j == open_ops))
                        .unwrap_or_else(|e| panic!("{}: {e}", w()));
                    assert_eq!(o.state, first.state, "{}", w());
                    assert_eq!(o.last_entry, first.last_entry, "{}", w());
                    assert_eq!(o.checkpoint, first.checkpoint, "{}", w());
                    assert_eq!(o.ids, first.ids, "{}", w());
                    check_reopen_and_append(&after, &o, script.recycle, script.keep, &w());
                    tally.add("crash in the reopen after recovery", 1);
                }
            }
        }
    }
    assert!(reopen_points > 0);
    tally.print("recovery", t.elapsed());
}

/// A byte flipped in the newest checkpoint of a crash image (header, middle
/// of the payload, or last byte): recovery skips it, says so in
/// `Recovered::skipped` and to its observer, starts from the next older kept
/// checkpoint, and still gives the exact state, because the WAL is kept back
/// to the oldest kept checkpoint.
#[test]
fn damaged_newest_checkpoint_falls_back_to_the_older_kept_one() {
    let t = Instant::now();
    let mut total = Tally::default();
    let mut damaged = 0u64;
    for (seed, recycle, keep) in [(5, 1, 2), (15, 0, 3)] {
        let steps = with_open(workload(seed, 200, 13, 20, (300, 1500)));
        let script = Script::new(steps, recycle, keep);
        let tally = for_each_crash_state(&script, 0, |cp, policy, image| {
            let what = || {
                format!(
                    "seed {seed}, crash point {} ({}), {policy:?}",
                    cp.k, cp.label
                )
            };
            let ckpts = checkpoint_entries(&image);
            if ckpts.len() < 2 {
                check_image(&script, cp, policy, image);
                return;
            }
            let newest = CheckpointName::new(Some(ckpts[0])).path_in(CHECKPOINT_DIR);
            let older = CheckpointName::new(Some(ckpts[1])).path_in(CHECKPOINT_DIR);
            let mut bytes = image.read(&newest).unwrap();
            let at = match cp.k % 3 {
                0 => 20,
                1 => 64 + (bytes.len() - 64) / 2,
                _ => bytes.len() - 1,
            };
            bytes[at] ^= 0x10;
            image.atomic_write(&newest, &bytes).unwrap();

            let dir: Arc<dyn Directory> = Arc::new(image.clone());
            // Strict recovery reports the damaged checkpoint instead of
            // skipping it.
            match recover(&dir, &recovery_options(true)) {
                Ok(_) => panic!("{}: strict recovery skipped a damaged checkpoint", what()),
                Err(e) => assert!(e.to_string().contains(&newest), "{}: {e}", what()),
            }
            let events = Arc::new(Events::default());
            let opts = recovery_options(false).observer(events.clone());
            let o = recover(&dir, &opts).unwrap_or_else(|e| panic!("{}: {e}", what()));
            check_outcome(&o, &script.model, &cp.progress, true, &what);
            assert_eq!(o.skipped, vec![newest.clone()], "{}", what());
            assert_eq!(o.checkpoint.as_deref(), Some(older.as_str()), "{}", what());
            assert_eq!(o.checkpoint_entry, Some(ckpts[1]), "{}", what());
            let ev = events.take();
            assert!(
                matches!(&ev[..], [
                    RecoveryEvent::CheckpointSkipped { path: s, .. },
                    RecoveryEvent::CheckpointLoaded { path: l, last_entry: Some(e) },
                    RecoveryEvent::Replayed { entries, .. },
                ] if *s == newest && *l == older && e.get() == ckpts[1] && *entries == o.replayed),
                "{}: events {ev:?}",
                what()
            );
            check_reopen_and_append(&image, &o, script.recycle, script.keep, &what());
            damaged += 1;
        });
        for (l, n) in &tally.0 {
            total.add(&format!("keep {keep}: {l}"), *n);
        }
    }
    assert!(
        damaged > 1000,
        "too few images with two checkpoints: {damaged}"
    );
    println!("  damaged: images whose newest checkpoint was damaged: {damaged}");
    total.print("damaged", t.elapsed());
}

/// The first publish creates the checkpoint directory. When that directory
/// is nested in another new one (`state/checkpoints`), every new name on
/// the way must be durable before the publish returns: otherwise a power
/// loss can take the whole directory, and with it the only checkpoint, while
/// the WAL segments it covers are already retired.
#[test]
fn first_publish_into_a_new_nested_checkpoint_directory_is_durable() {
    let t = Instant::now();
    const NESTED: &str = "state/checkpoints";
    let setup = || {
        let mem = MemoryDirectory::new();
        let dir: Arc<dyn Directory> = Arc::new(mem.clone());
        let wal = Wal::open(Arc::clone(&dir), wal_options(1)).unwrap();
        let (mut model, mut rng) = (Model::new(), Rng(9));
        append_ops(&wal, &mut model, &mut rng, 40);
        (mem, dir, wal, model)
    };
    let publish = |dir: &Arc<dyn Directory>, wal: &Wal, model: &Model| {
        let opts = publish_options(2).checkpoint_dir(NESTED);
        let last = model.len();
        publish_checkpoint(&**dir, wal, &opts, EntryId::new(last), model.state(last))
    };
    let ops = {
        let (mem, dir, wal, model) = setup();
        let before = mem.op_count();
        let published = publish(&dir, &wal, &model).unwrap();
        assert!(published.segments_retired >= 2, "{published:?}");
        mem.op_count() - before
    };
    let mut states = 0u64;
    for k in 0..=ops {
        let (mem, dir, wal, model) = setup();
        mem.halt_after(mem.op_count() + k);
        let ok = publish(&dir, &wal, &model).is_ok();
        assert_eq!(ok, k == ops);
        drop(wal);
        for policy in policies(k) {
            let image = mem.crash_image(&policy);
            let dir: Arc<dyn Directory> = Arc::new(image.clone());
            let opts = recovery_options(false).checkpoint_dir(NESTED);
            let o = recover(&dir, &opts)
                .unwrap_or_else(|e| panic!("k={k} {policy:?}, publish ok: {ok}: {e}"));
            assert_eq!(o.state, *model.state(o.n()), "k={k} {policy:?}");
            if ok {
                assert_eq!(o.n(), model.len(), "k={k} {policy:?}");
                assert_eq!(o.checkpoint_entry, Some(model.len()), "k={k} {policy:?}");
            }
            states += 1;
        }
    }
    println!(
        "nested: crash states checked: {states} in {:.2?}",
        t.elapsed()
    );
    println!("crash states checked: {states}");
}

// ---------------------------------------------------------------------------
// A checkpoint and a WAL that do not fit together.

#[track_caller]
fn assert_corrupt(r: zerodur::Result<Outcome>, want: CorruptKind) {
    match r {
        Err(Error::Corrupt { kind, .. }) => assert_eq!(kind, want),
        other => panic!("expected Corrupt({want:?}), got {other:?}"),
    }
}

#[test]
fn log_that_starts_after_the_entry_the_checkpoint_needs_is_corrupt() {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let wal = Wal::open(Arc::clone(&dir), wal_options(2)).unwrap();
    let (mut model, mut rng) = (Model::new(), Rng(6));
    append_ops(&wal, &mut model, &mut rng, 100);
    let last = model.len();
    let published = publish_checkpoint(
        &*dir,
        &wal,
        &publish_options(2),
        EntryId::new(last),
        model.state(last),
    )
    .unwrap();
    assert!(published.segments_retired >= 2, "{published:?}");
    append_ops(&wal, &mut model, &mut rng, 5);
    wal.close().unwrap();

    // Intact, it recovers; the log no longer starts at entry 1.
    let o = recover(&dir, &recovery_options(true)).unwrap();
    assert_eq!(o.state, *model.state(105));
    let first = first_entry_in_log(&dir);
    assert!(first > 1 && first <= last + 1, "log starts at {first}");

    // Without its checkpoints, replay would need entry 1.
    for e in checkpoint_entries(&mem) {
        mem.remove(&CheckpointName::new(Some(e)).path_in(CHECKPOINT_DIR))
            .unwrap();
    }
    for strict in [true, false] {
        assert_corrupt(
            recover(&dir, &recovery_options(strict)),
            CorruptKind::LogStartsTooLate { needed: 1, first },
        );
    }
}

/// The first entry id the WAL in `dir` holds.
fn first_entry_in_log(dir: &Arc<dyn Directory>) -> u64 {
    let reader = WalReader::open(Arc::clone(dir), WAL_DIR, zerodur::wal::ReadMode::Strict).unwrap();
    let mut first = None;
    reader
        .replay(None, |id, _| {
            first.get_or_insert(id.get());
            Ok(())
        })
        .unwrap();
    first.expect("a non-empty log")
}

#[test]
fn log_that_ends_before_the_checkpoint_entry_is_corrupt() {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let wal = Wal::open(Arc::clone(&dir), wal_options(2)).unwrap();
    let (mut model, mut rng) = (Model::new(), Rng(7));
    append_ops(&wal, &mut model, &mut rng, 10);
    wal.close().unwrap();
    mem.create_dir_all(CHECKPOINT_DIR).unwrap();
    let path = CheckpointName::new(Some(100)).path_in(CHECKPOINT_DIR);
    Checkpoint::write(&mem, &path, TAG, Some(100), model.state(10)).unwrap();
    for strict in [true, false] {
        assert_corrupt(
            recover(&dir, &recovery_options(strict)),
            CorruptKind::LogEndsBeforeCheckpoint {
                checkpoint: 100,
                next: 11,
            },
        );
    }
    // A checkpoint the log does reach is fine.
    mem.remove(&path).unwrap();
    Checkpoint::write(
        &mem,
        &CheckpointName::new(Some(10)).path_in(CHECKPOINT_DIR),
        TAG,
        Some(10),
        model.state(10),
    )
    .unwrap();
    let o = recover(&dir, &recovery_options(true)).unwrap();
    assert_eq!(
        (o.state, o.replayed, o.last_entry),
        (model.state(10).clone(), 0, Some(10))
    );
}

#[test]
fn publish_past_the_end_of_the_log_is_invalid_and_writes_nothing() {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let wal = Wal::open(Arc::clone(&dir), wal_options(2)).unwrap();
    let empty = State::new();
    // An empty log: no entry to checkpoint.
    let before = mem.op_count();
    match publish_checkpoint(&*dir, &wal, &publish_options(2), EntryId::new(1), &empty) {
        Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, "last_entry"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(mem.op_count(), before, "a refused publish wrote");

    let (mut model, mut rng) = (Model::new(), Rng(8));
    append_ops(&wal, &mut model, &mut rng, 5);
    let before = mem.op_count();
    match publish_checkpoint(
        &*dir,
        &wal,
        &publish_options(2),
        EntryId::new(6),
        model.state(5),
    ) {
        Err(Error::InvalidArgument { name, reason }) => {
            assert_eq!(name, "last_entry");
            assert!(reason.contains('6') && reason.contains('5'), "{reason}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(mem.op_count(), before, "a refused publish wrote");
    assert!(!mem.exists(CHECKPOINT_DIR).unwrap());
    assert!(!wal.is_poisoned());
    // The WAL still works, and a publish of the last entry succeeds.
    append_ops(&wal, &mut model, &mut rng, 1);
    publish_checkpoint(
        &*dir,
        &wal,
        &publish_options(2),
        EntryId::new(6),
        model.state(6),
    )
    .unwrap();
    wal.close().unwrap();
    let o = recover(&dir, &recovery_options(true)).unwrap();
    assert_eq!(
        (o.checkpoint_entry, o.replayed, o.state),
        (Some(6), 0, model.state(6).clone())
    );
}
