//! `nonrootctl` as a user runs it: exit codes, messages, JSON, dry runs, config files.

mod common;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn nonrootctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nonrootctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_config(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, body).unwrap();
    chmod(&path, 0o644);
    path.to_str().unwrap().to_string()
}

#[test]
fn check_config_names_file_line_and_key_of_every_problem() {
    let scratch = Scratch::disk();
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        "[docker]\nimage_dir_mode = \"75\"\n\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [\"no-such-user-here\"]\n",
    );
    write_config(
        scratch.path(),
        "nonrootd.d/10-dmi.toml",
        "[dmi]\ngroup = \"adm\"\nworld_readable = true\n",
    );
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{main}:2: docker.image_dir_mode: \"75\" is not a mode")),
        "{stderr}"
    );
    let drop_in = scratch.join("nonrootd.d/10-dmi.toml");
    assert!(
        stderr.contains(&format!(
            "{}:2: dmi.group: both group and world_readable",
            drop_in.display()
        )),
        "{stderr}"
    );

    // Names are checked once the structure is valid.
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        "[[socket]]\npath = \"/run/docker.sock\"\nusers = [\"no-such-user-here\"]\n",
    );
    std::fs::remove_dir_all(scratch.join("nonrootd.d")).unwrap();
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert_eq!(
        text(&out.stderr),
        format!("nonrootctl: {main}:3: socket.users: no such user \"no-such-user-here\"\n")
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_config_names_the_line_that_is_not_utf8() {
    let scratch = Scratch::disk();
    let main = write_config(scratch.path(), "nonrootd.toml", "");
    std::fs::write(&main, b"[docker]\n# caf\xe9\n").unwrap();
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("nonrootctl: {main}:2: not UTF-8 text, which TOML must be\n")
    );
}

/// A min above the max that login.defs gives: the config alone is valid, the limits are not.
#[test]
fn check_config_refuses_a_min_above_the_max_of_login_defs() {
    let scratch = Scratch::disk();
    let main = write_config(scratch.path(), "nonrootd.toml", "[subids]\nmin = 4000000000\n");
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let expected = format!("nonrootctl: {main}:2: subids.min: 4000000000 is above max ");
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("(/etc/login.defs: SUB_UID_MAX, SUB_GID_MAX)"),
        "{stderr}"
    );
}

#[test]
fn check_config_refuses_files_others_could_write() {
    let scratch = Scratch::disk();
    let main = write_config(scratch.path(), "nonrootd.toml", "[docker]\n");
    let out = nonrootctl(&["--config", &main, "check-config", "--unit-dir", "/nonexistent"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{main}: valid (0 drop-ins)\nnote: nonrootd.service is not in /nonexistent: what its sandbox lets nonrootd write was not checked\n"
        )
    );

    chmod(Path::new(&main), 0o664);
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert_eq!(
        text(&out.stderr),
        format!("nonrootctl: {main}: mode 0664 lets others than root write it: refusing to trust it\n")
    );
    chmod(Path::new(&main), 0o644);
    std::os::unix::fs::chown(&main, Some(1000), None).unwrap();
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert!(
        text(&out.stderr).contains("is owned by uid 1000, not root"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_fifo_a_symlink_or_a_directory_others_can_change_is_refused_and_hidden_files_are_skipped() {
    let scratch = Scratch::disk();
    let etc = scratch.mkdir("etc", 0o755);
    let main = write_config(&etc, "nonrootd.toml", "[docker]\n");
    let drop_ins = scratch.mkdir("etc/nonrootd.d", 0o755);
    let check = || {
        let out = nonrootctl(&["--config", &main, "check-config", "--unit-dir", "/nonexistent"]);
        let stdout = text(&out.stdout).replace(
            "note: nonrootd.service is not in /nonexistent: what its sandbox lets nonrootd write was not checked\n",
            "",
        );
        (out.status.code(), stdout, text(&out.stderr))
    };
    // An editor's lock symlink and temp file are not drop-ins.
    std::os::unix::fs::symlink("user@host.1234", drop_ins.join(".#10-x.toml")).unwrap();
    write_config(&drop_ins, ".10-x.toml.swp.toml", "not toml");
    assert_eq!(
        check(),
        (Some(0), format!("{main}: valid (0 drop-ins)\n"), String::new())
    );

    // Refused without waiting for a writer.
    let fifo = drop_ins.join("20-fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (code, _, stderr) = check();
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("{}: is a FIFO, not a regular file", fifo.display())),
        "{stderr}"
    );
    std::fs::remove_file(&fifo).unwrap();

    let link = drop_ins.join("30-link.toml");
    std::os::unix::fs::symlink(&main, &link).unwrap();
    let (_, _, stderr) = check();
    assert!(
        stderr.contains(&format!("{}: is a symbolic link: refusing to trust it", link.display())),
        "{stderr}"
    );
    std::fs::remove_file(&link).unwrap();

    // Anyone could add or remove drop-ins: the sticky bit does not help.
    chmod(&drop_ins, 0o1777);
    let (code, _, stderr) = check();
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "{}: directory mode 1777 lets others write",
            drop_ins.display()
        )),
        "{stderr}"
    );
    chmod(&drop_ins, 0o755);
    std::os::unix::fs::chown(&etc, Some(1000), None).unwrap();
    let (code, _, stderr) = check();
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "{}: unsafe path transition: directory owned by uid 1000",
            etc.display()
        )),
        "{stderr}"
    );
}

