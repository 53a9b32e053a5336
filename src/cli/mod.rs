//! `nonrootctl`: the command-line interface.

pub mod subids;
pub mod volumes;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use nonrootd_core::config::Config;
use nonrootd_core::duty::{Duty, DutySet};
use nonrootd_core::report::{Outcome, Report};
use nonrootd_core::sandbox;
use nonrootd_core::status::{DaemonStatus, render, render_report};
use serde::Serialize;

use crate::apply::{DOCKER_DAEMON_JSON, Request, apply_on_host, data_root};
use crate::client::{self, CallError};
use crate::config_file::{self, DEFAULT_CONFIG};
use crate::ids::SystemIds;
use crate::state::default_state_dir;

/// Prepares this host for non-root containers.
#[derive(Parser, Debug)]
#[command(name = "nonrootctl", version)]
pub struct Cli {
    /// Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml].
    /// With it, `apply` works in-process instead of asking the daemon; `status` reads it only
    /// when no daemon answers (the daemon's own config is what it shows).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With
    /// it, `apply` works in-process, as with --config; `status` reads it only when no daemon
    /// answers.
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log more (-v: changes, -vv: debugging).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the daemon's state per duty and path (exit 0 all correct, 1 something refused or
    /// failed, 3 daemon not running or no bus).
    Status(StatusArgs),
    /// Apply the configured duties now and report per path: through the daemon when it runs,
    /// in-process otherwise.
    Apply(ApplyArgs),
    /// Make the daemon re-read its config; a broken config is refused and the old one kept.
    ///
    /// Returns once the new config is in force (or refused); the daemon applies it right
    /// after, and `nonrootctl status` shows the outcome. The daemon reads its own config:
    /// --config and --state-dir are refused here. Run by systemd (`systemctl reload`) while
    /// the daemon is off the system bus, it sends the daemon SIGHUP instead; the outcome then
    /// shows in the daemon's journal.
    Reload(TimeoutArgs),
    /// Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem,
    /// then (once there are none) every unknown user or group, then (by file, line and key) every
    /// configured path the installed nonrootd.service with its drop-ins may not write, with the
    /// drop-in that allows it; such volumes are only noted.
    CheckConfig(CheckConfigArgs),
    /// Remove every ACL entry nonrootd recorded as granted (the package runs this on removal).
    ///
    /// Works in-process on the record in the state directory; the config is not read. A
    /// running daemon grants again at its next event: stop it first (the package does).
    Revoke(RevokeArgs),
    /// Subordinate uid/gid ranges per tenant in /etc/subuid and /etc/subgid.
    Subids {
        #[command(subcommand)]
        command: subids::SubidsCommand,
    },
    /// Ownership of the configured [[volume]] trees (no state: --state-dir is not used).
    Volumes {
        #[command(subcommand)]
        command: volumes::VolumesCommand,
    },
}

