//! The temporary files of [`Directory::atomic_write`](super::Directory::atomic_write):
//! one naming pattern, shared by both backends.
//!
//! A temporary file for target `name` is `{name}.zdtmp-{pid}-{n}`: the
//! process id and a per-process counter make it unique among concurrent
//! writers, across threads and processes. The pattern ends in digits, so it
//! never matches zerodur's other file grammars (WAL `DIGIT{20}.seg` and
//! `.free`, checkpoints `checkpoint-….zdc`), and is specific enough that
//! anything matching it in a folder, found while holding that folder's
//! atomic-write lock, is a leftover of a writer that died mid-write.

use std::sync::atomic::{AtomicU64, Ordering};

/// What separates the target's name from the writer's identity.
const MARK: &str = ".zdtmp-";

/// A fresh temporary name for an atomic write of `name` (a file name, not a
/// path), unique within this process and, through the process id, across
/// processes.
pub(crate) fn temp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}{MARK}{}-{n}", std::process::id())
}

/// Whether `name` (a file name) has the shape [`temp_name`] gives.
pub(crate) fn is_temp_name(name: &str) -> bool {
    let Some(i) = name.rfind(MARK) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name[i + MARK.len()..].split_once('-') {
        Some((pid, n)) => i > 0 && digits(pid) && digits(n),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_unique_and_recognised() {
        let a = temp_name("cfg");
        let b = temp_name("cfg");
        assert_ne!(a, b);
        assert!(a.starts_with("cfg.zdtmp-"), "{a}");
        assert!(is_temp_name(&a) && is_temp_name(&b));
        assert!(is_temp_name(&temp_name(
            "checkpoint-00000000000000000001.zdc"
        )));
        assert!(is_temp_name("x.zdtmp-1-2.zdtmp-3-4"));
    }

    #[test]
    fn other_names_are_not_temp_names() {
        for name in [
            "cfg",
            "cfg.tmp",
            "cfg.zdtmp",
            "cfg.zdtmp-",
            "cfg.zdtmp-12",
            "cfg.zdtmp-12-",
            "cfg.zdtmp--3",
            "cfg.zdtmp-1-2x",
            "cfg.zdtmp-a-2",
            ".zdtmp-1-2",
            "00000000000000000042.seg",
            "00000000000000000042.free",
            "checkpoint-00000000000000000042.zdc",
            "checkpoint-none.zdc",
            "checkpoint-00000000000000000042.zdc.tmp",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
    }
}
