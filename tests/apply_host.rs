//! `apply` against real files, ACLs and sockets, on ext4 and tmpfs.

mod common;

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use common::*;
use nonrootd::host::RealHost;
use nonrootd_core::duty::DutySet;
use nonrootd_core::report::Outcome;

fn docker_config(root: &Path) -> String {
    format!("[docker]\ndata_root = \"{}\"\n", root.display())
}

fn socket_config(path: &Path, users: &str) -> String {
    format!("[[socket]]\npath = \"{}\"\nusers = [{users}]\n", path.display())
}

fn each_duty_applied_and_read_back(scratch: &Scratch, host: &RealHost) {
    let data = scratch.mkdir("docker", 0o710);
    for dir in ["image", "image/overlay2", "image/overlay2/layerdb"] {
        scratch.mkdir(&format!("docker/{dir}"), 0o700);
    }
    let run_dir = scratch.mkdir("run", 0o755);
    let sock = run_dir.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let tables = scratch.mkdir("dmi", 0o755);
    for name in ["DMI", "smbios_entry_point"] {
        std::fs::write(tables.join(name), b"_SM3_").unwrap();
        chmod(&tables.join(name), 0o400);
    }
    let text = format!(
        "{}{}[dmi]\ntables_dir = \"{}\"\ngroup = \"adm\"\n",
        docker_config(&data),
        socket_config(&sock, "4321"),
        tables.display()
    );
    let config = config(&text);
    let state = scratch.mkdir("state", 0o700);

    assert!(!can_connect_as(4321, 4321, &[], &sock), "connects before apply");
    let first = apply_with(host, &config, &state, DutySet::HOST);
    assert_eq!(labels(&first), ["changed"; 6], "{first}");
    for dir in ["image", "image/overlay2", "image/overlay2/layerdb"] {
        assert_eq!(mode_of(&data.join(dir)), 0o750, "{dir}");
    }
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:4321:rw-\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
    assert!(can_connect_as(4321, 4321, &[], &sock), "cannot connect after apply");
    assert!(!can_connect_as(4322, 4322, &[], &sock), "another uid connects");
    for name in ["DMI", "smbios_entry_point"] {
        let meta = std::fs::metadata(tables.join(name)).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o440, 0, 4), "{name}");
    }

    let second = apply_with(host, &config, &state, DutySet::HOST);
    assert_eq!(labels(&second), ["correct"; 6], "{second}");
}

#[test]
fn each_duty_on_disk_is_applied_read_back_and_idempotent() {
    each_duty_applied_and_read_back(&Scratch::disk(), &RealHost::default());
}

#[test]
fn each_duty_on_tmpfs_is_applied_read_back_and_idempotent() {
    each_duty_applied_and_read_back(&Scratch::tmpfs(), &RealHost::default());
}

#[test]
fn modes_are_set_through_proc_when_fchmodat2_is_not_used() {
    each_duty_applied_and_read_back(&Scratch::tmpfs(), &RealHost { force_proc_chmod: true });
}

#[test]
fn a_symlink_at_the_socket_path_is_refused_and_its_target_untouched() {
    let scratch = Scratch::disk();
    let canary = scratch.join("canary");
    std::fs::write(&canary, "secret").unwrap();
    chmod(&canary, 0o600);
    let sock = scratch.join("docker.sock");
    symlink(&canary, &sock).unwrap();
    let before = getfacl(&canary);
    let report = apply(&config(&socket_config(&sock, "4321")), &scratch.mkdir("state", 0o700));
    assert_eq!(labels(&report), ["refused"]);
    let Outcome::Refused { reason } = &report.entries[0].outcome else {
        unreachable!()
    };
    assert!(
        reason.ends_with("docker.sock: is a symlink; the last component is never followed"),
        "{reason}"
    );
    assert_eq!(getfacl(&canary), before);
    assert_eq!(mode_of(&canary), 0o600);
}

