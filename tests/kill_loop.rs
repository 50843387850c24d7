//! Kill loops on the real kernel: every acknowledged WAL entry survives
//! `SIGKILL` of the process that wrote it, on [`FsDirectory`].
//!
//! # Protocol
//!
//! Each test re-executes this test binary (`--exact <its own name>`) with
//! `ZERODUR_KILL_CHILD=<dir>` and `ZERODUR_KILL_CYCLE=<n>` set; the child,
//! seeing the variable, runs the workload instead of the test and never
//! returns normally (it exits on its own only on an error, or after a
//! safety timeout if nobody kills it).
//!
//! The child opens `Wal` on `<dir>` (64 KiB segments, a recycle pool of 3,
//! so rotations and recycling happen every few milliseconds) and runs:
//!
//! - three appender threads calling `append_durable` (group commit); thread
//!   0 alternates with `append_batch` of 2–6 entries followed by `sync`;
//! - one maintenance thread that, every 1–7 ms, either publishes a
//!   checkpoint (`publish_checkpoint`, whose value is its own entry id) a
//!   little below the durable id, which truncates the log behind the oldest
//!   kept checkpoint, or calls `truncate_prefix` up to at most the last
//!   checkpoint it published; sealed segments go to the pool and are reused
//!   (or deleted when it is full).
//!
//! Every payload starts with a header (magic, cycle, thread, seq, length);
//! the rest of its bytes follow from that header, so any entry found in the
//! log can be checked byte for byte without being sent to the parent.
//! The child writes one line to stdout per event, **after** the call that
//! makes it true has returned (one `write` + flush under a mutex):
//!
//! - `@@O <next id>`: `Wal::open` returned;
//! - `@@B <first> <thread> <seq> <n>`: `append_batch` returned ids
//!   `first..first + n` for seqs `seq..seq + n` (not acknowledged: the
//!   batch must replay all or none, and as these entries);
//! - `@@A <id> <thread> <seq> <len>`: entry `id` is acknowledged durable;
//! - `@@t <upto>`: `truncate_prefix(upto)` or `publish_checkpoint` at
//!   `upto` is about to be called: from now on entries `<= upto` may be
//!   gone (a call in flight when the kill lands may have retired some
//!   segments already), entries `> upto` must survive;
//! - `@@T <upto>`: that truncation returned (counted only);
//! - `@@P <upto>`: that publish returned: recovery must start from a
//!   checkpoint at `upto` or later;
//! - `@@E <message>`: an error (the child then exits with code 3).
//!
//! The parent loops `ZERODUR_KILLS` times (default: 2,500 kills with one
//! directory, 1,500 with fresh ones): spawn the child, collect its stdout on
//! a thread, `SIGKILL` it after a random delay (0–8 ms for a quarter of the
//! kills, up to 150 ms for one in 20, otherwise up to 40 ms), wait, and keep
//! every complete report line (a partial last line is ignored: it was not
//! fully reported). The delays and payload lengths come from a seeded
//! xorshift; the seed is printed, and `ZERODUR_KILL_SEED` replays the same
//! schedule (where a kill lands in the child's work still varies from run
//! to run). Then, in the parent:
//!
//! 1. `WalReader` in [`ReadMode::Strict`]; a crash may legitimately leave a
//!    torn tail (`CorruptKind::TornTail`, counted), in which case the log
//!    is read again in [`ReadMode::BestEffort`], which must not fail;
//! 2. every replayed entry must be a well-formed payload, byte-exact; ids
//!    must be consecutive; every acknowledged entry above the highest
//!    announced truncation point must be there with the reported identity;
//!    each batch of the last child must be there whole or not at all; the
//!    log must not start above the truncation point nor end below the last
//!    acknowledged id;
//! 3. every few cycles (every cycle for the fresh-directory variant), the
//!    parent resumes the log with `Wal::open`, appends one entry durably
//!    (which is then expected too), closes or drops the WAL, and replays in
//!    strict mode, which must then succeed;
//! 4. `recover_with_wal` (strict, or best-effort after a torn tail) must
//!    succeed from a checkpoint at or above the last one published, whose
//!    value is its own entry id, replay consecutive ids from the entry after
//!    it, and reach the last acknowledged entry.
//!
//! Two variants: one directory reused across every cycle (the log grows,
//! rotates, recycles and is truncated across kills), and a fresh directory
//! per cycle (kills land during creation and first appends).
//! Each ends by printing `kills: N, acknowledged entries lost: 0` (seen with
//! `--nocapture`); any loss, damage, gap, failed open or failed replay
//! fails the test naming the cycle, the seed, the delay and the entry.
//!
//! A killed process loses nothing from the page cache: this checks what a
//! kill can break (acknowledging too early, resume, rotation, recycling,
//! truncation, id assignment across processes), not whether the `msync`
//! barriers reach the device; the crash-model tests (`wal_crash.rs`,
//! `crash_model.rs`) cover power loss.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zerodur::publish::{publish_checkpoint, PublishOptions};
use zerodur::recover::{recover_with_wal, RecoveryOptions};
use zerodur::wal::{EntryId, ReadMode, ReplaySummary, Wal, WalOptions, WalReader};
use zerodur::{CorruptKind, Directory, Error, FsDirectory};

