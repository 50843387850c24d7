//! The media-fault model of `MemoryDirectory` is honest: a lost write reverts
//! exactly the sectors the last barrier over them changed, to what they held
//! before it, and nothing else; faults applied to a snapshot never reach the
//! original; and a user's own integrity check sees every flipped bit.

mod support;

use std::collections::BTreeMap;

use support::{dump, every_policy, pattern, write_durable, Rng};
use zerodur::{CrashPolicy, Directory, Fault, MediaFault, MediaFaultSet, MemoryDirectory, OpKind};

const SECTOR: usize = 512;

// ---------------------------------------------------------------------------
// Lost writes against a model built only from observed durable bytes.

/// What a lost write must leave, per sector, derived from nothing but the
/// durable bytes seen before and after each operation.
#[derive(Debug, Default)]
struct PriorModel {
    /// Durable bytes after the last operation.
    durable: Vec<u8>,
    /// Sector -> its bytes before the last barrier that changed them, cut
    /// wherever the durable length has been since. Missing: zeros.
    prior: BTreeMap<usize, Vec<u8>>,
}

impl PriorModel {
    /// Takes in the durable bytes after one operation (at most one barrier).
    fn observe(&mut self, now: Vec<u8>) {
        let sectors = now.len().div_ceil(SECTOR);
        self.prior.retain(|s, _| *s < sectors);
        for (s, old) in self.prior.iter_mut() {
            old.truncate(now.len().min((s + 1) * SECTOR) - s * SECTOR);
        }
        for s in 0..sectors {
            let range = s * SECTOR..now.len().min((s + 1) * SECTOR);
            let old: Vec<u8> = range
                .clone()
                .map(|p| self.durable.get(p).copied().unwrap_or(0))
                .collect();
            if old != now[range] {
                self.prior.insert(s, old);
            }
        }
        self.durable = now;
    }

    /// The file after a lost write of sector `s`.
    fn after_lost_write(&self, s: usize) -> Vec<u8> {
        let mut out = self.durable.clone();
        let end = out.len().min((s + 1) * SECTOR);
        let old = self.prior.get(&s).cloned().unwrap_or_default();
        for (i, p) in (s * SECTOR..end).enumerate() {
            out[p] = old.get(i).copied().unwrap_or(0);
        }
        out
    }

    /// Sectors a lost write would change.
    fn distinct(&self) -> Vec<usize> {
        (0..self.durable.len().div_ceil(SECTOR))
            .filter(|&s| self.after_lost_write(s) != self.durable)
            .collect()
    }
}

/// Lost writes of every sector (one at a time, and all at once) against the
/// model, on a copy; the other files must not change.
fn check_lost_writes(d: &MemoryDirectory, path: &str, model: &PriorModel, what: &str) {
    assert_eq!(d.durable_bytes(path).unwrap(), model.durable, "{what}");
    let listed: Vec<usize> = MediaFault::enumerate(d, path, &MediaFaultSet::new().lost_writes())
        .unwrap()
        .iter()
        .map(|f| match f {
            MediaFault::LostWrite { offset, len, .. } => {
                assert!(*len as usize <= SECTOR);
                *offset as usize / SECTOR
            }
            other => panic!("{what}: not a lost write: {other}"),
        })
        .collect();
    assert_eq!(listed, model.distinct(), "{what}: sectors with a prior");
    let others: Vec<(String, Vec<u8>)> = d
        .files()
        .into_iter()
        .filter(|p| p != path)
        .map(|p| (p.clone(), d.durable_bytes(&p).unwrap()))
        .collect();
    let sectors = model.durable.len().div_ceil(SECTOR);
    for s in 0..sectors {
        let copy = d.snapshot();
        let fault = MediaFault::LostWrite {
            path: path.into(),
            offset: (s * SECTOR) as u64,
            len: (model.durable.len() - s * SECTOR).min(SECTOR) as u64,
        };
        copy.apply_media_fault(&fault).unwrap();
        let want = model.after_lost_write(s);
        assert_eq!(copy.durable_bytes(path).unwrap(), want, "{what}: {fault}");
        // Reads see the lost sector too, wherever the file still reaches.
        let seen = copy.read(path).unwrap();
        let end = want.len().min((s + 1) * SECTOR).min(seen.len());
        let range = (s * SECTOR).min(end)..end;
        assert_eq!(seen[range.clone()], want[range], "{what}: {fault}");
        for (p, bytes) in &others {
            assert_eq!(&copy.durable_bytes(p).unwrap(), bytes, "{what}: {fault}");
        }
    }
    if sectors > 0 {
        let copy = d.snapshot();
        let whole = MediaFault::LostWrite {
            path: path.into(),
            offset: 0,
            len: model.durable.len() as u64,
        };
        copy.apply_media_fault(&whole).unwrap();
        let want: Vec<u8> = (0..sectors)
            .flat_map(|s| {
                let end = model.durable.len().min((s + 1) * SECTOR);
                model.after_lost_write(s)[s * SECTOR..end].to_vec()
            })
            .collect();
        assert_eq!(copy.durable_bytes(path).unwrap(), want, "{what}: {whole}");
        let seen = copy.read(path).unwrap();
        let n = seen.len().min(want.len());
        assert_eq!(seen[..n], want[..n], "{what}: {whole}");
    }
}

