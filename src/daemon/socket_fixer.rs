//! The socket fixer: a thread of its own that waits on inotify for the parent directory of each
//! configured socket (not the socket itself, which Docker replaces) and re-applies a socket's
//! grants the moment its name is created, moved in or has its attributes changed. Nothing else
//! runs on this thread, so a re-created socket never waits behind bus traffic or another duty;
//! the event loop gets the report afterwards. A delete is not watched: there is nothing to fix
//! until the next create. A queue overflow re-applies every socket.
//!
//! Kept between events: a descriptor of each checked directory (the watch is placed on that
//! very inode), the lock file and the grant record ([`StateCache`]).
//!
//! The thread waits and writes new sockets' grants urgent (deadline scheduling, which it keeps
//! for everything else too; or real-time where that is refused, and normal priority for
//! everything else, [`Priority`]). The
//! rest of a new socket's work (log and report) waits [`REPORT_DELAY`] after its grant,
//! so that it does not compete for a CPU with the clients connecting to the new socket.
//!
//! The urgent path asks NSS nothing: configured names are looked up at normal priority and
//! remembered ([`RememberedIds`]). Reporting looks them up again; when an answer changed, the
//! early grant (the access the old socket had) is planned again right then, under the lock.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nonrootd_core::config::Config;
use nonrootd_core::duty::{Duty, DutySet};
use nonrootd_core::ids::IdResolver;
use nonrootd_core::report::Report;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::apply::{DOCKER_DAEMON_JSON, EarlyGrant, Engine, Request, StateCache, lookup_failed, record_unavailable};
use crate::host::walk::{check_directory, open_directory_beneath_root, same_inode};
use crate::host::{BeneathDirs, OpenError};
use crate::ids::RememberedIds;

use super::Backoff;
use super::realtime::{Confined, Priority};

/// How long an apply waits for the host-wide lock (held by a concurrent hook or CLI).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after a new socket's early grant its log and report wait (with those of
/// the events that follow meanwhile, its own attribute change among them): the clients that
/// wait for the socket connect meanwhile without the daemon, the journal and the bus taking
/// CPUs from them. An early grant is made only when the record in the file holds it, so a
/// crash in between loses nothing but the log line.
const REPORT_DELAY: Duration = Duration::from_millis(2);

/// After an apply that could not use the grant record, or where a name lookup failed, the
/// sockets are applied again after this, doubled each time up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A socket apply the fixer did, for the event loop's status book and signals.
pub struct Fixed {
    pub report: Report,
    pub trigger: String,
    /// The config it was done with (see [`SocketFixer::reconfigure`]).
    pub generation: u64,
}

enum Command {
    Reconfigure(Box<Config>, u64),
    /// Watch directories that were missing, then re-check every socket; the report goes to
    /// the answer too, if one waits.
    Recheck(String, Option<oneshot::Sender<Report>>),
}

