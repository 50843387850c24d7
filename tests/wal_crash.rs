//! Crash enumeration of the WAL on `MemoryDirectory`: every workload is
//! crashed after every operation, each crash image is taken under
//! `CrashPolicy::standard_set(N)` (`N` = `ZERODUR_CRASH_POLICIES`, default and
//! minimum 8), recovered, and checked against the DESIGN.md oracles (see
//! `wal_common::check_state` and `Life::check`).
//!
//! Each test prints `crash states checked: N`, per-workload counts and its
//! run time. Run with `cargo test --release --test wal_crash -- --nocapture`.

mod wal_common;

use std::sync::Arc;
use std::time::Instant;

use wal_common::*;
use zerodur::wal::{ReadMode, Wal, WalOptions};
use zerodur::{CrashPolicy, Directory, Error, Fault, MemoryDirectory, OpKind, Result};

const SEG_8K: u64 = 8 * 1024;
const SEG_16K: u64 = 16 * 1024;

/// A workload, boxed so scenarios of different closures share a list.
type Boxed = Box<dyn Fn(&Ctx, &mut Life) -> Result<()>>;

/// Runs each named scenario through [`enumerate`] and reports.
fn run_all(test: &str, scenarios: Vec<(Scenario, Boxed)>) {
    let started = Instant::now();
    let mut parts = Vec::new();
    for (sc, wl) in &scenarios {
        let t = Instant::now();
        let tally = enumerate(sc, &**wl);
        parts.push((sc.name.clone(), tally, t.elapsed()));
    }
    let total = report(test, &parts, started);
    assert!(total > 0);
}

/// Runs `wl` once without crashing and returns the directory it left.
fn dry_run(sc: &Scenario, wl: Workload<'_>) -> MemoryDirectory {
    let (mem, _, res, _) = sc.run(wl, None);
    res.unwrap_or_else(|e| panic!("{}: dry run failed: {e}", sc.name));
    mem
}

fn expect_poisoned<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::Poisoned { .. }) => {}
        other => panic!("{what} on a poisoned WAL returned {other:?}, not Poisoned"),
    }
}

// ---------------------------------------------------------------------------
// Single append + sync

#[test]
fn single_append_then_sync_survives_every_crash() {
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    for len in [0usize, 1, 15, 16, 17, 100, 480, 511, 512, 1000, 4000, 4097] {
        for durable in [false, true] {
            let name = format!(
                "len {len} {}",
                if durable {
                    "append_durable"
                } else {
                    "append+sync"
                }
            );
            scenarios.push((
                Scenario::fresh(name, opts(SEG_8K, 0)),
                Box::new(move |c: &Ctx, l: &mut Life| {
                    let w = c.open(l)?;
                    let p = l.next_payload(len);
                    if durable {
                        l.append_durable(&w, &p)?;
                    } else {
                        l.append(&w, &p)?;
                        l.sync(&w)?;
                    }
                    Ok(())
                }),
            ));
        }
    }
    // The maximum entry of the segment, alone.
    let max = max_payload(SEG_8K);
    scenarios.push((
        Scenario::fresh(format!("len {max} (max) append+sync"), opts(SEG_8K, 0)),
        Box::new(move |c: &Ctx, l: &mut Life| {
            let w = c.open(l)?;
            let p = l.next_payload(max);
            l.append(&w, &p)?;
            l.sync(&w)
        }),
    ));
    run_all("single_append_then_sync", scenarios);
}

// ---------------------------------------------------------------------------
// Frames spanning a page boundary

