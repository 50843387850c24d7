//! A record log checked against a `Vec` model under random sequences of
//! appends, syncs, failed syncs, clean reopens and crashes.

use std::sync::Arc;

use proptest::prelude::*;
use zerodur::{CrashPolicy, Fault, MemoryDirectory, OpKind, RecordLog};

const LOG: &str = "model.log";

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Sync,
    /// A sync fails (its writes may never reach the disk); the poisoned
    /// handle is dropped and the log reopened in the same boot.
    FailedSync,
    Reopen,
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Op::Append),
        2 => Just(Op::Sync),
        1 => Just(Op::FailedSync),
        1 => Just(Op::Reopen),
        2 => any::<u64>().prop_map(Op::Crash),
    ]
}

fn replayed(log: &RecordLog) -> Vec<Vec<u8>> {
    log.records().unwrap().iter().map(<[u8]>::to_vec).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_vec_model_across_syncs_reopens_and_crashes(
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut dir = MemoryDirectory::new();
        let mut log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
        // Every record in the file (written, maybe not durable), and how many
        // of them are acknowledged durable.
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut acked = 0usize;
        for op in ops {
            match op {
                Op::Append(r) => {
                    log.append(&r).unwrap();
                    model.push(r);
                }
                Op::Sync => {
                    log.sync().unwrap();
                    acked = model.len();
                }
                Op::FailedSync => {
                    dir.inject(Fault::eio().on(OpKind::SyncFile));
                    prop_assert!(log.sync().is_err());
                    drop(log);
                    log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
                    prop_assert_eq!(replayed(&log), model.clone());
                    // Open makes every byte it found durable.
                    acked = model.len();
                }
                Op::Reopen => {
                    drop(log);
                    log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
                    prop_assert_eq!(replayed(&log), model.clone());
                    acked = model.len();
                }
                Op::Crash(seed) => {
                    let policy = match seed % 4 {
                        0 => CrashPolicy::drop_all(),
                        1 => CrashPolicy::keep_all(),
                        _ => CrashPolicy::seeded(seed),
                    };
                    drop(log);
                    dir = dir.crash_image(&policy);
                    log = RecordLog::open(Arc::new(dir.clone()), LOG).unwrap();
                    let got = replayed(&log);
                    prop_assert!(got.len() >= acked, "synced records lost");
                    prop_assert_eq!(&got[..], &model[..got.len()]);
                    // What survived a crash is durable from now on.
                    model = got;
                    acked = model.len();
                }
            }
            prop_assert_eq!(log.len(), model.len() as u64);
        }
        prop_assert_eq!(replayed(&log), model);
    }
}
