//! Media faults: what a disk, a file system or an operator can do to bytes
//! that were made durable.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::inode::Inode;
use super::policy::SplitMix;
use super::{Entry, MemoryDirectory, State, SECTOR_SIZE_BYTES};
use crate::directory::check_range;
use crate::directory::path::{check_file, parent};
use crate::error::{Error, Result};

/// Damage to bytes that were made durable, for
/// [`MemoryDirectory::apply_media_fault`]. Offsets count bytes from the start
/// of a file's durable content. Every value prints as a sentence and can be
/// stored and applied again, to replay a failure.
///
/// ```
/// use zerodur::MediaFault;
///
/// let fault = MediaFault::FlipBits { path: "wal/00000001".into(), offset: 70, mask: 0x04 };
/// assert_eq!(fault.to_string(), "bits 0x04 of byte 70 of `wal/00000001` flipped");
/// ```
///
/// A sweep: does your own integrity check see every flipped bit?
///
/// ```
/// use zerodur::{Directory, MediaFault, MediaFaultSet, MemoryDirectory};
///
/// // A format of your own: the payload, then a one-byte sum of it.
/// fn seal(payload: &[u8]) -> Vec<u8> {
///     let sum = payload.iter().fold(0u8, |s, b| s.wrapping_add(*b));
///     [payload, &[sum]].concat()
/// }
/// fn check(bytes: &[u8]) -> bool {
///     bytes.split_last().is_some_and(|(sum, payload)| seal(payload).last() == Some(sum))
/// }
///
/// let dir = MemoryDirectory::new();
/// dir.atomic_write("settings", &seal(b"retries=3"))?;
/// // Every byte with its lowest bit flipped, each on a fresh copy.
/// let flips = MediaFaultSet::new().flips(.., 1, 0x01);
/// for fault in MediaFault::enumerate(&dir, "settings", &flips)? {
///     let damaged = dir.snapshot();
///     damaged.apply_media_fault(&fault)?;
///     assert!(!check(&damaged.read("settings")?), "not detected: {fault}");
/// }
/// assert!(check(&dir.read("settings")?));
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaFault {
    /// The bits set in `mask` flip in byte `offset` of `path` (bit rot, a
    /// bad sector read back wrong). `mask` `1 << b` flips bit `b`; `0xFF`
    /// inverts the byte.
    FlipBits {
        /// The damaged file.
        path: String,
        /// The damaged byte.
        offset: u64,
        /// Which bits flip; never zero.
        mask: u8,
    },
    /// A lost write: bytes `offset..offset + len` of `path` hold what they
    /// held before the last barrier that changed their sector — the disk
    /// acknowledged the write and never stored it. Bytes of a sector no
    /// barrier ever changed, or that lay past the file's durable length
    /// then, read as zeros. A file renamed and rewritten in place (a
    /// recycled log segment) reverts to its earlier life's bytes.
    LostWrite {
        /// The file.
        path: String,
        /// The first byte lost.
        offset: u64,
        /// How many bytes; never zero.
        len: u64,
    },
    /// A misdirected write: the bytes written at `offset..offset + len` of
    /// `path` landed at `to_offset` of `to_path` (another place in the same
    /// file, or another file) instead. The target range holds the bytes, and
    /// the source range what it held before, as after a
    /// [`LostWrite`](MediaFault::LostWrite). If the two ranges overlap, the
    /// target's bytes win.
    Misdirected {
        /// The file the write was meant for.
        path: String,
        /// Where the write was meant to go.
        offset: u64,
        /// How many bytes; never zero.
        len: u64,
        /// The file the bytes landed in (may be `path`).
        to_path: String,
        /// Where they landed; the range must lie within `to_path`.
        to_offset: u64,
    },
    /// `path` is cut short to `len` bytes (less than its length).
    Truncate {
        /// The file.
        path: String,
        /// Its length afterwards.
        len: u64,
    },
    /// `path` is extended to `len` bytes (more than its length), every new
    /// byte `fill`.
    Extend {
        /// The file.
        path: String,
        /// Its length afterwards.
        len: u64,
        /// The value of every new byte (zeros, as after a crash that kept a
        /// file size but no data, or anything else).
        fill: u8,
    },
    /// A file zerodur did not write: `path` holds `bytes`. An existing file's
    /// content is replaced; otherwise the file is created, along with any
    /// missing parent folder.
    Foreign {
        /// Where the file is.
        path: String,
        /// Its whole content.
        bytes: Vec<u8>,
    },
}

impl fmt::Display for MediaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaFault::FlipBits { path, offset, mask } => {
                write!(f, "bits {mask:#04x} of byte {offset} of `{path}` flipped")
            }
            MediaFault::LostWrite { path, offset, len } => write!(
                f,
                "lost write: bytes {offset}..{} of `{path}` hold their previous content",
                offset.saturating_add(*len)
            ),
            MediaFault::Misdirected {
                path,
                offset,
                len,
                to_path,
                to_offset,
            } => write!(
                f,
                "misdirected write: bytes {offset}..{} of `{path}` landed at {to_offset}..{} of \
                 `{to_path}`",
                offset.saturating_add(*len),
                to_offset.saturating_add(*len)
            ),
            MediaFault::Truncate { path, len } => write!(f, "`{path}` cut short to {len} bytes"),
            MediaFault::Extend { path, len, fill } => {
                write!(f, "`{path}` extended to {len} bytes with {fill:#04x}")
            }
            MediaFault::Foreign { path, bytes } => {
                write!(f, "foreign file of {} bytes at `{path}`", bytes.len())
            }
        }
    }
}

