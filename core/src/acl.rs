//! A POSIX access ACL as plain data, and the planning of grants on it.
//!
//! nonrootd adds named user/group entries for configured ids, keeps every entry it did not add,
//! and removes what it added earlier for ids that are no longer configured. The mask must let the
//! grants through, but raising it must not widen anything nonrootd did not add: the owning group
//! and foreign named entries are clamped to what the old mask allowed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{Gid, Uid};

/// Read/write/execute bits of one ACL entry (`r` = 4, `w` = 2, `x` = 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perm(u8);

impl Perm {
    pub const NONE: Perm = Perm(0);
    pub const R: Perm = Perm(4);
    pub const RW: Perm = Perm(6);
    pub const RWX: Perm = Perm(7);

    pub fn from_bits(bits: u32) -> Perm {
        Perm((bits & 7) as u8)
    }
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }
    pub fn union(self, other: Perm) -> Perm {
        Perm(self.0 | other.0)
    }
    pub fn intersect(self, other: Perm) -> Perm {
        Perm(self.0 & other.0)
    }
    pub fn without(self, other: Perm) -> Perm {
        Perm(self.0 & !other.0)
    }
    pub fn contains(self, other: Perm) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |bit: u8, c: char| if self.0 & bit != 0 { c } else { '-' };
        write!(f, "{}{}{}", flag(4, 'r'), flag(2, 'w'), flag(1, 'x'))
    }
}

impl Serialize for Perm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Perm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Perm, D::Error> {
        let text = String::deserialize(d)?;
        let mut bits = 0;
        for (i, c) in text.chars().enumerate() {
            bits |= match (i, c) {
                (0, 'r') => 4,
                (1, 'w') => 2,
                (2, 'x') => 1,
                (_, '-') => 0,
                _ => return Err(serde::de::Error::custom(format!("bad permission {text:?}"))),
            };
        }
        Ok(Perm(bits))
    }
}

/// Who a named ACL entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qualifier {
    User(Uid),
    Group(Gid),
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::User(uid) => write!(f, "user:{uid}"),
            Qualifier::Group(gid) => write!(f, "group:{gid}"),
        }
    }
}

impl Serialize for Qualifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Qualifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Qualifier, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("bad ACL qualifier {text:?}"));
        let (kind, id) = text.split_once(':').ok_or_else(bad)?;
        let id: u32 = id.parse().map_err(|_| bad())?;
        match kind {
            "user" => Ok(Qualifier::User(Uid(id))),
            "group" => Ok(Qualifier::Group(Gid(id))),
            _ => Err(bad()),
        }
    }
}

/// A POSIX access ACL. A file without extended entries is an ACL with no mask and no named entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub user_obj: Perm,
    pub group_obj: Perm,
    pub other: Perm,
    pub mask: Option<Perm>,
    pub named: BTreeMap<Qualifier, Perm>,
}

impl Acl {
    /// The ACL equivalent to plain permission bits.
    pub fn from_mode(mode: u32) -> Acl {
        Acl {
            user_obj: Perm::from_bits(mode >> 6),
            group_obj: Perm::from_bits(mode >> 3),
            other: Perm::from_bits(mode),
            mask: None,
            named: BTreeMap::new(),
        }
    }

    /// Mode 0000 as `stat` shows it (owner, mask or else owning group, other), with entries a
    /// default ACL of its directory gave it or none, but none holding what nonrootd granted
    /// (`ours`: then it is a granted socket someone chmodded 0000, to repair at once): a socket
    /// whose creator has yet to give it its mode. Go's listeners (dockerd's, containerd's)
    /// create sockets with umask 0777, then chown and chmod them. A grant written before that
    /// chmod would cut the owning group and the inherited entries down to the mask `---` for
    /// good: a chmod of a file with an ACL sets only the mask.
    pub fn awaits_its_mode(&self, ours: &Grants) -> bool {
        let mode_0000 =
            self.user_obj.is_empty() && self.other.is_empty() && self.mask.unwrap_or(self.group_obj).is_empty();
        let granted = ours
            .iter()
            .any(|(who, bits)| !bits.is_empty() && self.named.get(who).is_some_and(|p| p.contains(*bits)));
        mode_0000 && !granted
    }

