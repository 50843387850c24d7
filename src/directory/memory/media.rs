//! Media faults: what a disk, a file system or an operator can do to bytes
//! that were made durable.

use std::fmt;
use std::sync::Arc;

use super::inode::Inode;
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
