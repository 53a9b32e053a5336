//! The tree walk: directory descriptors only for reading, `getdents64`, then each entry opened
//! with `O_PATH|O_NOFOLLOW` and judged and re-owned on that descriptor; parallel across
//! directories.
//!
//! Nothing mounted inside the volume is asked anything. An `O_PATH` open reaches a mount point
//! without calling into the file system mounted there, and the look at the descriptor takes
//! what the kernel already knows (`AT_STATX_DONT_SYNC`), so a FUSE server that a volume's
//! owner mounted there cannot keep the walk waiting; one that refuses root is placed by its
//! mount id alone. An entry on another mount is skipped. A directory is opened for reading
//! through its `O_PATH` descriptor (`openat(fd, ".")`, the same inode), and re-owned after its
//! entries, so that re-owning it opens no window for its new owner during its own walk (except
//! above a directory kept by its place, below: its parents are re-owned before it is opened
//! again, and what their new owner renames meanwhile is found vanished). A
//! non-directory (a symlink itself) is re-owned through the descriptor that was judged, so a
//! name swapped for a hard link to another file after the open is never the one changed.
//!
//! Threads share a bounded stack of open directories. A thread that finds the stack full walks
//! the subdirectory itself, depth first, at most [`MAX_DEPTH`] levels; below that it keeps the
//! directory by its place alone (names and inode numbers, no descriptor) and opens it again
//! from the top once no open directory is queued, so open descriptors stay below about
//! `QUEUE_CAP + threads * (MAX_DEPTH + 3)` whatever the tree's shape. Kept places and the steps
//! to open them again are capped ([`MAX_DEFERRED`], [`MAX_REOPEN_STEPS`]): a tree shaped to
//! exceed them fails its own walk instead of holding up every other. A directory's place is a
//! link to its parent's, so time per directory does not grow with the depth; paths are
//! spelled out for messages only.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::Mode as NixMode;
use nix::unistd::{Gid as NixGid, Uid as NixUid, fchown, fchownat};
use nonrootd_core::plan::FileKind;

use crate::host::walk::known_statx;
use nonrootd_core::volumes::{Owner, Seen, Skip, Summary, Verdict, judge};

/// Open directories waiting for a thread.
const QUEUE_CAP: usize = 256;
/// Levels a thread descends itself when the queue is full.
const MAX_DEPTH: usize = 32;
/// Directories kept by place at once: beyond, the walk fails (about 100-300 bytes each).
pub const MAX_DEFERRED: usize = 100_000;
/// Steps taken to open kept directories again, over a walk: beyond, the walk fails (a tree
/// shaped to be reopened level by level from the top costs the square of its depth).
pub const MAX_REOPEN_STEPS: u64 = 10_000_000;
/// Bytes per `getdents64` call.
const DIRENT_BUF: usize = 32 * 1024;

pub(crate) const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NONBLOCK);
pub(crate) const PATH_FLAGS: OFlag = OFlag::O_PATH.union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Counters a progress display may read while the walk runs (updated per `getdents64` batch).
#[derive(Debug, Default)]
pub struct Progress {
    pub seen: AtomicU64,
    pub changed: AtomicU64,
}

/// What a walk needs to know.
pub struct Walk<'a> {
    pub owner: Owner,
    /// The top directory: entries on another device or mount are not entered.
    pub top: Seen,
    /// Count what is wrong, change nothing.
    pub check_only: bool,
    pub cancel: &'a AtomicBool,
    pub progress: &'a Progress,
    pub threads: usize,
    /// [`MAX_DEFERRED`] and [`MAX_REOPEN_STEPS`] (lower in tests).
    pub max_deferred: usize,
    pub max_reopen_steps: u64,
}