    /// What a named entry really allows: its bits limited by the mask.
    pub fn effective(&self, who: Qualifier) -> Perm {
        let perm = self.named.get(&who).copied().unwrap_or_default();
        self.mask.map_or(perm, |mask| perm.intersect(mask))
    }

    /// What members of the owning group really get.
    pub fn effective_group_obj(&self) -> Perm {
        self.mask.map_or(self.group_obj, |m| self.group_obj.intersect(m))
    }

    /// The value of the `system.posix_acl_access` extended attribute (the kernel's format,
    /// `linux/posix_acl_xattr.h`): version 2, then one little-endian (tag, perm, id) entry of
    /// 8 bytes each, in the order the kernel requires (tag, then id).
    pub fn to_xattr(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * (4 + self.named.len()));
        out.extend_from_slice(&XATTR_VERSION.to_le_bytes());
        let mut entry = |tag: u16, perm: Perm, id: u32| {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&(perm.bits() as u16).to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        };
        entry(TAG_USER_OBJ, self.user_obj, UNDEFINED_ID);
        for (who, perm) in &self.named {
            if let Qualifier::User(uid) = who {
                entry(TAG_USER, *perm, uid.0);
            }
        }
        entry(TAG_GROUP_OBJ, self.group_obj, UNDEFINED_ID);
        for (who, perm) in &self.named {
            if let Qualifier::Group(gid) = who {
                entry(TAG_GROUP, *perm, gid.0);
            }
        }
        if let Some(mask) = self.mask {
            entry(TAG_MASK, mask, UNDEFINED_ID);
        }
        entry(TAG_OTHER, self.other, UNDEFINED_ID);
        out
    }

    /// Reads a `system.posix_acl_access` value; says what is wrong with a malformed one.
    pub fn from_xattr(bytes: &[u8]) -> Result<Acl, String> {
        let (version, entries) = bytes.split_at_checked(4).ok_or("shorter than its header")?;
        let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        if version != XATTR_VERSION {
            return Err(format!("version {version}, not {XATTR_VERSION}"));
        }
        if entries.len() % 8 != 0 {
            return Err(format!("{} bytes of entries, not a multiple of 8", entries.len()));
        }
        let (mut user_obj, mut group_obj, mut other) = (None, None, None);
        let mut acl = Acl::from_mode(0);
        for raw in entries.chunks_exact(8) {
            let tag = u16::from_le_bytes([raw[0], raw[1]]);
            let perm = Perm::from_bits(u32::from(u16::from_le_bytes([raw[2], raw[3]])));
            let id = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            match tag {
                TAG_USER_OBJ => user_obj = Some(perm),
                TAG_GROUP_OBJ => group_obj = Some(perm),
                TAG_OTHER => other = Some(perm),
                TAG_MASK => acl.mask = Some(perm),
                TAG_USER => {
                    acl.named.insert(Qualifier::User(Uid(id)), perm);
                }
                TAG_GROUP => {
                    acl.named.insert(Qualifier::Group(Gid(id)), perm);
                }
                _ => return Err(format!("entry of unknown type {tag:#x}")),
            }
        }
        match (user_obj, group_obj, other) {
            (Some(u), Some(g), Some(o)) => {
                (acl.user_obj, acl.group_obj, acl.other) = (u, g, o);
                Ok(acl)
            }
            _ => Err("an owner, owning group or other entry is missing".into()),
        }
    }
}

const XATTR_VERSION: u32 = 2;
const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user::{},", self.user_obj)?;
        for (who, perm) in &self.named {
            if let Qualifier::User(_) = who {
                write!(f, "{who}:{perm},")?;
            }
        }
        write!(f, "group::{},", self.group_obj)?;
        for (who, perm) in &self.named {
            if let Qualifier::Group(_) = who {
                write!(f, "{who}:{perm},")?;
            }
        }
        if let Some(mask) = self.mask {
            write!(f, "mask::{mask},")?;
        }
        write!(f, "other::{}", self.other)
    }
}