impl MemoryDirectory {
    /// Damages this directory's media: applies `fault` to the durable state
    /// of the files it names, and to what reads see.
    ///
    /// Exactly: the bytes the fault changes (and, for `Truncate` and
    /// `Extend`, the length) become both durable and visible to reads, and
    /// every unsynced write (pending, or in limbo after a failed barrier)
    /// over them is dropped, so every crash image shows the damage. Unsynced
    /// writes elsewhere in the file stay as they were. Priors (what a lost
    /// write leaves) do not change, except that those of bytes cut off are
    /// forgotten. A `Foreign` file, its name and any folder created for it
    /// are durable. A fault is no operation of the directory: it is not
    /// counted or logged, and neither halts nor injected faults refuse it.
    ///
    /// Meant for quiesced directories (everything synced) and crash images,
    /// where reads and durable state agree. Elsewhere, offsets and lengths
    /// still refer to the durable content; reads of a file whose length
    /// changed without a sync see the damage only where their length covers
    /// it, and a [`Region`](crate::Region) opened before keeps its own view
    /// of the bytes, like a page cache the damage never reached.
    ///
    /// Errors: [`Error::InvalidPath`], [`Error::NotFound`] for a missing file
    /// (an `Io` error for a folder), [`Error::OutOfBounds`] for a range past
    /// the durable length, [`Error::InvalidArgument`] for a zero `mask` or
    /// `len`, a `Truncate` that does not shorten or an `Extend` that does not
    /// lengthen, and [`Error::AlreadyExists`] for a `Foreign` file whose
    /// folder would be a file. Nothing changes on error.
    ///
    /// ```
    /// use zerodur::{CrashPolicy, Directory, MediaFault, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// dir.atomic_write("f", b"durable")?;
    /// dir.apply_media_fault(&MediaFault::Truncate { path: "f".into(), len: 3 })?;
    /// assert_eq!(dir.read("f")?, b"dur");
    /// let after_crash = dir.crash_image(&CrashPolicy::keep_all());
    /// assert_eq!(after_crash.read("f")?, b"dur");
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn apply_media_fault(&self, fault: &MediaFault) -> Result<()> {
        let mut st = self.lock_state();
        match fault {
            MediaFault::FlipBits { path, offset, mask } => {
                let (ino, size) = durable_file(&st, path)?;
                check_range(path, *offset, 1, size)?;
                if *mask == 0 {
                    return Err(Error::InvalidArgument {
                        name: "mask",
                        reason: format!("flipping no bit of `{path}` is no fault"),
                    });
                }
                let inode = st.inode(ino);
                let byte = inode.durable[*offset as usize] ^ mask;
                inode.damage(*offset, &[byte]);
            }
            MediaFault::LostWrite { path, offset, len } => {
                let (ino, size) = durable_file(&st, path)?;
                check_len(path, *len)?;
                check_range(path, *offset, *len, size)?;
                let old = prior_bytes(&st.inodes[&ino], *offset, *len);
                st.inode(ino).damage(*offset, &old);
            }
            MediaFault::Misdirected {
                path,
                offset,
                len,
                to_path,
                to_offset,
            } => {
                let (from, size) = durable_file(&st, path)?;
                let (to, to_size) = durable_file(&st, to_path)?;
                check_len(path, *len)?;
                check_range(path, *offset, *len, size)?;
                check_range(to_path, *to_offset, *len, to_size)?;
                let (a, b) = (*offset as usize, (*offset + *len) as usize);
                let written = st.inodes[&from].durable[a..b].to_vec();
                let old = prior_bytes(&st.inodes[&from], *offset, *len);
                st.inode(from).damage(*offset, &old);
                st.inode(to).damage(*to_offset, &written);
            }
            MediaFault::Truncate { path, len } => {
                let (ino, size) = durable_file(&st, path)?;
                if *len >= size {
                    return Err(Error::InvalidArgument {
                        name: "len",
                        reason: format!(
                            "cutting `{path}` to {len} bytes would not shorten it from {size}"
                        ),
                    });
                }
                st.inode(ino).damage_len(*len, 0);
            }
            MediaFault::Extend { path, len, fill } => {
                let (ino, size) = durable_file(&st, path)?;
                if *len <= size || usize::try_from(*len).is_err() {
                    return Err(Error::InvalidArgument {
                        name: "len",
                        reason: format!(
                            "extending `{path}` to {len} bytes would not lengthen it from {size}"
                        ),
                    });
                }
                st.inode(ino).damage_len(*len, *fill);
            }
            MediaFault::Foreign { path, bytes } => place_foreign(&mut st, path, bytes)?,
        }
        Ok(())
    }
}

