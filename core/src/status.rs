//! The daemon's status document (what `Status()` returns over D-Bus) and its rendering for
//! `nonrootctl status`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duty::Duty;
use crate::report::{Entry, Outcome, Report};

/// Something that happened at a time (seconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    pub at: u64,
    pub text: String,
}

/// The last known state of one path, with when it last changed and last went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStatus {
    #[serde(flatten)]
    pub entry: Entry,
    pub last_change: Option<Stamped>,
    pub last_error: Option<Stamped>,
}

/// Everything `nonrootctl status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    pub started_at: u64,
    pub now: u64,
    #[serde(serialize_with = "crate::report::lossy_path")]
    pub config: PathBuf,
    /// Whether the daemon is on the system bus.
    pub system_bus: bool,
    /// Whether it follows systemd's unit signals there.
    pub following_systemd: bool,
    pub last_trigger: Option<Stamped>,
    /// The apply (or subids call) running now, and since when.
    #[serde(default)]
    pub applying: Option<Stamped>,
    /// The volume walk running now (what triggered it), and since when.
    #[serde(default)]
    pub walking: Option<Stamped>,
    /// Set while a reload was refused and the previous config stays in force.
    pub reload_error: Option<Stamped>,
    pub paths: Vec<PathStatus>,
}

/// What others than root see instead of what a volume's walk says of the files in it.
pub const VOLUME_DETAILS_FOR_ROOT: &str = "details for root only (nonrootctl status as root)";

impl DaemonStatus {
    /// The status as others than root see it: what a volume's walk says of the files inside
    /// it (names, the first failure) is left out, since the daemon reads private directories.
    pub fn for_others(mut self) -> DaemonStatus {
        for path in self.paths.iter_mut().filter(|p| p.entry.duty == Duty::Volumes) {
            path.entry.outcome = path.entry.outcome.with_detail(VOLUME_DETAILS_FOR_ROOT);
            for stamped in [&mut path.last_change, &mut path.last_error].into_iter().flatten() {
                stamped.text = VOLUME_DETAILS_FOR_ROOT.to_string();
            }
        }
        self
    }

    /// True when no path is refused or failed and the last reload was not refused.
    pub fn healthy(&self) -> bool {
        self.reload_error.is_none() && !self.paths.iter().any(|p| p.entry.outcome.is_problem())
    }
}

/// Keeps the latest outcome per (duty, path, desired), stamping changes and errors.
#[derive(Clone, Debug, Default)]
pub struct PathBook {
    paths: BTreeMap<(Duty, PathBuf, String), PathStatus>,
}

impl PathBook {
    /// Records what an apply found at time `now`. A report covers each path it names
    /// completely (an apply of one socket leaves the other paths out, never part of that
    /// socket's entries), so the rows of a named path that it no longer has are dropped: a
    /// refusal whose cause is gone (a user created since) does not linger.
    pub fn record(&mut self, report: &Report, now: u64) {
        let named: BTreeSet<(Duty, &Path)> = report.entries.iter().map(|e| (e.duty, e.path.as_path())).collect();
        let current: BTreeSet<(Duty, &Path, &str)> = report
            .entries
            .iter()
            .map(|e| (e.duty, e.path.as_path(), e.desired.as_str()))
            .collect();
        self.paths.retain(|(duty, path, desired), _| {
            !named.contains(&(*duty, path.as_path())) || current.contains(&(*duty, path.as_path(), desired.as_str()))
        });
        for entry in &report.entries {
            let key = (entry.duty, entry.path.clone(), entry.desired.clone());
            let status = self.paths.entry(key).or_insert_with(|| PathStatus {
                entry: entry.clone(),
                last_change: None,
                last_error: None,
            });
            match &entry.outcome {
                Outcome::Changed { change } => {
                    status.last_change = Some(Stamped {
                        at: now,
                        text: change.clone(),
                    })
                }
                Outcome::Refused { reason: text } | Outcome::Failed { error: text } => {
                    status.last_error = Some(Stamped {
                        at: now,
                        text: text.clone(),
                    })
                }
                _ => {}
            }
            status.entry = entry.clone();
        }
    }

