//! Man pages (clap_mangen) and shell completions (clap_complete) generated from the CLI
//! definitions, so they never drift from `--help`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use clap_complete::Shell;
use clap_mangen::Man;

/// A generated file: path relative to the repository root, and its contents.
pub struct Generated {
    pub path: String,
    pub bytes: Vec<u8>,
}

const MANUAL: &str = "nonrootd manual";

/// A page as clap_mangen renders it, with `description` (roff) appended to its
/// DESCRIPTION and `sections` (roff) added before VERSION.
fn man_page(man: Man, cmd: &clap::Command, description: &str, sections: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        out.extend_from_slice(synopsis(&man, cmd)?.as_bytes());
        man.render_description_section(out)?;
        out.extend_from_slice(description.as_bytes());
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(out)?;
        }
        if cmd.has_subcommands() {
            man.render_subcommands_section(out)?;
        }
        out.extend_from_slice(sections.as_bytes());
        if cmd.get_version().is_some() {
            man.render_version_section(out)?;
        }
        Ok(())
    };
    render(&mut out).expect("rendering into memory cannot fail");
    out
}

/// clap_mangen's SYNOPSIS, with "..." after a positional that takes several values (it shows
/// `<NAME>` alone, as if one were all).
fn synopsis(man: &Man, cmd: &clap::Command) -> io::Result<String> {
    let mut out = Vec::new();
    man.render_synopsis_section(&mut out)?;
    let mut text = String::from_utf8(out).expect("roff from UTF-8 help texts");
    let repeated = cmd
        .get_positionals()
        .filter(|a| matches!(a.get_action(), clap::ArgAction::Append));
    for name in repeated.flat_map(|a| a.get_value_names().unwrap_or_default()) {
        let shown = format!("<\\fI{name}\\fR>");
        text = text.replace(&format!("{shown} "), &format!("{shown}... "));
    }
    Ok(text)
}

