//! The real `nonrootd` on a private `dbus-daemon` (system config, our policy): authorization,
//! status, reload, socket re-creation and drift, sd_notify, signals.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::bus::{DaemonProcess, PrivateBus, wait_for};
use common::*;
use nix::sys::signal::Signal;

struct Setup {
    scratch: Scratch,
    bus: PrivateBus,
    sock: std::path::PathBuf,
    _listener: std::os::unix::net::UnixListener,
    image: std::path::PathBuf,
}

fn write_root_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    chmod(path, 0o644);
}

fn setup() -> Setup {
    setup_with_policies(&[])
}

/// The setup on a bus that also has these policy files.
fn setup_with_policies(policies: &[&Path]) -> Setup {
    let scratch = Scratch::tmpfs();
    let bus = PrivateBus::start_with_policies(scratch.path(), policies);
    let data = scratch.mkdir("docker", 0o710);
    let image = scratch.mkdir("docker/image", 0o700);
    let run_dir = scratch.mkdir("run", 0o755);
    let sock = run_dir.join("docker.sock");
    let listener = listen(&sock, 0o660);
    let config = format!(
        "[docker]\ndata_root = \"{}\"\nimage_dirs = [\"image\"]\n\n[[socket]]\npath = \"{}\"\nusers = [4321]\n",
        data.display(),
        sock.display()
    );
    write_root_file(&scratch.join("etc/nonrootd.toml"), &config);
    Setup {
        scratch,
        bus,
        sock,
        _listener: listener,
        image,
    }
}

impl Setup {
    fn start(&self) -> DaemonProcess {
        DaemonProcess::start(
            self.scratch.path(),
            Some(&self.bus),
            &self.scratch.join("etc/nonrootd.toml"),
            &self.scratch.join("state"),
        )
    }

