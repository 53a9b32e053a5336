//! The `org.nonrootd1.Manager` interface. It only authorizes the caller and forwards the call
//! to the event loop, which owns all state.

use nonrootd_core::duty::DutySet;
use nonrootd_core::report::Report;
use nonrootd_core::status::DaemonStatus;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::cli::subids::{Output, SubidsCommand};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, interface};

pub const BUS_NAME: &str = "org.nonrootd1";
pub const OBJECT_PATH: &str = "/org/nonrootd1";

/// A call for the event loop, with where to send the answer.
pub enum Request {
    Status(oneshot::Sender<DaemonStatus>),
    Apply(DutySet, oneshot::Sender<Report>),
    Reload(oneshot::Sender<Result<(), String>>),
    Subids(SubidsCommand, oneshot::Sender<Output>),
}

/// Errors callers see, as `org.nonrootd1.Error.*`.
#[derive(zbus::DBusError, Debug)]
#[zbus(prefix = "org.nonrootd1.Error")]
pub enum ApiError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller may not do this.
    AccessDenied(String),
    /// An argument is not valid.
    InvalidArgs(String),
    /// The daemon tried and failed.
    Failed(String),
    /// The daemon's queue is full; try again.
    Busy(String),
}

/// The object served at `/org/nonrootd1`.
pub struct Manager {
    pub requests: mpsc::Sender<Request>,
}

/// Who sent a call: its unique bus name ("the caller" on a peer-to-peer connection) and uid.
struct Caller {
    name: String,
    uid: u32,
}

impl Caller {
    /// Identifies the sender of a call: its uid is asked of the bus daemon, or taken from the
    /// socket's peer credentials on a peer-to-peer connection.
    async fn of(conn: &Connection, header: &Header<'_>) -> Result<Caller, ApiError> {
        let uid = match (header.sender(), conn.is_bus()) {
            (Some(sender), true) => {
                let dbus = zbus::fdo::DBusProxy::new(conn).await?;
                dbus.get_connection_unix_user(sender.clone().into())
                    .await
                    .map_err(|e| ApiError::Failed(format!("cannot identify the caller {sender}: {e}")))?
            }
            // The bus daemon stamps every message: its own peer credentials are not the caller's.
            (None, true) => return Err(ApiError::AccessDenied("a call without a sender is refused".into())),
            (_, false) => {
                let unknown = |why: String| ApiError::AccessDenied(format!("the caller's uid is unknown: {why}"));
                let creds = conn.peer_creds().await.map_err(|e| unknown(e.to_string()))?;
                creds
                    .unix_user_id()
                    .ok_or_else(|| unknown("no peer credentials".into()))?
            }
        };
        let name = header
            .sender()
            .map_or_else(|| "the caller".to_string(), |s| s.to_string());
        Ok(Caller { name, uid })
    }

    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Identifies the caller and refuses anyone but root.
async fn require_root(conn: &Connection, header: &Header<'_>, action: &str) -> Result<Caller, ApiError> {
    let caller = Caller::of(conn, header).await?;
    if caller.is_root() {
        tracing::info!("{action}() called by {} (uid 0)", caller.name);
        return Ok(caller);
    }
    Err(ApiError::AccessDenied(format!(
        "{action} needs root; {} runs as uid {} (run it as root)",
        caller.name, caller.uid
    )))
}

impl Manager {
    /// Hands a request to the event loop and waits for the answer. Root waits for a slot in the
    /// loop's queue; anyone else is told at once that the daemon is busy when the queue is full,
    /// so that no user can hold up root's calls by filling it.
    async fn ask<T>(&self, caller: &Caller, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let gone = || ApiError::Failed("the daemon is shutting down".into());
        let request = make(reply);
        if caller.is_root() {
            self.requests.send(request).await.map_err(|_| gone())?;
        } else {
            self.requests.try_send(request).map_err(|e| match e {
                TrySendError::Full(_) => ApiError::Busy(format!(
                    "nonrootd is busy, try again: its queue is full and only root's calls wait for a slot ({} runs as uid {})",
                    caller.name, caller.uid
                )),
                TrySendError::Closed(_) => gone(),
            })?;
        }
        answer.await.map_err(|_| gone())
    }

