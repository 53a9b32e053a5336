//! Name lookups through the host's user and group databases (NSS).

use std::cell::RefCell;
use std::collections::HashMap;

use nix::unistd::{Group, User};
use nonrootd_core::ids::{Gid, IdResolver, Uid};

/// Resolves names with getpwnam_r/getgrnam_r.
pub struct SystemIds;

impl IdResolver for SystemIds {
    fn user(&self, name: &str) -> Result<Option<Uid>, String> {
        let found = User::from_name(name).map_err(|e| e.desc().to_string())?;
        Ok(found.map(|u| Uid(u.uid.as_raw())))
    }

    fn group(&self, name: &str) -> Result<Option<Gid>, String> {
        let found = Group::from_name(name).map_err(|e| e.desc().to_string())?;
        Ok(found.map(|g| Gid(g.gid.as_raw())))
    }
}

/// Answers of `lookup` kept for the socket fixer, whose urgent path must not wait for NSS (a
/// directory server may take seconds): a name is looked up the first time it is asked, and
/// again only by [`refresh`](Self::refresh), which the fixer calls at normal priority. A
/// failed lookup is remembered too (asked again only by a refresh), also one that follows an
/// answer.
pub struct RememberedIds {
    lookup: Box<dyn IdResolver + Send>,
    users: Answers<Uid>,
    groups: Answers<Gid>,
}

impl RememberedIds {
    pub fn new(lookup: Box<dyn IdResolver + Send>) -> RememberedIds {
        RememberedIds {
            lookup,
            users: RefCell::default(),
            groups: RefCell::default(),
        }
    }

    /// Looks every remembered name up again; whether an answer changed.
    pub fn refresh(&self) -> bool {
        let users = look_up_again(&self.users, |name| self.lookup.user(name));
        let groups = look_up_again(&self.groups, |name| self.lookup.group(name));
        users | groups
    }

    /// Forgets every answer (names of an old config).
    pub fn forget(&self) {
        self.users.borrow_mut().clear();
        self.groups.borrow_mut().clear();
    }
}

impl IdResolver for RememberedIds {
    fn user(&self, name: &str) -> Result<Option<Uid>, String> {
        remembered(&self.users, name, |name| self.lookup.user(name))
    }

    fn group(&self, name: &str) -> Result<Option<Gid>, String> {
        remembered(&self.groups, name, |name| self.lookup.group(name))
    }
}

type Lookup<T> = Result<Option<T>, String>;
type Answers<T> = RefCell<HashMap<String, Lookup<T>>>;

/// The remembered answer for `name`, looked up the first time.
fn remembered<T: Copy>(answers: &Answers<T>, name: &str, lookup: impl Fn(&str) -> Lookup<T>) -> Lookup<T> {
    if let Some(answer) = answers.borrow().get(name) {
        return answer.clone();
    }
    let answer = lookup(name);
    answers.borrow_mut().insert(name.to_string(), answer.clone());
    answer
}

/// Looks every name of `answers` up again; whether an answer changed. A lookup that fails
/// is remembered as failed: the caller then falls back on the last answer it saved, which
/// another process may have updated since (a name deleted, a uid changed).
fn look_up_again<T: PartialEq>(answers: &Answers<T>, lookup: impl Fn(&str) -> Lookup<T>) -> bool {
    let mut changed = false;
    for (name, answer) in answers.borrow_mut().iter_mut() {
        let now = lookup(name);
        // An answer that became a failure changes what is granted (the caller's record's
        // answer applies now), and so does an answer after a failure.
        changed |= match (&now, &*answer) {
            (Err(_), Err(_)) => false,
            (Ok(now), Ok(before)) => now != before,
            _ => true,
        };
        *answer = now;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    /// Every group is gid 50. Counts lookups.
    struct Moving {
        uid: Arc<AtomicU32>,
        lookups: Arc<AtomicUsize>,
    }

    /// "app" is the uid in `uid` (none when 0, a failed lookup when u32::MAX).
    impl IdResolver for Moving {
        fn user(&self, name: &str) -> Result<Option<Uid>, String> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            match self.uid.load(Ordering::SeqCst) {
                u32::MAX => Err("Input/output error".into()),
                uid => Ok((name == "app" && uid != 0).then_some(Uid(uid))),
            }
        }
        fn group(&self, _: &str) -> Result<Option<Gid>, String> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(Some(Gid(50)))
        }
    }

    #[test]
    fn names_are_looked_up_once_until_refreshed() {
        let (uid, lookups) = (Arc::new(AtomicU32::new(1001)), Arc::new(AtomicUsize::new(0)));
        let ids = RememberedIds::new(Box::new(Moving {
            uid: uid.clone(),
            lookups: lookups.clone(),
        }));
        let count = || lookups.load(Ordering::SeqCst);
        assert_eq!(
            (ids.user("app"), ids.user("ghost"), ids.group("g")),
            (Ok(Some(Uid(1001))), Ok(None), Ok(Some(Gid(50))))
        );
        assert_eq!(
            (ids.user("app"), ids.user("ghost"), ids.group("g")),
            (Ok(Some(Uid(1001))), Ok(None), Ok(Some(Gid(50))))
        );
        assert_eq!(count(), 3, "answers, absent ones too, are remembered");
        assert!(!ids.refresh(), "nothing changed");
        assert_eq!(count(), 6);
        uid.store(1002, Ordering::SeqCst);
        assert_eq!(ids.user("app"), Ok(Some(Uid(1001))), "the old answer until refreshed");
        assert!(ids.refresh());
        assert_eq!(ids.user("app"), Ok(Some(Uid(1002))));
        // A failed refresh is remembered as failed (the caller falls back on its record, which
        // may know better than this process): a change, and failing again is none.
        uid.store(u32::MAX, Ordering::SeqCst);
        assert!(ids.refresh());
        assert!(!ids.refresh());
        assert!(ids.user("app").is_err());
        uid.store(1002, Ordering::SeqCst);
        assert!(ids.refresh(), "an answer after a failure counts as a change");
        assert_eq!(ids.user("app"), Ok(Some(Uid(1002))));
        uid.store(0, Ordering::SeqCst);
        assert!(ids.refresh(), "a user gone is a change too");
        assert_eq!(ids.user("app"), Ok(None));
        ids.forget();
        assert!(!ids.refresh());
        assert_eq!(count(), 21, "a refresh after forgetting looks nothing up");
        // A failed first lookup is remembered: the urgent path does not ask again; a refresh
        // that gets an answer is a change.
        uid.store(u32::MAX, Ordering::SeqCst);
        assert!(ids.user("app").is_err());
        uid.store(1003, Ordering::SeqCst);
        assert!(ids.user("app").is_err());
        assert_eq!(count(), 22);
        assert!(ids.refresh());
        assert_eq!(ids.user("app"), Ok(Some(Uid(1003))));
    }
}
