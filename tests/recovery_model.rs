//! Recovery against a model. Random sequences of appends, durable appends,
//! syncs, checkpoint publishes, reopens and, on the memory backend,
//! simulated power losses (between operations, or a given number of
//! operations into the next ones) run with small segments, a recycle pool,
//! a random number of kept checkpoints, manual or every-n syncing, and the
//! checkpoints in `checkpoints` or in the nested `state/checkpoints`.
//!
//! The model is the list of entries appended (as ops of a key-value state
//! machine), the highest one acknowledged durable, and the checkpoints that
//! must exist. Between operations, a strict recovery of the live directory
//! gives exactly the model's state after every entry, from the newest
//! checkpoint. After a crash, best-effort recovery gives exactly the model's
//! state after its first `n` entries, with `acknowledged <= n <= appended`,
//! from the newest checkpoint the image holds, which is one the model knows;
//! the entries after `n` are gone from the model, and the log reopens at
//! `n + 1`.
//!
//! Case counts follow `PROPTEST_CASES` (proptest's default otherwise).

mod recovery_common;

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use recovery_common::*;
use zerodur::publish::{publish_checkpoint, PublishOptions};
use zerodur::recover::RecoveryOptions;
use zerodur::wal::{EntryId, SyncPolicy, Wal, WalOptions};
use zerodur::{CrashPolicy, Directory, Error, FsDirectory, MemoryDirectory};

#[derive(Debug, Clone)]
enum Action {
    /// `append` of the op generated from this seed.
    Append(u64),
    /// `append_durable` of the op generated from this seed.
    AppendDurable(u64),
    /// `append` of a note of 4000 to 7900 bytes: about one per 8 KiB segment.
    AppendBig(u64),
    Sync,
    /// Publish a checkpoint at an entry this value selects, between the
    /// newest checkpoint and the last entry.
    Publish(u64),
    /// Publish a checkpoint this many entries past the end of the log: refused.
    PublishPastEnd(u8),
    /// Close the WAL cleanly and open it again.
    Reopen,
    /// Power loss now, with `CrashPolicy::seeded(seed)`, then recovery.
    Crash(u64),
    /// The power fails `after` operations into what follows (the crash is
    /// taken at the first operation refused, or at the end of the case).
    CrashDuring {
        after: u8,
        seed: u64,
    },
}

#[derive(Debug, Clone)]
struct Case {
    /// The checkpoints' directory: `checkpoints`, or `state/checkpoints`
    /// (whose parent the first publish creates too).
    folder: &'static str,
    segment_size: u64,
    /// `None`: manual; `Some(n)`: `SyncPolicy::EveryN(n)` (1 is every append).
    every: Option<u64>,
    recycle: usize,
    keep: usize,
    actions: Vec<Action>,
}

fn action_strategy(with_crash: bool) -> BoxedStrategy<Action> {
    let base = prop_oneof![
        10 => any::<u64>().prop_map(Action::Append),
        3 => any::<u64>().prop_map(Action::AppendDurable),
        1 => any::<u64>().prop_map(Action::AppendBig),
        2 => Just(Action::Sync),
        3 => any::<u64>().prop_map(Action::Publish),
        1 => (1u8..4).prop_map(Action::PublishPastEnd),
        1 => Just(Action::Reopen),
    ];
    if with_crash {
        prop_oneof![
            20 => base,
            1 => any::<u64>().prop_map(Action::Crash),
            1 => (0u8..40, any::<u64>()).prop_map(|(after, seed)| Action::CrashDuring { after, seed }),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

fn case_strategy(with_crash: bool, max_actions: usize) -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(CHECKPOINT_DIR), Just("state/checkpoints")],
        prop_oneof![Just(8 * 1024u64), Just(16 * 1024)],
        prop_oneof![3 => Just(None), 1 => (1u64..6).prop_map(Some)],
        0usize..4,
        1usize..4,
        vec(action_strategy(with_crash), 1..max_actions),
    )
        .prop_map(
            |(folder, segment_size, every, recycle, keep, actions)| Case {
                folder,
                segment_size,
                every,
                recycle,
                keep,
                actions,
            },
        )
}