/// Which media faults [`MediaFault::enumerate`] lists for one file: empty
/// from [`new`](MediaFaultSet::new), each method adds a family. Faults come
/// out in the order of the families below, each family in offset order.
///
/// ```
/// use zerodur::{Directory, MediaFault, MediaFaultSet, MemoryDirectory};
///
/// let dir = MemoryDirectory::new();
/// dir.atomic_write("f", &[7; 1000])?;
/// let set = MediaFaultSet::new()
///     .flips(.., 1, 0xFF) // every byte inverted
///     .truncations(1) // every shorter length
///     .extension(10, 0); // ten more zeros
/// assert_eq!(MediaFault::enumerate(&dir, "f", &set)?.len(), 1000 + 1000 + 1);
/// # Ok::<(), zerodur::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaFaultSet {
    flips: Vec<(u64, u64, u64, u8)>,
    lost_writes: bool,
    misdirected_writes: bool,
    truncation_step: Option<u64>,
    extensions: Vec<(u64, u8)>,
    foreign: Vec<Vec<u8>>,
}

impl MediaFaultSet {
    /// No fault at all.
    pub fn new() -> MediaFaultSet {
        MediaFaultSet::default()
    }

    /// Every `stride`-th byte of `range` (from its start, within the file)
    /// with the bits of `mask` flipped: `(.., 1, 0xFF)` inverts every byte
    /// in turn, `(64.., 97, 0x01)` flips the low bit of a payload byte every
    /// 97. A `stride` of 0 counts as 1; a zero `mask` adds nothing.
    pub fn flips(mut self, range: impl RangeBounds<u64>, stride: u64, mask: u8) -> MediaFaultSet {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if mask != 0 {
            self.flips.push((start, end, stride.max(1), mask));
        }
        self
    }

    /// Every sector lost: a [`LostWrite`](MediaFault::LostWrite) of each
    /// sector whose prior content differs from its content (the others
    /// would not change).
    pub fn lost_writes(mut self) -> MediaFaultSet {
        self.lost_writes = true;
        self
    }

    /// Every sector misdirected: to the next sector of the file, and to the
    /// same offset of each other file of the same folder (as much of the
    /// sector as fits there).
    pub fn misdirected_writes(mut self) -> MediaFaultSet {
        self.misdirected_writes = true;
        self
    }

    /// The file cut short to every `step`-th length below its length: 0,
    /// `step`, `2 × step`… A `step` of 0 counts as 1.
    pub fn truncations(mut self, step: u64) -> MediaFaultSet {
        self.truncation_step = Some(step.max(1));
        self
    }

    /// The file extended by `by` bytes (at least 1), each `fill`.
    pub fn extension(mut self, by: u64, fill: u8) -> MediaFaultSet {
        self.extensions.push((by.max(1), fill));
        self
    }

    /// The file's content replaced by `bytes` (a foreign file under its
    /// name). Foreign files under other names are built directly as
    /// [`MediaFault::Foreign`].
    pub fn foreign(mut self, bytes: impl Into<Vec<u8>>) -> MediaFaultSet {
        self.foreign.push(bytes.into());
        self
    }
}

impl MediaFault {
    /// Every fault of `set` on file `path` of `dir`, as `dir` is now (offsets
    /// refer to its durable content), in a stable order: apply each to a
    /// fresh [`snapshot`](MemoryDirectory::snapshot) of `dir`, print the one
    /// that breaks something, replay it later.
    ///
    /// Errors: [`Error::InvalidPath`], and [`Error::NotFound`] for a missing
    /// file.
    ///
    /// ```
    /// use zerodur::{Directory, MediaFault, MediaFaultSet, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// dir.atomic_write("f", b"checksummed")?;
    /// for fault in MediaFault::enumerate(&dir, "f", &MediaFaultSet::new().flips(.., 1, 0x01))? {
    ///     let damaged = dir.snapshot();
    ///     damaged.apply_media_fault(&fault)?;
    ///     assert_ne!(damaged.read("f")?, b"checksummed", "{fault}");
    /// }
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn enumerate(
        dir: &MemoryDirectory,
        path: &str,
        set: &MediaFaultSet,
    ) -> Result<Vec<MediaFault>> {
        let st = dir.lock_state();
        let (ino, size) = durable_file(&st, path)?;
        let inode = &st.inodes[&ino];
        let sectors = size.div_ceil(SECTOR_SIZE_BYTES);
        let sector_len = |s: u64| (size - s * SECTOR_SIZE_BYTES).min(SECTOR_SIZE_BYTES);
        let p = || path.to_owned();
        let mut out = Vec::new();
        for &(start, end, stride, mask) in &set.flips {
            for offset in (start..end.min(size)).step_by(stride as usize) {
                out.push(MediaFault::FlipBits {
                    path: p(),
                    offset,
                    mask,
                });
            }
        }
        if set.lost_writes {
            for s in (0..sectors).filter(|&s| inode.has_distinct_prior(s)) {
                out.push(MediaFault::LostWrite {
                    path: p(),
                    offset: s * SECTOR_SIZE_BYTES,
                    len: sector_len(s),
                });
            }
        }
        if set.misdirected_writes {
            let neighbours: Vec<(&String, u64)> = st
                .names
                .iter()
                .filter_map(|(other, e)| match e {
                    Entry::File(i) if other != path && parent(other) == parent(path) => {
                        Some((other, st.inodes[i].durable.len() as u64))
                    }
                    _ => None,
                })
                .collect();
            for s in 0..sectors {
                let (offset, len) = (s * SECTOR_SIZE_BYTES, sector_len(s));
                let misdirect = |to_path: &str, to_offset, len| MediaFault::Misdirected {
                    path: p(),
                    offset,
                    len,
                    to_path: to_path.to_owned(),
                    to_offset,
                };
                if offset + SECTOR_SIZE_BYTES + len <= size {
                    out.push(misdirect(path, offset + SECTOR_SIZE_BYTES, len));
                }
                for &(other, other_size) in &neighbours {
                    if offset < other_size {
                        out.push(misdirect(other, offset, len.min(other_size - offset)));
                    }
                }
            }
        }
        if let Some(step) = set.truncation_step {
            for len in (0..size).step_by(step as usize) {
                out.push(MediaFault::Truncate { path: p(), len });
            }
        }
        for &(by, fill) in &set.extensions {
            out.push(MediaFault::Extend {
                path: p(),
                len: size.saturating_add(by),
                fill,
            });
        }
        for bytes in &set.foreign {
            out.push(MediaFault::Foreign {
                path: p(),
                bytes: bytes.clone(),
            });
        }
        Ok(out)
    }