#[derive(Args, Debug)]
struct CheckConfigArgs {
    /// Where to look for nonrootd.service, its drop-ins and those of every service (service.d/),
    /// lowest priority first [default: /lib/systemd/system /usr/lib/systemd/system
    /// /usr/local/lib/systemd/system /run/systemd/system /etc/systemd/system
    /// /run/systemd/system.control /etc/systemd/system.control].
    #[arg(long, value_name = "DIR")]
    unit_dir: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct RevokeArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Give up waiting for another apply after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Print the status as JSON: one document with "running" (true, false, or null when that
    /// is unknown) in every case, and "error" when no status came back.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    wait: TimeoutArgs,
}

#[derive(Args, Debug)]
struct TimeoutArgs {
    /// Give up waiting for the daemon after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct ApplyArgs {
    /// Comma-separated duties: docker, sockets, dmi, subids, volumes [default: docker,sockets,dmi,volumes].
    #[arg(long, value_name = "LIST", value_parser = DutySet::parse)]
    only: Option<DutySet>,
    /// Print what would change and change nothing (in-process, with this config and state
    /// directory, also while the daemon runs).
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Apply in-process without touching the bus (Docker's ExecStartPost= hook: docker.socket
    /// starts before the bus at boot).
    #[arg(long)]
    local: bool,
    /// Only ask the daemon: exit 3 when none answers instead of applying in-process with
    /// this host's config (for scripts that want the daemon's own apply, shown in its status).
    #[arg(long, conflicts_with_all = ["local", "dry_run"])]
    require_daemon: bool,
    /// Give up waiting for the daemon, or in-process for each lock (apply.lock, shadow's), after
    /// this long (e.g. 5s, 500ms), so a hook never hangs Docker's start. Through the daemon it
    /// bounds the whole call, volume walks included (a walk that outlasts it goes on in the
    /// daemon); in-process, volume walks are not bounded by it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Whether `apply` works in-process rather than asking the daemon: told to, a dry run, or
/// given a config or state directory of its own (the daemon has its own).
fn applies_here(args: &ApplyArgs, config: bool, state_dir: bool) -> bool {
    args.local || args.dry_run || config || state_dir
}

/// The longest `--timeout`: a year. Longer ones are refused: a deadline much further away
/// cannot be computed.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses "5", "5s", "500ms" or "1.5s", up to [`LONGEST_TIMEOUT`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(ms) => (ms, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Duration::try_from_secs_f64(n * scale)
            .ok()
            .filter(|duration| *duration <= LONGEST_TIMEOUT)
            .ok_or_else(|| format!("{text:?} is longer than a year ({}s)", LONGEST_TIMEOUT.as_secs())),
        _ => Err(format!("{text:?} is not a duration like 5s or 500ms")),
    }
}

/// Runs `nonrootctl` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let config_path = cli.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match cli.command {
        Command::Status(args) => status(&config_path, &state_dir, &args),
        Command::Apply(args) if args.require_daemon && (cli.config.is_some() || cli.state_dir.is_some()) => {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--require-daemon asks the daemon, which has its own config: --config and --state-dir are for applying here",
                )
                .exit()
        }
        Command::Apply(args) if applies_here(&args, cli.config.is_some(), cli.state_dir.is_some()) => {
            apply_local(&config_path, &state_dir, &args)
        }
        Command::Apply(args) => apply(&config_path, &state_dir, &args),
        Command::Reload(_) if cli.config.is_some() || cli.state_dir.is_some() => Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "reload makes nonrootd read its own config again: --config and --state-dir are for the commands that run here",
            )
            .exit(),
        Command::Reload(args) => reload(&args),
        Command::CheckConfig(args) => check_config(&config_path, &state_dir, &args),
        Command::Revoke(args) => revoke(&state_dir, &args),
        Command::Subids { command } => match load_config(&config_path) {
            Some(config) => subids::run(command, &config, &state_dir),
            None => ExitCode::FAILURE,
        },
        Command::Volumes { command } => match load_config(&config_path) {
            Some(config) => volumes::run(command, &config),
            None => ExitCode::FAILURE,
        },
    }
}

/// The `clap` description of `nonrootctl`, for man pages and completions.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::ERROR,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
}

fn load_config(path: &std::path::Path) -> Option<Config> {
    match config_file::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            for error in errors {
                eprintln!("nonrootctl: {error}");
            }
            None
        }
    }
}

/// systemd's unit directories, lowest priority first (`system.control` is where
/// `systemctl set-property` writes).
const UNIT_DIRS: [&str; 7] = [
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/usr/local/lib/systemd/system",
    "/run/systemd/system",
    "/etc/systemd/system",
    "/run/systemd/system.control",
    "/etc/systemd/system.control",
];