/// Entries and the bits in each that nonrootd added (or wants to add).
pub type Grants = BTreeMap<Qualifier, Perm>;

/// The result of planning grants on one ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclPlan {
    /// The ACL to write, or `None` when the observed one is already right.
    pub write: Option<Acl>,
    /// What nonrootd will have granted once `write` is done; this replaces the old record.
    pub granted: Grants,
}

impl AclPlan {
    /// Whether the write only adds: no entry of `observed` loses a bit. Such a write cannot undo
    /// anybody's grant (the socket fixer makes it early, before it logs or reports anything).
    pub fn only_adds_to(&self, observed: &Acl) -> bool {
        let Some(new) = &self.write else { return false };
        let kept = |old: Perm, new: Perm| new.contains(old);
        kept(observed.user_obj, new.user_obj)
            && kept(observed.group_obj, new.group_obj)
            && kept(observed.other, new.other)
            && observed.mask.is_none_or(|old| new.mask.is_some_and(|m| kept(old, m)))
            && observed
                .named
                .iter()
                .all(|(who, old)| new.named.get(who).is_some_and(|p| kept(*old, *p)))
    }
}

/// Plans the ACL that grants `desired`, keeps foreign entries, and revokes the bits of
/// `previous` (what nonrootd granted earlier) that are no longer desired: all of an id that is
/// no longer configured, the dropped bits of one whose access was narrowed.
///
/// The new mask is what the group class is let through now plus the grants, so it is raised
/// only by what nonrootd grants. Bits the old mask hid and the new one shows are taken out of
/// the owning group and the other entries (they would widen someone's access); bits it keeps
/// hiding stay stored, for a later `chmod` to show again as it would have. Revoking the last
/// named entries leaves no mask: the file's mode is its ACL again.
pub fn plan_grants(observed: &Acl, desired: &Grants, previous: &Grants) -> AclPlan {
    let mut acl = observed.clone();

    for (who, bits) in previous {
        let stale = bits.without(desired.get(who).copied().unwrap_or_default());
        if stale.is_empty() {
            continue;
        }
        if let Some(perm) = acl.named.get(who).copied() {
            let left = perm.without(stale);
            if left.is_empty() {
                acl.named.remove(who);
            } else {
                acl.named.insert(*who, left);
            }
        }
    }

    let old_mask = observed.mask.unwrap_or(Perm::RWX);
    let let_through = acl
        .named
        .values()
        .fold(acl.group_obj, |m, p| m.union(*p))
        .intersect(old_mask);
    let mask = desired.values().fold(let_through, |m, want| m.union(*want));
    let shown = mask.without(old_mask);
    acl.group_obj = acl.group_obj.without(shown);
    for perm in acl.named.values_mut() {
        *perm = perm.without(shown);
    }

    let mut granted = Grants::new();
    for (who, want) in desired {
        let current = acl.named.get(who).copied().unwrap_or_default();
        let ours_before = previous.get(who).copied().unwrap_or_default().intersect(current);
        granted.insert(*who, ours_before.union(want.without(current)));
        acl.named.insert(*who, current.union(*want));
    }

    if acl.named.is_empty() && !observed.named.is_empty() {
        // The last named entries were nonrootd's: the ACL goes back to the file's mode, with
        // what the owning group gets unchanged (a `chmod` then sets the group bits again).
        acl.group_obj = acl.effective_group_obj();
        acl.mask = None;
    } else if observed.mask.is_some() || !acl.named.is_empty() {
        acl.mask = Some(mask);
    }

    let write = (acl != *observed).then_some(acl);
    AclPlan { write, granted }
}

