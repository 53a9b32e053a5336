//! The socket fixer's scheduling: urgent while it waits for a new socket and writes its grant.
//! Woken urgent, the write does not wait for a CPU behind the processes busy starting Docker,
//! or behind the very client that wants to connect.
//!
//! Urgent is `SCHED_DEADLINE` with 1 ms of CPU per 10 ms: the kernel throttles the thread past
//! that share, so the thread keeps it for everything else too (logs, the grant record,
//! re-checks, reloads). It must: a thread that leaves `SCHED_DEADLINE` and comes back can be
//! left throttled with no replenishment pending (Linux 6.18 here: a C program switching
//! between deadline and normal scheduling stalls within seconds, and the fixer stalled for
//! minutes, a `SIGKILL` waiting on it), while one that stays never did. It needs no real-time
//! budget (kernels with `CONFIG_RT_GROUP_SCHED` give a
//! service's cpu cgroup none, and there a real-time thread in a service's cgroup keeps the
//! cgroup v2 cpu controller from being enabled). Where deadline scheduling is refused (a
//! thread kept off some CPUs, the deadline bandwidth used up), it is `SCHED_FIFO` priority 1:
//! above every normal thread, below any other real-time one, and only while waiting and
//! writing (normal priority for everything else); the unit's `LimitRTTIME=` ends the daemon
//! should it ever run long without sleeping. Both need `CAP_SYS_NICE`, and are used
//! only once [`confine`] made `sched_setattr` unable to reach any other thread or process;
//! refused both, the fixer runs at normal priority and says so. `SCHED_RESET_ON_FORK` always:
//! nothing started from this thread inherits either.

use std::fmt;
use std::io;

use tracing::{info, warn};

/// How the fixer thread waits and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Urgent {
    Fifo,
    Deadline,
}

/// In order of preference: deadline scheduling, bounded by the kernel, else real-time.
const PREFERENCE: [Urgent; 2] = [Urgent::Deadline, Urgent::Fifo];

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

/// Proof that `sched_setattr` reaches only the calling thread in this process (see [`confine`]).
pub struct Confined(());

/// Makes `sched_setattr` fail with `EPERM` for any target but the calling thread (pid 0), in
/// this thread and every thread it starts from now on: `CAP_SYS_NICE` would let it change any
/// process's scheduling. Also sets no_new_privs (which the filter needs without
/// `CAP_SYS_ADMIN`; the unit sets it anyway). Call before starting other threads. It bounds
/// whom the call reaches, not what the thread may give itself; the unit's own filter blocks
/// the other scheduling calls.
pub fn confine() -> io::Result<Confined> {
    let Some(arch) = AUDIT_ARCH_NATIVE else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no seccomp filter for this architecture",
        ));
    };
    let mut filter = own_thread_only_filter(arch);
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `program` points at `filter`, which outlives the call; the kernel copies it.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::from_ref(&program),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Confined(()))
}

/// This build's `AUDIT_ARCH_*`, where the filter knows it.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: Option<u32> = Some(0xc000_003e);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: Option<u32> = Some(0xc000_00b7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH_NATIVE: Option<u32> = None;
/// x32 system calls share x86-64's audit arch and carry this bit in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A classic BPF seccomp program: other architectures' calls and x32 calls fail (the daemon
/// makes none), `sched_setattr` passes only with pid 0 (the kernel reads the low 32 bits of
/// the argument as its `pid_t`), everything else passes on to the other filters.
fn own_thread_only_filter(native_arch: u32) -> Vec<libc::sock_filter> {
    const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const IF_AT_LEAST: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    let arch = std::mem::offset_of!(libc::seccomp_data, arch) as u32;
    let nr = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
    let low_half = if cfg!(target_endian = "little") { 0 } else { 4 };
    let pid = (std::mem::offset_of!(libc::seccomp_data, args) + low_half) as u32;
    // Jump offsets count the instructions skipped: `n` lands n + 1 further down.
    vec![
        /* 0 */ op(LOAD, arch, 0, 0),
        /* 1 */ op(IF_EQUAL, native_arch, 0, 6),
        /* 2 */ op(LOAD, nr, 0, 0),
        /* 3 */ op(IF_AT_LEAST, X32_SYSCALL_BIT, 4, 0),
        /* 4 */ op(IF_EQUAL, libc::SYS_sched_setattr as u32, 0, 2),
        /* 5 */ op(LOAD, pid, 0, 0),
        /* 6 */ op(IF_EQUAL, 0, 0, 1),
        /* 7 */ op(RETURN, libc::SECCOMP_RET_ALLOW, 0, 0),
        /* 8 */ op(RETURN, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32, 0, 0),
    ]
}

/// Where the calling thread is scheduled.
pub struct Priority {
    /// What may be tried, best first (nothing without [`Confined`]).
    preference: &'static [Urgent],
    /// What was granted, if anything.
    urgent: Option<Urgent>,
    /// The thread is urgent now.
    raised: bool,
}

impl Priority {
    /// Makes the calling thread urgent (deadline, else real-time) and logs what it got; always
    /// normal without [`Confined`].
    pub fn request(confined: Option<&Confined>) -> Priority {
        Self::request_from(if confined.is_some() { &PREFERENCE } else { &[] })
    }

