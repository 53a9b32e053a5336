//! The engine: for each duty, observe the host, plan with `nonrootd_core`, execute through a
//! [`Host`], verify, and report per path. A refused or failed path never stops the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nonrootd_core::acl::{Grants, Perm, Qualifier, describe_change, plan_grants, shortfalls};
use nonrootd_core::config::{Config, DOCKER_DATA_ROOT, DmiAccess, DockerConfig, SocketConfig};
use nonrootd_core::duty::{Duty, DutySet};
use nonrootd_core::ids::{Gid, IdRef, IdResolver, Unresolved};
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::{FileKind, check_target, plan_attrs};
use nonrootd_core::report::{Outcome, Report};
use tracing::{info, warn};

use crate::host::{Host, OpenError, Opened};
use crate::lock::{ApplyLock, LockFile};
use crate::message_id;
use crate::state::{GrantRecord, HeldRecord, RecordStamp};

/// Docker's own config, where `data-root` may be set.
pub const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// The two files go-smbios (and dmidecode) read.
pub const DMI_FILES: [&str; 2] = ["DMI", "smbios_entry_point"];

/// What to apply.
#[derive(Clone, Debug)]
pub struct Request {
    pub duties: DutySet,
    /// Only this socket (an inotify event in its directory); `None`: every configured socket.
    pub socket: Option<PathBuf>,
    pub dry_run: bool,
}

impl Request {
    /// Whether the request covers the socket at `path`.
    fn covers(&self, path: &Path) -> bool {
        self.socket.as_deref().is_none_or(|only| only == path)
    }
}

/// The data root: the config's, else `data-root` from Docker's daemon.json, else the default.
/// A daemon.json that cannot be read or understood is an error naming it: the default could
/// be the wrong tree (Docker itself refuses to start with such a file).
pub fn data_root(configured: Option<&Path>, daemon_json: &Path) -> Result<PathBuf, String> {
    if let Some(root) = configured {
        return Ok(root.to_path_buf());
    }
    Ok(read_daemon_json(daemon_json)?.data_root)
}

/// Where Docker keeps its images: the data root, unless daemon.json sets `userns-remap` (then
/// they are in a `UID.GID` directory below it, which the config must name as the data root).
fn image_root(configured: Option<&Path>, daemon_json: &Path) -> Result<PathBuf, Outcome> {
    let json = match read_daemon_json(daemon_json) {
        Ok(json) => json,
        // A configured root does without daemon.json.
        Err(error) => return configured.map(Path::to_path_buf).ok_or(Outcome::Failed { error }),
    };
    match (json.userns_remap, configured) {
        (None, None) => Ok(json.data_root),
        (None, Some(root)) => Ok(root.to_path_buf()),
        // Naming the remapped root answers the remap; naming the data root itself does not.
        (Some(_), Some(root)) if root != json.data_root => Ok(root.to_path_buf()),
        (Some(remap), _) => Err(Outcome::Refused {
            reason: format!(
                "{} sets \"userns-remap\": {remap:?}: Docker keeps its images in {}/UID.GID/image (the remapped root's first subordinate ids); name that directory as [docker] data_root",
                daemon_json.display(),
                json.data_root.display()
            ),
        }),
    }
}

/// What nonrootd reads of Docker's daemon.json.
struct DaemonJson {
    data_root: PathBuf,
    userns_remap: Option<String>,
}

/// Reads daemon.json as dockerd does: a missing, empty or blank file (a UTF-8 byte order mark
/// ignored) sets nothing, and an empty or null value is unset. `data-root` is cleaned as Go's
/// `filepath.Clean` does (`..` taken away by name, as Docker does before it follows links).
fn read_daemon_json(daemon_json: &Path) -> Result<DaemonJson, String> {
    let default = DaemonJson {
        data_root: PathBuf::from(DOCKER_DATA_ROOT),
        userns_remap: None,
    };
    let unknown = |why: String| format!("{}: {why}, so Docker's data root is unknown", daemon_json.display());
    let bytes = match std::fs::read(daemon_json) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(default),
        Err(e) => return Err(unknown(format!("cannot read it ({e})"))),
    };
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    if text.trim_ascii().is_empty() {
        return Ok(default);
    }
    let json: serde_json::Value = serde_json::from_slice(text).map_err(|e| unknown(format!("not valid JSON ({e})")))?;
    let set = |key: &str| json.get(key).filter(|v| !v.is_null() && v.as_str() != Some(""));
    let data_root = match set("data-root") {
        None => default.data_root,
        Some(serde_json::Value::String(root)) if Path::new(root).is_absolute() => clean(Path::new(root)),
        Some(other) => return Err(unknown(format!("\"data-root\" is {other}, not an absolute path"))),
    };
    let userns_remap = set("userns-remap").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    Ok(DaemonJson {
        data_root,
        userns_remap,
    })
}