/// `statx` of an open descriptor (a symlink itself), from what the kernel already knows of
/// it (`AT_STATX_DONT_SYNC`): a network or FUSE file system is not asked, so it can neither
/// keep the caller waiting nor tell it anything newer than its cache (a change another client
/// made meanwhile is seen at a later walk; local file systems have nothing else to tell).
pub fn statx(fd: BorrowedFd<'_>) -> Result<Seen, Errno> {
    let mask = libc::STATX_TYPE
        | libc::STATX_MODE
        | libc::STATX_UID
        | libc::STATX_GID
        | libc::STATX_NLINK
        | libc::STATX_INO
        | libc::STATX_MNT_ID;
    let st = known_statx(fd, mask)?;
    let seen = Seen {
        kind: FileKind::from_st_mode(u32::from(st.stx_mode)),
        mode: u32::from(st.stx_mode) & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        nlink: u64::from(st.stx_nlink),
        dev: device(&st),
        mnt: mount_id(&st),
        ino: st.stx_ino,
    };
    Ok(seen)
}

/// The mount id of an open descriptor, asking its file system nothing at all: a `statx` with
/// an empty mask, which a FUSE file system that refuses root (no `allow_other`) still
/// answers, else the `mnt_id:` line of `/proc/self/fdinfo` (one that marked the inode bad
/// fails even that `statx`).
pub fn mount_of(fd: BorrowedFd<'_>) -> Option<u64> {
    if let Ok(st) = known_statx(fd, 0)
        && st.stx_mask & libc::STATX_MNT_ID != 0
    {
        return Some(st.stx_mnt_id);
    }
    fdinfo_mount(fd)
}

/// The `mnt_id:` line of `/proc/self/fdinfo` for `fd`.
fn fdinfo_mount(fd: BorrowedFd<'_>) -> Option<u64> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("mnt_id:")?.trim().parse().ok())
}

fn device(st: &libc::statx) -> u64 {
    (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor)
}

fn mount_id(st: &libc::statx) -> u64 {
    if st.stx_mask & libc::STATX_MNT_ID != 0 {
        st.stx_mnt_id
    } else {
        0
    }
}

/// Reads directory entries into `buf`; returns the bytes filled, 0 at the end.
fn getdents(dir: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: getdents64(2) writes at most `buf.len()` bytes into `buf`, which is valid and
    // exclusively borrowed for the call.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    Errno::result(n).map(|n| n as usize)
}

/// The names in a `getdents64` buffer, without "." and "..".
fn entries(buf: &[u8]) -> impl Iterator<Item = &CStr> {
    let mut off = 0;
    std::iter::from_fn(move || {
        while off + 19 < buf.len() {
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
            let record = buf.get(off + 19..off + reclen)?;
            off += reclen.max(1);
            let Ok(name) = CStr::from_bytes_until_nul(record) else {
                continue;
            };
            if !matches!(name.to_bytes(), b"" | b"." | b"..") {
                return Some(name);
            }
        }
        None
    })
}

/// Where a directory is below the top: its name, its inode number and its parent's place,
/// shared by everything below it.
pub struct Place {
    parent: Option<Arc<Place>>,
    name: Box<OsStr>,
    ino: u64,
    /// Levels below the top: the steps to open it again.
    depth: u64,
}

/// The path of a place relative to the top (`None`: the top), spelled out.
fn path_of(place: Option<&Arc<Place>>, name: Option<&CStr>) -> PathBuf {
    let mut names: Vec<&OsStr> = name.map(|n| OsStr::from_bytes(n.to_bytes())).into_iter().collect();
    let mut at = place;
    while let Some(p) = at {
        names.push(&p.name);
        at = p.parent.as_ref();
    }
    names.iter().rev().collect()
}

/// An open directory to walk.
pub struct Job {
    pub fd: OwnedFd,
    /// `None` for the top.
    pub place: Option<Arc<Place>>,
    /// What `statx` said of it when it was opened.
    pub seen: Seen,
    /// Re-own it once its entries are done.
    pub change: bool,
}

