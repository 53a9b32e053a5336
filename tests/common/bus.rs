//! A private `dbus-daemon` (the system config, our policy included) and a real `nonrootd` on it,
//! with its sd_notify messages captured.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `dbus-daemon` of type system on a socket in a temp dir; killed (by PID) on drop.
pub struct PrivateBus {
    child: Child,
    pub address: String,
}

impl PrivateBus {
    pub fn start(dir: &Path) -> PrivateBus {
        PrivateBus::start_with_policies(dir, &[])
    }

    /// The bus with more policy files included (systemd's, for a stand-in systemd).
    pub fn start_with_policies(dir: &Path, policies: &[&Path]) -> PrivateBus {
        let system = std::fs::read_to_string("/usr/share/dbus-1/system.conf").expect("dbus is installed");
        let socket = dir.join("bus.sock");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/dbus/org.nonrootd1.conf");
        let mut config = String::new();
        for line in system.lines() {
            let trimmed = line.trim();
            let dropped = [
                "<user>",
                "<fork/>",
                "<pidfile>",
                "<syslog/>",
                "<servicehelper>",
                "<standard_system_servicedirs/>",
            ];
            if dropped.iter().any(|d| trimmed.starts_with(d)) {
                continue;
            }
            if trimmed.starts_with("<listen>") {
                config.push_str(&format!("  <listen>unix:path={}</listen>\n", socket.display()));
                continue;
            }
            if trimmed == "</busconfig>" {
                for policy in std::iter::once(policy.as_path()).chain(policies.iter().copied()) {
                    config.push_str(&format!("  <include>{}</include>\n", policy.display()));
                }
            }
            config.push_str(line);
            config.push('\n');
        }
        let config_path = dir.join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        // The socket file exists from bind(); connections are taken only from listen().
        let listening = || std::os::unix::net::UnixStream::connect(&socket).is_ok();
        wait_for(Duration::from_secs(10), listening, "the bus to listen");
        // Unprivileged test callers must reach the socket through the temp dir.
        super::chmod(dir, 0o755);
        PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` until it holds, or panics after `limit` naming `what`.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running `nonrootd`, killed (by PID) on drop unless stopped.
pub struct DaemonProcess {
    pub child: Child,
    /// sd_notify messages, read by a thread so that the daemon never waits on a full queue.
    notes_rx: std::sync::mpsc::Receiver<String>,
    pub notes: Vec<String>,
    pub log: PathBuf,
}

impl DaemonProcess {
    /// Starts `nonrootd` with `config` and `state`, on `bus` (or on a bus address that does not
    /// exist), and waits for READY=1.
    pub fn start(dir: &Path, bus: Option<&PrivateBus>, config: &Path, state: &Path) -> DaemonProcess {
        DaemonProcess::start_with_env(dir, bus, config, state, &[])
    }

    /// [`DaemonProcess::start`] with these environment variables set (none is by default).
    pub fn start_with_env(
        dir: &Path,
        bus: Option<&PrivateBus>,
        config: &Path,
        state: &Path,
        env: &[(&str, &str)],
    ) -> DaemonProcess {
        let notify_path = dir.join(format!("notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let (notes_tx, notes_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf) {
                if notes_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                    break;
                }
            }
        });
        let log = dir.join("nonrootd.log");
        let address = bus.map_or_else(
            || format!("unix:path={}/no-bus-here", dir.display()),
            |b| b.address.clone(),
        );
        let child = Command::new(env!("CARGO_BIN_EXE_nonrootd"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ])
            .env("DBUS_SYSTEM_BUS_ADDRESS", address)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nonrootd");
        let mut daemon = DaemonProcess {
            child,
            notes_rx,
            notes: Vec::new(),
            log,
        };
        daemon.wait_note("READY=1");
        daemon
    }

    /// Reads sd_notify messages until one contains `wanted`.
    pub fn wait_note(&mut self, wanted: &str) -> String {
        loop {
            let note = self
                .notes_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("no {wanted} from nonrootd: {e}; log:\n{}", self.log_text()));
            self.notes.push(note.clone());
            if note.contains(wanted) {
                return note;
            }
        }
    }

    /// Reads the sd_notify messages sent so far, without waiting.
    pub fn read_notes(&mut self) {
        self.notes.extend(self.notes_rx.try_iter());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