/// The event loop's handle on the fixer thread; dropping it stops the thread.
pub struct SocketFixer {
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl SocketFixer {
    /// Starts the thread, watching the sockets of `config` and resolving its names with
    /// `ids`; reports go to `reports`. New sockets are granted urgent only when `confined`.
    pub fn spawn(
        config: Config,
        ids: Box<dyn IdResolver + Send>,
        state_dir: PathBuf,
        reports: UnboundedSender<Fixed>,
        confined: Option<Confined>,
    ) -> io::Result<SocketFixer> {
        let (fixer, mut handle) = Fixer::new(config, ids, state_dir, reports, confined)?;
        let thread = std::thread::Builder::new()
            .name("socket-fixer".into())
            .spawn(move || fixer.run())?;
        handle.thread = Some(thread);
        Ok(handle)
    }

    /// Watches the sockets of a new config; reports of applies with the old one carry an older
    /// `generation`.
    pub fn reconfigure(&mut self, config: Config, generation: u64) {
        self.send(Command::Reconfigure(Box::new(config), generation));
    }

    /// Watches directories that appeared since, and re-checks every socket.
    pub fn recheck(&mut self, trigger: String) {
        self.send(Command::Recheck(trigger, None));
    }

    /// [`recheck`](Self::recheck), answering with the report of the next apply of every socket
    /// (after a new config queued before it, with that config): all socket applies of the
    /// daemon run on this thread, one at a time, reported in order.
    pub fn apply_and_answer(&mut self, trigger: String) -> oneshot::Receiver<Report> {
        let (answer, report) = oneshot::channel();
        self.send(Command::Recheck(trigger, Some(answer)));
        report
    }

    /// Queues a command, then wakes the thread (in that order: woken first, it could find
    /// no command and sleep on it). Never blocks the loop: when the wake-up socket is full,
    /// bytes already wait there to wake the thread.
    fn send(&mut self, command: Command) {
        let queued = self.commands.send(command).is_ok();
        let woken = match self.wake.write(&[1]) {
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        if !queued || !woken {
            error!("the socket fixer thread is gone");
        }
    }
}

impl Drop for SocketFixer {
    fn drop(&mut self) {
        let _ = self.wake.shutdown(std::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's state.
struct Fixer {
    config: Config,
    /// The NSS answers for the names of `config`, for the urgent path.
    ids: RememberedIds,
    generation: u64,
    state_dir: PathBuf,
    cache: Option<StateCache>,
    watches: Watches,
    woken: UnixStream,
    commands: mpsc::Receiver<Command>,
    reports: UnboundedSender<Fixed>,
    confined: Option<Confined>,
    /// Sockets granted (or not) at once and not yet reported, in the order of their events,
    /// with the generation of the config they were granted with.
    granted: Vec<(PathBuf, EarlyGrant, u64)>,
    /// When to report them: [`REPORT_DELAY`] after the first.
    report_at: Option<Instant>,
    /// When to apply every socket again while the grant record is unavailable or a name
    /// lookup fails (no socket event may come to retry it).
    retry: Backoff,
    /// Who waits for the report of the next apply of every socket.
    answers: Vec<oneshot::Sender<Report>>,
}

impl Fixer {
    /// The thread's state, and the handle on it without the thread.
    fn new(
        config: Config,
        ids: Box<dyn IdResolver + Send>,
        state_dir: PathBuf,
        reports: UnboundedSender<Fixed>,
        confined: Option<Confined>,
    ) -> io::Result<(Fixer, SocketFixer)> {
        let watches = Watches::new(&socket_paths(&config))?;
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let (commands, received) = mpsc::channel();
        let fixer = Fixer {
            config,
            ids: RememberedIds::new(ids),
            generation: 0,
            state_dir,
            cache: None,
            watches,
            woken,
            commands: received,
            reports,
            confined,
            granted: Vec::new(),
            report_at: None,
            retry: Backoff::new(RETRY_FIRST, RETRY_MAX),
            answers: Vec::new(),
        };
        let handle = SocketFixer {
            commands,
            wake,
            thread: None,
        };
        Ok((fixer, handle))
    }

    /// Serves the inotify events read at once: grants the sockets they name; when events were
    /// lost (the queue overflowed), re-checks every socket.
    fn serve_events(&mut self, priority: &mut Priority) {
        // Urgent again after a reload (it ends at normal priority).
        priority.raise();
        match self.watches.read() {
            Ok(Some(Cue::Socket(paths))) => self.grant_new_sockets(paths, priority),
            Ok(Some(Cue::All)) => {
                self.report_granted(priority);
                // The lost events may have been a directory's move or removal.
                self.watches.revalidate();
                self.apply_all("inotify queue overflow".into());
            }
            Ok(None) => {}
            Err(e) => {
                priority.lower();
                error!("inotify failed: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    fn run(mut self) {
        if let Err(e) = open_cache(&mut self.cache, &self.state_dir) {
            error!("socket fixer: {e}");
        }
        learn_names(&self.ids, &self.config);
        let mut priority = Priority::request(self.confined.as_ref());
        loop {
            if self.report_at.is_none() {
                priority.raise();
            }
            let (events, woken) = match self.wait() {
                Ok(ready) => ready,
                Err(e) => {
                    priority.lower();
                    error!("socket fixer: poll failed: {e}");
                    self.report_granted(&mut priority);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            // A new config first: it must be in force before the next socket event is served
            // (an event caused by a reload's revocation must not be re-granted with the old
            // config). Re-checks of every socket last: a new socket must not wait for them.
            let mut rechecks = Vec::new();
            if woken {
                match self.take_commands(&mut priority) {
                    Some(queued) => rechecks = queued,
                    None => {
                        self.report_granted(&mut priority);
                        return;
                    }
                }
            }
            if events {
                self.serve_events(&mut priority);
            }
            if let Some(trigger) = super::batch_trigger(&rechecks) {
                self.report_granted(&mut priority);
                self.watches.revalidate();
                self.apply_all(trigger);
            }
            if self.report_at.is_some_and(|at| Instant::now() >= at) {
                self.report_granted(&mut priority);
            }
            if self.retry.take_due() {
                self.report_granted(&mut priority);
                self.apply_all("a retry (the grant record or a name lookup failed)".into());
            }
        }
    }

    /// Blocks until inotify has events or the handle wrote (or went away). While granted
    /// sockets wait to be reported, inotify is left unread until they are due: the events that
    /// follow a grant (its own attribute change first) would take a CPU from the clients.
    fn wait(&self) -> io::Result<(bool, bool)> {
        let mut fds = [
            PollFd::new(self.woken.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.watches.inotify.as_fd(), PollFlags::POLLIN),
        ];
        let polled = if self.report_at.is_some() {
            &mut fds[..1]
        } else {
            &mut fds[..]
        };
        let due = [self.report_at, self.retry.due()].into_iter().flatten().min();
        loop {
            // In whole milliseconds, rounded up: never woken before it is due.
            let timeout = match due {
                None => PollTimeout::NONE,
                Some(at) => {
                    let ms = at.saturating_duration_since(Instant::now()).as_micros().div_ceil(1000);
                    PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
                }
            };
            match poll(polled, timeout) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        Ok((polled.get(1).is_some_and(ready), ready(&polled[0])))
    }

    /// Serves a new config at once (at normal priority) and returns the queued re-checks;
    /// `None` once the handle is gone.
    fn take_commands(&mut self, priority: &mut Priority) -> Option<Vec<String>> {
        let mut buf = [0u8; 64];
        loop {
            match self.woken.read(&mut buf) {
                Ok(0) => return None,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
        let mut rechecks = Vec::new();
        loop {
            match self.commands.try_recv() {
                Ok(Command::Reconfigure(config, generation)) => {
                    // A reload also tries urgent scheduling again, should it have been refused.
                    priority.renew();
                    match Watches::new(&socket_paths(&config)) {
                        Ok(watches) => self.watches = watches,
                        Err(e) => error!("cannot set up inotify, keeping the old watches: {e}"),
                    }
                    self.config = *config;
                    self.generation = generation;
                    // Grants written with the old config are reported as written; one to plan
                    // again (an id it used changed) is planned with the new one. The old names are forgotten only after that:
                    // forgotten before, an id changed since the grant would pass as unchanged.
                    self.report_granted(priority);
                    self.ids.forget();
                    // Whatever was applied with the old config meanwhile is made right; this
                    // looks the new config's names up.
                    self.apply_all("reload".into());
                }
                Ok(Command::Recheck(trigger, answer)) => {
                    rechecks.push(trigger);
                    self.answers.extend(answer);
                }
                Err(mpsc::TryRecvError::Empty) => return Some(rechecks),
                Err(mpsc::TryRecvError::Disconnected) => return None,
            }
        }
    }

    /// Grants the sockets that just changed, still urgent; after an early grant they are
    /// logged and reported [`REPORT_DELAY`] later: a client waits only for the writes.
    fn grant_new_sockets(&mut self, sockets: BTreeSet<PathBuf>, priority: &mut Priority) {
        if self.cache.is_none() {
            // Opening and loading it takes a lock and reads a file: not urgent work.
            priority.lower();
        }
        let Ok(cache) = open_cache(&mut self.cache, &self.state_dir) else {
            // No state directory: every socket is reported failed, and retried.
            let changed: Vec<String> = sockets.iter().map(|s| format!("{} changed", s.display())).collect();
            return self.apply_all(changed.join(", "));
        };
        priority.raise();
        let host = BeneathDirs {
            dirs: &self.watches.dirs,
        };
        let engine = engine(&host, &self.ids);
        let mut written = false;
        for socket in sockets {
            let early = cache.grant_new_socket(&engine, &self.config, &socket);
            written |= early.written();
            self.granted.push((socket, early, self.generation));
        }
        priority.lower();
        if written || self.report_at.is_some() {
            self.report_at.get_or_insert_with(|| Instant::now() + REPORT_DELAY);
        } else {
            // Nothing written early (it needs the lock, or nothing is missing): no client
            // is connecting yet, or it waits for this very apply.
            self.report_granted(priority);
        }
    }

    /// Logs and reports the sockets granted since the last time (planning again one granted
    /// with an id that changed since), at normal priority.
    fn report_granted(&mut self, priority: &mut Priority) {
        priority.lower();
        self.report_at = None;
        let granted = std::mem::take(&mut self.granted);
        if granted.is_empty() {
            return;
        }
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        let answers_changed = self.ids.refresh();
        if answers_changed {
            info!("the id of a configured user or group name changed: planning every socket again");
        }
        let host = BeneathDirs {
            dirs: &self.watches.dirs,
        };
        let engine = engine(&host, &self.ids);
        let mut unavailable = false;
        for (socket, early, generation) in granted {
            let trigger = format!("{} changed", socket.display());
            let early = if answers_changed { early.outdated() } else { early };
            let applied = cache.finish_new_socket(&engine, &self.config, &socket, early, LOCK_TIMEOUT);
            unavailable |= record_unavailable(&applied, &self.state_dir) || lookup_failed(&applied);
            report(&self.reports, generation, applied, trigger);
        }
        // Only an apply of every socket ends the retries: these were some of them.
        if unavailable {
            self.retry_later();
        }
        // The other sockets have grants of the old answer too, and no event may come for them.
        if answers_changed {
            self.apply_all("the id of a configured user or group name changed".into());
        }
    }

    /// Applies the sockets duty to every socket, with names looked up again, and reports to
    /// the event loop; without a state directory, every socket is reported failed. Retries
    /// while the grant record is unavailable.
    fn apply_all(&mut self, trigger: String) {
        self.ids.refresh();
        let host = BeneathDirs {
            dirs: &self.watches.dirs,
        };
        let engine = engine(&host, &self.ids);
        let request = Request {
            duties: DutySet::NONE.with(Duty::Sockets),
            socket: None,
            dry_run: false,
        };
        let applied = match open_cache(&mut self.cache, &self.state_dir) {
            Ok(cache) => cache.apply(&engine, &self.config, &request, LOCK_TIMEOUT),
            Err(e) => engine.without_record(&self.config, &request, &self.state_dir, &e),
        };
        let unavailable = record_unavailable(&applied, &self.state_dir) || lookup_failed(&applied);
        // The report goes to the loop before any answer: the loop records it first.
        let answered = (!self.answers.is_empty()).then(|| applied.clone());
        report(&self.reports, self.generation, applied, trigger);
        for answer in self.answers.drain(..) {
            let _ = answer.send(answered.clone().unwrap_or_default());
        }
        match unavailable {
            true => self.retry_later(),
            false => self.retry.succeeded(),
        }
    }

    /// Schedules the next retry while the grant record is unavailable or a name lookup fails,
    /// backing off. A state directory that is gone or replaced is opened (made, and checked)
    /// again then; otherwise the cache stays.
    fn retry_later(&mut self) {
        if self.cache.as_ref().is_some_and(|cache| !cache.is_current()) {
            self.cache = None;
        }
        self.retry.failed();
    }
}

/// The engine on the fixer's kept directories and remembered names.
fn engine<'a>(host: &'a BeneathDirs<'a>, ids: &'a RememberedIds) -> Engine<'a, BeneathDirs<'a>> {
    Engine {
        host,
        ids,
        daemon_json: Path::new(DOCKER_DAEMON_JSON),
    }
}

/// Looks up the names of the sockets' grants, so that the urgent path finds them remembered.
fn learn_names(ids: &RememberedIds, config: &Config) {
    for socket in &config.sockets {
        for user in &socket.users {
            let _ = user.value.resolve_user(ids);
        }
        for group in &socket.groups {
            let _ = group.value.resolve_group(ids);
        }
    }
}

/// Sends an apply's report to the event loop.
fn report(reports: &UnboundedSender<Fixed>, generation: u64, report: Report, trigger: String) {
    let _ = reports.send(Fixed {
        report,
        trigger,
        generation,
    });
}

/// The state cache, opened on first use (a state directory that cannot be made yet is tried
/// again at the next apply) and loaded when it can be.
fn open_cache<'a>(cache: &'a mut Option<StateCache>, state_dir: &Path) -> Result<&'a mut StateCache, String> {
    match cache {
        Some(opened) => Ok(opened),
        empty => {
            let mut opened = StateCache::open(state_dir)?;
            // Not loaded yet (the lock is held, or the record is unreadable): the next apply,
            // which reports why, loads it. Not waited for: that apply (the startup's, at first)
            // waits for the lock itself, and READY=1 waits for that apply.
            let _ = opened.preload(Duration::ZERO);
            Ok(empty.insert(opened))
        }
    }
}

fn socket_paths(config: &Config) -> Vec<PathBuf> {
    config.sockets.iter().map(|s| s.path.clone()).collect()
}

/// What a batch of inotify events asks for.
#[derive(Debug, PartialEq, Eq)]
enum Cue {
    /// These sockets' names were touched.
    Socket(BTreeSet<PathBuf>),
    /// Events were lost (queue overflow): re-check every socket.
    All,
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// inotify watches on the sockets' directories, each placed through a descriptor from the safe
/// walk, which is kept for opening the sockets.
struct Watches {
    inotify: Inotify,
    sockets: Vec<PathBuf>,
    /// The configured directories each watch stands for (several spellings can share one).
    by_watch: HashMap<WatchDescriptor, Vec<PathBuf>>,
    /// A checked `O_PATH` descriptor of each watched directory.
    dirs: HashMap<PathBuf, OwnedFd>,
    /// Directories that were missing or refused when last tried.
    unwatched: BTreeSet<PathBuf>,
    buffer: Vec<u8>,
}

impl Watches {
    fn new(sockets: &[PathBuf]) -> io::Result<Watches> {
        let mut watches = Watches {
            inotify: Inotify::init()?,
            sockets: sockets.to_vec(),
            by_watch: HashMap::new(),
            dirs: HashMap::new(),
            unwatched: sockets
                .iter()
                .filter_map(|s| s.parent())
                .map(Path::to_path_buf)
                .collect(),
            buffer: vec![0; 16 * 1024],
        };
        watches.watch_missing();
        Ok(watches)
    }

    /// Drops kept directories that were removed or replaced since (with a descriptor held, a
    /// removal sends no event), then tries again to watch the missing or refused ones.
    fn revalidate(&mut self) {
        let stale: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|(dir, kept)| {
                let current = open_directory_beneath_root(dir);
                !current.is_ok_and(|(fd, _)| same_inode(&fd, kept)) || check_directory(kept, dir).is_err()
            })
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            warn!(dir = %dir.display(), "a socket directory was removed, replaced or became unsafe; watching again");
            self.forget(&dir);
        }
        self.watch_missing();
    }

    /// Stops using `dir`: its descriptor is closed and its watch removed once no other
    /// spelling needs it; it is tried again by [`Self::watch_missing`].
    fn forget(&mut self, dir: &Path) {
        self.dirs.remove(dir);
        let wd = self
            .by_watch
            .iter()
            .find(|(_, dirs)| dirs.iter().any(|d| d == dir))
            .map(|(wd, _)| wd.clone());
        if let Some(wd) = wd {
            let dirs = self.by_watch.get_mut(&wd).expect("just found");
            dirs.retain(|d| d != dir);
            if dirs.is_empty() {
                self.by_watch.remove(&wd);
                let _ = self.inotify.watches().remove(wd);
            }
        }
        self.unwatched.insert(dir.to_path_buf());
    }

    /// Tries again to watch directories that were missing or refused.
    fn watch_missing(&mut self) {
        for dir in std::mem::take(&mut self.unwatched) {
            let watched = open_directory_beneath_root(&dir).map_err(|e| match e {
                OpenError::Missing => "it does not exist".to_string(),
                OpenError::Refused(why) => why.to_string(),
                OpenError::Io(e) => e.to_string(),
            });
            let watched = watched.and_then(|(fd, _)| {
                // The magic link names the inode the walk checked, not whatever the path names now.
                let inode = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let wd = self.inotify.watches().add(&inode, MASK).map_err(|e| e.to_string())?;
                Ok((fd, wd))
            });
            match watched {
                Ok((fd, wd)) => {
                    debug!(dir = %dir.display(), "watching socket directory");
                    self.by_watch.entry(wd).or_default().push(dir.clone());
                    self.dirs.insert(dir, fd);
                }
                Err(why) => {
                    warn!(dir = %dir.display(), "cannot watch socket directory yet: {why}");
                    self.unwatched.insert(dir);
                }
            }
        }
    }

    /// Reads what is queued; everything readable at once is one batch, so a burst costs one
    /// apply per socket. `None`: nothing for a configured socket.
    fn read(&mut self) -> io::Result<Option<Cue>> {
        let mut touched = BTreeSet::new();
        let mut overflow = false;
        let mut lost = Vec::new();
        let events = match self.inotify.read_events(&mut self.buffer) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                overflow = true;
            } else if event.mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                lost.push(event.wd.clone());
            } else if event.name.is_none() && event.mask.contains(EventMask::ATTRIB) {
                // The directory's own mode or owner changed: no longer used if now unsafe.
                let dirs = self.by_watch.get(&event.wd).into_iter().flatten();
                let unsafe_now = dirs.filter_map(|dir| check_directory(self.dirs.get(dir)?, dir).err());
                if unsafe_now.count() > 0 {
                    lost.push(event.wd.clone());
                }
            } else if let (Some(name), Some(dirs)) = (event.name, self.by_watch.get(&event.wd)) {
                for dir in dirs {
                    let path = dir.join(name);
                    if self.sockets.contains(&path) {
                        touched.insert(path);
                    }
                }
            }
        }
        for wd in lost {
            for dir in self.by_watch.get(&wd).cloned().unwrap_or_default() {
                warn!(dir = %dir.display(), "a socket directory went away or became unsafe; watching again when it is back and safe");
                touched.extend(self.sockets.iter().filter(|s| s.parent() == Some(&dir)).cloned());
                self.forget(&dir);
            }
        }
        Ok(if overflow {
            Some(Cue::All)
        } else {
            (!touched.is_empty()).then_some(Cue::Socket(touched))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SystemIds;
    use nonrootd_core::acl::Perm;
    use nonrootd_core::ids::{Gid, Uid};
    use nonrootd_core::report::Outcome;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    /// Fields drop in order: the fixer's thread is joined before its directory is removed.
    struct Setup {
        root: PathBuf,
        fixer: SocketFixer,
        reports: UnboundedReceiver<Fixed>,
        _dir: tempfile::TempDir,
    }

    /// A config in `dir` granting the user "app" rw on each of `sockets`.
    pub(super) fn app_config(dir: &Path, sockets: &[&Path]) -> Config {
        let text: String = sockets
            .iter()
            .map(|sock| format!("[[socket]]\npath = \"{}\"\nusers = [\"app\"]\n", sock.display()))
            .collect();
        Config::from_sources(&[(dir.join("nonrootd.toml"), text)]).unwrap()
    }

    /// A fixer for `<tmp>/<socket>` granting uid 4321 rw, with its state in `<tmp>/state`.
    fn setup(socket: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let text = format!(
            "[[socket]]\npath = \"{}\"\nusers = [4321]\n",
            root.join(socket).display()
        );
        let config = Config::from_sources(&[(root.join("nonrootd.toml"), text)]).unwrap();
        let (tx, reports) = unbounded_channel();
        let fixer = SocketFixer::spawn(config, Box::new(SystemIds), root.join("state"), tx, None).unwrap();
        Setup {
            root,
            fixer,
            reports,
            _dir: dir,
        }
    }

    /// A fixer for `<tmp>/run/docker.sock` whose directory exists, is watched (after a
    /// re-check) and holds no socket yet; returns the directory too.
    async fn watching_an_empty_run_dir() -> (Setup, PathBuf) {
        let mut s = setup("run/docker.sock");
        let run = s.root.join("run");
        std::fs::create_dir(&run).unwrap();
        s.fixer.recheck("first".into());
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Missing);
        (s, run)
    }

    /// A fixer for `<tmp>/docker.sock` that granted a socket bound there once and saw its own
    /// attribute change; returns the socket's path and listener too.
    async fn granted_once() -> (Setup, PathBuf, UnixListener) {
        let mut s = setup("docker.sock");
        let sock = s.root.join("docker.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1.label(), "changed");
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Correct);
        (s, sock, listener)
    }

    fn granted(path: &Path) -> Perm {
        let acl = posix_acl::PosixACL::read_acl(path).unwrap();
        let named = acl.get(posix_acl::Qualifier::User(4321)).unwrap_or(0);
        Perm::from_bits(named & acl.get(posix_acl::Qualifier::Mask).unwrap_or(7))
    }

    async fn next_outcome(reports: &mut UnboundedReceiver<Fixed>) -> (String, Outcome) {
        let fixed = reports.recv().await.unwrap();
        let entry = fixed.report.entries.into_iter().next().unwrap();
        (fixed.trigger, entry.outcome)
    }

    #[tokio::test]
    async fn a_recreated_socket_and_an_attribute_change_are_fixed_on_the_thread() {
        let mut s = setup("docker.sock");
        let sock = s.root.join("docker.sock");
        std::fs::write(s.root.join("unrelated"), "").unwrap();
        let listener = UnixListener::bind(&sock).unwrap();
        let (trigger, outcome) = next_outcome(&mut s.reports).await;
        assert_eq!(trigger, format!("{} changed", sock.display()));
        assert_eq!(outcome.label(), "changed", "{outcome:?}");
        assert_eq!(granted(&sock), Perm::RW);
        // Our own write is an attribute change too: seen, and found correct.
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Correct);

        // Re-created: a new inode, fixed again from the cached record and directory.
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let _listener = UnixListener::bind(&sock).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1.label(), "changed");
        assert_eq!(granted(&sock), Perm::RW);
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Correct);

        // chmod 0600 clears the mask: repaired.
        std::fs::set_permissions(&sock, PermissionsExt::from_mode(0o600)).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1.label(), "changed");
        assert_eq!(granted(&sock), Perm::RW);
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Correct);
        let record = std::fs::read_to_string(s.root.join("state/grants.json")).unwrap();
        assert!(record.contains("\"user:4321\": \"rw-\""), "{record}");
        s.fixer.recheck("test".into());
        assert_eq!(
            next_outcome(&mut s.reports).await,
            ("test".to_string(), Outcome::Correct)
        );
    }

    /// The package's removal left its mark (and the daemon was not stopped): a re-created
    /// socket is not granted, and what nonrootd granted is revoked, early grants included.
    #[tokio::test]
    async fn while_the_package_is_being_removed_a_recreated_socket_is_not_granted() {
        let (mut s, sock, listener) = granted_once().await;
        std::fs::write(s.root.join("state/removing"), "").unwrap();
        let only_entry = |fixed: Fixed| {
            let mut entries: Vec<_> = fixed.report.entries.into_iter().filter(|e| e.path == sock).collect();
            assert_eq!(entries.len(), 1, "{entries:?}");
            entries.remove(0)
        };
        let refused = |entry: nonrootd_core::report::Entry| matches!(entry.outcome, Outcome::Refused { reason } if reason.contains("nonrootd is being removed"));
        // The socket that is there: a re-check revokes rather than grants.
        s.fixer.recheck("test".into());
        let revoked = only_entry(s.reports.recv().await.unwrap());
        assert_eq!(revoked.desired, "no grants (nonrootd is being removed)");
        assert_eq!(revoked.outcome.label(), "changed");
        assert_eq!(granted(&sock), Perm::NONE);
        let record = std::fs::read_to_string(s.root.join("state/grants.json")).unwrap();
        assert!(!record.contains("user:4321"), "{record}");
        // Its own attribute change, then a re-created one: nothing to revoke, nothing granted.
        assert!(refused(only_entry(s.reports.recv().await.unwrap())));
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let _listener = UnixListener::bind(&sock).unwrap();
        assert!(refused(only_entry(s.reports.recv().await.unwrap())));
        assert_eq!(granted(&sock), Perm::NONE);
    }

    /// A socket configured under two spellings (its directory and a symlink to it): each
    /// re-creation grants the first spelling's users and refuses the second, early or not.
    #[tokio::test]
    async fn the_second_spelling_of_a_recreated_socket_is_refused_and_the_first_granted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("run")).unwrap();
        std::os::unix::fs::symlink("run", root.join("varrun")).unwrap();
        let (first, second) = (root.join("run/docker.sock"), root.join("varrun/docker.sock"));
        let text = format!(
            "[[socket]]\npath = \"{}\"\nusers = [4321]\n\n[[socket]]\npath = \"{}\"\nusers = [4322]\n",
            first.display(),
            second.display()
        );
        let config = Config::from_sources(&[(root.join("nonrootd.toml"), text)]).unwrap();
        let (tx, mut reports) = unbounded_channel();
        let _fixer = SocketFixer::spawn(config, Box::new(SystemIds), root.join("state"), tx, None).unwrap();
        let user = |uid| {
            let acl = posix_acl::PosixACL::read_acl(&first).unwrap();
            acl.get(posix_acl::Qualifier::User(uid))
        };
        for round in 0..3 {
            let listener = UnixListener::bind(&first).unwrap();
            // Reports until both spellings were applied after the new socket's creation (a late
            // report of the last round may come first: the grant is read on the socket itself).
            let (mut granted, mut refused) = (false, false);
            while !(granted && refused) {
                let fixed = tokio::time::timeout(Duration::from_secs(5), reports.recv())
                    .await
                    .unwrap()
                    .unwrap();
                for entry in fixed.report.entries {
                    match entry.outcome {
                        Outcome::Changed { .. } | Outcome::Correct if entry.path == first => {
                            granted = user(4321) == Some(6);
                        }
                        Outcome::Missing if entry.path == first && round > 0 => {}
                        Outcome::Refused { reason } if entry.path == second => {
                            assert!(reason.contains("the same socket as"), "{reason}");
                            refused = true;
                        }
                        other => panic!("round {round}: {}: {other:?}", entry.path.display()),
                    }
                }
            }
            assert_eq!((user(4321), user(4322)), (Some(6), None), "round {round}");
            drop(listener);
            std::fs::remove_file(&first).unwrap();
            // The reports of the write's own event and of the removal, read before the next round
            // as a rule (one read in it is tolerated above).
            while tokio::time::timeout(Duration::from_millis(300), reports.recv())
                .await
                .is_ok()
            {}
        }
    }

    #[tokio::test]
    async fn a_socket_made_as_go_makes_them_is_granted_once_it_has_its_mode() {
        let (mut s, sock, listener) = granted_once().await;
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        // As Go's listeners (dockerd's own socket) do: born with mode 0000 (umask 0777), then
        // chmod 0660. Made elsewhere and moved in, to leave the test's umask alone.
        let staging = s.root.join("staging");
        std::fs::create_dir(&staging).unwrap();
        let _listener = UnixListener::bind(staging.join("docker.sock")).unwrap();
        std::fs::set_permissions(staging.join("docker.sock"), PermissionsExt::from_mode(0o000)).unwrap();
        std::fs::rename(staging.join("docker.sock"), &sock).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Missing);
        assert!(
            posix_acl::PosixACL::read_acl(&sock)
                .unwrap()
                .get(posix_acl::Qualifier::Mask)
                .is_none()
        );

        std::fs::set_permissions(&sock, PermissionsExt::from_mode(0o660)).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1.label(), "changed");
        assert_eq!(granted(&sock), Perm::RW);
        let acl = posix_acl::PosixACL::read_acl(&sock).unwrap();
        assert_eq!(
            acl.get(posix_acl::Qualifier::GroupObj),
            Some(6),
            "the owning group keeps rw"
        );
    }

    #[tokio::test]
    async fn an_early_grant_is_recorded_and_reported_also_when_the_fixer_stops_before_it_is_due() {
        let (s, sock, listener) = granted_once().await;
        // Re-created: granted at once from the record, recorded REPORT_DELAY later; the fixer
        // is stopped as soon as the grant is there.
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let _listener = UnixListener::bind(&sock).unwrap();
        let give_up = Instant::now() + Duration::from_secs(10);
        while granted(&sock) != Perm::RW {
            assert!(Instant::now() < give_up, "never granted");
            std::thread::sleep(Duration::from_micros(100));
        }
        let Setup {
            _dir,
            fixer,
            mut reports,
            ..
        } = s;
        drop(fixer);
        let (trigger, outcome) = next_outcome(&mut reports).await;
        assert_eq!(trigger, format!("{} changed", sock.display()));
        assert_eq!(outcome.label(), "changed", "{outcome:?}");
    }

    #[tokio::test]
    async fn a_directory_reached_through_a_root_owned_symlink_is_watched_at_its_target() {
        let mut s = setup("var/run/docker.sock");
        std::fs::create_dir_all(s.root.join("run")).unwrap();
        std::fs::create_dir(s.root.join("var")).unwrap();
        std::os::unix::fs::symlink("../run", s.root.join("var/run")).unwrap();
        s.fixer.recheck("docker.socket active".into());
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Missing);
        let _listener = UnixListener::bind(s.root.join("run/docker.sock")).unwrap();
        let (trigger, outcome) = next_outcome(&mut s.reports).await;
        assert_eq!(
            trigger,
            format!("{} changed", s.root.join("var/run/docker.sock").display())
        );
        assert_eq!(outcome.label(), "changed", "{outcome:?}");
        assert_eq!(granted(&s.root.join("run/docker.sock")), Perm::RW);
    }

    #[tokio::test]
    async fn a_new_config_is_applied_to_every_socket_before_the_next_event() {
        let (mut s, sock, _listener) = granted_once().await;
        let text = format!("[[socket]]\npath = \"{}\"\nusers = [1234]\n", sock.display());
        let config = Config::from_sources(&[(s.root.join("nonrootd.toml"), text)]).unwrap();
        s.fixer.reconfigure(config, 1);
        let fixed = s.reports.recv().await.unwrap();
        assert_eq!((fixed.trigger.as_str(), fixed.generation), ("reload", 1));
        assert_eq!(granted(&sock), Perm::NONE, "the old grant is revoked");
        let acl = posix_acl::PosixACL::read_acl(&sock).unwrap();
        assert_eq!(acl.get(posix_acl::Qualifier::User(1234)), Some(6));
    }

    /// The user "app" has the uid in `uid`; there are no groups. Counts the lookups made while
    /// `socket` exists without a named entry: only the urgent path could make those.
    struct App {
        uid: Arc<AtomicU32>,
        socket: PathBuf,
        urgent_lookups: Arc<AtomicUsize>,
    }

    impl IdResolver for App {
        fn user(&self, name: &str) -> Result<Option<Uid>, String> {
            let named = posix_acl::PosixACL::read_acl(&self.socket).map(|acl| {
                acl.entries()
                    .iter()
                    .any(|e| matches!(e.qual, posix_acl::Qualifier::User(_)))
            });
            if named.is_ok_and(|named| !named) {
                self.urgent_lookups.fetch_add(1, SeqCst);
            }
            Ok((name == "app").then_some(Uid(self.uid.load(SeqCst))))
        }
        fn group(&self, _: &str) -> Result<Option<Gid>, String> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn a_name_whose_uid_changed_is_granted_the_new_uid_when_the_socket_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let config = app_config(dir.path(), &[&sock]);
        let (uid, urgent_lookups) = (Arc::new(AtomicU32::new(4321)), Arc::new(AtomicUsize::new(0)));
        let (tx, mut reports) = unbounded_channel();
        let ids = Box::new(App {
            uid: uid.clone(),
            socket: sock.clone(),
            urgent_lookups: urgent_lookups.clone(),
        });
        let _fixer = SocketFixer::spawn(config, ids, dir.path().join("state"), tx, None).unwrap();
        let named = |uid| {
            posix_acl::PosixACL::read_acl(&sock)
                .unwrap()
                .get(posix_acl::Qualifier::User(uid))
        };
        let listener = UnixListener::bind(&sock).unwrap();
        assert_eq!(next_outcome(&mut reports).await.1.label(), "changed");
        assert_eq!(next_outcome(&mut reports).await.1, Outcome::Correct);
        assert_eq!(named(4321), Some(6));
        // "app" is made again with another uid, then the socket is re-created: granted at
        // once as the old socket was (the remembered answer, no lookup), planned again when
        // recorded.
        uid.store(4322, SeqCst);
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        urgent_lookups.store(0, SeqCst);
        let _listener = UnixListener::bind(&sock).unwrap();
        let first = reports.recv().await.unwrap().report.entries.remove(0);
        assert_eq!(
            (first.desired.as_str(), first.outcome.label()),
            ("user:4322:rw-", "changed")
        );
        let settled = async { while next_outcome(&mut reports).await.1 != Outcome::Correct {} };
        tokio::time::timeout(Duration::from_secs(10), settled).await.unwrap();
        assert_eq!((named(4322), named(4321)), (Some(6), None));
        assert_eq!(urgent_lookups.load(SeqCst), 0, "a lookup before the grant");
        let record = std::fs::read_to_string(dir.path().join("state/grants.json")).unwrap();
        assert!(
            record.contains("user:4322") && !record.contains("user:4321"),
            "{record}"
        );
    }

    #[test]
    fn a_reload_before_an_early_grant_is_recorded_plans_it_with_the_new_answer() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let config = app_config(dir.path(), &[&sock]);
        let uid = Arc::new(AtomicU32::new(4321));
        let ids = Box::new(App {
            uid: uid.clone(),
            socket: sock.clone(),
            urgent_lookups: Arc::default(),
        });
        let (tx, mut reports) = unbounded_channel();
        let (mut fixer, mut handle) = Fixer::new(config.clone(), ids, dir.path().join("state"), tx, None).unwrap();
        let mut priority = Priority::request(None);
        let listener = UnixListener::bind(&sock).unwrap();
        fixer.apply_all("first".into());
        assert_eq!(reports.try_recv().unwrap().report.entries[0].desired, "user:4321:rw-");
        // The uid changes, the socket is re-created and granted at once with the remembered
        // answer; a reload comes before the grant is recorded.
        uid.store(4322, SeqCst);
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let _listener = UnixListener::bind(&sock).unwrap();
        fixer.grant_new_sockets(BTreeSet::from([sock.clone()]), &mut priority);
        handle.reconfigure(config, 1);
        fixer.take_commands(&mut priority).unwrap();
        let recorded = reports.try_recv().unwrap();
        assert_eq!(recorded.trigger, format!("{} changed", sock.display()));
        assert_eq!(recorded.report.entries[0].desired, "user:4322:rw-");
    }

    /// A socket event met by an unreadable grant record is not lost: the fixer reports the
    /// failure and applies every socket again until the record can be read.
    #[tokio::test]
    async fn sockets_are_applied_again_once_the_grant_record_can_be_read() {
        let mut s = setup("docker.sock");
        let state = s.root.join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("grants.json"), "{ not json").unwrap();
        let sock = s.root.join("docker.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        let failed = s.reports.recv().await.unwrap();
        assert!(
            crate::apply::record_unavailable(&failed.report, &state),
            "{:?}",
            failed.report
        );
        assert_eq!(failed.report.entries[1].outcome.label(), "failed");
        assert_eq!(granted(&sock), Perm::NONE);
        std::fs::remove_file(state.join("grants.json")).unwrap();
        let retry = tokio::time::timeout(Duration::from_secs(10), s.reports.recv());
        let retried = retry.await.expect("no retry within 10 s").unwrap();
        assert_eq!(retried.trigger, "a retry (the grant record or a name lookup failed)");
        assert_eq!(
            retried.report.entries[0].outcome.label(),
            "changed",
            "{:?}",
            retried.report
        );
        assert_eq!(granted(&sock), Perm::RW);
    }

    /// "app" is uid 4321 once its first `failures` lookups have failed.
    struct Flaky {
        failures: usize,
        lookups: AtomicUsize,
    }

    impl IdResolver for Flaky {
        fn user(&self, _: &str) -> Result<Option<Uid>, String> {
            match self.lookups.fetch_add(1, SeqCst) < self.failures {
                true => Err("Input/output error".into()),
                false => Ok(Some(Uid(4321))),
            }
        }
        fn group(&self, _: &str) -> Result<Option<Gid>, String> {
            Ok(None)
        }
    }

    /// A name whose lookup fails is tried again, backing off, without another event.
    #[tokio::test]
    async fn a_failed_name_lookup_is_tried_again_without_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        let config = app_config(dir.path(), &[&sock]);
        let (tx, mut reports) = unbounded_channel();
        let ids = Flaky {
            failures: 2,
            lookups: AtomicUsize::new(0),
        };
        let mut fixer = SocketFixer::spawn(config, Box::new(ids), dir.path().join("state"), tx, None).unwrap();
        fixer.recheck("first".into());
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(give_up.into(), reports.recv()).await;
            let fixed = next.expect("not granted within 10 s").unwrap();
            if fixed.report.entries.iter().any(|e| e.outcome.label() == "changed") {
                assert_eq!(fixed.trigger, "a retry (the grant record or a name lookup failed)");
                break;
            }
        }
        assert_eq!(granted(&sock), Perm::RW);
    }

    /// A state directory removed while the daemon runs is made again at the retry.
    #[tokio::test]
    async fn a_state_directory_removed_meanwhile_is_made_again() {
        let (mut s, sock, listener) = granted_once().await;
        std::fs::remove_dir_all(s.root.join("state")).unwrap();
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let _listener = UnixListener::bind(&sock).unwrap();
        let mut fixed = false;
        let give_up = Instant::now() + Duration::from_secs(10);
        while !fixed {
            let next = tokio::time::timeout_at(give_up.into(), s.reports.recv()).await;
            let report = next.expect("not fixed within 10 s").unwrap().report;
            fixed = report
                .entries
                .iter()
                .any(|e| e.path == sock && e.outcome.label() == "changed");
        }
        assert_eq!(granted(&sock), Perm::RW);
        assert!(s.root.join("state/grants.json").exists());
    }

    /// Another socket recorded while the retries run does not end them: the socket that met
    /// the unreadable record is still applied.
    #[tokio::test]
    async fn a_socket_recorded_meanwhile_does_not_end_the_retries_of_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (a, b) = (root.join("a.sock"), root.join("b.sock"));
        let text = format!(
            "[[socket]]\npath = \"{}\"\nusers = [4321]\n[[socket]]\npath = \"{}\"\nusers = [4321]\n",
            a.display(),
            b.display()
        );
        let config = Config::from_sources(&[(root.join("nonrootd.toml"), text)]).unwrap();
        let state = root.join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("grants.json"), "{ not json").unwrap();
        let (tx, mut reports) = unbounded_channel();
        let fixer = SocketFixer::spawn(config, Box::new(SystemIds), state.clone(), tx, None).unwrap();
        let _a = UnixListener::bind(&a).unwrap();
        let failed = reports.recv().await.unwrap();
        assert!(crate::apply::record_unavailable(&failed.report, &state));
        std::fs::remove_file(state.join("grants.json")).unwrap();
        let _b = UnixListener::bind(&b).unwrap();
        // (Should the retry come before b is made, b's grant follows it.)
        let applied_again = tokio::time::timeout(Duration::from_secs(10), async {
            while (granted(&a), granted(&b)) != (Perm::RW, Perm::RW) {
                let _ = reports.recv().await;
            }
        });
        applied_again
            .await
            .expect("the first socket was never applied again (or the second never granted)");
        drop(fixer);
    }

    #[tokio::test]
    async fn a_directory_removed_and_made_again_is_watched_again_at_the_next_recheck() {
        let (mut s, run) = watching_an_empty_run_dir().await;
        // The kept descriptor keeps the old inode alive: its removal sends no event.
        std::fs::remove_dir(&run).unwrap();
        std::fs::create_dir(&run).unwrap();
        s.fixer.recheck("docker.socket active".into());
        let (trigger, _) = next_outcome(&mut s.reports).await;
        assert_eq!(trigger, "docker.socket active");
        let _listener = UnixListener::bind(run.join("docker.sock")).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1.label(), "changed");
        assert_eq!(granted(&run.join("docker.sock")), Perm::RW);
    }

    #[tokio::test]
    async fn a_directory_made_unsafe_after_it_was_watched_is_refused() {
        let (mut s, run) = watching_an_empty_run_dir().await;
        std::fs::set_permissions(&run, PermissionsExt::from_mode(0o777)).unwrap();
        let _listener = UnixListener::bind(run.join("docker.sock")).unwrap();
        let (_, outcome) = next_outcome(&mut s.reports).await;
        let Outcome::Refused { reason } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.starts_with(&format!("{}: ", run.display())), "{reason}");
        assert_eq!(granted(&run.join("docker.sock")), Perm::NONE);
    }

    #[tokio::test]
    async fn a_replaced_directory_is_watched_again_and_the_old_one_is_not_used() {
        let (mut s, run) = watching_an_empty_run_dir().await;
        std::fs::rename(&run, s.root.join("old")).unwrap();
        // Losing the directory re-checks its socket, which is now missing.
        assert_eq!(next_outcome(&mut s.reports).await.1, Outcome::Missing);
        // A socket in the moved-away directory is nobody's business.
        let _old = UnixListener::bind(s.root.join("old/docker.sock")).unwrap();
        std::fs::create_dir(&run).unwrap();
        s.fixer.recheck("docker.socket active".into());
        let (trigger, outcome) = next_outcome(&mut s.reports).await;
        assert_eq!((trigger.as_str(), outcome), ("docker.socket active", Outcome::Missing));
        let _new = UnixListener::bind(run.join("docker.sock")).unwrap();
        assert_eq!(next_outcome(&mut s.reports).await.1.label(), "changed");
        assert_eq!(granted(&run.join("docker.sock")), Perm::RW);
        assert_eq!(granted(&s.root.join("old/docker.sock")), Perm::NONE);
    }
}

