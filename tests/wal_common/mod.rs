//! Helpers shared by `wal_crash.rs` and `wal_defects.rs`:
//!
//! - [`Life`]: a model of one run of a workload (what was attempted, what was
//!   acknowledged durable, which batches must be atomic) and the DESIGN.md
//!   oracles a replayed log must satisfy against it;
//! - [`enumerate`]: crash a workload after every operation `k` on a
//!   [`MemoryDirectory`], take the crash image under every policy of
//!   [`policies`], recover and check the oracles;
//! - [`Counting`]: a directory wrapper counting the reads an operation makes;
//! - a small test-side mirror of the on-disk format (FORMAT: `src/wal/format.rs`)
//!   to assert layouts and to craft damage.
//!
//! Each test crate uses a different subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zerodur::wal::{EntryId, ReadMode, ReplaySummary, Wal, WalOptions, WalReader};
use zerodur::{
    AtomicFile, CorruptKind, CrashPolicy, DirLock, Directory, Error, MemoryDirectory, ReadMap,
    Region, Result, WritableFile,
};

/// The WAL's subdirectory in every test.
pub const WAL_DIR: &str = "wal";

/// An entry as replayed: id and payload.
pub type Entry = (u64, Vec<u8>);

/// Payload appended by every recovery probe.
pub const PROBE: &[u8] = b"probe appended after recovery";

// ---------------------------------------------------------------------------
// Policies, names, payloads, replay

/// Number of crash policies per crash point: `ZERODUR_CRASH_POLICIES`,
/// default 8, never fewer than 8.
pub fn policy_count() -> usize {
    std::env::var("ZERODUR_CRASH_POLICIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(8)
        .max(8)
}

/// `CrashPolicy::standard_set(policy_count())`.
pub fn policies() -> Vec<CrashPolicy> {
    CrashPolicy::standard_set(policy_count())
}

/// Path of live segment `id`.
pub fn seg_path(id: u64) -> String {
    format!("{WAL_DIR}/{id:020}.seg")
}

/// Options with `seg` bytes per segment and a pool of `recycle` files.
pub fn opts(seg: u64, recycle: usize) -> WalOptions {
    WalOptions::new(WAL_DIR)
        .segment_size_bytes(seg)
        .recycle_capacity(recycle)
}

/// Payload of `len` bytes for entry `id` in life `life`: the same id in
/// another life gets different bytes (same length), so a replay can tell
/// which life a frame came from.
pub fn payload(life: u32, id: u64, len: usize) -> Vec<u8> {
    let mut x = (id ^ (u64::from(life) << 40) ^ 0x5DEE_CE66_D1CE_4E5B)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Replays the whole WAL of `dir` in `mode`, copying the entries out. A
/// WAL folder that a crash took away (its creation never became durable) is
/// an empty log here: the oracles then find any acknowledged entry missing.
pub fn replay(dir: &Arc<dyn Directory>, mode: ReadMode) -> Result<(Vec<Entry>, ReplaySummary)> {
    if !dir.exists(WAL_DIR)? {
        return Ok((Vec::new(), ReplaySummary::default()));
    }
    let reader = WalReader::open(dir.clone(), WAL_DIR, mode)?;
    let mut out = Vec::new();
    let summary = reader.replay(None, |id, b| {
        out.push((id.get(), b.to_vec()));
        Ok(())
    })?;
    Ok((out, summary))
}

/// Ids and payload lengths, compactly: `[1..=4 (len 0,300,...), ...]`.
pub fn describe(entries: &[Entry]) -> String {
    let mut s = String::from("[");
    for (i, (id, p)) in entries.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        if i >= 40 {
            let _ = write!(s, "... {} more", entries.len() - 40);
            break;
        }
        let _ = write!(s, "{id}:{}", p.len());
    }
    s.push(']');
    s
}

/// Asserts two entry lists are equal, printing ids and lengths on failure.
pub fn assert_entries(got: &[Entry], want: &[Entry], ctx: &str) {
    if got != want {
        let first_diff = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{ctx}: entries differ at index {first_diff}\n  got  {}\n  want {}",
            describe(got),
            describe(want)
        );
    }
}