#[test]
fn drop_ins_are_merged_in_lexical_order() {
    let scratch = Scratch::disk();
    let data = scratch.mkdir("docker", 0o710);
    let image = scratch.mkdir("docker/image", 0o700);
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        &format!(
            "[docker]\ndata_root = \"{}\"\nimage_dirs = [\"image\"]\nimage_dir_mode = \"0700\"\n",
            data.display()
        ),
    );
    write_config(
        scratch.path(),
        "nonrootd.d/20-late.toml",
        "[docker]\nimage_dir_mode = \"0751\"\n",
    );
    write_config(
        scratch.path(),
        "nonrootd.d/10-early.toml",
        "[docker]\nimage_dir_mode = \"0755\"\n",
    );
    write_config(scratch.path(), "nonrootd.d/30-ignored.conf", "not toml at all");
    let state = scratch.join("state");
    let out = nonrootctl(&["--config", &main, "--state-dir", state.to_str().unwrap(), "apply"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(mode_of(&image), 0o751);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let scratch = Scratch::tmpfs();
    let data = scratch.mkdir("docker", 0o710);
    let image = scratch.mkdir("docker/image", 0o700);
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let main = write_config(
        scratch.path(),
        "etc/nonrootd.toml",
        &format!(
            "[docker]\ndata_root = \"{}\"\nimage_dirs = [\"image\", \"missing\"]\n[[socket]]\npath = \"{}\"\nusers = [4321]\n",
            data.display(),
            sock.display()
        ),
    );
    let state = scratch.join("state");
    let acl_before = getfacl(&sock);
    let out = nonrootctl(&[
        "--config",
        &main,
        "--state-dir",
        state.to_str().unwrap(),
        "apply",
        "--dry-run",
    ]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "would change docker  {} (mode 0750): mode 0700 → 0750",
            image.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("missing      docker  {}/missing (mode 0750)", data.display())),
        "{stdout}"
    );
    assert!(stdout.contains("mask::none → rw-, +user:4321:rw-"), "{stdout}");
    assert!(
        stdout.ends_with("0 changed, 2 would change, 0 correct, 1 missing, 0 refused, 0 failed\n"),
        "{stdout}"
    );
    assert_eq!(mode_of(&image), 0o700);
    assert_eq!(getfacl(&sock), acl_before);
    assert!(!state.exists(), "a dry run wrote state");
}

#[test]
fn json_report_and_exit_codes() {
    let scratch = Scratch::tmpfs();
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let main = write_config(
        scratch.path(),
        "etc/nonrootd.toml",
        &format!(
            "[[socket]]\npath = \"{}\"\nusers = [4321, \"no-such-user-here\"]\n",
            sock.display()
        ),
    );
    let state = scratch.join("state");
    let out = nonrootctl(&[
        "--config",
        &main,
        "--state-dir",
        state.to_str().unwrap(),
        "apply",
        "--json",
        "--only",
        "sockets",
    ]);
    assert_eq!(out.status.code(), Some(1), "a refused entry fails the apply");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["succeeded"], false);
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries[0]["outcome"], "refused");
    assert_eq!(
        entries[0]["reason"],
        format!("{main}:3: no such user \"no-such-user-here\"")
    );
    assert_eq!(entries[1]["outcome"], "changed");
    assert_eq!(entries[1]["desired"], "user:4321:rw-");
    assert_eq!(entries[1]["duty"], "sockets");
    assert!(can_connect_as(4321, 4321, &[], &sock));

    let out = nonrootctl(&["--config", &main, "apply", "--only", "docker,volume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown duty \"volume\""));
}

