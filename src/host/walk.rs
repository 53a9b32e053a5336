//! A component-by-component path walk with `openat(O_PATH|O_NOFOLLOW)`, deciding every step with
//! the pure checks of `nonrootd_core::plan` (systemd's CHASE_SAFE rules).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat, readlinkat};
use nix::sys::stat::{Mode as NixMode, fstat};
use nonrootd_core::ids::{Gid, Uid};
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::{
    FileId, FileKind, Refusal, Stat, check_directory_transit, check_entry_transit, check_private_directory,
    check_symlink_transit,
};

use super::OpenError;

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;

const PATH_FLAGS: OFlag = OFlag::O_PATH.union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// `statx` of an open descriptor (a symlink itself) from what the kernel already knows
/// (`AT_STATX_DONT_SYNC`): the file system behind it is not asked, so a FUSE server that a
/// user mounted on a path nonrootd opens (a volume's top) cannot keep it waiting. Local file
/// systems have nothing newer to tell; a network one may have a change another client made.
pub fn known_statx(fd: BorrowedFd<'_>, mask: u32) -> Result<libc::statx, Errno> {
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC;
    let mut buf = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the empty path is NUL-terminated, `fd` is an open descriptor and `buf` is a
    // writable statx buffer of the right size that outlives the call.
    let ret = unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), flags, mask, buf.as_mut_ptr()) };
    Errno::result(ret)?;
    // SAFETY: statx(2) succeeded and filled the buffer (it was zeroed before in any case).
    Ok(unsafe { buf.assume_init() })
}

pub fn stat_fd(fd: &OwnedFd) -> Result<Stat, Errno> {
    let mask =
        libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_UID | libc::STATX_GID | libc::STATX_NLINK | libc::STATX_INO;
    let st = known_statx(fd.as_fd(), mask)?;
    // A field the file system did not fill reads as 0 (uid root, a regular file): refused.
    if st.stx_mask & mask != mask {
        return Err(Errno::ENODATA);
    }
    let mode = u32::from(st.stx_mode);
    Ok(Stat {
        kind: FileKind::from_st_mode(mode),
        mode: Mode::from_st_mode(mode),
        uid: Uid(st.stx_uid),
        gid: Gid(st.stx_gid),
        nlink: u64::from(st.stx_nlink),
        id: FileId {
            dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        },
    })
}

fn refused(walked: &Path, why: Refusal) -> OpenError {
    OpenError::Refused(Refusal(format!("{}: {why}", walked.display())))
}

fn symlink_at_the_end(walked: &Path) -> OpenError {
    refused(
        walked,
        Refusal("is a symlink; the last component is never followed".into()),
    )
}

fn io(errno: Errno) -> OpenError {
    match errno {
        Errno::ENOENT => OpenError::Missing,
        other => OpenError::Io(other.into()),
    }
}

/// Opens `path` as an `O_PATH` descriptor. Directories on the way must pass
/// `check_directory_transit`; symlinks on the way must be root-owned; the last component is
/// never followed.
pub fn open_beneath_root(path: &Path) -> Result<(OwnedFd, Stat), OpenError> {
    walk(path, false)
}

/// Opens the directory `path` as an `O_PATH` descriptor under the rules for the directory part
/// of a path: a root-owned symlink is followed, and the directory itself must pass
/// `check_directory_transit`, so a file can be opened beneath it with one `openat`.
pub fn open_directory_beneath_root(path: &Path) -> Result<(OwnedFd, Stat), OpenError> {
    walk(path, true)
}

/// Opens `name` beneath `dir`, a descriptor from [`open_directory_beneath_root`] for `dir_path`
/// whose [`check_directory`] just gave `dir_stat`, with one `openat`; `name` is not followed.
/// The caller keeps `dir` only while the directory still passes [`check_directory`]: the socket
/// fixer checks it again at every attribute change.
pub fn open_beneath(
    dir: &OwnedFd,
    dir_path: &Path,
    dir_stat: &Stat,
    name: &OsStr,
) -> Result<(OwnedFd, Stat), OpenError> {
    let fd = openat(dir, name, PATH_FLAGS, NixMode::empty()).map_err(io)?;
    let stat = stat_fd(&fd).map_err(io)?;
    let walked = || dir_path.join(name);
    if stat.kind == FileKind::Symlink {
        return Err(symlink_at_the_end(&walked()));
    }
    check_entry_transit(dir_stat, &stat).map_err(|r| refused(&walked(), r))?;
    Ok((fd, stat))
}

/// Whether a directory opened earlier still exists and passes the transit rules; its stat.
pub fn check_directory(dir: &OwnedFd, dir_path: &Path) -> Result<Stat, OpenError> {
    let stat = stat_fd(dir).map_err(io)?;
    if stat.nlink == 0 {
        return Err(OpenError::Missing);
    }
    check_directory_transit(&stat).map_err(|r| refused(dir_path, r))?;
    Ok(stat)
}

/// Refuses, when running as root, a directory that anyone but root could change, for files
/// nonrootd names by path in it (its state, the subordinate id files): every directory on its
/// path must pass the transit rules (symlinks root's), and the directory itself must be
/// writable by root alone, sticky or not. A missing directory passes (the parents that exist
/// have been checked). Errors name the path at fault when it is not `dir` itself, which the
/// caller names.
pub fn check_root_only_dir(dir: &Path) -> io::Result<()> {
    check_root_only(dir, true)
}

