//! The volumes duty on real file systems (ext4 under /var/tmp, a private tmpfs), as root:
//! symlinks and hard links to outside files, nested mounts, sockets, FIFOs, device nodes,
//! foreign owners, a directory swapped for a symlink during the walk, cancellation, unsafe
//! top paths and tenant mappings.

mod common;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Scratch, Tmpfs, chmod, config, mount_tmpfs, run};
use nonrootd::ids::SystemIds;
use nonrootd::volumes::{Options, Walked, apply, walk_volume};
use nonrootd_core::config::Config;
use nonrootd_core::report::Outcome;
use nonrootd_core::volumes::Skip;

/// A root-owned 0700 directory under /var/tmp (ext4 here), removed on drop.
fn disk() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nonrootd-volumes-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn mknod(path: &Path, mode: u32, dev: u64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mknod(2) reads it only.
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), mode, dev) }, 0, "mknod {path:?}");
}

/// The walk of the first volume, never cancelled.
fn walk_to_the_end(config: &Config) -> Walked {
    walk_volume(
        &config.volumes[0],
        config,
        &SystemIds,
        &options(&AtomicBool::new(false)),
    )
    .unwrap()
}

fn volume_config(path: &Path, extra: &str) -> Config {
    config(&format!(
        "[[volume]]\npath = \"{}\"\nuid = 999\ngid = 999\n{extra}",
        path.display()
    ))
}

fn options(cancel: &AtomicBool) -> Options<'_> {
    Options {
        check_only: false,
        cancel,
        progress: false,
        daemon_json: Path::new("/nonexistent/daemon.json"),
    }
}