    fn request_from(preference: &'static [Urgent]) -> Priority {
        let mut priority = Priority {
            preference,
            urgent: None,
            raised: false,
        };
        priority.grant_first_of(preference, Vec::new());
        priority
    }

    /// Tries the choices in turn; ends at normal priority with any refusals (those given
    /// included), says so.
    fn grant_first_of(&mut self, choices: &[Urgent], mut refusals: Vec<String>) {
        for &urgent in choices {
            match set(&urgent.attr()) {
                Ok(()) => {
                    let refused = match refusals.is_empty() {
                        true => String::new(),
                        false => format!("; refused: {}", refusals.join(", ")),
                    };
                    info!("socket fixer: {urgent} while granting new sockets{refused}");
                    (self.urgent, self.raised) = (Some(urgent), true);
                    return;
                }
                Err(e) => refusals.push(format!("{urgent}: {e}")),
            }
        }
        self.urgent = None;
        if !refusals.is_empty() {
            warn!(
                "socket fixer: new sockets are granted at normal priority until the next \
                 reload; refused: {} (CAP_SYS_NICE, the system call filter, CPU affinity or a \
                 cpuset, or a cgroup without a real-time budget)",
                refusals.join(", ")
            );
        }
    }

    /// Urgent again (to wait, or to grant after a reload lowered it); refused now, the next
    /// choice.
    pub fn raise(&mut self) {
        if let (Some(urgent), false) = (self.urgent, self.raised) {
            match set(&urgent.attr()) {
                Ok(()) => self.raised = true,
                Err(e) => {
                    let preference = self.preference;
                    let next = preference.iter().position(|&c| c == urgent).map_or(0, |i| i + 1);
                    self.grant_first_of(&preference[next..], vec![format!("{urgent}, refused now: {e}")]);
                }
            }
        }
    }

    /// At a reload: tries every choice again from the best, then normal priority.
    pub fn renew(&mut self) {
        let preference = self.preference;
        self.grant_first_of(preference, Vec::new());
        self.lower();
    }

    /// Normal priority, for everything after the writes; at deadline scheduling the thread
    /// stays where it is (see the module's doc).
    pub fn lower(&mut self) {
        if self.raised && self.urgent != Some(Urgent::Deadline) {
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

    /// The thread is scheduled as `urgent` says, never inherited by children when urgent.
    fn assert_policy(urgent: Option<Urgent>) {
        let (policy, reset_on_fork) = policy();
        match urgent {
            Some(Urgent::Deadline) => assert_eq!((policy, reset_on_fork), (libc::SCHED_DEADLINE, true)),
            Some(Urgent::Fifo) => assert_eq!((policy, reset_on_fork), (libc::SCHED_FIFO, true)),
            // The flag stays once a lower() set it.
            None => assert_eq!(policy, libc::SCHED_OTHER),
        }
    }

    /// Lowers and raises twice, checking the policy each time: normal once lowered, but
    /// deadline scheduling is kept throughout.
    fn lower_raise(priority: &mut Priority) {
        let urgent = priority.urgent;
        assert_policy(urgent);
        for _ in 0..2 {
            priority.lower();
            priority.lower();
            assert_policy(urgent.filter(|u| *u == Urgent::Deadline));
            priority.raise();
            assert_policy(urgent);
        }
    }

    /// The kernel must grant this test's threads deadline scheduling: CAP_SYS_NICE in the
    /// initial user namespace, every CPU allowed, real-time bandwidth left to give.
    fn deadline_grantable() -> bool {
        const CAP_SYS_NICE: u32 = 23;
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let status = read("/proc/thread-self/status");
        let capable = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_SYS_NICE) != 0);
        let initial_user_ns = read("/proc/self/uid_map")
            .split_whitespace()
            .eq(["0", "0", "4294967295"]);
        let has_budget = !matches!(rt_runtime().as_str(), "" | "0");
        capable && initial_user_ns && has_budget && allowed_cpus() == online_cpus()
    }

    /// Deadline scheduling refuses threads kept off some CPUs only while the kernel enforces
    /// real-time bandwidth (`sched_rt_runtime_us` not -1).
    fn deadline_checks_affinity() -> bool {
        !matches!(rt_runtime().as_str(), "" | "-1")
    }

    /// `sched_rt_runtime_us`, empty where it cannot be read.
    fn rt_runtime() -> String {
        let runtime = std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us").unwrap_or_default();
        runtime.trim().to_string()
    }

    fn online_cpus() -> usize {
        // SAFETY: sysconf has no memory arguments.
        unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.try_into().unwrap()
    }