#[test]
fn wrong_file_types_and_hard_links_at_the_socket_path_are_refused() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let other = scratch.join("other.sock");
    let _listener = listen(&other, 0o660);
    let cases = [
        ("hardlink.sock", "has 2 hard links, expected 1"),
        ("file.sock", "is a regular file, expected a socket"),
        ("fifo.sock", "is a FIFO, expected a socket"),
        ("dir.sock", "is a directory, expected a socket"),
    ];
    std::fs::hard_link(&other, scratch.join("hardlink.sock")).unwrap();
    std::fs::write(scratch.join("file.sock"), "").unwrap();
    run("mkfifo", &[scratch.join("fifo.sock").to_str().unwrap()]);
    std::fs::create_dir(scratch.join("dir.sock")).unwrap();
    for (name, why) in cases {
        let path = scratch.join(name);
        let before = getfacl(&path);
        let report = apply(&config(&socket_config(&path, "4321")), &state);
        assert_eq!(
            report.entries[0].outcome,
            Outcome::Refused { reason: why.into() },
            "{name}"
        );
        assert_eq!(getfacl(&path), before, "{name} changed");
    }
    assert!(
        !getfacl(&other).contains("4321"),
        "the hard link's other name was changed"
    );
}

#[test]
fn an_image_dir_replaced_by_a_symlink_leaves_the_target_dir_unchanged() {
    let scratch = Scratch::disk();
    let data = scratch.mkdir("docker", 0o710);
    scratch.mkdir("docker/image", 0o700);
    let elsewhere = scratch.mkdir("elsewhere", 0o700);
    symlink(&elsewhere, data.join("image/overlay2")).unwrap();
    let text = format!(
        "{}image_dirs = [\"image\", \"image/overlay2\", \"image/overlay2/layerdb\"]\n",
        docker_config(&data)
    );
    let report = apply(&config(&text), &scratch.mkdir("state", 0o700));
    // layerdb is looked up through the root-owned link (CHASE_SAFE) and is not there.
    assert_eq!(labels(&report), ["changed", "refused", "missing"], "{report}");
    assert_eq!(mode_of(&elsewhere), 0o700);
}

/// On a directory with an extended ACL the mode's group bits are the ACL mask: a chmod to
/// 0750 would give a hidden named entry access. Such a directory is refused, left as it is.
#[test]
fn an_image_dir_with_an_extended_acl_is_refused_and_left_as_it_is() {
    for scratch in [Scratch::disk(), Scratch::tmpfs()] {
        let data = scratch.mkdir("docker", 0o710);
        let image = scratch.mkdir("docker/image", 0o700);
        run("setfacl", &["-m", "u:4321:rwx", image.to_str().unwrap()]);
        run("chmod", &["0700", image.to_str().unwrap()]);
        let before = getfacl(&image);
        assert!(before.contains("user:4321:rwx\t#effective:---"), "{before}");
        let text = format!("{}image_dirs = [\"image\"]\n", docker_config(&data));
        let report = apply(&config(&text), &scratch.mkdir("state", 0o700));
        let Outcome::Refused { reason } = &report.entries[0].outcome else {
            panic!("{report}")
        };
        assert!(
            reason.starts_with("has an extended ACL (user::rwx,user:4321:rwx,group::---,mask::---,other::---)"),
            "{reason}"
        );
        assert_eq!(getfacl(&image), before);
        // Also when its mode already looks right: the owning group has nothing.
        run("chmod", &["0750", image.to_str().unwrap()]);
        run("setfacl", &["-m", "g::---", image.to_str().unwrap()]);
        let report = apply(&config(&text), &scratch.join("state"));
        assert_eq!(labels(&report), ["refused"], "{report}");
        // Without it, the mode is set.
        run("setfacl", &["-b", image.to_str().unwrap()]);
        let report = apply(&config(&text), &scratch.join("state"));
        assert_eq!(labels(&report), ["changed"], "{report}");
        assert_eq!(mode_of(&image), 0o750);
    }
}

