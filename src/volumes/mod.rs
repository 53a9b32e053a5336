//! The volumes duty: every `[[volume]]` tree owned by its container user, walked safely and in
//! parallel (see [`walk`]). The rules (id mapping, what an entry needs) are in
//! [`nonrootd_core::volumes`].

pub mod walk;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::openat;
use nix::sys::stat::{Mode as NixMode, fchmod};
use nix::unistd::{Uid as NixUid, User};
use nonrootd_core::config::{Config, DOCKER_DATA_ROOT, VolumeConfig, volume_refusal};
use nonrootd_core::duty::Duty;
use nonrootd_core::ids::{Gid, IdResolver, Uid, Unresolved};
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::FileKind;
use nonrootd_core::report::{Outcome, Report};
use nonrootd_core::volumes::{self as rules, Owner, Summary, Verdict, fuse_mounter, judge, map_id};
use tracing::{info, warn};

use crate::apply::data_root;
use crate::host::OpenError;
use crate::host::walk::open_beneath_root;
use crate::message_id;
use walk::{Job, Progress, Walk, statx};

/// Walks longer than this show progress on a terminal.
const QUIET_FOR: Duration = Duration::from_secs(1);
/// Most threads one walk uses.
const MAX_THREADS: usize = 8;

/// How to run the walks.
pub struct Options<'a> {
    /// Count what is wrong, change nothing.
    pub check_only: bool,
    /// Set from elsewhere to stop every walk at the next directory.
    pub cancel: &'a AtomicBool,
    /// Show files done and the rate on stderr (only when it is a terminal).
    pub progress: bool,
    /// Docker's daemon.json, for a `data-root` the config does not name.
    pub daemon_json: &'a Path,
}

/// One volume walked: its host owner, what the walk found and did.
#[derive(Debug)]
pub struct Walked {
    pub owner: Owner,
    pub desired: String,
    pub summary: Summary,
    /// The top directory's mode, when it was (or is) not the configured one.
    pub mode_change: Option<(Mode, Mode)>,
}

/// The host owner a volume wants: its ids, or a tenant's container ids mapped through the
/// tenant's ranges in the subids files. Not known: refused, or failed when a lookup failed.
pub fn host_owner(volume: &VolumeConfig, config: &Config, ids: &dyn IdResolver) -> Result<Owner, Outcome> {
    let Some(tenant) = &volume.tenant else {
        return Ok(Owner {
            uid: Uid(volume.uid),
            gid: Gid(volume.gid),
        });
    };
    let name = &tenant.name;
    let context = format!("{}: tenant {}", name.origin, name.value);
    let refuse = |why: String| Unresolved::Invalid(why).outcome(&context);
    let fail = |why: String| Unresolved::LookupFailed(why).outcome(&context);
    let uid = name.value.resolve_user(ids).map_err(|why| why.outcome(&context))?;
    // A uid without an entry has the group of its number, as rootless setups make them.
    let own_gid = User::from_uid(NixUid::from_raw(uid.0))
        .map_err(|e| fail(format!("looking up its primary group failed: {}", e.desc())))?
        .map_or(uid.0, |u| u.gid.as_raw());
    if own_gid == u32::MAX {
        return Err(refuse(
            "its primary group is gid 4294967295, which is not a valid id".into(),
        ));
    }
    let [(subuid_file, subuid), (subgid_file, subgid)] =
        crate::subids::tenant_ranges(config, &name.value, uid.0, crate::subids::other_spelling).map_err(|e| match e
            .is_refusal()
        {
            true => refuse(e.to_string()),
            false => fail(e.to_string()),
        })?;
    let in_file = |file: &Path, why: String| refuse(format!("{}: {why}", file.display()));
    let host_uid = map_id(tenant.mapping, uid.0, &subuid, volume.uid).map_err(|w| in_file(&subuid_file, w))?;
    let host_gid = map_id(tenant.mapping, own_gid, &subgid, volume.gid).map_err(|w| in_file(&subgid_file, w))?;
    Ok(Owner {
        uid: Uid(host_uid),
        gid: Gid(host_gid),
    })
}

fn desired(volume: &VolumeConfig, owner: Owner) -> String {
    let tenant = volume.tenant.as_ref().map(|t| (t.name.value.to_string(), t.mapping));
    let container = tenant
        .as_ref()
        .map(|(name, mapping)| (name.as_str(), *mapping, volume.uid, volume.gid));
    rules::desired(owner, volume.mode, container)
}

/// Why a volume was not walked (nothing was changed).
#[derive(Debug)]
pub struct NotWalked {
    pub desired: String,
    pub outcome: Outcome,
}

impl fmt::Display for NotWalked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Refused { reason } => write!(f, "refused: {reason}"),
            Outcome::Failed { error } => write!(f, "failed: {error}"),
            other => f.write_str(other.label()),
        }
    }
}