    /// The set of CPUs the calling thread may run on.
    fn allowed() -> libc::cpu_set_t {
        // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity writes `size_of` bytes
        // of it for the calling thread.
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            let ret = libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed);
            assert_eq!(ret, 0, "{}", io::Error::last_os_error());
            allowed
        }
    }

    /// How many CPUs the calling thread may run on.
    fn allowed_cpus() -> usize {
        // SAFETY: CPU_COUNT reads the set it is given.
        unsafe { libc::CPU_COUNT(&allowed()) as usize }
    }

    /// Keeps the calling thread on one of the CPUs it may use; false when it may use only one.
    fn keep_on_one_cpu() -> bool {
        let allowed = allowed();
        // SAFETY: CPU_COUNT and CPU_ISSET read the set, CPU_SET writes inside a zeroed (empty)
        // one, and sched_setaffinity reads `size_of` bytes of it for the calling thread.
        unsafe {
            if libc::CPU_COUNT(&allowed) < 2 {
                return false;
            }
            let first = (0..libc::CPU_SETSIZE as usize).find(|&cpu| libc::CPU_ISSET(cpu, &allowed));
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(first.unwrap(), &mut one);
            let ret = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one);
            assert_eq!(ret, 0, "{}", io::Error::last_os_error());
        }
        true
    }

    /// `sched_setattr` of a target as raw as the kernel sees it, with a policy the kernel
    /// refuses (`EINVAL`) before it even looks the target up: nothing is ever changed, and
    /// `EPERM` can only come from the filter.
    fn set_invalid_of(pid: libc::c_long) -> io::Error {
        let invalid = libc::sched_attr {
            sched_policy: u32::MAX,
            ..normal()
        };
        // SAFETY: the kernel reads `attr.size` bytes of a valid `sched_attr`; flags 0.
        let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, pid, std::ptr::from_ref(&invalid), 0) };
        assert_eq!(ret, -1, "an invalid policy was accepted for {pid}");
        io::Error::last_os_error()
    }

    /// On a thread of its own (a filter and scheduling are per thread; the filter goes with it).
    fn on_a_confined_thread<T: Send + 'static>(test: impl FnOnce(Confined) -> T + Send + 'static) -> T {
        std::thread::spawn(|| test(confine().expect("confine"))).join().unwrap()
    }

    #[test]
    fn urgent_when_raised_deadline_throughout_and_never_inherited() {
        let urgent = on_a_confined_thread(|confined| {
            let mut priority = Priority::request(Some(&confined));
            lower_raise(&mut priority);
            priority.renew();
            assert_policy(priority.urgent.filter(|u| *u == Urgent::Deadline));
            priority.raise();
            lower_raise(&mut priority);
            priority.urgent
        });
        if deadline_grantable() {
            assert_eq!(urgent, Some(Urgent::Deadline));
        }
        let unconfined = std::thread::spawn(|| {
            let mut priority = Priority::request(None);
            lower_raise(&mut priority);
            priority.urgent
        });
        assert_eq!(unconfined.join().unwrap(), None, "never urgent unconfined");
    }

    #[test]
    fn a_choice_refused_later_gives_way_to_the_next() {
        if !deadline_grantable() || !deadline_checks_affinity() {
            return;
        }
        let urgent = on_a_confined_thread(|confined| {
            let mut priority = Priority::request(Some(&confined));
            assert_eq!(priority.urgent, Some(Urgent::Deadline));
            // Out of deadline scheduling as lower() never takes it (the kernel keeps a
            // deadline thread on every CPU).
            set(&normal()).unwrap();
            priority.raised = false;
            if !keep_on_one_cpu() {
                return None;
            }
            // Real-time where this test's cgroup has a budget, else normal: tried on a thread of
            // its own, as raise() will try it.
            let fifo_grantable = std::thread::spawn(|| set(&Urgent::Fifo.attr()).is_ok()).join().unwrap();
            priority.raise();
            let expected = fifo_grantable.then_some(Urgent::Fifo);
            assert_eq!(priority.urgent, expected);
            lower_raise(&mut priority);
            Some((priority.urgent, expected))
        });
        if let Some((urgent, expected)) = urgent {
            assert_eq!(urgent, expected, "on one CPU after lower and raise");
        }
    }

    #[test]
    fn sched_setattr_reaches_only_the_calling_thread_once_confined() {
        // SAFETY: gettid has no arguments.
        let own_tid = || libc::c_long::from(unsafe { libc::gettid() });
        let main_thread = libc::c_long::from(std::process::id() as i32);
        on_a_confined_thread(move |_| {
            let passed = set_invalid_of(0);
            assert_eq!(
                passed.raw_os_error(),
                Some(libc::EINVAL),
                "the calling thread, as pid 0"
            );
            // The kernel reads the low 32 bits: 1 << 32 | 1 is pid 1.
            for target in [own_tid(), main_thread, 1, 1 << 32 | 1] {
                let err = set_invalid_of(target);
                assert_eq!(err.raw_os_error(), Some(libc::EPERM), "target {target}");
            }
        });
        // Other threads are not confined by that one.
        assert_eq!(set_invalid_of(own_tid()).raw_os_error(), Some(libc::EINVAL));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_fail_once_confined() {
        let getpid_x32 = libc::c_long::from(X32_SYSCALL_BIT) | libc::SYS_getpid;
        let err = on_a_confined_thread(move |_| {
            // SAFETY: getpid has no arguments, x32 or not.
            let ret = unsafe { libc::syscall(getpid_x32) };
            (ret == -1).then(io::Error::last_os_error)
        });
        assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::EPERM));
    }
}