/// An absolute path with `.`, `..` and repeated slashes taken away by name.
fn clean(path: &Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for part in path.components() {
        match part {
            std::path::Component::Normal(name) => clean.push(name),
            std::path::Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean
}

/// Saves the grant record before a write grants bits it does not hold yet, so that a crash
/// or a failed save after the write cannot leave a grant of nonrootd's unrecorded (nothing
/// would ever revoke it). `None` where nothing is written or recorded (dry runs).
pub type SaveAhead<'a> = Option<&'a mut dyn FnMut(&GrantRecord) -> Result<(), String>>;

/// Applies host duties; `record` is what nonrootd granted before and is updated in place.
pub struct Engine<'a, H: Host> {
    pub host: &'a H,
    pub ids: &'a dyn IdResolver,
    pub daemon_json: &'a Path,
}

impl<H: Host> Engine<'_, H> {
    pub fn apply(&self, config: &Config, request: &Request, record: &mut GrantRecord, save_ahead: SaveAhead) -> Report {
        let mut report = Report::default();
        if request.duties.contains(Duty::Docker)
            && let Some(docker) = &config.docker
        {
            self.apply_docker(docker, request.dry_run, &mut report);
        }
        if request.duties.contains(Duty::Sockets) {
            self.apply_sockets(config, request, record, save_ahead, &mut report);
        }
        if request.duties.contains(Duty::Dmi)
            && let Some(dmi) = &config.dmi
        {
            for name in DMI_FILES {
                let (group, mode) = match &dmi.access {
                    DmiAccess::Group(group) => match group.value.resolve_group(self.ids) {
                        Ok(gid) => (Some(gid), 0o440),
                        Err(why) => {
                            let outcome = why.outcome(&group.origin.to_string());
                            report.push(Duty::Dmi, dmi.tables_dir.join(name), "group-readable", outcome);
                            continue;
                        }
                    },
                    DmiAccess::WorldReadable => (None, 0o444),
                };
                let mode = Mode::from_st_mode(mode);
                let path = dmi.tables_dir.join(name);
                let outcome = self.apply_attrs(&path, FileKind::Regular, group, mode, request.dry_run);
                let desired = match group {
                    Some(gid) => format!("group {gid}, mode {mode}"),
                    None => format!("mode {mode}"),
                };
                report.push(Duty::Dmi, path, desired, outcome);
            }
        }
        log_entries(&report);
        report
    }

    /// For a socket re-created a moment ago: grants `socket`'s users and groups at once when
    /// `previous` (the record in the file, under the lock) already holds exactly them and the
    /// write only adds (see [`only_adds_to`](nonrootd_core::acl::AclPlan::only_adds_to)).
    /// Returns the report entry when the ACL was written; `None` leaves everything to the
    /// apply under the lock.
    fn grant_early(&self, socket: &SocketConfig, record: &GrantRecord) -> Option<Report> {
        let mut report = Report::default();
        let previous = record.sockets.get(&socket.path).cloned().unwrap_or_default();
        let Desired {
            grants: desired,
            complete,
            ..
        } = self.desired_grants(socket, &record.names, &mut report);
        // Only grants the record already has: the write then needs no change of the record.
        let refused = report
            .entries
            .iter()
            .any(|e| matches!(e.outcome, Outcome::Refused { .. }));
        if refused || !complete || previous != desired {
            return None;
        }
        // Only bits the record holds are written here: nothing to save ahead.
        let applied = self.apply_grants(&socket.path, &desired, &previous, Writes::OnlyAdding, true, &mut |_| {
            Ok(())
        });
        if !applied.written {
            return None;
        }
        report.push(Duty::Sockets, &socket.path, describe_grants(&desired), applied.outcome);
        Some(report)
    }

    fn apply_docker(&self, docker: &DockerConfig, dry_run: bool, report: &mut Report) {
        let root = match image_root(docker.configured_data_root(), self.daemon_json) {
            Ok(root) => root,
            Err(outcome) => {
                report.push(Duty::Docker, self.daemon_json, "the data root", outcome);
                return;
            }
        };
        for dir in &docker.image_dirs {
            let path = root.join(dir);
            let mode = docker.image_dir_mode;
            let outcome = self.apply_attrs(&path, FileKind::Directory, None, mode, dry_run);
            report.push(Duty::Docker, path, format!("mode {mode}"), outcome);
        }
    }

    /// Opens `path` and checks it is a root-owned `kind` with one link, or says what it is.
    fn open_target(&self, path: &Path, kind: FileKind) -> Result<Opened<H::Handle>, Outcome> {
        let opened = self.host.open(path).map_err(|e| match e {
            OpenError::Missing => Outcome::Missing,
            OpenError::Refused(r) => Outcome::Refused { reason: r.0 },
            OpenError::Io(e) => Outcome::Failed {
                error: format!("open: {e}"),
            },
        })?;
        check_target(&opened.stat, kind).map_err(|r| Outcome::Refused { reason: r.0 })?;
        Ok(opened)
    }

    /// Sets the group (when given) and exact mode of one file, then checks the result.
    fn apply_attrs(&self, path: &Path, kind: FileKind, group: Option<Gid>, mode: Mode, dry_run: bool) -> Outcome {
        let opened = match self.open_target(path, kind) {
            Ok(opened) => opened,
            Err(outcome) => return outcome,
        };
        match crate::host::mode_refusal(self.host, &opened.handle) {
            Ok(None) => {}
            Ok(Some(refusal)) => return Outcome::Refused { reason: refusal.0 },
            Err(e) => {
                return Outcome::Failed {
                    error: failed("read ACL", &e, path),
                };
            }
        }
        let Some(change) = plan_attrs(&opened.stat, group, mode) else {
            return Outcome::Correct;
        };
        if dry_run {
            return Outcome::WouldChange {
                change: change.to_string(),
            };
        }
        let file = &opened.handle;
        let result = (|| {
            if let Some((_, gid)) = change.group {
                // Bits the new mode drops go first, so that the new group never has the old
                // group's access, not even between the two calls.
                let narrowed = Mode::from_st_mode(opened.stat.mode.bits() & mode.bits());
                if narrowed != opened.stat.mode {
                    self.host
                        .set_mode(file, narrowed)
                        .map_err(|e| failed("chmod", &e, path))?;
                }
                self.host.set_group(file, gid).map_err(|e| failed("chown", &e, path))?;
            }
            // Always after chown, which may clear set-id bits.
            if change.mode.is_some() || change.group.is_some() {
                self.host.set_mode(file, mode).map_err(|e| failed("chmod", &e, path))?;
            }
            let after = self.host.stat(file).map_err(|e| format!("stat: {e}"))?;
            match plan_attrs(&after, group, mode) {
                None => Ok(()),
                Some(left) => Err(format!("verification failed: still needs {left}")),
            }
        })();
        match result {
            Ok(()) => Outcome::Changed {
                change: change.to_string(),
            },
            Err(error) => Outcome::Failed { error },
        }
    }

    fn apply_sockets(
        &self,
        config: &Config,
        request: &Request,
        record: &mut GrantRecord,
        mut save_ahead: SaveAhead,
        report: &mut Report,
    ) {
        // Grants on sockets that are no longer configured are revoked first: one that is
        // another spelling of a configured socket is then granted again below.
        let stale: Vec<PathBuf> = record
            .sockets
            .keys()
            .filter(|path| request.covers(path) && !config.sockets.iter().any(|s| &s.path == *path))
            .cloned()
            .collect();
        for path in stale {
            let previous = record.sockets[&path].clone();
            // A revocation grants nothing: nothing to save ahead.
            let Applied { outcome, granted, .. } = self.apply_grants(
                &path,
                &Grants::new(),
                &previous,
                Writes::of(request),
                false,
                &mut |_| Ok(()),
            );
            if granted.is_some() || outcome == Outcome::Missing {
                record.sockets.remove(&path);
            }
            report.push(Duty::Sockets, path, "no grants (no longer configured)", outcome);
        }
        let after_event = request.socket.is_some();
        let covered = config.sockets.iter().filter(|s| request.covers(&s.path));
        let mut spellings: Vec<_> = covered.map(|s| (s, self.earlier_spelling(config, s))).collect();
        // What was recorded under a later spelling (an older nonrootd applied each) becomes the
        // first spelling's: it is on that socket, to be kept or revoked as the first wants, in
        // this apply (an event of the later spelling alone applies the first one too).
        let mut handed_over = Vec::new();
        for (socket, first) in &spellings {
            if let Some(first) = first
                && let Some(recorded) = record.sockets.remove(&socket.path)
            {
                claim_bits(&mut record.sockets, &first.path, &recorded);
                handed_over.push(*first);
            }
        }
        for first in handed_over {
            if !spellings.iter().any(|(s, _)| s.path == first.path) {
                spellings.push((first, None));
            }
        }
        for (socket, first) in spellings {
            let previous = record.sockets.get(&socket.path).cloned().unwrap_or_default();
            let Desired {
                grants: desired,
                answers,
                forgotten,
                ..
            } = self.desired_grants(socket, &record.names, report);
            if !request.dry_run {
                record.names.extend(answers);
                for name in forgotten {
                    record.names.remove(&name);
                }
            }
            if let Some(first) = first {
                let reason = format!(
                    "{}: the same socket as {} (configured at {}); configure it once, with all its users and groups",
                    socket.origin,
                    first.path.display(),
                    first.origin
                );
                report.push(
                    Duty::Sockets,
                    &socket.path,
                    describe_grants(&desired),
                    Outcome::Refused { reason },
                );
                continue;
            }
            let mut claim = |granted: &Grants| match save_ahead.as_deref_mut() {
                Some(save) => {
                    let mut ahead = record.clone();
                    claim_bits(&mut ahead.sockets, &socket.path, granted);
                    save(&ahead)
                }
                None => Ok(()),
            };
            let writes = Writes::of(request);
            let Applied { outcome, granted, .. } =
                self.apply_grants(&socket.path, &desired, &previous, writes, after_event, &mut claim);
            if let Some(granted) = granted {
                record.sockets.insert(socket.path.clone(), granted);
            }
            report.push(Duty::Sockets, &socket.path, describe_grants(&desired), outcome);
        }
        // Answers for names no socket is configured with any more are forgotten.
        if request.socket.is_none() && !request.dry_run {
            let configured = |key: &String| {
                config.sockets.iter().any(|s| {
                    let users = s.users.iter().map(|u| ("user", &u.value));
                    let groups = s.groups.iter().map(|g| ("group", &g.value));
                    users
                        .chain(groups)
                        .any(|(kind, name)| name_key(kind, name).as_ref() == Some(key))
                })
            };
            record.names.retain(|key, _| configured(key));
        }
    }

    /// The configured socket before `socket` that is the same file now (another spelling of its
    /// path, such as `/var/run/docker.sock` for `/run/docker.sock`). `socket` is then refused:
    /// each spelling is planned against its own record, so one would revoke what the other
    /// granted.
    fn earlier_spelling<'c>(&self, config: &'c Config, socket: &SocketConfig) -> Option<&'c SocketConfig> {
        let index = config.sockets.iter().position(|s| s.path == socket.path)?;
        if index == 0 {
            return None;
        }
        let id = self.host.open(&socket.path).ok()?.stat.id;
        config.sockets[..index]
            .iter()
            .find(|earlier| self.host.open(&earlier.path).is_ok_and(|o| o.stat.id == id))
    }

    /// `request` without the grant record, which could not be locked, read or saved (`error`):
    /// the other duties are applied, and the record and every socket the request covers fail,
    /// untouched: a grant that nonrootd cannot record could never be revoked.
    pub fn without_record(&self, config: &Config, request: &Request, state_dir: &Path, error: &str) -> Report {
        let mut report = self.other_duties(config, request);
        push_record_failure(&mut report, state_dir, Err(error.to_string()));
        let error = "not applied: nonrootd's record of its grants is unavailable";
        self.push_untouched_sockets(&mut report, config, request, || Outcome::Failed { error: error.into() });
        report
    }

    /// The package is being removed (`mark` exists; under the lock, or as a dry run): what nonrootd
    /// granted on the request's sockets is revoked, as `nonrootctl revoke` does, and none is
    /// granted again by a hook or the daemon before the files are gone; the other duties are
    /// applied.
    fn while_removing(
        &self,
        config: &Config,
        request: &Request,
        record: &mut GrantRecord,
        save: SaveAhead<'_>,
        mark: &Path,
    ) -> Report {
        let mut report = self.other_duties(config, request);
        let no_sockets = Config {
            sockets: Vec::new(),
            ..config.clone()
        };
        let sockets = Request {
            duties: DutySet::NONE.with(Duty::Sockets),
            ..request.clone()
        };
        let mut revoked = self.apply(&no_sockets, &sockets, record, save);
        for entry in &mut revoked.entries {
            entry.desired = "no grants (nonrootd is being removed)".into();
        }
        // One entry per socket: revoked, or refused where there was nothing to revoke.
        let reason = format!("not granted: nonrootd is being removed ({})", mark.display());
        let mut refused = Report::default();
        self.push_untouched_sockets(&mut refused, config, request, || Outcome::Refused {
            reason: reason.clone(),
        });
        refused
            .entries
            .retain(|e| !revoked.entries.iter().any(|r| r.path == e.path));
        report.entries.extend(refused.entries);
        report.entries.extend(revoked.entries);
        report
    }

    /// Applies `request` to the record (under the lock, or as a dry run), or revokes while the
    /// package is being removed ([`while_removing`](Self::while_removing)).
    fn apply_locked(
        &self,
        config: &Config,
        request: &Request,
        state_dir: &Path,
        record: &mut GrantRecord,
        save: SaveAhead<'_>,
    ) -> Report {
        if !request.duties.contains(Duty::Sockets) {
            return self.apply(config, request, record, save);
        }
        match crate::state::removal_mark(state_dir) {
            Ok(Some(mark)) => self.while_removing(config, request, record, save, &mark),
            Ok(None) => self.apply(config, request, record, save),
            // Granting or revoking would be a guess: the sockets stay as they are, failed as
            // when the record is unavailable (the socket fixer tries again).
            Err(e) => {
                let error = format!("cannot tell whether the package is being removed: {e}");
                self.without_record(config, request, state_dir, &error)
            }
        }
    }

    /// Applies the duties of `request` other than the sockets.
    fn other_duties(&self, config: &Config, request: &Request) -> Report {
        let others = Request {
            duties: request.duties.without(Duty::Sockets),
            ..request.clone()
        };
        self.apply(config, &others, &mut GrantRecord::default(), None)
    }

    /// An entry with `outcome` for each socket of `request`, which is left as it is.
    fn push_untouched_sockets(
        &self,
        report: &mut Report,
        config: &Config,
        request: &Request,
        outcome: impl Fn() -> Outcome,
    ) {
        let mut sockets = Report::default();
        for socket in config.sockets.iter().filter(|s| request.covers(&s.path)) {
            let desired = self.desired_grants(socket, &BTreeMap::new(), &mut sockets).grants;
            sockets.push(Duty::Sockets, &socket.path, describe_grants(&desired), outcome());
        }
        log_entries(&sockets);
        report.entries.extend(sockets.entries);
    }

    /// The configured entries that resolve; the others are reported as refused. A name whose
    /// lookup fails is reported as failed and granted as the id the record last knew for it
    /// (`known`), so that an outage of the user database neither revokes its grant nor keeps
    /// anything else; without a known id nothing is granted for it. Returns the grants, the
    /// answers to remember, and whether every entry has an id.
    fn desired_grants(
        &self,
        socket: &SocketConfig,
        known: &BTreeMap<String, Qualifier>,
        report: &mut Report,
    ) -> Desired {
        let mut desired = Desired {
            grants: Grants::new(),
            answers: Vec::new(),
            forgotten: Vec::new(),
            complete: true,
        };
        let users = socket.users.iter().map(|user| {
            let uid = user.value.resolve_user(self.ids).map(Qualifier::User);
            ("user", &user.value, &user.origin, uid)
        });
        let groups = socket.groups.iter().map(|group| {
            let gid = group.value.resolve_group(self.ids).map(Qualifier::Group);
            ("group", &group.value, &group.origin, gid)
        });
        for (kind, name, origin, who) in users.chain(groups) {
            let key = name_key(kind, name);
            let outcome = match who {
                Ok(who) => {
                    desired.grants.insert(who, socket.access);
                    desired.answers.extend(key.map(|key| (key, who)));
                    continue;
                }
                Err(Unresolved::Invalid(why)) => {
                    // A name that no longer exists has no last id to be granted as.
                    desired.forgotten.extend(key);
                    Outcome::Refused {
                        reason: format!("{origin}: {why}"),
                    }
                }
                Err(Unresolved::LookupFailed(why)) => match key.and_then(|key| known.get(&key)) {
                    Some(last) => {
                        desired.grants.insert(*last, socket.access);
                        Outcome::Failed {
                            error: format!("{origin}: {why}; {LOOKUP_FAILED} {last}, its last known id"),
                        }
                    }
                    None => {
                        desired.complete = false;
                        Outcome::Failed {
                            error: format!("{origin}: {why}; {LOOKUP_FAILED} nothing: no id is known for it"),
                        }
                    }
                },
            };
            report.push(Duty::Sockets, &socket.path, format!("{kind} {name}"), outcome);
        }
        desired
    }

    /// Grants `desired` on a socket and revokes stale grants of `previous`; a write that
    /// grants bits `previous` lacks is made only once `claim` recorded them. Right after an
    /// event on it, a socket its creator has yet to give a mode is left for the event of that
    /// change (see [`awaits_its_mode`](nonrootd_core::acl::Acl::awaits_its_mode)).
    fn apply_grants(
        &self,
        path: &Path,
        desired: &Grants,
        previous: &Grants,
        writes: Writes,
        after_event: bool,
        claim: &mut dyn FnMut(&Grants) -> Result<(), String>,
    ) -> Applied {
        let not_applied = |outcome| Applied {
            outcome,
            granted: None,
            written: false,
        };
        let opened = match self.open_target(path, FileKind::Socket) {
            Ok(opened) => opened,
            Err(outcome) => return not_applied(outcome),
        };
        let file = &opened.handle;
        let observed = match self.host.read_acl(file) {
            Ok(acl) => acl,
            Err(e) => {
                let error = format!("read ACL: {e}");
                return not_applied(Outcome::Failed { error });
            }
        };
        if after_event && observed.awaits_its_mode(previous) {
            return not_applied(Outcome::Missing);
        }
        let plan = plan_grants(&observed, desired, previous);
        let adds_only = plan.only_adds_to(&observed);
        let Some(new) = plan.write else {
            return Applied {
                outcome: Outcome::Correct,
                granted: Some(plan.granted),
                written: false,
            };
        };
        let allowed = match writes {
            Writes::None => false,
            Writes::All => true,
            Writes::OnlyAdding => adds_only,
        };
        if !allowed {
            let change = describe_change(&observed, &new);
            return not_applied(Outcome::WouldChange { change });
        }
        let unrecorded =
            |(who, bits): (&Qualifier, &Perm)| !previous.get(who).copied().unwrap_or_default().contains(*bits);
        if plan.granted.iter().any(unrecorded)
            && let Err(e) = claim(&plan.granted)
        {
            return not_applied(Outcome::Failed {
                error: format!("not written: recording the grant first failed: {e}"),
            });
        }
        if let Err(e) = self.host.write_acl(file, &new) {
            return not_applied(Outcome::Failed {
                error: format!("write ACL: {e}"),
            });
        }
        // Described after the write: nothing but the write is on a new socket's critical path.
        let change = describe_change(&observed, &new);
        let outcome = match self.host.read_acl(file) {
            Err(e) => Outcome::Failed {
                error: format!("read ACL back: {e}"),
            },
            Ok(after) => match shortfalls(&after, desired).as_slice() {
                [] => Outcome::Changed { change },
                missing => {
                    let names: Vec<_> = missing.iter().map(ToString::to_string).collect();
                    Outcome::Failed {
                        error: format!("verification failed: no effective access for {}", names.join(", ")),
                    }
                }
            },
        };
        // The write happened: what was planned as granted is on the file either way.
        Applied {
            outcome,
            granted: Some(plan.granted),
            written: true,
        }
    }
}