/// Says what changes between two ACLs, entry by entry: `+user:4321:rw-`, `-user:1234`,
/// `mask::--- → rw-`.
pub fn describe_change(old: &Acl, new: &Acl) -> String {
    let mut parts = Vec::new();
    let mut fixed = |name: &str, from: Option<Perm>, to: Option<Perm>| {
        if from != to {
            let show = |p: Option<Perm>| p.map_or_else(|| "none".to_string(), |p| p.to_string());
            parts.push(format!("{name}:{} → {}", show(from), show(to)));
        }
    };
    fixed("user:", Some(old.user_obj), Some(new.user_obj));
    fixed("group:", Some(old.group_obj), Some(new.group_obj));
    fixed("mask:", old.mask, new.mask);
    fixed("other:", Some(old.other), Some(new.other));
    for (who, perm) in &new.named {
        match old.named.get(who) {
            None => parts.push(format!("+{who}:{perm}")),
            Some(before) if before != perm => parts.push(format!("{who}:{before} → {perm}")),
            Some(_) => {}
        }
    }
    for who in old.named.keys().filter(|w| !new.named.contains_key(w)) {
        parts.push(format!("-{who}"));
    }
    parts.join(", ")
}

/// The desired entries whose effective access falls short in `acl`, for verification after a write.
pub fn shortfalls(acl: &Acl, desired: &Grants) -> Vec<Qualifier> {
    desired
        .iter()
        .filter(|(who, want)| !acl.effective(**who).contains(**want))
        .map(|(who, _)| *who)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u32) -> Qualifier {
        Qualifier::User(Uid(id))
    }
    fn group(id: u32) -> Qualifier {
        Qualifier::Group(Gid(id))
    }
    fn grants(entries: &[(Qualifier, Perm)]) -> Grants {
        entries.iter().copied().collect()
    }

    #[test]
    fn xattr_values_round_trip_in_the_kernels_order() {
        let mut acl = Acl::from_mode(0o640);
        acl.mask = Some(Perm::RW);
        acl.named.insert(group(7), Perm::R);
        acl.named.insert(user(4321), Perm::RW);
        acl.named.insert(user(1000), Perm::R);
        let bytes = acl.to_xattr();
        // What `setfacl -m u:1000:r,u:4321:rw,g:7:r,m::rw` stores (getfattr -e hex).
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "02000000\
             01000600ffffffff\
             02000400e8030000\
             02000600e1100000\
             04000400ffffffff\
             0800040007000000\
             10000600ffffffff\
             20000000ffffffff"
        );
        assert_eq!(Acl::from_xattr(&bytes), Ok(acl));
    }

    #[test]
    fn malformed_xattr_values_are_refused() {
        let good = Acl::from_mode(0o600).to_xattr();
        assert!(Acl::from_xattr(&good[..3]).is_err());
        assert!(Acl::from_xattr(&good[..good.len() - 1]).is_err());
        assert!(
            Acl::from_xattr(&good[..good.len() - 8])
                .unwrap_err()
                .contains("missing")
        );
        let mut version = good.clone();
        version[0] = 1;
        assert!(Acl::from_xattr(&version).unwrap_err().contains("version 1"));
        let mut tag = good;
        tag[4] = 0x40;
        assert!(Acl::from_xattr(&tag).unwrap_err().contains("unknown type 0x40"));
    }

    #[test]
    fn grants_on_a_plain_socket_add_entry_and_mask() {
        let observed = Acl::from_mode(0o660);
        let plan = plan_grants(&observed, &grants(&[(user(4321), Perm::RW)]), &Grants::new());
        assert!(plan.only_adds_to(&observed));
        let acl = plan.write.expect("a change");
        assert_eq!(describe_change(&observed, &acl), "mask::none → rw-, +user:4321:rw-");
        assert_eq!(
            acl.to_string(),
            "user::rw-,user:4321:rw-,group::rw-,mask::rw-,other::---"
        );
        assert_eq!(plan.granted, grants(&[(user(4321), Perm::RW)]));
        assert!(shortfalls(&acl, &grants(&[(user(4321), Perm::RW)])).is_empty());
    }

    #[test]
    fn second_plan_is_a_no_op() {
        let desired = grants(&[(user(4321), Perm::RW), (group(0), Perm::RW)]);
        let first = plan_grants(&Acl::from_mode(0o660), &desired, &Grants::new());
        let second = plan_grants(first.write.as_ref().unwrap(), &desired, &first.granted);
        assert_eq!(second.write, None);
        assert!(!second.only_adds_to(first.write.as_ref().unwrap()), "nothing to write");
        assert_eq!(second.granted, first.granted);
    }

    /// A socket with nonrootd's `user:4321:rw-` and an admin's `user:1000:rw-` after
    /// `chmod 0600`: the mask is `---`, but the entries and `group::rw-` are still stored.
    fn hidden_by_chmod_0600() -> Acl {
        let mut acl = Acl::from_mode(0o600);
        acl.group_obj = Perm::RW;
        acl.mask = Some(Perm::NONE);
        acl.named.insert(user(4321), Perm::RW);
        acl.named.insert(user(1000), Perm::RW);
        acl
    }

    #[test]
    fn raising_the_mask_clamps_the_owning_group_and_foreign_entries() {
        let observed = hidden_by_chmod_0600();
        let desired = grants(&[(user(4321), Perm::RW)]);
        let plan = plan_grants(&observed, &desired, &desired);
        assert!(!plan.only_adds_to(&observed), "the clamps take bits away");
        let acl = plan.write.unwrap();
        assert_eq!(
            describe_change(&observed, &acl),
            "group::rw- → ---, mask::--- → rw-, user:1000:rw- → ---"
        );
        assert_eq!(acl.effective(user(4321)), Perm::RW);
        assert_eq!(acl.effective_group_obj(), Perm::NONE);
        assert_eq!(acl.effective(user(1000)), Perm::NONE);
    }

    #[test]
    fn a_revocation_keeps_the_bits_the_mask_hides() {
        let mut observed = hidden_by_chmod_0600();
        let previous = grants(&[(user(4321), Perm::RW)]);
        let acl = plan_grants(&observed, &Grants::new(), &previous).write.unwrap();
        assert_eq!(describe_change(&observed, &acl), "-user:4321");
        // Raising the mask by a grant shows only the granted bits, and takes those out.
        observed.group_obj = Perm::RWX;
        let acl = plan_grants(&observed, &grants(&[(user(7), Perm::R)]), &Grants::new())
            .write
            .unwrap();
        assert_eq!(
            describe_change(&observed, &acl),
            "group::rwx → -wx, mask::--- → r--, +user:7:r--, user:1000:rw- → -w-, user:4321:rw- → -w-"
        );
        assert_eq!(acl.effective_group_obj(), Perm::NONE);
    }

    #[test]
    fn revoking_the_last_named_entries_leaves_the_mode_alone_as_the_acl() {
        let previous = grants(&[(user(4321), Perm::RW)]);
        let mut granted = Acl::from_mode(0o660);
        granted.named.insert(user(4321), Perm::RW);
        granted.mask = Some(Perm::RW);
        let plan = plan_grants(&granted, &Grants::new(), &previous);
        assert_eq!(plan.write, Some(Acl::from_mode(0o660)));
        // After `chmod 0600` the owning group keeps what it gets: nothing.
        granted.mask = Some(Perm::NONE);
        let plan = plan_grants(&granted, &Grants::new(), &previous);
        assert_eq!(plan.write, Some(Acl::from_mode(0o600)));
        // An ACL of the admin's with only a mask is not nonrootd's to change.
        let mut mask_only = Acl::from_mode(0o660);
        mask_only.mask = Some(Perm::R);
        assert_eq!(plan_grants(&mask_only, &Grants::new(), &previous).write, None);
    }

    #[test]
    fn a_socket_at_mode_0000_awaits_its_mode_with_inherited_entries_too() {
        let ours = grants(&[(user(4321), Perm::RW)]);
        assert!(Acl::from_mode(0).awaits_its_mode(&ours));
        // Bound with umask 0777 below a default ACL: the entries are kept, the mask is ---.
        let mut inherited = Acl::from_mode(0);
        inherited.group_obj = Perm(5);
        inherited.mask = Some(Perm::NONE);
        inherited.named.insert(user(1000), Perm::RW);
        assert!(inherited.awaits_its_mode(&ours));
        // A socket nonrootd granted, then chmodded 0000: repaired at once.
        let mut granted = inherited.clone();
        granted.named.insert(user(4321), Perm::RW);
        assert!(!granted.awaits_its_mode(&ours));
        inherited.mask = Some(Perm::RW);
        assert!(!inherited.awaits_its_mode(&ours), "chmod 0060 gave it a mode");
        assert!(!Acl::from_mode(0o600).awaits_its_mode(&ours));
        assert!(!Acl::from_mode(0o001).awaits_its_mode(&ours));
    }

    #[test]
    fn revokes_only_what_it_granted() {
        let mut observed = Acl::from_mode(0o660);
        observed.mask = Some(Perm::RW);
        observed.named.insert(user(1234), Perm::RW);
        observed.named.insert(user(1000), Perm::R);
        // nonrootd added w to an entry that already had r, and created user:1234.
        observed.named.insert(user(55), Perm::RW);
        let previous = grants(&[(user(1234), Perm::RW), (user(55), Perm(2))]);
        let plan = plan_grants(&observed, &Grants::new(), &previous);
        assert!(!plan.only_adds_to(&observed));
        let acl = plan.write.unwrap();
        assert_eq!(acl.named.get(&user(1234)), None);
        assert_eq!(acl.named.get(&user(55)), Some(&Perm::R));
        assert_eq!(acl.named.get(&user(1000)), Some(&Perm::R));
        assert!(plan.granted.is_empty());
    }

    #[test]
    fn narrowed_access_takes_back_only_the_dropped_bits_nonrootd_added() {
        let mut observed = Acl::from_mode(0o640);
        observed.mask = Some(Perm::RW);
        // nonrootd created user:4321:rw-; user:55 had r-- before nonrootd added w.
        observed.named.insert(user(4321), Perm::RW);
        observed.named.insert(user(55), Perm::RW);
        let previous = grants(&[(user(4321), Perm::RW), (user(55), Perm(2))]);
        let desired = grants(&[(user(4321), Perm::R), (user(55), Perm::R)]);
        let plan = plan_grants(&observed, &desired, &previous);
        let acl = plan.write.unwrap();
        assert_eq!(
            describe_change(&observed, &acl),
            "mask::rw- → r--, user:55:rw- → r--, user:4321:rw- → r--"
        );
        assert_eq!(plan.granted, grants(&[(user(4321), Perm::R), (user(55), Perm::NONE)]));
        let again = plan_grants(&acl, &desired, &plan.granted);
        assert_eq!(again.write, None);
    }

    #[test]
    fn an_existing_foreign_entry_is_widened_and_only_the_added_bits_recorded() {
        let mut observed = Acl::from_mode(0o660);
        observed.mask = Some(Perm::RW);
        observed.named.insert(user(4321), Perm::R);
        let plan = plan_grants(&observed, &grants(&[(user(4321), Perm::RW)]), &Grants::new());
        assert_eq!(plan.write.unwrap().named[&user(4321)], Perm::RW);
        assert_eq!(plan.granted[&user(4321)], Perm(2));
    }

    #[test]
    fn bits_beyond_the_old_mask_never_become_effective() {
        let mut observed = Acl::from_mode(0o660);
        observed.mask = Some(Perm::R);
        observed.named.insert(user(4321), Perm::RWX);
        observed.named.insert(group(50), Perm::RWX);
        let acl = plan_grants(&observed, &grants(&[(user(4321), Perm::RW)]), &Grants::new())
            .write
            .unwrap();
        assert_eq!(acl.effective(user(4321)), Perm::RW);
        assert_eq!(acl.effective(group(50)), Perm::R);
        assert_eq!(acl.effective_group_obj(), Perm::R);
    }
}