#[test]
fn an_image_dir_owned_by_another_user_is_refused() {
    let scratch = Scratch::tmpfs();
    let data = scratch.mkdir("docker", 0o710);
    let image = scratch.mkdir("docker/image", 0o700);
    std::os::unix::fs::chown(&image, Some(1000), None).unwrap();
    let text = format!("{}image_dirs = [\"image\"]\n", docker_config(&data));
    let report = apply(&config(&text), &scratch.mkdir("state", 0o700));
    assert_eq!(
        report.entries[0].outcome,
        Outcome::Refused {
            reason: "owned by uid 1000, expected root".into()
        }
    );
    assert_eq!(mode_of(&image), 0o700);
}

#[test]
fn unsafe_path_transitions_are_refused() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let owned = scratch.mkdir("owned", 0o755);
    std::os::unix::fs::chown(&owned, Some(1000), None).unwrap();
    let writable = scratch.mkdir("writable", 0o777);
    for dir in [&owned, &writable] {
        let sock = dir.join("docker.sock");
        let _listener = listen(&sock, 0o660);
        let report = apply(&config(&socket_config(&sock, "4321")), &state);
        let Outcome::Refused { reason } = &report.entries[0].outcome else {
            panic!("{report}")
        };
        assert!(reason.contains("unsafe path transition"), "{reason}");
        assert!(!getfacl(&sock).contains("4321"));
    }
}

/// In a sticky directory that others can write (like /tmp), root owning a file or symlink
/// does not mean root put it there: another user can rename one in from a directory of
/// their own. Only directories are taken from there.
#[test]
fn only_directories_are_taken_from_a_sticky_directory_others_can_write() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let public = scratch.mkdir("public", 0o1777);
    let victim = scratch.mkdir("victim", 0o755);
    std::fs::write(victim.join("DMI"), "").unwrap();
    std::fs::set_permissions(victim.join("DMI"), std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let dmi = |dir: &Path| {
        config(&format!(
            "[dmi]\ntables_dir = \"{}\"\nworld_readable = true\n",
            dir.display()
        ))
    };
    // A root-owned symlink in the sticky directory is not followed.
    symlink(&victim, public.join("tables")).unwrap();
    let report = apply(&dmi(&public.join("tables")), &state);
    let Outcome::Refused { reason } = &report.entries[0].outcome else {
        panic!("{report}")
    };
    assert!(
        reason.ends_with(
            "public/tables: unsafe path transition: a symlink in a directory others can write (mode 1777), where anyone could have moved it"
        ),
        "{reason}"
    );
    assert_eq!(mode_of(&victim.join("DMI")), 0o400);
    // Nor is a root-owned file in it changed.
    std::fs::remove_file(public.join("tables")).unwrap();
    std::fs::rename(victim.join("DMI"), public.join("DMI")).unwrap();
    let report = apply(&dmi(&public), &state);
    assert!(
        matches!(&report.entries[0].outcome, Outcome::Refused { reason } if reason.contains("a regular file in a directory others can write")),
        "{report}"
    );
    assert_eq!(mode_of(&public.join("DMI")), 0o400);
    // A root-owned directory below it is walked as before.
    let tables = scratch.mkdir("public/tables", 0o755);
    std::fs::rename(public.join("DMI"), tables.join("DMI")).unwrap();
    let report = apply(&dmi(&tables), &state);
    assert_eq!(labels(&report)[0], "changed", "{report}");
    assert_eq!(mode_of(&tables.join("DMI")), 0o444);
}

