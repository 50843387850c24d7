//! One file of the memory backend: its written bytes, its durable bytes, and
//! the unsynced writes in between.

use std::collections::BTreeMap;

use super::policy::{CrashPolicy, SplitMix};
use super::{PAGE_SIZE_BYTES, SECTOR_SIZE_BYTES};

#[derive(Debug, Clone)]
pub(super) struct PendingWrite {
    offset: u64,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Inode {
    /// What reads see.
    pub(super) data: Vec<u8>,
    /// What the disk holds.
    pub(super) durable: Vec<u8>,
    /// Writes not yet covered by a barrier, in order.
    pub(super) pending: Vec<PendingWrite>,
    /// Writes whose barrier failed: maybe on disk, never made durable later.
    pub(super) limbo: Vec<PendingWrite>,
}

impl Inode {
    pub(super) fn write(&mut self, offset: u64, bytes: &[u8]) {
        let start = offset as usize;
        let end = start + bytes.len();
        let len = self.data.len();
        if len < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
        if bytes.is_empty() {
            return;
        }
        let data = if start > len {
            // A write past the end (into a region whose file was truncated
            // under it) fills the gap with zeros: those are written too, over
            // whatever the disk held there before an unsynced truncation.
            let mut gap = vec![0; start - len];
            gap.extend_from_slice(bytes);
            gap
        } else {
            bytes.to_vec()
        };
        self.pending.push(PendingWrite {
            offset: offset.min(len as u64),
            data,
        });
    }

    pub(super) fn truncate(&mut self, len: u64) {
        self.data.truncate(len as usize);
        for list in [&mut self.pending, &mut self.limbo] {
            list.retain_mut(|w| {
                if w.offset >= len {
                    return false;
                }
                w.data.truncate((len - w.offset) as usize);
                true
            });
        }
    }

    pub(super) fn sync_all(&mut self) {
        self.commit(0, self.data.len() as u64);
    }

    /// Makes the pages covering `offset..offset+len` durable, and the length.
    pub(super) fn sync_range(&mut self, offset: u64, len: u64) {
        let (a, b) = page_span(offset, len, self.data.len() as u64);
        self.commit(a, b);
    }

    /// A successful barrier over bytes `a..b` (and the length): they become
    /// durable as written, except bytes whose newest write is in limbo.
    fn commit(&mut self, a: u64, b: u64) {
        // IMPORTANT: a write whose barrier failed never becomes durable
        // through a later barrier; only a newer write over the same bytes
        // does, and it supersedes the limbo write there for good.
        let mut kept_old = Vec::new();
        if !self.limbo.is_empty() {
            for w in &self.pending {
                let (s, e) = (w.offset.max(a), (w.offset + w.data.len() as u64).min(b));
                if s < e {
                    self.limbo = split_out(std::mem::take(&mut self.limbo), s, e);
                }
            }
            for w in &self.limbo {
                let (s, e) = (w.offset.max(a), (w.offset + w.data.len() as u64).min(b));
                if s < e {
                    let old: Vec<u8> = (s..e)
                        .map(|p| self.durable.get(p as usize).copied().unwrap_or(0))
                        .collect();
                    kept_old.push((s as usize, old));
                }
            }
        }
        self.durable.resize(self.data.len(), 0);
        self.durable[a as usize..b as usize].copy_from_slice(&self.data[a as usize..b as usize]);
        for (s, old) in kept_old {
            self.durable[s..s + old.len()].copy_from_slice(&old);
        }
        self.pending = split_out(std::mem::take(&mut self.pending), a, b);
    }

    /// A barrier over `offset..offset+len` failed: its writes go to limbo.
    pub(super) fn fail_range(&mut self, range: Option<(u64, u64)>) {
        let (a, b) = match range {
            Some((o, l)) => page_span(o, l, self.data.len() as u64),
            None => (0, u64::MAX),
        };
        let mut kept = Vec::new();
        for w in std::mem::take(&mut self.pending) {
            let (ws, we) = (w.offset, w.offset + w.data.len() as u64);
            if we <= a || ws >= b {
                kept.push(w);
                continue;
            }
            let (is, ie) = (ws.max(a), we.min(b));
            self.limbo.push(PendingWrite {
                offset: is,
                data: w.data[(is - ws) as usize..(ie - ws) as usize].to_vec(),
            });
            kept.extend(split_out(vec![w], a, b));
        }
        self.pending = kept;
    }

