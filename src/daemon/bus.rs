//! The system bus: owns `org.nonrootd1`, serves the API, follows systemd, and reconnects with
//! backoff when the bus goes away (a restart of dbus). Every (re)connection is reported to the
//! event loop, which re-checks the host so that no Docker start in between is missed.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use zbus::Connection;

use super::api::{BUS_NAME, Manager, OBJECT_PATH, Request};
use super::systemd::{Cue, Watcher};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(10);
/// How long one attempt to connect and own the name may take: READY=1 waits for the first,
/// and a bus that accepts but does not answer must not hold it until `TimeoutStartSec=`.
/// Past it the daemon works without the bus and keeps trying, as when there is none.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// What the bus side tells the event loop.
pub enum BusEvent {
    /// Connected and the name owned.
    Connected(Connection),
    /// Whether systemd is followed on the bus now.
    Following(bool),
    /// The connection is gone, or could not be made.
    Lost(String),
    /// Re-check the host: a followed unit became active or finished a job.
    Cue(String),
    /// Re-check the host: systemd was (re)subscribed to, something may have started meanwhile.
    Subscribed(String),
}

/// Runs forever: connect, serve, follow systemd; on loss, wait and connect again.
pub async fn run(
    mut units: watch::Receiver<Vec<String>>,
    requests: mpsc::Sender<Request>,
    events: mpsc::Sender<BusEvent>,
) {
    let mut retry = FIRST_RETRY;
    let mut warned = false;
    loop {
        let mut connected = false;
        let result = session(&mut units, &requests, &events, &mut connected).await;
        let why = match result {
            Ok(()) => {
                info!("system bus connection closed; reconnecting");
                // A later outage is news again, and is tried again soon.
                (retry, warned) = (FIRST_RETRY, false);
                "connection closed".to_string()
            }
            // The bus answered, and then something on it failed (a match rule refused).
            Err(e) if connected && !warned => {
                warn!("system bus session failed ({e}); connecting again, working on inotify meanwhile");
                warned = true;
                e.to_string()
            }
            Err(e) if !warned => {
                warn!("no system bus ({e}); working on inotify only until it appears");
                warned = true;
                e.to_string()
            }
            Err(e) => {
                debug!("system bus still unavailable: {e}");
                e.to_string()
            }
        };
        if events.send(BusEvent::Lost(why)).await.is_err() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

async fn session(
    units: &mut watch::Receiver<Vec<String>>,
    requests: &mpsc::Sender<Request>,
    events: &mpsc::Sender<BusEvent>,
    connected: &mut bool,
) -> zbus::Result<()> {
    let connect = zbus::connection::Builder::system()
        .serve_at(
            OBJECT_PATH,
            Manager {
                requests: requests.clone(),
            },
        )
        .name(BUS_NAME)
        .build();
    let conn = tokio::time::timeout(CONNECT_LIMIT, connect)
        .await
        .map_err(|_| zbus::Error::Failure(format!("no answer within {CONNECT_LIMIT:?}")))??;
    if events.send(BusEvent::Connected(conn.clone())).await.is_err() {
        return Ok(());
    }
    *connected = true;
    let followed = units.borrow_and_update().clone();
    let mut watcher = Watcher::new(&conn, &followed).await?;
    loop {
        let cue = tokio::select! {
            cue = watcher.next() => match cue {
                Some(cue) => cue,
                None => return Ok(()),
            },
            // A reload changed [docker].units.
            Ok(()) = units.changed() => {
                watcher.follow(&units.borrow_and_update());
                continue;
            }
        };
        let event = match cue {
            Cue::Following(what) => {
                let _ = events.send(BusEvent::Following(true)).await;
                BusEvent::Subscribed(what)
            }
            Cue::NotFollowing(why) => {
                warn!("cannot follow systemd on the bus ({why}); re-applying on inotify and API calls only");
                BusEvent::Following(false)
            }
            Cue::Recheck(what) => BusEvent::Cue(what),
        };
        if events.send(event).await.is_err() {
            return Ok(());
        }
    }
}