/// A note of 4000 to 7900 bytes.
fn op_for_big(seed: u64) -> Op {
    let mut r = Rng(seed);
    let len = 4000 + r.below(3901) as usize;
    Op::Note {
        key: r.below(48),
        bytes: (0..len).map(|_| r.next() as u8).collect(),
    }
}

struct Harness {
    dir: Arc<dyn Directory>,
    /// The same directory, when it is a `MemoryDirectory` (crashes allowed).
    mem: Option<MemoryDirectory>,
    wal: Option<Wal>,
    wal_opts: WalOptions,
    /// `SyncPolicy::EveryN(n)`: an `append` of an id divisible by `n` syncs.
    every: Option<u64>,
    publish_opts: PublishOptions,
    recovery_strict: RecoveryOptions,
    recovery_best_effort: RecoveryOptions,
    folder: &'static str,
    keep: usize,
    /// Every entry appended (and not lost to a crash), in order.
    model: Model,
    /// Highest entry acknowledged durable.
    acked: u64,
    /// The checkpoints that must exist, newest first.
    checkpoints: Vec<u64>,
    /// A publish that failed under a pending power loss: its checkpoint may
    /// or may not exist after the crash.
    in_flight: Option<u64>,
    /// The seed of the pending power loss (`CrashDuring`).
    pending: Option<u64>,
    crashes: u64,
}

impl Harness {
    fn new(dir: Arc<dyn Directory>, mem: Option<MemoryDirectory>, case: &Case) -> Harness {
        let wal_opts = WalOptions::new(WAL_DIR)
            .segment_size_bytes(case.segment_size)
            .recycle_capacity(case.recycle)
            .sync_policy(case.every.map_or(SyncPolicy::Manual, SyncPolicy::EveryN));
        let wal = Wal::open(Arc::clone(&dir), wal_opts.clone()).expect("first open");
        Harness {
            dir,
            mem,
            wal: Some(wal),
            wal_opts,
            every: case.every,
            publish_opts: publish_options(case.keep).checkpoint_dir(case.folder),
            recovery_strict: recovery_options(true).checkpoint_dir(case.folder),
            recovery_best_effort: recovery_options(false).checkpoint_dir(case.folder),
            folder: case.folder,
            keep: case.keep,
            model: Model::new(),
            acked: 0,
            checkpoints: Vec::new(),
            in_flight: None,
            pending: None,
            crashes: 0,
        }
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("the WAL is open between actions")
    }

    fn run(&mut self, actions: &[Action]) {
        for (i, a) in actions.iter().enumerate() {
            let result = self.apply(a);
            match (result, self.pending) {
                (Ok(()), _) => self.check_live(&format!("after action {i} {a:?}")),
                (Err(e), Some(seed)) => {
                    let halted = self.mem.as_ref().is_some_and(MemoryDirectory::is_halted);
                    assert!(halted, "action {i} {a:?} failed before the power did: {e}");
                    self.crash(seed, &format!("power loss during action {i} {a:?} ({e})"));
                }
                (Err(e), None) => panic!("action {i} {a:?} failed: {e}"),
            }
        }
        if let Some(seed) = self.pending {
            self.crash(seed, "power loss pending at the end");
        }
        // A clean close, and everything is there.
        self.wal.take().expect("open").close().expect("close");
        self.acked = self.model.len();
        self.check_live("after the final close");
    }

