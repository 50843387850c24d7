//! Validation of the relative paths every [`Directory`](super::Directory)
//! method takes.

use crate::error::{Error, Result};

/// Checks a path naming a file (or directory) below the root: relative,
/// `/`-separated, with no empty, `.` or `..` component and no NUL byte.
pub(crate) fn check_file(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(invalid(path, "empty path"));
    }
    check_components(path)
}

/// Checks a path naming a directory; `""` names the root itself.
pub(crate) fn check_dir(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    check_components(path)
}

fn check_components(path: &str) -> Result<()> {
    if path.as_bytes().contains(&0) {
        return Err(invalid(path, "contains a NUL byte"));
    }
    if path.starts_with('/') || path.starts_with('\\') || has_drive_prefix(path) {
        return Err(invalid(path, "absolute paths are not allowed"));
    }
    if path.contains('\\') {
        return Err(invalid(
            path,
            "backslashes are not allowed; separate with `/`",
        ));
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err(invalid(path, "empty path component")),
            "." => return Err(invalid(path, "`.` components are not allowed")),
            ".." => return Err(invalid(path, "`..` components are not allowed")),
            _ => {}
        }
    }
    Ok(())
}

fn has_drive_prefix(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic()
}

fn invalid(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.to_owned(),
        reason,
    }
}

/// The parent directory of a checked file path (`""` for the root).
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// The last component of a checked path: its name within its parent.
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Joins a directory path and a name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escapes_and_malformed_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\0b",
            "C:x",
            "a\\b",
        ] {
            assert!(
                matches!(check_file(bad), Err(Error::InvalidPath { .. })),
                "{bad:?} accepted"
            );
        }
        for good in ["a", "wal/00000001.seg", "a.b/c..d", "...x"] {
            check_file(good).unwrap();
        }
        check_dir("").unwrap();
        assert!(check_dir("/").is_err());
    }

    #[test]
    fn parent_and_join_round_trip() {
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("c"), "");
        assert_eq!(file_name("a/b/c"), "c");
        assert_eq!(file_name("c"), "c");
        assert_eq!(join("", "c"), "c");
        assert_eq!(join("a/b", "c"), "a/b/c");
    }
}