    /// The bytes a crash would leave, under `rng`'s choices.
    pub(super) fn crash_content(&self, policy: &CrashPolicy, rng: &mut SplitMix) -> Vec<u8> {
        let mut out = self.durable.clone();
        // Sector -> the limbo and pending writes touching it, in order.
        let mut sectors: BTreeMap<u64, Vec<&PendingWrite>> = BTreeMap::new();
        for w in self.limbo.iter().chain(&self.pending) {
            let first = w.offset / SECTOR_SIZE_BYTES;
            let last = (w.offset + w.data.len() as u64 - 1) / SECTOR_SIZE_BYTES;
            for s in first..=last {
                sectors.entry(s).or_default().push(w);
            }
        }
        for (sector, writes) in &sectors {
            let k = policy.versions_kept(writes.len(), rng);
            let (s0, s1) = (sector * SECTOR_SIZE_BYTES, (sector + 1) * SECTOR_SIZE_BYTES);
            for w in &writes[..k] {
                let (ws, we) = (w.offset, w.offset + w.data.len() as u64);
                let (is, ie) = (ws.max(s0), we.min(s1));
                if out.len() < ie as usize {
                    out.resize(ie as usize, 0);
                }
                out[is as usize..ie as usize]
                    .copy_from_slice(&w.data[(is - ws) as usize..(ie - ws) as usize]);
            }
        }
        let len = if self.durable.len() == self.data.len() || policy.length_lands(rng) {
            self.data.len()
        } else {
            self.durable.len()
        };
        out.resize(len, 0);
        out
    }
}

/// `offset..offset+len` widened to whole pages, clamped to `size`.
fn page_span(offset: u64, len: u64, size: u64) -> (u64, u64) {
    let a = (offset / PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES;
    let b = offset
        .saturating_add(len)
        .div_ceil(PAGE_SIZE_BYTES)
        .saturating_mul(PAGE_SIZE_BYTES);
    (a.min(size), b.min(size))
}

/// Removes `a..b` from every write, keeping the parts outside it.
fn split_out(writes: Vec<PendingWrite>, a: u64, b: u64) -> Vec<PendingWrite> {
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        let (ws, we) = (w.offset, w.offset + w.data.len() as u64);
        if we <= a || ws >= b {
            out.push(w);
            continue;
        }
        if ws < a {
            out.push(PendingWrite {
                offset: ws,
                data: w.data[..(a - ws) as usize].to_vec(),
            });
        }
        if we > b {
            out.push(PendingWrite {
                offset: b,
                data: w.data[(b - ws) as usize..].to_vec(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_span_rounds_out_and_clamps() {
        assert_eq!(page_span(5000, 5, 100_000), (4096, 8192));
        assert_eq!(page_span(0, 1, 100), (0, 100));
        assert_eq!(page_span(4096, 4096, 1 << 20), (4096, 8192));
    }

    #[test]
    fn later_barrier_never_makes_limbo_bytes_durable() {
        let mut ino = Inode::default();
        ino.write(0, &[1; 8]);
        ino.sync_all();
        ino.write(0, &[2; 8]);
        ino.fail_range(None);
        ino.write(6, &[3; 2]); // supersedes the limbo write on bytes 6..8
        ino.sync_all();
        assert_eq!(ino.durable, [1, 1, 1, 1, 1, 1, 3, 3]);
        assert_eq!(ino.limbo.len(), 1);
        assert_eq!((ino.limbo[0].offset, ino.limbo[0].data.len()), (0, 6));
    }

    #[test]
    fn a_write_past_the_end_writes_the_zeros_of_the_gap_too() {
        let mut ino = Inode::default();
        ino.write(0, &[1; 1024]);
        ino.sync_all();
        ino.truncate(100); // not durable
        ino.write(600, &[2; 10]);
        assert_eq!(ino.data[100..600], [0; 500]);
        let kept = ino.crash_content(&CrashPolicy::keep_all(), &mut SplitMix(0));
        assert_eq!(
            kept, ino.data,
            "every write landed: the image reads as the file"
        );
        let dropped = ino.crash_content(&CrashPolicy::drop_all(), &mut SplitMix(0));
        assert_eq!(dropped, [1; 1024], "nothing landed: the durable bytes");
        ino.sync_all();
        assert_eq!(ino.durable, ino.data);
    }

    #[test]
    fn split_out_keeps_both_sides() {
        let w = PendingWrite {
            offset: 10,
            data: (0..20).collect(),
        };
        let parts = split_out(vec![w], 15, 20);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].offset, parts[0].data.len()), (10, 5));
        assert_eq!((parts[1].offset, parts[1].data[0]), (20, 10));
    }
}
