//! Helpers shared by the integration tests.
//!
//! Each test crate uses a different subset, so unused ones are expected.
#![allow(dead_code)]

use std::collections::BTreeMap;

use zerodur::{CrashPolicy, Directory, Error, IoOp};

/// Paths every method must refuse with [`Error::InvalidPath`]. `""` is left
/// out: methods taking a directory accept it as the root (see
/// [`INVALID_FILE_ONLY`]).
pub const INVALID_PATHS: &[&str] = &[
    "/abs", "/", "../x", "..", "a/../b", "a//b", "a/", "a\0b", "./a", "a/.", "a\\b",
];

/// Invalid as a file path, valid as a directory path (the root).
pub const INVALID_FILE_ONLY: &[&str] = &[""];

/// `keep_all`, `drop_all` and `seeded(0..n)`: the policies a "holds in every
/// image" check runs over.
pub fn every_policy(n: u64) -> Vec<CrashPolicy> {
    let mut v = vec![CrashPolicy::keep_all(), CrashPolicy::drop_all()];
    v.extend((0..n).map(CrashPolicy::seeded));
    v
}

/// SplitMix64, for reproducible workloads.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random value.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Deterministic, non-repeating-looking bytes: a different `tag` gives a
/// different sequence, and no byte run is constant.
pub fn pattern(len: usize, tag: u8) -> Vec<u8> {
    (0..len as u32)
        .map(|i| {
            let v = i
                .wrapping_mul(31)
                .wrapping_add(u32::from(tag) * 7 + (i >> 8));
            v as u8
        })
        .collect()
}

/// Creates `path` with `data` without any barrier.
pub fn write_file(dir: &dyn Directory, path: &str, data: &[u8]) -> zerodur::Result<()> {
    let mut f = dir.create(path)?;
    f.write_all(data)
}

/// Creates `path` with `data`, syncs its data and its parent directory: data
/// and name durable.
pub fn write_durable(dir: &dyn Directory, path: &str, data: &[u8]) -> zerodur::Result<()> {
    let mut f = dir.create(path)?;
    f.write_all(data)?;
    f.sync()?;
    drop(f);
    dir.sync_dir(parent(path))
}

/// The parent directory of `path` (`""` for the root).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// Every entry below the root, recursively: files map to their bytes,
/// directories to `None`. Two directories with equal dumps hold the same
/// names and the same bytes.
pub fn dump(dir: &dyn Directory) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(d) = todo.pop() {
        for name in dir.list(&d).expect("list") {
            let p = if d.is_empty() {
                name
            } else {
                format!("{d}/{name}")
            };
            match dir.read(&p) {
                Ok(bytes) => {
                    out.insert(p, Some(bytes));
                }
                Err(_) => {
                    out.insert(p.clone(), None);
                    todo.push(p);
                }
            }
        }
    }
    out
}

/// Asserts `r` is an [`Error::Io`] from operation `op` with errno `errno`.
#[track_caller]
pub fn assert_io<T: std::fmt::Debug>(r: zerodur::Result<T>, op: IoOp, errno: i32) {
    match r {
        Err(Error::Io {
            op: got, source, ..
        }) => {
            assert_eq!(got, op, "wrong operation in the error");
            assert_eq!(source.raw_os_error(), Some(errno), "wrong errno: {source}");
        }
        other => panic!("expected an I/O error from {op} with errno {errno}, got {other:?}"),
    }
}

/// Asserts `r` is [`Error::NotFound`].
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: zerodur::Result<T>) {
    match r {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Asserts `r` is [`Error::InvalidPath`].
#[track_caller]
pub fn assert_invalid_path<T: std::fmt::Debug>(r: zerodur::Result<T>, what: &str) {
    match r {
        Err(Error::InvalidPath { .. }) => {}
        other => panic!("{what}: expected InvalidPath, got {other:?}"),
    }
}
