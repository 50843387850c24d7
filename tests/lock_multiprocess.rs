//! The directory lock excludes other *processes*, and dies with its holder;
//! atomic writes of one name from several processes take turns.
//!
//! Each test re-executes this test binary (`--exact <its own name>`) with
//! `ZERODUR_LOCK_CHILD=<dir>` set; the child, seeing the variable, runs the
//! child side instead of the test: it tries `FsDirectory::new(dir)?.lock("LOCK")`
//! and reports the outcome through its exit code, or, in `hold` mode, keeps
//! the lock until it is killed (or its stdin closes).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use zerodur::{Directory, Error, FsDirectory};

const CHILD_ENV: &str = "ZERODUR_LOCK_CHILD";
const MODE_ENV: &str = "ZERODUR_LOCK_CHILD_MODE";
const LOCK: &str = "LOCK";

const EXIT_ACQUIRED: i32 = 10;
const EXIT_LOCKED: i32 = 11;
const EXIT_ERROR: i32 = 12;
const HOLDING: &str = "zerodur-child: holding the lock";

/// In a child process: do the child's part and exit. In the test process:
/// return.
fn child_side() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mode = std::env::var(MODE_ENV).unwrap_or_default();
    if mode == "atomic" {
        std::process::exit(atomic_writer(
            Path::new(&dir),
            &format!("child {}", std::process::id()),
        ));
    }
    let hold = mode == "hold";
    let code = match FsDirectory::new(&dir).and_then(|d| d.lock(LOCK)) {
        Ok(guard) => {
            if hold {
                // Never outlive a parent that stopped listening.
                std::thread::spawn(|| {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                    std::process::exit(EXIT_ERROR);
                });
                println!("{HOLDING}");
                // Keep the lock until killed, or until the parent goes away
                // (its end of our stdin closes).
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
            }
            drop(guard);
            EXIT_ACQUIRED
        }
        Err(Error::Locked { .. }) => EXIT_LOCKED,
        Err(e) => {
            eprintln!("zerodur-child: unexpected error: {e}");
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}

/// Starts this binary again, running only `test`, as a child on `dir`.
fn spawn_child(test: &str, dir: &Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(MODE_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-execute the test binary")
}

/// Runs a child that tries the lock once and returns its exit code.
fn try_lock_in_child(test: &str, dir: &Path) -> i32 {
    let out = spawn_child(test, dir, "try")
        .wait_with_output()
        .expect("wait for child");
    out.status
        .code()
        .unwrap_or_else(|| panic!("child died: {:?}", out.status))
}

/// Kills the child if the test fails before it does.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The tests of this file one at a time. A lock belongs to an open file
/// description, which a child shares from `fork` until it `exec`s: a child
/// spawned by one test while another holds a lock would hold that lock for
/// a moment too, and the other test's "released on drop" check would see it
/// still taken (see `Directory::lock`).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn another_process_gets_locked_while_held_and_acquires_after_release() {
    child_side();
    let _serial = serial();
    let name = "another_process_gets_locked_while_held_and_acquires_after_release";
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::new(tmp.path()).unwrap();

    let held = dir.lock(LOCK).unwrap();
    assert_eq!(
        try_lock_in_child(name, tmp.path()),
        EXIT_LOCKED,
        "a second process took a held lock"
    );
    drop(held);
    assert_eq!(
        try_lock_in_child(name, tmp.path()),
        EXIT_ACQUIRED,
        "the lock was not released on drop"
    );
    // The child's exit released it again.
    drop(
        dir.lock(LOCK)
            .expect("a finished child still holds the lock"),
    );
}

#[test]
fn lock_of_a_killed_holder_can_be_taken_again() {
    child_side();
    let _serial = serial();
    let name = "lock_of_a_killed_holder_can_be_taken_again";
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::new(tmp.path()).unwrap();

    let mut reaper = Reaper(Some(spawn_child(name, tmp.path(), "hold")));
    let child = reaper.0.as_mut().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the child exited without taking the lock");
        // libtest prints "test <name> ... " before the output, on the same line.
        if line.contains(HOLDING) {
            break;
        }
    }

    // The holder is another process: this one, and a third one, are refused.
    assert!(
        matches!(dir.lock(LOCK), Err(Error::Locked { .. })),
        "the parent took a lock a child holds"
    );
    assert_eq!(try_lock_in_child(name, tmp.path()), EXIT_LOCKED);

    // kill -9: no destructor runs, the lock file stays behind.
    let mut child = reaper.0.take().unwrap();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(dir.exists(LOCK).unwrap(), "the lock file is left behind");

    // ... and does not block anyone: a fresh open takes the lock.
    let reopened = FsDirectory::new(tmp.path()).unwrap();
    let guard = reopened
        .lock(LOCK)
        .expect("a dead holder's lock must be free");
    assert_eq!(try_lock_in_child(name, tmp.path()), EXIT_LOCKED);
    drop(guard);
    assert_eq!(try_lock_in_child(name, tmp.path()), EXIT_ACQUIRED);
}

