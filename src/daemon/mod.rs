//! `nonrootd`: the long-running daemon. One event loop ([`event_loop::Daemon`]) owns all state;
//! the bus side ([`bus`]) delivers cues to it; the socket fixer thread ([`socket_fixer`]) re-applies
//! re-created sockets on its own and reports to it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use crate::config_file::{self, DEFAULT_CONFIG};
use crate::state::default_state_dir;

pub mod api;
mod bus;
mod event_loop;
mod host_job;
mod logging;
mod realtime;
mod socket_fixer;
mod systemd;
mod volume_job;

/// Keeps this host prepared for non-root containers: re-applies on every Docker start and
/// socket re-creation, and serves org.nonrootd1 on the system bus.
#[derive(Parser, Debug)]
#[command(name = "nonrootd", version)]
pub struct DaemonCli {
    /// Main config file; drop-ins are read from nonrootd.d/ beside it.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The `clap` description of `nonrootd`, for man pages.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    DaemonCli::command()
}

/// Runs the daemon with the process's arguments.
pub fn main() -> ExitCode {
    // SAFETY: only a disposition is set, no handler: a SIGHUP before the loop registers its
    // own (a reload request) is ignored instead of ending the daemon, which systemd would
    // count as a clean exit and not restart.
    let _ = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn) };
    let cli = DaemonCli::parse();
    logging::init();
    // Before any other thread starts: they all inherit the filter.
    let confined = realtime::confine()
        .inspect_err(|e| {
            warn!("socket fixer: new sockets are granted at normal priority: cannot confine sched_setattr to the calling thread: {e}")
        })
        .ok();
    let config = match config_file::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            for e in errors {
                error!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let (units, units_rx) = watch::channel(config.followed_units());
    let state_dir = cli.state_dir.unwrap_or_else(default_state_dir);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let daemon = match event_loop::Daemon::new(cli.config, state_dir, config, units, confined) {
            Ok(daemon) => daemon,
            Err(e) => {
                error!("cannot start the socket fixer or the apply thread: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (requests, request_rx) = mpsc::channel(16);
        let (bus_events, bus_rx) = mpsc::channel(16);
        let bus_side = tokio::spawn(bus::run(units_rx, requests, bus_events));
        daemon.run(request_rx, bus_rx, bus_side).await
    })
}

/// Seconds since the epoch, as the status reports times.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One trigger text for a batch of cues served by one apply: the first, and how many more.
fn batch_trigger(cues: &[String]) -> Option<String> {
    let first = cues.first()?;
    Some(match cues.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more)", n - 1),
    })
}

/// When to try a failed apply again with no event to trigger it: after `first`, then twice
/// as long each time up to `max`. One that is scheduled stays until due: events more often
/// than the wait must not put it off.
#[derive(Debug)]
struct Backoff {
    first: Duration,
    max: Duration,
    due: Option<Instant>,
    /// The wait before the last retry: the next one waits twice as long.
    waited: Option<Duration>,
}

impl Backoff {
    const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            due: None,
            waited: None,
        }
    }

    /// After a failure: schedules the next retry, unless one is scheduled.
    fn failed(&mut self) {
        if self.due.is_none() {
            let wait = self.waited.map_or(self.first, |wait| (wait * 2).min(self.max));
            self.due = Some(Instant::now() + wait);
            self.waited = Some(wait);
        }
    }

    /// After a success: no retry, and the next failure waits `first` again.
    fn succeeded(&mut self) {
        (self.due, self.waited) = (None, None);
    }

    fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether the retry is due; if so, it is taken: only the failure of its own apply
    /// schedules the next.
    fn take_due(&mut self) -> bool {
        let due = self.due.is_some_and(|at| Instant::now() >= at);
        if due {
            self.due = None;
        }
        due
    }
}
