//! One apply of the sockets duty at a time on a host: the daemon, the `ExecStartPost=` hook
//! and the CLI take the same `flock` in the state directory, so the grant record stays true.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LOCK_FILE: &str = "apply.lock";
/// Polling starts fine-grained (the holder is usually another apply of a few hundred
/// microseconds) and backs off to this.
const LONGEST_RETRY: Duration = Duration::from_millis(5);

/// The open lock file; a long-running caller keeps it and locks it per apply. Locks taken
/// through one `LockFile` do not exclude each other: one per thread.
pub struct LockFile {
    file: File,
    path: PathBuf,
}

/// Held while applying; released on drop.
pub struct ApplyLock<'a> {
    file: &'a File,
}

impl LockFile {
    pub fn open(state_dir: &Path) -> io::Result<LockFile> {
        let path = state_dir.join(LOCK_FILE);
        let file = open_lock_file(&path)?;
        Ok(LockFile { file, path })
    }

    /// Waits at most `timeout` for the lock. A lock file removed (and perhaps made again) since
    /// it was opened is another file than the one the others lock: it is opened again.
    pub fn acquire(&mut self, timeout: Duration) -> io::Result<ApplyLock<'_>> {
        let deadline = Instant::now() + timeout;
        let mut retry = Duration::from_micros(50);
        loop {
            match self.file.try_lock() {
                Ok(()) => match self.is_the_named_file() {
                    Ok(true) => break,
                    Ok(false) => {
                        let _ = self.file.unlock();
                        self.file = open_lock_file(&self.path)?;
                    }
                    // Not held by an error: the others must not wait for it.
                    Err(e) => {
                        let _ = self.file.unlock();
                        return Err(e);
                    }
                },
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(LONGEST_RETRY);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("another apply holds {} (waited {timeout:?})", self.path.display()),
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        Ok(ApplyLock { file: &self.file })
    }

    /// Whether the path still names the open file.
    fn is_the_named_file(&self) -> io::Result<bool> {
        let open = self.file.metadata()?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(named) => Ok((named.dev(), named.ino()) == (open.dev(), open.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl Drop for ApplyLock<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_removed_and_made_again_is_the_one_locked() {
        let state = tempfile::tempdir().unwrap();
        let mut kept = LockFile::open(state.path()).unwrap();
        std::fs::remove_file(state.path().join(LOCK_FILE)).unwrap();
        let mut other = LockFile::open(state.path()).unwrap();
        let held = other.acquire(Duration::ZERO).unwrap();
        assert_eq!(
            kept.acquire(Duration::ZERO).err().map(|e| e.kind()),
            Some(io::ErrorKind::TimedOut),
            "locked a file nobody else locks"
        );
        drop(held);
        kept.acquire(Duration::ZERO).unwrap();
    }
}
