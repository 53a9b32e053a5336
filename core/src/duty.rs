//! The duties nonrootd performs, and sets of them (`--only docker,sockets`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of host preparation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duty {
    Docker,
    Sockets,
    Dmi,
    /// Subordinate id ranges of `[[tenant]]`s; only when asked for by name.
    Subids,
    /// Ownership of `[[volume]]` trees (a walk that may take seconds).
    Volumes,
}

impl Duty {
    pub const ALL: [Duty; 5] = [Duty::Docker, Duty::Sockets, Duty::Dmi, Duty::Subids, Duty::Volumes];

    pub fn name(self) -> &'static str {
        match self {
            Duty::Docker => "docker",
            Duty::Sockets => "sockets",
            Duty::Dmi => "dmi",
            Duty::Subids => "subids",
            Duty::Volumes => "volumes",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Duty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A set of duties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DutySet(u8);

impl DutySet {
    pub const ALL: DutySet = DutySet(0b1_1111);
    /// What a plain `nonrootctl apply` and a Docker start do: everything but the subordinate id
    /// files (docker, sockets, dmi, volumes).
    pub const HOST: DutySet = DutySet(0b1_0111);
    pub const NONE: DutySet = DutySet(0);

    pub fn contains(self, duty: Duty) -> bool {
        self.0 & duty.bit() != 0
    }

    pub fn with(self, duty: Duty) -> DutySet {
        DutySet(self.0 | duty.bit())
    }

    pub fn union(self, other: DutySet) -> DutySet {
        DutySet(self.0 | other.0)
    }

    pub fn without(self, duty: Duty) -> DutySet {
        DutySet(self.0 & !duty.bit())
    }

    /// The duties of `self` that are not in `other`.
    pub fn difference(self, other: DutySet) -> DutySet {
        DutySet(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Duty> {
        Duty::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// Parses a comma-separated list such as "docker,sockets".
    pub fn parse(list: &str) -> Result<DutySet, String> {
        let mut set = DutySet::NONE;
        for word in list.split(',').map(str::trim) {
            let duty = Duty::ALL.into_iter().find(|d| d.name() == word).ok_or_else(|| {
                let known: Vec<_> = Duty::ALL.iter().map(|d| d.name()).collect();
                format!("unknown duty {word:?}; known: {}", known.join(", "))
            })?;
            set = set.with(duty);
        }
        Ok(set)
    }
}

impl fmt::Display for DutySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Duty::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        let set = DutySet::parse("docker, sockets").unwrap();
        assert!(set.contains(Duty::Docker) && set.contains(Duty::Sockets));
        assert!(!set.contains(Duty::Dmi));
        assert_eq!(set.to_string(), "docker,sockets");
        assert!(DutySet::parse("docker,volume").unwrap_err().contains("known: docker"));
        assert_eq!(DutySet::HOST.to_string(), "docker,sockets,dmi,volumes");
        assert_eq!(DutySet::ALL.to_string(), "docker,sockets,dmi,subids,volumes");
        assert_eq!(DutySet::HOST.without(Duty::Volumes).to_string(), "docker,sockets,dmi");
        assert!(DutySet::parse("").is_err());
    }
}
