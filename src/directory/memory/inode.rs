//! One file of the memory backend: its written bytes, its durable bytes, the
//! unsynced writes in between, and the prior durable content of each sector a
//! barrier changed (what a lost write leaves).

use std::collections::BTreeMap;

use super::policy::{CrashPolicy, SplitMix};
use super::priors::Priors;
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
    /// Per sector, the durable bytes it held before the last barrier that
    /// changed them: what a lost write leaves. Never past the durable length.
    pub(super) priors: Priors,
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
    /// durable as written, except bytes whose newest write is in limbo. Each
    /// sector whose durable content changes keeps its old content as its
    /// prior.
    fn commit(&mut self, a: u64, b: u64) {
        // Outside pending and limbo writes, written bytes equal durable ones
        // (or are zeros past the durable length, as their prior is), and
        // limbo bytes keep their durable content: a sector changes exactly
        // where a pending write's bytes differ from the durable ones.
        let mut last = None; // the last sector recorded, to skip appends to it
        for w in &self.pending {
            let (s, e) = (w.offset.max(a), (w.offset + w.data.len() as u64).min(b));
            if s >= e {
                continue;
            }
            for sector in s / SECTOR_SIZE_BYTES..=(e - 1) / SECTOR_SIZE_BYTES {
                let lo = s.max(sector * SECTOR_SIZE_BYTES);
                let hi = e.min((sector + 1) * SECTOR_SIZE_BYTES);
                if last == Some(sector) || !self.changes(lo as usize, hi as usize) {
                    continue;
                }
                last = Some(sector);
                // Durable bytes are untouched until the copy below, so a sector
                // recorded twice gets the same prior twice.
                let old = sector_bytes(&self.durable, sector);
                self.priors.set(sector, old, self.data.len());
            }
        }
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
        self.forget_priors_past_end();
    }

    /// Whether written bytes `lo..hi` differ from the durable ones (zeros
    /// past the durable length).
    fn changes(&self, lo: usize, hi: usize) -> bool {
        let mid = hi.min(self.durable.len()).max(lo);
        (lo < mid && self.durable[lo..mid] != self.data[lo..mid]) || !is_zero(&self.data[mid..hi])
    }

    /// Forgets prior bytes at or past the durable length: if the file grows
    /// over them again, their prior is zeros.
    pub(super) fn forget_priors_past_end(&mut self) {
        self.priors.truncate(self.durable.len());
    }

    /// The durable content sector `sector` had before the last barrier that
    /// changed it, within the current durable length (zeros if no barrier
    /// ever changed it).
    pub(super) fn prior(&self, sector: u64) -> Vec<u8> {
        let mut p = self.priors.sector(sector).to_vec();
        p.resize(sector_bytes(&self.durable, sector).len(), 0);
        p
    }

    /// Whether a lost write on `sector` would change its durable content.
    pub(super) fn has_distinct_prior(&self, sector: u64) -> bool {
        !same_content(
            self.priors.sector(sector),
            sector_bytes(&self.durable, sector),
        )
    }

    /// Media damage: durable bytes `offset..offset + bytes.len()` (within the
    /// durable length) become `bytes`; reads see them wherever the current
    /// length covers them, and no unsynced write over them remains. Priors
    /// are left as they are.
    pub(super) fn damage(&mut self, offset: u64, bytes: &[u8]) {
        let (a, b) = (offset as usize, offset as usize + bytes.len());
        self.durable[a..b].copy_from_slice(bytes);
        // A file shorter now than durable (an unsynced truncation) shows
        // only what it still reaches.
        let seen = b.min(self.data.len());
        if a < seen {
            self.data[a..seen].copy_from_slice(&bytes[..seen - a]);
        }
        self.drop_unsynced(a as u64, b as u64);
    }

    /// Media damage: the durable length becomes `len`, cut short or extended
    /// with `fill`. Reads see the same: a cut file reads no further than
    /// `len`, an extended one reads its durable bytes up to `len`. Priors of
    /// cut bytes are forgotten.
    pub(super) fn damage_len(&mut self, len: u64, fill: u8) {
        let (old, len) = (self.durable.len(), len as usize);
        if len < old {
            self.durable.truncate(len);
            self.truncate(len as u64);
            self.forget_priors_past_end();
            return;
        }
        self.durable.resize(len, fill);
        let from = self.data.len().min(old);
        if self.data.len() < len {
            self.data.resize(len, 0);
        }
        self.data[from..len].copy_from_slice(&self.durable[from..len]);
        self.drop_unsynced(from as u64, len as u64);
    }

    /// A file that holds `bytes`, written and durable, with no unsynced
    /// write and zeros as every sector's prior.
    pub(super) fn holding(bytes: &[u8]) -> Inode {
        Inode {
            data: bytes.to_vec(),
            durable: bytes.to_vec(),
            ..Inode::default()
        }
    }

    /// Forgets unsynced (pending and limbo) writes over `a..b`.
    fn drop_unsynced(&mut self, a: u64, b: u64) {
        self.pending = split_out(std::mem::take(&mut self.pending), a, b);
        self.limbo = split_out(std::mem::take(&mut self.limbo), a, b);
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

    /// The file a crash would leave, under `rng`'s choices: its bytes are
    /// both written and durable, and a sector whose content differs from
    /// this file's durable one has that durable content as its prior (the
    /// others keep this file's prior). `None` unless `keep`: the choices are
    /// made (and `rng` advanced) either way, so the other files' fates do not
    /// depend on this one's name.
    pub(super) fn crashed(
        &self,
        policy: &CrashPolicy,
        rng: &mut SplitMix,
        keep: bool,
    ) -> Option<Inode> {
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
        for (sector, writes) in &mut sectors {
            let k = policy.versions_kept(writes.len(), rng);
            let (s0, s1) = (
                *sector * SECTOR_SIZE_BYTES,
                (*sector + 1) * SECTOR_SIZE_BYTES,
            );
            for w in &writes[..k] {
                let (ws, we) = (w.offset, w.offset + w.data.len() as u64);
                let (is, ie) = (ws.max(s0), we.min(s1));
                if out.len() < ie as usize {
                    out.resize(ie as usize, 0);
                }
                out[is as usize..ie as usize]
                    .copy_from_slice(&w.data[(is - ws) as usize..(ie - ws) as usize]);
            }
            // What remains: the writes that landed.
            writes.truncate(k);
        }
        let len = if self.durable.len() == self.data.len() || policy.length_lands(rng) {
            self.data.len()
        } else {
            self.durable.len()
        };
        if !keep {
            return None;
        }
        out.resize(len, 0);
        let mut crashed = Inode {
            data: out.clone(),
            durable: out,
            priors: self.priors.clone(),
            ..Inode::default()
        };
        // Bytes past this file's durable length that no write landed on are
        // zeros, as their prior is: only sectors a write landed on can differ.
        for (&sector, landed) in &sectors {
            if landed.is_empty() {
                continue;
            }
            let before = sector_bytes(&self.durable, sector);
            let now = sector_bytes(&crashed.durable, sector);
            if !same_content(before, now) {
                crashed.priors.set(sector, before, len);
            }
        }
        crashed.forget_priors_past_end();
        Some(crashed)
    }
}

