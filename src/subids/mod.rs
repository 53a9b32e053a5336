//! Subordinate uid/gid ranges per tenant in `/etc/subuid` and `/etc/subgid`, written under
//! shadow-utils' own locks (held for milliseconds) with atomic replacement.
//!
//! The rules (lenient reading, first fit with one start for both files, strict writing) are
//! in [`nonrootd_core::subids`]. State under the state directory: `subids-managed.jsonl` (the
//! ranges nonrootd allocated, one JSON line each) and `subids-quarantine.json` (released
//! ranges held back).

mod files;
mod lock;

use std::collections::HashSet;
use std::fmt;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::unistd::{Uid as NixUid, User};
use nonrootd_core::config::{Config, Origin};
use nonrootd_core::duty::Duty;
use nonrootd_core::ids::{IdRef, IdResolver, Unresolved};
use nonrootd_core::report::{Outcome, Report};
use nonrootd_core::subids::{
    self as rules, AliasLookup, AllocError, Kind, Limits, Problem, Quarantined, Range, Request, Spelling, Tenant,
    login_defs_number,
};
use serde::{Deserialize, Serialize};

use crate::host::walk::check_root_only_dir;

/// Where shadow's defaults for min and max live.
pub const LOGIN_DEFS: &str = "/etc/login.defs";
/// How long to wait for a lock held by another process (glibc's lckpwdf waits 15 s).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_MIN: u32 = 100_000;
const DEFAULT_MAX: u32 = 600_100_000;

/// Everything the operations need: the `[subids]` config with login.defs defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub subuid_file: PathBuf,
    pub subgid_file: PathBuf,
    pub limits: Limits,
    /// Where the limits and the counts held against them come from, for errors.
    pub limits_from: LimitSources,
    /// Ids per tenant when neither the caller nor the tenant's `[[tenant]]` says.
    pub count: u32,
    /// `[[tenant]]` counts by spelling, used when `allocate` gets no count.
    pub tenant_counts: Vec<(String, u32)>,
    pub quarantine_days: u32,
    pub state_dir: PathBuf,
    pub lock_timeout: Duration,
}

impl Settings {
    /// Settings from the config, with min and max defaulting to `/etc/login.defs`.
    pub fn new(config: &Config, state_dir: &Path) -> Settings {
        Settings::with_login_defs(config, state_dir, Path::new(LOGIN_DEFS))
    }