/// A listening socket in `scratch` configured for uid 4321: its path, its listener, the
/// config's path and a state directory.
fn socket_for_4321(scratch: &Scratch) -> (PathBuf, UnixListener, String, PathBuf) {
    let sock = scratch.join("docker.sock");
    let listener = listen(&sock, 0o660);
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        &format!("[[socket]]\npath = \"{}\"\nusers = [4321]\n", sock.display()),
    );
    let state = scratch.mkdir("state", 0o700);
    (sock, listener, main, state)
}

#[test]
fn while_the_package_is_being_removed_sockets_are_revoked_and_never_granted() {
    let scratch = Scratch::tmpfs();
    let (sock, _listener, main, state) = socket_for_4321(&scratch);
    let ctl =
        |args: &[&str]| nonrootctl(&[&["--config", &main, "--state-dir", state.to_str().unwrap()], args].concat());
    assert!(ctl(&["apply", "--local", "--only", "sockets"]).status.success());
    assert!(can_connect_as(4321, 4321, &[], &sock));

    // What prerm and %preun do: the mark, then the revoke.
    let mark = state.join("removing");
    std::fs::write(&mark, "").unwrap();
    // A dry run shows what an apply would do now: revoke, one entry for the socket.
    let out = ctl(&["apply", "--local", "--only", "sockets", "--dry-run"]);
    let stdout = text(&out.stdout);
    let entries: Vec<_> = stdout.lines().filter(|l| l.contains(sock.to_str().unwrap())).collect();
    assert_eq!(entries.len(), 1, "{stdout}");
    assert!(
        entries[0].starts_with("would change") && entries[0].contains("(nonrootd is being removed)"),
        "{stdout}"
    );
    assert!(can_connect_as(4321, 4321, &[], &sock));
    let out = ctl(&["revoke"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(!can_connect_as(4321, 4321, &[], &sock));
    // Docker's hook, run by a restart of docker.socket before the package's files are gone.
    let out = ctl(&["apply", "--local", "--only", "sockets"]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!(
        "refused      sockets {} (user:4321:rw-): not granted: nonrootd is being removed ({})",
        sock.display(),
        mark.display()
    );
    assert!(text(&out.stdout).contains(&expected), "{}", text(&out.stdout));
    assert!(!can_connect_as(4321, 4321, &[], &sock));
}

/// A main file in a sticky directory: a nonrootd.d that someone else made after the check
/// found none (the loader's directory check passes a missing one) is refused when listed, and
/// so is a state directory someone else made before nonrootd created it.
#[test]
fn directories_someone_else_made_after_the_check_are_refused() {
    let scratch = Scratch::tmpfs();
    let sticky = scratch.mkdir("sticky", 0o1777);
    let main = write_config(&sticky, "nonrootd.toml", "");
    let drop_ins = sticky.join("nonrootd.d");
    std::fs::create_dir(&drop_ins).unwrap();
    write_config(&drop_ins, "10-theirs.toml", "");
    std::os::unix::fs::chown(&drop_ins, Some(1000), Some(1000)).unwrap();
    let err = nonrootd::config_file::drop_ins(std::path::Path::new(&main)).unwrap_err();
    assert!(err.to_string().contains("owned by uid 1000"), "{err}");
    std::fs::remove_dir_all(&drop_ins).unwrap();
    assert_eq!(
        nonrootd::config_file::drop_ins(std::path::Path::new(&main)).unwrap(),
        Vec::<std::path::PathBuf>::new()
    );

    let state = sticky.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(1000), Some(1000)).unwrap();
    let err = nonrootd::state::ensure_dir(&state).unwrap_err();
    assert!(err.to_string().contains("owned by uid 1000"), "{err}");
    std::fs::remove_dir(&state).unwrap();
    nonrootd::state::ensure_dir(&state).unwrap();
}

/// A hook that waits for the lock while the removal leaves its mark (and revokes) grants
/// nothing once it gets the lock: the mark is looked for under the lock.
#[test]
fn a_hook_waiting_for_the_lock_while_the_mark_appears_grants_nothing() {
    let scratch = Scratch::tmpfs();
    let (sock, _listener, main, state) = socket_for_4321(&scratch);
    let mut lock_file = nonrootd::lock::LockFile::open(&state).unwrap();
    let held = lock_file.acquire(std::time::Duration::ZERO).unwrap();
    let hook = Command::new(env!("CARGO_BIN_EXE_nonrootctl"))
        .args(["--config", &main, "--state-dir", state.to_str().unwrap()])
        .args(["apply", "--local", "--only", "sockets", "--timeout", "20s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_retrying_the_lock(hook.id(), &state.join("apply.lock"));
    std::fs::write(state.join("removing"), "").unwrap();
    drop(held);
    let out = hook.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("not granted: nonrootd is being removed"),
        "{}",
        text(&out.stdout)
    );
    assert!(!can_connect_as(4321, 4321, &[], &sock));
}

/// Waits until process `pid` holds `lock` open and sleeps between tries at it (nonrootctl
/// sleeps nowhere else): it has looked at everything it looks at before the lock.
fn wait_until_retrying_the_lock(pid: u32, lock: &Path) {
    let has_open = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == lock))
    };
    // The number of the system call it waits in: clock_nanosleep or nanosleep.
    let sleeping = || {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|now| matches!(now.split(' ').next(), Some("230" | "35")))
    };
    for _ in 0..2000 {
        if has_open() && sleeping() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("process {pid} never waited for {lock:?}");
}

