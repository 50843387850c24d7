//! Group commit: many appenders, one `msync`.
//!
//! # Design: leader/follower, sync outside the append lock
//!
//! An appender that needs durability calls [`GroupCommit::wait_durable`]. If
//! its entry is already durable it returns at once. If a barrier is in
//! flight, it waits for it (it may cover the entry, or the next one will).
//! Otherwise it becomes the leader: it captures the dirty range of the active
//! segment under the append lock (a few loads), releases that lock, and runs
//! the `msync` with no lock held, so other threads keep copying frames in
//! while the disk works. When the barrier returns, every entry appended before
//! the capture is durable; the leader publishes that watermark and wakes all
//! waiters, and the next waiter whose entry is still not covered leads the
//! next barrier, covering everyone who arrived meanwhile.
//!
//! **Gathering.** A leader first waits, yielding the CPU, until as many
//! entries are pending as recent barriers covered (a decaying peak), for at
//! most half the last barrier's duration. Without it, the appenders a barrier
//! just released — still waking up — miss the next one, and barriers
//! alternate between full and nearly empty. A lone appender never waits: its
//! batches are of one entry, which it has already appended.
//!
//! A dedicated sync thread was the alternative. Leader/follower needs no
//! extra thread or hand-off latency for a single writer (the appender runs
//! its own `msync`, so one-thread latency equals the raw barrier), and under
//! load it batches exactly as well: everyone who arrives during a barrier
//! shares the next one.
//!
//! # One barrier at a time
//!
//! Barriers on a segment never overlap: a leader's `msync` and a rotation's
//! seal flush both run under [`GroupCommit::barrier`], check for poisoning
//! first, and poison before releasing it if they fail. Linux reports a
//! write-back error to one caller only; two overlapping barriers could let
//! one consume the other's error and report a false success. (Concurrent
//! `msync`s would otherwise raise throughput: measured here, 4 in flight do
//! 2× the barriers per second of one.)
//!
//! # Failure
//!
//! A failed barrier poisons the WAL before any waiter is released: the leader
//! gets the I/O error, every waiter of that batch (and every later call) gets
//! [`Error::Poisoned`]. No later barrier runs, so nobody is ever acknowledged
//! by a barrier that followed a failed one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a leader flushed.
pub(crate) struct Flushed {
    /// Every entry id up to this one is now durable.
    pub(crate) durable: u64,
}

#[derive(Debug, Default)]
struct State {
    in_flight: bool,
}

/// The durable watermark and the barrier hand-off.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
    /// Highest entry id known durable (0: none).
    durable: AtomicU64,
    poisoned: AtomicBool,
    cause: Mutex<Option<String>>,
    /// Highest entry id appended (durable or not).
    appended: AtomicU64,
    /// Decaying peak of entries per barrier, in 1/16ths.
    peak_x16: AtomicU64,
    /// Duration of the last barrier, in nanoseconds.
    last_barrier_ns: AtomicU64,
    /// Held for the whole of every barrier (leader flush or rotation seal).
    barrier: Mutex<()>,
}

/// Longest a leader waits to gather appenders.
const GATHER_MAX: Duration = Duration::from_micros(250);

