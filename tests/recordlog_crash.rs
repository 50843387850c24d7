//! Power loss at every operation of a record-log workload, under several
//! crash policies: the log always reopens, replays a prefix of what was
//! appended that holds every synced record, accepts appends again, and never
//! replays bytes of a discarded tail.

use std::sync::Arc;

use zerodur::{CrashPolicy, Directory, MemoryDirectory, RecordLog, RecordLogMode};

const LOG: &str = "log/meta.log";

/// Records of varied sizes: empty, small, and several sectors long.
fn records() -> Vec<Vec<u8>> {
    (0..12u32)
        .map(|i| {
            let len = [0usize, 5, 700, 40, 1500, 3][i as usize % 6];
            (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
        })
        .collect()
}

/// Opens the log, appends every record, syncing after every third; returns
/// how many records were acknowledged (synced) before anything failed.
fn workload(dir: &MemoryDirectory, records: &[Vec<u8>]) -> usize {
    let mut acked = 0;
    let _ = (|| -> zerodur::Result<()> {
        let mut log = RecordLog::open(Arc::new(dir.clone()), LOG)?;
        for (i, r) in records.iter().enumerate() {
            log.append(r)?;
            if i % 3 == 2 || i + 1 == records.len() {
                log.sync()?;
                acked = i + 1;
            }
        }
        Ok(())
    })();
    acked
}

fn fresh() -> MemoryDirectory {
    let dir = MemoryDirectory::new();
    dir.create_dir_all("log").unwrap();
    dir.sync_dir("").unwrap();
    dir
}

fn replay(dir: &dyn Directory) -> Vec<Vec<u8>> {
    RecordLog::read(dir, LOG, RecordLogMode::Strict)
        .unwrap()
        .iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// Reopens a crash image and checks every oracle; returns nothing, panics
/// with the context on a violation.
fn check_image(image: MemoryDirectory, appended: &[Vec<u8>], acked: usize, ctx: &str) {
    let mut log = RecordLog::open(Arc::new(image.clone()), LOG)
        .unwrap_or_else(|e| panic!("{ctx}: the log must always reopen: {e}"));
    let got: Vec<Vec<u8>> = log.records().unwrap().iter().map(<[u8]>::to_vec).collect();
    assert!(
        got.len() >= acked,
        "{ctx}: {} records replayed, {acked} were synced",
        got.len()
    );
    assert_eq!(
        got[..],
        appended[..got.len()],
        "{ctx}: replay is not a prefix"
    );
    // Appending after recovery works, and survives the next crash.
    log.append(b"after recovery").unwrap();
    log.sync().unwrap();
    drop(log);
    let mut expected = got;
    expected.push(b"after recovery".to_vec());
    let again = image.crash_image(&CrashPolicy::drop_all());
    assert_eq!(replay(&again), expected, "{ctx}: append after recovery");
}

#[test]
fn crash_at_every_step_keeps_synced_records_and_replays_a_prefix() {
    let recs = records();
    let ops = {
        let dir = fresh();
        let base = dir.op_count();
        assert_eq!(workload(&dir, &recs), recs.len());
        dir.op_count() - base
    };
    let mut states = 0;
    for k in 0..=ops {
        let dir = fresh();
        dir.halt_after(dir.op_count() + k);
        let acked = workload(&dir, &recs);
        for policy in CrashPolicy::standard_set(8) {
            let ctx = format!("k={k} {policy:?}");
            check_image(dir.crash_image(&policy), &recs, acked, &ctx);
            states += 1;
        }
    }
    println!("crash states checked: {states}");
}

#[test]
fn crash_while_recovering_a_torn_tail_still_recovers_a_prefix() {
    let recs = records();
    // Images with torn tails: halted mid-batch, everything that was written
    // reaching the disk in some sectors only.
    let mut states = 0;
    for k in [9u64, 11, 14, 17] {
        let dir = fresh();
        dir.halt_after(dir.op_count() + k);
        let acked = workload(&dir, &recs);
        for seed in 0..6 {
            let torn = dir.crash_image(&CrashPolicy::seeded(seed));
            // Crash again at every step of the recovery (open = scan, cut,
            // sync) and of one append after it.
            let ops = {
                let d = torn.crash_image(&CrashPolicy::keep_all());
                let base = d.op_count();
                let mut log = RecordLog::open(Arc::new(d.clone()), LOG).unwrap();
                log.append(b"x").unwrap();
                log.sync().unwrap();
                d.op_count() - base
            };
            for j in 0..=ops {
                let d = torn.crash_image(&CrashPolicy::keep_all());
                d.halt_after(d.op_count() + j);
                let _ = RecordLog::open(Arc::new(d.clone()), LOG).and_then(|mut log| {
                    log.append(b"x")?;
                    log.sync()
                });
                for policy in CrashPolicy::standard_set(4) {
                    let image = d.crash_image(&policy);
                    let got = RecordLog::open(Arc::new(image.clone()), LOG)
                        .unwrap()
                        .records()
                        .unwrap()
                        .iter()
                        .map(<[u8]>::to_vec)
                        .collect::<Vec<_>>();
                    // A prefix of the original records, possibly followed by
                    // the one record appended after recovery.
                    let ctx = format!("k={k} seed={seed} j={j} {policy:?}");
                    let n = got.iter().zip(&recs).take_while(|(a, b)| a == b).count();
                    assert!(n >= acked, "{ctx}: synced records lost");
                    assert!(
                        got.len() == n || (got.len() == n + 1 && got[n] == b"x"),
                        "{ctx}: {} records, {n} match: not a prefix (+ x)",
                        got.len()
                    );
                    states += 1;
                }
            }
        }
    }
    println!("crash states checked: {states}");
}
