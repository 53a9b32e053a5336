//! One apply of the sockets duty at a time on a host: the daemon, the `ExecStartPost=` hook
//! and the CLI take the same `flock` in the state directory, so the grant record stays true.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
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
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        Ok(LockFile { file, path })
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire(&self, timeout: Duration) -> io::Result<ApplyLock<'_>> {
        let deadline = Instant::now() + timeout;
        let mut retry = Duration::from_micros(50);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(ApplyLock { file: &self.file }),
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
    }
}

impl Drop for ApplyLock<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