/// Says which call failed and, for a read-only file system, the likely reason under the unit.
fn failed(call: &str, e: &std::io::Error, path: &Path) -> String {
    if e.raw_os_error() == Some(libc::EROFS) {
        // ReadWritePaths=-/var/lib/docker is skipped while the directory does not exist.
        return format!(
            "{call}: {e}: read-only for nonrootd, outside its ReadWritePaths= (a directory made after nonrootd started, such as a data root of a Docker installed later, is until nonrootd restarts; else {})",
            nonrootd_core::sandbox::drop_in_advice(path)
        );
    }
    format!("{call}: {e}")
}

/// What a socket's configured entries ask for ([`Engine::desired_grants`]).
struct Desired {
    grants: Grants,
    /// Names looked up, with their answers, for the record.
    answers: Vec<(String, Qualifier)>,
    /// Names that do not exist (any more): their answers leave the record.
    forgotten: Vec<String>,
    /// Whether every entry has an id (a failed lookup with none known has not).
    complete: bool,
}

/// What [`Engine::apply_grants`] did to one socket.
struct Applied {
    outcome: Outcome,
    /// The record for the path, when the ACL is now as planned.
    granted: Option<Grants>,
    /// Whether the ACL was written.
    written: bool,
}

/// Which planned ACL writes are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writes {
    /// A dry run.
    None,
    All,
    /// Those that take no bit away from anybody (see [`only_adds_to`](nonrootd_core::acl::AclPlan::only_adds_to)).
    OnlyAdding,
}

impl Writes {
    fn of(request: &Request) -> Writes {
        if request.dry_run { Writes::None } else { Writes::All }
    }
}

/// Logs what changed, was refused or failed.
fn log_entries(report: &Report) {
    for entry in &report.entries {
        match &entry.outcome {
            Outcome::Changed { change } => {
                info!(MESSAGE_ID = message_id::PATH_CHANGED, duty = %entry.duty, path = %entry.path.display(), "changed: {change}")
            }
            Outcome::Refused { reason } => {
                warn!(MESSAGE_ID = message_id::PATH_REFUSED, duty = %entry.duty, path = %entry.path.display(), "refused: {reason}")
            }
            Outcome::Failed { error } => {
                warn!(MESSAGE_ID = message_id::PATH_REFUSED, duty = %entry.duty, path = %entry.path.display(), "failed: {error}")
            }
            _ => {}
        }
    }
}

fn describe_grants(grants: &Grants) -> String {
    if grants.is_empty() {
        return "no grants".to_string();
    }
    let entries: Vec<_> = grants.iter().map(|(who, perm)| format!("{who}:{perm}")).collect();
    entries.join(", ")
}