const CHILD_ENV: &str = "ZERODUR_KILL_CHILD";
const CYCLE_ENV: &str = "ZERODUR_KILL_CYCLE";
const WAL_DIR: &str = "wal";
const SEGMENT_BYTES: u64 = 64 * 1024;
const RECYCLE: usize = 3;
const APPENDERS: u32 = 3;
/// The `thread` field of the entries the parent appends itself.
const PROBE_THREAD: u32 = 99;
/// Longest delay before a kill.
const MAX_DELAY_US: u64 = 40_000;
/// Longest delay of the occasional long life.
const LONG_DELAY_US: u64 = 150_000;
/// The child exits on its own after this long (a parent that died).
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_CHILD_ERROR: i32 = 3;

fn opts() -> WalOptions {
    WalOptions::new(WAL_DIR)
        .segment_size_bytes(SEGMENT_BYTES)
        .recycle_capacity(RECYCLE)
}

// ---------------------------------------------------------------------------
// PRNG and payloads

/// xorshift64*: small, seeded, no dependency.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Who wrote an entry: `(cycle, thread, seq)`, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    cycle: u32,
    thread: u32,
    seq: u64,
    len: u32,
}

const MAGIC: &[u8; 4] = b"ZKL1";
const PAYLOAD_HEADER: usize = 24;

/// The payload of `who`: a header naming it, then bytes that follow from it.
fn payload(who: Ident) -> Vec<u8> {
    assert!(who.len as usize >= PAYLOAD_HEADER);
    let mut v = Vec::with_capacity(who.len as usize);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&who.cycle.to_le_bytes());
    v.extend_from_slice(&who.thread.to_le_bytes());
    v.extend_from_slice(&who.seq.to_le_bytes());
    v.extend_from_slice(&who.len.to_le_bytes());
    let mut rng = Rng::new(
        (u64::from(who.cycle) << 40)
            ^ (u64::from(who.thread) << 32)
            ^ who.seq.wrapping_mul(0xD6E8_FEB8_6659_FD93)
            ^ u64::from(who.len),
    );
    while v.len() < who.len as usize {
        let word = rng.next().to_le_bytes();
        let n = (who.len as usize - v.len()).min(8);
        v.extend_from_slice(&word[..n]);
    }
    v
}