#[test]
fn lost_write_after_many_barriers_reverts_exactly_what_the_last_barrier_changed() {
    const SECTORS: u64 = 12;
    let size = SECTORS * SECTOR as u64;
    for round in 0..24u64 {
        let mut rng = Rng(round);
        let d = MemoryDirectory::new();
        let mut r = d.create_region("seg", size).unwrap();
        d.sync_file("seg").unwrap();
        d.sync_dir("").unwrap();
        write_durable(&d, "file", &pattern(700, round as u8)).unwrap();
        let mut seg = PriorModel::default();
        let mut file = PriorModel::default();
        seg.observe(d.durable_bytes("seg").unwrap());
        file.observe(d.durable_bytes("file").unwrap());
        let mut trace = Vec::new();
        for step in 0..50 {
            match rng.below(10) {
                0..=3 => {
                    let off = rng.below(size);
                    let len = 1 + rng.below((size - off).min(1500));
                    // Few values: writes often leave bytes as they were.
                    let v = rng.below(3) as u8;
                    r.write_at(off, &vec![v; len as usize]).unwrap();
                    trace.push(format!("seg: write {off}+{len} of {v}"));
                }
                4 | 5 => {
                    let off = rng.below(size);
                    let len = 1 + rng.below(size - off);
                    if rng.below(4) == 0 {
                        d.inject(Fault::eio().on(OpKind::FlushRange));
                        assert!(r.flush_range(off, len).is_err());
                        trace.push(format!("seg: failed flush {off}+{len}"));
                    } else {
                        r.flush_range(off, len).unwrap();
                        trace.push(format!("seg: flush {off}+{len}"));
                    }
                }
                6 => {
                    let mut f = d.open_append("file").unwrap();
                    let n = rng.below(900) as usize;
                    f.write_all(&pattern(n, rng.next() as u8)).unwrap();
                    trace.push(format!("file: append {n}"));
                }
                7 => {
                    let len = d.len("file").unwrap();
                    let to = rng.below(len + 1);
                    d.truncate("file", to).unwrap();
                    trace.push(format!("file: truncate {to}"));
                }
                _ => {
                    d.sync_file("file").unwrap();
                    trace.push("file: sync".into());
                }
            }
            seg.observe(d.durable_bytes("seg").unwrap());
            file.observe(d.durable_bytes("file").unwrap());
            if step % 10 == 9 {
                let what = format!("round {round}, step {step}, after {trace:?}");
                check_lost_writes(&d, "seg", &seg, &what);
                check_lost_writes(&d, "file", &file, &what);
            }
        }
    }
}

#[test]
fn lost_write_on_a_recycled_segment_brings_back_its_earlier_life() {
    let d = MemoryDirectory::new();
    d.create_dir_all("wal").unwrap();
    d.sync_dir("").unwrap();
    let old_life = pattern(3 * SECTOR, 1);
    let mut r = d.create_region("wal/0001", 3 * SECTOR as u64).unwrap();
    r.write_at(0, &old_life).unwrap();
    r.flush_range(0, 3 * SECTOR as u64).unwrap();
    d.sync_file("wal/0001").unwrap();
    d.sync_dir("wal").unwrap();
    drop(r);
    // Recycled: renamed, then its first sector rewritten as a new header.
    d.rename("wal/0001", "wal/0007").unwrap();
    d.sync_dir("wal").unwrap();
    let mut r = d.open_region("wal/0007").unwrap();
    r.write_at(0, &[0xEE; SECTOR]).unwrap();
    r.flush_range(0, SECTOR as u64).unwrap();

    let set = MediaFaultSet::new().lost_writes();
    let faults = MediaFault::enumerate(&d, "wal/0007", &set).unwrap();
    // Every sector changed at least once; the header changed last.
    assert_eq!(faults.len(), 3);
    let copy = d.snapshot();
    copy.apply_media_fault(&faults[0]).unwrap();
    assert_eq!(copy.read("wal/0007").unwrap(), old_life, "{}", faults[0]);
    assert_eq!(
        copy.crash_image(&CrashPolicy::drop_all())
            .read("wal/0007")
            .unwrap(),
        old_life
    );
}

