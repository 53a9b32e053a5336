//! shadow-utils' own locks, taken in shadow's order: lckpwdf's `.pwd.lock` (an fcntl write
//! lock on the whole file), then `<file>.lock` for each file (a hard link to `<file>.<pid>`,
//! which holds `<pid>\0`; a second lock in the same directory is a link to the first). A
//! `<file>.lock` whose pid is dead is stale and reclaimed; one holding no valid pid is refused
//! at once, as shadow refuses it, for a person to remove.
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
    _lock_files: LockFiles,
    _pwd: File,
    _in_process: MutexGuard<'static, ()>,
}

/// Lock files of ours, removed on drop, the last first.
struct LockFiles(Vec<PathBuf>);

impl Drop for LockFiles {
    fn drop(&mut self) {
        for lock in self.0.iter().rev() {
            let _ = fs::remove_file(lock);
        }
    }
}

/// Locks `<dir of the first file>/.pwd.lock`, then each file in order, within `timeout`. Under
/// `.pwd.lock` each `<file>.lock` is tried once, as shadow does (a holder of its own would hold
/// `.pwd.lock` too); one held by another live process releases everything, so that `passwd`
/// and `useradd` are not kept waiting meanwhile, and the whole is tried again after a pause.
pub(crate) fn lock(files: &[&Path], timeout: Duration) -> Result<Locks, SubidsError> {
    let deadline = Instant::now() + timeout;
    let in_process = IN_PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
    let pwd_lock = files[0].with_file_name(".pwd.lock");
    loop {
        let pwd = lock_pwd(&pwd_lock, deadline, timeout)?;
        match lock_files(files)? {
            Ok(lock_files) => {
                return Ok(Locks {
                    _lock_files: lock_files,
                    _pwd: pwd,
                    _in_process: in_process,
                });
            }
            Err((lock, holder)) if Instant::now() >= deadline => {
                return Err(SubidsError::Locked {
                    path: lock,
                    holder,
                    waited: timeout,
                });
            }
            Err(_) => {
                drop(pwd);
                sleep(POLL);
            }
        }
    }
}

/// One try at each file's `<file>.lock`, under `.pwd.lock`: all of them, or the first one that
/// another live process holds (its pid, when it names one), with ours removed again.
fn lock_files(files: &[&Path]) -> Result<Result<LockFiles, (PathBuf, Option<u32>)>, SubidsError> {
    let mut taken = LockFiles(Vec::new());
    for (i, file) in files.iter().enumerate() {
        if files[..i].contains(file) {
            continue;
        }
        let lock = suffixed(file, ".lock");
        // A lock of ours in the same directory already holds our flushed pid: link that.
        let ours = taken.0.iter().find(|l| l.parent() == lock.parent());
        let source = match ours {
            Some(ours) => Source::Held(ours),
            None => Source::PidFile(file),
        };
        match lock_file(source, &lock)? {
            Attempt::Got => taken.0.push(lock),
            Attempt::Held(holder) => return Ok(Err((lock, holder))),
        }
    }
    Ok(Ok(taken))
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// lckpwdf: a write lock on the whole file, as glibc takes it.
fn lock_pwd(path: &Path, deadline: Instant, timeout: Duration) -> Result<File, SubidsError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
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
                    waited: timeout,
                });
            }
            Err(e) => return Err(SubidsError::io(path, "lock", e.into())),
        }
    }
}

/// What a lock is linked from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// shadow's way, for the first lock in a directory: a fresh `<file>.<pid>` holding
    /// `<pid>\0`, flushed so that the pid is readable after a crash, and removed after the
    /// attempt.
    PidFile(&'a Path),
    /// A lock of ours in the same directory, which already is such a file: taking both locks
    /// of /etc costs one flush, and nothing but our locks is left if we are killed.
    Held(&'a Path),
}

/// What one attempt at `<file>.lock` found.
enum Attempt {
    Got,
    /// Held by a live process (its pid, when the lock file names one).
    Held(Option<u32>),
}

/// shadow's `commonio_lock_nowait`: one try.
fn lock_file(source: Source<'_>, lock: &Path) -> Result<Attempt, SubidsError> {
    let pid = std::process::id();
    match source {
        Source::Held(ours) => try_lock_file(ours, lock, pid),
        Source::PidFile(file) => {
            let tmp = suffixed(file, &format!(".{pid}"));
            let attempt = write_pid_file(&tmp, pid).and_then(|()| try_lock_file(&tmp, lock, pid));
            let _ = fs::remove_file(&tmp);
            attempt
        }
    }
}

/// A new inode at `tmp` (a leftover of a crashed process with our pid is removed first)
/// holding `<pid>\0`, flushed.
fn write_pid_file(tmp: &Path, pid: u32) -> Result<(), SubidsError> {
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SubidsError::io(tmp, "remove", e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(|e| SubidsError::io(tmp, "create", e))?;
    f.write_all(format!("{pid}\0").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| SubidsError::io(tmp, "write", e))
}

fn try_lock_file(source: &Path, lock: &Path, pid: u32) -> Result<Attempt, SubidsError> {
    if let Some(attempt) = link(source, lock)? {
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
        // Dead, or a leftover of an earlier process with our pid: we hold no lock of this
        // name, as no two of our paths name one file (`Settings::refuse_clashing_files`).
        Some(_) => {
            match fs::remove_file(lock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SubidsError::io(lock, "remove stale lock", e)),
            }
            Ok(link(source, lock)?.unwrap_or(Attempt::Held(None)))
        }
    }
}

/// `link(source, lock)`: `Some(Got)` when it made the lock and `source` has exactly two links
/// (as shadow checks its `<file>.<pid>`), `Some(Held)` on a wrong count, `None` when the lock
/// exists.
fn link(source: &Path, lock: &Path) -> Result<Option<Attempt>, SubidsError> {
    match fs::hard_link(source, lock) {
        Ok(()) => {
            let links = fs::metadata(source)
                .map_err(|e| SubidsError::io(source, "stat", e))?
                .nlink();
            if links == 2 {
                Ok(Some(Attempt::Got))
            } else {
                let _ = fs::remove_file(lock);
                Ok(Some(Attempt::Held(None)))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        // The lock's directory is the source's: the source is what went missing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SubidsError::io(source, "link", e)),
        Err(e) => Err(SubidsError::io(lock, "create", e)),
    }
}

/// The pid in a lock file: decimal digits, optionally ended by NUL or a newline.
fn read_pid(lock: &Path) -> io::Result<Option<u32>> {
    let mut buf = Vec::new();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(lock)?;
    file.take(32).read_to_end(&mut buf)?;
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
    fn a_crashed_process_with_our_pid_leaves_nothing_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let (subuid, subgid) = (dir.path().join("subuid"), dir.path().join("subgid"));
        // It died holding both locks, its subuid.<pid> still linked as both.
        let leftover = suffixed(&subuid, &format!(".{}", std::process::id()));
        fs::write(&leftover, format!("{}\0", std::process::id())).unwrap();
        fs::hard_link(&leftover, suffixed(&subuid, ".lock")).unwrap();
        fs::hard_link(&leftover, suffixed(&subgid, ".lock")).unwrap();
        let locks = lock(&[&subuid, &subgid], Duration::from_millis(300));
        assert!(locks.is_ok(), "the stale lock is reclaimed through a fresh pid file");
        assert!(!leftover.exists());
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