#[test]
fn frame_spanning_a_page_boundary_survives_every_crash() {
    const PAGE: usize = 4096;
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    // Where entry 2's frame starts: header straddling the boundary, header
    // ending on it, payload straddling it, frame starting on it.
    for start2 in [PAGE - 16, PAGE - 32, PAGE - 32 - 112, PAGE] {
        // From a page start, 4064 bytes end the frame exactly on the next
        // boundary and 4200 cross it.
        let lens = if start2 == PAGE {
            [4064, 4200]
        } else {
            [200usize, 4200]
        };
        for len2 in lens {
            for sync_mode in 0..3u8 {
                let len1 = start2 - SEG_HEADER_LEN - FRAME_HEADER_LEN;
                assert_eq!(SEG_HEADER_LEN + frame_len(len1), start2);
                let wl = move |c: &Ctx, l: &mut Life| -> Result<()> {
                    let w = c.open(l)?;
                    for len in [len1, len2, 40] {
                        let p = l.next_payload(len);
                        match sync_mode {
                            0 => {
                                l.append(&w, &p)?;
                                l.sync(&w)?;
                            }
                            1 => {
                                l.append(&w, &p)?;
                            }
                            _ => {
                                l.append_durable(&w, &p)?;
                            }
                        }
                    }
                    l.sync(&w)
                };
                let sc = Scenario::fresh(
                    format!("entry 2 at {start2}, {len2} bytes, sync mode {sync_mode}"),
                    opts(SEG_16K, 0),
                );
                // The layout is what the scenario claims: entry 2's frame
                // starts at `start2` and crosses a page boundary.
                let mem = dry_run(&sc, &wl);
                let seg = mem.read(&seg_path(1)).unwrap();
                let f = chain(&seg)
                    .into_iter()
                    .find(|f| f.id == 2 && f.kind == KIND_ENTRY)
                    .expect("entry 2 in segment 1");
                assert_eq!(f.off, start2, "{}", sc.name);
                assert!(
                    f.off / PAGE != (f.end - 1) / PAGE || f.end % PAGE == 0,
                    "{}: no page boundary crossed or reached",
                    sc.name
                );
                scenarios.push((sc, Box::new(wl)));
            }
        }
    }
    run_all("frame_spanning_a_page_boundary", scenarios);
}

// ---------------------------------------------------------------------------
// Exactly full segments and rotation

#[test]
fn exactly_full_segment_and_forced_rotation_survive_every_crash() {
    let max = max_payload(SEG_8K);
    let seal_at = SEG_8K as usize - FRAME_HEADER_LEN;
    // Payload lengths whose frames end exactly at the seal reserve.
    let eleven_and_one: Vec<usize> = std::iter::repeat_n(688, 11).chain([144]).collect();
    assert_eq!(
        SEG_HEADER_LEN + eleven_and_one.iter().map(|&l| frame_len(l)).sum::<usize>(),
        seal_at
    );
    // Frames ending 32 bytes short: a zero-length frame still fits exactly.
    let short_by_one_slot: Vec<usize> = std::iter::repeat_n(688, 11).chain([112]).collect();
    // Frames ending at 8000: a 144-byte entry (176-byte frame) misses by 16.
    let short_by_16: Vec<usize> = std::iter::repeat_n(688, 10).chain([704]).collect();
    let short_end = SEG_HEADER_LEN + short_by_16.iter().map(|&l| frame_len(l)).sum::<usize>();
    assert_eq!(
        short_end + frame_len(144) + FRAME_HEADER_LEN,
        SEG_8K as usize + 16
    );

    struct Case {
        name: &'static str,
        fill: Vec<usize>,
        as_batch: bool,
        then: Vec<usize>,
        /// Segment 1's last entry frame ends here.
        ends_at: usize,
    }
    let cases = vec![
        Case {
            name: "one max entry fills the segment, next rotates",
            fill: vec![max],
            as_batch: false,
            then: vec![10, 0],
            ends_at: seal_at,
        },
        Case {
            name: "twelve entries fill the segment exactly, next rotates",
            fill: eleven_and_one.clone(),
            as_batch: false,
            then: vec![0, 300],
            ends_at: seal_at,
        },
        Case {
            name: "one batch fills the segment exactly, next rotates",
            fill: eleven_and_one,
            as_batch: true,
            then: vec![5, 5],
            ends_at: seal_at,
        },
        Case {
            name: "a zero-length entry fills the last slot, next rotates",
            fill: short_by_one_slot.into_iter().chain([0]).collect(),
            as_batch: false,
            then: vec![0, 64],
            ends_at: seal_at,
        },
        Case {
            name: "an entry 16 bytes too big forces rotation",
            fill: short_by_16,
            as_batch: false,
            then: vec![144, 20],
            ends_at: short_end,
        },
    ];
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    for case in cases {
        let Case {
            name,
            fill,
            as_batch,
            then,
            ends_at,
        } = case;
        let wl = move |c: &Ctx, l: &mut Life| -> Result<()> {
            let w = c.open(l)?;
            if as_batch {
                let ps: Vec<Vec<u8>> = fill
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| payload(l.life, l.next_id() + i as u64, len))
                    .collect();
                l.batch(&w, &ps, false)?;
            } else {
                for (i, &len) in fill.iter().enumerate() {
                    let p = l.next_payload(len);
                    l.append(&w, &p)?;
                    if i % 4 == 3 {
                        l.sync(&w)?;
                    }
                }
            }
            l.sync(&w)?;
            for &len in &then {
                let p = l.next_payload(len);
                l.append(&w, &p)?;
            }
            l.sync(&w)?;
            assert_eq!(w.active_segment().get(), 2, "no rotation happened");
            Ok(())
        };
        let sc = Scenario::fresh(name, opts(SEG_8K, 0));
        let mem = dry_run(&sc, &wl);
        let seg = mem.read(&seg_path(1)).unwrap();
        let frames = chain(&seg);
        let seal = frames.last().copied().expect("frames");
        assert_eq!(seal.kind, KIND_SEAL, "{name}: segment 1 is not sealed");
        assert_eq!(seal.off, ends_at, "{name}: unexpected layout");
        if ends_at == seal_at {
            assert_eq!(
                seal.end, SEG_8K as usize,
                "{name}: seal is not the last slot"
            );
        }
        scenarios.push((sc, Box::new(wl)));
    }
    run_all("exactly_full_segment_and_forced_rotation", scenarios);
}