/// Decodes and checks a payload: `Err` says what is wrong with it.
fn decode(bytes: &[u8]) -> std::result::Result<Ident, String> {
    if bytes.len() < PAYLOAD_HEADER || &bytes[..4] != MAGIC {
        return Err(format!(
            "not a payload of this test ({} bytes, starts {:02x?})",
            bytes.len(),
            &bytes[..bytes.len().min(8)]
        ));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let who = Ident {
        cycle: u32_at(4),
        thread: u32_at(8),
        seq: u64::from_le_bytes(bytes[12..20].try_into().unwrap()),
        len: u32_at(20),
    };
    if who.len as usize != bytes.len() {
        return Err(format!(
            "{who:?}: header says {} bytes, entry has {}",
            who.len,
            bytes.len()
        ));
    }
    let want = payload(who);
    if let Some(at) = want.iter().zip(bytes).position(|(a, b)| a != b) {
        return Err(format!(
            "{who:?}: damaged at byte {at}: {:#04x}, expected {:#04x}",
            bytes[at], want[at]
        ));
    }
    Ok(who)
}

/// A payload length: mostly small, sometimes a few KiB, rarely 20 KiB (a
/// third of a segment: rotations come often).
fn pick_len(rng: &mut Rng) -> u32 {
    let r = rng.below(100);
    let len = if r < 70 {
        PAYLOAD_HEADER as u64 + rng.below(200)
    } else if r < 97 {
        PAYLOAD_HEADER as u64 + rng.below(4_000)
    } else {
        PAYLOAD_HEADER as u64 + rng.below(20_000)
    };
    len as u32
}

// ---------------------------------------------------------------------------
// Child

/// One report line at a time, written and flushed whole.
struct Reporter(Mutex<std::io::Stdout>);

impl Reporter {
    fn line(&self, s: &str) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{s}\n");
        // Nobody to report to any more: the parent is gone; just stop.
        if out.write_all(line.as_bytes()).is_err() || out.flush().is_err() {
            std::process::exit(EXIT_CHILD_ERROR);
        }
    }

    fn fail(&self, what: &str, e: &Error) -> ! {
        self.line(&format!("@@E {what}: {e}"));
        std::process::exit(EXIT_CHILD_ERROR);
    }
}

