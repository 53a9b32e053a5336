//! The real host: changes made through `O_PATH` descriptors from the safe walk.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode as NixMode, fchmodat};
use nix::unistd::fchownat;
use nonrootd_core::acl::{Acl, Perm, Qualifier};
use nonrootd_core::ids::{Gid, Uid};
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::Stat;
use posix_acl::{PosixACL, Qualifier as AclQualifier};

use super::walk::{open_beneath, open_beneath_root, stat_fd};
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

fn acl_error(e: posix_acl::ACLError) -> io::Error {
    match e.as_io_error() {
        Some(err) => io::Error::new(err.kind(), e.to_string()),
        None => io::Error::other(e.to_string()),
    }
}

/// The real host, opening a path whose parent directory is in `dirs` (descriptors from
/// [`super::walk::open_directory_beneath_root`], kept only while they pass
/// [`super::walk::check_directory`]) with one `openat` beneath that descriptor instead of a
/// walk from `/`. Everything else is [`RealHost`]'s.
pub struct BeneathDirs<'a> {
    pub dirs: &'a HashMap<PathBuf, OwnedFd>,
}

impl Host for BeneathDirs<'_> {
    type Handle = OwnedFd;

    fn open(&self, path: &Path) -> Result<Opened<OwnedFd>, OpenError> {
        let beneath = path.parent().zip(path.file_name());
        let (handle, stat) = match beneath.and_then(|(parent, name)| Some((parent, self.dirs.get(parent)?, name))) {
            Some((parent, dir, name)) => open_beneath(dir, parent, name)?,
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
        let raw = PosixACL::read_acl(proc_fd_path(file)).map_err(acl_error)?;
        let mut acl = Acl::from_mode(0);
        for entry in raw.entries() {
            let perm = Perm::from_bits(entry.perm);
            match entry.qual {
                AclQualifier::UserObj => acl.user_obj = perm,
                AclQualifier::GroupObj => acl.group_obj = perm,
                AclQualifier::Other => acl.other = perm,
                AclQualifier::Mask => acl.mask = Some(perm),
                AclQualifier::User(uid) => {
                    acl.named.insert(Qualifier::User(Uid(uid)), perm);
                }
                AclQualifier::Group(gid) => {
                    acl.named.insert(Qualifier::Group(Gid(gid)), perm);
                }
                AclQualifier::Undefined => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "ACL has an entry of unknown type",
                    ));
                }
            }
        }
        Ok(acl)
    }

    fn write_acl(&self, file: &OwnedFd, acl: &Acl) -> io::Result<()> {
        let mut raw = PosixACL::empty();
        raw.set(AclQualifier::UserObj, acl.user_obj.bits());
        raw.set(AclQualifier::GroupObj, acl.group_obj.bits());
        raw.set(AclQualifier::Other, acl.other.bits());
        if let Some(mask) = acl.mask {
            raw.set(AclQualifier::Mask, mask.bits());
        }
        for (who, perm) in &acl.named {
            let qual = match who {
                Qualifier::User(uid) => AclQualifier::User(uid.0),
                Qualifier::Group(gid) => AclQualifier::Group(gid.0),
            };
            raw.set(qual, perm.bits());
        }
        raw.write_acl(proc_fd_path(file)).map_err(acl_error)
    }
}
