//! The engine: for each duty, observe the host, plan with `nonrootd_core`, execute through a
//! [`Host`], verify, and report per path. A refused or failed path never stops the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nonrootd_core::acl::{Grants, Qualifier, describe_change, plan_grants, shortfalls};
use nonrootd_core::config::{Config, DmiAccess, DockerConfig, SocketConfig};
use nonrootd_core::duty::{Duty, DutySet};
use nonrootd_core::ids::{Gid, IdResolver};
use nonrootd_core::mode::Mode;
use nonrootd_core::plan::{FileKind, check_target, plan_attrs};
use nonrootd_core::report::{Outcome, Report};
use tracing::{info, warn};

use crate::host::{Host, OpenError, Opened};
use crate::message_id;
use crate::state::GrantRecord;

/// Docker's own config, where `data-root` may be set.
pub const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";
const DOCKER_DEFAULT_DATA_ROOT: &str = "/var/lib/docker";
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

/// The data root: the config's, else `data-root` from Docker's daemon.json, else the default.
pub fn data_root(docker: &DockerConfig, daemon_json: &Path) -> PathBuf {
    if let Some(root) = &docker.data_root {
        return root.clone();
    }
    let from_json = std::fs::read(daemon_json)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|json| json.get("data-root")?.as_str().map(PathBuf::from))
        .filter(|p| p.is_absolute());
    from_json.unwrap_or_else(|| PathBuf::from(DOCKER_DEFAULT_DATA_ROOT))
}

/// Applies host duties; `record` is what nonrootd granted before and is updated in place.
pub struct Engine<'a, H: Host> {
    pub host: &'a H,
    pub ids: &'a dyn IdResolver,
    pub daemon_json: &'a Path,
}

