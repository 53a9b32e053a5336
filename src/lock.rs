//! One apply at a time on a host: the daemon, the `ExecStartPost=` hook and the CLI take the
//! same `flock` in the state directory, so the grant record stays true.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

const LOCK_FILE: &str = "apply.lock";
/// Polling starts fine-grained (the holder is usually another apply of a few hundred
/// microseconds) and backs off to this.
const LONGEST_RETRY: Duration = Duration::from_millis(5);

/// Held while applying; released on drop.
pub struct ApplyLock {
    _held: Flock<File>,
}

impl ApplyLock {
    /// Waits at most `timeout` for the lock.
    pub fn acquire(state_dir: &Path, timeout: Duration) -> io::Result<ApplyLock> {
        let path = state_dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        let deadline = Instant::now() + timeout;
        let mut retry = Duration::from_micros(50);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(ApplyLock { _held: lock }),
                Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = back;
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(LONGEST_RETRY);
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("another apply holds {} (waited {timeout:?})", path.display()),
                    ));
                }
                Err((_, errno)) => return Err(errno.into()),
            }
        }
    }
}