/// Builds the usual trouble inside `vol`, with targets in `outside`; returns the paths that
/// must keep root as owner, and the tmpfs mounted inside.
fn build_tree(vol: &Path, outside: &Path) -> (Vec<PathBuf>, Tmpfs) {
    std::fs::create_dir_all(vol.join("data/deep/er")).unwrap();
    std::fs::create_dir_all(outside).unwrap();
    for i in 0..50 {
        std::fs::write(vol.join(format!("data/f{i}")), "x").unwrap();
    }
    std::fs::write(vol.join("data/deep/er/g"), "y").unwrap();
    std::fs::write(vol.join("foreign"), "z").unwrap();
    lchown(&vol.join("foreign"), 1234, 4321);
    let secret = outside.join("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::create_dir(outside.join("dir")).unwrap();
    symlink(&secret, vol.join("link-to-secret")).unwrap();
    symlink(outside.join("dir"), vol.join("link-to-dir")).unwrap();
    std::fs::hard_link(&secret, vol.join("hardlink-to-secret")).unwrap();
    run("mkfifo", &[vol.join("fifo").to_str().unwrap()]);
    let _socket = UnixListener::bind(vol.join("sock")).unwrap();
    mknod(&vol.join("null-dev"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    // A tmpfs mounted inside the volume: never crossed.
    let mnt = vol.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let inner = mount_tmpfs(&mnt, "nonrootd-inner");
    std::fs::write(mnt.join("inner"), "i").unwrap();
    let untouched = vec![
        secret,
        outside.join("dir"),
        vol.join("hardlink-to-secret"),
        vol.join("null-dev"),
        mnt.clone(),
        mnt.join("inner"),
    ];
    (untouched, inner)
}

fn check_tree(base: &Path) {
    let vol = base.join("vol");
    let (untouched, _inner) = build_tree(&vol, &base.join("outside"));
    let config = volume_config(&vol, "mode = \"0750\"\n");
    let cancel = AtomicBool::new(false);
    let first = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
    let s = &first.summary;
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(s.skipped.get(&Skip::HardLinks), Some(&1), "{s:?}");
    assert_eq!(s.skipped.get(&Skip::OtherFilesystem), Some(&1), "{s:?}");
    assert_eq!(s.skipped.get(&Skip::Device), Some(&1), "{s:?}");
    // vol, data, deep, er, 50 + 1 files, foreign, 2 symlinks, fifo, socket.
    assert_eq!(s.changed, 4 + 51 + 1 + 2 + 2, "{s:?}");
    assert_eq!(first.mode_change.map(|(_, to)| to.bits()), Some(0o750));
    for path in [
        "",
        "data",
        "data/deep/er/g",
        "foreign",
        "link-to-secret",
        "link-to-dir",
        "fifo",
        "sock",
    ] {
        assert_eq!(owner(&vol.join(path)), (999, 999), "{path}");
    }
    assert_eq!(common::mode_of(&vol), 0o750);
    for path in &untouched {
        assert_eq!(owner(path), (0, 0), "{path:?} changed owner");
    }
    let second = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
    assert_eq!(second.summary.changed, 0, "{:?}", second.summary);
    assert_eq!(second.summary.seen, s.seen);
    assert_eq!(second.mode_change, None);
    let report = apply(&config, &SystemIds, &options(&cancel));
    assert_eq!(report.entries[0].outcome, Outcome::Correct);
    assert_eq!(report.entries[0].desired, "owner 999:999, mode 0750");
}

#[test]
fn an_ext4_tree_is_owned_and_nothing_outside_or_below_a_mount_changes() {
    let dir = disk();
    check_tree(dir.path());
}

#[test]
fn a_tmpfs_tree_is_owned_and_nothing_outside_or_below_a_mount_changes() {
    let scratch = Scratch::tmpfs();
    check_tree(scratch.path());
}

#[test]
fn the_report_says_how_many_changed_and_why_some_were_skipped() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("a"), "").unwrap();
    std::fs::write(dir.path().join("target"), "").unwrap();
    std::fs::hard_link(dir.path().join("target"), vol.join("b")).unwrap();
    let config = volume_config(&vol, "");
    let report = apply(&config, &SystemIds, &options(&AtomicBool::new(false)));
    assert_eq!(report.entries[0].desired, "owner 999:999");
    assert_eq!(
        report.entries[0].outcome,
        Outcome::Changed {
            change: "2 of 3 changed (1 skipped: 1 with hard links (e.g. b))".into()
        }
    );
}

/// A daemon.json in `dir` naming `data_root`; returns its path.
fn daemon_json(dir: &Path, data_root: &Path) -> PathBuf {
    let json = dir.join("daemon.json");
    std::fs::write(&json, format!(r#"{{"data-root": "{}"}}"#, data_root.display())).unwrap();
    json
}

/// A data root that only Docker's daemon.json names is known at run time: inside it, only a
/// named volume's data is walked (its records, such as opts.json, can make Docker mount any
/// host path).
#[test]
fn inside_the_data_root_of_daemon_json_only_a_named_volumes_data_is_walked() {
    let dir = disk();
    let root = dir.path().join("docker");
    let data = root.join("volumes/db/_data");
    std::fs::create_dir_all(&data).unwrap();
    let opts = root.join("volumes/db/opts.json");
    std::fs::write(&opts, "{}").unwrap();
    let json = daemon_json(dir.path(), &root);
    let cancel = AtomicBool::new(false);
    let options = Options {
        daemon_json: &json,
        ..options(&cancel)
    };
    for records in [root.join("volumes/db"), root.join("volumes"), root.clone()] {
        let report = apply(&volume_config(&records, ""), &SystemIds, &options);
        match &report.entries[0].outcome {
            Outcome::Refused { reason } => assert!(
                reason.contains(&format!("Docker's data root {}", root.display())),
                "{reason}"
            ),
            other => panic!("{}: {other:?}", records.display()),
        }
    }
    assert_eq!(owner(&opts), (0, 0));
    let report = apply(&volume_config(&data, ""), &SystemIds, &options);
    assert!(
        matches!(report.entries[0].outcome, Outcome::Changed { .. }),
        "{:?}",
        report.entries[0].outcome
    );
    assert_eq!(owner(&data), (999, 999));
    assert_eq!(owner(&opts), (0, 0));
    // A daemon.json that is not understood leaves the data root unknown: nothing is walked.
    std::fs::write(&json, r#"{"data-root": "docker"}"#).unwrap();
    std::os::unix::fs::chown(&data, Some(0), Some(0)).unwrap();
    let report = apply(&volume_config(&data, ""), &SystemIds, &options);
    assert!(
        matches!(&report.entries[0].outcome, Outcome::Failed { error } if error.ends_with("not an absolute path, so Docker's data root is unknown")),
        "{:?}",
        report.entries[0].outcome
    );
    assert_eq!(owner(&data), (0, 0));
}

/// The data root's rules hold by identity: daemon.json names it through a symlink (or a bind
/// mount makes another path for it), and a volume named by the other path is judged as inside
/// it all the same, as is one that holds it.
#[test]
fn a_data_root_reached_by_another_path_is_still_a_data_root() {
    let dir = disk();
    let real = dir.path().join("apps/docker");
    std::fs::create_dir_all(real.join("volumes/db/_data")).unwrap();
    std::fs::write(real.join("volumes/db/opts.json"), "{}").unwrap();
    let link = dir.path().join("docker-link");
    symlink(&real, &link).unwrap();
    let json = daemon_json(dir.path(), &link);
    let cancel = AtomicBool::new(false);
    let options = Options {
        daemon_json: &json,
        ..options(&cancel)
    };
    let outcome = |path: &Path| {
        apply(&volume_config(path, ""), &SystemIds, &options).entries[0]
            .outcome
            .clone()
    };
    for records in [real.join("volumes/db"), real.clone(), dir.path().join("apps")] {
        match outcome(&records) {
            Outcome::Refused { reason } => {
                assert!(reason.contains(&format!("data root {}", link.display())), "{reason}")
            }
            other => panic!("{}: {other:?}", records.display()),
        }
    }
    assert_eq!(owner(&real.join("volumes/db/opts.json")), (0, 0));
    assert!(matches!(
        outcome(&real.join("volumes/db/_data")),
        Outcome::Changed { .. }
    ));
    assert_eq!(owner(&real.join("volumes/db/_data")), (999, 999));
}

/// FIFOs, sockets and symlinks of root's hard-linked into a volume (which
/// fs.protected_hardlinks=0 lets any user do) are left alone like hard-linked regular files, and
/// the walk counts them as skipped.
#[test]
fn hard_links_of_every_kind_are_left_alone() {
    let dir = disk();
    let (vol, outside) = (dir.path().join("vol"), dir.path().join("outside"));
    std::fs::create_dir(&vol).unwrap();
    std::fs::create_dir(&outside).unwrap();
    lchown(&vol, 999, 999);
    run("mkfifo", &[outside.join("fifo").to_str().unwrap()]);
    let _socket = UnixListener::bind(outside.join("sock")).unwrap();
    symlink("/etc/shadow", outside.join("symlink")).unwrap();
    for name in ["fifo", "sock", "symlink"] {
        // linkat without AT_SYMLINK_FOLLOW: a second name for the symlink itself.
        std::fs::hard_link(outside.join(name), vol.join(name)).unwrap();
        assert_eq!(std::fs::symlink_metadata(vol.join(name)).unwrap().nlink(), 2, "{name}");
    }
    let config = volume_config(&vol, "");
    let walked = walk_to_the_end(&config);
    for name in ["fifo", "sock", "symlink"] {
        assert_eq!(owner(&outside.join(name)), (0, 0), "{name} changed owner");
    }
    assert!(std::fs::symlink_metadata(vol.join("symlink")).unwrap().is_symlink());
    let told = walked.summary.describe("changed");
    assert!(
        told.starts_with("0 of 4 changed (3 skipped: 3 with hard links (e.g. "),
        "{told}"
    );
}

/// A failure after the walk (the top's chmod, refused on an immutable directory) keeps what the
/// walk did in the report.
#[test]
fn a_failure_at_the_top_after_the_walk_keeps_what_the_walk_did() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("a"), "").unwrap();
    std::fs::write(vol.join("b"), "").unwrap();
    lchown(&vol, 999, 999);
    chmod(&vol, 0o755);
    let config = volume_config(&vol, "mode = \"0750\"\n");
    run("chattr", &["+i", vol.to_str().unwrap()]);
    let report = apply(&config, &SystemIds, &options(&AtomicBool::new(false)));
    run("chattr", &["-i", vol.to_str().unwrap()]);
    assert_eq!(
        report.entries[0].outcome,
        Outcome::Failed {
            error: "2 of 3 changed; 1 failed, first .: chmod: EPERM: Operation not permitted".into()
        }
    );
    assert_eq!(owner(&vol.join("a")), (999, 999));
}

#[test]
fn wide_and_deep_trees_are_walked_completely() {
    let dir = disk();
    let vol = dir.path().join("vol");
    for i in 0..600 {
        std::fs::create_dir_all(vol.join(format!("w{i}"))).unwrap();
        std::fs::write(vol.join(format!("w{i}/f")), "").unwrap();
    }
    // Far deeper than a thread descends itself while the queue is full (32 levels).
    let mut deep = vol.join("deep");
    for _ in 0..1000 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), "").unwrap();
    let config = volume_config(&vol, "");
    let walked = walk_to_the_end(&config);
    assert_eq!(walked.summary.changed, 1 + 1200 + 1001 + 1, "{:?}", walked.summary);
    assert_eq!(owner(&deep.join("bottom")), (999, 999));
}

