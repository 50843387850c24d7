//! Helpers shared by the recovery tests: a key-value state machine whose
//! entries are rkyv-archived [`Op`]s, a model of what every prefix of the log
//! must recover to, a workload runner that stops at the first error (a halted
//! [`MemoryDirectory`] makes every operation after the `k`th fail), and the
//! oracle a recovered image is held to.
//!
//! Each test crate uses a different subset, so unused ones are expected.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use zerodur::publish::{publish_checkpoint, PublishOptions};
use zerodur::recover::{recover_with_wal, RecoveryEvent, RecoveryObserver, RecoveryOptions};
use zerodur::wal::{EntryId, Wal, WalOptions, WalStats};
use zerodur::{list_checkpoints, CrashPolicy, Directory, MemoryDirectory, OpKind, OpRecord};

pub const WAL_DIR: &str = "wal";
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// Schema tag of the checkpoints.
pub const TAG: u64 = 0x5245_434f_5645_5259;

/// The state machine's state, and the checkpoint type.
pub type State = BTreeMap<u64, u64>;

/// One WAL entry.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `state[key] = value`.
    Put { key: u64, value: u64 },
    /// `state[key] += delta` (wrapping; a missing key counts as 0).
    Add { key: u64, delta: u64 },
    /// Removes `key`.
    Remove { key: u64 },
    /// `state[key] = digest(bytes)`: a large entry whose every byte matters.
    Note { key: u64, bytes: Vec<u8> },
}

/// FNV-1a of `bytes`, mixed with the length.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ bytes.len() as u64
}

/// Applies an owned op (the model).
pub fn apply(state: &mut State, op: &Op) {
    match op {
        Op::Put { key, value } => {
            state.insert(*key, *value);
        }
        Op::Add { key, delta } => {
            let v = state.entry(*key).or_insert(0);
            *v = v.wrapping_add(*delta);
        }
        Op::Remove { key } => {
            state.remove(key);
        }
        Op::Note { key, bytes } => {
            state.insert(*key, digest(bytes));
        }
    }
}

/// Applies an archived op, read in place from the WAL (recovery).
pub fn apply_archived(state: &mut State, op: &ArchivedOp) {
    match op {
        ArchivedOp::Put { key, value } => {
            state.insert(key.to_native(), value.to_native());
        }
        ArchivedOp::Add { key, delta } => {
            let v = state.entry(key.to_native()).or_insert(0);
            *v = v.wrapping_add(delta.to_native());
        }
        ArchivedOp::Remove { key } => {
            state.remove(&key.to_native());
        }
        ArchivedOp::Note { key, bytes } => {
            state.insert(key.to_native(), digest(bytes.as_slice()));
        }
    }
}

/// SplitMix64, for deterministic workloads.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The `i`th op of a deterministic workload: mostly small updates of 48
/// keys, every third one a `Note` of `note_min..note_max` bytes so segments
/// fill and rotate.
pub fn op_for(rng: &mut Rng, note_min: usize, note_max: usize) -> Op {
    let key = rng.below(48);
    match rng.below(6) {
        0 | 1 => Op::Put {
            key,
            value: rng.next(),
        },
        2 => Op::Add {
            key,
            delta: rng.below(1000),
        },
        3 => Op::Remove { key },
        _ => {
            let len = note_min + rng.below((note_max - note_min) as u64 + 1) as usize;
            let seed = rng.next();
            let mut r = Rng(seed);
            Op::Note {
                key,
                bytes: (0..len).map(|_| r.next() as u8).collect(),
            }
        }
    }
}

/// The state after every prefix of a sequence of ops: `states[n]` is the
/// state after the first `n`.
#[derive(Debug, Clone)]
pub struct Model {
    pub ops: Vec<Op>,
    pub states: Vec<State>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    pub fn new() -> Model {
        Model {
            ops: Vec::new(),
            states: vec![State::new()],
        }
    }

    pub fn push(&mut self, op: Op) {
        let mut s = self.states.last().expect("states[0]").clone();
        apply(&mut s, &op);
        self.ops.push(op);
        self.states.push(s);
    }

    /// Forgets every op after the first `n` (a crash lost them).
    pub fn truncate(&mut self, n: u64) {
        self.ops.truncate(n as usize);
        self.states.truncate(n as usize + 1);
    }

