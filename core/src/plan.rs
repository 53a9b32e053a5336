//! Safety checks and planning: observed file state plus desired state → the change to make.

use std::fmt;

use serde::Serialize;

use crate::acl::Acl;
use crate::ids::{Gid, Uid};
use crate::mode::Mode;

/// The type of a file as `fstat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Directory,
    Regular,
    Socket,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    pub fn from_st_mode(st_mode: u32) -> FileKind {
        match st_mode & 0o170000 {
            0o040000 => FileKind::Directory,
            0o140000 => FileKind::Socket,
            0o120000 => FileKind::Symlink,
            0o010000 => FileKind::Fifo,
            0o020000 => FileKind::CharDevice,
            0o060000 => FileKind::BlockDevice,
            _ => FileKind::Regular,
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Regular => "a regular file",
            FileKind::Socket => "a socket",
            FileKind::Symlink => "a symlink",
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
        })
    }
}

/// Which file a path led to: its device and inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What `fstat` says about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileKind,
    pub mode: Mode,
    pub uid: Uid,
    pub gid: Gid,
    pub nlink: u64,
    pub id: FileId,
}

/// Why a path is not touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// May a path walk pass through this directory? Only when root owns it and nobody else can
/// write to it, or it is sticky (like `/tmp`) so others cannot replace what root put there.
pub fn check_directory_transit(dir: &Stat) -> Result<(), Refusal> {
    if dir.kind != FileKind::Directory {
        return Err(Refusal(format!("is {}, not a directory", dir.kind)));
    }
    if dir.uid != Uid::ROOT {
        return Err(Refusal(format!(
            "unsafe path transition: directory owned by uid {}",
            dir.uid
        )));
    }
    let writable_by_others = dir.mode.bits() & 0o022 != 0;
    let sticky = dir.mode.bits() & 0o1000 != 0;
    if writable_by_others && !sticky {
        return Err(Refusal(format!(
            "unsafe path transition: directory mode {} lets others write",
            dir.mode
        )));
    }
    Ok(())
}

/// May a walk take `entry` from `dir`, a directory it may pass through? From one that others
/// can write (sticky, like `/tmp`) only a directory: another user can rename a file or symlink
/// that root owns into it from a directory of their own, while moving a directory needs write
/// access to the directory itself.
pub fn check_entry_transit(dir: &Stat, entry: &Stat) -> Result<(), Refusal> {
    if dir.mode.bits() & 0o022 != 0 && entry.kind != FileKind::Directory {
        return Err(Refusal(format!(
            "unsafe path transition: {} in a directory others can write (mode {}), where anyone could have moved it",
            entry.kind, dir.mode
        )));
    }
    Ok(())
}

/// May nonrootd keep its own files (its state) in this directory? Only when a walk may pass
/// through it and nobody else can write to it: a sticky bit is no help here.
pub fn check_private_directory(dir: &Stat) -> Result<(), Refusal> {
    check_directory_transit(dir)?;
    if dir.mode.bits() & 0o022 != 0 {
        return Err(Refusal(format!(
            "directory mode {} lets others write; only what root alone can change is trusted here",
            dir.mode
        )));
    }
    Ok(())
}

/// May a symlink in the directory part of a path be followed? Only one that root owns (its
/// directory has passed [`check_directory_transit`] already), as systemd's CHASE_SAFE does.
pub fn check_symlink_transit(link: &Stat) -> Result<(), Refusal> {
    if link.uid != Uid::ROOT {
        return Err(Refusal(format!(
            "unsafe path transition: symlink owned by uid {}",
            link.uid
        )));
    }
    Ok(())
}

/// Is the final file one that nonrootd may change? It must be of the expected type, owned by
/// root and, for sockets and regular files, have a single link (a hard link could be another
/// file's alias).
pub fn check_target(stat: &Stat, expected: FileKind) -> Result<(), Refusal> {
    if stat.kind != expected {
        return Err(Refusal(format!("is {}, expected {}", stat.kind, expected)));
    }
    if stat.uid != Uid::ROOT {
        return Err(Refusal(format!("owned by uid {}, expected root", stat.uid)));
    }
    if expected != FileKind::Directory && stat.nlink != 1 {
        return Err(Refusal(format!("has {} hard links, expected 1", stat.nlink)));
    }
    Ok(())
}

/// May nonrootd set the mode of a file with the access ACL `acl`? Not when it has named entries
/// or a mask: the mode's group bits are then the mask, so a new mode could widen a named
/// entry's access, and the mode would not say what the owning group may do.
pub fn check_mode_settable(acl: &Acl) -> Result<(), Refusal> {
    if acl.mask.is_some() || !acl.named.is_empty() {
        return Err(Refusal(format!(
            "has an extended ACL ({acl}): its mode's group bits are the ACL mask, so nonrootd does not set the mode; remove the ACL (setfacl -b) to let it"
        )));
    }
    Ok(())
}

/// A change to the owner group or the mode of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrChange {
    pub group: Option<(Gid, Gid)>,
    pub mode: Option<(Mode, Mode)>,
}