    /// Settings from the config, with min and max defaulting to what `login_defs` allows in
    /// both files, as one start serves both: the higher of SUB_UID_MIN and SUB_GID_MIN, the
    /// lower of SUB_UID_MAX and SUB_GID_MAX. A key unset, set to something other than a
    /// number (as shadow reads it) or beyond 4294967295 takes shadow's default, 100000 or
    /// 600100000, as does a missing or unreadable file.
    pub fn with_login_defs(config: &Config, state_dir: &Path, login_defs: &Path) -> Settings {
        // Read as shadow reads it, byte lines: one line that is not UTF-8 spoils only itself.
        let bytes = std::fs::read(login_defs).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let def = |key, default| {
            login_defs_number(&text, key)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(default)
        };
        // Never id 0: it maps the host's root.
        let min = || {
            def("SUB_UID_MIN", DEFAULT_MIN)
                .max(def("SUB_GID_MIN", DEFAULT_MIN))
                .max(1)
        };
        let max = || def("SUB_UID_MAX", DEFAULT_MAX).min(def("SUB_GID_MAX", DEFAULT_MAX));
        let s = &config.subids;
        let tenant_counts = config
            .tenants
            .iter()
            .filter_map(|t| Some((spelling_of(&t.name.value), t.count?)))
            .collect();
        let from = |origin: &Option<Origin>, key: &str, [uid_key, gid_key]: [&str; 2]| match origin {
            Some(origin) => format!("{origin}: subids.{key}"),
            None if [uid_key, gid_key].iter().any(|k| login_defs_number(&text, k).is_some()) => {
                format!("{}: {uid_key}, {gid_key}", login_defs.display())
            }
            None => format!(
                "shadow's default; {} sets neither {uid_key} nor {gid_key}",
                login_defs.display()
            ),
        };
        let counts = (s
            .count_origin
            .iter()
            .map(|origin| (format!("{origin}: subids.count"), s.count)))
        .chain(
            config
                .tenants
                .iter()
                .filter_map(|t| Some((format!("{}: tenant.count", t.name.origin), t.count?))),
        )
        .collect();
        Settings {
            subuid_file: s.subuid_file.clone(),
            subgid_file: s.subgid_file.clone(),
            limits: Limits {
                min: s.min.unwrap_or_else(min),
                max: s.max.unwrap_or_else(max),
            },
            limits_from: LimitSources {
                min: from(&s.min_origin, "min", ["SUB_UID_MIN", "SUB_GID_MIN"]),
                max: from(&s.max_origin, "max", ["SUB_UID_MAX", "SUB_GID_MAX"]),
                max_in_config: s.max_origin.is_some(),
                counts,
            },
            count: s.count,
            tenant_counts,
            quarantine_days: s.quarantine_days,
            state_dir: state_dir.to_path_buf(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// Refuses limits that leave no id to hand out, naming where each comes from: the config
    /// alone cannot tell when login.defs gives one of them.
    pub fn check_limits(&self) -> Result<(), String> {
        let Limits { min, max } = self.limits;
        let from = &self.limits_from;
        match (min > max, from.max_in_config) {
            (false, _) => Ok(()),
            (true, true) => Err(format!(
                "{}: {max} is below min {min} ({}): no id can be handed out",
                from.max, from.min
            )),
            (true, false) => Err(format!(
                "{}: {min} is above max {max} ({}): no id can be handed out",
                from.min, from.max
            )),
        }
    }

    /// Refuses a count the config sets (`[subids] count`, a `[[tenant]]`'s) that never fits
    /// between the limits; `check-config` asks, as the config alone cannot tell when
    /// login.defs gives a limit. (An allocation asking for another count may still work.)
    pub fn check_configured_counts(&self) -> Result<(), String> {
        let Limits { min, max } = self.limits;
        let from = &self.limits_from;
        let room = (u64::from(max) + 1).saturating_sub(u64::from(min));
        match from.counts.iter().find(|(_, count)| u64::from(*count) > room) {
            Some((what, count)) => Err(format!(
                "{what}: {count} ids never fit between min {min} ({}) and max {max} ({}): {room} ids",
                from.min, from.max
            )),
            None => Ok(()),
        }
    }

    fn path(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Subuid => &self.subuid_file,
            Kind::Subgid => &self.subgid_file,
        }
    }

    /// Refuses directories that others could change, before anything is locked, read or
    /// written: the state directory and those of the two files, whose locks and replacements
    /// are made by name ([`check_root_only_dir`]).
    fn check_dirs(&self) -> Result<(), SubidsError> {
        let check = |dir: &Path, what| check_root_only_dir(dir).map_err(|e| SubidsError::io(dir, what, e));
        check(&self.state_dir, "use the state directory")?;
        let (subuid_dir, subgid_dir) = (files::parent(&self.subuid_file), files::parent(&self.subgid_file));
        check(&subuid_dir, "use the directory")?;
        if subgid_dir != subuid_dir {
            check(&subgid_dir, "use the directory")?;
        }
        Ok(())
    }

    fn managed_path(&self) -> PathBuf {
        self.state_dir.join("subids-managed.jsonl")
    }

    fn quarantine_path(&self) -> PathBuf {
        self.state_dir.join("subids-quarantine.json")
    }

    /// Makes replacements of both files durable: one fsync per directory.
    fn sync_dirs(&self) -> Result<(), SubidsError> {
        files::sync_dir(&self.subuid_file)?;
        if self.subgid_file.parent() != self.subuid_file.parent() {
            files::sync_dir(&self.subgid_file)?;
        }
        Ok(())
    }

    /// Refuses subuid and subgid paths that clash (one file, through a link or a symlinked
    /// directory, or one named like the other's `<file>+`, `<file>.lock` …): their locks and
    /// `<file>+` would be one too, or a replacement of one would remove the other. Checked
    /// before the locks.
    fn refuse_clashing_files(&self) -> Result<(), SubidsError> {
        let (subuid, subgid) = (&self.subuid_file, &self.subgid_file);
        match files::clash(subuid, subgid)? {
            true => Err(SubidsError::Clash {
                subuid: subuid.clone(),
                subgid: subgid.clone(),
            }),
            false => Ok(()),
        }
    }

    /// Reads both files.
    fn read_both(&self) -> Result<[(rules::SubidFile, Option<Metadata>); 2], SubidsError> {
        Ok([files::read(&self.subuid_file)?, files::read(&self.subgid_file)?])
    }

    fn lock(&self) -> Result<lock::Locks, SubidsError> {
        lock::lock(&[&self.subuid_file, &self.subgid_file], self.lock_timeout)
    }
}

/// Where the limits and the configured counts come from: a config line, login.defs or a
/// default, as errors name them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitSources {
    pub min: String,
    pub max: String,
    /// The config sets max (errors then start with its line).
    pub max_in_config: bool,
    /// The counts the config sets (`[subids] count`, `[[tenant]]` counts), with where.
    pub counts: Vec<(String, u32)>,
}

fn spelling_of(id: &IdRef) -> String {
    match id {
        IdRef::Id(uid) => uid.to_string(),
        IdRef::Name(name) => name.clone(),
    }
}

/// Why an operation failed; nothing was written unless the message says so.
#[derive(Debug)]
pub enum SubidsError {
    /// Not a valid user name or numeric uid.
    InvalidTenant { tenant: String, reason: String },
    /// Asked for 0 ids.
    ZeroCount { tenant: String },
    /// The tenant owns fewer ids than asked in `file`, from line `line` on.
    TooSmall {
        tenant: String,
        file: PathBuf,
        line: usize,
        owned: u64,
        asked: u64,
    },
    /// The limits leave no room for a count: where each comes from is named.
    Limits(String),
    /// No free run of `count` ids between min and max (from `limits_from`) in both files;
    /// `held` ids between them are quarantined after a release.
    Full {
        tenant: String,
        count: u64,
        limits: Limits,
        limits_from: [String; 2],
        held: u64,
    },
    /// Line `line` of `file` is the tenant's to some readers only: a new range would give it
    /// two to those.
    Unclear { tenant: String, file: PathBuf, line: usize },
    /// Line `line` of `file` holds a NUL byte, past which shadow cannot read.
    Nul { file: PathBuf, line: usize },
    /// Looking up the tenant failed: its uid, or its other spelling (uid or name) where a
    /// line could be written with it (then which lines are the tenant's is unknown).
    LookupFailed { tenant: String, error: String },
    /// Another process held a lock for all of `waited`, the timeout.
    Locked {
        path: PathBuf,
        holder: Option<u32>,
        waited: Duration,
    },
    /// A `<file>.lock` that holds no valid pid: left by a crash, it never clears by itself.
    InvalidLock { path: PathBuf },
    /// The subuid and subgid paths name one file (through a link or a symlinked directory), or
    /// one is named like a file that replacing the other makes.
    Clash { subuid: PathBuf, subgid: PathBuf },
    /// Replacing the files failed after some of them (`replaced`) were replaced.
    PartlyReplaced {
        replaced: Vec<PathBuf>,
        error: Box<SubidsError>,
    },
    /// A system call on `path` failed.
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// A state file of nonrootd cannot be read.
    State { path: PathBuf, message: String },
    /// A subordinate id file too large to read, or that the allocation would make so.
    TooLarge {
        path: PathBuf,
        error: rules::TooLarge,
        growing: bool,
    },
}

impl SubidsError {
    fn io(path: &Path, action: &'static str, error: io::Error) -> SubidsError {
        SubidsError::Io {
            path: path.to_path_buf(),
            action,
            error,
        }
    }

