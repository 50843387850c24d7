//! The crash model of `MemoryDirectory` is honest: what a barrier made
//! durable survives every simulated power loss, what it did not may or may not
//! survive — at 512-byte sector granularity — and nothing else ever changes.

mod support;

use std::collections::BTreeSet;

use support::{dump, every_policy, pattern, write_durable, Rng};
use zerodur::{
    CrashPolicy, Directory, Error, Fault, MemoryDirectory, OpKind, Region, WritableFile,
};

const SECTOR: usize = 512;
const PAGE: usize = 4096;

/// Seeds searched when looking for "some image where ...".
const SEARCH_SEEDS: u64 = 256;

fn image_bytes(d: &MemoryDirectory, policy: CrashPolicy, path: &str) -> Option<Vec<u8>> {
    let img = d.crash_image(&policy);
    match img.read(path) {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("reading {path} from an image: {e}"),
    }
}

/// A region of `len` zero bytes whose data, length and name are durable.
fn durable_region(d: &MemoryDirectory, path: &str, len: u64) -> Box<dyn Region> {
    let r = d.create_region(path, len).unwrap();
    d.sync_file(path).unwrap();
    d.sync_dir(support::parent(path)).unwrap();
    r
}

// ---------------------------------------------------------------------------
// What was made durable stays.

#[test]
fn synced_and_named_writes_are_byte_exact_in_every_image() {
    let d = MemoryDirectory::new();
    d.create_dir_all("sub").unwrap();
    d.sync_dir("").unwrap();

    // WritableFile::sync.
    let a = pattern(3000, 1);
    write_durable(&d, "a", &a).unwrap();
    // Directory::sync_file, in a subdirectory.
    let b = pattern(1234, 2);
    support::write_file(&d, "sub/b", &b).unwrap();
    d.sync_file("sub/b").unwrap();
    d.sync_dir("sub").unwrap();
    // Region::flush_range over a region whose allocation was synced.
    let mut r = durable_region(&d, "r", 16_384);
    let rdata = pattern(16_384, 3);
    r.write_at(0, &rdata).unwrap();
    r.flush_range(0, 16_384).unwrap();
    // atomic_write.
    d.atomic_write("meta", b"durable meta").unwrap();

    // Lots of unsynced noise around it, to exercise every choice.
    support::write_file(&d, "noise", &pattern(5000, 4)).unwrap();
    let mut more = d.open_append("a").unwrap();
    let mut r2 = d.open_region("r").unwrap();
    r2.write_at(20, &[0xEE; 100]).unwrap();
    drop(r2);
    more.write_all(&pattern(700, 5)).unwrap();
    d.rename("noise", "sub/noise").unwrap();

    for policy in every_policy(64) {
        let img = d.crash_image(&policy);
        let got_a = img.read("a").unwrap();
        assert_eq!(&got_a[..a.len()], &a[..], "{policy:?}: synced append lost");
        assert!(got_a.len() == a.len() || got_a.len() == a.len() + 700);
        assert_eq!(img.read("sub/b").unwrap(), b, "{policy:?}");
        let got_r = img.read("r").unwrap();
        assert_eq!(got_r.len(), 16_384, "{policy:?}: region length");
        // Only bytes 20..120 have an unsynced write: they may tear, the rest
        // is exactly what was flushed.
        assert_eq!(&got_r[..20], &rdata[..20], "{policy:?}");
        assert_eq!(&got_r[120..], &rdata[120..], "{policy:?}");
        assert_eq!(img.read("meta").unwrap(), b"durable meta", "{policy:?}");
    }
}

// ---------------------------------------------------------------------------
// What was not made durable may or may not survive.

#[test]
fn unsynced_write_is_lost_in_some_image_and_kept_in_another() {
    let d = MemoryDirectory::new();
    write_durable(&d, "f", b"durable|").unwrap();
    let mut f = d.open_append("f").unwrap();
    f.write_all(b"volatile").unwrap();

    assert_eq!(
        image_bytes(&d, CrashPolicy::keep_all(), "f").unwrap(),
        b"durable|volatile"
    );
    assert_eq!(
        image_bytes(&d, CrashPolicy::drop_all(), "f").unwrap(),
        b"durable|"
    );
    let mut seen = BTreeSet::new();
    for seed in 0..SEARCH_SEEDS {
        seen.insert(image_bytes(&d, CrashPolicy::seeded(seed), "f").unwrap());
    }
    assert!(seen.contains(&b"durable|"[..]), "never lost: {seen:?}");
    assert!(seen.contains(&b"durable|volatile"[..]), "never kept");
}

