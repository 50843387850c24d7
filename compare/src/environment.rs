//! Where and how a run happens: machine, kernel, filesystem of the scratch directory, load.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Scale;

/// Where and how the run happened.
pub struct Environment {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub filesystem: String,
    pub scratch: String,
    pub mode: &'static str,
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
        Environment {
            date: utc_now(),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_string(), |text| text.trim().to_string()),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            filesystem: filesystem_of(scratch),
            scratch: scratch.display().to_string(),
            mode: scale.name,
            rounds: scale.rounds,
            load_at_start: load_average(),
        }
    }
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