#[test]
fn a_held_lock_times_out_cleanly() {
    let scratch = Scratch::disk();
    let state = scratch.mkdir("state", 0o700);
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        "[docker]\ndata_root = \"/nonexistent\"\n",
    );
    let mut lock_file = nonrootd::lock::LockFile::open(&state).unwrap();
    let _held = lock_file.acquire(std::time::Duration::ZERO).unwrap();
    let out = nonrootctl(&[
        "--config",
        &main,
        "--state-dir",
        state.to_str().unwrap(),
        "apply",
        "--timeout",
        "200ms",
    ]);
    // The sockets need the grant record: they fail, naming the lock; the other duties run.
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("another apply holds"), "{stdout}");
    assert!(stdout.contains("(waited 200ms)"), "{stdout}");
    assert!(stdout.contains("/nonexistent"), "{stdout}");
}

#[test]
fn a_state_directory_others_could_change_is_refused_and_nothing_is_written() {
    let scratch = Scratch::tmpfs();
    let sock = scratch.join("docker.sock");
    let _listener = listen(&sock, 0o660);
    let ids = scratch.mkdir("ids", 0o755);
    for file in ["subuid", "subgid"] {
        write_config(&ids, file, "someone:100000:65536\n");
    }
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        &format!(
            "[[socket]]\npath = \"{}\"\nusers = [4321]\n\n[subids]\nsubuid_file = \"{1}/subuid\"\nsubgid_file = \"{1}/subgid\"\n",
            sock.display(),
            ids.display()
        ),
    );
    let state = scratch.mkdir("state", 0o700);
    std::os::unix::fs::chown(&state, Some(1234), None).unwrap();
    let refusal = "unsafe path transition: directory owned by uid 1234: refusing to use it";
    let with_state = |args: &[&str]| {
        let state = state.to_str().unwrap();
        nonrootctl(&[&["--config", &main, "--state-dir", state], args].concat())
    };

    let out = with_state(&["apply", "--local", "--only", "sockets"]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!("state directory {}: {refusal}", state.display());
    assert!(text(&out.stdout).contains(&expected), "{}", text(&out.stdout));
    assert!(!can_connect_as(4321, 4321, &[], &sock), "no grant without its record");

    let out = with_state(&["subids", "allocate", "tenant-a"]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!("{}: cannot use the state directory: {refusal}", state.display());
    assert!(text(&out.stderr).contains(&expected), "{}", text(&out.stderr));
    for file in ["subuid", "subgid"] {
        assert_eq!(
            std::fs::read_to_string(ids.join(file)).unwrap(),
            "someone:100000:65536\n"
        );
    }
    let mut left: Vec<_> = std::fs::read_dir(&ids)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["subgid", "subuid"], "no lock or temp file left");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
}