// ---------------------------------------------------------------------------
// Atomic writes from several processes.

const SHARED: &str = "shared";
const ATOMIC_ROUNDS: usize = 30;

/// The bytes writer `who` writes in round `i`: `"{who} {i}|"` and a body
/// whose length and bytes follow from the header, so any reader can tell a
/// whole value from a mix of two.
fn atomic_value(who: &str, i: usize) -> Vec<u8> {
    let mut v = format!("{who} {i}|").into_bytes();
    let seed = v
        .iter()
        .fold(i, |h, &b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
    v.extend((0..1 + seed % 20_000).map(|k| (k.wrapping_mul(7) ^ seed) as u8));
    v
}

/// Whether `bytes` is a whole value some writer wrote.
fn is_whole_value(bytes: &[u8]) -> bool {
    let Some(bar) = bytes.iter().position(|&b| b == b'|') else {
        return false;
    };
    let Ok(header) = std::str::from_utf8(&bytes[..bar]) else {
        return false;
    };
    let Some((who, i)) = header.rsplit_once(' ') else {
        return false;
    };
    i.parse().is_ok_and(|i| atomic_value(who, i) == bytes)
}

/// Writes `ATOMIC_ROUNDS` values as `who`, checking after each that the file
/// holds a whole value; returns an exit code.
fn atomic_writer(dir: &Path, who: &str) -> i32 {
    let d = match FsDirectory::new(dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("zerodur-child: open: {e}");
            return EXIT_ERROR;
        }
    };
    for i in 0..ATOMIC_ROUNDS {
        if let Err(e) = d.atomic_write(SHARED, &atomic_value(who, i)) {
            eprintln!("zerodur-child: {who} round {i}: {e}");
            return EXIT_ERROR;
        }
        match d.read(SHARED) {
            Ok(b) if is_whole_value(&b) => {}
            other => {
                eprintln!("zerodur-child: {who} round {i}: read back {other:?}");
                return EXIT_ERROR;
            }
        }
    }
    EXIT_ACQUIRED
}

#[test]
fn atomic_writes_of_one_name_from_several_processes_publish_whole_values() {
    child_side();
    let _serial = serial();
    let name = "atomic_writes_of_one_name_from_several_processes_publish_whole_values";
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDirectory::new(tmp.path()).unwrap();
    dir.atomic_write(SHARED, &atomic_value("parent", 0))
        .unwrap();

    let children: Vec<Reaper> = (0..3)
        .map(|_| Reaper(Some(spawn_child(name, tmp.path(), "atomic"))))
        .collect();
    assert_eq!(atomic_writer(tmp.path(), "parent"), EXIT_ACQUIRED);
    for mut reaper in children {
        let status = reaper.0.take().unwrap().wait().unwrap();
        assert_eq!(
            status.code(),
            Some(EXIT_ACQUIRED),
            "a child writer failed: {status:?}"
        );
    }
    let fin = dir.read(SHARED).unwrap();
    assert!(is_whole_value(&fin), "final content is no writer's value");
    let header = &fin[..fin.iter().position(|&b| b == b'|').unwrap()];
    assert!(
        header.ends_with(format!(" {}", ATOMIC_ROUNDS - 1).as_bytes()),
        "final content is not a writer's last value"
    );
    assert_eq!(dir.list("").unwrap(), [SHARED], "temporary files remain");
}
