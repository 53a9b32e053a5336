//! The socket fixer's scheduling: urgent only while it waits for a new socket and writes its
//! grant, normal for everything else (logs, the grant record, re-checks, reloads). Woken
//! urgent, the write does not wait for a CPU behind the processes busy starting Docker, or
//! behind the very client that wants to connect.
//!
//! Urgent is `SCHED_FIFO` priority 1: above every normal thread, below any other real-time
//! one; the unit's `LimitRTTIME=` ends the daemon should it ever run long without sleeping.
//! Where that is refused (kernels with `CONFIG_RT_GROUP_SCHED` give a service's cpu cgroup no
//! real-time budget), it is `SCHED_DEADLINE` with 1 ms of CPU per 10 ms, which needs no budget
//! and which the kernel throttles past that share. Both need `CAP_SYS_NICE`; refused both
//! (also: `SCHED_DEADLINE` for a thread kept off some CPUs), the fixer runs at normal priority
//! and says so once. `SCHED_RESET_ON_FORK` always: nothing started from this thread inherits
//! either.

use std::fmt;
use std::io;

use tracing::{info, warn};

/// How the fixer thread waits and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Urgent {
    Fifo,
    Deadline,
}

/// In order of preference: real-time where allowed (it yields to every other real-time thread;
/// deadline threads run before all of them).
const PREFERENCE: [Urgent; 2] = [Urgent::Fifo, Urgent::Deadline];

/// CPU time the fixer may use per period at deadline scheduling, in ns.
const DEADLINE_RUNTIME_NS: u64 = 1_000_000;
/// The period (and relative deadline: a constrained deadline would throttle a thread that
/// wakes between its deadline and the next period).
const DEADLINE_PERIOD_NS: u64 = 10_000_000;
/// The lowest real-time priority: above every normal thread, below every other real-time one.
const FIFO_PRIORITY: u32 = 1;

impl Urgent {
    fn attr(self) -> libc::sched_attr {
        match self {
            Urgent::Deadline => libc::sched_attr {
                sched_policy: libc::SCHED_DEADLINE as u32,
                sched_runtime: DEADLINE_RUNTIME_NS,
                sched_deadline: DEADLINE_PERIOD_NS,
                sched_period: DEADLINE_PERIOD_NS,
                ..normal()
            },
            Urgent::Fifo => libc::sched_attr {
                sched_policy: libc::SCHED_FIFO as u32,
                sched_priority: FIFO_PRIORITY,
                ..normal()
            },
        }
    }
}

impl fmt::Display for Urgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Urgent::Deadline => write!(
                f,
                "deadline scheduling ({} ms per {} ms)",
                DEADLINE_RUNTIME_NS / 1_000_000,
                DEADLINE_PERIOD_NS / 1_000_000
            ),
            Urgent::Fifo => write!(f, "real-time priority {FIFO_PRIORITY}"),
        }
    }
}

/// Where the calling thread is scheduled.
pub struct Priority {
    /// What was granted at start, if anything.
    urgent: Option<Urgent>,
    /// The thread is urgent now.
    raised: bool,
}

impl Priority {
    /// Makes the calling thread urgent (real-time, else deadline) and logs what it got.
    pub fn request() -> Priority {
        Self::request_from(&PREFERENCE)
    }

    fn request_from(choices: &[Urgent]) -> Priority {
        let mut refusals = Vec::new();
        for &urgent in choices {
            match set(&urgent.attr()) {
                Ok(()) => {
                    info!("socket fixer: {urgent} while granting new sockets");
                    return Priority {
                        urgent: Some(urgent),
                        raised: true,
                    };
                }
                Err(e) => refusals.push(format!("{urgent}: {e}")),
            }
        }
        warn!(
            "socket fixer: new sockets are granted at normal priority; refused: {} \
             (CAP_SYS_NICE, the system call filter, or a cgroup without a real-time budget)",
            refusals.join(", ")
        );
        Priority {
            urgent: None,
            raised: false,
        }
    }

    /// Urgent again, before waiting for the next socket.
    pub fn raise(&mut self) {
        if let (Some(urgent), false) = (self.urgent, self.raised) {
            match set(&urgent.attr()) {
                Ok(()) => self.raised = true,
                Err(e) => {
                    warn!("socket fixer: {urgent} refused now ({e}); staying at normal priority");
                    self.urgent = None;
                }
            }
        }
    }

    /// Normal priority, for everything after the writes.
    pub fn lower(&mut self) {
        if self.raised {
            // Lowering one's own policy is always allowed.
            if let Err(e) = set(&normal()) {
                warn!("socket fixer: cannot return to normal priority ({e})");
                return;
            }
            self.raised = false;
        }
    }
}

/// `SCHED_OTHER`, nice 0.
fn normal() -> libc::sched_attr {
    libc::sched_attr {
        size: size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        // Once set, the flag may only be dropped with CAP_SYS_NICE: always pass it.
        sched_flags: libc::SCHED_FLAG_RESET_ON_FORK as u64,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    }
}

/// Sets the calling thread's scheduling.
fn set(attr: &libc::sched_attr) -> io::Result<()> {
    // SAFETY: pid 0 is the calling thread; the kernel reads `attr.size` bytes of a valid
    // `sched_attr`, and flags must be 0.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::from_ref(attr), 0) };
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

    fn expected(urgent: Option<Urgent>) -> (libc::c_int, bool) {
        match urgent {
            Some(Urgent::Deadline) => (libc::SCHED_DEADLINE, true),
            Some(Urgent::Fifo) => (libc::SCHED_FIFO, true),
            None => (libc::SCHED_OTHER, false),
        }
    }

    /// On a thread of its own (scheduling is per thread): request, then lower and raise twice.
    fn request_lower_raise(choices: &[Urgent]) -> Option<Urgent> {
        let mut priority = Priority::request_from(choices);
        let urgent = priority.urgent;
        assert_eq!(policy(), expected(urgent));
        for _ in 0..2 {
            priority.lower();
            priority.lower();
            assert_eq!(policy().0, libc::SCHED_OTHER);
            priority.raise();
            assert_eq!(policy(), expected(urgent));
        }
        urgent
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Keeps the calling thread on CPU 0.
    fn only_cpu_0() {
        // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it, and
        // sched_setaffinity reads `size_of` bytes of it for the calling thread.
        unsafe {
            let mut one_cpu: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut one_cpu);
            let ret = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one_cpu);
            assert_eq!(ret, 0, "{}", io::Error::last_os_error());
        }
    }

    #[test]
    fn urgent_only_between_raise_and_lower_and_never_inherited() {
        let urgent = std::thread::spawn(|| request_lower_raise(&PREFERENCE)).join().unwrap();
        if is_root() {
            assert!(urgent.is_some());
        }
    }

    #[test]
    fn deadline_where_real_time_is_refused_and_normal_for_a_thread_kept_off_some_cpus() {
        let urgent = std::thread::spawn(|| request_lower_raise(&[Urgent::Deadline]))
            .join()
            .unwrap();
        if is_root() {
            assert_eq!(urgent, Some(Urgent::Deadline));
        }
        if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
            let urgent = std::thread::spawn(|| {
                only_cpu_0();
                request_lower_raise(&[Urgent::Deadline])
            })
            .join()
            .unwrap();
            assert_eq!(urgent, None);
        }
    }
}