/// A config file and a unit directory holding the shipped nonrootd.service, for check-config.
struct ShippedUnit {
    scratch: Scratch,
    units: PathBuf,
}

impl ShippedUnit {
    fn new() -> ShippedUnit {
        let scratch = Scratch::disk();
        let units = scratch.mkdir("units", 0o755);
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/nonrootd.service");
        std::fs::copy(shipped, units.join("nonrootd.service")).unwrap();
        ShippedUnit { scratch, units }
    }

    fn drop_in(&self, text: &str) {
        write_config(&self.units, "nonrootd.service.d/paths.conf", text);
    }

    /// `check-config` of `config` against the unit and its drop-ins: (exit code, stdout, stderr).
    fn check(&self, config: &str) -> (Option<i32>, String, String) {
        let main = write_config(self.scratch.path(), "nonrootd.toml", config);
        let unit_dir = self.units.to_str().unwrap();
        let out = nonrootctl(&["--config", &main, "check-config", "--unit-dir", unit_dir]);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }
}

#[test]
fn check_config_names_paths_the_shipped_unit_may_not_write_and_the_drop_in_to_add() {
    let unit = ShippedUnit::new();
    let config = "[docker]\ndata_root = \"/srv/docker\"\n[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n";
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("docker.data_root /srv/docker is read-only for nonrootd.service"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nonrootd.service.d/paths.conf with \"[Service]\\nReadWritePaths=-/srv/docker\""),
        "{stderr}"
    );
    assert!(!stderr.contains("docker.sock"), "{stderr}");

    unit.drop_in("[Service]\nReadWritePaths=/srv/docker\n");
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(0), "{stderr}");
    // A comment that is not UTF-8 is no reason to ignore the drop-in (systemd does not).
    std::fs::write(
        unit.units.join("nonrootd.service.d/paths.conf"),
        b"# caf\xe9\n[Service]\nReadWritePaths=/srv/docker\n",
    )
    .unwrap();
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(0), "{stderr}");
}

/// A drop-in without `[Service]` does nothing (systemd ignores it), and the drop-ins every
/// service reads (`service.d/`) count.
#[test]
fn check_config_reads_drop_ins_as_systemd_does() {
    let unit = ShippedUnit::new();
    let config = "[docker]\ndata_root = \"/srv/docker\"\n";
    unit.drop_in("ReadWritePaths=/srv/docker\n");
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(1), "a drop-in outside [Service] was taken: {stderr}");
    write_config(
        &unit.units,
        "service.d/10-all.conf",
        "[Service]\nReadWritePaths=/srv/docker\n",
    );
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(0), "{stderr}");
}

/// A socket's directory is what must be writable (a re-created socket is a new inode), and a
/// path through a symbolic link is judged where it leads, as systemd does.
#[test]
fn check_config_judges_a_socket_s_directory_where_symbolic_links_lead() {
    let unit = ShippedUnit::new();
    let (code, _, stderr) = unit.check("[[socket]]\npath = \"/var/run/docker.sock\"\nusers = [4321]\n");
    assert_eq!(
        code,
        Some(0),
        "/var/run is /run, which the unit lets nonrootd write: {stderr}"
    );
    let (code, _, stderr) = unit.check("[[socket]]\npath = \"/srv/podman/podman.sock\"\nusers = [4321]\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("socket.path /srv/podman/podman.sock: its directory /srv/podman is read-only for nonrootd.service (ProtectSystem=strict): add /etc/systemd/system/nonrootd.service.d/paths.conf with \"[Service]\\nReadWritePaths=-/srv/podman\""),
        "{stderr}"
    );
}

