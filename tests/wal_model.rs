//! The WAL against a model. Random operation sequences — appends, batches,
//! durable appends, syncs, reopens, prefix truncations and, on the memory
//! backend, simulated power losses — run with small segments and a recycle
//! pool. After every operation, strict replay must equal the model: the ids
//! and payloads of the entries the log holds.
//!
//! After a crash the model cannot say exactly what survives; it says what
//! may: a prefix of the attempted entries that holds every acknowledged
//! durable entry, ends on a batch boundary, and starts where the log started
//! (truncation is durable when it returns). The replayed stream is checked
//! against those rules, then becomes the model.
//!
//! Case counts follow `PROPTEST_CASES` (proptest's default otherwise).

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions, WalReader};
use zerodur::{CorruptKind, CrashPolicy, Directory, Error, FsDirectory, MemoryDirectory};

const WAL_DIR: &str = "wal";

// The byte layout of `FORMAT.md`, just enough to know when a batch fits.
const SEGMENT_HEADER_BYTES: u64 = 64;
const FRAME_HEADER_BYTES: u64 = 32;
const FRAME_ALIGN_BYTES: u64 = 16;

fn frame_bytes(len: usize) -> u64 {
    (FRAME_HEADER_BYTES + len as u64).next_multiple_of(FRAME_ALIGN_BYTES)
}

/// Bytes of a segment frames may use (the seal marker's room excluded).
fn segment_capacity_bytes(segment_size: u64) -> u64 {
    let usable = segment_size - SEGMENT_HEADER_BYTES - FRAME_HEADER_BYTES;
    usable - usable % FRAME_ALIGN_BYTES
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    AppendBatch(Vec<usize>),
    AppendDurable(usize),
    AppendBatchDurable(Vec<usize>),
    Sync,
    Reopen,
    /// Truncate up to an id chosen by this value among `0..=durable`.
    TruncatePrefix(u64),
    /// Power loss with `CrashPolicy::seeded(seed)`, then recovery.
    Crash(u64),
}

#[derive(Debug, Clone)]
struct Case {
    segment_size: u64,
    recycle_capacity: usize,
    ops: Vec<Op>,
}

/// Payload lengths: mostly anywhere in `0..2000`, often small, so segments
/// hold between a handful and a few hundred entries.
fn len_strategy() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => 0usize..2000, 2 => 0usize..64]
}

fn op_strategy(with_crash: bool) -> BoxedStrategy<Op> {
    let base = prop_oneof![
        8 => len_strategy().prop_map(Op::Append),
        3 => vec(len_strategy(), 1..8).prop_map(Op::AppendBatch),
        3 => len_strategy().prop_map(Op::AppendDurable),
        1 => vec(len_strategy(), 1..8).prop_map(Op::AppendBatchDurable),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        2 => any::<u64>().prop_map(Op::TruncatePrefix),
    ];
    if with_crash {
        prop_oneof![12 => base, 1 => any::<u64>().prop_map(Op::Crash)].boxed()
    } else {
        base.boxed()
    }
}

fn case_strategy(with_crash: bool, max_ops: usize) -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(8 * 1024u64), Just(12 * 1024), Just(16 * 1024)],
        0usize..4,
        vec(op_strategy(with_crash), 1..max_ops),
    )
        .prop_map(|(segment_size, recycle_capacity, ops)| Case {
            segment_size,
            recycle_capacity,
            ops,
        })
}

/// A payload that differs for every append, even when a crash makes an id
/// be handed out again: a replayed stale frame can never pass as current.
fn payload(id: u64, salt: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// What the log must hold.
#[derive(Debug)]
struct Model {
    /// Id of the first entry the log holds, or would hold if empty.
    base: u64,
    /// Payloads of entries `base..`, in order.
    entries: Vec<Vec<u8>>,
    /// `batch_end[i]`: entry `base + i` ends its batch (or is a lone entry).
    batch_end: Vec<bool>,
    /// Highest id the WAL has acknowledged durable (0: none).
    durable: u64,
    /// Bumped by every append, mixed into payloads.
    salt: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            base: 1,
            entries: Vec::new(),
            batch_end: Vec::new(),
            durable: 0,
            salt: 0,
        }
    }

    fn next_id(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn expected(&self) -> Vec<(u64, Vec<u8>)> {
        (self.base..)
            .zip(self.entries.iter().cloned())
            .collect::<Vec<_>>()
    }

    /// Payloads for a batch of `lens`, starting at the next id.
    fn payloads(&mut self, lens: &[usize]) -> Vec<Vec<u8>> {
        self.salt += 1;
        let first = self.next_id();
        lens.iter()
            .enumerate()
            .map(|(i, &len)| payload(first + i as u64, self.salt, len))
            .collect()
    }

    fn push_batch(&mut self, payloads: Vec<Vec<u8>>) {
        let n = payloads.len();
        for (i, p) in payloads.into_iter().enumerate() {
            self.entries.push(p);
            self.batch_end.push(i + 1 == n);
        }
    }
}

