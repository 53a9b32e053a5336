//! `nonrootctl`'s side of `org.nonrootd1`: calls that never D-Bus-activate the daemon and are
//! bounded in time.

use std::future::Future;
use std::time::Duration;

use zbus::proxy;

/// The daemon's interface as a client sees it.
#[proxy(
    interface = "org.nonrootd1.Manager",
    default_service = "org.nonrootd1",
    default_path = "/org/nonrootd1"
)]
pub trait Manager {
    #[zbus(no_autostart)]
    fn status(&self) -> zbus::Result<String>;
    #[zbus(no_autostart)]
    fn apply(&self, duties: &[&str]) -> zbus::Result<String>;
    #[zbus(no_autostart)]
    fn reload(&self) -> zbus::Result<()>;
}

/// Why a call to the daemon did not work.
#[derive(Debug)]
pub enum CallError {
    /// The system bus cannot be reached, so whether the daemon runs is unknown.
    NoBus(String),
    /// Nobody owns org.nonrootd1 on the system bus.
    NoDaemon(String),
    /// The daemon (or the bus policy) refused the caller.
    Denied(String),
    /// The daemon answered with an error.
    Failed(String),
    TimedOut(Duration),
    /// nonrootctl could not ask at all (no runtime): nothing is known of the daemon.
    NotAsked(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoBus(why) => write!(f, "the system bus cannot be reached ({why})"),
            CallError::NoDaemon(why) => write!(f, "nonrootd is not running ({why})"),
            CallError::Denied(why) => write!(f, "permission denied: {why}"),
            CallError::Failed(why) => write!(f, "{why}"),
            CallError::TimedOut(after) => write!(f, "nonrootd did not answer within {after:?}"),
            CallError::NotAsked(why) => write!(f, "nonrootd cannot be asked: {why}"),
        }
    }
}

fn classify(e: zbus::Error) -> CallError {
    match &e {
        zbus::Error::MethodError(name, message, _) => {
            let text = message.clone().unwrap_or_else(|| name.to_string());
            match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                    CallError::NoDaemon(text)
                }
                "org.nonrootd1.Error.AccessDenied" | "org.freedesktop.DBus.Error.AccessDenied" => {
                    CallError::Denied(text)
                }
                _ => CallError::Failed(text),
            }
        }
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            zbus::fdo::Error::NameHasNoOwner(why) | zbus::fdo::Error::ServiceUnknown(why) => {
                CallError::NoDaemon(why.clone())
            }
            zbus::fdo::Error::AccessDenied(why) => CallError::Denied(why.clone()),
            other => CallError::Failed(other.to_string()),
        },
        zbus::Error::InputOutput(_) | zbus::Error::Address(_) | zbus::Error::Handshake(_) => {
            CallError::NoBus(e.to_string())
        }
        _ => CallError::Failed(e.to_string()),
    }
}

/// Connects to the system bus and runs `call` on the daemon's proxy, all within `timeout`.
pub fn call<T, F, Fut>(timeout: Duration, call: F) -> Result<T, CallError>
where
    F: FnOnce(ManagerProxy<'static>) -> Fut,
    Fut: Future<Output = zbus::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CallError::NotAsked(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async {
        let work = async {
            // No bus to connect to: a minimal host, a chroot, early boot, or a bus that died.
            let conn = zbus::connection::Builder::system()
                .method_timeout(timeout)
                .build()
                .await
                .map_err(|e| CallError::NoBus(e.to_string()))?;
            let proxy = ManagerProxy::builder(&conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .map_err(classify)?;
            call(proxy).await.map_err(classify)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| CallError::TimedOut(timeout))?
    })
}