/// [`check_root_only_dir`] of a directory that must exist: for one just made or listed, which
/// someone else may have made first (below a sticky directory such as /tmp).
pub fn check_existing_root_only_dir(dir: &Path) -> io::Result<()> {
    check_root_only(dir, false)
}

fn check_root_only(dir: &Path, missing_passes: bool) -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let absolute = std::path::absolute(dir)?;
    let refused = |why: &str| {
        let own = format!("{}: ", absolute.display());
        let why = why.strip_prefix(&own).unwrap_or(why);
        io::Error::new(io::ErrorKind::PermissionDenied, format!("{why}: refusing to use it"))
    };
    match open_directory_beneath_root(&absolute) {
        Ok((_, stat)) => check_private_directory(&stat).map_err(|why| refused(&why.0)),
        Err(OpenError::Missing) if missing_passes => Ok(()),
        Err(OpenError::Missing) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "is gone (made and removed by someone else?): refusing to use it",
        )),
        Err(OpenError::Refused(why)) => Err(refused(&why.0)),
        Err(OpenError::Io(e)) => Err(e),
    }
}

/// Whether two descriptors refer to the same inode.
pub fn same_inode(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (fstat(a), fstat(b)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

fn walk(path: &Path, as_directory: bool) -> Result<(OwnedFd, Stat), OpenError> {
    let root = open("/", PATH_FLAGS.union(OFlag::O_DIRECTORY), NixMode::empty()).map_err(io)?;
    let root_stat = stat_fd(&root).map_err(io)?;
    check_directory_transit(&root_stat).map_err(|r| refused(Path::new("/"), r))?;

    let mut dirs: Vec<(OwnedFd, PathBuf, Stat)> = vec![(root, PathBuf::from("/"), root_stat)];
    let mut pending: VecDeque<OsString> = components(path.as_os_str());
    let mut symlinks = 0;
    let mut last: Option<(OwnedFd, Stat)> = None;

    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if dirs.len() > 1 {
                dirs.pop();
            }
            last = None;
            continue;
        }
        let (dir, dir_path, dir_stat) = dirs.last().expect("the root stays on the stack");
        let walked = dir_path.join(&name);
        let fd = openat(dir, name.as_os_str(), PATH_FLAGS, NixMode::empty()).map_err(io)?;
        let stat = stat_fd(&fd).map_err(io)?;
        check_entry_transit(dir_stat, &stat).map_err(|r| refused(&walked, r))?;
        let is_last = pending.is_empty() && !as_directory;
        match stat.kind {
            FileKind::Symlink if is_last => return Err(symlink_at_the_end(&walked)),
            FileKind::Symlink => {
                check_symlink_transit(&stat).map_err(|r| refused(&walked, r))?;
                symlinks += 1;
                if symlinks > MAX_SYMLINKS {
                    return Err(refused(&walked, Refusal("too many levels of symlinks".into())));
                }
                let target = readlinkat(&fd, "").map_err(io)?;
                if target.as_bytes().starts_with(b"/") {
                    dirs.truncate(1);
                }
                for part in components(&target).into_iter().rev() {
                    pending.push_front(part);
                }
            }
            FileKind::Directory if !is_last => {
                check_directory_transit(&stat).map_err(|r| refused(&walked, r))?;
                dirs.push((fd, walked, stat));
            }
            _ if !is_last => {
                return Err(refused(&walked, Refusal(format!("is {}, not a directory", stat.kind))));
            }
            _ => last = Some((fd, stat)),
        }
    }
    match last {
        Some(found) => Ok(found),
        // The path named a directory already on the stack ("/" or ending in "..").
        None => {
            let (fd, ..) = dirs.pop().expect("the root stays on the stack");
            let stat = stat_fd(&fd).map_err(io)?;
            Ok((fd, stat))
        }
    }
}

/// The non-empty components of a path other than ".".
fn components(path: &OsStr) -> VecDeque<OsString> {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs as root, like the rest of the suite: the check only applies to root.
    #[test]
    fn a_directory_others_could_change_is_refused() {
        use std::fs;
        use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
        let scratch = tempfile::tempdir().unwrap();
        let state = scratch.path().join("state");
        let refusal = |dir: &Path| check_root_only_dir(dir).unwrap_err().to_string();

        check_root_only_dir(&state).expect("a missing directory passes");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        check_root_only_dir(&state).unwrap();

        chown(&state, Some(1234), None).unwrap();
        assert_eq!(
            refusal(&state),
            "unsafe path transition: directory owned by uid 1234: refusing to use it"
        );
        chown(&state, Some(0), None).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            refusal(&state),
            "directory mode 1777 lets others write; only what root alone can change is trusted here: refusing to use it"
        );
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();

        // A parent that another user owns, whether the directory exists yet or not.
        let theirs = scratch.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        chown(&theirs, Some(1234), None).unwrap();
        let below = theirs.join("state");
        let expected = format!(
            "{}: unsafe path transition: directory owned by uid 1234: refusing to use it",
            theirs.display()
        );
        assert_eq!(refusal(&below), expected);
        fs::create_dir(&below).unwrap();
        assert_eq!(refusal(&below), expected);

        // A symlink to the directory: root's is followed, another user's is refused.
        let link = scratch.path().join("link");
        symlink(&state, &link).unwrap();
        check_root_only_dir(&link).unwrap();
        lchown(&link, Some(1234), None).unwrap();
        assert_eq!(
            refusal(&link),
            "unsafe path transition: symlink owned by uid 1234: refusing to use it"
        );
    }
}
