//! Faulting in the active segment's pages ahead of the tail, on a background
//! thread, so that appends copy into memory that is already mapped.
//!
//! # Why
//!
//! The first store into each page of a file mapping faults into the kernel:
//! a page-cache page is allocated and zeroed (or read), `page_mkwrite` marks
//! it dirty, and the page table is filled. Measured on the 2-vCPU build VM,
//! writing 144-byte frames (100-byte payloads, a CRC each) into a shared file
//! mapping: 14–16 M frames/s when each page is touched for the first time,
//! about 38 M/s once the pages are populated. A page holds 28 such frames, so
//! the fault costs more than copying and checksumming all of them.
//!
//! # How
//!
//! One thread per [`Wal`](super::Wal), started by its first append (not
//! by open: starting a thread costs about as much as a clean resume),
//! sleeping on a condvar between requests. Appends keep a request standing for
//! [`LEAD_BYTES`] past the tail (checked with one comparison per append; a
//! new request every [`CHUNK_BYTES`]). The thread populates the range a
//! chunk at a time with [`RegionFlush::prefault_range`]
//! (`MADV_POPULATE_WRITE` on [`FsDirectory`](crate::FsDirectory)), which
//! never changes a byte, so it can run while the appender writes the same
//! pages. Rotation points the thread at the new segment. It holds the
//! segment's flush handle, which keeps the mapping alive while it works.
//!
//! It is a hint: an error stops the population of that segment, and the
//! appender then takes the page faults itself. Nothing depends on it for
//! correctness or durability (populated pages hold what they held: zeros in
//! a new file, an earlier life's frames in a recycled one, both already
//! fenced by the format).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::directory::RegionFlush;

/// How far ahead of the tail pages are kept populated.
pub(super) const LEAD_BYTES: usize = 16 * 1024 * 1024;
/// How much one request, and one `madvise` call, covers.
pub(super) const CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// The background thread and its one standing request.
pub(super) struct Prefaulter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    job: Mutex<Job>,
    wake: Condvar,
}

#[derive(Default)]
struct Job {
    /// The segment being populated (its flush handle) and its generation.
    target: Option<Arc<dyn RegionFlush>>,
    generation: u64,
    /// Populated up to here...
    done: usize,
    /// ...and requested up to here.
    want: usize,
    stop: bool,
}

impl Prefaulter {
    /// Starts the thread. `None` if the system refuses a thread: appends
    /// then take their page faults themselves.
    pub(super) fn start() -> Option<Prefaulter> {
        let shared = Arc::new(Shared {
            job: Mutex::new(Job::default()),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("zerodur-prefault".into())
            .spawn(move || worker.run())
            .ok()?;
        Some(Prefaulter {
            shared,
            thread: Some(thread),
        })
    }

    /// Points the thread at a new active segment whose frames start at
    /// `from`, and requests its first stretch, up to `want`.
    pub(super) fn retarget(&self, target: Arc<dyn RegionFlush>, from: usize, want: usize) {
        let mut job = self.shared.lock();
        job.target = Some(target);
        job.generation += 1;
        job.done = from;
        job.want = want;
        drop(job);
        self.shared.wake.notify_one();
    }

    /// Extends the request on the current segment up to `want`.
    pub(super) fn extend(&self, want: usize) {
        let mut job = self.shared.lock();
        if want > job.want {
            job.want = want;
            drop(job);
            self.shared.wake.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut job = self.lock();
        loop {
            if job.stop {
                return;
            }
            let Some(target) = job.target.as_ref().filter(|_| job.done < job.want) else {
                job = self.wake.wait(job).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let target = Arc::clone(target);
            let generation = job.generation;
            let from = job.done;
            let to = job.want.min(from + CHUNK_BYTES);
            drop(job);
            let ok = matches!(
                target.prefault_range(from as u64, (to - from) as u64),
                Ok(true)
            );
            job = self.lock();
            if job.generation == generation {
                // A backend without the hint, or an error: stop populating
                // this segment; the appender faults its pages in itself.
                job.done = if ok { to } else { usize::MAX };
            }
        }
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::{Prefaulter, CHUNK_BYTES};
    use crate::directory::RegionFlush;

    /// Records the ranges it is asked to populate.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: Mutex<Vec<(u64, u64)>>,
        supported: bool,
    }

    impl RegionFlush for Recorder {
        fn flush_range(&self, _: u64, _: u64) -> crate::Result<()> {
            Ok(())
        }
        fn prefault_range(&self, offset: u64, len: u64) -> crate::Result<bool> {
            self.calls.lock().unwrap().push((offset, len));
            Ok(self.supported)
        }
    }

    fn wait_for(rec: &Recorder, covered: u64) -> Vec<(u64, u64)> {
        let start = Instant::now();
        loop {
            let calls = rec.calls.lock().unwrap().clone();
            if calls.last().is_some_and(|&(o, l)| o + l >= covered) {
                return calls;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{calls:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn populates_requested_ranges_in_order_a_chunk_at_a_time() {
        let p = Prefaulter::start().unwrap();
        let rec = Arc::new(Recorder {
            supported: true,
            ..Recorder::default()
        });
        let want = 2 * CHUNK_BYTES + 100;
        p.retarget(rec.clone(), 64, want);
        let calls = wait_for(&rec, want as u64);
        // Contiguous from the tail, no call larger than a chunk.
        let mut at = 64;
        for &(o, l) in &calls {
            assert_eq!(o, at);
            assert!(l as usize <= CHUNK_BYTES);
            at = o + l;
        }
        // Extending continues where it stopped; a new target starts over.
        p.extend(want + CHUNK_BYTES);
        let calls = wait_for(&rec, (want + CHUNK_BYTES) as u64);
        assert_eq!(
            calls.last().unwrap().0 + calls.last().unwrap().1,
            (want + CHUNK_BYTES) as u64
        );
        let other = Arc::new(Recorder {
            supported: true,
            ..Recorder::default()
        });
        p.retarget(other.clone(), 64, 1000);
        assert_eq!(wait_for(&other, 1000), [(64, 936)]);
        drop(p); // joins the thread
    }

    #[test]
    fn a_backend_without_the_hint_is_asked_once_per_segment() {
        let p = Prefaulter::start().unwrap();
        let rec = Arc::new(Recorder::default());
        p.retarget(rec.clone(), 0, 3 * CHUNK_BYTES);
        wait_for(&rec, 1);
        p.extend(5 * CHUNK_BYTES);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rec.calls.lock().unwrap().len(), 1);
    }
}
