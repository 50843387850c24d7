//! WAL hot paths: buffered append throughput (one thread, and several
//! sharing one WAL), durable append latency, replay
//! throughput, and resume time against the number of sealed segments.
//!
//! Run with `cargo bench --bench wal`. Peer comparisons live in `compare/`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerodur::wal::{ReadMode, Wal, WalOptions, WalReader};
use zerodur::{Directory, FsDirectory};

fn fresh() -> (tempfile::TempDir, Arc<dyn Directory>) {
    let tmp = tempfile::tempdir_in(
        std::env::var_os("ZERODUR_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    let dir = FsDirectory::arc(tmp.path()).unwrap();
    (tmp, dir)
}

fn buffered_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_buffered_append");
    for size in [100usize, 1024] {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let payload = vec![7u8; size];
            b.iter_custom(|iters| {
                let (_tmp, dir) = fresh();
                let wal = Wal::open(dir, WalOptions::new("wal").prefault(true)).unwrap();
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(wal.append(&payload).unwrap());
                }
                t.elapsed()
            });
        });
    }
    g.finish();
}

fn durable_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_durable_append");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let (_tmp, dir) = fresh();
    let wal = Wal::open(dir, WalOptions::new("wal")).unwrap();
    let payload = [3u8; 128];
    g.bench_function("128B", |b| b.iter(|| wal.append_durable(&payload).unwrap()));
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_replay");
    g.sample_size(10);
    let n: u64 = 1_000_000;
    let (_tmp, dir) = fresh();
    {
        let wal = Wal::open(dir.clone(), WalOptions::new("wal")).unwrap();
        let payload = [9u8; 100];
        for _ in 0..n {
            wal.append(&payload).unwrap();
        }
        wal.close().unwrap();
    }
    g.throughput(Throughput::Elements(n));
    g.bench_function("1M_x_100B", |b| {
        b.iter(|| {
            let r = WalReader::open(dir.clone(), "wal", ReadMode::Strict).unwrap();
            let mut sum = 0u64;
            let s = r
                .replay(None, |_, bytes| {
                    sum += bytes.len() as u64;
                    Ok(())
                })
                .unwrap();
            assert_eq!(s.entries, n);
            black_box(sum)
        })
    });
    g.finish();
}

fn resume(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_resume");
    g.sample_size(20);
    for sealed in [16u64, 256] {
        let (_tmp, dir) = fresh();
        let opts = WalOptions::new("wal").segment_size_bytes(64 * 1024);
        {
            let wal = Wal::open(dir.clone(), opts.clone()).unwrap();
            let payload = [1u8; 1000];
            while wal.active_segment().get() <= sealed {
                wal.append(&payload).unwrap();
            }
            wal.close().unwrap();
        }
        g.bench_with_input(
            BenchmarkId::new("sealed_segments", sealed),
            &sealed,
            |b, _| b.iter(|| black_box(Wal::open(dir.clone(), opts.clone()).unwrap())),
        );
    }
    g.finish();
}

/// Buffered appends of 100 B from several threads sharing one WAL: each
/// thread appends its share of the iterations. Throughput is per entry, so
/// scaling shows as a rising rate with the thread count.
fn buffered_append_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_buffered_append_threads");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2, 4] {
        g.bench_with_input(
            BenchmarkId::from_parameter(threads),
            &threads,
            |b, &threads| {
                let payload = vec![7u8; 100];
                b.iter_custom(|iters| {
                    let (_tmp, dir) = fresh();
                    let wal = Wal::open(dir, WalOptions::new("wal")).unwrap();
                    let share = iters.div_ceil(threads as u64);
                    let t = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            s.spawn(|| {
                                for _ in 0..share {
                                    black_box(wal.append(&payload).unwrap());
                                }
                            });
                        }
                    });
                    let elapsed = t.elapsed();
                    assert_eq!(wal.next_entry_id().get(), share * threads as u64 + 1);
                    elapsed
                });
            },
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    buffered_append,
    buffered_append_threads,
    durable_append,
    replay,
    resume
);
criterion_main!(benches);