/// Walks one volume: the top path must be a directory reached through root-owned directories
/// (never a symlink); the top gets the owner and mode, everything below the owner. Once the walk
/// has begun, a failure (the top's mode included) is counted in the summary of what it did.
pub fn walk_volume(
    volume: &VolumeConfig,
    config: &Config,
    ids: &dyn IdResolver,
    options: &Options<'_>,
) -> Result<Walked, NotWalked> {
    let unwalked = |desired: String, outcome| NotWalked { desired, outcome };
    let owner = match host_owner(volume, config, ids) {
        Ok(owner) => owner,
        Err(outcome) => return Err(unwalked(desired_plain(volume), outcome)),
    };
    let desired = desired(volume, owner);
    // The config refused volumes in the data roots it knows; daemon.json's is known only now.
    let data_root = match data_root(
        config.docker.as_ref().and_then(|d| d.configured_data_root()),
        options.daemon_json,
    ) {
        Ok(root) => root,
        // Without it, a volume could be inside the data root: not walked.
        Err(error) => return Err(unwalked(desired, Outcome::Failed { error })),
    };
    let data_roots = [Path::new(DOCKER_DATA_ROOT), &data_root];
    if let Some(reason) = volume_refusal(&volume.path, &data_roots) {
        return Err(unwalked(desired, Outcome::Refused { reason }));
    }
    let (path_fd, stat) = match open_beneath_root(&volume.path) {
        Ok(found) => found,
        Err(OpenError::Missing) => return Err(unwalked(desired, Outcome::Missing)),
        Err(OpenError::Refused(r)) => return Err(unwalked(desired, Outcome::Refused { reason: r.0 })),
        Err(OpenError::Io(e)) => {
            // Root refused: a FUSE file system of a user's (no allow_other) says why.
            if let Some(reason) = fuse_of_a_user_at(&volume.path) {
                return Err(unwalked(desired, Outcome::Refused { reason }));
            }
            let error = format!("open: {e}");
            return Err(unwalked(desired, Outcome::Failed { error }));
        }
    };
    if stat.kind != FileKind::Directory {
        let reason = format!("is {}, expected a directory", stat.kind);
        return Err(unwalked(desired, Outcome::Refused { reason }));
    }
    match fuse_of_a_user(&path_fd) {
        Ok(None) => {}
        Ok(Some(reason)) => return Err(unwalked(desired, Outcome::Refused { reason })),
        Err(error) => return Err(unwalked(desired, Outcome::Failed { error })),
    }
    if let Err(reason) = data_root_by_identity(&path_fd, &data_roots) {
        return Err(unwalked(desired, Outcome::Refused { reason }));
    }
    let failed = |what: &str, e: Errno| {
        let error = format!("{what}: {}", explain(e));
        NotWalked {
            desired: desired.clone(),
            outcome: Outcome::Failed { error },
        }
    };
    let top = openat(&path_fd, ".", walk::DIR_FLAGS, NixMode::empty()).map_err(|e| failed("open", e))?;
    let top_seen = statx(std::os::fd::AsFd::as_fd(&top)).map_err(|e| failed("stat", e))?;
    let top_again = nix::unistd::dup(&top).map_err(|e| failed("dup", e))?;
    let top = Job {
        fd: top,
        place: None,
        seen: top_seen,
        change: judge(&top_seen, owner, &top_seen) == Verdict::Change,
    };
    let progress = Progress::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let walk = Walk {
        owner,
        top: top_seen,
        check_only: options.check_only,
        cancel: options.cancel,
        progress: &progress,
        threads,
        max_deferred: walk::MAX_DEFERRED,
        max_reopen_steps: walk::MAX_REOPEN_STEPS,
    };
    let mut summary = if options.progress && std::io::stderr().is_terminal() {
        with_progress(&volume.path, &progress, || walk::walk(top, &walk))
    } else {
        walk::walk(top, &walk)
    };
    summary.seen += 1;
    let mut mode_change = None;
    // A cancelled walk changes nothing more.
    if let Some(mode) = volume.mode.filter(|_| !summary.cancelled) {
        match set_top_mode(&top_again, mode, options.check_only) {
            Ok(change) => mode_change = change,
            Err(error) => summary.fail(PathBuf::new, error),
        }
    }
    Ok(Walked {
        owner,
        desired,
        summary,
        mode_change,
    })
}