#[test]
fn a_root_owned_symlink_in_the_directory_part_is_followed() {
    let scratch = Scratch::tmpfs();
    let run_dir = scratch.mkdir("run", 0o755);
    scratch.mkdir("var", 0o755);
    symlink("../run", scratch.join("var/run")).unwrap();
    let sock = run_dir.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let via_link = scratch.join("var/run/docker.sock");
    let report = apply(
        &config(&socket_config(&via_link, "4321")),
        &scratch.mkdir("state", 0o700),
    );
    assert_eq!(labels(&report), ["changed"], "{report}");
    assert!(can_connect_as(4321, 4321, &[], &sock));

    // The same link owned by someone else is not followed.
    std::os::unix::fs::lchown(scratch.join("var/run"), Some(1000), None).unwrap();
    let report = apply(&config(&socket_config(&via_link, "4322")), &scratch.join("state"));
    let Outcome::Refused { reason } = &report.entries[0].outcome else {
        panic!("{report}")
    };
    assert!(
        reason.ends_with("var/run: unsafe path transition: symlink owned by uid 1000"),
        "{reason}"
    );
}

#[test]
fn grants_for_ids_no_longer_configured_are_removed_and_foreign_entries_kept() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    run("setfacl", &["-m", "u:1000:r", sock.to_str().unwrap()]);
    apply(&config(&socket_config(&sock, "1234, 4321")), &state);
    assert!(getfacl(&sock).contains("user:1234:rw-"));
    let report = apply(&config(&socket_config(&sock, "4321")), &state);
    assert_eq!(labels(&report), ["changed"]);
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:1000:r--\nuser:4321:rw-\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
    // Dropping the whole [[socket]] revokes the rest; the admin's entry stays.
    let report = apply(&config(""), &state);
    assert_eq!(report.entries[0].desired, "no grants (no longer configured)");
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:1000:r--\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
}

#[test]
fn narrowed_access_takes_back_the_bits_dropped_from_the_config() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o640);
    apply(&config(&socket_config(&sock, "4321")), &state);
    assert!(can_connect_as(4321, 4321, &[], &sock));
    let narrowed = socket_config(&sock, "4321") + "access = \"r\"\n";
    let report = apply(&config(&narrowed), &state);
    assert_eq!(labels(&report), ["changed"]);
    assert!(!can_connect_as(4321, 4321, &[], &sock), "write access kept");
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:4321:r--\ngroup::r--\nmask::r--\nother::---\n\n"
    );
    assert_eq!(labels(&apply(&config(&narrowed), &state)), ["correct"]);
}

#[test]
fn a_grant_the_record_cannot_hold_is_not_written() {
    let scratch = Scratch::disk();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    apply(&config(&socket_config(&sock, "4321")), &state);
    // Nothing can be created in the state directory: the record of a new grant cannot be saved.
    run("chattr", &["+i", state.to_str().unwrap()]);
    let report = apply(&config(&socket_config(&sock, "4321, 4322")), &state);
    run("chattr", &["-i", state.to_str().unwrap()]);
    let Outcome::Failed { error } = &report.entries[0].outcome else {
        panic!("{:?}", report.entries[0].outcome)
    };
    assert!(
        error.starts_with("not written: recording the grant first failed: "),
        "{error}"
    );
    // The record is reported unavailable too (the daemon's fixer retries on that).
    assert!(nonrootd::apply::record_unavailable(&report, &state), "{report:?}");
    assert!(!getfacl(&sock).contains("user:4322"), "{}", getfacl(&sock));
    // Once it can, the grant is made and recorded: dropping 4322 later revokes it.
    apply(&config(&socket_config(&sock, "4321, 4322")), &state);
    assert!(getfacl(&sock).contains("user:4322:rw-"));
    apply(&config(&socket_config(&sock, "4321")), &state);
    assert!(!getfacl(&sock).contains("user:4322"), "{}", getfacl(&sock));
}

