//! Name lookups through the host's user and group databases (NSS).

use nix::unistd::{Group, User};
use nonrootd_core::ids::{Gid, IdResolver, Uid};

/// Resolves names with getpwnam_r/getgrnam_r.
pub struct SystemIds;

impl IdResolver for SystemIds {
    fn user(&self, name: &str) -> Option<Uid> {
        User::from_name(name).ok().flatten().map(|u| Uid(u.uid.as_raw()))
    }

    fn group(&self, name: &str) -> Option<Gid> {
        Group::from_name(name).ok().flatten().map(|g| Gid(g.gid.as_raw()))
    }
}