    /// `held`: the quarantined ranges the plan skipped.
    fn from_alloc(tenant: &Tenant, settings: &Settings, held: &[Range], error: AllocError) -> SubidsError {
        let tenant = tenant.owner().to_string();
        match error {
            AllocError::TooSmall {
                kind,
                line,
                owned,
                asked,
            } => SubidsError::TooSmall {
                tenant,
                file: settings.path(kind).to_path_buf(),
                line,
                owned,
                asked,
            },
            AllocError::Full { count, limits } => SubidsError::Full {
                tenant,
                count,
                limits,
                limits_from: [settings.limits_from.min.clone(), settings.limits_from.max.clone()],
                held: limits.ids_within(held),
            },
            AllocError::Unclear { kind, line } => SubidsError::Unclear {
                tenant,
                file: settings.path(kind).to_path_buf(),
                line,
            },
            AllocError::Nul { kind, line } => SubidsError::Nul {
                file: settings.path(kind).to_path_buf(),
                line,
            },
        }
    }

    /// A request that is wrong in itself, whatever the files hold.
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, SubidsError::InvalidTenant { .. } | SubidsError::ZeroCount { .. })
    }

    /// Problems of the request rather than of the host (those are failures: worth trying
    /// again).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SubidsError::InvalidTenant { .. }
                | SubidsError::ZeroCount { .. }
                | SubidsError::TooSmall { .. }
                | SubidsError::Full { .. }
                | SubidsError::Unclear { .. }
        )
    }
}

impl fmt::Display for SubidsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubidsError::InvalidTenant { reason, .. } => {
                write!(
                    f,
                    "{reason}: give a user name (like acme) or a numeric uid; nothing was written"
                )
            }
            SubidsError::ZeroCount { tenant } => {
                write!(f, "tenant {tenant}: ask for at least 1 id")
            }
            SubidsError::TooSmall {
                tenant,
                file,
                line,
                owned,
                asked,
            } => write!(
                f,
                "{}: line {line}: tenant {tenant} owns {owned} ids, fewer than the {asked} asked: `nonrootctl subids allocate --grow {tenant}` adds a second range; or ask for at most {owned}",
                file.display()
            ),
            SubidsError::Limits(why) => write!(f, "{why}; nothing was written"),
            SubidsError::Full {
                tenant,
                count,
                limits,
                limits_from: [min_from, max_from],
                held,
            } => {
                let room = (u64::from(limits.max) + 1).saturating_sub(u64::from(limits.min));
                if *count > room {
                    write!(
                        f,
                        "tenant {tenant}: {count} ids never fit between min {} ({min_from}) and max {} ({max_from}), {room} ids: ask for fewer, or widen the limits",
                        limits.min, limits.max
                    )
                } else {
                    write!(
                        f,
                        "tenant {tenant}: no {count} free ids left between {} and {} in both files: raise [subids] max or release a tenant",
                        limits.min, limits.max
                    )?;
                    if *held > 0 {
                        write!(
                            f,
                            " ({held} ids there are in quarantine after releases, for [subids] quarantine_days; nonrootctl subids list shows until when)"
                        )?;
                    }
                    Ok(())
                }
            }
            SubidsError::Unclear { tenant, file, line } => write!(
                f,
                "{}: line {line}: tenant {tenant} owns it to some readers only (see nonrootctl subids check): fix or remove it first; nothing was written",
                file.display()
            ),
            SubidsError::Nul { file, line } => write!(
                f,
                "{}: line {line}: a NUL byte, so shadow 4.19 and later cannot read the file (older shadow read this line and the next as one): remove it first; nothing was written",
                file.display()
            ),
            SubidsError::LookupFailed { tenant, error } => write!(
                f,
                "tenant {tenant}: {error}; nothing was done, try again once the user database answers"
            ),
            SubidsError::Locked { path, holder, waited } => {
                write!(f, "{}: locked", path.display())?;
                if let Some(pid) = holder {
                    write!(f, " by pid {pid}")?;
                }
                write!(
                    f,
                    " throughout the {waited:?} wait (another useradd, usermod or nonrootd is running?): nothing was written, try again"
                )
            }
            SubidsError::InvalidLock { path } => write!(
                f,
                "{}: lock file whose content is not a pid (shadow refuses it too): remove it by hand once no useradd, usermod or nonrootd is running; nothing was written",
                path.display()
            ),
            SubidsError::Clash { subuid, subgid } => write!(
                f,
                "{} and {} clash: subuid and subgid ranges need a file each, neither named like one that replacing the other makes (<file>+, <file>-, <file>.lock, <file>.<pid>); nothing was written",
                subuid.display(),
                subgid.display()
            ),
            SubidsError::Io { path, action, error } => write!(f, "{}: cannot {action}: {error}", path.display()),
            SubidsError::PartlyReplaced { replaced, error } => {
                let replaced: Vec<_> = replaced.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{error}; already replaced: {}", replaced.join(", "))
            }
            SubidsError::TooLarge { path, error, growing } => {
                let would = if *growing { "the allocation would make it " } else { "" };
                write!(f, "{}: {would}{error}: nothing was written", path.display())
            }
            SubidsError::State { path, message } => write!(
                f,
                "{}: {message}: nonrootd's state is unreadable; fix it, or remove it to forget what it records (quarantines, or which ranges nonrootd allocated)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SubidsError {}

/// A range nonrootd allocated, for `list`: one JSON line each in `subids-managed.jsonl`,
/// appended per allocation so that an allocation costs the same at any number of tenants.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManagedRange {
    owner: String,
    kind: Kind,
    start: u64,
    count: u64,
}

