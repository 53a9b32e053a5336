//! The one event loop. It owns the config, the per-path status and the bus connection, and
//! reacts to: reports of the socket fixer, systemd cues, API calls, SIGHUP, SIGTERM, the
//! watchdog, its own retries, and the ends of the applies and walks it hands off (it waits for
//! no lock itself). A failing apply is logged and retried on the next event, or after a
//! back-off when none comes; it never ends the loop.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nonrootd_core::config::Config;
use nonrootd_core::duty::{Duty, DutySet};
use nonrootd_core::ids::IdRef;
use nonrootd_core::mode::Mode;
use nonrootd_core::report::{Outcome, Report};
use nonrootd_core::status::{DaemonStatus, PathBook, Stamped, VOLUME_DETAILS_FOR_ROOT};
use nonrootd_core::volumes::Mapping;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use zbus::Connection;
use zbus::object_server::SignalEmitter;

use super::api::{Manager, OBJECT_PATH, Request};
use super::bus::BusEvent;
use super::host_job::{self, Applied, HostJobs, Job};
use super::realtime::Confined;
use super::socket_fixer::{Fixed, LOCK_TIMEOUT, SocketFixer};
use super::volume_job::{Finished, VolumeJobs, Waiter};
use super::{Backoff, now};
use crate::apply::record_unavailable;
use crate::config_file;
use crate::ids::SystemIds;
use crate::message_id;

/// A failed duty is applied again after this with no event to trigger it, doubled each time
/// up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(600);
/// How long a retry waits for a lock: a lock held long (an editor in `vipw`) then holds up the
/// applies for this at each retry, not for [`LOCK_TIMEOUT`].
const RETRY_LOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a stop waits for the bus connection to write the replies of the calls answered.
const STOP_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// The duties the loop tries again on its own when they fail: the sockets' retries are the
/// fixer's, and a volume walk (which may take long) waits for the next trigger.
fn retried(duties: DutySet) -> DutySet {
    duties.without(Duty::Sockets).without(Duty::Volumes)
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("sd_notify failed: {e}");
    }
}

/// All state of the running daemon.
pub struct Daemon {
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub config: Config,
    book: PathBook,
    fixer: SocketFixer,
    fixed: mpsc::UnboundedReceiver<Fixed>,
    /// Counts reloads; the fixer's reports of applies with an older config are dropped.
    generation: u64,
    started_at: u64,
    last_trigger: Option<Stamped>,
    reload_error: Option<Stamped>,
    bus: Option<Connection>,
    following_systemd: bool,
    /// Whether the bus was tried: connected, found missing, or silent for too long.
    bus_tried: bool,
    /// Whether the startup's apply is done.
    started: bool,
    ready: bool,
    last_status: String,
    host: HostJobs,
    volumes: VolumeJobs,
    /// The units the bus side follows; a reload may change them.
    units: watch::Sender<Vec<String>>,
    /// The duties whose last apply failed somewhere, tried again when `retry` is due.
    failed: DutySet,
    retry: Backoff,
    /// When the bus connection was last lost, or systemd followed again after a gap (it left
    /// the bus, or re-executed): what started meanwhile went unseen.
    unseen_since: Option<Instant>,
    /// Whether systemd was subscribed to before: the first subscription follows the startup.
    subscribed_before: bool,
}

impl Daemon {
    pub fn new(
        config_path: PathBuf,
        state_dir: PathBuf,
        config: Config,
        units: watch::Sender<Vec<String>>,
        confined: Option<Confined>,
    ) -> std::io::Result<Daemon> {
        let (reports, fixed) = mpsc::unbounded_channel();
        let fixer = SocketFixer::spawn(
            config.clone(),
            Box::new(SystemIds),
            state_dir.clone(),
            reports,
            confined,
        )?;
        let host = HostJobs::spawn(state_dir.clone())?;
        Ok(Daemon {
            config_path,
            state_dir,
            config,
            book: PathBook::default(),
            fixer,
            fixed,
            generation: 0,
            started_at: now(),
            last_trigger: None,
            reload_error: None,
            bus: None,
            following_systemd: false,
            bus_tried: false,
            started: false,
            ready: false,
            last_status: String::new(),
            host,
            volumes: VolumeJobs::default(),
            units,
            failed: DutySet::NONE,
            retry: Backoff::new(RETRY_FIRST, RETRY_MAX),
            unseen_since: None,
            subscribed_before: false,
        })
    }

