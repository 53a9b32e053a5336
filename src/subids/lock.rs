//! shadow-utils' own locks, taken in shadow's order: lckpwdf's `.pwd.lock` (an fcntl write
//! lock on the whole file), then `<file>.lock` for each file (a hard link to `<file>.<pid>`,
//! which holds `<pid>\0`). A `<file>.lock` whose pid is dead is stale and reclaimed; one
//! holding no valid pid is refused at once, as shadow refuses it, for a person to remove.
//!
//! Waits are bounded: both locks are polled until a deadline instead of blocking.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::SubidsError;

/// fcntl locks belong to the process, so threads of this one take turns here first.
static IN_PROCESS: Mutex<()> = Mutex::new(());

const POLL: Duration = Duration::from_millis(10);

/// Held locks; dropping them removes the lock files in reverse order, then releases
/// `.pwd.lock` (closing the file drops the fcntl lock).
pub(crate) struct Locks {
    lock_files: Vec<PathBuf>,
    _pwd: File,
    _in_process: MutexGuard<'static, ()>,
}

impl Drop for Locks {
    fn drop(&mut self) {
        for lock in self.lock_files.iter().rev() {
            let _ = fs::remove_file(lock);
        }
    }
}

/// Locks `<dir of the first file>/.pwd.lock`, then each file in order, within `timeout`.
pub(crate) fn lock(files: &[&Path], timeout: Duration) -> Result<Locks, SubidsError> {
    let deadline = Instant::now() + timeout;
    let in_process = IN_PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
    let pwd_lock = files[0].with_file_name(".pwd.lock");
    let pwd = lock_pwd(&pwd_lock, deadline)?;
    let mut locks = Locks {
        lock_files: Vec::new(),
        _pwd: pwd,
        _in_process: in_process,
    };
    for (i, file) in files.iter().enumerate() {
        if files[..i].contains(file) {
            continue;
        }
        let lock = suffixed(file, ".lock");
        lock_file(file, &lock, deadline)?;
        locks.lock_files.push(lock);
    }
    Ok(locks)
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// lckpwdf: a write lock on the whole file, as glibc takes it.
fn lock_pwd(path: &Path, deadline: Instant) -> Result<File, SubidsError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| SubidsError::io(path, "open", e))?;
    let whole_file = |l_type| libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        match fcntl(&file, FcntlArg::F_SETLK(&whole_file(libc::F_WRLCK))) {
            Ok(_) => return Ok(file),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN | Errno::EACCES) if Instant::now() < deadline => sleep(POLL),
            Err(Errno::EAGAIN | Errno::EACCES) => {
                let mut probe = whole_file(libc::F_WRLCK);
                let holder = match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
                    Ok(_) if probe.l_type == libc::F_UNLCK as libc::c_short => None,
                    Ok(_) => u32::try_from(probe.l_pid).ok(),
                    Err(_) => None,
                };
                return Err(SubidsError::Locked {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            Err(e) => return Err(SubidsError::io(path, "lock", e.into())),
        }
    }
}

/// What one attempt at `<file>.lock` found.
enum Attempt {
    Got,
    /// Held by a live process (its pid, when the lock file names one).
    Held(Option<u32>),
}

/// shadow's `commonio_lock_nowait`, retried until the deadline.
fn lock_file(file: &Path, lock: &Path, deadline: Instant) -> Result<(), SubidsError> {
    let pid = std::process::id();
    let tmp = suffixed(file, &format!(".{pid}"));
    loop {
        let attempt = try_lock_file(&tmp, lock, pid);
        let _ = fs::remove_file(&tmp);
        match attempt? {
            Attempt::Got => return Ok(()),
            Attempt::Held(_) if Instant::now() < deadline => sleep(POLL),
            Attempt::Held(holder) => {
                return Err(SubidsError::Locked {
                    path: lock.to_path_buf(),
                    holder,
                });
            }
        }
    }
}

fn try_lock_file(tmp: &Path, lock: &Path, pid: u32) -> Result<Attempt, SubidsError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| SubidsError::io(tmp, "create", e))?;
    f.write_all(format!("{pid}\0").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| SubidsError::io(tmp, "write", e))?;
    drop(f);
    if let Some(attempt) = link(tmp, lock)? {
        return Ok(attempt);
    }
    let holder = match read_pid(lock) {
        Ok(holder) => holder,
        // Removed between our link and our read: try again at the next poll.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Attempt::Held(None)),
        Err(e) => return Err(SubidsError::io(lock, "read", e)),
    };
    match holder {
        // No valid pid: shadow refuses it too, and it never clears by itself.
        None => Err(SubidsError::InvalidLock {
            path: lock.to_path_buf(),
        }),
        Some(holder) if holder != pid && alive(holder) => Ok(Attempt::Held(Some(holder))),
        // Dead, or a leftover of an earlier process with our pid (we never hold it here).
        Some(_) => {
            match fs::remove_file(lock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SubidsError::io(lock, "remove stale lock", e)),
            }
            Ok(link(tmp, lock)?.unwrap_or(Attempt::Held(None)))
        }
    }
}

/// `link(tmp, lock)`: `Some(Got)` when it made the lock and `tmp` has exactly two links (as
/// shadow checks), `Some(Held)` on a wrong link count, `None` when the lock exists.
fn link(tmp: &Path, lock: &Path) -> Result<Option<Attempt>, SubidsError> {
    match fs::hard_link(tmp, lock) {
        Ok(()) => {
            let links = fs::metadata(tmp).map_err(|e| SubidsError::io(tmp, "stat", e))?.nlink();
            if links == 2 {
                Ok(Some(Attempt::Got))
            } else {
                let _ = fs::remove_file(lock);
                Ok(Some(Attempt::Held(None)))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(SubidsError::io(lock, "create", e)),
    }
}

/// The pid in a lock file: decimal digits, optionally ended by NUL or a newline.
fn read_pid(lock: &Path) -> io::Result<Option<u32>> {
    let mut buf = Vec::new();
    File::open(lock)?.take(32).read_to_end(&mut buf)?;
    let text = buf.split(|&b| b == 0).next().unwrap_or_default().trim_ascii();
    let pid = std::str::from_utf8(text).ok().and_then(|t| t.parse::<u32>().ok());
    Ok(pid.filter(|&p| p > 0 && p <= i32::MAX as u32))
}

fn alive(pid: u32) -> bool {
    !matches!(kill(Pid::from_raw(pid as i32), None), Err(Errno::ESRCH))
}