struct Queue {
    jobs: Vec<Job>,
    /// Directories met [`MAX_DEPTH`] levels down while `jobs` was full, by place alone.
    deferred: Vec<Arc<Place>>,
    /// Threads working on a job.
    active: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// The top, for opening deferred directories again, and its mount as [`mount_of`] finds
    /// it.
    top: OwnedFd,
    top_mount: Option<u64>,
    /// Steps taken by [`Worker::reopen`] so far.
    reopen_steps: AtomicU64,
}

/// What a thread takes from the queue.
enum Work {
    Open(Job),
    Deferred(Arc<Place>),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next directory, or `None` when every thread is idle and nothing is queued. The
    /// returned guard gives the job back ([`Shared::done`]) when dropped, a panic's unwinding
    /// too, so the other threads never wait for it.
    fn take(&self) -> Option<(Work, Active<'_>)> {
        let mut q = self.lock();
        loop {
            // Open directories first: a deferred one is opened again only when none is left.
            let work = match q.jobs.pop() {
                Some(job) => Some(Work::Open(job)),
                None => q.deferred.pop().map(Work::Deferred),
            };
            if let Some(work) = work {
                q.active += 1;
                return Some((work, Active(self)));
            }
            if q.active == 0 {
                self.ready.notify_all();
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self) {
        let mut q = self.lock();
        q.active -= 1;
        // Nobody at work: the others end, or take what a thread that panicked left.
        if q.active == 0 {
            self.ready.notify_all();
        }
    }

    /// Queues a directory for any thread; gives it back when the queue is full.
    fn offer(&self, job: Job) -> Result<(), Job> {
        let mut q = self.lock();
        if q.jobs.len() >= QUEUE_CAP {
            return Err(job);
        }
        q.jobs.push(job);
        self.ready.notify_one();
        Ok(())
    }

    /// Keeps a directory by its place, its descriptor closed, for any thread to open again;
    /// gives it back when [`MAX_DEFERRED`] are kept.
    fn defer(&self, place: Arc<Place>, max: usize) -> Result<(), Arc<Place>> {
        let mut q = self.lock();
        if q.deferred.len() >= max {
            return Err(place);
        }
        q.deferred.push(place);
        self.ready.notify_one();
        Ok(())
    }
}

/// A job being worked on; ends it on drop.
struct Active<'a>(&'a Shared);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// Walks the open top directory and everything below it.
pub fn walk(top: Job, walk: &Walk<'_>) -> Summary {
    let top_again = match top.fd.try_clone() {
        Ok(fd) => fd,
        Err(e) => {
            let mut summary = Summary::default();
            summary.fail(PathBuf::new, format!("dup: {e}"));
            return summary;
        }
    };
    let shared = Shared {
        queue: Mutex::new(Queue {
            jobs: vec![top],
            deferred: Vec::new(),
            active: 0,
        }),
        ready: Condvar::new(),
        top_mount: mount_of(top_again.as_fd()),
        top: top_again,
        reopen_steps: AtomicU64::new(0),
    };
    let threads = walk.threads.max(1);
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(|| worker(&shared, walk))).collect();
        let mut summary = worker(&shared, walk);
        for helper in helpers {
            match helper.join() {
                Ok(s) => summary.merge(s),
                Err(_) => summary.fail(PathBuf::new, "a walker thread panicked"),
            }
        }
        summary
    })
}

fn worker(shared: &Shared, walk: &Walk<'_>) -> Summary {
    let mut summary = Summary::default();
    let mut buf = vec![0u8; DIRENT_BUF];
    while let Some((work, _active)) = shared.take() {
        if walk.cancel.load(Ordering::Relaxed) {
            summary.cancelled = true;
            continue;
        }
        let reported = (summary.seen, summary.changed);
        let mut w = Worker {
            shared,
            walk,
            summary: &mut summary,
            reported,
        };
        let job = match work {
            Work::Open(job) => Some(job),
            Work::Deferred(place) => w.reopen(place),
        };
        if let Some(job) = job {
            w.directory(&job, 0, &mut buf);
        }
    }
    summary
}