/// What the installed nonrootd.service with its drop-ins lets nonrootd write, or `None` when
/// the unit is not installed.
fn unit_sandbox(unit_dirs: &[PathBuf]) -> Option<sandbox::UnitSandbox> {
    let unit = unit_dirs
        .iter()
        .rev()
        .map(|d| d.join("nonrootd.service"))
        .find(|p| p.is_file())?;
    // As bytes: systemd takes a unit with a comment that is not UTF-8, and so does this.
    let read = |path: &std::path::Path| std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let mut sandbox = sandbox::UnitSandbox::default();
    sandbox.read(&read(&unit).ok()?);
    let resolve_all = |paths: &mut Vec<PathBuf>| paths.iter_mut().for_each(|p| *p = resolved(p));
    let mut drop_ins = std::collections::BTreeMap::new();
    // The drop-ins of every service, then nonrootd's own, which win a name they share; a
    // directory of higher priority wins a name too. Read in the order of their names.
    for dir in unit_dirs {
        for drop_in_dir in ["service.d", "nonrootd.service.d"] {
            let Ok(entries) = std::fs::read_dir(dir.join(drop_in_dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().ends_with(".conf") {
                    drop_ins.insert(name, entry.path());
                }
            }
        }
    }
    for path in drop_ins.values() {
        match read(path) {
            Ok(text) => sandbox.read(&text),
            Err(e) => eprintln!("nonrootctl: {}: cannot read ({e}); judged without it", path.display()),
        }
    }
    // systemd follows symbolic links in them, as `resolved` does for the paths judged.
    resolve_all(&mut sandbox.read_write_paths);
    resolve_all(&mut sandbox.read_only_paths);
    resolve_all(&mut sandbox.inaccessible_paths);
    Some(sandbox)
}

/// `path` with the symbolic links of its longest existing part followed (`/var/run/x` is
/// `/run/x`), the rest as written.
fn resolved(path: &std::path::Path) -> PathBuf {
    for existing in path.ancestors() {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let rest = path.strip_prefix(existing).unwrap_or(std::path::Path::new(""));
            return if rest.as_os_str().is_empty() {
                real
            } else {
                real.join(rest)
            };
        }
    }
    path.to_path_buf()
}