#[test]
fn a_cancelled_walk_stops_and_says_so() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(vol.join("a/b")).unwrap();
    std::fs::write(vol.join("a/b/f"), "").unwrap();
    let config = volume_config(&vol, "");
    let cancel = AtomicBool::new(true);
    let report = apply(&config, &SystemIds, &options(&cancel));
    assert!(
        matches!(&report.entries[0].outcome, Outcome::Failed { error } if error.contains("cancelled")),
        "{report}"
    );
    assert_eq!(owner(&vol.join("a/b/f")), (0, 0));
    cancel.store(false, Ordering::Relaxed);
    let walked = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
    assert!(!walked.summary.cancelled);
    assert_eq!(owner(&vol.join("a/b/f")), (999, 999));
}

#[test]
fn a_symlink_top_or_an_unsafe_parent_is_refused() {
    let dir = disk();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    symlink(&real, dir.path().join("link")).unwrap();
    let user_dir = dir.path().join("users");
    std::fs::create_dir_all(user_dir.join("vol")).unwrap();
    lchown(&user_dir, 1000, 1000);
    let open_dir = dir.path().join("open");
    std::fs::create_dir_all(open_dir.join("vol")).unwrap();
    chmod(&open_dir, 0o777);
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let cancel = AtomicBool::new(false);
    for (top, why) in [
        (dir.path().join("link"), "is a symlink"),
        (user_dir.join("vol"), "directory owned by uid 1000"),
        (open_dir.join("vol"), "lets others write"),
        (file, "expected a directory"),
    ] {
        let config = volume_config(&top, "");
        let report = apply(&config, &SystemIds, &options(&cancel));
        match &report.entries[0].outcome {
            Outcome::Refused { reason } => assert!(reason.contains(why), "{top:?}: {reason}"),
            other => panic!("{top:?}: {other:?}"),
        }
    }
    assert_eq!(owner(&real), (0, 0));
    let missing = volume_config(&dir.path().join("nope"), "");
    assert_eq!(
        apply(&missing, &SystemIds, &options(&cancel)).entries[0].outcome,
        Outcome::Missing
    );
}

