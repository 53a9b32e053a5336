//! Shared helpers for the integration tests: real files in temp dirs (ext4 or a private
//! tmpfs), real Unix sockets, and a connect probe that runs as a real non-root process.
#![allow(dead_code)] // each test binary uses a different part

pub mod bus;
pub mod testbed;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nonrootd::apply::{Engine, Request, apply_with_state};
use nonrootd::host::RealHost;
use nonrootd::ids::SystemIds;
use nonrootd_core::config::Config;
use nonrootd_core::duty::DutySet;
use nonrootd_core::report::Report;

/// A temp directory, optionally with a tmpfs mounted on it (unmounted on drop).
pub struct Scratch {
    /// Dropped first: unmounted before the directory is removed.
    tmpfs: Option<Tmpfs>,
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A directory on the disk's file system (ext4 on Debian's default install): in
    /// `/var/tmp`, which outlives reboots and so is on a disk, not in `$TMPDIR`, which may be a
    /// tmpfs (Debian 13's `/tmp`).
    pub fn disk() -> Scratch {
        let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        let fs = nix::sys::statfs::statfs(dir.path()).expect("statfs");
        assert_ne!(
            fs.filesystem_type(),
            nix::sys::statfs::TMPFS_MAGIC,
            "/var/tmp is a tmpfs here, so the disk tests would not test a disk"
        );
        Scratch { tmpfs: None, dir }
    }

    /// A directory with a fresh tmpfs on it.
    pub fn tmpfs() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmpfs = Some(mount_tmpfs(dir.path(), "nonrootd-test"));
        Scratch { tmpfs, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Creates root-owned directories with `mode`.
    pub fn mkdir(&self, rel: &str, mode: u32) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(&path).unwrap();
        chmod(&path, mode);
        path
    }
}

/// `program` run as `uid` (and the same gid, no supplementary groups) through setpriv, or as
/// root when `uid` is `None`.
pub fn command_as(uid: Option<u32>, program: &str) -> Command {
    match uid {
        None => Command::new(program),
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            let id = uid.to_string();
            cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--", program]);
            cmd
        }
    }
}

/// A mounted tmpfs, detached (with whatever is mounted below it) on drop, a failed test's
/// too.
#[must_use]
pub struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a fresh tmpfs (mode 0755) named `name` on `dir`.
pub fn mount_tmpfs(dir: &Path, name: &str) -> Tmpfs {
    run(
        "mount",
        &["-t", "tmpfs", "-o", "mode=0755", name, dir.to_str().unwrap()],
    );
    Tmpfs(dir.to_path_buf())
}

/// Bind-mounts `src` on `dst`, detached on drop like a tmpfs.
pub fn bind_mount(src: &Path, dst: &Path) -> Tmpfs {
    run("mount", &["--bind", src.to_str().unwrap(), dst.to_str().unwrap()]);
    Tmpfs(dst.to_path_buf())
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Binds a real listening Unix socket with `mode`; keep the listener alive while testing.
pub fn listen(path: &Path, mode: u32) -> UnixListener {
    let listener = UnixListener::bind(path).unwrap();
    chmod(path, mode);
    listener
}

pub fn getfacl(path: &Path) -> String {
    run(
        "getfacl",
        &["--omit-header", "--numeric", "--absolute-names", path.to_str().unwrap()],
    )
}

/// Can a process with these credentials (and no capabilities) `connect()` to `path`?
/// Forks a child that drops to the ids with raw system calls only, then connects.
pub fn can_connect_as(uid: u32, gid: u32, groups: &[u32], path: &Path) -> bool {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = c_path.as_bytes_with_nul();
    assert!(bytes.len() <= addr.sun_path.len(), "socket path too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: after fork the child calls only async-signal-safe system calls (setgroups,
    // setresgid, setresuid, socket, connect, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: see above; the child never returns into Rust code.
        unsafe {
            let ok = libc::setgroups(groups.len(), groups.as_ptr()) == 0
                && libc::setresgid(gid, gid, gid) == 0
                && libc::setresuid(uid, uid, uid) == 0;
            if !ok {
                libc::_exit(2);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            let rc = libc::connect(fd, (&raw const addr).cast(), len);
            libc::_exit(if rc == 0 { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "probe died: {status}");
    match libc::WEXITSTATUS(status) {
        0 => true,
        1 => false,
        other => panic!("probe could not drop privileges ({other})"),
    }
}

pub fn config(text: &str) -> Config {
    Config::from_sources(&[(PathBuf::from("/test/nonrootd.toml"), text.to_string())])
        .unwrap_or_else(|e| panic!("bad test config: {e:?}"))
}

/// Applies `config` for real, the way `nonrootctl apply` does.
pub fn apply_with(host: &RealHost, config: &Config, state: &Path, duties: DutySet) -> Report {
    apply_request(host, config, state, duties, None)
}

/// Applies `duties` of `config` for real, to `socket` alone when given (as after an event).
fn apply_request(host: &RealHost, config: &Config, state: &Path, duties: DutySet, socket: Option<&Path>) -> Report {
    let engine = Engine {
        host,
        ids: &SystemIds,
        daemon_json: Path::new("/nonexistent/daemon.json"),
    };
    let request = Request {
        duties,
        socket: socket.map(Path::to_path_buf),
        dry_run: false,
    };
    apply_with_state(&engine, config, &request, state, Duration::from_secs(10))
}

pub fn apply(config: &Config, state: &Path) -> Report {
    apply_with(&RealHost::default(), config, state, DutySet::HOST)
}

/// Applies `config` to `socket` alone, as the daemon's fixer does after an event on it.
pub fn apply_after_event(config: &Config, state: &Path, socket: &Path) -> Report {
    apply_request(&RealHost::default(), config, state, DutySet::HOST, Some(socket))
}

/// The outcome labels of a report, in order.
pub fn labels(report: &Report) -> Vec<&'static str> {
    report.entries.iter().map(|e| e.outcome.label()).collect()
}
