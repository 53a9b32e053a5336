//! Newtypes for user and group ids, and references to them by number or name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A numeric user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Uid(pub u32);

/// A numeric group id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Gid(pub u32);

impl Uid {
    pub const ROOT: Uid = Uid(0);
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user or group as written in the config: a number, or a name to look up on the host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IdRef {
    Id(u32),
    Name(String),
}

/// By hand rather than `untagged`, whose error names neither the value nor what was expected.
impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IdRef, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IdRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a numeric id from 0 to 4294967294")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IdRef, E> {
                u32::try_from(v)
                    .map(IdRef::Id)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IdRef, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IdRef, E> {
                Ok(IdRef::Name(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Id(id) => id.fmt(f),
            IdRef::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// Looks user and group names up in the host's databases (NSS). Injected so that
/// validation and planning stay pure.
pub trait IdResolver {
    fn user(&self, name: &str) -> Option<Uid>;
    fn group(&self, name: &str) -> Option<Gid>;
}

/// The largest id the kernel accepts; `u32::MAX` is the "no id" marker (`(uid_t)-1`).
const MAX_ID: u32 = u32::MAX - 1;

impl IdRef {
    /// Resolves to a uid, or says why not.
    pub fn resolve_user(&self, ids: &dyn IdResolver) -> Result<Uid, String> {
        match self {
            IdRef::Id(id) if *id <= MAX_ID => Ok(Uid(*id)),
            IdRef::Id(id) => Err(format!("uid {id} is not a valid id")),
            IdRef::Name(name) => match ids.user(name) {
                Some(Uid(id)) if id > MAX_ID => Err(format!("user {name:?} has uid {id}, which is not a valid id")),
                Some(uid) => Ok(uid),
                None => Err(format!("no such user {name:?}")),
            },
        }
    }

    /// Resolves to a gid, or says why not.
    pub fn resolve_group(&self, ids: &dyn IdResolver) -> Result<Gid, String> {
        match self {
            IdRef::Id(id) if *id <= MAX_ID => Ok(Gid(*id)),
            IdRef::Id(id) => Err(format!("gid {id} is not a valid id")),
            IdRef::Name(name) => match ids.group(name) {
                Some(Gid(id)) if id > MAX_ID => Err(format!("group {name:?} has gid {id}, which is not a valid id")),
                Some(gid) => Ok(gid),
                None => Err(format!("no such group {name:?}")),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A resolver with a fixed table, for tests.
    pub struct TableIds(pub &'static [(&'static str, u32)]);

    impl IdResolver for TableIds {
        fn user(&self, name: &str) -> Option<Uid> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| Uid(*id))
        }
        fn group(&self, name: &str) -> Option<Gid> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| Gid(*id))
        }
    }

    #[test]
    fn resolves_numbers_and_names() {
        let ids = TableIds(&[("cadvisor", 4321)]);
        assert_eq!(IdRef::Id(7).resolve_user(&ids), Ok(Uid(7)));
        assert_eq!(IdRef::Name("cadvisor".into()).resolve_user(&ids), Ok(Uid(4321)));
        assert_eq!(
            IdRef::Name("nobody-here".into()).resolve_group(&ids),
            Err("no such group \"nobody-here\"".into())
        );
        assert!(IdRef::Id(u32::MAX).resolve_user(&ids).is_err());
        // A name that the user or group database gives the invalid id (-1) is no id either.
        let broken = TableIds(&[("minus-one", u32::MAX)]);
        assert_eq!(
            IdRef::Name("minus-one".into()).resolve_group(&broken),
            Err("group \"minus-one\" has gid 4294967295, which is not a valid id".into())
        );
        assert!(IdRef::Name("minus-one".into()).resolve_user(&broken).is_err());
    }
}
