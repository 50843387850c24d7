//! Checkpoint write and load on the filesystem backend.
//!
//! - 1 M `(u64, u64)` pairs: durable write; load = map + header/payload CRC +
//!   rkyv validation + a full scan summing the pairs.
//! - a 100 MB blob: durable write; load = map + CRC-validated bytes; and one
//!   CRC pass over the same bytes in memory, the floor a load is compared to.
//!
//! Files go to a temporary directory under `$ZERODUR_BENCH_DIR` (default: the
//! system temporary directory); put it on the disk you care about. Loads
//! read from the page cache.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use zerodur::{Checkpoint, CheckpointBytes, FsDirectory};

const PAIRS: usize = 1_000_000;
const BLOB_BYTES: usize = 100_000_000;
const TAG: u64 = 0xC0FFEE;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ZERODUR_BENCH_DIR") {
        Some(root) => tempfile::tempdir_in(root).expect("temporary directory"),
        None => tempfile::tempdir().expect("temporary directory"),
    }
}

fn pairs(c: &mut Criterion) {
    let pairs: Vec<(u64, u64)> = (0..PAIRS as u64)
        .map(|i| (i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let expected: u64 = pairs
        .iter()
        .fold(0u64, |s, p| s.wrapping_add(p.0).wrapping_add(p.1));
    let tmp = bench_dir();
    let dir = FsDirectory::new(tmp.path()).expect("bench directory");

    let mut g = c.benchmark_group("checkpoint_pairs_1m");
    g.throughput(Throughput::Bytes((PAIRS * 16) as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat);

    g.bench_function("write_durable", |b| {
        b.iter(|| Checkpoint::write(&dir, "pairs.zdc", TAG, Some(PAIRS as u64), &pairs).unwrap())
    });

    Checkpoint::write(&dir, "pairs.zdc", TAG, Some(PAIRS as u64), &pairs).unwrap();
    g.bench_function("load_validate_scan", |b| {
        b.iter(|| {
            let loaded = Checkpoint::<Vec<(u64, u64)>>::load(&dir, "pairs.zdc", TAG).unwrap();
            let sum = loaded.iter().fold(0u64, |s, p| {
                s.wrapping_add(p.0.to_native())
                    .wrapping_add(p.1.to_native())
            });
            assert_eq!(sum, expected);
            black_box(sum)
        })
    });
    g.finish();
}

fn blob(c: &mut Criterion) {
    let mut state = 0x1234_5678_9abc_def0u64;
    let blob: Vec<u8> = (0..BLOB_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let tmp = bench_dir();
    let dir = FsDirectory::new(tmp.path()).expect("bench directory");

    let mut g = c.benchmark_group("checkpoint_blob_100mb");
    g.throughput(Throughput::Bytes(BLOB_BYTES as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);

    g.bench_function("write_durable", |b| {
        b.iter(|| CheckpointBytes::write(&dir, "blob.zdc", TAG, None, &blob).unwrap())
    });

    CheckpointBytes::write(&dir, "blob.zdc", TAG, None, &blob).unwrap();
    g.bench_function("load_crc_validated", |b| {
        b.iter(|| {
            let loaded = CheckpointBytes::load(&dir, "blob.zdc", TAG).unwrap();
            black_box(loaded.len())
        })
    });
    g.bench_function("crc32_pass_in_memory", |b| {
        b.iter(|| black_box(crc32fast::hash(black_box(&blob))))
    });
    g.finish();
}

criterion_group!(benches, pairs, blob);
criterion_main!(benches);