    /// A reproducible random fault somewhere in `dir`'s files, as `dir` is
    /// now: the same seed on the same directory state gives the same fault.
    /// The file, the kind of fault and its place are drawn from `seed`; a
    /// kind that cannot apply to the chosen file (a lost write where no
    /// sector has a prior of its own, a bit flip in an empty file) gives way
    /// to the next. `None` if `dir` has no file.
    ///
    /// ```
    /// use zerodur::{Directory, MediaFault, MemoryDirectory};
    ///
    /// let dir = MemoryDirectory::new();
    /// dir.atomic_write("f", &[1; 4096])?;
    /// for seed in 0..100 {
    ///     let fault = MediaFault::seeded(&dir, seed).expect("a file exists");
    ///     assert_eq!(MediaFault::seeded(&dir, seed), Some(fault.clone()));
    ///     dir.snapshot().apply_media_fault(&fault)?;
    /// }
    /// # Ok::<(), zerodur::Error>(())
    /// ```
    pub fn seeded(dir: &MemoryDirectory, seed: u64) -> Option<MediaFault> {
        let st = dir.lock_state();
        let files: Vec<(&String, &Inode)> = st
            .names
            .iter()
            .filter_map(|(p, e)| match e {
                Entry::File(i) => Some((p, &*st.inodes[i])),
                _ => None,
            })
            .collect();
        let mut rng = SplitMix(seed);
        let (path, inode) = *files.get(rng.below(files.len() as u64) as usize)?;
        let size = inode.durable.len() as u64;
        let sectors = size.div_ceil(SECTOR_SIZE_BYTES);
        let p = || path.clone();
        let first = rng.below(KINDS);
        (first..first + KINDS).find_map(|kind| match kind % KINDS {
            0 if size > 0 => Some(MediaFault::FlipBits {
                path: p(),
                offset: rng.below(size),
                mask: 1 << rng.below(8),
            }),
            1 => {
                let lost: Vec<u64> = (0..sectors)
                    .filter(|&s| inode.has_distinct_prior(s))
                    .collect();
                let s = *lost.get(rng.below(lost.len() as u64) as usize)?;
                let offset = s * SECTOR_SIZE_BYTES;
                Some(MediaFault::LostWrite {
                    path: p(),
                    offset,
                    len: (size - offset).min(SECTOR_SIZE_BYTES),
                })
            }
            2 if size > 0 => {
                let offset = rng.below(sectors) * SECTOR_SIZE_BYTES;
                let len = (size - offset).min(SECTOR_SIZE_BYTES);
                let (to_path, to) = files[rng.below(files.len() as u64) as usize];
                let to_size = to.durable.len() as u64;
                // A sector-aligned place in the target, not the source itself.
                let places = (to_size.checked_sub(len)? / SECTOR_SIZE_BYTES) + 1;
                let mut to_offset = rng.below(places) * SECTOR_SIZE_BYTES;
                if to_path == path && to_offset == offset {
                    to_offset = (to_offset + SECTOR_SIZE_BYTES) % (places * SECTOR_SIZE_BYTES);
                }
                (to_path != path || to_offset != offset).then(|| MediaFault::Misdirected {
                    path: p(),
                    offset,
                    len,
                    to_path: to_path.clone(),
                    to_offset,
                })
            }
            3 if size > 0 => Some(MediaFault::Truncate {
                path: p(),
                len: rng.below(size),
            }),
            4 => Some(MediaFault::Extend {
                path: p(),
                len: size + 1 + rng.below(2 * SECTOR_SIZE_BYTES),
                fill: if rng.below(2) == 0 {
                    0
                } else {
                    rng.next() as u8
                },
            }),
            5 => Some(MediaFault::Foreign {
                path: p(),
                bytes: (0..rng.below(size + SECTOR_SIZE_BYTES + 1))
                    .map(|_| rng.next() as u8)
                    .collect(),
            }),
            _ => None,
        })
    }
}

