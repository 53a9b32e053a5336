//! The `org.nonrootd1.Manager` interface. It only authorizes the caller and forwards the call
//! to the event loop, which owns all state.

use nonrootd_core::duty::DutySet;
use nonrootd_core::report::Report;
use nonrootd_core::status::DaemonStatus;
use tokio::sync::{mpsc, oneshot};
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
}

/// The object served at `/org/nonrootd1`.
pub struct Manager {
    pub requests: mpsc::Sender<Request>,
}

/// The uid of the process that sent a call: asked of the bus daemon, or taken from the socket's
/// peer credentials on a peer-to-peer connection.
async fn caller_uid(conn: &Connection, header: &Header<'_>) -> Result<u32, ApiError> {
    match header.sender() {
        Some(sender) if conn.is_bus() => {
            let dbus = zbus::fdo::DBusProxy::new(conn).await?;
            dbus.get_connection_unix_user(sender.clone().into())
                .await
                .map_err(|e| ApiError::Failed(format!("cannot identify the caller: {e}")))
        }
        _ => {
            let creds = conn.peer_creds().await.map_err(|e| ApiError::Failed(e.to_string()))?;
            creds
                .unix_user_id()
                .ok_or_else(|| ApiError::AccessDenied("the caller's uid is unknown".into()))
        }
    }
}

async fn require_root(conn: &Connection, header: &Header<'_>, action: &str) -> Result<(), ApiError> {
    let uid = caller_uid(conn, header).await?;
    if uid == 0 {
        return Ok(());
    }
    let who = header
        .sender()
        .map_or_else(|| "the caller".to_string(), |s| s.to_string());
    Err(ApiError::AccessDenied(format!(
        "{action} needs root; {who} runs as uid {uid} (try sudo)"
    )))
}

impl Manager {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let gone = || ApiError::Failed("the daemon is shutting down".into());
        self.requests.send(make(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Failed(e.to_string()))
}

#[interface(name = "org.nonrootd1.Manager")]
impl Manager {
    /// The daemon's status as JSON: version, uptime, last trigger, and per duty and path the
    /// desired and observed state, last change and last error. Open to every user.
    async fn status(&self) -> Result<String, ApiError> {
        to_json(&self.ask(Request::Status).await?)
    }

    /// Applies the named duties now (all when empty) and returns the report as JSON. Root only.
    async fn apply(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        duties: Vec<String>,
    ) -> Result<String, ApiError> {
        require_root(conn, &header, "Apply").await?;
        let duties = match duties.is_empty() {
            true => DutySet::ALL,
            false => DutySet::parse(&duties.join(",")).map_err(ApiError::InvalidArgs)?,
        };
        to_json(&self.ask(|reply| Request::Apply(duties, reply)).await?)
    }

    /// Re-reads the config; an invalid config is refused and the old one stays in force. Root only.
    async fn reload(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), ApiError> {
        require_root(conn, &header, "Reload").await?;
        self.ask(Request::Reload).await?.map_err(ApiError::Failed)
    }

    /// The daemon's version.
    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// "running" when every path is right, "degraded" when something is refused or failed.
    #[zbus(property)]
    async fn state(&self) -> String {
        match self.ask(Request::Status).await {
            Ok(status) if status.healthy() => "running".into(),
            Ok(_) => "degraded".into(),
            Err(_) => "stopping".into(),
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
