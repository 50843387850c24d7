//! An operation sequence against the WAL on a `MemoryDirectory`, with the
//! power cut after a countdown of directory operations, checked after every
//! crash against a model of what was attempted and what was acknowledged.

use std::sync::Arc;

use arbitrary::Arbitrary;
use zerodur::wal::{EntryId, ReadMode, Wal, WalOptions};
use zerodur::{CorruptKind, CrashPolicy, Directory, Error, MemoryDirectory};

use crate::{replay, Entries, WAL_DIR};

/// One WAL call. Lengths are reduced modulo 2000, batches to 8 entries.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Append(u16),
    AppendBatch(Vec<u16>),
    AppendDurable(u16),
    AppendBatchDurable(Vec<u16>),
    Sync,
    Reopen,
    /// Truncate up to an id chosen by this value among `0..=durable`.
    TruncatePrefix(u64),
}

/// Operations run until the directory halts after `countdown` more
/// operations (or they run out); then the power goes, with `seed`.
#[derive(Arbitrary, Debug, Clone)]
pub struct Cycle {
    pub countdown: u16,
    pub seed: u64,
    pub ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    pub segment_kib: u8,
    pub recycle_capacity: u8,
    pub cycles: Vec<Cycle>,
}

const MAX_CYCLES: usize = 6;
const MAX_OPS_PER_CYCLE: usize = 48;

