//! The privileged operations nonrootd performs, behind a trait: [`RealHost`] does them through
//! file descriptors from a safe path walk; a recording fake stands in for unit tests.

use std::io;
use std::path::Path;

use nonrootd_core::acl::Acl;
use nonrootd_core::ids::Gid;
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::{Refusal, Stat, check_mode_settable};

mod real;
pub mod walk;

#[cfg(test)]
pub mod fake;

pub use real::{BeneathDirs, RealHost};

/// Why a path could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// A component does not exist.
    Missing,
    /// The walk met something unsafe (a symlink at the end, an unsafe transition …).
    Refused(Refusal),
    Io(io::Error),
}

/// A file opened by [`Host::open`], with what `fstat` said at that moment.
pub struct Opened<H> {
    pub handle: H,
    pub stat: Stat,
}

/// Host operations on files. Every change goes through a handle from [`Host::open`], never
/// through a path, so a file swapped after the checks is never the one changed.
pub trait Host {
    type Handle;

    /// Opens `path` (absolute) without following a symlink in the last component, following
    /// ones in the directory part only when they are safe.
    fn open(&self, path: &Path) -> Result<Opened<Self::Handle>, OpenError>;
    fn stat(&self, file: &Self::Handle) -> io::Result<Stat>;
    fn set_mode(&self, file: &Self::Handle, mode: Mode) -> io::Result<()>;
    fn set_group(&self, file: &Self::Handle, gid: Gid) -> io::Result<()>;
    fn read_acl(&self, file: &Self::Handle) -> io::Result<Acl>;
    fn write_acl(&self, file: &Self::Handle, acl: &Acl) -> io::Result<()>;
}

/// Why nonrootd may not set `file`'s mode: an extended ACL (see [`check_mode_settable`]).
/// `None` also on a file system without ACLs (sysfs, where the DMI tables are).
pub fn mode_refusal<H: Host>(host: &H, file: &H::Handle) -> io::Result<Option<Refusal>> {
    match host.read_acl(file) {
        Ok(acl) => Ok(check_mode_settable(&acl).err()),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}