fn check_config(path: &std::path::Path, state_dir: &std::path::Path, args: &CheckConfigArgs) -> ExitCode {
    let Some(config) = load_config(path) else {
        return ExitCode::FAILURE;
    };
    let unresolved = config.unresolved(&SystemIds);
    for error in &unresolved {
        eprintln!("nonrootctl: {error}");
    }
    // login.defs completes the limits the config leaves unset.
    let settings = crate::subids::Settings::new(&config, state_dir);
    let limits = settings
        .check_limits()
        .and_then(|()| settings.check_configured_counts());
    if let Err(error) = &limits {
        eprintln!("nonrootctl: {error}");
    }
    if !unresolved.is_empty() || limits.is_err() {
        return ExitCode::FAILURE;
    }
    let unit_dirs: Vec<PathBuf> = match args.unit_dir.is_empty() {
        true => UNIT_DIRS.iter().map(PathBuf::from).collect(),
        false => args.unit_dir.clone(),
    };
    let unit = unit_sandbox(&unit_dirs);
    if let Some(unit) = &unit {
        let data_root = config
            .docker
            .as_ref()
            .map(|d| data_root(d.configured_data_root(), std::path::Path::new(DOCKER_DAEMON_JSON)))
            .transpose();
        // The docker duty would fail on it too.
        let data_root = match data_root {
            Ok(root) => root,
            Err(error) => {
                eprintln!("nonrootctl: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut blocked = false;
        for written in sandbox::written_paths(&config, data_root.as_deref()) {
            let writable = resolved(&written.writable);
            let Some(why) = unit.blocks(&writable) else {
                continue;
            };
            let place = written
                .origin
                .as_ref()
                .map_or_else(|| path.display().to_string(), |o| o.to_string());
            let what = match written.writable == written.path {
                // Only a data root has no origin in the config: it names where it comes from.
                true if written.origin.is_none() => format!(
                    "Docker's data root {} ({})",
                    written.path.display(),
                    match written.path == std::path::Path::new(nonrootd_core::config::DOCKER_DATA_ROOT) {
                        true => "the default",
                        false => "data-root in /etc/docker/daemon.json",
                    }
                ),
                true => format!("{} {}", written.key, written.path.display()),
                false => format!(
                    "{} {}: its directory {}",
                    written.key,
                    written.path.display(),
                    written.writable.display()
                ),
            };
            eprintln!("nonrootctl: {place}: {what} {why}: {}", unit.advice(&writable));
            blocked = true;
        }
        if blocked {
            return ExitCode::FAILURE;
        }
    }
    let drop_ins = config_file::drop_ins(path).map(|d| d.len()).unwrap_or(0);
    println!("{}: valid ({drop_ins} drop-ins)", path.display());
    if unit.is_none() {
        let dirs: Vec<String> = unit_dirs.iter().map(|d| d.display().to_string()).collect();
        println!(
            "note: nonrootd.service is not in {}: what its sandbox lets nonrootd write was not checked",
            dirs.join(", ")
        );
    }
    // Not an error: `nonrootctl apply --only volumes` can still walk such a volume by hand.
    for (volume, unit) in config.volumes.iter().filter_map(|v| Some((v, unit.as_ref()?))) {
        let path = resolved(&volume.path);
        if let Some(why) = unit.blocks(&path) {
            println!(
                "note: {}: volume.path {} {why}: {}",
                volume.origin,
                volume.path.display(),
                unit.advice(&path)
            );
        }
    }
    ExitCode::SUCCESS
}

#[derive(Serialize)]
struct JsonReport<'a> {
    succeeded: bool,
    #[serde(flatten)]
    report: &'a Report,
}

/// Exit status when the daemon is not running.
const NOT_RUNNING: u8 = 3;

fn color_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn status(config_path: &std::path::Path, state_dir: &std::path::Path, args: &StatusArgs) -> ExitCode {
    match client::call(args.wait.timeout, |daemon| async move { daemon.status().await }) {
        Ok(json) => {
            let status: DaemonStatus = match serde_json::from_str(&json) {
                Ok(status) => status,
                Err(e) => {
                    return status_failed(args, Some(true), &format!("the daemon's status is not understood: {e}"));
                }
            };
            let mut out = std::io::stdout().lock();
            let _ = if args.json {
                // The same key as the document without a daemon has.
                let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                if let Some(fields) = doc.as_object_mut() {
                    fields.insert("running".into(), true.into());
                }
                writeln!(out, "{doc}")
            } else {
                write!(out, "{}", render(&status, color_wanted()))
            };
            if status.healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(CallError::NoDaemon(why)) => {
            let headline = format!("○ nonrootd is not running ({why})");
            status_without_daemon(config_path, state_dir, args, Some(false), &headline, &why)
        }
        // Whether the daemon runs is unknown without a bus.
        Err(CallError::NoBus(why)) => {
            let headline = format!("○ nonrootd cannot be asked: the system bus cannot be reached ({why})");
            status_without_daemon(config_path, state_dir, args, None, &headline, &why)
        }
        // It answered (with a refusal or an error), or it may be stuck, or it was not asked.
        Err(e) => {
            let running = (!matches!(e, CallError::TimedOut(_) | CallError::NotAsked(_))).then_some(true);
            status_failed(args, running, &e.to_string())
        }
    }
}

/// `status` when the daemon was asked and no status came back: exit 1, and with `--json`
/// still one document, with the error.
fn status_failed(args: &StatusArgs, running: Option<bool>, error: &str) -> ExitCode {
    eprintln!("nonrootctl: {error}");
    if args.json {
        println!("{}", serde_json::json!({ "running": running, "error": error }));
    }
    ExitCode::FAILURE
}

/// `status` when the daemon cannot be asked: the headline, then a local read-only inspection
/// (without walking the volumes: `nonrootctl volumes check` does that). Exit status 3.
fn status_without_daemon(
    config_path: &std::path::Path,
    state_dir: &std::path::Path,
    args: &StatusArgs,
    running: Option<bool>,
    headline: &str,
    reason: &str,
) -> ExitCode {
    let request = Request {
        duties: DutySet::HOST.without(Duty::Volumes),
        socket: None,
        dry_run: true,
    };
    let report = load_config(config_path).map(|config| apply_on_host(&config, &request, state_dir, args.wait.timeout));
    let mut out = std::io::stdout().lock();
    let _ = match (&report, args.json) {
        (report, true) => {
            let doc = serde_json::json!({ "running": running, "reason": reason, "local_inspection": report });
            writeln!(out, "{doc}")
        }
        (Some(report), false) => write!(
            out,
            "{headline}\n\nLocal read-only inspection (nothing was changed):\n{}",
            render_report(report, color_wanted())
        ),
        // The config's errors went to stderr.
        (None, false) => writeln!(out, "{headline}"),
    };
    ExitCode::from(NOT_RUNNING)
}

fn reload(args: &TimeoutArgs) -> ExitCode {
    match client::call(args.timeout, |daemon| async move { daemon.reload().await }) {
        Ok(()) => {
            println!("nonrootd reloaded its config and applies it now (see nonrootctl status)");
            ExitCode::SUCCESS
        }
        Err(ref off_bus @ (CallError::NoDaemon(ref why) | CallError::NoBus(ref why))) => match main_pid_of_nonrootd() {
            Some(pid) => reload_by_signal(pid, why),
            None => {
                eprintln!("nonrootctl: {off_bus}");
                ExitCode::from(NOT_RUNNING)
            }
        },
        Err(e @ (CallError::Denied(_) | CallError::TimedOut(_))) => {
            eprintln!("nonrootctl: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("nonrootctl: reload refused: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `$MAINPID`, which systemd sets for `ExecReload=`, when that is nonrootd.
fn main_pid_of_nonrootd() -> Option<nix::unistd::Pid> {
    let pid: i32 = std::env::var("MAINPID").ok()?.parse().ok().filter(|pid| *pid > 1)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim_end() == "nonrootd").then(|| nix::unistd::Pid::from_raw(pid))
}

/// The daemon (`pid`) is off the system bus (`why`): its config is checked here, as
/// `Reload()` would (a broken one is refused, exit 1), then the daemon is sent SIGHUP, on which
/// it reloads.
fn reload_by_signal(pid: nix::unistd::Pid, why: &str) -> ExitCode {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let config = daemon_config(&cmdline, || std::fs::read_link(format!("/proc/{pid}/cwd")).ok());
    if let Err(errors) = config_file::load(&config) {
        for error in errors {
            eprintln!("nonrootctl: reload refused: {error}");
        }
        return ExitCode::FAILURE;
    }
    match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP) {
        Ok(()) => {
            println!(
                "nonrootd (pid {pid}) is not on the system bus ({why}): sent it SIGHUP; it reloads its config, and its journal shows the outcome"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nonrootctl: nonrootd (pid {pid}) is not on the system bus ({why}), and SIGHUP failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The config file a daemon reads, from its command line (`--config FILE` or
/// `--config=FILE`; a relative one is taken in `cwd`), else the default.
fn daemon_config(cmdline: &[u8], cwd: impl FnOnce() -> Option<PathBuf>) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut args = cmdline.split(|b| *b == 0).skip(1);
    let mut given = None;
    while let Some(arg) = args.next() {
        if arg == b"--" {
            break;
        }
        if arg == b"--config" {
            given = args.next();
        } else if let Some(value) = arg.strip_prefix(b"--config=") {
            given = Some(value);
        }
    }
    let Some(given) = given.map(|bytes| PathBuf::from(std::ffi::OsStr::from_bytes(bytes))) else {
        return PathBuf::from(DEFAULT_CONFIG);
    };
    if given.is_relative() {
        cwd().unwrap_or_default().join(given)
    } else {
        given
    }
}

/// Asks the daemon to apply; applies in-process when no daemon answers.
fn apply(config_path: &std::path::Path, state_dir: &std::path::Path, args: &ApplyArgs) -> ExitCode {
    let duties = args.only.unwrap_or(DutySet::HOST).to_string();
    let call = client::call(args.timeout, |daemon| async move {
        let names: Vec<&str> = duties.split(',').collect();
        daemon.apply(&names).await
    });
    match call {
        Ok(json) => match serde_json::from_str::<Report>(&json) {
            Ok(report) => finish(&report, args.json),
            Err(e) => {
                eprintln!("nonrootctl: the daemon's report is not understood: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e @ (CallError::NoDaemon(_) | CallError::NoBus(_))) if args.require_daemon => {
            eprintln!("nonrootctl: {e}");
            ExitCode::from(NOT_RUNNING)
        }
        Err(CallError::NoDaemon(_) | CallError::NoBus(_)) => apply_local(config_path, state_dir, args),
        Err(e) => {
            eprintln!("nonrootctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn apply_local(config_path: &std::path::Path, state_dir: &std::path::Path, args: &ApplyArgs) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let request = Request {
        duties: args.only.unwrap_or(DutySet::HOST),
        socket: None,
        dry_run: args.dry_run,
    };
    let mut report = apply_on_host(&config, &request, state_dir, args.timeout);
    if request.duties.contains(Duty::Volumes) {
        let options = crate::volumes::Options {
            check_only: args.dry_run,
            cancel: &std::sync::atomic::AtomicBool::new(false),
            progress: !args.json,
            daemon_json: std::path::Path::new(DOCKER_DAEMON_JSON),
        };
        let walked = crate::volumes::apply(&config, &SystemIds, &options);
        report.entries.extend(walked.entries);
    }
    finish(&report, args.json)
}

fn revoke(state_dir: &std::path::Path, args: &RevokeArgs) -> ExitCode {
    let nothing = Config::from_sources(&[]).expect("an empty config is valid");
    let request = Request {
        duties: DutySet::NONE.with(Duty::Sockets),
        socket: None,
        dry_run: false,
    };
    finish(&apply_on_host(&nothing, &request, state_dir, args.timeout), args.json)
}

/// Prints the report; exit 0 when nothing was refused or failed.
fn finish(report: &Report, json: bool) -> ExitCode {
    print_report(report, json);
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the report; a closed stdout (`| head`) is not an error worth a panic.
fn print_report(report: &Report, json: bool) {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        let doc = JsonReport {
            succeeded: report.succeeded(),
            report,
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).expect("a report serializes")
        )
    } else {
        write!(out, "{report}").and_then(|()| writeln!(out, "{}", summary(report)))
    };
}

fn summary(report: &Report) -> String {
    let count = |f: fn(&Outcome) -> bool| report.entries.iter().filter(|e| f(&e.outcome)).count();
    format!(
        "{} changed, {} would change, {} correct, {} missing, {} refused, {} failed",
        count(|o| matches!(o, Outcome::Changed { .. })),
        count(|o| matches!(o, Outcome::WouldChange { .. })),
        count(|o| matches!(o, Outcome::Correct)),
        count(|o| matches!(o, Outcome::Missing)),
        count(|o| matches!(o, Outcome::Refused { .. })),
        count(|o| matches!(o, Outcome::Failed { .. })),
    )
}

#[cfg(test)]
mod tests {
    /// `systemctl reload` off the bus checks the file the daemon reads, not the default.
    #[test]
    fn the_daemon_s_config_is_read_off_its_command_line() {
        let cwd = || Some(PathBuf::from("/srv"));
        let config = |cmdline: &[u8]| daemon_config(cmdline, cwd).display().to_string();
        assert_eq!(config(b"/usr/sbin/nonrootd\0"), DEFAULT_CONFIG);
        assert_eq!(config(b"/usr/sbin/nonrootd\0--config\0/etc/x.toml\0"), "/etc/x.toml");
        assert_eq!(config(b"nonrootd\0--config=y.toml\0"), "/srv/y.toml");
        assert_eq!(config(b"nonrootd\0--\0--config=z.toml\0"), DEFAULT_CONFIG);
    }

    use super::*;

    #[test]
    fn apply_asks_the_daemon_only_without_options_of_its_own() {
        let here = |line: &str| {
            let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
            let Command::Apply(args) = &cli.command else {
                panic!("{line}")
            };
            applies_here(args, cli.config.is_some(), cli.state_dir.is_some())
        };
        assert!(!here("nonrootctl apply --only sockets"));
        for line in [
            "nonrootctl apply --local",
            "nonrootctl apply --dry-run",
            "nonrootctl --config /x apply",
            "nonrootctl apply --state-dir /x",
        ] {
            assert!(here(line), "{line}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("31536000s"), Ok(LONGEST_TIMEOUT));
        assert_eq!(
            parse_duration("1e30s"),
            Err("\"1e30s\" is longer than a year (31536000s)".into())
        );
        assert!(parse_duration("31536001s").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