    /// Runs until SIGTERM or SIGINT; fails only when it cannot handle signals (systemd's
    /// `Restart=on-failure` then tries again).
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut bus: mpsc::Receiver<BusEvent>,
        bus_side: tokio::task::JoinHandle<()>,
    ) -> ExitCode {
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let mut watchdog = sd_notify::watchdog_enabled().map(|usec| tokio::time::interval(usec / 2));
        self.apply(DutySet::ALL, "startup");
        info!(
            MESSAGE_ID = message_id::STARTED,
            "nonrootd {} started",
            env!("CARGO_PKG_VERSION")
        );
        loop {
            tokio::select! {
                Some(fixed) = self.fixed.recv() => self.on_fixed(&fixed),
                Some(event) = bus.recv() => {
                    let mut events = vec![event];
                    while let Ok(more) = bus.try_recv() {
                        events.push(more);
                    }
                    self.on_bus(events);
                }
                Some(request) = requests.recv() => self.on_request(request),
                applied = self.host.finished() => self.on_host_job(applied),
                done = self.volumes.finished() => self.on_volumes(done),
                _ = hup.recv() => {
                    let _ = self.reload("SIGHUP");
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick(&mut watchdog) => notify(&[NotifyState::Watchdog]),
                _ = until(self.retry.due()) => {
                    if self.retry.take_due() {
                        self.apply_within(self.failed, "a retry (an apply failed)", RETRY_LOCK_TIMEOUT);
                    }
                }
            }
        }
        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        info!("nonrootd stopping");
        // Callers waiting for the running job or walk are answered (those queued after them,
        // not walked). The bus side ends; the connection closes once the replies are written
        // (each call in progress holds it), within a second.
        self.host.stop().await;
        self.volumes.stop().await;
        // Calls still queued for the loop are told it is shutting down.
        drop(requests);
        bus_side.abort();
        let _ = bus_side.await;
        if let Some(conn) = self.bus.take() {
            let _ = tokio::time::timeout(STOP_FLUSH_LIMIT, conn.graceful_shutdown()).await;
        }
        ExitCode::SUCCESS
    }

    /// Handles what the bus side queued; every re-check cue in the batch (systemd sends several
    /// per Docker start) is served by one apply, the sockets' by the fixer thread.
    fn on_bus(&mut self, events: Vec<BusEvent>) {
        let mut rechecks: Vec<String> = Vec::new();
        let mut unit_cue = false;
        for event in events {
            match event {
                BusEvent::Connected(conn) => {
                    self.bus = Some(conn);
                    // The first connection follows the startup apply: nothing to catch up on.
                    // What starts meanwhile is caught by the re-check once systemd is
                    // subscribed to.
                    if self.bus_tried {
                        rechecks.push("connected to the system bus".into());
                    }
                    self.bus_tried = true;
                }
                BusEvent::Following(following) => self.following_systemd = following,
                BusEvent::Lost(why) => {
                    self.bus = None;
                    self.unseen_since = Some(Instant::now());
                    self.following_systemd = false;
                    self.bus_tried = true;
                    tracing::debug!("bus lost: {why}");
                }
                BusEvent::Cue(what) => {
                    unit_cue = true;
                    rechecks.push(what);
                }
                BusEvent::Subscribed(what) => {
                    if std::mem::replace(&mut self.subscribed_before, true) {
                        self.unseen_since = Some(Instant::now());
                    }
                    rechecks.push(what);
                }
            }
        }
        if let Some(what) = super::batch_trigger(&rechecks) {
            let walking = walk_began_since(self.volumes.running_since(), self.unseen_since);
            self.apply(recheck_duties(unit_cue, walking), &what);
            self.fixer.recheck(what);
        }
        self.mark_ready();
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::Apply(duties, reply) => {
                // Answered when the apply is done, and the walk if asked for (see on_host_job).
                let caller = host_job::Caller {
                    reply,
                    volumes: duties.contains(Duty::Volumes),
                };
                self.queue_apply(
                    duties.without(Duty::Volumes),
                    "Apply() over D-Bus",
                    LOCK_TIMEOUT,
                    Some(caller),
                );
            }
            Request::Reload(reply) => {
                let _ = reply.send(self.reload("Reload() over D-Bus"));
            }
            Request::Subids(command, reply) => {
                // Shadow's locks are waited for as long as the applies wait.
                let job = Job::Subids(command, reply);
                self.host.push(job, &self.config, self.generation, &mut self.fixer);
            }
        }
    }

    /// Sends STATUS= when it says something new (a burst of identical events sends one).
    fn set_status(&mut self, text: String) {
        if self.last_status != text {
            notify(&[NotifyState::Status(&text)]);
            self.last_status = text;
        }
    }

    /// READY=1 once the startup's apply is done and the bus was tried (owned, found missing,
    /// or silent for the bus side's connection limit).
    fn mark_ready(&mut self) {
        if !self.ready && self.started && self.bus_tried {
            self.ready = true;
            notify(&[NotifyState::Ready]);
        }
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            now: now(),
            config: self.config_path.clone(),
            system_bus: self.bus.is_some(),
            following_systemd: self.following_systemd,
            last_trigger: self.last_trigger.clone(),
            applying: self.host.running(),
            walking: self.volumes.running(),
            reload_error: self.reload_error.clone(),
            paths: self.book.snapshot(),
        }
    }

    /// Re-reads the config. An invalid one is refused and logged; the old one stays in force.
    /// The new one's apply is queued: a caller waiting for the reload does not wait for it.
    fn reload(&mut self, why: &str) -> Result<(), String> {
        let config = match config_file::load(&self.config_path) {
            Ok(config) => config,
            Err(errors) => {
                let text: Vec<_> = errors.iter().map(ToString::to_string).collect();
                let text = text.join("; ");
                error!(
                    MESSAGE_ID = message_id::RELOAD_REFUSED,
                    "reload refused, previous config stays in force: {text}"
                );
                self.reload_error = Some(Stamped {
                    at: now(),
                    text: text.clone(),
                });
                self.set_status(format!("reload refused: {text}"));
                return Err(text);
            }
        };
        self.generation += 1;
        self.fixer.reconfigure(config.clone(), self.generation);
        // A walk goes on when what it reads of the config is the same (reloads more often than
        // a walk takes would otherwise starve it); the reload's apply queues the next one.
        if volumes_differ(&self.config, &config) {
            self.volumes.cancel();
        }
        self.config = config;
        let units = self.config.followed_units();
        self.units.send_if_modified(|followed| {
            let changed = *followed != units;
            *followed = units;
            changed
        });
        self.reload_error = None;
        self.book.clear();
        // The new config's own apply schedules a retry if it fails.
        (self.failed, self.retry) = (DutySet::NONE, Backoff::new(RETRY_FIRST, RETRY_MAX));
        // The fixer applies the sockets with the new config itself.
        self.apply(DutySet::ALL.without(Duty::Sockets), &format!("reload ({why})"));
        Ok(())
    }

    /// A volume walk ended: record it like any apply, answer whoever waits, start the next.
    fn on_volumes(&mut self, done: Finished) {
        if !done.superseded {
            self.record(&done.report, &done.trigger, false);
        }
        for waiter in done.waiters {
            waiter.answer(&done.report);
        }
        self.volumes.start_next(&self.config);
    }

    /// Starts the walk of the volumes, if among `duties`, and queues the apply of the others
    /// (see [`on_host_job`](Self::on_host_job)).
    fn apply(&mut self, duties: DutySet, trigger: &str) {
        self.apply_within(duties, trigger, LOCK_TIMEOUT);
    }

    /// [`apply`](Self::apply), waiting at most `lock_timeout` for each lock (`apply.lock`,
    /// shadow's).
    fn apply_within(&mut self, duties: DutySet, trigger: &str, lock_timeout: Duration) {
        if duties.contains(Duty::Volumes) {
            self.volumes.request(&self.config, trigger, None);
        }
        self.queue_apply(duties.without(Duty::Volumes), trigger, lock_timeout, None);
    }

    fn queue_apply(
        &mut self,
        duties: DutySet,
        trigger: &str,
        lock_timeout: Duration,
        caller: Option<host_job::Caller>,
    ) {
        let apply = host_job::Apply {
            duties,
            trigger: trigger.to_string(),
            lock_timeout,
            caller,
        };
        self.host
            .push(Job::Apply(apply), &self.config, self.generation, &mut self.fixer);
    }

    /// Records a socket fixer's report, unless made with a config older than the last reload.
    fn on_fixed(&mut self, fixed: &Fixed) {
        if fixed.generation == self.generation {
            self.record(&fixed.report, &fixed.trigger, true);
        }
    }

    /// A host job ended: an apply's outcome is recorded per path (unless a reload came since;
    /// its sockets as the fixer reported them, first), with signals for what changed or went
    /// wrong and a STATUS= of what happened; its caller is answered, after the walk if it asked
    /// for the volumes. Then the next job starts.
    fn on_host_job(&mut self, applied: Option<Applied>) {
        // The fixer sent its report of the job's sockets before answering the job.
        while let Ok(fixed) = self.fixed.try_recv() {
            self.on_fixed(&fixed);
        }
        if let Some(Applied {
            apply,
            report,
            generation,
        }) = applied
        {
            if generation == self.generation {
                let mut own = report.clone();
                own.entries.retain(|e| e.duty != Duty::Sockets);
                // A sockets-only apply was recorded as the fixer reported it; STATUS= counts
                // the fixer's socket entries too.
                if apply.duties.without(Duty::Sockets) != DutySet::NONE {
                    self.record(&own, &apply.trigger, false);
                    self.set_status(status_line(&apply.trigger, &report));
                }
                self.schedule_retry(apply.duties, &own);
            }
            match apply.caller {
                Some(caller) if caller.volumes => {
                    let waiter = Waiter {
                        report,
                        reply: caller.reply,
                    };
                    self.volumes.request(&self.config, &apply.trigger, Some(waiter));
                }
                Some(caller) => drop(caller.reply.send(report)),
                None => {}
            }
            if !self.started {
                self.started = true;
                self.mark_ready();
            }
        }
        self.host.start_next(&self.config, self.generation, &mut self.fixer);
    }

    /// Notes which duties failed in `report` (of an apply of `applied`): while any failed
    /// (or were not applied since), a retry is scheduled; once none is left, none is.
    fn schedule_retry(&mut self, applied: DutySet, report: &Report) {
        let failed = report
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Failed { .. }))
            .fold(DutySet::NONE, |set, e| set.with(e.duty));
        self.failed = retried(failed).union(self.failed.difference(applied));
        if self.failed == DutySet::NONE {
            self.retry.succeeded();
        } else {
            self.retry.failed();
        }
    }

    /// Records an apply's report; `sockets`: it applied the sockets duty, so the grant record
    /// was usable unless the report says otherwise (a failure of it recorded earlier is over).
    fn record(&mut self, report: &Report, trigger: &str, sockets: bool) {
        let at = now();
        if sockets && !record_unavailable(report, &self.state_dir) {
            self.book.forget(Duty::Sockets, &self.state_dir);
        }
        self.book.record(report, at);
        self.last_trigger = Some(Stamped {
            at,
            text: trigger.to_string(),
        });
        self.emit_signals(report);
        self.set_status(status_line(trigger, report));
    }

    fn emit_signals(&self, report: &Report) {
        let Some(conn) = &self.bus else { return };
        for entry in &report.entries {
            let detail = match &entry.outcome {
                Outcome::Changed { change } => change,
                Outcome::Refused { reason } => reason,
                Outcome::Failed { error } => error,
                _ => continue,
            };
            // Broadcast to every user: what a walk says of the files in a volume is not.
            let detail = match entry.duty {
                Duty::Volumes => VOLUME_DETAILS_FOR_ROOT.to_string(),
                _ => detail.clone(),
            };
            let conn = conn.clone();
            let (duty, path, outcome) = (
                entry.duty.name(),
                entry.path.display().to_string(),
                entry.outcome.label(),
            );
            tokio::spawn(async move {
                if let Ok(emitter) = SignalEmitter::new(&conn, OBJECT_PATH) {
                    let _ = Manager::path_changed(&emitter, duty, &path, outcome, &detail).await;
                }
            });
        }
    }
}