// ---------------------------------------------------------------------------
// Snapshots.

/// A directory with pending writes, pending names, limbo and priors.
fn busy() -> MemoryDirectory {
    let d = MemoryDirectory::new();
    d.create_dir_all("w").unwrap();
    d.sync_dir("").unwrap();
    write_durable(&d, "w/base", &pattern(3000, 1)).unwrap();
    let mut r = d.create_region("w/seg", 8192).unwrap();
    d.sync_file("w/seg").unwrap();
    d.sync_dir("w").unwrap();
    r.write_at(0, &pattern(5000, 2)).unwrap();
    r.flush_range(0, 4096).unwrap();
    r.write_at(100, &pattern(300, 3)).unwrap();
    r.flush_range(0, 512).unwrap();
    r.write_at(6000, &pattern(900, 4)).unwrap();
    d.inject(Fault::eio().on(OpKind::FlushRange));
    r.flush_range(6000, 900).unwrap_err(); // limbo
    r.write_at(7000, &[9; 50]).unwrap(); // pending
    let mut f = d.open_append("w/base").unwrap();
    f.write_all(&pattern(1000, 5)).unwrap();
    d.rename("w/base", "w/renamed").unwrap(); // pending
    d
}

/// Everything observable about a directory's state.
fn state(d: &MemoryDirectory) -> Vec<String> {
    let mut out = vec![format!("{:?}", dump(d))];
    for path in d.files() {
        out.push(format!("{path}: {:?}", d.durable_bytes(&path).unwrap()));
        let lost = MediaFault::enumerate(d, &path, &MediaFaultSet::new().lost_writes());
        out.push(format!("{path}: {:?}", lost.unwrap()));
    }
    for policy in every_policy(8) {
        out.push(format!("{policy:?}: {:?}", dump(&d.crash_image(&policy))));
    }
    out
}

#[test]
fn faults_applied_to_snapshots_leave_the_original_untouched() {
    let d = busy();
    let before = state(&d);
    let ops = d.op_count();
    let set = MediaFaultSet::new()
        .flips(.., 1, 0x01)
        .lost_writes()
        .misdirected_writes()
        .truncations(97)
        .extension(10, 0xAB)
        .foreign(*b"not ours");
    let mut applied = 0;
    for path in d.files() {
        for fault in MediaFault::enumerate(&d, &path, &set).unwrap() {
            d.snapshot().apply_media_fault(&fault).unwrap();
            applied += 1;
        }
    }
    for seed in 0..200 {
        let fault = MediaFault::seeded(&d, seed).unwrap();
        d.snapshot().apply_media_fault(&fault).unwrap();
    }
    assert!(applied > 11_000, "{applied} faults");
    assert_eq!(state(&d), before);
    assert_eq!(d.op_count(), ops);
    // And a fault does reach the snapshot it was applied to.
    let copy = d.snapshot();
    copy.apply_media_fault(&MediaFault::FlipBits {
        path: "w/seg".into(),
        offset: 0,
        mask: 0xFF,
    })
    .unwrap();
    assert_ne!(state(&copy), before);
}

// ---------------------------------------------------------------------------
// A user's own integrity check.

/// A user's record format: the payload, then its 64-bit FNV-1a hash.
fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(&fnv1a(payload).to_le_bytes());
    out
}

/// The user's check: the payload if its hash matches.
fn open_sealed(bytes: &[u8]) -> Option<&[u8]> {
    let (payload, hash) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    (fnv1a(payload).to_le_bytes() == hash).then_some(payload)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn a_users_checksum_sees_every_flipped_bit_of_a_sealed_file() {
    let d = MemoryDirectory::new();
    d.atomic_write("config", &seal(b"answer = 42")).unwrap();
    assert_eq!(
        open_sealed(&d.read("config").unwrap()),
        Some(&b"answer = 42"[..])
    );
    let mut checked = 0;
    for bit in 0..8 {
        let set = MediaFaultSet::new().flips(.., 1, 1 << bit);
        for fault in MediaFault::enumerate(&d, "config", &set).unwrap() {
            let damaged = d.snapshot();
            damaged.apply_media_fault(&fault).unwrap();
            let image = damaged.crash_image(&CrashPolicy::seeded(bit));
            assert_eq!(
                open_sealed(&image.read("config").unwrap()),
                None,
                "{fault} went unnoticed"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8 * (11 + 8));
}