// ---------------------------------------------------------------------------
// Rotation into recycled segments full of valid old frames

/// A directory whose WAL has segments 5..=6 live and segments 1..=4 in the
/// recycle pool, every one full of valid frames of `old_len`-byte payloads
/// filled by `fill` (zeros, 0xFF, or random).
fn recycled_base(old_len: usize, fill: Option<u8>) -> MemoryDirectory {
    let mem = MemoryDirectory::new();
    let dir: Arc<dyn Directory> = Arc::new(mem.clone());
    let w = Wal::open(dir.clone(), opts(SEG_8K, 4)).unwrap();
    let mut id = 1;
    while w.active_segment().get() < 6 {
        let p = match fill {
            Some(b) => vec![b; old_len],
            None => payload(99, id, old_len),
        };
        assert_eq!(w.append(&p).unwrap().get(), id);
        id += 1;
    }
    w.sync().unwrap();
    let ranges = w.segment_ranges().unwrap();
    let cut = ranges[4].first.get() - 1;
    assert_eq!(
        w.truncate_prefix(zerodur::wal::EntryId::new(cut)).unwrap(),
        4
    );
    w.close().unwrap();
    let names = dir.list(WAL_DIR).unwrap();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".free")).count(),
        4,
        "{names:?}"
    );
    mem.crash_image(&CrashPolicy::keep_all())
}

#[test]
fn rotation_into_recycled_segments_survives_every_crash() {
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    // (old payload length, old fill, new payload length): equal lengths put
    // every new frame exactly over an old one (the next slot after the tail
    // is always a valid old frame); 16 bytes shorter puts slots inside old
    // payloads (zeros look like a clean end, 0xFF like garbage).
    for (old_len, fill, new_len) in [
        (224usize, None, 224usize),
        (224, Some(0u8), 224),
        (224, Some(0xFF), 208),
        (480, None, 464),
        (0, None, 0),
    ] {
        let name = format!(
            "old {old_len}-byte frames ({}) under new {new_len}-byte frames",
            match fill {
                None => "random".to_string(),
                Some(b) => format!("{b:#04x}"),
            }
        );
        let base = recycled_base(old_len, fill);
        let sc = Scenario {
            name,
            base,
            opts: opts(SEG_8K, 4),
            life: 1,
        };
        let per_seg = (SEG_8K as usize - SEG_HEADER_LEN - FRAME_HEADER_LEN) / frame_len(new_len);
        let rounds = if new_len == 0 { 1 } else { 3 };
        let wl = move |c: &Ctx, l: &mut Life| -> Result<()> {
            let w = c.open(l)?;
            let start_seg = w.active_segment().get();
            for i in 0..rounds * per_seg + 3 {
                let p = l.next_payload(new_len);
                l.append(&w, &p)?;
                if i % 5 == 4 {
                    l.sync(&w)?;
                }
                if i == per_seg + 2 {
                    // Retire what this run sealed too, so rotation reuses
                    // files retired both before and during the run.
                    let upto = l.acked().saturating_sub(per_seg as u64);
                    l.truncate(&w, upto)?;
                }
            }
            l.sync(&w)?;
            // Every rotation reused a pooled file full of old frames.
            let stats = w.stats();
            assert!(w.active_segment().get() > start_seg);
            assert_eq!(stats.rotations, stats.recycled_reuses);
            Ok(())
        };
        scenarios.push((sc, Box::new(wl)));
    }
    run_all("rotation_into_recycled_segments", scenarios);
}