    pub fn len(&self) -> u64 {
        self.ops.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn state(&self, n: u64) -> &State {
        &self.states[n as usize]
    }
}

/// The WAL used by the crash tests: 8 KiB segments, so a few dozen entries
/// rotate, and a recycle pool of `recycle` files.
pub fn wal_options(recycle: usize) -> WalOptions {
    WalOptions::new(WAL_DIR)
        .segment_size_bytes(8 * 1024)
        .recycle_capacity(recycle)
}

pub fn publish_options(keep: usize) -> PublishOptions {
    PublishOptions::new()
        .checkpoint_dir(CHECKPOINT_DIR)
        .tag(TAG)
        .keep(keep)
}

pub fn recovery_options(strict: bool) -> RecoveryOptions {
    let o = if strict {
        RecoveryOptions::strict()
    } else {
        RecoveryOptions::best_effort()
    };
    o.wal_dir(WAL_DIR).checkpoint_dir(CHECKPOINT_DIR).tag(TAG)
}

/// Number of seeded crash policies per crash point:
/// `ZERODUR_CRASH_POLICIES` (default 8), never fewer than 8.
pub fn seeded_policy_count() -> u64 {
    std::env::var("ZERODUR_CRASH_POLICIES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(8)
        .max(8)
}

/// The policies for one crash point: `keep_all`, `drop_all` and
/// [`seeded_policy_count`] seeded ones whose seeds depend on `salt`, so
/// different crash points see different power losses.
pub fn policies(salt: u64) -> Vec<CrashPolicy> {
    let mut v = vec![CrashPolicy::keep_all(), CrashPolicy::drop_all()];
    let mut r = Rng(salt.wrapping_mul(0xA24B_AED4_963E_E407));
    v.extend((0..seeded_policy_count()).map(|_| CrashPolicy::seeded(r.next())));
    v
}

/// What one recovery produced, with everything the oracle looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    /// The chosen checkpoint's content, as `init` saw it.
    pub checkpoint_state: Option<State>,
    pub checkpoint: Option<String>,
    pub checkpoint_entry: Option<u64>,
    pub replayed: u64,
    pub last_entry: Option<u64>,
    pub torn_tail: bool,
    pub skipped: Vec<String>,
    /// Ids handed to `apply`, in order.
    pub ids: Vec<u64>,
}

impl Outcome {
    /// The number of entries the state includes.
    pub fn n(&self) -> u64 {
        self.last_entry.unwrap_or(0)
    }
}

struct Replaying {
    state: State,
    checkpoint_state: Option<State>,
    ids: Vec<u64>,
}

/// Runs [`recover_with_wal`] with the test state machine.
pub fn recover(dir: &Arc<dyn Directory>, opts: &RecoveryOptions) -> zerodur::Result<Outcome> {
    let r = recover_with_wal::<State, Op, _, _, _>(
        dir,
        opts,
        |ckpt| {
            let s: Option<State> = ckpt.map(|c| {
                c.iter()
                    .map(|(k, v)| (k.to_native(), v.to_native()))
                    .collect()
            });
            Replaying {
                state: s.clone().unwrap_or_default(),
                checkpoint_state: s,
                ids: Vec::new(),
            }
        },
        |st, id, op| {
            st.ids.push(id.get());
            apply_archived(&mut st.state, op);
        },
    )?;
    Ok(Outcome {
        state: r.state.state,
        checkpoint_state: r.state.checkpoint_state,
        checkpoint: r.checkpoint,
        checkpoint_entry: r.checkpoint_entry.map(EntryId::get),
        replayed: r.replayed,
        last_entry: r.last_entry.map(EntryId::get),
        torn_tail: r.torn_tail,
        skipped: r.skipped.iter().map(|s| s.path.clone()).collect(),
        ids: r.state.ids,
    })
}

/// A [`RecoveryObserver`] that keeps every event.
#[derive(Debug, Default)]
pub struct Events(pub Mutex<Vec<RecoveryEvent>>);

impl RecoveryObserver for Events {
    fn on_event(&self, event: &RecoveryEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Events {
    pub fn take(&self) -> Vec<RecoveryEvent> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// One step of a workload.
#[derive(Debug, Clone)]
pub enum Step {
    /// `Wal::open` (the first step of every workload).
    Open,
    /// `append_archived`: acknowledged by nothing.
    Append(Op),
    /// `append_durable`: acknowledged when it returns.
    AppendDurable(Op),
    /// `sync`: acknowledges everything appended before it.
    Sync,
    /// `publish_checkpoint` of the state after entry `last - lag`.
    Publish { lag: u64 },
}

/// A workload: its steps and the model of the ops they append, in order.
#[derive(Debug, Clone)]
pub struct Script {
    pub steps: Vec<Step>,
    pub model: Model,
    pub recycle: usize,
    pub keep: usize,
}

impl Script {
    pub fn new(steps: Vec<Step>, recycle: usize, keep: usize) -> Script {
        let mut model = Model::new();
        for s in &steps {
            if let Step::Append(op) | Step::AppendDurable(op) = s {
                model.push(op.clone());
            }
        }
        Script {
            steps,
            model,
            recycle,
            keep,
        }
    }
}

/// What a (possibly interrupted) run of a workload did.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Entries whose append was called (the last may have failed).
    pub attempted: u64,
    /// Highest entry acknowledged durable.
    pub acked: u64,
    /// Entries of the checkpoints whose publish was called.
    pub publish_attempts: Vec<u64>,
    /// Entries of the checkpoints whose publish returned `Ok`.
    pub published: Vec<u64>,
    /// Steps that completed.
    pub steps_done: usize,
    /// The first error, which stopped the run.
    pub error: Option<String>,
}

/// Runs `steps[range]` on `dir`, stopping at the first error.
pub fn run_steps(
    dir: &Arc<dyn Directory>,
    script: &Script,
    range: std::ops::Range<usize>,
    wal: &mut Option<Wal>,
    p: &mut Progress,
) {
    for step in &script.steps[range] {
        if let Err(e) = run_step(dir, script, step, wal, p) {
            p.error = Some(e.to_string());
            return;
        }
        p.steps_done += 1;
    }
}

fn run_step(
    dir: &Arc<dyn Directory>,
    script: &Script,
    step: &Step,
    wal: &mut Option<Wal>,
    p: &mut Progress,
) -> zerodur::Result<()> {
    let w = || wal.as_ref().expect("Step::Open comes first");
    match step {
        Step::Open => {
            *wal = Some(Wal::open(Arc::clone(dir), wal_options(script.recycle))?);
        }
        Step::Append(op) | Step::AppendDurable(op) => {
            p.attempted += 1;
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(op).expect("serialize");
            let id = if matches!(step, Step::AppendDurable(_)) {
                let id = w().append_durable(&bytes)?;
                p.acked = p.acked.max(id.get());
                id
            } else {
                w().append(&bytes)?
            };
            assert_eq!(id.get(), p.attempted, "entry ids are consecutive");
        }
        Step::Sync => {
            w().sync()?;
            p.acked = p.attempted;
        }
        Step::Publish { lag } => {
            let e = p.attempted.saturating_sub(*lag).max(1);
            p.publish_attempts.push(e);
            let state = script.model.state(e);
            publish_checkpoint(
                &**dir,
                w(),
                &publish_options(script.keep),
                EntryId::new(e),
                state,
            )?;
            // The publish synced the log first: everything appended is durable.
            p.acked = p.attempted;
            p.published.push(e);
        }
    }
    Ok(())
}

/// The phase of a workload a crash point falls in, from the operation that
/// did not happen: the step and, inside a publish, which part of the
/// protocol.
pub fn classify(step: &Step, step_no: usize, phase: &str) -> String {
    match step {
        Step::Open => "Wal::open".into(),
        Step::Append(_) | Step::AppendDurable(_) => "append".into(),
        Step::Sync => "sync".into(),
        Step::Publish { .. } => format!("publish #{step_no}: {phase}"),
    }
}

/// Splits the operations of one publish into its protocol phases: WAL sync,
/// checkpoint write, truncation, pruning. `ops` are the operations the
/// publish performed, in order; returns one label per operation.
pub fn publish_phases(ops: &[OpRecord]) -> Vec<&'static str> {
    let mut phase = "wal sync";
    ops.iter()
        .map(|o| {
            let in_ckpt = o.path.starts_with(CHECKPOINT_DIR);
            let in_wal = o.path.starts_with(WAL_DIR);
            phase = match (phase, o.kind) {
                ("wal sync", _) if in_ckpt || o.kind == OpKind::SyncDir => "checkpoint write",
                ("checkpoint write" | "wal sync", OpKind::Rename | OpKind::Remove) if in_wal => {
                    "truncation"
                }
                (_, OpKind::Remove) if in_ckpt => "pruning",
                (p, _) => p,
            };
            phase
        })
        .collect()
}

/// Crash point `k` of a workload: the first `k` operations of the crash
/// window succeeded, the next one did not.
pub struct CrashPoint {
    pub k: u64,
    pub progress: Progress,
    /// The directory, halted; take crash images of it.
    pub dir: MemoryDirectory,
    /// Where in the workload the crash falls (see [`classify`]).
    pub label: String,
}

/// Runs `script` once without a crash and returns the labels of the crash
/// points in the window `steps[window..]` (one per operation, plus "end"),
/// and the WAL's counters at the end.
pub fn crash_labels(script: &Script, window: usize) -> (Vec<String>, WalStats) {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let mut wal = None;
    let mut p = Progress::default();
    run_steps(&dir, script, 0..window, &mut wal, &mut p);
    assert!(p.error.is_none(), "setup failed: {:?}", p.error);
    let base = mem.op_count();
    let mut labels = Vec::new();
    for (i, step) in script.steps.iter().enumerate().skip(window) {
        let before = mem.op_count();
        run_steps(&dir, script, i..i + 1, &mut wal, &mut p);
        assert!(p.error.is_none(), "step {i} failed: {:?}", p.error);
        let log = mem.op_log();
        let ops = &log[before as usize..mem.op_count() as usize];
        let phases = match step {
            Step::Publish { .. } => publish_phases(ops),
            _ => vec![""; ops.len()],
        };
        labels.extend(phases.iter().map(|ph| classify(step, i, ph)));
    }
    assert_eq!(labels.len() as u64, mem.op_count() - base);
    labels.push("end".into());
    let stats = wal.as_ref().expect("opened").stats();
    (labels, stats)
}

/// Runs `script` with a power loss after operation `k` of the window
/// `steps[window..]` (the steps before it run to completion first).
pub fn crash_at(script: &Script, window: usize, k: u64, label: String) -> CrashPoint {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let mut wal = None;
    let mut p = Progress::default();
    run_steps(&dir, script, 0..window, &mut wal, &mut p);
    assert!(p.error.is_none(), "setup failed: {:?}", p.error);
    mem.halt_after(mem.op_count() + k);
    run_steps(&dir, script, window..script.steps.len(), &mut wal, &mut p);
    drop(wal);
    CrashPoint {
        k,
        progress: p,
        dir: mem,
        label,
    }
}

/// Checks a recovery of a crash image against the workload's model and
/// progress: the state is exactly the model after some `n` entries with
/// `acked <= n <= attempted`, `last_entry == n`, the ids replayed are
/// consecutive after the checkpoint, and the checkpoint is one that was
/// published, no older than the last publish that returned (unless
/// `fallback`: a damaged newest checkpoint was skipped), holding the model's
/// state at its entry.
pub fn check_outcome(
    o: &Outcome,
    model: &Model,
    p: &Progress,
    fallback: bool,
    what: &dyn Fn() -> String,
) {
    let n = o.n();
    assert!(
        p.acked <= n && n <= p.attempted,
        "{}: recovered {n} entries, acknowledged {}, attempted {}",
        what(),
        p.acked,
        p.attempted
    );
    assert_eq!(
        &o.state,
        model.state(n),
        "{}: state after {n} entries",
        what()
    );
    let c = o.checkpoint_entry.unwrap_or(0);
    let expected_ids: Vec<u64> = (c + 1..=n).collect();
    assert_eq!(o.ids, expected_ids, "{}: replayed ids", what());
    assert_eq!(o.replayed, n - c, "{}: replayed count", what());
    match o.checkpoint_entry {
        Some(c) => {
            assert!(
                p.publish_attempts.contains(&c),
                "{}: checkpoint at {c} was never published ({:?})",
                what(),
                p.publish_attempts
            );
            if !fallback {
                let newest_ok = p.published.iter().copied().max().unwrap_or(0);
                assert!(
                    c >= newest_ok,
                    "{}: recovered from checkpoint {c}, older than the published {newest_ok}",
                    what()
                );
            }
            assert_eq!(
                o.checkpoint_state.as_ref(),
                Some(model.state(c)),
                "{}: checkpoint content",
                what()
            );
        }
        None => assert!(
            p.published.is_empty(),
            "{}: no checkpoint recovered, but {:?} were published",
            what(),
            p.published
        ),
    }
    if !fallback {
        assert!(o.skipped.is_empty(), "{}: skipped {:?}", what(), o.skipped);
    }
}

/// The directory always opens again and takes appends: `Wal::open` resumes
/// at `n + 1`, an appended entry gets that id, and a strict recovery after a
/// clean close gives the recovered state plus that entry, from the same
/// checkpoint. Then a publish of that state works in what the crash left
/// (leftover temporary files, a recycle pool from an earlier life, a partly
/// truncated log) and a strict recovery starts from it with nothing to
/// replay.
pub fn check_reopen_and_append(
    image: &MemoryDirectory,
    o: &Outcome,
    recycle: usize,
    keep: usize,
    what: &str,
) {
    let dir: Arc<dyn Directory> = Arc::new(image.clone());
    let n = o.n();
    let wal = Wal::open(Arc::clone(&dir), wal_options(recycle))
        .unwrap_or_else(|e| panic!("{what}: Wal::open after recovery: {e}"));
    assert_eq!(wal.next_entry_id().get(), n + 1, "{what}: resume point");
    let extra = Op::Put {
        key: 1_000_000,
        value: n + 1,
    };
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&extra).expect("serialize");
    let id = wal
        .append_durable(&bytes)
        .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
    assert_eq!(id.get(), n + 1, "{what}: id of the new entry");
    wal.sync().unwrap_or_else(|e| panic!("{what}: sync: {e}"));
    // Strict recovery refuses a damaged checkpoint; with one skipped, the
    // recovery after reopen is best effort (until the publish below).
    let again = recover(&dir, &recovery_options(o.skipped.is_empty()))
        .unwrap_or_else(|e| panic!("{what}: recovery after reopen: {e}"));
    let mut expected = o.state.clone();
    apply(&mut expected, &extra);
    assert_eq!(again.state, expected, "{what}: state after the new entry");
    assert_eq!(again.last_entry, Some(n + 1), "{what}: last entry");
    assert_eq!(again.checkpoint, o.checkpoint, "{what}: checkpoint");
    assert!(!again.torn_tail, "{what}: torn tail after a sync");