const NONROOTD_DESCRIPTION: &str = r#".PP
.B nonrootd
is started by systemd (\fBnonrootd.service\fR, \fBType=notify\fR).
It applies every configured duty once at start, then re-applies the docker
duties whenever one of the units in \fB[docker] units\fR becomes active, and
restores a socket's ACL the moment the socket is recreated or the ACL is removed
(inotify on the socket's directory).
What failed (not what was refused) is tried again with no event to trigger it:
the docker, dmi and subids duties after 5 s, doubling up to 10 minutes; the
sockets, when the grant record was unavailable (its lock held past the wait
included) or a name lookup failed, after 1 s, doubling up to a minute. A socket
that failed otherwise (a read-only file system) and a volume wait for the next
event or apply.
It tells systemd it is ready once the first apply is done and it owns
\fBorg.nonrootd1\fR on the system bus, or connecting failed or got no answer
within 5 seconds (volume walks go on after that).
Without a system bus it logs one warning and keeps working on inotify; a bus that
does not answer within 5 seconds counts as none, and it keeps trying to connect.
.PP
The thread that restores sockets waits for inotify and writes a new socket's
grant at deadline scheduling (\fBSCHED_DEADLINE\fR, 1 ms of CPU per 10 ms, which
the kernel enforces), so a client connecting to a recreated socket does not wait
for a CPU behind the processes starting Docker.
It keeps that scheduling for its other work (the kernel bounds it): on Linux 6.18 a
thread that leaves deadline scheduling and comes back can stay throttled for good.
Where deadline scheduling is refused it uses real-time priority 1 instead, only
while waiting and writing.
It asks NSS nothing meanwhile: the user and group names of \fB[[socket]]\fR are
looked up at normal priority (at start, on reload and re-checks, and again as each
grant is reported, 2 ms after it), and a name whose id changed gets its new id then;
until then the new socket keeps the id the old one had.
A socket that appears with mode 0000 and no ACL (Go programs such as dockerd
without socket activation bind with umask 0777, then chown and chmod) is granted
at the change of mode that follows, not before: a grant written first would keep
the socket's group at no access, since a chmod of a file with an ACL changes only
its mask.
Where deadline scheduling is refused (a \fBCPUAffinity=\fR, \fBAllowedCPUs=\fR
or container cpuset that keeps the daemon off some CPUs), it uses real-time
priority (\fBSCHED_FIFO\fR 1) instead.
Neither is inherited by child processes.
While the thread is at deadline scheduling, \fBtaskset\fR(1) cannot keep it
off some CPUs (\fBEBUSY\fR): set \fBCPUAffinity=\fR in a drop-in and restart the
daemon instead.
Both need \fBCAP_SYS_NICE\fR (in the unit's bounding set); at start, before any
other thread, the daemon installs a seccomp filter that lets
\fBsched_setattr\fR(2) change only the calling thread, and it never asks for
either without that filter.
Refused both, the thread runs at normal priority and a warning says so;
\fBsystemctl reload nonrootd\fR tries again.
\fBSystemCallFilter=~sched_setattr\fR in a drop-in turns it off.
.PP
On the system bus it serves \fBorg.nonrootd1\fR, object \fB/org/nonrootd1\fR,
interface \fBorg.nonrootd1.Manager\fR: status is open to every user (while the
daemon's request queue is full, callers other than root are told it is busy
instead of waiting), except what a volume's walk says of the files inside it
(an example of a skipped file, the first failure), which only root sees, in the
status (the \fBPathChanged\fR signals never carry it; the journal does, which
root and the groups \fBadm\fR and \fBsystemd\-journal\fR can read); applying, reloading and the
subordinate id calls, listing included, need uid 0, and each such call is logged
with the caller's bus name (see \fBD-BUS INTERFACE\fR).
Errors are \fBorg.nonrootd1.Error.AccessDenied\fR (not root),
\fBInvalidArgs\fR (an unknown duty, a name that is not a valid user name),
\fBBusy\fR and \fBFailed\fR (the message says why, naming file and line where
one is at fault).
A reload is answered once the new configuration is in force, or refused with the
file and line at fault; the apply of every duty follows, and its outcome shows in
the status.
"#;

const NONROOTD_SECTIONS: &str = r#".SH "D-BUS INTERFACE"
Service \fBorg.nonrootd1\fR, object \fB/org/nonrootd1\fR, interface
\fBorg.nonrootd1.Manager\fR (never activated by the bus: calls to a daemon that
does not run fail). Strings called JSON hold one JSON document, as
\fBnonrootctl\fR prints with \fB\-\-json\fR.
.TP
.BR Status "() \(-> s"
The status as JSON: version, pid, start, last trigger, the apply or subordinate
id call running now (\fBapplying\fR; it may be waiting for a lock, which holds up
no other call) and the volume walk running now (\fBwalking\fR), whether the daemon is on the bus and follows systemd, the last
reload's outcome, and per duty and path the desired and observed state, last
change and last error. Every user.
.TP
.BR Apply "(as duties) \(-> s"
Applies the named duties (\fBdocker\fR, \fBsockets\fR, \fBdmi\fR,
\fBsubids\fR, \fBvolumes\fR; all when empty) and returns the report as JSON.
Root.
.TP
.BR Reload "() \(-> ()"
Reads the configuration again; answered once it is in force, or refused with
the file and line at fault. Root.
.TP
.BR AllocateSubids "(s name, u count) \(-> s"
Gives the tenant (user name or uid) \fIcount\fR subordinate uids and gids (0:
the configured count); returns \fI"NAME START COUNT"\fR. Root.
.TP
.BR ReleaseSubids "(s name) \(-> s"
Removes the tenant's ranges from both files and holds them back. Root.
.TP
.BR ListSubids "() \(-> s"
Every range of both files as JSON. Root.
.TP
.BR Version " property s"
The daemon's version.
.TP
.BR State " property s"
\fBrunning\fR, \fBdegraded\fR (something refused or failed, or a reload
refused) or \fBstopping\fR; read on demand, no change signal.
.TP
.BR PathChanged " signal (s duty, s path, s outcome, s detail)"
A path was changed, refused or failed; \fIoutcome\fR is \fBchanged\fR,
\fBrefused\fR or \fBfailed\fR. For a volume the detail only says that root
sees it in \fBStatus\fR().
.SH SIGNALS
.TP
.B SIGHUP
Re-read the configuration (as \fBnonrootctl reload\fR and \fBsystemctl reload
nonrootd\fR do; the latter sends it when the daemon is not on the system bus).
Ignored until the daemon is ready to act on it.
An invalid configuration is refused, the error is logged and the old
configuration stays in force.
.TP
.BR SIGTERM ", " SIGINT
Stop cleanly: the apply or subordinate id call running ends and the volume walk running
stops at its next directory; their \fBApply\fR() callers get what was done (volumes not
walked are reported failed), callers of calls queued after them an error.
.SH FILES
.TP
.I /etc/nonrootd/nonrootd.toml
The configuration; see \fBnonrootd.toml\fR(5).
.TP
.I /etc/nonrootd/nonrootd.d/*.toml
Drop-ins, read after the main file in lexical order.
.TP
.I /var/lib/nonrootd/
State: \fIgrants.json\fR records the ACL entries nonrootd granted (so only those
are ever revoked) and the last id of each configured name (what the name is
granted as while its lookup fails; an earlier version, which refuses unknown
fields, finds such a file unreadable and grants no socket until the \fB"names"\fR
field is removed), \fIapply.lock\fR serializes the applies of the sockets duty
(which read and write that record) by the daemon, the Docker hook and \fBnonrootctl\fR;
\fIsubids-managed.jsonl\fR and \fIsubids-quarantine.json\fR record the subordinate
id ranges nonrootd allocated and the released ranges it holds back;
\fIremoving\fR, left by the package's removal scripts until its files are gone,
makes every apply of the sockets duty, the daemon's included, revoke what nonrootd
granted instead of granting (it is looked for under \fIapply.lock\fR). Run as root,
nonrootd and \fBnonrootctl\fR refuse a state directory that anyone but root could
change: it, and every directory and symlink on its path, must be root's, and it
must be writable by root alone.
.TP
.I /usr/lib/systemd/system/nonrootd.service
The hardened unit.
Paths outside \fI/etc\fR, \fI/run\fR, \fI/var/lib/docker\fR and
\fI/sys/firmware/dmi/tables\fR are read-only to the daemon: give others with a
drop-in (\fBsystemctl edit nonrootd\fR, \fBReadWritePaths=\-\fR\fIPATH\fR: the
\fB\-\fR lets the unit start while the path is missing), then restart it (a
reload does not change the sandbox, and a path made after the start stays
read-only until a restart).
Below \fI/home\fR, \fI/root\fR and \fI/run/user\fR, which the unit's
\fBProtectHome=yes\fR hides, the drop-in also needs \fBProtectHome=read-only\fR.
The unit's \fBPrivateTmp=yes\fR gives the daemon a \fI/tmp\fR and \fI/var/tmp\fR of its
own: a path below them also needs \fBPrivateTmp=no\fR.
\fBnonrootctl check\-config\fR names each such path and the drop-in it needs.
The sandbox limits what a bug in the daemon can do, not what a compromised daemon
can: it runs as uid 0 on the system bus, where systemd's own interface obeys root
without asking polkit (a transient unit runs outside the sandbox), and \fI/etc\fR
is writable for shadow's files.
.TP
.I /usr/lib/systemd/system/docker.service.d/nonrootd.conf
.TQ
.I /usr/lib/systemd/system/docker.socket.d/nonrootd.conf
Docker's \fBExecStartPost=\fR hooks: \fBnonrootctl apply \-\-local\fR, bounded
and with failures ignored, so the host is prepared before Docker is reported
started, even at boot before the D-Bus daemon runs. The DMI tables (root's again
after every boot) are prepared by an \fBExecStartPre=\fR of docker.service, before
dockerd starts the containers that have a restart policy. The socket's hook runs at
\fBNice=10\fR: the socket already listens, and the daemon's socket fixer has
granted before it starts; it does not take a CPU from the first clients.
.SH "SEE ALSO"
\fBnonrootctl\fR(1), \fBnonrootd.toml\fR(5), \fBsystemd.exec\fR(5), \fBacl\fR(5)
"#;

const NONROOTCTL_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
.B 0
Success: everything asked for is done (or, for \fBcheck\-config\fR, the
configuration is valid).
.TP
.B 1
Something was refused or failed, or the configuration is invalid; the reason is
printed per path.
For \fBstatus\fR, also when the daemon refused the last reload and keeps the
previous configuration.
.TP
.B 2
Wrong usage.
.TP
.B 3
The daemon is not running, or the system bus cannot be reached (\fBstatus\fR,
which then shows a local read-only inspection, and \fBreload\fR).
.SH ENVIRONMENT
.TP
.B STATE_DIRECTORY
The state directory when \fB\-\-state\-dir\fR is not given (set by systemd's
\fBStateDirectory=\fR); else \fI/var/lib/nonrootd\fR.
.TP
.B NO_COLOR
Disables colours.
.SH FILES
.TP
.I /etc/nonrootd/nonrootd.toml
.TQ
.I /etc/nonrootd/nonrootd.d/*.toml
The configuration; see \fBnonrootd.toml\fR(5).
.TP
.I /var/lib/nonrootd/
What nonrootd granted, the apply lock, and the subordinate id ranges it
allocated and holds back after a release. Refused when run as root if anyone but
root could change it (see \fBnonrootd\fR(8)).
.SH "SEE ALSO"
\fBnonrootd\fR(8), \fBnonrootd.toml\fR(5)
"#;

/// The EXIT STATUS section of a subcommand page (`page`: its file name), for the
/// subcommands whose exit status tells that the daemon is not running.
fn exit_status_section(page: &str) -> &'static str {
    match page {
        "nonrootctl-status.1" => STATUS_EXIT_STATUS,
        "nonrootctl-reload.1" => RELOAD_EXIT_STATUS,
        _ => "",
    }
}

const STATUS_EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
.B 0
No path is refused or failed, and the daemon did not refuse its last reload.
.TP
.B 1
A path is refused or failed; or the daemon refused its last reload and keeps the
previous configuration (the \fBReload:\fR line says why); or no status came
back: the daemon refused the call or did not answer in time (with \fB\-\-json\fR,
the document then has \fB"error"\fR).
.TP
.B 2
Wrong usage.
.TP
.B 3
The daemon is not running, or the system bus cannot be reached (then whether
it runs is unknown: the first line says which, and \fB\-\-json\fR gives
\fB"running": false\fR or \fBnull\fR); a local read-only inspection follows.
"#;

const RELOAD_EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
.B 0
The new configuration is in force, or (off the bus, under systemd) the daemon was sent
SIGHUP.
.TP
.B 1
The configuration was refused (the old one stays in force; the error names
file, line and key), permission was denied, or the daemon did not answer in time.
.TP
.B 2
Wrong usage.
.TP
.B 3
The daemon is not running (or, outside \fBsystemctl reload\fR, not reachable on
the system bus; run by systemd, \fBreload\fR then sends the daemon SIGHUP).
"#;

/// Every generated file, in memory.
pub fn all() -> Vec<Generated> {
    let mut files = Vec::new();

    let mut daemon = nonrootd::daemon::command();
    daemon.build();
    files.push(Generated {
        path: "man/nonrootd.8".into(),
        bytes: man_page(
            Man::new(daemon.clone()).section("8").manual(MANUAL),
            &daemon,
            NONROOTD_DESCRIPTION,
            NONROOTD_SECTIONS,
        ),
    });

    // nonrootctl(1) lists the subcommands; each gets its own page, nonrootctl-NAME(1), as
    // git(1) does.
    let mut ctl = nonrootd::cli::command().disable_help_subcommand(true);
    ctl.build();
    files.push(Generated {
        path: "man/nonrootctl.1".into(),
        bytes: man_page(Man::new(ctl.clone()).manual(MANUAL), &ctl, "", NONROOTCTL_SECTIONS),
    });
    fn subcommand_pages(cmd: &clap::Command, files: &mut Vec<Generated>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let man = Man::new(sub.clone()).manual(MANUAL);
            let page = man.get_filename();
            let path = format!("man/{page}");
            let sections = format!(
                "{}.SH \"SEE ALSO\"\n\\fB{}\\fR(1), \\fBnonrootd.toml\\fR(5)\n",
                exit_status_section(&page),
                cmd.get_display_name().unwrap_or(cmd.get_name()).replace('-', "\\-")
            );
            files.push(Generated {
                path,
                bytes: man_page(man, sub, "", &sections),
            });
            subcommand_pages(sub, files);
        }
    }
    subcommand_pages(&ctl, &mut files);

    for (shell, ext) in [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")] {
        let mut cmd = nonrootd::cli::command();
        let mut bytes = Vec::new();
        clap_complete::generate(shell, &mut cmd, "nonrootctl", &mut bytes);
        files.push(Generated {
            path: format!("completions/nonrootctl.{ext}"),
            bytes,
        });
    }
    files
}

/// Files in the generated directories that no longer correspond to a command.
fn orphans(root: &Path, generated: &[Generated]) -> Vec<String> {
    let mut orphans = Vec::new();
    for (dir, is_generated) in [
        (
            "man",
            (|name: &str| name.starts_with("nonrootctl") || name == "nonrootd.8") as fn(&str) -> bool,
        ),
        ("completions", |_: &str| true),
    ] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{dir}/{name}");
            if is_generated(&name) && !generated.iter().any(|g| g.path == path) {
                orphans.push(path);
            }
        }
    }
    orphans.sort();
    orphans
}

/// Writes every generated file and removes orphans; returns what changed.
pub fn write_all(root: &Path) -> io::Result<Vec<String>> {
    let generated = all();
    let mut written = Vec::new();
    for path in orphans(root, &generated) {
        fs::remove_file(root.join(&path))?;
        written.push(format!("{path} (removed)"));
    }
    for file in generated {
        let path = root.join(&file.path);
        if fs::read(&path).ok().as_deref() == Some(&file.bytes[..]) {
            continue;
        }
        fs::create_dir_all(path.parent().expect("generated files live in a directory"))?;
        let mut out = fs::File::create(&path)?;
        out.write_all(&file.bytes)?;
        written.push(file.path);
    }
    Ok(written)
}

/// What `write_all` would change, as messages.
pub fn stale(root: &Path) -> Vec<String> {
    let generated = all();
    let mut problems: Vec<String> = orphans(root, &generated)
        .into_iter()
        .map(|p| format!("{p} is generated but no command produces it any more"))
        .collect();
    for file in &generated {
        match fs::read(root.join(&file.path)) {
            Ok(bytes) if bytes == file.bytes => {}
            Ok(_) => problems.push(format!("{} is stale", file.path)),
            Err(e) => problems.push(format!("{}: {e}", file.path)),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_current() {
        let problems = stale(&crate::root());
        assert!(problems.is_empty(), "run `cargo xtask gen`: {problems:#?}");
    }

    #[test]
    fn the_pages_of_commands_that_ask_the_daemon_document_exit_3() {
        let files = all();
        for page in ["man/nonrootctl.1", "man/nonrootctl-status.1", "man/nonrootctl-reload.1"] {
            let text = files
                .iter()
                .find(|f| f.path == page)
                .map(|f| String::from_utf8_lossy(&f.bytes));
            let text = text.unwrap_or_else(|| panic!("{page} missing"));
            let exit_status = text.split(".SH \"EXIT STATUS\"").nth(1).unwrap_or_default();
            assert!(
                exit_status.contains(".B 3\nThe daemon is not running"),
                "{page}: {text}"
            );
        }
    }

    #[test]
    fn every_subcommand_has_a_page() {
        let files = all();
        for sub in nonrootd::cli::command().get_subcommands() {
            let page = format!("man/nonrootctl-{}.1", sub.get_name());
            assert!(files.iter().any(|f| f.path == page), "{page} missing");
        }
    }
}