#[test]
fn rename_without_sync_dir_is_undone_in_some_image_and_kept_in_another() {
    let d = MemoryDirectory::new();
    write_durable(&d, "target", b"old").unwrap();
    write_durable(&d, "target.tmp", b"new").unwrap();
    d.rename("target.tmp", "target").unwrap();

    let undone = dump_of(&[("target", b"old"), ("target.tmp", b"new")]);
    let kept = dump_of(&[("target", b"new")]);
    let (mut saw_undone, mut saw_kept) = (false, false);
    for policy in every_policy(SEARCH_SEEDS) {
        let state = dump(&d.crash_image(&policy));
        assert!(
            state == undone || state == kept,
            "{policy:?}: a rename is all or nothing, got {state:?}"
        );
        saw_undone |= state == undone;
        saw_kept |= state == kept;
    }
    assert!(
        saw_undone && saw_kept,
        "undone: {saw_undone}, kept: {saw_kept}"
    );

    d.sync_dir("").unwrap();
    for policy in every_policy(64) {
        assert_eq!(dump(&d.crash_image(&policy)), kept, "{policy:?}");
    }
}

#[test]
fn create_and_remove_without_sync_dir_may_not_land() {
    let d = MemoryDirectory::new();
    write_durable(&d, "old", b"old data").unwrap();
    // Data durable, name not.
    let mut f = d.create("new").unwrap();
    f.write_all(b"new data").unwrap();
    f.sync().unwrap();
    d.remove("old").unwrap();

    let (mut new_absent, mut new_present, mut old_present, mut old_absent) =
        (false, false, false, false);
    for policy in every_policy(SEARCH_SEEDS) {
        let img = d.crash_image(&policy);
        match img.read("new") {
            Ok(b) => {
                assert_eq!(b, b"new data", "{policy:?}: synced data of a landed create");
                new_present = true;
            }
            Err(e) => {
                assert!(e.is_not_found());
                new_absent = true;
            }
        }
        match img.read("old") {
            Ok(b) => {
                assert_eq!(b, b"old data", "{policy:?}: an undone removal");
                old_present = true;
            }
            Err(e) => {
                assert!(e.is_not_found());
                old_absent = true;
            }
        }
    }
    assert!(new_absent && new_present, "create never/always landed");
    assert!(old_present && old_absent, "removal never/always landed");
    assert!(image_bytes(&d, CrashPolicy::drop_all(), "new").is_none());
    assert!(image_bytes(&d, CrashPolicy::drop_all(), "old").is_some());

    d.sync_dir("").unwrap();
    for policy in every_policy(64) {
        assert_eq!(
            dump(&d.crash_image(&policy)),
            dump_of(&[("new", b"new data")])
        );
    }
}

#[test]
fn unsynced_multi_sector_write_tears_at_sector_granularity() {
    let d = MemoryDirectory::new();
    let mut r = durable_region(&d, "r", 8192);
    r.write_at(0, &[0xAB; PAGE]).unwrap();

    let mut mixed = 0;
    for policy in every_policy(SEARCH_SEEDS) {
        let img = image_bytes(&d, policy, "r").unwrap();
        assert_eq!(img.len(), 8192);
        let mut new = 0;
        for (i, sector) in img.chunks(SECTOR).enumerate() {
            let all_old = sector.iter().all(|&b| b == 0);
            let all_new = sector.iter().all(|&b| b == 0xAB);
            assert!(all_old || all_new, "{policy:?}: sector {i} is torn inside");
            if i >= PAGE / SECTOR {
                assert!(all_old, "{policy:?}: sector {i} was never written");
            }
            new += usize::from(all_new && !all_old);
        }
        if new > 0 && new < PAGE / SECTOR {
            mixed += 1;
        }
    }
    assert!(mixed > 0, "no image tore the 8-sector write");
}