#[test]
fn check_config_advises_protect_home_read_only_for_paths_below_home() {
    let unit = ShippedUnit::new();
    let (code, _, stderr) = unit.check("[docker]\ndata_root = \"/home/docker\"\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("\"[Service]\\nProtectHome=read-only\\nReadWritePaths=-/home/docker\""),
        "{stderr}"
    );

    // A volume the unit cannot write is only a note (exit 0), not an error.
    let volume = "\n[[volume]]\npath = \"/home/app/data\"\nuid = 999\ngid = 999\n";
    let (code, stdout, stderr) = unit.check(volume);
    assert_eq!(code, Some(0), "{stderr}");
    let main = unit.scratch.join("nonrootd.toml");
    assert!(
        stdout.contains(&format!(
            "note: {}:3: volume.path /home/app/data is hidden from nonrootd.service (ProtectHome=",
            main.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"[Service]\\nProtectHome=read-only\\nReadWritePaths=-/home/app/data\""),
        "{stdout}"
    );
    // Once the installed unit's drop-ins let nonrootd write it, there is nothing to note.
    unit.drop_in("[Service]\nProtectHome=read-only\nReadWritePaths=/home/app\n");
    let (code, stdout, stderr) = unit.check(volume);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("note:"), "{stdout}");
}

#[test]
fn check_config_names_a_socket_in_tmp_that_private_tmp_hides_even_when_writable() {
    let unit = ShippedUnit::new();
    let config = "[[socket]]\npath = \"/tmp/app/app.sock\"\nusers = [4321]\n";
    // ReadWritePaths= alone does not help: nonrootd's /tmp is not the host's.
    unit.drop_in("[Service]\nReadWritePaths=/tmp/app\n");
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("nonrootd.toml:2: socket.path /tmp/app/app.sock: its directory /tmp/app is not the host's for nonrootd.service, which has a /tmp of its own (PrivateTmp=yes)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"[Service]\\nPrivateTmp=no\\nReadWritePaths=-/tmp/app\""),
        "{stderr}"
    );
    unit.drop_in("[Service]\nPrivateTmp=no\nReadWritePaths=/tmp/app\n");
    let (code, _, stderr) = unit.check(config);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn reload_refuses_options_the_daemon_would_ignore_and_status_json_stays_json() {
    let out = nonrootctl(&["--config", "/srv/test.toml", "reload"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("reload makes nonrootd read its own config again"),
        "{}",
        text(&out.stderr)
    );
    // No daemon and a config that does not load: still a JSON document, the errors on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_nonrootctl"))
        .args(["--config", "/nonexistent/nonrootd.toml", "status", "--json"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // No bus: whether the daemon runs is unknown.
    assert_eq!(doc["running"], serde_json::Value::Null);
    assert_eq!(doc["local_inspection"], serde_json::Value::Null);
    assert!(text(&out.stderr).contains("/nonexistent/nonrootd.toml: cannot open"));
}

#[test]
fn status_without_a_system_bus_does_not_say_the_daemon_is_not_running() {
    let out = Command::new(env!("CARGO_BIN_EXE_nonrootctl"))
        .args(["--config", "/nonexistent/nonrootd.toml", "status"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("○ nonrootd cannot be asked: the system bus cannot be reached ("),
        "{stdout}"
    );
    assert!(!stdout.contains("not running"), "{stdout}");
}

/// With four descriptors the program loads but its runtime cannot start: the daemon was not
/// asked, so whether it runs is unknown (`null`), not `true`.
#[test]
fn status_that_cannot_ask_does_not_say_the_daemon_is_running() {
    let out = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 4 && exec \"$0\" status --json",
            env!("CARGO_BIN_EXE_nonrootctl"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["running"], serde_json::Value::Null, "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(
        error.starts_with("nonrootd cannot be asked: cannot start a runtime: "),
        "{error}"
    );
}

#[test]
fn a_timeout_too_long_to_wait_for_is_a_usage_error() {
    let out = nonrootctl(&["status", "--timeout", "1e30s"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .contains("invalid value '1e30s' for '--timeout <DURATION>': \"1e30s\" is longer than a year (31536000s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_config_refuses_a_system_tree_as_volume_and_a_count_that_never_fits() {
    let scratch = Scratch::disk();
    let main = write_config(
        scratch.path(),
        "nonrootd.toml",
        "[subids]\nmin = 1000\nmax = 2000\ncount = 5000\n\n[[volume]]\npath = \"/var/lib\"\nuid = 999\ngid = 999\n",
    );
    let out = nonrootctl(&["--config", &main, "check-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "nonrootctl: {main}:4: subids.count: 5000 ids never fit between min 1000 and max 2000 (1001 ids)\n\
             nonrootctl: {main}:7: volume.path: /var/lib is a system directory: its walk would re-own the whole tree (a directory below it can be a volume)\n"
        )
    );
}