/// Released ranges not handed out again yet.
#[derive(Debug, Default, Serialize, Deserialize)]
struct QuarantineState {
    ranges: Vec<Quarantined>,
}

/// The result of `allocate`: what the tenant owns now and what was added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub tenant: String,
    pub subuid: Vec<Range>,
    pub subgid: Vec<Range>,
    pub added_subuid: Vec<Range>,
    pub added_subgid: Vec<Range>,
}

impl Allocation {
    /// Whether a file was written.
    pub fn changed(&self) -> bool {
        !self.added_subuid.is_empty() || !self.added_subgid.is_empty()
    }
}

/// `NAME START COUNT` per range; with ` subuid` or ` subgid` after it when the files differ.
impl fmt::Display for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subuid == self.subgid {
            for r in &self.subuid {
                writeln!(f, "{} {} {}", self.tenant, r.start, r.count)?;
            }
            return Ok(());
        }
        for (kind, ranges) in [(Kind::Subuid, &self.subuid), (Kind::Subgid, &self.subgid)] {
            for r in ranges {
                writeln!(f, "{} {} {} {kind}", self.tenant, r.start, r.count)?;
            }
        }
        Ok(())
    }
}

/// One line of a subordinate id file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    pub owner: String,
    pub start: u64,
    pub count: u64,
    pub file: PathBuf,
    pub line: usize,
    /// Allocated by nonrootd.
    pub managed: bool,
}

/// The result of `release`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Released {
    pub tenant: String,
    pub removed: Vec<Listed>,
    /// Ranges only nonrootd's record still held: another tool (userdel) removed their lines.
    pub from_record: Vec<(Kind, Range)>,
    pub quarantine_days: u32,
}

impl fmt::Display for Released {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.removed.is_empty() && self.from_record.is_empty() {
            return writeln!(f, "{}: owns no ranges, nothing released", self.tenant);
        }
        for (kind, r) in &self.from_record {
            writeln!(
                f,
                "released {} {} {} ({kind}: no line held it any more, nonrootd's record did)",
                self.tenant, r.start, r.count
            )?;
        }
        for r in &self.removed {
            writeln!(
                f,
                "released {} {} {} ({}:{})",
                r.owner,
                r.start,
                r.count,
                r.file.display(),
                r.line
            )?;
        }
        writeln!(f, "quarantined for {} days", self.quarantine_days)
    }
}

/// The result of `list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub entries: Vec<Listed>,
    /// Released ranges not handed out again yet.
    pub quarantined: Vec<Held>,
}

/// A released range in quarantine, as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    pub owner: String,
    pub kind: Kind,
    pub start: u64,
    pub count: u64,
    /// Seconds since the epoch.
    pub released_at: u64,
    /// Seconds since the epoch.
    pub until: u64,
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:>10} {:>10} {:<7} LOCATION",
            "OWNER", "START", "COUNT", "MANAGED"
        )?;
        for e in &self.entries {
            let managed = if e.managed { "yes" } else { "no" };
            // Escaped (as `check` shows owners): never a control or format character for the
            // terminal, and a backslash in a name is told apart from an escape.
            let owner = e.owner.escape_debug().to_string();
            writeln!(
                f,
                "{owner:<20} {:>10} {:>10} {managed:<7} {}:{}",
                e.start,
                e.count,
                e.file.display(),
                e.line
            )?;
        }
        if !self.quarantined.is_empty() {
            writeln!(
                f,
                "\n{:<20} {:>10} {:>10} {:<7} UNTIL (UTC)",
                "QUARANTINED", "START", "COUNT", "FILE"
            )?;
        }
        for q in &self.quarantined {
            let owner = q.owner.escape_debug().to_string();
            let until = rules::utc_date(q.until);
            writeln!(
                f,
                "{owner:<20} {:>10} {:>10} {:<7} {until}",
                q.start,
                q.count,
                q.kind.to_string()
            )?;
        }
        Ok(())
    }
}

/// The result of `check`: the problems of each file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub files: Vec<(PathBuf, Vec<Problem>)>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.files.iter().all(|(_, problems)| problems.is_empty())
    }
}

/// `FILE:LINE: problem` lines, or `FILE: ok`.
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, problems) in &self.files {
            if problems.is_empty() {
                writeln!(f, "{}: ok", path.display())?;
            }
            for p in problems {
                writeln!(f, "{}:{p}", path.display())?;
            }
        }
        Ok(())
    }
}