/// renameat2(RENAME_EXCHANGE) of two names in one directory.
fn exchange(dir: &Path, a: &str, b: &str) {
    let dir = File::open(dir).unwrap();
    exchange_in(&dir, &CString::new(a).unwrap(), &CString::new(b).unwrap());
}

/// renameat2(RENAME_EXCHANGE) of two names in an open directory.
fn exchange_in(dir: &File, a: &CStr, b: &CStr) {
    let fd = dir.as_raw_fd();
    // SAFETY: NUL-terminated names and an open directory descriptor; renameat2(2) only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            fd,
            a.as_ptr(),
            fd,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
}

#[test]
fn a_directory_swapped_for_a_symlink_during_the_walk_never_leads_outside() {
    let dir = disk();
    let (vol, outside) = (dir.path().join("vol"), dir.path().join("outside"));
    std::fs::create_dir_all(vol.join("d/sub")).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    for i in 0..20 {
        std::fs::write(vol.join(format!("d/f{i}")), "").unwrap();
        std::fs::write(vol.join(format!("d/sub/f{i}")), "").unwrap();
        std::fs::write(outside.join(format!("f{i}")), "").unwrap();
        std::fs::write(outside.join(format!("sub/f{i}")), "").unwrap();
    }
    std::fs::write(vol.join("file"), "").unwrap();
    symlink(&outside, vol.join("s")).unwrap();
    symlink(outside.join("f0"), vol.join("t")).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                exchange(&vol, "d", "s");
                exchange(&vol, "file", "t");
            }
        });
        let cancel = AtomicBool::new(false);
        for round in 0..3000u32 {
            // Alternate the owner so that every round has something to change.
            let id = 900 + round % 2;
            let config = config(&format!(
                "[[volume]]\npath = \"{}\"\nuid = {id}\ngid = {id}\n",
                vol.display()
            ));
            let walked = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
            assert_eq!(walked.summary.failed, 0, "{:?}", walked.summary);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let walk = run("find", &[outside.to_str().unwrap(), "-not", "-user", "0"]);
    assert_eq!(walk, "", "files outside the volume changed owner");
    let walk = run("find", &[outside.to_str().unwrap(), "-not", "-group", "0"]);
    assert_eq!(walk, "");
}