// ---------------------------------------------------------------------------
// Reopen–append–crash loops

/// Payload lengths by id: the same in every life, so a new life's frames
/// line up with the frames an earlier life left after the tail.
fn loop_len(id: u64) -> usize {
    [0usize, 300, 44, 700, 16, 1200, 96, 0, 500, 32][(id % 10) as usize]
}

fn loop_workload(c: &Ctx, l: &mut Life) -> Result<()> {
    let w = c.open(l)?;
    for i in 0..44u64 {
        let id = l.next_id();
        match i % 11 {
            3 => {
                let ps: Vec<Vec<u8>> = (0..3)
                    .map(|j| payload(l.life, id + j, loop_len(id + j)))
                    .collect();
                l.batch(&w, &ps, false)?;
            }
            6 => {
                l.append_durable(&w, &payload(l.life, id, loop_len(id)))?;
            }
            9 => {
                l.append(&w, &payload(l.life, id, loop_len(id)))?;
                l.sync(&w)?;
            }
            _ => {
                l.append(&w, &payload(l.life, id, loop_len(id)))?;
            }
        }
        if i == 30 && l.life % 2 == 1 {
            let upto = l.acked().saturating_sub(20);
            l.truncate(&w, upto)?;
        }
    }
    // The last few appends stay unsynced: the crash that ends this cycle
    // leaves frames the next life must fence off.
    Ok(())
}

#[test]
fn reopen_append_crash_loops_survive_every_crash() {
    const CYCLES: u32 = 10;
    let started = Instant::now();
    let mut parts = Vec::new();
    let mut base = MemoryDirectory::new();
    let mut extra = Tally::default();
    let mut recycled_rotations = 0;
    for cycle in 0..CYCLES {
        let sc = Scenario {
            name: format!("cycle {cycle}"),
            base: base.clone(),
            opts: opts(SEG_8K, 2),
            life: cycle,
        };
        let t = Instant::now();
        let tally = enumerate(&sc, &loop_workload);
        parts.push((sc.name.clone(), tally, t.elapsed()));
        // Did the uninterrupted run rotate into a pooled file (a rename of
        // a `.free` file followed by opening it as a region)?
        let (mem, _, _, _) = sc.run(&loop_workload, None);
        let log = mem.op_log();
        recycled_rotations += log
            .windows(2)
            .filter(|w| {
                w[0].kind == OpKind::Rename
                    && w[0].path.ends_with(".free")
                    && w[1].kind == OpKind::OpenRegion
            })
            .count();

        // The next cycle starts from a crash of this one that lost some
        // unacknowledged entries (so ids are reused with new payloads and
        // old frames lie past the tail), checked like every other state.
        let mut next = None;
        'search: for frac in [7u64, 6, 5, 8, 4] {
            let k = tally.ops * frac / 9;
            let (mem, life, _, _) = sc.run(&loop_workload, Some(k));
            for seed in 1000..1064u64 {
                let pol = CrashPolicy::seeded(seed + u64::from(cycle));
                let ctx = format!("cycle {cycle} → next base, crash after op {k}, {pol:?}");
                check_state(&mem, &pol, &life, &sc.opts, &ctx);
                extra.states += 1;
                let img = mem.crash_image(&pol);
                let dir: Arc<dyn Directory> = Arc::new(img.clone());
                let (got, _) = replay(&dir, ReadMode::BestEffort).unwrap();
                let lost = got.last().map_or(0, |e| e.0) + 1 < life.next_id();
                if lost && got.len() > 3 {
                    println!(
                        "  cycle {cycle}: next base = crash after op {k} under {pol:?}: {} entries, last {}, attempted up to {}",
                        got.len(),
                        got.last().unwrap().0,
                        life.next_id() - 1
                    );
                    next = Some(img);
                    break 'search;
                }
            }
        }
        base = next.expect("a crash image that lost unacknowledged entries");
    }
    parts.push(("next-base selection".into(), extra, Default::default()));
    report("reopen_append_crash_loops", &parts, started);
    println!("  rotations into recycled files across cycles: {recycled_rotations}");
    assert!(
        recycled_rotations >= 2,
        "the loops never rotated into a recycled file"
    );
}

