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
    let mut pid_file: Option<PidFile> = None;
    for (i, file) in files.iter().enumerate() {
        if files[..i].contains(file) {
            continue;
        }
        let pid_file = match pid_file.take() {
            Some(same_dir) if same_dir.path.parent() == file.parent() => pid_file.insert(same_dir),
            // Dropping the other one removes it: its locks hold their own links.
            _ => pid_file.insert(PidFile::create(file)?),
        };
        let lock = suffixed(file, ".lock");
        lock_file(pid_file, &lock, deadline)?;
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

/// shadow's `<file>.<pid>`: it holds `<pid>\0`, flushed as shadow flushes it so that the pid
/// of a lock is readable after a crash. One is made per directory and linked as every lock
/// there, so taking both locks of /etc costs one flush; it is removed once they are taken.
struct PidFile {
    path: PathBuf,
    pid: u32,
    /// Its link count: 1, plus one per lock taken through it.
    links: u64,
}

impl PidFile {
    fn create(file: &Path) -> Result<PidFile, SubidsError> {
        let pid = std::process::id();
        let path = suffixed(file, &format!(".{pid}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| SubidsError::io(&path, "create", e))?;
        // From here on, dropping it removes it.
        let pid_file = PidFile { path, pid, links: 1 };
        file.write_all(format!("{pid}\0").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| SubidsError::io(&pid_file.path, "write", e))?;
        Ok(pid_file)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What one attempt at `<file>.lock` found.
enum Attempt {
    Got,
    /// Held by a live process (its pid, when the lock file names one).
    Held(Option<u32>),
}

/// shadow's `commonio_lock_nowait`, retried until the deadline.
fn lock_file(pid_file: &mut PidFile, lock: &Path, deadline: Instant) -> Result<(), SubidsError> {
    loop {
        match try_lock_file(pid_file, lock)? {
            Attempt::Got => {
                pid_file.links += 1;
                return Ok(());
            }
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

fn try_lock_file(pid_file: &PidFile, lock: &Path) -> Result<Attempt, SubidsError> {
    if let Some(attempt) = link(pid_file, lock)? {
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
        Some(holder) if holder != pid_file.pid && alive(holder) => Ok(Attempt::Held(Some(holder))),
        // Dead, or a leftover of an earlier process with our pid (we never hold it here).
        Some(_) => {
            match fs::remove_file(lock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SubidsError::io(lock, "remove stale lock", e)),
            }
            Ok(link(pid_file, lock)?.unwrap_or(Attempt::Held(None)))
        }
    }
}

/// `link(pid file, lock)`: `Some(Got)` when it made the lock and the pid file gained exactly
/// that link (shadow checks the count), `Some(Held)` on a wrong count, `None` when the lock
/// exists.
fn link(pid_file: &PidFile, lock: &Path) -> Result<Option<Attempt>, SubidsError> {
    let tmp = &pid_file.path;
    match fs::hard_link(tmp, lock) {
        Ok(()) => {
            let links = fs::metadata(tmp).map_err(|e| SubidsError::io(tmp, "stat", e))?.nlink();
            if links == pid_file.links + 1 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_of(file: &Path) -> (u64, u64, Vec<u8>) {
        let lock = suffixed(file, ".lock");
        let meta = fs::metadata(&lock).unwrap();
        (meta.ino(), meta.nlink(), fs::read(&lock).unwrap())
    }

    #[test]
    fn locks_in_one_directory_share_one_flushed_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let (subuid, subgid) = (dir.path().join("subuid"), dir.path().join("subgid"));
        let locks = lock(&[&subuid, &subgid], Duration::from_secs(1)).unwrap();
        let pid = format!("{}\0", std::process::id()).into_bytes();
        let (uid_lock, gid_lock) = (lock_of(&subuid), lock_of(&subgid));
        assert_eq!(uid_lock, (gid_lock.0, 2, pid.clone()), "one inode, linked twice");
        assert_eq!(gid_lock.2, pid);
        assert!(!suffixed(&subuid, &format!(".{}", std::process::id())).exists());
        drop(locks);
        assert!(!suffixed(&subuid, ".lock").exists() && !suffixed(&subgid, ".lock").exists());
    }

    #[test]
    fn locks_in_two_directories_have_their_own_pid_files() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (subuid, subgid) = (one.path().join("subuid"), two.path().join("subgid"));
        let _locks = lock(&[&subuid, &subgid], Duration::from_secs(1)).unwrap();
        let (uid_lock, gid_lock) = (lock_of(&subuid), lock_of(&subgid));
        assert_ne!(uid_lock.0, gid_lock.0);
        assert_eq!((uid_lock.1, gid_lock.1), (1, 1));
        assert_eq!(fs::read_dir(two.path()).unwrap().count(), 1, "only subgid.lock");
    }

    #[test]
    fn a_lock_not_taken_leaves_no_lock_and_no_pid_file_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let (subuid, subgid) = (dir.path().join("subuid"), dir.path().join("subgid"));
        // Held by a live process: our parent (the test harness's own pid would be ours).
        let holder = nix::unistd::getppid().as_raw();
        fs::write(suffixed(&subgid, ".lock"), format!("{holder}\0")).unwrap();
        let Err(err) = lock(&[&subuid, &subgid], Duration::from_millis(30)) else {
            panic!("locked a file that another process holds");
        };
        assert!(
            matches!(err, SubidsError::Locked { holder: Some(h), .. } if h as i32 == holder),
            "{err}"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.contains(&".pwd.lock".into()) && names.contains(&"subgid.lock".into()),
            "{names:?}"
        );
    }
}