/// `[subids]` pointing at temp files, and a tenant by uid (no NSS entry needed).
fn tenant_config(vol: &Path, files: &Path, uid: u32, gid: u32, mapping: &str, tenant: u32) -> Config {
    config(&format!(
        "[subids]\nsubuid_file = \"{f}/subuid\"\nsubgid_file = \"{f}/subgid\"\n\
         [[volume]]\npath = \"{v}\"\nuid = {uid}\ngid = {gid}\ntenant = {tenant}\nmapping = \"{mapping}\"\n",
        f = files.display(),
        v = vol.display()
    ))
}

#[test]
fn tenant_ids_are_mapped_through_the_subids_files_and_refused_outside_them() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(vol.join("x")).unwrap();
    std::fs::write(dir.path().join("subuid"), "other:100000:65536\n4242:200000:65536\n").unwrap();
    std::fs::write(dir.path().join("subgid"), "4242:300000:1000\n").unwrap();
    let cancel = AtomicBool::new(false);
    let walk = |config: &Config| walk_volume(&config.volumes[0], config, &SystemIds, &options(&cancel));

    let remap = tenant_config(&vol, dir.path(), 999, 999, "remap", 4242);
    let walked = walk(&remap).unwrap();
    assert_eq!(walked.owner.to_string(), "200999:300999");
    assert_eq!(walked.desired, "owner 200999:300999 = 999:999 of 4242 (remap)");
    assert_eq!(owner(&vol.join("x")), (200999, 300999));

    let rootless = tenant_config(&vol, dir.path(), 0, 1, "rootless", 4242);
    assert_eq!(walk(&rootless).unwrap().owner.to_string(), "4242:300000");
    assert_eq!(owner(&vol.join("x")), (4242, 300000));

    let outside = tenant_config(&vol, dir.path(), 999, 1000, "remap", 4242);
    let not = walk(&outside).unwrap_err();
    let Outcome::Refused { reason } = &not.outcome else {
        panic!("{not}")
    };
    assert!(
        reason.contains("subgid: id 1000 is outside its 1000 subordinate ids"),
        "{reason}"
    );
    let no_range = tenant_config(&vol, dir.path(), 1, 1, "remap", 4343);
    let not = walk(&no_range).unwrap_err();
    assert!(not.to_string().contains("tenant 4343"), "{not}");
    assert!(not.to_string().contains("has no subordinate range"), "{not}");
    assert_eq!(owner(&vol.join("x")), (4242, 300000), "a refused volume is not touched");
}

/// A subids file that cannot be read is a failure (worth trying again), not a refusal.
#[test]
fn an_unreadable_subids_file_fails_the_tenant_volume() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(dir.path().join("subuid"), "4242:200000:65536\n").unwrap();
    std::fs::create_dir(dir.path().join("subgid")).unwrap();
    let config = tenant_config(&vol, dir.path(), 999, 999, "remap", 4242);
    let cancel = AtomicBool::new(false);
    let not = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap_err();
    assert!(
        matches!(&not.outcome, Outcome::Failed { error } if error.contains("subgid")),
        "{not}"
    );
    assert_eq!(owner(&vol), (0, 0));
}