    /// Forgets the rows of `path` for `duty` (a problem that a later apply found gone without
    /// naming the path again).
    pub fn forget(&mut self, duty: Duty, path: &Path) {
        self.paths.retain(|(d, p, _), _| !(*d == duty && p == path));
    }

    /// Forgets everything (after a reload the desired state is new).
    pub fn clear(&mut self) {
        self.paths.clear();
    }

    pub fn snapshot(&self) -> Vec<PathStatus> {
        self.paths.values().cloned().collect()
    }
}

/// "3s", "5min", "2h", "4d".
pub fn ago(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}min", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

struct Paint {
    color: bool,
}

impl Paint {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// The symbol and colour of an outcome: ✓ correct, ✗ refused or failed, – missing.
fn mark(outcome: &Outcome, paint: &Paint) -> String {
    match outcome {
        Outcome::Correct | Outcome::Changed { .. } => paint.paint("32", "✓"),
        Outcome::Missing | Outcome::WouldChange { .. } => paint.paint("2", "–"),
        Outcome::Refused { .. } | Outcome::Failed { .. } => paint.paint("31", "✗"),
    }
}

/// Renders rows like `systemctl status`: a summary, then a row per duty and path.
pub fn render(status: &DaemonStatus, color: bool) -> String {
    let paint = Paint { color };
    let mut out = String::new();
    let (dot, state) = if status.healthy() {
        (paint.paint("32", "●"), paint.paint("32", "active (running)"))
    } else {
        (paint.paint("31", "●"), paint.paint("31", "active (degraded)"))
    };
    let _ = writeln!(
        out,
        "{dot} nonrootd {} - {state} since {} ago",
        status.version,
        ago(status.now.saturating_sub(status.started_at))
    );
    let _ = writeln!(out, "    Config: {}", status.config.display());
    let bus = match (status.system_bus, status.following_systemd) {
        (true, true) => "connected, following systemd",
        (true, false) => "connected, not following systemd (re-applies on inotify and API calls only)",
        (false, _) => "not connected (inotify only)",
    };
    let _ = writeln!(out, "       Bus: {bus}");
    if let Some(trigger) = &status.last_trigger {
        let _ = writeln!(
            out,
            "  Last run: {} ({} ago)",
            trigger.text,
            ago(status.now.saturating_sub(trigger.at))
        );
    }
    if let Some(applying) = &status.applying {
        let _ = writeln!(
            out,
            "  Applying: {} (for {})",
            applying.text,
            ago(status.now.saturating_sub(applying.at))
        );
    }
    if let Some(walking) = &status.walking {
        let _ = writeln!(
            out,
            "   Walking: volumes, for {} (for {})",
            walking.text,
            ago(status.now.saturating_sub(walking.at))
        );
    }
    if let Some(error) = &status.reload_error {
        let _ = writeln!(
            out,
            "    Reload: {} {} ago, previous config still in force: {}",
            paint.paint("31", "refused"),
            ago(status.now.saturating_sub(error.at)),
            error.text
        );
    }
    let _ = writeln!(out);
    render_rows(&mut out, status.paths.iter().map(|p| (&p.entry, p)), status.now, &paint);
    out
}

/// Renders a local, read-only inspection (no daemon running).
pub fn render_report(report: &Report, color: bool) -> String {
    let paint = Paint { color };
    let mut out = String::new();
    render_rows(&mut out, report.entries.iter().map(|e| (e, None)), 0, &paint);
    out
}

fn render_rows<'a, I, S>(out: &mut String, rows: I, now: u64, paint: &Paint)
where
    I: Iterator<Item = (&'a Entry, S)>,
    S: Into<Option<&'a PathStatus>>,
{
    for (entry, status) in rows {
        let detail = match &entry.outcome {
            Outcome::Refused { reason } => format!(": {reason}"),
            Outcome::Failed { error } => format!(": {error}"),
            Outcome::WouldChange { change } => format!(": needs {change}"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "{} {:<7} {} ({}){detail}",
            mark(&entry.outcome, paint),
            entry.duty,
            entry.path.display(),
            entry.desired
        );
        if let Some(change) = status.into().and_then(|s| s.last_change.as_ref()) {
            let _ = write!(
                out,
                " [fixed {} ago: {}]",
                ago(now.saturating_sub(change.at)),
                change.text
            );
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, outcome: Outcome) -> Entry {
        Entry {
            duty: Duty::Sockets,
            path: PathBuf::from(path),
            desired: "user:4321:rw-".into(),
            outcome,
        }
    }

    #[test]
    fn the_book_keeps_the_latest_outcome_and_stamps_changes_and_errors() {
        let mut book = PathBook::default();
        let changed = Outcome::Changed {
            change: "+user:4321:rw-".into(),
        };
        book.record(
            &Report {
                entries: vec![entry("/run/docker.sock", changed)],
            },
            100,
        );
        book.record(
            &Report {
                entries: vec![entry("/run/docker.sock", Outcome::Correct)],
            },
            160,
        );
        let rows = book.snapshot();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].entry.outcome, Outcome::Correct);
        assert_eq!(
            rows[0].last_change,
            Some(Stamped {
                at: 100,
                text: "+user:4321:rw-".into()
            })
        );
        assert_eq!(rows[0].last_error, None);
    }

    #[test]
    fn a_path_reported_again_loses_the_rows_it_no_longer_has_and_other_paths_keep_theirs() {
        let mut book = PathBook::default();
        let refused = Entry {
            desired: "user cadvisor".into(),
            ..entry(
                "/run/docker.sock",
                Outcome::Refused {
                    reason: "no such user \"cadvisor\"".into(),
                },
            )
        };
        let other = entry(
            "/run/containerd.sock",
            Outcome::Refused {
                reason: "is a symlink".into(),
            },
        );
        book.record(
            &Report {
                entries: vec![refused, entry("/run/docker.sock", Outcome::Correct), other.clone()],
            },
            100,
        );
        // The user exists now: one socket's apply grants it.
        let granted = Entry {
            desired: "user:4321:rw-, user:999:rw-".into(),
            ..entry(
                "/run/docker.sock",
                Outcome::Changed {
                    change: "+user:999:rw-".into(),
                },
            )
        };
        book.record(
            &Report {
                entries: vec![granted.clone()],
            },
            160,
        );
        let rows: Vec<Entry> = book.snapshot().into_iter().map(|row| row.entry).collect();
        assert_eq!(rows, [other, granted]);
        // An empty report (a failed apply) names no path and drops nothing.
        book.record(&Report::default(), 200);
        assert_eq!(book.snapshot().len(), 2);
    }

    #[test]
    fn the_bus_line_tells_following_systemd_apart_from_being_connected() {
        let mut status = DaemonStatus {
            following_systemd: false,
            ..running_for_3min(Vec::new())
        };
        let bus_line = |status: &DaemonStatus| {
            render(status, false)
                .lines()
                .find(|l| l.trim_start().starts_with("Bus:"))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(
            bus_line(&status),
            "Bus: connected, not following systemd (re-applies on inotify and API calls only)"
        );
        status.following_systemd = true;
        assert_eq!(bus_line(&status), "Bus: connected, following systemd");
        status.system_bus = false;
        status.following_systemd = false;
        assert_eq!(bus_line(&status), "Bus: not connected (inotify only)");
    }

    #[test]
    fn renders_like_systemctl_status() {
        let mut book = PathBook::default();
        book.record(
            &Report {
                entries: vec![
                    entry(
                        "/run/docker.sock",
                        Outcome::Changed {
                            change: "+user:4321:rw-".into(),
                        },
                    ),
                    entry(
                        "/run/containerd.sock",
                        Outcome::Refused {
                            reason: "is a symlink".into(),
                        },
                    ),
                ],
            },
            1000,
        );
        let status = DaemonStatus {
            last_trigger: Some(Stamped {
                at: 1000,
                text: "docker.socket became active".into(),
            }),
            applying: Some(Stamped {
                at: 1057,
                text: "reload (SIGHUP)".into(),
            }),
            walking: Some(Stamped {
                at: 940,
                text: "startup".into(),
            }),
            ..running_for_3min(book.snapshot())
        };
        assert!(!status.healthy());
        assert_eq!(
            render(&status, false),
            "● nonrootd 0.1.0 - active (degraded) since 3min ago\n\
             \x20   Config: /etc/nonrootd/nonrootd.toml\n\
             \x20      Bus: connected, following systemd\n\
             \x20 Last run: docker.socket became active (1min ago)\n\
             \x20 Applying: reload (SIGHUP) (for 3s)\n\
             \x20  Walking: volumes, for startup (for 2min)\n\n\
             ✗ sockets /run/containerd.sock (user:4321:rw-): is a symlink\n\
             ✓ sockets /run/docker.sock (user:4321:rw-) [fixed 1min ago: +user:4321:rw-]\n"
        );
        assert!(render(&status, true).contains("\x1b[31m✗\x1b[0m"));
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<DaemonStatus>(&json).unwrap(), status);
    }

    /// A daemon started 3 minutes ago, following systemd, with these paths and nothing else.
    fn running_for_3min(paths: Vec<PathStatus>) -> DaemonStatus {
        DaemonStatus {
            version: "0.1.0".into(),
            pid: 42,
            started_at: 880,
            now: 1060,
            config: PathBuf::from("/etc/nonrootd/nonrootd.toml"),
            system_bus: true,
            following_systemd: true,
            last_trigger: None,
            applying: None,
            walking: None,
            reload_error: None,
            paths,
        }
    }

    #[test]
    fn others_than_root_do_not_see_what_a_walk_says_of_the_files_in_a_volume() {
        let mut book = PathBook::default();
        let walked = Outcome::Failed {
            error: "2 of 3 changed (1 skipped: 1 with hard links (e.g. secret/key)); 1 failed, first db/x".into(),
        };
        let volume = Entry {
            duty: Duty::Volumes,
            path: PathBuf::from("/srv/db"),
            desired: "owner 999:999".into(),
            outcome: walked.clone(),
        };
        let socket = entry(
            "/run/docker.sock",
            Outcome::Changed {
                change: "+user:4321:rw-".into(),
            },
        );
        book.record(
            &Report {
                entries: vec![volume, socket.clone()],
            },
            100,
        );
        let status = running_for_3min(book.snapshot());
        let for_others = status.clone().for_others();
        let json = serde_json::to_string(&for_others).unwrap();
        assert!(!json.contains("secret") && !json.contains("db/x"), "{json}");
        let shown = for_others.paths.iter().find(|p| p.entry.duty == Duty::Volumes).unwrap();
        assert_eq!(shown.entry.outcome, walked.with_detail(VOLUME_DETAILS_FOR_ROOT));
        assert_eq!(shown.last_error.as_ref().unwrap().text, VOLUME_DETAILS_FOR_ROOT);
        assert!(
            for_others.paths.iter().any(|p| p.entry == socket),
            "other duties unchanged"
        );
        assert!(
            serde_json::to_string(&status).unwrap().contains("secret/key"),
            "root sees all"
        );
    }

    #[test]
    fn a_refused_reload_is_degraded_and_says_why() {
        let mut status = running_for_3min(vec![PathStatus {
            entry: entry("/run/docker.sock", Outcome::Correct),
            last_change: None,
            last_error: None,
        }]);
        assert!(status.healthy());
        assert!(render(&status, false).starts_with("● nonrootd 0.1.0 - active (running) since 3min ago\n"));
        status.reload_error = Some(Stamped {
            at: 1000,
            text: "/etc/nonrootd/nonrootd.toml:8: socket.access: \"rwx\" is not an access: use \"rw\" or \"r\"".into(),
        });
        assert!(!status.healthy());
        assert_eq!(
            render(&status, false),
            "● nonrootd 0.1.0 - active (degraded) since 3min ago\n\
             \x20   Config: /etc/nonrootd/nonrootd.toml\n\
             \x20      Bus: connected, following systemd\n\
             \x20   Reload: refused 1min ago, previous config still in force: \
             /etc/nonrootd/nonrootd.toml:8: socket.access: \"rwx\" is not an access: use \"rw\" or \"r\"\n\n\
             ✓ sockets /run/docker.sock (user:4321:rw-)\n"
        );
        assert!(render(&status, true).contains("\x1b[31mrefused\x1b[0m"));
    }
}