/// Applies, with the grant record loaded from and saved to `state_dir` under the host-wide
/// lock when the sockets duty (the only one that reads or writes the record) is asked for;
/// then gives every `[[tenant]]` its subordinate ids when asked to. A dry run takes no lock,
/// writes nothing, and plans the tenants without taking shadow's locks. The volumes duty is not done here: its
/// walks may take seconds and run outside the lock ([`crate::volumes::apply`]).
pub fn apply_with_state<H: Host>(
    engine: &Engine<'_, H>,
    config: &Config,
    request: &Request,
    state_dir: &Path,
    lock_timeout: Duration,
) -> Report {
    let mut report = if !request.duties.contains(Duty::Sockets) {
        engine.apply(config, request, &mut GrantRecord::default(), None)
    } else if request.dry_run {
        match crate::host::walk::check_root_only_dir(state_dir).and_then(|()| GrantRecord::load(state_dir)) {
            // What an apply would do: revoke, while the package is being removed.
            Ok(mut record) => engine.apply_locked(config, request, state_dir, &mut record, None),
            Err(e) => engine.without_record(config, request, state_dir, &state_error(state_dir, e)),
        }
    } else {
        match StateCache::open(state_dir) {
            // It gives the tenants their ids itself, after its lock.
            Ok(mut cache) => return cache.apply(engine, config, request, lock_timeout),
            Err(e) => engine.without_record(config, request, state_dir, &e),
        }
    };
    ensure_tenants(engine, config, request, state_dir, lock_timeout, &mut report);
    report
}

/// Gives every `[[tenant]]` its subordinate ids when the request asks for the subids duty,
/// waiting at most `lock_timeout` for shadow's locks.
fn ensure_tenants<H: Host>(
    engine: &Engine<'_, H>,
    config: &Config,
    request: &Request,
    state_dir: &Path,
    lock_timeout: Duration,
    report: &mut Report,
) {
    if request.duties.contains(Duty::Subids) {
        let tenants = crate::subids::ensure_tenants(config, engine.ids, state_dir, request.dry_run, lock_timeout);
        report.entries.extend(tenants.entries);
    }
}

fn state_error(state_dir: &Path, e: std::io::Error) -> String {
    format!("state directory {}: {e}", state_dir.display())
}

/// The state directory's lock file and grant record, kept between applies by the daemon's
/// socket fixer: the record is read again only when `grants.json` was replaced. One cache
/// per thread: applies through the same cache do not exclude each other.
pub struct StateCache {
    state_dir: PathBuf,
    /// The state directory's device and inode when it was opened and checked.
    dir_id: (u64, u64),
    lock: LockFile,
    cached: CachedRecord,
}

/// The grant record as last read or written, and the stamp of the file it came from.
#[derive(Default)]
struct CachedRecord {
    record: GrantRecord,
    /// The file it came from, held open. `None`: nothing cached (yet, or after a failure);
    /// `Some(None)`: there was no file.
    file: Option<Option<HeldRecord>>,
}

impl CachedRecord {
    /// Reads the record again unless the file is the one cached.
    fn refresh(&mut self, dir: &Path) -> Result<(), String> {
        let stamp = RecordStamp::of(dir).map_err(|e| state_error(dir, e))?;
        if let Some(held) = &self.file
            && held.as_ref().map(|h| h.stamp) == stamp
        {
            return Ok(());
        }
        // Forget the cached record first: if the load fails, the next apply retries it.
        self.file = None;
        let (record, held) = GrantRecord::load_held(dir).map_err(|e| state_error(dir, e))?;
        self.record = record;
        self.file = Some(held);
        Ok(())
    }

    /// Takes `lock` and brings the record up to date with `grants.json` under it.
    fn locked<'a>(&mut self, lock: &'a mut LockFile, dir: &Path, timeout: Duration) -> Result<ApplyLock<'a>, String> {
        let held = lock.acquire(timeout).map_err(|e| state_error(dir, e))?;
        self.refresh(dir)?;
        Ok(held)
    }

    /// Under the lock: `change` runs on the record, and may save a record ahead of a write
    /// ([`SaveAhead`]); the record is saved
    /// when it differs from the file. `change`'s result comes back with whether the saves
    /// worked (ahead or after).
    fn update<T>(
        &mut self,
        dir: &Path,
        change: impl FnOnce(&mut GrantRecord, &mut dyn FnMut(&GrantRecord) -> Result<(), String>) -> T,
    ) -> (T, Result<(), String>) {
        let before = self.record.clone();
        let (mut saved_ahead, mut ahead_failed) = (false, None);
        let result = change(&mut self.record, &mut |ahead| {
            let saved = ahead.save(dir).map(drop).map_err(|e| state_error(dir, e));
            saved_ahead |= saved.is_ok();
            if let Err(e) = &saved {
                ahead_failed.get_or_insert_with(|| e.clone());
            }
            saved
        });
        if self.record != before || saved_ahead {
            self.file = None;
            match self.record.save(dir) {
                Ok(saved) => self.file = Some(Some(saved)),
                // Read again at the next apply; what this one granted was saved ahead.
                Err(e) => return (result, Err(state_error(dir, e))),
            }
        }
        // A grant not written for want of its record ahead: the record is unavailable too.
        (result, ahead_failed.map_or(Ok(()), Err))
    }
}

impl StateCache {
    /// Checks the state directory, creates it if needed and opens its lock file.
    pub fn open(state_dir: &Path) -> Result<StateCache, String> {
        let opened = crate::host::walk::check_root_only_dir(state_dir)
            .and_then(|()| crate::state::ensure_dir(state_dir))
            .and_then(|()| Ok((dir_id(state_dir)?, LockFile::open(state_dir)?)));
        let (dir_id, lock) = opened.map_err(|e| state_error(state_dir, e))?;
        Ok(StateCache {
            state_dir: state_dir.to_path_buf(),
            dir_id,
            lock,
            cached: CachedRecord::default(),
        })
    }

    /// Whether the state directory is still the one opened and checked: gone, or replaced
    /// (made again, or a symlink now), it must be opened and checked again.
    pub fn is_current(&self) -> bool {
        dir_id(&self.state_dir).is_ok_and(|id| id == self.dir_id)
    }

    /// Reads the record under the lock, so that the first new socket can be served early.
    pub fn preload(&mut self, lock_timeout: Duration) -> Result<(), String> {
        self.cached
            .locked(&mut self.lock, &self.state_dir, lock_timeout)
            .map(drop)
    }

    /// Applies under the lock (see [`apply_with_state`]); not for dry runs. The tenants come
    /// after the lock is released: shadow's own locks may keep them waiting.
    pub fn apply<H: Host>(
        &mut self,
        engine: &Engine<'_, H>,
        config: &Config,
        request: &Request,
        lock_timeout: Duration,
    ) -> Report {
        let dir = &self.state_dir;
        let applied = self.cached.locked(&mut self.lock, dir, lock_timeout).map(|_lock| {
            let (mut report, saved) = self.cached.update(dir, |record, save| {
                engine.apply_locked(config, request, dir, record, Some(save))
            });
            push_record_failure(&mut report, dir, saved);
            report
        });
        let mut report = applied.unwrap_or_else(|e| engine.without_record(config, request, dir, &e));
        ensure_tenants(engine, config, request, dir, lock_timeout, &mut report);
        report
    }

    /// Step one for a socket that just appeared, before any log: when the record already holds
    /// its grants and granting them only adds to its ACL, the grant is written now. That is
    /// done under the lock, taken without waiting, with the record in the file the one cached
    /// (one `statx`; read again if another apply saved one since), and while the package is
    /// not being removed: so the record in the file holds every bit written, whatever comes
    /// after (a crash, or another apply that revokes them).
    pub fn grant_new_socket<H: Host>(&mut self, engine: &Engine<'_, H>, config: &Config, socket: &Path) -> EarlyGrant {
        let configured = config.sockets.iter().find(|s| s.path == socket);
        let early = configured
            .filter(|configured| engine.earlier_spelling(config, configured).is_none())
            .and_then(|configured| {
                // Busy, or the record unreadable: the socket waits for the apply under the lock.
                let _lock = self
                    .cached
                    .locked(&mut self.lock, &self.state_dir, Duration::ZERO)
                    .ok()?;
                if !matches!(crate::state::removal_mark(&self.state_dir), Ok(None)) {
                    return None;
                }
                engine.grant_early(configured, &self.cached.record)
            });
        EarlyGrant(early)
    }

    /// Step two, off the urgent path: logs and returns the early grant's report (the record
    /// held it already); without one, this is [`apply`](Self::apply) of the socket.
    pub fn finish_new_socket<H: Host>(
        &mut self,
        engine: &Engine<'_, H>,
        config: &Config,
        socket: &Path,
        early: EarlyGrant,
        lock_timeout: Duration,
    ) -> Report {
        if let Some(report) = early.0 {
            log_entries(&report);
            return report;
        }
        let request = Request {
            duties: DutySet::NONE.with(Duty::Sockets),
            socket: Some(socket.to_path_buf()),
            dry_run: false,
        };
        self.apply(engine, config, &request, lock_timeout)
    }
}