/// STATUS= after an apply: its trigger and how many paths it changed, refused or failed.
fn status_line(trigger: &str, report: &Report) -> String {
    let changed = report
        .entries
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Changed { .. }))
        .count();
    let problems = report.entries.iter().filter(|e| e.outcome.is_problem()).count();
    format!("{trigger}: {changed} changed, {problems} refused or failed")
}

/// Whether a walk runs that began after what may have gone unseen (`unseen_since`: the bus
/// lost, or systemd followed again after a gap; `None` before any, when the startup's walk is
/// the one).
fn walk_began_since(running_since: Option<Instant>, unseen_since: Option<Instant>) -> bool {
    running_since.is_some_and(|started| unseen_since.is_none_or(|unseen| started >= unseen))
}

/// What a re-check applies (on the apply thread and a walk): the host duties but the sockets
/// (the fixer's). One
/// only for a new connection or subscription (`unit_cue` false) walks no volumes while a walk
/// runs that began since what may have gone unseen (`walk_began_since`; such as the
/// startup's, begun a moment before): it sees what started unseen, and every volume is not
/// walked twice.
fn recheck_duties(unit_cue: bool, walking: bool) -> DutySet {
    let duties = DutySet::HOST.without(Duty::Sockets);
    if !unit_cue && walking {
        duties.without(Duty::Volumes)
    } else {
        duties
    }
}