/// Whether `e` is `Error::Corrupt` (or a checksum mismatch, which is how a
/// damaged header reports).
pub fn is_corrupt(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::ChecksumMismatch { .. })
}

/// The `CorruptKind` of `e`, if it is `Error::Corrupt`.
pub fn corrupt_kind(e: &Error) -> Option<&CorruptKind> {
    match e {
        Error::Corrupt { kind, .. } => Some(kind),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The model of one life

/// What one run of a workload did, as far as durability is concerned, and
/// the oracles a recovered log must satisfy against it.
///
/// A "life" starts from a base image whose replay (`before`) is durable
/// there, and then appends through [`Life`]'s methods, which record each
/// entry **before** the call (an append in flight at the crash may or may
/// not survive) and acknowledge it only after the call that made it durable
/// returned `Ok`.
#[derive(Debug, Clone)]
pub struct Life {
    /// Life number: payloads of this life are `payload(life, id, len)`.
    pub life: u32,
    /// Every id that may replay, with the only payload it may carry (the
    /// newest attempt in this run; older attempts were fenced off).
    expected: BTreeMap<u64, Vec<u8>>,
    /// Every id from the log start (or past a truncation) up to here must
    /// replay.
    acked: u64,
    /// The first id of the log, once known.
    start: Option<u64>,
    /// Highest `upto` passed to `truncate_prefix` (0: none).
    trunc: u64,
    /// Batches that must replay all or none.
    batches: Vec<(u64, u64)>,
    /// Id the next append gets.
    next: u64,
    /// Successful `Wal::open` calls in this run.
    pub opens: u32,
}

impl Life {
    /// A life starting from a directory whose replay is `before` (all of it
    /// durable).
    pub fn new(life: u32, before: &[Entry]) -> Life {
        Life {
            life,
            expected: before.iter().cloned().collect(),
            acked: before.last().map_or(0, |e| e.0),
            start: before.first().map(|e| e.0),
            trunc: 0,
            batches: Vec::new(),
            next: before.last().map_or(0, |e| e.0 + 1),
            opens: 0,
        }
    }

    /// Id the next append will get.
    pub fn next_id(&self) -> u64 {
        self.next
    }

    /// Highest id acknowledged durable.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// `payload(self.life, id, len)` for the next id.
    pub fn next_payload(&self, len: usize) -> Vec<u8> {
        payload(self.life, self.next, len)
    }

    /// Opens (resumes) the WAL and checks what resume found against the
    /// model: nothing acknowledged lost, nothing invented. Everything before
    /// the resumed tail is durable once `open` returns.
    pub fn open(&mut self, dir: &Arc<dyn Directory>, opts: &WalOptions) -> Result<Wal> {
        let w = Wal::open(dir.clone(), opts.clone())?;
        let n = w.next_entry_id().get();
        match self.start {
            None => self.start = Some(n),
            Some(_) => {
                assert!(
                    n > self.acked,
                    "resume lost acknowledged entries: next id {n}, acknowledged up to {}",
                    self.acked
                );
                for id in self.acked + 1..n {
                    assert!(
                        self.expected.contains_key(&id),
                        "resume continues after id {}, but {id} was never appended",
                        n - 1
                    );
                }
            }
        }
        for &(a, b) in &self.batches {
            assert!(
                !(a < n && n <= b),
                "resume cut batch {a}..={b} in two (next id {n})"
            );
        }
        // IMPORTANT for the model: attempts at ids >= n were fenced off by
        // resume; they must never replay, and the ids will be reused.
        self.expected.retain(|&id, _| id < n);
        self.batches.retain(|&(a, _)| a < n);
        self.acked = n - 1;
        self.next = n;
        self.opens += 1;
        Ok(w)
    }

    fn attempt(&mut self, id: u64, p: &[u8]) {
        self.expected.insert(id, p.to_vec());
    }

    /// `Wal::append`, recorded as attempted first.
    pub fn append(&mut self, w: &Wal, p: &[u8]) -> Result<u64> {
        let id = self.next;
        self.attempt(id, p);
        let got = w.append(p)?.get();
        assert_eq!(got, id, "append returned an unexpected id");
        self.next += 1;
        Ok(id)
    }

    /// `Wal::append_durable`: acknowledged once it returns.
    pub fn append_durable(&mut self, w: &Wal, p: &[u8]) -> Result<u64> {
        let id = self.next;
        self.attempt(id, p);
        let got = w.append_durable(p)?.get();
        assert_eq!(got, id, "append_durable returned an unexpected id");
        self.next += 1;
        self.acked = id;
        Ok(id)
    }

    /// `Wal::append_batch` or `append_batch_durable`: all or none.
    pub fn batch(&mut self, w: &Wal, ps: &[Vec<u8>], durable: bool) -> Result<(u64, u64)> {
        assert!(!ps.is_empty());
        let first = self.next;
        let last = first + ps.len() as u64 - 1;
        for (i, p) in ps.iter().enumerate() {
            self.attempt(first + i as u64, p);
        }
        self.batches.push((first, last));
        let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
        let ids = if durable {
            w.append_batch_durable(&refs)?
        } else {
            w.append_batch(&refs)?
        };
        let (a, b) = ids.expect("non-empty batch");
        assert_eq!(
            (a.get(), b.get()),
            (first, last),
            "batch got unexpected ids"
        );
        self.next = last + 1;
        if durable {
            self.acked = last;
        }
        Ok((first, last))
    }

    /// `Wal::sync`: everything appended so far is acknowledged.
    pub fn sync(&mut self, w: &Wal) -> Result<()> {
        w.sync()?;
        self.acked = self.acked.max(self.next.saturating_sub(1));
        Ok(())
    }

    /// `Wal::truncate_prefix`, recorded as attempted first.
    pub fn truncate(&mut self, w: &Wal, upto: u64) -> Result<usize> {
        self.trunc = self.trunc.max(upto);
        w.truncate_prefix(EntryId::new(upto))
    }

    /// Checks a replay of a crash image against the DESIGN.md oracles.
    pub fn check(&self, got: &[Entry], ctx: &str) {
        let fail = |what: String| -> ! {
            panic!(
                "{ctx}: {what}\n  replayed {}\n  acknowledged up to {}, log start {:?}, truncated up to {}, next id {}",
                describe(got),
                self.acked,
                self.start,
                self.trunc,
                self.next
            )
        };
        for w in got.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                fail(format!("id gap: {} followed by {}", w[0].0, w[1].0));
            }
        }
        for (id, p) in got {
            match self.expected.get(id) {
                None => fail(format!("entry {id} replayed but never appended")),
                Some(want) if want != p => fail(format!(
                    "entry {id} replayed with the wrong payload ({} bytes, expected {} bytes{})",
                    p.len(),
                    want.len(),
                    if p.len() == want.len() {
                        ": a frame from an earlier life or torn bytes"
                    } else {
                        ""
                    }
                )),
                Some(_) => {}
            }
        }
        if let Some(start) = self.start {
            if let Some((first, _)) = got.first() {
                if *first < start {
                    fail(format!("log starts at {first}, before its start {start}"));
                }
                let latest_start = start.max(self.trunc + 1);
                if *first > latest_start {
                    fail(format!(
                        "log starts at {first}: entries {start}..{first} lost without a truncation covering them"
                    ));
                }
            }
            let required = start.max(self.trunc + 1);
            if self.acked >= required {
                let covers = got.first().is_some_and(|e| e.0 <= required)
                    && got.last().is_some_and(|e| e.0 >= self.acked);
                if !covers {
                    fail(format!(
                        "acknowledged entries {required}..={} are not all present",
                        self.acked
                    ));
                }
            }
        }
        for &(a, b) in &self.batches {
            let n = got.iter().filter(|e| (a..=b).contains(&e.0)).count() as u64;
            if n != 0 && n != b - a + 1 {
                fail(format!(
                    "batch {a}..={b} replayed partially ({n} of {})",
                    b - a + 1
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Crash enumeration

/// A directory to run a workload on, halted after some operation.
pub struct Ctx {
    /// The directory itself (for faults, halting, op counts).
    pub mem: MemoryDirectory,
    /// The same directory as the WAL sees it.
    pub dir: Arc<dyn Directory>,
    /// The options the WAL is opened with.
    pub opts: WalOptions,
}

impl Ctx {
    /// A context over `mem`.
    pub fn new(mem: MemoryDirectory, opts: WalOptions) -> Ctx {
        Ctx {
            dir: Arc::new(mem.clone()),
            mem,
            opts,
        }
    }

    /// Whether the simulated power is off (every operation now fails).
    pub fn halted(&self) -> bool {
        self.mem.is_halted()
    }

    /// `life.open` with this context's directory and options.
    pub fn open(&self, life: &mut Life) -> Result<Wal> {
        life.open(&self.dir, &self.opts)
    }
}

/// A workload: runs until done (returns `Ok`) or until an operation fails
/// because the directory was halted (returns that error). Designed faults
/// are handled (and asserted) by the workload itself.
pub type Workload<'a> = &'a dyn Fn(&Ctx, &mut Life) -> Result<()>;

/// One crash enumeration: a base image and the options to open it with.
pub struct Scenario {
    /// Name, for messages.
    pub name: String,
    /// The directory the workload starts from (a crash image: no pending
    /// state, operation count 0).
    pub base: MemoryDirectory,
    /// WAL options for the workload and for recovery.
    pub opts: WalOptions,
    /// Life number of the workload's payloads.
    pub life: u32,
}

impl Scenario {
    /// A scenario starting from an empty directory.
    pub fn fresh(name: impl Into<String>, opts: WalOptions) -> Scenario {
        Scenario {
            name: name.into(),
            base: MemoryDirectory::new(),
            opts,
            life: 0,
        }
    }

    /// The base image's replay (everything in it is durable).
    pub fn before(&self) -> Vec<Entry> {
        let dir: Arc<dyn Directory> = Arc::new(self.base.crash_image(&CrashPolicy::keep_all()));
        replay(&dir, ReadMode::BestEffort)
            .unwrap_or_else(|e| panic!("{}: base image does not replay: {e}", self.name))
            .0
    }

    /// Runs `workload` on a fresh copy of the base, halted after `k`
    /// operations (`None`: never halted). Returns the directory, the model,
    /// the workload's result and whether the halt was reached.
    pub fn run(
        &self,
        workload: Workload<'_>,
        k: Option<u64>,
    ) -> (MemoryDirectory, Life, Result<()>, bool) {
        let mem = self.base.crash_image(&CrashPolicy::keep_all());
        if let Some(k) = k {
            mem.halt_after(k);
        }
        let ctx = Ctx::new(mem.clone(), self.opts.clone());
        let mut life = Life::new(self.life, &self.before());
        let res = with_context(
            || format!("{}: workload crashed after op {k:?}", self.name),
            || workload(&ctx, &mut life),
        );
        let halted = k.is_some() && mem.is_halted();
        (mem, life, res, halted)
    }
}

/// Runs `f`; a panic inside is re-raised with `ctx()` prepended.
pub fn with_context<T>(ctx: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".into());
            panic!("{}: {msg}", ctx())
        }
    }
}

/// What a crash enumeration covered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Crash images recovered and checked.
    pub states: u64,
    /// Crash points (operations the workload was halted after), including
    /// the final uninterrupted run.
    pub points: u64,
    /// Operations of the uninterrupted run.
    pub ops: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.states += o.states;
        self.points += o.points;
        self.ops += o.ops;
    }
}

/// Crashes `workload` after every operation `k = 0, 1, ...` until it runs to
/// completion without being halted; for each crash point takes the image
/// under every policy of [`policies`] and checks it with [`check_state`].
pub fn enumerate(sc: &Scenario, workload: Workload<'_>) -> Tally {
    let pols = policies();
    let mut tally = Tally::default();
    for k in 0.. {
        assert!(k < 200_000, "{}: workload never completes", sc.name);
        let (mem, life, res, halted) = sc.run(workload, Some(k));
        if !halted {
            if let Err(e) = res {
                panic!("{}: workload failed without a crash: {e}", sc.name);
            }
        }
        for pol in &pols {
            let ctx = format!("{}: crash after op {k}, {pol:?}", sc.name);
            with_context(
                || ctx.clone(),
                || check_state(&mem, pol, &life, &sc.opts, &ctx),
            );
            tally.states += 1;
        }
        tally.points += 1;
        if !halted {
            tally.ops = mem.op_count();
            break;
        }
    }
    tally
}

/// Kill–restart–crash enumeration: the process running `workload` is killed
/// after every operation `k1` (the page cache, with everything not yet
/// durable, survives), a new process runs `restart` in the same directory,
/// and the power fails after every operation `k2` of it. Every crash image
/// is checked with [`check_state`]. `restart` runs with its own life number
/// (`life + 100`) so a reused id's payload tells the two processes apart.
pub fn enumerate_kill_restart(
    sc: &Scenario,
    workload: Workload<'_>,
    restart: Workload<'_>,
) -> Tally {
    let pols = policies();
    let mut tally = Tally::default();
    for k1 in 0.. {
        assert!(k1 < 200_000, "{}: workload never completes", sc.name);
        let mut killed = true;
        for k2 in 0.. {
            assert!(k2 < 200_000, "{}: restart never completes", sc.name);
            let (mem, mut life, _, halted) = sc.run(workload, Some(k1));
            killed = halted;
            mem.resume();
            mem.halt_after(mem.op_count() + k2);
            life.life += 100;
            let ctx = Ctx::new(mem.clone(), sc.opts.clone());
            let what = || {
                format!(
                    "{}: killed after op {k1}, restarted, crash after op {k2}",
                    sc.name
                )
            };
            let res = with_context(what, || restart(&ctx, &mut life));
            let crashed = mem.is_halted();
            if !crashed {
                if let Err(e) = res {
                    panic!("{}: restart failed without a crash: {e}", what());
                }
            }
            for pol in &pols {
                let ctx = format!("{}, {pol:?}", what());
                with_context(
                    || ctx.clone(),
                    || check_state(&mem, pol, &life, &sc.opts, &ctx),
                );
                tally.states += 1;
            }
            tally.points += 1;
            if !crashed {
                break;
            }
        }
        if !killed {
            tally.ops = k1;
            break;
        }
    }
    tally
}

/// The oracles for one crash image of `mem` under `pol`:
///
/// 1. best-effort replay succeeds, twice with the same result, and satisfies
///    [`Life::check`] (acknowledged entries present, gap-free prefix of this
///    life's attempts, nothing foreign, batches all or none);
/// 2. strict replay gives the same entries, or fails with `TornTail` exactly
///    when best-effort saw a torn tail;
/// 3. `Wal::open` + `close` without appends changes nothing (both modes);
/// 4. `Wal::open` resumes after the last replayed entry, accepts an
///    `append_durable`, and strict replay then gives the old entries plus
///    the new one.
pub fn check_state(
    mem: &MemoryDirectory,
    pol: &CrashPolicy,
    life: &Life,
    opts: &WalOptions,
    ctx: &str,
) {
    let img = mem.crash_image(pol);
    let dir: Arc<dyn Directory> = Arc::new(img.clone());
    let (got, summary) = replay(&dir, ReadMode::BestEffort)
        .unwrap_or_else(|e| panic!("{ctx}: best-effort replay failed: {e}"));
    let (again, _) = replay(&dir, ReadMode::BestEffort)
        .unwrap_or_else(|e| panic!("{ctx}: second best-effort replay failed: {e}"));
    assert_entries(&again, &got, &format!("{ctx}: replay is not idempotent"));
    life.check(&got, ctx);
    match replay(&dir, ReadMode::Strict) {
        Ok((strict, _)) => {
            assert!(
                !summary.torn_tail,
                "{ctx}: strict replay accepted a tail best-effort called torn"
            );
            assert_entries(&strict, &got, &format!("{ctx}: strict vs best-effort"));
        }
        Err(Error::Corrupt {
            kind: CorruptKind::TornTail,
            ..
        }) => assert!(
            summary.torn_tail,
            "{ctx}: strict replay saw a torn tail best-effort did not"
        ),
        Err(e) => panic!("{ctx}: strict replay failed with `{e}`, not a torn tail"),
    }

    // Reopen + close without appending: same entries, both modes.
    let copy: Arc<dyn Directory> = Arc::new(img.crash_image(&CrashPolicy::keep_all()));
    let w = Wal::open(copy.clone(), opts.clone())
        .unwrap_or_else(|e| panic!("{ctx}: Wal::open of the crash image failed: {e}"));
    if let Some((last, _)) = got.last() {
        assert_eq!(
            w.next_entry_id().get(),
            last + 1,
            "{ctx}: resume disagrees with replay about the tail"
        );
    }
    w.close()
        .unwrap_or_else(|e| panic!("{ctx}: close after reopen failed: {e}"));
    for mode in [ReadMode::BestEffort, ReadMode::Strict] {
        let (after, _) = replay(&copy, mode)
            .unwrap_or_else(|e| panic!("{ctx}: {mode:?} replay after reopen+close failed: {e}"));
        assert_entries(
            &after,
            &got,
            &format!("{ctx}: reopen+close changed the log ({mode:?})"),
        );
    }

    // Open, append durably, replay strictly.
    let w = Wal::open(dir.clone(), opts.clone())
        .unwrap_or_else(|e| panic!("{ctx}: Wal::open of the crash image failed: {e}"));
    let id = w
        .append_durable(PROBE)
        .unwrap_or_else(|e| panic!("{ctx}: append_durable after recovery failed: {e}"))
        .get();
    if let Some((last, _)) = got.last() {
        assert_eq!(id, last + 1, "{ctx}: probe got an unexpected id");
    }
    w.close()
        .unwrap_or_else(|e| panic!("{ctx}: close after probe failed: {e}"));
    let (after, _) = replay(&dir, ReadMode::Strict)
        .unwrap_or_else(|e| panic!("{ctx}: strict replay after reopen+append failed: {e}"));
    let mut want = got;
    want.push((id, PROBE.to_vec()));
    assert_entries(&after, &want, &format!("{ctx}: log after reopen+append"));
}

/// Prints and returns a test's tally line.
pub fn report(test: &str, parts: &[(String, Tally, Duration)], started: Instant) -> u64 {
    let mut total = 0;
    for (name, t, d) in parts {
        println!(
            "  {test} / {name}: {} crash points ({} ops), {} states, {:.2?}",
            t.points, t.ops, t.states, d
        );
        total += t.states;
    }
    println!(
        "{test}: crash states checked: {total} ({} policies per point) in {:.2?}",
        policy_count(),
        started.elapsed()
    );
    total
}

// ---------------------------------------------------------------------------
// A directory that counts reads

/// A [`Directory`] that counts (and records the paths of) the calls that
/// read file contents: how much of a WAL an operation reads.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Directory>,
    read_paths: Mutex<Vec<String>>,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Directory>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            read_paths: Mutex::new(Vec::new()),
        })
    }

    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.read_paths.lock().unwrap().len() as u64
    }

    /// The path of every read so far, in order.
    pub fn read_paths(&self) -> Vec<String> {
        self.read_paths.lock().unwrap().clone()
    }

    fn count(&self, path: &str) {
        self.read_paths.lock().unwrap().push(path.to_owned());
    }
}

