//! A recording in-memory host for unit tests of the engine.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nonrootd_core::acl::Acl;
use nonrootd_core::ids::{Gid, Uid};
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::{FileId, FileKind, Refusal, Stat};

use super::{Host, OpenError, Opened};

/// A file of the fake host.
#[derive(Clone, Debug)]
pub struct FakeFile {
    pub stat: Stat,
    pub acl: Acl,
}

/// Inode numbers of the fake files: each new one is another file.
static NEXT_INO: AtomicU64 = AtomicU64::new(1);

impl FakeFile {
    pub fn new(kind: FileKind, mode: u32, uid: u32) -> FakeFile {
        FakeFile {
            stat: Stat {
                kind,
                mode: Mode::from_st_mode(mode),
                uid: Uid(uid),
                gid: Gid(0),
                nlink: 1,
                id: FileId {
                    dev: 1,
                    ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
                },
            },
            acl: Acl::from_mode(mode),
        }
    }
}

/// Files by path, paths that refuse to open, paths on a file system without ACLs (sysfs),
/// and every change made, in order.
#[derive(Default)]
pub struct FakeHost {
    pub files: RefCell<BTreeMap<PathBuf, FakeFile>>,
    pub refusals: BTreeMap<PathBuf, String>,
    pub without_acls: Vec<PathBuf>,
    pub calls: RefCell<Vec<String>>,
}

impl FakeHost {
    pub fn with(mut self, path: &str, file: FakeFile) -> FakeHost {
        self.files.get_mut().insert(PathBuf::from(path), file);
        self
    }

    pub fn without_acls(mut self, path: &str) -> FakeHost {
        self.without_acls.push(PathBuf::from(path));
        self
    }

    pub fn refusing(mut self, path: &str, why: &str) -> FakeHost {
        self.refusals.insert(PathBuf::from(path), why.to_string());
        self
    }

    pub fn file(&self, path: &str) -> FakeFile {
        self.files.borrow()[Path::new(path)].clone()
    }

    fn update(&self, path: &Path, call: String, change: impl FnOnce(&mut FakeFile)) -> io::Result<()> {
        self.calls.borrow_mut().push(call);
        let mut files = self.files.borrow_mut();
        let file = files
            .get_mut(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        change(file);
        Ok(())
    }
}

impl Host for FakeHost {
    type Handle = PathBuf;

    fn open(&self, path: &Path) -> Result<Opened<PathBuf>, OpenError> {
        if let Some(why) = self.refusals.get(path) {
            return Err(OpenError::Refused(Refusal(why.clone())));
        }
        let stat = self
            .files
            .borrow()
            .get(path)
            .map(|f| f.stat)
            .ok_or(OpenError::Missing)?;
        Ok(Opened {
            handle: path.to_path_buf(),
            stat,
        })
    }

    fn stat(&self, file: &PathBuf) -> io::Result<Stat> {
        Ok(self.file(file.to_str().expect("utf-8 test path")).stat)
    }

    fn set_mode(&self, file: &PathBuf, mode: Mode) -> io::Result<()> {
        self.update(file, format!("chmod {mode} {}", file.display()), |f| f.stat.mode = mode)
    }

    fn set_group(&self, file: &PathBuf, gid: Gid) -> io::Result<()> {
        self.update(file, format!("chgrp {gid} {}", file.display()), |f| f.stat.gid = gid)
    }

    fn read_acl(&self, file: &PathBuf) -> io::Result<Acl> {
        if self.without_acls.contains(file) {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        Ok(self.file(file.to_str().expect("utf-8 test path")).acl)
    }

    fn write_acl(&self, file: &PathBuf, acl: &Acl) -> io::Result<()> {
        let acl = acl.clone();
        self.update(file, format!("setfacl {acl} {}", file.display()), |f| f.acl = acl)
    }
}