// ---------------------------------------------------------------------------
// Kill -9, restart, power loss

/// What a restarted process does: resume, append a little (one entry
/// durable, a batch, a sync), crossing into a new segment if the killed
/// process left the active one nearly full.
fn restart_workload(c: &Ctx, l: &mut Life) -> Result<()> {
    let w = c.open(l)?;
    let id = l.next_id();
    l.append(&w, &payload(l.life, id, loop_len(id)))?;
    let id = l.next_id();
    l.append_durable(&w, &payload(l.life, id, 900))?;
    let ps: Vec<Vec<u8>> = (0..2)
        .map(|j| payload(l.life, l.next_id() + j, 600))
        .collect();
    l.batch(&w, &ps, false)?;
    let id = l.next_id();
    l.append(&w, &payload(l.life, id, 2000))?;
    l.sync(&w)
}

#[test]
fn kill_restart_then_power_loss_survives_every_crash() {
    let started = Instant::now();
    let mut parts = Vec::new();
    for (life, pool) in [(0u32, 0usize), (1, 2)] {
        let sc = Scenario {
            name: format!("loop workload, life {life}, pool {pool}"),
            base: MemoryDirectory::new(),
            opts: opts(SEG_8K, pool),
            life,
        };
        let t = Instant::now();
        let tally = enumerate_kill_restart(&sc, &loop_workload, &restart_workload);
        parts.push((sc.name.clone(), tally, t.elapsed()));
    }
    report("kill_restart_then_power_loss", &parts, started);
}

// ---------------------------------------------------------------------------
// Zero-length and maximum-length entries

#[test]
fn zero_and_max_length_entries_survive_every_crash() {
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    for (seg, explicit_max) in [(SEG_8K, false), (12 * 1024, true), (8200, false)] {
        let max = max_payload(seg);
        let mut o: WalOptions = opts(seg, 1);
        if explicit_max {
            o = o.max_entry_bytes(max as u64);
        }
        let wl = move |c: &Ctx, l: &mut Life| -> Result<()> {
            let w = c.open(l)?;
            let big = |l: &Life| l.next_payload(max);
            l.append(&w, &[])?;
            let p = big(l);
            l.append(&w, &p)?;
            for _ in 0..3 {
                l.append(&w, &[])?;
            }
            l.sync(&w)?;
            // Too large by one: refused, nothing written, not poisoned.
            match w.append(&vec![7; max + 1]) {
                Err(Error::EntryTooLarge { len, max: m }) => {
                    assert_eq!((len, m), (max as u64 + 1, max as u64));
                }
                Err(e) if c.halted() => return Err(e),
                other => panic!("oversized append returned {other:?}"),
            }
            assert!(!w.is_poisoned());
            l.batch(&w, &[vec![], vec![], vec![]], false)?;
            let p = big(l);
            l.append_durable(&w, &p)?;
            let p = big(l);
            l.batch(&w, &[p], false)?;
            let p = l.next_payload(1);
            l.append(&w, &p)?;
            l.batch(&w, &vec![vec![]; 5], true)?;
            let p = big(l);
            l.append(&w, &p)?;
            l.append(&w, &[])?;
            l.sync(&w)?;
            let truncate_to = l.acked() - 2;
            l.truncate(&w, truncate_to)?;
            let p = big(l);
            l.append(&w, &p)?;
            l.sync(&w)
        };
        let sc = Scenario::fresh(
            format!(
                "segment {seg}, max entry {max}{}",
                if explicit_max { " (explicit)" } else { "" }
            ),
            o,
        );
        scenarios.push((sc, Box::new(wl)));
    }
    run_all("zero_and_max_length_entries", scenarios);
}

// ---------------------------------------------------------------------------
// ENOSPC at rotation

