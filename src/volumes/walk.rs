//! The tree walk: directory descriptors only, `getdents64`, then each entry opened and judged
//! on its descriptor; parallel across directories.
//!
//! Every entry is opened with `openat2(RESOLVE_NO_XDEV)` and `O_NOFOLLOW`: a mount point inside
//! the volume is skipped without asking the file system mounted there anything (a FUSE server
//! can answer root "permission denied", or never), and a symlink is the link itself. A
//! non-directory is re-owned through the `O_PATH` descriptor that was judged, so a name swapped
//! for a hard link to another file after the open is never the one changed. A directory is
//! re-owned after its entries, so that re-owning it opens no window for its new owner during
//! its own walk.
//!
//! Threads share a bounded stack of open directories; a thread that finds the stack full walks
//! the subdirectory itself (depth first, at most [`MAX_DEPTH`] levels), so open descriptors stay
//! below `QUEUE_CAP + threads * MAX_DEPTH` and memory does not grow with the tree.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::unistd::{Gid as NixGid, Uid as NixUid, fchown, fchownat};
use nonrootd_core::plan::FileKind;
use nonrootd_core::volumes::{Owner, Seen, Skip, Summary, Verdict, judge};

/// Open directories waiting for a thread.
const QUEUE_CAP: usize = 256;
/// Levels a thread descends itself when the queue is full.
const MAX_DEPTH: usize = 64;
/// Bytes per `getdents64` call.
const DIRENT_BUF: usize = 32 * 1024;

pub(crate) const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NONBLOCK);
const PATH_FLAGS: OFlag = OFlag::O_PATH.union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);
const DT_DIR: u8 = 4;

/// Counters a progress display may read while the walk runs (updated once per directory).
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
}

/// `statx` of `name` in `dir` (or of `dir` itself for an empty name with `AT_EMPTY_PATH`),
/// never following a symlink.
pub fn statx(dir: BorrowedFd<'_>, name: &CStr, empty_path: bool) -> Result<(Seen, u64), Errno> {
    let mut flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT;
    if empty_path {
        flags |= libc::AT_EMPTY_PATH;
    }
    let mask = libc::STATX_TYPE
        | libc::STATX_MODE
        | libc::STATX_UID
        | libc::STATX_GID
        | libc::STATX_NLINK
        | libc::STATX_INO
        | libc::STATX_MNT_ID;
    let mut buf = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `name` is NUL-terminated, `dir` is an open descriptor and `buf` is a writable
    // statx buffer of the right size that outlives the call.
    let ret = unsafe { libc::statx(dir.as_raw_fd(), name.as_ptr(), flags, mask, buf.as_mut_ptr()) };
    Errno::result(ret)?;
    // SAFETY: statx(2) succeeded and filled the buffer (it was zeroed before in any case).
    let st = unsafe { buf.assume_init() };
    let mnt = if st.stx_mask & libc::STATX_MNT_ID != 0 {
        st.stx_mnt_id
    } else {
        0
    };
    let seen = Seen {
        kind: FileKind::from_st_mode(u32::from(st.stx_mode)),
        mode: u32::from(st.stx_mode) & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        nlink: u64::from(st.stx_nlink),
        dev: (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
        mnt,
    };
    Ok((seen, st.stx_ino))
}

/// Reads directory entries into `buf`; returns the bytes filled, 0 at the end.
fn getdents(dir: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: getdents64(2) writes at most `buf.len()` bytes into `buf`, which is valid and
    // exclusively borrowed for the call.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    Errno::result(n).map(|n| n as usize)
}

/// The entries of a `getdents64` buffer: (name, d_type), without "." and "..".
fn entries(buf: &[u8]) -> impl Iterator<Item = (&CStr, u8)> {
    let mut off = 0;
    std::iter::from_fn(move || {
        while off + 19 < buf.len() {
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
            let d_type = buf[off + 18];
            let record = buf.get(off + 19..off + reclen)?;
            off += reclen.max(1);
            let Ok(name) = CStr::from_bytes_until_nul(record) else {
                continue;
            };
            if !matches!(name.to_bytes(), b"" | b"." | b"..") {
                return Some((name, d_type));
            }
        }
        None
    })
}

/// An open directory to walk.
pub struct Job {
    pub fd: OwnedFd,
    /// Relative to the top.
    pub path: PathBuf,
    /// What `statx` said of it when it was opened.
    pub seen: Seen,
    /// Re-own it once its entries are done.
    pub change: bool,
}

struct Queue {
    jobs: Vec<Job>,
    /// Threads working on a job.
    active: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    /// The next directory, or `None` when every thread is idle and nothing is queued.
    fn take(&self) -> Option<Job> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = q.jobs.pop() {
                q.active += 1;
                return Some(job);
            }
            if q.active == 0 {
                self.ready.notify_all();
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.active -= 1;
        if q.active == 0 && q.jobs.is_empty() {
            self.ready.notify_all();
        }
    }

    /// Queues a directory for any thread; gives it back when the queue is full.
    fn offer(&self, job: Job) -> Result<(), Job> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.jobs.len() >= QUEUE_CAP {
            return Err(job);
        }
        q.jobs.push(job);
        self.ready.notify_one();
        Ok(())
    }
}

