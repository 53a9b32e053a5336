//! What an apply did, per duty and path, for people (`Display`) and tools (JSON).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::duty::Duty;

/// What happened to one path (or one entry of a path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Already as desired.
    Correct,
    /// Changed; `change` says from what to what.
    Changed { change: String },
    /// Would change (dry run).
    WouldChange { change: String },
    /// Not there (for example Docker not started yet); not an error.
    Missing,
    /// Not touched because it is unsafe or invalid.
    Refused { reason: String },
    /// A system call failed, or the result did not verify.
    Failed { error: String },
}

impl Outcome {
    /// The same outcome with its text (change, reason or error) replaced by `detail`.
    pub fn with_detail(&self, detail: &str) -> Outcome {
        match self {
            Outcome::Changed { .. } => Outcome::Changed { change: detail.into() },
            Outcome::WouldChange { .. } => Outcome::WouldChange { change: detail.into() },
            Outcome::Refused { .. } => Outcome::Refused { reason: detail.into() },
            Outcome::Failed { .. } => Outcome::Failed { error: detail.into() },
            Outcome::Correct | Outcome::Missing => self.clone(),
        }
    }

    /// Refused and failed outcomes make an apply unsuccessful.
    pub fn is_problem(&self) -> bool {
        matches!(self, Outcome::Refused { .. } | Outcome::Failed { .. })
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Correct => "correct",
            Outcome::Changed { .. } => "changed",
            Outcome::WouldChange { .. } => "would change",
            Outcome::Missing => "missing",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One line of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub duty: Duty,
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// What nonrootd wants there, e.g. "mode 0750" or "user:4321:rw-".
    pub desired: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A path as JSON text: one that is not UTF-8 (a `--state-dir` can be) is written with
/// U+FFFD where its bytes are not, instead of failing the whole document.
pub fn lossy_path<S: serde::Serializer>(path: &std::path::Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<12} {:<7} {} ({})",
            self.outcome.label(),
            self.duty,
            self.path.display(),
            self.desired
        )?;
        match &self.outcome {
            Outcome::Changed { change } | Outcome::WouldChange { change } => write!(f, ": {change}"),
            Outcome::Refused { reason } => write!(f, ": {reason}"),
            Outcome::Failed { error } => write!(f, ": {error}"),
            Outcome::Correct | Outcome::Missing => Ok(()),
        }
    }
}

/// Everything one apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub entries: Vec<Entry>,
}

impl Report {
    pub fn push(&mut self, duty: Duty, path: impl Into<PathBuf>, desired: impl Into<String>, outcome: Outcome) {
        self.entries.push(Entry {
            duty,
            path: path.into(),
            desired: desired.into(),
            outcome,
        });
    }

    /// True when nothing was refused and nothing failed.
    pub fn succeeded(&self) -> bool {
        !self.entries.iter().any(|e| e.outcome.is_problem())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_path_that_is_not_utf8_is_written_lossily_not_refused() {
        let mut report = Report::default();
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"/var/lib/state\xff"));
        report.push(Duty::Sockets, path, "the record", Outcome::Missing);
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"path\":\"/var/lib/state\u{fffd}\""), "{json}");
    }
}