    async fn subids(&self, caller: &Caller, command: SubidsCommand) -> Result<String, ApiError> {
        let output = self.ask(caller, |reply| Request::Subids(command, reply)).await?;
        match output.error {
            None if output.success => Ok(output.stdout),
            None => Err(ApiError::Failed(output.stdout)),
            Some(failure) if failure.invalid_request => Err(ApiError::InvalidArgs(failure.message)),
            Some(failure) => Err(ApiError::Failed(failure.message)),
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Failed(e.to_string()))
}

#[interface(name = "org.nonrootd1.Manager")]
impl Manager {
    /// The daemon's status as JSON: version, uptime, last trigger, and per duty and path the
    /// desired and observed state, last change and last error. Open to every user; others than
    /// root are answered Busy while the daemon's queue is full.
    async fn status(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, ApiError> {
        let caller = Caller::of(conn, &header).await?;
        let status = self.ask(&caller, Request::Status).await?;
        to_json(&if caller.is_root() { status } else { status.for_others() })
    }

    /// Applies the named duties now (all when empty) and returns the report as JSON. Root only.
    async fn apply(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        duties: Vec<String>,
    ) -> Result<String, ApiError> {
        let caller = require_root(conn, &header, "Apply").await?;
        let duties = match duties.is_empty() {
            true => DutySet::ALL,
            false => DutySet::parse(&duties.join(",")).map_err(ApiError::InvalidArgs)?,
        };
        to_json(&self.ask(&caller, |reply| Request::Apply(duties, reply)).await?)
    }

    /// Re-reads the config and answers once it is in force; an invalid config is refused (the
    /// error names file and line) and the old one stays. The apply of every duty follows the
    /// answer; its outcome shows in Status(). Root only.
    async fn reload(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), ApiError> {
        let caller = require_root(conn, &header, "Reload").await?;
        self.ask(&caller, Request::Reload).await?.map_err(ApiError::Failed)
    }

    /// Gives tenant NAME (user name or uid) COUNT subordinate uids and gids (0: the configured
    /// count); returns "NAME START COUNT". Root only.
    async fn allocate_subids(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        count: u32,
    ) -> Result<String, ApiError> {
        let caller = require_root(conn, &header, "AllocateSubids").await?;
        let count = (count > 0).then_some(count);
        let command = SubidsCommand::Allocate {
            names: vec![name],
            count,
            grow: false,
        };
        self.subids(&caller, command).await
    }

    /// Removes tenant NAME's ranges from both files and quarantines them. Root only.
    async fn release_subids(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
    ) -> Result<String, ApiError> {
        let caller = require_root(conn, &header, "ReleaseSubids").await?;
        self.subids(&caller, SubidsCommand::Release { name }).await
    }

    /// Every range in both files as JSON (owner, start, count, file, line, managed). Root only:
    /// which ranges nonrootd manages is in its state directory (mode 0700); the files
    /// themselves are world-readable.
    async fn list_subids(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, ApiError> {
        let caller = require_root(conn, &header, "ListSubids").await?;
        self.subids(&caller, SubidsCommand::List { json: true }).await
    }

    /// The daemon's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// "running" when every path is right, "degraded" when something is refused or failed or
    /// a reload was refused (the previous config still in force).
    /// Read on demand: no change signal is sent (PathChanged tells of each change).
    #[zbus(property(emits_changed_signal = "false"))]
    async fn state(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        let Some(header) = header else {
            return Err(zbus::fdo::Error::NotSupported(
                "State is answered to bus callers only".into(),
            ));
        };
        let caller = Caller::of(conn, &header)
            .await
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        match self.ask(&caller, Request::Status).await {
            Ok(status) if status.healthy() => Ok("running".into()),
            Ok(_) => Ok("degraded".into()),
            Err(ApiError::Busy(why)) => Err(zbus::fdo::Error::LimitsExceeded(why)),
            Err(_) => Ok("stopping".into()),
        }
    }

    /// A path was changed, refused or failed: duty, path, outcome, detail.
    #[zbus(signal)]
    pub async fn path_changed(
        emitter: &SignalEmitter<'_>,
        duty: &str,
        path: &str,
        outcome: &str,
        detail: &str,
    ) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ManagerProxy;
    use nonrootd_core::duty::Duty;
    use nonrootd_core::report::Outcome;

    fn status() -> DaemonStatus {
        DaemonStatus {
            version: "0.1.0".into(),
            pid: 7,
            started_at: 1,
            now: 2,
            config: "/etc/nonrootd/nonrootd.toml".into(),
            system_bus: true,
            following_systemd: true,
            last_trigger: None,
            applying: None,
            walking: None,
            reload_error: None,
            paths: Vec::new(),
        }
    }

    /// Stands in for the event loop: answers every request and records the duties asked for.
    async fn fake_loop(mut requests: mpsc::Receiver<Request>, seen: mpsc::UnboundedSender<DutySet>) {
        while let Some(request) = requests.recv().await {
            match request {
                Request::Status(reply) => drop(reply.send(status())),
                Request::Apply(duties, reply) => {
                    let _ = seen.send(duties);
                    let mut report = Report::default();
                    report.push(Duty::Docker, "/var/lib/docker/image", "mode 0750", Outcome::Correct);
                    let _ = reply.send(report);
                }
                Request::Reload(reply) => drop(reply.send(Err("/etc/nonrootd/nonrootd.toml:3: bad".into()))),
                Request::Subids(_, reply) => drop(reply.send(Output {
                    stdout: "[]".into(),
                    error: None,
                    success: true,
                })),
            }
        }
    }

    #[tokio::test]
    async fn others_than_root_are_told_busy_when_the_queue_is_full_and_root_waits() {
        let (requests, mut request_rx) = mpsc::channel(1);
        let manager = Manager { requests };
        let (filler, _) = oneshot::channel();
        manager.requests.try_send(Request::Status(filler)).unwrap();
        let user = Caller {
            name: ":1.7".into(),
            uid: 65534,
        };
        match manager.ask(&user, Request::Status).await {
            Err(ApiError::Busy(message)) => {
                assert!(message.starts_with("nonrootd is busy, try again"), "{message}");
                assert!(message.contains(":1.7 runs as uid 65534"), "{message}");
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a user's call waited for a slot"),
        }
        let root = Caller {
            name: ":1.8".into(),
            uid: 0,
        };
        let serve = async {
            drop(request_rx.recv().await);
            match request_rx.recv().await {
                Some(Request::Status(reply)) => drop(reply.send(status())),
                _ => panic!("root's call did not arrive"),
            }
        };
        let (answer, ()) = tokio::join!(manager.ask(&root, Request::Status), serve);
        assert_eq!(answer.unwrap().pid, 7);
    }

    #[tokio::test]
    async fn the_interface_forwards_calls_over_a_peer_to_peer_connection() {
        let (server_end, client_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let (requests, request_rx) = mpsc::channel(4);
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        tokio::spawn(fake_loop(request_rx, seen_tx));
        let guid = zbus::Guid::generate();
        let server = zbus::connection::Builder::unix_stream(server_end)
            .server(guid)
            .p2p()
            .serve_at(OBJECT_PATH, Manager { requests })
            .build();
        let client = zbus::connection::Builder::unix_stream(client_end).p2p().build();
        let (server, client) = tokio::try_join!(server, client).unwrap();
        let proxy = ManagerProxy::builder(&client)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap();

        let json: serde_json::Value = serde_json::from_str(&proxy.status().await.unwrap()).unwrap();
        assert_eq!(json["pid"], 7);
        assert_eq!(json["following_systemd"], true);

        let report: Report = serde_json::from_str(&proxy.apply(&["docker", "dmi"]).await.unwrap()).unwrap();
        assert_eq!(report.entries[0].outcome, Outcome::Correct);
        assert_eq!(
            seen.recv().await,
            Some(DutySet::NONE.with(Duty::Docker).with(Duty::Dmi))
        );
        proxy.apply(&[]).await.unwrap();
        assert_eq!(seen.recv().await, Some(DutySet::ALL));

        match proxy.apply(&["volume"]).await.unwrap_err() {
            zbus::Error::MethodError(name, Some(message), _) => {
                assert_eq!(name.as_str(), "org.nonrootd1.Error.InvalidArgs");
                assert!(message.contains("unknown duty \"volume\""), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match proxy.reload().await.unwrap_err() {
            zbus::Error::MethodError(name, Some(message), _) => {
                assert_eq!(name.as_str(), "org.nonrootd1.Error.Failed");
                assert_eq!(message, "/etc/nonrootd/nonrootd.toml:3: bad");
            }
            other => panic!("{other:?}"),
        }
        drop(server);
    }
}