fn payload(id: u64, salt: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the log may hold.
#[derive(Debug)]
struct Model {
    /// Id of the first entry the log holds (or would hold if empty).
    base: u64,
    /// Where the log may start after a crash: `base`, or a later segment
    /// start if a truncation was interrupted.
    base_candidates: Vec<u64>,
    /// Payloads of every entry from `base` on whose frames were written.
    entries: Vec<Vec<u8>>,
    batch_end: Vec<bool>,
    /// Highest id the WAL claimed durable.
    durable: u64,
    salt: u64,
}

impl Model {
    fn next_id(&self) -> u64 {
        self.base + self.entries.len() as u64
    }
}

struct Run {
    mem: MemoryDirectory,
    wal: Option<Wal>,
    opts: WalOptions,
    capacity: u64,
    model: Model,
}

/// Runs `input` and panics on any violation of the oracles.
pub fn run(input: Input) {
    let segment_size = u64::from(8 + input.segment_kib % 9) * 1024;
    let opts = WalOptions::new(WAL_DIR)
        .segment_size_bytes(segment_size)
        .recycle_capacity(usize::from(input.recycle_capacity % 4));
    let usable = segment_size - 64 - 32;
    let mut r = Run {
        mem: MemoryDirectory::new(),
        wal: None,
        opts,
        capacity: usable - usable % 16,
        model: Model {
            base: 1,
            base_candidates: vec![1],
            entries: Vec::new(),
            batch_end: Vec::new(),
            durable: 0,
            salt: 0,
        },
    };
    for cycle in input.cycles.iter().take(MAX_CYCLES) {
        r.mem
            .halt_after(r.mem.op_count() + u64::from(cycle.countdown % 512));
        if r.wal.is_none() {
            r.wal = Wal::open(r.dir(), r.opts.clone()).ok();
        }
        if r.wal.is_some() {
            for op in cycle.ops.iter().take(MAX_OPS_PER_CYCLE) {
                if r.apply(op).is_err() {
                    break;
                }
            }
        }
        r.crash(cycle.seed);
    }
}

impl Run {
    fn dir(&self) -> Arc<dyn Directory> {
        Arc::new(self.mem.clone())
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open")
    }

    /// Records the entries of a call the WAL assigned ids to, and what it
    /// claims durable. A call that `failed` may have written complete frames
    /// before failing: its entries may survive a crash, so they count as
    /// attempted either way (the cycle ends in a crash right after).
    fn note(&mut self, payloads: Vec<Vec<u8>>, failed: bool) {
        let wal = self.wal.as_ref().expect("open");
        let last = wal.last_entry_id().map_or(0, EntryId::get);
        let next = self.model.next_id();
        if last >= next || failed {
            if last >= next {
                assert_eq!(
                    last - next + 1,
                    payloads.len() as u64,
                    "ids for part of a call"
                );
            }
            let n = payloads.len();
            for (i, p) in payloads.into_iter().enumerate() {
                self.model.entries.push(p);
                self.model.batch_end.push(i + 1 == n);
            }
        } else {
            assert_eq!(last + 1, next, "the WAL lost track of its next id");
        }
        let d = wal.durable_entry_id().map_or(0, EntryId::get);
        assert!(d <= last, "durable {d} beyond the last appended {last}");
        self.model.durable = self.model.durable.max(d);
    }

    fn payloads(&mut self, lens: &[u16]) -> Vec<Vec<u8>> {
        self.model.salt += 1;
        let first = self.model.next_id();
        lens.iter()
            .enumerate()
            .map(|(i, &l)| payload(first + i as u64, self.model.salt, usize::from(l % 2000)))
            .collect()
    }

    fn apply(&mut self, op: &Op) -> zerodur::Result<()> {
        match op {
            Op::Append(len) | Op::AppendDurable(len) => {
                let durable = matches!(op, Op::AppendDurable(_));
                let p = self.payloads(&[*len]);
                let next = self.model.next_id();
                let r = if durable {
                    self.wal().append_durable(&p[0])
                } else {
                    self.wal().append(&p[0])
                };
                self.note(p, r.is_err());
                let id = r?;
                assert_eq!(id.get(), next);
                if durable {
                    assert!(self.model.durable >= next, "append_durable returned early");
                }
                Ok(())
            }
            Op::AppendBatch(lens) | Op::AppendBatchDurable(lens) => {
                let durable = matches!(op, Op::AppendBatchDurable(_));
                let lens: Vec<u16> = lens.iter().take(8).copied().collect();
                if lens.is_empty() {
                    return Ok(());
                }
                let p = self.payloads(&lens);
                let total: u64 = p.iter().map(|x| crate::frame_bytes(x.len()) as u64).sum();
                let refs: Vec<&[u8]> = p.iter().map(Vec::as_slice).collect();
                let r = if durable {
                    self.wal().append_batch_durable(&refs)
                } else {
                    self.wal().append_batch(&refs)
                };
                if total > self.capacity {
                    assert!(matches!(r, Err(Error::EntryTooLarge { .. })), "{r:?}");
                    assert!(!self.wal().is_poisoned());
                    return Ok(());
                }
                let next = self.model.next_id();
                self.note(p, r.is_err());
                let (a, b) = r?.expect("non-empty batch");
                assert_eq!((a.get(), b.get()), (next, next + lens.len() as u64 - 1));
                if durable {
                    assert!(
                        self.model.durable >= b.get(),
                        "durable batch returned early"
                    );
                }
                Ok(())
            }
            Op::Sync => {
                let r = self.wal().sync();
                self.note(Vec::new(), r.is_err());
                r?;
                assert_eq!(self.model.durable, self.model.next_id() - 1);
                Ok(())
            }
            Op::Reopen => {
                drop(self.wal.take());
                let wal = Wal::open(self.dir(), self.opts.clone())?;
                assert_eq!(wal.next_entry_id().get(), self.model.next_id());
                self.wal = Some(wal);
                self.note(Vec::new(), false);
                Ok(())
            }
            Op::TruncatePrefix(sel) => {
                let upto = sel % (self.model.durable + 1);
                let ranges = self.wal().segment_ranges()?;
                assert_eq!(ranges[0].first.get(), self.model.base);
                let expect = ranges[..ranges.len() - 1]
                    .iter()
                    .take_while(|r| r.end.expect("sealed").get() <= upto + 1)
                    .count();
                // Until it returns, any prefix of those may be retired.
                self.model
                    .base_candidates
                    .extend(ranges[1..=expect].iter().map(|r| r.first.get()));
                let n = self.wal().truncate_prefix(EntryId::new(upto))?;
                assert_eq!(n, expect);
                let new_base = ranges[n].first.get();
                assert!(n == 0 || new_base <= upto + 1, "truncated above {upto}");
                self.rebase(new_base);
                self.model.base_candidates = vec![new_base];
                Ok(())
            }
        }
    }

    fn rebase(&mut self, new_base: u64) {
        let k = (new_base - self.model.base) as usize;
        self.model.entries.drain(..k);
        self.model.batch_end.drain(..k);
        self.model.base = new_base;
    }

    /// Power loss with `seed`, then recovery, checked against the model.
    fn crash(&mut self, seed: u64) {
        let image = self.mem.crash_image(&CrashPolicy::seeded(seed));
        drop(self.wal.take());
        let dir: Arc<dyn Directory> = Arc::new(image.clone());
        let (before, r) = replay(&dir, ReadMode::BestEffort);
        if let Err(e) = r {
            panic!("best-effort replay after a crash failed: {e}");
        }
        match replay(&dir, ReadMode::Strict).1 {
            Ok(_)
            | Err(Error::Corrupt {
                kind: CorruptKind::TornTail,
                ..
            }) => {}
            Err(e) => panic!("strict replay after a crash: {e}"),
        }
        // The directory always opens again.
        let wal = match Wal::open(dir.clone(), self.opts.clone()) {
            Ok(w) => w,
            Err(e) => panic!("open after crash failed: {e}"),
        };
        let first = wal.segment_ranges().expect("ranges")[0].first.get();
        let m = &self.model;
        assert!(
            m.base_candidates.contains(&first),
            "log starts at {first}, allowed {:?}",
            m.base_candidates
        );
        self.rebase(first);
        self.check_survivors(&before, first);
        let next = first + before.len() as u64;
        assert_eq!(wal.next_entry_id().get(), next);
        let (after, r) = replay(&dir, ReadMode::Strict);
        if let Err(e) = r {
            panic!("strict replay after recovery failed: {e}");
        }
        assert!(after == before, "recovery changed the replayed stream");

        let n = before.len();
        self.model.entries.truncate(n);
        self.model.batch_end.truncate(n);
        self.model.durable = next - 1;
        self.model.base_candidates = vec![first];
        self.mem = image;
        self.wal = Some(wal);
    }

    /// A gap-free, batch-aligned prefix of the attempted entries holding
    /// every acknowledged one.
    fn check_survivors(&self, got: &Entries, first: u64) {
        let m = &self.model;
        assert!(got.len() <= m.entries.len(), "more entries than attempted");
        for (i, (id, p)) in got.iter().enumerate() {
            assert_eq!(*id, first + i as u64, "not a gap-free prefix");
            assert!(*p == m.entries[i], "entry {id} replayed with other bytes");
        }
        let last = first + got.len() as u64 - 1;
        assert!(
            m.durable < first || last >= m.durable,
            "acknowledged entry {} lost (replayed up to {last})",
            m.durable
        );
        if let Some(n) = got.len().checked_sub(1) {
            assert!(m.batch_end[n], "replay ends inside a batch at {}", got[n].0);
        }
    }
}