/// A directory re-owned while it is walked (as another walk of it does when it ends) lets its
/// new owner swap names, here its last entry for a hard link to an outside file (with
/// fs.protected_hardlinks=0). The walk re-owns what it judged, never what a name leads to.
#[test]
fn a_name_swapped_for_a_hard_link_during_the_walk_is_never_re_owned() {
    let dir = disk();
    let (vol, d, secret) = (
        dir.path().join("vol"),
        dir.path().join("vol/d"),
        dir.path().join("secret"),
    );
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(&secret, "s").unwrap();
    std::fs::hard_link(&secret, d.join("link")).unwrap();
    for i in 0..500 {
        std::fs::write(d.join(format!("f{i}")), "").unwrap();
    }
    // In the walk's (getdents) order: re-owning the first entry starts the "tenant", which
    // swaps the last one.
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| !path.ends_with("link"))
        .collect();
    let (first, last) = (entries[0].clone(), entries[entries.len() - 1].clone());
    let last_name = CString::new(last.file_name().unwrap().as_bytes()).unwrap();
    let secret_ino = std::fs::metadata(&secret).unwrap().ino();
    entries.extend([vol.clone(), d.clone()]);
    let config = volume_config(&vol, "");
    let cancel = AtomicBool::new(false);
    for round in 0..150 {
        for path in &entries {
            lchown(path, 0, 0);
        }
        let walking = AtomicBool::new(true);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while walking.load(Ordering::Relaxed) && owner(&first).0 != 999 {
                    std::hint::spin_loop();
                }
                lchown(&d, 999, 999);
                let open = File::open(&d).unwrap();
                while walking.load(Ordering::Relaxed) {
                    exchange_in(&open, &last_name, c"link");
                }
            });
            let walked = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
            walking.store(false, Ordering::Relaxed);
            assert_eq!(walked.summary.failed, 0, "{:?}", walked.summary);
        });
        if std::fs::symlink_metadata(&last).unwrap().ino() == secret_ino {
            exchange(&d, last.file_name().unwrap().to_str().unwrap(), "link");
        }
        assert_eq!(owner(&secret), (0, 0), "round {round}: re-owned through a swapped name");
    }
}

/// A bindfs FUSE mount served by a child of the test. On drop the server is killed, a stopped
/// one too (which fails whatever waits for it), and the mount detached.
struct Fuse {
    server: Child,
    mnt: PathBuf,
}

impl Fuse {
    /// Mounted by root, or recorded as mounted by `user` (bindfs run with that real uid and
    /// root's effective one, as fusermount would record it for that user); with
    /// `allow_other`, or refusing everyone but that user (root too).
    fn mount(src: &Path, mnt: &Path, user: Option<u32>, allow_other: bool) -> Fuse {
        let mut cmd = match user {
            Some(uid) => {
                let mut cmd = Command::new("setpriv");
                cmd.args(["--ruid", &uid.to_string(), "bindfs"]);
                cmd
            }
            None => Command::new("bindfs"),
        };
        let server = cmd
            .args(["-f"])
            .args(if allow_other {
                &["-o", "allow_other"][..]
            } else {
                &["--no-allow-other"][..]
            })
            .args([src, mnt])
            .spawn()
            .expect("bindfs (scripts/install-deps installs it)");
        let fuse = Fuse {
            server,
            mnt: mnt.to_path_buf(),
        };
        let mounted = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .any(|line| line.split(' ').nth(4) == mnt.to_str())
        };
        for _ in 0..1000 {
            if mounted() {
                return fuse;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("bindfs did not mount {mnt:?}");
    }

    /// From now on the server answers nothing.
    fn stop(&self) {
        let pid = i32::try_from(self.server.id()).unwrap();
        // SAFETY: kill(2) with the pid of our own child, not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// A FUSE file system mounted inside the volume (as its owner may, with fusermount) whose
/// server no longer answers: the walk skips the mount point without asking it anything. Before,
/// opening the mount point waited for the server forever, and a server that refuses root (FUSE
/// without allow_other) failed every walk.
#[test]
fn a_fuse_mount_inside_is_skipped_without_asking_its_server() {
    let dir = disk();
    let (vol, src) = (dir.path().join("vol"), dir.path().join("src"));
    let mnt = vol.join("fuse");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("inner"), "i").unwrap();
    std::fs::write(vol.join("f"), "f").unwrap();
    let fuse = Fuse::mount(&src, &mnt, None, true);
    // Past bindfs's attribute timeout: a plain stat would ask the server again.
    std::thread::sleep(Duration::from_millis(1100));
    fuse.stop();
    let Some(walked) = walk_within_20s(&vol) else {
        drop(fuse);
        panic!("the walk waited for the stopped FUSE server");
    };
    drop(fuse);
    let s = &walked.unwrap().summary;
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(s.skipped.get(&Skip::OtherFilesystem), Some(&1), "{s:?}");
    assert_eq!(
        s.skip_examples.get(&Skip::OtherFilesystem).map(PathBuf::as_path),
        Some(Path::new("fuse"))
    );
    assert_eq!(owner(&vol.join("f")), (999, 999));
    assert_eq!(owner(&src.join("inner")), (0, 0));
}

/// The volume's top itself a FUSE file system that a user mounted (fusermount lets them, on a
/// directory of theirs) whose server no longer answers: refused at once, naming the user,
/// instead of waiting for the server (as the walk did before).
#[test]
fn a_top_that_a_user_mounted_a_fuse_file_system_on_is_refused_without_asking_it() {
    let dir = disk();
    let (vol, src) = (dir.path().join("vol"), dir.path().join("src"));
    std::fs::create_dir(&vol).unwrap();
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("inner"), "i").unwrap();
    let fuse = Fuse::mount(&src, &vol, Some(4321), true);
    // Past bindfs's attribute timeout: a plain stat would ask the server again.
    std::thread::sleep(Duration::from_millis(1100));
    fuse.stop();
    let reason = refusal_of_a_stopped_fuse_top(&vol, fuse);
    assert!(
        reason.contains("is a FUSE file system that uid 4321 mounted"),
        "{reason}"
    );
    assert_eq!(owner(&src.join("inner")), (0, 0));
}

/// Why the walk of `top`, a FUSE mount whose server `fuse` is stopped, was refused; the
/// server is killed once the walk is done or has waited 20 s for it.
fn refusal_of_a_stopped_fuse_top(top: &Path, fuse: Fuse) -> String {
    let walked = walk_within_20s(top);
    drop(fuse);
    let Some(walked) = walked else {
        panic!("the walk waited for the stopped FUSE server on the top");
    };
    let Err(refused) = walked else {
        panic!("a top a user mounted FUSE on was walked")
    };
    match refused.outcome {
        Outcome::Refused { reason } => reason,
        other => panic!("{other:?}"),
    }
}

/// Walks `vol` (999:999) on another thread; `None` when it takes longer than 20 s (waiting for
/// a stopped FUSE server).
fn walk_within_20s(vol: &Path) -> Option<Result<Walked, nonrootd::volumes::NotWalked>> {
    let config = volume_config(vol, "");
    let (done, walked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cancel = AtomicBool::new(false);
        let _ = done.send(walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)));
    });
    walked.recv_timeout(Duration::from_secs(20)).ok()
}