impl fmt::Display for AttrChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some((from, to)) = self.group {
            parts.push(format!("group {from} → {to}"));
        }
        if let Some((from, to)) = self.mode {
            parts.push(format!("mode {from} → {to}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Plans the group (when given) and exact mode of a file; `None` when both are right.
pub fn plan_attrs(observed: &Stat, group: Option<Gid>, mode: Mode) -> Option<AttrChange> {
    let change = AttrChange {
        group: group.filter(|g| *g != observed.gid).map(|g| (observed.gid, g)),
        mode: (observed.mode != mode).then_some((observed.mode, mode)),
    };
    (change.group.is_some() || change.mode.is_some()).then_some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: FileKind, mode: u32, uid: u32, nlink: u64) -> Stat {
        Stat {
            kind,
            mode: Mode::from_st_mode(mode),
            uid: Uid(uid),
            gid: Gid(0),
            nlink,
            id: FileId { dev: 1, ino: 2 },
        }
    }

    #[test]
    fn a_mode_is_set_only_without_an_extended_acl() {
        assert!(check_mode_settable(&Acl::from_mode(0o700)).is_ok());
        let mut acl = Acl::from_mode(0o700);
        acl.named
            .insert(crate::acl::Qualifier::User(Uid(4321)), crate::acl::Perm::RWX);
        acl.mask = Some(crate::acl::Perm::from_bits(0));
        let why = check_mode_settable(&acl).unwrap_err();
        assert_eq!(
            why.0,
            "has an extended ACL (user::rwx,user:4321:rwx,group::---,mask::---,other::---): its mode's group bits are the ACL mask, so nonrootd does not set the mode; remove the ACL (setfacl -b) to let it"
        );
        acl.named.clear();
        assert!(check_mode_settable(&acl).is_err(), "a mask alone");
    }

    #[test]
    fn only_directories_are_taken_from_a_directory_others_can_write() {
        let tmp = stat(FileKind::Directory, 0o1777, 0, 2);
        assert!(check_entry_transit(&tmp, &stat(FileKind::Directory, 0o755, 0, 2)).is_ok());
        for kind in [FileKind::Symlink, FileKind::Socket, FileKind::Regular] {
            let why = check_entry_transit(&tmp, &stat(kind, 0o644, 0, 1)).unwrap_err();
            assert!(why.0.contains("in a directory others can write (mode 1777)"), "{why}");
        }
        let run = stat(FileKind::Directory, 0o755, 0, 2);
        assert!(check_entry_transit(&run, &stat(FileKind::Socket, 0o660, 0, 1)).is_ok());
    }

    #[test]
    fn directory_transit_rules() {
        assert!(check_directory_transit(&stat(FileKind::Directory, 0o755, 0, 2)).is_ok());
        assert!(check_directory_transit(&stat(FileKind::Directory, 0o1777, 0, 2)).is_ok());
        let owned = check_directory_transit(&stat(FileKind::Directory, 0o755, 1000, 2)).unwrap_err();
        assert_eq!(owned.0, "unsafe path transition: directory owned by uid 1000");
        let writable = check_directory_transit(&stat(FileKind::Directory, 0o775, 0, 2)).unwrap_err();
        assert_eq!(
            writable.0,
            "unsafe path transition: directory mode 0775 lets others write"
        );
        assert!(check_directory_transit(&stat(FileKind::Regular, 0o755, 0, 1)).is_err());
    }

    #[test]
    fn a_private_directory_is_root_s_alone_even_when_sticky() {
        assert!(check_private_directory(&stat(FileKind::Directory, 0o700, 0, 2)).is_ok());
        assert!(check_private_directory(&stat(FileKind::Directory, 0o755, 0, 2)).is_ok());
        let sticky = check_private_directory(&stat(FileKind::Directory, 0o1777, 0, 2)).unwrap_err();
        assert_eq!(
            sticky.0,
            "directory mode 1777 lets others write; only what root alone can change is trusted here"
        );
        let owned = check_private_directory(&stat(FileKind::Directory, 0o700, 1000, 2)).unwrap_err();
        assert_eq!(owned.0, "unsafe path transition: directory owned by uid 1000");
        assert!(check_private_directory(&stat(FileKind::Regular, 0o600, 0, 1)).is_err());
    }

    #[test]
    fn symlinks_must_be_root_owned() {
        assert!(check_symlink_transit(&stat(FileKind::Symlink, 0o777, 0, 1)).is_ok());
        assert!(check_symlink_transit(&stat(FileKind::Symlink, 0o777, 1000, 1)).is_err());
    }

    #[test]
    fn targets_need_type_owner_and_one_link() {
        assert!(check_target(&stat(FileKind::Socket, 0o660, 0, 1), FileKind::Socket).is_ok());
        assert_eq!(
            check_target(&stat(FileKind::Fifo, 0o660, 0, 1), FileKind::Socket)
                .unwrap_err()
                .0,
            "is a FIFO, expected a socket"
        );
        assert_eq!(
            check_target(&stat(FileKind::Socket, 0o660, 0, 2), FileKind::Socket)
                .unwrap_err()
                .0,
            "has 2 hard links, expected 1"
        );
        assert_eq!(
            check_target(&stat(FileKind::Directory, 0o700, 1000, 2), FileKind::Directory)
                .unwrap_err()
                .0,
            "owned by uid 1000, expected root"
        );
        assert!(check_target(&stat(FileKind::Directory, 0o700, 0, 5), FileKind::Directory).is_ok());
    }

    #[test]
    fn plans_exact_mode_and_group() {
        let dir = stat(FileKind::Directory, 0o700, 0, 2);
        let change = plan_attrs(&dir, None, Mode::parse("0750").unwrap()).unwrap();
        assert_eq!(change.to_string(), "mode 0700 → 0750");
        assert_eq!(plan_attrs(&dir, None, Mode::parse("0700").unwrap()), None);
        let wider = stat(FileKind::Directory, 0o755, 0, 2);
        assert!(
            plan_attrs(&wider, None, Mode::parse("0750").unwrap()).is_some(),
            "exact, not at least"
        );
        let dmi = stat(FileKind::Regular, 0o400, 0, 1);
        let change = plan_attrs(&dmi, Some(Gid(990)), Mode::parse("0440").unwrap()).unwrap();
        assert_eq!(change.to_string(), "group 0 → 990, mode 0400 → 0440");
    }
}
