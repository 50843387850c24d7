//! Where and how a run happens: machine, kernel, filesystem of the scratch directory, load.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Scale;

/// `statfs` magic numbers of filesystems that live in memory (linux/magic.h).
const MEMORY_FILESYSTEMS: [(u32, &str); 2] = [(0x0102_1994, "tmpfs"), (0x8584_58f6, "ramfs")];

/// Where and how the run happened.
pub struct Environment {
    /// When the run started, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The kernel release.
    pub kernel: String,
    /// The CPU model.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Type and device of the filesystem holding the scratch directory.
    pub filesystem: String,
    /// `Some("tmpfs")` or `Some("ramfs")` when the scratch directory lives in memory.
    pub memory_filesystem: Option<&'static str>,
    /// The scratch directory.
    pub scratch: String,
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Round-robin rounds.
    pub rounds: usize,
    /// 1-minute load average when the run started (other work on the machine adds noise).
    pub load_at_start: String,
}

impl Environment {
    /// Probes the machine and the filesystem holding `scratch`.
    pub fn probe(scratch: &Path, scale: &Scale) -> Environment {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or("unknown", |(_, model)| model.trim())
            .to_string();
        let memory_filesystem = match memory_filesystem(scratch) {
            Ok(found) => found,
            Err(error) => {
                eprintln!("zerodur-compare: statfs {}: {error}", scratch.display());
                None
            }
        };
        Environment {
            date: utc_now(),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_string(), |text| text.trim().to_string()),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            filesystem: filesystem_of(scratch),
            memory_filesystem,
            scratch: scratch.display().to_string(),
            mode: scale.name,
            rounds: scale.rounds,
            load_at_start: load_average(),
        }
    }

    /// The warning owed when the scratch directory lives in memory, else `None`.
    pub fn memory_filesystem_warning(&self) -> Option<String> {
        let kind = self.memory_filesystem?;
        Some(format!(
            "The scratch directory {} is on {kind}, which lives in memory: fdatasync, fsync and \
             msync return without writing anything to a disk, so every durable append, \
             checkpoint write and durability ratio of this run means nothing. Rerun with \
             --dir on a disk-backed filesystem.",
            self.scratch
        ))
    }
}

#[cfg(test)]
impl Environment {
    /// An environment of blank strings on a disk, for tests of the report and the chart.
    pub fn for_tests() -> Environment {
        Environment {
            date: String::new(),
            kernel: String::new(),
            cpu: String::new(),
            cores: 2,
            filesystem: String::new(),
            memory_filesystem: None,
            scratch: String::new(),
            mode: "quick",
            rounds: 1,
            load_at_start: String::new(),
        }
    }
}

/// `text` framed so it stands out on a terminal.
pub fn banner(text: &str) -> String {
    let rule = "!".repeat(78);
    format!("{rule}\n!!! WARNING: {text}\n{rule}")
}

/// Which memory filesystem holds `path`, if any (by `statfs` magic number).
fn memory_filesystem(path: &Path) -> io::Result<Option<&'static str>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statfs is plain old data; all-zero bytes are a valid value of it.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `stat` a writable statfs, both alive
    // for the call.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The magic numbers fit in 32 bits; f_type's width differs between architectures.
    let magic = stat.f_type as u32;
    Ok(MEMORY_FILESYSTEMS
        .iter()
        .find(|(known, _)| *known == magic)
        .map(|(_, name)| *name))
}

/// The 1-minute load average.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Type and device of the mount holding `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let fs_type = fields.next()?;
            path.starts_with(&mount_point)
                .then(|| (mount_point, format!("{fs_type} on {device}")))
        })
        .max_by_key(|(mount_point, _)| mount_point.len())
        .map_or_else(|| "unknown".to_string(), |(_, description)| description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_filesystems_are_told_from_disks() {
        let mounts = fs::read_to_string("/proc/mounts").unwrap();
        // The filesystem on top of each mount point (a later mount hides an earlier one).
        let mut on_top = std::collections::BTreeMap::new();
        for line in mounts.lines() {
            if let [_, mount_point, fs_type, ..] = line.split_whitespace().collect::<Vec<_>>()[..] {
                on_top.insert(mount_point.replace("\\040", " "), fs_type.to_string());
            }
        }
        // Every tmpfs mount of this machine (there is nearly always one: /dev/shm, /run).
        for (mount_point, fs_type) in on_top {
            let found = memory_filesystem(Path::new(&mount_point));
            if let (Ok(found), "tmpfs") = (found, fs_type.as_str()) {
                assert_eq!(found, Some("tmpfs"), "{mount_point}");
            }
        }
        assert_eq!(memory_filesystem(Path::new("/proc")).unwrap(), None);
        assert!(memory_filesystem(Path::new("/no/such/dir")).is_err());
    }
}