impl Directory for Counting {
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.inner.create_dir_all(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn len(&self, path: &str) -> Result<u64> {
        self.count(path);
        self.inner.len(path)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.count(path);
        self.inner.read(path)
    }
    fn map_read(&self, path: &str) -> Result<ReadMap> {
        self.count(path);
        self.inner.map_read(path)
    }
    fn create(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        self.inner.create(path)
    }
    fn open_append(&self, path: &str) -> Result<Box<dyn WritableFile>> {
        self.count(path);
        self.inner.open_append(path)
    }
    fn truncate(&self, path: &str, len: u64) -> Result<()> {
        self.inner.truncate(path, len)
    }
    fn sync_file(&self, path: &str) -> Result<()> {
        self.inner.sync_file(path)
    }
    fn sync_dir(&self, dir: &str) -> Result<()> {
        self.inner.sync_dir(dir)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.inner.remove(path)
    }
    fn create_region(&self, path: &str, len: u64) -> Result<Box<dyn Region>> {
        self.inner.create_region(path, len)
    }
    fn open_region(&self, path: &str) -> Result<Box<dyn Region>> {
        self.count(path);
        self.inner.open_region(path)
    }
    fn lock(&self, path: &str) -> Result<DirLock> {
        self.inner.lock(path)
    }
    fn atomic_write_with(
        &self,
        path: &str,
        write: &mut dyn FnMut(&mut dyn AtomicFile) -> Result<()>,
    ) -> Result<()> {
        self.inner.atomic_write_with(path, write)
    }
}

// ---------------------------------------------------------------------------
// A test-side mirror of the on-disk format (see src/wal/format.rs)

/// Bytes of the segment header.
pub const SEG_HEADER_LEN: usize = 64;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 32;
/// Frame alignment.
pub const FRAME_ALIGN: usize = 16;
/// Frame kinds.
pub const KIND_ENTRY: u8 = 1;
/// A batch entry that is not the batch's last.
pub const KIND_ENTRY_CONT: u8 = 2;
/// The seal closing a segment.
pub const KIND_SEAL: u8 = 3;
/// The resume marker.
pub const KIND_RESUME: u8 = 4;

/// Bytes a frame with a `len`-byte payload occupies.
pub fn frame_len(len: usize) -> usize {
    (FRAME_HEADER_LEN + len).next_multiple_of(FRAME_ALIGN)
}

/// Largest payload of a segment of `seg` bytes (the default `max_entry_bytes`).
pub fn max_payload(seg: u64) -> usize {
    let usable = seg as usize - SEG_HEADER_LEN - FRAME_HEADER_LEN;
    usable - usable % FRAME_ALIGN - FRAME_HEADER_LEN
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegHeader {
    /// Segment id.
    pub segment: u64,
    /// First entry id.
    pub first: u64,
    /// Epoch.
    pub epoch: u64,
}

/// Decodes a segment header (magic and CRC checked).
pub fn seg_header(b: &[u8]) -> Option<SegHeader> {
    let h = b.get(..SEG_HEADER_LEN)?;
    if &h[0..8] != b"ZDURWAL\x01" || crc32fast::hash(&h[0..60]) != u32_at(h, 60) {
        return None;
    }
    Some(SegHeader {
        segment: u64_at(h, 16),
        first: u64_at(h, 24),
        epoch: u64_at(h, 32),
    })
}

/// Rewrites the header CRC after a field was changed.
pub fn fix_header_crc(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of its header in the segment.
    pub off: usize,
    /// Payload length.
    pub len: usize,
    /// Kind byte.
    pub kind: u8,
    /// Entry id (markers: the next id).
    pub id: u64,
    /// Epoch.
    pub epoch: u64,
    /// Offset just past it (padding included).
    pub end: usize,
}

/// CRC32 of bytes `4..32 + len` of the frame: the header after its CRC
/// field, then the payload, one contiguous range.
fn frame_crc(b: &[u8], off: usize, len: usize) -> u32 {
    crc32fast::hash(&b[off + 4..off + FRAME_HEADER_LEN + len])
}

/// The CRC-valid frame at `off`, if any.
pub fn frame_at(b: &[u8], off: usize) -> Option<Frame> {
    let h = b.get(off..off + FRAME_HEADER_LEN)?;
    if h.iter().all(|&x| x == 0) {
        return None;
    }
    let len = u32_at(h, 4) as usize;
    let end = off + frame_len(len);
    if end > b.len() || frame_crc(b, off, len) != u32_at(h, 0) {
        return None;
    }
    Some(Frame {
        off,
        len,
        kind: h[8],
        id: u64_at(h, 16),
        epoch: u64_at(h, 24),
        end,
    })
}

/// Rewrites the CRC of the frame at `off` after its header or payload was
/// changed (its length field is trusted).
pub fn fix_frame_crc(b: &mut [u8], off: usize) {
    let len = u32_at(b, off + 4) as usize;
    let crc = frame_crc(b, off, len);
    b[off..off + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The chain of frames of a segment, from its first slot, following epochs
/// as the reader does (resume markers raise the epoch; an older-epoch frame
/// ends the chain), up to and including a seal.
pub fn chain(b: &[u8]) -> Vec<Frame> {
    let Some(h) = seg_header(b) else {
        return Vec::new();
    };
    let mut epoch = h.epoch;
    let mut off = SEG_HEADER_LEN;
    let mut out = Vec::new();
    while let Some(f) = frame_at(b, off) {
        if f.epoch < epoch {
            break;
        }
        if f.epoch > epoch && f.kind != KIND_RESUME {
            break;
        }
        epoch = f.epoch;
        out.push(f);
        if f.kind == KIND_SEAL {
            break;
        }
        off = f.end;
    }
    out
}

/// Whether a segment's frame chain ends in a seal.
pub fn is_sealed(b: &[u8]) -> bool {
    chain(b).last().is_some_and(|f| f.kind == KIND_SEAL)
}

/// The live segment ids of a directory's WAL, sorted.
pub fn segment_ids(dir: &dyn Directory) -> Vec<u64> {
    if !dir.exists(WAL_DIR).unwrap() {
        return Vec::new();
    }
    let mut ids: Vec<u64> = dir
        .list(WAL_DIR)
        .unwrap()
        .iter()
        .filter_map(|n| n.strip_suffix(".seg")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Overwrites bytes `off..off + data.len()` of file `path` and makes them
/// durable (through a region, so it works on both backends).
pub fn patch(dir: &dyn Directory, path: &str, off: usize, data: &[u8]) {
    let mut r = dir.open_region(path).unwrap();
    r.write_at(off as u64, data).unwrap();
    r.flush_range(off as u64, data.len().max(1) as u64).unwrap();
}

/// Applies `f` to the bytes of `path` and writes back what changed.
pub fn edit(dir: &dyn Directory, path: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let old = dir.read(path).unwrap();
    let mut new = old.clone();
    f(&mut new);
    assert_eq!(old.len(), new.len(), "edit must not change the length");
    if let Some(a) = (0..old.len()).find(|&i| old[i] != new[i]) {
        let b = (0..old.len()).rfind(|&i| old[i] != new[i]).unwrap() + 1;
        patch(dir, path, a, &new[a..b]);
    }
}