/// FUSE file systems that refuse root (no allow_other: a user's own, as fusermount makes it)
/// with their servers stopped: one inside the volume is skipped, its root's statx answered
/// with "permission denied" and its mount found without asking it; one on the top refuses the
/// volume, naming the user. And a FUSE file bind-mounted onto a file of the volume is skipped.
#[test]
fn fuse_mounts_that_refuse_root_or_sit_on_a_file_are_told_apart_without_asking_them() {
    let dir = disk();
    let (vol, src) = (dir.path().join("vol"), dir.path().join("src"));
    std::fs::create_dir_all(vol.join("theirs")).unwrap();
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("inner"), "i").unwrap();
    std::fs::write(vol.join("f"), "f").unwrap();
    std::fs::write(vol.join("file"), "").unwrap();
    let inside = Fuse::mount(&src, &vol.join("theirs"), Some(4321), false);
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let on_file = Fuse::mount(&src, &served, None, true);
    let _file_mount = common::bind_mount(&served.join("inner"), &vol.join("file"));
    std::thread::sleep(Duration::from_millis(1100));
    inside.stop();
    on_file.stop();
    let Some(walked) = walk_within_20s(&vol) else {
        drop((inside, on_file));
        panic!("the walk waited for a stopped FUSE server");
    };
    let s = &walked.unwrap().summary;
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(s.skipped.get(&Skip::OtherFilesystem), Some(&2), "{s:?}");
    assert_eq!(owner(&vol.join("f")), (999, 999));

    // A user's FUSE mount (on an empty directory, as fusermount wants it) as the top.
    let top = dir.path().join("top");
    std::fs::create_dir(&top).unwrap();
    let on_top = Fuse::mount(&src, &top, Some(4321), false);
    on_top.stop();
    let reason = refusal_of_a_stopped_fuse_top(&top, on_top);
    assert!(
        reason.contains("is a FUSE file system that uid 4321 mounted"),
        "{reason}"
    );
    assert_eq!(owner(&src.join("inner")), (0, 0));
}

/// Many chains deeper than a thread descends while the queue is full: the directories it
/// cannot hold open are opened again from the top later, and the walk is complete.
#[test]
fn many_deep_chains_are_walked_completely() {
    let dir = disk();
    let vol = dir.path().join("vol");
    for i in 0..300 {
        let mut chain = vol.join(format!("c{i}"));
        for _ in 0..40 {
            chain.push("d");
        }
        std::fs::create_dir_all(&chain).unwrap();
        std::fs::write(chain.join("f"), "").unwrap();
    }
    let walked = walk_to_the_end(&volume_config(&vol, ""));
    let s = &walked.summary;
    assert_eq!((s.failed, s.skipped_total()), (0, 0), "{s:?}");
    assert_eq!(s.changed, 1 + 300 * 42, "{s:?}");
}