/// The report of a new socket's grant written by [`StateCache::grant_new_socket`], or none.
pub struct EarlyGrant(Option<Report>);

impl EarlyGrant {
    /// A grant was written.
    pub fn written(&self) -> bool {
        self.0.is_some()
    }

    /// Drops the report of a grant made with NSS answers that changed since: the socket is then
    /// applied again when it is recorded (the record holds the bits written, so an id that
    /// changed has its old grant revoked).
    pub fn outdated(self) -> EarlyGrant {
        EarlyGrant(None)
    }
}

/// What the state directory's entry in a report stands for.
const RECORD: &str = "the record of nonrootd's grants";

/// Whether `report` says that the grant record in `state_dir` could not be used.
pub fn record_unavailable(report: &Report, state_dir: &Path) -> bool {
    report
        .entries
        .iter()
        .any(|e| e.duty == Duty::Sockets && e.path == state_dir && e.outcome.is_problem())
}

/// Adds the grant record's failure (to lock, read or save it) to `report`, logged.
fn push_record_failure(report: &mut Report, state_dir: &Path, saved: Result<(), String>) {
    if let Err(error) = saved {
        let mut failed = Report::default();
        failed.push(Duty::Sockets, state_dir, RECORD, Outcome::Failed { error });
        log_entries(&failed);
        report.entries.extend(failed.entries);
    }
}

/// Where the record keeps the last answer for a configured name ("user:alice"); a number
/// needs none.
fn name_key(kind: &str, name: &IdRef) -> Option<String> {
    match name {
        IdRef::Name(name) => Some(format!("{kind}:{name}")),
        IdRef::Id(_) => None,
    }
}

/// A directory's device and inode, not following a symlink.
fn dir_id(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir)?;
    Ok((m.dev(), m.ino()))
}

fn claim_bits(grants: &mut BTreeMap<PathBuf, Grants>, path: &Path, bits: &Grants) {
    let ours = grants.entry(path.to_path_buf()).or_default();
    for (who, bits) in bits {
        let perm = ours.entry(*who).or_default();
        *perm = perm.union(*bits);
    }
}

/// In the error of a socket entry whose name could not be looked up (see [`lookup_failed`]).
const LOOKUP_FAILED: &str = "until the lookup works it is granted as";

/// Whether a name of a socket entry in `report` could not be looked up: worth trying again.
pub fn lookup_failed(report: &Report) -> bool {
    report.entries.iter().any(
        |e| matches!(&e.outcome, Outcome::Failed { error } if e.duty == Duty::Sockets && error.contains(LOOKUP_FAILED)),
    )
}