    fn apply(&mut self, a: &Action) -> zerodur::Result<()> {
        match a {
            Action::Append(seed) | Action::AppendDurable(seed) | Action::AppendBig(seed) => {
                let op = match a {
                    Action::AppendBig(_) => op_for_big(*seed),
                    _ => op_for(&mut Rng(*seed), 0, 2000),
                };
                let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&op).expect("serialize");
                // Attempted: it may survive a crash even if the call fails.
                self.model.push(op);
                let id = if matches!(a, Action::AppendDurable(_)) {
                    let id = self.wal().append_durable(&bytes)?;
                    self.acked = id.get();
                    id
                } else {
                    let id = self.wal().append(&bytes)?;
                    if self.every.is_some_and(|n| id.get() % n == 0) {
                        self.acked = id.get();
                    }
                    id
                };
                assert_eq!(id.get(), self.model.len(), "entry id");
            }
            Action::Sync => {
                self.wal().sync()?;
                self.acked = self.model.len();
            }
            Action::Publish(sel) => {
                let len = self.model.len();
                let lower = self.checkpoints.first().copied().unwrap_or(1).max(1);
                if len < lower {
                    // An empty log: nothing to checkpoint, nothing written.
                    let r = self.publish(EntryId::new(1));
                    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
                    return Ok(());
                }
                let e = lower + sel % (len - lower + 1);
                self.in_flight = Some(e);
                self.publish(EntryId::new(e))?;
                self.in_flight = None;
                self.acked = len;
                self.checkpoints.retain(|&c| c != e);
                self.checkpoints.push(e);
                self.checkpoints.sort_unstable_by(|a, b| b.cmp(a));
                self.checkpoints.truncate(self.keep);
            }
            Action::PublishPastEnd(past) => {
                let e = self.model.len() + u64::from(*past);
                let before = self.mem.as_ref().map(MemoryDirectory::op_count);
                match self.publish(EntryId::new(e)) {
                    Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, "last_entry"),
                    other => panic!("publish at {e} past the log: {other:?}"),
                }
                let after = self.mem.as_ref().map(MemoryDirectory::op_count);
                assert_eq!(before, after, "a refused publish wrote");
            }
            Action::Reopen => {
                self.wal.take().expect("open").close()?;
                self.acked = self.model.len();
                self.wal = Some(Wal::open(Arc::clone(&self.dir), self.wal_opts.clone())?);
                assert_eq!(self.wal().next_entry_id().get(), self.model.len() + 1);
            }
            Action::Crash(seed) => match self.pending {
                Some(pending) => self.crash(pending, "power loss pending at a crash"),
                None => self.crash(*seed, "power loss between actions"),
            },
            Action::CrashDuring { after, seed } => {
                if self.pending.is_none() {
                    let mem = self.mem.as_ref().expect("crashes only on memory");
                    mem.halt_after(mem.op_count() + u64::from(*after));
                    self.pending = Some(*seed);
                }
            }
        }
        Ok(())
    }

    fn publish(&self, e: EntryId) -> zerodur::Result<()> {
        let state = self.model.states.get(e.get() as usize);
        let empty = State::new();
        publish_checkpoint(
            &*self.dir,
            self.wal(),
            &self.publish_opts,
            e,
            state.unwrap_or(&empty),
        )
        .map(|_| ())
    }

    /// Strict recovery of the live directory: every entry, from the newest
    /// checkpoint, and exactly the checkpoints the model keeps.
    fn check_live(&self, what: &str) {
        let o = recover(&self.dir, &self.recovery_strict)
            .unwrap_or_else(|e| panic!("{what}: strict recovery: {e}"));
        let n = self.model.len();
        assert_eq!(o.last_entry.unwrap_or(0), n, "{what}: last entry");
        assert_eq!(&o.state, self.model.state(n), "{what}: state");
        assert_eq!(
            o.checkpoint_entry,
            self.checkpoints.first().copied(),
            "{what}: checkpoint used"
        );
        if let Some(c) = o.checkpoint_entry {
            assert_eq!(o.checkpoint_state.as_ref(), Some(self.model.state(c)));
        }
        let c = o.checkpoint_entry.unwrap_or(0);
        assert_eq!(o.ids, (c + 1..=n).collect::<Vec<_>>(), "{what}: ids");
        assert!(!o.torn_tail && o.skipped.is_empty(), "{what}: {o:?}");
        assert_eq!(
            checkpoint_entries_in(&*self.dir, self.folder),
            self.checkpoints,
            "{what}: checkpoints on disk"
        );
    }

    /// Power loss with `seed`, recovery, and reopening on the image.
    fn crash(&mut self, seed: u64, what: &str) {
        let mem = self.mem.as_ref().expect("crashes only on memory");
        self.wal = None;
        let image = mem.crash_image(&CrashPolicy::seeded(seed));
        let dir: Arc<dyn Directory> = Arc::new(image.clone());
        let what = format!("{what}, crash #{}, seed {seed}", self.crashes);
        self.crashes += 1;

        // The checkpoints: the model's, plus perhaps an interrupted publish's
        // (whose pruning may have been partial).
        let listed = checkpoint_entries_in(&image, self.folder);
        let mut allowed = self.checkpoints.clone();
        allowed.extend(self.in_flight);
        assert!(
            listed.iter().all(|c| allowed.contains(c)),
            "{what}: checkpoints {listed:?}, expected among {allowed:?}"
        );
        let mut must = allowed.clone();
        must.sort_unstable_by(|a, b| b.cmp(a));
        must.dedup();
        must.truncate(self.keep);
        assert!(
            must.iter()
                .all(|c| listed.contains(c) || Some(*c) == self.in_flight),
            "{what}: checkpoints {listed:?}, must hold {must:?}"
        );

        let o = recover(&dir, &self.recovery_best_effort)
            .unwrap_or_else(|e| panic!("{what}: recovery: {e}"));
        assert_eq!(
            recover(&dir, &self.recovery_best_effort).ok().as_ref(),
            Some(&o),
            "{what}: recovery is not idempotent"
        );
        assert_eq!(image.op_count(), 0, "{what}: recovery wrote");
        let n = o.n();
        assert!(
            self.acked <= n && n <= self.model.len(),
            "{what}: recovered {n}, acknowledged {}, appended {}",
            self.acked,
            self.model.len()
        );
        assert_eq!(&o.state, self.model.state(n), "{what}: state after {n}");
        assert_eq!(
            o.checkpoint_entry,
            listed.first().copied(),
            "{what}: checkpoint"
        );
        if let Some(c) = o.checkpoint_entry {
            assert!(c <= n, "{what}: checkpoint {c} past the log's end {n}");
            assert_eq!(o.checkpoint_state.as_ref(), Some(self.model.state(c)));
        }
        let c = o.checkpoint_entry.unwrap_or(0);
        assert_eq!(o.ids, (c + 1..=n).collect::<Vec<_>>(), "{what}: ids");
        assert!(o.skipped.is_empty(), "{what}: skipped {:?}", o.skipped);

        // The entries after `n` are lost; the image is the directory now.
        self.model.truncate(n);
        self.acked = n;
        self.checkpoints = listed;
        self.in_flight = None;
        self.pending = None;
        self.dir = dir;
        self.mem = Some(image);
        let wal = Wal::open(Arc::clone(&self.dir), self.wal_opts.clone())
            .unwrap_or_else(|e| panic!("{what}: Wal::open after the crash: {e}"));
        assert_eq!(wal.next_entry_id().get(), n + 1, "{what}: resume point");
        self.wal = Some(wal);
        self.check_live(&format!("{what}: after reopening"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn recovery_matches_model_on_memory_with_crashes(case in case_strategy(true, 150)) {
        let mem = MemoryDirectory::new();
        let dir: Arc<dyn Directory> = Arc::new(mem.clone());
        let mut h = Harness::new(dir, Some(mem), &case);
        h.run(&case.actions);
    }

    #[test]
    fn recovery_matches_model_on_fs(case in case_strategy(false, 50)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = FsDirectory::arc(tmp.path()).expect("fs directory");
        let mut h = Harness::new(dir, None, &case);
        h.run(&case.actions);
    }
}