    /// Calls a method of the daemon's interface with busctl, as root or as another uid:
    /// `args` are the method, the signature and the arguments.
    fn call(&self, uid: Option<u32>, args: &[&str]) -> Output {
        command_as(uid, "busctl")
            .args([
                "--address",
                &self.bus.address,
                "call",
                "org.nonrootd1",
                "/org/nonrootd1",
                "org.nonrootd1.Manager",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs nonrootctl against the private bus, as root or as another uid.
    fn ctl(&self, uid: Option<u32>, args: &[&str]) -> Output {
        command_as(uid, env!("CARGO_BIN_EXE_nonrootctl"))
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address)
            .env("NO_COLOR", "1")
            .current_dir("/")
            .output()
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ready_after_the_first_apply_and_status_is_open_to_everyone() {
    let setup = setup();
    let mut daemon = setup.start();
    // READY=1 came only after the first apply: the work is already done.
    assert_eq!(mode_of(&setup.image), 0o750);
    assert!(can_connect_as(4321, 4321, &[], &setup.sock));
    assert!(
        !daemon.notes.iter().any(|n| n.contains("WATCHDOG=1")),
        "watchdog without WATCHDOG_USEC"
    );
    // The startup's STATUS= counts the socket the fixer granted for it and the image directory.
    assert!(
        daemon
            .notes
            .iter()
            .any(|n| n.contains("STATUS=startup: 2 changed, 0 refused or failed")),
        "{:?}",
        daemon.notes
    );

    for uid in [None, Some(65534)] {
        let out = setup.ctl(uid, &["status", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{uid:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(json["running"], true);
        assert_eq!(json["pid"], daemon.pid());
        assert_eq!(json["system_bus"], true);
        assert_eq!(json["following_systemd"], false, "no systemd on the private bus");
        let paths = json["paths"].as_array().unwrap();
        assert_eq!(paths.len(), 2);
        let sock = paths.iter().find(|p| p["duty"] == "sockets").unwrap();
        assert_eq!(sock["path"], setup.sock.to_str().unwrap());
        assert_eq!(sock["desired"], "user:4321:rw-");
        // "correct" once the socket fixer has checked it again after the startup's write.
        assert!(
            ["changed", "correct"].contains(&sock["outcome"].as_str().unwrap()),
            "{sock}"
        );
        assert!(
            sock["last_change"]["text"].as_str().unwrap().contains("+user:4321:rw-"),
            "{sock}"
        );
    }
    let out = setup.ctl(Some(65534), &["status"]);
    let human = text(&out.stdout);
    assert!(
        human.starts_with(&format!("● nonrootd {} - active (running)", env!("CARGO_PKG_VERSION"))),
        "{human}"
    );
    assert!(
        human.contains(&format!("✓ sockets {} (user:4321:rw-)", setup.sock.display())),
        "{human}"
    );
    assert!(
        human.contains("Bus: connected, not following systemd (re-applies on inotify and API calls only)"),
        "{human}"
    );

    daemon.signal(Signal::SIGTERM);
    daemon.wait_note("STOPPING=1");
    assert!(daemon.child.wait().unwrap().success());
}

/// With the shipped bus policy (over Debian's system.conf) only root may own org.nonrootd1: no
/// user can stand in for the daemon.
#[test]
fn only_root_may_own_the_daemon_s_name() {
    let setup = setup();
    let request_name = |uid: Option<u32>| {
        command_as(uid, "busctl")
            .args([
                "--address",
                &setup.bus.address,
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "RequestName",
                "su",
                "org.nonrootd1",
                "0",
            ])
            .output()
            .unwrap()
    };
    let refused = request_name(Some(65534));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Access denied"),
        "{}",
        text(&refused.stderr)
    );
    // Root may (1: it became the primary owner), so the refusal is the policy's.
    let owned = request_name(None);
    assert!(owned.status.success(), "{}", text(&owned.stderr));
    assert_eq!(text(&owned.stdout), "u 1\n");
}

#[test]
fn mutating_calls_need_root() {
    let setup = setup();
    let _daemon = setup.start();
    let out = setup.ctl(Some(65534), &["apply", "--require-daemon"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("nonrootctl: permission denied: Apply needs root; :1."),
        "{stderr}"
    );
    assert!(stderr.contains("runs as uid 65534 (run it as root)"), "{stderr}");
    let out = setup.ctl(Some(65534), &["reload"]);
    assert!(
        text(&out.stderr).contains("permission denied: Reload needs root"),
        "{}",
        text(&out.stderr)
    );

    chmod(&setup.image, 0o700);
    let out = setup.ctl(None, &["apply", "--require-daemon", "--only", "docker", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["entries"][0]["outcome"], "changed");
    assert_eq!(mode_of(&setup.image), 0o750);
}

#[test]
fn a_recreated_socket_and_a_removed_acl_are_fixed_without_anyone_asking() {
    let setup = setup();
    let daemon = setup.start();
    // The fewest fds over a few samples: an apply in flight holds a few for a moment.
    let fd_count = || {
        (0..20)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(5));
                std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).unwrap().count()
            })
            .min()
            .unwrap()
    };
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_string();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    let fds_before = fd_count();
    let rss_before = rss();
    let mut listener;
    for _ in 0..200 {
        std::fs::remove_file(&setup.sock).unwrap();
        listener = listen(&setup.sock, 0o660);
        wait_for(
            Duration::from_secs(5),
            || can_connect_as(4321, 4321, &[], &setup.sock),
            "the ACL on the new socket",
        );
        drop(listener);
    }
    std::fs::remove_file(&setup.sock).unwrap();
    let _listener = listen(&setup.sock, 0o660);
    wait_for(
        Duration::from_secs(5),
        || can_connect_as(4321, 4321, &[], &setup.sock),
        "the ACL",
    );
    run("setfacl", &["-b", setup.sock.to_str().unwrap()]);
    wait_for(
        Duration::from_secs(5),
        || can_connect_as(4321, 4321, &[], &setup.sock),
        "the ACL restored after setfacl -b",
    );
    let fds_after = fd_count();
    assert!(fds_after <= fds_before, "fds grew: {fds_before} → {fds_after}");
    assert!(rss() < rss_before + 2048, "RSS grew: {rss_before} kB → {} kB", rss());
}

#[test]
fn a_broken_config_on_reload_is_refused_and_the_old_one_stays() {
    let setup = setup();
    let mut daemon = setup.start();
    let config = setup.scratch.join("etc/nonrootd.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    write_root_file(&config, &format!("{good}access = \"rwx\"\n"));
    let out = setup.ctl(None, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("reload refused: {}:8: socket.access", config.display())),
        "{stderr}"
    );
    assert!(
        daemon
            .log_text()
            .contains("reload refused, previous config stays in force")
    );
    let status: serde_json::Value = serde_json::from_slice(&setup.ctl(None, &["status", "--json"]).stdout).unwrap();
    assert!(
        status["reload_error"]["text"]
            .as_str()
            .unwrap()
            .contains("socket.access")
    );
    // The old config is still applied.
    std::fs::remove_file(&setup.sock).unwrap();
    let _listener = listen(&setup.sock, 0o660);
    wait_for(
        Duration::from_secs(5),
        || can_connect_as(4321, 4321, &[], &setup.sock),
        "the old config's ACL",
    );

    // SIGHUP with a good new config takes it.
    write_root_file(&config, &good.replace("users = [4321]", "users = [4322]"));
    daemon.signal(Signal::SIGHUP);
    daemon.wait_note("reload (SIGHUP)");
    // An apply of the old config still waiting for the lock may come last; the new one follows.
    wait_for(
        Duration::from_secs(5),
        || can_connect_as(4322, 4322, &[], &setup.sock) && !can_connect_as(4321, 4321, &[], &setup.sock),
        "the new grant, and the old one revoked",
    );
}

/// The daemon reads private directories for the volumes duty: what a walk says of the files
/// inside one (an example of a skipped file, the first failure) is for root's status only.
#[test]
fn others_see_a_volumes_outcome_but_no_file_names_from_inside_it() {
    let setup = setup();
    let vol = setup.scratch.mkdir("vol", 0o700);
    std::fs::write(vol.join("secret-a"), "").unwrap();
    // Hard links are skipped, and one of them named as the example.
    std::fs::hard_link(vol.join("secret-a"), vol.join("secret-b")).unwrap();
    let config = setup.scratch.join("etc/nonrootd.toml");
    let text_before = std::fs::read_to_string(&config).unwrap();
    let volume = format!("\n[[volume]]\npath = \"{}\"\nuid = 999\ngid = 999\n", vol.display());
    write_root_file(&config, &(text_before + &volume));
    // Every user may receive the PathChanged signals: uid 65534 listens from before the start.
    let signals_path = setup.scratch.join("signals.txt");
    let mut monitor = command_as(Some(65534), "dbus-monitor")
        .args([
            "--address",
            &setup.bus.address,
            "type='signal',interface='org.nonrootd1.Manager',member='PathChanged'",
        ])
        .stdout(std::fs::File::create(&signals_path).unwrap())
        .spawn()
        .unwrap();
    let _daemon = setup.start();
    let volumes_entry = |uid: Option<u32>| {
        let out = setup.ctl(uid, &["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["duty"] == "volumes")
            .cloned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let root = loop {
        match volumes_entry(None) {
            Some(entry) => break entry,
            None if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => panic!("no volumes entry in the status"),
        }
    };
    assert!(root.to_string().contains("secret-"), "root sees the example: {root}");
    let other = volumes_entry(Some(65534)).unwrap();
    assert_eq!(other["outcome"], root["outcome"]);
    assert!(!other.to_string().contains("secret-"), "{other}");
    assert!(other.to_string().contains("details for root only"), "{other}");
    // The startup's walk may end before the daemon is on the bus: one more walk, connected,
    // with a file to re-own.
    std::fs::write(vol.join("secret-c"), "").unwrap();
    let walked = setup.call(None, &["Apply", "as", "1", "volumes"]);
    assert!(walked.status.success(), "{}", text(&walked.stderr));
    let signals = || std::fs::read_to_string(&signals_path).unwrap();
    wait_for(
        Duration::from_secs(10),
        || signals().contains(&format!("string \"{}\"", vol.display())),
        "the volume's PathChanged signal",
    );
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    let signals = signals();
    assert!(signals.contains("details for root only"), "{signals}");
    assert!(!signals.contains("secret-"), "{signals}");
}

/// Waits until the status shows `job` running (waiting for a lock, in these tests).
fn wait_until_running(setup: &Setup, job: &str) {
    wait_for(
        Duration::from_secs(10),
        || status_json(setup)["applying"]["text"] == job,
        &format!("{job} running in the status"),
    );
}

/// Waits until no apply, subids call or walk runs (nor is queued: one starts as soon as none
/// runs): whatever an event seen so far queued is done.
fn wait_until_idle(setup: &Setup) {
    wait_for(
        Duration::from_secs(10),
        || {
            let status = status_json(setup);
            status["applying"].is_null() && status["walking"].is_null()
        },
        "nothing running in the status",
    );
}

/// The status as root sees it.
fn status_json(setup: &Setup) -> serde_json::Value {
    let out = setup.ctl(None, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)))
}

#[test]
fn an_apply_waiting_for_the_lock_holds_up_neither_the_status_nor_the_watchdog() {
    let setup = setup();
    let mut daemon = DaemonProcess::start_with_env(
        setup.scratch.path(),
        Some(&setup.bus),
        &setup.scratch.join("etc/nonrootd.toml"),
        &setup.scratch.join("state"),
        &[("WATCHDOG_USEC", "1000000")],
    );
    let mut lock_file = nonrootd::lock::LockFile::open(&setup.scratch.join("state")).unwrap();
    let held = lock_file.acquire(Duration::from_secs(5)).unwrap();
    let applied = std::thread::scope(|scope| {
        let apply = scope.spawn(|| setup.ctl(None, &["apply", "--require-daemon"]));
        // The apply waits off the event loop (for 5 s at most): the status answers meanwhile
        // and shows it, and the watchdog is pinged.
        wait_until_running(&setup, "Apply() over D-Bus");
        daemon.read_notes();
        daemon.wait_note("WATCHDOG=1");
        let shown = setup.ctl(None, &["status"]);
        assert!(
            text(&shown.stdout).contains("  Applying: Apply() over D-Bus (for "),
            "still waiting after the ping: {}",
            text(&shown.stdout)
        );
        drop(held);
        apply.join().unwrap()
    });
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert_eq!(status_json(&setup)["applying"], serde_json::Value::Null);
}

/// SIGTERM while an `Apply()` waits for the lock: the daemon finishes that apply and answers
/// its caller with the report before it exits; the volumes it asked for are reported not
/// walked.
#[test]
fn sigterm_during_an_apply_answers_its_caller_with_the_report() {
    let setup = setup();
    let mut daemon = setup.start();
    let mut lock_file = nonrootd::lock::LockFile::open(&setup.scratch.join("state")).unwrap();
    let held = lock_file.acquire(Duration::from_secs(5)).unwrap();
    chmod(&setup.image, 0o700);
    let applied = std::thread::scope(|scope| {
        let apply = scope.spawn(|| setup.ctl(None, &["apply", "--require-daemon"]));
        wait_until_running(&setup, "Apply() over D-Bus");
        daemon.signal(Signal::SIGTERM);
        // The lock is let go once the daemon stops: the apply ends after SIGTERM was taken.
        daemon.wait_note("STOPPING=1");
        drop(held);
        apply.join().unwrap()
    });
    let stdout = text(&applied.stdout);
    assert_eq!(applied.status.code(), Some(1), "{stdout}{}", text(&applied.stderr));
    assert!(stdout.contains("mode 0700 → 0750"), "{stdout}");
    assert!(stdout.contains("not walked: nonrootd is stopping"), "{stdout}");
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
}

/// SIGTERM during the walk an `Apply()` waits for: the walk stops at its next directory and
/// the caller gets what it did, the volume reported cancelled, before the daemon exits.
#[test]
fn sigterm_during_a_walk_answers_its_caller_with_what_the_walk_did() {
    let setup = setup();
    let vol = setup.scratch.join("vol");
    let config = setup.scratch.join("etc/nonrootd.toml");
    let volume = format!("\n[[volume]]\npath = \"{}\"\nuid = 999\ngid = 999\n", vol.display());
    write_root_file(&config, &(std::fs::read_to_string(&config).unwrap() + &volume));
    // Missing at the startup; then a tree whose walk (every file re-owned) takes a while.
    let mut daemon = setup.start();
    for dir in 0..100 {
        let dir = vol.join(format!("d{dir}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in 0..2000 {
            std::fs::File::create(dir.join(file.to_string())).unwrap();
        }
    }
    let applied = std::thread::scope(|scope| {
        let apply = scope.spawn(|| setup.ctl(None, &["apply", "--require-daemon", "--only", "volumes"]));
        wait_for(
            Duration::from_secs(10),
            || status_json(&setup)["walking"]["text"] == "Apply() over D-Bus",
            "the Apply()'s walk in the status",
        );
        // Stopped, the daemon takes SIGTERM the moment it goes on, well before the walk ends.
        daemon.signal(Signal::SIGSTOP);
        daemon.signal(Signal::SIGTERM);
        daemon.signal(Signal::SIGCONT);
        apply.join().unwrap()
    });
    let stdout = text(&applied.stdout);
    assert_eq!(applied.status.code(), Some(1), "{stdout}{}", text(&applied.stderr));
    assert!(
        stdout.contains(&format!("{}", vol.display())) && stdout.contains("cancelled"),
        "{stdout}"
    );
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
    let left = Command::new("find")
        .args([vol.to_str().unwrap(), "-not", "-user", "999"])
        .output()
        .unwrap();
    assert!(!left.stdout.is_empty(), "the walk was not stopped midway");
}

/// A reload while an `Apply()` of the sockets waits for the lock: the apply runs with the old
/// config, the reload's with the new one after it (one thread applies every socket), so a
/// socket dropped from the config ends without its grant.
#[test]
fn a_socket_dropped_by_a_reload_during_an_apply_ends_without_its_grant() {
    let setup = setup();
    let config = setup.scratch.join("etc/nonrootd.toml");
    let one = std::fs::read_to_string(&config).unwrap();
    let other = setup.scratch.join("run/other.sock");
    let _other = listen(&other, 0o660);
    let two = format!("{one}\n[[socket]]\npath = \"{}\"\nusers = [4321]\n", other.display());
    write_root_file(&config, &two);
    let _daemon = setup.start();
    assert!(getfacl(&other).contains("user:4321:rw-"), "{}", getfacl(&other));
    let mut lock_file = nonrootd::lock::LockFile::open(&setup.scratch.join("state")).unwrap();
    let held = lock_file.acquire(Duration::from_secs(5)).unwrap();
    let applied = std::thread::scope(|scope| {
        let apply = scope.spawn(|| setup.ctl(None, &["apply", "--require-daemon", "--only", "sockets"]));
        wait_until_running(&setup, "Apply() over D-Bus");
        write_root_file(&config, &one);
        let out = setup.ctl(None, &["reload"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        drop(held);
        apply.join().unwrap()
    });
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    // The Apply() answered with the old config's apply; the reload's follows it.
    wait_for(
        Duration::from_secs(10),
        || !getfacl(&other).contains("user:4321"),
        "the dropped socket's grant revoked",
    );
    assert!(
        getfacl(&setup.sock).contains("user:4321:rw-"),
        "{}",
        getfacl(&setup.sock)
    );
}

#[test]
fn reload_answers_once_the_config_is_in_force_and_the_apply_follows() {
    let setup = setup();
    let _daemon = setup.start();
    let config = setup.scratch.join("etc/nonrootd.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    write_root_file(&config, &good.replace("users = [4321]", "users = [4322]"));
    // The apply that follows waits for this lock; the answer must not.
    let mut lock_file = nonrootd::lock::LockFile::open(&setup.scratch.join("state")).unwrap();
    let held = lock_file.acquire(Duration::from_secs(5)).unwrap();
    let out = setup.ctl(None, &["reload", "--timeout", "3s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "nonrootd reloaded its config and applies it now (see nonrootctl status)\n"
    );
    drop(held);
    wait_for(
        Duration::from_secs(10),
        || {
            let status = status_json(&setup);
            let paths = status["paths"].as_array().unwrap().clone();
            // The docker row comes from the loop's apply only (the fixer's are of sockets).
            paths.iter().any(|p| p["duty"] == "docker")
                && paths.len() == 2
                && paths.iter().all(|p| p["outcome"] != "failed")
                && paths
                    .iter()
                    .any(|p| p["duty"] == "sockets" && p["desired"] == "user:4322:rw-")
        },
        "the reload's apply in the status",
    );
    // The socket fixer's apply of the old config, waiting for the lock too, may come last; its
    // own apply of the new config follows.
    wait_for(
        Duration::from_secs(10),
        || can_connect_as(4322, 4322, &[], &setup.sock),
        "the new config's ACL",
    );
}

#[test]
fn a_bus_that_never_answers_holds_up_readiness_only_for_the_connection_limit() {
    let setup = setup();
    // Where DaemonProcess points the daemon when it is given no bus: accepts, never answers.
    let _silent_bus = listen(&setup.scratch.join("no-bus-here"), 0o666);
    let started = std::time::Instant::now();
    let daemon = DaemonProcess::start(
        setup.scratch.path(),
        None,
        &setup.scratch.join("etc/nonrootd.toml"),
        &setup.scratch.join("state"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "READY=1 after {:?}",
        started.elapsed()
    );
    let log = daemon.log_text();
    assert!(log.contains("no system bus (no answer within 5s)"), "{log}");
    assert_eq!(mode_of(&setup.image), 0o750);
}

#[test]
fn without_a_system_bus_it_warns_once_and_works_on_inotify() {
    let setup = setup();
    // Where the daemon looks for the bus: every try is counted and hung up on.
    let no_bus = std::os::unix::net::UnixListener::bind(setup.scratch.join("no-bus-here")).unwrap();
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = tries.clone();
    std::thread::spawn(move || {
        for connection in no_bus.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(connection);
        }
    });
    let daemon = DaemonProcess::start(
        setup.scratch.path(),
        None,
        &setup.scratch.join("etc/nonrootd.toml"),
        &setup.scratch.join("state"),
    );
    std::fs::remove_file(&setup.sock).unwrap();
    let _listener = listen(&setup.sock, 0o660);
    wait_for(
        Duration::from_secs(5),
        || can_connect_as(4321, 4321, &[], &setup.sock),
        "the ACL without a bus",
    );
    wait_for(
        Duration::from_secs(10),
        || tries.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the bus tried again twice",
    );
    let log = daemon.log_text();
    assert_eq!(log.matches("no system bus").count(), 1, "{log}");
}

#[test]
fn subordinate_ids_over_the_bus_need_root() {
    let setup = setup();
    let etc = setup.scratch.mkdir("subids", 0o755);
    write_root_file(&etc.join("subuid"), "root:100000:65536\n");
    write_root_file(&etc.join("subgid"), "root:100000:65536\n");
    let config = setup.scratch.join("etc/nonrootd.toml");
    let main = std::fs::read_to_string(&config).unwrap();
    let subids = format!(
        "[subids]\nsubuid_file = \"{0}/subuid\"\nsubgid_file = \"{0}/subgid\"\nmin = 100000\nmax = 600100000\ncount = 1000\n",
        etc.display()
    );
    write_root_file(&config, &format!("{main}\n{subids}"));
    let daemon = setup.start();
    let denied = setup.call(Some(65534), &["AllocateSubids", "su", "acme", "0"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied.stderr).contains("AllocateSubids needs root"),
        "{}",
        text(&denied.stderr)
    );
    let before = std::fs::read_to_string(etc.join("subuid")).unwrap();
    assert_eq!(before, "root:100000:65536\n", "a denied call wrote");

    // A name that is no user name is an invalid argument, not a failure of the daemon
    // (dbus-send shows the error's name).
    let invalid = std::process::Command::new("dbus-send")
        .arg(format!("--bus={}", setup.bus.address))
        .args(["--print-reply", "--dest=org.nonrootd1", "/org/nonrootd1"])
        .args(["org.nonrootd1.Manager.AllocateSubids", "string:a:b", "uint32:0"])
        .output()
        .unwrap();
    assert!(!invalid.status.success());
    let stderr = text(&invalid.stderr);
    assert!(
        stderr.starts_with("Error org.nonrootd1.Error.InvalidArgs: \"a:b\" is not a valid user name"),
        "{stderr}"
    );
    let out = setup.call(None, &["AllocateSubids", "su", "acme", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "s \"acme 165536 1000\\n\"\n");
    assert_eq!(
        std::fs::read_to_string(etc.join("subgid")).unwrap(),
        "root:100000:65536\nacme:165536:1000\n"
    );
    // Which ranges nonrootd manages is in its state directory, closed to others.
    let refused = setup.call(Some(65534), &["ListSubids"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("ListSubids needs root; :1."), "{stderr}");
    assert!(stderr.contains("runs as uid 65534 (run it as root)"), "{stderr}");
    let listed = setup.call(None, &["ListSubids"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).contains("acme"), "{}", text(&listed.stdout));
    let released = setup.call(None, &["ReleaseSubids", "s", "acme"]);
    assert!(released.status.success(), "{}", text(&released.stderr));
    // A lock another process holds is waited for as long as the applies wait (5 s), not
    // shadow's 15 s, off the event loop: the status answers meanwhile and shows the call.
    let mut holder = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(etc.join("subuid.lock"), format!("{}\0", holder.id())).unwrap();
    let locked = std::thread::scope(|scope| {
        let call = scope.spawn(|| setup.call(None, &["AllocateSubids", "su", "beta", "0"]));
        wait_until_running(&setup, "subids allocate over D-Bus");
        call.join().unwrap()
    });
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::fs::remove_file(etc.join("subuid.lock")).unwrap();
    assert!(!locked.status.success());
    let stderr = text(&locked.stderr);
    assert!(
        stderr.contains(&format!("locked by pid {} throughout the 5s wait", holder.id())),
        "{stderr}"
    );
    // Root's calls are logged with the caller.
    let log = daemon.log_text();
    assert!(log.contains("ReleaseSubids() called by :1."), "{log}");
    assert_eq!(
        std::fs::read_to_string(etc.join("subuid")).unwrap(),
        "root:100000:65536\n"
    );
}

#[test]
fn status_without_a_daemon_exits_3_and_shows_a_labelled_local_inspection() {
    let setup = setup();
    let config = setup.scratch.join("etc/nonrootd.toml");
    let out = setup.ctl(None, &["--config", config.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("○ nonrootd is not running ("), "{stdout}");
    assert!(
        stdout.contains("Local read-only inspection (nothing was changed):"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "– docker  {} (mode 0750): needs mode 0700 → 0750",
            setup.image.display()
        )),
        "{stdout}"
    );
    assert_eq!(mode_of(&setup.image), 0o700, "the inspection changed something");
    let json = setup.ctl(None, &["--config", config.to_str().unwrap(), "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["running"], false);
    assert_eq!(json["local_inspection"]["entries"][0]["outcome"], "would_change");
    // An apply that must be the daemon's does nothing here either.
    let out = setup.ctl(None, &["apply", "--require-daemon"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("nonrootctl: "), "{}", text(&out.stderr));
    assert_eq!(mode_of(&setup.image), 0o700, "applied in-process");
    let out = setup.ctl(
        None,
        &["--config", config.to_str().unwrap(), "apply", "--require-daemon"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--require-daemon asks the daemon"),
        "{}",
        text(&out.stderr)
    );
}

/// Owns org.nonrootd1 and never answers: what a hung daemon looks like to a caller.
struct Hung;

#[zbus::interface(name = "org.nonrootd1.Manager")]
impl Hung {
    async fn apply(&self, _duties: Vec<String>) -> String {
        std::future::pending().await
    }
    async fn status(&self) -> String {
        std::future::pending().await
    }
}

/// Serves `interface` at `path` under `name` on the bus from a thread of its own until the test
/// ends, running `then` on the connection once the name is owned; returns after that.
fn serve_in_background<I, F>(
    address: &str,
    (path, name): (&'static str, &'static str),
    interface: I,
    then: impl FnOnce(zbus::Connection) -> F + Send + 'static,
) where
    I: zbus::object_server::Interface,
    F: std::future::Future<Output = ()>,
{
    let address = address.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .serve_at(path, interface)
                .name(name)
                .build()
                .await
                .unwrap();
            ready_tx.send(()).unwrap();
            then(conn.clone()).await;
            std::future::pending::<()>().await;
        });
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn apply_gives_up_on_a_daemon_that_does_not_answer() {
    let setup = setup();
    let at = ("/org/nonrootd1", "org.nonrootd1");
    serve_in_background(&setup.bus.address, at, Hung, |_| async {});
    let out = setup.ctl(None, &["apply", "--require-daemon", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nonrootd did not answer within 300ms"),
        "{}",
        text(&out.stderr)
    );
    // status --json still prints one document: whether it runs is unknown, and why.
    let out = setup.ctl(None, &["status", "--json", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["running"], serde_json::Value::Null);
    assert_eq!(doc["error"], "nonrootd did not answer within 300ms");
}

/// Stands in for systemd's manager: `Subscribe()` times out as often as told (as a systemd busy
/// at boot may), then succeeds.
struct StandInSystemd {
    failures: usize,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl StandInSystemd {
    async fn subscribe(&self) -> zbus::fdo::Result<()> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call < self.failures {
            return Err(zbus::fdo::Error::TimedOut("busy booting".into()));
        }
        Ok(())
    }
}

#[test]
fn a_failed_subscription_to_systemd_is_tried_again_and_its_jobs_are_then_followed() {
    let systemd_policy = Path::new("/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf");
    let setup = setup_with_policies(&[systemd_policy]);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let manager = StandInSystemd {
        failures: 2,
        calls: calls.clone(),
    };
    let (job_tx, mut job_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let at = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1");
    serve_in_background(&setup.bus.address, at, manager, move |conn| async move {
        while let Some(unit) = job_rx.recv().await {
            let job = zbus::ObjectPath::try_from("/org/freedesktop/systemd1/job/7").unwrap();
            let manager = "org.freedesktop.systemd1.Manager";
            let body = (7u32, job, unit, "done");
            conn.emit_signal(None::<()>, at.0, manager, "JobRemoved", &body)
                .await
                .unwrap();
        }
    });

    let mut daemon = setup.start();
    // Two timeouts: tried again after 1 s, then after 2 s; the third call subscribes.
    daemon.wait_note("subscribed to systemd");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    let log = daemon.log_text();
    for wait in ["1s", "2s"] {
        assert!(log.contains(&format!("busy booting; trying again in {wait}")), "{log}");
    }
    assert_eq!(status_json(&setup)["following_systemd"], true);
    // The note may be the socket fixer's: the subscription's apply may still run.
    wait_until_idle(&setup);

    // Now a finished job of a followed unit is a cue: the image directory is fixed again.
    chmod(&setup.image, 0o700);
    job_tx.send("docker.service").unwrap();
    // Its STATUS= may come from the fixer (the sockets) before the image directory's apply.
    daemon.wait_note("docker.service: job done");
    wait_for(
        Duration::from_secs(10),
        || mode_of(&setup.image) == 0o750,
        "the image directory fixed on the job's cue",
    );
}

/// systemd leaving the bus (its name released: a shutdown, or the first half of a re-exec)
/// is shown: the daemon no longer says it follows systemd.
#[test]
fn systemd_leaving_the_bus_ends_following_it() {
    let systemd_policy = Path::new("/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf");
    let setup = setup_with_policies(&[systemd_policy]);
    let manager = StandInSystemd {
        failures: 0,
        calls: Default::default(),
    };
    let (leave_tx, leave_rx) = tokio::sync::oneshot::channel::<()>();
    let at = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1");
    serve_in_background(&setup.bus.address, at, manager, move |conn| async move {
        if leave_rx.await.is_ok() {
            conn.release_name(at.1).await.unwrap();
        }
    });
    let mut daemon = setup.start();
    daemon.wait_note("subscribed to systemd");
    assert_eq!(status_json(&setup)["following_systemd"], true);
    leave_tx.send(()).unwrap();
    wait_for(
        Duration::from_secs(5),
        || status_json(&setup)["following_systemd"] == false,
        "following_systemd: false",
    );
    assert!(
        daemon.log_text().contains("systemd left the bus"),
        "{}",
        daemon.log_text()
    );
}

/// An unreadable grant record fails the sockets, visibly, and nothing else: the startup apply
/// still fixes the image directory, Apply() answers with the failure and status is degraded.
#[test]
fn an_unreadable_grant_record_fails_apply_and_status_but_not_the_other_duties() {
    let setup = setup();
    write_root_file(&setup.scratch.join("state/grants.json"), "{ not json");
    let _daemon = setup.start();
    assert_eq!(mode_of(&setup.image), 0o750);
    let out = setup.ctl(None, &["apply", "--require-daemon"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("grants.json is corrupt"), "{report}");
    assert!(
        report.contains(&format!("failed       sockets {}", setup.sock.display())),
        "{report}"
    );
    let out = setup.ctl(Some(65534), &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        !can_connect_as(4321, 4321, &[], &setup.sock),
        "granted without a record"
    );
    // Once the record can be read, the socket is granted and the daemon is healthy again.
    std::fs::remove_file(setup.scratch.join("state/grants.json")).unwrap();
    let out = setup.ctl(None, &["apply", "--require-daemon"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(can_connect_as(4321, 4321, &[], &setup.sock));
    let out = setup.ctl(Some(65534), &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

/// Adds subids files in a directory of the scratch space, and a `[[tenant]]` "nobody" with
/// them, to the config; returns that directory.
fn with_tenant_nobody(setup: &Setup) -> PathBuf {
    let config_path = setup.scratch.join("etc/nonrootd.toml");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    let etc = setup.scratch.mkdir("subids", 0o755);
    config.push_str(&format!(
        "\n[subids]\nsubuid_file = \"{0}/subuid\"\nsubgid_file = \"{0}/subgid\"\nmin = 100000\nmax = 600100000\n\n[[tenant]]\nname = \"nobody\"\ncount = 1000\n",
        etc.display()
    ));
    write_root_file(&config_path, &config);
    etc
}

/// The sockets' row in the status is the socket fixer's latest: a startup apply that goes on
/// waiting for shadow's lock after its sockets were applied does not overwrite what the fixer
/// reported meanwhile.
#[test]
fn a_socket_granted_while_the_startup_waits_for_shadow_stays_granted_in_the_status() {
    let setup = setup();
    let etc = with_tenant_nobody(&setup);
    let mut holder = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(etc.join("subuid.lock"), format!("{}\0", holder.id())).unwrap();
    // Missing at the start; made while the startup apply waits for shadow's lock.
    std::fs::remove_file(&setup.sock).unwrap();
    let _daemon = std::thread::scope(|scope| {
        let daemon = scope.spawn(|| setup.start());
        wait_for(
            Duration::from_secs(10),
            || {
                let out = setup.ctl(None, &["status", "--json"]);
                serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|status| status["applying"]["text"] == "startup")
            },
            "the startup apply waiting",
        );
        let _listener = listen(&setup.sock, 0o660);
        wait_for(
            Duration::from_secs(10),
            || can_connect_as(4321, 4321, &[], &setup.sock),
            "the fixer's grant",
        );
        holder.kill().unwrap();
        holder.wait().unwrap();
        std::fs::remove_file(etc.join("subuid.lock")).unwrap();
        daemon.join().unwrap()
    });
    let status = status_json(&setup);
    assert_eq!(status["applying"], serde_json::Value::Null, "{status}");
    let sock = status["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["duty"] == "sockets")
        .unwrap();
    assert!(
        ["changed", "correct"].contains(&sock["outcome"].as_str().unwrap()),
        "{status}"
    );
}

/// A duty that failed is tried again on its own, backing off, with no event to trigger it:
/// here a `[[tenant]]` at startup, while nonrootd's quarantine record cannot be read.
#[test]
fn a_failed_duty_is_tried_again_without_an_event() {
    let setup = setup();
    let etc = with_tenant_nobody(&setup);
    let quarantine = setup.scratch.join("state/subids-quarantine.json");
    write_root_file(&quarantine, "{ not json");
    chmod(&setup.scratch.join("state"), 0o700);
    let _daemon = setup.start();
    let out = setup.ctl(None, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("nonrootd's state is unreadable"),
        "{}",
        text(&out.stdout)
    );
    std::fs::remove_file(&quarantine).unwrap();
    let subuid = etc.join("subuid");
    wait_for(
        Duration::from_secs(30),
        || std::fs::read_to_string(&subuid).is_ok_and(|text| text == "nobody:100000:1000\n"),
        "the retry to allocate the tenant",
    );
    // The file is written midway through the retry's apply: recorded once it ends.
    wait_until_idle(&setup);
    let status = status_json(&setup);
    assert_eq!(status["last_trigger"]["text"], "a retry (an apply failed)", "{status}");
    let out = setup.ctl(None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