    publish_checkpoint(&*dir, &wal, &publish_options(keep), id, &expected)
        .unwrap_or_else(|e| panic!("{what}: publish after recovery: {e}"));
    wal.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
    let last = recover(&dir, &recovery_options(true))
        .unwrap_or_else(|e| panic!("{what}: strict recovery after publish: {e}"));
    assert_eq!(last.state, expected, "{what}: state after publish");
    assert_eq!(last.checkpoint_entry, Some(n + 1), "{what}: new checkpoint");
    assert_eq!(last.replayed, 0, "{what}: replayed after publish");
}

/// The entries of the checkpoints in `dir`, newest first.
pub fn checkpoint_entries(dir: &dyn Directory) -> Vec<u64> {
    checkpoint_entries_in(dir, CHECKPOINT_DIR)
}

/// The entries of the checkpoints in `folder` of `dir`, newest first.
pub fn checkpoint_entries_in(dir: &dyn Directory, folder: &str) -> Vec<u64> {
    if !dir.exists(folder).unwrap() {
        return Vec::new();
    }
    list_checkpoints(dir, folder)
        .unwrap()
        .iter()
        .map(|n| n.last_entry().expect("published checkpoints have an entry"))
        .collect()
}

/// Counts per label, for the report a test prints.
#[derive(Debug, Default)]
pub struct Tally(pub BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, label: &str, n: u64) {
        *self.0.entry(label.to_owned()).or_default() += n;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn print(&self, test: &str, elapsed: std::time::Duration) {
        for (label, n) in &self.0 {
            println!("  {test}: {label}: {n}");
        }
        println!(
            "{test}: crash states checked: {} in {:.2?}",
            self.total(),
            elapsed
        );
        println!("crash states checked: {}", self.total());
    }

    /// Asserts crash states were checked in every phase named.
    #[track_caller]
    pub fn assert_covers(&self, labels: &[&str]) {
        for l in labels {
            assert!(
                self.0.get(*l).is_some_and(|&n| n > 0),
                "no crash state in `{l}`: {:?}",
                self.0
            );
        }
    }
}
