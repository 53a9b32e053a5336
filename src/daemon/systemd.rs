//! Follows systemd over the system bus: a configured unit becoming active (ActiveState
//! property change, or a finished job) is a cue to re-check the host. Signals are accepted only
//! from the current owner of `org.freedesktop.systemd1`; a new owner (daemon-reexec) is
//! subscribed to again.
//!
//! The streams are polled all the time, also while a (re)subscription is in flight: a stream
//! left unpolled fills its queue and stalls the whole connection, replies included.

use std::collections::HashMap;
use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use zbus::fdo::DBusProxy;
use zbus::message::Type;
use zbus::names::{BusName, OwnedUniqueName};
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, Message, MessageStream};
use zbus::{OwnedObjectPath, OwnedVariant};
use zbus_systemd::systemd1::ManagerProxy;

const SYSTEMD: &str = "org.freedesktop.systemd1";

/// A failed subscription to a systemd that is there (a timeout while it is busy at boot) is
/// tried again after this, doubled each time up to [`RESUBSCRIBE_MAX`]. One with no systemd on
/// the bus is not: its `NameOwnerChanged` says when it comes.
const RESUBSCRIBE_FIRST: Duration = Duration::from_secs(1);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(60);

/// What following systemd yields.
pub enum Cue {
    /// (Re)subscribed to the current systemd: re-check, something may have started meanwhile.
    Following(String),
    /// systemd is not on this bus (or refused the subscription).
    NotFollowing(String),
    /// A followed unit became active or finished a job.
    Recheck(String),
}
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
/// systemd keeps a subscription per bus client; a second `Subscribe()` says so.
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";