/// Applies on this host: the real file system, names from NSS, Docker's own daemon.json. What
/// the CLI and the daemon run.
pub fn apply_on_host(config: &Config, request: &Request, state_dir: &Path, lock_timeout: Duration) -> Report {
    let host = crate::host::RealHost::default();
    let engine = Engine {
        host: &host,
        ids: &crate::ids::SystemIds,
        daemon_json: Path::new(DOCKER_DAEMON_JSON),
    };
    apply_with_state(&engine, config, request, state_dir, lock_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::{FakeFile, FakeHost};
    use nonrootd_core::acl::Perm;
    use nonrootd_core::ids::{Gid, Uid};

    impl StateCache {
        /// Both steps of a new socket at once, as the socket fixer runs them.
        fn apply_new_socket<H: Host>(
            &mut self,
            engine: &Engine<'_, H>,
            config: &Config,
            socket: &Path,
            lock_timeout: Duration,
        ) -> Report {
            let early = self.grant_new_socket(engine, config, socket);
            self.finish_new_socket(engine, config, socket, early, lock_timeout)
        }
    }

    struct Ids;
    /// "cadvisor" is uid 4321, "dmi" gid 990; looking up "ldap-down" fails.
    impl IdResolver for Ids {
        fn user(&self, name: &str) -> Result<Option<nonrootd_core::ids::Uid>, String> {
            match name {
                "ldap-down" => Err("Input/output error".into()),
                _ => Ok((name == "cadvisor").then_some(Uid(4321))),
            }
        }
        fn group(&self, name: &str) -> Result<Option<Gid>, String> {
            match name {
                "ldap-down" => Err("Input/output error".into()),
                _ => Ok((name == "dmi").then_some(Gid(990))),
            }
        }
    }

    fn config(text: &str) -> Config {
        Config::from_sources(&[(PathBuf::from("/etc/nonrootd/nonrootd.toml"), text.to_string())]).unwrap()
    }

    fn engine(host: &FakeHost) -> Engine<'_, FakeHost> {
        engine_with(host, &Ids)
    }

    fn engine_with<'a>(host: &'a FakeHost, ids: &'a dyn IdResolver) -> Engine<'a, FakeHost> {
        Engine {
            host,
            ids,
            daemon_json: Path::new("/nonexistent/daemon.json"),
        }
    }

    fn run(host: &FakeHost, config: &Config, dry_run: bool, record: &mut GrantRecord) -> Report {
        run_saving(host, config, dry_run, record, None)
    }

    fn run_saving(
        host: &FakeHost,
        config: &Config,
        dry_run: bool,
        record: &mut GrantRecord,
        save_ahead: SaveAhead,
    ) -> Report {
        let request = Request {
            duties: DutySet::HOST,
            socket: None,
            dry_run,
        };
        engine(host).apply(config, &request, record, save_ahead)
    }

    #[test]
    fn a_grant_of_new_bits_is_recorded_before_it_is_written_and_not_written_unrecorded() {
        let socket = || FakeFile::new(FileKind::Socket, 0o660, 0);
        let host = FakeHost::default().with("/run/docker.sock", socket());
        let config = config("[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n");
        let mut saved = Vec::new();
        let mut save = |ahead: &GrantRecord| {
            saved.push((ahead.clone(), host.calls.borrow().len()));
            Ok(())
        };
        let mut record = GrantRecord::default();
        let report = run_saving(&host, &config, false, &mut record, Some(&mut save));
        assert_eq!(report.entries[0].outcome.label(), "changed");
        let granted = grants_of(&record, "/run/docker.sock");
        assert_eq!(granted, [(Qualifier::User(Uid(4321)), Perm::RW)].into());
        // Saved with the grant before any call changed the file.
        assert_eq!(saved, [(record.clone(), 0)]);

        // The same grant again: nothing new to record, nothing saved ahead.
        let host = FakeHost::default().with("/run/docker.sock", socket());
        let mut save = |_: &GrantRecord| -> Result<(), String> { panic!("saved ahead again") };
        run_saving(&host, &config, false, &mut record, Some(&mut save));
        assert_eq!(host.calls.borrow().len(), 1, "re-granted");

        // The record cannot be saved: the ACL is left alone.
        let host = FakeHost::default().with("/run/docker.sock", socket());
        let mut failing = |_: &GrantRecord| Err("disk full".to_string());
        let report = run_saving(&host, &config, false, &mut GrantRecord::default(), Some(&mut failing));
        let Outcome::Failed { error } = &report.entries[0].outcome else {
            panic!("{:?}", report.entries[0].outcome)
        };
        assert!(error.contains("recording the grant first failed: disk full"), "{error}");
        assert!(host.calls.borrow().is_empty());
    }

    #[test]
    fn a_read_only_file_system_is_explained() {
        let erofs = std::io::Error::from_raw_os_error(libc::EROFS);
        let text = failed("chmod", &erofs, Path::new("/srv/dmi/DMI"));
        assert_eq!(
            text,
            "chmod: Read-only file system (os error 30): read-only for nonrootd, outside its ReadWritePaths= (a directory made after nonrootd started, such as a data root of a Docker installed later, is until nonrootd restarts; else add /etc/systemd/system/nonrootd.service.d/paths.conf with \"[Service]\\nReadWritePaths=-/srv/dmi/DMI\", then systemctl daemon-reload and restart nonrootd)"
        );
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(
            failed("chown", &eperm, Path::new("/x")),
            "chown: Operation not permitted (os error 1)"
        );
    }

    fn grants_of(record: &GrantRecord, path: &str) -> Grants {
        record.sockets.get(Path::new(path)).cloned().unwrap_or_default()
    }

    const DOCKER: &str = "[docker]\ndata_root = \"/d\"\nimage_dirs = [\"a\", \"b\", \"c\"]\n";

    #[test]
    fn a_refused_path_does_not_stop_the_others() {
        let host = FakeHost::default()
            .with("/d/a", FakeFile::new(FileKind::Directory, 0o700, 1000))
            .refusing("/d/b", "/d/b: is a symlink")
            .with("/d/c", FakeFile::new(FileKind::Directory, 0o700, 0));
        let report = run(&host, &config(DOCKER), false, &mut GrantRecord::default());
        let outcomes: Vec<_> = report.entries.iter().map(|e| e.outcome.label()).collect();
        assert_eq!(outcomes, ["refused", "refused", "changed"]);
        assert_eq!(*host.calls.borrow(), ["chmod 0750 /d/c"]);
        assert!(!report.succeeded());
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let host = FakeHost::default()
            .with("/d/a", FakeFile::new(FileKind::Directory, 0o700, 0))
            .with("/run/docker.sock", FakeFile::new(FileKind::Socket, 0o660, 0));
        let text = format!("{DOCKER}[[socket]]\npath = \"/run/docker.sock\"\nusers = [\"cadvisor\"]\n");
        let mut record = GrantRecord::default();
        let report = run(&host, &config(&text), true, &mut record);
        assert!(host.calls.borrow().is_empty());
        assert_eq!(record, GrantRecord::default());
        assert_eq!(
            report.entries[0].outcome,
            Outcome::WouldChange {
                change: "mode 0700 → 0750".into()
            }
        );
        assert_eq!(
            report.entries[3].outcome,
            Outcome::WouldChange {
                change: "mask::none → rw-, +user:4321:rw-".into()
            }
        );
    }

    #[test]
    fn unknown_names_are_refused_and_the_rest_granted_and_recorded() {
        let host = FakeHost::default().with("/run/docker.sock", FakeFile::new(FileKind::Socket, 0o660, 0));
        let text = "[[socket]]\npath = \"/run/docker.sock\"\nusers = [\"ghost\", \"cadvisor\"]\n";
        let mut record = GrantRecord::default();
        let report = run(&host, &config(text), false, &mut record);
        assert_eq!(
            report.entries[0].outcome,
            Outcome::Refused {
                reason: "/etc/nonrootd/nonrootd.toml:3: no such user \"ghost\"".into()
            }
        );
        assert_eq!(report.entries[1].outcome.label(), "changed");
        let who = Qualifier::User(Uid(4321));
        assert_eq!(host.file("/run/docker.sock").acl.effective(who), Perm::RW);
        assert_eq!(record.sockets[Path::new("/run/docker.sock")][&who], Perm::RW);
    }

    /// "cadvisor" is uid 4321 while the user database answers (and "gone" is nobody);
    /// "newteam" never resolves.
    struct Outage(std::cell::Cell<bool>);
    impl IdResolver for Outage {
        fn user(&self, name: &str) -> Result<Option<nonrootd_core::ids::Uid>, String> {
            match (name, self.0.get()) {
                ("cadvisor", false) => Ok(Some(Uid(4321))),
                ("newteam", _) | ("cadvisor" | "gone", true) => Err("Input/output error".into()),
                _ => Ok(None),
            }
        }
        fn group(&self, _: &str) -> Result<Option<Gid>, String> {
            Ok(None)
        }
    }

    /// While the user database cannot be asked about a name, the name is granted as the id
    /// the record last knew for it; everything else is planned as usual (a uid dropped from
    /// the config is revoked, a narrowed access narrowed), and a name never known gets nothing.
    #[test]
    fn a_failed_lookup_grants_the_last_known_id_and_nothing_else_is_kept() {
        let sock = "/run/docker.sock";
        let host = FakeHost::default().with(sock, FakeFile::new(FileKind::Socket, 0o660, 0));
        let ids = Outage(std::cell::Cell::new(false));
        let engine = engine_with(&host, &ids);
        let sockets_of = |users: &str, access: &str| {
            config(&format!(
                "[[socket]]\npath = \"{sock}\"\nusers = [{users}]\naccess = \"{access}\"\n"
            ))
        };
        let mut record = GrantRecord::default();
        engine.apply(
            &sockets_of("\"cadvisor\", 5000, 6000", "rw"),
            &sockets(),
            &mut record,
            None,
        );
        assert_eq!(record.names["user:cadvisor"], Qualifier::User(Uid(4321)));
        // The directory server goes down and the socket is re-created; the config drops 6000,
        // narrows the access to r and adds a team whose name was never looked up.
        ids.0.set(true);
        host.files
            .borrow_mut()
            .insert(sock.into(), FakeFile::new(FileKind::Socket, 0o660, 0));
        let config = sockets_of("\"cadvisor\", 5000, \"newteam\"", "r");
        let report = engine.apply(&config, &sockets(), &mut record, None);
        let errors: Vec<_> = report
            .entries
            .iter()
            .filter_map(|e| match &e.outcome {
                Outcome::Failed { error } => Some(error.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors,
            [
                format!(
                    "/etc/nonrootd/nonrootd.toml:3: looking up user \"cadvisor\" failed: Input/output error; {LOOKUP_FAILED} user:4321, its last known id"
                ),
                format!(
                    "/etc/nonrootd/nonrootd.toml:3: looking up user \"newteam\" failed: Input/output error; {LOOKUP_FAILED} nothing: no id is known for it"
                ),
            ]
        );
        assert!(lookup_failed(&report));
        let acl = host.file(sock).acl;
        assert_eq!(acl.effective(Qualifier::User(Uid(4321))), Perm::R);
        assert_eq!(acl.effective(Qualifier::User(Uid(5000))), Perm::R);
        assert_eq!(
            acl.named.get(&Qualifier::User(Uid(6000))),
            None,
            "not configured: not granted"
        );
        assert_eq!(record.names["user:cadvisor"], Qualifier::User(Uid(4321)), "still known");
        // A partial request (one socket's event) forgets no name; a full apply of a config
        // without the name does, and a dry run learns none.
        let mut other = sockets();
        other.socket = Some(PathBuf::from("/run/other.sock"));
        engine.apply(&self::config(""), &other, &mut record, None);
        assert!(record.names.contains_key("user:cadvisor"));
        ids.0.set(false);
        let mut dry = GrantRecord::default();
        let mut dry_run = sockets();
        dry_run.dry_run = true;
        engine.apply(&sockets_of("\"cadvisor\"", "rw"), &dry_run, &mut dry, None);
        assert!(dry.names.is_empty());
        engine.apply(&self::config(""), &sockets(), &mut record, None);
        assert!(record.names.is_empty());
        // The DMI group's lookup failing is a failure too, not a refusal.
        let dmi = self::config("[dmi]\ntables_dir = \"/t\"\ngroup = \"ldap-down\"\n");
        let report = run(&host, &dmi, false, &mut GrantRecord::default());
        assert_eq!(report.entries[0].outcome.label(), "failed", "{report:?}");
    }

    /// A name that no longer exists leaves the record's answers: an outage later does not
    /// bring its old uid back.
    #[test]
    fn a_deleted_name_is_not_granted_as_its_old_id_during_an_outage() {
        let sock = "/run/docker.sock";
        let host = FakeHost::default().with(sock, FakeFile::new(FileKind::Socket, 0o660, 0));
        let ids = Outage(std::cell::Cell::new(false));
        let engine = engine_with(&host, &ids);
        // "gone" was uid 1001 and granted, as an earlier run left it.
        let mut record = GrantRecord::default();
        let before = format!("[[socket]]\npath = \"{sock}\"\nusers = [\"cadvisor\", 1001]\n");
        engine.apply(&config(&before), &sockets(), &mut record, None);
        record.names.insert("user:gone".into(), Qualifier::User(Uid(1001)));
        let text = format!("[[socket]]\npath = \"{sock}\"\nusers = [\"cadvisor\", \"gone\"]\n");
        engine.apply(&config(&text), &sockets(), &mut record, None);
        assert!(!record.names.contains_key("user:gone"), "no such user: forgotten");
        assert_eq!(
            host.file(sock).acl.named.get(&Qualifier::User(Uid(1001))),
            None,
            "revoked"
        );
        ids.0.set(true);
        let report = engine.apply(&config(&text), &sockets(), &mut record, None);
        assert!(lookup_failed(&report));
        assert_eq!(host.file(sock).acl.named.get(&Qualifier::User(Uid(1001))), None);
        assert_eq!(host.file(sock).acl.effective(Qualifier::User(Uid(4321))), Perm::RW);
    }

    #[test]
    fn grants_on_an_unconfigured_socket_are_revoked_and_forgotten() {
        let host = FakeHost::default().with("/run/old.sock", FakeFile::new(FileKind::Socket, 0o660, 0));
        let granted = config("[[socket]]\npath = \"/run/old.sock\"\nusers = [1234]\ngroups = [7]\n");
        let mut record = GrantRecord::default();
        run(&host, &granted, false, &mut record);
        assert_eq!(host.file("/run/old.sock").acl.named.len(), 2);
        let report = run(&host, &config(""), false, &mut record);
        assert_eq!(report.entries[0].desired, "no grants (no longer configured)");
        assert!(host.file("/run/old.sock").acl.named.is_empty());
        assert!(record.sockets.is_empty());
    }

    #[test]
    fn a_cached_record_is_read_again_after_another_apply_saved_one() {
        let state = tempfile::tempdir().unwrap();
        let host = FakeHost::default().with("/run/docker.sock", FakeFile::new(FileKind::Socket, 0o660, 0));
        let engine = engine(&host);
        let recorded = || GrantRecord::load(state.path()).unwrap().sockets;
        let mut cache = StateCache::open(state.path()).unwrap();
        cache.apply(&engine, &granting(), &sockets(), Duration::ZERO);
        assert_eq!(recorded().len(), 1);
        // Another process (a CLI with a new config) revokes the grant and saves its record.
        revoke_all(&engine, state.path());
        assert!(recorded().is_empty());
        // The cache sees the new record: its grant is made and recorded again, not assumed.
        cache.apply(&engine, &granting(), &sockets(), Duration::ZERO);
        assert_eq!(recorded().len(), 1);
        assert_eq!(host.file("/run/docker.sock").acl.named.len(), 1);
    }

    /// A state directory whose record grants uid 4321 rw on /run/docker.sock, a cache that
    /// read it, and a fresh socket on the fake host.
    fn granted_before() -> (tempfile::TempDir, FakeHost, StateCache) {
        let state = tempfile::tempdir().unwrap();
        let host = FakeHost::default().with("/run/docker.sock", FakeFile::new(FileKind::Socket, 0o660, 0));
        let engine = engine(&host);
        apply_with_state(&engine, &granting(), &sockets(), state.path(), Duration::ZERO);
        let mut cache = StateCache::open(state.path()).unwrap();
        cache.preload(Duration::ZERO).unwrap();
        host.files
            .borrow_mut()
            .insert("/run/docker.sock".into(), FakeFile::new(FileKind::Socket, 0o660, 0));
        (state, host, cache)
    }

    /// Another process applies a config without sockets and saves its record: what nonrootd
    /// recorded as granted is revoked.
    fn revoke_all(engine: &Engine<'_, FakeHost>, state: &Path) {
        apply_with_state(engine, &config(""), &sockets(), state, Duration::ZERO);
    }

    /// What the saved record holds as granted to uid 4321 on /run/docker.sock.
    fn recorded_for_4321(state: &Path) -> Perm {
        let record = GrantRecord::load(state).unwrap();
        record.sockets[Path::new("/run/docker.sock")][&Qualifier::User(Uid(4321))]
    }

    fn granting() -> Config {
        config("[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n")
    }

    fn sockets() -> Request {
        Request {
            duties: DutySet::NONE.with(Duty::Sockets),
            socket: None,
            dry_run: false,
        }
    }

    /// A grant record that cannot be read (or locked) keeps the sockets untouched and failed,
    /// named with the reason, and nothing else from being applied; the same on a dry run.
    #[test]
    fn an_unusable_grant_record_fails_the_sockets_alone() {
        let state = tempfile::tempdir().unwrap();
        std::fs::write(state.path().join("grants.json"), "{ not json").unwrap();
        let text = format!("{DOCKER}[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321]\n");
        for dry_run in [false, true] {
            let host = FakeHost::default()
                .with("/d/a", FakeFile::new(FileKind::Directory, 0o700, 0))
                .with("/run/docker.sock", FakeFile::new(FileKind::Socket, 0o660, 0));
            let request = Request {
                duties: DutySet::NONE.with(Duty::Docker).with(Duty::Sockets),
                socket: None,
                dry_run,
            };
            let report = apply_with_state(&engine(&host), &config(&text), &request, state.path(), Duration::ZERO);
            let seen: Vec<_> = report
                .entries
                .iter()
                .map(|e| (e.path.to_str().unwrap(), e.outcome.label()))
                .collect();
            let docker = if dry_run { "would change" } else { "changed" };
            let state_dir = state.path().to_str().unwrap();
            assert_eq!(
                seen,
                [
                    ("/d/a", docker),
                    ("/d/b", "missing"),
                    ("/d/c", "missing"),
                    (state_dir, "failed"),
                    ("/run/docker.sock", "failed")
                ]
            );
            assert!(record_unavailable(&report, state.path()));
            let Outcome::Failed { error } = &report.entries[3].outcome else {
                unreachable!()
            };
            assert!(error.contains("grants.json"), "{error}");
            assert!(
                host.file("/run/docker.sock").acl.named.is_empty(),
                "the socket is untouched"
            );
        }
    }

    #[test]
    fn a_new_socket_with_recorded_grants_is_granted_early_while_the_lock_is_free() {
        let (state, host, mut cache) = granted_before();
        let engine = engine(&host);
        let sock = Path::new("/run/docker.sock");
        let early = cache.grant_new_socket(&engine, &granting(), sock);
        assert!(early.written());
        let who = Qualifier::User(Uid(4321));
        assert_eq!(host.file("/run/docker.sock").acl.effective(who), Perm::RW);
        // The lock is not kept: another apply may run before the report.
        let mut other = LockFile::open(state.path()).unwrap();
        drop(other.acquire(Duration::ZERO).unwrap());
        let report = cache.finish_new_socket(&engine, &granting(), sock, early, Duration::ZERO);
        assert_eq!(report.entries[0].outcome.label(), "changed", "{report:?}");
        assert_eq!(recorded_for_4321(state.path()), Perm::RW);
    }

    /// While another apply holds the lock it may be about to save a record without the grant:
    /// nothing is written early, and the socket waits for the apply under the lock.
    #[test]
    fn nothing_is_written_early_while_another_apply_holds_the_lock() {
        let (state, host, mut cache) = granted_before();
        let engine = engine(&host);
        let mut other = LockFile::open(state.path()).unwrap();
        let held = other.acquire(Duration::ZERO).unwrap();
        let sock = Path::new("/run/docker.sock");
        let report = cache.apply_new_socket(&engine, &granting(), sock, Duration::ZERO);
        assert!(record_unavailable(&report, state.path()), "{report:?}");
        assert!(host.file("/run/docker.sock").acl.named.is_empty());
        drop(held);
        let report = cache.apply_new_socket(&engine, &granting(), sock, Duration::ZERO);
        assert_eq!(report.entries[0].outcome.label(), "changed", "{report:?}");
        assert_eq!(recorded_for_4321(state.path()), Perm::RW);
    }

    /// Another apply revoked the grant and saved while the cache still held it; the socket is
    /// then re-created and the daemon stops before anything else. Nothing written early may
    /// outlive the record in the file: the early grant reads that first.
    #[test]
    fn no_grant_is_written_early_from_a_record_another_apply_has_replaced() {
        let (state, host, mut cache) = granted_before();
        let engine = engine(&host);
        revoke_all(&engine, state.path());
        let sock = Path::new("/run/docker.sock");
        let early = cache.grant_new_socket(&engine, &granting(), sock);
        assert!(!early.written());
        assert!(host.file("/run/docker.sock").acl.named.is_empty());
        drop(cache);
        assert!(GrantRecord::load(state.path()).unwrap().sockets.is_empty());
    }

    #[test]
    fn nothing_is_written_early_without_a_recorded_grant_or_when_it_would_take_bits_away() {
        let (_state, host, mut cache) = granted_before();
        let engine = engine(&host);
        let sock = Path::new("/run/docker.sock");
        // A user the record does not hold yet.
        let more = config("[[socket]]\npath = \"/run/docker.sock\"\nusers = [4321, \"cadvisor\"]\ngroups = [7]\n");
        assert!(!cache.grant_new_socket(&engine, &more, sock).written());
        assert!(host.file("/run/docker.sock").acl.named.is_empty());
        // Raising the mask of a `chmod 0600` socket clamps the owning group: not only adding.
        let mut clamped = FakeFile::new(FileKind::Socket, 0o600, 0);
        clamped.acl.group_obj = Perm::RW;
        clamped.acl.mask = Some(Perm::NONE);
        host.files.borrow_mut().insert(sock.into(), clamped);
        assert!(!cache.grant_new_socket(&engine, &granting(), sock).written());
        assert!(host.file("/run/docker.sock").acl.named.is_empty());
    }

    #[test]
    fn a_new_socket_whose_grant_another_apply_revoked_is_granted_and_recorded_under_the_lock() {
        let (state, host, mut cache) = granted_before();
        let engine = engine(&host);
        // Another process forgets the grant (its config has no socket) and saves its record.
        revoke_all(&engine, state.path());
        assert!(GrantRecord::load(state.path()).unwrap().sockets.is_empty());
        let sock = Path::new("/run/docker.sock");
        cache.apply_new_socket(&engine, &granting(), sock, Duration::ZERO);
        // Granted under the lock and recorded as nonrootd's, so a later config can revoke it.
        assert_eq!(recorded_for_4321(state.path()), Perm::RW);
        revoke_all(&engine, state.path());
        assert!(host.file("/run/docker.sock").acl.named.is_empty());
    }

    #[test]
    fn an_apply_between_early_grants_and_their_reports_leaves_a_true_record() {
        let state = tempfile::tempdir().unwrap();
        let fresh = || FakeFile::new(FileKind::Socket, 0o660, 0);
        let host = FakeHost::default()
            .with("/run/a.sock", fresh())
            .with("/run/b.sock", fresh());
        let engine = engine(&host);
        let ours = config(
            "[[socket]]\npath = \"/run/a.sock\"\nusers = [4321]\n[[socket]]\npath = \"/run/b.sock\"\nusers = [4321]\n",
        );
        apply_with_state(&engine, &ours, &sockets(), state.path(), Duration::ZERO);
        let mut cache = StateCache::open(state.path()).unwrap();
        cache.preload(Duration::ZERO).unwrap();
        for sock in ["/run/a.sock", "/run/b.sock"] {
            host.files.borrow_mut().insert(sock.into(), fresh());
        }
        let (a, b) = (Path::new("/run/a.sock"), Path::new("/run/b.sock"));
        let early_a = cache.grant_new_socket(&engine, &ours, a);
        let early_b = cache.grant_new_socket(&engine, &ours, b);
        // Meanwhile another apply (a CLI with another config) grants uid 1234 on b and saves.
        let theirs = config(
            "[[socket]]\npath = \"/run/a.sock\"\nusers = [4321]\n[[socket]]\npath = \"/run/b.sock\"\nusers = [4321, 1234]\n",
        );
        apply_with_state(&engine, &theirs, &sockets(), state.path(), Duration::ZERO);
        let other = Qualifier::User(Uid(1234));
        assert_eq!(host.file("/run/b.sock").acl.named.get(&other), Some(&Perm::RW));
        // The reports change nothing; the record holds what the other apply granted as
        // nonrootd's, so the next apply with our config (the attribute change it caused) revokes it.
        cache.finish_new_socket(&engine, &ours, a, early_a, Duration::ZERO);
        cache.finish_new_socket(&engine, &ours, b, early_b, Duration::ZERO);
        let record = GrantRecord::load(state.path()).unwrap();
        assert_eq!(record.sockets[b].get(&other), Some(&Perm::RW));
        cache.apply(&engine, &ours, &sockets(), Duration::ZERO);
        assert_eq!(host.file("/run/b.sock").acl.named.get(&other), None, "revoked");
        let record = GrantRecord::load(state.path()).unwrap();
        assert_eq!(
            record.sockets[b].keys().collect::<Vec<_>>(),
            [&Qualifier::User(Uid(4321))]
        );
    }

    #[test]
    fn only_the_bits_added_to_an_admins_entry_on_a_new_socket_are_recorded() {
        let (state, host, mut cache) = granted_before();
        let engine = engine(&host);
        revoke_all(&engine, state.path());
        // An admin gives uid 4321 read access by hand; nonrootd adds only w.
        let who = Qualifier::User(Uid(4321));
        let mut foreign = FakeFile::new(FileKind::Socket, 0o660, 0);
        foreign.acl.named.insert(who, Perm::R);
        foreign.acl.mask = Some(Perm::RW);
        host.files.borrow_mut().insert("/run/docker.sock".into(), foreign);
        let sock = Path::new("/run/docker.sock");
        cache.apply_new_socket(&engine, &granting(), sock, Duration::ZERO);
        assert_eq!(recorded_for_4321(state.path()), Perm::from_bits(2));
        revoke_all(&engine, state.path());
        assert_eq!(
            host.file("/run/docker.sock").acl.named[&who],
            Perm::R,
            "the admin's bit stays"
        );
    }

    #[test]
    fn dmi_files_get_group_and_mode_and_absent_ones_are_missing() {
        let host = FakeHost::default().with("/t/DMI", FakeFile::new(FileKind::Regular, 0o400, 0));
        let report = run(
            &host,
            &config("[dmi]\ntables_dir = \"/t\"\ngroup = \"dmi\"\n"),
            false,
            &mut GrantRecord::default(),
        );
        assert_eq!(*host.calls.borrow(), ["chgrp 990 /t/DMI", "chmod 0440 /t/DMI"]);
        assert_eq!(report.entries[1].outcome, Outcome::Missing);
        assert!(report.succeeded());
    }

    /// The DMI tables sit on sysfs, which has no ACLs: the mode is set all the same.
    #[test]
    fn a_file_system_without_acls_has_modes_set() {
        let host = FakeHost::default()
            .with("/t/DMI", FakeFile::new(FileKind::Regular, 0o400, 0))
            .without_acls("/t/DMI");
        let dmi = config("[dmi]\ntables_dir = \"/t\"\nworld_readable = true\n");
        let report = run(&host, &dmi, false, &mut GrantRecord::default());
        assert_eq!(report.entries[0].outcome.label(), "changed", "{report:?}");
        assert_eq!(*host.calls.borrow(), ["chmod 0444 /t/DMI"]);
    }

    /// The old group's write bit goes before the group changes: the new group never has it.
    #[test]
    fn bits_the_new_mode_drops_go_before_the_group_changes() {
        let host = FakeHost::default().with("/t/DMI", FakeFile::new(FileKind::Regular, 0o460, 0));
        run(
            &host,
            &config("[dmi]\ntables_dir = \"/t\"\ngroup = \"dmi\"\n"),
            false,
            &mut GrantRecord::default(),
        );
        assert_eq!(
            *host.calls.borrow(),
            ["chmod 0440 /t/DMI", "chgrp 990 /t/DMI", "chmod 0440 /t/DMI"]
        );
    }

    #[test]
    fn data_root_comes_from_config_then_daemon_json_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("daemon.json");
        assert_eq!(data_root(None, &json).unwrap(), Path::new("/var/lib/docker"));
        std::fs::write(&json, r#"{"debug": true}"#).unwrap();
        assert_eq!(data_root(None, &json).unwrap(), Path::new("/var/lib/docker"));
        std::fs::write(&json, r#"{"data-root": "/srv/docker", "debug": true}"#).unwrap();
        assert_eq!(data_root(None, &json).unwrap(), Path::new("/srv/docker"));
        // As dockerd reads it: nothing set by an empty or blank file (a UTF-8 BOM ignored),
        // or by an empty or null value; the path cleaned by name.
        for (text, root) in [
            ("", "/var/lib/docker"),
            (" \n\t", "/var/lib/docker"),
            ("\u{feff}{\"data-root\": \"/srv/d\"}", "/srv/d"),
            (r#"{"data-root": null}"#, "/var/lib/docker"),
            (r#"{"data-root": ""}"#, "/var/lib/docker"),
            (r#"{"data-root": "/srv/link/../d//x/."}"#, "/srv/d/x"),
        ] {
            std::fs::write(&json, text).unwrap();
            assert_eq!(data_root(None, &json).unwrap(), Path::new(root), "{text:?}");
        }
        let docker = config("[docker]\ndata_root = \"/x\"\n").docker.unwrap();
        assert_eq!(
            data_root(docker.configured_data_root(), &json).unwrap(),
            Path::new("/x")
        );
    }

    /// With `userns-remap`, Docker's images are in a `UID.GID` directory below the data root:
    /// the docker duty is refused (nothing touched) until the config names it.
    #[test]
    fn userns_remap_in_daemon_json_needs_the_remapped_root_named() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("daemon.json");
        std::fs::write(&json, r#"{"userns-remap": "default"}"#).unwrap();
        let (report, calls) = apply_docker_duty(&json, "[docker]\n");
        assert!(
            matches!(&report.entries[..], [nonrootd_core::report::Entry { outcome: Outcome::Refused { reason }, .. }]
                if reason.ends_with("sets \"userns-remap\": \"default\": Docker keeps its images in /var/lib/docker/UID.GID/image (the remapped root's first subordinate ids); name that directory as [docker] data_root")),
            "{report}"
        );
        assert!(calls.is_empty());
        // Naming the data root itself is no answer.
        let (report, _) = apply_docker_duty(&json, "[docker]\ndata_root = \"/var/lib/docker\"\n");
        assert!(
            matches!(
                &report.entries[..],
                [nonrootd_core::report::Entry {
                    outcome: Outcome::Refused { .. },
                    ..
                }]
            ),
            "{report}"
        );
        // Named, it is used; volumes still know the data root from daemon.json.
        let (report, _) = apply_docker_duty(&json, "[docker]\ndata_root = \"/var/lib/docker/100000.100000\"\n");
        let paths: Vec<&Path> = report.entries.iter().map(|e| e.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                "/var/lib/docker/100000.100000/image",
                "/var/lib/docker/100000.100000/image/overlay2",
                "/var/lib/docker/100000.100000/image/overlay2/layerdb"
            ]
            .map(Path::new)
        );
        assert_eq!(data_root(None, &json).unwrap(), Path::new("/var/lib/docker"));
    }

    /// A daemon.json that says nothing usable is an error naming it, never the default: that
    /// could be the wrong tree.
    #[test]
    fn a_daemon_json_not_understood_leaves_the_data_root_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("daemon.json");
        for (text, why) in [
            (
                r#"{"data-root": "/srv/docker",}"#,
                "not valid JSON (trailing comma at line 1 column 29)",
            ),
            (
                r#"{"data-root": "srv/docker"}"#,
                r#""data-root" is "srv/docker", not an absolute path"#,
            ),
            (r#"{"data-root": 5}"#, r#""data-root" is 5, not an absolute path"#),
        ] {
            std::fs::write(&json, text).unwrap();
            let error = data_root(None, &json).unwrap_err();
            assert_eq!(
                error,
                format!("{}: {why}, so Docker's data root is unknown", json.display())
            );
        }
        // The duty fails on it, and touches no directory.
        let (report, calls) = apply_docker_duty(&json, "[docker]\n");
        assert_eq!(report.entries.len(), 1);
        assert_eq!(report.entries[0].path, json);
        assert!(
            matches!(&report.entries[0].outcome, Outcome::Failed { error } if error.contains("not an absolute path"))
        );
        assert!(calls.is_empty());
    }

    /// The docker duty of `config` on a fake host with Docker's config at `daemon_json`: the
    /// report and the calls made.
    fn apply_docker_duty(daemon_json: &Path, config_text: &str) -> (Report, Vec<String>) {
        let host = FakeHost::default();
        let engine = Engine {
            host: &host,
            ids: &Ids,
            daemon_json,
        };
        let request = Request {
            duties: DutySet::NONE.with(Duty::Docker),
            socket: None,
            dry_run: false,
        };
        let report = engine.apply(&config(config_text), &request, &mut GrantRecord::default(), None);
        (report, host.calls.take())
    }
}