#[test]
fn chmod_0600_after_the_grant_is_repaired_without_opening_the_socket_to_its_group() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    std::os::unix::fs::chown(&sock, None, Some(105)).unwrap();
    let config = config(&socket_config(&sock, "4321"));
    apply(&config, &state);
    assert!(can_connect_as(4321, 4321, &[], &sock));
    assert!(can_connect_as(2000, 2000, &[105], &sock), "group member before chmod");
    chmod(&sock, 0o600);
    assert!(!can_connect_as(4321, 4321, &[], &sock));
    let report = apply(&config, &state);
    assert_eq!(labels(&report), ["changed"]);
    assert!(can_connect_as(4321, 4321, &[], &sock), "configured uid not restored");
    assert!(
        !can_connect_as(2000, 2000, &[105], &sock),
        "a group member can connect after repair"
    );
}

#[test]
fn a_socket_bound_at_mode_0000_below_a_default_acl_is_granted_after_its_chmod() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let dir = scratch.mkdir("run", 0o755);
    run("setfacl", &["-d", "-m", "u:1000:rw", dir.to_str().unwrap()]);
    let sock = dir.join("docker.sock");
    // As Go's listeners bind: umask 0777 (mode 0000), then chown and chmod 0660. In a child,
    // as the umask is the whole process's.
    let mut listener = std::process::Command::new("python3")
        .args(["-c", "import os, socket, sys\nos.umask(0o777)\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen()\nprint(flush=True)\nsys.stdin.read()"])
        .arg(&sock)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.stdout.take().unwrap()),
        &mut String::new(),
    )
    .unwrap();
    let config = config(&socket_config(&sock, "4321"));
    assert_eq!(
        labels(&apply_after_event(&config, &state, &sock)),
        ["missing"],
        "{}",
        getfacl(&sock)
    );
    std::os::unix::fs::chown(&sock, None, Some(105)).unwrap();
    chmod(&sock, 0o660);
    assert_eq!(labels(&apply_after_event(&config, &state, &sock)), ["changed"]);
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:1000:rw-\nuser:4321:rw-\ngroup::r-x\t#effective:r--\nmask::rw-\nother::---\n\n"
    );
    assert!(can_connect_as(1000, 1000, &[], &sock), "the default ACL's user kept");
    assert!(can_connect_as(4321, 4321, &[], &sock));
    listener.kill().unwrap();
    listener.wait().unwrap();
}

#[test]
fn a_granted_socket_chmodded_0000_is_repaired_at_its_event() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let config = config(&socket_config(&sock, "4321"));
    apply(&config, &state);
    chmod(&sock, 0o000);
    assert!(!can_connect_as(4321, 4321, &[], &sock));
    // Not a new socket awaiting its creator's chmod: nonrootd's own entry is on it.
    assert_eq!(labels(&apply_after_event(&config, &state, &sock)), ["changed"]);
    assert!(can_connect_as(4321, 4321, &[], &sock));
}

/// A socket bound at `<tmp>/run/docker.sock`, and its other spelling through the symlink
/// `<tmp>/varrun`: (scratch, state directory, socket, other spelling, listener).
fn two_spellings() -> (
    Scratch,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::os::unix::net::UnixListener,
) {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let dir = scratch.mkdir("run", 0o755);
    symlink(&dir, scratch.join("varrun")).unwrap();
    let (sock, other) = (dir.join("docker.sock"), scratch.join("varrun/docker.sock"));
    let listener = listen(&sock, 0o660);
    (scratch, state, sock, other, listener)
}

#[test]
fn a_spelling_of_a_socket_dropped_from_the_config_leaves_the_other_granted() {
    let (_scratch, state, sock, other, _listener) = two_spellings();
    apply(
        &config(&(socket_config(&sock, "4321") + &socket_config(&other, "4321"))),
        &state,
    );
    // Revoked for the dropped spelling first, then granted for the one kept.
    let report = apply(&config(&socket_config(&other, "4321")), &state);
    assert_eq!(labels(&report), ["changed", "changed"], "{report:?}");
    assert!(getfacl(&sock).contains("user:4321:rw-"), "{}", getfacl(&sock));
    assert_eq!(
        labels(&apply(&config(&socket_config(&other, "4321")), &state)),
        ["correct"]
    );
}

