//! A throwaway systemd 252 with the system bus and Debian's dockerd (`scripts/testbed`), one per
//! test, destroyed on drop. Tests that boot one run one at a time ([`Testbed::boot`] takes a lock).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Testbed {
    pub dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed")
}

impl Testbed {
    /// Boots a fresh testbed in its own directory under /var/tmp (a disk file system).
    pub fn boot(name: &str) -> Testbed {
        assert!(
            !Path::new(env!("CARGO_MANIFEST_DIR")).starts_with("/tmp"),
            "the testbed has a /tmp of its own and cannot see this checkout: clone it outside /tmp"
        );
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = PathBuf::from(format!("/var/tmp/nonrootd-e2e-{name}-{}", std::process::id()));
        let testbed = Testbed { dir, _turn: turn };
        testbed.run_script(&["destroy"]);
        testbed.run_script(&["boot"]);
        testbed
    }

    fn run_script(&self, args: &[&str]) -> Output {
        let out = Command::new(script())
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("scripts/testbed");
        assert!(
            out.status.success(),
            "testbed {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// Runs a shell command inside; returns its output whatever the exit status.
    pub fn try_sh(&self, script: &str) -> Output {
        Command::new(self::script())
            .arg("--dir")
            .arg(&self.dir)
            .args(["exec", "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("scripts/testbed exec")
    }

    /// Runs a shell command inside and returns its stdout; panics when it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = self.try_sh(script);
        assert!(
            out.status.success(),
            "in testbed: {script}\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Polls a shell condition inside until it succeeds, or panics after `limit`.
    pub fn wait_until(&self, limit: Duration, script: &str) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.try_sh(script);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: {script}\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Installs the freshly built daemon the way the package does, minus Docker's hook (so every
    /// fix is the daemon's): binaries, the shipped unit, the D-Bus policy; `config` becomes
    /// nonrootd.toml and `drop_in`, when given, a drop-in of the unit. Then starts it.
    pub fn install_built(&self, config: &str, drop_in: Option<&str>) {
        let repo = env!("CARGO_MANIFEST_DIR");
        self.sh(&format!(
            "set -e
             install -m755 {nonrootd} /usr/sbin/nonrootd
             install -m755 {nonrootctl} /usr/bin/nonrootctl
             install -m644 {repo}/systemd/nonrootd.service /etc/systemd/system/nonrootd.service
             install -m644 {repo}/packaging/dbus/org.nonrootd1.conf /usr/share/dbus-1/system.d/org.nonrootd1.conf
             mkdir -p /etc/nonrootd /etc/systemd/system/nonrootd.service.d
             cat > /etc/nonrootd/nonrootd.toml <<'NONROOTD_CONFIG'\n{config}NONROOTD_CONFIG
             {drop_in}
             systemctl reload dbus
             systemctl daemon-reload
             systemctl enable --now nonrootd
             systemctl is-active nonrootd",
            nonrootd = env!("CARGO_BIN_EXE_nonrootd"),
            nonrootctl = env!("CARGO_BIN_EXE_nonrootctl"),
            drop_in = drop_in.map_or_else(String::new, |d| {
                format!(
                    "cat > /etc/systemd/system/nonrootd.service.d/test.conf <<'NONROOTD_DROP_IN'\n{d}NONROOTD_DROP_IN"
                )
            }),
        ));
    }

    pub fn docker_image(&self, name: &str) {
        self.run_script(&["docker-image", name]);
    }

    /// Imports an image holding busybox and Debian's Docker client (with the two libraries it
    /// links), so that a container can talk to the Docker API.
    pub fn docker_client_image(&self, name: &str) {
        self.sh(&format!(
            "set -e; d=$(mktemp -d); mkdir -p $d/bin $d/usr/bin $d/lib/x86_64-linux-gnu $d/lib64 $d/tmp; chmod 1777 $d/tmp
             cp /usr/local/libexec/nonrootd-tests/busybox $d/bin/; for a in sh cat ls id; do ln -s busybox $d/bin/$a; done
             cp -L /usr/bin/docker $d/usr/bin/docker
             cp -L /lib/x86_64-linux-gnu/libc.so.6 $d/lib/x86_64-linux-gnu/; cp -L /lib64/ld-linux-x86-64.so.2 $d/lib64/
             tar -C $d -c . | /usr/bin/docker import - {name} >/dev/null; rm -rf $d"
        ));
    }

    pub fn stop(&self) {
        self.run_script(&["stop"]);
    }

    pub fn boot_again(&self) {
        self.run_script(&["boot"]);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::env::var_os("NONROOTD_KEEP_TESTBED").is_none() {
            let _ = Command::new(script())
                .arg("--dir")
                .arg(&self.dir)
                .arg("destroy")
                .stdin(Stdio::null())
                .output();
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
