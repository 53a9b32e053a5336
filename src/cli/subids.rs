//! `nonrootctl subids …`: allocate, release, list and check subordinate id ranges.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nonrootd_core::config::Config;

use crate::subids::{self, Settings};

/// Subordinate uid/gid ranges in /etc/subuid and /etc/subgid.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum SubidsCommand {
    /// Give each NAME (a user name or numeric uid) a range in both files, all in one write
    /// (or none when one is refused); prints NAME START COUNT
    ///
    /// NAME need not be a user yet: the range is held for an account made later with
    /// `useradd -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0` (a plain useradd adds a second range).
    /// (The [[tenant]] entries of the configuration, which the daemon applies, must name
    /// existing users.)
    ///
    /// Lines written with NAME's other spelling (the uid of a name, the name of a uid) are
    /// NAME's too. When a line could be one and the user database cannot be asked, nothing
    /// is written (release likewise).
    Allocate {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Ids wanted (default: the tenant's count in the config, else [subids] count)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
        /// Add a second range when NAME owns fewer ids than asked
        #[arg(long)]
        grow: bool,
    },
    /// Remove NAME's lines (by name and by uid) from both files and quarantine the ranges (the
    /// ids a user namespace can map, up to 4294967294); run it before userdel, whose removed
    /// ranges are free at once
    Release { name: String },
    /// Every owner, start, count, file, line, and whether nonrootd manages it; then the released
    /// ranges still in quarantine, and until when
    List {
        /// Print the ranges as JSON
        #[arg(long)]
        json: bool,
    },
    /// Validate both files; exit 1 when anything is wrong
    Check,
}

/// What a command prints, and whether it succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    /// Why it failed, if it did (lines after the first name the program, as printed).
    pub error: Option<Failure>,
    pub success: bool,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The request itself is invalid (a name that is not a valid user name, a count of 0), as
    /// opposed to one the files or the host cannot satisfy.
    pub invalid_request: bool,
}

/// Runs a command without printing, waiting at most `lock_timeout` for shadow's locks.
pub fn execute(command: SubidsCommand, config: &Config, state_dir: &Path, lock_timeout: Duration) -> Output {
    let settings = Settings {
        lock_timeout,
        ..Settings::new(config, state_dir)
    };
    let result = match command {
        SubidsCommand::Allocate { names, count, grow } => {
            let batch = names.len() > 1;
            match subids::allocate_many(&settings, &names, count, grow) {
                Ok(all) => Ok((all.iter().map(ToString::to_string).collect(), true)),
                Err(e) if batch => {
                    let message = format!("{e}\nnonrootctl: no tenant of the batch was allocated");
                    return failed(message, e.is_invalid_request());
                }
                Err(e) => Err(e),
            }
        }
        SubidsCommand::Release { name } => subids::release(&settings, &name).map(|r| (r.to_string(), true)),
        SubidsCommand::List { json: false } => subids::list(&settings).map(|l| (l.to_string(), true)),
        SubidsCommand::List { json: true } => subids::list(&settings).map(|l| {
            (
                serde_json::to_string_pretty(&l).expect("listing serializes") + "\n",
                true,
            )
        }),
        SubidsCommand::Check => subids::check(&settings).map(|c| (c.to_string(), c.is_clean())),
    };
    match result {
        Ok((stdout, success)) => Output {
            stdout,
            error: None,
            success,
        },
        Err(e) => failed(e.to_string(), e.is_invalid_request()),
    }
}

fn failed(message: String, invalid_request: bool) -> Output {
    Output {
        stdout: String::new(),
        error: Some(Failure {
            message,
            invalid_request,
        }),
        success: false,
    }
}

/// Runs a command, prints its output; exit 1 on problems.
pub fn run(command: SubidsCommand, config: &Config, state_dir: &Path) -> ExitCode {
    let output = execute(command, config, state_dir, subids::DEFAULT_LOCK_TIMEOUT);
    print!("{}", output.stdout);
    if let Some(failure) = &output.error {
        eprintln!("nonrootctl: {}", failure.message);
    }
    if output.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
