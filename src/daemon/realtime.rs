//! The socket fixer's scheduling: real-time (`SCHED_FIFO`, priority 1) only while it waits for
//! a new socket and writes its grant, normal for everything else (logs, the grant record,
//! re-checks, reloads). Woken at real-time priority, the write does not wait for a CPU behind
//! the processes busy starting Docker, or behind the very client that wants to connect.
//!
//! Needs `CAP_SYS_NICE` (the unit's `LimitRTTIME=` ends the daemon should a real-time thread
//! ever run that long without sleeping). Refused (no `CAP_SYS_NICE`, `RestrictRealtime=yes`, a
//! cgroup without a real-time budget on kernels with `CONFIG_RT_GROUP_SCHED`), the fixer runs
//! at normal priority and says so once.

use std::io;

use tracing::{info, warn};

/// The lowest real-time priority: above every normal process, below any real-time one.
const PRIORITY: libc::c_int = 1;

/// Where the calling thread is scheduled.
pub struct Priority {
    /// Real-time was granted at start.
    available: bool,
    /// The thread is real-time now.
    raised: bool,
}

impl Priority {
    /// Asks for real-time priority for the calling thread and logs the answer.
    pub fn request() -> Priority {
        match set(libc::SCHED_FIFO, PRIORITY) {
            Ok(()) => {
                info!("socket fixer: real-time priority {PRIORITY} while granting new sockets");
                Priority {
                    available: true,
                    raised: true,
                }
            }
            Err(e) => {
                warn!(
                    "socket fixer: no real-time priority ({e}); new sockets are granted at normal \
                     priority (CAP_SYS_NICE, RestrictRealtime=, or a cgroup without a real-time budget)"
                );
                Priority {
                    available: false,
                    raised: false,
                }
            }
        }
    }

    /// Back to real-time, before waiting for the next socket.
    pub fn raise(&mut self) {
        if self.available && !self.raised {
            match set(libc::SCHED_FIFO, PRIORITY) {
                Ok(()) => self.raised = true,
                Err(e) => {
                    warn!("socket fixer: real-time priority refused now ({e}); staying at normal priority");
                    self.available = false;
                }
            }
        }
    }

    /// Normal priority, for everything after the writes.
    pub fn lower(&mut self) {
        if self.raised {
            // Lowering one's own policy is always allowed.
            if let Err(e) = set(libc::SCHED_OTHER, 0) {
                warn!("socket fixer: cannot leave real-time priority ({e})");
                return;
            }
            self.raised = false;
        }
    }

    #[cfg(test)]
    pub fn is_raised(&self) -> bool {
        self.raised
    }
}

/// Sets the calling thread's policy. `SCHED_RESET_ON_FORK` always: a process started from
/// this thread never inherits real-time, and the flag, once set, may only be dropped with
/// `CAP_SYS_NICE`.
fn set(policy: libc::c_int, priority: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; the kernel only reads `param`.
    let ret = unsafe { libc::sched_setscheduler(0, policy | libc::SCHED_RESET_ON_FORK, &param) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's policy (without `SCHED_RESET_ON_FORK`) and whether that flag is set.
    fn policy() -> (libc::c_int, bool) {
        // SAFETY: pid 0 is the calling thread.
        let policy = unsafe { libc::sched_getscheduler(0) };
        assert!(policy >= 0, "{}", io::Error::last_os_error());
        (
            policy & !libc::SCHED_RESET_ON_FORK,
            policy & libc::SCHED_RESET_ON_FORK != 0,
        )
    }

    #[test]
    fn real_time_only_between_raise_and_lower_and_never_inherited() {
        // On a thread of its own: the policy is per thread.
        std::thread::spawn(|| {
            let mut priority = Priority::request();
            if !priority.available {
                // Not root, or a cgroup without real-time budget: everything stays normal.
                priority.raise();
                assert_eq!(policy().0, libc::SCHED_OTHER);
                return;
            }
            assert_eq!(policy(), (libc::SCHED_FIFO, true));
            priority.lower();
            assert_eq!(policy(), (libc::SCHED_OTHER, true));
            assert!(!priority.is_raised());
            priority.lower();
            priority.raise();
            assert_eq!(policy(), (libc::SCHED_FIFO, true));
            priority.lower();
        })
        .join()
        .unwrap();
    }
}