/// Walks the open top directory and everything below it.
pub fn walk(top: Job, walk: &Walk<'_>) -> Summary {
    let shared = Shared {
        queue: Mutex::new(Queue {
            jobs: vec![top],
            active: 0,
        }),
        ready: Condvar::new(),
    };
    let threads = walk.threads.max(1);
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(|| worker(&shared, walk))).collect();
        let mut summary = worker(&shared, walk);
        for helper in helpers {
            match helper.join() {
                Ok(s) => summary.merge(s),
                Err(_) => summary.fail(Path::new(""), "a walker thread panicked"),
            }
        }
        summary
    })
}

fn worker(shared: &Shared, walk: &Walk<'_>) -> Summary {
    let mut summary = Summary::default();
    let mut buf = vec![0u8; DIRENT_BUF];
    while let Some(job) = shared.take() {
        if walk.cancel.load(Ordering::Relaxed) {
            summary.cancelled = true;
        } else {
            let mut w = Worker {
                shared,
                walk,
                summary: &mut summary,
            };
            w.directory(&job, 0, &mut buf);
        }
        shared.done();
    }
    summary
}

struct Worker<'a, 'w> {
    shared: &'a Shared,
    walk: &'a Walk<'w>,
    summary: &'a mut Summary,
}

impl Worker<'_, '_> {
    /// Judges and changes every entry of a directory, then the directory itself.
    fn directory(&mut self, job: &Job, depth: usize, buf: &mut [u8]) {
        let (dir, path) = (&job.fd, job.path.as_path());
        let (seen_before, changed_before) = (self.summary.seen, self.summary.changed);
        loop {
            let n = match getdents(dir, buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    self.summary.fail(path, format!("read directory: {e}"));
                    break;
                }
            };
            for (name, d_type) in entries(&buf[..n]) {
                self.summary.seen += 1;
                self.entry(dir, name, d_type, path, depth);
            }
            if self.walk.cancel.load(Ordering::Relaxed) {
                self.summary.cancelled = true;
                break;
            }
        }
        if job.change && !self.summary.cancelled {
            if self.walk.check_only {
                self.summary.wrong(job.seen.uid, job.seen.gid);
            } else {
                let (uid, gid) = self.ids();
                match fchown(dir, Some(uid), Some(gid)) {
                    Ok(()) => self.summary.wrong(job.seen.uid, job.seen.gid),
                    Err(e) => self.summary.fail(path, format!("chown: {e}")),
                }
            }
        }
        let progress = self.walk.progress;
        progress
            .seen
            .fetch_add(self.summary.seen - seen_before, Ordering::Relaxed);
        progress
            .changed
            .fetch_add(self.summary.changed - changed_before, Ordering::Relaxed);
    }

    /// One entry: a directory is opened as one and walked; anything else is opened with
    /// `O_PATH|O_NOFOLLOW`, judged on that descriptor (a symlink itself) and re-owned through
    /// it, so a name swapped for a hard link to another file after the open is never the one
    /// changed.
    fn entry(&mut self, dir: &OwnedFd, name: &CStr, d_type: u8, path: &Path, depth: usize) {
        let child = || path.join(OsStr::from_bytes(name.to_bytes()));
        if d_type == DT_DIR {
            match open_entry(dir, name, DIR_FLAGS) {
                Ok(fd) => return self.subdirectory(fd, None, name, path, depth),
                // Replaced by something else since getdents: judge what is there now.
                Err(Errno::ENOTDIR | Errno::ELOOP) => {}
                Err(e) => return self.not_opened(e, child),
            }
        }
        let fd = match open_entry(dir, name, PATH_FLAGS) {
            Ok(fd) => fd,
            Err(e) => return self.not_opened(e, child),
        };
        let (seen, ino) = match statx(fd.as_fd(), c"", true) {
            Ok(found) => found,
            Err(e) => return self.summary.fail(&child(), format!("stat: {e}")),
        };
        match judge(&seen, self.walk.owner, &self.walk.top) {
            Verdict::Skip(why) => self.summary.skip(why, child),
            // A directory where getdents said otherwise: walk it through a real directory fd.
            _ if seen.kind == FileKind::Directory => match open_entry(dir, name, DIR_FLAGS) {
                Ok(dir_fd) => self.subdirectory(dir_fd, Some(ino), name, path, depth),
                Err(_) => self.summary.skip(Skip::DirectoryReplaced, child),
            },
            Verdict::Correct => {}
            Verdict::Change if self.walk.check_only => self.summary.wrong(seen.uid, seen.gid),
            Verdict::Change => {
                let (uid, gid) = self.ids();
                match fchownat(&fd, c"", Some(uid), Some(gid), AtFlags::AT_EMPTY_PATH) {
                    Ok(()) => self.summary.wrong(seen.uid, seen.gid),
                    Err(e) => self.summary.fail(&child(), format!("chown: {e}")),
                }
            }
        }
    }

    /// Counts an entry that could not be opened.
    fn not_opened(&mut self, error: Errno, child: impl FnOnce() -> PathBuf) {
        match error {
            Errno::ENOENT => self.summary.skip(Skip::Vanished, child),
            Errno::EXDEV => self.summary.skip(Skip::OtherFilesystem, child),
            e => self.summary.fail(&child(), format!("open: {e}")),
        }
    }

    fn ids(&self) -> (NixUid, NixGid) {
        (
            NixUid::from_raw(self.walk.owner.uid.0),
            NixGid::from_raw(self.walk.owner.gid.0),
        )
    }

    /// A directory opened with `O_DIRECTORY|O_NOFOLLOW`: judged on its descriptor, then
    /// queued for any thread or, when the queue is full, walked here; re-owned after its
    /// entries. `ino`: what an earlier look saw, if any.
    fn subdirectory(&mut self, fd: OwnedFd, ino: Option<u64>, name: &CStr, path: &Path, depth: usize) {
        let child = path.join(OsStr::from_bytes(name.to_bytes()));
        let (seen, now) = match statx(fd.as_fd(), c"", true) {
            Ok(found) => found,
            Err(e) => return self.summary.fail(&child, format!("stat: {e}")),
        };
        if ino.is_some_and(|ino| ino != now) {
            return self.summary.skip(Skip::DirectoryReplaced, || child);
        }
        let verdict = judge(&seen, self.walk.owner, &self.walk.top);
        if let Verdict::Skip(why) = verdict {
            return self.summary.skip(why, || child);
        }
        let job = Job {
            fd,
            path: child,
            seen,
            change: verdict == Verdict::Change,
        };
        if let Err(job) = self.shared.offer(job) {
            if depth >= MAX_DEPTH {
                self.summary.skip(Skip::TooDeep, || job.path.clone());
            } else {
                let mut buf = vec![0u8; DIRENT_BUF];
                self.directory(&job, depth + 1, &mut buf);
            }
        }
    }
}

/// Opens `name` in `dir` without following a symlink or crossing into another mount: a mount
/// point inside the volume (a FUSE file system its owner mounted there, say) fails with
/// `EXDEV` before the file system behind it is asked anything, which could answer "permission
/// denied" to root, or never answer.
fn open_entry(dir: &OwnedFd, name: &CStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    openat2(
        dir,
        name,
        OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_NO_XDEV),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_getdents_records() {
        let mut buf = Vec::new();
        for (name, d_type) in [
            (&b"."[..], DT_DIR),
            (b"..", DT_DIR),
            (b"a", 8u8),
            (b"long-name", DT_DIR),
        ] {
            let reclen = (19 + name.len() + 1).next_multiple_of(8);
            let start = buf.len();
            buf.resize(start + reclen, 0);
            buf[start + 16..start + 18].copy_from_slice(&(reclen as u16).to_ne_bytes());
            buf[start + 18] = d_type;
            buf[start + 19..start + 19 + name.len()].copy_from_slice(name);
        }
        let got: Vec<_> = entries(&buf).map(|(n, t)| (n.to_bytes().to_vec(), t)).collect();
        assert_eq!(got, [(b"a".to_vec(), 8), (b"long-name".to_vec(), DT_DIR)]);
    }
}