/// In a child process: run the workload until killed. In the test process:
/// return.
fn child_side() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let cycle: u32 = std::env::var(CYCLE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("ZERODUR_KILL_CYCLE");
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_TIMEOUT);
        std::process::exit(EXIT_CHILD_ERROR);
    });
    let rep = Arc::new(Reporter(Mutex::new(std::io::stdout())));
    let fs = FsDirectory::arc(&dir).unwrap_or_else(|e| rep.fail("FsDirectory", &e));
    let wal =
        Arc::new(Wal::open(Arc::clone(&fs), opts()).unwrap_or_else(|e| rep.fail("Wal::open", &e)));
    rep.line(&format!("@@O {}", wal.next_entry_id()));

    let mut threads = Vec::new();
    for thread in 0..APPENDERS {
        let (wal, rep) = (Arc::clone(&wal), Arc::clone(&rep));
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(u64::from(cycle) << 8 | u64::from(thread));
            let mut seq = 0u64;
            let mut ident = |rng: &mut Rng| {
                seq += 1;
                Ident {
                    cycle,
                    thread,
                    seq,
                    len: pick_len(rng),
                }
            };
            loop {
                if thread == 0 && rng.below(3) == 0 {
                    let n = 2 + rng.below(5) as usize;
                    let whos: Vec<Ident> = (0..n).map(|_| ident(&mut rng)).collect();
                    let bytes: Vec<Vec<u8>> = whos.iter().map(|&w| payload(w)).collect();
                    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
                    let (first, _) = wal
                        .append_batch(&refs)
                        .unwrap_or_else(|e| rep.fail("append_batch", &e))
                        .expect("a non-empty batch");
                    // Not acknowledged yet: it must replay all or none.
                    rep.line(&format!("@@B {} {} {} {n}", first, thread, whos[0].seq));
                    wal.sync().unwrap_or_else(|e| rep.fail("sync", &e));
                    for (i, w) in whos.iter().enumerate() {
                        rep.line(&format!(
                            "@@A {} {} {} {}",
                            first.get() + i as u64,
                            w.thread,
                            w.seq,
                            w.len
                        ));
                    }
                } else {
                    let w = ident(&mut rng);
                    let id = wal
                        .append_durable(&payload(w))
                        .unwrap_or_else(|e| rep.fail("append_durable", &e));
                    rep.line(&format!("@@A {} {} {} {}", id, w.thread, w.seq, w.len));
                }
            }
        }));
    }
    // Maintenance: now and then, publish a checkpoint a little below the
    // durable point (which truncates the log behind the oldest kept one),
    // or truncate the log up to, at most, the last checkpoint published
    // here (a log truncated past every checkpoint could not be recovered).
    let mut rng = Rng::new(u64::from(cycle) << 8 | 0xFF);
    let mut checkpoint: Option<u64> = None;
    loop {
        std::thread::sleep(Duration::from_micros(1_000 + rng.below(6_000)));
        let Some(durable) = wal.durable_entry_id() else {
            continue;
        };
        // Mostly close behind the durable point; sometimes far behind, so
        // the log spans more segments and the pool overflows.
        let behind = if rng.below(4) == 0 { 3_000 } else { 400 };
        let upto = durable.get().saturating_sub(rng.below(behind));
        if upto == 0 {
            continue;
        }
        match checkpoint {
            Some(c) if rng.below(3) != 0 => {
                let upto = upto.min(c);
                // Announced before the call: a call in flight when the kill
                // lands may already have retired segments (one durable step
                // each).
                rep.line(&format!("@@t {upto}"));
                wal.truncate_prefix(EntryId::new(upto))
                    .unwrap_or_else(|e| rep.fail("truncate_prefix", &e));
                rep.line(&format!("@@T {upto}"));
            }
            _ => {
                // Checkpoint names sort by entry: keep them increasing.
                let upto = upto.max(checkpoint.unwrap_or(0));
                rep.line(&format!("@@t {upto}"));
                // The checkpoint's value is its own entry id: the parent
                // checks that recovery loads it back.
                publish_checkpoint(
                    &*fs,
                    &wal,
                    &PublishOptions::new(),
                    EntryId::new(upto),
                    &upto,
                )
                .unwrap_or_else(|e| rep.fail("publish_checkpoint", &e));
                checkpoint = Some(upto);
                rep.line(&format!("@@P {upto}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parent

/// What one child reported before it died.
#[derive(Default)]
struct Reports {
    opened: bool,
    acked: Vec<(u64, Ident)>,
    batches: Vec<(u64, Batch)>,
    /// The highest truncation point announced (a call may be in flight).
    truncated: Option<u64>,
    /// Truncations that returned.
    truncations: u64,
    /// The highest checkpoint whose publish returned.
    published: Option<u64>,
    errors: Vec<String>,
}

fn parse_reports(out: &[u8], cycle: u32) -> Reports {
    let mut r = Reports::default();
    let complete = match out.iter().rposition(|&b| b == b'\n') {
        Some(n) => &out[..n],
        None => return r,
    };
    for line in String::from_utf8_lossy(complete).lines() {
        // libtest prints "test <name> ... " before the first line of output.
        let Some(at) = line.find("@@") else { continue };
        let mut f = line[at + 2..].split(' ');
        let tag = f.next().unwrap_or("");
        let mut num = || -> u64 {
            f.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("cycle {cycle}: bad report line {line:?}"))
        };
        match tag {
            "O" => r.opened = true,
            "A" => {
                let id = num();
                let (thread, seq, len) = (num() as u32, num(), num() as u32);
                r.acked.push((
                    id,
                    Ident {
                        cycle,
                        thread,
                        seq,
                        len,
                    },
                ));
            }
            "B" => {
                let first = num();
                let (thread, seq, n) = (num() as u32, num(), num());
                r.batches.push((
                    first,
                    Batch {
                        cycle,
                        thread,
                        seq,
                        n,
                    },
                ));
            }
            "t" => {
                let upto = num();
                r.truncated = Some(r.truncated.map_or(upto, |t| t.max(upto)));
            }
            "T" => {
                num();
                r.truncations += 1;
            }
            "P" => {
                let upto = num();
                r.published = Some(r.published.map_or(upto, |p| p.max(upto)));
            }
            "E" => r.errors.push(line[at..].to_owned()),
            _ => panic!("cycle {cycle}: bad report line {line:?}"),
        }
    }
    r
}

/// Held while this process spawns a child, and while it holds a WAL open.
///
/// The two tests run in one process. A child is forked with a copy of every
/// descriptor, and keeps it until its `exec` closes it (`O_CLOEXEC`); a WAL
/// lock (`flock`) open in the parent at that moment is shared with that copy
/// and outlives the parent's `Wal` for as long. Without this, one test's
/// spawn could keep the other's lock past its probe and make the next child
/// find the log locked.
static FORK_GUARD: Mutex<()> = Mutex::new(());

fn fork_guard() -> std::sync::MutexGuard<'static, ()> {
    FORK_GUARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one child on `dir` and kills it after `delay`. Returns its reports.
fn run_child(test: &str, dir: &Path, cycle: u32, delay: Duration, seed: u64) -> Reports {
    let guard = fork_guard();
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-execute the test binary");
    drop(guard);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().expect("wait for the child");
    let out = reader.join().expect("stdout reader");
    let reports = parse_reports(&out, cycle);
    if !reports.errors.is_empty() || status.signal() != Some(libc::SIGKILL) {
        panic!(
            "cycle {cycle} (seed {seed:#x}, killed after {delay:?}): the child failed: \
             {status:?}, {:?}",
            reports.errors
        );
    }
    reports
}

/// A batch appended by `thread` of `cycle`: seqs `seq..seq + n`.
#[derive(Debug, Clone, Copy)]
struct Batch {
    cycle: u32,
    thread: u32,
    seq: u64,
    n: u64,
}

/// What the parent knows must be in the log.
struct Expected {
    /// Batches the last child appended, by first id: each must replay all
    /// or none (acknowledged or not).
    batches: BTreeMap<u64, Batch>,
    /// Acknowledged entries at or above `floor`.
    acked: BTreeMap<u64, Ident>,
    /// Entries below this id may have been truncated away.
    floor: u64,
    /// The highest id ever acknowledged.
    max_acked: u64,
    /// The highest checkpoint entry whose publish returned (0: none).
    published: u64,
}

impl Expected {
    fn new() -> Expected {
        Expected {
            batches: BTreeMap::new(),
            acked: BTreeMap::new(),
            floor: 1,
            max_acked: 0,
            published: 0,
        }
    }

    fn ack(&mut self, id: u64, who: Ident, ctx: &str) {
        if let Some(old) = self.acked.insert(id, who) {
            if old != who {
                panic!("{ctx}: id {id} acknowledged twice: first for {old:?}, now for {who:?}");
            }
        }
        self.max_acked = self.max_acked.max(id);
    }

    fn truncated(&mut self, upto: u64) {
        self.floor = self.floor.max(upto + 1);
        self.acked = self.acked.split_off(&self.floor);
    }
}

/// The outcome of checking the log against what was acknowledged.
struct Checked {
    entries: u64,
    /// The highest live segment id (how many rotations the log has seen).
    last_segment: u64,
    torn_tail: bool,
}

/// Replays the WAL of `root` in `mode`, checking every entry against
/// `exp`; returns the first problem, or what it saw.
fn check_log(
    root: &Path,
    mode: ReadMode,
    exp: &Expected,
) -> std::result::Result<std::result::Result<Checked, String>, Error> {
    let wal_path = root.join(WAL_DIR);
    if !wal_path.exists() {
        // Killed before the folder was created.
        return Ok(match exp.acked.keys().next() {
            Some(id) => Err(format!(
                "the WAL folder is gone; entry {id} was acknowledged"
            )),
            None => Ok(Checked {
                entries: 0,
                last_segment: 0,
                torn_tail: false,
            }),
        });
    }
    let dir: Arc<dyn Directory> = FsDirectory::arc(root)?;
    let reader = WalReader::open(dir, WAL_DIR, mode)?;
    let last_segment = reader.segment_ids().last().map_or(0, |s| s.get());
    let mut problems: Vec<String> = Vec::new();
    let mut prev: Option<u64> = None;
    let mut first: Option<u64> = None;
    let mut wanted = exp.acked.iter().peekable();
    let mut batch_seen: BTreeMap<u64, u64> = BTreeMap::new();
    let summary: ReplaySummary = reader.replay(None, |id, bytes| {
        let id = id.get();
        first.get_or_insert(id);
        if let Some(p) = prev {
            if id != p + 1 {
                problems.push(format!("id gap: {p} then {id}"));
            }
        }
        prev = Some(id);
        // Acknowledged entries that the walk has passed without seeing.
        while let Some((&w, _)) = wanted.peek() {
            if w >= id {
                break;
            }
            problems.push(format!("acknowledged entry {w} is missing (log skips it)"));
            wanted.next();
        }
        match decode(bytes) {
            Err(e) => problems.push(format!("entry {id}: {e}")),
            Ok(got) => {
                if let Some((&a, b)) = exp.batches.range(..=id).next_back() {
                    if id < a + b.n {
                        *batch_seen.entry(a).or_default() += 1;
                        let want = (b.cycle, b.thread, b.seq + (id - a));
                        if (got.cycle, got.thread, got.seq) != want {
                            problems.push(format!(
                                "entry {id}: holds {got:?}, but batch {a}..={} put (cycle, \
                                 thread, seq) {want:?} there",
                                a + b.n - 1
                            ));
                        }
                    }
                }
                if let Some((&w, &want)) = wanted.peek() {
                    if w == id {
                        wanted.next();
                        if got != want {
                            problems.push(format!(
                                "entry {id}: holds {got:?}, acknowledged as {want:?}"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    })?;
    for (&w, who) in wanted {
        problems.push(format!(
            "acknowledged entry {w} ({who:?}) is missing: the log ends at {:?}",
            summary.last
        ));
        if problems.len() > 20 {
            break;
        }
    }
    for (&a, b) in &exp.batches {
        let seen = batch_seen.get(&a).copied().unwrap_or(0);
        if seen != 0 && seen != b.n {
            problems.push(format!(
                "batch {a}..={} ({b:?}): {seen} of its {} entries replayed",
                a + b.n - 1,
                b.n
            ));
        }
    }
    let start = first.or(summary.next_entry.map(EntryId::get));
    if let Some(start) = start {
        if start > exp.floor {
            problems.push(format!(
                "the log starts at {start}, above the truncation point {} (entries in between \
                 may not be truncated)",
                exp.floor
            ));
        }
    }
    if let Some(next) = summary.next_entry {
        if next.get() <= exp.max_acked {
            problems.push(format!(
                "the log ends at next id {next}, but {} was acknowledged",
                exp.max_acked
            ));
        }
    }
    if problems.is_empty() {
        return Ok(Ok(Checked {
            entries: summary.entries,
            last_segment,
            torn_tail: summary.torn_tail,
        }));
    }
    let n = problems.len();
    problems.truncate(20);
    if n > 20 {
        problems.push(format!("... {} more", n - 20));
    }
    Ok(Err(problems.join("\n  ")))
}

/// Checks the log after a kill: strict, or best-effort if (and only if)
/// strict mode refuses a torn tail. Panics on any problem; returns whether
/// the tail was torn, and what the replay saw.
fn check_after_kill(root: &Path, exp: &Expected, ctx: &str) -> (bool, Checked) {
    match check_log(root, ReadMode::Strict, exp) {
        Ok(Ok(c)) => (false, c),
        Ok(Err(problems)) => panic!("{ctx}: strict replay:\n  {problems}"),
        Err(Error::Corrupt {
            kind: CorruptKind::TornTail,
            ..
        }) => match check_log(root, ReadMode::BestEffort, exp) {
            Ok(Ok(c)) => {
                assert!(
                    c.torn_tail,
                    "{ctx}: strict saw a torn tail, best-effort not"
                );
                (true, c)
            }
            Ok(Err(problems)) => panic!("{ctx}: best-effort replay:\n  {problems}"),
            Err(e) => panic!("{ctx}: best-effort replay failed: {e}"),
        },
        Err(e) => panic!("{ctx}: strict replay failed: {e}"),
    }
}

/// What recovery replays into: the checkpoint's value, and the ids seen.
struct Replayed {
    checkpoint_value: Option<u64>,
    last: Option<u64>,
    problems: Vec<String>,
}

/// Recovers with `recover_with_wal` (the payloads replayed as `()`, which
/// any bytes are): it must succeed, start from a checkpoint at or above
/// every publish that returned, whose value is its own entry id, replay
/// consecutive ids from the entry after it, and reach the last acknowledged
/// entry. Returns the checkpoint's entry.
fn check_recovery(root: &Path, mode: ReadMode, exp: &Expected, ctx: &str) -> Option<u64> {
    let dir = FsDirectory::arc(root).unwrap();
    let opts = match mode {
        ReadMode::Strict => RecoveryOptions::strict(),
        ReadMode::BestEffort => RecoveryOptions::best_effort(),
    };
    let r = recover_with_wal::<u64, (), _, _, _>(
        &dir,
        &opts,
        |c| Replayed {
            checkpoint_value: c.map(|v| v.to_native()),
            last: None,
            problems: Vec::new(),
        },
        |st, id, ()| {
            if let Some(prev) = st.last {
                if id.get() != prev + 1 {
                    st.problems.push(format!("id gap: {prev} then {id}"));
                }
            }
            st.last = Some(id.get());
        },
    )
    .unwrap_or_else(|e| panic!("{ctx}: recover_with_wal ({mode:?}) failed: {e}"));
    let ckpt = r.checkpoint_entry.map(EntryId::get);
    let mut problems = r.state.problems;
    if ckpt.unwrap_or(0) < exp.published {
        problems.push(format!(
            "recovery starts from checkpoint {ckpt:?} ({:?}), but checkpoint {} was published",
            r.checkpoint, exp.published
        ));
    }
    if r.state.checkpoint_value != ckpt {
        problems.push(format!(
            "checkpoint {:?} holds {:?}, expected {ckpt:?}",
            r.checkpoint, r.state.checkpoint_value
        ));
    }
    // Without a checkpoint nothing was truncated: the log starts at 1.
    let from = ckpt.map_or(1, |c| c + 1);
    if r.replayed > 0 && r.state.last.map(|l| l + 1 - r.replayed) != Some(from) {
        problems.push(format!(
            "replay after checkpoint {ckpt:?} does not start at the entry after it \
             ({} entries up to {:?})",
            r.replayed, r.state.last
        ));
    }
    if exp.max_acked > 0 && r.last_entry.map_or(0, EntryId::get) < exp.max_acked {
        problems.push(format!(
            "recovery ends at {:?}; {} was acknowledged",
            r.last_entry, exp.max_acked
        ));
    }
    if !problems.is_empty() {
        panic!("{ctx}: recovery ({mode:?}):\n  {}", problems.join("\n  "));
    }
    ckpt
}

/// Resumes the log in the parent, appends one entry durably (expected from
/// now on), closes or drops the WAL, and checks the log strictly.
fn probe(root: &Path, exp: &mut Expected, cycle: u32, rng: &mut Rng, ctx: &str) {
    let guard = fork_guard();
    let dir = FsDirectory::arc(root).unwrap();
    let wal = Wal::open(dir, opts()).unwrap_or_else(|e| panic!("{ctx}: Wal::open: {e}"));
    let who = Ident {
        cycle,
        thread: PROBE_THREAD,
        seq: 0,
        len: pick_len(rng),
    };
    let id = wal
        .append_durable(&payload(who))
        .unwrap_or_else(|e| panic!("{ctx}: append_durable after resume: {e}"));
    if id.get() <= exp.max_acked {
        panic!(
            "{ctx}: the resumed log gave id {id} to a new entry; {} was acknowledged",
            exp.max_acked
        );
    }
    exp.ack(id.get(), who, ctx);
    if rng.below(2) == 0 {
        wal.close()
            .unwrap_or_else(|e| panic!("{ctx}: close after resume: {e}"));
    } else {
        drop(wal);
    }
    drop(guard);
    match check_log(root, ReadMode::Strict, exp) {
        Ok(Ok(_)) => {}
        Ok(Err(problems)) => panic!("{ctx}: strict replay after resume:\n  {problems}"),
        Err(e) => panic!("{ctx}: strict replay after resume failed: {e}"),
    }
    check_recovery(root, ReadMode::Strict, exp, ctx);
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// A scratch directory under the temp dir, removed on success only (kept
/// for inspection when the test fails).
struct Scratch {
    path: PathBuf,
    ok: AtomicBool,
}

impl Scratch {
    fn new(tag: &str, seed: u64) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "zerodur-kill-{tag}-{}-{seed:x}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch {
            path,
            ok: AtomicBool::new(false),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.ok.load(Ordering::Relaxed) {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("kill loop: scratch directory kept: {}", self.path.display());
        }
    }
}

#[derive(Default)]
struct Tally {
    kills: u64,
    opened: u64,
    acked: u64,
    truncations: u64,
    publishes: u64,
    recovered_from_checkpoint: u64,
    batches: u64,
    torn_tails: u64,
    probes: u64,
    max_entries: u64,
    max_segment: u64,
}

/// The kill loop. `fresh`: a new directory per cycle; otherwise one
/// directory for the whole run.
fn kill_loop(test: &str, fresh: bool, default_kills: u64) {
    let kills = env_u64("ZERODUR_KILLS").unwrap_or(default_kills);
    let seed = env_u64("ZERODUR_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    println!("{test}: {kills} kills, ZERODUR_KILL_SEED={seed:#x}");
    let started = Instant::now();
    let scratch = Scratch::new(if fresh { "fresh" } else { "reused" }, seed);
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let mut exp = Expected::new();
    for cycle in 0..kills as u32 {
        let root = if fresh {
            let root = scratch.path.join(format!("c{cycle}"));
            std::fs::create_dir_all(&root).unwrap();
            exp = Expected::new();
            root
        } else {
            scratch.path.clone()
        };
        // A quarter of the kills within the first 8 ms (start-up, open,
        // resume, first appends), one in 20 after up to 150 ms (many
        // rotations in one life), the rest spread over 40 ms.
        let delay_us = match rng.below(20) {
            0..=4 => rng.below(8_000),
            5 => rng.below(LONG_DELAY_US),
            _ => rng.below(MAX_DELAY_US),
        };
        let delay = Duration::from_micros(delay_us);
        let ctx = format!("cycle {cycle} (ZERODUR_KILL_SEED={seed:#x}, killed after {delay:?})");
        let r = run_child(test, &root, cycle, delay, seed);
        t.kills += 1;
        t.opened += u64::from(r.opened);
        t.acked += r.acked.len() as u64;
        for &(id, who) in &r.acked {
            exp.ack(id, who, &ctx);
        }
        t.truncations += r.truncations;
        t.batches += r.batches.len() as u64;
        exp.batches = r.batches.iter().copied().collect();
        if let Some(upto) = r.truncated {
            exp.truncated(upto);
        }
        if let Some(p) = r.published {
            t.publishes += 1;
            exp.published = exp.published.max(p);
        }
        let (torn, c) = check_after_kill(&root, &exp, &ctx);
        let mode = if torn {
            ReadMode::BestEffort
        } else {
            ReadMode::Strict
        };
        if check_recovery(&root, mode, &exp, &ctx).is_some() {
            t.recovered_from_checkpoint += 1;
        }
        t.torn_tails += u64::from(torn);
        t.max_entries = t.max_entries.max(c.entries);
        t.max_segment = t.max_segment.max(c.last_segment);
        if fresh || cycle % 8 == 7 {
            probe(&root, &mut exp, cycle, &mut rng, &format!("{ctx}, probe"));
            t.probes += 1;
        }
        if fresh {
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
    scratch.ok.store(true, Ordering::Relaxed);
    println!(
        "{test}: {:.1?}: {} kills ({} after open returned), {} acknowledged entries, \
         {} truncations, {} lives that published checkpoints, {} recoveries from a \
         checkpoint, {} batches, {} torn tails refused by strict replay, {} parent resumes, \
         up to {} entries in the log, segment ids up to {}",
        started.elapsed(),
        t.kills,
        t.opened,
        t.acked,
        t.truncations,
        t.publishes,
        t.recovered_from_checkpoint,
        t.batches,
        t.torn_tails,
        t.probes,
        t.max_entries,
        t.max_segment
    );
    println!("kills: {}, acknowledged entries lost: 0", t.kills);
}

#[test]
fn kill_loop_reused_directory() {
    child_side();
    kill_loop("kill_loop_reused_directory", false, 2_500);
}

#[test]
fn kill_loop_fresh_directory_per_cycle() {
    child_side();
    kill_loop("kill_loop_fresh_directory_per_cycle", true, 1_500);
}