struct Worker<'a, 'w> {
    shared: &'a Shared,
    walk: &'a Walk<'w>,
    summary: &'a mut Summary,
    /// The summary's seen and changed counts already added to `walk.progress`.
    reported: (u64, u64),
}

impl Worker<'_, '_> {
    /// Judges and changes every entry of a directory, then the directory itself.
    fn directory(&mut self, job: &Job, depth: usize, buf: &mut [u8]) {
        let (dir, place) = (&job.fd, job.place.as_ref());
        'entries: loop {
            let n = match getdents(dir, buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    self.summary
                        .fail(|| path_of(place, None), format!("read directory: {e}"));
                    break;
                }
            };
            for name in entries(&buf[..n]) {
                if self.cancelled() {
                    break 'entries;
                }
                self.summary.seen += 1;
                self.entry(dir, place, name, depth);
            }
            self.report_progress();
        }
        if job.change && !self.cancelled() {
            if self.walk.check_only {
                self.summary.wrong(job.seen.uid, job.seen.gid);
            } else {
                let (uid, gid) = self.ids();
                match fchown(dir, Some(uid), Some(gid)) {
                    Ok(()) => self.summary.wrong(job.seen.uid, job.seen.gid),
                    Err(e) => self.summary.fail(|| path_of(place, None), format!("chown: {e}")),
                }
            }
        }
        self.report_progress();
    }

    /// Whether the walk is cancelled (then counted so).
    fn cancelled(&mut self) -> bool {
        let cancelled = self.walk.cancel.load(Ordering::Relaxed);
        self.summary.cancelled |= cancelled;
        cancelled
    }

    /// Adds what this thread saw and changed since its last report to the shared counters.
    fn report_progress(&mut self) {
        let progress = self.walk.progress;
        let (seen, changed) = (self.summary.seen, self.summary.changed);
        progress.seen.fetch_add(seen - self.reported.0, Ordering::Relaxed);
        progress.changed.fetch_add(changed - self.reported.1, Ordering::Relaxed);
        self.reported = (seen, changed);
    }

    /// One entry of the directory `dir` at `place`: opened with `O_PATH|O_NOFOLLOW`, judged on
    /// that descriptor, then walked (a directory) or re-owned through it.
    fn entry(&mut self, dir: &OwnedFd, place: Option<&Arc<Place>>, name: &CStr, depth: usize) {
        let child = || path_of(place, Some(name));
        let fd = match openat(dir, name, PATH_FLAGS, NixMode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return self.summary.skip(Skip::Vanished, child),
            Err(e) => return self.summary.fail(child, format!("open: {e}")),
        };
        let seen = match statx(fd.as_fd()) {
            Ok(found) => found,
            // A file system mounted here that refuses root (FUSE without allow_other), or whose
            // server made the inode bad.
            Err(_) if self.elsewhere(&fd) => return self.summary.skip(Skip::OtherFilesystem, child),
            Err(e) => return self.summary.fail(child, format!("stat: {e}")),
        };
        match judge(&seen, self.walk.owner, &self.walk.top) {
            Verdict::Skip(why) => self.summary.skip(why, child),
            verdict if seen.kind == FileKind::Directory => match openat(&fd, ".", DIR_FLAGS, NixMode::empty()) {
                Ok(dir_fd) => {
                    drop(fd);
                    let job = Job {
                        fd: dir_fd,
                        place: Some(Arc::new(Place {
                            parent: place.cloned(),
                            name: OsStr::from_bytes(name.to_bytes()).into(),
                            ino: seen.ino,
                            depth: place.map_or(1, |p| p.depth + 1),
                        })),
                        seen,
                        change: verdict == Verdict::Change,
                    };
                    self.subdirectory(job, depth);
                }
                Err(Errno::ENOENT) => self.summary.skip(Skip::Vanished, child),
                Err(e) => self.summary.fail(child, format!("open: {e}")),
            },
            Verdict::Correct => {}
            Verdict::Change if self.walk.check_only => self.summary.wrong(seen.uid, seen.gid),
            Verdict::Change => {
                let (uid, gid) = self.ids();
                match fchownat(&fd, c"", Some(uid), Some(gid), AtFlags::AT_EMPTY_PATH) {
                    Ok(()) => self.summary.wrong(seen.uid, seen.gid),
                    Err(e) => self.summary.fail(child, format!("chown: {e}")),
                }
            }
        }
    }

    /// Whether `fd` is on another mount than the top, by what the kernel knows.
    fn elsewhere(&self, fd: &OwnedFd) -> bool {
        match (mount_of(fd.as_fd()), self.shared.top_mount) {
            (Some(mnt), Some(top)) => mnt != top,
            _ => false,
        }
    }

    fn ids(&self) -> (NixUid, NixGid) {
        (
            NixUid::from_raw(self.walk.owner.uid.0),
            NixGid::from_raw(self.walk.owner.gid.0),
        )
    }

    /// A directory to walk: queued for any thread or, when the queue is full, walked here;
    /// [`MAX_DEPTH`] levels down, kept by its place instead.
    fn subdirectory(&mut self, job: Job, depth: usize) {
        match self.shared.offer(job) {
            Ok(()) => {}
            Err(_) if self.cancelled() => {}
            Err(job) if depth >= MAX_DEPTH => {
                let place = job.place.expect("the top is never offered");
                let max = self.walk.max_deferred;
                if let Err(place) = self.shared.defer(place, max) {
                    let path = || path_of(Some(&place), None);
                    let why = format!("more than {max} directories to open again: the tree's shape is refused");
                    self.summary.fail(path, why);
                }
            }
            Err(job) => {
                let mut buf = vec![0u8; DIRENT_BUF];
                self.directory(&job, depth + 1, &mut buf);
            }
        }
    }

    /// Opens a deferred directory again, name by name from the top, each step with
    /// `O_PATH|O_NOFOLLOW` and checked to be a directory of the inode the walk saw there, on
    /// the top's device and mount. A place that changed meanwhile is left to the next walk
    /// (vanished).
    fn reopen(&mut self, place: Arc<Place>) -> Option<Job> {
        let path = || path_of(Some(&place), None);
        let (steps, max) = (place.depth, self.walk.max_reopen_steps);
        if self.shared.reopen_steps.fetch_add(steps, Ordering::Relaxed) + steps > max {
            // The others kept are left too: each would only fail the same way.
            let left = self.shared.lock().deferred.drain(..).count();
            let why = format!(
                "more than {max} steps to open directories again ({} left unwalked): the tree's shape is refused",
                left + 1
            );
            self.summary.fail(path, why);
            return None;
        }
        let mut chain = Vec::new();
        let mut at = Some(&place);
        while let Some(step) = at {
            chain.push(step);
            at = step.parent.as_ref();
        }
        let mut dir = match self.shared.top.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                self.summary.fail(path, format!("dup: {e}"));
                return None;
            }
        };
        let top = &self.walk.top;
        let mut seen = None;
        for step in chain.into_iter().rev() {
            if self.walk.cancel.load(Ordering::Relaxed) {
                self.summary.cancelled = true;
                return None;
            }
            let fd = match openat(&dir, &*step.name, PATH_FLAGS, NixMode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    self.summary.skip(Skip::Vanished, path);
                    return None;
                }
                Err(e) => {
                    self.summary.fail(path, format!("open: {e}"));
                    return None;
                }
            };
            match statx(fd.as_fd()) {
                Ok(now)
                    if now.kind == FileKind::Directory
                        && now.ino == step.ino
                        && (now.dev, now.mnt) == (top.dev, top.mnt) =>
                {
                    seen = Some(now);
                }
                Ok(_) => {
                    self.summary.skip(Skip::Vanished, path);
                    return None;
                }
                Err(_) if self.elsewhere(&fd) => {
                    self.summary.skip(Skip::OtherFilesystem, path);
                    return None;
                }
                Err(e) => {
                    self.summary.fail(path, format!("stat: {e}"));
                    return None;
                }
            }
            dir = fd;
        }
        let seen = seen.expect("a place has at least one step");
        let verdict = judge(&seen, self.walk.owner, top);
        if let Verdict::Skip(why) = verdict {
            self.summary.skip(why, path);
            return None;
        }
        match openat(&dir, ".", DIR_FLAGS, NixMode::empty()) {
            Ok(fd) => Some(Job {
                fd,
                place: Some(place),
                seen,
                change: verdict == Verdict::Change,
            }),
            Err(Errno::ENOENT) => {
                self.summary.skip(Skip::Vanished, path);
                None
            }
            Err(e) => {
                self.summary.fail(path, format!("open: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nonrootd_core::ids::{Gid, Uid};
    use std::path::Path;

    /// 300 chains 40 deep, a file at the bottom of each.
    fn chains() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("nonrootd-walk-")
            .tempdir_in("/var/tmp")
            .unwrap();
        for i in 0..300 {
            let chain: PathBuf = std::iter::once(format!("c{i}"))
                .chain((0..40).map(|_| "d".into()))
                .collect();
            std::fs::create_dir_all(dir.path().join(&chain)).unwrap();
            std::fs::write(dir.path().join(chain).join("f"), "").unwrap();
        }
        dir
    }

    /// `dir` checked with one thread and `caps` (kept places, reopening steps).
    fn walk_chains(dir: &Path, caps: (usize, u64)) -> Summary {
        let (cancel, progress) = (AtomicBool::new(false), Progress::default());
        let summary = check(dir, 1, caps, &cancel, &progress);
        assert_eq!(progress.seen.load(Ordering::Relaxed), summary.seen, "counted once");
        summary
    }

    /// `dir` checked for owner 999 with `threads` and `caps`, `cancel` and `progress` shared.
    fn check(dir: &Path, threads: usize, caps: (usize, u64), cancel: &AtomicBool, progress: &Progress) -> Summary {
        let top = nix::fcntl::open(dir, DIR_FLAGS, NixMode::empty()).unwrap();
        let seen = statx(top.as_fd()).unwrap();
        let walk = Walk {
            owner: Owner {
                uid: Uid(999),
                gid: Gid(999),
            },
            top: seen,
            check_only: true,
            cancel,
            progress,
            threads,
            max_deferred: caps.0,
            max_reopen_steps: caps.1,
        };
        let job = Job {
            fd: top,
            place: None,
            seen,
            change: true,
        };
        super::walk(job, &walk)
    }

    /// A cancel set while the walk runs stops every thread at its next entry, and no directory
    /// is re-owned after it: past what the progress counters showed then, each thread sees at
    /// most the rest of the `getdents` batch it had not reported yet (at most `DIRENT_BUF / 32`
    /// entries of 6-byte names).
    #[test]
    fn a_cancel_stops_every_thread_at_its_next_entry() {
        let dir = tempfile::Builder::new()
            .prefix("nonrootd-walk-")
            .tempdir_in("/var/tmp")
            .unwrap();
        // Names of one file (hard links, skipped by the walk): quick to make, seen all the same.
        let (dirs, files) = (4, 4000);
        let file = dir.path().join("file");
        std::fs::File::create(&file).unwrap();
        for d in 0..dirs {
            let sub = dir.path().join(format!("d{d}"));
            std::fs::create_dir(&sub).unwrap();
            for f in 0..files {
                std::fs::hard_link(&file, sub.join(format!("f{f:05}"))).unwrap();
            }
        }
        let (threads, total) = (2, (1 + dirs * (files + 1)) as u64);
        let slack = threads as u64 * (DIRENT_BUF / 32 + 1) as u64;
        // The canceller may not get a CPU before the walk ends on a busy machine: try again.
        for _ in 0..10 {
            let (cancel, progress, done) = (AtomicBool::new(false), Progress::default(), AtomicBool::new(false));
            let (summary, seen_at_cancel) = std::thread::scope(|scope| {
                let canceller = scope.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        let seen = progress.seen.load(Ordering::Relaxed);
                        if seen >= 1000 {
                            cancel.store(true, Ordering::Relaxed);
                            return Some(seen);
                        }
                        std::hint::spin_loop();
                    }
                    None
                });
                let summary = check(
                    dir.path(),
                    threads,
                    (MAX_DEFERRED, MAX_REOPEN_STEPS),
                    &cancel,
                    &progress,
                );
                done.store(true, Ordering::Relaxed);
                (summary, canceller.join().unwrap())
            });
            let Some(seen_at_cancel) = seen_at_cancel else { continue };
            if summary.seen == total {
                continue;
            }
            assert!(summary.cancelled, "{summary:?}");
            assert!(
                summary.seen <= seen_at_cancel + slack,
                "{} entries seen, {seen_at_cancel} when cancelled: {summary:?}",
                summary.seen
            );
            // Only the top was done (its five entries come first); the four directories each
            // have more entries than were seen, so none may be re-owned.
            if seen_at_cancel + slack < files as u64 {
                assert!(summary.changed <= 1, "{summary:?}");
            }
            return;
        }
        panic!("the walk always ended before the cancel");
    }

    #[test]
    fn a_tree_shaped_past_the_caps_fails_its_walk_and_names_the_shape() {
        let dir = chains();
        let whole = walk_chains(dir.path(), (MAX_DEFERRED, MAX_REOPEN_STEPS));
        assert_eq!((whole.failed, whole.changed), (0, 1 + 300 * 42), "{whole:?}");
        let kept = walk_chains(dir.path(), (5, MAX_REOPEN_STEPS));
        let first = kept.first_failure.unwrap();
        assert!(
            first.ends_with("more than 5 directories to open again: the tree's shape is refused"),
            "{first}"
        );
        let steps = walk_chains(dir.path(), (MAX_DEFERRED, 400));
        let first = steps.first_failure.unwrap();
        assert!(
            first.contains(": more than 400 steps to open directories again ("),
            "{first}"
        );
        assert!(
            first.ends_with(" left unwalked): the tree's shape is refused"),
            "{first}"
        );
    }

    /// The fallback for an inode even an empty-mask `statx` fails on (which no test can make)
    /// names the same mount as `statx`, on two mounts.
    #[test]
    fn fdinfo_names_the_mount_statx_names() {
        let mounts = ["/var/tmp", "/proc"].map(|path| {
            let fd = nix::fcntl::open(path, PATH_FLAGS, NixMode::empty()).unwrap();
            let seen = statx(fd.as_fd()).unwrap();
            assert_eq!(fdinfo_mount(fd.as_fd()), Some(seen.mnt), "{path}");
            seen.mnt
        });
        assert_ne!(mounts[0], mounts[1]);
    }

    #[test]
    fn parses_getdents_records() {
        let mut buf = Vec::new();
        for (name, d_type) in [(&b"."[..], 4u8), (b"..", 4), (b"a", 8), (b"long-name", 4)] {
            let reclen = (19 + name.len() + 1).next_multiple_of(8);
            let start = buf.len();
            buf.resize(start + reclen, 0);
            buf[start + 16..start + 18].copy_from_slice(&(reclen as u16).to_ne_bytes());
            buf[start + 18] = d_type;
            buf[start + 19..start + 19 + name.len()].copy_from_slice(name);
        }
        let got: Vec<_> = entries(&buf).map(|n| n.to_bytes().to_vec()).collect();
        assert_eq!(got, [b"a".to_vec(), b"long-name".to_vec()]);
    }
}