/// Two configured spellings of one socket (drop-ins of two teams, say): the later one is
/// refused, naming the first, as two entries of one path are; the first is applied alone, so
/// neither revokes what the other granted.
#[test]
fn a_second_configured_spelling_of_one_socket_is_refused_naming_the_first() {
    let (_scratch, state, sock, other, _listener) = two_spellings();
    let both = |a: &str, b: &str| config(&(socket_config(&sock, a) + &socket_config(&other, b)));
    let report = apply(&both("4321", "4322"), &state);
    assert_eq!(labels(&report), ["changed", "refused"], "{report}");
    let Outcome::Refused { reason } = &report.entries[1].outcome else {
        panic!("{report}")
    };
    assert!(
        reason.ends_with(&format!(
            "/test/nonrootd.toml:5: the same socket as {} (configured at /test/nonrootd.toml:2); configure it once, with all its users and groups",
            sock.display()
        )),
        "{reason}"
    );
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:4321:rw-\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
    // Swapped: the first spelling's users are what the socket has, and nothing is left over.
    let report = apply(&both("4322", "4321"), &state);
    assert_eq!(labels(&report), ["changed", "refused"], "{report}");
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:4322:rw-\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
    // After an event for the second spelling alone: refused too, nothing written.
    let report = apply_after_event(&both("4322", "4321"), &state, &other);
    assert_eq!(labels(&report), ["refused"], "{report}");
    // Once there is one spelling, it is applied.
    let report = apply(&config(&socket_config(&other, "4321, 4322")), &state);
    assert!(can_connect_as(4321, 4321, &[], &sock) && can_connect_as(4322, 4322, &[], &sock));
    assert!(!labels(&report).contains(&"refused"), "{report}");
    // What it granted is not kept when it becomes the refused second spelling: the first
    // spelling takes it over and revokes what it does not want, in the same apply, also when
    // only the second spelling's event came.
    let report = apply_after_event(&both("4321", "4323"), &state, &other);
    assert_eq!(labels(&report), ["refused", "changed"], "{report}");
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:4321:rw-\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
    // And nothing is left under the second spelling: dropping the first revokes all.
    apply(&config(""), &state);
    assert_eq!(getfacl(&sock), "user::rw-\ngroup::rw-\nother::---\n\n");
}

#[test]
fn renameat2_exchange_races_never_change_the_canary() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let canary = scratch.join("canary");
    std::fs::write(&canary, "secret").unwrap();
    chmod(&canary, 0o600);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let decoy = scratch.join("decoy");
    symlink(&canary, &decoy).unwrap();
    let canary_acl = getfacl(&canary);

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, a, b) = (stop.clone(), sock.clone(), decoy.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &a,
                    nix::fcntl::AT_FDCWD,
                    &b,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let config = config(&socket_config(&sock, "4321"));
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..3000 {
        let report = apply(&config, &state);
        *outcomes.entry(report.entries[0].outcome.label()).or_insert(0) += 1;
        assert_eq!(mode_of(&canary), 0o600);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0);
    assert_eq!(getfacl(&canary), canary_acl, "the canary's ACL changed ({outcomes:?})");
    assert!(outcomes.contains_key("refused"), "the race never hit: {outcomes:?}");
}

#[test]
fn revoke_removes_every_recorded_grant_and_nothing_else() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    run("setfacl", &["-m", "u:1000:r", sock.to_str().unwrap()]);
    apply(&config(&socket_config(&sock, "4321")), &state);
    assert!(can_connect_as(4321, 4321, &[], &sock));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nonrootctl"))
        .args(["--state-dir", state.to_str().unwrap(), "revoke"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!can_connect_as(4321, 4321, &[], &sock));
    assert_eq!(
        getfacl(&sock),
        "user::rw-\nuser:1000:r--\ngroup::rw-\nmask::rw-\nother::---\n\n"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("grants.json")).unwrap(),
        "{\n  \"sockets\": {}\n}"
    );
}