impl<H: Host> Engine<'_, H> {
    pub fn apply(&self, config: &Config, request: &Request, record: &mut GrantRecord) -> Report {
        let mut report = Report::default();
        if request.duties.contains(Duty::Docker) {
            if let Some(docker) = &config.docker {
                self.apply_docker(docker, request.dry_run, &mut report);
            }
        }
        if request.duties.contains(Duty::Sockets) {
            self.apply_sockets(config, request, record, &mut report);
        }
        if request.duties.contains(Duty::Dmi) {
            if let Some(dmi) = &config.dmi {
                for name in DMI_FILES {
                    let (group, mode) = match &dmi.access {
                        DmiAccess::Group(group) => match group.value.resolve_group(self.ids) {
                            Ok(gid) => (Some(gid), 0o440),
                            Err(why) => {
                                let reason = format!("{}: {why}", group.origin);
                                report.push(
                                    Duty::Dmi,
                                    dmi.tables_dir.join(name),
                                    "group-readable",
                                    Outcome::Refused { reason },
                                );
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
        }
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
        report
    }

    fn apply_docker(&self, docker: &DockerConfig, dry_run: bool, report: &mut Report) {
        let root = data_root(docker, self.daemon_json);
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
                self.host.set_group(file, gid).map_err(|e| format!("chown: {e}"))?;
            }
            // Always after chown, which may clear set-id bits.
            if change.mode.is_some() || change.group.is_some() {
                self.host.set_mode(file, mode).map_err(|e| format!("chmod: {e}"))?;
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

    fn apply_sockets(&self, config: &Config, request: &Request, record: &mut GrantRecord, report: &mut Report) {
        let wanted = |path: &Path| request.socket.as_deref().is_none_or(|only| only == path);
        for socket in config.sockets.iter().filter(|s| wanted(&s.path)) {
            let desired = self.desired_grants(socket, report);
            let previous = record.sockets.get(&socket.path).cloned().unwrap_or_default();
            let (outcome, granted) = self.apply_grants(&socket.path, &desired, &previous, request.dry_run);
            if let Some(granted) = granted {
                record.sockets.insert(socket.path.clone(), granted);
            }
            report.push(Duty::Sockets, &socket.path, describe_grants(&desired), outcome);
        }
        // Grants on sockets that are no longer configured are revoked.
        let stale: Vec<PathBuf> = record
            .sockets
            .keys()
            .filter(|path| wanted(path) && !config.sockets.iter().any(|s| &s.path == *path))
            .cloned()
            .collect();
        for path in stale {
            let previous = record.sockets[&path].clone();
            let (outcome, granted) = self.apply_grants(&path, &Grants::new(), &previous, request.dry_run);
            if granted.is_some() || outcome == Outcome::Missing {
                record.sockets.remove(&path);
            }
            report.push(Duty::Sockets, path, "no grants (no longer configured)", outcome);
        }
    }

    /// The configured entries that resolve; the others are reported as refused.
    fn desired_grants(&self, socket: &SocketConfig, report: &mut Report) -> Grants {
        let mut desired = Grants::new();
        for user in &socket.users {
            match user.value.resolve_user(self.ids) {
                Ok(uid) => {
                    desired.insert(Qualifier::User(uid), socket.access);
                }
                Err(why) => {
                    let reason = format!("{}: {why}", user.origin);
                    report.push(
                        Duty::Sockets,
                        &socket.path,
                        format!("user {}", user.value),
                        Outcome::Refused { reason },
                    );
                }
            }
        }
        for group in &socket.groups {
            match group.value.resolve_group(self.ids) {
                Ok(gid) => {
                    desired.insert(Qualifier::Group(gid), socket.access);
                }
                Err(why) => {
                    let reason = format!("{}: {why}", group.origin);
                    report.push(
                        Duty::Sockets,
                        &socket.path,
                        format!("group {}", group.value),
                        Outcome::Refused { reason },
                    );
                }
            }
        }
        desired
    }

    /// Grants `desired` on a socket and revokes stale grants of `previous`. Returns the outcome
    /// and, when the ACL is now as planned, the new record for the path.
    fn apply_grants(
        &self,
        path: &Path,
        desired: &Grants,
        previous: &Grants,
        dry_run: bool,
    ) -> (Outcome, Option<Grants>) {
        let opened = match self.open_target(path, FileKind::Socket) {
            Ok(opened) => opened,
            Err(outcome) => return (outcome, None),
        };
        let file = &opened.handle;
        let observed = match self.host.read_acl(file) {
            Ok(acl) => acl,
            Err(e) => {
                return (
                    Outcome::Failed {
                        error: format!("read ACL: {e}"),
                    },
                    None,
                );
            }
        };
        let plan = plan_grants(&observed, desired, previous);
        let Some(new) = plan.write else {
            return (Outcome::Correct, Some(plan.granted));
        };
        let change = describe_change(&observed, &new);
        if dry_run {
            return (Outcome::WouldChange { change }, None);
        }
        if let Err(e) = self.host.write_acl(file, &new) {
            return (
                Outcome::Failed {
                    error: format!("write ACL: {e}"),
                },
                None,
            );
        }
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
        (outcome, Some(plan.granted))
    }
}

fn describe_grants(grants: &Grants) -> String {
    if grants.is_empty() {
        return "no grants".to_string();
    }
    let entries: Vec<_> = grants.iter().map(|(who, perm)| format!("{who}:{perm}")).collect();
    entries.join(", ")
}

/// Applies under the host-wide lock, with the grant record loaded from and saved to
/// `state_dir`; then gives every `[[tenant]]` its subordinate ids when asked to. A dry run takes
/// no lock, writes nothing and leaves the subid files alone. The volumes duty is not done
/// here: its walks may take seconds and run outside the lock ([`crate::volumes::apply`]).
pub fn apply_with_state<H: Host>(
    engine: &Engine<'_, H>,
    config: &Config,
    request: &Request,
    state_dir: &Path,
    lock_timeout: Duration,
) -> Result<Report, String> {
    let state_error = |e: std::io::Error| format!("state directory {}: {e}", state_dir.display());
    if request.dry_run {
        let mut record = GrantRecord::load(state_dir).map_err(state_error)?;
        return Ok(engine.apply(config, request, &mut record));
    }
    crate::state::ensure_dir(state_dir).map_err(state_error)?;
    let _lock = crate::lock::ApplyLock::acquire(state_dir, lock_timeout).map_err(state_error)?;
    let mut record = GrantRecord::load(state_dir).map_err(state_error)?;
    let before = record.clone();
    let mut report = engine.apply(config, request, &mut record);
    if record != before {
        record.save(state_dir).map_err(state_error)?;
    }
    if request.duties.contains(Duty::Subids) {
        let tenants = crate::subids::ensure_tenants(config, engine.ids, state_dir);
        report.entries.extend(tenants.entries);
    }
    Ok(report)
}

/// Applies on this host: the real file system, names from NSS, Docker's own daemon.json. What
/// the CLI and the daemon run.
pub fn apply_on_host(
    config: &Config,
    request: &Request,
    state_dir: &Path,
    lock_timeout: Duration,
) -> Result<Report, String> {
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

    struct Ids;
    impl IdResolver for Ids {
        fn user(&self, name: &str) -> Option<nonrootd_core::ids::Uid> {
            (name == "cadvisor").then_some(Uid(4321))
        }
        fn group(&self, name: &str) -> Option<Gid> {
            (name == "dmi").then_some(Gid(990))
        }
    }

    fn config(text: &str) -> Config {
        Config::from_sources(&[(PathBuf::from("/etc/nonrootd/nonrootd.toml"), text.to_string())]).unwrap()
    }

    fn run(host: &FakeHost, config: &Config, dry_run: bool, record: &mut GrantRecord) -> Report {
        let engine = Engine {
            host,
            ids: &Ids,
            daemon_json: Path::new("/nonexistent/daemon.json"),
        };
        engine.apply(
            config,
            &Request {
                duties: DutySet::HOST,
                socket: None,
                dry_run,
            },
            record,
        )
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

    #[test]
    fn data_root_comes_from_config_then_daemon_json_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("daemon.json");
        let docker = config("[docker]\n").docker.unwrap();
        assert_eq!(data_root(&docker, &json), Path::new("/var/lib/docker"));
        std::fs::write(&json, r#"{"data-root": "/srv/docker", "debug": true}"#).unwrap();
        assert_eq!(data_root(&docker, &json), Path::new("/srv/docker"));
        let docker = config("[docker]\ndata_root = \"/x\"\n").docker.unwrap();
        assert_eq!(data_root(&docker, &json), Path::new("/x"));
    }
}