/// The object path systemd gives a unit: bytes other than ASCII letters and digits become
/// `_xx` (hex), as in `docker_2eservice`.
pub fn unit_object_path(unit: &str) -> String {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphanumeric() && !(i == 0 && b.is_ascii_digit()) {
            path.push(b as char);
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

/// A subscription to systemd on one bus connection.
pub struct Watcher {
    conn: Connection,
    owner: Option<OwnedUniqueName>,
    units: HashMap<OwnedObjectPath, String>,
    unit_names: HashSet<String>,
    /// The last ActiveState seen per followed unit.
    states: HashMap<String, String>,
    properties: MessageStream,
    jobs: MessageStream,
    owners: MessageStream,
    /// A `GetNameOwner` + `Subscribe()` in flight, answering with the owner.
    subscribing: Option<JoinHandle<zbus::Result<OwnedUniqueName>>>,
    /// The next try after a failed one.
    resubscribe: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The wait before the last try, while they fail.
    resubscribe_wait: Option<Duration>,
}

impl Watcher {
    /// Adds the match rules, then starts subscribing (so nothing between the two is lost).
    pub async fn new(conn: &Connection, units: &[String]) -> zbus::Result<Watcher> {
        let signal = || MatchRule::builder().msg_type(Type::Signal);
        // Only the Unit interface's changes (ActiveState): the Service and Socket interfaces'
        // much larger ones would cost the bus and this loop work at every Docker restart.
        // Sent by systemd alone: the bus drops anybody else's broadcasts before they queue here.
        let properties = signal()
            .sender(SYSTEMD)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .arg(0, UNIT_INTERFACE)
            .build()?;
        let jobs = signal()
            .sender(SYSTEMD)
            .interface("org.freedesktop.systemd1.Manager")
            .member("JobRemoved")
            .build()?;
        let owners = signal()
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .arg(0, SYSTEMD)
            .build()?;
        let mut watcher = Watcher {
            conn: conn.clone(),
            owner: None,
            units: HashMap::new(),
            unit_names: HashSet::new(),
            states: HashMap::new(),
            properties: MessageStream::for_match_rule(properties, conn, None).await?,
            jobs: MessageStream::for_match_rule(jobs, conn, None).await?,
            owners: MessageStream::for_match_rule(owners, conn, None).await?,
            subscribing: None,
            resubscribe: None,
            resubscribe_wait: None,
        };
        watcher.follow(units);
        watcher.subscribe();
        Ok(watcher)
    }

    /// Follows these units from now on.
    pub fn follow(&mut self, units: &[String]) {
        self.units = units.iter().map(|u| (object_path(u), u.clone())).collect();
        self.unit_names = units.iter().cloned().collect();
    }

    /// Starts learning the current owner of systemd's name and calling `Subscribe()` on it
    /// (instead of a call still under way).
    fn subscribe(&mut self) {
        if let Some(earlier) = self.subscribing.take() {
            earlier.abort();
        }
        let conn = self.conn.clone();
        self.subscribing = Some(tokio::spawn(async move {
            let owner = DBusProxy::new(&conn)
                .await?
                .get_name_owner(BusName::try_from(SYSTEMD)?)
                .await?;
            let manager = ManagerProxy::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            match manager.subscribe().await {
                Err(zbus::Error::MethodError(name, _, _)) if name.as_str() == ALREADY_SUBSCRIBED => Ok(owner),
                Err(e) => Err(e),
                Ok(()) => Ok(owner),
            }
        }));
    }

    fn sent_by_owner(&self, msg: &Message) -> bool {
        let header = msg.header();
        match (header.sender(), &self.owner) {
            (Some(sender), Some(owner)) => sender.as_str() == owner.as_str(),
            _ => false,
        }
    }

    /// Waits for the next cue; `None` when the connection is gone.
    pub async fn next(&mut self) -> Option<Cue> {
        loop {
            let msg = tokio::select! {
                msg = self.properties.next() => msg?.ok()?,
                msg = self.jobs.next() => msg?.ok()?,
                msg = self.owners.next() => msg?.ok()?,
                done = async { self.subscribing.as_mut().expect("guarded").await }, if self.subscribing.is_some() => {
                    self.subscribing = None;
                    match done {
                        Ok(Ok(owner)) => {
                            (self.resubscribe, self.resubscribe_wait) = (None, None);
                            let cue = format!("subscribed to systemd ({owner})");
                            self.owner = Some(owner);
                            return Some(Cue::Following(cue));
                        }
                        Ok(Err(e)) if no_systemd(&e) => return Some(Cue::NotFollowing(e.to_string())),
                        Ok(Err(e)) => {
                            let wait = self.resubscribe_wait.map_or(RESUBSCRIBE_FIRST, |w| (w * 2).min(RESUBSCRIBE_MAX));
                            self.resubscribe_wait = Some(wait);
                            self.resubscribe = Some(Box::pin(tokio::time::sleep(wait)));
                            return Some(Cue::NotFollowing(format!("{e}; trying again in {}s", wait.as_secs())));
                        }
                        Err(e) => return Some(Cue::NotFollowing(e.to_string())),
                    }
                }
                () = async { self.resubscribe.as_mut().expect("guarded").await }, if self.resubscribe.is_some() => {
                    self.resubscribe = None;
                    if self.subscribing.is_none() {
                        self.subscribe();
                    }
                    continue;
                }
            };
            if let Some(cue) = self.cue(&msg) {
                return Some(cue);
            }
        }
    }

    fn cue(&mut self, msg: &Message) -> Option<Cue> {
        let header = msg.header();
        match header.member()?.as_str() {
            // The bus daemon's own broadcast only: anyone may send a signal of that name to us
            // (the match rule's sender is checked by the bus for broadcasts alone).
            "NameOwnerChanged" if from_bus_daemon(msg) => {
                let (name, _, new): (String, String, String) = msg.body().deserialize().ok()?;
                let unchanged = self.owner.as_ref().is_some_and(|owner| owner.as_str() == new);
                if name != SYSTEMD || unchanged {
                    return None;
                }
                // Gone or re-executed: nothing from the old owner is believed any more, nor
                // the unit states it reported.
                self.owner = None;
                self.states.clear();
                if new.is_empty() {
                    return Some(Cue::NotFollowing("systemd left the bus".into()));
                }
                self.subscribe();
                None
            }
            "JobRemoved" if self.sent_by_owner(msg) => {
                let (_, _, unit, result): (u32, OwnedObjectPath, String, String) = msg.body().deserialize().ok()?;
                // A stop job is "done" too: only a unit last seen active (or not seen yet) is a cue.
                let active = self.states.get(&unit).is_none_or(|state| state == "active");
                (result == "done" && active && self.unit_names.contains(&unit))
                    .then(|| Cue::Recheck(format!("{unit}: job done")))
            }
            "PropertiesChanged" if self.sent_by_owner(msg) => {
                let path = OwnedObjectPath::from(header.path()?.clone());
                let unit = self.units.get(&path)?.clone();
                let (interface, changed, _): (String, HashMap<String, OwnedVariant>, Vec<String>) =
                    msg.body().deserialize().ok()?;
                let state: String = changed.get("ActiveState")?.try_clone().ok()?.try_into().ok()?;
                let previous = self.states.insert(unit.clone(), state);
                let state = &self.states[&unit];
                (interface == UNIT_INTERFACE && became_active(previous.as_deref(), state))
                    .then(|| Cue::Recheck(format!("{unit} became active")))
            }
            _ => None,
        }
    }
}

/// A broadcast of the bus daemon itself (which alone may send as `org.freedesktop.DBus`).
fn from_bus_daemon(msg: &Message) -> bool {
    let header = msg.header();
    header.sender().is_some_and(|s| s.as_str() == "org.freedesktop.DBus") && header.destination().is_none()
}

/// Whether a unit's ActiveState of `state` is a start. systemd sends ActiveState with every
/// change of a Unit property, so an active unit reports "active" again and again (docker.socket
/// does each time docker.service starts or stops, just before a restart re-creates the socket):
/// only a change to "active" counts, or the first state seen.
fn became_active(previous: Option<&str>, state: &str) -> bool {
    state == "active" && previous != Some("active")
}

/// Whether a failed subscription says that systemd is not on the bus.
fn no_systemd(e: &zbus::Error) -> bool {
    const NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
    match e {
        zbus::Error::FDO(fdo) => matches!(**fdo, zbus::fdo::Error::NameHasNoOwner(_)),
        zbus::Error::MethodError(name, _, _) => name.as_str() == NO_OWNER,
        _ => false,
    }
}

fn object_path(unit: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(unit_object_path(unit)).expect("escaped unit paths are valid object paths")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anyone may send a signal named NameOwnerChanged to the daemon's connection (the system
    /// bus allows signals to any destination, and zbus does not check a well-known sender in a
    /// match rule): only the bus daemon's own broadcast is believed.
    #[test]
    fn only_the_bus_daemons_broadcast_counts_as_a_name_owner_change() {
        let signal = |sender: &str, destination: Option<&str>| {
            let builder =
                Message::signal("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged").sender(sender);
            let builder = match destination {
                Some(d) => builder.destination(d),
                None => builder,
            };
            builder.build(&(SYSTEMD, ":1.1", "")).unwrap()
        };
        assert!(from_bus_daemon(&signal("org.freedesktop.DBus", None)));
        assert!(!from_bus_daemon(&signal(":1.7", None)));
        assert!(!from_bus_daemon(&signal(":1.7", Some(":1.1"))));
        assert!(!from_bus_daemon(&signal("org.freedesktop.DBus", Some(":1.1"))));
    }

    #[test]
    fn only_a_change_to_active_is_a_start() {
        assert!(became_active(None, "active"));
        assert!(became_active(Some("activating"), "active"));
        assert!(became_active(Some("inactive"), "active"));
        assert!(!became_active(Some("active"), "active"));
        assert!(!became_active(Some("active"), "deactivating"));
        assert!(!became_active(None, "inactive"));
    }

    #[test]
    fn unit_paths_are_escaped_like_systemd() {
        assert_eq!(
            unit_object_path("docker.service"),
            "/org/freedesktop/systemd1/unit/docker_2eservice"
        );
        assert_eq!(
            unit_object_path("docker.socket"),
            "/org/freedesktop/systemd1/unit/docker_2esocket"
        );
        assert_eq!(
            unit_object_path("foo-bar@1.service"),
            "/org/freedesktop/systemd1/unit/foo_2dbar_401_2eservice"
        );
        assert_eq!(
            unit_object_path("1x.service"),
            "/org/freedesktop/systemd1/unit/_31x_2eservice"
        );
    }
}