/// Whether a volume walk with `old` could differ from one with `new`: the volumes, and the
/// data root and subids files it reads (not where in the files they are written).
fn volumes_differ(old: &Config, new: &Config) -> bool {
    walked(old) != walked(new)
}

/// What a volume walk reads of a config, without where in the files it is written.
#[derive(PartialEq)]
struct WalkInput<'a> {
    volumes: Vec<VolumeInput<'a>>,
    data_root: Option<Option<&'a Path>>,
    subids: [&'a Path; 2],
}

/// Path, owner, top mode and tenant of one volume.
#[derive(PartialEq)]
struct VolumeInput<'a> {
    path: &'a Path,
    owner: (u32, u32),
    mode: Option<Mode>,
    tenant: Option<(&'a IdRef, Mapping)>,
}

fn walked(config: &Config) -> WalkInput<'_> {
    let volumes = config.volumes.iter().map(|v| VolumeInput {
        path: &v.path,
        owner: (v.uid, v.gid),
        mode: v.mode,
        tenant: v.tenant.as_ref().map(|t| (&t.name.value, t.mapping)),
    });
    WalkInput {
        volumes: volumes.collect(),
        data_root: config.docker.as_ref().map(|d| d.configured_data_root()),
        subids: [&config.subids.subuid_file, &config.subids.subgid_file],
    }
}

