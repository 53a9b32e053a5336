//! The real host: changes made through `O_PATH` descriptors from the safe walk.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode as NixMode, fchmodat};
use nix::unistd::fchownat;
use nonrootd_core::acl::Acl;
use nonrootd_core::ids::Gid;
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::Stat;

use super::walk::{check_directory, open_beneath, open_beneath_root, stat_fd};
use super::{Host, OpenError, Opened};

/// Set once `fchmodat2` turned out to be missing (kernels before 6.6).
static FCHMODAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// The host nonrootd runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost {
    /// Change modes through `/proc/self/fd/N` even where `fchmodat2` exists (to test the
    /// fallback that kernels before 6.6 take).
    pub force_proc_chmod: bool,
}

/// The `/proc/self/fd/N` path of a descriptor: the way to reach the very inode an `O_PATH`
/// descriptor refers to for calls that only take paths.
fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn proc_fd_cpath(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

fn parse_acl(value: &[u8]) -> io::Result<Acl> {
    Acl::from_xattr(value).map_err(|why| io::Error::new(io::ErrorKind::InvalidData, format!("ACL: {why}")))
}

/// Reads an ACL too large for the buffer on the stack.
fn read_large_acl(path: &CStr) -> io::Result<Acl> {
    // SAFETY: NUL-terminated path and name; size 0 only asks for the length.
    let len = unsafe { libc::getxattr(path.as_ptr(), ACL_XATTR.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; len as usize];
    // SAFETY: as above, with a buffer of `buf.len()` bytes.
    let len = unsafe { libc::getxattr(path.as_ptr(), ACL_XATTR.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_acl(&buf[..len as usize])
}

/// Where the kernel keeps a file's access ACL (see `Acl::to_xattr`).
const ACL_XATTR: &CStr = c"system.posix_acl_access";

/// The real host, opening a path whose parent directory is in `dirs` (descriptors from
/// [`super::walk::open_directory_beneath_root`], kept only while they pass
/// [`super::walk::check_directory`]) with one `openat` beneath that descriptor instead of a
/// walk from `/`. Everything else is [`RealHost`]'s.
pub struct BeneathDirs<'a> {
    pub dirs: &'a HashMap<PathBuf, OwnedFd>,
}

impl Host for BeneathDirs<'_> {
    type Handle = OwnedFd;

    /// Beneath the kept descriptor of the parent while that directory still passes the
    /// transit rules (one `fstat`: its owner or mode may have changed since it was checked,
    /// and its attribute change not been read yet); else by the whole walk from `/`.
    fn open(&self, path: &Path) -> Result<Opened<OwnedFd>, OpenError> {
        let beneath = path.parent().zip(path.file_name());
        let kept = beneath.and_then(|(parent, name)| {
            let dir = self.dirs.get(parent)?;
            Some((parent, dir, check_directory(dir, parent).ok()?, name))
        });
        let (handle, stat) = match kept {
            Some((parent, dir, dir_stat, name)) => open_beneath(dir, parent, &dir_stat, name)?,
            None => open_beneath_root(path)?,
        };
        Ok(Opened { handle, stat })
    }
    fn stat(&self, file: &OwnedFd) -> io::Result<Stat> {
        RealHost::default().stat(file)
    }
    fn set_mode(&self, file: &OwnedFd, mode: Mode) -> io::Result<()> {
        RealHost::default().set_mode(file, mode)
    }
    fn set_group(&self, file: &OwnedFd, gid: Gid) -> io::Result<()> {
        RealHost::default().set_group(file, gid)
    }
    fn read_acl(&self, file: &OwnedFd) -> io::Result<Acl> {
        RealHost::default().read_acl(file)
    }
    fn write_acl(&self, file: &OwnedFd, acl: &Acl) -> io::Result<()> {
        RealHost::default().write_acl(file, acl)
    }
}

impl RealHost {
    fn fchmodat2(fd: &OwnedFd, mode: Mode) -> io::Result<()> {
        // SAFETY: fchmodat2(2) with a valid descriptor, a NUL-terminated empty path and
        // AT_EMPTY_PATH changes the mode of the file the descriptor refers to; no memory is
        // written.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fchmodat2,
                fd.as_raw_fd(),
                c"".as_ptr(),
                mode.bits() as libc::mode_t,
                libc::AT_EMPTY_PATH,
            )
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Host for RealHost {
    type Handle = OwnedFd;

    fn open(&self, path: &Path) -> Result<Opened<OwnedFd>, OpenError> {
        let (handle, stat) = open_beneath_root(path)?;
        Ok(Opened { handle, stat })
    }

    fn stat(&self, file: &OwnedFd) -> io::Result<Stat> {
        Ok(stat_fd(file)?)
    }

    fn set_mode(&self, file: &OwnedFd, mode: Mode) -> io::Result<()> {
        if !self.force_proc_chmod && !FCHMODAT2_MISSING.load(Ordering::Relaxed) {
            match Self::fchmodat2(file, mode) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    FCHMODAT2_MISSING.store(true, Ordering::Relaxed);
                }
                // A seccomp filter that does not know the call may answer EPERM instead
                // (SystemCallErrorNumber=); the path through /proc says whether it really is.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                result => return result,
            }
        }
        let mode = NixMode::from_bits_truncate(mode.bits() as libc::mode_t);
        Ok(fchmodat(
            nix::fcntl::AT_FDCWD,
            &proc_fd_path(file),
            mode,
            FchmodatFlags::FollowSymlink,
        )?)
    }

    fn set_group(&self, file: &OwnedFd, gid: Gid) -> io::Result<()> {
        let gid = nix::unistd::Gid::from_raw(gid.0);
        Ok(fchownat(file, "", None, Some(gid), AtFlags::AT_EMPTY_PATH)?)
    }

    fn read_acl(&self, file: &OwnedFd) -> io::Result<Acl> {
        let path = proc_fd_cpath(file);
        let mut buf = [0u8; 4 + 8 * 64];
        // SAFETY: NUL-terminated path and name; the kernel writes at most `buf.len()` bytes.
        let len = unsafe { libc::getxattr(path.as_ptr(), ACL_XATTR.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // No ACL beyond the mode bits.
                Some(libc::ENODATA) => Ok(Acl::from_mode(stat_fd(file)?.mode.bits())),
                Some(libc::ERANGE) => read_large_acl(&path),
                _ => Err(e),
            };
        }
        parse_acl(&buf[..len as usize])
    }

    fn write_acl(&self, file: &OwnedFd, acl: &Acl) -> io::Result<()> {
        let path = proc_fd_cpath(file);
        let value = acl.to_xattr();
        // SAFETY: NUL-terminated path and name; the kernel reads `value.len()` bytes.
        let ret = unsafe { libc::setxattr(path.as_ptr(), ACL_XATTR.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A kept directory that others may write now (its attribute change not read yet) is not
    /// used: the path is walked from `/` again, and refused.
    #[test]
    fn a_kept_directory_made_unsafe_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.join("docker.sock")).unwrap();
        let (kept, _) = crate::host::walk::open_directory_beneath_root(&dir).unwrap();
        let dirs = HashMap::from([(dir.clone(), kept)]);
        let host = BeneathDirs { dirs: &dirs };
        assert!(host.open(&dir.join("docker.sock")).is_ok());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        match host.open(&dir.join("docker.sock")) {
            Err(OpenError::Refused(why)) => assert!(why.0.contains("lets others write"), "{}", why.0),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("opened beneath an unsafe directory"),
        }
    }
}