/// The bytes of sector `sector` within `bytes` (shorter at the end, empty
/// past it).
pub(super) fn sector_bytes(bytes: &[u8], sector: u64) -> &[u8] {
    let len = bytes.len() as u64;
    let a = sector.saturating_mul(SECTOR_SIZE_BYTES).min(len) as usize;
    let b = (sector + 1).saturating_mul(SECTOR_SIZE_BYTES).min(len) as usize;
    &bytes[a..b]
}

/// Whether a sector that held `prior` (zeros past its end) holds the same
/// bytes as `now` over `now`'s extent.
fn same_content(prior: &[u8], now: &[u8]) -> bool {
    let n = prior.len().min(now.len());
    prior[..n] == now[..n] && is_zero(&now[n..])
}

/// Whether `bytes` (at most a sector) are all zeros.
fn is_zero(bytes: &[u8]) -> bool {
    const ZEROS: [u8; SECTOR_SIZE_BYTES as usize] = [0; SECTOR_SIZE_BYTES as usize];
    bytes == &ZEROS[..bytes.len()]
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

    const S: usize = SECTOR_SIZE_BYTES as usize;

    #[test]
    fn each_sector_keeps_the_content_before_the_last_barrier_that_changed_it() {
        let mut ino = Inode::default();
        ino.write(0, &[1; 2 * S]);
        ino.sync_all();
        // First life: both sectors grew from nothing, so their prior is zeros.
        assert_eq!(ino.prior(0), [0; S]);
        assert_eq!(ino.prior(1), [0; S]);
        ino.write(0, &[2; 2 * S]);
        ino.sync_all();
        ino.write(S as u64, &[3; S]);
        ino.sync_all();
        assert_eq!(ino.prior(0), [1; S], "sector 0 last changed 1 -> 2");
        assert_eq!(ino.prior(1), [2; S], "sector 1 last changed 2 -> 3");
        // Rewriting the same bytes changes nothing durable: priors stay.
        ino.write(S as u64, &[3; S]);
        ino.sync_all();
        assert_eq!(ino.prior(1), [2; S]);
        assert!(ino.has_distinct_prior(1));
        // Unsynced and failed writes record nothing.
        ino.write(0, &[4; S]);
        ino.fail_range(None);
        ino.write(S as u64, &[5; 10]);
        assert_eq!(ino.prior(0), [1; S]);
        assert_eq!(ino.prior(1), [2; S]);
    }

    #[test]
    fn a_region_flush_records_priors_of_its_pages_only() {
        let mut ino = Inode {
            data: vec![0; 2 * PAGE_SIZE_BYTES as usize],
            ..Inode::default()
        };
        ino.sync_all();
        assert_eq!(ino.priors.len(), 0, "zeros over zeros change nothing");
        ino.write(10, &[7; 20]);
        ino.write(PAGE_SIZE_BYTES + 10, &[8; 20]);
        ino.sync_range(0, 30);
        let distinct: Vec<u64> = (0..16).filter(|&s| ino.has_distinct_prior(s)).collect();
        assert_eq!(distinct, [0]);
        assert_eq!(ino.prior(0), [0; S]);
        assert!(ino.has_distinct_prior(0));
        assert!(!ino.has_distinct_prior(8), "second page not flushed yet");
    }

    #[test]
    fn a_sector_regrown_after_a_durable_shrink_has_zeros_as_prior() {
        let mut ino = Inode::default();
        ino.write(0, &[1; 3 * S]);
        ino.sync_all();
        ino.write(0, &[2; 3 * S]);
        ino.sync_all();
        assert_eq!(ino.prior(2), [1; S]);
        ino.truncate(S as u64 + 100);
        ino.sync_all();
        assert_eq!(
            ino.priors.len(),
            S + 100,
            "prior bytes past the end are gone"
        );
        assert_eq!(ino.prior(1), [1; 100], "the cut sector keeps its prior");
        ino.write(S as u64 + 100, &[3; 2 * S - 100]);
        ino.sync_all();
        let mut want = vec![2; 100];
        want.resize(S, 0);
        assert_eq!(ino.prior(1), want, "bytes past the old end were zeros");
        assert_eq!(ino.prior(2), [0; S], "the first life of sector 2 is gone");
    }

    /// Priors after random writes, truncations and (failed) barriers, against
    /// a model that compares every sector before and after each barrier.
    #[test]
    fn priors_match_a_whole_file_comparison_model() {
        let mut rng = SplitMix(7);
        for round in 0..300 {
            let mut ino = Inode::default();
            let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut trace = Vec::new();
            for step in 0..60 {
                let len = ino.data.len() as u64;
                let before = ino.durable.clone();
                let barrier = match rng.next() % 8 {
                    0..=2 => {
                        let off = rng.next() % (len + 700);
                        let n = 1 + rng.next() % 1500;
                        let v = (rng.next() % 3) as u8; // often rewrites the same byte
                        ino.write(off, &vec![v; n as usize]);
                        trace.push(format!("write {off}+{n} of {v}"));
                        false
                    }
                    3 => {
                        let to = rng.next() % (len + 1);
                        ino.truncate(to);
                        trace.push(format!("truncate {to}"));
                        false
                    }
                    4 => {
                        ino.fail_range(None);
                        trace.push("failed sync".into());
                        false
                    }
                    5 => {
                        let (o, n) = (rng.next() % (len + 1), 1 + rng.next() % 5000);
                        ino.sync_range(o, n);
                        trace.push(format!("sync_range {o}+{n}"));
                        true
                    }
                    _ => {
                        ino.sync_all();
                        trace.push("sync_all".into());
                        true
                    }
                };
                if barrier {
                    let after = &ino.durable;
                    let sectors = (after.len() as u64).div_ceil(SECTOR_SIZE_BYTES);
                    model.retain(|s, _| *s < sectors);
                    for (s, old) in model.iter_mut() {
                        // Bytes cut off by a shrink are forgotten.
                        old.truncate(sector_bytes(after, *s).len());
                    }
                    for s in 0..sectors {
                        let now = sector_bytes(after, s);
                        let old: Vec<u8> = (0..now.len())
                            .map(|i| {
                                let p = s as usize * S + i;
                                before.get(p).copied().unwrap_or(0)
                            })
                            .collect();
                        if old != now {
                            model.insert(s, old);
                        }
                    }
                }
                let sectors = (ino.durable.len() as u64).div_ceil(SECTOR_SIZE_BYTES);
                for s in 0..sectors {
                    let now = sector_bytes(&ino.durable, s);
                    let want = match model.get(&s) {
                        // Cut or zero-extended since: same extent as now.
                        Some(old) => {
                            let mut old = old.clone();
                            old.resize(now.len(), 0);
                            old
                        }
                        None => vec![0; now.len()],
                    };
                    assert!(
                        ino.prior(s) == want,
                        "round {round}, step {step}, sector {s}: after {trace:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_crashed_file_has_the_durable_content_as_prior_where_it_differs() {
        let mut ino = Inode::default();
        ino.write(0, &[1; 2 * S]);
        ino.sync_all();
        ino.write(0, &[2; 2 * S]);
        ino.sync_all();
        ino.write(0, &[3; S]); // unsynced, sector 0 only
        ino.write(2 * S as u64, &[4; S]); // unsynced growth
        let kept = ino
            .crashed(&CrashPolicy::keep_all(), &mut SplitMix(0), true)
            .unwrap();
        assert_eq!(kept.durable.len(), 3 * S);
        assert_eq!(
            kept.prior(0),
            [2; S],
            "crash content differs: source durable"
        );
        assert_eq!(kept.prior(1), [1; S], "same content: source prior");
        assert_eq!(kept.prior(2), [0; S], "grown sector: zeros");
        let dropped = ino
            .crashed(&CrashPolicy::drop_all(), &mut SplitMix(0), true)
            .unwrap();
        assert_eq!(dropped.durable.len(), 2 * S);
        assert_eq!(dropped.prior(0), [1; S]);
        assert_eq!(dropped.prior(1), [1; S]);
        assert_eq!(dropped.priors.len(), 2 * S);
    }

    #[test]
    fn a_write_past_the_end_writes_the_zeros_of_the_gap_too() {
        let mut ino = Inode::default();
        ino.write(0, &[1; 1024]);
        ino.sync_all();
        ino.truncate(100); // not durable
        ino.write(600, &[2; 10]);
        assert_eq!(ino.data[100..600], [0; 500]);
        let crash = |policy: CrashPolicy| ino.crashed(&policy, &mut SplitMix(0), true).unwrap();
        let kept = crash(CrashPolicy::keep_all()).durable;
        assert_eq!(
            kept, ino.data,
            "every write landed: the image reads as the file"
        );
        let dropped = crash(CrashPolicy::drop_all()).durable;
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