/// Appends `len`-byte entries (syncing every third) until one fails with
/// ENOSPC because the segment it needs cannot be allocated; then checks the
/// WAL is poisoned, that opening fails cleanly while the disk is full, and
/// that once space is back it opens with everything acknowledged and
/// appends again (rotating `rotations_after` more times).
fn enospc_workload(
    len: usize,
    rotations_before: u64,
    rotations_after: u64,
) -> impl Fn(&Ctx, &mut Life) -> Result<()> {
    move |c: &Ctx, l: &mut Life| -> Result<()> {
        let w = c.open(l)?;
        for i in 0.. {
            let p = l.next_payload(len);
            l.append(&w, &p)?;
            if i % 3 == 2 {
                l.sync(&w)?;
            }
            if w.stats().rotations == rotations_before && i % 3 == 0 {
                break;
            }
        }
        c.mem
            .inject(Fault::enospc().on(OpKind::Allocate).persistent());
        let mut failed_at = None;
        for i in 0..1000 {
            let p = l.next_payload(len);
            match l.append(&w, &p) {
                Ok(_) if i % 3 == 2 => l.sync(&w)?,
                Ok(_) => {}
                Err(e) if c.halted() => return Err(e),
                Err(e) => {
                    assert_eq!(
                        e.raw_os_error(),
                        Some(libc::ENOSPC),
                        "the append needing a new segment must fail with ENOSPC, got {e}"
                    );
                    failed_at = Some(l.next_id());
                    break;
                }
            }
        }
        let failed_at = failed_at.expect("rotation never failed");
        assert!(w.is_poisoned());
        expect_poisoned(w.append(b"x"), "append");
        expect_poisoned(w.append_durable(b"x"), "append_durable");
        expect_poisoned(w.append_batch(&[b"x"]), "append_batch");
        expect_poisoned(w.sync(), "sync");
        expect_poisoned(
            w.truncate_prefix(zerodur::wal::EntryId::new(1)),
            "truncate_prefix",
        );
        assert_eq!(
            w.next_entry_id().get(),
            failed_at,
            "the failed append got an id"
        );
        drop(w);
        // Still full: opening must fail cleanly (it needs a new segment)...
        match Wal::open(c.dir.clone(), c.opts.clone()) {
            Err(e) if c.halted() => return Err(e),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}"),
            Ok(_) => panic!("open needing a new segment succeeded on a full disk"),
        }
        // ...and once space is back, it opens, and everything is there.
        c.mem.clear_faults();
        let w = c.open(l)?;
        assert_eq!(w.next_entry_id().get(), failed_at);
        let until = w.stats().rotations + rotations_after;
        let mut i = 0;
        while w.stats().rotations < until || i < 4 {
            let p = l.next_payload(len);
            l.append(&w, &p)?;
            if i % 4 == 3 {
                l.sync(&w)?;
            }
            i += 1;
        }
        l.sync(&w)
    }
}

#[test]
fn enospc_at_rotation_poisons_and_loses_nothing_acknowledged() {
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    for (seg, len, before, after) in [
        (SEG_8K, 700usize, 0u64, 1u64),
        (SEG_8K, 0, 0, 0),
        (SEG_8K, 2000, 1, 1),
        (SEG_16K, 300, 0, 1),
        (SEG_16K, 5000, 2, 1),
    ] {
        let sc = Scenario::fresh(
            format!(
                "segment {seg}, {len}-byte entries, ENOSPC at rotation {}",
                before + 1
            ),
            opts(seg, 0),
        );
        scenarios.push((sc, Box::new(enospc_workload(len, before, after))));
    }
    run_all("enospc_at_rotation", scenarios);
}

// ---------------------------------------------------------------------------
// A failed barrier in the middle of a batch