/// Waits until `due`, or forever.
async fn until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

async fn tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_sources(&[(PathBuf::from("/etc/nonrootd/nonrootd.toml"), text.into())]).unwrap()
    }

    /// A new subscription does not walk the volumes again while the startup's walk runs; a
    /// unit's cue does (queued after it).
    #[test]
    fn a_subscription_during_a_walk_does_not_walk_again() {
        assert!(!recheck_duties(false, true).contains(Duty::Volumes));
        assert!(recheck_duties(false, false).contains(Duty::Volumes));
        assert!(recheck_duties(true, true).contains(Duty::Volumes));
        assert!(!recheck_duties(true, false).contains(Duty::Sockets));
    }

    /// The first subscription to systemd follows the startup; a later one closes a gap in
    /// which a Docker start went unseen, as a lost bus does.
    #[tokio::test]
    async fn a_later_subscription_or_a_lost_bus_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let (units, _followed) = watch::channel(Vec::new());
        let state = dir.path().join("state");
        let mut daemon = Daemon::new(dir.path().join("n.toml"), state, config(""), units, None).unwrap();
        daemon.on_bus(vec![BusEvent::Subscribed("subscribed to systemd (:1.1)".into())]);
        assert_eq!(daemon.unseen_since, None);
        daemon.on_bus(vec![BusEvent::Subscribed("subscribed to systemd (:1.2)".into())]);
        let reexec = daemon.unseen_since.expect("a gap");
        daemon.on_bus(vec![BusEvent::Lost("gone".into())]);
        assert!(daemon.unseen_since.expect("a gap") >= reexec);
    }

    /// Only a walk that began after the gap saw what started in it.
    #[test]
    fn only_a_walk_begun_after_the_gap_counts() {
        let (before, after) = (Instant::now(), Instant::now() + Duration::from_secs(1));
        assert!(walk_began_since(Some(before), None), "the startup's walk");
        assert!(!walk_began_since(None, None));
        assert!(walk_began_since(Some(after), Some(before)));
        assert!(!walk_began_since(Some(before), Some(after)));
    }

    /// A reload that changes only what a walk does not read lets the walk go on.
    #[test]
    fn only_what_a_walk_reads_cancels_it_on_reload() {
        let volume = "[[volume]]\npath = \"/srv/data\"\nuid = 999\ngid = 999\n";
        let base = config(volume);
        let socket = format!("{volume}[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n");
        assert!(!volumes_differ(&base, &config(&socket)));
        assert!(volumes_differ(&base, &config(&volume.replace("999\n", "998\n"))));
        let files = format!("[subids]\nsubuid_file = \"/srv/subuid\"\n{volume}");
        assert!(volumes_differ(&base, &config(&files)));
        let root = format!("[docker]\ndata_root = \"/srv/docker\"\n{volume}");
        assert!(volumes_differ(&base, &config(&root)));
        // Only where the lines are changed.
        assert!(!volumes_differ(&base, &config(&format!("# a comment\n\n{volume}"))));
    }
}