/// A top directory with an extended ACL does not get the configured mode: its group bits are
/// the ACL's mask there, so a mode could give a named entry access.
#[test]
fn a_top_directory_with_an_extended_acl_keeps_its_mode() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    common::run("setfacl", &["-m", "u:4321:rwx", vol.to_str().unwrap()]);
    common::run("chmod", &["0700", vol.to_str().unwrap()]);
    let config = volume_config(&vol, "mode = \"0750\"\n");
    let cancel = AtomicBool::new(false);
    let walked = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
    let failure = walked.summary.first_failure.unwrap();
    assert!(
        failure.contains("has an extended ACL (user::rwx,user:4321:rwx,group::r-x,mask::---,other::---)"),
        "{failure}"
    );
    assert_eq!(common::mode_of(&vol), 0o700);
    assert_eq!(owner(&vol), (999, 999), "re-owned all the same");
}

/// A set-gid top directory (a shared volume) keeps that bit: `mode` is compared without it,
/// and when the other bits differ the top is left as it is, since the unit may not set it again.
#[test]
fn a_set_gid_top_directory_keeps_its_bit() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let cancel = AtomicBool::new(false);
    let config = volume_config(&vol, "mode = \"0770\"\n");
    common::run("chmod", &["2770", vol.to_str().unwrap()]);
    let walked = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
    assert_eq!((walked.mode_change, walked.summary.failed), (None, 0));
    assert_eq!(common::mode_of(&vol), 0o2770);
    common::run("chmod", &["2700", vol.to_str().unwrap()]);
    let walked = walk_volume(&config.volumes[0], &config, &SystemIds, &options(&cancel)).unwrap();
    let failure = walked.summary.first_failure.unwrap();
    assert_eq!(
        failure,
        ".: top mode 2700, wanted 0770: a chmod would drop its set-id bits, which nonrootd may not set again; chmod 2770 it by hand"
    );
    assert_eq!(common::mode_of(&vol), 0o2700);
    assert_eq!(owner(&vol), (999, 999), "re-owned all the same");
}

/// A user database that cannot answer.
struct Down;

impl nonrootd_core::ids::IdResolver for Down {
    fn user(&self, _: &str) -> Result<Option<nonrootd_core::ids::Uid>, String> {
        Err("Input/output error".into())
    }
    fn group(&self, _: &str) -> Result<Option<nonrootd_core::ids::Gid>, String> {
        Err("Input/output error".into())
    }
}

/// A tenant whose name cannot be looked up now is a failure (worth trying again), not a
/// refusal, and nothing is walked.
#[test]
fn a_tenant_whose_lookup_fails_is_failed_and_not_walked() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let config = volume_config(&vol, "tenant = \"acme\"\nmapping = \"remap\"\n");
    let report = apply(&config, &Down, &options(&AtomicBool::new(false)));
    assert!(
        matches!(&report.entries[0].outcome, Outcome::Failed { error } if error.ends_with("tenant \"acme\": looking up user \"acme\" failed: Input/output error")),
        "{:?}",
        report.entries[0].outcome
    );
    assert_eq!(owner(&vol), (0, 0));
}

/// `volumes check` counts what a walk leaves not owned (hard-linked files, device nodes) and
/// exits 1: the container cannot use them either.
#[test]
fn volumes_check_fails_on_files_a_walk_leaves_not_owned() {
    let dir = disk();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("a"), "").unwrap();
    std::fs::hard_link(vol.join("a"), vol.join("b")).unwrap();
    lchown(&vol, 999, 999);
    let config = dir.path().join("nonrootd.toml");
    std::fs::write(
        &config,
        format!("[[volume]]\npath = \"{}\"\nuid = 999\ngid = 999\n", vol.display()),
    )
    .unwrap();
    chmod(&config, 0o644);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nonrootctl"))
        .args(["--config", config.to_str().unwrap(), "volumes", "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(": 0 of 3 not owned by 999:999 (2 skipped: 2 with hard links (e.g. ")
            && stdout.contains("; 2 skipped not owned by 999:999 either: "),
        "{stdout}"
    );
    assert_eq!(owner(&vol.join("a")), (0, 0));
}