#[test]
fn dirty_sectors_reach_disk_in_any_order_but_each_keeps_its_write_order() {
    let d = MemoryDirectory::new();
    let mut r = durable_region(&d, "r", 8192);
    // Two writes to different sectors: the later one may land alone.
    r.write_at(0, &[1; SECTOR]).unwrap();
    r.write_at(5 * SECTOR as u64, &[2; SECTOR]).unwrap();
    // Two writes to one sector: it lands at a prefix of them, in order.
    r.write_at(6700, &[3; 300]).unwrap();
    r.write_at(6700, &[4; 100]).unwrap();

    let sector_at = |img: &[u8], off: usize| img[off..off + SECTOR].to_vec();
    let mut later_alone = false;
    let s13 = 13 * SECTOR; // 6656..7168: the sector holding 6700..7000
    let v0 = vec![0u8; SECTOR];
    let mut v1 = v0.clone();
    v1[6700 - s13..7000 - s13].fill(3);
    let mut v2 = v1.clone();
    v2[6700 - s13..6800 - s13].fill(4);
    let mut versions_seen = BTreeSet::new();
    for policy in every_policy(SEARCH_SEEDS) {
        let img = image_bytes(&d, policy, "r").unwrap();
        if sector_at(&img, 0) == v0 && sector_at(&img, 5 * SECTOR) == vec![2; SECTOR] {
            later_alone = true;
        }
        let s = sector_at(&img, s13);
        let which = [&v0, &v1, &v2].iter().position(|v| **v == s);
        let which = which.unwrap_or_else(|| panic!("{policy:?}: sector 13 out of order"));
        versions_seen.insert(which);
    }
    assert!(
        later_alone,
        "a later write never reached disk before an earlier one"
    );
    assert_eq!(versions_seen.len(), 3, "versions seen: {versions_seen:?}");
}

#[test]
fn flush_range_makes_exactly_its_pages_durable() {
    let d = MemoryDirectory::new();
    let mut r = durable_region(&d, "r", 16_384);
    r.write_at(0, &[0x11; 16_384]).unwrap();
    r.flush_range(5000, 5).unwrap();

    let durable = d.durable_bytes("r").unwrap();
    let mut expect = vec![0u8; 16_384];
    expect[4096..8192].fill(0x11);
    assert_eq!(
        durable, expect,
        "flush of 5000..5005 must cover exactly page 1"
    );
    assert_eq!(
        image_bytes(&d, CrashPolicy::drop_all(), "r").unwrap(),
        expect
    );
    assert_eq!(
        image_bytes(&d, CrashPolicy::keep_all(), "r").unwrap(),
        vec![0x11; 16_384]
    );
    for seed in 0..64 {
        let img = image_bytes(&d, CrashPolicy::seeded(seed), "r").unwrap();
        assert_eq!(&img[4096..8192], &expect[4096..8192], "seed {seed}");
    }

    // A range crossing a page boundary covers both pages.
    r.flush_range(8191, 2).unwrap();
    expect[8192..12_288].fill(0x11);
    assert_eq!(d.durable_bytes("r").unwrap(), expect);
}

#[test]
fn extended_file_may_come_back_at_its_durable_length() {
    let d = MemoryDirectory::new();
    let base = pattern(1000, 7);
    write_durable(&d, "f", &base).unwrap();
    let mut f = d.open_append("f").unwrap();
    let tail = pattern(3000, 8);
    f.write_all(&tail).unwrap();

    let mut lengths = BTreeSet::new();
    for policy in every_policy(SEARCH_SEEDS) {
        let img = image_bytes(&d, policy, "f").unwrap();
        assert!(
            img.len() == 1000 || img.len() == 4000,
            "{policy:?}: {}",
            img.len()
        );
        assert_eq!(&img[..1000], &base[..], "{policy:?}");
        lengths.insert(img.len());
    }
    assert_eq!(lengths, BTreeSet::from([1000, 4000]));
    assert_eq!(image_bytes(&d, CrashPolicy::drop_all(), "f").unwrap(), base);
}

// ---------------------------------------------------------------------------
// A failed barrier.