type Replayed = Vec<(u64, Vec<u8>)>;

fn replay(dir: &Arc<dyn Directory>, mode: ReadMode) -> zerodur::Result<Replayed> {
    let mut out = Vec::new();
    WalReader::open(dir.clone(), WAL_DIR, mode)?.replay(None, |id, bytes| {
        out.push((id.get(), bytes.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

/// Compact description for failure messages (payloads are long).
fn ids(r: &[(u64, Vec<u8>)]) -> String {
    match (r.first(), r.last()) {
        (Some(a), Some(b)) => format!("{}..={} ({} entries)", a.0, b.0, r.len()),
        _ => "empty".into(),
    }
}

struct Harness {
    dir: Arc<dyn Directory>,
    /// The same directory, when it is a `MemoryDirectory` (crashes allowed).
    mem: Option<MemoryDirectory>,
    wal: Option<Wal>,
    opts: WalOptions,
    segment_size: u64,
    model: Model,
}

impl Harness {
    fn new(
        dir: Arc<dyn Directory>,
        mem: Option<MemoryDirectory>,
        case: &Case,
    ) -> Result<Harness, TestCaseError> {
        let opts = WalOptions::new(WAL_DIR)
            .segment_size_bytes(case.segment_size)
            .recycle_capacity(case.recycle_capacity);
        let wal = Wal::open(dir.clone(), opts.clone())
            .map_err(|e| TestCaseError::fail(format!("first open: {e}")))?;
        Ok(Harness {
            dir,
            mem,
            wal: Some(wal),
            opts,
            segment_size: case.segment_size,
            model: Model::new(),
        })
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("wal is open between operations")
    }

    /// Raises the model's durable point to what the WAL acknowledges, after
    /// checking the WAL claims nothing it never appended.
    fn note_durable(&mut self) -> Result<(), TestCaseError> {
        let d = self.wal().durable_entry_id().map_or(0, EntryId::get);
        prop_assert!(
            d < self.model.next_id(),
            "durable id {} beyond the last appended {}",
            d,
            self.model.next_id() - 1
        );
        self.model.durable = self.model.durable.max(d);
        Ok(())
    }

    fn append_one(&mut self, len: usize, durable: bool) -> Result<(), TestCaseError> {
        let next = self.model.next_id();
        let p = self.model.payloads(&[len]).remove(0);
        let wal = self.wal();
        let id = if durable {
            wal.append_durable(&p)
        } else {
            wal.append(&p)
        }
        .map_err(|e| TestCaseError::fail(format!("append of {len} bytes: {e}")))?;
        prop_assert_eq!(id.get(), next);
        if durable {
            let d = wal.durable_entry_id().map_or(0, EntryId::get);
            prop_assert!(d >= next, "append_durable({next}) returned, durable is {d}");
        }
        self.model.push_batch(vec![p]);
        self.note_durable()
    }

    fn append_batch(&mut self, lens: &[usize], durable: bool) -> Result<(), TestCaseError> {
        let next = self.model.next_id();
        let payloads = self.model.payloads(lens);
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let total: u64 = lens.iter().map(|&l| frame_bytes(l)).sum();
        let fits = total <= segment_capacity_bytes(self.segment_size);
        let wal = self.wal();
        let r = if durable {
            wal.append_batch_durable(&refs)
        } else {
            wal.append_batch(&refs)
        };
        if !fits {
            prop_assert!(
                matches!(r, Err(Error::EntryTooLarge { .. })),
                "batch of {} frame bytes cannot fit a segment, got {:?}",
                total,
                r
            );
            prop_assert!(!wal.is_poisoned(), "a refused batch poisoned the WAL");
            prop_assert_eq!(wal.next_entry_id().get(), next);
            return Ok(());
        }
        let (a, b) = r
            .map_err(|e| TestCaseError::fail(format!("batch {lens:?}: {e}")))?
            .expect("non-empty batch");
        prop_assert_eq!((a.get(), b.get()), (next, next + lens.len() as u64 - 1));
        if durable {
            let d = wal.durable_entry_id().map_or(0, EntryId::get);
            prop_assert!(
                d >= b.get(),
                "durable batch ending {b} returned, durable is {d}"
            );
        }
        self.model.push_batch(payloads);
        self.note_durable()
    }

    fn reopen(&mut self) -> Result<(), TestCaseError> {
        drop(self.wal.take());
        let wal = Wal::open(self.dir.clone(), self.opts.clone())
            .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
        prop_assert_eq!(wal.next_entry_id().get(), self.model.next_id());
        // Resume makes everything before the tail durable.
        prop_assert_eq!(
            wal.durable_entry_id().map_or(0, EntryId::get),
            self.model.next_id() - 1
        );
        self.wal = Some(wal);
        self.note_durable()
    }

    fn truncate(&mut self, sel: u64) -> Result<(), TestCaseError> {
        let upto = sel % (self.model.durable + 1);
        let wal = self.wal();
        let before = wal
            .segment_ranges()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(before[0].first.get(), self.model.base, "{:?}", before);
        // Sealed segments whose entries are all <= upto go, oldest first.
        let expect_retired = before[..before.len() - 1]
            .iter()
            .take_while(|r| r.end.expect("sealed").get() <= upto + 1)
            .count();
        let retired = wal
            .truncate_prefix(EntryId::new(upto))
            .map_err(|e| TestCaseError::fail(format!("truncate_prefix({upto}): {e}")))?;
        prop_assert_eq!(retired, expect_retired, "upto {} over {:?}", upto, before);
        let new_base = before[retired].first.get();
        // The truncation floor: nothing above `upto` disappears.
        prop_assert!(new_base <= upto + 1 || retired == 0);
        let after = wal
            .segment_ranges()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&after[..], &before[retired..]);
        let drop_n = (new_base - self.model.base) as usize;
        self.model.entries.drain(..drop_n);
        self.model.batch_end.drain(..drop_n);
        self.model.base = new_base;
        Ok(())
    }

    /// Power loss now, then recovery on the image the crash left.
    fn crash(&mut self, seed: u64) -> Result<(), TestCaseError> {
        let mem = self.mem.as_ref().expect("crash only on the memory backend");
        let image = mem.crash_image(&CrashPolicy::seeded(seed));
        drop(self.wal.take());
        let dir: Arc<dyn Directory> = Arc::new(image.clone());

        let got = replay(&dir, ReadMode::BestEffort)
            .map_err(|e| TestCaseError::fail(format!("best-effort replay after crash: {e}")))?;
        match replay(&dir, ReadMode::Strict) {
            Ok(strict) => prop_assert_eq!(&strict, &got, "strict and best-effort differ"),
            Err(Error::Corrupt {
                kind: CorruptKind::TornTail,
                ..
            }) => {}
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "strict replay after crash: {e}"
                )))
            }
        }
        self.check_survivors(&got, seed)?;

        // Recovery: the directory opens, continues after the survivors, and
        // replays the same stream, now strictly.
        let wal = Wal::open(dir.clone(), self.opts.clone())
            .map_err(|e| TestCaseError::fail(format!("open after crash (seed {seed}): {e}")))?;
        let n = got.len();
        prop_assert_eq!(wal.next_entry_id().get(), self.model.base + n as u64);
        let again = replay(&dir, ReadMode::Strict)
            .map_err(|e| TestCaseError::fail(format!("strict replay after recovery: {e}")))?;
        prop_assert_eq!(&again, &got, "recovery changed the replayed stream");

        self.model.entries.truncate(n);
        self.model.batch_end.truncate(n);
        self.model.durable = self.model.next_id() - 1;
        self.dir = dir;
        self.mem = Some(image);
        self.wal = Some(wal);
        Ok(())
    }

    /// What survived a crash is a batch-aligned prefix of the attempted
    /// entries, starting at the log's first entry, holding every acked one.
    fn check_survivors(&self, got: &[(u64, Vec<u8>)], seed: u64) -> Result<(), TestCaseError> {
        let m = &self.model;
        prop_assert!(
            got.len() <= m.entries.len(),
            "seed {}: replayed {} but only {} attempted from {}",
            seed,
            ids(got),
            m.entries.len(),
            m.base
        );
        for (i, (id, bytes)) in got.iter().enumerate() {
            prop_assert_eq!(
                *id,
                m.base + i as u64,
                "seed {}: not a gap-free prefix",
                seed
            );
            prop_assert!(
                *bytes == m.entries[i],
                "seed {}: entry {} replayed with other bytes",
                seed,
                id
            );
        }
        // Last surviving id (`base - 1` if none; `base >= 1`).
        let last = m.base + got.len() as u64 - 1;
        prop_assert!(
            last >= m.durable || m.durable < m.base,
            "seed {}: acked entry {} lost; replayed {}",
            seed,
            m.durable,
            ids(got)
        );
        if let Some(n) = got.len().checked_sub(1) {
            prop_assert!(
                m.batch_end[n],
                "seed {}: replay ends inside a batch, at {}",
                seed,
                got[n].0
            );
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(len) => self.append_one(*len, false),
            Op::AppendDurable(len) => self.append_one(*len, true),
            Op::AppendBatch(lens) => self.append_batch(lens, false),
            Op::AppendBatchDurable(lens) => self.append_batch(lens, true),
            Op::Sync => {
                self.wal()
                    .sync()
                    .map_err(|e| TestCaseError::fail(format!("sync: {e}")))?;
                prop_assert_eq!(
                    self.wal().durable_entry_id().map_or(0, EntryId::get),
                    self.model.next_id() - 1
                );
                self.note_durable()
            }
            Op::Reopen => self.reopen(),
            Op::TruncatePrefix(sel) => self.truncate(*sel),
            Op::Crash(seed) => self.crash(*seed),
        }
    }

    /// Replay equals the model, and the writer agrees on the next id.
    fn check(&self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let got = replay(&self.dir, ReadMode::Strict).map_err(|e| {
            TestCaseError::fail(format!("step {step} ({op:?}): strict replay failed: {e}"))
        })?;
        let want = self.model.expected();
        prop_assert!(
            got == want,
            "step {} ({:?}): replayed {}, model holds {}",
            step,
            op,
            ids(&got),
            ids(&want)
        );
        prop_assert_eq!(self.wal().next_entry_id().get(), self.model.next_id());
        prop_assert_eq!(
            self.wal().last_entry_id().map(EntryId::get),
            Some(self.model.next_id() - 1).filter(|&l| l > 0)
        );
        Ok(())
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for (step, op) in ops.iter().enumerate() {
            self.apply(op)?;
            prop_assert!(!self.wal().is_poisoned(), "step {}: poisoned", step);
            self.check(step, op)?;
        }
        // A clean close leaves a log that replays strictly and reopens at the
        // same place.
        self.wal
            .take()
            .expect("open")
            .close()
            .map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
        prop_assert_eq!(
            replay(&self.dir, ReadMode::Strict).map_err(|e| TestCaseError::fail(e.to_string()))?,
            self.model.expected()
        );
        let wal = Wal::open(self.dir.clone(), self.opts.clone())
            .map_err(|e| TestCaseError::fail(format!("final reopen: {e}")))?;
        prop_assert_eq!(wal.next_entry_id().get(), self.model.next_id());
        Ok(())
    }
}

proptest! {
    #[test]
    fn replay_matches_model_on_memory_with_crashes(case in case_strategy(true, 200)) {
        let mem = MemoryDirectory::new();
        let dir: Arc<dyn Directory> = Arc::new(mem.clone());
        let mut h = Harness::new(dir, Some(mem), &case)?;
        h.run(&case.ops)?;
    }

    #[test]
    fn replay_matches_model_on_fs(case in case_strategy(false, 120)) {
        let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = FsDirectory::arc(tmp.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut h = Harness::new(dir, None, &case)?;
        h.run(&case.ops)?;
    }
}