/// Acknowledges a few entries, leaves `unsynced` more unsynced, then makes
/// the barrier of an `append_batch_durable` of `batch` entries of `len`
/// bytes fail with EIO: the batch must not be acknowledged, the WAL must be
/// poisoned, and (checked in every crash image) the batch replays all or
/// none. With `reopen`, the process then reopens the WAL — the documented
/// recovery — and carries on.
fn eio_batch_workload(
    unsynced: u64,
    batch: u64,
    len: usize,
    reopen: bool,
) -> impl Fn(&Ctx, &mut Life) -> Result<()> {
    move |c: &Ctx, l: &mut Life| -> Result<()> {
        let w = c.open(l)?;
        for _ in 0..4 {
            let p = l.next_payload(300);
            l.append_durable(&w, &p)?;
        }
        for _ in 0..unsynced {
            let p = l.next_payload(90);
            l.append(&w, &p)?;
        }
        let ps: Vec<Vec<u8>> = (0..batch)
            .map(|i| payload(l.life, l.next_id() + i, len))
            .collect();
        c.mem.inject(Fault::eio().on(OpKind::FlushRange));
        match l.batch(&w, &ps, true) {
            Err(e) if c.halted() => return Err(e),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
            Ok(ids) => panic!("batch {ids:?} acknowledged although its barrier failed"),
        }
        assert!(w.is_poisoned());
        expect_poisoned(w.append(b"x"), "append");
        expect_poisoned(w.sync(), "sync");
        expect_poisoned(
            w.append_batch_durable(&[b"x", b"y"]),
            "append_batch_durable",
        );
        expect_poisoned(w.close(), "close");
        if !reopen {
            return Ok(());
        }
        // The documented recovery: reopen (same process, no crash).
        let w = c.open(l)?;
        for i in 0..6 {
            let p = l.next_payload(400);
            l.append(&w, &p)?;
            if i % 2 == 1 {
                l.sync(&w)?;
            }
        }
        let ps: Vec<Vec<u8>> = (0..3)
            .map(|i| payload(l.life, l.next_id() + i, 700))
            .collect();
        l.batch(&w, &ps, true)?;
        Ok(())
    }
}

fn eio_scenarios(reopen: bool) -> Vec<(Scenario, Boxed)> {
    let mut out: Vec<(Scenario, Boxed)> = Vec::new();
    for (seg, unsynced, batch, len) in [
        (SEG_16K, 2u64, 5u64, 1500usize),
        (SEG_16K, 0, 2, 4000),
        (SEG_16K, 3, 8, 100),
        (SEG_8K, 1, 3, 1200),
        (SEG_8K, 0, 6, 0),
    ] {
        let name = format!(
            "segment {seg}, {unsynced} unsynced, EIO on a batch of {batch} x {len} bytes{}",
            if reopen { ", then reopen" } else { "" }
        );
        out.push((
            Scenario::fresh(name, opts(seg, 0)),
            Box::new(eio_batch_workload(unsynced, batch, len, reopen)),
        ));
    }
    out
}

#[test]
fn failed_barrier_mid_batch_poisons_and_batch_is_all_or_none() {
    run_all("failed_barrier_mid_batch", eio_scenarios(false));
}

#[test]
fn reopen_after_failed_barrier_survives_every_crash() {
    run_all("reopen_after_failed_barrier", eio_scenarios(true));
}

// ---------------------------------------------------------------------------
// append_batch atomicity

#[test]
fn batches_replay_all_or_none_in_every_crash_image() {
    const LENS: [usize; 9] = [0, 17, 300, 1500, 600, 1200, 48, 900, 1024];
    let mut scenarios: Vec<(Scenario, Boxed)> = Vec::new();
    for (seg, recycle, rounds) in [(SEG_8K, 2usize, 26u64), (SEG_16K, 0, 20)] {
        let wl = move |c: &Ctx, l: &mut Life| -> Result<()> {
            let w = c.open(l)?;
            for b in 0..rounds {
                let n = (b % 5) + 1;
                let ps: Vec<Vec<u8>> = (0..n)
                    .map(|j| {
                        let id = l.next_id() + j;
                        payload(
                            l.life,
                            id,
                            LENS[((id * 7 + b) % LENS.len() as u64) as usize],
                        )
                    })
                    .collect();
                l.batch(&w, &ps, b % 7 == 6)?;
                if b % 3 == 2 {
                    l.sync(&w)?;
                }
                if b == rounds / 2 {
                    let upto = l.acked().saturating_sub(6);
                    l.truncate(&w, upto)?;
                }
            }
            assert!(w.stats().rotations >= 2);
            l.sync(&w)
        };
        scenarios.push((
            Scenario::fresh(format!("segment {seg}, pool {recycle}"), opts(seg, recycle)),
            Box::new(wl),
        ));
    }
    run_all("batches_all_or_none", scenarios);
}