#[test]
fn failed_flush_range_leaves_its_writes_in_limbo_for_good() {
    let d = MemoryDirectory::new();
    let mut r = durable_region(&d, "r", 8192);
    r.write_at(100, &[0xCD; 200]).unwrap();
    d.inject(Fault::eio().on(OpKind::FlushRange));
    assert_eq!(
        r.flush_range(0, 8192).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    // Later work on the same page, and a later barrier that succeeds.
    r.write_at(1000, &[0x77; 50]).unwrap();
    r.write_at(250, &[0x99; 10]).unwrap(); // overwrites part of the limbo write
    r.flush_range(0, 8192).unwrap();
    // The region still reads what was written.
    assert_eq!(&r.bytes()[100..250], &[0xCD; 150][..]);

    let mut expect_durable = vec![0u8; 8192];
    expect_durable[1000..1050].fill(0x77);
    expect_durable[250..260].fill(0x99);
    assert_eq!(
        d.durable_bytes("r").unwrap(),
        expect_durable,
        "a later barrier made writes of a failed one durable"
    );
    assert_eq!(
        image_bytes(&d, CrashPolicy::drop_all(), "r").unwrap(),
        expect_durable
    );
    let keep = image_bytes(&d, CrashPolicy::keep_all(), "r").unwrap();
    assert_eq!(keep, r.bytes(), "keep_all has every write, limbo included");
    for policy in every_policy(SEARCH_SEEDS) {
        let img = image_bytes(&d, policy, "r").unwrap();
        // What the successful barrier covered is exact, limbo or not.
        assert_eq!(&img[250..260], &[0x99; 10][..], "{policy:?}");
        assert_eq!(&img[1000..1050], &[0x77; 50][..], "{policy:?}");
        for (i, &b) in img[100..250].iter().chain(&img[260..300]).enumerate() {
            assert!(b == 0 || b == 0xCD, "{policy:?}: byte {i} is {b:#x}");
        }
    }
}

#[test]
fn failed_file_sync_leaves_its_writes_in_limbo_for_good() {
    for via_handle in [false, true] {
        let d = MemoryDirectory::new();
        write_durable(&d, "f", b"base").unwrap();
        let mut f = d.open_append("f").unwrap();
        f.write_all(b"LIMBO").unwrap();
        d.inject(Fault::eio().on(OpKind::SyncFile));
        let failed = if via_handle {
            f.sync()
        } else {
            d.sync_file("f")
        };
        assert_eq!(failed.unwrap_err().raw_os_error(), Some(libc::EIO));
        f.write_all(b"+after").unwrap();
        if via_handle {
            f.sync().unwrap();
        } else {
            d.sync_file("f").unwrap();
        }
        assert_eq!(d.read("f").unwrap(), b"baseLIMBO+after");

        let lost = image_bytes(&d, CrashPolicy::drop_all(), "f").unwrap();
        assert!(lost.starts_with(b"base") && lost.ends_with(b"+after"));
        assert_eq!(
            &lost[4..9],
            &[0; 5],
            "drop_all holds the failed sync's bytes: {lost:?}"
        );
        assert_eq!(
            image_bytes(&d, CrashPolicy::keep_all(), "f").unwrap(),
            b"baseLIMBO+after"
        );
    }
}

// ---------------------------------------------------------------------------
// Crash points.

#[derive(Default)]
struct Handles {
    f: Option<Box<dyn WritableFile>>,
    r: Option<Box<dyn Region>>,
    r2: Option<Box<dyn Region>>,
}

fn need<T: ?Sized>(h: &mut Option<Box<T>>) -> zerodur::Result<&mut T> {
    h.as_deref_mut().ok_or(Error::InvalidArgument {
        name: "handle",
        reason: "not opened (the directory halted first)".into(),
    })
}

/// The crash-point workload: step `i` performs exactly one mutating operation.
const STEPS: usize = 19;

fn step(i: usize, d: &MemoryDirectory, h: &mut Handles) -> zerodur::Result<()> {
    match i {
        0 => d.create_dir_all("d"),
        1 => d.create("d/f").map(|f| h.f = Some(f)),
        2 => need(&mut h.f)?.write_all(b"one"),
        3 => need(&mut h.f)?.sync(),
        4 => d.sync_dir(""),
        5 => d.sync_dir("d"),
        6 => d.create_region("d/r", 8192).map(|r| h.r = Some(r)),
        7 => need(&mut h.r)?.write_at(0, &pattern(6000, 9)),
        8 => need(&mut h.r)?.flush_range(0, 4096),
        9 => need(&mut h.f)?.write_all(b"two"),
        10 => d.rename("d/f", "d/g"),
        11 => d.sync_dir("d"),
        12 => d.truncate("d/g", 2),
        13 => d.sync_file("d/g"),
        14 => d.remove("d/g"),
        15 => d.open_region("d/r").map(|r| h.r2 = Some(r)),
        16 => need(&mut h.r2)?.write_at(5000, b"late"),
        17 => d.create("top").map(drop),
        18 => d.sync_dir(""),
        _ => unreachable!(),
    }
}

#[test]
fn op_log_records_kinds_and_paths_in_order() {
    let d = MemoryDirectory::new();
    let mut h = Handles::default();
    for i in 0..STEPS {
        step(i, &d, &mut h).unwrap();
    }
    // Reads are neither counted nor logged.
    d.read("d/r").unwrap();
    d.list("d").unwrap();
    use OpKind::*;
    let expected = [
        (CreateDir, "d"),
        (Create, "d/f"),
        (Write, "d/f"),
        (SyncFile, "d/f"),
        (SyncDir, ""),
        (SyncDir, "d"),
        (Allocate, "d/r"),
        (Write, "d/r"),
        (FlushRange, "d/r"),
        (Write, "d/f"),
        (Rename, "d/f"),
        (SyncDir, "d"),
        (Truncate, "d/g"),
        (SyncFile, "d/g"),
        (Remove, "d/g"),
        (OpenRegion, "d/r"),
        (Write, "d/r"),
        (Create, "top"),
        (SyncDir, ""),
    ];
    let log = d.op_log();
    assert_eq!(d.op_count(), STEPS as u64);
    assert_eq!(log.len(), STEPS);
    for (i, (rec, (kind, path))) in log.iter().zip(expected).enumerate() {
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!((rec.kind, rec.path.as_str()), (kind, path), "op {}", i + 1);
    }
}

#[test]
fn halt_after_k_freezes_the_directory_after_exactly_k_operations() {
    for k in 0..=STEPS {
        let halted = MemoryDirectory::new();
        halted.halt_after(k as u64);
        let mut h = Handles::default();
        for i in 0..STEPS {
            let r = step(i, &halted, &mut h);
            if i < k {
                r.unwrap_or_else(|e| panic!("k={k}: step {i} before the halt failed: {e}"));
            } else {
                assert!(r.is_err(), "k={k}: step {i} after the halt succeeded");
            }
        }
        assert!(halted.is_halted());
        assert_eq!(halted.op_count(), k as u64, "k={k}");

        let reference = MemoryDirectory::new();
        let mut h = Handles::default();
        for i in 0..k {
            step(i, &reference, &mut h).unwrap();
        }
        assert_eq!(halted.op_log(), reference.op_log(), "k={k}");
        for policy in every_policy(16) {
            assert_eq!(
                dump(&halted.crash_image(&policy)),
                dump(&reference.crash_image(&policy)),
                "k={k}, {policy:?}: the image reflects more than the first k operations"
            );
        }
    }
}

#[test]
fn halted_directory_fails_every_mutating_operation_with_io_errors() {
    let d = MemoryDirectory::new();
    d.create_dir_all("d").unwrap();
    write_durable(&d, "d/f", b"content").unwrap();
    let mut r = d.create_region("d/r", 4096).unwrap();
    let mut f = d.open_append("d/f").unwrap();
    let k = d.op_count();
    d.halt_after(k);
    assert!(d.is_halted());

    let results: Vec<(&str, zerodur::Result<()>)> = vec![
        ("create_dir_all", d.create_dir_all("e")),
        ("create", d.create("d/new").map(drop)),
        ("create existing", d.create("d/f").map(drop)),
        ("open_append", d.open_append("d/f").map(drop)),
        ("write_all", f.write_all(b"x")),
        ("sync", f.sync()),
        ("sync_file", d.sync_file("d/f")),
        ("sync_dir", d.sync_dir("d")),
        ("rename", d.rename("d/f", "d/g")),
        ("remove", d.remove("d/f")),
        ("truncate", d.truncate("d/f", 1)),
        ("create_region", d.create_region("d/r2", 4096).map(drop)),
        ("open_region", d.open_region("d/r").map(drop)),
        ("write_at", r.write_at(0, b"x")),
        ("flush_range", r.flush_range(0, 4096)),
        ("atomic_write", d.atomic_write("d/a", b"x")),
    ];
    for (name, res) in results {
        assert!(
            matches!(res, Err(Error::Io { .. })),
            "{name} on a halted directory: {res:?}"
        );
    }
    assert_eq!(d.op_count(), k, "failed operations were counted");
    assert_eq!(d.op_log().len() as u64, k);
    // Nothing changed, and reads still work.
    assert_eq!(d.read("d/f").unwrap(), b"content");
    assert_eq!(d.list("d").unwrap(), ["f", "r"]);
    assert_eq!(r.bytes(), &[0; 4096][..]);

    d.resume();
    assert!(!d.is_halted());
    d.sync_dir("d").unwrap();
    assert_eq!(d.op_count(), k + 1);
}

// ---------------------------------------------------------------------------
// Images themselves.

/// A directory with unsynced writes, torn candidates and pending names.
fn messy() -> MemoryDirectory {
    let d = MemoryDirectory::new();
    d.create_dir_all("w").unwrap();
    d.sync_dir("").unwrap();
    write_durable(&d, "w/base", &pattern(5000, 10)).unwrap();
    let mut r = durable_region(&d, "w/seg", 32_768);
    for i in 0..20u64 {
        r.write_at(i * 1531, &pattern(900, i as u8)).unwrap();
    }
    r.flush_range(0, 4096).unwrap();
    let mut f = d.open_append("w/base").unwrap();
    f.write_all(&pattern(2500, 11)).unwrap();
    support::write_file(&d, "w/fresh", b"fresh").unwrap();
    d.rename("w/fresh", "w/renamed").unwrap();
    d.remove("w/base").ok(); // removal pending, inode kept by the open handle
    drop(f);
    d
}

#[test]
fn crash_images_are_deterministic_per_seed_and_vary_across_seeds() {
    let d = messy();
    let mut distinct = BTreeSet::new();
    for policy in every_policy(32) {
        let first = dump(&d.crash_image(&policy));
        let second = dump(&d.crash_image(&policy));
        assert_eq!(first, second, "{policy:?}: same seed, different image");
        distinct.insert(format!("{first:?}"));
    }
    assert!(
        distinct.len() > 10,
        "only {} distinct images",
        distinct.len()
    );
}

#[test]
fn crash_images_are_independent_of_the_original() {
    let d = messy();
    let policy = CrashPolicy::seeded(5);
    let original = dump(&d);
    let image_dump = dump(&d.crash_image(&policy));

    // Writing to the image does not touch the original.
    let img = d.crash_image(&policy);
    img.atomic_write("w/seg", b"overwritten in the image")
        .unwrap();
    img.create_dir_all("only/in/image").unwrap();
    support::write_file(&img, "w/extra", b"x").unwrap();
    assert_eq!(dump(&d), original);
    assert_eq!(dump(&d.crash_image(&policy)), image_dump);

    // Writing to the original does not touch an image taken before.
    let img = d.crash_image(&policy);
    let mut r = d.open_region("w/seg").unwrap();
    r.write_at(0, &[0xFF; 4096]).unwrap();
    r.flush_range(0, 4096).unwrap();
    d.atomic_write("w/new", b"later").unwrap();
    assert_eq!(dump(&img), image_dump);
    // An image has no pending state: it is its own durable state.
    assert_eq!(dump(&img.crash_image(&CrashPolicy::drop_all())), image_dump);
    assert_eq!(img.op_count(), 0);
}

#[test]
fn crash_image_can_be_written_and_crashed_again() {
    let d = messy();
    let img = d.crash_image(&CrashPolicy::seeded(3));
    let survived = dump(&img);
    assert!(survived.contains_key("w/seg"));

    img.atomic_write("w/second-life", b"after the first crash")
        .unwrap();
    let mut r = img.open_region("w/seg").unwrap();
    r.write_at(100, &[0x42; 3000]).unwrap(); // never flushed
    let mut lost = img.create("w/unnamed").unwrap();
    lost.write_all(b"never synced").unwrap();

    let dropped = img.crash_image(&CrashPolicy::drop_all());
    let mut expect = survived.clone();
    expect.insert(
        "w/second-life".into(),
        Some(b"after the first crash".to_vec()),
    );
    assert_eq!(dump(&dropped), expect, "second crash, drop_all");

    let kept = dump(&img.crash_image(&CrashPolicy::keep_all()));
    assert_eq!(
        kept["w/seg"].as_deref().map(|b| &b[100..3100]),
        Some(&[0x42; 3000][..])
    );
    assert_eq!(kept["w/unnamed"].as_deref(), Some(&b"never synced"[..]));

    for policy in every_policy(32) {
        let again = dump(&img.crash_image(&policy));
        assert_eq!(
            again["w/second-life"], expect["w/second-life"],
            "{policy:?}"
        );
        for (path, content) in &survived {
            if path != "w/seg" {
                assert_eq!(again.get(path), Some(content), "{policy:?}: {path}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Nothing outside unsynced ranges ever changes: a random workload checked
// against a byte-level model.

/// What a file should look like after a crash, byte by byte.
#[derive(Debug, Default, Clone)]
struct ModelFile {
    /// What reads see.
    data: Vec<u8>,
    /// What the disk holds.
    durable: Vec<u8>,
    /// Per byte: values written since the last barrier that covered it.
    pending: Vec<Vec<u8>>,
    /// Per byte: values whose barrier failed (never durable, maybe on disk).
    limbo: Vec<Vec<u8>>,
}

impl ModelFile {
    fn zeroed_durable(len: usize) -> ModelFile {
        ModelFile {
            data: vec![0; len],
            durable: vec![0; len],
            pending: vec![Vec::new(); len],
            limbo: vec![Vec::new(); len],
        }
    }

    fn write(&mut self, off: usize, bytes: &[u8]) {
        let end = off + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
            self.pending.resize(end, Vec::new());
            self.limbo.resize(end, Vec::new());
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.data[off + i] = b;
            self.pending[off + i].push(b);
        }
    }

    fn truncate(&mut self, len: usize) {
        self.data.truncate(len);
        self.pending.truncate(len);
        self.limbo.truncate(len);
    }

    /// The page span a region barrier over `off..off+len` covers.
    fn pages(&self, off: usize, len: usize) -> (usize, usize) {
        let a = off / PAGE * PAGE;
        let b = (off + len).div_ceil(PAGE) * PAGE;
        (a.min(self.data.len()), b.min(self.data.len()))
    }

    /// A successful barrier over `a..b` (and the length).
    fn barrier_ok(&mut self, a: usize, b: usize) {
        self.durable.resize(self.data.len(), 0);
        for p in a..b {
            if !self.pending[p].is_empty() {
                self.durable[p] = self.data[p];
                self.pending[p].clear();
                // A newer durable write supersedes the limbo ones.
                self.limbo[p].clear();
            } else if self.limbo[p].is_empty() {
                self.durable[p] = self.data[p];
            }
            // else: only limbo writes here; the disk keeps its old byte.
        }
    }

    fn barrier_failed(&mut self, a: usize, b: usize) {
        for p in a..b {
            let moved = std::mem::take(&mut self.pending[p]);
            self.limbo[p].extend(moved);
        }
    }

    fn check(&self, img: &[u8], what: &str) {
        assert!(
            img.len() == self.durable.len() || img.len() == self.data.len(),
            "{what}: length {} is neither durable {} nor written {}",
            img.len(),
            self.durable.len(),
            self.data.len()
        );
        for (p, &got) in img.iter().enumerate() {
            let durable = self.durable.get(p).copied().unwrap_or(0);
            if got == durable {
                continue;
            }
            let written = self.pending.get(p).into_iter().chain(self.limbo.get(p));
            let ok = written.flatten().any(|&v| v == got);
            assert!(
                ok,
                "{what}: byte {p} is {got:#04x}: not durable ({durable:#04x}) nor ever written \
                 there since ({:?} pending, {:?} in limbo)",
                self.pending.get(p),
                self.limbo.get(p)
            );
        }
    }
}

#[test]
fn images_hold_only_durable_bytes_or_bytes_of_unsynced_writes() {
    const REGIONS: [(&str, usize); 2] = [("r1", 6 * PAGE), ("r2", 3 * PAGE + 100)];
    for workload in 0..24u64 {
        let mut rng = Rng(workload);
        let d = MemoryDirectory::new();
        let mut regions: Vec<Box<dyn Region>> = Vec::new();
        let mut models: Vec<ModelFile> = Vec::new();
        for (name, len) in REGIONS {
            regions.push(durable_region(&d, name, len as u64));
            models.push(ModelFile::zeroed_durable(len));
        }
        write_durable(&d, "log", b"").unwrap();
        let mut log = d.open_append("log").unwrap();
        models.push(ModelFile::default());
        let names = ["r1", "r2", "log"];
        let mut tag = 0u8;

        for op in 0..150 {
            tag = tag.wrapping_add(1);
            let which = rng.below(2) as usize;
            let size = REGIONS[which].1;
            match rng.below(12) {
                0..=3 => {
                    let off = rng.below(size as u64) as usize;
                    let max = if rng.below(4) == 0 { 6000 } else { 700 };
                    let len = 1 + rng.below(max.min(size - off) as u64) as usize;
                    let bytes = pattern(len, tag);
                    regions[which].write_at(off as u64, &bytes).unwrap();
                    models[which].write(off, &bytes);
                }
                4 | 5 => {
                    let off = rng.below(size as u64) as usize;
                    let len = 1 + rng.below((size - off) as u64) as usize;
                    let fail = rng.below(4) == 0;
                    if fail {
                        d.inject(Fault::eio().on(OpKind::FlushRange));
                    }
                    let res = regions[which].flush_range(off as u64, len as u64);
                    let (a, b) = models[which].pages(off, len);
                    if fail {
                        assert!(res.is_err());
                        models[which].barrier_failed(a, b);
                    } else {
                        res.unwrap();
                        models[which].barrier_ok(a, b);
                    }
                }
                6 => {
                    let fail = rng.below(3) == 0;
                    if fail {
                        d.inject(Fault::eio().on(OpKind::SyncFile));
                    }
                    let res = d.sync_file(names[which]);
                    assert_eq!(res.is_err(), fail);
                    if fail {
                        models[which].barrier_failed(0, size);
                    } else {
                        models[which].barrier_ok(0, size);
                    }
                }
                7 | 8 => {
                    let bytes = pattern(1 + rng.below(1500) as usize, tag);
                    let end = models[2].data.len();
                    log.write_all(&bytes).unwrap();
                    models[2].write(end, &bytes);
                }
                9 | 10 => {
                    let fail = rng.below(3) == 0;
                    if fail {
                        d.inject(Fault::eio().on(OpKind::SyncFile));
                    }
                    assert_eq!(log.sync().is_err(), fail);
                    let len = models[2].data.len();
                    if fail {
                        models[2].barrier_failed(0, len);
                    } else {
                        models[2].barrier_ok(0, len);
                    }
                }
                _ => {
                    let len = rng.below(models[2].data.len() as u64 + 1) as usize;
                    d.truncate("log", len as u64).unwrap();
                    models[2].truncate(len);
                }
            }
            // The model and the directory agree on what reads see.
            for (name, m) in names.iter().zip(&models) {
                assert_eq!(d.read(name).unwrap(), m.data, "workload {workload} op {op}");
            }
            if op % 5 != 4 {
                continue;
            }
            for (name, m) in names.iter().zip(&models) {
                assert_eq!(
                    d.durable_bytes(name).unwrap(),
                    m.durable,
                    "workload {workload} op {op}: durable bytes of {name}"
                );
            }
            for policy in every_policy(6) {
                let img = d.crash_image(&policy);
                for (name, m) in names.iter().zip(&models) {
                    let got = img.read(name).unwrap();
                    let what = format!("workload {workload} op {op} {policy:?} {name}");
                    m.check(&got, &what);
                    if policy == CrashPolicy::drop_all() {
                        assert_eq!(got, m.durable, "{what}: drop_all is the durable state");
                    }
                    if policy == CrashPolicy::keep_all() {
                        assert_eq!(got, m.data, "{what}: keep_all is the written state");
                    }
                }
            }
        }
    }
}

fn dump_of(files: &[(&str, &[u8])]) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    files
        .iter()
        .map(|(p, b)| (p.to_string(), Some(b.to_vec())))
        .collect()
}