/// nonrootd reads and writes `system.posix_acl_access` itself (no libacl on the socket's
/// critical path); libacl, through the posix-acl crate, and getfacl are the oracles.
#[test]
fn the_acl_codec_agrees_with_libacl_on_disk_and_tmpfs() {
    use nonrootd::host::Host;
    use nonrootd_core::acl::{Perm, Qualifier};
    use nonrootd_core::ids::{Gid, Uid};
    use posix_acl::{PosixACL, Qualifier as Lib};
    for scratch in [Scratch::disk(), Scratch::tmpfs()] {
        let path = scratch.path().join("f");
        std::fs::write(&path, "").unwrap();
        chmod(&path, 0o640);
        let (fd, _) = nonrootd::host::walk::open_beneath_root(&path).map_err(|_| ()).unwrap();
        let host = RealHost::default();
        let plain = host.read_acl(&fd).unwrap();
        assert_eq!(plain.to_string(), "user::rw-,group::r--,other::---");

        run(
            "setfacl",
            &["-m", "u:4321:rw,u:1000:r,g:7:r,m::rw", path.to_str().unwrap()],
        );
        let ours = host.read_acl(&fd).unwrap();
        let lib = PosixACL::read_acl(&path).unwrap();
        assert_eq!(
            ours.named[&Qualifier::User(Uid(4321))].bits(),
            lib.get(Lib::User(4321)).unwrap()
        );
        assert_eq!(
            ours.named[&Qualifier::Group(Gid(7))].bits(),
            lib.get(Lib::Group(7)).unwrap()
        );
        assert_eq!(ours.mask.map(Perm::bits), lib.get(Lib::Mask));
        assert_eq!(ours.named.len(), 3);

        let mut more = ours.clone();
        more.named.insert(Qualifier::Group(Gid(8)), Perm::RWX);
        more.mask = Some(Perm::RWX);
        host.write_acl(&fd, &more).unwrap();
        let lib = PosixACL::read_acl(&path).unwrap();
        assert_eq!(lib.get(Lib::Group(8)), Some(7));
        assert_eq!(lib.get(Lib::User(1000)), Some(4));
        assert_eq!(host.read_acl(&fd).unwrap(), more);
        let text = getfacl(&path);
        assert!(text.contains("group:8:rwx") && text.contains("mask::rwx"), "{text}");
    }
}

/// `groups` grant each group (by number or by name) read and write: its members connect, others
/// do not; a group dropped from the config loses its entry, the others keep theirs.
#[test]
fn configured_groups_let_their_members_connect_and_a_dropped_group_is_revoked() {
    let scratch = Scratch::tmpfs();
    let state = scratch.mkdir("state", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let groups = |list: &str| {
        config(&format!(
            "[[socket]]\npath = \"{}\"\ngroups = [{list}]\n",
            sock.display()
        ))
    };
    assert!(!can_connect_as(5000, 5000, &[4400], &sock), "connects before apply");
    let report = apply(&groups("4400, \"adm\""), &state);
    assert_eq!(labels(&report), ["changed"], "{report}");
    assert_eq!(
        getfacl(&sock),
        "user::rw-\ngroup::rw-\ngroup:4:rw-\ngroup:4400:rw-\nmask::rw-\nother::---\n\n"
    );
    assert!(can_connect_as(5000, 5000, &[4400], &sock), "member of 4400");
    assert!(can_connect_as(5001, 5001, &[4], &sock), "member of adm");
    assert!(!can_connect_as(5002, 5002, &[4401], &sock), "member of another group");
    apply(&groups("\"adm\""), &state);
    assert_eq!(
        getfacl(&sock),
        "user::rw-\ngroup::rw-\ngroup:4:rw-\nmask::rw-\nother::---\n\n"
    );
    assert!(!can_connect_as(5000, 5000, &[4400], &sock), "4400 kept access");
    assert!(can_connect_as(5001, 5001, &[4], &sock), "adm lost access");
}
