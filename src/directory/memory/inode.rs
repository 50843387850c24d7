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
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
        if !bytes.is_empty() {
            self.pending.push(PendingWrite {
                offset,
                data: bytes.to_vec(),
            });
        }
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
        self.durable.clone_from(&self.data);
        self.pending.clear();
    }

    /// Makes the pages covering `offset..offset+len` durable, and the length.
    pub(super) fn sync_range(&mut self, offset: u64, len: u64) {
        let (a, b) = page_span(offset, len, self.data.len() as u64);
        if self.durable.len() != self.data.len() {
            self.durable.resize(self.data.len(), 0);
        }
        self.durable[a as usize..b as usize].copy_from_slice(&self.data[a as usize..b as usize]);
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