/// A top that is a FUSE file system mounted by a user other than root (`fusermount` on a
/// directory of theirs, such as a volume they own): its server could keep the walk waiting,
/// and walks run one at a time. `Ok(Some(reason))` to refuse it, `Err` when its mount cannot
/// be found. The mount is found by an id the kernel gives without asking the file system.
fn fuse_of_a_user(top: &OwnedFd) -> Result<Option<String>, String> {
    const MOUNTINFO: &str = "/proc/self/mountinfo";
    let mnt = walk::mount_of(std::os::fd::AsFd::as_fd(top)).ok_or("cannot tell which mount it is on")?;
    let mountinfo = std::fs::read_to_string(MOUNTINFO).map_err(|e| format!("{MOUNTINFO}: {e}"))?;
    Ok(match fuse_mounter(&mountinfo, mnt) {
        Some(Some(0)) | None => None,
        Some(Some(uid)) => Some(format!(
            "is a FUSE file system that uid {uid} mounted; its server could keep every walk waiting"
        )),
        Some(None) => {
            Some("is a FUSE file system whose mounter is not recorded; its server could keep every walk waiting".into())
        }
    })
}

/// [`fuse_of_a_user`] of `path` opened beneath its parent with `O_PATH`, which asks the file
/// system mounted there nothing, for a top that could not be opened otherwise.
fn fuse_of_a_user_at(path: &Path) -> Option<String> {
    let (parent, name) = (path.parent()?, path.file_name()?);
    let (dir, _) = crate::host::walk::open_directory_beneath_root(parent).ok()?;
    let top = openat(&dir, name, walk::PATH_FLAGS, NixMode::empty()).ok()?;
    fuse_of_a_user(&top).ok().flatten()
}

/// Gives the walked top directory `mode`, or with `check_only` only looks; returns the change
/// it needed, if any. A set-uid or set-gid bit there (a directory keeps them through chown)
/// stays: its other bits are compared, and when they differ the top is left as it is, since
/// the unit may not set those bits (`RestrictSUIDSGID=yes`) and a chmod would drop them.
fn set_top_mode(top: &OwnedFd, mode: Mode, check_only: bool) -> Result<Option<(Mode, Mode)>, String> {
    // With an extended ACL the mode's group bits are its mask.
    match crate::host::mode_refusal(&crate::host::RealHost::default(), top) {
        Ok(None) => {}
        Ok(Some(refusal)) => return Err(refusal.0),
        Err(e) => return Err(format!("read ACL: {e}")),
    }
    let now = crate::host::walk::stat_fd(top)
        .map_err(|e| format!("stat: {}", explain(e)))?
        .mode;
    const SET_ID: u32 = 0o6000;
    if now.bits() & !SET_ID == mode.bits() {
        return Ok(None);
    }
    if now.bits() & SET_ID != 0 {
        let kept = Mode::from_st_mode(mode.bits() | (now.bits() & SET_ID));
        return Err(format!(
            "top mode {now}, wanted {mode}: a chmod would drop its set-id bits, which nonrootd may not set again; chmod {kept} it by hand"
        ));
    }
    if !check_only {
        let bits = NixMode::from_bits_truncate(mode.bits() as libc::mode_t);
        fchmod(top, bits).map_err(|e| format!("chmod: {}", explain(e)))?;
    }
    Ok(Some((now, mode)))
}

/// Errors with a hint where the cause is usually the unit's sandbox.
fn explain(e: Errno) -> String {
    match e {
        Errno::EROFS => {
            format!(
                "{e}: read-only here; under the shipped unit add a drop-in with ReadWritePaths=-PATH for the volume, or restart nonrootd if the volume was made after it started"
            )
        }
        other => other.to_string(),
    }
}

/// Runs `walk`, printing "PATH: N files, M changed, R files/s" on stderr once it has taken
/// longer than [`QUIET_FOR`], and clearing the line at the end.
fn with_progress(path: &Path, progress: &Progress, walk: impl FnOnce() -> Summary + Send) -> Summary {
    let done = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut shown = false;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let elapsed = started.elapsed();
                if elapsed < QUIET_FOR || elapsed.subsec_millis() >= 100 {
                    continue;
                }
                let seen = progress.seen.load(Ordering::Relaxed);
                let changed = progress.changed.load(Ordering::Relaxed);
                let rate = seen as f64 / elapsed.as_secs_f64();
                let _ = write!(
                    std::io::stderr(),
                    "\r\x1b[K{}: {seen} files, {changed} changed, {rate:.0} files/s",
                    path.display()
                );
                shown = true;
            }
            if shown {
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            }
        });
        let summary = walk();
        done.store(true, Ordering::Relaxed);
        summary
    })
}