/// A tenant as given on the command line, matched also by its other spelling on this host.
fn identify(text: &str) -> Result<Tenant, SubidsError> {
    let spelling = Spelling::parse(text).map_err(|reason| SubidsError::InvalidTenant {
        tenant: text.to_string(),
        reason,
    })?;
    if let Spelling::Uid(uid) = spelling {
        refuse_uid_named_otherwise(uid)?;
    }
    Ok(Tenant::looked_up(&spelling, other_spelling))
}

/// Refuses uid `uid` when a user is named like that number (Debian's useradd makes one):
/// shadow gives the lines owned by `1234` to the user named 1234, whatever its uid.
fn refuse_uid_named_otherwise(uid: u32) -> Result<(), SubidsError> {
    let text = uid.to_string();
    match User::from_name(&text) {
        Ok(Some(user)) if user.uid.as_raw() != uid => Err(SubidsError::InvalidTenant {
            tenant: text.clone(),
            reason: format!(
                "uid {uid} cannot own lines in the files: shadow gives lines owned by {text} to the user named {text:?} (uid {})",
                user.uid
            ),
        }),
        Ok(_) => Ok(()),
        Err(errno) => Err(SubidsError::LookupFailed {
            tenant: text.clone(),
            error: format!("looking up a user named {text:?} failed: {}", errno.desc()),
        }),
    }
}

/// The uid of a user name, or the name of a uid, in the host's user database; `Err` when
/// the database could not answer.
pub fn other_spelling(owner: &str) -> Result<Option<String>, String> {
    let found = match owner.parse::<u32>() {
        Ok(uid) => User::from_uid(NixUid::from_raw(uid)).map(|u| u.map(|u| u.name)),
        Err(_) => User::from_name(owner).map(|u| u.map(|u| u.uid.to_string())),
    };
    found.map_err(|errno| format!("looking up {owner:?} in the user database failed: {}", errno.desc()))
}