/// How many kinds of fault [`MediaFault::seeded`] draws from.
const KINDS: u64 = 6;

/// The inode of file `path` and its durable length.
fn durable_file(st: &State, path: &str) -> Result<(u64, u64)> {
    check_file(path)?;
    let ino = st.file(path)?;
    Ok((ino, st.inodes[&ino].durable.len() as u64))
}

fn check_len(path: &str, len: u64) -> Result<()> {
    if len == 0 {
        return Err(Error::InvalidArgument {
            name: "len",
            reason: format!("an empty range of `{path}` is no fault"),
        });
    }
    Ok(())
}

/// What a lost write leaves at `offset..offset + len`: each byte's sector's
/// prior content.
fn prior_bytes(inode: &Inode, offset: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let end = offset + len;
    let mut at = offset;
    while at < end {
        let sector = at / SECTOR_SIZE_BYTES;
        let prior = inode.prior(sector);
        let s0 = sector * SECTOR_SIZE_BYTES;
        let upto = end.min(s0 + prior.len() as u64);
        out.extend_from_slice(&prior[(at - s0) as usize..(upto - s0) as usize]);
        at = upto;
    }
    out
}

/// Puts `bytes` at `path`, durably, with any missing folder.
fn place_foreign(st: &mut State, path: &str, bytes: &[u8]) -> Result<()> {
    check_file(path)?;
    let mut folders = Vec::new();
    let mut dir = parent(path);
    while !dir.is_empty() {
        folders.push(dir);
        dir = parent(dir);
    }
    for dir in &folders {
        if let Some(Entry::File(_)) = st.names.get(*dir) {
            return Err(Error::AlreadyExists {
                path: (*dir).into(),
            });
        }
    }
    let ino = match st.names.get(path) {
        Some(_) => st.file(path)?,
        None => {
            st.next_inode += 1;
            st.next_inode
        }
    };
    for dir in folders {
        st.names.insert(dir.to_owned(), Entry::Dir);
        st.durable_names.insert(dir.to_owned(), Entry::Dir);
    }
    st.inodes.insert(ino, Arc::new(Inode::holding(bytes)));
    st.names.insert(path.to_owned(), Entry::File(ino));
    st.durable_names.insert(path.to_owned(), Entry::File(ino));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrashPolicy, Directory, Region};

    const S: usize = SECTOR_SIZE_BYTES as usize;

    fn flip(path: &str, offset: u64, mask: u8) -> MediaFault {
        MediaFault::FlipBits {
            path: path.into(),
            offset,
            mask,
        }
    }

    fn lost(path: &str, offset: u64, len: u64) -> MediaFault {
        MediaFault::LostWrite {
            path: path.into(),
            offset,
            len,
        }
    }

    /// A durable region of `sectors` sectors of zeros.
    fn region(d: &MemoryDirectory, path: &str, sectors: usize) -> Box<dyn Region> {
        let r = d.create_region(path, (sectors * S) as u64).unwrap();
        d.sync_file(path).unwrap();
        d.sync_dir(parent(path)).unwrap();
        r
    }

    fn put(r: &mut Box<dyn Region>, offset: usize, bytes: &[u8]) {
        r.write_at(offset as u64, bytes).unwrap();
        r.flush_range(offset as u64, bytes.len() as u64).unwrap();
    }

    #[test]
    fn a_flipped_bit_is_read_and_survives_every_crash() {
        let d = MemoryDirectory::new();
        d.atomic_write("f", &[0xAA; 1000]).unwrap();
        let mut f = d.open_append("f").unwrap();
        f.write_all(&[0xBB; 10]).unwrap(); // unsynced, elsewhere
        let ops = d.op_count();
        d.apply_media_fault(&flip("f", 7, 0x01)).unwrap();
        assert_eq!(d.op_count(), ops, "a fault is no operation");
        let mut want = vec![0xAA; 1000];
        want[7] = 0xAB;
        assert_eq!(d.durable_bytes("f").unwrap(), want);
        want.extend([0xBB; 10]);
        assert_eq!(d.read("f").unwrap(), want);
        assert_eq!(
            d.crash_image(&CrashPolicy::keep_all()).read("f").unwrap(),
            want
        );
    }

    #[test]
    fn unsynced_writes_over_the_damage_are_dropped_and_the_others_kept() {
        let d = MemoryDirectory::new();
        let mut r = region(&d, "r", 4);
        r.write_at(0, &[1; 10]).unwrap();
        r.write_at(600, &[2; 10]).unwrap();
        d.apply_media_fault(&flip("r", 5, 0xFF)).unwrap();
        let mut want = vec![0; 4 * S];
        want[..10].fill(1);
        want[5] = 0xFF;
        want[600..610].fill(2);
        assert_eq!(d.read("r").unwrap(), want);
        assert_eq!(
            d.crash_image(&CrashPolicy::keep_all()).read("r").unwrap(),
            want
        );
        let mut durable = vec![0; 4 * S];
        durable[5] = 0xFF;
        assert_eq!(
            d.crash_image(&CrashPolicy::drop_all()).read("r").unwrap(),
            durable
        );
    }

    #[test]
    fn a_lost_write_reverts_each_sector_to_its_content_before_its_last_change() {
        let d = MemoryDirectory::new();
        let mut r = region(&d, "r", 3);
        put(&mut r, 0, &[1; 3 * S]);
        put(&mut r, 0, &[2; 2 * S]);
        put(&mut r, S, &[3; S]);
        put(&mut r, S, &[3; S]); // the same bytes: no change
        d.apply_media_fault(&lost("r", 0, 3 * S as u64)).unwrap();
        let want: Vec<u8> = [[1; S], [2; S], [0; S]].concat();
        assert_eq!(d.read("r").unwrap(), want);
        assert_eq!(d.durable_bytes("r").unwrap(), want);
        // A byte range takes its sectors' prior bytes, nothing else.
        let d2 = MemoryDirectory::new();
        let mut r = region(&d2, "r", 2);
        put(&mut r, 0, &[4; 2 * S]);
        d2.apply_media_fault(&lost("r", S as u64 - 2, 4)).unwrap();
        let mut want = vec![4; 2 * S];
        want[S - 2..S + 2].fill(0);
        assert_eq!(d2.read("r").unwrap(), want);
    }

    #[test]
    fn a_recycled_file_reverts_to_its_earlier_life() {
        let d = MemoryDirectory::new();
        d.create_dir_all("wal").unwrap();
        d.sync_dir("").unwrap();
        let mut r = region(&d, "wal/1", 8);
        put(&mut r, 0, b"header of segment 1");
        put(&mut r, 2 * S, &[7; S]);
        drop(r);
        d.rename("wal/1", "wal/9").unwrap();
        d.sync_dir("wal").unwrap();
        let mut r = d.open_region("wal/9").unwrap();
        put(&mut r, 0, b"header of segment 9");
        d.apply_media_fault(&lost("wal/9", 0, S as u64)).unwrap();
        assert_eq!(&d.read("wal/9").unwrap()[..19], b"header of segment 1");
        assert_eq!(d.read("wal/9").unwrap()[2 * S..3 * S], [7; S]);
    }

    #[test]
    fn a_misdirected_write_lands_in_another_file_and_leaves_the_old_bytes_behind() {
        let d = MemoryDirectory::new();
        let mut a = region(&d, "a", 2);
        let _b = region(&d, "b", 2);
        put(&mut a, 0, &[5; S]);
        put(&mut a, S, &[6; S]);
        let fault = MediaFault::Misdirected {
            path: "a".into(),
            offset: S as u64,
            len: S as u64,
            to_path: "b".into(),
            to_offset: 0,
        };
        d.apply_media_fault(&fault).unwrap();
        assert_eq!(d.read("a").unwrap(), [[5; S], [0; S]].concat());
        assert_eq!(d.read("b").unwrap(), [[6; S], [0; S]].concat());
        // Within one file, to the next sector.
        let within = MediaFault::Misdirected {
            path: "a".into(),
            offset: 0,
            len: S as u64,
            to_path: "a".into(),
            to_offset: S as u64,
        };
        d.apply_media_fault(&within).unwrap();
        assert_eq!(d.read("a").unwrap(), [[0; S], [5; S]].concat());
    }

    #[test]
    fn a_file_cut_short_or_extended_reads_so_and_forgets_cut_priors() {
        let d = MemoryDirectory::new();
        d.atomic_write("f", &[1; 2 * S]).unwrap();
        let mut f = d.create("f").unwrap(); // the same file, rewritten
        f.write_all(&[2; 2 * S]).unwrap();
        f.sync().unwrap();
        let cut = MediaFault::Truncate {
            path: "f".into(),
            len: 100,
        };
        d.apply_media_fault(&cut).unwrap();
        assert_eq!(d.read("f").unwrap(), [2; 100]);
        let extend = |len, fill| MediaFault::Extend {
            path: "f".into(),
            len,
            fill,
        };
        d.apply_media_fault(&extend(200, 0xEE)).unwrap();
        assert_eq!(d.read("f").unwrap(), [[2; 100], [0xEE; 100]].concat());
        d.apply_media_fault(&extend(2 * S as u64, 0)).unwrap();
        d.apply_media_fault(&lost("f", 0, 2 * S as u64)).unwrap();
        let mut want = vec![0; 2 * S];
        want[..100].fill(1);
        assert_eq!(
            d.read("f").unwrap(),
            want,
            "only the uncut prior bytes remain"
        );
        let image = d.crash_image(&CrashPolicy::drop_all());
        assert_eq!(image.read("f").unwrap(), want);
    }

    #[test]
    fn a_foreign_file_appears_durably_with_its_folders_or_replaces_a_file() {
        let d = MemoryDirectory::new();
        d.atomic_write("x", b"mine").unwrap();
        let foreign = |path: &str, bytes: &[u8]| MediaFault::Foreign {
            path: path.into(),
            bytes: bytes.to_vec(),
        };
        d.apply_media_fault(&foreign("wal/deep/zz", b"junk"))
            .unwrap();
        d.apply_media_fault(&foreign("x", b"theirs")).unwrap();
        let image = d.crash_image(&CrashPolicy::drop_all());
        assert_eq!(image.files(), ["wal/deep/zz", "x"]);
        assert_eq!(image.read("wal/deep/zz").unwrap(), b"junk");
        assert_eq!(image.read("x").unwrap(), b"theirs");
        assert_eq!(d.list("wal").unwrap(), ["deep"]);
        assert!(matches!(
            d.apply_media_fault(&foreign("x/y", b"")),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(d.apply_media_fault(&foreign("wal", b"")).is_err());
    }

    #[test]
    fn unusable_faults_are_typed_errors_and_change_nothing() {
        let d = MemoryDirectory::new();
        d.atomic_write("f", &[3; 100]).unwrap();
        let before = d.snapshot();
        let f = || "f".to_string();
        let cases = [
            flip("nope", 0, 1),
            flip("f", 100, 1),
            flip("f", 0, 0),
            flip("../f", 0, 1),
            lost("f", 0, 0),
            lost("f", 50, 51),
            lost("f", u64::MAX, 2),
            MediaFault::Misdirected {
                path: f(),
                offset: 0,
                len: 10,
                to_path: f(),
                to_offset: 95,
            },
            MediaFault::Misdirected {
                path: f(),
                offset: 0,
                len: 10,
                to_path: "g".into(),
                to_offset: 0,
            },
            MediaFault::Truncate {
                path: f(),
                len: 100,
            },
            MediaFault::Extend {
                path: f(),
                len: 100,
                fill: 0,
            },
        ];
        for fault in &cases {
            let e = d.apply_media_fault(fault).unwrap_err();
            let ok = match fault {
                MediaFault::FlipBits { path, .. } if path == "nope" => e.is_not_found(),
                MediaFault::FlipBits { path, .. } if path == "../f" => {
                    matches!(e, Error::InvalidPath { .. })
                }
                MediaFault::FlipBits { mask: 0, .. } | MediaFault::LostWrite { len: 0, .. } => {
                    matches!(e, Error::InvalidArgument { .. })
                }
                MediaFault::Misdirected { to_path, .. } if to_path == "g" => e.is_not_found(),
                MediaFault::Truncate { .. } | MediaFault::Extend { .. } => {
                    matches!(e, Error::InvalidArgument { name: "len", .. })
                }
                _ => matches!(e, Error::OutOfBounds { .. }),
            };
            assert!(ok, "{fault}: {e}");
        }
        assert_eq!(d.read("f").unwrap(), before.read("f").unwrap());
        assert_eq!(d.files(), before.files());
    }

    #[test]
    fn a_fault_on_a_snapshot_leaves_the_original_untouched() {
        let d = MemoryDirectory::new();
        let mut r = region(&d, "r", 2);
        put(&mut r, 0, &[8; 2 * S]);
        let copy = d.snapshot();
        copy.apply_media_fault(&lost("r", 0, 2 * S as u64)).unwrap();
        assert_eq!(copy.read("r").unwrap(), [0; 2 * S]);
        assert_eq!(d.read("r").unwrap(), [8; 2 * S]);
        assert_eq!(d.durable_bytes("r").unwrap(), [8; 2 * S]);
    }

    /// `w/a`: 4 sectors, the first two rewritten; `w/b`: 1000 bytes; `w/c`:
    /// 100 bytes; `x/d` in another folder.
    fn folder() -> MemoryDirectory {
        let d = MemoryDirectory::new();
        d.create_dir_all("w").unwrap();
        d.create_dir_all("x").unwrap();
        d.sync_dir("").unwrap();
        let mut a = region(&d, "w/a", 4);
        put(&mut a, 0, &[1; 2 * S]);
        d.atomic_write("w/b", &[2; 1000]).unwrap();
        d.atomic_write("w/c", &[3; 100]).unwrap();
        d.atomic_write("x/d", &[4; 4 * S]).unwrap();
        d
    }

    #[test]
    fn enumeration_lists_each_family_in_order() {
        let d = folder();
        let count = |set: MediaFaultSet| MediaFault::enumerate(&d, "w/a", &set).unwrap().len();
        let new = MediaFaultSet::new;
        assert_eq!(count(new()), 0);
        assert_eq!(count(new().flips(.., 1, 0xFF)), 4 * S);
        assert_eq!(count(new().flips(64.., 97, 0x01)), 21);
        assert_eq!(count(new().flips(10..=19, 0, 0x01)), 10);
        assert_eq!(count(new().flips(.., 1, 0)), 0);
        assert_eq!(count(new().lost_writes()), 2, "only the rewritten sectors");
        assert_eq!(count(new().misdirected_writes()), 3 + 3);
        assert_eq!(count(new().truncations(1)), 4 * S);
        assert_eq!(count(new().truncations(S as u64)), 4);
        assert_eq!(count(new().extension(10, 0).extension(1, 0xFF)), 2);
        assert_eq!(count(new().foreign(*b"x")), 1);

        let set = new()
            .foreign(*b"x")
            .extension(10, 0)
            .truncations(S as u64)
            .misdirected_writes()
            .lost_writes()
            .flips(5..7, 1, 0x80);
        let all = MediaFault::enumerate(&d, "w/a", &set).unwrap();
        let text: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "bits 0x80 of byte 5 of `w/a` flipped",
                "bits 0x80 of byte 6 of `w/a` flipped",
                "lost write: bytes 0..512 of `w/a` hold their previous content",
                "lost write: bytes 512..1024 of `w/a` hold their previous content",
                "misdirected write: bytes 0..512 of `w/a` landed at 512..1024 of `w/a`",
                "misdirected write: bytes 0..512 of `w/a` landed at 0..512 of `w/b`",
                "misdirected write: bytes 0..100 of `w/a` landed at 0..100 of `w/c`",
                "misdirected write: bytes 512..1024 of `w/a` landed at 1024..1536 of `w/a`",
                "misdirected write: bytes 512..1000 of `w/a` landed at 512..1000 of `w/b`",
                "misdirected write: bytes 1024..1536 of `w/a` landed at 1536..2048 of `w/a`",
                "`w/a` cut short to 0 bytes",
                "`w/a` cut short to 512 bytes",
                "`w/a` cut short to 1024 bytes",
                "`w/a` cut short to 1536 bytes",
                "`w/a` extended to 2058 bytes with 0x00",
                "foreign file of 1 bytes at `w/a`",
            ]
        );
        let mut unchanged = Vec::new();
        for fault in &all {
            let copy = d.snapshot();
            copy.apply_media_fault(fault)
                .unwrap_or_else(|e| panic!("{fault}: {e}"));
            if copy.read("w/a").unwrap() == d.read("w/a").unwrap() {
                unchanged.push(fault.to_string());
            }
        }
        assert_eq!(unchanged, [text[9].clone()], "only zeros moved over zeros");
        assert!(MediaFault::enumerate(&d, "w/zz", &set)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn seeded_faults_are_reproducible_varied_and_applicable() {
        assert_eq!(MediaFault::seeded(&MemoryDirectory::new(), 1), None);
        let d = folder();
        let copy = d.snapshot();
        let mut kinds = std::collections::HashSet::new();
        let mut distinct = std::collections::BTreeSet::new();
        for seed in 0..600 {
            let fault = MediaFault::seeded(&d, seed).unwrap();
            assert_eq!(MediaFault::seeded(&d, seed).as_ref(), Some(&fault));
            assert_eq!(MediaFault::seeded(&copy, seed).as_ref(), Some(&fault));
            let damaged = d.snapshot();
            damaged
                .apply_media_fault(&fault)
                .unwrap_or_else(|e| panic!("seed {seed}: {fault}: {e}"));
            let again = d.snapshot();
            again.apply_media_fault(&fault).unwrap();
            for path in damaged.files() {
                assert_eq!(damaged.read(&path).unwrap(), again.read(&path).unwrap());
            }
            kinds.insert(std::mem::discriminant(&fault));
            distinct.insert(format!("{fault:?}"));
        }
        assert_eq!(kinds.len(), 6, "every kind of fault is drawn");
        assert!(
            distinct.len() > 400,
            "only {} distinct faults",
            distinct.len()
        );
    }

    #[test]
    fn faults_print_as_sentences() {
        let cases = [
            (flip("a", 3, 0x80), "bits 0x80 of byte 3 of `a` flipped"),
            (
                lost("a", 512, 512),
                "lost write: bytes 512..1024 of `a` hold their previous content",
            ),
            (
                MediaFault::Misdirected {
                    path: "a".into(),
                    offset: 0,
                    len: 4,
                    to_path: "b".into(),
                    to_offset: 8,
                },
                "misdirected write: bytes 0..4 of `a` landed at 8..12 of `b`",
            ),
            (
                MediaFault::Truncate {
                    path: "a".into(),
                    len: 0,
                },
                "`a` cut short to 0 bytes",
            ),
            (
                MediaFault::Extend {
                    path: "a".into(),
                    len: 9,
                    fill: 0xFF,
                },
                "`a` extended to 9 bytes with 0xff",
            ),
            (
                MediaFault::Foreign {
                    path: "a".into(),
                    bytes: vec![1, 2],
                },
                "foreign file of 2 bytes at `a`",
            ),
        ];
        for (fault, text) in cases {
            assert_eq!(fault.to_string(), text);
        }
    }
}
