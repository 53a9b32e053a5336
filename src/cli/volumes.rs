//! `nonrootctl volumes check`: what in each `[[volume]]` is not owned as wanted, counted.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use nonrootd_core::config::Config;
use nonrootd_core::report::Outcome;

use crate::ids::SystemIds;
use crate::volumes::{Options, walk_volume};

/// Ownership of the configured [[volume]] trees.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum VolumesCommand {
    /// Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)
    Check,
}

/// Runs a command; exit 1 when a volume is not as wanted, missing, refused or unreadable.
pub fn run(command: VolumesCommand, config: &Config) -> ExitCode {
    let VolumesCommand::Check = command;
    let options = Options {
        check_only: true,
        cancel: &AtomicBool::new(false),
        progress: true,
        daemon_json: std::path::Path::new(crate::apply::DOCKER_DAEMON_JSON),
    };
    let mut all_right = true;
    for volume in &config.volumes {
        let line = match walk_volume(volume, config, &SystemIds, &options) {
            Ok(walked) => {
                let s = &walked.summary;
                let mut line = s.describe_check(walked.owner);
                if let Some((now, wanted)) = walked.mode_change {
                    line.push_str(&format!("; top mode {now}, wanted {wanted}"));
                }
                all_right &= s.changed == 0 && s.left_not_owned() == 0 && s.failed == 0 && walked.mode_change.is_none();
                line
            }
            Err(not) => {
                all_right = false;
                match not.outcome {
                    Outcome::Missing => format!("missing ({})", not.desired),
                    _ => not.to_string(),
                }
            }
        };
        println!("{}: {line}", volume.path.display());
    }
    if config.volumes.is_empty() {
        println!("no [[volume]] configured");
    }
    if all_right {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
