//! `nonrootd`: the long-running daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::config_file::DEFAULT_CONFIG;

/// Keeps this host prepared for non-root containers: re-applies on every Docker start and
/// socket re-creation, and serves org.nonrootd1 on the system bus.
#[derive(Parser, Debug)]
#[command(name = "nonrootd", version, about, long_about = None)]
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
    let _cli = DaemonCli::parse();
    eprintln!("nonrootd: the daemon is under construction");
    ExitCode::FAILURE
}