/// The data roots' rules by identity rather than by name: a volume reached through a
/// root-owned symlink to a data root, or a bind mount of one, is inside it all the same. The
/// opened top's parents are followed up to `/`; where one is a data root, the names below it
/// (from the path the top was opened as) must be a named volume's data. A data root below the
/// top is refused too.
fn data_root_by_identity(top: &OwnedFd, data_roots: &[&Path]) -> Result<(), String> {
    let opened_as = std::fs::read_link(format!("/proc/self/fd/{}", top.as_raw_fd()))
        .map_err(|e| format!("cannot check it against Docker's data roots: /proc/self/fd: {e}"))?;
    let names: Vec<&std::ffi::OsStr> = opened_as.iter().skip(1).collect();
    // As far up as the names it was opened as reach: `depth` names below the one at `depth`.
    let top_up: Vec<FileId> = ids_up_to_root(top)?.into_iter().take(names.len() + 1).collect();
    for root in data_roots {
        // One that does not exist (Docker not installed) holds nothing.
        let Ok(fd) = open_dir_path(None, root) else { continue };
        let root_up = ids_up_to_root(&fd)?;
        if let Some(depth) = top_up.iter().position(|id| *id == root_up[0]) {
            let inside = root.join(names[names.len() - depth..].iter().collect::<PathBuf>());
            if let Some(why) = volume_refusal(&inside, &[root]) {
                return Err(format!("{why} (reached as {})", opened_as.display()));
            }
        } else if root_up[1..].contains(&top_up[0]) {
            return Err(format!(
                "{} holds Docker's data root {}: its walk would hand Docker's own files to a container's user",
                opened_as.display(),
                root.display()
            ));
        }
    }
    Ok(())
}

/// The identities of `dir` and of each directory above it, up to `/`.
fn ids_up_to_root(dir: &OwnedFd) -> Result<Vec<FileId>, String> {
    let mut ids = vec![file_id(dir)?];
    let mut above: Option<OwnedFd> = None;
    loop {
        let parent = open_dir_path(Some(above.as_ref().unwrap_or(dir)), Path::new(".."))
            .map_err(|e| format!("cannot check it against Docker's data roots: ..: {}", explain(e)))?;
        let id = file_id(&parent)?;
        if Some(&id) == ids.last() {
            return Ok(ids);
        }
        ids.push(id);
        above = Some(parent);
    }
}

/// A file's device and inode.
type FileId = (u64, u64);

fn file_id(fd: &OwnedFd) -> Result<FileId, String> {
    nix::sys::stat::fstat(fd)
        .map(|s| (s.st_dev, s.st_ino))
        .map_err(|e| format!("cannot check it against Docker's data roots: fstat: {}", explain(e)))
}

/// An `O_PATH` descriptor of a directory, beneath `dir` or by path.
fn open_dir_path(dir: Option<&OwnedFd>, path: &Path) -> Result<OwnedFd, Errno> {
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    match dir {
        Some(dir) => openat(dir, path, flags, NixMode::empty()),
        None => nix::fcntl::open(path, flags, NixMode::empty()),
    }
}

/// Applies (or with `check_only`, inspects) every `[[volume]]`: one report entry each.
pub fn apply(config: &Config, ids: &dyn IdResolver, options: &Options<'_>) -> Report {
    let mut report = Report::default();
    for volume in &config.volumes {
        if options.cancel.load(Ordering::Relaxed) {
            let error = "cancelled before the walk".to_string();
            report.push(
                Duty::Volumes,
                &volume.path,
                desired_plain(volume),
                Outcome::Failed { error },
            );
            continue;
        }
        let started = Instant::now();
        let (desired, outcome, cancelled_cleanly) = match walk_volume(volume, config, ids, options) {
            Ok(walked) => {
                let outcome = rules::outcome(&walked.summary, walked.mode_change, options.check_only);
                let cancelled_cleanly = walked.summary.cancelled && walked.summary.failed == 0;
                (walked.desired, outcome, cancelled_cleanly)
            }
            Err(not) => (not.desired, not.outcome, false),
        };
        let took = started.elapsed().as_secs_f64();
        match &outcome {
            Outcome::Changed { change } => {
                info!(MESSAGE_ID = message_id::PATH_CHANGED, duty = "volumes", path = %volume.path.display(), "changed in {took:.2}s: {change}")
            }
            Outcome::Refused { reason } => {
                warn!(MESSAGE_ID = message_id::PATH_REFUSED, duty = "volumes", path = %volume.path.display(), "refused: {reason}")
            }
            // A reload or stop cancelled it, and nothing failed: routine, not a failure to page
            // anybody about.
            Outcome::Failed { error } if cancelled_cleanly => {
                info!(duty = "volumes", path = %volume.path.display(), "{error}")
            }
            Outcome::Failed { error } => {
                warn!(MESSAGE_ID = message_id::PATH_REFUSED, duty = "volumes", path = %volume.path.display(), "failed: {error}")
            }
            _ => {}
        }
        report.push(Duty::Volumes, &volume.path, desired, outcome);
    }
    report
}

fn desired_plain(volume: &VolumeConfig) -> String {
    format!("owner {}:{}", volume.uid, volume.gid)
}