/// Refuses what was planned for `tenant` when a line needed its other spelling and the
/// lookup failed: which lines are its own is then unknown.
fn refuse_unknown_spelling(tenant: &Tenant) -> Result<(), SubidsError> {
    match tenant.lookup_failure() {
        Some(error) => Err(SubidsError::LookupFailed {
            tenant: tenant.owner().to_string(),
            error: format!(
                "which lines are its own is unknown, since lines may be written with its other spelling (uid or name) and {error}"
            ),
        }),
        None => Ok(()),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Gives `tenant` (a user name or numeric uid) `count` ids in both files (default: its
/// `[[tenant]]` count, else `[subids] count`); idempotent. With `grow`, a tenant owning
/// fewer gets a second range for the difference.
pub fn allocate(settings: &Settings, tenant: &str, count: Option<u32>, grow: bool) -> Result<Allocation, SubidsError> {
    let mut allocations = allocate_many(settings, &[tenant.to_string()], count, grow)?;
    Ok(allocations.pop().expect("one allocation per tenant"))
}

/// [`allocate`] for several tenants in one transaction: one lock, one read and at most one
/// replacement of each file. All or nothing: when one tenant is refused, nothing is written
/// and the first refusal is the error.
pub fn allocate_many(
    settings: &Settings,
    tenants: &[String],
    count: Option<u32>,
    grow: bool,
) -> Result<Vec<Allocation>, SubidsError> {
    let wanted = tenants.iter().map(|text| {
        let tenant = identify(text)?;
        let count = count
            .or_else(|| {
                settings
                    .tenant_counts
                    .iter()
                    .find(|(t, _)| tenant.owns(t))
                    .map(|(_, c)| *c)
            })
            .unwrap_or(settings.count);
        Ok((tenant, count))
    });
    let wanted = wanted.collect::<Result<Vec<_>, _>>()?;
    allocate_tenants(
        settings,
        wanted.into_iter().map(Ok).collect(),
        grow,
        AllOrNothing(true),
        false,
    )?
    .into_iter()
    .collect()
}

/// Whether one refused tenant keeps the others of a batch from being written.
struct AllOrNothing(bool);

/// Plans each tenant in order against the files as the earlier ones left them, then writes.
fn allocate_tenants(
    settings: &Settings,
    wanted: Vec<Result<(Tenant, u32), SubidsError>>,
    grow: bool,
    all_or_nothing: AllOrNothing,
    dry_run: bool,
) -> Result<Vec<Result<Allocation, SubidsError>>, SubidsError> {
    if wanted.iter().all(Result::is_err) {
        return Ok(wanted.into_iter().filter_map(Result::err).map(Err).collect());
    }
    settings.check_limits().map_err(SubidsError::Limits)?;
    // A dry run only reads: no locks, nothing written.
    settings.refuse_clashing_files()?;
    settings.check_dirs()?;
    let _locks = if dry_run { None } else { Some(settings.lock()?) };
    let [(mut subuid, subuid_meta), (mut subgid, subgid_meta)] = settings.read_both()?;
    let quarantine: QuarantineState = files::read_state(&settings.quarantine_path())?;
    let now = now();
    let held: Vec<Range> = quarantine
        .ranges
        .iter()
        .filter(|q| q.active(now, settings.quarantine_days))
        // Held back before releases kept only what a namespace can map: the same bound.
        .map(|q| rules::mappable(q.range()))
        .collect();
    let mut added = Vec::new();
    let mut results = Vec::with_capacity(wanted.len());
    for want in wanted {
        results.push(want.and_then(|(tenant, count)| {
            if count == 0 {
                return Err(SubidsError::ZeroCount {
                    tenant: tenant.owner().to_string(),
                });
            }
            let request = Request {
                subuid: &subuid,
                subgid: &subgid,
                quarantined: &held,
                limits: settings.limits,
                tenant: &tenant,
                count,
                grow,
            };
            let plan = rules::plan(&request);
            // Before the plan's own error: one worked out without the tenant's every line.
            refuse_unknown_spelling(&tenant)?;
            let plan = plan.map_err(|e| SubidsError::from_alloc(&tenant, settings, &held, e))?;
            // The next tenant of the batch sees these as taken.
            subuid.append(tenant.owner(), &plan.add_subuid);
            subgid.append(tenant.owner(), &plan.add_subgid);
            for (kind, ranges) in [(Kind::Subuid, &plan.add_subuid), (Kind::Subgid, &plan.add_subgid)] {
                added.extend(ranges.iter().map(|r| ManagedRange {
                    owner: tenant.owner().to_string(),
                    kind,
                    start: r.start,
                    count: r.count,
                }));
            }
            Ok(Allocation {
                tenant: tenant.owner().to_string(),
                subuid: plan.subuid,
                subgid: plan.subgid,
                added_subuid: plan.add_subuid,
                added_subgid: plan.add_subgid,
            })
        }));
    }
    if dry_run || added.is_empty() || (all_or_nothing.0 && results.iter().any(Result::is_err)) {
        return Ok(results);
    }
    for (path, file) in [(&settings.subuid_file, &subuid), (&settings.subgid_file, &subgid)] {
        rules::size_allowed(file.bytes().len() as u64).map_err(|error| SubidsError::TooLarge {
            path: path.clone(),
            error,
            growing: true,
        })?;
    }
    // The record first: a crash then leaves a record without lines, which `list` ignores.
    // Not fsynced: losing it loses only the "managed" mark.
    let (uid_added, gid_added) = (
        added.iter().any(|m| m.kind == Kind::Subuid),
        added.iter().any(|m| m.kind == Kind::Subgid),
    );
    let recorded_before = files::append_lines(&settings.managed_path(), &added)?;
    let mut replacements = Vec::with_capacity(2);
    if uid_added {
        replacements.push((settings.subuid_file.as_path(), subuid.bytes(), subuid_meta.as_ref()));
    }
    if gid_added {
        replacements.push((settings.subgid_file.as_path(), subgid.bytes(), subgid_meta.as_ref()));
    }
    match files::replace_all(&replacements) {
        // Some ranges are in the files: the record keeps its lines.
        Err(e @ SubidsError::PartlyReplaced { .. }) => return Err(e),
        // Nothing replaced: the record must not claim those ranges for nonrootd.
        Err(e) => {
            files::cut_back(&settings.managed_path(), recorded_before);
            return Err(e);
        }
        Ok(()) => {}
    }
    settings.sync_dirs()?;
    Ok(results)
}

/// Removes every line that some reader gives `tenant` (by name or by uid,
/// [`SubidFile::claimed_by`](rules::SubidFile::claimed_by)) from both files and quarantines the
/// ranges for `quarantine_days`.
pub fn release(settings: &Settings, tenant: &str) -> Result<Released, SubidsError> {
    let tenant = identify(tenant)?;
    settings.refuse_clashing_files()?;
    settings.check_dirs()?;
    let _locks = settings.lock()?;
    let mut removed = Vec::new();
    // The Go tools' reading of a removed line where it differs (octal): ids Docker mapped.
    let mut second_readings = Vec::new();
    let mut rewrites = Vec::new();
    for (kind, (file, meta)) in [Kind::Subuid, Kind::Subgid].into_iter().zip(settings.read_both()?) {
        let path = settings.path(kind);
        let (bytes, entries) = file.without(&tenant);
        if entries.is_empty() {
            continue;
        }
        for e in &entries {
            let of_line = file.second_readings.iter().filter(|s| s.line == e.line());
            second_readings.extend(of_line.map(|s| (file.owner(e).into_owned(), kind, s.range)));
        }
        removed.extend(entries.into_iter().map(|e| (kind, listed(&file, path, e))));
        rewrites.push((path, bytes, meta));
    }
    // Both state files are read before anything is written: one that cannot be read fails
    // the release with nothing changed.
    let mut managed: Vec<ManagedRange> = files::read_lines(&settings.managed_path())?;
    // Lines another tool removed (userdel) leave the record's: their ids may still own files,
    // so they are held back as if released here, and the record forgets them (it would mark a
    // range given to the same name later as nonrootd's).
    let from_record: Vec<(Kind, Range)> = if removed.is_empty() {
        let recorded = managed.iter().filter(|m| tenant.owns(&m.owner));
        recorded.map(|m| (m.kind, Range::new(m.start, m.count))).collect()
    } else {
        Vec::new()
    };
    refuse_unknown_spelling(&tenant)?;
    let released = Released {
        tenant: tenant.owner().to_string(),
        removed: removed.iter().map(|(_, listed)| listed.clone()).collect(),
        from_record: from_record.clone(),
        quarantine_days: settings.quarantine_days,
    };
    if removed.is_empty() && from_record.is_empty() {
        return Ok(released);
    }
    // Quarantine first: a crash then holds back ranges that may still be in the files.
    let now = now();
    let mut quarantine: QuarantineState = files::read_state(&settings.quarantine_path())?;
    quarantine.ranges.retain(|q| q.active(now, settings.quarantine_days));
    let owner = tenant.owner();
    let held = removed
        .into_iter()
        .map(|(kind, e)| (e.owner, kind, Range::new(e.start, e.count)));
    let held = held
        .chain(second_readings)
        .chain(from_record.into_iter().map(|(kind, r)| (owner.to_string(), kind, r)));
    for (owner, kind, range) in held {
        let mappable = rules::mappable(range);
        // Held already (a release again after one that a crash cut short): not twice, and
        // held from now on.
        let same = |q: &&mut Quarantined| {
            (q.kind, q.start, q.count, q.owner.as_str()) == (kind, mappable.start, mappable.count, owner.as_str())
        };
        if let Some(held) = quarantine.ranges.iter_mut().find(same) {
            held.released_at = now;
        } else if mappable.count > 0 {
            quarantine.ranges.push(Quarantined {
                owner,
                kind,
                start: mappable.start,
                count: mappable.count,
                released_at: now,
            });
        }
    }
    files::write_state(&settings.quarantine_path(), &quarantine)?;
    let replacements: Vec<files::Replacement<'_>> = rewrites
        .iter()
        .map(|(path, bytes, meta)| (*path, bytes.as_slice(), meta.as_ref()))
        .collect();
    if !replacements.is_empty() {
        files::replace_all(&replacements)?;
        settings.sync_dirs()?;
    }
    let before = managed.len();
    managed.retain(|m| !tenant.owns(&m.owner));
    if managed.len() != before {
        files::write_lines(&settings.managed_path(), &managed)?;
    }
    Ok(released)
}

/// Every range in both files, with its file and line and whether nonrootd allocated it.
pub fn list(settings: &Settings) -> Result<Listing, SubidsError> {
    settings.check_dirs()?;
    let managed: Vec<ManagedRange> = files::read_lines(&settings.managed_path())?;
    let ours: HashSet<(Kind, &str, u64, u64)> = managed
        .iter()
        .map(|m| (m.kind, m.owner.as_str(), m.start, m.count))
        .collect();
    let mut entries = Vec::new();
    for kind in [Kind::Subuid, Kind::Subgid] {
        let path = settings.path(kind);
        let (file, _) = files::read(path)?;
        entries.extend(file.entries.iter().map(|e| {
            let listed = listed(&file, path, e);
            let key = (kind, listed.owner.as_str(), listed.start, listed.count);
            Listed {
                managed: ours.contains(&key),
                ..listed
            }
        }));
    }
    let quarantine: QuarantineState = files::read_state(&settings.quarantine_path())?;
    let now = now();
    let days = settings.quarantine_days;
    let quarantined = quarantine
        .ranges
        .into_iter()
        .filter(|q| q.active(now, days))
        .map(|q| Held {
            until: q.until(days),
            count: rules::mappable(q.range()).count,
            owner: q.owner,
            kind: q.kind,
            start: q.start,
            released_at: q.released_at,
        })
        .collect();
    Ok(Listing { entries, quarantined })
}

/// `e`, an entry of `file` at `path`, as `list` and `release` show it (not managed).
fn listed(file: &rules::SubidFile, path: &Path, e: &rules::Entry) -> Listed {
    Listed {
        owner: file.owner(e).into_owned(),
        start: e.range.start,
        count: e.range.count,
        file: path.to_path_buf(),
        line: e.line(),
        managed: false,
    }
}

/// Validates both files: malformed and ambiguous lines, overlaps, duplicates, ranges including
/// id 0 or 4294967295, numeric owners not written as uids, a last line without its newline.
pub fn check(settings: &Settings) -> Result<CheckReport, SubidsError> {
    let mut files = Vec::new();
    for kind in [Kind::Subuid, Kind::Subgid] {
        let path = settings.path(kind);
        let (file, _) = files::read(path)?;
        files.push((path.to_path_buf(), file.check()));
    }
    Ok(CheckReport { files })
}

/// The subuid and subgid ranges that `tenant` (resolved to `uid`) owns, by name or by uid;
/// `name_of` finds a uid's name where a line could be written with it ([`other_spelling`] on
/// the host).
pub fn tenant_ranges(
    config: &Config,
    tenant: &IdRef,
    uid: u32,
    name_of: AliasLookup,
) -> Result<[(PathBuf, Vec<Range>); 2], SubidsError> {
    let tenant = match tenant {
        IdRef::Name(name) => Tenant::new(&Spelling::Name(name.clone()), Some(uid.to_string())),
        IdRef::Id(_) => Tenant::looked_up(&Spelling::Uid(uid), name_of),
    };
    let ranges = |path: &Path| -> Result<(PathBuf, Vec<Range>), SubidsError> {
        let (file, _) = files::read(path)?;
        let owned = file.owned_by(&tenant).map(|e| e.range).collect();
        refuse_unknown_spelling(&tenant)?;
        Ok((path.to_path_buf(), owned))
    };
    Ok([ranges(&config.subids.subuid_file)?, ranges(&config.subids.subgid_file)?])
}

/// Makes every `[[tenant]]` own a range in both files (never releases), all in one
/// transaction, waiting at most `lock_timeout` for shadow's locks. One report entry per tenant
/// and file.
pub fn ensure_tenants(
    config: &Config,
    ids: &dyn IdResolver,
    state_dir: &Path,
    dry_run: bool,
    lock_timeout: Duration,
) -> Report {
    let settings = Settings {
        lock_timeout,
        ..Settings::new(config, state_dir)
    };
    let paths = [&settings.subuid_file, &settings.subgid_file];
    let mut desired = Vec::new();
    let mut wanted = Vec::new();
    let mut users = Vec::new();
    for t in &config.tenants {
        let count = t.count.unwrap_or(settings.count);
        desired.push(format!("{}: {count} ids", spelling_of(&t.name.value)));
        let resolved = t.name.value.resolve_user(ids);
        // One user under two spellings is one tenant: the first entry counts.
        let earlier = match &resolved {
            Ok(uid) => match users.iter().find(|(seen, _)| seen == uid) {
                Some((_, first)) => Some(Origin::clone(first)),
                None => {
                    users.push((*uid, t.name.origin.clone()));
                    None
                }
            },
            Err(_) => None,
        };
        wanted.push(match (&t.name.value, resolved, earlier) {
            (_, Err(Unresolved::LookupFailed(error)), _) => Err(SubidsError::LookupFailed {
                tenant: spelling_of(&t.name.value),
                error: format!("{error} ({})", t.name.origin),
            }),
            (_, Err(reason), _) => Err(SubidsError::InvalidTenant {
                tenant: spelling_of(&t.name.value),
                reason: format!("{reason} ({})", t.name.origin),
            }),
            (_, Ok(uid), Some(first)) => Err(SubidsError::InvalidTenant {
                tenant: spelling_of(&t.name.value),
                reason: format!("user {uid}, a tenant already (at {first}) ({})", t.name.origin),
            }),
            (IdRef::Name(name), Ok(uid), None) => {
                Ok((Tenant::new(&Spelling::Name(name.clone()), Some(uid.to_string())), count))
            }
            (IdRef::Id(_), Ok(uid), None) => match refuse_uid_named_otherwise(uid.0) {
                Ok(()) => Ok((Tenant::looked_up(&Spelling::Uid(uid.0), other_spelling), count)),
                Err(SubidsError::InvalidTenant { tenant, reason }) => Err(SubidsError::InvalidTenant {
                    tenant,
                    reason: format!("{reason} ({})", t.name.origin),
                }),
                Err(e) => Err(e),
            },
        });
    }
    let mut report = Report::default();
    let results = match allocate_tenants(&settings, wanted, false, AllOrNothing(false), dry_run) {
        Ok(results) => results,
        Err(e) => {
            for desired in &desired {
                for path in paths {
                    let outcome = match &e {
                        SubidsError::Limits(reason) => Outcome::Refused { reason: reason.clone() },
                        other => Outcome::Failed {
                            error: other.to_string(),
                        },
                    };
                    report.push(Duty::Subids, path, desired, outcome);
                }
            }
            return report;
        }
    };
    for (desired, result) in desired.iter().zip(results) {
        match result {
            Ok(a) => {
                for (path, added) in paths.into_iter().zip([&a.added_subuid, &a.added_subgid]) {
                    let outcome = if added.is_empty() {
                        Outcome::Correct
                    } else {
                        let lines: Vec<String> = added
                            .iter()
                            .map(|r| format!("{}:{}:{}", a.tenant, r.start, r.count))
                            .collect();
                        let change = format!("added {}", lines.join(", "));
                        if dry_run {
                            Outcome::WouldChange { change }
                        } else {
                            Outcome::Changed { change }
                        }
                    };
                    report.push(Duty::Subids, path, desired, outcome);
                }
            }
            Err(SubidsError::InvalidTenant { reason, .. }) => {
                for path in paths {
                    let reason = reason.clone();
                    report.push(Duty::Subids, path, desired, Outcome::Refused { reason });
                }
            }
            Err(e) => {
                for path in paths {
                    let outcome = if e.is_refusal() {
                        Outcome::Refused { reason: e.to_string() }
                    } else {
                        Outcome::Failed { error: e.to_string() }
                    };
                    report.push(Duty::Subids, path, desired, outcome);
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_to_what_login_defs_allows_in_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let defs = dir.path().join("login.defs");
        let config_with = |subids: &str| {
            let text = format!("[subids]\n{subids}");
            Config::from_sources(&[(PathBuf::from("/test/nonrootd.toml"), text)]).unwrap()
        };
        let limits = |config: &Config, text: &str| {
            std::fs::write(&defs, text).unwrap();
            let limits = Settings::with_login_defs(config, dir.path(), &defs).limits;
            (limits.min, limits.max)
        };
        let config = config_with("");
        assert_eq!(limits(&config, ""), (100_000, 600_100_000));
        let both = "SUB_UID_MIN 200000\nSUB_UID_MAX 900000000\nSUB_GID_MIN 300000\nSUB_GID_MAX 800000000\n";
        assert_eq!(limits(&config, both), (300_000, 800_000_000));
        // The last line wins; a value that is not wholly a number is shadow's default.
        let text = "SUB_GID_MIN 300000\nSUB_GID_MIN 250000\nSUB_UID_MAX 500000000 # comment\n";
        assert_eq!(limits(&config, text), (250_000, 600_100_000));
        assert_eq!(limits(&config_with("min = 1000\nmax = 2000\n"), both), (1000, 2000));
        // A line that is not UTF-8 spoils only itself.
        std::fs::write(&defs, b"# caf\xe9\nSUB_UID_MIN 1000000\nSUB_GID_MIN 1000000\n").unwrap();
        let read = Settings::with_login_defs(&config, dir.path(), &defs).limits;
        assert_eq!(read.min, 1_000_000);
        // Never id 0, the host's root.
        assert_eq!(limits(&config, "SUB_UID_MIN 0\nSUB_GID_MIN 0\n"), (1, 600_100_000));
        let zero = Config::from_sources(&[(PathBuf::from("/test/nonrootd.toml"), "[subids]\nmin = 0\n".into())]);
        let errors: Vec<String> = zero.unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            ["/test/nonrootd.toml:2: subids.min: 0 would hand out id 0, which maps the host's root: the lowest is 1"]
        );
    }
}
