//! `nonrootctl subids …`: allocate, release, list and check subordinate id ranges.

use std::path::Path;
use std::process::ExitCode;

use nonrootd_core::config::Config;

use crate::subids::{self, Settings};

/// Subordinate uid/gid ranges in /etc/subuid and /etc/subgid.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum SubidsCommand {
    /// Give NAME (a user name or numeric uid) a range in both files; prints NAME START COUNT
    Allocate {
        name: String,
        /// Ids wanted (default: the tenant's count in the config, else [subids] count)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
        /// Add a second range when NAME owns fewer ids than asked
        #[arg(long)]
        grow: bool,
    },
    /// Remove NAME's lines (by name and by uid) from both files and quarantine the ranges
    Release { name: String },
    /// Every owner, start, count, file, line, and whether nonrootd manages it
    List {
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
    pub stderr: String,
    pub success: bool,
}

/// Runs a command without printing.
pub fn execute(command: SubidsCommand, config: &Config, state_dir: &Path) -> Output {
    let settings = Settings::new(config, state_dir);
    let result = match command {
        SubidsCommand::Allocate { name, count, grow } => {
            subids::allocate(&settings, &name, count, grow).map(|a| (a.to_string(), true))
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
            stderr: String::new(),
            success,
        },
        Err(e) => Output {
            stdout: String::new(),
            stderr: format!("nonrootctl: {e}\n"),
            success: false,
        },
    }
}

/// Runs a command, prints its output; exit 1 on problems.
pub fn run(command: SubidsCommand, config: &Config, state_dir: &Path) -> ExitCode {
    let output = execute(command, config, state_dir);
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    if output.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
