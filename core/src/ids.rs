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
/// validation and planning stay pure. `Ok(None)`: no such name; `Err`: the database could not
/// answer (a directory server down, an entry too large), which says nothing about the name.
pub trait IdResolver {
    fn user(&self, name: &str) -> Result<Option<Uid>, String>;
    fn group(&self, name: &str) -> Result<Option<Gid>, String>;
}

/// Why an id reference gives no id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// No such name, or an id the kernel does not take.
    Invalid(String),
    /// The database could not be asked: nothing is known about the name, so what was done
    /// for it before stays as it is.
    LookupFailed(String),
}

impl Unresolved {
    /// What a duty reports for it, the text after `context`: a name that does not exist is
    /// refused; a lookup that failed is a failure, worth trying again.
    pub fn outcome(self, context: &str) -> crate::report::Outcome {
        use crate::report::Outcome;
        match self {
            Unresolved::Invalid(why) => Outcome::Refused {
                reason: format!("{context}: {why}"),
            },
            Unresolved::LookupFailed(why) => Outcome::Failed {
                error: format!("{context}: {why}"),
            },
        }
    }
}

impl From<Unresolved> for String {
    fn from(why: Unresolved) -> String {
        why.to_string()
    }
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::Invalid(why) | Unresolved::LookupFailed(why) => f.write_str(why),
        }
    }
}

/// The largest id the kernel accepts; `u32::MAX` is the "no id" marker (`(uid_t)-1`).
const MAX_ID: u32 = u32::MAX - 1;

impl IdRef {
    /// Resolves to a uid, or says why not.
    pub fn resolve_user(&self, ids: &dyn IdResolver) -> Result<Uid, Unresolved> {
        let invalid = |why| Err(Unresolved::Invalid(why));
        match self {
            IdRef::Id(id) if *id <= MAX_ID => Ok(Uid(*id)),
            IdRef::Id(id) => invalid(format!("uid {id} is not a valid id")),
            IdRef::Name(name) => match ids.user(name) {
                Ok(Some(Uid(id))) if id > MAX_ID => {
                    invalid(format!("user {name:?} has uid {id}, which is not a valid id"))
                }
                Ok(Some(uid)) => Ok(uid),
                Ok(None) => invalid(format!("no such user {name:?}")),
                Err(e) => Err(Unresolved::LookupFailed(format!(
                    "looking up user {name:?} failed: {e}"
                ))),
            },
        }
    }

    /// Resolves to a gid, or says why not.
    pub fn resolve_group(&self, ids: &dyn IdResolver) -> Result<Gid, Unresolved> {
        let invalid = |why| Err(Unresolved::Invalid(why));
        match self {
            IdRef::Id(id) if *id <= MAX_ID => Ok(Gid(*id)),
            IdRef::Id(id) => invalid(format!("gid {id} is not a valid id")),
            IdRef::Name(name) => match ids.group(name) {
                Ok(Some(Gid(id))) if id > MAX_ID => {
                    invalid(format!("group {name:?} has gid {id}, which is not a valid id"))
                }
                Ok(Some(gid)) => Ok(gid),
                Ok(None) => invalid(format!("no such group {name:?}")),
                Err(e) => Err(Unresolved::LookupFailed(format!(
                    "looking up group {name:?} failed: {e}"
                ))),
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
        fn user(&self, name: &str) -> Result<Option<Uid>, String> {
            Ok(self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| Uid(*id)))
        }
        fn group(&self, name: &str) -> Result<Option<Gid>, String> {
            Ok(self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| Gid(*id)))
        }
    }

    /// A database that cannot be asked.
    struct Down;

    impl IdResolver for Down {
        fn user(&self, _: &str) -> Result<Option<Uid>, String> {
            Err("Input/output error".into())
        }
        fn group(&self, _: &str) -> Result<Option<Gid>, String> {
            Err("Input/output error".into())
        }
    }

    #[test]
    fn resolves_numbers_and_names() {
        let ids = TableIds(&[("cadvisor", 4321)]);
        assert_eq!(IdRef::Id(7).resolve_user(&ids), Ok(Uid(7)));
        assert_eq!(IdRef::Name("cadvisor".into()).resolve_user(&ids), Ok(Uid(4321)));
        assert_eq!(
            IdRef::Name("nobody-here".into()).resolve_group(&ids),
            Err(Unresolved::Invalid("no such group \"nobody-here\"".into()))
        );
        assert_eq!(
            IdRef::Name("cadvisor".into()).resolve_user(&Down),
            Err(Unresolved::LookupFailed(
                "looking up user \"cadvisor\" failed: Input/output error".into()
            ))
        );
        assert!(IdRef::Id(u32::MAX).resolve_user(&ids).is_err());
        // A name that the user or group database gives the invalid id (-1) is no id either.
        let broken = TableIds(&[("minus-one", u32::MAX)]);
        assert_eq!(
            IdRef::Name("minus-one".into()).resolve_group(&broken),
            Err(Unresolved::Invalid(
                "group \"minus-one\" has gid 4294967295, which is not a valid id".into()
            ))
        );
        assert!(IdRef::Name("minus-one".into()).resolve_user(&broken).is_err());
    }
}