impl GroupCommit {
    pub(crate) fn new(durable: u64) -> GroupCommit {
        let g = GroupCommit::default();
        g.durable.store(durable, Ordering::Release);
        g.appended.store(durable, Ordering::Release);
        g
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serializes barriers: hold the guard across check, flush, and
    /// poisoning on failure. Never take the WAL's append lock while holding
    /// it (rotation takes this one under the append lock).
    pub(crate) fn barrier(&self) -> MutexGuard<'_, ()> {
        self.barrier.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that every id up to `id` has been copied in. Called under the
    /// append lock, so ids arrive in order and a plain store suffices.
    pub(crate) fn appended(&self, id: u64) {
        self.appended.store(id, Ordering::Release);
    }

    /// Waits until as many entries are pending as recent barriers covered,
    /// within half the last barrier's duration.
    fn gather(&self) {
        let want = self.peak_x16.load(Ordering::Relaxed) / 16;
        let pending = || {
            self.appended
                .load(Ordering::Acquire)
                .saturating_sub(self.durable())
        };
        if want <= 1 || pending() >= want {
            return;
        }
        let budget =
            Duration::from_nanos(self.last_barrier_ns.load(Ordering::Relaxed) / 2).min(GATHER_MAX);
        let start = Instant::now();
        while pending() < want && start.elapsed() < budget {
            std::thread::yield_now();
        }
    }

    /// Folds a barrier that covered `batch` entries into the decaying peak:
    /// a larger batch raises it at once, a smaller one pulls it down by a
    /// quarter of the gap, so a drop in concurrency costs only a few
    /// barriers of waiting.
    fn record_batch(&self, batch: u64, took: Duration) {
        let peak = self.peak_x16.load(Ordering::Relaxed);
        let b = batch.saturating_mul(16);
        let next = if b >= peak { b } else { (peak * 3 + b) / 4 };
        self.peak_x16.store(next, Ordering::Relaxed);
        self.last_barrier_ns
            .store(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Highest entry id known durable (0: none).
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Raises the durable watermark (used by rotation, which flushes the whole
    /// outgoing segment) and wakes waiters it satisfies.
    pub(crate) fn advance(&self, durable: u64) {
        self.durable.fetch_max(durable, Ordering::AcqRel);
        let _g = self.lock();
        self.done.notify_all();
    }

    /// Returns once entry `target` is durable, leading a barrier with `flush`
    /// if none in flight will cover it.
    pub(crate) fn wait_durable<F>(&self, target: u64, mut flush: F) -> Result<()>
    where
        F: FnMut() -> Result<Flushed>,
    {
        let mut g = self.lock();
        loop {
            if self.durable() >= target {
                return Ok(());
            }
            self.check()?;
            if g.in_flight {
                g = self.done.wait(g).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            g.in_flight = true;
            drop(g);
            self.gather();
            // IMPORTANT: the barrier runs with no lock held; appenders keep
            // copying frames in meanwhile.
            let before = self.durable();
            let started = Instant::now();
            let res = flush();
            g = self.lock();
            g.in_flight = false;
            match res {
                Ok(f) => {
                    self.record_batch(f.durable.saturating_sub(before), started.elapsed());
                    self.durable.fetch_max(f.durable, Ordering::AcqRel);
                    self.done.notify_all();
                }
                Err(e) => {
                    self.poison(&e);
                    self.done.notify_all();
                    return Err(e);
                }
            }
        }
    }

    /// Fails with [`Error::Poisoned`] once a write or barrier has failed.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let cause = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        Err(Error::Poisoned {
            cause: cause.clone().unwrap_or_default(),
        })
    }

    /// Marks the WAL poisoned by `err` (the first cause is kept). Returns
    /// whether this call poisoned it.
    pub(crate) fn poison(&self, err: &Error) -> bool {
        let mut cause = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if cause.is_some() {
            return false;
        }
        *cause = Some(err.to_string());
        // IMPORTANT: set before any waiter is woken, so no waiter of the
        // failed batch can see success.
        self.poisoned.store(true, Ordering::Release);
        true
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn leader_flush_covers_waiters_and_failure_poisons_everyone() {
        let g = GroupCommit::new(0);
        g.wait_durable(3, || Ok(Flushed { durable: 5 })).unwrap();
        assert_eq!(g.durable(), 5);
        // Already durable: no flush.
        g.wait_durable(4, || panic!("no barrier needed")).unwrap();
        let e = g
            .wait_durable(6, || {
                Err(Error::InvalidArgument {
                    name: "x",
                    reason: "boom".into(),
                })
            })
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert!(matches!(
            g.wait_durable(6, || Ok(Flushed { durable: 9 })),
            Err(Error::Poisoned { .. })
        ));
        assert_eq!(g.durable(), 5, "no success after a failed barrier");
    }

    #[test]
    fn concurrent_waiters_share_barriers() {
        let g = Arc::new(GroupCommit::new(0));
        let flushes = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (g, flushes, next) = (g.clone(), flushes.clone(), next.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let id = next.fetch_add(1, Ordering::SeqCst) + 1;
                        g.wait_durable(id, || {
                            flushes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok(Flushed {
                                durable: next.load(Ordering::SeqCst),
                            })
                        })
                        .unwrap();
                        assert!(g.durable() >= id);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(flushes.load(Ordering::SeqCst) < 400, "no batching at all");
    }
}
