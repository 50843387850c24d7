//! Group commit: durable appends per second and latency percentiles with 1,
//! 2, 4, 8 and 16 threads appending 128-byte entries with `append_durable`.
//!
//! Run with `cargo bench --bench group_commit`. Prints a table; criterion
//! measures the time for a fixed number of durable appends per thread count.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zerodur::wal::{Wal, WalOptions};
use zerodur::FsDirectory;

const PER_THREAD: u64 = 200;
/// Appends per thread in the untimed run that prints percentiles.
const SUMMARY_PER_THREAD: u64 = 2000;

/// Runs `threads` appenders doing `per_thread` durable appends each; returns
/// the elapsed time and every append's latency.
fn run(wal: &Arc<Wal>, threads: u64, per_thread: u64) -> (Duration, Vec<Duration>) {
    let payload = [5u8; 128];
    let t = Instant::now();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let wal = Arc::clone(wal);
                s.spawn(move || {
                    (0..per_thread)
                        .map(|_| {
                            let t = Instant::now();
                            black_box(wal.append_durable(&payload).unwrap());
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    (t.elapsed(), lat)
}

fn group_commit(c: &mut Criterion) {
    let tmp = tempfile::tempdir_in(
        std::env::var_os("ZERODUR_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    let dir = FsDirectory::arc(tmp.path()).unwrap();
    let wal = Arc::new(Wal::open(dir, WalOptions::new("wal")).unwrap());
    let mut g = c.benchmark_group("wal_group_commit");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for threads in [1u64, 2, 4, 8, 16] {
        // One untimed run for the summary line with percentiles.
        let per = SUMMARY_PER_THREAD / threads;
        let (elapsed, mut lat) = run(&wal, threads, per);
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
        println!(
            "group commit: {threads:>2} threads: {:>8.0} durable appends/s, p50 {:?}, p99 {:?}",
            (threads * per) as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99)
        );
        g.throughput(Throughput::Elements(threads * PER_THREAD));
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &t| {
            // One set of threads per sample, each doing `iters` rounds of
            // appends back to back: thread start-up is paid once, and the
            // group commit sees steady concurrency, as a server would.
            b.iter_custom(|iters| run(&wal, t, PER_THREAD * iters).0)
        });
    }
    g.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