/// The fixer driven step by step, without its thread: failed name lookups on its own paths,
/// an inotify queue overflow.
#[cfg(test)]
mod step_by_step {
    use super::tests::app_config;
    use super::*;
    use crate::apply::lookup_failed;
    use nonrootd_core::ids::{Gid, Uid};
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use tokio::sync::mpsc::unbounded_channel;

    /// "app" is the uid in the cell; u32::MAX: the lookup fails.
    struct Switch(Arc<AtomicU32>);
    impl IdResolver for Switch {
        fn user(&self, name: &str) -> Result<Option<Uid>, String> {
            match self.0.load(SeqCst) {
                u32::MAX => Err("Input/output error".into()),
                uid => Ok((name == "app").then_some(Uid(uid))),
            }
        }
        fn group(&self, _: &str) -> Result<Option<Gid>, String> {
            Ok(None)
        }
    }

    fn user(sock: &Path, uid: u32) -> Option<u32> {
        posix_acl::PosixACL::read_acl(sock)
            .unwrap()
            .get(posix_acl::Qualifier::User(uid))
    }

    /// The fixer remembers app = 4321; another process learned app = 4322 meanwhile (the
    /// record's answer); then NSS goes down and the socket is re-created. The early grant,
    /// made with the remembered answer, is planned again with the record's: 4321 is not kept.
    #[test]
    fn an_early_grant_with_a_stale_answer_is_planned_again_with_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let state = dir.path().join("state");
        let config = app_config(dir.path(), &[&sock]);
        let uid = Arc::new(AtomicU32::new(4321));
        let (tx, mut reports) = unbounded_channel();
        let (mut fixer, _handle) = Fixer::new(config, Box::new(Switch(uid.clone())), state.clone(), tx, None).unwrap();
        let mut priority = Priority::request(None);
        let listener = UnixListener::bind(&sock).unwrap();
        fixer.apply_all("first".into());
        while reports.try_recv().is_ok() {}
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let json = format!(
            "{{\"sockets\": {{\"{}\": {{\"user:4321\": \"rw-\"}}}}, \"names\": {{\"user:app\": \"user:4322\"}}}}",
            sock.display()
        );
        std::fs::write(state.join("grants.json"), json).unwrap();
        uid.store(u32::MAX, SeqCst);
        let _listener = UnixListener::bind(&sock).unwrap();
        fixer.grant_new_sockets(BTreeSet::from([sock.clone()]), &mut priority);
        fixer.report_granted(&mut priority);
        let mut failure_reported = false;
        while let Ok(fixed) = reports.try_recv() {
            failure_reported |= lookup_failed(&fixed.report);
        }
        assert_eq!((user(&sock, 4321), user(&sock, 4322)), (None, Some(6)));
        assert!(failure_reported && fixer.retry.due().is_some());
    }

    /// A changed answer found while reporting one new socket is applied to every socket: the
    /// others hold the old uid too, and no event may come for them.
    #[test]
    fn a_changed_id_is_applied_to_every_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let config = app_config(dir.path(), &[&a, &b]);
        let uid = Arc::new(AtomicU32::new(4321));
        let (tx, _reports) = unbounded_channel();
        let (mut fixer, _handle) = Fixer::new(
            config,
            Box::new(Switch(uid.clone())),
            dir.path().join("state"),
            tx,
            None,
        )
        .unwrap();
        let mut priority = Priority::request(None);
        let listener = UnixListener::bind(&a).unwrap();
        let _b = UnixListener::bind(&b).unwrap();
        fixer.apply_all("first".into());
        assert_eq!((user(&a, 4321), user(&b, 4321)), (Some(6), Some(6)));
        // app is renumbered; a is re-created.
        uid.store(4322, SeqCst);
        drop(listener);
        std::fs::remove_file(&a).unwrap();
        let _a = UnixListener::bind(&a).unwrap();
        fixer.grant_new_sockets(BTreeSet::from([a.clone()]), &mut priority);
        fixer.report_granted(&mut priority);
        assert_eq!((user(&a, 4321), user(&a, 4322)), (None, Some(6)));
        assert_eq!((user(&b, 4321), user(&b, 4322)), (None, Some(6)), "b planned again too");
    }

    /// A real queue overflow (more events than `fs.inotify.max_queued_events` before a read)
    /// loses the events after it, such as a socket's ACL taken away: every socket is checked
    /// again.
    #[test]
    fn an_overflowed_inotify_queue_has_every_socket_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let config = app_config(dir.path(), &[&sock]);
        let (tx, mut reports) = unbounded_channel();
        let ids = Box::new(Switch(Arc::new(AtomicU32::new(4321))));
        let (mut fixer, _handle) = Fixer::new(config, ids, dir.path().join("state"), tx, None).unwrap();
        let mut priority = Priority::request(None);
        let _listener = UnixListener::bind(&sock).unwrap();
        fixer.apply_all("first".into());
        assert_eq!(user(&sock, 4321), Some(6));
        // The events so far (the grant's own among them) are served: none is left to re-check
        // the socket.
        for _ in 0..4 {
            fixer.serve_events(&mut priority);
        }
        let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if max > 100_000 {
            eprintln!("skipped: fs.inotify.max_queued_events is {max}; overflowing it takes too many files");
            return;
        }
        // One event each (IN_CREATE; names differ, so none merge): the queue overflows.
        for n in 0..=max {
            std::fs::File::create(dir.path().join(format!("f{n}"))).unwrap();
        }
        let removed = std::process::Command::new("setfacl")
            .arg("-b")
            .arg(&sock)
            .status()
            .unwrap();
        assert!(removed.success());
        assert_eq!(user(&sock, 4321), None);
        // Everything queued is read (a buffer at a time) and served.
        for _ in 0..=max {
            fixer.serve_events(&mut priority);
        }
        assert_eq!(user(&sock, 4321), Some(6));
        let triggers: Vec<String> = std::iter::from_fn(|| reports.try_recv().ok())
            .map(|fixed| fixed.trigger)
            .collect();
        assert!(triggers.iter().any(|t| t == "inotify queue overflow"), "{triggers:?}");
    }

    /// A retry stays where it is until due, only its own apply schedules the next (doubling to
    /// 60 s), and success ends it.
    #[test]
    fn retries_back_off_and_are_not_put_off() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let config = app_config(dir.path(), &[&sock]);
        let uid = Arc::new(AtomicU32::new(u32::MAX));
        let (tx, _reports) = unbounded_channel();
        let (mut fixer, _handle) = Fixer::new(
            config,
            Box::new(Switch(uid.clone())),
            dir.path().join("state"),
            tx,
            None,
        )
        .unwrap();
        let _listener = UnixListener::bind(&sock).unwrap();
        fixer.apply_all("first".into());
        let first = fixer.retry.due().unwrap();
        assert_eq!(fixer.retry.waited, Some(RETRY_FIRST));
        fixer.apply_all("a re-check".into());
        assert_eq!(fixer.retry.due(), Some(first), "a re-check does not move it");
        for expect in [2, 4, 8, 16, 32, 60, 60] {
            fixer.retry.due = None; // as take_due does when it is due
            fixer.apply_all("a retry".into());
            assert_eq!(fixer.retry.waited, Some(Duration::from_secs(expect)));
        }
        uid.store(4321, SeqCst);
        fixer.apply_all("a re-check".into());
        assert_eq!((fixer.retry.due(), fixer.retry.waited), (None, None));
    }
}
