//! shadow-utils' locks: with `<file>.lock` or `.pwd.lock` held by another live process,
//! `allocate` waits a bounded time, then fails with nothing written; a `<file>.lock` left by a
//! dead process is reclaimed.

mod subids_support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use nonrootd::subids::{self, Settings, SubidsError};
use nonrootd_core::report::Outcome;
use subids_support::TempEtc;

const BEFORE: &str = "old:100000:65536\n";

fn prepared() -> (TempEtc, Settings) {
    let etc = TempEtc::new();
    etc.write("subuid", BEFORE);
    etc.write("subgid", BEFORE);
    let mut settings = etc.settings("");
    settings.lock_timeout = Duration::from_millis(300);
    (etc, settings)
}

/// A process in its own process group, killed with the whole group on drop.
struct Holder(Child);

impl Holder {
    fn spawn(cmd: &mut Command) -> Holder {
        Holder(cmd.process_group(0).stdin(Stdio::null()).spawn().expect("spawn"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn assert_nothing_written(etc: &TempEtc) {
    assert_eq!(etc.read("subuid"), BEFORE);
    assert_eq!(etc.read("subgid"), BEFORE);
    assert!(!etc.state().exists(), "no state written");
}

#[test]
fn file_lock_of_a_live_process_times_out() {
    for name in ["subuid.lock", "subgid.lock"] {
        let (etc, settings) = prepared();
        let holder = Holder::spawn(Command::new("sleep").arg("60"));
        etc.write(name, &format!("{}\0", holder.pid()));
        let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
        match &err {
            SubidsError::Locked {
                path,
                holder: Some(pid),
                waited,
            } => {
                assert_eq!(
                    (path, *pid, *waited),
                    (&etc.path(name), holder.pid(), settings.lock_timeout)
                );
            }
            other => panic!("{name}: {other}"),
        }
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert_nothing_written(&etc);
        assert_eq!(
            etc.read(name),
            format!("{}\0", holder.pid()),
            "another's lock is left alone"
        );
        assert!(
            !etc.path("subuid.lock").exists() || name == "subuid.lock",
            "our own lock is removed"
        );
    }
}

#[test]
fn pwd_lock_is_not_held_while_a_file_lock_is_waited_for() {
    let (etc, mut settings) = prepared();
    settings.lock_timeout = Duration::from_secs(20);
    let holder = Holder::spawn(Command::new("sleep").arg("60"));
    etc.write("subuid.lock", &format!("{}\0", holder.pid()));
    let waiting = std::thread::spawn(move || subids::allocate(&settings, "acme", None, false));
    // Another process (as passwd or useradd would) gets lckpwdf's lock meanwhile: shadow tries
    // a <file>.lock once under it, and so does nonrootd before it lets go and waits.
    let pwd_lock = etc.path(".pwd.lock");
    let taken_by_another = || {
        let script = "import fcntl, sys; fcntl.lockf(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)";
        Command::new("python3")
            .args(["-c", script])
            .arg(&pwd_lock)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    // Free again and again while nonrootd waits (it may hold the lock for the moment of each
    // try), not just once before it first took it: while the allocation still waits (for up to
    // 20 s; a loaded machine may start the probes slowly).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut free = 0;
    while free < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "lckpwdf's lock was free {free} times while nonrootd waited"
        );
        if pwd_lock.exists() && taken_by_another() {
            free += 1;
            std::thread::sleep(Duration::from_millis(50));
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Once the holder lets go, the waiting allocation goes through.
    std::fs::remove_file(etc.path("subuid.lock")).unwrap();
    let allocation = waiting.join().unwrap().expect("allocated once the lock is free");
    assert_eq!(allocation.tenant, "acme");
    assert!(etc.read("subuid").contains("acme:"));
}

#[test]
fn pwd_lock_held_by_shadow_times_out() {
    let (etc, settings) = TempEtc::copy_of_host_with(BEFORE);
    // vipw takes lckpwdf's lock, then waits for its "editor".
    let mut cmd = etc.shadow_command("exec vipw");
    let holder = Holder::spawn(
        cmd.env("EDITOR", "sleep 60 #")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    for _ in 0..1000 {
        if etc.path("passwd.lock").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(etc.path("passwd.lock").exists(), "vipw did not lock");
    let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
    match &err {
        SubidsError::Locked {
            path,
            holder: Some(pid),
            ..
        } => {
            assert_eq!((path, *pid), (&etc.path(".pwd.lock"), holder.pid()));
        }
        other => panic!("{other}"),
    }
    assert_eq!(etc.read("subuid"), BEFORE);
    assert_eq!(etc.read("subgid"), BEFORE);
    assert!(!etc.path("subuid.lock").exists());
    drop(holder);
    subids::allocate(&settings, "acme", None, false).expect("free once vipw is gone");
}

#[test]
fn stale_lock_of_a_dead_process_is_reclaimed() {
    let (etc, settings) = prepared();
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    etc.write("subuid.lock", &format!("{}\0", dead.id()));
    etc.write("subgid.lock", &format!("{}\0", std::process::id()));
    let a = subids::allocate(&settings, "acme", None, false).unwrap();
    assert_eq!(a.to_string(), "acme 165536 65536\n");
    assert!(!etc.path("subuid.lock").exists() && !etc.path("subgid.lock").exists());
}

#[test]
fn lock_without_a_pid_is_not_reclaimed() {
    let (etc, settings) = prepared();
    etc.write("subuid.lock", "garbage");
    let err = subids::allocate(&settings, "acme", None, false).unwrap_err();
    assert!(matches!(err, SubidsError::InvalidLock { .. }), "{err}");
    assert_nothing_written(&etc);
}

/// The `[[tenant]]`s of an apply wait for shadow's locks only as long as the apply's lock
/// timeout (a daemon's retry waits 1 s), then fail with nothing written.
#[test]
fn tenants_wait_for_a_held_lock_only_the_apply_s_timeout() {
    let (etc, _) = prepared();
    let holder = Holder::spawn(Command::new("sleep").arg("60"));
    etc.write("subuid.lock", &format!("{}\0", holder.pid()));
    let config = etc.config("[[tenant]]\nname = 0\n");
    let report = subids::ensure_tenants(
        &config,
        &nonrootd::ids::SystemIds,
        &etc.state(),
        false,
        Duration::from_millis(300),
    );
    assert_eq!(report.entries[0].outcome.label(), "failed", "{report:?}");
    let Outcome::Failed { error } = &report.entries[0].outcome else {
        unreachable!()
    };
    assert!(
        error.contains(&format!("locked by pid {} throughout the 300ms wait", holder.pid())),
        "{error}"
    );
    assert_nothing_written(&etc);
}
